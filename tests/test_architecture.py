"""The shape of dflib (docs/design.md, "Modules"): no import circle, one owner of every
run-folder path, one vocabulary of detectors, names that are not each other's plurals."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from dflib import paths, vocabulary

PACKAGE = Path(vocabulary.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.glob("*.py"))}


def imported_modules(tree: ast.Module) -> set[str]:
    """The dflib modules a module imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dflib."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dflib.")}
    return found & set(MODULES)


def test_no_import_circle_even_through_lazy_imports():
    graph = {m: imported_modules(tree) - {m} for m, tree in MODULES.items()}
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


@pytest.mark.parametrize("leaf,allowed", [("vocabulary", set()), ("io", set()), ("fields", set()),
                                          ("paths", {"io", "vocabulary"}),
                                          ("config", {"io", "paths", "vocabulary", "devices",
                                                      "fields", *FIELD_MODULES})])
def test_leaf_modules_import_only_leaves(leaf, allowed):
    assert imported_modules(MODULES[leaf]) - {leaf} <= allowed


@pytest.mark.parametrize("module", FIELD_MODULES)
def test_each_fields_module_is_light_and_named_after_the_module_that_reads_it(module):
    """``<owner>_fields`` declares the profile fields ``<owner>`` reads (that they reach it:
    tests/test_params_reach.py): it imports only leaves, so dflib.config, which assembles
    the schema from these modules, never imports TensorFlow or torch."""
    assert module.removesuffix("_fields") in MODULES
    assert imported_modules(MODULES[module]) <= {"fields", "vocabulary", "devices"}


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
                    if name.isupper() and isinstance(value, (tuple, dict, type(vocabulary.FAMILIES)))
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
                                     "CLASSIFIERS", "AGGREGATIONS", "ENSEMBLES", "FAMILIES",
                                     "DISPLAY_GROUPS"}


FAMILY_PREFIX = re.compile(rf"^({'|'.join(vocabulary.FAMILIES)})/")


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
    names = set(MODULES)
    assert sorted(n for n in names if f"{n}s" in names or f"{n}es" in names) == []


@pytest.mark.parametrize("method,family,group,frame_level", [
    ("cnn/xception", "cnn", "frame CNN", True), ("cnn/ef0/chunk12", "cnn", "frame CNN", True),
    ("cnn/nasnet_large/boosted_mean", "cnn", "boosted", True), ("conv3d_light", "c3d", "temporal", False),
    ("rnn/temporal_max", "rnn", "temporal", False), ("facenet/svc", "facenet", "FaceNet", True),
    ("triplet/rf", "triplet", "triplet", True)])
def test_method_grammar(method, family, group, frame_level):
    assert vocabulary.is_method(method)
    assert vocabulary.family(method) == family
    assert vocabulary.display_group(method) == group
    assert vocabulary.is_frame_level(method) is frame_level
    stem = vocabulary.method_filename(method)
    assert vocabulary.method_from_filename(f"{stem}.csv") == method


@pytest.mark.parametrize("bad", ["cnn/vgg", "cnn/ef0/chunk", "rnn/transformer", "svm",
                                 "facenet/svm", "c3d/x"])
def test_names_of_no_family_are_refused_in_one_line(bad):
    assert not vocabulary.is_method(bad)
    with pytest.raises(ValueError, match=re.escape(bad)) as info:
        vocabulary.family(bad)
    assert "\n" not in str(info.value) and "cnn/<arch>" in str(info.value)
    assert vocabulary.display_group(bad) == "other"


def test_every_family_names_a_model_module_that_rescores_it():
    for fam in vocabulary.FAMILIES.values():
        tree = MODULES[fam.module]
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        # saved_files: what dflib predict checks is whole before any work (reload.check_saved)
        assert {"score_saved", "saved_files"} <= defined, fam.module


# The rows of docs/design.md, "Modules", top to bottom.
LAYERS = (
    {"vocabulary", "io", "paths", "devices", "torch_first", "steptimes", "__init__", "fields",
     *FIELD_MODULES},
    {"config"},
    {"datasets", "synth", "video", "perturbations"},
    {"evaluation", "summaries"},
    {"mtcnn", "faces", "embeddings", "cluster"},
    {"cnn", "batches", "fitting", "cnn_training", "clips", "cnn_features", "sequences", "triplet",
     "controls", "sbi", "frequency", "identity"},
    {"reload", "robustness", "predict"},
    {"result_tables", "plots", "gradcam", "html_report"},
    {"stages", "notebooks", "bench", "cli", "__main__"},
)


def test_every_module_has_a_layer_and_imports_only_its_own_or_those_above():
    layer_of = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    assert set(layer_of) == set(MODULES)
    below = [f"{m} imports {d}" for m, tree in MODULES.items() for d in sorted(imported_modules(tree))
             if layer_of[d] > layer_of[m]]
    assert below == []
