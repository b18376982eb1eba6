"""The ``robustness`` section's fields, read by :mod:`dflib.robustness`, the encoder's
presets and the DeeperForensics-1.0 perturbation levels."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .fields import Field


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")

# The seven distortion types of DeeperForensics-1.0 (Jiang et al., CVPR 2020) and each one's
# parameter at levels 1..5, as their perturbation code sets them
# (github.com/EndlessSora/DeeperForensics-1.0, perturbation/add_distortion_to_video.py,
# get_distortion_parameter); their type codes are CS, CC, BW, GNC, GB, JPEG and VC.
# dflib.perturbations applies them; docs/statistics.md says where ours differ.
PERTURBATIONS: Mapping[str, tuple[float, ...]] = MappingProxyType({
    "saturation": (0.4, 0.3, 0.2, 0.1, 0.0),  # CS: YCbCr chroma times this
    "contrast": (0.85, 0.725, 0.6, 0.475, 0.35),  # CC: pixel values times this
    "block": (16, 32, 48, 64, 80),  # BW: grey 8 x 8 blocks per 256 px of the short side
    "noise": (0.001, 0.002, 0.005, 0.01, 0.05),  # GNC: variance of the YCbCr noise
    "blur": (7, 9, 13, 17, 21),  # GB: Gaussian kernel side, sigma = side / 6
    "pixelation": (2, 3, 4, 5, 6),  # JPEG: down by this factor and back up
    "compression": (30, 32, 35, 38, 40),  # VC: H.264 CRF of the whole video
})
PERTURBATION_LEVELS = (1, 2, 3, 4, 5)
# The type that re-encodes the video (the CRF machinery) instead of changing decoded frames.
VIDEO_PERTURBATION = "compression"

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
    "perturbations": Field(list, list(PERTURBATIONS), "DeeperForensics-1.0 distortion types "
                           "applied to the same test videos (empty: none)", item=str,
                           choices=tuple(PERTURBATIONS)),
    "perturbation_levels": Field(list, list(PERTURBATION_LEVELS), "levels (1 mildest .. 5 "
                                 "strongest) of each distortion type", item=int,
                                 min=PERTURBATION_LEVELS[0], max=PERTURBATION_LEVELS[-1]),
})
