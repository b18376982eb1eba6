"""Benchmarks of the heavy steps, each against a baseline measured in the same run.

``decode``: dflib's :func:`~dflib.video.read_frames` (OpenCV) against PyAV (frame threading,
decoding in order or seeking to the key frame before a distant frame) on the same sampled
frames, with the largest pixel difference between them.
``extract``: on the same videos and sampled frames, decoding alone, the original study's
face extraction (every frame decoded in order, one full-resolution ``MTCNN.detect`` per
frame with facenet-pytorch's defaults, largest box cropped) and dflib's
:class:`~dflib.face_extractor.FaceExtractor` with the profile defaults, also as the stage runs it
(the next video decoded while the detector works). ``steps``: the share of each step of
dflib's extraction (decoding, pyramid, the three networks, crops, ...), searching every
frame against the key-frame search. ``parallel``:
:func:`~dflib.faces.run_extraction` with 1, 2, ... Dask workers. ``train_memory``: peak
RSS of one training epoch on a face store at 1x and k x the faces, each in a fresh
process. ``footage`` writes 720p videos (dflib.synth) and 1080p "distant speaker" videos
made from them. Tables are returned as DataFrames; the CLI prints them and writes CSVs.
torch, facenet-pytorch and keras are imported on first use only.

Over 600 lines on purpose: developer tooling outside the runtime path (only ``dflib bench``
imports it), and each benchmark is a few functions around one shared harness (the same
videos and frames for baseline and candidate, the timing, the summary row); split per
benchmark, that harness would be imported back by every part.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import datasets, io, synth
from .devices import resolve_device, settle_frame_memory
from .face_extractor import FaceExtractor, profile_defaults, shot_changes
from .face_store import FaceStore
from .faces import decode_ahead, extraction_threads, run_extraction
from .paths import RunPaths
from .steptimes import COUNTS, STEPS, recording
from .video import (Sampled, VideoError, probe, pyav_read_frames, read_frames,
                    sample_frames, sample_indices)

EXTRACT_COLUMNS = ["footage", "resolution", "device", "settings", "videos", "frames",
                   "repeats", "decode_fps", "baseline_fps", "dflib_fps", "dflib_ahead_fps", "speedup",
                   "dflib_to_decode", "baseline_faces", "dflib_faces", "faces_lost",
                   "agreement", "mean_iou", "baseline_self_agreement", "baseline_self_iou",
                   "baseline_switches", "dflib_switches"]
# `bench steps`: MTCNN searched on every sampled frame, as the paper did (the baseline
# row), against the profile's key-frame search, on the same decoded frames.
STEP_SEARCHES = ("every_frame", "key_frames")
STEP_SHARES = ("decode", *STEPS, "other")
STEPS_COLUMNS = ["footage", "resolution", "device", "search", "videos", "frames",
                 "ms_per_frame", "speedup", *(f"{name}_share" for name in STEP_SHARES), *COUNTS]
PARALLEL_COLUMNS = ["workers", "decode_ahead", "videos", "frames", "repeats", "seconds",
                    "seconds_min", "seconds_max", "frames_per_s", "speedup"]
FEED_COLUMNS = ["feed", "augment", "workers", "samples", "feed_per_s", "train_step_per_s",
                "ratio"]
# opencv: dflib's read_frames, the baseline; pyav: PyAV decoding in order with frame
# threading; pyav_seek: the same, seeking across gaps longer than SEEK_MIN_GAP.
DECODERS = ("opencv", "pyav", "pyav_seek")
DECODE_COLUMNS = ["footage", "resolution", "sampling", "decoder", "videos", "frames", "repeats",
                  "fps", "fps_min", "fps_max", "ratio", "same_indices", "max_abs_diff"]
MEMORY_COLUMNS = ["scale", "videos", "faces", "store_mb", "rss_before_fit_mb", "peak_rss_mb",
                  "seconds", "peak_ratio"]
# The original study's crop: 160 px faces with a 40 px margin (docs/reference.md).
BASELINE_IMG_SIZE, BASELINE_MARGIN = 160, 40

Box = tuple[float, float, float, float]


def profile_extractor_params(device: str = "auto") -> dict[str, Any]:
    """FaceExtractor arguments as a profile that sets nothing gets them (the fields' defaults)."""
    return {**profile_defaults(), "device": device}


def find_videos(path: str | Path) -> list[Path]:
    """``path`` itself, or the videos under a folder by the adapters' scanning rule
    (:func:`dflib.datasets.scan_folder`: recursive, sorted, hidden entries skipped); an
    entry it cannot read prints one line on stderr naming it."""
    p = Path(path)
    if p.is_dir():
        found, problems = datasets.scan_folder(p, p)
        for row in problems:
            print(f"{p / row['_rel']}: {row['reason']}, left out", file=sys.stderr)
        return found
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return [p]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_boxes(baseline: Sequence[Box | None], fast: Sequence[Box | None]
                  ) -> tuple[float, float]:
    """``(agreement, mean_iou)``: the share of frames where both or neither found a face,
    and the mean IoU over frames where both did (NaN when there are none)."""
    if len(baseline) != len(fast):
        raise ValueError(f"{len(baseline)} baseline frames against {len(fast)} fast frames")
    if not baseline:
        return math.nan, math.nan
    agree = np.mean([(a is None) == (b is None) for a, b in zip(baseline, fast)])
    ious = [box_iou(a, b) for a, b in zip(baseline, fast) if a is not None and b is not None]
    return float(agree), float(np.mean(ious)) if ious else math.nan


def shifted_right(rgb: np.ndarray) -> np.ndarray:
    """The frame moved one pixel to the right (its first column repeated): the smallest
    change of a picture, to see which of a detector's decisions it moves."""
    return np.concatenate([rgb[:, :1], rgb[:, :-1]], axis=1)


def faces_lost(baseline: Sequence[Box | None], fast: Sequence[Box | None]) -> int:
    """The frames where the baseline found a face and the fast extractor none: counted
    frame by frame, so faces found in other frames do not make up for them."""
    return sum(a is not None and b is None for a, b in zip(baseline, fast))


class BaselineExtractor:
    """The original study's extraction: facenet-pytorch ``MTCNN`` with its defaults
    (min_face_size 20, factor 0.709), one ``detect`` per full-resolution frame, the
    largest box cropped to 160 px with a 40 px margin."""

    def __init__(self, device: str) -> None:
        import torch
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(image_size=BASELINE_IMG_SIZE, margin=BASELINE_MARGIN,
                           device=torch.device(device)).eval()

    def self_agreement(self, frames: Sequence[np.ndarray], boxes: Sequence[Box | None]
                       ) -> tuple[float, float]:
        """:func:`compare_boxes` of this detector's ``boxes`` on ``frames`` against its own
        on the frames moved one pixel right (:func:`shifted_right`, the boxes moved back):
        how far its decisions hold at all. Faces near MTCNN's limit come and go and its
        largest face jumps between people with such a pixel; where this agreement is low,
        no other extractor can agree with the baseline more than the baseline with itself."""
        moved = [self.frame(shifted_right(rgb)) for rgb in frames]
        return compare_boxes(boxes, [None if b is None else (b[0] - 1, b[1], b[2] - 1, b[3])
                                     for b in moved])

    def frame(self, rgb: np.ndarray) -> Box | None:
        """The largest face's box in one RGB frame (its crop is made and dropped)."""
        from facenet_pytorch.models.utils.detect_face import extract_face

        boxes, _ = self.mtcnn.detect(rgb)
        if boxes is None:
            return None
        box = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
        extract_face(rgb, box, BASELINE_IMG_SIZE, BASELINE_MARGIN)
        return tuple(float(v) for v in box)  # type: ignore[return-value]

    def video(self, path: Path, indices: Sequence[int]) -> dict[int, Box | None]:
        """Decode every frame in order up to the last of ``indices`` and detect on the frames
        in ``indices``; frames past the end are missing. The frames are dflib's
        (:func:`read_frames`: the same pixels dflib's extractor gets, also where OpenCV would
        map a wide-gamut or HDR stream's colours)."""
        wanted = set(indices)
        try:
            frames, read = read_frames(path, range(max(indices) + 1))
        except VideoError:
            frames, read = [], []
        found: dict[int, Box | None] = {i: self.frame(frame) for i, frame in zip(read, frames)
                                        if i in wanted}
        if not found:
            raise VideoError(path, "the baseline decoded no frame")
        return found


def _first_frames(path: Path, n: int) -> tuple[Any, list[np.ndarray], list[int], float]:
    """``(probe, frames, indices read, seconds)`` of decoding a video's first ``n`` frames."""
    info = probe(path)
    start = time.perf_counter()
    frames, read = read_frames(path, sample_indices(info.n_frames, n, "first"))
    return info, frames, read, time.perf_counter() - start


def _bench_video(path: Path, n: int, baseline: BaselineExtractor, fast: FaceExtractor
                 ) -> dict[str, Any]:
    """Time the baseline on one video's first ``n`` frames (those past the stream's real
    end are not read: :func:`read_frames` says which were), and find dflib's faces in
    them (decoding and dflib are timed in turns later: :func:`_in_turns`)."""
    info, frames, read, _ = _first_frames(path, n)
    wanted = sample_indices(info.n_frames, n, "first")
    found = fast.extract(frames)

    start = time.perf_counter()
    base = baseline.video(path, wanted)
    baseline_s = time.perf_counter() - start

    common = [i for i in read if i in base]  # a truncated file can lose frames in either
    fast_boxes = dict(zip(read, (f.box for f in found)))
    cut = dict(zip(read, shot_changes(frames)))
    by_index = dict(zip(read, frames))
    self_agreement = baseline.self_agreement([by_index[i] for i in common],
                                             [base[i] for i in common])
    return {"path": path, "resolution": f"{info.width}x{info.height}", "frames": len(common),
            "baseline_s": baseline_s, "baseline": [base[i] for i in common],
            "dflib": [fast_boxes[i] for i in common],
            "cuts": [cut[i] for i in common], "self_agreement": self_agreement}


def face_switches(boxes: Sequence[Box | None], cuts: Sequence[bool]) -> int:
    """How often the face kept jumps to another place between two neighbouring frames of
    one shot (``cuts``: the picture cut before that frame): its centre moves more than half
    the face's side (the mean of the two boxes'). Neighbouring frames of one person move
    far less, so each such jump is another face taking the track over."""
    switches = 0
    for a, b, cut in zip(boxes, boxes[1:], cuts[1:]):
        if a is None or b is None or cut:
            continue
        side = (max(a[2] - a[0], a[3] - a[1]) + max(b[2] - b[0], b[3] - b[1])) / 2
        shift = math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
        switches += shift > side / 2
    return switches


def _decoding_ahead_seconds(paths: Sequence[Path], n: int, fast: FaceExtractor
                            ) -> list[float]:
    """Per video of ``paths``, the seconds dflib spends on it as :func:`run_extraction`
    runs it, the next video's frames decoded in a thread (:func:`decode_ahead`) while the
    detector works on the current one: waiting for its frames, then detecting. The last
    video is run first, untimed, so that the first one too is decoded while the detector
    works, as in the middle of a stage run."""
    order = [str(p) for p in [paths[-1], *paths]]
    seconds: list[float] = []
    start = time.perf_counter()
    for sampled in decode_ahead(order, n, "first", 1):
        if isinstance(sampled, Sampled):
            fast.extract(sampled.frames)
        now = time.perf_counter()
        seconds.append(now - start)
        start = now
    return seconds[1:]


def _serial_seconds(paths: Sequence[Path], n: int, fast: FaceExtractor
                    ) -> list[tuple[float, float]]:
    """Per video of ``paths``, the seconds of decoding and of the whole of
    :func:`run_extraction`'s way without the decoding thread: the video's frames sampled
    (:func:`sample_frames`, as the thread does), then detected on."""
    seconds = []
    for path in paths:
        start = decoded = time.perf_counter()
        try:
            frames = sample_frames(path, n, "first", 1).frames
            decoded = time.perf_counter()
            fast.extract(frames)
        except VideoError:
            pass  # read by _bench_video before: only a file changed since fails here
        seconds.append((decoded - start, time.perf_counter() - start))
    return seconds


def _in_turns(paths: Sequence[Path], n: int, fast: FaceExtractor, repeats: int
              ) -> tuple[list[float], list[float], list[float]]:
    """Per video, the median seconds of decoding and of dflib serially
    (:func:`_serial_seconds`, which decodes first) and of dflib decoding ahead
    (:func:`_decoding_ahead_seconds`), the two ways timed in ``repeats`` turns each, one
    after the other over all videos: a load that changes over the minutes of a benchmark
    then weighs on both alike (timed one after the other, each once, they differed by a
    quarter either way). Decoding is timed in the same turns, so ``dflib_to_decode``
    compares medians of the same runs (one decode timed once had moved it by half)."""
    serial: list[list[tuple[float, float]]] = []
    ahead: list[list[float]] = []
    for _ in range(repeats):
        serial.append(_serial_seconds(paths, n, fast))
        ahead.append(_decoding_ahead_seconds(paths, n, fast))
    return ([float(np.median([t[0] for t in turns])) for turns in zip(*serial)],
            [float(np.median([t[1] for t in turns])) for turns in zip(*serial)],
            [float(np.median(turns)) for turns in zip(*ahead)])


def _warm_up(path: Path, baseline: BaselineExtractor, fast: FaceExtractor) -> None:
    """One untimed call of each detector, so model loading and first-call set-up are not
    charged to the first video."""
    frames, _ = read_frames(path, [0])
    fast.extract(frames)
    baseline.frame(frames[0])


def _videos(paths: Sequence[str | Path]) -> list[Path]:
    """The videos of every entry of ``paths`` (a video or a folder), in order; an entry
    that names none prints one line on stderr and is left out."""
    videos = []
    for group in paths:
        try:
            videos += find_videos(group)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
    return videos


def _geomean(values: Iterable[float]) -> float:
    """Geometric mean of the positive, finite ``values`` (NaN without any)."""
    kept = [v for v in values if v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(kept)))) if kept else math.nan


def bench_extract(paths: Sequence[str | Path], frames: int = 25, device: str = "auto",
                  params: dict[str, Any] | None = None, progress: bool = True,
                  repeats: int = 3) -> pd.DataFrame:
    """One row per video of ``paths`` (videos and folders of videos), then a summary row
    (``footage`` ``all``): dflib's detector settings, frames/s of decoding, the baseline
    and dflib (both include decoding), dflib's speed-up over the baseline and its rate as a
    share of decoding alone (1 would mean detection costs nothing beyond the decoder), the
    frames with a face per method, the baseline's faces dflib lost (:func:`faces_lost`),
    agreement and mean IoU
    (see :func:`compare_boxes`), the same two of the baseline against itself on the
    frames moved by a pixel (:meth:`BaselineExtractor.self_agreement`: the most any
    extractor can agree with it), and how often each method's face jumped to another person
    within a shot (:func:`face_switches`).

    ``dflib_fps`` decodes each video, then detects on it; ``dflib_ahead_fps`` is
    :func:`run_extraction`'s way, decoding the next video while detecting on this one;
    the two are timed in ``repeats`` turns over all videos, each rate from its median
    turn (:func:`_in_turns`), and ``speedup`` is the baseline's time over the serial one.
    The summary row's rates are over all frames; its ``speedup`` and ``dflib_to_decode``
    are the geometric means of the videos', its agreements and IoUs the lowest video's,
    its counts the sums. Both detectors run with the stage's thread settings
    (:func:`dflib.faces.extraction_threads`). ``params`` overrides the profile's
    FaceExtractor defaults. An unreadable video or path prints one line on stderr naming
    it and is left out.
    """
    settle_frame_memory()  # as the faces stage does, before torch starts threads
    device = resolve_device(device)
    fast = FaceExtractor.from_params({**profile_extractor_params(device), **(params or {})})
    baseline = BaselineExtractor(device)
    settings = (f"min_face_size={fast.min_face_size} factor={fast.factor} "
                f"detect_max_side={fast.detect_max_side} redetect_every={fast.redetect_every}")
    results = []
    with extraction_threads():
        for video in tqdm(_videos(paths), desc="bench extract", unit="video",
                          disable=not progress):
            try:
                if not results:
                    _warm_up(video, baseline, fast)
                results.append(_bench_video(video, frames, baseline, fast))
            except VideoError as exc:
                tqdm.write(f"error: {exc}", file=sys.stderr)  # on its own line, not the bar's
        if not results:
            return pd.DataFrame(columns=EXTRACT_COLUMNS)
        decode, serial, ahead = _in_turns([r["path"] for r in results], frames, fast, repeats)
    rows = []
    for r, decode_s, dflib_s, ahead_s in zip(results, decode, serial, ahead):
        n = r["frames"]
        agreement, mean_iou = compare_boxes(r["baseline"], r["dflib"])
        baseline_faces = sum(b is not None for b in r["baseline"])
        dflib_faces = sum(b is not None for b in r["dflib"])
        rows.append({
            "footage": str(r["path"]), "resolution": r["resolution"], "device": device,
            "settings": settings, "videos": 1, "frames": n, "repeats": repeats,
            "decode_fps": n / decode_s, "baseline_fps": n / r["baseline_s"],
            "dflib_fps": n / dflib_s, "dflib_ahead_fps": n / ahead_s,
            "speedup": r["baseline_s"] / dflib_s, "dflib_to_decode": decode_s / dflib_s,
            "baseline_faces": baseline_faces, "dflib_faces": dflib_faces,
            "faces_lost": faces_lost(r["baseline"], r["dflib"]),
            "agreement": agreement, "mean_iou": mean_iou,
            "baseline_self_agreement": r["self_agreement"][0],
            "baseline_self_iou": r["self_agreement"][1],
            "baseline_switches": face_switches(r["baseline"], r["cuts"]),
            "dflib_switches": face_switches(r["dflib"], r["cuts"])})
    clips = pd.DataFrame(rows, columns=EXTRACT_COLUMNS)
    n = clips["frames"].sum()
    summary = {
        "footage": "all", "resolution": f"{clips['resolution'].nunique()} sizes",
        "device": device, "settings": settings, "videos": len(clips), "frames": n,
        "repeats": repeats, "decode_fps": n / sum(decode),
        "baseline_fps": n / sum(r["baseline_s"] for r in results),
        "dflib_fps": n / sum(serial), "dflib_ahead_fps": n / sum(ahead),
        "speedup": _geomean(clips["speedup"]), "dflib_to_decode": _geomean(clips["dflib_to_decode"]),
        **{col: clips[col].min() for col in ("agreement", "mean_iou", "baseline_self_agreement",
                                              "baseline_self_iou")},
        **{col: clips[col].sum() for col in ("baseline_faces", "dflib_faces", "faces_lost",
                                               "baseline_switches", "dflib_switches")}}
    return pd.concat([clips, pd.DataFrame([summary], columns=EXTRACT_COLUMNS)],
                     ignore_index=True)


def bench_steps(paths: Sequence[str | Path], frames: int = 25, device: str = "auto",
                params: dict[str, Any] | None = None, progress: bool = True) -> pd.DataFrame:
    """Where extraction's time goes: per video of ``paths`` (videos and folders) and search,
    milliseconds per frame (decoding included), the share of each step (decoding, those of
    :data:`dflib.steptimes.STEPS`, and ``other``: tracking, selection, bookkeeping) and how
    many frames took each way through the search (:data:`dflib.steptimes.COUNTS`); then
    one summary row per search (``footage`` ``all``: shares of the total time, counts
    summed, ``speedup`` the geometric mean of the videos').

    ``every_frame`` searches every sampled frame in full (``redetect_every`` 1, the
    paper's way); ``key_frames`` is the profile's search; both run on the same decoded
    frames of each video, with the stage's thread settings, and ``speedup`` is each row's
    rate over ``every_frame``'s. ``params`` overrides the profile's FaceExtractor
    defaults. An unreadable video prints one line on stderr naming it and is left out."""
    settle_frame_memory()  # as the faces stage does, before torch starts threads
    device = resolve_device(device)
    chosen = {**profile_extractor_params(device), **(params or {})}
    extractors = {"every_frame": FaceExtractor.from_params({**chosen, "redetect_every": 1}),
                  "key_frames": FaceExtractor.from_params(chosen)}
    rows: list[dict[str, Any]] = []
    with extraction_threads():
        for video in tqdm(_videos(paths), desc="bench steps", unit="video",
                          disable=not progress):
            try:
                info, decoded_frames, read, decode_s = _first_frames(video, frames)
            except VideoError as exc:
                tqdm.write(f"error: {exc}", file=sys.stderr)
                continue
            if not rows:  # model loading is not charged to the first video
                for extractor in extractors.values():
                    extractor.extract(decoded_frames[:1])
            for search, extractor in extractors.items():
                start = time.perf_counter()
                with recording() as record:
                    extractor.extract(decoded_frames)
                rows.append({"footage": str(video), "resolution": f"{info.width}x{info.height}",
                             "search": search, "frames": len(read), "decode_s": decode_s,
                             "extract_s": time.perf_counter() - start,
                             **{name: record.seconds.get(name, 0.0) for name in STEPS},
                             **{name: record.counts.get(name, 0) for name in COUNTS}})
    if not rows:
        return pd.DataFrame(columns=STEPS_COLUMNS)
    raw = pd.DataFrame(rows)
    raw["videos"] = 1
    raw["seconds"] = raw["decode_s"] + raw["extract_s"]
    every = raw[raw["search"] == STEP_SEARCHES[0]].set_index("footage")["seconds"]
    raw["speedup"] = raw["footage"].map(every) / raw["seconds"]
    totals = raw.groupby("search", sort=False).agg(
        {"frames": "sum", "videos": "sum", "decode_s": "sum", "extract_s": "sum",
         "seconds": "sum", **{name: "sum" for name in (*STEPS, *COUNTS)}}).reset_index()
    totals["footage"] = "all"
    totals["resolution"] = f"{raw['resolution'].nunique()} sizes"
    totals["speedup"] = [_geomean(raw.loc[raw["search"] == s, "speedup"])
                         for s in totals["search"]]
    table = pd.concat([raw, totals], ignore_index=True)
    table["device"] = device
    table["ms_per_frame"] = 1000 * table["seconds"] / table["frames"]
    table["decode"] = table["decode_s"]
    table["other"] = table["extract_s"] - table[list(STEPS)].sum(axis=1)
    for name in STEP_SHARES:
        table[f"{name}_share"] = table[name] / table["seconds"]
    return table[STEPS_COLUMNS]


def bench_parallel(paths: Sequence[str | Path], frames: int = 25,
                   workers: Sequence[int] = (1, 2), device: str = "auto",
                   params: dict[str, Any] | None = None, progress: bool = True,
                   repeats: int = 1) -> pd.DataFrame:
    """Time :func:`run_extraction` over the videos of ``paths`` with each number of Dask
    workers, each run in a fresh run folder; ``speedup`` is against the first row. The
    time includes starting the local cluster and each worker's MTCNN. A 0 runs in this
    process twice: without and with the next video decoded in a thread while the current
    one is detected (``decode_ahead``). With ``repeats`` above 1 the rows take turns, and
    ``seconds`` is each row's median run (a shared machine's noise moves single runs by a
    tenth or more)."""
    videos = [v for p in paths for v in find_videos(p)]
    if not videos:
        raise FileNotFoundError(f"no videos under {', '.join(map(str, paths))}")
    index = pd.DataFrame({"video_id": [str(v) for v in videos], "path": [str(v) for v in videos],
                          "label": 0, "split": "test"})
    extractor = {**profile_extractor_params(resolve_device(device)), **(params or {})}
    runs = [(n, ahead) for n in workers for ahead in ((False, True) if n == 0 else (False,))]
    if 0 in workers:  # loading MTCNN in this process is not charged to the first row
        with tempfile.TemporaryDirectory(prefix="dflib-bench-") as tmp:
            run_extraction(index.iloc[:1], RunPaths(Path(tmp)), extractor, 1, "first", 1,
                           progress=False)
    times: dict[int, list[float]] = {k: [] for k in range(len(runs))}
    summaries: dict[int, pd.DataFrame] = {}
    for _ in range(max(1, repeats)):
        for k, (n_workers, ahead) in enumerate(runs):
            with tempfile.TemporaryDirectory(prefix="dflib-bench-") as tmp:
                start = time.perf_counter()
                summaries[k] = run_extraction(index, RunPaths(Path(tmp)), extractor, frames,
                                              "first", 1, workers=n_workers, progress=progress,
                                              decode_in_thread=ahead).summary
                times[k].append(time.perf_counter() - start)
    rows = []
    for n, (n_workers, ahead) in enumerate(runs):
        summary = summaries[n]
        failed = summary[summary["status"] == "failed"]
        for row in failed.itertuples():
            print(f"error: {row.reason}", file=sys.stderr)
        n_frames = int(summary["n_sampled"].sum())
        seconds = float(np.median(times[n]))
        rows.append({"workers": n_workers, "decode_ahead": ahead,
                     "videos": len(summary) - len(failed),
                     "frames": n_frames, "repeats": len(times[n]), "seconds": seconds,
                     "seconds_min": min(times[n]), "seconds_max": max(times[n]),
                     "frames_per_s": n_frames / seconds})
    table = pd.DataFrame(rows, columns=PARALLEL_COLUMNS)
    table["speedup"] = table["frames_per_s"] / table["frames_per_s"].iloc[0]
    return table


# --------------------------------------------------------------------------- decode

def _decode_with(decoder: str, path: Path, indices: Sequence[int]
                 ) -> tuple[list[np.ndarray], list[int]]:
    if decoder == "opencv":
        return read_frames(path, indices)
    return pyav_read_frames(path, indices, seek=decoder == "pyav_seek")


def _video_groups(paths: Sequence[str | Path]) -> Iterator[tuple[str | Path, list[Path]]]:
    """Each entry of ``paths`` with its videos; one that names none prints one line on
    stderr and is left out."""
    for group in paths:
        try:
            yield group, find_videos(group)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)


def bench_decode(paths: Sequence[str | Path], frames: int = 25, sampling: str = "first",
                 every_k: int = 5, repeats: int = 3, progress: bool = True) -> pd.DataFrame:
    """One row per entry of ``paths`` and decoder (:data:`DECODERS`): frames/s of decoding
    the frames ``sampling`` picks from each video (median of ``repeats`` turns, in which
    the decoders take turns video by video, and the slowest and fastest turn), ``ratio``
    to OpenCV in the same run, whether each decoder read the same indices as OpenCV, and
    the largest absolute pixel difference from OpenCV's frames (colour conversion).

    An unreadable video prints one line on stderr naming it and is left out of every row.
    """
    rows = []
    for group, videos in _video_groups(paths):
        jobs = []
        for video in videos:
            try:
                info = probe(video)
                jobs.append((video, info, sample_indices(info.n_frames, frames, sampling,
                                                         every_k)))
            except VideoError as exc:
                print(f"error: {exc}", file=sys.stderr)
        if jobs:  # imports and first-call set-up are not charged to the first turn
            for decoder in DECODERS:
                try:
                    _decode_with(decoder, jobs[0][0], jobs[0][2][:1])
                except VideoError:
                    pass  # reported by the timed turn
        seconds = {d: [0.0] * max(1, repeats) for d in DECODERS}
        read: dict[str, dict[Path, list[int]]] = {d: {} for d in DECODERS}
        diff = {d: 0 for d in DECODERS}
        bad: set[Path] = set()
        for turn in tqdm(range(max(1, repeats)), desc=f"decode {Path(group).name}",
                         unit="turn", disable=not progress):
            for video, _, wanted in jobs:
                if video in bad:
                    continue
                got = {}
                # Each turn starts with another decoder, so none always meets a cold cache.
                for decoder in DECODERS[turn % len(DECODERS):] + DECODERS[:turn % len(DECODERS)]:
                    try:
                        start = time.perf_counter()
                        got[decoder] = _decode_with(decoder, video, wanted)
                        seconds[decoder][turn] += time.perf_counter() - start
                    except VideoError as exc:
                        print(f"error: {decoder}: {exc}", file=sys.stderr)
                        bad.add(video)
                        break
                if video in bad or turn:
                    continue
                reference = dict(zip(got["opencv"][1], got["opencv"][0]))
                for decoder, (decoded, indices) in got.items():
                    read[decoder][video] = indices
                    diff[decoder] = max([diff[decoder]] + [
                        int(np.abs(f.astype(np.int16) - reference[i]).max())
                        for i, f in zip(indices, decoded) if i in reference])
        kept = [job for job in jobs if job[0] not in bad]
        if not kept:
            continue
        n = sum(len(read["opencv"][video]) for video, _, _ in kept)
        for decoder in DECODERS:
            turns = seconds[decoder]
            rows.append({
                "footage": str(group),
                "resolution": ", ".join(sorted({f"{i.width}x{i.height}" for _, i, _ in kept})),
                "sampling": f"{sampling} {frames}", "decoder": decoder, "videos": len(kept),
                "frames": n, "repeats": len(turns), "fps": n / float(np.median(turns)),
                "fps_min": n / max(turns), "fps_max": n / min(turns),
                "same_indices": all(read[decoder][v] == read["opencv"][v] for v, _, _ in kept),
                "max_abs_diff": diff[decoder]})
    table = pd.DataFrame(rows, columns=DECODE_COLUMNS)
    baseline = table.groupby("footage", sort=False)["fps"].transform("first")
    table["ratio"] = table["fps"] / baseline
    return table


# --------------------------------------------------------------------------- train memory

def write_face_store(root: Path, videos: int, faces_per_video: int, img_size: int,
                     seed: int = 0) -> pd.DataFrame:
    """A face store of random faces under ``root`` (half real, half fake videos) and its
    ``videos.csv`` (video_id, label, n_faces), written one video at a time."""
    rng = np.random.default_rng(seed)
    run = RunPaths(root)
    run.face_store.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"video_id": [f"v{i:05d}" for i in range(videos)],
                          "label": np.arange(videos) % 2, "n_faces": faces_per_video})
    for vid in table["video_id"]:
        faces = rng.integers(0, 256, (faces_per_video, img_size, img_size, 3), dtype=np.uint8)
        io.write_npz(run.face_file(vid), faces=faces,
                     frame_idx=np.arange(faces_per_video, dtype=np.int64))
    io.write_csv(table, run.videos_csv)
    return table


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_epoch(root: str, arch: str, img_size: int, batch_size: int) -> dict[str, float]:
    """Train ``arch`` (random weights) for one epoch on the store under ``root`` through
    :class:`~dflib.detectors.models.batches.FaceBatches`; run in a fresh process by :func:`bench_train_memory`."""
    import keras

    from .detectors.models import batches, cnn, fitting

    videos = pd.read_csv(RunPaths(Path(root)).videos_csv, dtype={"video_id": str})
    fitting.seed_everything(0)
    model, _ = cnn.build_model(arch, img_size, "none")
    model.compile(optimizer=keras.optimizers.Nadam(0.002), loss="sparse_categorical_crossentropy")
    data = batches.FaceBatches(FaceStore(RunPaths(Path(root))), videos, batch_size,
                               shuffle=True, seed=0)
    before = _peak_rss_mb()
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    return {"faces": data.n_samples, "rss_before_fit_mb": before,
            "seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}


def bench_train_memory(videos: int = 40, faces_per_video: int = 25, scale: int = 4,
                       img_size: int = 32, arch: str = "ef0", batch_size: int = 32,
                       progress: bool = True) -> pd.DataFrame:
    """Peak RSS of one training epoch on a random face store of ``videos`` and of
    ``scale`` x ``videos`` videos, each measured in a fresh Python process;
    ``peak_ratio`` is against the first. A feed that streams keeps it near 1."""
    rows = []
    for k in tqdm((1, scale), desc="train-memory", unit="run", disable=not progress):
        with tempfile.TemporaryDirectory(prefix="dflib-bench-") as tmp:
            write_face_store(Path(tmp), videos * k, faces_per_video, img_size)
            store_mb = sum(f.stat().st_size for f in RunPaths(Path(tmp)).face_store.iterdir())
            code = ("import json; from dflib.bench import train_epoch; "
                    f"print(json.dumps(train_epoch({tmp!r}, {arch!r}, {img_size}, {batch_size})))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=_child_env())
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"train-memory child at {k}x failed (exit {proc.returncode}): "
                               f"{last}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append({"scale": k, "videos": videos * k, "store_mb": store_mb / 2**20, **result})
    table = pd.DataFrame(rows, columns=MEMORY_COLUMNS[:-1])
    table["peak_ratio"] = table["peak_rss_mb"] / table["peak_rss_mb"].iloc[0]
    return table


def _child_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# --------------------------------------------------------------------------- footage

def _backdrop(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random colour field: a background with nothing face-like in it."""
    grey = rng.uniform(50, 200, (9, 16, 1))
    coarse = (grey + rng.uniform(-20, 20, (9, 16, 3))).astype(np.float32)  # muted colours
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return smooth.clip(0, 255).astype(np.uint8)


def distant_speaker(source: Path, target: Path, face_scale: float = 0.2, width: int = 1920,
                    height: int = 1080, fps: int = 25, seed: int = 0) -> Path:
    """Write ``target``: every frame of ``source`` shrunk by ``face_scale`` and pasted at a
    seeded spot of a ``width`` x ``height`` backdrop (H.264, CRF 23), for small faces."""
    import imageio_ffmpeg

    rng = np.random.default_rng([seed, zlib.crc32(target.name.encode())])
    backdrop = _backdrop(rng, width, height)
    info = probe(source)
    frames, _ = read_frames(source, range(info.n_frames))
    size = (round(info.width * face_scale), round(info.height * face_scale))
    x, y = int(rng.integers(0, width - size[0])), int(rng.integers(0, height - size[1]))
    with io.atomic_path(target) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (width, height), fps=fps,
                                             codec="libx264", quality=None,
                                             output_params=["-crf", "23", "-f", "mp4"],
                                             macro_block_size=1)
        writer.send(None)
        for frame in frames:
            canvas = backdrop.copy()
            canvas[y:y + size[1], x:x + size[0]] = cv2.resize(frame, size,
                                                              interpolation=cv2.INTER_AREA)
            writer.send(canvas)
        writer.close()
    return target


def make_footage(out_dir: str | Path, frames: int = 25, seed: int = 0, face_scale: float = 0.2,
                 progress: bool = True) -> dict[str, Path]:
    """``<out_dir>/720p``: six 1280x720 synth videos (faces 38-50 % of the frame height);
    ``<out_dir>/1080p_small``: the same videos shrunk into 1920x1080 frames (faces about
    ``face_scale`` x that). Existing videos are kept."""
    out = Path(out_dir)
    hd = out / "720p"
    synth.generate(hd, seed=seed, identities=3, real_per_identity=1, fake_per_identity=1,
                   frames=frames, width=1280, height=720, fps=25, progress=progress)
    small = out / "1080p_small"
    for video in tqdm(find_videos(hd), desc="1080p_small", unit="video", disable=not progress):
        target = small / video.relative_to(hd)
        if not target.exists():
            distant_speaker(video, target, face_scale, seed=seed)
    return {"720p": hd, "1080p_small": small}


def format_table(table: pd.DataFrame) -> str:
    """The table as printed by ``dflib bench``: three significant digits, no exponents."""
    return table.to_string(index=False,
                           float_format=lambda v: f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}")


# --------------------------------------------------------------------------- train feed

def _feed_rate(data: Any, workers: int) -> tuple[int, float]:
    """``(samples, samples/s)`` of one pass over every batch of ``data``, made by
    ``workers`` threads as Keras' PyDataset workers make them."""
    from concurrent.futures import ThreadPoolExecutor

    data[0]  # warm the reader (imports, first file) outside the timing
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        samples = sum(len(x) for x, _ in pool.map(data.__getitem__, range(len(data))))
    return samples, samples / (time.perf_counter() - start)


def _step_rate(model: Any, x: Any, y: np.ndarray, steps: int) -> float:
    """Samples/s of the model's own training step on one batch, after one warm-up step."""
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * len(y) / (time.perf_counter() - start)


def bench_train_feed(run: str | Path | None = None, videos: int = 40, faces_per_video: int = 25,
                     img_size: int = 160, arch: str = "xception", batch_size: int = 32,
                     workers: Sequence[int] = (1, 2), steps: int = 3, clip_len: int = 16,
                     clip_size: int = 112, seq_len: int = 25,
                     progress: bool = True) -> pd.DataFrame:
    """Samples/s that the training feeds deliver against the rate of the model's own
    training step on this machine, in one run; ``ratio`` above 1 means the feed keeps up.

    Faces: :class:`~dflib.detectors.models.batches.FaceBatches` with the paper's augmentation off and on,
    against ``arch`` at ``img_size``. Clips: :class:`~dflib.detectors.models.clips.ClipBatches` (random
    crop and flip) against C3D. Sequences: the recurrent heads' in-memory feature arrays
    against a BiLSTM head. The faces come from ``run``'s face store (its ``img_size``), or
    from a generated store of random faces of ``img_size`` px.
    """
    import keras

    from .detectors.models import batches, clips, cnn, cnn_features, fitting, sequences

    with tempfile.TemporaryDirectory(prefix="dflib-bench-") as tmp:
        if run is None:
            table = write_face_store(Path(tmp), videos, faces_per_video, img_size)
            store = FaceStore(RunPaths(Path(tmp)))
        else:
            store = FaceStore(RunPaths(Path(run)))
            table = store.summary()
            table = table[table["n_faces"] > 0].merge(
                pd.read_csv(RunPaths(Path(run)).videos_csv, dtype={"video_id": str})[
                    ["video_id", "label"]], on="video_id")
            img_size = int(store.load(str(table["video_id"].iloc[0]))[0].shape[1])
        fitting.seed_everything(0)
        rows: list[dict[str, Any]] = []

        def measure(kind: str, augment: str, model_rate: float, make: Any) -> None:
            for w in tqdm(workers, desc=f"train-feed {kind} {augment}", unit="run",
                          disable=not progress, leave=False):
                samples, rate = _feed_rate(make(), w)
                rows.append({"feed": kind, "augment": augment, "workers": w,
                             "samples": samples, "feed_per_s": rate,
                             "train_step_per_s": model_rate})

        face_model, _ = cnn.build_model(arch, img_size, "none")
        face_model.compile(optimizer=keras.optimizers.Nadam(0.002),
                           loss="sparse_categorical_crossentropy")
        x, y = batches.FaceBatches(store, table, batch_size)[0]
        face_rate = _step_rate(face_model, x, y, steps)
        del face_model
        for augment in (None, batches.PAPER_AUGMENTATION):
            measure(f"faces {img_size} px ({arch})", "on" if augment else "off", face_rate,
                    lambda: batches.FaceBatches(store, table, batch_size, shuffle=True,
                                                seed=0, augment=augment))

        clip_model = clips.build_clip_model("c3d", clip_len, clip_size)
        clip_model.compile(optimizer=keras.optimizers.SGD(0.005),
                           loss="sparse_categorical_crossentropy")
        clip_batch = max(1, batch_size // 4)
        x, y = clips.ClipBatches(store, table, clip_len, clip_size, clip_batch)[0]
        clip_rate = _step_rate(clip_model, x, y, steps)
        del clip_model
        measure(f"clips {clip_len}x{clip_size} px (c3d)", "on", clip_rate,
                lambda: clips.ClipBatches(store, table, clip_len, clip_size, clip_batch,
                                          shuffle=True, augment=True))

        rng = np.random.default_rng(0)
        seqs = cnn_features.Sequences(
            table["video_id"].to_numpy(), table["label"].to_numpy(),
            rng.standard_normal((len(table), seq_len, cnn_features.FEATURE_DIM), dtype=np.float32),
            np.minimum(table["n_faces"].to_numpy(), seq_len))
        head = sequences.build_head("bilstm")
        head.compile(optimizer=keras.optimizers.Adam(0.001),
                     loss="sparse_categorical_crossentropy")
        first = slice(0, batch_size)
        seq_rate = _step_rate(head, {k: v[first] for k, v in seqs.inputs.items()},
                              seqs.labels[first], steps)
        measure(f"sequences {seq_len}x{cnn_features.FEATURE_DIM} (bilstm)", "off", seq_rate,
                lambda: _ArrayBatches(seqs.inputs, seqs.labels, batch_size))
    table = pd.DataFrame(rows, columns=FEED_COLUMNS[:-1])
    table["ratio"] = table["feed_per_s"] / table["train_step_per_s"]
    return table


class _ArrayBatches:
    """Batches of in-memory arrays, as Keras slices them for ``fit(x, y, batch_size)``."""

    def __init__(self, x: dict[str, np.ndarray], y: np.ndarray, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return {k: v[rows] for k, v in self.x.items()}, self.y[rows]
