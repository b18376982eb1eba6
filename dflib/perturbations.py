"""The frame distortions of DeeperForensics-1.0 (Jiang et al., CVPR 2020), on RGB frames.

Each function takes one decoded RGB ``uint8`` frame and the level's parameter
(:data:`dflib.robustness_fields.PERTURBATIONS`) and returns a new frame; the two random
ones (grey blocks, noise) draw from the generator they are given, so a condition is the
same on every rerun. The definitions follow the authors' code
(github.com/EndlessSora/DeeperForensics-1.0, ``perturbation/distortions.py``); where this
module differs (rounding where theirs truncates, blocks on frames under 256 px), the
function says so and docs/statistics.md lists it. The seventh type, video compression,
re-encodes the whole video (:func:`dflib.robustness.reencode`).
"""

from __future__ import annotations

import zlib
from typing import Callable

import cv2
import numpy as np

from .robustness_fields import PERTURBATIONS, VIDEO_PERTURBATION

# BT.601 luma weights and the YCbCr <-> RGB factors OpenCV's COLOR_BGR2YCrCb uses, which
# the authors' code goes through: Cb = 0.564 (B - Y), Cr = 0.713 (R - Y).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CB_TO_RGB = np.array([0.0, -0.344, 1.773], np.float32)
CR_TO_RGB = np.array([1.403, -0.714, 0.0], np.float32)
# Their noise is added to YCbCr in studio range (Y 16..235, Cb and Cr 16..240) divided by
# 255, so one unit of their scale is 255 / 219 * 255 levels of our luma and 255 / 224 * 255
# of our chroma: the factors from the noise's standard deviation to ours.
NOISE_LUMA = 255.0 * 255.0 / 219.0
NOISE_CHROMA = 255.0 * 255.0 / 224.0
BLOCK_SIDE = 8  # the grey blocks' side in pixels
BLOCK_GREY = 128
BLOCK_UNIT = 256  # the block count is per this many pixels of the frame's short side


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Rounded and clipped to 0..255 (the authors truncate, which darkens every pixel by
    half a level on average and makes even a factor of 1 change the frame)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def luma(frame: np.ndarray) -> np.ndarray:
    """BT.601 luma (Y) of an RGB frame, float32, 0..255."""
    return frame.astype(np.float32) @ LUMA


def saturation(frame: np.ndarray, factor: float, rng: np.random.Generator | None = None
               ) -> np.ndarray:
    """Chroma (Cb, Cr) times ``factor``, luma kept (CS): 0 gives the grey frame of the same
    luma. YCbCr is linear in RGB, so this is each channel moved toward Y."""
    y = luma(frame)[..., None]
    return _to_uint8(y + factor * (frame.astype(np.float32) - y))


def contrast(frame: np.ndarray, factor: float, rng: np.random.Generator | None = None
             ) -> np.ndarray:
    """Every pixel value times ``factor`` (CC): the authors' "contrast change" scales
    toward black, so it darkens the frame as it lowers its contrast."""
    return _to_uint8(frame.astype(np.float32) * factor)


def block_count(shape: tuple[int, ...], per_unit: float) -> int:
    """How many grey blocks a frame of ``shape`` gets: ``per_unit`` for each whole 256 px
    of its short side, as the authors count them, but at least one unit's worth (their
    integer division gives frames under 256 px no block at all)."""
    return int(max(1, min(shape[0], shape[1]) // BLOCK_UNIT) * per_unit)


def block_positions(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` top-left corners ``(row, col)`` of blocks drawn uniformly over the frame, as
    the authors draw them (``random.randint(0, side - 1 - 8)``: never on the last row or
    column); blocks may overlap."""
    height, width = shape[:2]
    rows = rng.integers(0, max(1, height - BLOCK_SIDE), n)
    cols = rng.integers(0, max(1, width - BLOCK_SIDE), n)
    return np.stack([rows, cols], axis=1)


def block(frame: np.ndarray, per_unit: float, rng: np.random.Generator) -> np.ndarray:
    """Grey (128) 8 x 8 blocks at random places (BW), :func:`block_count` of them."""
    out = frame.copy()
    for r, c in block_positions(frame.shape, block_count(frame.shape, per_unit), rng):
        out[r:r + BLOCK_SIDE, c:c + BLOCK_SIDE] = BLOCK_GREY
    return out


def noise(frame: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise of ``variance`` on each of Y, Cb and Cr (GNC), on the authors'
    scale: studio-range YCbCr divided by 255 (see NOISE_LUMA); 0.05, level 5, is a standard
    deviation of 66 luma levels."""
    sd = float(np.sqrt(variance))
    shape = frame.shape[:2]
    n_y = rng.standard_normal(shape, dtype=np.float32) * sd * NOISE_LUMA
    n_cb = rng.standard_normal(shape, dtype=np.float32) * sd * NOISE_CHROMA
    n_cr = rng.standard_normal(shape, dtype=np.float32) * sd * NOISE_CHROMA
    added = n_y[..., None] + n_cb[..., None] * CB_TO_RGB + n_cr[..., None] * CR_TO_RGB
    return _to_uint8(frame.astype(np.float32) + added)


def blur(frame: np.ndarray, side: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Gaussian blur with a ``side`` x ``side`` kernel and sigma ``side / 6`` (GB)."""
    k = int(side)
    return cv2.GaussianBlur(frame, (k, k), k / 6)


def pixelation(frame: np.ndarray, factor: float, rng: np.random.Generator | None = None
               ) -> np.ndarray:
    """Down by ``factor`` and back up, bilinear both ways (OpenCV's default, as the authors
    call it): their type "JPEG compression" is this, no JPEG is written."""
    height, width = frame.shape[:2]
    f = int(factor)
    small = cv2.resize(frame, (max(1, width // f), max(1, height // f)))
    return cv2.resize(small, (width, height))


Distortion = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
FRAME_DISTORTIONS: dict[str, Distortion] = {
    "saturation": saturation, "contrast": contrast, "block": block, "noise": noise,
    "blur": blur, "pixelation": pixelation}


def parameter(kind: str, level: int) -> float:
    """The parameter of distortion ``kind`` at ``level`` (1..5)."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown distortion {kind!r} (known: {', '.join(PERTURBATIONS)})")
    values = PERTURBATIONS[kind]
    if not 1 <= level <= len(values):
        raise ValueError(f"{kind}: level {level} is outside 1..{len(values)}")
    return values[level - 1]


def frame_rng(seed: int, video_id: str, frame_idx: int, kind: str, level: int
              ) -> np.random.Generator:
    """The generator of one frame of one condition: the same frame always gets the same
    noise or blocks, whatever other videos, frames or conditions a run holds."""
    key = zlib.crc32(f"{video_id}\0{kind}".encode())
    return np.random.default_rng([seed, key, int(frame_idx), int(level)])


def distort(frame: np.ndarray, kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """``frame`` with distortion ``kind`` at ``level`` (a frame-level type)."""
    if kind not in FRAME_DISTORTIONS:
        raise ValueError(f"{kind!r} is not a frame distortion (those are "
                         f"{', '.join(FRAME_DISTORTIONS)})")
    return FRAME_DISTORTIONS[kind](frame, parameter(kind, level), rng)
