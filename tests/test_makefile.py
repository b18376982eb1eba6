"""The Makefile's targets, as `make -n` prints them (nothing is run)."""

from __future__ import annotations

import subprocess

import pytest

from dflib import paths


@pytest.mark.parametrize("user_id, as_root", [("0", True), ("1000", False)])
def test_make_lab_lets_root_run_jupyterlab(user_id, as_root):
    """JupyterLab refuses root (containers, cloud machines) without --allow-root; `make lab`
    passes it exactly when the user is root. `make -n` prints the command, runs nothing."""
    done = subprocess.run(["make", "-n", "lab", f"LAB_USER_ID={user_id}"], capture_output=True,
                          text=True, cwd=paths.PROJECT_ROOT, check=True)
    command = [line for line in done.stdout.splitlines() if "jupyter lab" in line]
    assert len(command) == 1 and "--notebook-dir=notebooks" in command[0]
    assert ("--allow-root" in command[0]) is as_root
    assert "lab?token=" in done.stdout  # where to look for the address it serves
