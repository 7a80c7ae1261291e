"""Batched HC-MAPPO-L environment: B copies stepped together with NumPy (paper 003).

:class:`BatchedHcEnv` holds the whole dynamics of the edge-device collaborative inference
system of paper 003 section III; :class:`edgerl.hcmappo.env.HcEnv` (the PettingZoo
``ParallelEnv``) runs one copy of it, so both share every line of the model. This class is what
training uses: observations are arrays ``[B, n_agents_of_kind, dim]`` and actions are arrays.

A slot runs in up to three phases, in the order of the paper's hierarchy (Algorithm 1, lines
7-11), and every copy is in the same phase:

1. ``"deploy"`` (only in slots ``t`` with ``t mod Delta T = 0``): each server's deployment agent
   chooses the services it caches for the next ``Delta T`` slots (:meth:`step_deploy`).
2. ``"user"``: each user sees its request and the deployment in force and picks a server and a
   split point (:meth:`step_user`).
3. ``"alloc"``: each server's allocation agent sees which users chose it, with what split, and
   shares its compute and bandwidth among them (:meth:`step_alloc`). The slot is then
   evaluated (eqs. (4)-(12), (25), (26)), the next slot's requests and channels are drawn and
   ``t`` advances; after ``episode_slots`` slots the episode is truncated (and, with
   ``autoreset``, a new one starts at once).

Randomness. Copy ``b`` draws from its own generator, in an order that never depends on the
actions: at reset one block of uniforms (user positions, user then server capacities, powers,
rates, preferences), the popularity permutation, the per-episode shadowing if any; then per slot
``2K`` uniforms (requested service through the Zipf law, batch size) and ``J x K`` normals
(shadowing). Equal seeds therefore give equal episodes whatever B is, and two policies see the
same requests. ``reset(seed=s)`` gives copy ``b`` the seed ``s + b``.

Observation, action and state layouts are listed in :mod:`edgerl.hcmappo.env` and available
as slices in :attr:`BatchedHcEnv.layouts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerl.edge.units import dbm_to_w
from edgerl.hcmappo import costs
from edgerl.hcmappo.catalog import ServiceCatalog, catalog_for_config, check_config_fits
from edgerl.hcmappo.config import HcConfig, make_config
from edgerl.utils.errors import InputError
from edgerl.utils.seeding import make_rng

__all__ = [
    "ALLOC_GLOBAL_FEATURES",
    "ALLOC_USER_FEATURES",
    "KINDS",
    "PHASES",
    "BatchedHcEnv",
    "HcStep",
    "server_grid_m",
]

KINDS: tuple[str, ...] = ("deploy", "user", "alloc")
"""Agent kinds, in the order they act within a slot."""

PHASES: tuple[str, ...] = KINDS
"""Phases of a slot; the phase names the kind of agent that acts."""

DEVICE_FEATURES: tuple[str, ...] = (
    "compute",
    "memory",
    "energy_per_flop",
    "tx_power",
    "privacy_preference",
)
"""Per-user device features (user observation ``device`` block, state ``user_device``)."""

ALLOC_GLOBAL_FEATURES: tuple[str, ...] = (
    "acting",
    "progress",
    "compute",
    "bandwidth",
    "associated",
    "served",
)
"""Server-level entries at the start of an allocation observation."""

_ALLOC_USER_BASE: tuple[str, ...] = (
    "associated",
    "served",
    "needs_compute",
    "edge_time",
    "upload_time",
    "download_time",
    "local_time",
    "batch",
    "split",
)

ALLOC_USER_FEATURES: tuple[str, ...] = (*_ALLOC_USER_BASE, "model_onehot")
"""Per-user row of an allocation observation (``model_onehot`` spans M columns)."""

_SE_NORM = 10.0  # bit/s/Hz: spectral efficiencies are divided by this in observations
_TIME_CLIP = 10.0  # times in observations are in units of tau-bar, clipped here


def server_grid_m(n_servers: int, area_m: float) -> np.ndarray:
    """Positions of ``J`` servers on a grid over a square area (section V-A: grid-placed).

    ``rows = floor(sqrt(J))``, ``cols = ceil(J / rows)``; the area is cut into ``rows x cols``
    equal cells and the servers sit at the centres of the first ``J`` cells in row-major order.

    Returns:
        (J, 2) float64 positions in metres.
    """
    rows = max(1, math.isqrt(n_servers))
    cols = math.ceil(n_servers / rows)
    idx = np.arange(n_servers)
    x = (idx % cols + 0.5) * area_m / cols
    y = (idx // cols + 0.5) * area_m / rows
    return np.stack([x, y], axis=-1)


def _fmt(value: Any) -> str:
    """A scalar as the user would write it: ``6`` for 6.0, ``1.5``, ``nan``."""
    v = value.item() if isinstance(value, np.generic) else value
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return repr(v)


def _layout(parts: Sequence[tuple[str, int]]) -> dict[str, slice]:
    out: dict[str, slice] = {}
    start = 0
    for name, size in parts:
        out[name] = slice(start, start + size)
        start += size
    return out


def _size(layout: Mapping[str, slice]) -> int:
    return max(s.stop for s in layout.values())


@dataclass(frozen=True)
class HcStep:
    """What a step of :class:`BatchedHcEnv` returns (arrays over the B copies).

    Attributes:
        obs: Observation of the phase that acts next (:meth:`BatchedHcEnv.observe`); after an
            autoreset, that of the new episode.
        rewards: ``{"deploy": (B, J), "user": (B, K), "alloc": (B, J)}`` float64; non-zero only
            at the end of a slot (the ``alloc`` step), deployment rewards only at the end of a
            deployment interval.
        costs: Constraint signals, same keys and shapes: user ``tau_k`` (s); allocation and
            deployment agents the mean delay of the users associated with their server in the
            slot (0 without users). Non-zero only at the end of a slot.
        truncated: (B,) bool, the episode reached ``episode_slots``.
        info: Per-slot arrays at the end of a slot (see :meth:`BatchedHcEnv.step_alloc`); after
            a deployment ``repaired_deploy`` and ``migration_s`` (B, J), after the users
            ``repaired_user`` (B, K).
    """

    obs: dict[str, np.ndarray]
    rewards: dict[str, np.ndarray]
    costs: dict[str, np.ndarray]
    truncated: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class BatchedHcEnv:
    """B copies of the HC-MAPPO-L environment stepped in lockstep (see the module docstring).

    Args:
        num_envs: Number of copies B.
        config: :class:`HcConfig` or a mapping of its fields; keyword arguments override fields.
        catalog: Service catalog; ``None`` builds it from the config (profiles and the default
            leakage tables of :mod:`edgerl.edge.privacy`, or ``leakage``).
        leakage: Leakage tables per base model, passed to :func:`catalog_for_config`.
        autoreset: Start a new episode right after a truncation (the final observation and
            state are in the step's info); False leaves the copies ended until :meth:`reset`.

    Raises:
        InputError: On a bad config, catalog or ``num_envs``.
    """

    def __init__(
        self,
        num_envs: int = 8,
        config: HcConfig | Mapping[str, Any] | None = None,
        *,
        catalog: ServiceCatalog | None = None,
        leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        autoreset: bool = True,
        **overrides: Any,
    ) -> None:
        if int(num_envs) < 1:
            raise InputError(f"num_envs must be >= 1, got {num_envs!r}")
        self.config: HcConfig = make_config(config, **overrides)
        cfg = self.config
        if catalog is None:
            catalog = catalog_for_config(cfg, leakage)
        else:
            if leakage is not None:
                raise InputError("pass either catalog or leakage, not both")
            check_config_fits(cfg, catalog)
        self.catalog = catalog
        self.num_envs = int(num_envs)
        self.autoreset = bool(autoreset)
        self.n_servers = cfg.n_servers
        self.n_users = cfg.n_users
        self.n_services = catalog.n_services
        self.n_models = catalog.n_models
        self.n_splits = catalog.n_splits

        # Static per-service tables (I, Z) and (I,).
        self.service_model = catalog.service_model
        self.service_names = catalog.service_names
        self.service_bytes = catalog.service_bytes
        self.service_layers = catalog.per_service("num_layers")
        self.split_valid = catalog.per_service("split_valid")
        self._dev_flops = catalog.per_service("device_flops")
        self._edge_flops = catalog.per_service("edge_flops")
        self._up_bytes = catalog.per_service("upload_bytes")
        self._dev_param = catalog.per_service("device_param_bytes")
        self._leak = catalog.per_service("leakage")
        self._raw_units = catalog.per_service("input_bytes") / cfg.privacy_unit_bytes
        self.server_pos_m = server_grid_m(cfg.n_servers, cfg.area_m)
        self.noise_w_per_hz = costs.noise_density_w_per_hz(
            cfg.noise_density_dbm_per_hz, cfg.noise_figure_db
        )
        ranks = np.arange(1, self.n_services + 1, dtype=np.float64)
        p_rank = ranks**-cfg.zipf_s
        #: Zipf probability of each popularity rank (rank 0 = most popular).
        self.rank_probability = p_rank / p_rank.sum()
        self._rank_cdf = np.cumsum(self.rank_probability)
        self._rank_cdf[-1] = 1.0
        self._eye_service = np.eye(self.n_services, dtype=np.float32)
        self._eye_model = np.eye(self.n_models, dtype=np.float32)
        self._eye_server = np.eye(self.n_servers, dtype=np.float32)

        self.layouts = self._make_layouts()
        self.obs_dims = {kind: _size(self.layouts[kind]) for kind in (*KINDS, "state")}
        self.phase: str = "reset"
        self.t = 0
        self._rngs: list[np.random.Generator] | None = None

    # ----------------------------------------------------------------- layouts

    def _make_layouts(self) -> dict[str, dict[str, slice]]:
        n_i, n_m, n_j, n_k = self.n_services, self.n_models, self.n_servers, self.n_users
        deploy = _layout(
            [
                ("requests_global", n_i),
                ("requests_local", n_i),
                ("deployed", n_i),
                ("size_fraction", n_i),
                ("acting", 1),
                ("progress", 1),
                ("storage", 1),
            ]
        )
        user = _layout(
            [
                ("service_onehot", n_i),
                ("model_onehot", n_m),
                ("batch", 1),
                ("device", len(DEVICE_FEATURES)),
                ("uplink_se", n_j),
                ("downlink_se", n_j),
                ("cached", n_j),
                ("load", n_j),
                ("deployment", n_j * n_i),
                ("acting", 1),
                ("progress", 1),
            ]
        )
        n_f = len(_ALLOC_USER_BASE) + n_m
        alloc = _layout([*((name, 1) for name in ALLOC_GLOBAL_FEATURES), ("users", n_k * n_f)])
        alloc_user = _layout([*((name, 1) for name in _ALLOC_USER_BASE), ("model_onehot", n_m)])
        state = _layout(
            [
                ("phase_onehot", len(PHASES)),
                ("progress", 1),
                ("deployment", n_j * n_i),
                ("requests_global", n_i),
                ("user_service", n_k),
                ("user_model_onehot", n_k * n_m),
                ("user_batch", n_k),
                ("user_server_onehot", n_k * n_j),
                ("user_split", n_k),
                ("user_device", n_k * len(DEVICE_FEATURES)),
                ("server", n_j * 3),
                ("uplink_se", n_j * n_k),
            ]
        )
        return {
            "deploy": deploy,
            "user": user,
            "alloc": alloc,
            "alloc_user": alloc_user,
            "state": state,
        }

    # ----------------------------------------------------------------- naming

    def _who(self, b: int, agent: str) -> str:
        return agent if self.num_envs == 1 else f"copy {b}, {agent}"

    # ----------------------------------------------------------------- reset

    def reset(self, seed: int | Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Start new episodes in every copy.

        Args:
            seed: ``int``: copy ``b`` gets ``seed + b``; a sequence: one seed per copy; ``None``:
                continue the copies' generators (fresh random ones on the first call).

        Returns:
            :meth:`observe` of the first phase (``"deploy"``).
        """
        if seed is not None:
            if isinstance(seed, (int, np.integer)):
                seeds = [int(seed) + b for b in range(self.num_envs)]
            else:
                seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise InputError(
                    f"reset: need {self.num_envs} seeds (one per copy), got {len(seeds)}"
                )
            if any(s < 0 for s in seeds):
                raise InputError(f"reset: seeds must be >= 0, got {seeds}")
            self._rngs = [make_rng(s) for s in seeds]
        elif self._rngs is None:
            self._rngs = [make_rng(None) for _ in range(self.num_envs)]
        self._new_episode()
        return self.observe()

    def reset_with_generators(self, rngs: Sequence[np.random.Generator]) -> dict[str, np.ndarray]:
        """Start new episodes drawing from the given generators (one per copy, kept)."""
        if len(rngs) != self.num_envs:
            raise InputError(f"need {self.num_envs} generators (one per copy), got {len(rngs)}")
        self._rngs = list(rngs)
        self._new_episode()
        return self.observe()

    @staticmethod
    def _uniform(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
        return bounds[0] + (bounds[1] - bounds[0]) * u

    def _new_episode(self) -> None:
        assert self._rngs is not None
        cfg = self.config
        bsz, n_j, n_k, n_i = self.num_envs, self.n_servers, self.n_users, self.n_services
        n_u = 2 * n_k + 5 * n_k + 5 * n_j
        u = np.empty((bsz, n_u))
        perm = np.empty((bsz, n_i), dtype=np.int64)
        shadow = np.zeros((bsz, n_j, n_k))
        for b, rng in enumerate(self._rngs):
            rng.random(out=u[b])
            perm[b] = rng.permutation(n_i) if cfg.shuffle_popularity else np.arange(n_i)
            if not cfg.shadowing_per_slot and cfg.shadowing_std_db > 0:
                rng.standard_normal(out=shadow[b])
        pos = 2 * n_k
        self.user_pos_m = u[:, :pos].reshape(bsz, n_k, 2) * cfg.area_m
        cols = u[:, pos:].reshape(bsz, -1)
        k5 = cols[:, : 5 * n_k].reshape(bsz, 5, n_k)
        j5 = cols[:, 5 * n_k :].reshape(bsz, 5, n_j)
        self.user_flops = self._uniform(k5[:, 0], cfg.user_compute_gflops) * 1e9
        self.user_memory_bytes = self._uniform(k5[:, 1], cfg.user_memory_gb) * 1e9
        self.user_energy_per_flop = self._uniform(k5[:, 2], cfg.energy_per_flop_j)
        self.user_tx_w = np.asarray(dbm_to_w(self._uniform(k5[:, 3], cfg.user_tx_power_dbm)))
        self.user_preference = self._uniform(k5[:, 4], cfg.privacy_preference)
        self.server_flops = self._uniform(j5[:, 0], cfg.server_compute_gflops) * 1e9
        self.server_storage_bytes = self._uniform(j5[:, 1], cfg.server_storage_gb) * 1e9
        self.server_bandwidth_hz = self._uniform(j5[:, 2], cfg.server_bandwidth_mhz) * 1e6
        self.server_tx_w = np.asarray(dbm_to_w(self._uniform(j5[:, 3], cfg.server_tx_power_dbm)))
        self.cloud_to_edge_bps = self._uniform(j5[:, 4], cfg.cloud_to_edge_mbps) * 1e6
        #: (B, I) service holding popularity rank r at position r.
        self.popularity = perm
        diff = self.server_pos_m[None, :, None, :] - self.user_pos_m[:, None, :, :]
        dist = np.sqrt((diff * diff).sum(-1))  # (B, J, K)
        self.mean_path_loss_db = costs.mean_path_loss_db(
            dist,
            cfg.ref_path_loss_db,
            cfg.path_loss_exponent,
            cfg.ref_distance_m,
            cfg.min_distance_m,
        )
        self._episode_shadow_db = shadow * cfg.shadowing_std_db
        hi = np.array(
            [
                cfg.user_compute_gflops[1] * 1e9,
                cfg.user_memory_gb[1] * 1e9,
                cfg.energy_per_flop_j[1],
                float(dbm_to_w(cfg.user_tx_power_dbm[1])),
                1.0,
            ]
        )
        dev = np.stack(
            [
                self.user_flops,
                self.user_memory_bytes,
                self.user_energy_per_flop,
                self.user_tx_w,
                self.user_preference,
            ],
            axis=-1,
        )
        self._user_device = (dev / hi).astype(np.float32)  # (B, K, 5)

        self.t = 0
        self.deployment = np.zeros((bsz, n_j, n_i), dtype=bool)
        self.assoc = np.full((bsz, n_k), -1, dtype=np.int64)
        self.split = np.full((bsz, n_k), -1, dtype=np.int64)
        self.load_prev = np.zeros((bsz, n_j))
        self._req_global = np.zeros((bsz, n_i))
        self._req_local = np.zeros((bsz, n_j, n_i))
        self._req_global_last = np.zeros((bsz, n_i))
        self._req_local_last = np.zeros((bsz, n_j, n_i))
        self._hits = np.zeros((bsz, n_j))
        self._migration_s = np.zeros((bsz, n_j))
        self._interval_slots = 0
        self._repaired_deploy = np.zeros((bsz, n_j), dtype=bool)
        self._repaired_user = np.zeros((bsz, n_k), dtype=bool)
        self._totals = {
            k: np.zeros(bsz)
            for k in (
                "requests",
                "success",
                "cache_hit",
                "miss_avoidable",
                "miss_no_cache",
                "delay_s",
                "energy_j",
                "privacy_cost",
                "user_cost",
                "system_cost",
                "migration_s",
                "slots",
            )
        }
        self._draw_slot()
        self.phase = "deploy"

    def _draw_slot(self) -> None:
        """Requests and channels of slot ``t`` (action-independent draws)."""
        assert self._rngs is not None
        cfg = self.config
        bsz, n_j, n_k = self.num_envs, self.n_servers, self.n_users
        u = np.empty((bsz, 2 * n_k))
        shadow = self._episode_shadow_db
        per_slot = cfg.shadowing_per_slot and cfg.shadowing_std_db > 0
        if per_slot:
            shadow = np.empty((bsz, n_j, n_k))
        for b, rng in enumerate(self._rngs):
            rng.random(out=u[b])
            if per_slot:
                rng.standard_normal(out=shadow[b])
        if per_slot:
            shadow = shadow * cfg.shadowing_std_db
        rank = np.minimum(
            np.searchsorted(self._rank_cdf, u[:, :n_k], side="right"), self.n_services - 1
        )
        self.req_service = np.take_along_axis(self.popularity, rank, axis=1)
        lo, hi = cfg.input_batch
        self.req_batch = np.minimum(lo + np.floor(u[:, n_k:] * (hi - lo + 1)), hi)
        self.gain = costs.gain_from_path_loss_db(self.mean_path_loss_db + shadow)  # (B, J, K)
        full = self.server_bandwidth_hz[:, :, None]
        n0 = self.noise_w_per_hz
        self._uplink_se = np.log2(1.0 + self.user_tx_w[:, None, :] * self.gain / (n0 * full))
        self._downlink_se = np.log2(1.0 + self.server_tx_w[:, :, None] * self.gain / (n0 * full))

    # ----------------------------------------------------------------- masks

    def split_mask(self) -> np.ndarray:
        """(B, K, Z) bool: valid splits of each user's request (C3 and device memory)."""
        svc = self.req_service
        valid = self.split_valid[svc]  # (B, K, Z)
        fits = self._dev_param[svc] <= self.user_memory_bytes[:, :, None]
        return valid & fits

    def server_mask(self) -> np.ndarray:
        """(B, K, J) bool: servers a user may choose (all, unless ``mask_uncached_servers``)."""
        bsz, n_k, n_j = self.num_envs, self.n_users, self.n_servers
        if not self.config.mask_uncached_servers:
            return np.ones((bsz, n_k, n_j), dtype=bool)
        cached = self._cached_for_request()
        none = ~cached.any(-1, keepdims=True)
        return cached | none

    def _cached_for_request(self) -> np.ndarray:
        # deployment (B, J, I) -> (B, K, J): does server j hold user k's service.
        dep = self.deployment.transpose(0, 2, 1)
        return np.take_along_axis(dep, self.req_service[:, :, None], axis=1)

    # ----------------------------------------------------------------- observations

    @property
    def progress(self) -> float:
        """Fraction of the episode's slots already evaluated (``t / episode_slots``)."""
        return self.t / self.config.episode_slots

    def observe(self, kind: str | None = None) -> dict[str, np.ndarray]:
        """Observation arrays of one agent kind (default: the kind acting in this phase).

        Returns:
            ``"deploy"``: ``deploy_obs`` (B, J, D_dep) float32.
            ``"user"``: ``user_obs`` (B, K, D_usr) float32, ``user_server_mask`` (B, K, J) bool,
            ``user_split_mask`` (B, K, Z) bool.
            ``"alloc"``: ``alloc_obs`` (B, J, D_alloc) float32, ``alloc_user_mask`` (B, J, K)
            bool (users associated with the server whose service it caches).
            ``"all"``: the union of the three.
        """
        if self.phase == "reset":
            raise InputError("call reset() first")
        kind = kind or self.phase
        if kind == "done":
            kind = "all"
        if kind == "deploy":
            return {"deploy_obs": self._deploy_obs()}
        if kind == "user":
            return {
                "user_obs": self._user_obs(),
                "user_server_mask": self.server_mask(),
                "user_split_mask": self.split_mask(),
            }
        if kind == "alloc":
            obs, mask = self._alloc_obs()
            return {"alloc_obs": obs, "alloc_user_mask": mask}
        if kind == "all":
            out: dict[str, np.ndarray] = {}
            for k in KINDS:
                out.update(self.observe(k))
            return out
        raise InputError(f"observe: unknown kind {kind!r}; valid: deploy, user, alloc, all")

    def _deploy_obs(self) -> np.ndarray:
        cfg = self.config
        lay = self.layouts["deploy"]
        bsz, n_j = self.num_envs, self.n_servers
        obs = np.empty((bsz, n_j, self.obs_dims["deploy"]), dtype=np.float32)
        per_interval = self.n_users * cfg.deploy_interval_slots
        obs[:, :, lay["requests_global"]] = (self._req_global_last / per_interval)[:, None, :]
        obs[:, :, lay["requests_local"]] = self._req_local_last / per_interval
        obs[:, :, lay["deployed"]] = self.deployment
        obs[:, :, lay["size_fraction"]] = (
            self.service_bytes[None, None, :] / self.server_storage_bytes[:, :, None]
        )
        obs[:, :, lay["acting"]] = float(self.phase == "deploy")
        obs[:, :, lay["progress"]] = self.progress
        obs[:, :, lay["storage"]] = (self.server_storage_bytes / (cfg.server_storage_gb[1] * 1e9))[
            :, :, None
        ]
        return obs

    def _user_obs(self) -> np.ndarray:
        cfg = self.config
        lay = self.layouts["user"]
        bsz, n_k, n_j = self.num_envs, self.n_users, self.n_servers
        obs = np.empty((bsz, n_k, self.obs_dims["user"]), dtype=np.float32)
        svc = self.req_service
        obs[:, :, lay["service_onehot"]] = self._eye_service[svc]
        obs[:, :, lay["model_onehot"]] = self._eye_model[self.service_model[svc]]
        obs[:, :, lay["batch"]] = (self.req_batch / cfg.input_batch[1])[:, :, None]
        obs[:, :, lay["device"]] = self._user_device
        obs[:, :, lay["uplink_se"]] = self._uplink_se.transpose(0, 2, 1) / _SE_NORM
        obs[:, :, lay["downlink_se"]] = self._downlink_se.transpose(0, 2, 1) / _SE_NORM
        obs[:, :, lay["cached"]] = self._cached_for_request()
        obs[:, :, lay["load"]] = (self.load_prev / n_k)[:, None, :]
        obs[:, :, lay["deployment"]] = self.deployment.reshape(bsz, 1, n_j * self.n_services)
        obs[:, :, lay["acting"]] = float(self.phase == "user")
        obs[:, :, lay["progress"]] = self.progress
        return obs

    def _user_geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per user: chosen server (0 where none), whether associated, and the split (0 where none)."""
        assoc = self.assoc >= 0
        j = np.where(assoc, self.assoc, 0)
        z = np.where(assoc, self.split, 0)
        return j, assoc, z

    def _alloc_obs(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        lay = self.layouts["alloc"]
        ulay = self.layouts["alloc_user"]
        bsz, n_j, n_k, n_m = self.num_envs, self.n_servers, self.n_users, self.n_models
        n_f = len(_ALLOC_USER_BASE) + n_m
        j, assoc, z = self._user_geometry()
        b_idx = np.arange(bsz)[:, None]
        k_idx = np.arange(n_k)[None, :]
        svc = self.req_service
        hit = assoc & self.deployment[b_idx, j, svc]
        n_layers = self.service_layers[svc]
        needs_compute = hit & (z < n_layers)
        batch = self.req_batch
        tau = cfg.delay_limit_s
        g = self.gain[b_idx, j, k_idx]
        full_bw = self.server_bandwidth_hz[b_idx, j]
        up_rate = costs.link_rate_bps(full_bw, self.user_tx_w, g, self.noise_w_per_hz)
        down_rate = costs.link_rate_bps(full_bw, self.server_tx_w[b_idx, j], g, self.noise_w_per_hz)
        feats = np.zeros((bsz, n_k, n_f), dtype=np.float32)
        feats[:, :, ulay["associated"]] = assoc[:, :, None]
        feats[:, :, ulay["served"]] = hit[:, :, None]
        feats[:, :, ulay["needs_compute"]] = needs_compute[:, :, None]
        times = {
            "edge_time": costs.edge_delay_s(
                batch, self._edge_flops[svc, z], 1.0, self.server_flops[b_idx, j]
            ),
            "upload_time": costs.upload_delay_s(batch, self._up_bytes[svc, z], up_rate),
            "download_time": costs.download_delay_s(self._dev_param[svc, z], down_rate),
            "local_time": costs.local_delay_s(batch, self._dev_flops[svc, z], self.user_flops),
        }
        for name, val in times.items():
            feats[:, :, ulay[name]] = np.minimum(val / tau, _TIME_CLIP)[:, :, None]
        feats[:, :, ulay["batch"]] = (batch / cfg.input_batch[1])[:, :, None]
        feats[:, :, ulay["split"]] = (z / np.maximum(n_layers, 1))[:, :, None]
        feats[:, :, ulay["model_onehot"]] = self._eye_model[self.service_model[svc]]
        feats[~assoc] = 0.0
        users = np.zeros((bsz, n_j, n_k, n_f), dtype=np.float32)
        bb, kk = np.nonzero(assoc)
        users[bb, self.assoc[bb, kk], kk] = feats[bb, kk]
        obs = np.empty((bsz, n_j, self.obs_dims["alloc"]), dtype=np.float32)
        obs[:, :, lay["users"]] = users.reshape(bsz, n_j, n_k * n_f)
        obs[:, :, lay["acting"]] = float(self.phase == "alloc")
        obs[:, :, lay["progress"]] = self.progress
        obs[:, :, lay["compute"]] = (self.server_flops / (cfg.server_compute_gflops[1] * 1e9))[
            :, :, None
        ]
        obs[:, :, lay["bandwidth"]] = (
            self.server_bandwidth_hz / (cfg.server_bandwidth_mhz[1] * 1e6)
        )[:, :, None]
        mask = users[..., ulay["served"].start] > 0  # (B, J, K)
        obs[:, :, lay["associated"]] = (users[..., 0].sum(-1) / n_k)[:, :, None]
        obs[:, :, lay["served"]] = (mask.sum(-1) / n_k)[:, :, None]
        return obs, mask

    def state(self) -> np.ndarray:
        """(B, D_state) float32 global state (layout :attr:`layouts` ``["state"]``)."""
        if self.phase == "reset":
            raise InputError("call reset() first")
        cfg = self.config
        lay = self.layouts["state"]
        bsz, n_j, n_k, n_i = self.num_envs, self.n_servers, self.n_users, self.n_services
        out = np.empty((bsz, self.obs_dims["state"]), dtype=np.float32)
        phase = np.zeros(len(PHASES), dtype=np.float32)
        if self.phase in PHASES:
            phase[PHASES.index(self.phase)] = 1.0
        out[:, lay["phase_onehot"]] = phase
        out[:, lay["progress"]] = self.progress
        out[:, lay["deployment"]] = self.deployment.reshape(bsz, n_j * n_i)
        per_interval = n_k * cfg.deploy_interval_slots
        out[:, lay["requests_global"]] = self._req_global_last / per_interval
        svc = self.req_service
        out[:, lay["user_service"]] = (svc + 0.5) / n_i
        out[:, lay["user_model_onehot"]] = self._eye_model[self.service_model[svc]].reshape(bsz, -1)
        out[:, lay["user_batch"]] = self.req_batch / cfg.input_batch[1]
        j, assoc, z = self._user_geometry()
        onehot = self._eye_server[j] * assoc[:, :, None]
        out[:, lay["user_server_onehot"]] = onehot.reshape(bsz, -1)
        out[:, lay["user_split"]] = z / np.maximum(self.service_layers[svc], 1)
        out[:, lay["user_device"]] = self._user_device.reshape(bsz, -1)
        server = np.stack(
            [
                self.server_flops / (cfg.server_compute_gflops[1] * 1e9),
                self.server_bandwidth_hz / (cfg.server_bandwidth_mhz[1] * 1e6),
                self.server_storage_bytes / (cfg.server_storage_gb[1] * 1e9),
            ],
            axis=-1,
        )
        out[:, lay["server"]] = server.reshape(bsz, -1)
        out[:, lay["uplink_se"]] = (self._uplink_se / _SE_NORM).reshape(bsz, -1)
        return out

    # ----------------------------------------------------------------- stepping

    def _require(self, phase: str) -> None:
        if self.phase == "reset":
            raise InputError("call reset() before stepping")
        if self.phase == "done":
            raise InputError("the episode has ended (truncated); call reset()")
        if self.phase != phase:
            raise InputError(
                f"step_{phase} called in the {self.phase!r} phase; the {self.phase} agents act now"
            )

    def _zeros(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        bsz, n_j, n_k = self.num_envs, self.n_servers, self.n_users
        shapes = {"deploy": (bsz, n_j), "user": (bsz, n_k), "alloc": (bsz, n_j)}
        return (
            {k: np.zeros(s) for k, s in shapes.items()},
            {k: np.zeros(s) for k, s in shapes.items()},
        )

    def step(self, action: Any) -> HcStep:
        """Dispatch to the step of the current phase.

        ``action``: deploy phase (B, J, I); user phase (B, K, 2) with ``[..., 0]`` the server and
        ``[..., 1]`` the split; alloc phase (B, J, 2, K) with row 0 the compute weights and
        row 1 the bandwidth weights.
        """
        if self.phase == "deploy":
            return self.step_deploy(action)
        if self.phase == "user":
            a = np.asarray(action)
            if a.ndim != 3 or a.shape[-1] != 2:
                raise InputError(
                    f"user action must have shape ({self.num_envs}, {self.n_users}, 2), got {a.shape}"
                )
            return self.step_user(a[..., 0], a[..., 1])
        if self.phase == "alloc":
            a = np.asarray(action)
            shape = (self.num_envs, self.n_servers, 2, self.n_users)
            if a.shape != shape:
                raise InputError(f"alloc action must have shape {shape}, got {a.shape}")
            return self.step_alloc(a[:, :, 0], a[:, :, 1])
        self._require("deploy")
        raise AssertionError  # pragma: no cover - _require raised

    # --- deploy

    def step_deploy(self, deployment: Any) -> HcStep:
        """Set the services each server caches for this deployment interval (C1, C7).

        Args:
            deployment: (B, J, I) 0/1 or bool, ``x_ij``.

        Raises:
            InputError: (``invalid_action='raise'``) on a wrong shape, a value other than 0/1,
                or a deployment whose services exceed the server's storage, naming the agent.
        """
        self._require("deploy")
        cfg = self.config
        bsz, n_j, n_i = self.num_envs, self.n_servers, self.n_services
        x = np.asarray(deployment)
        if x.shape != (bsz, n_j, n_i):
            raise InputError(f"deploy action must have shape {(bsz, n_j, n_i)}, got {x.shape}")
        repaired = np.zeros((bsz, n_j), dtype=bool)
        if x.dtype == bool:
            xb = x
        else:
            xf = np.asarray(x, dtype=np.float64)
            binary = (xf == 0) | (xf == 1)
            bad = ~binary.all(-1)
            if bad.any():
                if cfg.invalid_action == "raise":
                    b, j = map(int, np.argwhere(bad)[0])
                    vals = [_fmt(v) for v in np.unique(xf[b, j][~binary[b, j]])[:5]]
                    raise InputError(
                        f"{self._who(b, f'deploy_{j}')}: deployment entries must be 0 or 1 "
                        f"(x_ij of C1), got {', '.join(vals)}"
                    )
                repaired |= bad
            xb = np.nan_to_num(xf, nan=0.0) >= 0.5
        used = (xb * self.service_bytes).sum(-1)
        over = used > self.server_storage_bytes * (1.0 + 1e-12)
        if over.any():
            if cfg.invalid_action == "raise":
                b, j = map(int, np.argwhere(over)[0])
                chosen = [self.service_names[i] for i in np.flatnonzero(xb[b, j])]
                raise InputError(
                    f"{self._who(b, f'deploy_{j}')}: the chosen services need "
                    f"{used[b, j] / 1e9:.3f} GB but the server stores "
                    f"{self.server_storage_bytes[b, j] / 1e9:.3f} GB (C7); chosen: "
                    f"{', '.join(chosen[:12])}{' ...' if len(chosen) > 12 else ''}"
                )
            xb = self._repair_deployment(xb, over)
            repaired |= over
        new = xb.astype(bool)
        mig = costs.migration_cost_s(
            new, self.deployment, self.service_bytes, self.cloud_to_edge_bps
        )
        self._migration_s = mig
        self._repaired_deploy = repaired
        self.deployment = new.copy()
        self._totals["migration_s"] += mig.sum(-1)
        self.phase = "user"
        rewards, costs_ = self._zeros()
        return HcStep(
            obs=self.observe(),
            rewards=rewards,
            costs=costs_,
            truncated=np.zeros(bsz, dtype=bool),
            info={"repaired_deploy": repaired, "migration_s": mig},
        )

    def _repair_deployment(self, x: np.ndarray, over: np.ndarray) -> np.ndarray:
        """Keep the chosen services in index order while they fit; drop the others."""
        out = x.copy()
        rows = np.argwhere(over)
        free = self.server_storage_bytes[rows[:, 0], rows[:, 1]].copy()
        keep = np.zeros((len(rows), self.n_services), dtype=bool)
        chosen = x[rows[:, 0], rows[:, 1]]
        for i in range(self.n_services):
            fits = chosen[:, i] & (self.service_bytes[i] <= free)
            keep[:, i] = fits
            free -= np.where(fits, self.service_bytes[i], 0.0)
        out[rows[:, 0], rows[:, 1]] = keep
        return out

    # --- user

    def step_user(self, server: Any, split: Any) -> HcStep:
        """Associate every user with a server and choose its split point (C2-C4).

        Args:
            server: (B, K) int in ``[0, J)``.
            split: (B, K) int in ``[0, Z)``, valid for the request (:meth:`split_mask`).

        Raises:
            InputError: (``invalid_action='raise'``) naming the first user whose server or split
                is outside its space or mask, with the valid values.
        """
        self._require("user")
        cfg = self.config
        bsz, n_k, n_j, n_z = self.num_envs, self.n_users, self.n_servers, self.n_splits
        srv = np.asarray(server)
        spl = np.asarray(split)
        for name, arr in (("server", srv), ("split", spl)):
            if arr.shape != (bsz, n_k):
                raise InputError(
                    f"user {name} choices must have shape {(bsz, n_k)}, got {arr.shape}"
                )
        srv_f = np.asarray(srv, dtype=np.float64)
        spl_f = np.asarray(spl, dtype=np.float64)
        s_mask = self.server_mask()
        z_mask = self.split_mask()
        with np.errstate(invalid="ignore"):
            srv_int = np.isfinite(srv_f) & (srv_f == np.round(srv_f))
            spl_int = np.isfinite(spl_f) & (spl_f == np.round(spl_f))
        srv_i = np.where(srv_int, srv_f, -1).astype(np.int64)
        spl_i = np.where(spl_int, spl_f, -1).astype(np.int64)
        srv_in = (srv_i >= 0) & (srv_i < n_j)
        spl_in = (spl_i >= 0) & (spl_i < n_z)
        b_idx = np.arange(bsz)[:, None]
        k_idx = np.arange(n_k)[None, :]
        srv_ok = srv_in & s_mask[b_idx, k_idx, np.clip(srv_i, 0, n_j - 1)]
        spl_ok = spl_in & z_mask[b_idx, k_idx, np.clip(spl_i, 0, n_z - 1)]
        bad = ~(srv_ok & spl_ok)
        if bad.any() and cfg.invalid_action == "raise":
            b, k = map(int, np.argwhere(bad)[0])
            who = self._who(b, f"user_{k}")
            if not srv_ok[b, k]:
                valid = np.flatnonzero(s_mask[b, k]).tolist()
                raise InputError(
                    f"{who}: server {_fmt(srv[b, k])} is not a valid choice; valid servers: {valid}"
                )
            i = int(self.req_service[b, k])
            valid = np.flatnonzero(z_mask[b, k]).tolist()
            raise InputError(
                f"{who}: split {_fmt(spl[b, k])} is not valid for its request "
                f"{self.service_names[i]} (L = {int(self.service_layers[i])}, device memory "
                f"{self.user_memory_bytes[b, k] / 1e9:.3f} GB); valid splits: {valid}"
            )
        if bad.any():
            srv_i = self._repair_server(srv_f, srv_ok, srv_i, s_mask)
            spl_i = self._repair_split(spl_f, spl_ok, spl_i, z_mask)
        self._repaired_user = bad
        self.assoc = srv_i
        self.split = spl_i
        self.phase = "alloc"
        rewards, costs_ = self._zeros()
        return HcStep(
            obs=self.observe(),
            rewards=rewards,
            costs=costs_,
            truncated=np.zeros(bsz, dtype=bool),
            info={"repaired_user": bad},
        )

    def _repair_server(
        self, raw: np.ndarray, ok: np.ndarray, idx: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """Nearest valid server index to the rounded value (ties to the lower one)."""
        n_j = self.n_servers
        target = np.clip(np.nan_to_num(np.round(raw), nan=0.0), 0, n_j - 1)
        dist = np.abs(np.arange(n_j)[None, None, :] - target[:, :, None]) + np.where(
            mask, 0.0, np.inf
        )
        return np.where(ok, idx, dist.argmin(-1))

    def _repair_split(
        self, raw: np.ndarray, ok: np.ndarray, idx: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """Largest valid split not above the rounded value (z = 0 is always valid)."""
        n_z = self.n_splits
        target = np.clip(np.nan_to_num(np.round(raw), nan=0.0), 0, n_z - 1)
        allowed = mask & (np.arange(n_z)[None, None, :] <= target[:, :, None])
        last = n_z - 1 - np.argmax(allowed[:, :, ::-1], axis=-1)
        return np.where(ok, idx, np.where(allowed.any(-1), last, 0))

    # --- alloc

    def step_alloc(self, compute_weights: Any, bandwidth_weights: Any) -> HcStep:
        """Share each server's compute and bandwidth among its users; evaluate the slot.

        Weights are per server and user, in [0, 1]; a server's shares are its weights
        normalised over the users that use the resource (compute: served users with
        ``z < L``; bandwidth: all served users), equal shares when they are all 0
        (:func:`edgerl.hcmappo.costs.normalised_shares`). Weights of other users are ignored.

        Args:
            compute_weights: (B, J, K) float.
            bandwidth_weights: (B, J, K) float.

        Returns:
            The step; at the end of the slot its info holds (B, K) arrays ``delay_s``,
            ``energy_j``, ``privacy_cost``, ``user_cost`` (minus the user reward before any
            repair penalty), ``success``, ``cache_hit``, ``server``, ``split``,
            ``compute_share``, ``bandwidth_share``, ``repaired_user``; (B, J) ``n_users``,
            ``hits``, ``repaired_alloc``; (B,) ``system_cost`` (eq. (12)),
            ``delay_s_mean``; and at a truncation ``final_obs`` (:meth:`observe` ``"all"``),
            ``final_state`` and ``episode_stats`` (see :meth:`episode_stats`).

        Raises:
            InputError: (``invalid_action='raise'``) on weights outside [0, 1] or not finite,
                naming the agent.
        """
        self._require("alloc")
        cfg = self.config
        bsz, n_j, n_k = self.num_envs, self.n_servers, self.n_users
        shape = (bsz, n_j, n_k)
        w = []
        repaired = np.zeros((bsz, n_j), dtype=bool)
        for name, arr in (("compute", compute_weights), ("bandwidth", bandwidth_weights)):
            a = np.asarray(arr, dtype=np.float64)
            if a.shape != shape:
                raise InputError(f"alloc {name} weights must have shape {shape}, got {a.shape}")
            ok = np.isfinite(a) & (a >= 0.0) & (a <= 1.0)
            bad = ~ok.all(-1)
            if bad.any():
                if cfg.invalid_action == "raise":
                    b, j = map(int, np.argwhere(bad)[0])
                    vals = [_fmt(v) for v in a[b, j][~ok[b, j]][:5]]
                    raise InputError(
                        f"{self._who(b, f'alloc_{j}')}: {name} weights must be finite and in "
                        f"[0, 1], got {', '.join(vals)}"
                    )
                a = np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
                repaired |= bad
            w.append(a)
        return self._evaluate_slot(w[0], w[1], repaired)

    def _evaluate_slot(
        self, w_comp: np.ndarray, w_band: np.ndarray, rep_alloc: np.ndarray
    ) -> HcStep:
        cfg = self.config
        bsz, n_j, n_k = self.num_envs, self.n_servers, self.n_users
        b_idx = np.arange(bsz)[:, None]
        k_idx = np.arange(n_k)[None, :]
        j = self.assoc
        z = self.split
        svc = self.req_service
        batch = self.req_batch
        hit = self.deployment[b_idx, j, svc]
        # Cache misses split by cause: some server held the service (the user's choice) or
        # none did (the deployment's).
        cached_somewhere = self._cached_for_request().any(-1)
        miss_avoidable = ~hit & cached_somewhere
        miss_no_cache = ~cached_somewhere
        needs_compute = hit & (z < self.service_layers[svc])
        group = (b_idx * n_j + j).reshape(-1)
        phi_c = costs.normalised_shares(
            w_comp[b_idx, j, k_idx].reshape(-1), group, needs_compute.reshape(-1), bsz * n_j
        ).reshape(bsz, n_k)
        phi_b = costs.normalised_shares(
            w_band[b_idx, j, k_idx].reshape(-1), group, hit.reshape(-1), bsz * n_j
        ).reshape(bsz, n_k)
        g = self.gain[b_idx, j, k_idx]
        bw = phi_b * self.server_bandwidth_hz[b_idx, j]
        r_down = costs.link_rate_bps(bw, self.server_tx_w[b_idx, j], g, self.noise_w_per_hz)
        r_up = costs.link_rate_bps(bw, self.user_tx_w, g, self.noise_w_per_hz)
        dev_flops = self._dev_flops[svc, z]
        t_down = costs.download_delay_s(self._dev_param[svc, z], r_down)
        t_local = costs.local_delay_s(batch, dev_flops, self.user_flops)
        t_up = costs.upload_delay_s(batch, self._up_bytes[svc, z], r_up)
        t_edge = costs.edge_delay_s(
            batch, self._edge_flops[svc, z], phi_c, self.server_flops[b_idx, j]
        )
        succ = costs.success_delay_s(t_down, t_local, t_up, t_edge)  # eq. (4)
        delay, success = costs.request_delay_s(  # eq. (5)
            succ, hit, cfg.fail_delay_s, cfg.timeout_fails
        )
        with np.errstate(invalid="ignore"):
            energy = np.where(
                success,
                costs.energy_j(self.user_energy_per_flop, batch, dev_flops, self.user_tx_w, t_up),
                0.0,
            )
        privacy = np.where(
            success,
            costs.privacy_cost(
                self.user_preference,
                self._leak[svc, z],
                batch,
                self._raw_units[svc],
                cfg.privacy_alpha1,
                cfg.privacy_alpha2,
            ),
            0.0,
        )
        r_user = costs.configured_user_reward(cfg, privacy, energy, delay, success)
        user_cost = -r_user
        r_user = r_user - cfg.invalid_action_penalty * self._repaired_user
        n_users = np.bincount(group, minlength=bsz * n_j).reshape(bsz, n_j).astype(np.float64)
        delay_sum = np.bincount(group, weights=delay.reshape(-1), minlength=bsz * n_j).reshape(
            bsz, n_j
        )
        mean_delay = np.divide(delay_sum, n_users, out=np.zeros_like(delay_sum), where=n_users > 0)
        r_alloc = -mean_delay - cfg.invalid_action_penalty * rep_alloc  # eq. (26)
        hits = np.bincount(group, weights=hit.reshape(-1).astype(np.float64), minlength=bsz * n_j)
        hits = hits.reshape(bsz, n_j)
        sys_cost = costs.system_cost(privacy, energy, cfg.weight_privacy, cfg.weight_energy)

        # Interval bookkeeping for the deployment agents (eqs. (14), (22)-(24)).
        np.add.at(self._req_global, (np.repeat(np.arange(bsz), n_k), svc.reshape(-1)), 1.0)
        np.add.at(
            self._req_local,
            (np.repeat(np.arange(bsz), n_k), j.reshape(-1), svc.reshape(-1)),
            1.0,
        )
        self._hits += hits
        self._interval_slots += 1
        rewards, costs_ = self._zeros()
        rewards["user"] = r_user
        rewards["alloc"] = r_alloc
        costs_["user"] = delay
        costs_["alloc"] = mean_delay
        costs_["deploy"] = mean_delay.copy()
        interval_end = (
            self.t + 1
        ) % cfg.deploy_interval_slots == 0 or self.t + 1 == cfg.episode_slots
        if interval_end:
            rewards["deploy"] = (
                costs.deploy_reward(
                    self._hits, self._migration_s, cfg.weight_hit, cfg.weight_migration_per_s
                )
                - cfg.invalid_action_penalty * self._repaired_deploy
            )
        info: dict[str, Any] = {
            "delay_s": delay,
            "energy_j": energy,
            "privacy_cost": privacy,
            "user_cost": user_cost,
            "success": success,
            "cache_hit": hit,
            "miss_avoidable": miss_avoidable,
            "miss_no_cache": miss_no_cache,
            "server": j.copy(),
            "split": z.copy(),
            "compute_share": phi_c,
            "bandwidth_share": phi_b,
            "repaired_user": self._repaired_user.copy(),
            "repaired_alloc": rep_alloc,
            "n_users": n_users,
            "hits": hits,
            "system_cost": sys_cost,
            "delay_s_mean": delay.mean(-1),
            "interval_end": interval_end,
        }
        if interval_end:
            info["interval_hits"] = self._hits.copy()
            info["interval_migration_s"] = self._migration_s.copy()
            info["repaired_deploy"] = self._repaired_deploy.copy()
        tot = self._totals
        tot["requests"] += n_k
        tot["success"] += success.sum(-1)
        tot["cache_hit"] += hit.sum(-1)
        tot["miss_avoidable"] += miss_avoidable.sum(-1)
        tot["miss_no_cache"] += miss_no_cache.sum(-1)
        tot["delay_s"] += delay.sum(-1)
        tot["energy_j"] += energy.sum(-1)
        tot["privacy_cost"] += privacy.sum(-1)
        tot["user_cost"] += user_cost.sum(-1)
        tot["system_cost"] += sys_cost
        tot["slots"] += 1

        # Advance to the next slot.
        self.load_prev = n_users
        if interval_end:
            self._req_global_last = self._req_global
            self._req_local_last = self._req_local
            self._req_global = np.zeros_like(self._req_global_last)
            self._req_local = np.zeros_like(self._req_local_last)
            self._hits = np.zeros_like(self._hits)
            self._interval_slots = 0
        self.t += 1
        self.assoc = np.full((bsz, n_k), -1, dtype=np.int64)
        self.split = np.full((bsz, n_k), -1, dtype=np.int64)
        self._draw_slot()
        truncated = np.full(bsz, self.t >= cfg.episode_slots)
        if truncated.all():
            self.phase = "done"
            info["final_obs"] = self.observe("all")
            info["final_state"] = self.state()
            info["episode_stats"] = self.episode_stats()
            if self.autoreset:
                self._new_episode()
        else:
            self.phase = "deploy" if self.t % cfg.deploy_interval_slots == 0 else "user"
        obs = self.observe() if self.phase != "done" else info["final_obs"]
        return HcStep(obs=obs, rewards=rewards, costs=costs_, truncated=truncated, info=info)

    # ----------------------------------------------------------------- statistics

    def episode_stats(self) -> dict[str, np.ndarray]:
        """Means over the episode so far, (B,) each.

        Keys (the experiment metrics of the paper, section V-A): ``delay_s_mean`` (eq. (5),
        failures at ``tau_fail``), ``user_cost_mean`` (minus the user reward of eq. (25)),
        ``energy_j_mean`` and ``privacy_cost_mean`` (eqs. (9), (11): failed requests count 0),
        ``success_rate``, ``cache_hit_rate``, ``system_cost_mean`` (eq. (12) per slot),
        ``migration_s_total`` and ``slots``; the cache misses split by cause:
        ``miss_avoidable_rate`` (the chosen server lacks the service while another holds it)
        and ``miss_no_cache_rate`` (no server holds it), which add up to
        ``1 - cache_hit_rate``.
        """
        tot = self._totals
        n = np.maximum(tot["requests"], 1.0)
        slots = np.maximum(tot["slots"], 1.0)
        return {
            "delay_s_mean": tot["delay_s"] / n,
            "user_cost_mean": tot["user_cost"] / n,
            "energy_j_mean": tot["energy_j"] / n,
            "privacy_cost_mean": tot["privacy_cost"] / n,
            "success_rate": tot["success"] / n,
            "cache_hit_rate": tot["cache_hit"] / n,
            "miss_avoidable_rate": tot["miss_avoidable"] / n,
            "miss_no_cache_rate": tot["miss_no_cache"] / n,
            "system_cost_mean": tot["system_cost"] / slots,
            "migration_s_total": tot["migration_s"].copy(),
            "slots": tot["slots"].copy(),
        }
