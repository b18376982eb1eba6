"""The paper's metric-learning detector: a semi-hard triplet network on FaceNet embeddings,
then classic classifiers in the raw (512-d) and the learned (64-d) space.

* :func:`semi_hard_triplet_loss` is TensorFlow 1.x contrib's semi-hard loss
  (``tf.contrib.losses.metric_learning.triplet_semihard_loss``, which the original study
  used: squared Euclidean distances; TensorFlow-Addons' later port defaults to plain L2)
  written with ``keras.ops``, so it runs on the TensorFlow and torch backends.
* :class:`BalancedBatches` makes every batch hold both classes, so every batch has
  triplets to mine.
* :func:`build_mlp` is the original 512 -> 256 -> 256 -> 128 -> 64 network, with its
  inputs standardised (see there why).
* :func:`train` fits it for a fixed number of epochs, as the original script does (Adam, no
  early stopping: see there why), logs the loss and the share of active triplets per epoch,
  saves atomically, skips when done, and stops on a NaN loss with :class:`NaNLossError`.
* :func:`run_stage` fits the network, then the classic classifiers of
  :mod:`dflib.detectors.models.classifiers` in both spaces; :func:`score_saved` re-scores
  both families' saved classifiers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd
from keras import ops

from ... import evaluation, io, statistics
from .batches import FaceSource
from .classifiers import (classifier_path, evaluate_classifiers, fake_probability,
                          has_both_classes, load_classifier)
from ...devices import resolve_device
from .fitting import keras_shuffles, seed_everything
from ...paths import RunPaths
from .triplet_fields import TRAIN_TRIPLET
from ...vocabulary import CLASSIFIERS

HIDDEN_UNITS = (256, 256, 128)
EMBEDDING_DIM = 64
MODEL_NAME = "triplet"
NORMALISATION = "standardise"
# The original author saw NaN losses with batches below this size.
PAPER_MIN_BATCH = 128


# --------------------------------------------------------------------------- loss

def pairwise_squared_distances(x: Any) -> Any:
    """``[b, b]`` squared Euclidean distances, computed from differences rather than
    ``|a|^2 - 2ab + |b|^2`` so that there is no cancellation error and the diagonal and
    duplicates are exactly 0. Memory ``b * b * dim``."""
    diff = ops.expand_dims(x, 1) - ops.expand_dims(x, 0)
    return ops.sum(ops.square(diff), axis=-1)


def _semi_hard_terms(labels: Any, embeddings: Any, margin: float) -> tuple[Any, Any, Any]:
    """``(hinge, pairs, semi_hard)`` of one batch, each ``[a, p]``: the hinge of every
    anchor-positive pair (0 off the pairs), the pairs that count (float 0/1) and whether a
    pair found a semi-hard negative (bool). See :func:`semi_hard_triplet_loss`."""
    x = ops.cast(embeddings, "float32")
    y = ops.reshape(labels, (-1,))
    d = pairwise_squared_distances(x)
    idx = ops.arange(ops.shape(x)[0])
    same = ops.equal(ops.expand_dims(y, 1), ops.expand_dims(y, 0))
    negative = ops.logical_not(same)
    positive = ops.logical_and(same, ops.not_equal(ops.expand_dims(idx, 1),
                                                   ops.expand_dims(idx, 0)))
    d_an = ops.expand_dims(d, 1)  # [a, 1, n]
    d_ap = ops.expand_dims(d, 2)  # [a, p, 1]
    # harder[a, p, n]: n is a negative of a that is farther from a than p is.
    harder = ops.logical_and(ops.expand_dims(negative, 1), ops.greater(d_an, d_ap))
    # A finite stand-in for +inf: masked entries never win the minimum, and no inf - inf.
    ceiling = ops.stop_gradient(ops.max(d))
    closest_harder = ops.min(ops.where(harder, d_an, ceiling), axis=2)
    farthest = ops.max(ops.where(negative, d, ops.zeros_like(d)), axis=1)
    found = ops.any(harder, axis=2)
    semi_hard = ops.where(found, closest_harder, ops.expand_dims(farthest, 1))
    has_negative = ops.any(negative, axis=1)
    pairs = ops.cast(ops.logical_and(positive, ops.expand_dims(has_negative, 1)), "float32")
    hinge = ops.maximum(d - semi_hard + margin, 0.0) * pairs
    return hinge, pairs, found


def semi_hard_triplet_loss(labels: Any, embeddings: Any, margin: float = 1.0) -> Any:
    """Semi-hard triplet loss of one batch (TensorFlow 1.x contrib's semantics, squared
    distances).

    For every anchor-positive pair (a != p, same label) the negative is the closest one
    farther from the anchor than the positive (``d_an > d_ap``, semi-hard); when no
    negative is that far, the farthest negative. The loss is
    ``max(d_ap - d_an + margin, 0)`` averaged over the anchor-positive pairs.

    Where the contrib formula is undefined or meaningless, this one is 0, never NaN: a batch
    without positive pairs (it divides by 0) and the pairs of an anchor that has no
    negative at all (a one-class batch: it charges ``margin + d_ap``; here there is no
    triplet, so no loss). Memory ``b^3`` booleans: fine for the paper's 256, heavy past 1024.
    """
    hinge, pairs, _ = _semi_hard_terms(labels, embeddings, margin)
    return ops.sum(hinge) / ops.maximum(ops.sum(pairs), 1.0)


def active_triplet_share(labels: Any, embeddings: Any, margin: float = 1.0) -> Any:
    """The share of a batch's anchor-positive pairs whose triplet still has a loss (hinge
    above 0): 1 while the space separates nothing, falling as the network learns; 0 for a
    batch without pairs."""
    hinge, pairs, _ = _semi_hard_terms(labels, embeddings, margin)
    return ops.sum(ops.cast(hinge > 0, "float32") * pairs) / ops.maximum(ops.sum(pairs), 1.0)


def semi_hard_share(labels: Any, embeddings: Any, margin: float = 1.0) -> Any:
    """The share of a batch's anchor-positive pairs that found a semi-hard negative (one
    farther from the anchor than the positive); the others fall back to the farthest."""
    _, pairs, found = _semi_hard_terms(labels, embeddings, margin)
    return ops.sum(ops.cast(found, "float32") * pairs) / ops.maximum(ops.sum(pairs), 1.0)


@keras.saving.register_keras_serializable(package="dflib")
class SemiHardTripletLoss(keras.losses.Loss):
    """:func:`semi_hard_triplet_loss` as a Keras loss (``y_true`` = labels)."""

    def __init__(self, margin: float = 1.0, name: str = "semi_hard_triplet_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return semi_hard_triplet_loss(y_true, y_pred, self.margin)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


# The per-epoch columns of the training log besides the loss (``val_`` prefixed too).
TRIPLET_METRICS = ("active_triplets", "semi_hard")


@keras.saving.register_keras_serializable(package="dflib")
class TripletShare(keras.metrics.MeanMetricWrapper):
    """A batch share of :func:`active_triplet_share` or :func:`semi_hard_share` as a Keras
    metric, averaged over an epoch's batches; its name is the log column."""

    def __init__(self, name: str = "active_triplets", margin: float = 1.0,
                 **kwargs: Any) -> None:
        if name not in TRIPLET_METRICS:
            raise ValueError(f"unknown triplet metric {name!r}; choose from {TRIPLET_METRICS}")
        share = active_triplet_share if name == "active_triplets" else semi_hard_share
        super().__init__(lambda y, z: share(y, z, margin), name=name, **kwargs)
        self.margin = float(margin)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "margin": self.margin, "dtype": self.dtype}


# --------------------------------------------------------------------------- batches

class BalancedBatches(keras.utils.PyDataset):
    """Batches ``(x, y)`` that always hold both classes: half each when the smaller class
    has enough samples, otherwise all of it and the rest from the larger class.

    An epoch has ``ceil(n / batch_size)`` batches. Each class is drawn as a stream of
    seeded permutations, so every sample is used before any repeats (the smaller class
    repeats within an epoch when the data are imbalanced). With ``shuffle=False`` the
    batches are the same every epoch: validation is balanced the same way, so ``val_loss``
    measures what the training loss measures.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0,
                 shuffle: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x = np.asarray(x, dtype=np.float32)
        self.y = np.asarray(y).astype(np.int64).ravel()
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} samples but {len(self.y)} labels")
        if batch_size < 2:
            raise ValueError(f"batch_size {batch_size}: a batch needs room for both classes")
        self.members = [np.flatnonzero(self.y == c) for c in (0, 1)]
        missing = [name for c, name in ((0, "real (0)"), (1, "fake (1)"))
                   if len(self.members[c]) == 0]
        if missing:
            raise ValueError(f"no {missing[0]} samples: triplets need both classes")
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.n_batches = max(1, math.ceil(len(self.y) / self.batch_size))
        small = int(np.argmin([len(m) for m in self.members]))
        k_small = min(self.batch_size // 2, len(self.members[small]))
        k_large = min(self.batch_size - k_small, len(self.members[1 - small]))
        self.per_batch = (k_small, k_large) if small == 0 else (k_large, k_small)
        self.epoch = 0
        self.plan = self._plan(0)

    def _plan(self, epoch: int) -> list[np.ndarray]:
        """Per class, a ``[n_batches, k]`` array of sample indices for one epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        plan = []
        for members, k in zip(self.members, self.per_batch):
            need = self.n_batches * k
            stream = np.concatenate([rng.permutation(members)
                                     for _ in range(math.ceil(need / len(members)))])
            plan.append(stream[:need].reshape(self.n_batches, k))
        return plan

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([p[i] for p in self.plan])
        return self.x[idx], self.y[idx].astype(np.float32)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        if self.shuffle:
            self.plan = self._plan(self.epoch)


# --------------------------------------------------------------------------- network

def build_mlp(input_dim: int = 512, dropout: float = 0.1,
              unit_length: bool = False) -> keras.Model:
    """The original triplet network, ``input -> 256 -> 256 -> 128 -> 64``, ReLU, dropout.

    The 64-d output is linear and not L2-normalised, as in the original (a plain Dense 64
    under the semi-hard loss); with squared distances the loss stays finite without normalising,
    and classifiers downstream standardise their inputs where they need it.
    ``unit_length`` divides each embedding by its length (FaceNet's own convention, where
    squared distances lie in [0, 4] and the margin is a share of that range).

    One addition: a ``Normalization`` layer (adapted on the training embeddings by
    :func:`train`) standardises each input dimension. For pretrained FaceNet embeddings
    (unit norm, squared distances ~1) it only rescales; the randomly initialised fallback
    network maps all faces into a tiny region (squared distances ~1e-5), where the loss
    would sit at the margin and nothing would be learned without it.
    """
    inputs = keras.Input((input_dim,), name="facenet")
    x = keras.layers.Normalization(name=NORMALISATION)(inputs)
    for i, units in enumerate(HIDDEN_UNITS, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(EMBEDDING_DIM, name="embedding")(x)
    if unit_length:
        outputs = keras.layers.UnitNormalization(name="unit_length")(outputs)
    return keras.Model(inputs, outputs, name="triplet_mlp")


class NaNLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the epoch and causes."""


class StopOnNaN(keras.callbacks.Callback):
    """Raise :class:`NaNLossError` at the first non-finite training or validation loss, or
    when an epoch leaves non-finite weights (ReLU can turn NaN activations into zeros, so
    a blown-up network may still report a finite loss). Keras' own TerminateOnNaN stops
    quietly, which would leave a broken model looking finished."""

    def __init__(self, batch_size: int, learning_rate: float) -> None:
        super().__init__()
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.epoch = 0

    def _fail(self, what: str) -> NaNLossError:
        return NaNLossError(
            f"{what} in epoch {self.epoch + 1}; triplet training stopped. Likely causes: "
            f"batches too small for semi-hard mining (batch_size={self.batch_size}; the "
            f"original study saw NaN losses below {PAPER_MIN_BATCH}) or a learning rate too "
            f"high (learning_rate={self.learning_rate:g}); very large input values can also "
            f"overflow the squared distances")

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise self._fail(f"the loss became {float(loss)} at batch {batch + 1}")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        val_loss = (logs or {}).get("val_loss")
        if val_loss is not None and not math.isfinite(float(val_loss)):
            raise self._fail(f"the validation loss became {float(val_loss)}")
        if not all(np.isfinite(ops.convert_to_numpy(w)).all() for w in self.model.weights):
            raise self._fail("the weights became NaN or infinite")


@dataclass(frozen=True)
class Training:
    """A trained (or reloaded) triplet network and its per-epoch log."""

    model: keras.Model
    history: pd.DataFrame  # epoch, loss, active_triplets, semi_hard[, val_ of each]
    trained: bool  # False when a finished model was reloaded


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _save_model(model: keras.Model, target: Path) -> None:
    """Save atomically; Keras insists on the ``.keras`` suffix, so the temporary has it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".keras", dir=target.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_log(path: Path) -> pd.DataFrame:
    """The per-epoch CSV log, without the ``val_*`` columns that Keras' CSVLogger adds
    (as "NA") when there was no validation data."""
    return pd.read_csv(path).dropna(axis=1, how="all")


def _default(key: str) -> Any:
    """A ``train_triplet`` field's default (the profile's, declared once)."""
    return TRAIN_TRIPLET[key].default


def train(run: RunPaths, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
          y_val: np.ndarray, *, epochs: int = _default("epochs"),
          batch_size: int = _default("batch_size"),
          learning_rate: float = _default("learning_rate"), margin: float = _default("margin"),
          unit_length: bool = _default("unit_length"), dropout: float = _default("dropout"),
          seed: int = 0, verbose: int = 2,
          inputs: Mapping[str, Iterable[str]] | None = None) -> Training:
    """Train the triplet network for ``epochs`` epochs, or reload it when a finished one
    matches these inputs.

    Every epoch runs and the last one's weights are kept, as in the original script (no
    callbacks). Early stopping on the validation loss, with the best weights restored, kept
    the network of epoch 1 in every seed tried on the demo (issue 27): the lowest
    validation loss came before the network had learned anything, so the "triplet space"
    was a near-random projection. The validation split, when it holds both classes, is
    only logged (``val_loss``, ``val_active_triplets``, ``val_semi_hard``).

    The model goes to ``models/triplet.keras`` (atomically), its fingerprint (parameters
    and a digest of the data, and ``inputs``: the videos per split the embeddings came
    from, see :func:`dflib.io.made_from`) to ``models/triplet.json`` after it, and the
    per-epoch log to ``logs/triplet.csv``. A model made from anything else is retrained,
    saying why.
    """
    for name, a in (("training", x_train), ("validation", x_val)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} embeddings contain NaN or inf")
    params = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
              "margin": margin, "unit_length": unit_length, "dropout": dropout, "seed": seed,
              "schedule": "fixed epochs", "backend": keras.backend.backend()}
    # The architecture's own description, so that a change to build_mlp retrains too.
    architecture = hashlib.sha256(build_mlp(x_train.shape[1], dropout, unit_length)
                                  .to_json().encode())
    fingerprint = io.made_from({**params, "architecture": architecture.hexdigest(),
                                "data": _digest(x_train, y_train, x_val, y_val)}, inputs or {})
    validate = len(x_val) > 0 and has_both_classes(y_val)
    target, fp_file, log_file = run.top_model_files(MODEL_NAME)
    if target.is_file() and fp_file.is_file() and log_file.is_file():
        record, damage = io.read_record(fp_file), io.read_problem(target)
        stale = (f"{fp_file.name} does not read whole" if record is None
                 else io.stale_reason(record, fingerprint)
                 or (f"{target.name} {damage}" if damage else ""))
        if not stale:
            model = keras.saving.load_model(target, compile=False)
            return Training(model, read_log(log_file), False)
        print(f"{MODEL_NAME}: {stale}, retraining")

    fp_file.unlink(missing_ok=True)  # the old model no longer counts as finished
    seed_everything(seed)  # TensorFlow's deterministic ops too, as the CNNs train
    model = build_mlp(x_train.shape[1], dropout, unit_length)
    model.get_layer(NORMALISATION).adapt(x_train)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=SemiHardTripletLoss(margin),
                  metrics=[TripletShare(name, margin) for name in TRIPLET_METRICS])
    train_batches = BalancedBatches(x_train, y_train, batch_size, seed=seed)
    val_batches = (BalancedBatches(x_val, y_val, batch_size, seed=seed, shuffle=False)
                   if validate else None)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    callbacks = [StopOnNaN(batch_size, learning_rate), keras.callbacks.CSVLogger(str(log_file))]
    model.fit(train_batches, validation_data=val_batches, epochs=epochs, callbacks=callbacks,
              shuffle=keras_shuffles(train_batches), verbose=verbose)
    _save_model(model, target)
    io.write_text(json.dumps(fingerprint, indent=2) + "\n", fp_file)
    return Training(model, read_log(log_file), True)


def transform(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The 64-d triplet embeddings ``float32 [n, 64]`` of 512-d inputs (inference mode)."""
    if len(x) == 0:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=batch_size,
                                    verbose=0), dtype=np.float32)


# --------------------------------------------------------------------------- the stage

@dataclass(frozen=True)
class StageResult:
    """Everything stage 07 shows: weights used, training, results, test embeddings."""

    embeddings: dict[str, Any]  # features/facenet/manifest.json
    training: Training
    frame_counts: pd.DataFrame  # faces per split and class
    results: pd.DataFrame  # this stage's rows of tables/results.csv
    test_frames: pd.DataFrame  # one row per test face: video_id, frame_idx, label, method...
    test_facenet: np.ndarray  # [n_test, 512], aligned with test_frames
    test_triplet: np.ndarray  # [n_test, 64]


def run_stage(run: RunPaths, videos: pd.DataFrame, params: Mapping[str, Any], seed: int = 0,
              progress: bool = True,
              scoring: statistics.Scoring = statistics.Scoring()) -> StageResult:
    """Stage 07: train the triplet network on training-split FaceNet embeddings (the
    validation split's loss and active triplets are logged), then fit and score the classifiers on the raw embeddings
    (``facenet/<clf>``) and on the triplet embeddings (``triplet/<clf>``).

    ``params`` is the profile's ``train_triplet`` section; ``videos`` the video index.
    """
    from ...embeddings import load_embeddings, read_manifest

    manifest = read_manifest(run)
    x, frames = load_embeddings(run, videos)
    y = frames["label"].to_numpy(dtype=np.int64)
    split = frames["split"].to_numpy()
    # The network and the classifiers learn from each frame's chosen face; every face of
    # a validation or test frame is scored (multi_face: max), the frame by its most fake.
    chosen = frames["chosen"].to_numpy(dtype=bool)
    counts = (frames[chosen].assign(**{"class": frames["label"].map({0: "real", 1: "fake"})})
              .groupby(["split", "class"]).size().rename("faces").reset_index())
    tr, va, te = (split == "train") & chosen, (split == "val"), (split == "test")
    training = train(run, x[tr], y[tr], x[va & chosen], y[va & chosen], epochs=params["epochs"],
                     batch_size=params["batch_size"], learning_rate=params["learning_rate"],
                     margin=params["margin"], unit_length=params["unit_length"],
                     dropout=params["dropout"], seed=seed, verbose=2 if progress else 0,
                     inputs={role: frames.loc[split == role, "video_id"].unique()
                             for role in ("train", "val")})
    z_train, z_test = transform(training.model, x[tr]), transform(training.model, x[te])
    z_val = transform(training.model, x[va])
    test_frames = frames[te].reset_index(drop=True)
    test_videos = videos[videos["split"] == "test"]
    common = {"names": params["classifiers"], "y_train": y[tr], "test_frames": test_frames,
              "test_videos": test_videos, "aggregation": params["aggregation"],
              "threshold": params["threshold"], "seed": seed, "progress": progress,
              "val_frames": frames[va].reset_index(drop=True),
              "val_videos": videos[videos["split"] == "val"], "scoring": scoring}
    results = pd.concat([
        evaluate_classifiers(run, "facenet", x_train=x[tr], x_test=x[te], x_val=x[va], **common),
        evaluate_classifiers(run, "triplet", x_train=z_train, x_test=z_test, x_val=z_val,
                             **common),
    ], ignore_index=True)
    shown = chosen[te]
    return StageResult(manifest, training, counts, results,
                       test_frames[shown].reset_index(drop=True), x[te][shown], z_test[shown])


def comparison_table(results: pd.DataFrame, level: str = "video") -> pd.DataFrame:
    """Classifier by classifier, accuracy and AUC on the raw FaceNet embeddings next to
    the triplet embeddings (the paper's before/after comparison), at one level."""
    rows = results[results["level"] == level]
    space_clf = rows["method"].str.split("/", n=1, expand=True)
    wide = (rows.assign(space=space_clf[0], classifier=space_clf[1])
            .pivot(index="classifier", columns="space", values=["acc", "auc"]))
    wide.columns = [f"{space}_{metric}" for metric, space in wide.columns]
    order = [c for c in ("facenet_acc", "triplet_acc", "facenet_auc", "triplet_auc")
             if c in wide.columns]
    return wide[order].reindex([c for c in CLASSIFIERS if c in wide.index]).reset_index()


def tsne_inputs(result: StageResult, max_points: int, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``plots.tsne_figure`` for the test faces before and after the
    triplet network: a seeded sample of at most ``max_points`` faces, coloured by the
    manipulation method when the fakes come from several, else by class."""
    n = len(result.test_frames)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_points), replace=False))
    frames = result.test_frames.iloc[rows]
    several = "method" in frames and frames.loc[frames["label"] == 1, "method"].nunique() > 1
    return {"before": result.test_facenet[rows], "after": result.test_triplet[rows],
            "labels": frames["label"].to_numpy(dtype=int),
            "hue": frames["method"].to_numpy() if several else None, "seed": seed}


# --------------------------------------------------------------------------- re-scoring

def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads for ``methods`` from the run: the embeddings'
    manifest (which weights embedded the faces), the triplet network for ``triplet/*``,
    and each method's classifier."""
    files = [run.embeddings_manifest]
    if any(m.startswith("triplet/") for m in methods):
        files.append(run.top_model_files(MODEL_NAME)[0])
    return files + [classifier_path(run, m) for m in methods]


def score_saved(run: RunPaths, methods: Sequence[str], store: FaceSource, videos: pd.DataFrame,
                settings: Mapping[str, Any], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """``facenet/<clf>`` and ``triplet/<clf>`` methods of the run applied to other faces
    (:func:`dflib.reload.score_methods`): the faces are embedded once, with the network and
    weights the run's embeddings were made with, for every classifier of both spaces."""
    from ... import embeddings

    x, faces = embeddings.embed_videos(run, store, videos["video_id"].astype(str).tolist(),
                                       settings, progress)
    label_of = dict(zip(videos["video_id"].astype(str), videos["label"].astype(int)))
    frames = faces[["video_id", "frame_idx"]].assign(label=faces["video_id"].map(label_of))
    section = settings["train_triplet"]
    spaces = {"facenet": x}
    if any(m.startswith("triplet/") for m in methods):
        spaces["triplet"] = transform(_load_triplet(run), x) if len(x) else x
    out: dict[str, evaluation.Prediction] = {}
    for m in methods:
        space = spaces[m.split("/", 1)[0]]
        clf = load_classifier(run, m)
        f = statistics.max_per_frame(frames.assign(
            score=fake_probability(clf, space)))
        out[m] = (statistics.video_predictions(f, videos, section["aggregation"],
                                               section["threshold"]), f)
    return out


def _load_triplet(run: RunPaths) -> Any:
    target: Path = run.top_model_files(MODEL_NAME)[0]
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no trained triplet network in this run")
    return keras.saving.load_model(io.require_whole(target, "rerun stage 'train_triplet'"),
                                   compile=False)
