"""The papermill runner: stages execute into the run folder; a failing stage is named."""

from __future__ import annotations

import json
import os

import nbformat
import pandas as pd
import pytest

from dflib import config, notebooks, paths


@pytest.fixture
def tiny_profile(tmp_path):
    return config.validate({
        "run_name": "tiny", "dataset": "demo", "data_root": str(tmp_path / "data"),
        "outputs_dir": str(tmp_path / "outputs"), "img_size": 64, "frames_per_video": 2,
        "device": "cpu", "train_cnn": {"arch": "ef0"},
        "index": {"demo_identities": 2, "demo_real_per_identity": 2,
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
        "run_name": "r", "dataset": "demo", "data_root": str(tmp_path / "data"),
        "outputs_dir": str(tmp_path / "outputs"),
        "index": {"demo_identities": 4, "demo_real_per_identity": 4,
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
    # the kernel's own stderr (the noise of a shutdown mid-reply) goes to its log, not here
    # (what reaches the log: test_a_stage_keeps_native_and_worker_output_off_the_terminal)
    assert "IPKernelApp" not in err and "KeyboardInterrupt" not in err
    assert (tmp_path / "outputs" / "r" / "logs" / "kernel_index.log").is_file()
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


# A stage stand-in: its kernel starts what stages start (a spawned process pool, as dlib's
# embedder does, and a plain child), writes their ids and waits to be stopped.
STAND_IN_CELL = """\
import json, os, pathlib, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
worker = pool.submit(os.getpid).result()
child = subprocess.Popen(["sleep", "120"])
pathlib.Path(PIDS).write_text(json.dumps([os.getpid(), worker, child.pid]))
time.sleep(120)
"""

# `dflib run` with its stages replaced by the stand-in: the command line's own handling.
RUNNER = """\
import sys
from pathlib import Path
from dflib import cli, notebooks
notebook, pids, profile = sys.argv[1:4]
def stand_in(profile, stages=None, log_output=True):
    out = Path(notebook).with_name("executed.ipynb")
    notebooks.execute_stage("embed_faces", Path(notebook), out, {"PIDS": pids},
                            Path(notebook).with_name("kernel.log"), log_output)
notebooks.run_profile = stand_in
sys.exit(cli.main(["run", profile]))
"""


def stand_in_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("PIDS = ''", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(STAND_IN_CELL)]
    nbformat.write(nb, path)
    return path


def alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("kill, status, line", [
    ("kernel", 1, "error: stage embed_faces: its kernel died, killed from outside (the "
                  "out-of-memory killer"),
    ("SIGHUP", 129, "stopped by SIGHUP in stage embed_faces; run again to resume"),
    ("SIGKILL", -9, None),
])
def test_no_process_of_a_stage_outlives_its_run(tmp_path, kill, status, line):
    """The kernel killed from outside (as the OOM killer does), the terminal closed, a
    polite kill, or the run itself killed: one line naming the stage (and, for a dead
    kernel, its executed notebook and kernel log), and neither the kernel nor a process
    it started (a spawned pool's worker, a plain child) survives."""
    import signal
    import subprocess
    import sys
    import time

    notebook = stand_in_notebook(tmp_path / "stand_in.ipynb")
    pids = tmp_path / "pids.json"
    profile = tmp_path / "p.yaml"
    profile.write_text(f"run_name: r\ndataset: demo\ndata_root: {tmp_path / 'data'}\n"
                       f"outputs_dir: {tmp_path / 'outputs'}\n")
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(notebook), str(pids),
                             str(profile)], cwd=paths.PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        while not pids.exists() and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)  # the file is whole
        kernel, worker, child = json.loads(pids.read_text())
        if kill == "kernel":
            os.kill(kernel, signal.SIGKILL)
        else:
            proc.send_signal(getattr(signal, kill))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    if line is not None:
        assert len(err.strip().splitlines()) == 1 and err.startswith(line), err
    if kill == "kernel":
        assert f"see {tmp_path / 'executed.ipynb'} (kernel log: {tmp_path / 'kernel.log'})" in err
        assert "Kernel died while waiting" in (tmp_path / "kernel.log").read_text()
    deadline = time.monotonic() + 10  # after SIGKILL, the watcher ends them
    while any(map(alive, (kernel, worker, child))) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [p for p in (kernel, worker, child) if alive(p)]
    for pid in survivors:  # a failing test leaves nothing behind either
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does():
    """Both unwind as a KeyboardInterrupt (through asyncio, papermill and the kernel's
    clean-up) carrying the signal, and the handlers are restored after."""
    import signal

    before = signal.getsignal(signal.SIGTERM)
    for signum in notebooks.STOP_SIGNALS:
        with pytest.raises(notebooks.Stopped) as stop:
            with notebooks.stop_signals_interrupt():
                os.kill(os.getpid(), signum)
                signal.sigtimedwait([], 0.1)  # let the handler run
        assert isinstance(stop.value, KeyboardInterrupt) and stop.value.signum == signum
        assert str(notebooks.Interrupted("faces", signum)) == (
            f"stopped by {signal.Signals(signum).name} in stage faces; run again to resume")
    assert signal.getsignal(signal.SIGTERM) is before


NOISY_CELL = """\
import os, subprocess, sys, warnings
from tqdm.auto import tqdm
os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on\\n")
subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('worker log line\\\\n')"])
for _ in tqdm(range(3)):
    pass
print("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
warnings.warn("a warning of the stage's own")
"""


def test_a_stage_keeps_native_and_worker_output_off_the_terminal(tmp_path):
    """What native code and child processes write (TensorFlow's oneDNN / CUDA / absl lines,
    Dask's logs) goes to the kernel log, and tqdm draws a widget (no "IProgress not found");
    the stage's own warnings still reach the terminal."""
    import subprocess
    import sys

    import ipywidgets  # noqa: F401  (the widget progress bars of JupyterLab)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(NOISY_CELL)]
    nbformat.write(nb, tmp_path / "noisy.ipynb")
    log = tmp_path / "kernel.log"
    done = subprocess.run(  # a process of its own: the terminal is its stdout and stderr
        [sys.executable, "-c", "import sys; from pathlib import Path; from dflib import "
         "notebooks; notebooks.execute_stage('noisy', *map(Path, sys.argv[1:3]), {}, "
         "Path(sys.argv[3]))", str(tmp_path / "noisy.ipynb"), str(tmp_path / "out.ipynb"),
         str(log)], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    assert "oneDNN" not in out + err and "worker log line" not in out + err
    assert "IProgress" not in out + err and "it/s" not in out + err
    assert "a warning of the stage's own" in err
    assert "oneDNN custom operations" in log.read_text() and "worker log line" in log.read_text()
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = executed.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert any(o.get("text", "").startswith("TF_CPP_MIN_LOG_LEVEL 1") for o in outputs)


def test_a_kernel_that_cannot_start_is_one_line_naming_its_log(tmp_path, monkeypatch):
    """An environment where the kernel exits while starting (here an ipykernel_launcher
    that exits at once): StageFailed naming the stage and the kernel log, no traceback."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ipykernel_launcher.py").write_text("import sys\nsys.exit('no kernel here')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(broken), str(paths.PROJECT_ROOT)]))
    log = tmp_path / "kernel.log"
    with pytest.raises(notebooks.StageFailed) as failed:
        notebooks.execute_stage("faces", stand_in_notebook(tmp_path / "nb.ipynb"),
                                tmp_path / "out.ipynb", {}, log)
    assert str(failed.value) == ("stage faces: its kernel did not start (Kernel died before "
                                 f"replying to kernel_info); the reason is in its log {log}")
    assert "no kernel here" in log.read_text()


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
def test_stages_started_together_never_compete_for_a_port(tmp_path):
    """Two stages whose kernels start at the same moment (the test suite's two background
    smoke runs do) each talk over Unix sockets in a folder of their own, not over TCP ports
    one of them could take from the other; the folder goes when the stage ends."""
    from concurrent.futures import ThreadPoolExecutor

    made = []
    original = notebooks.logged_kernel_manager

    def recorded(log):
        manager = original(log)
        made.append(manager)
        return manager

    notebook = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")],
                                            metadata={"kernelspec": {"name": "python3",
                                                                     "display_name": "Python 3",
                                                                     "language": "python"}}),
                   notebook)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(notebooks, "logged_kernel_manager", recorded)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: notebooks.execute_stage(
                f"s{i}", notebook, tmp_path / f"out{i}.ipynb", {}, tmp_path / f"k{i}.log",
                log_output=False), range(2)))
    assert [m.transport for m in made] == ["ipc", "ipc"]
    folders = [os.path.dirname(m.ip) for m in made]
    assert len(set(folders)) == 2 and not any(os.path.exists(f) for f in folders)
    assert all(nbformat.read(tmp_path / f"out{i}.ipynb", 4).cells[0].execution_count == 1
               for i in range(2))
