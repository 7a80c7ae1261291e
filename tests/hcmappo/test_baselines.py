"""HC-MAPPO-L heuristics: deployment rules, per-user rules, the paper's Greedy, Greedy-Cost's
cost model, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

import edgerl.hcmappo.catalog as catalog_mod
from edgerl.edge.profiler import profile_model
from edgerl.hcmappo.baselines import (
    BASELINES,
    PAPER_BASELINES,
    REFERENCE_BASELINES,
    EdgeOnly,
    Greedy,
    GreedyCost,
    LocalOnly,
    LruDeployer,
    RandomPolicy,
    evaluate_policy,
    fill_in_order,
    make_baseline,
    popularity_deployment,
)
from edgerl.hcmappo.batched import BatchedHcEnv
from edgerl.hcmappo.catalog import ServiceCatalog
from edgerl.hcmappo.config import PAPER_MODELS
from edgerl.utils.errors import InputError

LEAK = {
    n: 1.0 - np.arange(profile_model(n).num_layers + 1) / profile_model(n).num_layers
    for n in PAPER_MODELS
}
SMALL = dict(n_servers=3, n_users=6, episode_slots=8, deploy_interval_slots=4)


@pytest.fixture(autouse=True)
def _default_leakage(monkeypatch):
    # The default leakage tables come from edgerl.edge.privacy; 1 - z / L stands in for them.
    monkeypatch.setattr(catalog_mod, "_LEAKAGE", dict(LEAK))


def test_fill_in_order_golden() -> None:
    # sizes 0.5, 0.3, 0.4, 0.15 in index order: 0.5 -> 0.8 -> (1.2 does not fit) -> 0.95
    keep = fill_in_order(np.array([[0, 1, 2, 3]]), np.array([[0.5, 0.3, 0.4, 0.15]]))
    assert keep.tolist() == [[True, True, False, True]]
    # reversed order: 0.15 -> 0.55 -> 0.85 -> (1.35 does not fit)
    keep = fill_in_order(np.array([[3, 2, 1, 0]]), np.array([[0.5, 0.3, 0.4, 0.15]]))
    assert keep.tolist() == [[False, True, True, True]]
    # a service filling the storage exactly is refused by the safety margin
    assert not fill_in_order(np.array([[0]]), np.array([[1.0]])).any()


def _deploy_obs(
    env: BatchedHcEnv, local: np.ndarray, glob: np.ndarray, size: np.ndarray
) -> np.ndarray:
    lay = env.layouts["deploy"]
    obs = np.zeros((1, 1, env.obs_dims["deploy"]), dtype=np.float32)
    obs[0, 0, lay["requests_local"]] = local
    obs[0, 0, lay["requests_global"]] = glob
    obs[0, 0, lay["size_fraction"]] = size
    obs[0, 0, lay["progress"]] = 0.5
    return obs


def test_popularity_deployment_prefers_local_requests() -> None:
    env = BatchedHcEnv(
        1, n_servers=1, n_users=2, models=("lenet7", "resnet18"), services_per_model=2
    )
    # 4 services of size 0.4 each: two fit. Local counts decide, global counts break the tie.
    size = np.full(4, 0.4)
    obs = _deploy_obs(env, np.array([0.0, 0.5, 0.5, 0.1]), np.array([0.9, 0.1, 0.3, 0.0]), size)
    x = popularity_deployment(obs, env.layouts["deploy"])
    assert x[0, 0].tolist() == [False, True, True, False]
    # equal local counts: service 2 (more global requests) before service 1
    obs = _deploy_obs(env, np.array([0.0, 0.5, 0.5, 0.5]), np.array([0.0, 0.1, 0.3, 0.2]), size)
    x = popularity_deployment(obs, env.layouts["deploy"])
    assert x[0, 0].tolist() == [False, False, True, True]


def test_lru_keeps_recent_services_and_forgets_at_episode_start() -> None:
    env = BatchedHcEnv(
        1, n_servers=1, n_users=2, models=("lenet7", "resnet18"), services_per_model=2
    )
    lru = LruDeployer(4)
    size = np.full(4, 0.4)
    lru.record(np.array([[0, 0]]), np.array([[3, 0]]), 1)  # slot 1: services 3 and 0
    lru.record(np.array([[0, 0]]), np.array([[1, 1]]), 1)  # slot 2: service 1
    obs = _deploy_obs(env, np.zeros(4), np.array([0.0, 0.0, 0.9, 0.0]), size)
    # most recent first: 1 (slot 2), then 0 and 3 (slot 1, index order): 1 and 0 fit
    assert lru.deploy(obs, env.layouts["deploy"])[0, 0].tolist() == [True, True, False, False]
    # a new episode (progress 0) forgets: global requests rank service 2 first
    obs[0, 0, env.layouts["deploy"]["progress"]] = 0.0
    assert lru.deploy(obs, env.layouts["deploy"])[0, 0].tolist() == [True, False, True, False]


def _user_phase(env: BatchedHcEnv, seed: int = 3) -> None:
    env.reset(seed=seed)
    env.step_deploy(popularity_deployment(env.observe()["deploy_obs"], env.layouts["deploy"]))


def test_local_and_edge_only_rules() -> None:
    env = BatchedHcEnv(2, **SMALL)
    _user_phase(env)
    obs = env.observe()
    zmask = obs["user_split_mask"]
    local = LocalOnly(env).act(env)
    edge = EdgeOnly(env).act(env)
    assert (edge[..., 1] == 0).all()
    # deepest valid split: valid, and nothing valid above it
    z = local[..., 1]
    assert np.take_along_axis(zmask, z[..., None], -1).all()
    assert not any(zmask[b, k, z[b, k] + 1 :].any() for b in range(2) for k in range(6))
    # channel-based association: the strongest gain g_jk, whatever the server caches
    strongest = env.gain.argmax(axis=1)  # (B, J, K) -> (B, K)
    np.testing.assert_array_equal(local[..., 0], strongest)
    np.testing.assert_array_equal(edge[..., 0], strongest)


def _tiny_catalog() -> ServiceCatalog:
    # One model, L = 2 (Z = 3). Per sample: device FLOPs 0 / 1e9 / 2e9, edge FLOPs 2e9 / 1e9 /
    # 0, upload 1 MB / 0.5 MB / 0, device weights 0 / 1 MB / 2 MB.
    return ServiceCatalog(
        model_names=("lenet7",),
        services_per_model=1,
        num_layers=np.array([2]),
        split_valid=np.ones((1, 3), dtype=bool),
        device_flops=np.array([[0.0, 1e9, 2e9]]),
        edge_flops=np.array([[2e9, 1e9, 0.0]]),
        upload_bytes=np.array([[1e6, 0.5e6, 0.0]]),
        device_param_bytes=np.array([[0.0, 1e6, 2e6]]),
        edge_param_bytes=np.array([[2e6, 1e6, 0.0]]),
        leakage=np.array([[1.0, 0.5, 0.0]]),
        model_bytes=np.array([3e6]),
        input_bytes=np.array([1e6]),
    )


def _tiny_env(**overrides) -> BatchedHcEnv:
    """Three copies, two servers of 10 MHz and 100 GFLOPS, two users, one service.

    Copies 0 and 1 cache the service on server 0 only, copy 2 nowhere. Every gain to server 0
    gives an SNR of 3 over 5 MHz (half the band) at 1 W, so both links run at
    5e6 * log2(1 + 3) = 10 Mbit/s at an equal share of 1/2; server 1's gains are ten times
    stronger.
    """
    env = BatchedHcEnv(
        3,
        n_servers=2,
        n_users=2,
        models=("lenet7",),
        services_per_model=1,
        episode_slots=4,
        deploy_interval_slots=2,
        catalog=_tiny_catalog(),
        **overrides,
    )
    env.reset(seed=0)
    env.step_deploy(np.array([[[1], [0]], [[1], [0]], [[0], [0]]], dtype=bool))
    assert env.phase == "user"
    env.server_bandwidth_hz = np.full((3, 2), 10e6)
    env.server_flops = np.full((3, 2), 100e9)
    env.server_tx_w = np.ones((3, 2))
    env.user_tx_w = np.ones((3, 2))
    g0 = 3.0 * env.noise_w_per_hz * 5e6 / 1.0
    env.gain = np.broadcast_to(np.array([g0, 10.0 * g0])[None, :, None], (3, 2, 2)).copy()
    env.user_flops = np.array([[1e9, 10e9], [1e9, 1e9], [1e9, 1e9]])
    env.req_batch = np.array([[1.0, 2.0], [4.0, 4.0], [1.0, 1.0]])
    env.req_service = np.zeros((3, 2), dtype=np.int64)
    return env


def test_paper_greedy_golden_tiny_instance() -> None:
    env = _tiny_env()
    greedy = Greedy(env)
    act = greedy.act(env)
    # Copies 0, 1: only server 0 caches the service, so both users take it (server 1 is
    # stronger but lacks it); copy 2: nobody caches it, so the strongest overall, server 1.
    assert act[..., 0].tolist() == [[0, 0], [0, 0], [1, 1]]
    # Equal shares on server 0 with n_0 = 2: 5 MHz -> 10 Mbit/s each way, 50 GFLOPS.
    # Copy 0, user 0 (f_k = 1 GFLOPS, batch 1):
    #   z = 0: upload 8e6 bit / 1e7 = 0.8, edge 2e9 / 50e9 = 0.04               -> 0.84 s
    #   z = 1: download 8e6 / 1e7 = 0.8, local 1e9 / 1e9 = 1, upload 4e6 / 1e7 = 0.4,
    #          edge 1e9 / 50e9 = 0.02                                          -> 2.22 s
    #   z = 2: download 1.6e7 / 1e7 = 1.6, local 2e9 / 1e9 = 2                  -> 3.6 s
    # Copy 0, user 1 (f_k = 10 GFLOPS, batch 2):
    #   z = 2: download 1.6 (once per request) + local 2 * 2e9 / 10e9 = 0.4     -> 2.0 s
    # Copy 1, both users (f_k = 1 GFLOPS, batch 4):
    #   z = 0: upload 4 * 0.8 = 3.2 + edge 4 * 0.04 = 0.16                     -> 3.36 s
    #   z = 1: 0.8 + 4 * 1 + 4 * 0.4 + 4 * 0.02                                -> 6.48 s
    #   z = 2: 1.6 + 4 * 2                                                     -> 9.6 s
    est = greedy.estimated_delay(env, act[..., 0])
    np.testing.assert_allclose(est[0, 0], [0.84, 2.22, 3.6], rtol=1e-12)
    np.testing.assert_allclose(est[0, 1, 2], 2.0, rtol=1e-12)
    np.testing.assert_allclose(est[1, 0], [3.36, 6.48, 9.6], rtol=1e-12)
    # deepest split within 3 s: 1 for user 0, 2 for user 1; copy 1 has none within 3 s, so
    # the fastest, z = 0
    assert act[0, :, 1].tolist() == [1, 2]
    assert act[1, :, 1].tolist() == [0, 0]
    # Local-Only and Edge-Only associate by channel alone: server 1 everywhere
    assert (LocalOnly(env).act(env)[..., 0] == 1).all()
    assert (EdgeOnly(env).act(env)[..., 0] == 1).all()


def test_paper_greedy_memory_mask_limits_the_depth() -> None:
    # A device that cannot hold layer 2's weights (2 MB) stops at z = 1 even though z = 2
    # would meet the limit (user 1 of copy 0 above: 2.0 s).
    env = _tiny_env()
    env.user_memory_bytes = np.full((3, 2), 1.5e6)
    act = Greedy(env).act(env)
    assert act[0, 1, 1] == 1


@pytest.mark.parametrize(("timeout_fails", "served"), [(False, True), (True, False)])
def test_slow_served_request_eq5(timeout_fails: bool, served: bool) -> None:
    # Copy 1 of the tiny instance, both users at z = 2 on server 0 (bandwidth 1/2 each, no
    # edge compute): 1.6 s download + 4 * 2e9 / 1e9 = 8 s local = 9.6 s. Eq. (5) charges it
    # its own delay (above tau_fail = 5 s); with time-outs it fails at tau_fail.
    env = _tiny_env(fail_delay_s=5.0, timeout_fails=timeout_fails)
    env.step_user(np.zeros((3, 2), dtype=np.int64), np.array([[0, 0], [2, 2], [0, 0]]))
    step = env.step_alloc(np.ones((3, 2, 2)), np.ones((3, 2, 2)))
    assert step.info["success"][1].tolist() == [served, served]
    want = 9.6 if served else 5.0
    np.testing.assert_allclose(step.info["delay_s"][1], [want, want], rtol=1e-12)
    np.testing.assert_allclose(step.costs["user"][1], [want, want], rtol=1e-12)


def test_greedy_cost_estimate_equals_realised_cost_for_one_user() -> None:
    # With one user, "equal shares" is the whole server: the estimate must equal the slot's
    # realised user cost exactly.
    env = BatchedHcEnv(3, n_servers=2, n_users=1, episode_slots=4, deploy_interval_slots=2)
    greedy = GreedyCost(env)
    for seed in (0, 1, 2):
        _user_phase(env, seed)
        est = greedy.estimated_cost(env, np.ones((3, 2)))
        a = greedy.act(env)
        want = est[np.arange(3), 0, a[:, 0, 0], a[:, 0, 1]]
        obs = env.observe()
        masked = np.where(
            obs["user_server_mask"][:, 0, :, None] & obs["user_split_mask"][:, 0, None, :],
            est[:, 0],
            np.inf,
        )
        np.testing.assert_allclose(want, masked.reshape(3, -1).min(-1))
        env.step(a)
        step = env.step(greedy.act(env))
        np.testing.assert_allclose(step.info["user_cost"][:, 0], want, rtol=1e-9)


@pytest.mark.parametrize("name", ["greedy", "greedy-cost", "local-only", "edge-only"])
def test_channel_rules_need_the_environment(name: str) -> None:
    env = BatchedHcEnv(1, **SMALL)
    _user_phase(env)
    with pytest.raises(InputError, match="BatchedHcEnv"):
        make_baseline(name, env).act(env.observe())


def test_baseline_names() -> None:
    assert PAPER_BASELINES == ("local-only", "edge-only", "greedy")
    assert REFERENCE_BASELINES == ("greedy-cost",)
    assert set(BASELINES) == {*PAPER_BASELINES, "random", *REFERENCE_BASELINES}
    env = BatchedHcEnv(1, **SMALL)
    assert isinstance(make_baseline("greedy", env), Greedy)
    assert isinstance(make_baseline("greedy-cost", env), GreedyCost)


def test_random_policy_respects_masks_and_storage() -> None:
    env = BatchedHcEnv(2, **SMALL, server_storage_gb=(0.3, 0.6))
    pol = RandomPolicy(env, seed=5)
    env.reset(seed=0)
    for _ in range(2 * 8 + 4):
        if env.phase == "user":
            obs = env.observe()
            a = pol.act(env)
            assert np.take_along_axis(obs["user_server_mask"], a[..., :1], -1).all()
            assert np.take_along_axis(obs["user_split_mask"], a[..., 1:], -1).all()
        else:
            a = pol.act(env)
        if env.phase == "deploy":
            assert ((a * env.service_bytes).sum(-1) <= env.server_storage_bytes).all()
        env.step(a)  # raise mode: an invalid action would raise


def test_evaluate_policy_is_reproducible_and_shaped() -> None:
    a = evaluate_policy("edge-only", SMALL, episodes=2)
    b = evaluate_policy("edge-only", SMALL, episodes=2)
    assert a == b
    assert len(a["user_cost_per_user"]) == 2 * SMALL["n_users"]
    np.testing.assert_allclose(np.mean(a["user_cost_per_user"]), a["user_cost_mean"])
    for name in BASELINES:
        r = evaluate_policy(name, SMALL, episodes=1)
        assert 0.0 <= r["success_rate"] <= 1.0
        assert np.isfinite([r["delay_s_mean"], r["user_cost_mean"], r["energy_j_mean"]]).all()


def test_unknown_baseline() -> None:
    env = BatchedHcEnv(1, **SMALL)
    with pytest.raises(InputError, match="expected one of"):
        make_baseline("oracle", env)
