"""Where face extraction's time goes: seconds per named step, counted only while a
:func:`recording` is open (``dflib bench steps``), so the stage pays one ``None`` check
per step otherwise.

On a GPU, torch runs asynchronously: a network's time then lands in the step that waits
for its result (the copy to the CPU), so the shares are exact on the CPU only.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

# The steps of FaceExtractor.extract and dflib.mtcnn, in pipeline order.
STEPS = ("shot_cuts", "shrink", "pyramid", "pnet", "candidate_crops", "rnet", "onet",
         "suppression", "face_crops")

_seconds: dict[str, float] | None = None


@contextmanager
def step(name: str) -> Iterator[None]:
    """Charge the time of the ``with`` body to ``name`` (one of STEPS) while recording."""
    if _seconds is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        _seconds[name] = _seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Seconds per step of what runs in this process inside the ``with`` body."""
    global _seconds
    outer, _seconds = _seconds, {}
    try:
        yield _seconds
    finally:
        _seconds = outer
