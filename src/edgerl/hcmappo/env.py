"""HC-MAPPO-L environment as a PettingZoo ``ParallelEnv`` (paper 003, sections III and IV-A).

Paper: Wang, Fan, Cheng, Yuan, Min, Liwang, Xia, "Safe Multi-Agent Deep Reinforcement Learning
for Privacy-Aware Edge-Device Collaborative DNN Inference". The dynamics live in
:class:`edgerl.hcmappo.batched.BatchedHcEnv`; :class:`HcEnv` runs one copy of it and speaks
PettingZoo's dict-per-agent protocol. :func:`parallel_env` and :func:`env` are the PettingZoo
factory functions (parallel and AEC). Nothing is registered with Gymnasium.

Modelling choices where the paper leaves room (equation numbers refer to paper 003):

1. **Phases.** The paper's hierarchy acts in order within a slot (Algorithm 1, lines 7-11):
   deployment (every ``Delta T`` slots), then users, then allocation, each seeing the choices
   above it (eq. (16) holds ``X(t)``; eq. (18) the users' split points). One ``step`` is one
   phase; every agent is present in every step, the agents of other kinds are ignored (their
   action may be left out) and their observation's ``acting`` entry is 0.
2. **Rewards** arrive in the step that ends the slot (allocation phase): users eq. (25),
   allocation agents eq. (26), deployment agents eq. (24) at the end of their interval. Summed
   between two acting steps of an agent they are exactly that agent's reward in the paper.
3. **Failures.** A cache miss fails (eq. (5)); so does a request that cannot finish (a user
   given no share of a resource it needs). A served request counts its own delay however long
   (eq. (5)); ``timeout_fails`` also fails those slower than ``tau_fail``. A failed request has
   delay ``tau_fail``, reward ``R^fail``, and no energy or privacy cost (nothing ran).
4. **Allocation.** Shares are the agent's weights normalised over the server's users that use
   the resource (compute: served users with ``z < L``; bandwidth: every served user, since
   ``z = 0`` uploads the input and ``z > 0`` downloads weights), so (C5)-(C6) hold by
   construction. Noise is taken over each user's allocated bandwidth.
5. **Channel.** Users are static within an episode; the 8 dB shadowing is redrawn every slot
   (quasi-static within a slot, section III-C). Downlink and uplink use the same allocated
   band ``B_jk`` with the server's and the user's power.
6. **Device memory.** A split is valid only if the device can hold the weights of layers
   ``1..z`` (Table I's user storage).
7. **Cache start.** Caches start empty; the first deployment pays eq. (23) for all it fetches.
8. **Observations** extend eqs. (14), (16), (18) with what the policies need to act
   (channel quality, device capacities, per-user resource times for the allocation); see
   below.

Observation, action and state layouts (``I`` services, ``M`` base models, ``Z`` = largest
``L`` + 1, ``J`` servers, ``K`` users; defaults I = 45, M = 9, Z = 20, J = 10, K = 50). All
observation entries are float32 and >= 0; slices by name are in :attr:`HcEnv.layouts`.

**deploy_j** (``Dict(observation=Box(4I + 3))``, 183 by default), action ``MultiBinary(I)``:
the deployment vector ``x_j`` (C1); the services' storage must fit ``S_j`` (C7, else
InputError). Acts in slots ``t mod Delta T = 0`` only.

* ``requests_global`` (I): requests per service in the last completed interval / (K Delta T)
  (eq. (14) ``r``); ``requests_local`` (I): of those, the ones sent to server j (``h_j``);
  ``deployed`` (I): services cached now (``x_j^st``, before this decision);
  ``size_fraction`` (I): service size / ``S_j`` (the remaining-capacity view of section
  IV-B1); ``acting``; ``progress`` (t / episode_slots); ``storage`` (S_j / high end of
  ``server_storage_gb``).

**user_k** (``Dict(observation=Box(I + M + 6 + 4J + JI + 2), action_mask=Tuple(Box(J) int8,
Box(Z) int8))``, 552), action ``MultiDiscrete([J, Z])`` = (server ``sigma_k``, split ``z``)
(eq. (20)). ``action_mask[0]``: valid servers (all, unless ``mask_uncached_servers``);
``action_mask[1]``: valid splits of the request (``z <= L_i`` and the device memory holds
layers ``1..z``). The two masks are independent (any valid server with any valid split).

* ``service_onehot`` (I), ``model_onehot`` (M), ``batch`` (D^in / high end of
  ``input_batch``), ``device`` (5: f_k, memory, epsilon_k, P_k in W, each / its range's high
  end, and Pre_k), ``uplink_se`` and ``downlink_se`` (J each: log2(1 + P g / (N0 F B_j)) over
  the server's whole band, / 10), ``cached`` (J: server j holds the requested service),
  ``load`` (J: users that chose server j in the previous slot / K), ``deployment`` (J x I,
  server-major: ``X(t)`` of eq. (16)), ``acting``, ``progress``.

**alloc_j** (``Dict(observation=Box(6 + K (9 + M)))``, 906), action ``Box(0, 1, (2, K))``:
row 0 compute weights, row 1 bandwidth weights per user (eq. (21); normalised as in 4 above;
weights of users not served by j are ignored).

* globals (6): ``acting``, ``progress``, ``compute`` (f_j / high end), ``bandwidth`` (B_j /
  high end), ``associated`` and ``served`` (users / K);
* ``users`` (K rows of 9 + M, row-major; all zero for users not associated with j, eq.
  (18)): ``associated``, ``served`` (and cached), ``needs_compute`` (served, ``z < L``),
  ``edge_time`` (edge compute at the whole ``f_j``), ``upload_time`` and ``download_time``
  (over the whole band), ``local_time`` (each / tau-bar, clipped at 10), ``batch``, ``split``
  (z / L), ``model_onehot`` (M). Reshape with ``obs[6:].reshape(K, 9 + M)``.

**state()** (Box, 2379): ``phase_onehot`` (3), ``progress``, ``deployment`` (J x I),
``requests_global`` (I), ``user_service`` (K: (i + 0.5) / I), ``user_model_onehot`` (K x M),
``user_batch`` (K), ``user_server_onehot`` (K x J, zero before the users act),
``user_split`` (K: z / L), ``user_device`` (K x 5), ``server`` (J x 3: f_j, B_j, S_j
normalised), ``uplink_se`` (J x K).

Infos. Every agent's info holds ``phase`` (the phase that just acted), ``acting``,
``slot`` (the slot index), ``slot_end`` and ``cost`` (the Lagrangian constraint signal: a
user's delay tau_k in s; for allocation and deployment agents the mean delay of the users
associated with their server in the slot, 0 without users; 0 when the slot did not end).
Users add ``delay_s``, ``energy_j``, ``privacy_cost``, ``user_cost`` (minus eq. (25)),
``success``, ``cache_hit``, ``server``, ``split``, ``compute_share``, ``bandwidth_share``,
``repaired``; allocation agents ``n_users``, ``hits``, ``repaired``; deployment agents
``interval_end``, ``hits`` and ``migration_s`` (of the interval, at its end), ``repaired``.
At the truncation every info also holds ``episode`` (:meth:`BatchedHcEnv.episode_stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from edgerl.hcmappo.batched import KINDS, BatchedHcEnv, HcStep
from edgerl.hcmappo.catalog import ServiceCatalog
from edgerl.hcmappo.config import HcConfig
from edgerl.utils.errors import InputError

__all__ = ["ENV_NAME", "HcEnv", "env", "parallel_env"]

ENV_NAME = "hcmappo_v0"

_USER_INFO = (
    "delay_s",
    "energy_j",
    "privacy_cost",
    "user_cost",
    "success",
    "cache_hit",
    "server",
    "split",
    "compute_share",
    "bandwidth_share",
)


def _short(value: Any) -> str:
    """A one-line, shortened rendering of an action for error messages."""
    try:
        text = np.array2string(np.asarray(value), threshold=8, edgeitems=2, separator=", ")
    except (TypeError, ValueError):
        text = repr(value)
    return " ".join(text.split())


class HcEnv(ParallelEnv):
    """Privacy-aware edge-device collaborative inference with three kinds of agents.

    HC-MAPPO-L environment (paper 003). The layouts and modelling choices are listed in
    :mod:`edgerl.hcmappo.env`.

    ## Description
    ``J`` edge servers on a grid and ``K`` users in a square area. Each slot every user requests
    one of ``I`` DNN services (Zipf popularity) for a batch of samples; it picks a server and a
    split point ``z``: layers ``1..z`` run on the device (after downloading their weights from
    the server), the features are uploaded and the server runs the rest. Servers cache services
    within their storage and share compute and bandwidth among their users. The objective is
    eq. (12) (privacy leakage and device energy) under a long-term average delay limit (C8).

    ## Agents and phases
    ``deploy_0..J-1``, ``user_0..K-1``, ``alloc_0..J-1``. :attr:`phase` names the kind that acts
    in the next ``step`` (``"deploy"`` in slots ``t mod Delta T = 0``, then ``"user"``, then
    ``"alloc"``); :attr:`acting_agents` lists them. Actions of other agents are ignored.

    ## Action Space
    ``deploy_j``: ``MultiBinary(I)``. ``user_k``: ``MultiDiscrete([J, Z])`` (server, split) with
    masks in the observation. ``alloc_j``: ``Box(0, 1, (2, K), float32)`` weights. An action
    outside its space or mask, or a deployment over the storage, raises ``InputError`` naming
    the agent, the action and what is valid. With ``invalid_action='repair'`` it is repaired
    instead (deployment: the chosen services kept in index order while they fit; server: the
    nearest valid index; split: the largest valid split not above it; weights: clipped to
    [0, 1], NaN to 0) and ``info["repaired"]`` is set.

    ## Observation Space
    ``Dict`` with ``"observation"`` (``Box(0, inf)``, float32) and, for users,
    ``"action_mask"`` (a tuple of two int8 masks, the form ``MultiDiscrete.sample(mask=...)``
    takes). Layouts: module docstring.

    ## Rewards
    At the step ending a slot: ``user_k`` eq. (25); ``alloc_j`` eq. (26) (minus the mean delay
    of its users, 0 without users); ``deploy_j`` eq. (24) at the end of its interval. 0 in
    other steps. The constraint signal is ``info["cost"]``.

    ## Starting State
    Positions, capacities, powers, rates and preferences drawn uniformly from the config's
    ranges, a popularity permutation of the services, empty caches, the first slot's requests
    and channels; all from the generator of ``reset(seed=...)``.

    ## Episode End
    Never terminated; truncated after ``episode_slots`` slots (at that slot's allocation
    step), when the agent list empties.

    ## Arguments
    ``config``: :class:`HcConfig` or a mapping of its fields; further keyword arguments
    override fields. ``catalog``: a prebuilt :class:`ServiceCatalog`. ``leakage``: leakage
    tables per base model instead of :func:`edgerl.edge.privacy.load_leakage_table`.
    ``render_mode``: must be None.

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"name": ENV_NAME, "render_modes": [], "is_parallelizable": True}

    def __init__(
        self,
        config: HcConfig | Mapping[str, Any] | None = None,
        *,
        catalog: ServiceCatalog | None = None,
        leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        if render_mode is not None:
            raise InputError(f"HcEnv has no render modes, got render_mode={render_mode!r}")
        self.render_mode = render_mode
        self.core = BatchedHcEnv(
            1, config, catalog=catalog, leakage=leakage, autoreset=False, **overrides
        )
        self.config: HcConfig = self.core.config
        c = self.core
        self._names = {
            "deploy": [f"deploy_{j}" for j in range(c.n_servers)],
            "user": [f"user_{k}" for k in range(c.n_users)],
            "alloc": [f"alloc_{j}" for j in range(c.n_servers)],
        }
        self.possible_agents: list[str] = [a for kind in KINDS for a in self._names[kind]]
        self.agents: list[str] = []
        self._kind_of = {a: kind for kind in KINDS for a in self._names[kind]}
        self._index_of = {a: i for kind in KINDS for i, a in enumerate(self._names[kind])}
        inf = np.float32(np.inf)
        obs_box = {kind: spaces.Box(0.0, inf, (c.obs_dims[kind],), np.float32) for kind in KINDS}
        user_obs = spaces.Dict(
            {
                "observation": obs_box["user"],
                "action_mask": spaces.Tuple(
                    (
                        spaces.Box(0, 1, (c.n_servers,), np.int8),
                        spaces.Box(0, 1, (c.n_splits,), np.int8),
                    )
                ),
            }
        )
        self.observation_spaces: dict[str, spaces.Space[Any]] = {}
        self.action_spaces: dict[str, spaces.Space[Any]] = {}
        for a in self.possible_agents:
            kind = self._kind_of[a]
            if kind == "deploy":
                self.observation_spaces[a] = spaces.Dict({"observation": obs_box["deploy"]})
                self.action_spaces[a] = spaces.MultiBinary(c.n_services)
            elif kind == "user":
                self.observation_spaces[a] = user_obs
                self.action_spaces[a] = spaces.MultiDiscrete([c.n_servers, c.n_splits])
            else:
                self.observation_spaces[a] = spaces.Dict({"observation": obs_box["alloc"]})
                self.action_spaces[a] = spaces.Box(0.0, 1.0, (2, c.n_users), np.float32)
        self.state_space = spaces.Box(0.0, inf, (c.obs_dims["state"],), np.float32)

    # ----------------------------------------------------------------- spaces and views

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        """Observation space of ``agent`` (the same object on every call)."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        """Action space of ``agent`` (the same object on every call)."""
        return self.action_spaces[agent]

    @property
    def layouts(self) -> dict[str, dict[str, slice]]:
        """Named slices of the observation vectors (``deploy``, ``user``, ``alloc``,
        ``alloc_user`` for one row of the allocation ``users`` block) and of ``state``."""
        return self.core.layouts

    @property
    def phase(self) -> str:
        """Kind of agent that acts in the next step (``deploy``, ``user``, ``alloc``), or
        ``done`` after the truncation."""
        return self.core.phase

    @property
    def acting_agents(self) -> list[str]:
        """Agents whose actions the next step uses."""
        return list(self._names.get(self.core.phase, []))

    def agents_of(self, kind: str) -> list[str]:
        """Agent names of one kind, in index order."""
        if kind not in self._names:
            raise InputError(f"unknown agent kind {kind!r}; valid: {', '.join(KINDS)}")
        return list(self._names[kind])

    def state(self) -> np.ndarray:
        """Global state vector (float32, layout ``layouts["state"]``)."""
        return self.core.state()[0]

    # ----------------------------------------------------------------- protocol

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Start an episode (see Starting State).

        Args:
            seed: Seed of the episode's generator; ``None`` continues the current one (a fresh
                random one on the first reset).
            options: Accepted for the PettingZoo signature; no option is used.
        """
        self.core.reset(seed=None if seed is None else [int(seed)])
        self.agents = list(self.possible_agents)
        obs = self._observations(self.core.observe("all"))
        infos = {a: self._base_info(a, acted=None) for a in self.agents}
        return obs, infos

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[
        dict[str, Any],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Apply the actions of the acting agents (see Agents and phases)."""
        if not self.agents:
            raise InputError("the episode has ended (or never started); call reset()")
        if not isinstance(actions, Mapping):
            raise InputError(
                f"actions must be a mapping agent -> action, got {type(actions).__name__}"
            )
        unknown = [a for a in actions if a not in self._kind_of]
        if unknown:
            raise InputError(
                f"actions for unknown agents {unknown[:5]}; agents are deploy_0..{self.core.n_servers - 1}, "
                f"user_0..{self.core.n_users - 1}, alloc_0..{self.core.n_servers - 1}"
            )
        phase = self.core.phase
        acting = self._names[phase]
        missing = [a for a in acting if a not in actions or actions[a] is None]
        if missing:
            raise InputError(
                f"the {phase} agents act in this step; no action for {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}"
            )
        if phase == "deploy":
            res = self.core.step_deploy(self._stack(acting, actions, (self.core.n_services,))[None])
        elif phase == "user":
            a = self._stack(acting, actions, (2,))
            res = self.core.step_user(a[None, :, 0], a[None, :, 1])
        else:
            a = self._stack(acting, actions, (2, self.core.n_users))
            res = self.core.step_alloc(a[None, :, 0], a[None, :, 1])
        return self._convert(phase, res)

    def _stack(
        self, agents: list[str], actions: Mapping[str, Any], shape: tuple[int, ...]
    ) -> np.ndarray:
        rows = []
        for a in agents:
            try:
                arr = np.asarray(actions[a], dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(
                    f"{a}: action {_short(actions[a])} is not numeric; expected an array of "
                    f"shape {shape} (a member of {self.action_spaces[a]})"
                ) from None
            if arr.shape != shape:
                raise InputError(
                    f"{a}: action {_short(arr)} has shape {arr.shape}; expected {shape} "
                    f"(a member of {self.action_spaces[a]})"
                )
            rows.append(arr)
        return np.stack(rows)

    # ----------------------------------------------------------------- conversion

    def _observations(self, all_obs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        dep = all_obs["deploy_obs"][0]
        for j, a in enumerate(self._names["deploy"]):
            out[a] = {"observation": dep[j]}
        usr = all_obs["user_obs"][0]
        smask = all_obs["user_server_mask"][0].astype(np.int8)
        zmask = all_obs["user_split_mask"][0].astype(np.int8)
        for k, a in enumerate(self._names["user"]):
            out[a] = {"observation": usr[k], "action_mask": (smask[k], zmask[k])}
        alc = all_obs["alloc_obs"][0]
        for j, a in enumerate(self._names["alloc"]):
            out[a] = {"observation": alc[j]}
        return out

    def _base_info(self, agent: str, acted: str | None) -> dict[str, Any]:
        kind = self._kind_of[agent]
        info: dict[str, Any] = {
            "phase": acted,
            "acting": acted == kind,
            "slot": int(self.core.t),
            "slot_end": False,
            "cost": 0.0,
            "repaired": False,
        }
        if kind == "user":
            info.update(dict.fromkeys(_USER_INFO, 0.0))
            info.update(success=False, cache_hit=False, server=-1, split=-1)
        elif kind == "alloc":
            info.update(n_users=0, hits=0)
        else:
            info.update(interval_end=False, hits=0, migration_s=0.0)
        return info

    def _convert(
        self, phase: str, res: HcStep
    ) -> tuple[
        dict[str, Any],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        core = self.core
        info = res.info
        slot_end = phase == "alloc"
        slot = core.t - 1 if slot_end else core.t
        rewards: dict[str, float] = {}
        infos: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            rew = res.rewards[kind][0]
            cost = res.costs[kind][0]
            for i, a in enumerate(self._names[kind]):
                rewards[a] = float(rew[i])
                d = self._base_info(a, phase)
                d["slot"] = int(slot)
                d["slot_end"] = slot_end
                d["cost"] = float(cost[i])
                infos[a] = d
        if phase == "deploy":
            rep = info["repaired_deploy"][0]
            for j, a in enumerate(self._names["deploy"]):
                infos[a]["repaired"] = bool(rep[j])
        if slot_end:
            users = {key: info[key][0] for key in _USER_INFO}
            rep_u = info["repaired_user"][0]
            for k, a in enumerate(self._names["user"]):
                d = infos[a]
                for key in ("delay_s", "energy_j", "privacy_cost", "user_cost"):
                    d[key] = float(users[key][k])
                for key in ("compute_share", "bandwidth_share"):
                    d[key] = float(users[key][k])
                d["success"] = bool(users["success"][k])
                d["cache_hit"] = bool(users["cache_hit"][k])
                d["server"] = int(users["server"][k])
                d["split"] = int(users["split"][k])
                d["repaired"] = bool(rep_u[k])
            rep_a = info["repaired_alloc"][0]
            for j, a in enumerate(self._names["alloc"]):
                infos[a]["n_users"] = int(info["n_users"][0, j])
                infos[a]["hits"] = int(info["hits"][0, j])
                infos[a]["repaired"] = bool(rep_a[j])
            if info["interval_end"]:
                rep_d = info["repaired_deploy"][0]
                for j, a in enumerate(self._names["deploy"]):
                    d = infos[a]
                    d["interval_end"] = True
                    d["hits"] = int(info["interval_hits"][0, j])
                    d["migration_s"] = float(info["interval_migration_s"][0, j])
                    d["repaired"] = bool(rep_d[j])
        truncated = bool(res.truncated[0])
        if truncated:
            stats = {k: float(v[0]) for k, v in info["episode_stats"].items()}
            for d in infos.values():
                d["episode"] = stats
        all_obs = info["final_obs"] if truncated else core.observe("all")
        obs = self._observations(all_obs)
        terminations = dict.fromkeys(self.agents, False)
        truncations = dict.fromkeys(self.agents, truncated)
        if truncated:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def close(self) -> None:
        """Nothing to release."""


def parallel_env(
    config: HcConfig | Mapping[str, Any] | None = None,
    *,
    catalog: ServiceCatalog | None = None,
    leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    render_mode: str | None = None,
    **overrides: Any,
) -> HcEnv:
    """The parallel environment (PettingZoo convention): ``HcEnv(...)``."""
    return HcEnv(config, catalog=catalog, leakage=leakage, render_mode=render_mode, **overrides)


def env(
    config: HcConfig | Mapping[str, Any] | None = None,
    *,
    catalog: ServiceCatalog | None = None,
    leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    render_mode: str | None = None,
    **overrides: Any,
) -> Any:
    """The AEC environment (PettingZoo convention): :func:`parallel_env` through
    ``pettingzoo.utils.conversions.parallel_to_aec``."""
    return parallel_to_aec(
        parallel_env(config, catalog=catalog, leakage=leakage, render_mode=render_mode, **overrides)
    )
