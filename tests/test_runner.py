"""The papermill runner: stages execute into the run folder; a failing stage is named."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from dflib import config, runner


@pytest.fixture
def tiny_profile(tmp_path):
    return config.validate({
        "run_name": "tiny", "dataset": "celebdf", "data_root": str(tmp_path / "data"),
        "outputs_dir": str(tmp_path / "outputs"), "img_size": 64, "frames_per_video": 2,
        "device": "cpu", "train_cnn": {"arch": "ef0"},
        "index": {"demo_generate": True, "demo_identities": 2, "demo_real_per_identity": 2,
                  "demo_fake_per_identity": 2, "demo_frames": 4, "demo_width": 128,
                  "demo_height": 96},
    })


@pytest.mark.slow
def test_index_stage_runs_through_papermill(tiny_profile):
    root = runner.run_profile(tiny_profile, ["index"], log_output=False)
    executed = nbformat.read(root / "notebooks" / "00_build_index.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "run_name = \"tiny\"" in injected[0].source
    videos = pd.read_csv(root / "index" / "videos.csv")
    assert len(videos) == 8 and set(videos["label"]) == {0, 1}
    assert (root / "figures" / "fig_sample_frames.png").stat().st_size > 0
    assert json.loads((root / "environment.json").read_text())["papermill"]
    assert (root / "profile.yaml").exists()


@pytest.mark.slow
def test_failing_stage_is_named_with_its_notebook(tiny_profile):
    with pytest.raises(runner.StageFailed) as err:
        runner.run_profile(tiny_profile, ["faces"], log_output=False)
    message = str(err.value)
    assert message.startswith("stage faces failed (FileNotFoundError")
    assert "run stage 'index' first" in message and "01_extract_faces.ipynb" in message
    assert "\n" not in message
