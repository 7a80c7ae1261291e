"""Executors: same results whichever runs the tasks; lost workers are recovered."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.runtime import DetectTask, LocalExecutor, make_executor
from edgerl.runtime.testing import blob_factory
from edgerl.utils.errors import InputError


def _tasks(n: int, seed: int = 0) -> list[DetectTask]:
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n):
        img = np.zeros((64, 96, 3), np.uint8)
        for _ in range(3):
            x, y = rng.integers(0, 80), rng.integers(0, 50)
            img[y : y + 8, x : x + 10] = 255
        tasks.append(DetectTask(task_id=100 + i, image=img, model="blob", input_size=64))
    return tasks


def _key(results):
    return [(r.task_id, np.round(r.detections.boxes, 3).tolist(), np.round(r.detections.scores, 5).tolist()) for r in results]


def test_local_serial_equals_threads() -> None:
    tasks = _tasks(9)
    with LocalExecutor(3, factory=blob_factory, threads=False) as a, LocalExecutor(3, factory=blob_factory) as b:
        ra, rb = a.run(tasks), b.run(tasks)
    assert _key(ra) == _key(rb)
    assert [r.task_id for r in ra] == [t.task_id for t in tasks]
    assert all(len(r.detections) >= 1 for r in ra)


def test_pinned_worker_is_used() -> None:
    tasks = [DetectTask(i, np.zeros((8, 8, 3), np.uint8), "blob", 8, worker=i % 2) for i in range(4)]
    with LocalExecutor(2, factory=blob_factory) as ex:
        assert [r.worker for r in ex.run(tasks)] == [0, 1, 0, 1]


def test_local_worker_death_redispatches() -> None:
    tasks = _tasks(8)
    with LocalExecutor(2, factory=blob_factory, threads=False) as ref:
        expected = _key(ref.run(tasks))
    ex = LocalExecutor(2, factory=blob_factory, fail_after_tasks={1: 1})
    res = ex.run(tasks)
    assert _key(res) == expected
    assert ex.stats.worker_failures == 1 and ex.stats.redispatched == 3
    assert ex.alive == [0]
    assert any("re-dispatched" in s for s in ex.stats.incidents)
    assert sum(r.attempts > 1 for r in res) == 3
    # The next frame runs on the survivor alone.
    assert _key(ex.run(tasks)) == expected


def test_transfer_time_model() -> None:
    img = np.zeros((100, 100, 3), np.uint8)  # 30 000 bytes
    with LocalExecutor(1, factory=blob_factory, link_bandwidth_bps=24e6) as ex:
        r = ex.run([DetectTask(0, img, "blob", 100)])[0]
    assert r.transfer_ms == pytest.approx(30000 * 8 / 24e6 * 1e3)


def test_make_executor_errors() -> None:
    with pytest.raises(InputError, match="not one of local, ray"):
        make_executor("gpu")
    with pytest.raises(InputError, match="n_workers"):
        LocalExecutor(0)
