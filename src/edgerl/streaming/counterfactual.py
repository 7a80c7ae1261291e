"""Full-information ("counterfactual") rewards of the streaming bandit by branching the simulator.

The paper's bandit learns from bandit feedback: one reward per decision, for the arm it took. On
the synthetic videos that reward is noisy (R2 standard deviation about 0.25 per decision while
the top arms differ by a few hundredths), and one sample per decision does not separate them.
The simulator, however, runs on a virtual clock with cached detections, so the reward every
*other* arm would have earned from the same state can be computed exactly:

* **Branching.** A decision set the configuration of detector run number ``n`` (``n`` runs
  completed before it, :attr:`~edgerl.streaming.policies.StreamPolicy.decision_runs`) at frame
  ``f``, and held until the next decision at frame ``g``. The branch of arm ``c`` replays the
  recorded run's first ``n`` configurations (:class:`ReplayPolicy`, same scheduler, same
  forecasting switch and the same runtime source in its initial state), then runs ``c`` until
  the stream is cut at frame ``g`` (``run_policy(..., n_frames=g)``). Every detector run before
  the decision is the recorded one (same configuration, frame and runtime draw), so the state at
  ``f`` (clock, last result, forecaster) is the recorded state; for the arm actually taken the
  branch reproduces the recorded outputs over ``[f, g)`` exactly (tested). Cutting the stream
  at ``g`` changes nothing shown on frames before ``g`` (:func:`run_policy`).
* **Rewards.** Each branch's R1 is the streaming AP over ``[f, g)``
  (:func:`~edgerl.streaming.rewards.reward_r1`); R2 subtracts the fixed policy's R1 over the
  same frames and scales (:func:`~edgerl.streaming.rewards.reward_r2`).
* **Branch heads.** The rewards are per *joint* configuration, the network has one head per
  decision dimension. :func:`branch_targets` maps a joint reward table onto per-branch target
  vectors: ``"max"`` (arm ``d`` of branch ``i`` gets the best reward over the other branches'
  arms, so that the per-branch argmax is the joint argmax), ``"fixed"`` (the other branches at
  the fixed configuration's arms: the value of changing one dimension alone, what conservative
  deviation compares) or ``"mean"`` (the mean over the other branches' arms).
* **Fixed-policy table.** :func:`fixed_policy_table` branches at decisions taken every
  ``interval_frames`` frames along the fixed policy's own run: the states a conservative policy
  (one that leaves the fixed configuration only now and then) sees at test time. It does not
  depend on the network, so one table serves every epoch and seed.

Cost: branching ``A`` arms at a decision re-simulates the stream up to the decision's segment
end ``A`` times and evaluates ``A`` segment APs; on the paper preset (20 arms, 150-frame
training videos, a decision every 20 frames) about 15 s of one core per video.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgerl.streaming.configs import ConfigGrid, StreamConfig
from edgerl.streaming.data import StreamVideo
from edgerl.streaming.policies import BanditPolicy, ContextModels, StreamPolicy, run_policy
from edgerl.streaming.rewards import reward_r1, segments
from edgerl.streaming.sap import StreamOutput
from edgerl.streaming.simulator import (
    KeyedDraws,
    PolicyContext,
    RuntimeProfile,
    Scheduler,
    SimResult,
)
from edgerl.utils.errors import InputError

__all__ = [
    "BRANCH_TARGETS",
    "CounterfactualTable",
    "ReplayPolicy",
    "branch_r1",
    "branch_targets",
    "fixed_policy_table",
    "segment_r1",
]

BRANCH_TARGETS: tuple[str, ...] = ("max", "fixed", "mean")
"""Ways of mapping a joint reward table onto the branch heads (:func:`branch_targets`)."""


class ReplayPolicy(StreamPolicy):
    """Replays recorded configurations for the first detector runs, then holds one configuration.

    Args:
        prefix: Configuration names of the recorded run's first detector runs.
        then: Configuration of every later run.
        scheduler: The recorded run's scheduler.
        forecast: The recorded run's forecasting switch.
    """

    def __init__(self, prefix: Sequence[str], then: str | StreamConfig, scheduler: Scheduler, forecast: bool = True) -> None:
        super().__init__(scheduler, forecast)
        self.prefix = [str(c) for c in prefix]
        self.then = then if isinstance(then, StreamConfig) else StreamConfig.parse(then)

    def __call__(self, ctx: PolicyContext) -> str:
        if ctx.run_index < len(self.prefix):
            return self.prefix[ctx.run_index]
        return self.then.name


def _fresh(draws: np.random.Generator | KeyedDraws) -> np.random.Generator | KeyedDraws:
    return draws if isinstance(draws, KeyedDraws) else copy.deepcopy(draws)


def branch_r1(
    video: StreamVideo,
    runtimes: RuntimeProfile,
    draws: np.random.Generator | KeyedDraws,
    result: SimResult,
    policy: StreamPolicy,
    arms: Sequence[str | StreamConfig],
    tracker_scale_px: float = 480.0,
) -> np.ndarray:
    """R1 of every arm at every decision of a recorded run, by branching the simulator.

    Args:
        video: The video of the recorded run.
        runtimes: Its runtime profile.
        draws: Its runtime source *in the state it had before the run*: a
            :class:`~edgerl.streaming.simulator.KeyedDraws` (stateless) or a generator that has
            not been drawn from (each branch draws from its own copy).
        result: The recorded run.
        policy: The policy of the recorded run after the run (its ``decision_frames``,
            ``decision_runs``, ``scheduler`` and ``forecast``).
        arms: Configurations to branch into.
        tracker_scale_px: As in :func:`~edgerl.streaming.policies.run_policy`.

    Returns:
        ``[n_decisions, len(arms)]`` float64: R1 over each decision's segment
        ``[decision_frames[k], decision_frames[k + 1])`` (the last one to the end of the video)
        had the decision taken that arm, every earlier run being the recorded one.
    """
    frames, runs = list(policy.decision_frames), list(policy.decision_runs)
    if len(frames) != len(runs):
        raise InputError(f"branch_r1: {len(frames)} decision frames but {len(runs)} decision runs")
    configs = result.configs
    if runs and runs[-1] > len(configs):
        raise InputError(f"branch_r1: decision at run {runs[-1]} but the recorded run has {len(configs)} detector runs")
    names = [a.name if isinstance(a, StreamConfig) else StreamConfig.parse(a).name for a in arms]
    out = np.zeros((len(frames), len(names)), np.float64)
    for k, (n, (a, b)) in enumerate(zip(runs, segments(frames, video.n_frames))):
        for j, c in enumerate(names):
            rp = ReplayPolicy(configs[:n], c, policy.scheduler, policy.forecast)
            br = run_policy(rp, video, runtimes, _fresh(draws), tracker_scale_px, n_frames=b)
            out[k, j] = reward_r1(video.gts, br.outputs, (a, b), video.fps)
    return out


def segment_r1(video: StreamVideo, outputs: Sequence[StreamOutput], decision_frames: Sequence[int]) -> np.ndarray:
    """R1 of one output stream over each decision's segment (e.g. the fixed policy's run)."""
    return np.asarray([reward_r1(video.gts, outputs, seg, video.fps) for seg in segments(decision_frames, video.n_frames)], np.float64)


def branch_targets(
    grid: ConfigGrid,
    rewards: np.ndarray,
    mode: Literal["max", "fixed", "mean"] = "max",
    fixed: str | StreamConfig | None = None,
) -> list[np.ndarray]:
    """Per-branch target vectors from the rewards of every joint configuration.

    Args:
        grid: The grid; ``rewards[j]`` belongs to ``grid.configs()[j]``.
        rewards: One reward per grid configuration.
        mode: ``"max"``: arm ``d`` of branch ``i`` gets the largest reward over the
            configurations whose branch ``i`` is ``d``; ``"mean"``: their mean; ``"fixed"``:
            the reward of the configuration equal to ``fixed`` except in branch ``i``.
        fixed: The fixed configuration (``mode="fixed"`` only).

    Returns:
        One array of ``grid.n_arms[i]`` targets per branch.
    """
    r = np.asarray(rewards, np.float64).reshape(-1)
    configs = grid.configs()
    if r.shape[0] != len(configs):
        raise InputError(f"branch_targets: {r.shape[0]} rewards for a grid of {len(configs)} configurations")
    if mode not in BRANCH_TARGETS:
        raise InputError(f"branch_targets: mode {mode!r} is not one of {', '.join(BRANCH_TARGETS)}")
    table = np.full(grid.n_arms, np.nan)
    for c, v in zip(configs, r):
        table[grid.to_action(c)] = v
    if mode == "fixed":
        if fixed is None:
            raise InputError("branch_targets: mode 'fixed' needs the fixed configuration")
        f = grid.to_action(grid.check(fixed))
        out = []
        for i in range(len(f)):
            idx: list[Any] = list(f)
            idx[i] = slice(None)
            out.append(table[tuple(idx)].copy())
        return out
    reduce = np.max if mode == "max" else np.mean
    return [reduce(np.moveaxis(table, i, 0).reshape(table.shape[i], -1), axis=1) for i in range(table.ndim)]


@dataclass
class CounterfactualTable:
    """Full-information samples along the fixed policy's runs (:func:`fixed_policy_table`).

    Attributes:
        arms: Configuration names, in grid order (the columns of ``r1``).
        contexts: ``[N, context_dim]`` context of each decision.
        r1: ``[N, len(arms)]`` R1 of each arm over the decision's segment.
        r1_fixed: ``[N]`` R1 of the fixed policy over the same segment (its own column of
            ``r1``).
        video: ``[N]`` index of the video (in the list given) of each decision.
        frame: ``[N]`` decision frame.
        repeat: ``[N]`` runtime-draw repeat of the decision.
    """

    arms: list[str]
    contexts: np.ndarray
    r1: np.ndarray
    r1_fixed: np.ndarray
    video: np.ndarray
    frame: np.ndarray
    repeat: np.ndarray

    def rewards(self, reward: Literal["r1", "r2"] = "r2", scale: float = 10.0) -> np.ndarray:
        """``[N, len(arms)]`` rewards: R1, or R2 = ``scale * (R1 - R1 of the fixed policy)``."""
        if reward == "r1":
            return self.r1.copy()
        if not (math.isfinite(scale) and scale > 0):
            raise InputError(f"scale (lambda) must be a finite number > 0, got {scale!r}")
        return float(scale) * (self.r1 - self.r1_fixed[:, None])

    def rows_of(self, video: int) -> np.ndarray:
        """Indices of the samples of one video."""
        return np.flatnonzero(self.video == int(video))


class _Hold:
    """Stands in for a bandit: all arm values 0 (with threshold ``inf`` the policy holds the
    fixed configuration and only builds the contexts)."""

    def __init__(self, context_dim: int, n_arms: Sequence[int]) -> None:
        self.context_dim, self.n_arms = int(context_dim), tuple(int(n) for n in n_arms)

    def q_values(self, context: np.ndarray) -> list[np.ndarray]:
        return [np.zeros(n) for n in self.n_arms]


def fixed_policy_table(
    videos: Sequence[StreamVideo],
    grid: ConfigGrid,
    models: ContextModels,
    runtimes: RuntimeProfile,
    fixed: str | StreamConfig,
    draws: Callable[[int, StreamVideo, int], np.random.Generator | KeyedDraws],
    context_dim: int,
    interval_frames: int = 20,
    repeats: int = 1,
    use_switchability: bool = True,
    forecast: bool = True,
    tracker_scale_px: float = 480.0,
    log: Callable[[str], None] | None = None,
) -> CounterfactualTable:
    """Branch every grid configuration at decisions every ``interval_frames`` frames along the
    fixed policy's run on each video.

    The fixed run is :class:`~edgerl.streaming.policies.BanditPolicy` holding ``fixed``
    (conservative deviation with threshold ``inf``), so its decision frames and contexts are
    those of the test-time bandit policy while it keeps the fixed configuration.

    Args:
        videos: Videos to branch on.
        grid: Configurations (every one is an arm).
        models: Context models.
        runtimes: Runtime profile of the grid.
        fixed: The fixed configuration.
        draws: ``draws(video index, video, repeat)``: the runtime source of one run.
        context_dim: Context length of the bandit (with or without the dynamics slots).
        interval_frames: Frames between decisions.
        repeats: Runs (runtime sources) per video.
        use_switchability: Switchability slots in the context.
        forecast: Kalman forecasting.
        tracker_scale_px: Tracker scale of strided configurations.
        log: Called with a progress line per video.
    """
    arms = grid.names()
    fixed_c = grid.check(fixed)
    col = arms.index(fixed_c.name)
    ctx, r1, r1f, vid, frm, rep = [], [], [], [], [], []
    for j, v in enumerate(videos):
        for r in range(int(repeats)):
            policy = BanditPolicy(
                _Hold(context_dim, grid.n_arms), grid, models, explore=False,
                interval_frames=interval_frames, use_switchability=use_switchability,
                forecast=forecast, fixed=fixed_c, deviation_threshold=math.inf,
            )  # fmt: skip
            src = draws(j, v, r)
            res = run_policy(policy, v, runtimes, _fresh(src), tracker_scale_px)
            table = branch_r1(v, runtimes, src, res, policy, arms, tracker_scale_px)
            own = segment_r1(v, res.outputs, policy.decision_frames)
            if not np.allclose(table[:, col], own, rtol=0.0, atol=1e-12):
                raise InputError(f"fixed_policy_table: the branch of the fixed configuration does not reproduce its run on {v.name}")
            ctx.append(np.asarray(policy.contexts, np.float64))
            r1.append(table)
            r1f.append(own)
            n = len(policy.decision_frames)
            vid.append(np.full(n, j))
            frm.append(np.asarray(policy.decision_frames))
            rep.append(np.full(n, r))
            if log is not None:
                log(f"counterfactual table: {v.name} repeat {r}: {n} decisions x {len(arms)} arms")
    return CounterfactualTable(
        arms, np.concatenate(ctx), np.concatenate(r1), np.concatenate(r1f),
        np.concatenate(vid).astype(np.int64), np.concatenate(frm).astype(np.int64), np.concatenate(rep).astype(np.int64),
    )  # fmt: skip
