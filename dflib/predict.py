"""``dflib predict``: point a trained detector of a run at videos and images.

Each video is sampled and its faces extracted exactly as the run's own videos were (the
settings stored in its face store files), then scored by one method (:mod:`dflib.reload`).
An image is a first-class input: its face is found and cut as a video frame's, and
frame-level detectors score it; detectors of clips or sequences cannot. The result is one
record per input; a file without a face and a file that cannot be read get a status of
their own and never stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import config, datasets, evaluation, face_extractor, face_store, faces, reload, video
from .paths import RunPaths
from .detectors import FRAME_LEVEL, is_frame_level

STATUS_ERROR = "error"
FRAME_COLUMNS = ("path", "frame_idx", "score")
INPUT_EXTENSIONS = datasets.VIDEO_EXTENSIONS | video.IMAGE_EXTENSIONS


def input_kind(path: str | Path) -> str:
    """``image`` for a still image (by its extension), ``video`` for anything else."""
    return "image" if Path(path).suffix.lower() in video.IMAGE_EXTENSIONS else "video"


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """The files to score: each argument as given, a folder's videos and images in sorted
    order, recursively, by the dataset scans' rule (hidden entries skipped; a dangling link
    is kept, so that its record says what is wrong). A folder with none is an error."""
    files: list[Path] = []
    for given in inputs:
        folder = Path(given)
        if not folder.is_dir():
            files.append(folder)
            continue
        found, problems = datasets.scan_folder(folder, folder, extensions=INPUT_EXTENSIONS)
        inside = sorted([*found, *(folder / p["_rel"] for p in problems)])
        if not inside:
            raise ValueError(f"{folder}: no videos or images in it (looked for "
                             f"{', '.join(sorted(INPUT_EXTENSIONS))})")
        files += inside
    return files


def _record(path: str | Path, method: str, threshold: float, multi_face: str,
            arrays: dict[str, np.ndarray] | None = None, reason: str = "") -> dict[str, Any]:
    """The JSON line of one input before scoring (the one place it is built)."""
    status = STATUS_ERROR if arrays is None else str(arrays["status"])
    return {"path": str(path), "kind": input_kind(path),
            "status": STATUS_ERROR if status == "failed" else status, "method": method,
            "fake_probability": None, "label": None, "threshold": threshold,
            "frames_sampled": 0 if arrays is None else len(arrays["sampled_idx"]),
            "faces_found": 0 if arrays is None else len(arrays["faces"]),
            "n_faces": 0 if arrays is None else int(arrays["frame_faces"].max(initial=0)),
            "multi_face": multi_face, "frames_scored": 0,
            "reason": reason if arrays is None else str(arrays["reason"])}


@dataclass(frozen=True)
class MemoryFaces:
    """A face source held in memory: ``video_id ->`` the arrays of its store file."""

    by_video: dict[str, dict[str, np.ndarray]]

    def load(self, video_id: str, every_face: bool = False) -> tuple[np.ndarray, np.ndarray]:
        a = self.by_video[video_id]
        if every_face:
            return face_store.with_other_faces(a["faces"], a["frame_idx"], a["other_faces"],
                                          a["other_frame_idx"])
        return a["faces"], a["frame_idx"]


@dataclass
class Prediction:
    """What ``dflib predict`` prints for one video."""

    records: list[dict[str, Any]]  # one per video, in the order given
    frames: pd.DataFrame | None  # path, frame_idx, score (frame-level methods only)


def check_method(run: RunPaths, method: str | None, want_frames: bool = False) -> str:
    """The method to use (the run's best by validation video AUC when None), checked
    against the run before any work: ``tables/results.csv`` whole (the choice and the
    threshold come from it), the run's parameters readable, the method's saved models
    whole, and a face store file to take the extraction settings from. Raises
    ``FileNotFoundError`` or ``ValueError`` naming the file."""
    evaluation.check_results(run)
    config.run_settings(run)
    trained = reload.trained_methods(run)
    if not trained:
        raise FileNotFoundError(f"{run.results_csv}: the run has no scored detector; "
                                "run the study first")
    method = method or reload.best_method(run)
    if method not in trained:
        raise ValueError(f"--method: {method!r} is not a detector of {run.root} "
                         f"(trained: {', '.join(trained)})")
    if want_frames and not is_frame_level(method):
        raise ValueError(f"--frames-csv: {method} scores whole clips or sequences, not frames "
                         f"(frame-level methods: {', '.join(m for m in trained if is_frame_level(m))})")
    reload.check_saved(run, method)
    face_store.store_settings(run)
    return method


def predict_videos(videos: Sequence[str | Path], run: RunPaths, method: str,
                   threshold: float | None = None) -> Prediction:
    """Extract and score each video or image with ``method`` (see :func:`check_method`).

    ``threshold`` defaults to the method's ``threshold_val`` (chosen on the run's
    validation split; :func:`dflib.reload.operating_threshold`). Records hold
    ``path``, ``kind`` (``video`` or ``image``), ``status`` (``ok``, ``no_face`` or
    ``error``), ``method``, ``fake_probability`` and ``label`` (None without a face),
    ``threshold``, ``frames_sampled``, ``faces_found``, ``n_faces`` (the most faces of
    similar size seen in one frame), ``multi_face`` (the run's ``faces.multi_face``: with
    ``single`` one face of such a frame is scored, with ``max`` every one and the frame
    scores as its most fake), ``frames_scored`` and ``reason``.
    An image given to a detector of clips or sequences is an ``error`` saying so.
    """
    settings = config.run_settings(run)
    extraction = face_store.store_settings(run, device=settings["device"])
    extractor = face_extractor.FaceExtractor.from_params(extraction.extractor)
    threshold = reload.operating_threshold(run, method) if threshold is None else threshold
    frame_level = is_frame_level(method)
    records: list[dict[str, Any]] = []
    found: dict[str, dict[str, np.ndarray]] = {}
    for i, path in enumerate(videos):
        vid = f"video{i}"  # the same path may be given twice; ids must not collide
        if input_kind(path) == "image" and not frame_level:
            records.append(_record(path, method, threshold, extractor.multi_face, reason=(
                f"{path}: {method} scores a sequence of faces from a video, not a single "
                f"image; frame-level detectors ({', '.join(f + '/*' for f in FRAME_LEVEL)}) "
                "score images")))
            continue
        arrays = (faces.extract_image(vid, path, extractor) if input_kind(path) == "image" else
                  faces.extract_video(vid, path, extractor, extraction.frames_per_video,
                                      extraction.sampling, extraction.every_k))
        records.append(_record(path, method, threshold, extractor.multi_face, arrays))
        if str(arrays["status"]) == "ok":
            found[vid] = arrays
    if not found:
        return Prediction(records, None)
    # Labels are unknown; a placeholder satisfies the scoring code and is dropped below.
    table = pd.DataFrame({"video_id": list(found), "label": 0,
                          "n_faces": [len(a["faces"]) for a in found.values()],
                          "n_other_faces": [len(a["other_faces"]) for a in found.values()]})
    video_rows, frame_rows = reload.score_methods(run, [method], MemoryFaces(found),
                                                  table)[method]
    position = {f"video{i}": i for i in range(len(videos))}
    for row in video_rows.itertuples():
        record = records[position[row.video_id]]
        record["fake_probability"] = round(float(row.score), 6)
        record["label"] = "fake" if row.score > threshold else "real"
        record["frames_scored"] = int(row.n_frames)
    frames = None
    if frame_rows is not None:
        frames = pd.DataFrame(dict(zip(FRAME_COLUMNS, (
            [str(videos[position[v]]) for v in frame_rows["video_id"]],
            frame_rows["frame_idx"].astype(int), frame_rows["score"].round(6)))))
    return Prediction(records, frames)
