"""Batches of faces for every Keras detector: the face sources they read, the paper's
augmentation, and :class:`FaceBatches`, a ``keras.utils.PyDataset`` over a face store."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Protocol

import cv2
import keras
import numpy as np
import pandas as pd

LABELS = (0, 1)  # 0 = real, 1 = fake (docs/design.md)


class FaceSource(Protocol):
    """What training reads from a face store (``dflib.face_store.FaceStore`` is one)."""

    def load(self, video_id: str, every_face: bool = False
             ) -> tuple[np.ndarray, np.ndarray]: ...


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
    ``class_weights`` (label: weight) makes each batch ``(faces, labels, weights)``: Keras
    then weighs each face's loss by its class's weight (a balanced validation loss).
    """

    def __init__(self, store: FaceSource, videos: pd.DataFrame, batch_size: int, *,
                 shuffle: bool = False, seed: int = 0, augment: Augmentation | None = None,
                 cache_videos: int = 64, max_faces: int | None = None,
                 workers: int = 1, every_face: bool = False,
                 class_weights: Mapping[int, float] | None = None) -> None:
        # Threads, not processes: OpenCV's warps and NumPy's copies release the GIL, and
        # every batch is a pure function of its index, so workers never change a batch.
        super().__init__(workers=workers, use_multiprocessing=False)
        if batch_size < 1 or cache_videos < 1:
            raise ValueError("batch_size and cache_videos must be at least 1")
        videos = videos[videos["n_faces"] > 0]
        self.store, self.batch_size, self.shuffle, self.seed = store, batch_size, shuffle, seed
        self.augment, self.cache_videos, self.every_face = augment, cache_videos, every_face
        self.class_weights = dict(class_weights) if class_weights is not None else None
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

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        rows = self._rows(i)
        x = np.stack([self._arrays(v)[0][f] for v, f in zip(self._video[rows], self._face[rows])])
        if self.augment is not None:
            x = self.augment(x, np.random.default_rng([self.seed, self.epoch, i]))
        y = self.labels[self._video[rows]]
        if self.class_weights is None:
            return x.astype(np.float32), y
        return x.astype(np.float32), y, np.array([self.class_weights[int(c)] for c in y],
                                                 dtype=np.float32)

    def keys(self, i: int) -> pd.DataFrame:
        """``video_id, frame_idx, label`` of batch ``i``'s faces, in batch order."""
        rows = self._rows(i)
        video, face = self._video[rows], self._face[rows]
        return pd.DataFrame({
            "video_id": self.video_ids[video],
            "frame_idx": [int(self._arrays(v)[1][f]) for v, f in zip(video, face)],
            "label": self.labels[video]})
