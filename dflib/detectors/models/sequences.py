"""The recurrent family (``lstm``, ``bilstm``, ``temporal_max``, ``gru``) and its baseline
(``time_average``): heads on the per-face features of the first ``seq_len`` faces of a
video, their training and their predictions.

What the heads read (``train_rnn.inputs``): ``cnn``, a trained frame CNN's 512-d
``features`` (the paper's input; read from the feature cache,
:mod:`dflib.detectors.models.cnn_features`; the chunk model of highest validation AUC gives
them, and the heads train on that chunk's videos), or ``embeddings``, the face-embedding
network's vectors (:mod:`dflib.embeddings`, stage ``embed_faces``, which this stage runs
first), standardised by a layer of the head with the training faces' mean and variance:
that network never saw the study's videos, so the heads train on every training video.

Shorter videos are zero-padded and carry an explicit boolean mask input, so padding never
changes a prediction (a ReLU feature vector can be all zeros, so zeros cannot be the mask
marker)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

# Before Keras: the embeddings input may load facenet-pytorch (docs/traps.md).
from ... import torch_first  # noqa: F401, I001

import keras
import numpy as np
import pandas as pd
from keras import layers, ops, regularizers

from ... import embeddings, evaluation, io, statistics
from . import batches, cnn, cnn_training, fitting
from .cnn_features import (FEATURE_DIM, Sequences, extract_sequence_features, feature_chunk,
                           load_sequences, pad_sequences, sequence_features)
from ...face_store import store_inputs
from .fitting import (ModelRecord, TemporalResult, finish_temporal_stage, finished_record,
                      fit_model, predict_scores, sample_class_weights, sample_video_rows,
                      saved_record)
from ...paths import RunPaths
from .sequences_fields import TRAIN_RNN
from ...vocabulary import RNN_HEADS, RNN_INPUTS, TIME_AVERAGE, rnn_method

CNN_INPUT, EMBEDDINGS_INPUT = RNN_INPUTS

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
               l2: float = 0.0,
               standardise: tuple[np.ndarray, np.ndarray] | None = None) -> keras.Model:
    """A recurrent head on sequences of frame features; not compiled.

    Inputs ``{"features": float32 [b, T, d], "mask": bool [b, T]}`` (T free, True on real
    steps, padding at the end); output the 2-way softmax. ``lstm``: LSTM 32.
    ``bilstm``: BiLSTM 256 (sequences) then LSTM 32. ``temporal_max``: BiLSTM 256
    (sequences) then max over the unmasked steps. ``gru``: BiGRU 256. ``time_average``:
    the mean of the features over the unmasked steps, then the softmax: a logistic
    regression on time-averaged features, the baseline that shows whether a head learns
    anything from the order of the frames. ``l2`` weighs an L2 penalty on every kernel
    (input and recurrent kernels and the softmax): the heads train on a few dozen videos.
    ``standardise``: per-dimension ``(mean, variance)`` the features are standardised with
    first, inside the model, so a saved head carries them.
    """
    penalty = regularizers.L2(l2) if l2 > 0 else None
    recurrent = {"kernel_regularizer": penalty, "recurrent_regularizer": penalty}
    inputs = keras.Input((None, feature_dim), name="features")
    mask = keras.Input((None,), dtype="bool", name="mask")
    feats = inputs if standardise is None else layers.Normalization(
        mean=standardise[0], variance=standardise[1], name="standardise")(inputs)
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
    return keras.Model({"features": inputs, "mask": mask}, outputs, name=f"rnn_{name}")


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


def step_statistics(sequences: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance of the unpadded steps of ``sequences``."""
    steps = sequences.features[sequences.mask]
    return steps.mean(axis=0), np.maximum(steps.var(axis=0), 1e-12)


def embedding_sequences(vectors: np.ndarray, frames: pd.DataFrame, videos: pd.DataFrame,
                        seq_len: int) -> Sequences:
    """Padded sequences of the first ``seq_len`` embeddings (in frame order, the chosen
    face of each frame) of every video of ``videos`` with one; ``vectors, frames`` as
    :func:`dflib.embeddings.load_embeddings` returns them."""
    rows = frames.assign(row=np.arange(len(frames)))
    rows = rows[rows["chosen"].astype(bool)].sort_values(["video_id", "frame_idx"], kind="stable")
    by_video = {str(v): g["row"].to_numpy()[:seq_len] for v, g in rows.groupby("video_id")}
    ids, labels, feats = [], [], []
    for vid, label in zip(videos["video_id"].astype(str), videos["label"]):
        if len(by_video.get(vid, ())):
            ids.append(vid)
            labels.append(int(label))
            feats.append(vectors[by_video[vid]])
    x, lengths = pad_sequences(feats, seq_len, vectors.shape[1])
    return Sequences(np.array(ids, dtype=object), np.array(labels, dtype=np.int64), x, lengths)


@dataclass
class HeadInputs:
    """What the heads of one stage run read: where the features come from (``origin``,
    part of every head's configuration), the training videos, the sequences of the
    training, validation and test videos, and one row per video of the feature pass
    (``video_id, n_steps, status``; ``failed``: the store file could not be read)."""

    origin: dict[str, Any]
    train: pd.DataFrame
    sequences: dict[str, Sequences]
    table: pd.DataFrame


def cnn_inputs(store: batches.FaceSource, videos: pd.DataFrame, run: RunPaths,
               section: Mapping[str, Any]) -> HeadInputs:
    """The run's latest frame CNN's features, of its chunk of highest validation AUC; the
    heads train on that chunk's training videos."""
    manifest = cnn_training.latest_manifest(run)
    seq_len = section["seq_len"]
    chunk, why = feature_chunk(run, manifest)
    print(f"recurrent heads read the features of {manifest['arch']} {why}")
    table = extract_sequence_features(store, videos, run, manifest, seq_len,
                                      section["batch_size"], chunk)
    # The features come from one chunk's CNN, which trained on every real training video and
    # a share of the fakes: heads trained on all training videos would learn "the CNN has
    # seen this video" as "real". They train on that chunk's videos only, all seen alike.
    origin = {"source": CNN_INPUT, "arch": manifest["arch"],
              "cnn_finished_at": manifest["finished_at"], "chunk": chunk,
              "train_videos": f"chunk {chunk}"}
    train = cnn_training.chunk_videos(videos, manifest, chunk)
    splits = _splits(videos, train)
    return HeadInputs(origin, train, {k: load_sequences(run, manifest["arch"], v, seq_len)
                                      for k, v in splits.items()}, table)


def embedding_inputs(videos: pd.DataFrame, run: RunPaths, shared: Mapping[str, Any],
                     section: Mapping[str, Any], embed_section: Mapping[str, Any]) -> HeadInputs:
    """The face embeddings of stage ``embed_faces`` (run here first; it keeps the files
    already up to date, and stage 06 then finds every one done); the heads train on every
    training video."""
    made = embeddings.run_section(run, shared, embed_section, progress=False)
    print(f"recurrent heads read {made.manifest['dim']}-d face embeddings "
          f"({made.weights.used}: {made.weights.reason}), standardised on the training faces")
    origin = {"source": EMBEDDINGS_INPUT, "weights": made.manifest["used"],
              "dim": int(made.manifest["dim"]),
              "max_faces_per_video": int(made.manifest["max_faces_per_video"]),
              "train_videos": "all"}
    train, _ = cnn_training.split_videos(videos)
    splits = _splits(videos, train)
    vectors, frames = embeddings.load_embeddings(run, videos)
    table = made.videos[["video_id", "n_faces", "status"]].rename(columns={"n_faces": "n_steps"})
    table = table.assign(n_steps=table["n_steps"].clip(upper=section["seq_len"]))
    return HeadInputs(origin, train, {k: embedding_sequences(vectors, frames, v,
                                                             section["seq_len"])
                                      for k, v in splits.items()}, table)


def read_sequences(run: RunPaths, section: Mapping[str, Any], videos: pd.DataFrame) -> Sequences:
    """The sequences stage ``train_rnn`` wrote or read for ``videos``, as its heads see them
    before any standardisation: the feature cache of the run's latest frame CNN, or the
    stored face embeddings (``section["inputs"]``)."""
    if section["inputs"] == EMBEDDINGS_INPUT:
        return embedding_sequences(*embeddings.load_embeddings(run, videos), videos,
                                   section["seq_len"])
    return load_sequences(run, cnn_training.latest_manifest(run)["arch"], videos,
                          section["seq_len"])


def _splits(videos: pd.DataFrame, train: pd.DataFrame) -> dict[str, pd.DataFrame]:
    _, val = cnn_training.split_videos(videos)
    return {"train": train, "val": val,
            "test": videos[videos["split"] == "test"].reset_index(drop=True)}


def train_heads(store: batches.FaceSource, videos: pd.DataFrame, run: RunPaths,
                shared: Mapping[str, Any], section: Mapping[str, Any],
                threshold: float = 0.5, verbose: int = 2,
                scoring: statistics.Scoring = statistics.Scoring(),
                embed_section: Mapping[str, Any] | None = None) -> TemporalResult:
    """Every head of ``section["models"]`` trained (or reused) on the per-face features
    ``section["inputs"]`` names (:func:`cnn_inputs`, :func:`embedding_inputs`, which needs
    ``embed_section``, the profile's ``embed_faces``) and scored as ``rnn/<head>``.

    Adam on whole videos (one sequence each); a head whose record shows the same
    configuration and the same features is not retrained.
    """
    if section["inputs"] == EMBEDDINGS_INPUT:
        if embed_section is None:
            raise ValueError("train_rnn.inputs: embeddings needs the embed_faces section")
        head_inputs = embedding_inputs(videos, run, shared, section, embed_section)
    else:
        head_inputs = cnn_inputs(store, videos, run, section)
    seqs = head_inputs.sequences
    train_seq, val_seq, test_seq = seqs["train"], seqs["val"], seqs["test"]
    _, val = cnn_training.split_videos(videos)
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    train = head_inputs.train
    inputs = store_inputs(run, {"train": train[train["video_id"].isin(train_seq.video_ids)],
                                "val": val[val["video_id"].isin(val_seq.video_ids)]})
    standardise = (step_statistics(train_seq) if head_inputs.origin["source"] == EMBEDDINGS_INPUT
                   else None)
    records, predictions = {}, {}
    for head in section["models"]:
        config = head_config(head, shared, section, head_inputs.origin)
        made_from = io.made_from(config, inputs)
        record, stale = finished_record(run, "rnn", head, made_from)
        if stale:
            print(f"{rnn_method(head)}: {stale}, retraining")
        if record is None:
            fitting.seed_everything(shared["seed"])
            model = build_head(head, train_seq.features.shape[-1], section["dropout"],
                               section["l2"], standardise)
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
    return finish_temporal_stage(run, ("rnn",), records, predictions, threshold,
                                 head_inputs.table, scoring)


def _origin(record: ModelRecord) -> dict[str, Any]:
    """Where a saved head's features come from (records made before ``inputs`` existed
    read the frame CNN's)."""
    return {"source": CNN_INPUT, **record.config["features"]}


def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads for ``methods``: each head's record and model,
    and what its features come from: the frame CNN's manifest and the chunk model the
    heads were trained on (chosen on validation: ``features.chunk`` of the record), or the
    embeddings' manifest."""
    files: list[Path] = []
    for m in methods:
        name = m.split("/", 1)[1]
        record = saved_record(run, "rnn", name)
        origin = _origin(record)
        files += [run.model_files("rnn", name)[1], run.artifact(record.model)]
        if origin["source"] == EMBEDDINGS_INPUT:
            files.append(run.embeddings_manifest)
            continue
        manifest = cnn_training.completed_manifest(run, origin["arch"])
        chunk = manifest["chunk_models"][origin["chunk"]]["model"]
        files += [run.cnn_manifest(origin["arch"]), run.artifact(chunk)]
    return files


def score_saved(run: RunPaths, methods: Sequence[str], store: batches.FaceSource,
                videos: pd.DataFrame, settings: Mapping[str, Any], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """Recurrent heads of the run applied to other faces (:func:`dflib.reload.score_methods`):
    the features of each (source, backbone, chunk, ``seq_len``) are computed once; the
    embeddings with the run's network (:func:`dflib.embeddings.embed_videos`, shared with the
    other embedding families)."""
    out: dict[str, evaluation.Prediction] = {}
    cached: dict[tuple[Any, ...], Sequences] = {}
    for m in methods:
        record = saved_record(run, "rnn", m.split("/", 1)[1])
        origin, seq_len = _origin(record), record.config["seq_len"]
        key = (origin["source"], origin.get("arch"), origin.get("chunk"), seq_len)
        if key not in cached:
            cached[key] = (_embedded_sequences(run, store, videos, settings, origin, seq_len, m,
                                               progress)
                           if origin["source"] == EMBEDDINGS_INPUT
                           else _cnn_sequences(run, store, videos, origin, seq_len,
                                               record.config["batch_size"], m))
        out[m] = (head_predictions(cnn.load_model(run.artifact(record.model)), cached[key],
                                   videos, record.config["batch_size"]), None)
    return out


def _cnn_sequences(run: RunPaths, store: batches.FaceSource, videos: pd.DataFrame,
                   origin: Mapping[str, Any], seq_len: int, batch_size: int,
                   method: str) -> Sequences:
    manifest = cnn_training.completed_manifest(run, origin["arch"])
    if manifest["finished_at"] != origin["cnn_finished_at"]:
        raise ValueError(f"{method}: trained on features of an earlier {origin['arch']} "
                         "training; rerun stage 'train_rnn'")
    features = cnn.feature_model(cnn.load_model(
        run.artifact(manifest["chunk_models"][origin["chunk"]]["model"])))
    return sequence_features(features, store, videos, seq_len, batch_size)


def _embedded_sequences(run: RunPaths, store: batches.FaceSource, videos: pd.DataFrame,
                        settings: Mapping[str, Any], origin: Mapping[str, Any], seq_len: int,
                        method: str, progress: bool) -> Sequences:
    used = embeddings.read_manifest(run)["used"]
    if used != origin["weights"]:
        raise ValueError(f"{method}: trained on {origin['weights']} embeddings, the run's are "
                         f"now {used}; rerun stage 'train_rnn'")
    vectors, frames = embeddings.embed_videos(run, store, videos["video_id"].astype(str),
                                              settings, progress)
    return embedding_sequences(vectors, frames, videos, seq_len)
