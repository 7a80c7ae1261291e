"""Executors that run detection work on edge workers: in-process (default) and Ray."""

from __future__ import annotations

from typing import Any

from edgerl.runtime.base import DetectTask, Executor, ExecutorStats, TaskResult
from edgerl.runtime.local import LocalExecutor
from edgerl.utils.errors import InputError


def make_executor(kind: str = "local", n_workers: int = 1, address: str | None = None, **kw: Any) -> Executor:
    """Build an executor by name: ``local`` or ``ray``."""
    if kind == "local":
        if address:
            raise InputError("--ray-address is only valid with --executor ray")
        return LocalExecutor(n_workers=n_workers, **kw)
    if kind == "ray":
        from edgerl.runtime.ray_executor import RayExecutor

        return RayExecutor(n_workers=n_workers, address=address, **kw)
    raise InputError(f"executor: {kind!r} is not one of local, ray")


__all__ = ["DetectTask", "Executor", "ExecutorStats", "LocalExecutor", "TaskResult", "make_executor"]
