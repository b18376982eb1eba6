"""The one interface every detector family implements (:class:`Detector`).

A family is one module of :mod:`dflib.detectors` exporting one object of this shape; the
registry (:data:`dflib.detectors.DETECTORS`) lists those objects, and everything else asks
them: ``config`` takes the detector stages and their parameter sections from them, the
runner runs their ``train``, stage 08 and ``dflib predict`` their ``score_saved``.

Light by contract: this module and the family modules import only leaves at their top
(TensorFlow and torch load inside ``train`` and ``score_saved``), so ``dflib check`` and
``config`` read the registry without loading a model library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

from ..fields import Stage
from ..vocabulary import Family

if TYPE_CHECKING:  # annotations only: these modules sit above the registry
    import pandas as pd

    from .models.batches import FaceSource
    from ..config import Profile
    from ..evaluation import Prediction
    from ..paths import RunPaths


@runtime_checkable
class Detector(Protocol):
    """A detector family: its names, its stages, how it trains, re-scores and what it reads.

    ``family``: the grammar of its method names (name, members, display group, whether it
    scores single faces, the section whose threshold its predictions use).
    ``stages``: the stages it owns, in run order, each with its notebook and its profile
    section's fields; their place in the study is the family's place in the registry.
    ``joins``: stages of other families it also trains in, after their owner (the
    training-free controls score in the recurrent heads' stage, on the same faces).
    ``rescored_with``: the family whose ``score_saved`` call also re-scores this one's
    methods, so shared work is done once (``facenet`` and ``triplet`` embed faces once);
    its own name otherwise.
    """

    family: Family
    stages: tuple[Stage, ...]
    joins: tuple[str, ...]
    rescored_with: str

    def train(self, profile: Profile, stage: str, **options: Any) -> Any:
        """Run ``stage`` (one of its ``stages`` or ``joins``) for the profile's run: train,
        score the test split, write predictions, results rows and the stage summary."""
        ...

    def score_saved(self, run: RunPaths, methods: Sequence[str], store: FaceSource,
                    videos: pd.DataFrame, settings: Mapping[str, Any],
                    progress: bool = False) -> dict[str, Prediction]:
        """The run's saved models of ``methods`` applied to other faces (``videos``: ``video_id,
        label, n_faces``), with the run's own aggregation and threshold (``settings``: its
        whole profile)."""
        ...

    def saved_files(self, run: RunPaths, methods: Sequence[str]) -> list[Path]:
        """The files :meth:`score_saved` reads for ``methods``, records first: ``dflib predict``
        checks each is whole before any work."""
        ...
