"""Streaming-perception experiments (paper 004, Tables 3-7; ``edgerl experiment streaming-...``).

* ``streaming-table3`` (Table 3): on held-out test videos, the bandit trained with R2
  (``bandit``) and with R1 (``bandit_r1``) vs the static expert (the best single configuration
  on the training videos, Streamer pipeline), Streamer at the analogues of its two published
  scales, the AdaScale-style dynamic-offline policy (modified shrinking tail, and idle-free as in
  AdaScale itself) and a random policy. sAP, sAP50, sAP75, sAP small / medium / large, mean over
  seeds and the spread across seeds. Also measured: context computation time as a share of the
  detector time at the test decision rate, the time to evaluate sAP on a 900-frame stream, and
  (``oracle``) the switching oracles of :func:`oracle_saps`: how far above the best single
  configuration any configuration-switching policy could get on these test videos.
* ``streaming-resilience`` (the analogue of Tables 4-5): the same methods on other platforms (a
  slower one, and one where a co-running job slows some runs): a bandit and a static expert
  chosen on each platform, and the nominal platform's bandit and static expert carried over
  unchanged (``@PLATFORM`` suffixes).
* ``streaming-tracking`` (Table 6): the tracker-stride dimension added; bandits with and without
  it vs the static expert without a tracker and with a fixed stride.
* ``streaming-switching`` (Table 7): the model dimension added; Streamer with each model, the
  static expert over the larger grid, and bandits with and without the switchability slots of
  the context, with no switching cost and with a cost per model change.

Streamer's published scales are 600 and 900 pixels on Argoverse-HD's 1200-pixel short side,
i.e. 0.5x and 0.75x native; at 720 native that is 360 and 540, so the defaults are 360 and the
nearest grid scale to 540 (560), each with top-k 1000 (Faster R-CNN's default proposal count).

Every method sees the same test videos and, for a given seed, the same runtime draws
(generator ``(seed, 7, video index)``); with ``train.common_runtime_draws`` (on in the paper
preset) these are common random numbers keyed by frame and configuration
(:class:`~edgerl.streaming.simulator.KeyedDraws`), so two methods that run the same
configuration on the same frame see the same runtime even after their schedules have parted.
Learned methods get the same training videos and epochs. By default the bandits' R2 measures the advantage over the static expert
(``r2_fixed_policy``), and the greedy test policy deviates from that fixed policy only where
the predicted advantage exceeds a threshold chosen on held-out training videos (conservative
deviation, ``train.deviation_thresholds``; :class:`~edgerl.streaming.policies.BanditPolicy`).

Paper preset: 20 training videos cut into scenes of 30-75 frames
(``train.data.train_scene_frames``; the test videos keep 60-150); the last 8 are held out of
learning (``train.val_videos``) and pick the bandit's epoch among epochs 5-10
(``train.select_from_epoch``) and then the deviation threshold, each validation run with two
runtime draws per video (``train.val_repeats``); R2's fixed run uses the bandit's runtime draws
(``train.r2_common_draws``); validation and test runtimes are common random numbers
(``train.common_runtime_draws``); the static expert is chosen on all 20 training videos; the
test videos start at seed 4,000,000 (``train.data.test_seed_start``), seeds never read while
any setting was chosen. Every setting of the preset was chosen on held-out training videos; no
choice reads the test videos, except the ``oracle`` diagnostic. Results go to ``NAME.csv`` (per
method, seed and video, plus pooled rows), ``NAME.png`` (sAP per method and the configurations
the bandit picks over time on the first test video) and ``summary.json``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from edgerl.streaming.configs import ConfigGrid, StreamConfig
from edgerl.streaming.data import StreamDataset, StreamVideo
from edgerl.streaming.policies import (
    AdaScalePolicy,
    BanditPolicy,
    RandomPolicy,
    StaticPolicy,
    StreamPolicy,
    SwitchingRuntimes,
    choose_static_expert,
    fit_context_models,
    streamer,
)
from edgerl.streaming.sap import SAP_KEYS, StreamOutput, streaming_ap
from edgerl.streaming.simulator import SimResult
from edgerl.streaming.train import (
    StreamSetup,
    StreamTrainConfig,
    chosen_threshold,
    context_overhead,
    evaluate_policy,
    fixed_config,
    train_bandit,
)
from edgerl.utils.config import Config, config_from_dict
from edgerl.utils.errors import InputError
from edgerl.utils.io import write_csv
from edgerl.utils.plots import pyplot as _plt
from edgerl.utils.plots import save_figure as _save_fig
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything

__all__ = [
    "EXPERIMENTS",
    "PRESETS",
    "Platform",
    "StreamExperimentConfig",
    "make_config",
    "oracle_saps",
    "run_experiment",
]

EXPERIMENTS = ("streaming-table3", "streaming-resilience", "streaming-tracking", "streaming-switching")


class Platform(Config):
    """A machine the policies run on, relative to the one the runtimes were measured on."""

    name: str
    """Label used in method keys (METHOD@NAME)."""

    speed_factor_mult: float = Field(1.0, gt=0)
    """Multiplies the experiment's speed_factor (0.5: a platform twice as slow)."""

    slowdowns: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    """Contention: runtime multipliers, each sample repeated once per factor."""


def _platforms() -> list[Platform]:
    return [
        Platform(name="nominal"),
        Platform(name="slow2x", speed_factor_mult=0.5),
        Platform(name="contention", slowdowns=[1.0, 1.0, 1.5, 2.5]),
    ]


class StreamExperimentConfig(Config):
    """Settings of the streaming experiments (one preset = one instance)."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    """Seeds: each learned method trains once per seed; each method is evaluated per seed."""

    train: StreamTrainConfig = Field(default_factory=StreamTrainConfig)
    """Data, grid, platform and bandit training settings (its seed is replaced per run)."""

    rewards: list[Literal["r1", "r2"]] = Field(default_factory=lambda: ["r2", "r1"], min_length=1)
    """Rewards of the table-3 bandits: 'r2' -> method 'bandit', 'r1' -> 'bandit_r1'."""

    streamer_scales: list[int] = Field(default_factory=lambda: [360, 560], min_length=1)
    """Scales of the Streamer baselines (nearest grid scale is used)."""

    streamer_topk: int = Field(1000, ge=1)
    """Top-k of Streamer and AdaScale (nearest grid value is used)."""

    platforms: list[Platform] = Field(default_factory=_platforms, min_length=1)
    """Platforms of streaming-resilience; the first is the nominal one."""

    tracking_strides: list[int] = Field(default_factory=lambda: [1, 3, 5, 10, 15, 30], min_length=2)
    """Tracker strides of streaming-tracking."""

    tracking_static_stride: int = Field(5, ge=1)
    """Stride of the static tracking baseline (the paper's k = 5)."""

    switching_models: list[str] = Field(default_factory=lambda: ["person_n", "person_s", "person_m"], min_length=2)
    """Models of streaming-switching."""

    switching_scales: list[int] | None = Field(default_factory=lambda: [640, 480, 360])
    """Scales of streaming-switching (None: the train grid's); trimmed by default because every
    (model, scale) pair costs a detector pass over every video."""

    switch_costs_ms: list[float] = Field(default_factory=lambda: [0.0, 100.0], min_length=1)
    """Costs of a model change (ms of simulated time) in streaming-switching."""

    r2_fixed_policy: Literal["config", "static_expert"] = "static_expert"
    """Fixed policy of the R2 reward: 'config' (train.fixed_config, by default the paper's
    (480, 300)) or 'static_expert' (the experiment's static expert, chosen on the training
    videos): R2 then is the advantage over the policy the bandit has to beat."""

    oracle: bool = True
    """streaming-table3: also report the switching oracles of :func:`oracle_saps` on the test
    videos (first seed; a diagnostic of the headroom over one configuration, not a method)."""


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0],
        "rewards": ["r2"],
        "train": {
            "data": {
                "width_px": 640, "height_px": 360, "n_frames": 60,
                "train_frames": None, "n_train_videos": 1, "n_test_videos": 1, "nms_timing_frames": 3,
            },
            "grid": {"models": ["person_n"], "scales": [360, 256], "topks": [100, 300], "strides": [1]},
            "epochs": 2,
            "updates_per_video": 4,
            "decide_prob": 0.3,
            "context_every_frames": 10,
            "bandit": {"hidden_sizes": [32, 32], "buffer_size": 64, "batch_size": 8, "learning_starts": 4},
        },
        "streamer_scales": [256],
        "platforms": [{"name": "nominal"}, {"name": "slow2x", "speed_factor_mult": 0.5}],
        "tracking_strides": [1, 5],
        "switching_models": ["person_n", "person_s"],
        "switching_scales": None,
        "switch_costs_ms": [0.0, 100.0],
    },
    "paper": {
        "train": {
            "val_videos": 8,
            "val_repeats": 2,
            "select_from_epoch": 5,
            "r2_common_draws": True,
            "common_runtime_draws": True,
            "deviation_thresholds": [-math.inf, 0.0, 0.02, 0.05, 0.1, 0.2, 0.5, math.inf],
            "data": {"train_scene_frames": [30, 75], "n_train_videos": 20, "test_seed_start": 4_000_000},
        },
    },
}


def make_config(preset: str) -> StreamExperimentConfig:
    """The experiment config of a preset (``quick`` or ``paper``)."""
    if preset not in PRESETS:
        raise InputError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    return config_from_dict(StreamExperimentConfig, PRESETS[preset], f"preset {preset}")


# --------------------------------------------------------------------------- helpers


def _spread(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, np.float64)
    a = a[~np.isnan(a)]
    return (float(a.mean()), float(a.std())) if a.size else (math.nan, math.nan)


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """Mean over seeds of each metric, the spread of sAP and the per-seed sAPs."""
    out: dict[str, Any] = {}
    for key in list(SAP_KEYS) + ["n_missed_frames", "detector_runs"]:
        out[key], std = _spread([m[key] for m in per_seed])
        if key == "sap":
            out["sap_std_over_seeds"] = std
    out["sap_per_seed"] = [m["sap"] for m in per_seed]
    return out


def _sub_setup(setup: StreamSetup, grid: ConfigGrid, train: StreamTrainConfig, speed_factor: float | None = None, slowdowns: list[float] | None = None) -> StreamSetup:
    """The same videos and context models on another grid or platform."""
    sf = train.speed_factor if speed_factor is None else speed_factor
    runtimes = setup.dataset.runtime_profile(grid, sf, slowdowns or train.slowdowns)
    if train.switch_cost_ms > 0:
        runtimes = SwitchingRuntimes(runtimes, train.switch_cost_ms / 1e3)
    return StreamSetup(setup.dataset, grid, runtimes, setup.models, setup.context_data, train.common_runtime_draws)


def _base_setup(dataset: StreamDataset, grid: ConfigGrid, train: StreamTrainConfig, models: Any, context_data: dict[str, Any]) -> StreamSetup:
    """The experiment's setup on the nominal platform: runtimes of ``grid`` (with the switching
    cost of ``train``) and ``train.common_runtime_draws`` for every test run."""
    base = StreamSetup(dataset, grid, dataset.runtime_profile(grid, train.speed_factor, train.slowdowns), models, context_data, train.common_runtime_draws)
    if train.switch_cost_ms > 0:
        base = _sub_setup(base, grid, train)
    return base


def _time_sap_900(video: StreamVideo, result: SimResult, n: int = 900) -> float:
    """Seconds to evaluate sAP on an ``n``-frame stream made by repeating one video's run."""
    reps = math.ceil(n / video.n_frames)
    gts = [video.gts[i % video.n_frames] for i in range(n)]
    outs = []
    dt = video.n_frames / video.fps
    for r in range(reps):
        for o in result.outputs:
            t = o.time_s + r * dt
            f = o.frame_index + r * video.n_frames
            if f < n:
                outs.append(StreamOutput(t, f, o.detections))
    t0 = time.perf_counter()
    streaming_ap(gts, outs, fps=video.fps)
    return time.perf_counter() - t0


def oracle_saps(setup: StreamSetup, seed: int, forecast: bool = True, tracker_scale_px: float = 480.0, segment_frames: int = 20) -> dict[str, Any]:
    """Upper bounds of a configuration-switching policy on the test videos (a diagnostic that
    reads the test ground truth; no method uses it).

    Every grid configuration runs as a static policy on every test video (runtime draws
    ``(seed, 7, video index)``, as for the methods). Each frame's prediction is the output
    that configuration's stream shows at that frame (zero-order hold). The oracles then stitch,
    per piece of video, the frames of the configuration with the best AP on that piece and
    score all frames in one COCO evaluation:

    * ``per_video``: one configuration per test video;
    * ``per_scene``: one per scene of :func:`~edgerl.streaming.data.video_schedule` (what a
      policy that recognises each scene at once could reach);
    * ``per_segment``: one per ``segment_frames`` frames (the test decision interval); the
      choice on such short pieces also fits noise, so this one is optimistic.

    Switching costs nothing here (each stitched piece comes from a stream that ran that
    configuration from the start), so all three are upper bounds.

    Returns:
        ``best_static_on_test`` (name and sAP of the best single configuration on the test
        videos) and the sAP of each oracle.
    """
    from edgerl.streaming.data import video_schedule
    from edgerl.streaming.sap import coco_ap, match_outputs
    from edgerl.vision.detections import Detections

    vids, names = setup.test, setup.grid.names()
    empty = Detections.empty()
    shown: dict[str, list[list[Detections]]] = {}
    pooled: dict[str, float] = {}
    for n in names:
        _, results, _ = evaluate_policy(setup, lambda n=n: StaticPolicy(n, forecast=forecast), seed, tracker_scale_px=tracker_scale_px)
        per_video = []
        gts_all, preds_all = [], []
        for v, r in zip(vids, results):
            idx = match_outputs(np.asarray([o.time_s for o in r.outputs], np.float64), v.n_frames, v.fps)
            per_video.append([r.outputs[j].detections if j >= 0 else empty for j in idx.tolist()])
            gts_all += v.gts
            preds_all += per_video[-1]
        shown[n] = per_video
        pooled[n] = coco_ap(gts_all, preds_all)["map50_95"]
    best = max(names, key=lambda n: pooled[n])

    def stitch(pieces: Callable[[StreamVideo], list[tuple[int, int]]]) -> float:
        gts, preds = [], []
        for j, v in enumerate(vids):
            for a, b in pieces(v):
                g = v.gts[a:b]
                ap = {n: coco_ap(g, shown[n][j][a:b])["map50_95"] for n in names}
                pick = max(names, key=lambda n: -1.0 if math.isnan(ap[n]) else ap[n])
                gts += g
                preds += shown[pick][j][a:b]
        return float(coco_ap(gts, preds)["map50_95"])

    cfg = setup.dataset.cfg
    step = int(segment_frames)
    return {
        "best_static_on_test": {"config": best, "sap": float(pooled[best])},
        "per_video": stitch(lambda v: [(0, v.n_frames)]),
        "per_scene": stitch(lambda v: [(s.start_frame, s.start_frame + s.n_frames) for s in video_schedule(cfg, v.seed, v.n_frames)]),
        "per_segment": stitch(lambda v: [(a, min(a + step, v.n_frames)) for a in range(0, v.n_frames, step)]),
        "segment_frames": step,
    }


class _Runner:
    """Evaluates methods per seed on one setup and collects rows and per-seed metrics."""

    def __init__(self, rows: list[dict[str, Any]], say: Callable[[str], None]) -> None:
        self.rows = rows
        self.say = say
        self.per_seed: dict[str, list[dict[str, float]]] = {}
        self.results: dict[tuple[str, int], list[SimResult]] = {}

    def run(self, method: str, setup: StreamSetup, make_policy: Callable[[], StreamPolicy], seed: int, tracker_scale_px: float) -> tuple[dict[str, float], StreamPolicy]:
        metrics, results, policy = evaluate_policy(setup, make_policy, seed, tracker_scale_px=tracker_scale_px)
        self.per_seed.setdefault(method, []).append(metrics)
        self.results[(method, seed)] = results
        for v, r in zip(setup.test, results):
            sap = r.evaluate(v.gts)
            self.rows.append({"method": method, "seed": seed, "video": v.name, "sap": sap["sap"], "sap50": sap["sap50"], "sap75": sap["sap75"], "detector_runs": len(r.detector_runs), "configs_used": len(set(r.configs))})
        self.rows.append({"method": method, "seed": seed, "video": "all", **{k: metrics[k] for k in SAP_KEYS}, "detector_runs": metrics["detector_runs"]})
        self.say(f"  {method:32s} seed {seed}: sAP {metrics['sap']:.4f}")
        return metrics, policy

    def methods(self) -> dict[str, dict[str, Any]]:
        return {m: _aggregate(v) for m, v in self.per_seed.items()}


def _bandit_factory(
    bandit: Any,
    setup: StreamSetup,
    train: StreamTrainConfig,
    use_sw: bool,
    box: dict[str, Any],
    rows: list[dict[str, Any]] | None = None,
    fixed: StreamConfig | None = None,
) -> Callable[[], StreamPolicy]:
    """Greedy test policy of a trained bandit; with ``train.deviation_thresholds``, conservative
    deviation from ``fixed`` with the threshold picked in the training ``rows`` (without, the
    threshold is -inf: the plain greedy policy, which still counts its departures from
    ``fixed``)."""
    tau = chosen_threshold(rows or []) if train.deviation_thresholds is not None else -math.inf

    def make() -> StreamPolicy:
        box["policy"] = BanditPolicy(
            bandit, setup.grid, setup.models, explore=False,
            interval_frames=train.test_interval_frames, use_switchability=use_sw,
            forecast=train.forecast, fixed=fixed, deviation_threshold=tau,
        )  # fmt: skip
        box["threshold"] = tau
        return box["policy"]

    return make


# --------------------------------------------------------------------------- figures




def _plot(methods: dict[str, dict[str, Any]], timelines: dict[str, SimResult], grid: ConfigGrid, path: Path, title: str) -> None:
    """sAP per method (mean and spread over seeds) and the configurations over time."""
    plt = _plt()
    n_t = len(timelines)
    fig, axes = plt.subplots(1 + n_t, 1, figsize=(9, 3.2 + 2.6 * n_t), squeeze=False)
    ax = axes[0, 0]
    names = list(methods)
    ax.bar(range(len(names)), [methods[n]["sap"] for n in names], yerr=[methods[n].get("sap_std_over_seeds", 0.0) for n in names], capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("sAP (AP[.5:.95])")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    topks = sorted(grid.topks)
    for k, (label, res) in enumerate(timelines.items()):
        ax = axes[1 + k, 0]
        runs = res.detector_runs
        cfgs = [StreamConfig.parse(r.config) for r in runs]
        t = [r.start_s for r in runs]
        sc = ax.scatter(t, [c.scale for c in cfgs], c=[topks.index(c.topk) if c.topk in topks else 0 for c in cfgs], cmap="viridis", s=10, vmin=0, vmax=max(1, len(topks) - 1))
        ax.step(t, [c.scale for c in cfgs], where="post", color="0.7", lw=0.8, zorder=0)
        for x, c in zip(t, cfgs):
            if len(grid.models) > 1 or len(grid.strides) > 1:
                ax.annotate(f"{c.model.replace('person_', '')}/{c.stride}", (x, c.scale), fontsize=4, alpha=0.6)
        ax.set_ylabel("scale (px)")
        ax.set_xlabel("stream time (s)")
        ax.set_title(f"configurations over time: {label}", fontsize=9)
        cb = fig.colorbar(sc, ax=ax, ticks=range(len(topks)))
        cb.ax.set_yticklabels([str(v) for v in topks])
        cb.set_label("top-k")
    _save_fig(fig, path)


# --------------------------------------------------------------------------- experiments


def _static_methods(run: _Runner, setup: StreamSetup, cfg: StreamExperimentConfig, expert: StreamConfig, seed: int, suffix: str = "") -> None:
    train = cfg.train
    ts = train.tracker_scale_px
    grid = setup.grid
    run.run("static_expert" + suffix, setup, lambda: StaticPolicy(expert, forecast=train.forecast), seed, ts)
    seen = set()
    for sc in cfg.streamer_scales:
        c = grid.nearest(model=expert.model, scale=sc, topk=cfg.streamer_topk, stride=1)
        if c.name in seen:
            continue
        seen.add(c.name)
        run.run(f"streamer_s{c.scale}" + suffix, setup, lambda c=c: streamer(c), seed, ts)


def _table3(cfg: StreamExperimentConfig, setup: StreamSetup, run: _Runner, extra: dict[str, Any]) -> dict[str, SimResult]:
    train = cfg.train
    grid = setup.grid
    ts = train.tracker_scale_px
    run.say("choosing the static expert on the training videos")
    expert, table = choose_static_expert(setup.train, grid, setup.runtimes, cfg.seeds[0], train.forecast, ts)
    extra["static_expert_config"] = expert.name
    extra["static_expert_train_sap"] = table
    k_ada = grid.nearest(scale=None, topk=cfg.streamer_topk).topk
    overhead: list[dict[str, float]] = []
    timelines: dict[str, SimResult] = {}
    for seed in cfg.seeds:
        for reward in cfg.rewards:
            name = "bandit" if reward == "r2" else f"bandit_{reward}"
            run.say(f"training {name} seed {seed}")
            tcfg = _r2_train(cfg, train, expert, reward=reward)
            bandit, rows = train_bandit(setup, tcfg, seed=seed)
            for r in rows:
                run.rows.append({"method": name, "phase": "train", **r})
            box: dict[str, Any] = {}
            run.run(name, setup, _bandit_factory(bandit, setup, tcfg, train.use_switchability, box, rows, fixed_config(tcfg, grid)), seed, ts)
            extra.setdefault(f"{name}_deviation_threshold_per_seed", []).append(box["threshold"])
            extra.setdefault(f"{name}_deviating_decisions_per_seed", []).append([box["policy"].n_deviations, box["policy"].n_decisions])
            if reward == cfg.rewards[0]:
                overhead.append(context_overhead(setup, box["policy"], run.results[(name, seed)]))
                if seed == cfg.seeds[0]:
                    timelines[name] = run.results[(name, seed)][0]
        _static_methods(run, setup, cfg, expert, seed)
        for sched in ("modified_shrinking_tail", "idle_free"):
            name = "adascale" if sched != "idle_free" else "adascale_idle_free"
            run.run(name, setup, lambda sched=sched: AdaScalePolicy(setup.models, grid, grid.models[0], k_ada, 1, sched, train.forecast), seed, ts)
        run.run("random", setup, lambda seed=seed: RandomPolicy(grid, np.random.default_rng([seed, 5]), train.test_interval_frames, train.forecast), seed, ts)
    if overhead:
        for key in overhead[0]:
            extra[key] = float(np.mean([o[key] for o in overhead]))
    if cfg.oracle:
        run.say("oracles on the test videos (diagnostic)")
        extra["oracle"] = oracle_saps(setup, cfg.seeds[0], train.forecast, ts, train.test_interval_frames)
    first = setup.test[0]
    extra["sap_eval_s_900_frames"] = _time_sap_900(first, run.results[("static_expert", cfg.seeds[0])][0])
    timelines["static_expert"] = run.results[("static_expert", cfg.seeds[0])][0]
    return timelines


def _resilience(cfg: StreamExperimentConfig, setup: StreamSetup, run: _Runner, extra: dict[str, Any]) -> dict[str, SimResult]:
    train = cfg.train
    ts = train.tracker_scale_px
    nominal = cfg.platforms[0]
    setups = {
        p.name: _sub_setup(setup, setup.grid, train, train.speed_factor * p.speed_factor_mult, p.slowdowns)
        for p in cfg.platforms
    }
    experts = {}
    for p in cfg.platforms:
        run.say(f"choosing the static expert on platform {p.name}")
        experts[p.name], _ = choose_static_expert(setup.train, setup.grid, setups[p.name].runtimes, cfg.seeds[0], train.forecast, ts)
    extra["static_expert_config"] = {k: v.name for k, v in experts.items()}
    extra["platforms"] = [p.model_dump() for p in cfg.platforms]
    timelines: dict[str, SimResult] = {}
    for seed in cfg.seeds:
        bandits = {}
        for p in cfg.platforms:
            run.say(f"training the bandit on platform {p.name}, seed {seed}")
            bandits[p.name] = train_bandit(setups[p.name], _r2_train(cfg, train, experts[p.name]), seed=seed)
        for p in cfg.platforms:
            sp = setups[p.name]
            sfx = f"@{p.name}"
            b, b_rows = bandits[p.name]
            run.run("bandit" + sfx, sp, _bandit_factory(b, sp, train, train.use_switchability, {}, b_rows, _fixed_of(cfg, train, experts[p.name], sp.grid)), seed, ts)
            _static_methods(run, sp, cfg, experts[p.name], seed, sfx)
            if p.name != nominal.name:
                b, b_rows = bandits[nominal.name]
                run.run("bandit_nominal" + sfx, sp, _bandit_factory(b, sp, train, train.use_switchability, {}, b_rows, _fixed_of(cfg, train, experts[nominal.name], sp.grid)), seed, ts)
                e = experts[nominal.name]
                run.run("static_expert_nominal" + sfx, sp, lambda e=e: StaticPolicy(e, forecast=train.forecast), seed, ts)
            if seed == cfg.seeds[0]:
                timelines["bandit" + sfx] = run.results[("bandit" + sfx, seed)][0]
    return timelines


def _tracking(cfg: StreamExperimentConfig, setup: StreamSetup, run: _Runner, extra: dict[str, Any]) -> dict[str, SimResult]:
    train = cfg.train
    ts = train.tracker_scale_px
    base = setup.grid.model_copy(update={"strides": [1]})
    full = setup.grid.model_copy(update={"strides": sorted(set(cfg.tracking_strides))})
    s_base = _sub_setup(setup, base, train)
    s_full = _sub_setup(setup, full, train)
    run.say("choosing the static expert (no tracker) on the training videos")
    expert, _ = choose_static_expert(setup.train, base, s_base.runtimes, cfg.seeds[0], train.forecast, ts)
    k = full.nearest(stride=cfg.tracking_static_stride).stride
    tracked = StreamConfig(expert.model, expert.scale, expert.topk, k)
    extra["static_expert_config"] = expert.name
    extra["static_tracker_config"] = tracked.name
    extra["grid_size_with_tracker"] = len(full)
    timelines: dict[str, SimResult] = {}
    for seed in cfg.seeds:
        run.run("static_expert", s_full, lambda: StaticPolicy(expert, forecast=train.forecast), seed, ts)
        run.run(f"static_expert_k{k}", s_full, lambda: StaticPolicy(tracked, forecast=train.forecast), seed, ts)
        for name, s in (("bandit_no_tracker", s_base), ("bandit_tracker", s_full)):
            run.say(f"training {name} seed {seed}")
            bandit, b_rows = train_bandit(s, _r2_train(cfg, train, expert), seed=seed)
            run.run(name, s, _bandit_factory(bandit, s, train, train.use_switchability, {}, b_rows, _fixed_of(cfg, train, expert, s.grid)), seed, ts)
            if seed == cfg.seeds[0]:
                timelines[name] = run.results[(name, seed)][0]
    return timelines


def _r2_train(cfg: StreamExperimentConfig, train: StreamTrainConfig, expert: StreamConfig, **update: Any) -> StreamTrainConfig:
    """``train`` with ``update`` and, with ``r2_fixed_policy: static_expert``, R2's fixed policy set
    to the static expert."""
    if cfg.r2_fixed_policy == "static_expert":
        update["fixed_config"] = expert.name
    return train.model_copy(update=update)


def _fixed_of(cfg: StreamExperimentConfig, train: StreamTrainConfig, expert: StreamConfig, grid: ConfigGrid) -> StreamConfig:
    """R2's fixed policy of a bandit trained with :func:`_r2_train` (the one it deviates from)."""
    return fixed_config(_r2_train(cfg, train, expert), grid)


def _model_changes(result: SimResult) -> int:
    models = [StreamConfig.parse(c).model for c in result.configs]
    return sum(a != b for a, b in zip(models, models[1:]))


def _switching(cfg: StreamExperimentConfig, setup: StreamSetup, run: _Runner, extra: dict[str, Any]) -> dict[str, SimResult]:
    train = cfg.train
    ts = train.tracker_scale_px
    grid = setup.grid
    run.say("choosing the static expert over models x scales x top-k")
    expert, _ = choose_static_expert(setup.train, grid, setup.runtimes, cfg.seeds[0], train.forecast, ts)
    extra["static_expert_config"] = expert.name
    extra["switchability_classes_train"] = np.bincount(np.asarray(setup.context_data.get("switch_y", []), np.int64), minlength=3).tolist()
    timelines: dict[str, SimResult] = {}
    costs = sorted(set(cfg.switch_costs_ms))
    for seed in cfg.seeds:
        for m in grid.models:
            c = grid.nearest(model=m, scale=cfg.streamer_scales[0], topk=cfg.streamer_topk, stride=1)
            run.run(f"streamer_{Path(m).stem}", setup, lambda c=c: streamer(c), seed, ts)
        run.run("static_expert", setup, lambda: StaticPolicy(expert, forecast=train.forecast), seed, ts)
        for cost in costs:
            tcfg = _r2_train(cfg, train, expert, switch_cost_ms=float(cost))
            sc = _sub_setup(setup, grid, tcfg)
            sfx = "" if cost == 0 else f"@switch{cost:g}ms"
            for name, use_sw in (("bandit", True), ("bandit_no_switchability", False)):
                run.say(f"training {name}{sfx} seed {seed}")
                bandit, b_rows = train_bandit(sc, tcfg, seed=seed, use_switchability=use_sw)
                run.run(name + sfx, sc, _bandit_factory(bandit, sc, tcfg, use_sw, {}, b_rows, fixed_config(tcfg, sc.grid)), seed, ts)
                n_sw = sum(_model_changes(r) for r in run.results[(name + sfx, seed)])
                run.rows.append({"method": name + sfx, "seed": seed, "video": "test_model_switches", "model_switches": n_sw})
                if seed == cfg.seeds[0] and use_sw:
                    timelines[name + sfx] = run.results[(name + sfx, seed)][0]
    return timelines


def run_experiment(
    name: str,
    out_dir: str | os.PathLike[str],
    preset: str = "quick",
    cfg: StreamExperimentConfig | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Run one streaming experiment; write ``NAME.csv``, ``NAME.png``, ``summary.json``.

    ``summary.json``: ``experiment``, ``preset``, ``seeds``, ``methods`` (``{METHOD: {sap,
    sap50, sap75, sap_small, sap_medium, sap_large, sap_std_over_seeds, sap_per_seed, ...}}``),
    plus the configurations chosen for the baselines, timings and (table 3) the context
    overhead and the sAP evaluation time of a 900-frame stream.

    Raises:
        InputError: Unknown experiment or preset, or invalid settings.
    """
    if name not in EXPERIMENTS:
        raise InputError(f"experiment {name!r}: expected one of {', '.join(EXPERIMENTS)}")
    if cfg is None:
        cfg = make_config(preset)
    seed_everything(cfg.seeds[0])
    out = Path(out_dir)
    rd = RunDir(out)
    rd.write_config(cfg)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg)

    train = cfg.train
    grid = train.grid
    if name == "streaming-tracking":
        grid = grid.model_copy(update={"strides": sorted(set(cfg.tracking_strides))})
    elif name == "streaming-switching":
        scales = cfg.switching_scales or grid.scales
        grid = grid.model_copy(update={"models": list(cfg.switching_models), "scales": list(scales)})
    dataset = StreamDataset(train.data, grid, console)
    data_s = dataset.build_s
    say(f"data ready in {data_s:.1f} s; fitting the context models")
    models, context_data = fit_context_models(dataset.train, grid, seed=cfg.seeds[0], every_frames=train.context_every_frames)
    base = _base_setup(dataset, grid, train, models, context_data)
    run = _Runner(rows, say)
    extra: dict[str, Any] = {}
    plot_grid = grid
    if name == "streaming-table3":
        timelines = _table3(cfg, base, run, extra)
    elif name == "streaming-resilience":
        timelines = _resilience(cfg, base, run, extra)
    elif name == "streaming-tracking":
        timelines = _tracking(cfg, base, run, extra)
    else:
        timelines = _switching(cfg, base, run, extra)
    methods = run.methods()
    if "bandit" in methods and "static_expert" in methods:
        extra["bandit_minus_static_expert_sap"] = methods["bandit"]["sap"] - methods["static_expert"]["sap"]
        extra["bandit_minus_static_expert_sap_per_seed"] = [
            b - e for b, e in zip(methods["bandit"]["sap_per_seed"], methods["static_expert"]["sap_per_seed"])
        ]
    write_csv(out / f"{name}.csv", rows)
    _plot(methods, timelines, plot_grid, out / f"{name}.png", f"{name} ({preset})")
    summary = {
        "experiment": name,
        "preset": preset,
        "seeds": list(cfg.seeds),
        "methods": methods,
        "grid_size": len(grid),
        "speed_factor": train.speed_factor,
        "r2_fixed_policy": cfg.r2_fixed_policy,
        "train_videos": [v.name for v in dataset.train],
        "test_videos": [v.name for v in dataset.test],
        "mean_runtime_frames": {c: dataset.mean_runtime_frames(c, train.speed_factor) for c in grid.names() if StreamConfig.parse(c).stride == 1},
        **extra,
        "data_s": data_s,
        "wall_s": time.perf_counter() - t0,
    }
    rd.write_summary(summary)
    if console is not None:
        _print_table(methods, console, name)
    return summary


def _print_table(methods: dict[str, dict[str, Any]], console: Any, title: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    cols = ["sap", "sap50", "sap75", "sap_small", "sap_medium", "sap_large", "sap_std_over_seeds"]
    t.add_column("method")
    for c in cols:
        t.add_column(c, justify="right")
    for n, row in methods.items():
        t.add_row(n, *[f"{100 * row.get(c, math.nan):.2f}" for c in cols])
    console.print(t)
