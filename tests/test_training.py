"""Training data and chunks: streaming from a face store, splits, balanced chunks, and a
tiny end-to-end train/resume/evaluate run on a face store written in the store format."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dflib import config, evaluation, face_store, io, plots, stages
from dflib.detectors.models import batches, cnn, cnn_training, fitting
from dflib.detectors.models.cnn_training_fields import TRAIN_CNN
from dflib.fields import defaults
from dflib.paths import RunPaths

SIZE = 32


def video_table(n_real: int, n_fake: int, split: str = "train", faces_each: int = 3,
                prefix: str = "") -> pd.DataFrame:
    rows = [{"video_id": f"{prefix}{split}_{'fake' if y else 'real'}{i}", "label": y,
             "split": split, "n_faces": faces_each}
            for y, n in ((0, n_real), (1, n_fake)) for i in range(n)]
    return pd.DataFrame(rows)


class MemoryStore:
    """A face store in memory that counts reads; face pixels encode (video, face)."""

    def __init__(self, videos: pd.DataFrame) -> None:
        self.n = dict(zip(videos["video_id"], videos["n_faces"]))
        self.code = {v: i for i, v in enumerate(videos["video_id"])}
        self.reads: list[str] = []

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        self.reads.append(video_id)
        k = self.n[video_id]
        x = np.zeros((k, 4, 4, 3), np.uint8)
        x[..., 0] = self.code[video_id]
        x[..., 1] = np.arange(k)[:, None, None]
        return x, np.arange(k) * 10


# --------------------------------------------------------------------------- chunks

@pytest.mark.parametrize("n_real,n_fake,chunks,k", [(3, 10, 0, 3), (3, 20, 0, 6), (4, 4, 0, 1),
                                                     (10, 3, 0, 3), (3, 10, 1, 1),
                                                     (3, 10, 5, 5), (3, 2, 7, 3)])
def test_number_of_chunks(n_real, n_fake, chunks, k):
    assert cnn_training.n_chunks(video_table(n_real, n_fake), chunks) == k


def test_a_missing_class_is_refused():
    with pytest.raises(ValueError, match="no real videos"):
        cnn_training.n_chunks(video_table(0, 5), 0)


@pytest.mark.parametrize("n_real,n_fake,k", [(3, 10, 3), (10, 3, 3), (5, 5, 1), (2, 9, 4)])
def test_balanced_chunks_are_disjoint_covering_and_keep_all_minority(n_real, n_fake, k):
    videos = video_table(n_real, n_fake)
    major = 1 if n_fake >= n_real else 0
    parts = cnn_training.balanced_chunks(videos, k, seed=0)
    assert len(parts) == k
    minority = set(videos.loc[videos["label"] != major, "video_id"])
    slices = [set(p.loc[p["label"] == major, "video_id"]) for p in parts]
    for p, s in zip(parts, slices):
        assert set(p.loc[p["label"] != major, "video_id"]) == minority
        assert len(s) in (max(n_real, n_fake) // k, -(-max(n_real, n_fake) // k))
    assert set().union(*slices) == set(videos.loc[videos["label"] == major, "video_id"])
    assert sum(map(len, slices)) == max(n_real, n_fake)  # disjoint
    again = cnn_training.balanced_chunks(videos, k, seed=0)
    assert all(a.equals(b) for a, b in zip(parts, again))


def test_class_weights_balance_the_faces():
    w = fitting.class_weights(video_table(2, 6))
    assert w[0] * 6 == pytest.approx(w[1] * 18)  # 6 real faces, 18 fake faces
    assert w[0] == pytest.approx(24 / 12)


def test_a_balanced_validation_loss_weighs_each_class_alike():
    """Validation faces 1 real : 3 fake. A model that calls every face fake with
    probability 0.8 scores an unweighted loss of (ln 5 + 3 ln 1.25) / 4 = 0.57, below the
    ln 2 of knowing nothing; weighted by ``balanced_validation`` its loss is the mean of
    the two classes' mean losses, 0.92: leaning towards the majority no longer pays."""
    val = video_table(2, 6, "val", faces_each=2)
    store = MemoryStore(val)
    inputs = keras.Input((4, 4, 3))
    flat = keras.layers.Flatten()(inputs)
    leaning = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(
                                     [0.0, np.log(4.0)]))(flat)
    model = keras.Model(inputs, leaning)
    model.compile(loss="sparse_categorical_crossentropy")
    plain = cnn_training._validation_batches(store, val, _config(balanced_validation=False))
    balanced = cnn_training._validation_batches(store, val, _config(balanced_validation=True))
    assert len(plain[0]) == 2 and len(balanced[0]) == 3  # faces, labels (, weights)
    unweighted = model.evaluate(plain, verbose=0)
    weighted = model.evaluate(balanced, verbose=0)
    assert unweighted == pytest.approx((np.log(5) + 3 * np.log(1.25)) / 4, abs=1e-4)
    assert weighted == pytest.approx((np.log(5) + np.log(1.25)) / 2, abs=1e-4)
    assert cnn_training._validation_batches(store, val.assign(n_faces=0), _config()) is None


def _config(**changes: object) -> cnn_training.TrainConfig:
    """A train_cnn configuration of the field defaults, all 16 faces in one batch."""
    section = {**defaults(TRAIN_CNN), "batch_size": 16, **changes}
    return cnn_training.TrainConfig.from_sections({"img_size": 4, "seed": 0}, section)


def test_no_video_on_both_sides_of_the_split():
    videos = pd.concat([video_table(2, 3, "train"), video_table(1, 2, "val"),
                        video_table(1, 1, "test")], ignore_index=True)
    train, val = cnn_training.split_videos(videos)
    assert not set(train["video_id"]) & set(val["video_id"])
    assert set(train["split"]) == {"train"} and set(val["split"]) == {"val"}
    store = MemoryStore(videos)
    train_seen, val_seen = (
        {v for i in range(len(ds)) for v in ds.keys(i)["video_id"]}
        for ds in (batches.FaceBatches(store, train, 4), batches.FaceBatches(store, val, 4)))
    assert not train_seen & val_seen
    clash = pd.concat([videos, videos.iloc[[0]].assign(split="val")], ignore_index=True)
    with pytest.raises(ValueError, match="both the train and val"):
        cnn_training.split_videos(clash)


# --------------------------------------------------------------------------- streaming

def test_batches_have_the_right_shapes_labels_and_cover_each_face_once():
    videos = pd.concat([video_table(3, 5, faces_each=3),
                        video_table(1, 0, faces_each=0, prefix="empty_")], ignore_index=True)
    store = MemoryStore(videos)
    ds = batches.FaceBatches(store, videos, batch_size=5, shuffle=True, seed=1, cache_videos=2)
    assert ds.n_samples == 24 and len(ds) == 5
    seen = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == np.float32 and x.shape[1:] == (4, 4, 3) and len(x) == len(y)
        assert len(x) == (5 if i < 4 else 4)
        keys = ds.keys(i)
        for img, label, (vid, frame) in zip(x, y, keys[["video_id", "frame_idx"]].to_numpy()):
            assert img[0, 0, 0] == store.code[vid] and img[0, 0, 1] * 10 == frame
            assert label == int("fake" in vid)
        seen += list(zip(keys["video_id"], keys["frame_idx"]))
        assert len(ds._cache) <= 2  # bounded, whatever the number of faces
    assert len(seen) == len(set(seen)) == 24
    assert "empty_train_real0" not in store.reads
    np.testing.assert_array_equal(np.sort(ds.face_labels), np.sort([0] * 9 + [1] * 15))


def test_shuffle_windows_read_each_video_once_per_epoch_and_reshuffle():
    videos = video_table(6, 6, faces_each=4)
    store = MemoryStore(videos)
    ds = batches.FaceBatches(store, videos, batch_size=8, shuffle=True, seed=3, cache_videos=3)
    first = pd.concat([ds.keys(i) for i in range(len(ds))])
    assert len(store.reads) == 12 and len(set(store.reads)) == 12
    ds.on_epoch_end()
    second = pd.concat([ds.keys(i) for i in range(len(ds))])
    assert not first.reset_index(drop=True).equals(second.reset_index(drop=True))
    same = batches.FaceBatches(MemoryStore(videos), videos, 8, shuffle=True, seed=3,
                               cache_videos=3)
    assert first.reset_index(drop=True).equals(
        pd.concat([same.keys(i) for i in range(len(same))]).reset_index(drop=True))


def test_unshuffled_order_and_a_face_subset():
    videos = video_table(2, 2, faces_each=5)
    ds = batches.FaceBatches(MemoryStore(videos), videos, batch_size=6)
    keys = pd.concat([ds.keys(i) for i in range(len(ds))], ignore_index=True)
    assert list(keys["video_id"]) == [v for v in videos["video_id"] for _ in range(5)]
    sub = batches.FaceBatches(MemoryStore(videos), videos, batch_size=6, max_faces=7, seed=0)
    assert sub.n_samples == 7 and len(sub.face_labels) == 7
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_a_store_that_disagrees_with_the_summary_is_an_error():
    videos = video_table(1, 1, faces_each=3)
    ds = batches.FaceBatches(MemoryStore(videos.assign(n_faces=2)), videos, batch_size=4)
    with pytest.raises(ValueError, match="summary says 3"):
        ds[0]


def test_augmentation_keeps_shape_and_dtype_changes_pixels_and_is_seeded():
    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    aug = batches.PAPER_AUGMENTATION
    a = aug(x, np.random.default_rng(5))
    b = aug(x, np.random.default_rng(5))
    assert a.shape == x.shape and a.dtype == x.dtype and not np.array_equal(a, x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(aug(x, np.random.default_rng(6)), a)


def test_augmentation_transforms_are_the_paper_ones():
    still = batches.Augmentation(rotation_deg=0, zoom=0, shift=0, shear=0, flip=False)
    x = np.random.default_rng(0).integers(0, 256, (3, 9, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(still(x, np.random.default_rng(0)), x)
    mirrored = batches.Augmentation(rotation_deg=0, zoom=0, shift=0, shear=0, flip=True)
    out = mirrored(x, np.random.default_rng(1))
    flips = [np.array_equal(o, f[:, ::-1]) or np.array_equal(o, f) for o, f in zip(out, x)]
    assert all(flips)
    # Every matrix keeps within the paper's ranges: |rotation| <= 30 degrees, zoom 0.85-1.15.
    m = batches.PAPER_AUGMENTATION.matrices(500, 64, np.random.default_rng(2))
    scale = np.sqrt(np.abs(np.linalg.det(m[:, :, :2])))
    assert m.shape == (500, 2, 3) and scale.min() > 0.84 and scale.max() < 1.16
    assert np.abs(m[:, :, 2] - 31.5 + m[:, :, :2] @ np.full(2, 31.5)).max() <= 0.2 * 64


def test_augmented_batches_do_not_depend_on_the_order_they_are_made_in():
    videos = video_table(2, 2, faces_each=4)
    ds = batches.FaceBatches(MemoryStore(videos), videos, batch_size=4, shuffle=True, seed=3,
                             augment=batches.PAPER_AUGMENTATION)
    forward = [ds[i][0] for i in range(len(ds))]
    backward = [ds[i][0] for i in reversed(range(len(ds)))][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- end to end

def write_run(root, videos: pd.DataFrame) -> RunPaths:
    """An index, a face store in the store format and its summary, as stages 00-01 write."""
    run = RunPaths(root / "tiny").ensure()
    rng = np.random.default_rng(0)
    rows = []
    for v in videos.itertuples():
        base = 60 + 120 * v.label  # learnable brightness, with noise
        crops = np.clip(rng.normal(base, 30, (v.n_faces, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        io.write_npz(run.face_file(v.video_id), faces=crops,
                     frame_idx=np.arange(v.n_faces) * 2)
        rows.append({"video_id": v.video_id, "label": v.label, "split": v.split,
                     "status": "ok" if v.n_faces else "no_face", "n_sampled": 4,
                     "n_faces": v.n_faces, "reason": ""})
    io.write_csv(videos.drop(columns="n_faces").assign(path="x.mp4", dataset="celebdf",
                                                       method="m", compression="c23"),
                 run.videos_csv)
    io.write_csv(pd.DataFrame(rows, columns=face_store.SUMMARY_COLUMNS), run.faces_summary_csv)
    return run


def profile_for(run: RunPaths, **train_cnn: object) -> config.Profile:
    return config.validate({
        "run_name": run.root.name, "dataset": "celebdf", "data_root": "unused",
        "outputs_dir": str(run.root.parent), "img_size": SIZE, "seed": 0,
        "train_cnn": {"arch": "ef0", "weights": "none", "epochs": 2, "batch_size": 8,
                      "patience": 1, "chunks": 0, "class_weight": True, **train_cnn},
        "evaluate_cnn": {"tsne_max_points": 12},
    }, stages=("train_cnn", "evaluate_cnn"))


def tiny_model(arch: str, img_size: int, weights: str = "none",
               dropout: float = 0.5) -> tuple[keras.Model, str]:
    """cnn.build_model's head on a one-layer backbone: tracing a real backbone's training
    step takes a minute here, and test_cnn trains every backbone family already."""
    inputs = keras.Input((img_size, img_size, 3))
    x = cnn.BackbonePreprocess("tf", name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(512, activation="relu", name=cnn.FEATURES_LAYER)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs), weights


def test_train_resume_and_evaluate_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(2, 4, "train"), video_table(1, 1, "val"),
                        video_table(2, 2, "test"),
                        video_table(0, 1, "test", faces_each=0, prefix="noface_")],
                       ignore_index=True)
    run = write_run(tmp_path, videos)
    profile = profile_for(run)

    manifest = stages.run_detector_stage(profile, "train_cnn", verbose=0)
    folder = run.models / "cnn" / "ef0"
    assert manifest["chunks"] == 2 and manifest["complete"]
    assert manifest["weights_requested"] == manifest["weights_used"] == "none"
    assert [c["weights_used"] for c in manifest["chunk_models"]] == ["none", "none"]
    assert [c["n_real"] for c in manifest["chunk_models"]] == [2, 2]
    assert [c["n_fake"] for c in manifest["chunk_models"]] == [2, 2]
    assert all(1 <= c["epochs_run"] <= 2 for c in manifest["chunk_models"])
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in folder.iterdir()) == ["chunk0.keras", "chunk1.keras",
                                                        "manifest.json"]
    assert list(pd.read_csv(run.logs / "cnn_ef0_chunk1.csv").columns) == [
        "epoch", "accuracy", "auc", "loss", "val_accuracy", "val_auc", "val_loss"]

    # A killed second chunk: its final model is gone and a partial file is left behind.
    (folder / "chunk1.keras").unlink()
    (folder / "chunk1.inprogress.keras").write_bytes(b"truncated")
    mtime0 = (folder / "chunk0.keras").stat().st_mtime_ns
    capsys.readouterr()
    again = stages.run_detector_stage(profile, "train_cnn", verbose=0)
    assert "chunk 0: chunk0.keras exists, skipped" in capsys.readouterr().out
    assert (folder / "chunk0.keras").stat().st_mtime_ns == mtime0
    assert (folder / "chunk1.keras").exists() and not (folder / "chunk1.inprogress.keras").exists()
    assert again["chunk_models"][0] == manifest["chunk_models"][0]
    assert again["finished_at"] > manifest["finished_at"]  # chunk 1 was trained again
    # Nothing left to train: the training is the same one, so what reads it is kept too.
    assert stages.run_detector_stage(profile, "train_cnn", verbose=0)["finished_at"] == again["finished_at"]

    result = stages.run_detector_stage(profile, "evaluate_cnn")
    assert result.methods == ["cnn/ef0", "cnn/ef0/chunk1", "cnn/ef0/boosted",
                              "cnn/ef0/boosted_mean"]
    table = evaluation.results_table(run)
    assert sorted(set(table["method"])) == sorted(result.methods)
    assert set(table["level"]) == {"frame", "video"}
    for method in result.methods:
        vids, frames = evaluation.read_predictions(run, method)
        assert len(vids) == 5 and len(frames) == 12
        noface = vids.set_index("video_id").loc["noface_test_fake0"]
        assert noface["status"] == "no_face" and noface["n_frames"] == 0
    assert table.loc[table["level"] == "video", "n_no_face"].eq(1).all()
    assert result.tsne_before.shape == result.tsne_after.shape == (12, 512)
    assert len(result.tsne_labels) == 12
    assert not np.allclose(result.tsne_before, result.tsne_after)

    # The notebooks' figures, from these artifacts.
    preds = {m: evaluation.read_predictions(run, m)[0] for m in result.methods}
    figures = [plots.training_curves_figure(cnn_training.training_logs(run, again)),
               plots.roc_figure(preds), plots.confusion_figure(preds),
               plots.tsne_figure(result.tsne_before, result.tsne_after, result.tsne_labels),
               plots.tsne_figure(result.tsne_before[:3], result.tsne_after[:3],
                                 result.tsne_labels[:3])]
    for i, fig in enumerate(figures):
        assert plots.save_fig(fig, run, f"fig_{i}").stat().st_size > 0
    assert len(figures[2].axes) == 4


def test_same_seed_same_models(tmp_path, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(2, 2, "train"), video_table(1, 1, "val")], ignore_index=True)
    weights = []
    for name in ("a", "b"):
        run = write_run(tmp_path / name, videos)
        stages.run_detector_stage(profile_for(run), "train_cnn", verbose=0)
        model = cnn.load_model(run.models / "cnn" / "ef0" / "chunk0.keras")
        weights.append(model.get_weights())
    for wa, wb in zip(*weights):
        np.testing.assert_array_equal(wa, wb)


def test_a_changed_split_retrains_and_no_model_trained_on_a_test_video_is_scored(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(2, 4, "train"), video_table(1, 1, "val"),
                        video_table(1, 1, "test")], ignore_index=True)
    run = write_run(tmp_path, videos)
    profile = profile_for(run)
    first = stages.run_detector_stage(profile, "train_cnn", verbose=0)
    assert all(set(c["made_from"]["inputs"]["train"]) <= set(videos.loc[videos["split"] == "train",
                                                                          "video_id"])
               for c in first["chunk_models"])

    # A new split file moves two training videos (a real one, a fake one) into test.
    moved = ["train_real0", "train_fake0"]
    index = pd.read_csv(run.videos_csv, keep_default_na=False)
    index.loc[index["video_id"].isin(moved), "split"] = "test"
    io.write_csv(index, run.videos_csv)
    with pytest.raises(ValueError, match="chunk 0 was trained on .* now in the test split"):
        stages.run_detector_stage(profile, "evaluate_cnn")  # the old models must not score their training videos

    capsys.readouterr()
    second = stages.run_detector_stage(profile, "train_cnn", verbose=0)
    out = capsys.readouterr().out
    assert "exists, skipped" not in out
    assert "chunk 0: trained on other videos (" in out and ", retraining" in out
    test_ids = set(index.loc[index["split"] == "test", "video_id"])
    for chunk in second["chunk_models"]:
        read = set(chunk["made_from"]["inputs"]["train"]) | set(chunk["made_from"]["inputs"]["val"])
        assert not read & test_ids
    result = stages.run_detector_stage(profile, "evaluate_cnn")
    vids, _ = evaluation.read_predictions(run, result.methods[0])
    assert set(moved) <= set(vids["video_id"])

    # The same split again: nothing retrains; another val_fraction-like change (a val
    # video moved to train) retrains and says so.
    capsys.readouterr()
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    assert "chunk 0: chunk0.keras exists, skipped" in capsys.readouterr().out
    index.loc[index["video_id"] == "val_real0", "split"] = "train"
    io.write_csv(index, run.videos_csv)
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    assert "moved to another split" in capsys.readouterr().out


class DrawsFromPythonRandom(keras.callbacks.Callback):
    """Moves Python's global ``random`` between epochs, as another thread of the process
    (a Dask worker's event loop) does."""

    def __init__(self, state: int) -> None:
        super().__init__()
        self.state = state

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        import random

        random.seed(self.state + epoch)


def test_a_fit_does_not_depend_on_pythons_global_random(tmp_path):
    """The batches a model trains on come in the face batches' own seeded order: the same
    seed gives the same weights whatever else draws from Python's global ``random``."""
    videos = video_table(6, 6, faces_each=2)
    trained = []
    for state in (1, 2):
        fitting.seed_everything(0)
        with fitting.private_default_seeds(0):
            model, _ = tiny_model("ef0", 4)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        data = batches.FaceBatches(MemoryStore(videos), videos, 2, shuffle=True, seed=0)
        record = fitting.FitRecord(monitor="loss")
        fitting.fit_and_save(model, tmp_path / f"m{state}.keras", tmp_path / f"m{state}.csv",
                             record, data, validation=None, epochs=3, patience=3, verbose=0,
                             first_callbacks=[DrawsFromPythonRandom(state)])
        trained.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*trained))


def test_an_auc_monitor_keeps_the_epoch_of_highest_validation_auc(tmp_path):
    """With ``monitor: val_auc`` early stopping and the checkpoint follow the fake score's
    validation AUC upwards (a loss is followed downwards): the kept epoch is the curve's
    maximum, and the saved model is that epoch's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = (x[:, 0] + rng.normal(scale=1.5, size=400) > 0).astype("int64")  # noisy labels
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Dense(16, activation="relu")(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy",
                  metrics=[fitting.FakeScoreAUC(name="auc")])
    record = fitting.FitRecord(monitor="val_auc")
    final = tmp_path / "m.keras"
    fitting.fit_and_save(model, final, tmp_path / "m.csv", record, x[:300], y=y[:300],
                         batch_size=10, validation=(x[300:], y[300:]), epochs=8, patience=8,
                         verbose=0)
    curve = pd.read_csv(tmp_path / "m.csv")["val_auc"].to_numpy()
    assert int(np.argmax(curve)) != int(np.argmin(curve))  # a curve the two modes disagree on
    assert record.best_epoch == int(np.argmax(curve)) + 1
    assert record.best_monitor == pytest.approx(curve.max())
    scores = fitting.predict_scores(keras.saving.load_model(final, compile=False), x[300:])
    assert roc_auc_score(y[300:], scores) == pytest.approx(curve.max(), abs=0.01)
    assert fitting.monitor_mode("val_loss") == "min" and fitting.monitor_mode("val_auc") == "max"


@pytest.mark.slow
def test_chunks_trained_on_two_dask_workers_match_the_sequential_training(tmp_path, monkeypatch):
    """The same chunks trained one after the other in this process and on a Dask cluster of
    two worker processes (reached by its scheduler address, as a remote cluster is): the
    same chunk models, records and prediction files, each chunk on the videos the
    sequential path gives it, bit for bit; a rerun skips them as it skips sequential ones."""
    import sys

    import cloudpickle
    from distributed import Client, LocalCluster

    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(2, 4, "train"), video_table(1, 1, "val"),
                        video_table(2, 2, "test")], ignore_index=True)
    sequential, parallel = (write_run(tmp_path / name, videos) for name in ("seq", "dask"))
    expected = stages.run_detector_stage(profile_for(sequential), "train_cnn", verbose=0)
    stages.run_detector_stage(profile_for(sequential), "evaluate_cnn")

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tiny_model, by value
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(lambda: setattr(cnn, "build_model", tiny_model))
            profile = profile_for(parallel, scheduler=cluster.scheduler_address)
            manifest = stages.run_detector_stage(profile, "train_cnn", verbose=0)
            pids = set(client.run(os.getpid).values())
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert os.getpid() not in pids and len(pids) == 2
    assert manifest["complete"] and [c["chunk"] for c in manifest["chunk_models"]] == [0, 1]
    same = ("chunk", "n_videos", "n_real", "n_fake", "n_faces", "made_from", "model", "log")
    assert [{k: c[k] for k in same} for c in manifest["chunk_models"]] == [
        {k: c[k] for k in same} for c in expected["chunk_models"]]
    stages.run_detector_stage(profile_for(parallel), "evaluate_cnn")
    for folder in ("predictions", "predictions/val"):
        names = sorted(p.name for p in (sequential.root / folder).glob("cnn__*.csv"))
        assert names and names == sorted(p.name for p in (parallel.root / folder).glob("cnn__*.csv"))
        for name in names:
            assert ((parallel.root / folder / name).read_bytes()
                    == (sequential.root / folder / name).read_bytes()), name
    for chunk in (0, 1):
        ours, theirs = (cnn.load_model(r.cnn_chunk_model("ef0", chunk)).get_weights()
                        for r in (parallel, sequential))
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), chunk
    again = stages.run_detector_stage(profile_for(parallel), "train_cnn", verbose=0)  # sequential rerun: all kept
    assert again["chunk_models"] == manifest["chunk_models"]


@pytest.mark.slow
def test_a_trained_chunk_model_separates_its_training_faces_in_inference_mode(tmp_path):
    """The real EfficientNetB0 after a few dozen steps: with Keras' moving averages alone
    its BatchNorm statistics stay near their initial values and inference mode gives every
    face the same P(fake); the recalibrated statistics are those the network trained with."""
    from sklearn.metrics import roc_auc_score

    videos = pd.concat([video_table(4, 4, "train", faces_each=6),
                        video_table(1, 1, "val", faces_each=6)], ignore_index=True)
    run = write_run(tmp_path, videos)
    profile = config.validate({
        "run_name": run.root.name, "dataset": "celebdf", "data_root": "unused",
        "outputs_dir": str(run.root.parent), "img_size": SIZE, "seed": 0,
        "train_cnn": {"arch": "ef0", "weights": "none", "epochs": 3, "batch_size": 8,
                      "patience": 3, "chunks": 1, "augment": False},
    }, stages=("train_cnn",))
    manifest = stages.run_detector_stage(profile, "train_cnn", verbose=0)
    model = cnn.load_model(run.root / manifest["chunk_models"][0]["model"])
    train = videos[videos["split"] == "train"]
    scores = cnn_training.score_faces(
        [model], batches.FaceBatches(face_store.FaceStore(run), train, 16))
    assert scores["score0"].std() > 0.05  # not one constant for every face
    # They separate (0.81 on a fresh clone here); before the fix every face scored the same.
    assert roc_auc_score(scores["label"], scores["score0"]) > 0.7


def test_every_stored_face_is_scored_and_a_frame_takes_its_most_fake_face():
    """A frame with a second face (``faces.multi_face: max``) scores as the more fake of
    the two; a frame with one face as that face; the video as the mean of its frames."""
    from dflib.predict import MemoryFaces

    dark, bright = np.full((2, 8, 8, 3), 10, np.uint8), np.full((1, 8, 8, 3), 240, np.uint8)
    store = MemoryFaces({"v": {"faces": dark, "frame_idx": np.array([0, 5]),
                               "other_faces": bright, "other_frame_idx": np.array([5])}})
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    # P(fake) = sigmoid(0.02 * mean red level - 2.5): brighter faces look more fake
    model.layers[-1].set_weights([np.array([[0, 0.02], [0, 0], [0, 0]], np.float32),
                                  np.array([0, -2.5], np.float32)])
    videos = pd.DataFrame({"video_id": ["v"], "label": [1], "n_faces": [2],
                           "n_other_faces": [1]})
    video_rows, frame_rows = cnn_training.chunk_predictions([model], "x", store, videos)["cnn/x"]
    p = 1 / (1 + np.exp(-(0.02 * np.array([10.0, 240.0]) - 2.5)))
    assert frame_rows["frame_idx"].tolist() == [0, 5]
    assert frame_rows["score"].to_numpy() == pytest.approx(p, abs=1e-5)
    assert video_rows["score"].iloc[0] == pytest.approx(p.mean(), abs=1e-5)
