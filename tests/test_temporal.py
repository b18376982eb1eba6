"""Temporal detectors: clip sampling and its short-video rule, 3D CNNs, masked recurrent
heads, save/reload, one training step each, and both stages end to end on a tiny run."""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from dflib import detectors, embeddings, evaluation, io, statistics, vocabulary
from dflib.detectors.models import clips, cnn, cnn_features, cnn_training, sequences
from dflib.face_store import FaceStore
from dflib.paths import RunPaths
from sklearn.metrics import roc_auc_score

RNG = np.random.default_rng(0)
SIZE = 24  # stored face side in these tests


class DictStore:
    """A face store in memory: ``video_id -> (faces, frame_idx)``."""

    def __init__(self, videos: dict[str, np.ndarray]) -> None:
        self.videos = videos

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        faces = self.videos[video_id]
        return faces, np.arange(len(faces)) * 3  # frame indices differ from positions


def faces(n: int, size: int = SIZE) -> np.ndarray:
    return RNG.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def index(counts: dict[str, tuple[int, str, int]]) -> pd.DataFrame:
    """``video_id -> (label, split, n_faces)`` as an index with face counts."""
    return pd.DataFrame([{"video_id": v, "label": lab, "split": s, "n_faces": n}
                         for v, (lab, s, n) in counts.items()])


# --------------------------------------------------------------------------- clips

@pytest.mark.parametrize("n, clip_len, expected", [
    (16, 8, [[*range(8)], [*range(8, 16)]]),
    (20, 8, [[*range(8)], [*range(8, 16)], [*range(12, 20)]]),  # last window ends on face 19
    (8, 8, [[*range(8)]]),
    (5, 8, [[0, 1, 2, 3, 4, 4, 4, 4]]),  # short: the last face repeated
    (1, 4, [[0, 0, 0, 0]]),
])
def test_clip_windows_rule(n, clip_len, expected):
    np.testing.assert_array_equal(clips.clip_windows(n, clip_len), expected)


def test_clip_windows_of_a_video_without_faces_is_empty_and_bad_input_raises():
    assert clips.clip_windows(0, 8).shape == (0, 8)
    with pytest.raises(ValueError):
        clips.clip_windows(3, 0)


def test_resize_shape_scales_c3d_frame_size():
    assert clips.resize_shape(112) == (128, 171)
    assert clips.resize_shape(56) == (64, 86)


def test_prepare_clip_crops_and_flips_every_frame_alike():
    frame = faces(1)[0]
    clip = np.repeat(frame[None], 4, axis=0)
    for seed in range(6):  # some seeds flip, some do not: frames must stay identical
        out = clips.prepare_clip(clip, 16, np.random.default_rng(seed))
        assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
        assert all(np.array_equal(out[0], out[t]) for t in range(4))
    centre = clips.prepare_clip(clip, 16)
    np.testing.assert_array_equal(centre, clips.prepare_clip(clip, 16))


def test_clip_batches_pad_short_videos_and_skip_videos_without_faces():
    store = DictStore({"long": faces(9), "short": faces(3), "none": faces(0)})
    videos = index({"long": (1, "test", 9), "short": (0, "test", 3), "none": (0, "test", 0)})
    data = clips.ClipBatches(store, videos, clip_len=4, clip_size=16, batch_size=8)
    assert data.n_samples == 4  # long: 3 windows (0-3, 4-7, 5-8); short: 1 padded
    x, y = data[0]
    assert x.shape == (4, 4, 16, 16, 3)
    keys = data.keys(0)
    short = keys[keys["video_id"] == "short"]
    assert len(short) == 1 and bool(short["padded"].iloc[0])
    assert not keys.loc[keys["video_id"] == "long", "padded"].any()
    clip = x[keys.index[keys["video_id"] == "short"][0]]
    np.testing.assert_array_equal(clip[2], clip[3])  # the last face repeated
    assert list(keys.loc[keys["video_id"] == "long", "frame_idx"]) == [0, 12, 15]


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("name", vocabulary.CLIP_MODELS)
def test_clip_models_output_a_softmax_and_take_short_tiny_clips(name):
    model = clips.build_clip_model(name, clip_len=4, clip_size=16)
    out = model.predict(np.zeros((2, 4, 16, 16, 3), np.float32), verbose=0)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_c3d_has_the_classic_layout():
    model = clips.build_c3d(16, 112)
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]
    assert [model.get_layer(f"fc{i}").units for i in (6, 7)] == [2048, 2048]
    assert model.get_layer("pool1").pool_size == (1, 2, 2)
    assert model.get_layer("flatten").output.shape[-1] == 512 * 1 * 4 * 4


def sequence(length: int, dim: int = 8) -> np.ndarray:
    return RNG.normal(size=(length, dim)).astype(np.float32)


@pytest.mark.parametrize("head", vocabulary.RNN_HEADS)
def test_padding_does_not_change_a_heads_score(head):
    model = sequences.build_head(head, feature_dim=8)
    video = sequence(5)
    scores = []
    for seq_len in (5, 7, 12):
        x, lengths = cnn_features.pad_sequences([video], seq_len, feature_dim=8)
        x[0, 5:] = 1e3  # whatever padding holds must not matter
        s = cnn_features.Sequences(np.array(["v"]), np.array([1]), x, lengths)
        out = model.predict(s.inputs, verbose=0)
        assert out.shape == (1, 2)
        scores.append(out[0, 1])
    np.testing.assert_allclose(scores, scores[0], rtol=1e-5, atol=1e-6)


def test_temporal_max_ignores_masked_steps_even_when_they_hold_large_values():
    x = np.array([[[1.0, -2.0], [3.0, -1.0], [1e6, 1e6]]], np.float32)
    mask = np.array([[True, True, False]])
    out = keras.ops.convert_to_numpy(cnn.MaskedTemporalMax()(x, mask=mask))
    np.testing.assert_array_equal(out, [[3.0, -1.0]])
    nothing = keras.ops.convert_to_numpy(cnn.MaskedTemporalMax()(x, mask=~mask & False))
    np.testing.assert_array_equal(nothing, [[0.0, 0.0]])


def test_conv3d_diff_sees_only_how_coarse_faces_change():
    model = clips.build_clip_model("conv3d_diff", clip_len=4, clip_size=16)
    assert model.get_layer("cells").output.shape[1:] == (4, 4, 4, 3)  # DIFF_GRID cells
    assert model.get_layer("differences").output.shape[1:] == (3, 4, 4, 3)
    clip = RNG.uniform(0, 255, (1, 4, 16, 16, 3)).astype(np.float32)
    brighter = np.clip(clip + 40, 0, 255)  # the same change over time, another appearance
    still = np.repeat(clip[:, :1], 4, axis=1)
    out = model.predict(np.concatenate([clip, clip[:, :, ::-1]]), verbose=0)
    assert not np.allclose(out[0], out[1])  # it does read the faces
    np.testing.assert_allclose(model.predict(still, verbose=0),
                               model.predict(np.repeat(brighter[:, :1], 4, axis=1), verbose=0),
                               rtol=1e-5)  # a still clip is a still clip, whatever it shows
    # light changing over the whole face is removed: only a region against the rest counts
    dimming = still - np.arange(4, dtype=np.float32)[None, :, None, None, None] * 10
    np.testing.assert_allclose(model.predict(dimming, verbose=0),
                               model.predict(still, verbose=0), rtol=1e-5)
    inner = still.copy()
    inner[:, 1:3, 4:12, 4:12] += 30  # the centre brightens in two frames
    assert not np.allclose(model.predict(inner, verbose=0), model.predict(still, verbose=0))
    with pytest.raises(ValueError, match="clip_len"):
        clips.build_clip_model("conv3d_diff", clip_len=1, clip_size=16)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="clip model"):
        clips.build_clip_model("i3d", 4, 16)
    with pytest.raises(ValueError, match="recurrent head"):
        sequences.build_head("transformer")


def test_save_and_reload_give_identical_predictions(tmp_path):
    head = sequences.build_head("temporal_max", feature_dim=8)
    x, lengths = cnn_features.pad_sequences([sequence(3), sequence(6)], 6, feature_dim=8)
    inputs = cnn_features.Sequences(np.array(["a", "b"]), np.array([0, 1]), x, lengths).inputs
    clip_batch = RNG.uniform(0, 255, (2, 4, 16, 16, 3)).astype(np.float32)
    for model, x in ((head, inputs), (clips.build_clip_model("conv3d_light", 4, 16), clip_batch),
                     (clips.build_clip_model("conv3d_diff", 4, 16), clip_batch)):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        np.testing.assert_array_equal(cnn.load_model(path).predict(x, verbose=0),
                                      model.predict(x, verbose=0))


@pytest.mark.parametrize("name", [*vocabulary.CLIP_MODELS, *vocabulary.RNN_HEADS])
def test_one_training_step_of_each_model(name):
    if name in vocabulary.CLIP_MODELS:
        model = clips.build_clip_model(name, 4, 16)
        x = RNG.uniform(0, 255, (2, 4, 16, 16, 3)).astype(np.float32)
        optimizer = keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True)
    else:
        model = sequences.build_head(name, feature_dim=8)
        feats, lengths = cnn_features.pad_sequences([sequence(2), sequence(4)], 4, feature_dim=8)
        x = cnn_features.Sequences(np.array(["a", "b"]), np.array([0, 1]), feats, lengths).inputs
        optimizer = keras.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    loss = model.train_on_batch(x, np.array([0, 1]))
    assert np.isfinite(loss)


# --------------------------------------------------------------------------- stages

COUNTS = {
    **{f"tr{i}": (i % 2, "train", 6) for i in range(6)},
    "va0": (0, "val", 6), "va1": (1, "val", 6),
    "te_long": (1, "test", 6), "te_real": (0, "test", 6),
    "te_short": (1, "test", 2), "te_none": (0, "test", 0),
}


@pytest.fixture()
def tiny_run(tmp_path):
    """A run folder whose face store holds the COUNTS videos (store files included)."""
    run = RunPaths(tmp_path / "run").ensure()
    arrays = {v: faces(n, 32) for v, (_, _, n) in COUNTS.items()}
    for vid, f in arrays.items():
        io.write_npz(run.face_file(vid), faces=f, frame_idx=np.arange(len(f)) * 3,
                     config=np.array("faces-v1"))
    return run, DictStore(arrays), index(COUNTS)


CLIP_SECTION = {"models": ["conv3d_light"], "clip_len": 4, "clip_size": 16, "epochs": 1,
                "batch_size": 4, "optimizer": "sgd", "learning_rate": 0.005, "momentum": 0.9,
                "patience": 1, "dropout": 0.5, "class_weight": True,
                "bn_recalibration_batches": 2, "keep_epoch": "best"}
SHARED = {"seed": 0, "img_size": 32}


def test_clip_stage_keeps_every_test_video_and_skips_finished_models(tiny_run):
    run, store, videos = tiny_run
    result = clips.train_clip_models(store, videos, run, SHARED, CLIP_SECTION, verbose=0)
    rows = result.predictions["conv3d_light"].set_index("video_id")
    assert set(rows.index) == {"te_long", "te_real", "te_short", "te_none"}
    assert rows.loc["te_none", "status"] == statistics.STATUS_NO_FACE
    assert bool(rows.loc["te_short", "padded"]) and rows.loc["te_short", "n_samples"] == 1
    assert rows.loc["te_long", "n_samples"] == 2 and rows.loc["te_long", "n_frames"] == 6
    table = evaluation.results_table(run)
    assert list(table.loc[table["method"] == "conv3d_light", "level"]) == ["video"]
    assert set(result.logs) == {"conv3d_light"}
    model_file = run.root / result.records["conv3d_light"].model
    stamp = model_file.stat().st_mtime_ns
    again = clips.train_clip_models(store, videos, run, SHARED, CLIP_SECTION, verbose=0)
    assert model_file.stat().st_mtime_ns == stamp  # not retrained
    pd.testing.assert_frame_equal(again.predictions["conv3d_light"], result.predictions["conv3d_light"])


def test_a_changed_split_retrains_the_clip_model_and_says_why(tiny_run, capsys):
    run, store, videos = tiny_run
    first = clips.train_clip_models(store, videos, run, SHARED, CLIP_SECTION, verbose=0)
    assert set(first.records["conv3d_light"].made_from["inputs"]["train"]) == {
        f"tr{i}" for i in range(6)}
    moved = videos.assign(split=np.where(videos["video_id"] == "tr0", "test", videos["split"]))
    capsys.readouterr()
    again = clips.train_clip_models(store, moved, run, SHARED, CLIP_SECTION, verbose=0)
    assert "conv3d_light: trained on other videos (1 removed), retraining" in capsys.readouterr().out
    assert "tr0" not in again.records["conv3d_light"].made_from["inputs"]["train"]
    assert "tr0" in set(again.predictions["conv3d_light"]["video_id"])


def test_rnn_stage_extracts_features_once_and_keeps_every_test_video(tiny_run):
    run, store, videos = tiny_run
    # A stand-in frame CNN with the contract's layer names (a real backbone is slow here).
    inputs = keras.Input((32, 32, 3))
    feats = keras.layers.Dense(cnn_features.FEATURE_DIM, activation="relu", name=cnn.FEATURES_LAYER)(
        keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax",
                                                   name=cnn.PREDICTIONS_LAYER)(feats))
    folder = run.models / "cnn" / "ef0"
    folder.mkdir(parents=True)
    model.save(folder / "chunk0.keras")
    train = videos[videos["split"] == "train"]
    chunk0 = cnn_training.balanced_chunks(train, cnn_training.n_chunks(train, 3), 0)[0]
    assert 0 < len(chunk0) < len(train)
    io.write_text(json.dumps({"arch": "ef0", "complete": True, "finished_at": 1.0,
                              "config": {"chunks": 3, "seed": 0},
                              "chunk_models": [{"model": "models/cnn/ef0/chunk0.keras",
                                                "n_videos": len(chunk0)}]}),
                  folder / "manifest.json")
    section = {"models": ["lstm"], "seq_len": 4, "epochs": 1, "batch_size": 4,
               "learning_rate": 1e-3, "patience": 1, "dropout": 0.5, "l2": 1e-3,
               "class_weight": True, "inputs": "cnn"}
    result = sequences.train_heads(store, videos, run, SHARED, section, verbose=0)
    assert set(result.features["status"]) == {"extracted"}
    with np.load(run.sequence_features_dir("ef0") / "tr0.npz") as z:
        assert z["features"].shape == (4, cnn_features.FEATURE_DIM)  # the first seq_len faces
    assert result.methods == ["rnn/lstm"]
    # the heads train on chunk 0's videos only: the CNN saw every one of them
    assert result.records["rnn/lstm"].n_train == len(chunk0)
    rows = result.predictions["rnn/lstm"].set_index("video_id")
    assert rows.loc["te_none", "status"] == statistics.STATUS_NO_FACE
    assert rows.loc["te_short", "n_frames"] == 2 and rows.loc["te_long", "n_frames"] == 4
    again = sequences.train_heads(store, videos, run, SHARED, section, verbose=0)
    assert set(again.features["status"]) == {"skipped"}
    pd.testing.assert_frame_equal(again.predictions["rnn/lstm"], result.predictions["rnn/lstm"])


def test_profile_choices_match_the_models_built_here():
    from dflib import config

    assert config.STAGE_BY_NAME["train_c3d"].fields["models"].choices == vocabulary.CLIP_MODELS
    assert config.STAGE_BY_NAME["train_rnn"].fields["models"].choices == vocabulary.RNN_HEADS


def test_clip_counts_follow_the_short_video_rule():
    videos = pd.DataFrame({"split": ["train", "train", "test"], "label": [0, 1, 1],
                           "n_faces": [20, 3, 0]})
    counts = clips.clip_counts(videos, clip_len=8)
    assert counts.loc[("train", 0)].tolist() == [20, len(clips.clip_windows(20, 8)), 0, 0]
    assert counts.loc[("train", 1)].tolist() == [3, 1, 1, 0]
    assert counts.loc[("test", 1)].tolist() == [0, 0, 0, 1]


def test_conv3d_is_the_original_studys_conv3d_model():
    model = clips.build_clip_model("conv3d", 16, 112)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    assert [c.filters for c in convs] == [64, 128, 128, 256, 256]
    # The script's input is time x height x width, as here: (2, 2, 1) halves time and height.
    assert model.get_layer("pool1").pool_size == (2, 2, 1)
    assert model.get_layer("pool1").output.shape[1:4] == (8, 56, 112)
    assert [model.get_layer(f"fc{i}").units for i in (1, 2)] == [2048, 2048]
    assert all(float(layer.kernel_regularizer.l2) == pytest.approx(5e-3)
               for layer in (*convs, model.get_layer("fc1"), model.get_layer("fc2")))
    light = clips.build_clip_model("conv3d_light", 16, 112)
    assert light.count_params() < model.count_params() / 20


# --------------------------------------------------------------------------- issue 27

def stand_in_cnn(folder, name: str, seed: int) -> None:
    """A frame CNN with the contract's layer names (a real backbone is slow here)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    feats = keras.layers.Dense(cnn_features.FEATURE_DIM, activation="relu",
                               name=cnn.FEATURES_LAYER)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(
        feats)).save(folder / f"{name}.keras")


def test_heads_read_the_chunk_chosen_on_validation_and_the_baseline_trains(tiny_run):
    run, store, videos = tiny_run
    folder = run.models / "cnn" / "ef0"
    folder.mkdir(parents=True)
    train = videos[videos["split"] == "train"]
    parts = cnn_training.balanced_chunks(train, cnn_training.n_chunks(train, 2), 0)
    for i in range(2):
        stand_in_cnn(folder, f"chunk{i}", i)
    io.write_text(json.dumps({"arch": "ef0", "complete": True, "finished_at": 1.0,
                              "config": {"chunks": 2, "seed": 0},
                              "chunk_models": [{"model": f"models/cnn/ef0/chunk{i}.keras",
                                                "n_videos": len(parts[i])} for i in range(2)]}),
                  folder / "manifest.json")
    # chunk 1 ranks the validation videos right, chunk 0 wrong; on test the other way round
    for method, val_scores in (("cnn/ef0", [0.9, 0.1]), ("cnn/ef0/chunk1", [0.1, 0.9])):
        for split, ids, scores in (("val", ["va0", "va1"], val_scores),
                                   ("test", ["te_real", "te_long"], val_scores[::-1])):
            evaluation.write_predictions(run, method, pd.DataFrame({
                "video_id": ids, "label": [0, 1], "score": scores, "pred": [0, 0],
                "n_frames": 6}), split=split)
        evaluation.score_method(run, method, scoring=statistics.Scoring(resamples=0))
    section = {"models": ["lstm", "time_average"], "seq_len": 4, "epochs": 1, "batch_size": 4,
               "learning_rate": 1e-3, "patience": 1, "dropout": 0.5, "l2": 1e-3,
               "class_weight": True, "inputs": "cnn"}
    result = sequences.train_heads(store, videos, run, SHARED, section, verbose=0)
    for method in ("rnn/lstm", "rnn/time_average"):
        record = result.records[method]
        assert record.config["features"]["chunk"] == 1
        assert record.n_train == len(parts[1])
    manifest = json.loads(run.sequence_features_manifest("ef0").read_text())
    assert manifest["chunk"] == 1 and manifest["cnn_model"].endswith("chunk1.keras")
    # dflib predict checks the chunk the heads read, not chunk 0
    checked = sequences.saved_files(run, ["rnn/lstm"])
    assert folder / "chunk1.keras" in checked and folder / "chunk0.keras" not in checked
    # the stored features are chunk 1's
    extractor = cnn.feature_model(cnn.load_model(folder / "chunk1.keras"))
    expected = extractor.predict(store.load("tr0")[0][:4].astype(np.float32), verbose=0)
    with np.load(run.sequence_features_file("ef0", "tr0")) as z:
        np.testing.assert_allclose(z["features"], expected, rtol=1e-5, atol=1e-5)


def test_time_average_is_a_logistic_regression_on_the_mean_features():
    model = sequences.build_head("time_average", feature_dim=8, l2=0.0)
    x, lengths = cnn_features.pad_sequences([sequence(3)], 5, feature_dim=8)
    s = cnn_features.Sequences(np.array(["v"]), np.array([1]), x, lengths)
    w, b = model.get_layer(cnn.PREDICTIONS_LAYER).get_weights()
    logits = x[0, :3].mean(axis=0) @ w + b
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(model.predict(s.inputs, verbose=0)[0], expected, rtol=1e-5)
    weights = [len(layer.losses) for layer in sequences.build_head("lstm", 8, l2=1e-3).layers]
    assert sum(weights) >= 2  # the recurrent and the softmax kernels are penalised


def coloured_faces(colours: np.ndarray, size: int = 16) -> np.ndarray:
    """Faces whose inner half has the given mean colours over time, a border that flickers."""
    faces = np.zeros((len(colours), size, size, 3), np.uint8)
    faces[:] = np.asarray(colours, np.uint8)[:, None, None, :]
    faces[:, :2] = RNG.integers(0, 256, (len(colours), 2, size, 3))  # outside the inner half
    return faces


def test_colour_jerk_sees_per_frame_flicker_not_drift_or_borders():
    from dflib.detectors.models import controls

    steady = coloured_faces(np.full((6, 3), 120))
    drift = coloured_faces(np.linspace(100, 150, 6)[:, None].repeat(3, axis=1))
    flicker = coloured_faces(120 + np.array([0, 6, -6, 6, -6, 0])[:, None].repeat(3, axis=1))
    assert controls.colour_jerk(steady) == 0.0
    assert controls.colour_jerk(drift) == pytest.approx(0.0, abs=0.2)  # uint8 rounding
    # second differences -18, 24, -24, 18 (grey levels) on each channel: lengths times sqrt(3)
    assert controls.colour_jerk(flicker) == pytest.approx(np.sqrt(3) * 21, rel=1e-6)
    assert controls.colour_jerk(flicker[:2]) is None  # no second difference


def test_controls_are_scored_like_detectors_and_keep_every_video(tiny_run):
    from dflib.detectors.models import controls

    run, store, videos = tiny_run
    videos = videos.assign(n_faces=videos["n_faces"].where(videos["video_id"] != "te_long", 0))
    rows = controls.run_controls(store, videos, run, scoring=statistics.Scoring(resamples=0))
    assert rows["method"].tolist() == ["control/colour_jerk"]
    test, _ = evaluation.read_predictions(run, "control/colour_jerk")
    status = test.set_index("video_id")["status"]
    # te_short has 2 faces (no second difference), te_none and te_long none: the prior
    assert set(test["video_id"]) == {"te_long", "te_real", "te_short", "te_none"}
    assert status["te_real"] == "ok" and (status.drop("te_real") == "no_face").all()
    val, _ = evaluation.read_predictions(run, "control/colour_jerk", "val")
    assert len(val) == 2 and val["score"].between(0, 1).all()
    assert tuple(controls.STATISTICS) == vocabulary.TEMPORAL_CONTROLS
    assert detectors.family("control/colour_jerk") == "control"
    assert not detectors.is_detector("control/colour_jerk")
    again = controls.score_saved(run, ["control/colour_jerk"], store,
                                 videos[videos["split"] == "test"], {})
    pd.testing.assert_frame_equal(again["control/colour_jerk"][0], test,
                                  check_dtype=False, atol=1e-6)


def flicker_videos(n_per_class: int, rng: np.random.Generator, n_faces: int = 8,
                   size: int = SIZE) -> dict[str, tuple[int, np.ndarray]]:
    """Videos a frame model cannot tell apart and a clip model can: every video is one
    smooth random face-sized texture; a real video keeps one brightness offset of its
    centre (the pasted face) for all its faces, a fake draws a new one for each face
    (flicker), from the same distribution."""
    out = {}
    inner = np.zeros((size, size, 1))
    inner[size // 4:size - size // 4, size // 4:size - size // 4] = 1
    for label in (0, 1):
        for k in range(n_per_class):
            texture = cv2.resize(rng.uniform(60, 190, (4, 4, 3)), (size, size))
            offsets = rng.normal(0, 30, n_faces if label else 1)
            frames = texture[None] + np.resize(offsets, n_faces)[:, None, None, None] * inner
            out[f"{'fake' if label else 'real'}{k}"] = (label, np.clip(frames, 0, 255).astype(np.uint8))
    return out


@pytest.mark.parametrize("name", ["conv3d_diff"])
def test_the_default_clip_model_learns_a_separable_flicker_set(tmp_path, name):
    """Loss falls and the outputs spread and rank the classes: the demo's clip model, with
    the demo's optimizer, learns from scratch what no single frame shows."""
    rng = np.random.default_rng(3)
    splits = {"train": 12, "val": 3, "test": 4}
    videos, arrays = [], {}
    for split, n in splits.items():
        for vid, (label, frames) in flicker_videos(n, rng).items():
            arrays[f"{split}_{vid}"] = frames
            videos.append({"video_id": f"{split}_{vid}", "label": label, "split": split,
                           "n_faces": len(frames)})
    run = RunPaths(tmp_path / "run").ensure()
    section = {**CLIP_SECTION, "models": [name], "epochs": 12, "optimizer": "adam",
               "learning_rate": 3e-3, "batch_size": 8, "patience": 1, "keep_epoch": "last"}
    result = clips.train_clip_models(DictStore(arrays), pd.DataFrame(videos), run, SHARED,
                                     section, verbose=0)
    record = result.records[name]
    assert record.epochs_run == record.best_epoch == 12  # kept the last: no early stop
    log = result.logs[name]
    assert log["loss"].iloc[-1] < 0.7 * log["loss"].iloc[0]
    test = result.predictions[name]
    assert test["score"].std() > 0.1  # not one score for every video
    assert roc_auc_score(test["label"], test["score"]) > 0.9


def test_heads_on_face_embeddings_train_on_every_training_video_and_rescore_alike(tiny_run):
    """``inputs: embeddings``: stage embed_faces' files are made here first (dlib's network,
    offline), standardised inside the head with the training faces' statistics; the heads
    train on every training video (the network never saw them), and a saved head scores
    the same faces again exactly as it scored its test split."""
    run, store, videos = tiny_run
    io.write_csv(videos.assign(status=np.where(videos["n_faces"] > 0, "ok", "no_face"),
                               n_sampled=6, reason=""), run.faces / "summary.csv")
    section = {"models": ["gru", "time_average"], "seq_len": 4, "epochs": 1, "batch_size": 4,
               "learning_rate": 1e-3, "patience": 1, "dropout": 0.5, "l2": 1e-3,
               "class_weight": True, "inputs": "embeddings"}
    embed = {"pretrained": "dlib", "batch_size": 8, "max_faces_per_video": 0}
    settings = {"seed": 0, "img_size": 32, "device": "cpu"}
    result = sequences.train_heads(store, videos, run, settings, section, verbose=0,
                                   embed_section=embed)
    assert run.embeddings_manifest.is_file()  # stage 06 will find these files done
    record = result.records["rnn/gru"]
    assert record.config["features"]["source"] == "embeddings"
    assert record.config["features"]["weights"] == "dlib"
    assert record.n_train == 6  # every training video, not one chunk's
    model = cnn.load_model(run.root / record.model)
    vectors, frames = embeddings.load_embeddings(run, videos[videos["split"] == "train"])
    first = frames.assign(row=np.arange(len(frames))).groupby("video_id").head(4)["row"]
    np.testing.assert_allclose(np.ravel(model.get_layer("standardise").mean),
                               vectors[first].mean(axis=0), rtol=1e-4, atol=1e-5)
    rows = result.predictions["rnn/gru"].set_index("video_id")
    assert rows.loc["te_none", "status"] == statistics.STATUS_NO_FACE
    assert rows.loc["te_short", "n_frames"] == 2 and rows.loc["te_long", "n_frames"] == 4
    assert run.embeddings_manifest in sequences.saved_files(run, ["rnn/gru"])
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    again, _ = sequences.score_saved(run, ["rnn/gru"], FaceStore(run), test,
                                     {"embed_faces": embed, "device": "cpu"})["rnn/gru"]
    np.testing.assert_allclose(again.set_index("video_id").loc[rows.index, "score"],
                               rows["score"], rtol=1e-5)
    stamp = (run.root / record.model).stat().st_mtime_ns
    sequences.train_heads(store, videos, run, settings, section, verbose=0, embed_section=embed)
    assert (run.root / record.model).stat().st_mtime_ns == stamp  # same features: reused
