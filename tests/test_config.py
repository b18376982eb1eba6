"""Profile validation: every problem is one line naming the key, value or path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from dflib import config, datasets, paths


@pytest.fixture
def minimal(tmp_path):
    return {"run_name": "t", "dataset": "demo", "data_root": str(tmp_path / "data"),
            "index": {}}


def test_defaults_fill_missing_keys(minimal):
    profile = config.validate(minimal)
    assert profile.shared["img_size"] == config.SHARED["img_size"].default
    assert profile.sections["faces"]["thresholds"] == [0.6, 0.7, 0.7]
    params = profile.stage_parameters("faces")
    assert params["run_name"] == "t" and params["margin"] == 40


@pytest.mark.parametrize("mutate, needle", [
    (lambda p: p.update(imgsize=3), "unknown key 'imgsize' (did you mean 'img_size'?"),
    (lambda p: p["index"].update(val_fracton=0.1), "unknown key 'index.val_fracton'"),
    # The key that switched the demo on before it was an adapter: said what replaced it.
    (lambda p: p["index"].update(demo_generate=True),
     "index.demo_generate: removed: the generated demo dataset is a dataset adapter now; "
     "write 'dataset: demo'"),
    (lambda p: p.update(faces={"marign": 3}), "did you mean 'margin'?"),
    (lambda p: p.update(seed="seven"), "seed: expected int, got str 'seven'"),
    (lambda p: p.update(seed=True), "seed: expected int, got bool"),
    (lambda p: p.update(dataset="celeb"), "dataset: 'celeb' is not allowed (allowed: celebdf, ffpp"),
    (lambda p: p.update(img_size=8), "img_size: 8 is below the minimum 16"),
    (lambda p: p.update(faces={"thresholds": [0.6, 0.7]}), "expected a list of 3 values"),
    (lambda p: p.update(faces={"thresholds": [0.6, 0.7, 2]}), "faces.thresholds[2]: 2.0 is above"),
    (lambda p: p["index"].update(ffpp_methods=["Neural"]), "'Neural' is not allowed"),
    (lambda p: p.pop("run_name"), "missing key 'run_name'"),
    (lambda p: p.update(faces=[1, 2]), "faces: expected a mapping"),
    (lambda p: p.update(train_cnn={"epochs": -1}), "train_cnn.epochs: -1 is below the minimum 1"),
    (lambda p: p.update(robustness={"crfs": [23, 52]}), "robustness.crfs[1]: 52 is above the maximum 51"),
    (lambda p: p.update(train_cnn={"arch": "vgg"}), "train_cnn.arch: 'vgg' is not allowed (allowed: xception"),
    (lambda p: p.update(evaluation={"threshold_rule": "f1"}),
     "evaluation.threshold_rule: 'f1' is not allowed (allowed: fixed, eer, youden)"),
    (lambda p: p.update(evaluation={"bootstrap": 10}), "unknown key 'evaluation.bootstrap'"),
])
def test_bad_values_are_named(minimal, mutate, needle):
    mutate(minimal)
    with pytest.raises(config.ProfileError) as err:
        config.validate(minimal, source="p.yaml")
    message = str(err.value)
    assert message.startswith("p.yaml: ") and needle in message
    assert "\n" not in message


def test_int_is_accepted_for_float(minimal):
    minimal["index"]["val_fraction"] = 0
    assert config.validate(minimal).sections["index"]["val_fraction"] == 0.0


def test_missing_data_root_is_refused(minimal, tmp_path):
    minimal["dataset"] = "celebdf"  # read as found, not generated
    profile = config.validate(minimal)  # the schema is fine; the folder is checked apart
    with pytest.raises(config.ProfileError, match=r"data_root: .*data"):
        datasets.check_data_root(profile)


def test_load_reports_yaml_and_missing_file(tmp_path):
    with pytest.raises(config.ProfileError, match="profile not found"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_name: [unclosed\n")
    with pytest.raises(config.ProfileError, match="not valid YAML"):
        config.load(bad)


@pytest.mark.parametrize("profile", sorted(paths.PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_profiles_are_valid(profile):
    # Real-data profiles point at folders users provide, so only the schema is checked here.
    config.load(profile)


def test_from_namespace_reads_only_known_names(minimal):
    namespace = {**{k: v for k, v in minimal.items() if k != "index"}, "margin": 7,
                 "unrelated_variable": object()}
    profile = config.from_namespace("faces", namespace)
    assert profile.sections["faces"]["margin"] == 7


def test_from_namespace_validates(minimal):
    namespace = {**{k: v for k, v in minimal.items() if k != "index"}, "sampling": "random"}
    with pytest.raises(config.ProfileError, match="sampling: 'random' is not allowed"):
        config.from_namespace("faces", namespace)


def test_profile_round_trips_through_yaml(minimal, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(minimal))
    assert config.load(path).shared["run_name"] == "t"


@pytest.mark.parametrize("stage", ["train_cnn", "train_sbi"])
def test_image_size_below_the_backbone_minimum_is_refused(minimal, stage):
    minimal.update({"img_size": 64, "train_cnn": {"arch": "ef0"}, stage: {"arch": "xception"}})
    with pytest.raises(config.ProfileError, match="img_size: 64 is below the minimum input 71 "
                                                  f"of {stage}.arch 'xception'"):
        config.validate(minimal)


def test_margin_must_fit_in_the_crop(minimal):
    minimal.update(img_size=64, faces={"margin": 64}, train_cnn={"arch": "ef0"})
    with pytest.raises(config.ProfileError, match="faces.margin: 64 must be below img_size 64"):
        config.validate(minimal)


def test_conv3d_diff_needs_two_faces_per_clip(minimal):
    minimal.update(train_c3d={"models": ["conv3d_diff"], "clip_len": 1})
    with pytest.raises(config.ProfileError, match="train_c3d.clip_len: conv3d_diff subtracts "
                                                  "consecutive faces, so it needs at least 2"):
        config.validate(minimal)
    config.validate({**minimal, "train_c3d": {"models": ["c3d"], "clip_len": 1}})


@pytest.mark.parametrize("key", ["classifiers", "c"])
def test_the_frequency_stage_needs_a_classifier_and_a_c_to_try(minimal, key):
    minimal.update(train_frequency={key: []})
    with pytest.raises(config.ProfileError, match=f"train_frequency.{key}: name at least one"):
        config.validate(minimal)
    minimal.update(train_frequency={"c": 0.01})  # the single value of profiles before lists
    with pytest.raises(config.ProfileError, match="train_frequency.c: expected list, got float"):
        config.validate(minimal)


@pytest.mark.parametrize("method", ["cnn/ef0", "cnn/xception/chunk3", "cnn/ef0/boosted_mean",
                                    "cnn/ef0/sbi", "c3d", "rnn/bilstm", "triplet/sgd", "facenet/tree"])
def test_robustness_methods_accept_detector_names(minimal, method):
    config.validate({**minimal, "robustness": {"methods": [method]}})


@pytest.mark.parametrize("method", ["svm", "cnn/vgg", "triplet/svm", "rnn/transformer",
                                    "cnn/ef0/boosted_max", "cnn/ef0/sbi/chunk1"])
def test_robustness_methods_refuse_other_names_up_front(minimal, method):
    with pytest.raises(config.ProfileError, match=r"robustness.methods\[0\]: .* is not a "
                                                  r"detector name"):
        config.validate({**minimal, "robustness": {"methods": [method]}})


@pytest.mark.parametrize("text, needle", [
    ("run_name: t\nfaces:\n  margin: 3\n  margin: 5\n",
     "key 'faces.margin' is given twice (lines 3 and 4)"),
    ("run_name: t\nfaces:\n  margin: 3\ntrain_cnn:\n  epochs: 1\nfaces:\n  sampling: even\n",
     "section 'faces' is given twice (lines 2 and 6)"),
    ("run_name: t\nseed: 1\nseed: 2\n", "key 'seed' is given twice (lines 2 and 3)"),
    ("run_name: t\nfaces:\n  margin: [1, 2\n  sampling: even\n",
     "not valid YAML at line 4, column 11: expected ',' or ']'"),
    ("run_name: t\nfaces:\n\tmargin: 3\n", "not valid YAML at line 3, column 1: found character"),
])
def test_a_profile_that_means_something_else_than_it_says_is_refused(tmp_path, text, needle):
    """A duplicated key or repeated section would silently keep the last one; a syntax
    error keeps PyYAML's line and column."""
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(config.ProfileError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["a/b", "../x", "/tmp/run", "", ".", "..", "a\\b"])
def test_run_name_is_one_plain_folder_name(minimal, name):
    """Anything else escapes outputs_dir or makes it the run folder itself."""
    minimal["run_name"] = name
    with pytest.raises(config.ProfileError) as err:
        config.validate(minimal, source="p.yaml")
    assert str(err.value).startswith(f"p.yaml: run_name: {name!r} is not a plain folder name")
    minimal["run_name"] = "celebdf-2026_run.1"
    assert config.validate(minimal).run.root.name == "celebdf-2026_run.1"


def test_evaluation_keys_reach_the_scoring_stages_only(minimal):
    minimal["evaluation"] = {"threshold_rule": "youden", "bootstrap_resamples": 50}
    profile = config.validate(minimal)
    assert profile.sections["evaluation"]["confidence"] == 0.95
    for stage in config.STAGES:
        params = profile.stage_parameters(stage.name)
        assert set(params) == set(config.stage_fields(stage.name))
        assert ("threshold_rule" in params) == (stage.name in config.SCORING_STAGES)
    assert profile.stage_parameters("report")["threshold_rule"] == "youden"
    # a notebook's parameters carry them back into the same section
    again = config.from_namespace("train_rnn", profile.stage_parameters("train_rnn"))
    assert again.sections["evaluation"]["bootstrap_resamples"] == 50


def test_evaluation_keys_collide_with_no_other_parameter():
    names = [k for s in config.STAGES for k in s.fields] + list(config.SHARED)
    assert not set(config.EVALUATION) & set(names)


# --------------------------------------------------------------------------- users' text

PROFILE_TEXT = "run_name: café\ndataset: celebdf\ndata_root: data\nseed: 3\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
                                      "utf-32"])
def test_a_profile_with_a_byte_order_mark_is_read_as_meant(tmp_path, encoding):
    """Windows editors save UTF-8 with a mark and "Unicode" as UTF-16 with one."""
    raw = PROFILE_TEXT.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be"):  # these codecs write no mark of their own
        raw = "\ufeff".encode(encoding) + raw
    path = tmp_path / "p.yaml"
    path.write_bytes(raw)
    profile = config.load(path, check_outputs=False)
    assert (profile.shared["run_name"], profile.shared["seed"]) == ("café", 3)


@pytest.mark.parametrize("raw, needle", [
    (PROFILE_TEXT.encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 1"),
    (PROFILE_TEXT.encode("utf-16-le"), "holds NUL characters, not UTF-8 text"),
])
def test_a_profile_not_in_utf8_is_one_line_naming_it(tmp_path, raw, needle):
    path = tmp_path / "p.yaml"
    path.write_bytes(raw)
    with pytest.raises(config.ProfileError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_profile_without_read_permission_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_TEXT, encoding="utf-8")
    if os.geteuid() != 0:  # root reads it anyway: the denial is simulated below as well
        path.chmod(0)
        with pytest.raises(config.ProfileError, match=f"{path}: cannot be read"):
            config.load(path)
        path.chmod(0o644)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(config.ProfileError, match=f"{path}: cannot be read \\(Permission denied\\)"):
        config.load(path)


# Nine levels of nine aliases: 10**9 strings once expanded, a few hundred bytes of YAML.
ALIAS_BOMB = "robustness:\n  methods: &l9 [" + ",".join(["*l8"] * 9) + "]\n"
for _level in range(8, 0, -1):
    ALIAS_BOMB = (f"l{_level}: &l{_level} [" + ",".join([f"*l{_level - 1}"] * 9) + "]\n"
                  + ALIAS_BOMB)
ALIAS_BOMB = "l0: &l0 lol\n" + ALIAS_BOMB


@pytest.mark.parametrize("text, needle", [
    (ALIAS_BOMB, "its aliases expand to more than 10,000 values (an alias bomb?)"),
    ("faces: &f\n  thresholds: *f\n", "'faces.thresholds' is an alias of a value that holds it"),
    ("robustness:\n  crfs: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
])
def test_a_profile_whose_aliases_or_nesting_never_end_is_refused_at_once(tmp_path, text, needle):
    """Checked on the node graph before anything is built; before, the duplicate-key walk
    expanded every alias (10**9 values: no end in sight) or recursed without end."""
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_TEXT + text, encoding="utf-8")
    with pytest.raises(config.ProfileError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_float_written_as_yaml_1_2_writes_it_is_a_float(tmp_path):
    """PyYAML reads YAML 1.1, where 3e-4 (no dot) is a string; the user means a float."""
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_TEXT.replace("café", "1e3") + "train_triplet:\n  learning_rate: "
                    "3e-4\n  margin: 1E0\nfaces:\n  thresholds: [6e-1, .7, 7E-1]\n",
                    encoding="utf-8")
    profile = config.load(path, check_outputs=False)
    assert profile.sections["train_triplet"]["learning_rate"] == 3e-4
    assert profile.sections["train_triplet"]["margin"] == 1.0
    assert profile.sections["faces"]["thresholds"] == [0.6, 0.7, 0.7]
    assert profile.shared["run_name"] == "1e3"  # a string field keeps what was written


@pytest.mark.parametrize("value, needle", [
    (".nan", "train_triplet.margin: nan is not a finite number"),
    ("1e400", "train_triplet.margin: inf is not a finite number"),
    ("3e-4x", "train_triplet.margin: expected float, got str '3e-4x'"),
])
def test_a_float_key_refuses_what_is_not_a_finite_number(tmp_path, value, needle):
    """NaN passes every min and max comparison; without this it reached training."""
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_TEXT + f"train_triplet:\n  margin: {value}\n", encoding="utf-8")
    with pytest.raises(config.ProfileError, match=re.escape(needle)):
        config.load(path, check_outputs=False)


def test_a_run_name_longer_than_a_folder_name_may_be_is_refused(minimal):
    """The file system takes 255 bytes a name, less the -s<seed> of --seeds; non-ASCII
    letters take two bytes and more."""
    room = config.RUN_NAME_MAX_BYTES
    minimal["run_name"] = "r" * room
    assert config.validate(minimal).shared["run_name"] == "r" * room
    for name in ("r" * (room + 1), "é" * (room // 2 + 1)):
        minimal["run_name"] = name
        with pytest.raises(config.ProfileError, match=f"run_name: .* is {len(name.encode())} "
                                                      f"bytes long; .* at most {room}"):
            config.validate(minimal)


def test_a_seed_numpy_cannot_take_is_refused(minimal):
    top = config.SHARED["seed"].max
    assert config.validate({**minimal, "seed": top}).shared["seed"] == top
    for seed in (top + 1, 2**32, 2**64):
        with pytest.raises(config.ProfileError, match=f"seed: {seed} is above the maximum"):
            config.validate({**minimal, "seed": seed})


@pytest.mark.parametrize("key", ["data_root", "outputs_dir", "index.test_data_root",
                                 "train_cnn.weights"])
@pytest.mark.parametrize("bad, needle", [("x" * 256, "is 256 bytes long; a file or folder name "
                                                     "may have at most 255"),
                                         ("a\0b", "holds a NUL character")])
def test_a_path_the_file_system_cannot_take_is_refused(minimal, tmp_path, key, bad, needle):
    """Before, the first look at such a path (dflib check's) raised OSError or ValueError."""
    value = str(tmp_path / bad / "data")
    if "." in key:
        section, leaf = key.split(".")
        minimal.setdefault(section, {})[leaf] = value
        if leaf == "test_data_root":
            minimal.update(dataset="ffpp", index={"test_dataset": "celebdf",
                                                  "test_data_root": value})
    else:
        minimal[key] = value
    with pytest.raises(config.ProfileError) as err:
        config.validate(minimal, source="p.yaml")
    assert str(err.value).startswith(f"p.yaml: {key}: ") and needle in str(err.value)


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.mkdir(), "not a file (a profile is a YAML file)"),
    (lambda p: os.mkfifo(p), "not a file (a profile is a YAML file)"),
    (lambda p: p.write_bytes(b"# " + b"x" * config.MAX_PROFILE_BYTES), "too large to be a profile"),
])
def test_a_profile_path_that_is_no_profile_file_is_one_line(tmp_path, make, needle):
    """A folder, a pipe (read without end before) or a video given by mistake."""
    path = tmp_path / "p.yaml"
    make(path)
    with pytest.raises(config.ProfileError, match=f"^{re.escape(str(path))}: .*{re.escape(needle)}"):
        config.load(path)
