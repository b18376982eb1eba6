"""Summary tables that the notebooks show and save."""

from __future__ import annotations

import pandas as pd

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
