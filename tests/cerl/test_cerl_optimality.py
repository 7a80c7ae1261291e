"""Tasks-at-start tiny instances, fixed topologies, n-step replay targets, cerl-optimality set-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgerl.cerl.baselines import evaluate_policy, make_baseline
from edgerl.cerl.dqn import DDQNAgent, DQNLearner
from edgerl.cerl.env import BatchedCerlEnv, CerlEnv, make_config
from edgerl.cerl.exact import exact_min_cost
from edgerl.cerl.experiment import EVAL_SEED, CerlExperimentConfig, tiny_instances
from edgerl.rl.replay import DictReplayBuffer
from edgerl.utils.errors import InputError

TINY = dict(
    n_devices=3,
    max_tasks=2,
    share_levels_pct=(25, 50, 100),
    n_subcarriers=2,
    slot_s=1.0,
    episode_slots=1,
    arrival_rate_per_s=0.0,
    drain_at_end=True,
)


# --------------------------------------------------------------------------- environment


def test_random_initial_tasks_are_drawn_per_episode_after_the_topology() -> None:
    env = CerlEnv(config=dict(TINY, initial_tasks_min=1, initial_tasks_max=2))
    plain = CerlEnv(config=TINY)
    counts = set()
    for seed in range(40):
        env.reset(seed=seed)
        plain.reset(seed=seed)
        sim = env.sim
        n_live = int(sim.active[0].sum())
        counts.add(n_live)
        assert 1 <= n_live <= 2
        assert set(sim.src[0][sim.active[0]].tolist()) <= {1, 2, 3}
        # Capacities and positions are drawn first: the same as without initial tasks.
        np.testing.assert_array_equal(sim.cap_hz, plain.sim.cap_hz)
        np.testing.assert_array_equal(sim.pos_m, plain.sim.pos_m)
        assert not plain.sim.active.any()  # no arrivals, no initial tasks
    assert counts == {1, 2}


def test_batched_copies_draw_their_own_initial_tasks() -> None:
    cfg = dict(TINY, initial_tasks_min=1, initial_tasks_max=2)
    batched = BatchedCerlEnv(num_envs=6, config=cfg)
    batched.reset(seed=10)
    for i in range(6):
        single = CerlEnv(config=cfg)
        single.reset(seed=10 + i)
        np.testing.assert_array_equal(batched.sim.src[i], single.sim.src[0])
        np.testing.assert_array_equal(batched.sim.active[i], single.sim.active[0])


def test_fixed_topology_overrides_the_draws_and_keeps_the_stream() -> None:
    caps = (0.2, 0.5, 1.0)
    pos = ((0.0, 0.0), (100.0, 50.0), (250.0, 250.0))
    fixed = CerlEnv(config=dict(TINY, device_capacities_ghz=caps, device_positions_m=pos,
                                initial_tasks_min=2, initial_tasks_max=2))
    drawn = CerlEnv(config=dict(TINY, initial_tasks_min=2, initial_tasks_max=2))
    for seed in (0, 1):
        fixed.reset(seed=seed)
        drawn.reset(seed=seed)
        np.testing.assert_allclose(fixed.sim.cap_hz[0], [10e9, 0.2e9, 0.5e9, 1.0e9])
        np.testing.assert_allclose(fixed.sim.pos_m[0, 1:], pos)
        # The task sources come after the (overridden) draws: equal to the drawn topology's.
        np.testing.assert_array_equal(fixed.sim.src, drawn.sim.src)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"device_capacities_ghz": (0.2, 0.5)}, "device_capacities_ghz"),
        ({"device_capacities_ghz": (0.2, 0.5, -1.0)}, "device_capacities_ghz"),
        ({"device_positions_m": ((0.0, 0.0),)}, "device_positions_m"),
        ({"initial_tasks_min": 2, "initial_tasks_max": 1}, "initial_tasks_min"),
        ({"initial_tasks_max": -1}, "initial_tasks_max"),
    ],
)
def test_bad_topology_or_task_counts_are_refused(bad, field) -> None:
    with pytest.raises(InputError, match=field):
        make_config(dict(TINY, **bad))


# --------------------------------------------------------------------------- n-step replay


def _filled_buffer(n_envs: int, steps: int, seed: int = 0):
    env = BatchedCerlEnv(num_envs=n_envs, config=dict(TINY, initial_tasks_min=1, initial_tasks_max=2))
    obs, _ = env.reset(seed=seed)
    buf = DictReplayBuffer(env.single_observation_space, env.single_action_space, 1000, n_envs)
    rng = np.random.default_rng(seed)
    log = []  # per step: (rewards, terminated, ended, next obs as stored)
    for _ in range(steps):
        act = env.decoder.sample(obs, rng)
        nxt, rew, term, trunc, info = env.step(act)
        buf.add(obs, act, rew, term, trunc, info.get("final_obs"))
        ended = term | trunc
        true_next = {k: np.where(ended.reshape(-1, *[1] * (v.ndim - 1)), info["final_obs"][k], v)
                     for k, v in nxt.items()} if ended.any() else nxt
        log.append((rew.astype(np.float64), term.copy(), ended.copy(), true_next))
        obs = nxt
    return buf, log


def test_n_step_sample_equals_a_loop_over_the_stored_transitions() -> None:
    gamma, n = 0.9, 3
    buf, log = _filled_buffer(n_envs=3, steps=12)
    s = buf.sample_n_step(300, np.random.default_rng(4), n, gamma)
    newest = len(log) - 1  # the newest step has no stored successor row yet
    seen_k = set()
    for i in range(len(s.rows)):
        t, e = int(s.rows[i]), int(s.envs[i])
        ret, k = 0.0, 0
        while True:  # brute force: walk forward until n steps, an episode end, or the newest
            ret += gamma**k * log[t + k][0][e]
            k += 1
            if k == n or log[t + k - 1][2][e] or t + k >= newest:
                break
        last = t + k - 1
        seen_k.add(k)
        assert s.rewards[i] == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert s.discount[i] == pytest.approx(gamma**k)
        assert s.terminated[i] == float(log[last][1][e])
        np.testing.assert_allclose(
            s.next_obs["x"][i], log[last][3]["x"][e], atol=1e-3, err_msg=f"row {t} env {e}"
        )
    assert {1, 2, 3} <= seen_k  # episode ends and full windows both occur


def test_one_step_sample_matches_plain_sampling() -> None:
    buf, _ = _filled_buffer(n_envs=2, steps=6)
    a = buf.sample(50, np.random.default_rng(7))
    b = buf.sample_n_step(50, np.random.default_rng(7), 1, 0.8)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.terminated, b.terminated)
    np.testing.assert_array_equal(a.next_obs["x"], b.next_obs["x"])
    np.testing.assert_allclose(b.discount, 0.8)
    with pytest.raises(InputError, match="n_step"):
        buf.sample_n_step(4, np.random.default_rng(0), 0, 0.8)


def test_td_target_uses_the_per_sample_discount() -> None:
    agent = DDQNAgent(TINY, config=dict(learning_starts=16, batch_size=8, gamma=0.9, n_envs=2,
                                        net=dict(gcn_dims=(8, 8, 8), hidden_dim=8, key_dim=8)),
                      seed=0)
    agent._budget = 100
    agent._warmup()
    learner: DQNLearner = agent.learner
    one = agent.buffer.sample_n_step(16, np.random.default_rng(1), 1, 0.9)
    plain = agent.buffer.sample(16, np.random.default_rng(1))
    torch.testing.assert_close(learner.td_target(one), learner.td_target(plain))
    # y - r = discount * (1 - terminated) * Q': doubling the discount doubles that part.
    from dataclasses import replace

    two = replace(one, discount=one.discount * 2.0)
    r = torch.from_numpy(one.rewards)
    torch.testing.assert_close(learner.td_target(two) - r, 2.0 * (learner.td_target(one) - r))


def test_n_step_agent_learns_without_error() -> None:
    agent = DDQNAgent(TINY, config=dict(learning_starts=16, batch_size=8, n_step=3, n_envs=2,
                                        steps_per_epoch=2,
                                        net=dict(gcn_dims=(8, 8, 8), hidden_dim=8, key_dim=8)),
                      seed=0)
    agent.learn(total_steps=40)
    assert agent.learner.n_updates > 0


# --------------------------------------------------------------------------- cerl-optimality


def test_tiny_instances_enumerate_every_task_set_of_each_topology() -> None:
    cfg = CerlExperimentConfig(tiny_topologies=2)
    insts, train = tiny_instances(cfg)
    # 3 devices, 1 or 2 tasks: 3 single tasks + 6 multisets of two sources = 9 per topology.
    assert len(insts) == 2 * 9
    assert sorted(train) == ["random", "topology"] and sorted(train["topology"]) == [0, 1]
    labels = [i.label for i in insts if i.topology == 1]
    assert labels == ["1:1", "1:2", "1:3", "1:1-1", "1:1-2", "1:1-3", "1:2-2", "1:2-3", "1:3-3"]
    topo0 = CerlEnv(config=dict(cfg.tiny_env))
    topo0.reset(seed=EVAL_SEED)
    env = insts[0].env
    np.testing.assert_allclose(np.asarray(env.device_capacities_ghz) * 1e9, topo0.sim.cap_hz[0, 1:])
    assert env.arrival_rate_per_s == 0.0 and env.drain_at_end and env.initial_tasks_max == 0
    tr = train["topology"][0]
    assert (tr.initial_tasks_min, tr.initial_tasks_max) == (1, 2)
    assert tr.device_positions_m == env.device_positions_m
    assert train["random"][-1].device_positions_m is None


def test_tasks_at_start_instance_has_exactly_its_tasks_and_exact_is_a_lower_bound() -> None:
    cfg = CerlExperimentConfig(tiny_topologies=1, tiny_task_counts=(1, 1))
    insts, _ = tiny_instances(cfg)
    for inst in insts:
        e = CerlEnv(config=inst.env)
        e.reset(seed=inst.seed, options=inst.options)
        assert e.sim.src[0][e.sim.active[0]].tolist() == inst.options["initial_tasks"]
        best, plan = exact_min_cost(inst.env, inst.seed, inst.options)
        # Replaying the plan gives its cost; no baseline does better on the same instance.
        e.reset(seed=inst.seed, options=inst.options)
        total = 0.0
        for a in plan:
            total -= e.step(a)[1]
        assert total == pytest.approx(best)
        for b in ("lc", "ec", "random"):
            got = evaluate_policy(inst.env, make_baseline(b, inst.env, seed=0), 1, inst.seed, inst.options)
            assert got["cost_mean"] >= best - 1e-9


def test_optimality_protocol_defaults_and_refusals() -> None:
    assert CerlExperimentConfig().protocols() == ["topology", "random"]
    assert CerlExperimentConfig(tiny_mode="poisson").protocols() == ["random"]
    with pytest.raises(Exception, match="topology"):
        CerlExperimentConfig(tiny_mode="poisson", tiny_protocols=["topology"])
    with pytest.raises(Exception, match="tiny_task_counts"):
        CerlExperimentConfig(tiny_task_counts=(2, 1))
    with pytest.raises(InputError, match="max_tasks"):
        tiny_instances(CerlExperimentConfig(tiny_task_counts=(1, 3)))


def test_poisson_mode_keeps_the_seeded_instances() -> None:
    cfg = CerlExperimentConfig(tiny_mode="poisson", tiny_instances=4)
    insts, train = tiny_instances(cfg)
    assert [i.seed for i in insts] == [EVAL_SEED + i for i in range(4)]
    assert all(i.options is None and i.topology == -1 for i in insts)
    assert insts[0].env.arrival_rate_per_s == 0.3 and list(train) == ["random"]
