"""Every trained detector of a run, reloaded and applied to faces it has not seen.

The stages score their own test split; this module scores any other face source with
the same saved models and the same scoring functions: the re-encoded test videos of the
compression-robustness stage and the videos given to ``dflib predict``. A method name
(``cnn/ef0/boosted``, ``c3d``, ``rnn/bilstm``, ``facenet/svc``, ``triplet/sgd``) is all it
takes; shared work (a CNN's chunk models, FaceNet embeddings, sequence features) is done
once per call for all the methods that need it.

torch is imported before Keras: the FaceNet detectors need facenet-pytorch (which loads
torchvision) in the same process, and TensorFlow followed by torchvision segfaults.
"""

from __future__ import annotations

from . import torch_first  # noqa: F401  (before TensorFlow, see above)

# isort: split
from collections import defaultdict
from typing import Any, Mapping, Sequence

import pandas as pd

from . import config, detectors, evaluation, io
from .detectors.models import batches
from .paths import RunPaths


def trained_methods(run: RunPaths) -> list[str]:
    """The methods with video-level results in ``tables/results.csv``, in table order."""
    table = evaluation.results_table(run)
    return list(dict.fromkeys(table.loc[table["level"] == "video", "method"]))


def best_method(run: RunPaths) -> str:
    """The method with the highest video-level AUC on the validation split (ties: the
    first in the table); the test split plays no part in the choice."""
    method = evaluation.chosen_method(evaluation.results_table(run))
    if method is None:
        raise FileNotFoundError(f"{run.results_csv}: no video-level validation AUC to choose a "
                                "method by (no validation split, or the study has not run); "
                                "name one with --method")
    return method


def method_threshold(settings: Mapping[str, Any], method: str) -> float:
    """The threshold a method's predictions were called with (its stage's ``threshold``;
    the temporal stages use 0.5)."""
    section = detectors.threshold_section(method)
    return float(settings[section]["threshold"]) if section else 0.5


def operating_threshold(run: RunPaths, method: str) -> float:
    """The threshold ``dflib predict`` applies: the method's video-level ``threshold_val``
    (chosen on validation), or its stage's threshold when the results table has none."""
    table = evaluation.results_table(run)
    row = table[(table["method"] == method) & (table["level"] == "video")]
    if len(row) and pd.notna(row["threshold_val"].iloc[0]):
        return float(row["threshold_val"].iloc[0])
    return method_threshold(config.run_settings(run), method)


def check_saved(run: RunPaths, method: str) -> None:
    """Raise ``FileNotFoundError`` or ``ValueError`` naming the first file that ``method``'s
    saved models need (its family's ``saved_files``) and that is missing or not whole,
    before any face is extracted for it."""
    # saved_files names a missing or damaged record
    for path in detectors.detector_of(method).saved_files(run, [method]):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; {method} cannot be scored without "
                                    "it (copy the run folder again, or rerun its stage)")
        problem = io.read_problem(path)
        if problem:
            raise ValueError(f"{path}: {problem}; {method} cannot be scored with it (copy "
                             "the run folder again, or rerun its stage)")


def score_methods(run: RunPaths, methods: Sequence[str], store: batches.FaceSource,
                  videos: pd.DataFrame, progress: bool = False) -> dict[str, evaluation.Prediction]:
    """Predictions of ``videos`` (``video_id, label, n_faces``; ``label`` may be a
    placeholder for unlabelled videos) by each method, faces read from ``store``.

    Each family re-scores its methods (its ``score_saved``, :mod:`dflib.detectors`), all
    of them in one call, together with those of the families it is ``rescored_with``, so
    shared work (a CNN's chunk models, the embeddings) is done once. Aggregation and threshold are
    the run's own (its ``profile.yaml``), so a method scores new faces exactly as it scored
    its test split. Video rows follow the prediction contract (``video_id, label, score,
    pred, n_frames, status``); frame rows exist for frame-level detectors.
    """
    by_scorer: dict[str, list[str]] = defaultdict(list)
    for m in dict.fromkeys(methods):
        by_scorer[detectors.detector_of(m).rescored_with].append(m)
    settings = config.run_settings(run)
    videos = videos.reset_index(drop=True)
    out: dict[str, evaluation.Prediction] = {}
    for scorer, members in by_scorer.items():
        out.update(detectors.BY_NAME[scorer].score_saved(run, members, store, videos, settings,
                                                         progress))
    return {m: out[m] for m in dict.fromkeys(methods)}
