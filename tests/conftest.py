"""Shared test set-up. Tests build their data in temporary folders; nothing is downloaded."""

from __future__ import annotations

import os

# Quiet TensorFlow and keep it off any GPU, before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Test modules import torch and TensorFlow in any order: the import-order guard goes first.
import dflib.torch_first  # noqa: E402, F401

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from dflib import config, paths  # noqa: E402


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def as_from_a_terminal() -> dict:
    """Popen arguments that give a child the Ctrl-C handling it has when started from a
    terminal: a shell that runs the tests in the background (``nohup make test &``) hands
    SIGINT down ignored, Python then keeps ignoring it, and a Ctrl-C test would wait for
    an interruption that never comes."""
    return {"preexec_fn": _default_sigint}


# The smoke profile's pipeline from scratch, each run a `dflib run` process of its own
# (papermill, every stage in its own kernel, the demo data generated on the way), started
# at the session's first test when a selected test asks for it, so that its minutes overlap
# the other tests: most of a run is one core's work (graph tracing, kernel start-ups).
# smoke_run: every stage, for the tests that need a run with trained detectors.
# smoke_rerun: a second run of the stages that score videos and write a summary (every
# detector stage the registry lists; robustness and the report read their tables), for
# the byte-identical check.
SMOKE_RUNS: dict[str, tuple[str, ...]] = {
    "smoke_run": (),
    "smoke_rerun": tuple(s.name for s in config.STAGES if s.name not in ("robustness",
                                                                        "report")),
}

# The child ends with the session: EOF on its stdin (the session closed it, or died) is a
# SIGTERM, which `dflib run` turns into the end of its stage and its kernel's processes.
# The watcher reads the file descriptor itself: a daemon thread blocked in sys.stdin's
# buffered reader aborts the interpreter's shutdown ("could not acquire lock").
SMOKE_CHILD = """
import os, signal, sys, threading
def end_with_the_session():
    while os.read(0, 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=end_with_the_session, daemon=True).start()
from dflib import cli
stages = sys.argv[2:]
sys.exit(cli.main(["run", sys.argv[1], "--quiet", *(["--stages", *stages] if stages else [])]))
"""


class SmokeRun:
    """One smoke-profile run in a background process, under ``base``."""

    def __init__(self, base: Path, stages: tuple[str, ...]) -> None:
        raw = yaml.safe_load((paths.PARAMS_DIR / "smoke.yaml").read_text(encoding="utf-8"))
        settings = {**raw, "data_root": str(base / "data"), "outputs_dir": str(base / "outputs")}
        self.root, self.stages = config.validate(settings).run.root, stages
        self.log, profile_yaml = base / "run.log", base / "smoke.yaml"
        profile_yaml.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", SMOKE_CHILD, str(profile_yaml),
                                          *stages], cwd=paths.PROJECT_ROOT,
                                         stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT)

    def wait(self) -> Path:
        """The run folder once the run has ended; a failed run fails with its log's end."""
        if self.proc.wait() != 0:
            tail = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise RuntimeError(f"the smoke run ended with exit status {self.proc.returncode}; "
                               f"{self.log} ends:\n" + "\n".join(tail))
        return self.root

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session", autouse=True)
def smoke_runs(request, tmp_path_factory) -> Iterator[dict[str, SmokeRun]]:
    """Starts the smoke runs the selected tests ask for, before the first test."""
    wanted = [name for name in SMOKE_RUNS
              if any(name in item.fixturenames for item in request.session.items)]
    runs = {name: SmokeRun(tmp_path_factory.mktemp(name), SMOKE_RUNS[name]) for name in wanted}
    yield runs
    for run in runs.values():
        run.stop()


@pytest.fixture(scope="session")
def smoke_run(smoke_runs) -> Path:
    """The smoke profile run once from scratch through every notebook."""
    return smoke_runs["smoke_run"].wait()


@pytest.fixture(scope="session")
def smoke_rerun(smoke_runs) -> tuple[Path, tuple[str, ...]]:
    """A second smoke run from scratch, of the stages that score videos; and those stages."""
    run = smoke_runs["smoke_rerun"]
    return run.wait(), run.stages
