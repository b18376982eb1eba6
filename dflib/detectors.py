"""Every trained detector of a run, reloaded and applied to faces it has not seen.

The stages score their own test split; this module scores any other face source with
the same saved models and the same scoring functions: the re-encoded test videos of the
compression-robustness stage and the videos given to ``dflib predict``. A method name
(``cnn/ef0/boosted``, ``c3d``, ``rnn/bilstm``, ``facenet/svc``, ``triplet/sgd``) is all it
takes; shared work (a CNN's chunk models, FaceNet embeddings, sequence features) is done
once per call for all the methods that need it.

torch is imported before Keras: the FaceNet detectors need facenet-pytorch (which loads
torchvision) in the same process, and TensorFlow followed by torchvision segfaults.
"""

from __future__ import annotations

import torchvision  # noqa: F401  (before TensorFlow, see above)

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import cnn, config, embeddings, evaluation, temporal, training, triplet
from .paths import RunPaths

FAMILIES = ("cnn", "c3d", "rnn", "facenet", "triplet")
Prediction = tuple[pd.DataFrame, pd.DataFrame | None]  # (video rows, frame rows or None)


def family(method: str) -> str:
    """The detector family of a method name; a clear error for a name of no family."""
    head = method.split("/", 1)[0]
    if head in temporal.CLIP_MODELS:
        return "c3d"
    if head in FAMILIES and "/" in method:
        return head
    raise ValueError(f"method {method!r} is not a detector name (cnn/<arch>[/...], "
                     f"{', '.join(temporal.CLIP_MODELS)}, rnn/<head>, facenet/<classifier>, "
                     "triplet/<classifier>)")


def trained_methods(run: RunPaths) -> list[str]:
    """The methods with video-level results in ``tables/results.csv``, in table order."""
    table = evaluation.results_table(run)
    return list(dict.fromkeys(table.loc[table["level"] == "video", "method"]))


def best_method(run: RunPaths) -> str:
    """The method with the highest video-level AUC on the validation split (ties: the
    first in the table); the test split plays no part in the choice."""
    method = evaluation.chosen_method(evaluation.results_table(run))
    if method is None:
        raise FileNotFoundError(f"{run.results_csv}: no video-level validation AUC to choose a "
                                "method by (no validation split, or the study has not run); "
                                "name one with --method")
    return method


def method_threshold(settings: Mapping[str, Any], method: str) -> float:
    """The threshold a method's predictions were called with (its stage's ``threshold``;
    the temporal stages use 0.5)."""
    section = {"cnn": "evaluate_cnn", "facenet": "train_triplet",
               "triplet": "train_triplet"}.get(family(method))
    return float(settings[section]["threshold"]) if section else 0.5


def operating_threshold(run: RunPaths, method: str) -> float:
    """The threshold ``dflib predict`` applies: the method's video-level ``threshold_val``
    (chosen on validation), or its stage's threshold when the results table has none."""
    table = evaluation.results_table(run)
    row = table[(table["method"] == method) & (table["level"] == "video")]
    if len(row) and pd.notna(row["threshold_val"].iloc[0]):
        return float(row["threshold_val"].iloc[0])
    return method_threshold(config.run_settings(run), method)


def score_methods(run: RunPaths, methods: Sequence[str], store: training.FaceSource,
                  videos: pd.DataFrame, progress: bool = False) -> dict[str, Prediction]:
    """Predictions of ``videos`` (``video_id, label, n_faces``; ``label`` may be a
    placeholder for unlabelled videos) by each method, faces read from ``store``.

    Aggregation and threshold are the run's own (its ``profile.yaml``), so a method scores
    new faces exactly as it scored its test split. Video rows follow the prediction
    contract (``video_id, label, score, pred, n_frames, status``); frame rows exist for
    frame-level detectors.
    """
    by_family: dict[str, list[str]] = defaultdict(list)
    for m in dict.fromkeys(methods):
        by_family[family(m)].append(m)
    settings = config.run_settings(run)
    videos = videos.reset_index(drop=True)
    out: dict[str, Prediction] = {}
    if by_family["cnn"]:
        out.update(_score_cnn(run, by_family["cnn"], store, videos, settings["evaluate_cnn"]))
    for m in by_family["c3d"]:
        record = _record(run, "c3d", m)
        out[m] = (temporal.clip_predictions(temporal.load_model(run.root / record.model),
                                            record.config, store, videos), None)
    if by_family["rnn"]:
        out.update(_score_rnn(run, by_family["rnn"], store, videos))
    embedding_methods = by_family["facenet"] + by_family["triplet"]
    if embedding_methods:
        out.update(_score_embeddings(run, embedding_methods, store, videos, settings,
                                     progress))
    return {m: out[m] for m in dict.fromkeys(methods)}


def _score_cnn(run: RunPaths, methods: list[str], store: training.FaceSource,
               videos: pd.DataFrame, section: Mapping[str, Any]) -> dict[str, Prediction]:
    out: dict[str, Prediction] = {}
    for arch in dict.fromkeys(m.split("/")[1] for m in methods):
        manifest = _cnn_manifest(run, arch)
        models = [cnn.load_model(run.root / c["model"]) for c in manifest["chunk_models"]]
        scored = training.chunk_predictions(models, arch, store, videos,
                                            manifest["config"]["batch_size"],
                                            section["aggregation"], section["threshold"])
        for m in methods:
            if m.split("/")[1] == arch:
                if m not in scored:
                    raise ValueError(f"method {m!r}: the {arch} training has "
                                     f"{', '.join(scored)} only")
                out[m] = scored[m]
    return out


def _cnn_manifest(run: RunPaths, arch: str) -> dict[str, Any]:
    manifest = training.read_manifest(training.manifest_path(run, arch))
    if not manifest or not manifest.get("complete"):
        raise FileNotFoundError(f"{training.manifest_path(run, arch)}: no completed {arch} "
                                "training in this run")
    return manifest


def _record(run: RunPaths, folder: str, name: str) -> temporal.ModelRecord:
    _, record_path, _ = temporal.model_paths(run, folder, name)
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path}: no trained model {name!r} in this run")
    record = temporal.ModelRecord(**json.loads(record_path.read_text(encoding="utf-8")))
    if not record.complete:
        raise FileNotFoundError(f"{record_path}: the training of {name!r} did not finish")
    return record


def _score_rnn(run: RunPaths, methods: list[str], store: training.FaceSource,
               videos: pd.DataFrame) -> dict[str, Prediction]:
    out: dict[str, Prediction] = {}
    sequences: dict[tuple[str, int], temporal.Sequences] = {}
    for m in methods:
        record = _record(run, "rnn", m.split("/", 1)[1])
        origin, seq_len = record.config["features"], record.config["seq_len"]
        key = (origin["arch"], seq_len)
        if key not in sequences:
            manifest = _cnn_manifest(run, origin["arch"])
            if manifest["finished_at"] != origin["cnn_finished_at"]:
                raise ValueError(f"{m}: trained on features of an earlier {origin['arch']} "
                                 "training; rerun stage 'train_rnn'")
            features = cnn.feature_model(cnn.load_model(
                run.root / manifest["chunk_models"][0]["model"]))
            sequences[key] = temporal.sequence_features(features, store, videos, seq_len,
                                                        record.config["batch_size"])
        out[m] = (temporal.head_predictions(temporal.load_model(run.root / record.model),
                                            sequences[key], videos,
                                            record.config["batch_size"]), None)
    return out


def _facenet(run: RunPaths, device: str) -> Any:
    """The embedding network with the weights the run's embeddings were made with."""
    manifest = embeddings.read_manifest(run)
    if manifest["used"] == embeddings.RANDOM:
        model = embeddings.random_facenet(int(manifest["seed"]))
        model.classify = False
        return model.eval().to(embeddings.resolve_device(device))
    model, choice = embeddings.load_facenet(manifest["used"], device=device)
    if choice.used != manifest["used"]:
        raise RuntimeError(f"the run's embeddings used {manifest['used']} weights, which "
                           f"cannot be loaded now ({choice.reason})")
    return model


def _score_embeddings(run: RunPaths, methods: list[str], store: training.FaceSource,
                      videos: pd.DataFrame, settings: Mapping[str, Any],
                      progress: bool) -> dict[str, Prediction]:
    from tqdm.auto import tqdm

    model = _facenet(run, settings["device"])
    # The embedding stage's batch size: CPU kernels sum in another order for another batch.
    batch_size = settings["embed_faces"]["batch_size"]
    max_faces = int(embeddings.read_manifest(run).get("max_faces_per_video", 0))
    section = settings["train_triplet"]
    blocks, tables = [np.zeros((0, embeddings.embedding_dim(model)), np.float32)], []
    for vid, label in tqdm(list(zip(videos["video_id"].astype(str), videos["label"])),
                           desc="facenet", unit="video", disable=not progress):
        faces, frame_idx, _ = embeddings.faces_to_embed(store, vid, max_faces)
        blocks.append(embeddings.embed(model, faces, batch_size))
        tables.append(pd.DataFrame({"video_id": vid, "frame_idx": np.asarray(frame_idx, int),
                                    "label": int(label)}))
    x = np.concatenate(blocks)
    frames = (pd.concat(tables, ignore_index=True) if tables
              else pd.DataFrame(columns=["video_id", "frame_idx", "label"]))
    spaces = {"facenet": x}
    if any(m.startswith("triplet/") for m in methods):
        spaces["triplet"] = triplet.transform(_load_triplet(run), x)
    out: dict[str, Prediction] = {}
    for m in methods:
        space = spaces[m.split("/", 1)[0]]
        clf = triplet.load_classifier(run, m)
        f = evaluation.max_per_frame(frames.assign(
            score=triplet.fake_probability(clf, space) if len(space) else np.zeros(0)))
        out[m] = (evaluation.video_predictions(f, videos, section["aggregation"],
                                               section["threshold"]), f)
    return out


def _load_triplet(run: RunPaths) -> Any:
    import keras

    target: Path = triplet.model_path(run)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no trained triplet network in this run")
    return keras.saving.load_model(target, compile=False)
