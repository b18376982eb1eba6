"""The ``cnn`` family: frame CNNs trained on balanced chunks of the training videos
(``cnn/<arch>``, ``cnn/<arch>/chunk<i>``), the votes of the chunk models
(``cnn/<arch>/boosted``, ``cnn/<arch>/boosted_mean``) and the frame CNN trained on real
faces and their self-blended images (``cnn/<arch>/sbi``); model code in
:mod:`dflib.detectors.models.cnn_training`, :mod:`dflib.detectors.models.cnn` and
:mod:`dflib.detectors.models.sbi`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .models.cnn_training_fields import EVALUATE_CNN, TRAIN_CNN, check_input_size
from .models.sbi_fields import TRAIN_SBI
from ..fields import Stage
from ..vocabulary import CNN_ARCHS, ENSEMBLES, SBI, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class FrameCnn:
    """Stage ``train_cnn`` trains one model per chunk; stage ``evaluate_cnn`` scores the
    test split with them (the architecture comes from the training manifest); stage
    ``train_sbi`` trains and scores the self-blend model."""

    family = Family("cnn", CNN_ARCHS, "frame CNN", frame_level=True,
                    threshold_section="evaluate_cnn", placeholder="<arch>",
                    variants=r"chunk\d+|" + "|".join((*ENSEMBLES, SBI)),
                    variants_in_words="[/chunk<i>|/" + "|/".join((*ENSEMBLES, SBI)) + "]")
    stages = (Stage("train_cnn", "02_train_cnn.ipynb", TRAIN_CNN, check=check_input_size),
              Stage("evaluate_cnn", "03_evaluate_cnn.ipynb", EVALUATE_CNN, scoring=True),
              Stage("train_sbi", "10_train_sbi.ipynb", TRAIN_SBI, scoring=True,
                    check=check_input_size))
    joins: tuple[str, ...] = ()
    rescored_with = "cnn"

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """``train_cnn`` (``verbose``): the training manifest; ``evaluate_cnn``: the
        :class:`dflib.detectors.models.cnn_training.CnnEvaluation`; ``train_sbi``
        (``verbose``): the :class:`dflib.detectors.models.sbi.SbiResult`."""
        from .. import face_store, summaries
        from .models import cnn_training
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split, videos_with_faces

        run = profile.run.ensure()
        videos = videos_with_faces(run)
        if stage == "train_sbi":
            return self._train_sbi(profile, videos, options.get("verbose", 2))
        if stage == "train_cnn":
            manifest = cnn_training.train_section(
                face_store.FaceStore(run), videos, run, profile.shared,
                profile.sections["train_cnn"], options.get("verbose", 2))
            summaries.stage_summary(run, stage, face_outcomes(videos[videos["split"] != "test"]))
            return manifest
        with scoring_test_split(run, videos, stage):
            result = cnn_training.evaluate_chunks(
                face_store.FaceStore(run), videos, run, cnn_training.latest_manifest(run),
                profile.sections["evaluate_cnn"], scoring=scoring(profile))
        summaries.stage_summary(run, stage, face_outcomes(videos[videos["split"] == "test"]))
        return result

    @staticmethod
    def _train_sbi(profile: Profile, videos: pd.DataFrame, verbose: int) -> Any:
        """The frame CNN trained on the real training faces and their self-blended images,
        scored as ``cnn/<arch>/sbi`` with the run's ``evaluate_cnn`` aggregation and
        threshold (those it is rescored with later). A real face without landmarks is left
        out and counted; its video fails (failures.csv) only if none of its faces is left."""
        from .. import config, face_store, result_tables, summaries
        from .models import sbi
        from ..stage_inputs import face_outcomes, scoring, scoring_test_split

        run = profile.run
        with scoring_test_split(run, videos, "train_sbi"):
            result = sbi.run_stage(face_store.FaceStore(run), videos, run, profile.shared,
                                   profile.sections["train_sbi"],
                                   config.run_settings(run)["evaluate_cnn"], scoring(profile),
                                   verbose)
            groups = result_tables.method_by_group(run, result.method, scoring(profile))
        # Face swaps and self-blends apart: does it find more than a generator like its own?
        result.by_manipulation = groups[groups["group_kind"] == "manipulation"].reset_index(
            drop=True)
        outcomes = face_outcomes(videos[(videos["split"] != "train") | (videos["label"] == 0)])
        missing = result.missing.merge(videos[["video_id", "n_faces"]], on="video_id")
        for row in missing.itertuples():
            at = outcomes["video_id"] == row.video_id
            if row.n_missing >= row.n_faces:
                outcomes.loc[at, ["outcome", "reason"]] = ["failed", "no landmarks"]
            outcomes.loc[at, "detail"] = f"{row.n_missing} of {row.n_faces} faces without landmarks"
        summaries.stage_summary(run, "train_sbi", outcomes)
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
