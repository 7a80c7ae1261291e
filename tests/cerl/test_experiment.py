"""CERL training command and experiments (quick presets)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from edgerl.cerl.agent import CerlAgent
from edgerl.cerl.dqn import D2QNAgent, DDQNAgent
from edgerl.cerl.env import CerlConfig
from edgerl.cerl.experiment import (
    PRESETS,
    CerlExperimentConfig,
    CerlTrainConfig,
    make_agent,
    run_experiment,
    train_cerl,
)
from edgerl.cli import main
from edgerl.utils.errors import InputError

TINY_AGENT = PRESETS["quick"]["agent"]
TINY_ENV = CerlConfig(n_devices=2, episode_slots=6, arrival_rate_per_s=1.0)


def test_make_agent_gives_every_method_the_same_budget_and_settings() -> None:
    agent_cfg = {**TINY_AGENT, "learning_rate": 1e-3, "gamma": 0.8}
    cerl = make_agent("cerl", TINY_ENV, agent_cfg, seed=1)
    ddqn = make_agent("ddqn", TINY_ENV, agent_cfg, seed=1)
    d2qn = make_agent("d2qn", TINY_ENV, agent_cfg, seed=1)
    assert isinstance(cerl, CerlAgent) and isinstance(d2qn, D2QNAgent) and isinstance(ddqn, DDQNAgent)
    # Transitions per epoch: CERL's (elite actors + RL copies) x steps per generation = 4 x 2.
    for a in (ddqn, d2qn):
        assert a.config.n_envs == cerl.n_rows == 4
        assert a.config.steps_per_epoch == cerl.config.steps_per_generation == 2
        assert a.config.learning_rate == 1e-3 and a.config.gamma == 0.8
        assert a.config.batch_size == cerl.config.batch_size == 16
    # Same seed, same architecture (DDQN and CERL's RL network start from the same weights).
    for (k1, v1), (k2, v2) in zip(cerl.q.state_dict().items(), ddqn.q.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    with pytest.raises(InputError, match="method"):
        make_agent("ppo", TINY_ENV, {}, seed=0)
    with pytest.raises(InputError, match="pop_size"):
        make_agent("cerl", TINY_ENV, {"pop_size": 0}, seed=0)


@pytest.mark.parametrize("method", ["cerl", "ddqn"])
def test_train_cerl_writes_run_directory(tmp_path, method) -> None:
    cfg = CerlTrainConfig(method=method, epochs=2, eval_every=1, eval_episodes=1, env=TINY_ENV, agent=TINY_AGENT)
    summary = train_cerl(cfg, tmp_path)
    assert (tmp_path / "agent.pt").is_file() and (tmp_path / "config.yaml").is_file()
    lines = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 2  # header + one row per epoch
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert set(on_disk["methods"]) == {method, "lc", "ec", "random"}
    for row in on_disk["methods"].values():
        assert row["cost_mean"] >= 0.0
        assert math.isnan(row["completion_rate"]) or 0.0 <= row["completion_rate"] <= 1.0
    assert summary["decision_ms"] > 0.0 and summary["epoch_s_mean"] > 0.0


@pytest.mark.parametrize(
    "name", ["cerl-convergence", "cerl-scaling", "cerl-benchmarks", "cerl-utilisation", "cerl-optimality"]
)
def test_quick_experiments_write_csv_png_summary(tmp_path, name) -> None:
    cfg = CerlExperimentConfig(**{**PRESETS["quick"], "n_devices": [2], "scaling_n": 2, "utilisation_n": 2})
    if name == "cerl-scaling":
        cfg = cfg.model_copy(update={"methods": ["cerl", "ddqn"]})
    summary = run_experiment(name, tmp_path, "quick", cfg=cfg)
    for f in (f"{name}.csv", f"{name}.png", "summary.json", "config.yaml"):
        assert (tmp_path / f).is_file(), f
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["experiment"] == name and on_disk["preset"] == "quick" and on_disk["seeds"] == [0]
    methods = summary["methods"]
    if name == "cerl-convergence":
        assert set(methods) == {"cerl@N2", "d2qn@N2", "ddqn@N2"}
    elif name == "cerl-scaling":
        assert set(methods) == {"cerl@N2", "ddqn@N2"}
        assert all("collaborations_mean" in m for m in methods.values())
    elif name == "cerl-benchmarks":
        assert set(methods) == {"cerl@N2", "lc@N2", "ec@N2", "random@N2"}
        c, lc = methods["cerl@N2"], methods["lc@N2"]
        assert c["cost_change_vs_lc"] == pytest.approx(c["cost_mean"] / lc["cost_mean"] - 1.0)
    elif name == "cerl-optimality":
        learned = {"cerl", "d2qn", "ddqn"}
        assert set(methods) == {"exact", "lc", "ec", "random", *learned, *(f"{m}@random" for m in learned)}
        # The exact search is a lower bound on every policy's cost, instance by instance.
        with open(tmp_path / f"{name}.csv") as fh:
            rows = list(csv.DictReader(fh))
        # Quick preset: 1 topology x 3 single-task instances; 3 baselines + 2 protocols x 3 methods.
        assert len(rows) == (3 + 2 * 3) * 3
        assert {r["instance"] for r in rows} == {"0:1", "0:2", "0:3"}
        assert all(float(r["cost"]) >= float(r["exact_cost"]) - 1e-9 for r in rows)
        assert all(m["gap"] >= -1e-12 for m in methods.values())
        assert all(float(r["exact_solve_s"]) >= 0.0 for r in rows)
        assert summary["tiny_mode"] == "tasks_at_start" and summary["tiny_protocols"] == ["topology", "random"]
        assert summary["epochs"] == cfg.tiny_epochs
        assert 0.0 < summary["exact_solve_s_mean"] <= summary["exact_solve_s_max"]
    else:
        assert set(methods) == {"cerl-before", "cerl-after"}
        rows = (tmp_path / f"{name}.csv").read_text().strip().splitlines()
        # 2 moments x 3 slots x 3 nodes (MEC + 2 devices), values in [0, 100].
        assert len(rows) == 1 + 2 * 3 * 3
        assert all(0.0 <= float(r.split(",")[-1]) <= 100.0 for r in rows[1:])


def test_experiment_bad_name_and_preset(tmp_path) -> None:
    with pytest.raises(InputError, match="cerl-convergence"):
        run_experiment("cerl-nope", tmp_path)
    with pytest.raises(InputError, match="preset"):
        run_experiment("cerl-scaling", tmp_path, "huge")


def test_cli_train_cerl_and_bad_config(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "epochs: 1\neval_episodes: 1\nenv:\n  n_devices: 2\n  episode_slots: 4\nagent:\n"
        + "".join(f"  {k}: {v}\n" for k, v in TINY_AGENT.items())
    )
    assert main(["train", "cerl", "--config", str(cfg), "--method", "d2qn", "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["methods"]["d2qn"]["episodes"] == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  n_devices: 0\n")
    assert main(["train", "cerl", "--config", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_progress_shaping_potential_golden_and_telescoping() -> None:
    from edgerl.cerl.env import layer_workload_cycles

    env = CerlConfig(n_devices=2, episode_slots=6, arrival_rate_per_s=1.0, max_tasks=3)
    agent = make_agent("ddqn", env, {**TINY_AGENT, "progress_shaping": 2.0, "gamma": 1.0}, seed=0)
    agent._setup()
    obs = {k: v.copy() for k, v in agent._obs.items()}
    n1, L = 3, 8
    obs["node_mask"][:, n1:] = 0
    obs["node_mask"][0, n1 : n1 + L] = 1  # task slot 0 live, slots 1-2 empty
    obs["node_mask"][0, n1 + 2 * L : n1 + 3 * L] = 1  # task slot 2 live
    obs["task_progress"][0] = [3, 0, 0]
    w = layer_workload_cycles(env.cycles_per_calc)
    # Phi = -c * [(1 - W(1..3)/W) + (1 - 0)] for row 0.
    expected = -2.0 * ((1.0 - w[:3].sum() / w.sum()) + 1.0)
    assert agent._potential(obs)[0] == pytest.approx(expected)
    # With gamma = 1 the stored rewards telescope: sum(stored) = sum(raw) + Phi(last) - Phi(first).
    agent2 = make_agent("ddqn", env, {**TINY_AGENT, "progress_shaping": 2.0, "gamma": 1.0}, seed=0)
    agent2._setup()
    phi0 = agent2._potential(agent2._obs).copy()
    raw_total = np.zeros(agent2.n_rows)
    orig_step = agent2.env.step

    def spy(a):
        out = orig_step(a)
        raw_total[:] += out[1]
        return out

    agent2.env.step = spy
    for _ in range(3):  # 3 slots, no episode ends (6 slots per episode)
        agent2._step(agent2._random_actions(agent2._obs))
    stored = agent2.buffer._rewards[:3].sum(0)
    scale = agent2.config.reward_scale  # stored rewards are scaled after shaping
    assert np.allclose(stored, scale * (raw_total + agent2._potential(agent2._obs) - phi0), atol=1e-3)
