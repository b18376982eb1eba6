"""The ``train_triplet`` section's fields, read by :mod:`dflib.detectors.models.triplet` (``tsne_max_points``
by notebook 07's t-SNE cell)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ...fields import Field
from ...vocabulary import AGGREGATIONS, CLASSIFIERS


TRAIN_TRIPLET: Mapping[str, Field] = MappingProxyType({
    "epochs": Field(int, 20, "epochs of the triplet network, all run (the original's "
                    "schedule: no early stopping, the last epoch's weights are kept)", min=1),
    "batch_size": Field(int, 256, "embeddings per batch (below 128 the paper saw NaN losses)",
                        min=2),
    "learning_rate": Field(float, 3e-4, "Adam learning rate", min=1e-7, max=1.0),
    "margin": Field(float, 1.0, "semi-hard triplet loss margin", min=0.0),
    "unit_length": Field(bool, False, "divide each triplet embedding by its length "
                         "(FaceNet's convention; squared distances then lie in [0, 4])"),
    "dropout": Field(float, 0.1, "dropout between the MLP layers", min=0.0, max=0.95),
    "classifiers": Field(list, list(CLASSIFIERS), "classic classifiers on the embeddings",
                         item=str, choices=CLASSIFIERS),
    "aggregation": Field(str, "mean", "frame scores to a video score", choices=AGGREGATIONS),
    "threshold": Field(float, 0.5, "fake if the score is above this", min=0.0, max=1.0),
    "tsne_max_points": Field(int, 2000, "faces drawn in the t-SNE figures", min=10),
})
