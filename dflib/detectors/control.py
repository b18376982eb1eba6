"""The ``control`` family: statistics scored like detectors to show what they alone find
(``control/<statistic>``): the training-free temporal ones (``colour_jerk``) and the
identity control (``identity``: who is shown, nothing else). Not detectors: the study never
picks one. Model code in :mod:`dflib.detectors.models.controls` and ``identity``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..fields import Stage
from ..vocabulary import CONTROLS, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class Controls:
    """No stage of its own: the temporal controls score in ``train_rnn``, on the faces the
    heads read; the identity control in ``train_frequency``, on stage 06's embeddings."""

    family = Family("control", CONTROLS, "control", frame_level=False,
                    placeholder="<statistic>", detector=False)
    stages: tuple[Stage, ...] = ()
    joins = ("train_rnn", "train_frequency")
    rescored_with = "control"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """``train_rnn``: score every temporal control on the validation and test splits
        (nothing is fitted); ``train_frequency``: fit and score the identity control where
        stage 06's embeddings exist, else print one line why not. The results rows (or that
        line). The owner of the stage wrote its summary and its empty-split warning."""
        from .. import face_store
        from ..stage_inputs import scoring, scoring_test_split, videos_with_faces
        from .models import controls, identity

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        with scoring_test_split(run, videos, stage, warn=False):
            if stage == "train_frequency":
                rows = identity.run_control(run, videos, profile.sections[stage]["threshold"],
                                            scoring(profile))
                if isinstance(rows, str):
                    print(rows)
                return rows
            return controls.run_controls(face_store.FaceStore(run), videos, run,
                                         scoring=scoring(profile))

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """The statistic itself for the training-free ones; the identity control embeds the
        faces and asks its saved model."""
        from .models import controls

        return controls.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """The identity control's model and the embeddings' manifest; none for the
        training-free statistics."""
        from .models import controls

        return controls.saved_files(run, methods)


DETECTOR = Controls()
