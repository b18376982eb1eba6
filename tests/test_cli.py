"""The command line: exit status 2 and one line for a bad profile, before any work."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from dflib import cli, paths


def write_profile(tmp_path, **overrides):
    profile = {"run_name": "t", "dataset": "demo", "data_root": str(tmp_path / "data"),
               "outputs_dir": str(tmp_path / "outputs")}
    profile.update(overrides)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def test_check_ok(tmp_path, capsys):
    assert cli.main(["check", str(write_profile(tmp_path))]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, needle", [
    ({"img_szie": 64}, "unknown key 'img_szie' (did you mean 'img_size'?"),
    ({"dataset": "ffpp"}, "data_root:"),
    ({"index": {"demo_generate": True}}, "index.demo_generate: removed: the generated demo "
                                         "dataset is a dataset adapter now; write 'dataset: demo'"),
    ({"frames_per_video": -1}, "frames_per_video: -1 is below the minimum 1"),
])
def test_check_bad_profile_exits_2_with_one_line(tmp_path, capsys, overrides, needle):
    assert cli.main(["check", str(write_profile(tmp_path, **overrides))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_run_refuses_unknown_stage_before_work(tmp_path, capsys):
    profile = write_profile(tmp_path)
    assert cli.main(["run", str(profile), "--stages", "index", "train_everything"]) == 2
    assert "unknown stage 'train_everything'" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_run_refuses_a_negative_seed_before_work(tmp_path, capsys):
    profile = write_profile(tmp_path)
    assert cli.main(["run", str(profile), "--seeds", "0", "-1"]) == 2
    assert "--seeds: -1 is below the minimum 0" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_run_refuses_a_seed_numpy_cannot_take_before_the_first_seed_runs(tmp_path, capsys):
    """Every --seeds value is checked up front, as the profile's seed is: before, a seed of
    2**32 failed with a traceback once the seeds before it had run."""
    profile = write_profile(tmp_path)
    assert cli.main(["run", str(profile), "--seeds", "0", str(2**32)]) == 2
    assert f"--seeds: {2**32} is above the maximum" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("target, needle", [("{tmp}", "{tmp} is a folder"),
                                            ("{tmp}/a_file/t.csv", "{tmp}/a_file is not a folder")])
def test_bench_refuses_an_out_file_it_cannot_write_before_benchmarking(tmp_path, capsys, target,
                                                                     needle):
    (tmp_path / "a_file").write_text("x")
    target, needle = (x.replace("{tmp}", str(tmp_path)) for x in (target, needle))
    assert cli.main(["bench", "decode", str(tmp_path / "missing.mp4"), "--out", target]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out: {needle}") and "\n" not in err


def test_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dflib", "check", str(write_profile(tmp_path, seed=-3))],
                         capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().endswith("seed: -3 is below the minimum 0")


def hold_run_lock(root) -> subprocess.Popen:
    """Another process holding ``root``'s run lock, as a running `dflib run` does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from dflib import paths\nwith paths.run_lock(Path(sys.argv[1])):\n"
         "    print('locked', flush=True); time.sleep(60)", str(root)],
        stdout=subprocess.PIPE, text=True, cwd=paths.PROJECT_ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_on_the_same_run_folder_stops_at_once_naming_the_holder(tmp_path, capsys):
    """The first run holds the folder; the second gets one line with the folder and the
    first one's PID; once the holder is killed (kill -9), its lock blocks no one."""

    profile = write_profile(tmp_path)
    root = tmp_path / "outputs" / "t"
    holder = hold_run_lock(root)
    try:
        assert cli.main(["run", str(profile), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {root}: in use by another dflib run (PID {holder.pid}); "
                       "wait for it to finish or stop it")
        assert not (root / "index").exists()  # nothing was started
    finally:
        holder.kill()
        holder.wait()
    assert str(holder.pid) in (root / paths.LOCK_FILE).read_text()  # the stale lock file
    with paths.run_lock(root):
        assert (root / paths.LOCK_FILE).read_text().strip() == str(os.getpid())


def _celebdf(root, listing: str, encoding: str = "utf-8"):
    for rel in ("Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "YouTube-real/00000.mp4",
                "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id0_id1_0001.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0")
    (root / "List_of_testing_videos.txt").write_bytes(listing.encode(encoding))
    return root


def test_a_test_list_with_a_byte_order_mark_and_backslashes_is_read_as_meant(tmp_path, capsys):
    """Saved by a Windows editor: BOM, CRLF and backslash paths; check and the index read
    the same two test videos."""
    from dflib import config, datasets

    data = _celebdf(tmp_path / "data", "1 Celeb-real\\id0_0000.mp4\r\n"
                                       "0 Celeb-synthesis\\id0_id1_0000.mp4\r\n", "utf-8-sig")
    (data / "manifest.csv").write_bytes("path,method\r\nCeleb-real\\id0_0001.mp4,camera\r\n"
                                        .encode("utf-8-sig"))
    profile = write_profile(tmp_path, dataset="celebdf", data_root=str(data))
    assert cli.main(["check", str(profile)]) == 0
    checked = config.load(profile)
    videos = datasets.build_profile_index(checked.shared, checked.sections["index"]).videos
    videos = videos.set_index("video_id")
    test = videos.loc[videos["split"] == "test", "label"]
    assert test.to_dict() == {"Celeb-real/id0_0000": 0, "Celeb-synthesis/id0_id1_0000": 1}
    assert videos.at["Celeb-real/id0_0001", "method"] == "camera"


@pytest.mark.parametrize("case", ["dfdc_json", "list_flag", "outputs_file", "outputs_under_file"])
def test_check_refuses_what_run_would_refuse_in_one_line(tmp_path, capsys, case):
    """check parses lists and metadata as stage index does and checks the outputs folder;
    run refuses the same way, before any work."""
    overrides: dict = {}
    if case == "dfdc_json":
        (tmp_path / "dfdc").mkdir()
        (tmp_path / "dfdc" / "metadata.json").write_text('{"a.mp4": {"label": "FAKE",}')
        overrides = {"dataset": "dfdc", "data_root": str(tmp_path / "dfdc")}
        needle = f"{tmp_path / 'dfdc' / 'metadata.json'}: not valid JSON ("
    elif case == "list_flag":
        data = _celebdf(tmp_path / "data", "0 Celeb-real/id0_0000.mp4\n")
        overrides = {"dataset": "celebdf", "data_root": str(data)}
        needle = "line 1 '0 Celeb-real/id0_0000.mp4': the flag says fake"
    else:
        (tmp_path / "taken").write_text("a file")
        outputs = tmp_path / "taken" / ("" if case == "outputs_file" else "sub")
        overrides = {"outputs_dir": str(outputs)}
        needle = f"outputs_dir: {tmp_path / 'taken'}: not a folder"
    profile = write_profile(tmp_path, **overrides)
    for command in ("check", "run"):
        assert cli.main([command, str(profile), *(["--quiet"] if command == "run" else [])]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {profile}: ") and needle in err and "\n" not in err
    assert not (tmp_path / "outputs").exists()


def test_a_notebook_run_by_hand_during_a_run_stops_and_deletes_nothing(tmp_path):
    """A stage started in JupyterLab on a run folder that `dflib run` holds would clean up
    (delete) the running stage's temporary files; it stops instead. The run's own stage
    kernels, which inherit the holder's PID, go on."""

    root = tmp_path / "outputs" / "t"
    holder = hold_run_lock(root)
    try:
        being_written = root / "faces" / "store" / ".v.npz.abc.part"
        being_written.parent.mkdir(parents=True)
        being_written.write_bytes(b"half")
        with pytest.raises(paths.RunLocked, match=f"in use by another dflib run \\(PID {holder.pid}\\)"):
            paths.RunPaths(root).ensure()
        assert being_written.exists()
        os.environ[paths.HOLDER_ENV] = str(holder.pid)  # as in the run's own kernels
        try:
            paths.RunPaths(root).ensure()
        finally:
            del os.environ[paths.HOLDER_ENV]
        assert not being_written.exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("signame, status, line", [
    ("SIGINT", 130, "interrupted: dflib synth stopped; what it finished is kept"),
    ("SIGTERM", 143, "stopped by SIGTERM: dflib synth stopped; what it finished is kept"),
    ("SIGHUP", 129, "stopped by SIGHUP: dflib synth stopped; what it finished is kept")])
def test_ctrl_c_during_synth_is_one_line_and_leaves_no_half_written_file(
        tmp_path, as_from_a_terminal, signame, status, line):
    """Every command, not only run: Ctrl-C (or SIGTERM, or the terminal closed) is one line
    and exit status 128 + the signal, no traceback."""
    import signal
    import time

    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "dflib", "synth", str(out)],
                            cwd=paths.PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **as_from_a_terminal)
    while not list(out.glob("*/*.mp4")) and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert err.strip().splitlines()[-1] == line
    assert "Traceback" not in err and not list(out.rglob("*.part"))


def ffpp_partial_download(root, splits=("train", "val")):
    """A FaceForensics++ c40 folder holding the first official pair of ``splits`` only:
    every other listed video, the whole test split included, is absent."""
    from dflib import datasets

    for split in splits:
        a, b = datasets.ffpp_pairs(split)[0]
        for rel in (f"original_sequences/youtube/c40/videos/{a}.mp4",
                    f"original_sequences/youtube/c40/videos/{b}.mp4",
                    f"manipulated_sequences/NeuralTextures/c40/videos/{a}_{b}.mp4",
                    f"manipulated_sequences/NeuralTextures/c40/videos/{b}_{a}.mp4"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x")
    return root


def test_check_refuses_an_empty_test_split_in_one_line(tmp_path, capsys):
    data = ffpp_partial_download(tmp_path / "data")
    profile = write_profile(tmp_path, dataset="ffpp", data_root=str(data))
    assert cli.main(["check", str(profile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "the test split has no videos" in err and "index.allow_empty_test" in err
    assert "train 4 (2 real, 2 fake), val 4 (2 real, 2 fake), test 0 (0 real, 0 fake)" in err

    # A profile that only trains may say so; the absent videos are one warning line.
    profile = write_profile(tmp_path, dataset="ffpp", data_root=str(data),
                            index={"allow_empty_test": True})
    assert cli.main(["check", str(profile)]) == 0
    out, err = capsys.readouterr()
    assert "splits: train 4 (2 real, 2 fake), val 4 (2 real, 2 fake), test 0" in out
    assert err.splitlines() == [
        "warning: 1,992 of the 2,000 videos the dataset's lists and folders name are not on "
        f"disk: a partial download? (the list: {tmp_path / 'outputs' / 't' / 'index' / 'absent.csv'}"
        ", once stage index runs)"]


def test_check_warns_about_a_one_class_split(tmp_path, capsys):
    from dflib import datasets

    data = ffpp_partial_download(tmp_path / "data", splits=("train", "val", "test"))
    a, b = datasets.ffpp_pairs("test")[0]
    for name in (a, b):  # the test split keeps its fakes only
        (data / f"original_sequences/youtube/c40/videos/{name}.mp4").unlink()
    profile = write_profile(tmp_path, dataset="ffpp", data_root=str(data))
    assert cli.main(["check", str(profile)]) == 0
    err = capsys.readouterr().err
    assert ("warning: the test split has no real videos: AUC, EER and AP of the test split "
            "are undefined (NaN)") in err.splitlines()


def test_stage_index_lists_absent_videos_apart_from_failures(tmp_path, capsys):
    from dflib import config, stages, summaries

    data = ffpp_partial_download(tmp_path / "data")
    profile = config.load(write_profile(tmp_path, dataset="ffpp", data_root=str(data),
                                        index={"allow_empty_test": True}))
    result = stages.build_index(profile)
    out = capsys.readouterr().out
    assert "1,992 of the 2,000 videos the dataset's lists and folders name are not on disk: " \
           "a partial download?" in out
    run = profile.run
    absent = pd.read_csv(run.absent_csv)
    assert len(absent) == len(result.missing) == 1992
    assert set(absent["reason"]) == {f"listed in {s}.json but not on disk"
                                     for s in ("train", "val", "test")}
    assert summaries.read_failures(run).query("stage == 'index'").empty
    summary = summaries.read_summary(run, "index").set_index(["outcome", "reason"])["videos"]
    assert summary[("skipped", "not on disk")] == 1992 and summary[("processed", "")] == 8

    # Without allow_empty_test, the stage stops before any expensive stage could run.
    strict = config.load(write_profile(tmp_path, dataset="ffpp", data_root=str(data)))
    with pytest.raises(ValueError, match="the test split has no videos"):
        stages.build_index(strict)


@pytest.mark.parametrize("args, needle", [
    (["bench", "decode", "v.mp4", "--every-k", "0"], "argument --every-k: 0 is below the minimum 1"),
    (["bench", "footage", "out", "--frames", "0"], "argument --frames: 0 is below the minimum 1"),
    (["bench", "footage", "out", "--face-scale", "nan"], "argument --face-scale: nan is not in (0, 1]"),
    (["bench", "parallel", "v.mp4", "--workers", "1", "-2"],
     "argument --workers: -2 is below the minimum 0"),
    (["bench", "extract", "v.mp4", "--factor", "2"], "--factor: 2.0 is above the maximum 0.95"),
    (["bench", "steps", "v.mp4", "--min-face-size", "0"], "--min-face-size: 0 is below the minimum 8"),
    (["synth", "out", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
])
def test_a_bad_command_argument_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, args,
                                                            needle):
    """Before, a zero frame count or step reached the code as a traceback, and argparse
    printed its usage block above its error line."""
    monkeypatch.chdir(tmp_path)
    try:
        status = cli.main(args)
    except SystemExit as exc:  # argparse's own refusals exit from inside parse_args
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def folder_dataset(root, reals=6, fakes=6, real_ext=".mp4", fake_ext=".mp4"):
    """A folder dataset of empty files (the index reads names only)."""
    for sub, n, ext in (("real", reals, real_ext), ("fake", fakes, fake_ext)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / sub / f"{sub}_{i}{ext}").write_bytes(b"x")
    return root


@pytest.mark.parametrize("empty", ["fake", "real"])
def test_check_and_stage_index_refuse_a_train_split_without_a_class(tmp_path, capsys, empty):
    """No fake (or no real) video: no detector can train, so `check` and stage index refuse
    it in one line naming the split and the class, not a stage minutes later."""
    from dflib import config, datasets, stages

    data = folder_dataset(tmp_path / "data", **{f"{empty}s": 0})
    profile = write_profile(tmp_path, dataset="folder", data_root=str(data))
    assert cli.main(["check", str(profile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert f"the train split has no {empty} videos: every detector's training needs both" in err
    with pytest.raises(datasets.DatasetError, match=f"the train split has no {empty} videos"):
        stages.build_index(config.load(profile))
    assert not config.load(profile).run.videos_csv.exists()


def test_check_refuses_an_ffpp_train_split_without_fakes(tmp_path, capsys):
    from dflib import datasets

    data = ffpp_partial_download(tmp_path / "data", splits=("train", "val", "test"))
    a, b = datasets.ffpp_pairs("train")[0]
    for name in (f"{a}_{b}", f"{b}_{a}"):
        (data / f"manipulated_sequences/NeuralTextures/c40/videos/{name}.mp4").unlink()
    profile = write_profile(tmp_path, dataset="ffpp", data_root=str(data))
    assert cli.main(["check", str(profile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "the train split has no fake videos" in err


def test_one_class_validation_split_only_warns(tmp_path):
    """A later stage copes with a one-class val split (threshold_val falls back), so it
    warns; only the train split must hold both classes."""
    from dflib import datasets

    videos = pd.DataFrame({"split": ["train", "train", "val", "test", "test"],
                           "label": [0, 1, 1, 0, 1]})
    error, notes = datasets.split_problems(videos, allow_empty_test=False)
    assert error is None
    assert notes == ["the val split has no real videos: threshold_val falls back to the fixed "
                     "threshold and no method is chosen on validation (its AUC is NaN)"]


def test_folder_dataset_indexes_every_decodable_container_and_lists_the_rest(tmp_path, capsys):
    """.m4v, .mpg, .3gp (...) videos are indexed; files that are not videos are left out
    with one line naming their count, where they are listed and where the extensions are."""
    from dflib import config, datasets, stages

    data = folder_dataset(tmp_path / "data", real_ext=".m4v", fake_ext=".mpg")
    for name in ("real/a.3gp", "fake/b.MTS", "fake/notes.txt", "real/thumb.jpg", "real/README"):
        (data / name).write_bytes(b"x")
    profile = write_profile(tmp_path, dataset="folder", data_root=str(data))
    assert cli.main(["check", str(profile)]) == 0
    out, err = capsys.readouterr()
    assert "train" in out and "(14 videos" not in out
    left = config.load(profile).run.left_out_csv
    assert err.splitlines()[0] == (
        "warning: 3 files of the dataset's folders are not videos and are left out ((none) 1, "
        f".jpg 1, .txt 1; the list: {left}, once stage index runs); the extensions read as "
        "videos are VIDEO_EXTENSIONS in dflib/datasets.py")
    result = stages.build_index(config.load(profile))
    assert len(result.videos) == 14
    assert {p.rsplit(".", 1)[-1] for p in result.videos["path"]} == {"m4v", "mpg", "3gp", "MTS"}
    listed = pd.read_csv(left)
    assert sorted(listed["reason"]) == ["'.jpg' is not a video extension",
                                        "'.txt' is not a video extension", "no extension"]
    assert "3 files of the dataset's folders are not videos" in capsys.readouterr().out
    assert {".m4v", ".mpg", ".3gp", ".mts"} <= datasets.VIDEO_EXTENSIONS
