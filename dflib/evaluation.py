"""One scoring path for every detector: aggregation, ensembles, metrics, prediction files.

Conventions (docs/design.md, "Contracts"):

* labels are 1 = fake, 0 = real, and fake is the positive class of every metric;
* a score is the probability of fake and a prediction is ``score > threshold`` (strict,
  so a score of exactly 0.5 is called real), for frames, videos and ensembles alike;
* a test video with no scored frame keeps its row with a prior score and status
  ``no_face`` (``failed`` when its extraction failed): it never leaves the denominator.

Prediction files live under ``predictions/``: ``<name>.csv`` (one row per test video) and
``<name>_frames.csv`` (one row per scored frame), where ``<name>`` is the method name with
``/`` written as ``__`` (``cnn/xception/boosted`` -> ``cnn__xception__boosted.csv``).
``tables/results.csv`` holds one row per (method, level) computed from those files.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .io import atomic_write, write_csv
from .paths import RunPaths

AGGREGATIONS = ("mean", "max", "vote", "confident")
ENSEMBLES = ("vote", "mean")

# DFDC winner's confident strategy: frames above T (or below 1 - T) count as confident.
CONFIDENT_T = 0.8
CONFIDENT_MIN_FAKES = 11
CONFIDENT_REAL_SHARE = 0.9

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_FAILED = "failed"
# ``face_status`` values of the video index (``pipeline.cnn_videos``) that mean the faces
# stage could not read the video: such a video's row says ``failed``, not ``no_face``.
FACE_FAILED = ("failed", "unreadable")

VIDEO_COLUMNS = ("video_id", "label", "score", "pred", "n_frames", "status")
FRAME_COLUMNS = ("video_id", "frame_idx", "label", "score")

METRIC_COUNTS = ("n", "n_pos", "n_neg")
METRIC_FLOATS = ("acc", "precision", "recall", "f1", "auc", "eer", "ap", "logloss")
RESULT_COLUMNS = ("method", "level", *METRIC_COUNTS, "n_no_face", *METRIC_FLOATS)
RESULT_DECIMALS = 6
LOGLOSS_EPS = 1e-7

FRAMES_SUFFIX = "_frames"
# A method segment: starts alphanumeric, single underscores only inside, so that "/" <-> "__"
# is a bijection and no method name can end in the frames suffix of another.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(?:_[A-Za-z0-9.+-]+)*")


# --------------------------------------------------------------------------- aggregation

def aggregate(frame_scores: np.ndarray | Sequence[float], rule: str = "mean",
              threshold: float = 0.5) -> float:
    """Combine one video's frame scores into a video score with ``rule``.

    ``mean`` (the paper), ``max``, ``vote`` (share of frames with score > ``threshold``;
    above 0.5 means a strict majority voted fake) or ``confident`` (DFDC winner, t = 0.8;
    ``threshold`` is not used). Raises ``ValueError`` on no scores or non-finite scores:
    a video without faces is the caller's decision, not a silent default here.
    """
    scores = np.asarray(frame_scores, dtype=float)
    if scores.ndim != 1:
        raise ValueError(f"frame scores must be 1-D, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError("no frame scores to aggregate")
    if not np.isfinite(scores).all():
        raise ValueError("frame scores contain NaN or inf")
    if rule == "mean":
        return float(scores.mean())
    if rule == "max":
        return float(scores.max())
    if rule == "vote":
        return float((scores > threshold).mean())
    if rule == "confident":
        return _confident(scores)
    raise ValueError(f"unknown aggregation rule {rule!r}; choose one of {AGGREGATIONS}")


def _confident(scores: np.ndarray) -> float:
    """DFDC winner's rule. The original tests ``fakes > n // 2.5``; for an integer count
    that is the same as ``fakes > n / 2.5``, which is what is written here."""
    n = scores.size
    fakes = scores > CONFIDENT_T
    if fakes.sum() > n / 2.5 and fakes.sum() > CONFIDENT_MIN_FAKES:
        return float(scores[fakes].mean())
    reals = scores < 1 - CONFIDENT_T
    if reals.sum() > CONFIDENT_REAL_SHARE * n:
        return float(scores[reals].mean())
    return float(scores.mean())


def video_predictions(frames: pd.DataFrame, videos: pd.DataFrame, rule: str = "mean",
                      threshold: float = 0.5, no_face_score: float = 0.5) -> pd.DataFrame:
    """One row per video of ``videos`` (the test index), in its order.

    Columns ``video_id, label, score, pred, n_frames, status``. Frames with a NaN score
    (no face) are not counted; a video left with no scored frame gets ``no_face_score``
    (a stated prior, 0.5 = undecided) and status ``no_face``, or ``failed`` when ``videos``
    has a ``face_status`` column saying the faces stage could not read it. Frames of
    videos outside ``videos`` (other splits) are ignored; a frame label that contradicts
    the index raises.
    ``threshold`` sets both the frame votes of the ``vote`` rule and ``pred``.
    """
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation rule {rule!r}; choose one of {AGGREGATIONS}")
    if not 0.0 <= no_face_score <= 1.0:
        raise ValueError(f"no_face_score must be a probability, got {no_face_score}")
    _require(frames, FRAME_COLUMNS, "frames")
    _require(videos, ("video_id", "label"), "videos")
    index = pd.DataFrame({"video_id": videos["video_id"].astype(str).to_numpy(),
                          "label": _labels(videos["label"], "videos")})
    if index["video_id"].duplicated().any():
        dup = index.loc[index["video_id"].duplicated(), "video_id"].iloc[0]
        raise ValueError(f"video_id {dup!r} appears twice in the video index")

    scored = frames.loc[frames["score"].notna(), ["video_id", "label", "score"]]
    scored = scored.assign(video_id=scored["video_id"].astype(str))
    scored = scored[scored["video_id"].isin(index["video_id"])]
    expected = scored["video_id"].map(index.set_index("video_id")["label"])
    wrong = scored["label"].to_numpy() != expected.to_numpy()
    if wrong.any():
        vid = scored.loc[wrong, "video_id"].iloc[0]
        raise ValueError(f"frames of video {vid!r} carry a label that differs from the index")

    by_video = {vid: s.to_numpy(dtype=float) for vid, s in scored.groupby("video_id")["score"]}
    n_frames = np.array([len(by_video.get(v, ())) for v in index["video_id"]], dtype=int)
    score = np.array([aggregate(by_video[v], rule, threshold) if v in by_video else no_face_score
                      for v in index["video_id"]], dtype=float)
    unseen = np.where(videos["face_status"].isin(FACE_FAILED).to_numpy(), STATUS_FAILED,
                      STATUS_NO_FACE) if "face_status" in videos else STATUS_NO_FACE
    return index.assign(score=score, pred=(score > threshold).astype(int), n_frames=n_frames,
                        status=np.where(n_frames > 0, STATUS_OK, unseen))


# --------------------------------------------------------------------------- ensembles

def ensemble(predictions: Sequence[pd.DataFrame], how: str,
             threshold: float = 0.5) -> pd.DataFrame:
    """Combine members' predictions of the same rows (boosting over bagged models).

    Rows align on ``video_id`` or, when every member has ``frame_idx``, on
    ``video_id, frame_idx``; every member must cover exactly the same rows with the same
    labels. ``how="mean"``: score = mean member score. ``how="vote"``: score = share of
    members voting fake (their ``pred`` column, else ``score > threshold``). In both,
    ``pred = score > threshold``, so with the default 0.5 a tie between an even number
    of members is called real (a fake call needs a strict majority, as for frame votes;
    the paper's 7 chunks never tie). Video tables keep ``n_frames`` (max over members)
    and ``status``; a video that no member saw (``no_face`` or ``failed``) keeps the mean
    of the members' prior scores instead of a vote count. Output follows the first
    member's row order.
    """
    if how not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {how!r}; choose one of {ENSEMBLES}")
    if not predictions:
        raise ValueError("an ensemble needs at least one member")
    keys = ["video_id", "frame_idx"] if all("frame_idx" in p for p in predictions) else ["video_id"]
    members = []
    for i, p in enumerate(predictions):
        _require(p, (*keys, "label", "score"), f"ensemble member {i}")
        m = p.assign(video_id=p["video_id"].astype(str)).set_index(keys)
        if m.index.has_duplicates:
            raise ValueError(f"ensemble member {i} has duplicate {'/'.join(keys)} rows")
        members.append(m)
    first = members[0]
    for i, m in enumerate(members[1:], start=1):
        if len(m) != len(first) or not m.index.isin(first.index).all():
            raise ValueError(f"ensemble member {i} does not cover the same rows as member 0")
        members[i] = m.reindex(first.index)
        if (members[i]["label"].to_numpy() != first["label"].to_numpy()).any():
            raise ValueError(f"ensemble member {i} disagrees with member 0 on labels")

    scores = np.column_stack([m["score"].to_numpy(dtype=float) for m in members])
    if how == "mean":
        score = scores.mean(axis=1)
    else:
        votes = np.column_stack([m["pred"].to_numpy(dtype=int) if "pred" in m
                                 else (m["score"].to_numpy(dtype=float) > threshold)
                                 for m in members])
        score = votes.mean(axis=1)
    out = first.index.to_frame(index=False)
    out["label"] = first["label"].to_numpy(dtype=int)
    if all("status" in m and "n_frames" in m for m in members):
        unseen = np.column_stack([m["status"].to_numpy() != STATUS_OK
                                  for m in members]).all(axis=1)
        score = np.where(unseen, scores.mean(axis=1), score)
        out["score"] = score
        out["pred"] = (score > threshold).astype(int)
        out["n_frames"] = np.column_stack([m["n_frames"].to_numpy(dtype=int)
                                           for m in members]).max(axis=1)
        out["status"] = np.where(unseen, first["status"].to_numpy(), STATUS_OK)
    else:
        out["score"] = score
        out["pred"] = (score > threshold).astype(int)
    return out


# --------------------------------------------------------------------------- metrics

def metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, float]:
    """Binary metrics with fake (1) as the positive class.

    ``n, n_pos, n_neg`` and ``acc, precision, recall, f1`` (at ``score > threshold``; a
    ratio with a zero denominator is 0, like sklearn's ``zero_division=0``), ``auc``
    (ties count one half), ``eer`` (see :func:`equal_error_rate`), ``ap`` (sklearn's
    step-wise average precision) and ``logloss`` (natural log, scores clipped to
    [1e-7, 1 - 1e-7]). A set with one class gets NaN auc, eer and ap and one warning
    naming the missing class; an empty set gets NaN everywhere and one warning.
    """
    y, s = _checked(labels, scores)
    n, n_pos = int(y.size), int(y.sum())
    out: dict[str, float] = {"n": n, "n_pos": n_pos, "n_neg": n - n_pos}
    if n == 0:
        warnings.warn("empty evaluation set: every metric is NaN", stacklevel=2)
        return out | {k: float("nan") for k in METRIC_FLOATS}

    pred = s > threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = n_pos - tp
    out["acc"] = float((pred == (y == 1)).mean())
    out["precision"] = _ratio(tp, tp + fp)
    out["recall"] = _ratio(tp, tp + fn)
    out["f1"] = _ratio(2 * tp, 2 * tp + fp + fn)
    if _one_class(y, stacklevel=3):
        out |= {"auc": float("nan"), "eer": float("nan"), "ap": float("nan")}
    else:
        out["auc"] = float(roc_auc_score(y, s))
        out["eer"] = equal_error_rate(y, s)
        out["ap"] = float(average_precision_score(y, s))
    p = np.clip(s, LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    out["logloss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {k: out[k] for k in (*METRIC_COUNTS, *METRIC_FLOATS)}


def equal_error_rate(labels: Any, scores: Any) -> float:
    """The rate where FPR = FNR (= 1 - TPR), interpolated linearly on the ROC curve.

    Along sklearn's ROC points (threshold decreasing) ``d = FNR - FPR`` falls from 1 to -1.
    At the first point with ``d <= 0`` the crossing lies on the segment from the point
    before; on that straight segment ``d`` is linear, so the crossing is at the fraction
    ``d0 / (d0 - d1)`` of it, and the EER is the FPR there. Needs both classes.
    """
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    d = (1 - tpr) - fpr
    i = int(np.argmax(d <= 0))  # d[-1] == -1, so a crossing always exists
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    w = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def roc_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """``(fpr, tpr, auc)`` for a ROC figure; empty curves and NaN AUC when the set is
    empty or (with a warning) a class is missing."""
    y, s = _checked(labels, scores)
    if y.size == 0 or _one_class(y, stacklevel=3):
        return np.array([]), np.array([]), float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, float(roc_auc_score(y, s))


def _checked(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 ints and scores as probabilities, or a ValueError saying what is wrong."""
    y = _labels(labels, "labels")
    s = np.asarray(scores, dtype=float).ravel()
    if y.size != s.size:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not (np.isfinite(s) & (s >= 0) & (s <= 1)).all():
        raise ValueError("scores must be probabilities of fake in [0, 1], without NaN")
    return y, s


def _one_class(y: np.ndarray, stacklevel: int) -> bool:
    """Warn (once) and return True when ``y`` lacks a class; ranking metrics need both."""
    missing = [name for cls, name in ((1, "fake (1)"), (0, "real (0)")) if not (y == cls).any()]
    if y.size and missing:
        warnings.warn(f"no {missing[0]} examples in the evaluation set: auc, eer and ap are "
                      "undefined (NaN)", stacklevel=stacklevel)
        return True
    return False


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _labels(labels: Any, what: str) -> np.ndarray:
    y = np.asarray(labels).ravel()
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 (real) or 1 (fake), got {np.unique(y)[:5]}")
    return y.astype(int)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {list(df.columns)}")


# --------------------------------------------------------------------------- prediction files

def method_filename(method: str) -> str:
    """File stem of a method's predictions: ``cnn/xception/boosted`` -> ``cnn__xception__boosted``."""
    segments = method.split("/")
    if not all(_SEGMENT.fullmatch(s) for s in segments) or method.endswith(FRAMES_SUFFIX):
        raise ValueError(
            f"method name {method!r}: use '/'-separated segments of letters, digits, '.', '+', "
            f"'-' and single inner '_', not ending in {FRAMES_SUFFIX!r}")
    return "__".join(segments)


def method_from_filename(name: str) -> str:
    """Inverse of :func:`method_filename`; accepts a stem or a ``.csv`` file name."""
    method = Path(name).name.removesuffix(".csv").replace("__", "/")
    method_filename(method)  # validates
    return method


def prediction_paths(run: RunPaths, method: str) -> tuple[Path, Path]:
    """``(videos_csv, frames_csv)`` of a method under the run's ``predictions/``."""
    stem = method_filename(method)
    return run.predictions / f"{stem}.csv", run.predictions / f"{stem}{FRAMES_SUFFIX}.csv"


def write_predictions(run: RunPaths, method: str, videos: pd.DataFrame,
                      frames: pd.DataFrame | None = None) -> tuple[Path, Path | None]:
    """Check and write a method's video (and frame) predictions atomically.

    ``videos`` needs ``video_id, label, score, pred, n_frames``; a missing ``status`` is
    derived from ``n_frames`` (0 -> ``no_face``). Contract columns come first, extras
    follow. Writing without frames removes a stale frames file of an earlier run.
    """
    video_csv, frames_csv = prediction_paths(run, method)
    _require(videos, VIDEO_COLUMNS[:-1], f"{method} video predictions")
    if "status" not in videos:
        videos = videos.assign(status=np.where(videos["n_frames"] > 0, STATUS_OK, STATUS_NO_FACE))
    _check_table(videos, ["video_id"], f"{method} video predictions")
    write_csv(_contract_first(videos, VIDEO_COLUMNS), video_csv)
    if frames is None:
        frames_csv.unlink(missing_ok=True)
        return video_csv, None
    _require(frames, FRAME_COLUMNS, f"{method} frame predictions")
    _check_table(frames, ["video_id", "frame_idx"], f"{method} frame predictions")
    write_csv(_contract_first(frames, FRAME_COLUMNS), frames_csv)
    return video_csv, frames_csv


def read_predictions(run: RunPaths, method: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(videos, frames)`` of a method; frames is None when it wrote none."""
    video_csv, frames_csv = prediction_paths(run, method)
    if not video_csv.exists():
        raise FileNotFoundError(f"no predictions for method {method!r}: {video_csv} is missing")
    videos = pd.read_csv(video_csv, dtype={"video_id": str, "status": str})
    frames = pd.read_csv(frames_csv, dtype={"video_id": str}) if frames_csv.exists() else None
    return videos, frames


def _check_table(df: pd.DataFrame, keys: list[str], what: str) -> None:
    """Reject tables that would score wrongly later: duplicate rows, bad labels or scores."""
    if df.duplicated(keys).any():
        raise ValueError(f"{what}: duplicate {'/'.join(keys)} rows")
    _checked(df["label"], df["score"])


def _contract_first(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return df[[*columns, *(c for c in df.columns if c not in columns)]]


# --------------------------------------------------------------------------- results table

def score_method(run: RunPaths, method: str, threshold: float = 0.5) -> pd.DataFrame:
    """Score a method's prediction files and upsert its rows into ``tables/results.csv``.

    Levels ``video`` and, when a frames file exists, ``frame``. ``n_no_face`` counts the
    videos scored by the prior (status ``no_face`` or ``failed``). Metrics come from the
    scores (``score > threshold``), not the stored ``pred``, so every method is held to
    one rule. The method's old rows are replaced, rows are sorted by method and level,
    and floats are written with 6 decimals so equal inputs give byte-identical files.
    Stages run one after another; two processes upserting at once could lose a row.
    Returns the method's new rows.
    """
    videos, frames = read_predictions(run, method)
    rows = [{"method": method, "level": "video",
             "n_no_face": int((videos["status"] != STATUS_OK).sum()),
             **metrics(videos["label"], videos["score"], threshold)}]
    if frames is not None:
        rows.append({"method": method, "level": "frame",
                     **metrics(frames["label"], frames["score"], threshold)})
    new = _normalise(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))
    old = results_table(run)
    kept = old[old["method"] != method]
    table = pd.concat([t for t in (kept, new) if len(t)], ignore_index=True)
    table = table.sort_values(["method", "level"], kind="stable").reset_index(drop=True)
    atomic_write(run.results_csv, lambda p: table.to_csv(
        p, index=False, float_format=f"%.{RESULT_DECIMALS}f", lineterminator="\n"))
    return new


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
            for path in prediction_paths(run, method):
                path.unlink(missing_ok=True)
    return stale


def results_table(run: RunPaths) -> pd.DataFrame:
    """The run's results table (empty, with its columns, before anything was scored)."""
    if not run.results_csv.exists():
        return _normalise(pd.DataFrame(columns=list(RESULT_COLUMNS)))
    return _normalise(pd.read_csv(run.results_csv, dtype={"method": str, "level": str}))


def _normalise(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes and rounding, so a table read back equals the table written."""
    table = table.loc[:, list(RESULT_COLUMNS)].copy()
    for c in ("method", "level"):
        table[c] = table[c].astype(str)
    for c in (*METRIC_COUNTS, "n_no_face"):
        table[c] = table[c].astype("Int64")  # counts stay integers; frame rows have no n_no_face
    for c in METRIC_FLOATS:
        table[c] = table[c].astype(float).round(RESULT_DECIMALS)
    return table
