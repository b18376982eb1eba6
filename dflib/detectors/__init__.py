"""The registry of detector families: the one list of them (:data:`DETECTORS`), and what
the rest of dflib asks about a method name.

Each family is one module here exporting one :class:`~dflib.detectors.base.Detector`
(``DETECTOR``); its place in :data:`DETECTORS` is its stages' place in the study
(``config`` puts them between the faces stage and the robustness stage). Adding a family
is one module and one line below (docs/extending.md, "Adding a detector family").

Light: the family modules import only leaves at their top, so ``config`` and ``dflib
check`` read this registry without TensorFlow or torch.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

from ..fields import Stage
from ..vocabulary import CLASSIFIERS, Family, is_ensemble
from . import c3d, cnn, control, facenet, frequency, rnn, triplet
from .base import Detector

DETECTORS: tuple[Detector, ...] = (cnn.DETECTOR, c3d.DETECTOR, rnn.DETECTOR, facenet.DETECTOR,
                                   triplet.DETECTOR, frequency.DETECTOR, control.DETECTOR)

BY_NAME: Mapping[str, Detector] = MappingProxyType({d.family.name: d for d in DETECTORS})
FAMILIES: Mapping[str, Family] = MappingProxyType({n: d.family for n, d in BY_NAME.items()})
# The stages the families own, in registry order: the detector stages of the study.
STAGES: tuple[Stage, ...] = tuple(s for d in DETECTORS for s in d.stages)

FRAME_LEVEL = tuple(name for name, f in FAMILIES.items() if f.frame_level)
METHOD_NAME = re.compile("|".join(f.pattern for f in FAMILIES.values()))
GRAMMAR = ", ".join(f.grammar for f in FAMILIES.values())


def stage_owner(stage: str) -> Detector:
    """The family that owns a detector stage."""
    for d in DETECTORS:
        if any(s.name == stage for s in d.stages):
            return d
    raise ValueError(f"stage {stage!r} is no detector stage (detector stages: "
                     f"{', '.join(s.name for s in STAGES)})")


def joiners(stage: str) -> list[Detector]:
    """The families that also train in another family's ``stage``, in registry order."""
    return [d for d in DETECTORS if stage in d.joins]


def family(method: str) -> str:
    """The detector family of a method name; a clear error for a name of no family."""
    for name, fam in FAMILIES.items():
        if re.fullmatch(fam.pattern, method):
            return name
    raise ValueError(f"method {method!r} is not a detector name ({GRAMMAR}; classifiers: "
                     f"{', '.join(CLASSIFIERS)})")


def detector_of(method: str) -> Detector:
    """The family object of a method name (:func:`family`)."""
    return BY_NAME[family(method)]


def is_method(method: str) -> bool:
    return METHOD_NAME.fullmatch(method) is not None


def is_frame_level(method: str) -> bool:
    """Whether the method scores single faces (and writes frame predictions)."""
    return FAMILIES[family(method)].frame_level


def is_detector(method: str) -> bool:
    """False for a control; true for every other name, of a family or not."""
    try:
        return FAMILIES[family(method)].detector
    except ValueError:
        return True


def is_temporal(method: str) -> bool:
    """Whether a method is one of the temporal detectors (clip models, recurrent heads)."""
    return is_detector(method) and display_group(method) == "temporal"


def threshold_section(method: str) -> str | None:
    """The profile section whose ``threshold`` the method's predictions were called with."""
    return FAMILIES[family(method)].threshold_section


def display_group(method: str) -> str:
    """The group a method's rows are shown in (:data:`dflib.vocabulary.DISPLAY_GROUPS`), as
    the paper groups them; names of no family go to ``other``."""
    try:
        fam = family(method)
    except ValueError:
        return "other"
    if fam == "cnn" and is_ensemble(method):
        return "boosted"
    return FAMILIES[fam].display_group
