"""The ``device`` parameter of the torch parts (MTCNN, FaceNet, dlib's stand-in runs on the
CPU): the one place that turns ``auto | cpu | cuda`` into a device, and the CPU cores a
process may use, and how a process keeps the memory it frees. torch is imported only
when a GPU must be looked for, so calling this stays cheap."""

from __future__ import annotations

import ctypes
import os

DEVICES = ("auto", "cpu", "cuda")


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# glibc's mallopt options: one arena for every thread, and neither trimming the heap's top
# nor mapping large blocks of their own below this many bytes.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_KEEP_BELOW = 1 << 30


def settle_frame_memory() -> bool:
    """Make this process reuse the memory one video's frames free for the next, without
    huge-page advice; where the C library is glibc (Linux), else nothing changes.
    Returns whether glibc took the settings.

    Extraction frees a video's decoded frames (tens to hundreds of MB) and asks for as much
    again for the next one. glibc gave such blocks back to the system, so every page was
    faulted in afresh (about 13,000 faults per 25 frames of 1080p), and NumPy advises the
    kernel to back arrays of 4 MB and more (a 1080p frame) with huge pages, which with
    Linux's usual ``transparent_hugepage/defrag = madvise`` makes a fault wait for memory
    to be compacted when no huge page is free (numpy/numpy#31590): a 1080p decode of
    180 ms took 600-950 ms at random, in the decode-ahead thread as in the caller's. Here
    the memory is kept (one arena, no trimming, no separate mappings) and NumPy's advice
    is off; the process then holds its peak, a few hundred MB, and a stage's process ends
    with the stage (docs/benchmarks.md, "Decoding the next video ahead"). Call it before
    torch starts its threads: a thread that allocated before has an arena of its own,
    which a later thread (the decode-ahead one) may share, and which gives its memory
    back when it empties."""
    import numpy as np

    advice = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)
    if advice is not None:
        advice(False)
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    return all([mallopt(option, value) == 1 for option, value in (
        (_M_ARENA_MAX, 1), (_M_TRIM_THRESHOLD, _KEEP_BELOW), (_M_MMAP_THRESHOLD, _KEEP_BELOW))])


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
