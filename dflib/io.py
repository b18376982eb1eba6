"""Atomic artifact writes and the run's failure table.

Every artifact is written to a temporary file beside its target and renamed into place,
so a killed process or a full disk never leaves a truncated file under the final name.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

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


# Artifacts that are zip archives: numpy's .npz and Keras' .keras.
ZIP_SUFFIXES = (".npz", ".keras")


def read_problem(target: str | Path) -> str:
    """"" when the artifact at ``target`` reads whole, else one phrase saying why not.

    What a rerun asks before it reuses an artifact: the atomic writes keep a killed
    writer's file from its final name, but a copy that stopped or a damaged disk can
    still leave one there. A zip artifact (``.npz`` arrays, ``.keras`` models) is read
    through, every member checked against its CRC: a file cut short has lost its zip
    directory, a damaged byte inside fails its member's CRC (numpy and Keras would only
    find out on the read that needs it, in a later stage). A ``.json`` record must parse;
    a ``.joblib`` classifier must load. Reads the whole file: its size in I/O, once per
    reuse, against the stage's own reading of it.
    """
    target = Path(target)
    if target.suffix not in (*ZIP_SUFFIXES, ".json", ".joblib"):
        raise ValueError(f"{target}: {target.suffix!r} is not an artifact kind dflib checks")
    if not target.is_file():
        return "no such file"
    try:
        if target.suffix in ZIP_SUFFIXES:
            with zipfile.ZipFile(target) as z:
                bad = z.testzip()
            return f"damaged: member {bad} fails its CRC check" if bad else ""
        if target.suffix == ".json":
            json.loads(target.read_text(encoding="utf-8"))
        else:
            import joblib

            joblib.load(target)
    except Exception as exc:  # noqa: BLE001 - whatever the reader raised, it does not read
        return f"does not read whole ({type(exc).__name__}: {exc})".splitlines()[0]
    return ""


class DamagedArtifact(ValueError):
    """A saved artifact that is needed now does not read whole; the message names it and
    what to do."""


def require_whole(target: str | Path, remedy: str) -> Path:
    """``target`` when it reads whole (:func:`read_problem`), else :class:`DamagedArtifact`
    in one line: where an artifact is loaded rather than reused (scoring with a saved
    model), so a damaged one is named instead of failing deep in its reader."""
    problem = read_problem(target)
    if problem:
        raise DamagedArtifact(f"{target}: {problem}; {remedy}")
    return Path(target)


def read_record(target: str | Path) -> Any | None:
    """A JSON record (a manifest, a model's training record, a fingerprint); None when
    it is missing or does not parse (a file cut short), so the artifact it vouches for
    is made again rather than trusted or a traceback."""
    try:
        return json.loads(Path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def npz_made_with(target: str | Path, config: str) -> bool:
    """Whether ``target`` is an ``.npz`` artifact that reads whole (:func:`read_problem`)
    and whose ``config`` entry is ``config``.

    Per-video artifacts store the settings that made them, so a rerun redoes a file that
    is missing, damaged, from an older layout or made with other settings.
    """
    target = Path(target)
    if read_problem(target):
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


def read_json(path: str | Path) -> Any:
    """A JSON record dflib wrote (a manifest, a model's record); ``ValueError`` naming the
    file when it is damaged or cut short (a copy that stopped), so a reader can say which
    artifact to redo."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise ValueError(f"{path}: damaged or cut short, not readable JSON "
                         f"({str(exc).splitlines()[0]})") from None


# --------------------------------------------------------------------------- users' files

class TextFileError(ValueError):
    """A user's text file that cannot be read as text, phrased as one line naming it."""


# Byte-order marks and their codecs; UTF-32's come first, UTF-32-LE's begins like UTF-16-LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def read_text_file(path: str | Path) -> str:
    """The text of a file a user wrote (a profile, a dataset's list, metadata or manifest).

    UTF-8, or whatever a byte-order mark says (Windows editors save UTF-8 with one, and
    "Unicode" means UTF-16 with one). Anything else is :class:`TextFileError` naming the
    file and the first byte that is not UTF-8, as is text with NUL characters (UTF-16
    without a mark decodes as UTF-8 with a NUL beside every ASCII letter) and a file that
    cannot be read (no permission, a folder)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    nul = (f"{path}: holds NUL characters, not UTF-8 text (UTF-16 without a byte-order "
           "mark?); save it as UTF-8")
    if encoding == "utf-8" and b"\0" in data:
        raise TextFileError(nul)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise TextFileError(f"{path}: not {encoding.upper().replace('-SIG', '')} text (byte "
                            f"0x{data[exc.start]:02x} on line {line}: Latin-1 or another "
                            "legacy encoding?); save it as UTF-8") from None
    if "\0" in text:
        raise TextFileError(nul)
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------- provenance

def file_stamp(path: str | Path) -> dict[str, int] | None:
    """A file's size and modification time, how a rerun tells a replaced input (same name,
    new content) from the one an artifact was made from; None when it cannot be read."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def made_from(settings: Mapping[str, Any],
              inputs: Mapping[str, Mapping[str, str] | Iterable[str]]) -> dict[str, Any]:
    """What an artifact was made from: its ``settings`` and, per role (``train``, ``val``,
    ``videos``), the exact videos it read, each with a digest of its input file ("" when
    none is known). Stored beside the artifact; :func:`stale_reason` compares two."""
    roles = {}
    for role, videos in inputs.items():
        pairs = videos.items() if isinstance(videos, Mapping) else ((v, "") for v in videos)
        roles[role] = dict(sorted((str(v), str(d)) for v, d in pairs))
    return {"settings": json.loads(json.dumps(dict(settings), sort_keys=True, default=str)),
            "inputs": roles}


def stale_reason(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """"" when an artifact recorded as made from ``old`` is what ``new`` would make, else
    one phrase saying why not: ``other settings (epochs 1 -> 2)``, ``trained on other
    videos (3 added, 1 removed)``, or that the artifact predates these records."""
    if not old or "settings" not in old or "inputs" not in old:
        return "made before its inputs were recorded"
    if old["settings"] != new["settings"]:
        keys = sorted(set(old["settings"]) | set(new["settings"]))
        changed = [f"{k} {old['settings'].get(k, '-')} -> {new['settings'].get(k, '-')}"
                   for k in keys if old["settings"].get(k) != new["settings"].get(k)]
        shown = ", ".join(changed[:3]) + (f", {len(changed) - 3} more" if len(changed) > 3 else "")
        return f"other settings ({shown})"
    if old["inputs"] == new["inputs"]:
        return ""

    def flat(record: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        return {v: (role, d) for role, videos in record["inputs"].items()
                for v, d in videos.items()}

    before, after = flat(old), flat(new)
    common = before.keys() & after.keys()
    counts = {"added": len(after.keys() - before.keys()),
              "removed": len(before.keys() - after.keys()),
              "moved to another split": sum(before[v][0] != after[v][0] for v in common),
              "re-extracted": sum(before[v][0] == after[v][0] and before[v][1] != after[v][1]
                                  for v in common)}
    return "trained on other videos (" + ", ".join(
        f"{n} {what}" for what, n in counts.items() if n) + ")"


def leaked_into(record: Mapping[str, Any], videos: Iterable[str]) -> list[str]:
    """The ``videos`` (e.g. the test split) that an artifact made from ``record`` read."""
    read = {v for role in record.get("inputs", {}).values() for v in role}
    return sorted(read & {str(v) for v in videos})
