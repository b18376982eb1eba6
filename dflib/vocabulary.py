"""The study's vocabulary: the grammar of method names (:class:`Family`, the record each
detector family declares), and the lists of backbones, heads, clip models, classifiers and
aggregation rules.

``config`` validates profiles against its lists, the stages name their methods with
:func:`cnn_method` and friends. A leaf: it imports nothing from dflib. The families
themselves, and what a method name's family says about it (``display_group``,
``is_frame_level``, ...), are the registry's: :mod:`dflib.detectors`.

A method name is ``<family>/<member>[/<variant>]`` or, for the clip models, the model's
own name (docs/design.md, "Contracts")::

    cnn/<arch>  cnn/<arch>/chunk<i>  cnn/<arch>/boosted  cnn/<arch>/boosted_mean
    cnn/<arch>/sbi
    c3d  conv3d  conv3d_light  conv3d_diff
    rnn/<head>
    facenet/<classifier>  triplet/<classifier>
    frequency/<feature>
    control/<statistic>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from types import MappingProxyType
from typing import Mapping, Sequence

# Frame-CNN backbones (keras.applications) and the smallest input side each accepts
# without ImageNet weights.
CNN_MIN_INPUT: Mapping[str, int] = MappingProxyType({
    "xception": 71, "iv3": 75, "irv2": 75, "resnet": 32, "nasnet": 32, "nasnet_large": 32,
    "ef0": 32, "ef5": 32})
CNN_ARCHS = tuple(CNN_MIN_INPUT)
# The votes of the chunk models, by method suffix: majority vote of their calls (the
# paper's max voting) and the mean of their scores (rules of dflib.statistics.ensemble).
ENSEMBLE_RULES: Mapping[str, str] = MappingProxyType({"boosted": "vote", "boosted_mean": "mean"})
ENSEMBLES = tuple(ENSEMBLE_RULES)
# The variant of a frame CNN trained on real faces and their self-blends (models.sbi): one
# model, neither a chunk of the bagging nor a vote of chunks.
SBI = "sbi"
CLIP_MODELS = ("c3d", "conv3d", "conv3d_light", "conv3d_diff")
# What the frame CNN's early stopping watches on the validation faces: the loss (Keras'
# default, the paper's) or the AUC of the fake score, which a model near the validation
# split's class prior cannot score well on.
CNN_MONITORS = ("val_loss", "val_auc")
# ``time_average`` is the recurrent heads' fair baseline: a logistic regression on the mean
# of the same features over time (dflib.detectors.models.sequences.build_head).
RNN_HEADS = ("lstm", "bilstm", "temporal_max", "gru", "time_average")
TIME_AVERAGE = "time_average"
# What the recurrent heads read: the frame CNN's features (the paper's input) or the
# face-embedding network's embeddings (stage embed_faces), never fitted to the study's videos.
RNN_INPUTS = ("cnn", "embeddings")
# Training-free statistics scored like detectors, to show what arithmetic alone finds
# (dflib.detectors.models.controls); not detectors: the study never chooses one.
# The temporal ones are what the temporal detectors are compared with; ``identity`` is the
# identity control (dflib.detectors.models.identity): the training fake share of the nearest training identity
# in the face-embedding space, which sees who is shown, nothing else.
TEMPORAL_CONTROLS = ("colour_jerk",)
IDENTITY_CONTROL = "identity"
CONTROLS = (*TEMPORAL_CONTROLS, IDENTITY_CONTROL)
# Frequency-artefact features, one detector each (dflib.detectors.models.frequency); ``all`` is the
# three side by side. The classifiers that stage may fit on them, chosen by cross-validation.
FREQUENCY_FEATURES = ("spectrum", "srm", "dct", "all")
FREQUENCY_CLASSIFIERS = ("logreg", "svc")
CLASSIFIERS = ("sgd", "logreg", "rf", "knn", "svc", "nb", "perceptron", "tree")
AGGREGATIONS = ("mean", "max", "vote", "confident")

# Prediction files: ``predictions/<stem>.csv`` and ``<stem>_frames.csv``, the stem being the
# method name with "/" written as "__". A segment starts alphanumeric and has single
# underscores only inside, so that "/" <-> "__" is a bijection and no method name can end in
# the frames suffix of another.
FRAMES_SUFFIX = "_frames"
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(?:_[A-Za-z0-9.+-]+)*")
# Splits with prediction files: test under predictions/, validation under predictions/val/.
PREDICTION_SPLITS = ("test", "val")

# Display groups of the results tables and figures, in the paper's order.
DISPLAY_GROUPS = ("frame CNN", "boosted", "temporal", "FaceNet", "triplet", "frequency", "control",
                  "other")


@dataclass(frozen=True)
class Family:
    """A detector family: how its method names are formed and how the study treats them.

    Each family module of :mod:`dflib.detectors` holds one, as its detector's ``family``.
    ``members`` are the second segment of its names (``cnn/<arch>``), or the whole names
    when ``prefixed`` is false (the clip models). ``threshold_section`` is the profile
    section whose ``threshold`` its predictions were called with (None: 0.5). ``detector`` is false for a control (a statistic designed
    knowing the data, scored like a detector for comparison): the study never picks one."""

    name: str
    members: tuple[str, ...]
    display_group: str
    frame_level: bool
    threshold_section: str | None = None
    prefixed: bool = True
    placeholder: str = "<classifier>"  # the member in words, for error messages
    variants: str = ""  # regex of an optional third segment
    variants_in_words: str = ""
    detector: bool = True

    @property
    def pattern(self) -> str:
        members = "|".join(sorted(self.members, key=len, reverse=True))
        if not self.prefixed:
            return f"({members})"
        variant = f"(/({self.variants}))?" if self.variants else ""
        return f"{self.name}/({members}){variant}"

    def method(self, member: str) -> str:
        """The method name of one of its members (``<family>/<member>``, or the member alone
        for a family whose names are not prefixed)."""
        if member not in self.members:
            raise ValueError(f"{member!r} is not a member of family {self.name} "
                             f"({', '.join(self.members)})")
        return f"{self.name}/{member}" if self.prefixed else member

    @property
    def grammar(self) -> str:
        """The family's names in words, for error messages."""
        if not self.prefixed:
            return ", ".join(self.members)
        return f"{self.name}/{self.placeholder}{self.variants_in_words}"


def cnn_method(arch: str, chunk: int | None = None, ensemble: str | None = None) -> str:
    """``cnn/<arch>`` (chunk 0, the single-model figure), ``cnn/<arch>/chunk<i>`` or
    ``cnn/<arch>/<ensemble>``."""
    if ensemble is not None:
        return f"cnn/{arch}/{ensemble}"
    return f"cnn/{arch}" if not chunk else f"cnn/{arch}/chunk{chunk}"


def sbi_method(arch: str) -> str:
    """``cnn/<arch>/sbi``: the ``arch`` frame CNN trained on self-blended images."""
    return f"cnn/{arch}/{SBI}"


def is_sbi(method: str) -> bool:
    """Whether a name is a frame CNN trained on self-blended images (``cnn/<arch>/sbi``)."""
    return method.startswith("cnn/") and method.count("/") == 2 and method.endswith(f"/{SBI}")


def rnn_method(head: str) -> str:
    return f"rnn/{head}"


def embedding_method(space: str, classifier: str) -> str:
    """``facenet/<classifier>`` or ``triplet/<classifier>``."""
    return f"{space}/{classifier}"


def is_ensemble(method: str) -> bool:
    """Whether a ``cnn/...`` name is a vote of the chunk models."""
    return method.startswith("cnn/") and method.rsplit("/", 1)[-1] in ENSEMBLES


def frequency_method(feature: str) -> str:
    return f"frequency/{feature}"


def control_method(statistic: str) -> str:
    return f"control/{statistic}"


def single_chunks_of(method: str, methods: Sequence[str]) -> list[str]:
    """The single chunk models (``cnn/<arch>``, ``cnn/<arch>/chunk<i>``) among ``methods`` of
    the backbone of a ``cnn/<arch>/...`` name: the members an ensemble is compared with."""
    arch = method.split("/")[1]
    return [m for m in methods if m == cnn_method(arch)
            or re.fullmatch(rf"cnn/{re.escape(arch)}/chunk\d+", m)]


def time_average_of(method: str) -> str | None:
    """``rnn/time_average`` of a recurrent head's name (the baseline it is compared with);
    None for the baseline itself and for other names."""
    head, _, rest = method.partition("/")
    return rnn_method(TIME_AVERAGE) if head == "rnn" and rest != TIME_AVERAGE else None


def raw_embedding_of(method: str) -> str | None:
    """``facenet/<clf>`` of a ``triplet/<clf>`` name (the raw space it is compared with)."""
    head, _, rest = method.partition("/")
    return embedding_method("facenet", rest) if head == "triplet" else None


def method_filename(method: str) -> str:
    """File stem of a method's predictions: ``cnn/xception/boosted`` ->
    ``cnn__xception__boosted``."""
    segments = method.split("/")
    if not all(_SEGMENT.fullmatch(s) for s in segments) or method.endswith(FRAMES_SUFFIX):
        raise ValueError(
            f"method name {method!r}: use '/'-separated segments of letters, digits, '.', '+', "
            f"'-' and single inner '_', not ending in {FRAMES_SUFFIX!r}")
    return "__".join(segments)


def method_from_filename(name: str) -> str:
    """Inverse of :func:`method_filename`; accepts a stem or a ``.csv`` file name."""
    method = PurePath(name).name.removesuffix(".csv").replace("__", "/")
    method_filename(method)  # validates
    return method
