"""The frame-CNN stage: balanced bagging of the training videos into chunks, one model per
chunk (in this process or on Dask workers), its manifest, and the chunk models' and their
votes' predictions."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import pandas as pd

from ... import evaluation, io, statistics
from . import cnn
from .batches import PAPER_AUGMENTATION, FaceBatches, FaceSource
from ...face_store import store_inputs
from .fitting import (BatchNormRecalibration, FakeScoreAUC, FitRecord, class_weights, fit_and_save,
                      private_default_seeds, seed_everything)
from ...paths import RunPaths
from ...vocabulary import ENSEMBLE_RULES, cnn_method, is_sbi, sbi_method

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
    # Last, with the defaults that describe a manifest written before the keys existed.
    bn_recalibration_batches: int = 0
    monitor: str = "val_loss"
    balanced_validation: bool = False

    @classmethod
    def from_sections(cls, shared: Mapping[str, Any], section: Mapping[str, Any]) -> "TrainConfig":
        return cls(img_size=shared["img_size"], seed=shared["seed"],
                   **{k: section[k] for k in cls.__dataclass_fields__
                      if k not in ("img_size", "seed")})


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A training manifest; None when there is none or it does not parse (cut short): its
    chunks are then trained again, as for a first run."""
    return io.read_record(path)


def split_videos(videos: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, val)`` rows of the index, by video; raises if a video is on both sides."""
    train = videos[videos["split"] == "train"]
    val = videos[videos["split"] == "val"]
    both = set(train["video_id"]) & set(val["video_id"])
    if both:
        raise ValueError(f"video {sorted(both)[0]!r} is in both the train and val splits")
    return train.reset_index(drop=True), val.reset_index(drop=True)


@dataclass(kw_only=True)
class ChunkRecord(FitRecord):
    """A chunk model's record, one entry of ``chunk_models`` in the CNN manifest."""

    chunk: int
    n_videos: int
    n_real: int
    n_fake: int
    n_faces: int
    weights_used: str = ""


def _chunk_record(chunk: int, videos: pd.DataFrame) -> ChunkRecord:
    return ChunkRecord(chunk=chunk, n_videos=len(videos),
                       n_real=int((videos["label"] == 0).sum()),
                       n_fake=int((videos["label"] == 1).sum()),
                       n_faces=int(videos["n_faces"].sum()))


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
    return pd.DataFrame([{k: v for k, v in _chunk_record(i, p).as_dict().items()
                          if k in ("chunk", "n_videos", "n_real", "n_fake", "n_faces")}
                         for i, p in enumerate(parts)])


def _write_manifest(run: RunPaths, manifest: dict[str, Any]) -> None:
    # One value when every chunk got the same weights (the normal case), else each of them.
    manifest["weights_used"] = ", ".join(dict.fromkeys(c["weights_used"]
                                                       for c in manifest["chunk_models"]))
    io.write_text(json.dumps(manifest, indent=2) + "\n", run.cnn_manifest(manifest["arch"]))


def _fit_chunk(store: FaceSource, i: int, part: pd.DataFrame, val_data: FaceBatches | None,
               run: RunPaths, cfg: TrainConfig, made_from: dict[str, Any],
               verbose: int) -> ChunkRecord:
    """Train chunk ``i``'s model and move it to its final name; return its record."""
    final = run.cnn_chunk_model(cfg.arch, i)
    record = _chunk_record(i, part)
    record.made_from = made_from
    record.monitor = cfg.monitor if val_data is not None else "loss"
    record.model = run.relative(final)
    record.log = run.relative(run.cnn_chunk_log(cfg.arch, i))
    seed_everything(cfg.seed + i)
    with private_default_seeds(cfg.seed + i):
        model, record.weights_used = cnn.build_model(cfg.arch, cfg.img_size, cfg.weights,
                                                     cfg.dropout)
    model.compile(optimizer=keras.optimizers.Nadam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", FakeScoreAUC(name="auc")])
    data = FaceBatches(store, part, cfg.batch_size, shuffle=True, seed=cfg.seed + i,
                       augment=PAPER_AUGMENTATION if cfg.augment else None)
    weights = class_weights(part) if cfg.class_weight else None
    record.class_weight = {str(c): w for c, w in (weights or {}).items()}
    # The faces as inference sees them (no augmentation), in another seeded order.
    recalibration = BatchNormRecalibration(
        FaceBatches(store, part, cfg.batch_size, shuffle=True, seed=cfg.seed + i + 1),
        cfg.bn_recalibration_batches)
    fit_and_save(model, final, run.artifact(record.log), record, data, validation=val_data,
                 epochs=cfg.epochs, patience=cfg.patience, class_weight=weights,
                 verbose=verbose, first_callbacks=[recalibration])
    return record


def _validation_batches(store: FaceSource, val: pd.DataFrame, cfg: TrainConfig
                        ) -> FaceBatches | None:
    """The validation faces early stopping and checkpoints see, each class weighing half
    of ``val_loss`` with ``balanced_validation`` (:func:`class_weights`); None without
    any."""
    if val["n_faces"].sum() == 0:
        return None
    return FaceBatches(store, val, cfg.batch_size,
                       class_weights=class_weights(val) if cfg.balanced_validation else None)


def _fit_chunk_task(store: FaceSource, i: int, part: pd.DataFrame, val: pd.DataFrame,
                    run: RunPaths, cfg: TrainConfig, made_from: dict[str, Any],
                    verbose: int) -> dict[str, Any]:
    """One chunk on a Dask worker: the same :func:`_fit_chunk` as the sequential path, with
    the validation batches rebuilt there, so the model and its files are the same."""
    return _fit_chunk(store, i, part, _validation_batches(store, val, cfg), run, cfg, made_from,
                      verbose).as_dict()


def train_section(store: FaceSource, videos: pd.DataFrame, run: RunPaths,
                  shared: Mapping[str, Any], section: Mapping[str, Any],
                  verbose: int = 2) -> dict[str, Any]:
    """:func:`train_chunks` with a validated profile's shared keys and ``train_cnn`` section
    (:data:`dflib.detectors.models.cnn_training_fields.TRAIN_CNN`): the models' settings
    (:class:`TrainConfig`) and where they train (``workers``, ``scheduler``)."""
    return train_chunks(store, videos, run, TrainConfig.from_sections(shared, section), verbose,
                        workers=section["workers"], scheduler=section["scheduler"])


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
    run.cnn_dir(cfg.arch).mkdir(parents=True, exist_ok=True)
    run.logs.mkdir(parents=True, exist_ok=True)
    config = asdict(cfg)
    old = read_manifest(run.cnn_manifest(cfg.arch))
    done = {c["chunk"]: c for c in old["chunk_models"]} if old else {}
    inputs = store_inputs(run, {"train": train, "val": val})  # each store file read once
    manifest: dict[str, Any] = {
        "arch": cfg.arch, "img_size": cfg.img_size, "chunks": len(parts), "config": config,
        "weights_requested": cfg.weights, "weights_used": None,
        "n_train_videos": len(train), "n_val_videos": len(val),
        "n_val_faces": int(val["n_faces"].sum()), "chunk_models": [], "complete": False,
    }
    val_data = _validation_batches(store, val, cfg)
    if val_data is None:
        warnings.warn("no validation faces: early stopping and checkpoints follow the "
                      "training loss", stacklevel=2)
    todo = []
    for i, part in enumerate(parts):
        made_from = io.made_from(config, {
            "train": {v: inputs["train"][v] for v in part["video_id"].astype(str)},
            "val": inputs["val"]})
        model_file = run.cnn_chunk_model(cfg.arch, i)
        if i in done and model_file.exists():
            damage = io.read_problem(model_file)
            stale = (io.stale_reason(done[i].get("made_from"), made_from)
                     or (f"{model_file.name} {damage}" if damage else ""))
            if not stale:
                manifest["chunk_models"].append(done[i])
                print(f"chunk {i}: {model_file.name} exists, skipped")
                continue
            print(f"chunk {i}: {stale}, retraining")
        todo.append((i, part, made_from))
    for i, part, made_from in todo:
        print(f"chunk {i} of {len(parts)}: {len(part)} videos "
              f"({int((part['label'] == 0).sum())} real, {int(part['label'].sum())} fake), "
              f"{int(part['n_faces'].sum())} faces", flush=True)
        if not (workers > 0 or scheduler):
            manifest["chunk_models"].append(_fit_chunk(store, i, part, val_data, run, cfg,
                                                       made_from, verbose).as_dict())
            _write_manifest(run, manifest)
    if todo and (workers > 0 or scheduler):
        from distributed import as_completed

        from ...cluster import dask_client

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
    return {f"chunk {c['chunk']}": pd.read_csv(run.artifact(c["log"]))
            for c in manifest["chunk_models"] if (run.artifact(c["log"])).exists()}


# --------------------------------------------------------------------------- scoring

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
    found = [m for p in run.cnn_manifests()
             if (m := read_manifest(p)) and m.get("complete")]
    if not found:
        raise FileNotFoundError(f"{run.models}: no completed CNN training; "
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
    frames = statistics.max_per_frame(score_faces(
        models, FaceBatches(store, videos, batch_size, every_face=True)))
    keys = frames[["video_id", "frame_idx", "label"]]
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for j in range(len(models)):
        f = keys.assign(score=frames[f"score{j}"])
        out[cnn_method(arch, j)] = (statistics.video_predictions(f, videos, aggregation,
                                                                  threshold), f)
    if len(models) > 1:
        members = list(out.values())
        for suffix, how in ENSEMBLE_RULES.items():
            out[cnn_method(arch, ensemble=suffix)] = (
                statistics.ensemble([v for v, _ in members], how, threshold),
                statistics.ensemble([f for _, f in members], how, threshold))
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
                    manifest: Mapping[str, Any], section: Mapping[str, Any],
                    scoring: statistics.Scoring = statistics.Scoring()) -> CnnEvaluation:
    """Score the validation and test splits with every chunk model, write predictions
    (``predictions/val/`` and ``predictions/``) and results rows; ``section`` is the
    profile's ``evaluate_cnn`` section (:data:`dflib.detectors.models.cnn_training_fields.EVALUATE_CNN`).

    ``videos``: the index rows with ``video_id, label, split, n_faces``; the methods are
    those of :func:`chunk_predictions`, each at frame and video level.
    Also returns penultimate features of up to ``tsne_max_points`` test faces from the
    model before training (rebuilt with chunk 0's seed and weights) and after.
    """
    cfg = TrainConfig(**manifest["config"])
    aggregation, threshold = section["aggregation"], section["threshold"]
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    for c in manifest["chunk_models"]:
        leaked = io.leaked_into(c.get("made_from", {}), test["video_id"])
        if leaked:
            raise ValueError(f"{run.cnn_manifest(cfg.arch)}: chunk {c['chunk']} was trained "
                             f"on {len(leaked)} video(s) now in the test split ({leaked[0]}"
                             f"{', ...' if len(leaked) > 1 else ''}); rerun stage train_cnn")
    models = [cnn.load_model(run.artifact(c["model"])) for c in manifest["chunk_models"]]
    val = videos[videos["split"] == "val"].reset_index(drop=True)
    for split, part in (("val", val), ("test", test)):
        scored = chunk_predictions(models, cfg.arch, store, part, cfg.batch_size, aggregation,
                                   threshold)
        for method, (v, f) in scored.items():
            evaluation.write_predictions(run, method, v, f, split=split)
    methods = list(scored)
    # cnn/<arch>/sbi shares the prefix but is stage train_sbi's own model: never retired here.
    evaluation.retire_methods(run, cnn_method(cfg.arch), [*methods, sbi_method(cfg.arch)])
    results = pd.concat([evaluation.score_method(run, m, threshold, scoring) for m in methods],
                        ignore_index=True)

    sample = FaceBatches(store, test, cfg.batch_size, max_faces=section["tsne_max_points"],
                        seed=cfg.seed)
    seed_everything(cfg.seed)  # the same initial weights as chunk 0 before training
    fresh, _ = cnn.build_model(cfg.arch, cfg.img_size, manifest["chunk_models"][0]["weights_used"],
                               cfg.dropout)
    return CnnEvaluation(cfg.arch, methods, results, penultimate_features(fresh, sample),
                         penultimate_features(models[0], sample), sample.face_labels)


def completed_manifest(run: RunPaths, arch: str, sbi: bool = False) -> dict[str, Any]:
    """The manifest of the run's finished ``arch`` training (with ``sbi``, of its training
    on self-blended images, stage train_sbi); an error when there is none."""
    path = run.sbi_manifest(arch) if sbi else run.cnn_manifest(arch)
    manifest = read_manifest(path)
    if not manifest or not manifest.get("complete"):
        raise FileNotFoundError(f"{path}: no completed {arch} "
                                f"{'self-blend ' if sbi else ''}training in this run")
    return manifest


def _trainings(methods: Sequence[str]) -> list[tuple[str, bool]]:
    """``(arch, sbi)`` of each training the ``cnn/...`` methods come from, in order."""
    return list(dict.fromkeys((m.split("/")[1], is_sbi(m)) for m in methods))


def saved_files(run: RunPaths, methods: Sequence[str]) -> list[Path]:
    """The files :func:`score_saved` reads for ``methods``: each training's manifest and
    every model it names."""
    files: list[Path] = []
    for arch, sbi in _trainings(methods):
        manifest = completed_manifest(run, arch, sbi)
        files += [run.sbi_manifest(arch) if sbi else run.cnn_manifest(arch),
                  *(run.artifact(c["model"]) for c in manifest["chunk_models"])]
    return files


def score_saved(run: RunPaths, methods: Sequence[str], store: FaceSource, videos: pd.DataFrame,
                settings: Mapping[str, Any], progress: bool = False
                ) -> dict[str, evaluation.Prediction]:
    """``cnn/...`` methods of a finished training applied to other faces
    (:func:`dflib.reload.score_methods`): each training's models are loaded once;
    ``cnn/<arch>/sbi`` is the one model of stage train_sbi, scored as a chunk model is."""
    section = settings["evaluate_cnn"]
    out: dict[str, evaluation.Prediction] = {}
    for arch, sbi in _trainings(methods):
        manifest = completed_manifest(run, arch, sbi)
        models = [cnn.load_model(run.artifact(c["model"])) for c in manifest["chunk_models"]]
        scored = chunk_predictions(models, arch, store, videos, manifest["config"]["batch_size"],
                                   section["aggregation"], section["threshold"])
        if sbi:
            scored = {sbi_method(arch): scored[cnn_method(arch)]}
        for m in methods:
            if (m.split("/")[1], is_sbi(m)) == (arch, sbi):
                if m not in scored:
                    raise ValueError(f"method {m!r}: the {arch} training has "
                                     f"{', '.join(scored)} only")
                out[m] = scored[m]
    return out
