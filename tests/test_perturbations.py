"""The DeeperForensics-1.0 distortions (dflib.perturbations), their profile keys and the
stage's conditions (dflib.robustness.perturb_faces) on a small run folder made here."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from dflib import cli, config, face_extractor, face_store, io, perturbations, robustness
from dflib.paths import RunPaths
from dflib.robustness_fields import PERTURBATIONS
from dflib.video import read_frames


def picture(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth colour picture with some detail (values away from 0 and 255)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 215, (height // 8, width // 8, 3), np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ------------------------------------------------------------------- the distortions

@pytest.mark.parametrize("kind, identity", [("saturation", 1.0), ("contrast", 1.0),
                                            ("block", 0), ("noise", 0.0), ("blur", 1),
                                            ("pixelation", 1)])
def test_identity_parameters_return_the_input(kind, identity):
    frame = picture()
    out = perturbations.FRAME_DISTORTIONS[kind](frame, identity, rng())
    np.testing.assert_array_equal(out, frame)
    assert out.dtype == np.uint8 and out.shape == frame.shape


def test_saturation_zero_is_grey_of_the_same_luma():
    frame = picture()
    grey = perturbations.saturation(frame, 0.0)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    np.testing.assert_allclose(grey[..., 0], perturbations.luma(frame), atol=0.51)


def test_saturation_scales_chroma_and_keeps_luma():
    frame = picture()
    half = perturbations.saturation(frame, 0.5).astype(np.float32)
    y = perturbations.luma(frame)
    np.testing.assert_allclose(perturbations.luma(half.astype(np.uint8)), y, atol=0.6)
    np.testing.assert_allclose(half - y[..., None], 0.5 * (frame - y[..., None]), atol=0.51)


def test_contrast_scales_every_value_toward_black_as_the_authors_do():
    frame = picture()
    out = perturbations.contrast(frame, 0.6)
    np.testing.assert_allclose(out, frame * 0.6, atol=0.51)
    assert out.mean() < frame.mean()  # darker: their "contrast" is a gain, not about the mean


def test_block_count_follows_the_short_side_and_gives_small_frames_one_unit():
    assert perturbations.block_count((1080, 1920, 3), 16) == 64  # 4 units of 256 px
    assert perturbations.block_count((512, 300, 3), 80) == 80
    assert perturbations.block_count((240, 320, 3), 48) == 48  # theirs: 0 blocks


def test_block_covers_the_drawn_blocks_with_grey_and_nothing_else():
    frame = np.zeros((256, 300, 3), np.uint8)
    out = perturbations.block(frame, 32, np.random.default_rng(3))
    corners = perturbations.block_positions(frame.shape, 32, np.random.default_rng(3))
    assert len(corners) == 32
    expected = np.zeros(frame.shape[:2], bool)
    for r, c in corners:
        assert 0 <= r <= 256 - 9 and 0 <= c <= 300 - 9
        expected[r:r + 8, c:c + 8] = True
    np.testing.assert_array_equal(out[..., 0] == 128, expected)
    assert (out[~expected] == 0).all() and (out[expected] == 128).all()
    assert (frame == 0).all()  # the input is left alone


@pytest.mark.parametrize("variance", [0.001, 0.005])
def test_noise_has_the_target_variance_on_the_authors_scale(variance):
    """Their scale: studio-range YCbCr divided by 255 (Y 16..235, chroma 16..240)."""
    frame = np.full((400, 400, 3), 128, np.uint8)
    out = perturbations.noise(frame, variance, rng()).astype(np.float64)
    d = out - 128.0
    dy = d @ perturbations.LUMA
    d_cb = 0.564 * (d[..., 2] - dy)
    d_cr = 0.713 * (d[..., 0] - dy)
    assert np.var(dy * 219 / 255 / 255) == pytest.approx(variance, rel=0.05)
    assert np.var(d_cb * 224 / 255 / 255) == pytest.approx(variance, rel=0.05)
    assert np.var(d_cr * 224 / 255 / 255) == pytest.approx(variance, rel=0.05)


def test_noise_is_the_same_for_the_same_frame_and_seed():
    frame = picture()
    a = perturbations.noise(frame, 0.01, perturbations.frame_rng(0, "v", 3, "noise", 4))
    b = perturbations.noise(frame, 0.01, perturbations.frame_rng(0, "v", 3, "noise", 4))
    c = perturbations.noise(frame, 0.01, perturbations.frame_rng(1, "v", 3, "noise", 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("side", [7, 21])
def test_blur_of_a_delta_is_the_gaussian_of_sigma_side_over_six(side):
    frame = np.zeros((61, 61, 3), np.uint8)
    frame[30, 30] = 255
    out = perturbations.blur(frame, side)[..., 0].astype(np.float64)
    sigma = side / 6
    r = np.arange(side) - side // 2
    g = np.exp(-r ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    expected = np.zeros((61, 61))
    h = side // 2
    expected[30 - h:31 + h, 30 - h:31 + h] = 255 * np.outer(g, g)
    np.testing.assert_allclose(out, expected, atol=1.0)  # OpenCV's 8-bit fixed point


def test_pixelation_keeps_the_size_and_removes_fine_detail():
    frame = np.indices((96, 128)).sum(axis=0) % 2 * 255  # one-pixel checkerboard
    frame = np.repeat(frame[..., None], 3, axis=2).astype(np.uint8)
    out = perturbations.pixelation(frame, 2)
    assert out.shape == frame.shape
    assert out.std() < 0.05 * frame.std()  # the checkerboard averages out
    ramp = np.repeat(np.tile(np.linspace(20, 230, 128), (96, 1))[..., None], 3, 2).astype(np.uint8)
    assert np.abs(perturbations.pixelation(ramp, 4).astype(int) - ramp).mean() < 2.5


def test_pixelation_matches_down_then_up_bilinear():
    frame = picture()
    small = cv2.resize(frame, (128 // 3, 96 // 3), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(perturbations.pixelation(frame, 3),
                                  cv2.resize(small, (128, 96), interpolation=cv2.INTER_LINEAR))


def test_parameters_are_the_authors_levels_and_bad_ones_are_refused():
    assert perturbations.parameter("noise", 5) == 0.05
    assert perturbations.parameter("compression", 1) == 30
    assert all(len(v) == 5 for v in PERTURBATIONS.values())
    with pytest.raises(ValueError, match="level 6"):
        perturbations.parameter("blur", 6)
    with pytest.raises(ValueError, match="unknown distortion 'jpeg'"):
        perturbations.parameter("jpeg", 1)
    with pytest.raises(ValueError, match="not a frame distortion"):
        perturbations.distort(picture(), "compression", 1, rng())


# ------------------------------------------------------------------- profile keys

def write_profile(tmp_path, robustness_section):
    profile = {"run_name": "t", "dataset": "demo", "data_root": str(tmp_path / "data"),
               "outputs_dir": str(tmp_path / "outputs"),
               "robustness": robustness_section}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.mark.parametrize("section, message", [
    ({"perturbations": ["jpeg"]}, "robustness.perturbations[0]: 'jpeg' is not allowed"),
    ({"perturbation_levels": [0, 3]}, "robustness.perturbation_levels[0]: 0 is below the "
                                      "minimum 1"),
    ({"perturbation_levels": [1, 6]}, "robustness.perturbation_levels[1]: 6 is above the "
                                      "maximum 5"),
])
def test_dflib_check_refuses_bad_perturbation_keys_in_one_line(tmp_path, capsys, section,
                                                               message):
    assert cli.main(["check", str(write_profile(tmp_path, section))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_every_distortion_is_run_by_default(tmp_path):
    section = config.load(write_profile(tmp_path, {})).sections["robustness"]
    conditions = robustness.perturbation_conditions(section["perturbations"],
                                                    section["perturbation_levels"])
    assert len(conditions) == 35 and len({c.key for c in conditions}) == 35


# ------------------------------------------------------------------- the stage's conditions

EXTRACTOR = dict(img_size=32, margin=8, min_face_size=20, thresholds=[0.6, 0.7, 0.7],
                 factor=0.709, selection="largest", detect_max_side=0, redetect_every=1,
                 crop="stretch", multi_face="single", batch_size=8, device="cpu")


def write_video(path, frames: int = 6, seed: int = 0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (128, 96))
    for i in range(frames):
        writer.write(picture(seed=seed + i)[..., ::-1])
    writer.release()
    return path


def clean_run(tmp_path, n_videos: int = 2) -> tuple[RunPaths, pd.DataFrame]:
    """A run folder whose face store holds a box on every other frame of each video, as
    the faces stage writes it (the crops cut from the decoded frames)."""
    run = RunPaths(tmp_path / "run")
    run.face_store.mkdir(parents=True)
    extractor = face_extractor.FaceExtractor(**EXTRACTOR)
    rows = []
    for k in range(n_videos):
        vid = f"v{k}"
        path = write_video(tmp_path / f"{vid}.mp4", seed=10 * k)
        sampled = np.array([0, 2, 4])
        frames, _ = read_frames(path, sampled)
        boxes = np.array([[20, 10, 70, 70], [22, 12, 72, 72], [24, 14, 74, 74]], np.float32)
        has = np.array([True, False, True])
        crops = [extractor.cut_box(f, b) for f, b, h in zip(frames, boxes, has) if h]
        io.write_npz(run.face_file(vid), faces=np.stack(crops), frame_idx=sampled[has],
                     sampled_idx=sampled, has_face=has, boxes=boxes, status=np.array("ok"),
                     reason=np.array(""), config=np.array(json.dumps({"made": vid})))
        rows.append({"video_id": vid, "path": str(path), "label": k % 2, "split": "test"})
    return run, pd.DataFrame(rows)


CONDITIONS = [robustness.Condition("saturation", 5), robustness.Condition("noise", 3),
              robustness.Condition("compression", 5)]


def test_conditions_cut_the_clean_boxes_from_distorted_frames_and_are_reused(tmp_path):
    run, test = clean_run(tmp_path)
    extractor = face_extractor.FaceExtractor(**EXTRACTOR)
    made = robustness.perturb_faces(run, test, CONDITIONS, extractor, seed=0,
                                    preset="ultrafast", progress=False)
    assert made.failures == []
    for condition in CONDITIONS:
        videos = made.videos[condition]
        assert videos["n_faces"].tolist() == [2, 2]
        assert (videos["face_status"] == "ok").all()
        crops, frame_idx = face_store.FaceStore(condition.run(run)).load("v0")
        assert frame_idx.tolist() == [0, 4] and crops.shape == (2, 32, 32, 3)
    grey, _ = face_store.FaceStore(CONDITIONS[0].run(run)).load("v1")
    assert (grey[..., 0] == grey[..., 1]).all()  # saturation 0: grey faces
    clean, _ = face_store.FaceStore(run).load("v1")
    assert np.abs(grey.astype(int) - clean).mean() > 1
    # VC shares its re-encode with the CRF curve's folder
    assert run.crf_run(40).reencoded_video("v0").is_file()
    stamps = {c: c.run(run).face_file("v0").stat().st_mtime_ns for c in CONDITIONS}
    again = robustness.perturb_faces(run, test, CONDITIONS, extractor, seed=0,
                                     preset="ultrafast", progress=False)
    assert {c: c.run(run).face_file("v0").stat().st_mtime_ns for c in CONDITIONS} == stamps
    assert again.videos[CONDITIONS[1]].equals(made.videos[CONDITIONS[1]])
    # another seed redoes the noise only
    robustness.perturb_faces(run, test, CONDITIONS, extractor, seed=1, preset="ultrafast",
                             progress=False)
    changed = {c.kind for c in CONDITIONS
               if c.run(run).face_file("v0").stat().st_mtime_ns != stamps[c]}
    assert changed == {"noise"}


def test_a_video_that_cannot_be_decoded_is_recorded_and_the_others_go_on(tmp_path):
    run, test = clean_run(tmp_path)
    broken = tmp_path / "v1.mp4"
    broken.write_text("not a video")
    made = robustness.perturb_faces(run, test, CONDITIONS,
                                    face_extractor.FaceExtractor(**EXTRACTOR), seed=0,
                                    preset="ultrafast", progress=False)
    for condition in CONDITIONS:
        videos = made.videos[condition].set_index("video_id")
        assert videos.loc["v0", "n_faces"] == 2 and videos.loc["v1", "n_faces"] == 0
        assert videos.loc["v1", "face_status"] == "failed"
        assert face_store.FaceStore(condition.run(run)).load("v1")[0].shape[0] == 0
    assert {f["video_id"] for f in made.failures} == {"v1"}
    assert all(str(broken) in f["reason"] and "\n" not in f["reason"] for f in made.failures)
    assert {f["short"] for f in made.failures} == {"cannot re-encode",
                                                    "cannot decode for the perturbations"}
