"""What the stages read and share: the run's index, each video's stored faces and their
verdict, the outcomes of videos by their faces, and how detectors are scored.

Below the stages and the detector families (both call it), above the face store.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from . import config, paths

if TYPE_CHECKING:
    from . import statistics


def load_index(run: paths.RunPaths) -> pd.DataFrame:
    """The run's video index; a clear error when stage 00 has not run."""
    if not run.videos_csv.exists():
        raise FileNotFoundError(f"{run.videos_csv}: no video index; run stage 'index' first")
    return pd.read_csv(run.videos_csv, keep_default_na=False,
                       dtype={"video_id": str, "path": str})



def scoring(profile: config.Profile) -> "statistics.Scoring":
    """How the scoring stages score detectors: the profile's ``evaluation`` section and seed."""
    from . import statistics

    return statistics.Scoring.of(profile.shared, profile.sections[config.EVALUATION_SECTION])


def videos_with_faces(run: paths.RunPaths) -> pd.DataFrame:
    """The video index with each video's stored face count and the faces stage's verdict.

    ``n_faces`` (0 when none), ``face_status``: ``ok``, ``no_face``, ``failed`` (its
    extraction failed, or it is missing from ``faces/summary.csv``) or ``unreadable`` (its
    store file cannot be read now: it counts 0 faces, so no stage reads it), and
    ``face_reason``; ``n_other_faces``: the other faces a ``faces.multi_face: max`` store
    holds besides the chosen one of each frame.
    """
    from . import face_store

    store = face_store.FaceStore(run)
    summary = store.summary().reindex(columns=["video_id", "status", "n_faces",
                                               "n_other_faces", "reason"]).rename(
        columns={"status": "face_status", "reason": "face_reason"})
    videos = load_index(run).merge(summary, on="video_id", how="left")
    absent = videos["face_status"].isna()
    videos["face_status"] = videos["face_status"].fillna("failed")
    videos["face_reason"] = videos["face_reason"].fillna("").where(
        ~absent, "not in faces/summary.csv: rerun stage 'faces'")
    videos["n_faces"] = videos["n_faces"].fillna(0).astype(int)
    videos["n_other_faces"] = videos["n_other_faces"].fillna(0).astype(int)
    problems = pd.Series([store.check(v, n) if n > 0 else ""
                          for v, n in zip(videos["video_id"], videos["n_faces"])],
                         index=videos.index)
    bad = problems != ""
    videos.loc[bad, "face_status"] = "unreadable"
    videos.loc[bad, "face_reason"] = problems[bad]
    videos.loc[bad, ["n_faces", "n_other_faces"]] = 0
    return videos


def face_outcomes(videos: pd.DataFrame) -> pd.DataFrame:
    """Stage outcomes of :func:`videos_with_faces` rows: a video with faces is processed, one
    without is skipped (``no_face``, or ``failed at stage faces``, already recorded
    there), one whose store file cannot be read now is failed (``unreadable store file``)."""
    status, has_faces = videos["face_status"], videos["n_faces"] > 0
    outcome = np.select([has_faces, status == "unreadable"], ["processed", "failed"], "skipped")
    reason = np.select([has_faces, status == "unreadable", status == "failed"],
                       ["", "unreadable store file", "failed at stage faces"], "no_face")
    return pd.DataFrame({"video_id": videos["video_id"].to_numpy(), "outcome": outcome,
                         "reason": reason, "detail": videos["face_reason"].to_numpy()})


@contextlib.contextmanager
def scoring_test_split(run: paths.RunPaths, videos: pd.DataFrame, stage: str,
                       warn: bool = True) -> Iterator[None]:
    """Around a stage that scores the test split: an empty split is one clear warning
    (the results rows get n = 0 and NaN metrics) instead of one per metric and method;
    ``warn`` false for a family joining the stage after its owner said so."""
    if (videos["split"] == "test").any():
        yield
        return
    if warn:
        warnings.warn(f"{run.videos_csv}: the test split has no videos, so stage {stage} "
                      "scores nothing (its results rows have n = 0 and NaN metrics)",
                      stacklevel=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="empty evaluation set")
        yield


