"""The MTCNN face extractor: which face of a frame is kept, and how it is followed.

Detection runs in batches on frames downscaled for speed; crops are cut from the
full-resolution frames. Key frames are searched in full, the frames between them around
the faces the key frame found, and a frame after a shot change afresh; of several
candidates the one that continues the track is kept (the choice rules below). torch and
facenet-pytorch are imported on first use only, so importing this module stays cheap.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from . import config, mtcnn
from .devices import check_device, resolve_device
from .faces_fields import CROPS, FACES, MULTI_FACES, SELECTIONS
from .fields import defaults
from .steptimes import count, step


# Face choice in a frame with several candidates (recorded per frame as its rule): the one
# that overlaps the previous frame's face by TRACK_IOU continues the track, so one person
# stays stored within a shot; else a candidate this far below the frame's best probability
# is dropped (hands and other distractors score 0.7-0.9 where a face scores 0.99+), and of
# those left ``selection`` picks. A shot change starts afresh.
PROB_GAP = 0.05
TRACK_IOU = 0.3
# A frame between key frames whose confirmed face is this much less probable than the key
# frame's is searched in full, as is every frame after a shot change: neighbouring sampled
# frames whose grey-level histograms differ by a Bhattacharyya distance above CUT_HISTOGRAM
# and whose thumbnails differ by more than CUT_PIXELS grey levels on average (a histogram
# alone misses a cut between two similar-looking shots; pixels alone call every pan a cut).
PROB_DROP = 0.1
CUT_HISTOGRAM = 0.3
CUT_PIXELS = 25.0
CUT_THUMB = 64
RULES = ("only", "gap", "track", "largest", "probability")
CHOICE_VERSION = "gap-track-cut-7"  # in the store settings: stores chosen otherwise are redone
# The coarse, downscaled detection pass looks for faces of at least this many detector
# pixels (MTCNN's own default); smaller ones are left to the full-resolution pass.
DETECT_MIN_FACE_PX = 20
# A key frame after the first is searched first around the faces the key frame before it
# counted (NEAR_REGION face sides across around each), resized so a face spans NEAR_FACE_PX.
NEAR_REGION = 4.0
NEAR_FACE_PX = 48.0
# Within a shot, after a frame searched in full found no face (the reference), a later
# frame is searched only where its CUT_THUMB thumbnail differs from the reference's by more
# than STILL_PIXELS grey levels (a face that comes in changes the picture where it comes;
# film grain and compression moved single thumbnail pixels by up to 11), in at most
# CHANGED_REGIONS regions (changed_regions); where they cover more than CHANGED_MAX of the
# frame, in full.
STILL_PIXELS = 12
CHANGED_MAX = 0.5
CHANGED_REGIONS = 6
# Frames between two key frames of one shot whose faces pair up (as many on each, each of
# the first overlapping one of the second by INTERPOLATE_IOU) take the boxes interpolated
# between the pairs' instead of running MTCNN: a face that stays put over a key-frame
# interval (a talking head, a seated subject) needs no network between. Two key frames
# without a face pair up too: the frames between have none (a title card, a cutaway). Where
# the faces do not pair up (someone walking, a face coming or going) each frame is
# confirmed or searched as before; so a face is missed only where it comes and goes
# between two key frames, within ``redetect_every`` sampled frames.
INTERPOLATE_IOU = 0.6


@dataclass(frozen=True)
class FrameFace:
    """The face kept in one frame, or why there is none."""

    face: np.ndarray | None  # uint8 [img_size, img_size, 3] RGB
    box: tuple[float, float, float, float] | None  # x1, y1, x2, y2, clipped to the frame
    prob: float  # detection probability, NaN without a face
    n_detected: int  # faces found in the frame (between key frames: key-frame faces confirmed)
    reason: str  # "" or "no_face"
    rule: str = ""  # which rule chose the face (RULES), "" without one
    n_faces: int = 0  # faces at least half the size of the largest, probability gap applied
    shot_change: bool = False  # the picture cut between the previous sampled frame and this
    others: tuple[np.ndarray, ...] = ()  # multi_face max: crops of the frame's other faces


class FaceExtractor:
    """MTCNN detection and cropping with the ``faces`` stage parameters.

    ``margin`` is in pixels of the final crop, facenet-pytorch's convention (the paper's
    40 at 160 px): the box fills ``img_size - margin`` of the ``img_size`` pixels, the rest
    is split evenly around it, so the margin grows with the face.

    Detection is coarse to fine. The coarse pass sees the frame downscaled so its long
    side is ``detect_max_side`` (0 = full resolution) and looks for faces of at least
    ``DETECT_MIN_FACE_PX`` detector pixels, below which MTCNN gets unreliable: on 720p
    frames and ``detect_max_side`` 320 that is faces of 80 frame pixels and up, what most
    deepfake footage holds, at a fraction of the full pyramid's cost. Frames where the
    coarse pass finds nothing are searched again at full resolution down to
    ``min_face_size``, so small or distant faces are still found, at full cost.

    Faces move little between neighbouring frames: only every ``redetect_every``-th
    sampled frame (and the last, and the first frame after a shot change) is a key frame,
    searched this way (after the first, its faces confirmed where they stayed put). The
    frames between two key frames whose faces pair up take interpolated boxes; any other
    confirms the faces of the frame before it (moved on by their motion) with MTCNN's last
    two networks, looks for a face it did not confirm around where it was, and is searched
    in full only where no face is left. Within a shot whose last full search found no face,
    later key frames are searched only where the picture changed since, and the frames
    between two key frames without a face have none (:func:`interpolate_faces`).
    """

    def __init__(self, *, img_size: int, margin: int, min_face_size: int,
                 thresholds: Sequence[float], factor: float, selection: str,
                 detect_max_side: int, redetect_every: int, crop: str, multi_face: str,
                 batch_size: int, device: str) -> None:
        # No defaults here: they are the fields' (FACES, config.SHARED), see from_params.
        if selection not in SELECTIONS:
            raise ValueError(f"selection {selection!r} is not one of {SELECTIONS}")
        if crop not in CROPS:
            raise ValueError(f"crop {crop!r} is not one of {CROPS}")
        if multi_face not in MULTI_FACES:
            raise ValueError(f"multi_face {multi_face!r} is not one of {MULTI_FACES}")
        if not 0 <= margin < img_size:
            raise ValueError(f"margin {margin} must be at least 0 and below img_size {img_size}")
        check_device(device)
        self.img_size = int(img_size)
        self.margin = int(margin)
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.selection = selection
        self.detect_max_side = int(detect_max_side)
        self.redetect_every = max(1, int(redetect_every))
        self.crop = crop
        self.multi_face = multi_face
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self._mtcnn: Any = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "FaceExtractor":
        """Build from a mapping that may hold other keys too; the arguments it lacks take
        the defaults a profile that sets nothing gets (:func:`profile_defaults`)."""
        return cls(**{**profile_defaults(), **{k: params[k] for k in EXTRACTOR_KEYS
                                              if k in params}})

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments, to rebuild an equal extractor in another process."""
        return {k: getattr(self, k) for k in EXTRACTOR_KEYS}

    @property
    def mtcnn(self) -> Any:
        """The facenet-pytorch MTCNN (created on first use; its weights ship in the wheel)."""
        if self._mtcnn is None:
            import torch
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(device=torch.device(resolve_device(self.device))).eval()
        return self._mtcnn

    def detect_scale(self, width: int, height: int) -> float:
        """Factor applied to a frame of this size for the coarse pass (1.0 = none)."""
        long_side = max(width, height)
        if self.detect_max_side <= 0 or long_side <= self.detect_max_side:
            return 1.0
        return self.detect_max_side / long_side

    def coarse_min_face(self, width: int, height: int) -> float:
        """The smallest face, in frame pixels, that the coarse pass looks for."""
        scale = self.detect_scale(width, height)
        return self.min_face_size if scale == 1.0 else max(self.min_face_size,
                                                           DETECT_MIN_FACE_PX / scale)

    def extract(self, frames: Sequence[np.ndarray]) -> list[FrameFace]:
        """Detect, select and crop one face per RGB uint8 frame.

        ``frames`` are one video's sampled frames in order: every ``redetect_every``-th
        and the last are key frames (:meth:`_search_keys`); a frame between two whose faces
        pair up takes boxes interpolated between theirs (:func:`interpolate_faces`), any
        other confirms the faces of the frame before it where their motion takes them
        (:func:`predict_faces`, :func:`dflib.mtcnn.confirm`) and searches near a face it
        did not confirm (:meth:`_follow`), and any frame where none is left is searched in
        full too (only where it changed, :meth:`_search_changed`, when its key frame had
        no face; not at all between two key frames without a face).

        A shot change makes its frame a key frame; a frame whose confirmed face is
        ``PROB_DROP`` less probable than its key frame's best is searched in full again.
        The face of each frame is then chosen in order (:meth:`_choose`), continuing the
        previous frame's face within a shot.
        """
        detections: list[np.ndarray] = [np.empty((0, 5))] * len(frames)
        cuts = [False] * len(frames)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            by_shape.setdefault(frame.shape, []).append(i)
        for members in by_shape.values():
            with step("shot_cuts"):
                thumbs = [_thumbnail(frames[i]) for i in members]
                changes = cuts_between(thumbs)
            count("cuts", sum(changes))
            thumb_of = dict(zip(members, thumbs))
            for i, cut in zip(members, changes):
                cuts[i] = cut
            keys, key_of, since = [], {}, self.redetect_every
            for i in members:
                # The last frame is a key frame too, so every frame between has one after it.
                if since >= self.redetect_every or cuts[i] or i == members[-1]:
                    keys.append(i)
                    since = 0
                key_of[i] = keys[-1]
                since += 1
            reference: dict[int, np.ndarray] = {}  # key frame: its shot's blank reference
            for i, (det, ref) in zip(keys, self._search_keys(
                    [frames[i] for i in keys], [cuts[i] for i in keys],
                    [thumb_of[i] for i in keys])):
                detections[i] = det
                if ref is not None:
                    reference[i] = ref
            key_set = set(keys)
            following = {a: b for a, b in zip(keys, keys[1:]) if not cuts[b]}
            position = {i: k for k, i in enumerate(members)}
            interpolated = set()
            for i in members:
                end = following.get(key_of[i])
                if i in key_set or end is None:
                    continue
                start = key_of[i]
                boxes = interpolate_faces(detections[start], detections[end],
                                          (position[i] - position[start])
                                          / (position[end] - position[start]))
                if boxes is not None:
                    detections[i] = boxes
                    interpolated.add(i)
            count("interpolated", len(interpolated))
            # Each frame between key frames confirms the faces of the frame before it (its
            # key frame's where that one lost them): a face that moves is proposed where it
            # just was. Proposing the key frame's boxes to every follower lost faces that
            # moved a third of their width in a few frames (people walking), and another
            # face took the track over. Rounds of the n-th frames after each key frame
            # still go through the networks together.
            before = dict(zip(members[1:], members))
            by_round: dict[int, list[int]] = {}
            for i in members:
                if i not in key_set and i not in interpolated and len(detections[key_of[i]]):
                    by_round.setdefault(position[i] - position[key_of[i]], []).append(i)
            for _, batch in sorted(by_round.items()):
                proposals = []
                for i in batch:
                    previous = detections[before[i]]
                    if not len(previous):  # lost since the key frame: where they were there
                        previous = detections[key_of[i]]
                    elif before[i] != key_of[i]:  # two frames seen: on as far as they moved
                        previous = predict_faces(previous, detections[before[before[i]]])
                    proposals.append(previous)
                confirmed = self._confirm([frames[i] for i in batch], proposals)
                count("confirmed", sum(len(det) > 0 for det in confirmed))
                for i, props, det in zip(batch, proposals, confirmed):
                    detections[i] = self._follow(frames[i], props, det)
            lost = [i for i in members if i not in key_set and i not in interpolated
                    and len(detections[key_of[i]]) and (
                len(detections[i]) == 0 or detections[i][:, 4].max()
                < detections[key_of[i]][:, 4].max() - PROB_DROP)]
            for i, det in zip(lost, self._search([frames[i] for i in lost]) if lost else []):
                if len(det) or not len(detections[i]):
                    detections[i] = det
            # After a key frame without a face and before one with a face (between two
            # without, the frames took none above), a frame is searched only where it
            # changed since its shot's last full search (:meth:`_search_changed`), in full
            # where most of it did. Searching only the coarse pass there instead lost faces
            # between 40 and 80 px at 720p (3 of the tiny-faces clip's 15 for up to four
            # frames); searching each such frame in full made cutaways and title cards
            # cost more than the paper's every-frame search before the pyramid was cheap.
            blank = []
            for i in members:
                if i in key_set or i in interpolated or len(detections[key_of[i]]):
                    continue
                det = (self._search_changed(frames[i], thumb_of[i], reference[key_of[i]])
                       if key_of[i] in reference else None)
                if det is None:
                    blank.append(i)
                else:
                    detections[i] = det
            for i, det in zip(blank, self._search([frames[i] for i in blank])
                              if blank else []):
                detections[i] = det
        out, previous = [], None
        for frame, det, cut in zip(frames, detections, cuts):
            if cut:
                previous = None  # another shot: nothing to continue
            with step("face_crops"):
                face = self._crop(frame, det, previous, cut)
            previous = np.asarray(face.box) if face.box is not None else previous
            out.append(face)
        return out

    def _follow(self, frame: np.ndarray, proposals: np.ndarray, confirmed: np.ndarray
                ) -> np.ndarray:
        """``confirmed`` (the faces the networks confirmed at ``proposals``, the faces of
        the frame before) plus each face of the frame before that was not confirmed,
        searched for around where it was (:meth:`_search_near`): a face that moved more
        than about a third of its width since the frame before (someone walking toward
        the camera) is found where it went instead of another face taking its place."""
        found = [confirmed]
        for face in similar_faces(proposals):
            if len(confirmed) and box_iou(face[:4], confirmed[:, :4]).max() >= TRACK_IOU:
                continue
            count("near_searches")
            near = self._search_near(frame, face[None])
            count("near_found", len(near) > 0)
            seen = np.concatenate(found)
            found += [d[None] for d in near
                      if not len(seen) or box_iou(d[:4], seen[:, :4]).max() < TRACK_IOU]
        return np.concatenate(found) if len(found) > 1 else confirmed

    def _choose(self, det: np.ndarray, previous: np.ndarray | None) -> tuple[np.ndarray, str]:
        """The face of a frame's detections ``[n, 5]`` and the rule that chose it (RULES)."""
        if len(det) == 1:
            return det[0], "only"
        if previous is not None:
            # The person of the frame before stays chosen even when another face scores
            # higher now (a head turning away loses probability before it is lost).
            overlap = box_iou(previous, det[:, :4])
            if overlap.max() >= TRACK_IOU:
                return det[int(np.argmax(overlap))], "track"
        kept = det[det[:, 4] >= det[:, 4].max() - PROB_GAP]
        if len(kept) == 1:
            return kept[0], "gap"
        if self.selection == "largest":
            return kept[np.argmax((kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1]))], "largest"
        return kept[np.argmax(kept[:, 4])], "probability"

    def _search_keys(self, frames: list[np.ndarray], cuts: list[bool],
                     thumbs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Key frames of one size, in order, and for each without a face the thumbnail
        (``thumbs``: :func:`_thumbnail`) of its shot's last frame searched in full without
        one (the reference, :meth:`_search_changed`), else None.

        The first is searched in full; each later one first confirms the faces the one
        before it kept where they stayed put (:meth:`_confirm_still`), else searches near
        them (:meth:`_search_near`), in full only where none is found there or the
        picture cut (``cuts``), with a coarse pass scaled to the faces seen so far; after
        a key frame without a face, only where the picture changed since the reference.
        With ``redetect_every`` 1 every frame is searched in full, as the paper did."""
        if self.redetect_every == 1:
            return [(det, None) for det in self._search(frames)]
        out: list[tuple[np.ndarray, np.ndarray | None]] = []
        last: np.ndarray | None = None  # the faces the last key frame counted
        reference: np.ndarray | None = None  # the shot's blank reference thumbnail
        sides: list[float] = []
        for frame, cut, thumb in zip(frames, cuts, thumbs):
            if cut:
                last = reference = None  # another shot: nothing said about this one
            det = np.empty((0, 5))
            if last is not None:
                det = self._confirm_still(frame, last)
                if not len(det):
                    det = self._search_near(frame, last)
                    count("near_searches")
                    count("near_found", len(det) > 0)
            changed = (self._search_changed(frame, thumb, reference) if reference is not None
                       else None)
            if changed is not None:
                det = changed
            elif len(det) == 0:
                det = self._search([frame], min(sides) if sides else None)[0]
                reference = thumb if len(det) == 0 else None
            if len(det):
                last, reference = similar_faces(det), None
                sides.append(float(np.maximum(last[:, 2] - last[:, 0],
                                              last[:, 3] - last[:, 1]).min()))
            out.append((det, reference))
        return out

    def _confirm_still(self, frame: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """The ``faces`` of the key frame before (:func:`similar_faces`), confirmed in this
        key frame (:func:`dflib.mtcnn.confirm`) where each stayed put: its confirmed box
        overlaps its old one by ``INTERPOLATE_IOU`` and its probability fell by less than
        ``PROB_DROP``; else none, and the caller searches near them. Two small networks on
        one crop per face cost a fraction of the search near them (its pyramid and
        candidates)."""
        confirmed = self._confirm([frame], [faces])[0]
        for face in faces:
            overlap = box_iou(face[:4], confirmed[:, :4]) if len(confirmed) else np.zeros(1)
            match = int(np.argmax(overlap))
            if overlap[match] < INTERPOLATE_IOU or confirmed[match, 4] < face[4] - PROB_DROP:
                return np.empty((0, 5))
        count("confirmed")
        return confirmed

    def _search_changed(self, frame: np.ndarray, thumb: np.ndarray, reference: np.ndarray
                        ) -> np.ndarray | None:
        """Faces of a frame whose shot's ``reference`` frame (its thumbnail) was searched
        in full without a face: none where no thumbnail pixel moved more than
        STILL_PIXELS, else MTCNN at full resolution down to ``min_face_size`` in the
        regions that did (:func:`changed_regions`; no coarse pass first: in a shot without
        a face it would only add its cost); None (not searched) where they cover more
        than CHANGED_MAX of the frame."""
        moved = np.abs(thumb.astype(np.int16) - reference) > STILL_PIXELS
        if not moved.any():
            count("still")
            return np.empty((0, 5))
        height, width = frame.shape[:2]
        regions = changed_regions(moved, width, height, self.min_face_size)
        if sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in regions) > (
                CHANGED_MAX * width * height):
            return None
        count("changed_searches")
        found = [np.empty((0, 5))]
        for x1, y1, x2, y2 in regions:
            det = self._detect([np.ascontiguousarray(frame[y1:y2, x1:x2])], 1.0)[0]
            det[:, [0, 2]] += x1
            det[:, [1, 3]] += y1
            found.append(det)
        return np.concatenate(found)

    def _search_near(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Faces around ``boxes`` (the faces a key frame before counted): the box around
        them grown by ``(NEAR_REGION - 1) / 2`` face sides on each side, resized so that a
        face of their size spans ``NEAR_FACE_PX`` detector pixels, over the pyramid levels
        of faces from half to twice that size only."""
        height, width = frame.shape[:2]
        side = float(max(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).max(),
                         1.0))
        grow = (NEAR_REGION - 1) / 2 * side
        x1, y1 = int(max(boxes[:, 0].min() - grow, 0)), int(max(boxes[:, 1].min() - grow, 0))
        x2 = int(min(boxes[:, 2].max() + grow, width))
        y2 = int(min(boxes[:, 3].max() + grow, height))
        scale = min(1.0, NEAR_FACE_PX / side)
        min_face = max(self.min_face_size * scale, DETECT_MIN_FACE_PX / 2, scale * side / 2)
        if x2 - x1 < 2 * min_face or y2 - y1 < 2 * min_face:
            return np.empty((0, 5))
        region = frame[y1:y2, x1:x2]
        size = (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale)))
        if scale < 1.0:
            with step("shrink"):
                region = mtcnn.area_resize(region, *size)
        boxes = mtcnn.detect([np.ascontiguousarray(region)], self.mtcnn, min_face,
                             self.thresholds, self.factor, max_face=2 * scale * side)[0]
        boxes[:, [0, 2]] = boxes[:, [0, 2]] * ((x2 - x1) / size[0]) + x1
        boxes[:, [1, 3]] = boxes[:, [1, 3]] * ((y2 - y1) / size[1]) + y1
        return boxes

    def _search(self, frames: list[np.ndarray], known_side: float | None = None
                ) -> list[np.ndarray]:
        """Full detection of frames of one size: the coarse pass, then full resolution for
        the frames where it found nothing. ``known_side``: the smallest face
        (frame pixels) found in this video so far; the coarse pass then sees the frame at
        least large enough for a face of half that size to keep ``DETECT_MIN_FACE_PX``."""
        if not frames:
            return []
        height, width = frames[0].shape[:2]
        scale = self.detect_scale(width, height)
        if known_side:
            scale = min(1.0, max(scale, 2 * DETECT_MIN_FACE_PX / known_side))
        count("full_searches", len(frames))
        detections = self._detect(frames, scale)
        if scale < 1.0:
            missed = [i for i, det in enumerate(detections) if len(det) == 0]
            count("full_resolution", len(missed))
            retried = self._detect([frames[i] for i in missed], 1.0) if missed else []
            for i, det in zip(missed, retried):
                detections[i] = det
        return detections

    def _confirm(self, frames: list[np.ndarray], proposals: list[np.ndarray]
                 ) -> list[np.ndarray]:
        """Faces confirmed at the ``proposals`` boxes, on the full-resolution frames."""
        out: list[np.ndarray] = []
        for start in range(0, len(frames), self.batch_size):
            out += mtcnn.confirm(frames[start:start + self.batch_size], self.mtcnn,
                                 proposals[start:start + self.batch_size], self.thresholds)
        return out

    def _detect(self, frames: list[np.ndarray], scale: float) -> list[np.ndarray]:
        """MTCNN boxes ``[n, 5]`` (x1, y1, x2, y2, prob) in frame pixels, per frame.

        All ``frames`` have one size. MTCNN's own minimum face size is the coarse pass's
        (:meth:`coarse_min_face`) in detector pixels: the pyramid starts there.
        """
        if not frames:
            return []
        height, width = frames[0].shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        sx, sy = size[0] / width, size[1] / height
        min_face = (self.coarse_min_face(width, height) * scale if scale < 1.0
                    else self.min_face_size)
        out: list[np.ndarray] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            if scale < 1.0:
                with step("shrink"):
                    chunk = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in chunk]
            for boxes in mtcnn.detect(chunk, self.mtcnn, min_face, self.thresholds,
                                      self.factor):
                boxes[:, [0, 2]] /= sx
                boxes[:, [1, 3]] /= sy
                out.append(boxes)
        return out

    def _cut(self, frame: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
        """The ``img_size`` square crop of a box with its margin (``crop``: see CROPS).

        ``stretch`` is facenet-pytorch's ``extract_face`` on the same box (same margin
        rule, same integer rounding, cv2 INTER_AREA), so crops match the paper's pipeline.
        ``square`` keeps the face's proportions: the same margin rule on the box's longer
        side, centred on the box; what lies beyond the frame's edge is black.
        """
        height, width = frame.shape[:2]
        if self.crop == "stretch":
            mx = self.margin * (x2 - x1) / (self.img_size - self.margin) / 2
            my = self.margin * (y2 - y1) / (self.img_size - self.margin) / 2
            cx1 = min(int(max(x1 - mx, 0)), width - 1)
            cy1 = min(int(max(y1 - my, 0)), height - 1)
            cx2 = max(int(min(x2 + mx, width)), cx1 + 1)  # never empty, even for a sliver
            cy2 = max(int(min(y2 + my, height)), cy1 + 1)
            return cv2.resize(frame[cy1:cy2, cx1:cx2], (self.img_size, self.img_size),
                              interpolation=cv2.INTER_AREA)
        side = max(x2 - x1, y2 - y1, 1.0) * self.img_size / (self.img_size - self.margin)
        n = max(1, int(round(side)))
        left = int(round((x1 + x2) / 2 - n / 2))
        top = int(round((y1 + y2) / 2 - n / 2))
        if left >= 0 and top >= 0 and left + n <= width and top + n <= height:
            return mtcnn.area_resize(frame[top:top + n, left:left + n], self.img_size,
                                      self.img_size, finish=1)
        square = np.zeros((n, n, 3), frame.dtype)
        sx1, sy1 = max(left, 0), max(top, 0)
        sx2, sy2 = min(left + n, width), min(top + n, height)
        if sx2 > sx1 and sy2 > sy1:
            square[sy1 - top:sy2 - top, sx1 - left:sx2 - left] = frame[sy1:sy2, sx1:sx2]
        return mtcnn.area_resize(square, self.img_size, self.img_size, finish=1)

    def cut_box(self, frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The crop of a known face box ``(x1, y1, x2, y2)`` of ``frame``, cut as extraction
        cuts it: stage 08 cuts the stored boxes from distorted frames."""
        return self._cut(frame, *(float(v) for v in box))

    def _crop(self, frame: np.ndarray, det: np.ndarray, previous: np.ndarray | None = None,
              cut: bool = False) -> FrameFace:
        """Choose one detection (:meth:`_choose`, ``previous``: the last frame's face box)
        and cut it, with its margin, from the full-resolution frame (:meth:`_cut`)."""
        if len(det) == 0:
            return FrameFace(None, None, math.nan, 0, "no_face", shot_change=cut)
        best, rule = self._choose(det, previous)
        x1, y1, x2, y2, prob = (float(v) for v in best)
        height, width = frame.shape[:2]
        face = self._cut(frame, x1, y1, x2, y2)
        similar = similar_faces(det)
        others = (tuple(self._cut(frame, *(float(v) for v in d[:4])) for d in similar
                        if not np.array_equal(d, best))
                  if self.multi_face == "max" else ())
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
               min(max(x2, 0.0), width), min(max(y2, 0.0), height))
        return FrameFace(face, box, prob, len(det), "", rule, len(similar), cut, others)


# Constructor arguments of FaceExtractor: shared keys and ``faces`` keys of a profile.
EXTRACTOR_KEYS = tuple(inspect.signature(FaceExtractor).parameters)


def profile_defaults() -> dict[str, Any]:
    """The FaceExtractor arguments of a profile that sets none of them (the fields' defaults)."""
    given = {**defaults(config.SHARED), **defaults(FACES)}
    return {k: given[k] for k in EXTRACTOR_KEYS}


def similar_faces(det: np.ndarray) -> np.ndarray:
    """The detections ``[n, 5]`` that count as faces of a frame: within ``PROB_GAP`` of
    its most probable one and at least half the side of the largest of those."""
    kept = det[det[:, 4] >= det[:, 4].max() - PROB_GAP]
    sides = np.maximum(kept[:, 2] - kept[:, 0], kept[:, 3] - kept[:, 1])
    return kept[sides >= sides.max() / 2]


def predict_faces(previous: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """The faces ``[n, 5]`` of the frame before, each moved on as far as it moved since
    the frame before that (``earlier``: its box there, the one it overlaps most by at
    least ``TRACK_IOU``); one without such a box stays where it is. Someone walking
    toward the camera moves about 40 % of their face's width a frame, too far for the
    networks to confirm the face at its last box; at its predicted box they do, and no
    search near it is needed."""
    if not len(earlier):
        return previous
    out = previous.copy()
    for k, face in enumerate(previous):
        overlap = box_iou(face[:4], earlier[:, :4])
        match = int(np.argmax(overlap))
        if overlap[match] >= TRACK_IOU:
            out[k, :4] = 2 * face[:4] - earlier[match, :4]
    return out


def interpolate_faces(start: np.ndarray, end: np.ndarray, fraction: float
                      ) -> np.ndarray | None:
    """The faces ``[n, 5]`` a ``fraction`` of the way from those of one key frame
    (``start``) to those of the next (``end``), both :func:`similar_faces`: each box
    interpolated corner by corner towards the box of ``end`` it overlaps most, with the
    lower of the two probabilities; None unless the faces pair up (as many in each, each
    pair overlapping by ``INTERPOLATE_IOU``, no face of ``end`` taken twice). Two key
    frames without a face pair up: none between."""
    if not len(start) and not len(end):
        return np.empty((0, 5))
    if not len(start) or not len(end):
        return None
    first, last = similar_faces(start), similar_faces(end)
    if len(first) != len(last):
        return None
    out, taken = [], set()
    for face in first:
        overlap = box_iou(face[:4], last[:, :4])
        match = int(np.argmax(overlap))
        if overlap[match] < INTERPOLATE_IOU or match in taken:
            return None
        taken.add(match)
        box = face[:4] + fraction * (last[match, :4] - face[:4])
        out.append([*box, min(face[4], last[match, 4])])
    return np.array(out, dtype=np.float64)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``[4]`` with each of ``boxes`` ``[n, 4]``."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def changed_regions(moved: np.ndarray, width: int, height: int, min_face: int
                    ) -> list[tuple[int, int, int, int]]:
    """The frame regions ``(x1, y1, x2, y2)`` to search for a face that came in where the
    thumbnail pixels ``moved`` (a ``CUT_THUMB`` square mask): the box of each group of
    touching pixels, grown each way by half its side and at least ``min_face`` (a face
    only partly changed is still inside), overlapping boxes merged; where more than
    CHANGED_REGIONS are left, the one box round them all. Scattered changes (a logo's
    animation) boxed together had made one region of half the frame."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(moved.astype(np.uint8), connectivity=8)
    sx, sy = width / CUT_THUMB, height / CUT_THUMB
    boxes = []
    for x, y, w, h, _ in stats[1:]:
        grow = max(w * sx / 2, h * sy / 2, min_face)
        boxes.append([max(x * sx - grow, 0), max(y * sy - grow, 0),
                      min((x + w) * sx + grow, width), min((y + h) * sy + grow, height)])
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]),
                                max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    if len(boxes) > CHANGED_REGIONS:
        boxes = [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                  max(b[2] for b in boxes), max(b[3] for b in boxes)]]
    return [(int(x1), int(y1), int(x2), int(y2)) for x1, y1, x2, y2 in boxes]


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """The ``CUT_THUMB`` square grey thumbnail of a frame, averaged from every ``step``-th
    pixel, where ``step`` keeps at least twice the thumbnail's side: averaging all of a
    720p frame costs about as much as decoding it, for the same cut decisions. The pixels
    are picked by OpenCV's nearest-neighbour resize of the frame trimmed to whole steps
    (the same pixels as ``frame[::step, ::step]``, in a quarter of the time)."""
    height, width = frame.shape[:2]
    step = max(1, min(height, width) // (2 * CUT_THUMB))
    rows, cols = height // step, width // step
    picked = cv2.resize(frame[:rows * step, :cols * step], (cols, rows),
                        interpolation=cv2.INTER_NEAREST) if step > 1 else frame
    return cv2.cvtColor(cv2.resize(picked, (CUT_THUMB, CUT_THUMB), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_RGB2GRAY)


def shot_changes(frames: Sequence[np.ndarray]) -> list[bool]:
    """Per frame, whether the picture cut since the previous one (:func:`cuts_between`
    their thumbnails, :func:`_thumbnail`)."""
    return cuts_between([_thumbnail(f) for f in frames])


def cuts_between(thumbs: Sequence[np.ndarray]) -> list[bool]:
    """Per grey thumbnail of neighbouring frames, whether the picture cut before it
    (``CUT_HISTOGRAM`` and ``CUT_PIXELS`` on them and their 64-bin histograms)."""
    hists = [cv2.calcHist([t], [0], None, [64], [0, 256]) for t in thumbs]
    return [False] + [
        cv2.compareHist(ha, hb, cv2.HISTCMP_BHATTACHARYYA) > CUT_HISTOGRAM
        and float(np.abs(a.astype(np.float32) - b).mean()) > CUT_PIXELS
        for a, b, ha, hb in zip(thumbs, thumbs[1:], hists, hists[1:])]
