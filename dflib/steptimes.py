"""Where face extraction's time goes: seconds per named step, and how often the searches
ran, counted only while a :func:`recording` is open (``dflib bench steps``), so the stage
pays one ``None`` check per step otherwise.

On a GPU, torch runs asynchronously: a network's time then lands in the step that waits
for its result (the copy to the CPU), so the shares are exact on the CPU only.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

# The steps of FaceExtractor.extract and dflib.mtcnn, in pipeline order.
STEPS = ("shot_cuts", "shrink", "pyramid", "pnet", "candidate_crops", "rnet", "onet",
         "suppression", "face_crops")
# Frames counted by FaceExtractor.extract: shot cuts found; searches near a known face
# (key frames near the faces of the key frame before, frames between near a face of the
# frame before that they did not confirm) and those that found one; frames between key
# frames whose faces pair up, given boxes interpolated between theirs (none between two
# without a face); frames that
# confirmed the faces of the frame before (key frames: of the key frame before, where they
# stayed put); frames searched in full (the
# coarse pass), and those of them searched again at full resolution.
# In a shot without a face: frames left unsearched as unchanged since the shot's last
# full search, and frames searched only where they changed, at full resolution.
COUNTS = ("cuts", "near_searches", "near_found", "interpolated", "confirmed", "full_searches",
          "full_resolution", "still", "changed_searches")


@dataclass
class Record:
    """What a :func:`recording` saw: seconds per step (STEPS), frames per count (COUNTS)."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


_record: Record | None = None


@contextmanager
def step(name: str) -> Iterator[None]:
    """Charge the time of the ``with`` body to ``name`` (one of STEPS) while recording."""
    if _record is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        _record.seconds[name] = _record.seconds.get(name, 0.0) + time.perf_counter() - start


def count(name: str, n: int = 1) -> None:
    """Add ``n`` frames to ``name`` (one of COUNTS) while recording."""
    if _record is not None:
        _record.counts[name] = _record.counts.get(name, 0) + int(n)


@contextmanager
def recording() -> Iterator[Record]:
    """Seconds per step and counts of what runs in this process inside the ``with`` body."""
    global _record
    outer, _record = _record, Record()
    try:
        yield _record
    finally:
        _record = outer
