"""Baselines RE-POSE is compared with (paper 000, Sec. IV): SAHI sliced inference and REMIX.

* :class:`SahiSliced` runs SAHI's own ``get_sliced_prediction`` (PyPI ``sahi``) with a small
  adapter that hands each slice to our detectors. SAHI processes the slices one after another
  in the caller's process, so its latency grows as (number of slices) x (one detector call);
  that is the behaviour measured here (``batch_size > 1`` is offered as an extension that sends
  a batch of slices to the executor's workers at once).
* :class:`RemixPlanner` re-implements the planning idea of REMIX (MobiCom'21): the object
  distribution of the previous frames (its own detections) is histogrammed over a coarse grid
  and object-size bins, candidate partitions of the frame are scored with the detector
  profile's accuracy-by-resized-area, each partition gets a model per block by the MCKP
  (:func:`~edgerl.repose.mckp.solve_mckp`) under the latency budget, and the partition with the
  best estimated accuracy is run.

Both are callables ``frame -> FrameResult`` like the methods of :mod:`edgerl.repose.pipeline`.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerl.repose.mckp import Plan, lpt_assign, solve_mckp, solve_parallel
from edgerl.repose.pipeline import (
    FrameResult,
    ReposeConfig,
    _Base,
    nms_merge,
    parse_option,
    resized_area_factor,
    run_blocks,
)
from edgerl.runtime.base import DetectTask, Executor
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.profile import DetectorProfile

__all__ = [
    "RemixCandidate",
    "RemixPlan",
    "RemixPlanner",
    "SAHI_POSTPROCESS_TYPES",
    "SahiSliced",
    "grid_edges",
    "object_histogram",
    "sahi_detection_model",
    "sahi_slices",
]

_SAHI_HINT = "the sahi baseline needs the 'sahi' package: pip install 'edgerl[bench]'"

#: Postprocess types and match metrics accepted by ``sahi.predict.get_sliced_prediction``.
SAHI_POSTPROCESS_TYPES: tuple[str, ...] = ("NMS", "NMM", "GREEDYNMM", "LSNMS")
SAHI_MATCH_METRICS: tuple[str, ...] = ("IOU", "IOS")

Infer = Callable[[list[np.ndarray]], Sequence[Detections]]


# --------------------------------------------------------------------------- SAHI


def _import_sahi() -> Any:
    try:
        import sahi.predict
        import sahi.slicing
    except ImportError:
        raise InputError(_SAHI_HINT) from None
    return sahi


def sahi_slices(frame_wh: tuple[int, int], slice_px: int, overlap: float = 0.2) -> np.ndarray:
    """SAHI's slice grid for a frame (``sahi.slicing.get_slice_bboxes``), as an array.

    SAHI steps ``slice_px - int(overlap * slice_px)`` pixels and shifts the last slice of a row
    or column back inside the frame, so every slice keeps the full ``slice_px`` side (unless the
    frame is smaller) and the border slices overlap more than the others. Compare
    :func:`~edgerl.repose.blocks.uniform_blocks`, which spreads equal blocks evenly.

    Args:
        frame_wh: frame (width, height) in pixels.
        slice_px: slice side in pixels (> 0).
        overlap: overlap ratio of adjacent slices, ``0 <= overlap < 1``.

    Returns:
        (K, 4) int64 xyxy slices in SAHI's order (row by row, left to right).
    """
    w, h = _frame_wh(frame_wh)
    if int(slice_px) <= 0:
        raise InputError(f"slice_px must be a positive number of pixels, got {slice_px!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise InputError(f"overlap must be in [0, 1), got {overlap!r}")
    _import_sahi()
    from sahi.slicing import get_slice_bboxes

    boxes = get_slice_bboxes(
        h, w, int(slice_px), int(slice_px), False, float(overlap), float(overlap)
    )
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


@functools.lru_cache(maxsize=1)
def _adapter_class() -> type:
    """The SAHI model adapter, defined on first use so that ``sahi`` stays an optional import."""
    _import_sahi()
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class EdgerlDetectionModel(DetectionModel):
        """SAHI ``DetectionModel`` running an ``images -> list[Detections]`` callable."""

        def __init__(
            self, infer: Infer, class_names: Sequence[str], confidence_threshold: float
        ) -> None:
            self._class_names = [str(n) for n in class_names]
            super().__init__(
                model=infer,
                confidence_threshold=float(confidence_threshold),
                category_mapping={str(i): n for i, n in enumerate(self._class_names)},
                load_at_init=True,
            )

        def set_device(self, device: str | None = None) -> None:
            # Our detectors pick their own backend; skip SAHI's torch device probing.
            self.device = "cpu"

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model

        def load_model(self) -> None:
            if self.model is None:
                raise InputError("the SAHI adapter needs an inference callable; none was given")

        @property
        def num_categories(self) -> int:
            return len(self._class_names)

        @property
        def category_names(self) -> list[str]:
            return list(self._class_names)

        @property
        def has_mask(self) -> bool:
            return False

        def perform_inference(self, image: np.ndarray) -> None:
            self.perform_batch_inference([image])

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            # Runs at once (no deferred per-image path of the base class), so a batch of slices
            # reaches the inference callable in one call.
            imgs = [np.ascontiguousarray(im) for im in images]
            self._original_predictions = list(self.model(imgs))
            self._original_shapes = [im.shape for im in imgs]

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = None,
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            preds = self._original_predictions or []
            shifts = _nested(shift_amount_list, len(preds), [0, 0])
            shapes = _nested(full_shape_list, len(preds), None)
            per_image: list[list[Any]] = []
            for det, shift, full, shape in zip(preds, shifts, shapes, self._original_shapes or []):
                h, w = int(shape[0]), int(shape[1])
                keep = det.scores >= self.confidence_threshold  # SAHI: scores below are dropped
                boxes = det.boxes[keep].astype(np.float64)
                boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, w)
                boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, h)
                out = []
                for b, s, c in zip(
                    boxes.tolist(), det.scores[keep].tolist(), det.classes[keep].tolist()
                ):
                    if not (b[0] < b[2] and b[1] < b[3]):
                        continue  # SAHI rejects boxes without area
                    name = self._class_names[c] if 0 <= c < len(self._class_names) else str(c)
                    out.append(
                        ObjectPrediction(
                            bbox=b,
                            category_id=int(c),
                            category_name=name,
                            score=float(s),
                            shift_amount=[int(shift[0]), int(shift[1])],
                            full_shape=None if full is None else [int(full[0]), int(full[1])],
                        )
                    )
                per_image.append(out)
            self._object_prediction_list_per_image = per_image

    return EdgerlDetectionModel


def _nested(values: Any, n: int, default: Any) -> list[Any]:
    """SAHI passes a pair or a list of pairs per image; always return ``n`` entries."""
    if values is None:
        return [default] * n
    vals = list(values)
    if vals and isinstance(vals[0], (int, float, np.integer, np.floating)):
        vals = [vals]
    if len(vals) < n:
        vals = vals + [vals[-1] if vals else default] * (n - len(vals))
    return vals


def sahi_detection_model(
    infer: Infer, class_names: Sequence[str] | None = None, confidence_threshold: float = 0.25
) -> Any:
    """A ``sahi.models.base.DetectionModel`` running ``infer`` (images -> list[Detections]).

    Args:
        infer: detection callable, e.g. a detector's ``detect``.
        class_names: names by class id (default: the COCO names, 0 = person).
        confidence_threshold: SAHI's model threshold; detections scoring below are dropped.

    Returns:
        The adapter instance, ready for ``sahi.predict.get_sliced_prediction``.
    """
    if class_names is None:
        from edgerl.vision.detectors.base import COCO_CLASS_NAMES

        class_names = COCO_CLASS_NAMES
    return _adapter_class()(infer, class_names, confidence_threshold)


class SahiSliced(_Base):
    """Baseline: SAHI sliced inference (``sahi.predict.get_sliced_prediction``).

    Paper: Akyon et al., "Slicing Aided Hyper Inference and Fine-tuning for Small Object
    Detection", ICIP 2022. Code: https://github.com/obss/sahi

    SAHI calls the model slice by slice in one process. Here each slice goes to the executor as
    one task pinned to worker 0 (the same detector sessions the other methods use), or to an
    injected detector; with ``batch_size > 1``, ``batch_size`` slices go to the executor at once
    and spread over its workers (an extension; SAHI's default is 1). The requested
    postprocess is always kept: SAHI would otherwise silently switch to NMS/IoU whenever the
    model confidence threshold is below 0.1 (``force_postprocess_type=True`` is passed).

    Args:
        executor: runs the slices (ignored when ``detector`` is given).
        cfg: settings (``conf_threshold``, ``nms_iou``, ``uniform_option``).
        option: detector ``MODEL@SIZE`` (default ``cfg.uniform_option``).
        slice_px: slice side in pixels (default: the option's input size).
        overlap: overlap ratio of adjacent slices (both axes).
        postprocess: SAHI merge: ``NMS``, ``NMM``, ``GREEDYNMM`` or ``LSNMS``.
        match_metric: ``IOU`` or ``IOS``.
        match_threshold: merge threshold (default ``cfg.nms_iou``).
        standard_pred: also run the whole frame and merge it in (SAHI's default is True; the
            RE-POSE comparison runs slices only).
        batch_size: slices per inference call.
        detector: a detector (``detect(images) -> list[Detections]``) called directly instead of
            the executor.
        class_names: names by class id handed to SAHI (default: COCO names).
    """

    name = "sahi"

    def __init__(
        self,
        executor: Executor,
        cfg: ReposeConfig,
        option: str | None = None,
        slice_px: int | None = None,
        overlap: float = 0.2,
        postprocess: str = "NMS",
        match_metric: str = "IOU",
        match_threshold: float | None = None,
        standard_pred: bool = False,
        batch_size: int = 1,
        detector: Any | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(executor, cfg)
        self.option = parse_option(option or cfg.uniform_option)
        self.slice_px = int(slice_px) if slice_px is not None else self.option[1]
        if self.slice_px <= 0:
            raise InputError(f"slice_px must be a positive number of pixels, got {slice_px!r}")
        if not 0.0 <= float(overlap) < 1.0:
            raise InputError(f"overlap must be in [0, 1), got {overlap!r}")
        self.overlap = float(overlap)
        self.postprocess = str(postprocess).upper()
        if self.postprocess not in SAHI_POSTPROCESS_TYPES:
            raise InputError(
                f"postprocess: {postprocess!r} is not one of {', '.join(SAHI_POSTPROCESS_TYPES)}"
            )
        self.match_metric = str(match_metric).upper()
        if self.match_metric not in SAHI_MATCH_METRICS:
            raise InputError(
                f"match_metric: {match_metric!r} is not one of {', '.join(SAHI_MATCH_METRICS)}"
            )
        self.match_threshold = float(cfg.nms_iou if match_threshold is None else match_threshold)
        if not 0.0 < self.match_threshold <= 1.0:
            raise InputError(f"match_threshold must be in (0, 1], got {match_threshold!r}")
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
        self.standard_pred = bool(standard_pred)
        self.batch_size = int(batch_size)
        self.detector = detector
        self.class_names = class_names
        self._model: Any = None

    def detector_specs(self) -> list[tuple[str, int, float]]:
        if self.detector is not None:  # a caller's own detector runs in this process, not on the workers
            return []
        return [(*self.option, self.cfg.conf_threshold)]

    def _infer(self, images: list[np.ndarray]) -> list[Detections]:
        if self.detector is not None:
            return list(self.detector.detect(images))
        model, size = self.option
        worker = 0 if len(images) == 1 else None  # one slice at a time: one worker, like SAHI
        tasks = [
            DetectTask(i, im, model, size, float(self.cfg.conf_threshold), worker)
            for i, im in enumerate(images)
        ]
        return [r.detections for r in self.executor.run(tasks)]

    def model(self) -> Any:
        """The SAHI adapter (built once)."""
        if self._model is None:
            self._model = sahi_detection_model(
                self._infer, self.class_names, self.cfg.conf_threshold
            )
        return self._model

    def __call__(self, frame: np.ndarray) -> FrameResult:
        sahi = _import_sahi()
        get_sliced_prediction = sahi.predict.get_sliced_prediction
        if "force_postprocess_type" not in inspect.signature(get_sliced_prediction).parameters:
            raise InputError(
                "the installed sahi has no force_postprocess_type (needed to keep the requested "
                "postprocess at confidence thresholds below 0.1); upgrade it: pip install -U sahi"
            )
        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        result = get_sliced_prediction(
            frame,
            self.model(),
            slice_height=self.slice_px,
            slice_width=self.slice_px,
            overlap_height_ratio=self.overlap,
            overlap_width_ratio=self.overlap,
            perform_standard_pred=self.standard_pred,
            postprocess_type=self.postprocess,
            postprocess_match_metric=self.match_metric,
            postprocess_match_threshold=self.match_threshold,
            postprocess_class_agnostic=False,
            verbose=0,
            auto_slice_resolution=False,
            batch_size=self.batch_size,
            force_postprocess_type=True,
        )
        det = _from_object_predictions(result.object_prediction_list)
        total = (time.perf_counter() - t0) * 1e3
        dur = result.durations_in_seconds
        timings = {
            "slice": float(dur.get("slice", 0.0)) * 1e3,
            "fine": float(dur.get("prediction", 0.0)) * 1e3,
            "merge": float(dur.get("postprocess", 0.0)) * 1e3,
            "total": total,
        }
        slices = sahi_slices((w, h), self.slice_px, self.overlap)
        info = {
            "slices": int(len(slices)),
            "postprocess": self.postprocess,
            "match_metric": self.match_metric,
            "standard_pred": self.standard_pred,
        }
        return FrameResult(det, timings, slices, (self.option,) * len(slices), info)


def _from_object_predictions(preds: Sequence[Any]) -> Detections:
    if not preds:
        return Detections.empty()
    boxes = np.array([p.bbox.to_xyxy() for p in preds], dtype=np.float32)
    scores = np.array([float(p.score.value) for p in preds], dtype=np.float32)
    classes = np.array([int(p.category.id) for p in preds], dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], scores[order], classes[order])


# --------------------------------------------------------------------------- REMIX

# Size bins of the object distribution: half-octave bins of log2(object area in px^2).
_LOG2_AREA_LO = 0.0
_LOG2_AREA_HI = 24.0
_LOG2_AREA_STEP = 0.5
_MAX_DIST_CELLS = 60  # largest distribution grid side (lcm of the candidate grids' sides)


def _frame_wh(frame_wh: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in frame_wh)
    except (TypeError, ValueError):
        raise InputError(f"frame_wh must be (width, height) in pixels, got {frame_wh!r}") from None
    if w < 1 or h < 1:
        raise InputError(f"frame_wh must be positive, got {frame_wh!r}")
    return w, h


def grid_edges(length: int, n: int) -> np.ndarray:
    """Integer edges ``floor(k * length / n)``, k = 0..n, of ``n`` cells along an axis.

    Edges of an ``n``-cell grid are a subset of those of an ``m``-cell grid whenever ``n``
    divides ``m``, so coarse cells are exact unions of fine cells.
    """
    return (np.arange(n + 1, dtype=np.int64) * int(length)) // int(n)


def _area_bins() -> tuple[np.ndarray, np.ndarray]:
    """(edges, centres) of the log2-area bins."""
    n = int(round((_LOG2_AREA_HI - _LOG2_AREA_LO) / _LOG2_AREA_STEP))
    edges = _LOG2_AREA_LO + _LOG2_AREA_STEP * np.arange(n + 1)
    return edges, 0.5 * (edges[:-1] + edges[1:])


def object_histogram(
    boxes: np.ndarray, frame_wh: tuple[int, int], rows: int, cols: int
) -> np.ndarray:
    """Object counts by grid cell of the box centre and by log2-area bin.

    Args:
        boxes: (N, 4) xyxy boxes in frame pixels.
        frame_wh: frame (width, height).
        rows: grid rows (cells have edges :func:`grid_edges`).
        cols: grid columns.

    Returns:
        (rows, cols, B) float64 counts; B half-octave bins of area from 2^0 to 2^24 px^2 (areas
        outside fall in the first/last bin).
    """
    w, h = _frame_wh(frame_wh)
    edges, centres = _area_bins()
    hist = np.zeros((rows, cols, len(centres)))
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return hist
    cx = 0.5 * (b[:, 0] + b[:, 2])
    cy = 0.5 * (b[:, 1] + b[:, 3])
    gx = np.clip(np.searchsorted(grid_edges(w, cols), cx, side="right") - 1, 0, cols - 1)
    gy = np.clip(np.searchsorted(grid_edges(h, rows), cy, side="right") - 1, 0, rows - 1)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    ab = np.floor((np.log2(np.maximum(area, 1.0)) - _LOG2_AREA_LO) / _LOG2_AREA_STEP).astype(
        np.int64
    )
    ab = np.clip(ab, 0, len(centres) - 1)
    np.add.at(hist, (gy, gx, ab), 1.0)
    return hist


@dataclass(frozen=True)
class RemixCandidate:
    """One candidate partition of the frame with its estimated per-block accuracy.

    Attributes:
        name: ``"RxC"`` (a grid) or ``"RxC-merged"`` (runs of empty cells in a row merged).
        blocks: (K, 4) int64 xyxy blocks that would be run (cells grown by the overlap).
        cores: (K, 4) int64 xyxy cells that own the objects whose centre lies inside.
        values: (K, M) expected number of objects detected per frame in block i with option j.
        expected_objects: (K,) expected number of objects per frame in each block.
    """

    name: str
    blocks: np.ndarray
    cores: np.ndarray
    values: np.ndarray
    expected_objects: np.ndarray


@dataclass(frozen=True)
class RemixPlan:
    """The plan run on a frame.

    Attributes:
        partition: the chosen candidate's name (``"default"`` before any history).
        blocks: (K, 4) int64 xyxy blocks.
        options: (model, input size) per block.
        workers: worker per block (parallel planner) or None.
        value: estimated objects detected per frame.
        expected_objects: estimated objects per frame (value / expected_objects = recall).
        latency_ms: estimated latency (sum of block latencies, or the makespan with the
            parallel planner).
        feasible: whether the estimate meets the budget.
        default: True when no history was available and the default plan was used.
    """

    partition: str
    blocks: np.ndarray
    options: tuple[tuple[str, int], ...]
    workers: tuple[int, ...] | None
    value: float
    expected_objects: float
    latency_ms: float
    feasible: bool
    default: bool

    @property
    def estimated_recall(self) -> float:
        """value / expected_objects (0 when no object is expected)."""
        return self.value / self.expected_objects if self.expected_objects > 0 else 0.0


class RemixPlanner(_Base):
    """Baseline: REMIX-style partition and model planning from previous frames' detections.

    Paper: Jiang et al., "Flexible High-resolution Object Detection on Edge Devices with Tunable
    Latency" (REMIX), MobiCom 2021; as described in RE-POSE (paper 000, Sec. IV).

    Each frame: (1) the object distribution of the last ``history_frames`` frames (this method's
    own detections scoring at least ``history_conf``) is the mean histogram over a grid fine
    enough to contain every candidate grid's cells, and over half-octave area bins; (2) for every
    candidate grid (all cells, and a variant with runs of historically empty cells in a row
    merged into one block) the value of block i under option j is the expected number of objects
    whose centre lies in the cell, weighted by the profile's accuracy at their resized area
    (``area * (S / long side of the block)^2``, as :func:`~edgerl.repose.pipeline.plan_values`);
    (3) the MCKP picks an option per block within ``cfg.budget_ms`` (sum of latencies, or the
    makespan on ``cfg.n_workers`` workers with ``cfg.planner == "parallel"``); (4) the feasible
    partition with the highest value wins (ties: lower latency, then the earlier candidate);
    (5) the blocks run through the executor and their detections, after NMS, join the history.
    Without history (or with no object in it) a default plan runs: the ``default_grid`` at the
    fastest option.

    Args:
        executor: runs the blocks on the edge workers.
        cfg: settings (``options``, ``budget_ms``, ``planner``, ``accuracy_kind``,
            ``on_infeasible``, ``conf_threshold``, ``nms_iou``, ``n_workers``).
        profile: detector latency and accuracy-by-area profiles.
        history_frames: H, number of previous frames whose detections form the distribution.
        candidate_grids: ``(rows, cols)`` grids to consider.
        overlap: each block grows by ``overlap / 2`` of a cell on every side (clipped to the
            frame), so neighbouring blocks share ``overlap`` of a cell.
        default_grid: ``(rows, cols)`` of the plan used without history.
        history_conf: smallest score of a detection recorded in the history.
    """

    name = "remix"

    def __init__(
        self,
        executor: Executor,
        cfg: ReposeConfig,
        profile: DetectorProfile,
        history_frames: int = 5,
        candidate_grids: Sequence[tuple[int, int]] = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 3)),
        overlap: float = 0.1,
        default_grid: tuple[int, int] = (2, 2),
        history_conf: float = 0.25,
    ) -> None:
        super().__init__(executor, cfg)
        if int(history_frames) < 1:
            raise InputError(f"history_frames must be >= 1, got {history_frames!r}")
        self.grids = [_check_grid(g, "candidate_grids") for g in candidate_grids]
        if not self.grids:
            raise InputError("candidate_grids must name at least one (rows, cols) grid")
        self.default_grid = _check_grid(default_grid, "default_grid")
        if not 0.0 <= float(overlap) < 1.0:
            raise InputError(f"overlap must be in [0, 1), got {overlap!r}")
        self.history_frames = int(history_frames)
        self.overlap = float(overlap)
        self.history_conf = float(history_conf)
        self.profile = profile
        self.options = [parse_option(o) for o in cfg.options]
        for m, s in self.options:
            profile.latency(m, s)  # fail early when the profile lacks an option
            if m not in profile.accuracy:
                raise InputError(
                    f"detector profile has no accuracy for {m}; "
                    f"profiled: {sorted(profile.accuracy)}"
                )
        self.latency = np.array([profile.latency(m, s) for m, s in self.options])
        self.cheapest = int(np.argmin(self.latency))  # first of the fastest on ties
        self.dist_rows = math.lcm(*(r for r, _ in self.grids))
        self.dist_cols = math.lcm(*(c for _, c in self.grids))
        if max(self.dist_rows, self.dist_cols) > _MAX_DIST_CELLS:
            raise InputError(
                f"candidate_grids {self.grids} need a {self.dist_rows}x{self.dist_cols} "
                f"distribution grid (lcm of their sides); keep it within {_MAX_DIST_CELLS} per side"
            )
        self._history: deque[np.ndarray] = deque(maxlen=self.history_frames)
        self._history_wh: tuple[int, int] | None = None

    def detector_specs(self) -> list[tuple[str, int, float]]:
        return [(m, s, self.cfg.conf_threshold) for m, s in self.options]

    # ------------------------------------------------------------------ history

    @property
    def history_len(self) -> int:
        """Number of frames in the history."""
        return len(self._history)

    def reset(self) -> None:
        """Forget the history (e.g. at a new video)."""
        self._history.clear()
        self._history_wh = None

    def observe(self, det: Detections, frame_wh: tuple[int, int]) -> None:
        """Add one frame's detections to the history (a new frame size clears it first)."""
        wh = _frame_wh(frame_wh)
        if self._history_wh != wh:
            self.reset()
            self._history_wh = wh
        boxes = det.boxes[det.scores >= self.history_conf]
        self._history.append(object_histogram(boxes, wh, self.dist_rows, self.dist_cols))

    def distribution(self, frame_wh: tuple[int, int]) -> np.ndarray | None:
        """Mean object histogram (rows, cols, B) per frame, or None without usable history."""
        if not self._history or self._history_wh != _frame_wh(frame_wh):
            return None
        return np.mean(np.stack(self._history), axis=0)

    # ------------------------------------------------------------------ planning

    def candidates(self, frame_wh: tuple[int, int]) -> list[RemixCandidate]:
        """Every candidate partition with its value matrix under the current distribution."""
        w, h = _frame_wh(frame_wh)
        dist = self.distribution((w, h))
        if dist is None:
            dist = np.zeros((self.dist_rows, self.dist_cols, len(_area_bins()[1])))
        out: list[RemixCandidate] = []
        seen: set[tuple] = set()
        for rows, cols in self.grids:
            if cols > w or rows > h:
                continue  # cells would be empty
            cells = _grid_cells((w, h), rows, cols, dist)
            for merged in (False, True):
                parts = _merge_empty_runs(cells) if merged else [[c] for row in cells for c in row]
                key = tuple(tuple(int(v) for v in _union([c[0] for c in p])) for p in parts)
                if key in seen:
                    continue  # merging changed nothing
                seen.add(key)
                out.append(
                    self._candidate(
                        f"{rows}x{cols}" + ("-merged" if merged else ""), parts, (w, h), cols, rows
                    )
                )
        return out

    def _candidate(
        self, name: str, parts: list[list[tuple]], frame_wh: tuple[int, int], cols: int, rows: int
    ) -> RemixCandidate:
        w, h = frame_wh
        pad_x = int(round(self.overlap * w / cols / 2))
        pad_y = int(round(self.overlap * h / rows / 2))
        cores = np.stack([_union([c[0] for c in p]) for p in parts])
        blocks = cores + np.array([-pad_x, -pad_y, pad_x, pad_y], np.int64)
        blocks = np.clip(blocks, 0, [w, h, w, h]).astype(np.int64)
        mass = np.stack([np.sum([c[1] for c in p], axis=0) for p in parts])  # (K, B)
        _, centres = _area_bins()
        area = 2.0**centres  # (B,)
        values = np.zeros((len(parts), len(self.options)))
        for j, (model, size) in enumerate(self.options):
            fac = resized_area_factor(blocks, size, self.cfg.block_resize, self.cfg.max_upscale)
            resized = area[None, :] * fac[:, None]  # (K, B)
            acc = self.profile.accuracy[model].value(resized, self.cfg.accuracy_kind)
            values[:, j] = (mass * acc).sum(axis=1)
        return RemixCandidate(name, blocks, cores, values, mass.sum(axis=1))

    def _solve(self, values: np.ndarray) -> tuple[Plan, float, tuple[int, ...] | None]:
        """MCKP on one partition: (plan, latency that the budget bounds, workers)."""
        if self.cfg.planner == "parallel":
            p = solve_parallel(
                values,
                self.latency,
                self.cfg.budget_ms,
                self.cfg.n_workers,
                on_infeasible="cheapest",
            )
            return p, p.makespan_ms, p.worker
        p = solve_mckp(values, self.latency, self.cfg.budget_ms, on_infeasible="cheapest")
        return p, p.total_latency_ms, None

    def default_plan(self, frame_wh: tuple[int, int]) -> RemixPlan:
        """The plan without history: ``default_grid`` at the fastest option."""
        w, h = _frame_wh(frame_wh)
        rows, cols = min(self.default_grid[0], h), min(self.default_grid[1], w)
        cells = _grid_cells((w, h), rows, cols, None)
        cand = self._candidate(
            f"{rows}x{cols}", [[c] for row in cells for c in row], (w, h), cols, rows
        )
        k = len(cand.blocks)
        per_block = np.full(k, float(self.latency[self.cheapest]))
        if self.cfg.planner == "parallel":
            latency = float(lpt_assign(per_block, self.cfg.n_workers)[1].max())
        else:
            latency = float(per_block.sum())
        return RemixPlan(
            partition="default",
            blocks=cand.blocks,
            options=(self.options[self.cheapest],) * k,
            workers=None,
            value=0.0,
            expected_objects=0.0,
            latency_ms=latency,
            feasible=latency <= self.cfg.budget_ms + 1e-9,
            default=True,
        )

    def plan(self, frame_wh: tuple[int, int]) -> RemixPlan:
        """The plan for the next frame of size ``frame_wh`` from the history."""
        wh = _frame_wh(frame_wh)
        dist = self.distribution(wh)
        if dist is None or dist.sum() <= 0:
            return self.default_plan(wh)
        best: tuple | None = None
        for cand in self.candidates(wh):
            p, lat, workers = self._solve(cand.values)
            if best is None or _better(
                p.feasible, p.total_value, lat, best[0].feasible, best[0].total_value, best[1]
            ):
                best = (p, lat, workers, cand)
        if best is None:
            return self.default_plan(wh)
        p, lat, workers, cand = best
        if not p.feasible and self.cfg.on_infeasible == "error":
            raise InputError(
                f"budget_ms={self.cfg.budget_ms:g} is below the cheapest REMIX plan's latency "
                f"{lat:.3f} ms (partition {cand.name}); raise the budget or set "
                "on_infeasible='cheapest'"
            )
        return RemixPlan(
            partition=cand.name,
            blocks=cand.blocks,
            options=tuple(self.options[j] for j in p.choice),
            workers=None if workers is None else tuple(int(e) for e in workers),
            value=float(p.total_value),
            expected_objects=float(cand.expected_objects.sum()),
            latency_ms=float(lat),
            feasible=bool(p.feasible),
            default=False,
        )

    def __call__(self, frame: np.ndarray) -> FrameResult:
        h, w = frame.shape[:2]
        t0 = time.perf_counter()
        plan = self.plan((w, h))
        t1 = time.perf_counter()
        fine = run_blocks(
            frame,
            plan.blocks,
            plan.options,
            self.executor,
            self.cfg.conf_threshold,
            plan.workers,
            self.cfg.block_resize,
            self.cfg.max_upscale,
            costs=[self.profile.latency(m, s) for m, s in plan.options],
        )
        out = nms_merge(fine, self.cfg.nms_iou)
        t2 = time.perf_counter()
        history_before = self.history_len
        self.observe(out, (w, h))
        t3 = time.perf_counter()
        timings = {"plan": (t1 - t0) * 1e3, "fine": (t2 - t1) * 1e3, "total": (t3 - t0) * 1e3}
        info = {
            "partition": plan.partition,
            "default_plan": plan.default,
            "plan_value": plan.estimated_recall,
            "plan_expected_objects": plan.expected_objects,
            "plan_latency_ms": plan.latency_ms,
            "plan_feasible": plan.feasible,
            "history_frames": history_before,
        }
        return FrameResult(out, timings, plan.blocks, plan.options, info)


def _check_grid(g: Any, field: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in g)
    except (TypeError, ValueError):
        raise InputError(f"{field}: {g!r} is not a (rows, cols) pair") from None
    if r < 1 or c < 1:
        raise InputError(f"{field}: {g!r} must have rows >= 1 and cols >= 1")
    return r, c


def _grid_cells(
    frame_wh: tuple[int, int], rows: int, cols: int, dist: np.ndarray | None
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per grid row, the cells as (core xyxy, area-bin mass (B,) from ``dist``, zeros if None).

    ``dist`` is a (R, C, B) histogram with ``rows | R`` and ``cols | C``: each grid cell is the
    union of ``R/rows x C/cols`` distribution cells (same :func:`grid_edges`).
    """
    w, h = frame_wh
    xs, ys = grid_edges(w, cols), grid_edges(h, rows)
    if dist is None:
        dist = np.zeros((rows, cols, len(_area_bins()[1])))
    fy, fx = dist.shape[0] // rows, dist.shape[1] // cols
    return [
        [
            (
                np.array([xs[gx], ys[gy], xs[gx + 1], ys[gy + 1]], np.int64),
                dist[gy * fy : (gy + 1) * fy, gx * fx : (gx + 1) * fx].sum(axis=(0, 1)),
            )
            for gx in range(cols)
        ]
        for gy in range(rows)
    ]


def _union(cores: list[np.ndarray]) -> np.ndarray:
    c = np.stack(cores)
    return np.array([c[:, 0].min(), c[:, 1].min(), c[:, 2].max(), c[:, 3].max()], np.int64)


def _merge_empty_runs(cells: list[list[tuple]]) -> list[list[tuple]]:
    """Group cells into blocks: each run of adjacent empty cells in a row becomes one block."""
    parts: list[list[tuple]] = []
    for row in cells:
        run: list[tuple] = []
        for cell in row:
            if cell[1].sum() > 0:
                if run:
                    parts.append(run)
                    run = []
                parts.append([cell])
            else:
                run.append(cell)
        if run:
            parts.append(run)
    return parts


def _better(
    feas: bool, value: float, lat: float, b_feas: bool, b_value: float, b_lat: float
) -> bool:
    """Feasible beats infeasible, then higher value, then lower latency (infeasible: latency)."""
    if feas != b_feas:
        return feas
    if not feas:
        return lat < b_lat - 1e-9
    tol = 1e-9 * max(1.0, abs(b_value))
    if value > b_value + tol:
        return True
    return abs(value - b_value) <= tol and lat < b_lat - 1e-9
