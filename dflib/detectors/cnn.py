"""The ``cnn`` family: frame CNNs trained on balanced chunks of the training videos
(``cnn/<arch>``, ``cnn/<arch>/chunk<i>``) and the votes of the chunk models
(``cnn/<arch>/boosted``, ``cnn/<arch>/boosted_mean``); model code in
:mod:`dflib.detectors.models.cnn_training` and :mod:`dflib.detectors.models.cnn`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .models.cnn_training_fields import EVALUATE_CNN, TRAIN_CNN
from ..fields import Stage
from ..vocabulary import CNN_ARCHS, ENSEMBLES, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class FrameCnn:
    """Stage ``train_cnn`` trains one model per chunk; stage ``evaluate_cnn`` scores the
    test split with them (the architecture comes from the training manifest)."""

    family = Family("cnn", CNN_ARCHS, "frame CNN", frame_level=True,
                    threshold_section="evaluate_cnn", placeholder="<arch>",
                    variants=r"chunk\d+|" + "|".join(ENSEMBLES),
                    variants_in_words="[/chunk<i>|/" + "|/".join(ENSEMBLES) + "]")
    stages = (Stage("train_cnn", "02_train_cnn.ipynb", TRAIN_CNN),
              Stage("evaluate_cnn", "03_evaluate_cnn.ipynb", EVALUATE_CNN, scoring=True))
    joins: tuple[str, ...] = ()
    rescored_with = "cnn"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """``train_cnn`` (``verbose``): the training manifest; ``evaluate_cnn``: the
        :class:`dflib.detectors.models.cnn_training.CnnEvaluation`."""
        from .. import faces, summaries
        from .models import cnn_training
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split, videos_with_faces

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        if stage == "train_cnn":
            manifest = cnn_training.train_section(
                faces.FaceStore(run), videos, run, profile.shared, profile.sections["train_cnn"],
                options.get("verbose", 2))
            summaries.stage_summary(run, stage, face_outcomes(videos[videos["split"] != "test"]))
            return manifest
        with scoring_test_split(run, videos, stage):
            result = cnn_training.evaluate_chunks(
                faces.FaceStore(run), videos, run, cnn_training.latest_manifest(run),
                profile.sections["evaluate_cnn"], scoring=scoring(profile))
        summaries.stage_summary(run, stage, face_outcomes(videos[videos["split"] == "test"]))
        return result

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """Each backbone's chunk models are loaded once for all its methods."""
        from .models import cnn_training

        return cnn_training.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """Each backbone's manifest and every chunk model it names."""
        from .models import cnn_training

        return cnn_training.saved_files(run, methods)


DETECTOR = FrameCnn()
