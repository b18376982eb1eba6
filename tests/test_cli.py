"""The command line: exit status 2 and one line for a bad profile, before any work."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from dflib import cli, paths


def write_profile(tmp_path, **overrides):
    profile = {"run_name": "t", "dataset": "celebdf", "data_root": str(tmp_path / "data"),
               "outputs_dir": str(tmp_path / "outputs"), "index": {"demo_generate": True}}
    profile.update(overrides)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def test_check_ok(tmp_path, capsys):
    assert cli.main(["check", str(write_profile(tmp_path))]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, needle", [
    ({"img_szie": 64}, "unknown key 'img_szie' (did you mean 'img_size'?"),
    ({"dataset": "ffpp", "index": {}}, "data_root:"),
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


def test_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dflib", "check", str(write_profile(tmp_path, seed=-3))],
                         capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().endswith("seed: -3 is below the minimum 0")


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
    profile = write_profile(tmp_path, dataset="ffpp", data_root=str(data), index={})
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
    profile = write_profile(tmp_path, dataset="ffpp", data_root=str(data), index={})
    assert cli.main(["check", str(profile)]) == 0
    err = capsys.readouterr().err
    assert ("warning: the test split has no real videos: AUC, EER and AP of the test split "
            "are undefined (NaN)") in err.splitlines()


def test_stage_index_lists_absent_videos_apart_from_failures(tmp_path, capsys):
    from dflib import config, pipeline, reports

    data = ffpp_partial_download(tmp_path / "data")
    profile = config.load(write_profile(tmp_path, dataset="ffpp", data_root=str(data),
                                        index={"allow_empty_test": True}))
    result = pipeline.build_index(profile)
    out = capsys.readouterr().out
    assert "1,992 of the 2,000 videos the dataset's lists and folders name are not on disk: " \
           "a partial download?" in out
    run = profile.run
    absent = pd.read_csv(run.absent_csv)
    assert len(absent) == len(result.missing) == 1992
    assert set(absent["reason"]) == {f"listed in {s}.json but not on disk"
                                     for s in ("train", "val", "test")}
    assert reports.read_failures(run).query("stage == 'index'").empty
    summary = reports.read_summary(run, "index").set_index(["outcome", "reason"])["videos"]
    assert summary[("skipped", "not on disk")] == 1992 and summary[("processed", "")] == 8

    # Without allow_empty_test, the stage stops before any expensive stage could run.
    strict = config.load(write_profile(tmp_path, dataset="ffpp", data_root=str(data), index={}))
    with pytest.raises(ValueError, match="the test split has no videos"):
        pipeline.build_index(strict)
