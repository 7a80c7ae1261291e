"""Wireless channel: path loss, channel gain and uplink rate.

Two channel models are used by the systems built on this core:

* HC-MAPPO-L (paper 003, Table I): log-distance path loss with log-normal shadowing,
  ``PL(d) = PL(d0) + 10 n log10(d / d0) + X_sigma`` with ``PL(d0) = 30 dB`` at 1 m,
  ``n = 3.5`` and ``sigma = 8 dB``; the gain is ``g = 10^(-PL / 10)``.
* CERL (paper 002, section 5.1): the plain power law ``g = d^-4``.

Both feed the Shannon uplink rate ``R = B log2(1 + g p / N)`` (CERL eq. for ``R``; in CERL the
bandwidth passed in is one subcarrier's share ``B / S``).

Distances below ``min_distance_m`` are clamped up to it. Both models describe the far field only:
at ``d -> 0`` the log-distance loss goes to ``-inf`` dB and ``d^-4`` to infinity, which would
give a user standing on top of a server an unbounded rate. With the default 1 m the power law
never yields a gain above 1 (no amplification), and the log-distance loss never drops below its
reference value ``PL(d0)``.

Randomness comes only from a ``numpy.random.Generator`` passed by the caller.
"""

from __future__ import annotations

import numpy as np

from edgerl.edge.units import ArrayLike, shannon_rate_bps

DEFAULT_MIN_DISTANCE_M: float = 1.0
"""Distances below this are clamped up to it (far-field models; see the module docstring)."""


def _clamped_distance(distance_m: ArrayLike, min_distance_m: float) -> np.ndarray:
    d = np.asarray(distance_m, dtype=np.float64)
    if np.any(np.isnan(d)) or np.any(d < 0):
        raise ValueError(f"distance_m must be >= 0 and not NaN, got {distance_m!r}")
    if not min_distance_m > 0:
        raise ValueError(f"min_distance_m must be > 0, got {min_distance_m!r}")
    return np.maximum(d, min_distance_m)


def log_distance_path_loss_db(
    distance_m: ArrayLike,
    ref_loss_db: float = 30.0,
    exponent: float = 3.5,
    ref_distance_m: float = 1.0,
    shadowing_std_db: float = 8.0,
    rng: np.random.Generator | None = None,
    min_distance_m: float = DEFAULT_MIN_DISTANCE_M,
) -> np.ndarray | np.floating:
    """Log-distance path loss with optional log-normal shadowing, in dB.

    ``PL(d) = ref_loss_db + 10 * exponent * log10(d / ref_distance_m) + X``, where
    ``X ~ Normal(0, shadowing_std_db)`` is drawn independently per element from ``rng``.
    Defaults are HC-MAPPO-L's Table I (30 dB at 1 m, n = 3.5, sigma = 8 dB).

    Shadowing is random, so it needs an explicit generator: with ``shadowing_std_db > 0`` and no
    ``rng`` this raises instead of silently using global random state. Pass
    ``shadowing_std_db=0`` for the deterministic mean loss.

    Args:
        distance_m: Transmitter-receiver distance(s) in metres (>= 0); values below
            ``min_distance_m`` are clamped up to it.
        ref_loss_db: Path loss at the reference distance, dB.
        exponent: Path-loss exponent ``n``.
        ref_distance_m: Reference distance ``d0`` in metres (> 0).
        shadowing_std_db: Standard deviation of the shadowing term in dB (>= 0).
        rng: Generator for the shadowing draws; required when ``shadowing_std_db > 0``.
        min_distance_m: Lower clamp on the distance in metres (> 0).

    Returns:
        Path loss in dB, same shape as ``distance_m``.

    Raises:
        ValueError: On a negative distance or std, a non-positive reference or minimum distance,
            or shadowing requested without ``rng``.
    """
    if not ref_distance_m > 0:
        raise ValueError(f"ref_distance_m must be > 0, got {ref_distance_m!r}")
    if not shadowing_std_db >= 0:
        raise ValueError(f"shadowing_std_db must be >= 0, got {shadowing_std_db!r}")
    if shadowing_std_db > 0 and rng is None:
        raise ValueError(
            f"shadowing_std_db={shadowing_std_db} needs rng=numpy.random.Generator; "
            "pass rng=numpy.random.default_rng(seed) or shadowing_std_db=0 for the mean loss"
        )
    d = _clamped_distance(distance_m, min_distance_m)
    loss = ref_loss_db + 10.0 * exponent * np.log10(d / ref_distance_m)
    if shadowing_std_db > 0:
        assert rng is not None  # checked above
        loss = loss + rng.normal(0.0, shadowing_std_db, size=loss.shape)
    return loss[()]


def channel_gain_from_path_loss(pl_db: ArrayLike) -> np.ndarray | np.floating:
    """Linear power gain from a path loss in dB: ``g = 10^(-PL / 10)``.

    Args:
        pl_db: Path loss in dB.

    Returns:
        Linear channel power gain.
    """
    return np.power(10.0, -np.asarray(pl_db, dtype=np.float64) / 10.0)[()]


def power_law_gain(
    distance_m: ArrayLike,
    exponent: float = 4.0,
    min_distance_m: float = DEFAULT_MIN_DISTANCE_M,
) -> np.ndarray | np.floating:
    """CERL's channel gain ``g = d^-exponent`` (paper 002 section 5.1: ``g = d^-4``).

    Args:
        distance_m: Propagation distance(s) in metres (>= 0); values below ``min_distance_m``
            are clamped up to it, so with the default 1 m the gain never exceeds 1.
        exponent: Power-law exponent.
        min_distance_m: Lower clamp on the distance in metres (> 0).

    Returns:
        Linear channel power gain.
    """
    d = _clamped_distance(distance_m, min_distance_m)
    return np.power(d, -float(exponent))[()]


def uplink_rate_bps(
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    gain: ArrayLike,
    noise_w: ArrayLike,
) -> np.ndarray | np.floating:
    """Uplink rate ``R = B log2(1 + g p / N)`` in bit/s (CERL section 2, HC-MAPPO-L eq. for R).

    Args:
        bandwidth_hz: Bandwidth in Hz (CERL: one subcarrier, ``B / S``).
        tx_power_w: Transmit power ``p`` in watts (>= 0).
        gain: Linear channel power gain ``g`` (>= 0).
        noise_w: Noise power ``N`` in watts over ``bandwidth_hz`` (> 0).

    Returns:
        Rate in bit/s, broadcast over the inputs.

    Raises:
        ValueError: On a negative power or gain or a non-positive noise power.
    """
    p = np.asarray(tx_power_w, dtype=np.float64)
    g = np.asarray(gain, dtype=np.float64)
    n = np.asarray(noise_w, dtype=np.float64)
    if np.any(p < 0):
        raise ValueError(f"tx_power_w must be >= 0, got {tx_power_w!r}")
    if np.any(g < 0):
        raise ValueError(f"gain must be >= 0, got {gain!r}")
    if np.any(n <= 0):
        raise ValueError(f"noise_w must be > 0, got {noise_w!r}")
    return shannon_rate_bps(bandwidth_hz, g * p / n)
