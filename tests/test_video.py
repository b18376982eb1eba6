"""Frame sampling and sparse decoding (dflib.video) on small videos made here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from dflib import video
from dflib.video import VideoError, probe, pyav_read_frames, read_frames, sample_indices

W, H = 160, 120


def numbered_frame(i: int) -> np.ndarray:
    """A BGR frame that differs from every other one: its number and a grey level."""
    frame = np.full((H, W, 3), (i * 7) % 256, np.uint8)
    cv2.putText(frame, str(i), (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return frame


def write_mp4v(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (W, H))
    for i in range(n):
        writer.write(numbered_frame(i))
    writer.release()
    return path


def write_h264(path: Path, n: int, extra: tuple[str, ...] = ()) -> Path:
    """H.264 with B-frames and a 30-frame GOP, the kind of file the datasets hold."""
    gen = imageio_ffmpeg.write_frames(str(path), (W, H), fps=25, codec="libx264",
                                      macro_block_size=1, output_params=["-g", "30", *extra])
    gen.send(None)
    for i in range(n):
        gen.send(np.ascontiguousarray(numbered_frame(i)[:, :, ::-1]))
    gen.close()
    return path


def sequential(path: Path) -> list[np.ndarray]:
    """Every frame, decoded one after the other, as RGB."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    full = write_h264(d / "faststart.mp4", 150, ("-movflags", "+faststart"))
    data = full.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    garbled = bytearray(data)  # a third of the way in, 3,000 bytes of noise
    garbled[len(data) // 3: len(data) // 3 + 3000] = np.random.default_rng(0).bytes(3000)
    (d / "garbled.mp4").write_bytes(bytes(garbled))
    (d / "empty.mp4").touch()
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    return {"mp4v": write_mp4v(d / "mp4v.mp4", 120), "h264": write_h264(d / "h264.mp4", 150),
            "truncated": d / "truncated.mp4", "garbled": d / "garbled.mp4", "empty": d / "empty.mp4", "text": d / "text.mp4"}


# -- sampling -------------------------------------------------------------------------

def test_first_takes_the_first_frames():
    assert sample_indices(100, 5, "first") == [0, 1, 2, 3, 4]


def test_even_spans_the_video_like_deepfakebench():
    idx = sample_indices(100, 5, "even")
    assert idx == [int(v) for v in np.linspace(0, 99, 5)]
    assert idx[0] == 0 and idx[-1] == 99
    assert sample_indices(10, 1, "even") == [0]


def test_every_k_starts_at_zero_and_caps_at_n():
    assert sample_indices(100, 4, "every_k", every_k=10) == [0, 10, 20, 30]
    assert sample_indices(25, 10, "every_k", every_k=10) == [0, 10, 20]


@pytest.mark.parametrize("strategy", ["first", "even", "every_k"])
def test_short_and_empty_videos(strategy):
    assert sample_indices(3, 10, strategy, every_k=1) == [0, 1, 2]
    assert sample_indices(0, 10, strategy) == []
    indices = sample_indices(1000, 32, strategy, every_k=7)
    assert len(indices) == len(set(indices)) == 32 and indices == sorted(indices)


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="middle"):
        sample_indices(10, 2, "middle")
    with pytest.raises(ValueError, match="every_k"):
        sample_indices(10, 2, "every_k", every_k=0)


# -- probing and errors ---------------------------------------------------------------

def test_probe(videos):
    info = probe(videos["mp4v"])
    assert (info.n_frames, info.width, info.height) == (120, W, H)
    assert info.fps == pytest.approx(25)


@pytest.mark.parametrize("name, reason", [("empty", "zero-byte"), ("text", "not a video")])
def test_bad_files_raise_one_line_errors_naming_the_file(videos, name, reason):
    for call in (lambda p: probe(p), lambda p: read_frames(p, [0])):
        with pytest.raises(VideoError, match=reason) as info:
            call(videos[name])
        message = str(info.value)
        assert str(videos[name]) in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe(tmp_path / "gone.mp4")


# -- decoding -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mp4v", "h264"])
def test_read_frames_returns_exactly_the_requested_frames(videos, kind):
    reference = sequential(videos[kind])
    # Unsorted, duplicated, with gaps short (grab) and long (seek), last frame included.
    wanted = [90, 3, 3, 0, 10, 119, 60, 61]
    frames, read = read_frames(videos[kind], wanted)
    assert read == sorted(set(wanted))
    for idx, frame in zip(read, frames):
        assert frame.dtype == np.uint8 and frame.shape == (H, W, 3)
        np.testing.assert_array_equal(frame, reference[idx])


class CountingCapture:
    """cv2.VideoCapture that counts the calls that decode or convert frames."""

    calls: dict[str, int] = {}
    real = cv2.VideoCapture  # the test patches cv2.VideoCapture itself

    def __init__(self, *args):
        self._cap = CountingCapture.real(*args)

    def __getattr__(self, name):
        attr = getattr(self._cap, name)
        if name in ("grab", "retrieve", "read", "set"):
            def counted(*a):
                CountingCapture.calls[name] = CountingCapture.calls.get(name, 0) + 1
                return attr(*a)
            return counted
        return attr


def test_one_decoder_thread_gives_the_same_frames(videos, monkeypatch):
    """Dask workers decode with one FFmpeg thread each (dflib.faces sets it)."""
    wanted = [0, 5, 90, 149]
    default, _ = read_frames(videos["h264"], wanted)
    monkeypatch.setattr(video, "_decoder_threads", 0)  # restored after the test
    video.set_decoder_threads(1)
    single, read = read_frames(videos["h264"], wanted)
    assert read == wanted
    for a, b in zip(default, single):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(VideoError, match="not a video"):
        read_frames(videos["text"], [0])


def test_a_thread_can_decode_with_its_own_thread_count(videos, monkeypatch):
    """decode_ahead's thread decodes with the cores the detector leaves; the main
    thread, and other threads, keep the process's count."""
    import threading

    monkeypatch.setattr(video, "_decoder_threads", 0)
    seen = {}

    def opened(name):
        cap = video._open(videos["h264"])
        seen[name] = (video._threads(), int(cap.get(cv2.CAP_PROP_N_THREADS)))
        cap.release()

    with video.decoder_threads(1):
        opened("inside")
        other = threading.Thread(target=opened, args=("other thread",))
        other.start()
        other.join()
    opened("after")
    assert seen["inside"] == (1, 1)
    assert seen["other thread"][0] == seen["after"][0] == 0
    assert seen["after"][1] > 1 or os.cpu_count() == 1  # FFmpeg's choice: a thread a core


def test_read_frames_decodes_only_what_it_needs(videos, monkeypatch):
    monkeypatch.setattr(video.cv2, "VideoCapture", CountingCapture)
    CountingCapture.calls = {}
    frames, read = read_frames(videos["h264"], [2, 5, 140])
    calls = CountingCapture.calls
    assert read == [2, 5, 140]
    assert calls.get("retrieve") == 3 and "read" not in calls
    assert calls.get("set") == 1  # the long gap 5 -> 140 is a seek...
    assert calls["grab"] == 6 + 1  # ...the short ones are grabbed: 0..5, then 140


def test_truncated_video_yields_the_frames_it_has(videos):
    reference = sequential(videos["truncated"])
    assert 0 < len(reference) < 150
    assert probe(videos["truncated"]).n_frames == 150  # the container's count is a hint
    frames, read = read_frames(videos["truncated"], [0, 5, len(reference) - 1, 140])
    assert read == [0, 5, len(reference) - 1]
    np.testing.assert_array_equal(frames[-1], reference[-1])
    with pytest.raises(VideoError, match="no frames decoded"):
        read_frames(videos["truncated"], [145])


def test_a_clip_cut_without_reencoding_samples_frames_that_exist(videos, tmp_path):
    """A stream copy from the middle of a GOP: the MP4 lists the pre-roll frames it cannot
    show, so its count is larger than what decodes."""
    import subprocess

    from dflib.video import count_frames, sample_frames

    cut = tmp_path / "cut.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-ss", "1.3", "-t",
                    "2", "-i", str(videos["h264"]), "-c", "copy", str(cut)], check=True)
    n = count_frames(cut)
    assert 0 < n < probe(cut).n_frames
    got = sample_frames(cut, 8, "even")
    assert got.read == got.wanted == sample_indices(n, 8, "even") and got.damage == ""
    np.testing.assert_array_equal(got.frames[-1], sequential(cut)[-1])


def test_an_mp4_with_audio_and_no_video_track_says_exactly_that(tmp_path):
    import subprocess

    sound = tmp_path / "sound.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "sine=duration=1", "-c:a", "aac", str(sound)], check=True)
    with pytest.raises(VideoError) as err:
        probe(sound)
    assert str(err.value) == f"{sound}: an audio track but no video track"


# -- PyAV (wide-gamut and HDR streams, dflib bench decode) -----------------------------------------------------------

# PyAV's rgb24 conversion and OpenCV's BGR one followed by a channel swap gave identical
# pixels on every video measured (dflib bench decode's max_abs_diff was 0).
PYAV_MAX_DIFF = 0


@pytest.mark.parametrize("kind", ["mp4v", "h264"])
@pytest.mark.parametrize("sampling", ["first", "even"])
@pytest.mark.parametrize("seek", [False, True])
def test_pyav_reads_the_frames_opencv_reads(videos, kind, sampling, seek):
    n_frames = probe(videos[kind]).n_frames
    # Even sampling of 3 frames leaves gaps above SEEK_MIN_GAP: both decoders seek.
    wanted = sample_indices(n_frames, 8 if sampling == "first" else 3, sampling)
    expected, indices = read_frames(videos[kind], wanted)
    frames, read = pyav_read_frames(videos[kind], [*reversed(wanted), wanted[0]], seek=seek)
    assert read == indices == wanted
    for a, b in zip(frames, expected):
        assert a.dtype == np.uint8 and a.shape == b.shape
        assert np.abs(a.astype(np.int16) - b).max() <= PYAV_MAX_DIFF


class SeekCounter:
    """av.open's container, counting its seeks."""

    seeks = 0

    def __init__(self, container):
        self._container = container

    def __getattr__(self, name):
        return getattr(self._container, name)

    def seek(self, *args, **kwargs):
        SeekCounter.seeks += 1
        return self._container.seek(*args, **kwargs)


@pytest.mark.parametrize("seek, seeks", [(False, 0), (True, 1)])
def test_pyav_seeks_only_across_long_gaps_and_when_asked(videos, monkeypatch, seek, seeks):
    import av

    opened = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: SeekCounter(opened(*a, **k)))
    SeekCounter.seeks = 0
    frames, read = pyav_read_frames(videos["h264"], [2, 5, 140], seek=seek)
    assert read == [2, 5, 140] and SeekCounter.seeks == seeks
    np.testing.assert_array_equal(frames[-1], read_frames(videos["h264"], [140])[0][0])


class OvershootingSeek(SeekCounter):
    """A container whose seeks land 60 frames (two GOPs) past where they were sent."""

    def seek(self, offset, stream):
        return super().seek(offset + int(60 / stream.average_rate / stream.time_base),
                            stream=stream)


def test_pyav_decodes_from_the_start_when_a_seek_lands_past_its_frame(videos, monkeypatch):
    import av

    opened = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: OvershootingSeek(opened(*a, **k)))
    frames, read = pyav_read_frames(videos["h264"], [5, 60, 61], seek=True)
    expected, _ = read_frames(videos["h264"], [5, 60, 61])
    assert read == [5, 60, 61]
    for a, b in zip(frames, expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["truncated", "garbled"])
@pytest.mark.parametrize("seek", [False, True])
def test_pyav_on_a_damaged_video_yields_the_frames_opencv_yields(videos, name, seek):
    last = len(sequential(videos[name])) - 1
    assert 0 < last < 149
    wanted = [0, 5, last, 140]
    expected, indices = read_frames(videos[name], wanted)
    frames, read = pyav_read_frames(videos[name], wanted, seek=seek)
    # Decoding in order stops at the damage; a seek, PyAV's or OpenCV's, can land past it.
    assert read == (indices if seek else [0, 5, last])
    assert indices[:3] == [0, 5, last]
    for a, b in zip(frames, expected):
        np.testing.assert_array_equal(a, b)
    if name == "garbled" and seek:
        return  # the seek to frame 145 lands past the damage: it decodes
    with pytest.raises(VideoError, match="no frames decoded") as info:
        pyav_read_frames(videos[name], [145], seek=seek)
    assert str(videos[name]) in str(info.value)


@pytest.mark.parametrize("name", ["empty", "text"])
def test_pyav_refuses_a_file_that_is_no_video_in_one_line_naming_it(videos, name):
    with pytest.raises(VideoError, match="not a video") as info:
        pyav_read_frames(videos[name], [0])
    assert str(info.value).startswith(f"{videos[name]}: ") and "\n" not in str(info.value)


# -- wide-gamut and HDR streams ---------------------------------------------------------

HLG_BT2020 = ("-x264-params", "colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc")


@pytest.mark.parametrize("primaries, transfer, maps", [
    (1, 1, False),    # BT.709
    (2, 2, False),    # untagged
    (6, 6, False),    # SMPTE 170M (NTSC)
    (5, 13, False),   # BT.470 BG, sRGB transfer
    (1, 14, False),   # BT.2020 10-bit transfer is an SDR curve
    (9, 18, True),    # BT.2020, HLG: phone HDR
    (9, 16, True),    # BT.2020, PQ
    (9, 1, True),     # BT.2020 primaries alone
    (12, 1, True),    # Display P3
    (1, 18, True),    # HLG alone
    (1, 9, True),     # a log transfer: OpenCV returns black frames
])
def test_opencv_maps_wide_gamut_and_hdr_colours(primaries, transfer, maps):
    assert video.opencv_maps_colours(primaries, transfer) is maps


def ffmpeg_rgb(path: Path) -> list[np.ndarray]:
    """Every frame as FFmpeg's command line converts it to RGB: with the stream's own
    matrix, no mapping of primaries or transfer."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(raw, np.uint8).reshape(h, w, 3) for raw in reader]


@pytest.fixture(scope="module")
def hlg_videos(tmp_path_factory) -> dict[str, Path]:
    """An HLG/BT.2020-tagged clip like a phone's HDR video, the same stream with a
    display matrix of 90 degrees (a phone held upright), and a clip tagged with a log
    transfer."""
    d = tmp_path_factory.mktemp("hlg")
    plain = write_h264(d / "hlg.mp4", 60, HLG_BT2020)
    turned = d / "hlg_turned.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90",
                    "-i", str(plain), "-c", "copy", str(turned)], check=True)
    log = write_h264(d / "log.mp4", 60, ("-x264-params", "transfer=log100"))
    untagged = write_h264(d / "untagged.mp4", 60)
    return {"plain": plain, "turned": turned, "log": log, "untagged": untagged}


def test_an_hdr_stream_decodes_with_its_own_colours_not_mapped_ones(hlg_videos):
    """OpenCV would map the HLG/BT.2020 colours into BT.709 SDR (slowly: seconds per opened
    video); read_frames gives FFmpeg's plain conversion, pixel for pixel, at every index."""
    wanted = [0, 5, 59]  # 5 -> 59 crosses a gap above SEEK_MIN_GAP
    frames, read = read_frames(hlg_videos["plain"], wanted)
    reference = ffmpeg_rgb(hlg_videos["plain"])
    assert read == wanted
    for frame, i in zip(frames, read):
        np.testing.assert_array_equal(frame, reference[i])


def test_a_log_tagged_stream_is_not_decoded_black(hlg_videos):
    """OpenCV returns black frames for a log transfer; the tag changes nothing in the
    pixels, so the frames equal those of the same clip untagged."""
    frames, read = read_frames(hlg_videos["log"], [0, 5, 59])
    expected, _ = read_frames(hlg_videos["untagged"], [0, 5, 59])
    assert read == [0, 5, 59]
    for a, b in zip(frames, expected):
        np.testing.assert_array_equal(a, b)


def test_an_hdr_stream_is_turned_upright_as_opencv_turns_it(hlg_videos):
    frames, _ = read_frames(hlg_videos["plain"], [3])
    turned, _ = read_frames(hlg_videos["turned"], [3])
    cap = cv2.VideoCapture(str(hlg_videos["turned"]))  # OpenCV turns it (colours aside)
    for _ in range(4):
        ok, bgr = cap.read()
    cap.release()
    assert ok and turned[0].shape == bgr.shape == (W, H, 3)
    # A display matrix of +90 degrees turns the picture a quarter counter-clockwise.
    np.testing.assert_array_equal(turned[0], np.rot90(frames[0]))
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(float).ravel()
            for f in (turned[0], bgr[:, :, ::-1])]
    assert np.corrcoef(*grey)[0, 1] > 0.95


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_pyav_turns_frames_as_opencv_does(videos, tmp_path, rotation):
    turned = tmp_path / f"turned{rotation}.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation",
                    str(rotation), "-i", str(videos["h264"]), "-c", "copy", str(turned)],
                   check=True)
    expected, _ = read_frames(turned, [0, 7])  # an untagged stream: OpenCV decodes it
    frames, read = pyav_read_frames(turned, [0, 7])
    assert read == [0, 7]
    for a, b in zip(frames, expected):
        np.testing.assert_array_equal(a, b)


def test_colours_pyav_cannot_convert_stop_the_video_in_one_line(tmp_path):
    """The BT.2020 constant-luminance matrix: OpenCV returns black frames, FFmpeg's RGB
    conversion refuses it."""
    clip = write_h264(tmp_path / "cl.mp4", 5, ("-x264-params", "colormatrix=bt2020c"))
    with pytest.raises(VideoError, match="cannot be converted to RGB") as info:
        pyav_read_frames(clip, [0])
    assert str(info.value).startswith(f"{clip}: frame 0 ") and "\n" not in str(info.value)
