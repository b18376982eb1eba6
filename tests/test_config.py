"""Profile validation: every problem is one line naming the key, value or path."""

from __future__ import annotations

import pytest
import yaml

from dflib import config, datasets, paths


@pytest.fixture
def minimal(tmp_path):
    return {"run_name": "t", "dataset": "celebdf", "data_root": str(tmp_path / "data"),
            "index": {"demo_generate": True}}


def test_defaults_fill_missing_keys(minimal):
    profile = config.validate(minimal)
    assert profile.shared["img_size"] == config.SHARED["img_size"].default
    assert profile.sections["faces"]["thresholds"] == [0.6, 0.7, 0.7]
    params = profile.stage_parameters("faces")
    assert params["run_name"] == "t" and params["margin"] == 40


@pytest.mark.parametrize("mutate, needle", [
    (lambda p: p.update(imgsize=3), "unknown key 'imgsize' (did you mean 'img_size'?"),
    (lambda p: p["index"].update(val_fracton=0.1), "unknown key 'index.val_fracton'"),
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
    minimal["index"]["demo_generate"] = False
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


def test_image_size_below_the_backbone_minimum_is_refused(minimal):
    minimal.update(img_size=64, train_cnn={"arch": "xception"})
    with pytest.raises(config.ProfileError, match="img_size: 64 is below the minimum input 71 "
                                                  "of train_cnn.arch 'xception'"):
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


@pytest.mark.parametrize("method", ["cnn/ef0", "cnn/xception/chunk3", "cnn/ef0/boosted_mean",
                                    "c3d", "rnn/bilstm", "triplet/sgd", "facenet/tree"])
def test_robustness_methods_accept_detector_names(minimal, method):
    config.validate({**minimal, "robustness": {"methods": [method]}})


@pytest.mark.parametrize("method", ["svm", "cnn/vgg", "triplet/svm", "rnn/transformer",
                                    "cnn/ef0/boosted_max"])
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
