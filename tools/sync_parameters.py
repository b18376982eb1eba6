"""Rewrite every notebook's parameters cell from the schema and params/smoke.yaml.

Run after adding or changing a parameter (``.venv/bin/python tools/sync_parameters.py``);
tests/test_notebooks.py fails until the cells match. Only the tagged cell changes.
"""

from __future__ import annotations

import nbformat

from dflib import config, paths

HEADER = "# Parameters: the smoke profile's values (params/smoke.yaml); papermill overrides them."


def parameters_source(stage: config.Stage, smoke: config.Profile) -> str:
    """One annotated literal per parameter, in schema order, with its help as comment."""
    values = smoke.stage_parameters(stage.name)
    lines = [HEADER]
    for key, field in config.stage_fields(stage.name).items():
        kind = field.kind if isinstance(field.kind, type) else field.kind[0]
        name = f"list[{field.item.__name__}]" if kind is list else kind.__name__
        lines.append(f"{key}: {name} = {values[key]!r}  # {field.help}")
    return "\n".join(lines)


def main() -> None:
    smoke = config.load(paths.PARAMS_DIR / "smoke.yaml")
    for stage in config.STAGES:
        path = paths.NOTEBOOKS_DIR / stage.notebook
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        source = parameters_source(stage, smoke)
        if cell.source != source:
            cell.source = source
            nbformat.write(nb, path)
            print(f"updated {path.name}")


if __name__ == "__main__":
    main()
