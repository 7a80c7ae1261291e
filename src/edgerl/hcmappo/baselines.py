"""Heuristic policies of the HC-MAPPO-L experiments and the shared evaluation loop (paper 003).

Paper 003, section V-A, compares the learned hierarchy with three heuristics; the same pieces
serve the Heuristic-MAPPO-L ablation (LRU deployment, equal shares) in
:mod:`edgerl.hcmappo.agent`. The paper's heuristics, as its text defines them:

* **Local-Only**: "all inference tasks are executed locally with channel-based association,
  equal-share allocation, and popularity-based deployment": the deepest valid split (``z = L``,
  or the deepest the device memory allows).
* **Edge-Only**: "all inference tasks are offloaded using identical association, allocation,
  and deployment strategies as Local-Only" (``z = 0``).
* **Greedy** (:class:`Greedy`): "selects the strongest-channel server with requested service,
  chooses the deepest feasible partition point under equal-share delay estimation, and uses
  popularity-based deployment".

Channel-based association is the server of strongest channel gain ``g_jk`` (this slot's path
loss and shadowing, the quantity of both Shannon rates). The paper adds "with requested
service" for Greedy alone, so Local-Only and Edge-Only take the strongest channel whatever the
server caches (a miss fails, eq. (5)), and Greedy the strongest among the servers that cache
the requested service (the strongest overall when none does). All three share each server's
resources equally and deploy by popularity (:func:`popularity_deployment`): the services
requested most from the server in the last interval first (ties by the requests of the whole
system, then by index), kept while they fit its storage. The channel gains are read from the
environment, so these rules must be given the :class:`BatchedHcEnv` itself.

Beyond the paper:

* **Random**: every decision uniform over its mask (deployment: services in random order, each
  kept with probability 1/2 while it fits).
* **Greedy-Cost** (``greedy-cost``, :class:`GreedyCost`), a reference that is not one of the
  paper's baselines and is reported apart from them: each user takes the server and split of
  least estimated cost (minus eq. (25)) under equal shares, with full knowledge of every
  server's cache, capacities and channel; the loads come from three rounds of best response.
  It estimates the per-user optimum of the reward alone (eq. (25)) at equal shares.

Every policy offers ``act(obs, deterministic=True)`` where ``obs`` is a
:class:`BatchedHcEnv` (its current phase and observation) or the dict of
:meth:`BatchedHcEnv.observe`; the result is the action of that phase for
:meth:`BatchedHcEnv.step`. :func:`evaluate_policy` runs any such policy over held-out
episodes and returns the metrics of section V-A.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from edgerl.hcmappo import costs
from edgerl.hcmappo.batched import BatchedHcEnv
from edgerl.hcmappo.catalog import ServiceCatalog
from edgerl.hcmappo.config import HcConfig
from edgerl.utils.errors import InputError
from edgerl.utils.seeding import make_rng

__all__ = [
    "BASELINES",
    "EVAL_SEED",
    "METRICS",
    "PAPER_BASELINES",
    "REFERENCE_BASELINES",
    "EdgeOnly",
    "Greedy",
    "GreedyCost",
    "HcPolicy",
    "LocalOnly",
    "LruDeployer",
    "RandomPolicy",
    "SplitEstimator",
    "equal_shares",
    "evaluate_policy",
    "fill_in_order",
    "make_baseline",
    "phase_of",
    "popularity_deployment",
    "strongest_channel",
]

PAPER_BASELINES: tuple[str, ...] = ("local-only", "edge-only", "greedy")
"""The heuristic baselines of paper 003 section V-A."""

REFERENCE_BASELINES: tuple[str, ...] = ("greedy-cost",)
"""Heuristics beyond the paper that are reported apart from its methods."""

BASELINES: tuple[str, ...] = (*PAPER_BASELINES, "random", *REFERENCE_BASELINES)
"""Names of every heuristic (:func:`make_baseline`)."""

EVAL_SEED = 100_000
"""First seed of the held-out evaluation episodes (training uses seeds below it)."""

METRICS: tuple[str, ...] = (
    "delay_s_mean",
    "user_cost_mean",
    "energy_j_mean",
    "privacy_cost_mean",
    "success_rate",
    "cache_hit_rate",
    "miss_avoidable_rate",
    "miss_no_cache_rate",
    "system_cost_mean",
)
"""Episode metrics of section V-A reported for every method (see ``episode_stats``)."""

STORAGE_MARGIN = 1e-5
"""Fraction of a server's storage left unused by the deployment rules: the rules work on the
float32 size fractions of the observation, whose rounding must never push a deployment over
the storage the environment checks in float64."""

_OBS_KEY = {"deploy": "deploy_obs", "user": "user_obs", "alloc": "alloc_obs"}


class HcPolicy(Protocol):
    """What :func:`evaluate_policy` needs of a policy."""

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:  # pragma: no cover
        """The action of the current phase."""
        ...


# --------------------------------------------------------------------------- helpers


def phase_of(obs: Mapping[str, np.ndarray]) -> str:
    """The phase an observation dict belongs to (exactly one of its three kinds present).

    Raises:
        InputError: When the dict holds none or several kinds (pass the environment instead).
    """
    kinds = [k for k, key in _OBS_KEY.items() if key in obs]
    if len(kinds) != 1:
        raise InputError(
            f"cannot tell the phase from an observation with keys {sorted(obs)}; pass the "
            "BatchedHcEnv itself or the dict of observe() for the acting phase only"
        )
    return kinds[0]


def split_obs(obs: Any) -> tuple[str, Mapping[str, np.ndarray], BatchedHcEnv | None]:
    """``(phase, observation dict, env or None)`` from an env or an observation dict."""
    if isinstance(obs, BatchedHcEnv):
        if obs.phase not in _OBS_KEY:
            raise InputError(f"the environment is in the {obs.phase!r} phase; nobody acts now")
        return obs.phase, obs.observe(), obs
    if not isinstance(obs, Mapping):
        raise InputError(
            f"act: expected a BatchedHcEnv or the dict of its observe(), got {type(obs).__name__}"
        )
    return phase_of(obs), obs, None


def fill_in_order(order: np.ndarray, size_fraction: np.ndarray) -> np.ndarray:
    """Deployments that take services in the given order while they fit (C7).

    Args:
        order: (N, I) int, a permutation of the services per server, preferred first.
        size_fraction: (N, I) service size / the server's storage.

    Returns:
        (N, I) bool: service ``order[n, r]`` is kept iff it fits in what the services kept
        before it (in this order) leave, less :data:`STORAGE_MARGIN`.
    """
    n, n_i = order.shape
    size = np.asarray(size_fraction, dtype=np.float64)
    rows = np.arange(n)
    used = np.zeros(n)
    keep = np.zeros((n, n_i), dtype=bool)
    for r in range(n_i):
        i = order[:, r]
        s = size[rows, i]
        fits = used + s <= 1.0 - STORAGE_MARGIN
        keep[rows, i] = fits
        used += np.where(fits, s, 0.0)
    return keep


def popularity_deployment(deploy_obs: np.ndarray, layout: Mapping[str, slice]) -> np.ndarray:
    """Popularity-based deployment under storage (section V-A baselines).

    Services are ranked by the requests sent to the server in the last interval, ties broken
    by the requests of the whole system, then by service index; they are kept in that order
    while they fit (:func:`fill_in_order`).

    Args:
        deploy_obs: (B, J, D) deployment observations.
        layout: The ``deploy`` layout of :attr:`BatchedHcEnv.layouts`.

    Returns:
        (B, J, I) bool deployment.
    """
    b, j, _ = deploy_obs.shape
    local = deploy_obs[..., layout["requests_local"]].astype(np.float64)
    glob = deploy_obs[..., layout["requests_global"]].astype(np.float64)
    n_i = local.shape[-1]
    index = np.broadcast_to(np.arange(n_i), local.shape)
    # lexsort: last key is the primary one; negate for descending counts.
    order = np.lexsort((index, -glob, -local), axis=-1).reshape(b * j, n_i)
    size = deploy_obs[..., layout["size_fraction"]].reshape(b * j, n_i)
    return fill_in_order(order, size).reshape(b, j, n_i)


def equal_shares(n_envs: int, n_servers: int, n_users: int) -> np.ndarray:
    """Allocation action giving every user of a server the same share of both resources.

    Returns:
        (B, J, 2, K) float32 ones: the environment normalises equal weights to equal shares.
    """
    return np.ones((n_envs, n_servers, 2, n_users), dtype=np.float32)


def strongest_channel(
    env: BatchedHcEnv | None, server_mask: np.ndarray, holders: np.ndarray | None = None
) -> np.ndarray:
    """Per user, the allowed server of strongest channel gain ``g_jk`` in the current slot.

    Args:
        env: The environment in its user phase (its channel gains are read).
        server_mask: (B, K, J) bool, the servers each user may choose.
        holders: (B, K, J) bool or None: when given, the choice is restricted to these servers
            (e.g. those caching the requested service) for the users that have one allowed.

    Returns:
        (B, K) int server indices.

    Raises:
        InputError: When ``env`` is None (the gains are not in the observation).
    """
    if env is None:
        raise InputError(
            "channel-based association needs the BatchedHcEnv itself (it reads the channel "
            "gains); pass the environment to act()"
        )
    gain = np.asarray(env.gain, dtype=np.float64).transpose(0, 2, 1)  # (B, K, J)
    allowed = np.asarray(server_mask, dtype=bool)
    pool = allowed
    if holders is not None:
        mine = np.asarray(holders, dtype=bool) & allowed
        pool = np.where(mine.any(-1, keepdims=True), mine, allowed)
    return np.where(pool, gain, -np.inf).argmax(-1)


class LruDeployer:
    """Least-recently-used deployment (the Heuristic-MAPPO-L ablation of paper 003).

    Keeps, per copy and server, the slot at which each service was last requested from that
    server (cache hit or miss). A deployment keeps the services in order of most recent use,
    then never-used services by global requests of the last interval, then by index, while they
    fit. The record of a copy is cleared when its episode starts (deployment observation with
    ``progress = 0``).

    Args:
        n_services: I.
    """

    def __init__(self, n_services: int) -> None:
        self.n_services = int(n_services)
        self._last: np.ndarray | None = None  # (B, J, I) slot of last use, -1 never
        self._clock = 0

    def reset(self) -> None:
        """Forget every recorded request."""
        self._last = None
        self._clock = 0

    def _table(self, n_envs: int, n_servers: int) -> np.ndarray:
        if self._last is None or self._last.shape[:2] != (n_envs, n_servers):
            self._last = np.full((n_envs, n_servers, self.n_services), -1, dtype=np.int64)
        return self._last

    def record(self, server: np.ndarray, service: np.ndarray, n_servers: int) -> None:
        """Note the requests of one slot.

        Args:
            server: (B, K) chosen servers.
            service: (B, K) requested services.
            n_servers: J.
        """
        srv = np.asarray(server, dtype=np.int64)
        table = self._table(srv.shape[0], n_servers)
        self._clock += 1
        b = np.repeat(np.arange(srv.shape[0]), srv.shape[1])
        table[b, srv.reshape(-1), np.asarray(service, dtype=np.int64).reshape(-1)] = self._clock

    def deploy(self, deploy_obs: np.ndarray, layout: Mapping[str, slice]) -> np.ndarray:
        """(B, J, I) bool LRU deployment for the given observations."""
        b, j, _ = deploy_obs.shape
        table = self._table(b, j)
        fresh = deploy_obs[:, 0, layout["progress"]].reshape(b) == 0.0
        table[fresh] = -1
        glob = deploy_obs[..., layout["requests_global"]].astype(np.float64)
        index = np.broadcast_to(np.arange(self.n_services), glob.shape)
        order = np.lexsort((index, -glob, -table), axis=-1).reshape(b * j, self.n_services)
        size = deploy_obs[..., layout["size_fraction"]].reshape(b * j, self.n_services)
        return fill_in_order(order, size).reshape(b, j, self.n_services)


# --------------------------------------------------------------------------- baselines


class _Heuristic:
    """Popularity deployment, a per-user rule, equal shares."""

    name = "heuristic"

    def __init__(self, env: BatchedHcEnv, seed: int | None = 0) -> None:
        if not isinstance(env, BatchedHcEnv):
            raise InputError(
                f"{self.name}: needs a BatchedHcEnv for its layouts, got {type(env).__name__}"
            )
        self.layouts = env.layouts
        self.n_servers = env.n_servers
        self.n_users = env.n_users
        self.n_services = env.n_services
        self.n_splits = env.n_splits
        self.rng = make_rng(seed)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action of the current phase (see the module docstring)."""
        phase, o, env = split_obs(obs)
        if phase == "deploy":
            return self.deploy(o["deploy_obs"])
        if phase == "user":
            server, split = self.users(o, env)
            return np.stack([server, split], axis=-1)
        b = o["alloc_obs"].shape[0]
        return self.alloc(o, b)

    def deploy(self, deploy_obs: np.ndarray) -> np.ndarray:
        return popularity_deployment(deploy_obs, self.layouts["deploy"])

    def users(
        self, obs: Mapping[str, np.ndarray], env: BatchedHcEnv | None
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - overridden
        raise NotImplementedError

    def alloc(self, obs: Mapping[str, np.ndarray], n_envs: int) -> np.ndarray:
        return equal_shares(n_envs, self.n_servers, self.n_users)


def _deepest_split(split_mask: np.ndarray) -> np.ndarray:
    z = split_mask.shape[-1]
    return z - 1 - np.argmax(split_mask[..., ::-1], axis=-1)


class LocalOnly(_Heuristic):
    """Every request on the device: the deepest valid split (``z = L`` unless memory forbids);
    the server of strongest channel (it provides the weights)."""

    name = "local-only"

    def users(
        self, obs: Mapping[str, np.ndarray], env: BatchedHcEnv | None
    ) -> tuple[np.ndarray, np.ndarray]:
        server = strongest_channel(env, obs["user_server_mask"])
        return server, _deepest_split(np.asarray(obs["user_split_mask"], dtype=bool))


class EdgeOnly(_Heuristic):
    """Every request on the edge (``z = 0``); the server of strongest channel."""

    name = "edge-only"

    def users(
        self, obs: Mapping[str, np.ndarray], env: BatchedHcEnv | None
    ) -> tuple[np.ndarray, np.ndarray]:
        server = strongest_channel(env, obs["user_server_mask"])
        return server, np.zeros_like(server)


class RandomPolicy(_Heuristic):
    """Every decision uniform over its mask; deployments random within the storage."""

    name = "random"

    def deploy(self, deploy_obs: np.ndarray) -> np.ndarray:
        b, j, _ = deploy_obs.shape
        n_i = self.n_services
        order = np.argsort(self.rng.random((b * j, n_i)), axis=-1)
        size = deploy_obs[..., self.layouts["deploy"]["size_fraction"]].reshape(b * j, n_i)
        # Skip each service with probability 1/2 by giving it no room.
        skip = self.rng.random((b * j, n_i)) < 0.5
        keep = fill_in_order(order, np.where(skip, np.inf, size))
        return keep.reshape(b, j, n_i)

    def users(
        self, obs: Mapping[str, np.ndarray], env: BatchedHcEnv | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return (
            _uniform_choice(np.asarray(obs["user_server_mask"], dtype=bool), self.rng),
            _uniform_choice(np.asarray(obs["user_split_mask"], dtype=bool), self.rng),
        )

    def alloc(self, obs: Mapping[str, np.ndarray], n_envs: int) -> np.ndarray:
        return self.rng.random((n_envs, self.n_servers, 2, self.n_users)).astype(np.float32)


def _uniform_choice(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row, uniform over the true entries of the last axis."""
    u = rng.random(mask.shape)
    return np.where(mask, u, -1.0).argmax(-1)


class SplitEstimator:
    """Delay, energy and privacy of every (server, split) of every user at given shares.

    Eqs. (4), (6)-(8) and (10) evaluated as the environment does, with the share of server
    ``j``'s compute and bandwidth that one user would get given per server, and this slot's
    channels, requests and cache. Shared by :class:`Greedy` and :class:`GreedyCost`.

    Args:
        env: The environment (its catalog and config).
    """

    def __init__(self, env: BatchedHcEnv) -> None:
        cat = env.catalog
        self._dev_flops = cat.per_service("device_flops")
        self._edge_flops = cat.per_service("edge_flops")
        self._up_bytes = cat.per_service("upload_bytes")
        self._dev_param = cat.per_service("device_param_bytes")
        self._leak = cat.per_service("leakage")
        self._raw_units = cat.per_service("input_bytes") / env.config.privacy_unit_bytes

    def estimate(self, env: BatchedHcEnv, share: np.ndarray) -> dict[str, np.ndarray]:
        """(B, K, J, Z) arrays at the given shares.

        Args:
            env: The environment in its user phase.
            share: (B, J) the fraction of each server's compute and bandwidth one user gets.

        Returns:
            ``succ_delay_s`` (eq. (4), s, before eq. (5)), ``cache_hit`` (bool),
            ``energy_j`` (eq. (8)) and ``privacy_cost`` (eq. (10)), each as if served.
        """
        cfg = env.config
        shape = (env.num_envs, env.n_users, env.n_servers, env.n_splits)
        svc = env.req_service  # (B, K)
        batch = env.req_batch[:, :, None, None]
        b_idx = np.arange(env.num_envs)[:, None]
        hit = env.deployment[
            b_idx[:, :, None], np.arange(env.n_servers)[None, None, :], svc[:, :, None]
        ]
        hit = hit[:, :, :, None]  # (B, K, J, 1)
        gain = env.gain.transpose(0, 2, 1)[:, :, :, None]  # (B, K, J, 1)
        share = np.asarray(share, dtype=np.float64)
        bw = (share * env.server_bandwidth_hz)[:, None, :, None]
        r_down = costs.link_rate_bps(
            bw, env.server_tx_w[:, None, :, None], gain, env.noise_w_per_hz
        )
        r_up = costs.link_rate_bps(bw, env.user_tx_w[:, :, None, None], gain, env.noise_w_per_hz)
        dev_flops = self._dev_flops[svc][:, :, None, :]  # (B, K, 1, Z)
        t_down = costs.download_delay_s(self._dev_param[svc][:, :, None, :], r_down)
        t_local = costs.local_delay_s(batch, dev_flops, env.user_flops[:, :, None, None])
        t_up = costs.upload_delay_s(batch, self._up_bytes[svc][:, :, None, :], r_up)
        t_edge = costs.edge_delay_s(
            batch,
            self._edge_flops[svc][:, :, None, :],
            share[:, None, :, None],
            env.server_flops[:, None, :, None],
        )
        succ = costs.success_delay_s(t_down, t_local, t_up, t_edge)
        with np.errstate(invalid="ignore"):
            energy = costs.energy_j(
                env.user_energy_per_flop[:, :, None, None],
                batch,
                dev_flops,
                env.user_tx_w[:, :, None, None],
                t_up,
            )
        privacy = costs.privacy_cost(
            env.user_preference[:, :, None, None],
            self._leak[svc][:, :, None, :],
            batch,
            self._raw_units[svc][:, :, None, None],
            cfg.privacy_alpha1,
            cfg.privacy_alpha2,
        )
        return {
            "succ_delay_s": np.broadcast_to(succ, shape),
            "cache_hit": np.broadcast_to(hit, shape),
            "energy_j": np.broadcast_to(energy, shape),
            "privacy_cost": np.broadcast_to(privacy, shape),
        }


class Greedy(_Heuristic):
    """The paper's Greedy (section V-A): strongest channel, deepest feasible split, popularity.

    "Selects the strongest-channel server with requested service, chooses the deepest feasible
    partition point under equal-share delay estimation, and uses popularity-based deployment."
    Read as follows:

    * server: the allowed server of strongest channel gain ``g_jk`` among those caching the
      requested service; the strongest overall when none caches it (the request then fails);
    * equal-share delay estimation: every server's compute and bandwidth split equally among
      the ``n_j`` users that chose it in this slot (the server choice does not depend on the
      split, so ``n_j`` is known), i.e. share ``1 / n_j``, and eq. (4) at those shares with this
      slot's channel;
    * deepest feasible split: the largest valid ``z`` (within ``L`` and the device memory)
      whose estimated delay is at most tau-bar; when no split meets it, the valid split of
      least estimated delay (the shallowest of equal ones);
    * deployment: popularity (:func:`popularity_deployment`); allocation: equal shares.

    Args:
        env: The environment it acts in (it reads the channels, capacities and requests).
        seed: Unused (the rule is deterministic); kept for the common signature.
    """

    name = "greedy"

    def __init__(self, env: BatchedHcEnv, seed: int | None = 0) -> None:
        super().__init__(env, seed)
        self.tables = SplitEstimator(env)

    def users(
        self, obs: Mapping[str, np.ndarray], env: BatchedHcEnv | None
    ) -> tuple[np.ndarray, np.ndarray]:
        smask = np.asarray(obs["user_server_mask"], dtype=bool)
        zmask = np.asarray(obs["user_split_mask"], dtype=bool)
        if env is None:
            raise InputError(
                f"{self.name}: act needs the BatchedHcEnv itself (it reads the channels)"
            )
        holders = obs["user_obs"][..., self.layouts["user"]["cached"]] > 0.5
        server = strongest_channel(env, smask, holders)
        split = self.splits(env, server, zmask)
        return server, split

    def splits(self, env: BatchedHcEnv, server: np.ndarray, split_mask: np.ndarray) -> np.ndarray:
        """(B, K) deepest split whose equal-share delay estimate meets tau-bar.

        Args:
            env: The environment in its user phase.
            server: (B, K) the servers the users chose.
            split_mask: (B, K, Z) valid splits.
        """
        delay = self.estimated_delay(env, server)
        zmask = np.asarray(split_mask, dtype=bool)
        feasible = zmask & (delay <= env.config.delay_limit_s)
        deepest = _deepest_split(feasible)
        fastest = np.where(zmask, delay, np.inf).argmin(-1)
        return np.where(feasible.any(-1), deepest, fastest)

    def estimated_delay(self, env: BatchedHcEnv, server: np.ndarray) -> np.ndarray:
        """(B, K, Z) eq. (4) at the chosen server with equal shares ``1 / n_j``, s."""
        bsz, n_k, n_j = env.num_envs, env.n_users, env.n_servers
        srv = np.asarray(server, dtype=np.int64)
        counts = np.zeros((bsz, n_j))
        np.add.at(counts, (np.repeat(np.arange(bsz), n_k), srv.reshape(-1)), 1.0)
        share = 1.0 / np.maximum(counts, 1.0)
        succ = self.tables.estimate(env, share)["succ_delay_s"]  # (B, K, J, Z)
        return np.take_along_axis(succ, srv[:, :, None, None], axis=2)[:, :, 0, :]


class GreedyCost(_Heuristic):
    """Beyond the paper: the least estimated cost per user under equal shares (reference).

    Not the paper's Greedy (:class:`Greedy`): a best-response least-cost heuristic with full
    knowledge of every server's cache, capacities and channel. The estimate is minus eq. (25)
    with the delays of eq. (4) at shares ``1 / n_j``, where ``n_j`` counts the users expected
    on server ``j`` (this one included). ``n_j`` starts from the previous slot's loads and is
    refined by ``rounds`` rounds of best response of all users at once.

    Args:
        env: The environment it acts in (it reads capacities, channels and requests).
        seed: Unused (the rule is deterministic); kept for the common signature.
        rounds: Best-response rounds.
    """

    name = "greedy-cost"

    def __init__(self, env: BatchedHcEnv, seed: int | None = 0, rounds: int = 3) -> None:
        super().__init__(env, seed)
        self.rounds = int(rounds)
        self.tables = SplitEstimator(env)

    def users(
        self, obs: Mapping[str, np.ndarray], env: BatchedHcEnv | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if env is None:
            raise InputError(
                f"{self.name}: act needs the BatchedHcEnv itself (it reads the true channels)"
            )
        bsz, n_k, n_j = env.num_envs, env.n_users, env.n_servers
        smask = np.asarray(obs["user_server_mask"], dtype=bool)
        zmask = np.asarray(obs["user_split_mask"], dtype=bool)
        load = np.maximum(np.asarray(env.load_prev, dtype=np.float64), 0.0)
        if not load.any():
            load = np.full((bsz, n_j), n_k / n_j)
        choice: tuple[np.ndarray, np.ndarray] | None = None
        for _ in range(max(1, self.rounds)):
            share = 1.0 / np.maximum(load, 1.0)  # (B, J)
            cost = self.estimated_cost(env, share)  # (B, K, J, Z)
            cost = np.where(smask[:, :, :, None] & zmask[:, :, None, :], cost, np.inf)
            flat = cost.reshape(bsz, n_k, -1).argmin(-1)
            server, split = np.divmod(flat, env.n_splits)
            choice = (server, split)
            counts = np.zeros((bsz, n_j))
            np.add.at(counts, (np.repeat(np.arange(bsz), n_k), server.reshape(-1)), 1.0)
            load = counts
        assert choice is not None
        return choice

    def estimated_cost(self, env: BatchedHcEnv, share: np.ndarray) -> np.ndarray:
        """(B, K, J, Z) minus the reward of eq. (25) of every (server, split) at the given shares.

        Args:
            env: The environment in its user phase.
            share: (B, J) the fraction of each server's compute and bandwidth one user gets.
        """
        cfg = env.config
        est = self.tables.estimate(env, share)
        delay, success = costs.request_delay_s(
            est["succ_delay_s"], est["cache_hit"], cfg.fail_delay_s, cfg.timeout_fails
        )
        energy = np.where(success, est["energy_j"], 0.0)
        privacy = np.where(success, est["privacy_cost"], 0.0)
        reward = costs.configured_user_reward(cfg, privacy, energy, delay, success)
        return -np.broadcast_to(reward, (env.num_envs, env.n_users, env.n_servers, env.n_splits))


_BASELINE_CLASSES: dict[str, type[_Heuristic]] = {
    "local-only": LocalOnly,
    "edge-only": EdgeOnly,
    "greedy": Greedy,
    "random": RandomPolicy,
    "greedy-cost": GreedyCost,
}


def make_baseline(name: str, env: BatchedHcEnv, seed: int | None = 0) -> _Heuristic:
    """A heuristic baseline by name (:data:`BASELINES`) for the layouts of ``env``.

    Raises:
        InputError: On an unknown name.
    """
    cls = _BASELINE_CLASSES.get(name)
    if cls is None:
        raise InputError(f"baseline {name!r}: expected one of {', '.join(BASELINES)}")
    return cls(env, seed=seed)


# --------------------------------------------------------------------------- evaluation


def evaluate_policy(
    policy: HcPolicy | str,
    config: HcConfig | Mapping[str, Any] | BatchedHcEnv | None = None,
    *,
    episodes: int = 4,
    seed: int = EVAL_SEED,
    catalog: ServiceCatalog | None = None,
    leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Run a policy over held-out episodes (one environment copy each, seeds ``seed + e``).

    Args:
        policy: Anything with ``act(env, deterministic)`` (an agent, a baseline) or a baseline
            name.
        config: The environment: an :class:`HcConfig`, a mapping of its fields, or a
            :class:`BatchedHcEnv` whose config and catalog are reused.
        episodes: Episodes (environment copies run together).
        seed: Seed of the first episode.
        catalog: Service catalog (built from the config when None).
        leakage: Leakage tables, when the catalog is built here.
        deterministic: Passed to ``act``.

    Returns:
        The means over the episodes of :data:`METRICS`, ``delay_violation_s`` (how far the mean
        delay exceeds the limit, 0 if not), ``user_cost_per_user`` (the mean cost over the
        slots of every user of every episode, episode-major: ``episodes x K`` values; equal
        seeds give every method the same users), ``user_cost_std_users`` (their standard
        deviation) and ``episodes``.
    """
    if int(episodes) < 1:
        raise InputError(f"episodes must be >= 1, got {episodes!r}")
    if isinstance(config, BatchedHcEnv):
        catalog = config.catalog if catalog is None else catalog
        config = config.config
    env = BatchedHcEnv(
        int(episodes),
        config,
        catalog=catalog,
        leakage=leakage if catalog is None else None,
        autoreset=False,
    )
    if isinstance(policy, str):
        policy = make_baseline(policy, env, seed=seed)
    env.reset(seed=int(seed))
    user_cost_sum = np.zeros((env.num_envs, env.n_users))
    slots = 0
    stats: dict[str, np.ndarray] | None = None
    while stats is None:
        step = env.step(policy.act(env, deterministic=deterministic))
        if "user_cost" in step.info:
            user_cost_sum += step.info["user_cost"]
            slots += 1
        if step.truncated.all():
            stats = step.info["episode_stats"]
    out: dict[str, Any] = {k: float(np.mean(stats[k])) for k in METRICS}
    limit = env.config.delay_limit_s
    out["delay_violation_s"] = max(0.0, out["delay_s_mean"] - limit)
    per_user = (user_cost_sum / max(slots, 1)).reshape(-1)
    out["user_cost_per_user"] = per_user.tolist()
    out["user_cost_std_users"] = float(per_user.std())
    out["episodes"] = int(episodes)
    return out
