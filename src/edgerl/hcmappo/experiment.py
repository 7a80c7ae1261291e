"""HC-MAPPO-L training and experiments (paper 003, Figs. 4-14).

* :func:`train_hcmappo` (``edgerl train hcmappo``): one learned method, one seed; metrics per
  iteration, checkpoint, and a held-out comparison with the heuristic baselines.
* :func:`run_experiment` (``edgerl experiment hcmappo-...``):

  - ``hcmappo-convergence``: delay and user cost per training iteration of every learned
    method, with the delay limit (Fig. 5); the held-out per-user cost spread and cost ranks of
    every method, learned and heuristic (Fig. 6);
  - ``hcmappo-tradeoff``: energy against privacy as the energy weight ``mu_2`` sweeps with the
    privacy weight ``mu_1 = 5`` fixed, ratios 0.2-5 (Fig. 4; section V-B sweeps ``mu_2`` from 1
    to 25);
  - ``hcmappo-scaling``: every method as the number of users, servers and services per base
    model varies (Figs. 7-10);
  - ``hcmappo-sensitivity``: every method as the delay limit, the user and server compute and
    the server storage vary (Figs. 11-14).

The heuristics are the paper's (Local-Only, Edge-Only, Greedy), Random, and the reference
``greedy-cost`` (a least-cost best response with full channel knowledge, beyond the paper):
it is run and written like the others but reported apart (``reference_methods`` in the
summary; no cost rank in Fig. 6; never the ``lowest_cost_within_limit``).

Every learned method gets the same budget: the same iterations of the same number of slots
and copies, the same networks and PPO settings (the methods differ only in their switches,
:data:`edgerl.hcmappo.agent.METHODS`), the same training seeds and the same held-out
evaluation episodes (seeds from :data:`~edgerl.hcmappo.baselines.EVAL_SEED`), where the
heuristics are evaluated too. The paper's sweep points that the text does not give (the user
counts of Fig. 7, the service counts of Fig. 9) are our choice and listed in
:class:`HcExperimentConfig`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from edgerl.hcmappo.agent import METHODS, HcAgent, method_config
from edgerl.hcmappo.baselines import (
    BASELINES,
    EVAL_SEED,
    METRICS,
    REFERENCE_BASELINES,
    evaluate_policy,
)
from edgerl.hcmappo.catalog import ServiceCatalog, catalog_for_config
from edgerl.hcmappo.config import HcConfig, make_config
from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.utils.io import write_csv
from edgerl.utils.plots import pyplot as _plt
from edgerl.utils.plots import save_figure as _save_fig
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything

__all__ = [
    "EXPERIMENTS",
    "LEARNED",
    "PRESETS",
    "HcExperimentConfig",
    "HcTrainConfig",
    "run_experiment",
    "train_hcmappo",
]

LEARNED: tuple[str, ...] = tuple(METHODS)
"""Learned methods: HC-MAPPO-L and its ablations, in the paper's order."""

EXPERIMENTS: tuple[str, ...] = (
    "hcmappo-convergence",
    "hcmappo-tradeoff",
    "hcmappo-scaling",
    "hcmappo-sensitivity",
)

Method = Literal["hc-mappo-l", "hc-ippo-l", "h-mappo", "h-ippo", "heuristic-mappo-l"]
Baseline = Literal["local-only", "edge-only", "greedy", "random", "greedy-cost"]

_ROW_KEYS = (
    "env_steps",
    "reward",
    "delay_s_mean",
    "user_cost_mean",
    "energy_j_mean",
    "privacy_cost_mean",
    "success_rate",
    "cache_hit_rate",
    "miss_avoidable_rate",
    "miss_no_cache_rate",
    "lambda",
    "cost_mean",
    "user_entropy",
    "ent_user_coef",
    "deploy_reward",
    "deploy_entropy",
    "deploy_value_loss",
    "migration_s_total",
    "iteration_s",
    "iteration_cpu_s",
    "env_steps_per_s",
)


def _set_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(int(n))


class HcTrainConfig(Config):
    """One training run of a learned method (``edgerl train hcmappo``)."""

    method: Method = "hc-mappo-l"
    """Which method: 'hc-mappo-l', 'hc-ippo-l', 'h-mappo', 'h-ippo' or 'heuristic-mappo-l'."""

    seed: int = Field(0, ge=0)
    """Seeds the networks, the action draws and the training copies."""

    iterations: int = Field(1000, ge=1)
    """Training iterations (paper: 1000 of 200 slots)."""

    eval_episodes: int = Field(4, ge=1)
    """Held-out episodes of the final evaluation (seeds EVAL_SEED, EVAL_SEED + 1, ...)."""

    baselines: list[Baseline] = Field(default_factory=lambda: list(BASELINES))
    """Heuristics evaluated on the same episodes for comparison."""

    torch_threads: int = Field(1, ge=0)
    """Intra-op threads of torch (0: torch's default). The batches are small, so one thread
    avoids contention when the machine is shared."""

    env: HcConfig = HcConfig()
    """The environment (paper 003, Table I defaults)."""

    agent: dict[str, Any] = Field(default_factory=dict)
    """Fields of HcAgentConfig shared by every method (not the method switches). Unless given
    here, ``ent_user_anneal_iterations`` is the run's ``iterations``: the user entropy bonus
    falls to 0 over the run."""


def _row(method: str, seed: int, info: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "method": method,
        "seed": seed,
        **extra,
        "iteration": int(info["iteration"]),
    }
    for k in _ROW_KEYS:
        if k in info:
            row[k] = int(info[k]) if k == "env_steps" else float(info[k])
    return row


def _train(
    method: str,
    env: HcConfig,
    catalog: ServiceCatalog,
    agent_cfg: Mapping[str, Any],
    seed: int,
    iterations: int,
    log: Any = None,
    **extra: Any,
) -> tuple[HcAgent, list[dict[str, Any]]]:
    agent_cfg = {"ent_user_anneal_iterations": iterations, **agent_cfg}
    agent = HcAgent(env, method_config(method, agent_cfg), seed=seed, catalog=catalog)
    rows: list[dict[str, Any]] = []

    def cb(info: dict[str, Any]) -> bool:
        row = _row(method, seed, info, **extra)
        rows.append(row)
        if log is not None:
            log(row)
        return True

    agent.learn(iterations, callback=cb)
    return agent, rows


def train_hcmappo(
    cfg: HcTrainConfig, out_dir: str | os.PathLike[str], console: Any = None
) -> dict[str, Any]:
    """Train one method and compare it with the heuristics on held-out episodes.

    Writes ``config.yaml``, ``metrics.csv`` (one row per iteration: ``reward``,
    ``delay_s_mean``, ``user_cost_mean``, ``energy_j_mean``, ``privacy_cost_mean``,
    ``success_rate``, ``lambda``, the learned deployment layer's ``deploy_reward``,
    ``deploy_entropy`` and ``deploy_value_loss``, timings, ...), ``agent.pt`` and ``summary.json``
    (``methods``: the trained method and the baselines, each with the metrics of
    :func:`~edgerl.hcmappo.baselines.evaluate_policy`; plus ``iteration_s_mean``,
    ``iteration_cpu_s_mean`` and ``env_steps_per_s``).
    """
    seed_everything(cfg.seed)
    _set_threads(cfg.torch_threads)
    rd = RunDir(out_dir, flush_every=10)
    rd.write_config(cfg)
    t0 = time.perf_counter()
    catalog = catalog_for_config(cfg.env)

    def log(row: dict[str, Any]) -> None:
        rd.log(row)
        it = row["iteration"]
        if console is not None and (it % 10 == 0 or it == cfg.iterations or it == 1):
            console.print(
                f"iteration {it}/{cfg.iterations}  delay {row['delay_s_mean']:.2f} s  "
                f"user cost {row['user_cost_mean']:.1f}  success {row['success_rate']:.3f}  "
                f"lambda {row['lambda']:.3f}  ({row['iteration_s']:.1f} s)"
            )

    agent, rows = _train(cfg.method, cfg.env, catalog, cfg.agent, cfg.seed, cfg.iterations, log)
    rd.flush()
    agent.save(Path(out_dir) / "agent.pt")
    methods = {cfg.method: _evaluate(agent, cfg.env, catalog, cfg.eval_episodes)}
    for name in cfg.baselines:
        methods[name] = _evaluate(name, cfg.env, catalog, cfg.eval_episodes)
    summary = {
        "experiment": "train-hcmappo",
        "method": cfg.method,
        "seeds": [cfg.seed],
        "eval_seeds": [EVAL_SEED + i for i in range(cfg.eval_episodes)],
        "iterations": len(rows),
        "n_servers": cfg.env.n_servers,
        "n_users": cfg.env.n_users,
        "iteration_s_mean": _mean([r["iteration_s"] for r in rows]),
        "iteration_cpu_s_mean": _mean([r["iteration_cpu_s"] for r in rows]),
        "env_steps_per_s": _mean([r["env_steps_per_s"] for r in rows]),
        "lambda_final": agent.lambda_,
        "train_s": time.perf_counter() - t0,
        "methods": {m: _strip(v) for m, v in methods.items()},
    }
    rd.write_summary(summary)
    if console is not None:
        print_table(
            summary["methods"],
            console,
            f"HC-MAPPO-L J={cfg.env.n_servers} K={cfg.env.n_users}, {len(rows)} iterations",
        )
    return summary


def _evaluate(
    policy: Any, env: HcConfig, catalog: ServiceCatalog, episodes: int, seed: int = 0
) -> dict[str, Any]:
    if isinstance(policy, str):
        # Heuristics: Random draws from its own seed; the others are deterministic.
        from edgerl.hcmappo.baselines import make_baseline
        from edgerl.hcmappo.batched import BatchedHcEnv

        template = BatchedHcEnv(1, env, catalog=catalog)
        policy = make_baseline(policy, template, seed=seed)
    return evaluate_policy(policy, env, episodes=episodes, catalog=catalog)


def _strip(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A method's summary entry: every scalar metric (the per-user list stays in the CSVs)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, (list, tuple))}


def _mean(values: Sequence[float]) -> float:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


# --------------------------------------------------------------------------- experiments


class HcExperimentConfig(Config):
    """Settings of the HC-MAPPO-L experiments (one preset = one instance)."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    """Training seeds; every learned method trains once per seed (Random draws per seed)."""

    iterations: int = Field(1000, ge=1)
    """Training iterations per run (paper: 1000 of 200 slots)."""

    methods: list[Method] = Field(default_factory=lambda: list(LEARNED))
    """Learned methods compared."""

    baselines: list[Baseline] = Field(default_factory=lambda: list(BASELINES))
    """Heuristics evaluated on the same episodes."""

    eval_episodes: int = Field(4, ge=1)
    """Held-out evaluation episodes."""

    torch_threads: int = Field(1, ge=0)
    """Intra-op threads of torch (0: torch's default)."""

    env: dict[str, Any] = Field(default_factory=dict)
    """HcConfig overrides applied to every run (a sweep sets its own field on top)."""

    agent: dict[str, Any] = Field(default_factory=dict)
    """HcAgentConfig fields shared by every learned method. Unless given here,
    ``ent_user_anneal_iterations`` is ``iterations`` (the user entropy bonus falls to 0 over
    each run)."""

    tradeoff_field: str = "weight_energy"
    """The weight swept in hcmappo-tradeoff (section V-B: mu_2, the energy weight)."""

    tradeoff_values: list[float] = Field(default_factory=lambda: [1.0, 2.5, 5.0, 10.0, 25.0])
    """Its values (section V-B: 1 to 25 with mu_1 = 5, ratios 0.2-5)."""

    tradeoff_methods: list[Method] = Field(default_factory=lambda: ["hc-mappo-l"])
    """Methods trained at every trade-off point (Fig. 4 shows HC-MAPPO-L)."""

    scaling: dict[str, list[Any]] = Field(
        default_factory=lambda: {
            "n_users": [30, 50, 70, 90],
            "n_servers": [8, 10, 15, 20],
            "services_per_model": [1, 3, 5, 7],
        }
    )
    """Sweeps of hcmappo-scaling, HcConfig field -> values (Fig. 8: J from 8 to 20; the
    user and service counts of Figs. 7 and 9 are not given in the text)."""

    sensitivity: dict[str, list[Any]] = Field(
        default_factory=lambda: {
            "delay_limit_s": [2.0, 2.5, 3.0, 3.5, 4.0],
            "user_compute_gflops": [[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [70.0, 80.0]],
            "server_compute_gflops": [
                [300.0, 500.0],
                [900.0, 1100.0],
                [1900.0, 2100.0],
                [2900.0, 3100.0],
            ],
            "server_storage_gb": [[1.8, 2.2], [2.3, 2.7], [3.3, 3.7], [4.8, 5.2]],
        }
    )
    """Sweeps of hcmappo-sensitivity (Figs. 11-14: delay limit 2-4 s, user compute 10-20 to
    70-80 GFLOPS, server compute 400-3000 GFLOPS, storage 1.8-2.2 to 4.8-5.2 GB)."""

    @field_validator("scaling", "sensitivity")
    @classmethod
    def _check_sweeps(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        unknown = sorted(k for k in v if k not in HcConfig.model_fields)
        if unknown:
            raise ValueError(f"{unknown} are not HcConfig fields")
        empty = sorted(k for k, vals in v.items() if not vals)
        if empty:
            raise ValueError(f"sweeps {empty} have no values")
        return v

    @field_validator("tradeoff_field")
    @classmethod
    def _check_tradeoff_field(cls, v: str) -> str:
        if v not in HcConfig.model_fields:
            raise ValueError(f"{v!r} is not an HcConfig field")
        return v


_QUICK_ENV = {
    "n_servers": 2,
    "n_users": 3,
    "episode_slots": 6,
    "deploy_interval_slots": 3,
    "models": ["lenet7", "resnet18"],
    "services_per_model": 1,
}
_QUICK_AGENT = {
    "n_envs": 1,
    "user_hidden": 16,
    "critic_hidden": 16,
    "split_hidden": 8,
    "deploy_hidden": 16,
    "alloc_dim": 8,
    "alloc_heads": 2,
    "ppo_epochs": 1,
    "num_minibatches": 1,
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0],
        "iterations": 2,
        "eval_episodes": 1,
        "env": _QUICK_ENV,
        "agent": _QUICK_AGENT,
        "tradeoff_values": [1.0, 25.0],
        "scaling": {"n_users": [2, 3], "n_servers": [1, 2], "services_per_model": [1, 2]},
        "sensitivity": {
            "delay_limit_s": [2.0, 4.0],
            "user_compute_gflops": [[10.0, 20.0], [70.0, 80.0]],
            "server_compute_gflops": [[300.0, 500.0], [2900.0, 3100.0]],
            "server_storage_gb": [[0.05, 0.06], [1.0, 2.0]],
        },
    },
    "paper": {},
}


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "-".join(_fmt_value(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class _Runner:
    """Trains and evaluates methods for one experiment; collects rows and per-method metrics."""

    def __init__(self, cfg: HcExperimentConfig, rd: RunDir, console: Any) -> None:
        self.cfg = cfg
        self.rd = rd
        self.console = console
        self.rows: list[dict[str, Any]] = []
        self.evals: dict[str, list[dict[str, Any]]] = {}
        self.iteration_s: list[float] = []

    def say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)

    def env(self, **overrides: Any) -> tuple[HcConfig, ServiceCatalog]:
        env = make_config({**self.cfg.env, **overrides})
        return env, catalog_for_config(env)

    def run(
        self,
        key: str,
        env: HcConfig,
        catalog: ServiceCatalog,
        methods: Sequence[str],
        baselines: Sequence[str],
        **extra: Any,
    ) -> None:
        """Train every method with every seed at one setting; evaluate it and the heuristics."""
        cfg = self.cfg
        for m in methods:
            for s in cfg.seeds:
                self.say(f"training {m} {key} seed={s}")
                agent, rows = _train(
                    m, env, catalog, cfg.agent, s, cfg.iterations, self.rd.log, **extra
                )
                self.rows.extend(rows)
                self.iteration_s.extend(r["iteration_s"] for r in rows)
                self.evals.setdefault(f"{m}{key}", []).append(
                    _evaluate(agent, env, catalog, cfg.eval_episodes)
                )
        for b in baselines:
            seeds = cfg.seeds if b == "random" else cfg.seeds[:1]
            for s in seeds:
                self.evals.setdefault(f"{b}{key}", []).append(
                    _evaluate(b, env, catalog, cfg.eval_episodes, s)
                )

    def methods(self) -> dict[str, dict[str, float]]:
        """Mean over seeds of every metric, plus the spread of the user cost across seeds."""
        out: dict[str, dict[str, float]] = {}
        for name, evals in self.evals.items():
            agg = {
                k: _mean([e[k] for e in evals])
                for k in (*METRICS, "delay_violation_s", "user_cost_std_users")
            }
            agg["user_cost_std_over_seeds"] = float(np.std([e["user_cost_mean"] for e in evals]))
            agg["delay_within_limit"] = float(agg["delay_violation_s"] <= 0.0)
            out[name] = agg
        return out

    @staticmethod
    def is_reference(name: str) -> bool:
        """Whether a method key (``NAME`` or ``NAME@FIELD=VALUE``) is a reference heuristic."""
        return name.split("@", 1)[0] in REFERENCE_BASELINES

    def per_user(self, name: str) -> np.ndarray:
        """Per-user held-out cost of a method, mean over seeds (the same users for every seed)."""
        return np.mean([np.asarray(e["user_cost_per_user"]) for e in self.evals[name]], axis=0)


def run_experiment(
    name: str,
    out_dir: str | os.PathLike[str],
    preset: str = "quick",
    cfg: HcExperimentConfig | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Run one HC-MAPPO-L experiment; write ``NAME.csv``, ``NAME.png`` and ``summary.json``.

    ``summary.json``: ``experiment``, ``preset``, ``seeds``, ``eval_seeds``, ``iterations``,
    ``methods`` (``METHOD`` for the convergence, ``METHOD@FIELD=VALUE`` for the sweeps; metrics
    ``delay_s_mean``, ``user_cost_mean``, ``energy_j_mean``, ``privacy_cost_mean``,
    ``success_rate``, ``cache_hit_rate``, ``miss_avoidable_rate`` (cache misses where another
    server held the service), ``miss_no_cache_rate`` (no server held it),
    ``delay_violation_s``, ``user_cost_std_users``,
    ``user_cost_std_over_seeds``, ...), ``reference_methods`` (the keys of the reference
    heuristics, reported apart), ``iteration_s_mean`` and ``wall_s``. The convergence adds
    ``lowest_cost_within_limit`` (the method of least user cost whose mean delay keeps the
    limit, references left out), per method ``user_cost_rank_mean`` and ``lowest_cost_share``
    (Fig. 6, references not ranked) and writes
    ``NAME-users.csv`` / ``NAME-users.png``.

    Raises:
        InputError: On an unknown experiment or preset, or a bad sweep value.
    """
    if name not in EXPERIMENTS:
        raise InputError(f"experiment {name!r}: expected one of {', '.join(EXPERIMENTS)}")
    if preset not in PRESETS:
        raise InputError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if cfg is None:
        cfg = HcExperimentConfig(**PRESETS[preset])
    if not cfg.seeds:
        raise InputError("seeds: at least one training seed is needed")
    seed_everything(cfg.seeds[0])
    _set_threads(cfg.torch_threads)
    out = Path(out_dir)
    # metrics.csv (every training iteration of every run) is rewritten every 20 rows.
    rd = RunDir(out, flush_every=20)
    rd.write_config(cfg)
    t0 = time.perf_counter()
    run = _Runner(cfg, rd, console)
    rows: list[dict[str, Any]]

    if name == "hcmappo-convergence":
        env, catalog = run.env()
        run.run("", env, catalog, cfg.methods, cfg.baselines)
        rows = run.rows
        methods = run.methods()
        user_rows = _user_ranks(run, methods)
        write_csv(out / f"{name}-users.csv", user_rows)
        _plot_convergence(rows, env.delay_limit_s, out / f"{name}.png")
        _plot_user_ranks(user_rows, list(methods), out / f"{name}-users.png")
    elif name == "hcmappo-tradeoff":
        field = cfg.tradeoff_field
        for v in cfg.tradeoff_values:
            env, catalog = run.env(**{field: v})
            run.run(
                f"@{field}={_fmt_value(v)}", env, catalog, cfg.tradeoff_methods, [], **{field: v}
            )
        methods = run.methods()
        rows = []
        ref = cfg.env.get("weight_privacy", HcConfig.model_fields["weight_privacy"].default)
        for m in cfg.tradeoff_methods:
            for v in cfg.tradeoff_values:
                r = methods[f"{m}@{field}={_fmt_value(v)}"]
                ratio = v / ref if field == "weight_energy" and ref else math.nan
                rows.append({"method": m, field: v, "energy_to_privacy_weight": ratio, **r})
        _plot_tradeoff(rows, field, out / f"{name}.png")
    else:
        sweeps = cfg.scaling if name == "hcmappo-scaling" else cfg.sensitivity
        for field, values in sweeps.items():
            for v in values:
                try:
                    env, catalog = run.env(**{field: v})
                except InputError as exc:
                    raise InputError(f"{name}: sweep {field} = {v!r}: {exc}") from None
                run.run(
                    f"@{field}={_fmt_value(v)}",
                    env,
                    catalog,
                    cfg.methods,
                    cfg.baselines,
                    sweep=field,
                    value=_fmt_value(v),
                )
        methods = run.methods()
        rows = []
        for field, values in sweeps.items():
            for v in values:
                for m in (*cfg.methods, *cfg.baselines):
                    key = f"{m}@{field}={_fmt_value(v)}"
                    rows.append(
                        {"sweep": field, "value": _fmt_value(v), "method": m, **methods[key]}
                    )
        _plot_sweeps(rows, list(sweeps), [*cfg.methods, *cfg.baselines], out / f"{name}.png")

    write_csv(out / f"{name}.csv", rows)
    summary = {
        "experiment": name,
        "preset": preset,
        "seeds": list(cfg.seeds),
        "eval_seeds": [EVAL_SEED + i for i in range(cfg.eval_episodes)],
        "iterations": cfg.iterations,
        "methods": methods,
        "reference_methods": [m for m in methods if run.is_reference(m)],
        "iteration_s_mean": _mean(run.iteration_s),
        "wall_s": time.perf_counter() - t0,
    }
    if name == "hcmappo-convergence":
        summary["lowest_cost_within_limit"] = _lowest_within_limit(methods, run.is_reference)
    rd.write_summary(summary)
    if console is not None:
        print_table(methods, console, name)
    return summary


def _lowest_within_limit(
    methods: Mapping[str, Mapping[str, float]], is_reference: Any
) -> str | None:
    """The method of lowest mean user cost among those whose mean delay keeps the limit.

    Reference heuristics are left out; None when no method keeps the limit.
    """
    keep = {
        m: r["user_cost_mean"]
        for m, r in methods.items()
        if not is_reference(m) and r.get("delay_within_limit", 0.0) > 0.0
    }
    return min(keep, key=lambda m: keep[m]) if keep else None


def _user_ranks(run: _Runner, methods: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per-user cost and its rank among the methods (1 = lowest; Fig. 6); updates ``methods``.

    Reference heuristics are not ranked.
    """
    names = [m for m in methods if not run.is_reference(m)]
    costs = np.stack([run.per_user(m) for m in names])  # (M, U)
    # Rank per user with ties sharing the lower rank.
    ranks = (costs[None, :, :] < costs[:, None, :]).sum(1) + 1
    rows = []
    for i, m in enumerate(names):
        methods[m]["user_cost_rank_mean"] = float(ranks[i].mean())
        methods[m]["lowest_cost_share"] = float((ranks[i] == 1).mean())
        for u in range(costs.shape[1]):
            rows.append(
                {"method": m, "user": u, "user_cost": float(costs[i, u]), "rank": int(ranks[i, u])}
            )
    return rows


# --------------------------------------------------------------------------- tables and plots


def print_table(methods: Mapping[str, Mapping[str, float]], console: Any, title: str) -> None:
    """A rich table of per-method delay, user cost, energy, privacy and success rate."""
    from rich.table import Table

    t = Table(title=title)
    cols = ["delay_s_mean", "user_cost_mean", "energy_j_mean", "privacy_cost_mean", "success_rate"]
    t.add_column("method")
    for c in cols:
        t.add_column(c, justify="right")
    ref = [m for m in methods if _Runner.is_reference(m)]
    for name, row in methods.items():
        if name not in ref:
            t.add_row(name, *[f"{row.get(c, math.nan):.3f}" for c in cols])
    for name in ref:
        row = methods[name]
        t.add_row(f"{name} (reference)", *[f"{row.get(c, math.nan):.3f}" for c in cols])
    console.print(t)


def _plot_convergence(rows: list[dict[str, Any]], limit_s: float, path: Path) -> None:
    plt = _plt()
    keys = [
        ("delay_s_mean", "mean delay (s)"),
        ("user_cost_mean", "user cost"),
        ("lambda", "lambda"),
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.4), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, (key, label) in zip(axes[0], keys):
        for m in methods:
            by: dict[int, list[float]] = {}
            for r in rows:
                if r["method"] == m and key in r:
                    by.setdefault(r["iteration"], []).append(r[key])
            it = sorted(by)
            mean = np.array([np.mean(by[i]) for i in it])
            std = np.array([np.std(by[i]) for i in it])
            ax.plot(it, mean, "-", lw=1.2, label=m)
            ax.fill_between(it, mean - std, mean + std, alpha=0.15)
        if key == "delay_s_mean":
            ax.axhline(limit_s, color="red", ls="--", lw=1.0, label=f"limit {limit_s:g} s")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    _save_fig(fig, path)


def _plot_user_ranks(rows: list[dict[str, Any]], names: list[str], path: Path) -> None:
    plt = _plt()
    n_users = 1 + max(r["user"] for r in rows)
    grid = np.zeros((len(names), n_users))
    for r in rows:
        grid[names.index(r["method"]), r["user"]] = r["rank"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.12 * n_users + 2.5), 0.45 * len(names) + 1.4))
    im = ax.imshow(grid, aspect="auto", cmap="Blues", vmin=1, vmax=max(2, len(names)))
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("user (held-out episodes)")
    fig.colorbar(im, ax=ax, label="cost rank (1 = lowest)")
    _save_fig(fig, path)


def _plot_tradeoff(rows: list[dict[str, Any]], field: str, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        x = [r[field] for r in rs]
        axes[0].plot(
            [r["privacy_cost_mean"] for r in rs], [r["energy_j_mean"] for r in rs], "o-", label=m
        )
        for r in rs:
            axes[0].annotate(
                _fmt_value(r[field]), (r["privacy_cost_mean"], r["energy_j_mean"]), fontsize=7
            )
        axes[1].plot(x, [r["energy_j_mean"] for r in rs], "o-", label=f"{m} energy (J)")
        axes[1].plot(x, [r["privacy_cost_mean"] for r in rs], "s--", label=f"{m} privacy")
    axes[0].set_xlabel("privacy cost")
    axes[0].set_ylabel("energy (J)")
    axes[1].set_xlabel(field)
    axes[1].set_xscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save_fig(fig, path)


def _plot_sweeps(
    rows: list[dict[str, Any]], fields: list[str], methods: list[str], path: Path
) -> None:
    plt = _plt()
    metrics = [
        "user_cost_mean",
        "delay_s_mean",
        "energy_j_mean",
        "privacy_cost_mean",
        "success_rate",
    ]
    fig, axes = plt.subplots(
        len(fields), len(metrics), figsize=(3.3 * len(metrics), 2.7 * len(fields)), squeeze=False
    )
    for i, field in enumerate(fields):
        rs = [r for r in rows if r["sweep"] == field]
        values = list(dict.fromkeys(r["value"] for r in rs))
        for j, key in enumerate(metrics):
            ax = axes[i][j]
            for m in methods:
                ys = [
                    next((r[key] for r in rs if r["method"] == m and r["value"] == v), math.nan)
                    for v in values
                ]
                ax.plot(range(len(values)), ys, "o-", ms=3, label=m)
            ax.set_xticks(range(len(values)), values, fontsize=7, rotation=30)
            ax.set_title(key, fontsize=8)
            ax.set_xlabel(field, fontsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    _save_fig(fig, path)
