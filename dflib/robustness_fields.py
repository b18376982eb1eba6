"""The ``robustness`` section's fields, read by :mod:`dflib.robustness`, and the encoder's
presets."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .fields import Field


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")

ROBUSTNESS: Mapping[str, Field] = MappingProxyType({
    "crfs": Field(list, [0, 23, 32, 40], "H.264 CRFs to re-encode the test videos at "
                  "(0 lossless; FaceForensics++ c23 and c40 are 23 and 40)", item=int,
                  min=0, max=51),
    "preset": Field(str, "medium", "libx264 preset (speed of the encoder, not quality)",
                    choices=X264_PRESETS),
    "methods": Field(list, [], "detectors to score (empty: every method with results)",
                     item=str),
    "max_videos": Field(int, 0, "test videos re-encoded, a seeded subset keeping the class "
                        "shares (0: all)", min=0),
})
