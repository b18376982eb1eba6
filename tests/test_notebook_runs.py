"""The papermill runner: stages execute into the run folder; a failing stage is named."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from dflib import config, notebooks, paths


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
    root = notebooks.run_profile(tiny_profile, ["index"], log_output=False)
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
    with pytest.raises(notebooks.StageFailed) as err:
        notebooks.run_profile(tiny_profile, ["faces"], log_output=False)
    message = str(err.value)
    assert message.startswith("stage faces failed (FileNotFoundError")
    assert "run stage 'index' first" in message and "01_extract_faces.ipynb" in message
    assert "\n" not in message


@pytest.mark.slow
def test_ctrl_c_during_a_run_says_where_in_one_line_and_marks_the_notebook(tmp_path,
                                                                          as_from_a_terminal):
    """Ctrl-C (SIGINT) while stage index runs: one line naming the stage, exit status 130,
    and the executed notebook marked interrupted, its unrun cells pending."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from dflib import paths

    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({
        "run_name": "r", "dataset": "celebdf", "data_root": str(tmp_path / "data"),
        "outputs_dir": str(tmp_path / "outputs"),
        "index": {"demo_generate": True, "demo_identities": 4, "demo_real_per_identity": 4,
                  "demo_fake_per_identity": 8, "demo_frames": 32}}))
    notebook = tmp_path / "outputs" / "r" / "notebooks" / "00_build_index.ipynb"
    proc = subprocess.Popen([sys.executable, "-m", "dflib", "run", str(profile), "--quiet"],
                            cwd=paths.PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **as_from_a_terminal)
    while not notebook.exists() and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(3)  # into the stage's cells
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted in stage index; run again to resume"
    assert "Traceback" not in err
    # the kernel's own stderr (its warnings, the noise of a shutdown mid-reply) is logged
    assert "IPKernelApp" not in err
    assert "IPKernelApp" in (tmp_path / "outputs" / "r" / "logs" / "kernel_index.log").read_text()
    executed = nbformat.read(notebook, as_version=4)
    assert executed.metadata.papermill["interrupted"] is True
    assert notebooks.INTERRUPTED_TAG in executed.cells[0].metadata.tags
    statuses = [c.metadata.papermill["status"] for c in executed.cells[1:]]
    assert statuses[-1] == "pending"  # the last cells never ran


def test_seeds_run_once_per_seed_and_summarise(tiny_profile, monkeypatch):
    """``--seeds``: one run folder per seed with that seed; the summary table beside them
    (the index stage only here: results.csv comes from the scoring stages)."""
    from dflib import evaluation

    tables = {0: pd.DataFrame({"method": ["c3d"], "level": ["video"], "auc": [0.6]}),
              2: pd.DataFrame({"method": ["c3d"], "level": ["video"], "auc": [0.8]})}
    monkeypatch.setattr(evaluation, "results_table", lambda run: tables[
        int(run.root.name.rsplit("-s", 1)[1])].reindex(columns=list(evaluation.RESULT_COLUMNS)))
    root = notebooks.run_seeds(tiny_profile, [0, 2, 0], ["index"], log_output=False)
    for seed in (0, 2):
        saved = yaml_load(root.parent / f"tiny-s{seed}" / "profile.yaml")
        assert saved["seed"] == seed and saved["run_name"] == f"tiny-s{seed}"
    # Seeds vary training, not the data: both seeds indexed the videos of index.demo_seed.
    data = paths.resolve(tiny_profile.shared["data_root"])
    assert json.loads((data / "synth_params.json").read_text())["seed"] == 0
    indexed = [sorted(pd.read_csv(root.parent / f"tiny-s{seed}" / "index" / "videos.csv")["path"])
               for seed in (0, 2)]
    assert indexed[0] == indexed[1]
    summary = pd.read_csv(paths.RunPaths(root).table(notebooks.SEEDS_TABLE))
    row = summary.iloc[0]
    assert (row["method"], row["n_seeds"]) == ("c3d", 2)
    assert row["auc_mean"] == pytest.approx(0.7) and row["auc_std"] == pytest.approx(0.141421, abs=1e-6)


def yaml_load(path):
    import yaml

    return yaml.safe_load(path.read_text())
