"""The ``train_frequency`` section's fields, read by :mod:`dflib.detectors.models.frequency`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from ...fields import Field
from ...vocabulary import AGGREGATIONS, FREQUENCY_CLASSIFIERS, FREQUENCY_FEATURES


TRAIN_FREQUENCY: Mapping[str, Field] = MappingProxyType({
    "features": Field(list, list(FREQUENCY_FEATURES), "frequency features, one detector "
                      "frequency/<feature> each: spectrum (azimuthal average of the log "
                      "spectrum), srm (co-occurrences of SRM residuals), dct (8 x 8 block DCT "
                      "statistics)", item=str, choices=FREQUENCY_FEATURES),
    "classifiers": Field(list, ["logreg"], "classifiers tried on each standardised feature: "
                         "logreg (L2 logistic regression), svc (RBF SVC: its fit grows as n^2 "
                         "to n^3 of the training faces, so not for a full dataset's); with "
                         "more than one candidate (classifiers x c), cross-validation on the "
                         "training videos chooses", item=str, choices=FREQUENCY_CLASSIFIERS),
    "c": Field(list, [0.01, 0.1, 1.0], "inverse penalties tried (C of the logistic "
               "regression and the SVC)", item=float, min=1e-6, max=1e6),
    "cv_folds": Field(int, 5, "folds of the cross-validation that chooses among the "
                      "candidates: training videos split by video, stratified by label, "
                      "scored by video AUC", min=2, max=20),
    "self_blends": Field(int, 0, "self-blended images of each real training face added to "
                         "the fakes the classifiers learn from (dlib's 68 landmarks and the "
                         "SBI recipe of stage train_sbi; 0: the dataset's fakes only)",
                         min=0, max=16),
    "aggregation": Field(str, "mean", "frame scores to a video score", choices=AGGREGATIONS),
    "threshold": Field(float, 0.5, "fake if the score is above this", min=0.0, max=1.0),
})


def check_train_frequency(stage: str, shared: Mapping[str, Any], section: Mapping[str, Any]
                          ) -> str | None:
    """The stage needs a classifier and a C to try."""
    for key in ("classifiers", "c"):
        if not section[key]:
            return f"{stage}.{key}: name at least one value"
    return None
