"""CERL training and experiments (paper 002, Figs. 4-7).

* :func:`train_cerl` (``edgerl train cerl``): one method, one seed, checkpoint + metrics.
* :func:`run_experiment` (``edgerl experiment cerl-...``):

  - ``cerl-convergence``: greedy evaluation cost vs training epochs for every N (Fig. 4);
  - ``cerl-scaling``: cost and collaboration count of the learned methods at one N (Fig. 6);
  - ``cerl-benchmarks``: cost and completion rate of CERL vs LC / EC / Random for every N
    (Fig. 7);
  - ``cerl-utilisation``: remaining compute share of every node in a few slots of one episode,
    with the agent before training (its initial network) and after (Fig. 5);
  - ``cerl-optimality``: every method's optimality gap on tiny instances, against the exact
    minimum cost of :func:`~edgerl.cerl.exact.exact_min_cost` (not in the paper). By default
    (``tiny_mode='tasks_at_start'``) every task of an instance is present from its first slot
    and none arrives later, so the exact minimum is also the best an online policy can do; an
    instance is one of ``tiny_topologies`` topologies with one set of 1-2 tasks, and each
    learned method trains as in the paper, on the instance's topology with random task sets
    (``tiny_protocols``; also reported: one agent trained across random topologies,
    ``METHOD@random``). ``tiny_mode='poisson'`` keeps the Poisson instances, whose exact
    minimum knows every future arrival, with exact re-planning without that knowledge
    (``replan``, :func:`~edgerl.cerl.exact.replanning_cost`) as a reference.

Every learned method gets the same budget: the same number of epochs, each of the same number
of environment transitions (CERL's elite actors + RL copies = the baselines' copies, and
CERL's steps per generation = their steps per epoch), the same Q-network, optimiser, replay and
exploration settings, the same training seed and the same held-out evaluation episodes.
An epoch is one CERL generation.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from edgerl.cerl.baselines import evaluate_policy, make_baseline
from edgerl.cerl.env import CerlConfig, CerlEnv
from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.utils.io import write_csv
from edgerl.utils.plots import pyplot as _plt
from edgerl.utils.plots import save_figure as _save_fig
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything

__all__ = [
    "EVAL_SEED",
    "EXPERIMENTS",
    "LEARNED",
    "PRESETS",
    "CerlExperimentConfig",
    "CerlTrainConfig",
    "TinyInstance",
    "make_agent",
    "run_experiment",
    "tiny_instances",
    "train_cerl",
]

LEARNED = ("cerl", "d2qn", "ddqn")
"""Learned methods, in the paper's order."""

EXPERIMENTS = (
    "cerl-convergence",
    "cerl-scaling",
    "cerl-benchmarks",
    "cerl-utilisation",
    "cerl-optimality",
)

EVAL_SEED = 100_000
"""First seed of the evaluation episodes (training copies use seeds below 10,000)."""

Method = Literal["cerl", "d2qn", "ddqn"]

DEFAULT_AGENT: dict[str, Any] = {
    "progress_shaping": 10.0,
    "gamma": 0.95,
    "reward_scale": 0.1,
    "loss": "huber",
    "n_step": 3,
    "select_every": 5,
    "select_episodes": 5,
}
"""Settings every learned method trains with unless a config says otherwise: potential-based
progress shaping (the failure penalty P = 10 spread over the layers as they are finished) and
a discount long enough to see a 3 s deadline (12 slots). At N = 10 after 60 epochs these took
DDQN from a greedy cost worse than all-local to slightly better (30.1 vs 34.9).
Rewards scaled by 0.1 with a Huber loss: one task costs from ~1 (a device near
r* = 0.23 GHz) to ~600 (the whole model at 100 % of the 10 GHz server, eq. (4)), so random
exploration fills the replay with rewards whose squared errors (TD loss ~1e3-1e4 with MSE)
drown the differences of ~1 that separate good plans (with MSE the TD loss was still ~2e3
after 200 tiny epochs). On the tiny instances (cerl-optimality, 10 instances, 200 epochs,
DDQN, seed 0) the optimality gap went from 0.83 to 0.74 (one seed: a modest gain; measured
against the exact search before a memo fix that lowered the total optimum of the 20 tiny
instances by 3.4 %).
Three-step returns (``n_step = 3``, Rainbow's choice): on the tasks-at-start instances of
cerl-optimality (27 instances, DDQN, seed 0, 100 epochs, trained per topology) the gap went
from 1.84 (one-step) to 0.51; n_step = 5 gave the very same run (tiny episodes last 3 slots,
so 3 steps already sum the whole return). Trained across random topologies instead, the same
change went from 0.42 to 4.35 on that seed (failed tasks on two topologies): one seed of a
noisy comparison, see the note of issue 5.
Deployment by validation (``select_every = 5``, ``select_episodes = 5``; see
:attr:`~edgerl.cerl.dqn.GcnDqnConfig.select_every`): every method acts, after training, with
its network of lowest cost on 5 validation episodes among the checks every 5 epochs and at the
end. The greedy policy after the last update swings widely from one update to the next (CERL,
N = 10, seed 1, 40 epochs, test cost and completion after the last update / with the validated
network: 39.5 (56 %) / 20.6 (85 %); with CerlAgentConfig.var_max 27.4 (81 %) / 18.8 (89 %)).
The evaluations of cerl-convergence during training then show the network deployed so far."""


class CerlTrainConfig(Config):
    """One training run of a learned method (``edgerl train cerl``)."""

    method: Method = "cerl"
    """Which agent: 'cerl', 'd2qn' or 'ddqn'."""

    seed: int = Field(0, ge=0)
    """Seeds the network, the exploration and the training environment copies."""

    epochs: int = Field(200, ge=1)
    """Training epochs (CERL generations; the baselines' epochs have as many transitions)."""

    eval_every: int = Field(0, ge=0)
    """Greedy evaluation every this many epochs (0: only at the end)."""

    eval_episodes: int = Field(10, ge=1)
    """Held-out episodes of each evaluation (seeds EVAL_SEED, EVAL_SEED + 1, ...)."""

    env: CerlConfig = CerlConfig()
    """The environment (paper 002, section 5.1 defaults)."""

    torch_threads: int = Field(1, ge=0)
    """Intra-op threads of torch (0: torch's default). The batches are small: on 2 busy cores
    one thread ran a tiny-instance DDQN epoch ~10x faster than two."""

    agent: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_AGENT))
    """Agent settings: fields of CerlAgentConfig; those shared with DDQN / D2QN (learning rate,
    replay, batch, network, exploration, ...) apply to every method, so a comparison keeps one
    tuning; CERL-only fields (population, CEM) are dropped for the baselines. Fields not given
    take DEFAULT_AGENT, then the agent's own defaults."""

    @field_validator("agent")
    @classmethod
    def _agent_defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _with_defaults(value)


def _set_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(int(n))


def _with_defaults(agent: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_AGENT, **dict(agent)}


def make_agent(method: str, env: CerlConfig, agent: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """Build a learned agent with the shared settings and the equal-budget layout.

    Args:
        method: 'cerl', 'd2qn' or 'ddqn'.
        env: Environment config.
        agent: CerlAgentConfig fields (see :class:`CerlTrainConfig.agent`).
        seed: Agent seed.

    Raises:
        InputError: On an unknown method or a bad agent field.
    """
    from edgerl.cerl.agent import CerlAgent, CerlAgentConfig
    from edgerl.cerl.dqn import D2QNAgent, D2QNConfig, DDQNAgent, DDQNConfig
    from edgerl.utils.config import config_from_dict

    full = config_from_dict(CerlAgentConfig, dict(agent or {}), "agent")
    if method == "cerl":
        return CerlAgent(env, full, seed=seed)
    if method not in ("d2qn", "ddqn"):
        raise InputError(f"method: {method!r} is not one of {', '.join(LEARNED)}")
    cls, cfg_cls = (D2QNAgent, D2QNConfig) if method == "d2qn" else (DDQNAgent, DDQNConfig)
    shared = {k: v for k, v in full.model_dump().items() if k in cfg_cls.model_fields}
    extra = {k: v for k, v in dict(agent or {}).items() if k in cfg_cls.model_fields and k not in shared}
    shared.update(extra)
    shared["n_envs"] = full.elite_actors + full.rl_envs
    shared["steps_per_epoch"] = full.steps_per_generation
    return cls(env, cfg_cls(**shared), seed=seed)


def _run_epochs(agent: Any, epochs: int, callback: Any) -> None:
    from edgerl.cerl.agent import CerlAgent

    if isinstance(agent, CerlAgent):
        agent.learn(generations=epochs, callback=callback)
        return
    cfg = agent.config
    warm = max(cfg.learning_starts, cfg.batch_size, 1)
    done = [0]

    def cb(info: dict[str, float]) -> bool:
        done[0] += 1
        return callback(info) is not False and done[0] < epochs

    agent.learn(total_steps=warm + epochs * cfg.n_envs * cfg.steps_per_epoch, callback=cb)


def _evaluate(env: CerlConfig, policy: Any, episodes: int) -> dict[str, float]:
    return evaluate_policy(env, policy, episodes=episodes, seed=EVAL_SEED)


def _train_one(
    method: str,
    env: CerlConfig,
    agent_cfg: dict[str, Any],
    seed: int,
    epochs: int,
    eval_every: int,
    eval_episodes: int,
    log: Any = None,
) -> tuple[Any, list[dict[str, Any]], float]:
    """Train one method; returns the agent, per-epoch rows and the mean epoch time (s)."""
    agent = make_agent(method, env, agent_cfg, seed)
    rows: list[dict[str, Any]] = []
    epoch_s: list[float] = []
    last = [time.perf_counter()]

    def cb(info: dict[str, float]) -> bool:
        now = time.perf_counter()
        epoch_s.append(now - last[0])
        epoch = len(epoch_s)
        train_cost = info.get("episode_cost_mean", info.get("episode_cost_rl_mean", math.nan))
        row: dict[str, Any] = {
            "method": method,
            "n_devices": env.n_devices,
            "seed": seed,
            "epoch": epoch,
            "env_steps": int(info.get("env_steps", 0)),
            "train_episode_cost": float(train_cost),
            "loss_mean": float(info.get("loss_mean", math.nan)),
            "validation_cost": float(info.get("validation_cost", math.nan)),
            "epoch_s": now - last[0],
        }
        if eval_every and epoch % eval_every == 0 and epoch < epochs:
            ev = _evaluate(env, agent, eval_episodes)
            row.update(eval_cost=ev["cost_mean"], eval_completion_rate=ev["completion_rate"])
        rows.append(row)
        if log is not None:
            log(row)
        last[0] = time.perf_counter()
        return True

    _run_epochs(agent, epochs, cb)
    ev = _evaluate(env, agent, eval_episodes)
    if rows:
        rows[-1].update(eval_cost=ev["cost_mean"], eval_completion_rate=ev["completion_rate"])
    return agent, rows, float(np.mean(epoch_s)) if epoch_s else math.nan


def decision_time_ms(agent: Any, env: CerlConfig, n: int = 50, seed: int = EVAL_SEED) -> float:
    """Median wall time of one greedy decision (one ``act`` on one observation), in ms."""
    e = CerlEnv(config=env)
    obs, _ = e.reset(seed=seed)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        action = agent.act(obs, deterministic=True)
        times.append(time.perf_counter() - t)
        obs, _, term, trunc, _ = e.step(action)
        if term or trunc:
            obs, _ = e.reset(seed=seed + 1)
    return float(np.median(times) * 1e3)


def train_cerl(cfg: CerlTrainConfig, out_dir: str | os.PathLike[str], console: Any = None) -> dict[str, Any]:
    """Train one method, evaluate it and the fixed baselines on the same held-out episodes.

    Writes ``config.yaml``, ``metrics.csv`` (one row per epoch), ``agent.pt`` and
    ``summary.json`` (``methods``: the trained method and lc / ec / random, each with
    ``cost_mean``, ``completion_rate``, ``collaborations_mean``, ...; plus ``epoch_s_mean``
    and ``decision_ms``).
    """
    seed_everything(cfg.seed)
    _set_threads(cfg.torch_threads)
    rd = RunDir(out_dir)
    rd.write_config(cfg)
    t0 = time.perf_counter()

    def log(row: dict[str, Any]) -> None:
        rd.log(row)
        if console is not None and (row["epoch"] % 10 == 0 or row["epoch"] == cfg.epochs):
            console.print(
                f"epoch {row['epoch']}/{cfg.epochs}  train episode cost {row['train_episode_cost']:.2f}"
                + (f"  eval cost {row['eval_cost']:.2f}" if "eval_cost" in row else "")
            )

    agent, rows, epoch_s = _train_one(
        cfg.method, cfg.env, cfg.agent, cfg.seed, cfg.epochs, cfg.eval_every, cfg.eval_episodes, log
    )
    rd.flush()
    agent.save(Path(out_dir) / "agent.pt")
    methods = {cfg.method: _evaluate(cfg.env, agent, cfg.eval_episodes)}
    for name in ("lc", "ec", "random"):
        methods[name] = _evaluate(cfg.env, make_baseline(name, cfg.env, seed=cfg.seed), cfg.eval_episodes)
    summary = {
        "experiment": "train-cerl",
        "seeds": [cfg.seed],
        "n_devices": cfg.env.n_devices,
        "epochs": cfg.epochs,
        "epoch_s_mean": epoch_s,
        "decision_ms": decision_time_ms(agent, cfg.env),
        "train_s": time.perf_counter() - t0,
        "methods": methods,
    }
    rd.write_summary(summary)
    if console is not None:
        print_table(methods, console, f"CERL N={cfg.env.n_devices}, {len(rows)} epochs")
    return summary


# --------------------------------------------------------------------------- experiments


class CerlExperimentConfig(Config):
    """Settings of the CERL experiments (one preset = one instance)."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    """Training seeds; every method trains once per seed."""

    n_devices: list[int] = Field(default_factory=lambda: [5, 10, 20, 30, 50])
    """Numbers of edge devices (convergence and benchmarks)."""

    methods: list[Method] = Field(default_factory=lambda: list(LEARNED))
    """Learned methods compared."""

    epochs: int = Field(200, ge=1)
    """Training epochs per run (the paper's curves converge within 200)."""

    eval_every: int = Field(20, ge=0)
    """Evaluation period of the convergence curves, in epochs."""

    eval_episodes: int = Field(10, ge=1)
    """Held-out evaluation episodes."""

    scaling_n: int = Field(30, ge=1)
    """N of the cost / collaboration comparison (Fig. 6)."""

    utilisation_n: int = Field(20, ge=1)
    """N of the utilisation figure (Fig. 5)."""

    utilisation_slots: list[int] = Field(default_factory=lambda: [1, 2, 3])
    """Slots (1-based) shown in the utilisation figure."""

    env: dict[str, Any] = Field(default_factory=dict)
    """CerlConfig overrides applied to every N (n_devices is set per run)."""

    tiny_env: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_devices": 3,
            "max_tasks": 2,
            "share_levels_pct": [25, 50, 100],
            "n_subcarriers": 2,
            "slot_s": 1.0,
            "episode_slots": 3,
            "arrival_rate_per_s": 0.3,
            "drain_at_end": True,
        }
    )
    """The tiny instances of cerl-optimality (small enough for the exact search)."""

    tiny_mode: Literal["tasks_at_start", "poisson"] = "tasks_at_start"
    """Which tiny instances cerl-optimality solves. 'tasks_at_start' (default): tiny_env with
    no arrivals after the first slot (arrival_rate_per_s = 0, episode_slots = 1, drained),
    every task present from slot 0; an instance is one topology (device positions and
    capacities drawn from seed EVAL_SEED + k, k < tiny_topologies) with one task set, and every
    multiset of tiny_task_counts source devices is an instance. The episode is then a
    deterministic problem the policy sees in full from its first slot, so the exact minimum is
    also the best cost an online policy can reach. 'poisson': tiny_env as given (Poisson
    arrivals), instances = episode seeds EVAL_SEED + i (i < tiny_instances); the exact
    minimum knows every future arrival, so no online policy can reach it in general."""

    tiny_task_counts: tuple[int, int] = (1, 2)
    """Fewest and most tasks of an instance in 'tasks_at_start' mode (at most max_tasks)."""

    tiny_topologies: int = Field(3, ge=1)
    """Topologies of the 'tasks_at_start' instances (3 devices, 1-2 tasks: 9 task sets each)."""

    tiny_protocols: list[Literal["topology", "random"]] | None = None
    """How the learned methods are trained for the gap, first = the one reported under the
    method's name (others as METHOD@PROTOCOL). 'topology': as in the paper (one topology,
    random arrivals), one agent per topology, trained on that topology's device positions and
    capacities with random task sets (tiny_task_counts tasks at uniform random devices) and
    evaluated on the instances of that topology. 'random': one agent trained across random
    topologies and random task sets (Poisson mode: random episodes of tiny_env), evaluated on
    every instance. None: ['topology', 'random'] in 'tasks_at_start' mode, ['random'] in
    'poisson' mode ('topology' is not offered there)."""

    tiny_instances: int = Field(20, ge=1)
    """Instances in 'poisson' mode (episode seeds EVAL_SEED, EVAL_SEED + 1, ...)."""

    tiny_epochs: int = Field(100, ge=1)
    """Training epochs of the learned methods on the tiny instances."""

    tiny_replanning: bool = True
    """'poisson' mode: also report 'replan', exact re-planning every slot without knowledge of
    future arrivals (:func:`~edgerl.cerl.exact.replanning_cost`), the gap a non-anticipative
    policy can reach. Not needed with tasks at the start (it equals the exact minimum)."""

    torch_threads: int = Field(1, ge=0)
    """Intra-op threads of torch (0: torch's default; see CerlTrainConfig.torch_threads)."""

    agent: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_AGENT))
    """Agent settings shared by every learned method (see CerlTrainConfig.agent)."""

    @field_validator("agent")
    @classmethod
    def _agent_defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _with_defaults(value)

    @model_validator(mode="after")
    def _check_tiny(self) -> CerlExperimentConfig:
        lo, hi = self.tiny_task_counts
        if not 1 <= lo <= hi:
            raise ValueError(f"tiny_task_counts must satisfy 1 <= min <= max, got {[lo, hi]}")
        if self.tiny_protocols is not None:
            if not self.tiny_protocols:
                raise ValueError("tiny_protocols: give at least one of 'topology', 'random'")
            if self.tiny_mode == "poisson" and "topology" in self.tiny_protocols:
                raise ValueError(
                    "tiny_protocols: 'topology' needs tiny_mode='tasks_at_start' (the Poisson "
                    "instances each have their own topology); use ['random']"
                )
        return self

    def protocols(self) -> list[str]:
        """The training protocols of cerl-optimality (tiny_protocols or its mode's default)."""
        if self.tiny_protocols is not None:
            return list(dict.fromkeys(self.tiny_protocols))
        return ["topology", "random"] if self.tiny_mode == "tasks_at_start" else ["random"]


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0],
        "n_devices": [3],
        "epochs": 2,
        "eval_every": 1,
        "eval_episodes": 1,
        "scaling_n": 3,
        "utilisation_n": 3,
        "tiny_instances": 3,
        "tiny_topologies": 1,
        "tiny_task_counts": (1, 1),
        "tiny_epochs": 2,
        "tiny_replanning": False,
        "env": {"episode_slots": 8, "arrival_rate_per_s": 1.0},
        "agent": {**DEFAULT_AGENT, "pop_size": 6, "learning_starts": 32, "batch_size": 16, "fitness_batch": 16,
                  "elite_actors": 2, "rl_envs": 2, "steps_per_generation": 2},
    },
    "paper": {},
}


def _env(cfg: CerlExperimentConfig, n: int) -> CerlConfig:
    from edgerl.utils.config import config_from_dict

    return config_from_dict(CerlConfig, {**cfg.env, "n_devices": n}, "env")


def _spread(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return (float(a.mean()), float(a.std())) if a.size else (math.nan, math.nan)


def _aggregate(evals: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of each metric, plus the spread of the cost across seeds."""
    out: dict[str, float] = {}
    for key in ("cost_mean", "completion_rate", "collaborations_mean", "energy_mean", "delay_mean", "penalty_mean"):
        out[key], std = _spread([e[key] for e in evals])
        if key == "cost_mean":
            out["cost_std_over_seeds"] = std
    return out


def print_table(methods: dict[str, dict[str, float]], console: Any, title: str) -> None:
    """A rich table of per-method cost, completion and collaborations."""
    from rich.table import Table

    t = Table(title=title)
    cols = ["cost_mean", "completion_rate", "collaborations_mean"]
    t.add_column("method")
    for c in cols:
        t.add_column(c, justify="right")
    for name, row in methods.items():
        t.add_row(name, *[f"{row.get(c, math.nan):.3f}" for c in cols])
    console.print(t)




def _plot_convergence(rows: list[dict[str, Any]], ns: list[int], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3.4), squeeze=False)
    for ax, n in zip(axes[0], ns):
        by: dict[str, dict[int, list[float]]] = {}
        for r in rows:
            if r["n_devices"] == n and "eval_cost" in r:
                by.setdefault(r["method"], {}).setdefault(r["epoch"], []).append(r["eval_cost"])
        for m, curve in by.items():
            ep = sorted(curve)
            mean = np.array([np.mean(curve[e]) for e in ep])
            std = np.array([np.std(curve[e]) for e in ep])
            ax.plot(ep, mean, "o-", ms=3, label=m)
            ax.fill_between(ep, mean - std, mean + std, alpha=0.2)
        ax.set_title(f"N = {n}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("system cost per episode")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save_fig(fig, path)


def _plot_bars(methods: dict[str, dict[str, float]], keys: list[str], path: Path, title: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
    names = list(methods)
    for ax, key in zip(axes[0], keys):
        vals = [methods[n].get(key, math.nan) for n in names]
        ax.bar(range(len(names)), vals)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(key)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    _save_fig(fig, path)


def _plot_utilisation(rows: list[dict[str, Any]], slots: list[int], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(len(slots), 1, figsize=(8, 2.6 * len(slots)), squeeze=False)
    for ax, slot in zip(axes[:, 0], slots):
        for k, (when, off) in enumerate((("before", -0.2), ("after", 0.2))):
            rs = [r for r in rows if r["slot"] == slot and r["when"] == when]
            ax.bar([r["node"] + off for r in rs], [r["remaining_pct"] for r in rs], width=0.4, label=when, color=f"C{k}")
        ax.set_title(f"slot {slot}")
        ax.set_xlabel("node (0 = MEC server)")
        ax.set_ylabel("remaining compute (%)")
        ax.legend(fontsize=8)
    _save_fig(fig, path)


def _remaining_shares(policy: Any, env: CerlConfig, slots: list[int], seed: int) -> dict[int, np.ndarray]:
    """Free compute share (%) of every node after the policy's decision in each given slot."""
    e = CerlEnv(config=env)
    obs, _ = e.reset(seed=seed)
    out: dict[int, np.ndarray] = {}
    for slot in range(1, max(slots) + 1):
        obs, _, term, trunc, _ = e.step(policy.act(obs, deterministic=True))
        if slot in slots:
            out[slot] = np.asarray(obs["free_share_pct"], dtype=np.float64)
        if term or trunc:
            break
    return out


@dataclass(frozen=True)
class TinyInstance:
    """One tiny instance of cerl-optimality: an episode given by a config, a seed and options.

    Attributes:
        topology: Index of its topology ('tasks_at_start' mode), -1 in 'poisson' mode.
        env: The environment config (with the topology fixed in 'tasks_at_start' mode).
        seed: ``reset`` seed of the episode.
        options: ``reset`` options (``initial_tasks`` in 'tasks_at_start' mode) or None.
        label: Short name for the CSV (``k:sources`` or the seed).
    """

    topology: int
    env: CerlConfig
    seed: int
    options: dict[str, Any] | None
    label: str


def tiny_instances(
    cfg: CerlExperimentConfig,
) -> tuple[list[TinyInstance], dict[str, dict[int, CerlConfig]]]:
    """The instances of cerl-optimality and the training environments of each protocol.

    Returns:
        ``(instances, train_envs)``: ``train_envs[protocol][k]`` is the config an agent of that
        protocol trains on for topology ``k`` ('topology'), or ``train_envs['random'][-1]``
        the one agent of 'random' trains on (see :class:`CerlExperimentConfig`).

    Raises:
        InputError: If tiny_env is invalid or holds fewer task slots than tiny_task_counts.
    """
    from itertools import combinations_with_replacement

    from gymnasium.utils import seeding

    from edgerl.cerl.env import CerlSimulator, make_config
    from edgerl.utils.config import config_from_dict

    if cfg.tiny_mode == "poisson":
        env = config_from_dict(CerlConfig, dict(cfg.tiny_env), "tiny_env")
        insts = [TinyInstance(-1, env, EVAL_SEED + i, None, str(EVAL_SEED + i)) for i in range(cfg.tiny_instances)]
        return insts, {"random": {-1: env}}
    quiet = {"arrival_rate_per_s": 0.0, "episode_slots": 1, "drain_at_end": True}
    base = config_from_dict(CerlConfig, {**dict(cfg.tiny_env), **quiet}, "tiny_env")
    lo, hi = cfg.tiny_task_counts
    if hi > base.max_tasks:
        raise InputError(
            f"tiny_task_counts: {hi} tasks do not fit tiny_env.max_tasks = {base.max_tasks}"
        )
    insts: list[TinyInstance] = []
    per_topology: dict[int, CerlConfig] = {}
    sim = CerlSimulator(base, 1)
    for k in range(cfg.tiny_topologies):
        sim.reset([seeding.np_random(EVAL_SEED + k)[0]])
        topo = make_config(
            base,
            device_capacities_ghz=tuple(float(c) for c in sim.cap_hz[0, 1:] / 1e9),
            device_positions_m=tuple((float(x), float(y)) for x, y in sim.pos_m[0, 1:]),
        )
        per_topology[k] = make_config(topo, initial_tasks_min=lo, initial_tasks_max=hi)
        for count in range(lo, hi + 1):
            for src in combinations_with_replacement(range(1, base.n_devices + 1), count):
                label = f"{k}:" + "-".join(str(v) for v in src)
                insts.append(TinyInstance(k, topo, EVAL_SEED, {"initial_tasks": list(src)}, label))
    random_env = make_config(base, initial_tasks_min=lo, initial_tasks_max=hi)
    return insts, {"topology": per_topology, "random": {-1: random_env}}


def _optimality(
    cfg: CerlExperimentConfig,
    rows: list[dict[str, Any]],
    methods: dict[str, dict[str, Any]],
    extra: dict[str, Any],
    log: Any,
    say: Any,
) -> None:
    """cerl-optimality: exact minimum of every tiny instance and every method's gap to it."""
    from edgerl.cerl.exact import exact_min_cost, replanning_cost

    insts, train_envs = tiny_instances(cfg)
    protocols = cfg.protocols()
    exact_l, solve_l = [], []
    for inst in insts:
        t_solve = time.perf_counter()
        exact_l.append(exact_min_cost(inst.env, inst.seed, inst.options)[0])
        solve_l.append(time.perf_counter() - t_solve)
    exact, solve_s = np.array(exact_l), np.array(solve_l)
    total = float(exact.sum())
    extra.update(
        tiny_mode=cfg.tiny_mode,
        tiny_protocols=protocols,
        tiny_instances_n=len(insts),
        exact_solve_s_mean=float(solve_s.mean()),
        exact_solve_s_max=float(solve_s.max()),
    )
    methods["exact"] = {"cost_mean": float(exact.mean()), "gap": 0.0}

    def cost_on(inst: TinyInstance, policy: Any) -> float:
        return float(evaluate_policy(inst.env, policy, episodes=1, seed=inst.seed, options=inst.options)["cost_mean"])

    def record(name: str, protocol: str, per_seed: dict[int, np.ndarray]) -> None:
        # Gap of the total cost over the instances (per-instance optima can be ~0).
        gaps = [float(c.sum() / total - 1.0) if total > 0 else math.nan for c in per_seed.values()]
        optimal = [float(np.mean(c <= exact + 1e-9 * np.maximum(1.0, exact))) for c in per_seed.values()]
        methods[name] = {
            "cost_mean": float(np.mean([c.mean() for c in per_seed.values()])),
            "gap": float(np.mean(gaps)),
            "gap_std_over_seeds": float(np.std(gaps)),
            "gap_per_seed": gaps,
            "optimal_share": float(np.mean(optimal)),
        }
        for s, costs in per_seed.items():
            for inst, c, e, t_s in zip(insts, costs, exact, solve_s):
                rows.append({"method": name, "protocol": protocol, "train_seed": s, "topology": inst.topology,
                             "instance": inst.label, "cost": float(c), "exact_cost": float(e),
                             "exact_solve_s": float(t_s)})

    for b in ("lc", "ec", "random"):
        per_seed = {}
        for s in cfg.seeds:
            pol = make_baseline(b, insts[0].env, seed=s)
            per_seed[s] = np.array([cost_on(inst, pol) for inst in insts])
        record(b, "-", per_seed)
    if cfg.tiny_mode == "poisson" and cfg.tiny_replanning:
        replan = np.array([replanning_cost(inst.env, inst.seed, inst.options) for inst in insts])
        record("replan", "-", {-1: replan})
    for p_i, protocol in enumerate(protocols):
        for m in cfg.methods:
            per_seed = {}
            for s in cfg.seeds:
                agents = {}
                for k, env in train_envs[protocol].items():
                    where = "across random instances" if k < 0 else f"on topology {k}"
                    say(f"training {m} {where}, seed={s}")
                    agents[k], _, _ = _train_one(m, env, cfg.agent, s, cfg.tiny_epochs, 0, 1, log)
                per_seed[s] = np.array(
                    [cost_on(inst, agents[inst.topology if protocol == "topology" else -1]) for inst in insts]
                )
            record(m if p_i == 0 else f"{m}@{protocol}", protocol, per_seed)


def run_experiment(
    name: str,
    out_dir: str | os.PathLike[str],
    preset: str = "quick",
    cfg: CerlExperimentConfig | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Run one CERL experiment; write ``NAME.csv``, ``NAME.png``, ``summary.json``.

    ``summary.json`` follows the command-line contract: ``experiment``, ``preset``, ``seeds``
    and ``methods`` (keys ``METHOD@N<n>`` for the experiments over several N; metrics
    ``cost_mean``, ``cost_std_over_seeds``, ``completion_rate``, ``collaborations_mean``, ...).
    """
    if name not in EXPERIMENTS:
        raise InputError(f"experiment {name!r}: expected one of {', '.join(EXPERIMENTS)}")
    if preset not in PRESETS:
        raise InputError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if cfg is None:
        cfg = CerlExperimentConfig(**PRESETS[preset])
    seed_everything(cfg.seeds[0] if cfg.seeds else 0)
    _set_threads(cfg.torch_threads)
    out = Path(out_dir)
    rd = RunDir(out)
    rd.write_config(cfg)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    methods: dict[str, dict[str, float]] = {}
    extra: dict[str, Any] = {}

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg)

    def train_all(n: int, method_names: list[str], eval_every: int) -> dict[str, list[Any]]:
        env = _env(cfg, n)
        agents: dict[str, list[Any]] = {}
        for m in method_names:
            for s in cfg.seeds:
                say(f"training {m} N={n} seed={s}")
                agent, r, epoch_s = _train_one(m, env, cfg.agent, s, cfg.epochs, eval_every, cfg.eval_episodes, rd.log)
                rows.extend(r)
                agents.setdefault(m, []).append(agent)
                extra.setdefault("epoch_s_mean", {})[f"{m}@N{n}"] = epoch_s
        return agents

    if name in ("cerl-convergence", "cerl-scaling"):
        ns = cfg.n_devices if name == "cerl-convergence" else [cfg.scaling_n]
        for n in ns:
            env = _env(cfg, n)
            agents = train_all(n, list(cfg.methods), cfg.eval_every if name == "cerl-convergence" else 0)
            for m, ags in agents.items():
                methods[f"{m}@N{n}"] = _aggregate([_evaluate(env, a, cfg.eval_episodes) for a in ags])
        if name == "cerl-convergence":
            _plot_convergence(rows, ns, out / f"{name}.png")
        else:
            _plot_bars(methods, ["cost_mean", "collaborations_mean"], out / f"{name}.png", f"N = {cfg.scaling_n}")
    elif name == "cerl-benchmarks":
        for n in cfg.n_devices:
            env = _env(cfg, n)
            agents = train_all(n, ["cerl"], 0)
            methods[f"cerl@N{n}"] = _aggregate([_evaluate(env, a, cfg.eval_episodes) for a in agents["cerl"]])
            for b in ("lc", "ec", "random"):
                methods[f"{b}@N{n}"] = _aggregate(
                    [_evaluate(env, make_baseline(b, env, seed=s), cfg.eval_episodes) for s in cfg.seeds]
                )
            lc = methods[f"lc@N{n}"]
            c = methods[f"cerl@N{n}"]
            c["cost_change_vs_lc"] = c["cost_mean"] / lc["cost_mean"] - 1.0 if lc["cost_mean"] else math.nan
            c["completion_gain_vs_lc"] = c["completion_rate"] - lc["completion_rate"]
            for m in ("cerl", "lc", "ec", "random"):
                rows.append({"method": m, "n_devices": n, **methods[f"{m}@N{n}"]})
        _plot_bars(methods, ["cost_mean", "completion_rate"], out / f"{name}.png", "CERL vs benchmarks")
    elif name == "cerl-optimality":
        _optimality(cfg, rows, methods, extra, rd.log, say)
        _plot_bars(methods, ["cost_mean", "gap"], out / f"{name}.png", "tiny instances vs the exact optimum")
    else:  # cerl-utilisation
        n = cfg.utilisation_n
        env = _env(cfg, n)
        slots = sorted(set(cfg.utilisation_slots))
        for s in cfg.seeds:
            before_agent = make_agent("cerl", env, cfg.agent, s)
            before = _remaining_shares(before_agent, env, slots, EVAL_SEED + s)
            agent, r, _ = _train_one("cerl", env, cfg.agent, s, cfg.epochs, 0, cfg.eval_episodes, rd.log)
            after = _remaining_shares(agent, env, slots, EVAL_SEED + s)
            for when, shares in (("before", before), ("after", after)):
                for slot, arr in shares.items():
                    for node, pct in enumerate(arr):
                        rows.append({"seed": s, "when": when, "slot": slot, "node": node, "remaining_pct": float(pct)})
        for when in ("before", "after"):
            vals = [r["remaining_pct"] for r in rows if r["when"] == when]
            methods[f"cerl-{when}"] = {"remaining_pct_mean": float(np.mean(vals)) if vals else math.nan}
        first = [r for r in rows if r["seed"] == cfg.seeds[0]]
        _plot_utilisation(first, slots, out / f"{name}.png")

    write_csv(out / f"{name}.csv", rows)
    summary = {
        "experiment": name,
        "preset": preset,
        "seeds": list(cfg.seeds),
        "eval_seeds": [EVAL_SEED + i for i in range(cfg.eval_episodes)],
        "epochs": cfg.tiny_epochs if name == "cerl-optimality" else cfg.epochs,
        "methods": methods,
        **extra,
        "wall_s": time.perf_counter() - t0,
    }
    rd.write_summary(summary)
    if console is not None and name != "cerl-utilisation":
        print_table(methods, console, name)
    return summary
