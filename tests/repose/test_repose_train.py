"""``train_repose`` smoke run: PPO learns for a few hundred steps and writes its run directory."""

from __future__ import annotations

import json
from pathlib import Path

from edgerl.repose.env import synthetic_frames
from edgerl.repose.train import ReposeTrainConfig, train_repose
from edgerl.rl.policy import MLPPolicy


def test_train_smoke(tmp_path: Path) -> None:
    cfg = ReposeTrainConfig(frame_source="synthetic", total_timesteps=256, n_steps=128, batch_size=32, n_epochs=2)
    frames = synthetic_frames(4, seed=123)
    summary = train_repose(cfg, tmp_path / "run", frames=frames)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.csv", "summary.json", "policy.pt", "policy.json"} <= names
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["total_timesteps"] == 256
    assert summary["frames"] == 4
    pol = MLPPolicy.load(tmp_path / "run" / "policy.pt")
    assert pol.n_actions == 3
