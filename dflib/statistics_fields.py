"""The ``evaluation`` section's fields, read by :mod:`dflib.statistics`
(:meth:`~dflib.statistics.Scoring.of`): how every stage that scores detectors scores them."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .fields import Field

THRESHOLD_RULES = ("fixed", "eer", "youden")
EVALUATION: Mapping[str, Field] = MappingProxyType({
    "threshold_rule": Field(str, "eer", "how threshold_val, the operating threshold of each "
                            "method, is chosen on its validation predictions: fixed (the "
                            "threshold of its stage), eer (where false positive and false "
                            "negative rates meet) or youden (largest TPR - FPR)",
                            choices=THRESHOLD_RULES),
    "bootstrap_resamples": Field(int, 2000, "stratified bootstrap resamples of the 95 % "
                                 "intervals (0: no intervals); seeded from seed", min=0),
    "confidence": Field(float, 0.95, "coverage of the bootstrap and DeLong intervals",
                        min=0.5, max=0.999),
})
