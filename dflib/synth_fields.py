"""The ``index`` section's fields read by :mod:`dflib.synth`: how the demo dataset
(``dataset: demo``) is generated."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .fields import Field


DEMO: Mapping[str, Field] = MappingProxyType({
    "demo_seed": Field(int, 0, "demo: seed of the generated videos (the run's seed varies "
                       "training only, so every seed of --seeds reads the same data)", min=0,
                       max=2**31 - 1),
    "demo_identities": Field(int, 6, "demo: number of identities", min=2, max=64),
    "demo_real_per_identity": Field(int, 4, "demo: real videos per identity", min=1),
    "demo_fake_per_identity": Field(int, 10, "demo: fake videos per identity", min=1),
    "demo_frames": Field(int, 32, "demo: frames per video", min=4),
    "demo_width": Field(int, 320, "demo: frame width in pixels", min=96),
    "demo_height": Field(int, 240, "demo: frame height in pixels", min=96),
    "demo_test_fraction": Field(float, 0.3, "demo: share of the fakes of each identity in the "
                                "test list", min=0.01, max=0.99),
    "demo_test_fraction_real": Field(float, 0.3, "demo: share of the real videos of each "
                                     "identity in the test list", min=0.01, max=0.99),
})
