"""The frequency-artefact detectors (dflib.detectors.models.frequency) and the identity control
(dflib.detectors.models.identity): their features, the stage on a tiny face store, re-scoring, bad files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from dflib import detectors, evaluation, html_report, io, result_tables, vocabulary
from dflib.detectors.models import controls, frequency, identity
from dflib.paths import RunPaths
from test_result_tables import signal_run

SIDE = 32
PARAMS = {"features": list(vocabulary.FREQUENCY_FEATURES), "classifiers": ["logreg"],
          "c": [1.0], "cv_folds": 5, "aggregation": "mean", "threshold": 0.5, "self_blends": 0}


def sinusoid(cycles: int, side: int = 64) -> np.ndarray:
    """One face ``[1, side, side, 3]`` of vertical stripes, ``cycles`` periods across."""
    x = np.arange(side)
    row = 127.5 + 100 * np.cos(2 * np.pi * cycles * x / side)
    return np.repeat(np.tile(row, (side, 1))[None, :, :, None], 3, axis=3)


@pytest.mark.parametrize("cycles", [3, 10, 25])
def test_the_spectrum_of_a_sinusoid_peaks_at_its_frequency(cycles):
    profile = frequency.spectrum_profile(sinusoid(cycles))[0]
    assert profile.shape == (32,)
    assert int(np.argmax(profile[1:])) + 1 == cycles


def test_azimuthal_average_of_the_radius_is_the_ring_radius():
    y, x = np.indices((41, 41))
    radius = np.hypot(y - 20, x - 20)
    profile = frequency.azimuthal_average(radius)
    assert profile.shape == (20,)
    # ring r holds the pixels at distances [r, r + 1): ring 0 is the centre alone
    np.testing.assert_array_equal(np.floor(profile), np.arange(20))
    assert profile[0] == 0.0


def noise_faces(rng: np.random.Generator, n: int, blurred: bool) -> np.ndarray:
    """Sharp noise (a "real" face) or the same kind of noise blurred (a "fake" one)."""
    faces = rng.integers(0, 255, (n, SIDE, SIDE, 3)).astype(np.uint8)
    if blurred:
        faces = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in faces])
    return faces


def test_features_are_deterministic_and_their_shapes_depend_on_the_crop_size_only():
    rng = np.random.default_rng(0)
    faces = noise_faces(rng, 3, blurred=False)
    first = frequency.feature_rows(faces, PARAMS["features"])
    again = frequency.feature_rows(faces.copy(), PARAMS["features"])
    other = frequency.feature_rows(noise_faces(rng, 5, blurred=True), PARAMS["features"])
    for name in PARAMS["features"]:
        np.testing.assert_array_equal(first[name], again[name])
        assert first[name].shape[1] == other[name].shape[1] and np.isfinite(first[name]).all()
    # inner face (12 px), face (20 px), whole crop (32 px): 6 + 10 + 16 rings, 3 x 150 pairs,
    # 3 x 64 DCT bins
    assert {k: v.shape for k, v in first.items()} == {
        "spectrum": (3, 32), "srm": (3, 450), "dct": (3, 192), "all": (3, 674)}
    tiny = frequency.feature_rows(noise_faces(rng, 2, blurred=False)[:, :16, :16], ["dct"])
    assert tiny["dct"].shape == (2, 192) and np.isfinite(tiny["dct"]).all()  # 6 px: padded
    with pytest.raises(ValueError, match="unknown frequency feature 'wavelet'"):
        frequency.feature_rows(faces, ["wavelet"])


class DictStore:
    """A face source in memory; the videos in ``broken`` raise as an unreadable file does."""

    def __init__(self, faces: dict[str, np.ndarray], broken: tuple[str, ...] = ()) -> None:
        self.faces, self.broken = faces, broken

    def load(self, video_id: str, every_face: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if video_id in self.broken:
            raise OSError(f"{video_id}.npz: unreadable store file")
        faces = self.faces[video_id]
        return faces, np.arange(len(faces))


def tiny_study(tmp_path, broken: tuple[str, ...] = ()) -> tuple[RunPaths, DictStore, pd.DataFrame]:
    """24 videos of 4 faces: reals are sharp noise, fakes blurred noise; 12 train, 4 val, 8
    test; each split balanced."""
    rng = np.random.default_rng(1)
    rows, faces = [], {}
    for i in range(24):
        split = "train" if i < 12 else "val" if i < 16 else "test"
        vid = f"v{i:02d}"
        rows.append({"video_id": vid, "label": i % 2, "split": split, "n_faces": 4,
                     "method": "blur" if i % 2 else "real", "face_status": "ok"})
        faces[vid] = noise_faces(rng, 4, blurred=bool(i % 2))
    run = RunPaths.of("tiny", str(tmp_path)).ensure()
    return run, DictStore(faces, broken), pd.DataFrame(rows)


def ring_landmarks(run, store, reals):
    """dlib's stand-in: 68 points on a ring around each face's centre, found on every face
    but the first of each video."""
    from dflib.detectors.models import sbi

    angles = np.linspace(0, 2 * np.pi, sbi.N_LANDMARKS, endpoint=False)
    ring = np.stack([SIDE / 2 + 9 * np.cos(angles), SIDE / 2 + 11 * np.sin(angles)], 1)
    ids, at = [], []
    for vid in reals["video_id"]:
        n = len(store.load(vid)[0])
        ids += [vid] * n
        at += list(range(n))
    found = np.array(at) > 0
    return sbi.Landmarks(np.array(ids), np.array(at), np.repeat(ring[None], len(ids), 0)
                         .astype(np.float32), found)


def test_self_blends_of_the_real_training_faces_join_the_fakes(tmp_path, monkeypatch, capsys):
    """``self_blends: k`` fits on k blends of every real training face with landmarks (the
    SBI recipe, seeded), labelled fake; none without dlib's landmark model, and it says so."""
    from dflib.detectors.models import sbi

    run, store, videos = tiny_study(tmp_path)
    monkeypatch.setattr(sbi, "load_landmarks", ring_landmarks)
    train = videos[videos["split"] == "train"]
    rows, owners, said = frequency.self_blend_rows(run, store, train, ["srm", "dct"], 2, seed=3)
    # 6 real training videos x 3 faces with landmarks x 2 blends
    assert rows["srm"].shape == (36, 450) and rows["dct"].shape == (36, 192)
    assert said == "36 self-blends of 18 real training faces (2 each) added to the fakes"
    reals = train.loc[train["label"] == 0, "video_id"]
    assert list(owners) == [v for v in reals for _ in range(6)]  # each blend's real video
    again, _, _ = frequency.self_blend_rows(run, store, train, ["srm"], 2, seed=3)
    np.testing.assert_array_equal(again["srm"], rows["srm"])
    other, _, _ = frequency.self_blend_rows(run, store, train, ["srm"], 2, seed=4)
    assert not np.array_equal(other["srm"], rows["srm"])
    fitted = []
    real_fit = frequency.make_classifier
    monkeypatch.setattr(frequency, "make_classifier", lambda *args: (
        est := real_fit(*args), fitted.append(est))[0])
    result = frequency.run_stage(run, store, videos, {**PARAMS, "features": ["srm"],
                                                      "self_blends": 2}, seed=3)
    assert result.n_train_faces == 48 and result.n_self_blends == 36
    assert fitted[0][-1].class_weight == "balanced" and fitted[0][0].n_samples_seen_ == 84
    assert "frequency: 36 self-blends of 18 real training faces" in capsys.readouterr().out

    def no_dlib(*args):
        raise FileNotFoundError("shape_predictor_68_face_landmarks.dat: not installed")

    monkeypatch.setattr(sbi, "load_landmarks", no_dlib)
    result = frequency.run_stage(run, store, videos, {**PARAMS, "features": ["srm"],
                                                      "self_blends": 2})
    assert result.n_self_blends == 0
    assert ("frequency: no self-blends: shape_predictor_68_face_landmarks.dat: not installed"
            in capsys.readouterr().out)


def test_the_stage_writes_frequency_rows_and_reload_gives_its_scores(tmp_path):
    run, store, videos = tiny_study(tmp_path)
    result = frequency.run_stage(run, store, videos, PARAMS)
    methods = [vocabulary.frequency_method(f) for f in PARAMS["features"]]
    table = evaluation.results_table(run)
    assert result.methods == methods and result.n_train_faces == 48
    assert set(table["method"]) == set(methods)
    video_rows = table[table["level"] == "video"].set_index("method")
    assert (video_rows["auc"] > 0.9).all() and (video_rows["n"] == 8).all()
    assert set(result.spectra["group"]) == {"real", "blur"}
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    again = frequency.score_saved(run, methods, store, test, {"train_frequency": PARAMS})
    for method in methods:
        stage_videos, stage_frames = evaluation.read_predictions(run, method)
        np.testing.assert_allclose(again[method][0]["score"], stage_videos["score"], atol=1e-9)
        assert len(again[method][1]) == len(stage_frames) == 32
        assert detectors.is_frame_level(method) and detectors.display_group(method) == "frequency"
    assert frequency.saved_files(run, methods[:1]) == [run.classifier_file("frequency", "spectrum")]


def xor_rows(n_videos: int = 24, faces: int = 4, seed: int = 0) -> frequency.TrainingRows:
    """Faces whose class is the XOR of their two features' signs: an RBF SVC separates
    them, no linear model can."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_videos) % 2
    corner = rng.integers(0, 2, n_videos)  # which of its class's two quadrants a video uses
    sign_a = np.where(corner == 1, 1.0, -1.0)
    sign_b = np.where(labels == 1, -sign_a, sign_a)
    x = np.column_stack([np.repeat(sign_a, faces), np.repeat(sign_b, faces)])
    x = x * (1 + rng.random(x.shape)) + 0.1 * rng.normal(size=x.shape)
    return frequency.TrainingRows(x={"f": x}, y=np.repeat(labels, faces),
                                  video=np.repeat(np.array([f"v{i}" for i in range(n_videos)],
                                                           dtype=object), faces),
                                  own=np.ones(n_videos * faces, bool))


def test_cross_validation_chooses_the_classifier_that_separates_the_training_videos():
    rows = xor_rows()
    options = [frequency.Candidate("logreg", 1.0), frequency.Candidate("svc", 1.0)]
    chosen, table = frequency.choose_classifier(rows, "f", options, 4, "mean", 0.5, seed=0)
    assert chosen == frequency.Candidate("svc", 1.0)
    assert list(table.columns) == ["classifier", "c", "cv_auc", "cv_auc_sd", "folds", "chosen"]
    assert table["chosen"].tolist() == [False, True] and (table["folds"] == 4).all()
    assert table["cv_auc"].iloc[1] > 0.95 and table["cv_auc"].iloc[0] < 0.8
    again = frequency.choose_classifier(rows, "f", options, 4, "mean", 0.5, seed=0)[1]
    pd.testing.assert_frame_equal(again, table)


def test_the_folds_keep_each_video_with_its_self_blends_and_score_only_its_own_faces(
        monkeypatch):
    rows = xor_rows(n_videos=10)
    # a self-blend of each real video: its rows belong to that video
    reals = np.unique(rows.video[rows.y == 0])
    blends = frequency.TrainingRows(
        x={"f": np.vstack([rows.x["f"], np.zeros((len(reals), 2))])},
        y=np.concatenate([rows.y, np.ones(len(reals), int)]),
        video=np.concatenate([rows.video, reals]),
        own=np.concatenate([rows.own, np.zeros(len(reals), bool)]))
    calls = []  # recorded in this process: one job, no worker processes
    monkeypatch.setattr(frequency, "cpu_cores", lambda: 1)
    monkeypatch.setattr(frequency, "_fold_auc", lambda rows, feature, option, fit, held, *a:
                        calls.append((set(fit), set(held))) or 0.5)
    options = [frequency.Candidate("logreg", 0.1), frequency.Candidate("logreg", 1.0)]
    _, table = frequency.choose_classifier(blends, "f", options, 9, "mean", 0.5, seed=1)
    # 5 real training videos: the 9 folds asked shrink to 5, each video held out once
    assert (table["folds"] == 5).all() and len(calls) == 10
    for fit, held in calls:
        assert not fit & held and fit | held == set(rows.video)
        assert sum(v in reals for v in held) == 1
    assert [h for _, h in calls[:5]] == [h for _, h in calls[5:]]  # same folds for each option


def test_one_candidate_or_too_few_videos_fits_nothing_in_cross_validation():
    rows = xor_rows(n_videos=2)
    options = [frequency.Candidate("svc", 3.0), frequency.Candidate("logreg", 1.0)]
    chosen, table = frequency.choose_classifier(rows, "f", options, 5, "mean", 0.5, seed=0)
    assert chosen == options[0] and table["chosen"].tolist() == [True, False]
    assert (table["folds"] == 0).all() and table["cv_auc"].isna().all()
    chosen, table = frequency.choose_classifier(xor_rows(), "f", options[1:], 5, "mean", 0.5, 0)
    assert chosen == options[1] and table["cv_auc"].isna().all()
    with pytest.raises(ValueError, match="unknown frequency classifier 'tree'"):
        frequency.make_classifier("tree")


def test_the_stage_says_which_classifier_each_feature_got(tmp_path, capsys):
    run, store, videos = tiny_study(tmp_path)
    result = frequency.run_stage(run, store, videos, {
        **PARAMS, "features": ["srm", "dct"], "classifiers": ["logreg", "svc"],
        "c": [0.1, 1.0], "cv_folds": 3})
    selection = result.selection
    assert selection["method"].tolist() == ["frequency/srm"] * 4 + ["frequency/dct"] * 4
    assert selection.groupby("method")["chosen"].sum().tolist() == [1, 1]
    assert (selection["folds"] == 3).all() and selection["cv_auc"].notna().all()
    out = capsys.readouterr().out
    for method, row in selection[selection["chosen"]].set_index("method").iterrows():
        assert (f"{method}: {row['classifier']}, C = {row['c']:g} (cross-validated video AUC "
                f"{row['cv_auc']:.3f} over 3 folds)") in out
        saved = frequency.load_classifier(run, method, frequency.STAGE)
        assert type(saved[-1]).__name__ == {"logreg": "LogisticRegression",
                                            "svc": "MarginProbability"}[row["classifier"]]


def test_a_store_file_that_cannot_be_read_is_recorded_and_scored_by_the_prior(tmp_path):
    run, store, videos = tiny_study(tmp_path, broken=("v03", "v20"))  # one train, one test
    result = frequency.run_stage(run, store, videos, {**PARAMS, "features": ["srm"]})
    assert set(result.failed) == {"v03", "v20"} and "unreadable" in result.failed["v20"]
    rows, _ = evaluation.read_predictions(run, "frequency/srm")
    bad = rows.set_index("video_id").loc["v20"]
    assert bad["status"] == "failed" and bad["score"] == 0.5 and bad["n_frames"] == 0
    assert (rows.set_index("video_id").drop("v20")["status"] == "ok").all()


def test_a_feature_no_longer_listed_loses_its_rows(tmp_path):
    run, store, videos = tiny_study(tmp_path)
    frequency.run_stage(run, store, videos, PARAMS)
    frequency.run_stage(run, store, videos, {**PARAMS, "features": ["dct"]})
    assert set(evaluation.results_table(run)["method"]) == {"frequency/dct"}
    assert not run.prediction_files("frequency/srm", "test")[0].exists()


# --------------------------------------------------------------------------- identity control

def test_the_face_shown_is_the_source_of_a_swap_and_the_target_otherwise():
    videos = pd.DataFrame({
        "video_id": ["Celeb-real/id3_0001", "Celeb-synthesis/id0_id5_0002",
                     "Celeb-synthesis/id4_id4_0000", "YouTube-real/00001", "original/071",
                     "Deepfakes/071_054", "Face2Face/071_054"],
        "label": [0, 1, 1, 0, 0, 1, 1],
        "method": ["real", "Celeb-synthesis", "selfblend", "real", "original", "Deepfakes",
                   "Face2Face"],
        "target_id": [None, None, None, None, "071", "071", "071"],
        "source_id": [None, None, None, None, None, "054", "054"]})
    assert identity.shown_identity(videos).tolist() == ["id3", "id5", "id4", "", "071", "054",
                                                         "071"]
    # the demo's manifest names the face shown, also of a YouTube-real video
    demo = pd.DataFrame({"video_id": ["YouTube-real/00007", "Celeb-synthesis/id0_id5_0011"],
                         "label": [0, 1], "method": ["real", "faceswap"],
                         "identity": [3, 0], "source_identity": [3, 5]})
    assert identity.shown_identity(demo).tolist() == ["id3", "id5"]


def test_the_identity_score_is_the_nearest_identity_fake_share():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    means = np.stack([a, a + 0.1, a - 0.1 * b, b, b + 0.05])
    model = identity.fit(means, ["A", "A", "A", "B", "B"], [1, 1, 0, 0, 0])
    assert model["identities"] == ["A", "B"]
    np.testing.assert_allclose(model["fake_share"], [2 / 3, 0.0])
    score, nearest = identity.score(model, np.stack([a + 0.2 * b, b + 0.3 * a]))
    np.testing.assert_allclose(score, [2 / 3, 0.0])
    assert nearest == ["A", "B"]


def write_embeddings(run: RunPaths, videos: pd.DataFrame, centre: dict[str, np.ndarray]) -> None:
    """A stage 06 as it leaves its files: one npz per video, then the manifest."""
    rng = np.random.default_rng(2)
    for vid, who in zip(videos["video_id"], identity.shown_identity(videos)):
        target = run.embeddings_file(vid)
        target.parent.mkdir(parents=True, exist_ok=True)
        emb = centre[who] + 0.05 * rng.standard_normal((3, 4))
        np.savez(target, emb=emb.astype(np.float32), frame_idx=np.arange(3),
                 chosen=np.ones(3, bool))
    io.write_text(json.dumps({"dim": 4, "used": "random", "seed": 0}), run.embeddings_manifest)


def test_the_identity_control_writes_its_row_and_scores_by_the_training_share(tmp_path):
    # id1 shows in 3 training fakes and 1 training real (share 0.75), id2 in 1 fake and 3
    # reals (0.25); the test videos show them again, as Celeb-DF's test list does.
    names = (["Celeb-synthesis/id2_id1_%04d" % k for k in range(3)] + ["Celeb-real/id1_0009"]
             + ["Celeb-synthesis/id1_id2_0000"] + ["Celeb-real/id2_%04d" % k for k in range(3)])
    test = ["Celeb-synthesis/id2_id1_0100", "Celeb-real/id2_0100", "Celeb-real/id1_0100",
            "Celeb-synthesis/id1_id2_0100"]
    videos = pd.DataFrame({"video_id": names + test,
                           "label": [1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1],
                           "split": ["train"] * 8 + ["test"] * 4, "method": "x"})
    run = RunPaths.of("ids", str(tmp_path)).ensure()
    write_embeddings(run, videos, {"id1": np.eye(4)[0], "id2": np.eye(4)[1]})
    rows = identity.run_control(run, videos)
    assert rows["method"].tolist() == [identity.METHOD] and rows["n"].tolist() == [4]
    predictions, frames = evaluation.read_predictions(run, identity.METHOD)
    assert frames is None
    np.testing.assert_allclose(predictions["score"], [0.75, 0.25, 0.75, 0.25])
    assert predictions["nearest_identity"].tolist() == ["id1", "id2", "id1", "id2"]
    assert rows["auc"].iloc[0] == 0.5  # here identity explains nothing: each pair splits
    assert not detectors.is_detector(identity.METHOD)
    assert controls.saved_files(run, [identity.METHOD]) == [run.embeddings_manifest,
                                                            identity.model_path(run)]


def test_the_identity_control_without_embeddings_is_one_line_not_an_error(tmp_path):
    run = RunPaths.of("none", str(tmp_path)).ensure()
    videos = pd.DataFrame({"video_id": ["Celeb-real/id0_0000"], "label": [0], "split": ["test"]})
    why = identity.run_control(run, videos)
    assert isinstance(why, str) and "embed_faces" in why and "\n" not in why


def test_every_detector_faces_the_identity_control_in_comparisons_and_its_table(tmp_path):
    run = signal_run(tmp_path, {"rnn/lstm": (0.3, 0.3), "frequency/srm": (0.5, 0.6),
                                "control/colour_jerk": (0.2, 0.2),
                                "control/identity": (0.1, 0.1)})
    table = result_tables.comparisons(run)
    pairs = set(zip(table["method"], table["reference"], table["question"]))
    against = {(m, r) for m, r, q in pairs if q == result_tables.IDENTITY_QUESTION}
    assert against == {("rnn/lstm", "control/identity"), ("frequency/srm", "control/identity")}
    # the temporal detector still faces the temporal control, never the identity one as such
    assert ("rnn/lstm", "control/colour_jerk",
            "temporal model vs the training-free temporal control") in pairs
    results = evaluation.results_table(run)
    ids = result_tables.identity_table(results, table)
    assert ids["method"].tolist() == ["frequency/srm", "rnn/lstm"]  # by AUC
    video = results[results["level"] == "video"].set_index("method")
    assert (ids["identity_auc"] == video.loc["control/identity", "auc"]).all()
    np.testing.assert_allclose(ids["delta_auc"], ids["auc"] - ids["identity_auc"], atol=1e-5)
    guide = html_report.identity_guide(results, "celebdf")
    assert "control/identity" in guide and "test identities appear in training" in guide
    assert "appear in training" not in html_report.identity_guide(results, "ffpp")
    # the demo is split as Celeb-DF is (its layout and test list): the note stands for it too
    assert "(the demo's split does the same)" in html_report.identity_guide(results, "demo")
    assert html_report.identity_guide(results[results["method"] != "control/identity"],
                                      "celebdf") == ""
    assert result_tables.identity_table(results, table.iloc[:0]).empty
    assert result_tables.identity_table(pd.DataFrame(), pd.DataFrame()).empty  # nothing scored
