"""The ``embed_faces`` section's fields, read by :mod:`dflib.embeddings`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .fields import Field

# FaceNet weights to ask for: dflib.embeddings falls back to dlib's network, then to a
# seeded random initialisation, and reports which it used.
PRETRAINED = ("vggface2", "casia-webface", "dlib", "none")


EMBED_FACES: Mapping[str, Field] = MappingProxyType({
    "pretrained": Field(str, "vggface2", "InceptionResnetV1 weights; when they cannot be "
                        "had, dlib's face-recognition network, else a seeded random "
                        "initialisation, is used and reported",
                        choices=PRETRAINED),
    "batch_size": Field(int, 64, "faces per FaceNet batch", min=1),
    "max_faces_per_video": Field(int, 0, "embed at most this many stored faces of each "
                                 "video, evenly spread (0 keeps all)", min=0),
})
