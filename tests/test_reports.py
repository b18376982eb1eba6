"""Paper-style results tables: families, order, best marks, published figures, ROC inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dflib import config, evaluation, paths, plots, reports
from dflib.paths import RunPaths


def results(rows: list[tuple]) -> pd.DataFrame:
    """A results table from (method, level, acc, auc, eer) rows; other metrics constant."""
    table = pd.DataFrame(rows, columns=["method", "level", "acc", "auc", "eer"])
    return table.assign(n=24, precision=0.5, recall=0.5, f1=0.5, ap=0.5, logloss=0.7)


def test_method_families():
    family = {m: reports.method_family(m) for m in (
        "cnn/xception", "cnn/ef0/chunk3", "cnn/ef0/boosted", "cnn/ef0/boosted_mean", "c3d",
        "conv3d", "rnn/bilstm", "rnn/temporal_max", "facenet/sgd", "triplet/knn", "bench/x")}
    assert family == {
        "cnn/xception": "frame CNN", "cnn/ef0/chunk3": "frame CNN",
        "cnn/ef0/boosted": "boosted", "cnn/ef0/boosted_mean": "boosted",
        "c3d": "temporal", "conv3d": "temporal", "rnn/bilstm": "temporal",
        "rnn/temporal_max": "temporal", "facenet/sgd": "FaceNet", "triplet/knn": "triplet",
        "bench/x": "other"}


def test_paper_table_orders_levels_families_and_chunks():
    table = reports.paper_table(results([
        ("triplet/sgd", "frame", 0.6, 0.7, 0.3), ("triplet/sgd", "video", 0.7, 0.8, 0.2),
        ("cnn/ef0/chunk10", "video", 0.5, 0.5, 0.5), ("rnn/lstm", "video", 0.6, 0.6, 0.4),
        ("cnn/ef0/boosted", "video", 0.7, 0.6, 0.4), ("cnn/ef0/chunk2", "video", 0.5, 0.5, 0.5),
        ("facenet/sgd", "video", 0.5, 0.6, 0.5), ("cnn/ef0", "frame", 0.5, 0.5, 0.5)]))
    assert list(table.columns) == reports.PAPER_COLUMNS
    assert list(zip(table["level"], table["method"])) == [
        ("video", "cnn/ef0/chunk2"), ("video", "cnn/ef0/chunk10"), ("video", "cnn/ef0/boosted"),
        ("video", "rnn/lstm"), ("video", "facenet/sgd"), ("video", "triplet/sgd"),
        ("frame", "cnn/ef0"), ("frame", "triplet/sgd")]
    assert set(table["source"]) == {reports.OURS}
    with pytest.raises(ValueError, match="unknown level 'clip'"):
        reports.paper_table(results([("c3d", "clip", 0.5, 0.5, 0.5)]))


def test_best_mask_per_level_direction_ties_and_nan():
    table = reports.paper_table(results([
        ("cnn/a", "video", 0.75, 0.60, 0.30), ("cnn/b", "video", 0.75, 0.70, 0.40),
        ("c3d", "video", 0.50, np.nan, 0.20), ("cnn/a", "frame", 0.90, 0.55, 0.45)]))
    mask = reports.best_mask(table).set_index(table["method"] + "@" + table["level"])
    assert list(mask.columns) == list(reports.METRICS)
    assert mask["acc"].to_dict() == {"cnn/a@video": True, "cnn/b@video": True,
                                     "c3d@video": False, "cnn/a@frame": True}
    assert mask.loc[["cnn/b@video", "cnn/a@frame"], "auc"].all() and mask["auc"].sum() == 2
    assert mask["eer"][mask["eer"]].index.tolist() == ["c3d@video", "cnn/a@frame"]  # lower


def raw_profile(name: str) -> dict:
    """A params/ profile with its defaults, as the runner writes it to profile.yaml."""
    profile = config.load(paths.PARAMS_DIR / f"{name}.yaml", check_data=False)
    return {**profile.shared, **{k: dict(v) for k, v in profile.sections.items()}}


def test_published_figures_only_for_the_papers_settings():
    celebdf = reports.published_results(raw_profile("celebdf"))
    assert list(celebdf.columns) == reports.PAPER_COLUMNS
    assert set(celebdf["source"]) == {reports.PUBLISHED} == {"published (Kumar et al. 2020)"}
    by_method = celebdf.set_index("method")
    assert by_method.loc["cnn/xception", "acc"] == 0.96
    assert by_method.loc["cnn/xception/boosted", "acc"] == 0.98
    assert by_method.loc["triplet", "auc"] == 0.992
    assert set(celebdf["level"]) == {"video"}
    ffpp = reports.published_results(raw_profile("ffpp_nt_c40"))
    assert ffpp[["method", "acc"]].values.tolist() == [["triplet", 0.9071]]
    assert reports.published_results(raw_profile("demo")).empty  # generated, not Celeb-DF
    other = raw_profile("ffpp_nt_c40")
    other["index"] = {**other["index"], "ffpp_compression": "c23"}
    assert reports.published_setting(other) is None
    other["index"] = {**other["index"], "ffpp_compression": "c40",
                      "ffpp_methods": ["Deepfakes", "NeuralTextures"]}
    assert reports.published_setting(other) is None
    cross = raw_profile("celebdf")
    cross["index"] = {**cross["index"], "test_dataset": "ffpp"}
    assert reports.published_setting(cross) is None


def test_published_rows_stand_beside_ours_unmarked_and_formatted():
    ours = results([("cnn/xception", "video", 0.80, 0.85, 0.2),
                    ("cnn/xception/boosted", "video", 0.82, 0.86, 0.2),
                    ("triplet/sgd", "video", 0.70, 0.90, 0.1)])
    table = reports.paper_table(ours, reports.published_results(raw_profile("celebdf")))
    assert list(zip(table["method"], table["source"] == reports.OURS)) == [
        ("cnn/xception", True), ("cnn/xception", False), ("cnn/xception/boosted", True),
        ("cnn/xception/boosted", False), ("triplet/sgd", True), ("triplet", False)]
    mask = reports.best_mask(table)
    assert not mask[table["source"] != reports.OURS].any().any()
    assert mask.loc[2, "acc"] and mask.loc[4, "auc"]  # ours, although published is higher
    md = reports.format_paper_table(table)
    assert md.splitlines()[0].startswith("| level | family | method | source | n | acc")
    assert "| **0.820** |" in md and "| 0.980 |" in md and "published (Kumar et al. 2020)" in md
    page = reports.format_paper_table(table, "html", decimals=2)
    assert "<b>0.82</b>" in page and "<td>0.99</td>" in page and "<td>–</td>" in page
    alone = reports.format_paper_table(reports.paper_table(ours))
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
    video = reports.roc_predictions(run)
    assert list(video) == ["cnn/ef0", "triplet/sgd"]  # paper order, not alphabetical
    assert list(video["triplet/sgd"]["score"]) == [0.1, 0.9, 0.2, 0.8]
    fig = plots.roc_family_figure(video)
    assert [ax.get_title() for ax in fig.axes] == ["frame CNN", "triplet"]
    assert "triplet/sgd (1.000)" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    frame = reports.roc_predictions(run, "frame")
    assert list(frame) == ["cnn/ef0"] and len(frame["cnn/ef0"]) == 8
    with pytest.raises(ValueError, match="level 'clip'"):
        reports.roc_predictions(run, "clip")
