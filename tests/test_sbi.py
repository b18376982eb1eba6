"""Self-blended images (dflib.detectors.models.sbi): the method name, the landmarks, the blend, and the
train_sbi stage trained, scored, kept by evaluate_cnn and reloaded like a frame CNN."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data as skdata

from dflib import (config, detectors, evaluation, face_store, io, reload, stage_inputs, stages,
                   vocabulary)
from dflib.detectors.models import cnn, sbi
from dflib.paths import RunPaths
from test_training import tiny_model

SIZE, MARGIN = 64, 16
ASTRONAUT_FACE = (179, 83, 266, 170)  # dlib's frontal detector on scikit-image's astronaut


def face_crop(dx: int = 0, gain: float = 1.0) -> np.ndarray:
    """The astronaut's face cut as the extractor cuts a crop: its box fills SIZE - MARGIN."""
    left, top, right, bottom = ASTRONAUT_FACE
    side = (right - left) * SIZE / (SIZE - MARGIN)
    cx, cy = (left + right) / 2 + dx, (top + bottom) / 2
    img = skdata.astronaut()[round(cy - side / 2):round(cy + side / 2),
                             round(cx - side / 2):round(cx + side / 2)]
    img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.clip(img * gain, 0, 255).astype(np.uint8)


def noise_faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(sbi.predictor_path()))


def test_the_method_name_is_a_frame_cnn_neither_chunk_nor_ensemble():
    name = vocabulary.sbi_method("ef0")
    assert name == "cnn/ef0/sbi" and vocabulary.is_sbi(name)
    assert detectors.family(name) == "cnn" and detectors.is_frame_level(name)
    assert detectors.display_group(name) == "frame CNN"
    assert not vocabulary.is_ensemble(name)
    assert vocabulary.single_chunks_of("cnn/ef0/boosted", ["cnn/ef0", name,
                                                            "cnn/ef0/chunk1"]) == [
        "cnn/ef0", "cnn/ef0/chunk1"]
    assert vocabulary.method_from_filename(vocabulary.method_filename(name)) == name
    assert not vocabulary.is_sbi("cnn/ef0") and not vocabulary.is_sbi("cnn/ef0/chunk1")
    assert "/sbi" in detectors.GRAMMAR


def test_landmarks_are_found_on_a_face_and_not_on_noise(dlib_models):
    points, found = sbi.landmarks_of(np.stack([face_crop(), *noise_faces(2)]), MARGIN,
                                     *dlib_models)
    assert found.tolist() == [True, False, False]
    assert np.isfinite(points[0]).all() and np.isnan(points[1:]).all()
    left, top, right, bottom = sbi.face_box(SIZE, MARGIN)
    # The points lie on the face the extractor cut around (the jaw about the box's sides).
    slack = SIZE / 8
    assert left - slack <= points[0, :, 0].min() and points[0, :, 0].max() <= right + slack
    assert top - slack <= points[0, :, 1].min() and points[0, :, 1].max() <= bottom + slack


def test_a_self_blend_is_a_pair_blended_inside_the_hull_and_seeded(dlib_models):
    face = face_crop()
    points, _ = sbi.landmarks_of(face[None], MARGIN, *dlib_models)
    hull = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points[0]).astype(np.int32)), 1)
    r = sbi.SBI_RECIPE
    # The deformation moves the hull by at most elastic_alpha of the side and the blur
    # spreads its edge: two sigmas further out, under 5 % of the source is left.
    reach = int(np.ceil((r.elastic_alpha + 2 * r.mask_blur[1]) * SIZE)) + 1
    outside = cv2.dilate(hull, np.ones((2 * reach + 1,) * 2, np.uint8)) == 0
    assert outside.any()
    for seed in range(8):
        fake, weight = sbi.self_blend(face, points[0], np.random.default_rng(seed))
        assert fake.shape == face.shape and fake.dtype == np.float32
        assert weight.max() > 0.2 and (weight[outside] < 0.05 * weight.max()).all()
        assert (weight * hull).sum() > 0.6 * weight.sum()  # mostly inside the hull
        assert np.abs(fake - face).mean() > 0.5  # a pair: the fake is not the real face
        again, weight2 = sbi.self_blend(face, points[0], np.random.default_rng(seed))
        assert np.array_equal(fake, again) and np.array_equal(weight, weight2)
    other, _ = sbi.self_blend(face, points[0], np.random.default_rng(100))
    assert not np.array_equal(other, sbi.self_blend(face, points[0],
                                                    np.random.default_rng(0))[0])


def test_the_recipe_shares_no_value_with_the_demo_s_self_blend_generator():
    """dflib.synth's fakes must not be made by the generator the SBI model trains on: no
    number of its mask and self-blend code is a value of the recipe."""
    import ast
    import inspect

    from dflib import synth

    def numbers(node: ast.AST) -> set[float]:
        return {float(n.value) for n in ast.walk(node) if isinstance(n, ast.Constant)
                and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)}

    plan = ast.parse(inspect.getsource(synth._plan_paste))
    selfblend = next(n for n in ast.walk(plan) if isinstance(n, ast.If)).orelse
    theirs = set().union(*(numbers(n) for n in selfblend),
                         numbers(ast.parse(inspect.getsource(synth._face_mask))))
    ours = {float(v) for value in dataclasses.astuple(sbi.SBI_RECIPE)
            for v in (value if isinstance(value, tuple) else (value,))}
    # 0, 1, 2, 3 and a half are counts, indices, the identity and even odds, not settings.
    assert ours & (theirs - {0.0, 0.5, 1.0, 2.0, 3.0}) == set()


# --------------------------------------------------------------------------- the stage

def store_config() -> str:
    return json.dumps({"img_size": SIZE, "margin": MARGIN, "frames_per_video": 3,
                       "sampling": "even", "every_k": 1})


def write_run(root, videos: pd.DataFrame, noise: set[str] = frozenset()) -> RunPaths:
    """Stages 00-01's files: fakes get a darkened face, videos in ``noise`` noise only."""
    run = RunPaths(root / "sbi").ensure()
    rows = []
    for v in videos.itertuples():
        crops = (noise_faces(v.n_faces, len(rows)) if v.video_id in noise else
                 np.stack([face_crop(dx=2 * k - 2, gain=0.7 if v.label else 1.0)
                           for k in range(v.n_faces)]))
        io.write_npz(run.face_file(v.video_id), faces=crops, frame_idx=np.arange(v.n_faces),
                     config=np.array(store_config()))
        rows.append({"video_id": v.video_id, "label": v.label, "split": v.split,
                     "status": "ok", "n_sampled": 3, "n_faces": v.n_faces, "reason": ""})
    io.write_csv(videos.drop(columns="n_faces").assign(
        path="x.mp4", dataset="celebdf", compression="c23",
        method=np.where(videos["label"] == 1, "faceswap", "")), run.videos_csv)
    io.write_csv(pd.DataFrame(rows, columns=face_store.SUMMARY_COLUMNS), run.faces_summary_csv)
    return run


def videos_table(n_real_train: int = 3) -> pd.DataFrame:
    rows = [(f"{split}_{'fake' if y else 'real'}{i}", y, split)
            for split, n_real, n_fake in (("train", n_real_train, 2), ("val", 1, 1),
                                          ("test", 2, 2))
            for y, n in ((0, n_real), (1, n_fake)) for i in range(n)]
    return pd.DataFrame(rows, columns=["video_id", "label", "split"]).assign(n_faces=3)


def profile_for(run: RunPaths) -> config.Profile:
    return config.validate({
        "run_name": run.root.name, "dataset": "celebdf", "data_root": "unused",
        "outputs_dir": str(run.root.parent), "img_size": SIZE, "seed": 0,
        "train_cnn": {"arch": "ef0", "weights": "none", "epochs": 1, "batch_size": 8,
                      "patience": 1, "chunks": 1},
        "evaluate_cnn": {"tsne_max_points": 10},
        "train_sbi": {"arch": "ef0", "weights": "none", "epochs": 2, "batch_size": 8,
                      "patience": 1, "bn_recalibration_batches": 1},
        "evaluation": {"bootstrap_resamples": 20},
    }, stages=("train_cnn", "evaluate_cnn", "train_sbi"))


def test_the_stage_trains_on_reals_and_self_blends_scores_and_reloads(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    run = write_run(tmp_path, videos_table(), noise={"train_real2"})
    profile = profile_for(run)

    result = stages.run_detector_stage(profile, "train_sbi", verbose=0)
    assert result.method == "cnn/ef0/sbi"
    # The noise video's faces have no landmarks: counted, left out, recorded, not fatal.
    assert (result.n_faces, result.n_missing) == (9, 3)
    manifest = result.manifest
    assert manifest["complete"] and manifest["n_landmark_faces"] == 6
    record = manifest["chunk_models"][0]
    assert set(record["made_from"]["inputs"]["train"]) == {"train_real0", "train_real1",
                                                           "train_real2"}
    assert record["monitor"] == "val_loss"
    assert run.sbi_model("ef0").is_file() and run.sbi_landmarks.is_file()
    failures = pd.read_csv(run.root / "failures.csv")
    assert failures.loc[failures["stage"] == "train_sbi", "video_id"].tolist() == [
        "train_real2"]
    table = evaluation.results_table(run)
    rows = table[table["method"] == "cnn/ef0/sbi"]
    assert sorted(rows["level"]) == ["frame", "video"] and (rows["n"] > 0).all()
    assert result.by_manipulation["group"].tolist() == ["faceswap"]
    vids, frames = evaluation.read_predictions(run, "cnn/ef0/sbi")
    assert len(vids) == 4 and len(frames) == 12

    # A rerun with nothing changed reuses the landmarks and the model.
    stamp = run.sbi_model("ef0").stat().st_mtime_ns
    capsys.readouterr()
    stages.run_detector_stage(profile, "train_sbi", verbose=0)
    assert "model.keras exists, skipped" in capsys.readouterr().out
    assert run.sbi_model("ef0").stat().st_mtime_ns == stamp

    # The bagged CNN's stages leave the self-blend model's rows alone.
    stages.run_detector_stage(profile, "train_cnn", verbose=0)
    stages.run_detector_stage(profile, "evaluate_cnn")
    assert "cnn/ef0/sbi" in set(evaluation.results_table(run)["method"])
    assert run.prediction_files("cnn/ef0/sbi", "test")[0].is_file()

    # Reloaded (robustness, dflib predict), it scores the test faces as the stage did.
    reload.check_saved(run, "cnn/ef0/sbi")
    test = stage_inputs.videos_with_faces(run).query("split == 'test'")
    again, _ = reload.score_methods(run, ["cnn/ef0/sbi"], face_store.FaceStore(run),
                                    test)["cnn/ef0/sbi"]
    merged = vids.merge(again, on="video_id", suffixes=("", "_again"))
    assert len(merged) == 4 and np.allclose(merged["score"], merged["score_again"], atol=1e-5)


def test_no_real_training_face_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    run = write_run(tmp_path, videos_table(n_real_train=0))
    with pytest.raises(ValueError, match=r"videos\.csv: the training split has no real video"):
        stages.run_detector_stage(profile_for(run), "train_sbi", verbose=0)


def test_real_faces_without_landmarks_only_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cnn, "build_model", tiny_model)
    run = write_run(tmp_path, videos_table(n_real_train=1), noise={"train_real0"})
    with pytest.raises(ValueError, match="no real face with landmarks"):
        stages.run_detector_stage(profile_for(run), "train_sbi", verbose=0)
