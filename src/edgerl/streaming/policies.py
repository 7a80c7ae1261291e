"""Execution policies of adaptive streaming perception (paper 004, section 5.1) and their runs.

Every policy is a callable the simulator asks for a configuration before each detector run
(:class:`~edgerl.streaming.simulator.PolicyContext` -> configuration name), with a scheduler
and a forecasting switch:

* :class:`StaticPolicy`: one configuration for the whole stream. :func:`streamer` is Li et
  al.'s Streamer: a fixed detector and scale, the shrinking-tail scheduler and Kalman
  forecasting. The *static expert* is a static policy whose configuration is the best one on the
  training videos (:func:`choose_static_expert`), the paper's "Streamer + proposals tuned".
* :class:`AdaScalePolicy`: the dynamic-offline policy: before every run the AdaScale-style
  :class:`~edgerl.streaming.context.ScaleRegressor` (trained offline on AdaScale labels, no
  reward) predicts the scale from the last detections; model and top-k stay fixed.
* :class:`RandomPolicy`: a uniformly random configuration at every decision.
* :class:`BanditPolicy`: the contextual bandit: at a decision the context vector is built from
  the last detections (:class:`ContextModels`) and the bandit picks one arm per decision
  dimension. Training decides with probability ``decide_prob`` before each detector run
  (exploring); testing decides every ``interval_frames`` frames, greedily, or conservatively:
  leaving a fixed configuration only where the predicted advantage exceeds a threshold
  (:func:`conservative_action`).

A policy whose configuration can change uses the modified shrinking-tail scheduler (paper 004,
Algorithm 3: the rule applied with the runtime of the configuration about to run); with one
configuration it is the same as the plain rule. :func:`run_policy` runs a policy on a video.

Forecasting: as in Streamer, every result updates a constant-velocity Kalman forecaster and
each frame gets the tracked boxes extrapolated to it. Streamer drops forecast boxes under
75 px^2 at Argoverse-HD's 1200-pixel short side; the area limit here is scaled with the frame
(``75 * (short / 1200)^2``, 27 px^2 at 720), so small people are not dropped for a rule tuned
to larger frames.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgerl.streaming.configs import ConfigGrid, StreamConfig
from edgerl.streaming.context import (
    DYNAMICS_NAMES,
    ScaleRegressor,
    SwitchabilityClassifier,
    adascale_labels,
    context_dim,
    context_vector,
    dynamics_features,
    mean_iou,
    per_object_losses,
    scene_features,
    switchability_labels,
    switchability_sd,
)
from edgerl.streaming.data import StreamVideo
from edgerl.streaming.forecast import KalmanConfig, KalmanForecaster
from edgerl.streaming.sap import SAP_KEYS, coco_ap, match_outputs
from edgerl.streaming.simulator import (
    IdleFree,
    KeyedDraws,
    ModifiedShrinkingTail,
    PolicyContext,
    RuntimeProfile,
    Scheduler,
    ShrinkingTail,
    SimResult,
    TrackerSetting,
    simulate,
)
from edgerl.streaming.tracker import LightTracker
from edgerl.utils.errors import InputError
from edgerl.utils.seeding import make_rng
from edgerl.vision.detections import Detections

__all__ = [
    "CONFIDENT_SCORE",
    "COUNT_SCALE",
    "N_CLASSES",
    "AdaScalePolicy",
    "BanditPolicy",
    "ContextModels",
    "RandomPolicy",
    "StaticPolicy",
    "StreamPolicy",
    "SwitchingRuntimes",
    "bandit_context_dim",
    "choose_static_expert",
    "conservative_action",
    "context_models_from_data",
    "evaluate_streams",
    "fit_context_models",
    "run_policy",
    "streamer",
]

N_CLASSES = 1
"""Classes of the detectors' output after the person filter (the context has 14 + 1 slots)."""

COUNT_SCALE = 100.0
"""Detection counts enter the bandit's context divided by this."""

CONFIDENT_SCORE = 0.3
"""Score from which a detection counts in the dynamics slots of the bandit's context."""


def bandit_context_dim(dynamics: bool = True) -> int:
    """Length of the bandit's context: the :func:`~edgerl.streaming.context.context_vector`
    slots, plus the three :data:`~edgerl.streaming.context.DYNAMICS_NAMES` slots with
    ``dynamics``."""
    return context_dim(N_CLASSES) + (len(DYNAMICS_NAMES) if dynamics else 0)


# count_class_0, then count_small / medium / large (after conf_mean, conf_std): context slots
# 2 + k (k < N_CLASSES) and 4 + N_CLASSES .. 6 + N_CLASSES.
_COUNT_SLOTS = np.r_[2 : 2 + N_CLASSES, 4 + N_CLASSES : 7 + N_CLASSES]

_ARGOVERSE_SHORT_PX = 1200.0
_STREAMER_MIN_AREA_PX2 = 75.0


# --------------------------------------------------------------------------- context models


class ContextModels:
    """The two "tiny" learned metrics of the context and the context vector itself.

    Both models read :meth:`features`: the scene statistics of the last detections
    (:func:`~edgerl.streaming.context.scene_features`) and the current scale over the frame's
    short side.

    Args:
        image_hw: Frame (height, width).
        scales_px: Scales the regressor chooses among.
        regressor: Fitted AdaScale-style regressor, or None (the predicted-scale slot stays 0).
        classifier: Fitted switchability classifier, or None (the three slots stay 0).
    """

    def __init__(
        self,
        image_hw: Sequence[int],
        scales_px: Sequence[int],
        regressor: ScaleRegressor | None = None,
        classifier: SwitchabilityClassifier | None = None,
    ) -> None:
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.scales_px = [int(s) for s in scales_px]
        self.regressor = regressor
        self.classifier = classifier

    def features(self, dets: Detections | None, current_scale: float) -> np.ndarray:
        """Scene features of the last detections plus ``current_scale / short side``."""
        d = dets if dets is not None else Detections.empty()
        f = scene_features(d, self.image_hw, N_CLASSES)
        return np.concatenate([f, [float(current_scale) / min(self.image_hw)]]).astype(np.float64)

    def predicted_scale(self, features: np.ndarray) -> float | None:
        """The regressor's scale (pixels), or None without a regressor."""
        if self.regressor is None:
            return None
        return float(self.regressor.predict(features[None])[0])

    def context(self, dets: Detections | None, current_scale: float, use_switchability: bool = True) -> np.ndarray:
        """The bandit's context vector (length ``14 + N_CLASSES``).

        The slots are those of :func:`~edgerl.streaming.context.context_vector`, except that the
        detection counts (per class and per size) are divided by :data:`COUNT_SCALE` so that
        every slot is of order one for the network.
        """
        d = dets if dets is not None else Detections.empty()
        f = self.features(d, current_scale)
        sw = None
        if use_switchability and self.classifier is not None:
            sw = self.classifier.predict_proba(f[None])[0]
        z = context_vector(d, self.image_hw, current_scale, N_CLASSES, self.predicted_scale(f), sw)
        z[_COUNT_SLOTS] /= COUNT_SCALE
        return z


def fit_context_models(
    videos: Sequence[StreamVideo],
    grid: ConfigGrid,
    seed: int | np.random.Generator | None = 0,
    every_frames: int = 5,
    alpha: float = 0.5,
) -> tuple[ContextModels, dict[str, Any]]:
    """Fit the scale regressor and (with two or more models) the switchability classifier.

    AdaScale labels: on every ``every_frames``-th frame of each training video the first model
    of the grid runs at every scale with the largest top-k; the label is
    :func:`~edgerl.streaming.context.adascale_labels` of the per-object losses. One sample per
    (frame, scale): the features of that scale's detections, so the regressor learns to map
    what is seen at the current scale to the best scale.

    Switchability labels: each model's mean IoU at the middle scale of the grid (largest top-k);
    the standard deviation across models bucketed with ``alpha``; one sample per (frame, model).

    Returns:
        The models and the training data (arrays ``scale_X``, ``scale_y``, ``scales_px``,
        ``regressor_seed`` and, with several models, ``switch_X``, ``switch_y``, ``switch_mu``,
        ``switch_sigma``); :func:`context_models_from_data` refits the same models from it.
    """
    if not videos:
        raise InputError("fit_context_models: no training videos")
    rng = make_rng(seed)
    hw = videos[0].image_hw
    k = max(grid.topks)
    model0 = grid.models[0]
    ctx = ContextModels(hw, grid.scales)
    step = max(1, int(every_frames))
    X, y = [], []
    for v in videos:
        for i in range(0, v.n_frames, step):
            g = v.gts[i]
            dets = [v.detections(StreamConfig(model0, s, k, 1), i) for s in grid.scales]
            losses = np.stack([per_object_losses(g.boxes, g.classes, d) for d in dets])
            label = adascale_labels(losses, grid.scales)
            for s, d in zip(grid.scales, dets):
                X.append(ctx.features(d, s))
                y.append(label)
    data: dict[str, Any] = {
        "image_hw": np.asarray(hw, np.int64),
        "scales_px": np.asarray(grid.scales, np.int64),
        "scale_X": np.asarray(X, np.float64),
        "scale_y": np.asarray(y, np.int64),
        "regressor_seed": np.int64(rng.integers(0, 2**31 - 1)),
    }
    if len(grid.models) > 1:
        mid = sorted(grid.scales)[len(grid.scales) // 2]
        miou, feats = [], []
        for v in videos:
            for i in range(0, v.n_frames, step):
                g = v.gts[i]
                dets = [v.detections(StreamConfig(m, mid, k, 1), i) for m in grid.models]
                miou.append([mean_iou(g.boxes, g.classes, d) for d in dets])
                feats.append([ctx.features(d, mid) for d in dets])
        labels, mu, sigma = switchability_labels(switchability_sd(np.asarray(miou)), alpha)
        data.update(
            switch_X=np.concatenate([np.asarray(f) for f in feats]),
            switch_y=np.repeat(labels, len(grid.models)),
            switch_mu=np.float64(mu),
            switch_sigma=np.float64(sigma),
        )
    return context_models_from_data(data), data


def context_models_from_data(data: dict[str, Any]) -> ContextModels:
    """Fit the context models on the data returned by :func:`fit_context_models` (the fits
    are deterministic, so saved data and seed give back the same models)."""
    try:
        hw = [int(v) for v in np.asarray(data["image_hw"]).reshape(-1)]
        scales = [int(v) for v in np.asarray(data["scales_px"]).reshape(-1)]
        sx, sy = np.asarray(data["scale_X"]), np.asarray(data["scale_y"])
        seed = int(data["regressor_seed"])
    except KeyError as exc:
        raise InputError(f"context model data lacks {exc.args[0]!r}") from None
    regressor = None
    if len(scales) > 1 and len(sy):
        regressor = ScaleRegressor(scales, seed=seed).fit(sx, sy)
    classifier = None
    if "switch_X" in data and len(np.asarray(data["switch_y"])):
        classifier = SwitchabilityClassifier().fit(np.asarray(data["switch_X"]), np.asarray(data["switch_y"]))
    return ContextModels(hw, scales, regressor, classifier)


# --------------------------------------------------------------------------- policies


class StreamPolicy:
    """Base class: a simulator policy with a scheduler, a forecasting switch and a decision log.

    Attributes:
        scheduler: Frame-selection rule used with this policy.
        forecast: Whether outputs are Kalman forecasts (Streamer) or raw results.
        decision_frames: Frame index of every decision of the current stream.
        decision_runs: Detector runs completed before each decision of the current stream (the
            decision sets the configuration of run number ``decision_runs[k]``, 0-based).
    """

    scheduler: Scheduler
    forecast: bool

    def __init__(self, scheduler: Scheduler | None = None, forecast: bool = True) -> None:
        self.scheduler = scheduler if scheduler is not None else ModifiedShrinkingTail()
        self.forecast = bool(forecast)
        self.decision_frames: list[int] = []
        self.decision_runs: list[int] = []
        self.current: StreamConfig | None = None
        self.image_hw: tuple[int, int] = (0, 0)

    def reset(self, video: StreamVideo) -> None:
        """Start a new stream."""
        self.decision_frames = []
        self.decision_runs = []
        self.current = None
        self.image_hw = video.image_hw

    def decide(self, ctx: PolicyContext) -> StreamConfig:
        """The configuration chosen at a decision."""
        raise NotImplementedError

    def wants_decision(self, ctx: PolicyContext) -> bool:
        """Whether this detector run starts with a decision (always the first run)."""
        return self.current is None

    def __call__(self, ctx: PolicyContext) -> str:
        if self.wants_decision(ctx):
            self.current = self.decide(ctx)
            self.decision_frames.append(int(ctx.frame_index))
            self.decision_runs.append(int(ctx.run_index))
        assert self.current is not None
        return self.current.name


class StaticPolicy(StreamPolicy):
    """One configuration for the whole stream.

    Args:
        config: The configuration (name or :class:`StreamConfig`).
        scheduler: Default: shrinking tail with the configuration's mean runtime.
        forecast: Kalman forecasting of the outputs.
    """

    def __init__(self, config: str | StreamConfig, scheduler: Scheduler | None = None, forecast: bool = True) -> None:
        super().__init__(scheduler if scheduler is not None else ShrinkingTail(), forecast)
        self.config = config if isinstance(config, StreamConfig) else StreamConfig.parse(config)

    def decide(self, ctx: PolicyContext) -> StreamConfig:
        return self.config


def streamer(config: str | StreamConfig) -> StaticPolicy:
    """Streamer (Li et al.): fixed configuration, shrinking tail, Kalman forecasting."""
    return StaticPolicy(config, ShrinkingTail(), forecast=True)


class _Periodic(StreamPolicy):
    def __init__(self, interval_frames: int, scheduler: Scheduler | None, forecast: bool) -> None:
        super().__init__(scheduler, forecast)
        if int(interval_frames) < 1:
            raise InputError(f"interval_frames must be >= 1, got {interval_frames}")
        self.interval_frames = int(interval_frames)

    def wants_decision(self, ctx: PolicyContext) -> bool:
        if self.current is None:
            return True
        return ctx.frame_index >= self.decision_frames[-1] + self.interval_frames


class RandomPolicy(_Periodic):
    """A uniformly random grid configuration every ``interval_frames`` frames.

    Args:
        grid: Configurations to draw from.
        rng: Source of the draws (int seed or Generator).
        interval_frames: Frames between decisions.
        forecast: Kalman forecasting of the outputs.
    """

    def __init__(self, grid: ConfigGrid, rng: int | np.random.Generator | None = None, interval_frames: int = 20, forecast: bool = True) -> None:
        super().__init__(interval_frames, ModifiedShrinkingTail(), forecast)
        self.grid = grid
        self.configs = grid.configs()
        self.rng = make_rng(rng)

    def decide(self, ctx: PolicyContext) -> StreamConfig:
        return self.configs[int(self.rng.integers(len(self.configs)))]


class AdaScalePolicy(StreamPolicy):
    """Dynamic-offline policy: the scale regressor picks the scale before every detector run.

    Args:
        models: Context models holding the fitted :class:`ScaleRegressor`.
        grid: The scales to round the prediction to.
        model: Fixed detector.
        topk: Fixed top-k.
        stride: Fixed tracker stride.
        scheduler: ``"modified_shrinking_tail"`` or ``"idle_free"`` (AdaScale's own: run as soon
            as the worker is free).
        forecast: Kalman forecasting of the outputs.
    """

    def __init__(
        self,
        models: ContextModels,
        grid: ConfigGrid,
        model: str,
        topk: int,
        stride: int = 1,
        scheduler: str = "modified_shrinking_tail",
        forecast: bool = True,
    ) -> None:
        if scheduler not in ("modified_shrinking_tail", "idle_free"):
            raise InputError(f"AdaScalePolicy scheduler {scheduler!r}: use modified_shrinking_tail or idle_free")
        super().__init__(ModifiedShrinkingTail() if scheduler != "idle_free" else IdleFree(), forecast)
        if models.regressor is None:
            raise InputError("AdaScalePolicy needs a fitted scale regressor (the grid has one scale?)")
        self.models = models
        self.scales = np.asarray(grid.scales, np.float64)
        self.model, self.topk, self.stride = model, int(topk), int(stride)
        self.context_s = 0.0

    def wants_decision(self, ctx: PolicyContext) -> bool:
        return True

    def decide(self, ctx: PolicyContext) -> StreamConfig:
        if self.current is None:  # AdaScale starts at its largest scale
            return StreamConfig(self.model, int(self.scales.max()), self.topk, self.stride)
        t0 = time.perf_counter()
        f = self.models.features(ctx.last_detections, self.current.scale)
        pred = self.models.predicted_scale(f)
        self.context_s += time.perf_counter() - t0
        scale = int(self.scales[np.argmin(np.abs(self.scales - float(pred)))])
        return StreamConfig(self.model, scale, self.topk, self.stride)


class BanditPolicy(_Periodic):
    """The contextual bandit choosing a configuration from the context (paper 004, Alg. 1).

    Args:
        bandit: A :class:`~edgerl.streaming.bandit.ContextualBandit` whose branches are the
            grid's (``grid.n_arms``).
        grid: The configuration grid.
        models: Context models.
        explore: Training mode: decide with probability ``decide_prob`` before each detector run
            and explore; otherwise decide every ``interval_frames`` frames greedily.
        decide_prob: The paper's p (training).
        interval_frames: Frames between decisions (testing).
        rng: Source of the training-time decision draws.
        use_switchability: Feed the switchability probabilities (else those slots are 0).
        forecast: Kalman forecasting of the outputs.
        fixed: The fixed configuration of conservative deviation (in the grid); None: plain
            greedy decisions.
        deviation_threshold: With ``fixed``, the greedy test decision keeps the fixed
            configuration's arm in a branch unless the greedy arm's predicted value exceeds the
            fixed arm's by more than this (reward units; see below). ``inf`` always runs
            ``fixed``; ``-inf`` is the plain greedy policy. Exploring decisions ignore it.

    Conservative deviation (safe policy improvement in the spirit of baseline bootstrapping,
    Laroche et al., ICML 2019): with R2 the fixed policy's reward is 0 by construction, so the
    difference of the two arm values of a branch is the predicted advantage of deviating from
    the fixed configuration in that dimension. With rewards this noisy (R2 std about 0.25 per
    decision against gaps of a few hundredths between the top arms) small predicted advantages
    are mostly fitting error; the threshold, chosen on held-out training videos, lets the
    policy leave the fixed configuration only where the predicted gain is large.

    The context is :meth:`ContextModels.context` of the last detections; when the bandit takes
    :func:`bandit_context_dim` ``(True)`` values, the three dynamics slots
    (:func:`~edgerl.streaming.context.dynamics_features`: confident count, their median height,
    motion speed between the last two detector outputs) follow it. The policy sees every
    detector result (it is asked before each run), so it keeps the last two.

    Attributes:
        contexts, actions: Context and arms of every decision of the current stream.
        context_s, act_s: Wall time spent building contexts and in ``bandit.act`` (s), over
            every stream since construction.
        n_decisions: Decisions over every stream since construction.
    """

    def __init__(
        self,
        bandit: Any,
        grid: ConfigGrid,
        models: ContextModels,
        explore: bool = False,
        decide_prob: float = 0.1,
        interval_frames: int = 20,
        rng: int | np.random.Generator | None = None,
        use_switchability: bool = True,
        forecast: bool = True,
        fixed: str | StreamConfig | None = None,
        deviation_threshold: float = -math.inf,
    ) -> None:
        super().__init__(interval_frames, ModifiedShrinkingTail(), forecast)
        if tuple(bandit.n_arms) != grid.n_arms:
            raise InputError(f"bandit arms {list(bandit.n_arms)} do not match the grid's {list(grid.n_arms)}")
        if not 0.0 <= decide_prob <= 1.0:
            raise InputError(f"decide_prob must be in [0, 1], got {decide_prob}")
        self.bandit, self.grid, self.models = bandit, grid, models
        self.explore = bool(explore)
        self.decide_prob = float(decide_prob)
        self.rng = make_rng(rng)
        self.use_switchability = bool(use_switchability)
        self.contexts: list[np.ndarray] = []
        self.actions: list[tuple[int, ...]] = []
        self.context_s = 0.0
        self.act_s = 0.0
        self.n_decisions = 0
        self._start_scale = float(np.median(grid.scales))
        base = bandit_context_dim(False)
        dim = int(getattr(bandit, "context_dim", base))
        if dim not in (base, bandit_context_dim(True)):
            raise InputError(
                f"bandit context_dim {dim}: expected {base} (detections and learned metrics) or "
                f"{bandit_context_dim(True)} (with the dynamics slots {list(DYNAMICS_NAMES)})"
            )
        self.dynamics = dim == bandit_context_dim(True)
        self.fps = 30.0
        self._hist: list[tuple[Detections, int]] = []
        thr = float(deviation_threshold)
        if math.isnan(thr):
            raise InputError("deviation_threshold must be a number or +-inf, got nan")
        self.deviation_threshold = thr
        self.fixed_action: tuple[int, ...] | None = None
        if fixed is not None:
            try:
                self.fixed_action = grid.to_action(grid.check(fixed))
            except InputError as exc:
                raise InputError(f"fixed: {exc}") from None
        self.n_deviations = 0
        """Greedy decisions (over every stream since construction) that left the fixed
        configuration in at least one branch."""

    def reset(self, video: StreamVideo) -> None:
        super().reset(video)
        self.contexts, self.actions = [], []
        self.fps = float(video.fps)
        self._hist = []

    def __call__(self, ctx: PolicyContext) -> str:
        if ctx.last_detections is not None and (not self._hist or self._hist[-1][1] != ctx.last_frame_index):
            self._hist = [*self._hist[-1:], (ctx.last_detections, int(ctx.last_frame_index))]
        return super().__call__(ctx)

    def wants_decision(self, ctx: PolicyContext) -> bool:
        if self.current is None:
            return True
        if self.explore:
            return bool(self.rng.random() < self.decide_prob)
        return super().wants_decision(ctx)

    def decide(self, ctx: PolicyContext) -> StreamConfig:
        scale = self.current.scale if self.current is not None else self._start_scale
        t0 = time.perf_counter()
        z = self.models.context(ctx.last_detections, scale, self.use_switchability)
        if self.dynamics:
            last = ctx.last_detections if ctx.last_detections is not None else Detections.empty()
            prev, apart = None, 0
            if len(self._hist) == 2:
                prev, apart = self._hist[0][0], self._hist[1][1] - self._hist[0][1]
            dyn = dynamics_features(last, prev, apart, self.models.image_hw, self.fps, CONFIDENT_SCORE, COUNT_SCALE)
            z = np.concatenate([z, dyn]).astype(np.float32)
        t1 = time.perf_counter()
        if self.explore or self.fixed_action is None:
            a = self.bandit.act(z, deterministic=not self.explore)
        else:
            a = conservative_action(self.bandit.q_values(z), self.fixed_action, self.deviation_threshold)
            self.n_deviations += int(a != self.fixed_action)
        self.act_s += time.perf_counter() - t1
        self.context_s += t1 - t0
        self.contexts.append(z)
        self.actions.append(tuple(int(x) for x in a))
        self.n_decisions += 1
        return self.grid.from_action(a)


def conservative_action(q_values: Sequence[np.ndarray], fixed_action: Sequence[int], threshold: float) -> tuple[int, ...]:
    """Per branch, the greedy arm if its value exceeds the fixed arm's by more than
    ``threshold``, else the fixed arm.

    ``threshold = -inf`` gives the greedy arms (``argmax``, first on ties), ``+inf`` the fixed
    action.

    Args:
        q_values: Predicted arm values of each branch (:meth:`ContextualBandit.q_values`).
        fixed_action: The fixed configuration's arm in each branch.
        threshold: Minimum predicted advantage (reward units) to deviate.
    """
    if len(q_values) != len(fixed_action):
        raise InputError(f"conservative_action: {len(q_values)} branches of values for an action of {len(fixed_action)}")
    out = []
    for q, f in zip(q_values, fixed_action):
        g = int(np.argmax(q))
        out.append(g if q[g] - q[int(f)] > threshold else int(f))
    return tuple(out)


# --------------------------------------------------------------------------- running


class SwitchingRuntimes(RuntimeProfile):
    """Runtime samples plus a fixed cost for every detector run that changes the model.

    The simulator draws one sample per detector run, in order, so the model of the previous
    draw is the model of the previous run; :meth:`reset` starts a new stream. The cost stands
    for loading or warming up the other network and is in simulated seconds (not divided by
    ``speed_factor``). The scheduler still plans with the mean runtime without it.

    Args:
        base: The measured profile.
        switch_cost_s: Extra seconds of a run whose model differs from the previous run's.
    """

    def __init__(self, base: RuntimeProfile, switch_cost_s: float) -> None:
        super().__init__({c: base.samples(c) for c in base.configs}, base.speed_factor)
        if not switch_cost_s >= 0:
            raise InputError(f"switch_cost_s must be >= 0, got {switch_cost_s}")
        self.switch_cost_s = float(switch_cost_s)
        self._last_model: str | None = None
        self.n_switches = 0
        """Model changes in the current stream."""
        self.total_switches = 0
        """Model changes over every stream since construction."""

    def reset(self) -> None:
        """Forget the previous model (a new stream)."""
        self._last_model = None
        self.n_switches = 0

    def sample(self, config: str, rng: np.random.Generator) -> float:
        model = StreamConfig.parse(config).model
        extra = 0.0
        if self._last_model is not None and model != self._last_model:
            extra = self.switch_cost_s
            self.n_switches += 1
            self.total_switches += 1
        self._last_model = model
        return super().sample(config, rng) + extra


def forecaster_for(image_hw: Sequence[int]) -> KalmanForecaster:
    """Streamer's Kalman forecaster with the area limit scaled to the frame size."""
    short = float(min(image_hw))
    area = _STREAMER_MIN_AREA_PX2 * (short / _ARGOVERSE_SHORT_PX) ** 2
    return KalmanForecaster(KalmanConfig(min_area_px2=area))


def run_policy(
    policy: StreamPolicy,
    video: StreamVideo,
    runtimes: RuntimeProfile,
    rng: np.random.Generator | KeyedDraws,
    tracker_scale_px: float = 480.0,
    n_frames: int | None = None,
) -> SimResult:
    """Simulate one video under a policy (its scheduler and forecasting switch).

    ``rng`` draws the runtimes: a generator (drawn in run order) or :class:`KeyedDraws`
    (common random numbers keyed by frame and configuration).

    Configurations with a tracker stride above 1 run :class:`LightTracker` steps at
    ``tracker_scale_px`` between detector runs.

    ``n_frames`` ends the stream after its first ``n_frames`` frames (default: all). The outputs
    shown on those frames are the same as in the whole stream's run: a run that would take a
    later frame delivers after them, and forecasts of a frame use only results delivered before
    it.
    """
    policy.reset(video)
    if isinstance(runtimes, SwitchingRuntimes):
        runtimes.reset()
    settings = {}
    for name in runtimes.configs:
        st = StreamConfig.parse(name).stride
        if st > 1:
            settings[name] = TrackerSetting(st, tracker_scale_px)
    n = video.n_frames if n_frames is None else int(n_frames)
    if not 0 <= n <= video.n_frames:
        raise InputError(f"run_policy: n_frames must be in [0, {video.n_frames}] for video {video.name}, got {n_frames}")
    return simulate(
        n,
        video.fps,
        policy,
        video.cache,
        runtimes,
        policy.scheduler,
        rng,
        forecaster=forecaster_for(video.image_hw) if policy.forecast else None,
        tracker=LightTracker() if settings else None,
        tracker_settings=settings or None,
    )


def evaluate_streams(videos: Sequence[StreamVideo], results: Sequence[SimResult]) -> dict[str, float]:
    """Streaming AP over several videos, all frames in one COCO evaluation.

    Each frame is scored against the latest output of its own video delivered by the frame's
    time (zero-order hold, :func:`~edgerl.streaming.sap.match_outputs`).

    Returns:
        ``sap``, ``sap50``, ``sap75``, ``sap_small``, ``sap_medium``, ``sap_large``,
        ``n_frames``, ``n_missed_frames``, ``mean_frame_lag`` (frames), ``detector_runs``.
    """
    if len(videos) != len(results):
        raise InputError(f"evaluate_streams: {len(videos)} videos but {len(results)} results")
    gts, preds, lags = [], [], []
    missed, runs = 0, 0
    empty = Detections.empty()
    for v, r in zip(videos, results):
        times = np.fromiter((o.time_s for o in r.outputs), np.float64, len(r.outputs))
        idx = match_outputs(times, v.n_frames, v.fps)
        gts.extend(v.gts)
        preds.extend(r.outputs[j].detections if j >= 0 else empty for j in idx.tolist())
        has = idx >= 0
        missed += int((~has).sum())
        frames = np.flatnonzero(has)
        src = np.asarray([r.outputs[j].frame_index for j in idx[has].tolist()], np.int64)
        lags.append(frames - src)
        runs += len(r.detector_runs)
    m = coco_ap(gts, preds, max_det=100)
    out = {k: float(m[src]) for k, src in SAP_KEYS.items()}
    lag = np.concatenate(lags) if lags else np.zeros(0)
    out.update(
        n_frames=float(len(gts)),
        n_missed_frames=float(missed),
        mean_frame_lag=float(lag.mean()) if lag.size else float("nan"),
        detector_runs=float(runs),
    )
    return out


def choose_static_expert(
    videos: Sequence[StreamVideo],
    grid: ConfigGrid,
    runtimes: RuntimeProfile,
    seed: int = 0,
    forecast: bool = True,
    tracker_scale_px: float = 480.0,
) -> tuple[StreamConfig, dict[str, float]]:
    """The configuration with the best pooled sAP on the given (training) videos.

    Every grid configuration runs as a static policy (shrinking tail) on every video with the
    runtime generator seeded ``(seed, video index)``, the same draws for every configuration.

    Returns:
        The best configuration (ties: first in grid order) and ``{name: sap}`` of all.
    """
    table: dict[str, float] = {}
    for c in grid.configs():
        results = []
        for j, v in enumerate(videos):
            results.append(run_policy(StaticPolicy(c, forecast=forecast), v, runtimes, np.random.default_rng([seed, j]), tracker_scale_px))
        table[c.name] = evaluate_streams(videos, results)["sap"]
    best = max(table, key=lambda n: (table[n], -list(table).index(n)))
    return StreamConfig.parse(best), table
