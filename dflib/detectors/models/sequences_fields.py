"""The ``train_rnn`` section's fields, read by :mod:`dflib.detectors.models.sequences`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ...fields import Field
from ...vocabulary import RNN_HEADS


TRAIN_RNN: Mapping[str, Field] = MappingProxyType({
    "models": Field(list, list(RNN_HEADS), "recurrent heads on the frame CNN features "
                    "(time_average: their baseline, a logistic regression on the features "
                    "averaged over time)",
                    item=str, choices=RNN_HEADS),
    "seq_len": Field(int, 25, "first faces per video; shorter videos are padded and masked",
                     min=1),
    "epochs": Field(int, 15, "maximum epochs per head", min=1),
    "batch_size": Field(int, 32, "videos per batch", min=1),
    "learning_rate": Field(float, 0.001, "Adam learning rate", min=1e-7, max=1.0),
    "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
    "dropout": Field(float, 0.5, "dropout before the softmax", min=0.0, max=0.95),
    "l2": Field(float, 1e-3, "L2 penalty on every kernel of the heads (the heads train "
                "on one chunk's few videos)", min=0.0),
    "class_weight": Field(bool, True, "weight classes by their share of training videos"),
})
