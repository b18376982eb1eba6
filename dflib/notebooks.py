"""Run a profile's stages: each notebook executed by papermill into the run folder."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Sequence

import yaml

from . import config, io, paths
from .paths import run_lock

KEY_PACKAGES = ("dflib", "tensorflow", "keras", "torch", "torchvision", "facenet-pytorch",
                "numpy", "pandas", "scikit-learn", "opencv-python-headless", "papermill")


KERNEL_NAME = "python3"
INTERRUPTED_TAG = "dflib-interrupted"  # the banner cell of an interrupted stage's notebook


class StageFailed(RuntimeError):
    """A notebook raised; the message names the stage and its executed copy."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message names the stage it stopped in."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"interrupted in stage {stage}; run again to resume")
        self.stage = stage


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
    selected = select_stages(stages)
    with run_lock(profile.run.root):
        return _run_locked(profile, selected, log_output)


def _run_locked(profile: config.Profile, selected: Sequence[config.Stage],
                log_output: bool) -> Path:
    import papermill  # heavy import, only when running

    run = profile.run.ensure()  # its clean-up of temporary files needs the lock held
    io.write_text(yaml.safe_dump({**profile.shared, **{k: dict(v) for k, v in
                                                       profile.sections.items()}},
                                 sort_keys=False), run.profile_yaml)
    io.write_text(json.dumps(environment_record(), indent=2) + "\n", run.environment_json)
    for stage in selected:
        output = run.executed_notebook(stage.notebook)
        print(f"[dflib] stage {stage.name}: {stage.notebook} -> {output}", flush=True)
        kernel_log = run.kernel_log(stage.name)
        try:
            papermill.execute_notebook(
                str(paths.NOTEBOOKS_DIR / stage.notebook), str(output),
                parameters=profile.stage_parameters(stage.name), cwd=str(paths.NOTEBOOKS_DIR),
                kernel_name=KERNEL_NAME, km=logged_kernel_manager(kernel_log),
                progress_bar=False, log_output=log_output)
        except papermill.PapermillExecutionError as exc:
            if exc.ename == "KeyboardInterrupt":  # the kernel itself was interrupted
                mark_interrupted(output)
                raise Interrupted(stage.name) from None
            raise StageFailed(f"stage {stage.name} failed ({exc.ename}: {exc.evalue}); "
                              f"see {output} (kernel log: {kernel_log})") from None
        except KeyboardInterrupt:
            mark_interrupted(output)
            raise Interrupted(stage.name) from None
    from . import html_report

    try:
        print(f"[dflib] report: {html_report.build_report(run)}", flush=True)
    except KeyboardInterrupt:
        raise Interrupted("report (rendering report/index.html)") from None
    return run.root


def logged_kernel_manager(log: Path):
    """A kernel manager whose kernel writes its own stderr to ``log`` (appended): TensorFlow's
    native logs and the messages of a kernel shut down mid-reply (after Ctrl-C) stay out of
    the terminal, which keeps the run's own lines readable."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as stream:  # the kernel holds its own copy of the descriptor
                await super()._async_launch_kernel(kernel_cmd, stderr=stream, **kw)

    return LoggedKernelManager(kernel_name=KERNEL_NAME)


def mark_interrupted(notebook: Path) -> None:
    """Mark an executed notebook whose run was interrupted, so it never reads as a finished
    stage: papermill's own clean-up marks the cells it never ran as completed."""
    import nbformat

    if not notebook.is_file():
        return
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("papermill", {})
        if meta.get("start_time") is None:
            meta["status"] = "pending"  # never ran
    nb.metadata.setdefault("papermill", {}).update(exception=True, interrupted=True)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(
        "**Interrupted (Ctrl-C): this stage did not finish.** The cells below without output "
        "never ran; `dflib run` again resumes the run.",
        metadata={"tags": [INTERRUPTED_TAG]}))
    io.write_text(nbformat.writes(nb), notebook)


SEEDS_TABLE = "results_seeds"


def seed_profile(profile: config.Profile, seed: int) -> config.Profile:
    """``profile`` with ``seed`` and the run folder ``<run_name>-s<seed>``."""
    shared = {**profile.shared, "seed": config.SHARED["seed"].check("--seeds", seed),
              "run_name": f"{profile.shared['run_name']}-s{seed}"}
    return dataclasses.replace(profile, shared=MappingProxyType(shared))


def run_seeds(profile: config.Profile, seeds: Sequence[int], stages: Sequence[str] | None = None,
              log_output: bool = True) -> Path:
    """Run ``profile`` once per seed (:func:`seed_profile`), then write
    ``<run>/tables/results_seeds.csv``: each method's mean and standard deviation over the
    seeds (:func:`dflib.result_tables.seed_summary`). Returns ``<run>/``."""
    from . import evaluation, result_tables

    tables = {}
    for seed in dict.fromkeys(seeds):
        run = seed_profile(profile, seed)
        print(f"[dflib] seed {seed}: {run.run.root}", flush=True)
        run_profile(run, stages, log_output)
        tables[seed] = evaluation.results_table(run.run)
    base = profile.run.ensure()
    io.write_csv(result_tables.seed_summary(tables), base.table(SEEDS_TABLE))
    print(f"[dflib] {len(tables)} seeds: {base.table(SEEDS_TABLE)}", flush=True)
    return base.root
