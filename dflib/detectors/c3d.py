"""The ``c3d`` family: 3D CNNs on clips of consecutive faces, named by the model alone
(``c3d``, ``conv3d``, ``conv3d_light``, ``conv3d_diff``); model code in
:mod:`dflib.detectors.models.clips`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .models.clips_fields import TRAIN_C3D, check_train_c3d
from ..fields import Stage
from ..vocabulary import CLIP_MODELS, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class ClipModels:
    """Stage ``train_c3d`` trains (or reuses) each clip model and scores the test split at
    video level."""

    family = Family("c3d", CLIP_MODELS, "temporal", frame_level=False, prefixed=False)
    stages = (Stage("train_c3d", "04_train_c3d.ipynb", TRAIN_C3D, scoring=True,
                    check=check_train_c3d),)
    joins: tuple[str, ...] = ()
    rescored_with = "c3d"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """The clip models' :class:`~dflib.detectors.models.fitting.TemporalResult`
        (``verbose``)."""
        from .. import face_store, summaries
        from .models import clips
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split, videos_with_faces

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        with scoring_test_split(run, videos, stage):
            result = clips.train_clip_models(face_store.FaceStore(run), videos, run,
                                             profile.shared, profile.sections["train_c3d"],
                                             verbose=options.get("verbose", 2),
                                             scoring=scoring(profile))
        summaries.stage_summary(run, stage, face_outcomes(videos))
        return result

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        from .models import clips

        return clips.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """Each model's record and model."""
        from .models import clips

        return clips.saved_files(run, methods)


DETECTOR = ClipModels()
