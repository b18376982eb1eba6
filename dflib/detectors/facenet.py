"""The ``facenet`` family: classic classifiers on the raw FaceNet embeddings of the faces
(``facenet/<classifier>``), the baseline of the ``triplet`` family. Its stage computes the
embeddings (:mod:`dflib.embeddings`); the classifiers train in stage ``train_triplet``
beside the triplet ones, on the same folds (:mod:`dflib.detectors.models.triplet`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..embeddings_fields import EMBED_FACES
from ..fields import Stage
from ..vocabulary import CLASSIFIERS, Family

if TYPE_CHECKING:
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


class FaceNetClassifiers:
    """Stage ``embed_faces``: FaceNet embeddings of every stored face, plus the manifest of
    the weights used (torch only; TensorFlow is never imported here)."""

    family = Family("facenet", CLASSIFIERS, "FaceNet", frame_level=True,
                    threshold_section="train_triplet")
    stages = (Stage("embed_faces", "06_embed_faces.ipynb", EMBED_FACES),)
    joins: tuple[str, ...] = ()
    rescored_with = "triplet"  # the faces are embedded once for both spaces

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """The :class:`dflib.embeddings.EmbedResult` (``progress``)."""
        import numpy as np
        import pandas as pd

        from .. import embeddings, summaries

        run = profile.run.ensure()
        result = embeddings.run_section(run, profile.shared, profile.sections["embed_faces"],
                                        progress=options.get("progress", True))
        table = result.videos
        no_face = table["status"].isin(["embedded", "skipped"]) & (table["n_faces"] == 0)
        outcome = np.select([table["status"] == "failed", table["status"] == "no_store", no_face],
                            ["failed", "skipped", "skipped"], "processed")
        reason = np.select([table["status"] == "failed", table["status"] == "no_store", no_face,
                            table["status"] == "skipped"],
                           ["unreadable store file", table["reason"], "no_face", "already done"],
                           "")
        summaries.stage_summary(run, stage, pd.DataFrame({
            "video_id": table["video_id"], "outcome": outcome, "reason": reason,
            "detail": table["reason"]}))
        return result

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """The faces embedded with the network and weights the run's embeddings were made
        with, then each classifier."""
        from .models import triplet

        return triplet.score_saved(run, methods, store, videos, settings, progress)

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """The embeddings' manifest and each method's classifier."""
        from .models import triplet

        return triplet.saved_files(run, methods)


DETECTOR = FaceNetClassifiers()
