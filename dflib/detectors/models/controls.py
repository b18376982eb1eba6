"""Temporal controls: training-free statistics of a video's faces, scored like detectors
(``control/<statistic>``), so that a reader sees whether a temporal model learns more than
one line of arithmetic finds.

A control is not a detector. :func:`colour_jerk` was designed knowing how the demo's
generator draws its fakes (:mod:`dflib.synth` gives every frame of a pasted face a fresh
colour offset, the "flicker" of face-swap videos), so its score on the demo says what a
temporal cue is worth there, not how well anything detects deepfakes. The study never
picks a control (:func:`dflib.detectors.is_detector`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ... import evaluation, statistics
from .batches import FaceSource
from .fitting import sample_video_rows
from ...paths import RunPaths
from ...vocabulary import CONTROLS, TEMPORAL_CONTROLS, control_method

# The inner face: the central share of the crop's side, inside the cheeks and brows, so that
# the background and the hair around the face move the statistic as little as possible.
INNER_SHARE = 0.5
# Grey levels of the statistic where the score crosses 0.5: between the medians of the demo's
# training reals and fakes (3.9 and 5.7). Only calls at the fixed 0.5 threshold depend on it;
# ranks, AUC and the validation-chosen threshold do not.
SCALE = 5.0
# Fewer faces have no second difference: such a video is scored by the prior (no_face).
MIN_FACES = 3


def inner_mean_colour(faces: np.ndarray, share: float = INNER_SHARE) -> np.ndarray:
    """``[T, 3]`` mean RGB of the central ``share`` of each face crop ``[T, H, W, 3]``."""
    faces = np.asarray(faces, dtype=np.float64)
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be [T, H, W, 3], got shape {faces.shape}")
    h, w = faces.shape[1:3]
    dy, dx = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return faces[:, dy:h - dy, dx:w - dx].mean(axis=(1, 2))


def colour_jerk(faces: np.ndarray) -> float | None:
    """The mean length of the second differences over time of the inner face's mean colour
    (``c[t+1] - 2 c[t] + c[t-1]`` in RGB grey levels), over a video's sampled faces in
    order; None for fewer than :data:`MIN_FACES` faces.

    A control, not a detector: designed knowing that the demo's fakes get a new colour
    offset in every frame (a slow drift of light or pose has small second differences, a
    per-frame offset large ones). Training-free: nothing is fitted to any split.
    """
    if len(faces) < MIN_FACES:
        return None
    colour = inner_mean_colour(faces)
    second = colour[2:] - 2 * colour[1:-1] + colour[:-2]
    return float(np.linalg.norm(second, axis=1).mean())


# The statistic of each name of dflib.vocabulary.TEMPORAL_CONTROLS, in its order (the
# identity control is fitted: dflib.detectors.models.identity).
STATISTICS = {"colour_jerk": colour_jerk}


def control_predictions(statistic: str, store: FaceSource, videos: pd.DataFrame,
                        threshold: float = 0.5) -> pd.DataFrame:
    """Video predictions of a control: ``score = s / (s + SCALE)`` of the statistic ``s`` of
    each video's faces (monotone, so it ranks as ``s`` does). A video with too few faces, or
    whose store file cannot be read, keeps its row with the prior score and status
    ``no_face`` (``failed`` where the index's ``face_status`` says so); ``n_faces`` of
    ``videos``, when present, spares opening the files of videos without faces."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown control {statistic!r}; choose one of {TEMPORAL_CONTROLS}")
    n_faces = videos["n_faces"] if "n_faces" in videos else pd.Series(1, index=videos.index)
    ids, labels, values, steps = [], [], [], {}
    for vid, label, n in zip(videos["video_id"].astype(str), videos["label"], n_faces):
        try:
            faces = store.load(vid)[0] if n > 0 else np.zeros((0, 1, 1, 3), np.uint8)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            faces = np.zeros((0, 1, 1, 3), np.uint8)  # counted as unseen, the run goes on
        value = STATISTICS[statistic](faces)
        steps[vid] = len(faces)
        if value is not None:
            ids.append(vid)
            labels.append(int(label))
            values.append(value)
    value = np.asarray(values, dtype=float)
    scored = pd.DataFrame({"video_id": ids, "frame_idx": 0, "label": labels,
                           "score": value / (value + SCALE)})
    return sample_video_rows(scored, videos, steps, threshold)


def run_controls(store: FaceSource, videos: pd.DataFrame, run: RunPaths,
                 threshold: float = 0.5,
                 scoring: statistics.Scoring = statistics.Scoring()) -> pd.DataFrame:
    """Score every control on the validation and test splits, write their predictions and
    upsert their results rows (the rows of controls no longer listed are retired); return
    the rows. Nothing is fitted: the validation split only sets ``threshold_val`` and
    ``val_split_auc``, as for every method."""
    # Every control's name is kept: the identity control is fitted by stage train_frequency.
    evaluation.retire_methods(run, "control", [control_method(c) for c in CONTROLS])
    rows = []
    for statistic in STATISTICS:
        method = control_method(statistic)
        for split in ("val", "test"):
            part = videos[videos["split"] == split].reset_index(drop=True)
            evaluation.write_predictions(run, method, control_predictions(
                statistic, store, part, threshold), split=split)
        rows.append(evaluation.score_method(run, method, threshold, scoring))
    return pd.concat(rows, ignore_index=True)


def score_saved(run: RunPaths, methods: Sequence[str], store: FaceSource, videos: pd.DataFrame,
                settings: Mapping[str, object], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """Controls applied to other faces (:func:`dflib.reload.score_methods`): the statistic
    itself for the training-free ones; the identity control embeds the faces and asks its
    saved model (:func:`dflib.detectors.models.identity.score_saved`)."""
    from . import identity

    return {m: identity.score_saved(run, store, videos, settings, progress)
            if m == identity.METHOD else (control_predictions(m.split("/", 1)[1], store, videos),
                                          None) for m in methods}


def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads: the identity control's model and the
    embeddings' manifest; none for the training-free statistics."""
    from . import identity

    return identity.saved_files(run) if identity.METHOD in methods else []
