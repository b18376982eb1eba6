"""Atomic artifact writes and the run's failure table.

Every artifact is written to a temporary file beside its target and renamed into place,
so a killed process or a full disk never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

FAILURE_COLUMNS = ["stage", "video_id", "reason"]
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; put it back at once
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; artifacts get the usual umask mode
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, target)
    except OSError as exc:
        # A full disk says "No space left on device" about a temporary name, or about no
        # file at all; the user needs to hear which artifact could not be written.
        if exc.filename not in (None, str(tmp_path)):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_partials(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that a killed writer left in ``folder`` (and below it,
    with ``recursive``): a SIGKILL skips :func:`atomic_path`'s clean-up. Call it only where
    no other writer is running."""
    folder = Path(folder)
    found = sorted(folder.rglob(".*.part") if recursive else folder.glob(".*.part"))
    for path in found:
        path.unlink(missing_ok=True)
    return found


def atomic_write(target: str | Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_csv(df: pd.DataFrame, target: str | Path) -> Path:
    """Write a table atomically, without the pandas index."""
    return atomic_write(target, lambda p: df.to_csv(p, index=False))


def write_text(text: str, target: str | Path) -> Path:
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


def write_npz(target: str | Path, **arrays: np.ndarray) -> Path:
    """Write arrays to an uncompressed ``.npz`` atomically (fast to read back)."""
    def _save(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)
    return atomic_write(target, _save)


def npz_made_with(target: str | Path, config: str) -> bool:
    """Whether ``target`` is a readable ``.npz`` artifact whose ``config`` entry is ``config``.

    Per-video artifacts store the settings that made them, so a rerun redoes a file that
    is missing, unreadable, from an older layout or made with other settings.
    """
    target = Path(target)
    if not target.is_file():
        return False
    try:
        with np.load(target) as z:
            return str(z["config"]) == config
    except Exception:  # noqa: BLE001 - unreadable or an older layout: redo it
        return False


def record_failures(failures_csv: str | Path, stage: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace ``stage``'s rows of the run's failure table with ``rows`` (video_id, reason)."""
    failures_csv = Path(failures_csv)
    old = (pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
           if failures_csv.exists() else pd.DataFrame(columns=FAILURE_COLUMNS))
    new = rows.loc[:, ["video_id", "reason"]].astype(str).assign(stage=stage)[FAILURE_COLUMNS]
    table = pd.concat([old[old["stage"] != stage], new], ignore_index=True)
    table = table.sort_values(["stage", "video_id"], kind="stable").reset_index(drop=True)
    write_csv(table, failures_csv)
    return table
