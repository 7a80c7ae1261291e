"""COCO detection metrics (AP, AR) through pycocotools, with ignore regions.

Ground truth and predictions are plain arrays per image; they are turned into in-memory COCO
datasets and scored by ``pycocotools.cocoeval.COCOeval`` (``iouType="bbox"``), so the numbers
are the standard COCO ones: AP averaged over IoU 0.50:0.05:0.95 and over the 101 recall points
0:0.01:1 of the interpolated precision-recall curve, then over categories.

Ignore regions are passed to COCOeval as ``iscrowd=1`` ground-truth boxes. COCOeval matches a
detection to a crowd box by intersection over the *detection's* area (IoA), only when no regular
box matches it, and lets one crowd box absorb any number of detections; a detection so matched
is neither a true nor a false positive. Ground truth inside an ignore region still counts.

Entries that COCOeval marks -1 (no ground truth in that category / area range) are left out of
every mean; a metric with no entry left is reported as NaN (e.g. ``map_small`` on data with no
small objects).

COCOeval's cost grows with images x categories and it keeps at most ``max_dets[-1]``
detections per image and category: raise ``max_dets`` (e.g. to 1000) for crowded high-resolution
scenes, where 100 would silently cut recall.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections

#: COCO category ids of the 80 contiguous YOLO class ids (index = class id), for results files
#: that the official COCO annotations (ids 1..90 with gaps) can score.
COCO_CATEGORY_IDS: list[int] = (
    list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) + list(range(46, 66))
    + [67, 70] + list(range(72, 83)) + list(range(84, 91))
)  # fmt: skip

#: Metric keys always present in :func:`evaluate_detections`'s result (AR keys depend on
#: ``max_dets``: ``ar_{m}`` for each m, plus ``ar_small``/``ar_medium``/``ar_large``).
AP_KEYS: tuple[str, ...] = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")


def _boxes(a: np.ndarray | Sequence, what: str) -> np.ndarray:
    b = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    if not np.all(np.isfinite(b)):
        raise InputError(f"GroundTruth.{what} holds non-finite values")
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise InputError(f"GroundTruth.{what} must be xyxy with x2 >= x1 and y2 >= y1")
    return b


@dataclass(frozen=True)
class GroundTruth:
    """Annotations of one image.

    Attributes:
        boxes: float32 array (N, 4), xyxy in image pixels.
        classes: int64 array (N,), class ids (the same ids the predictions use, after
            ``class_map``).
        width: Image width in pixels.
        height: Image height in pixels.
        ignore: float32 array (M, 4), xyxy regions where detections are neither right nor wrong
            (crowds, unlabelled areas).
        ignore_classes: int64 array (M,) giving the class each region ignores, or None for regions
            that ignore detections of every class.
    """

    boxes: np.ndarray
    classes: np.ndarray
    width: int
    height: int
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_classes: np.ndarray | None = None

    def __post_init__(self) -> None:
        b = _boxes(self.boxes, "boxes")
        c = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if len(b) != len(c):
            raise InputError(f"GroundTruth: {len(b)} boxes but {len(c)} classes")
        ig = _boxes(self.ignore, "ignore")
        ic = None
        if self.ignore_classes is not None:
            ic = np.asarray(self.ignore_classes, dtype=np.int64).reshape(-1)
            if len(ic) != len(ig):
                raise InputError(
                    f"GroundTruth: {len(ig)} ignore regions but {len(ic)} ignore_classes"
                )
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise InputError(
                f"GroundTruth: width and height must be positive, got {self.width}x{self.height}"
            )
        object.__setattr__(self, "boxes", b)
        object.__setattr__(self, "classes", c)
        object.__setattr__(self, "ignore", ig)
        object.__setattr__(self, "ignore_classes", ic)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @classmethod
    def from_coco(
        cls,
        annotations: Sequence[Mapping],
        width: int,
        height: int,
        category_to_class: Mapping[int, int] | None = None,
    ) -> GroundTruth:
        """Build from one image's COCO annotation dicts (``bbox`` xywh, ``category_id``).

        Annotations with ``iscrowd`` or ``ignore`` set become ignore regions of their class.

        Args:
            annotations: The image's annotations.
            width: Image width.
            height: Image height.
            category_to_class: Category id -> class id; annotations of other categories are
                dropped. None keeps category ids as class ids.

        Returns:
            The ground truth.
        """
        boxes, classes, ign, ign_cls = [], [], [], []
        for ann in annotations:
            cat = int(ann["category_id"])
            if category_to_class is not None:
                if cat not in category_to_class:
                    continue
                cat = int(category_to_class[cat])
            x, y, w, h = (float(v) for v in ann["bbox"])
            if ann.get("iscrowd", 0) or ann.get("ignore", 0):
                ign.append((x, y, x + w, y + h))
                ign_cls.append(cat)
            else:
                boxes.append((x, y, x + w, y + h))
                classes.append(cat)
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int64),
            width,
            height,
            np.asarray(ign, np.float32).reshape(-1, 4),
            np.asarray(ign_cls, np.int64),
        )


def _xywh(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _map_classes(
    d: Detections, class_map: Mapping[int, int] | None
) -> tuple[Detections, np.ndarray]:
    if class_map is None:
        return d, d.classes
    keys = np.fromiter((int(k) for k in class_map), dtype=np.int64)
    vals = np.fromiter((int(class_map[k]) for k in class_map), dtype=np.int64)
    keep = np.isin(d.classes, keys)
    d = d.select(keep)
    lookup = dict(zip(keys.tolist(), vals.tolist()))
    return d, np.asarray([lookup[int(c)] for c in d.classes], dtype=np.int64)


def _nan_metrics(max_dets: Sequence[int]) -> dict[str, float]:
    keys = list(AP_KEYS) + [f"ar_{m}" for m in max_dets] + ["ar_small", "ar_medium", "ar_large"]
    return {k: math.nan for k in keys}


def _mean_valid(a: np.ndarray) -> float:
    v = a[a > -1]
    return float(v.mean()) if v.size else math.nan


def evaluate_detections(
    gts: Sequence[GroundTruth],
    preds: Sequence[Detections],
    class_map: Mapping[int, int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
) -> dict[str, float]:
    """COCO box AP/AR of predictions against ground truth.

    Args:
        gts: Ground truth, one per image.
        preds: Predictions, one per image, in the same order, boxes in the same pixels.
        class_map: Prediction class id -> ground-truth class id (e.g. ``{0: 0}`` to score only
            a COCO detector's persons against person-only labels); predictions of classes not in
            the map are dropped. None keeps prediction classes as they are.
        max_dets: Detection caps per image and category; AP uses the largest. Raise it (e.g.
            ``(1, 10, 100, 1000)``) for crowded scenes.

    Returns:
        Flat dict: ``map50_95``, ``map50``, ``map75``, ``map_small``, ``map_medium``,
        ``map_large`` (all at ``max_dets[-1]``), ``ar_{m}`` for each m in ``max_dets``, and
        ``ar_small``, ``ar_medium``, ``ar_large`` (at ``max_dets[-1]``). Values lie in [0, 1];
        NaN where no ground truth falls in that bucket. Areas are box areas in pixels^2 with the
        COCO limits 32^2 and 96^2.

    Raises:
        InputError: ``gts`` and ``preds`` differ in length or ``max_dets`` is invalid.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(gts) != len(preds):
        raise InputError(
            f"evaluate_detections: {len(gts)} ground-truth images but {len(preds)} predictions"
        )
    dets_sorted = sorted({int(m) for m in max_dets})
    if not dets_sorted or dets_sorted[0] < 1:
        raise InputError(f"max_dets must hold positive ints, got {tuple(max_dets)}")

    images, gt_anns, dt_anns = [], [], []
    mapped = [_map_classes(d, class_map) for d in preds]
    cats = set()
    for g in gts:
        cats.update(g.classes.tolist())
        if g.ignore_classes is not None:
            cats.update(g.ignore_classes.tolist())
    for _, c in mapped:
        cats.update(c.tolist())
    if not gts or not cats:
        return _nan_metrics(dets_sorted)
    cat_ids = sorted(cats)

    def add_gt(img_id: int, box: np.ndarray, cat: int, crowd: int) -> None:
        x, y, w, h = (float(v) for v in _xywh(box[None])[0])
        gt_anns.append({
            "id": len(gt_anns) + 1,  # COCOeval treats id 0 as "unmatched"
            "image_id": img_id, "category_id": int(cat), "bbox": [x, y, w, h],
            "area": w * h, "iscrowd": crowd, "ignore": crowd,
        })  # fmt: skip

    for i, (g, (d, dcls)) in enumerate(zip(gts, mapped)):
        img_id = i + 1
        images.append({"id": img_id, "width": g.width, "height": g.height})
        for box, cat in zip(g.boxes, g.classes):
            add_gt(img_id, box, int(cat), 0)
        for k, box in enumerate(g.ignore):
            region_cats = cat_ids if g.ignore_classes is None else [int(g.ignore_classes[k])]
            for cat in region_cats:
                add_gt(img_id, box, cat, 1)
        for box, score, cat in zip(_xywh(d.boxes), d.scores, dcls):
            w, h = float(box[2]), float(box[3])
            dt_anns.append({
                "id": len(dt_anns) + 1, "image_id": img_id, "category_id": int(cat),
                "bbox": [float(box[0]), float(box[1]), w, h], "score": float(score),
                "area": w * h, "iscrowd": 0,
            })  # fmt: skip

    categories = [{"id": c, "name": str(c)} for c in cat_ids]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = [im["id"] for im in images]
        ev.params.catIds = cat_ids
        ev.params.maxDets = dets_sorted
        ev.evaluate()
        ev.accumulate()

    # precision: [T iou, R recall points, K categories, A area ranges, M max-dets]
    prec = ev.eval["precision"]
    rec = ev.eval["recall"]  # [T, K, A, M]
    iou = ev.params.iouThrs
    t50 = int(np.argmin(np.abs(iou - 0.5)))
    t75 = int(np.argmin(np.abs(iou - 0.75)))
    out = {
        "map50_95": _mean_valid(prec[:, :, :, 0, -1]),
        "map50": _mean_valid(prec[t50, :, :, 0, -1]),
        "map75": _mean_valid(prec[t75, :, :, 0, -1]),
        "map_small": _mean_valid(prec[:, :, :, 1, -1]),
        "map_medium": _mean_valid(prec[:, :, :, 2, -1]),
        "map_large": _mean_valid(prec[:, :, :, 3, -1]),
    }
    for m_idx, m in enumerate(dets_sorted):
        out[f"ar_{m}"] = _mean_valid(rec[:, :, 0, m_idx])
    out["ar_small"] = _mean_valid(rec[:, :, 1, -1])
    out["ar_medium"] = _mean_valid(rec[:, :, 2, -1])
    out["ar_large"] = _mean_valid(rec[:, :, 3, -1])
    return out


def coco_results_json(
    preds: Sequence[Detections],
    image_ids: Sequence[int | str],
    category_id_map: Mapping[int, int] | Sequence[int] | None = None,
) -> list[dict]:
    """Predictions as a COCO results list (what ``COCO.loadRes`` reads).

    Args:
        preds: Predictions, one per image.
        image_ids: The COCO ``image_id`` of each image (a file name is allowed where the
            consumer keys images by name).
        category_id_map: Class id -> category id, as a mapping or a sequence indexed by class id
            (e.g. :data:`COCO_CATEGORY_IDS` for COCO-80 detectors); detections of unmapped
            classes are dropped. None writes class ids as category ids.

    Returns:
        One dict per detection: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` in
        pixels, ``score``; in image order, each image's detections in their given order.

    Raises:
        InputError: ``preds`` and ``image_ids`` differ in length.
    """
    if len(preds) != len(image_ids):
        raise InputError(
            f"coco_results_json: {len(preds)} predictions but {len(image_ids)} image ids"
        )
    if category_id_map is None:
        lookup = None
    elif isinstance(category_id_map, Mapping):
        lookup = {int(k): int(v) for k, v in category_id_map.items()}
    else:
        lookup = {i: int(v) for i, v in enumerate(category_id_map)}
    results: list[dict] = []
    for d, img_id in zip(preds, image_ids):
        img = img_id if isinstance(img_id, str) else int(img_id)
        for box, score, cls in zip(_xywh(d.boxes), d.scores, d.classes):
            cls = int(cls)
            if lookup is not None and cls not in lookup:
                continue
            results.append({
                "image_id": img,
                "category_id": cls if lookup is None else lookup[cls],
                "bbox": [round(float(v), 3) for v in box],
                "score": round(float(score), 5),
            })  # fmt: skip
    return results
