"""The MTCNN cascade (Zhang et al., 2016) on facenet-pytorch's trained networks, arranged
for throughput.

Same networks, weights, thresholds, pyramid and box arithmetic as facenet-pytorch's
``detect_face``; what differs is where the time goes. The pyramid levels and candidate
crops are resized with OpenCV on uint8 frames (one call per crop costs microseconds,
where a tensor ``interpolate`` per box costs a Python round trip each; large crops are
averaged in whole blocks first, :func:`area_resize`), and the three
networks see channels-last batches, which oneDNN runs about twice as fast on CPU. Scores
differ from facenet-pytorch's by resampling round-off only; ``dflib bench extract``
measures the agreement of the boxes with the original pipeline.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from .steptimes import step

# Recorded in every face store file: stores cut by another cascade are redone.
CASCADE_VERSION = "dflib-mtcnn-4"
_PNET_STRIDE, _PNET_CELL = 2, 12
_RNET_SIZE, _ONET_SIZE = 24, 48
_NET_BATCH = 512  # candidate crops per RNet/ONet call, bounding memory on crowded frames
# A pyramid level is resized from an earlier level at least this many times its width
# (three levels up at factor 0.709). From levels twice its width (1.9) the extra
# smoothing moved boxes: mean IoU with facenet-pytorch's 0.934 against 0.939 resized from
# the frame, on 120 demo and real frames; from 2.8 times, 0.940.
PYRAMID_SOURCE = 2.8


def area_resize(image: np.ndarray, width: int, height: int, finish: int = 2) -> np.ndarray:
    """``image`` resized to ``width`` x ``height`` by area averaging, whole ``k x k`` blocks
    first where that leaves at least ``finish`` times the target each way (OpenCV's fast
    path for integer factors; the ``k - 1`` or fewer pixels left over are trimmed evenly
    from both edges), then the area resize that finishes. Cutting a 400 px face to RNet's
    24 px took 0.45 ms directly, 0.14 ms so (mean difference 0.7 grey levels with
    ``finish`` 2); the 160 px face crop of it 1.1 against 0.6 ms (0.8, ``finish`` 1)."""
    rows, cols = image.shape[:2]
    k = min(cols // (finish * width), rows // (finish * height))
    if k >= 2:
        kept_cols, kept_rows = cols // k * k, rows // k * k
        left, top = (cols - kept_cols) // 2, (rows - kept_rows) // 2
        image = cv2.resize(image[top:top + kept_rows, left:left + kept_cols],
                           (kept_cols // k, kept_rows // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def pyramid_scales(height: int, width: int, min_face: float, factor: float,
                   max_face: float | None = None) -> list[float]:
    """Scales at which PNet's 12-pixel window covers faces from ``min_face`` pixels up
    (to ``max_face`` pixels when it is given, else to the image's short side)."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    smallest = 12.0 / max_face if max_face else 0.0
    scales = []
    while side >= 12 and scale >= smallest:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def detect(frames: Sequence[np.ndarray], nets: Any, min_face: float,
           thresholds: Sequence[float], factor: float,
           resize_on_device: bool | None = None,
           max_face: float | None = None) -> list[np.ndarray]:
    """Face boxes ``[n, 5]`` (x1, y1, x2, y2, probability) of each RGB uint8 frame.

    ``frames`` share one size; ``nets`` is a facenet-pytorch ``MTCNN`` (its ``pnet``,
    ``rnet``, ``onet`` and ``device`` are used). ``resize_on_device``: build the pyramid
    with torch on the networks' device (frames uploaded once) instead of OpenCV on the
    CPU; by default on a GPU only, where a 1080p pyramid resized on the CPU and copied
    level by level costs more than PNet itself. ``max_face`` ends the pyramid at faces of
    that many pixels (a search near a known face needs only the levels near its size).
    """
    if not frames:
        return []
    import torch

    if resize_on_device is None:
        resize_on_device = torch.device(nets.device).type != "cpu"
    with torch.inference_mode():
        boxes, owner = _proposals(frames, nets, min_face, thresholds[0], factor,
                                  resize_on_device, max_face)
        return _last_stages(frames, nets, boxes, owner, thresholds)


def confirm(frames: Sequence[np.ndarray], nets: Any, proposals: Sequence[np.ndarray],
            thresholds: Sequence[float]) -> list[np.ndarray]:
    """Boxes ``[n, 5]`` of each frame from MTCNN's second and third stages alone, fed
    ``proposals[i]`` (boxes ``[k, 4+]``, frame ``i``'s pixels) instead of PNet's pyramid.

    Where a face was found a few frames earlier, its box is a proposal as good as PNet's
    and costs two small networks instead of the pyramid; a face that moved away or left
    is simply not confirmed. ``frames`` share one size.
    """
    if not frames:
        return []
    import torch

    boxes = np.concatenate([np.asarray(p, dtype=np.float64)[:, :4] for p in proposals])
    owner = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(proposals)])
    boxes = _square(np.concatenate([boxes, np.ones((len(boxes), 1))], axis=1))
    with torch.inference_mode():
        return _last_stages(frames, nets, boxes, owner, thresholds)


def _last_stages(frames: Sequence[np.ndarray], nets: Any, boxes: np.ndarray, owner: np.ndarray,
                 thresholds: Sequence[float]) -> list[np.ndarray]:
    """RNet then ONet on candidate ``boxes`` (``owner``: each one's frame), per frame."""
    boxes, owner = _refine(frames, nets.rnet, nets.device, boxes, owner, thresholds[1])
    boxes, owner = _output(frames, nets.onet, nets.device, boxes, owner, thresholds[2])
    return [boxes[owner == i].astype(np.float64) for i in range(len(frames))]


def _as_input(images: np.ndarray, device: Any) -> Any:
    """uint8 NHWC images as the networks' normalised float NCHW input, channels-last."""
    import torch

    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    # The NCHW view of NHWC memory is the channels-last layout: no copy is made.
    return (batch.permute(0, 3, 1, 2).float() - 127.5) * 0.0078125


def _nms(boxes: np.ndarray, owner: np.ndarray, iou: float) -> np.ndarray:
    """Indices of ``boxes`` (x1, y1, x2, y2, score, ...) kept by non-maximum suppression
    within each frame, best first."""
    import torch
    from torchvision.ops import batched_nms

    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    with step("suppression"):
        keep = batched_nms(torch.from_numpy(boxes[:, :4]).float(),
                           torch.from_numpy(boxes[:, 4]).float(), torch.from_numpy(owner), iou)
        return keep.numpy()


def _nms_min(boxes: np.ndarray, owner: np.ndarray, overlap: float) -> np.ndarray:
    """Suppression by intersection over the smaller box (MTCNN's last step), per frame."""
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    with step("suppression"):
        for frame in np.unique(owner):
            members = np.flatnonzero(owner == frame)
            order = members[np.argsort(-boxes[members, 4], kind="stable")]
            while len(order):
                best, rest = order[0], order[1:]
                keep.append(int(best))
                w = np.maximum(0.0, np.minimum(boxes[best, 2], boxes[rest, 2])
                               - np.maximum(boxes[best, 0], boxes[rest, 0]) + 1)
                h = np.maximum(0.0, np.minimum(boxes[best, 3], boxes[rest, 3])
                               - np.maximum(boxes[best, 1], boxes[rest, 1]) + 1)
                order = rest[w * h / np.minimum(area[best], area[rest]) <= overlap]
    return np.array(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (the next network's input is square)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply a network's box offsets, which are fractions of the box's pixel extent."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, [0, 2]] += offsets[:, [0, 2]] * w[:, None]
    out[:, [1, 3]] += offsets[:, [1, 3]] * h[:, None]
    return out


def _pyramid(frames: Sequence[np.ndarray], scales: Sequence[float], device: Any,
             on_device: bool) -> Iterator[Any]:
    """Each pyramid level of ``frames`` as PNet's input: resized with OpenCV (area
    interpolation) on the CPU, or with torch's area interpolation on ``device`` from one
    upload of the frames (normalising and area-averaging commute, so either order works).

    On the CPU a level is resized from the smallest level before it that is at least
    PYRAMID_SOURCE times its width, else from the frame: area interpolation reads every
    source pixel, so resizing each of a 1080p frame's ten levels from the frame cost more
    than PNet over all of them (a full-resolution search: 109 ms, 61 ms this way)."""
    import torch.nn.functional as F

    height, width = frames[0].shape[:2]
    with step("pyramid"):
        full = _as_input(np.stack(frames), device) if on_device else None
    made: list[tuple[int, list[np.ndarray]]] = []  # (width, images) of the levels so far
    for scale in scales:
        size = (int(width * scale + 1), int(height * scale + 1))
        with step("pyramid"):
            if full is not None:
                level = F.interpolate(full, size=(size[1], size[0]), mode="area")
            else:
                source = next((images for w, images in reversed(made)
                               if w >= PYRAMID_SOURCE * size[0]), frames)
                images = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in source]
                made.append((size[0], images))
                level = _as_input(np.stack(images), device)
        yield level


def _proposals(frames: Sequence[np.ndarray], nets: Any, min_face: float, threshold: float,
               factor: float, resize_on_device: bool = False, max_face: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Stage one: PNet over the image pyramid, boxes merged across scales and calibrated."""
    height, width = frames[0].shape[:2]
    found: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    scales = pyramid_scales(height, width, min_face, factor, max_face)
    for scale, level in zip(scales, _pyramid(frames, scales, nets.device, resize_on_device)):
        with step("pnet"):
            offsets, probs = nets.pnet(level)
            face = probs[:, 1].float().cpu().numpy()
            frame, row, col = np.nonzero(face >= threshold)
        if not len(frame):
            continue
        corner = np.stack([col, row], axis=1).astype(np.float32)
        boxes = np.concatenate([
            np.floor((_PNET_STRIDE * corner + 1) / scale),
            np.floor((_PNET_STRIDE * corner + _PNET_CELL) / scale),
            face[frame, row, col][:, None],
            offsets.float().cpu().numpy()[frame, :, row, col],
        ], axis=1).astype(np.float64)
        keep = _nms(boxes, frame, 0.5)
        found.append(boxes[keep])
        owners.append(frame[keep])
    if not found:
        return np.empty((0, 5)), np.empty(0, dtype=np.int64)
    boxes, owner = np.concatenate(found), np.concatenate(owners)
    keep = _nms(boxes, owner, 0.7)
    boxes, owner = boxes[keep], owner[keep]
    # PNet's offsets scale with the box's width and height without MTCNN's +1 (as trained).
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    calibrated = boxes[:, :4] + boxes[:, 5:9] * np.concatenate([w, h, w, h], axis=1)
    return _square(np.concatenate([calibrated, boxes[:, 4:5]], axis=1)), owner


def _crops(frames: Sequence[np.ndarray], boxes: np.ndarray, owner: np.ndarray, size: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Each box's pixels, clipped to its frame, resized to ``size``; and which boxes had any."""
    height, width = frames[0].shape[:2]
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    x1 = np.maximum(corners[:, 0], 1) - 1
    y1 = np.maximum(corners[:, 1], 1) - 1
    x2 = np.minimum(corners[:, 2], width)
    y2 = np.minimum(corners[:, 3], height)
    valid = (x2 > x1) & (y2 > y1)
    crops = [area_resize(frames[owner[i]][y1[i]:y2[i], x1[i]:x2[i]], size, size)
             for i in np.flatnonzero(valid)]
    if not crops:
        return np.empty((0, size, size, 3), dtype=np.uint8), valid
    return np.stack(crops), valid


def _run(net: Any, device: Any, crops: np.ndarray) -> list[np.ndarray]:
    """A network's outputs over all crops, in memory-bounded batches, as numpy arrays."""
    parts = [net(_as_input(crops[i:i + _NET_BATCH], device))
             for i in range(0, len(crops), _NET_BATCH)]
    return [np.concatenate([p[k].float().cpu().numpy() for p in parts])
            for k in range(len(parts[0]))]


def _rescore(frames: Sequence[np.ndarray], net: Any, device: Any, boxes: np.ndarray,
             owner: np.ndarray, size: int, threshold: float, name: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates ``net`` (``name``: its step, ``rnet`` or ``onet``) scores above
    ``threshold``, with its score, their frames and its box offsets (the last two networks'
    shared step)."""
    with step("candidate_crops"):
        crops, valid = _crops(frames, boxes, owner, size)
    if not len(crops):
        return np.empty((0, 5)), np.empty(0, dtype=np.int64), np.empty((0, 4))
    boxes, owner = boxes[valid], owner[valid]
    with step(name):
        outputs = _run(net, device, crops)
    offsets, probs = outputs[0], outputs[-1]  # ONet also returns landmarks between them
    passed = probs[:, 1] > threshold
    return (np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1), owner[passed],
            offsets[passed])


def _refine(frames: Sequence[np.ndarray], rnet: Any, device: Any, boxes: np.ndarray,
            owner: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Stage two: RNet rescores each candidate and corrects its box."""
    boxes, owner, offsets = _rescore(frames, rnet, device, boxes, owner, _RNET_SIZE, threshold,
                                     "rnet")
    keep = _nms(boxes, owner, 0.7)
    return _square(_regress(boxes[keep], offsets[keep])), owner[keep]


def _output(frames: Sequence[np.ndarray], onet: Any, device: Any, boxes: np.ndarray,
            owner: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Stage three: ONet's final score and box; overlapping boxes merged per frame."""
    boxes, owner, offsets = _rescore(frames, onet, device, boxes, owner, _ONET_SIZE, threshold,
                                     "onet")
    boxes = _regress(boxes, offsets)
    keep = _nms_min(boxes, owner, 0.7)
    return boxes[keep], owner[keep]
