"""The batched CERL environment equals B single environments with the same seeds and actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import edgerl.cerl  # noqa: F401  (registers the environment)
from edgerl.cerl.env import ENV_ID, BatchedCerlEnv, CerlEnv, InvalidActionError

CFG = dict(
    n_devices=4,
    max_tasks=6,
    share_levels_pct=(10, 50, 100),
    n_subcarriers=3,
    arrival_rate_per_s=1.5,
    episode_slots=6,
)


def _assert_obs_equal(single: dict, batched: dict, b: int) -> None:
    assert single.keys() == batched.keys()
    for k in single:
        np.testing.assert_array_equal(single[k], batched[k][b], err_msg=k)


def test_batch_equals_single_envs() -> None:
    n, seed = 3, 21
    venv = BatchedCerlEnv(num_envs=n, **CFG)
    envs = [CerlEnv(**CFG) for _ in range(n)]
    bobs, _ = venv.reset(seed=seed)
    sobs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    for i in range(n):
        _assert_obs_equal(sobs[i], bobs, i)
    rng = np.random.default_rng(0)
    n_tasks = 0
    for step in range(9):  # crosses the end of the first episode (6 slots) and the autoreset
        actions = np.stack([e.decoder.sample(o, rng) for e, o in zip(envs, sobs)])
        n_tasks += int(np.count_nonzero(actions[..., 2]))
        bobs, brew, bterm, btrunc, binfo = venv.step(actions)
        for i, e in enumerate(envs):
            o, r, term, trunc, info = e.step(actions[i])
            assert r == brew[i]
            assert term == bterm[i] and trunc == btrunc[i]
            for key in ("system_cost", "completed", "failed", "collaborations"):
                assert info[key] == binfo[key][i]
            if term or trunc:
                _assert_obs_equal(o, binfo["final_obs"], i)
                for key, val in info["episode_stats"].items():
                    assert val == binfo["episode_stats"][key][i]
                o, _ = e.reset()  # same generator, continued, as the batch's autoreset
            sobs[i] = o
            _assert_obs_equal(o, bobs, i)
        assert btrunc.all() == (step == 5)
    assert n_tasks > 0  # the comparison exercised real decisions


def test_batched_decoder_matches_single() -> None:
    venv = BatchedCerlEnv(num_envs=2, **CFG)
    bobs, _ = venv.reset(seed=3)
    env = CerlEnv(**CFG)
    obs, _ = env.reset(seed=4)
    rng = np.random.default_rng(1)
    scores = [rng.normal(size=(2, 6, k)) for k in venv.decoder.nvec]
    batched = venv.decoder.greedy(bobs, scores)
    single = env.decoder.greedy(obs, [s[1] for s in scores])
    np.testing.assert_array_equal(batched[1], single)
    masks = venv.masks_given_partial(batched[:, 0, :2])
    assert masks.shape == (2, 3)  # share levels of task slot 0
    venv.step(batched)


def test_batched_invalid_action_names_copy() -> None:
    venv = BatchedCerlEnv(num_envs=2, **CFG)
    bobs, _ = venv.reset(seed=0)
    actions = venv.decoder.sample(bobs, np.random.default_rng(0))
    m = int(np.flatnonzero(bobs["task_deciding"][1])[0])
    actions[1, m, 1] = 0 if bobs["task_progress"][1, m] > 0 else 9
    with pytest.raises(InvalidActionError) as err:
        venv.step(actions)
    assert err.value.env_index == 1 and err.value.task_slot == m
    assert "env 1" in str(err.value)


def test_drain_mode_resets_copies_on_their_own() -> None:
    cfg = dict(CFG, drain_at_end=True, episode_slots=3)
    venv = BatchedCerlEnv(num_envs=2, **cfg)
    envs = [CerlEnv(**cfg) for _ in range(2)]
    bobs, _ = venv.reset(seed=7)
    sobs = [e.reset(seed=7 + i)[0] for i, e in enumerate(envs)]
    rng = np.random.default_rng(3)
    ended = 0
    for _ in range(40):
        actions = np.stack([e.decoder.sample(o, rng) for e, o in zip(envs, sobs)])
        bobs, brew, bterm, _, _ = venv.step(actions)
        for i, e in enumerate(envs):
            o, r, term, _, _ = e.step(actions[i])
            assert r == brew[i] and term == bterm[i]
            if term:
                ended += 1
                o, _ = e.reset()
            sobs[i] = o
            _assert_obs_equal(o, bobs, i)
    assert ended >= 2


def test_make_vec_uses_the_batched_env() -> None:
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", n_devices=3)
    assert isinstance(venv.unwrapped, BatchedCerlEnv)
    obs, _ = venv.reset(seed=0)
    assert obs["x"].shape[0] == 2
    assert venv.observation_space.contains(obs)
