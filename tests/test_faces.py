"""MTCNN face extraction and the face store (dflib.face_extractor, dflib.face_store, dflib.faces)
on small videos made here.

The face is the astronaut's head from scikit-image (bundled, no download) pasted on a
gradient; MTCNN's weights ship inside facenet-pytorch, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from facenet_pytorch import extract_face
from skimage.data import astronaut

from dflib import mtcnn, stages
from dflib.face_extractor import (CUT_THUMB, FaceExtractor, box_iou, changed_regions,
                                  interpolate_faces, predict_faces, shot_changes)
from dflib.face_store import (INDEX_COLUMNS, SUMMARY_COLUMNS, FaceStore, store_digest,
                              store_settings)
from dflib.faces import run_extraction
from dflib.paths import RunPaths, store_name
from dflib.steptimes import recording

HEAD = astronaut()[30:210, 135:315]  # RGB, the face and some hair around it
PARAMS = {"img_size": 64, "margin": 16, "min_face_size": 40, "batch_size": 16,
          "device": "cpu", "detect_max_side": 640, "sampling": "even", "workers": 0}
N_FRAMES = 6
W, H = 320, 240


def canvas(width: int, height: int) -> np.ndarray:
    """An RGB gradient background without anything face-like in it."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 120)],
                    axis=-1).astype(np.uint8)


def paste(img: np.ndarray, size: int, x: int, y: int, blur: float = 0) -> np.ndarray:
    head = cv2.resize(HEAD, (size, size), interpolation=cv2.INTER_AREA)
    if blur:
        head = cv2.GaussianBlur(head, (0, 0), blur)
    img[y:y + size, x:x + size] = head
    return img


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_index(folder: Path) -> pd.DataFrame:
    """A moving face, a blank video, one cut in half (unreadable), one missing."""
    face = write_video(folder / "face.mp4",
                       [paste(canvas(W, H), 110, 60 + 3 * i, 50 + i) for i in range(12)])
    blank = write_video(folder / "blank.mp4", [canvas(W, H) for _ in range(12)])
    data = face.read_bytes()
    (folder / "corrupt.mp4").write_bytes(data[: len(data) // 2])
    return pd.DataFrame({
        "video_id": ["Celeb-real/id0_0000", "YouTube-real/00001", "Celeb-synthesis/id0_id1_0000",
                     "Celeb-synthesis/id9_id8_0000"],
        "path": [str(face), str(blank), str(folder / "corrupt.mp4"), str(folder / "gone.mp4")],
        "label": [0, 0, 1, 1], "split": ["train", "test", "test", "val"],
    })


def extract(videos: pd.DataFrame, root: Path, **kwargs) -> pd.DataFrame:
    return stages.record_faces(RunPaths(root), run_extraction(
        videos, RunPaths(root), PARAMS, N_FRAMES, "even", 1, progress=False, **kwargs))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> pd.DataFrame:
    return make_index(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def extracted(videos, tmp_path_factory) -> tuple[RunPaths, pd.DataFrame]:
    root = tmp_path_factory.mktemp("run")
    return RunPaths(root), extract(videos, root)


@pytest.fixture(scope="module")
def extractor() -> FaceExtractor:
    return FaceExtractor.from_params(PARAMS)


# -- the extractor --------------------------------------------------------------------

def test_coarse_pass_scale_and_smallest_face():
    ex = FaceExtractor.from_params({"min_face_size": 40, "detect_max_side": 320})
    assert ex.detect_scale(320, 240) == 1.0 and ex.coarse_min_face(320, 240) == 40
    assert ex.detect_scale(1280, 720) == pytest.approx(0.25)
    assert ex.coarse_min_face(1280, 720) == pytest.approx(80)  # 20 detector px at 1/4
    assert ex.coarse_min_face(1920, 1080) == pytest.approx(120)
    assert FaceExtractor.from_params({"min_face_size": 200}).coarse_min_face(1920, 1080) == 200
    assert FaceExtractor.from_params({"detect_max_side": 0}).detect_scale(1920, 1080) == 1.0
    with pytest.raises(ValueError, match="margin"):
        FaceExtractor.from_params({"img_size": 64, "margin": 64})


def test_fast_path_agrees_with_full_resolution_and_crops_from_full_resolution(monkeypatch):
    frame = paste(canvas(1280, 720), 240, 700, 300)
    full = FaceExtractor.from_params({**PARAMS, "detect_max_side": 0})
    fast = FaceExtractor.from_params(PARAMS)
    scales = []
    detect = FaceExtractor._detect
    monkeypatch.setattr(FaceExtractor, "_detect",
                        lambda self, frames, scale: scales.append(scale) or
                        detect(self, frames, scale))
    got_fast, got_full = fast.extract([frame])[0], full.extract([frame])[0]
    assert scales == [0.5, 1.0]  # one coarse pass on the fast path, no retry needed
    assert iou(got_fast.box, got_full.box) > 0.8
    assert 700 - 30 < got_fast.box[0] < 700 + 120  # in full-resolution pixels
    # crop: stretch is facenet-pytorch's extract_face on the full-resolution frame.
    stretched = FaceExtractor.from_params({**PARAMS, "crop": "stretch"}).extract([frame])[0]
    reference = extract_face(frame, np.array(stretched.box), 64, PARAMS["margin"])
    reference = reference.permute(1, 2, 0).numpy().astype(np.uint8)  # float 0-255, CHW
    np.testing.assert_array_equal(stretched.face, reference)


def test_square_crop_keeps_the_face_proportions_and_stretch_widens_them(extractor):
    # A tall box (twice as high as wide) round a white ellipse on black, near the edge.
    frame = np.zeros((240, 320, 3), np.uint8)
    cv2.ellipse(frame, (40, 120), (20, 40), 0, 0, 360, (255, 255, 255), -1)
    det = np.array([[20.0, 80.0, 60.0, 160.0, 0.99]])
    square = FaceExtractor.from_params({**PARAMS, "crop": "square"})._crop(frame, det).face
    stretch = FaceExtractor.from_params({**PARAMS, "crop": "stretch"})._crop(frame, det).face

    def aspect(face):  # width / height of the white blob
        ys, xs = np.nonzero(face[..., 0] > 127)
        return (np.ptp(xs) + 1) / (np.ptp(ys) + 1)

    assert abs(aspect(square) - 0.5) < 0.08  # as in the frame
    assert aspect(stretch) > 0.8  # widened towards a circle
    ys, xs = np.nonzero(square[..., 0] > 127)
    assert abs(xs.mean() - 31.5) < 2 and abs(ys.mean() - 31.5) < 2  # centred
    assert FaceExtractor.from_params(PARAMS).crop == "square"  # the default


def test_a_frame_the_coarse_pass_misses_is_retried_at_full_resolution(monkeypatch):
    frame = paste(canvas(1280, 720), 240, 700, 300)
    scales = []
    detect = FaceExtractor._detect

    def coarse_blind(self, frames, scale):
        scales.append(scale)
        return [np.empty((0, 5))] * len(frames) if scale < 1 else detect(self, frames, scale)

    monkeypatch.setattr(FaceExtractor, "_detect", coarse_blind)
    got = FaceExtractor.from_params(PARAMS).extract([frame])[0]
    assert scales == [0.5, 1.0] and got.face is not None and got.reason == ""


def test_a_face_below_the_coarse_pass_minimum_is_found_at_full_resolution(monkeypatch):
    """A distant speaker: a head of 70 px (a face box of about 35 x 45) in 1280x720 is below the
    80 px the coarse pass of detect_max_side 320 looks for, above min_face_size 40."""
    frame = paste(canvas(1280, 720), 70, 900, 200)
    scales = []
    detect = FaceExtractor._detect
    monkeypatch.setattr(FaceExtractor, "_detect",
                        lambda self, frames, scale: scales.append(scale) or
                        detect(self, frames, scale))
    got = FaceExtractor.from_params({**PARAMS, "detect_max_side": 320}).extract([frame])[0]
    assert scales == [0.25, 1.0] and got.face is not None
    assert 900 - 20 < got.box[0] < 900 + 60


def test_cascade_finds_the_boxes_facenet_pytorch_finds(extractor):
    """dflib.mtcnn runs facenet-pytorch's networks with its own resampling and batching:
    same faces, boxes within resampling round-off."""
    import torch
    from facenet_pytorch.models.utils.detect_face import detect_face

    frames = [paste(paste(canvas(640, 360), 150, 400, 60), 90, 40 + 10 * i, 150)
              for i in range(3)] + [canvas(640, 360)]
    nets = extractor.mtcnn
    with torch.no_grad():
        reference, _ = detect_face(torch.from_numpy(np.stack(frames)).float(), 40, nets.pnet,
                                   nets.rnet, nets.onet, [0.6, 0.7, 0.7], 0.709, "cpu")
    ours = mtcnn.detect(frames, nets, 40, [0.6, 0.7, 0.7], 0.709)
    assert [len(b) for b in ours] == [len(np.asarray(r).reshape(-1, 5)) for r in reference]
    assert [len(b) for b in ours] == [2, 2, 2, 0]
    for got, want in zip(ours[:3], reference[:3]):
        got, want = got[np.argsort(got[:, 0])], np.asarray(want, dtype=float)
        want = want[np.argsort(want[:, 0])]
        assert all(iou(g, w) > 0.9 for g, w in zip(got, want))
        np.testing.assert_allclose(got[:, 4], want[:, 4], atol=0.02)


def test_pyramid_resized_by_torch_finds_the_same_faces(extractor):
    """The GPU path builds the pyramid with torch on the networks' device; on CPU tensors
    it must find the faces OpenCV's pyramid finds, boxes within resampling round-off."""
    frames = [paste(paste(canvas(640, 360), 150, 400, 60), 90, 40 + 10 * i, 150)
              for i in range(2)] + [canvas(640, 360)]
    args = (frames, extractor.mtcnn, 40, [0.6, 0.7, 0.7], 0.709)
    opencv = mtcnn.detect(*args, resize_on_device=False)
    torch_levels = mtcnn.detect(*args, resize_on_device=True)
    assert [len(b) for b in torch_levels] == [len(b) for b in opencv] == [2, 2, 0]
    for got, want in zip(torch_levels[:2], opencv[:2]):
        got, want = got[np.argsort(got[:, 0])], want[np.argsort(want[:, 0])]
        assert all(iou(g, w) > 0.9 for g, w in zip(got, want))
        np.testing.assert_allclose(got[:, 4], want[:, 4], atol=0.02)


def test_pyramid_levels_are_resized_from_larger_levels_not_each_from_the_frame(
        extractor, monkeypatch):
    """Area interpolation reads every source pixel: resizing each level of a 1080p frame's
    pyramid from the frame cost more than PNet over the levels. Only the first three
    levels read the frame; each later one is made from a level about three times its
    width."""
    frame = paste(canvas(1280, 720), 150, 400, 60)
    sources: list[tuple[int, int]] = []
    resize = cv2.resize
    monkeypatch.setattr(mtcnn.cv2, "resize", lambda src, size, **kw: sources.append(
        (src.shape[1], size[0])) or resize(src, size, **kw))
    levels = list(mtcnn._pyramid([frame], mtcnn.pyramid_scales(720, 1280, 40, 0.709),
                                 "cpu", False))
    assert len(levels) == len(sources) > 6
    assert [src for src, _ in sources].count(1280) == 3
    assert all(mtcnn.PYRAMID_SOURCE * dst <= src < 4 * dst for src, dst in sources[3:])
    monkeypatch.undo()
    found = mtcnn.detect([frame], extractor.mtcnn, 40, [0.6, 0.7, 0.7], 0.709)[0]
    assert len(found) == 1  # the pasted head, whose face lies inside it:
    assert 400 <= found[0][0] < found[0][2] <= 550 and 60 <= found[0][1] < found[0][3] <= 210


def test_confirm_keeps_a_face_near_its_proposal_and_drops_one_that_left(extractor):
    frame = paste(canvas(640, 360), 150, 300, 100)
    found = mtcnn.detect([frame], extractor.mtcnn, 40, [0.6, 0.7, 0.7], 0.709)[0]
    moved = paste(canvas(640, 360), 150, 312, 106)  # the next frame: the head moved
    kept, empty = mtcnn.confirm([moved, canvas(640, 360)], extractor.mtcnn, [found, found],
                                [0.6, 0.7, 0.7])
    assert len(kept) == 1 and len(empty) == 0
    fresh = mtcnn.detect([moved], extractor.mtcnn, 40, [0.6, 0.7, 0.7], 0.709)[0]
    assert iou(kept[0], fresh[0]) > 0.85 and kept[0][0] > found[0][0]


def test_only_every_nth_frame_is_searched_and_lost_faces_are_searched_again(monkeypatch):
    """Frames 0 and 3 are searched; 1, 2 and 4 confirm their key frame's face; frame 5
    lost it (the head left), so it is searched in full and has none."""
    frames = [paste(canvas(640, 360), 120, 100 + 8 * i, 80) for i in range(5)]
    frames.append(canvas(640, 360))
    searched: list[int] = []
    search = FaceExtractor._search
    monkeypatch.setattr(FaceExtractor, "_search", lambda self, batch, *known, **kw: searched.append(
        len(batch)) or search(self, batch, *known, **kw))
    tracked = FaceExtractor.from_params({**PARAMS, "redetect_every": 3}).extract(frames)
    every = FaceExtractor.from_params({**PARAMS, "redetect_every": 1}).extract(frames)
    # key frame 0 in full (key frame 3 finds the face near frame 0's), then frame 5; then
    # every frame in full
    assert searched == [1, 1, 6]
    assert [f.reason for f in tracked] == [f.reason for f in every] == [""] * 5 + ["no_face"]
    # The head jumps 8 px a frame here; on real footage the boxes agree more closely
    # (dflib bench extract reports the IoU with the original per-frame pipeline).
    assert all(iou(t.box, e.box) > 0.8 for t, e in zip(tracked[:5], every[:5]))


def test_in_a_shot_without_a_face_frames_are_searched_where_they_changed(monkeypatch):
    """Key frames 0 and 4; key frame 0 has no face. Frame 1 did not change: not searched.
    Frame 2 changed all over (brighter, not a cut): searched in full. A small face comes in
    at frame 3 (a 70 px head, below the 80 px of the coarse pass of detect_max_side 320):
    only the region round it is searched, at full depth, and finds it, as does key frame 4
    (changed against key frame 0 there only). Before, frame 3 had the coarse pass only and
    lost the face until the next key frame."""
    small = paste(canvas(1280, 720), 70, 900, 200)
    brighter = np.clip(canvas(1280, 720).astype(np.int16) + 20, 0, 255).astype(np.uint8)
    frames = [canvas(1280, 720), canvas(1280, 720), brighter, small, small.copy(),
              small.copy()]
    scales, sizes = [], []
    detect = FaceExtractor._detect
    monkeypatch.setattr(FaceExtractor, "_detect", lambda self, batch, scale: scales.append(
        scale) or sizes.append(batch[0].shape[1]) or detect(self, batch, scale))
    with recording() as record:
        found = FaceExtractor.from_params({**PARAMS, "detect_max_side": 320,
                                           "redetect_every": 4}).extract(frames)
    assert [f.face is not None for f in found] == [False, False, False, True, True, True]
    assert 900 - 20 < found[3].box[0] < 900 + 60
    assert record.counts["still"] == 1 and record.counts["changed_searches"] == 2
    # key 0: coarse, then full resolution; key 4 and frame 3: their changed region at full
    # resolution; frame 2: coarse, then full resolution
    assert scales == [0.25, 1.0, 1.0, 1.0, 0.25, 1.0]
    assert sizes[2] < 320 and sizes[3] < 320  # the regions, not the frame


def test_changes_apart_are_searched_as_separate_regions():
    """Two changes far apart (a logo's animation, someone coming in) are two regions, each
    grown round its change; boxed together they had made one region of half the frame.
    Many scattered changes are searched as one region round them all."""
    moved = np.zeros((CUT_THUMB, CUT_THUMB), bool)
    moved[10:12, 5:7] = True  # x 100-140, y 112-135 of 1280 x 720
    moved[40:44, 50:53] = True  # x 1000-1060, y 450-495
    regions = changed_regions(moved, 1280, 720, 40)
    assert len(regions) == 2
    (a, b) = sorted(regions)
    assert a[0] <= 100 - 40 and a[2] >= 140 + 40 and a[1] <= 112 - 20 and a[3] >= 135 + 20
    assert b[0] <= 1000 - 30 and b[2] >= 1060 + 30 and b[1] <= 450 - 30 and b[3] >= 495 + 30
    assert sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions) < 0.1 * 1280 * 720
    scattered = np.zeros_like(moved)
    scattered[::16, ::16] = True  # 16 changes spread over the frame
    # the last change at thumbnail pixel 48, 48: x 960-980, y 540-551, grown by 40
    assert changed_regions(scattered, 1280, 720, 40) == [(0, 0, 1020, 591)]


def test_key_frames_are_searched_near_the_last_face_and_in_full_when_it_is_not_there(
        monkeypatch):
    """A small face in a large frame: key frame 0 is searched in full, the next key frames
    near the face the one before kept; after a jump across the frame, the region holds no
    face and that key frame is searched in full again. No face is lost."""
    xs = [1200, 1212, 1224, 1236, 200, 212]
    frames = [paste(canvas(1920, 1080), 64, x, 500) for x in xs]
    calls: list[str] = []
    search, near = FaceExtractor._search, FaceExtractor._search_near
    monkeypatch.setattr(FaceExtractor, "_search", lambda self, batch, *known, **kw: calls.append(
        "full") or search(self, batch, *known, **kw))
    monkeypatch.setattr(FaceExtractor, "_search_near", lambda self, frame, boxes: calls.append(
        "near") or near(self, frame, boxes))
    found = FaceExtractor.from_params({**PARAMS, "detect_max_side": 320,
                                       "redetect_every": 1 + 1}).extract(frames)
    # keys 0, 2, 4: full, near (found), near (the face jumped away: none), full
    assert calls[:4] == ["full", "near", "near", "full"]
    every = FaceExtractor.from_params({**PARAMS, "detect_max_side": 320,
                                       "redetect_every": 1}).extract(frames)
    assert all(f.face is not None for f in found)
    assert all(iou(f.box, e.box) > 0.8 for f, e in zip(found, every))


def test_a_face_that_stays_put_is_interpolated_between_key_frames():
    """A seated subject drifting a pixel a frame: the first frame is searched, each later
    key frame (the last frame is one) confirms the face where it was, and the frames
    between take boxes interpolated between the key frames' without a network; they stay
    on the face that the paper's every-frame search finds."""
    frames = [paste(canvas(W, H), 110, 60 + i, 50) for i in range(9)]
    extractor = FaceExtractor.from_params({**PARAMS, "redetect_every": 4})
    with recording() as record:
        found = extractor.extract(frames)
    assert record.counts.get("full_searches") == 1
    assert record.counts.get("confirmed") == 2  # key frames 4 and 8
    assert record.counts.get("interpolated") == 6 and not record.counts.get("near_searches")
    boxes = np.array([f.box for f in found])
    for key, end in ((0, 4), (4, 8)):
        for i in range(key + 1, end):
            t = (i - key) / (end - key)
            assert boxes[i] == pytest.approx((1 - t) * boxes[key] + t * boxes[end])
    every = FaceExtractor.from_params({**PARAMS, "redetect_every": 1}).extract(frames)
    assert all(iou(f.box, e.box) > 0.8 for f, e in zip(found, every))


def test_faces_are_interpolated_only_where_they_pair_up():
    face, other = [100, 50, 160, 110, 0.99], [200, 50, 260, 110, 0.99]
    moved = [104, 52, 164, 112, 0.98]
    half = interpolate_faces(np.array([face]), np.array([moved]), 0.5)
    assert half.tolist() == [[102, 51, 162, 111, 0.98]]  # the lower probability
    pair = interpolate_faces(np.array([face, other]), np.array([other, moved]), 0.25)
    assert pair[:, 0].tolist() == [101, 200]  # each face towards its own
    assert interpolate_faces(np.array([face]), np.array([face, other]), 0.5) is None
    assert interpolate_faces(np.array([face]), np.array([other]), 0.5) is None  # moved away
    assert interpolate_faces(np.array([face]), np.empty((0, 5)), 0.5) is None
    assert interpolate_faces(np.empty((0, 5)), np.empty((0, 5)), 0.5).shape == (0, 5)


def test_frames_between_two_key_frames_without_a_face_are_not_searched(monkeypatch):
    """A title card that changes every frame (no face), then a face that comes in: the
    frames between key frames 0 and 3, both without a face, take none without a search;
    the frames between key frame 3 (none) and the last (a face) are searched where they
    changed, and the face is found where it came in, as the every-frame search finds it."""
    frames = [np.clip(canvas(1280, 720).astype(np.int16) + 30 * i, 0, 255).astype(np.uint8)
              for i in range(4)]
    frames += [paste(frames[-1].copy(), 70, 900, 200) for _ in range(3)]
    changed = FaceExtractor._search_changed
    searched: list[int] = []
    monkeypatch.setattr(FaceExtractor, "_search_changed", lambda self, frame, *a: searched.append(
        next(i for i, f in enumerate(frames) if f is frame)) or changed(self, frame, *a))
    with recording() as record:
        found = FaceExtractor.from_params({**PARAMS, "detect_max_side": 320,
                                           "redetect_every": 3}).extract(frames)
    every = FaceExtractor.from_params({**PARAMS, "detect_max_side": 320,
                                       "redetect_every": 1}).extract(frames)
    assert [f.face is not None for f in found] == [f.face is not None for f in every] == [
        False] * 4 + [True] * 3
    assert record.counts["interpolated"] == 2  # frames 1 and 2
    assert 1 not in searched and 2 not in searched and {4, 5} <= set(searched)


def test_a_face_is_proposed_where_its_motion_takes_it():
    earlier = np.array([[100, 50, 160, 110, 0.99], [400, 50, 440, 90, 0.99]])
    previous = np.array([[124, 52, 184, 112, 0.98], [600, 50, 640, 90, 0.99]])
    predicted = predict_faces(previous, earlier)
    assert predicted[0].tolist() == [148, 54, 208, 114, 0.98]  # on by another step
    assert predicted[1].tolist() == previous[1].tolist()  # no box of it before: stays
    assert predict_faces(previous, np.empty((0, 5))).tolist() == previous.tolist()


def test_a_walking_face_keeps_its_track_between_key_frames():
    """Two people; the chosen one walks 24 px a frame, two fifths of its face's width (as
    people walking toward a 1080p camera at 25 fps do). Where the networks do not confirm
    it at its last box, it is searched for around there, found, and stays the stored face;
    before, the other person, confirmed in place, took over in the first frames."""
    frames = []
    for i in range(5):
        img = paste(canvas(640, 360), 120, 20 + 24 * i, 60)
        frames.append(paste(img, 100, 500, 200))
    found = FaceExtractor.from_params({**PARAMS, "redetect_every": 5}).extract(frames)
    centres = [(f.box[0] + f.box[2]) / 2 for f in found]
    assert all(abs(c - (80 + 24 * i)) < 20 for i, c in enumerate(centres)), centres
    assert [f.rule for f in found][1:] == ["track"] * 4


def test_extraction_runs_torch_on_one_thread_and_gives_the_threads_back(videos, tmp_path,
                                                                          monkeypatch):
    import torch

    from dflib import faces

    seen = []
    extract_frames = FaceExtractor.extract
    monkeypatch.setattr(FaceExtractor, "extract", lambda self, frames: seen.append(
        torch.get_num_threads()) or extract_frames(self, frames))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        extract(videos.iloc[:2], tmp_path)
        assert seen == [faces.EXTRACT_TORCH_THREADS] * 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


FAULTS_OF_A_SECOND_VIDEO = """
import resource, sys
import numpy as np
from dflib.devices import settle_frame_memory
kept = settle_frame_memory() if sys.argv[1] == "keep" else False
def frames():  # 25 frames of 720p, touched as a decoder writes them
    return [np.ones((720, 1280, 3), np.uint8) for _ in range(25)]
first = frames()
del first
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
second = frames()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc on Linux")
def test_extraction_keeps_the_memory_a_video_frees_for_the_next(videos, tmp_path, monkeypatch):
    """The next video's frames reuse the memory the last one freed instead of faulting
    every page in afresh (which cost 600-950 ms on some 1080p decodes of 180 ms)."""
    import subprocess

    from dflib import faces

    called = []
    monkeypatch.setattr(faces, "settle_frame_memory", lambda: called.append(True))
    extract(videos.iloc[:1], tmp_path)
    assert called
    runs = {how: subprocess.run([sys.executable, "-c", FAULTS_OF_A_SECOND_VIDEO, how],
                                capture_output=True, text=True, check=True).stdout.split()
            for how in ("keep", "default")}
    assert runs["keep"][0] == "True"
    pages = 25 * 720 * 1280 * 3 // 4096
    assert int(runs["default"][1]) > pages / 2  # the control: glibc gave the memory back
    assert int(runs["keep"][1]) < pages / 20


@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 2), (16, 16)])
def test_decoding_ahead_may_use_every_core(cores, threads):
    from dflib import faces

    assert faces.ahead_decoder_threads(cores) == threads


def test_decode_ahead_decodes_below_the_detector_s_priority(videos, monkeypatch):
    import threading

    from dflib import faces, video

    seen, niceness = [], []
    monkeypatch.setattr(faces, "cpu_cores", lambda: 3)
    monkeypatch.setattr(faces, "sample_frames", lambda path, *a: seen.append(video._threads())
                        or niceness.append(os.getpriority(os.PRIO_PROCESS,
                                                          threading.get_native_id())) or path)
    paths = [str(p) for p in videos["path"].iloc[:2]]
    assert list(faces.decode_ahead(paths, 2, "first", 1)) == paths
    assert seen == [3, 3] and video._threads() == video._decoder_threads
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if sys.platform.startswith("linux"):
        assert niceness == [min(19, caller + faces.DECODE_AHEAD_NICENESS)] * 2


def test_without_a_spare_core_each_video_is_decoded_when_asked_for(videos, monkeypatch):
    import threading

    from dflib import faces

    decoded = []
    monkeypatch.setattr(faces, "cpu_cores", lambda: 1)
    monkeypatch.setattr(faces, "sample_frames", lambda path, *a: decoded.append(
        (path, threading.current_thread() is threading.main_thread())) or path)
    paths = [str(p) for p in videos["path"].iloc[:2]]
    ahead = faces.decode_ahead(paths, 2, "first", 1)
    assert next(ahead) == paths[0] and decoded == [(paths[0], True)]  # not the next yet
    assert list(ahead) == paths[1:] and decoded[1:] == [(paths[1], True)]


def test_selection_largest_or_most_probable(extractor):
    # The large head is blurred: MTCNN still finds it, with a lower probability.
    frame = paste(paste(canvas(640, 360), 200, 350, 80, blur=8), 90, 60, 100)
    largest = FaceExtractor(**{**extractor.params, "selection": "largest"}).extract([frame])[0]
    likely = FaceExtractor(**{**extractor.params, "selection": "probability"}).extract([frame])[0]
    assert largest.n_detected == likely.n_detected == 2
    assert largest.box[0] > 300 and likely.box[0] < 200
    assert likely.prob > largest.prob


# --------------------------------------------------------------------------- distractors

HAND = (180, 60, 310, 200)  # a hand-like blob beside the face, larger than it
HAND_RGB = (205, 150, 120)
HAND_PROB = 0.85  # what MTCNN gave the folded hands of a news clip (0.71 to 0.92)


def distractor_footage() -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    """20 sampled frames and the region of the face that should be stored in each: the
    astronaut moving slowly, with a hand-like blob beside her in frames 1-10 (which the
    cascade below reports as a face of probability HAND_PROB), then a cut (frame 12) to
    Grace Hopper in close-up on another background."""
    import matplotlib.cbook

    frames, targets = [], []
    for i in range(12):
        img = paste(canvas(W, H), 110, 30 + 2 * i, 50)
        if 1 <= i <= 10:
            cv2.ellipse(img, ((HAND[0] + HAND[2]) // 2, (HAND[1] + HAND[3]) // 2),
                        ((HAND[2] - HAND[0]) // 2, (HAND[3] - HAND[1]) // 2), 0, 0, 360,
                        HAND_RGB, -1)
        frames.append(img)
        targets.append((30 + 2 * i, 50, 140 + 2 * i, 160))
    photo = cv2.cvtColor(cv2.imread(str(matplotlib.cbook.get_sample_data(
        "grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    close_up = cv2.resize(photo[80:380, 130:400], (216, 240), interpolation=cv2.INTER_AREA)
    for i in range(8):
        img = np.full((H, W, 3), 30, np.uint8)
        img[:, 50 + i:266 + i] = close_up
        frames.append(img)
        targets.append((85 + i, 30, 235 + i, 210))  # her face (0.8 x the photo's box)
    return frames, targets


def with_hand(frame: np.ndarray, boxes: np.ndarray, proposals: np.ndarray | None = None
              ) -> np.ndarray:
    """``boxes`` plus the hand, where the frame shows it (and, when confirming, where a
    proposal covers it): MTCNN's verdict on a hand, in this frame's pixels."""
    h, w = frame.shape[:2]
    s = w / W
    hand = np.array([*(np.array(HAND) * s), HAND_PROB])
    cx, cy = int((HAND[0] + HAND[2]) / 2 * s), int((HAND[1] + HAND[3]) / 2 * s)
    shown = np.abs(frame[cy, cx].astype(int) - HAND_RGB).max() < 12
    if proposals is not None and shown:
        shown = len(proposals) > 0 and box_iou(hand[:4], np.asarray(proposals)[:, :4]).max() > 0.3
    return np.vstack([boxes, hand[None]]) if shown else boxes


def share_on_target(extractor: FaceExtractor, monkeypatch) -> tuple[float, list]:
    """The share of frames of :func:`distractor_footage` whose stored face is the one that
    should be (its box centre inside that face's region), with the hand reported by the
    cascade wherever it is visible."""
    detect, confirm = mtcnn.detect, mtcnn.confirm
    monkeypatch.setattr(mtcnn, "detect", lambda frames, *a, **kw: [
        with_hand(f, b) for f, b in zip(frames, detect(frames, *a, **kw))])
    # The hand is injected in whole-frame pixels, so key frames are searched whole here,
    # not in a region around the last face (which would see the hand elsewhere) nor only
    # where the last one was (which would not see it at all).
    monkeypatch.setattr(FaceExtractor, "_search_near", lambda self, frame, box: np.empty((0, 5)))
    monkeypatch.setattr(FaceExtractor, "_confirm_still",
                        lambda self, frame, faces: np.empty((0, 5)))
    monkeypatch.setattr(mtcnn, "confirm", lambda frames, nets, props, th: [
        with_hand(f, b, p) for f, b, p in zip(frames, confirm(frames, nets, props, th), props)])
    frames, targets = distractor_footage()
    found = extractor.extract(frames)
    hits = [f.box is not None and x1 < (f.box[0] + f.box[2]) / 2 < x2
            and y1 < (f.box[1] + f.box[3]) / 2 < y2
            for f, (x1, y1, x2, y2) in zip(found, targets)]
    return float(np.mean(hits)), found


def test_hands_and_cuts_do_not_take_the_face_s_place(monkeypatch):
    extractor = FaceExtractor.from_params({**PARAMS, "selection": "largest"})
    share, found = share_on_target(extractor, monkeypatch)
    assert share == 1.0
    rules = [f.rule for f in found]
    # key frames 5 and 10 see the hand beside the face: the face continues its track; the
    # frames between them and after key frame 0 (no hand) take the face alone
    assert rules[5] == rules[10] == "track"
    assert set(rules[1:5]) == set(rules[6:10]) == {"only"}
    assert [f.shot_change for f in found] == [i == 12 for i in range(20)]


def test_cuts_are_found_in_720p_frames_as_in_small_ones():
    # 720p thumbnails average every fifth pixel (the cost of a decode otherwise): the cut
    # between the two shots is still the one cut found, and a pan is none.
    frames, _ = distractor_footage()
    large = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC) for f in frames]
    assert shot_changes(large) == shot_changes(frames) == [i == 12 for i in range(20)]


def test_faces_of_similar_size_are_counted_per_frame(extractor, tmp_path):
    pair = paste(paste(canvas(W, H), 100, 20, 60), 90, 190, 70)
    small = paste(paste(canvas(W, H), 110, 20, 60), 44, 240, 150)
    counted = [f.n_faces for f in extractor.extract([pair, small])]
    assert counted == [2, 1]  # two people; one face and a far smaller one
    video = write_video(tmp_path / "two.mp4", [pair] * 6)
    run = RunPaths(tmp_path / "run")
    run_extraction(pd.DataFrame({"video_id": ["two"], "path": [str(video)], "label": [0],
                                 "split": ["test"]}), run, PARAMS, N_FRAMES, "even", 1,
                   progress=False)
    assert set(FaceStore(run).index()["n_faces"]) == {2}


def test_extract_groups_frames_of_different_sizes(extractor):
    frames = [paste(canvas(W, H), 110, 60, 50), canvas(200, 150),
              paste(canvas(400, 300), 120, 200, 90)]
    got = extractor.extract(frames)
    assert [f.reason for f in got] == ["", "no_face", ""]
    assert got[1].face is None and got[1].box is None and np.isnan(got[1].prob)
    assert got[2].box[0] > 180 and got[0].face.shape == (64, 64, 3)


def test_store_name_is_safe_and_unique():
    names = [store_name(v) for v in
             ["Celeb-real/id0_0000", "Celeb-real%2Fid0_0000", "Celeb-real__id0_0000",
              "dir\\x", ".hidden", "Übung/vidéo"]]
    assert len(set(names)) == len(names)
    assert all("/" not in n and "\\" not in n and not n.startswith(".") for n in names)
    assert names[-1] == "Übung%2Fvidéo"


# -- a run over an index --------------------------------------------------------------

def test_run_finds_faces_inside_the_frame(extracted):
    run, summary = extracted
    assert list(summary.columns) == SUMMARY_COLUMNS
    face = summary.set_index("video_id").loc["Celeb-real/id0_0000"]
    assert (face.status, face.n_sampled, face.n_faces) == ("ok", N_FRAMES, N_FRAMES)
    index = FaceStore(run).index()
    assert list(index.columns) == INDEX_COLUMNS
    rows = index[index.video_id == "Celeb-real/id0_0000"]
    assert rows.frame_idx.tolist() == [0, 2, 4, 6, 8, 11]  # even over 12 frames
    assert (rows.face == 1).all() and (rows.prob > 0.9).all() and (rows.reason == "").all()
    assert ((rows.x1 >= 0) & (rows.y1 >= 0) & (rows.x2 <= W) & (rows.y2 <= H)).all()
    assert ((rows.x2 - rows.x1) > 40).all() and rows.store_row.tolist() == list(range(N_FRAMES))
    faces, frame_idx = FaceStore(run).load("Celeb-real/id0_0000")
    assert faces.shape == (N_FRAMES, 64, 64, 3) and faces.dtype == np.uint8
    assert frame_idx.tolist() == rows.frame_idx.tolist()


def test_no_face_video_keeps_its_rows(extracted):
    run, summary = extracted
    blank = summary.set_index("video_id").loc["YouTube-real/00001"]
    assert (blank.status, blank.n_sampled, blank.n_faces) == ("no_face", N_FRAMES, 0)
    rows = FaceStore(run).index().query("video_id == 'YouTube-real/00001'")
    assert len(rows) == N_FRAMES and (rows.face == 0).all() and (rows.reason == "no_face").all()
    assert rows.x1.isna().all() and (rows.store_row == -1).all()
    faces, frame_idx = FaceStore(run).load("YouTube-real/00001")
    assert faces.shape == (0, 64, 64, 3) and frame_idx.shape == (0,)


def test_corrupt_video_is_recorded_and_the_run_goes_on(extracted):
    run, summary = extracted
    vid = "Celeb-synthesis/id0_id1_0000"
    bad = summary.set_index("video_id").loc[vid]
    assert bad.status == "failed" and "corrupt.mp4" in bad.reason
    rows = FaceStore(run).index().query("video_id == @vid")
    assert rows.frame_idx.tolist() == [-1] and rows.reason.iloc[0] == bad.reason
    assert run.face_file(vid).is_file()  # stored, so a rerun does not retry it
    failures = pd.read_csv(run.failures_csv)
    assert set(failures.video_id) == {vid, "YouTube-real/00001", "Celeb-synthesis/id9_id8_0000"}
    assert (failures.stage == "faces").all()
    assert FaceStore(run).summary().equals(pd.read_csv(run.faces_summary_csv, dtype={"reason": str})
                                           .fillna({"reason": ""}))


def test_missing_file_is_failed_but_retried_next_time(extracted):
    run, summary = extracted
    vid = "Celeb-synthesis/id9_id8_0000"
    missing = summary.set_index("video_id").loc[vid]
    assert missing.status == "failed" and missing.reason.endswith("gone.mp4: file not found")
    assert FaceStore(run).index().query("video_id == @vid").frame_idx.tolist() == [-1]
    assert not run.face_file(vid).exists()  # nothing stored: the next run tries again


def test_rerun_redoes_only_what_is_missing(videos, extracted, tmp_path):
    run0, _ = extracted
    shutil.copytree(run0.root, tmp_path, dirs_exist_ok=True)
    run = RunPaths(tmp_path)
    redo, keep = "Celeb-real/id0_0000", ["YouTube-real/00001", "Celeb-synthesis/id0_id1_0000"]
    before = {v: run.face_file(v).stat().st_mtime_ns for v in keep}
    run.face_file(redo).unlink()
    # A temp file left by a killed writer must not count as the video's store file.
    (run.face_store / f".{store_name(redo)}.npz.x1y2.part").write_bytes(b"half a file")
    extract(videos, tmp_path)
    assert {v: run.face_file(v).stat().st_mtime_ns for v in keep} == before
    assert run.face_file(redo).is_file()
    assert run.faces_csv.read_text() == run0.faces_csv.read_text()
    assert run.faces_summary_csv.read_text() == run0.faces_summary_csv.read_text()


def test_other_settings_redo_the_store(videos, extracted, tmp_path):
    run0, _ = extracted
    shutil.copytree(run0.root, tmp_path, dirs_exist_ok=True)
    run = RunPaths(tmp_path)
    vid = "Celeb-real/id0_0000"
    run_extraction(videos.iloc[:1], run, {**PARAMS, "img_size": 32}, N_FRAMES, "even", 1,
                   progress=False)
    assert FaceStore(run).load(vid)[0].shape == (N_FRAMES, 32, 32, 3)
    assert FaceStore(run).index().video_id.unique().tolist() == [vid]


def test_a_replaced_video_file_redoes_its_store_and_what_reads_it(videos, extracted, tmp_path,
                                                                    capsys):
    run0, _ = extracted
    shutil.copytree(run0.root, tmp_path, dirs_exist_ok=True)
    run = RunPaths(tmp_path)
    vid, other = "Celeb-real/id0_0000", "YouTube-real/00001"
    digest = store_digest(run, vid)
    before = run.face_file(other).stat().st_mtime_ns
    source = Path(videos.set_index("video_id").loc[vid, "path"])
    stat = source.stat()
    try:  # the same name with a new modification time: a replaced file
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        capsys.readouterr()
        extract(videos, tmp_path)
        assert ("faces: 1 store files made from something else, redone "
                "(video file replaced: 1)") in capsys.readouterr().out
        assert store_digest(run, vid) not in ("", digest)
        assert run.face_file(other).stat().st_mtime_ns == before
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_store_from_before_the_crop_setting_is_redone_square(videos, extracted, tmp_path):
    run0, _ = extracted
    shutil.copytree(run0.root, tmp_path, dirs_exist_ok=True)
    run = RunPaths(tmp_path)
    vid = "Celeb-real/id0_0000"
    with np.load(run.face_file(vid)) as z:
        record = dict(z)
    config = json.loads(str(record["config"]))
    del config["crop"]
    np.savez(run.face_file(vid), **{**record, "config": np.array(json.dumps(config))})
    extract(videos.iloc[:1], tmp_path)
    with np.load(run.face_file(vid)) as z:
        assert json.loads(str(z["config"]))["crop"] == "square"


def test_store_settings_read_back_the_extraction_settings(extracted, tmp_path):
    run0, _ = extracted
    settings = store_settings(run0, batch_size=4)
    assert settings.extractor == {**FaceExtractor.from_params(PARAMS).params, "batch_size": 4,
                                  "device": "auto"}
    assert (settings.frames_per_video, settings.sampling) == (N_FRAMES, "even")
    # A store written before redetect_every existed searched every frame.
    old = RunPaths(tmp_path)
    old.face_store.mkdir(parents=True)
    with np.load(run0.face_file("Celeb-real/id0_0000")) as z:
        record = dict(z)
    config = json.loads(str(record["config"]))
    del config["redetect_every"], config["cascade"], config["crop"]
    np.savez(old.face_store / "old.npz", **{**record, "config": np.array(json.dumps(config))})
    assert store_settings(old).extractor["redetect_every"] == 1
    # ... and one written before crop existed stretched its boxes: it is redone.
    assert store_settings(old).extractor["crop"] == "stretch"


@pytest.mark.slow
def test_dask_workers_give_the_same_index(videos, extracted, tmp_path):
    run0, _ = extracted
    extract(videos.iloc[:2], tmp_path, workers=1)
    dask_index = FaceStore(RunPaths(tmp_path)).index()
    local = FaceStore(run0).index()
    local = local[local.video_id.isin(videos.video_id.iloc[:2])].reset_index(drop=True)
    pd.testing.assert_frame_equal(dask_index, local, check_exact=False, rtol=1e-4)


def _ffmpeg(*args: str) -> None:
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def test_a_container_claiming_more_frames_than_it_holds_is_sampled_from_the_frames_it_has(
        tmp_path, extractor):
    """Audio longer than the picture: the MKV container says 125 frames, the stream has 12."""
    from dflib.faces import extract_video
    from dflib.video import probe, sample_indices

    face = write_video(tmp_path / "face.mp4",
                       [paste(canvas(W, H), 110, 60 + 3 * i, 50 + i) for i in range(12)])
    clip = tmp_path / "long_audio.mkv"
    _ffmpeg("-i", str(face), "-f", "lavfi", "-i", "sine=duration=5", "-map", "0:v", "-map",
            "1:a", "-c:v", "copy", "-c:a", "libvorbis", str(clip))
    assert probe(clip).n_frames > 12  # what the container claims
    arrays = extract_video("v", clip, extractor, N_FRAMES, "even")
    assert str(arrays["status"]) == "ok" and "truncated" not in str(arrays["reason"])
    assert arrays["sampled_idx"].tolist() == sample_indices(12, N_FRAMES, "even")
    assert arrays["has_face"].all()


def test_only_a_stream_that_really_ends_early_is_called_truncated(tmp_path, extractor):
    from dflib.faces import extract_video

    face = write_video(tmp_path / "face.mp4",
                       [paste(canvas(W, H), 110, 60 + i % 12, 50) for i in range(60)])
    whole = tmp_path / "whole.mp4"
    _ffmpeg("-i", str(face), "-c:v", "libx264", "-g", "10", "-movflags", "+faststart",
            str(whole))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    arrays = extract_video("v", cut, extractor, N_FRAMES, "even")
    reason = str(arrays["reason"])
    assert str(arrays["status"]) == "ok" and reason.startswith("truncated (")
    assert "partial file" in reason and "frames before the cut" in reason
    assert len(arrays["sampled_idx"]) == N_FRAMES  # every sampled frame exists
    assert str(extract_video("w", whole, extractor, N_FRAMES, "even")["reason"]) == ""


def test_multi_face_max_stores_the_other_faces_of_each_frame(tmp_path):
    """``multi_face: max`` keeps every face at least half the size of the largest (a
    two-person frame: both), the chosen one first in its frame; ``single`` keeps one."""
    pair = paste(paste(canvas(W, H), 100, 20, 60), 90, 190, 70)
    [one] = FaceExtractor.from_params(PARAMS).extract([pair])
    [both] = FaceExtractor.from_params({**PARAMS, "multi_face": "max"}).extract([pair])
    assert one.others == () and len(both.others) == 1
    assert both.others[0].shape == both.face.shape and np.array_equal(both.face, one.face)
    video = write_video(tmp_path / "two.mp4", [pair] * 6)
    run = RunPaths(tmp_path / "run")
    run_extraction(pd.DataFrame({"video_id": ["two"], "path": [str(video)], "label": [0],
                                 "split": ["test"]}), run, {**PARAMS, "multi_face": "max"},
                   N_FRAMES, "even", 1, progress=False)
    store = FaceStore(run)
    chosen, chosen_idx = store.load("two")
    every, every_idx = store.load("two", every_face=True)
    assert len(chosen) == N_FRAMES and len(every) == 2 * N_FRAMES
    assert list(every_idx) == sorted(list(chosen_idx) * 2)
    np.testing.assert_array_equal(every[::2], chosen)
    assert store.summary()["n_other_faces"].tolist() == [N_FRAMES]


def test_decoding_the_next_video_ahead_stores_the_same_faces(videos, tmp_path):
    """run_extraction decodes the next video in a thread while the current one is
    detected: the same store files as one after the other, a bad video still recorded."""
    stores = {}
    for ahead in (False, True):
        run = RunPaths(tmp_path / f"ahead{ahead}")
        summary = extract(videos, run.root, decode_in_thread=ahead)
        stores[ahead] = (summary, {v: FaceStore(run).load(v) for v in
                                   summary.loc[summary["n_faces"] > 0, "video_id"]})
    pd.testing.assert_frame_equal(stores[False][0], stores[True][0])
    assert stores[True][0]["status"].tolist() == ["ok", "no_face", "failed", "failed"]
    assert stores[True][1]
    for vid, (faces, frame_idx) in stores[False][1].items():
        np.testing.assert_array_equal(faces, stores[True][1][vid][0])
        np.testing.assert_array_equal(frame_idx, stores[True][1][vid][1])
