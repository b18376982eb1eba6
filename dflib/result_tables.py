"""The paper-style results tables (grouped by family, validation-chosen rows marked,
published figures beside ours), the paired comparisons the paper's claims rest on, the
results by manipulation and compression, and the summary over seeds."""

from __future__ import annotations

import html
import re
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import datasets, evaluation, io, statistics
from .paths import RunPaths
from .detectors import display_group, is_detector, is_temporal
from .vocabulary import (DISPLAY_GROUPS, IDENTITY_CONTROL, RNN_INPUTS, TEMPORAL_CONTROLS,
                         cnn_method, control_method, is_ensemble, raw_embedding_of,
                         single_chunks_of, time_average_of)

# --------------------------------------------------------------------------- paper-style results

# The columns of the paper-style table: point metrics at 0.5, then at threshold_val, then
# calibration and the validation AUC that chose the marked method; ``<m>_low``/``<m>_high``
# of the metrics with intervals follow in the saved table and print as one cell.
METRICS = ("acc", "balanced_acc", "auc", "eer", "ap", "threshold_val", "balanced_acc_val",
           "ece", "brier", "val_split_auc")
WITH_INTERVALS = tuple(m for m in METRICS if m in statistics.INTERVAL_METRICS)
LEVELS = ("video", "frame")
OURS = "this run"
PUBLISHED = "published (Kumar et al. 2020)"
PAPER_COLUMNS = ["level", "family", "method", "source", "chosen", "n", *METRICS,
                 *(f"{m}_{end}" for m in WITH_INTERVALS for end in ("low", "high"))]
CHOSEN_MARK = "✓"


def _natural(text: str) -> tuple:
    """Sort key that puts chunk2 before chunk10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def paper_table(results: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """``results.csv`` rows in the paper's order: video level first, then frame level;
    within a level by family (frame CNN, boosted, temporal, FaceNet, triplet), methods in
    natural order, and ``published`` rows (see :func:`published_results`) after ours in
    their family. Columns ``PAPER_COLUMNS``; ``source`` says whose number it is and
    ``chosen`` marks each level's method of highest validation AUC
    (:func:`dflib.evaluation.chosen_method`), the study's pick; test numbers pick nothing."""
    chosen = {level: evaluation.chosen_method(results, level) for level in LEVELS}
    ours = results.assign(family=results["method"].map(display_group), source=OURS,
                          chosen=[chosen.get(lv) == m for m, lv in
                                  zip(results["method"], results["level"])])
    parts = [ours, published] if published is not None and len(published) else [ours]
    table = pd.concat(parts, ignore_index=True).reindex(columns=PAPER_COLUMNS)
    table["chosen"] = table["chosen"].fillna(False).astype(bool)
    unknown = sorted(set(table["level"]) - set(LEVELS))
    if unknown:
        raise ValueError(f"results table: unknown level {unknown[0]!r} (expected video, frame)")
    key = pd.DataFrame({
        "level": table["level"].map(LEVELS.index),
        "family": table["family"].map(DISPLAY_GROUPS.index),
        "source": (table["source"] != OURS).astype(int),
        "method": table["method"].map(_natural)})
    order = key.sort_values(["level", "family", "source", "method"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


# (dataset rule, level, family, method, metric, value) of Kumar et al. (IWBF 2020) and
# their README: XceptionNet video accuracy, and after max voting over 7 balanced chunks;
# the metric-learning (triplet) pipeline's Celeb-DF AUC and NeuralTextures c40 accuracy.
_PUBLISHED = (
    ("celebdf", "video", "frame CNN", "cnn/xception", "acc", 0.96),
    ("celebdf", "video", "boosted", "cnn/xception/boosted", "acc", 0.98),
    ("celebdf", "video", "triplet", "triplet", "auc", 0.992),
    ("ffpp_nt_c40", "video", "triplet", "triplet", "acc", 0.9071),
)


def published_setting(profile: Mapping[str, Any]) -> str | None:
    """``celebdf`` or ``ffpp_nt_c40`` when the profile (``profile.yaml`` of a run: shared
    keys and sections) runs a setting the paper reported on: Celeb-DF v2 itself (not
    generated videos, even in its layout) or FaceForensics++ NeuralTextures alone at c40, trained
    and tested on the same dataset; else None."""
    index = profile.get("index") or {}
    if index.get("test_dataset") not in (None, "", profile.get("dataset")):
        return None  # cross-dataset protocol: the paper has no such figure
    if datasets.is_generated(profile.get("dataset"), profile.get("data_root") or None):
        return None  # generated videos, even in Celeb-DF's layout
    if profile.get("dataset") == "celebdf":
        return "celebdf"
    if (profile.get("dataset") == "ffpp" and list(index.get("ffpp_methods", [])) ==
            ["NeuralTextures"] and index.get("ffpp_compression") == "c40"):
        return "ffpp_nt_c40"
    return None


def published_results(profile: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's figures for the profile's setting as ``PAPER_COLUMNS`` rows with source
    ``PUBLISHED`` (fractions, like ``results.csv``); no rows for any other setting."""
    setting = published_setting(profile)
    rows = [{"level": level, "family": family, "method": method, "source": PUBLISHED,
             metric: value}
            for rule, level, family, method, metric, value in _PUBLISHED if rule == setting]
    table = pd.DataFrame(rows, columns=PAPER_COLUMNS).assign(chosen=False)
    table["n"] = table["n"].astype("Int64")
    return table.astype({c: float for c in PAPER_COLUMNS[6:]})


def format_paper_table(table: pd.DataFrame, fmt: str = "markdown",
                       decimals: int = 3) -> str:
    """``table`` (from :func:`paper_table`) as a markdown or HTML table: AUC, EER, AP and
    balanced accuracy with their 95 % interval in brackets, the validation-chosen method
    of each level marked and in bold; the ``source`` column only when published rows are
    present."""
    if fmt not in ("markdown", "html"):
        raise ValueError(f"format {fmt!r}: choose markdown or html")
    columns = [c for c in PAPER_COLUMNS[:6 + len(METRICS)]
               if c != "source" or (table["source"] != OURS).any()]
    cells = table[columns].astype(object).where(table[columns].notna(), "–")
    for metric in METRICS:
        cells[metric] = [v if v == "–" else f"{v:.{decimals}f}" for v in cells[metric]]
    for metric in WITH_INTERVALS:
        low, high = table[f"{metric}_low"], table[f"{metric}_high"]
        cells[metric] = [f"{v} [{lo:.{decimals - 1}f}, {hi:.{decimals - 1}f}]"
                         if v != "–" and pd.notna(lo) and pd.notna(hi) else v
                         for v, lo, hi in zip(cells[metric], low, high)]
    cells["n"] = cells["n"].astype(str)
    cells["chosen"] = [CHOSEN_MARK if c is True else "" for c in table["chosen"]]
    if fmt == "html":
        cells = cells.map(lambda v: html.escape(str(v)))
    strong = ("<b>", "</b>") if fmt == "html" else ("**", "**")
    picked = table["chosen"].to_numpy(dtype=bool)
    cells.loc[picked, "method"] = [f"{strong[0]}{v}{strong[1]}"
                                   for v in cells.loc[picked, "method"]]
    if fmt == "html":
        return cells.to_html(index=False, escape=False, classes="results", border=0)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def roc_predictions(run: RunPaths, level: str = "video") -> dict[str, pd.DataFrame]:
    """Every method of ``results.csv`` at ``level`` (video or frame) mapped to its
    prediction table (``label``, ``score``), in :func:`paper_table` order, for
    :func:`dflib.plots.roc_figure`."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: choose video or frame")
    table = paper_table(evaluation.results_table(run))
    out: dict[str, pd.DataFrame] = {}
    for method in table.loc[table["level"] == level, "method"]:
        videos, frames = evaluation.read_predictions(run, method)
        if level == "frame" and frames is None:
            raise FileNotFoundError(f"results.csv has frame rows for {method!r} but "
                                    f"predictions/ has no frame file for it")
        out[method] = videos if level == "video" else frames
    return out


# --------------------------------------------------------------------------- evidence

COMPARISON_COLUMNS = ["method", "reference", "delta_auc", "delta_low", "delta_high",
                      "p_value", "n", "question"]
GROUP_METRICS = ("auc", "ap", "eer", "balanced_acc")
GROUP_COLUMNS = ["method", "level", "group_kind", "group", "n", "n_pos", "n_neg",
                 *(c for m in GROUP_METRICS for c in (m, f"{m}_low", f"{m}_high")),
                 "balanced_acc_val", "ece", "brier"]


def group_choices(results: pd.DataFrame, methods: Sequence[str] | None = None,
                  level: str = "video") -> dict[str, str]:
    """Each display group's method of highest validation AUC (of ``methods`` when given), in
    :data:`DISPLAY_GROUPS` order: the one line per group that the figures draw."""
    rows = results[results["level"] == level]
    names = [m for m in rows["method"] if methods is None or m in methods]
    out = {}
    for family in DISPLAY_GROUPS:
        members = [m for m in names if display_group(m) == family]
        chosen = evaluation.chosen_method(results, level, among=members) if members else None
        if chosen is not None:
            out[family] = chosen
    return out


PER_FACE_QUESTION = ("temporal head vs the per-face classifier of the same features "
                     "(chosen on validation)")


def per_face_rivals(run: RunPaths, methods: Sequence[str]) -> dict[str, list[str]]:
    """For each recurrent head of ``methods`` (``rnn/<head>``, its baseline included), the
    methods that classify each face of the same features alone: the chunk CNN whose
    features it read, or the ``facenet/<clf>`` classifiers of the embeddings it read (from
    the head's training record; none when the record is missing)."""
    cnn_input, embeddings_input = RNN_INPUTS
    out: dict[str, list[str]] = {}
    for m in methods:
        family, _, head = m.partition("/")
        if family != "rnn":
            continue
        record = io.read_record(run.model_files("rnn", head)[1]) or {}
        origin = (record.get("config") or {}).get("features") or {}
        if origin.get("source", cnn_input) == embeddings_input:
            out[m] = [f for f in methods if f.startswith("facenet/")]
        elif "arch" in origin:
            out[m] = [cnn_method(origin["arch"], int(origin["chunk"]))]
    return out


def comparison_pairs(results: pd.DataFrame, methods: Sequence[str],
                     chosen: str | None,
                     rivals: Mapping[str, Sequence[str]] | None = None
                     ) -> list[tuple[str, str, str]]:
    """``(method, reference, question)`` of the paired comparisons the paper's claims rest
    on, each against its strongest fair rival:

    * each ``triplet/<clf>`` against ``facenet/<clf>`` (does the metric space help?);
    * each ``cnn/<arch>/boosted*`` (the vote and the mean of the chunk models) against the
      single chunk of highest validation AUC (does bagging beat choosing one member?);
    * each recurrent head against ``rnn/time_average``, a logistic regression on the same
      features averaged over time (does the head learn anything temporal?), and against
      the per-face classifier of the same features chosen on validation among ``rivals[m]``
      (:func:`per_face_rivals`: does reading the faces in order beat classifying each?);
    * each temporal detector against each temporal control (does it learn more than
      arithmetic?);
    * every detector against the identity control (does it see more than who is shown?);
    * every method against the validation-chosen one.

    Every reference is chosen on validation (``results``' ``val_split_auc``), never test."""
    present = set(methods)
    controls = [control_method(c) for c in TEMPORAL_CONTROLS if control_method(c) in present]
    identity = control_method(IDENTITY_CONTROL)
    pairs = []
    for m in methods:
        raw, average = raw_embedding_of(m), time_average_of(m)
        if raw in present:
            pairs.append((m, raw, "metric space: triplet vs raw FaceNet embeddings"))
        if is_ensemble(m):
            best = evaluation.chosen_method(results, "video", among=single_chunks_of(m, methods))
            if best is not None:
                pairs.append((m, best, "bagging: chunk ensemble vs the single chunk chosen "
                                       "on validation"))
        if average in present:
            pairs.append((m, average, "temporal head vs time-averaged features (logistic "
                                      "regression)"))
        per_face = [r for r in (rivals or {}).get(m, ()) if r in present]
        best_face = evaluation.chosen_method(results, "video", among=per_face) if per_face else None
        if best_face is not None:
            pairs.append((m, best_face, PER_FACE_QUESTION))
        if is_temporal(m):
            pairs += [(m, c, "temporal model vs the training-free temporal control")
                      for c in controls]
        if identity in present and is_detector(m):
            pairs.append((m, identity, IDENTITY_QUESTION))
    if chosen is not None:
        pairs += [(m, chosen, "against the method chosen on validation")
                  for m in methods if m != chosen]
    return pairs


IDENTITY_QUESTION = "detector vs the identity control (identity alone)"
IDENTITY_COLUMNS = ["method", "auc", "auc_low", "auc_high", "identity_auc", "delta_auc",
                    "delta_low", "delta_high", "p_value", "n"]


def identity_table(results: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """``tables/identity.csv``: each detector's test video AUC with its interval beside the
    identity control's, and their DeLong difference (from ``comparisons``); empty when the
    run has no identity control."""
    identity = control_method(IDENTITY_CONTROL)
    if comparisons.empty or results.empty:
        return pd.DataFrame(columns=IDENTITY_COLUMNS)
    pairs = comparisons[comparisons["question"] == IDENTITY_QUESTION]
    video = results[results["level"] == "video"].set_index("method")
    if pairs.empty or identity not in video.index:
        return pd.DataFrame(columns=IDENTITY_COLUMNS)
    own = video.loc[pairs["method"], ["auc", "auc_low", "auc_high"]].reset_index(drop=True)
    table = pd.concat([pairs[["method"]].reset_index(drop=True), own], axis=1).assign(
        identity_auc=float(video.loc[identity, "auc"]))
    table = pd.concat([table, pairs[["delta_auc", "delta_low", "delta_high", "p_value", "n"]]
                       .reset_index(drop=True)], axis=1)
    return table.sort_values("auc", ascending=False, kind="stable")[IDENTITY_COLUMNS] \
        .reset_index(drop=True)


def comparisons(run: RunPaths, confidence: float = 0.95) -> pd.DataFrame:
    """``tables/comparisons.csv`` rows: DeLong's paired test of video AUC on the same test
    videos for every pair of :func:`comparison_pairs` (``delta_auc`` = method - reference)."""
    results = evaluation.results_table(run)
    methods = list(paper_table(results).query("level == 'video'")["method"])
    rows = []
    for method, reference, question in comparison_pairs(
            results, methods, evaluation.chosen_method(results),
            per_face_rivals(run, methods)):
        a, _ = evaluation.read_predictions(run, method)
        b, _ = evaluation.read_predictions(run, reference)
        both = a.merge(b, on="video_id", suffixes=("", "_ref"))
        if len(both) != len(a) or (both["label"] != both["label_ref"]).any():
            raise ValueError(f"{method} and {reference} were not scored on the same test videos")
        rows.append({"method": method, "reference": reference,
                     **statistics.delong_test(both["label"], both["score"], both["score_ref"],
                                              confidence), "question": question})
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return table.round({c: evaluation.RESULT_DECIMALS for c in COMPARISON_COLUMNS[2:6]})


def results_by_group(run: RunPaths, scoring: statistics.Scoring = statistics.Scoring()
                     ) -> pd.DataFrame:
    """``tables/results_by_group.csv``: every video-level method's metrics (with intervals)
    on each manipulation method (its fakes against all test reals) and each compression
    (``unknown`` where the index has none), from :func:`dflib.statistics.result_row` at the
    method's own ``threshold_val``."""
    results = evaluation.results_table(run)
    methods = paper_table(results).query("level == 'video'")["method"]
    parts = [method_by_group(run, m, scoring, results) for m in methods]
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame(columns=GROUP_COLUMNS))


def method_by_group(run: RunPaths, method: str, scoring: statistics.Scoring = statistics.Scoring(),
                    results: pd.DataFrame | None = None) -> pd.DataFrame:
    """One method's rows of :func:`results_by_group` (``results``: the run's results table,
    read when not given)."""
    index = pd.read_csv(run.videos_csv, keep_default_na=False, dtype={"video_id": str})
    test = index[index["split"] == "test"].set_index("video_id")
    results = evaluation.results_table(run) if results is None else results
    video = results[results["level"] == "video"].set_index("method")
    t_val = video.loc[method, "threshold_val"]
    pred, _ = evaluation.read_predictions(run, method)
    pred = pred.join(test[["method", "compression"]].rename(
        columns={"method": "manipulation"}), on="video_id")
    pred["compression"] = pred["compression"].replace("", "unknown").fillna("unknown")
    groups = [("manipulation", m, (pred["label"] == 0) | (pred["manipulation"] == m))
              for m in sorted(pred.loc[pred["label"] == 1, "manipulation"].dropna().unique())]
    groups += [("compression", c, pred["compression"] == c)
               for c in sorted(pred["compression"].unique())]
    rows = []
    for kind, name, keep in groups:
        part = pred[keep]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a one-class group gets NaN (docs/design.md)
            row = statistics.result_row(part["label"], part["score"],
                                        threshold_val=None if pd.isna(t_val) else t_val,
                                        scoring=scoring)
        rows.append({"method": method, "level": "video", "group_kind": kind,
                     "group": name, **row})
    table = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    return table.round({c: evaluation.RESULT_DECIMALS for c in GROUP_COLUMNS[7:]})


def group_predictions(run: RunPaths) -> dict[str, tuple[str, pd.DataFrame]]:
    """Display group -> (its validation-chosen method, that method's test video
    predictions), for :func:`dflib.plots.reliability_figure`."""
    choices = group_choices(evaluation.results_table(run))
    return {group: (method, evaluation.read_predictions(run, method)[0])
            for group, method in choices.items()}


def group_summary(by_group: pd.DataFrame, metric: str = "auc", decimals: int = 2) -> pd.DataFrame:
    """:func:`results_by_group` as one row per method and one column per group
    (``manipulation: faceswap``, ``compression: c40``), each cell ``value [low, high]``."""
    cells = [f"{v:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]" if pd.notna(lo)
             else ("–" if pd.isna(v) else f"{v:.{decimals}f}")
             for v, lo, hi in zip(by_group[metric], by_group[f"{metric}_low"],
                                  by_group[f"{metric}_high"])]
    wide = by_group.assign(column=by_group["group_kind"] + ": " + by_group["group"].astype(str),
                           cell=cells)
    order = list(dict.fromkeys(wide["method"]))
    table = wide.pivot(index="method", columns="column", values="cell").reindex(order)
    counts = wide.drop_duplicates("column").set_index("column")
    table.columns = [f"{c} ({counts.loc[c, 'n_pos']} fake / {counts.loc[c, 'n_neg']} real)"
                     for c in table.columns]
    return table.reset_index()


SEED_METRICS = ("acc", "balanced_acc", "auc", "eer", "ap", "balanced_acc_val", "ece", "brier")


def seed_summary(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """``results.csv`` tables of one profile run with several seeds (seed -> table) as one
    row per (method, level): ``n_seeds`` that scored it, then ``<metric>_mean`` and
    ``<metric>_std`` (sample standard deviation; NaN with one seed) of :data:`SEED_METRICS`."""
    long = pd.concat([t.assign(seed=s) for s, t in tables.items()], ignore_index=True)
    grouped = long.groupby(["method", "level"], sort=False)
    out = grouped["seed"].nunique().rename("n_seeds").to_frame()
    for metric in SEED_METRICS:
        out[f"{metric}_mean"] = grouped[metric].mean()
        out[f"{metric}_std"] = grouped[metric].std(ddof=1)
    out = out.reset_index()
    order = paper_table(out.assign(val_split_auc=np.nan)).set_index(["level", "method"]).index
    out = out.set_index(["level", "method"]).loc[order].reset_index()
    return out[["method", "level", *out.columns[2:]]].round(evaluation.RESULT_DECIMALS)
