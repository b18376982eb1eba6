"""docs/extending.md's worked example of a detector family, kept true: its module, as the
page writes it, is a Detector, imports only leaves at its top, and runs its stage on a
tiny run; what it re-scores equals what its stage scored."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from dflib import config, detectors, evaluation, face_store, fields, summaries
from dflib.detectors.base import Detector
from test_architecture import layer_members
from test_training import video_table, write_run

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def example_source() -> str:
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index("### Worked example"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def brightness(monkeypatch):
    """The page's module, loaded as ``dflib.detectors.brightness``."""
    name = "dflib.detectors.brightness"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "dflib.detectors"
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(example_source(), str(PAGE), "exec"), module.__dict__)
    return module


def test_the_example_is_a_detector_whose_top_imports_only_leaves(brightness):
    d = brightness.DETECTOR
    assert isinstance(d, Detector)
    assert re.fullmatch(d.family.pattern, d.family.method("mean"))
    assert d.family.name not in detectors.FAMILIES  # an example, not a family of the study
    tree = ast.parse(example_source())
    top = {node.module.lstrip(".") for node in tree.body
           if isinstance(node, ast.ImportFrom) and node.level}
    assert top <= layer_members("leaves")
    (stage,) = d.stages
    assert re.fullmatch(r"\d\d_[a-z0-9]+_[a-z0-9_]+\.ipynb", stage.notebook)
    assert stage.notebook not in {s.notebook for s in config.STAGES}  # appended, not renumbered


def test_the_example_runs_its_stage_and_rescores_as_it_scored(brightness, tmp_path):
    d = brightness.DETECTOR
    videos = pd.concat([video_table(3, 3, "train"), video_table(2, 2, "val"),
                        video_table(3, 3, "test")], ignore_index=True)
    run = write_run(tmp_path, videos)
    base = config.validate({"run_name": run.root.name, "dataset": "celebdf",
                            "data_root": "unused", "outputs_dir": str(run.root.parent)},
                           stages=())
    (stage,) = d.stages
    profile = dataclasses.replace(base, sections={**base.sections,
                                                  stage.name: fields.defaults(stage.fields)})
    rows = d.train(profile, stage.name)
    method = d.family.method("mean")
    assert list(rows["method"].unique()) == [method]
    video_row = rows[(rows["level"] == "video")].iloc[0]
    assert video_row["auc"] == 1.0  # write_run's fakes are brighter
    assert summaries.summary_line(run, stage.name).startswith(f"{stage.name}: 16 processed")
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    again, frames = d.score_saved(run, [method], face_store.FaceStore(run), test,
                                  {stage.name: profile.sections[stage.name]})[method]
    written, _ = evaluation.read_predictions(run, method)
    assert frames is None
    pd.testing.assert_series_equal(again["score"], written["score"], check_names=False)
