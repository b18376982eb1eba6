"""The embedded demo dataset: generated deepfake videos in the Celeb-DF v2 layout.

Faces come from two public-domain photos that installed packages ship (matplotlib's Grace
Hopper, scikit-image's astronaut); further identities are derived from them (mirrored,
face shape warped around the landmarks, skin tone, hair colour, glasses, age). Real
videos put an identity on a generated background under camera motion, lighting drift and
sensor noise. A fake is made from one of its target's real videos, as Celeb-DF's are: the
same scene, camera path, lighting, sensor noise, length, frame rate and CRF, with the face
replaced (``faceswap`` from another identity, or ``selfblend`` with a perturbed copy of
itself) through a feathered mask, with colour and resolution mismatch and per-frame
flicker. Outside the face region a fake and its real video are the same pixels before
encoding, so nothing but the face tells the classes apart.

The ``selfblend`` fakes are not made by the self-blended-image training of
:mod:`dflib.detectors.models.sbi` (``cnn/<arch>/sbi``): the two generators share no code and no parameter
value (5 landmarks and a feathered ellipse or 7-point hull here, dlib's 68 and an
elastically deformed hull there), and the study reports that detector's AUC on face swaps
and self-blends separately.

Over 600 lines on purpose: one generator whose steps (identities, masks, paste, render,
encode, plan, the folder's record) are private to it and change together, since the demo's
videos depend on all of them; split, those helpers would become public with one user.

Layout under ``out_dir``::

    Celeb-real/id{i}_{k:04d}.mp4            real videos of identity i
    YouTube-real/{k:05d}.mp4                about a quarter of the real videos
    Celeb-synthesis/id{t}_id{s}_{k:04d}.mp4 fakes: identity s's face on target t's video
    List_of_testing_videos.txt              "<flag> <folder>/<file>.mp4", flag 1 = REAL
    synth_params.json                       the generation parameters
    manifest.csv                            written last: its presence means complete
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import re
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .io import atomic_path, read_record, write_csv, write_text
from .synth_fields import DEMO

MANIFEST = "manifest.csv"
PARAMS = "synth_params.json"
TEST_LIST = "List_of_testing_videos.txt"
FOLDERS = ("Celeb-real", "YouTube-real", "Celeb-synthesis")
MANIFEST_COLUMNS = ["path", "label", "identity", "source_identity", "method", "compression",
                    "crf", "scene"]
METHODS = ("faceswap", "selfblend")

# Bump when the rendering changes: a folder made by an older version then no longer counts
# as made with the same settings (generate refuses to overwrite it, see folder_problem).
_FORMAT_VERSION = 2
_CRF_HIGH_PROB = 0.25  # share of videos encoded at CRF 40 (c40); the rest at CRF 23 (c23)
_YOUTUBE_SHARE = 0.25  # share of real videos placed in YouTube-real/
# Sprite geometry, in units of the face box height: the face box centre sits at
# (_SPRITE_W / 2, _SPRITE_TOP) of an identity's cut-out sprite.
_SPRITE_W, _SPRITE_H, _SPRITE_TOP = 3.6, 3.8, 1.4
_FACE_SHARE = 0.45  # nominal face box height / frame height (per-video scale varies it)


def _face_px(height: int) -> int:
    """The nominal face box height of a frame ``height`` pixels high: the sprites' size."""
    return round(_FACE_SHARE * height)

# Face box (x0, y0, x1, y1) and 5 landmarks (left eye, right eye, nose, mouth left, mouth
# right) that facenet-pytorch 2.5.3's MTCNN reports on the two photos. Fixed here so that
# generation needs no torch and is bit-stable; tests/test_synth.py re-detects and compares.
_PHOTO_FACES = {
    "grace_hopper": ((174.4, 119.6, 355.6, 340.5),
                     ((221.7, 192.2), (309.8, 186.1), (269.4, 239.2), (232.7, 279.6),
                      (306.6, 275.9))),
    "astronaut": ((181.1, 62.2, 267.7, 172.1),
                  ((205.0, 101.7), (246.8, 103.7), (224.7, 129.0), (201.7, 139.2),
                   (245.3, 141.9))),
}


@dataclass(frozen=True)
class _Photo:
    """A source photo, its person cut-out (alpha in 0..1), face box and landmarks."""

    rgb: np.ndarray
    alpha: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class _Sprite:
    """An identity cut out at working resolution: float RGB 0..255 and alpha 0..1 in one array."""

    rgba: np.ndarray
    landmarks: np.ndarray
    face_px: int

    @property
    def rgb(self) -> np.ndarray:
        return self.rgba[..., :3]

    @property
    def alpha(self) -> np.ndarray:
        return self.rgba[..., 3]


@dataclass(frozen=True)
class _Paste:
    """A face replacement on a target sprite, applied frame by frame with flicker."""

    source: np.ndarray  # float RGB image in source coordinates
    matrix: np.ndarray  # 2x3 affine, source -> target sprite coordinates
    mask: np.ndarray  # feathered mask over ``roi`` of the target sprite
    roi: tuple[int, int, int, int]  # y0, y1, x0, x1
    alpha: float
    jitter_px: float
    jitter_alpha: float
    jitter_colour: float


@dataclass(frozen=True)
class _Video:
    """One planned video."""

    path: str
    label: int
    identity: int
    source_identity: int
    method: str
    crf: int
    scene: str  # the real video whose scene (background, camera, light, noise) it films


# --- source photos and identities ---------------------------------------------------------


def _load_photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib.cbook

        file = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return cv2.cvtColor(cv2.imread(str(file), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[..., :3])


def _person_alpha(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Cut out head and shoulders: GrabCut for the head's outline, a fixed silhouette below.

    GrabCut follows hair and hats well but loses dark clothes against dark backgrounds, so it
    only decides pixels near the head; neck and shoulders are an ellipse under the chin.
    """
    scale = 0.5  # GrabCut at half resolution: 4x faster, the mask is feathered anyway
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = box * scale
    fh, cx, cy = y1 - y0, (x0 + x1) / 2, (y0 + y1) / 2
    mask = np.full(small.shape[:2], cv2.GC_BGD, np.uint8)
    cv2.ellipse(mask, (round(cx), round(cy - 0.2 * fh)), (round(0.65 * fh), round(0.95 * fh)),
                0, 0, 360, cv2.GC_PR_FGD, -1)
    cv2.ellipse(mask, (round(cx), round(cy - 0.2 * fh)), (round(0.4 * fh), round(0.65 * fh)),
                0, 0, 360, cv2.GC_FGD, -1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models from OpenCV's global RNG
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 5,
                cv2.GC_INIT_WITH_MASK)
    alpha = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    cv2.rectangle(alpha, (round(cx - 0.3 * fh), round(cy)),
                  (round(cx + 0.3 * fh), round(y1 + 0.6 * fh)), 1.0, -1)
    cv2.ellipse(alpha, (round(cx), round(y1 + 1.75 * fh)), (round(1.45 * fh), round(1.45 * fh)),
                0, 0, 360, 1.0, -1)
    alpha = cv2.resize(alpha, rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.01 * fh / scale)
    # Fade the body out towards the photo's edges instead of cutting it straight.
    h, w = alpha.shape
    ramp = 0.25 * fh / scale
    fx = np.clip(np.minimum(np.arange(w), w - 1 - np.arange(w)) / ramp, 0, 1)
    fy = np.clip(np.minimum(np.arange(h), h - 1 - np.arange(h)) / ramp, 0, 1)
    return alpha * fy[:, None].astype(np.float32) * fx[None, :].astype(np.float32)


@functools.lru_cache(maxsize=None)
def _photos() -> tuple[_Photo, ...]:
    photos = []
    for name, (box, landmarks) in _PHOTO_FACES.items():
        rgb = _load_photo(name)
        box_arr = np.asarray(box, np.float64)
        photos.append(_Photo(rgb, _person_alpha(rgb, box_arr), box_arr,
                             np.asarray(landmarks, np.float64)))
    return tuple(photos)


def _warp_face(rgba: np.ndarray, landmarks: np.ndarray, box: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reshape the head: a smooth displacement around the face (wider or narrower face and
    jaw, longer or shorter face, eyes further apart or closer), landmarks moved with it."""
    fh = box[3] - box[1]
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    width, length, jaw, eyes = rng.uniform(-0.12, 0.12, 4)

    def shift(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, v = (x - centre[0]) / fh, (y - centre[1]) / fh
        near = np.exp(-(u ** 2 + v ** 2) / 0.6)  # fades out over about a face height
        dx = (width * u + jaw * u * np.clip(v, 0, None) + eyes * u * np.exp(-(v + 0.2) ** 2 / 0.02))
        return dx * near * fh, length * v * near * fh

    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = shift(xx, yy)
    # Small displacements: sampling at p - d(p) inverts p -> p + d(p) closely enough.
    warped = cv2.remap(rgba, xx - dx.astype(np.float32), yy - dy.astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    lx, ly = shift(landmarks[:, 0], landmarks[:, 1])
    return warped, landmarks + np.stack([lx, ly], axis=1)


def _restyle(rgba: np.ndarray, landmarks: np.ndarray, box: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Skin tone, hair colour, age (greyer hair, flatter skin), clothes colour and,
    sometimes, glasses."""
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    fh = box[3] - box[1]
    eye_y = landmarks[:2, 1].mean()
    lab = cv2.cvtColor(np.ascontiguousarray(rgb) / 255.0, cv2.COLOR_RGB2LAB)
    lab[..., 0] *= rng.uniform(0.8, 1.12)
    lab[..., 1] += rng.uniform(-6.0, 12.0)
    lab[..., 2] += rng.uniform(-10.0, 14.0)
    # Hair: the cut-out above the brows and beside the face, feathered.
    h, w = alpha.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = (box[0] + box[2]) / 2
    inner = ((xx - cx) / (0.42 * fh)) ** 2 + ((yy - (eye_y + 0.25 * fh)) / (0.6 * fh)) ** 2 < 1
    hair = ((alpha > 0.5) & ~inner & (yy < eye_y + 0.5 * fh)).astype(np.float32)
    hair = cv2.GaussianBlur(hair, (0, 0), 0.04 * fh)[..., None]
    age = rng.uniform(0, 1)
    tone = np.array([rng.uniform(15, 75), rng.uniform(-4, 14), rng.uniform(-4, 30)])
    tone = tone + age ** 2 * (np.array([80.0, 0.0, 0.0]) - tone)  # grey with age
    hair_lab = lab.copy()
    hair_lab[..., 0] = tone[0] + 0.5 * (lab[..., 0] - lab[..., 0].mean())
    hair_lab[..., 1:] = tone[1:]
    lab = lab + hair * (hair_lab - lab)
    if age > 0.5:  # older skin: less contrast and saturation inside the face
        lab[..., 1:] *= 1 - 0.3 * (age - 0.5)
    rgb = np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0, 0, 255)
    # Clothes: another hue and saturation below the chin.
    body = cv2.GaussianBlur(((alpha > 0.5) & (yy > box[3] + 0.15 * fh)).astype(np.float32),
                            (0, 0), 0.05 * fh)[..., None]
    hsv = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 360)) % 360
    hsv[..., 1] *= rng.uniform(0.3, 1.0)
    rgb = rgb + body * (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0 - rgb)
    if rng.random() < 0.35:  # glasses: two rims and a bridge across the eye landmarks
        colour = tuple(float(c) for c in rng.uniform(10, 90, 3))
        thick = max(1, round(0.025 * fh))
        half = np.linalg.norm(landmarks[1] - landmarks[0]) * 0.32
        for eye in landmarks[:2]:
            cv2.ellipse(rgb, tuple(int(v) for v in np.round(eye)),
                        (round(half), round(0.75 * half)), 0, 0, 360, colour, thick)
        inner_l = landmarks[0] + (round(half), 0)
        inner_r = landmarks[1] - (round(half), 0)
        cv2.line(rgb, tuple(int(v) for v in np.round(inner_l)),
                 tuple(int(v) for v in np.round(inner_r)), colour, thick)
    return np.dstack([rgb, alpha]).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _derived(identity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Identity ``identity`` at its photo's resolution: RGBA, landmarks, face box, mirror.

    Identities 0 and 1 are the photos as they are; identity i >= 2 derives from photo
    i % 2 with its own mirror flag, face shape, skin tone, hair, age and glasses (drawn
    independently of the dataset seed, so an identity looks the same in every dataset).
    """
    photo = _photos()[identity % 2]
    rgba = np.dstack([photo.rgb.astype(np.float32), photo.alpha])
    if identity < 2:
        return rgba, photo.landmarks, photo.box, False
    rng = np.random.default_rng([0x1D, identity])
    rgba, landmarks = _warp_face(rgba, photo.landmarks, photo.box, rng)
    return _restyle(rgba, landmarks, photo.box, rng), landmarks, photo.box, (identity // 2) % 2 == 1


@functools.lru_cache(maxsize=None)
def _sprite(identity: int, face_px: int) -> _Sprite:
    """Identity ``identity`` (:func:`_derived`) cut out with a face box ``face_px`` high."""
    source, photo_landmarks, box, mirror = _derived(identity)
    x0, y0, x1, y1 = box
    scale = face_px / (y1 - y0)
    size = (max(round(source.shape[1] * scale), 1), max(round(source.shape[0] * scale), 1))
    rgba = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    landmarks = photo_landmarks * scale
    centre = np.array([(x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale])
    if mirror:
        rgba = rgba[:, ::-1]
        landmarks[:, 0] = size[0] - 1 - landmarks[:, 0]
        landmarks = landmarks[[1, 0, 2, 4, 3]]  # keep MTCNN's left/right order after flipping
        centre[0] = size[0] - 1 - centre[0]
    shift = np.array([_SPRITE_W / 2 * face_px, _SPRITE_TOP * face_px]) - centre
    out_size = (round(_SPRITE_W * face_px), round(_SPRITE_H * face_px))
    move = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    rgba = cv2.warpAffine(np.ascontiguousarray(rgba), move, out_size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    return _Sprite(rgba, landmarks + shift, face_px)


# --- face replacement -----------------------------------------------------------------------


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eye centre and the face's two axes: across (eye to eye) and down (eyes to mouth)."""
    eye_c = landmarks[:2].mean(axis=0)
    across = landmarks[1] - landmarks[0]
    down_dir = np.array([-across[1], across[0]]) / np.linalg.norm(across)
    down = down_dir * np.dot(landmarks[3:].mean(axis=0) - eye_c, down_dir)
    return eye_c, across, down


def _face_mask(landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator,
               feather: float, hull: bool) -> np.ndarray:
    """Inner-face mask (ellipse or convex hull from the 5 landmarks), Gaussian-feathered."""
    eye_c, across, down = _face_frame(landmarks)
    grow = rng.uniform(0.9, 1.1)
    mask = np.zeros(shape, np.float32)
    if hull:
        # Brows, cheeks, jaw and chin in (across, down) units from the eye centre.
        uv = np.array([[-0.8, -0.55], [0.8, -0.55], [-1.0, 0.4], [1.0, 0.4], [-0.75, 1.2],
                       [0.75, 1.2], [0.0, 1.5]]) * grow
        pts = eye_c + uv[:, :1] * across + uv[:, 1:] * down
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1.0)
    else:
        centre = eye_c + 0.5 * down
        axes = (round(0.95 * grow * np.linalg.norm(across)), round(grow * np.linalg.norm(down)))
        angle = math.degrees(math.atan2(across[1], across[0]))
        cv2.ellipse(mask, tuple(int(v) for v in np.round(centre)), axes, angle, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), feather)


def _colour_transfer(src: np.ndarray, src_mask: np.ndarray, dst: np.ndarray,
                     dst_mask: np.ndarray, amount: float) -> np.ndarray:
    """Move ``src``'s Lab statistics inside its face towards ``dst``'s, by ``amount`` (0..1)."""
    src_lab = cv2.cvtColor(src / 255.0, cv2.COLOR_RGB2LAB)
    dst_lab = cv2.cvtColor(dst / 255.0, cv2.COLOR_RGB2LAB)
    s, d = src_lab[src_mask > 0.5], dst_lab[dst_mask > 0.5]
    moved = (src_lab - s.mean(0)) / (s.std(0) + 1e-6) * d.std(0) + d.mean(0)
    out = src_lab + amount * (moved - src_lab)
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0, 0, 255)


def _down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """Lose detail by downscaling by ``factor`` then upscaling back (a low-res face model)."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(round(w * factor), 1), max(round(h * factor), 1)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _plan_paste(video: _Video, target: _Sprite, rng: np.random.Generator) -> _Paste:
    """Draw one fake's manipulation; ``strength`` in 0.15..1 scales every artefact."""
    strength = rng.uniform(0.15, 1.0)
    fp = target.face_px
    shape = target.alpha.shape
    hull = bool(rng.random() < 0.5)
    feather = fp * (0.11 - 0.07 * strength) * rng.uniform(0.8, 1.2)
    if video.method == "faceswap":
        src = _sprite(video.source_identity, fp)
        matrix, _ = cv2.estimateAffinePartial2D(src.landmarks, target.landmarks,
                                                method=cv2.RANSAC, ransacReprojThreshold=1e3)
        hard_src = _face_mask(src.landmarks, src.alpha.shape, rng, 1.0, hull=False)
        hard_dst = _face_mask(target.landmarks, shape, rng, 1.0, hull=False)
        amount = float(np.clip(1.0 - 0.7 * strength + rng.normal(0, 0.05), 0.1, 1.0))
        source = _colour_transfer(src.rgb, hard_src, target.rgb, hard_dst, amount)
        source = _down_up(source, 1.0 - 0.55 * strength * rng.uniform(0.7, 1.0))
        alpha = rng.uniform(0.9, 1.0)
    else:
        # Self-blended image: the face over a slightly moved, recoloured, re-filtered copy.
        source = target.rgb * (1 + rng.uniform(-0.1, 0.1, 3) * strength).astype(np.float32)
        source = source + np.float32(rng.uniform(-14, 14) * strength)
        kind = rng.integers(3)
        if kind == 0:
            source = cv2.GaussianBlur(source, (0, 0), 0.5 + 1.5 * strength)
        elif kind == 1:
            detail = source - cv2.GaussianBlur(source, (0, 0), 1.5)
            source = source + (0.4 + 1.0 * strength) * detail  # unsharp mask
        else:
            source = _down_up(source, 1.0 - 0.5 * strength)
        source = np.clip(source, 0, 255)
        eye_c, _, down = _face_frame(target.landmarks)
        centre = tuple(eye_c + 0.5 * down)
        matrix = cv2.getRotationMatrix2D(centre, rng.uniform(-3, 3) * strength,
                                         1 + rng.uniform(-0.06, 0.06) * strength)
        matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * fp * strength
        alpha = rng.uniform(0.6, 1.0)
    mask = _face_mask(target.landmarks, shape, rng, feather, hull)
    ys, xs = np.nonzero(mask > 1e-3)
    roi = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return _Paste(np.ascontiguousarray(source, np.float32), matrix,
                  mask[roi[0]:roi[1], roi[2]:roi[3], None], roi, alpha,
                  jitter_px=0.012 * fp * strength, jitter_alpha=0.08 * strength,
                  jitter_colour=4.0 * strength)


def _paste_frame(paste: _Paste, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The target's RGBA sprite with the face replaced for one frame (flicker drawn anew)."""
    y0, y1, x0, x1 = paste.roi
    matrix = paste.matrix.copy()
    matrix[:, 2] += rng.normal(0, paste.jitter_px, 2) - (x0, y0)  # into ROI coordinates
    face = cv2.warpAffine(paste.source, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
    face += rng.normal(0, paste.jitter_colour, 3).astype(np.float32)
    alpha = np.float32(np.clip(paste.alpha * (1 + rng.normal(0, paste.jitter_alpha)), 0, 1))
    out = target.copy()
    region = out[y0:y1, x0:x1, :3]
    region += alpha * paste.mask * (face - region)
    return out


# --- scenes ----------------------------------------------------------------------------------


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A wall or furniture colour: a grey level with a little tint, not a saturated hue."""
    return np.clip(rng.uniform(35, 215) + rng.normal(0, 22, 3), 0, 255).astype(np.float32)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A soft, out-of-focus room: colour gradient, a few blurred shapes, low-frequency texture."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    c0, c1 = _muted_colour(rng), _muted_colour(rng)
    img = c0 + ramp[..., None] * (c1 - c0)
    for _ in range(rng.integers(3, 8)):
        layer = img.copy()
        colour = tuple(float(c) for c in _muted_colour(rng))
        cx, cy = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        sx, sy = int(rng.uniform(0.05, 0.4) * width), int(rng.uniform(0.05, 0.5) * height)
        if rng.random() < 0.5:
            cv2.rectangle(layer, (cx - sx, cy - sy), (cx + sx, cy + sy), colour, -1)
        else:
            cv2.ellipse(layer, (cx, cy), (sx, sy), 0, 0, 360, colour, -1)
        img = cv2.addWeighted(img, 0.4, layer, 0.6, 0)
    # Mostly luminance texture: independent per-channel noise looks like colour confetti.
    texture = rng.normal(0, 3, (max(height // 16, 2), max(width // 16, 2), 3))
    texture += rng.normal(0, 10, texture.shape[:2])[..., None]
    img += cv2.resize(texture.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 3.0) * width / 320)


def _affine(scale: float, angle_deg: float, about: np.ndarray, to: np.ndarray) -> np.ndarray:
    """3x3 similarity: rotate/scale about ``about`` and move that point to ``to``."""
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D((float(about[0]), float(about[1])), angle_deg, scale)
    m[:2, 2] += to - about
    return m


def _render(video: _Video, seed: int, frames: int, width: int,
            height: int) -> Iterator[np.ndarray]:
    """Yield the uint8 RGB frames of one video.

    The scene (background, placement, camera path, lighting, sensor noise) comes from a
    generator seeded by ``video.scene``, the face replacement from one seeded by the
    video's own path: a fake repeats its real video's frames except inside the face.
    """
    rng = np.random.default_rng([seed, zlib.crc32(video.scene.encode())])
    fake_rng = np.random.default_rng([seed, zlib.crc32(video.path.encode()), 1])
    sprite = _sprite(video.identity, _face_px(height))
    paste = _plan_paste(video, sprite, fake_rng) if video.label == 1 else None
    background = _background(rng, width, height)
    fp = sprite.face_px
    face_centre = np.array([_SPRITE_W / 2, _SPRITE_TOP]) * fp
    frame_centre = np.array([width / 2, height / 2])

    place_scale = rng.uniform(0.85, 1.12)  # face box 38-50 % of frame height before zoom
    place_at = np.array([width * rng.uniform(0.38, 0.62), height * rng.uniform(0.4, 0.46)])
    pan = rng.uniform(-0.05, 0.05, 2) * width
    wobble, phase = rng.uniform(0, 0.012, 2) * width, rng.uniform(0, 2 * np.pi, 4)
    zoom = rng.uniform(-0.06, 0.06)
    roll0, roll = rng.uniform(-2, 2), rng.uniform(-1.5, 1.5)
    sway_px, sway_deg = rng.uniform(0, 0.03) * fp, rng.uniform(0, 2.5)
    gain0, gain_drift = rng.uniform(0.85, 1.1), rng.uniform(-0.08, 0.08)
    tint = rng.uniform(-0.04, 0.04, 3)
    offset0, offset_drift = rng.uniform(-8, 8), rng.uniform(-6, 6)
    sigma = rng.uniform(1.0, 4.0)
    place = _affine(place_scale, 0.0, face_centre, place_at)

    for t in range(frames):
        u = t / max(frames - 1, 1)  # 0..1 over the clip: drifts are slow and smooth
        s = np.sin(2 * np.pi * u + phase)
        camera = _affine(1 + zoom * u, roll0 + roll * s[0], frame_centre,
                         frame_centre + pan * u + wobble * s[1:3])
        sway = _affine(1.0, sway_deg * s[3], face_centre, face_centre + sway_px * s[1:3])
        person = (camera @ place @ sway)[:2]
        layer = (_paste_frame(paste, sprite.rgba, fake_rng) if paste is not None
                 else sprite.rgba)
        fg = cv2.warpAffine(layer, person, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
        bg = cv2.warpAffine(background, camera[:2], (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT101)
        a = fg[..., 3:]
        frame = bg + a * (fg[..., :3] - bg)
        gain = (gain0 + gain_drift * u) * (1 + tint * s[0])
        frame = frame * gain.astype(np.float32) + np.float32(offset0 + offset_drift * u)
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(sigma)
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def _encode(frames: Iterator[np.ndarray], target: Path, width: int, height: int, fps: int,
            crf: int) -> None:
    """Pipe rgb24 frames through ffmpeg's libx264 into ``target``, atomically and bit-exactly."""
    import imageio_ffmpeg

    with atomic_path(target) as tmp:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
               "-i", "pipe:0", "-an", "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p",
               "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
               "-map_metadata", "-1", "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            for frame in frames:  # ffmpeg encodes while the next frame is drawn: 2 cores busy
                proc.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg exited early: its exit status and message below say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace").strip()
            rc = proc.wait()
        if rc != 0:
            raise RuntimeError(f"ffmpeg failed on {target} (exit {rc}): {err}")


# --- plan and generate -----------------------------------------------------------------------


def _plan(seed: int, identities: int, real_per_identity: int,
          fake_per_identity: int) -> list[_Video]:
    """Every video's name, label, identities, method and CRF, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    reals = [(i, k) for i in range(identities) for k in range(real_per_identity)]
    # Spread YouTube-real over identities: last clips first, identities in a seeded order.
    order = rng.permutation(identities)
    spread = [i * real_per_identity + k for k in reversed(range(real_per_identity)) for i in order]
    youtube = set(spread[:round(_YOUTUBE_SHARE * len(reals))])
    youtube_k = {n: k for k, n in enumerate(sorted(youtube))}

    def crf() -> int:
        return 40 if rng.random() < _CRF_HIGH_PROB else 23

    videos: list[_Video] = []
    celeb_k = [0] * identities
    for n, (i, _) in enumerate(reals):
        if n in youtube_k:
            path = f"YouTube-real/{youtube_k[n]:05d}.mp4"
        else:
            path = f"Celeb-real/id{i}_{celeb_k[i]:04d}.mp4"
            celeb_k[i] += 1
        videos.append(_Video(path, 0, i, i, "real", crf(), path))
    own_reals = {t: [v for v in videos if v.identity == t] for t in range(identities)}
    for t in range(identities):
        methods = [METHODS[k % 2] for k in range(fake_per_identity)]
        rng.shuffle(methods)
        # Cycle through the other identities so each target gets faces from many sources.
        others = [s for s in range(identities) if s != t]
        sources = rng.permutation(others).tolist() * (fake_per_identity // len(others) + 1)
        # Each fake films one of the target's real videos (in turn, from a seeded start),
        # with that video's scene and CRF, as Celeb-DF's fakes are made from its real ones.
        scenes = np.roll(np.arange(len(own_reals[t])), int(rng.integers(len(own_reals[t]))))
        for k, method in enumerate(methods):
            s = sources.pop() if method == "faceswap" else t
            path = f"Celeb-synthesis/id{t}_id{s}_{k:04d}.mp4"
            scene = own_reals[t][scenes[k % len(scenes)]]
            videos.append(_Video(path, 1, t, s, method, scene.crf, scene.path))
    return videos


def _test_list(videos: list[_Video], seed: int, test_fraction: float,
               test_fraction_real: float) -> list[_Video]:
    """About ``test_fraction`` of each identity's fakes and ``test_fraction_real`` of its
    real videos (Celeb-DF's test list holds a larger share of the real ones), at least one
    of each group kept out."""
    rng = np.random.default_rng([seed, 0x7E57])
    chosen: list[_Video] = []
    for identity in sorted({v.identity for v in videos}):
        for label, fraction in ((0, test_fraction_real), (1, test_fraction)):
            group = sorted((v for v in videos if v.identity == identity and v.label == label),
                           key=lambda v: v.path)
            n = min(max(round(fraction * len(group)), 1), len(group) - 1)
            if n > 0:
                chosen += [group[j] for j in rng.choice(len(group), n, replace=False)]
    return sorted(chosen, key=lambda v: v.path)


def _check_args(identities: int, real_per_identity: int, fake_per_identity: int, frames: int,
                width: int, height: int, fps: int, test_fraction: float,
                test_fraction_real: float) -> None:
    if identities < 2:
        raise ValueError(f"identities: need at least 2 (faceswap needs another face), "
                         f"got {identities}")
    counts = (("real_per_identity", real_per_identity), ("fake_per_identity", fake_per_identity),
              ("frames", frames), ("fps", fps))
    for name, value in counts:
        if value < 1:
            raise ValueError(f"{name}: must be at least 1, got {value}")
    for name, value in (("width", width), ("height", height)):
        if value < 64 or value % 2:
            raise ValueError(f"{name}: must be even and at least 64 (H.264 yuv420p), got {value}")
    for name, value in (("test_fraction", test_fraction),
                        ("test_fraction_real", test_fraction_real)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}: must be between 0 and 1, got {value}")


# The names this module gives its videos in each folder (see _plan); ``k`` may pass 9999.
_VIDEO_NAMES = {"Celeb-real": re.compile(r"id\d+_\d{4,}\.mp4"),
                "YouTube-real": re.compile(r"\d{5,}\.mp4"),
                "Celeb-synthesis": re.compile(r"id\d+_id\d+_\d{4,}\.mp4")}


def _own_files(out: Path) -> list[Path]:
    """Files this module writes under ``out`` (videos, leftover temporaries, lists)."""
    files = [p for d in FOLDERS if (out / d).is_dir() for p in (out / d).iterdir()
             if p.suffix == ".mp4" or p.name.endswith(".part")]
    if (out / TEST_LIST).exists():
        files.append(out / TEST_LIST)
    return files


def profile_settings(index: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`generate` arguments of a profile's ``index`` section: each ``demo_<arg>``
    key is argument ``<arg>`` (``demo_seed`` is ``seed``: the data's own seed, never the
    run's, so the seeds of ``dflib run --seeds`` vary training over the same videos)."""
    return {k.removeprefix("demo_"): index[k] for k in DEMO}


def recorded_params(**settings: Any) -> dict[str, Any]:
    """What :func:`generate` records in ``synth_params.json`` for these arguments (its own
    defaults filled in): a folder is made with the same settings when this is equal."""
    bound = inspect.signature(generate).bind(None, **settings)
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k not in ("out_dir", "progress")}
    if args["test_fraction_real"] is None:
        args["test_fraction_real"] = args["test_fraction"]
    return {"format": _FORMAT_VERSION, **args}


def _made_with(out: Path) -> dict[str, Any] | None:
    """The parameters ``synth_params.json`` records (None: absent or unreadable)."""
    return read_record(out / PARAMS)


def _foreign(out: Path) -> list[str]:
    """What ``out`` holds that this module did not write, relative to ``out``, sorted.

    Its own files are its folders' videos by their names, the test list, the manifest and
    the parameters, which it writes before any video: without them, anything but an empty
    folder of its layout belongs to someone else. Hidden entries (its own temporary files
    among them) are passed over, as every dataset scan does."""
    own_root = {PARAMS, MANIFEST, TEST_LIST} if (out / PARAMS).is_file() else set()
    foreign = []
    for entry in sorted(out.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name in FOLDERS and entry.is_dir() and not entry.is_symlink():
            pattern = _VIDEO_NAMES[entry.name]
            foreign += [f"{entry.name}/{p.name}" + ("/" if p.is_dir() else "")
                        for p in sorted(entry.iterdir())
                        if not p.name.startswith(".")
                        and not (own_root and p.is_file() and pattern.fullmatch(p.name))]
        elif not (entry.name in own_root and entry.is_file()):
            foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    return foreign


def folder_problem(out_dir: str | Path, settings: Mapping[str, Any] | None = None) -> str | None:
    """None when ``out_dir`` can receive the demo dataset of ``settings`` (:func:`generate`'s
    arguments; None: any) — absent, empty, or holding only what this module wrote with these
    settings, even half-way — else one line saying why it cannot. Files it did not write are
    never written among, and videos made with other settings are never overwritten: run
    folders that indexed them read them (a profile whose ``demo_*`` keys changed, or two
    profiles sharing one ``data_root``)."""
    out = Path(out_dir)
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        return (f"{out}: not a folder (the demo dataset is written into a folder)"
                if existing == out else f"{existing}: not a folder, so {out} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing}: not writable by this user (the demo dataset goes to {out})"
    if existing != out:
        return None
    foreign = _foreign(out)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        what = ("without the " + PARAMS + " it writes first"
                if not (out / PARAMS).is_file() else "beside its own files")
        return (f"{out}: holds {foreign[0]}{more}, not written by dflib.synth ({what}); "
                "refusing to write among them: choose a new or empty folder")
    old = _made_with(out)
    videos = any(p.suffix == ".mp4" for p in _own_files(out))
    if old is None and videos:
        return (f"{out}: holds videos but its {PARAMS} does not read; refusing to overwrite "
                "them: delete the folder to generate it anew")
    if settings is None or not videos:
        return None
    new = recorded_params(**settings)
    changed = [f"{k} {old.get(k, '-')} -> {new.get(k, '-')}"
               for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not changed:
        return None
    shown = ", ".join(changed[:3]) + (f", {len(changed) - 3} more" if len(changed) > 3 else "")
    return (f"{out}: holds the demo dataset made with other settings ({shown}); the runs that "
            "indexed it read these videos, so it is not overwritten: point data_root at "
            "another folder, or delete this one to generate it anew")


def _default(key: str) -> Any:
    """A ``demo_*`` field's default (the profile's, declared once)."""
    return DEMO[key].default


def generate(out_dir: str | Path, seed: int = _default("demo_seed"),
             identities: int = _default("demo_identities"),
             real_per_identity: int = _default("demo_real_per_identity"),
             fake_per_identity: int = _default("demo_fake_per_identity"),
             frames: int = _default("demo_frames"), width: int = _default("demo_width"),
             height: int = _default("demo_height"), fps: int = 15,
             test_fraction: float = _default("demo_test_fraction"),
             test_fraction_real: float | None = None,
             progress: bool = True) -> pd.DataFrame:
    """Write the demo dataset in the Celeb-DF v2 layout under ``out_dir``; return its manifest.

    ``test_fraction`` of the fakes and ``test_fraction_real`` of the real videos (default:
    the same) go to the test list. The manifest (``MANIFEST_COLUMNS``: label 1 = fake;
    ``scene``: the real video a fake was made from) is written last; a folder that holds
    it and the same parameters is returned as it is. A partial folder from the same
    parameters resumes (videos already there are kept); a folder holding videos made with
    other parameters is refused (``FileExistsError``, :func:`folder_problem`).
    """
    if test_fraction_real is None:
        test_fraction_real = test_fraction
    _check_args(identities, real_per_identity, fake_per_identity, frames, width, height, fps,
                test_fraction, test_fraction_real)
    out = Path(out_dir)
    settings = dict(seed=seed, identities=identities, real_per_identity=real_per_identity,
                    fake_per_identity=fake_per_identity, frames=frames, width=width,
                    height=height, fps=fps, test_fraction=test_fraction,
                    test_fraction_real=test_fraction_real)
    params = recorded_params(**settings)
    params_file, manifest_file = out / PARAMS, out / MANIFEST
    problem = folder_problem(out, settings)
    if problem:
        raise FileExistsError(problem)
    old = _made_with(out)
    videos = _plan(seed, identities, real_per_identity, fake_per_identity)
    complete = manifest_file.exists() and (out / TEST_LIST).exists() and all(
        (out / v.path).is_file() for v in videos)
    if old == params and complete:
        return pd.read_csv(manifest_file)

    manifest_file.unlink(missing_ok=True)  # from here on the folder is incomplete
    for p in _own_files(out):
        if p.name.endswith(".part") or old != params:
            p.unlink()
    write_text(json.dumps(params, indent=1) + "\n", params_file)

    # Resuming: videos are written atomically, so present = whole.
    missing = [v for v in videos if not (out / v.path).exists()]
    for identity in sorted({i for v in missing for i in (v.identity, v.source_identity)}):
        _sprite(identity, _face_px(height))  # cached before the threads share it

    def write(video: _Video) -> None:
        _encode(_render(video, seed, frames, width, height), out / video.path, width, height,
                fps, video.crf)

    # One video keeps about 1.2 cores busy (drawing here, ffmpeg in its own process); two at
    # a time wrote the same bytes 1.7 times as fast on 2 cores.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for _ in tqdm(pool.map(write, missing), total=len(missing), desc="synth videos",
                      disable=not progress):
            pass

    # Celeb-DF writes 1 = real in its test list (the inverse of dflib's labels).
    lines = [f"{1 - v.label} {v.path}" for v in _test_list(videos, seed, test_fraction, test_fraction_real)]
    write_text("\n".join(lines) + "\n", out / TEST_LIST)
    manifest = pd.DataFrame(
        [{"path": v.path, "label": v.label, "identity": v.identity,
          "source_identity": v.source_identity, "method": v.method,
          "compression": f"c{v.crf}", "crf": v.crf, "scene": v.scene} for v in videos],
        columns=MANIFEST_COLUMNS).sort_values("path", ignore_index=True)
    write_csv(manifest, manifest_file)
    return pd.read_csv(manifest_file)
