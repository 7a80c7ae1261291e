"""HC-MAPPO-L cost model (paper 003, section III, eqs. (4)-(12), (23)-(25)): pure NumPy.

Every function broadcasts like NumPy over any leading shape (users, copies, ...), has no side
effects and no randomness. Units: seconds (s), joules (J), bytes (B), bit/s, FLOP, FLOP/s,
hertz, watts. Per-split quantities are per sample; ``batch`` is ``D_k^in`` (samples).

Delay of a served request, eq. (4), is the sum of four parts:

* parameter download ``tau^E2U = 8 D^U / R^E2U`` (the device fetches the weights of layers
  ``1..z`` from its server, once per request),
* local compute ``tau^U = D^in Omega^U / f_k``,
* feature upload ``tau^U2E = 8 D^in D^up / R^U2E``,
* edge compute ``tau^E = D^in Omega^E / (phi_jk f_j)``, where ``phi_jk`` is the share of the
  server's compute ``f_j`` allocated to user ``k`` (so ``f_jk = phi_jk f_j`` in (C5)). The paper
  names this term but leaves its formula implicit; this is the form the allocation implies.

Rates are Shannon rates over the bandwidth allocated to the user, with the noise taken over
that bandwidth: ``R = B_jk log2(1 + P g / (N0 F B_jk))``, ``N0`` the thermal density (-174
dBm/Hz) and ``F`` the noise figure. A part whose data or work is zero takes zero time whatever
its share (z = 0 downloads nothing; z = L uploads and computes nothing on the edge); a part
with work but no share takes forever (``inf``), which eq. (5) turns into a failure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgerl.edge.channel import channel_gain_from_path_loss, log_distance_path_loss_db
from edgerl.edge.units import dbm_to_w, shannon_rate_bps

__all__ = [
    "BITS_PER_BYTE",
    "configured_user_reward",
    "deploy_reward",
    "download_delay_s",
    "edge_delay_s",
    "energy_j",
    "gain_from_path_loss_db",
    "link_rate_bps",
    "local_delay_s",
    "mean_path_loss_db",
    "migration_cost_s",
    "noise_density_w_per_hz",
    "normalised_shares",
    "privacy_cost",
    "request_delay_s",
    "success_delay_s",
    "system_cost",
    "upload_delay_s",
    "user_reward",
]

ArrayLike = npt.ArrayLike

BITS_PER_BYTE: float = 8.0


def _f(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _ratio(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """``num / den`` with ``0 / anything = 0`` and ``positive / 0 = inf`` (no warnings)."""
    n, d = np.broadcast_arrays(_f(num), _f(den))
    out = np.zeros(n.shape, dtype=np.float64)
    work = n != 0
    pos = work & (d > 0)
    np.divide(n, d, out=out, where=pos)
    out[work & ~(d > 0)] = np.inf
    return out


# --------------------------------------------------------------------------- channel


def mean_path_loss_db(
    distance_m: ArrayLike,
    ref_loss_db: float = 30.0,
    exponent: float = 3.5,
    ref_distance_m: float = 1.0,
    min_distance_m: float = 1.0,
) -> np.ndarray:
    """Log-distance path loss without shadowing, dB: ``PL0 + 10 n log10(d / d0)``.

    Table I: 30 dB at 1 m, ``n = 3.5``. The shadowing (8 dB) is added by the caller from its
    own generator. Distances below ``min_distance_m`` are clamped up to it.

    Args:
        distance_m: Distances in metres.
        ref_loss_db: Loss at the reference distance, dB.
        exponent: Path-loss exponent ``n``.
        ref_distance_m: Reference distance ``d0``, m.
        min_distance_m: Lower clamp on the distance, m.

    Returns:
        Path loss in dB, shape of ``distance_m``.
    """
    return np.asarray(
        log_distance_path_loss_db(
            distance_m,
            ref_loss_db=ref_loss_db,
            exponent=exponent,
            ref_distance_m=ref_distance_m,
            shadowing_std_db=0.0,
            min_distance_m=min_distance_m,
        ),
        dtype=np.float64,
    )


def gain_from_path_loss_db(pl_db: ArrayLike) -> np.ndarray:
    """Linear channel power gain ``g = 10^(-PL / 10)`` from a path loss in dB."""
    return np.asarray(channel_gain_from_path_loss(pl_db), dtype=np.float64)


def noise_density_w_per_hz(
    density_dbm_per_hz: float = -174.0, noise_figure_db: float = 6.0
) -> float:
    """Receiver noise power per hertz including the noise figure, W/Hz.

    ``N0 F = 10^((density + figure) / 10) mW/Hz``; Table I: -174 dBm/Hz and 6 dB.
    """
    return float(dbm_to_w(density_dbm_per_hz + noise_figure_db))


def link_rate_bps(
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    gain: ArrayLike,
    noise_w_per_hz: ArrayLike,
) -> np.ndarray:
    """Shannon rate over an allocated bandwidth, bit/s (downlink ``R^E2U``, uplink ``R^U2E``).

    ``R = B log2(1 + P g / (N0F B))`` with the noise over the allocated band ``B``; 0 where
    ``B = 0`` (the limit of the formula).

    Args:
        bandwidth_hz: Allocated bandwidth ``B_jk``, Hz (>= 0).
        tx_power_w: Transmit power, W: the server's ``P_j`` for the downlink, the user's ``P_k``
            for the uplink.
        gain: Linear channel power gain ``g_jk`` (path loss and shadowing).
        noise_w_per_hz: Noise density times noise figure, W/Hz
            (:func:`noise_density_w_per_hz`).

    Returns:
        Rate in bit/s, broadcast over the inputs.
    """
    b = _f(bandwidth_hz)
    signal = _f(tx_power_w) * _f(gain)
    snr = _ratio(signal, _f(noise_w_per_hz) * b)
    snr = np.where(b > 0, snr, 0.0)
    return np.asarray(shannon_rate_bps(b, snr), dtype=np.float64)


# --------------------------------------------------------------------------- delay, eqs. (4)-(5)


def download_delay_s(device_param_bytes: ArrayLike, downlink_bps: ArrayLike) -> np.ndarray:
    """Parameter download ``tau^E2U = 8 D^U / R^E2U``, s (once per request, not per sample).

    Args:
        device_param_bytes: ``D^U``, weights of layers ``1..z``, bytes.
        downlink_bps: ``R^E2U``, bit/s.
    """
    return _ratio(_f(device_param_bytes) * BITS_PER_BYTE, downlink_bps)


def local_delay_s(
    batch: ArrayLike, device_flops: ArrayLike, user_flops_per_s: ArrayLike
) -> np.ndarray:
    """Local compute ``tau^U = D^in Omega^U / f_k``, s.

    Args:
        batch: ``D^in``, samples.
        device_flops: ``Omega^U``, FLOPs of layers ``1..z`` per sample.
        user_flops_per_s: ``f_k``, FLOP/s.
    """
    return _ratio(_f(batch) * _f(device_flops), user_flops_per_s)


def upload_delay_s(batch: ArrayLike, upload_bytes: ArrayLike, uplink_bps: ArrayLike) -> np.ndarray:
    """Feature upload ``tau^U2E = 8 D^in D^up / R^U2E``, s.

    Args:
        batch: ``D^in``, samples.
        upload_bytes: ``D^up``, bytes per sample sent at the split.
        uplink_bps: ``R^U2E``, bit/s.
    """
    return _ratio(_f(batch) * _f(upload_bytes) * BITS_PER_BYTE, uplink_bps)


def edge_delay_s(
    batch: ArrayLike,
    edge_flops: ArrayLike,
    compute_share: ArrayLike,
    server_flops_per_s: ArrayLike,
) -> np.ndarray:
    """Edge compute ``tau^E = D^in Omega^E / (phi_jk f_j)``, s.

    The paper leaves ``tau^E`` implicit; with ``f_jk = phi_jk f_j`` the compute allocated to
    the user under (C5), the edge runs ``D^in Omega^E`` FLOPs at ``f_jk``.

    Args:
        batch: ``D^in``, samples.
        edge_flops: ``Omega^E``, FLOPs of layers ``z+1..L`` per sample.
        compute_share: ``phi_jk`` in [0, 1].
        server_flops_per_s: ``f_j``, FLOP/s.
    """
    return _ratio(_f(batch) * _f(edge_flops), _f(compute_share) * _f(server_flops_per_s))


def success_delay_s(
    download_s: ArrayLike, local_s: ArrayLike, upload_s: ArrayLike, edge_s: ArrayLike
) -> np.ndarray:
    """Eq. (4): ``tau^succ = tau^E2U + tau^U + tau^U2E + tau^E``, s."""
    return _f(download_s) + _f(local_s) + _f(upload_s) + _f(edge_s)


def request_delay_s(
    succ_delay_s: ArrayLike,
    cache_hit: ArrayLike,
    fail_delay_s: float,
    timeout_fails: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. (5): the delay of a request and whether it succeeded.

    A request fails on a cache miss (``x_ij y_jk = 0``) and when it cannot finish at all
    (``tau^succ = inf``: no share of a resource it needs). With ``timeout_fails`` it also
    fails when its delay would exceed ``tau_fail`` (beyond the paper, whose eq. (5) charges a
    served request its own delay however long).

    Args:
        succ_delay_s: ``tau^succ`` of eq. (4), s (may be ``inf``).
        cache_hit: Whether the chosen server caches the requested service.
        fail_delay_s: ``tau_fail``, s.
        timeout_fails: Whether a delay above ``tau_fail`` is a failure too.

    Returns:
        ``(delay_s, success)``: ``tau^succ`` where the request succeeds, ``tau_fail``
        elsewhere; and the boolean success.
    """
    succ = _f(succ_delay_s)
    success = np.asarray(cache_hit, dtype=bool) & np.isfinite(succ)
    if timeout_fails:
        success &= succ <= fail_delay_s
    return np.where(success, succ, float(fail_delay_s)), success


# --------------------------------------------------------------------------- energy and privacy


def energy_j(
    energy_per_flop_j: ArrayLike,
    batch: ArrayLike,
    device_flops: ArrayLike,
    tx_power_w: ArrayLike,
    upload_s: ArrayLike,
) -> np.ndarray:
    """Eqs. (6)-(8): device energy ``e_k = eps D^in Omega^U + P_k tau^U2E``, J.

    Args:
        energy_per_flop_j: ``epsilon_k``, J/FLOP.
        batch: ``D^in``, samples.
        device_flops: ``Omega^U`` per sample.
        tx_power_w: ``P_k``, W.
        upload_s: ``tau^U2E``, s.
    """
    compute = _f(energy_per_flop_j) * _f(batch) * _f(device_flops)  # eq. (6)
    transmit = _f(tx_power_w) * _f(upload_s)  # eq. (7)
    return compute + transmit  # eq. (8)


def privacy_cost(
    preference: ArrayLike,
    leakage: ArrayLike,
    batch: ArrayLike,
    raw_size: ArrayLike,
    alpha1: float = 0.31,
    alpha2: float = 1.88,
) -> np.ndarray:
    """Eq. (10): ``C^priv = (alpha1 + alpha2 Pre_k) Lea_k D^in D_i^raw`` (unitless cost).

    Args:
        preference: ``Pre_k`` in [0, 1].
        leakage: ``Lea_k``, SSIM-based leakage of the chosen split, in [0, 1].
        batch: ``D^in``, samples.
        raw_size: ``D_i^raw``, raw input size per sample in the configured unit
            (``privacy_unit_bytes``; bytes / 1e5 by default).
        alpha1: Baseline weight (Table I: 0.31).
        alpha2: Weight of the preference (Table I: 1.88).
    """
    return (alpha1 + alpha2 * _f(preference)) * _f(leakage) * _f(batch) * _f(raw_size)


def system_cost(
    privacy: ArrayLike,
    energy: ArrayLike,
    weight_privacy: float = 5.0,
    weight_energy: float = 5.0,
    axis: int = -1,
) -> np.ndarray:
    """Eq. (12) with eqs. (9) and (11): ``mu1 mean_k C^priv + mu2 mean_k e_k``.

    Args:
        privacy: Per-user privacy costs, users along ``axis``.
        energy: Per-user energies, J, users along ``axis``.
        weight_privacy: ``mu_1`` (Table I: 5).
        weight_energy: ``mu_2`` (Table I: 5).
        axis: Axis of the users.
    """
    return weight_privacy * _f(privacy).mean(axis=axis) + weight_energy * _f(energy).mean(axis=axis)


def user_reward(
    privacy: ArrayLike,
    energy: ArrayLike,
    delay_s: ArrayLike,
    success: ArrayLike,
    delay_limit_s: float = 3.0,
    weight_privacy: float = 5.0,
    weight_energy: float = 5.0,
    weight_violation_per_s: float = 10.0,
    fail_reward: float = -300.0,
) -> np.ndarray:
    """Eq. (25): ``-(mu1 C^priv + mu2 e + mu3 [tau - tau-bar]_+)`` if served, else ``R^fail``.

    Args:
        privacy: ``C^priv_k``.
        energy: ``e_k``, J.
        delay_s: ``tau_k``, s.
        success: Whether the request was served.
        delay_limit_s: ``tau-bar``, s.
        weight_privacy: ``mu_1``.
        weight_energy: ``mu_2``.
        weight_violation_per_s: ``mu_3``, per second above the limit.
        fail_reward: ``R^fail``.
    """
    over = np.maximum(_f(delay_s) - delay_limit_s, 0.0)
    cost = weight_privacy * _f(privacy) + weight_energy * _f(energy) + weight_violation_per_s * over
    return np.where(np.asarray(success, dtype=bool), -cost, float(fail_reward))


def configured_user_reward(
    cfg: Any, privacy: ArrayLike, energy: ArrayLike, delay_s: ArrayLike, success: ArrayLike
) -> np.ndarray:
    """:func:`user_reward` with the limit, weights and failure reward of an ``HcConfig``."""
    return user_reward(
        privacy,
        energy,
        delay_s,
        success,
        cfg.delay_limit_s,
        cfg.weight_privacy,
        cfg.weight_energy,
        cfg.weight_delay_violation_per_s,
        cfg.fail_reward,
    )


# --------------------------------------------------------------------------- deployment


def migration_cost_s(
    new_deploy: ArrayLike,
    old_deploy: ArrayLike,
    service_bytes: ArrayLike,
    cloud_to_edge_bps: ArrayLike,
) -> np.ndarray:
    """Eq. (23): ``C^mig_j = sum_i x_ij(t) (1 - x_ij(t - dT)) 8 D_i / R^C2E``, s.

    Args:
        new_deploy: (..., I) deployment ``x_j(t)`` (0/1).
        old_deploy: (..., I) deployment of the previous interval.
        service_bytes: (I,) storage ``D_i`` of each service, bytes.
        cloud_to_edge_bps: (...) cloud-to-edge rate ``R^C2E`` of each server, bit/s.

    Returns:
        Seconds of downloads, shape ``(...)``.
    """
    new = np.asarray(new_deploy, dtype=bool) & ~np.asarray(old_deploy, dtype=bool)
    fetched_bits = (new * _f(service_bytes)).sum(axis=-1) * BITS_PER_BYTE
    return fetched_bits / _f(cloud_to_edge_bps)


def deploy_reward(
    hits: ArrayLike,
    migration_s: ArrayLike,
    weight_hit: float = 1.0,
    weight_migration_per_s: float = 0.1,
) -> np.ndarray:
    """Eq. (24): ``R^dep_j = mu_hit H_j - mu_mig C^mig_j``.

    Args:
        hits: ``H_j``, cache hits of the interval (eq. (22)).
        migration_s: ``C^mig_j``, s (eq. (23)).
        weight_hit: ``mu_hit``.
        weight_migration_per_s: ``mu_mig``.
    """
    return weight_hit * _f(hits) - weight_migration_per_s * _f(migration_s)


# --------------------------------------------------------------------------- allocation


def normalised_shares(
    weights: ArrayLike, group: ArrayLike, uses: ArrayLike, n_groups: int
) -> np.ndarray:
    """Resource shares from non-negative weights, normalised within each group.

    ``phi_k = w_k / sum_{k' in group(k), uses} w_k'`` for the users that use the resource;
    users that do not use it get 0. A group whose weights are all zero is split equally. The
    shares of a group therefore sum to 1 (or 0 when nobody uses it): (C5) and (C6) hold by
    construction.

    Args:
        weights: (N,) non-negative weights.
        group: (N,) int in ``[0, n_groups)``, e.g. the index of the user's server.
        uses: (N,) bool, whether the user needs this resource.
        n_groups: Number of groups.

    Returns:
        (N,) shares in [0, 1].
    """
    w = np.where(np.asarray(uses, dtype=bool), _f(weights), 0.0)
    g = np.asarray(group, dtype=np.int64)
    u = np.asarray(uses, dtype=bool)
    total = np.bincount(g, weights=w, minlength=n_groups)
    count = np.bincount(g, weights=u.astype(np.float64), minlength=n_groups)
    tot_k = total[g]
    equal = np.divide(1.0, count[g], out=np.zeros_like(tot_k), where=count[g] > 0)
    prop = np.divide(w, tot_k, out=np.zeros_like(tot_k), where=tot_k > 0)
    return np.where(u, np.where(tot_k > 0, prop, equal), 0.0)
