"""Ray executor: embedded local Ray, a two-node cluster on 127.0.0.1, worker death."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from test_executors import _key, _tasks

from edgerl.runtime import LocalExecutor
from edgerl.runtime.ray_executor import RayExecutor
from edgerl.runtime.testing import blob_factory
from edgerl.utils.errors import InputError


def test_unreachable_address_fails_fast() -> None:
    # Runs first in this module, before any Ray is started in the process.
    assert not ray.is_initialized()
    with pytest.raises(InputError, match="127.0.0.1:1"):
        RayExecutor(1, address="127.0.0.1:1", factory=blob_factory)


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head node and one worker node, both on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_two_node_cluster_runs_frame(two_node_cluster) -> None:
    tasks = _tasks(6)
    with LocalExecutor(2, factory=blob_factory, threads=False) as ref:
        expected = _key(ref.run(tasks))
    ex = RayExecutor(2, address=two_node_cluster.address, factory=blob_factory, num_cpus_per_worker=1)
    try:
        assert len(set(ex.node_ids())) == 2  # one actor per node
        res = ex.run(tasks)
        assert _key(res) == expected
        assert {r.worker for r in res} == {0, 1}
    finally:
        ex.close()


def test_ray_worker_death_recovered(two_node_cluster) -> None:
    tasks = _tasks(6, seed=1)
    with LocalExecutor(1, factory=blob_factory) as ref:
        expected = _key(ref.run(tasks))
    ex = RayExecutor(2, factory=blob_factory, fail_after_tasks={0: 1}, num_cpus_per_worker=1)
    try:
        res = ex.run(tasks)
        assert _key(res) == expected
        assert ex.stats.worker_failures == 1 and ex.stats.redispatched >= 1
        assert ex.alive == [1]
    finally:
        ex.close()


def test_real_detector_same_boxes_local_and_ray(two_node_cluster) -> None:
    """RE-POSE's uniform stage with the built-in ONNX detector: box for box equal on both executors."""
    from edgerl.repose.pipeline import ReposeConfig, Uniform
    from edgerl.vision.builtin import builtin_model_path
    from edgerl.vision.synth import SynthConfig, render_scene

    if not builtin_model_path("n").is_file():
        pytest.skip("built-in detector absent")
    frame = render_scene(SynthConfig().resized(960, 540), np.random.default_rng(700_500)).image
    cfg = ReposeConfig(n_workers=2, uniform_option="person_n@512")
    with LocalExecutor(2) as local:
        a = Uniform(local, cfg)(frame).detections
    ex = RayExecutor(2, num_cpus_per_worker=1)
    try:
        b = Uniform(ex, cfg)(frame).detections
    finally:
        ex.close()
    assert len(a) > 0
    order_a, order_b = np.lexsort(a.boxes.T), np.lexsort(b.boxes.T)
    np.testing.assert_allclose(a.boxes[order_a], b.boxes[order_b], atol=1e-3)
    np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], atol=1e-5)
