"""The ``train_rnn`` section's fields, read by :mod:`dflib.detectors.models.sequences`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ...fields import Field
from ...vocabulary import RNN_HEADS, RNN_INPUTS


TRAIN_RNN: Mapping[str, Field] = MappingProxyType({
    "models": Field(list, list(RNN_HEADS), "recurrent heads on per-face features "
                    "(time_average: their baseline, a logistic regression on the features "
                    "averaged over time)",
                    item=str, choices=RNN_HEADS),
    "inputs": Field(str, "cnn", "what the heads read per face: cnn (the paper's: the frame "
                    "CNN's features, validation-chosen chunk; the heads train on that chunk's "
                    "videos) or embeddings (stage embed_faces' network, standardised; never "
                    "fitted to these videos, so the heads train on every training video)",
                    choices=RNN_INPUTS),
    "seq_len": Field(int, 25, "first faces per video; shorter videos are padded and masked",
                     min=1),
    "epochs": Field(int, 15, "maximum epochs per head", min=1),
    "batch_size": Field(int, 32, "videos per batch", min=1),
    "learning_rate": Field(float, 0.001, "Adam learning rate", min=1e-7, max=1.0),
    "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
    "dropout": Field(float, 0.5, "dropout before the softmax", min=0.0, max=0.95),
    "l2": Field(float, 1e-3, "L2 penalty on every kernel of the heads (they train on "
                "a few dozen to a few hundred videos)", min=0.0),
    "class_weight": Field(bool, True, "weight classes by their share of training videos"),
})
