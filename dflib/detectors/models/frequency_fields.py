"""The ``train_frequency`` section's fields, read by :mod:`dflib.detectors.models.frequency`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ...fields import Field
from ...vocabulary import AGGREGATIONS, FREQUENCY_FEATURES


TRAIN_FREQUENCY: Mapping[str, Field] = MappingProxyType({
    "features": Field(list, list(FREQUENCY_FEATURES), "frequency features, one detector "
                      "frequency/<feature> each: spectrum (azimuthal average of the log "
                      "spectrum), srm (co-occurrences of SRM residuals), dct (8 x 8 block DCT "
                      "statistics)", item=str, choices=FREQUENCY_FEATURES),
    "c": Field(float, 1.0, "inverse L2 penalty of the logistic regression on the "
               "standardised features", min=1e-6, max=1e6),
    "self_blends": Field(int, 0, "self-blended images of each real training face added to "
                         "the fakes the classifiers learn from (dlib's 68 landmarks and the "
                         "SBI recipe of stage train_sbi; 0: the dataset's fakes only)",
                         min=0, max=16),
    "aggregation": Field(str, "mean", "frame scores to a video score", choices=AGGREGATIONS),
    "threshold": Field(float, 0.5, "fake if the score is above this", min=0.0, max=1.0),
})
