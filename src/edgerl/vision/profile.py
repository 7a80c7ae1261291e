"""Detector profiles: latency per (model, input size) and accuracy by resized object area.

These feed the RE-POSE planner (paper 000, eqs. (17)-(22)): ``d_j`` is the latency of
option j (a model at an input size) and ``p_j(a)`` the detection accuracy of model j for an
object whose area after resizing the block to the network input is ``a`` pixels.

Accuracy by area is measured, not assumed: every model runs on tiles of validation frames
at several tile sizes (so the same objects appear at several resized areas); detections
are matched greedily to ground truth at IoU 0.5 (detections falling in ignore regions are
dropped); per log2-area bin we record recall (matched objects / objects, binned by the
object's resized area) and precision (matched detections / detections, binned by the
detection's resized area). Recall is also recorded at the COCO IoU thresholds 0.50:0.05:0.95;
its mean over thresholds (``kind="recall_coco"``) rewards tight boxes as AP[.5:.95] does,
which recall at IoU 0.5 alone cannot. Bins are pooled over input sizes, because p_j depends
on the model and the resized area only.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.utils.io import read_json, write_json
from edgerl.vision.detections import Detections

#: IoU thresholds of COCO's AP[.5:.95], used for the ``recall_coco`` accuracy kind.
COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

#: Accuracy kinds :meth:`AreaAccuracy.value` understands.
ACCURACY_KINDS: tuple[str, ...] = ("recall", "precision", "recall_coco")

#: Default log2-area bin edges of resized object area (px^2): 2^4 .. 2^18 (4x4 .. 512x512 px).
DEFAULT_LOG2_AREA_EDGES: tuple[float, ...] = tuple(float(v) for v in range(4, 19))


def machine_info() -> dict[str, Any]:
    """Where a profile was measured."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _ioa(dets: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Fraction of each detection's area inside each region."""
    lt = np.maximum(dets[:, None, :2], regions[None, :, :2])
    rb = np.minimum(dets[:, None, 2:], regions[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / np.maximum((dets[:, 2:] - dets[:, :2]).prod(-1)[:, None], 1e-9)


def _greedy_match(iou: np.ndarray, order: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching on an (N, G) IoU matrix, detections taken in ``order``: (det_tp, gt_matched)."""
    n, g = iou.shape
    tp = np.zeros(n, bool)
    matched = np.zeros(g, bool)
    if n and g:
        for i in order:
            cand = np.where(~matched, iou[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                matched[j] = True
                tp[i] = True
    return tp, matched


def match_at_iou(
    det: Detections, gt_boxes: np.ndarray, ignore: np.ndarray | None = None, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy score-ordered matching of detections to ground truth.

    Returns:
        (det_tp (N,) bool, det_keep (N,) bool — False for detections inside an ignore region
        and unmatched —, gt_matched (G,) bool).
    """
    n = len(det)
    iou = _iou(det.boxes, gt_boxes) if n and len(gt_boxes) else np.zeros((n, len(gt_boxes)))
    tp, matched = _greedy_match(iou, np.argsort(-det.scores, kind="stable"), iou_threshold)
    keep = np.ones(n, bool)
    if n and ignore is not None and len(ignore):
        inside = _ioa(det.boxes, ignore).max(axis=1) >= 0.5
        keep &= tp | ~inside
    return tp, keep, matched


def gt_matched_at(det: Detections, gt_boxes: np.ndarray, iou_thresholds: Sequence[float]) -> np.ndarray:
    """(T, G) bool: ground truth matched by :func:`match_at_iou` at each threshold (one IoU matrix)."""
    n = len(det)
    iou = _iou(det.boxes, gt_boxes) if n and len(gt_boxes) else np.zeros((n, len(gt_boxes)))
    order = np.argsort(-det.scores, kind="stable")
    return np.stack([_greedy_match(iou, order, float(t))[1] for t in iou_thresholds]).reshape(len(iou_thresholds), -1)


@dataclass
class AreaAccuracy:
    """Recall and precision of one model per log2 resized-area bin (pooled over sizes).

    ``gt_matched_iou[t][b]`` counts the objects of bin b matched at ``iou_thresholds[t]``
    (absent in profiles made before it was recorded; ``recall_coco`` then needs a new profile).
    """

    log2_edges: list[float]
    gt_count: list[int]
    gt_matched: list[int]
    det_count: list[int]
    det_tp: list[int]
    iou_thresholds: list[float] | None = None
    gt_matched_iou: list[list[int]] | None = None

    @property
    def recall(self) -> np.ndarray:
        g = np.asarray(self.gt_count, float)
        return np.divide(np.asarray(self.gt_matched, float), g, out=np.full_like(g, np.nan), where=g > 0)

    @property
    def precision(self) -> np.ndarray:
        d = np.asarray(self.det_count, float)
        return np.divide(np.asarray(self.det_tp, float), d, out=np.full_like(d, np.nan), where=d > 0)

    @property
    def recall_coco(self) -> np.ndarray:
        """Recall averaged over the IoU thresholds, per bin."""
        if not self.gt_matched_iou:
            raise InputError(
                "accuracy kind recall_coco: this profile has no recall per IoU threshold "
                "(make a new one with 'edgerl profile detector', or use recall or precision)"
            )
        g = np.asarray(self.gt_count, float)
        m = np.asarray(self.gt_matched_iou, float).mean(axis=0)
        return np.divide(m, g, out=np.full_like(g, np.nan), where=g > 0)

    def value(self, resized_area: np.ndarray, kind: str = "recall") -> np.ndarray:
        """Accuracy at resized areas (px^2), interpolated linearly on log2 area between bin centres.

        Empty bins are filled from their neighbours; below the first bin the value tends to 0.
        """
        if kind not in ACCURACY_KINDS:
            raise InputError(f"accuracy kind: {kind!r} is not one of {', '.join(ACCURACY_KINDS)}")
        vals = getattr(self, kind)
        edges = np.asarray(self.log2_edges, float)
        centres = 0.5 * (edges[:-1] + edges[1:])
        ok = np.isfinite(vals)
        if not ok.any():
            return np.zeros_like(np.asarray(resized_area, float))
        x = np.log2(np.maximum(np.asarray(resized_area, float), 1.0))
        xs = np.concatenate([[edges[0] - 1.0], centres[ok]])
        ys = np.concatenate([[0.0], vals[ok]])
        return np.interp(x, xs, ys)


@dataclass
class DetectorProfile:
    """Profiles of several models: latency per input size and accuracy by resized area."""

    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: dict[str, AreaAccuracy] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine_info)
    settings: dict[str, Any] = field(default_factory=dict)

    def options(self) -> list[tuple[str, int]]:
        """Every (model, input size) with a latency, sorted by latency."""
        opts = [(m, int(s)) for m, d in self.latency_ms.items() for s in d]
        return sorted(opts, key=lambda o: self.latency_ms[o[0]][str(o[1])])

    def latency(self, model: str, size: int) -> float:
        try:
            return float(self.latency_ms[model][str(int(size))])
        except KeyError:
            raise InputError(
                f"detector profile has no latency for {model} at {size}; profiled: {self.options()}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "latency_ms": self.latency_ms,
            "accuracy": {m: vars(a) for m, a in self.accuracy.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "profile") -> DetectorProfile:
        try:
            return cls(
                latency_ms={m: {str(s): float(v) for s, v in d.items()} for m, d in data["latency_ms"].items()},
                accuracy={m: AreaAccuracy(**a) for m, a in data.get("accuracy", {}).items()},
                machine=dict(data.get("machine", {})),
                settings=dict(data.get("settings", {})),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{source}: not a detector profile ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DetectorProfile:
        return cls.from_dict(read_json(path), str(path))


def measure_latency_ms(detector: Any, size: int, n_warmup: int = 2, n_runs: int = 10, seed: int = 0) -> float:
    """Median wall time (ms) of ``detector.detect`` on one size x size image, after warm-up."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    for _ in range(n_warmup):
        detector.detect([img])
    times = []
    for _ in range(n_runs):
        t0 = time.perf_counter()
        detector.detect([img])
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


@dataclass(frozen=True)
class ValImage:
    """A validation image with its ground truth (xyxy person boxes and ignore regions)."""

    image: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray


def tiles(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping tiles of side ``tile`` (the last row/column aligned to the border)."""
    xs = list(range(0, max(width - tile, 0) + 1, tile))
    ys = list(range(0, max(height - tile, 0) + 1, tile))
    if xs[-1] + tile < width:
        xs.append(width - tile)
    if ys[-1] + tile < height:
        ys.append(height - tile)
    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in ys for x in xs]


def _crop_gt(boxes: np.ndarray, t: tuple[int, int, int, int], min_inside: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """GT boxes of a tile (clipped, tile coords) and those cut too much (to ignore)."""
    x0, y0, x1, y1 = t
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)
    clipped = np.stack(
        [np.clip(boxes[:, 0], x0, x1), np.clip(boxes[:, 1], y0, y1), np.clip(boxes[:, 2], x0, x1), np.clip(boxes[:, 3], y0, y1)],
        axis=1,
    )
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    carea = np.clip(clipped[:, 2:] - clipped[:, :2], 0, None).prod(1)
    frac = carea / np.maximum(area, 1e-9)
    off = np.array([x0, y0, x0, y0], np.float32)
    keep = frac >= min_inside
    partial = (frac > 0) & ~keep
    return (clipped[keep] - off).astype(np.float32), (clipped[partial] - off).astype(np.float32)


def profile_accuracy(
    detector_for_size: Callable[[int], Any],
    sizes: Sequence[int],
    images: Sequence[ValImage],
    tile_scales: Sequence[float] = (1.0, 2.0, 4.0),
    log2_edges: Sequence[float] = DEFAULT_LOG2_AREA_EDGES,
    iou_threshold: float = 0.5,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
) -> AreaAccuracy:
    """Recall/precision by resized area for one model, pooled over input sizes and tile sizes.

    Args:
        detector_for_size: returns the model's detector at a given input size.
        sizes: input sizes (long side) to run at.
        images: validation images.
        tile_scales: tile side = input size x scale, so objects are seen downscaled by 1/scale.
        log2_edges: bin edges on log2(resized area).
        iou_threshold: matching threshold of recall and precision.
        iou_thresholds: thresholds of the per-threshold recall (``recall_coco``).
    """
    edges = np.asarray(log2_edges, float)
    nb = len(edges) - 1
    gt_count = np.zeros(nb, int)
    gt_matched = np.zeros(nb, int)
    det_count = np.zeros(nb, int)
    det_tp = np.zeros(nb, int)
    matched_iou = np.zeros((len(iou_thresholds), nb), int)

    def _bin(areas: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, np.log2(np.maximum(areas, 1.0)), side="right") - 1, -1, nb)

    for size in sizes:
        det = detector_for_size(int(size))
        for vi in images:
            h, w = vi.image.shape[:2]
            for sc in tile_scales:
                side = int(round(size * sc))
                if side > max(w, h):
                    continue
                for t in tiles(w, h, side):
                    crop = vi.image[t[1] : t[3], t[0] : t[2]]
                    gtb, part = _crop_gt(vi.boxes, t)
                    ign_local = np.concatenate([_crop_gt(vi.ignore, t, 0.0)[0], part]) if len(vi.ignore) else part
                    out = det.detect([crop])[0]
                    tp, keep, matched = match_at_iou(out, gtb, ign_local, iou_threshold)
                    f = (size / max(crop.shape[0], crop.shape[1])) ** 2  # pixel area scale
                    gb = _bin((gtb[:, 2:] - gtb[:, :2]).prod(1) * f) if len(gtb) else np.zeros(0, int)
                    db = _bin((out.boxes[:, 2:] - out.boxes[:, :2]).prod(1) * f) if len(out) else np.zeros(0, int)
                    ok_g = (gb >= 0) & (gb < nb)
                    np.add.at(gt_count, gb[ok_g], 1)
                    np.add.at(gt_matched, gb[ok_g & matched], 1)
                    for ti, m_t in enumerate(gt_matched_at(out, gtb, iou_thresholds)):
                        np.add.at(matched_iou[ti], gb[ok_g & m_t], 1)
                    ok_d = (db >= 0) & (db < nb) & keep
                    np.add.at(det_count, db[ok_d], 1)
                    np.add.at(det_tp, db[ok_d & tp], 1)
    return AreaAccuracy(
        log2_edges=[float(e) for e in edges],
        gt_count=gt_count.tolist(),
        gt_matched=gt_matched.tolist(),
        det_count=det_count.tolist(),
        det_tp=det_tp.tolist(),
        iou_thresholds=[float(t) for t in iou_thresholds],
        gt_matched_iou=matched_iou.tolist(),
    )
