"""Frame CNN models: preprocessing inside the model, weights, save/load, every backbone."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dflib import vocabulary
from dflib.detectors.models import cnn

RNG = np.random.default_rng(0)


def faces(n: int, size: int) -> np.ndarray:
    return RNG.uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_every_configured_arch_has_a_backbone():
    assert set(cnn.BACKBONES) == set(vocabulary.CNN_ARCHS)
    for spec in cnn.BACKBONES.values():
        assert hasattr(keras.applications, spec.constructor)


@pytest.mark.parametrize("mode", ["tf", "caffe", "torch"])
def test_preprocess_layer_matches_keras_preprocess_input(mode):
    x = faces(2, 8)
    expected = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode=mode)
    got = keras.ops.convert_to_numpy(cnn.BackbonePreprocess(mode)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_preprocess_none_is_identity_and_layer_round_trips_its_config():
    x = faces(1, 4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(cnn.BackbonePreprocess("none")(x)), x)
    layer = cnn.BackbonePreprocess.from_config(cnn.BackbonePreprocess("caffe").get_config())
    assert layer.mode == "caffe"
    with pytest.raises(ValueError, match="mode"):
        cnn.BackbonePreprocess("bgr")


def test_input_checks_name_the_size_rules():
    with pytest.raises(ValueError, match="at least 71"):
        cnn.check_input("xception", 64, "none")
    with pytest.raises(ValueError, match="224"):
        cnn.check_input("nasnet", 96, "imagenet")
    with pytest.raises(ValueError, match="331"):
        cnn.check_input("nasnet_large", 224, "imagenet")
    with pytest.raises(ValueError, match="unknown arch"):
        cnn.check_input("vgg16", 224, "none")
    cnn.check_input("nasnet", 96, "none")


def test_head_layers_and_softmax_output():
    model, used = cnn.build_model("ef0", 32, "none", dropout=0.3)
    assert used == "none"
    assert model.get_layer("features").units == 512
    assert model.get_layer("dropout").rate == 0.3
    assert model.get_layer("preprocess").mode == "none"
    out = model.predict(faces(3, 32), verbose=0)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert cnn.feature_model(model).predict(faces(3, 32), verbose=0).shape == (3, 512)


def test_imagenet_download_failure_falls_back_to_random_weights(monkeypatch):
    real = keras.applications.EfficientNetB0
    calls = []

    def offline(*args, weights=None, **kwargs):
        calls.append(weights)
        if weights == "imagenet":
            raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None "
                            "-- [Errno -2] Name or service not known")
        return real(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, "EfficientNetB0", offline)
    with pytest.warns(cnn.WeightsUnavailable, match=r"weights used: none"):
        model, used = cnn.build_model("ef0", 32, "imagenet")
    assert used == "none" and calls == ["imagenet", None]
    assert model.output_shape == (None, 2)


def test_other_backbone_errors_are_not_swallowed(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("input_shape is wrong")

    monkeypatch.setattr(keras.applications, "EfficientNetB0", broken)
    with pytest.raises(ValueError, match="input_shape is wrong"):
        cnn.build_model("ef0", 32, "imagenet")


def test_weights_file_is_loaded_into_the_backbone(tmp_path):
    donor, _ = cnn.build_model("ef0", 32, "none")
    backbone = donor.get_layer("efficientnetb0")
    path = tmp_path / "ef0_notop.weights.h5"
    backbone.save_weights(path)
    model, used = cnn.build_model("ef0", 32, str(path))
    assert used == str(path)
    for a, b in zip(backbone.get_weights(), model.get_layer("efficientnetb0").get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="not found"):
        cnn.build_model("ef0", 32, str(tmp_path / "missing.h5"))


def test_saved_model_reloads_with_identical_predictions(tmp_path):
    keras.utils.set_random_seed(1)
    model, _ = cnn.build_model("resnet", 32, "none")  # caffe preprocessing inside
    path = tmp_path / "m.keras"
    model.save(path)
    again = cnn.load_model(path)
    x = faces(4, 32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    assert again.get_layer("preprocess").mode == "caffe"


def test_same_seed_builds_the_same_initial_weights():
    keras.utils.set_random_seed(3)
    a, _ = cnn.build_model("ef0", 32, "none")
    keras.utils.set_random_seed(3)
    b, _ = cnn.build_model("ef0", 32, "none")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# One per architecture family at the smallest input it accepts, one batch through the
# same layers, loss, gradients and optimizer step as a run, run eagerly: tracing the
# training step's graph took 30 to 70 s per family on the 2-core CPU, the eager step about
# a twelfth of that. The traced step (what `fit` does in a run) trains EfficientNetB0 in
# the smoke run (conftest.smoke_run) and in test_training.
@pytest.mark.slow
@pytest.mark.parametrize("arch,size", [("xception", 71), ("resnet", 32), ("ef0", 32),
                                       ("iv3", 75)])
def test_one_batch_training_smoke_run(arch, size):
    keras.utils.set_random_seed(0)
    model, _ = cnn.build_model(arch, size, "none")
    model.compile(optimizer=keras.optimizers.Nadam(0.002),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=True)
    first, last = (keras.ops.convert_to_numpy(w) for w in (model.trainable_weights[0],
                                                            model.trainable_weights[-1]))
    history = model.fit(faces(4, size), np.array([0, 1, 0, 1]), batch_size=4, epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # the step reached the backbone's first layer and the head's last
    assert not np.array_equal(first, keras.ops.convert_to_numpy(model.trainable_weights[0]))
    assert not np.array_equal(last, keras.ops.convert_to_numpy(model.trainable_weights[-1]))
    assert model.predict(faces(2, size), verbose=0).shape == (2, 2)


# The large backbones (and NASNet, whose training step alone takes minutes to trace here)
# are only built, once each at their minimum input: the head and the preprocessing layer
# are shared code, trained above.
@pytest.mark.parametrize("arch", ["irv2", "ef5", "nasnet", "nasnet_large"])
def test_large_backbones_build(arch):
    size = vocabulary.CNN_MIN_INPUT[arch]
    model, used = cnn.build_model(arch, size, "none")
    assert used == "none"
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 2)
    assert model.get_layer("features").output.shape[-1] == 512
