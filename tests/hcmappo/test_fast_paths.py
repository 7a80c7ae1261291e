"""HC-MAPPO-L speed paths give the numbers of the plain ones (bitwise where the ops are the same)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgerl.hcmappo.agent import DeployPolicy, HcAgent, MaskedCategorical, method_config
from edgerl.rl.onpolicy import masked_categorical
from edgerl.utils.errors import InputError

from ._tiny import TINY_AGENT, TINY_ENV, _setup  # noqa: F401  (_setup: autouse fixture)


def _random_mask(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    mask = torch.rand(shape, generator=gen) < 0.5
    first = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    return mask | torch.nn.functional.one_hot(first, shape[-1]).bool()  # >= 1 valid per row


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 9), (1, 1, 2)])
def test_masked_categorical_is_bitwise_the_library_distribution(shape) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    mask = _random_mask(gen, shape)
    raw = torch.randn(shape, generator=gen) * 3.0
    grads = []
    outs = []
    for build in (masked_categorical, MaskedCategorical):
        logits = raw.clone().requires_grad_(True)
        dist = build(logits, mask)
        draws = torch.multinomial(
            dist.probs.reshape(-1, shape[-1]), 1, generator=torch.Generator().manual_seed(7)
        ).reshape(shape[:-1])
        lp, en = dist.log_prob(draws), dist.entropy()
        (lp.sum() - 0.3 * en.sum()).backward()
        outs.append((dist.logits.detach(), dist.probs.detach(), draws, lp.detach(), en.detach()))
        grads.append(logits.grad)
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(grads[0], grads[1])
    # masked actions are never drawn, and their gradient is exactly zero
    assert bool(mask.gather(-1, outs[1][2].unsqueeze(-1)).all())
    assert bool((grads[1][~mask] == 0).all())


def test_masked_categorical_refuses_a_row_without_actions() -> None:
    mask = torch.tensor([[True, False], [False, False]])
    with pytest.raises(InputError, match="allow no action"):
        MaskedCategorical(torch.zeros(2, 2), mask)


@pytest.mark.parametrize("stop", [False, True])
def test_deploy_evaluate_with_inputs_built_for_all_rows_equals_per_minibatch(stop: bool) -> None:
    torch.manual_seed(0)
    n_i, n = 6, 12
    pol = DeployPolicy(obs_dim=9, n_services=n_i, hidden=16, state_dim=5, stop_action=stop)
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(n, 9, generator=gen)
    state = torch.randn(n, 5, generator=gen)
    size = (torch.rand(n, n_i, generator=gen, dtype=torch.float64) * 0.5 + 0.05).double()
    with torch.no_grad():
        s = pol.sample(obs, size, state, gen=gen)
    prepared = pol.teacher_inputs(size, s.actions)
    # rows with short sequences only, so that the minibatch is shorter than the whole set
    lengths = (s.actions >= 0).sum(1)
    idx = torch.argsort(lengths)[: n // 2]
    assert int(lengths[idx].max()) <= int(lengths.max())
    res = []
    for prep in (None, (prepared[0][idx], prepared[1][idx])):
        pol.zero_grad()
        logp, ent, value, masks = pol.evaluate(
            obs[idx], size[idx], s.actions[idx], state[idx], prepared=prep
        )
        (logp.sum() + ent.sum() + value.sum()).backward()
        res.append((logp.detach(), ent.detach(), value.detach(), masks))
        res.append(tuple(p.grad.clone() for p in pol.parameters()))
    for a, b in zip(res[0], res[2], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(res[1], res[3], strict=True):
        assert torch.equal(a, b)
    # and both equal what sampling recorded
    assert torch.allclose(res[0][0], s.log_prob[idx], atol=1e-5)
    assert torch.equal(res[0][3], s.masks[idx])


def test_alloc_critic_inputs_built_once_equal_per_minibatch() -> None:
    agent = HcAgent(TINY_ENV, method_config("hc-mappo-l", TINY_AGENT), seed=0)
    gen = torch.Generator().manual_seed(2)
    g, j, k, f = 40, 3, 7, agent._lay.alloc_features
    users = torch.randn(g, j, k, f, generator=gen)
    glob = torch.randn(g, j, agent._lay.alloc_globals, generator=gen)
    served = torch.rand(g, j, k, generator=gen) < 0.4
    whole = agent._alloc_critic_local(users, glob, served)
    idx = torch.as_tensor(np.random.default_rng(0).permutation(g)[:17])
    part = agent._alloc_critic_local(users[idx], glob[idx], served[idx])
    assert torch.equal(whole[idx], part)
    # brute force of one row: [globals, mean of served rows, max over the K rows with the
    # unserved ones read as 0] (a row with some served and some unserved users)
    r, s = next(
        (int(a), int(b)) for a in idx for b in range(j) if 0 < int(served[int(a), b].sum()) < k
    )
    rows = users[r, s][served[r, s]]
    mean = rows.mean(0)
    mx = torch.cat([rows, torch.zeros(1, f)]).amax(0)
    assert torch.allclose(whole[r, s], torch.cat([glob[r, s], mean, mx]), atol=1e-6)


# Training statistics of two iterations (seed 3, tiny layout) recorded with the code before
# the speed changes (plain Categorical, masks rebuilt per minibatch, critic inputs per
# minibatch, rollout under no_grad, single-tensor Adam). On one machine they match exactly;
# the tolerance only absorbs other BLAS builds.
GOLDEN_ITERATION_2 = {
    "delay_s_mean": 5.347236575740062,
    "user_cost_mean": 46.0197056583644,
    "deploy_policy_loss": -0.0011105239391326904,
    "deploy_value_loss": 0.6652519144117832,
    "user_policy_loss": 0.0553597086109221,
    "user_value_loss": 0.22446537762880325,
    "user_entropy": 2.709704965353012,
    "cost_value_loss": 0.1009813659475185,
    "alloc_policy_loss": -0.021249345503747463,
    "alloc_value_loss": 0.30970045551657677,
    "alloc_log_std": -0.5001978278160095,
    "lambda": 0.26877505833725684,
}
GOLDEN_PARAM_ABS_SUM = 5381.055678784905


def test_two_iterations_reproduce_the_recorded_training_statistics() -> None:
    # Recorded with the paper's shared discount 0.99 for every layer.
    cfg = {**TINY_AGENT, "user_gamma": None, "deploy_gamma": None}
    agent = HcAgent(TINY_ENV, method_config("hc-mappo-l", cfg), seed=3)
    rows: list[dict] = []
    agent.learn(2, callback=lambda info: rows.append(info) and None)
    got = rows[-1]
    for key, want in GOLDEN_ITERATION_2.items():
        assert math.isclose(got[key], want, rel_tol=1e-5, abs_tol=1e-7), (key, got[key], want)
    total = sum(
        float(v.double().abs().sum())
        for m in agent._modules().values()
        for v in m.state_dict().values()
    )
    assert math.isclose(total, GOLDEN_PARAM_ABS_SUM, rel_tol=1e-6)
