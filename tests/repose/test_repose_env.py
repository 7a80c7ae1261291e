"""Contract, golden and smoke tests of the RL-DCA environment (RE-POSE eqs. (2)-(16))."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pydantic import ValidationError

import edgerl.repose  # noqa: F401  (registers the environment)
from edgerl.repose.clustering import Clustering
from edgerl.repose.env import (
    ACTION_KEEP,
    ACTION_MERGE,
    ACTION_SPLIT,
    ENV_ID,
    RLDCAConfig,
    RLDCAEnv,
    apply_action,
    greedy_refine,
    observe,
    reward_terms,
    synthetic_frames,
)
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections

# A (10,10) 10x10, B (30,10) 10x20, C (80,80) 20x20 in a 100 x 100 frame.
GOLDEN_BOXES = np.array([[5, 5, 15, 15], [25, 0, 35, 20], [70, 70, 90, 90]], dtype=np.float32)
GOLDEN_CFG = dict(
    weight_tightness=10.0,
    weight_area_variance=2.0,
    weight_count=3.0,
    weight_close_pairs=0.5,
    n_min=3,
    n_max=8,
    d_m_frac=1.0,
    bandwidth=0.3,
)


def _small_frames() -> list:
    rng = np.random.default_rng(0)
    frames = synthetic_frames(6, seed=3, frame_wh=(1920, 1080))
    frames.append((np.zeros((0, 4), np.float32), (640, 480)))  # no detections
    frames.append((np.array([[10, 10, 30, 50]], np.float32), (640, 480)))  # one detection
    dets = Detections(rng.uniform(0, 300, (12, 4)).astype(np.float32), np.ones(12), np.zeros(12))
    fixed = dets.boxes.copy()
    fixed[:, 2:] = fixed[:, :2] + 20
    frames.append((Detections(fixed, dets.scores, dets.classes), (400, 400)))
    return frames


def test_check_env_passes() -> None:
    check_env(RLDCAEnv(frames=_small_frames()), skip_render_check=True)
    check_env(RLDCAEnv(), skip_render_check=True)  # built-in synthetic frames


def test_registered_and_makeable() -> None:
    assert ENV_ID in gym.registry
    env = gym.make(ENV_ID, frames=_small_frames(), config={"t_max": 3})
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    steps = 0
    truncated = False
    while not truncated:
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        steps += 1
    assert steps == 3
    env.close()


def test_reset_seed_determinism() -> None:
    actions = [2, 2, 1, 0, 2, 1, 2, 2]
    runs = []
    for _ in range(2):
        env = RLDCAEnv(frames=_small_frames())
        trace = []
        for seed in (11, 12, 13):
            obs, info = env.reset(seed=seed)
            trace.append((info["frame_index"], obs.tobytes()))
            for a in actions:
                obs, r, _, _, _ = env.step(a)
                trace.append((r, obs.tobytes()))
        runs.append(trace)
    assert runs[0] == runs[1]
    env = RLDCAEnv(frames=_small_frames())
    picks = {env.reset(seed=s)[1]["frame_index"] for s in range(40)}
    assert len(picks) > 3  # frames are actually sampled


def test_golden_reward_terms() -> None:
    """R1..R4 by hand for clusters {A, B} and {C}.

    Normalised centres A (0.1, 0.1), B (0.3, 0.1), C (0.8, 0.8); centroids (0.2, 0.1), (0.8, 0.8).
    R1 (eq. 12): cluster {A,B} mean distance 0.1, {C} 0 -> -(0.1 + 0) / 2 = -0.05.
    R2 (eq. 13): areas 100, 200, 400 px^2, mean 700/3 -> units 3/7, 6/7, 12/7;
        Var{3/7, 6/7} = (3/14)^2 = 9/196, Var{12/7} = 0 -> -(9/196) / 2 = -9/392.
    R3 (eq. 14): N = 2 < N_min = 3 -> -(3 - 2) = -1.
    R4 (eq. 15): centroid distance sqrt(0.6^2 + 0.7^2) = 0.922 < d_m = 1 -> one pair -> -1.
    R (eq. 16) = 10 * -0.05 + 2 * -9/392 + 3 * -1 + 0.5 * -1 = -4.0459183673...
    """
    cfg = RLDCAConfig(**GOLDEN_CFG)
    c = Clustering.from_boxes(GOLDEN_BOXES, (100, 100), np.array([0, 0, 1]))
    t = reward_terms(c, cfg)
    assert t.tightness == pytest.approx(-0.05)
    assert t.area_variance == pytest.approx(-9 / 392)
    assert t.count == -1.0
    assert t.close_pairs == -1.0
    assert t.total(cfg) == pytest.approx(-0.5 - 9 / 196 - 3.0 - 0.5)
    # Above N_max: 2 clusters with n_max = 1 -> R3 = -(2 - 1); d_m below the distance -> R4 = 0.
    t2 = reward_terms(c, RLDCAConfig(n_min=0, n_max=1, d_m_frac=0.9))
    assert (t2.count, t2.close_pairs) == (-1.0, 0.0)


def test_golden_reward_through_env_and_observation() -> None:
    env = RLDCAEnv(frames=[(GOLDEN_BOXES, (100, 100))], config=RLDCAConfig(**GOLDEN_CFG))
    obs, info = env.reset(seed=0)
    assert info["n_clusters"] == 2  # MeanShift (bandwidth 0.3) groups {A, B} and {C}
    # eq. (2) rows sorted by size: {A,B}: (0.2, 0.1, 0.1, 0.15, 2/3); {C}: (0.8, 0.8, 0.2, 0.2, 1/3)
    expected = np.zeros(5 * 16 + 1, np.float32)
    expected[:10] = [0.2, 0.1, 0.1, 0.15, 2 / 3, 0.8, 0.8, 0.2, 0.2, 1 / 3]
    expected[-1] = 2 / 16
    np.testing.assert_allclose(obs, expected, atol=1e-6)
    _, reward, _, _, info = env.step(ACTION_KEEP)
    assert reward == pytest.approx(-0.5 - 9 / 196 - 3.0 - 0.5)
    assert info["reward_terms"]["area_variance"] == pytest.approx(-9 / 392)
    # merge -> one cluster: centroid (0.4, 1/3); distances of A, B, C:
    # sqrt(0.09 + 0.0544), sqrt(0.01 + 0.0544), sqrt(0.16 + 0.2178) -> R1 = -mean.
    _, reward, _, _, info = env.step(ACTION_MERGE)
    d = [np.hypot(0.3, 0.1 - 1 / 3), np.hypot(0.1, 0.1 - 1 / 3), np.hypot(0.4, 0.8 - 1 / 3)]
    assert info["reward_terms"]["tightness"] == pytest.approx(-np.mean(d))
    # Var{3/7, 6/7, 12/7} = 2/7 ** 2 * Var{1.5, 3, 6} = (4/49) * 3.5 = 2/7
    assert info["reward_terms"]["area_variance"] == pytest.approx(-2 / 7)
    assert info["reward_terms"]["count"] == -2.0 and info["reward_terms"]["close_pairs"] == 0.0


def test_invalid_actions_are_noops() -> None:
    env = RLDCAEnv(frames=[(np.array([[10, 10, 30, 50]], np.float32), (640, 480))])
    obs0, _ = env.reset(seed=0)
    assert env.action_masks().tolist() == [True, False, False]
    for a in (ACTION_MERGE, ACTION_SPLIT):
        obs, r_invalid, _, _, info = env.step(a)
        assert not info["action_valid"]
        np.testing.assert_array_equal(obs, obs0)
    _, r_keep, _, _, info = env.step(ACTION_KEEP)
    assert info["action_valid"] and r_keep == r_invalid
    with pytest.raises(InputError):
        env.step(3)


def test_observation_truncates_largest_first() -> None:
    rng = np.random.default_rng(0)
    centres = rng.uniform(50, 950, (30, 2))
    boxes = np.column_stack([centres - 5, centres + 5])
    labels = np.repeat(np.arange(10), 3)
    labels[:6] = 0  # cluster 0 has 6 members, cluster 1 is gone -> 9 clusters
    c = Clustering.from_boxes(boxes, (1000, 1000), labels)
    obs = observe(c, 4)
    assert obs.shape == (21,) and obs.dtype == np.float32
    assert obs[4] == pytest.approx(6 / 30)  # the largest cluster comes first
    assert obs[-1] == 1.0  # 9 clusters saturate at n_max_obs = 4
    rows = obs[:20].reshape(4, 5)
    assert rows[1:, 4] == pytest.approx(3 / 30)
    assert (np.diff(rows[1:, 1]) >= 0).all()  # equal sizes: sorted by mu_y


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        RLDCAConfig(n_min=5, n_max=3)
    with pytest.raises(ValidationError):
        RLDCAConfig(n_max=20, n_max_obs=16)
    with pytest.raises(ValidationError):
        RLDCAConfig(alpha_t=1.0)
    with pytest.raises(ValidationError):
        RLDCAConfig(unknown_field=1)
    with pytest.raises(InputError, match=r"frames\[0\]"):
        RLDCAEnv(frames=[(np.zeros((2, 3)), (10, 10))])
    with pytest.raises(InputError, match="at least one"):
        RLDCAEnv(frames=[])


def test_greedy_refine_matches_manual_steps() -> None:
    boxes, wh = synthetic_frames(1, seed=7)[0]
    cfg = RLDCAConfig(t_max=5)
    actions = iter([ACTION_SPLIT, ACTION_SPLIT, ACTION_MERGE, ACTION_KEEP, ACTION_SPLIT])
    labels = greedy_refine(lambda o: next(actions), boxes, wh, cfg)
    env = RLDCAEnv(frames=[(boxes, wh)], config=cfg)
    env.reset(seed=0)
    c = env.clustering
    for a in [ACTION_SPLIT, ACTION_SPLIT, ACTION_MERGE, ACTION_KEEP, ACTION_SPLIT]:
        c, _ = apply_action(c, a)
    np.testing.assert_array_equal(labels, c.labels)
    assert labels.shape == (len(boxes),)


def test_ppo_smoke() -> None:
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    env = RLDCAEnv(frames=synthetic_frames(8, seed=2), config=RLDCAConfig(t_max=8))
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=128,
        batch_size=64,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs=dict(
            net_arch=dict(pi=[128, 128], vf=[128, 128]), activation_fn=torch.nn.ReLU
        ),
    )
    model.set_logger(Logger(folder=None, output_formats=[]))  # no temp log folder
    model.learn(total_timesteps=256)
    boxes, wh = synthetic_frames(1, seed=9)[0]
    labels = greedy_refine(lambda o: model.predict(o, deterministic=True)[0], boxes, wh, env.config)
    assert labels.shape == (len(boxes),) and labels.min() == 0
