"""Deep contextual bandit of paper 004 (section 4.4): learning, exploration, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgerl.streaming.bandit import BanditConfig, BranchingQNet, ContextualBandit
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError

CENTERS = np.array([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, -0.5, 0.0]])
BEST = [(2, 0), (0, 1)]  # best arm of (branch 0 with 3 arms, branch 1 with 2 arms) per cluster


def _train_toy(exploration: str, seed: int, n: int = 300) -> ContextualBandit:
    rng = np.random.default_rng(seed + 100)
    bandit = ContextualBandit(4, (3, 2), config={"exploration": exploration}, seed=seed)
    for _ in range(n):
        c = int(rng.integers(2))
        z = CENTERS[c] + 0.1 * rng.normal(size=4)
        a = bandit.act(z)
        r = 0.5 * (a[0] == BEST[c][0]) + 0.5 * (a[1] == BEST[c][1]) + 0.1 * rng.normal()
        bandit.observe(z, a, r)
    return bandit


@pytest.mark.parametrize("exploration", ["epsilon_greedy", "ucb"])
def test_learns_best_arm_per_cluster(exploration: str) -> None:
    # Paper defaults (4 x 256 trunk, Adam 1e-4, replay 256, batch 32), 300 noisy decisions.
    bandit = _train_toy(exploration, seed=0)
    for c in range(2):
        assert bandit.act(CENTERS[c], deterministic=True) == BEST[c]
        q = bandit.q_values(CENTERS[c])
        # the best arm's value approaches E[r | best arm of this branch] (> the others)
        assert q[0][BEST[c][0]] > max(np.delete(q[0], BEST[c][0])) + 0.2


def test_epsilon_decays_per_decision() -> None:
    bandit = ContextualBandit(2, (2,), config={"hidden_sizes": (4,)}, seed=0)
    z = np.zeros(2)
    assert bandit.epsilon == 1.0
    bandit.act(z)
    assert bandit.epsilon == pytest.approx(0.999)
    for _ in range(5):
        bandit.act(z, deterministic=True)  # greedy acting does not decay epsilon
    assert bandit.n_decisions == 1
    for _ in range(999):
        bandit.act(z)
    # 0.999**1000 = exp(1000 * ln 0.999) = exp(-1.0005003) = 0.3676954
    assert bandit.epsilon == pytest.approx(0.3676954, abs=1e-7)
    for _ in range(896):
        bandit.act(z)
    # ln(0.15) / ln(0.999) = 1896.2: 0.999**1896 = exp(-1.8969486) = 0.1500257 is still above
    # the floor ...
    assert bandit.epsilon == pytest.approx(0.1500257, abs=1e-7)
    bandit.act(z)
    # ... and 0.999**1897 = 0.1498757 is clamped to 0.15
    assert bandit.epsilon == 0.15


def test_epsilon_greedy_explores_every_branch_independently() -> None:
    # eps = 1 for good (decay 1): each branch uniform over its arms, independent of the other.
    cfg = {"hidden_sizes": (4,), "epsilon_decay": 1.0}
    bandit = ContextualBandit(2, (3, 2), config=cfg, seed=1)
    acts = np.array([bandit.act(np.zeros(2)) for _ in range(3000)])
    for b, n in enumerate((3, 2)):
        freq = np.bincount(acts[:, b], minlength=n) / len(acts)
        assert np.allclose(freq, 1.0 / n, atol=0.04)
    joint = np.mean((acts[:, 0] == 0) & (acts[:, 1] == 0))
    assert joint == pytest.approx(1 / 6, abs=0.03)


def test_ucb_tries_every_arm_once_before_repeating() -> None:
    bandit = ContextualBandit(3, (5, 3), config={"exploration": "ucb"}, seed=2)
    rng = np.random.default_rng(0)
    acts = [bandit.act(rng.normal(size=3)) for _ in range(5)]
    assert sorted(a[0] for a in acts) == [0, 1, 2, 3, 4]
    assert sorted(a[1] for a in acts[:3]) == [0, 1, 2]
    assert np.array_equal(bandit.arm_counts[0], np.ones(5))
    # decisions 4 and 5 of branch 1 see equal counts (equal bonus): the values decide
    assert bandit.arm_counts[1].sum() == 5 and bandit.arm_counts[1].min() >= 1


def _constant_q_bandit(bias: list[float], c: float) -> ContextualBandit:
    cfg = {"exploration": "ucb", "ucb_c": c, "hidden_sizes": (4,)}
    bandit = ContextualBandit(2, (2,), config=cfg, seed=0)
    with torch.no_grad():
        bandit.net.heads[0].weight.zero_()
        bandit.net.heads[0].bias.copy_(torch.tensor(bias))
    return bandit


def test_ucb_bonus_golden() -> None:
    # Q = (0.0, 0.5), counts N = (1, 10), decision tau = 12:
    # arm 0: 0.0 + 1.5 * sqrt(ln 12 / 1)  = 1.5 * 1.5764 = 2.3645
    # arm 1: 0.5 + 1.5 * sqrt(ln 12 / 10) = 0.5 + 0.7477 = 1.2477   -> arm 0
    bandit = _constant_q_bandit([0.0, 0.5], c=1.5)
    bandit.arm_counts[0][:] = [1, 10]
    bandit.n_decisions = 11
    assert bandit.act(np.zeros(2)) == (0,)
    assert bandit.arm_counts[0].tolist() == [2, 10]
    # with c = 0 the bonus vanishes and the larger value wins
    greedy = _constant_q_bandit([0.0, 0.5], c=0.0)
    greedy.arm_counts[0][:] = [1, 10]
    greedy.n_decisions = 11
    assert greedy.act(np.zeros(2)) == (1,)
    # Q = (0, 2.5): 2.5 + 0.7477 = 3.2477 > 2.3645 -> arm 1 despite its larger count
    big = _constant_q_bandit([0.0, 2.5], c=1.5)
    big.arm_counts[0][:] = [1, 10]
    big.n_decisions = 11
    assert big.act(np.zeros(2)) == (1,)


def test_loss_matches_paper_formula_and_reaches_only_chosen_arms() -> None:
    cfg = {"hidden_sizes": (8, 8), "batch_size": 4, "learning_starts": 4, "buffer_size": 8}
    bandit = ContextualBandit(3, (4, 3), config=cfg, seed=3)
    rng = np.random.default_rng(1)
    data = [(rng.normal(size=3), (1, 2), float(r)) for r in (0.3, -0.2, 1.0, 0.5)]
    for z, a, r in data:
        bandit.store(z, a, r)
    # L = 1/|D| sum_i mean_batch (r - Q_i(z, a_i))^2, by hand from the predicted values
    per_branch = [
        np.mean([(bandit.q_values(z)[i][a[i]] - r) ** 2 for z, a, r in data]) for i in range(2)
    ]
    before = [h.weight.detach().clone() for h in bandit.net.heads]
    bias_before = [h.bias.detach().clone() for h in bandit.net.heads]
    loss = bandit.learn_step()
    assert loss == pytest.approx(np.mean(per_branch), rel=1e-5)
    for i, (chosen, n) in enumerate(((1, 4), (2, 3))):
        w, bias = bandit.net.heads[i].weight.detach(), bandit.net.heads[i].bias.detach()
        for arm in range(n):
            same = torch.equal(w[arm], before[i][arm]) and torch.equal(
                bias[arm], bias_before[i][arm]
            )
            assert same == (arm != chosen), (i, arm)


def test_sum_loss_is_branch_count_times_mean() -> None:
    losses = {}
    for kind in ("mean", "sum"):
        cfg = {"hidden_sizes": (8,), "batch_size": 2, "learning_starts": 2, "branch_loss": kind}
        bandit = ContextualBandit(2, (2, 2, 2), config=cfg, seed=4)
        bandit.store([0.1, 0.2], (0, 1, 1), 1.0)
        bandit.store([0.3, -0.2], (1, 0, 1), 0.0)
        losses[kind] = bandit.learn_step()
    assert losses["sum"] == pytest.approx(3 * losses["mean"], rel=1e-6)


def test_replay_keeps_the_newest_decisions() -> None:
    cfg = {"hidden_sizes": (4,), "buffer_size": 8, "batch_size": 4, "learning_starts": 8}
    bandit = ContextualBandit(1, (2,), config=cfg, seed=0)
    losses = [bandit.observe([float(k)], (k % 2,), 0.0) for k in range(20)]
    assert losses[:7] == [None] * 7 and all(isinstance(v, float) for v in losses[7:])
    assert bandit.buffer_len == 8
    assert sorted(bandit._contexts[:, 0].tolist()) == list(range(12, 20))
    assert bandit.n_updates == 13


def test_save_load_round_trip(tmp_path) -> None:
    bandit = _train_toy("epsilon_greedy", seed=5, n=60)
    path = bandit.save(tmp_path / "bandit.pt")
    other = ContextualBandit(4, (3, 2), seed=99).load(path)
    rebuilt = ContextualBandit.from_checkpoint(path)
    contexts = np.random.default_rng(7).normal(size=(50, 4))
    for z in contexts:
        a = bandit.act(z, deterministic=True)
        assert other.act(z, deterministic=True) == a
        assert rebuilt.act(z, deterministic=True) == a
        assert np.allclose(other.q_values(z)[0], bandit.q_values(z)[0], atol=0, rtol=0)
    # counters, replay and exploration RNG come back too: the stochastic runs continue alike
    assert other.n_decisions == bandit.n_decisions and other.buffer_len == bandit.buffer_len
    for z in contexts[:20]:
        assert other.act(z) == bandit.act(z)
        assert other.observe(z, (0, 0), 0.5) == pytest.approx(bandit.observe(z, (0, 0), 0.5))


def test_load_refuses_another_layout(tmp_path) -> None:
    path = ContextualBandit(4, (3, 2), config={"hidden_sizes": (8,)}, seed=0).save(
        tmp_path / "b.pt"
    )
    with pytest.raises(InputError, match=r"arms per branch \(n_arms\): checkpoint \[3, 2\]"):
        ContextualBandit(4, (3, 3), config={"hidden_sizes": (8,)}).load(path)
    with pytest.raises(
        InputError, match=r"context vector length \(context_dim\): checkpoint 4 vs this bandit 5"
    ):
        ContextualBandit(5, (3, 2), config={"hidden_sizes": (8,)}).load(path)
    with pytest.raises(InputError, match="trunk layer widths"):
        ContextualBandit(4, (3, 2), config={"hidden_sizes": (16,)}).load(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        ContextualBandit(4, (3, 2)).load(junk)
    with pytest.raises(InputError, match="not found"):
        ContextualBandit(4, (3, 2)).load(tmp_path / "missing.pt")


def test_seeding_is_local_and_reproducible() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = ContextualBandit(4, (3, 2), seed=11)
    after = torch.rand(3)
    assert torch.equal(after, expected)  # global torch RNG untouched
    b = ContextualBandit(4, (3, 2), seed=np.random.default_rng(11))
    z = np.array([0.1, 0.2, 0.3, 0.4])
    assert np.array_equal(a.q_values(z)[0], b.q_values(z)[0])
    assert [a.act(z) for _ in range(10)] == [b.act(z) for _ in range(10)]
    c = ContextualBandit(4, (3, 2), seed=12)
    assert not np.array_equal(a.q_values(z)[0], c.q_values(z)[0])


def test_branching_net_shapes() -> None:
    net = BranchingQNet(22, (5, 3, 4, 5))
    linears = [m for m in net.trunk if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (22, 256), (256, 256), (256, 256), (256, 256)
    ]  # fmt: skip
    out = net(torch.zeros(7, 22))
    assert [tuple(o.shape) for o in out] == [(7, 5), (7, 3), (7, 4), (7, 5)]
    # sum_i |D_i| values, not prod_i |D_i| = 300
    assert sum(o.shape[1] for o in out) == 17


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epsilon_initial", 1.5),
        ("epsilon_final", -0.1),
        ("ucb_c", -1.0),
        ("hidden_sizes", [256, 0]),
        ("batch_size", 0),
        ("buffer_size", 0),
        ("learning_rate", 0.0),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        config_from_dict(BanditConfig, {field: value}, "bandit.yaml")


def test_config_cross_checks_and_defaults() -> None:
    with pytest.raises(InputError, match="epsilon_final"):
        config_from_dict(BanditConfig, {"epsilon_initial": 0.1}, "bandit.yaml")
    with pytest.raises(InputError, match="batch_size"):
        config_from_dict(BanditConfig, {"batch_size": 64, "buffer_size": 32}, "bandit.yaml")
    cfg = BanditConfig()
    assert (cfg.hidden_sizes, cfg.epsilon_initial, cfg.epsilon_final, cfg.epsilon_decay) == (
        (256, 256, 256, 256), 1.0, 0.15, 0.999
    )  # fmt: skip
    assert (cfg.ucb_c, cfg.buffer_size, cfg.batch_size, cfg.learning_rate) == (1.5, 256, 32, 1e-4)


def test_bad_inputs_are_named() -> None:
    bandit = ContextualBandit(3, (2, 2), config={"hidden_sizes": (4,)})
    with pytest.raises(InputError, match="context has 2 values, the bandit takes 3"):
        bandit.act(np.zeros(2))
    with pytest.raises(InputError, match="does not fit the branch layout"):
        bandit.store(np.zeros(3), (0, 2), 1.0)
    with pytest.raises(InputError, match="reward must be finite"):
        bandit.store(np.zeros(3), (0, 1), math.nan)
    with pytest.raises(InputError, match="empty"):
        bandit.learn_step()
    with pytest.raises(InputError, match="n_arms"):
        ContextualBandit(3, (2, 0))
