"""The shape of dflib (docs/design.md, "Modules"; the layers are :data:`dflib.LAYERS`): no
import circle, one owner of every run-folder path, one vocabulary of detectors, one
registry of detector families, names that are not each other's plurals."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import dflib
from dflib import detectors, paths, vocabulary
from dflib.detectors.base import Detector

PACKAGE = Path(dflib.__file__).parent


def module_name(path: Path) -> str:
    """``config``, ``detectors`` (a subpackage's ``__init__``), ``detectors.cnn``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): ast.parse(p.read_text(encoding="utf-8"))
           for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")
            if p.parent != PACKAGE}
FAMILY_MODULES = sorted(f"detectors.{d.__module__.rsplit('.', 1)[1]}"
                        for d in detectors.DETECTORS)


def _package_of(module: str) -> list[str]:
    parts = [] if module == "__init__" else module.split(".")
    return parts if module in PACKAGES else parts[:-1]


def _targets(module: str, node: ast.AST) -> set[str]:
    """The dflib modules one import statement of ``module`` reaches."""
    if isinstance(node, ast.Import):
        names = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("dflib.")]
        return {n for n in names if n in MODULES}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = _package_of(module)[:len(_package_of(module)) - node.level + 1]
    elif (node.module or "").split(".")[0] == "dflib":
        base = []
    else:
        return set()
    stem = (node.module or "").removeprefix("dflib").lstrip(".") if not node.level else (
        node.module or "")
    prefix = ".".join(base + ([stem] if stem else []))
    found = {f"{prefix}.{a.name}".lstrip(".") for a in node.names} & set(MODULES)
    if prefix in MODULES and (not found or len(found) < len(node.names)):
        found.add(prefix)
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                    "typing.TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool, in_class: bool):
    """(statement, inside a method of a class) for every import that runs: the bodies of
    ``if TYPE_CHECKING:`` never do."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function and in_class
        yield from _walk(child, in_function or isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef)), in_class or isinstance(
            child, ast.ClassDef))


def imported_modules(module: str, late_bound: bool | None = False) -> set[str]:
    """The dflib modules a module imports, at its top or inside a function (not under
    ``TYPE_CHECKING``). A family module's methods import its model code when called: those
    late-bound imports are left out (``late_bound=False``), or the only ones (``True``)."""
    found: set[str] = set()
    for node, in_method in _walk(MODULES[module], False, False):
        late = in_method and module in FAMILY_MODULES
        if late_bound is None or late == late_bound:
            found |= _targets(module, node)
    return found - {module}


def test_import_resolution_sees_relative_and_package_imports():
    assert imported_modules("detectors") >= {"detectors.base", "detectors.cnn", "vocabulary"}
    assert "detectors.models.cnn_training" in imported_modules("detectors.cnn", late_bound=True)
    assert "detectors.models.cnn_training" not in imported_modules("detectors.cnn")
    assert "config" not in imported_modules("detectors.base")  # under TYPE_CHECKING only
    assert "detectors" in imported_modules("config")


def test_no_import_circle_even_through_lazy_imports():
    graph = {m: imported_modules(m) for m in MODULES}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, "import circle: " + " -> ".join(
                trail[trail.index(dep):] + [module, dep] if dep in trail else [module, dep])
            if dep not in state:
                visit(dep, trail + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


FIELD_MODULES = sorted(m for m in MODULES if m.endswith("_fields"))


REGISTRY = {"detectors", "detectors.base", *FAMILY_MODULES}


@pytest.mark.parametrize("leaf,allowed", [("vocabulary", set()), ("io", set()), ("fields", set()),
                                          ("paths", {"io", "vocabulary"}),
                                          ("config", {"io", "paths", "vocabulary", "devices",
                                                      "fields", *FIELD_MODULES, *REGISTRY})])
def test_leaf_modules_import_only_leaves(leaf, allowed):
    assert imported_modules(leaf) <= allowed


@pytest.mark.parametrize("module", FIELD_MODULES)
def test_each_fields_module_is_light_and_named_after_the_module_that_reads_it(module):
    """``<owner>_fields`` declares the profile fields ``<owner>`` reads (that they reach it:
    tests/test_params_reach.py): it imports only leaves, so dflib.config, which assembles
    the schema from these modules, never imports TensorFlow or torch."""
    assert module.removesuffix("_fields") in MODULES
    assert imported_modules(module) <= {"fields", "vocabulary", "devices"}


RUN_FOLDERS = {name for name, attr in vars(paths.RunPaths).items()
               if isinstance(attr, property) and name not in ("videos_csv", "absent_csv")} | {
    "root"}


def test_only_paths_composes_run_folder_paths():
    composed = []
    for module, tree in MODULES.items():
        if module == "paths":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                    and isinstance(node.left, ast.Attribute) and node.left.attr in RUN_FOLDERS):
                composed.append(f"dflib/{module}.py:{node.lineno} {ast.unparse(node)}")
    assert composed == []


VOCABULARY_LISTS = {name: value for name, value in vars(vocabulary).items()
                    if name.isupper() and isinstance(value, (tuple, dict, type(detectors.FAMILIES)))
                    and len(value) > 1}


def test_every_vocabulary_list_is_defined_once():
    """No other module assigns a vocabulary name or spells one of its lists out again."""
    # The splits with prediction files are two common words, not a list of the study's own.
    spelled = {frozenset(map(str, v)) for k, v in VOCABULARY_LISTS.items()
               if k != "PREDICTION_SPLITS"}
    again = []
    for module, tree in MODULES.items():
        if module == "vocabulary":
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                again += [f"{module}.{t.id}" for t in targets
                          if isinstance(t, ast.Name) and t.id in VOCABULARY_LISTS]
            # A dict keyed by the members (cnn.BACKBONES, the clip builders) is the model
            # code's registry of them, checked against the list by the model tests.
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                words = [i.value for i in node.elts if isinstance(i, ast.Constant)]
                if len(words) == len(node.elts) > 1 and frozenset(map(str, words)) in spelled:
                    again.append(f"{module}:{node.lineno} {ast.unparse(node)[:60]}")
    assert again == []
    assert set(VOCABULARY_LISTS) >= {"CNN_ARCHS", "CNN_MIN_INPUT", "CLIP_MODELS", "RNN_HEADS",
                                     "CLASSIFIERS", "AGGREGATIONS", "ENSEMBLES", "DISPLAY_GROUPS"}


FAMILY_PREFIX = re.compile(rf"^({'|'.join(detectors.FAMILIES)})/")


def test_method_names_are_formed_only_by_the_vocabulary():
    """f-strings that build ``<family>/...`` names live in dflib.vocabulary alone."""
    formed = []
    for module, tree in MODULES.items():
        if module == "vocabulary":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(
                    node.values[0], ast.Constant) and FAMILY_PREFIX.match(str(node.values[0].value)):
                formed.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    assert formed == []


def test_no_module_is_named_as_another_ones_plural():
    """Among the modules of one package (what ``from . import`` would confuse)."""
    siblings: dict[str, set[str]] = {}
    for m in MODULES:
        package, _, name = m.rpartition(".")
        siblings.setdefault(package, set()).add(name)
    assert sorted(f"{p}.{n}" for p, names in siblings.items() for n in names
                  if f"{n}s" in names or f"{n}es" in names) == []


@pytest.mark.parametrize("method,family,group,frame_level", [
    ("cnn/xception", "cnn", "frame CNN", True), ("cnn/ef0/chunk12", "cnn", "frame CNN", True),
    ("cnn/nasnet_large/boosted_mean", "cnn", "boosted", True), ("conv3d_light", "c3d", "temporal", False),
    ("rnn/temporal_max", "rnn", "temporal", False), ("facenet/svc", "facenet", "FaceNet", True),
    ("triplet/rf", "triplet", "triplet", True)])
def test_method_grammar(method, family, group, frame_level):
    assert detectors.is_method(method)
    assert detectors.family(method) == family
    assert detectors.display_group(method) == group
    assert detectors.is_frame_level(method) is frame_level
    stem = vocabulary.method_filename(method)
    assert vocabulary.method_from_filename(f"{stem}.csv") == method


@pytest.mark.parametrize("bad", ["cnn/vgg", "cnn/ef0/chunk", "rnn/transformer", "svm",
                                 "facenet/svm", "c3d/x"])
def test_names_of_no_family_are_refused_in_one_line(bad):
    assert not detectors.is_method(bad)
    with pytest.raises(ValueError, match=re.escape(bad)) as info:
        detectors.family(bad)
    assert "\n" not in str(info.value) and "cnn/<arch>" in str(info.value)
    assert detectors.display_group(bad) == "other"


def test_each_family_module_exports_one_detector_and_the_registry_lists_them_all():
    """One module per family under dflib/detectors/, named after the family, each exporting
    one object of the one interface; the registry lists exactly those (their model code
    is the subpackage ``detectors.models``)."""
    family_files = sorted(m for m in MODULES if m.count(".") == 1 and m.startswith("detectors.")
                          and m not in ("detectors.base", "detectors.models"))
    assert family_files == FAMILY_MODULES
    for module, d in zip(FAMILY_MODULES, sorted(detectors.DETECTORS,
                                                key=lambda d: d.__module__)):
        assert isinstance(d, Detector), module
        assert module == f"detectors.{d.family.name}"
        exported = [n.targets[0].id for n in MODULES[module].body if isinstance(n, ast.Assign)
                    and isinstance(n.targets[0], ast.Name) and n.targets[0].id.isupper()]
        assert exported == ["DETECTOR"], module
        assert d.rescored_with in detectors.BY_NAME
        for stage in d.joins:
            assert detectors.stage_owner(stage) is not d


def test_no_module_but_the_registry_lists_the_families():
    """The family names are listed nowhere else: every other module asks the registry (a
    literal collection of two or more family names and nothing else would be a second
    list; the display groups share some words with them)."""
    names = set(detectors.FAMILIES)
    listed = []
    for module, tree in MODULES.items():
        if module == "detectors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                words = [i.value for i in items if isinstance(i, ast.Constant)]
                if len(words) == len(items) > 1 and set(words) <= names:
                    listed.append(f"{module}:{node.lineno} {ast.unparse(node)[:60]}")
    assert listed == []


def test_family_modules_are_light_and_their_late_bound_imports_reach_model_code_only():
    """A family module's top imports only leaves (so config and ``dflib check`` read the
    registry without TensorFlow or torch); its methods import the family's model code,
    which sits below the registry: never the running layer."""
    leaves = layer_members("leaves")
    running = layer_members("running")
    for module in FAMILY_MODULES + ["detectors.base"]:
        assert imported_modules(module) <= leaves | {"detectors.base"}, module
        assert not imported_modules(module, late_bound=True) & running, module


def test_detector_stages_come_in_registry_order():
    from dflib import config

    names = [s.name for s in config.STAGES]
    assert names[2:2 + len(detectors.STAGES)] == [s.name for s in detectors.STAGES]
    assert names[:2] == ["index", "faces"] and names[-2:] == ["robustness", "report"]
    assert len(set(names)) == len(names)
    assert len({s.notebook for s in config.STAGES}) == len(names)


def test_bench_is_out_of_the_runtime_path():
    """Only the command line's ``bench`` command imports dflib.bench, inside its function."""
    importers = {m for m in MODULES if "bench" in imported_modules(m, late_bound=None)}
    assert importers == {"cli"}
    top = {t for node in MODULES["cli"].body if isinstance(node, (ast.Import, ast.ImportFrom))
           for t in _targets("cli", node)}
    assert "bench" not in top


def layer_members(name: str) -> set[str]:
    """The modules of one row of :data:`dflib.LAYERS`, placeholders expanded."""
    (row,) = [modules for layer, modules, _ in dflib.LAYERS if layer == name]
    expand = {"<module>_fields": FIELD_MODULES, "detectors.<family>": FAMILY_MODULES}
    return {m for entry in row for m in expand.get(entry, [entry])}


def test_every_module_has_a_layer_and_imports_only_its_own_or_those_above():
    layer_of = {m: i for i, (name, _, _) in enumerate(dflib.LAYERS) for m in layer_members(name)}
    assert set(layer_of) == set(MODULES)
    below = [f"{m} imports {d}" for m in MODULES for d in sorted(imported_modules(m))
             if layer_of[d] > layer_of[m]]
    assert below == []


def test_docs_point_to_the_one_layer_table():
    design = (PACKAGE.parent / "docs" / "design.md").read_text(encoding="utf-8")
    assert "dflib.LAYERS" in design
    assert "| leaves |" not in design  # the table lives in dflib/__init__.py only


def test_the_registry_and_the_profile_load_no_model_library():
    """``dflib check`` reads the registry through config: importing both loads neither
    TensorFlow, Keras nor torch (the family modules import their model code when called)."""
    import subprocess
    import sys

    code = ("import sys, dflib.config, dflib.detectors; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
