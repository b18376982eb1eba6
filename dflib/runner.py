"""Run a profile's stages: each notebook executed by papermill into the run folder."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from types import MappingProxyType
from importlib import metadata
from pathlib import Path
from typing import Sequence

import yaml

from . import config, io, paths

KEY_PACKAGES = ("dflib", "tensorflow", "keras", "torch", "torchvision", "facenet-pytorch",
                "numpy", "pandas", "scikit-learn", "opencv-python-headless", "papermill")


class StageFailed(RuntimeError):
    """A notebook raised; the message names the stage and its executed copy."""


def select_stages(names: Sequence[str] | None) -> list[config.Stage]:
    """The stages to run, in pipeline order; unknown names raise ProfileError."""
    if not names:
        return list(config.STAGES)
    unknown = [n for n in names if n not in config.STAGE_BY_NAME]
    if unknown:
        raise config.ProfileError(f"--stages: unknown stage '{unknown[0]}' (allowed: "
                                  f"{', '.join(config.STAGE_BY_NAME)})")
    return [s for s in config.STAGES if s.name in names]


def environment_record() -> dict[str, str]:
    """Versions of Python and the key packages, saved with every run."""
    record = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in KEY_PACKAGES:
        try:
            record[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            record[name] = "not installed"
    return record


def run_profile(profile: config.Profile, stages: Sequence[str] | None = None,
                log_output: bool = True) -> Path:
    """Execute the selected stages' notebooks in order, then render the run's report
    (``report/index.html`` and every executed notebook as HTML); return the run folder."""
    import papermill  # heavy import, only when running

    selected = select_stages(stages)
    run = profile.run.ensure()
    io.write_text(yaml.safe_dump({**profile.shared, **{k: dict(v) for k, v in
                                                       profile.sections.items()}},
                                 sort_keys=False), run.root / "profile.yaml")
    io.write_text(json.dumps(environment_record(), indent=2) + "\n", run.root / "environment.json")
    for stage in selected:
        output = run.notebooks / stage.notebook
        print(f"[dflib] stage {stage.name}: {stage.notebook} -> {output}", flush=True)
        try:
            papermill.execute_notebook(
                str(paths.NOTEBOOKS_DIR / stage.notebook), str(output),
                parameters=profile.stage_parameters(stage.name), cwd=str(paths.NOTEBOOKS_DIR),
                kernel_name="python3", progress_bar=False, log_output=log_output)
        except papermill.PapermillExecutionError as exc:
            raise StageFailed(f"stage {stage.name} failed ({exc.ename}: {exc.evalue}); "
                              f"see {output}") from None
    from . import report

    print(f"[dflib] report: {report.build_report(run)}", flush=True)
    return run.root


SEEDS_TABLE = "results_seeds.csv"


def seed_profile(profile: config.Profile, seed: int) -> config.Profile:
    """``profile`` with ``seed`` and the run folder ``<run_name>-s<seed>``."""
    shared = {**profile.shared, "seed": config.SHARED["seed"].check("--seeds", seed),
              "run_name": f"{profile.shared['run_name']}-s{seed}"}
    return dataclasses.replace(profile, shared=MappingProxyType(shared))


def run_seeds(profile: config.Profile, seeds: Sequence[int], stages: Sequence[str] | None = None,
              log_output: bool = True) -> Path:
    """Run ``profile`` once per seed (:func:`seed_profile`), then write
    ``<run>/tables/results_seeds.csv``: each method's mean and standard deviation over the
    seeds (:func:`dflib.reports.seed_summary`). Returns ``<run>/``."""
    from . import evaluation, reports

    tables = {}
    for seed in dict.fromkeys(seeds):
        run = seed_profile(profile, seed)
        print(f"[dflib] seed {seed}: {run.run.root}", flush=True)
        run_profile(run, stages, log_output)
        tables[seed] = evaluation.results_table(run.run)
    base = profile.run.ensure()
    io.write_csv(reports.seed_summary(tables), base.tables / SEEDS_TABLE)
    print(f"[dflib] {len(tables)} seeds: {base.tables / SEEDS_TABLE}", flush=True)
    return base.root
