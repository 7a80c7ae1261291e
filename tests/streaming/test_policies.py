"""Streaming policies: every policy runs on a tiny video; scheduling, decisions, switching cost,
pooled sAP against the single-stream reference, static expert, context models."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.streaming.bandit import ContextualBandit
from edgerl.streaming.configs import BRANCHES, ConfigGrid
from edgerl.streaming.context import CONTEXT_NAMES, context_dim
from edgerl.streaming.data import StreamDataConfig, StreamDataset
from edgerl.streaming.policies import (
    COUNT_SCALE,
    N_CLASSES,
    AdaScalePolicy,
    BanditPolicy,
    ContextModels,
    RandomPolicy,
    StaticPolicy,
    SwitchingRuntimes,
    choose_static_expert,
    conservative_action,
    context_models_from_data,
    evaluate_streams,
    fit_context_models,
    run_policy,
    streamer,
)
from edgerl.streaming.sap import match_outputs
from edgerl.streaming.simulator import (
    IdleFree,
    ModifiedShrinkingTail,
    RuntimeProfile,
    ShrinkingTail,
)
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import evaluate_detections

GRID = ConfigGrid(models=["person_n"], scales=[192, 128], topks=[100, 300], strides=[1, 3])


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> StreamDataset:
    cfg = StreamDataConfig(
        width_px=320, height_px=192, n_frames=40, train_frames=None, n_train_videos=1, n_test_videos=1,
        nms_timing_frames=2, cache_dir=str(tmp_path_factory.mktemp("cache")),
    )  # fmt: skip
    return StreamDataset(cfg, GRID)


@pytest.fixture(scope="module")
def models(ds) -> tuple[ContextModels, dict]:
    return fit_context_models(ds.train, GRID, seed=0, every_frames=4)


def _runtimes(ds, frames: float = 1.5) -> RuntimeProfile:
    # fixed runtimes: 1.5 frame intervals at 30 FPS for every configuration
    return RuntimeProfile({c: [frames / 30.0] for c in GRID.names()})


def _check_outputs(res, n: int) -> None:
    times = [o.time_s for o in res.outputs]
    assert times == sorted(times) and len(res.outputs) > 0
    frames = [r.frame_index for r in res.detector_runs]
    assert frames == sorted(set(frames)) and frames[-1] < n


def test_every_policy_runs(ds, models):
    ctx, _ = models
    v = ds.test[0]
    prof = ds.runtime_profile(GRID)
    rng = np.random.default_rng(0)
    bandit = ContextualBandit(context_dim(N_CLASSES), GRID.n_arms, config={"hidden_sizes": [8]}, seed=0, branch_names=BRANCHES)
    policies = {
        "static": StaticPolicy("person_n@192_k300_s1", forecast=False),
        "static_tracker": StaticPolicy("person_n@128_k100_s3"),
        "streamer": streamer("person_n@128_k300_s1"),
        "random": RandomPolicy(GRID, rng=1, interval_frames=10),
        "adascale": AdaScalePolicy(ctx, GRID, "person_n", 300),
        "adascale_idle_free": AdaScalePolicy(ctx, GRID, "person_n", 300, scheduler="idle_free"),
        "bandit_train": BanditPolicy(bandit, GRID, ctx, explore=True, decide_prob=0.5, rng=2),
        "bandit_test": BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=10),
    }
    for name, pol in policies.items():
        res = run_policy(pol, v, prof, rng)
        _check_outputs(res, v.n_frames)
        assert pol.decision_frames[0] == 0 and np.all(np.diff(pol.decision_frames) > 0), name
        m = evaluate_streams([v], [res])
        assert 0.0 <= m["sap"] <= 1.0, name
    assert isinstance(policies["static"].scheduler, ShrinkingTail)
    assert isinstance(policies["random"].scheduler, ModifiedShrinkingTail)
    assert isinstance(policies["adascale_idle_free"].scheduler, IdleFree)
    # forecasting: one output per frame from the first result on; without: one per run
    res = run_policy(policies["streamer"], v, prof, rng)
    assert len(res.outputs) == v.n_frames - int(np.ceil(res.runs[0].end_s * 30 - 1e-9))
    res = run_policy(policies["static"], v, prof, rng)
    assert len(res.outputs) == len(res.runs) and set(res.configs) == {"person_n@192_k300_s1"}
    # the tracker stride: 1 detector run then 2 tracker steps
    res = run_policy(policies["static_tracker"], v, prof, rng)
    kinds = [r.kind for r in res.runs]
    assert kinds[:6] == ["detector", "tracker", "tracker"] * 2
    # AdaScale decides before every run (the last decision may find the stream over after a
    # shrinking-tail wait), the bandit only at its decisions
    res = run_policy(policies["adascale"], v, prof, rng)
    assert len(res.detector_runs) <= len(policies["adascale"].decision_frames) <= len(res.detector_runs) + 1
    assert policies["adascale"].decision_frames[0] == 0 and res.configs[0].startswith("person_n@192")


def test_periodic_decisions_every_interval(ds):
    v = ds.test[0]
    pol = RandomPolicy(GRID, rng=0, interval_frames=10)
    res = run_policy(pol, v, _runtimes(ds), np.random.default_rng(0))
    runs = {r.frame_index: k for k, r in enumerate(res.detector_runs)}
    d = pol.decision_frames
    assert d[0] == 0 and len(d) >= 3
    for prev, cur in zip(d, d[1:]):
        assert cur >= prev + 10
        # the decision's run takes the frame decided on or, after a shrinking-tail wait, the next
        k = runs.get(cur, runs.get(cur + 1))
        assert k is not None
        # and no earlier run was due: the run before it started on a frame at most prev + 10
        assert res.detector_runs[k - 1].frame_index <= prev + 10
    expect = [r.frame_index for r in res.detector_runs if r.frame_index in d or r.frame_index - 1 in d]
    # the configuration only changes at decision runs
    for r_prev, r in zip(res.detector_runs, res.detector_runs[1:]):
        if r.frame_index not in expect:
            assert r.config == r_prev.config
    assert len({r.config for r in res.detector_runs}) > 1


def test_bandit_policy_records_decisions(ds, models):
    ctx, _ = models
    bandit = ContextualBandit(context_dim(N_CLASSES), GRID.n_arms, config={"hidden_sizes": [8]}, seed=0)
    pol = BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=15)
    res = run_policy(pol, ds.test[0], _runtimes(ds), np.random.default_rng(0))
    assert len(pol.contexts) == len(pol.actions) == len(pol.decision_frames)
    assert all(z.shape == (context_dim(N_CLASSES),) for z in pol.contexts)
    greedy = GRID.from_action(bandit.act(pol.contexts[1], deterministic=True)).name
    second = next(r for r in res.detector_runs if r.frame_index >= pol.decision_frames[1])
    assert second.config == greedy and bandit.n_decisions == 0  # greedy: no counters move
    assert pol.context_s > 0 and pol.act_s > 0
    with pytest.raises(InputError, match="do not match the grid"):
        BanditPolicy(ContextualBandit(context_dim(1), (2, 2), seed=0), GRID, ctx)


def test_switching_runtimes_add_the_cost_on_a_model_change():
    base = RuntimeProfile({"a@100_k10_s1": [0.05], "b@100_k10_s1": [0.02]})
    sw = SwitchingRuntimes(base, 0.1)
    rng = np.random.default_rng(0)
    seq = ["a@100_k10_s1", "a@100_k10_s1", "b@100_k10_s1", "b@100_k10_s1", "a@100_k10_s1"]
    got = [sw.sample(c, rng) for c in seq]
    assert got == pytest.approx([0.05, 0.05, 0.12, 0.02, 0.15])  # +0.1 s after each change
    assert sw.n_switches == 2 and sw.mean_s("b@100_k10_s1") == pytest.approx(0.02)
    sw.reset()
    assert sw.sample("b@100_k10_s1", rng) == pytest.approx(0.02) and sw.n_switches == 0


def test_pooled_sap_matches_the_single_stream_reference(ds):
    v = ds.test[0]
    res = run_policy(streamer("person_n@192_k300_s1"), v, _runtimes(ds), np.random.default_rng(0))
    pooled = evaluate_streams([v], [res])
    ref = res.evaluate(v.gts)
    for k in ("sap", "sap50", "sap75", "n_missed_frames"):
        assert pooled[k] == pytest.approx(ref[k], nan_ok=True)
    # two videos pooled into one COCO evaluation: the same numbers as pycocotools on the
    # zero-order-hold predictions of every frame
    res2 = run_policy(streamer("person_n@128_k100_s1"), ds.train[0], _runtimes(ds), np.random.default_rng(1))
    pooled = evaluate_streams([v, ds.train[0]], [res, res2])
    gts, preds = [], []
    for vid, r in ((v, res), (ds.train[0], res2)):
        idx = match_outputs([o.time_s for o in r.outputs], vid.n_frames, vid.fps)
        gts += vid.gts
        preds += [r.outputs[j].detections if j >= 0 else Detections.empty() for j in idx]
    ref = evaluate_detections(gts, preds)
    assert pooled["sap"] == pytest.approx(ref["map50_95"], abs=1e-9)
    assert pooled["sap50"] == pytest.approx(ref["map50"], abs=1e-9)
    assert pooled["n_frames"] == 2 * v.n_frames
    with pytest.raises(InputError, match="2 videos but 1 results"):
        evaluate_streams([v, v], [res])


def test_static_expert_is_the_argmax(ds):
    g = GRID.model_copy(update={"strides": [1]})
    best, table = choose_static_expert(ds.train, g, _runtimes(ds), seed=0)
    assert set(table) == set(g.names()) and table[best.name] == max(table.values())
    # the table entry is the pooled sAP of that static run with the same runtime draws
    res = run_policy(StaticPolicy(best), ds.train[0], _runtimes(ds), np.random.default_rng([0, 0]))
    assert evaluate_streams(ds.train, [res])["sap"] == pytest.approx(table[best.name])


def test_context_models(ds, models):
    ctx, data = models
    assert ctx.regressor is not None and ctx.classifier is None  # one model: no switchability
    assert data["scale_X"].shape == (len(range(0, 40, 4)) * 2, 9 + N_CLASSES + 1)
    d = Detections(np.array([[0, 0, 10, 10], [50, 50, 200, 180]]), np.array([0.9, 0.5]), np.array([0, 0]))
    z = ctx.context(d, 128)
    names = CONTEXT_NAMES(N_CLASSES)
    assert len(z) == context_dim(N_CLASSES) == 15
    assert z[names.index("scale_current")] == pytest.approx(128 / 192)
    assert z[names.index("count_class_0")] == pytest.approx(2 / COUNT_SCALE)
    # areas 100 px^2 (small) and 150 * 130 = 19500 px^2 (large)
    assert z[names.index("count_small")] == pytest.approx(1 / COUNT_SCALE)
    assert z[names.index("count_large")] == pytest.approx(1 / COUNT_SCALE)
    assert z[names.index("conf_mean")] == pytest.approx(0.7)
    assert 128 / 192 <= z[names.index("scale_predicted")] <= 1.0
    # the saved data and seed give back the same regressor
    again = context_models_from_data(data)
    f = ctx.features(d, 128)
    assert again.predicted_scale(f) == pytest.approx(ctx.predicted_scale(f))


def test_bandit_policy_dynamics_slots(ds, models):
    from edgerl.streaming.context import dynamics_features
    from edgerl.streaming.policies import CONFIDENT_SCORE, bandit_context_dim
    from edgerl.streaming.simulator import PolicyContext

    ctx, _ = models
    assert bandit_context_dim(False) == context_dim(N_CLASSES) and bandit_context_dim(True) == context_dim(N_CLASSES) + 3
    bandit = ContextualBandit(bandit_context_dim(True), GRID.n_arms, config={"hidden_sizes": [8]}, seed=0)
    pol = BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=1)
    assert pol.dynamics
    v = ds.test[0]
    pol.reset(v)
    d0 = v.detections(GRID.configs()[0], 0)
    d1 = v.detections(GRID.configs()[0], 3)
    name = GRID.configs()[0].name
    pol(PolicyContext(0.0, 0, 0, None, None, -1))
    pol(PolicyContext(0.05, 2, 1, name, d0, 0))
    scale = pol.current.scale  # the context reads the scale running before the decision
    pol(PolicyContext(0.15, 5, 2, name, d1, 3))
    z = pol.contexts[-1]
    assert z.shape == (bandit_context_dim(True),)
    np.testing.assert_allclose(z[: context_dim(N_CLASSES)], ctx.context(d1, scale), rtol=1e-6)
    want = dynamics_features(d1, d0, 3, v.image_hw, v.fps, CONFIDENT_SCORE, COUNT_SCALE)
    np.testing.assert_allclose(z[context_dim(N_CLASSES) :], want, rtol=1e-6)
    # the first decision has no previous output: speed 0; a whole run works end to end
    assert pol.contexts[0][-1] == 0.0
    run_policy(pol, v, _runtimes(ds), np.random.default_rng(0))
    assert all(c.shape == (bandit_context_dim(True),) for c in pol.contexts)
    with pytest.raises(InputError, match="context_dim 16"):
        BanditPolicy(ContextualBandit(16, GRID.n_arms, seed=0), GRID, ctx)


def test_conservative_action_golden():
    q = [np.array([0.0, 0.3, 0.1]), np.array([0.5, 0.2])]
    fixed = (0, 1)
    # advantages of the greedy arms over the fixed ones: 0.3 - 0.0 = 0.3 and 0.5 - 0.2 = 0.3
    assert conservative_action(q, fixed, 0.2) == (1, 0)
    assert conservative_action(q, fixed, 0.3) == (0, 1)  # must exceed, not equal
    assert conservative_action(q, fixed, -np.inf) == (1, 0)
    assert conservative_action(q, fixed, np.inf) == (0, 1)
    # the fixed arm is greedy: kept at any threshold, even a negative one
    assert conservative_action([np.array([0.1, 0.4])], (1,), -1.0) == (1,)
    # per branch: only the second branch gains more than 0.25
    q2 = [np.array([0.0, 0.2]), np.array([0.0, 0.9])]
    assert conservative_action(q2, (0, 0), 0.25) == (0, 1)
    with pytest.raises(InputError, match="2 branches"):
        conservative_action(q2, (0,), 0.0)


def _far_fixed(bandit, ctx, v):
    """A grid configuration the greedy bandit does not pick for the first frame's context."""
    greedy = GRID.from_action(bandit.act(ctx.context(None, float(np.median(GRID.scales))), deterministic=True))
    return next(c for c in GRID.configs() if c.scale != greedy.scale and c.topk != greedy.topk and c.stride == 1)


def _same_run(a, b) -> bool:
    if [r.config for r in a.detector_runs] != [r.config for r in b.detector_runs]:
        return False
    if [(o.time_s, o.frame_index) for o in a.outputs] != [(o.time_s, o.frame_index) for o in b.outputs]:
        return False
    return all(np.array_equal(x.detections.boxes, y.detections.boxes) for x, y in zip(a.outputs, b.outputs))


def test_deviation_threshold_inf_is_the_fixed_run_and_minus_inf_the_greedy_run(ds, models):
    ctx, _ = models
    v = ds.test[0]
    prof = ds.runtime_profile(GRID)  # measured runtimes: the draws matter
    bandit = ContextualBandit(context_dim(N_CLASSES), GRID.n_arms, config={"hidden_sizes": [8]}, seed=4)
    fixed = _far_fixed(bandit, ctx, v)
    # tau = inf: exactly the static policy's run (same runtime draws, same outputs)
    safe = BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=5, fixed=fixed, deviation_threshold=np.inf)
    a = run_policy(safe, v, prof, np.random.default_rng(0))
    b = run_policy(StaticPolicy(fixed), v, prof, np.random.default_rng(0))
    assert _same_run(a, b) and set(a.configs) == {fixed.name}
    assert safe.n_deviations == 0 and len(safe.actions) > 3
    # tau = -inf: exactly the plain greedy policy, which does leave the fixed configuration
    loose = BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=5, fixed=fixed, deviation_threshold=-np.inf)
    plain = BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=5)
    c = run_policy(loose, v, prof, np.random.default_rng(0))
    d = run_policy(plain, v, prof, np.random.default_rng(0))
    assert _same_run(c, d) and loose.actions == plain.actions
    assert loose.n_deviations == len(loose.actions) > 0
    # a finite threshold: every decision is the per-branch rule on the network's values
    mid = BanditPolicy(bandit, GRID, ctx, explore=False, interval_frames=5, fixed=fixed, deviation_threshold=0.01)
    run_policy(mid, v, prof, np.random.default_rng(0))
    fa = GRID.to_action(fixed)
    assert mid.actions == [conservative_action(bandit.q_values(z), fa, 0.01) for z in mid.contexts]
    with pytest.raises(InputError, match="fixed"):
        BanditPolicy(bandit, GRID, ctx, fixed="person_n@999_k100_s1")
    with pytest.raises(InputError, match="nan"):
        BanditPolicy(bandit, GRID, ctx, fixed=fixed, deviation_threshold=float("nan"))
