"""The faces stage: extraction of every video of the index into the face store.

One video at a time in this process (the next one decoded in a thread meanwhile:
:func:`decode_ahead`) or as Dask tasks, each writing its own store file
(:mod:`dflib.face_store`), so an interrupted run resumes where it stopped and a killed
run's temporary files are removed; the faces of one video are found by
:class:`dflib.face_extractor.FaceExtractor`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import io
from .devices import cpu_cores, settle_frame_memory
from .face_extractor import FaceExtractor
from .face_store import (INDEX_COLUMNS, SUMMARY_COLUMNS, redo_reasons, store_config,
                         store_file_config, store_record, video_rows)
from .paths import RunPaths, resolve
from .video import (Sampled, VideoError, decoder_threads, read_image, sample_frames,
                    set_decoder_threads)


def extract_video(video_id: str, path: str | Path, extractor: FaceExtractor, n: int,
                  strategy: str = "first", every_k: int = 1,
                  decoded: Sampled | VideoError | None = None) -> dict[str, np.ndarray]:
    """Sample, decode and extract the faces of one video: the arrays of its store file.

    An unreadable video gives status ``failed`` with the :class:`VideoError` message as
    reason; frames are sampled from those the stream really holds, and the reason says
    when the file is truncated (its stream stops before its container's data).
    ``decoded``: what :func:`decode_ahead` got for this video, when it was decoded while
    the detector worked on the one before.
    """
    size = extractor.img_size
    try:
        sampled = decoded if decoded is not None else sample_frames(path, n, strategy, every_k)
        if isinstance(sampled, VideoError):
            raise sampled
    except VideoError as exc:
        return store_record(video_id, size, [], [], "failed", str(exc))
    frames, read, wanted = sampled.frames, sampled.read, sampled.wanted
    found = extractor.extract(frames)
    n_faces = sum(f.face is not None for f in found)
    if n_faces == 0:
        status, reason = "no_face", f"no face found in any of the {len(read)} sampled frames"
    else:
        status, reason = "ok", ""
    if sampled.damage:
        reason = "; ".join(filter(None, [reason, f"truncated ({sampled.damage}): sampled from "
                                                   f"the {sampled.n_frames} frames before the cut"]))
    elif len(read) < len(wanted):
        reason = "; ".join(filter(None, [reason, f"truncated: {len(read)} of {len(wanted)} "
                                                   "sampled frames decoded"]))
    return store_record(video_id, size, read, found, status, reason)


def extract_image(image_id: str, path: str | Path, extractor: FaceExtractor
                  ) -> dict[str, np.ndarray]:
    """The face of one still image, found and cut as in a video's frames (same detection,
    selection and crop), as the arrays of a one-frame store file (frame 0)."""
    size = extractor.img_size
    try:
        frame = read_image(path)
    except VideoError as exc:
        return store_record(image_id, size, [], [], "failed", str(exc))
    found = extractor.extract([frame])
    if found[0].face is None:
        return store_record(image_id, size, [0], found, "no_face", "no face found in the image")
    return store_record(image_id, size, [0], found, "ok", "")


# torch intra-op threads while faces are extracted in this process. MTCNN's tensors are small
# (a 320 px coarse frame, regions of a few hundred pixels around known faces, 24 and 48 px
# candidate crops): one thread does nearly all a second one would, and every parallel
# region waits for its slowest thread, so on a busy machine (a descheduled thread stalls
# each region) two threads ran extraction 5-10x slower than one. The other cores go to the
# decoder (decoding the next video meanwhile, below the detector's priority: decode_ahead)
# and, with more cores, to more videos at once (Dask workers, one thread each).
EXTRACT_TORCH_THREADS = 1


@contextmanager
def extraction_threads() -> Iterator[None]:
    """torch's intra-op thread count set to EXTRACT_TORCH_THREADS for the ``with`` body
    and restored after it (later stages, training, keep their own)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(EXTRACT_TORCH_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ahead_decoder_threads(cores: int) -> int:
    """FFmpeg threads for the thread that decodes the next video while this process
    detects on ``cores`` cores: all of them, at a lower priority than the detector
    (:data:`DECODE_AHEAD_NICENESS`), so the decoder takes what the detector leaves. Where
    detecting a video costs less than decoding the next (most clips since frames between
    key frames need no network) the detector waits, and a decoder held to the one core it
    left decoded 1080p a quarter slower than in turn; at the same priority as the
    detector, two decoder threads made a detection-heavy clip slower instead
    (docs/benchmarks.md, "Decoding the next video ahead")."""
    return max(1, cores)


# How much lower the decode-ahead thread (and FFmpeg's threads, which inherit it) is
# scheduled than the detector: Linux's nice steps, 10 of 19.
DECODE_AHEAD_NICENESS = 10


def _lower_priority() -> None:
    """Run the calling thread (and the threads it starts) DECODE_AHEAD_NICENESS nice steps
    below the process; on Linux only, where a thread has its own nice value."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread,
                       min(19, os.getpriority(os.PRIO_PROCESS, thread) + DECODE_AHEAD_NICENESS))
    except OSError:
        pass  # a sandbox that forbids it: the decoder runs at the detector's priority


def decode_ahead(paths: Sequence[str], n: int, strategy: str, every_k: int
                 ) -> Iterator[Sampled | VideoError | None]:
    """Each video's sampled frames, in order, the next one decoded in a thread while the
    caller works on the current one (OpenCV's decoder releases the GIL), at a lower
    priority than the caller (:func:`ahead_decoder_threads`): a VideoError where it cannot be
    read, None where the file is missing. At most two videos' frames are held at once.
    Without a core beside torch's a decoder thread could only take turns with the
    detector, so each video is then decoded when asked for, in the caller's thread."""
    def decode(path: str, threads: int | None) -> Sampled | VideoError | None:
        if not Path(path).is_file():
            return None
        try:
            if threads is None:
                return sample_frames(path, n, strategy, every_k)
            with decoder_threads(threads):
                return sample_frames(path, n, strategy, every_k)
        except VideoError as exc:
            return exc

    cores = cpu_cores()
    if cores <= EXTRACT_TORCH_THREADS:
        for path in paths:
            yield decode(path, None)
        return
    threads = ahead_decoder_threads(cores)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dflib-decode",
                            initializer=_lower_priority) as pool:
        pending = pool.submit(decode, paths[0], threads) if paths else None
        for k in range(len(paths)):
            current = pending.result()
            pending = (pool.submit(decode, paths[k + 1], threads) if k + 1 < len(paths)
                       else None)
            yield current


def _extract_to_store(video_id: str, path: str, target: Path, extractor: FaceExtractor,
                      n: int, strategy: str, every_k: int, config: str,
                      decoded: Sampled | VideoError | None = None) -> str:
    """Write one video's store file; return "" or the error that stopped it.

    Bad videos are stored as ``failed`` by :func:`extract_video`. A missing file (a
    dataset not mounted yet) and anything unexpected write nothing, so a rerun tries
    again; either way the run goes on.
    """
    if not Path(path).is_file():
        return f"{path}: file not found"
    try:
        record = extract_video(video_id, path, extractor, n, strategy, every_k, decoded)
        io.write_npz(target, **record, config=np.array(config))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return ""


_WORKER_EXTRACTORS: dict[str, FaceExtractor] = {}


def _dask_task(video_id: str, path: str, target: str, params: dict[str, Any], n: int,
               strategy: str, every_k: int, config: str) -> str:
    """One video on a Dask worker, which keeps its MTCNN between tasks."""
    key = json.dumps(params, sort_keys=True)
    if key not in _WORKER_EXTRACTORS:
        settle_frame_memory()
        import torch

        # Each worker process runs one task at a time; more threads would oversubscribe.
        torch.set_num_threads(EXTRACT_TORCH_THREADS)
        cv2.setNumThreads(1)
        set_decoder_threads(1)
        _WORKER_EXTRACTORS[key] = FaceExtractor(**params)
    return _extract_to_store(video_id, path, Path(target), _WORKER_EXTRACTORS[key], n,
                             strategy, every_k, config)


def _run_dask(jobs: list[tuple[str, str, Path, str]], extractor: FaceExtractor, n: int,
              strategy: str, every_k: int, workers: int, scheduler: str,
              progress: bool) -> dict[str, str]:
    from distributed import as_completed

    from .cluster import dask_client

    errors: dict[str, str] = {}
    with dask_client(workers, scheduler) as client:
        futures = {client.submit(_dask_task, vid, path, str(target), extractor.params, n,
                                 strategy, every_k, config, pure=False): vid
                   for vid, path, target, config in jobs}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="faces",
                        unit="video", disable=not progress):
            try:
                err = fut.result()
            except Exception as exc:  # a worker that died takes only its video down
                err = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if err:
                errors[futures[fut]] = err
    return errors


@dataclass
class Extraction:
    """What :func:`run_extraction` found: one summary row per video (``faces/summary.csv``)
    and the stage summary's view of it (``video_id, outcome, reason, detail``), which the
    stage layer writes (:func:`dflib.summaries.stage_summary`)."""

    summary: pd.DataFrame
    outcomes: pd.DataFrame


def run_extraction(videos: pd.DataFrame, run: RunPaths, extractor_params: Mapping[str, Any],
                   frames_per_video: int, sampling: str, every_k: int, workers: int = 0,
                   scheduler: str = "", progress: bool = True,
                   decode_in_thread: bool = True) -> Extraction:
    """Extract the faces of every video of the index that has no store file yet.

    ``videos`` needs ``video_id, path, label, split``; relative paths are taken from the
    project root. A store file made with other extraction settings is redone. With
    ``workers > 0`` or a ``scheduler`` address, videos run as Dask tasks (each writes
    its own store file, so resuming works the same); in this process the next video is
    decoded while the current one is detected (``decode_in_thread``, :func:`decode_ahead`).
    Afterwards ``faces/index.csv`` and ``faces/summary.csv`` are rebuilt from the store
    files, and the outcomes of the stage summary are returned with them; the
    temporary files of a killed earlier run are removed first.
    """
    settle_frame_memory()  # first: before torch starts threads that would get arenas
    missing = {"video_id", "path", "label", "split"} - set(videos.columns)
    if missing:
        raise ValueError(f"video index lacks column(s) {', '.join(sorted(missing))}")
    duplicated = videos["video_id"][videos["video_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"video_id {duplicated.iloc[0]!r} appears more than once in the index")
    extractor = FaceExtractor.from_params(extractor_params)
    config = store_config(extractor, frames_per_video, sampling, every_k)
    run.face_store.mkdir(parents=True, exist_ok=True)
    io.remove_partials(run.face_store)  # a killed earlier run's temporary files
    all_jobs = [(vid, path, run.face_file(vid), store_file_config(config, path))
                for vid, path in zip(videos["video_id"].astype(str),
                                     videos["path"].astype(str).map(lambda p: str(resolve(p))))]
    jobs = [job for job in all_jobs if not io.npz_made_with(job[2], job[3])]
    redo = redo_reasons(jobs)
    if (redo != "new").any():
        counts = redo[redo != "new"].value_counts()
        print(f"faces: {int(counts.sum())} store files made from something else, redone ("
              + ", ".join(f"{why}: {n}" for why, n in counts.items()) + ")")

    if jobs and (workers > 0 or scheduler):
        errors = _run_dask(jobs, extractor, frames_per_video, sampling, every_k,
                           workers, scheduler, progress)
    else:
        errors = {}
        decoded: Iterator[Any] = (decode_ahead([job[1] for job in jobs], frames_per_video,
                                               sampling, every_k)
                                  if decode_in_thread else iter([None] * len(jobs)))
        with extraction_threads():
            for (vid, path, target, file_config), frames in tqdm(
                    zip(jobs, decoded), total=len(jobs), desc="faces", unit="video",
                    disable=not progress):
                err = _extract_to_store(vid, path, target, extractor, frames_per_video,
                                        sampling, every_k, file_config, frames)
                if err:
                    errors[vid] = err

    rows = [video_rows(v, run.face_file(str(v["video_id"])), errors.get(str(v["video_id"])))
            for v in videos.to_dict("records")]
    summary = pd.DataFrame([r[0] for r in rows], columns=SUMMARY_COLUMNS)
    frames = (pd.concat([r[1] for r in rows], ignore_index=True) if rows
              else pd.DataFrame(columns=INDEX_COLUMNS))[INDEX_COLUMNS]
    io.write_csv(frames, run.faces_csv)
    io.write_csv(summary, run.faces_summary_csv)
    return Extraction(summary, _outcomes(summary, all_jobs, {job[0] for job in jobs}))


def run_section(videos: pd.DataFrame, run: RunPaths, shared: Mapping[str, Any],
                section: Mapping[str, Any], progress: bool = True) -> Extraction:
    """:func:`run_extraction` with a validated profile's shared keys and ``faces`` section
    (the fields of :mod:`dflib.faces_fields`)."""
    return run_extraction(videos, run, FaceExtractor.from_params({**shared, **section}).params,
                          shared["frames_per_video"], section["sampling"], section["every_k"],
                          section["workers"], section["scheduler"], progress)


def _outcomes(summary: pd.DataFrame, all_jobs: list[tuple[str, str, Path, str]],
              ran_now: set[str]) -> pd.DataFrame:
    """The stage summary's view of ``summary``: a video with a face is processed (``already
    done`` when its store file was reused), one without is skipped, a bad one failed; a
    failure's reason loses the video's path, so equal problems count together."""
    paths = {vid: path for vid, path, _, _ in all_jobs}
    ran = summary["video_id"].isin(ran_now)
    short = [r.removeprefix(f"{paths[v]}: ") if v in paths else r
             for v, r in zip(summary["video_id"], summary["reason"])]
    outcome = summary["status"].map({"ok": "processed", "no_face": "skipped"}).fillna("failed")
    reason = np.select([outcome == "processed", outcome == "skipped"],
                       [np.where(ran, "", "already done"), "no_face"], short)
    return pd.DataFrame({"video_id": summary["video_id"], "outcome": outcome,
                         "reason": reason, "detail": summary["reason"]})
