"""The feature cache of the recurrent heads: one chunk model's ``features`` layer for the
first ``seq_len`` faces of every video, one file per video under ``features/cnn_seq/<arch>/``,
kept while the CNN, ``seq_len`` and the face store settings it was made from are unchanged;
the padded, masked sequences read back from it; and :func:`feature_chunk`, the chunk whose
CNN gives the features (the one of highest validation AUC)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import pandas as pd

from ... import evaluation, io
from . import batches, cnn
from ...paths import RunPaths
from ...vocabulary import cnn_method

FEATURE_DIM = 512


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


# --------------------------------------------------------------------------- sequence features

def _store_config(run: RunPaths, video_id: str) -> str | None:
    """The settings of a video's face store file (None when it has none)."""
    try:
        with np.load(run.face_file(video_id)) as z:
            return str(z["config"])
    except (OSError, KeyError, ValueError):
        return None


def feature_chunk(run: RunPaths, manifest: Mapping[str, Any]) -> tuple[int, str]:
    """The chunk whose CNN gives the recurrent heads their features, and why: the chunk
    model of highest video AUC on the validation split (``tables/results.csv``, written by
    stage evaluate_cnn), never the test split; chunk 0 when no chunk has a validation AUC.

    Chunk 0 was the default before: an arbitrary choice, and the weakest chunk in both demo
    runs measured (issue 27)."""
    names = [cnn_method(manifest["arch"], i) for i in range(len(manifest["chunk_models"]))]
    chosen = evaluation.chosen_method(evaluation.results_table(run), "video", among=names)
    if chosen is None:
        return 0, ("chunk 0: no chunk has a validation AUC (no validation split, or stage "
                   "evaluate_cnn has not scored this training)")
    chunk = names.index(chosen)
    return chunk, f"chunk {chunk}: the highest validation AUC of the {len(names)} chunk models"


def _file_config(run: RunPaths, manifest: Mapping[str, Any], seq_len: int,
                 video_id: str, chunk: int) -> str | None:
    store = _store_config(run, video_id)
    if store is None:
        return None
    return json.dumps({"cnn": manifest["chunk_models"][chunk]["model"],
                       "cnn_finished_at": manifest["finished_at"], "seq_len": seq_len,
                       "faces": store}, sort_keys=True)


def extract_sequence_features(store: batches.FaceSource, videos: pd.DataFrame, run: RunPaths,
                              manifest: Mapping[str, Any], seq_len: int,
                              batch_size: int = 32, chunk: int = 0) -> pd.DataFrame:
    """Write the frame CNN's ``features`` for the first ``seq_len`` faces of every video.

    The CNN is chunk ``chunk`` of the training ``manifest`` (:func:`feature_chunk` chooses
    it). One file per video, written atomically; a file made with the same CNN,
    ``seq_len`` and face store settings is kept (status ``skipped``). Returns ``video_id, n_steps, status``
    (``extracted``, ``skipped``, ``no_store``, or ``failed`` when the store file cannot be
    read).
    """
    run.sequence_features_dir(manifest["arch"]).mkdir(parents=True, exist_ok=True)
    extractor = None
    rows = []
    for vid in videos["video_id"].astype(str):
        config = _file_config(run, manifest, seq_len, vid, chunk)
        target = run.sequence_features_file(manifest["arch"], vid)
        if config is None:
            target.unlink(missing_ok=True)  # a file of an earlier run must not be read later
            rows.append((vid, 0, "no_store"))
            continue
        if io.npz_made_with(target, config):  # made so, and reads whole
            with np.load(target) as z:
                rows.append((vid, len(z["features"]), "skipped"))
            continue
        if extractor is None:  # loading the CNN is the slow part of a rerun: only if needed
            cnn_path = run.artifact(manifest["chunk_models"][chunk]["model"])
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
        "arch": manifest["arch"], "chunk": chunk,
        "cnn_model": manifest["chunk_models"][chunk]["model"],
        "cnn_finished_at": manifest["finished_at"], "layer": cnn.FEATURES_LAYER,
        "seq_len": seq_len, "videos": int((~table["status"].isin(["no_store", "failed"])).sum()),
        "no_store": table.loc[table["status"] == "no_store", "video_id"].tolist()},
        indent=2) + "\n", run.sequence_features_manifest(manifest["arch"]))
    return table


def load_sequences(run: RunPaths, arch: str, videos: pd.DataFrame, seq_len: int) -> Sequences:
    """The stored feature sequences of ``videos`` that have at least one face, padded."""
    ids, labels, feats = [], [], []
    for vid, label in zip(videos["video_id"].astype(str), videos["label"]):
        target = run.sequence_features_file(arch, vid)
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


def sequence_features(model: keras.Model, store: batches.FaceSource, videos: pd.DataFrame,
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
