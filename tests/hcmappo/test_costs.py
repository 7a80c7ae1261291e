"""Golden values of the HC-MAPPO-L cost model (paper 003, eqs. (4)-(12), (23)-(25))."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.hcmappo import costs

# A made-up 3-layer model, per sample (index = split z = 0..3):
#   layer FLOPs 4e9, 2e9, 1e9 -> device FLOPs 0, 4e9, 6e9, 7e9; edge FLOPs 7e9, 3e9, 1e9, 0
#   upload bytes: input 600 000 at z = 0, then 400 000, 100 000, nothing at z = L = 3
#   device weights: 0, 1e6, 5e6, 2.5e7 bytes; leakage 1, 0.6, 0.3, 0
DEV_FLOPS = np.array([0.0, 4e9, 6e9, 7e9])
EDGE_FLOPS = np.array([7e9, 3e9, 1e9, 0.0])
UP_BYTES = np.array([600_000.0, 400_000.0, 100_000.0, 0.0])
DEV_PARAM = np.array([0.0, 1e6, 5e6, 2.5e7])
LEAK = np.array([1.0, 0.6, 0.3, 0.0])
# One user: f_k = 2e10 FLOP/s, batch 2, downlink 8e7 bit/s, uplink 4e7 bit/s, half of a
# 1e12 FLOP/s server; epsilon 1e-10 J/FLOP, P_k = 0.5 W, Pre_k = 0.5, raw size 6 units.
F_USER, BATCH, R_DOWN, R_UP, SHARE, F_SERVER = 2e10, 2.0, 8e7, 4e7, 0.5, 1e12
EPS, P_USER, PREF, RAW = 1e-10, 0.5, 0.5, 6.0


def _delay(z: int, share: float = SHARE) -> float:
    parts = (
        costs.download_delay_s(DEV_PARAM[z], R_DOWN),
        costs.local_delay_s(BATCH, DEV_FLOPS[z], F_USER),
        costs.upload_delay_s(BATCH, UP_BYTES[z], R_UP),
        costs.edge_delay_s(BATCH, EDGE_FLOPS[z], share, F_SERVER),
    )
    return float(costs.success_delay_s(*parts))


def test_path_loss_db_golden() -> None:
    # 30 dB + 10 * 3.5 * log10(d / 1 m): d = 100 m -> 30 + 35 * 2 = 100 dB; d = 10 m -> 65 dB
    np.testing.assert_allclose(costs.mean_path_loss_db([100.0, 10.0]), [100.0, 65.0])
    # below 1 m the far-field model is clamped at the reference loss
    np.testing.assert_allclose(costs.mean_path_loss_db(0.2), 30.0)
    # 100 dB -> g = 10^-10
    np.testing.assert_allclose(costs.gain_from_path_loss_db(100.0), 1e-10)


def test_noise_density_golden() -> None:
    # -174 dBm/Hz + 6 dB = -168 dBm/Hz = 10^-16.8 mW/Hz = 10^-19.8 W/Hz
    assert costs.noise_density_w_per_hz(-174.0, 6.0) == pytest.approx(10**-19.8, rel=1e-12)


def test_shannon_rate_golden() -> None:
    # B = 2 MHz, N0F = 1e-17 W/Hz -> noise 2e-11 W; P g = 0.2 W * 3e-10 = 6e-11 W -> SNR = 3
    # R = 2e6 * log2(1 + 3) = 4e6 bit/s
    assert costs.link_rate_bps(2e6, 0.2, 3e-10, 1e-17) == pytest.approx(4e6, rel=1e-12)
    # half the band: noise 1e-11 W, SNR = 6 -> R = 1e6 * log2(7)
    assert costs.link_rate_bps(1e6, 0.2, 3e-10, 1e-17) == pytest.approx(1e6 * np.log2(7.0))
    # no bandwidth, no rate (the limit of B log2(1 + c / B))
    assert costs.link_rate_bps(0.0, 0.2, 3e-10, 1e-17) == 0.0


def test_delay_full_edge_split_zero() -> None:
    # z = 0: no download, no local work; upload 2 * 600000 * 8 / 4e7 = 0.24 s;
    # edge 2 * 7e9 / (0.5 * 1e12) = 0.028 s -> 0.268 s
    assert _delay(0) == pytest.approx(0.268, rel=1e-12)


def test_delay_middle_split() -> None:
    # z = 1: download 1e6 * 8 / 8e7 = 0.1 s; local 2 * 4e9 / 2e10 = 0.4 s;
    # upload 2 * 400000 * 8 / 4e7 = 0.16 s; edge 2 * 3e9 / 5e11 = 0.012 s -> 0.672 s
    assert _delay(1) == pytest.approx(0.672, rel=1e-12)


def test_delay_full_device_split_l() -> None:
    # z = L = 3: download 2.5e7 * 8 / 8e7 = 2.5 s; local 2 * 7e9 / 2e10 = 0.7 s; nothing
    # uploaded or computed on the edge, even with no compute share -> 3.2 s
    assert _delay(3) == pytest.approx(3.2, rel=1e-12)
    assert _delay(3, share=0.0) == pytest.approx(3.2, rel=1e-12)


def test_edge_work_without_share_takes_forever() -> None:
    assert np.isinf(costs.edge_delay_s(1.0, 1e9, 0.0, 1e12))
    assert np.isinf(costs.upload_delay_s(1.0, 10.0, 0.0))
    assert costs.download_delay_s(0.0, 0.0) == 0.0


def test_request_delay_eq5() -> None:
    # eq. (5): a served request keeps its own delay, 12 s included (> tau_fail = 10); inf (no
    # share of a resource it needs) cannot finish and fails; a cache miss fails whatever its
    # delay, at tau_fail
    succ, hit = [1.0, np.inf, 12.0, 0.5], [True, True, True, False]
    delay, ok = costs.request_delay_s(succ, hit, 10.0)
    np.testing.assert_allclose(delay, [1.0, 10.0, 12.0, 10.0])
    np.testing.assert_array_equal(ok, [True, False, True, False])
    # with time-outs (beyond the paper) the 12 s request fails too
    delay, ok = costs.request_delay_s(succ, hit, 10.0, timeout_fails=True)
    np.testing.assert_allclose(delay, [1.0, 10.0, 10.0, 10.0])
    np.testing.assert_array_equal(ok, [True, False, False, False])


def test_user_reward_default_weights_golden() -> None:
    # Defaults: mu1 = mu2 = 5 (Table I), mu3 = 0.02 per s, R_fail = -300, tau-bar = 3 s.
    # privacy 2, energy 1, delay 8 s: -(5 * 2 + 5 * 1 + 0.02 * (8 - 3)) = -(10 + 5 + 0.1) = -15.1
    # delay 2 s (within the limit): -(10 + 5) = -15; failed: -300
    from edgerl.hcmappo.config import HcConfig

    got = costs.configured_user_reward(
        HcConfig(), [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], [8.0, 2.0, 10.0], [True, True, False]
    )
    np.testing.assert_allclose(got, [-15.1, -15.0, -300.0])


def test_energy_golden() -> None:
    # z = 1: 1e-10 * 2 * 4e9 = 0.8 J compute + 0.5 W * 0.16 s = 0.08 J upload -> 0.88 J
    up = costs.upload_delay_s(BATCH, UP_BYTES[1], R_UP)
    assert costs.energy_j(EPS, BATCH, DEV_FLOPS[1], P_USER, up) == pytest.approx(0.88)
    # z = 0: only the upload, 0.5 * 0.24 = 0.12 J; z = L: only compute, 1e-10 * 2 * 7e9 = 1.4 J
    assert costs.energy_j(EPS, BATCH, 0.0, P_USER, 0.24) == pytest.approx(0.12)
    assert costs.energy_j(EPS, BATCH, DEV_FLOPS[3], P_USER, 0.0) == pytest.approx(1.4)


def test_privacy_cost_golden() -> None:
    # (0.31 + 1.88 * 0.5) = 1.25; z = 1: 1.25 * 0.6 * 2 * 6 = 9; z = 0: 1.25 * 1 * 2 * 6 = 15
    got = costs.privacy_cost(PREF, LEAK, BATCH, RAW, 0.31, 1.88)
    np.testing.assert_allclose(got, [15.0, 9.0, 4.5, 0.0])


def test_system_cost_eq12_golden() -> None:
    # privacy (9, 15) -> mean 12; energy (0.88, 0.12) -> mean 0.5; 5 * 12 + 5 * 0.5 = 62.5
    assert costs.system_cost([9.0, 15.0], [0.88, 0.12], 5.0, 5.0) == pytest.approx(62.5)
    # over a batch of copies (users on the last axis)
    got = costs.system_cost([[9.0, 15.0], [0.0, 0.0]], [[0.88, 0.12], [1.0, 3.0]])
    np.testing.assert_allclose(got, [62.5, 10.0])


def test_user_reward_eq25_golden() -> None:
    # served: -(5 * 9 + 5 * 0.88 + 10 * (3.5 - 3)) = -(45 + 4.4 + 5) = -54.4; under the limit no
    # delay term: -(45 + 4.4) = -49.4; failed: R_fail
    got = costs.user_reward(
        [9.0, 9.0, 9.0], [0.88, 0.88, 0.88], [3.5, 2.0, 10.0], [True, True, False]
    )
    np.testing.assert_allclose(got, [-54.4, -49.4, -300.0])


def test_migration_and_deploy_reward_golden() -> None:
    # service 1 is new: 5e7 bytes * 8 / 2e8 bit/s = 2 s; services 0 (kept) and 2 (dropped) cost 0
    mig = costs.migration_cost_s([1, 1, 0], [1, 0, 1], [1e8, 5e7, 2e8], 2e8)
    assert mig == pytest.approx(2.0)
    # eq. (24): 1 * 12 hits - 0.1 * 2 s = 11.8
    assert costs.deploy_reward(12.0, mig, 1.0, 0.1) == pytest.approx(11.8)


def test_normalised_shares() -> None:
    # group 0: weights 1 and 3 -> 1/4, 3/4; group 1: all zero -> equal thirds, except the user
    # that does not use the resource (share 0, and the others split it in halves)
    w = np.array([1.0, 3.0, 0.0, 0.0, 0.0])
    g = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(
        costs.normalised_shares(w, g, np.ones(5, bool), 2), [0.25, 0.75, 1 / 3, 1 / 3, 1 / 3]
    )
    uses = np.array([True, True, True, False, True])
    np.testing.assert_allclose(costs.normalised_shares(w, g, uses, 2), [0.25, 0.75, 0.5, 0.0, 0.5])


def test_shares_sum_to_one_per_group_property() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, n_g = 40, 6
        w = rng.random(n) * (rng.random(n) < 0.7)
        g = rng.integers(0, n_g, n)
        uses = rng.random(n) < 0.8
        s = costs.normalised_shares(w, g, uses, n_g)
        assert np.all(s >= 0) and np.all(s[~uses] == 0)
        per_group = np.bincount(g, weights=s, minlength=n_g)
        used = np.bincount(g, weights=uses.astype(float), minlength=n_g) > 0
        np.testing.assert_allclose(per_group[used], 1.0)
        np.testing.assert_allclose(per_group[~used], 0.0)
