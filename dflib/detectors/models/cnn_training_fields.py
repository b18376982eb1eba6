"""The ``train_cnn`` and ``evaluate_cnn`` sections' fields, read by :mod:`dflib.detectors.models.cnn_training`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from ...fields import Field
from ...vocabulary import AGGREGATIONS, CNN_ARCHS, CNN_MIN_INPUT, CNN_MONITORS


def check_input_size(stage: str, shared: Mapping[str, Any], section: Mapping[str, Any]
                     ) -> str | None:
    """The faces (``img_size``) must be at least the backbone's minimum input."""
    arch, size = section["arch"], shared["img_size"]
    if size < CNN_MIN_INPUT[arch]:
        return (f"img_size: {size} is below the minimum input {CNN_MIN_INPUT[arch]} of "
                f"{stage}.arch '{arch}'")
    return None


TRAIN_CNN: Mapping[str, Field] = MappingProxyType({
    "arch": Field(str, "xception", "frame CNN backbone (nasnet is NASNetMobile; the original "
                  "study's nasnet is NASNetLarge, nasnet_large here)", choices=CNN_ARCHS),
    "weights": Field(str, "imagenet", "backbone weights: imagenet, none, or a weights file"),
    "epochs": Field(int, 50, "maximum epochs per chunk model", min=1),
    "batch_size": Field(int, 32, "faces per training batch", min=1),
    "learning_rate": Field(float, 0.002, "Nadam learning rate", min=1e-7, max=1.0),
    "patience": Field(int, 10, "EarlyStopping patience on the monitored value (epochs)",
                      min=0),
    "monitor": Field(str, "val_loss", "what early stopping and the kept epoch follow on the "
                     "validation faces: val_loss, or val_auc (the AUC of the fake score)",
                     choices=CNN_MONITORS),
    "balanced_validation": Field(bool, False, "weigh the validation faces so real and fake "
                                 "count alike in val_loss (the paper: unweighted, so with "
                                 "more fakes than reals a fake-leaning model scores lower)"),
    "chunks": Field(int, 0, "balanced chunks: 0 is n_majority // n_minority (the paper), "
                    "1 is one model on everything", min=0),
    "class_weight": Field(bool, False, "weight classes by frequency (single-model runs)"),
    "augment": Field(bool, True, "the paper's augmentation (rotation, zoom, shift, shear, flip)"),
    "dropout": Field(float, 0.5, "dropout before the softmax", min=0.0, max=0.95),
    "workers": Field(int, 0, "Dask workers training chunk models in parallel, one chunk "
                     "each (0: one after the other in this process)", min=0),
    "scheduler": Field(str, "", "Dask scheduler address for chunk training; empty starts "
                       "a local cluster of `workers` processes"),
    "bn_recalibration_batches": Field(int, 16, "training batches that re-estimate the "
                                      "BatchNorm statistics before each validation "
                                      "(0 keeps the moving averages of Keras)", min=0),
})

EVALUATE_CNN: Mapping[str, Field] = MappingProxyType({
    "aggregation": Field(str, "mean", "frame scores to a video score",
                         choices=AGGREGATIONS),
    "threshold": Field(float, 0.5, "fake if the score is above this", min=0.0, max=1.0),
    "tsne_max_points": Field(int, 2000, "faces drawn in the t-SNE figures", min=10),
})
