"""Training, saving and reloading any Keras detector of the study the same way.

Seeding (process-wide and per call), class weights, BatchNorm re-estimation, and one fit:
EarlyStopping that restores the best epoch, a checkpoint renamed only when training ends,
and the :class:`ModelRecord` kept beside each clip model and recurrent head (the frame CNN
keeps its chunk records in its manifest). Also the result object of a temporal stage."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import keras
import numpy as np
import pandas as pd

from ... import evaluation, io, statistics
from .batches import LABELS
from ...paths import RunPaths

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


def keras_shuffles(data: Any) -> bool:
    """The ``shuffle`` to hand ``model.fit`` for ``data``: False for a PyDataset, whose batches
    are a seeded function of (epoch, index) and which permutes itself between epochs, since
    Keras would reorder its batches with Python's global ``random``, which any other thread
    draws from too (a Dask worker's event loop does, so the same seed trained another model
    there); True for arrays, which Keras shuffles with the seeded backend."""
    return not isinstance(data, keras.utils.PyDataset)


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


def monitor_mode(monitor: str) -> str:
    """``max`` for a monitored AUC, ``min`` for a loss: which way is better."""
    return "max" if monitor.endswith("auc") else "min"


class FakeScoreAUC(keras.metrics.AUC):
    """ROC AUC of the fake class's softmax score against integer labels (the models' two
    softmax outputs and sparse labels, which Keras' AUC does not take as they are)."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return super().update_state(keras.ops.reshape(y_true, (-1,)), y_pred[:, 1],
                                    sample_weight)


def fit_and_save(model: keras.Model, final: Path, log: Path, record: Any, data: Any, *,
                 validation: Any, epochs: int, patience: int,
                 class_weight: Mapping[int, float] | None = None, y: np.ndarray | None = None,
                 batch_size: int | None = None, verbose: int = 2,
                 first_callbacks: Sequence[keras.callbacks.Callback] = (),
                 keep_last: bool = False) -> None:
    """Fit with the study's callbacks and move the best model onto ``final`` at the end.

    ``first_callbacks`` run before the study's own at every event (a BatchNorm
    recalibration must come before the checkpoint that saves its statistics).
    EarlyStopping on ``record.monitor`` restores the best epoch, which is checkpointed to
    ``<final stem>.inprogress.keras`` and renamed to ``final`` only when training ends, so a
    killed run never leaves a final-looking partial model. ``keep_last``: every epoch runs
    and the last one's weights are kept (``best_epoch`` is then the last). Fills
    ``record``'s ``epochs_run``, ``best_epoch``, ``best_monitor`` and ``seconds``.
    """
    partial = final.with_name(f"{final.stem}.inprogress.keras")
    partial.unlink(missing_ok=True)
    mode = monitor_mode(record.monitor)
    stopping = [] if keep_last else [keras.callbacks.EarlyStopping(
        monitor=record.monitor, mode=mode, patience=patience, restore_best_weights=True)]
    callbacks = [
        *first_callbacks, *stopping,
        keras.callbacks.ModelCheckpoint(partial, monitor=record.monitor, mode=mode,
                                        save_best_only=not keep_last),
        keras.callbacks.CSVLogger(str(log)),
    ]
    start = time.perf_counter()
    history = model.fit(data, y, batch_size=batch_size, validation_data=validation,
                        epochs=epochs, class_weight=class_weight, callbacks=callbacks,
                        shuffle=keras_shuffles(data), verbose=verbose)
    record.seconds = round(time.perf_counter() - start, 1)
    curve = np.asarray(history.history[record.monitor], dtype=float)
    record.epochs_run = len(curve)
    if keep_last:
        record.best_epoch, record.best_monitor = len(curve), float(curve[-1])
    elif np.isfinite(curve).any():
        best = np.nanargmax(curve) if mode == "max" else np.nanargmin(curve)
        record.best_epoch, record.best_monitor = int(best) + 1, float(curve[best])
    if not partial.exists():  # no finite monitored value ever improved on +inf
        model.save(partial)
    os.replace(partial, final)


def predict_scores(model: keras.Model, x: Any, batch_size: int = 32) -> np.ndarray:
    """P(fake) for every sample of ``x`` (arrays, a dict of arrays, or a PyDataset)."""
    if isinstance(x, keras.utils.PyDataset):
        return np.concatenate([keras.ops.convert_to_numpy(model.predict_on_batch(x[i][0]))[:, 1]
                               for i in range(len(x))] or [np.zeros(0)])
    return model.predict(x, batch_size=batch_size, verbose=0)[:, 1]


# --------------------------------------------------------------------------- records

@dataclass(kw_only=True)
class FitRecord:
    """What fitting one model did (:func:`fit_and_save` fills it in): the part every
    detector's training record shares. Paths are relative to the run folder."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_monitor: float = float("nan")
    monitor: str = "val_loss"
    seconds: float = 0.0
    model: str = ""
    log: str = ""
    class_weight: dict[str, float] = field(default_factory=dict)
    made_from: dict[str, Any] = field(default_factory=dict)  # io.made_from: settings, videos

    def as_dict(self) -> dict[str, Any]:
        """The record as it is stored: what the model was trained on first, then the fit."""
        stored = asdict(self)
        fit = [f.name for f in fields(FitRecord)]
        return {**{k: v for k, v in stored.items() if k not in fit}, **{k: stored[k] for k in fit}}


@dataclass(kw_only=True)
class ModelRecord(FitRecord):
    """A clip model's or recurrent head's record, kept in its ``.json`` beside the model;
    ``complete`` is written last, and only it makes a rerun trust the model."""

    name: str
    method: str
    config: dict[str, Any]
    n_train: int = 0
    n_val: int = 0
    complete: bool = False

    @classmethod
    def read(cls, path: Path) -> "ModelRecord":
        return cls(**io.read_json(path))


def finished_record(run: RunPaths, family: str, name: str,
                    made_from: Mapping[str, Any]) -> tuple[ModelRecord | None, str]:
    """The record of a finished model made from ``made_from`` (:func:`dflib.io.made_from`:
    configuration and videos) whose model file and record read whole
    (:func:`dflib.io.read_problem`), or None and why it must be (re)trained ("" when there
    is no finished model)."""
    final, record_path, _ = run.model_files(family, name)
    if not (final.exists() and record_path.exists()):
        return None, ""
    saved = io.read_record(record_path)
    if saved is None:
        return None, f"{record_path.name} does not read whole"
    record = ModelRecord(**saved)
    if not record.complete:
        return None, ""
    damage = io.read_problem(final)
    stale = io.stale_reason(record.made_from, made_from) or (
        f"{final.name} {damage}" if damage else "")
    return (None, stale) if stale else (record, "")


def saved_record(run: RunPaths, family: str, name: str) -> ModelRecord:
    """The record of a finished model of the run, for re-scoring; a clear error when there
    is none or its training did not finish."""
    _, record_path, _ = run.model_files(family, name)
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path}: no trained model {name!r} in this run")
    record = ModelRecord.read(record_path)
    if not record.complete:
        raise FileNotFoundError(f"{record_path}: the training of {name!r} did not finish")
    return record


def fit_model(model: keras.Model, run: RunPaths, record: ModelRecord, family: str, data: Any,
              y: np.ndarray | None = None, validation: Any = None, *, epochs: int,
              batch_size: int | None = None, patience: int,
              class_weight: dict[int, float] | None = None, verbose: int = 2,
              first_callbacks: Sequence[keras.callbacks.Callback] = (),
              keep_last: bool = False) -> ModelRecord:
    """Train a compiled model with the frame CNN's callbacks and save it atomically.

    EarlyStopping on ``val_loss`` (``loss`` without validation data) restores the best
    epoch; the best epoch is checkpointed to ``<name>.inprogress.keras`` and renamed to
    ``<name>.keras`` only when training ends, so a killed run never leaves a final-looking
    partial model. The record is written last: its ``complete`` flag is what reruns trust.
    ``first_callbacks``, ``keep_last``: as in :func:`fit_and_save`.
    """
    final, record_path, log = run.model_files(family, record.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    record.monitor = "val_loss" if validation is not None else "loss"
    record.model, record.log = run.relative(final), run.relative(log)
    record.class_weight = {str(c): w for c, w in (class_weight or {}).items()}
    fit_and_save(model, final, log, record, data, validation=validation, epochs=epochs,
                 patience=patience, class_weight=class_weight, y=y,
                 batch_size=batch_size, verbose=verbose, first_callbacks=first_callbacks,
                 keep_last=keep_last)
    record.complete = True
    io.write_text(json.dumps(record.as_dict(), indent=2) + "\n", record_path)
    return record


def sample_class_weights(labels: np.ndarray, samples: np.ndarray,
                         enabled: bool) -> dict[int, float] | None:
    """Class weights counted over training samples (clips or sequences), or None."""
    if not enabled:
        return None
    return class_weights(pd.DataFrame({"label": labels, "n_faces": samples}))


@dataclass
class TemporalResult:
    """What a temporal stage wrote and what its notebook shows."""

    run: RunPaths
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
        return {m: pd.read_csv(self.run.artifact(r.log)) for m, r in self.records.items()
                if self.run.artifact(r.log).exists()}


def sample_video_rows(scored: pd.DataFrame, test: pd.DataFrame, steps: Mapping[str, int],
                      threshold: float) -> pd.DataFrame:
    """One prediction row per test video from per-sample scores (clips or sequences):
    mean over a video's samples; ``n_frames`` = faces the samples cover; videos without
    a sample keep their row (``statistics.video_predictions``: status ``no_face``)."""
    rows = statistics.video_predictions(scored, test, "mean", threshold)
    rows["n_samples"] = rows["n_frames"]
    rows["n_frames"] = rows["video_id"].map(steps).fillna(0).astype(int)
    return rows


def finish_temporal_stage(run: RunPaths, families: Sequence[str],
                          records: dict[str, ModelRecord],
                          predictions: dict[str, pd.DataFrame], threshold: float,
                          features: pd.DataFrame | None = None,
                          scoring: statistics.Scoring = statistics.Scoring()) -> TemporalResult:
    """Score a temporal stage's methods into ``tables/results.csv`` (dropping the rows of
    ``families``' methods this run no longer has) and gather what its notebook shows."""
    methods = [r.method for r in records.values()]
    for family in families:
        evaluation.retire_methods(run, family, methods)
    results = pd.concat([evaluation.score_method(run, m, threshold, scoring) for m in methods],
                        ignore_index=True) if methods else evaluation.results_table(run).iloc[:0]
    return TemporalResult(run, methods, {r.method: r for r in records.values()}, results,
                          {records[k].method: v for k, v in predictions.items()}, features)
