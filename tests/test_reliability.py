"""Reliability: bad inputs and faults, each tried, each with a defined outcome.

Inputs: a portrait 1080x1920 video, a grayscale one, a variable-frame-rate one, faces
below ``min_face_size``, a non-ASCII file name, an empty test split, a folder mixing good
and broken videos. Faults: SIGKILL during face extraction, training and evaluation, then
a rerun; a full disk while an artifact is written. And the same profile twice gives the
same ``tables/results.csv``, byte for byte.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
from test_faces import PARAMS, canvas, paste, write_video
from test_training import profile_for, tiny_model, video_table, write_run

from dflib import (config, evaluation, face_extractor, face_store, faces, io, paths, plots,
                   stage_inputs, stages, summaries)
from dflib.detectors.models import cnn, cnn_training
from dflib.paths import RunPaths

TESTS = Path(__file__).resolve().parent
FACE_PARAMS = {k: PARAMS[k] for k in face_extractor.EXTRACTOR_KEYS if k in PARAMS}


def moving_face(width: int, height: int, size: int, n: int) -> list[np.ndarray]:
    """``n`` RGB frames of the test head drifting right, in the upper middle of the frame."""
    x0, y0 = (width - size) // 3, (height - size) // 3
    return [paste(canvas(width, height), size, x0 + 3 * i, y0 + i) for i in range(n)]


def write_gray_video(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height),
                             isColor=False)
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    writer.release()
    return path


# Frames 0-5 are 4 ticks apart (6.25 fps), frames 6-11 one tick (25 fps): one file, two rates.
VFR_PTS = "setpts='if(lt(N,6),N*4,24+(N-6))/25/TB'"


def write_vfr_video(path: Path, frames: list[np.ndarray]) -> Path:
    """H.264 with irregular timestamps (ffmpeg's variable frame-rate mode)."""
    height, width = frames[0].shape[:2]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "25",
                    "-i", "-", "-vf", VFR_PTS, "-fps_mode", "vfr", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(path)],
                   input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def frame_times(path: Path) -> list[float]:
    """Presentation times of every frame, as ffmpeg decodes them."""
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path), "-vf", "showinfo",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    return [float(line.split("pts_time:")[1].split()[0]) for line in out.splitlines()
            if "pts_time:" in line]


def outcome_counts(run: RunPaths, stage: str) -> dict[tuple[str, str], int]:
    table = summaries.read_summary(run, stage)
    return {(o, r): n for o, r, n in zip(table["outcome"], table["reason"], table["videos"])
            if n}


def failures(run: RunPaths) -> pd.DataFrame:
    return pd.read_csv(run.failures_csv, dtype=str, keep_default_na=False)


def partials(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.part"))


# --------------------------------------------------------------------------- bad inputs

ODD = {  # video_id: (file name, writer)
    "portrait": ("portrait.mp4", lambda p: write_video(p, moving_face(1080, 1920, 400, 6))),
    "gray": ("gray.mp4", lambda p: write_gray_video(p, moving_face(320, 240, 110, 8))),
    "vfr": ("vfr.mp4", lambda p: write_vfr_video(p, moving_face(320, 240, 110, 12))),
    "tiny": ("tiny.mp4", lambda p: write_video(p, moving_face(320, 240, 24, 6))),
    "vidéo-ñ-日本": ("vidéo ñ 日本.mp4", lambda p: write_video(p, moving_face(320, 240, 110, 6))),
}


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory) -> tuple[RunPaths, pd.DataFrame, dict[str, Path]]:
    """One extraction over every odd video (MTCNN loads once)."""
    data = tmp_path_factory.mktemp("odd")
    files = {vid: make(data / name) for vid, (name, make) in ODD.items()}
    videos = pd.DataFrame({"video_id": list(files), "path": [str(p) for p in files.values()],
                           "label": 0, "split": "test"})
    run = RunPaths(tmp_path_factory.mktemp("odd_run"))
    summary = stages.record_faces(run, faces.run_extraction(videos, run, FACE_PARAMS, 6, "even", 1,
                                                            progress=False))
    return run, summary.set_index("video_id"), files


def test_portrait_1080x1920_video_finds_the_face_where_it_is(odd_run):
    run, summary, _ = odd_run
    assert (summary.loc["portrait", "status"], summary.loc["portrait", "n_faces"]) == ("ok", 6)
    rows = face_store.FaceStore(run).index().query("video_id == 'portrait'")
    # The head (400 px) is pasted at x = 226-641, y = 506-911 of a 1080 x 1920 frame: the
    # box centre is there, so width and height were not swapped and the box is in frame
    # pixels, not in the pixels of the downscaled detector input.
    cx, cy = (rows["x1"] + rows["x2"]) / 2, (rows["y1"] + rows["y2"]) / 2
    assert cx.between(226, 641).all() and cy.between(506, 911).all()
    assert (rows["x2"] - rows["x1"]).between(100, 400).all()
    crops, _ = face_store.FaceStore(run).load("portrait")
    assert crops.shape == (6, 64, 64, 3)


def test_grayscale_video_gives_three_channel_faces(odd_run):
    run, summary, _ = odd_run
    assert summary.loc["gray", "status"] == "ok" and summary.loc["gray", "n_faces"] == 6
    crops, _ = face_store.FaceStore(run).load("gray")
    assert crops.shape[-1] == 3
    spread = np.ptp(crops.astype(int), axis=-1)  # grey: the three channels (nearly) agree
    assert spread.mean() < 3


def test_variable_frame_rate_video_samples_frames_that_exist(odd_run):
    run, summary, files = odd_run
    times = np.diff(frame_times(files["vfr"]))
    assert times.min() < 0.05 < 0.15 < times.max()  # the file really has two frame rates
    assert summary.loc["vfr", "status"] == "ok" and summary.loc["vfr", "reason"] == ""
    rows = face_store.FaceStore(run).index().query("video_id == 'vfr'")
    # 6 of the 12 frames, evenly by frame number (not by time), all decoded
    assert rows["frame_idx"].tolist() == [0, 2, 4, 6, 8, 11] and (rows["face"] == 1).all()


def test_faces_below_min_face_size_are_no_face_not_a_crash(odd_run):
    run, summary, _ = odd_run
    tiny = summary.loc["tiny"]
    assert (tiny.status, tiny.n_sampled, tiny.n_faces) == ("no_face", 6, 0)
    assert tiny.reason == "no face found in any of the 6 sampled frames"
    assert outcome_counts(run, "faces") == {("processed", ""): 4, ("skipped", "no_face"): 1}
    assert failures(run).set_index("video_id").loc["tiny", "stage"] == "faces"


def test_non_ascii_file_name_goes_through_face_extraction(odd_run):
    run, summary, files = odd_run
    vid = "vidéo-ñ-日本"
    assert summary.loc[vid, "status"] == "ok" and summary.loc[vid, "n_faces"] == 6
    assert run.face_file(vid).name == "vidéo-ñ-日本.npz"
    assert face_store.FaceStore(run).load(vid)[0].shape == (6, 64, 64, 3)
    assert vid in set(pd.read_csv(run.faces_csv, dtype={"video_id": str})["video_id"])


def test_empty_test_split_at_evaluation_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(2, 2, "train"), video_table(1, 1, "val")],
                       ignore_index=True)
    run = write_run(tmp_path, videos)
    profile = profile_for(run)
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stages.run_detector_stage(profile, "evaluate_cnn")
    messages = [str(w.message) for w in caught if "test split" in str(w.message)
                or "empty evaluation set" in str(w.message)]
    assert messages == [f"{run.videos_csv}: the test split has no videos, so stage "
                        "evaluate_cnn scores nothing (its results rows have n = 0 and NaN "
                        "metrics)"]
    table = evaluation.results_table(run)
    assert (table["n"] == 0).all() and table["auc"].isna().all()
    assert outcome_counts(run, "evaluate_cnn") == {}
    assert summaries.summary_line(run, "evaluate_cnn") == (
        "evaluate_cnn: 0 processed, 0 skipped, 0 failed")
    # the notebook's t-SNE figure of no faces is a figure, not an error
    assert plots.tsne_figure(result.tsne_before, result.tsne_after, result.tsne_labels)


# --------------------------------------------------------------------------- stage summaries

def test_stage_summary_counts_every_outcome_and_replaces_the_stage_failures(tmp_path):
    run = RunPaths(tmp_path / "run")
    outcomes = pd.DataFrame({
        "video_id": ["a", "b", "c", "d", "e"],
        "outcome": ["processed", "processed", "skipped", "failed", "failed"],
        "reason": ["", "already done", "no_face", "unreadable store file",
                   "unreadable store file"],
        "detail": ["", "", "", "d.npz: BadZipFile", "e.npz: BadZipFile"]})
    io.record_failures(run.failures_csv, "faces", pd.DataFrame({"video_id": ["z"],
                                                                "reason": ["zero-byte file"]}))
    summaries.stage_summary(run, "train_rnn", outcomes)
    assert summaries.read_summary(run, "train_rnn").to_dict("list") == {
        "stage": ["train_rnn"] * 4, "outcome": ["processed", "processed", "skipped", "failed"],
        "reason": ["", "already done", "no_face", "unreadable store file"],
        "videos": [1, 1, 1, 2]}
    assert summaries.summary_line(run, "train_rnn") == (
        "train_rnn: 2 processed (already done: 1), 1 skipped (no_face: 1), "
        "2 failed (unreadable store file: 2)")
    table = failures(run)
    assert table.values.tolist() == [["faces", "z", "zero-byte file"],
                                     ["train_rnn", "d", "d.npz: BadZipFile"],
                                     ["train_rnn", "e", "e.npz: BadZipFile"]]
    summaries.stage_summary(run, "train_rnn", outcomes.iloc[:2])  # a clean rerun clears them
    assert failures(run)["stage"].tolist() == ["faces"]
    assert summaries.summary_line(run, "train_rnn") == (
        "train_rnn: 2 processed (already done: 1), 0 skipped, 0 failed")
    with pytest.raises(ValueError, match="unknown outcome 'lost'"):
        summaries.stage_summary(run, "x", outcomes.assign(outcome="lost"))


def write_store_run(root: Path, videos: pd.DataFrame) -> RunPaths:
    """Index, face summary and store files (in the extraction's own format) for ``videos``
    (``video_id, label, split, n_faces``; ``n_faces`` -1 = its extraction failed)."""
    run = RunPaths(root).ensure()
    rng = np.random.default_rng(0)
    rows = []
    for v in videos.itertuples():
        n = max(v.n_faces, 0)
        crops = np.clip(rng.normal(60 + 120 * v.label, 30, (n, 32, 32, 3)), 0, 255)
        if v.n_faces >= 0:
            io.write_npz(run.face_file(v.video_id), faces=crops.astype(np.uint8),
                         frame_idx=np.arange(n), config=np.array("faces-v1"))
        status = "failed" if v.n_faces < 0 else "ok" if n else "no_face"
        rows.append({"video_id": v.video_id, "label": v.label, "split": v.split,
                     "status": status, "n_sampled": 3, "n_faces": n,
                     "reason": "x.mp4: zero-byte file" if v.n_faces < 0 else ""})
    io.write_csv(videos.drop(columns="n_faces").assign(path="x.mp4", dataset="folder",
                                                       method="m", compression="unknown"),
                 run.videos_csv)
    io.write_csv(pd.DataFrame(rows, columns=face_store.SUMMARY_COLUMNS), run.faces_summary_csv)
    return run


@pytest.mark.slow
def test_embedding_and_triplet_stages_count_and_record_a_broken_store_file(tmp_path):
    videos = pd.concat([video_table(3, 3, "train"), video_table(1, 1, "val"),
                        video_table(1, 1, "test"),
                        pd.DataFrame({"video_id": ["broken", "gone", "blank"], "label": [1, 0, 0],
                                      "split": "test", "n_faces": [3, -1, 0]})],
                       ignore_index=True)
    run = write_store_run(tmp_path / "run", videos)
    broken = run.face_file("broken")
    broken.write_bytes(broken.read_bytes()[:100])  # cut short after extraction
    profile = config.validate({
        "run_name": "run", "dataset": "folder", "data_root": "unused",
        "outputs_dir": str(tmp_path), "img_size": 32, "seed": 0, "device": "cpu",
        "embed_faces": {"pretrained": "none", "batch_size": 16},
        "train_triplet": {"epochs": 1, "batch_size": 8,
                          "classifiers": ["sgd"]},
    }, stages=("embed_faces", "train_triplet"))

    result = stages.run_detector_stage(profile, "embed_faces", progress=False)
    status = result.videos.set_index("video_id")["status"]
    assert (status["broken"], status["gone"], status["blank"]) == ("failed", "no_store",
                                                                   "embedded")
    assert outcome_counts(run, "embed_faces") == {
        ("processed", ""): 10, ("skipped", "failed at stage faces"): 1,
        ("skipped", "no_face"): 1, ("failed", "unreadable store file"): 1}
    row = failures(run).query("stage == 'embed_faces'")
    assert row["video_id"].tolist() == ["broken"] and str(broken) in row["reason"].iloc[0]

    stages.run_detector_stage(profile, "train_triplet", progress=False)
    preds = evaluation.read_predictions(run, "triplet/sgd")[0].set_index("video_id")
    assert preds.loc[["broken", "gone", "blank"], "status"].tolist() == [
        "failed", "failed", "no_face"]
    assert (preds.loc[["test_real0", "test_fake0"], "status"] == "ok").all()
    assert outcome_counts(run, "train_triplet") == {
        ("processed", ""): 10, ("skipped", "failed at stage faces"): 1,
        ("skipped", "no_face"): 1, ("failed", "unreadable store file"): 1}
    assert failures(run).query("stage == 'train_triplet'")["video_id"].tolist() == ["broken"]


# --------------------------------------------------------------------------- a mixed folder

def make_mixed_folder(root: Path) -> dict[str, str]:
    """``real/`` and ``fake/`` with good videos and broken ones; returns id -> what it is."""
    kinds = {}
    for sub in ("real", "fake"):
        (root / sub).mkdir(parents=True)
        for i in range(4):
            write_video(root / sub / f"good{i}.mp4", moving_face(320, 240, 100 + 4 * i, 4))
            kinds[f"{sub}/good{i}"] = "good"
    (root / "real" / "empty.mp4").write_bytes(b"")
    (root / "fake" / "text.mp4").write_text("not a video\n", encoding="utf-8")
    data = (root / "fake" / "good0.mp4").read_bytes()
    (root / "fake" / "cut.mp4").write_bytes(data[: len(data) // 3])
    kinds.update({"real/empty": "zero-byte file", "fake/text": "not a video",
                  "fake/cut": "not a video"})
    return kinds


@pytest.mark.slow
def test_folder_mixing_good_and_broken_videos_scores_the_good_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    kinds = make_mixed_folder(tmp_path / "data")
    profile = config.validate({
        "run_name": "mixed", "dataset": "folder", "data_root": str(tmp_path / "data"),
        "outputs_dir": str(tmp_path / "outputs"), "img_size": 32, "frames_per_video": 2,
        "device": "cpu", "index": {"val_fraction": 0.25},
        "faces": {"margin": 8, "min_face_size": 40, "batch_size": 8},
        "train_cnn": {"arch": "ef0", "weights": "none", "epochs": 1, "batch_size": 4,
                      "patience": 1, "chunks": 1},
    })
    run = profile.run
    index = stages.build_index(profile).videos
    assert set(index["video_id"]) == set(kinds)
    summary = stages.extract_faces(profile, progress=False).set_index("video_id")
    broken = {v for v, k in kinds.items() if k != "good"}
    assert set(summary.index[summary["status"] == "failed"]) == broken
    failed = failures(run).query("stage == 'faces'").set_index("video_id")
    assert set(failed.index) == broken
    assert failed.loc["real/empty", "reason"].endswith("empty.mp4: zero-byte file")
    assert outcome_counts(run, "faces")[("processed", "")] == 8
    assert outcome_counts(run, "faces")[("failed", "zero-byte file")] == 1

    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    stages.run_detector_stage(profile, "evaluate_cnn")
    preds, _ = evaluation.read_predictions(run, "cnn/ef0")
    preds = preds.set_index("video_id")
    test = index.loc[index["split"] == "test", "video_id"]
    assert set(preds.index) == set(test)  # every test video has its row
    good = [v for v in test if kinds[v] == "good"]
    assert good and (preds.loc[good, "status"] == "ok").all()
    assert (preds.loc[good, "n_frames"] == 2).all()
    for vid in set(test) & broken:  # scored by the prior, flagged failed
        assert preds.loc[vid, ["status", "score"]].tolist() == ["failed", 0.5]
    counts = outcome_counts(run, "evaluate_cnn")
    assert counts[("processed", "")] == len(good)
    assert counts.get(("skipped", "failed at stage faces"), 0) == len(set(test) & broken)

    # A store file damaged after extraction: that video fails at evaluation, by name.
    victim = good[0]
    store_file = run.face_file(victim)
    store_file.write_bytes(store_file.read_bytes()[:200])
    stages.run_detector_stage(profile, "evaluate_cnn")
    preds, _ = evaluation.read_predictions(run, "cnn/ef0")
    assert preds.set_index("video_id").loc[victim, "status"] == "failed"
    assert outcome_counts(run, "evaluate_cnn")[("failed", "unreadable store file")] == 1
    row = failures(run).query("stage == 'evaluate_cnn'")
    assert row["video_id"].tolist() == [victim]
    assert str(store_file) in row["reason"].iloc[0]


# --------------------------------------------------------------------------- kill -9

def start(script: str, *args: str) -> subprocess.Popen:
    """A Python child running ``script`` (torchvision first, as conftest does), with the
    tests folder importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(paths.PROJECT_ROOT)]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    code = "import dflib.torch_first\n" + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the child ended before the kill: {proc.stderr.read().decode()[-800:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the child never reached the point of the kill")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


EXTRACT_SCRIPT = """
import json, sys
from pathlib import Path
import pandas as pd
from dflib import faces
from dflib.paths import RunPaths
faces.run_extraction(pd.read_csv(sys.argv[1]), RunPaths(Path(sys.argv[2])), json.loads(sys.argv[3]),
                     6, "even", 1, progress=False)
"""


@pytest.mark.slow
def test_kill_during_face_extraction_then_rerun(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(8)], "label": 0, "split": "test",
                           "path": [str(write_video(data / f"v{i}.mp4",
                                                    moving_face(320, 240, 90 + 4 * i, 8)))
                                    for i in range(8)]})
    videos.to_csv(tmp_path / "videos.csv", index=False)
    run = RunPaths(tmp_path / "run")
    kill_when(start(EXTRACT_SCRIPT, str(tmp_path / "videos.csv"), str(run.root),
                    json.dumps(FACE_PARAMS)),
              lambda: any(run.face_store.glob("v*.npz")))

    done = {p.name: p.stat().st_mtime_ns for p in run.face_store.glob("v*.npz")}
    assert 1 <= len(done) < 8, "the kill came after the last video"
    for name in done:  # whatever carries a final name is complete
        with np.load(run.face_store / name) as z:
            assert str(z["status"]) == "ok" and z["faces"].shape == (6, 64, 64, 3)
    assert not run.faces_csv.exists()  # the tables come at the end, so none is half done

    summary = stages.record_faces(run, faces.run_extraction(videos, run, FACE_PARAMS, 6, "even", 1,
                                                            progress=False))
    assert (summary["status"] == "ok").all() and (summary["n_faces"] == 6).all()
    assert {n: (run.face_store / n).stat().st_mtime_ns for n in done} == done  # not redone
    assert outcome_counts(run, "faces") == {("processed", ""): 8 - len(done),
                                            ("processed", "already done"): len(done)}
    assert partials(run.root) == []  # a killed writer's temporary file is cleaned up


TRAIN_SCRIPT = """
import sys, time
from pathlib import Path
from dflib import stages
from dflib.detectors.models import cnn, batches, cnn_training
from dflib.paths import RunPaths
from test_training import tiny_model, profile_for
cnn.build_model = tiny_model
# Slow batches keep the child inside a chunk (or the scoring) long enough to be killed there.
read = batches.FaceBatches.__getitem__
batches.FaceBatches.__getitem__ = lambda self, i: (time.sleep(0.15), read(self, i))[1]
profile = profile_for(RunPaths(Path(sys.argv[1])))
if sys.argv[2] == "train":
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
else:
    stages.run_detector_stage(profile, "evaluate_cnn")
"""


@pytest.mark.slow
def test_kill_during_training_and_evaluation_then_rerun(tmp_path, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(1, 3, "train"), video_table(1, 1, "val"),
                        video_table(2, 2, "test")], ignore_index=True)
    run = write_run(tmp_path, videos)
    folder = run.cnn_dir("ef0")

    # Training: killed once chunk 0 is final and chunk 1 has checkpointed an epoch.
    kill_when(start(TRAIN_SCRIPT, str(run.root), "train"),
              lambda: (folder / "chunk1.inprogress.keras").exists())
    assert (folder / "chunk0.keras").exists() and not (folder / "chunk1.keras").exists()
    assert not cnn_training.read_manifest(run.cnn_manifest("ef0"))["complete"]
    with pytest.raises(FileNotFoundError, match="no completed CNN training"):
        stages.run_detector_stage(profile_for(run), "evaluate_cnn")  # a half-trained run is not evaluated
    stamp = (folder / "chunk0.keras").stat().st_mtime_ns
    manifest = stages.run_detector_stage(profile_for(run), "train_cnn", verbose=0)
    assert manifest["complete"] and manifest["chunks"] == 3
    assert (folder / "chunk0.keras").stat().st_mtime_ns == stamp  # not retrained
    assert sorted(p.name for p in folder.iterdir()) == [
        "chunk0.keras", "chunk1.keras", "chunk2.keras", "manifest.json"]

    # Evaluation: a clean evaluation of a copy is the reference.
    reference = write_run(tmp_path / "copy", videos)
    shutil.copytree(run.models, reference.models, dirs_exist_ok=True)
    stages.run_detector_stage(profile_for(reference), "evaluate_cnn")
    kill_when(start(TRAIN_SCRIPT, str(run.root), "evaluate"),
              lambda: any(run.predictions.glob("*.csv")))
    for table in run.predictions.glob("*.csv"):  # every file there is whole
        assert len(pd.read_csv(table)) in (4, 4 * 3)
    stages.run_detector_stage(profile_for(run), "evaluate_cnn")
    assert run.results_csv.read_bytes() == reference.results_csv.read_bytes()
    assert partials(run.root) == []


# --------------------------------------------------------------------------- damaged artifacts

def damage_inside(path: Path) -> None:
    """Flip one byte in the middle of ``path``: its size and zip directory stay, the CRC of
    the member there fails (a bad sector, a copy gone wrong)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def cut_short(path: Path) -> None:
    """Keep the first half of ``path``, as a copy that stopped does."""
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_read_problem_tells_every_artifact_kind_that_does_not_read_whole(tmp_path):
    import joblib
    from sklearn.linear_model import LogisticRegression

    npz = io.write_npz(tmp_path / "a.npz", faces=np.arange(20_000) % 251, config=np.array("x"))
    model = tmp_path / "m.keras"
    tiny_model("ef0", 32)[0].save(model)
    record = io.write_text('{"complete": true}\n', tmp_path / "r.json")
    clf = io.atomic_write(tmp_path / "c.joblib", lambda p: joblib.dump(
        LogisticRegression().fit([[0.0], [1.0]], [0, 1]), p))
    assert [io.read_problem(f) for f in (npz, model, record, clf)] == ["", "", "", ""]
    assert io.npz_made_with(npz, "x")

    damage_inside(npz)
    with np.load(npz) as z:  # its settings still read: a check of those alone reuses it
        assert str(z["config"]) == "x"
    assert io.read_problem(npz) == "damaged: member faces.npy fails its CRC check"
    assert not io.npz_made_with(npz, "x")
    for artifact in (model, record, clf):
        cut_short(artifact)
        assert io.read_problem(artifact).startswith("does not read whole ("), artifact
    assert io.read_record(record) is None
    assert io.read_problem(tmp_path / "gone.npz") == "no such file"
    with pytest.raises(ValueError, match="not an artifact kind"):
        io.read_problem(tmp_path / "table.csv")


def test_a_store_damaged_inside_is_failed_by_later_stages_and_redone_by_faces(tmp_path, capsys):
    """A store file whose bytes are damaged inside (its settings still read): a stage that
    trains on the store counts it failed with the reason before reading a face, and the
    next faces stage extracts it again, saying why."""
    path = write_video(tmp_path / "a.mp4", moving_face(320, 240, 110, 4))
    videos = pd.DataFrame({"video_id": ["a"], "path": [str(path)], "label": 0, "split": "test"})
    run = RunPaths(tmp_path / "run")

    def extract() -> pd.DataFrame:
        return stages.record_faces(run, faces.run_extraction(videos, run, FACE_PARAMS, 4,
                                                             "even", 1, progress=False))

    assert extract()["status"].tolist() == ["ok"]
    io.write_csv(videos.assign(dataset="folder", method="m", compression="unknown"),
                 run.videos_csv)
    target = run.face_file("a")
    whole = target.read_bytes()
    damage_inside(target)

    seen = stage_inputs.videos_with_faces(run).set_index("video_id").loc["a"]
    assert (seen["face_status"], seen["n_faces"]) == ("unreadable", 0)
    assert seen["face_reason"] == (f"{target}: unreadable store file (damaged: member "
                                   "faces.npy fails its CRC check)")
    capsys.readouterr()
    assert extract()["status"].tolist() == ["ok"]
    assert "faces: 1 store files made from something else, redone (damaged: 1)" in (
        capsys.readouterr().out)
    assert target.read_bytes() == whole  # the same extraction again
    assert outcome_counts(run, "faces") == {("processed", ""): 1}


@pytest.mark.slow
def test_a_frame_cnn_or_its_manifest_cut_short_is_trained_again(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    videos = pd.concat([video_table(1, 1, "train"), video_table(1, 1, "val"),
                        video_table(1, 1, "test")], ignore_index=True)
    run = write_run(tmp_path, videos)
    profile = profile_for(run, epochs=1)
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    model = run.cnn_chunk_model("ef0", 0)

    cut_short(model)  # a copy that stopped
    capsys.readouterr()
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    out = capsys.readouterr().out
    assert "chunk 0: chunk0.keras does not read whole (BadZipFile: " in out
    assert out.count("retraining") == 1 and io.read_problem(model) == ""
    assert stages.run_detector_stage(profile, "evaluate_cnn").methods  # it loads and scores

    manifest = run.cnn_manifest("ef0")
    manifest.write_text(manifest.read_text()[:40])
    assert stages.run_detector_stage(profile, "train_cnn", verbose=0)["complete"]  # trained as if for the first time
    assert io.read_record(manifest)["complete"]


def test_a_saved_model_that_does_not_read_whole_is_one_line_where_it_is_loaded(tmp_path):
    """Scoring with saved models (evaluation, robustness, Grad-CAM, dflib predict) names a
    damaged model file and what to do, instead of failing inside Keras or joblib."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from dflib.detectors.models import classifiers

    model = tmp_path / "chunk0.keras"
    tiny_model("ef0", 32)[0].save(model)
    assert cnn.load_model(model).output_shape == (None, 2)
    cut_short(model)
    with pytest.raises(io.DamagedArtifact) as err:
        cnn.load_model(model)
    assert str(err.value).startswith(f"{model}: does not read whole (BadZipFile: ")
    assert str(err.value).endswith("; rerun the stage that trained it")
    run = RunPaths(tmp_path / "run").ensure()
    clf = classifiers.classifier_path(run, "facenet/lr")
    io.atomic_write(clf, lambda p: joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), p))
    assert classifiers.load_classifier(run, "facenet/lr").classes_.tolist() == [0, 1]
    cut_short(clf)
    with pytest.raises(io.DamagedArtifact, match="rerun stage 'train_triplet'"):
        classifiers.load_classifier(run, "facenet/lr")


def test_a_temporal_model_or_its_record_damaged_is_not_reused(tmp_path):
    """The clip models and recurrent heads decide reuse in fitting.finished_record: a
    model file damaged inside or a record cut short means retraining, with the reason."""
    import zipfile

    from dflib.detectors.models import fitting

    run = RunPaths(tmp_path / "run").ensure()
    final, record_path, _ = run.model_files("c3d", "c3d")
    final.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(final, "w") as z:  # a .keras file is a zip archive
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", bytes(range(256)) * 40)
    made = io.made_from({"epochs": 1}, {"train": ["a"], "val": ["b"]})
    io.write_text(json.dumps(fitting.ModelRecord(name="c3d", method="c3d", config={},
                                                 made_from=made, complete=True).as_dict()),
                  record_path)
    assert fitting.finished_record(run, "c3d", "c3d", made)[0] is not None
    good = final.read_bytes()
    damage_inside(final)
    assert fitting.finished_record(run, "c3d", "c3d", made) == (
        None, "c3d.keras damaged: member model.weights.h5 fails its CRC check")
    final.write_bytes(good)
    cut_short(record_path)
    assert fitting.finished_record(run, "c3d", "c3d", made) == (
        None, "c3d.json does not read whole")


@pytest.mark.slow
def test_a_triplet_network_or_its_fingerprint_cut_short_is_retrained(tmp_path, capsys):
    from dflib.detectors.models import triplet

    run = RunPaths(tmp_path).ensure()
    rng = np.random.default_rng(0)
    y = (np.arange(60) % 3 == 0).astype(np.int64)
    x = (rng.normal(size=(60, 16)) + 1.5 * y[:, None]).astype(np.float32)
    args = {"epochs": 1, "batch_size": 32, "verbose": 0}
    triplet.train(run, x, y, x[:20], y[:20], **args)
    target, fingerprint, _ = run.top_model_files(triplet.MODEL_NAME)
    for damaged, reason in ((target, "triplet.keras does not read whole (BadZipFile: "),
                            (fingerprint, "triplet.json does not read whole")):
        cut_short(damaged)
        capsys.readouterr()
        assert triplet.train(run, x, y, x[:20], y[:20], **args).trained
        assert f"triplet: {reason}" in capsys.readouterr().out
        assert io.read_problem(damaged) == ""
    assert not triplet.train(run, x, y, x[:20], y[:20], **args).trained


def test_an_embedding_file_damaged_inside_is_counted_failed_and_not_reused(tmp_path):
    """Stage train_triplet counts a video whose embedding file does not read whole as
    failed (embeddings.check_embeddings); stage embed_faces embeds it again, since its
    reuse check (io.npz_made_with) now reads the file whole; a manifest cut short is one
    line naming it."""
    from dflib import embeddings

    run = RunPaths(tmp_path).ensure()
    videos = pd.DataFrame({"video_id": ["a", "b"]})
    for vid in videos["video_id"]:
        io.write_npz(run.embeddings_file(vid), emb=np.ones((3, embeddings.DIM), np.float32),
                     frame_idx=np.arange(3), chosen=np.ones(3, bool), video_id=np.array(vid),
                     config=np.array("c"))
    target = run.embeddings_file("b")
    damage_inside(target)
    assert embeddings.check_embeddings(run, videos).tolist() == [
        "", f"{target}: damaged: member emb.npy fails its CRC check"]
    assert io.npz_made_with(run.embeddings_file("a"), "c")
    assert not io.npz_made_with(target, "c")
    io.write_text(json.dumps({"dim": embeddings.DIM, "used": "random"}), run.embeddings_manifest)
    cut_short(run.embeddings_manifest)  # a one-line error, not a JSONDecodeError traceback
    with pytest.raises(FileNotFoundError, match="does not read whole; run stage 'embed_faces'"):
        embeddings.read_manifest(run)


# --------------------------------------------------------------------------- a full disk

def savez_on_a_full_disk(fh, **arrays) -> None:
    """``np.savez`` that writes part of the file, then finds the disk full."""
    fh.write(b"PK\x03\x04" + b"\0" * 4096)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_writing_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "features" / "v1.npz"
    io.write_npz(target, x=np.arange(3))
    before = target.read_bytes()
    monkeypatch.setattr(np, "savez", savez_on_a_full_disk)
    with pytest.raises(OSError) as err:
        io.write_npz(target, x=np.arange(10_000))
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == f"[Errno 28] No space left on device: '{target}'"
    assert target.read_bytes() == before  # the old artifact stands, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["v1.npz"]


def test_full_disk_during_extraction_fails_that_video_by_file(tmp_path, monkeypatch):
    path = write_video(tmp_path / "a.mp4", moving_face(320, 240, 110, 4))
    videos = pd.DataFrame({"video_id": ["a"], "path": [str(path)], "label": 0,
                           "split": "test"})
    run = RunPaths(tmp_path / "run")
    monkeypatch.setattr(np, "savez", savez_on_a_full_disk)
    summary = stages.record_faces(run, faces.run_extraction(videos, run, FACE_PARAMS, 4, "even", 1,
                                                            progress=False))
    target = run.face_file("a")
    assert summary["status"].tolist() == ["failed"]
    assert summary["reason"].iloc[0] == f"OSError: [Errno 28] No space left on device: '{target}'"
    assert list(run.face_store.iterdir()) == []  # no store file, no temporary file
    monkeypatch.undo()  # space again: the rerun extracts it
    summary = stages.record_faces(run, faces.run_extraction(videos, run, FACE_PARAMS, 4, "even", 1,
                                                            progress=False))
    assert summary["status"].tolist() == ["ok"]


# --------------------------------------------------------------------------- determinism

@pytest.mark.slow
def test_same_profile_twice_gives_byte_identical_results(smoke_run, smoke_rerun):
    """The smoke profile from scratch twice (demo data, every stage that scores videos,
    through papermill, each in its own kernel): the session's shared smoke run, and a
    second one (conftest.smoke_rerun), each in a process of its own."""
    rerun, stages = smoke_rerun
    first, second = (Path(r) / "tables" / "results.csv" for r in (smoke_run, rerun))
    table = pd.read_csv(first)
    assert {"cnn/ef0", "c3d", "rnn/lstm", "triplet/sgd", "facenet/sgd"} <= set(table["method"])
    assert first.read_bytes() == second.read_bytes()
    assert {"faces", "train_cnn", "embed_faces"} <= set(stages)
    for stage in stages:
        assert (first.parent / f"summary_{stage}.csv").read_bytes() == (
            second.parent / f"summary_{stage}.csv").read_bytes()
