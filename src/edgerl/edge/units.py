"""Radio unit conversions, thermal noise and the Shannon rate.

Every function accepts a Python number or a NumPy array and broadcasts like NumPy; a scalar
input gives a NumPy scalar back, an array input an array of the broadcast shape.

Conventions: powers in watts (W) or dBm, ratios linear or dB, bandwidth in Hz, rates in
bit/s. ``dBm = 10 log10(P / 1 mW)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
"""A number or anything ``numpy.asarray`` turns into a float array."""

THERMAL_NOISE_DENSITY_DBM_PER_HZ: float = -174.0
"""Thermal noise density kT at about 290 K, in dBm/Hz (the usual cellular-link figure)."""


def _as_float(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _out(x: np.ndarray) -> np.ndarray | np.floating:
    # ``x[()]`` turns a 0-d array into a NumPy scalar and leaves other arrays alone.
    return x[()]


def dbm_to_w(dbm: ArrayLike) -> np.ndarray | np.floating:
    """Convert a power in dBm to watts: ``P_W = 10^(dBm / 10) / 1000``.

    Args:
        dbm: Power in dBm.

    Returns:
        Power in watts.
    """
    return _out(np.power(10.0, (_as_float(dbm) - 30.0) / 10.0))


def w_to_dbm(watts: ArrayLike) -> np.ndarray | np.floating:
    """Convert a power in watts to dBm: ``dBm = 10 log10(P_W) + 30``.

    Args:
        watts: Power in watts; must be > 0 (0 W is -inf dBm).

    Returns:
        Power in dBm.

    Raises:
        ValueError: If any power is negative.
    """
    w = _as_float(watts)
    if np.any(w < 0):
        raise ValueError(f"power must be >= 0 W, got {watts!r}")
    with np.errstate(divide="ignore"):
        return _out(10.0 * np.log10(w) + 30.0)


def db_to_linear(db: ArrayLike) -> np.ndarray | np.floating:
    """Convert a power ratio in dB to a linear ratio: ``10^(dB / 10)``.

    Args:
        db: Ratio in dB.

    Returns:
        Linear power ratio.
    """
    return _out(np.power(10.0, _as_float(db) / 10.0))


def linear_to_db(ratio: ArrayLike) -> np.ndarray | np.floating:
    """Convert a linear power ratio to dB: ``10 log10(ratio)``.

    Args:
        ratio: Linear power ratio; must be >= 0 (0 gives -inf dB).

    Returns:
        Ratio in dB.

    Raises:
        ValueError: If any ratio is negative.
    """
    r = _as_float(ratio)
    if np.any(r < 0):
        raise ValueError(f"power ratio must be >= 0, got {ratio!r}")
    with np.errstate(divide="ignore"):
        return _out(10.0 * np.log10(r))


def thermal_noise_w(
    bandwidth_hz: ArrayLike,
    noise_figure_db: ArrayLike = 0.0,
    density_dbm_per_hz: ArrayLike = THERMAL_NOISE_DENSITY_DBM_PER_HZ,
) -> np.ndarray | np.floating:
    """Receiver noise power over a band: ``N_dBm = density + 10 log10(B) + NF``.

    HC-MAPPO-L (Table I) uses -174 dBm/Hz with a 6 dB noise figure.

    Args:
        bandwidth_hz: Receiver bandwidth in Hz (> 0).
        noise_figure_db: Receiver noise figure in dB.
        density_dbm_per_hz: Noise power spectral density in dBm/Hz.

    Returns:
        Noise power in watts.

    Raises:
        ValueError: If any bandwidth is not positive.
    """
    b = _as_float(bandwidth_hz)
    if np.any(b <= 0):
        raise ValueError(f"bandwidth_hz must be > 0, got {bandwidth_hz!r}")
    noise_dbm = _as_float(density_dbm_per_hz) + 10.0 * np.log10(b) + _as_float(noise_figure_db)
    return dbm_to_w(noise_dbm)


def shannon_rate_bps(bandwidth_hz: ArrayLike, snr_linear: ArrayLike) -> np.ndarray | np.floating:
    """Shannon capacity ``R = B log2(1 + SNR)`` in bit/s.

    Args:
        bandwidth_hz: Bandwidth in Hz (>= 0).
        snr_linear: Signal-to-noise ratio, linear (>= 0).

    Returns:
        Achievable rate in bit/s.

    Raises:
        ValueError: If any bandwidth or SNR is negative.
    """
    b = _as_float(bandwidth_hz)
    snr = _as_float(snr_linear)
    if np.any(b < 0):
        raise ValueError(f"bandwidth_hz must be >= 0, got {bandwidth_hz!r}")
    if np.any(snr < 0):
        raise ValueError(f"snr_linear must be >= 0, got {snr_linear!r}")
    # log1p keeps precision at very low SNR, where 1 + SNR rounds to 1.
    return _out(b * np.log1p(snr) / np.log(2.0))
