"""Temporal detectors: 3D CNNs on face clips, recurrent heads on frame-CNN features.

Two families see time, as in the paper's comparison with frame classifiers:

* **Clip models** (``c3d``, ``conv3d``, ``conv3d_light``) read clips of ``clip_len`` consecutive sampled
  faces from the face store. As in C3D, each face is resized to ``128 x 171`` (scaled
  with ``clip_size``: ``clip_size * 128/112`` by ``clip_size * 171/112``), training takes
  one random ``clip_size`` square crop and a random horizontal flip for the whole clip,
  testing takes the centre crop. A video's score is the mean P(fake) of its clips.
* **Recurrent heads** (``lstm``, ``bilstm``, ``temporal_max``, ``gru``) read the trained
  frame CNN's 512-d ``features`` layer for the first ``seq_len`` faces of a video. Shorter
  videos are zero-padded and carry an explicit boolean mask input, so padding never
  changes a prediction (a ReLU feature vector can be all zeros, so zeros cannot be the
  mask marker).

Short-video rule of the clip models (:func:`clip_windows`): a video with at least
``clip_len`` faces is cut into consecutive non-overlapping windows, plus one last window
ending on its last face when faces are left over; a video with fewer faces (but at least
one) gives one clip padded by repeating its last face up to ``clip_len`` (a still tail
adds no motion, where looping back to the first face would add a jump cut, the kind of
temporal glitch a detector might learn). A video without faces gives no clip; a test
video without faces keeps its prediction row with status ``no_face``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from . import cnn, evaluation, io, training
from .config import RNN_HEADS
from .faces import store_inputs, store_name, store_path
from .paths import RunPaths

CLIP_MODELS = ("c3d", "conv3d", "conv3d_light")
# Part of each clip model's record, so a model saved under a name before its layers
# changed (conv3d was the light variant) is retrained, not reused.
CLIP_ARCHITECTURES = {"c3d": "C3D 64-128-256x2-512x2-512x2, fc 2048x2",
                      "conv3d": "conv3d_model 64-128-128-256-256, fc 2048x2, L2 5e-3",
                      "conv3d_light": "32-64-128 with batch normalisation, GAP, fc 128"}
# C3D's frame size (Tran et al. 2015): resize to 128 x 171, crop 112 x 112.
C3D_RESIZE = (128, 171)
C3D_CROP = 112
FEATURE_DIM = 512
# Videos whose faces stay in memory while clips are cut (each is one store file).
CACHE_VIDEOS = 64
# Keras's default 0.99 needs hundreds of steps before the moving statistics match the
# batches; a short run would then predict with statistics it never trained with.
BN_MOMENTUM = 0.9


# --------------------------------------------------------------------------- clips

def clip_windows(n_faces: int, clip_len: int) -> np.ndarray:
    """Face positions of every clip of a video with ``n_faces`` faces: ``[n_clips, clip_len]``.

    ``n_faces >= clip_len``: windows ``0..T-1, T..2T-1, ...`` and, when faces are left over,
    one more window ending on the last face (it overlaps the one before), so every face
    is seen and no clip is padded. ``0 < n_faces < clip_len``: one clip, the last face
    repeated to fill it. ``n_faces == 0``: no clip.
    """
    if clip_len < 1 or n_faces < 0:
        raise ValueError(f"clip_len must be at least 1 and n_faces at least 0, "
                         f"got {clip_len} and {n_faces}")
    if n_faces == 0:
        return np.zeros((0, clip_len), dtype=np.int64)
    if n_faces < clip_len:
        return np.minimum(np.arange(clip_len), n_faces - 1)[None, :]
    starts = list(range(0, n_faces - clip_len + 1, clip_len))
    if starts[-1] + clip_len < n_faces:
        starts.append(n_faces - clip_len)
    return np.asarray(starts, dtype=np.int64)[:, None] + np.arange(clip_len)


def resize_shape(clip_size: int) -> tuple[int, int]:
    """``(height, width)`` faces are resized to before cropping ``clip_size``: C3D's
    128 x 171 for 112 px crops, scaled proportionally for other sizes."""
    height, width = C3D_RESIZE
    return round(clip_size * height / C3D_CROP), round(clip_size * width / C3D_CROP)


def prepare_clip(faces: np.ndarray, clip_size: int,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Resize a clip's faces ``uint8 [T, S, S, 3]`` and crop them to ``float32 [T, c, c, 3]``
    (0-255). With ``rng``: one random crop and a coin-flip horizontal flip, the same for
    every frame (a clip must stay one continuous shot); without: the centre crop."""
    h, w = resize_shape(clip_size)
    interp = cv2.INTER_AREA if faces.shape[1] > h else cv2.INTER_LINEAR
    resized = np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in faces])
    if rng is None:
        top, left, flip = (h - clip_size) // 2, (w - clip_size) // 2, False
    else:
        top, left = int(rng.integers(h - clip_size + 1)), int(rng.integers(w - clip_size + 1))
        flip = bool(rng.integers(2))
    clip = resized[:, top:top + clip_size, left:left + clip_size]
    return (clip[:, :, ::-1] if flip else clip).astype(np.float32)


class ClipBatches(training.FaceBatches):
    """Batches ``(clips float32 0-255 [b, T, c, c, 3], labels [b])`` streamed from a store.

    The frame CNN's :class:`~dflib.training.FaceBatches` with clips in place of faces: the
    same bounded video cache and the same epoch order (videos shuffled in windows of
    ``cache_videos``, samples shuffled inside a window). ``videos`` needs ``video_id,
    label, n_faces``; videos without faces give no clip. ``augment``: random crop + flip
    (seeded by ``seed``, the epoch and the batch), else the centre crop.
    """

    def __init__(self, store: training.FaceSource, videos: pd.DataFrame, clip_len: int,
                 clip_size: int, batch_size: int, *, shuffle: bool = False,
                 augment: bool = False, seed: int = 0,
                 cache_videos: int = CACHE_VIDEOS) -> None:
        super().__init__(store, videos, batch_size, shuffle=shuffle, seed=seed,
                         cache_videos=cache_videos)
        self.clip_len, self.clip_size, self.augment_clips = clip_len, clip_size, augment
        self.windows = [clip_windows(int(n), clip_len) for n in self.n_faces]
        # The parent's flat sample index, re-pointed from faces to clips.
        self._video = np.repeat(np.arange(len(self.video_ids)), [len(w) for w in self.windows])
        self._face = np.concatenate([np.arange(len(w)) for w in self.windows]
                                    or [np.zeros(0, np.int64)])
        self._order = self._epoch_order()

    @property
    def clips_per_video(self) -> np.ndarray:
        return np.array([len(w) for w in self.windows], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(i)
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.augment_clips else None
        x = np.stack([prepare_clip(self._arrays(v)[0][self.windows[v][c]], self.clip_size, rng)
                      for v, c in zip(self._video[rows], self._face[rows])])
        return x, self.labels[self._video[rows]]

    def keys(self, i: int) -> pd.DataFrame:
        """``video_id, frame_idx`` (of the clip's first face), ``label, clip, padded``."""
        rows = self._rows(i)
        video, clip = self._video[rows], self._face[rows]
        return pd.DataFrame({
            "video_id": self.video_ids[video],
            "frame_idx": [int(self._arrays(v)[1][self.windows[v][c][0]])
                          for v, c in zip(video, clip)],
            "label": self.labels[video], "clip": clip,
            "padded": self.n_faces[video] < self.clip_len})


# --------------------------------------------------------------------------- clip models

def _conv(x: Any, filters: int, name: str) -> Any:
    return layers.Conv3D(filters, 3, padding="same", activation="relu", name=name)(x)


def build_c3d(clip_len: int, clip_size: int, dropout: float = 0.5) -> keras.Model:
    """C3D (Tran et al. 2015): conv groups of 64, 128, 256x2, 512x2, 512x2 filters of
    3x3x3, pool1 spatial only, pools 2-5 over time and space, then two fully connected
    layers of 2048 (the original study's script; C3D's own have 4096) with dropout and a
    2-way softmax. Pools pad ("same"), so short clips
    and small crops keep at least one cell instead of vanishing."""
    inputs = keras.Input((clip_len, clip_size, clip_size, 3), name="clips")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = _conv(x, 64, "conv1a")
    x = layers.MaxPooling3D((1, 2, 2), padding="same", name="pool1")(x)
    x = _conv(x, 128, "conv2a")
    x = layers.MaxPooling3D(2, padding="same", name="pool2")(x)
    for group, filters in ((3, 256), (4, 512), (5, 512)):
        x = _conv(x, filters, f"conv{group}a")
        x = _conv(x, filters, f"conv{group}b")
        x = layers.MaxPooling3D(2, padding="same", name=f"pool{group}")(x)
    x = layers.Flatten(name="flatten")(x)
    for fc in (6, 7):
        x = layers.Dense(2048, activation="relu", name=f"fc{fc}")(x)
        x = layers.Dropout(dropout, name=f"dropout{fc}")(x)
    outputs = layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs, name="c3d")


CONV3D_L2 = 5e-3


def build_conv3d(clip_len: int, clip_size: int, dropout: float = 0.5) -> keras.Model:
    """The original study's ``conv3d_model``: five 3x3x3 convolutions of 64, 128, 128, 256
    and 256 filters, each followed by a max pool, the first over space only (its (2, 2, 1)
    in the script's height-width-time layout), the others 2x2x2 as in C3D; two fully
    connected layers of 2048 with dropout, a 2-way softmax, and L2 5e-3 on every kernel.
    Pools pad ("same") so short clips and small crops keep at least one cell."""
    reg = keras.regularizers.L2(CONV3D_L2)
    inputs = keras.Input((clip_len, clip_size, clip_size, 3), name="clips")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    for i, filters in enumerate((64, 128, 128, 256, 256), start=1):
        x = layers.Conv3D(filters, 3, padding="same", activation="relu",
                          kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.MaxPooling3D((1, 2, 2) if i == 1 else 2, padding="same", name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for fc in (1, 2):
        x = layers.Dense(2048, activation="relu", kernel_regularizer=reg, name=f"fc{fc}")(x)
        x = layers.Dropout(dropout, name=f"dropout{fc}")(x)
    outputs = layers.Dense(2, activation="softmax", kernel_regularizer=reg,
                           name=cnn.PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs, name="conv3d")


def build_conv3d_light(clip_len: int, clip_size: int, dropout: float = 0.5) -> keras.Model:
    """A light 3D CNN, not the original study's: three 3x3x3 conv blocks (32, 64, 128 filters) with batch
    normalisation, global average pooling, Dense 128, dropout, 2-way softmax: about 1 %
    of C3D's weights, and batch normalisation makes plain SGD from scratch converge faster."""
    inputs = keras.Input((clip_len, clip_size, clip_size, 3), name="clips")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    for i, (filters, pool) in enumerate(((32, (1, 2, 2)), (64, 2), (128, 2)), start=1):
        x = layers.Conv3D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        x = layers.MaxPooling3D(pool, padding="same", name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs, name="conv3d_light")


def build_clip_model(name: str, clip_len: int, clip_size: int, dropout: float = 0.5) -> keras.Model:
    """``c3d``, ``conv3d`` or ``conv3d_light`` for clips ``float32 0-255 [T, c, c, 3]``;
    not compiled."""
    builders = {"c3d": build_c3d, "conv3d": build_conv3d, "conv3d_light": build_conv3d_light}
    if name not in builders:
        raise ValueError(f"unknown clip model {name!r}; choose one of {CLIP_MODELS}")
    return builders[name](clip_len, clip_size, dropout)


# --------------------------------------------------------------------------- recurrent heads

@keras.saving.register_keras_serializable(package="dflib")
class MaskedTemporalMax(layers.Layer):
    """Max over time of ``[b, T, d]`` counting only the steps the mask keeps.

    Masked steps are replaced by -inf before the max, so whatever they hold (an RNN's
    output for padding, large values) cannot win; a sequence with no kept step gives 0.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x: Any, mask: Any = None) -> Any:
        if mask is None:
            return ops.max(x, axis=1)
        keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
        pooled = ops.max(ops.where(keep, x, float("-inf")), axis=1)
        return ops.where(ops.any(keep, axis=1), pooled, ops.zeros_like(pooled))

    def compute_mask(self, x: Any, mask: Any = None) -> None:
        return None  # time is gone

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])


def build_head(name: str, feature_dim: int = FEATURE_DIM, dropout: float = 0.5) -> keras.Model:
    """A recurrent head on sequences of frame features; not compiled.

    Inputs ``{"features": float32 [b, T, d], "mask": bool [b, T]}`` (T free, True on real
    steps, padding at the end); output the 2-way softmax. ``lstm``: LSTM 32.
    ``bilstm``: BiLSTM 256 (sequences) then LSTM 32. ``temporal_max``: BiLSTM 256
    (sequences) then max over the unmasked steps. ``gru``: BiGRU 256.
    """
    feats = keras.Input((None, feature_dim), name="features")
    mask = keras.Input((None,), dtype="bool", name="mask")
    if name == "lstm":
        x = layers.LSTM(32, name="lstm")(feats, mask=mask)
    elif name == "bilstm":
        x = layers.Bidirectional(layers.LSTM(256, return_sequences=True), name="bilstm")(
            feats, mask=mask)
        x = layers.LSTM(32, name="lstm")(x)  # the mask travels with x
    elif name == "temporal_max":
        x = layers.Bidirectional(layers.LSTM(256, return_sequences=True), name="bilstm")(
            feats, mask=mask)
        x = MaskedTemporalMax(name="temporal_max")(x)
    elif name == "gru":
        x = layers.Bidirectional(layers.GRU(256), name="bigru")(feats, mask=mask)
    else:
        raise ValueError(f"unknown recurrent head {name!r}; choose one of {RNN_HEADS}")
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(x)
    return keras.Model({"features": feats, "mask": mask}, outputs, name=f"rnn_{name}")


@dataclass(frozen=True)
class Sequences:
    """Zero-padded feature sequences of some videos: ``features [n, L, d]``, ``lengths [n]``."""

    video_ids: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return np.arange(self.features.shape[1])[None, :] < self.lengths[:, None]

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """What :func:`build_head` models take."""
        return {"features": self.features, "mask": self.mask}


def pad_sequences(per_video: Sequence[np.ndarray], seq_len: int,
                  feature_dim: int = FEATURE_DIM) -> tuple[np.ndarray, np.ndarray]:
    """Stack each video's ``[k, d]`` features into ``[n, seq_len, d]`` (the first
    ``seq_len`` steps, zeros after) and return it with the lengths kept."""
    out = np.zeros((len(per_video), seq_len, feature_dim), dtype=np.float32)
    lengths = np.zeros(len(per_video), dtype=np.int64)
    for i, f in enumerate(per_video):
        lengths[i] = min(len(f), seq_len)
        out[i, :lengths[i]] = f[:lengths[i]]
    return out, lengths


def predict_scores(model: keras.Model, x: Any, batch_size: int = 32) -> np.ndarray:
    """P(fake) for every sample of ``x`` (arrays, a dict of arrays, or a PyDataset)."""
    if isinstance(x, keras.utils.PyDataset):
        return np.concatenate([keras.ops.convert_to_numpy(model.predict_on_batch(x[i][0]))[:, 1]
                               for i in range(len(x))] or [np.zeros(0)])
    return model.predict(x, batch_size=batch_size, verbose=0)[:, 1]


# --------------------------------------------------------------------------- sequence features

def features_dir(run: RunPaths, arch: str) -> Path:
    """``features/cnn_seq/<arch>/``: one ``.npz`` per video and the manifest."""
    return run.features / "cnn_seq" / arch


def _store_config(run: RunPaths, video_id: str) -> str | None:
    """The settings of a video's face store file (None when it has none)."""
    try:
        with np.load(store_path(run, video_id)) as z:
            return str(z["config"])
    except (OSError, KeyError, ValueError):
        return None


def _file_config(run: RunPaths, manifest: Mapping[str, Any], seq_len: int,
                 video_id: str) -> str | None:
    store = _store_config(run, video_id)
    if store is None:
        return None
    return json.dumps({"cnn": manifest["chunk_models"][0]["model"],
                       "cnn_finished_at": manifest["finished_at"], "seq_len": seq_len,
                       "faces": store}, sort_keys=True)


def _stored_config(target: Path) -> str | None:
    try:
        with np.load(target) as z:
            return str(z["config"])
    except Exception:  # noqa: BLE001 - missing, unreadable or an older layout: redo it
        return None


def extract_sequence_features(store: training.FaceSource, videos: pd.DataFrame, run: RunPaths,
                              manifest: Mapping[str, Any], seq_len: int,
                              batch_size: int = 32) -> pd.DataFrame:
    """Write the frame CNN's ``features`` for the first ``seq_len`` faces of every video.

    The CNN is chunk 0 of the training ``manifest`` (the ``cnn/<arch>`` model). One file
    per video, written atomically; a file made with the same CNN, ``seq_len`` and face
    store settings is kept (status ``skipped``). Returns ``video_id, n_steps, status``
    (``extracted``, ``skipped``, ``no_store``, or ``failed`` when the store file cannot be
    read).
    """
    folder = features_dir(run, manifest["arch"])
    folder.mkdir(parents=True, exist_ok=True)
    extractor = None
    rows = []
    for vid in videos["video_id"].astype(str):
        config = _file_config(run, manifest, seq_len, vid)
        target = folder / f"{store_name(vid)}.npz"
        if config is None:
            target.unlink(missing_ok=True)  # a file of an earlier run must not be read later
            rows.append((vid, 0, "no_store"))
            continue
        if _stored_config(target) == config:
            with np.load(target) as z:
                rows.append((vid, len(z["features"]), "skipped"))
            continue
        if extractor is None:  # loading the CNN is the slow part of a rerun: only if needed
            cnn_path = run.root / manifest["chunk_models"][0]["model"]
            extractor = cnn.feature_model(cnn.load_model(cnn_path))
        try:
            faces, frame_idx = store.load(vid)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            target.unlink(missing_ok=True)
            rows.append((vid, 0, "failed"))  # the stage summary counts it; the run goes on
            continue
        faces, frame_idx = faces[:seq_len], np.asarray(frame_idx)[:seq_len]
        feats = (np.zeros((0, FEATURE_DIM), np.float32) if len(faces) == 0
                 else _features(extractor, faces, batch_size))
        io.write_npz(target, features=feats.astype(np.float32), frame_idx=frame_idx,
                     video_id=np.array(vid), config=np.array(config))
        rows.append((vid, len(feats), "extracted"))
    table = pd.DataFrame(rows, columns=["video_id", "n_steps", "status"])
    io.write_text(json.dumps({
        "arch": manifest["arch"], "cnn_model": manifest["chunk_models"][0]["model"],
        "cnn_finished_at": manifest["finished_at"], "layer": cnn.FEATURES_LAYER,
        "seq_len": seq_len, "videos": int((~table["status"].isin(["no_store", "failed"])).sum()),
        "no_store": table.loc[table["status"] == "no_store", "video_id"].tolist()},
        indent=2) + "\n", folder / "manifest.json")
    return table


def clip_counts(videos: pd.DataFrame, clip_len: int) -> pd.DataFrame:
    """Per split and label: faces, clips, videos shorter than one clip, videos without faces."""
    counts = videos.assign(
        clips=[len(clip_windows(int(n), clip_len)) for n in videos["n_faces"]],
        short=videos["n_faces"].between(1, clip_len - 1), no_face=videos["n_faces"] == 0)
    return counts.groupby(["split", "label"])[["n_faces", "clips", "short", "no_face"]].sum()


def load_sequences(run: RunPaths, arch: str, videos: pd.DataFrame, seq_len: int) -> Sequences:
    """The stored feature sequences of ``videos`` that have at least one face, padded."""
    folder = features_dir(run, arch)
    ids, labels, feats = [], [], []
    for vid, label in zip(videos["video_id"].astype(str), videos["label"]):
        target = folder / f"{store_name(vid)}.npz"
        if not target.is_file():
            continue
        with np.load(target) as z:
            f = z["features"]
        if len(f):
            ids.append(vid)
            labels.append(int(label))
            feats.append(f)
    x, lengths = pad_sequences(feats, seq_len)
    return Sequences(np.array(ids, dtype=object), np.array(labels, dtype=np.int64), x, lengths)


# --------------------------------------------------------------------------- training

@dataclass
class ModelRecord:
    """What one temporal model's training did, kept in its ``.json`` beside the model."""

    name: str
    method: str
    config: dict[str, Any]
    n_train: int = 0
    n_val: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    best_monitor: float = float("nan")
    monitor: str = "val_loss"
    seconds: float = 0.0
    model: str = ""
    log: str = ""
    class_weight: dict[str, float] = field(default_factory=dict)
    complete: bool = False
    made_from: dict[str, Any] = field(default_factory=dict)  # io.made_from: settings, videos


def model_paths(run: RunPaths, family: str, name: str) -> tuple[Path, Path, Path]:
    """``(models/<family>/<name>.keras, its .json record, logs/<family>_<name>.csv)``."""
    folder = run.models / family
    return folder / f"{name}.keras", folder / f"{name}.json", run.logs / f"{family}_{name}.csv"


def finished_record(run: RunPaths, family: str, name: str,
                    made_from: Mapping[str, Any]) -> tuple[ModelRecord | None, str]:
    """The record of a finished model made from ``made_from`` (:func:`dflib.io.made_from`:
    configuration and videos), or None and why it must be (re)trained ("" when there is
    no finished model)."""
    final, record_path, _ = model_paths(run, family, name)
    if not (final.exists() and record_path.exists()):
        return None, ""
    record = ModelRecord(**json.loads(record_path.read_text(encoding="utf-8")))
    if not record.complete:
        return None, ""
    stale = io.stale_reason(record.made_from, made_from)
    return (None, stale) if stale else (record, "")


def fit_model(model: keras.Model, run: RunPaths, record: ModelRecord, family: str, data: Any,
              y: np.ndarray | None = None, validation: Any = None, *, epochs: int,
              batch_size: int | None = None, patience: int,
              class_weight: dict[int, float] | None = None, verbose: int = 2) -> ModelRecord:
    """Train a compiled model with the frame CNN's callbacks and save it atomically.

    EarlyStopping on ``val_loss`` (``loss`` without validation data) restores the best
    epoch; the best epoch is checkpointed to ``<name>.inprogress.keras`` and renamed to
    ``<name>.keras`` only when training ends, so a killed run never leaves a final-looking
    partial model. The record is written last: its ``complete`` flag is what reruns trust.
    """
    final, record_path, log = model_paths(run, family, record.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    record.monitor = "val_loss" if validation is not None else "loss"
    record.model, record.log = str(final.relative_to(run.root)), str(log.relative_to(run.root))
    record.class_weight = {str(c): w for c, w in (class_weight or {}).items()}
    training.fit_and_save(model, final, log, record, data, validation=validation, epochs=epochs,
                          patience=patience, class_weight=class_weight, y=y,
                          batch_size=batch_size, verbose=verbose)
    record.complete = True
    io.write_text(json.dumps(asdict(record), indent=2) + "\n", record_path)
    return record


def load_model(path: str | Path) -> keras.Model:
    """Load a saved clip model or recurrent head (custom layers registered here)."""
    return keras.saving.load_model(path, compile=False,
                                   custom_objects={"MaskedTemporalMax": MaskedTemporalMax})


def _balanced(labels: np.ndarray, samples: np.ndarray, enabled: bool) -> dict[int, float] | None:
    """Class weights counted over training samples (clips or sequences), or None."""
    if not enabled:
        return None
    return training.class_weights(pd.DataFrame({"label": labels, "n_faces": samples}))


@dataclass
class TemporalResult:
    """What a temporal stage wrote and what its notebook shows."""

    root: Path
    methods: list[str]
    records: dict[str, ModelRecord]
    results: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    features: pd.DataFrame | None = None  # the recurrent stage's feature files

    def training_table(self) -> pd.DataFrame:
        """One row per model: samples it trained and validated on, epochs, best epoch, time."""
        return pd.DataFrame([{"method": m, "n_train": r.n_train, "n_val": r.n_val,
                              "epochs": r.epochs_run, "best_epoch": r.best_epoch,
                              "seconds": r.seconds} for m, r in self.records.items()],
                            columns=["method", "n_train", "n_val", "epochs", "best_epoch",
                                     "seconds"])

    @property
    def logs(self) -> dict[str, pd.DataFrame]:
        """Each model's CSV training log, by method (for ``plots.training_curves_figure``)."""
        return {m: pd.read_csv(self.root / r.log) for m, r in self.records.items()
                if (self.root / r.log).exists()}


def _video_rows(scored: pd.DataFrame, test: pd.DataFrame, steps: Mapping[str, int],
                threshold: float) -> pd.DataFrame:
    """One prediction row per test video from per-sample scores (clips or sequences):
    mean over a video's samples; ``n_frames`` = faces the samples cover; videos without
    a sample keep their row (``evaluation.video_predictions``: status ``no_face``)."""
    rows = evaluation.video_predictions(scored, test, "mean", threshold)
    rows["n_samples"] = rows["n_frames"]
    rows["n_frames"] = rows["video_id"].map(steps).fillna(0).astype(int)
    return rows


# --------------------------------------------------------------------------- stage: clips

def clip_config(model: str, shared: Mapping[str, Any],
                section: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that decides a clip model."""
    keys = ("clip_len", "clip_size", "epochs", "batch_size", "learning_rate", "momentum",
            "patience", "dropout", "class_weight")
    return {"model": model, "architecture": CLIP_ARCHITECTURES[model],
            "img_size": shared["img_size"], "seed": shared["seed"],
            **{k: section[k] for k in keys}}


def train_clip_models(store: training.FaceSource, videos: pd.DataFrame, run: RunPaths,
                      shared: Mapping[str, Any], section: Mapping[str, Any],
                      threshold: float = 0.5, verbose: int = 2,
                      scoring: evaluation.Scoring = evaluation.Scoring()) -> TemporalResult:
    """Train (or reuse) every clip model of ``section["models"]``, score the validation
    and test splits, write predictions and results rows under the model's name (``c3d``,
    ``conv3d``).

    ``videos``: the index with ``video_id, label, split, n_faces``. SGD with Nesterov
    momentum, as C3D was trained; a model whose record shows the same configuration is
    not retrained.
    """
    train, val = training.split_videos(videos)
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    clip_len, size, batch = section["clip_len"], section["clip_size"], section["batch_size"]
    records, predictions = {}, {}
    inputs = store_inputs(run, {"train": train, "val": val})
    for name in section["models"]:
        config = clip_config(name, shared, section)
        made_from = io.made_from(config, inputs)
        record, stale = finished_record(run, "c3d", name, made_from)
        if stale:
            print(f"{name}: {stale}, retraining")
        if record is None:
            training.seed_everything(shared["seed"])
            data = ClipBatches(store, train, clip_len, size, batch, shuffle=True, augment=True,
                               seed=shared["seed"])
            val_data = ClipBatches(store, val, clip_len, size, batch)
            model = build_clip_model(name, clip_len, size, section["dropout"])
            model.compile(optimizer=keras.optimizers.SGD(section["learning_rate"],
                                                         momentum=section["momentum"],
                                                         nesterov=True),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            print(f"{name}: {model.count_params():,} weights, {data.n_samples} training clips, "
                  f"{val_data.n_samples} validation clips", flush=True)
            record = fit_model(
                model, run, ModelRecord(name, name, config, data.n_samples, val_data.n_samples,
                                        made_from=made_from),
                "c3d", data, validation=val_data if val_data.n_samples else None,
                epochs=section["epochs"], patience=section["patience"],
                class_weight=_balanced(data.labels, data.clips_per_video,
                                       section["class_weight"]), verbose=verbose)
        else:
            print(f"{name}: {record.model} exists with this configuration, skipped")
        records[name] = record
        evaluate_clip_model(store, val, run, record, threshold, "val")
        predictions[name] = evaluate_clip_model(store, test, run, record, threshold)
    return _finish(run, CLIP_MODELS, records, predictions, threshold, scoring=scoring)


def clip_predictions(model: keras.Model, config: Mapping[str, Any], store: training.FaceSource,
                     videos: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Video predictions of a clip model (``config``: its record's configuration): the
    mean P(fake) over every centre-cropped clip of a video. Columns add ``n_samples``
    (clips) and ``padded`` (the video was shorter than one clip)."""
    data = ClipBatches(store, videos, config["clip_len"], config["clip_size"],
                       config["batch_size"])
    clips = pd.concat([data.keys(i) for i in range(len(data))] or
                      [pd.DataFrame(columns=["video_id", "frame_idx", "label", "clip", "padded"])],
                      ignore_index=True)
    clips["score"] = predict_scores(model, data)
    steps = dict(zip(data.video_ids, data.n_faces.tolist()))
    rows = _video_rows(clips, videos, steps, threshold)
    rows["padded"] = (rows["n_frames"] > 0) & (rows["n_frames"] < config["clip_len"])
    return rows


def evaluate_clip_model(store: training.FaceSource, videos: pd.DataFrame, run: RunPaths,
                        record: ModelRecord, threshold: float = 0.5,
                        split: str = "test") -> pd.DataFrame:
    """Score ``videos`` (one split) with a saved clip model and write its predictions
    (``predictions/<method>.csv``, or under ``predictions/val/``; see :func:`clip_predictions`)."""
    rows = clip_predictions(load_model(run.root / record.model), record.config, store, videos,
                            threshold)
    evaluation.write_predictions(run, record.method, rows, split=split)
    return rows


def _finish(run: RunPaths, families: Sequence[str], records: dict[str, ModelRecord],
            predictions: dict[str, pd.DataFrame], threshold: float,
            features: pd.DataFrame | None = None,
            scoring: evaluation.Scoring = evaluation.Scoring()) -> TemporalResult:
    methods = [r.method for r in records.values()]
    for family in families:
        evaluation.retire_methods(run, family, methods)
    results = pd.concat([evaluation.score_method(run, m, threshold, scoring) for m in methods],
                        ignore_index=True) if methods else evaluation.results_table(run).iloc[:0]
    return TemporalResult(run.root, methods, {r.method: r for r in records.values()}, results,
                          {records[k].method: v for k, v in predictions.items()}, features)


# --------------------------------------------------------------------------- stage: heads

def head_config(head: str, shared: Mapping[str, Any], section: Mapping[str, Any],
                features: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that decides a recurrent head, the features' origin included."""
    keys = ("seq_len", "epochs", "batch_size", "learning_rate", "patience", "dropout",
            "class_weight")
    return {"head": head, "seed": shared["seed"], "features": dict(features),
            **{k: section[k] for k in keys}}


def head_predictions(model: keras.Model, sequences: Sequences, videos: pd.DataFrame,
                     batch_size: int = 32, threshold: float = 0.5) -> pd.DataFrame:
    """Video predictions of a recurrent head: one P(fake) per feature sequence; videos of
    ``videos`` without a sequence (no face) keep their row with status ``no_face``."""
    scored = pd.DataFrame({"video_id": sequences.video_ids, "frame_idx": 0,
                           "label": sequences.labels,
                           "score": predict_scores(model, sequences.inputs, batch_size)
                           if len(sequences.labels) else np.zeros(0)})
    steps = dict(zip(sequences.video_ids, sequences.lengths.tolist()))
    return _video_rows(scored, videos, steps, threshold)


def sequence_features(model: keras.Model, store: training.FaceSource, videos: pd.DataFrame,
                      seq_len: int, batch_size: int = 32) -> Sequences:
    """Padded ``features``-layer sequences of the first ``seq_len`` faces of each video with
    a face, computed in memory (``model``: a frame CNN's :func:`cnn.feature_model`)."""
    ids, labels, feats = [], [], []
    for vid, label in zip(videos["video_id"].astype(str), videos["label"]):
        faces = store.load(vid)[0][:seq_len]
        if len(faces):
            ids.append(vid)
            labels.append(int(label))
            feats.append(_features(model, faces, batch_size))
    x, lengths = pad_sequences(feats, seq_len)
    return Sequences(np.array(ids, dtype=object), np.array(labels, dtype=np.int64), x, lengths)


def _features(model: keras.Model, faces: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([keras.ops.convert_to_numpy(model.predict_on_batch(
        faces[i:i + batch_size].astype(np.float32))) for i in range(0, len(faces), batch_size)])


def train_heads(store: training.FaceSource, videos: pd.DataFrame, run: RunPaths,
                shared: Mapping[str, Any], section: Mapping[str, Any],
                threshold: float = 0.5, verbose: int = 2,
                scoring: evaluation.Scoring = evaluation.Scoring()) -> TemporalResult:
    """Sequence features from the run's latest frame CNN (chunk 0), then every head of
    ``section["models"]`` trained (or reused) on chunk 0's training videos and scored as
    ``rnn/<head>``.

    Adam on whole videos (one sequence each); a head whose record shows the same
    configuration and the same features is not retrained.
    """
    manifest = training.latest_manifest(run)
    seq_len = section["seq_len"]
    table = extract_sequence_features(store, videos, run, manifest, seq_len,
                                      section["batch_size"])
    # The features come from chunk 0's CNN, which trained on every real training video and
    # a share of the fakes: heads trained on all training videos would learn "the CNN has
    # seen this video" as "real". They train on chunk 0's videos only, all seen alike.
    origin = {"arch": manifest["arch"], "cnn_finished_at": manifest["finished_at"],
              "train_videos": "chunk 0"}
    _, val = training.split_videos(videos)
    train = training.chunk_videos(videos, manifest, 0)
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    train_seq, val_seq, test_seq = (load_sequences(run, manifest["arch"], v, seq_len)
                                    for v in (train, val, test))
    inputs = store_inputs(run, {"train": train[train["video_id"].isin(train_seq.video_ids)],
                                "val": val[val["video_id"].isin(val_seq.video_ids)]})
    records, predictions = {}, {}
    for head in section["models"]:
        config = head_config(head, shared, section, origin)
        made_from = io.made_from(config, inputs)
        record, stale = finished_record(run, "rnn", head, made_from)
        if stale:
            print(f"rnn/{head}: {stale}, retraining")
        if record is None:
            training.seed_everything(shared["seed"])
            model = build_head(head, train_seq.features.shape[-1], section["dropout"])
            model.compile(optimizer=keras.optimizers.Adam(section["learning_rate"]),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            weights = _balanced(train_seq.labels, np.ones(len(train_seq.labels), np.int64),
                                section["class_weight"])
            validation = (val_seq.inputs, val_seq.labels) if len(val_seq.labels) else None
            record = fit_model(
                model, run, ModelRecord(head, f"rnn/{head}", config, len(train_seq.labels),
                                        len(val_seq.labels), made_from=made_from),
                "rnn", train_seq.inputs, train_seq.labels, validation,
                epochs=section["epochs"], batch_size=section["batch_size"],
                patience=section["patience"], class_weight=weights, verbose=verbose)
        else:
            print(f"rnn/{head}: {record.model} exists with this configuration, skipped")
        model = load_model(run.root / record.model)
        evaluation.write_predictions(run, record.method, head_predictions(
            model, val_seq, val, section["batch_size"], threshold),
            split="val")
        rows = head_predictions(model, test_seq, test, section["batch_size"], threshold)
        evaluation.write_predictions(run, record.method, rows)
        records[head], predictions[head] = record, rows
    return _finish(run, ("rnn",), records, predictions, threshold, table, scoring)
