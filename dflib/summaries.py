"""What each stage did, in counts: the index's split sizes, the faces stage's detection rates,
every stage's outcome table (``tables/summary_<stage>.csv``) and the run's failures."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from . import io
from .paths import RunPaths

SPLIT_ORDER = ["train", "val", "test"]


def _class(labels: pd.Series) -> pd.Series:
    return labels.map({0: "real", 1: "fake"})


def index_counts(videos: pd.DataFrame) -> pd.DataFrame:
    """Videos per split, class and method, with totals."""
    table = (videos.assign(**{"class": _class(videos["label"])})
             .groupby(["split", "class", "method"]).size().rename("videos").reset_index())
    table["split"] = pd.Categorical(table["split"], SPLIT_ORDER, ordered=True)
    return table.sort_values(["split", "class", "method"]).reset_index(drop=True)


def detection_rates(frames: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per split and class: videos, frames sampled, faces found, face rate, problem videos."""
    sampled = frames[frames["frame_idx"] >= 0]
    per_frame = (sampled.assign(**{"class": _class(sampled["label"])})
                 .groupby(["split", "class"])
                 .agg(frames=("face", "size"), faces=("face", "sum")))
    per_video = (summary.assign(**{"class": _class(summary["label"])})
                 .groupby(["split", "class"])
                 .agg(videos=("video_id", "size"),
                      no_face=("status", lambda s: int((s == "no_face").sum())),
                      failed=("status", lambda s: int((s == "failed").sum()))))
    table = per_video.join(per_frame, how="left").fillna({"frames": 0, "faces": 0}).reset_index()
    table[["frames", "faces"]] = table[["frames", "faces"]].astype(int)
    table["face_rate"] = (table["faces"] / table["frames"].where(table["frames"] > 0)).round(4)
    table["split"] = pd.Categorical(table["split"], SPLIT_ORDER, ordered=True)
    return table.sort_values(["split", "class"]).reset_index(drop=True)


# --------------------------------------------------------------------------- stage summaries

OUTCOMES = ("processed", "skipped", "failed")
STAGE_SUMMARY_COLUMNS = ["stage", "outcome", "reason", "videos"]


def stage_summary(run: RunPaths, stage: str, outcomes: pd.DataFrame,
                  record: Sequence[str] = ("failed",)) -> pd.DataFrame:
    """Count a stage's videos by outcome and reason, write ``tables/summary_<stage>.csv``
    atomically and replace the stage's rows of ``failures.csv`` with its videos whose
    outcome is in ``record``.

    ``outcomes``: one row per video with ``video_id``, ``outcome`` (processed, skipped or
    failed), ``reason`` (short, counted on: ``no_face``, ``already done``) and optionally
    ``detail`` (the full text for ``failures.csv``; ``reason`` when absent). Every outcome
    gets a row, with 0 videos when none had it, so a reader sees that nothing failed.
    """
    bad = sorted(set(outcomes["outcome"]) - set(OUTCOMES))
    if bad:
        raise ValueError(f"stage {stage}: unknown outcome {bad[0]!r} (allowed: "
                         f"{', '.join(OUTCOMES)})")
    counts = (outcomes.assign(reason=outcomes["reason"].fillna("").astype(str))
              .groupby(["outcome", "reason"]).size().rename("videos").reset_index())
    empty = pd.DataFrame({"outcome": [o for o in OUTCOMES if o not in set(counts["outcome"])],
                          "reason": "", "videos": 0})
    table = pd.concat([t for t in (counts, empty) if len(t)], ignore_index=True)
    table["outcome"] = pd.Categorical(table["outcome"], OUTCOMES, ordered=True)
    table = (table.sort_values(["outcome", "reason"]).assign(stage=stage)
             .astype({"outcome": str, "videos": int})[STAGE_SUMMARY_COLUMNS]
             .reset_index(drop=True))
    io.write_csv(table, run.stage_summary_csv(stage))
    kept = outcomes[outcomes["outcome"].isin(record)]
    detail = kept["detail"] if "detail" in kept else kept["reason"]
    io.record_failures(run.failures_csv, stage,
                       pd.DataFrame({"video_id": kept["video_id"], "reason": detail}))
    return table


def read_summary(run: RunPaths, stage: str) -> pd.DataFrame:
    """A stage's summary table; a clear error when the stage has not run."""
    path = run.stage_summary_csv(stage)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no summary; run stage '{stage}' first")
    return pd.read_csv(path, dtype={"reason": str}, keep_default_na=False)


def summary_line(run: RunPaths, stage: str) -> str:
    """One line from a stage's summary table, for the notebooks:
    ``faces: 9 processed (already done: 3), 1 skipped (no_face: 1), 0 failed``."""
    table = read_summary(run, stage)
    parts = []
    for outcome in OUTCOMES:
        rows = table[(table["outcome"] == outcome) & (table["videos"] > 0)]
        reasons = ", ".join(f"{r}: {n}" for r, n in zip(rows["reason"], rows["videos"]) if r)
        parts.append(f"{int(rows['videos'].sum())} {outcome}" + (f" ({reasons})" if reasons else ""))
    return f"{stage}: {', '.join(parts)}"


def run_summaries(run: RunPaths, stages: Sequence[str]) -> pd.DataFrame:
    """The summary tables of ``stages`` that have run, one after another, without the
    zero-count rows: what every stage processed, skipped and failed."""
    parts = [read_summary(run, s) for s in stages if run.stage_summary_csv(s).is_file()]
    table = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=STAGE_SUMMARY_COLUMNS))
    return table[table["videos"] > 0].reset_index(drop=True)


def read_failures(run: RunPaths) -> pd.DataFrame:
    """The run's ``failures.csv`` (stage, video_id, reason); empty when nothing failed."""
    if not run.failures_csv.is_file():
        return pd.DataFrame(columns=io.FAILURE_COLUMNS)
    return pd.read_csv(run.failures_csv, dtype=str, keep_default_na=False)
