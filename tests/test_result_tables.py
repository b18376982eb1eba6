"""Paper-style results tables: families, order, best marks, published figures, ROC inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dflib import config, detectors, evaluation, io, paths, plots, result_tables, statistics
from dflib.paths import RunPaths


def results(rows: list[tuple]) -> pd.DataFrame:
    """A results table from (method, level, acc, auc, eer[, val_split_auc]) rows; other
    metrics constant."""
    rows = [(*r, np.nan) if len(r) == 5 else r for r in rows]
    table = pd.DataFrame(rows, columns=["method", "level", "acc", "auc", "eer", "val_split_auc"])
    return table.assign(n=24, precision=0.5, recall=0.5, f1=0.5, ap=0.5, logloss=0.7,
                        auc_low=table["auc"] - 0.1, auc_high=table["auc"] + 0.05)


def test_method_families():
    family = {m: detectors.display_group(m) for m in (
        "cnn/xception", "cnn/ef0/chunk3", "cnn/ef0/boosted", "cnn/ef0/boosted_mean", "c3d",
        "conv3d", "rnn/bilstm", "rnn/temporal_max", "facenet/sgd", "triplet/knn", "bench/x")}
    assert family == {
        "cnn/xception": "frame CNN", "cnn/ef0/chunk3": "frame CNN",
        "cnn/ef0/boosted": "boosted", "cnn/ef0/boosted_mean": "boosted",
        "c3d": "temporal", "conv3d": "temporal", "rnn/bilstm": "temporal",
        "rnn/temporal_max": "temporal", "facenet/sgd": "FaceNet", "triplet/knn": "triplet",
        "bench/x": "other"}


def test_paper_table_orders_levels_families_and_chunks():
    table = result_tables.paper_table(results([
        ("triplet/sgd", "frame", 0.6, 0.7, 0.3), ("triplet/sgd", "video", 0.7, 0.8, 0.2),
        ("cnn/ef0/chunk10", "video", 0.5, 0.5, 0.5), ("rnn/lstm", "video", 0.6, 0.6, 0.4),
        ("cnn/ef0/boosted", "video", 0.7, 0.6, 0.4), ("cnn/ef0/chunk2", "video", 0.5, 0.5, 0.5),
        ("facenet/sgd", "video", 0.5, 0.6, 0.5), ("cnn/ef0", "frame", 0.5, 0.5, 0.5)]))
    assert list(table.columns) == result_tables.PAPER_COLUMNS
    assert list(zip(table["level"], table["method"])) == [
        ("video", "cnn/ef0/chunk2"), ("video", "cnn/ef0/chunk10"), ("video", "cnn/ef0/boosted"),
        ("video", "rnn/lstm"), ("video", "facenet/sgd"), ("video", "triplet/sgd"),
        ("frame", "cnn/ef0"), ("frame", "triplet/sgd")]
    assert set(table["source"]) == {result_tables.OURS}
    with pytest.raises(ValueError, match="unknown level 'clip'"):
        result_tables.paper_table(results([("c3d", "clip", 0.5, 0.5, 0.5)]))


def test_chosen_mark_follows_validation_auc_per_level_not_test():
    table = result_tables.paper_table(results([
        ("cnn/a", "video", 0.75, 0.90, 0.30, 0.60), ("cnn/b", "video", 0.75, 0.70, 0.40, 0.80),
        ("c3d", "video", 0.50, np.nan, 0.20), ("cnn/a", "frame", 0.90, 0.55, 0.45, 0.52)]))
    chosen = table.set_index(table["method"] + "@" + table["level"])["chosen"]
    assert chosen.to_dict() == {"cnn/a@video": False, "cnn/b@video": True,
                                "c3d@video": False, "cnn/a@frame": True}
    md = result_tables.format_paper_table(table)
    assert "| **cnn/b** | ✓ |" in md and "| cnn/a | |" in md.replace("|  |", "| |")
    assert "0.900 [0.80, 0.95]" in md  # the interval printed beside the AUC


def raw_profile(name: str) -> dict:
    """A params/ profile with its defaults, as the runner writes it to profile.yaml."""
    profile = config.load(paths.PARAMS_DIR / f"{name}.yaml")
    return {**profile.shared, **{k: dict(v) for k, v in profile.sections.items()}}


def test_published_figures_only_for_the_papers_settings():
    celebdf = result_tables.published_results(raw_profile("celebdf"))
    assert list(celebdf.columns) == result_tables.PAPER_COLUMNS
    assert set(celebdf["source"]) == {result_tables.PUBLISHED} == {"published (Kumar et al. 2020)"}
    by_method = celebdf.set_index("method")
    assert by_method.loc["cnn/xception", "acc"] == 0.96
    assert by_method.loc["cnn/xception/boosted", "acc"] == 0.98
    assert by_method.loc["triplet", "auc"] == 0.992
    assert set(celebdf["level"]) == {"video"}
    ffpp = result_tables.published_results(raw_profile("ffpp_nt_c40"))
    assert ffpp[["method", "acc"]].values.tolist() == [["triplet", 0.9071]]
    assert result_tables.published_results(raw_profile("demo")).empty  # generated, not Celeb-DF
    other = raw_profile("ffpp_nt_c40")
    other["index"] = {**other["index"], "ffpp_compression": "c23"}
    assert result_tables.published_setting(other) is None
    other["index"] = {**other["index"], "ffpp_compression": "c40",
                      "ffpp_methods": ["Deepfakes", "NeuralTextures"]}
    assert result_tables.published_setting(other) is None
    cross = raw_profile("celebdf")
    cross["index"] = {**cross["index"], "test_dataset": "ffpp"}
    assert result_tables.published_setting(cross) is None


def test_published_rows_stand_beside_ours_unmarked_and_formatted():
    ours = results([("cnn/xception", "video", 0.80, 0.85, 0.2),
                    ("cnn/xception/boosted", "video", 0.82, 0.86, 0.2),
                    ("triplet/sgd", "video", 0.70, 0.90, 0.1)])
    table = result_tables.paper_table(ours, result_tables.published_results(raw_profile("celebdf")))
    assert list(zip(table["method"], table["source"] == result_tables.OURS)) == [
        ("cnn/xception", True), ("cnn/xception", False), ("cnn/xception/boosted", True),
        ("cnn/xception/boosted", False), ("triplet/sgd", True), ("triplet", False)]
    assert not table["chosen"].any()  # no validation AUC: nothing is chosen, nothing bold
    md = result_tables.format_paper_table(table)
    assert md.splitlines()[0].startswith("| level | family | method | source | chosen | n | acc")
    assert "| 0.820 |" in md and "| 0.980 |" in md and "published (Kumar et al. 2020)" in md
    page = result_tables.format_paper_table(table, "html", decimals=2)
    assert "<td>0.82</td>" in page and "<td>0.99</td>" in page and "<td>–</td>" in page
    assert "<b>" not in page
    alone = result_tables.format_paper_table(result_tables.paper_table(ours))
    assert "source" not in alone.splitlines()[0]


def test_roc_predictions_load_every_scored_method(tmp_path):
    run = RunPaths(tmp_path / "run").ensure()
    labels = np.array([0, 1, 0, 1])
    for method, scores in (("triplet/sgd", [0.1, 0.9, 0.2, 0.8]), ("cnn/ef0", [0.4, 0.6, 0.5, 0.3])):
        videos = pd.DataFrame({"video_id": list("abcd"), "label": labels, "score": scores,
                               "pred": (np.array(scores) > 0.5).astype(int), "n_frames": 2})
        frames = pd.DataFrame({"video_id": list("aabbccdd"), "frame_idx": [0, 1] * 4,
                               "label": labels.repeat(2), "score": np.repeat(scores, 2)})
        evaluation.write_predictions(run, method, videos,
                                     frames if method == "cnn/ef0" else None)
        evaluation.score_method(run, method)
    video = result_tables.roc_predictions(run)
    assert list(video) == ["cnn/ef0", "triplet/sgd"]  # paper order, not alphabetical
    assert list(video["triplet/sgd"]["score"]) == [0.1, 0.9, 0.2, 0.8]
    fig = plots.roc_group_figure(video)
    assert [ax.get_title() for ax in fig.axes] == ["frame CNN", "triplet"]
    assert "triplet/sgd (1.000)" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    frame = result_tables.roc_predictions(run, "frame")
    assert list(frame) == ["cnn/ef0"] and len(frame["cnn/ef0"]) == 8
    with pytest.raises(ValueError, match="level 'clip'"):
        result_tables.roc_predictions(run, "clip")


def evidence_run(tmp_path) -> RunPaths:
    """A run with test and validation predictions of four methods and an index that names
    each fake's manipulation and each video's compression."""
    run = RunPaths(tmp_path / "run").ensure()
    rng = np.random.default_rng(0)
    n = 16
    labels = np.array([0] * 6 + [1] * 10)
    index = pd.DataFrame({
        "video_id": [f"t{i}" for i in range(n)] + [f"v{i}" for i in range(n)],
        "path": "x.mp4", "label": np.r_[labels, labels], "split": ["test"] * n + ["val"] * n,
        "dataset": "celebdf",
        "method": (["real"] * 6 + ["faceswap", "selfblend"] * 5) * 2,
        "compression": ["c23", "c40"] * n})
    index.to_csv(run.videos_csv, index=False)
    for k, method in enumerate(("cnn/ef0", "cnn/ef0/boosted", "facenet/sgd", "triplet/sgd")):
        for split, prefix in (("test", "t"), ("val", "v")):
            scores = np.clip(labels * (0.2 + 0.1 * k) + rng.random(n) * 0.7, 0, 1).round(3)
            evaluation.write_predictions(run, method, pd.DataFrame({
                "video_id": [f"{prefix}{i}" for i in range(n)], "label": labels,
                "score": scores, "pred": (scores > 0.5).astype(int), "n_frames": 4}),
                split=split)
        evaluation.score_method(run, method, scoring=statistics.Scoring(resamples=200))
    return run


def test_comparisons_pair_the_papers_questions_and_use_delong(tmp_path):
    run = evidence_run(tmp_path)
    table = result_tables.comparisons(run)
    assert list(table.columns) == result_tables.COMPARISON_COLUMNS
    pairs = set(zip(table["method"], table["reference"]))
    assert {("triplet/sgd", "facenet/sgd"), ("cnn/ef0/boosted", "cnn/ef0")} <= pairs
    chosen = evaluation.chosen_method(evaluation.results_table(run))
    assert {(m, chosen) for m in ("cnn/ef0", "cnn/ef0/boosted", "facenet/sgd", "triplet/sgd")
            if m != chosen} <= pairs
    row = table[(table["method"] == "triplet/sgd") & (table["reference"] == "facenet/sgd")].iloc[0]
    a, _ = evaluation.read_predictions(run, "triplet/sgd")
    b, _ = evaluation.read_predictions(run, "facenet/sgd")
    expected = statistics.delong_test(a["label"], a["score"], b["score"])
    assert row["p_value"] == pytest.approx(expected["p_value"], abs=1e-6)
    assert row["n"] == 16 and row["delta_low"] <= row["delta_auc"] <= row["delta_high"]


def test_results_by_group_scores_each_manipulation_against_all_reals(tmp_path):
    run = evidence_run(tmp_path)
    table = result_tables.results_by_group(run, statistics.Scoring(resamples=100))
    assert list(table.columns) == result_tables.GROUP_COLUMNS
    one = table[table["method"] == "cnn/ef0"].set_index(["group_kind", "group"])
    assert one.loc[("manipulation", "faceswap"), ["n_pos", "n_neg"]].tolist() == [5, 6]
    assert one.loc[("compression", "c40"), ["n_pos", "n_neg"]].tolist() == [5, 3]
    pred, _ = evaluation.read_predictions(run, "cnn/ef0")
    swap = pred[pred["video_id"].isin([f"t{i}" for i in list(range(6)) + [6, 8, 10, 12, 14]])]
    assert one.loc[("manipulation", "faceswap"), "auc"] == pytest.approx(
        statistics.metrics(swap["label"], swap["score"])["auc"], abs=1e-6)
    wide = result_tables.group_summary(table)
    assert wide.columns[1].startswith("compression: c23 (")


def test_evidence_figures_draw_one_entry_per_method_or_family(tmp_path):
    run = evidence_run(tmp_path)
    results = evaluation.results_table(run)
    video = result_tables.paper_table(results).query("level == 'video'")
    forest = plots.forest_figure(video)
    labels = [t.get_text() for t in forest.axes[0].get_yticklabels()]
    assert len(labels) == 4 and sum(label.endswith("★") for label in labels) == 1
    plots.save_fig(forest, run, "fig_forest_auc")
    by_family = result_tables.group_predictions(run)
    assert list(by_family) == ["frame CNN", "boosted", "FaceNet", "triplet"]
    plots.save_fig(plots.reliability_figure(by_family), run, "fig_reliability")
    table = pd.concat([results.query("level == 'video'").assign(crf=c) for c in (-1, 23, 40)])
    table["family"] = table["method"].map(detectors.display_group)
    chosen = result_tables.group_choices(results, list(table["method"]))
    fig = plots.robustness_figure(table, chosen)
    assert len(fig.axes[0].get_lines()) == 4 + 1  # a line per family and the chance line
    plots.save_fig(fig, run, "fig_robustness_auc")


def signal_run(tmp_path, signals: dict[str, tuple[float, float]]) -> RunPaths:
    """A run whose methods score 16 test and 16 validation videos with the given signal
    strength on each split (``method -> (validation, test)``): more signal, higher AUC."""
    run = RunPaths(tmp_path / "run").ensure()
    noise = np.random.default_rng(1).random(16)
    labels = np.array([0] * 6 + [1] * 10)
    for method, strengths in signals.items():
        for split, strength in zip(("val", "test"), strengths):
            scores = np.clip(0.2 + labels * strength + noise * 0.6, 0, 1).round(3)
            evaluation.write_predictions(run, method, pd.DataFrame({
                "video_id": [f"{split}{i}" for i in range(16)], "label": labels,
                "score": scores, "pred": (scores > 0.5).astype(int), "n_frames": 4}),
                split=split)
        evaluation.score_method(run, method, scoring=statistics.Scoring(resamples=0))
    return run


def test_bagging_is_compared_with_the_chunk_chosen_on_validation_not_chunk_0(tmp_path):
    # chunk 1 is best on validation, chunk 2 on test: the reference is chunk 1
    run = signal_run(tmp_path, {"cnn/ef0": (0.0, 0.1), "cnn/ef0/chunk1": (0.4, 0.1),
                                "cnn/ef0/chunk2": (0.1, 0.6), "cnn/ef0/boosted": (0.2, 0.3),
                                "cnn/ef0/boosted_mean": (0.2, 0.3)})
    table = result_tables.comparisons(run)
    bagging = table[table["question"].str.startswith("bagging")]
    assert sorted(zip(bagging["method"], bagging["reference"])) == [
        ("cnn/ef0/boosted", "cnn/ef0/chunk1"), ("cnn/ef0/boosted_mean", "cnn/ef0/chunk1")]


def test_heads_face_time_averaging_and_temporal_models_the_control(tmp_path):
    run = signal_run(tmp_path, {"rnn/lstm": (0.3, 0.3), "rnn/gru": (0.2, 0.2),
                                "rnn/time_average": (0.2, 0.3), "c3d": (0.1, 0.1),
                                "control/colour_jerk": (0.6, 0.6), "cnn/ef0": (0.5, 0.5)})
    table = result_tables.comparisons(run)
    pairs = {(m, r): q for m, r, q in zip(table["method"], table["reference"], table["question"])}
    heads = {k for k, q in pairs.items() if q.startswith("temporal head")}
    assert heads == {("rnn/lstm", "rnn/time_average"), ("rnn/gru", "rnn/time_average")}
    control = {k for k, q in pairs.items() if "control" in q}
    assert control == {(m, "control/colour_jerk")
                       for m in ("rnn/lstm", "rnn/gru", "rnn/time_average", "c3d")}
    # the control has the best validation AUC, but the study picks among detectors only
    results = evaluation.results_table(run)
    assert evaluation.chosen_method(results) == "cnn/ef0"
    assert result_tables.paper_table(results).set_index("method").loc[
        "control/colour_jerk", "family"] == "control"


def test_heads_face_the_per_face_classifier_of_the_features_they_read(tmp_path):
    """A head on the face embeddings is paired with the facenet classifier chosen on
    validation; a head on CNN features with the chunk CNN whose features it read."""
    run = signal_run(tmp_path, {"rnn/lstm": (0.3, 0.3), "rnn/gru": (0.2, 0.2),
                                "facenet/svc": (0.2, 0.5), "facenet/rf": (0.4, 0.1),
                                "cnn/ef0": (0.5, 0.5), "cnn/ef0/chunk2": (0.1, 0.1)})
    origins = {"lstm": {"source": "embeddings", "weights": "dlib"},
               "gru": {"arch": "ef0", "chunk": 2}}  # a record from before `inputs` existed
    for head, origin in origins.items():
        record = run.model_files("rnn", head)[1]
        record.parent.mkdir(parents=True, exist_ok=True)
        io.write_text(json.dumps({"config": {"features": origin}}), record)
    table = result_tables.comparisons(run)
    per_face = table[table["question"] == result_tables.PER_FACE_QUESTION]
    assert sorted(zip(per_face["method"], per_face["reference"])) == [
        ("rnn/gru", "cnn/ef0/chunk2"), ("rnn/lstm", "facenet/rf")]  # rf: best on validation
