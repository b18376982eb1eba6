"""The benchmark commands (dflib.bench, ``dflib bench``) on tiny generated videos.

Only the tables' shape and sane values are checked, never wall-clock times.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dflib import bench, cli, steptimes, synth
from dflib.video import probe

FRAMES = 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Four 320x240 synth videos of 4 frames, and a file that is not a video."""
    folder = tmp_path_factory.mktemp("bench") / "videos"
    synth.generate(folder, seed=1, identities=2, real_per_identity=1, fake_per_identity=1,
                   frames=FRAMES, width=320, height=240, progress=False)
    (folder / "Celeb-real" / "broken.mp4").write_bytes(b"not a video")
    return folder


def test_box_comparison():
    assert bench.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert bench.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    agreement, iou = bench.compare_boxes([(0, 0, 10, 10), None, None], [(0, 0, 10, 10), None,
                                                                         (1, 1, 2, 2)])
    assert (agreement, iou) == (pytest.approx(2 / 3), 1.0)
    assert math.isnan(bench.compare_boxes([None], [None])[1])


class _ColumnFinder(bench.BaselineExtractor):
    """Finds the one white column of a frame as a box; ``even_only``: only at an even x,
    as a detector at its limit keeps a face in one picture and drops it a pixel on."""

    def __init__(self, even_only: bool) -> None:
        self.even_only = even_only

    def frame(self, rgb):
        x = int(rgb[0, :, 0].argmax())
        return None if self.even_only and x % 2 else (x, 0, x + 10, 10)


def test_the_baseline_s_agreement_with_itself_a_pixel_on():
    frame = np.zeros((10, 40, 3), np.uint8)
    frame[:, 6] = 255
    assert bench.shifted_right(frame)[0, :, 0].argmax() == 7
    assert bench.shifted_right(frame).shape == frame.shape
    steady, flaky = _ColumnFinder(False), _ColumnFinder(True)
    box = steady.frame(frame)
    assert steady.self_agreement([frame], [box]) == (1.0, 1.0)  # its box moved back
    assert flaky.self_agreement([frame], [box])[0] == 0.0  # the face gone a pixel on


def test_face_switches_count_jumps_within_a_shot():
    a, near, other = (100, 100, 140, 140), (104, 102, 144, 142), (300, 100, 340, 140)
    assert bench.face_switches([a, near, near, a], [False] * 4) == 0
    assert bench.face_switches([a, other, a, None, other], [False] * 5) == 2
    assert bench.face_switches([a, other, other], [False, True, False]) == 0  # a shot cut


def test_faces_lost_are_counted_frame_by_frame():
    # As many faces each, but the baseline's first one is lost: a face found in a frame
    # where the baseline had none does not make up for it.
    a = (100, 100, 140, 140)
    assert bench.faces_lost([a, None, a], [None, a, a]) == 1
    assert bench.faces_lost([a, None], [a, a]) == 0


def test_extract_bench_one_row_per_video_and_a_summary(videos, tmp_path, capsys):
    out = tmp_path / "extract.csv"
    rc = cli.main(["bench", "extract", str(videos), str(tmp_path / "gone"), "--frames",
                   str(FRAMES), "--device", "cpu", "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error: " in line]
    assert len(errors) == 2  # the broken file and the missing folder, one line each
    assert any("broken.mp4" in line for line in errors)
    assert any("gone" in line for line in errors)
    assert "baseline_fps" in captured.out and "speedup" in captured.out

    table = pd.read_csv(out)
    assert list(table.columns) == bench.EXTRACT_COLUMNS
    clips, summary = table.iloc[:-1], table.iloc[-1]
    assert len(clips) == 4  # one per readable video; the missing folder has none
    assert sorted(clips["footage"]) == sorted(str(v) for v in bench.find_videos(videos)
                                              if v.name != "broken.mp4")
    assert (clips["frames"] == FRAMES).all() and (clips["resolution"] == "320x240").all()
    for col in ("decode_fps", "baseline_fps", "dflib_fps", "dflib_ahead_fps", "speedup",
                "dflib_to_decode"):
        assert (table[col] > 0).all(), col
    assert clips["dflib_to_decode"].tolist() == pytest.approx(
        (clips["dflib_fps"] / clips["decode_fps"]).tolist())
    assert (clips["faces_lost"] >= (clips["baseline_faces"]
                                    - clips["dflib_faces"]).clip(lower=0)).all()
    assert (clips["baseline_faces"] > 0).all()
    assert (clips["agreement"] >= 0.9).all() and (clips["mean_iou"] >= 0.8).all()
    assert (clips["baseline_self_agreement"] == 1).all()  # large, clear faces
    assert (clips["baseline_self_iou"] > 0.9).all()
    assert (clips[["baseline_switches", "dflib_switches"]] == 0).all().all()  # one face each

    assert (summary["footage"], summary["videos"], summary["frames"]) == ("all", 4, 4 * FRAMES)
    assert summary["speedup"] == pytest.approx(math.prod(clips["speedup"]) ** (1 / 4))
    assert summary["agreement"] == clips["agreement"].min()
    assert summary["mean_iou"] == clips["mean_iou"].min()
    assert summary["baseline_self_agreement"] == clips["baseline_self_agreement"].min()
    for col in ("baseline_faces", "dflib_faces", "faces_lost"):
        assert summary[col] == clips[col].sum()


def test_extract_bench_times_serial_and_decoding_ahead_in_turns(videos, monkeypatch):
    """Timed one pass after the other, minutes apart, the two ways did not compare on a
    machine whose load changed meanwhile: they take turns, and each rate is the median."""
    calls: list[str] = []
    # serial (decoding, all), ahead, serial, ...
    seconds = iter([(0.5, 1.0), 5.0, (0.2, 3.0), 2.0, (0.4, 4.0), 6.0])
    for name, way in (("_serial_seconds", "serial"), ("_decoding_ahead_seconds", "ahead")):
        monkeypatch.setattr(bench, name, lambda paths, n, fast, way=way: calls.append(way)
                            or [next(seconds)] * len(paths))
    video = next(v for v in bench.find_videos(videos) if v.name != "broken.mp4")
    table = bench.bench_extract([video], 2, "cpu", progress=False,
                                repeats=3)
    assert calls == ["serial", "ahead"] * 3
    clip = table.iloc[0]
    assert clip["repeats"] == 3
    assert clip["dflib_fps"] == pytest.approx(2 / 3.0)  # median of 1, 3, 4 seconds
    assert clip["dflib_ahead_fps"] == pytest.approx(2 / 5.0)  # median of 5, 2, 6
    assert clip["decode_fps"] == pytest.approx(2 / 0.4)  # median of 0.5, 0.2, 0.4
    assert clip["dflib_to_decode"] == pytest.approx(0.4 / 3.0)  # of the same turns
    assert clip["speedup"] == pytest.approx(clip["dflib_fps"] / clip["baseline_fps"])


def test_steps_bench_shares_and_searches_per_video(videos, tmp_path, capsys):
    out = tmp_path / "steps.csv"
    rc = cli.main(["bench", "steps", str(videos), "--frames", str(FRAMES), "--device", "cpu",
                   "--out", str(out)])
    assert rc == 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error: " in line]
    assert len(errors) == 1 and "broken.mp4" in errors[0]

    table = pd.read_csv(out)
    assert list(table.columns) == bench.STEPS_COLUMNS
    assert table["search"].tolist() == list(bench.STEP_SEARCHES) * 5
    clips, summary = table.iloc[:-2], table.iloc[-2:]
    assert (clips["frames"] == FRAMES).all() and (clips["videos"] == 1).all()
    assert summary["footage"].tolist() == ["all", "all"]
    assert summary["frames"].tolist() == [4 * FRAMES] * 2
    every = clips[clips["search"] == "every_frame"]
    keys = clips[clips["search"] == "key_frames"]
    assert (every["speedup"] == 1.0).all() and (keys["speedup"] > 0).all()
    assert summary["speedup"].iloc[1] == pytest.approx(math.prod(keys["speedup"]) ** (1 / 4))
    shares = table[[f"{name}_share" for name in bench.STEP_SHARES]]
    assert (shares >= 0).all().all()
    assert shares.sum(axis=1).tolist() == pytest.approx([1.0] * len(table))
    # Both searches found faces: every network ran, and every frame of the full search
    # went through the pyramid.
    for name in ("decode", "pyramid", "pnet", "rnet", "onet", "face_crops"):
        assert (summary[f"{name}_share"] > 0).all(), name
    # The paper's search looks at every frame in full; the key-frame search at its first
    # frame only (4 frames, one face that stays put): the last frame, a key frame too,
    # confirms its face, and the two between take boxes interpolated between the two.
    assert (every["full_searches"] == FRAMES).all() and (every["confirmed"] == 0).all()
    assert (keys["full_searches"] == 1).all() and (keys["confirmed"] == 1).all()
    assert (keys["interpolated"] == FRAMES - 2).all()
    assert summary["full_searches"].tolist() == [4 * FRAMES, 4]


def test_step_clock_counts_only_while_recording():
    with steptimes.step("pnet"):
        pass
    steptimes.count("cuts")
    with steptimes.recording() as record:
        with steptimes.step("pnet"):
            pass
        with steptimes.step("pnet"):
            pass
        with steptimes.step("onet"):
            pass
        steptimes.count("cuts", 2)
        steptimes.count("cuts")
    assert set(record.seconds) == {"pnet", "onet"}
    assert all(v >= 0 for v in record.seconds.values())
    assert record.counts == {"cuts": 3}
    with steptimes.recording() as later:
        pass
    assert later.seconds == {} and later.counts == {}


def test_parallel_bench_table(videos):
    # workers 0 runs in this process, without and with decoding ahead: the table's format
    # without starting a Dask cluster.
    table = bench.bench_parallel([videos], frames=2, workers=[0], device="cpu",
                                 progress=False, repeats=3)
    assert list(table.columns) == bench.PARALLEL_COLUMNS
    assert table["decode_ahead"].tolist() == [False, True]
    assert table["repeats"].tolist() == [3, 3]
    assert (table["seconds_min"] <= table["seconds"]).all()
    assert (table["seconds"] <= table["seconds_max"]).all()
    assert table["videos"].tolist() == [4, 4]
    assert table["frames"].tolist() == [8, 8]
    assert table["speedup"].iloc[0] == 1.0
    assert (table["frames_per_s"] > 0).all()


def test_decode_bench_table_compares_pyav_with_opencv(videos, tmp_path, capsys):
    out = tmp_path / "decode.csv"
    rc = cli.main(["bench", "decode", str(videos), "--frames", "3", "--sampling", "even",
                   "--repeats", "2", "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error: " in line]
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    table = pd.read_csv(out)
    assert list(table.columns) == bench.DECODE_COLUMNS
    assert table["decoder"].tolist() == list(bench.DECODERS)
    assert table["videos"].tolist() == [4] * 3 and table["frames"].tolist() == [12] * 3
    assert table["sampling"].tolist() == ["even 3"] * 3 and (table["repeats"] == 2).all()
    assert (table["fps_min"] <= table["fps"]).all() and (table["fps"] <= table["fps_max"]).all()
    assert table["ratio"].tolist() == pytest.approx((table["fps"] / table["fps"][0]).tolist())
    assert table["ratio"][0] == 1.0
    assert table["same_indices"].all()
    assert (table["max_abs_diff"] == 0).all()  # as measured (tests/test_video.py)


def test_distant_speaker_footage(videos, tmp_path):
    source = videos / "Celeb-real" / "id0_0000.mp4"
    target = bench.distant_speaker(source, tmp_path / "small.mp4", face_scale=0.25,
                                   width=640, height=480)
    info = probe(target)
    assert (info.width, info.height, info.n_frames) == (640, 480, FRAMES)


@pytest.mark.slow
def test_train_memory_table():
    table = bench.bench_train_memory(videos=2, faces_per_video=2, scale=2, img_size=32,
                                     arch="ef0", batch_size=2, progress=False)
    assert list(table.columns) == bench.MEMORY_COLUMNS
    assert table["scale"].tolist() == [1, 2]
    assert table["faces"].tolist() == [4, 8]
    assert (table["peak_rss_mb"] >= table["rss_before_fit_mb"]).all()
    assert (table["rss_before_fit_mb"] > 0).all()
    assert table["peak_ratio"].iloc[0] == 1.0
    assert table["store_mb"].iloc[1] > table["store_mb"].iloc[0]


@pytest.mark.slow
def test_train_feed_table(tmp_path, capsys):
    out = tmp_path / "feed.csv"
    rc = cli.main(["bench", "train-feed", "--videos", "4", "--faces-per-video", "4",
                   "--img-size", "32", "--arch", "ef0", "--batch-size", "4", "--workers", "1",
                   "2", "--steps", "1", "--clip-len", "4", "--clip-size", "16", "--seq-len",
                   "4", "--out", str(out)])
    assert rc == 0 and "ratio" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == bench.FEED_COLUMNS
    # faces without and with augmentation, clips, sequences; each at 1 and 2 workers
    assert len(table) == 8 and table["workers"].tolist() == [1, 2] * 4
    assert table["augment"].tolist() == ["off", "off", "on", "on", "on", "on", "off", "off"]
    assert table["samples"].tolist()[:4] == [16] * 4  # every face, once per pass
    assert (table["feed_per_s"] > 0).all() and (table["train_step_per_s"] > 0).all()
    assert table["ratio"].tolist() == (table["feed_per_s"] / table["train_step_per_s"]).tolist()


def test_bench_finds_videos_by_the_adapters_rule(tmp_path, capsys):
    """Hidden folders and files are not benchmarked; a dangling link is named, not lost."""
    (tmp_path / ".AppleDouble").mkdir()
    for name in ("a.mp4", ".AppleDouble/a.mp4", "._a.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    assert bench.find_videos(tmp_path) == [tmp_path / "a.mp4"]
    assert "gone.mp4" in capsys.readouterr().err
