"""Channel models: path loss, shadowing statistics, gains and uplink rates."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.edge.channel import (
    channel_gain_from_path_loss,
    log_distance_path_loss_db,
    power_law_gain,
    uplink_rate_bps,
)
from edgerl.edge.units import dbm_to_w, thermal_noise_w


def test_log_distance_goldens() -> None:
    # 30 dB at 1 m, n = 3.5: PL(d) = 30 + 35 log10(d).
    # 1 m -> 30 dB, 10 m -> 65 dB, 100 m -> 100 dB, 1000 m -> 135 dB.
    pl = log_distance_path_loss_db([1.0, 10.0, 100.0, 1000.0], shadowing_std_db=0.0)
    np.testing.assert_allclose(pl, [30.0, 65.0, 100.0, 135.0])
    # Reference distance 10 m with 50 dB there: 100 m -> 50 + 35 = 85 dB.
    assert log_distance_path_loss_db(
        100.0, ref_loss_db=50.0, ref_distance_m=10.0, shadowing_std_db=0.0
    ) == pytest.approx(85.0)
    assert np.ndim(log_distance_path_loss_db(5.0, shadowing_std_db=0.0)) == 0


def test_shadowing_needs_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        log_distance_path_loss_db(100.0)  # default std 8 dB, no generator
    with pytest.raises(ValueError, match="shadowing_std_db"):
        log_distance_path_loss_db(100.0, shadowing_std_db=-1.0, rng=np.random.default_rng(0))


def test_shadowing_statistics() -> None:
    n = 20_000
    pl = log_distance_path_loss_db(np.full(n, 100.0), rng=np.random.default_rng(123))
    assert pl.shape == (n,)
    # Mean 100 dB; the sample mean's standard error is 8 / sqrt(20000) = 0.057 dB (4 sigma: 0.23).
    assert abs(pl.mean() - 100.0) < 0.23
    # Std 8 dB; the sample std's standard error is 8 / sqrt(2 * 20000) = 0.04 dB (5 sigma: 0.2).
    assert abs(pl.std(ddof=1) - 8.0) < 0.2


def test_shadowing_seeded_reproducible() -> None:
    d = np.linspace(10.0, 500.0, 50)
    a = log_distance_path_loss_db(d, rng=np.random.default_rng(7))
    b = log_distance_path_loss_db(d, rng=np.random.default_rng(7))
    c = log_distance_path_loss_db(d, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_distance_clamp_and_validation() -> None:
    # Below 1 m the far-field model is clamped: loss stays at its 1 m value, gain at most 1.
    np.testing.assert_allclose(
        log_distance_path_loss_db([0.0, 0.5, 1.0], shadowing_std_db=0.0), [30.0, 30.0, 30.0]
    )
    np.testing.assert_allclose(power_law_gain([0.0, 0.25, 1.0]), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="distance_m"):
        power_law_gain(-1.0)
    with pytest.raises(ValueError, match="distance_m"):
        log_distance_path_loss_db(np.nan, shadowing_std_db=0.0)


def test_gains() -> None:
    # 100 dB loss -> 1e-10; 30 dB -> 1e-3.
    np.testing.assert_allclose(channel_gain_from_path_loss([100.0, 30.0]), [1e-10, 1e-3])
    # CERL g = d^-4: 10 m -> 1e-4, 100 m -> 1e-8.
    np.testing.assert_allclose(power_law_gain([10.0, 100.0]), [1e-4, 1e-8])
    assert power_law_gain(10.0, exponent=2.0) == pytest.approx(1e-2)


def test_uplink_rate_cerl_golden() -> None:
    # CERL section 5.1: B = 20 MHz, p = 1 W, noise -113 dBm = 5.0119e-15 W, g = 100^-4 = 1e-8.
    # SNR = 1e-8 / 5.0119e-15 = 1.99526e6; log2(1 + 1.99526e6) = log2(2e6) + log2(0.997631)
    # = 20.93157 - 0.00342 = 20.92815; R = 2e7 * 20.92815 = 418.563 Mbit/s.
    rate = uplink_rate_bps(20e6, 1.0, power_law_gain(100.0), dbm_to_w(-113.0))
    assert rate == pytest.approx(418.563e6, rel=1e-5)


def test_uplink_rate_hcmappo_golden() -> None:
    # HC-MAPPO-L: user 20 dBm (0.1 W) at 100 m, PL = 100 dB -> received -80 dBm; noise over
    # 20 MHz with NF 6 dB = -94.9897 dBm; SNR = 14.9897 dB = 31.548; log2(32.548) = 5.02450;
    # R = 2e7 * 5.02450 = 100.490 Mbit/s.
    gain = channel_gain_from_path_loss(log_distance_path_loss_db(100.0, shadowing_std_db=0.0))
    rate = uplink_rate_bps(20e6, dbm_to_w(20.0), gain, thermal_noise_w(20e6, noise_figure_db=6.0))
    assert rate == pytest.approx(100.490e6, rel=1e-4)


def test_uplink_rate_vectorised_and_validated() -> None:
    gains = power_law_gain(np.array([50.0, 100.0, 200.0]))
    rates = uplink_rate_bps(20e6, 1.0, gains, dbm_to_w(-113.0))
    assert rates.shape == (3,)
    assert np.all(np.diff(rates) < 0)  # farther -> slower
    assert uplink_rate_bps(20e6, 0.0, 1e-8, 1e-13) == 0.0
    with pytest.raises(ValueError, match="noise_w"):
        uplink_rate_bps(20e6, 1.0, 1e-8, 0.0)
    with pytest.raises(ValueError, match="tx_power_w"):
        uplink_rate_bps(20e6, -1.0, 1e-8, 1e-13)
    with pytest.raises(ValueError, match="gain"):
        uplink_rate_bps(20e6, 1.0, -1e-8, 1e-13)
