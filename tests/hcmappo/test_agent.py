"""HC-MAPPO-L agent: deployment masks, user masks, Lagrangian, GAE streams, learning, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import edgerl.hcmappo.agent as agent_mod
from edgerl.hcmappo.agent import METHODS, DeployPolicy, HcAgent, UserActor, method_config
from edgerl.hcmappo.baselines import evaluate_policy
from edgerl.hcmappo.batched import BatchedHcEnv
from edgerl.utils.errors import InputError

from ._tiny import TINY_AGENT, TINY_ENV, _setup  # noqa: F401  (_setup: autouse fixture)


def _agent(method: str = "hc-mappo-l", env: dict | None = None, seed: int = 0, **agent) -> HcAgent:
    return HcAgent(
        {**TINY_ENV, **(env or {})}, method_config(method, {**TINY_AGENT, **agent}), seed=seed
    )


# --------------------------------------------------------------------------- deployment GRU


@pytest.mark.parametrize("stop", [False, True])
def test_deploy_logprob_recomputed_equals_sampled(stop: bool) -> None:
    torch.manual_seed(0)
    n_i, n = 12, 64
    pol = DeployPolicy(obs_dim=7, n_services=n_i, hidden=24, state_dim=5, stop_action=stop)
    obs = torch.rand(n, 7)
    state = torch.rand(n, 5)
    size = torch.rand(n, n_i, dtype=torch.float64) * 0.45 + 0.02
    gen = torch.Generator().manual_seed(1)
    s = pol.sample(obs, size, state, gen=gen)
    logp, ent, value, masks = pol.evaluate(obs, size, s.actions, state)
    # identical masks (one mask function, same order of bookkeeping) and equal log-probs
    assert torch.equal(masks, s.masks)
    torch.testing.assert_close(logp, s.log_prob, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, s.entropy, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, s.value, rtol=1e-5, atol=1e-5)
    # every chosen action was allowed by the mask of its step
    valid = s.actions >= 0
    picked = masks.gather(2, s.actions.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    assert picked[valid].all()
    # never over the storage, and without a stop the sequence only ends when nothing fits
    used = (size * s.deployment).sum(1)
    assert (used <= 1.0).all()
    if not stop:
        left = ~s.deployment & (used.unsqueeze(-1) + size <= 1.0 - 1e-5)
        assert not left.any()
    # a different (but valid) action sequence gets a different log-prob
    other = pol.sample(obs, size, state, gen=torch.Generator().manual_seed(2))
    differs = (other.actions != s.actions).any(1)
    assert differs.any()
    assert not torch.allclose(other.log_prob[differs], s.log_prob[differs])


def test_agent_deployments_fit_the_storage() -> None:
    # Small storage: only a few services fit; the environment raises on any overflow.
    ag = _agent(env={"server_storage_gb": (0.55, 1.2)})
    env = BatchedHcEnv(3, ag.env_config)
    env.reset(seed=4)
    for det in (True, False):
        x = ag.act(env, deterministic=det)
        assert ((x * env.service_bytes).sum(-1) <= env.server_storage_bytes).all()
        assert x.any(-1).all()
    env.step(x)


# --------------------------------------------------------------------------- user heads


def test_user_heads_never_choose_masked_actions() -> None:
    torch.manual_seed(0)
    feats = np.arange(10).reshape(2, 5)  # two entries per server among the 12 local ones
    actor = UserActor(
        local_dim=12,
        shared_dim=4,
        n_servers=5,
        n_splits=7,
        hidden=16,
        split_hidden=8,
        server_features=feats,
    )
    g, k = 30, 9
    rng = np.random.default_rng(0)
    smask = torch.as_tensor(rng.random((g, k, 5)) < 0.4)
    zmask = torch.as_tensor(rng.random((g, k, 7)) < 0.3)
    smask[..., 2] |= ~smask.any(-1)
    zmask[..., 0] |= ~zmask.any(-1)
    gen = torch.Generator().manual_seed(3)
    for det in (False, True):
        for _ in range(20):
            server, split, logp, _ = actor(
                torch.rand(g, k, 12), torch.rand(g, 4), smask, zmask, deterministic=det, gen=gen
            )
            assert smask.gather(-1, server.unsqueeze(-1)).all()
            assert zmask.gather(-1, split.unsqueeze(-1)).all()
            assert torch.isfinite(logp).all()


def test_agent_user_actions_follow_the_environment_masks() -> None:
    ag = _agent(env={"mask_uncached_servers": True})
    env = BatchedHcEnv(2, ag.env_config)
    env.reset(seed=1)
    env.step(ag.act(env))
    obs = env.observe()
    for det in (True, False):
        a = ag.act(env, deterministic=det)
        assert np.take_along_axis(obs["user_server_mask"], a[..., :1], -1).all()
        assert np.take_along_axis(obs["user_split_mask"], a[..., 1:], -1).all()


# --------------------------------------------------------------------------- Lagrangian


def test_lambda_rises_by_the_dual_step_when_delay_exceeds_the_limit() -> None:
    # Tiny devices: most requests time out (10 s), so the mean delay is far above 3 s.
    ag = _agent(env={"user_compute_gflops": (0.5, 1.0)})
    seen: list[dict] = []
    lam0 = ag.lambda_
    ag.learn(2, callback=seen.append)
    lam = lam0
    for info in seen:
        assert info["cost_mean"] > 3.0
        np.testing.assert_allclose(info["cost_mean"], info["delay_s_mean"], rtol=1e-9)
        lam = min(100.0, max(0.0, lam + 0.01 * (info["cost_mean"] - 3.0)))  # eq. (33)
        assert info["lambda"] == pytest.approx(lam, rel=1e-12)
    assert ag.lambda_ > lam0


def test_lambda_is_projected_into_its_interval() -> None:
    # Limit far above any delay: the step is negative and lambda is clipped at 0.
    ag = _agent(env={"delay_limit_s": 50.0, "fail_delay_s": 60.0})
    ag.learn(1)
    assert ag.lambda_ == 0.0
    # Upper end: lambda may not pass lagrange_max.
    ag = _agent(env={"user_compute_gflops": (0.5, 1.0)}, lagrange_max=0.02)
    ag.learn(2)
    assert ag.lambda_ == pytest.approx(0.02)
    # Without the Lagrangian lambda stays 0.
    ag = _agent("h-mappo", env={"user_compute_gflops": (0.5, 1.0)})
    ag.learn(1)
    assert ag.lambda_ == 0.0


def test_gae_runs_on_the_reward_and_the_cost_streams(monkeypatch) -> None:
    calls: list[np.ndarray] = []
    real_gae = agent_mod.gae

    def spy(rewards, *args, **kwargs):
        calls.append(np.array(rewards))
        return real_gae(rewards, *args, **kwargs)

    monkeypatch.setattr(agent_mod, "gae", spy)
    seen: dict[str, list[np.ndarray]] = {"rewards": [], "costs": []}
    real_alloc = BatchedHcEnv.step_alloc

    def record(self, *args, **kwargs):
        step = real_alloc(self, *args, **kwargs)
        seen["rewards"].append(step.rewards["user"].copy())
        seen["costs"].append(step.costs["user"].copy())
        return step

    monkeypatch.setattr(BatchedHcEnv, "step_alloc", record)
    ag = _agent()
    ag.learn(1)
    rewards, costs = np.stack(seen["rewards"]), np.stack(seen["costs"])
    assert costs.min() > 0.0  # delays
    assert any(c.shape == rewards.shape and np.array_equal(c, rewards) for c in calls)
    assert any(c.shape == costs.shape and np.array_equal(c, costs) for c in calls)
    # ... and also for the allocation and deployment layers (4 streams in all)
    assert len(calls) == 4


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_learns_and_evaluates(method: str) -> None:
    ag = _agent(method)
    seen: list[dict] = []
    ag.learn(2, callback=seen.append)
    assert [i["iteration"] for i in seen] == [1, 2]
    for info in seen:
        for key in (
            "reward",
            "delay_s_mean",
            "user_cost_mean",
            "energy_j_mean",
            "privacy_cost_mean",
            "success_rate",
            "lambda",
        ):
            assert math.isfinite(info[key]), key
        assert info["env_steps"] == info["iteration"] * 2 * 6
    ev = evaluate_policy(ag, ag.env, episodes=2)
    assert 0.0 <= ev["success_rate"] <= 1.0 and math.isfinite(ev["user_cost_mean"])


def test_user_policy_learns_an_obvious_split() -> None:
    # One server, tiny devices and a fast edge: splits beyond the first layers time out
    # (reward -300), z = 0 costs only a little delay. Random splits mostly fail; learning
    # must move the users toward the edge.
    env = dict(
        n_servers=1,
        n_users=4,
        episode_slots=10,
        deploy_interval_slots=10,
        models=("resnet18",),
        services_per_model=1,
        user_compute_gflops=(0.2, 0.3),
        weight_privacy=0.0,
        weight_energy=0.0,
    )
    ag = HcAgent(
        env,
        method_config(
            "heuristic-mappo-l",
            {**TINY_AGENT, "n_envs": 4, "ppo_epochs": 4, "num_minibatches": 1, "lr": 3e-3},
        ),
        seed=0,
    )
    costs: list[float] = []
    ag.learn(25, callback=lambda i: costs.append(i["user_cost_mean"]))
    first, last = np.mean(costs[:3]), np.mean(costs[-3:])
    assert last < 0.5 * first, (first, last)


# --------------------------------------------------------------------------- checkpoints


def test_save_load_round_trip(tmp_path) -> None:
    ag = _agent()
    ag.learn(1)
    path = ag.save(tmp_path / "agent.pt")
    back = HcAgent.load(path)
    assert back.lambda_ == ag.lambda_ and back.iterations == 1
    for name, mod in ag._modules().items():
        for (k, a), (_, b) in zip(
            mod.state_dict().items(), back._modules()[name].state_dict().items()
        ):
            assert torch.equal(a, b), (name, k)
    env = BatchedHcEnv(2, ag.env_config)
    env.reset(seed=9)
    for _ in range(3):  # deploy, user, alloc
        a, b = ag.act(env), back.act(env)
        np.testing.assert_array_equal(a, b)
        env.step(a)
    # training continues from the restored state
    back.learn(1)
    assert back.iterations == 2


def test_checkpoint_for_another_layout_is_refused(tmp_path) -> None:
    path = _agent().save(tmp_path / "agent.pt")
    with pytest.raises(InputError, match="n_users: checkpoint 4 vs environment 5"):
        HcAgent.load(path, {**TINY_ENV, "n_users": 5})
    with pytest.raises(InputError, match="models"):
        HcAgent.load(path, {**TINY_ENV, "models": ("lenet7", "resnet34", "vgg13")})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        HcAgent.load(tmp_path / "junk.pt")


def test_method_switches_are_not_overridable() -> None:
    with pytest.raises(InputError, match="choose the method"):
        method_config("hc-mappo-l", {"lagrangian": False})
    with pytest.raises(InputError, match="expected one of"):
        method_config("mappo")
    assert method_config("h-ippo").centralised_critics is False


# --------------------------------------------------------------------------- discounts and values


def test_user_gamma_zero_makes_user_advantages_immediate() -> None:
    ag = _agent(user_gamma=0.0, value_norm=False)
    rew = np.array([[[-3.0]], [[-5.0]]])  # (T=2, B=1, K=1)
    values = torch.tensor([[[-1.0]], [[-2.0]]])
    done = np.array([[False], [True]])
    # gamma = 0: A_t = r_t - V_t = (-3 + 1, -5 + 2) = (-2, -3); returns = r_t.
    for key in ("user", "cost"):
        adv, ret = ag._targets(key, rew, values, done)
        np.testing.assert_allclose(np.asarray(adv).ravel(), [-2.0, -3.0])
        np.testing.assert_allclose(ret.numpy().ravel(), [-3.0, -5.0])
    # The other layers keep gamma = 0.99, lambda = 0.95:
    # delta_1 = -5 - (-2) = -3 (episode end); delta_0 = -3 + 0.99 (-2) - (-1) = -3.98;
    # A_0 = -3.98 + 0.99 * 0.95 * (-3) = -6.8015.
    adv, _ = ag._targets("alloc", rew, values, done)
    np.testing.assert_allclose(np.asarray(adv).ravel(), [-6.8015, -3.0], rtol=1e-12)


def test_user_gamma_none_uses_the_shared_gamma() -> None:
    ag = _agent(user_gamma=None, value_norm=False)
    rew = np.array([[[-3.0]], [[-5.0]]])
    values = torch.tensor([[[-1.0]], [[-2.0]]])
    done = np.array([[False], [True]])
    adv, _ = ag._targets("user", rew, values, done)
    np.testing.assert_allclose(np.asarray(adv).ravel(), [-6.8015, -3.0], rtol=1e-12)


def test_deploy_gamma_zero_makes_deploy_advantages_immediate() -> None:
    ag = _agent(deploy_gamma=0.0, user_gamma=None, value_norm=False)
    rew = np.array([[[40.0]], [[52.0]]])  # (intervals=2, B=1, J=1): eq. (24) per interval
    values = torch.tensor([[[45.0]], [[50.0]]])
    done = np.array([[False], [True]])
    # gamma = 0: A_n = R_n - V_n = (40 - 45, 52 - 50) = (-5, 2); returns = R_n.
    adv, ret = ag._targets("deploy", rew, values, done)
    np.testing.assert_allclose(np.asarray(adv).ravel(), [-5.0, 2.0])
    np.testing.assert_allclose(ret.numpy().ravel(), [40.0, 52.0])
    # The users keep gamma = 0.99, lambda = 0.95:
    # delta_1 = 52 - 50 = 2 (episode end); delta_0 = 40 + 0.99 * 50 - 45 = 44.5;
    # A_0 = 44.5 + 0.99 * 0.95 * 2 = 46.381.
    adv, _ = ag._targets("user", rew, values, done)
    np.testing.assert_allclose(np.asarray(adv).ravel(), [46.381, 2.0], rtol=1e-12)


def test_deploy_gamma_none_uses_the_shared_gamma() -> None:
    ag = _agent(deploy_gamma=None, value_norm=False)
    rew = np.array([[[40.0]], [[52.0]]])
    values = torch.tensor([[[45.0]], [[50.0]]])
    done = np.array([[False], [True]])
    adv, _ = ag._targets("deploy", rew, values, done)
    np.testing.assert_allclose(np.asarray(adv).ravel(), [46.381, 2.0], rtol=1e-12)


def test_deploy_gamma_out_of_range_is_refused() -> None:
    with pytest.raises(InputError, match="deploy_gamma"):
        method_config("hc-mappo-l", {"deploy_gamma": 1.5})


def test_batched_rollout_values_equal_the_per_slot_critics() -> None:
    ag = _agent()
    with torch.no_grad():
        data, _ = ag._collect()
        u, a = data["user"], data["alloc"]
        assert len(u["vr"]) == len(u["vc"]) == len(u["rew"]) == 6
        for t in range(6):
            want = ag.user_critic(u["local"][t], u["state"][t])
            torch.testing.assert_close(u["vr"][t], want, rtol=1e-5, atol=1e-5)
            want_c = ag.cost_critic(u["local"][t], u["state"][t])
            torch.testing.assert_close(u["vc"][t], want_c, rtol=1e-5, atol=1e-5)
        assert len(a["v"]) == len(a["rew"])
        for t in range(len(a["v"])):
            served = a["valid"][t][..., 1, :]
            local = ag._alloc_critic_local(a["users"][t], a["glob"][t], served)
            want_a = ag.alloc_critic(local, a["state"][t])
            torch.testing.assert_close(a["v"][t], want_a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sample", [True, False])
def test_deterministic_acting_draws_the_deployment_unless_told_not_to(monkeypatch, sample) -> None:
    ag = _agent(deploy_sample_when_deterministic=sample)
    seen: list[bool] = []
    real = DeployPolicy.sample

    def spy(self, *args, deterministic=False, **kwargs):
        seen.append(deterministic)
        return real(self, *args, deterministic=deterministic, **kwargs)

    monkeypatch.setattr(DeployPolicy, "sample", spy)
    env = BatchedHcEnv(1, TINY_ENV, catalog=ag.env.catalog)
    env.reset(seed=3)
    x = ag.act(env, deterministic=True)
    assert seen == [not sample]
    assert x.shape == (1, env.n_servers, env.n_services)
    used = (x * env.service_bytes).sum(-1)
    assert np.all(used <= env.server_storage_bytes)  # (C7) either way


def test_user_entropy_anneal_golden_values() -> None:
    # ent_user 0.05 annealed over N = 4 iterations: 0.05 * max(0, 1 - (n - 1) / 4)
    # n = 1: 0.05; n = 2: 0.05 * 3/4 = 0.0375; n = 3: 0.05 / 2 = 0.025; n = 4: 0.0125;
    # n = 5: 0; n = 6: 0 (stays at 0).
    agent = _agent(ent_user=0.05, ent_user_anneal_iterations=4)
    got = [agent.user_entropy_coef(n) for n in range(1, 7)]
    assert got == pytest.approx([0.05, 0.0375, 0.025, 0.0125, 0.0, 0.0])
    # Without an anneal the paper's constant coefficient is kept.
    assert _agent(ent_user=0.05).user_entropy_coef(1000) == 0.05
    infos: list[float] = []
    agent.learn(3, callback=lambda info: infos.append(info["ent_user_coef"]))
    assert infos == pytest.approx([0.05, 0.0375, 0.025])
    assert agent.user_entropy_coef() == pytest.approx(0.0125)


def test_user_entropy_anneal_is_the_coefficient_the_update_uses() -> None:
    # N = 1: iteration 1 uses 0.05 and iteration 2 uses 0. The same agent trained one
    # iteration at 0.05 and then switched to ent_user = 0 must end with the same weights;
    # one kept at 0.05 must not.
    annealed = _agent(ent_user=0.05, ent_user_anneal_iterations=1, seed=3).learn(2)
    switched = _agent(ent_user=0.05, seed=3).learn(1)
    switched.config = switched.config.model_copy(update={"ent_user": 0.0})
    switched.learn(1)
    constant = _agent(ent_user=0.05, seed=3).learn(2)
    a = torch.cat([p.detach().reshape(-1) for p in annealed.user_actor.parameters()])
    s = torch.cat([p.detach().reshape(-1) for p in switched.user_actor.parameters()])
    c = torch.cat([p.detach().reshape(-1) for p in constant.user_actor.parameters()])
    assert torch.equal(a, s)
    assert not torch.equal(a, c)


def test_user_entropy_anneal_refuses_zero_iterations() -> None:
    with pytest.raises(InputError, match="ent_user_anneal_iterations"):
        method_config("hc-mappo-l", {"ent_user_anneal_iterations": 0})
