"""The ``faces`` section's fields, read by :mod:`dflib.faces` (:func:`~dflib.faces.run_section`,
through :meth:`~dflib.face_extractor.FaceExtractor.from_params`), and the choices of its options."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .fields import Field

SAMPLING_STRATEGIES = ("first", "even", "every_k")
SELECTIONS = ("largest", "probability")
# single: one face per frame (the one ``selection`` chose). max: the other faces of the
# frame (``similar_faces``) are stored too and frame-level detectors score a frame by its
# most fake face (SBI's rule for footage with several people); models train on the chosen one.
MULTI_FACES = ("single", "max")
# square: a square around the box's centre, side the box's longer side plus the margin
# (faces keep their proportions); stretch: the box plus margin resized to a square, as
# facenet-pytorch's extract_face (and so the paper) cut them, widening narrow faces.
CROPS = ("square", "stretch")


def check_faces(stage: str, shared: Mapping[str, Any], section: Mapping[str, Any]
                ) -> str | None:
    """The margin is measured in pixels of the final crop: it must be below ``img_size``."""
    if section["margin"] >= shared["img_size"]:
        return (f"{stage}.margin: {section['margin']} must be below img_size "
                f"{shared['img_size']} (it is measured in pixels of the final crop)")
    return None


FACES: Mapping[str, Field] = MappingProxyType({
    "sampling": Field(str, "first", "which frames: first N (paper), N evenly spaced, every k-th",
                      choices=SAMPLING_STRATEGIES),
    "every_k": Field(int, 5, "step of the every_k sampling", min=1),
    "margin": Field(int, 40, "MTCNN margin around the box, in pixels of the final crop "
                     "(facenet-pytorch's convention)", min=0),
    "min_face_size": Field(int, 40, "smallest face to find, in pixels of the frame", min=8),
    "thresholds": Field(list, [0.6, 0.7, 0.7], "MTCNN P/R/O-net thresholds", item=float,
                        min=0.0, max=1.0, length=3),
    "factor": Field(float, 0.709, "MTCNN image-pyramid scale factor", min=0.1, max=0.95),
    "selection": Field(str, "largest", "which face to keep when several are found",
                       choices=SELECTIONS),
    "multi_face": Field(str, "single", "frames with several faces: single scores the face "
                        "chosen by selection; max also stores every face at least half "
                        "the size of the largest and scores a frame by its most fake face "
                        "(training and clip models use the chosen face)",
                        choices=MULTI_FACES),
    "crop": Field(str, "square", "crop geometry: a square around the face centre (square, "
                  "no distortion) or the box plus margin stretched to a square (stretch, "
                  "facenet-pytorch and the paper)", choices=CROPS),
    "detect_max_side": Field(int, 320, "coarse detection pass on frames downscaled to this "
                             "long side, for faces of 20 detector pixels and up; frames where "
                             "it finds none are searched at full resolution (0: full "
                             "resolution only)", min=0),
    "redetect_every": Field(int, 5, "search every n-th sampled frame (and the last) in "
                            "full; a frame between two whose faces stayed put takes boxes "
                            "interpolated between theirs, any other confirms the faces of the "
                            "frame before it with MTCNN's R- and O-nets and is searched in "
                            "full where none is confirmed (1: every frame)", min=1),
    "batch_size": Field(int, 32, "frames per MTCNN call", min=1),
    "workers": Field(int, 0, "Dask workers across videos (0: in this process)", min=0),
    "scheduler": Field(str, "", "Dask scheduler address; empty starts a local cluster"),
})
