"""Virtual-clock simulator: runtimes, caches, scheduling rules (vs exact Fractions), real time."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgerl.streaming.forecast import KalmanForecaster
from edgerl.streaming.simulator import (
    DictDetectionCache,
    IdleFree,
    LazyDetectionCache,
    ModifiedShrinkingTail,
    PolicyContext,
    RuntimeProfile,
    ShrinkingTail,
    TrackerSetting,
    exact_schedule,
    fixed_policy,
    make_scheduler,
    run_realtime,
    simulate,
)
from edgerl.streaming.tracker import LightTracker, LightTrackerConfig
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections


def _det(i: int) -> Detections:
    return Detections(np.array([[10.0 + i, 10.0, 60.0 + i, 60.0]]), np.array([0.9]), np.array([0]))


def _cache(configs=("a", "b")) -> LazyDetectionCache:
    return LazyDetectionCache(lambda c, i: _det(i))


# --- runtime profile and caches ---------------------------------------------------------------


def test_runtime_profile_sampling_and_speed_factor():
    prof = RuntimeProfile({"a": [0.1, 0.3], "b": [0.05]}, speed_factor=2.0)
    rng = np.random.default_rng(0)
    draws = {prof.sample("a", rng) for _ in range(50)}
    assert draws == {0.05, 0.15}  # samples / 2
    assert prof.mean_s("a") == pytest.approx(0.1)  # (0.1 + 0.3) / 2 / 2
    assert prof.mean_s("b") == pytest.approx(0.025)
    assert prof.configs == ("a", "b")
    again = RuntimeProfile.from_dict(prof.to_dict())
    assert again.mean_s("a") == prof.mean_s("a") and again.speed_factor == 2.0


def test_runtime_profile_errors_name_the_config():
    with pytest.raises(InputError, match="configuration 'slow' has no runtime samples"):
        RuntimeProfile({"fast": [0.1], "slow": []})
    with pytest.raises(InputError, match="configuration 'x' has runtime sample -1.0"):
        RuntimeProfile({"x": [0.1, -1.0]})
    with pytest.raises(InputError, match="unknown configuration 'c'; known: a"):
        RuntimeProfile({"a": [0.1]}).mean_s("c")
    with pytest.raises(InputError, match="speed_factor"):
        RuntimeProfile({"a": [0.1]}, speed_factor=0)


def test_detection_caches():
    d0, d1 = _det(0), _det(1)
    cache = DictDetectionCache({"a": [d0, d1]})
    assert cache.get("a", 1) is d1
    with pytest.raises(InputError, match="configuration 'b'"):
        cache.get("b", 0)
    with pytest.raises(InputError, match="frames 0..1, frame 5"):
        cache.get("a", 5)
    calls = []
    lazy = LazyDetectionCache(lambda c, i: calls.append((c, i)) or _det(i))
    assert lazy.get("a", 3) is lazy.get("a", 3)
    lazy.get("b", 3)
    assert calls == [("a", 3), ("b", 3)] and lazy.n_computed == 2


# --- scheduling rules -------------------------------------------------------------------------


def test_shrinking_tail_rule_golden():
    st_ = ModifiedShrinkingTail()
    # s = 3.4, r = 1.8: tail(5.2) = 0.2 < tail(3.4) = 0.4 -> wait for frame 4.
    assert st_.should_wait(3.4, 1.8, 0.0, 30.0)
    # s = 3.4, r = 1.5: tail(4.9) = 0.9 >= 0.4 -> start now.
    assert not st_.should_wait(3.4, 1.5, 0.0, 30.0)
    # On a frame boundary tail(s) = 0: never wait.
    assert not st_.should_wait(3.0, 1.8, 0.0, 30.0)
    # Plain shrinking tail ignores the per-config runtime and uses its own r (1.8 frames at 30 fps).
    assert ShrinkingTail(expected_runtime_s=0.06).should_wait(3.4, 1.5, 1.5, 30.0)
    assert not IdleFree().should_wait(3.4, 1.8, 1.8, 30.0)


def test_hand_computed_schedules():
    # fps 10, constant runtime 0.15 s = 1.5 frames, 6 frames (0..5).
    # idle-free: [0, 1.5] on frame 0; at 1.5 frame 1 -> [1.5, 3.0]; at 3.0 frame 3 -> [3.0, 4.5];
    #   at 4.5 frame 4 -> [4.5, 6.0]; at 6.0 frame 6 does not exist: stop.
    # shrinking tail (r = 1.5): at 1.5 tail(3.0) = 0 < 0.5 -> wait, frame 2 [2, 3.5];
    #   at 3.5 tail(5.0) = 0 < 0.5 -> frame 4 [4, 5.5]; at 5.5 -> would wait for frame 6: stop.
    prof = RuntimeProfile({"a": [0.15]})
    runs = {}
    for sched in (IdleFree(), ShrinkingTail(), ModifiedShrinkingTail()):
        res = simulate(6, 10.0, fixed_policy("a"), _cache(), prof, sched, np.random.default_rng(0))
        runs[sched.rule] = res.schedule_frames()
    want_if = [(0, 1.5, 0), (1.5, 3.0, 1), (3.0, 4.5, 3), (4.5, 6.0, 4)]
    want_st = [(0, 1.5, 0), (2.0, 3.5, 2), (4.0, 5.5, 4)]
    for got, want in ((runs["idle_free"], want_if), (runs["shrinking_tail"], want_st)):
        assert [r[2] for r in got] == [w[2] for w in want]
        np.testing.assert_allclose([r[:2] for r in got], [w[:2] for w in want], atol=1e-9)
    assert runs["modified_shrinking_tail"] == runs["shrinking_tail"]
    # Outputs are delivered at the end times, each carrying its input frame.
    res = simulate(
        6, 10.0, fixed_policy("a"), _cache(), prof, ShrinkingTail(), np.random.default_rng(0)
    )
    assert [o.frame_index for o in res.outputs] == [0, 2, 4]
    np.testing.assert_allclose([o.time_s for o in res.outputs], [0.15, 0.35, 0.55])


def test_exact_schedule_golden():
    # Runtimes 3/2, 7/4, 1/3 frames, idle-free: [0, 3/2] f0; [3/2, 13/4] f1; [13/4, 43/12] f3;
    # modified shrinking tail: at 3/2 tail(3/2 + 7/4 = 13/4) = 1/4 < 1/2 -> wait: [2, 15/4] f2;
    # at 15/4 tail(15/4 + 1/3 = 49/12) = 1/12 < 3/4 -> wait: [4, 13/3] f4.
    rts = [Fraction(3, 2), Fraction(7, 4), Fraction(1, 3)]
    assert exact_schedule(rts, 10, "idle_free") == [
        (0, Fraction(3, 2), 0), (Fraction(3, 2), Fraction(13, 4), 1),
        (Fraction(13, 4), Fraction(43, 12), 3),
    ]  # fmt: skip
    assert exact_schedule(rts, 10, "modified_shrinking_tail") == [
        (0, Fraction(3, 2), 0), (2, Fraction(15, 4), 2), (4, Fraction(13, 3), 4),
    ]  # fmt: skip
    with pytest.raises(InputError, match="rule 'fifo' is unknown"):
        exact_schedule(rts, 10, "fifo")


_FRACTIONS = st.builds(
    Fraction, st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=10)
).filter(lambda f: Fraction(1, 5) <= f <= 4)


@settings(max_examples=150, deadline=None)
@example(  # 4/3 frames: float sums of 1.333.. drift off the exact frame boundary at 4, 8, ...
    values=[Fraction(4, 3)], picks=[0] * 81, n_frames=30, rule="shrinking_tail", fps=30.0
)
@example(values=[Fraction(2, 3), Fraction(1, 3)], picks=[0, 1] * 40 + [0], n_frames=40,
         rule="modified_shrinking_tail", fps=25.0)  # fmt: skip
@given(
    values=st.lists(_FRACTIONS, min_size=1, max_size=4),
    picks=st.lists(st.integers(min_value=0, max_value=3), min_size=81, max_size=81),
    n_frames=st.integers(min_value=1, max_value=60),
    rule=st.sampled_from(["idle_free", "shrinking_tail", "modified_shrinking_tail"]),
    fps=st.sampled_from([30.0, 25.0, 7.0]),
)
def test_float_simulator_equals_exact_schedule(values, picks, n_frames, rule, fps):
    # Each configuration has one runtime (a small-denominator rational number of frames, so
    # exact ties between tails are common); the policy switches configuration at every run.
    names = [f"c{k}" for k in range(len(values))]
    seq = [names[p % len(names)] for p in picks]
    prof = RuntimeProfile({nm: [float(v) / fps] for nm, v in zip(names, values)})

    def policy(ctx: PolicyContext) -> str:
        return seq[ctx.run_index]

    res = simulate(
        n_frames, fps, policy, _cache(), prof, make_scheduler(rule), np.random.default_rng(0)
    )
    rts = [values[p % len(values)] for p in picks]
    want = exact_schedule(rts, n_frames, rule)
    got = res.schedule_frames()
    assert [g[2] for g in got] == [w[2] for w in want]
    np.testing.assert_allclose(
        [g[:2] for g in got], [[float(a), float(b)] for a, b, _ in want], atol=1e-6
    )
    assert res.configs == seq[: len(got)]


# --- policy, forecaster, tracker ----------------------------------------------------------------


def test_policy_context_and_switching():
    seen: list[PolicyContext] = []

    def policy(ctx: PolicyContext) -> str:
        seen.append(ctx)
        return "a" if ctx.run_index % 2 == 0 else "b"

    # a: 1.0 frame, b: 2.0 frames at fps 10. Runs: a on f0 [0, 1]; b on f1 [1, 3]; a on f3 [3, 4];
    # b on f4 [4, 6]; next frame 6 >= 6: stop.
    prof = RuntimeProfile({"a": [0.1], "b": [0.2]})
    res = simulate(6, 10.0, policy, _cache(), prof, IdleFree(), np.random.default_rng(0))
    assert res.configs == ["a", "b", "a", "b"]
    assert [r.frame_index for r in res.detector_runs] == [0, 1, 3, 4]
    assert seen[0].time_s == 0 and seen[0].frame_index == 0 and seen[0].last_config is None
    assert seen[0].last_detections is None and seen[0].last_frame_index == -1
    assert seen[2].last_config == "b" and seen[2].last_frame_index == 1
    assert seen[2].time_s == pytest.approx(0.3) and seen[2].frame_index == 3
    assert seen[2].last_detections is not None


def test_forecaster_emits_one_output_per_frame():
    # Runtime 1.5 frames at fps 10 over 8 frames: the first result arrives at 1.5, so frames
    # 2..7 get forecasts (6 outputs), each stamped at its own frame time, lag 0.
    prof = RuntimeProfile({"a": [0.15]})
    res = simulate(
        8, 10.0, fixed_policy("a"), _cache(), prof, IdleFree(), np.random.default_rng(0),
        forecaster=KalmanForecaster(),
    )  # fmt: skip
    assert [o.frame_index for o in res.outputs] == list(range(2, 8))
    np.testing.assert_allclose([o.time_s for o in res.outputs], np.arange(2, 8) / 10.0)
    # Runs: f0 [0, 1.5], f1 [1.5, 3], f3 [3, 4.5], f4 [4.5, 6], f6 [6, 7.5], ... At frame 7 the
    # newest result is f4's (x1 = 14). The object moves +1 px per frame, so the filter has a
    # positive velocity and the forecast for frame 7 lies right of 14 (and not past 17).
    assert [r.frame_index for r in res.detector_runs[:5]] == [0, 1, 3, 4, 6]
    assert 14.0 < res.outputs[-1].detections.boxes[0, 0] <= 17.0


def test_tracker_fills_the_stride():
    # Stride 3: detector, tracker, tracker, detector, ... Tracker step cost = base 0.01 s.
    cfg = LightTrackerConfig(cost_base_s=0.01, cost_per_mpx_s=0.0)
    prof = RuntimeProfile({"a": [0.25]})
    res = simulate(
        12, 10.0, fixed_policy("a"), _cache(), prof, IdleFree(), np.random.default_rng(0),
        tracker=LightTracker(cfg), tracker_settings={"a": TrackerSetting(stride=3, scale=360)},
    )  # fmt: skip
    kinds = [r.kind for r in res.runs]
    assert kinds[:6] == ["detector", "tracker", "tracker", "detector", "tracker", "tracker"]
    # Detector f0 [0, 2.5]; tracker f2 [2.5, 2.6]; tracker f3 (waits for it) [3.0, 3.1];
    # detector f4 [3.1, 5.6]; ...
    first = res.schedule_frames("tracker")[:2]
    np.testing.assert_allclose([f[:2] for f in first], [[2.5, 2.6], [3.0, 3.1]], atol=1e-9)
    assert [f[2] for f in first] == [2, 3]
    assert res.detector_runs[1].frame_index == 4
    assert len(res.outputs) == len(res.runs)


def test_speed_factor_shortens_runs():
    prof = RuntimeProfile({"a": [0.2]}, speed_factor=2.0)
    res = simulate(5, 10.0, fixed_policy("a"), _cache(), prof, IdleFree(), np.random.default_rng(0))
    assert [r.frame_index for r in res.detector_runs] == [0, 1, 2, 3, 4]
    assert res.runs[0].end_s == pytest.approx(0.1)


def test_simulate_bad_input():
    prof = RuntimeProfile({"a": [0.1]})
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="tracker_settings given but tracker is None"):
        simulate(5, 10, fixed_policy("a"), _cache(), prof, IdleFree(), rng,
                 tracker_settings={"a": TrackerSetting(2)})  # fmt: skip
    with pytest.raises(InputError, match="unknown configuration 'zz'"):
        simulate(5, 10, fixed_policy("zz"), _cache(), prof, IdleFree(), rng)
    with pytest.raises(InputError, match="fps"):
        simulate(5, -1, fixed_policy("a"), _cache(), prof, IdleFree(), rng)
    with pytest.raises(InputError, match="stride"):
        TrackerSetting(stride=0)
    with pytest.raises(InputError, match="valid: idle_free"):
        make_scheduler("round_robin")


# --- real time ------------------------------------------------------------------------------------


class _FakeClock:
    """Time that moves only when the detector runs or the runner sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.slept.append(dt)
        self.now += dt


@pytest.mark.parametrize(
    ("sched", "frames"), [(IdleFree(), [0, 2, 5, 7]), (ShrinkingTail(), [0, 3, 6, 9])]
)
def test_run_realtime_fake_clock(sched, frames):
    # fps 8, detector takes 5/16 s = 2.5 frames (exact in binary).
    # idle-free: f0 [0, 2.5]; f2 [2.5, 5]; f5 [5, 7.5]; f7 [7.5, 10]; frame 10 absent: stop.
    # shrinking tail (r = measured 2.5): first run never waits; at 2.5 tail(5) = 0 < 0.5 ->
    # sleep to 3: f3 [3, 5.5]; f6 [6, 8.5]; f9 [9, 11.5]; next would be frame 12: stop.
    clock = _FakeClock()

    def detector(frame: int) -> Detections:
        clock.now += 5 / 16
        return _det(frame)

    res = run_realtime(list(range(10)), detector, sched, 8.0, clock=clock, sleep=clock.sleep)
    assert [o.frame_index for o in res.outputs] == frames
    ends = [(f / 8 if isinstance(sched, ShrinkingTail) and f else None) for f in frames]
    for o, r, e in zip(res.outputs, res.runs, ends):
        assert r.end_s - r.start_s == pytest.approx(5 / 16)
        if e is not None:
            assert r.start_s == pytest.approx(e)
        assert o.frame_index / 8 <= o.time_s


def test_run_realtime_wall_clock():
    # A detector that sleeps 15 ms at fps 200 (5 ms frames) covers ~3 frames per run.
    def detector(frame: int) -> Detections:
        time.sleep(0.015)
        return _det(frame)

    res = run_realtime(list(range(24)), detector, IdleFree(), 200.0)
    assert 3 <= len(res.outputs) <= 8
    idx = [o.frame_index for o in res.outputs]
    assert idx == sorted(set(idx)) and idx[0] == 0
    for o, r in zip(res.outputs, res.runs):
        assert r.end_s - r.start_s >= 0.015
        assert o.frame_index / 200.0 <= r.start_s + 1e-9
    ev = res.evaluate([], backend="numpy")
    assert ev["n_outputs"] == len(res.outputs)
