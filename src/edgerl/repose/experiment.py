"""RE-POSE experiments (paper 000 Figs. 3-5) on synthetic 4K frames with held-out seeds.

* ``repose-fig3``: accuracy vs latency over several latency budgets (RE-POSE, MeanShift-only,
  REMIX-style) with the uniform 2x2 and full-frame baselines.
* ``repose-fig4``: coarse-detection ablation: the n x E grid vs the full frame.
* ``repose-fig5``: clustering ablation: MeanShift only vs MeanShift + RL-DCA (PPO).

Every method runs on the same frames, executor, detectors, profile and thresholds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edgerl.repose.pipeline import ReposeConfig
from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.utils.io import write_csv
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything

#: First seed of evaluation frames: never used to train the detectors or the policy.
EVAL_SEED = 700_000


class ReposeExperimentConfig(Config):
    """One RE-POSE experiment run."""

    frames: int = Field(12, ge=1, description="Evaluation frames.")
    width_px: int = Field(3840, ge=64, description="Frame width.")
    height_px: int = Field(2160, ge=64, description="Frame height.")
    seed: int = Field(EVAL_SEED, ge=0, description="First frame seed (held out from training).")
    budgets_ms: list[float] = Field(default_factory=lambda: [150.0, 225.0, 280.0, 400.0, 600.0], description="Budgets of fig3.")
    budget_ms: float = Field(280.0, gt=0, description="Budget of fig4 and fig5.")
    executor: str = Field("local", pattern="^(local|ray)$", description="Executor kind.")
    repose: ReposeConfig = Field(default_factory=ReposeConfig, description="Method settings.")


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"frames": 2, "width_px": 1920, "height_px": 1080, "budgets_ms": [100.0, 400.0], "budget_ms": 300.0},
    "paper": {},
}


def make_frames(cfg: ReposeExperimentConfig) -> list[Any]:
    """Evaluation frames as dataset samples (synthetic, default preset, held-out seeds)."""
    from edgerl.vision.synth import SynthConfig, render_scene, scene_sample

    sc = SynthConfig()
    if (cfg.width_px, cfg.height_px) != (sc.width_px, sc.height_px):
        sc = sc.resized(cfg.width_px, cfg.height_px)
    return [scene_sample(render_scene(sc, np.random.default_rng(cfg.seed + i)), i + 1) for i in range(cfg.frames)]


def print_table(table: dict[str, dict[str, float]], console: Any) -> None:
    """A rich table of per-method AP and latency."""
    from rich.table import Table

    t = Table(title="Methods side by side")
    cols = ["map50_95", "map50", "map_small", "latency_ms_mean", "latency_ms_p95", "blocks_mean"]
    t.add_column("method")
    for c in cols:
        t.add_column(c, justify="right")
    for name, row in table.items():
        t.add_row(name, *[f"{row.get(c, float('nan')):.3f}" if "map" in c else f"{row.get(c, float('nan')):.1f}" for c in cols])
    console.print(t)


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    for name, rs in by.items():
        rs = sorted(rs, key=lambda r: r["latency_ms_mean"])
        ax.plot([r["latency_ms_mean"] for r in rs], [r["map50_95"] for r in rs], "o-", label=name)
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel("AP[.5:.95]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def run_experiment(
    name: str,
    out_dir: str | os.PathLike[str],
    preset: str = "quick",
    cfg: ReposeExperimentConfig | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Run ``repose-fig3``, ``repose-fig4`` or ``repose-fig5``; write CSV, PNG and summary.json."""
    from edgerl.repose.runner import build_method, evaluate_methods, executor_for, load_profile
    from edgerl.repose.train import load_policy

    if name not in ("repose-fig3", "repose-fig4", "repose-fig5"):
        raise InputError(f"experiment {name!r}: expected repose-fig3, repose-fig4 or repose-fig5")
    if preset not in PRESETS:
        raise InputError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if cfg is None:
        cfg = ReposeExperimentConfig(**PRESETS[preset])
    seed_everything(0)
    out = Path(out_dir)
    rd = RunDir(out)
    rd.write_config(cfg)
    frames = make_frames(cfg)
    profile = load_profile()
    policy = load_policy()
    rows: list[dict[str, Any]] = []
    methods_summary: dict[str, dict[str, float]] = {}

    def _run(entries: list[tuple[str, str, ReposeConfig]]) -> None:
        """Run (key, method name, settings) entries side by side on one executor."""
        with executor_for(cfg.executor, cfg.repose.n_workers) as ex:
            built = {key: build_method(m, ex, rcfg, profile, policy) for key, m, rcfg in entries}
            table, _ = evaluate_methods(frames, built)
        for key, m, rcfg in entries:
            row = table[key]
            methods_summary[key] = row
            rows.append({"method": m, "budget_ms": rcfg.budget_ms, **row})
            rd.log({"method": m, "budget_ms": rcfg.budget_ms, **row})

    base = cfg.repose
    if name == "repose-fig3":
        entries = [("uniform", "uniform", base), ("full", "full", base)]
        for b in cfg.budgets_ms:
            rb = base.model_copy(update={"budget_ms": b})
            entries += [(f"{m}@{b:g}ms", m, rb) for m in ("repose", "meanshift", "remix")]
        _run(entries)
    elif name == "repose-fig4":
        rb = base.model_copy(update={"budget_ms": cfg.budget_ms})
        _run([(m, m, rb) for m in ("repose", "repose-coarse-full")])
    else:
        rb = base.model_copy(update={"budget_ms": cfg.budget_ms})
        _run([(m, m, rb) for m in ("meanshift", "repose")])

    write_csv(out / f"{name}.csv", rows)
    _plot(rows, out / f"{name}.png", name)
    summary = {
        "experiment": name,
        "preset": preset,
        "seeds": [cfg.seed + i for i in range(cfg.frames)],
        "frame_size": [cfg.width_px, cfg.height_px],
        "methods": methods_summary,
    }
    if name == "repose-fig3":
        u = methods_summary["uniform"]
        summary["vs_uniform"] = {
            f"repose@{b:g}ms": {
                "ap_ratio": methods_summary[f"repose@{b:g}ms"]["map50_95"] / max(u["map50_95"], 1e-12),
                "latency_ratio": methods_summary[f"repose@{b:g}ms"]["latency_ms_mean"] / max(u["latency_ms_mean"], 1e-12),
            }
            for b in cfg.budgets_ms
        }
    rd.write_summary(summary)
    if console is not None:
        print_table(methods_summary, console)
    return summary
