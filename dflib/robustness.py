"""Compression robustness, the paper's theme: every trained detector on re-encoded videos.

The test videos are re-encoded with H.264 (libx264 through imageio-ffmpeg's ffmpeg) at
each CRF of the profile (0 is lossless, 23 is FaceForensics++'s c23, 40 its c40), their
faces extracted again with the run's own settings, and scored by the saved detectors
(:mod:`dflib.reload`, imported only when scoring: it loads torch, which must come
before TensorFlow in a process). Each CRF is a small run folder of its own,
``robustness/crf<NN>/`` (videos, face store, predictions), so a rerun re-encodes and
re-extracts only what is missing or made from another source file or preset; the table
``tables/robustness.csv`` has one row per (method, CRF).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import evaluation, faces, io
from .detectors import display_group
from .paths import RunPaths, resolve
from .robustness_fields import X264_PRESETS

TABLE_COLUMNS = ["method", "family", "crf", "n", "n_no_face", "auc", "auc_low", "auc_high",
                 "acc", "balanced_acc", "balanced_acc_val", "eer", "ap", "logloss", "ece"]
ORIGINAL = -1  # the crf of the rows scored on the videos as the dataset ships them


class EncodeError(RuntimeError):
    """ffmpeg could not re-encode a video; the message names the file."""


def reencode(source: str | Path, target: str | Path, crf: int, preset: str = "medium") -> Path:
    """Re-encode ``source`` to H.264 at ``crf`` (no audio, yuv420p), written atomically."""
    import imageio_ffmpeg

    if not 0 <= crf <= 51:
        raise ValueError(f"crf {crf} is outside libx264's 0..51")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset {preset!r} is not one of {', '.join(X264_PRESETS)}")
    with io.atomic_path(target) as tmp:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i",
               str(source), "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
               "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
            raise EncodeError(f"{source}: cannot re-encode at CRF {crf} ({last})")
    return Path(target)


def encoding_record(source: Path, crf: int, preset: str) -> dict[str, object]:
    """What a re-encoded video is made from: its source file (path, size, modification
    time), the CRF and the preset; a re-encode is reused only while this is unchanged
    (and the re-encoded file is the one written, :func:`ensure_reencoded`)."""
    return {"source": str(source), "stat": io.file_stamp(source), "crf": crf, "preset": preset}


def record_path(target: Path) -> Path:
    """The record beside a re-encoded video (:func:`encoding_record`)."""
    return target.with_suffix(".json")


def encoded_from(target: Path) -> dict[str, object] | None:
    """The record a re-encoded video was made with; None when the video or its record is
    missing or unreadable (then it is re-encoded)."""
    if not target.is_file():
        return None
    try:
        return json.loads(record_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_reencoded(source: Path, target: Path, crf: int, preset: str) -> bool:
    """Re-encode ``source`` onto ``target`` unless ``target`` was made from this very
    source file, CRF and preset (:func:`encoding_record`) and is still the file written
    then (its size and modification time, kept in the record as ``encoded``: a copy cut
    short or a file replaced is encoded again); True when it encoded."""
    made_from = encoding_record(source, crf, preset)
    if encoded_from(target) == {**made_from, "encoded": io.file_stamp(target)}:
        return False
    reencode(source, target, crf, preset)
    io.write_text(json.dumps({**made_from, "encoded": io.file_stamp(target)}, sort_keys=True)
                  + "\n", record_path(target))
    return True


def pick_videos(test: pd.DataFrame, max_videos: int, seed: int) -> pd.DataFrame:
    """All test videos, or a seeded subset of at most ``max_videos`` with both classes
    in their original proportion (at least one of each when both exist)."""
    if max_videos <= 0 or len(test) <= max_videos:
        return test.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    share = test["label"].value_counts(normalize=True)
    parts = []
    for label, group in test.groupby("label"):
        k = max(1, round(max_videos * share[label]))
        parts.append(group.iloc[np.sort(rng.choice(len(group), min(k, len(group)),
                                                   replace=False))])
    return pd.concat(parts).sort_index().head(max_videos).reset_index(drop=True)


@dataclass
class RobustnessResult:
    """The table (one row per method and CRF) and what could not be re-encoded."""

    table: pd.DataFrame
    failures: pd.DataFrame  # video_id, reason
    methods: list[str]
    outcomes: pd.DataFrame  # the stage summary's view: video_id, outcome, reason, detail
    extractions: dict[int, faces.Extraction]  # by CRF: its faces stage


def run_section(run: RunPaths, test: pd.DataFrame, shared: Mapping[str, Any],
                section: Mapping[str, Any], scoring: evaluation.Scoring,
                progress: bool = True) -> RobustnessResult:
    """:func:`run_robustness` with a validated profile's shared keys and ``robustness``
    section (:data:`dflib.robustness_fields.ROBUSTNESS`): ``test`` (the index's test rows)
    cut to ``max_videos``, every method with results when ``methods`` is empty, faces
    extracted again with the settings of the run's face store."""
    from . import reload  # torch before TensorFlow; see dflib.reload

    return run_robustness(
        run, pick_videos(test, section["max_videos"], shared["seed"]), section["crfs"],
        section["methods"] or reload.trained_methods(run),
        faces.store_settings(run, device=shared["device"]), section["preset"],
        progress=progress, scoring=scoring)


def run_robustness(run: RunPaths, test: pd.DataFrame, crfs: Sequence[int],
                   methods: Sequence[str], extraction: faces.StoreSettings,
                   preset: str, progress: bool = True,
                   scoring: evaluation.Scoring = evaluation.Scoring()) -> RobustnessResult:
    """Re-encode ``test`` (index rows) at each CRF, extract faces with ``extraction`` (the
    run's own: :func:`dflib.faces.store_settings`), score ``methods``, each at its own
    ``threshold_val`` of ``results.csv`` (chosen on the clean validation videos).

    Rows with ``crf`` = :data:`ORIGINAL` repeat each method's own video-level results on
    the same videos, the reference the CRFs are read against. A video that ffmpeg cannot
    re-encode is recorded (and keeps its ``no_face`` row in the predictions, as any
    video without faces does).
    """
    from . import reload  # torch before TensorFlow; see dflib.reload

    unknown = sorted(set(methods) - set(reload.trained_methods(run)))
    if unknown:
        raise ValueError(f"robustness.methods: {unknown[0]!r} has no results in "
                         f"{run.results_csv} (trained: {', '.join(reload.trained_methods(run))})")
    thresholds = _thresholds_val(run)
    rows = [_original_rows(run, methods, test, thresholds, scoring)]
    failures, extractions, stores, scored_videos = [], {}, {}, []
    for crf in crfs:
        sub = run.crf_run(crf).ensure()
        encoded, redone = [], 0
        for video in tqdm(test.to_dict("records"), desc=f"CRF {crf}", unit="video",
                          disable=not progress):
            target = sub.reencoded_video(str(video["video_id"]))
            existed = target.is_file()
            try:
                redone += ensure_reencoded(resolve(video["path"]), target, crf, preset) and existed
            except EncodeError as exc:
                failures.append({"video_id": video["video_id"], "reason": str(exc)})
            encoded.append({**video, "path": str(target)})
        if redone:
            print(f"CRF {crf}: {redone} re-encoded video(s) redone: their source file or "
                  "the preset changed, or the re-encoded file is not the one written")
        videos = pd.DataFrame(encoded, columns=test.columns)
        extracted = faces.run_extraction(videos, sub, extraction.extractor,
                                         extraction.frames_per_video, extraction.sampling,
                                         extraction.every_k, progress=progress)
        extractions[crf] = extracted
        videos = videos.merge(extracted.summary[["video_id", "n_faces", "n_other_faces",
                                                 "status"]].rename(
            columns={"status": "face_status"}), on="video_id", how="left")
        videos[["n_faces", "n_other_faces"]] = (videos[["n_faces", "n_other_faces"]]
                                                .fillna(0).astype(int))
        stores[_crf_key(crf)] = faces.FaceStore(sub)
        scored_videos.append(videos.assign(video_id=_crf_key(crf) + "/"
                                           + videos["video_id"].astype(str)))
    # One call for every CRF: each detector is loaded once, not once per CRF (loading the
    # saved models cost about half of this stage's time when each CRF reloaded them).
    scored = reload.score_methods(run, methods, StoresByKey(stores),
                                  pd.concat(scored_videos, ignore_index=True),
                                  progress=progress) if crfs else {}
    for crf in crfs:
        sub = run.crf_run(crf)
        for method, prediction in scored.items():
            v, f = (_of_key(part, _crf_key(crf)) for part in prediction)
            evaluation.write_predictions(sub, method, v, f)
            rows.append(_rows(evaluation.score_method(
                sub, method, scoring=scoring, thresholds_val=thresholds.get(method, {})), crf))
    table = pd.concat(rows, ignore_index=True)[TABLE_COLUMNS].round(evaluation.RESULT_DECIMALS)
    io.write_csv(table, run.robustness_csv)
    failed = pd.DataFrame(failures, columns=["video_id", "reason"])
    first = failed.drop_duplicates("video_id").set_index("video_id")["reason"]
    ids = test["video_id"].astype(str)
    outcomes = pd.DataFrame({
        "video_id": ids, "outcome": np.where(ids.isin(first.index), "failed", "processed"),
        "reason": np.where(ids.isin(first.index), "cannot re-encode", ""),
        "detail": ids.map(first).fillna("")})
    return RobustnessResult(table, failed, list(methods), outcomes, extractions)


class StoresByKey:
    """Several face stores read as one :class:`dflib.detectors.models.batches.FaceSource`: video
    ``<key>/<video_id>`` is ``video_id`` of the store under ``key``."""

    def __init__(self, stores: Mapping[str, faces.FaceStore]):
        self.stores = dict(stores)

    def load(self, video_id: str, every_face: bool = False) -> tuple[np.ndarray, np.ndarray]:
        key, _, own_id = video_id.partition("/")
        return self.stores[key].load(own_id, every_face=every_face)


def _crf_key(crf: int) -> str:
    return f"crf{crf}"


def _of_key(table: pd.DataFrame | None, key: str) -> pd.DataFrame | None:
    """The rows of ``table`` (predictions of a :class:`StoresByKey` source) under ``key``,
    with their own video ids."""
    if table is None:
        return None
    ids = table["video_id"].astype(str)
    mine = ids.str.startswith(key + "/")
    return table[mine].assign(video_id=ids[mine].str.slice(len(key) + 1)).reset_index(drop=True)


def _rows(results: pd.DataFrame, crf: int) -> pd.DataFrame:
    video = results[results["level"] == "video"]
    return video.assign(crf=crf, family=video["method"].map(display_group))


def _thresholds_val(run: RunPaths) -> dict[str, dict[str, float]]:
    """``method -> level -> threshold_val`` of the run's results table."""
    table = evaluation.results_table(run)
    out: dict[str, dict[str, float]] = {}
    for row in table.itertuples():
        if pd.notna(row.threshold_val):
            out.setdefault(row.method, {})[row.level] = float(row.threshold_val)
    return out


def _original_rows(run: RunPaths, methods: Sequence[str], test: pd.DataFrame,
                   thresholds: Mapping[str, Mapping[str, float]],
                   scoring: evaluation.Scoring) -> pd.DataFrame:
    """Each method's own test predictions restricted to ``test``, scored the same way."""
    ids = set(test["video_id"].astype(str))
    rows = []
    for method in methods:
        videos, _ = evaluation.read_predictions(run, method)
        videos = videos[videos["video_id"].isin(ids)]
        m = evaluation.result_row(videos["label"], videos["score"],
                                  threshold_val=thresholds.get(method, {}).get("video"),
                                  scoring=scoring)
        rows.append({"method": method,
                     "n_no_face": int((videos["status"] == evaluation.STATUS_NO_FACE).sum()),
                     **m})
    return _rows(pd.DataFrame(rows).assign(level="video"), ORIGINAL)


def read_table(run: RunPaths) -> pd.DataFrame:
    """``tables/robustness.csv``; a clear error when stage 08 has not run."""
    target = run.robustness_csv
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no robustness table; run stage 'robustness' first")
    return pd.read_csv(target)


def auc_by_crf(table: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, ``original`` and each CRF as columns, video-level AUC as values."""
    wide = table.pivot(index="method", columns="crf", values="auc")
    wide.columns = ["original" if c == ORIGINAL else f"crf{c}" for c in wide.columns]
    order = list(dict.fromkeys(table["method"]))
    return wide.reindex(order).reset_index()
