"""The ``device`` parameter of the torch parts (MTCNN, FaceNet, dlib's stand-in runs on the
CPU): the one place that turns ``auto | cpu | cuda`` into a device, and the CPU cores a
process may use. torch is imported only
when a GPU must be looked for, so calling this stays cheap."""

from __future__ import annotations

import os

DEVICES = ("auto", "cpu", "cuda")


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_device(device: str) -> str:
    """``device`` itself, or a ValueError naming the allowed values."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    return device


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda``: ``auto`` is ``cuda`` when torch sees a GPU; asking for ``cuda``
    without one is an error rather than a silent fallback."""
    if check_device(device) == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU")
    return "cuda" if available else "cpu"
