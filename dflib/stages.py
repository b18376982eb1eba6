"""Stage entry points: what each notebook's main cell calls, with a validated profile.

The data, faces, robustness and report stages are here; a detector stage is run by the
family that owns it (:func:`run_detector_stage`, :mod:`dflib.detectors`).

Each function reads earlier artifacts from the run folder, writes its own, and returns a
small summary for the notebook to show; nothing passes through notebook memory. Each also
counts its videos as processed, skipped or failed, with reasons, in
``tables/summary_<stage>.csv`` and puts its failures in ``failures.csv``
(:func:`dflib.summaries.stage_summary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import config, datasets, detectors, io, paths, summaries
from .stage_inputs import load_index, scoring

if TYPE_CHECKING:  # heavy (TensorFlow, torch) modules are imported inside the stages
    from . import faces, gradcam, robustness

# Outcomes of the faces stage that get a row in failures.csv: a video without a face too.
FACE_FAILURES = ("skipped", "failed")


def read_dataset(profile: config.Profile) -> datasets.IndexResult:
    """The index of the profile's dataset folder(s), as stage 00 writes it (train and val
    from ``dataset``, test from ``index.test_dataset`` when it is set); nothing is written."""
    return datasets.build_profile_index(profile.shared, profile.sections["index"])


def build_index(profile: config.Profile) -> datasets.IndexResult:
    """Stage 00: generate the dataset when its adapter does (from the section's own
    settings, never the run's seed; a ``data_root`` holding videos made with other
    settings is refused), then write ``index/videos.csv``
    (train and val from ``dataset``, test from ``index.test_dataset`` when it is set).
    Prints the split sizes; refuses a train split without both classes or an empty test
    split (:func:`dflib.datasets.check_splits`) before any expensive stage. The files of the
    dataset's folders that are not videos go to ``index/left_out.csv``, with one line."""
    shared, p = profile.shared, profile.sections["index"]
    datasets.generate_data(profile)
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


def run_detector_stage(profile: config.Profile, stage: str, **options: Any) -> Any:
    """A detector stage (``train_cnn``, ``train_c3d``, ...): its owner family trains and
    scores, then each family that joins the stage does (in registry order); returns what
    the owner's ``train`` returns. ``options`` (``verbose``, ``progress``) go to each."""
    result = detectors.stage_owner(stage).train(profile, stage, **options)
    for joiner in detectors.joiners(stage):
        joiner.train(profile, stage, **options)
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
