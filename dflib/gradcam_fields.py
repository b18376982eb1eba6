"""The ``report`` section's fields, read by :mod:`dflib.gradcam`."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .fields import Field


REPORT: Mapping[str, Field] = MappingProxyType({
    "gradcam_per_class": Field(int, 4, "real and fake test faces in the Grad-CAM grid",
                               min=1, max=32),
    "gradcam_layer": Field(str, "", "layer whose feature map Grad-CAM reads (empty: the "
                           "backbone's last convolutional output)"),
})
