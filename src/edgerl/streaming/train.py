"""Training the streaming bandit (paper 004, Algorithms 1 and 2; ``edgerl train streaming``).

Paper: Ghosh et al., "Adaptive Streaming Perception using Deep Reinforcement Learning"
(Chanakya), 2021, section 4.4 and Algorithms 1-2.

For each epoch and each training video (in a fresh random order per epoch):

1. **Observe** (Algorithm 1). The simulator replays the video under :class:`BanditPolicy` in
   exploring mode: before each detector run the policy decides with probability ``p``
   (``decide_prob``; always before the first run); a decision builds the context from the last
   detections and takes the bandit's exploring action. The pairs (context, action) and the
   decision frames are stored; nothing is learnt while the stream runs.
2. **Rewards.** After the video, each decision's reward is reconstructed from the stream's
   outputs (:func:`~edgerl.streaming.rewards.decision_rewards`): R1 = sAP over the frames from
   that decision to the next; R2 = ``reward_scale * (R1 - R1 of the fixed policy)`` over the
   same frames, where the fixed policy's outputs on each training video were recorded once
   before training.
3. **Update** (Algorithm 2). The (context, action, reward) tuples enter the bandit's replay
   buffer, and ``updates_per_video`` minibatch updates regress each branch's chosen-arm value on
   the reward.

4. **Validation** (optional, ``val_videos``). The last training videos are held out of steps
   1-3; after each epoch the greedy bandit runs on them and the network of the epoch with the
   best pooled sAP (among the epochs from ``select_from_epoch`` on) is the one returned. Only
   training videos are used to pick it.
5. **Deviation threshold** (optional, ``deviation_thresholds``). On the same validation videos
   the picked network runs with each candidate threshold tau of conservative deviation from the
   fixed policy (the greedy arm of a branch replaces the fixed one only when its predicted
   advantage exceeds tau); the tau with the best sAP is reported in the
   ``validation_threshold_best`` row (:func:`chosen_threshold`). With ``inf`` among the
   candidates the kept policy is at least the fixed policy on the validation videos.

Options against the noise of the rewards (measured on the paper preset's training videos, R2
with lambda = 10 against the static expert 560/300, random arms every 13 frames: mean -0.19,
standard deviation 0.25; the expert against its own run with other runtime draws: standard
deviation 0.11, i.e. almost half of the spread is runtime noise, while the top arms differ by a
few hundredths): ``r2_common_draws`` re-simulates the fixed policy with the bandit's runtime
draws, ``reward_clip`` clips outliers, ``switch_penalty`` makes a change of configuration cost
reward, ``select_from_epoch`` keeps the validation from picking a network of the exploring
first epochs. ``common_runtime_draws`` makes the validation (and test) runtimes common random
numbers, so the networks and thresholds compared on the validation videos differ only by their
choices; ``train_common_draws`` does the same for the training runs.

Full information (``counterfactual``, off by default; not in the paper): instead of one reward
for the arm taken, each decision stores the reward of every grid configuration from the same
simulator state, computed by branching the simulator
(:mod:`~edgerl.streaming.counterfactual`), either at the exploring run's own decisions
('on_policy') or at decisions every ``test_interval_frames`` frames along the fixed policy's
run, computed once per setup ('fixed_policy'; steps 1-2 are then skipped). Measured on the
paper preset ('fixed_policy', 'max' targets, expert 560/300 as the fixed policy; learning on
training videos 0-11, epoch and tau chosen on 12-15, scored on 16-19; seeds 0-2): the plain
greedy network scored -0.26 / +0.18 / -0.86 sAP x100 against the expert on 16-19 and below it
on 12-15 on every seed, so conservative deviation kept the expert (tau = inf) on every seed,
as with bandit feedback (-0.28 / +0.09 / -1.22). More exact rewards do not make the context
separate the configurations on these videos.

The scale regressor and switchability classifier of the context are fitted first, on the
training videos (:func:`~edgerl.streaming.policies.fit_context_models`). Epsilon decays per
exploring decision; with about one decision per 10-20 frames and a few thousand training frames
per epoch, training takes several hundred decisions, over which the paper's 0.999 would barely
move, so the default decay here is 0.995 (epsilon reaches 0.15 after 379 decisions).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from edgerl.streaming.bandit import BanditConfig, ContextualBandit
from edgerl.streaming.configs import BRANCHES, ConfigGrid, StreamConfig
from edgerl.streaming.counterfactual import (
    CounterfactualTable,
    branch_r1,
    branch_targets,
    fixed_policy_table,
    segment_r1,
)
from edgerl.streaming.data import StreamDataConfig, StreamDataset, StreamVideo
from edgerl.streaming.policies import (
    BanditPolicy,
    ContextModels,
    StaticPolicy,
    SwitchingRuntimes,
    bandit_context_dim,
    evaluate_streams,
    fit_context_models,
    run_policy,
)
from edgerl.streaming.rewards import decision_rewards
from edgerl.streaming.simulator import KeyedDraws, RuntimeProfile, SimResult
from edgerl.utils.config import Config, config_from_dict
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_write_bytes, write_json
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything

__all__ = [
    "StreamSetup",
    "StreamTrainConfig",
    "chosen_threshold",
    "context_overhead",
    "evaluate_policy",
    "fixed_config",
    "fixed_policy_samples",
    "prepare",
    "record_fixed_outputs",
    "save_context_data",
    "shape_full_rewards",
    "shape_rewards",
    "torch_threads",
    "train_bandit",
    "train_streaming",
    "validation_sap",
]


def _default_bandit() -> dict[str, Any]:
    return {"epsilon_decay": 0.995}


class StreamTrainConfig(Config):
    """One bandit training run (``edgerl train streaming``); also the base of the experiments."""

    seed: int = Field(0, ge=0)
    """Seeds the bandit, exploration, decision draws and runtime draws."""

    data: StreamDataConfig = Field(default_factory=StreamDataConfig)
    """Videos and detection cache."""

    grid: ConfigGrid = Field(default_factory=lambda: ConfigGrid(models=["person_n"], strides=[1]))
    """Configurations the bandit chooses among (default: person_n, 5 scales x 4 top-k, no
    tracker: the main table's grid)."""

    speed_factor: float = Field(1.0, gt=0)
    """Simulated runtime = measured CPU time / speed_factor (see edgerl.streaming.data)."""

    slowdowns: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    """Runtime multipliers modelling contention (each sample is repeated once per factor)."""

    switch_cost_ms: float = Field(0.0, ge=0)
    """Extra simulated time of a detector run that changes the model (ms)."""

    forecast: bool = True
    """Kalman forecasting of the outputs (Streamer's pipeline), for every policy."""

    tracker_scale_px: float = Field(480.0, gt=0)
    """Tracker input short side for configurations with stride > 1."""

    epochs: int = Field(10, ge=1)
    """Passes over the training videos (paper: 10)."""

    reward: Literal["r1", "r2"] = "r2"
    """R1: sAP of the segment; R2: reward_scale * (R1 - R1 of the fixed policy)."""

    reward_scale: float = Field(10.0, gt=0)
    """lambda of R2 (sAP differences are a few hundredths)."""

    r2_common_draws: bool = False
    """R2's fixed-policy run on a training video is simulated again for every epoch with the
    same runtime draws as the bandit's run on it (common random numbers), instead of being
    recorded once: the runtime noise that both runs share then cancels in the difference."""

    reward_clip: float | None = Field(None, gt=0)
    """Rewards are clipped to [-reward_clip, reward_clip] before they enter the replay buffer
    (None: no clip). A segment with few objects can swing its AP by tens of points, and such
    outliers dominate a squared-error fit of the arm values."""

    switch_penalty: float = Field(0.0, ge=0)
    """Subtracted from the reward of a decision whose configuration differs from the previous
    decision's in the same video (reward units): a switching cost the bandit learns, so that it
    changes configuration only when the expected gain pays for it."""

    fixed_config: str | None = None
    """Fixed policy of R2 (a grid configuration); None: the grid's nearest to scale 480,
    top-k 300, stride 1 (the paper's pi_fixed = (480, 300))."""

    decide_prob: float = Field(0.1, ge=0.0, le=1.0)
    """Probability p of a decision before each detector run while training."""

    test_interval_frames: int = Field(20, ge=1)
    """Frames between decisions at test time."""

    updates_per_video: int = Field(32, ge=0)
    """Bandit minibatch updates after each training video."""

    torch_threads: int = Field(1, ge=0)
    """Torch intra-op threads while training and running the bandit (0: leave torch's setting).
    The network is small (batches of 32 contexts): on the shared 2-core machine one update took
    2 ms with one thread and 128 ms (median) with two (benchmarks/bench_streaming.py)."""

    val_videos: int = Field(0, ge=0)
    """Training videos held out to pick the network (the last ones of the training split): after
    each epoch the greedy bandit runs on them, and the weights of the epoch with the best pooled
    sAP are kept; they are never learnt from. 0: keep the weights of the last epoch."""

    select_from_epoch: int = Field(1, ge=1)
    """With val_videos, the network is picked among the epochs from this one on (the earlier
    ones, taken while epsilon is still high, are only validated and logged): with a few
    validation videos, the best of many noisy validation scores is often an undertrained
    network."""

    deviation_thresholds: list[float] | None = None
    """Candidate thresholds tau of conservative deviation from the fixed policy (reward units;
    :class:`~edgerl.streaming.policies.BanditPolicy`, ``deviation_threshold``): after the
    epoch is picked, the greedy bandit runs on the validation videos with each, and the one with
    the best pooled sAP is kept (ties: the larger tau). ``.inf`` (always the fixed policy)
    belongs in the list, so that the kept policy is not below the fixed one on the validation
    videos; ``-.inf`` is the plain greedy policy. Needs val_videos. None: plain greedy."""

    common_runtime_draws: bool = False
    """Validation and test runs draw their runtimes as common random numbers
    (:class:`~edgerl.streaming.simulator.KeyedDraws`): the runtime of configuration c on frame i
    comes from a generator seeded (7, video seed, i, crc32(c)) on a test video and (13, video
    seed, repeat, i, crc32(c)) on a validation video. Every method on the test videos, and every
    network and threshold on the validation videos, then sees the same runtime wherever it runs
    the same configuration on the same frame, also after its schedule has parted from another
    method's, so a difference between two methods comes from their choices, not from other
    runtime draws. The key holds no run seed: like the videos, the runtimes of a test frame are
    one fixed realisation, and the seeds vary the learners (and the random policy) only. False:
    one generator per video and seed, drawn in run order (shared by two methods only up to the
    first run where they differ)."""

    train_common_draws: bool = False
    """Training runs draw their runtimes keyed by (seed, 3, epoch, video index, frame,
    configuration) (:class:`~edgerl.streaming.simulator.KeyedDraws`); with r2_common_draws the
    fixed policy's run then shares the bandit's runtime on every frame where both run the same
    configuration, not only up to the bandit's first deviation. False: one generator per video
    and epoch, drawn in run order. Off by default: on the paper preset's training videos (learnt
    from videos 0-11, epoch and tau picked on 12-15, scored on 16-19 with common draws; seeds 0
    and 1) the plain greedy bandit's margin over the static expert was -1.16 / -0.75 sAP points
    with it against -0.28 / +0.09 without."""

    val_repeats: int = Field(1, ge=1)
    """Runtime draws per validation video (each with its own generator): the validation sAP
    pools every repeat, which averages out part of the runtime noise of the epoch and tau
    choices."""

    use_switchability: bool = True
    """Feed the switchability probabilities into the context (needs two or more models)."""

    dynamics_context: bool = False
    """Append the dynamics slots to the context (confident-detection count, their median
    height, motion speed between the last two detector outputs;
    :func:`~edgerl.streaming.context.dynamics_features`). Off by default: on the paper preset
    (3 seeds) the bandit with them did worse than without (margin over the static expert
    -0.33 vs +0.01 sAP points); with a few hundred noisy rewards, more inputs mostly add
    variance."""

    context_every_frames: int = Field(5, ge=1)
    """Frame step of the AdaScale / switchability training samples."""

    counterfactual: Literal["off", "fixed_policy", "on_policy"] = "off"
    """Full-information training (:mod:`~edgerl.streaming.counterfactual`; not in the paper).
    'off': the paper's bandit feedback, one reward per decision for the arm taken.
    'on_policy': after each exploring run the simulator is branched at every decision and the
    reward every grid configuration would have earned from the same state (same earlier runs,
    same runtime draws) enters the replay buffer, all arms at once (about 20 times the
    simulation and reward cost of a run). 'fixed_policy': no exploring runs; the decisions are
    taken every test_interval_frames frames along the fixed policy's own run on each training
    video (the states of a policy that mostly keeps the fixed configuration, as conservative
    deviation does at test), branched into every configuration once, with runtime draws keyed
    (17, video seed, repeat) (counterfactual_repeats runs per video); the table serves every
    epoch and seed, and each epoch stores every video's decisions. Rewards follow ``reward``
    (R2 against the fixed policy's run with the same draws), then switch_penalty (arms other
    than the previous configuration) and reward_clip. The joint rewards reach the branch heads
    as counterfactual_target says."""

    counterfactual_target: Literal["max", "fixed", "mean"] = "max"
    """How a full-information decision's joint rewards become per-branch targets
    (:func:`~edgerl.streaming.counterfactual.branch_targets`): 'max': arm d of a branch gets the
    best reward over the other branches' arms (the per-branch argmax is then the joint argmax);
    'fixed': the reward with the other branches at the fixed configuration's arms (the gain of
    changing that dimension alone); 'mean': the mean over the other branches' arms."""

    counterfactual_repeats: int = Field(1, ge=1)
    """counterfactual 'fixed_policy': runs (runtime draws) per training video in the table."""

    bandit: dict[str, Any] = Field(default_factory=_default_bandit)
    """BanditConfig fields (network, exploration, replay, optimiser)."""

    @field_validator("bandit")
    @classmethod
    def _check_bandit(cls, v: dict[str, Any]) -> dict[str, Any]:
        config_from_dict(BanditConfig, dict(v), "bandit")
        return v

    @field_validator("slowdowns")
    @classmethod
    def _check_slowdowns(cls, v: list[float]) -> list[float]:
        if any(not (math.isfinite(x) and x > 0) for x in v):
            raise ValueError(f"slowdowns must be finite factors > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _check_fixed(self) -> StreamTrainConfig:
        if self.deviation_thresholds is not None:
            if self.val_videos < 1:
                raise ValueError("deviation_thresholds are chosen on validation videos: set val_videos >= 1")
            if not self.deviation_thresholds or any(math.isnan(t) for t in self.deviation_thresholds):
                raise ValueError(f"deviation_thresholds must be a non-empty list of numbers or +-inf, got {self.deviation_thresholds}")
        if self.select_from_epoch > self.epochs:
            raise ValueError(f"select_from_epoch ({self.select_from_epoch}) must be <= epochs ({self.epochs})")
        if self.fixed_config is not None:
            try:
                self.grid.check(self.fixed_config)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return self


def fixed_config(cfg: StreamTrainConfig, grid: ConfigGrid | None = None) -> StreamConfig:
    """The fixed policy of R2 (checked against the grid)."""
    g = grid or cfg.grid
    if cfg.fixed_config is not None:
        try:
            return g.check(cfg.fixed_config)
        except InputError as exc:
            raise InputError(f"fixed_config: {exc}") from None
    return g.nearest(scale=480, topk=300, stride=1)


class StreamSetup:
    """What every run on one grid needs: videos, runtimes and context models.

    Args:
        dataset: The videos (with the grid's detections cached).
        grid: The configuration grid.
        runtimes: Runtime profile of the grid's configurations.
        models: Fitted context models.
        context_data: Their training data (for saving).
        common_draws: Test runs (:func:`evaluate_policy`) draw their runtimes as common random
            numbers (:class:`~edgerl.streaming.simulator.KeyedDraws`), the same for every method
            evaluated on this setup (``StreamTrainConfig.common_runtime_draws``).
    """

    def __init__(
        self,
        dataset: StreamDataset,
        grid: ConfigGrid,
        runtimes: RuntimeProfile,
        models: ContextModels,
        context_data: dict[str, Any],
        common_draws: bool = False,
    ) -> None:
        self.dataset, self.grid, self.runtimes = dataset, grid, runtimes
        self.models, self.context_data = models, context_data
        self.common_draws = bool(common_draws)
        self.cache: dict[Any, Any] = {}
        """Results computed once per setup and shared by every run on it (the fixed-policy
        counterfactual tables)."""

    @property
    def train(self) -> list[StreamVideo]:
        return self.dataset.train

    @property
    def test(self) -> list[StreamVideo]:
        return self.dataset.test


def prepare(
    cfg: StreamTrainConfig,
    grid: ConfigGrid | None = None,
    dataset: StreamDataset | None = None,
    speed_factor: float | None = None,
    slowdowns: list[float] | None = None,
    console: Any = None,
) -> StreamSetup:
    """Load (or build) the videos for ``grid`` and fit the context models.

    Args:
        cfg: Training settings (data, default grid, speed factor, switch cost, seed).
        grid: Grid to serve instead of ``cfg.grid``.
        dataset: Reuse already loaded videos (they must hold the grid's (model, scale) pairs).
        speed_factor: Override of ``cfg.speed_factor``.
        slowdowns: Override of ``cfg.slowdowns``.
        console: Progress output.
    """
    g = grid or cfg.grid
    ds = dataset if dataset is not None else StreamDataset(cfg.data, g, console)
    sf = cfg.speed_factor if speed_factor is None else speed_factor
    runtimes = ds.runtime_profile(g, sf, slowdowns or cfg.slowdowns)
    if cfg.switch_cost_ms > 0:
        runtimes = SwitchingRuntimes(runtimes, cfg.switch_cost_ms / 1e3)
    models, data = fit_context_models(ds.train, g, seed=cfg.seed, every_frames=cfg.context_every_frames)
    return StreamSetup(ds, g, runtimes, models, data, cfg.common_runtime_draws)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (0: unchanged), then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


def runtime_draws(common: bool, *key: int) -> np.random.Generator | KeyedDraws:
    """The runtime source of one simulated stream named by ``key``: :class:`KeyedDraws` of the
    key (common random numbers) or a generator seeded with it (drawn in run order)."""
    return KeyedDraws(key) if common else _rng(*key)


def eval_draws(setup: StreamSetup, seed: int, index: int, video: StreamVideo) -> np.random.Generator | KeyedDraws:
    """Runtime source of a test run of video number ``index``: ``KeyedDraws((7, video.seed))``
    with ``setup.common_draws`` (no run seed in the key), else a generator seeded
    ``(seed, 7, index)``."""
    return KeyedDraws((7, int(video.seed))) if setup.common_draws else _rng(seed, 7, index)


def record_fixed_outputs(setup: StreamSetup, config: StreamConfig, seed: int, forecast: bool, tracker_scale_px: float) -> dict[int, SimResult]:
    """The fixed policy's run on every training video (recorded once, reused by R2)."""
    return {
        j: run_policy(StaticPolicy(config, forecast=forecast), v, setup.runtimes, _rng(seed, 11, j), tracker_scale_px)
        for j, v in enumerate(setup.train)
    }


def train_bandit(
    setup: StreamSetup,
    cfg: StreamTrainConfig,
    seed: int | None = None,
    use_switchability: bool | None = None,
    log: Any = None,
) -> tuple[ContextualBandit, list[dict[str, Any]]]:
    """Algorithms 1-2 on the training videos of ``setup``.

    Args:
        setup: Videos, grid, runtimes and context models.
        cfg: Training settings.
        seed: Overrides ``cfg.seed``.
        use_switchability: Overrides ``cfg.use_switchability``.
        log: Called with each metrics row (one per epoch and video).

    Returns:
        The trained bandit and the metrics rows.
    """
    with torch_threads(cfg.torch_threads):
        return _train_bandit(setup, cfg, seed, use_switchability, log)


def _train_bandit(
    setup: StreamSetup,
    cfg: StreamTrainConfig,
    seed: int | None,
    use_switchability: bool | None,
    log: Any,
) -> tuple[ContextualBandit, list[dict[str, Any]]]:
    seed = cfg.seed if seed is None else int(seed)
    use_sw = cfg.use_switchability if use_switchability is None else bool(use_switchability)
    grid = setup.grid
    n_fit = len(setup.train) - cfg.val_videos
    if n_fit < 1:
        raise InputError(
            f"val_videos ({cfg.val_videos}) must leave at least one of the {len(setup.train)} "
            "training videos to learn from"
        )
    val = setup.train[n_fit:]
    cf = cfg.counterfactual
    ctx_dim = bandit_context_dim(cfg.dynamics_context)
    bandit = ContextualBandit(ctx_dim, grid.n_arms, config=cfg.bandit, seed=seed, branch_names=BRANCHES)
    fixed_outputs: dict[int, SimResult] = {}
    fixed = fixed_config(cfg, grid)
    if cf != "fixed_policy" and cfg.reward == "r2" and not cfg.r2_common_draws:  # with common draws it runs per epoch
        fixed_outputs = record_fixed_outputs(setup, fixed, seed, cfg.forecast, cfg.tracker_scale_px)
    cf_rewards = np.zeros((0, len(grid)))
    if cf == "fixed_policy":
        table = fixed_policy_samples(setup, cfg, fixed, n_fit, use_sw)
        cf_rewards = table.rewards(cfg.reward, cfg.reward_scale)
        if cfg.switch_penalty:
            cf_rewards[:, np.asarray(grid.names()) != fixed.name] -= cfg.switch_penalty
        if cfg.reward_clip is not None:
            cf_rewards = np.clip(cf_rewards, -cfg.reward_clip, cfg.reward_clip)
        cf_targets = [branch_targets(grid, r_all, cfg.counterfactual_target, fixed) for r_all in cf_rewards]
    order_rng = _rng(seed, 1)
    policy = BanditPolicy(
        bandit, grid, setup.models, explore=True, decide_prob=cfg.decide_prob,
        interval_frames=cfg.test_interval_frames, rng=_rng(seed, 2),
        use_switchability=use_sw, forecast=cfg.forecast,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    best_val, best_state, best_epoch = -math.inf, None, 0
    for epoch in range(cfg.epochs):
        for j in order_rng.permutation(n_fit).tolist():
            v = setup.train[j]
            if cf == "fixed_policy":
                idx = table.rows_of(j)
                for i in idx.tolist():
                    bandit.store_full(table.contexts[i], cf_targets[i])
                losses = bandit.learn(cfg.updates_per_video) if bandit.buffer_len >= bandit.config.learning_starts else []
                row = {
                    "epoch": epoch + 1, "video": v.name, "seed": seed, "sap": math.nan,
                    "decisions": len(idx), "reward_mean": float(cf_rewards[idx].mean()) if len(idx) else math.nan,
                    "loss_mean": float(np.mean(losses)) if losses else math.nan,
                    "epsilon": bandit.epsilon, "buffer": bandit.buffer_len,
                }  # fmt: skip
                rows.append(row)
                if log is not None:
                    log(row)
                continue
            t0 = time.perf_counter()
            res = run_policy(policy, v, setup.runtimes, runtime_draws(cfg.train_common_draws, seed, 3, epoch, j), cfg.tracker_scale_px)
            t_sim = time.perf_counter() - t0
            fixed_res = fixed_outputs.get(j)
            if cfg.reward == "r2" and cfg.r2_common_draws:
                fixed_res = run_policy(StaticPolicy(fixed, forecast=cfg.forecast), v, setup.runtimes, runtime_draws(cfg.train_common_draws, seed, 3, epoch, j), cfg.tracker_scale_px)
            rewards = decision_rewards(
                v.gts, res.outputs, policy.decision_frames, v.fps,
                fixed_outputs=fixed_res.outputs if fixed_res is not None else None,
                scale=cfg.reward_scale,
            )  # fmt: skip
            rewards = shape_rewards(rewards, policy.actions, cfg.switch_penalty, cfg.reward_clip)
            if cf == "on_policy":
                full = branch_r1(v, setup.runtimes, runtime_draws(cfg.train_common_draws, seed, 3, epoch, j), res, policy, grid.names(), cfg.tracker_scale_px)
                if fixed_res is not None:
                    full = cfg.reward_scale * (full - segment_r1(v, fixed_res.outputs, policy.decision_frames)[:, None])
                full = shape_full_rewards(full, grid, policy.actions, cfg.switch_penalty, cfg.reward_clip)
                for z, r_all in zip(policy.contexts, full):
                    bandit.store_full(z, branch_targets(grid, r_all, cfg.counterfactual_target, fixed))
            else:
                for z, a, r in zip(policy.contexts, policy.actions, rewards):
                    bandit.store(z, a, float(r))
            t_rew = time.perf_counter() - t0 - t_sim
            losses: list[float] = []
            if bandit.buffer_len >= bandit.config.learning_starts:
                losses = bandit.learn(cfg.updates_per_video)
            sap = res.evaluate(v.gts)["sap"]
            row = {
                "epoch": epoch + 1,
                "video": v.name,
                "seed": seed,
                "sap": sap,
                "decisions": len(policy.decision_frames),
                "detector_runs": len(res.detector_runs),
                "reward_mean": float(np.mean(rewards)) if len(rewards) else math.nan,
                "loss_mean": float(np.mean(losses)) if losses else math.nan,
                "epsilon": bandit.epsilon,
                "buffer": bandit.buffer_len,
                "sim_s": t_sim,
                "reward_s": t_rew,
            }
            for b, name in enumerate(BRANCHES):
                if grid.n_arms[b] > 1:
                    vals = grid.values(name)
                    row[f"{name}_mode"] = vals[int(np.bincount([a[b] for a in policy.actions], minlength=len(vals)).argmax())]
            rows.append(row)
            if log is not None:
                log(row)
        if val:
            val_sap = validation_sap(bandit, setup, val, cfg, seed, use_sw)
            row = {"epoch": epoch + 1, "video": "validation", "seed": seed, "sap": val_sap, "epsilon": bandit.epsilon}
            rows.append(row)
            if log is not None:
                log(row)
            if epoch + 1 >= cfg.select_from_epoch and val_sap > best_val:
                best_val, best_epoch = val_sap, epoch + 1
                best_state = copy.deepcopy(bandit.net.state_dict())
    if best_state is not None:
        bandit.net.load_state_dict(best_state)
        rows.append({"epoch": best_epoch, "video": "validation_best", "seed": seed, "sap": best_val})
    if cfg.deviation_thresholds is not None:
        # larger tau first: on a tie the more conservative policy is kept
        best_tau, best_tau_sap = math.inf, -math.inf
        for tau in sorted(set(float(t) for t in cfg.deviation_thresholds), reverse=True):
            tau_sap = validation_sap(bandit, setup, val, cfg, seed, use_sw, fixed=fixed, threshold=tau)
            row = {"epoch": best_epoch or cfg.epochs, "video": "validation_threshold", "seed": seed, "threshold": tau, "sap": tau_sap}
            rows.append(row)
            if log is not None:
                log(row)
            if tau_sap > best_tau_sap:
                best_tau, best_tau_sap = tau, tau_sap
        rows.append({"epoch": best_epoch or cfg.epochs, "video": "validation_threshold_best", "seed": seed, "threshold": best_tau, "sap": best_tau_sap})
    return bandit, rows


def shape_full_rewards(rewards: np.ndarray, grid: ConfigGrid, actions: list[tuple[int, ...]], switch_penalty: float = 0.0, clip: float | None = None) -> np.ndarray:
    """:func:`shape_rewards` for full-information rewards (``[n_decisions, len(grid)]``, columns
    in grid order): ``switch_penalty`` is subtracted from every arm that differs from the action
    of the decision before (none for the first), then all are clipped."""
    r = np.asarray(rewards, np.float64).copy()
    if r.shape != (len(actions), len(grid)):
        raise InputError(f"shape_full_rewards: rewards of shape {r.shape} for {len(actions)} decisions x {len(grid)} configurations")
    if switch_penalty:
        arm_actions = [grid.to_action(c) for c in grid.configs()]
        for k in range(1, len(r)):
            prev = tuple(actions[k - 1])
            r[k, [a != prev for a in arm_actions]] -= float(switch_penalty)
    if clip is not None:
        r = np.clip(r, -float(clip), float(clip))
    return r


def fixed_policy_samples(setup: StreamSetup, cfg: StreamTrainConfig, fixed: StreamConfig, n_videos: int, use_switchability: bool) -> CounterfactualTable:
    """The fixed-policy counterfactual table of the first ``n_videos`` training videos
    (:func:`~edgerl.streaming.counterfactual.fixed_policy_table`, runtime draws
    ``KeyedDraws((17, video seed, repeat))``), computed once per setup and settings and kept in
    ``setup.cache``: it does not depend on the run seed."""
    key = (
        "fixed_policy_table", fixed.name, n_videos, cfg.test_interval_frames, cfg.counterfactual_repeats,
        bool(use_switchability), cfg.dynamics_context, cfg.forecast, cfg.tracker_scale_px,
    )  # fmt: skip
    if key not in setup.cache:
        setup.cache[key] = fixed_policy_table(
            setup.train[:n_videos], setup.grid, setup.models, setup.runtimes, fixed,
            lambda j, v, r: KeyedDraws((17, int(v.seed), r)), bandit_context_dim(cfg.dynamics_context),
            cfg.test_interval_frames, cfg.counterfactual_repeats, use_switchability, cfg.forecast, cfg.tracker_scale_px,
        )  # fmt: skip
    return setup.cache[key]


def chosen_threshold(rows: list[dict[str, Any]]) -> float:
    """The deviation threshold :func:`train_bandit` picked on the validation videos (the
    ``validation_threshold_best`` row); ``-inf`` (plain greedy) when it picked none."""
    picked = [r["threshold"] for r in rows if r.get("video") == "validation_threshold_best"]
    return float(picked[-1]) if picked else -math.inf


def shape_rewards(rewards: np.ndarray, actions: list[tuple[int, ...]], switch_penalty: float = 0.0, clip: float | None = None) -> np.ndarray:
    """Rewards of one video's decisions as stored for learning.

    ``switch_penalty`` is subtracted from every decision whose action differs from the one
    before it (the first decision of a video has none); the result is then clipped to
    ``[-clip, clip]`` (None: no clip).
    """
    r = np.asarray(rewards, np.float64).copy()
    if len(r) != len(actions):
        raise InputError(f"shape_rewards: {len(r)} rewards for {len(actions)} decisions")
    if switch_penalty:
        for k in range(1, len(r)):
            if tuple(actions[k]) != tuple(actions[k - 1]):
                r[k] -= float(switch_penalty)
    if clip is not None:
        r = np.clip(r, -float(clip), float(clip))
    return r


def validation_sap(
    bandit: ContextualBandit,
    setup: StreamSetup,
    videos: list[StreamVideo],
    cfg: StreamTrainConfig,
    seed: int,
    use_switchability: bool = True,
    fixed: StreamConfig | None = None,
    threshold: float = -math.inf,
) -> float:
    """Pooled sAP of the greedy bandit (test-time decisions) on held-out training videos.

    Each video runs ``cfg.val_repeats`` times; the runtime draws of video ``k``, repeat ``r``
    are seeded ``(seed, 13, k)`` for ``r = 0`` and ``(seed, 13, k, r)`` after, apart from the
    training (``(seed, 3, ...)``) and test (``(seed, 7, ...)``) draws, and the same for every
    network and threshold. With ``cfg.common_runtime_draws`` they are keyed
    ``(13, video seed, r)`` and by frame and configuration (:class:`KeyedDraws`). ``fixed`` and ``threshold``: conservative deviation
    (:class:`~edgerl.streaming.policies.BanditPolicy`).
    """
    policy = BanditPolicy(
        bandit, setup.grid, setup.models, explore=False, interval_frames=cfg.test_interval_frames,
        use_switchability=use_switchability, forecast=cfg.forecast, fixed=fixed,
        deviation_threshold=threshold,
    )  # fmt: skip
    vids, results = [], []
    for r in range(cfg.val_repeats):
        for k, v in enumerate(videos):
            if cfg.common_runtime_draws:
                draws: np.random.Generator | KeyedDraws = KeyedDraws((13, v.seed, r))
            else:
                draws = _rng(seed, 13, k) if r == 0 else _rng(seed, 13, k, r)
            results.append(run_policy(policy, v, setup.runtimes, draws, cfg.tracker_scale_px))
            vids.append(v)
    return evaluate_streams(vids, results)["sap"]


def evaluate_policy(setup: StreamSetup, make_policy: Any, seed: int, videos: list[StreamVideo] | None = None, tracker_scale_px: float = 480.0) -> tuple[dict[str, float], list[SimResult], Any]:
    """Run a policy on the test videos and pool the sAP.

    Runtime draws, the same for every method: a generator seeded ``(seed, 7, video index)``;
    with ``setup.common_draws`` common random numbers keyed ``(7, video seed)`` and by frame and
    configuration (:class:`~edgerl.streaming.simulator.KeyedDraws`), which do not depend on
    ``seed``.

    Args:
        setup: Videos and runtimes.
        make_policy: Zero-argument callable returning the policy (called once; the policy is
            reset per video).
        seed: Seed of the runtime draws.
        videos: Videos to run (default: the test videos).

    Returns:
        Pooled metrics, the per-video results and the policy.
    """
    vids = setup.test if videos is None else videos
    policy = make_policy()
    with torch_threads(1):
        results = [run_policy(policy, v, setup.runtimes, eval_draws(setup, seed, j, v), tracker_scale_px) for j, v in enumerate(vids)]
    return evaluate_streams(vids, results), results, policy


def save_context_data(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write the context models' training data and seed (``.npz``, atomically); refit with
    :func:`~edgerl.streaming.policies.context_models_from_data` on ``np.load`` of it."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in data.items()})
    return atomic_write_bytes(path, buf.getvalue())


def context_overhead(setup: StreamSetup, policy: BanditPolicy, results: list[SimResult]) -> dict[str, float]:
    """Wall time of context building (and of the bandit's forward pass) as a share of the
    detector's measured (CPU) time over the same test streams."""
    det_s = 0.0
    for r in results:
        for run in r.detector_runs:
            c = StreamConfig.parse(run.config)
            det_s += float(setup.dataset.detector_time_s(c.model, c.scale).mean())
    n_dec = max(1, policy.n_decisions)
    return {
        "context_ms_per_decision": policy.context_s / n_dec * 1e3,
        "act_ms_per_decision": policy.act_s / n_dec * 1e3,
        "context_share_of_detector": policy.context_s / det_s if det_s > 0 else math.nan,
        "context_act_share_of_detector": (policy.context_s + policy.act_s) / det_s if det_s > 0 else math.nan,
    }


def train_streaming(cfg: StreamTrainConfig, out_dir: str | os.PathLike[str], console: Any = None) -> dict[str, Any]:
    """Train the bandit and compare it with the fixed policy on the held-out videos.

    Writes ``config.yaml``, ``metrics.csv`` (one row per epoch and training video),
    ``bandit.pt``, ``context_models.npz`` (training data and seed of the scale regressor and
    switchability classifier), ``runtimes.json`` and ``summary.json`` (``methods``: ``bandit``
    and ``fixed`` with ``sap``, ``sap50``, ``sap75``, ...; context overhead; timings).
    """
    seed_everything(cfg.seed)
    out = Path(out_dir)
    rd = RunDir(out)
    rd.write_config(cfg)
    t0 = time.perf_counter()
    setup = prepare(cfg, console=console)
    fixed = fixed_config(cfg)

    def log(row: dict[str, Any]) -> None:
        rd.log(row)
        if console is not None:
            line = f"epoch {row['epoch']}/{cfg.epochs} {row['video']}: sAP {row['sap']:.4f}"
            if "threshold" in row:
                line += f"  deviation threshold {row['threshold']:g}"
            if "reward_mean" in row:
                line += f"  reward {row['reward_mean']:.4f}  eps {row['epsilon']:.3f}"
            console.print(line)

    t_train = time.perf_counter()
    bandit, train_rows = train_bandit(setup, cfg, log=log)
    tau = chosen_threshold(train_rows)
    train_s = time.perf_counter() - t_train
    rd.flush()
    bandit.save(out / "bandit.pt")
    save_context_data(out / "context_models.npz", setup.context_data)
    write_json(out / "runtimes.json", setup.runtimes.to_dict())

    box: dict[str, BanditPolicy] = {}

    def make_bandit() -> BanditPolicy:
        box["p"] = BanditPolicy(
            bandit, setup.grid, setup.models, explore=False,
            interval_frames=cfg.test_interval_frames,
            use_switchability=cfg.use_switchability, forecast=cfg.forecast,
            fixed=fixed, deviation_threshold=tau,
        )  # fmt: skip
        return box["p"]

    m_bandit, res_bandit, _ = evaluate_policy(setup, make_bandit, cfg.seed, tracker_scale_px=cfg.tracker_scale_px)
    m_fixed, _, _ = evaluate_policy(setup, lambda: StaticPolicy(fixed, forecast=cfg.forecast), cfg.seed, tracker_scale_px=cfg.tracker_scale_px)
    summary = {
        "experiment": "train-streaming",
        "seeds": [cfg.seed],
        "grid_size": len(setup.grid),
        "fixed_config": fixed.name,
        "epochs": cfg.epochs,
        "deviation_threshold": tau,
        "train_s": train_s,
        "data_s": setup.dataset.build_s,
        "wall_s": time.perf_counter() - t0,
        "methods": {"bandit": m_bandit, "fixed": m_fixed},
        **context_overhead(setup, box["p"], res_bandit),
    }
    rd.write_summary(summary)
    if console is not None:
        console.print(f"test sAP: bandit {m_bandit['sap']:.4f}, fixed {fixed.name} {m_fixed['sap']:.4f}")
    return summary
