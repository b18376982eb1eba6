"""The per-video face store: its file format, when a file is redone, and reading it.

Each video becomes one ``.npz`` file in ``faces/store/``, written atomically, holding its
faces, the per-frame record of how they were found and the settings they were made with
(a file made with other settings, or from a replaced video file, is redone);
``faces/index.csv`` (one row per sampled frame) and ``faces/summary.csv`` (one row per
video) are rebuilt from the store files. Later artifacts record each file's
:func:`store_digest` as their input.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import io, mtcnn
from .face_extractor import CHOICE_VERSION, FaceExtractor, FrameFace
from .paths import RunPaths


# Parameters that change what is stored; a store file made with other values is redone.
_RESULT_KEYS = ("img_size", "margin", "min_face_size", "thresholds", "factor", "selection",
                "detect_max_side", "redetect_every", "crop", "multi_face")
# What stores written before a key existed were made with (they searched every frame and
# stretched the box to a square).
_BEFORE_KEY = {"redetect_every": 1, "crop": "stretch", "multi_face": "single"}
INDEX_COLUMNS = ["video_id", "label", "split", "frame_idx", "face", "x1", "y1", "x2", "y2",
                 "prob", "n_detected", "n_faces", "rule", "shot_change", "store_row", "reason"]
SUMMARY_COLUMNS = ["video_id", "label", "split", "status", "n_sampled", "n_faces",
                   "n_other_faces", "reason"]


def with_other_faces(faces: np.ndarray, frame_idx: np.ndarray, other_faces: np.ndarray,
                     other_frame_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chosen faces and the other faces of their frames, ordered by frame (the chosen
    face first in its frame); the chosen ones alone when there are no others."""
    if len(other_faces) == 0:
        return faces, frame_idx
    frames = np.concatenate([frame_idx, other_frame_idx])
    order = np.argsort(frames, kind="stable")
    return np.concatenate([faces, other_faces])[order], frames[order]


def store_record(video_id: str, size: int, sampled: Sequence[int], found: Sequence[FrameFace],
            status: str, reason: str) -> dict[str, np.ndarray]:
    """The store file's arrays; one entry per decoded sampled frame."""
    kept = [f.face for f in found if f.face is not None]
    has_face = np.array([f.face is not None for f in found], dtype=bool)
    sampled_idx = np.asarray(sampled, dtype=np.int64)
    others = [(i, crop) for i, f in zip(sampled_idx, found) for crop in f.others]
    return {
        "video_id": np.array(video_id),
        "faces": (np.stack(kept) if kept else np.zeros((0, size, size, 3), np.uint8)),
        "frame_idx": sampled_idx[has_face],
        "other_faces": (np.stack([c for _, c in others]) if others
                        else np.zeros((0, size, size, 3), np.uint8)),
        "other_frame_idx": np.array([i for i, _ in others], dtype=np.int64),
        "sampled_idx": sampled_idx,
        "has_face": has_face,
        "boxes": np.array([f.box if f.box else (math.nan,) * 4 for f in found],
                          dtype=np.float32).reshape(-1, 4),
        "probs": np.array([f.prob for f in found], dtype=np.float32),
        "n_detected": np.array([f.n_detected for f in found], dtype=np.int32),
        "rules": np.array([f.rule for f in found], dtype=str).reshape(-1),
        "frame_faces": np.array([f.n_faces for f in found], dtype=np.int32),
        "shot_change": np.array([f.shot_change for f in found], dtype=bool).reshape(-1),
        "status": np.array(status),
        "reason": np.array(reason),
    }


def store_config(extractor: FaceExtractor, n: int, strategy: str, every_k: int) -> str:
    """The settings a store file was made with, as a string kept inside it."""
    settings = {k: getattr(extractor, k) for k in _RESULT_KEYS}
    settings.update(frames_per_video=n, sampling=strategy, cascade=mtcnn.CASCADE_VERSION,
                    choice=CHOICE_VERSION,
                    every_k=every_k if strategy == "every_k" else 1)
    return json.dumps(settings, sort_keys=True)


def store_file_config(config: str, path: str | Path) -> str:
    """``config`` plus the video file's size and modification time: a replaced file (same
    name, new content) makes its store file stale like changed settings do."""
    return json.dumps({**json.loads(config), "source": io.file_stamp(path)}, sort_keys=True)


def _stored_config(target: Path) -> dict[str, Any] | None:
    """The settings inside a store file (None: missing, unreadable or an older layout)."""
    try:
        with np.load(target) as z:
            return json.loads(str(z["config"]))
    except Exception:  # noqa: BLE001 - unreadable or an older layout: redo it
        return None


def redo_reasons(jobs: list[tuple[str, str, Path, str]]) -> pd.Series:
    """Why each store file of ``jobs`` is redone: new, damaged (it does not read whole),
    an older layout, other settings or a replaced file."""
    reasons = []
    for _, _, target, config in jobs:
        old = _stored_config(target)
        new = json.loads(config)
        if not target.exists():
            reasons.append("new")
        elif io.read_problem(target):
            reasons.append("damaged")
        elif old is None:
            reasons.append("older layout")
        elif {k: v for k, v in old.items() if k != "source"} != \
                {k: v for k, v in new.items() if k != "source"}:
            reasons.append("other settings")
        else:
            reasons.append("video file replaced")
    return pd.Series(reasons, dtype=str)


def store_digest(run: RunPaths, video_id: str) -> str:
    """A short digest of what a video's store file was made from (settings and source
    file), "" without a readable one: the key later artifacts record per video."""
    try:
        with np.load(run.face_file(video_id)) as z:
            config = str(z["config"])
    except Exception:  # noqa: BLE001 - missing or foreign: no digest
        return ""
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def store_inputs(run: RunPaths, roles: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, str]]:
    """Per role (``train``, ``val``, ...) the videos of its table with their
    :func:`store_digest`: the inputs of an artifact made from these face store files."""
    return {role: {vid: store_digest(run, vid) for vid in table["video_id"].astype(str)}
            for role, table in roles.items()}


@dataclass(frozen=True)
class StoreSettings:
    """How a run's face store was made, read back from its files: what re-extraction
    (compression robustness, ``dflib predict``) needs to cut the same crops."""

    extractor: dict[str, Any]  # FaceExtractor arguments
    frames_per_video: int
    sampling: str
    every_k: int


def store_settings(run: RunPaths, batch_size: int = 32, device: str = "auto") -> StoreSettings:
    """The settings inside the run's first readable store file (every file of a finished
    stage has the same); ``batch_size`` and ``device`` change speed, not crops."""
    for target in sorted(run.face_store.glob("*.npz")):
        try:
            with np.load(target) as z:
                saved = json.loads(str(z["config"]))
        except Exception:  # noqa: BLE001 - unreadable or an older layout: try the next one
            continue
        extractor = {k: saved.get(k, _BEFORE_KEY.get(k)) for k in _RESULT_KEYS}
        return StoreSettings({**extractor, "batch_size": batch_size, "device": device},
                             int(saved["frames_per_video"]), saved["sampling"],
                             int(saved["every_k"]))
    raise FileNotFoundError(f"{run.face_store}: no readable face store file to take the face "
                            "extraction settings from (a run folder copied without it? one "
                            "file is enough); run stage 'faces' first")


def video_rows(video: Mapping[str, Any], target: Path, error: str | None
                ) -> tuple[dict[str, Any], pd.DataFrame]:
    """The summary row and the per-frame rows of one video, from its store file."""
    base = {"video_id": video["video_id"], "label": video["label"], "split": video["split"]}
    if error is None and target.is_file():
        with np.load(target) as z:
            status, reason = str(z["status"]), str(z["reason"])
            sampled, has_face = z["sampled_idx"], z["has_face"]
            boxes, probs, n_detected = z["boxes"], z["probs"], z["n_detected"]
            # Store files from before the rules were recorded have neither array.
            rules = z["rules"] if "rules" in z.files else np.full(len(sampled), "")
            cuts = z["shot_change"] if "shot_change" in z.files else np.zeros(len(sampled), bool)
            n_faces = (z["frame_faces"] if "frame_faces" in z.files
                       else has_face.astype(np.int32))
            n_other = len(z["other_frame_idx"]) if "other_frame_idx" in z.files else 0
    else:  # an unexpected error: nothing (or an outdated file) was stored
        status, reason = "failed", error or "no store file"
        sampled, has_face = np.empty(0, np.int64), np.empty(0, bool)
        boxes, probs, n_detected = np.empty((0, 4)), np.empty(0), np.empty(0, np.int32)
        rules, cuts, n_faces = np.empty(0, str), np.empty(0, bool), np.empty(0, np.int32)
        n_other = 0
    summary = {**base, "status": status, "n_sampled": len(sampled),
               "n_faces": int(has_face.sum()), "n_other_faces": n_other, "reason": reason}
    if len(sampled) == 0:  # a failed video keeps one row, so it never drops out
        frames = pd.DataFrame([{**base, "frame_idx": -1, "face": 0, "x1": math.nan,
                                "y1": math.nan, "x2": math.nan, "y2": math.nan,
                                "prob": math.nan, "n_detected": 0, "n_faces": 0, "rule": "",
                                "shot_change": False, "store_row": -1, "reason": reason}])
        return summary, frames
    frames = pd.DataFrame({
        **base, "frame_idx": sampled, "face": has_face.astype(int),
        "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2], "y2": boxes[:, 3],
        "prob": probs, "n_detected": n_detected, "n_faces": n_faces, "rule": rules,
        "shot_change": cuts,
        "store_row": np.where(has_face, np.cumsum(has_face) - 1, -1),
        "reason": np.where(has_face, "", "no_face"),
    })
    return summary, frames


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the faces stage first")
    table = pd.read_csv(path, dtype={"video_id": str, "split": str, "reason": str})
    table["reason"] = table["reason"].fillna("")
    return table


class FaceStore:
    """Read access to one run's face store, one video at a time."""

    def __init__(self, run: RunPaths) -> None:
        self.run = run

    def load(self, video_id: str, every_face: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The faces ``uint8 [k, S, S, 3]`` of one video and their frame indices ``[k]``
        (``k`` = 0 when the video has no face); reads that video's file only.

        ``every_face`` adds the other faces a ``multi_face: max`` store holds
        (:func:`with_other_faces`)."""
        target = self.run.face_file(video_id)
        if not target.is_file():
            raise FileNotFoundError(f"no face store file for video {video_id!r} ({target})")
        with np.load(target) as z:
            if every_face and "other_faces" in z.files:
                return with_other_faces(z["faces"], z["frame_idx"], z["other_faces"],
                                        z["other_frame_idx"])
            return z["faces"], z["frame_idx"]

    def check(self, video_id: str, n_faces: int) -> str:
        """"" when the video's store file reads whole and holds ``n_faces`` faces, else why
        not.

        A file cut short (a copy that stopped, a full disk outside dflib) or damaged inside
        (:func:`dflib.io.read_problem` checks every member's CRC, so it reads the file
        through once) fails here, before a stage counts on its faces.
        """
        target = self.run.face_file(video_id)
        if not target.is_file():
            return f"{target}: no store file"
        problem = io.read_problem(target)
        if problem:
            return f"{target}: unreadable store file ({problem})"
        try:
            with zipfile.ZipFile(target) as z, z.open("faces.npy") as fh:
                version = np.lib.format.read_magic(fh)
                shape = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                         else np.lib.format.read_array_header_2_0(fh))[0]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            return f"{target}: unreadable store file ({type(exc).__name__}: {exc})".splitlines()[0]
        if not shape or shape[0] != n_faces:
            return f"{target}: holds {shape[0] if shape else 0} faces, faces/summary.csv says {n_faces}"
        return ""

    def summary(self) -> pd.DataFrame:
        """``faces/summary.csv``: one row per video with status and counts."""
        return _read_table(self.run.faces_summary_csv)

    def index(self) -> pd.DataFrame:
        """``faces/index.csv``: one row per sampled frame."""
        return _read_table(self.run.faces_csv)
