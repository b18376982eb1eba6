"""environment.yml and pyproject.toml pin the same versions."""

from __future__ import annotations

import re
import tomllib

import yaml

from dflib import paths


def _pins(requirements):
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", req.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_environment_matches_pyproject():
    project = tomllib.loads((paths.PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((paths.PROJECT_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == wanted


def test_key_pins():
    project = tomllib.loads((paths.PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["facenet-pytorch"] == "2.5.3"  # 2.6.0 pins torch<2.3
    assert pins["tensorflow"].startswith("2.21") and pins["keras"].startswith("3.")
