"""Full-information rewards by branching the simulator (:mod:`edgerl.streaming.counterfactual`),
the bandit's full-information replay entries and the ``counterfactual`` training options."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from edgerl.streaming.bandit import ContextualBandit
from edgerl.streaming.configs import ConfigGrid
from edgerl.streaming.counterfactual import (
    ReplayPolicy,
    branch_r1,
    branch_targets,
    fixed_policy_table,
    segment_r1,
)
from edgerl.streaming.policies import (
    BanditPolicy,
    ContextModels,
    StaticPolicy,
    bandit_context_dim,
    run_policy,
)
from edgerl.streaming.rewards import decision_rewards
from edgerl.streaming.simulator import KeyedDraws, RuntimeProfile
from edgerl.streaming.train import StreamSetup, StreamTrainConfig, shape_full_rewards, train_bandit
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError

from ._toys import drifting_people

GRID = ConfigGrid(models=["toy"], scales=[200, 100], topks=[10], strides=[1])
BIG, SMALL = "toy@200_k10_s1", "toy@100_k10_s1"


def video(seed: int, n: int = 90):
    """Scale 100 finds boxes shifted by 4 px (IoU 1296 / 1904 = 0.68: matched at the lower IoU
    thresholds only)."""
    return drifting_people(seed, n, 0.8, 4.0)


def runtimes() -> RuntimeProfile:
    # distinct samples: 1.05 .. 2.22 frames at 30 FPS for BIG, about half for SMALL
    big = 0.035 + 0.001 * np.arange(40)
    return RuntimeProfile({BIG: big, SMALL: 0.5 * big + 0.0001})


def same_outputs(a, b) -> bool:
    """Equal output lists: times, frames and detections (boxes, scores, classes) bit for bit."""
    return len(a) == len(b) and all(
        x.time_s == y.time_s and x.frame_index == y.frame_index
        and np.array_equal(x.detections.boxes, y.detections.boxes)
        and np.array_equal(x.detections.scores, y.detections.scores)
        and np.array_equal(x.detections.classes, y.detections.classes)
        for x, y in zip(a, b)
    )  # fmt: skip


def exploring_run(draws, forecast: bool, seed: int = 0):
    v = video(seed + 1)
    bandit = ContextualBandit(bandit_context_dim(False), GRID.n_arms, config={"hidden_sizes": [8]}, seed=seed)
    pol = BanditPolicy(bandit, GRID, ContextModels((200, 200), GRID.scales), explore=True, decide_prob=0.3, rng=np.random.default_rng(seed), forecast=forecast)
    res = run_policy(pol, v, runtimes(), copy.deepcopy(draws))
    return v, pol, res


@pytest.mark.parametrize("forecast", [False, True])
def test_a_cut_stream_shows_the_same_outputs(forecast):
    v, rt = video(4), runtimes()
    full = run_policy(StaticPolicy(BIG, forecast=forecast), v, rt, KeyedDraws((1,)))
    for cut in (1, 17, 45, 89):
        part = run_policy(StaticPolicy(BIG, forecast=forecast), v, rt, KeyedDraws((1,)), n_frames=cut)
        assert same_outputs(part.outputs, full.outputs[: len(part.outputs)])
        # every output the whole run shows before frame `cut` is there
        assert sum(o.time_s < cut / v.fps for o in full.outputs) <= len(part.outputs)
    with pytest.raises(InputError, match="n_frames must be in"):
        run_policy(StaticPolicy(BIG), v, rt, KeyedDraws((1,)), n_frames=91)


@pytest.mark.parametrize("forecast", [False, True])
@pytest.mark.parametrize("keyed", [True, False])
def test_the_branch_of_the_taken_arm_reproduces_the_run(forecast, keyed):
    draws = KeyedDraws((5, 1)) if keyed else np.random.default_rng([5, 1])
    v, pol, res = exploring_run(draws, forecast)
    assert len(pol.decision_frames) >= 4 and pol.decision_runs[0] == 0
    assert len({GRID.from_action(a).name for a in pol.actions}) == 2  # both arms were taken
    r1 = decision_rewards(v.gts, res.outputs, pol.decision_frames, v.fps)
    table = branch_r1(v, runtimes(), draws, res, pol, GRID.names())
    taken = [GRID.names().index(GRID.from_action(a).name) for a in pol.actions]
    assert np.array_equal(table[np.arange(len(taken)), taken], r1)
    # the other arm gives other rewards: the branch did run it
    other = [1 - t for t in taken]
    assert not np.allclose(table[np.arange(len(taken)), other], r1)


def test_the_branch_keeps_the_recorded_runs_before_the_decision():
    draws = KeyedDraws((5, 2))
    v, pol, res = exploring_run(draws, True, seed=2)
    k = len(pol.decision_runs) // 2
    n, f = pol.decision_runs[k], pol.decision_frames[k]
    for arm in GRID.names():
        br = run_policy(ReplayPolicy(res.configs[:n], arm, pol.scheduler, pol.forecast), v, runtimes(), draws)
        assert br.detector_runs[:n] == res.detector_runs[:n]
        assert {r.config for r in br.detector_runs[n:]} == {arm}
        assert br.detector_runs[n].frame_index >= f


def test_branch_targets_by_hand():
    grid = ConfigGrid(models=["m"], scales=[200, 100], topks=[10, 20, 30], strides=[1])
    # grid order: (200,10) (200,20) (200,30) (100,10) (100,20) (100,30)
    r = np.array([0.1, 0.5, -0.2, 0.3, 0.0, 0.4])
    model, scale, topk, stride = branch_targets(grid, r, "max")
    assert model.tolist() == [0.5] and stride.tolist() == [0.5]
    assert scale.tolist() == [0.5, 0.4]  # max(0.1, 0.5, -0.2), max(0.3, 0.0, 0.4)
    assert topk.tolist() == [0.3, 0.5, 0.4]  # max(0.1, 0.3), max(0.5, 0.0), max(-0.2, 0.4)
    _, scale, topk, _ = branch_targets(grid, r, "mean")
    assert scale == pytest.approx([0.4 / 3, 0.7 / 3]) and topk == pytest.approx([0.2, 0.25, 0.1])
    _, scale, topk, _ = branch_targets(grid, r, "fixed", "m@100_k20_s1")
    assert scale.tolist() == [0.5, 0.0]  # (200,20), (100,20)
    assert topk.tolist() == [0.3, 0.0, 0.4]  # (100,10), (100,20), (100,30)
    with pytest.raises(InputError, match="6 configurations"):
        branch_targets(grid, r[:5])
    with pytest.raises(InputError, match="needs the fixed configuration"):
        branch_targets(grid, r, "fixed")


def test_store_full_loss_regresses_every_arm():
    bandit = ContextualBandit(3, (2, 3), config={"hidden_sizes": [4], "batch_size": 2, "buffer_size": 4, "learning_starts": 1}, seed=0)
    z1, z2 = np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, -1.0])
    bandit.store(z1, (1, 2), 0.7)
    bandit.store_full(z2, [np.array([0.1, -0.3]), np.array([1.0, 0.0, 0.5])])
    q1, q2 = bandit.q_values(z1), bandit.q_values(z2)
    # branch 0: mean over the batch of (q1[0][1] - 0.7)^2 and the mean of (q2[0] - t0)^2
    b0 = ((q1[0][1] - 0.7) ** 2 + np.mean((q2[0] - [0.1, -0.3]) ** 2)) / 2
    b1 = ((q1[1][2] - 0.7) ** 2 + np.mean((q2[1] - [1.0, 0.0, 0.5]) ** 2)) / 2
    assert bandit.learn_step() == pytest.approx((b0 + b1) / 2, rel=1e-5)
    # a batch of bandit-feedback entries only is the paper's loss
    plain = ContextualBandit(3, (2, 3), config={"hidden_sizes": [4], "batch_size": 1, "buffer_size": 4, "learning_starts": 1}, seed=0)
    plain.store(z1, (0, 1), -0.2)
    q = plain.q_values(z1)
    assert plain.learn_step() == pytest.approx(((q[0][0] + 0.2) ** 2 + (q[1][1] + 0.2) ** 2) / 2, rel=1e-5)
    with pytest.raises(InputError, match="branch branch1 has 3 arms"):
        bandit.store_full(z1, [np.zeros(2), np.zeros(2)])
    with pytest.raises(InputError, match="finite"):
        bandit.store_full(z1, [np.zeros(2), np.array([0.0, np.nan, 0.0])])


def test_full_information_entries_survive_a_checkpoint(tmp_path):
    bandit = ContextualBandit(2, (2, 2), config={"hidden_sizes": [4]}, seed=0)
    bandit.store_full(np.array([1.0, 2.0]), [np.array([0.5, 0.25]), np.array([-1.0, 1.0])])
    bandit.store(np.array([0.0, 1.0]), (1, 0), 0.3)
    bandit.save(tmp_path / "b.pt")
    back = ContextualBandit.from_checkpoint(tmp_path / "b.pt")
    assert back._full[:2].tolist() == [True, False]
    assert back._targets[0].tolist() == [0.5, 0.25, -1.0, 1.0]
    assert back._rewards[1] == pytest.approx(0.3)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_full_information_learns_the_best_arm_of_each_context(mode):
    """Two contexts, 3 x 2 joint arms, rewards known for every arm with noise (std 0.3) larger
    than the gap between the best and second-best joint arm (0.1): the greedy arm after training
    is the best joint arm of each context."""
    grid = ConfigGrid(models=["m"], scales=[300, 200, 100], topks=[10, 20], strides=[1])
    # grid order (300,10) (300,20) (200,10) (200,20) (100,10) (100,20)
    means = {0: np.array([0.0, 0.1, 0.3, 0.4, -0.2, 0.0]), 1: np.array([0.5, 0.3, 0.1, 0.0, 0.2, 0.1])}
    # context 0: scale max .1/.4/0, mean .05/.35/-.1 -> 200; top-k max .3/.4, mean .03/.17 -> 20
    # context 1: scale max .5/.1/.2, mean .4/.05/.15 -> 300; top-k max .5/.3, mean .27/.13 -> 10
    best = {0: (0, 1, 1, 0), 1: (0, 0, 0, 0)}
    rng = np.random.default_rng(0)
    bandit = ContextualBandit(2, grid.n_arms, config={"hidden_sizes": [16], "learning_rate": 3e-3, "batch_size": 16, "buffer_size": 256, "learning_starts": 16}, seed=0)
    for _ in range(20):
        for _ in range(16):
            c = int(rng.integers(2))
            r = means[c] + rng.normal(0.0, 0.3, 6)
            bandit.store_full(np.eye(2)[c], branch_targets(grid, r, mode))
        bandit.learn(40)
    for c in (0, 1):
        assert bandit.act(np.eye(2)[c], deterministic=True) == best[c]


def toy_setup() -> StreamSetup:
    ds = SimpleNamespace(train=[video(1), video(2)], test=[video(3)])
    return StreamSetup(ds, GRID, runtimes(), ContextModels((200, 200), GRID.scales), {})


def toy_cfg(mode: str, **update) -> StreamTrainConfig:
    d = {
        "grid": GRID.model_dump(),
        "epochs": 3,
        "fixed_config": SMALL,
        "decide_prob": 0.2,
        "updates_per_video": 16,
        "test_interval_frames": 15,
        "counterfactual": mode,
        "bandit": {"hidden_sizes": [16], "learning_rate": 3e-3, "learning_starts": 4, "batch_size": 8, "buffer_size": 64},
    }
    d.update(update)
    return config_from_dict(StreamTrainConfig, d)


def test_fixed_policy_table_branches_along_the_fixed_run():
    setup = toy_setup()
    draws = lambda j, v, r: KeyedDraws((17, v.seed, r))  # noqa: E731
    t = fixed_policy_table(setup.train, GRID, setup.models, setup.runtimes, SMALL, draws, bandit_context_dim(False), 15, repeats=2, forecast=True)
    assert t.arms == GRID.names() and t.contexts.shape == (len(t.frame), bandit_context_dim(False))
    assert set(t.video.tolist()) == {0, 1} and set(t.repeat.tolist()) == {0, 1}
    # the fixed run decides every 15 frames: 0, 15, ... (the frames actually reached)
    f0 = t.frame[(t.video == 0) & (t.repeat == 0)]
    assert f0[0] == 0 and np.all(np.diff(f0) >= 15) and np.all(np.diff(f0) <= 17)
    # the fixed configuration's column is its own run; R2 of it is 0
    assert np.array_equal(t.r1[:, GRID.names().index(SMALL)], t.r1_fixed)
    assert np.all(t.rewards("r2", 10.0)[:, 1] == 0.0)
    # scale 200 finds the people exactly, scale 100 only at the lower IoU thresholds
    assert np.all(t.rewards("r2", 10.0)[:, 0] > 0.5)
    own = run_policy(StaticPolicy(SMALL), setup.train[1], setup.runtimes, KeyedDraws((17, 2, 1)))
    rows = (t.video == 1) & (t.repeat == 1)
    assert np.array_equal(segment_r1(setup.train[1], own.outputs, t.frame[rows]), t.r1_fixed[rows])


@pytest.mark.parametrize("mode", ["fixed_policy", "on_policy"])
def test_counterfactual_training_learns_the_better_configuration(mode):
    setup = toy_setup()
    cfg = toy_cfg(mode, epochs=2 if mode == "on_policy" else 3)
    bandit, rows = train_bandit(setup, cfg, seed=0)
    n = bandit.buffer_len
    assert n > 0 and bandit._full[:n].all()
    # targets: model (1 arm), scale (200, 100), top-k (1), stride (1); R2 against scale 100
    # (the fixed run's segment; on-policy, earlier results of the exploring run still show on
    # the first frames of a segment, so scale 100's target is not 0 there)
    scale_t = bandit._targets[:n, 1:3]
    assert scale_t[:, 0].mean() > scale_t[:, 1].mean() + 0.3
    if mode == "fixed_policy":
        assert np.all(scale_t[:, 1] == 0.0)
    pol = BanditPolicy(bandit, GRID, setup.models, explore=False, interval_frames=15)
    res = run_policy(pol, setup.test[0], setup.runtimes, KeyedDraws((7, 3)))
    assert set(res.configs) == {BIG}
    if mode == "fixed_policy":
        assert all(r["decisions"] > 0 for r in rows) and len(setup.cache) == 1
        table = next(iter(setup.cache.values()))
        train_bandit(setup, cfg, seed=1)  # another seed reuses the table
        assert len(setup.cache) == 1 and next(iter(setup.cache.values())) is table


def test_shape_full_rewards_penalises_leaving_the_previous_arm():
    r = np.array([[0.5, 0.1], [0.2, 0.3], [0.95, -3.0]])
    actions = [(0, 0, 0, 0), (0, 1, 0, 0), (0, 1, 0, 0)]
    out = shape_full_rewards(r, GRID, actions, switch_penalty=0.1, clip=1.0)
    # decision 1: the previous arm is BIG (column 0), so SMALL pays 0.1: 0.3 - 0.1 = 0.2;
    # decision 2: the previous arm is SMALL, so BIG pays: 0.95 - 0.1 = 0.85; -3.0 clipped to -1
    np.testing.assert_allclose(out, [[0.5, 0.1], [0.2, 0.2], [0.85, -1.0]])
    with pytest.raises(InputError, match="shape_full_rewards"):
        shape_full_rewards(r[:2], GRID, actions)


def test_counterfactual_options_are_checked():
    with pytest.raises(InputError, match="counterfactual"):
        toy_cfg("always")
    with pytest.raises(InputError, match="counterfactual_target"):
        toy_cfg("on_policy", counterfactual_target="min")
