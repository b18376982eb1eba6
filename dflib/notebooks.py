"""Run a profile's stages: each notebook executed by papermill into the run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import signal
import sys
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Sequence

import yaml

from . import config, io, paths
from .paths import run_lock

KEY_PACKAGES = ("dflib", "tensorflow", "keras", "torch", "torchvision", "facenet-pytorch",
                "numpy", "pandas", "scikit-learn", "opencv-python-headless", "papermill")


KERNEL_NAME = "python3"
INTERRUPTED_TAG = "dflib-interrupted"  # the banner cell of an interrupted stage's notebook
# Added to the environment of every kernel dflib starts: TensorFlow's native INFO lines
# (oneDNN, CPU instructions, no CUDA driver) are dropped; its warnings and errors stay.
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "1"}
# ipykernel would copy what native code and child processes write to file descriptors 1
# and 2 (TensorFlow, XLA, FFmpeg, Dask and dlib workers) into the notebook, and papermill
# relays a notebook's stderr to the terminal: off, it goes to the stage's kernel log.
# Python's own output (print, warnings, tracebacks) still reaches the notebook.
KERNEL_ARGS = ("--IPKernelApp.capture_fd_output=False",)
# Watches a kernel's process group for a run that dies without ending it (SIGKILL): its
# stdin is a pipe from the run; EOF before the run's word kills the group.
REAPER = ("import os, signal, sys\n"
          "if not sys.stdin.buffer.read(1):\n"
          "    try:\n"
          "        os.killpg(int(sys.argv[1]), signal.SIGKILL)\n"
          "    except OSError:\n"
          "        pass\n")
# Signals that end a run as Ctrl-C does (SIGINT is Python's KeyboardInterrupt already):
# the terminal closed, a polite kill.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGHUP", "SIGTERM") if hasattr(signal, n))


class StageFailed(RuntimeError):
    """A notebook raised or its kernel died; the message names the stage, its executed
    copy and its kernel log."""


class Stopped(KeyboardInterrupt):
    """A stop signal (:data:`STOP_SIGNALS`) arrived; raised by :func:`stop_signals_interrupt`
    so a run unwinds as it does on Ctrl-C (a KeyboardInterrupt passes through asyncio)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or a stop signal during a run; the message names the stage it stopped in."""

    def __init__(self, stage: str, signum: int = signal.SIGINT) -> None:
        super().__init__(f"{how_stopped(signum)} in stage {stage}; run again to resume")
        self.stage, self.signum = stage, signum


def how_stopped(signum: int) -> str:
    """``interrupted`` (Ctrl-C) or ``stopped by SIGTERM`` (the signal's name)."""
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT (Ctrl-C) or a stop signal's."""
    return exc.signum if isinstance(exc, (Stopped, Interrupted)) else signal.SIGINT


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within: SIGHUP and SIGTERM raise :class:`Stopped`, so a run ends its kernel's
    processes and says where it stopped, instead of exiting at once (Python's default)
    with them left running. Main thread only."""
    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
    run = profile.run.ensure()  # its clean-up of temporary files needs the lock held
    io.write_text(yaml.safe_dump({**profile.shared, **{k: dict(v) for k, v in
                                                       profile.sections.items()}},
                                 sort_keys=False), run.profile_yaml)
    io.write_text(json.dumps(environment_record(), indent=2) + "\n", run.environment_json)
    for stage in selected:
        output = run.executed_notebook(stage.notebook)
        print(f"[dflib] stage {stage.name}: {stage.notebook} -> {output}", flush=True)
        execute_stage(stage.name, paths.NOTEBOOKS_DIR / stage.notebook, output,
                      profile.stage_parameters(stage.name), run.kernel_log(stage.name),
                      log_output)
    from . import html_report

    try:
        print(f"[dflib] report: {html_report.build_report(run)}", flush=True)
    except KeyboardInterrupt as exc:
        raise Interrupted("report (rendering report/index.html)", signal_of(exc)) from None
    return run.root


def execute_stage(stage: str, notebook: Path, output: Path, parameters: dict,
                  kernel_log: Path, log_output: bool = True) -> None:
    """Execute one stage's ``notebook`` into ``output`` with papermill.

    The kernel runs in a process group of its own (jupyter_client starts it in a new
    session) and the whole group is killed on the way out, however the stage ends: worker
    processes it started (Dask, dlib) never outlive it. A failure, the kernel's death
    included, is one :class:`StageFailed` line naming the executed notebook and the kernel
    log; Ctrl-C or a stop signal marks the notebook and raises :class:`Interrupted`.
    """
    import papermill
    from nbclient.exceptions import DeadKernelError

    km = logged_kernel_manager(kernel_log)
    try:
        with _papermill_errors_to(kernel_log):
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters,
                cwd=str(paths.NOTEBOOKS_DIR), kernel_name=KERNEL_NAME, km=km,
                progress_bar=False, log_output=log_output)
    except papermill.PapermillExecutionError as exc:
        if exc.ename == "KeyboardInterrupt":  # the kernel itself was interrupted
            mark_interrupted(output)
            raise Interrupted(stage) from None
        raise StageFailed(f"stage {stage} failed ({exc.ename}: {exc.evalue}); "
                          f"see {output} (kernel log: {kernel_log})") from None
    except DeadKernelError:
        mark_interrupted(output, KERNEL_DIED)
        raise StageFailed(f"stage {stage}: its kernel died, killed from outside (the "
                          "out-of-memory killer, when memory runs out: lower a batch size or "
                          f"the workers); see {output} (kernel log: {kernel_log}); run again "
                          "to resume") from None
    except RuntimeError as exc:
        # jupyter_client's only word for a kernel that exits while starting (a broken
        # environment, an ipykernel that does not import): the reason is in its log.
        if not str(exc).startswith("Kernel died"):
            raise
        raise StageFailed(f"stage {stage}: its kernel did not start ({exc}); the reason is "
                          f"in its log {kernel_log}") from None
    except KeyboardInterrupt as exc:
        mark_interrupted(output)
        raise Interrupted(stage, signal_of(exc)) from None
    finally:
        km.end_process_group()


@contextlib.contextmanager
def _papermill_errors_to(log: Path) -> Iterator[None]:
    """Within: papermill's own error lines (e.g. "Kernel died while waiting for execute
    reply") go to ``log`` instead of the terminal, where the stage's one line says it; the
    notebook's stderr that papermill relays (warnings) still reaches the terminal."""
    def to_log(record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        with log.open("a", encoding="utf-8") as stream:
            stream.write(f"papermill: {record.getMessage()}\n")
        return False

    logger = logging.getLogger("papermill")
    logger.addFilter(to_log)
    try:
        yield
    finally:
        logger.removeFilter(to_log)


def logged_kernel_manager(log: Path):
    """A kernel manager whose kernel writes its own stdout and stderr to ``log`` (appended),
    with :data:`KERNEL_ENV` and :data:`KERNEL_ARGS`: TensorFlow's native logs and the
    messages of a kernel shut down mid-reply (after Ctrl-C) stay out of the terminal, which
    keeps the run's own lines readable. Its ``end_process_group()`` kills the kernel's
    process group: the kernel and every process it started; a small watcher process
    (:data:`REAPER`) does it when the run itself is killed first.

    Where Unix sockets exist the kernel talks over them, in a folder of its own, not over
    TCP: jupyter_client picks free TCP ports and the kernel binds them a moment later, and a
    kernel that another run starts meanwhile can take one ("Address already in use": seen
    when the test suite's two background smoke runs started kernels at once)."""
    import shutil
    import subprocess
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        group: int | None = None
        reaper: subprocess.Popen | None = None

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**(kw.pop("env", None) or os.environ), **KERNEL_ENV}
            with log.open("ab") as stream:  # the kernel holds its own copy of the descriptor
                await super()._async_launch_kernel([*kernel_cmd, *KERNEL_ARGS], env=env,
                                                   stdout=stream, stderr=stream, **kw)
            self.group = self.provisioner.pgid if self.provisioner else None
            if self.group and hasattr(os, "killpg"):
                # Its own session: neither Ctrl-C nor a closed terminal reach it.
                self.reaper = subprocess.Popen([sys.executable, "-c", REAPER, str(self.group)],
                                               stdin=subprocess.PIPE, start_new_session=True)

        def end_process_group(self) -> None:
            """SIGKILL to the kernel's process group, if any of it is still running, then
            the watcher is told it is done and the sockets' folder goes."""
            if self.group and hasattr(os, "killpg"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.group, signal.SIGKILL)
            if self.reaper is not None:
                with contextlib.suppress(BrokenPipeError):
                    self.reaper.communicate(b"done")
                self.reaper = None
            if self.transport == "ipc":
                shutil.rmtree(Path(self.ip).parent, ignore_errors=True)

    manager = LoggedKernelManager(kernel_name=KERNEL_NAME)
    if os.name == "posix":
        # An absolute path: the kernel runs in the notebooks' folder, this process elsewhere.
        manager.transport = "ipc"
        manager.ip = str(Path(tempfile.mkdtemp(prefix="dflib-kernel-")) / "socket")
    return manager


INTERRUPTED = ("**Interrupted (Ctrl-C or a stop signal): this stage did not finish.** The "
               "cells below without output never ran; `dflib run` again resumes the run.")
KERNEL_DIED = ("**The kernel died (killed from outside): this stage did not finish.** The "
               "cells below without output never ran; `dflib run` again resumes the run.")


def mark_interrupted(notebook: Path, banner: str = INTERRUPTED) -> None:
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
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(banner,
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
