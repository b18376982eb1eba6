"""The ``device`` parameter of the torch parts (MTCNN, FaceNet, dlib's stand-in runs on the
CPU): the one place that turns ``auto | cpu | cuda`` into a device, and the CPU cores a
process may use, and how a process keeps the memory it frees. torch is imported only
when a GPU must be looked for, so calling this stays cheap."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

DEVICES = ("auto", "cpu", "cuda")


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# glibc's mallopt options: one arena for every thread, and neither trimming the heap's top
# nor mapping large blocks of their own below this many bytes.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_KEEP_BELOW = 1 << 30


def keep_freed_memory() -> bool:
    """Make this process keep the memory it frees for its next allocations, where the C
    library is glibc (Linux); elsewhere nothing changes. Returns whether it took effect.

    Extraction frees a video's decoded frames (tens to hundreds of MB) and asks for as much
    again for the next one; glibc gave such blocks back to the system and the next video
    faulted every page in afresh (about 13,000 faults per 25 frames of 1080p). On the
    development VM a fresh page sometimes cost 35 us, so a 1080p decode of 180 ms took
    600-950 ms at random, in the decode-ahead thread as in the caller's. With the memory
    kept (one arena, no trimming, no separate mappings) the same decode faults a handful
    of pages and takes 150 ms (docs/benchmarks.md, "Decoding the next video ahead"). The
    process then holds its peak, a few hundred MB; a stage's process ends with the stage."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
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
