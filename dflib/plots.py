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
    target = run.figure(name)
    return io.atomic_write(target, lambda p: fig.savefig(p, format="png", dpi=DPI,
                                                         bbox_inches="tight"))


def save_table(df: pd.DataFrame, run: paths.RunPaths, name: str) -> pd.DataFrame:
    """Write ``tables/<name>.csv`` atomically and hand the table back for display."""
    io.write_csv(df, run.table(name))
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
            frames = video.sample_frames(row.path, 3, "even").frames  # first, middle, last
        except video.VideoError:
            continue  # an unreadable video is reported by the extraction stage
        images.append(frames[len(frames) // 2])
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


def training_curves_figure(logs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Loss and accuracy per epoch from Keras CSV logs, one colour per model (chunk);
    training solid, validation dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, log) in enumerate(logs.items()):
        epoch = log["epoch"] + 1
        for ax, metric in zip(axes, ("loss", "accuracy")):
            c = colours[i % len(colours)]
            if metric in log:
                ax.plot(epoch, log[metric], color=c, label=f"{name} train")
            if f"val_{metric}" in log:
                ax.plot(epoch, log[f"val_{metric}"], color=c, ls="--", label=f"{name} val")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if logs:
        axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def roc_figure(predictions: dict[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """ROC curves of several methods (tables with ``label`` and ``score``), AUC in the
    legend; fake is the positive class."""
    from . import statistics

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    drawn = 0
    for name, table in predictions.items():
        fpr, tpr, auc = statistics.roc_points(table["label"], table["score"])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
        drawn += len(fpr) > 0
    if not drawn:
        _no_curve(ax, predictions)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate (fake)", xlim=(0, 1),
           ylim=(0, 1.01), title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _no_curve(ax: plt.Axes, predictions: dict[str, pd.DataFrame]) -> None:
    """Say on the axes why no ROC curve is drawn: no videos, or one class only."""
    n = max((len(t) for t in predictions.values()), default=0)
    ax.text(0.5, 0.55, "no videos to score" if n == 0 else "one class only: no ROC curve",
            ha="center", va="center", transform=ax.transAxes, color="grey")


def confusion_figure(predictions: dict[str, pd.DataFrame],
                     threshold: float = 0.5) -> plt.Figure:
    """One confusion matrix per method (rows true, columns predicted, ``score > threshold``
    is fake), counts annotated."""
    import seaborn as sns

    fig, axes = plt.subplots(1, max(1, len(predictions)), squeeze=False,
                             figsize=(3.2 * max(1, len(predictions)), 3.0))
    names = [LABEL_NAMES[c] for c in (0, 1)]
    for ax, (name, table) in zip(axes.flat, predictions.items()):
        y = table["label"].to_numpy(dtype=int)
        pred = (table["score"].to_numpy(dtype=float) > threshold).astype(int)
        counts = np.array([[int(((y == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)])
        sns.heatmap(counts, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax,
                    xticklabels=names, yticklabels=names)
        ax.set(title=name, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig


def tsne_figure(before: np.ndarray, after: np.ndarray, labels: np.ndarray,
                hue: np.ndarray | None = None, seed: int = 0, perplexity: float = 30.0,
                titles: tuple[str, str] = ("before training", "after training")) -> plt.Figure:
    """The paper's t-SNE pair: 2-D embeddings of the same samples' features before and
    after training, side by side.

    Colour is the class (``labels``, 1 = fake), or ``hue`` (for example the fake method)
    with the class as marker style. Features wider than 50 are first reduced by PCA
    (the usual t-SNE practice); both embeddings are seeded.
    """
    import seaborn as sns
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    classes = np.array([LABEL_NAMES[int(c)] for c in np.asarray(labels)])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, features, title in zip(axes, (before, after), titles):
        # reshape(0, -1) is ambiguous: an empty test split gives no points, not an error
        x = (np.asarray(features, dtype=np.float64).reshape(len(classes), -1) if len(classes)
             else np.zeros((0, 1)))
        if len(x) < 4:  # t-SNE needs a few points; say so instead of failing the notebook
            ax.text(0.5, 0.5, f"{len(x)} points: too few for t-SNE", ha="center",
                    transform=ax.transAxes)
            ax.set_title(title)
            continue
        if x.shape[1] > 50:
            x = PCA(min(50, len(x)), random_state=seed).fit_transform(x)
        xy = TSNE(2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
                  random_state=seed).fit_transform(x)
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=classes if hue is None else hue,
                        style=None if hue is None else classes, s=10, linewidth=0,
                        alpha=0.7, ax=ax)
        ax.set(title=title, xticks=[], yticks=[])
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.tight_layout()
    return fig


def triplet_training_figure(log: pd.DataFrame) -> plt.Figure:
    """The triplet network's log (:func:`dflib.detectors.models.triplet.train`) in two panels: the loss per
    epoch, and the share of anchor-positive pairs whose triplet is still active (has a
    loss) beside the share that found a semi-hard negative; training solid, validation
    dashed when present."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    epoch = log["epoch"] + 1
    for ax, columns, ylabel in ((left, ("loss",), "semi-hard triplet loss"),
                                (right, ("active_triplets", "semi_hard"), "share of pairs")):
        for i, column in enumerate(columns):
            colour = plt.get_cmap("tab10").colors[i]
            what = {"loss": "", "active_triplets": "active", "semi_hard": "semi-hard found"}[column]
            ax.plot(epoch, log[column], color=colour, label=f"{what} train".strip())
            if f"val_{column}" in log:
                ax.plot(epoch, log[f"val_{column}"], ls="--", color=colour,
                        label=f"{what} validation".strip())
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    right.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    return fig


def clip_figure(clips: np.ndarray, labels: np.ndarray, max_frames: int = 8) -> plt.Figure:
    """A few face clips ``[n, T, c, c, 3]`` (0-255), one row per clip and one column per
    frame (the first ``max_frames``), each row titled with its class."""
    clips = np.asarray(clips)[:, :max_frames]
    images = [np.clip(frame, 0, 255).astype(np.uint8) for clip in clips for frame in clip]
    titles = [f"{LABEL_NAMES[int(lab)]} · t{t}" for lab in labels for t in range(clips.shape[1])]
    return _image_grid(images, titles, cols=max(1, clips.shape[1]))


def group_colour(group: str) -> tuple:
    """One colour per display group (:data:`dflib.vocabulary.DISPLAY_GROUPS`), the same in
    every figure."""
    from .vocabulary import DISPLAY_GROUPS

    colours = plt.get_cmap("tab10").colors
    if group not in DISPLAY_GROUPS:
        return "black"
    return colours[DISPLAY_GROUPS.index(group) % len(colours)]


def robustness_figure(table: pd.DataFrame, chosen: dict[str, str],
                      metric: str = "auc") -> plt.Figure:
    """``metric`` against the H.264 CRF of the re-encoded test videos: one line per family
    (``chosen``: family -> its validation-chosen method) with its bootstrap interval as a
    band when the table has ``<metric>_low``/``_high``; the value on the videos as shipped
    is drawn at the left. The full table has every method."""
    from .robustness import ORIGINAL

    crfs = sorted(c for c in table["crf"].unique() if c != ORIGINAL)
    # x positions: "original" first, then the CRFs evenly spaced (they are labels, not a scale)
    xpos = {ORIGINAL: 0, **{c: i + 1 for i, c in enumerate(crfs)}}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for family, method in chosen.items():
        rows = table[table["method"] == method].sort_values("crf")
        if rows.empty:
            continue
        x = [xpos[c] for c in rows["crf"]]
        colour = group_colour(family)
        ax.plot(x, rows[metric], marker="o", ms=4, lw=1.6, color=colour,
                label=f"{family}: {method}")
        if {f"{metric}_low", f"{metric}_high"} <= set(rows.columns):
            ax.fill_between(x, rows[f"{metric}_low"], rows[f"{metric}_high"], color=colour,
                            alpha=0.15, lw=0)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(crfs) + 1), ["original", *(f"CRF {c}" for c in crfs)])
    ax.set(ylabel=f"video-level {metric.upper()} (95 % band)", ylim=(0, 1.02),
           title="Each family's validation-chosen detector on re-encoded test videos")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def perturbation_figure(table: pd.DataFrame, chosen: dict[str, str],
                        metric: str = "auc") -> plt.Figure:
    """One panel per DeeperForensics-1.0 distortion type of ``table``
    (``tables/perturbations.csv``): ``metric`` against the level, one line per family
    (``chosen``: family -> its validation-chosen method) with its bootstrap band; level 0
    is the clean videos, and each level is labelled with its parameter."""
    from .robustness import ORIGINAL_TYPE

    clean = table[table["type"] == ORIGINAL_TYPE]
    kinds = list(dict.fromkeys(table.loc[table["type"] != ORIGINAL_TYPE, "type"]))
    cols = min(4, max(1, len(kinds)))
    rows_n = max(1, -(-len(kinds) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.0 * cols, 2.6 * rows_n + 0.6),
                             sharey=True, squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        rows = table[table["type"] == kind]
        levels = sorted(rows["level"].unique())
        params = rows.drop_duplicates("level").set_index("level")["parameter"]
        for family, method in chosen.items():
            line = pd.concat([clean[clean["method"] == method],
                              rows[rows["method"] == method]]).sort_values("level")
            if line.empty:
                continue
            colour = group_colour(family)
            ax.plot(line["level"], line[metric], marker="o", ms=3, lw=1.4, color=colour,
                    label=f"{family}: {method}")
            if {f"{metric}_low", f"{metric}_high"} <= set(line.columns):
                ax.fill_between(line["level"], line[f"{metric}_low"], line[f"{metric}_high"],
                                color=colour, alpha=0.12, lw=0)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks([0, *levels], ["clean", *(f"{lv}\n{params[lv]:g}" for lv in levels)],
                      fontsize=7)
        ax.set_title(kind, fontsize=9)
        ax.set_ylim(0, 1.02)
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"video {metric.upper()}", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(3, max(1, len(labels))),
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("DeeperForensics-1.0 distortions: each family's validation-chosen detector "
                 "(95 % band); level, then its parameter", fontsize=9)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * -(-len(labels) // 3), 1, 1))
    return fig


def forest_figure(table: pd.DataFrame, metric: str = "auc") -> plt.Figure:
    """Video-level ``metric`` of every method with its 95 % interval, one row per method in
    the order of ``table`` (:func:`dflib.result_tables.paper_table` rows of one level), coloured
    by family; the validation-chosen method (``chosen``) is starred, chance is dotted."""
    from .vocabulary import DISPLAY_GROUPS

    rows = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.26 * max(1, len(rows))))
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows.itertuples()):
        value = getattr(row, metric)
        low, high = getattr(row, f"{metric}_low"), getattr(row, f"{metric}_high")
        colour = group_colour(row.family)
        if pd.notna(low) and pd.notna(high):
            ax.plot([low, high], [yi, yi], color=colour, lw=1.6)
        ax.plot(value, yi, "*" if row.chosen else "o", color=colour, ms=10 if row.chosen else 5)
    labels = [f"{m} ★" if c else m for m, c in zip(rows["method"], rows["chosen"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlim=(0, 1.02), xlabel=f"video-level {metric.upper()} on the test split, 95 % "
           "stratified bootstrap interval", ylim=(-0.7, len(rows) - 0.3))
    ax.xaxis.label.set_fontsize(8)
    handles = [plt.Line2D([], [], color=group_colour(f), marker="o", lw=1.6, label=f)
               for f in DISPLAY_GROUPS if f in set(rows["family"])]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("★ chosen on validation AUC", fontsize=8, loc="right")
    fig.tight_layout()
    return fig


def reliability_figure(predictions: dict[str, tuple[str, pd.DataFrame]]) -> plt.Figure:
    """Reliability diagrams, one panel per family (``predictions``: family -> (method, its
    test video predictions)): the fake rate against the mean score in 15 equal-width bins,
    marker area by the number of videos, ECE in the title; the diagonal is calibrated."""
    from . import statistics

    n = max(1, len(predictions))
    fig, axes = plt.subplots(1, n, squeeze=False, sharey=True, figsize=(2.9 * n, 3.3))
    for ax, (family, (method, table)) in zip(axes.flat, predictions.items()):
        bins = statistics.reliability_bins(table["label"], table["score"])
        bins = bins[bins["n"] > 0]
        ece = statistics.expected_calibration_error(table["label"], table["score"])
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.plot(bins["mean_score"], bins["fake_rate"], color="tab:blue", lw=1)
        ax.scatter(bins["mean_score"], bins["fake_rate"], s=12 + 200 * bins["n"] / len(table),
                   color="tab:blue", alpha=0.7, zorder=3)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="mean score (P fake)")
        ax.set_title(f"{family}: {method}\nECE {ece:.3f}, {len(table)} videos", fontsize=8)
    axes.flat[0].set_ylabel("share of fakes")
    fig.tight_layout()
    return fig


def roc_group_figure(predictions: dict[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """Every method's ROC curve, one panel per family of the paper's tables (frame CNN,
    boosted, temporal, FaceNet, triplet), AUC in each legend: one panel of 20+ curves
    is unreadable."""
    from . import statistics
    from .detectors import display_group
    from .vocabulary import DISPLAY_GROUPS

    groups: dict[str, list[str]] = {}
    for name in predictions:
        groups.setdefault(display_group(name), []).append(name)
    families = [f for f in DISPLAY_GROUPS if f in groups]
    fig, axes = plt.subplots(1, max(1, len(families)), squeeze=False, sharey=True,
                             figsize=(3.6 * max(1, len(families)), 3.9))
    for ax, family in zip(axes.flat, families):
        drawn = 0
        for name in groups[family]:
            table = predictions[name]
            fpr, tpr, auc = statistics.roc_points(table["label"], table["score"])
            ax.plot(fpr, tpr, lw=1.2, label=f"{name} ({auc:.3f})")
            drawn += len(fpr) > 0
        if not drawn:
            _no_curve(ax, {n: predictions[n] for n in groups[family]})
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set(title=family, xlabel="false positive rate", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=6, loc="lower right", title="AUC", title_fontsize=6)
    axes.flat[0].set_ylabel("true positive rate (fake)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def spectrum_figure(spectra: pd.DataFrame) -> plt.Figure:
    """Durall et al.'s figure: the mean azimuthally averaged log spectrum of training faces,
    real against each manipulation (``dflib.detectors.models.frequency.mean_spectra``), with a band of one
    standard deviation; right, each group's mean minus the reals', where a manipulation
    adds or removes energy."""
    fig, (ax, diff) = plt.subplots(1, 2, figsize=(10, 3.6))
    groups = list(dict.fromkeys(spectra["group"]))
    real = spectra[spectra["group"] == "real"].set_index("radius")["mean"]
    colours = plt.get_cmap("tab10").colors
    for k, group in enumerate(groups):
        rows = spectra[spectra["group"] == group]
        label = f"{group} ({int(rows['n_faces'].iloc[0])} faces)"
        ax.plot(rows["radius"], rows["mean"], color=colours[k % 10], label=label)
        ax.fill_between(rows["radius"], rows["mean"] - rows["sd"], rows["mean"] + rows["sd"],
                        color=colours[k % 10], alpha=0.15)
        if group != "real" and len(real):
            diff.plot(rows["radius"], rows["mean"].to_numpy() - real.reindex(rows["radius"]).to_numpy(),
                      color=colours[k % 10], label=group)
    ax.set(xlabel="spatial frequency (cycles per face crop)", ylabel="20 log |F| (mean over ring)",
           title="mean spectrum of training faces")
    ax.legend(fontsize=8)
    diff.axhline(0, color="grey", lw=0.8)
    diff.set(xlabel="spatial frequency (cycles per face crop)", ylabel="difference from real (dB)",
             title="fake minus real")
    if len(groups) > 1:
        diff.legend(fontsize=8)
    fig.tight_layout()
    return fig
