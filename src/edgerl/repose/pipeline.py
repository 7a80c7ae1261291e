"""The RE-POSE pipeline and the methods it is compared with.

Data flow (paper 000, Fig. 2): frame -> uniform n x E blocks -> coarse detections on E
workers -> NMS -> y-transform + MeanShift -> PPO merge/split -> one block per cluster ->
MCKP plan (one detector option per block under the latency budget) -> blocks offloaded to
the E workers in parallel -> detections mapped back to the frame -> NMS.

Every stage is a function of plain arrays; only the two worker calls go through the
executor, which is passed in. Each method is a small callable object returning a
:class:`FrameResult` with per-stage timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from edgerl.repose.blocks import uniform_blocks
from edgerl.repose.clustering import cluster_areas, cluster_blocks, initial_clusters
from edgerl.repose.env import RLDCAConfig, greedy_refine
from edgerl.repose.mckp import solve_mckp, solve_parallel
from edgerl.runtime.base import DetectTask, Executor
from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.profile import DetectorProfile


@dataclass(frozen=True)
class FrameResult:
    """Output of one method on one frame.

    Attributes:
        detections: boxes in frame pixels after the final NMS.
        timings_ms: wall time per stage (``coarse``, ``cluster``, ``plan``, ``fine``) and ``total``.
        blocks: (K, 4) xyxy blocks run in the fine stage.
        options: (model, input size) run on each block.
        info: anything else worth reporting (plan value, feasibility, cluster count).
    """

    detections: Detections
    timings_ms: dict[str, float]
    blocks: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    options: tuple[tuple[str, int], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


def parse_option(text: str) -> tuple[str, int]:
    """``"person_s@640"`` -> ``("person_s", 640)``."""
    model, sep, size = str(text).rpartition("@")
    if not sep or not model or not size.isdigit() or int(size) <= 0 or int(size) % 32:
        raise InputError(f"detector option {text!r}: expected MODEL@SIZE with SIZE a positive multiple of 32")
    return model, int(size)


class ReposeConfig(Config):
    """Settings of RE-POSE and of the baselines it is compared with."""

    n_workers: int = Field(4, ge=1, description="Edge workers E.")
    coarse_rows: int = Field(1, ge=1, description="n: rows of the coarse n x E block grid.")
    coarse_option: str = Field("person_n@640", description="Coarse detector MODEL@SIZE.")
    coarse_conf: float = Field(0.1, gt=0, lt=1, description="Low confidence threshold of the coarse stage.")
    conf_threshold: float = Field(0.05, gt=0, lt=1, description="Confidence threshold of the fine stage.")
    nms_iou: float = Field(0.5, gt=0, le=1, description="IoU of the NMS merging blocks.")
    options: list[str] = Field(
        default_factory=lambda: [f"person_{m}@{s}" for m in "nsm" for s in (512, 640, 960, 1280)],
        min_length=1,
        description="Fine-stage detector options MODEL@SIZE the planner chooses from.",
    )
    budget_ms: float = Field(280.0, gt=0, description="D_max: latency budget of the fine stage.")
    plan_objective: str = Field(
        "objects", pattern="^(objects|block_mean)$",
        description="objects: maximise the expected objects found (sum of p_j over each block's objects); "
        "block_mean: the paper's eq. (18)-(20), every block's mean accuracy weighs the same.",
    )
    plan_resolution_ms: float = Field(0.5, gt=0, description="Latency grid of the MCKP dynamic programme.")
    planner: str = Field("sum", pattern="^(sum|parallel)$", description="sum (paper eq. (22)) or parallel (makespan).")
    on_infeasible: str = Field("cheapest", pattern="^(error|cheapest)$", description="Budget below the cheapest plan.")
    accuracy_kind: str = Field(
        "recall_coco", pattern="^(recall|precision|recall_coco)$",
        description="p_j used by the planner: recall at IoU 0.5, precision, or recall averaged over IoU 0.50:0.95.",
    )
    block_resize: str = Field(
        "area", pattern="^(area|letterbox)$",
        description="area: a block run at size S is resized to about S*S pixels keeping its aspect "
        "(paper eq. (17)); letterbox: its long side is resized to S on an S x S canvas.",
    )
    max_upscale: float = Field(2.0, ge=1.0, description="Largest enlargement of a block (area resize).")
    block_margin_px: float = Field(24.0, ge=0, description="Margin around each cluster's detections.")
    block_min_px: int = Field(96, ge=16, description="Smallest block side.")
    uniform_grid: int = Field(2, ge=1, description="Uniform baseline: grid side (2 = 2x2).")
    uniform_overlap: float = Field(0.3, ge=0, lt=1, description="Uniform baseline: overlap fraction.")
    uniform_option: str = Field("person_s@960", description="Uniform baseline detector MODEL@SIZE.")
    rl: RLDCAConfig = Field(default_factory=RLDCAConfig, description="RL-DCA settings.")


def nms_merge(det: Detections, iou: float) -> Detections:
    """Class-aware NMS over detections gathered from several blocks."""
    from edgerl.vision.boxes import batched_nms

    if len(det) == 0:
        return det
    keep = batched_nms(det.boxes, det.scores, det.classes, iou)
    return det.select(np.asarray(keep, dtype=np.int64))


def area_input_hw(block_w: float, block_h: float, size: int, max_upscale: float = 2.0) -> tuple[int, int]:
    """Network input (h, w) for a block run at size S under area resizing.

    The block keeps its aspect ratio and is scaled by ``f = min(S / sqrt(W H), max_upscale)``,
    so it covers about S*S input pixels (the cost the latency profile measured); both sides
    are rounded to multiples of 32 (at least 32).
    """
    f = min(size / max(np.sqrt(float(block_w) * float(block_h)), 1.0), max_upscale)
    return max(32, int(round(block_h * f / 32.0)) * 32), max(32, int(round(block_w * f / 32.0)) * 32)


def resized_area_factor(blocks: np.ndarray, size: int, resize: str = "letterbox", max_upscale: float = 2.0) -> np.ndarray:
    """Factor turning an object's area in frame pixels into its area at the network input, per block.

    ``area``: ``min(S^2 / (W H), max_upscale^2)`` (paper eq. (17): A * S^2 / (W H));
    ``letterbox``: ``(S / max(W, H))^2``.
    """
    b = np.asarray(blocks, float).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    if resize == "area":
        return np.minimum(size**2 / np.maximum(w * h, 1.0), max_upscale**2)
    return (size / np.maximum(np.maximum(w, h), 1.0)) ** 2


def run_blocks(
    frame: np.ndarray,
    blocks: np.ndarray,
    options: Sequence[tuple[str, int]],
    executor: Executor,
    conf: float,
    workers: Sequence[int | None] | None = None,
    resize: str = "letterbox",
    max_upscale: float = 2.0,
    costs: Sequence[float] | None = None,
) -> Detections:
    """Detect on every block with its option through the executor; boxes mapped to the frame.

    ``resize`` chooses how a block meets the network input (see :func:`area_input_hw`);
    ``costs`` (e.g. the profiled latency of each block's option) balance the workers.
    """
    if len(blocks) == 0:
        return Detections.empty()
    tasks = []
    for i, (b, (model, size)) in enumerate(zip(blocks, options)):
        x0, y0, x1, y1 = (int(v) for v in b)
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        w = None if workers is None else workers[i]
        isz: int | tuple[int, int] = int(size)
        if resize == "area":
            isz = area_input_hw(x1 - x0, y1 - y0, int(size), max_upscale)
        tasks.append(DetectTask(i, crop, model, isz, float(conf), w, None if costs is None else float(costs[i])))
    results = executor.run(tasks)
    out = []
    for r in results:
        x0, y0 = float(blocks[r.task_id][0]), float(blocks[r.task_id][1])
        d = r.detections
        out.append(Detections(d.boxes + np.array([x0, y0, x0, y0], np.float32), d.scores, d.classes))
    return Detections.concat(out)


def coarse_blocks(frame_wh: tuple[int, int], cfg: ReposeConfig) -> np.ndarray:
    """The coarse stage's uniform n x E grid (a little overlap so cut people are seen whole)."""
    return uniform_blocks(frame_wh, cfg.n_workers, cfg.coarse_rows, 0.1)


def plan_values(
    profile: DetectorProfile,
    options: Sequence[tuple[str, int]],
    blocks: np.ndarray,
    areas: Sequence[np.ndarray],
    kind: str = "recall",
    resize: str = "letterbox",
    max_upscale: float = 2.0,
    objective: str = "block_mean",
) -> np.ndarray:
    """P_ij: accuracy of option j over the objects expected in block i.

    ``block_mean`` is the paper's eq. (18), the mean over the block's M_i objects, so every
    block weighs the same in the objective (20); ``objects`` is the sum over them (M_i times
    eq. (18)), so the plan maximises the expected number of objects found in the frame.
    The resized area of an object of area A is A times :func:`resized_area_factor` of its
    block (A * S^2 / (W H) under area resizing, as in the paper's eq. (17)).
    """
    if objective not in ("block_mean", "objects"):
        raise InputError(f"plan objective: {objective!r} is not one of block_mean, objects")
    k = len(blocks)
    vals = np.zeros((k, len(options)))
    for j, (model, size) in enumerate(options):
        fac = resized_area_factor(blocks, size, resize, max_upscale)
        acc = profile.accuracy.get(model)
        if acc is None:
            raise InputError(f"detector profile has no accuracy for {model}; profiled: {sorted(profile.accuracy)}")
        for i in range(k):
            a = areas[i]
            if len(a) == 0:
                continue
            p = acc.value(a * fac[i], kind)
            vals[i, j] = float(np.sum(p) if objective == "objects" else np.mean(p))
    return vals


class _Base:
    name = "base"

    def __init__(self, executor: Executor, cfg: ReposeConfig) -> None:
        self.executor = executor
        self.cfg = cfg

    @property
    def _rs(self) -> tuple[str, float]:
        return self.cfg.block_resize, self.cfg.max_upscale

    def detector_specs(self) -> list[tuple[str, int, float]]:
        """Every (model, input size, confidence) this method may run; workers load them up front."""
        return []

    def __call__(self, frame: np.ndarray) -> FrameResult:  # pragma: no cover - abstract
        raise NotImplementedError


class FullFrame(_Base):
    """Baseline: the whole frame through one detector option (one worker)."""

    def __init__(self, executor: Executor, cfg: ReposeConfig, option: str) -> None:
        super().__init__(executor, cfg)
        self.option = parse_option(option)
        self.name = f"full:{option}"

    def detector_specs(self) -> list[tuple[str, int, float]]:
        return [(*self.option, self.cfg.conf_threshold)]

    def __call__(self, frame: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        blocks = np.array([[0, 0, w, h]], np.int64)
        det = run_blocks(frame, blocks, [self.option], self.executor, self.cfg.conf_threshold, None, *self._rs)
        det = nms_merge(det, self.cfg.nms_iou)
        ms = (time.perf_counter() - t0) * 1e3
        return FrameResult(det, {"fine": ms, "total": ms}, blocks, (self.option,))


class Uniform(_Base):
    """Baseline: a uniform g x g grid with overlap, one block per worker, one detector option."""

    name = "uniform"

    def __init__(self, executor: Executor, cfg: ReposeConfig, option: str | None = None) -> None:
        super().__init__(executor, cfg)
        self.option = parse_option(option or cfg.uniform_option)

    def detector_specs(self) -> list[tuple[str, int, float]]:
        return [(*self.option, self.cfg.conf_threshold)]

    def __call__(self, frame: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        g = self.cfg.uniform_grid
        blocks = uniform_blocks((w, h), g, g, self.cfg.uniform_overlap)
        opts = [self.option] * len(blocks)
        det = run_blocks(frame, blocks, opts, self.executor, self.cfg.conf_threshold, None, *self._rs)
        det = nms_merge(det, self.cfg.nms_iou)
        ms = (time.perf_counter() - t0) * 1e3
        return FrameResult(det, {"fine": ms, "total": ms}, blocks, tuple(opts))


PolicyFn = Callable[[np.ndarray], int]


class Repose(_Base):
    """RE-POSE: coarse detection, MeanShift (+ PPO refinement), MCKP plan, parallel fine stage.

    Args:
        executor: runs the coarse and fine blocks on the edge workers.
        cfg: settings.
        profile: detector latency and accuracy-by-area profiles (the planner's d_j, p_j).
        policy: RL-DCA action function (obs -> action); None gives the MeanShift-only ablation.
        coarse_full_frame: ablation: coarse stage on the full frame instead of the n x E grid.
    """

    def __init__(
        self,
        executor: Executor,
        cfg: ReposeConfig,
        profile: DetectorProfile,
        policy: PolicyFn | None = None,
        coarse_full_frame: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(executor, cfg)
        self.profile = profile
        self.policy = policy
        self.coarse_full_frame = coarse_full_frame
        self.options = [parse_option(o) for o in cfg.options]
        self.coarse_option = parse_option(cfg.coarse_option)
        for m, s in [*self.options, self.coarse_option]:
            profile.latency(m, s)  # fail early when the profile lacks an option
        self.latency = np.array([profile.latency(m, s) for m, s in self.options])
        self.name = name or ("repose" if policy is not None else "meanshift")

    def detector_specs(self) -> list[tuple[str, int, float]]:
        fine = [(m, s, self.cfg.conf_threshold) for m, s in self.options]
        return [(*self.coarse_option, self.cfg.coarse_conf), *fine]

    def coarse(self, frame: np.ndarray) -> Detections:
        h, w = frame.shape[:2]
        if self.coarse_full_frame:
            blocks = np.array([[0, 0, w, h]], np.int64)
        else:
            blocks = coarse_blocks((w, h), self.cfg)
        opts = [self.coarse_option] * len(blocks)
        det = run_blocks(frame, blocks, opts, self.executor, self.cfg.coarse_conf, None, *self._rs)
        return nms_merge(det, self.cfg.nms_iou)

    def cluster(self, det: Detections, frame_wh: tuple[int, int]) -> np.ndarray:
        rl = self.cfg.rl
        if self.policy is None:
            return initial_clusters(det.boxes, frame_wh, rl.alpha_t, rl.bandwidth, quantile=rl.bandwidth_quantile)
        return greedy_refine(self.policy, det.boxes, frame_wh, rl)

    def plan(self, det: Detections, labels: np.ndarray, blocks: np.ndarray) -> tuple[list[tuple[str, int]], list, dict]:
        areas = cluster_areas(det.boxes, labels)  # same (increasing label) order as the blocks
        values = plan_values(
            self.profile, self.options, blocks, areas, self.cfg.accuracy_kind, *self._rs, objective=self.cfg.plan_objective
        )
        lat = np.broadcast_to(self.latency, values.shape)
        if self.cfg.planner == "sum":
            plan = solve_mckp(
                values, lat, self.cfg.budget_ms, resolution_ms=self.cfg.plan_resolution_ms, on_infeasible=self.cfg.on_infeasible
            )
            workers = None
        else:
            plan = solve_parallel(values, lat, self.cfg.budget_ms, self.cfg.n_workers, on_infeasible=self.cfg.on_infeasible)
            workers = list(plan.worker)
        opts = [self.options[j] for j in plan.choice]
        info = {"plan_value": plan.total_value, "plan_latency_ms": plan.total_latency_ms, "plan_feasible": plan.feasible}
        return opts, workers, info

    def __call__(self, frame: np.ndarray) -> FrameResult:
        h, w = frame.shape[:2]
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        det = self.coarse(frame)
        t1 = time.perf_counter()
        t["coarse"] = (t1 - t0) * 1e3
        if len(det) == 0:
            t["total"] = t["coarse"]
            return FrameResult(Detections.empty(), t, info={"clusters": 0})
        labels = self.cluster(det, (w, h))
        blocks = cluster_blocks(det.boxes, labels, (w, h), margin_px=self.cfg.block_margin_px, min_size_px=self.cfg.block_min_px)
        t2 = time.perf_counter()
        t["cluster"] = (t2 - t1) * 1e3
        opts, workers, info = self.plan(det, labels, blocks)
        t3 = time.perf_counter()
        t["plan"] = (t3 - t2) * 1e3
        costs = [self.profile.latency(m, s) for m, s in opts]
        fine = run_blocks(frame, blocks, opts, self.executor, self.cfg.conf_threshold, workers, *self._rs, costs=costs)
        out = nms_merge(fine, self.cfg.nms_iou)
        t4 = time.perf_counter()
        t["fine"] = (t4 - t3) * 1e3
        t["total"] = (t4 - t0) * 1e3
        info["clusters"] = int(len(blocks))
        info["coarse_detections"] = int(len(det))
        return FrameResult(out, t, blocks, tuple(opts), info)
