"""Dataset adapters: turn a dataset folder into the video index of the contract.

Each adapter knows one layout on disk (Celeb-DF v2, FaceForensics++, DFDC, a plain
``real/`` + ``fake/`` folder), converts its labels to 1 = fake, 0 = real and fixes the
splits the dataset itself defines. The ``demo`` adapter is the celebdf one with a
generator: it writes its videos (:mod:`dflib.synth`) at ``data_root`` first; the rest of
dflib asks :func:`generates`, :func:`is_generated` and :func:`layout_of`, never for the
demo by name. :func:`build_index` does the rest the same way for every dataset: seeded
splits of the remaining videos, the optional ``manifest.csv``, the per-class cap, the
checks and the column order.

Over 600 lines on purpose: five small adapters and the one index builder they share sit
together so that a reader compares the layouts side by side and a new adapter copies the
nearest one; none is long.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass, field, replace
from importlib import resources
from io import StringIO
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import config, io, paths
from .datasets_fields import DATASETS

SPLITS = ("train", "val", "test")
INDEX_COLUMNS = ["video_id", "path", "label", "split", "dataset", "method", "compression"]
MISSING_COLUMNS = ["video_id", "path", "reason"]
# Every container the decoder (OpenCV's FFmpeg) reads, each checked by writing a clip and
# decoding it back: the one list of what an adapter or `dflib predict` takes as a video.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".f4v",  # ISO / QuickTime family
    ".avi", ".divx", ".mkv", ".webm", ".flv", ".wmv", ".asf", ".ogv", ".nut", ".rm",
    ".mpg", ".mpeg", ".m2v", ".vob", ".ts", ".mts", ".m2ts",  # MPEG program / transport
    ".mxf", ".dv", ".y4m"})
LEFT_OUT_COLUMNS = ["path", "reason"]
MANIFEST = "manifest.csv"
CELEBDF_LIST = "List_of_testing_videos.txt"
CELEBDF_FOLDERS: Mapping[str, int] = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}

# Columns every adapter row carries; names starting with "_" never reach the index.
_ROW_COLUMNS = ["video_id", "_rel", "label", "split", "method", "compression", "_group"]
_MANIFEST_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1}

Row = dict[str, Any]
# The split of an adapter row that the dataset puts in training, leaving the seeded
# validation share to build_index (no test share).
TRAIN_OR_VAL = "train_or_val"


class DatasetError(ValueError):
    """A dataset folder that does not match its adapter, phrased as one line."""


@dataclass
class IndexResult:
    """The video index, the listed videos that are absent on disk, and the files of the
    scanned folders that are not videos (``left_out``: path, reason)."""

    videos: pd.DataFrame
    missing: pd.DataFrame
    left_out: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LEFT_OUT_COLUMNS))


@dataclass(frozen=True)
class _Adapter:
    """One layout: what it needs on disk, how it reads it, and how it splits."""

    expects: str
    required: Callable[[Path, Mapping[str, Any]], list[tuple[Path, str]]]
    collect: Callable[[Path, Mapping[str, Any]], tuple[list[Row], list[Row]]]
    extras: tuple[str, ...] = ()
    draws_test: bool = False  # True: videos the dataset leaves unsplit also feed the test split
    # The folders it takes every video of (not a list's): (folder, recursive); their other
    # files are reported as left out.
    scanned: tuple[tuple[str, bool], ...] = ()
    # The adapter whose layout it reads (None: its own), for what a layout implies (Celeb-DF's
    # test list holds out videos, not people).
    layout: str | None = None
    # How it writes its own videos at data_root (None: they are found there).
    generator: _Generator | None = None


@dataclass(frozen=True)
class _Generator:
    """A dataset written at ``data_root`` from the profile's ``index`` section."""

    # Why the folder cannot receive it with these settings (None: it can; absent, empty, or
    # holding part of the same dataset).
    problem: Callable[[Path, Mapping[str, Any]], str | None]
    # Writes what is missing (resuming a half-written folder); a complete one is left as it is.
    write: Callable[[Path, Mapping[str, Any]], object]
    # Whether a folder holds data it wrote (however it is read).
    wrote: Callable[[Path], bool]


# --- helpers shared by the adapters -------------------------------------------------------


def _read_text(path: Path) -> str:
    """A list, metadata or manifest file of the dataset (:func:`dflib.io.read_text_file`)."""
    try:
        return io.read_text_file(path)
    except io.TextFileError as exc:
        raise DatasetError(str(exc)) from None


def _video_id(rel: str) -> str:
    return str(PurePosixPath(rel).with_suffix(""))


def _row(rel: str, label: int, method: str, compression: str = "unknown",
         split: str | None = None, **extra: Any) -> Row:
    return {"video_id": _video_id(rel), "_rel": rel, "label": label, "split": split,
            "method": method, "compression": compression, **extra}


def _missing(rel: str, reason: str, video_id: str | None = None) -> Row:
    return {"video_id": video_id or _video_id(rel), "_rel": rel, "reason": reason}


def _utf8(name: str) -> bool:
    """Whether a name read from disk was valid UTF-8 (Python keeps other bytes as lone
    surrogates, which no UTF-8 file can hold)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """A name read from disk with its bytes that are not UTF-8 written as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def scan_folder(root: Path, folder: Path, recursive: bool = True,
                extensions: frozenset[str] | None = VIDEO_EXTENSIONS
                ) -> tuple[list[Path], list[Row]]:
    """Video files (``extensions``; None: every file) under ``folder``, sorted, by the one
    scanning rule of every adapter and of ``dflib predict``.

    Hidden files and folders (a name starting with ".": macOS ``._*`` forks,
    ``.AppleDouble/``, ``.git/``) are skipped; a video entry that cannot be read (a
    dangling symbolic link, no read permission) and a folder that cannot be listed come
    back as missing rows saying why, so they are recorded rather than lost, as does a name
    that is not UTF-8 (an index, a store file and a CSV cell all need one that is).
    """
    found: list[Path] = []
    problems: list[Row] = []

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def visit(directory: Path) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append(_missing(rel(directory), f"folder cannot be listed ({exc.strerror})"))
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            if not _utf8(entry.name):
                folder = entry.is_dir(follow_symlinks=False)
                if (folder and recursive) or (not folder and (
                        extensions is None or path.suffix.lower() in extensions)):
                    what = "folder" if folder else "file"
                    problems.append(_missing(_printable(rel(path)), f"{what} name is not UTF-8 "
                                             "(Latin-1?); rename it to index it"))
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    visit(path)
                continue
            if extensions is not None and path.suffix.lower() not in extensions:
                continue
            if not path.is_file():
                if path.is_symlink():
                    problems.append(_missing(rel(path), "dangling symbolic link (its target "
                                             f"{os.readlink(path)} does not exist)"))
                continue
            if not os.access(path, os.R_OK):
                problems.append(_missing(rel(path), "not readable (permission denied)"))
                continue
            found.append(path)

    visit(folder)
    return sorted(found), problems


def _ffpp_choice(params: Mapping[str, Any]) -> tuple[list[str], str]:
    return list(params["ffpp_methods"]), params["ffpp_compression"]


# --- Celeb-DF v2 ---------------------------------------------------------------------------


def _celebdf_required(root: Path, params: Mapping[str, Any]) -> list[tuple[Path, str]]:
    return [(root / f, "folder") for f in CELEBDF_FOLDERS] + [(root / CELEBDF_LIST, "file")]


def _celebdf_listed(root: Path) -> list[tuple[str, int]]:
    """``(relative path, label)`` of the official test list, converted to 1 = fake."""
    listed = []
    list_file = root / CELEBDF_LIST
    for n, line in enumerate(_read_text(list_file).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{list_file} line {n} {line.strip()!r}"
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetError(f"{where}: expected '<flag> <folder>/<file>.mp4' "
                               "with flag 1 = real, 0 = fake")
        rel = PurePosixPath(parts[1].strip().replace("\\", "/")).as_posix()  # Windows paths
        folder = rel.split("/", 1)[0]
        if folder not in CELEBDF_FOLDERS:
            raise DatasetError(f"{where}: folder '{folder}' is not one of "
                               f"{', '.join(CELEBDF_FOLDERS)}")
        label = 1 - int(parts[0])  # the list writes 1 = real
        if label != CELEBDF_FOLDERS[folder]:
            names = ("real", "fake")
            raise DatasetError(f"{where}: the flag says {names[label]} but {folder}/ holds "
                               f"{names[CELEBDF_FOLDERS[folder]]} videos")
        listed.append((rel, label))
    return listed


_CELEBDF_CLIP = re.compile(r"Celeb-(?:real/id(\d+)|synthesis/id(\d+)_id\d+)_(\d+)\.\w+")


def celebdf_source_clip(rel: str) -> str | None:
    """The source clip of a Celeb-DF video, ``id<target>_<clip>``: a real ``Celeb-real/
    id0_0003.mp4`` and the fakes made from it, ``Celeb-synthesis/id0_id<k>_0003.mp4``, share
    it, so the validation split never holds a clip whose real or fake trained the model.
    None for YouTube-real and other names (their own group)."""
    match = _CELEBDF_CLIP.fullmatch(rel)
    if match is None:
        return None
    return f"id{match.group(1) or match.group(2)}_{match.group(3)}"


def _celebdf_collect(root: Path, params: Mapping[str, Any]) -> tuple[list[Row], list[Row]]:
    listed = _celebdf_listed(root)
    listed_set = {rel for rel, _ in listed}
    rows, missing = [], []
    for rel, label in listed:
        if (root / rel).is_file():
            rows.append(_row(rel, label, rel.split("/", 1)[0], split="test"))
        else:
            missing.append(_missing(rel, f"listed in {CELEBDF_LIST} but not on disk"))
    for folder, label in CELEBDF_FOLDERS.items():
        found, problems = scan_folder(root, root / folder, recursive=False)
        missing += [p for p in problems if p["_rel"] not in listed_set]
        for video in found:
            rel = f"{folder}/{video.name}"
            if rel not in listed_set:
                rows.append(_row(rel, label, folder, _group=celebdf_source_clip(rel)))
    return rows, missing


# --- FaceForensics++ -----------------------------------------------------------------------


def _ffpp_folders(root: Path, params: Mapping[str, Any]) -> dict[str, Path]:
    """The videos folder of the originals (key ``real``) and of each chosen method."""
    methods, comp = _ffpp_choice(params)
    folders = {"real": root / "original_sequences" / "youtube" / comp / "videos"}
    folders.update({m: root / "manipulated_sequences" / m / comp / "videos" for m in methods})
    return folders


def _ffpp_required(root: Path, params: Mapping[str, Any]) -> list[tuple[Path, str]]:
    return [(folder, "folder") for folder in _ffpp_folders(root, params).values()]


def ffpp_pairs(split: str) -> list[tuple[str, str]]:
    """The official FaceForensics++ pairs ``(a, b)`` of ``split`` (shipped with dflib)."""
    text = (resources.files("dflib") / "data" / "ffpp_splits" / f"{split}.json").read_text("utf-8")
    return [(str(a), str(b)) for a, b in json.loads(text)]


def _ffpp_collect(root: Path, params: Mapping[str, Any]) -> tuple[list[Row], list[Row]]:
    folders = _ffpp_folders(root, params)
    _, comp = _ffpp_choice(params)
    rows, missing = [], []
    for split in SPLITS:
        for a, b in ffpp_pairs(split):
            # A pair selects both originals and, per method, both swap directions.
            wanted = [("real", t, None) for t in (a, b)]
            wanted += [(m, t, s) for m in folders if m != "real" for t, s in ((a, b), (b, a))]
            for method, target, source in wanted:
                name = target if source is None else f"{target}_{source}"
                video_id = f"original/{name}" if source is None else f"{method}/{name}"
                rel = (folders[method] / f"{name}.mp4").relative_to(root).as_posix()
                if (root / rel).is_file():
                    row = _row(rel, int(source is not None), method, comp, split,
                               target_id=target, source_id=source)
                    rows.append({**row, "video_id": video_id})
                else:
                    missing.append(_missing(rel, f"listed in {split}.json but not on disk",
                                            video_id))
    return rows, missing


# --- DFDC ----------------------------------------------------------------------------------


def _dfdc_metadata(root: Path) -> list[Path]:
    """``metadata.json`` of the root and of every ``dfdc_train_part_*/`` folder."""
    parts = sorted(p / "metadata.json" for p in root.glob("dfdc_train_part_*") if p.is_dir())
    single = root / "metadata.json"
    return ([single] if single.is_file() else []) + parts or [single]


def _dfdc_required(root: Path, params: Mapping[str, Any]) -> list[tuple[Path, str]]:
    return [(meta, "file") for meta in _dfdc_metadata(root)]


# metadata.json's "split" values; DFDC's training parts say "train" for every video,
# which fixes nothing, so a split is taken from the metadata only when it names val or test.
_DFDC_SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def _dfdc_splits(rows: list[Row]) -> None:
    """Give each group (an original and its fakes) the split metadata.json gives its
    original (else its first video), when the metadata names a val or test split at all:
    test and val are kept, train videos are shared between train and val by the seed."""
    given = {r["_given"] for r in rows}
    if not given & {"val", "test"}:
        return
    by_group: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r["_group"] != r["_name"]):  # originals first
        if r["_given"]:
            by_group.setdefault(r["_group"], r["_given"])
    for r in rows:
        split = by_group.get(r["_group"], "train")
        r["split"] = TRAIN_OR_VAL if split == "train" else split


def _dfdc_collect(root: Path, params: Mapping[str, Any]) -> tuple[list[Row], list[Row]]:
    rows, missing = [], []
    for meta in _dfdc_metadata(root):
        try:
            entries = json.loads(_read_text(meta))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta}: not valid JSON ({exc})") from None
        if not isinstance(entries, dict):
            raise DatasetError(f"{meta}: expected a mapping of file name to "
                               '{"label": "FAKE"|"REAL", "original": ...}')
        for name, info in sorted(entries.items()):
            label = ({"FAKE": 1, "REAL": 0}.get(str(info.get("label")).upper())
                     if isinstance(info, dict) else None)
            if label is None:
                raise DatasetError(f"{meta}: entry '{name}' has no label FAKE or REAL ({info!r})")
            rel = (meta.parent / name).relative_to(root).as_posix()
            if not (root / rel).is_file():
                missing.append(_missing(rel, f"listed in {meta.relative_to(root).as_posix()} "
                                             "but not on disk"))
                continue
            original = info.get("original") if label else None
            given = _DFDC_SPLITS.get(str(info.get("split", "")).lower(), "")
            # A fake is grouped with its source video so the two never land in different splits.
            rows.append({**_row(rel, label, "fake" if label else "real", original=original),
                         "_group": original or name, "_name": name, "_given": given})
    _dfdc_splits(rows)
    return rows, missing


# --- plain folder --------------------------------------------------------------------------


def _folder_required(root: Path, params: Mapping[str, Any]) -> list[tuple[Path, str]]:
    return [(root / "real", "folder"), (root / "fake", "folder")]


def _folder_collect(root: Path, params: Mapping[str, Any]) -> tuple[list[Row], list[Row]]:
    rows, missing = [], []
    for sub, label in (("real", 0), ("fake", 1)):
        found, problems = scan_folder(root, root / sub)
        missing += problems
        for video in found:
            rel = video.relative_to(root).as_posix()
            parts = rel.split("/")
            # fake/<method>/x.mp4 names its method; a fake directly under fake/ is just "fake".
            method = "real" if label == 0 else (parts[1] if len(parts) > 2 else "fake")
            rows.append(_row(rel, label, method))
    return rows, missing


# --- the generated demo --------------------------------------------------------------------
# dflib.synth writes it in the Celeb-DF v2 layout, read by the celebdf adapter's code; the
# generation settings are the index section's demo_* fields (dflib.synth_fields).


def _demo_problem(root: Path, index: Mapping[str, Any]) -> str | None:
    from . import synth  # OpenCV: only when the demo is asked for

    return synth.folder_problem(root, synth.profile_settings(index))


def _demo_write(root: Path, index: Mapping[str, Any]) -> pd.DataFrame:
    from . import synth

    return synth.generate(root, **synth.profile_settings(index))


def _demo_wrote(root: Path) -> bool:
    from . import synth

    return (root / synth.PARAMS).is_file()


_CELEBDF = _Adapter(f"Celeb-real/, YouTube-real/, Celeb-synthesis/ and {CELEBDF_LIST}",
                    _celebdf_required, _celebdf_collect,
                    scanned=tuple((f, False) for f in CELEBDF_FOLDERS))

# The adapters in the order of their names, DATASETS (datasets_fields: the profile's
# choices of ``dataset``): celebdf, ffpp, dfdc, folder, demo.
_ADAPTERS: Mapping[str, _Adapter] = dict(zip(DATASETS, (
    _CELEBDF,
    _Adapter("original_sequences/youtube/<compression>/videos/ and "
             "manipulated_sequences/<Method>/<compression>/videos/",
             _ffpp_required, _ffpp_collect, extras=("target_id", "source_id")),
    _Adapter("metadata.json beside the videos, or dfdc_train_part_*/ folders each "
             "with metadata.json", _dfdc_required, _dfdc_collect, extras=("original",),
             draws_test=True),
    _Adapter("real/ and fake/ sub-folders of videos", _folder_required, _folder_collect,
             draws_test=True, scanned=(("real", True), ("fake", True))),
    replace(_CELEBDF, layout="celebdf",
            generator=_Generator(_demo_problem, _demo_write, _demo_wrote)),
), strict=True))


def _adapter(dataset: str) -> _Adapter:
    if dataset not in _ADAPTERS:
        raise DatasetError(f"unknown dataset '{dataset}' (known: {', '.join(_ADAPTERS)})")
    return _ADAPTERS[dataset]


def generates(dataset: str) -> bool:
    """Whether the adapter writes its own videos at ``data_root`` (stage index does, before
    reading them) instead of finding them there."""
    return _adapter(dataset).generator is not None


def layout_of(dataset: str) -> str:
    """The adapter whose layout on disk ``dataset`` reads: its own name, or the layout its
    generator writes."""
    return _adapter(dataset).layout or dataset


def is_generated(dataset: str | None, root: str | Path | None) -> bool:
    """Whether a run of ``dataset`` on ``root`` reads generated videos: its adapter writes
    them, or ``root`` holds a folder a generator wrote (read through the adapter of its
    layout); published figures of a real dataset never stand beside such a run. An unknown
    name (an older run's profile) is not a generator."""
    adapter = _ADAPTERS.get(dataset)
    if adapter is not None and adapter.generator is not None:
        return True
    return root is not None and any(a.generator.wrote(paths.resolve(root))
                                    for a in _ADAPTERS.values() if a.generator is not None)


def layout_problem(dataset: str, root: str | Path, index_params: Mapping[str, Any]) -> str | None:
    """None when root has the dataset's layout, else one line saying what is missing and
    what the layout should be."""
    try:
        adapter = _adapter(dataset)
    except DatasetError as exc:
        return str(exc)
    root = paths.resolve(root)
    for path, kind in [(root, "folder"), *adapter.required(root, index_params)]:
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            what = "not found" if not path.exists() else f"not a {kind}"
            return f"{path}: {kind} {what} ({dataset} expects {adapter.expects})"
    return None


# --- the common steps ----------------------------------------------------------------------


def _assign_splits(videos: pd.DataFrame, fractions: Mapping[str, float],
                   rng: np.random.Generator) -> np.ndarray:
    """Split whole groups into ``fractions`` of the videos, stratified by a group's labels."""
    groups = videos.groupby("_group", sort=True)["label"]
    strata = groups.agg(lambda labels: "".join(sorted(set(map(str, labels)))))
    sizes = groups.size()
    names = list(fractions)
    bounds = np.cumsum([fractions[n] for n in names])
    chosen: dict[Any, str] = {}
    for stratum in sorted(set(strata)):
        members = strata.index[strata == stratum].to_numpy()
        members = members[rng.permutation(len(members))]
        total, done = sizes[members].sum(), 0
        for group in members:
            # A group goes where its middle falls, so single videos split by rounding.
            middle = (done + sizes[group] / 2) / total
            chosen[group] = names[min(int(np.searchsorted(bounds, middle, side="right")),
                                      len(names) - 1)]
            done += sizes[group]
    return videos["_group"].map(chosen).to_numpy()


def _check_unique(videos: pd.DataFrame, root: Path) -> None:
    dup = videos[videos["video_id"].duplicated(keep=False)]
    if len(dup):
        first = dup["video_id"].iloc[0]
        clash = ", ".join(sorted(dup.loc[dup["video_id"] == first, "_rel"]))
        raise DatasetError(f"{root}: duplicate video_id '{first}' ({clash}); video ids are the "
                           "paths without extension and must be unique")


def _manifest_key(rel: str) -> str:
    # NFC so that a manifest written on one system matches names read back on another (macOS: NFD).
    return unicodedata.normalize("NFC", PurePosixPath(rel.strip().replace("\\", "/")).as_posix())


def _apply_manifest(root: Path, videos: pd.DataFrame) -> tuple[pd.DataFrame, list[Row]]:
    """Merge ``manifest.csv`` onto the index by path; return it and the listed-but-absent rows."""
    file = root / MANIFEST
    if not file.is_file():
        return videos, []
    text = _read_text(file)
    try:
        manifest = pd.read_csv(StringIO(text), dtype={"path": str, "label": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{file}: not a readable CSV ({exc})") from None
    if "path" not in manifest.columns:
        raise DatasetError(f"{file}: no 'path' column (paths of the videos relative to {root})")
    reserved = sorted({"video_id", "dataset"} & set(manifest.columns))
    if reserved:
        raise DatasetError(f"{file}: column '{reserved[0]}' is set by the adapter, "
                           "not the manifest")
    manifest = manifest.dropna(subset=["path"])
    manifest.index = manifest["path"].map(_manifest_key)
    if manifest.index.has_duplicates:
        dup = manifest.index[manifest.index.duplicated()][0]
        raise DatasetError(f"{file}: path '{dup}' is listed twice")
    keys = videos["_rel"].map(_manifest_key)
    for column in manifest.columns.drop("path"):
        values = keys.map(manifest[column])
        given = values.notna()
        if column == "label":
            labels = values[given].map(lambda v: _MANIFEST_LABELS.get(str(v).strip().lower()))
            if labels.isna().any():
                bad = labels.index[labels.isna()][0]
                raise DatasetError(f"{file}: label {values[bad]!r} of '{videos.at[bad, '_rel']}' "
                                   "is not 0/1 or real/fake")
            clash = labels.index[labels != videos.loc[labels.index, "label"]]
            if len(clash):
                bad = clash[0]
                raise DatasetError(f"{file}: label {values[bad]} of '{videos.at[bad, '_rel']}' "
                                   f"disagrees with the dataset layout (label "
                                   f"{videos.at[bad, 'label']}; 1 = fake, 0 = real)")
            continue
        if column == "split" and not values[given].isin(SPLITS).all():
            raise DatasetError(f"{file}: split values must be one of {', '.join(SPLITS)}")
        # The manifest's value wins where it has one (method, compression, split, extras).
        videos[column] = values.where(given, videos[column]) if column in videos else values
    absent = [_missing(_manifest_key(rel), f"listed in {MANIFEST} but not on disk")
              for rel in manifest["path"] if not (root / _manifest_key(rel)).is_file()]
    return videos, absent


def _cap(videos: pd.DataFrame, per_class: int, rng: np.random.Generator) -> pd.DataFrame:
    """Keep a seeded subset of at most ``per_class`` videos per (split, label)."""
    if per_class <= 0:
        return videos
    keep: list[Any] = []
    for _, group in videos.sort_values("video_id").groupby(["split", "label"], sort=True):
        index = group.index.to_numpy()
        keep.extend(index if len(index) <= per_class
                    else rng.choice(index, size=per_class, replace=False))
    return videos.loc[sorted(keep)]


def _left_out(root: Path, adapter: _Adapter) -> pd.DataFrame:
    """The files of the adapter's scanned folders that are not videos by their extension
    (hidden entries excepted, as :func:`scan_folder` skips them)."""
    rows = []
    for folder, recursive in adapter.scanned:
        every, _ = scan_folder(root, root / folder, recursive, extensions=None)
        for path in every:
            suffix = path.suffix.lower()
            if suffix not in VIDEO_EXTENSIONS:
                rows.append({"path": str(path), "reason": f"'{suffix}' is not a video extension"
                             if suffix else "no extension"})
    return pd.DataFrame(rows, columns=LEFT_OUT_COLUMNS)


def _finish_missing(root: Path, rows: list[Row]) -> pd.DataFrame:
    missing = pd.DataFrame(rows, columns=["video_id", "_rel", "reason"])
    missing["path"] = missing["_rel"].map(lambda rel: str(root / rel))
    missing = missing.drop_duplicates("path").sort_values(["video_id", "path"])
    return missing[MISSING_COLUMNS].reset_index(drop=True)


def absent_line(result: IndexResult, listed_in: str | Path) -> str | None:
    """One line about the listed videos that are not on disk (None when there are none):
    a partial download shows as one count, not thousands of failures."""
    n_absent = len(result.missing)
    if not n_absent:
        return None
    total = n_absent + len(result.videos)
    return (f"{n_absent:,} of the {total:,} videos the dataset's lists and folders name are "
            f"not on disk: a partial download? (the list: {listed_in})")


def left_out_line(result: IndexResult, listed_in: str | Path) -> str | None:
    """One line about the files of the dataset's folders that are not videos (None when
    there are none): how many, by extension, where they are listed and where the video
    extensions are."""
    if not len(result.left_out):
        return None
    suffixes = result.left_out["path"].map(lambda p: Path(p).suffix.lower() or "(none)")
    counts = ", ".join(f"{ext} {n:,}" for ext, n in suffixes.value_counts().sort_index().items())
    return (f"{len(result.left_out):,} files of the dataset's folders are not videos and are "
            f"left out ({counts}; the list: {listed_in}); the extensions read as videos are "
            "VIDEO_EXTENSIONS in dflib/datasets.py")


def split_sizes(videos: pd.DataFrame) -> str:
    """One line of videos per split and class: ``splits: train 40 (10 real, 30 fake), ...``."""
    parts = []
    for split in SPLITS:
        labels = videos.loc[videos["split"] == split, "label"]
        n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
        parts.append(f"{split} {len(labels):,} ({n_real:,} real, {n_fake:,} fake)")
    return "splits: " + ", ".join(parts)


def check_splits(shared: Mapping[str, Any], index: Mapping[str, Any],
                 result: IndexResult) -> str:
    """The split-size line of an index; what a later stage would stop on (a train split
    that is empty or lacks a class, an empty test split unless ``index.allow_empty_test``)
    raises a one-line DatasetError naming the split and class, the rest warns
    (:func:`split_problems`)."""
    error, notes = split_problems(result.videos, index["allow_empty_test"])
    if error:
        raise DatasetError(f"{shared['data_root']}: {error} ({split_sizes(result.videos)})")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return split_sizes(result.videos)


def split_problems(videos: pd.DataFrame, allow_empty_test: bool
                   ) -> tuple[str | None, list[str]]:
    """``(error, warnings)`` about the splits of an index, each one line.

    Errors are what a later stage would stop on, after hours of extraction: a train split
    that is empty or lacks a class (every detector's training needs both), and an empty
    test split unless ``allow_empty_test``. The rest only weakens the results, so it
    warns: an empty validation split (early stopping follows the training loss), a
    validation split with one class (``threshold_val`` falls back to the fixed threshold,
    ``val_split_auc`` is NaN),
    a test split with one class (its AUC, EER and AP are NaN)."""
    error, notes = None, []
    for split in SPLITS:
        labels = set(videos.loc[videos["split"] == split, "label"].astype(int))
        if not labels:
            if split == "train" or (split == "test" and not allow_empty_test):
                what = ("nothing can be trained" if split == "train" else
                        "nothing would be evaluated (set index.allow_empty_test: true for a "
                        "run that only trains)")
                error = error or f"the {split} split has no videos: {what}"
            elif split == "val":
                notes.append("the val split has no videos: early stopping follows the "
                             "training loss")
        elif len(labels) == 1:
            missing = "real" if 0 not in labels else "fake"
            if split == "train":
                error = error or (f"the train split has no {missing} videos: every detector's "
                                  "training needs both classes")
                continue
            notes.append(f"the {split} split has no {missing} videos: "
                         + ("AUC, EER and AP of the test split are undefined (NaN)"
                            if split == "test" else "threshold_val falls back to the fixed "
                            "threshold and no method is chosen on validation (its AUC is NaN)"))
    return error, notes


def cross_dataset(train: IndexResult, test: IndexResult) -> IndexResult:
    """The cross-dataset protocol: train and val videos of one index, test videos of
    another (e.g. FaceForensics++ c23 for training, Celeb-DF v2's test list for testing).
    Columns only one dataset has are empty ("") for the other's videos."""
    videos = pd.concat([train.videos[train.videos["split"] != "test"],
                        test.videos[test.videos["split"] == "test"]], ignore_index=True)
    extras = [c for c in videos.columns if c not in INDEX_COLUMNS]
    videos[extras] = videos[extras].fillna("")
    duplicated = videos["video_id"][videos["video_id"].duplicated()]
    if len(duplicated):
        raise DatasetError(f"video_id {duplicated.iloc[0]!r} is in both datasets")
    if not (videos["split"] == "test").any():
        raise DatasetError(f"the test dataset ({test.videos['dataset'].iloc[0] if len(test.videos) else 'empty'}) "
                           "has no test videos")
    return IndexResult(videos, pd.concat([train.missing, test.missing], ignore_index=True),
                       pd.concat([train.left_out, test.left_out], ignore_index=True))


def build_index(dataset: str, root: str | Path, *, seed: int, val_fraction: float,
                max_videos_per_class: int, ffpp_methods: Sequence[str],
                ffpp_compression: str) -> IndexResult:
    """Index the videos of ``dataset`` under ``root``, sorted by split then video_id.

    Splits the dataset defines are kept (Celeb-DF's test list, FaceForensics++'s JSON
    files); the other videos are split by ``seed``: Celeb-DF training videos into train and
    ``val_fraction`` val, DFDC and folder videos into train, ``val_fraction`` val and as
    much test (DFDC keeps each fake with its original, and takes the ``split`` of
    ``metadata.json`` when it names val or test videos: those keep it, its training videos
    are split into train and val). Videos a list names but the disk
    lacks are returned in ``missing``.
    """
    adapter = _adapter(dataset)
    params = {"ffpp_methods": list(ffpp_methods), "ffpp_compression": ffpp_compression}
    root = paths.resolve(root)
    problem = layout_problem(dataset, root, params)
    if problem:
        raise DatasetError(problem)
    held_out = 2 * val_fraction if adapter.draws_test else val_fraction
    if val_fraction < 0 or held_out >= 1:
        raise DatasetError(f"val_fraction {val_fraction} leaves no training videos for {dataset}"
                           + (" (val and test each take that share)" if adapter.draws_test else ""))

    rows, missing_rows = adapter.collect(root, params)
    videos = pd.DataFrame(rows, columns=[*_ROW_COLUMNS, *adapter.extras])
    videos["_group"] = videos["video_id"].where(videos["_group"].isna(), videos["_group"])
    videos["label"] = videos["label"].astype("int64")
    _check_unique(videos, root)

    rng = np.random.default_rng(seed)
    free = videos["split"].isna()
    if free.any():
        fractions = {"train": 1 - held_out, "val": val_fraction,
                     "test": val_fraction if adapter.draws_test else 0.0}
        videos.loc[free, "split"] = _assign_splits(videos[free], fractions, rng)
    pool = videos["split"] == TRAIN_OR_VAL
    if pool.any():
        videos.loc[pool, "split"] = _assign_splits(
            videos[pool], {"train": 1 - val_fraction, "val": val_fraction}, rng)
    videos["dataset"] = dataset
    videos["path"] = videos["_rel"].map(lambda rel: str(root / rel))
    videos, absent = _apply_manifest(root, videos)
    videos = _cap(videos, max_videos_per_class, rng)

    order = videos["split"].map({s: i for i, s in enumerate(SPLITS)})
    videos = videos.assign(_order=order).sort_values(["_order", "video_id"])
    extras = [c for c in videos.columns if c not in INDEX_COLUMNS and not c.startswith("_")]
    videos = videos[INDEX_COLUMNS + extras].reset_index(drop=True)
    return IndexResult(videos, _finish_missing(root, missing_rows + absent),
                       _left_out(root, adapter))


def build_profile_index(shared: Mapping[str, Any], index: Mapping[str, Any]) -> IndexResult:
    """The index a validated profile describes (its shared keys and ``index`` section):
    ``dataset`` under ``data_root``, its test split replaced by ``index.test_dataset``'s for
    the cross-dataset protocol. Stage ``index`` and ``dflib check`` both read it here, so a
    list or metadata file that the run would refuse is refused by the check too."""
    options = {"seed": shared["seed"], "val_fraction": index["val_fraction"],
               "max_videos_per_class": index["max_videos_per_class"],
               "ffpp_methods": index["ffpp_methods"],
               "ffpp_compression": index["ffpp_compression"]}
    result = build_index(shared["dataset"], paths.resolve(shared["data_root"]), **options)
    if index["test_dataset"]:
        result = cross_dataset(result, build_index(
            index["test_dataset"], paths.resolve(index["test_data_root"]), **options))
    return result


def _generator_of(profile: config.Profile) -> _Generator | None:
    """The generator of the profile's dataset (None: its videos are found at data_root),
    refusing a cross-dataset test split beside it: a generated dataset has none."""
    shared, index = profile.shared, profile.sections["index"]
    generator = _adapter(shared["dataset"]).generator
    if generator is not None and index["test_dataset"]:
        raise config.ProfileError(
            f"{profile.source}: index.test_dataset: dataset {shared['dataset']} is generated "
            "and has no cross-dataset counterpart; leave index.test_dataset and "
            "index.test_data_root empty")
    return generator


def generate_data(profile: config.Profile) -> None:
    """Stage index's first step: write the profile's dataset at ``data_root`` when its
    adapter generates it (a half-written folder resumes, a video lost from a complete one
    is written again; :func:`check_data_root` says first why a folder cannot take it);
    nothing for a dataset found on disk."""
    generator = _generator_of(profile)
    if generator is not None:
        generator.write(paths.resolve(profile.shared["data_root"]), profile.sections["index"])


def check_data_root(profile: config.Profile) -> None:
    """Refuse a missing or mis-laid dataset folder (and test dataset folder) of a validated
    profile, and any list or metadata file stage index would refuse, with one line naming
    the profile and the key; a folder a generated dataset will be written in is only
    checked for being writable by its generator with the profile's settings (a run killed
    half-way through generation resumes; videos made with other settings are never
    overwritten)."""
    shared, index = profile.shared, profile.sections["index"]
    root = paths.resolve(shared["data_root"])
    generator = _generator_of(profile)
    if generator is not None:
        problems = [("data_root", generator.problem(root, index))]
    else:
        problems = [("data_root", layout_problem(shared["dataset"], root, index))]
        if index["test_dataset"]:
            problems.append(("index.test_data_root", layout_problem(
                index["test_dataset"], paths.resolve(index["test_data_root"]), index)))
    for key, problem in problems:
        if problem:
            raise config.ProfileError(f"{profile.source}: {key}: {problem}")
    if generator is not None:
        return
    try:  # the same reading of lists and metadata as stage index
        build_profile_index(shared, index)
    except DatasetError as exc:
        raise config.ProfileError(f"{profile.source}: {exc}") from None
