"""The ``control`` family: training-free temporal statistics (``control/<statistic>``)
scored like detectors to show what arithmetic alone finds; not detectors, the study never
picks one. Model code in :mod:`dflib.detectors.models.controls`."""

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
    """No stage of its own: it scores in ``train_rnn``, on the faces the heads read."""

    family = Family("control", CONTROLS, "control", frame_level=False,
                    placeholder="<statistic>", detector=False)
    stages: tuple[Stage, ...] = ()
    joins = ("train_rnn",)
    rescored_with = "control"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """Score every control on the validation and test splits (nothing is fitted); the
        results rows. The owner of the stage wrote its summary and its empty-split warning."""
        from .. import faces
        from .models import controls
        from ..stage_inputs import scoring, scoring_test_split, videos_with_faces

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        with scoring_test_split(run, videos, stage, warn=False):
            return controls.run_controls(faces.FaceStore(run), videos, run,
                                         scoring=scoring(profile))

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """The statistic itself: nothing was trained."""
        from .models import controls

        return controls.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """None: a control is not trained."""
        return []


DETECTOR = Controls()
