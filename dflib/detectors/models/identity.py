"""The identity control (``control/identity``): a classifier that sees who is shown and
nothing else, so that a reader can tell how much of a detector's AUC identity alone explains.

Each video is its mean face embedding (stage 06's, unit-length faces averaged); each
training identity the centroid of its training videos' means. A video's score is the share
of fakes among the training videos of the identity whose centroid is nearest (cosine): the
prior a detector could learn from faces it recognises. Where test identities appear in
training with different fake shares (Celeb-DF v2's test list does not hold identities out,
nor does the demo's), that prior alone ranks test videos; where every identity has the
same share it scores at chance.

The identity of a video is that of the face it shows, as its dataset names it: a Celeb-DF
real ``id<k>_<n>`` shows ``k``; a fake ``id<t>_id<s>_<n>`` puts identity ``s``'s face on
target ``t``'s video, so it shows ``s`` (the demo's self-blends are ``id<t>_id<t>_<n>``:
``t``); a FaceForensics++ face swap (Deepfakes, FaceSwap, FaceShifter) shows its
``source_id``, a reenactment (Face2Face, NeuralTextures) and an original its ``target_id``;
a manifest's ``source_identity`` column (the demo's, which also names the people of its
``YouTube-real`` videos) is the face shown.
Videos of no known identity add nothing to training; when too few remain, the control is
left out with one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ... import evaluation, io, statistics
from ...paths import RunPaths
from ...vocabulary import IDENTITY_CONTROL, control_method

if TYPE_CHECKING:  # dflib.batches loads Keras; fitting the control needs only NumPy
    from .batches import FaceSource

METHOD = control_method(IDENTITY_CONTROL)
# Celeb-DF's (and the demo's) file names: id<k>_<n> (real), id<t>_id<s>_<n> (fake).
_CELEBDF_NAME = re.compile(r"id(\d+)_(?:id(\d+)_)?\d+")
# FaceForensics++ manipulations that keep the target's face (they move its expression).
REENACTMENTS = ("Face2Face", "NeuralTextures")


def shown_identity(videos: pd.DataFrame) -> pd.Series:
    """The identity of the face each video shows (see the module's docstring), as a string
    (``""``: unknown), aligned with ``videos``' index."""
    out = pd.Series("", index=videos.index, dtype=object)
    if {"target_id", "source_id"} <= set(videos.columns):
        target, source = (videos[c].map(lambda v: "" if pd.isna(v) else str(v))
                          for c in ("target_id", "source_id"))
        swapped = (videos["label"] == 1) & ~videos["method"].isin(REENACTMENTS) & (source != "")
        out = target.where(~swapped, source).astype(object)
    if "source_identity" in videos.columns:  # a manifest's: the demo's names the face shown
        listed = videos["source_identity"].map(lambda v: "" if pd.isna(v) else f"id{v}")
        out = out.where(out != "", listed)
    for i, vid in videos["video_id"].astype(str).items():
        if out[i]:
            continue
        match = _CELEBDF_NAME.fullmatch(vid.rsplit("/", 1)[-1])
        if match:
            out[i] = f"id{match.group(2) or match.group(1)}"
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def video_means(x: np.ndarray, frames: pd.DataFrame) -> pd.DataFrame:
    """One row per video of ``frames`` (aligned with ``x``): its chosen faces' unit-length
    embeddings averaged, column ``mean`` (an array each), and ``n_faces``."""
    chosen = frames["chosen"].to_numpy(dtype=bool) if "chosen" in frames else np.ones(len(x), bool)
    unit, keys = _unit(np.asarray(x, dtype=np.float64)[chosen]), frames.loc[chosen, "video_id"]
    rows = [{"video_id": vid, "mean": unit[idx].mean(axis=0), "n_faces": len(idx)}
            for vid, idx in keys.reset_index(drop=True).groupby(keys.to_numpy()).groups.items()]
    return pd.DataFrame(rows, columns=["video_id", "mean", "n_faces"])


def fit(means: np.ndarray, identities: Sequence[str], labels: Sequence[int]) -> dict[str, Any]:
    """The control's model: each identity's unit centroid of its videos' means and the fake
    share of its videos, identities in sorted order."""
    table = pd.DataFrame({"identity": list(identities), "label": np.asarray(labels, int),
                          "row": np.arange(len(labels))})
    names, centroids, shares, counts = [], [], [], []
    for name, group in table.groupby("identity", sort=True):
        names.append(str(name))
        centroids.append(_unit(np.asarray(means)[group["row"]].mean(axis=0)))
        shares.append(float(group["label"].mean()))
        counts.append(len(group))
    return {"identities": names, "centroids": np.asarray(centroids), "fake_share":
            np.asarray(shares), "n_videos": np.asarray(counts)}


def score(model: Mapping[str, Any], means: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each row's score (the nearest identity's fake share) and that identity."""
    if len(means) == 0:
        return np.zeros(0), []
    nearest = np.argmax(_unit(np.asarray(means)) @ model["centroids"].T, axis=1)
    return model["fake_share"][nearest], [model["identities"][k] for k in nearest]


def model_path(run: RunPaths) -> Path:
    """``models/control/identity.joblib``."""
    return run.classifier_file(*METHOD.split("/"))


def _predictions(model: Mapping[str, Any], means: pd.DataFrame, videos: pd.DataFrame,
                 threshold: float) -> pd.DataFrame:
    """Video rows of ``videos``; one without embeddings keeps its row with the prior."""
    s, nearest = score(model, np.stack(means["mean"]) if len(means) else np.zeros((0, 1)))
    label_of = videos.set_index(videos["video_id"].astype(str))["label"]
    scored = pd.DataFrame({"video_id": means["video_id"].astype(str), "frame_idx": 0,
                           "label": means["video_id"].astype(str).map(label_of).astype(int),
                           "score": s})
    rows = statistics.video_predictions(scored, videos, "mean", threshold)
    rows["nearest_identity"] = rows["video_id"].map(dict(zip(scored["video_id"], nearest)))
    rows["n_frames"] = rows["video_id"].map(dict(zip(means["video_id"], means["n_faces"]))
                                            ).fillna(0).astype(int)
    return rows


def run_control(run: RunPaths, videos: pd.DataFrame, threshold: float = 0.5,
                scoring: statistics.Scoring = statistics.Scoring()) -> pd.DataFrame | str:
    """Fit the control on the training split's embeddings (stage 06), write its validation
    and test predictions and upsert its results rows; return the rows, or why it was left
    out (no embeddings, or training videos of fewer than two known identities)."""
    from ...embeddings import load_embeddings

    if not run.embeddings_manifest.is_file():
        return f"{METHOD} left out: no face embeddings ({run.embeddings_manifest}); run " \
               "stage 'embed_faces' first"
    identity = shown_identity(videos)
    means = video_means(*load_embeddings(run, videos))
    split_of = videos.set_index(videos["video_id"].astype(str))["split"]
    train = means[means["video_id"].map(split_of) == "train"]
    train = train.assign(identity=train["video_id"].map(
        dict(zip(videos["video_id"].astype(str), identity))))
    train = train[train["identity"] != ""]
    if train["identity"].nunique() < 2:
        return f"{METHOD} left out: the training videos show fewer than two identities the " \
               "dataset names (Celeb-DF file names or FaceForensics++ ids)"
    label_of = videos.set_index(videos["video_id"].astype(str))["label"]
    model = fit(np.stack(train["mean"]), train["identity"], train["video_id"].map(label_of))
    import joblib

    io.atomic_write(model_path(run), lambda p: joblib.dump(model, p))
    for split in ("val", "test"):
        part = videos[videos["split"] == split].reset_index(drop=True)
        evaluation.write_predictions(run, METHOD, _predictions(
            model, means[means["video_id"].isin(part["video_id"].astype(str))], part, threshold),
            split=split)
    return evaluation.score_method(run, METHOD, threshold, scoring)


def saved_files(run: RunPaths) -> list[Path]:
    """The files :func:`score_saved` reads: the embeddings' manifest and the model."""
    return [run.embeddings_manifest, model_path(run)]


def score_saved(run: RunPaths, store: FaceSource, videos: pd.DataFrame,
                settings: Mapping[str, Any], progress: bool = False) -> evaluation.Prediction:
    """The control applied to other faces: they are embedded with the network and weights
    of the run's embeddings, then scored by the saved model."""
    import joblib

    from ... import embeddings

    target = model_path(run)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no fitted identity control; rerun stage "
                                "'train_frequency'")
    model = joblib.load(io.require_whole(target, "rerun stage 'train_frequency'"))
    x, faces = embeddings.embed_videos(run, store, videos["video_id"].astype(str).tolist(),
                                       settings, progress)
    means = (video_means(x, faces) if len(faces)
             else pd.DataFrame(columns=["video_id", "mean", "n_faces"]))
    return _predictions(model, means, videos, 0.5), None
