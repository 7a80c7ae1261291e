"""Box geometry: areas, overlaps, non-maximum suppression and coordinate mapping.

All boxes are ``xyxy`` arrays of shape (N, 4) in pixels, ``x1 <= x2`` and ``y1 <= y2``; a
pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``, so a box around a single pixel has
width 1. Functions accept any float or int dtype, compute in float64 and never loop over
box pairs in Python.
"""

from __future__ import annotations

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections

__all__ = [
    "as_boxes",
    "box_area",
    "iou_matrix",
    "ioa",
    "ios",
    "nms",
    "batched_nms",
    "nms_detections",
    "clip_boxes",
    "scale_boxes",
    "map_boxes_from_block",
    "map_boxes_to_block",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "validate_boxes",
]


def as_boxes(boxes: np.ndarray | list, dtype: type = np.float64) -> np.ndarray:
    """Return ``boxes`` as an (N, 4) array of ``dtype``; an empty input gives shape (0, 4).

    Raises:
        ValueError: the input cannot be read as N rows of 4 numbers.
    """
    arr = np.asarray(boxes, dtype=dtype)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    return arr


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas (N,) of xyxy boxes; boxes with a negative side have area 0."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas (N, M) of two float64 box arrays."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0.0, None) * np.clip(h, 0.0, None)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (degenerate boxes overlap nothing)."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: (N, 4) xyxy boxes.
        b: (M, 4) xyxy boxes.

    Returns:
        float64 array (N, M) in [0, 1]; a pair whose union is empty has IoU 0.
    """
    a = as_boxes(a)
    b = as_boxes(b)
    inter = _intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.clip(_safe_divide(inter, union), 0.0, 1.0)


def ioa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the area of the first box: how much of ``a[i]`` lies inside ``b[j]``.

    Used for ignore regions (a detection mostly inside an ignore box is dropped).

    Returns:
        float64 array (N, M) in [0, 1]; 0 where ``a[i]`` has zero area.
    """
    a = as_boxes(a)
    b = as_boxes(b)
    inter = _intersection(a, b)
    return np.clip(_safe_divide(inter, box_area(a)[:, None]), 0.0, 1.0)


def ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller of the two areas (the IOS metric of sliced inference).

    Returns:
        float64 array (N, M) in [0, 1]; 0 where the smaller box has zero area.
    """
    a = as_boxes(a)
    b = as_boxes(b)
    inter = _intersection(a, b)
    smaller = np.minimum(box_area(a)[:, None], box_area(b)[None, :])
    return np.clip(_safe_divide(inter, smaller), 0.0, 1.0)


def _iou_one_to_many(box: np.ndarray, others: np.ndarray, areas_others: np.ndarray) -> np.ndarray:
    """IoU of one float64 box against (K, 4) boxes with precomputed areas."""
    w = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    h = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.clip(w, 0.0, None) * np.clip(h, 0.0, None)
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    return _safe_divide(inter, area + areas_others - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: lower index first); a box is kept unless its
    IoU with an already kept box is strictly greater than ``iou_threshold``. Each step compares
    the kept box with all remaining candidates at once.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        iou_threshold: suppression threshold in [0, 1].

    Returns:
        int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"nms: {len(b)} boxes but {len(s)} scores")
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-s, kind="stable")
    areas = box_area(b)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        overlap = _iou_one_to_many(b[i], b[rest], areas[rest])
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Runs :func:`nms` once per class present (the loop is over classes, not box pairs) and
    merges the results, which avoids the rounding that a coordinate offset per class brings.

    Returns:
        int64 indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(classes).reshape(-1)
    if not (len(b) == len(s) == len(c)):
        raise ValueError(f"batched_nms: {len(b)} boxes, {len(s)} scores, {len(c)} classes")
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    kept = []
    for cls in np.unique(c):
        idx = np.flatnonzero(c == cls)
        kept.append(idx[nms(b[idx], s[idx], iou_threshold)])
    keep = np.concatenate(kept)
    # Order like single-class NMS: by score, then by original index.
    order = np.lexsort((keep, -s[keep]))
    return keep[order].astype(np.int64)


def nms_detections(det: Detections, iou_threshold: float, class_aware: bool = True) -> Detections:
    """Apply (class-aware by default) NMS to a :class:`Detections`, sorted by score."""
    if class_aware:
        keep = batched_nms(det.boxes, det.scores, det.classes, iou_threshold)
    else:
        keep = nms(det.boxes, det.scores, iou_threshold)
    return det.select(keep)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip xyxy boxes to the image ``[0, width] x [0, height]`` (float32 copy)."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, float(width))
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, float(height))
    return b.astype(np.float32)


def scale_boxes(boxes: np.ndarray, sx: float, sy: float | None = None) -> np.ndarray:
    """Multiply x coordinates by ``sx`` and y coordinates by ``sy`` (default ``sx``); float32."""
    sy = sx if sy is None else sy
    b = as_boxes(boxes) * np.array([sx, sy, sx, sy], dtype=np.float64)
    return b.astype(np.float32)


def _block_affine(
    block_xyxy: np.ndarray | tuple[float, float, float, float], resized_wh: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and offset (each [x, y, x, y]) taking resized-block pixels to frame pixels."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(block_xyxy, dtype=np.float64).reshape(4))
    rw, rh = (float(v) for v in resized_wh)
    bw, bh = x2 - x1, y2 - y1
    if bw <= 0 or bh <= 0:
        raise ValueError(f"block {(x1, y1, x2, y2)} has no area")
    if rw <= 0 or rh <= 0:
        raise ValueError(f"resized size {(rw, rh)} must be positive")
    scale = np.array([bw / rw, bh / rh, bw / rw, bh / rh])
    offset = np.array([x1, y1, x1, y1])
    return scale, offset


def map_boxes_from_block(
    boxes: np.ndarray,
    block_xyxy: np.ndarray | tuple[float, float, float, float],
    resized_wh: tuple[float, float],
) -> np.ndarray:
    """Map boxes predicted on a resized block back to frame pixels.

    A block ``block_xyxy`` of the frame was cropped and resized to ``resized_wh = (w, h)``
    before detection; a point ``(u, v)`` of the resized block is the frame point
    ``(x1 + u * bw / w, y1 + v * bh / h)`` with ``bw, bh`` the block size.

    Args:
        boxes: (N, 4) xyxy boxes in resized-block pixels.
        block_xyxy: the block in frame pixels.
        resized_wh: the size the block was resized to before detection.

    Returns:
        float32 (N, 4) boxes in frame pixels.
    """
    scale, offset = _block_affine(block_xyxy, resized_wh)
    return (as_boxes(boxes) * scale + offset).astype(np.float32)


def map_boxes_to_block(
    boxes: np.ndarray,
    block_xyxy: np.ndarray | tuple[float, float, float, float],
    resized_wh: tuple[float, float],
) -> np.ndarray:
    """Inverse of :func:`map_boxes_from_block`: frame pixels to resized-block pixels (float32)."""
    scale, offset = _block_affine(block_xyxy, resized_wh)
    return ((as_boxes(boxes) - offset) / scale).astype(np.float32)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes to ``[x1, y1, x2, y2]`` (float32)."""
    b = as_boxes(boxes).copy()
    b[:, 2:] += b[:, :2]
    return b.astype(np.float32)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` boxes to COCO ``[x, y, w, h]`` (float32)."""
    b = as_boxes(boxes).copy()
    b[:, 2:] -= b[:, :2]
    return b.astype(np.float32)


def validate_boxes(
    boxes: np.ndarray, width: float, height: float, source: str, tolerance_px: float = 0.0
) -> np.ndarray:
    """Check boxes against an image and return them as float32 (N, 4).

    Args:
        boxes: (N, 4) xyxy boxes.
        width: image width in pixels.
        height: image height in pixels.
        source: what the boxes came from (a file, a detector); named in the error message.
        tolerance_px: how far a box may reach outside the image before it is refused.

    Raises:
        InputError: wrong shape, a NaN or infinite coordinate, a negative width or height, or a
            box reaching outside ``[0, width] x [0, height]`` by more than ``tolerance_px``.
            The message names ``source``, the box index and its value.
    """
    try:
        b = as_boxes(boxes)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: boxes: {exc}") from None
    if len(b) == 0:
        return b.astype(np.float32)
    bad = ~np.isfinite(b).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{source}: box {i} = {b[i].tolist()} has a NaN or infinite coordinate")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: box {i} = {b[i].tolist()} has a negative size (expected x1 <= x2, y1 <= y2)"
        )
    t = float(tolerance_px)
    bad = (
        (b[:, 0] < -t)
        | (b[:, 1] < -t)
        | (b[:, 2] > float(width) + t)
        | (b[:, 3] > float(height) + t)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: box {i} = {b[i].tolist()} lies outside the {width}x{height} image"
        )
    return b.astype(np.float32)
