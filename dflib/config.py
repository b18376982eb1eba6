"""Profiles: the schema of every parameter, and validation before any work starts.

A profile is one YAML file: shared keys at the top level and one section per stage.
Each notebook receives the shared keys plus its own section, flattened, as papermill
parameters; :func:`from_namespace` validates them again inside the notebook so a reader
who edits the parameters cell gets the same one-line errors as ``dflib check``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import yaml

from . import detectors, io, paths
from .datasets_fields import DATASETS, INDEX, RETIRED, check_index
from .devices import DEVICES
from .statistics_fields import EVALUATION
from .faces_fields import FACES, check_faces
from .fields import Field, ProfileError, Stage
from .gradcam_fields import REPORT
from .robustness_fields import ROBUSTNESS
from .synth_fields import DEMO
from .vocabulary import CLASSIFIERS

SHARED: Mapping[str, Field] = MappingProxyType({
    "run_name": Field(str, None, "name of the run folder under outputs_dir"),
    "dataset": Field(str, None, "dataset adapter", choices=DATASETS),
    "data_root": Field(str, None, "dataset folder (relative paths start at the project root)"),
    "outputs_dir": Field(str, "outputs", "where run folders live"),
    "seed": Field(int, 0, "seed of every random choice (NumPy takes seeds below 2**32, and "
                  "chunk models add their number to it)", min=0, max=2**31 - 1),
    "img_size": Field(int, 160, "side of the stored face crops in pixels", min=16, max=1024),
    "frames_per_video": Field(int, 25, "frames sampled per video", min=1, max=10_000),
    "device": Field(str, "auto", "torch device for MTCNN / FaceNet", choices=DEVICES),
})


# Each section's fields are declared by the code that reads them, in a light module beside
# it (``<module>_fields``, see docs/design.md, "Parameters"); the schema only orders them.
# The detector stages, and their order, are the registry's (dflib.detectors): a family's
# stages come where the family stands in it.
STAGES: tuple[Stage, ...] = (
    Stage("index", "00_build_index.ipynb", {**INDEX, **DEMO}, check=check_index),
    Stage("faces", "01_extract_faces.ipynb", FACES, check=check_faces),
    *detectors.STAGES,
    Stage("robustness", "08_compression_robustness.ipynb", ROBUSTNESS, scoring=True),
    Stage("report", "09_results_report.ipynb", REPORT, scoring=True),
)

STAGE_BY_NAME: Mapping[str, Stage] = MappingProxyType({s.name: s for s in STAGES})

# The ``evaluation`` section: how every stage that scores detectors scores them. Its keys
# reach those stages' notebooks with the shared keys (see :meth:`Profile.stage_parameters`).
EVALUATION_SECTION = "evaluation"
SCORING_STAGES = tuple(s.name for s in STAGES if s.scoring)


def stage_fields(stage: str) -> dict[str, Field]:
    """Every parameter a stage's notebook receives: shared keys, the ``evaluation`` keys
    for the stages that score detectors, then the stage's own section."""
    scoring = EVALUATION if stage in SCORING_STAGES else {}
    return {**SHARED, **scoring, **STAGE_BY_NAME[stage].fields}


def _unknown(key: str, allowed: Sequence[str]) -> ProfileError:
    if key.startswith("index.") and key.removeprefix("index.") in RETIRED:
        return ProfileError(f"{key}: {RETIRED[key.removeprefix('index.')]}")
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?" if close else " ("
    return ProfileError(f"unknown key '{key}'{hint} allowed: {', '.join(allowed)})")


def _check_section(prefix: str, values: Mapping[str, Any], fields: Mapping[str, Field],
                   required: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(f"{prefix}{key}", list(fields))
        out[key] = fields[key].check(f"{prefix}{key}", value)
    for key, f in fields.items():
        if key not in out:
            if key in required:
                raise ProfileError(f"missing key '{prefix}{key}' ({f.help})")
            out[key] = f.default
    return out


@dataclass(frozen=True)
class Profile:
    """A validated profile: shared values and one dict per stage."""

    source: str
    shared: Mapping[str, Any]
    sections: Mapping[str, Mapping[str, Any]]

    def stage_parameters(self, stage: str) -> dict[str, Any]:
        """The flat parameters a stage's notebook receives (see :func:`stage_fields`)."""
        scoring = self.sections[EVALUATION_SECTION] if stage in SCORING_STAGES else {}
        return {**self.shared, **scoring, **self.sections[stage]}

    @property
    def run(self) -> paths.RunPaths:
        return paths.RunPaths.of(self.shared["run_name"], self.shared["outputs_dir"])


def validate(raw: Mapping[str, Any], source: str = "<profile>", check_outputs: bool = True,
             stages: Sequence[str] | None = None) -> Profile:
    """Validate a profile mapping; raise :class:`ProfileError` naming the first problem.

    ``stages`` limits the checks that span sections to those stages (a notebook knows only
    its own section); by default every stage is checked. The dataset folder is checked
    next to the adapters that read it (:func:`dflib.datasets.check_data_root`).
    """
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{source}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        shared_raw = {k: v for k, v in raw.items()
                      if k not in STAGE_BY_NAME and k != EVALUATION_SECTION}
        shared = _check_section("", shared_raw, SHARED, required=("run_name", "dataset", "data_root"))
        _check_run_name(shared["run_name"])
        for key in PATH_KEYS:
            _check_path(key, shared[key])
        sections = {}
        for name, fields in [(s.name, s.fields) for s in STAGES] + [(EVALUATION_SECTION,
                                                                       EVALUATION)]:
            section = raw.get(name) or {}
            if not isinstance(section, Mapping):
                raise ProfileError(f"{name}: expected a mapping, got {section!r}")
            sections[name] = _check_section(f"{name}.", section, fields)
        for key, value in (("index.test_data_root", sections["index"]["test_data_root"]),
                           ("train_cnn.weights", sections["train_cnn"]["weights"]),
                           ("train_sbi.weights", sections["train_sbi"]["weights"])):
            _check_path(key, value)
        _check_across(shared, sections, list(STAGE_BY_NAME) if stages is None else stages)
        if check_outputs:
            check_outputs_dir(shared)
    except ProfileError as exc:
        raise ProfileError(f"{source}: {exc}") from None
    return Profile(source, MappingProxyType(shared), MappingProxyType(sections))


NAME_MAX = 255  # bytes of one file or folder name on Linux, macOS and Windows file systems
# --seeds runs each seed in <run_name>-s<seed> (dflib.notebooks.seed_profile).
RUN_NAME_MAX_BYTES = NAME_MAX - len(f"-s{SHARED['seed'].max}")


# Shared keys holding a path (the sections' ones are named where validate checks them).
PATH_KEYS = ("data_root", "outputs_dir")


def _check_path(key: str, value: str) -> None:
    """A path the file system can take: no NUL character, no name longer than NAME_MAX
    (both would stop the first stat of it with a traceback)."""
    if "\0" in value:
        raise ProfileError(f"{key}: {value!r} holds a NUL character")
    for part in Path(value).parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX:
            raise ProfileError(f"{key}: the name {part[:40]!r}... is {size} bytes long; a file "
                               f"or folder name may have at most {NAME_MAX}")


def _check_run_name(name: str) -> None:
    """A run name is one plain folder name under ``outputs_dir``: anything else would write
    elsewhere, or make ``outputs_dir`` itself the run (whose start-up clean-up would then
    delete the temporary files of every other run being written there)."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ProfileError(f"run_name: {name!r} is not a plain folder name (one name under "
                           "outputs_dir, without '/', '\\', '.' or '..'; e.g. 'demo')")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProfileError(f"run_name: {name!r} holds a character that is not Unicode text "
                           "(a lone surrogate)") from None
    if size > RUN_NAME_MAX_BYTES:
        raise ProfileError(f"run_name: {name[:40]!r}... is {size} bytes long; a run folder name "
                           f"may have at most {RUN_NAME_MAX_BYTES} (the file system's "
                           f"{NAME_MAX}, less room for the '-s<seed>' of --seeds)")


def _check_across(shared: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any]],
                  given: Sequence[str]) -> None:
    """Rules that tie keys together (of the sections given): each stage's own
    (``Stage.check``, declared beside its fields), and the detector names of
    ``robustness.methods``, which only the registry knows."""
    if "robustness" in given:
        for i, method in enumerate(sections["robustness"]["methods"]):
            if not detectors.is_method(method):
                raise ProfileError(f"robustness.methods[{i}]: {method!r} is not a detector name "
                                   f"({detectors.GRAMMAR}; classifiers: {', '.join(CLASSIFIERS)})")
    for stage in STAGES:  # the rules each stage declares beside its fields
        problem = stage.check(stage.name, shared, sections[stage.name]) if (
            stage.check is not None and stage.name in given) else None
        if problem:
            raise ProfileError(problem)


def check_outputs_dir(shared: Mapping[str, Any]) -> None:
    """Refuse an ``outputs_dir`` (or run folder) that is a file, or where this user cannot
    create the run folder."""
    run = paths.RunPaths.of(shared["run_name"], shared["outputs_dir"]).root
    existing = next(p for p in (run, *run.parents) if p.exists())
    if not existing.is_dir():
        key = "run_name" if existing == run else "outputs_dir"
        raise ProfileError(f"{key}: {existing}: not a folder (the run folder is {run})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ProfileError(f"outputs_dir: {existing}: not writable by this user (the run "
                           f"folder is {run})")


def load(path: str | Path, check_outputs: bool = True) -> Profile:
    """Read and validate a profile file."""
    path = Path(path)
    try:
        if not path.exists():
            raise ProfileError(f"{path}: profile not found")
        size = path.stat().st_size
    except OSError as exc:  # a folder on the way that this user may not enter
        raise ProfileError(f"{path}: cannot be read ({exc.strerror})") from None
    if not path.is_file():  # a folder, or a device or pipe that would be read without end
        raise ProfileError(f"{path}: not a file (a profile is a YAML file)")
    if size > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path}: {size:,} bytes, too large to be a profile (at most "
                           f"{MAX_PROFILE_BYTES:,}; a profile is a YAML file)")
    try:
        raw = _parse(io.read_text_file(path))
    except io.TextFileError as exc:
        raise ProfileError(f"{exc} (a profile is a YAML file)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(f"{path}: not valid YAML{where}: "
                           f"{exc.problem or exc.context or exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ProfileError(f"{path}: nested too deeply to be a profile") from None
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    return validate(raw or {}, source=str(path), check_outputs=check_outputs)


MAX_PROFILE_BYTES = 1 << 20  # the shipped profiles are 1 to 5 kB
# Values a profile may hold once its aliases are expanded: the shipped ones hold about 150.
# Nested aliases multiply ("billion laughs": nine levels of nine make 10**9 values).
MAX_PROFILE_VALUES = 10_000


def _parse(text: str) -> Any:
    """The YAML document of a profile, refused before it is built when a key is given
    twice, an alias refers to itself or aliases expand past :data:`MAX_PROFILE_VALUES`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, "", [0], set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_nodes(node: yaml.Node, prefix: str, count: list[int], ancestors: set[int]) -> None:
    """Walk the node graph as the built profile would hold it (aliases expanded): a key
    given twice in one mapping (a repeated section is a repeated top-level key) would
    silently keep the last one; ``count`` holds the values seen so far."""
    count[0] += 1
    if count[0] > MAX_PROFILE_VALUES:
        raise ProfileError(f"its aliases expand to more than {MAX_PROFILE_VALUES:,} values (an "
                           "alias bomb?); write the values out")
    if id(node) in ancestors:
        raise ProfileError(f"'{prefix.rstrip('.')}' is an alias of a value that holds it "
                           "(it would be infinite); write the values out")
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_nodes(item, f"{prefix}[{i}].", count, ancestors | {id(node)})
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        line = key_node.start_mark.line + 1
        if key in seen:
            what = "section" if not prefix and key in STAGE_BY_NAME else "key"
            raise ProfileError(f"{what} '{key}' is given twice (lines {seen[key]} and {line}); "
                               "keep one")
        seen[key] = line
        _check_nodes(value_node, f"{key}.", count, ancestors | {id(node)})


def from_namespace(stage: str, namespace: Mapping[str, Any]) -> Profile:
    """Validate a notebook's parameters (its globals) for ``stage``.

    Only the names the schema knows are read, so the notebook's other variables don't
    matter; a stage's parameter missing from the namespace takes its default.
    """
    stage_fields = STAGE_BY_NAME[stage].fields
    raw: dict[str, Any] = {k: namespace[k] for k in SHARED if k in namespace}
    raw[stage] = {k: namespace[k] for k in stage_fields if k in namespace}
    if stage in SCORING_STAGES:
        raw[EVALUATION_SECTION] = {k: namespace[k] for k in EVALUATION if k in namespace}
    return validate(raw, source=f"notebook parameters ({stage})", check_outputs=False,
                    stages=[stage])


def run_settings(run: paths.RunPaths) -> dict[str, Any]:
    """The parameters a run was made with (``profile.yaml``, written by ``dflib run``: shared
    keys and one mapping per stage), stage defaults filling what it lacks; defaults only
    when the run has no ``profile.yaml`` (notebooks run one by one)."""
    target = run.profile_yaml
    text = io.read_text_file(target) if target.is_file() else ""  # ValueError naming it
    try:
        saved = yaml.safe_load(text)
    except yaml.YAMLError:
        saved = None
    # dflib run writes a mapping ended by a newline: anything else is a damaged copy.
    if text and (not text.endswith("\n") or not isinstance(saved, Mapping)):
        raise ValueError(f"{target}: damaged or cut short, not the parameters dflib run "
                         "wrote (copy the run folder again)")
    settings = {k: f.default for k, f in SHARED.items()}
    settings.update({k: v for k, v in (saved or {}).items() if k in SHARED})
    for name, fields in [(s.name, s.fields) for s in STAGES] + [(EVALUATION_SECTION,
                                                                   EVALUATION)]:
        settings[name] = {**{k: f.default for k, f in fields.items()},
                          **((saved or {}).get(name) or {})}
    return settings
