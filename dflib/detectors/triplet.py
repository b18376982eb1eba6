"""The ``triplet`` family: a semi-hard triplet network on the FaceNet embeddings, and
classic classifiers on its 64-d embeddings (``triplet/<classifier>``); model code in
:mod:`dflib.detectors.models.triplet`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..fields import Stage
from .models.triplet_fields import TRAIN_TRIPLET
from ..vocabulary import CLASSIFIERS, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class TripletClassifiers:
    """Stage ``train_triplet``: the triplet network, and the classic classifiers before
    (``facenet/<clf>``) and after (``triplet/<clf>``) it, on the same folds."""

    family = Family("triplet", CLASSIFIERS, "triplet", frame_level=True,
                    threshold_section="train_triplet")
    stages = (Stage("train_triplet", "07_train_triplet.ipynb", TRAIN_TRIPLET, scoring=True),)
    joins: tuple[str, ...] = ()
    rescored_with = "triplet"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """The :class:`~dflib.detectors.models.triplet.StageResult` (``progress``). A video
        with faces but no readable embedding file added nothing to training or scoring: a
        failure here too."""
        from .. import embeddings, summaries
        from .models import triplet
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split, videos_with_faces

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        with scoring_test_split(run, videos, stage):
            result = triplet.run_stage(run, videos, profile.sections["train_triplet"],
                                       seed=profile.shared["seed"],
                                       progress=options.get("progress", True),
                                       scoring=scoring(profile))
        problems = embeddings.check_embeddings(run, videos).to_numpy()
        outcomes = face_outcomes(videos)
        lost = (outcomes["outcome"] == "processed").to_numpy() & (problems != "")
        outcomes.loc[lost, ["outcome", "reason"]] = ["failed", "no readable embedding file"]
        outcomes.loc[lost, "detail"] = problems[lost]
        summaries.stage_summary(run, stage, outcomes)
        return result

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """``triplet/<clf>`` and ``facenet/<clf>`` methods (the faces are embedded once for
        both spaces)."""
        from .models import triplet

        return triplet.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """The embeddings' manifest, the triplet network, and each method's classifier."""
        from .models import triplet

        return triplet.saved_files(run, methods)


DETECTOR = TripletClassifiers()
