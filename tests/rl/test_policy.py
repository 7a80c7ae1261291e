"""MLP policies: NumPy inference equals the Stable-Baselines3 actor; checkpoints round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgerl.rl.policy import MLPPolicy
from edgerl.utils.errors import InputError


def test_matches_sb3_greedy_actions(tmp_path: Path) -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    from edgerl.repose.env import RLDCAEnv

    env = RLDCAEnv()
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=32,
        seed=3,
        device="cpu",
        policy_kwargs=dict(net_arch=dict(pi=[128, 128], vf=[128, 128]), activation_fn=torch.nn.ReLU),
    )
    model.set_logger(Logger(folder=None, output_formats=[]))  # no temp log folder
    model.learn(128)
    pol = MLPPolicy.from_sb3(model)
    assert pol.obs_dim == env.observation_space.shape[0] and pol.n_actions == 3
    rng = np.random.default_rng(0)
    obs = rng.random((200, pol.obs_dim)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    assert [pol.act(o) for o in obs] == expected.tolist()
    pol.save(tmp_path / "p.pt")
    back = MLPPolicy.load(tmp_path / "p.pt")
    assert np.allclose(back.logits(obs), pol.logits(obs))


def test_hand_computed_logits() -> None:
    w1 = np.array([[1.0, -1.0], [0.5, 0.5]])
    b1 = np.array([0.0, -1.0])
    w2 = np.array([[1.0, 0.0], [0.0, 2.0]])
    pol = MLPPolicy([(w1, b1), (w2, np.zeros(2))])
    # obs (3, 1): hidden relu([2, 1]) = [2, 1]; logits [2, 2] -> tie -> argmax 0
    assert pol.logits(np.array([3.0, 1.0])).tolist() == [2.0, 2.0]
    # obs (1, 3): hidden relu([-2, 1]) = [0, 1]; logits [0, 2] -> action 1
    assert pol.act(np.array([1.0, 3.0])) == 1


def test_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="policy file not found"):
        MLPPolicy.load(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(InputError, match="bad.pt: not a policy checkpoint"):
        MLPPolicy.load(bad)
    with pytest.raises(InputError, match="do not chain"):
        MLPPolicy([(np.zeros((4, 3)), np.zeros(4)), (np.zeros((2, 5)), np.zeros(2))])
