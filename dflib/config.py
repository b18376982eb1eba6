"""Profiles: the schema of every parameter, and validation before any work starts.

A profile is one YAML file: shared keys at the top level and one section per stage.
Each notebook receives the shared keys plus its own section, flattened, as papermill
parameters; :func:`from_namespace` validates them again inside the notebook so a reader
who edits the parameters cell gets the same one-line errors as ``dflib check``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import yaml

from . import paths
from .devices import DEVICES
from .vocabulary import (AGGREGATIONS, CLASSIFIERS, CLIP_MODELS, CNN_ARCHS, CNN_MIN_INPUT,
                         GRAMMAR, RNN_HEADS, is_method)


class ProfileError(ValueError):
    """A profile problem, phrased as one line naming the key, value or path."""


@dataclass(frozen=True)
class Field:
    """One parameter: its type, default, allowed values or range, and meaning."""

    kind: type | tuple[type, ...]
    default: Any
    help: str
    choices: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None
    item: type | None = None  # element type of a list
    length: int | None = None  # exact list length

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` coerced to the field's type, or raise :class:`ProfileError`."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ProfileError(f"{key}: expected {names}, got {type(value).__name__} {value!r}")
        if isinstance(value, list):
            if self.length is not None and len(value) != self.length:
                raise ProfileError(f"{key}: expected a list of {self.length} values, got {value!r}")
            if self.item is not None:
                value = [Field(self.item, None, "", choices=self.choices, min=self.min,
                               max=self.max).check(f"{key}[{i}]", v) for i, v in enumerate(value)]
            return value
        if self.choices is not None and value not in self.choices:
            raise ProfileError(f"{key}: {value!r} is not allowed (allowed: "
                               f"{', '.join(map(str, self.choices))})")
        if self.min is not None and value < self.min:
            raise ProfileError(f"{key}: {value!r} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ProfileError(f"{key}: {value!r} is above the maximum {self.max}")
        return value


DATASETS = ("celebdf", "ffpp", "dfdc", "folder")
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
COMPRESSIONS = ("c0", "c23", "c40")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")

SHARED: Mapping[str, Field] = MappingProxyType({
    "run_name": Field(str, None, "name of the run folder under outputs_dir"),
    "dataset": Field(str, None, "dataset adapter", choices=DATASETS),
    "data_root": Field(str, None, "dataset folder (relative paths start at the project root)"),
    "outputs_dir": Field(str, "outputs", "where run folders live"),
    "seed": Field(int, 0, "seed of every random choice", min=0),
    "img_size": Field(int, 160, "side of the stored face crops in pixels", min=16, max=1024),
    "frames_per_video": Field(int, 25, "frames sampled per video", min=1, max=10_000),
    "device": Field(str, "auto", "torch device for MTCNN / FaceNet", choices=DEVICES),
})


@dataclass(frozen=True)
class Stage:
    """A stage of the study: its notebook and the parameters of its profile section."""

    name: str
    notebook: str
    fields: Mapping[str, Field] = field(default_factory=dict)


STAGES: tuple[Stage, ...] = (
    Stage("index", "00_build_index.ipynb", {
        "val_fraction": Field(float, 0.2, "share of training videos held out for validation",
                              min=0.0, max=0.9),
        "max_videos_per_class": Field(int, 0, "cap on videos per split and label (0: all)",
                                      min=0),
        "ffpp_methods": Field(list, ["NeuralTextures"], "FaceForensics++ manipulations",
                              item=str, choices=FFPP_METHODS),
        "ffpp_compression": Field(str, "c40", "FaceForensics++ compression",
                                  choices=COMPRESSIONS),
        "test_dataset": Field(str, "", "cross-dataset protocol: take the test videos from "
                              "this dataset's test split (empty: the dataset's own)",
                              choices=("", *DATASETS)),
        "test_data_root": Field(str, "", "folder of test_dataset"),
        "allow_empty_test": Field(bool, False, "the run only trains: an empty test split is "
                                  "not an error (check and stage index refuse it otherwise)"),
        "demo_generate": Field(bool, False, "write the demo dataset to data_root when missing"),
        "demo_identities": Field(int, 6, "demo: number of identities", min=2, max=64),
        "demo_real_per_identity": Field(int, 4, "demo: real videos per identity", min=1),
        "demo_fake_per_identity": Field(int, 10, "demo: fake videos per identity", min=1),
        "demo_frames": Field(int, 32, "demo: frames per video", min=4),
        "demo_width": Field(int, 320, "demo: frame width in pixels", min=96),
        "demo_height": Field(int, 240, "demo: frame height in pixels", min=96),
        "demo_test_fraction": Field(float, 0.3, "demo: share of the fakes of each identity in the "
                                    "test list", min=0.01, max=0.99),
        "demo_test_fraction_real": Field(float, 0.3, "demo: share of the real videos of each "
                                         "identity in the test list", min=0.01, max=0.99),
    }),
    Stage("faces", "01_extract_faces.ipynb", {
        "sampling": Field(str, "first", "which frames: first N (paper), N evenly spaced, every k-th",
                          choices=("first", "even", "every_k")),
        "every_k": Field(int, 5, "step of the every_k sampling", min=1),
        "margin": Field(int, 40, "MTCNN margin around the box, in pixels of the final crop "
                         "(facenet-pytorch's convention)", min=0),
        "min_face_size": Field(int, 40, "smallest face to find, in pixels of the frame", min=8),
        "thresholds": Field(list, [0.6, 0.7, 0.7], "MTCNN P/R/O-net thresholds", item=float,
                            min=0.0, max=1.0, length=3),
        "factor": Field(float, 0.709, "MTCNN image-pyramid scale factor", min=0.1, max=0.95),
        "selection": Field(str, "largest", "which face to keep when several are found",
                           choices=("largest", "probability")),
        "multi_face": Field(str, "single", "frames with several faces: single scores the face "
                            "chosen by selection; max also stores every face at least half "
                            "the size of the largest and scores a frame by its most fake face "
                            "(training and clip models use the chosen face)",
                            choices=("single", "max")),
        "crop": Field(str, "square", "crop geometry: a square around the face centre (square, "
                      "no distortion) or the box plus margin stretched to a square (stretch, "
                      "facenet-pytorch and the paper)", choices=("square", "stretch")),
        "detect_max_side": Field(int, 320, "coarse detection pass on frames downscaled to this "
                                 "long side, for faces of 20 detector pixels and up; frames where "
                                 "it finds none are searched at full resolution (0: full "
                                 "resolution only)", min=0),
        "redetect_every": Field(int, 5, "search every n-th sampled frame in full; the frames "
                                "between confirm its faces with MTCNN's R- and O-nets and are "
                                "searched in full where none is confirmed (1: every frame)",
                                min=1),
        "batch_size": Field(int, 32, "frames per MTCNN call", min=1),
        "workers": Field(int, 0, "Dask workers across videos (0: in this process)", min=0),
        "scheduler": Field(str, "", "Dask scheduler address; empty starts a local cluster"),
    }),
    Stage("train_cnn", "02_train_cnn.ipynb", {
        "arch": Field(str, "xception", "frame CNN backbone (nasnet is NASNetMobile; the original "
                      "study's nasnet is NASNetLarge, nasnet_large here)", choices=CNN_ARCHS),
        "weights": Field(str, "imagenet", "backbone weights: imagenet, none, or a weights file"),
        "epochs": Field(int, 50, "maximum epochs per chunk model", min=1),
        "batch_size": Field(int, 32, "faces per training batch", min=1),
        "learning_rate": Field(float, 0.002, "Nadam learning rate", min=1e-7, max=1.0),
        "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
        "chunks": Field(int, 0, "balanced chunks: 0 is n_majority // n_minority (the paper), "
                        "1 is one model on everything", min=0),
        "class_weight": Field(bool, False, "weight classes by frequency (single-model runs)"),
        "augment": Field(bool, True, "the paper's augmentation (rotation, zoom, shift, shear, flip)"),
        "dropout": Field(float, 0.5, "dropout before the softmax", min=0.0, max=0.95),
        "workers": Field(int, 0, "Dask workers training chunk models in parallel, one chunk "
                         "each (0: one after the other in this process)", min=0),
        "scheduler": Field(str, "", "Dask scheduler address for chunk training; empty starts "
                           "a local cluster of `workers` processes"),
        "bn_recalibration_batches": Field(int, 16, "training batches that re-estimate the "
                                          "BatchNorm statistics before each validation "
                                          "(0 keeps the moving averages of Keras)", min=0),
    }),
    Stage("evaluate_cnn", "03_evaluate_cnn.ipynb", {
        "aggregation": Field(str, "mean", "frame scores to a video score",
                             choices=AGGREGATIONS),
        "threshold": Field(float, 0.5, "fake if the score is above this", min=0.0, max=1.0),
        "tsne_max_points": Field(int, 2000, "faces drawn in the t-SNE figures", min=10),
    }),
    Stage("train_c3d", "04_train_c3d.ipynb", {
        "models": Field(list, ["c3d", "conv3d"], "3D CNNs: c3d (classic C3D), conv3d (the "
                        "original study's conv3d_model) and conv3d_light (a light variant)",
                        item=str, choices=CLIP_MODELS),
        "clip_len": Field(int, 16, "consecutive sampled faces per clip; shorter videos repeat "
                          "their last face", min=1),
        "clip_size": Field(int, 112, "crop side; faces are resized to 128x171 scaled by "
                           "clip_size/112 first", min=8),
        "epochs": Field(int, 15, "maximum epochs per model", min=1),
        "batch_size": Field(int, 32, "clips per batch", min=1),
        "optimizer": Field(str, "sgd", "sgd (Nesterov momentum, as C3D was trained) or adam",
                           choices=("sgd", "adam")),
        "learning_rate": Field(float, 0.005, "learning rate of the optimizer", min=1e-7,
                               max=1.0),
        "momentum": Field(float, 0.9, "SGD momentum", min=0.0, max=0.999),
        "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
        "dropout": Field(float, 0.5, "dropout after each fully connected layer", min=0.0,
                         max=0.95),
        "class_weight": Field(bool, True, "weight classes by their share of training clips"),
        "bn_recalibration_batches": Field(int, 8, "training batches that re-estimate the "
                                          "BatchNorm statistics before each validation "
                                          "(models with BatchNorm; 0 keeps Keras' moving "
                                          "averages)", min=0),
    }),
    Stage("train_rnn", "05_train_rnn.ipynb", {
        "models": Field(list, list(RNN_HEADS), "recurrent heads on the frame CNN features",
                        item=str, choices=RNN_HEADS),
        "seq_len": Field(int, 25, "first faces per video; shorter videos are padded and masked",
                         min=1),
        "epochs": Field(int, 15, "maximum epochs per head", min=1),
        "batch_size": Field(int, 32, "videos per batch", min=1),
        "learning_rate": Field(float, 0.001, "Adam learning rate", min=1e-7, max=1.0),
        "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
        "dropout": Field(float, 0.5, "dropout before the softmax", min=0.0, max=0.95),
        "class_weight": Field(bool, True, "weight classes by their share of training videos"),
    }),
    Stage("embed_faces", "06_embed_faces.ipynb", {
        "pretrained": Field(str, "vggface2", "InceptionResnetV1 weights; when they cannot be "
                            "had, dlib's face-recognition network, else a seeded random "
                            "initialisation, is used and reported",
                            choices=("vggface2", "casia-webface", "dlib", "none")),
        "batch_size": Field(int, 64, "faces per FaceNet batch", min=1),
        "max_faces_per_video": Field(int, 0, "embed at most this many stored faces of each "
                                     "video, evenly spread (0 keeps all)", min=0),
    }),
    Stage("train_triplet", "07_train_triplet.ipynb", {
        "epochs": Field(int, 20, "maximum epochs of the triplet network", min=1),
        "batch_size": Field(int, 256, "embeddings per batch (below 128 the paper saw NaN losses)",
                            min=2),
        "learning_rate": Field(float, 3e-4, "Adam learning rate", min=1e-7, max=1.0),
        "margin": Field(float, 1.0, "semi-hard triplet loss margin", min=0.0),
        "patience": Field(int, 10, "EarlyStopping patience on val_loss (epochs)", min=0),
        "dropout": Field(float, 0.1, "dropout between the MLP layers", min=0.0, max=0.95),
        "classifiers": Field(list, list(CLASSIFIERS), "classic classifiers on the embeddings",
                             item=str, choices=CLASSIFIERS),
        "aggregation": Field(str, "mean", "frame scores to a video score", choices=AGGREGATIONS),
        "threshold": Field(float, 0.5, "fake if the score is above this", min=0.0, max=1.0),
        "tsne_max_points": Field(int, 2000, "faces drawn in the t-SNE figures", min=10),
    }),
    Stage("robustness", "08_compression_robustness.ipynb", {
        "crfs": Field(list, [0, 23, 32, 40], "H.264 CRFs to re-encode the test videos at "
                      "(0 lossless; FaceForensics++ c23 and c40 are 23 and 40)", item=int,
                      min=0, max=51),
        "preset": Field(str, "medium", "libx264 preset (speed of the encoder, not quality)",
                        choices=X264_PRESETS),
        "methods": Field(list, [], "detectors to score (empty: every method with results)",
                         item=str),
        "max_videos": Field(int, 0, "test videos re-encoded, a seeded subset keeping the class "
                            "shares (0: all)", min=0),
    }),
    Stage("report", "09_results_report.ipynb", {
        "gradcam_per_class": Field(int, 4, "real and fake test faces in the Grad-CAM grid",
                                   min=1, max=32),
        "gradcam_layer": Field(str, "", "layer whose feature map Grad-CAM reads (empty: the "
                               "backbone's last convolutional output)"),
    }),
)

STAGE_BY_NAME: Mapping[str, Stage] = MappingProxyType({s.name: s for s in STAGES})

# The ``evaluation`` section: how every stage that scores detectors scores them. Its keys
# reach those stages' notebooks with the shared keys (see :meth:`Profile.stage_parameters`).
EVALUATION_SECTION = "evaluation"
THRESHOLD_RULES = ("fixed", "eer", "youden")
EVALUATION: Mapping[str, Field] = MappingProxyType({
    "threshold_rule": Field(str, "eer", "how threshold_val, the operating threshold of each "
                            "method, is chosen on its validation predictions: fixed (the "
                            "threshold of its stage), eer (where false positive and false "
                            "negative rates meet) or youden (largest TPR - FPR)",
                            choices=THRESHOLD_RULES),
    "bootstrap_resamples": Field(int, 2000, "stratified bootstrap resamples of the 95 % "
                                 "intervals (0: no intervals); seeded from seed", min=0),
    "confidence": Field(float, 0.95, "coverage of the bootstrap and DeLong intervals",
                        min=0.5, max=0.999),
})
SCORING_STAGES = ("evaluate_cnn", "train_c3d", "train_rnn", "train_triplet", "robustness",
                  "report")


def stage_fields(stage: str) -> dict[str, Field]:
    """Every parameter a stage's notebook receives: shared keys, the ``evaluation`` keys
    for the stages that score detectors, then the stage's own section."""
    scoring = EVALUATION if stage in SCORING_STAGES else {}
    return {**SHARED, **scoring, **STAGE_BY_NAME[stage].fields}


def _unknown(key: str, allowed: Sequence[str]) -> ProfileError:
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
        sections = {}
        for name, fields in [(s.name, s.fields) for s in STAGES] + [(EVALUATION_SECTION,
                                                                       EVALUATION)]:
            section = raw.get(name) or {}
            if not isinstance(section, Mapping):
                raise ProfileError(f"{name}: expected a mapping, got {section!r}")
            sections[name] = _check_section(f"{name}.", section, fields)
        _check_across(shared, sections, list(STAGE_BY_NAME) if stages is None else stages)
        if check_outputs:
            check_outputs_dir(shared)
    except ProfileError as exc:
        raise ProfileError(f"{source}: {exc}") from None
    return Profile(source, MappingProxyType(shared), MappingProxyType(sections))


def _check_run_name(name: str) -> None:
    """A run name is one plain folder name under ``outputs_dir``: anything else would write
    elsewhere, or make ``outputs_dir`` itself the run (whose start-up clean-up would then
    delete the temporary files of every other run being written there)."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ProfileError(f"run_name: {name!r} is not a plain folder name (one name under "
                           "outputs_dir, without '/', '\\', '.' or '..'; e.g. 'demo')")


def _check_across(shared: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any]],
                  given: Sequence[str]) -> None:
    """Constraints that tie keys of different sections together (of the sections given)."""
    margin, size = sections["faces"]["margin"], shared["img_size"]
    if "faces" in given and margin >= size:
        raise ProfileError(f"faces.margin: {margin} must be below img_size {size} (it is "
                           "measured in pixels of the final crop)")
    index = sections["index"]
    if "index" in given and bool(index["test_dataset"]) != bool(index["test_data_root"]):
        raise ProfileError("index.test_dataset and index.test_data_root go together: set both "
                           "for the cross-dataset protocol, or neither")
    if "index" in given and index["test_dataset"] and index["demo_generate"]:
        raise ProfileError("index.demo_generate: the demo dataset has no cross-dataset "
                           "counterpart; turn it off with index.test_dataset")
    if "index" in given and index["demo_generate"] and shared["dataset"] != "celebdf":
        raise ProfileError(f"index.demo_generate: the demo dataset has the celebdf layout, "
                           f"not {shared['dataset']}'s; set dataset: celebdf or turn it off")
    c3d = sections["train_c3d"]
    if "train_c3d" in given and "conv3d_diff" in c3d["models"] and c3d["clip_len"] < 2:
        raise ProfileError(f"train_c3d.clip_len: conv3d_diff subtracts consecutive faces, so it "
                           f"needs at least 2, got {c3d['clip_len']}")
    if "robustness" in given:
        for i, method in enumerate(sections["robustness"]["methods"]):
            if not is_method(method):
                raise ProfileError(f"robustness.methods[{i}]: {method!r} is not a detector name "
                                   f"({GRAMMAR}; classifiers: {', '.join(CLASSIFIERS)})")
    arch = sections["train_cnn"]["arch"]
    if "train_cnn" in given and shared["img_size"] < CNN_MIN_INPUT[arch]:
        raise ProfileError(f"img_size: {shared['img_size']} is below the minimum input "
                           f"{CNN_MIN_INPUT[arch]} of train_cnn.arch '{arch}'")


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
    if not path.is_file():
        raise ProfileError(f"{path}: profile not found")
    text = path.read_text(encoding="utf-8")
    try:
        _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(f"{path}: not valid YAML{where}: "
                           f"{exc.problem or exc.context or exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    return validate(raw or {}, source=str(path), check_outputs=check_outputs)


def _refuse_duplicate_keys(node: yaml.Node | None, prefix: str = "") -> None:
    """Raise :class:`ProfileError` for a key given twice in one mapping (a repeated section
    is a repeated top-level key): YAML would silently keep the last one."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{prefix}[{i}].")
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
        _refuse_duplicate_keys(value_node, f"{key}.")


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
    saved = yaml.safe_load(target.read_text(encoding="utf-8")) if target.is_file() else {}
    settings = {k: f.default for k, f in SHARED.items()}
    settings.update({k: v for k, v in (saved or {}).items() if k in SHARED})
    for name, fields in [(s.name, s.fields) for s in STAGES] + [(EVALUATION_SECTION,
                                                                   EVALUATION)]:
        settings[name] = {**{k: f.default for k, f in fields.items()},
                          **((saved or {}).get(name) or {})}
    return settings
