"""In-process executor: E workers as threads, each with its own detector sessions.

ONNX Runtime releases the GIL while it computes, so threads run blocks truly in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from edgerl.runtime.base import (
    DetectorFactory,
    DetectTask,
    ExecutorStats,
    TaskResult,
    WorkerDied,
    WorkerState,
    assign_workers,
)
from edgerl.utils.errors import InputError


class LocalExecutor:
    """Run tasks on ``n_workers`` in-process workers.

    Args:
        n_workers: number of edge workers E.
        factory: detector factory (default: the vision layer's loader).
        link_bandwidth_bps: emulate sending each block over a link of this rate.
        fail_after_tasks: fault injection, per worker index (tests).
        threads: run workers in parallel threads (True) or one after another (False).
    """

    def __init__(
        self,
        n_workers: int = 1,
        factory: DetectorFactory | None = None,
        link_bandwidth_bps: float | None = None,
        fail_after_tasks: dict[int, int] | None = None,
        threads: bool = True,
    ) -> None:
        if n_workers < 1:
            raise InputError(f"n_workers: {n_workers} must be >= 1")
        self.n_workers = int(n_workers)
        self.threads = threads
        fail = fail_after_tasks or {}
        self.workers = [WorkerState(i, factory, link_bandwidth_bps, fail.get(i)) for i in range(n_workers)]
        self.alive = list(range(n_workers))
        self.stats = ExecutorStats()

    def _run_on(self, w: int, items: list[tuple[int, DetectTask]], out: dict, failed: list) -> None:
        for pos, task in items:
            try:
                det, c_ms, t_ms = self.workers[w].run(task)
            except WorkerDied as exc:
                failed.append((w, str(exc), [p for p, _ in items if p not in out]))
                return
            out[pos] = TaskResult(task.task_id, w, det, c_ms, t_ms)

    def run(self, tasks: Sequence[DetectTask]) -> list[TaskResult]:
        """Run every task; a worker that fails has its unfinished tasks re-dispatched."""
        results: dict[int, TaskResult] = {}
        pending = list(range(len(tasks)))
        attempts = {p: 0 for p in pending}
        while pending:
            if not self.alive:
                raise RuntimeError("all edge workers have failed; cannot complete the frame")
            sub = [tasks[p] for p in pending]
            ws = assign_workers(sub, self.n_workers, self.alive)
            per_worker: dict[int, list[tuple[int, DetectTask]]] = {}
            for p, w in zip(pending, ws):
                attempts[p] += 1
                per_worker.setdefault(w, []).append((p, tasks[p]))
            failed: list = []
            if self.threads and len(per_worker) > 1:
                ths = [
                    threading.Thread(target=self._run_on, args=(w, items, results, failed), daemon=True)
                    for w, items in per_worker.items()
                ]
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
            else:
                for w, items in per_worker.items():
                    self._run_on(w, items, results, failed)
            for w, msg, lost in failed:
                self.stats.worker_lost(w, msg, len(lost), self.alive)
            pending = [p for p in pending if p not in results]
        self.stats.tasks += len(tasks)
        out = []
        for p in range(len(tasks)):
            r = results[p]
            if attempts[p] > 1:
                r = TaskResult(r.task_id, r.worker, r.detections, r.compute_ms, r.transfer_ms, attempts[p])
            out.append(r)
        return out

    def close(self) -> None:
        self.workers = []

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
