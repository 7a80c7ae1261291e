"""Executor interface: run detection tasks on E edge workers.

A task is one image (a frame block) to be detected with one model at one input size,
optionally pinned to a worker. Executors return one result per task, in task order,
whatever worker ran it. Workers hold their own detector sessions, created lazily by a
picklable factory and reused across frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgerl.vision.detections import Detections

log = logging.getLogger("edgerl.runtime")


@dataclass(frozen=True)
class DetectTask:
    """One unit of work for an edge worker.

    Attributes:
        task_id: caller's id, echoed in the result.
        image: RGB uint8 (H, W, 3) block.
        model: detector key understood by the worker's factory (a file path or built-in name).
        input_size: network input: an int S (square S x S, letterboxed) or ``(height, width)``.
        conf_threshold: confidence threshold.
        worker: worker index to run on, or None to let the executor choose.
        cost: estimated compute cost (any unit, e.g. profiled ms) used to balance the
            workers; None: the number of network input pixels.
    """

    task_id: int
    image: np.ndarray
    model: str
    input_size: int | tuple[int, int]
    conf_threshold: float = 0.25
    worker: int | None = None
    cost: float | None = None


@dataclass(frozen=True)
class TaskResult:
    """Result of one task.

    Attributes:
        task_id: the task's id.
        worker: index of the worker that ran it.
        detections: boxes in the block's own pixels.
        compute_ms: detector time on the worker.
        transfer_ms: emulated transfer time (0 unless a link bandwidth is set).
        attempts: 1, or more when the task was re-dispatched after a worker failure.
    """

    task_id: int
    worker: int
    detections: Detections
    compute_ms: float
    transfer_ms: float = 0.0
    attempts: int = 1


@dataclass
class ExecutorStats:
    """Counters an executor keeps across calls."""

    tasks: int = 0
    redispatched: int = 0
    worker_failures: int = 0
    incidents: list[str] = field(default_factory=list)

    def worker_lost(self, worker: int, reason: str, n_lost: int, alive: list[int]) -> None:
        """Record a failed worker: drop it from ``alive`` (in place), count and log the incident."""
        if worker in alive:
            alive.remove(worker)
        self.worker_failures += 1
        self.redispatched += n_lost
        incident = f"{reason}; {n_lost} task(s) re-dispatched to workers {alive}"
        self.incidents.append(incident)
        log.warning(incident)


class Executor(Protocol):
    """What every executor offers."""

    n_workers: int
    stats: ExecutorStats

    def run(self, tasks: Sequence[DetectTask]) -> list[TaskResult]:
        """Run every task; return results in task order."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


DetectorFactory = Callable[[str, Any, float], Any]
"""``factory(model, input_size, conf_threshold) -> Detector``; must be picklable for Ray."""


def default_detector_factory(model: str, input_size: Any, conf_threshold: float) -> Any:
    """Build a detector through the vision layer's loader."""
    from edgerl.vision.detectors import load_detector

    return load_detector(model, input_size=input_size, conf_threshold=conf_threshold, intra_op_threads=1)


class WorkerState:
    """What lives on one edge worker: its detector sessions and an optional link model.

    Args:
        index: worker index.
        factory: detector factory.
        link_bandwidth_bps: if set, each task sleeps ``bytes * 8 / bandwidth`` to emulate
            sending the block over a link of that rate.
        fail_after_tasks: fault injection for tests: the worker fails when it receives task
            number ``fail_after_tasks + 1``.
    """

    def __init__(
        self,
        index: int,
        factory: DetectorFactory | None = None,
        link_bandwidth_bps: float | None = None,
        fail_after_tasks: int | None = None,
    ) -> None:
        self.index = index
        self.factory = factory or default_detector_factory
        self.link_bandwidth_bps = link_bandwidth_bps
        self.fail_after_tasks = fail_after_tasks
        self.done = 0
        self._detectors: dict[tuple[Any, ...], Any] = {}

    def detector(self, model: str, input_size: Any, conf: float) -> Any:
        """A cached detector for (model, size, conf); one session serves every input size
        when the detector accepts a per-call input size (``dynamic_input``)."""
        hw = (input_size, input_size) if isinstance(input_size, (int, np.integer)) else tuple(input_size)
        hw = (int(hw[0]), int(hw[1]))
        base = self._detectors.get((model, float(conf)))
        if base is not None and getattr(base, "dynamic_input", False):
            return base
        det = self._detectors.get((model, hw, float(conf)))
        if det is None:
            det = self.factory(model, hw if hw[0] != hw[1] else hw[0], float(conf))
            self._detectors[(model, hw, float(conf))] = det
            self._detectors.setdefault((model, float(conf)), det)
        return det

    def _detect(self, det: Any, image: np.ndarray, input_size: Any) -> Detections:
        if getattr(det, "dynamic_input", False):
            hw = (input_size, input_size) if isinstance(input_size, (int, np.integer)) else tuple(input_size)
            return det.detect_timed([image], input_hw=hw)[0][0]
        return det.detect([image])[0]

    def run(self, task: DetectTask) -> tuple[Detections, float, float]:
        """Run one task; returns (detections, compute_ms, transfer_ms)."""
        if self.fail_after_tasks is not None and self.done >= self.fail_after_tasks:
            raise WorkerDied(f"worker {self.index} failed (injected after {self.done} tasks)")
        transfer_ms = 0.0
        if self.link_bandwidth_bps:
            transfer_ms = task.image.nbytes * 8.0 / self.link_bandwidth_bps * 1e3
            time.sleep(transfer_ms / 1e3)
        det = self.detector(task.model, task.input_size, task.conf_threshold)
        t0 = time.perf_counter()
        out = self._detect(det, task.image, task.input_size)
        compute_ms = (time.perf_counter() - t0) * 1e3
        self.done += 1
        return out, compute_ms, transfer_ms


def preload(executor: Executor, specs: Sequence[tuple[str, int, float]], image_px: int = 64) -> int:
    """Load every (model, input size, confidence) on every live worker before timing starts.

    Each worker gets one pinned task per spec on a small grey image, so its detector
    sessions exist and ONNX Runtime has run each input size once; a frame timed afterwards
    pays no session creation, whichever worker its blocks land on. Returns the task count.
    """
    uniq = list(dict.fromkeys((str(m), int(s), float(c)) for m, s, c in specs))
    alive = list(getattr(executor, "alive", range(executor.n_workers)))
    img = np.full((int(image_px), int(image_px), 3), 114, np.uint8)
    tasks = [
        DetectTask(i, img, m, s, c, worker=w)
        for i, ((m, s, c), w) in enumerate((spec, w) for spec in uniq for w in alive)
    ]
    if tasks:
        executor.run(tasks)
    return len(tasks)


class WorkerDied(RuntimeError):
    """A worker stopped while it held tasks."""


def task_cost(task: DetectTask) -> float:
    """A task's balancing weight: its ``cost``, else its network input pixels."""
    if task.cost is not None:
        return float(task.cost)
    if isinstance(task.input_size, int):
        return float(task.input_size) ** 2
    h, w = task.input_size
    return float(h) * float(w)


def assign_workers(tasks: Sequence[DetectTask], n_workers: int, alive: Sequence[int]) -> list[int]:
    """Worker index per task: the pinned one when alive, else the least-loaded one.

    Unpinned tasks are placed longest first (by :func:`task_cost`) on the worker with the
    least load so far (the LPT rule), which keeps the slowest worker, and so the frame, short.
    """
    load = {w: 0.0 for w in alive}
    out: list[int] = [-1] * len(tasks)
    free: list[int] = []
    for i, t in enumerate(tasks):
        if t.worker is not None and t.worker in load:
            out[i] = t.worker
            load[t.worker] += task_cost(t)
        else:
            free.append(i)
    for i in sorted(free, key=lambda i: -task_cost(tasks[i])):
        w = min(load, key=lambda k: (load[k], k))
        load[w] += task_cost(tasks[i])
        out[i] = w
    return out
