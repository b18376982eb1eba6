"""Training the frame CNNs: streamed face batches, augmentation, balanced chunks, scoring.

The face store is read one video at a time through a small LRU cache, so memory depends
on the cache size, never on the number of faces. Class imbalance is handled as in the
paper: the majority class is cut into ``k`` disjoint slices, each trained with all the
minority videos (bagging), and the chunk models are combined at test time (boosting).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import cv2
import keras
import numpy as np
import pandas as pd

from . import cnn, evaluation, io
from .faces import store_inputs
from .paths import RunPaths

LABELS = (0, 1)  # 0 = real, 1 = fake (docs/design.md)


class FaceSource(Protocol):
    """What training reads from a face store (``dflib.faces.FaceStore`` is one)."""

    def load(self, video_id: str, every_face: bool = False
             ) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- seeding

def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, the Keras backend and torch (when loaded), and ask TensorFlow
    and torch for deterministic ops."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Process-wide and idempotent; ops without a deterministic kernel then raise
        # instead of silently varying between runs.
        tf.config.experimental.enable_op_determinism()
    # torch only when this process loaded it already (Keras' torch backend, MTCNN, FaceNet):
    # importing it after TensorFlow is what docs/traps.md warns about.
    torch = sys.modules.get("torch")
    if torch is not None:
        # cuBLAS picks non-deterministic GEMM kernels unless it has this workspace setting.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.manual_seed(seed)
        # warn_only: an op without a deterministic kernel warns instead of stopping a run.
        torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def private_default_seeds(seed: int) -> Iterator[None]:
    """Keras draws the seed of every unseeded initializer and dropout layer from Python's
    global ``random``, which any other thread of the process may draw from at the same time
    (a Dask worker's event loop does): a model built inside this block draws those seeds
    from a stream of its own, so it is the same model in any process, sequential or not."""
    from keras.src.random import seed_generator

    shared = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


# --------------------------------------------------------------------------- augmentation

@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentation (the Keras ImageDataGenerator settings of the original code):
    rotation up to 30 degrees, zoom 0.15 on each axis, shifts 0.2 of the side, shear 0.15,
    horizontal flip, edges filled by the nearest pixel.

    As ImageDataGenerator did, each face gets one affine transform composed of all of
    them and is resampled once (OpenCV, bilinear), so augmenting costs one warp per face.
    ImageDataGenerator read ``shear_range`` in degrees, so the original 0.15 was a
    negligible 0.15 degree shear; here 0.15 is the shear factor (about 8.5 degrees), the
    intent of "shear 0.15". The random draws come from the generator passed in, so a
    batch's augmentation depends on its seed only, not on which worker made it.
    """

    rotation_deg: float = 30.0
    zoom: float = 0.15
    shift: float = 0.2
    shear: float = 0.15
    flip: bool = True

    def matrices(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random 2x3 affine matrices for ``size`` x ``size`` images, about the centre."""
        angle = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg, n))
        zoom = rng.uniform(1 - self.zoom, 1 + self.zoom, (n, 2))
        shift = rng.uniform(-self.shift, self.shift, (n, 2)) * size
        shear = rng.uniform(-self.shear, self.shear, n)
        mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0) if self.flip else np.ones(n)
        cos, sin = np.cos(angle), np.sin(angle)
        rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        sheared = rotate @ np.stack([np.stack([np.ones(n), shear], -1),
                                     np.stack([np.zeros(n), np.ones(n)], -1)], -2)
        # Scaling the columns: zoom per axis, and a mirror of the x axis.
        linear = sheared * (zoom * np.stack([mirror, np.ones(n)], -1))[:, None, :]
        centre = np.full(2, (size - 1) / 2.0)
        offset = centre + shift - linear @ centre
        return np.concatenate([linear, offset[:, :, None]], axis=2)

    def __call__(self, faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``faces [b, S, S, 3]`` (any dtype OpenCV warps) transformed, same shape and dtype."""
        size = faces.shape[1]
        out = np.empty_like(faces)
        for j, m in enumerate(self.matrices(len(faces), size, rng)):
            out[j] = cv2.warpAffine(faces[j], m, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        return out


PAPER_AUGMENTATION = Augmentation()


# --------------------------------------------------------------------------- streaming

class FaceBatches(keras.utils.PyDataset):
    """Batches ``(faces float32 0-255 [b, S, S, 3], labels int [b])`` read from a face store.

    ``videos`` needs ``video_id, label, n_faces``; videos without faces are left out.
    Only ``cache_videos`` videos' arrays are held at once (least recently used first out).
    With ``shuffle``, each epoch permutes the videos (seeded by ``seed`` and the epoch),
    cuts them into windows of ``cache_videos`` videos and shuffles the faces inside each
    window: a batch mixes many videos, yet every video is read once per epoch.
    ``max_faces`` keeps a seeded random subset of the faces (for t-SNE).
    ``augment`` (an :class:`Augmentation`) transforms every batch, seeded by ``seed``, the
    epoch and the batch index, so it does not depend on the order batches are made in.
    ``every_face`` also reads the other faces of a ``multi_face: max`` store (counted by
    the ``n_other_faces`` column of ``videos``): for scoring, never for training.
    """

    def __init__(self, store: FaceSource, videos: pd.DataFrame, batch_size: int, *,
                 shuffle: bool = False, seed: int = 0, augment: Augmentation | None = None,
                 cache_videos: int = 64, max_faces: int | None = None,
                 workers: int = 1, every_face: bool = False) -> None:
        # Threads, not processes: OpenCV's warps and NumPy's copies release the GIL, and
        # every batch is a pure function of its index, so workers never change a batch.
        super().__init__(workers=workers, use_multiprocessing=False)
        if batch_size < 1 or cache_videos < 1:
            raise ValueError("batch_size and cache_videos must be at least 1")
        videos = videos[videos["n_faces"] > 0]
        self.store, self.batch_size, self.shuffle, self.seed = store, batch_size, shuffle, seed
        self.augment, self.cache_videos, self.every_face = augment, cache_videos, every_face
        self.video_ids = videos["video_id"].astype(str).to_numpy()
        self.labels = videos["label"].to_numpy(dtype=np.int64)
        self.n_faces = videos["n_faces"].to_numpy(dtype=np.int64)
        if every_face and "n_other_faces" in videos.columns:
            self.n_faces = self.n_faces + videos["n_other_faces"].to_numpy(dtype=np.int64)
        # Flat face index: (video position, face position in that video's array).
        self._video = np.repeat(np.arange(len(self.video_ids)), self.n_faces)
        self._face = np.concatenate([np.arange(n) for n in self.n_faces] or [np.zeros(0, int)])
        if max_faces is not None and max_faces < len(self._video):
            keep = np.sort(np.random.default_rng(seed).choice(len(self._video), max_faces,
                                                              replace=False))
            self._video, self._face = self._video[keep], self._face[keep]
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.epoch = 0
        self._order = self._epoch_order()

    def __len__(self) -> int:
        return math.ceil(len(self._video) / self.batch_size)

    @property
    def n_samples(self) -> int:
        return len(self._video)

    @property
    def face_labels(self) -> np.ndarray:
        """The label of every face, in this epoch's batch order."""
        return self.labels[self._video[self._order]]

    def _epoch_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self._video))
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.video_ids))
        rank = np.empty_like(perm)
        rank[perm] = np.arange(len(perm))
        window = rank[self._video] // self.cache_videos
        # Faces ordered by window, randomly inside it (lexsort: last key is primary).
        return np.lexsort((rng.random(len(self._video)), window))

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order()

    def _arrays(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        with self._cache_lock:
            if v in self._cache:
                self._cache.move_to_end(v)
                return self._cache[v]
            faces, frame_idx = (self.store.load(self.video_ids[v], every_face=True)
                                if self.every_face else self.store.load(self.video_ids[v]))
            if len(faces) != self.n_faces[v] or len(frame_idx) != len(faces):
                raise ValueError(f"video {self.video_ids[v]!r}: the store holds {len(faces)} "
                                 f"faces, the face summary says {self.n_faces[v]}")
            entry = self._cache[v] = (faces, np.asarray(frame_idx))
            if len(self._cache) > self.cache_videos:
                self._cache.popitem(last=False)
            return entry

    def _rows(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        return self._order[i * self.batch_size:(i + 1) * self.batch_size]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(i)
        x = np.stack([self._arrays(v)[0][f] for v, f in zip(self._video[rows], self._face[rows])])
        if self.augment is not None:
            x = self.augment(x, np.random.default_rng([self.seed, self.epoch, i]))
        return x.astype(np.float32), self.labels[self._video[rows]]

    def keys(self, i: int) -> pd.DataFrame:
        """``video_id, frame_idx, label`` of batch ``i``'s faces, in batch order."""
        rows = self._rows(i)
        video, face = self._video[rows], self._face[rows]
        return pd.DataFrame({
            "video_id": self.video_ids[video],
            "frame_idx": [int(self._arrays(v)[1][f]) for v, f in zip(video, face)],
            "label": self.labels[video]})


# --------------------------------------------------------------------------- chunks

def n_chunks(train_videos: pd.DataFrame, chunks: int) -> int:
    """The number of balanced chunks: ``chunks``, or n_majority // n_minority when 0.

    At least 1 and at most the number of majority videos; both classes are needed.
    """
    counts = train_videos["label"].value_counts()
    missing = [name for lab, name in ((0, "real"), (1, "fake")) if counts.get(lab, 0) == 0]
    if missing:
        raise ValueError(f"the training split has no {missing[0]} videos; a detector needs both")
    n_major, n_minor = int(counts.max()), int(counts.min())
    k = n_major // n_minor if chunks == 0 else chunks
    return int(min(max(k, 1), n_major))


def balanced_chunks(train_videos: pd.DataFrame, k: int, seed: int) -> list[pd.DataFrame]:
    """Cut the majority class's videos into ``k`` disjoint, covering slices (seeded) and
    pair each with all minority videos. Ties in class size count ``fake`` as majority."""
    counts = train_videos["label"].value_counts()
    major = 1 if counts.get(1, 0) >= counts.get(0, 0) else 0
    majority = train_videos[train_videos["label"] == major]
    minority = train_videos[train_videos["label"] != major]
    perm = np.random.default_rng(seed).permutation(len(majority))
    return [pd.concat([majority.iloc[np.sort(part)], minority], ignore_index=True)
            for part in np.array_split(perm, k)]


def class_weights(videos: pd.DataFrame) -> dict[int, float]:
    """Per-class weights n / (2 n_c), counted over faces, so both classes weigh the same."""
    faces = videos.groupby("label")["n_faces"].sum()
    total = float(faces.sum())
    return {int(c): total / (len(LABELS) * float(faces.get(c, 0) or 1)) for c in LABELS}


# --------------------------------------------------------------------------- training

def _sublayers(layer: keras.Layer) -> list[keras.Layer]:
    """Every layer inside ``layer``, nested models included (depth first)."""
    out = []
    for sub in getattr(layer, "layers", []):
        out += [sub, *_sublayers(sub)]
    return out


def recalibrate_batchnorm(model: keras.Model, data: Any, max_batches: int) -> int:
    """Re-estimate every BatchNormalization layer's moving statistics on ``data``.

    A backbone trained for a hundred steps at Keras' momentum 0.99 keeps about a third of
    its initial moving statistics (0.99 ** 100), so in inference mode it normalises with
    statistics it never trained with: a demo chunk model gave P(fake) 0.665 to every face.
    Here the moving mean and variance become the plain average of the batch statistics of
    the first ``max_batches`` batches of ``data`` (batches ``(x, y)``), read in training
    mode with dropout off; the weights do not change. Returns the batches used.
    """
    layers = _sublayers(model)
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    n = min(len(data), max_batches)
    if not norms or n == 0:
        return 0
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    momenta, rates = [b.momentum for b in norms], [d.rate for d in drops]
    try:
        for d in drops:
            d.rate = 0.0
        for k in range(n):
            for b in norms:
                b.momentum = k / (k + 1)  # cumulative average: the first batch replaces all
            model(data[k][0], training=True)
    finally:
        for b, m in zip(norms, momenta):
            b.momentum = m
        for d, r in zip(drops, rates):
            d.rate = r
    return n


class BatchNormRecalibration(keras.callbacks.Callback):
    """:func:`recalibrate_batchnorm` once per epoch, before validation (or at the epoch's
    end without one), so validation, early stopping and checkpoints see the model as
    inference will. Put it first among the callbacks."""

    def __init__(self, data: Any, max_batches: int) -> None:
        super().__init__()
        self.data, self.max_batches, self._done = data, max_batches, False

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._done = False

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._recalibrate()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._recalibrate()

    def _recalibrate(self) -> None:
        if not self._done:
            recalibrate_batchnorm(self.model, self.data, self.max_batches)
            self._done = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a chunk model: the train_cnn section, img_size and seed."""

    arch: str
    img_size: int
    weights: str
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    chunks: int
    class_weight: bool
    augment: bool
    dropout: float
    seed: int
    # Last, with the default that describes a manifest written before the key existed.
    bn_recalibration_batches: int = 0

    @classmethod
    def from_sections(cls, shared: Mapping[str, Any], section: Mapping[str, Any]) -> "TrainConfig":
        return cls(img_size=shared["img_size"], seed=shared["seed"],
                   **{k: section[k] for k in cls.__dataclass_fields__
                      if k not in ("img_size", "seed")})


def model_dir(run: RunPaths, arch: str) -> Path:
    return run.models / "cnn" / arch


def manifest_path(run: RunPaths, arch: str) -> Path:
    return model_dir(run, arch) / "manifest.json"


def chunk_model_path(run: RunPaths, arch: str, chunk: int) -> Path:
    return model_dir(run, arch) / f"chunk{chunk}.keras"


def chunk_log_path(run: RunPaths, arch: str, chunk: int) -> Path:
    return run.logs / f"cnn_{arch}_chunk{chunk}.csv"


def read_manifest(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def split_videos(videos: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, val)`` rows of the index, by video; raises if a video is on both sides."""
    train = videos[videos["split"] == "train"]
    val = videos[videos["split"] == "val"]
    both = set(train["video_id"]) & set(val["video_id"])
    if both:
        raise ValueError(f"video {sorted(both)[0]!r} is in both the train and val splits")
    return train.reset_index(drop=True), val.reset_index(drop=True)


@dataclass
class _Chunk:
    chunk: int
    n_videos: int
    n_real: int
    n_fake: int
    n_faces: int
    weights_used: str = ""
    epochs_run: int = 0
    best_epoch: int = 0
    best_monitor: float = float("nan")
    monitor: str = "val_loss"
    seconds: float = 0.0
    model: str = ""
    log: str = ""
    class_weight: dict[str, float] = field(default_factory=dict)
    made_from: dict[str, Any] = field(default_factory=dict)  # io.made_from: settings, videos


def _chunk_record(chunk: int, videos: pd.DataFrame) -> _Chunk:
    return _Chunk(chunk=chunk, n_videos=len(videos), n_real=int((videos["label"] == 0).sum()),
                  n_fake=int((videos["label"] == 1).sum()), n_faces=int(videos["n_faces"].sum()))


def chunk_videos(videos: pd.DataFrame, manifest: Mapping[str, Any], chunk: int = 0) -> pd.DataFrame:
    """The training videos chunk ``chunk`` of a completed training (``manifest``) was fitted
    on, drawn again from the same index, chunk count and seed; an error when the index has
    changed since (the chunk would not be the same)."""
    train, _ = split_videos(videos)
    config = manifest["config"]
    part = balanced_chunks(train, n_chunks(train, config["chunks"]), config["seed"])[chunk]
    if len(part) != manifest["chunk_models"][chunk]["n_videos"]:
        raise ValueError(f"chunk {chunk} of the {manifest['arch']} training had "
                         f"{manifest['chunk_models'][chunk]['n_videos']} videos, the index now "
                         f"gives {len(part)}: rerun stage 'train_cnn'")
    return part.reset_index(drop=True)


def plan_chunks(videos: pd.DataFrame, chunks: int, seed: int) -> pd.DataFrame:
    """The chunks ``train_chunks`` will train, one row each: videos, reals, fakes, faces."""
    train, _ = split_videos(videos)
    parts = balanced_chunks(train, n_chunks(train, chunks), seed)
    return pd.DataFrame([{k: v for k, v in asdict(_chunk_record(i, p)).items()
                          if k in ("chunk", "n_videos", "n_real", "n_fake", "n_faces")}
                         for i, p in enumerate(parts)])


def _write_manifest(run: RunPaths, manifest: dict[str, Any]) -> None:
    # One value when every chunk got the same weights (the normal case), else each of them.
    manifest["weights_used"] = ", ".join(dict.fromkeys(c["weights_used"]
                                                       for c in manifest["chunk_models"]))
    io.write_text(json.dumps(manifest, indent=2) + "\n", manifest_path(run, manifest["arch"]))


def _fit_chunk(store: FaceSource, i: int, part: pd.DataFrame, val_data: FaceBatches | None,
               run: RunPaths, cfg: TrainConfig, made_from: dict[str, Any],
               verbose: int) -> _Chunk:
    """Train chunk ``i``'s model and move it to its final name; return its record."""
    final = chunk_model_path(run, cfg.arch, i)
    record = _chunk_record(i, part)
    record.made_from = made_from
    record.monitor = "val_loss" if val_data is not None else "loss"
    record.model = str(final.relative_to(run.root))
    record.log = str(chunk_log_path(run, cfg.arch, i).relative_to(run.root))
    seed_everything(cfg.seed + i)
    with private_default_seeds(cfg.seed + i):
        model, record.weights_used = cnn.build_model(cfg.arch, cfg.img_size, cfg.weights,
                                                     cfg.dropout)
    model.compile(optimizer=keras.optimizers.Nadam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = FaceBatches(store, part, cfg.batch_size, shuffle=True, seed=cfg.seed + i,
                       augment=PAPER_AUGMENTATION if cfg.augment else None)
    weights = class_weights(part) if cfg.class_weight else None
    record.class_weight = {str(c): w for c, w in (weights or {}).items()}
    # The faces as inference sees them (no augmentation), in another seeded order.
    recalibration = BatchNormRecalibration(
        FaceBatches(store, part, cfg.batch_size, shuffle=True, seed=cfg.seed + i + 1),
        cfg.bn_recalibration_batches)
    fit_and_save(model, final, run.root / record.log, record, data, validation=val_data,
                 epochs=cfg.epochs, patience=cfg.patience, class_weight=weights,
                 verbose=verbose, first_callbacks=[recalibration])
    return record


def fit_and_save(model: keras.Model, final: Path, log: Path, record: Any, data: Any, *,
                 validation: Any, epochs: int, patience: int,
                 class_weight: Mapping[int, float] | None = None, y: np.ndarray | None = None,
                 batch_size: int | None = None, verbose: int = 2,
                 first_callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
    """Fit with the study's callbacks and move the best model onto ``final`` at the end.

    ``first_callbacks`` run before the study's own at every event (a BatchNorm
    recalibration must come before the checkpoint that saves its statistics).
    EarlyStopping on ``record.monitor`` restores the best epoch, which is checkpointed to
    ``<final stem>.inprogress.keras`` and renamed to ``final`` only when training ends, so a
    killed run never leaves a final-looking partial model. Fills ``record``'s
    ``epochs_run``, ``best_epoch``, ``best_monitor`` and ``seconds``.
    """
    partial = final.with_name(f"{final.stem}.inprogress.keras")
    partial.unlink(missing_ok=True)
    callbacks = [
        *first_callbacks,
        keras.callbacks.EarlyStopping(monitor=record.monitor, patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(partial, monitor=record.monitor, save_best_only=True),
        keras.callbacks.CSVLogger(str(log)),
    ]
    start = time.perf_counter()
    history = model.fit(data, y, batch_size=batch_size, validation_data=validation,
                        epochs=epochs, class_weight=class_weight, callbacks=callbacks,
                        verbose=verbose)
    record.seconds = round(time.perf_counter() - start, 1)
    curve = np.asarray(history.history[record.monitor], dtype=float)
    record.epochs_run = len(curve)
    if np.isfinite(curve).any():
        record.best_epoch = int(np.nanargmin(curve)) + 1
        record.best_monitor = float(np.nanmin(curve))
    if not partial.exists():  # no finite monitored value ever improved on +inf
        model.save(partial)
    os.replace(partial, final)


def _fit_chunk_task(store: FaceSource, i: int, part: pd.DataFrame, val: pd.DataFrame,
                    run: RunPaths, cfg: TrainConfig, made_from: dict[str, Any],
                    verbose: int) -> dict[str, Any]:
    """One chunk on a Dask worker: the same :func:`_fit_chunk` as the sequential path, with
    the validation batches rebuilt there, so the model and its files are the same."""
    val_data = FaceBatches(store, val, cfg.batch_size) if val["n_faces"].sum() > 0 else None
    return asdict(_fit_chunk(store, i, part, val_data, run, cfg, made_from, verbose))


def train_chunks(store: FaceSource, videos: pd.DataFrame, run: RunPaths, cfg: TrainConfig,
                 verbose: int = 2, workers: int = 0, scheduler: str = "") -> dict[str, Any]:
    """Train one model per balanced chunk and return the manifest (also written to disk).

    ``videos``: the index rows with ``video_id, label, split, n_faces``. Each chunk's
    model is saved as ``models/cnn/<arch>/chunk<i>.keras`` only once training ends: the
    ModelCheckpoint writes the best epoch to ``chunk<i>.inprogress.keras`` and that file
    is renamed into place, so a killed run never leaves a final-looking partial model.
    Each chunk records what it was made from (:func:`dflib.io.made_from`: the
    configuration and the exact training and validation videos with their face store
    digests); a rerun reuses a finished chunk only when that is unchanged, and says in one
    line why it retrains one otherwise. The manifest records the weights each chunk
    actually used (``none`` where ImageNet weights could not be downloaded).

    The chunks are independent: with ``workers > 0`` (a local Dask cluster) or a
    ``scheduler`` address they train in parallel, one chunk per worker, each seeded and
    built as in the sequential path, with the same files, records and resume behaviour.
    """
    train, val = split_videos(videos)
    parts = balanced_chunks(train, n_chunks(train, cfg.chunks), cfg.seed)
    model_dir(run, cfg.arch).mkdir(parents=True, exist_ok=True)
    run.logs.mkdir(parents=True, exist_ok=True)
    config = asdict(cfg)
    old = read_manifest(manifest_path(run, cfg.arch))
    done = {c["chunk"]: c for c in old["chunk_models"]} if old else {}
    inputs = store_inputs(run, {"train": train, "val": val})  # each store file read once
    manifest: dict[str, Any] = {
        "arch": cfg.arch, "img_size": cfg.img_size, "chunks": len(parts), "config": config,
        "weights_requested": cfg.weights, "weights_used": None,
        "n_train_videos": len(train), "n_val_videos": len(val),
        "n_val_faces": int(val["n_faces"].sum()), "chunk_models": [], "complete": False,
    }
    val_data = FaceBatches(store, val, cfg.batch_size) if val["n_faces"].sum() > 0 else None
    if val_data is None:
        warnings.warn("no validation faces: early stopping and checkpoints follow the "
                      "training loss", stacklevel=2)
    todo = []
    for i, part in enumerate(parts):
        made_from = io.made_from(config, {
            "train": {v: inputs["train"][v] for v in part["video_id"].astype(str)},
            "val": inputs["val"]})
        if i in done and chunk_model_path(run, cfg.arch, i).exists():
            stale = io.stale_reason(done[i].get("made_from"), made_from)
            if not stale:
                manifest["chunk_models"].append(done[i])
                print(f"chunk {i}: {chunk_model_path(run, cfg.arch, i).name} exists, skipped")
                continue
            print(f"chunk {i}: {stale}, retraining")
        todo.append((i, part, made_from))
    for i, part, made_from in todo:
        print(f"chunk {i} of {len(parts)}: {len(part)} videos "
              f"({int((part['label'] == 0).sum())} real, {int(part['label'].sum())} fake), "
              f"{int(part['n_faces'].sum())} faces", flush=True)
        if not (workers > 0 or scheduler):
            manifest["chunk_models"].append(asdict(_fit_chunk(store, i, part, val_data, run,
                                                              cfg, made_from, verbose)))
            _write_manifest(run, manifest)
    if todo and (workers > 0 or scheduler):
        from distributed import as_completed

        from .cluster import dask_client

        with dask_client(workers, scheduler) as client:
            futures = [client.submit(_fit_chunk_task, store, i, part, val, run, cfg, made_from,
                                     verbose, pure=False) for i, part, made_from in todo]
            for fut in as_completed(futures):
                record = fut.result()
                print(f"chunk {record['chunk']}: trained on a Dask worker", flush=True)
                manifest["chunk_models"].append(record)
                _write_manifest(run, manifest)
    manifest["chunk_models"].sort(key=lambda c: c["chunk"])
    manifest["complete"] = True
    # finished_at names this training to what reads it (sequence features, recurrent
    # heads): a rerun that trained nothing keeps it, so they are not redone either.
    same = not todo and old and old.get("complete") and old.get("chunks") == len(parts)
    manifest["finished_at"] = old["finished_at"] if same else time.time()
    _write_manifest(run, manifest)
    return manifest


def chunk_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """One row per chunk model of a training manifest: videos, faces, weights, epochs."""
    return pd.DataFrame(manifest["chunk_models"]).drop(columns=["class_weight", "made_from"],
                                                       errors="ignore")


def training_logs(run: RunPaths, manifest: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Each chunk's CSV log (epoch, loss, accuracy, val_loss, val_accuracy), by chunk name."""
    return {f"chunk {c['chunk']}": pd.read_csv(run.root / c["log"])
            for c in manifest["chunk_models"] if (run.root / c["log"]).exists()}


# --------------------------------------------------------------------------- scoring

def method_name(arch: str, chunk: int | None = None, ensemble: str | None = None) -> str:
    """``cnn/<arch>`` (chunk 0, the single-model figure), ``cnn/<arch>/chunk<i>`` or
    ``cnn/<arch>/<ensemble>``."""
    if ensemble is not None:
        return f"cnn/{arch}/{ensemble}"
    return f"cnn/{arch}" if not chunk else f"cnn/{arch}/chunk{chunk}"


def score_faces(models: Sequence[keras.Model], data: FaceBatches) -> pd.DataFrame:
    """``video_id, frame_idx, label`` and ``score<j>`` = P(fake) of model j for every face;
    each batch is read once for all models."""
    parts = []
    for i in range(len(data)):
        x, _ = data[i]
        keys = data.keys(i)
        for j, model in enumerate(models):
            keys[f"score{j}"] = keras.ops.convert_to_numpy(model.predict_on_batch(x))[:, 1]
        parts.append(keys)
    columns = ["video_id", "frame_idx", "label", *(f"score{j}" for j in range(len(models)))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def penultimate_features(model: keras.Model, data: FaceBatches) -> np.ndarray:
    """The ``features`` layer's activations for every face of ``data``, in order."""
    features = cnn.feature_model(model)
    batches = [keras.ops.convert_to_numpy(features.predict_on_batch(data[i][0]))
               for i in range(len(data))]
    return np.concatenate(batches) if batches else np.zeros((0, features.output_shape[-1]))


def latest_manifest(run: RunPaths) -> dict[str, Any]:
    """The manifest of the most recently completed CNN training of the run."""
    found = [m for p in sorted((run.models / "cnn").glob("*/manifest.json"))
             if (m := read_manifest(p)) and m.get("complete")]
    if not found:
        raise FileNotFoundError(f"{run.models / 'cnn'}: no completed CNN training; "
                                "run stage 'train_cnn' first")
    return max(found, key=lambda m: m["finished_at"])


def chunk_predictions(models: Sequence[keras.Model], arch: str, store: FaceSource,
                      videos: pd.DataFrame, batch_size: int = 32, aggregation: str = "mean",
                      threshold: float = 0.5) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Video and frame predictions of ``videos`` (``video_id, label, n_faces``) by every
    chunk model and, with several chunks, by their ensembles, keyed by method name:
    ``cnn/<arch>`` (chunk 0), ``cnn/<arch>/chunk<i>``, ``cnn/<arch>/boosted`` (majority
    vote of the chunk models' calls, the paper's max voting) and ``cnn/<arch>/boosted_mean``
    (mean probability). Videos without faces keep their row (status ``no_face``).
    Every face the store holds is scored, a frame by its most fake face (a ``faces.
    multi_face: max`` store holds several per frame)."""
    frames = evaluation.max_per_frame(score_faces(
        models, FaceBatches(store, videos, batch_size, every_face=True)))
    keys = frames[["video_id", "frame_idx", "label"]]
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for j in range(len(models)):
        f = keys.assign(score=frames[f"score{j}"])
        out[method_name(arch, j)] = (evaluation.video_predictions(f, videos, aggregation,
                                                                  threshold), f)
    if len(models) > 1:
        members = list(out.values())
        for how, suffix in (("vote", "boosted"), ("mean", "boosted_mean")):
            out[method_name(arch, ensemble=suffix)] = (
                evaluation.ensemble([v for v, _ in members], how, threshold),
                evaluation.ensemble([f for _, f in members], how, threshold))
    return out


@dataclass
class CnnEvaluation:
    """What ``evaluate_chunks`` wrote and what the notebook shows."""

    arch: str
    methods: list[str]
    results: pd.DataFrame
    tsne_before: np.ndarray
    tsne_after: np.ndarray
    tsne_labels: np.ndarray


def evaluate_chunks(store: FaceSource, videos: pd.DataFrame, run: RunPaths,
                    manifest: Mapping[str, Any], aggregation: str = "mean",
                    threshold: float = 0.5, tsne_max_points: int = 2000,
                    scoring: evaluation.Scoring = evaluation.Scoring()) -> CnnEvaluation:
    """Score the validation and test splits with every chunk model, write predictions
    (``predictions/val/`` and ``predictions/``) and results rows.

    ``videos``: the index rows with ``video_id, label, split, n_faces``; the methods are
    those of :func:`chunk_predictions`, each at frame and video level.
    Also returns penultimate features of up to ``tsne_max_points`` test faces from the
    model before training (rebuilt with chunk 0's seed and weights) and after.
    """
    cfg = TrainConfig(**manifest["config"])
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    for c in manifest["chunk_models"]:
        leaked = io.leaked_into(c.get("made_from", {}), test["video_id"])
        if leaked:
            raise ValueError(f"{manifest_path(run, cfg.arch)}: chunk {c['chunk']} was trained "
                             f"on {len(leaked)} video(s) now in the test split ({leaked[0]}"
                             f"{', ...' if len(leaked) > 1 else ''}); rerun stage train_cnn")
    models = [cnn.load_model(run.root / c["model"]) for c in manifest["chunk_models"]]
    val = videos[videos["split"] == "val"].reset_index(drop=True)
    for split, part in (("val", val), ("test", test)):
        scored = chunk_predictions(models, cfg.arch, store, part, cfg.batch_size, aggregation,
                                   threshold)
        for method, (v, f) in scored.items():
            evaluation.write_predictions(run, method, v, f, split=split)
    methods = list(scored)
    evaluation.retire_methods(run, f"cnn/{cfg.arch}", methods)
    results = pd.concat([evaluation.score_method(run, m, threshold, scoring) for m in methods],
                        ignore_index=True)

    sample = FaceBatches(store, test, cfg.batch_size, max_faces=tsne_max_points, seed=cfg.seed)
    seed_everything(cfg.seed)  # the same initial weights as chunk 0 before training
    fresh, _ = cnn.build_model(cfg.arch, cfg.img_size, manifest["chunk_models"][0]["weights_used"],
                               cfg.dropout)
    return CnnEvaluation(cfg.arch, methods, results, penultimate_features(fresh, sample),
                         penultimate_features(models[0], sample), sample.face_labels)
