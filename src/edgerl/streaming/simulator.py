"""Virtual-clock streaming simulator, frame schedulers and a real-time runner.

Streaming perception (Li et al., ECCV 2020; paper 004 section 4.3) runs one detector on one worker
against a camera that delivers frame ``i`` at ``i / fps`` seconds. Whenever the worker is free it
must pick a frame (or wait for the next one), and the result is only useful from the moment it is
delivered (see :mod:`edgerl.streaming.sap`). The simulator replays that on a virtual clock:

* runtimes are drawn from per-configuration empirical samples (:class:`RuntimeProfile`), divided
  by a ``speed_factor`` when a slower machine stands in for the target; the draws come either
  from one generator in the order of the runs, or (common random numbers, :class:`KeyedDraws`)
  from a generator keyed by the frame index and the configuration, so that two policies that
  run the same configuration on the same frame see the same runtime whatever ran before;
* detections come from per-frame results computed once per configuration
  (:class:`DictDetectionCache`, :class:`LazyDetectionCache`);
* before every detector run a ``policy`` callable picks the configuration (a bandit can switch at
  run time), and a scheduler decides whether to start on the latest frame or wait for the next:
  :class:`IdleFree`, :class:`ShrinkingTail` (Li et al.) or :class:`ModifiedShrinkingTail`
  (paper 004, Algorithm 3: the rule applied with the runtime of the configuration about to run);
* optionally a forecaster turns each result into one output per frame (Streamer), and a tracker
  configured with a stride processes the frames between detector runs at its own profiled cost.

The clock is kept in frame units internally. Clock values within ``1e-7`` frames of an integer are
snapped onto it and tail comparisons use the same tolerance, so accumulated rounding cannot flip a
scheduling decision that is an exact tie in rational arithmetic; :func:`exact_schedule` runs the
same rules on :class:`fractions.Fraction` and the tests check that both agree.

Shrinking tail: with the clock at ``s`` frames and expected runtime ``r`` frames, wait for the
next frame iff ``tail(s + r) < tail(s)``, ``tail(t) = t - floor(t)``. Waiting moves the start to
``floor(s) + 1`` and takes that (fresher) frame; a result that lands earlier within its frame
interval stands in for fewer stale frames.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from edgerl.streaming.sap import StreamOutput, streaming_ap
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import GroundTruth

__all__ = [
    "RuntimeProfile",
    "KeyedDraws",
    "DetectionCache",
    "DictDetectionCache",
    "LazyDetectionCache",
    "Forecaster",
    "StreamTracker",
    "TrackerSetting",
    "PolicyContext",
    "Policy",
    "fixed_policy",
    "Scheduler",
    "IdleFree",
    "ShrinkingTail",
    "ModifiedShrinkingTail",
    "make_scheduler",
    "RunRecord",
    "SimResult",
    "simulate",
    "exact_schedule",
    "run_realtime",
    "SCHEDULE_RULES",
]

#: Scheduling rule names understood by :func:`make_scheduler` and :func:`exact_schedule`.
SCHEDULE_RULES: tuple[str, ...] = ("idle_free", "shrinking_tail", "modified_shrinking_tail")

# Tolerance (frames) for snapping the clock onto frame boundaries and comparing tails.
_EPS = 1e-7


def _snap(x: float) -> float:
    r = round(x)
    return float(r) if abs(x - r) <= _EPS else x


def _tail(x: float) -> float:
    x = _snap(x)
    return x - math.floor(x)


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _check_n_frames(n_frames: int) -> int:
    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 0:
        raise InputError(f"n_frames must be a non-negative int, got {n_frames!r}")
    return int(n_frames)


# ---------------------------------------------------------------------------------------------
# Runtimes and cached detections


class RuntimeProfile:
    """Measured runtimes per configuration, sampled to drive the virtual clock.

    Args:
        samples_s: Configuration name -> measured runtimes in seconds (each > 0, finite).
        speed_factor: How much faster the simulated target is than the machine that measured the
            samples; a simulated runtime is ``sample / speed_factor`` (e.g. 10 when CPU timings
            stand in for a GPU ten times faster).

    Raises:
        InputError: An empty or invalid sample array (the configuration is named), or a
            ``speed_factor`` that is not > 0.
    """

    def __init__(
        self, samples_s: Mapping[str, Sequence[float] | np.ndarray], speed_factor: float = 1.0
    ) -> None:
        self.speed_factor = _check_positive("RuntimeProfile.speed_factor", speed_factor)
        if not samples_s:
            raise InputError("RuntimeProfile: no configurations given")
        self._samples: dict[str, np.ndarray] = {}
        for name, values in samples_s.items():
            a = np.asarray(values, dtype=np.float64).reshape(-1)
            if a.size == 0:
                raise InputError(
                    f"RuntimeProfile: configuration {name!r} has no runtime samples "
                    "(need at least one measured runtime in seconds)"
                )
            if not np.all(np.isfinite(a)) or np.any(a <= 0):
                bad = float(a[~(np.isfinite(a) & (a > 0))][0])
                raise InputError(
                    f"RuntimeProfile: configuration {name!r} has runtime sample {bad!r}; "
                    "samples must be finite seconds > 0"
                )
            self._samples[str(name)] = a
        self._means = {k: float(v.mean()) for k, v in self._samples.items()}

    @property
    def configs(self) -> tuple[str, ...]:
        """Configuration names, in the order given."""
        return tuple(self._samples)

    def _get(self, config: str) -> np.ndarray:
        try:
            return self._samples[config]
        except KeyError:
            raise InputError(
                f"RuntimeProfile: unknown configuration {config!r}; known: {', '.join(self._samples)}"
            ) from None

    def samples(self, config: str) -> np.ndarray:
        """The measured samples of ``config`` in seconds (before ``speed_factor``), a copy."""
        return self._get(config).copy()

    def sample(self, config: str, rng: np.random.Generator) -> float:
        """One simulated runtime of ``config`` in seconds: a measured sample / ``speed_factor``."""
        a = self._get(config)
        return float(a[int(rng.integers(a.size))]) / self.speed_factor

    def mean_s(self, config: str) -> float:
        """Expected simulated runtime of ``config`` in seconds (sample mean / ``speed_factor``)."""
        self._get(config)
        return self._means[config] / self.speed_factor

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a JSON file: ``{"speed_factor": f, "samples_s": {name: [...]}}``."""
        return {
            "speed_factor": self.speed_factor,
            "samples_s": {k: v.tolist() for k, v in self._samples.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeProfile:
        """Inverse of :meth:`to_dict`."""
        if "samples_s" not in data:
            raise InputError("RuntimeProfile.from_dict: field 'samples_s' is required")
        return cls(data["samples_s"], float(data.get("speed_factor", 1.0)))


class KeyedDraws:
    """Common random numbers for the runtimes of one stream.

    The runtime of configuration ``c`` on frame ``i`` is drawn from a generator seeded
    ``(*key, i, crc32(c))``: it depends on nothing that ran before, so two policies that run
    ``c`` on frame ``i`` of the same stream (same ``key``) get the same runtime, however their
    schedules differed until then. With one generator consumed in run order instead, the draws
    of two policies part at their first difference and never realign. The object holds no state;
    it can serve any number of runs.

    Args:
        key: Non-negative integers naming the stream (e.g. seed, purpose, video index).

    Raises:
        InputError: An empty key or a negative entry.
    """

    def __init__(self, key: Sequence[int]) -> None:
        k = tuple(int(x) for x in key)
        if not k or any(x < 0 for x in k):
            raise InputError(f"KeyedDraws: key must be a non-empty sequence of integers >= 0, got {tuple(key)!r}")
        self.key = k

    def generator(self, config: str, frame_index: int) -> np.random.Generator:
        """The generator of the runtime of ``config`` on frame ``frame_index`` (a fresh one per
        call: the same pair always gives the same draws)."""
        if frame_index < 0:
            raise InputError(f"KeyedDraws.generator: frame_index must be >= 0, got {frame_index}")
        return np.random.default_rng([*self.key, int(frame_index), zlib.crc32(config.encode("utf-8"))])

    def __repr__(self) -> str:
        return f"KeyedDraws(key={self.key!r})"


@runtime_checkable
class DetectionCache(Protocol):
    """Per-frame detections of every configuration, computed at most once each."""

    def get(self, config: str, frame_index: int) -> Detections:
        """Detections of ``config`` on frame ``frame_index``."""
        ...


class DictDetectionCache:
    """Detections precomputed for every frame: ``table[config][frame_index]``.

    Args:
        table: Configuration name -> one :class:`Detections` per frame.
    """

    def __init__(self, table: Mapping[str, Sequence[Detections]]) -> None:
        self._table = {str(k): list(v) for k, v in table.items()}

    def get(self, config: str, frame_index: int) -> Detections:
        """Detections of ``config`` on frame ``frame_index``; InputError when absent."""
        if config not in self._table:
            raise InputError(
                f"DictDetectionCache: no detections for configuration {config!r}; "
                f"known: {', '.join(self._table)}"
            )
        rows = self._table[config]
        if not 0 <= frame_index < len(rows):
            raise InputError(
                f"DictDetectionCache: configuration {config!r} has frames 0..{len(rows) - 1}, "
                f"frame {frame_index} was asked for"
            )
        return rows[frame_index]


class LazyDetectionCache:
    """Detections computed on first use by ``fn(config, frame_index)`` and memoised.

    Args:
        fn: Runs the detector in configuration ``config`` on frame ``frame_index``.
    """

    def __init__(self, fn: Callable[[str, int], Detections]) -> None:
        self._fn = fn
        self._memo: dict[tuple[str, int], Detections] = {}
        self.n_computed = 0
        """Number of calls made to ``fn`` so far."""

    def get(self, config: str, frame_index: int) -> Detections:
        """Detections of ``config`` on frame ``frame_index`` (computed once)."""
        key = (config, int(frame_index))
        d = self._memo.get(key)
        if d is None:
            d = self._fn(config, int(frame_index))
            if not isinstance(d, Detections):
                raise InputError(
                    f"LazyDetectionCache: fn({config!r}, {frame_index}) returned "
                    f"{type(d).__name__}, expected Detections"
                )
            self._memo[key] = d
            self.n_computed += 1
        return d


# ---------------------------------------------------------------------------------------------
# Forecaster / tracker interfaces, policy


@runtime_checkable
class Forecaster(Protocol):
    """What the simulator needs of a forecaster (e.g. :class:`~edgerl.streaming.forecast.KalmanForecaster`)."""

    def reset(self) -> None:
        """Forget every track."""
        ...

    def update(self, detections: Detections, frame_index: int) -> None:
        """Take the result computed from frame ``frame_index``."""
        ...

    def forecast(self, frame_index: int) -> Detections:
        """The tracked objects extrapolated to frame ``frame_index``."""
        ...


@runtime_checkable
class StreamTracker(Protocol):
    """What the simulator needs of a tracker (e.g. :class:`~edgerl.streaming.tracker.LightTracker`)."""

    def reset(self) -> None:
        """Forget every track."""
        ...

    def update(self, detections: Detections, frame_index: int) -> None:
        """Take a detector result computed from frame ``frame_index``."""
        ...

    def track(self, frame_index: int) -> Detections:
        """Tracked boxes on frame ``frame_index``."""
        ...

    def cost_s(self, scale: float) -> float:
        """Runtime (s) of one tracking step at input scale ``scale``."""
        ...


@dataclass(frozen=True)
class TrackerSetting:
    """How a configuration uses the tracker.

    Attributes:
        stride: Processed frames per detector run: one detector run, then ``stride - 1`` tracker
            steps (paper 004's tracker stride k; 1 = no tracking).
        scale: Tracker input scale (short side in pixels), passed to ``tracker.cost_s``.
    """

    stride: int
    scale: float = 480.0

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or int(self.stride) != self.stride or self.stride < 1:
            raise InputError(f"TrackerSetting.stride must be an int >= 1, got {self.stride!r}")
        _check_positive("TrackerSetting.scale", self.scale)
        object.__setattr__(self, "stride", int(self.stride))


@dataclass(frozen=True)
class PolicyContext:
    """What a policy sees when a detector run is about to start.

    Attributes:
        time_s: Stream time (s) at which the worker became free.
        frame_index: The frame the run would take if it started now (latest frame not yet
            processed; it may still have to be waited for).
        run_index: Detector runs completed so far.
        last_config: Configuration of the previous detector run (None before the first).
        last_detections: Result of the previous detector run (None before the first).
        last_frame_index: Input frame of the previous detector run (-1 before the first).
    """

    time_s: float
    frame_index: int
    run_index: int
    last_config: str | None
    last_detections: Detections | None
    last_frame_index: int


Policy = Callable[[PolicyContext], str]
"""Picks the configuration of the next detector run."""


def fixed_policy(config: str) -> Policy:
    """A policy that always answers ``config``."""

    def policy(ctx: PolicyContext) -> str:
        return config

    return policy


# ---------------------------------------------------------------------------------------------
# Schedulers


class Scheduler:
    """Decides, when the worker is free, whether to wait for the next frame."""

    rule: ClassVar[str] = ""

    def should_wait(
        self, s_frames: float, config_runtime_frames: float, first_runtime_frames: float, fps: float
    ) -> bool:
        """Whether to skip the latest frame and start on the next one.

        Args:
            s_frames: Clock in frames (``time_s * fps``); a new frame is available at it.
            config_runtime_frames: Expected runtime (frames) of the configuration about to run.
            first_runtime_frames: Expected runtime (frames) of the stream's first configuration.
            fps: Frame rate.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class IdleFree(Scheduler):
    """Start as soon as the worker is free, on the latest frame not yet processed."""

    rule: ClassVar[str] = "idle_free"

    def should_wait(
        self, s_frames: float, config_runtime_frames: float, first_runtime_frames: float, fps: float
    ) -> bool:
        return False


def _shrinking_tail_waits(s: float, r: float) -> bool:
    return _tail(s + r) < _tail(s) - _EPS


@dataclass(frozen=True)
class ShrinkingTail(Scheduler):
    """Li et al.'s shrinking tail with one fixed expected runtime for the whole stream.

    Attributes:
        expected_runtime_s: The runtime ``r`` the rule uses (s). None: the expected runtime of the
            first configuration the policy picks (Li et al. run one detector, so that is its mean).
    """

    expected_runtime_s: float | None = None
    rule: ClassVar[str] = "shrinking_tail"

    def __post_init__(self) -> None:
        if self.expected_runtime_s is not None:
            _check_positive("ShrinkingTail.expected_runtime_s", self.expected_runtime_s)

    def should_wait(
        self, s_frames: float, config_runtime_frames: float, first_runtime_frames: float, fps: float
    ) -> bool:
        r = (
            first_runtime_frames
            if self.expected_runtime_s is None
            else self.expected_runtime_s * fps
        )
        return _shrinking_tail_waits(s_frames, r)


@dataclass(frozen=True)
class ModifiedShrinkingTail(Scheduler):
    """Paper 004, Algorithm 3: shrinking tail with the runtime of the configuration about to run."""

    rule: ClassVar[str] = "modified_shrinking_tail"

    def should_wait(
        self, s_frames: float, config_runtime_frames: float, first_runtime_frames: float, fps: float
    ) -> bool:
        return _shrinking_tail_waits(s_frames, config_runtime_frames)


def make_scheduler(rule: str, expected_runtime_s: float | None = None) -> Scheduler:
    """Scheduler by rule name (one of :data:`SCHEDULE_RULES`)."""
    if rule == "idle_free":
        return IdleFree()
    if rule == "shrinking_tail":
        return ShrinkingTail(expected_runtime_s)
    if rule == "modified_shrinking_tail":
        return ModifiedShrinkingTail()
    raise InputError(f"scheduler rule {rule!r} is unknown; valid: {', '.join(SCHEDULE_RULES)}")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class RunRecord:
    """One use of the worker.

    Attributes:
        kind: ``"detector"`` or ``"tracker"``.
        config: Configuration in effect (for a tracker step: that of the detector run before it).
        frame_index: Input frame processed.
        start_s: Stream time the run started (s).
        end_s: Stream time its result was delivered (s).
    """

    kind: Literal["detector", "tracker"]
    config: str
    frame_index: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SimResult:
    """Outcome of one simulated (or real-time) stream.

    Attributes:
        outputs: The delivered results, in time order (input of
            :func:`~edgerl.streaming.sap.streaming_ap`).
        runs: Every detector run and tracker step, in time order.
        n_frames: Frames in the stream.
        fps: Frame rate.
    """

    outputs: tuple[StreamOutput, ...]
    runs: tuple[RunRecord, ...]
    n_frames: int
    fps: float

    @property
    def detector_runs(self) -> tuple[RunRecord, ...]:
        """The detector runs only."""
        return tuple(r for r in self.runs if r.kind == "detector")

    @property
    def configs(self) -> list[str]:
        """Configuration of each detector run."""
        return [r.config for r in self.detector_runs]

    def schedule_frames(self, kind: str = "detector") -> list[tuple[float, float, int]]:
        """``(start, end, frame_index)`` of each run of ``kind``, times in frames."""
        return [
            (r.start_s * self.fps, r.end_s * self.fps, r.frame_index)
            for r in self.runs
            if r.kind == kind
        ]

    def evaluate(self, gts: Sequence[GroundTruth], **kwargs: Any) -> dict[str, float]:
        """:func:`~edgerl.streaming.sap.streaming_ap` of the outputs (extra keyword arguments
        are passed on)."""
        return streaming_ap(gts, self.outputs, fps=self.fps, **kwargs)


# ---------------------------------------------------------------------------------------------
# Virtual-clock simulation


class _Emitter:
    """Turns processed results into outputs: directly, or as per-frame forecasts."""

    def __init__(self, n_frames: int, fps: float, forecaster: Forecaster | None) -> None:
        self.n_frames, self.fps, self.fc = n_frames, fps, forecaster
        self.outputs: list[StreamOutput] = []
        self.next_frame = 0  # first frame not yet given a forecast
        self.ready = False

    def _forecast_until(self, stop: int) -> None:
        stop = min(stop, self.n_frames)
        if self.ready:
            for j in range(self.next_frame, stop):
                self.outputs.append(StreamOutput(j / self.fps, j, self.fc.forecast(j)))
        self.next_frame = max(self.next_frame, stop)

    def deliver(self, detections: Detections, frame_index: int, end_frames: float) -> None:
        if self.fc is None:
            self.outputs.append(StreamOutput(end_frames / self.fps, frame_index, detections))
            return
        # Frames shown strictly before the result arrives are forecast from the older state; a
        # result landing exactly on a frame boundary is used for that frame.
        self._forecast_until(math.ceil(end_frames))
        self.fc.update(detections, frame_index)
        self.ready = True

    def finish(self) -> None:
        if self.fc is not None:
            self._forecast_until(self.n_frames)


def simulate(
    n_frames: int,
    fps: float,
    policy: Policy,
    cache: DetectionCache,
    runtimes: RuntimeProfile,
    scheduler: Scheduler,
    rng: np.random.Generator | KeyedDraws,
    *,
    forecaster: Forecaster | None = None,
    tracker: StreamTracker | None = None,
    tracker_settings: Mapping[str, TrackerSetting] | None = None,
) -> SimResult:
    """Replay a stream on a virtual clock with one worker.

    Loop, starting with a free worker at time 0: call ``policy`` (detector runs only), let the
    scheduler choose between the latest unprocessed frame and the next one, draw the runtime,
    take the cached detections, deliver the result at the end time. With a ``tracker`` and a
    ``tracker_settings`` entry of stride k for the chosen configuration, the next k - 1 uses of
    the worker are tracker steps on the latest unprocessed frame, each costing
    ``tracker.cost_s(scale)`` seconds (not divided by ``speed_factor``). Without a forecaster
    each result is one :class:`StreamOutput` at its end time; with one, each result updates the
    forecaster and every frame from the first result on gets an output forecast to that frame,
    stamped with the frame's own time (forecasting cost is taken as negligible, as in Streamer).

    Args:
        n_frames: Frames in the stream.
        fps: Frame rate (frames per second).
        policy: Picks the configuration of each detector run.
        cache: Per-frame detections per configuration.
        runtimes: Runtime samples per configuration.
        scheduler: :class:`IdleFree`, :class:`ShrinkingTail` or :class:`ModifiedShrinkingTail`.
        rng: Source of the runtime draws: one generator drawn in run order, or
            :class:`KeyedDraws` (the draw of a run depends only on its frame and configuration).
        forecaster: Optional forecaster (reset at the start).
        tracker: Optional tracker (reset at the start); used only for configurations listed in
            ``tracker_settings``.
        tracker_settings: Configuration name -> :class:`TrackerSetting`.

    Returns:
        The outputs and the log of runs.

    Raises:
        InputError: Invalid ``n_frames``/``fps``, tracker settings without a tracker, or a
            configuration unknown to ``runtimes``/``cache``.
    """
    n_frames = _check_n_frames(n_frames)
    fps = _check_positive("fps", fps)
    settings = dict(tracker_settings or {})
    if settings and tracker is None:
        raise InputError("simulate: tracker_settings given but tracker is None")
    for name, st in settings.items():
        if not isinstance(st, TrackerSetting):
            raise InputError(
                f"simulate: tracker_settings[{name!r}] must be a TrackerSetting, "
                f"got {type(st).__name__}"
            )
    if forecaster is not None:
        forecaster.reset()
    if tracker is not None:
        tracker.reset()
    emit = _Emitter(n_frames, fps, forecaster)
    runs: list[RunRecord] = []
    s = 0.0  # clock in frames: when the worker is next free
    last = -1  # last frame processed
    last_cfg: str | None = None
    last_det: Detections | None = None
    last_det_frame = -1
    n_det = 0
    r_first: float | None = None
    track_left = 0
    track_cost = 0.0
    while True:
        i = math.floor(s)
        if track_left > 0:
            if i <= last:
                s, i = float(last + 1), last + 1
            if i >= n_frames:
                break
            end = _snap(s + track_cost)
            dets = tracker.track(i)  # type: ignore[union-attr]
            runs.append(RunRecord("tracker", last_cfg or "", i, s / fps, end / fps))
            emit.deliver(dets, i, end)
            track_left -= 1
            s, last = end, i
            continue
        avail = i if i > last else last + 1
        if avail >= n_frames:
            break
        ctx = PolicyContext(s / fps, avail, n_det, last_cfg, last_det, last_det_frame)
        cfg = policy(ctx)
        r_mean = runtimes.mean_s(cfg) * fps
        if r_first is None:
            r_first = r_mean
        if i <= last:
            s, i = float(last + 1), last + 1
        elif scheduler.should_wait(s, r_mean, r_first, fps):
            s, i = float(i + 1), i + 1
        if i >= n_frames:
            break
        g = rng.generator(cfg, i) if isinstance(rng, KeyedDraws) else rng
        end = _snap(s + runtimes.sample(cfg, g) * fps)
        dets = cache.get(cfg, i)
        runs.append(RunRecord("detector", cfg, i, s / fps, end / fps))
        emit.deliver(dets, i, end)
        st = settings.get(cfg)
        if tracker is not None and st is not None and st.stride > 1:
            tracker.update(dets, i)
            track_left = st.stride - 1
            track_cost = _check_positive("tracker.cost_s", tracker.cost_s(st.scale)) * fps
        s, last = end, i
        last_cfg, last_det, last_det_frame = cfg, dets, i
        n_det += 1
    emit.finish()
    return SimResult(tuple(emit.outputs), tuple(runs), n_frames, fps)


# ---------------------------------------------------------------------------------------------
# Exact reference schedule


def exact_schedule(
    runtimes_frames: Sequence[float | Fraction],
    n_frames: int,
    rule: str,
    expected_runtime_frames: float | Fraction | None = None,
) -> list[tuple[Fraction, Fraction, int]]:
    """Detector schedule of one worker in exact rational arithmetic.

    The same rules as :func:`simulate` (detector runs only) with no floating point: run ``k``
    takes ``runtimes_frames[k]`` frames; ``"modified_shrinking_tail"`` decides with that same
    runtime, ``"shrinking_tail"`` with ``expected_runtime_frames`` (default: the first runtime).
    Floats are converted exactly (``Fraction(0.1)`` is the binary value); pass Fractions for exact
    rationals.

    Args:
        runtimes_frames: Runtime of each successive run, in frames (> 0).
        n_frames: Frames in the stream.
        rule: One of :data:`SCHEDULE_RULES`.
        expected_runtime_frames: ``r`` of the plain shrinking-tail rule.

    Returns:
        ``(start, end, frame_index)`` per run, times in frames; stops when the stream or the
        runtimes run out.
    """
    n_frames = _check_n_frames(n_frames)
    if rule not in SCHEDULE_RULES:
        raise InputError(f"rule {rule!r} is unknown; valid: {', '.join(SCHEDULE_RULES)}")
    rts = [Fraction(r) for r in runtimes_frames]
    if any(r <= 0 for r in rts):
        raise InputError("exact_schedule: runtimes_frames must all be > 0")
    if expected_runtime_frames is not None:
        r_fixed = Fraction(expected_runtime_frames)
    else:
        r_fixed = rts[0] if rts else Fraction(1)

    def tail(t: Fraction) -> Fraction:
        return t - math.floor(t)

    out: list[tuple[Fraction, Fraction, int]] = []
    s, last = Fraction(0), -1
    for r in rts:
        i = math.floor(s)
        if i <= last:
            s, i = Fraction(last + 1), last + 1
        elif rule != "idle_free":
            r_rule = r if rule == "modified_shrinking_tail" else r_fixed
            if tail(s + r_rule) < tail(s):
                s, i = Fraction(i + 1), i + 1
        if i >= n_frames:
            break
        out.append((s, s + r, i))
        s, last = s + r, i
    return out


# ---------------------------------------------------------------------------------------------
# Real-time mode


def run_realtime(
    frames: Sequence[Any],
    detector_fn: Callable[[Any], Detections],
    scheduler: Scheduler,
    fps: float,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    config: str = "realtime",
) -> SimResult:
    """Run a real detector against the wall clock: frame ``i`` becomes available at
    ``start + i / fps``.

    The scheduling rules are those of :func:`simulate`; the expected runtime a shrinking-tail rule
    needs is the mean of the runtimes measured so far (or ``ShrinkingTail.expected_runtime_s``),
    and the first run never waits. Waiting sleeps until the next frame's time; if the sleep
    overshoots, the latest frame available on waking is taken.

    Args:
        frames: The stream (anything ``detector_fn`` takes), indexable, ``len`` = frame count.
        detector_fn: Runs the detector on one frame.
        scheduler: Frame-selection rule.
        fps: Frame rate of the simulated camera.
        clock: Monotonic clock in seconds.
        sleep: Sleeps for a number of seconds (pass a fake together with a fake ``clock`` in
            tests).
        config: Name recorded for every run.

    Returns:
        Outputs stamped with measured delivery times (s since the stream start) and the runs.
    """
    fps = _check_positive("fps", fps)
    n = len(frames)
    outputs: list[StreamOutput] = []
    runs: list[RunRecord] = []
    measured: list[float] = []
    last = -1
    t0 = clock()
    while True:
        # No snapping here: a measured time is never rounded up onto a frame not yet shown.
        s = (clock() - t0) * fps
        i = math.floor(s)
        if i <= last:
            target = last + 1
        elif measured:
            r = float(np.mean(measured)) * fps
            target = i + 1 if scheduler.should_wait(s, r, r, fps) else i
        else:
            target = i
        if target >= n:
            break
        if target > i:
            while (delay := target / fps - (clock() - t0)) > 0:
                sleep(delay)
            target = min(max(target, math.floor((clock() - t0) * fps)), n - 1)
        start = clock() - t0
        dets = detector_fn(frames[target])
        end = clock() - t0
        measured.append(end - start)
        outputs.append(StreamOutput(end, target, dets))
        runs.append(RunRecord("detector", config, target, start, end))
        last = target
    return SimResult(tuple(outputs), tuple(runs), n, fps)
