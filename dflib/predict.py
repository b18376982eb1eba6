"""``dflib predict``: point a trained detector of a run at videos.

Each video is sampled and its faces extracted exactly as the run's own videos were (the
settings stored in its face store files), then scored by one method (:mod:`dflib.detectors`). The result
is one record per video; a video without a face and a file that cannot be read get a
status of their own and never stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import config, detectors, faces
from .paths import RunPaths

STATUS_ERROR = "error"
FRAME_LEVEL = ("cnn", "facenet", "triplet")
FRAME_COLUMNS = ("path", "frame_idx", "score")


@dataclass(frozen=True)
class MemoryFaces:
    """A face source held in memory: ``video_id -> (faces, frame indices)``."""

    by_video: dict[str, tuple[np.ndarray, np.ndarray]]

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self.by_video[video_id]


@dataclass
class Prediction:
    """What ``dflib predict`` prints for one video."""

    records: list[dict[str, Any]]  # one per video, in the order given
    frames: pd.DataFrame | None  # path, frame_idx, score (frame-level methods only)


def check_method(run: RunPaths, method: str | None, want_frames: bool = False) -> str:
    """The method to use (the run's best by validation video AUC when None), checked
    against the run."""
    trained = detectors.trained_methods(run)
    if not trained:
        raise FileNotFoundError(f"{run.results_csv}: the run has no scored detector; "
                                "run the study first")
    method = method or detectors.best_method(run)
    if method not in trained:
        raise ValueError(f"--method: {method!r} is not a detector of {run.root} "
                         f"(trained: {', '.join(trained)})")
    if want_frames and detectors.family(method) not in FRAME_LEVEL:
        raise ValueError(f"--frames-csv: {method} scores whole clips or sequences, not frames "
                         f"(frame-level methods: {', '.join(m for m in trained if detectors.family(m) in FRAME_LEVEL)})")
    return method


def predict_videos(videos: Sequence[str | Path], run: RunPaths, method: str,
                   threshold: float | None = None) -> Prediction:
    """Sample, extract and score each video with ``method`` (see :func:`check_method`).

    ``threshold`` defaults to the method's ``threshold_val`` (chosen on the run's
    validation split; :func:`dflib.detectors.operating_threshold`). Records hold
    ``path, status`` (``ok``, ``no_face`` or ``error``), ``method``, ``fake_probability``
    and ``label`` (None without a face), ``threshold``, ``frames_sampled``,
    ``faces_found``, ``frames_scored`` and ``reason``.
    """
    settings = config.run_settings(run)
    extraction = faces.store_settings(run, device=settings["device"])
    extractor = faces.FaceExtractor.from_params(extraction.extractor)
    threshold = detectors.operating_threshold(run, method) if threshold is None else threshold
    records: list[dict[str, Any]] = []
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, path in enumerate(videos):
        vid = f"video{i}"  # the same path may be given twice; ids must not collide
        arrays = faces.extract_video(vid, path, extractor, extraction.frames_per_video,
                                     extraction.sampling, extraction.every_k)
        status, reason = str(arrays["status"]), str(arrays["reason"])
        records.append({"path": str(path), "status": STATUS_ERROR if status == "failed"
                        else status, "method": method, "fake_probability": None,
                        "label": None, "threshold": threshold,
                        "frames_sampled": len(arrays["sampled_idx"]),
                        "faces_found": len(arrays["faces"]), "frames_scored": 0,
                        "reason": reason})
        if status == "ok":
            found[vid] = (arrays["faces"], arrays["frame_idx"])
    if not found:
        return Prediction(records, None)
    # Labels are unknown; a placeholder satisfies the scoring code and is dropped below.
    table = pd.DataFrame({"video_id": list(found), "label": 0,
                          "n_faces": [len(f) for f, _ in found.values()]})
    video_rows, frame_rows = detectors.score_methods(run, [method], MemoryFaces(found),
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
