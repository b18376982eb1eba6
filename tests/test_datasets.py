"""Dataset adapters on small fixture layouts of empty video files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dflib import config, datasets, paths
from dflib.datasets import DatasetError, check_data_root, layout_problem

# The index section's defaults, which a profile would fill in (datasets takes every option
# explicitly; the schema in dflib.config is the one place for defaults).
INDEX_DEFAULTS = {"seed": config.SHARED["seed"].default,
                  **{k: config.STAGE_BY_NAME["index"].fields[k].default for k in
                     ("val_fraction", "max_videos_per_class", "ffpp_methods",
                      "ffpp_compression")}}


def build_index(dataset: str, root: Path, **options) -> datasets.IndexResult:
    """``datasets.build_index`` with the profile defaults for the options a test leaves out."""
    return datasets.build_index(dataset, root, **{**INDEX_DEFAULTS, **options})


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0")


def split_of(videos: pd.DataFrame) -> dict[str, str]:
    return dict(zip(videos["video_id"], videos["split"]))


# --- Celeb-DF v2 ---------------------------------------------------------------------------

CELEB_LIST = [
    "1 Celeb-real/id0_0000.mp4",
    "1 YouTube-real/00000.mp4",
    "0 Celeb-synthesis/id0_id1_0000.mp4",
    "0 Celeb-synthesis/id0_id1_0001.mp4",
    "0 Celeb-synthesis/id9_id8_0000.mp4",  # not on disk
]


def make_celebdf(root: Path, listing: list[str] = CELEB_LIST) -> Path:
    touch(root, *(f"Celeb-real/id0_{i:04d}.mp4" for i in range(10)))
    touch(root, *(f"YouTube-real/{i:05d}.mp4" for i in range(5)))
    touch(root, *(f"Celeb-synthesis/id0_id1_{i:04d}.mp4" for i in range(20)))
    (root / datasets.CELEBDF_LIST).write_text("\n".join(listing) + "\n", encoding="utf-8")
    return root


def test_celebdf_validation_is_split_by_source_clip(tmp_path: Path) -> None:
    """A real clip and the fakes made from it never sit on both sides of train / val."""
    root = make_celebdf(tmp_path)
    touch(root, *(f"Celeb-synthesis/id0_id2_{i:04d}.mp4" for i in range(10)))
    assert datasets.celebdf_source_clip("Celeb-synthesis/id0_id2_0003.mp4") == "id0_0003"
    assert datasets.celebdf_source_clip("Celeb-real/id0_0003.mp4") == "id0_0003"
    assert datasets.celebdf_source_clip("YouTube-real/00003.mp4") is None
    for seed in range(5):
        videos = build_index("celebdf", root, seed=seed, val_fraction=0.3).videos
        fit = videos[videos["split"] != "test"]
        clip = fit["video_id"].map(lambda v: datasets.celebdf_source_clip(f"{v}.mp4") or v)
        assert (fit.groupby(clip)["split"].nunique() == 1).all(), seed
        assert (fit["split"] == "val").any()


def test_celebdf_converts_the_inverted_flag_and_lists_the_test_split(tmp_path: Path) -> None:
    videos = build_index("celebdf", make_celebdf(tmp_path)).videos
    assert list(videos.columns[:7]) == datasets.INDEX_COLUMNS
    by_id = videos.set_index("video_id")
    assert by_id.at["Celeb-real/id0_0000", "label"] == 0  # listed with flag 1 = real
    assert by_id.at["YouTube-real/00000", "label"] == 0
    assert by_id.at["Celeb-synthesis/id0_id1_0000", "label"] == 1  # listed with flag 0 = fake
    test = set(videos.loc[videos["split"] == "test", "video_id"])
    assert test == {"Celeb-real/id0_0000", "YouTube-real/00000", "Celeb-synthesis/id0_id1_0000",
                    "Celeb-synthesis/id0_id1_0001"}
    assert set(videos["method"]) == {"Celeb-real", "YouTube-real", "Celeb-synthesis"}
    assert set(videos["compression"]) == {"unknown"}
    assert set(videos["dataset"]) == {"celebdf"}
    assert (videos.groupby("method")["label"].nunique() == 1).all()
    assert by_id.at["Celeb-real/id0_0003", "path"] == str(tmp_path / "Celeb-real/id0_0003.mp4")
    assert videos["label"].dtype == "int64"


def test_celebdf_rows_sorted_by_split_then_video_id(tmp_path: Path) -> None:
    videos = build_index("celebdf", make_celebdf(tmp_path)).videos
    order = videos["split"].map({"train": 0, "val": 1, "test": 2})
    assert order.is_monotonic_increasing
    for _, part in videos.groupby("split"):
        assert list(part["video_id"]) == sorted(part["video_id"])


def test_celebdf_flag_disagreeing_with_folder_names_the_line(tmp_path: Path) -> None:
    make_celebdf(tmp_path, ["1 Celeb-real/id0_0000.mp4", "1 Celeb-synthesis/id0_id1_0000.mp4"])
    with pytest.raises(DatasetError, match=r"line 2 '1 Celeb-synthesis/id0_id1_0000.mp4'.*real"):
        build_index("celebdf", tmp_path)


@pytest.mark.parametrize("line", ["2 Celeb-real/id0_0000.mp4", "Celeb-real/id0_0000.mp4",
                                  "1 Other/id0_0000.mp4"])
def test_celebdf_malformed_list_line_is_an_error(tmp_path: Path, line: str) -> None:
    make_celebdf(tmp_path, [line])
    with pytest.raises(DatasetError, match="line 1"):
        build_index("celebdf", tmp_path)


def test_celebdf_listed_video_absent_on_disk_is_recorded(tmp_path: Path) -> None:
    result = build_index("celebdf", make_celebdf(tmp_path))
    assert list(result.missing.columns) == ["video_id", "path", "reason"]
    row = result.missing.set_index("video_id").loc["Celeb-synthesis/id9_id8_0000"]
    assert row["path"] == str(tmp_path / "Celeb-synthesis/id9_id8_0000.mp4")
    assert row["reason"] == "listed in List_of_testing_videos.txt but not on disk"
    assert "Celeb-synthesis/id9_id8_0000" not in set(result.videos["video_id"])


def test_celebdf_train_val_by_video_seeded_and_fraction_respected(tmp_path: Path) -> None:
    make_celebdf(tmp_path)
    a = build_index("celebdf", tmp_path, seed=3, val_fraction=0.25).videos
    b = build_index("celebdf", tmp_path, seed=3, val_fraction=0.25).videos
    pd.testing.assert_frame_equal(a, b)
    assert a["video_id"].is_unique  # each video in exactly one split
    others = a[a["split"] != "test"]
    for label, n in ((0, 13), (1, 18)):  # unlisted reals and fakes
        part = others[others["label"] == label]
        assert len(part) == n
        assert abs((part["split"] == "val").sum() - 0.25 * n) <= 1
    draws = {tuple(build_index("celebdf", tmp_path, seed=s).videos.query("split == 'val'")
                   ["video_id"]) for s in range(4)}
    assert len(draws) > 1  # the seed picks the validation videos
    assert (build_index("celebdf", tmp_path, val_fraction=0.0).videos["split"] != "val").all()


# --- FaceForensics++ -----------------------------------------------------------------------


def ffpp_names(pair: tuple[str, str]) -> tuple[list[str], list[str]]:
    a, b = pair
    return [a, b], [f"{a}_{b}", f"{b}_{a}"]


def make_ffpp(root: Path, comps: tuple[str, ...] = ("c23", "c40"),
              methods: tuple[str, ...] = ("NeuralTextures", "Deepfakes")) -> dict[str, tuple]:
    pairs = {s: datasets.ffpp_pairs(s)[0] for s in datasets.SPLITS}
    for comp in comps:
        for pair in pairs.values():
            originals, fakes = ffpp_names(pair)
            touch(root, *(f"original_sequences/youtube/{comp}/videos/{o}.mp4" for o in originals))
            touch(root, *(f"manipulated_sequences/{m}/{comp}/videos/{f}.mp4"
                          for m in methods for f in fakes))
    touch(root, *(f"original_sequences/youtube/{c}/videos/extra.mp4" for c in comps))  # no split
    return pairs


def test_ffpp_pair_selects_both_fakes_and_both_originals_in_its_split(tmp_path: Path) -> None:
    pairs = make_ffpp(tmp_path)
    videos = build_index("ffpp", tmp_path).videos
    splits = split_of(videos)
    for split, (a, b) in pairs.items():
        for vid in (f"original/{a}", f"original/{b}", f"NeuralTextures/{a}_{b}",
                    f"NeuralTextures/{b}_{a}"):
            assert splits[vid] == split
    assert len(videos) == 12 and "original/extra" not in splits
    by_id = videos.set_index("video_id")
    a, b = pairs["train"]
    fake = by_id.loc[f"NeuralTextures/{a}_{b}"]
    assert (fake["label"], fake["method"], fake["target_id"], fake["source_id"]) == (
        1, "NeuralTextures", a, b)
    real = by_id.loc[f"original/{a}"]
    assert (real["label"], real["method"], real["target_id"]) == (0, "real", a)
    assert pd.isna(real["source_id"])
    assert fake["path"] == str(
        tmp_path / f"manipulated_sequences/NeuralTextures/c40/videos/{a}_{b}.mp4")
    assert set(videos["compression"]) == {"c40"}


def test_ffpp_filters_methods_and_compression(tmp_path: Path) -> None:
    make_ffpp(tmp_path)
    videos = build_index("ffpp", tmp_path, ffpp_methods=["Deepfakes"], ffpp_compression="c23",
                         val_fraction=0.5).videos
    assert set(videos["method"]) == {"real", "Deepfakes"}
    assert set(videos["compression"]) == {"c23"}
    assert all("/c23/videos/" in p for p in videos["path"])
    assert (videos.groupby("split").size() == 4).all()  # val comes from val.json, not the fraction
    both = build_index("ffpp", tmp_path, ffpp_methods=["Deepfakes", "NeuralTextures"]).videos
    assert len(both) == 18 and both["video_id"].is_unique


def test_ffpp_videos_of_the_split_files_absent_on_disk_are_recorded(tmp_path: Path) -> None:
    pairs = make_ffpp(tmp_path)
    a, b = pairs["test"]
    (tmp_path / f"manipulated_sequences/NeuralTextures/c40/videos/{a}_{b}.mp4").unlink()
    result = build_index("ffpp", tmp_path)
    listed = sum(len(datasets.ffpp_pairs(s)) * 4 for s in datasets.SPLITS)
    assert len(result.videos) + len(result.missing) == listed
    row = result.missing.set_index("video_id").loc[f"NeuralTextures/{a}_{b}"]
    assert row["reason"] == "listed in test.json but not on disk"
    assert row["path"].endswith(f"NeuralTextures/c40/videos/{a}_{b}.mp4")


# --- DFDC ----------------------------------------------------------------------------------


def make_dfdc(root: Path, parts: int = 2, originals: int = 12) -> None:
    for p in range(parts):
        folder = root / f"dfdc_train_part_{p}"
        meta = {}
        for i in range(originals):
            real = f"r{p}_{i:02d}.mp4"
            meta[real] = {"label": "REAL", "split": "train", "original": None}
            for k in range(2):
                meta[f"f{p}_{i:02d}_{k}.mp4"] = {"label": "FAKE", "split": "train",
                                                "original": real}
        touch(folder, *meta)
        meta["gone.mp4"] = {"label": "FAKE", "split": "train", "original": f"r{p}_00.mp4"}
        (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")


def test_dfdc_keeps_each_fake_in_the_split_of_its_original(tmp_path: Path) -> None:
    make_dfdc(tmp_path)
    result = build_index("dfdc", tmp_path, seed=1, val_fraction=0.2)
    videos = result.videos
    assert len(videos) == 2 * 12 * 3 and set(videos["split"]) == set(datasets.SPLITS)
    by_name = {Path(p).name: s for p, s in zip(videos["path"], videos["split"])}
    fakes = videos[videos["label"] == 1]
    assert fakes["original"].notna().all()
    assert videos.loc[videos["label"] == 0, "original"].isna().all()
    for split, original in zip(fakes["split"], fakes["original"]):
        assert by_name[original] == split
    assert set(videos["method"]) == {"real", "fake"}
    assert "dfdc_train_part_0/r0_00" in set(videos["video_id"])
    assert set(result.missing["reason"]) == {
        f"listed in dfdc_train_part_{p}/metadata.json but not on disk" for p in (0, 1)}
    again = build_index("dfdc", tmp_path, seed=1, val_fraction=0.2).videos
    pd.testing.assert_frame_equal(videos, again)


def test_dfdc_takes_the_split_metadata_json_gives_grouped_with_originals(tmp_path: Path) -> None:
    make_dfdc(tmp_path, parts=1, originals=12)
    meta_path = tmp_path / "dfdc_train_part_0" / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    for name, info in meta.items():
        if name.startswith("r0_0") and int(name[3:5]) < 4:
            info["split"] = "test"  # the originals r0_00..r0_03; their fakes still say train
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    videos = build_index("dfdc", tmp_path, seed=1, val_fraction=0.25).videos
    test = videos[videos["split"] == "test"]
    assert sorted(Path(p).name for p in test.loc[test["label"] == 0, "path"]) == [
        f"r0_{i:02d}.mp4" for i in range(4)]
    assert len(test) == 4 * 3  # each original with its two fakes
    others = videos[videos["split"] != "test"]
    assert set(others["split"]) == {"train", "val"}  # val drawn from the given training videos
    by_name = {Path(p).name: s for p, s in zip(videos["path"], videos["split"])}
    assert all(by_name[o] == s for o, s in zip(others["original"].dropna(),
                                              others.loc[others["original"].notna(), "split"]))
    # Every entry saying "train" (DFDC's own training parts) fixes nothing: drawn as before.
    make_dfdc(tmp_path / "plain", parts=1)
    assert set(build_index("dfdc", tmp_path / "plain", seed=1).videos["split"]) == set(
        datasets.SPLITS)


def test_dfdc_single_folder_and_bad_label(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4", "b.mp4")
    meta = {"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}}
    (tmp_path / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    videos = build_index("dfdc", tmp_path).videos
    assert dict(zip(videos["video_id"], videos["label"])) == {"a": 0, "b": 1}
    assert videos["split"].nunique() == 1  # one group: the fake follows its original
    meta["b.mp4"]["label"] = "MAYBE"
    (tmp_path / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(DatasetError, match="'b.mp4'"):
        build_index("dfdc", tmp_path)


# --- plain folder, manifest and common behaviour -------------------------------------------


def make_folder(root: Path, reals: int = 10, fakes: int = 10) -> None:
    touch(root, *(f"real/r{i:02d}.mp4" for i in range(reals)))
    touch(root, *(f"fake/{'swap/' if i % 2 else ''}f{i:02d}.{('mp4', 'avi', 'MOV')[i % 3]}"
                  for i in range(fakes)))
    touch(root, "real/notes.txt", "fake/._f00.mp4")


def test_folder_adapter_labels_methods_and_stratified_split(tmp_path: Path) -> None:
    make_folder(tmp_path)
    videos = build_index("folder", tmp_path, seed=0, val_fraction=0.2).videos
    assert len(videos) == 20  # the .txt and the hidden ._ file are not videos
    by_id = videos.set_index("video_id")
    assert by_id.at["real/r00", "label"] == 0 and by_id.at["real/r00", "method"] == "real"
    assert by_id.at["fake/swap/f01", "label"] == 1 and by_id.at["fake/swap/f01", "method"] == "swap"
    assert by_id.at["fake/f00", "method"] == "fake"
    assert by_id.at["fake/f02", "path"].endswith("fake/f02.MOV")
    counts = videos.groupby(["split", "label"]).size()
    for label in (0, 1):
        assert (counts["train", label], counts["val", label], counts["test", label]) == (6, 2, 2)


def test_val_fraction_that_leaves_no_training_is_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path)
    with pytest.raises(DatasetError, match="val_fraction"):
        build_index("folder", tmp_path, val_fraction=0.5)


def write_manifest(root: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


def test_manifest_columns_merge_and_override(tmp_path: Path) -> None:
    make_celebdf(tmp_path)
    write_manifest(tmp_path, [
        {"path": "Celeb-synthesis/id0_id1_0000.mp4", "label": 1, "method": "faceswap",
         "compression": "c23", "identity": 3},
        {"path": "Celeb-real/id0_0000.mp4", "label": 0, "method": "real", "compression": "c40",
         "identity": 0},
        {"path": "Celeb-real/gone.mp4", "label": 0, "method": "real", "compression": "c40",
         "identity": 1},
    ])
    result = build_index("celebdf", tmp_path)
    by_id = result.videos.set_index("video_id")
    assert (by_id.at["Celeb-synthesis/id0_id1_0000", "method"],
            by_id.at["Celeb-synthesis/id0_id1_0000", "compression"]) == ("faceswap", "c23")
    assert by_id.at["Celeb-real/id0_0000", "identity"] == 0
    # a video the manifest does not list keeps the adapter's values
    assert by_id.at["Celeb-synthesis/id0_id1_0001", "method"] == "Celeb-synthesis"
    assert pd.isna(by_id.at["Celeb-synthesis/id0_id1_0001", "identity"])
    assert list(result.videos.columns) == datasets.INDEX_COLUMNS + ["identity"]
    gone = result.missing.set_index("video_id").loc["Celeb-real/gone"]
    assert gone["reason"] == "listed in manifest.csv but not on disk"


def test_manifest_label_conflict_is_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path)
    write_manifest(tmp_path, [{"path": "real/r03.mp4", "label": 1}])
    with pytest.raises(DatasetError, match="real/r03.mp4"):
        build_index("folder", tmp_path)
    write_manifest(tmp_path, [{"path": "real/r03.mp4", "label": "real"}])
    assert len(build_index("folder", tmp_path).videos) == 20


@pytest.mark.parametrize("columns", [{"label": "yes"}, {"video_id": "x"}, {"split": "dev"}])
def test_manifest_bad_values_are_errors(tmp_path: Path, columns: dict) -> None:
    make_folder(tmp_path)
    write_manifest(tmp_path, [{"path": "real/r03.mp4", **columns}])
    with pytest.raises(DatasetError, match="manifest.csv"):
        build_index("folder", tmp_path)


def test_max_videos_per_class_keeps_a_seeded_subset(tmp_path: Path) -> None:
    make_celebdf(tmp_path)
    full = build_index("celebdf", tmp_path, seed=5).videos
    capped = build_index("celebdf", tmp_path, seed=5, max_videos_per_class=2).videos
    assert (capped.groupby(["split", "label"]).size() <= 2).all()
    assert set(capped["video_id"]) <= set(full["video_id"])
    assert split_of(capped).items() <= split_of(full).items()  # capping never moves a video
    again = build_index("celebdf", tmp_path, seed=5, max_videos_per_class=2).videos
    pd.testing.assert_frame_equal(capped, again)


def test_duplicate_video_id_is_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path)
    touch(tmp_path, "real/r01.avi")
    with pytest.raises(DatasetError, match="duplicate video_id 'real/r01'"):
        build_index("folder", tmp_path)


def test_non_ascii_file_names(tmp_path: Path) -> None:
    make_folder(tmp_path)
    touch(tmp_path, "fake/ñandú-视频.mp4", "real/Zoë été.mp4")
    write_manifest(tmp_path, [{"path": "fake/ñandú-视频.mp4", "label": 1,
                               "method": "selfblend"}])
    videos = build_index("folder", tmp_path).videos.set_index("video_id")
    assert videos.at["fake/ñandú-视频", "method"] == "selfblend"
    assert videos.at["real/Zoë été", "path"] == str(tmp_path / "real/Zoë été.mp4")


# --- layout problems -----------------------------------------------------------------------

FFPP_PARAMS = {"ffpp_methods": ["NeuralTextures", "Deepfakes"], "ffpp_compression": "c40"}


@pytest.mark.parametrize("dataset, make, removed", [
    ("celebdf", make_celebdf, "Celeb-real"),
    ("celebdf", make_celebdf, "YouTube-real"),
    ("celebdf", make_celebdf, "Celeb-synthesis"),
    ("celebdf", make_celebdf, "List_of_testing_videos.txt"),
    ("ffpp", make_ffpp, "original_sequences/youtube/c40/videos"),
    ("ffpp", make_ffpp, "manipulated_sequences/NeuralTextures/c40/videos"),
    ("ffpp", make_ffpp, "manipulated_sequences/Deepfakes"),
    ("dfdc", make_dfdc, "dfdc_train_part_1/metadata.json"),
    ("folder", make_folder, "real"),
    ("folder", make_folder, "fake"),
    ("celebdf", make_celebdf, ""),  # the root itself
])
def test_layout_problem_names_the_missing_path(tmp_path: Path, dataset: str, make,
                                               removed: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    assert layout_problem(dataset, root, FFPP_PARAMS) is None
    target = root / removed
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    problem = layout_problem(dataset, root, FFPP_PARAMS)
    assert problem is not None and "\n" not in problem
    assert str(target) in problem and "not found" in problem and f"{dataset} expects" in problem
    with pytest.raises(DatasetError) as info:
        build_index(dataset, root, ffpp_methods=FFPP_PARAMS["ffpp_methods"])
    assert str(info.value) == problem


def test_the_demo_adapter_reads_the_celebdf_layout_and_is_the_only_generator(tmp_path: Path
                                                                            ) -> None:
    """``demo`` is the celebdf adapter with a generator: the same index (but its name) from
    the same folder, the same layout problems; the rest of dflib asks these questions."""
    from dflib import synth

    root = make_celebdf(tmp_path / "data")
    demo, celebdf = build_index("demo", root).videos, build_index("celebdf", root).videos
    assert set(demo["dataset"]) == {"demo"}
    assert demo.drop(columns="dataset").equals(celebdf.drop(columns="dataset"))
    assert [d for d in config.DATASETS if datasets.generates(d)] == ["demo"]
    assert {d: datasets.layout_of(d) for d in config.DATASETS} == {
        "celebdf": "celebdf", "ffpp": "ffpp", "dfdc": "dfdc", "folder": "folder",
        "demo": "celebdf"}
    assert datasets.is_generated("demo", None) and not datasets.is_generated("celebdf", root)
    (root / synth.PARAMS).write_text("{}")  # what dflib.synth writes first
    assert datasets.is_generated("celebdf", root)  # the demo, read as Celeb-DF
    (root / datasets.CELEBDF_LIST).unlink()
    assert layout_problem("demo", root, {}) == (
        f"{root / datasets.CELEBDF_LIST}: file not found (demo expects Celeb-real/, "
        f"YouTube-real/, Celeb-synthesis/ and {datasets.CELEBDF_LIST})")


def test_layout_problem_of_empty_dfdc_root_and_file_root(tmp_path: Path) -> None:
    problem = layout_problem("dfdc", tmp_path, {})
    assert problem == (f"{tmp_path / 'metadata.json'}: file not found (dfdc expects metadata.json "
                       "beside the videos, or dfdc_train_part_*/ folders each with metadata.json)")
    touch(tmp_path, "file.mp4")
    assert layout_problem("folder", tmp_path / "file.mp4", {}).startswith(
        f"{tmp_path / 'file.mp4'}: folder not a folder")


def test_layout_problem_follows_the_chosen_compression(tmp_path: Path) -> None:
    make_ffpp(tmp_path, comps=("c23",))
    assert layout_problem("ffpp", tmp_path, {**INDEX_DEFAULTS, "ffpp_compression": "c23"}) is None
    assert "original_sequences/youtube/c40/videos" in layout_problem("ffpp", tmp_path,
                                                                     INDEX_DEFAULTS)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'celeb'"):
        build_index("celeb", tmp_path)
    assert "unknown dataset" in layout_problem("celeb", tmp_path, {})


def test_profile_with_missing_data_root_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(config.ProfileError) as info:
        check_data_root(config.validate({"run_name": "t", "dataset": "celebdf",
                                         "data_root": str(missing)}, source="params/x.yaml"))
    message = str(info.value)
    assert message.startswith("params/x.yaml: data_root: ")
    assert str(missing) in message and "\n" not in message


# --- cross-dataset protocol ----------------------------------------------------------------

def test_cross_dataset_trains_on_one_and_tests_on_the_other(tmp_path: Path) -> None:
    make_ffpp(tmp_path / "ffpp")
    make_celebdf(tmp_path / "celeb")
    train = build_index("ffpp", tmp_path / "ffpp", ffpp_compression="c23")
    test = build_index("celebdf", tmp_path / "celeb")
    videos = datasets.cross_dataset(train, test).videos
    by_split = videos.groupby("split")["dataset"].unique().map(list).to_dict()
    assert by_split == {"test": ["celebdf"], "train": ["ffpp"], "val": ["ffpp"]}
    assert len(videos[videos["split"] == "test"]) == 4  # the listed videos on disk
    assert not videos.isna().any().any()
    assert set(datasets.cross_dataset(train, test).missing["video_id"]) >= {
        "Celeb-synthesis/id9_id8_0000"}


def test_cross_dataset_without_test_videos_is_an_error(tmp_path: Path) -> None:
    make_ffpp(tmp_path / "ffpp")
    train = build_index("ffpp", tmp_path / "ffpp", ffpp_compression="c23")
    no_test = datasets.IndexResult(train.videos[train.videos["split"] != "test"], train.missing)
    with pytest.raises(DatasetError, match="has no test videos"):
        datasets.cross_dataset(train, no_test)


REAL_DATA_PROFILES = {
    "celebdf.yaml": {"data_root": make_celebdf},
    "ffpp_nt_c40.yaml": {"data_root": lambda root: make_ffpp(root, methods=("NeuralTextures",))},
    "ffpp_c23_to_celebdf.yaml": {
        "data_root": lambda root: make_ffpp(
            root, comps=("c23",), methods=("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")),
        "index.test_data_root": make_celebdf},
}


@pytest.mark.parametrize("name", sorted(REAL_DATA_PROFILES))
def test_real_data_profiles_check_against_the_dataset_layout(tmp_path: Path, name: str) -> None:
    """Each real-data profile passes `dflib check` once its folders have the layout, and
    fails naming the key and path while one is missing."""
    from dflib import cli

    raw = yaml.safe_load((paths.PARAMS_DIR / name).read_text(encoding="utf-8"))
    makers = REAL_DATA_PROFILES[name]
    for key in makers:
        section, _, leaf = key.rpartition(".")
        (raw[section] if section else raw)[leaf] = str(tmp_path / key)
    profile = tmp_path / name
    profile.write_text(yaml.safe_dump(raw), encoding="utf-8")
    for key, make in makers.items():
        assert cli.main(["check", str(profile)]) == 2  # this folder and later ones missing
        make(tmp_path / key)
    assert cli.main(["check", str(profile)]) == 0


def test_cross_dataset_keys_go_together(tmp_path: Path) -> None:
    raw = {"run_name": "x", "dataset": "ffpp", "data_root": str(tmp_path),
           "index": {"test_dataset": "celebdf"}}
    with pytest.raises(config.ProfileError, match="test_dataset and index.test_data_root"):
        config.validate(raw)


@pytest.mark.parametrize("dataset", ["celebdf", "folder"])
def test_every_scan_skips_hidden_entries_and_records_dangling_links(tmp_path: Path,
                                                                    dataset: str) -> None:
    """One scanning rule for every adapter: ``.AppleDouble/``, ``._x.mp4`` and any
    ``.name/`` are not videos; a link whose target is gone is recorded, not lost."""
    if dataset == "celebdf":
        root, folder = make_celebdf(tmp_path), "Celeb-real"
    else:
        root, folder = tmp_path, "real"
        touch(root, "real/r0.mp4", "real/r1.mp4", "fake/f0.mp4", "fake/f1.mp4")
    touch(root, f"{folder}/.AppleDouble/id7_0000.mp4", f"{folder}/._id7_0001.mp4",
          ".cache/real/x.mp4")
    if dataset == "folder":
        touch(root, "fake/.hidden_method/f9.mp4")
    (root / folder / "gone.mp4").symlink_to(root / "nowhere.mp4")
    result = build_index(dataset, root)
    assert not result.videos["path"].str.contains("/.", regex=False).any()
    assert not result.videos["video_id"].str.contains("gone").any()
    row = result.missing.set_index("video_id").loc[f"{folder}/gone"]
    assert row["path"] == str(root / folder / "gone.mp4")
    assert row["reason"].startswith("dangling symbolic link") and "nowhere.mp4" in row["reason"]


# --- text encodings of the dataset's own files ----------------------------------------------

def _dfdc_meta(root: Path) -> Path:
    touch(root, "a.mp4", "b.mp4")
    return root / "metadata.json"


def _encode(text: str, encoding: str) -> bytes:
    """``text`` as an editor saves it: UTF-16 ("Unicode") with its byte-order mark."""
    return text.encode(encoding)


DFDC_META = json.dumps({"a.mp4": {"label": "REAL", "note": "café"},
                        "b.mp4": {"label": "FAKE", "original": "a.mp4"}}, ensure_ascii=False)
LISTED = "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
@pytest.mark.parametrize("dataset", ["celebdf", "dfdc", "manifest"])
def test_a_list_metadata_or_manifest_with_a_byte_order_mark_is_read_as_meant(
        tmp_path: Path, dataset: str, encoding: str) -> None:
    if dataset == "celebdf":
        make_celebdf(tmp_path)
        (tmp_path / datasets.CELEBDF_LIST).write_bytes(_encode(LISTED, encoding))
        test = build_index(dataset, tmp_path).videos.query("split == 'test'")
        assert sorted(test["video_id"]) == ["Celeb-real/id0_0000", "Celeb-synthesis/id0_id1_0000"]
    elif dataset == "dfdc":
        _dfdc_meta(tmp_path).write_bytes(_encode(DFDC_META, encoding))
        videos = build_index(dataset, tmp_path).videos
        assert dict(zip(videos["video_id"], videos["label"])) == {"a": 0, "b": 1}
    else:
        make_folder(tmp_path)
        (tmp_path / datasets.MANIFEST).write_bytes(_encode("path,camera\nreal/r00.mp4,café\n",
                                                           encoding))
        videos = build_index("folder", tmp_path).videos.set_index("video_id")
        assert videos.at["real/r00", "camera"] == "café"


@pytest.mark.parametrize("dataset", ["celebdf", "dfdc", "manifest"])
@pytest.mark.parametrize("encoding, needle", [
    ("latin-1", "not UTF-8 text (byte 0xe9 on line"),
    ("utf-16-le", "holds NUL characters, not UTF-8 text (UTF-16 without a byte-order mark?)"),
])
def test_a_list_metadata_or_manifest_not_in_utf8_is_one_line_naming_it(
        tmp_path: Path, dataset: str, encoding: str, needle: str) -> None:
    """Before, a UnicodeDecodeError traceback from stage index (and from check)."""
    if dataset == "celebdf":
        make_celebdf(tmp_path)
        target, text = tmp_path / datasets.CELEBDF_LIST, LISTED + "# café\n"
    elif dataset == "dfdc":
        target, text = _dfdc_meta(tmp_path), DFDC_META
    else:
        make_folder(tmp_path)
        target, text = tmp_path / datasets.MANIFEST, "path,camera\nreal/r00.mp4,café\n"
    target.write_bytes(text.encode(encoding))
    with pytest.raises(DatasetError) as err:
        build_index("folder" if dataset == "manifest" else dataset, tmp_path)
    assert str(err.value).startswith(f"{target}: ") and needle in str(err.value)
    assert "\n" not in str(err.value)


def test_an_empty_manifest_is_one_line(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / datasets.MANIFEST).write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"{tmp_path / datasets.MANIFEST}: not a readable CSV"):
        build_index("folder", tmp_path)


@pytest.mark.parametrize("dataset", ["celebdf", "folder"])
def test_a_video_or_folder_whose_name_is_not_utf8_is_recorded_not_indexed(tmp_path: Path,
                                                                          dataset: str) -> None:
    """A Latin-1 name from an old archive: Python reads its byte as a lone surrogate that
    no index, store file name or CSV can hold (writing videos.csv raised
    UnicodeEncodeError); it is listed with the reason, as a dangling link is."""
    if dataset == "celebdf":
        root, folder = make_celebdf(tmp_path), "Celeb-real"
    else:
        root, folder = tmp_path, "fake"
        make_folder(root)
    (root / folder / os.fsdecode(b"caf\xe9.mp4")).write_bytes(b"\0")
    (root / folder / os.fsdecode(b"caf\xe9")).mkdir()
    (root / folder / os.fsdecode(b"caf\xe9") / "x.mp4").write_bytes(b"\0")
    result = build_index(dataset, root)
    result.videos.to_csv(tmp_path / "videos.csv", index=False)  # UTF-8, as stage index writes
    result.missing.to_csv(tmp_path / "absent.csv", index=False)
    assert not result.videos["video_id"].str.contains("caf").any()
    reasons = result.missing.set_index("path")["reason"]
    assert reasons[str(root / folder / "caf\\xe9.mp4")] == ("file name is not UTF-8 (Latin-1?); "
                                                           "rename it to index it")
    subfolder = reasons.get(str(root / folder / "caf\\xe9"), "")
    # celebdf's folders are flat: their sub-folders are not scanned, so not recorded either
    assert subfolder.startswith("folder name is not UTF-8") == (dataset == "folder")
