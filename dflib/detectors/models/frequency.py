"""Frequency-artefact detectors: hand-made features of each face's grey levels and a
classifier on them (a logistic regression or an RBF SVC, chosen with its C by
cross-validation on the training videos), fitted on training faces and self-blends of the
real ones (``frequency/<feature>``).

Three features that see different things, each a few milliseconds a face on a CPU:

* ``spectrum``: the azimuthal average of the log magnitude spectrum (Durall et al., CVPR
  2020, "Watch your up-convolution"): the 2-D FFT of the grey face, ``20 log |F|``, averaged
  over rings of equal frequency, scaled to [0, 1] per face as Durall et al. do. A pasted,
  resampled or blurred face loses or gains energy at high frequencies.
* ``srm``: co-occurrences of truncated, quantised noise residuals (Fridrich and Kodovsky,
  "Rich models for steganalysis", 2012) of the three SRM kernels that image-forensics CNNs
  use as fixed first layers (Zhou et al., CVPR 2018): the statistics of the noise left when
  the content is predicted away, which blending and resampling change.
* ``dct``: the mean ``log(1 + |c|)`` of each of the 64 coefficients of the 8 x 8 block DCT
  (JPEG's and H.264's grid): what block coding and its re-coding leave.

Each feature is computed on three nested regions of the crop, concatenated: the inner face
(the central 35 % of the crop's side: eyes, nose and mouth, inside any swap or blend), the
face (60 %, which holds the blend's boundary) and the whole crop (with the untouched hair,
ears and background), so the classifier can compare the face with its surroundings. On the
demo's validation split this raised the video AUC of ``srm`` from 0.69 (whole crop alone) to
0.86, ``dct`` from 0.50 to 0.80 and ``spectrum`` from 0.43 to 0.68 (docs/reference.md,
"Frequency detectors"). ``all`` concatenates the three.

Each face gives one feature row; a frame's score is the classifier's P(fake), a video's the
study's aggregation of its frames, as for the FaceNet classifiers (:mod:`dflib.detectors.models.triplet`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ... import evaluation, statistics
from ...devices import cpu_cores
from ...paths import RunPaths
from ...vocabulary import FREQUENCY_CLASSIFIERS, FREQUENCY_FEATURES, frequency_method
from .classifiers import (MarginProbability, classifier_path, fake_probability, load_classifier,
                          save_classifier)

if TYPE_CHECKING:  # dflib.batches loads Keras; these features need only NumPy and SciPy
    from .batches import FaceSource

FAMILY = "frequency"
STAGE = "train_frequency"  # the stage that fits and saves the classifiers
# ITU-R BT.601 luma weights: the grey levels every feature reads.
LUMA = np.array([0.299, 0.587, 0.114])
# Durall et al. add this before the logarithm so that a zero coefficient stays finite.
EPSILON = 1e-8
# SRM residuals: quantisation step and truncation (Fridrich and Kodovsky's q = 1, T = 2:
# 5 values per residual, 25 per co-occurring pair).
SRM_Q = 1.0
SRM_T = 2
# The three SRM kernels of Zhou et al. 2018 (their fixed "noise stream" layer): KB (3 x 3
# second order in both directions), KV (5 x 5 third order) and the horizontal second order.
SRM_KERNELS = (
    np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], dtype=float) / 4,
    np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
              [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]], dtype=float) / 12,
    np.array([[0, 0, 0], [1, -2, 1], [0, 0, 0]], dtype=float) / 2,
)
DCT_BLOCK = 8
# The regions each feature reads, as shares of the crop's side around its centre: inner
# face, face, whole crop. Chosen on the demo's validation split over (0.5, 1) and
# (0.5, 0.75, 1) (docs/reference.md, "Frequency detectors").
REGIONS = (0.35, 0.6, 1.0)


def grey(faces: np.ndarray) -> np.ndarray:
    """``[k, H, W]`` float grey levels (0..255) of ``[k, H, W, 3]`` RGB faces."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be [k, H, W, 3], got shape {faces.shape}")
    return faces.astype(np.float64) @ LUMA


def azimuthal_average(image: np.ndarray) -> np.ndarray:
    """The mean of a 2-D array over rings of integer radius around its centre
    (``(H // 2, W // 2)``, where ``fftshift`` puts frequency 0): ``[min(H, W) // 2]`` values,
    radius 0 first. The corners beyond the inscribed circle are left out: only there would
    a ring be incomplete."""
    h, w = image.shape[-2:]
    y, x = np.indices((h, w))
    radius = np.hypot(y - h // 2, x - w // 2).astype(int).ravel()
    n = min(h, w) // 2
    inside = radius < n
    counts = np.bincount(radius[inside], minlength=n)
    flat = image.reshape(*image.shape[:-2], h * w)[..., inside]
    sums = np.stack([np.bincount(radius[inside], weights=row, minlength=n)
                     for row in flat.reshape(-1, flat.shape[-1])])
    return (sums / counts).reshape(*image.shape[:-2], n)


def spectrum_profile(faces: np.ndarray) -> np.ndarray:
    """``[k, S // 2]`` azimuthally averaged log magnitude spectra of the faces, before
    Durall et al.'s per-face scaling (the figure shows these)."""
    spectrum = np.fft.fftshift(np.fft.fft2(grey(faces)), axes=(-2, -1))
    return azimuthal_average(20 * np.log(np.abs(spectrum) + EPSILON))


def spectrum_features(faces: np.ndarray) -> np.ndarray:
    """:func:`spectrum_profile` scaled to [0, 1] per face (Durall et al.): the shape of the
    fall-off, not the face's contrast."""
    profile = spectrum_profile(faces)
    low, high = profile.min(axis=1, keepdims=True), profile.max(axis=1, keepdims=True)
    return (profile - low) / np.maximum(high - low, EPSILON)


def _convolve(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``[k, h, w]`` valid-mode correlation of each image with a small kernel."""
    kh, kw = kernel.shape
    h, w = images.shape[1] - kh + 1, images.shape[2] - kw + 1
    out = np.zeros((images.shape[0], h, w))
    for i in range(kh):
        for j in range(kw):
            if kernel[i, j]:
                out += kernel[i, j] * images[:, i:i + h, j:j + w]
    return out


def srm_features(faces: np.ndarray) -> np.ndarray:
    """``[k, 150]``: for each SRM kernel, the residual quantised (step :data:`SRM_Q`) and
    truncated to ``[-T, T]``, then the normalised histograms of horizontally and vertically
    adjacent pairs (25 + 25 bins): Fridrich and Kodovsky's second-order co-occurrences."""
    images = grey(faces)
    side = 2 * SRM_T + 1
    blocks = []
    for kernel in SRM_KERNELS:
        r = np.clip(np.round(_convolve(images, kernel) / SRM_Q), -SRM_T, SRM_T).astype(int) + SRM_T
        for a, b in ((r[:, :, :-1], r[:, :, 1:]), (r[:, :-1, :], r[:, 1:, :])):
            codes = (a * side + b).reshape(len(r), -1)
            hist = np.stack([np.bincount(c, minlength=side * side) for c in codes]) if len(r) \
                else np.zeros((0, side * side))
            blocks.append(hist / max(codes.shape[1], 1))
    return np.concatenate(blocks, axis=1)


def dct_features(faces: np.ndarray) -> np.ndarray:
    """``[k, 64]``: the mean ``log(1 + |c|)`` of each 8 x 8 block-DCT coefficient (type II,
    orthonormal) over the face's whole blocks from its top-left corner (a region smaller than
    a block is first padded to one by repeating its edge)."""
    from scipy.fft import dctn

    images = grey(faces) - 128.0
    short = [max(DCT_BLOCK - n, 0) for n in images.shape[1:]]
    if any(short):
        images = np.pad(images, ((0, 0), (0, short[0]), (0, short[1])), mode="edge")
    nb_y, nb_x = images.shape[1] // DCT_BLOCK, images.shape[2] // DCT_BLOCK
    blocks = images[:, :nb_y * DCT_BLOCK, :nb_x * DCT_BLOCK].reshape(
        len(images), nb_y, DCT_BLOCK, nb_x, DCT_BLOCK).transpose(0, 1, 3, 2, 4)
    coefficients = dctn(blocks, type=2, norm="ortho", axes=(-2, -1))
    return np.log1p(np.abs(coefficients)).mean(axis=(1, 2)).reshape(len(images), -1)


def central(faces: np.ndarray, share: float) -> np.ndarray:
    """The central ``share`` of the side of each crop ``[k, S, S, 3]``."""
    h, w = faces.shape[1:3]
    dy, dx = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return faces[:, dy:h - dy, dx:w - dx]


def _regions(feature: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``feature`` of each of :data:`REGIONS`, side by side."""
    return lambda faces: np.concatenate([feature(central(faces, share)) for share in REGIONS],
                                        axis=1)


# The features of each name of dflib.vocabulary.FREQUENCY_FEATURES but the combined one, in
# its order; COMBINED is these side by side.
FEATURES: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {
    "spectrum": _regions(spectrum_features), "srm": _regions(srm_features),
    "dct": _regions(dct_features)}
COMBINED = "all"


def check_features(features: Sequence[str]) -> None:
    """A clear error for a name that is not in :data:`FREQUENCY_FEATURES`."""
    unknown = [f for f in features if f not in FREQUENCY_FEATURES]
    if unknown:
        raise ValueError(f"unknown frequency feature {unknown[0]!r}; choose from "
                         f"{', '.join(FREQUENCY_FEATURES)}")


def feature_rows(faces: np.ndarray, features: Sequence[str]) -> dict[str, np.ndarray]:
    """``[k, d]`` rows of each of ``features`` for faces ``[k, S, S, 3]``; each underlying
    feature is computed once, also when ``all`` is asked beside it."""
    check_features(features)
    needed = set(FEATURES) if COMBINED in features else set(features)
    base = {f: fn(faces) for f, fn in FEATURES.items() if f in needed}
    return {f: np.concatenate(list(base.values()), axis=1) if f == COMBINED else base[f]
            for f in features}


# --------------------------------------------------------------------------- face features

@dataclass
class FaceFeatures:
    """Every requested feature of the faces of some videos: ``frames`` (``video_id,
    frame_idx, label``) aligned with each ``x[feature]``; ``failed`` names each video whose
    store file could not be read (video id -> why); ``profiles`` holds the unscaled spectrum
    profile of each face when asked (for the figure)."""

    frames: pd.DataFrame
    x: dict[str, np.ndarray]
    failed: dict[str, str]
    profiles: np.ndarray | None = None


def face_features(store: FaceSource, videos: pd.DataFrame, features: Sequence[str],
                  every_face: bool = False, profiles: bool = False) -> FaceFeatures:
    """The features of the stored faces of ``videos`` (``video_id, label``; ``n_faces`` when
    present spares opening the files of videos without faces). A file that cannot be read is
    recorded in ``failed`` and its video gets no face: the caller's prediction rows give it
    the prior (one bad file never stops a stage). ``every_face`` adds the other faces of a
    ``multi_face: max`` store (scored, the frame by its most fake face)."""
    check_features(features)
    n_faces = videos["n_faces"] if "n_faces" in videos else pd.Series(1, index=videos.index)
    tables, blocks, failed = [], {f: [] for f in features}, {}
    shown = []
    for vid, label, n in zip(videos["video_id"].astype(str), videos["label"], n_faces):
        if n <= 0:
            continue
        try:
            faces, frame_idx = store.load(vid, every_face=every_face)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            failed[vid] = f"{type(exc).__name__}: {exc}"
            continue
        if len(faces) == 0:
            continue
        for f, rows in feature_rows(faces, features).items():
            blocks[f].append(rows)
        if profiles:
            shown.append(spectrum_profile(faces))
        tables.append(pd.DataFrame({"video_id": vid, "frame_idx": np.asarray(frame_idx, int),
                                    "label": int(label)}))
    frames = (pd.concat(tables, ignore_index=True) if tables
              else pd.DataFrame({"video_id": pd.Series(dtype=str), "frame_idx": pd.Series(dtype=int),
                                 "label": pd.Series(dtype=int)}))
    x = {f: np.concatenate(b) if b else np.zeros((0, 0)) for f, b in blocks.items()}
    return FaceFeatures(frames, x, failed, np.concatenate(shown) if shown else None)


# --------------------------------------------------------------------------- classifiers

def make_classifier(kind: str = "logreg", c: float = 1.0, seed: int = 0) -> Any:
    """Standardised features, then ``kind`` with balanced class weights (a run's fakes
    outnumber its reals): ``logreg``, an L2 logistic regression (lbfgs, deterministic), or
    ``svc``, an RBF SVC whose P(fake) is the logistic of its margin
    (:class:`~dflib.detectors.models.classifiers.MarginProbability`: it ranks as the SVC
    does, which Platt scaling on a few videos need not)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "logreg":
        model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    elif kind == "svc":
        model = MarginProbability(SVC(C=c, class_weight="balanced", random_state=seed))
    else:
        raise ValueError(f"unknown frequency classifier {kind!r}; choose from "
                         f"{', '.join(FREQUENCY_CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), model)


@dataclass(frozen=True)
class Candidate:
    """One classifier the stage may fit: its kind (:data:`FREQUENCY_CLASSIFIERS`) and C."""

    kind: str
    c: float


def candidates(params: Mapping[str, Any]) -> list[Candidate]:
    """Every ``classifiers`` x ``c`` pair of the stage's section, in the profile's order."""
    return [Candidate(kind, float(c)) for kind in params["classifiers"] for c in params["c"]]


@dataclass
class TrainingRows:
    """What a classifier is fitted on: feature rows ``x`` (by feature name), labels ``y``,
    and for each row the training video it belongs to (a self-blend belongs to the video
    of its real face) and whether it is one of the dataset's own faces (not a self-blend):
    only those are scored when a fold is held out."""

    x: dict[str, np.ndarray]
    y: np.ndarray
    video: np.ndarray
    own: np.ndarray

    def take(self, feature: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[feature][rows], self.y[rows]


def _fold_auc(rows: TrainingRows, feature: str, candidate: Candidate, fit_videos: np.ndarray,
              held_out: np.ndarray, aggregation: str, threshold: float, seed: int) -> float:
    """Video AUC on the held-out videos' own faces of ``candidate`` fitted on the rows of
    ``fit_videos`` (their faces and their self-blends)."""
    from sklearn.metrics import roc_auc_score

    estimator = make_classifier(candidate.kind, candidate.c, seed).fit(
        *rows.take(feature, np.isin(rows.video, fit_videos)))
    scored = np.isin(rows.video, held_out) & rows.own
    frames = pd.DataFrame({"video_id": rows.video[scored], "label": rows.y[scored],
                           "score": fake_probability(estimator, rows.x[feature][scored])})
    videos = frames.groupby("video_id", sort=False).agg(
        label=("label", "first"),
        score=("score", lambda s: statistics.aggregate(s.to_numpy(), aggregation, threshold)))
    return float(roc_auc_score(videos["label"], videos["score"]))


def choose_classifier(rows: TrainingRows, feature: str, options: Sequence[Candidate],
                      folds: int, aggregation: str, threshold: float, seed: int
                      ) -> tuple[Candidate, pd.DataFrame]:
    """The candidate of highest mean video AUC over ``folds`` folds of the training videos
    (stratified by label, each video's faces and self-blends on one side; ties go to the
    earlier candidate), and the table ``classifier, c, cv_auc, cv_auc_sd, folds, chosen``.

    The validation split is left to choose among detectors: on the demo it holds 9 real
    videos, too few to rank classifiers of one feature (its AUCs disagreed with the
    164-video cross-validation's by up to 0.1). With one candidate nothing is fitted here;
    with fewer training videos of a class than ``folds``, the folds shrink to that count,
    and below 2 the first candidate is kept (``cv_auc`` empty)."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    own_videos = pd.DataFrame({"video": rows.video[rows.own], "label": rows.y[rows.own]}
                              ).drop_duplicates("video")
    n_folds = min(folds, int(own_videos["label"].value_counts().min()))
    table = pd.DataFrame({"classifier": [o.kind for o in options],
                          "c": [o.c for o in options], "cv_auc": np.nan, "cv_auc_sd": np.nan,
                          "folds": n_folds if len(options) > 1 and n_folds >= 2 else 0})
    if len(options) == 1 or n_folds < 2:
        return options[0], table.assign(chosen=np.arange(len(options)) == 0)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    ids, labels = own_videos["video"].to_numpy(), own_videos["label"].to_numpy()
    splits = [(ids[fit], ids[held]) for fit, held in splitter.split(ids, labels)]
    tasks = [(o, fit, held) for o in options for fit, held in splits]
    # joblib's worker processes, one BLAS thread each: threads were 2.6x slower on the demo
    # (52 s against 20 s for the stage), their BLAS calls oversubscribing the cores. The
    # workers end with the process that started them.
    aucs = Parallel(n_jobs=min(cpu_cores(), len(tasks)))(
        delayed(_fold_auc)(rows, feature, o, fit, held, aggregation, threshold, seed)
        for o, fit, held in tasks)
    per_option = np.asarray(aucs).reshape(len(options), n_folds)
    best = int(np.argmax(per_option.mean(axis=1)))
    table = table.assign(cv_auc=per_option.mean(axis=1), cv_auc_sd=per_option.std(axis=1, ddof=1),
                         chosen=np.arange(len(options)) == best)
    return options[best], table


def predictions(estimator: Any, faces: FaceFeatures, feature: str, videos: pd.DataFrame,
                aggregation: str, threshold: float) -> evaluation.Prediction:
    """Video and frame predictions of ``videos`` from their faces' features; a video whose
    file failed keeps its row with the prior and status ``failed``."""
    frames = statistics.max_per_frame(faces.frames.assign(
        score=fake_probability(estimator, faces.x[feature])))
    index = videos
    if faces.failed:
        index = videos.assign(face_status=np.where(
            videos["video_id"].astype(str).isin(list(faces.failed)), "failed",
            videos["face_status"] if "face_status" in videos else "ok"))
    rows = statistics.video_predictions(frames, index, aggregation, threshold)
    return rows, frames


# --------------------------------------------------------------------------- the stage

@dataclass
class StageResult:
    """What stage train_frequency wrote and what notebook 11 shows."""

    methods: list[str]
    results: pd.DataFrame  # the frequency/* rows of tables/results.csv
    spectra: pd.DataFrame  # mean spectrum profile of training faces by class and manipulation
    failed: dict[str, str]  # video id -> why its store file could not be read
    n_train_faces: int
    n_self_blends: int  # self-blended training fakes besides the dataset's
    # per method each candidate classifier's cross-validated video AUC and the one chosen
    selection: pd.DataFrame


def mean_spectra(faces: FaceFeatures, videos: pd.DataFrame) -> pd.DataFrame:
    """Long table ``group, radius, mean, sd, n_faces``: the mean unscaled spectrum profile
    of the faces of each group, ``real`` and each manipulation (``method`` of the index) of
    the fakes, radius in cycles per face side."""
    if faces.profiles is None or len(faces.frames) == 0:
        return pd.DataFrame(columns=["group", "radius", "mean", "sd", "n_faces"])
    group_of = videos.assign(group=np.where(videos["label"] == 1, videos.get(
        "method", pd.Series("fake", index=videos.index)).astype(str), "real")).set_index(
        videos["video_id"].astype(str))["group"]
    groups = faces.frames["video_id"].map(group_of).to_numpy()
    rows = []
    for group in ["real", *sorted(set(groups) - {"real"})]:
        block = faces.profiles[groups == group]
        if len(block):
            rows.append(pd.DataFrame({"group": group, "radius": np.arange(block.shape[1]),
                                      "mean": block.mean(axis=0), "sd": block.std(axis=0),
                                      "n_faces": len(block)}))
    return pd.concat(rows, ignore_index=True)


def self_blend_rows(run: RunPaths, store: FaceSource, train: pd.DataFrame,
                    features: Sequence[str], per_face: int, seed: int
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """The features of ``per_face`` self-blended images of each real training face whose
    landmarks dlib finds (:mod:`dflib.detectors.models.sbi`'s recipe, drawn from ``seed``):
    fakes whose only trace is a blend, for the classifiers to learn beside the dataset's.
    Returns the rows (none without dlib's landmark model), the video of each row's real
    face, and one line saying what was made, or why nothing was."""
    empty = {f: np.zeros((0, 0)) for f in features}
    nothing = np.zeros(0, dtype=object)
    if per_face <= 0:
        return empty, nothing, "no self-blends (self_blends: 0)"
    from . import sbi  # TensorFlow and dlib: only when self-blends are asked for

    reals = train[(train["label"] == 0) & (train["n_faces"] > 0)]
    try:
        marks = sbi.load_landmarks(run, store, reals)
    except (FileNotFoundError, ImportError) as exc:
        return empty, nothing, f"no self-blends: {exc}"
    rng = np.random.default_rng(seed)
    blends, owners = [], []
    for vid in reals["video_id"].astype(str):
        faces, _ = store.load(vid)
        points, found = marks.of(vid)
        for face, face_points in zip(faces[found], points[found]):
            for _ in range(per_face):
                fake, _ = sbi.self_blend(face, face_points, rng)
                blends.append(np.clip(np.rint(fake), 0, 255).astype(np.uint8))
                owners.append(vid)
    if not blends:
        return empty, nothing, "no self-blends: dlib found landmarks on no real training face"
    return (feature_rows(np.stack(blends), features), np.asarray(owners, dtype=object),
            f"{len(blends)} self-blends of {int(marks.found.sum())} real training faces "
            f"({per_face} each) added to the fakes")


def run_stage(run: RunPaths, store: FaceSource, videos: pd.DataFrame, params: Mapping[str, Any],
              scoring: statistics.Scoring = statistics.Scoring(), seed: int = 0) -> StageResult:
    """Fit one classifier per feature of ``params['features']`` on the training split's
    faces (each frame's chosen face) and ``params['self_blends']`` self-blends of each real
    one (:func:`self_blend_rows`, drawn from ``seed``), the classifier and its C chosen
    among :func:`candidates` by cross-validation on the training videos
    (:func:`choose_classifier`); score the validation and test splits' faces (every face; a
    frame by its most fake), write predictions and upsert the results rows of
    ``frequency/<feature>``; the rows of features no longer listed are retired.

    ``videos`` is the index with ``n_faces`` (:func:`dflib.stage_inputs.videos_with_faces`)."""
    features = list(params["features"])
    methods = [frequency_method(f) for f in features]
    evaluation.retire_methods(run, FAMILY, methods)
    train = videos[videos["split"] == "train"]
    fitted = face_features(store, train, features, profiles=True)
    y = fitted.frames["label"].to_numpy(dtype=int)
    if len(set(y)) < 2:
        raise ValueError(f"{run.videos_csv}: the training faces lack a class; the frequency "
                         "classifiers need both")
    blended, owners, blends_made = self_blend_rows(run, store, train, features,
                                                   params["self_blends"], seed)
    print(f"frequency: {blends_made}")
    training = TrainingRows(
        x={f: np.vstack([fitted.x[f], blended[f]]) if len(owners) else fitted.x[f]
           for f in features},
        y=np.concatenate([y, np.ones(len(owners), int)]),
        video=np.concatenate([fitted.frames["video_id"].astype(str).to_numpy(dtype=object),
                              owners]),
        own=np.concatenate([np.ones(len(y), bool), np.zeros(len(owners), bool)]))
    failed = dict(fitted.failed)
    scored = {}
    for split in ("val", "test"):
        part = videos[videos["split"] == split].reset_index(drop=True)
        scored[split] = (part, face_features(store, part, features, every_face=True))
        failed.update(scored[split][1].failed)
    rows, choices = [], []
    for feature, method in zip(features, methods):
        chosen, table = choose_classifier(training, feature, candidates(params),
                                          params["cv_folds"], params["aggregation"],
                                          params["threshold"], seed)
        choices.append(table.assign(method=method))
        won = table[table["chosen"]].iloc[0]
        cv = (f" (cross-validated video AUC {won['cv_auc']:.3f} over {won['folds']} folds)"
              if won["folds"] else "")
        print(f"{method}: {chosen.kind}, C = {chosen.c:g}{cv}")
        estimator = make_classifier(chosen.kind, chosen.c, seed).fit(training.x[feature],
                                                                      training.y)
        save_classifier(run, method, estimator)
        for split, (part, faces) in scored.items():
            video_rows, frame_rows = predictions(estimator, faces, feature, part,
                                                 params["aggregation"], params["threshold"])
            evaluation.write_predictions(run, method, video_rows, frame_rows, split=split)
        rows.append(evaluation.score_method(run, method, params["threshold"], scoring))
    results = (pd.concat(rows, ignore_index=True) if rows
               else evaluation.results_table(run).iloc[:0])
    selection = pd.concat(choices, ignore_index=True)[
        ["method", "classifier", "c", "cv_auc", "cv_auc_sd", "folds", "chosen"]]
    return StageResult(methods, results, mean_spectra(fitted, train), failed, len(y),
                       len(owners), selection)


# --------------------------------------------------------------------------- re-scoring

def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads: each method's classifier."""
    return [classifier_path(run, m) for m in methods]


def score_saved(run: RunPaths, methods: Sequence[str], store: FaceSource, videos: pd.DataFrame,
                settings: Mapping[str, Any], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """``frequency/<feature>`` methods of the run applied to other faces
    (:func:`dflib.reload.score_methods`), with the run's aggregation and threshold; each
    feature is computed once for all the methods."""
    section = settings[STAGE]
    features = list(dict.fromkeys(m.split("/", 1)[1] for m in methods))
    faces = face_features(store, videos, features, every_face=True)
    return {m: predictions(load_classifier(run, m, STAGE), faces, m.split("/", 1)[1], videos,
                           section["aggregation"], section["threshold"]) for m in methods}
