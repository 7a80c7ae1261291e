"""HC-MAPPO-L heuristics: deployment rules, per-user rules, Greedy's cost model, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

import edgerl.hcmappo.catalog as catalog_mod
from edgerl.edge.profiler import profile_model
from edgerl.hcmappo.baselines import (
    BASELINES,
    EdgeOnly,
    Greedy,
    LocalOnly,
    LruDeployer,
    RandomPolicy,
    evaluate_policy,
    fill_in_order,
    make_baseline,
    popularity_deployment,
)
from edgerl.hcmappo.batched import BatchedHcEnv
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
    lay = env.layouts["user"]
    zmask = obs["user_split_mask"]
    local = LocalOnly(env).act(env)
    edge = EdgeOnly(env).act(env)
    assert (edge[..., 1] == 0).all()
    # deepest valid split: valid, and nothing valid above it
    z = local[..., 1]
    assert np.take_along_axis(zmask, z[..., None], -1).all()
    assert not any(zmask[b, k, z[b, k] + 1 :].any() for b in range(2) for k in range(6))
    # the server caches the request when some server does, and has the strongest uplink
    cached = obs["user_obs"][..., lay["cached"]] > 0.5
    se = obs["user_obs"][..., lay["uplink_se"]]
    for b in range(2):
        for k in range(6):
            pool = np.flatnonzero(cached[b, k]) if cached[b, k].any() else np.arange(3)
            assert local[b, k, 0] == pool[np.argmax(se[b, k, pool])] == edge[b, k, 0]


def test_greedy_estimate_equals_realised_cost_for_one_user() -> None:
    # With one user, "equal shares" is the whole server: the estimate must equal the slot's
    # realised user cost exactly.
    env = BatchedHcEnv(3, n_servers=2, n_users=1, episode_slots=4, deploy_interval_slots=2)
    greedy = Greedy(env)
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


def test_greedy_needs_the_environment() -> None:
    env = BatchedHcEnv(1, **SMALL)
    _user_phase(env)
    with pytest.raises(InputError, match="BatchedHcEnv"):
        Greedy(env).act(env.observe())


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
