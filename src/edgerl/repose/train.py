"""``edgerl train repose``: PPO for RL-DCA on coarse detections of training frames.

Paper 000, Sec. III-A3: actor and critic are MLPs with two hidden layers of 128 ReLU units;
the agent is trained with PPO (Stable-Baselines3). The trained actor is exported as a plain
state dict (:class:`edgerl.rl.policy.MLPPolicy`) for fast greedy inference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edgerl.repose.env import RLDCAConfig, RLDCAEnv, greedy_refine, reward_terms, synthetic_frames
from edgerl.rl.policy import MLPPolicy
from edgerl.utils.config import Config
from edgerl.utils.io import write_json
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[1] / "data" / "repose" / "rldca_policy.pt"


class ReposeTrainConfig(Config):
    """PPO training of the RL-DCA agent."""

    seed: int = Field(0, ge=0, description="Seed for everything random.")
    total_timesteps: int = Field(60_000, ge=64, description="PPO environment steps.")
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate.")
    n_steps: int = Field(512, ge=8, description="Rollout length per update.")
    batch_size: int = Field(64, ge=8, description="Minibatch size.")
    n_epochs: int = Field(10, ge=1, description="Epochs per update.")
    gamma: float = Field(0.95, gt=0, le=1, description="Discount factor.")
    ent_coef: float = Field(0.01, ge=0, description="Entropy bonus.")
    frame_source: str = Field(
        "coarse", pattern="^(coarse|synthetic)$",
        description="coarse: coarse detections of synthetic 4K frames; synthetic: clustered box sets.",
    )
    train_frames: int = Field(48, ge=1, description="Training frames.")
    eval_frames: int = Field(16, ge=1, description="Held-out frames for the evaluation.")
    frame_seed_offset: int = Field(10_000, ge=0, description="Frame seeds start here (kept apart from validation seeds).")
    coarse_option: str = Field("person_n@640", description="Coarse detector MODEL@SIZE for frame_source=coarse.")
    rl: RLDCAConfig = Field(default_factory=RLDCAConfig, description="Environment settings.")


def coarse_frames(n: int, seed: int, option: str, n_workers: int = 4, rows: int = 1, conf: float = 0.1) -> list:
    """Coarse detections (boxes, frame size) of ``n`` synthetic 4K frames made with ``seed + i``."""
    from edgerl.repose.pipeline import Repose, ReposeConfig
    from edgerl.runtime import LocalExecutor
    from edgerl.vision.profile import DetectorProfile
    from edgerl.vision.synth import SynthConfig, render_scene

    cfg = ReposeConfig(n_workers=n_workers, coarse_rows=rows, coarse_option=option, coarse_conf=conf, options=[option])
    model, size = option.rsplit("@", 1)
    prof = DetectorProfile(latency_ms={model: {size: 1.0}})
    out = []
    with LocalExecutor(n_workers) as ex:
        method = Repose(ex, cfg, prof)
        for i in range(n):
            scene = render_scene(SynthConfig(), np.random.default_rng(seed + i))
            det = method.coarse(scene.image)
            h, w = scene.image.shape[:2]
            out.append((det.boxes, (w, h)))
    return out


def evaluate_policy(policy: Any, frames: Sequence, cfg: RLDCAConfig) -> dict[str, float]:
    """Mean reward of the final clustering (eq. (16)) with the policy vs MeanShift only."""
    from edgerl.repose.clustering import Clustering

    def score(labels: np.ndarray, boxes: np.ndarray, wh: tuple[int, int]) -> float:
        return reward_terms(Clustering.from_boxes(boxes, wh, labels), cfg).total(cfg)

    pol, base = [], []
    for boxes, wh in frames:
        if len(boxes) == 0:
            continue
        pol.append(score(greedy_refine(policy, boxes, wh, cfg), boxes, wh))
        base.append(score(greedy_refine(lambda o: 0, boxes, wh, cfg), boxes, wh))
    return {"reward_policy_mean": float(np.mean(pol)), "reward_meanshift_mean": float(np.mean(base)), "frames": len(pol)}


def train_repose(
    cfg: ReposeTrainConfig,
    out_dir: str | os.PathLike[str],
    frames: Sequence | None = None,
    eval_frames: Sequence | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Train PPO on RL-DCA and write ``policy.pt`` plus a run directory; return the summary."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger

    seed_everything(cfg.seed)
    rd = RunDir(out_dir, flush_every=1)
    rd.write_config(cfg)
    t0 = time.perf_counter()
    if frames is None:
        if cfg.frame_source == "coarse":
            frames = coarse_frames(cfg.train_frames, cfg.frame_seed_offset, cfg.coarse_option)
            eval_frames = coarse_frames(cfg.eval_frames, cfg.frame_seed_offset + cfg.train_frames, cfg.coarse_option)
        else:
            frames = synthetic_frames(cfg.train_frames, seed=cfg.frame_seed_offset)
            eval_frames = synthetic_frames(cfg.eval_frames, seed=cfg.frame_seed_offset + cfg.train_frames)
    eval_frames = eval_frames if eval_frames is not None else frames
    t_frames = time.perf_counter() - t0

    env = RLDCAEnv(frames=frames, config=cfg.rl)
    env.reset(seed=cfg.seed)
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=cfg.learning_rate,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=cfg.gamma,
        ent_coef=cfg.ent_coef,
        seed=cfg.seed,
        device="cpu",
        verbose=0,
        policy_kwargs=dict(net_arch=dict(pi=[128, 128], vf=[128, 128]), activation_fn=torch.nn.ReLU),
    )
    model.set_logger(Logger(folder=None, output_formats=[]))  # metrics go to the run dir, not a temp folder

    class _Log(BaseCallback):
        def _on_rollout_end(self) -> None:
            buf = self.model.rollout_buffer
            rd.log({"timesteps": self.num_timesteps, "reward_step_mean": float(np.mean(buf.rewards))})

        def _on_step(self) -> bool:
            return True

    model.learn(total_timesteps=cfg.total_timesteps, callback=_Log())
    policy = MLPPolicy.from_sb3(model)
    policy.save(Path(out_dir) / "policy.pt")
    ev = evaluate_policy(policy, eval_frames, cfg.rl)
    summary = {
        "seed": cfg.seed,
        "total_timesteps": cfg.total_timesteps,
        "train_frames": len(frames),
        "frame_prep_s": t_frames,
        "train_s": time.perf_counter() - t0 - t_frames,
        **ev,
    }
    write_json(Path(out_dir) / "policy.json", {"rl": cfg.rl.model_dump(mode="json"), **summary})
    rd.write_summary(summary)
    if console is not None:
        console.print(
            f"RL-DCA PPO: eval reward {ev['reward_policy_mean']:.3f} (MeanShift only {ev['reward_meanshift_mean']:.3f})"
        )
    return summary


def load_policy(path: str | os.PathLike[str] | None = None) -> MLPPolicy:
    """The committed RL-DCA policy (or one at ``path``)."""
    return MLPPolicy.load(path or DEFAULT_POLICY_PATH)
