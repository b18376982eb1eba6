"""The ``train_c3d`` section's fields, read by :mod:`dflib.detectors.models.clips`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from ...fields import Field
from ...vocabulary import CLIP_MODELS


def check_train_c3d(stage: str, shared: Mapping[str, Any], section: Mapping[str, Any]
                    ) -> str | None:
    """conv3d_diff subtracts consecutive faces: its clips need two at least."""
    if "conv3d_diff" in section["models"] and section["clip_len"] < 2:
        return (f"{stage}.clip_len: conv3d_diff subtracts consecutive faces, so it needs at "
                f"least 2, got {section['clip_len']}")
    return None


TRAIN_C3D: Mapping[str, Field] = MappingProxyType({
    "models": Field(list, ["c3d", "conv3d"], "3D CNNs: c3d (classic C3D), conv3d (the "
                    "original study's conv3d_model), conv3d_light (a light variant) and "
                    "conv3d_diff (a small 3D CNN on how the cells of a 4x4 grid of the face "
                    "change colour from face to face, relative to the whole face; not the "
                    "paper's)",
                    item=str, choices=CLIP_MODELS),
    "clip_len": Field(int, 16, "consecutive sampled faces per clip; shorter videos repeat "
                      "their last face", min=1),
    "clip_size": Field(int, 112, "crop side; faces are resized to 128x171 scaled by "
                       "clip_size/112 first", min=8),
    "epochs": Field(int, 15, "maximum epochs per model", min=1),
    "batch_size": Field(int, 32, "clips per batch", min=1),
    "optimizer": Field(str, "sgd", "sgd (Nesterov momentum, as C3D was trained) or adam",
                       choices=("sgd", "adam")),
    "learning_rate": Field(float, 0.005, "learning rate of the optimizer", min=1e-7,
                           max=1.0),
    "momentum": Field(float, 0.9, "SGD momentum", min=0.0, max=0.999),
    "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
    "keep_epoch": Field(str, "best", "the weights kept: best (the epoch of lowest validation "
                        "loss, with early stopping) or last (every epoch runs, as the original "
                        "scripts train; validation is then only logged)",
                        choices=("best", "last")),
    "dropout": Field(float, 0.5, "dropout after each fully connected layer", min=0.0,
                     max=0.95),
    "class_weight": Field(bool, True, "weight classes by their share of training clips"),
    "bn_recalibration_batches": Field(int, 8, "training batches that re-estimate the "
                                      "BatchNorm statistics before each validation "
                                      "(models with BatchNorm; 0 keeps Keras' moving "
                                      "averages)", min=0),
})
