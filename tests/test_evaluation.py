"""Tests of dflib.statistics and dflib.evaluation; every expected number is worked out by hand in a comment."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from dflib import evaluation as ev, statistics as st
from dflib import vocabulary
from dflib.paths import RunPaths

# --------------------------------------------------------------------------- aggregate

@pytest.mark.parametrize("rule, expected", [("mean", 0.7), ("max", 0.7), ("vote", 1.0),
                                            ("confident", 0.7)])
def test_aggregate_one_frame(rule, expected):
    assert st.aggregate([0.7], rule) == pytest.approx(expected)


@pytest.mark.parametrize("rule, expected", [("mean", 0.5), ("max", 0.5), ("vote", 0.0),
                                            ("confident", 0.5)])
def test_aggregate_all_equal_at_threshold(rule, expected):
    # a frame at exactly 0.5 is not a fake vote: the comparison is strict
    assert st.aggregate(np.full(4, 0.5), rule) == pytest.approx(expected)


def test_aggregate_vote_exactly_half_is_not_a_majority():
    assert st.aggregate([0.9, 0.1], "vote") == 0.5
    frames = pd.DataFrame({"video_id": ["v", "v"], "frame_idx": [0, 1], "label": [1, 1],
                           "score": [0.9, 0.1]})
    out = st.video_predictions(frames, pd.DataFrame({"video_id": ["v"], "label": [1]}), "vote")
    assert out.loc[0, "score"] == 0.5 and out.loc[0, "pred"] == 0


def test_aggregate_vote_uses_threshold():
    assert st.aggregate([0.6, 0.7, 0.9], "vote", threshold=0.65) == pytest.approx(2 / 3)


def test_confident_fake_branch():
    # 12 of 15 frames > 0.8: 12 > 15/2.5 = 6 and 12 > 11 -> mean of those = 0.9
    # (plain mean would be (12*0.9 + 3*0.1)/15 = 0.74)
    assert st.aggregate([0.9] * 12 + [0.1] * 3, "confident") == pytest.approx(0.9)


def test_confident_fake_branch_needs_more_than_11():
    # 11 confident fakes of 12 frames: 11 is not > 11 -> no branch 1, no reals -> plain mean
    assert st.aggregate([0.9] * 11 + [0.5], "confident") == pytest.approx((9.9 + 0.5) / 12)


def test_confident_fake_branch_needs_more_than_n_over_2_5():
    # n = 30: n/2.5 = 12, so 12 confident fakes are not enough but 13 are
    assert st.aggregate([0.9] * 12 + [0.5] * 18, "confident") == pytest.approx((10.8 + 9) / 30)
    assert st.aggregate([0.9] * 13 + [0.5] * 17, "confident") == pytest.approx(0.9)


def test_confident_real_branch():
    # 19 of 20 frames < 0.2: 19 > 0.9*20 = 18 -> mean of those = 0.1 (plain mean 0.12)
    assert st.aggregate([0.1] * 19 + [0.5], "confident") == pytest.approx(0.1)
    # 9 of 10: 9 is not > 9 -> plain mean (0.9 + 0.5)/10 = 0.14
    assert st.aggregate([0.1] * 9 + [0.5], "confident") == pytest.approx(0.14)


def test_confident_plain_mean_branch():
    scores = [0.9] * 5 + [0.1] * 5 + [0.5] * 5
    assert st.aggregate(scores, "confident") == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [[], [0.2, float("nan")], [[0.1, 0.2]]])
def test_aggregate_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        st.aggregate(bad)


def test_aggregate_unknown_rule():
    with pytest.raises(ValueError, match="median"):
        st.aggregate([0.1], "median")
    assert set(vocabulary.AGGREGATIONS) == {"mean", "max", "vote", "confident"}


# --------------------------------------------------------------------------- video_predictions

def _frames(rows):
    return pd.DataFrame(rows, columns=["video_id", "frame_idx", "label", "score"])


def test_video_predictions_keeps_no_face_videos():
    frames = _frames([("a", 0, 1, 0.3), ("a", 1, 1, 0.6), ("a", 2, 1, 0.9),
                      ("b", 0, 0, np.nan), ("b", 1, 0, np.nan),   # faces never found
                      ("z", 0, 0, 0.8)])                           # not a test video
    videos = pd.DataFrame({"video_id": ["c", "a", "b"], "label": [0, 1, 0],
                           "split": "test"})
    out = st.video_predictions(frames, videos, no_face_score=0.3)
    assert list(out.columns) == list(st.VIDEO_COLUMNS)
    assert out["video_id"].tolist() == ["c", "a", "b"]              # index order, none dropped
    assert out["score"].tolist() == pytest.approx([0.3, 0.6, 0.3])  # mean(.3, .6, .9) = .6
    assert out["pred"].tolist() == [0, 1, 0]
    assert out["n_frames"].tolist() == [0, 3, 0]
    assert out["status"].tolist() == ["no_face", "ok", "no_face"]
    assert out["label"].tolist() == [0, 1, 0]


def test_video_predictions_rule_and_strict_threshold():
    frames = _frames([("a", 0, 1, 0.3), ("a", 1, 1, 0.7)])
    videos = pd.DataFrame({"video_id": ["a"], "label": [1]})
    assert st.video_predictions(frames, videos, "max")["score"].iloc[0] == 0.7
    out = st.video_predictions(frames, videos, "mean")          # mean 0.5 -> not > 0.5
    assert out["score"].iloc[0] == pytest.approx(0.5) and out["pred"].iloc[0] == 0


def test_video_predictions_rejects_label_mismatch_and_duplicates():
    frames = _frames([("a", 0, 0, 0.3)])
    with pytest.raises(ValueError, match="label"):
        st.video_predictions(frames, pd.DataFrame({"video_id": ["a"], "label": [1]}))
    with pytest.raises(ValueError, match="twice"):
        st.video_predictions(frames, pd.DataFrame({"video_id": ["a", "a"], "label": [0, 0]}))


# --------------------------------------------------------------------------- ensemble

def _videos(ids, labels, scores, preds=None, status=None, n_frames=None):
    preds = preds if preds is not None else [int(s > 0.5) for s in scores]
    return pd.DataFrame({"video_id": ids, "label": labels, "score": scores, "pred": preds,
                         "n_frames": n_frames or [3] * len(ids),
                         "status": status or ["ok"] * len(ids)})


def test_ensemble_vote_majority():
    m1 = _videos(["x", "y"], [1, 0], [0.9, 0.2])
    m2 = _videos(["x", "y"], [1, 0], [0.8, 0.6])
    m3 = _videos(["x", "y"], [1, 0], [0.1, 0.3])
    out = st.ensemble([m1, m2, m3], "vote")
    assert out["score"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert out["pred"].tolist() == [1, 0]
    assert list(out.columns) == list(st.VIDEO_COLUMNS)


def test_ensemble_vote_tie_is_real_and_mean_averages():
    m1 = _videos(["x"], [1], [0.9])
    m2 = _videos(["x"], [1], [0.2])
    vote = st.ensemble([m1, m2], "vote")
    assert vote["score"].iloc[0] == 0.5 and vote["pred"].iloc[0] == 0   # 1 of 2: no majority
    mean = st.ensemble([m1, m2], "mean")
    assert mean["score"].iloc[0] == pytest.approx(0.55) and mean["pred"].iloc[0] == 1


def test_ensemble_vote_uses_member_pred():
    # a member that decided at another threshold votes with its own pred
    m1 = _videos(["x"], [1], [0.4], preds=[1])
    m2 = _videos(["x"], [1], [0.4], preds=[1])
    m3 = _videos(["x"], [1], [0.9], preds=[0])
    assert st.ensemble([m1, m2, m3], "vote")["score"].iloc[0] == pytest.approx(2 / 3)


def test_ensemble_aligns_on_video_id():
    m1 = _videos(["x", "y"], [1, 0], [0.9, 0.1])
    m2 = _videos(["y", "x"], [0, 1], [0.3, 0.7])
    out = st.ensemble([m1, m2], "mean")
    assert out["video_id"].tolist() == ["x", "y"]
    assert out["score"].tolist() == pytest.approx([0.8, 0.2])


def test_ensemble_keeps_unseen_videos_as_prior():
    m1 = _videos(["x", "n"], [1, 0], [0.9, 0.5], status=["ok", "no_face"], n_frames=[4, 0])
    m2 = _videos(["x", "n"], [1, 0], [0.7, 0.5], status=["ok", "no_face"], n_frames=[5, 0])
    out = st.ensemble([m1, m2], "vote")
    assert out["score"].tolist() == pytest.approx([1.0, 0.5])       # prior, not 0 votes
    assert out["status"].tolist() == ["ok", "no_face"]
    assert out["n_frames"].tolist() == [5, 0]


def test_ensemble_frame_level():
    a = _frames([("v", 0, 1, 0.9), ("v", 1, 1, 0.4), ("w", 0, 0, 0.6)])
    b = _frames([("v", 1, 1, 0.7), ("v", 0, 1, 0.2), ("w", 0, 0, 0.1)])
    c = _frames([("v", 0, 1, 0.8), ("v", 1, 1, 0.3), ("w", 0, 0, 0.7)])
    vote = st.ensemble([a, b, c], "vote")
    # (v,0): .9 .2 .8 -> 2/3 ; (v,1): .4 .7 .3 -> 1/3 ; (w,0): .6 .1 .7 -> 2/3
    assert vote[["video_id", "frame_idx"]].values.tolist() == [["v", 0], ["v", 1], ["w", 0]]
    assert vote["score"].tolist() == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert vote["pred"].tolist() == [1, 0, 1]
    mean = st.ensemble([a, b, c], "mean")
    assert mean["score"].tolist() == pytest.approx([1.9 / 3, 1.4 / 3, 1.4 / 3])


def test_ensemble_rejects_mismatches():
    m1 = _videos(["x", "y"], [1, 0], [0.9, 0.1])
    with pytest.raises(ValueError, match="same rows"):
        st.ensemble([m1, _videos(["x", "z"], [1, 0], [0.9, 0.1])], "mean")
    with pytest.raises(ValueError, match="labels"):
        st.ensemble([m1, _videos(["x", "y"], [1, 1], [0.9, 0.1])], "mean")
    with pytest.raises(ValueError):
        st.ensemble([], "mean")
    with pytest.raises(ValueError, match="max"):
        st.ensemble([m1], "max")


# --------------------------------------------------------------------------- metrics

def test_metrics_counts_by_hand():
    labels = [1, 1, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.3, 0.2, 0.7, 0.1]
    # pred 1 1 0 0 1 0 -> tp 2, fn 2, fp 1, tn 1
    m = st.metrics(labels, scores)
    assert (m["n"], m["n_pos"], m["n_neg"]) == (6, 4, 2)
    assert m["acc"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    # pairs (pos, neg): .9 > .7,.1 ; .8 > .7,.1 ; .3 > .1 ; .2 > .1 -> 6 of 8
    assert m["auc"] == pytest.approx(6 / 8)
    assert list(m) == [*st.METRIC_COUNTS, *st.METRIC_FLOATS]


def test_metrics_threshold_is_strict():
    m = st.metrics([1, 0], [0.5, 0.4])
    assert m["acc"] == 0.5 and m["recall"] == 0.0


def test_auc_with_ties():
    # pos .5 vs negs .5,.5: two ties = 1 ; pos .9 beats both = 2 -> 3/4
    assert st.metrics([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.9])["auc"] == pytest.approx(0.75)
    assert st.roc_points([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.9])[2] == pytest.approx(0.75)


def test_eer_exact_point():
    # negs .1 .2 .3 .7, pos .6 .8 .9 .95: at threshold .7 FPR = 1/4 and TPR = 3/4
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9, 0.95]
    assert st.metrics(labels, scores)["eer"] == pytest.approx(0.25)
    assert st.equal_error_rate([0, 1], [0.2, 0.8]) == 0.0       # separable


def test_eer_interpolated():
    # ROC: (0,0) -> (1/2, 1) in one step (tie at .5) -> (1,1).
    # On the first segment FPR = s/2, FNR = 1 - s: equal at s = 2/3 -> EER 1/3
    assert st.equal_error_rate([0, 0, 1], [0.3, 0.5, 0.5]) == pytest.approx(1 / 3)
    # all scores tied: the chance diagonal, EER 1/2
    assert st.equal_error_rate([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_average_precision():
    # ranked: .8 fake (P 1, R 1/2), .4 real, .35 fake (P 2/3, R 1) -> 1/2*1 + 1/2*2/3
    m = st.metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["ap"] == pytest.approx(0.5 + 1 / 3)


def test_logloss_and_clipping():
    assert st.metrics([1, 0], [0.8, 0.4])["logloss"] == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2)
    assert st.metrics([1, 0], [0.0, 0.0])["logloss"] == pytest.approx(
        -(math.log(1e-7) + math.log(1 - 1e-7)) / 2)


def test_zero_predicted_positives_is_quiet():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = st.metrics([1, 0], [0.1, 0.2])
    assert caught == []
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


@pytest.mark.parametrize("labels, missing", [([1, 1], "real"), ([0, 0], "fake")])
def test_single_class_gives_nan_and_one_warning(labels, missing):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = st.metrics(labels, [0.9, 0.4])
    assert len(caught) == 1 and missing in str(caught[0].message)
    assert math.isnan(m["auc"]) and math.isnan(m["eer"]) and math.isnan(m["ap"])
    assert m["acc"] == 0.5 and not math.isnan(m["logloss"])
    with pytest.warns(UserWarning, match=missing):
        fpr, tpr, auc = st.roc_points(labels, [0.9, 0.4])
    assert fpr.size == 0 and tpr.size == 0 and math.isnan(auc)


def test_empty_set_is_all_nan():
    with pytest.warns(UserWarning, match="empty"):
        m = st.metrics([], [])
    assert (m["n"], m["n_pos"], m["n_neg"]) == (0, 0, 0)
    assert all(math.isnan(m[k]) for k in st.METRIC_FLOATS)


@pytest.mark.parametrize("labels, scores", [([2, 0], [0.1, 0.2]), ([1, 0], [1.2, 0.2]),
                                            ([1, 0], [np.nan, 0.2]), ([1], [0.1, 0.2])])
def test_metrics_rejects_bad_input(labels, scores):
    with pytest.raises(ValueError):
        st.metrics(labels, scores)


def test_roc_points():
    fpr, tpr, auc = st.roc_points([0, 1], [0.2, 0.8])
    assert fpr[0] == 0 and tpr[-1] == 1 and auc == 1.0


# --------------------------------------------------------------------------- files and results

@pytest.mark.parametrize("method, stem", [("cnn/xception/boosted", "cnn__xception__boosted"),
                                          ("c3d", "c3d"), ("rnn/bi_lstm", "rnn__bi_lstm"),
                                          ("facenet/k-nn", "facenet__k-nn")])
def test_method_filename_round_trip(method, stem):
    assert vocabulary.method_filename(method) == stem
    assert vocabulary.method_from_filename(stem + ".csv") == method


@pytest.mark.parametrize("bad", ["a__b", "a/", "/a", "a_/b", "_a", "a b", "../x", "cnn_frames", ""])
def test_method_filename_rejects_ambiguous_names(bad):
    with pytest.raises(ValueError):
        vocabulary.method_filename(bad)


@pytest.fixture
def run(tmp_path):
    return RunPaths(tmp_path / "run")


def _xception_files():
    frames = _frames([("a", 0, 1, 0.9), ("a", 1, 1, 0.6), ("b", 0, 0, 0.2), ("b", 1, 0, 0.7),
                      ("c", 0, 1, 0.4)])
    index = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "label": [1, 0, 1, 0]})
    return st.video_predictions(frames, index), frames


def test_write_and_read_predictions(run):
    videos, frames = _xception_files()
    vpath, fpath = ev.write_predictions(run, "cnn/xception", videos, frames)
    assert vpath == run.predictions / "cnn__xception.csv"
    assert fpath == run.predictions / "cnn__xception_frames.csv"
    v, f = ev.read_predictions(run, "cnn/xception")
    pd.testing.assert_frame_equal(v, videos)
    pd.testing.assert_frame_equal(f, frames)
    # without frames: a stale frames file goes, status is derived from n_frames
    _, none = ev.write_predictions(run, "cnn/xception", videos.drop(columns="status"))
    assert none is None and not fpath.exists()
    v, f = ev.read_predictions(run, "cnn/xception")
    assert f is None and v["status"].tolist() == videos["status"].tolist()


def test_write_predictions_rejects_bad_tables(run):
    videos, _ = _xception_files()
    with pytest.raises(ValueError, match="duplicate"):
        ev.write_predictions(run, "m", pd.concat([videos, videos]))
    with pytest.raises(ValueError, match="lacks"):
        ev.write_predictions(run, "m", videos.drop(columns="score"))
    with pytest.raises(FileNotFoundError, match="nope"):
        ev.read_predictions(run, "nope")


def test_score_method_upserts(run):
    assert ev.results_table(run).empty
    videos, frames = _xception_files()
    ev.write_predictions(run, "cnn/xception", videos, frames)
    rows = ev.score_method(run, "cnn/xception")
    first = run.results_csv.read_bytes()
    again = ev.score_method(run, "cnn/xception")
    assert run.results_csv.read_bytes() == first
    pd.testing.assert_frame_equal(rows, again)

    table = ev.results_table(run)
    assert list(table.columns) == list(ev.RESULT_COLUMNS)
    assert table[["method", "level"]].values.tolist() == [["cnn/xception", "frame"],
                                                          ["cnn/xception", "video"]]
    pd.testing.assert_frame_equal(table, rows.iloc[::-1].reset_index(drop=True))
    video = table.set_index("level").loc["video"]
    # videos: a .75 (fake, right), b .45 (real, right), c .4 (fake, wrong), d no face .5
    assert (video["n"], video["n_pos"], video["n_no_face"]) == (4, 2, 1)
    assert video["acc"] == 0.75 and video["recall"] == 0.5 and video["precision"] == 1.0
    frame = table.set_index("level").loc["frame"]
    # frames: preds 1 1 0 1 0 vs labels 1 1 0 0 1 -> 3 of 5
    assert frame["n"] == 5 and frame["acc"] == 0.6 and pd.isna(frame["n_no_face"])
    assert "0.666667" in run.results_csv.read_text()    # frame precision 2/3, 6 decimals

    ev.write_predictions(run, "c3d", videos.assign(score=[0.9, 0.1, 0.8, 0.5]))
    ev.score_method(run, "c3d")
    table = ev.results_table(run)
    assert table[["method", "level"]].values.tolist() == [
        ["c3d", "video"], ["cnn/xception", "frame"], ["cnn/xception", "video"]]
    assert table.set_index("method").loc["c3d", "acc"] == 1.0

    # rescoring a method without frames replaces both of its rows
    ev.write_predictions(run, "cnn/xception", videos)
    ev.score_method(run, "cnn/xception")
    assert ev.results_table(run)[["method", "level"]].values.tolist() == [
        ["c3d", "video"], ["cnn/xception", "video"]]


def test_retire_methods_drops_stale_rows_and_files(tmp_path):
    run = RunPaths(tmp_path / "run")
    videos = pd.DataFrame({"video_id": ["a", "b"], "label": [0, 1], "score": [0.2, 0.9],
                           "pred": [0, 1], "n_frames": [3, 3]})
    for method in ("cnn/x", "cnn/x/chunk1", "cnn/x/boosted", "cnn/xy", "c3d"):
        ev.write_predictions(run, method, videos)
        ev.score_method(run, method)
    assert ev.retire_methods(run, "cnn/x", ["cnn/x"]) == ["cnn/x/boosted", "cnn/x/chunk1"]
    assert sorted(set(ev.results_table(run)["method"])) == ["c3d", "cnn/x", "cnn/xy"]
    assert not run.prediction_files("cnn/x/chunk1")[0].exists()
    assert run.prediction_files("cnn/xy")[0].exists()
    assert ev.retire_methods(run, "cnn/x", ["cnn/x"]) == []


@pytest.mark.parametrize("labels", [[], [1, 1, 1]], ids=["empty", "one_class"])
def test_every_score_figure_draws_on_an_empty_or_one_class_split(labels, tmp_path):
    from dflib import plots, robustness

    table = pd.DataFrame({"video_id": [f"v{i}" for i in range(len(labels))],
                          "label": pd.Series(labels, dtype=int),
                          "score": pd.Series(np.linspace(0.2, 0.9, len(labels)), dtype=float)})
    predictions = {"cnn/ef0": table, "c3d": table, "triplet/sgd": table}
    robust = pd.DataFrame({"method": ["c3d", "c3d"], "family": ["temporal", "temporal"],
                           "crf": [robustness.ORIGINAL, 23], "auc": [np.nan, np.nan]})
    distorted = pd.DataFrame({"type": [robustness.ORIGINAL_TYPE, "noise"], "level": [0, 5],
                              "parameter": [np.nan, 0.05], "method": ["c3d", "c3d"],
                              "auc": [np.nan, np.nan], "auc_low": [np.nan, np.nan],
                              "auc_high": [np.nan, np.nan]})
    run = RunPaths(tmp_path).ensure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-class warning is asserted elsewhere
        figures = [plots.roc_figure(predictions), plots.confusion_figure(predictions),
                   plots.roc_group_figure(predictions),
                   plots.tsne_figure(np.zeros((len(labels), 512)), np.zeros((len(labels), 512)),
                                     np.asarray(labels)),
                   plots.robustness_figure(robust, {"temporal": "c3d"}),
                   plots.perturbation_figure(distorted, {"temporal": "c3d"}),
                   plots.perturbation_figure(distorted.iloc[:1], {"temporal": "c3d"})]
    for i, fig in enumerate(figures):
        assert plots.save_fig(fig, run, f"fig_{i}").stat().st_size > 0
    said = "no videos to score" if not labels else "one class only: no ROC curve"
    assert said in [t.get_text() for t in figures[0].axes[0].texts]
    fpr, tpr, auc = st.roc_points(table["label"], table["score"])
    assert len(fpr) == len(tpr) == 0 and math.isnan(auc)


# --------------------------------------------------------------------------- evidence

def _all_stratified_resamples(labels):
    """Every ordered stratified resample of a tiny set, as multiplicities: each class's
    n_c draws from its n_c members, all n_c ** n_c sequences equally likely."""
    import itertools

    labels = np.asarray(labels)
    per_class = []
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls)
        per_class.append([np.bincount(members[list(draw)], minlength=labels.size)
                          for draw in itertools.product(range(members.size),
                                                        repeat=members.size)])
    return np.array([a + b for a in per_class[0] for b in per_class[1]])


TINY_LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
TINY_SCORES = np.array([0.1, 0.4, 0.55, 0.7, 0.4, 0.6, 0.8, 0.9])  # one tie across classes


def test_weighted_metrics_equal_metrics_on_every_materialised_resample():
    counts = _all_stratified_resamples(TINY_LABELS)
    assert len(counts) == 4 ** 4 * 4 ** 4
    sample = counts[::97]  # every 97th of the 65,536, materialised one by one below
    fast = st.weighted_metrics(TINY_LABELS, TINY_SCORES, sample, threshold=0.5)
    for k, c in enumerate(sample):
        brute = st.metrics(np.repeat(TINY_LABELS, c), np.repeat(TINY_SCORES, c))
        for m in st.INTERVAL_METRICS:
            assert fast[m][k] == pytest.approx(brute[m], abs=1e-12), (m, c)


def test_stratified_bootstrap_interval_matches_brute_force_enumeration():
    counts = _all_stratified_resamples(TINY_LABELS)
    exact = st.weighted_metrics(TINY_LABELS, TINY_SCORES, counts)
    got = st.bootstrap_intervals(TINY_LABELS, TINY_SCORES,
                                 scoring=st.Scoring(resamples=20000, seed=3))
    for m in st.INTERVAL_METRICS:
        low, high = np.quantile(exact[m], [0.025, 0.975])
        # the exact distribution is discrete (AUC in steps of 1/32): one step of slack
        assert got[f"{m}_low"] == pytest.approx(low, abs=0.035), m
        assert got[f"{m}_high"] == pytest.approx(high, abs=0.035), m


def test_stratified_counts_keep_each_class_size():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1, 0, 1])
    counts = st.stratified_counts(labels, 500, rng)
    assert (counts[:, labels == 0].sum(axis=1) == 2).all()
    assert (counts[:, labels == 1].sum(axis=1) == 3).all()


def test_frame_bootstrap_resamples_videos():
    # one frame per video: the video bootstrap and the frame bootstrap are the same draw
    scoring = st.Scoring(resamples=300, seed=1)
    by_sample = st.bootstrap_intervals(TINY_LABELS, TINY_SCORES, scoring=scoring)
    by_video = st.bootstrap_intervals(TINY_LABELS, TINY_SCORES,
                                      clusters=[f"v{i}" for i in range(8)], scoring=scoring)
    assert by_sample == by_video
    # two frames of one video never split: a video is drawn with all its frames
    frames = st.bootstrap_intervals(np.repeat(TINY_LABELS, 2), np.repeat(TINY_SCORES, 2),
                                    clusters=np.repeat(np.arange(8), 2), scoring=scoring)
    assert frames["auc_low"] == pytest.approx(by_video["auc_low"])
    with pytest.raises(ValueError, match="mix real and fake"):
        st.bootstrap_intervals([0, 1], [0.2, 0.8], clusters=["a", "a"], scoring=scoring)


def test_intervals_nan_for_one_class_or_no_resamples():
    assert all(math.isnan(v) for v in st.bootstrap_intervals([1, 1], [0.2, 0.8]).values())
    assert all(math.isnan(v) for v in st.bootstrap_intervals(
        TINY_LABELS, TINY_SCORES, scoring=st.Scoring(resamples=0)).values())


def test_delong_hand_worked_example():
    # fakes .9 .6 .4, reals .5 .3: V10 = [1, 1, 1/2], V01 = [2/3, 1], AUC 5/6.
    # Against a constant scorer (AUC 1/2, components all 1/2, no variance):
    # var = var(V10)/3 + var(V01)/2 = (1/12)/3 + (1/18)/2 = 1/18, z = (1/3)/sqrt(1/18) = sqrt 2
    labels, a = [1, 1, 1, 0, 0], [0.9, 0.6, 0.4, 0.5, 0.3]
    v10, v01 = st.delong_components(labels, a)
    np.testing.assert_allclose(v10, [1, 1, 0.5])
    np.testing.assert_allclose(v01, [2 / 3, 1])
    out = st.delong_test(labels, a, [0.5] * 5)
    assert out["delta_auc"] == pytest.approx(1 / 3)
    assert out["p_value"] == pytest.approx(2 * (1 - 0.9213503964748574), abs=1e-9)  # Phi(sqrt 2)
    half = 1.959963984540054 * math.sqrt(1 / 18)
    assert (out["delta_low"], out["delta_high"]) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    assert out["n"] == 5


def test_delong_components_against_double_loop_and_symmetry():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 30)
    y[:2] = [0, 1]
    a, b = rng.random(30).round(1), rng.random(30).round(1)  # rounding makes ties
    v10, v01 = st.delong_components(y, a)
    pos, neg = a[y == 1], a[y == 0]
    loop10 = [np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for q in neg]) for p in pos]
    loop01 = [np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p in pos]) for q in neg]
    np.testing.assert_allclose(v10, loop10)
    np.testing.assert_allclose(v01, loop01)
    ab, ba = st.delong_test(y, a, b), st.delong_test(y, b, a)
    assert ab["delta_auc"] == pytest.approx(-ba["delta_auc"])
    assert ab["p_value"] == pytest.approx(ba["p_value"])
    same = st.delong_test(y, a, a)
    assert same["delta_auc"] == 0 and same["p_value"] == 1.0
    assert math.isnan(st.delong_test([1, 1], [0.2, 0.3], [0.1, 0.9])["p_value"])


def test_ece_and_brier_by_hand():
    # bins of width 1/15: .02 and .05 share bin 0 (fake rate 1/2, mean score .035),
    # .95 is alone in bin 14 (fake rate 1, mean .95): ECE = 2/3*.465 + 1/3*.05
    m = st.metrics([0, 1, 1], [0.02, 0.05, 0.95])
    assert m["ece"] == pytest.approx(2 / 3 * 0.465 + 1 / 3 * 0.05)
    assert m["brier"] == pytest.approx((0.02 ** 2 + 0.95 ** 2 + 0.05 ** 2) / 3)
    # recall of fakes 1/2 (.95 > .5), of reals 1 -> balanced accuracy 3/4
    assert m["balanced_acc"] == pytest.approx(0.75)
    bins = st.reliability_bins([0, 1, 1], [0.02, 0.05, 0.95])
    assert bins["n"].sum() == 3 and bins.loc[0, "fake_rate"] == 0.5


@pytest.mark.parametrize("rule, expected", [("fixed", 0.5), ("eer", 0.35), ("youden", 0.35)])
def test_validation_threshold_rules(rule, expected):
    # reals .1 .3, fakes .4 .8: every cut between .3 and .4 separates them; the midpoint
    # .35 is the candidate there
    assert st.validation_threshold([0, 0, 1, 1], [0.1, 0.3, 0.4, 0.8], rule) == \
        pytest.approx(expected)


def test_validation_threshold_falls_back_with_one_warning():
    for labels in ([1, 1], []):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = st.validation_threshold(labels, [0.7, 0.9][:len(labels)], "eer")
        assert t == 0.5 and len(caught) == 1 and "falls back" in str(caught[0].message)


def _scored(run, method, test_labels, val_labels, scores):
    n = len(scores)
    table = lambda labels: pd.DataFrame({  # noqa: E731
        "video_id": [f"v{i}" for i in range(n)], "label": labels, "score": scores,
        "pred": (np.asarray(scores) > 0.5).astype(int), "n_frames": 1})
    ev.write_predictions(run, method, table(test_labels))
    ev.write_predictions(run, method, table(val_labels), split="val")
    return ev.score_method(run, method).set_index("level").loc["video"]


def test_threshold_val_never_reads_the_test_split(run):
    scores = [0.1, 0.2, 0.3, 0.6, 0.7, 0.9]
    val = [0, 0, 1, 1, 1, 1]  # on validation, the cut between .2 and .3 separates
    first = _scored(run, "c3d", [0, 0, 0, 1, 1, 1], val, scores)
    flipped = _scored(run, "c3d", [1, 1, 1, 0, 0, 0], val, scores)
    assert first["threshold_val"] == flipped["threshold_val"] == pytest.approx(0.25)
    assert first["auc"] != flipped["auc"] and first["acc_val"] != flipped["acc_val"]
    # ... and the validation labels do move it
    moved = _scored(run, "c3d", [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1], scores)
    assert moved["threshold_val"] == pytest.approx(0.65)
    assert first["val_split_auc"] == 1.0


def test_results_row_has_every_evidence_column(run):
    row = _scored(run, "c3d", [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1],
                  [0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    for column in (*ev.EVIDENCE_FLOATS, "balanced_acc", "ece", "brier", "val_split_auc"):
        assert not pd.isna(row[column]), column
    assert row["auc_low"] <= row["auc"] <= row["auc_high"]


def test_chosen_method_follows_validation_auc_not_test_auc():
    results = pd.DataFrame({"method": ["a", "b", "c"], "level": "video",
                            "auc": [0.9, 0.6, 0.7], "val_split_auc": [0.6, 0.8, np.nan]})
    assert ev.chosen_method(results) == "b"
    assert ev.chosen_method(results, among=["a", "c"]) == "a"
    assert ev.chosen_method(results.assign(val_split_auc=np.nan)) is None
