"""Shared test set-up. Tests build their data in temporary folders; nothing is downloaded."""

from __future__ import annotations

import os

# Quiet TensorFlow and keep it off any GPU, before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Test modules import torch and TensorFlow in any order: the import-order guard goes first.
import dflib.torch_first  # noqa: E402, F401

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402


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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke profile run once from scratch through every notebook (papermill, demo data
    generated on the way), for the tests that need a run with trained detectors."""
    from dflib import config, paths, notebooks

    raw = yaml.safe_load((paths.PARAMS_DIR / "smoke.yaml").read_text(encoding="utf-8"))
    base = tmp_path_factory.mktemp("smoke_run")
    profile = config.validate({**raw, "data_root": str(base / "data"),
                               "outputs_dir": str(base / "outputs")})
    return notebooks.run_profile(profile, log_output=False)
