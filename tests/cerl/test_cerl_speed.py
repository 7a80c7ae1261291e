"""The fast paths of CERL training give the numbers of the plain (padded, every head) paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgerl.cerl.agent import CerlAgent, population_fitness
from edgerl.cerl.dqn import (
    CerlQNetwork,
    DQNLearner,
    QNetConfig,
    compact_graph_batch,
    deciding_selection,
    graph_batch,
    greedy_actions,
    joint_q,
    joint_q_selected,
    masked_branch_max,
    masked_branch_max_selected,
    size_groups,
    union_mask_tensors,
)

ENV = dict(
    n_devices=4,
    max_tasks=4,
    share_levels_pct=(25, 50, 75, 100),
    n_subcarriers=3,
    arrival_rate_per_s=0.5,
    episode_slots=10,
)
SMALL_NET = dict(gcn_dims=(16, 32, 32), hidden_dim=32, key_dim=16)
CERL_CFG = dict(
    learning_starts=96,
    batch_size=32,
    net=SMALL_NET,
    pop_size=6,
    elite_actors=2,
    rl_envs=2,
    steps_per_generation=2,
    fitness_batch=32,
)
RTOL, ATOL = 1e-5, 1e-5  # float32 sums taken in another order


@pytest.fixture(scope="module")
def warm() -> CerlAgent:
    agent = CerlAgent(ENV, config=CERL_CFG, seed=3)
    agent._budget = 1000
    agent._warmup()
    agent._draw_population()
    return agent


def _sample(agent: CerlAgent, seed: int):
    sample = agent.buffer.sample(32, np.random.default_rng(seed))
    b = graph_batch(sample.obs)
    # Preconditions: the graphs carry padding, differ in size, and some task slots decide
    # while others do not, so trimming, grouping and slot selection all have work to do.
    counts = b.node_mask.sum(-1)
    assert float(counts.min()) < b.node_mask.shape[-1]
    assert len(set(counts.tolist())) > 2
    assert 0 < float(b.deciding.sum()) < b.deciding.numel()
    return sample


def _net(dueling: bool, seed: int) -> CerlQNetwork:
    torch.manual_seed(seed)
    return CerlQNetwork(5, 4, 3, QNetConfig(**SMALL_NET), dueling=dueling)


def test_size_groups_partition_the_batch_by_size() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)
    groups = size_groups(mask, 2)
    # Counts 2, 1, 3, 2, 1 -> stable order by count: 1, 4 (1 node), 0, 3 (2), 2 (3) -> [1, 4, 0], [3, 2].
    assert [g.tolist() for g in groups] == [[1, 4, 0], [3, 2]]
    assert sorted(torch.cat(size_groups(mask, 7)).tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("dueling", [False, True])
def test_compacted_graph_gives_the_same_branch_values(warm, dueling) -> None:
    sample = _sample(warm, 0)
    b = graph_batch(sample.obs)
    net = _net(dueling, 1)
    rows = size_groups(b.node_mask, 3)[0]
    small = compact_graph_batch(b, rows, net.n_nodes)
    assert small.a_hat.shape[-1] < b.a_hat.shape[-1]  # something was trimmed
    assert torch.equal(small.node_mask.sum(-1), b.node_mask[rows].sum(-1))
    with torch.no_grad():
        full, part = net(b), net(small)
    torch.testing.assert_close(part.value, full.value[rows], rtol=RTOL, atol=ATOL)
    for got, want in zip(part.branches, full.branches):
        torch.testing.assert_close(got, want[rows], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dueling", [False, True])
def test_selected_heads_equal_the_rows_of_the_full_output(warm, dueling) -> None:
    sample = _sample(warm, 1)
    b = graph_batch(sample.obs)
    actions = torch.from_numpy(sample.actions.astype(np.int64))
    net = _net(dueling, 2)
    with torch.no_grad():
        full = net(b)
        sel = deciding_selection(b.deciding)
        part = net(b, sel)
        at = deciding_selection(b.deciding, actions)
        at_node = net(b, at)
    bi, mi = sel.batch_idx, sel.slot_idx
    for got, want in zip(part.branches, full.branches):
        torch.testing.assert_close(got, want[bi, mi], rtol=RTOL, atol=ATOL)
    nodes = actions[bi, mi, 0]
    torch.testing.assert_close(at_node.branches[1], full.branches[1][bi, mi, nodes])
    torch.testing.assert_close(at_node.branches[2], full.branches[2][bi, mi, nodes])
    torch.testing.assert_close(
        joint_q_selected(at_node, actions, b.deciding, at),
        joint_q(full, actions, b.deciding),
        rtol=RTOL,
        atol=ATOL,
    )
    masks = union_mask_tensors(warm.decoder, sample.obs)
    torch.testing.assert_close(
        masked_branch_max_selected(part, masks, b.deciding, sel),
        masked_branch_max(full, masks, b.deciding),
        rtol=RTOL,
        atol=ATOL,
    )


def test_selection_needs_node_conditional_heads(warm) -> None:
    net = CerlQNetwork(5, 4, 3, QNetConfig(**SMALL_NET, node_conditional=False))
    assert not net.sparse_heads
    b = graph_batch(_sample(warm, 0).obs)
    with pytest.raises(ValueError, match="node-conditional"):
        net(b, deciding_selection(b.deciding))


@pytest.mark.parametrize("groups", [1, 3])
def test_fast_population_fitness_equals_the_padded_dense_one(warm, groups) -> None:
    pop = warm.population
    targets = pop + 0.3 * torch.randn(pop.shape, generator=torch.Generator().manual_seed(0))
    sample = _sample(warm, 2)
    masks = union_mask_tensors(warm.decoder, sample.next_obs)
    plain = population_fitness(warm.q, pop, targets, sample, 0.9, masks, 10, False, 0)
    fast = population_fitness(warm.q, pop, targets, sample, 0.9, masks, 4, True, groups)
    assert len(set(np.round(plain.numpy(), 5))) > 1  # the individuals differ
    torch.testing.assert_close(fast, plain, rtol=RTOL, atol=ATOL)
    # Per-individual calls through the population path give the same values as well.
    one = torch.cat(
        [
            population_fitness(warm.q, pop[i : i + 1], targets[i : i + 1], sample, 0.9, masks)
            for i in range(pop.shape[0])
        ]
    )
    torch.testing.assert_close(one, plain, rtol=RTOL, atol=ATOL)


def _learner_pair(agent: CerlAgent) -> tuple[DQNLearner, DQNLearner]:
    plain = DQNLearner(agent.q, agent.decoder, agent.config.model_copy(update={"graph_groups": 0}))
    fast = DQNLearner(agent.q, agent.decoder, agent.config.model_copy(update={"graph_groups": 3}))
    with torch.no_grad():  # a target that differs from the online network
        for p in fast.q_target.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    plain.q_target.load_state_dict(fast.q_target.state_dict())
    return plain, fast


def test_fast_learner_gives_the_same_actions_targets_and_gradients(warm) -> None:
    plain, fast = _learner_pair(warm)
    sample = _sample(warm, 3)
    nb = graph_batch(sample.next_obs)
    with torch.no_grad():
        a_plain = greedy_actions(warm.decoder, sample.next_obs, plain.branch_values(warm.q, nb))
        a_fast = greedy_actions(warm.decoder, sample.next_obs, fast.branch_values(warm.q, nb))
    np.testing.assert_array_equal(a_fast, a_plain)
    torch.testing.assert_close(fast.td_target(sample), plain.td_target(sample), rtol=RTOL, atol=ATOL)
    grads = []
    for learner in (plain, fast):
        warm.q.zero_grad(set_to_none=True)
        loss = learner.loss(sample)
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in warm.q.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert any(float(g.abs().max()) > 0 for g in grads[0][1])
    for g_plain, g_fast in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-4, atol=1e-6)
    warm.q.zero_grad(set_to_none=True)
