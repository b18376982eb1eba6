"""The ``rnn`` family: recurrent heads on the per-face features of a video's first faces
(``rnn/<head>``; the frame CNN's features or the face embeddings, ``train_rnn.inputs``) and
their time-averaging baseline (``rnn/time_average``); model code in
:mod:`dflib.detectors.models`: ``sequences`` (the heads), ``cnn_features`` (the feature
cache) and ``cnn`` (the heads' custom layers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..fields import Stage
from .models.sequences_fields import TRAIN_RNN
from ..vocabulary import RNN_HEADS, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class RecurrentHeads:
    """Stage ``train_rnn``: per-face features (the latest frame CNN's, of its
    validation-chosen chunk, or the face embeddings) for the first ``seq_len`` faces of every
    video, then the heads, scored at video level."""

    family = Family("rnn", RNN_HEADS, "temporal", frame_level=False, placeholder="<head>")
    stages = (Stage("train_rnn", "05_train_rnn.ipynb", TRAIN_RNN, scoring=True),)
    joins: tuple[str, ...] = ()
    rescored_with = "rnn"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """The heads' :class:`~dflib.detectors.models.fitting.TemporalResult` (``verbose``);
        a video whose store file the feature pass could not read is failed in the stage
        summary."""
        from .. import face_store, summaries
        from .models import sequences
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split, videos_with_faces

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        with scoring_test_split(run, videos, stage):
            result = sequences.train_heads(face_store.FaceStore(run), videos, run,
                                           profile.shared, profile.sections["train_rnn"],
                                           verbose=options.get("verbose", 2),
                                           scoring=scoring(profile),
                                           embed_section=profile.sections["embed_faces"])
        outcomes = face_outcomes(videos)
        failed = outcomes["video_id"].isin(
            result.features.loc[result.features["status"] == "failed", "video_id"])
        outcomes.loc[failed, ["outcome", "reason"]] = ["failed", "unreadable store file"]
        summaries.stage_summary(run, stage, outcomes)
        return result

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """The features of each (backbone, chunk, ``seq_len``) are computed once."""
        from .models import sequences

        return sequences.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """Each head's record and model, and the frame CNN whose features it reads."""
        from .models import sequences

        return sequences.saved_files(run, methods)


DETECTOR = RecurrentHeads()
