"""Notebooks: stored clean, one parameters cell equal to the smoke profile, logic in dflib."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

from dflib import config, paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb"))
STAGE_OF = {s.notebook: s.name for s in config.STAGES}


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_stage_has_its_notebook_and_no_stray_notebooks():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(STAGE_OF)
    for p in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9]+(_[a-z0-9]+)+\.ipynb", p.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb):
        assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_the_smoke_values(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.AnnAssign), "parameters cell: annotated literals only"
        values[node.target.id] = ast.literal_eval(node.value)
    smoke = config.load(paths.PARAMS_DIR / "smoke.yaml")
    assert values == smoke.stage_parameters(STAGE_OF[path.name])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_functions_or_classes_in_notebooks(path):
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb):
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)), (
                f"{path.name}: move {node.name} into dflib")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path):
    from papermill.translators import PythonTranslator

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in code_cells(nb) if "parameters" in c.metadata.get("tags", []))
    parsed = {p.name for p in PythonTranslator.inspect(cell)}
    assignments = {n.target.id for n in ast.parse(cell.source).body}
    assert parsed == assignments


def test_sync_parameters_tool_leaves_the_stored_notebooks_as_they_are(capsys):
    # tools/sync_parameters.py is how a parameter change reaches the notebooks: it must run
    # and, on the stored notebooks (already in sync), change nothing.
    import runpy

    before = {p: p.read_bytes() for p in NOTEBOOKS}
    runpy.run_path(str(paths.PROJECT_ROOT / "tools" / "sync_parameters.py"))["main"]()
    assert capsys.readouterr().out == ""
    assert {p: p.read_bytes() for p in NOTEBOOKS} == before
