"""The ``frequency`` family: frequency-artefact detectors (``frequency/<feature>``: a
classifier chosen by cross-validation on each face's spectrum, SRM or DCT features, or all
three); model code in
:mod:`dflib.detectors.models.frequency`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..fields import Stage
from ..vocabulary import FREQUENCY_FEATURES, Family
from .models.frequency_fields import TRAIN_FREQUENCY, check_train_frequency

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths
    from .models.batches import FaceSource


class FrequencyArtefacts:
    """Stage ``train_frequency`` fits one classifier per feature on the training faces and
    scores the validation and test splits (the identity control joins it)."""

    family = Family("frequency", FREQUENCY_FEATURES, "frequency", frame_level=True,
                    threshold_section="train_frequency", placeholder="<feature>")
    stages = (Stage("train_frequency", "11_train_frequency.ipynb", TRAIN_FREQUENCY,
                    scoring=True, check=check_train_frequency),)
    joins: tuple[str, ...] = ()
    rescored_with = "frequency"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """The :class:`~dflib.detectors.models.frequency.StageResult`; a video whose store
        file could not be read is failed in the stage summary."""
        from .. import face_store, summaries
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split, videos_with_faces
        from .models import frequency

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        with scoring_test_split(run, videos, stage):
            result = frequency.run_stage(run, face_store.FaceStore(run), videos,
                                         profile.sections[stage], scoring=scoring(profile),
                                         seed=profile.shared["seed"])
        outcomes = face_outcomes(videos)
        failed = outcomes["video_id"].isin(list(result.failed))
        outcomes.loc[failed, ["outcome", "reason"]] = ["failed", "unreadable store file"]
        outcomes.loc[failed, "detail"] = outcomes.loc[failed, "video_id"].map(result.failed)
        summaries.stage_summary(run, stage, outcomes)
        return result

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        from .models import frequency

        return frequency.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """Each method's classifier."""
        from .models import frequency

        return frequency.saved_files(run, methods)


DETECTOR = FrequencyArtefacts()
