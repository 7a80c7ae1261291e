"""Contract, golden and mask tests of the CERL environment (paper 002, eqs. (1)-(13))."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerl.cerl  # noqa: F401  (registers the environment)
from edgerl.cerl.env import (
    BRANCHES,
    ENV_ID,
    N_LAYERS,
    CerlConfig,
    CerlEnv,
    InvalidActionError,
    layer_data_bits,
    layer_workload_cycles,
    make_config,
)
from edgerl.edge.profiler import partition_layers
from edgerl.edge.zoo import build_model
from edgerl.utils.errors import InputError

# One device 100 m east of the MEC server (which sits at the centre (250, 250) of the area).
ONE_DEVICE = dict(
    n_devices=1,
    max_tasks=2,
    share_levels_pct=(10, 50, 100),
    n_subcarriers=10,
    arrival_rate_per_s=0.0,
    slot_s=0.25,
    episode_slots=20,
)
ONE_DEVICE_OPTIONS = {
    "device_positions_m": [[350.0, 250.0]],
    "device_capacities_ghz": [0.8],
    "initial_tasks": [1],
}
IDX_10, IDX_50, IDX_100 = 0, 1, 2


def _wait_row(obs: dict, m: int) -> list[int]:
    return [int(obs["task_node"][m]), int(obs["task_progress"][m]), 0, 0]


def _action(obs: dict, rows: dict[int, list[int]], max_tasks: int) -> np.ndarray:
    """Rows for the given task slots, waits for the other deciding slots, zeros elsewhere."""
    a = np.zeros((max_tasks, 4), dtype=np.int64)
    for m in range(max_tasks):
        if obs["task_deciding"][m]:
            a[m] = _wait_row(obs, m)
    for m, row in rows.items():
        a[m] = row
    return a


# --------------------------------------------------------------------------- model constants


def test_workload_and_sizes_are_the_papers() -> None:
    c = layer_workload_cycles(10.0)
    # Section 5.1: {3*64*64*4*17, 4*32*32*64*17, 64*16*16*64*17, 45.4164e6, 64*8*8*64*17,
    # 64*4*4*64*17, 64*2*2*64*17, 127*9} x xi.
    expect = np.array(
        [835584, 4456448, 17825792, 45416400, 4456448, 1114112, 278528, 1143], dtype=np.float64
    )
    np.testing.assert_allclose(c, expect * 10)
    assert c.sum() == pytest.approx(743_844_550.0)
    bits = layer_data_bits(64)
    # Input 3x64x64, then {4x32x32, 64x16x16, 64x8x8, 64x8x8, 64x4x4, 64x2x2, 64x1x1, 9} x 64.
    np.testing.assert_array_equal(
        bits, np.array([12288, 4096, 16384, 4096, 4096, 1024, 256, 64, 9]) * 64.0
    )
    # The zoo's PyTorch model has the same 8 partitionable layers.
    assert len(partition_layers(build_model("cerl8"))) == N_LAYERS == 8


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_devices", 0),
        ("bandwidth_hz", 0.0),
        ("mec_capacity_ghz", -1.0),
        ("device_capacity_min_ghz", -0.1),
        ("share_levels_pct", (50, 10)),
        ("share_levels_pct", (0, 50)),
        ("share_levels_pct", ()),
        ("n_subcarriers", 0),
        ("weight_energy", -0.5),
        ("arrival_rate_per_s", -1.0),
        ("max_tasks", 0),
        ("invalid_action", "clip"),
        ("unknown_field", 1),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        CerlEnv(**{field: value})


def test_capacity_range_must_be_ordered() -> None:
    with pytest.raises(InputError, match="device_capacity_min_ghz"):
        make_config(device_capacity_min_ghz=2.0, device_capacity_max_ghz=1.0)


def test_defaults_are_section_5_1() -> None:
    cfg = CerlConfig()
    assert (cfg.device_capacity_min_ghz, cfg.device_capacity_max_ghz) == (0.1, 1.0)
    assert cfg.mec_capacity_ghz == 10.0
    assert cfg.bandwidth_hz == 20e6 and cfg.tx_power_w == 1.0 and cfg.noise_dbm == -113.0
    assert cfg.k0 == 1e-26 and cfg.path_loss_exponent == 4.0 and cfg.deadline_s == 3.0
    assert (cfg.weight_energy, cfg.weight_delay) == (0.8, 0.2)
    assert cfg.share_levels_pct == tuple(range(1, 101))


# --------------------------------------------------------------------------- API checker


def test_check_env_on_registered_id() -> None:
    # check_env steps with action_space.sample(), which ignores the masks: use the mode in which
    # an invalid task action becomes a (penalised, reported) wait.
    env = gym.make(ENV_ID, invalid_action="wait", n_devices=3, max_tasks=4, arrival_rate_per_s=1.0)
    check_env(env.unwrapped, skip_render_check=True)
    check_env(gym.make(ENV_ID, invalid_action="wait").unwrapped, skip_render_check=True)


def test_default_mode_rejects_unmasked_samples() -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    env.action_space.seed(0)
    with pytest.raises(InvalidActionError):
        for _ in range(5):
            env.step(env.action_space.sample())


def test_wrong_action_shape() -> None:
    env = CerlEnv(n_devices=2, max_tasks=3)
    env.reset(seed=0)
    with pytest.raises(InputError, match="shape"):
        env.step(np.zeros((2, 4), dtype=np.int64))


# --------------------------------------------------------------------------- golden costs

# Hand computation shared by the golden tests (all from section 5.1 and eqs. (1)-(6)):
#   W_total = (835584 + 4456448 + 17825792 + 45416400 + 4456448 + 1114112 + 278528 + 1143) x 10
#           = 743,844,550 cycles.
#   noise = -113 dBm = 10^(-11.3) mW = 5.0118723e-15 W; g = 100^-4 = 1e-8;
#   SNR = g p / noise = 1e-8 / 5.0118723e-15 = 1,995,262.3; log2(1 + SNR) = 20.928148;
#   R = (B / S) log2(1 + SNR) = 2e6 x 20.928148 = 41,856,295.4 bit/s          (eq. (2))


def test_golden_local_whole_model() -> None:
    # LC at 100 % of a 0.8 GHz device: r = 8e8 cycles/s, no transfer.
    #   T = C / r = 743844550 / 8e8 = 0.9298056875 s                             (eq. (1))
    #   E = k0 C r^2 = 1e-26 x 743844550 x 6.4e17 = 4.76060512 J                (eq. (4))
    #   cost = 0.8 x 4.76060512 + 0.2 x 0.9298056875 = 3.9944452335             (eq. (6))
    env = CerlEnv(**ONE_DEVICE)
    obs, _ = env.reset(seed=0, options=ONE_DEVICE_OPTIONS)
    assert obs["task_deciding"][0] == 1 and obs["task_node"][0] == 1
    obs, reward, terminated, truncated, info = env.step(_action(obs, {0: [1, 8, IDX_100, 0]}, 2))
    assert reward == pytest.approx(-3.9944452335, rel=1e-10)
    assert info["energy_j"] == pytest.approx(4.76060512, rel=1e-10)
    assert info["delay_s"] == pytest.approx(0.9298056875, rel=1e-10)
    assert info["collaborations"] == 0
    # Busy for ceil(0.9298 / 0.25) = 4 slots (0..3), completed at the start of slot 4.
    for _ in range(2):
        obs, reward, *_, info = env.step(np.zeros((2, 4), dtype=np.int64))
        assert reward == 0.0 and info["completed"] == 0
    obs, reward, *_, info = env.step(np.zeros((2, 4), dtype=np.int64))
    assert info["completed"] == 1 and reward == 0.0
    assert not terminated and not truncated


def test_golden_offload_whole_model_to_mec() -> None:
    # EC: send the 3x64x64 input (12288 x 64 = 786,432 bits) to the MEC server, run all layers
    # at 10 % of 10 GHz = 1e9 cycles/s.
    #   T_trans = 786432 / 41856295.44 = 0.018788858 s, E_trans = 1 W x T_trans  (eqs. (3), (5))
    #   T_comp = 0.74384455 s; E_comp = 1e-26 x 743844550 x 1e18 = 7.4384455 J
    #   cost = 0.8 (7.4384455 + 0.018788858) + 0.2 (0.74384455 + 0.018788858) = 6.1183141682
    env = CerlEnv(**ONE_DEVICE)
    obs, _ = env.reset(seed=0, options=ONE_DEVICE_OPTIONS)
    obs, reward, *_, info = env.step(_action(obs, {0: [0, 8, IDX_10, 3]}, 2))
    assert reward == pytest.approx(-6.1183141682, rel=1e-9)
    assert info["collaborations"] == 1
    # The subcarrier is held during the slot of the transfer only.
    assert obs["free_subcarriers"].all()
    assert obs["free_share_pct"][0] == 90  # the MEC share is held while the block runs


def test_golden_two_step_collaboration() -> None:
    # Step 1 at slot 0: layers 1-3 on the 0.8 GHz device at 100 %:
    #   C = (835584 + 4456448 + 17825792) x 10 = 231,178,240 cycles
    #   T = 0.2889728 s, E = 1e-26 x 231178240 x 6.4e17 = 1.479540736 J
    #   cost_1 = 0.8 x 1.479540736 + 0.2 x 0.2889728 = 1.2414271488
    # The step lasts 0.289 s -> busy for 2 slots of 0.25 s, decides again at slot 2.
    # Step 2 at slot 2: send O^3 = 64x8x8 x 64 = 262,144 bits to the MEC server, layers 4-8 at
    # 1e9 cycles/s:
    #   T_trans = 262144 / 41856295.44 = 0.0062629527 s
    #   C = 743844550 - 231178240 = 512,666,310 cycles, T = 0.51266631 s, E = 5.1266631 J
    #   cost_2 = 0.8 (5.1266631 + 0.0062629527) + 0.2 (0.51266631 + 0.0062629527) = 4.2101266947
    env = CerlEnv(**ONE_DEVICE)
    obs, _ = env.reset(seed=0, options=ONE_DEVICE_OPTIONS)
    obs, r1, *_ = env.step(_action(obs, {0: [1, 3, IDX_100, 0]}, 2))
    assert r1 == pytest.approx(-1.2414271488, rel=1e-10)
    assert obs["task_deciding"][0] == 0
    obs, r_busy, *_ = env.step(np.zeros((2, 4), dtype=np.int64))
    assert r_busy == 0.0 and obs["task_deciding"][0] == 1 and obs["task_progress"][0] == 3
    obs, r2, *_, info = env.step(_action(obs, {0: [0, 8, IDX_10, 0]}, 2))
    assert r2 == pytest.approx(-4.2101266947, rel=1e-9)
    for _ in range(3):
        obs, _, _, _, info = env.step(np.zeros((2, 4), dtype=np.int64))
    # The second step ends at 0.5 + 0.00626 + 0.51267 = 1.01893 s after the arrival.
    env_stats = env.sim.episode_stats()
    assert env_stats["completed"][0] == 1
    assert env_stats["task_delay_s_sum"][0] == pytest.approx(1.0189292627, rel=1e-9)
    assert env_stats["system_cost"][0] == pytest.approx(1.2414271488 + 4.2101266947, rel=1e-9)
    assert env_stats["collaborations"][0] == 1


def test_cost_is_weighted_energy_plus_delay() -> None:
    env = CerlEnv(n_devices=4, max_tasks=6, arrival_rate_per_s=1.0, episode_slots=12)
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=4)
    total_reward = 0.0
    while True:
        obs, r, term, trunc, info = env.step(env.decoder.sample(obs, rng))
        total_reward += r
        assert info["system_cost"] == pytest.approx(0.8 * info["energy_j"] + 0.2 * info["delay_s"])
        if term or trunc:
            break
    stats = info["episode_stats"]
    assert stats["return"] == pytest.approx(total_reward)
    assert stats["cost"] == pytest.approx(stats["system_cost"] + stats["penalty"])


# --------------------------------------------------------------------------- constraints


def _two_task_env(**over: object) -> tuple[CerlEnv, dict]:
    cfg = dict(ONE_DEVICE, n_devices=2, **over)
    env = CerlEnv(**cfg)
    obs, _ = env.reset(
        seed=0,
        options={
            "device_positions_m": [[350.0, 250.0], [250.0, 350.0]],
            "device_capacities_ghz": [0.8, 0.8],
            "initial_tasks": [1, 2],
        },
    )
    return env, obs


def test_subcarrier_exclusive_across_tasks() -> None:  # constraint (7)
    env, obs = _two_task_env(n_subcarriers=2)
    first = [0, 8, IDX_10, 0]
    # Given task 0's transfer on subcarrier 0, task 1 may only use subcarrier 1.
    mask = env.masks_given_partial([*first, 0, 8, IDX_10])
    np.testing.assert_array_equal(mask, [False, True])
    snap = env.snapshot()
    with pytest.raises(InvalidActionError, match=r"\(7\)") as err:
        env.step(np.array([first, [0, 8, IDX_10, 0]]))
    assert err.value.task_slot == 1 and err.value.branch == "subcarrier"
    env.restore(snap)
    obs, *_ = env.step(np.array([first, [0, 8, IDX_10, 1]]))
    assert obs["free_share_pct"][0] == 80


def test_all_subcarriers_taken_forbids_transfers() -> None:  # constraint (7)
    env, obs = _two_task_env(n_subcarriers=1)
    first = [0, 8, IDX_10, 0]
    node_mask = env.masks_given_partial(first)
    # Only task 1's own device (a local block or a wait) is left.
    np.testing.assert_array_equal(node_mask, [False, False, True])
    with pytest.raises(InvalidActionError, match=r"\(7\)") as err:
        env.step(np.array([first, [0, 8, IDX_10, 0]]))
    assert err.value.branch == "node"


def test_subcarrier_held_for_the_whole_transfer() -> None:  # constraint (7) across slots
    # 100 kHz on one subcarrier: R = 1e5 x 20.928148 = 2.0928 Mbit/s at 100 m, so the
    # 786,432-bit input takes 0.376 s: the subcarrier is held in slots 0 and 1.
    cfg = dict(ONE_DEVICE, bandwidth_hz=1e5, n_subcarriers=1)
    env = CerlEnv(**cfg)
    obs, _ = env.reset(seed=0, options={**ONE_DEVICE_OPTIONS, "initial_tasks": [1, 1]})
    obs, *_, info = env.step(np.array([[0, 8, IDX_10, 0], [1, 0, 0, 0]]))
    assert info["delay_s"] == pytest.approx(786432 / 2.0928147720850e6 + 0.74384455, rel=1e-9)
    assert obs["free_subcarriers"].tolist() == [0]
    assert env.masks_given_partial([0, 0, 0, 0]).tolist() == [False, True]  # no transfer now
    with pytest.raises(InvalidActionError, match=r"\(7\)"):
        env.step(np.array([[0, 0, 0, 0], [0, 8, IDX_10, 0]]))
    obs, *_ = env.step(np.array([[0, 0, 0, 0], [1, 0, 0, 0]]))
    assert obs["free_subcarriers"].tolist() == [1]
    env.step(np.array([[0, 0, 0, 0], [0, 8, IDX_10, 0]]))


def test_node_capacity() -> None:  # constraint (8)
    env = CerlEnv(**dict(ONE_DEVICE, share_levels_pct=(50, 100)))
    obs, _ = env.reset(seed=0, options={**ONE_DEVICE_OPTIONS, "initial_tasks": [1, 1]})
    first = [1, 8, 0, 0]  # 50 % of the device
    share = env.masks_given_partial([*first, 1, 8])
    np.testing.assert_array_equal(share, [True, False])  # 100 % no longer fits
    snap = env.snapshot()
    with pytest.raises(InvalidActionError, match=r"\(8\)") as err:
        env.step(np.array([first, [1, 8, 1, 0]]))
    assert err.value.task_slot == 1 and err.value.branch == "share"
    env.restore(snap)
    # With the whole device taken by task 0, task 1 can only wait there.
    blocks = env.masks_given_partial([1, 8, 1, 0, 1])
    assert blocks.tolist() == [True] + [False] * N_LAYERS
    obs, *_ = env.step(np.array([[1, 8, 1, 0], [1, 0, 0, 0]]))
    # The share stays held while the 0.93 s block runs.
    assert obs["free_share_pct"][1] == 0
    assert obs["task_deciding"].tolist() == [0, 1]
    with pytest.raises(InvalidActionError, match=r"\(8\)"):
        env.step(np.array([[0, 0, 0, 0], [1, 8, 0, 0]]))


def test_deadline_is_masked_and_failure_is_penalised() -> None:  # constraint (10), eq. (13)
    cfg = dict(ONE_DEVICE, share_levels_pct=(100,), failure_penalty=7.5)
    env = CerlEnv(**cfg)
    options = {**ONE_DEVICE_OPTIONS, "device_capacities_ghz": [0.1]}
    obs, _ = env.reset(seed=0, options=options)
    # All 8 layers at 0.1 GHz take 7.44 s > 3 s: not offered, and rejected when forced.
    blocks = env.masks_given_partial([1])
    assert not blocks[N_LAYERS]
    with pytest.raises(InvalidActionError, match=r"\(10\)"):
        env.step(np.array([[1, 8, 0, 0], [0, 0, 0, 0]]))
    # Waiting until the deadline: 3 s = 12 slots, the failure is charged at the 12th step.
    rewards = []
    for _ in range(12):
        obs, r, term, trunc, info = env.step(_action(obs, {}, 2))
        rewards.append(r)
    assert rewards[:-1] == [0.0] * 11 and rewards[-1] == -7.5
    assert info["failed"] == 1 and not term
    assert obs["task_deciding"].sum() == 0


def test_nonfinal_block_must_leave_time() -> None:
    # 1 GHz device, one 3 s deadline = 12 slots; a first block of layers 1-3 (0.23 s) is fine,
    # but at slot 11 (0.25 s left) only a final block or a wait remains.
    env = CerlEnv(**dict(ONE_DEVICE, share_levels_pct=(100,)))
    obs, _ = env.reset(seed=0, options={**ONE_DEVICE_OPTIONS, "device_capacities_ghz": [1.0]})
    assert env.masks_given_partial([1])[3]
    for _ in range(11):
        obs, *_ = env.step(_action(obs, {}, 2))
    blocks = env.masks_given_partial([1])
    assert blocks[0] and not blocks[1:].any()  # layers left need 0.74 s: only the wait
    nodes = env.masks_given_partial([])
    assert nodes[0]  # the MEC server at 100 % would finish in 0.074 s + transfer


def test_empty_or_busy_slots_need_zero_rows() -> None:
    env = CerlEnv(**ONE_DEVICE)
    obs, _ = env.reset(seed=0, options=ONE_DEVICE_OPTIONS)
    with pytest.raises(InvalidActionError, match="holds no task"):
        env.step(np.array([[1, 8, 2, 0], [1, 0, 0, 0]]))


def test_invalid_wait_mode_replaces_and_reports() -> None:
    env = CerlEnv(**dict(ONE_DEVICE, invalid_action="wait", invalid_action_penalty=2.0))
    obs, _ = env.reset(seed=0, options=ONE_DEVICE_OPTIONS)
    obs, r, *_, info = env.step(np.array([[1, 0, 2, 0], [0, 0, 0, 0]]))  # block before layer 1
    assert info["invalid"] == 1 and r == -2.0
    assert obs["task_deciding"][0] == 1 and obs["task_progress"][0] == 0


# --------------------------------------------------------------------------- masks (property)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_devices=st.integers(1, 4),
    max_tasks=st.integers(1, 5),
    n_sc=st.integers(1, 3),
    levels=st.sampled_from([(100,), (25, 100), (5, 30, 60, 100), (1, 2, 50)]),
    seed=st.integers(0, 10_000),
)
def test_masked_actions_accepted_and_masked_values_raise(
    n_devices: int, max_tasks: int, n_sc: int, levels: tuple[int, ...], seed: int
) -> None:
    env = CerlEnv(
        n_devices=n_devices,
        max_tasks=max_tasks,
        n_subcarriers=n_sc,
        share_levels_pct=levels,
        arrival_rate_per_s=2.0,
        slot_s=0.5,
        episode_slots=8,
    )
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(8):
        action = env.decoder.sample(obs, rng)
        flat = action.reshape(-1)
        # Every sub-action lies in the mask given its prefix ...
        for k in range(flat.size):
            assert env.masks_given_partial(flat[:k])[flat[k]]
        # ... and replacing one deciding sub-action by a masked value raises.
        deciding = np.flatnonzero(obs["task_deciding"])
        if deciding.size:
            m = int(rng.choice(deciding))
            br = int(rng.integers(4))
            k = 4 * m + br
            mask = env.masks_given_partial(flat[:k])
            if not mask.all():
                bad = flat.copy()
                bad[k] = int(rng.choice(np.flatnonzero(~mask)))
                snap = env.snapshot()
                with pytest.raises(InvalidActionError) as err:
                    env.step(bad.reshape(action.shape))
                assert err.value.task_slot == m and err.value.branch == BRANCHES[br]
                env.restore(snap)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break


def test_union_masks_cover_sampled_actions() -> None:
    env = CerlEnv(n_devices=3, max_tasks=4, arrival_rate_per_s=2.0, share_levels_pct=(10, 50, 100))
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=2)
    for _ in range(10):
        masks = env.action_masks()
        assert set(masks) == set(BRANCHES)
        action = env.decoder.sample(obs, rng)
        for br, name in enumerate(BRANCHES):
            assert masks[name][np.arange(4), action[:, br]].all()
        obs, *_ = env.step(action)


def test_greedy_respects_masks() -> None:
    env = CerlEnv(n_devices=2, max_tasks=3, arrival_rate_per_s=2.0, share_levels_pct=(10, 100))
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(6):
        scores = [rng.normal(size=(3, n)) for n in env.decoder.nvec]
        action = env.decoder.greedy(obs, scores)
        obs, *_ = env.step(action)  # raises if greedy left the masks


def test_masked_prefix_is_rejected() -> None:
    env = CerlEnv(**ONE_DEVICE)
    env.reset(seed=0, options=ONE_DEVICE_OPTIONS)
    with pytest.raises(InvalidActionError):
        env.masks_given_partial([1, 0, 2])  # block 0 with a share: 'share' is masked after a wait
    with pytest.raises(InputError, match="complete"):
        env.masks_given_partial([1, 8, 2, 0, 0, 0, 0, 0])


# --------------------------------------------------------------------------- state graph


def test_observation_graph() -> None:
    env = CerlEnv(**dict(ONE_DEVICE, n_devices=2))
    obs, _ = env.reset(
        seed=0, options={"device_positions_m": [[350, 250], [250, 350]], "initial_tasks": [1]}
    )
    n1, nl = 3, N_LAYERS
    adj = obs["adj"]
    assert (adj == adj.T).all() and not np.diag(adj).any()
    assert adj[:n1, :n1].sum() == 6  # fully linked computing nodes (E_alpha)
    rows = n1 + np.arange(nl)
    assert all(adj[rows[i], rows[i + 1]] for i in range(nl - 1))  # E_beta chain of task 0
    assert adj[1, rows[0]] == 1  # next layer -> node holding the data (E_alpha-beta)
    assert obs["node_mask"].tolist() == [1] * (n1 + nl) + [0] * nl
    assert obs["x"][n1 + nl :].sum() == 0  # empty task slot
    obs, *_ = env.step(_action(obs, {0: [2, 3, IDX_100, 0]}, 2))
    adj = obs["adj"]
    assert adj[2, rows[:3]].all() and not adj[1, rows[:3]].any()  # layers 1-3 run on node 2
    assert obs["x"][rows[:3], 13].all()  # running
    assert obs["x"][rows[3:], 14].all()  # pending
    assert env.observation_space.contains(obs)


def test_reset_determinism() -> None:
    env = CerlEnv(n_devices=5, max_tasks=6, arrival_rate_per_s=1.0)
    o1, _ = env.reset(seed=11)
    o2, _ = env.reset(seed=11)
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])
    o3, _ = env.reset(seed=12)
    assert not np.array_equal(o1["x"], o3["x"])

    def rollout(seed: int) -> list[float]:
        rng = np.random.default_rng(5)
        obs, _ = env.reset(seed=seed)
        out = []
        for _ in range(15):
            obs, r, *_ = env.step(env.decoder.sample(obs, rng))
            out.append(r)
        return out

    assert rollout(3) == rollout(3)


def test_episode_end_and_drain() -> None:
    env = CerlEnv(n_devices=3, max_tasks=6, arrival_rate_per_s=1.0, episode_slots=5)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(5):
        obs, _, term, trunc, info = env.step(env.decoder.sample(obs, rng))
        assert not term
        assert trunc == (t == 4)
    assert "episode_stats" in info
    with pytest.raises(InputError, match="reset"):
        env.step(env.decoder.sample(obs, rng))

    env = CerlEnv(
        n_devices=3, max_tasks=6, arrival_rate_per_s=1.0, episode_slots=5, drain_at_end=True
    )
    obs, _ = env.reset(seed=0)
    steps = 0
    while True:
        obs, _, term, trunc, info = env.step(env.decoder.sample(obs, rng))
        steps += 1
        assert not trunc
        if term:
            break
    stats = info["episode_stats"]
    assert steps >= 5 and stats["unfinished"] == 0
    assert stats["completed"] + stats["failed"] == stats["arrived"]
    assert steps <= 5 + math.ceil(3.0 / 0.25) + 1
