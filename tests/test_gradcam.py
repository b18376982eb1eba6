"""Grad-CAM: nested and flat models, heatmap shape and range, localisation, figure, picker."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from dflib import gradcam, io
from dflib.detectors.models import cnn
from dflib.paths import RunPaths

SIZE = 24
RNG = np.random.default_rng(0)


def bright_corner(n: int) -> np.ndarray:
    """Black faces with one bright square in the top-left quadrant."""
    x = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    x[:, 2:9, 2:9] = 200
    return x


def corner_model(kind: str) -> keras.Model:
    """Positive weights, no biases: activations, and so the CAM, are non-zero only where
    the input is, and every such activation speaks for fake."""
    positive = keras.initializers.Constant(0.05)
    conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu",
                               kernel_initializer=positive, name="conv")
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    head = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=positive,
                              bias_initializer="zeros", name="predictions")
    inputs = keras.Input((SIZE, SIZE, 3))
    if kind == "flat":
        return keras.Model(inputs, head(pool(conv(inputs))))
    b_in = keras.Input((SIZE, SIZE, 3))
    backbone = keras.Model(b_in, pool(conv(b_in)), name="backbone")
    preprocess = keras.layers.Rescaling(1.0, name="preprocess")
    if kind == "sequential":
        return keras.Sequential([inputs, preprocess, backbone, head])
    return keras.Model(inputs, head(backbone(preprocess(inputs))))


@pytest.mark.parametrize("kind", ["flat", "nested", "sequential"])
def test_heatmap_lights_up_the_region_the_prediction_depends_on(kind):
    model = corner_model(kind)
    assert gradcam.find_conv_layer(model)[1].name == "conv"
    heat, scores = gradcam.gradcam(model, bright_corner(3))
    assert heat.shape == (3, SIZE, SIZE) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert heat[:, :11, :11].mean() > 5 * heat[:, 14:, 14:].mean()
    np.testing.assert_allclose(scores, model.predict(bright_corner(3), verbose=0)[:, 0],
                               atol=1e-5)


@pytest.fixture(scope="module")
def ef0_model():
    model, _ = cnn.build_model("ef0", 64, "none")
    return model


def test_dflib_cnn_nested_backbone_saved_and_loaded(ef0_model, tmp_path):
    path = tmp_path / "chunk0.keras"
    ef0_model.save(path)
    model = cnn.load_model(path)
    base, layer = gradcam.find_conv_layer(model)
    assert base is not None and base.name == "efficientnetb0" and layer.name == "top_activation"
    x = RNG.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    heat, scores = gradcam.gradcam(model, x, batch_size=2)
    assert heat.shape == (5, 64, 64)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    np.testing.assert_allclose(scores, model.predict(x.astype("float32"), verbose=0)[:, 1],
                               atol=1e-4)
    # An earlier backbone layer by name gives a finer map of the same faces.
    heat_mid, _ = gradcam.gradcam(model, x[:2], layer_name="block6a_expand_activation")
    assert heat_mid.shape == (2, 64, 64)


def test_layer_and_head_errors_name_the_problem(ef0_model):
    with pytest.raises(ValueError, match="'nope'"):
        gradcam.find_conv_layer(ef0_model, "nope")
    with pytest.raises(ValueError, match="4-D"):
        gradcam.find_conv_layer(ef0_model, "features")
    logits = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3),
                               keras.layers.Flatten(), keras.layers.Dense(3, name="out")])
    with pytest.raises(ValueError, match="'out'"):
        gradcam.cam_model(logits)
    # A nested backbone beside a skip branch cannot be rebuilt as a chain.
    inputs, b_in = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    backbone = keras.Model(b_in, keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(2, 3)(b_in)), name="backbone")
    skip = keras.layers.GlobalAveragePooling2D(name="skip")(inputs)
    merged = keras.layers.Concatenate()([backbone(inputs), skip])
    branched = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(merged))
    with pytest.raises(ValueError, match="layer 'skip' does not take"):
        gradcam.cam_model(branched)


def test_overlay_and_grid_figure_layout():
    n = 3
    x = bright_corner(2 * n)
    heat = np.tile(np.linspace(0, 1, SIZE, dtype=np.float32), (2 * n, SIZE, 1))
    blended = gradcam.overlay(x[0], heat[0])
    assert blended.shape == (SIZE, SIZE, 3) and blended.dtype == np.uint8
    labels = np.array([0] * n + [1] * n)
    fig = gradcam.gradcam_grid_figure(x, heat, labels, np.linspace(0, 1, 2 * n), pairs_per_row=n)
    assert len(fig.axes) == 2 * n * 2
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("real · fake 0.00") and titles[2 * n].startswith("fake")
    assert titles.count("Grad-CAM") == 2 * n
    with pytest.raises(ValueError, match="2 heatmaps"):
        gradcam.gradcam_grid_figure(x, heat[:2], labels, labels)


def fake_face_store(tmp_path) -> RunPaths:
    run = RunPaths(tmp_path / "run").ensure()
    rows = []
    for i in range(8):
        vid, label = f"{'fake' if i % 2 else 'real'}/v{i}", i % 2
        split = "train" if i >= 6 else "test"
        n_faces = 0 if i == 4 else 3
        store = np.full((n_faces, 8, 8, 3), i, np.uint8)
        io.write_npz(run.face_file(vid), faces=store,
                     frame_idx=np.arange(n_faces) * 10)
        rows.append({"video_id": vid, "label": label, "split": split, "status": "ok",
                     "n_sampled": 3, "n_faces": n_faces, "reason": ""})
    io.write_csv(pd.DataFrame(rows), run.faces_summary_csv)
    return run


def test_pick_faces_gives_both_classes_deterministically(tmp_path):
    run = fake_face_store(tmp_path)
    crops, table = gradcam.pick_faces(run, per_class=2, seed=3)
    # test split, with a face: real v0, v2 (v4 has none); fake v1, v3, v5
    assert list(table["label"]) == [0, 0, 1, 1]
    assert set(table["video_id"][:2]) == {"real/v0", "real/v2"}
    assert set(table["video_id"][2:]) <= {"fake/v1", "fake/v3", "fake/v5"}
    assert crops.shape == (4, 8, 8, 3)
    assert [int(c[0, 0, 0]) for c in crops] == [int(v[-1]) for v in table["video_id"]]
    assert set(table["frame_idx"]) <= {0, 10, 20}
    again, table_again = gradcam.pick_faces(run, per_class=2, seed=3)
    pd.testing.assert_frame_equal(table, table_again)
    np.testing.assert_array_equal(crops, again)
    with pytest.warns(UserWarning, match="no real val video"):
        crops, table = gradcam.pick_faces(run, per_class=1, split="val")
    assert crops.shape[0] == 0 and table.empty  # val has no video at all here


def test_gradcam_figure_of_an_empty_or_one_class_split_is_drawn(tmp_path):
    run = fake_face_store(tmp_path)
    summary = pd.read_csv(run.faces_summary_csv)
    io.write_csv(summary.assign(split=summary["split"].where(summary["video_id"] != "fake/v7",
                                                             "val")), run.faces_summary_csv)
    with pytest.warns(UserWarning, match="no fake train video"):
        crops, table = gradcam.pick_faces(run, per_class=2, split="train")
    assert list(table["label"]) == [0]  # train holds only real v6 now
    with pytest.warns(UserWarning, match="no real val video"):
        gradcam.pick_faces(run, per_class=2, split="val")
    with pytest.warns(UserWarning):
        crops, table = gradcam.pick_faces(run, per_class=2, split="none")
    heat, scores = np.zeros((0, 1, 1)), np.zeros(0)
    fig = gradcam.gradcam_grid_figure(crops, heat, table["label"].to_numpy(), scores)
    assert "no faces to explain" in [t.get_text() for ax in fig.axes for t in ax.texts]
