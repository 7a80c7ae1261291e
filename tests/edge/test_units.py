"""Unit conversions, thermal noise and the Shannon rate: hand-computed golden values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerl.edge.units import (
    db_to_linear,
    dbm_to_w,
    linear_to_db,
    shannon_rate_bps,
    thermal_noise_w,
    w_to_dbm,
)


def test_dbm_watt_goldens() -> None:
    # 30 dBm = 1 W, 0 dBm = 1 mW, 20 dBm = 100 mW, -30 dBm = 1 uW.
    assert dbm_to_w(30.0) == pytest.approx(1.0)
    assert dbm_to_w(0.0) == pytest.approx(1e-3)
    assert dbm_to_w(20.0) == pytest.approx(0.1)
    assert dbm_to_w(-30.0) == pytest.approx(1e-6)
    assert w_to_dbm(1.0) == pytest.approx(30.0)
    assert w_to_dbm(1e-3) == pytest.approx(0.0, abs=1e-12)
    # 43 dBm (HC-MAPPO-L's top server power) = 10^1.3 W = 19.95 W.
    assert dbm_to_w(43.0) == pytest.approx(19.9526, rel=1e-5)


def test_db_linear_goldens() -> None:
    assert db_to_linear(0.0) == pytest.approx(1.0)
    assert db_to_linear(20.0) == pytest.approx(100.0)
    assert db_to_linear(-10.0) == pytest.approx(0.1)
    # 3 dB = 10^0.3 = 1.99526 (the "factor of two").
    assert db_to_linear(3.0) == pytest.approx(1.99526, rel=1e-5)
    assert linear_to_db(1000.0) == pytest.approx(30.0)
    assert linear_to_db(0.5) == pytest.approx(-3.0103, abs=1e-4)


def test_vectorised_shapes_and_scalar_return() -> None:
    dbm = np.array([[0.0, 10.0], [20.0, 30.0]])
    w = dbm_to_w(dbm)
    assert isinstance(w, np.ndarray) and w.shape == (2, 2)
    np.testing.assert_allclose(w, [[1e-3, 1e-2], [1e-1, 1.0]])
    assert np.ndim(dbm_to_w(10.0)) == 0
    assert np.ndim(shannon_rate_bps(1e6, 1.0)) == 0
    rates = shannon_rate_bps(np.array([1e6, 2e6])[:, None], np.array([1.0, 3.0, 15.0]))
    assert rates.shape == (2, 3)


def test_negative_inputs_raise() -> None:
    with pytest.raises(ValueError, match="power"):
        w_to_dbm(-1.0)
    with pytest.raises(ValueError, match="ratio"):
        linear_to_db([1.0, -0.1])
    with pytest.raises(ValueError, match="bandwidth_hz"):
        thermal_noise_w(0.0)
    with pytest.raises(ValueError, match="snr_linear"):
        shannon_rate_bps(1e6, -1.0)
    # Zero power is -inf dBm, not an error.
    assert w_to_dbm(0.0) == -math.inf


def test_thermal_noise_golden() -> None:
    # HC-MAPPO-L Table I: -174 dBm/Hz over 20 MHz with a 6 dB noise figure:
    # -174 + 10 log10(2e7) + 6 = -174 + 73.0103 + 6 = -94.9897 dBm = 10^(-12.49897) W = 3.1698e-13 W.
    n = thermal_noise_w(20e6, noise_figure_db=6.0)
    assert w_to_dbm(n) == pytest.approx(-94.9897, abs=1e-4)
    assert n == pytest.approx(3.1698e-13, rel=1e-4)
    # Physics cross-check: kT at 290 K over 1 Hz = 1.380649e-23 * 290 = 4.0039e-21 W (-173.98 dBm).
    assert thermal_noise_w(1.0) == pytest.approx(1.380649e-23 * 290.0, rel=5e-3)
    # Doubling the band adds 3.0103 dB.
    assert w_to_dbm(thermal_noise_w(2e6)) - w_to_dbm(thermal_noise_w(1e6)) == pytest.approx(
        3.0103, abs=1e-4
    )


def test_shannon_goldens() -> None:
    # B log2(1 + SNR): SNR 1 -> 1 bit/s/Hz, 3 -> 2, 15 -> 4, 0 -> 0.
    np.testing.assert_allclose(
        shannon_rate_bps(1e6, np.array([0.0, 1.0, 3.0, 15.0])), [0.0, 1e6, 2e6, 4e6]
    )
    # 20 MHz at 30 dB SNR: 2e7 * log2(1001) = 2e7 * 9.96722 = 199.344 Mbit/s.
    assert shannon_rate_bps(20e6, db_to_linear(30.0)) == pytest.approx(199.3445e6, rel=1e-5)
    # Low-SNR limit B * SNR / ln 2 stays accurate where 1 + SNR rounds to 1.
    assert shannon_rate_bps(1e6, 1e-14) == pytest.approx(1e6 * 1e-14 / math.log(2), rel=1e-9)


@given(st.floats(min_value=-200.0, max_value=100.0))
def test_dbm_round_trip(x: float) -> None:
    assert w_to_dbm(dbm_to_w(x)) == pytest.approx(x, abs=1e-9)
    assert linear_to_db(db_to_linear(x)) == pytest.approx(x, abs=1e-9)
