"""The ``train_sbi`` section's fields, read by :mod:`dflib.detectors.models.sbi`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ...fields import Field
from ...vocabulary import CNN_ARCHS

TRAIN_SBI: Mapping[str, Field] = MappingProxyType({
    "arch": Field(str, "ef0", "backbone of the frame CNN trained on self-blended images "
                  "(scored as cnn/<arch>/sbi)", choices=CNN_ARCHS),
    "weights": Field(str, "imagenet", "backbone weights: imagenet, none, or a weights file"),
    "epochs": Field(int, 30, "maximum epochs (each shows every real training face once with "
                    "a new self-blend of it)", min=1),
    "batch_size": Field(int, 32, "images per batch: half real faces, half their self-blends",
                        min=2),
    "learning_rate": Field(float, 0.001, "Nadam learning rate", min=1e-7, max=1.0),
    "patience": Field(int, 5, "EarlyStopping patience on the validation split's loss (its "
                      "real fakes choose the epoch, nothing else)", min=0),
    "dropout": Field(float, 0.5, "dropout before the softmax", min=0.0, max=0.95),
    "augment": Field(bool, True, "JPEG, colour and flip augmentation of both images of a pair "
                     "(the self-blend itself is always drawn)"),
    "bn_recalibration_batches": Field(int, 16, "training batches that re-estimate the "
                                      "BatchNorm statistics before each validation "
                                      "(0 keeps the moving averages of Keras)", min=0),
})
