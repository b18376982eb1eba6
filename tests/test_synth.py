"""The generated demo dataset: Celeb-DF v2 layout, labels, determinism, resumability, faces."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from dflib import synth

SMALL = dict(identities=2, real_per_identity=2, fake_per_identity=3, frames=8, width=160,
             height=128)
SEED = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("synth") / "demo"
    return root, synth.generate(root, seed=SEED, progress=False, **SMALL)


@pytest.fixture(scope="module")
def mtcnn():
    facenet_pytorch = pytest.importorskip("facenet_pytorch")
    return facenet_pytorch.MTCNN(keep_all=False, device="cpu")


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _first_frame(path: Path) -> np.ndarray:
    ok, frame = cv2.VideoCapture(str(path)).read()
    assert ok, path
    return frame


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _test_list(root: Path) -> list[tuple[int, str]]:
    lines = (root / synth.TEST_LIST).read_text(encoding="utf-8").splitlines()
    return [(int(flag), rel) for flag, rel in (line.split(" ", 1) for line in lines)]


def test_layout_and_names(dataset):
    root, manifest = dataset
    assert list(manifest.columns) == synth.MANIFEST_COLUMNS
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
    assert on_disk == sorted(manifest["path"])
    assert not list(root.rglob("*.part"))
    n_real = SMALL["identities"] * SMALL["real_per_identity"]
    assert len(manifest) == n_real + SMALL["identities"] * SMALL["fake_per_identity"]
    patterns = {"Celeb-real": r"id(\d+)_\d{4}\.mp4", "YouTube-real": r"\d{5}\.mp4",
                "Celeb-synthesis": r"id(\d+)_id(\d+)_\d{4}\.mp4"}
    for row in manifest.itertuples():
        folder, name = row.path.split("/")
        match = re.fullmatch(patterns[folder], name)
        assert match, row.path
        if folder != "YouTube-real":
            assert int(match.group(1)) == row.identity
        if folder == "Celeb-synthesis":
            assert int(match.group(2)) == row.source_identity
    assert (manifest["path"].str.startswith("YouTube-real/")).sum() >= 1
    assert (root / synth.PARAMS).is_file()


def test_manifest_labels_and_methods(dataset):
    _, manifest = dataset
    fake = manifest["path"].str.startswith("Celeb-synthesis/")
    assert (manifest["label"] == fake.astype(int)).all()
    assert set(manifest.loc[~fake, "method"]) == {"real"}
    assert set(manifest.loc[fake, "method"]) == set(synth.METHODS)
    swaps = manifest[manifest["method"] == "faceswap"]
    assert (swaps["identity"] != swaps["source_identity"]).all()
    selfs = manifest[manifest["method"].isin(["real", "selfblend"])]
    assert (selfs["identity"] == selfs["source_identity"]).all()
    assert set(manifest["crf"]) <= {23, 40}
    assert (manifest["compression"] == "c" + manifest["crf"].astype(str)).all()


def test_every_identity_in_both_classes(dataset):
    _, manifest = dataset
    classes = manifest.groupby("identity")["label"].agg(set)
    assert len(classes) == SMALL["identities"]
    assert all(labels == {0, 1} for labels in classes)


def test_testing_list_flags_and_stratification(dataset):
    root, manifest = dataset
    listed = _test_list(root)
    assert listed, "empty test list"
    for flag, rel in listed:  # Celeb-DF convention: 1 = real
        assert flag == (0 if rel.startswith("Celeb-synthesis/") else 1), rel
        assert (root / rel).is_file()
    test_paths = {rel for _, rel in listed}
    split = manifest.assign(test=manifest["path"].isin(test_paths))
    for (identity, label), group in split.groupby(["identity", "label"]):
        assert group["test"].any() and not group["test"].all(), (identity, label)


def test_videos_decode_to_requested_shape(dataset):
    root, manifest = dataset
    for rel in manifest["path"]:
        frames = _frames(root / rel)
        assert len(frames) == SMALL["frames"], rel
        assert frames[0].shape == (SMALL["height"], SMALL["width"], 3), rel


def test_same_seed_same_dataset_other_seed_differs(dataset, tmp_path):
    root, manifest = dataset
    twin = tmp_path / "twin"
    again = synth.generate(twin, seed=SEED, progress=False, **SMALL)
    pd.testing.assert_frame_equal(manifest, again)
    assert (root / synth.TEST_LIST).read_bytes() == (twin / synth.TEST_LIST).read_bytes()
    for rel in manifest["path"]:
        assert np.array_equal(_first_frame(root / rel), _first_frame(twin / rel)), rel
        assert (root / rel).read_bytes() == (twin / rel).read_bytes(), rel

    other = synth.generate(tmp_path / "other", seed=SEED + 1, progress=False, **SMALL)
    common = sorted(set(manifest["path"]) & set(other["path"]))
    assert common
    assert not any(np.array_equal(_first_frame(root / rel), _first_frame(tmp_path / "other" / rel))
                   for rel in common)


def test_videos_made_with_other_settings_are_never_overwritten(dataset, tmp_path):
    """Runs that indexed a demo folder read its videos: another seed or size is refused
    in one line naming the change, the folder left byte for byte, complete or half-way
    (a run killed while generating); only a folder without videos is written anew."""
    root, manifest = dataset
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    before = {p: p.read_bytes() for p in sorted(copy.rglob("*")) if p.is_file()}
    for changed, needle in (({"seed": SEED + 1}, f"seed {SEED} -> {SEED + 1}"),
                            ({"frames": 10}, "frames 8 -> 10")):
        with pytest.raises(FileExistsError) as err:
            synth.generate(copy, progress=False, **{"seed": SEED, **SMALL, **changed})
        message = str(err.value)
        assert message.startswith(f"{copy}: holds the demo dataset made with other settings "
                                  f"({needle})") and "\n" not in message
    (copy / synth.MANIFEST).unlink()  # half-way: still videos of other settings
    with pytest.raises(FileExistsError, match="other settings"):
        synth.generate(copy, seed=SEED + 1, progress=False, **SMALL)
    assert {p: p.read_bytes() for p in sorted(copy.rglob("*")) if p.is_file()} == {
        p: b for p, b in before.items() if p.name != synth.MANIFEST}
    for video in copy.rglob("*.mp4"):  # no video left: nothing to overwrite
        video.unlink()
    other = synth.generate(copy, seed=SEED + 1, progress=False, **SMALL)
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*.mp4")) == sorted(other["path"])
    assert json.loads((copy / synth.PARAMS).read_text())["seed"] == SEED + 1


def test_complete_folder_is_returned_without_rewriting(dataset):
    root, manifest = dataset
    before = _mtimes(root)
    assert synth.generate(root, seed=SEED, progress=False, **SMALL).equals(manifest)
    assert _mtimes(root) == before
    assert json.loads((root / synth.PARAMS).read_text())["seed"] == SEED


def test_interrupted_folder_resumes(dataset, tmp_path):
    root, manifest = dataset
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    lost = manifest["path"].iloc[-1]
    (copy / synth.MANIFEST).unlink()
    (copy / lost).unlink()
    (copy / "Celeb-real" / ".id0_0000.mp4.abc.part").write_bytes(b"half a video")
    before = _mtimes(copy)
    assert synth.generate(copy, seed=SEED, progress=False, **SMALL).equals(manifest)
    assert (copy / lost).read_bytes() == (root / lost).read_bytes()
    assert not list(copy.rglob("*.part"))
    after = _mtimes(copy)
    kept = [rel for rel in manifest["path"] if rel != lost]
    assert all(after[rel] == before[rel] for rel in kept)


def test_refuses_foreign_folder_and_bad_arguments(tmp_path):
    (tmp_path / "Celeb-real").mkdir()
    (tmp_path / "Celeb-real" / "id0_0000.mp4").write_bytes(b"someone's real data")
    with pytest.raises(FileExistsError):
        synth.generate(tmp_path, progress=False, **SMALL)
    with pytest.raises(ValueError, match="width"):
        synth.generate(tmp_path / "x", progress=False, **{**SMALL, "width": 161})
    with pytest.raises(ValueError, match="identities"):
        synth.generate(tmp_path / "x", progress=False, **{**SMALL, "identities": 1})


@pytest.mark.parametrize("stranger, named", [
    ("notes.txt", "notes.txt"), ("clips/a.mp4", "clips/"),
    ("Celeb-real/my_video.mp4", "Celeb-real/my_video.mp4"),
    ("Celeb-real/id0_0000.mp4.txt", "Celeb-real/id0_0000.mp4.txt"),
    ("YouTube-real/x/", "YouTube-real/x/")])
def test_a_folder_holding_files_synth_did_not_write_is_refused_before_writing(dataset, tmp_path,
                                                                             stranger, named):
    """Empty or new, or its own output (whole or half-written: it resumes); anything else
    is someone's data, refused in one line before a file is written or deleted."""
    root, _ = dataset
    for out, own in ((tmp_path / "empty", False), (tmp_path / "own", True)):
        if own:
            shutil.copytree(root, out)
            (out / "Celeb-real" / ".id0_0000.mp4.abc.part").write_bytes(b"half a video")
        assert synth.folder_problem(out) is None
        target = out / stranger
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if stranger.endswith("/") else target.write_text("mine")
        before = _mtimes(out)
        problem = synth.folder_problem(out)
        assert problem is not None and problem.startswith(f"{out}: holds {named}")
        assert "not written by dflib.synth" in problem
        with pytest.raises(FileExistsError, match=re.escape(problem)):
            synth.generate(out, seed=SEED, progress=False, **SMALL)
        assert _mtimes(out) == before


def test_synth_on_a_file_or_a_foreign_folder_is_one_line_exit_2(tmp_path, capsys):
    from dflib import cli

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.mp4").write_bytes(b"someone's video")
    for out, needle in ((a_file, f"{a_file}: not a folder"),
                        (a_file / "demo", f"{a_file}: not a folder, so {a_file / 'demo'} "
                                          "cannot be made"),
                        (foreign, f"{foreign}: holds holiday.mp4, not written by dflib.synth")):
        assert cli.main(["synth", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {needle}") and "\n" not in err
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.mp4"]
    for seed in ("-1", str(2**32)):
        assert cli.main(["synth", str(tmp_path / "new"), "--seed", seed]) == 2
        assert capsys.readouterr().err.startswith("error: --seed: ")
    assert not (tmp_path / "new").exists()


def test_mtcnn_finds_faces_in_real_and_fake_videos(dataset, mtcnn):
    root, manifest = dataset
    for label in (0, 1):
        rel = manifest.loc[manifest["label"] == label, "path"].iloc[0]
        frame = cv2.cvtColor(_frames(root / rel)[SMALL["frames"] // 2], cv2.COLOR_BGR2RGB)
        boxes, probs = mtcnn.detect(frame)
        assert boxes is not None and probs[0] > 0.9, rel


def test_stored_landmarks_match_mtcnn(mtcnn):
    for photo in synth._photos():
        boxes, _, landmarks = mtcnn.detect(photo.rgb, landmarks=True)
        assert boxes is not None
        assert np.abs(boxes[0] - photo.box).max() < 2.0
        assert np.abs(landmarks[0] - photo.landmarks).max() < 2.0


def test_every_derived_identity_has_a_detectable_face(mtcnn):
    for identity in range(8):
        sprite = synth._sprite(identity, 60)
        on_grey = sprite.rgb * sprite.alpha[..., None] + 128 * (1 - sprite.alpha[..., None])
        boxes, _, landmarks = mtcnn.detect(on_grey.astype(np.uint8), landmarks=True)
        assert boxes is not None, identity
        # The stored landmarks (used to align swaps) agree with what MTCNN sees.
        assert np.abs(landmarks[0] - sprite.landmarks).max() < 0.15 * sprite.face_px, identity


DEMO_INDEX = {"demo_seed": SEED, "demo_identities": SMALL["identities"],
              "demo_real_per_identity": SMALL["real_per_identity"],
              "demo_fake_per_identity": SMALL["fake_per_identity"],
              "demo_frames": SMALL["frames"], "demo_width": SMALL["width"],
              "demo_height": SMALL["height"]}


def test_dataset_demo_generates_a_missing_data_root_and_indexes_it(dataset, tmp_path):
    """``dataset: demo`` on a data_root that does not exist: ``dflib check`` accepts it
    (splits known later), stage index writes the profile's demo there (the very bytes
    synth.generate writes for those settings) and indexes it with the celebdf reading."""
    from dflib import cli, config, datasets, stages

    root, manifest = dataset
    data = tmp_path / "new" / "data"
    raw = {"run_name": "r", "dataset": "demo", "data_root": str(data),
           "outputs_dir": str(tmp_path / "outputs"), "seed": SEED, "index": DEMO_INDEX}
    profile_file = tmp_path / "p.yaml"
    profile_file.write_text(yaml.safe_dump(raw))
    assert cli.main(["check", str(profile_file)]) == 0
    assert not data.exists()
    result = stages.build_index(config.validate(raw))
    assert {p.relative_to(data): b for p, b in _snapshot(data).items()} == {
        p.relative_to(root): b for p, b in _snapshot(root).items()}
    celebdf = datasets.build_index("celebdf", data, seed=SEED, val_fraction=0.2,
                                   max_videos_per_class=0, ffpp_methods=[],
                                   ffpp_compression="c40")
    assert len(result.videos) == len(manifest) and result.missing.empty
    assert set(result.videos["dataset"]) == {"demo"}
    assert result.videos.drop(columns="dataset").equals(celebdf.videos.drop(columns="dataset"))


def test_a_run_killed_while_generating_the_demo_passes_check_and_resumes(dataset, tmp_path):
    """Killed before Celeb-synthesis/, the test list and the manifest were written: the
    rerun's profile check accepts the half-written folder and stage index completes it."""
    from dflib import config, stages

    root, manifest = dataset
    data = tmp_path / "data"
    shutil.copytree(root, data)
    shutil.rmtree(data / "Celeb-synthesis")
    (data / synth.TEST_LIST).unlink()
    (data / synth.MANIFEST).unlink()
    profile = config.validate({"run_name": "r", "dataset": "demo", "data_root": str(data),
                               "outputs_dir": str(tmp_path / "outputs"), "seed": SEED,
                               "index": DEMO_INDEX})
    result = stages.build_index(profile)
    assert len(result.videos) == len(manifest) and result.missing.empty
    assert pd.read_csv(data / synth.MANIFEST).equals(manifest)


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_seeds_run_leaves_the_data_and_every_earlier_seed_s_run_as_they_were(dataset,
                                                                              tmp_path):
    """``dflib run --seeds 0 1`` (stage index of each seed, as run_seeds runs them): the
    videos come from ``index.demo_seed``, not the run's seed, so seed 1 reads the very
    videos seed 0 indexed and leaves seed 0's run folder and the data byte for byte."""
    from dflib import config, notebooks, stages

    root, manifest = dataset
    data = tmp_path / "data"
    shutil.copytree(root, data)
    profile = config.validate({"run_name": "r", "dataset": "demo", "data_root": str(data),
                               "outputs_dir": str(tmp_path / "outputs"), "seed": 0,
                               "index": DEMO_INDEX})
    first = notebooks.seed_profile(profile, 0)
    stages.build_index(first)
    data_before, run_before = _snapshot(data), _snapshot(first.run.root)
    second = notebooks.seed_profile(profile, 1)
    stages.build_index(second)
    assert _snapshot(data) == data_before
    assert _snapshot(first.run.root) == run_before
    indexed = [sorted(pd.read_csv(p.run.videos_csv)["path"]) for p in (first, second)]
    assert indexed[0] == indexed[1] and len(indexed[0]) == len(manifest)


def test_check_refuses_a_data_root_holding_another_profile_s_demo(dataset, tmp_path):
    """Two profiles with other ``demo_*`` settings on one ``data_root`` (or a profile
    edited after its run): ``dflib check`` and ``dflib run`` refuse before any work, in one
    line naming the key and the change; stage index refuses the same way; nothing moves."""
    from dflib import config, datasets, stages

    root, _ = dataset
    data = tmp_path / "data"
    shutil.copytree(root, data)
    before = _snapshot(data)
    other = config.validate({"run_name": "r", "dataset": "demo", "data_root": str(data),
                             "outputs_dir": str(tmp_path / "outputs"),
                             "index": {**DEMO_INDEX, "demo_frames": 16}})
    with pytest.raises(config.ProfileError, match=re.escape(
            f"data_root: {data}: holds the demo dataset made with other settings "
            "(frames 8 -> 16)")):
        datasets.check_data_root(other)
    with pytest.raises(FileExistsError, match="other settings"):
        stages.build_index(other)
    assert _snapshot(data) == before
    assert not other.run.videos_csv.exists()


def test_a_video_lost_from_a_complete_demo_folder_is_written_again(dataset, tmp_path):
    root, manifest = dataset
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    lost = manifest["path"].iloc[0]
    (copy / lost).unlink()
    assert synth.generate(copy, seed=SEED, progress=False, **SMALL).equals(manifest)
    assert (copy / lost).read_bytes() == (root / lost).read_bytes()


def test_check_refuses_a_demo_folder_the_generator_may_not_write(tmp_path):
    from dflib import config, datasets

    foreign = tmp_path / "foreign"
    (foreign / "Celeb-real").mkdir(parents=True)
    (foreign / "Celeb-real" / "id0_0000.mp4").write_bytes(b"someone's real data")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for data, needle in ((foreign, "holds Celeb-real/id0_0000.mp4, not written by dflib.synth"),
                         (a_file, "not a folder")):
        with pytest.raises(config.ProfileError, match=f"data_root: {re.escape(str(data))}: {needle}"):
            datasets.check_data_root(config.validate({
                "run_name": "r", "dataset": "demo", "data_root": str(data)}))


def test_the_demo_takes_no_cross_dataset_test_split(tmp_path):
    """A generated dataset has no counterpart to test on: ``dflib check`` and stage index
    refuse it in one line naming the key, before any video is written."""
    from dflib import config, datasets, stages

    cross = tmp_path / "cross"
    for sub in ("real", "fake"):
        (cross / sub).mkdir(parents=True)
    profile = config.validate({"run_name": "r", "dataset": "demo",
                               "data_root": str(tmp_path / "data"),
                               "outputs_dir": str(tmp_path / "outputs"),
                               "index": {"test_dataset": "folder",
                                         "test_data_root": str(cross)}}, source="p.yaml")
    needle = "p.yaml: index.test_dataset: dataset demo is generated and has no cross-dataset"
    for step in (datasets.check_data_root, stages.build_index):
        with pytest.raises(config.ProfileError, match=needle):
            step(profile)
    assert not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()


# --------------------------------------------------------------------------- no shortcut

SHORTCUT = dict(identities=4, real_per_identity=6, fake_per_identity=6, frames=8, width=160,
                height=128)


def _video_properties(path: Path) -> list[float]:
    """What a detector could read without looking at the face: file size, bitrate, length,
    frame rate, and the mean colour and noise of the frame border around the person."""
    cap = cv2.VideoCapture(str(path))
    fps, n = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    frames = _frames(path)
    cap.release()
    size = path.stat().st_size
    h, w = frames[0].shape[:2]
    # The face (and the whole head) stays inside the central region in every video.
    border = np.ones((h, w), bool)
    border[int(0.05 * h):, int(0.2 * w):int(0.8 * w)] = False
    stack = np.stack(frames).astype(np.float32)
    colour = stack[:, border].mean(axis=(0, 1))
    residual = stack - np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in stack])
    noise = residual[:, border].std()
    return [size, 8 * size * fps / max(n, 1), n / fps, fps, *colour, noise]


def test_no_shortcut_outside_the_face(tmp_path):
    """A classifier on video properties unrelated to the face is at chance: cross-validated
    AUC whose stratified-bootstrap 95 % interval contains 0.5. Folds keep a real video and
    the fakes made from it together (as a detector meets them: a scene it never saw)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    manifest = synth.generate(tmp_path / "demo", seed=SEED, progress=False, **SHORTCUT)
    assert manifest["scene"].isin(manifest.loc[manifest["label"] == 0, "path"]).all()
    x = np.array([_video_properties(tmp_path / "demo" / p) for p in manifest["path"]])
    y = manifest["label"].to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    score = cross_val_predict(clf, x, y, groups=manifest["scene"], method="predict_proba",
                              cv=StratifiedGroupKFold(5, shuffle=True, random_state=0))[:, 1]
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    boots = [roc_auc_score(y[idx], score[idx]) for idx in
             (np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
              for _ in range(2000))]
    low, high = np.percentile(boots, [2.5, 97.5])
    assert low <= 0.5 <= high, (roc_auc_score(y, score), low, high)
    # Both classes carry the same compression mix, lengths and frame rates.
    assert (manifest.groupby("label")["crf"].agg(set).map(frozenset).nunique() == 1)


def test_dflib_synth_refuses_a_folder_of_other_settings_in_one_line(tmp_path, capsys):
    from dflib import cli

    out = tmp_path / "demo"
    (out / "Celeb-real").mkdir(parents=True)
    (out / "Celeb-real" / "id0_0000.mp4").write_bytes(b"a video of seed 0")
    (out / synth.PARAMS).write_text(json.dumps(synth.recorded_params(seed=0)))
    assert cli.main(["synth", str(out), "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: holds the demo dataset made with other settings "
                          "(seed 0 -> 1)") and err.count("\n") == 1
    assert (out / "Celeb-real" / "id0_0000.mp4").read_bytes() == b"a video of seed 0"
