"""Stage entry points: what each notebook's main cell calls, with a validated profile.

Each function reads earlier artifacts from the run folder, writes its own, and returns a
small summary for the notebook to show; nothing passes through notebook memory. Each also
counts its videos as processed, skipped or failed, with reasons, in
``tables/summary_<stage>.csv`` and puts its failures in ``failures.csv``
(:func:`dflib.summaries.stage_summary`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from . import config, datasets, io, paths, summaries

if TYPE_CHECKING:  # heavy (TensorFlow, torch) modules are imported inside the stages
    from . import (cnn_training, embeddings, evaluation, faces, fitting, frequency, gradcam,
                   robustness, sbi, triplet)

# Outcomes of the faces stage that get a row in failures.csv: a video without a face too.
FACE_FAILURES = ("skipped", "failed")


def read_dataset(profile: config.Profile) -> datasets.IndexResult:
    """The index of the profile's dataset folder(s), as stage 00 writes it (train and val
    from ``dataset``, test from ``index.test_dataset`` when it is set); nothing is written."""
    return datasets.build_profile_index(profile.shared, profile.sections["index"])


def build_index(profile: config.Profile) -> datasets.IndexResult:
    """Stage 00: generate the demo dataset if asked (from ``index.demo_seed``, never the
    run's seed; a ``data_root`` holding videos made with other settings is refused), then
    write ``index/videos.csv``
    (train and val from ``dataset``, test from ``index.test_dataset`` when it is set).
    Prints the split sizes; refuses a train split without both classes or an empty test
    split (:func:`dflib.datasets.check_splits`) before any expensive stage. The files of the
    dataset's folders that are not videos go to ``index/left_out.csv``, with one line."""
    from . import synth

    shared, p = profile.shared, profile.sections["index"]
    synth.generate_section(shared, p)
    datasets.check_data_root(profile)
    result = read_dataset(profile)
    run = profile.run.ensure()
    # Listed-but-absent videos get their own file and one line: a partial download would
    # otherwise bury the videos that really failed in thousands of failures.csv rows.
    io.write_csv(result.missing, run.absent_csv)
    io.write_csv(result.left_out, run.left_out_csv)
    for line in (datasets.absent_line(result, run.absent_csv),
                 datasets.left_out_line(result, run.left_out_csv)):
        if line:
            print(line)
    print(datasets.check_splits(shared, p, result))
    io.write_csv(result.videos, run.videos_csv)
    outcomes = pd.concat([
        pd.DataFrame({"video_id": result.videos["video_id"], "outcome": "processed", "reason": ""}),
        pd.DataFrame({"video_id": result.missing["video_id"], "outcome": "skipped",
                      "reason": "not on disk", "detail": result.missing["reason"]})],
        ignore_index=True)
    summaries.stage_summary(run, "index", outcomes)
    return result


def load_index(run: paths.RunPaths) -> pd.DataFrame:
    """The run's video index; a clear error when stage 00 has not run."""
    if not run.videos_csv.exists():
        raise FileNotFoundError(f"{run.videos_csv}: no video index; run stage 'index' first")
    return pd.read_csv(run.videos_csv, keep_default_na=False,
                       dtype={"video_id": str, "path": str})


def extract_faces(profile: config.Profile, progress: bool = True) -> pd.DataFrame:
    """Stage 01: sample frames and extract one MTCNN face per frame for every video."""
    from . import faces

    run = profile.run.ensure()
    extraction = faces.run_section(load_index(run), run, profile.shared,
                                   profile.sections["faces"], progress=progress)
    return record_faces(run, extraction)


def record_faces(run: paths.RunPaths, extraction: "faces.Extraction") -> pd.DataFrame:
    """Write the faces stage's summary of an extraction (``tables/summary_faces.csv``, its
    rows of ``failures.csv``) and hand back its per-video summary."""
    summaries.stage_summary(run, "faces", extraction.outcomes, record=FACE_FAILURES)
    return extraction.summary


def embed_faces(profile: config.Profile, progress: bool = True) -> "embeddings.EmbedResult":
    """Stage 06: FaceNet embeddings of every stored face, plus the manifest of the weights
    used (torch only; TensorFlow is never imported here)."""
    from . import embeddings

    run = profile.run.ensure()
    result = embeddings.run_section(run, profile.shared, profile.sections["embed_faces"],
                                    progress=progress)
    table = result.videos
    no_face = table["status"].isin(["embedded", "skipped"]) & (table["n_faces"] == 0)
    outcome = np.select([table["status"] == "failed", table["status"] == "no_store", no_face],
                        ["failed", "skipped", "skipped"], "processed")
    reason = np.select([table["status"] == "failed", table["status"] == "no_store", no_face,
                        table["status"] == "skipped"],
                       ["unreadable store file", table["reason"], "no_face", "already done"], "")
    summaries.stage_summary(run, "embed_faces", pd.DataFrame({
        "video_id": table["video_id"], "outcome": outcome, "reason": reason,
        "detail": table["reason"]}))
    return result


def train_triplet(profile: config.Profile, progress: bool = True) -> "triplet.StageResult":
    """Stage 07: the semi-hard triplet network on FaceNet embeddings and the classic
    classifiers before (``facenet/<clf>``) and after (``triplet/<clf>``) it."""
    from . import embeddings, triplet

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    with _scoring(run, videos, "train_triplet"):
        result = triplet.run_stage(run, videos, profile.sections["train_triplet"],
                                   seed=profile.shared["seed"], progress=progress,
                                   scoring=scoring(profile))
    # A video with faces but no readable embedding file (the embedding stage failed it, or
    # the file broke since) added nothing to training or scoring: a failure here too.
    problems = embeddings.check_embeddings(run, videos).to_numpy()
    outcomes = face_outcomes(videos)
    lost = (outcomes["outcome"] == "processed").to_numpy() & (problems != "")
    outcomes.loc[lost, ["outcome", "reason"]] = ["failed", "no readable embedding file"]
    outcomes.loc[lost, "detail"] = problems[lost]
    summaries.stage_summary(run, "train_triplet", outcomes)
    return result


def train_frequency(profile: config.Profile) -> "frequency.StageResult":
    """Stage 11: the frequency-artefact detectors (``frequency/<feature>``: a logistic
    regression on each face's spectrum, SRM or DCT features), then the identity control
    (``control/identity``) where stage 06's embeddings exist, else one line why not."""
    from . import faces, frequency, identity

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    section = profile.sections["train_frequency"]
    with _scoring(run, videos, "train_frequency"):
        result = frequency.run_stage(run, faces.FaceStore(run), videos, section,
                                     scoring=scoring(profile))
        control = identity.run_control(run, videos, section["threshold"], scoring(profile))
    if isinstance(control, str):
        print(control)
    outcomes = face_outcomes(videos)
    failed = outcomes["video_id"].isin(list(result.failed))
    outcomes.loc[failed, ["outcome", "reason"]] = ["failed", "unreadable store file"]
    outcomes.loc[failed, "detail"] = outcomes.loc[failed, "video_id"].map(result.failed)
    summaries.stage_summary(run, "train_frequency", outcomes)
    return result


def scoring(profile: config.Profile) -> "evaluation.Scoring":
    """How the scoring stages score detectors: the profile's ``evaluation`` section and seed."""
    from . import evaluation

    return evaluation.Scoring.of(profile.shared, profile.sections[config.EVALUATION_SECTION])


def videos_with_faces(run: paths.RunPaths) -> pd.DataFrame:
    """The video index with each video's stored face count and the faces stage's verdict.

    ``n_faces`` (0 when none), ``face_status``: ``ok``, ``no_face``, ``failed`` (its
    extraction failed, or it is missing from ``faces/summary.csv``) or ``unreadable`` (its
    store file cannot be read now: it counts 0 faces, so no stage reads it), and
    ``face_reason``; ``n_other_faces``: the other faces a ``faces.multi_face: max`` store
    holds besides the chosen one of each frame.
    """
    from . import faces

    store = faces.FaceStore(run)
    summary = store.summary().reindex(columns=["video_id", "status", "n_faces",
                                               "n_other_faces", "reason"]).rename(
        columns={"status": "face_status", "reason": "face_reason"})
    videos = load_index(run).merge(summary, on="video_id", how="left")
    absent = videos["face_status"].isna()
    videos["face_status"] = videos["face_status"].fillna("failed")
    videos["face_reason"] = videos["face_reason"].fillna("").where(
        ~absent, "not in faces/summary.csv: rerun stage 'faces'")
    videos["n_faces"] = videos["n_faces"].fillna(0).astype(int)
    videos["n_other_faces"] = videos["n_other_faces"].fillna(0).astype(int)
    problems = pd.Series([store.check(v, n) if n > 0 else ""
                          for v, n in zip(videos["video_id"], videos["n_faces"])],
                         index=videos.index)
    bad = problems != ""
    videos.loc[bad, "face_status"] = "unreadable"
    videos.loc[bad, "face_reason"] = problems[bad]
    videos.loc[bad, ["n_faces", "n_other_faces"]] = 0
    return videos


def face_outcomes(videos: pd.DataFrame) -> pd.DataFrame:
    """Stage outcomes of :func:`videos_with_faces` rows: a video with faces is processed, one
    without is skipped (``no_face``, or ``failed at stage faces``, already recorded
    there), one whose store file cannot be read now is failed (``unreadable store file``)."""
    status, has_faces = videos["face_status"], videos["n_faces"] > 0
    outcome = np.select([has_faces, status == "unreadable"], ["processed", "failed"], "skipped")
    reason = np.select([has_faces, status == "unreadable", status == "failed"],
                       ["", "unreadable store file", "failed at stage faces"], "no_face")
    return pd.DataFrame({"video_id": videos["video_id"].to_numpy(), "outcome": outcome,
                         "reason": reason, "detail": videos["face_reason"].to_numpy()})


@contextlib.contextmanager
def _scoring(run: paths.RunPaths, videos: pd.DataFrame, stage: str) -> Iterator[None]:
    """Around a stage that scores the test split: an empty split is one clear warning
    (the results rows get n = 0 and NaN metrics) instead of one per metric and method."""
    if (videos["split"] == "test").any():
        yield
        return
    warnings.warn(f"{run.videos_csv}: the test split has no videos, so stage {stage} scores "
                  "nothing (its results rows have n = 0 and NaN metrics)", stacklevel=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="empty evaluation set")
        yield


def train_cnn(profile: config.Profile, verbose: int = 2) -> dict:
    """Stage 02: one frame CNN per balanced chunk; returns the training manifest."""
    from . import cnn_training, faces

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    manifest = cnn_training.train_section(faces.FaceStore(run), videos, run, profile.shared,
                                          profile.sections["train_cnn"], verbose)
    summaries.stage_summary(run, "train_cnn", face_outcomes(videos[videos["split"] != "test"]))
    return manifest


def evaluate_cnn(profile: config.Profile) -> "cnn_training.CnnEvaluation":
    """Stage 03: score the test split with the latest trained CNN's chunk models, write
    predictions and results rows; the architecture comes from the training manifest."""
    from . import cnn_training, faces

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    with _scoring(run, videos, "evaluate_cnn"):
        result = cnn_training.evaluate_chunks(
            faces.FaceStore(run), videos, run, cnn_training.latest_manifest(run),
            profile.sections["evaluate_cnn"], scoring=scoring(profile))
    summaries.stage_summary(run, "evaluate_cnn", face_outcomes(videos[videos["split"] == "test"]))
    return result


def train_sbi(profile: config.Profile, verbose: int = 2) -> "sbi.SbiResult":
    """Stage 10 (run after 03): the frame CNN trained on the real training faces and their
    self-blended images (dflib.sbi), scored as ``cnn/<arch>/sbi`` with the run's
    ``evaluate_cnn`` aggregation and threshold (those it is rescored with later). A real
    face without landmarks is left out and counted; its video fails (failures.csv) only
    if none of its faces is left."""
    from . import faces, result_tables, sbi

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    with _scoring(run, videos, "train_sbi"):
        result = sbi.run_stage(faces.FaceStore(run), videos, run, profile.shared,
                               profile.sections["train_sbi"],
                               config.run_settings(run)["evaluate_cnn"], scoring(profile),
                               verbose)
        groups = result_tables.method_by_group(run, result.method, scoring(profile))
    # Face swaps and self-blends apart: does it find more than a generator like its own?
    result.by_manipulation = groups[groups["group_kind"] == "manipulation"].reset_index(drop=True)
    outcomes = face_outcomes(videos[(videos["split"] != "train") | (videos["label"] == 0)])
    missing = result.missing.merge(videos[["video_id", "n_faces"]], on="video_id")
    for row in missing.itertuples():
        at = outcomes["video_id"] == row.video_id
        if row.n_missing >= row.n_faces:
            outcomes.loc[at, ["outcome", "reason"]] = ["failed", "no landmarks"]
        outcomes.loc[at, "detail"] = f"{row.n_missing} of {row.n_faces} faces without landmarks"
    summaries.stage_summary(run, "train_sbi", outcomes)
    return result


def train_c3d(profile: config.Profile, verbose: int = 2) -> "fitting.TemporalResult":
    """Stage 04: train (or reuse) the 3D CNNs on face clips, score the test split as
    ``c3d`` / ``conv3d`` (video level) and upsert their results rows."""
    from . import clips, faces

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    with _scoring(run, videos, "train_c3d"):
        result = clips.train_clip_models(faces.FaceStore(run), videos, run, profile.shared,
                                         profile.sections["train_c3d"], verbose=verbose,
                                         scoring=scoring(profile))
    summaries.stage_summary(run, "train_c3d", face_outcomes(videos))
    return result


def train_rnn(profile: config.Profile, verbose: int = 2) -> "fitting.TemporalResult":
    """Stage 05: the latest frame CNN's features (of its validation-chosen chunk) for the
    first ``seq_len`` faces of every video, then the recurrent heads and their
    time-averaging baseline, scored as ``rnn/<head>`` (video level); and the training-free
    temporal controls, scored as ``control/<statistic>``."""
    from . import controls, faces, sequences

    run = profile.run.ensure()
    videos = videos_with_faces(run)
    store = faces.FaceStore(run)
    with _scoring(run, videos, "train_rnn"):
        result = sequences.train_heads(store, videos, run, profile.shared,
                                       profile.sections["train_rnn"], verbose=verbose,
                                       scoring=scoring(profile))
        controls.run_controls(store, videos, run, scoring=scoring(profile))
    outcomes = face_outcomes(videos)
    failed = outcomes["video_id"].isin(
        result.features.loc[result.features["status"] == "failed", "video_id"])
    outcomes.loc[failed, ["outcome", "reason"]] = ["failed", "unreadable store file"]
    summaries.stage_summary(run, "train_rnn", outcomes)
    return result


def compression_robustness(profile: config.Profile,
                           progress: bool = True) -> "robustness.RobustnessResult":
    """Stage 08: the test videos re-encoded at each CRF, faces extracted again with the
    settings of the run's face store, every chosen detector scored on them;
    ``tables/robustness.csv``."""
    from . import robustness

    run = profile.run.ensure()
    videos = load_index(run)
    result = robustness.run_section(run, videos[videos["split"] == "test"], profile.shared,
                                    profile.sections["robustness"], scoring(profile),
                                    progress=progress)
    for crf, extraction in result.extractions.items():  # each CRF folder is a run of its own
        record_faces(run.crf_run(crf), extraction)
    summaries.stage_summary(run, "robustness", result.outcomes)
    return result


@dataclass
class Report:
    """What the report stage wrote and what notebook 09 shows and draws."""

    results: pd.DataFrame  # tables/results.csv
    table: pd.DataFrame  # paper-style, ours beside the published figures: table_results_paper
    published: pd.DataFrame  # the paper's figures for this setting (empty: none)
    comparisons: pd.DataFrame  # paired AUC differences with DeLong intervals: comparisons
    by_group: pd.DataFrame  # by manipulation and compression: results_by_group
    gradcam: "gradcam.Explanation"


def results_report(profile: config.Profile) -> Report:
    """Stage 09: the paper-style results table beside the published figures, the paired
    comparisons, the results by group (each written under ``tables/``) and Grad-CAM of
    the frame CNN; the notebook draws the figures, ``dflib run`` then writes the HTML
    report."""
    from . import evaluation, gradcam, plots, result_tables

    run = profile.run.ensure()
    settings = config.run_settings(run) | dict(profile.shared)  # the run's whole profile
    evidence = scoring(profile)
    results = evaluation.results_table(run)
    published = result_tables.published_results(settings)
    table = plots.save_table(result_tables.paper_table(results, published), run,
                             "table_results_paper")
    comparisons = plots.save_table(result_tables.comparisons(run, evidence.confidence), run,
                                   "comparisons")
    by_group = plots.save_table(result_tables.results_by_group(run, evidence), run,
                                "results_by_group")
    plots.save_table(result_tables.identity_table(results, comparisons), run, "identity")
    explained = gradcam.explain_section(run, profile.shared, profile.sections["report"])
    return Report(results, table, published, comparisons, by_group, explained)
