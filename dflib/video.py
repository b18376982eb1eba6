"""Video probing, frame sampling and sparse decoding with OpenCV (PyAV for wide-gamut and
HDR streams, see :func:`opencv_maps_colours`).

Only the frames a stage uses are turned into images: frames in between are skipped with
``grab()`` (no colour conversion, no copy) and long gaps are crossed with a seek, which
decodes from the previous keyframe only.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from .faces_fields import SAMPLING_STRATEGIES

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# A seek decodes from the keyframe before the target (typically 12-250 frames back), so it
# only beats grabbing forward when the gap is longer than a short GOP.
SEEK_MIN_GAP = 48

# The colour tags (FFmpeg's AVColorPrimaries and AVColorTransferCharacteristic numbers) under
# which OpenCV 5's FFmpeg (libswscale 9) converts frames plainly, measured on clips tagged
# each way: the primaries of SD and HD television (BT.709, unspecified, BT.470 M and BG,
# SMPTE 170M and 240M) and the SDR transfers. OpenCV leaves its BGR output untagged, so
# with other primaries (BT.2020, DCI-P3, film, XYZ, EBU 3213) or the HLG or PQ transfer
# libswscale maps the colours into BT.709 SDR: about 1.4-4 s to set that up per opened
# video and 6-15 ms per frame after it (0.1-1.5 ms without; docs/benchmarks.md,
# "Real footage"); with a log transfer (log100, log316) it returns black frames.
PLAIN_PRIMARIES = frozenset({1, 2, 4, 5, 6, 7})
PLAIN_TRANSFERS = frozenset({1, 2, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 17})


class VideoError(RuntimeError):
    """A video that cannot be used; the message is one line naming the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keep the two-argument constructor picklable (Dask ships errors)
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video; ``n_frames`` is a hint (see :func:`probe`)."""

    n_frames: int
    fps: float
    width: int
    height: int


_decoder_threads = 0  # FFmpeg's own choice (one per core)
_thread_decoders = threading.local()  # a thread's own count (decoder_threads)


def set_decoder_threads(n: int) -> None:
    """Threads each FFmpeg decoder of this process uses from now on (0: FFmpeg's choice).

    Processes that share a machine, one video each (Dask workers), decode faster with one
    thread each than with every decoder spreading over every core."""
    global _decoder_threads
    _decoder_threads = max(0, int(n))


@contextmanager
def decoder_threads(n: int) -> Iterator[None]:
    """Threads each FFmpeg decoder opened by the calling thread uses in the ``with`` body
    (0: FFmpeg's choice), whatever :func:`set_decoder_threads` set for the process: a
    thread decoding the next video while the main thread detects leaves it its core."""
    before = getattr(_thread_decoders, "n", None)
    _thread_decoders.n = max(0, int(n))
    try:
        yield
    finally:
        _thread_decoders.n = before


def _threads() -> int:
    """Threads for a decoder opened now: the calling thread's count, else the process's."""
    n = getattr(_thread_decoders, "n", None)
    return _decoder_threads if n is None else n


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path, or :class:`VideoError` when it is missing or empty."""
    p = Path(path)
    if not p.is_file():
        raise VideoError(p, "file not found")
    if p.stat().st_size == 0:
        raise VideoError(p, "zero-byte file")
    return p


def _open(path: str | Path) -> cv2.VideoCapture:
    """Open ``path`` for decoding or raise :class:`VideoError` saying why it can't be."""
    p = _existing_file(path)
    threads = _threads()
    cap = (cv2.VideoCapture(str(p), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
           if threads else cv2.VideoCapture(str(p)))
    if not cap.isOpened():
        cap.release()
        kinds = sorted(set(stream_kinds(p)))
        if kinds and "video" not in kinds:
            tracks = (f"an {kinds[0]} track" if kinds[0][0] in "aeiou" else f"a {kinds[0]} track"
                      ) if len(kinds) == 1 else f"{' and '.join(kinds)} tracks"
            raise VideoError(p, f"{tracks} but no video track")
        raise VideoError(p, "not a video or truncated (the decoder cannot open it)")
    return cap


def read_image(path: str | Path) -> np.ndarray:
    """A still image as an RGB uint8 array, or :class:`VideoError` saying why it can't be read."""
    p = _existing_file(path)
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoError(p, "not an image (the decoder cannot read it)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def stream_kinds(path: str | Path) -> list[str]:
    """The kind of each stream FFmpeg finds in ``path`` (``video``, ``audio``, ``subtitle``,
    ``data``), in order; empty when FFmpeg cannot read the file."""
    import imageio_ffmpeg

    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin",
                           "-i", str(path)], capture_output=True, text=True, errors="replace")
    return [m.group(1).lower() for m in re.finditer(r"^\s*Stream #\S+.*?: (\w+):",
                                                    done.stderr, re.MULTILINE)]


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps and size of a video.

    ``CAP_PROP_FRAME_COUNT`` comes from the container and can be wrong for truncated or
    variable-frame-rate files; :func:`read_frames` reports which frames really decoded.
    Only when the container gives no count are the frames counted by grabbing them.
    """
    cap = _open(path)
    try:
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise VideoError(path, "no video stream")
        n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n_frames <= 0:
            n_frames = 0
            while cap.grab():
                n_frames += 1
        if n_frames == 0:
            raise VideoError(path, "no frames decoded")
        return VideoInfo(n_frames, float(cap.get(cv2.CAP_PROP_FPS)), width, height)
    finally:
        cap.release()


def count_frames(path: str | Path) -> int:
    """The frames the video's stream really holds, counted by decoding them (no colour
    conversion); 0 when none decodes."""
    cap = _open(path)
    try:
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def stream_damage(path: str | Path) -> str:
    """Why the video stream stops before the data its container declares ("" when the file
    is whole): FFmpeg's demuxer reads every video packet, without decoding, and names the
    first error, e.g. ``partial file`` for a download cut short."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
           "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    lines = [line.split("] ", 1)[-1].strip() for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class Sampled:
    """Frames sampled from a video: the decoded frames, their indices, the indices asked
    for, the frame count they were picked from and, when the file is damaged, why its
    stream ends early ("" otherwise)."""

    frames: list[np.ndarray]
    read: list[int]
    wanted: list[int]
    n_frames: int
    damage: str


def sample_frames(path: str | Path, n: int, strategy: str = "first",
                  every_k: int = 1) -> Sampled:
    """Decode the frames ``strategy`` picks from the frames the video really has.

    The container's count (:func:`probe`) is used while it holds; when the stream ends
    before the frames picked from it (a clip cut without re-encoding, an audio track
    longer than the picture, a file cut short), the frames are counted and picked again
    from those, so every sampled frame exists. Only a stream that stops before its
    container's data (:func:`stream_damage`) is called damaged.
    """
    n_frames = probe(path).n_frames
    wanted = sample_indices(n_frames, n, strategy, every_k)
    frames, read = read_frames(path, wanted)
    if len(read) == len(wanted):
        return Sampled(frames, read, wanted, n_frames, "")
    n_frames = count_frames(path)
    wanted = sample_indices(n_frames, n, strategy, every_k)
    frames, read = read_frames(path, wanted)
    return Sampled(frames, read, wanted, n_frames, stream_damage(path))


def sample_indices(n_total: int, n: int, strategy: str = "first", every_k: int = 1) -> list[int]:
    """Indices of the frames to use from a video of ``n_total`` frames.

    ``first``: frames 0..n-1 (the paper). ``even``: n frames evenly spaced over the video,
    first and last included, floored as DeepfakeBench does. ``every_k``: frames 0, k, 2k, ...
    at most n of them. When the video holds fewer frames than asked, every available
    frame the strategy allows is returned; an empty video gives ``[]``.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"sampling strategy {strategy!r} is not one of {SAMPLING_STRATEGIES}")
    if every_k < 1:
        raise ValueError(f"every_k must be at least 1, got {every_k}")
    if n_total <= 0 or n <= 0:
        return []
    if strategy == "first":
        return list(range(min(n, n_total)))
    if strategy == "even":
        if n >= n_total:
            return list(range(n_total))
        # The step is at least 1 here, so flooring never makes two indices equal.
        return [int(i) for i in np.linspace(0, n_total - 1, n)]
    return list(range(0, n_total, every_k))[:n]


def opencv_maps_colours(primaries: int, transfer: int) -> bool:
    """Whether OpenCV's decoder maps the colours of a stream tagged with ``primaries`` and
    ``transfer`` (FFmpeg's numbers) into BT.709 SDR, slowly, or fails to convert them
    (see PLAIN_PRIMARIES)."""
    return primaries not in PLAIN_PRIMARIES or transfer not in PLAIN_TRANSFERS


def _colour_tags(path: str | Path) -> tuple[int, int] | None:
    """The primaries and transfer the first video stream of ``path`` is tagged with; None
    when PyAV cannot open it (OpenCV then decodes it, or says why it cannot)."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError):
        return None
    try:
        if not container.streams.video:
            return None
        codec = container.streams.video[0].codec_context
        return int(codec.color_primaries), int(codec.color_trc)
    finally:
        container.close()


def read_frames(path: str | Path, indices: Iterable[int]) -> tuple[list[np.ndarray], list[int]]:
    """Decode the frames at ``indices`` (sorted, duplicates dropped) as RGB uint8 arrays.

    Returns the frames and the indices actually read: a truncated video yields fewer than
    asked. Raises :class:`VideoError` when none of the requested frames can be read.
    OpenCV decodes, but a stream whose colours it would map into BT.709 SDR or not
    convert (:func:`opencv_maps_colours`: wide-gamut, HDR or log clips) is decoded with PyAV
    (:func:`pyav_read_frames`), which converts YUV to RGB with the stream's own matrix as
    FFmpeg's command line does, 10-100 times faster, and turns frames as OpenCV does.
    """
    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    if not wanted:
        return [], []
    _existing_file(path)
    tags = _colour_tags(path)
    if tags is not None and opencv_maps_colours(*tags):
        return pyav_read_frames(path, wanted, seek=True)
    cap = _open(path)
    frames: list[np.ndarray] = []
    read: list[int] = []
    pos = 0  # index of the frame the next grab() returns
    try:
        for idx in wanted:
            if idx - pos > SEEK_MIN_GAP:
                landed = (cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                          and cap.get(cv2.CAP_PROP_POS_FRAMES) == idx)
                if landed:
                    pos = idx
                else:
                    # The seek fell short (a truncated file, irregular timestamps) and left the
                    # decoder somewhere else: decode forward from the start instead.
                    cap.release()
                    cap = _open(path)
                    pos = 0
            ok = True
            while ok and pos < idx:
                ok = cap.grab()
                pos += 1
            if not ok or not cap.grab():
                break  # the stream ends before idx
            pos += 1
            ok, bgr = cap.retrieve()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            read.append(idx)
    finally:
        cap.release()
    return decoded(path, frames, read, wanted)


def _pyav_decoded(av: Any, container: Any, stream: Any) -> Iterator[Any]:
    """The stream's frames from where the container stands; a damaged packet ends them,
    as it ends OpenCV's ``grab()``."""
    try:
        yield from container.decode(stream)
    except av.FFmpegError:
        return


def _pyav_open(av: Any, path: str | Path) -> tuple[Any, Any]:
    """The container and its first video stream, set for frame threading."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError):
        raise VideoError(path, "not a video or truncated (PyAV cannot open it)") from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "no video track")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame threading: consecutive frames decode at once
    if _threads():
        stream.codec_context.thread_count = _threads()
    return container, stream


def _pyav_rgb(frame: Any) -> np.ndarray:
    """A PyAV frame as RGB, turned upright by its display matrix as OpenCV turns it."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise degrees
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def pyav_read_frames(path: str | Path, indices: Iterable[int], seek: bool = False
                     ) -> tuple[list[np.ndarray], list[int]]:
    """:func:`read_frames` with PyAV: the frames at ``indices`` (sorted, duplicates
    dropped) as RGB uint8 arrays, upright, and the indices read, decoded with frame
    threading. Frames are counted in decoding order; with ``seek`` a gap longer than
    ``SEEK_MIN_GAP`` is crossed by seeking to the key frame before the wanted frame, whose
    index is then its timestamp times the frame rate (a seek that lands past it decodes
    from the start instead). :class:`VideoError` when none of the frames decodes."""
    import av

    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    if not wanted:
        return [], []
    container, stream = _pyav_open(av, path)
    frames: list[np.ndarray] = []
    read: list[int] = []
    try:
        origin, rate, unit = stream.start_time or 0, stream.average_rate, stream.time_base
        numbered: Iterator[tuple[int, Any]] = enumerate(_pyav_decoded(av, container, stream))
        pos = 0  # index of the frame `numbered` yields next
        for idx in wanted:
            if seek and rate and idx - pos > SEEK_MIN_GAP:
                container.seek(origin + int(idx / rate / unit), stream=stream)
                numbered = ((round((f.pts - origin) * unit * rate), f)
                            for f in _pyav_decoded(av, container, stream))
                first = next(numbered, None)
                if first is None or first[0] > idx:
                    # The seek fell past the frame (a truncated file, irregular timestamps)
                    # and left the decoder elsewhere: decode forward from the start instead.
                    container.close()
                    container, stream = _pyav_open(av, path)
                    numbered = enumerate(_pyav_decoded(av, container, stream))
                else:
                    numbered = itertools.chain([first], numbered)
            found = next(((i, f) for i, f in numbered if i >= idx), None)
            if found is None:
                break  # the stream ends before idx
            pos = found[0] + 1
            if found[0] == idx:
                try:
                    frames.append(_pyav_rgb(found[1]))
                except av.FFmpegError as exc:  # colours FFmpeg cannot convert to RGB
                    raise VideoError(path, f"frame {idx} cannot be converted to RGB "
                                           f"({exc.strerror or exc})") from None
                read.append(idx)
    finally:
        container.close()
    return decoded(path, frames, read, wanted)


def decoded(path: str | Path, frames: list[np.ndarray], read: list[int], wanted: list[int]
            ) -> tuple[list[np.ndarray], list[int]]:
    """``(frames, read)`` of a decoder that was asked for ``wanted``; :class:`VideoError`
    when it decoded none of them."""
    if not frames:
        raise VideoError(path, f"no frames decoded (asked for {len(wanted)} from frame "
                               f"{wanted[0]}; truncated or corrupt)")
    return frames, read
