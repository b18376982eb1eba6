"""Figures and tables of a run, saved under stable names in the run folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # headless CI; notebooks still render inline

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import io, paths  # noqa: E402

DPI = 120
LABEL_NAMES = {0: "real", 1: "fake"}


def save_fig(fig: plt.Figure, run: paths.RunPaths, name: str) -> Path:
    """Write ``figures/<name>.png`` atomically at a fixed resolution."""
    target = run.figures / f"{name}.png"
    return io.atomic_write(target, lambda p: fig.savefig(p, format="png", dpi=DPI,
                                                         bbox_inches="tight"))


def save_table(df: pd.DataFrame, run: paths.RunPaths, name: str) -> pd.DataFrame:
    """Write ``tables/<name>.csv`` atomically and hand the table back for display."""
    io.write_csv(df, run.tables / f"{name}.csv")
    return df


def _pick(df: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    picks = [g.sample(min(per_class, len(g)), random_state=seed)
             for _, g in df.groupby("label", sort=True)]
    return pd.concat(picks) if picks else df.iloc[:0]


def _image_grid(images: list[np.ndarray], titles: list[str], cols: int) -> plt.Figure:
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def sample_frames_figure(videos: pd.DataFrame, per_class: int = 4, seed: int = 0) -> plt.Figure:
    """The middle frame of a few real and fake videos, titled with their method."""
    from . import video

    images, titles = [], []
    for row in _pick(videos, per_class, seed).itertuples():
        try:
            info = video.probe(row.path)
            frames, _ = video.read_frames(row.path, [max(0, info.n_frames // 2)])
        except video.VideoError:
            continue  # an unreadable video is reported by the extraction stage
        images.append(frames[0])
        titles.append(f"{LABEL_NAMES[row.label]} · {row.method}")
    return _image_grid(images, titles, cols=per_class)


def sample_faces_figure(store, summary: pd.DataFrame, per_class: int = 6,
                        seed: int = 0) -> plt.Figure:
    """One stored face crop from a few real and fake videos."""
    images, titles = [], []
    for row in _pick(summary[summary["n_faces"] > 0], per_class, seed).itertuples():
        crops, frame_idx = store.load(row.video_id)
        images.append(crops[len(crops) // 2])
        titles.append(f"{LABEL_NAMES[row.label]} · frame {frame_idx[len(crops) // 2]}")
    return _image_grid(images, titles, cols=per_class)


def detection_rate_figure(rates: pd.DataFrame) -> plt.Figure:
    """Bar chart of the share of sampled frames with a face, by split and class."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5, 3))
    sns.barplot(data=rates, x="split", y="face_rate", hue="class", ax=ax)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("frames with a face")
    fig.tight_layout()
    return fig
