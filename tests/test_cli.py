"""The command line: exit status 2 and one line for a bad profile, before any work."""

from __future__ import annotations

import subprocess
import sys

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


def test_run_refuses_a_negative_seed_before_work(tmp_path, capsys):
    profile = write_profile(tmp_path)
    assert cli.main(["run", str(profile), "--seeds", "0", "-1"]) == 2
    assert "--seeds: -1 is below the minimum 0" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dflib", "check", str(write_profile(tmp_path, seed=-3))],
                         capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().endswith("seed: -3 is below the minimum 0")
