"""Frame-level CNN detectors: a keras.applications backbone with the paper's head.

Every model takes RGB face crops as floats in 0-255 and does its backbone's own input
preprocessing inside (a serialisable layer), so a saved ``.keras`` file is self-contained:
``load_model(path).predict(faces)`` needs nothing else. The head is the paper's: global
average pooling, ``Dense(512, relu)`` named ``features`` (read for t-SNE and later
stages), dropout, and a 2-way softmax named ``predictions`` whose column 1 is P(fake).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
from keras import ops

from ... import io
from ...vocabulary import CNN_MIN_INPUT


@dataclass(frozen=True)
class Backbone:
    """A keras.applications constructor and the input preprocessing it was trained with."""

    constructor: str  # attribute of keras.applications
    mode: str  # "tf", "caffe", "torch" or "none" (the backbone rescales itself)


BACKBONES: dict[str, Backbone] = {
    "xception": Backbone("Xception", "tf"),
    "iv3": Backbone("InceptionV3", "tf"),
    "irv2": Backbone("InceptionResNetV2", "tf"),
    "resnet": Backbone("ResNet50", "caffe"),
    "nasnet": Backbone("NASNetMobile", "tf"),
    "nasnet_large": Backbone("NASNetLarge", "tf"),
    "ef0": Backbone("EfficientNetB0", "none"),
    "ef5": Backbone("EfficientNetB5", "none"),
}

# Keras builds NASNet's ImageNet weights for one input size only.
IMAGENET_FIXED_SIZE = {"nasnet": 224, "nasnet_large": 331}

# ImageNet channel statistics of the "caffe" (BGR, 0-255) and "torch" (RGB, 0-1) modes.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

FEATURES_LAYER = "features"
PREDICTIONS_LAYER = "predictions"


@keras.saving.register_keras_serializable(package="dflib")
class BackbonePreprocess(keras.layers.Layer):
    """``keras.applications`` ``preprocess_input`` of one mode, as a layer of the model."""

    MODES = ("tf", "caffe", "torch", "none")

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"preprocessing mode {mode!r}: choose one of {self.MODES}")
        self.mode = mode

    def call(self, x: Any) -> Any:
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


class WeightsUnavailable(RuntimeWarning):
    """ImageNet weights could not be fetched; the backbone starts from random weights."""


def _is_download_failure(exc: BaseException) -> bool:
    """True for the errors keras.utils.get_file raises when a download fails.

    Keras wraps URL errors in a plain ``Exception("URL fetch failure ...")`` and reports a
    truncated download as a corrupted file; an unwritable cache folder is an ``OSError``.
    """
    text = str(exc)
    return (isinstance(exc, OSError) or "URL fetch failure" in text
            or "corrupted file" in text)


def check_input(arch: str, img_size: int, weights: str) -> None:
    """Raise ``ValueError`` when ``img_size`` cannot work with ``arch`` and ``weights``."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(BACKBONES)}")
    if img_size < CNN_MIN_INPUT[arch]:
        raise ValueError(f"{arch} needs an input of at least {CNN_MIN_INPUT[arch]} px, "
                         f"got {img_size}")
    fixed = IMAGENET_FIXED_SIZE.get(arch)
    if weights == "imagenet" and fixed and img_size != fixed:
        raise ValueError(f"{arch} with ImageNet weights needs img_size {fixed} exactly "
                         f"(keras ships them for {fixed}x{fixed} only), got {img_size}; "
                         "use weights 'none' or that size")


def build_model(arch: str, img_size: int, weights: str = "imagenet",
                dropout: float = 0.5) -> tuple[keras.Model, str]:
    """Build ``arch`` for ``img_size`` px faces; return ``(model, weights_used)``.

    ``weights``: ``"imagenet"`` (downloaded by keras to ``~/.keras/models``), ``"none"``
    (random initialisation), or the path of a backbone weights file (for example the
    ``*_notop.h5`` file keras would download, fetched by hand for an offline machine).
    When ImageNet weights cannot be downloaded the model is built with random weights,
    a :class:`WeightsUnavailable` warning says so, and ``weights_used`` is ``"none"``:
    record it, because such a model is not the paper's fine-tuned backbone.
    The model is not compiled.
    """
    check_input(arch, img_size, weights)
    spec = BACKBONES[arch]
    constructor: Callable[..., keras.Model] = getattr(keras.applications, spec.constructor)
    if weights == "none":
        source = None
    elif weights == "imagenet":
        source = "imagenet"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} not found (weights: imagenet, none, "
                                    "or the path of a backbone weights file)")
        source = str(path)

    def backbone(w: str | None) -> keras.Model:
        return constructor(include_top=False, weights=w, input_shape=(img_size, img_size, 3),
                           pooling="avg")

    try:
        base = backbone(source)
        weights_used = weights
    except Exception as exc:  # noqa: BLE001 - narrowed by _is_download_failure below
        if source != "imagenet" or not _is_download_failure(exc):
            raise
        warnings.warn(f"ImageNet weights for {arch} could not be downloaded ({exc}); "
                      "TRAINING FROM RANDOM INITIALISATION instead (weights used: none)",
                      WeightsUnavailable, stacklevel=2)
        base = backbone(None)
        weights_used = "none"

    inputs = keras.Input((img_size, img_size, 3), name="faces")
    x = BackbonePreprocess(spec.mode, name="preprocess")(inputs)
    x = base(x)
    x = keras.layers.Dense(512, activation="relu", name=FEATURES_LAYER)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name=PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs, name=f"cnn_{arch}"), weights_used


def feature_model(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s layers that outputs the penultimate ``features``."""
    return keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output,
                       name=f"{model.name}_features")


@keras.saving.register_keras_serializable(package="dflib")
class MaskedTemporalMax(keras.layers.Layer):
    """Max over time of ``[b, T, d]`` counting only the steps the mask keeps.

    Masked steps are replaced by -inf before the max, so whatever they hold (an RNN's
    output for padding, large values) cannot win; a sequence with no kept step gives 0.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x: Any, mask: Any = None) -> Any:
        if mask is None:
            return ops.max(x, axis=1)
        keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
        pooled = ops.max(ops.where(keep, x, float("-inf")), axis=1)
        return ops.where(ops.any(keep, axis=1), pooled, ops.zeros_like(pooled))

    def compute_mask(self, x: Any, mask: Any = None) -> None:
        return None  # time is gone

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="dflib")
class SpatialMeanRemoved(keras.layers.Layer):
    """Clips ``[b, T, H, W, c]`` less each frame's own mean over ``H, W`` (per channel): what
    stays is how each region differs from the whole picture at that moment."""

    def call(self, x: Any) -> Any:
        return x - ops.mean(x, axis=(2, 3), keepdims=True)


@keras.saving.register_keras_serializable(package="dflib")
class FrameDifferences(keras.layers.Layer):
    """``x[:, t + 1] - x[:, t]`` of clips ``[b, T, ...]``: ``[b, T - 1, ...]``."""

    def call(self, x: Any) -> Any:
        return x[:, 1:] - x[:, :-1]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        steps = None if input_shape[1] is None else input_shape[1] - 1
        return (input_shape[0], steps, *input_shape[2:])


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a saved frame CNN, clip model or recurrent head (their custom layers are known
    here); without ``compile`` the optimizer state is not restored. A file that does not
    read whole is :class:`dflib.io.DamagedArtifact`, one line naming it."""
    io.require_whole(path, "rerun the stage that trained it")
    return keras.saving.load_model(path, compile=compile, custom_objects={
        "BackbonePreprocess": BackbonePreprocess, "MaskedTemporalMax": MaskedTemporalMax,
        "FrameDifferences": FrameDifferences})
