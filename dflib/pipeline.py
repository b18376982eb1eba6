"""Stage entry points: what each notebook's main cell calls, with a validated profile.

Each function reads earlier artifacts from the run folder, writes its own, and returns a
small summary for the notebook to show; nothing passes through notebook memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from . import config, datasets, io, paths

if TYPE_CHECKING:  # heavy (TensorFlow, torch) modules are imported inside the stages
    from . import embeddings, temporal, training, triplet


def build_index(profile: config.Profile) -> datasets.IndexResult:
    """Stage 00: generate the demo dataset if asked, then write ``index/videos.csv``."""
    shared, p = profile.shared, profile.sections["index"]
    root = paths.resolve(shared["data_root"])
    if p["demo_generate"]:
        from . import synth

        synth.generate(root, seed=shared["seed"], identities=p["demo_identities"],
                       real_per_identity=p["demo_real_per_identity"],
                       fake_per_identity=p["demo_fake_per_identity"], frames=p["demo_frames"],
                       width=p["demo_width"], height=p["demo_height"])
    config.check_data_root(shared, p)
    result = datasets.build_index(
        shared["dataset"], root, seed=shared["seed"], val_fraction=p["val_fraction"],
        max_videos_per_class=p["max_videos_per_class"], ffpp_methods=p["ffpp_methods"],
        ffpp_compression=p["ffpp_compression"])
    run = profile.run.ensure()
    io.write_csv(result.videos, run.videos_csv)
    io.record_failures(run.failures_csv, "index", result.missing)
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

    shared, p = profile.shared, profile.sections["faces"]
    run = profile.run.ensure()
    extractor_params = {
        "margin": p["margin"], "min_face_size": p["min_face_size"],
        "thresholds": p["thresholds"], "factor": p["factor"], "selection": p["selection"],
        "detect_max_side": p["detect_max_side"], "batch_size": p["batch_size"],
        "img_size": shared["img_size"], "device": shared["device"],
    }
    return faces.run_extraction(
        load_index(run), run, extractor_params, frames_per_video=shared["frames_per_video"],
        sampling=p["sampling"], every_k=p["every_k"], workers=p["workers"],
        scheduler=p["scheduler"], progress=progress)


def embed_faces(profile: config.Profile, progress: bool = True) -> "embeddings.EmbedResult":
    """Stage 06: FaceNet embeddings of every stored face, plus the manifest of the weights
    used (torch only; TensorFlow is never imported here)."""
    from . import embeddings

    p = profile.sections["embed_faces"]
    return embeddings.run_embedding(
        profile.run.ensure(), pretrained=p["pretrained"], batch_size=p["batch_size"],
        seed=profile.shared["seed"], device=profile.shared["device"], progress=progress)


def train_triplet(profile: config.Profile, progress: bool = True) -> "triplet.StageResult":
    """Stage 07: the semi-hard triplet network on FaceNet embeddings and the classic
    classifiers before (``facenet/<clf>``) and after (``triplet/<clf>``) it."""
    from . import triplet

    run = profile.run.ensure()
    return triplet.run_stage(run, load_index(run), profile.sections["train_triplet"],
                             seed=profile.shared["seed"], progress=progress)


def cnn_videos(run: paths.RunPaths) -> pd.DataFrame:
    """The video index with each video's stored face count (``n_faces``, 0 when none)."""
    from . import faces

    counts = faces.FaceStore(run).summary()[["video_id", "n_faces"]]
    videos = load_index(run).merge(counts, on="video_id", how="left")
    return videos.assign(n_faces=videos["n_faces"].fillna(0).astype(int))


def train_cnn(profile: config.Profile, verbose: int = 2) -> dict:
    """Stage 02: one frame CNN per balanced chunk; returns the training manifest."""
    from . import faces, training

    run = profile.run.ensure()
    cfg = training.TrainConfig.from_sections(profile.shared, profile.sections["train_cnn"])
    return training.train_chunks(faces.FaceStore(run), cnn_videos(run), run, cfg, verbose)


def evaluate_cnn(profile: config.Profile) -> "training.CnnEvaluation":
    """Stage 03: score the test split with the latest trained CNN's chunk models, write
    predictions and results rows; the architecture comes from the training manifest."""
    from . import faces, training

    run = profile.run.ensure()
    p = profile.sections["evaluate_cnn"]
    return training.evaluate_chunks(
        faces.FaceStore(run), cnn_videos(run), run, training.latest_manifest(run),
        aggregation=p["aggregation"], threshold=p["threshold"],
        tsne_max_points=p["tsne_max_points"])


def train_c3d(profile: config.Profile, verbose: int = 2) -> "temporal.TemporalResult":
    """Stage 04: train (or reuse) the 3D CNNs on face clips, score the test split as
    ``c3d`` / ``conv3d`` (video level) and upsert their results rows."""
    from . import faces, temporal

    run = profile.run.ensure()
    return temporal.train_clip_models(faces.FaceStore(run), cnn_videos(run), run,
                                      profile.shared, profile.sections["train_c3d"],
                                      verbose=verbose)


def train_rnn(profile: config.Profile, verbose: int = 2) -> "temporal.TemporalResult":
    """Stage 05: the latest frame CNN's features for the first ``seq_len`` faces of every
    video, then the recurrent heads, scored as ``rnn/<head>`` (video level)."""
    from . import faces, temporal

    run = profile.run.ensure()
    return temporal.train_heads(faces.FaceStore(run), cnn_videos(run), run, profile.shared,
                                profile.sections["train_rnn"], verbose=verbose)
