"""Ray executor: one Ray actor per edge worker, each with its own detector sessions.

Starts an embedded local Ray by default; joins an existing cluster when given its
address. A worker actor that dies mid-frame has its blocks re-dispatched to the others.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from edgerl.runtime.base import (
    DetectorFactory,
    DetectTask,
    ExecutorStats,
    TaskResult,
    WorkerDied,
    WorkerState,
    assign_workers,
    log,
)
from edgerl.utils.errors import InputError


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("the Ray executor needs the 'ray' extra: pip install 'edgerl[ray]'") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, naming the address, when a Ray head cannot be reached."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    if ":" not in hostport:
        raise InputError(f"Ray address {address}: expected HOST:PORT (or auto)")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise InputError(f"Ray address {address}: cannot be reached ({exc})") from None


class _Worker:
    """The actor body: a :class:`WorkerState` behind Ray."""

    def __init__(self, index: int, factory: DetectorFactory | None, bw: float | None, fail_after: int | None):
        self.state = WorkerState(index, factory, bw, fail_after)

    def run(self, task: DetectTask) -> tuple[Any, float, float]:
        try:
            return self.state.run(task)
        except WorkerDied:
            # Emulate a crash of the whole worker process, as a real failure would.
            import os

            os._exit(1)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class RayExecutor:
    """Run tasks on ``n_workers`` Ray actors.

    Args:
        n_workers: number of edge workers E.
        address: Ray cluster address; None starts an embedded local Ray.
        factory: detector factory (picklable).
        link_bandwidth_bps: emulate sending each block over a link of this rate.
        fail_after_tasks: fault injection per worker index (tests).
        num_cpus_per_worker: CPUs reserved per actor.
        spread: place actors on different nodes where possible.
    """

    def __init__(
        self,
        n_workers: int = 1,
        address: str | None = None,
        factory: DetectorFactory | None = None,
        link_bandwidth_bps: float | None = None,
        fail_after_tasks: dict[int, int] | None = None,
        num_cpus_per_worker: float = 0.5,
        spread: bool = True,
    ) -> None:
        if n_workers < 1:
            raise InputError(f"n_workers: {n_workers} must be >= 1")
        ray = _import_ray()
        self.n_workers = int(n_workers)
        self.stats = ExecutorStats()
        self._started_here = False
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(
                    num_cpus=max(2, int(n_workers * num_cpus_per_worker + 0.999)),
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
                self._started_here = True
        fail = fail_after_tasks or {}
        opts: dict[str, Any] = {"num_cpus": num_cpus_per_worker, "max_restarts": 0}
        if spread:
            opts["scheduling_strategy"] = "SPREAD"
        actor_cls = ray.remote(_Worker)
        self.actors = [
            actor_cls.options(**opts).remote(i, factory, link_bandwidth_bps, fail.get(i)) for i in range(n_workers)
        ]
        self.alive = list(range(n_workers))

    def node_ids(self) -> list[str]:
        """Ray node id of each live worker (to check placement)."""
        ray = _import_ray()
        return ray.get([self.actors[w].node_id.remote() for w in self.alive])

    def run(self, tasks: Sequence[DetectTask]) -> list[TaskResult]:
        """Run every task; blocks of a worker that dies are re-dispatched to the others."""
        ray = _import_ray()
        results: dict[int, TaskResult] = {}
        attempts = {p: 0 for p in range(len(tasks))}
        pending = list(range(len(tasks)))
        while pending:
            if not self.alive:
                raise RuntimeError("all edge workers have failed; cannot complete the frame")
            sub = [tasks[p] for p in pending]
            ws = assign_workers(sub, self.n_workers, self.alive)
            refs = {}
            for p, w in zip(pending, ws):
                attempts[p] += 1
                refs[self.actors[w].run.remote(tasks[p])] = (p, w)
            dead: dict[int, int] = {}
            waiting = list(refs)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                ref = ready[0]
                p, w = refs[ref]
                try:
                    det, c_ms, t_ms = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    dead[w] = dead.get(w, 0) + 1
                    log.debug("task %s lost on worker %s: %s", p, w, type(exc).__name__)
                    continue
                results[p] = TaskResult(tasks[p].task_id, w, det, c_ms, t_ms, attempts[p])
            for w, n_lost in dead.items():
                self.stats.worker_lost(w, f"worker {w} died", n_lost, self.alive)
            pending = [p for p in pending if p not in results]
        self.stats.tasks += len(tasks)
        return [results[p] for p in range(len(tasks))]

    def close(self) -> None:
        ray = _import_ray()
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        self.actors = []
        if self._started_here and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
