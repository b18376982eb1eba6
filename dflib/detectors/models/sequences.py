"""The recurrent family (``lstm``, ``bilstm``, ``temporal_max``, ``gru``) and its baseline
(``time_average``): heads on a trained frame CNN's 512-d ``features`` for the first
``seq_len`` faces of a video (read from the feature cache, :mod:`dflib.detectors.models.cnn_features`; the
chunk model of highest validation AUC gives them), their training and their predictions.

Shorter videos are zero-padded and carry an explicit boolean mask input, so padding never
changes a prediction (a ReLU feature vector can be all zeros, so zeros cannot be the mask
marker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers, ops, regularizers

from ... import evaluation, io, statistics
from . import batches, cnn, cnn_training, fitting
from .cnn_features import (FEATURE_DIM, Sequences, extract_sequence_features, feature_chunk,
                           load_sequences, sequence_features)
from ...face_store import store_inputs
from .fitting import (ModelRecord, TemporalResult, finish_temporal_stage, finished_record,
                      fit_model, predict_scores, sample_class_weights, sample_video_rows,
                      saved_record)
from ...paths import RunPaths
from .sequences_fields import TRAIN_RNN
from ...vocabulary import RNN_HEADS, TIME_AVERAGE, rnn_method

# --------------------------------------------------------------------------- recurrent heads

@keras.saving.register_keras_serializable(package="dflib")
class MaskedTemporalMean(layers.Layer):
    """Mean over time of ``[b, T, d]`` over the steps the mask keeps (0 for none kept)."""

    def call(self, features: Any, steps: Any) -> Any:
        keep = ops.expand_dims(ops.cast(steps, features.dtype), -1)
        return ops.sum(features * keep, axis=1) / ops.maximum(ops.sum(keep, axis=1), 1.0)

    def compute_output_shape(self, features_shape: tuple, steps_shape: tuple) -> tuple:
        return (features_shape[0], features_shape[2])


def build_head(name: str, feature_dim: int = FEATURE_DIM, dropout: float = 0.5,
               l2: float = 0.0) -> keras.Model:
    """A recurrent head on sequences of frame features; not compiled.

    Inputs ``{"features": float32 [b, T, d], "mask": bool [b, T]}`` (T free, True on real
    steps, padding at the end); output the 2-way softmax. ``lstm``: LSTM 32.
    ``bilstm``: BiLSTM 256 (sequences) then LSTM 32. ``temporal_max``: BiLSTM 256
    (sequences) then max over the unmasked steps. ``gru``: BiGRU 256. ``time_average``:
    the mean of the features over the unmasked steps, then the softmax: a logistic
    regression on time-averaged features, the baseline that shows whether a head learns
    anything from the order of the frames. ``l2`` weighs an L2 penalty on every kernel
    (input and recurrent kernels and the softmax): the heads train on a few dozen videos.
    """
    penalty = regularizers.L2(l2) if l2 > 0 else None
    recurrent = {"kernel_regularizer": penalty, "recurrent_regularizer": penalty}
    feats = keras.Input((None, feature_dim), name="features")
    mask = keras.Input((None,), dtype="bool", name="mask")
    if name == "lstm":
        x = layers.LSTM(32, name="lstm", **recurrent)(feats, mask=mask)
    elif name == "bilstm":
        x = layers.Bidirectional(layers.LSTM(256, return_sequences=True, **recurrent),
                                 name="bilstm")(feats, mask=mask)
        x = layers.LSTM(32, name="lstm", **recurrent)(x)  # the mask travels with x
    elif name == "temporal_max":
        x = layers.Bidirectional(layers.LSTM(256, return_sequences=True, **recurrent),
                                 name="bilstm")(feats, mask=mask)
        x = cnn.MaskedTemporalMax(name="temporal_max")(x)
    elif name == "gru":
        x = layers.Bidirectional(layers.GRU(256, **recurrent), name="bigru")(feats, mask=mask)
    elif name == TIME_AVERAGE:
        x = MaskedTemporalMean(name=TIME_AVERAGE)(feats, mask)
    else:
        raise ValueError(f"unknown recurrent head {name!r}; choose one of {RNN_HEADS}")
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(2, activation="softmax", name=cnn.PREDICTIONS_LAYER,
                           kernel_regularizer=penalty)(x)
    return keras.Model({"features": feats, "mask": mask}, outputs, name=f"rnn_{name}")


# --------------------------------------------------------------------------- stage: heads

def head_config(head: str, shared: Mapping[str, Any], section: Mapping[str, Any],
                features: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that decides a recurrent head, the features' origin included: the
    section's fields but the head list."""
    return {"head": head, "seed": shared["seed"], "features": dict(features),
            **{k: section[k] for k in TRAIN_RNN if k != "models"}}


def head_predictions(model: keras.Model, sequences: Sequences, videos: pd.DataFrame,
                     batch_size: int = 32, threshold: float = 0.5) -> pd.DataFrame:
    """Video predictions of a recurrent head: one P(fake) per feature sequence; videos of
    ``videos`` without a sequence (no face) keep their row with status ``no_face``."""
    scored = pd.DataFrame({"video_id": sequences.video_ids, "frame_idx": 0,
                           "label": sequences.labels,
                           "score": predict_scores(model, sequences.inputs, batch_size)
                           if len(sequences.labels) else np.zeros(0)})
    steps = dict(zip(sequences.video_ids, sequences.lengths.tolist()))
    return sample_video_rows(scored, videos, steps, threshold)


def train_heads(store: batches.FaceSource, videos: pd.DataFrame, run: RunPaths,
                shared: Mapping[str, Any], section: Mapping[str, Any],
                threshold: float = 0.5, verbose: int = 2,
                scoring: statistics.Scoring = statistics.Scoring()) -> TemporalResult:
    """Sequence features from the run's latest frame CNN (its chunk of highest validation
    AUC, :func:`dflib.detectors.models.cnn_features.feature_chunk`), then every head of ``section["models"]``
    trained (or reused) on that chunk's training videos and scored as ``rnn/<head>``.

    Adam on whole videos (one sequence each); a head whose record shows the same
    configuration and the same features is not retrained.
    """
    manifest = cnn_training.latest_manifest(run)
    seq_len = section["seq_len"]
    chunk, why = feature_chunk(run, manifest)
    print(f"recurrent heads read the features of {manifest['arch']} {why}")
    table = extract_sequence_features(store, videos, run, manifest, seq_len,
                                      section["batch_size"], chunk)
    # The features come from one chunk's CNN, which trained on every real training video and
    # a share of the fakes: heads trained on all training videos would learn "the CNN has
    # seen this video" as "real". They train on that chunk's videos only, all seen alike.
    origin = {"arch": manifest["arch"], "cnn_finished_at": manifest["finished_at"],
              "chunk": chunk, "train_videos": f"chunk {chunk}"}
    _, val = cnn_training.split_videos(videos)
    train = cnn_training.chunk_videos(videos, manifest, chunk)
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
            print(f"{rnn_method(head)}: {stale}, retraining")
        if record is None:
            fitting.seed_everything(shared["seed"])
            model = build_head(head, train_seq.features.shape[-1], section["dropout"],
                               section["l2"])
            model.compile(optimizer=keras.optimizers.Adam(section["learning_rate"]),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            weights = sample_class_weights(train_seq.labels,
                                           np.ones(len(train_seq.labels), np.int64),
                                           section["class_weight"])
            validation = (val_seq.inputs, val_seq.labels) if len(val_seq.labels) else None
            record = fit_model(
                model, run, ModelRecord(name=head, method=rnn_method(head), config=config,
                                        n_train=len(train_seq.labels),
                                        n_val=len(val_seq.labels), made_from=made_from),
                "rnn", train_seq.inputs, train_seq.labels, validation,
                epochs=section["epochs"], batch_size=section["batch_size"],
                patience=section["patience"], class_weight=weights, verbose=verbose)
        else:
            print(f"{rnn_method(head)}: {record.model} exists with this configuration, skipped")
        model = cnn.load_model(run.artifact(record.model))
        evaluation.write_predictions(run, record.method, head_predictions(
            model, val_seq, val, section["batch_size"], threshold),
            split="val")
        rows = head_predictions(model, test_seq, test, section["batch_size"], threshold)
        evaluation.write_predictions(run, record.method, rows)
        records[head], predictions[head] = record, rows
    return finish_temporal_stage(run, ("rnn",), records, predictions, threshold, table, scoring)


def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads for ``methods``: each head's record and model,
    and the frame CNN whose features it reads (its manifest and the chunk model the heads
    were trained on, chosen on validation: ``features.chunk`` of the record)."""
    files: list[Path] = []
    for m in methods:
        name = m.split("/", 1)[1]
        record = saved_record(run, "rnn", name)
        origin = record.config["features"]
        manifest = cnn_training.completed_manifest(run, origin["arch"])
        chunk = manifest["chunk_models"][origin["chunk"]]["model"]
        files += [run.model_files("rnn", name)[1], run.artifact(record.model),
                  run.cnn_manifest(origin["arch"]), run.artifact(chunk)]
    return files


def score_saved(run: RunPaths, methods: Sequence[str], store: batches.FaceSource,
                videos: pd.DataFrame, settings: Mapping[str, Any], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """Recurrent heads of the run applied to other faces (:func:`dflib.reload.score_methods`):
    the frame CNN's features of each (backbone, chunk, ``seq_len``) are computed once."""
    out: dict[str, evaluation.Prediction] = {}
    cached: dict[tuple[str, int, int], Sequences] = {}
    for m in methods:
        record = saved_record(run, "rnn", m.split("/", 1)[1])
        origin, seq_len = record.config["features"], record.config["seq_len"]
        key = (origin["arch"], origin["chunk"], seq_len)
        if key not in cached:
            manifest = cnn_training.completed_manifest(run, origin["arch"])
            if manifest["finished_at"] != origin["cnn_finished_at"]:
                raise ValueError(f"{m}: trained on features of an earlier {origin['arch']} "
                                 "training; rerun stage 'train_rnn'")
            features = cnn.feature_model(cnn.load_model(
                run.artifact(manifest["chunk_models"][origin["chunk"]]["model"])))
            cached[key] = sequence_features(features, store, videos, seq_len,
                                            record.config["batch_size"])
        out[m] = (head_predictions(cnn.load_model(run.artifact(record.model)), cached[key],
                                   videos, record.config["batch_size"]), None)
    return out
