"""Every key of every profile section reaches the code that reads it.

For each key, each stage function that may read it runs twice with its consumers replaced
by recorders: once with the base profile, once with only that key non-default. The key
reaches its consumer when what the consumers received differs. A key that no stage
function hands on (read in a notebook cell, or by the runner) is listed in
``READ_ELSEWHERE`` with the place that reads it, and that place is checked instead.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pytest

from dflib import (config, datasets, face_extractor, face_store, faces, io, paths, stage_inputs,
                   stages)

# Keys whose base value differs from the schema default so that the keys next to them are
# read at all (the demo's keys are read only when the dataset is the generated demo).
BASE = {"dataset": "demo"}

# Non-default values the generic rule cannot pick (free strings, method names), and keys
# that go with another one (index.test_dataset / test_data_root, refused one without the
# other, and beside the demo, which has no cross-dataset test set): (value, keys set on
# both sides, keys set along with the value).
VALUES: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "dataset": ("folder", {}, {}),
    "index.test_dataset": ("folder", {"dataset": "celebdf"},
                           {"index.test_data_root": "cross"}),
    "index.test_data_root": ("cross2", {"dataset": "celebdf",
                                        "index.test_dataset": "folder",
                                        "index.test_data_root": "cross"}, {}),
    "index.ffpp_methods": (["Deepfakes"], {}, {}),
    "faces.scheduler": ("tcp://127.0.0.1:8786", {}, {}),
    "train_cnn.weights": ("none", {}, {}),
    "train_cnn.scheduler": ("tcp://127.0.0.1:8786", {}, {}),
    "train_sbi.weights": ("none", {}, {}),
    "robustness.methods": (["facenet/svc"], {}, {}),
    "report.gradcam_layer": ("top_conv", {}, {}),
}

# Keys no stage function hands on: (notebook whose code cells read it, why).
READ_ELSEWHERE = {
    "train_triplet.tsne_max_points": ("07_train_triplet.ipynb",
                                      "the t-SNE cell: triplet.tsne_inputs(result, "
                                      "tsne_max_points, seed)"),
}


class Stop(Exception):
    """Raised by the last recorder of a stage: nothing after it needs to run."""


def normalise(value: Any) -> Any:
    """What a consumer received, as plain comparable data (tables by their video ids)."""
    if isinstance(value, paths.RunPaths):
        return ("run", str(value.root))
    if isinstance(value, config.Profile):
        return normalise({"shared": value.shared, "sections": value.sections})
    if isinstance(value, face_extractor.FaceExtractor):
        return ("extractor", normalise(value.params))
    if isinstance(value, pd.DataFrame):
        return ("table", list(value["video_id"]) if "video_id" in value else value.shape)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, {f.name: normalise(getattr(value, f.name))
                                       for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None), np.generic)):
        return value
    return type(value).__name__


class Recorder:
    """Replaces consumer functions by recorders of what they receive."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: list[Any] = []

    def replace(self, owner: Any, name: str, returns: Any = None, stop: bool = False,
                through: bool = False) -> None:
        original = getattr(owner, name)

        def recorder(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, normalise(list(args)), normalise(kwargs)))
            if stop:
                raise Stop
            return original(*args, **kwargs) if through else returns

        self.monkeypatch.setattr(owner, name, recorder)

    def extractors(self) -> None:
        """Record every FaceExtractor built, with the settings it holds."""
        init = face_extractor.FaceExtractor.__init__

        def recording_init(extractor: face_extractor.FaceExtractor, *args: Any,
                           **kwargs: Any) -> None:
            init(extractor, *args, **kwargs)
            self.calls.append(("FaceExtractor", normalise(extractor.params)))

        self.monkeypatch.setattr(face_extractor.FaceExtractor, "__init__", recording_init)


def _videos(run: paths.RunPaths, n: int = 0) -> pd.DataFrame:
    table = pd.DataFrame({"video_id": [f"v{i}" for i in range(n)],
                          "path": [f"v{i}.mp4" for i in range(n)],
                          "label": [i % 2 for i in range(n)], "split": ["test"] * n})
    io.write_csv(table, run.ensure().videos_csv)
    return table


def _with_faces(rec: Recorder) -> None:
    table = pd.DataFrame({"video_id": ["v0", "v1"], "split": ["train", "test"],
                          "label": [0, 1], "n_faces": [2, 2], "n_other_faces": [0, 0],
                          "face_status": ["ok", "ok"], "face_reason": ["", ""]})
    rec.monkeypatch.setattr(stage_inputs, "videos_with_faces", lambda run: table)


def probe_index(profile: config.Profile, rec: Recorder) -> None:
    from dflib import synth

    empty = datasets.IndexResult(pd.DataFrame(columns=["video_id", "split"]),
                                 pd.DataFrame(columns=["video_id", "reason"]))
    rec.replace(synth, "generate")
    rec.replace(datasets, "check_data_root")
    rec.replace(datasets, "build_index", returns=empty)
    rec.replace(datasets, "cross_dataset", returns=empty)
    rec.replace(datasets, "split_problems", stop=True)
    stages.build_index(profile)


def probe_faces(profile: config.Profile, rec: Recorder) -> None:
    _videos(profile.run)  # none: the real run_extraction builds its extractor and stops
    rec.extractors()
    rec.replace(faces, "run_extraction", through=True)
    stages.extract_faces(profile, progress=False)


def probe_train_cnn(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import cnn_training

    _with_faces(rec)
    rec.replace(cnn_training, "train_chunks", stop=True)
    stages.run_detector_stage(profile, "train_cnn")


def probe_evaluate_cnn(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import cnn_training

    _with_faces(rec)
    rec.replace(cnn_training, "latest_manifest", returns={})
    rec.replace(cnn_training, "evaluate_chunks", stop=True)
    stages.run_detector_stage(profile, "evaluate_cnn")


def probe_train_sbi(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import sbi

    _with_faces(rec)
    rec.replace(sbi, "run_stage", stop=True)
    stages.run_detector_stage(profile, "train_sbi")


def probe_train_c3d(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import clips

    _with_faces(rec)
    rec.replace(clips, "train_clip_models", stop=True)
    stages.run_detector_stage(profile, "train_c3d")


def probe_train_rnn(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import sequences

    _with_faces(rec)
    rec.replace(sequences, "train_heads", stop=True)
    stages.run_detector_stage(profile, "train_rnn")


def probe_embed_faces(profile: config.Profile, rec: Recorder) -> None:
    from dflib import embeddings

    rec.replace(embeddings, "run_embedding", stop=True)
    stages.run_detector_stage(profile, "embed_faces", progress=False)


def probe_train_triplet(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import triplet

    _with_faces(rec)
    rec.replace(triplet, "run_stage", stop=True)
    stages.run_detector_stage(profile, "train_triplet", progress=False)


def probe_train_frequency(profile: config.Profile, rec: Recorder) -> None:
    from dflib.detectors.models import frequency

    _with_faces(rec)
    rec.replace(frequency, "run_stage", stop=True)
    stages.run_detector_stage(profile, "train_frequency")


def probe_robustness(profile: config.Profile, rec: Recorder) -> None:
    from dflib import reload, robustness

    _videos(profile.run, 6)
    rec.replace(reload, "trained_methods", returns=["cnn/xception"])
    rec.replace(face_store, "store_settings", returns="store settings")
    rec.replace(robustness, "run_robustness", stop=True)
    stages.compression_robustness(profile, progress=False)


def probe_report(profile: config.Profile, rec: Recorder) -> None:
    from dflib import evaluation, gradcam, plots, result_tables

    for owner, name in [(evaluation, "results_table"), (result_tables, "published_results"),
                        (result_tables, "paper_table"), (result_tables, "comparisons"),
                        (result_tables, "results_by_group"), (plots, "save_table")]:
        rec.replace(owner, name, returns=pd.DataFrame())
    rec.replace(gradcam, "explain_cnn", stop=True)
    stages.results_report(profile)


PROBES: dict[str, Callable[[config.Profile, Recorder], None]] = {
    "index": probe_index, "faces": probe_faces, "train_cnn": probe_train_cnn,
    "evaluate_cnn": probe_evaluate_cnn, "train_sbi": probe_train_sbi,
    "train_c3d": probe_train_c3d,
    "train_rnn": probe_train_rnn, "embed_faces": probe_embed_faces,
    "train_triplet": probe_train_triplet, "train_frequency": probe_train_frequency,
    "robustness": probe_robustness,
    "report": probe_report,
}


def test_every_stage_has_a_probe():
    assert set(PROBES) == set(config.STAGE_BY_NAME)


def _sections() -> dict[str, Mapping[str, config.Field]]:
    return {"": config.SHARED, **{s.name: s.fields for s in config.STAGES},
            config.EVALUATION_SECTION: config.EVALUATION}


def _readers(section: str) -> list[str]:
    """The stages whose functions may read a section's keys (all of them for shared keys)."""
    if section == "":
        return list(PROBES)
    if section == config.EVALUATION_SECTION:
        return list(config.SCORING_STAGES)
    return [section]


KEYS = [f"{section}.{key}" if section else key
        for section, fields in _sections().items() for key in fields]


def _other(key: str, field: config.Field, value: Any) -> Any:
    """A valid value of ``field`` other than ``value``."""
    if key in VALUES:
        return VALUES[key][0]
    if field.kind is bool:
        return not value
    if field.choices is not None and field.kind is not list:
        return next(c for c in field.choices if c != value)
    if field.kind is str:
        return f"{value}_other" if value else "other"
    if field.kind is list:
        if field.choices is not None:
            extra = [c for c in field.choices if c not in value]
            return extra[:1] if extra else value[:1]
        if field.item is float:
            return [round(v / 2, 4) for v in value]
        return value[:1]
    for candidate in ((value + 1, value - 1) if field.kind is int
                      else (value * 0.9, value * 1.1, value + 0.1)):
        try:
            if field.check(key, candidate) != value:
                return candidate
        except config.ProfileError:
            continue
    raise AssertionError(f"no other value for {key}")


def _profile(tmp: Path, settings: Mapping[str, Any]) -> config.Profile:
    raw: dict[str, Any] = {"run_name": "reach", "dataset": "celebdf", "data_root": "data",
                           "outputs_dir": str(tmp / "outputs")}
    for dotted, value in settings.items():
        section, _, key = dotted.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[key] = value
    if "outputs_dir" in settings:
        raw["outputs_dir"] = str(tmp / settings["outputs_dir"])
    return config.validate(raw, check_outputs=False)


def _received(tmp: Path, settings: Mapping[str, Any], stage: str,
              monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    rec = Recorder(monkeypatch)
    with monkeypatch.context() as patch:
        rec.monkeypatch = patch
        try:
            PROBES[stage](_profile(tmp, settings), rec)
        except Stop:
            pass
    assert rec.calls, f"stage {stage} called none of its consumers"
    return rec.calls


@pytest.mark.parametrize("key", [k for k in KEYS if k not in READ_ELSEWHERE])
def test_a_non_default_value_reaches_the_consumer(key, tmp_path, monkeypatch):
    section, _, leaf = key.rpartition(".")
    field = _sections()[section][leaf]
    _, context, along = VALUES.get(key, (None, {}, {}))
    base = {**BASE, **context}
    other = _other(key, field, base.get(key, field.default))
    stage_calls = {stage: (_received(tmp_path, base, stage, monkeypatch),
                           _received(tmp_path, {**base, **along, key: other}, stage,
                                     monkeypatch))
                   for stage in _readers(section)}
    reached = [stage for stage, (before, after) in stage_calls.items() if before != after]
    assert reached, (f"{key}: {other!r} instead of {base.get(key, field.default)!r} changes "
                     f"nothing that stage(s) {', '.join(_readers(section))} hand on")


@pytest.mark.parametrize("key", sorted(READ_ELSEWHERE))
def test_keys_read_elsewhere_are_read_there(key):
    notebook, _ = READ_ELSEWHERE[key]
    section, _, leaf = key.rpartition(".")
    assert config.STAGE_BY_NAME[section].notebook == notebook
    cells = json.loads((paths.NOTEBOOKS_DIR / notebook).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"
                     and "parameters" not in c.get("metadata", {}).get("tags", []))
    assert leaf in code.replace("(", " ").replace(",", " ").replace(")", " ").split()
