"""The statistics of scoring: aggregation, ensembles, metrics, thresholds, intervals, DeLong.

Pure functions of labels and scores (no files; the prediction files and the results table
are :mod:`dflib.evaluation`'s). Conventions (docs/design.md, "Contracts"):

* labels are 1 = fake, 0 = real, and fake is the positive class of every metric;
* a score is the probability of fake and a prediction is ``score > threshold`` (strict,
  so a score of exactly 0.5 is called real), for frames, videos and ensembles alike;
* a test video with no scored frame keeps its row with a prior score and status
  ``no_face`` (``failed`` when its extraction failed): it never leaves the denominator.

Intervals are percentile intervals of a stratified bootstrap written here with NumPy
(``scipy.stats.bootstrap`` resamples the pooled set, so a resample can lose a class):
reals and fakes are resampled separately, whole videos at a time (a frame-level row
resamples videos with all their frames). Paired AUC comparisons use DeLong's test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .statistics_fields import EVALUATION, THRESHOLD_RULES
from .vocabulary import AGGREGATIONS, ENSEMBLE_RULES


# DFDC winner's confident strategy: frames above T (or below 1 - T) count as confident.
CONFIDENT_T = 0.8
CONFIDENT_MIN_FAKES = 11
CONFIDENT_REAL_SHARE = 0.9

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_FAILED = "failed"
# ``face_status`` values of the video index (``stage_inputs.videos_with_faces``) that mean the faces
# stage could not read the video: such a video's row says ``failed``, not ``no_face``.
FACE_FAILED = ("failed", "unreadable")

VIDEO_COLUMNS = ("video_id", "label", "score", "pred", "n_frames", "status")
FRAME_COLUMNS = ("video_id", "frame_idx", "label", "score")

METRIC_COUNTS = ("n", "n_pos", "n_neg")
METRIC_FLOATS = ("acc", "precision", "recall", "f1", "auc", "eer", "ap", "logloss",
                 "balanced_acc", "ece", "brier")
# Test metrics recomputed at the threshold chosen on validation: column ``<metric>_val``.
AT_THRESHOLD_VAL = ("acc", "balanced_acc", "precision", "recall", "f1")
# Metrics with a bootstrap interval: columns ``<metric>_low`` and ``<metric>_high``.
INTERVAL_METRICS = ("auc", "ap", "eer", "balanced_acc")
INTERVAL_COLUMNS = tuple(f"{m}_{end}" for m in INTERVAL_METRICS for end in ("low", "high"))
LOGLOSS_EPS = 1e-7


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
    require_columns(frames, FRAME_COLUMNS, "frames")
    require_columns(videos, ("video_id", "label"), "videos")
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


def max_per_frame(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per ``(video_id, frame_idx)``: a frame scored on several faces (``faces.
    multi_face: max``) takes each score column's maximum, the most fake face (SBI's rule);
    a table with one face per frame is returned as it is."""
    keys = ["video_id", "frame_idx"]
    if not frames.duplicated(keys).any():
        return frames
    rest = [c for c in frames.columns if c not in keys]
    return frames.groupby(keys, sort=False, as_index=False).agg(
        {c: "first" if c == "label" or not pd.api.types.is_numeric_dtype(frames[c])
         else "max" for c in rest})


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
    if how not in ENSEMBLE_RULES.values():
        raise ValueError(f"unknown ensemble {how!r}; choose one of "
                         f"{tuple(ENSEMBLE_RULES.values())}")
    if not predictions:
        raise ValueError("an ensemble needs at least one member")
    keys = ["video_id", "frame_idx"] if all("frame_idx" in p for p in predictions) else ["video_id"]
    members = []
    for i, p in enumerate(predictions):
        require_columns(p, (*keys, "label", "score"), f"ensemble member {i}")
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
    step-wise average precision), ``logloss`` (natural log, scores clipped to
    [1e-7, 1 - 1e-7]), ``balanced_acc`` (mean of the recalls of fakes and reals at the
    threshold), ``ece`` (see :func:`expected_calibration_error`) and ``brier`` (mean
    squared difference of score and label). A set with one class gets NaN auc, eer, ap
    and balanced_acc and one warning naming the missing class; an empty set gets NaN
    everywhere and one warning.
    """
    y, s = checked_scores(labels, scores)
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
        out |= {k: float("nan") for k in ("auc", "eer", "ap", "balanced_acc")}
    else:
        out["auc"] = float(roc_auc_score(y, s))
        out["eer"] = equal_error_rate(y, s)
        out["ap"] = float(average_precision_score(y, s))
        out["balanced_acc"] = (out["recall"] + int((~pred & (y == 0)).sum()) / (n - n_pos)) / 2
    p = np.clip(s, LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    out["logloss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    out["ece"] = expected_calibration_error(y, s)
    out["brier"] = float(np.mean((s - y) ** 2))
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
    y, s = checked_scores(labels, scores)
    if y.size == 0 or _one_class(y, stacklevel=3):
        return np.array([]), np.array([]), float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, float(roc_auc_score(y, s))


ECE_BINS = 15


def expected_calibration_error(labels: Any, scores: Any, bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``bins`` equal-width bins of [0, 1] (a score of
    exactly 1 falls in the last): the share-weighted mean of |fake rate - mean score|
    per bin. NaN on an empty set."""
    y, s = checked_scores(labels, scores)
    if y.size == 0:
        return float("nan")
    which = np.minimum((s * bins).astype(int), bins - 1)
    gap = np.bincount(which, weights=y - s, minlength=bins)
    return float(np.abs(gap).sum() / y.size)


def reliability_bins(labels: Any, scores: Any, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width score bin: ``lower, upper, n, mean_score, fake_rate`` (NaN where a
    bin is empty), the points of a reliability diagram and of :func:`expected_calibration_error`."""
    y, s = checked_scores(labels, scores)
    which = np.minimum((s * bins).astype(int), bins - 1)
    n = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(which, weights=s, minlength=bins) / n
        fake_rate = np.bincount(which, weights=y, minlength=bins) / n
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "n": n,
                         "mean_score": mean_score, "fake_rate": fake_rate})


@dataclass(frozen=True)
class Scoring:
    """How results rows are scored beyond the point metrics (profile section
    ``evaluation``): the rule that picks ``threshold_val`` on validation predictions, the
    stratified bootstrap's resamples (0: no intervals) and confidence, and its seed."""

    threshold_rule: str = EVALUATION["threshold_rule"].default
    resamples: int = EVALUATION["bootstrap_resamples"].default
    confidence: float = EVALUATION["confidence"].default
    seed: int = 0

    def __post_init__(self) -> None:
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"threshold rule {self.threshold_rule!r}: choose one of "
                             f"{', '.join(THRESHOLD_RULES)}")

    @classmethod
    def of(cls, shared: Mapping[str, Any], section: Mapping[str, Any]) -> "Scoring":
        """From a profile's shared keys (the seed) and its ``evaluation`` section."""
        return cls(section["threshold_rule"], section["bootstrap_resamples"],
                   section["confidence"], shared["seed"])


def validation_threshold(labels: Any, scores: Any, rule: str, fixed: float = 0.5) -> float:
    """The operating threshold (fake if ``score > t``) that ``rule`` picks on validation
    predictions: ``fixed`` returns ``fixed``; ``eer`` the threshold where the false
    positive and false negative rates are closest; ``youden`` the one with the largest
    TPR - FPR. Candidates are the midpoints between consecutive distinct scores and the
    two ends 0 and 1; ties go to the candidate nearest ``fixed``. A validation set that is
    empty or lacks a class gives ``fixed`` and a warning.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    y, s = checked_scores(labels, scores)
    if rule == "fixed":
        return float(fixed)
    if y.size == 0 or y.min() == y.max():
        what = "no videos" if y.size == 0 else f"only {'fake' if y.min() else 'real'} videos"
        warnings.warn(f"the validation predictions have {what}: threshold_val falls back to "
                      f"the fixed threshold {fixed}", stacklevel=2)
        return float(fixed)
    distinct = np.unique(s)
    candidates = np.unique(np.clip(np.r_[0.0, (distinct[1:] + distinct[:-1]) / 2, 1.0], 0, 1))
    fakes, reals = np.sort(s[y == 1]), np.sort(s[y == 0])
    # share of each class scored above each candidate (fake if score > t)
    tpr = 1 - np.searchsorted(fakes, candidates, side="right") / fakes.size
    fpr = 1 - np.searchsorted(reals, candidates, side="right") / reals.size
    badness = np.abs((1 - tpr) - fpr) if rule == "eer" else -(tpr - fpr)
    best = np.flatnonzero(np.isclose(badness, badness.min(), rtol=0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - fixed))]])


def stratified_counts(cluster_labels: np.ndarray, resamples: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``[resamples, n_clusters]`` multiplicities of a stratified bootstrap: each resample
    draws, with replacement, as many real clusters from the reals and as many fake clusters
    from the fakes as there are, so every resample keeps both classes and their counts."""
    labels = np.asarray(cluster_labels, dtype=int)
    counts = np.zeros((resamples, labels.size), dtype=np.int64)
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls)
        m = members.size
        if m == 0:
            continue
        draws = rng.integers(0, m, size=(resamples, m)) + m * np.arange(resamples)[:, None]
        counts[:, members] = np.bincount(draws.ravel(), minlength=resamples * m).reshape(
            resamples, m)
    return counts


def weighted_metrics(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray,
                     threshold: float = 0.5) -> dict[str, np.ndarray]:
    """AUC, AP, EER and balanced accuracy of each row of ``weights`` (``[b, n]`` sample
    multiplicities), vectorised; row ``k`` equals :func:`metrics` on the set that repeats
    sample ``i`` ``weights[k, i]`` times (each row needs both classes)."""
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ws = w[:, order]
    pos = np.add.reduceat(ws * y_sorted, starts, axis=1)  # fake weight per distinct score
    neg = np.add.reduceat(ws * (1 - y_sorted), starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    auc = ((neg * (tp - pos + 0.5 * pos)).sum(axis=1) / (n_pos * n_neg)[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    ap = (pos * precision).sum(axis=1) / n_pos[:, 0]
    fpr = np.hstack([np.zeros_like(n_neg), fp / n_neg])
    fnr = np.hstack([np.ones_like(n_pos), 1 - tp / n_pos])
    d = fnr - fpr
    i = np.argmax(d <= 0, axis=1)  # the last point has d = -1, the first d = 1
    rows = np.arange(len(d))
    d0, d1, f0, f1 = d[rows, i - 1], d[rows, i], fpr[rows, i - 1], fpr[rows, i]
    with np.errstate(invalid="ignore", divide="ignore"):
        eer = np.where(d1 == 0, f1, f0 + d0 / (d0 - d1) * (f1 - f0))
    called = s > threshold
    tpr_t = (w * (y * called)).sum(axis=1) / n_pos[:, 0]
    tnr_t = (w * ((1 - y) * ~called)).sum(axis=1) / n_neg[:, 0]
    return {"auc": auc, "ap": ap, "eer": eer, "balanced_acc": (tpr_t + tnr_t) / 2}


def bootstrap_intervals(labels: Any, scores: Any, clusters: Any = None, threshold: float = 0.5,
                        scoring: Scoring = Scoring()) -> dict[str, float]:
    """Percentile intervals (``<metric>_low``, ``<metric>_high`` for :data:`INTERVAL_METRICS`)
    from a stratified bootstrap of ``scoring.resamples`` resamples seeded by ``scoring.seed``.

    ``clusters`` (one id per sample, e.g. the video of each frame) makes whole clusters the
    resampled unit; by default each sample is its own. NaN when a class is missing, the
    set is empty or ``resamples`` is 0.
    """
    y, s = checked_scores(labels, scores)
    nan = {c: float("nan") for c in INTERVAL_COLUMNS}
    if scoring.resamples == 0 or y.size == 0 or y.min() == y.max():
        return nan
    ids = np.arange(y.size) if clusters is None else np.asarray(clusters).astype(str)
    _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
    cluster_labels = y[first]
    if (y != cluster_labels[codes]).any():
        raise ValueError("bootstrap clusters mix real and fake samples")
    rng = np.random.default_rng(scoring.seed)
    # blocks of resamples keep [block, n] weight matrices small for frame-level sets
    block = max(1, min(scoring.resamples, 2_000_000 // max(1, y.size)))
    parts: dict[str, list[np.ndarray]] = {m: [] for m in INTERVAL_METRICS}
    for start in range(0, scoring.resamples, block):
        counts = stratified_counts(cluster_labels, min(block, scoring.resamples - start), rng)
        for m, values in weighted_metrics(y, s, counts[:, codes], threshold).items():
            parts[m].append(values)
    alpha = (1 - scoring.confidence) / 2
    out = {}
    for m in INTERVAL_METRICS:
        low, high = np.quantile(np.concatenate(parts[m]), [alpha, 1 - alpha])
        out[f"{m}_low"], out[f"{m}_high"] = float(low), float(high)
    return out


def result_row(labels: Any, scores: Any, threshold: float = 0.5,
               threshold_val: float | None = None, clusters: Any = None,
               scoring: Scoring = Scoring()) -> dict[str, float]:
    """Every metric of a results row: :func:`metrics` at ``threshold``, the same
    classification metrics at ``threshold_val`` (``<metric>_val``; ``threshold`` when None)
    and the bootstrap intervals (:func:`bootstrap_intervals`)."""
    row = metrics(labels, scores, threshold)
    t_val = threshold if threshold_val is None else float(threshold_val)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same set warned once just above
        at_val = metrics(labels, scores, t_val)
    row |= {"threshold_val": t_val, **{f"{m}_val": at_val[m] for m in AT_THRESHOLD_VAL}}
    return row | bootstrap_intervals(labels, scores, clusters, threshold, scoring)


def delong_components(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of one scorer: ``V10[i]`` = share of reals that
    fake ``i`` outranks (ties one half), ``V01[j]`` = share of fakes that outrank real
    ``j``; their means are both the AUC."""
    y, s = checked_scores(labels, scores)
    psi = (s[y == 1][:, None] > s[y == 0][None, :]) + 0.5 * (s[y == 1][:, None] == s[y == 0][None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def delong_test(labels: Any, scores_a: Any, scores_b: Any,
                confidence: float = 0.95) -> dict[str, float]:
    """DeLong, DeLong & Clarke-Pearson (1988): ``delta_auc`` = AUC(a) - AUC(b) on the same
    samples, its normal-approximation interval (``delta_low, delta_high``), the two-sided
    ``p_value`` and ``n``. NaN when a class is missing; identical scorers give p = 1."""
    y = _labels(labels, "labels")
    nan = {"delta_auc": float("nan"), "delta_low": float("nan"), "delta_high": float("nan"),
           "p_value": float("nan"), "n": int(y.size)}
    if y.size == 0 or y.min() == y.max():
        return nan
    (a10, a01), (b10, b01) = delong_components(y, scores_a), delong_components(y, scores_b)
    delta = float(a10.mean() - b10.mean())
    d10, d01 = a10 - b10, a01 - b01
    var = (d10.var(ddof=1) if d10.size > 1 else 0.0) / d10.size + \
        (d01.var(ddof=1) if d01.size > 1 else 0.0) / d01.size
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    if var <= 0:
        p = 1.0 if delta == 0 else 0.0
    else:
        p = float(2 * stats.norm.sf(abs(delta) / np.sqrt(var)))
    half = z * np.sqrt(max(var, 0.0))
    return {"delta_auc": delta, "delta_low": delta - half, "delta_high": delta + half,
            "p_value": p, "n": int(y.size)}


def checked_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
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
        warnings.warn(f"no {missing[0]} examples in the evaluation set: auc, eer, ap and "
                      "balanced_acc are undefined (NaN)", stacklevel=stacklevel)
        return True
    return False


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _labels(labels: Any, what: str) -> np.ndarray:
    y = np.asarray(labels).ravel()
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 (real) or 1 (fake), got {np.unique(y)[:5]}")
    return y.astype(int)


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the missing columns unless ``df`` has them."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {list(df.columns)}")
