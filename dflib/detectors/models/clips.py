"""The 3D-CNN family (``c3d``, ``conv3d``, ``conv3d_light``, ``conv3d_diff``): clips of face-store faces, the
models, their training and their predictions.

A clip model reads clips of ``clip_len`` consecutive sampled faces from the face store. As
in C3D, each face is resized to ``128 x 171`` (scaled with ``clip_size``: ``clip_size *
128/112`` by ``clip_size * 171/112``), training takes one random ``clip_size`` square crop
and a random horizontal flip for the whole clip, testing takes the centre crop. A video's
score is the mean P(fake) of its clips.

Short-video rule (:func:`clip_windows`): a video with at least ``clip_len`` faces is cut
into consecutive non-overlapping windows, plus one last window ending on its last face when
faces are left over; a video with fewer faces (but at least one) gives one clip padded by
repeating its last face up to ``clip_len`` (a still tail adds no motion, where looping back
to the first face would add a jump cut, the kind of temporal glitch a detector might
learn). A video without faces gives no clip; a test video without faces keeps its
prediction row with status ``no_face``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import keras
import numpy as np
import pandas as pd
from keras import layers

from ... import evaluation, io, statistics
from . import batches, cnn, cnn_training, fitting
from .clips_fields import TRAIN_C3D
from ...face_store import store_inputs
from .fitting import (ModelRecord, TemporalResult, finish_temporal_stage, finished_record,
                      fit_model, predict_scores, sample_class_weights, sample_video_rows,
                      saved_record)
from ...paths import RunPaths
from ...vocabulary import CLIP_MODELS

# conv3d_diff's faces are averaged down to DIFF_GRID x DIFF_GRID cells before differencing.
DIFF_GRID = 4
# Part of each clip model's record, so a model saved under a name before its layers
# changed (conv3d was the light variant) is retrained, not reused.
CLIP_ARCHITECTURES = {"c3d": "C3D 64-128-256x2-512x2-512x2, fc 2048x2",
                      "conv3d": "conv3d_model 64-128-128-256-256, pool1 (2, 2, 1) TxHxW, fc 2048x2, "
                                "L2 5e-3",
                      "conv3d_light": "32-64-128 with batch normalisation, GAP, fc 128",
                      "conv3d_diff": f"frame differences of {DIFF_GRID}x{DIFF_GRID}-cell faces "
                                     "less each frame's mean, x0.1, conv 16 (3x1x1), "
                                     "conv 16 (1x2x2), GAP"}
# C3D's frame size (Tran et al. 2015): resize to 128 x 171, crop 112 x 112.
C3D_RESIZE = (128, 171)
C3D_CROP = 112
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


class ClipBatches(batches.FaceBatches):
    """Batches ``(clips float32 0-255 [b, T, c, c, 3], labels [b])`` streamed from a store.

    The frame CNN's :class:`~dflib.detectors.models.batches.FaceBatches` with clips in place of faces: the
    same bounded video cache and the same epoch order (videos shuffled in windows of
    ``cache_videos``, samples shuffled inside a window). ``videos`` needs ``video_id,
    label, n_faces``; videos without faces give no clip. ``augment``: random crop + flip
    (seeded by ``seed``, the epoch and the batch), else the centre crop.
    """

    def __init__(self, store: batches.FaceSource, videos: pd.DataFrame, clip_len: int,
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
# The script's first pool, in its (and this module's) time x height x width order.
CONV3D_POOL1 = (2, 2, 1)


def build_conv3d(clip_len: int, clip_size: int, dropout: float = 0.5) -> keras.Model:
    """The original study's ``conv3d_model``: five 3x3x3 convolutions of 64, 128, 128, 256
    and 256 filters, each followed by a max pool, the first (2, 2, 1), the others 2x2x2;
    two fully connected layers of 2048 with dropout, a 2-way softmax, and L2 5e-3 on every
    kernel. The script feeds time x height x width, the layout used here, so its first
    pool halves time and height and keeps the width (not C3D's space-only first pool).
    Pools pad ("same") so short clips and small crops keep at least one cell."""
    reg = keras.regularizers.L2(CONV3D_L2)
    inputs = keras.Input((clip_len, clip_size, clip_size, 3), name="clips")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    for i, filters in enumerate((64, 128, 128, 256, 256), start=1):
        x = layers.Conv3D(filters, 3, padding="same", activation="relu",
                          kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.MaxPooling3D(CONV3D_POOL1 if i == 1 else 2, padding="same", name=f"pool{i}")(x)
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
    return keras.Model(inputs, _light_layers(x, dropout), name="conv3d_light")


# conv3d_diff's input scale: frame differences of a few grey levels, brought near unit size
# so that default initialisation and Adam's steps fit them (there is no normalisation layer).
DIFF_SCALE = 0.1
DIFF_FILTERS = 16


def build_conv3d_diff(clip_len: int, clip_size: int, dropout: float = 0.0) -> keras.Model:
    """A small 3D CNN on how the coarse regions of a face change colour from frame to frame,
    relative to the whole face; not the original study's.

    Each face is averaged down to ``DIFF_GRID x DIFF_GRID`` cells (``clip_size //
    DIFF_GRID`` pixels a side), each frame's mean over the cells is subtracted (a change of
    light or camera gain moves every cell alike and is removed), consecutive frames are
    subtracted (``clip_len - 1`` differences), scaled by :data:`DIFF_SCALE`; then a 3x1x1
    convolution over time, a 1x2x2 one over neighbouring cells (16 filters each, ReLU),
    global average pooling, dropout and the 2-way softmax: about 1,100 weights. What it
    can see is a region flickering against the rest of the face, the per-frame
    inconsistency of a pasted face. Without batch normalisation: on the demo's 164
    training clips, with batch normalisation (``conv3d_light``'s layers on the same input)
    the validation curves jumped by 0.1 from epoch to epoch (the batch statistics of 8
    clips), without it the cross-validated AUC rose steadily (docs/reference.md).
    Needs ``clip_len >= 2``."""
    if clip_len < 2:
        raise ValueError(f"conv3d_diff needs clip_len of at least 2, got {clip_len}")
    cell = max(1, clip_size // DIFF_GRID)
    inputs = keras.Input((clip_len, clip_size, clip_size, 3), name="clips")
    x = layers.AveragePooling3D((1, cell, cell), name="cells")(inputs)
    x = cnn.SpatialMeanRemoved(name="relative")(x)
    x = cnn.FrameDifferences(name="differences")(x)
    x = layers.Rescaling(DIFF_SCALE, name="scale")(x)
    x = layers.Conv3D(DIFF_FILTERS, (3, 1, 1), padding="same", activation="relu",
                      name="conv_time")(x)
    x = layers.Conv3D(DIFF_FILTERS, (1, 2, 2), padding="same", activation="relu",
                      name="conv_space")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs, name="conv3d_diff")


def _light_layers(x: Any, dropout: float) -> Any:
    """conv3d_light after its input: three conv-BN-ReLU-pool blocks, GAP, Dense 128, softmax."""
    for i, (filters, pool) in enumerate(((32, (1, 2, 2)), (64, 2), (128, 2)), start=1):
        x = layers.Conv3D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        x = layers.MaxPooling3D(pool, padding="same", name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER)(x)


def build_clip_model(name: str, clip_len: int, clip_size: int, dropout: float = 0.5) -> keras.Model:
    """``c3d``, ``conv3d``, ``conv3d_light`` or ``conv3d_diff`` for clips ``float32 0-255 [T, c, c, 3]``;
    not compiled."""
    builders = {"c3d": build_c3d, "conv3d": build_conv3d, "conv3d_light": build_conv3d_light,
                "conv3d_diff": build_conv3d_diff}
    if name not in builders:
        raise ValueError(f"unknown clip model {name!r}; choose one of {CLIP_MODELS}")
    return builders[name](clip_len, clip_size, dropout)


def clip_counts(videos: pd.DataFrame, clip_len: int) -> pd.DataFrame:
    """Per split and label: faces, clips, videos shorter than one clip, videos without faces."""
    counts = videos.assign(
        clips=[len(clip_windows(int(n), clip_len)) for n in videos["n_faces"]],
        short=videos["n_faces"].between(1, clip_len - 1), no_face=videos["n_faces"] == 0)
    return counts.groupby(["split", "label"])[["n_faces", "clips", "short", "no_face"]].sum()


# --------------------------------------------------------------------------- stage: clips

def clip_config(model: str, shared: Mapping[str, Any],
                section: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that decides a clip model: the section's fields but the model list."""
    return {"model": model, "architecture": CLIP_ARCHITECTURES[model],
            "img_size": shared["img_size"], "seed": shared["seed"],
            **{k: section[k] for k in TRAIN_C3D if k != "models"}}


def clip_optimizer(section: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The section's ``optimizer`` at its ``learning_rate``: ``sgd`` (Nesterov, with
    ``momentum``) or ``adam``."""
    if section["optimizer"] == "adam":
        return keras.optimizers.Adam(section["learning_rate"])
    return keras.optimizers.SGD(section["learning_rate"], momentum=section["momentum"],
                                nesterov=True)


def train_clip_models(store: batches.FaceSource, videos: pd.DataFrame, run: RunPaths,
                      shared: Mapping[str, Any], section: Mapping[str, Any],
                      threshold: float = 0.5, verbose: int = 2,
                      scoring: statistics.Scoring = statistics.Scoring()) -> TemporalResult:
    """Train (or reuse) every clip model of ``section["models"]``, score the validation
    and test splits, write predictions and results rows under the model's name (``c3d``,
    ``conv3d``).

    ``videos``: the index with ``video_id, label, split, n_faces``. ``optimizer``: SGD
    with Nesterov momentum, as C3D was trained, or Adam. A model with BatchNorm layers has
    their statistics re-estimated on ``bn_recalibration_batches`` centre-cropped training
    batches before each validation (:class:`~dflib.detectors.models.fitting.BatchNormRecalibration`). A
    model whose record shows the same configuration is not retrained.
    """
    train, val = cnn_training.split_videos(videos)
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
            fitting.seed_everything(shared["seed"])
            data = ClipBatches(store, train, clip_len, size, batch, shuffle=True, augment=True,
                               seed=shared["seed"])
            val_data = ClipBatches(store, val, clip_len, size, batch)
            model = build_clip_model(name, clip_len, size, section["dropout"])
            model.compile(optimizer=clip_optimizer(section),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            # The clips as inference sees them (centre crop), in another seeded order.
            recalibration = fitting.BatchNormRecalibration(
                ClipBatches(store, train, clip_len, size, batch, shuffle=True,
                            seed=shared["seed"] + 1), section["bn_recalibration_batches"])
            print(f"{name}: {model.count_params():,} weights, {data.n_samples} training clips, "
                  f"{val_data.n_samples} validation clips", flush=True)
            record = fit_model(
                model, run, ModelRecord(name=name, method=name, config=config,
                                        n_train=data.n_samples, n_val=val_data.n_samples,
                                        made_from=made_from),
                "c3d", data, validation=val_data if val_data.n_samples else None,
                epochs=section["epochs"], patience=section["patience"],
                class_weight=sample_class_weights(data.labels, data.clips_per_video,
                                                  section["class_weight"]), verbose=verbose,
                first_callbacks=[recalibration], keep_last=section["keep_epoch"] == "last")
        else:
            print(f"{name}: {record.model} exists with this configuration, skipped")
        records[name] = record
        evaluate_clip_model(store, val, run, record, threshold, "val")
        predictions[name] = evaluate_clip_model(store, test, run, record, threshold)
    return finish_temporal_stage(run, CLIP_MODELS, records, predictions, threshold, scoring=scoring)


def clip_predictions(model: keras.Model, config: Mapping[str, Any], store: batches.FaceSource,
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
    rows = sample_video_rows(clips, videos, steps, threshold)
    rows["padded"] = (rows["n_frames"] > 0) & (rows["n_frames"] < config["clip_len"])
    return rows


def evaluate_clip_model(store: batches.FaceSource, videos: pd.DataFrame, run: RunPaths,
                        record: ModelRecord, threshold: float = 0.5,
                        split: str = "test") -> pd.DataFrame:
    """Score ``videos`` (one split) with a saved clip model and write its predictions
    (``predictions/<method>.csv``, or under ``predictions/val/``; see :func:`clip_predictions`)."""
    rows = clip_predictions(cnn.load_model(run.artifact(record.model)), record.config, store,
                            videos, threshold)
    evaluation.write_predictions(run, record.method, rows, split=split)
    return rows


def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads for ``methods``: each model's record and model."""
    return [f for m in methods for f in (run.model_files("c3d", m)[1],
                                          run.artifact(saved_record(run, "c3d", m).model))]


def score_saved(run: RunPaths, methods: Sequence[str], store: batches.FaceSource,
                videos: pd.DataFrame, settings: Mapping[str, Any], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """Clip models of the run applied to other faces (:func:`dflib.reload.score_methods`)."""
    out: dict[str, evaluation.Prediction] = {}
    for m in methods:
        record = saved_record(run, "c3d", m)
        out[m] = (clip_predictions(cnn.load_model(run.artifact(record.model)), record.config,
                                   store, videos), None)
    return out
