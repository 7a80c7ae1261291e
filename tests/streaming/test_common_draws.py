"""Common random numbers for the runtimes (:class:`KeyedDraws`): a run's runtime depends only on
its stream, frame and configuration, so policies compared on one stream share it wherever they
run the same configuration on the same frame."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgerl.streaming.bandit import ContextualBandit
from edgerl.streaming.configs import ConfigGrid
from edgerl.streaming.policies import (
    ContextModels,
    RandomPolicy,
    StaticPolicy,
    SwitchingRuntimes,
    bandit_context_dim,
    evaluate_streams,
    run_policy,
)
from edgerl.streaming.simulator import (
    KeyedDraws,
    PolicyContext,
    RuntimeProfile,
    ShrinkingTail,
    SimResult,
)
from edgerl.streaming.train import (
    StreamSetup,
    StreamTrainConfig,
    eval_draws,
    evaluate_policy,
    fixed_config,
    validation_sap,
)
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError
from edgerl.vision.metrics import GroundTruth

from ._toys import toy_stream

GRID = ConfigGrid(models=["toy"], scales=[200, 100], topks=[10], strides=[1])
BIG, SMALL = "toy@200_k10_s1", "toy@100_k10_s1"


def video(seed: int, n: int = 90):
    gts, boxes = [], []
    for i in range(n):
        b = np.array([[10.0 + 0.5 * i, 20.0, 50.0 + 0.5 * i, 60.0]], np.float32)
        gts.append(GroundTruth(b, np.zeros(1, np.int64), 200, 200))
        boxes.append(np.repeat(b, 4, axis=0))
    return toy_stream(seed, "test", gts, boxes, boxes)


def runtimes() -> RuntimeProfile:
    # 40 distinct samples per configuration (1.05 .. 2.22 frames at 30 FPS for BIG, about half
    # for SMALL): two draws agree only when they pick the same sample
    big = 0.035 + 0.001 * np.arange(40)
    return RuntimeProfile({BIG: big, SMALL: 0.5 * big + 0.0001})


class DeviateOnce(StaticPolicy):
    """The static policy on BIG, except its ``k``-th detector run, which runs SMALL."""

    def __init__(self, k: int) -> None:
        super().__init__(BIG, ShrinkingTail(), forecast=False)
        self.k = k

    def __call__(self, ctx: PolicyContext) -> str:
        name = super().__call__(ctx)
        return SMALL if ctx.run_index == self.k else name


def durations(res: SimResult) -> dict[tuple[int, str], float]:
    """(frame, configuration) -> runtime (s) of every detector run."""
    return {(r.frame_index, r.config): r.end_s - r.start_s for r in res.detector_runs}


def test_keyed_draws_depend_on_frame_and_config_only():
    d = KeyedDraws((7, 42))
    a = d.generator(BIG, 5).random(3)
    d.generator(SMALL, 5).random(100)  # another pair in between changes nothing
    np.testing.assert_array_equal(d.generator(BIG, 5).random(3), a)
    np.testing.assert_array_equal(KeyedDraws([7, 42]).generator(BIG, 5).random(3), a)
    # other frame, configuration or stream: other draws
    for other in (d.generator(BIG, 6), d.generator(SMALL, 5), KeyedDraws((7, 43)).generator(BIG, 5)):
        assert not np.array_equal(other.random(3), a)
    for bad in ((), (1, -2)):
        with pytest.raises(InputError, match="KeyedDraws: key"):
            KeyedDraws(bad)
    with pytest.raises(InputError, match="frame_index"):
        d.generator(BIG, -1)


def test_static_run_is_the_same_whatever_ran_before():
    v, rt, d = video(1), runtimes(), KeyedDraws((7, 1))
    first = run_policy(StaticPolicy(BIG, forecast=False), v, rt, d)
    run_policy(RandomPolicy(GRID, 3, interval_frames=5, forecast=False), v, rt, d)
    again = run_policy(StaticPolicy(BIG, forecast=False), v, rt, d)
    assert [o.time_s for o in again.outputs] == [o.time_s for o in first.outputs]
    assert again.detector_runs == first.detector_runs
    # the profile's sample of BIG on frame 0: index drawn by KeyedDraws((7, 1)).generator(BIG, 0)
    g = KeyedDraws((7, 1)).generator(BIG, 0)
    expected = float(rt.samples(BIG)[int(g.integers(40))])
    assert first.detector_runs[0].end_s == pytest.approx(expected)


def test_one_deviation_keeps_the_expert_runtimes_on_shared_frames():
    v, rt = video(2), runtimes()
    keyed = KeyedDraws((7, 2))
    expert = run_policy(StaticPolicy(BIG, forecast=False), v, rt, keyed)
    dev = run_policy(DeviateOnce(3), v, rt, keyed)
    e, x = durations(expert), durations(dev)
    shared = set(e) & set(x)
    assert [r.config for r in dev.detector_runs].count(SMALL) == 1
    assert len(shared) >= 5
    for key in shared:
        assert x[key] == pytest.approx(e[key], abs=1e-12), key
    # the runs before the deviation are the expert's own runs
    assert dev.detector_runs[:3] == expert.detector_runs[:3]
    # one generator drawn in run order: the draws shift after the deviation, so some shared
    # (frame, configuration) pair gets another runtime (what the keyed draws prevent)
    e2 = durations(run_policy(StaticPolicy(BIG, forecast=False), v, rt, np.random.default_rng([7, 2])))
    x2 = durations(run_policy(DeviateOnce(3), v, rt, np.random.default_rng([7, 2])))
    assert any(abs(x2[k] - e2[k]) > 1e-9 for k in set(e2) & set(x2))


def test_switching_runtimes_with_keyed_draws():
    other = "toy2@200_k10_s1"
    base = RuntimeProfile({BIG: runtimes().samples(BIG), other: runtimes().samples(SMALL)})
    sw = SwitchingRuntimes(base, 0.1)
    d = KeyedDraws((7, 4))
    # first run: no switch; second run changes the model: its keyed draw + 0.1 s
    assert sw.sample(BIG, d.generator(BIG, 0)) == pytest.approx(base.sample(BIG, d.generator(BIG, 0)))
    assert sw.sample(other, d.generator(other, 2)) == pytest.approx(base.sample(other, d.generator(other, 2)) + 0.1)
    assert sw.n_switches == 1


def setup_of(common: bool) -> StreamSetup:
    ds = SimpleNamespace(train=[video(10), video(11)], test=[video(20), video(21)])
    return StreamSetup(ds, GRID, runtimes(), ContextModels((200, 200), GRID.scales), {}, common_draws=common)


def test_evaluate_policy_uses_keyed_draws_for_every_method_and_seed():
    setup = setup_of(True)
    static = lambda: StaticPolicy(BIG, forecast=False)  # noqa: E731
    _, a, _ = evaluate_policy(setup, static, seed=0)
    _, b, _ = evaluate_policy(setup, static, seed=5)
    # the static expert under two run seeds: identical output times on every test video
    for ra, rb in zip(a, b):
        assert [o.time_s for o in ra.outputs] == [o.time_s for o in rb.outputs]
    # random policies with other seeds: other choices, the same runtime on every shared pair
    for s in (1, 2):
        _, rand, _ = evaluate_policy(setup, lambda s=s: RandomPolicy(GRID, s, interval_frames=7, forecast=False), seed=s)
        for j, (r, ex) in enumerate(zip(rand, a)):
            dr, de = durations(r), durations(ex)
            own = durations(run_policy(StaticPolicy(SMALL, forecast=False), setup.test[j], setup.runtimes, KeyedDraws((7, setup.test[j].seed))))
            for key in dr:
                ref = de.get(key, own.get(key))
                if ref is not None:
                    assert dr[key] == pytest.approx(ref, abs=1e-12)
    assert isinstance(eval_draws(setup, 0, 0, setup.test[0]), KeyedDraws)
    assert eval_draws(setup, 0, 0, setup.test[0]).key == (7, 20)
    # without common draws: a generator per (seed, 7, video index), so the seed matters
    plain = setup_of(False)
    _, c, _ = evaluate_policy(plain, static, seed=0)
    _, d, _ = evaluate_policy(plain, static, seed=5)
    assert any([o.time_s for o in rc.outputs] != [o.time_s for o in rd.outputs] for rc, rd in zip(c, d))


def test_config_fields_and_validation_draws():
    cfg = config_from_dict(StreamTrainConfig, {"grid": GRID.model_dump(), "forecast": False, "common_runtime_draws": True, "val_repeats": 2, "fixed_config": BIG}, "t")
    assert cfg.common_runtime_draws and not cfg.train_common_draws
    assert not StreamTrainConfig().common_runtime_draws
    setup = setup_of(True)
    vids = setup.train
    # validation repeat r of a video draws from KeyedDraws((13, video seed, r)), whatever the seed
    direct = [run_policy(StaticPolicy(BIG, forecast=False), v, setup.runtimes, KeyedDraws((13, v.seed, r))) for r in range(2) for v in vids]
    pooled = evaluate_streams(vids + vids, direct)["sap"]
    bandit = ContextualBandit(bandit_context_dim(False), GRID.n_arms, config={"hidden_sizes": [8]}, seed=0)
    # tau = inf: the bandit policy is the fixed policy on BIG, whatever the network says
    for seed in (3, 4):
        got = validation_sap(bandit, setup, vids, cfg, seed=seed, fixed=fixed_config(cfg), threshold=float("inf"))
        assert got == pytest.approx(pooled, abs=1e-12)


def test_experiment_setups_carry_common_draws():
    from edgerl.streaming.experiment import _base_setup, _sub_setup

    ds = SimpleNamespace(train=[video(10)], test=[video(20)], runtime_profile=lambda grid, sf=1.0, sl=None: runtimes())
    models = ContextModels((200, 200), GRID.scales)
    for common in (True, False):
        for cost in (0.0, 100.0):
            train = config_from_dict(StreamTrainConfig, {"grid": GRID.model_dump(), "common_runtime_draws": common, "switch_cost_ms": cost}, "t")
            base = _base_setup(ds, GRID, train, models, {})
            assert base.common_draws is common
            assert isinstance(base.runtimes, SwitchingRuntimes) is (cost > 0)
            assert _sub_setup(base, GRID, train, speed_factor=0.5).common_draws is common
