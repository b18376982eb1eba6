"""Trained detectors on faces they have not seen: `dflib predict`, the detectors module,
compression robustness and the run's report, on one smoke run (conftest.smoke_run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from dflib import (cli, config, detectors, evaluation, face_store, io, predict, reload, robustness,
                   stage_inputs)
from dflib.detectors.models import fitting
from dflib.paths import PROJECT_ROOT, RunPaths


def write_faceless_video(path: Path, frames: int = 12) -> Path:
    """Smooth noise: something to decode, nothing MTCNN calls a face."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (256, 192))
    for _ in range(frames):
        writer.write(cv2.GaussianBlur(rng.integers(0, 255, (192, 256, 3), np.uint8), (31, 31), 0))
    writer.release()
    return path


def split_test_videos(run: RunPaths) -> pd.DataFrame:
    videos = stage_inputs.videos_with_faces(run)
    return videos[videos["split"] == "test"].reset_index(drop=True)


# FaceNet embeddings recomputed in another process can differ from the stored ones in the
# fifth decimal (CPU kernels); a wrong model, classifier or setting differs by far more.
EMBEDDING_ATOL = 1e-3


def test_detectors_reproduce_every_stage_prediction(smoke_run):
    """Reloaded from disk and scored again, every method gives its stage's own scores."""
    run = RunPaths(smoke_run)
    methods = reload.trained_methods(run)
    assert {detectors.family(m) for m in methods} == set(detectors.FAMILIES)
    scored = reload.score_methods(run, methods, face_store.FaceStore(run), split_test_videos(run))
    for method, (videos, _) in scored.items():
        stage, _ = evaluation.read_predictions(run, method)
        atol = EMBEDDING_ATOL if detectors.family(method) in ("facenet", "triplet") else 1e-6
        np.testing.assert_allclose(videos["score"], stage["score"], atol=atol, err_msg=method)
        assert videos["video_id"].tolist() == stage["video_id"].tolist()


def test_unknown_method_name_is_refused():
    with pytest.raises(ValueError, match="not a detector name"):
        detectors.family("svm")


def test_predict_cli_scores_a_video_and_reports_a_faceless_and_an_unreadable_one(smoke_run,
                                                                                tmp_path):
    """A fresh process, as a user runs it: MTCNN (torch) and the Keras detectors (TensorFlow)
    in one interpreter, so the import order is exercised too."""
    run = RunPaths(smoke_run)
    good = pd.read_csv(run.videos_csv)["path"].iloc[0]
    faceless = write_faceless_video(tmp_path / "faceless.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    frames_csv = tmp_path / "frames.csv"
    done = subprocess.run(
        [sys.executable, "-m", "dflib", "predict", good, str(faceless), str(broken),
         "--run", str(smoke_run), "--method", "cnn/ef0", "--frames-csv", str(frames_csv)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in lines] == ["ok", "no_face", "error"]
    ok, none, bad = lines
    assert 0.0 <= ok["fake_probability"] <= 1.0 and ok["label"] in ("fake", "real")
    assert ok["frames_scored"] == ok["faces_found"] > 0 and ok["method"] == "cnn/ef0"
    assert none["fake_probability"] is None and none["label"] is None
    assert none["faces_found"] == 0 and "no face" in none["reason"]
    assert (ok["n_faces"], none["n_faces"], bad["n_faces"]) == (1, 0, 0)  # one person
    assert ok["multi_face"] == none["multi_face"] == bad["multi_face"] == "single"
    assert str(broken) in bad["reason"] and f"error: {broken}" in done.stderr
    frames = pd.read_csv(frames_csv)
    assert list(frames.columns) == list(predict.FRAME_COLUMNS)
    assert set(frames["path"]) == {good} and len(frames) == ok["frames_scored"]


def test_predict_gives_the_stage_scores_for_the_run_own_test_videos(smoke_run):
    run = RunPaths(smoke_run)
    stage, _ = evaluation.read_predictions(run, "triplet/sgd")
    index = pd.read_csv(run.videos_csv).set_index("video_id")
    paths = index.loc[stage["video_id"], "path"].tolist()
    result = predict.predict_videos(paths, run, "triplet/sgd")
    got = [r["fake_probability"] for r in result.records]
    expected = np.where(stage["status"] == "ok", stage["score"], np.nan)
    np.testing.assert_allclose(np.array(got, dtype=float), expected, atol=EMBEDDING_ATOL)


@pytest.mark.parametrize("args, needle", [
    (["--method", "cnn/xception"], "is not a detector of"),
    (["--method", "c3d", "--frames-csv", "f.csv"], "scores whole clips or sequences"),
])
def test_predict_refuses_bad_arguments_before_work(smoke_run, capsys, args, needle):
    assert cli.main(["predict", "any.mp4", "--run", str(smoke_run), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_predict_without_a_run_folder_says_so(tmp_path, capsys):
    assert cli.main(["predict", "any.mp4", "--run", str(tmp_path)]) == 2
    assert "results.csv not found" in capsys.readouterr().err


def test_default_method_is_the_best_validation_auc(smoke_run):
    run = RunPaths(smoke_run)
    table = evaluation.results_table(run)
    video = table[table["level"] == "video"]
    assert predict.check_method(run, None) == video.loc[video["val_split_auc"].idxmax(), "method"]


def test_default_method_and_threshold_follow_validation_not_test(tmp_path):
    run = RunPaths(tmp_path / "run")
    labels = [0, 0, 0, 1, 1, 1]
    ranked, shuffled = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0.7, 0.2, 0.8, 0.1, 0.9, 0.3]
    # c3d ranks the test videos perfectly and validation badly; conv3d the other way round
    for method, test, val in (("c3d", ranked, shuffled), ("conv3d", shuffled, ranked)):
        for split, scores in (("test", test), ("val", val)):
            evaluation.write_predictions(run, method, pd.DataFrame({
                "video_id": [f"v{i}" for i in range(6)], "label": labels, "score": scores,
                "pred": 0, "n_frames": 1}), split=split)
        evaluation.score_method(run, method)
    table = evaluation.results_table(run).set_index("method")
    assert table.loc["c3d", "auc"] == 1.0 and table.loc["conv3d", "val_split_auc"] == 1.0
    assert reload.best_method(run) == "conv3d"
    # conv3d's validation scores separate between .3 and .7: threshold_val .5 (eer)
    assert reload.operating_threshold(run, "conv3d") == table.loc["conv3d", "threshold_val"]
    assert table.loc["conv3d", "threshold_val"] == pytest.approx(0.5)
    # other validation scores, a cut between .3 and .35: the default threshold follows
    evaluation.write_predictions(run, "conv3d", pd.DataFrame({
        "video_id": [f"v{i}" for i in range(6)], "label": labels,
        "score": [0.1, 0.2, 0.3, 0.35, 0.8, 0.9], "pred": 0, "n_frames": 1}), split="val")
    evaluation.score_method(run, "conv3d")
    assert reload.operating_threshold(run, "conv3d") == pytest.approx(0.325)


# ------------------------------------------------------------ a damaged or partial run folder

def _stand_in_model(path: Path) -> None:
    """A Keras archive's layout (stored members, as Keras writes them) without a model:
    what the checks read is the archive, not the network."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", bytes(range(256)) * 64)


@pytest.fixture
def copied_run(tmp_path) -> RunPaths:
    """A run folder as dflib predict reads it, made without training: c3d and conv3d scored
    on test and validation (conv3d has the better validation AUC), each model's record and
    a stand-in archive, the run's profile.yaml and one face store file."""
    run = RunPaths(tmp_path / "run")
    labels = [0, 0, 0, 1, 1, 1]
    for method, val in (("c3d", [0.7, 0.2, 0.8, 0.1, 0.9, 0.3]),
                        ("conv3d", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])):
        for split, scores in (("test", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), ("val", val)):
            evaluation.write_predictions(run, method, pd.DataFrame({
                "video_id": [f"v{i}" for i in range(6)], "label": labels, "score": scores,
                "pred": 0, "n_frames": 1}), split=split)
        evaluation.score_method(run, method)
        model, record, _ = run.model_files("c3d", method)
        _stand_in_model(model)
        io.write_text(json.dumps(fitting.ModelRecord(
            name=method, method=method, config={}, complete=True,
            model=run.relative(model)).as_dict()), record)
    io.write_text(yaml.safe_dump({"run_name": "run", "seed": 0}), run.profile_yaml)
    io.write_npz(run.face_file("v0"), config=np.array(json.dumps(
        {"frames_per_video": 4, "sampling": "first", "every_k": 1, "img_size": 64})))
    assert reload.best_method(run) == "conv3d"
    return run


def _cut(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _drop_rows_of(run: RunPaths, method: str) -> None:
    table = run.results_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    run.results_csv.write_text("".join(r for r in table if not r.startswith(f"{method},")),
                               encoding="utf-8")


MODEL = Path("models/c3d/conv3d.keras")
DAMAGE = {
    "model missing": (lambda run: run.artifact(MODEL).unlink(), MODEL, "not found; conv3d "
                      "cannot be scored without it"),
    "model cut short": (lambda run: _cut(run.artifact(MODEL)), MODEL,
                        "does not read whole (BadZipFile"),
    "model damaged inside": (lambda run: _flip_a_byte(run.artifact(MODEL)), MODEL,
                             "damaged: member model.weights.h5 fails its CRC check"),
    "record cut short": (lambda run: _cut(run.artifact("models/c3d/conv3d.json")),
                         Path("models/c3d/conv3d.json"), "damaged or cut short, not readable JSON"),
    "copied without face stores": (lambda run: shutil.rmtree(run.face_store),
                                   Path("faces/store"), "no readable face store file"),
    "results.csv cut in a row": (lambda run: _cut(run.results_csv, 0.9),
                                 Path("tables/results.csv"), "damaged or cut short"),
    "results.csv cut between rows": (lambda run: _drop_rows_of(run, "conv3d"),
                                     Path("tables/results.csv"), "no row for conv3d, whose "
                                     "predictions are in"),
    "profile.yaml cut short": (lambda run: _cut(run.profile_yaml, 0.6), Path("profile.yaml"),
                               "damaged or cut short"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_predict_on_a_damaged_or_partial_run_folder_names_the_file_before_any_work(
        copied_run, capsys, case):
    """Before, each went on to extract faces and then failed with a traceback, or (results.csv
    cut short) silently scored with another method than the one validation chose."""
    damage, damaged, needle = DAMAGE[case]
    damage(copied_run)
    assert cli.main(["predict", "any.mp4", "--run", str(copied_run.root)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"error: {copied_run.artifact(damaged)}: ") and needle in err, err
    assert "\n" not in err and captured.out == ""


@pytest.mark.parametrize("args, needle", [
    (["--threshold", "nan"], "--threshold: nan is not a fake probability in [0, 1]"),
    (["--threshold", "1.5"], "--threshold: 1.5 is not a fake probability in [0, 1]"),
    (["--threshold", "-0.1"], "--threshold: -0.1 is not a fake probability in [0, 1]"),
    (["--frames-csv", "{tmp}"], "--frames-csv: {tmp} is a folder; name the file to write"),
    (["--frames-csv", "{tmp}/a_file/frames.csv"], "--frames-csv: {tmp}/a_file is not a folder, "
                                                  "so {tmp}/a_file/frames.csv cannot be written"),
])
def test_predict_refuses_a_threshold_or_frames_file_it_cannot_use_before_scoring(
        copied_run, tmp_path, capsys, args, needle):
    (tmp_path / "a_file").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert cli.main(["predict", "any.mp4", "--run", str(copied_run.root), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {needle.replace('{tmp}', str(tmp_path))}"


def test_a_relative_run_folder_starts_at_the_working_directory(copied_run, tmp_path, capsys,
                                                             monkeypatch):
    """As the INPUT arguments do; before, --run started at the project root (the profiles'
    rule) and a run folder beside the user was not found."""
    shutil.rmtree(copied_run.face_store)  # stops the command at its checks, after --run
    monkeypatch.chdir(tmp_path)
    assert cli.main(["predict", "any.mp4", "--run", "run"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'run' / 'faces' / 'store'}: ")


# --------------------------------------------------------------------------- robustness

def test_robustness_table_covers_every_method_and_crf(smoke_run):
    run = RunPaths(smoke_run)
    table = robustness.read_table(run)
    methods = reload.trained_methods(run)
    assert set(table["method"]) == set(methods)
    assert sorted(table["crf"].unique()) == [robustness.ORIGINAL, 0, 40]
    assert (table.groupby("crf")["n"].max() == len(split_test_videos(run))).all()
    wide = robustness.auc_by_crf(table)
    assert list(wide.columns) == ["method", "original", "crf0", "crf40"]


def test_perturbation_table_covers_every_method_and_condition_asked(smoke_run):
    """The smoke profile asks for noise and compression at level 5: each method has a row
    for each and for the clean videos, on every test video; compression 5 (CRF 40) cut its
    faces from the CRF curve's own re-encode."""
    run = RunPaths(smoke_run)
    table = robustness.read_perturbations(run)
    methods = reload.trained_methods(run)
    conditions = set(zip(table["type"], table["level"]))
    assert conditions == {(robustness.ORIGINAL_TYPE, 0), ("noise", 5), ("compression", 5)}
    for _, rows in table.groupby(["type", "level"]):
        assert sorted(rows["method"]) == sorted(methods)
    assert (table["n"] == len(split_test_videos(run))).all()
    assert set(table.loc[table["type"] == "compression", "parameter"]) == {40}
    for vid in split_test_videos(run)["video_id"]:
        clean_faces, clean_idx = face_store.FaceStore(run).load(vid)
        noisy, noisy_idx = face_store.FaceStore(run.perturbation_run("noise", 5)).load(vid)
        np.testing.assert_array_equal(noisy_idx, clean_idx)  # the clean boxes, distorted
        assert noisy.shape == clean_faces.shape and not np.array_equal(noisy, clean_faces)
    wide = robustness.auc_by_perturbation(table)
    assert list(wide.columns) == ["method", "original", "noise5", "compression5"]
    assert (smoke_run / "figures" / "fig_perturbations_auc.png").is_file()


def test_lossless_reencode_gives_the_same_faces(smoke_run):
    """CRF 0 is lossless: the same frames decode, so the same faces are stored."""
    run = RunPaths(smoke_run)
    crf0 = face_store.FaceStore(run.crf_run(0))
    original = face_store.FaceStore(run)
    for vid in split_test_videos(run)["video_id"]:
        a, b = original.load(vid), crf0.load(vid)
        np.testing.assert_array_equal(a[1], b[1])
        assert np.abs(a[0].astype(int) - b[0].astype(int)).mean() < 1.0, vid


def test_unreadable_video_cannot_be_reencoded_and_the_error_names_it(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    with pytest.raises(robustness.EncodeError, match=str(broken)):
        robustness.reencode(broken, tmp_path / "out.mp4", 23)
    assert list(tmp_path.iterdir()) == [broken]  # nothing half-written


def test_a_reencode_is_reused_only_while_its_source_and_preset_are_unchanged(tmp_path):
    """A rerun reuses a re-encoded video made from the same file, CRF and preset, while it
    is the file written; a replaced source file, another preset, a record or a video cut
    short re-encodes it."""
    source, target = tmp_path / "clip.mp4", tmp_path / "crf23" / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 48))
    for i in range(8):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    assert robustness.ensure_reencoded(source, target, 23, "ultrafast")
    assert not robustness.ensure_reencoded(source, target, 23, "ultrafast")
    assert robustness.ensure_reencoded(source, target, 23, "veryfast")
    os.utime(source, ns=(1, 1))  # same name, another file as far as a rerun can tell
    assert robustness.ensure_reencoded(source, target, 23, "veryfast")
    robustness.record_path(target).write_text("{")  # a record cut short
    assert robustness.ensure_reencoded(source, target, 23, "veryfast")
    whole = target.read_bytes()
    target.write_bytes(whole[:len(whole) // 2])  # the re-encoded video cut short
    assert robustness.ensure_reencoded(source, target, 23, "veryfast")
    assert target.read_bytes() == whole
    assert not robustness.ensure_reencoded(source, target, 23, "veryfast")


def test_pick_videos_keeps_both_classes():
    test = pd.DataFrame({"video_id": [f"v{i}" for i in range(20)],
                         "label": [0] * 5 + [1] * 15})
    picked = robustness.pick_videos(test, 8, seed=0)
    assert len(picked) == 8 and set(picked["label"]) == {0, 1}
    assert picked.equals(robustness.pick_videos(test, 8, seed=0))
    assert len(robustness.pick_videos(test, 0, seed=0)) == 20


def test_report_has_tables_figures_and_every_notebook(smoke_run):
    page = (smoke_run / "report" / "index.html").read_text(encoding="utf-8")
    for name in ("fig_roc_all", "fig_gradcam", "fig_robustness_auc", "triplet/sgd",
                 "fig_frequency_spectrum", "frequency/srm", "Identity alone"):
        assert name in page
    rendered = sorted(p.name for p in (smoke_run / "report" / "notebooks").glob("*.html"))
    assert rendered == sorted(s.notebook.replace(".ipynb", ".html") for s in config.STAGES)
    for name in rendered:
        assert f"notebooks/{name}" in page


def test_predict_scores_a_folder_recursively_with_images_and_names_an_audio_only_mp4(
        smoke_run, tmp_path, capsys):
    """A folder is scored recursively in sorted order (hidden entries skipped); an image is
    a first-class input whose face is cut as in a video frame, so a frame saved as PNG
    scores what that frame scored in its video; an MP4 without a video track says so."""
    import imageio_ffmpeg

    from dflib import video

    run = RunPaths(smoke_run)
    source = pd.read_csv(run.videos_csv)["path"].iloc[0]
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".thumbs").mkdir()
    clip = folder / "sub" / "clip.mp4"
    clip.write_bytes(Path(source).read_bytes())
    (folder / ".thumbs" / "clip.mp4").write_bytes(clip.read_bytes())
    frame = video.read_frames(clip, [0])[0][0]
    cv2.imwrite(str(folder / "frame0.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "sine=duration=1", "-c:a", "aac", str(folder / "sound.mp4")], check=True)
    frames_csv = tmp_path / "frames.csv"
    assert cli.main(["predict", str(folder), "--run", str(smoke_run), "--method", "cnn/ef0",
                     "--frames-csv", str(frames_csv)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in lines] == [str(folder / "frame0.png"), str(folder / "sound.mp4"),
                                          str(clip)]
    image, sound, clip_line = lines
    assert [r["kind"] for r in lines] == ["image", "video", "video"]
    assert image["status"] == "ok" and image["frames_sampled"] == image["faces_found"] == 1
    assert clip_line["status"] == "ok"
    assert sound["status"] == "error"
    assert sound["reason"] == f"{folder / 'sound.mp4'}: an audio track but no video track"
    scores = pd.read_csv(frames_csv)
    in_video = scores.loc[(scores["path"] == str(clip)) & (scores["frame_idx"] == 0), "score"]
    assert len(in_video) == 1
    assert image["fake_probability"] == pytest.approx(in_video.iloc[0], abs=1e-5)


@pytest.mark.parametrize("method", ["c3d", "rnn/lstm"])
def test_a_sequence_detector_says_it_cannot_score_an_image(smoke_run, tmp_path, method):
    image = tmp_path / "face.jpg"
    source = pd.read_csv(RunPaths(smoke_run).videos_csv)["path"].iloc[0]
    from dflib import video

    cv2.imwrite(str(image), cv2.cvtColor(video.read_frames(source, [0])[0][0], cv2.COLOR_RGB2BGR))
    record = predict.predict_videos([image], RunPaths(smoke_run), method).records[0]
    assert record["kind"] == "image" and record["status"] == "error"
    assert record["reason"].startswith(f"{image}: {method} scores a sequence of faces from a "
                                       "video, not a single image")


def test_predict_refuses_a_folder_without_videos_or_images(smoke_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert cli.main(["predict", str(tmp_path), "--run", str(smoke_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path}: no videos or images in it") and "\n" not in err
