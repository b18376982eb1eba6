"""Compression robustness, the paper's theme: every trained detector on re-encoded videos.

The test videos are re-encoded with H.264 (libx264 through imageio-ffmpeg's ffmpeg) at
each CRF of the profile (0 is lossless, 23 is FaceForensics++'s c23, 40 its c40), their
faces extracted again with the run's own settings, and scored by the saved detectors
(:mod:`dflib.reload`, imported only when scoring: it loads torch, which must come
before TensorFlow in a process). Each CRF is a small run folder of its own,
``robustness/crf<NN>/`` (videos, face store, predictions), so a rerun re-encodes and
re-extracts only what is missing or made from another source file or preset; the table
``tables/robustness.csv`` has one row per (method, CRF).

Beside the CRF curve, the same test videos meet the seven distortions of
DeeperForensics-1.0 (:mod:`dflib.perturbations`) at the profile's levels: each
condition is a run folder ``robustness/<type><level>/`` whose faces are the clean face
store's boxes cut from the distorted frames (only the sampled frames with a face are
decoded); ``tables/perturbations.csv`` has one row per (method, type, level). Every
condition and every CRF is scored in one call, so each detector is loaded once.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import evaluation, face_extractor, face_store, faces, io, perturbations, statistics
from .detectors import display_group
from .paths import RunPaths, resolve
from .robustness_fields import VIDEO_PERTURBATION, X264_PRESETS
from .video import VideoError, read_frames

METRIC_COLUMNS = ["n", "n_no_face", "auc", "auc_low", "auc_high", "acc", "balanced_acc",
                  "balanced_acc_val", "eer", "ap", "logloss", "ece"]
TABLE_COLUMNS = ["method", "family", "crf", *METRIC_COLUMNS]
PERTURBATION_COLUMNS = ["type", "level", "parameter", "method", "family", *METRIC_COLUMNS]
ORIGINAL = -1  # the crf of the rows scored on the videos as the dataset ships them
ORIGINAL_TYPE = "original"  # the type (level 0) of those rows in perturbations.csv
# Bump when what a distortion does changes: a condition's face files record it, so a
# rerun remakes them.
PERTURBATION_VERSION = 1
# Distortions that draw random numbers: only their face files depend on the run's seed.
RANDOM_TYPES = ("block", "noise")


class EncodeError(RuntimeError):
    """ffmpeg could not re-encode a video; the message names the file."""


def reencode(source: str | Path, target: str | Path, crf: int, preset: str = "medium") -> Path:
    """Re-encode ``source`` to H.264 at ``crf`` (no audio, yuv420p), written atomically."""
    import imageio_ffmpeg

    if not 0 <= crf <= 51:
        raise ValueError(f"crf {crf} is outside libx264's 0..51")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset {preset!r} is not one of {', '.join(X264_PRESETS)}")
    with io.atomic_path(target) as tmp:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i",
               str(source), "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
               "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
            raise EncodeError(f"{source}: cannot re-encode at CRF {crf} ({last})")
    return Path(target)


def encoding_record(source: Path, crf: int, preset: str) -> dict[str, object]:
    """What a re-encoded video is made from: its source file (path, size, modification
    time), the CRF and the preset; a re-encode is reused only while this is unchanged
    (and the re-encoded file is the one written, :func:`ensure_reencoded`)."""
    return {"source": str(source), "stat": io.file_stamp(source), "crf": crf, "preset": preset}


def record_path(target: Path) -> Path:
    """The record beside a re-encoded video (:func:`encoding_record`)."""
    return target.with_suffix(".json")


def encoded_from(target: Path) -> dict[str, object] | None:
    """The record a re-encoded video was made with; None when the video or its record is
    missing or unreadable (then it is re-encoded)."""
    if not target.is_file():
        return None
    try:
        return json.loads(record_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_reencoded(source: Path, target: Path, crf: int, preset: str) -> bool:
    """Re-encode ``source`` onto ``target`` unless ``target`` was made from this very
    source file, CRF and preset (:func:`encoding_record`) and is still the file written
    then (its size and modification time, kept in the record as ``encoded``: a copy cut
    short or a file replaced is encoded again); True when it encoded."""
    made_from = encoding_record(source, crf, preset)
    if encoded_from(target) == {**made_from, "encoded": io.file_stamp(target)}:
        return False
    reencode(source, target, crf, preset)
    io.write_text(json.dumps({**made_from, "encoded": io.file_stamp(target)}, sort_keys=True)
                  + "\n", record_path(target))
    return True


def pick_videos(test: pd.DataFrame, max_videos: int, seed: int) -> pd.DataFrame:
    """All test videos, or a seeded subset of at most ``max_videos`` with both classes
    in their original proportion (at least one of each when both exist)."""
    if max_videos <= 0 or len(test) <= max_videos:
        return test.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    share = test["label"].value_counts(normalize=True)
    parts = []
    for label, group in test.groupby("label"):
        k = max(1, round(max_videos * share[label]))
        parts.append(group.iloc[np.sort(rng.choice(len(group), min(k, len(group)),
                                                   replace=False))])
    return pd.concat(parts).sort_index().head(max_videos).reset_index(drop=True)


@dataclass
class RobustnessResult:
    """The tables (one row per method and CRF; per method, distortion type and level) and
    what could not be re-encoded or decoded."""

    table: pd.DataFrame
    failures: pd.DataFrame  # video_id, reason
    methods: list[str]
    outcomes: pd.DataFrame  # the stage summary's view: video_id, outcome, reason, detail
    extractions: dict[int, faces.Extraction]  # by CRF: its faces stage
    perturbations: pd.DataFrame  # tables/perturbations.csv


def run_section(run: RunPaths, test: pd.DataFrame, shared: Mapping[str, Any],
                section: Mapping[str, Any], scoring: statistics.Scoring,
                progress: bool = True) -> RobustnessResult:
    """:func:`run_robustness` with a validated profile's shared keys and ``robustness``
    section (:data:`dflib.robustness_fields.ROBUSTNESS`): ``test`` (the index's test rows)
    cut to ``max_videos``, every method with results when ``methods`` is empty, faces
    extracted again with the settings of the run's face store."""
    from . import reload  # torch before TensorFlow; see dflib.reload

    return run_robustness(
        run, pick_videos(test, section["max_videos"], shared["seed"]), section["crfs"],
        section["methods"] or reload.trained_methods(run),
        face_store.store_settings(run, device=shared["device"]), section["preset"],
        progress=progress, scoring=scoring,
        conditions=perturbation_conditions(section["perturbations"],
                                           section["perturbation_levels"]),
        seed=shared["seed"])


def run_robustness(run: RunPaths, test: pd.DataFrame, crfs: Sequence[int],
                   methods: Sequence[str], extraction: face_store.StoreSettings,
                   preset: str, progress: bool = True,
                   scoring: statistics.Scoring = statistics.Scoring(),
                   conditions: Sequence[Condition] = (), seed: int = 0) -> RobustnessResult:
    """Re-encode ``test`` (index rows) at each CRF, extract faces with ``extraction`` (the
    run's own: :func:`dflib.face_store.store_settings`), score ``methods``, each at its own
    ``threshold_val`` of ``results.csv`` (chosen on the clean validation videos).

    Rows with ``crf`` = :data:`ORIGINAL` repeat each method's own video-level results on
    the same videos, the reference the CRFs are read against. A video that ffmpeg cannot
    re-encode is recorded (and keeps its ``no_face`` row in the predictions, as any
    video without faces does).

    ``conditions`` (DeeperForensics-1.0 distortions, :func:`perturbation_conditions`) are
    made by :func:`perturb_faces` (``seed`` draws their noise and blocks) and scored in
    the same call; their rows go to ``tables/perturbations.csv``.
    """
    from . import reload  # torch before TensorFlow; see dflib.reload

    unknown = sorted(set(methods) - set(reload.trained_methods(run)))
    if unknown:
        raise ValueError(f"robustness.methods: {unknown[0]!r} has no results in "
                         f"{run.results_csv} (trained: {', '.join(reload.trained_methods(run))})")
    thresholds = _thresholds_val(run)
    original = _original_rows(run, methods, test, thresholds, scoring)
    failures: list[dict[str, str]] = []
    extractions, stores, scored_videos = {}, {}, []
    for crf in crfs:
        videos, extractions[crf] = _reencode_and_extract(run, test, crf, extraction, preset,
                                                         failures, progress)
        stores[_crf_key(crf)] = face_store.FaceStore(run.crf_run(crf))
        scored_videos.append(videos.assign(video_id=_crf_key(crf) + "/"
                                           + videos["video_id"].astype(str)))
    perturbed = perturb_faces(run, test, conditions,
                              face_extractor.FaceExtractor.from_params(extraction.extractor), seed,
                              preset, progress=progress) if conditions else PerturbedFaces({}, [])
    failures += perturbed.failures
    for condition, videos in perturbed.videos.items():
        stores[condition.key] = face_store.FaceStore(condition.run(run))
        scored_videos.append(videos.assign(video_id=condition.key + "/"
                                           + videos["video_id"].astype(str)))
    # One call for every CRF and condition: each detector is loaded once, not once per CRF
    # (loading the saved models cost about half of this stage's time when each CRF reloaded
    # them).
    scored = reload.score_methods(run, methods, StoresByKey(stores),
                                  pd.concat(scored_videos, ignore_index=True),
                                  progress=progress) if scored_videos else {}
    rows = [original.assign(crf=ORIGINAL)]
    for crf in crfs:
        sub = run.crf_run(crf)
        for method, prediction in scored.items():
            v, f = (_of_key(part, _crf_key(crf)) for part in prediction)
            evaluation.write_predictions(sub, method, v, f)
            rows.append(_rows(evaluation.score_method(
                sub, method, scoring=scoring, thresholds_val=thresholds.get(method, {})
            )).assign(crf=crf))
    table = pd.concat(rows, ignore_index=True)[TABLE_COLUMNS].round(evaluation.RESULT_DECIMALS)
    io.write_csv(table, run.robustness_csv)
    distorted = [original.assign(type=ORIGINAL_TYPE, level=0, parameter=np.nan)]
    for condition in perturbed.videos:
        sub, scores = condition.run(run), []
        for method, prediction in scored.items():
            v, f = (_of_key(part, condition.key) for part in prediction)
            evaluation.write_predictions(sub, method, v, f)
            scores.append({"method": method,
                           **_video_row(v, thresholds.get(method, {}), scoring)})
        # Video level only, as the original rows: the frame level's bootstrap and a results
        # table per condition would cost more than the conditions' scoring.
        distorted.append(_rows(pd.DataFrame(scores).assign(level="video")).assign(
            type=condition.kind, level=condition.level, parameter=condition.parameter))
    perturbation_table = (pd.concat(distorted, ignore_index=True)[PERTURBATION_COLUMNS]
                          .round(evaluation.RESULT_DECIMALS))
    io.write_csv(perturbation_table, run.perturbations_csv)
    failed = pd.DataFrame(failures, columns=["video_id", "reason", "short"])
    first = failed.drop_duplicates("video_id").set_index("video_id")
    ids = test["video_id"].astype(str)
    hit = ids.isin(first.index)
    outcomes = pd.DataFrame({
        "video_id": ids, "outcome": np.where(hit, "failed", "processed"),
        "reason": ids.map(first["short"]).fillna(""),
        "detail": ids.map(first["reason"]).fillna("")})
    return RobustnessResult(table, failed[["video_id", "reason"]], list(methods), outcomes,
                            extractions, perturbation_table)


def _reencode_and_extract(run: RunPaths, test: pd.DataFrame, crf: int,
                          extraction: face_store.StoreSettings, preset: str,
                          failures: list[dict[str, str]], progress: bool
                          ) -> tuple[pd.DataFrame, faces.Extraction]:
    """``test`` re-encoded at ``crf`` and its faces extracted in ``robustness/crf<NN>/``:
    the videos with the columns scoring reads (``n_faces, n_other_faces, face_status``)
    and the extraction; a video ffmpeg cannot re-encode is added to ``failures``."""
    sub = run.crf_run(crf).ensure()
    encoded, redone = [], 0
    for video in tqdm(test.to_dict("records"), desc=f"CRF {crf}", unit="video",
                      disable=not progress):
        target = sub.reencoded_video(str(video["video_id"]))
        existed = target.is_file()
        try:
            redone += ensure_reencoded(resolve(video["path"]), target, crf, preset) and existed
        except EncodeError as exc:
            failures.append(_failure(video["video_id"], "cannot re-encode", exc))
        encoded.append({**video, "path": str(target)})
    if redone:
        print(f"CRF {crf}: {redone} re-encoded video(s) redone: their source file or "
              "the preset changed, or the re-encoded file is not the one written")
    videos = pd.DataFrame(encoded, columns=test.columns)
    extracted = faces.run_extraction(videos, sub, extraction.extractor,
                                     extraction.frames_per_video, extraction.sampling,
                                     extraction.every_k, progress=progress)
    videos = videos.merge(extracted.summary[["video_id", "n_faces", "n_other_faces",
                                             "status"]].rename(
        columns={"status": "face_status"}), on="video_id", how="left")
    videos[["n_faces", "n_other_faces"]] = (videos[["n_faces", "n_other_faces"]]
                                            .fillna(0).astype(int))
    return videos, extracted


def _failure(video_id: object, short: str, exc: Exception) -> dict[str, str]:
    """A failures row: the message naming the file, and the short reason the stage summary
    counts (equal problems of several videos count together)."""
    return {"video_id": str(video_id), "reason": str(exc).splitlines()[0], "short": short}


@dataclass(frozen=True)
class Condition:
    """One DeeperForensics-1.0 distortion type at one level (1..5)."""

    kind: str
    level: int

    @property
    def parameter(self) -> float:
        return perturbations.parameter(self.kind, self.level)

    @property
    def key(self) -> str:
        """Its name among the face sources of one scoring call (never ``crf<NN>``)."""
        return f"{self.kind}{self.level}"

    def run(self, run: RunPaths) -> RunPaths:
        """Its run folder under ``run`` (``robustness/<type><level>/``)."""
        return run.perturbation_run(self.kind, self.level)


def perturbation_conditions(kinds: Sequence[str], levels: Sequence[int]) -> list[Condition]:
    """Every listed type at every listed level, in the order given, each once."""
    for kind in kinds:
        for level in levels:
            perturbations.parameter(kind, level)  # refuses an unknown type or level
    return [Condition(k, int(v)) for k in dict.fromkeys(kinds) for v in sorted(set(levels))]


@dataclass
class PerturbedFaces:
    """Per condition the test videos with their face counts (``video_id, label, n_faces,
    n_other_faces, face_status``, the columns scoring reads), and what failed."""

    videos: dict[Condition, pd.DataFrame]
    failures: list[dict[str, str]]


def perturb_faces(run: RunPaths, test: pd.DataFrame, conditions: Sequence[Condition],
                  extractor: face_extractor.FaceExtractor, seed: int, preset: str,
                  progress: bool = True) -> PerturbedFaces:
    """The faces of ``test`` under each condition, written as each condition's face store.

    The clean face store's boxes are cut (``extractor``, the run's crop) from the distorted
    sampled frames, so the detectors see the faces they saw, distorted, and a change of
    score is theirs, not the face detector's. Frame-level types distort the decoded frames
    of the video as shipped; video compression decodes the video re-encoded at its CRF
    (shared with the CRF curve's folder ``robustness/crf<NN>/``). A condition's face file
    is reused while it was made from the same clean store file, distortion, seed (noise,
    blocks) and re-encoded file; a video that cannot be decoded or re-encoded is recorded
    in ``failures`` and counted ``failed`` with no face, and the others go on.
    """
    for condition in conditions:
        condition.run(run).face_store.mkdir(parents=True, exist_ok=True)
        io.remove_partials(condition.run(run).face_store)
    rows: dict[Condition, list[dict[str, Any]]] = {c: [] for c in conditions}
    failures: list[dict[str, str]] = []
    for video in tqdm(test.to_dict("records"), desc="perturbations", unit="video",
                      disable=not progress):
        made = _perturb_video(run, video, conditions, extractor, seed, preset)
        for condition, (n_faces, status, failure) in made.items():
            rows[condition].append({"video_id": str(video["video_id"]), "label": video["label"],
                                    "n_faces": n_faces, "n_other_faces": 0,
                                    "face_status": status})
            if failure:
                failures.append(failure)
    unique = list({(f["video_id"], f["reason"]): f for f in failures}.values())
    return PerturbedFaces({c: pd.DataFrame(r, columns=["video_id", "label", "n_faces",
                                                       "n_other_faces", "face_status"])
                           for c, r in rows.items()}, unique)


def _clean_faces(run: RunPaths, video_id: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``frame_idx, boxes, status`` of the frames with a face in the clean store file."""
    target = run.face_file(video_id)
    problem = io.read_problem(target) if target.is_file() else "no store file"
    if problem:
        raise VideoError(target, f"no readable face store file to take the boxes from ({problem})")
    with np.load(target) as z:
        has_face = z["has_face"]
        return z["sampled_idx"][has_face], z["boxes"][has_face], str(z["status"])


def _perturb_video(run: RunPaths, video: Mapping[str, Any], conditions: Sequence[Condition],
                   extractor: face_extractor.FaceExtractor, seed: int, preset: str
                   ) -> dict[Condition, tuple[int, str, dict[str, str] | None]]:
    """One video under every condition: ``n_faces, face_status, failure`` of each, its
    face files written (or reused) on the way."""
    vid = str(video["video_id"])
    out: dict[Condition, tuple[int, str, dict[str, str] | None]] = {}
    try:
        frame_idx, boxes, status = _clean_faces(run, vid)
        digest = face_store.store_digest(run, vid)
    except VideoError as exc:
        for condition in conditions:
            _write_faces(condition.run(run).face_file(vid), [], [], "failed", str(exc), "")
            out[condition] = (0, "failed", _failure(vid, "no clean faces", exc))
        return out
    source_frames: list[np.ndarray] | None = None
    source_read: list[int] = []
    for condition in conditions:
        target = condition.run(run).face_file(vid)
        try:
            settings: dict[str, Any] = {"clean": digest, "type": condition.kind,
                                        "level": condition.level,
                                        "parameter": condition.parameter,
                                        "version": PERTURBATION_VERSION}
            if condition.kind in RANDOM_TYPES:
                settings["seed"] = seed
            if condition.kind == VIDEO_PERTURBATION and len(frame_idx):
                encoded = run.crf_run(int(condition.parameter)).reencoded_video(vid)
                ensure_reencoded(resolve(video["path"]), encoded, int(condition.parameter),
                                 preset)
                settings["encoded"] = encoded_from(encoded)
            config = json.dumps(settings, sort_keys=True)
            if not io.npz_made_with(target, config):
                if not len(frame_idx):  # the clean store found no face: nothing to cut
                    cut, read = [], []
                elif condition.kind == VIDEO_PERTURBATION:
                    cut, read = read_frames(encoded, frame_idx)
                else:
                    if source_frames is None:
                        source_frames, source_read = read_frames(resolve(video["path"]),
                                                                 frame_idx)
                    cut = [perturbations.distort(frame, condition.kind, condition.level,
                                                 perturbations.frame_rng(seed, vid, i,
                                                                         condition.kind,
                                                                         condition.level))
                           for frame, i in zip(source_frames, source_read)]
                    read = source_read
                box_of = dict(zip(frame_idx.tolist(), boxes))
                # A video the clean store found no face in keeps its status (no_face, failed).
                _write_faces(target, [extractor.cut_box(f, box_of[i]) for f, i in zip(cut, read)],
                             read, status if len(read) or not len(frame_idx) else "no_face",
                             "", config)
            with np.load(target) as z:
                out[condition] = (len(z["frame_idx"]), str(z["status"]), None)
        except (VideoError, EncodeError) as exc:
            short = ("cannot re-encode" if isinstance(exc, EncodeError)
                     else "cannot decode for the perturbations")
            _write_faces(target, [], [], "failed", str(exc), "")
            out[condition] = (0, "failed", _failure(vid, short, exc))
    return out


def _write_faces(target: Path, crops: Sequence[np.ndarray], frame_idx: Sequence[int],
                 status: str, reason: str, config: str) -> None:
    """A condition's face file, read by :class:`dflib.face_store.FaceStore`; ``config`` "" (a
    failure) is never reused, so a rerun tries the video again."""
    size = crops[0].shape[0] if len(crops) else 0
    io.write_npz(target, faces=(np.stack(crops) if len(crops)
                                else np.zeros((0, size, size, 3), np.uint8)),
                 frame_idx=np.asarray(frame_idx, dtype=np.int64), status=np.array(status),
                 reason=np.array(reason), config=np.array(config))


class StoresByKey:
    """Several face stores read as one :class:`dflib.detectors.models.batches.FaceSource`: video
    ``<key>/<video_id>`` is ``video_id`` of the store under ``key``."""

    def __init__(self, stores: Mapping[str, face_store.FaceStore]):
        self.stores = dict(stores)

    def load(self, video_id: str, every_face: bool = False) -> tuple[np.ndarray, np.ndarray]:
        key, _, own_id = video_id.partition("/")
        return self.stores[key].load(own_id, every_face=every_face)


def _crf_key(crf: int) -> str:
    return f"crf{crf}"


def _of_key(table: pd.DataFrame | None, key: str) -> pd.DataFrame | None:
    """The rows of ``table`` (predictions of a :class:`StoresByKey` source) under ``key``,
    with their own video ids."""
    if table is None:
        return None
    ids = table["video_id"].astype(str)
    mine = ids.str.startswith(key + "/")
    return table[mine].assign(video_id=ids[mine].str.slice(len(key) + 1)).reset_index(drop=True)


def _rows(results: pd.DataFrame) -> pd.DataFrame:
    video = results[results["level"] == "video"].drop(columns="level")
    return video.assign(family=video["method"].map(display_group))


def _thresholds_val(run: RunPaths) -> dict[str, dict[str, float]]:
    """``method -> level -> threshold_val`` of the run's results table."""
    table = evaluation.results_table(run)
    out: dict[str, dict[str, float]] = {}
    for row in table.itertuples():
        if pd.notna(row.threshold_val):
            out.setdefault(row.method, {})[row.level] = float(row.threshold_val)
    return out


def _original_rows(run: RunPaths, methods: Sequence[str], test: pd.DataFrame,
                   thresholds: Mapping[str, Mapping[str, float]],
                   scoring: statistics.Scoring) -> pd.DataFrame:
    """Each method's own test predictions restricted to ``test``, scored the same way."""
    ids = set(test["video_id"].astype(str))
    rows = []
    for method in methods:
        videos, _ = evaluation.read_predictions(run, method)
        rows.append({"method": method, **_video_row(videos[videos["video_id"].isin(ids)],
                                                    thresholds.get(method, {}), scoring)})
    return _rows(pd.DataFrame(rows).assign(level="video"))


def _video_row(videos: pd.DataFrame, thresholds: Mapping[str, float],
               scoring: statistics.Scoring) -> dict[str, Any]:
    """The video-level metrics of one method's predictions, at its ``threshold_val``."""
    return {"n_no_face": int((videos["status"] != statistics.STATUS_OK).sum()),
            **statistics.result_row(videos["label"], videos["score"],
                                    threshold_val=thresholds.get("video"), scoring=scoring)}


def read_table(run: RunPaths) -> pd.DataFrame:
    """``tables/robustness.csv``; a clear error when stage 08 has not run."""
    target = run.robustness_csv
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no robustness table; run stage 'robustness' first")
    return pd.read_csv(target)


def auc_by_crf(table: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, ``original`` and each CRF as columns, video-level AUC as values."""
    wide = table.pivot(index="method", columns="crf", values="auc")
    wide.columns = ["original" if c == ORIGINAL else f"crf{c}" for c in wide.columns]
    order = list(dict.fromkeys(table["method"]))
    return wide.reindex(order).reset_index()


def read_perturbations(run: RunPaths) -> pd.DataFrame:
    """``tables/perturbations.csv``; a clear error when stage 08 has not written it."""
    target = run.perturbations_csv
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no perturbation table; run stage 'robustness' "
                                "first")
    return pd.read_csv(target)


def auc_by_perturbation(table: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, ``original`` and each ``<type><level>`` as columns, video-level AUC
    as values."""
    names = np.where(table["type"] == ORIGINAL_TYPE, ORIGINAL_TYPE,
                     table["type"] + table["level"].astype(str))
    wide = table.assign(condition=names).pivot(index="method", columns="condition", values="auc")
    wide = wide[list(dict.fromkeys(names))]
    wide.columns.name = None
    return wide.reindex(list(dict.fromkeys(table["method"]))).reset_index()
