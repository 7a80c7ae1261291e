"""CERL agent, DDQN / D2QN baselines, the branching GCN Q-network and the compact replay buffer."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn.utils import vector_to_parameters

from edgerl.cerl.agent import CerlAgent, CerlAgentConfig, population_fitness
from edgerl.cerl.dqn import (
    BranchValues,
    CerlQNetwork,
    D2QNAgent,
    DDQNAgent,
    QNetConfig,
    adapt_noise_scale,
    flat_params,
    graph_batch,
    greedy_actions,
    is_conditional,
    joint_q,
    masked_branch_max,
    noise_delta,
    union_mask_tensors,
)
from edgerl.cerl.env import BRANCHES, BatchedCerlEnv, CerlEnv, layer_workload_cycles
from edgerl.rl.nets import population_call
from edgerl.rl.replay import DictReplayBuffer
from edgerl.utils.errors import InputError

ENV = dict(
    n_devices=3,
    max_tasks=4,
    share_levels_pct=(25, 50, 100),
    n_subcarriers=3,
    arrival_rate_per_s=0.8,
    episode_slots=10,
)
SMALL_NET = dict(gcn_dims=(16, 32, 32), hidden_dim=32, key_dim=16)
COMMON = dict(learning_starts=64, batch_size=32, net=SMALL_NET)
CERL_CFG = dict(
    COMMON, pop_size=6, elite_actors=2, rl_envs=2, steps_per_generation=4, fitness_batch=16
)
DQN_CFG = dict(COMMON, n_envs=4, steps_per_epoch=4)


def _warm_cerl(seed: int = 0) -> CerlAgent:
    agent = CerlAgent(ENV, config=CERL_CFG, seed=seed)
    agent._budget = 1000
    agent._warmup()
    return agent


# --------------------------------------------------------------------------- replay buffer


def test_replay_stores_compactly_and_returns_exact_transitions() -> None:
    env = BatchedCerlEnv(num_envs=2, **dict(ENV, episode_slots=3))
    obs, _ = env.reset(seed=5)
    buf = DictReplayBuffer(env.single_observation_space, env.single_action_space, 100, 2)
    rng = np.random.default_rng(0)
    log = {}
    for t in range(7):  # crosses two autoresets (episodes of 3 slots)
        act = env.decoder.sample(obs, rng)
        nxt, rew, term, trunc, info = env.step(act)
        buf.add(obs, act, rew, term, trunc, info.get("final_obs"))
        true_next = info["final_obs"] if (term | trunc).any() else nxt
        for e in range(2):
            log[(t, e)] = (
                {k: v[e] for k, v in obs.items()},
                act[e],
                rew[e],
                {k: v[e] for k, v in true_next.items()},
            )
        obs = nxt
    assert len(buf) == 6 * 2  # the newest row waits for its successor
    # Bits for 0/1 keys and the narrowest integers: far below the raw observation size.
    assert buf._obs["adj"].dtype == np.uint8 and buf._obs["adj"].shape[-1] == math.ceil(
        obs["adj"].shape[-1] / 8
    )
    assert buf._obs["share_min"].dtype == np.uint8
    s = buf.sample(200, np.random.default_rng(1))
    assert {int(r) for r in s.rows} == set(range(6))
    for i in range(len(s.rows)):
        o, a, r, n = log[(int(s.rows[i]), int(s.envs[i]))]
        np.testing.assert_array_equal(s.actions[i], a)
        assert s.rewards[i] == pytest.approx(r)
        for key in o:
            tol = 1e-3 if o[key].dtype.kind == "f" else 0
            np.testing.assert_allclose(s.obs[key][i], o[key], atol=tol, err_msg=key)
            np.testing.assert_allclose(s.next_obs[key][i], n[key], atol=tol, err_msg=key)
    with pytest.raises(InputError, match="final_obs"):
        buf.add(obs, act, rew, np.ones(2, bool), np.zeros(2, bool), None)


def test_replay_ring_overwrites_oldest_rows() -> None:
    env = BatchedCerlEnv(num_envs=1, **ENV)
    obs, _ = env.reset(seed=0)
    buf = DictReplayBuffer(env.single_observation_space, env.single_action_space, 4, 1)
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(9):
        act = env.decoder.sample(obs, rng)
        nxt, rew, term, trunc, info = env.step(act)
        buf.add(obs, act, rew, term, trunc, info.get("final_obs"))
        rewards.append(float(rew[0]))
        obs = nxt
    assert len(buf) == 4
    got = sorted(set(buf.sample(100, rng).rewards.tolist()))
    assert got == pytest.approx(sorted(set(rewards[-5:-1])))  # the 4 newest complete ones


# --------------------------------------------------------------------------- network and masks


def test_greedy_decoded_actions_are_always_accepted() -> None:
    env = BatchedCerlEnv(num_envs=8, **dict(ENV, arrival_rate_per_s=1.5))
    obs, _ = env.reset(seed=3)
    torch.manual_seed(0)
    net = CerlQNetwork(4, 3, 3)
    flat = flat_params(net)
    rng = np.random.default_rng(0)
    decided = moved = 0
    for t in range(60):  # 8 copies x 30 greedy steps = 240 states decided greedily
        if t % 2 == 0:
            action = env.decoder.sample(obs, rng)  # random moves diversify the states
        else:
            # A differently perturbed network each time: greedy actions of many Q-functions.
            vector_to_parameters(flat + 0.5 * torch.randn(flat.shape), net.parameters())
            with torch.no_grad():
                action = greedy_actions(env.decoder, obs, net(graph_batch(obs)))
            deciding = obs["task_deciding"].astype(bool)
            decided += int(deciding.sum())
            moved += int((action[..., 1][deciding] > obs["task_progress"][deciding]).sum())
        obs, *_ = env.step(action)  # raises InvalidActionError on any mask violation
    assert decided > 100 and moved > 20


def _branch_value(out: BranchValues, row: int, m: int, action: np.ndarray, br: int) -> float:
    """Value of branch ``br`` of task slot ``m`` at ``action`` (per-node rows read at its node)."""
    t = out.branches[br][row, m]
    d, j = int(action[m, 0]), int(action[m, 1])
    if t.ndim == 2:
        t = t[d]
    v = float(t[int(action[m, br])])
    if br == 2 and out.share_scale is not None:
        assert out.block_work is not None
        v += float(out.block_work[row, m, j]) * float(out.share_scale[row, m, d, int(action[m, 2])])
    return v


@pytest.mark.parametrize(
    "conditional,coupling,aggregation",
    [(True, True, "sum"), (True, False, "sum"), (True, True, "mean"), (False, False, "mean")],
)
def test_joint_q_is_value_plus_task_sum_of_branch_means(
    conditional: bool, coupling: bool, aggregation: str
) -> None:
    env = CerlEnv(**dict(ENV, arrival_rate_per_s=2.0))
    obs = next(o for o, _ in (env.reset(seed=s) for s in range(20)) if o["task_deciding"].sum() >= 2)
    cfg = QNetConfig(
        node_conditional=conditional, share_block_coupling=coupling, task_aggregation=aggregation
    )
    net = CerlQNetwork(4, 3, 3, cfg)
    b = graph_batch(obs)
    with torch.no_grad():
        out = net(b)
    assert is_conditional(out) == conditional
    assert (out.share_scale is not None) == coupling
    if conditional:
        assert out.branches[1].shape == (1, ENV["max_tasks"], 4, 9)
        assert out.branches[2].shape == (1, ENV["max_tasks"], 4, 3)
    action = env.decoder.sample(obs, np.random.default_rng(0))
    q = joint_q(out, torch.from_numpy(action[None]), b.deciding)
    per_task = [
        np.mean([_branch_value(out, 0, m, action, br) for br in range(4)])
        for m in np.flatnonzero(obs["task_deciding"])
    ]
    agg = np.sum(per_task) if aggregation == "sum" else np.mean(per_task)
    assert float(q[0]) == pytest.approx(float(out.value[0]) + agg, rel=1e-5)


def test_block_work_is_the_blocks_share_of_the_model_cycles() -> None:
    env = CerlEnv(**dict(ENV, max_tasks=1, arrival_rate_per_s=0.0))
    obs, _ = env.reset(seed=0, options={"initial_tasks": [1]})
    obs = dict(obs)
    obs["task_progress"] = np.array([3])
    work = layer_workload_cycles(1.0)
    got = graph_batch(obs).block_work[0, 0].numpy()
    # Three layers done: block [4 : j] holds layers 4..j; the total is the whole model.
    want = [0.0, 0.0, 0.0, 0.0] + [work[3:j].sum() / work.sum() for j in range(4, 9)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[-1] == pytest.approx(1.0 - work[:3].sum() / work.sum(), rel=1e-6)


def test_greedy_reads_per_node_scores_at_the_chosen_node() -> None:
    env = CerlEnv(**dict(ENV, max_tasks=1, arrival_rate_per_s=0.0))
    obs, _ = env.reset(seed=0, options={"initial_tasks": [1]})
    assert obs["task_deciding"][0]
    masks = env.decoder.union_masks(obs)
    node = np.where(masks["node"][0], 0.0, -np.inf)
    node[0] = 5.0  # the MEC server wins the node branch
    block = np.zeros((1, 4, 9))
    block[0, 0, 8] = 1.0  # whole model when at the server...
    block[0, 1, 1] = 3.0  # ...one layer (and larger values) for another node
    share = np.zeros((1, 4, 3))
    share[0, 0, 0] = 1.0  # 25 % at the server
    share[0, 1, 2] = 3.0  # 100 % elsewhere
    sub = np.zeros((1, 3))
    action = env.decoder.greedy(obs, [node[None], block, share, sub])
    assert action[0, :3].tolist() == [0, 8, 0]
    env.step(action)  # accepted by the masks


def test_node_conditional_heads_fit_a_node_dependent_share_cost() -> None:
    # A cost that depends on (node, share) jointly, like eqs. (1), (4) with different
    # capacities: the best share is 25 % on node 0 and 100 % on the others. Regressing
    # Q(s, a) on it, the node-conditional heads recover the best share of each node; the
    # node-blind additive heads cannot represent the interaction.
    env = BatchedCerlEnv(num_envs=64, **dict(ENV, max_tasks=1, arrival_rate_per_s=0.0))
    obs, _ = env.reset(seed=0, options={"initial_tasks": [1]})
    rng = np.random.default_rng(0)
    best_share = {0: 0}
    errs = {}
    for conditional in (True, False):
        torch.manual_seed(0)
        cfg = QNetConfig(**SMALL_NET, node_conditional=conditional, share_block_coupling=conditional)
        net = CerlQNetwork(4, 3, 3, cfg)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        b = graph_batch(obs)
        for _ in range(300):
            a = torch.from_numpy(
                np.stack([rng.integers(0, 4, 64), rng.integers(1, 9, 64), rng.integers(0, 3, 64),
                          np.zeros(64, dtype=np.int64)], -1)[:, None, :]
            )
            good = torch.where(a[:, 0, 0] == 0, 0, 2)
            cost = (a[:, 0, 2] - good).abs().float()
            loss = ((joint_q(net(b), a, b.deciding) + cost) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = net(b)
        errs[conditional] = float(loss.detach())
        if conditional:
            share = out.branches[2][:, 0]  # (B, N+1, K)
            assert (share[:, 0].argmax(-1) == best_share[0]).all()
            assert (share[:, 1:].argmax(-1) == 2).all()
    assert errs[True] < 0.05 < 0.2 < errs[False]


def test_feature_skip_keeps_idle_computing_nodes_apart() -> None:
    # Every computing node is linked to every other, so eq. (11) alone gives the nodes that
    # hold no task the same embedding whatever their capacity; the skip of X keeps them apart.
    env = CerlEnv(**dict(ENV, max_tasks=1, arrival_rate_per_s=0.0))
    obs, _ = env.reset(seed=0, options={"initial_tasks": [1], "device_capacities_ghz": [0.5, 0.2, 0.9]})
    b = graph_batch(obs)
    for skip in (False, True):
        torch.manual_seed(0)
        net = CerlQNetwork(4, 3, 3, QNetConfig(feature_skip=skip))
        with torch.no_grad():
            h = net.gcn(b.x, b.a_hat, b.node_mask)
            if skip:
                h = h + net.feature_skip(b.x)
        idle = h[0, [0, 2, 3]]  # MEC server and the two devices without the task
        spread = float((idle - idle.mean(0)).abs().max())
        assert (spread > 1e-3) == skip


def test_dueling_branches_are_centred() -> None:
    env = CerlEnv(**ENV)
    obs, _ = env.reset(seed=0)
    net = CerlQNetwork(4, 3, 3, dueling=True)
    with torch.no_grad():
        out = net(graph_batch(obs))
    for br in (0, 2, 3):  # the block branch is centred over offsets, then re-indexed
        torch.testing.assert_close(
            out.branches[br].mean(-1), torch.zeros(out.branches[br].shape[:-1]), atol=1e-5, rtol=0
        )


# --------------------------------------------------------------------------- fitness


def _loop_fitness(agent: CerlAgent, pop, targets, sample, gamma) -> list[float]:
    """Eq. (14) one individual, one transition and one branch at a time."""
    net, tnet = copy.deepcopy(agent.q), copy.deepcopy(agent.q)
    masks = agent.decoder.union_masks(sample.next_obs)
    out = []
    for i in range(pop.shape[0]):
        vector_to_parameters(pop[i], net.parameters())
        vector_to_parameters(targets[i], tnet.parameters())
        errs = []
        for j in range(len(sample.rewards)):
            o = {k: v[j] for k, v in sample.obs.items()}
            n = {k: v[j] for k, v in sample.next_obs.items()}
            with torch.no_grad():
                qv, tv = net(graph_batch(o)), tnet(graph_batch(n))
            agg = np.sum if qv.task_sum else np.mean
            dec = np.flatnonzero(o["task_deciding"])
            q = float(qv.value[0])
            if len(dec):
                q += agg(
                    [
                        np.mean([_branch_value(qv, 0, m, sample.actions[j], b) for b in range(4)])
                        for m in dec
                    ]
                )
            ndec = np.flatnonzero(n["task_deciding"])
            nq = float(tv.value[0])
            if len(ndec):
                best = []
                for m in ndec:
                    mk = {name: masks[name][j, m] for name in BRANCHES}
                    vals = [tv.branches[b][0, m].numpy() for b in range(4)]
                    if vals[1].ndim == 2:  # node-conditional: maximise over the node jointly
                        work = tv.block_work[0, m].numpy() if tv.block_work is not None else None
                        per_node = []
                        for d in np.flatnonzero(mk["node"]):
                            pairs = [
                                vals[1][d][jj]
                                + vals[2][d][ss]
                                + (0.0 if work is None else work[jj] * float(tv.share_scale[0, m, d, ss]))
                                for jj in np.flatnonzero(mk["block"])
                                for ss in np.flatnonzero(mk["share"])
                            ]
                            per_node.append(vals[0][d] + max(pairs))
                        best.append((max(per_node) + vals[3][mk["subcarrier"]].max()) / 4)
                    else:
                        best.append(np.mean([vals[b][mk[name]].max() for b, name in enumerate(BRANCHES)]))
                nq += float(agg(best))
            y = sample.rewards[j] + gamma * (1 - sample.terminated[j]) * nq
            errs.append((y - q) ** 2)
        out.append(-float(np.mean(errs)))
    return out


def test_population_fitness_vectorised_equals_loop() -> None:
    agent = _warm_cerl()
    agent._draw_population()
    pop = agent.population
    targets = pop + 0.5 * torch.randn(pop.shape, generator=torch.Generator().manual_seed(0))
    sample = agent.buffer.sample(12, np.random.default_rng(4))
    masks = union_mask_tensors(agent.decoder, sample.next_obs)
    # Precondition: in this batch the masks change some target individual's branch maximum.
    nb = graph_batch(sample.next_obs)
    with torch.no_grad():
        tv = population_call(agent.q, targets, nb)
    full = [torch.ones_like(m) for m in masks]
    assert not torch.allclose(
        masked_branch_max(tv, masks, nb.deciding), masked_branch_max(tv, full, nb.deciding)
    )
    fast = population_fitness(agent.q, pop, targets, sample, 0.9, masks, chunk=4)
    slow = _loop_fitness(agent, pop, targets, sample, 0.9)
    assert fast.shape == (pop.shape[0],)
    np.testing.assert_allclose(fast.numpy(), slow, rtol=1e-5, atol=1e-5)
    assert len(set(np.round(slow, 6))) > 1  # the individuals really differ


def test_masked_branch_max_by_hand() -> None:
    t = lambda rows: torch.tensor([rows], dtype=torch.float32)  # noqa: E731
    values = BranchValues(
        torch.tensor([1.0]),
        (
            t([[5.0, 2.0, 9.0], [7.0, 7.0, 7.0]]),
            t([[1.0, 4.0], [0.0, 0.0]]),
            t([[3.0, -1.0], [0.0, 0.0]]),
            t([[0.5, 8.0], [0.0, 0.0]]),
        ),
    )
    m = lambda rows: torch.tensor([rows], dtype=torch.bool)  # noqa: E731
    masks = [
        m([[1, 1, 0], [1, 0, 0]]),  # the largest node value (9) is masked
        m([[1, 1], [1, 0]]),
        m([[0, 1], [1, 0]]),  # only the worse share value is valid
        m([[1, 0], [1, 0]]),
    ]
    deciding = torch.tensor([[1.0, 0.0]])  # the second slot does not count
    got = masked_branch_max(values, masks, deciding)
    assert float(got[0]) == pytest.approx(1.0 + (5.0 + 4.0 - 1.0 + 0.5) / 4)
    # Node-conditional block / share rows: node 0 gives 5 + max(1, 4) + max(-1) = 8, node 1
    # gives 2 + max(0, 9) + max(6) = 17 (node 2 is masked), so the max picks node 1.
    cond = BranchValues(
        values.value,
        (
            values.branches[0],
            t([[[1.0, 4.0], [0.0, 9.0], [50.0, 50.0]], [[0.0, 0.0]] * 3]),
            t([[[3.0, -1.0], [7.0, 6.0], [50.0, 50.0]], [[0.0, 0.0]] * 3]),
            values.branches[3],
        ),
    )
    assert is_conditional(cond)
    got = masked_branch_max(cond, masks, deciding)
    assert float(got[0]) == pytest.approx(1.0 + (17.0 + 0.5) / 4)


def test_elite_actions_equal_each_individual_acting_alone() -> None:
    agent = _warm_cerl()
    agent._draw_population()
    params = agent.population[:2] + 0.3 * torch.randn(2, agent.population.shape[1])
    obs = {k: v[:2] for k, v in agent._obs.items()}
    together = agent._elite_actions(obs, params)
    net = copy.deepcopy(agent.q)
    for i in range(2):
        vector_to_parameters(params[i], net.parameters())
        one = {k: v[i] for k, v in obs.items()}
        with torch.no_grad():
            alone = greedy_actions(agent.decoder, one, net(graph_batch(one)))
        np.testing.assert_array_equal(together[i], alone)


# --------------------------------------------------------------------------- learning


def _fixed_batch_loss(agent, sample) -> float:
    with torch.no_grad():
        return float(agent.learner.loss(sample))


@pytest.mark.parametrize(
    "cls,cfg", [(CerlAgent, CERL_CFG), (DDQNAgent, DQN_CFG), (D2QNAgent, DQN_CFG)]
)
def test_smoke_learning_lowers_td_loss(cls, cfg) -> None:
    agent = cls(ENV, config=cfg, seed=0)
    agent._budget = 400
    agent._warmup()
    probe = agent.buffer.sample(128, np.random.default_rng(7))
    before = _fixed_batch_loss(agent, probe)
    infos = []
    agent.learn(total_steps=400, callback=infos.append)
    assert agent.num_timesteps >= 400 and agent.learner.n_updates > 40
    losses = [i["loss_mean"] for i in infos if not math.isnan(i["loss_mean"])]
    assert losses and all(math.isfinite(v) for v in losses)
    after = _fixed_batch_loss(agent, probe)
    assert math.isfinite(after) and after < before
    action = agent.act(CerlEnv(**ENV).reset(seed=9)[0])
    assert action.shape == (ENV["max_tasks"], 4)


def test_cerl_generation_injects_rl_and_only_elites_act() -> None:
    agent = CerlAgent(ENV, config=CERL_CFG, seed=1)
    elites, actors = [], []
    update, elite_actions = agent.cem.update, agent._elite_actions

    def spy_update(pop, fit):
        idx = update(pop, fit)
        elites.append((pop.clone(), fit.clone(), idx.clone()))
        return idx

    def spy_actions(obs, params):
        actors.append(params.clone())
        return elite_actions(obs, params)

    agent.cem.update, agent._elite_actions = spy_update, spy_actions
    infos = []
    agent.learn(generations=3, callback=infos.append)
    assert len(infos) == 3 and agent.generation == 3
    steps = CERL_CFG["steps_per_generation"]
    assert len(actors) == 3 * steps
    for g, (pop, fit, idx) in enumerate(elites):
        assert torch.all(fit[idx].min() >= fit[~torch.isin(torch.arange(6), idx)])  # top half
        for params in actors[g * steps : (g + 1) * steps]:
            torch.testing.assert_close(params, pop[idx[:2]])  # the two best elites act
    slot = agent.rl_slot
    assert slot not in elites[-1][2].tolist()  # injected into a non-elite slot
    torch.testing.assert_close(agent.population[slot], flat_params(agent.q))
    # H = 1: every target equals its slot after the sync of line 18.
    torch.testing.assert_close(agent.population_targets, agent.population)
    assert all(math.isfinite(i["fitness_max"]) for i in infos)
    assert math.isfinite(infos[-1]["fitness_rl"])  # the injected network was evaluated
    per_gen = steps * (CERL_CFG["elite_actors"] + CERL_CFG["rl_envs"])
    assert infos[-1]["env_steps"] - infos[0]["env_steps"] == 2 * per_gen


def test_d2qn_noise_scale_adaptation_direction() -> None:
    agent = D2QNAgent(ENV, config=DQN_CFG, seed=0)
    agent._budget = 1000
    agent._warmup()
    sample = agent.buffer.sample(64, np.random.default_rng(0))
    delta = noise_delta(agent._epsilon(), agent.decoder.nvec)
    agent.noise_scale = 5.0
    agent.perturb()
    kl = agent.adapt_noise(sample)
    assert kl > delta and agent.noise_scale == pytest.approx(5.0 / 1.01)
    agent.noise_scale = 1e-7
    agent.perturb()
    kl = agent.adapt_noise(sample)
    assert kl < delta and agent.noise_scale == pytest.approx(1e-7 * 1.01)
    assert adapt_noise_scale(1.0, 0.2, 0.1, 2.0) == 0.5
    assert adapt_noise_scale(1.0, 0.05, 0.1, 2.0) == 2.0
    # delta = -log(1 - eps + eps / |A|) for one branch.
    assert noise_delta(0.1, [4]) == pytest.approx(-math.log(1 - 0.1 + 0.1 / 4))


# --------------------------------------------------------------------------- checkpoints and configs


@pytest.mark.parametrize("cls,cfg", [(CerlAgent, CERL_CFG), (D2QNAgent, DQN_CFG)])
def test_save_load_round_trip_and_layout_refusal(tmp_path, cls, cfg) -> None:
    agent = cls(ENV, config=cfg, seed=2)
    if cls is CerlAgent:
        agent.learn(generations=1)
    path = agent.save(tmp_path / "agent.pt")
    state = torch.load(path, weights_only=True)
    assert state["meta"]["layout"]["n_devices"] == 3 and state["meta"]["layout"]["n_layers"] == 8
    loaded = cls.load(path, ENV)
    env = BatchedCerlEnv(num_envs=4, **dict(ENV, arrival_rate_per_s=1.5))
    obs, _ = env.reset(seed=11)
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    for key, val in agent.q.state_dict().items():
        torch.testing.assert_close(loaded.q.state_dict()[key], val)
    with pytest.raises(InputError, match=r"n_devices: checkpoint 3 vs environment 4"):
        cls.load(path, dict(ENV, n_devices=4))
    with pytest.raises(InputError, match=r"share_levels_pct"):
        cls.load(path, dict(ENV, share_levels_pct=(50, 100)))
    other = DDQNAgent if cls is not DDQNAgent else CerlAgent
    with pytest.raises(InputError, match="not"):
        other.load(path)
    with pytest.raises(InputError, match="not found"):
        cls.load(tmp_path / "missing.pt")


def test_configs_refuse_bad_fields() -> None:
    with pytest.raises(InputError, match="pop_size"):
        CerlAgent(ENV, config={"pop_size": 1})
    with pytest.raises(InputError, match="no_such_knob"):
        DDQNAgent(ENV, config={"no_such_knob": 3})
    with pytest.raises(ValueError, match="non-elite"):
        CerlAgentConfig(pop_size=2, elite_frac=0.9)
    assert CerlAgentConfig().net.gcn_dims == (64, 128, 256)
    assert CerlAgentConfig().pop_size == 50 and CerlAgentConfig().fitness_batch == 64
