"""One scoring path for every detector: prediction files and the results table.

Prediction files live under ``predictions/``: ``<name>.csv`` (one row per test video) and
``<name>_frames.csv`` (one row per scored frame), where ``<name>`` is the method name with
``/`` written as ``__`` (``cnn/xception/boosted`` -> ``cnn__xception__boosted.csv``).
``tables/results.csv`` holds one row per (method, level) computed from those files by the
metrics of :mod:`dflib.statistics`. Validation-split predictions of the same detectors live
under ``predictions/val/`` with the same names and columns; they choose each method's
operating threshold (``threshold_val``) and the best method (``val_split_auc``), never the
test split.
"""

from __future__ import annotations

import csv
import warnings
from io import StringIO
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .io import atomic_write, write_csv
from .paths import RunPaths
from .detectors import is_detector
from .statistics import (AT_THRESHOLD_VAL, FRAME_COLUMNS, INTERVAL_COLUMNS, METRIC_COUNTS,
                         STATUS_NO_FACE, STATUS_OK, VIDEO_COLUMNS, Scoring, checked_scores,
                         metrics, require_columns, result_row, validation_threshold)
from .vocabulary import FRAMES_SUFFIX, PREDICTION_SPLITS, method_from_filename

EVIDENCE_FLOATS = ("threshold_val", *(f"{m}_val" for m in AT_THRESHOLD_VAL), *INTERVAL_COLUMNS)
RESULT_FLOATS = ("acc", "precision", "recall", "f1", "auc", "eer", "ap", "logloss",
                 "balanced_acc", *EVIDENCE_FLOATS, "ece", "brier", "val_split_auc")
RESULT_COLUMNS = ("method", "level", *METRIC_COUNTS, "n_no_face", *RESULT_FLOATS)
# What a detector gives a set of videos: (video rows, frame rows or None).
Prediction = tuple[pd.DataFrame, pd.DataFrame | None]
RESULT_DECIMALS = 6


# --------------------------------------------------------------------------- prediction files

def write_predictions(run: RunPaths, method: str, videos: pd.DataFrame,
                      frames: pd.DataFrame | None = None,
                      split: str = "test") -> tuple[Path, Path | None]:
    """Check and write a method's video (and frame) predictions of ``split`` atomically.

    ``videos`` needs ``video_id, label, score, pred, n_frames``; a missing ``status`` is
    derived from ``n_frames`` (0 -> ``no_face``). Contract columns come first, extras
    follow. Writing without frames removes a stale frames file of an earlier run.
    """
    video_csv, frames_csv = run.prediction_files(method, split)
    require_columns(videos, VIDEO_COLUMNS[:-1], f"{method} video predictions")
    if "status" not in videos:
        videos = videos.assign(status=np.where(videos["n_frames"] > 0, STATUS_OK, STATUS_NO_FACE))
    _check_table(videos, ["video_id"], f"{method} video predictions")
    write_csv(_contract_first(videos, VIDEO_COLUMNS), video_csv)
    if frames is None:
        frames_csv.unlink(missing_ok=True)
        return video_csv, None
    require_columns(frames, FRAME_COLUMNS, f"{method} frame predictions")
    _check_table(frames, ["video_id", "frame_idx"], f"{method} frame predictions")
    write_csv(_contract_first(frames, FRAME_COLUMNS), frames_csv)
    return video_csv, frames_csv


def read_predictions(run: RunPaths, method: str,
                     split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(videos, frames)`` of a method on ``split``; frames is None when it wrote none."""
    video_csv, frames_csv = run.prediction_files(method, split)
    if not video_csv.exists():
        raise FileNotFoundError(f"no {split} predictions for method {method!r}: "
                                f"{video_csv} is missing")
    videos = pd.read_csv(video_csv, dtype={"video_id": str, "status": str})
    frames = pd.read_csv(frames_csv, dtype={"video_id": str}) if frames_csv.exists() else None
    return videos, frames


def _check_table(df: pd.DataFrame, keys: list[str], what: str) -> None:
    """Reject tables that would score wrongly later: duplicate rows, bad labels or scores."""
    if df.duplicated(keys).any():
        raise ValueError(f"{what}: duplicate {'/'.join(keys)} rows")
    checked_scores(df["label"], df["score"])


def _contract_first(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return df[[*columns, *(c for c in df.columns if c not in columns)]]


# --------------------------------------------------------------------------- results table

def score_method(run: RunPaths, method: str, threshold: float = 0.5,
                 scoring: Scoring = Scoring(),
                 thresholds_val: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Score a method's prediction files and upsert its rows into ``tables/results.csv``.

    Levels ``video`` and, when a frames file exists, ``frame``. ``n_no_face`` counts the
    videos scored by the prior (status ``no_face`` or ``failed``). Metrics come from the
    scores (``score > threshold``), not the stored ``pred``, so every method is held to
    one rule. Each level's ``threshold_val`` comes from the method's validation
    predictions of that level (``scoring.threshold_rule``), unless ``thresholds_val``
    (level -> threshold) gives it; ``val_split_auc`` is the AUC on those predictions (NaN
    without them); intervals come from :func:`dflib.statistics.bootstrap_intervals` over
    videos. The method's old rows are replaced, rows are sorted by method and level, and
    floats are written with 6 decimals so equal inputs give byte-identical files. Stages
    run one after another; two processes upserting at once could lose a row. Returns the
    method's new rows.
    """
    videos, frames = read_predictions(run, method)
    val = _validation(run, method) if thresholds_val is None else {}
    levels = [("video", videos)] + ([("frame", frames)] if frames is not None else [])
    rows = []
    for level, table in levels:
        if thresholds_val is not None:
            t_val, val_auc = thresholds_val.get(level, threshold), float("nan")
        else:
            t_val, val_auc = _from_validation(val.get(level), scoring.threshold_rule, threshold,
                                              method)
        row = {"method": method, "level": level,
               **result_row(table["label"], table["score"], threshold, t_val,
                            table["video_id"], scoring),
               "val_split_auc": val_auc}
        if level == "video":
            row["n_no_face"] = int((table["status"] != STATUS_OK).sum())
        rows.append(row)
    new = _normalise(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))
    old = results_table(run)
    kept = old[old["method"] != method]
    table = pd.concat([t for t in (kept, new) if len(t)], ignore_index=True)
    table = table.sort_values(["method", "level"], kind="stable").reset_index(drop=True)
    atomic_write(run.results_csv, lambda p: table.to_csv(
        p, index=False, float_format=f"%.{RESULT_DECIMALS}f", lineterminator="\n"))
    return new


def _validation(run: RunPaths, method: str) -> dict[str, pd.DataFrame]:
    """A method's validation predictions by level; empty when it wrote none."""
    try:
        videos, frames = read_predictions(run, method, "val")
    except FileNotFoundError:
        return {}
    return {"video": videos, **({"frame": frames} if frames is not None else {})}


def _from_validation(table: pd.DataFrame | None, rule: str, fixed: float,
                     method: str) -> tuple[float, float]:
    """``(threshold_val, val_split_auc)`` of one level's validation predictions."""
    if table is None:
        if rule != "fixed":
            warnings.warn(f"{method}: no validation predictions, so threshold_val is the "
                          f"fixed threshold {fixed}", stacklevel=3)
        return fixed, float("nan")
    y, s = table["label"], table["score"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # validation_threshold says it once, below
        auc = metrics(y, s)["auc"]
    return validation_threshold(y, s, rule, fixed), auc


def chosen_method(results: pd.DataFrame, level: str = "video",
                  among: Sequence[str] | None = None) -> str | None:
    """The method with the highest ``val_split_auc`` at ``level`` (of ``among`` when given,
    else of the detectors: a control is never the study's pick), ties to the first in table
    order: the study's choice, made on validation, never on test. None when no method has
    a validation AUC."""
    rows = results[(results["level"] == level) & results["val_split_auc"].notna()]
    if among is not None:
        rows = rows[rows["method"].isin(list(among))]
    else:
        rows = rows[rows["method"].map(is_detector).astype(bool)]
    if rows.empty:
        return None
    return str(rows.loc[rows["val_split_auc"].astype(float).idxmax(), "method"])


def retire_methods(run: RunPaths, family: str, current: Sequence[str]) -> list[str]:
    """Drop the results rows and prediction files of ``family``'s methods not in ``current``.

    A rerun with other settings can produce fewer methods (fewer chunk models, no
    ensemble); their old rows would otherwise stand beside the new ones as if current.
    ``family`` is a method name prefix such as ``cnn/xception``. Returns the retired names.
    """
    table = results_table(run)
    stale = sorted({m for m in table["method"]
                    if (m == family or m.startswith(f"{family}/")) and m not in current})
    if stale:
        kept = table[~table["method"].isin(stale)]
        atomic_write(run.results_csv, lambda p: kept.to_csv(
            p, index=False, float_format=f"%.{RESULT_DECIMALS}f", lineterminator="\n"))
        for method in stale:
            for split in PREDICTION_SPLITS:
                for path in run.prediction_files(method, split):
                    path.unlink(missing_ok=True)
    return stale


def results_table(run: RunPaths) -> pd.DataFrame:
    """The run's results table (empty, with its columns, before anything was scored)."""
    if not run.results_csv.exists():
        return _normalise(pd.DataFrame(columns=list(RESULT_COLUMNS)))
    return _normalise(pd.read_csv(run.results_csv, dtype={"method": str, "level": str}))


def check_results(run: RunPaths) -> None:
    """Raise ``ValueError`` naming ``tables/results.csv`` unless it is whole: readable text,
    ended by a newline (every writer ends it so), each row as long as the header, and a row
    for every method with test predictions. A copy that stopped part-way would otherwise
    read as a shorter table, and a choice made on it (the best validation AUC) silently be
    another one."""
    path = run.results_csv
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    damaged = f"{path}: damaged or cut short (a copy that stopped?)"
    rows = list(csv.reader(StringIO(text)))
    if not text.endswith("\n") or not rows or not {"method", "level"} <= set(rows[0]):
        raise ValueError(f"{damaged}: it does not end with a whole row; copy it again or "
                         "rerun the study")
    short = next((n for n, row in enumerate(rows[1:], 2) if len(row) != len(rows[0])), None)
    if short is not None:
        raise ValueError(f"{damaged}: line {short} has {len(rows[short - 1])} of "
                         f"{len(rows[0])} fields; copy it again or rerun the study")
    listed = {row[rows[0].index("method")] for row in rows[1:]}
    unscored = []
    for p in sorted(run.predictions.glob("*.csv")):
        try:
            method = method_from_filename(p.name)
        except ValueError:  # no prediction file of dflib's
            continue
        if not p.stem.endswith(FRAMES_SUFFIX) and method not in listed:
            unscored.append(method)
    if unscored:
        more = f" and {len(unscored) - 3} more" if len(unscored) > 3 else ""
        raise ValueError(f"{path}: no row for {', '.join(unscored[:3])}{more}, whose "
                         f"predictions are in {run.predictions} (cut short, or its stage "
                         "stopped before scoring it); copy it again or rerun that stage")


def _normalise(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes and rounding, so a table read back equals the table written."""
    table = table.reindex(columns=list(RESULT_COLUMNS))  # an older run lacks newer columns
    for c in ("method", "level"):
        table[c] = table[c].astype(str)
    for c in (*METRIC_COUNTS, "n_no_face"):
        table[c] = table[c].astype("Int64")  # counts stay integers; frame rows have no n_no_face
    for c in RESULT_FLOATS:
        table[c] = table[c].astype(float).round(RESULT_DECIMALS)
    return table
