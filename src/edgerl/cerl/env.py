"""CERL distributed collaborative inference (DCI) environment (paper 002, sections 2, 3 and 5.1).

Paper: Tan, Guo, Zhou, Kuang, "CERL: Evolutionary Reinforcement Learning for Partitioned
Collaborative Inference on On-Device Models", JMLIS 1(1), 2025.

One MEC server (node 0) and ``N`` edge devices (nodes ``1..N``) run the 8-layer device model of
section 5.1 for inference tasks that arrive at the devices as Poisson processes. In every time
slot each task that waits for a decision gets a node ``d``, a block of its next layers
``u = [i:j]``, a compute share ``r`` of that node and an OFDMA subcarrier ``w`` (eq. (12)). The
cost is eq. (6), the reward eq. (13), and constraints (7)-(10) are enforced by action masks.

The dynamics live in :class:`CerlSimulator`, which steps ``B`` copies at once with NumPy;
:class:`CerlEnv` is the Gymnasium environment over one copy and :class:`BatchedCerlEnv` the
vector environment over ``B`` copies, so both run the very same code. :class:`ActionDecoder`
turns per-branch scores into valid actions (and computes the masks) from an observation alone.

Modelling choices where the paper leaves room (equation numbers refer to paper 002):

1. **What a step does.** The node chosen for task ``q`` in slot ``t`` is ``d_q^t``, the node
   that computes the block ``u[d_q^t] = [i:j]`` (section 2.1.2). When it differs from the node
   that holds the task's data (the node of the previous block, or the source device before the
   first one), that data is first sent over subcarrier ``w``: ``O^{i-1}`` bits, the output of
   layer ``i-1``, or the input image (3x64x64 elements) when ``i = 1``. Eq. (3) charges the
   transfer of a block's output to the slot of that block; we charge it to the slot of the
   receiving block, which leaves every total of eq. (6) unchanged and lets a single action say
   where the data goes (EC sends the raw input to the MEC server).
2. **Durations.** A step lasts ``D = T^Trans + T^Comp`` (eqs. (1)-(3)); the task is busy for
   ``ceil(D / slot_s)`` slots (at least one) and gets its next decision at the first slot start
   after the step ends. The result of the last layer stays where it was computed (9 values,
   576 bits; no return transfer is modelled, as in constraint (9)).
3. **Resource holding.** The compute share is held on node ``d`` for every slot of the step
   (also while the input is still being sent: conservative, transfers take milliseconds); the
   subcarrier is held for the ``ceil(T^Trans / slot_s)`` slots of the transfer. Every hold
   starts in the slot in which it is granted, so checking what is free in that slot is exact
   for constraints (7) and (8).
4. **Shares.** ``r = level / 100 * R_d^max`` in cycles/s with ``level`` one of
   ``share_levels_pct`` (section 3.2: 1..100 %); constraint (8) is ``sum of levels <= 100 %``
   per node and slot.
5. **Waiting.** An empty block is allowed only as a wait: ``d`` = the current node and
   ``j = i - 1``. It costs nothing and holds nothing. Moving data without computing a layer
   (a relay) is not an action.
6. **Deadline (10).** Wall-clock from the arrival, waiting included (eq. (10) sums only compute
   and transfer delays; a real tolerance also counts queueing). A final block (``j = L``) must
   end by ``arrival + deadline_s``; a non-final block must end so that the task is released at
   a slot start strictly before the deadline (otherwise it could only fail). These are masked.
7. **Failures.** A task that is idle at a slot start at or after its deadline with layers left
   fails; a task that arrives when all ``max_tasks`` task slots are taken is dropped and counts
   as failed. Each costs ``failure_penalty`` (``P(t)`` of eq. (13)).
8. **Cost accounting.** Eq. (6) is charged in the slot a step is dispatched; its delay term is
   ``T^Comp + T^Trans`` of the steps (waiting is not charged, but consumes the deadline).
9. **Radio.** ``R = (B/S) log2(1 + g p / delta^2)`` (eq. (2)) with ``g = d^-4`` between the two
   nodes' positions and ``delta^2 = noise_dbm`` per subcarrier, as written in eq. (2); every
   node sends with ``p = tx_power_w``; all subcarriers have the same gain.
10. **Placement and arrivals.** Devices uniform in a square of side ``area_size_m``, the MEC
    server at its centre, static within an episode; device capacities uniform in
    ``[device_capacity_min_ghz, device_capacity_max_ghz]`` per episode; arrivals counted per
    slot as ``Poisson(arrival_rate_per_s * slot_s)`` per device, timed at the slot start.
    Slot length, subcarrier count, area, arrival rate, penalty and task-slot count are not
    given in the paper; the defaults are ours.
11. **Graph.** ``A`` is the square adjacency over all graph nodes (computing nodes first, then
    task-layer nodes); the paper's ``|V_alpha| x |V_beta|`` block is ``A[:N+1, N+1:]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from pydantic import Field, field_validator, model_validator

from edgerl.edge.channel import power_law_gain, uplink_rate_bps
from edgerl.edge.units import dbm_to_w
from edgerl.edge.zoo import CERL_PAPER_OUTPUT_ELEMENTS, CERL_PAPER_WORKLOAD_CALCS, input_shape
from edgerl.utils.config import Config, config_from_dict
from edgerl.utils.errors import InputError

__all__ = [
    "BRANCHES",
    "ENV_ID",
    "N_FEATURES",
    "N_LAYERS",
    "ActionDecoder",
    "BatchedCerlEnv",
    "CerlConfig",
    "CerlEnv",
    "CerlSimulator",
    "InvalidActionError",
    "MaskTables",
    "TaskView",
    "layer_data_bits",
    "layer_workload_cycles",
    "make_config",
    "register_envs",
]

ENV_ID = "edgerl/Cerl-v0"

BRANCHES: tuple[str, ...] = ("node", "block", "share", "subcarrier")
"""The four sub-actions of one task, in decoding order (eq. (12): D, U, R, W)."""

N_LAYERS: int = len(CERL_PAPER_WORKLOAD_CALCS)
"""L = 8 layers of the device model (section 5.1)."""

N_FEATURES: int = 17
"""Columns of the feature matrix X (see :class:`CerlEnv`, Observation Space)."""

_EPS_S = 1e-9  # seconds: tolerance of deadline comparisons
_CEIL_TOL = 1e-7  # slots: a step ending a hair after a slot start still ends in that slot


# --------------------------------------------------------------------------- configuration


class CerlConfig(Config):
    """Settings of the CERL environment; defaults are section 5.1 where the paper gives them."""

    n_devices: int = Field(10, ge=1)
    """N, number of edge devices (the paper uses 5..50)."""

    device_capacity_min_ghz: float = Field(0.1, gt=0.0)
    """Lower end of the uniform device capacity R_n^max, GHz (section 5.1: 0.1)."""

    device_capacity_max_ghz: float = Field(1.0, gt=0.0)
    """Upper end of the uniform device capacity R_n^max, GHz (section 5.1: 1.0)."""

    mec_capacity_ghz: float = Field(10.0, gt=0.0)
    """Capacity R_0^max of the MEC server, GHz (section 5.1: 10)."""

    bandwidth_hz: float = Field(20e6, gt=0.0)
    """Total bandwidth B in Hz (section 5.1: 20 MHz), split into S subcarriers (eq. (2))."""

    n_subcarriers: int = Field(10, ge=1)
    """S, number of OFDMA subcarriers (not given in the paper)."""

    tx_power_w: float = Field(1.0, gt=0.0)
    """Transmit power p of every node, W (section 5.1: 1 W)."""

    noise_dbm: float = -113.0
    """Gaussian noise power delta^2 per subcarrier, dBm (section 5.1: -113 dBm)."""

    k0: float = Field(1e-26, gt=0.0)
    """Computational efficiency constant k0 of eq. (4), J s^2 / cycle^3 (section 5.1: 1e-26)."""

    path_loss_exponent: float = Field(4.0, gt=0.0)
    """Exponent of the channel gain g = d^-exponent (section 5.1: 4)."""

    min_distance_m: float = Field(1.0, gt=0.0)
    """Distances below this are clamped up to it in the channel gain, m."""

    area_size_m: float = Field(500.0, gt=0.0)
    """Side of the square area the devices are placed in, m (not given in the paper)."""

    mec_position_m: tuple[float, float] | None = None
    """Position (x, y) of the MEC server in m; None puts it at the centre of the area."""

    link_range_m: float | None = Field(None, gt=0.0)
    """Nodes farther apart than this have no link (E_alpha); None: every pair is linked."""

    cycles_per_calc: float = Field(10.0, gt=0.0)
    """xi, CPU cycles per floating-point calculation (section 5.1: 10)."""

    bits_per_element: int = Field(64, ge=1)
    """Bits per tensor element in the output sizes O (section 5.1: 64)."""

    deadline_s: float = Field(3.0, gt=0.0)
    """Maximum delay tolerance T of constraint (10), s (section 5.1: 3 s)."""

    slot_s: float = Field(0.25, gt=0.0)
    """Length of one time slot, s (not given in the paper)."""

    episode_slots: int = Field(40, ge=1)
    """Slots with arrivals per episode; the episode is truncated after them."""

    drain_at_end: bool = False
    """After episode_slots, stop arrivals and run until every task is resolved (terminated)."""

    arrival_rate_per_s: float = Field(0.1, ge=0.0)
    """Poisson arrival rate of tasks per device, tasks/s (not given in the paper)."""

    max_tasks: int = Field(20, ge=1)
    """Task slots M of the action and observation; arrivals beyond them are dropped."""

    initial_tasks_min: int = Field(0, ge=0)
    """Fewest tasks present at slot 0 besides the Poisson arrivals (see initial_tasks_max)."""

    initial_tasks_max: int = Field(0, ge=0)
    """Most tasks present at slot 0 besides the Poisson arrivals: each reset draws a count
    uniform in [initial_tasks_min, initial_tasks_max] and a source device uniform in 1..N for
    each, after the positions and before the first slot's arrivals (0: no draw, so the random
    stream is that of a config without the field). With arrival_rate_per_s = 0 every task of
    the episode is known from its first slot."""

    device_capacities_ghz: tuple[float, ...] | None = None
    """Fixed capacities R_n^max of devices 1..N in GHz (N values), or None to draw them per
    episode. The draw still happens, so the rest of the random stream is unchanged."""

    device_positions_m: tuple[tuple[float, float], ...] | None = None
    """Fixed (x, y) positions of devices 1..N in m (N pairs), or None to draw them per episode
    (the draw still happens). With device_capacities_ghz this fixes the topology, as in the
    paper's training (one topology, random arrivals)."""

    share_levels_pct: tuple[int, ...] = tuple(range(1, 101))
    """Compute share levels in % of a node's capacity, ascending (section 3.2: 1..100)."""

    weight_energy: float = Field(0.8, ge=0.0)
    """omega_e of eq. (6) (section 5.1: 0.8)."""

    weight_delay: float = Field(0.2, ge=0.0)
    """omega_d of eq. (6) (section 5.1: 0.2)."""

    failure_penalty: float = Field(10.0, ge=0.0)
    """P(t) of eq. (13) per failed or dropped task (a constant, 'relatively large')."""

    invalid_action: Literal["raise", "wait"] = "raise"
    """What an action outside the masks does: raise InvalidActionError, or make the task wait."""

    invalid_action_penalty: float = Field(1.0, ge=0.0)
    """Reward penalty per task whose action was replaced by a wait (invalid_action='wait')."""

    @field_validator("share_levels_pct")
    @classmethod
    def _check_levels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) == 0:
            raise ValueError("needs at least one share level")
        if any(x < 1 or x > 100 for x in v):
            raise ValueError(f"share levels must lie in 1..100 %, got {list(v)}")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"share levels must be strictly ascending, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _check_ranges(self) -> CerlConfig:
        if self.device_capacity_min_ghz > self.device_capacity_max_ghz:
            raise ValueError(
                f"device_capacity_min_ghz ({self.device_capacity_min_ghz}) must be <= "
                f"device_capacity_max_ghz ({self.device_capacity_max_ghz})"
            )
        if self.initial_tasks_min > self.initial_tasks_max:
            raise ValueError(
                f"initial_tasks_min ({self.initial_tasks_min}) must be <= initial_tasks_max "
                f"({self.initial_tasks_max})"
            )
        caps = self.device_capacities_ghz
        if caps is not None and (
            len(caps) != self.n_devices or not all(math.isfinite(c) and c > 0 for c in caps)
        ):
            raise ValueError(
                f"device_capacities_ghz must hold n_devices = {self.n_devices} positive GHz "
                f"values, got {list(caps)}"
            )
        pos = self.device_positions_m
        if pos is not None and (
            len(pos) != self.n_devices or not all(math.isfinite(v) for p in pos for v in p)
        ):
            raise ValueError(
                f"device_positions_m must hold n_devices = {self.n_devices} finite (x, y) "
                f"pairs in m, got {len(pos)}"
            )
        return self


def make_config(
    config: CerlConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> CerlConfig:
    """Build a validated :class:`CerlConfig` from a config, a mapping and/or field overrides.

    Raises:
        InputError: Naming the field and value when something is invalid.
    """
    if isinstance(config, CerlConfig):
        data = config.model_dump()
    elif config is None:
        data = {}
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise InputError(f"config must be a CerlConfig or a mapping, got {type(config).__name__}")
    data.update(overrides)
    return config_from_dict(CerlConfig, data, "CerlConfig")


def layer_workload_cycles(cycles_per_calc: float = 10.0) -> np.ndarray:
    """Workload C^l of each layer in CPU cycles (section 5.1: calculations x xi).

    Returns:
        (L,) float64 array.
    """
    return np.asarray(CERL_PAPER_WORKLOAD_CALCS, dtype=np.float64) * float(cycles_per_calc)


def layer_data_bits(bits_per_element: int = 64) -> np.ndarray:
    """Data sizes in bits: entry 0 is the model input, entry ``l`` the output O^l of layer ``l``.

    Returns:
        (L + 1,) float64 array (section 5.1: elements x 64 bits).
    """
    n_in = int(np.prod(input_shape("cerl8")))
    elems = np.asarray((n_in, *CERL_PAPER_OUTPUT_ELEMENTS), dtype=np.float64)
    return elems * float(bits_per_element)


# --------------------------------------------------------------------------- errors


class InvalidActionError(InputError):
    """An action that violates a constraint (raised when masks are bypassed).

    Attributes:
        env_index: Copy of a batched simulator (0 for a single environment).
        task_slot: Task slot whose sub-action is invalid.
        branch: Name of the offending branch (one of :data:`BRANCHES`).
        constraint: Short name of what is violated, e.g. ``"(7) subcarrier exclusive"``.
    """

    def __init__(
        self, message: str, *, env_index: int, task_slot: int, branch: str, constraint: str
    ) -> None:
        super().__init__(message)
        self.env_index = env_index
        self.task_slot = task_slot
        self.branch = branch
        self.constraint = constraint


# --------------------------------------------------------------------------- masks and decoding


@dataclass(frozen=True)
class MaskTables:
    """Integer tables from which every action mask follows exactly (batched, leading dim B).

    Attributes:
        task_node: (B, M) node holding each task's data (0 for an empty slot).
        task_progress: (B, M) layers done (or committed to the running step).
        task_deciding: (B, M) bool, the task waits for a decision in this slot.
        share_min: (B, M, N+1, L+1) index of the smallest share level with which block
            ``[progress+1 : j]`` on node ``d`` meets the deadline (10) including the transfer;
            ``K`` (= number of levels) when none does, when ``j <= progress``, when the nodes are
            not linked, or when the task does not decide.
        free_share_pct: (B, N+1) compute share still free on each node in this slot (8).
        free_subcarriers: (B, S) bool, subcarriers free in this slot (7).
    """

    task_node: np.ndarray
    task_progress: np.ndarray
    task_deciding: np.ndarray
    share_min: np.ndarray
    free_share_pct: np.ndarray
    free_subcarriers: np.ndarray

    @classmethod
    def from_obs(cls, obs: Mapping[str, np.ndarray]) -> tuple[MaskTables, bool]:
        """Tables of a single or batched observation; the flag says whether it was batched."""
        node = np.asarray(obs["task_node"])
        batched = node.ndim == 2
        add = (lambda a: np.asarray(a)) if batched else (lambda a: np.asarray(a)[None])
        return (
            cls(
                task_node=add(obs["task_node"]).astype(np.int64),
                task_progress=add(obs["task_progress"]).astype(np.int64),
                task_deciding=add(obs["task_deciding"]).astype(bool),
                share_min=add(obs["share_min"]).astype(np.int64),
                free_share_pct=add(obs["free_share_pct"]).astype(np.int64),
                free_subcarriers=add(obs["free_subcarriers"]).astype(bool),
            ),
            batched,
        )


class TaskView:
    """Masks of one task slot given what the earlier task slots took (vectorised over B).

    Passed to choosers of :meth:`ActionDecoder.decode_tables`. Attributes: ``deciding``,
    ``node`` (data location), ``progress`` (layers done), ``share_min`` (B, N+1, L+1),
    ``count`` (number of share levels that fit each node's free share, (B, N+1)) and
    ``allowed`` ((B, N+1, L+1) node / block-end pairs with at least one valid completion).
    """

    def __init__(
        self,
        dec: ActionDecoder,
        tables: MaskTables,
        m: int,
        free_pct: np.ndarray,
        free_sc: np.ndarray,
    ) -> None:
        self.m = m
        self.n_nodes, self.n_blocks, self.n_levels, self.n_sc = dec.nvec
        self._levels = dec.levels_pct
        self._free_sc = free_sc
        #: (B, S) bool, subcarriers still free for this task slot.
        self.free_subcarriers = free_sc
        self.deciding = tables.task_deciding[:, m]
        self.node = tables.task_node[:, m]
        self.progress = tables.task_progress[:, m]
        self.share_min = tables.share_min[:, m]  # (B, N1, L+1)
        self.batch = np.arange(self.deciding.shape[0])
        # Levels that fit into each node's free share (8): levels are ascending, so a count.
        self.count = (self._levels[None, None, :] <= free_pct[:, :, None]).sum(-1)
        self.any_sc = free_sc.any(-1)
        self.is_current = np.arange(self.n_nodes)[None, :] == self.node[:, None]
        feasible = (self.share_min < self.count[:, :, None]) & (
            self.is_current | self.any_sc[:, None]
        )[:, :, None]
        wait = self.is_current[:, :, None] & (
            np.arange(self.n_blocks)[None, None, :] == self.progress[:, None, None]
        )
        #: (B, N1, L+1): (node, block end) pairs that have at least one valid completion.
        self.allowed = (feasible | wait) & self.deciding[:, None, None]
        #: (B,) node chosen for this task slot, set once the node branch is decided.
        self.chosen_node: np.ndarray | None = None

    def _only_zero(self, n: int) -> np.ndarray:
        z = np.zeros((self.deciding.shape[0], n), dtype=bool)
        z[:, 0] = True
        return z

    def node_mask(self) -> np.ndarray:
        mask = self.allowed.any(-1)
        mask[~self.deciding] = self._only_zero(self.n_nodes)[~self.deciding]
        return mask

    def block_mask(self, d: np.ndarray) -> np.ndarray:
        mask = self.allowed[self.batch, d].copy()
        mask[~self.deciding] = self._only_zero(self.n_blocks)[~self.deciding]
        return mask

    def is_wait(self, d: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (d == self.node) & (j == self.progress)

    def share_mask(self, d: np.ndarray, j: np.ndarray) -> np.ndarray:
        lo = self.share_min[self.batch, d, j]
        hi = self.count[self.batch, d]
        ar = np.arange(self.n_levels)[None, :]
        mask = (ar >= lo[:, None]) & (ar < hi[:, None])
        unused = ~self.deciding | self.is_wait(d, j)
        mask[unused] = self._only_zero(self.n_levels)[unused]
        return mask

    def subcarrier_mask(self, d: np.ndarray) -> np.ndarray:
        transmit = self.deciding & (d != self.node)
        return np.where(transmit[:, None], self._free_sc, self._only_zero(self.n_sc))

    def commit(self, row: np.ndarray, free_pct: np.ndarray, free_sc: np.ndarray) -> None:
        """Take the resources of the chosen rows (B, 4) from the free tables, in place."""
        d, j, s, w = row[:, 0], row[:, 1], row[:, 2], row[:, 3]
        go = self.deciding & ~self.is_wait(d, j)
        b = self.batch[go]
        free_pct[b, d[go]] -= self._levels[s[go]]
        tx = go & (d != self.node)
        free_sc[self.batch[tx], w[tx]] = False


Chooser = Callable[[int, int, np.ndarray, TaskView], np.ndarray]


class _Stop(Exception):
    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask


class ActionDecoder:
    """Masks and masked decoding of CERL actions, computed from an observation alone.

    Sub-actions are decided task slot by task slot and, within a task, in the order of
    :data:`BRANCHES` (node, block end, share, subcarrier). The mask of each sub-action is
    conditioned on everything decided before it: the share and subcarrier taken by earlier task
    slots of the same slot (constraints (7), (8)) and the node / block already chosen for the
    same task (deadline (10), empty-block rule). Every value a mask allows has at least one
    valid completion, so masked decoding never gets stuck; "wait" is always available to a
    deciding task. All tables are integers, so the masks are exactly those the environment
    checks.

    Args:
        config: The environment config (for the share levels and sizes).
    """

    def __init__(self, config: CerlConfig) -> None:
        self.config = config
        self.levels_pct = np.asarray(config.share_levels_pct, dtype=np.int64)
        self.nvec = (
            config.n_devices + 1,
            N_LAYERS + 1,
            len(config.share_levels_pct),
            config.n_subcarriers,
        )
        self.max_tasks = config.max_tasks

    # ----------------------------------------------------------------- core loop

    def decode_tables(
        self,
        tables: MaskTables,
        choose: Chooser,
        on_row: Callable[[int, np.ndarray, TaskView], np.ndarray] | None = None,
        skip_idle: bool = True,
    ) -> np.ndarray:
        """Decode one action per batch row, sub-action by sub-action.

        Args:
            tables: Mask tables (batched).
            choose: ``choose(m, branch, mask (B, n), view) -> values (B,)``.
            on_row: Optional hook ``(m, row (B, 4), view) -> row`` run before a task's choice
                is committed (used for validation).
            skip_idle: Skip task slots where no batch row decides (their rows are zeros).

        Returns:
            (B, M, 4) int64 actions.
        """
        bsz = tables.task_deciding.shape[0]
        free_pct = tables.free_share_pct.astype(np.int64).copy()
        free_sc = tables.free_subcarriers.astype(bool).copy()
        out = np.zeros((bsz, self.max_tasks, 4), dtype=np.int64)
        for m in range(self.max_tasks):
            if skip_idle and on_row is None and not tables.task_deciding[:, m].any():
                continue
            view = TaskView(self, tables, m, free_pct, free_sc)
            d = np.asarray(choose(m, 0, view.node_mask(), view), dtype=np.int64)
            view.chosen_node = d
            j = np.asarray(choose(m, 1, view.block_mask(d), view), dtype=np.int64)
            s = np.asarray(choose(m, 2, view.share_mask(d, j), view), dtype=np.int64)
            w = np.asarray(choose(m, 3, view.subcarrier_mask(d), view), dtype=np.int64)
            row = np.stack([d, j, s, w], axis=-1)
            if on_row is not None:
                row = on_row(m, row, view)
            view.commit(row, free_pct, free_sc)
            out[:, m] = row
        return out

    def _unbatch(self, a: np.ndarray, batched: bool) -> np.ndarray:
        return a if batched else a[0]

    # ----------------------------------------------------------------- public API

    def _scores(
        self,
        scores: Sequence[np.ndarray],
        coupling: tuple[np.ndarray, np.ndarray] | None,
        batched: bool,
    ) -> tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
        sc = [np.asarray(s, dtype=np.float64) for s in scores]
        if len(sc) != 4:
            raise InputError(f"scores must hold 4 arrays (one per branch), got {len(sc)}")
        cp = None
        if coupling is not None:
            cp = (np.asarray(coupling[0], np.float64), np.asarray(coupling[1], np.float64))
            if sc[2].ndim != cp[0].ndim:
                raise InputError(
                    "coupling: share_scale must have the shape of the per-node share scores "
                    f"(..., M, N+1, K), got {cp[0].shape} for share scores {sc[2].shape}"
                )
        if not batched:
            sc = [s[None] for s in sc]
            cp = None if cp is None else (cp[0][None], cp[1][None])
        return sc, cp

    @staticmethod
    def _at_chosen_node(
        sc: list[np.ndarray],
        cp: tuple[np.ndarray, np.ndarray] | None,
        br: int,
        m: int,
        view: TaskView,
        rows: np.ndarray,
        chosen_block: dict[int, np.ndarray],
    ) -> np.ndarray:
        """Branch ``br``'s scores for task slot ``m``; per-node scores are read at the chosen
        node, and the share scores get the coupling term of the chosen block."""
        values = sc[br][:, m]
        if values.ndim == 3:
            assert view.chosen_node is not None
            values = values[rows, view.chosen_node]
            if br == 2 and cp is not None:
                work = cp[1][rows, m, chosen_block[m]]
                values = values + work[:, None] * cp[0][rows, m, view.chosen_node]
        return values

    def greedy(
        self,
        obs: Mapping[str, np.ndarray],
        scores: Sequence[np.ndarray],
        coupling: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Masked argmax per branch, decoded task by task (e.g. Q-values of branching heads).

        Args:
            obs: Single or batched observation.
            scores: Four arrays ``(..., M, n_branch)`` in :data:`BRANCHES` order; the block
                and share arrays may instead be ``(..., M, N+1, n_branch)``, scores per node,
                read at the node chosen for the task slot.
            coupling: Optional ``(share_scale (..., M, N+1, K), block_work (..., M, L+1))``
                with per-node share scores: the share score of level ``s`` for block end
                ``j`` at node ``d`` is ``share[d, s] + block_work[j] * share_scale[d, s]``.

        Returns:
            Action ``(M, 4)`` (or ``(B, M, 4)`` for a batched observation).
        """
        tables, batched = MaskTables.from_obs(obs)
        sc, cp = self._scores(scores, coupling, batched)
        rows = np.arange(tables.task_deciding.shape[0])
        chosen_block: dict[int, np.ndarray] = {}

        def choose(m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
            values = self._at_chosen_node(sc, cp, br, m, view, rows, chosen_block)
            out = np.where(mask, values, -np.inf).argmax(-1)
            if br == 1:
                chosen_block[m] = out
            return out

        return self._unbatch(self.decode_tables(tables, choose), batched)

    def greedy_joint(
        self,
        obs: Mapping[str, np.ndarray],
        scores: Sequence[np.ndarray],
        coupling: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Per task slot, the valid ``(d, j, s, w)`` of largest summed score, task by task.

        :meth:`greedy` fixes the node from the node scores alone and then reads the block and
        share scores at that node. For a value that adds the four branch scores (the BDQ
        joint value of :func:`edgerl.cerl.dqn.joint_q`) with block / share scores per node,
        the node that maximises ``score_node(d)`` need not maximise the sum: this decoder
        maximises ``score_node(d) + score_block(d, j) + score_share(d, s) + score_sub(w)``
        over every completion that the masks allow (the share range ``[share_min(d, j),
        free share of d)``, ``s = 0`` for a wait, ``w`` a free subcarrier when ``d`` is not
        the node holding the data, else ``w = 0``), given what the earlier task slots took.
        Exact, in ``O(B (N+1) (L+1 + K + S))`` per task slot (``O(B (N+1) (L+1) K)`` with
        ``coupling``); the product space of the task slots is never enumerated.

        Args:
            obs: Single or batched observation.
            scores: As for :meth:`greedy`.
            coupling: As for :meth:`greedy` (share scores that depend on the block end).

        Returns:
            Action ``(M, 4)`` (or ``(B, M, 4)`` for a batched observation).
        """
        tables, batched = MaskTables.from_obs(obs)
        sc, cp = self._scores(scores, coupling, batched)
        n_nodes, n_blocks, n_levels, _ = self.nvec
        rows = np.arange(tables.task_deciding.shape[0])
        ar_k = np.arange(n_levels)
        # Per task slot: the best block + share score of every (node, block end) pair.
        pair_best: dict[int, np.ndarray] = {}
        chosen_block: dict[int, np.ndarray] = {}

        def per_node(t: np.ndarray, m: int) -> np.ndarray:
            v = t[:, m]
            if v.ndim == 2:  # one row for every node
                v = np.broadcast_to(v[:, None, :], (v.shape[0], n_nodes, v.shape[-1]))
            return v

        def choose(m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
            if br == 0:
                blk, shr, sub = per_node(sc[1], m), per_node(sc[2], m), sc[3][:, m]
                wait = view.is_current[:, :, None] & (
                    np.arange(n_blocks)[None, None, :] == view.progress[:, None, None]
                )
                lo = np.minimum(view.share_min, n_levels - 1)
                fits = ar_k[None, None, :] < view.count[:, :, None]
                if cp is None:
                    # Best share in [lo, count(d)): reverse running max over the levels that fit.
                    fit = np.where(fits, shr, -np.inf)
                    tail = np.maximum.accumulate(fit[..., ::-1], axis=-1)[..., ::-1]
                    best_s = np.take_along_axis(tail, lo, axis=-1)  # (B, N1, L+1)
                    wait_s = shr[:, :, :1]
                else:
                    # Share scores per (node, block end): (B, N1, L+1, K).
                    full = shr[:, :, None, :] + cp[1][:, m, None, :, None] * cp[0][:, m, :, None, :]
                    ok = fits[:, :, None, :] & (ar_k[None, None, None, :] >= lo[..., None])
                    best_s = np.where(ok, full, -np.inf).max(-1)
                    wait_s = full[..., 0]
                best_s = np.where(wait, wait_s, best_s)
                pair = np.where(view.allowed, blk + best_s, -np.inf)
                pair_best[m] = pair
                free_w = np.where(view.free_subcarriers, sub, -np.inf).max(-1)
                best_w = np.where(view.is_current, sub[:, :1], free_w[:, None])
                total = sc[0][:, m] + pair.max(-1) + best_w
                total = np.nan_to_num(total, nan=-np.inf, neginf=-1e300)
                return np.where(mask, total, -np.inf).argmax(-1)
            if br == 1:
                assert view.chosen_node is not None
                values = pair_best[m][rows, view.chosen_node]
                values = np.nan_to_num(values, nan=-np.inf, neginf=-1e300)
                chosen_block[m] = np.where(mask, values, -np.inf).argmax(-1)
                return chosen_block[m]
            values = self._at_chosen_node(sc, cp, br, m, view, rows, chosen_block)
            return np.where(mask, values, -np.inf).argmax(-1)

        return self._unbatch(self.decode_tables(tables, choose), batched)

    def sample(self, obs: Mapping[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """A random valid action: each sub-action uniform over its conditional mask."""
        tables, batched = MaskTables.from_obs(obs)

        def choose(m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
            keys = rng.random(mask.shape)
            return np.where(mask, keys, -1.0).argmax(-1)

        return self._unbatch(self.decode_tables(tables, choose, skip_idle=False), batched)

    def decode(self, obs: Mapping[str, np.ndarray], choose: Chooser) -> np.ndarray:
        """Decode with a custom chooser (see :meth:`decode_tables`); single or batched obs."""
        tables, batched = MaskTables.from_obs(obs)
        return self._unbatch(self.decode_tables(tables, choose), batched)

    def masks_given_partial(
        self, obs: Mapping[str, np.ndarray], actions_so_far: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Mask of the next sub-action given a prefix of the flattened action.

        Args:
            obs: Single or batched observation.
            actions_so_far: A prefix of ``action.reshape(-1)`` (task-major, branches in
                :data:`BRANCHES` order): ``n`` ints, or ``(B, n)`` for a batched observation.
                Sub-action ``n`` is branch ``n % 4`` of task slot ``n // 4``.

        Returns:
            Bool mask over the values of sub-action ``n`` (``(B, n_values)`` when batched).

        Raises:
            InvalidActionError: If the prefix itself holds a masked value.
            InputError: If the prefix is already a complete action.
        """
        tables, batched = MaskTables.from_obs(obs)
        prefix = np.asarray(actions_so_far, dtype=np.int64)
        if not batched:
            prefix = prefix.reshape(1, -1)
        n = prefix.shape[1]
        if n >= 4 * self.max_tasks:
            raise InputError(
                f"actions_so_far has {n} sub-actions: the action is already complete "
                f"({self.max_tasks} task slots x 4 branches)"
            )

        def choose(m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
            k = 4 * m + br
            if k == n:
                raise _Stop(mask)
            v = prefix[:, k]
            nb = mask.shape[1]
            ok = (v >= 0) & (v < nb)
            ok[ok] = mask[np.arange(len(v))[ok], v[ok]]
            if not ok.all():
                b = int(np.flatnonzero(~ok)[0])
                raise InvalidActionError(
                    f"actions_so_far[{k}] = {int(v[b])} (task slot {m}, branch "
                    f"'{BRANCHES[br]}') is masked" + (f" in batch row {b}" if batched else ""),
                    env_index=b,
                    task_slot=m,
                    branch=BRANCHES[br],
                    constraint="mask",
                )
            return v

        try:
            self.decode_tables(tables, choose, skip_idle=False)
        except _Stop as stop:
            return self._unbatch(stop.mask, batched)
        raise AssertionError("unreachable: the prefix is shorter than the action")

    def union_masks(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-branch masks of every task slot as if it were decided first in the slot.

        A value is marked when it appears in at least one valid action of that task alone (the
        node mask is exact for the first deciding task; use :meth:`masks_given_partial` for
        the exact conditional masks). Non-deciding slots allow only 0.

        Returns:
            ``{branch: (..., M, n_branch) bool}`` for the names in :data:`BRANCHES`.
        """
        tables, batched = MaskTables.from_obs(obs)
        bsz = tables.task_deciding.shape[0]
        n_nodes, n_blocks, n_levels, n_sc = self.nvec
        out = {
            name: np.zeros((bsz, self.max_tasks, n), dtype=bool)
            for name, n in zip(BRANCHES, self.nvec)
        }
        free_pct = tables.free_share_pct.astype(np.int64)
        free_sc = tables.free_subcarriers.astype(bool)
        ar = np.arange(n_levels)
        for m in range(self.max_tasks):
            view = TaskView(self, tables, m, free_pct, free_sc)
            allowed = view.allowed
            out["node"][:, m] = view.node_mask()
            blk = allowed.any(1)
            blk[~view.deciding] = view._only_zero(n_blocks)[~view.deciding]
            out["block"][:, m] = blk
            wait = view.is_current[:, :, None] & (
                np.arange(n_blocks)[None, None, :] == view.progress[:, None, None]
            )
            compute = allowed & ~wait
            rng_ok = (ar[None, None, None, :] >= view.share_min[..., None]) & (
                ar[None, None, None, :] < view.count[:, :, None, None]
            )
            share = (rng_ok & compute[..., None]).any((1, 2))
            share[:, 0] |= (allowed & wait).any((1, 2))
            share[~view.deciding] = view._only_zero(n_levels)[~view.deciding]
            out["share"][:, m] = share
            tx = (allowed & ~view.is_current[:, :, None]).any((1, 2))
            local = (allowed & view.is_current[:, :, None]).any((1, 2))
            sc = np.where(tx[:, None], free_sc, False)
            sc[:, 0] |= local
            sc[~view.deciding] = view._only_zero(n_sc)[~view.deciding]
            out["subcarrier"][:, m] = sc
        return {k: self._unbatch(v, batched) for k, v in out.items()}

    def iter_actions(
        self, obs: Mapping[str, np.ndarray] | MaskTables, canonical_subcarriers: bool = False
    ) -> list[np.ndarray]:
        """Every valid joint action of a single observation (for exhaustive search).

        Args:
            obs: A single (unbatched) observation or its :class:`MaskTables` with B = 1.
            canonical_subcarriers: Offer only the lowest free subcarrier to a transmitting task
                (all subcarriers have the same gain, so this loses no cost; see
                :mod:`edgerl.cerl.exact`).

        Returns:
            List of ``(M, 4)`` int64 actions.
        """
        if isinstance(obs, MaskTables):
            tables = obs
        else:
            tables, batched = MaskTables.from_obs(obs)
            if batched:
                raise InputError("iter_actions takes a single observation, not a batch")
        out: list[np.ndarray] = []
        action = np.zeros((self.max_tasks, 4), dtype=np.int64)
        deciding = np.flatnonzero(tables.task_deciding[0])

        def rec(k: int, free_pct: np.ndarray, free_sc: np.ndarray) -> None:
            if k == len(deciding):
                out.append(action.copy())
                return
            m = int(deciding[k])
            view = TaskView(self, tables, m, free_pct, free_sc)
            for d in np.flatnonzero(view.node_mask()[0]):
                da = np.array([d])
                for j in np.flatnonzero(view.block_mask(da)[0]):
                    ja = np.array([j])
                    for s in np.flatnonzero(view.share_mask(da, ja)[0]):
                        ws = np.flatnonzero(view.subcarrier_mask(da)[0])
                        if canonical_subcarriers:
                            ws = ws[:1]
                        for w in ws:
                            row = np.array([[d, j, s, w]], dtype=np.int64)
                            fp, fs = free_pct.copy(), free_sc.copy()
                            view.commit(row, fp, fs)
                            action[m] = row[0]
                            rec(k + 1, fp, fs)
                action[m] = 0

        rec(
            0,
            tables.free_share_pct.astype(np.int64).copy(),
            tables.free_subcarriers.astype(bool).copy(),
        )
        return out


# --------------------------------------------------------------------------- simulator


@dataclass(frozen=True)
class StepResult:
    """What one simulator step returns (arrays over the B copies).

    Attributes:
        reward: (B,) eq. (13) summed over the slot's tasks.
        terminated: (B,) bool, all tasks resolved after the arrivals ended (drain_at_end).
        truncated: (B,) bool, the episode's slots are used up.
        info: Per-slot counters, each a (B,) array (see :meth:`CerlSimulator.step`).
    """

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, np.ndarray]


_STATE_FIELDS = (
    "t",
    "cap_hz",
    "pos_m",
    "rate_bps",
    "link",
    "se_norm",
    "active",
    "task_id",
    "src",
    "loc",
    "prog",
    "prog0",
    "arr_slot",
    "busy_until",
    "hold_node",
    "hold_pct",
    "sc_hold",
    "sc_until",
    "finish_s",
    "layer_node",
    "next_id",
    "totals",
    "done_flag",
    "carry_penalty",
)

_TOTAL_KEYS = (
    "arrived",
    "completed",
    "failed",
    "dropped",
    "collaborations",
    "invalid",
    "system_cost",
    "penalty",
    "energy_j",
    "delay_s",
    "task_delay_s_sum",
)


class CerlSimulator:
    """Batched CERL dynamics: B independent copies stepped together with NumPy.

    Every copy draws its randomness from its own generator (passed to :meth:`reset` and
    :meth:`step`), in an order that does not depend on the actions: at reset the device
    capacities, then the positions, then the first slot's arrivals; at each step of the arrival
    phase one Poisson draw per device. Equal generators therefore give equal episodes whatever
    B is, and every action sequence sees the same arrivals.

    Args:
        config: Environment settings.
        num_envs: Number of copies B.
    """

    def __init__(self, config: CerlConfig, num_envs: int = 1) -> None:
        if int(num_envs) < 1:
            raise InputError(f"num_envs must be >= 1, got {num_envs!r}")
        self.config = config
        self.num_envs = int(num_envs)
        self.decoder = ActionDecoder(config)
        cfg = config
        self.n_nodes = cfg.n_devices + 1
        self.n_layers = N_LAYERS
        self.max_tasks = cfg.max_tasks
        self.n_levels = len(cfg.share_levels_pct)
        self.n_sc = cfg.n_subcarriers
        self.n_graph = self.n_nodes + self.max_tasks * self.n_layers
        self.levels_pct = np.asarray(cfg.share_levels_pct, dtype=np.int64)
        self.levels_frac = self.levels_pct.astype(np.float64) / 100.0
        self.cycles = layer_workload_cycles(cfg.cycles_per_calc)
        self.cum_cycles = np.concatenate([[0.0], np.cumsum(self.cycles)])
        self.data_bits = layer_data_bits(cfg.bits_per_element)
        self.noise_w = float(dbm_to_w(cfg.noise_dbm))
        self.subcarrier_hz = cfg.bandwidth_hz / cfg.n_subcarriers
        g_max = float(
            power_law_gain(cfg.min_distance_m, cfg.path_loss_exponent, cfg.min_distance_m)
        )
        self.se_max = math.log2(1.0 + g_max * cfg.tx_power_w / self.noise_w)
        self.cap_norm_hz = max(cfg.mec_capacity_ghz, cfg.device_capacity_max_ghz) * 1e9
        self.t = 0
        self.tables: MaskTables | None = None

    # ----------------------------------------------------------------- reset

    def reset(
        self, rngs: Sequence[np.random.Generator], options: Mapping[str, Any] | None = None
    ) -> None:
        """Start new episodes in all copies.

        Args:
            rngs: One generator per copy.
            options: Optional overrides applied to every copy after the random draws (the
                draws still happen, so the random stream is the same with or without them):
                ``device_positions_m`` (N, 2), ``device_capacities_ghz`` (N,),
                ``initial_tasks`` (source device indices 1..N of tasks present at slot 0, in
                addition to the Poisson arrivals).

        Raises:
            InputError: On a wrong number of generators or a malformed option.
        """
        cfg = self.config
        bsz, n = self.num_envs, cfg.n_devices
        if len(rngs) != bsz:
            raise InputError(f"need {bsz} generators (one per copy), got {len(rngs)}")
        options = dict(options or {})
        unknown = set(options) - {"device_positions_m", "device_capacities_ghz", "initial_tasks"}
        if unknown:
            raise InputError(
                f"unknown reset option(s) {sorted(unknown)}; valid: device_positions_m, "
                "device_capacities_ghz, initial_tasks"
            )
        cap = np.empty((bsz, self.n_nodes))
        pos = np.empty((bsz, self.n_nodes, 2))
        cap[:, 0] = cfg.mec_capacity_ghz * 1e9
        mec = cfg.mec_position_m
        pos[:, 0] = (cfg.area_size_m / 2, cfg.area_size_m / 2) if mec is None else mec
        drawn: list[list[int]] = []
        for b, rng in enumerate(rngs):
            cap[b, 1:] = (
                rng.uniform(cfg.device_capacity_min_ghz, cfg.device_capacity_max_ghz, n) * 1e9
            )
            pos[b, 1:] = rng.uniform(0.0, cfg.area_size_m, (n, 2))
            if cfg.initial_tasks_max > 0:
                count = int(rng.integers(cfg.initial_tasks_min, cfg.initial_tasks_max + 1))
                drawn.append([int(v) for v in rng.integers(1, n + 1, count)])
            else:
                drawn.append([])
        if cfg.device_capacities_ghz is not None:
            cap[:, 1:] = np.asarray(cfg.device_capacities_ghz, dtype=np.float64) * 1e9
        if cfg.device_positions_m is not None:
            pos[:, 1:] = np.asarray(cfg.device_positions_m, dtype=np.float64)
        if "device_capacities_ghz" in options:
            c = np.asarray(options["device_capacities_ghz"], dtype=np.float64)
            if c.shape != (n,) or not np.all(np.isfinite(c)) or np.any(c <= 0):
                raise InputError(
                    f"options['device_capacities_ghz'] must be {n} positive numbers, got {c!r}"
                )
            cap[:, 1:] = c * 1e9
        if "device_positions_m" in options:
            p = np.asarray(options["device_positions_m"], dtype=np.float64)
            if p.shape != (n, 2) or not np.all(np.isfinite(p)):
                raise InputError(
                    f"options['device_positions_m'] must be an ({n}, 2) array of metres, "
                    f"got shape {p.shape}"
                )
            pos[:, 1:] = p
        initial: list[int] = []
        if "initial_tasks" in options:
            initial = [int(v) for v in np.asarray(options["initial_tasks"]).reshape(-1)]
            bad = [v for v in initial if not 1 <= v <= n]
            if bad:
                raise InputError(
                    f"options['initial_tasks'] holds source devices {bad}; valid: 1..{n}"
                )
        self.cap_hz = cap
        self.pos_m = pos
        diff = pos[:, :, None, :] - pos[:, None, :, :]
        dist = np.sqrt((diff * diff).sum(-1))
        gain = np.asarray(power_law_gain(dist, cfg.path_loss_exponent, cfg.min_distance_m))
        off_diag = ~np.eye(self.n_nodes, dtype=bool)[None]
        link = off_diag & (True if cfg.link_range_m is None else (dist <= cfg.link_range_m))
        self.link = np.broadcast_to(link, dist.shape).copy()
        rate = np.asarray(
            uplink_rate_bps(self.subcarrier_hz, cfg.tx_power_w, gain, self.noise_w)
        )  # eq. (2)
        self.rate_bps = np.where(self.link, rate, 0.0)
        se = np.log2(1.0 + gain * cfg.tx_power_w / self.noise_w)
        self.se_norm = np.where(self.link, np.clip(se / self.se_max, 0.0, 1.0), 0.0)

        shape = (bsz, self.max_tasks)
        self.active = np.zeros(shape, dtype=bool)
        self.task_id = np.full(shape, -1, dtype=np.int64)
        self.src = np.zeros(shape, dtype=np.int64)
        self.loc = np.zeros(shape, dtype=np.int64)
        self.prog = np.zeros(shape, dtype=np.int64)
        self.prog0 = np.zeros(shape, dtype=np.int64)
        self.arr_slot = np.zeros(shape, dtype=np.int64)
        self.busy_until = np.zeros(shape, dtype=np.int64)
        self.hold_node = np.full(shape, -1, dtype=np.int64)
        self.hold_pct = np.zeros(shape, dtype=np.int64)
        self.sc_hold = np.full(shape, -1, dtype=np.int64)
        self.sc_until = np.zeros(shape, dtype=np.int64)
        self.finish_s = np.zeros(shape, dtype=np.float64)
        self.layer_node = np.full((*shape, self.n_layers), -1, dtype=np.int64)
        self.next_id = np.zeros(bsz, dtype=np.int64)
        self.totals = {k: np.zeros(bsz, dtype=np.float64) for k in _TOTAL_KEYS}
        self.done_flag = np.zeros(bsz, dtype=bool)
        self.t = np.zeros(bsz, dtype=np.int64)
        dropped = self._arrive(rngs, np.ones(bsz, dtype=bool), [initial + d for d in drawn])
        # Tasks dropped at the very first slot are charged in the first step's reward, so
        # that the rewards of an episode always sum to minus its total cost.
        self.carry_penalty = cfg.failure_penalty * dropped
        self.initial_dropped = dropped
        self._refresh()

    # ----------------------------------------------------------------- arrivals

    def _arrive(
        self,
        rngs: Sequence[np.random.Generator],
        which: np.ndarray,
        initial: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Poisson arrivals of the current slot in the copies ``which``; returns drops (B,).

        ``initial[b]`` lists source devices of tasks present in copy ``b`` besides the arrivals.
        """
        cfg = self.config
        lam = cfg.arrival_rate_per_s * cfg.slot_s
        dropped = np.zeros(self.num_envs, dtype=np.float64)
        devices = np.arange(1, cfg.n_devices + 1)
        for b, rng in enumerate(rngs):
            if not which[b]:
                continue
            counts = rng.poisson(lam, cfg.n_devices)  # drawn every slot: action-independent
            sources = np.concatenate(
                [
                    np.asarray([] if initial is None else initial[b], dtype=np.int64),
                    np.repeat(devices, counts),
                ]
            )
            if sources.size == 0:
                continue
            free = np.flatnonzero(~self.active[b])
            k = min(sources.size, free.size)
            slots = free[:k]
            self.active[b, slots] = True
            self.task_id[b, slots] = self.next_id[b] + np.arange(k)
            self.next_id[b] += sources.size
            self.src[b, slots] = sources[:k]
            self.loc[b, slots] = sources[:k]
            self.prog[b, slots] = 0
            self.prog0[b, slots] = 0
            self.arr_slot[b, slots] = self.t[b]
            self.busy_until[b, slots] = self.t[b]
            self.hold_node[b, slots] = -1
            self.hold_pct[b, slots] = 0
            self.sc_hold[b, slots] = -1
            self.sc_until[b, slots] = 0
            self.finish_s[b, slots] = 0.0
            self.layer_node[b, slots] = -1
            self.totals["arrived"][b] += sources.size
            dropped[b] = sources.size - k
        self.totals["dropped"] += dropped
        self.totals["failed"] += dropped
        return dropped

    # ----------------------------------------------------------------- masks

    @property
    def now_s(self) -> np.ndarray:
        """Time at the start of each copy's current slot, (B,) s."""
        return self.t * self.config.slot_s

    def _free_tables(self) -> tuple[np.ndarray, np.ndarray]:
        bsz, t = self.num_envs, self.t[:, None]
        holding = self.active & (self.busy_until > t) & (self.hold_node >= 0)
        b, m = np.nonzero(holding)
        used = np.zeros((bsz, self.n_nodes), dtype=np.int64)
        np.add.at(used, (b, self.hold_node[b, m]), self.hold_pct[b, m])
        free_pct = 100 - used
        sending = self.active & (self.sc_until > t) & (self.sc_hold >= 0)
        b, m = np.nonzero(sending)
        free_sc = np.ones((bsz, self.n_sc), dtype=bool)
        free_sc[b, self.sc_hold[b, m]] = False
        return free_pct, free_sc

    def _share_min(self, deciding: np.ndarray) -> np.ndarray:
        """Smallest share level index meeting the deadline, (B, M, N1, L+1) (eqs. (1)-(3), (10))."""
        cfg = self.config
        bsz, big = self.num_envs, self.n_levels
        slot = cfg.slot_s
        rem = self.arr_slot * slot + cfg.deadline_s - self.now_s[:, None]  # (B, M) to deadline
        p = self.prog
        bi = np.arange(bsz)[:, None]
        rate = self.rate_bps[bi, self.loc]  # (B, M, N1) from the data's node to every node
        is_cur = np.arange(self.n_nodes)[None, None, :] == self.loc[..., None]
        bits = self.data_bits[p][..., None]
        with np.errstate(divide="ignore"):
            t_trans = np.where(
                is_cur, 0.0, np.where(rate > 0, bits / np.where(rate > 0, rate, 1.0), np.inf)
            )
        # Non-final blocks must release the task at a slot start strictly before the deadline.
        k_max = np.ceil((rem - _EPS_S) / slot) - 1.0
        nonfinal = np.where(k_max >= 1, (k_max + _CEIL_TOL / 10) * slot, -np.inf)
        budget = np.repeat(nonfinal[..., None], self.n_layers + 1, axis=-1)
        budget[..., self.n_layers] = rem + _EPS_S
        avail = budget[:, :, None, :] - t_trans[..., None]  # (B, M, N1, L+1)
        work = self.cum_cycles[None, None, :] - self.cum_cycles[p][..., None]  # (B, M, L+1)
        cap = self.cap_hz[:, None, :, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            need_pct = np.where(
                avail > 0,
                work[:, :, None, :] / np.where(avail > 0, avail, 1.0) / cap * 100.0,
                np.inf,
            )
        smin = np.searchsorted(
            self.levels_pct.astype(np.float64), need_pct.ravel() - 1e-9, side="left"
        )
        smin = smin.reshape(need_pct.shape)
        j_ok = np.arange(self.n_layers + 1)[None, None, :] > p[..., None]
        ok = j_ok[:, :, None, :] & deciding[:, :, None, None]
        smin = np.where(ok, smin, big)
        return smin.astype(np.int64)

    def _refresh(self) -> None:
        deciding = self.active & (self.busy_until <= self.t[:, None])
        free_pct, free_sc = self._free_tables()
        self.tables = MaskTables(
            task_node=np.where(self.active, self.loc, 0),
            task_progress=np.where(self.active, self.prog, 0),
            task_deciding=deciding,
            share_min=self._share_min(deciding),
            free_share_pct=free_pct,
            free_subcarriers=free_sc,
        )

    # ----------------------------------------------------------------- validation

    def _explain(self, b: int, m: int, br: int, row: np.ndarray, view: TaskView) -> tuple[str, str]:
        """Message and constraint name for an invalid sub-action (slow path only)."""
        cfg = self.config
        v = int(row[br])
        name = BRANCHES[br]
        where = f"env {b}, " if self.num_envs > 1 else ""
        if not self.active[b, m]:
            return (
                f"{where}task slot {m} holds no task: its sub-actions must all be 0, got "
                f"{row.tolist()}",
                "unused slot",
            )
        head = (
            f"{where}task slot {m} (task {int(self.task_id[b, m])} from device "
            f"{int(self.src[b, m])}, data on node {int(self.loc[b, m])}, "
            f"{int(self.prog[b, m])}/{self.n_layers} layers done)"
        )
        if not view.deciding[b]:
            return (
                f"{head} is busy until slot {int(self.busy_until[b, m])}: its sub-actions must "
                f"all be 0 now, got {row.tolist()}",
                "busy task",
            )
        n_vals = self.decoder.nvec[br]
        if not 0 <= v < n_vals:
            return f"{head}: {name}={v} is out of range 0..{n_vals - 1}", "range"
        c, p = int(self.loc[b, m]), int(self.prog[b, m])
        d, j = int(np.clip(row[0], 0, self.n_nodes - 1)), int(np.clip(row[1], 0, self.n_layers))
        rem = float(self.arr_slot[b, m] * cfg.slot_s + cfg.deadline_s - self.now_s[b])
        count = int(view.count[b, d])
        free_here = int(self.levels_pct[count - 1]) if count > 0 else 0
        if br == 0:
            if not self.link[b, c, d]:
                return f"{head}: node={d} has no link from node {c} (E_alpha)", "link"
            if not view.any_sc[b]:
                return (
                    f"{head}: node={d} needs a transfer from node {c}, but all "
                    f"{self.n_sc} subcarriers are taken in this slot (constraint (7))",
                    "(7) subcarrier exclusive",
                )
            if count == 0:
                return (
                    f"{head}: node={d} has less free compute share than the smallest level "
                    f"{int(self.levels_pct[0])}% (constraint (8))",
                    "(8) node capacity",
                )
            return (
                f"{head}: no block on node={d} can end before the deadline, {rem:.3f} s away "
                "(constraint (10))",
                "(10) deadline",
            )
        if br == 1:
            if j < p:
                return (
                    f"{head}: block end {j} lies before the {p} layers already done; every layer "
                    f"runs once and all {self.n_layers} must be done (constraint (9))",
                    "(9) all layers done",
                )
            if j == p:
                return (
                    f"{head}: an empty block (block={j}) is only a wait on the current node {c}, "
                    f"not on node {d}",
                    "(9) all layers done",
                )
            smin = int(view.share_min[b, d, j])
            if smin >= self.n_levels:
                return (
                    f"{head}: block [{p + 1}:{j}] on node {d} cannot end in time at any share "
                    f"level; the deadline is {rem:.3f} s away (constraint (10))",
                    "(10) deadline",
                )
            return (
                f"{head}: block [{p + 1}:{j}] on node {d} needs a share of at least "
                f"{int(self.levels_pct[smin])}% to meet the deadline, but node {d} has only "
                f"{free_here}% usable (constraint (8))",
                "(8) node capacity",
            )
        if br == 2:
            if d == c and j == p:
                return (
                    f"{head}: a wait uses no compute share; share must be 0, got {v}",
                    "unused branch",
                )
            level = int(self.levels_pct[v])
            smin = int(view.share_min[b, d, j])
            if v >= count:
                return (
                    f"{head}: share {level}% on node {d} exceeds its free share (largest usable "
                    f"level {free_here}%) (constraint (8))",
                    "(8) node capacity",
                )
            need = int(self.levels_pct[smin]) if smin < self.n_levels else None
            return (
                f"{head}: share {level}% is too small for block [{p + 1}:{j}] on node {d} to meet "
                f"the deadline ({rem:.3f} s away); needs >= {need}% (constraint (10))",
                "(10) deadline",
            )
        if d == c:
            return (
                f"{head}: no transfer (node {d} is the current node), so subcarrier must be 0, "
                f"got {v}",
                "unused branch",
            )
        return (
            f"{head}: subcarrier {v} is already allocated in this slot (constraint (7))",
            "(7) subcarrier exclusive",
        )

    def _validate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bsz = self.num_envs
        assert self.tables is not None
        bad = np.full((bsz, self.max_tasks), -1, dtype=np.int64)
        invalid_mode = self.config.invalid_action

        def choose(m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
            v = actions[:, m, br]
            n = mask.shape[1]
            vc = np.clip(v, 0, n - 1)
            ok = (v >= 0) & (v < n) & mask[np.arange(bsz), vc]
            first = ~ok & (bad[:, m] < 0)
            bad[first, m] = br
            return vc

        def on_row(m: int, row: np.ndarray, view: TaskView) -> np.ndarray:
            wrong = bad[:, m] >= 0
            if not wrong.any():
                return row
            if invalid_mode == "raise":
                b = int(np.flatnonzero(wrong)[0])
                br = int(bad[b, m])
                msg, constraint = self._explain(b, m, br, actions[b, m], view)
                raise InvalidActionError(
                    msg, env_index=b, task_slot=m, branch=BRANCHES[br], constraint=constraint
                )
            wait = np.stack(
                [view.node, view.progress, np.zeros_like(view.node), np.zeros_like(view.node)], -1
            )
            wait[~view.deciding] = 0
            return np.where(wrong[:, None], wait, row)

        rows = self.decoder.decode_tables(self.tables, choose, on_row=on_row)
        return rows, bad >= 0

    # ----------------------------------------------------------------- step

    def step(
        self,
        actions: np.ndarray,
        rngs: Sequence[np.random.Generator],
        validate: bool = True,
    ) -> StepResult:
        """Apply one slot's actions to every copy and advance one slot.

        Args:
            actions: (B, M, 4) ints (node, block end, share level index, subcarrier).
            rngs: One generator per copy (the ones passed to :meth:`reset`).
            validate: Check the actions against the masks. Only a caller that generated them
                from the masks itself (the exact search) may pass False.

        Returns:
            A :class:`StepResult`; ``info`` holds (B,) arrays: ``system_cost`` (eq. (6) this
            slot), ``energy_j``, ``delay_s``, ``penalty``, ``completed``, ``failed``,
            ``dropped``, ``collaborations`` (transfers between nodes), ``invalid`` (tasks whose
            action was replaced by a wait), ``arrived``.

        Raises:
            InvalidActionError: If an action violates a mask and ``invalid_action='raise'``.
            InputError: On a wrong shape.
        """
        cfg = self.config
        if self.tables is None:
            raise InputError("call reset() before step()")
        a = np.asarray(actions)
        want = (self.num_envs, self.max_tasks, 4)
        if a.shape != want:
            raise InputError(f"action must have shape {want}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer) and not (
            np.all(np.isfinite(a)) and np.all(a == np.round(a))
        ):
            raise InputError("action entries must be integers")
        a = a.astype(np.int64)
        if self.done_flag.any():
            raise InputError("the episode has ended: call reset() before step()")
        arrived_before = self.totals["arrived"].copy()
        if validate:
            rows, invalid = self._validate(a)
        else:
            rows, invalid = a, np.zeros((self.num_envs, self.max_tasks), dtype=bool)
        energy, delay, collab = self._dispatch(rows)
        n_invalid = invalid.sum(1).astype(np.float64)
        system_cost = cfg.weight_energy * energy + cfg.weight_delay * delay  # eq. (6)
        self.t += 1
        completed, failed = self._release()
        arrivals_on = self.t < cfg.episode_slots
        dropped = self._arrive(rngs, arrivals_on)
        penalty = cfg.failure_penalty * (failed + dropped) + self.carry_penalty  # P(t), eq. (13)
        self.carry_penalty = np.zeros(self.num_envs)
        reward = -(system_cost + penalty + cfg.invalid_action_penalty * n_invalid)  # eq. (13)
        tot = self.totals
        tot["system_cost"] += system_cost
        tot["energy_j"] += energy
        tot["delay_s"] += delay
        tot["penalty"] += penalty
        tot["collaborations"] += collab
        tot["invalid"] += n_invalid
        if cfg.drain_at_end:
            truncated = np.zeros(self.num_envs, dtype=bool)
            terminated = ~arrivals_on & ~self.active.any(1)
        else:
            truncated = ~arrivals_on
            terminated = np.zeros(self.num_envs, dtype=bool)
        self.done_flag = terminated | truncated
        self._refresh()
        info = {
            "system_cost": system_cost,
            "energy_j": energy,
            "delay_s": delay,
            "penalty": penalty,
            "completed": completed,
            "failed": failed + dropped,
            "dropped": dropped,
            "collaborations": collab,
            "invalid": n_invalid,
            "arrived": tot["arrived"] - arrived_before,
        }
        return StepResult(reward, terminated, truncated, info)

    def _dispatch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start the chosen steps; return per-copy energy (J), delay (s), transfers."""
        cfg = self.config
        assert self.tables is not None
        t, slot = self.t[:, None], cfg.slot_s
        d, j, s, w = rows[..., 0], rows[..., 1], rows[..., 2], rows[..., 3]
        c, p = self.loc, self.prog
        deciding = self.tables.task_deciding
        go = deciding & ~((d == c) & (j == p))
        tx = go & (d != c)
        bi = np.arange(self.num_envs)[:, None]
        r_hz = self.levels_frac[s] * self.cap_hz[bi, d]  # r = share x R_d^max, cycles/s
        work = self.cum_cycles[j] - self.cum_cycles[p]  # C[u] = sum of C^x, x in [i:j]
        t_comp = np.where(go, work / r_hz, 0.0)  # eq. (1)
        e_comp = np.where(go, cfg.k0 * work * r_hz**2, 0.0)  # eq. (4)
        rate = self.rate_bps[bi, c, d]  # eq. (2)
        t_trans = np.where(tx, self.data_bits[p] / np.where(tx, rate, 1.0), 0.0)  # eq. (3)
        e_trans = cfg.tx_power_w * t_trans  # eq. (5)
        dur = t_comp + t_trans
        k = np.maximum(1, np.ceil(dur / slot - _CEIL_TOL)).astype(np.int64)
        k_tx = np.maximum(1, np.ceil(t_trans / slot - _CEIL_TOL)).astype(np.int64)
        self.busy_until = np.where(go, t + k, self.busy_until)
        self.hold_node = np.where(go, d, self.hold_node)
        self.hold_pct = np.where(go, self.levels_pct[s], self.hold_pct)
        self.sc_hold = np.where(go, np.where(tx, w, -1), self.sc_hold)
        self.sc_until = np.where(go, t + k_tx, self.sc_until)
        ar = np.arange(self.n_layers)[None, None, :]
        newly = go[..., None] & (ar >= p[..., None]) & (ar < j[..., None])
        self.layer_node = np.where(newly, d[..., None], self.layer_node)
        self.prog0 = np.where(go, p, self.prog0)
        self.prog = np.where(go, j, self.prog)
        self.loc = np.where(go, d, self.loc)
        self.finish_s = np.where(go, t * slot + dur, self.finish_s)
        energy = (e_comp + e_trans).sum(1)
        delay = dur.sum(1)
        return energy, delay, tx.sum(1).astype(np.float64)

    def _release(self) -> tuple[np.ndarray, np.ndarray]:
        """End the steps that finished by the new slot start; fail tasks past their deadline."""
        cfg = self.config
        idle = self.active & (self.busy_until <= self.t[:, None])
        done = idle & (self.prog == self.n_layers)
        arr_s = self.arr_slot * cfg.slot_s
        self.totals["task_delay_s_sum"] += np.where(done, self.finish_s - arr_s, 0.0).sum(1)
        now = self.now_s[:, None]
        fail = idle & (self.prog < self.n_layers) & (now >= arr_s + cfg.deadline_s - _EPS_S)
        self.active = self.active & ~(done | fail)
        completed = done.sum(1).astype(np.float64)
        failed = fail.sum(1).astype(np.float64)
        self.totals["completed"] += completed
        self.totals["failed"] += failed
        return completed, failed

    # ----------------------------------------------------------------- observation

    def observe(self) -> dict[str, np.ndarray]:
        """The batched observation (see :class:`CerlEnv`, Observation Space)."""
        cfg = self.config
        assert self.tables is not None
        bsz, n1, mt, nl = self.num_envs, self.n_nodes, self.max_tasks, self.n_layers
        t = self.t[:, None]
        tab = self.tables
        x = np.zeros((bsz, self.n_graph, N_FEATURES), dtype=np.float32)
        x[:, :n1, 0] = 1.0
        x[:, 0, 1] = 1.0
        x[:, :n1, 2] = np.clip(self.cap_hz / self.cap_norm_hz, 0.0, 1.0)
        x[:, :n1, 3] = tab.free_share_pct / 100.0
        x[:, :n1, 4:6] = np.clip(self.pos_m / cfg.area_size_m, 0.0, 1.0)
        x[:, :n1, 6] = self.se_norm[:, :, 0]
        x[:, 0, 6] = 1.0
        here = np.zeros((bsz, n1))
        b_idx, m_idx = np.nonzero(self.active)
        np.add.at(here, (b_idx, self.loc[b_idx, m_idx]), 1.0)
        x[:, :n1, 7] = here / mt

        act = self.active[..., None]
        busy = self.active & (self.busy_until > t)
        ar = np.arange(nl)[None, None, :]
        done = (
            np.where(busy[..., None], ar < self.prog0[..., None], ar < self.prog[..., None]) & act
        )
        running = busy[..., None] & (ar >= self.prog0[..., None]) & (ar < self.prog[..., None])
        pending = act & ~done & ~running
        rem = self.arr_slot * cfg.slot_s + cfg.deadline_s - self.now_s[:, None]
        lay = np.zeros((bsz, mt, nl, N_FEATURES), dtype=np.float32)
        af = act.astype(np.float32)
        lay[..., 8] = af
        lay[..., 9] = af * (self.cycles / self.cycles.sum())[None, None, :]
        lay[..., 10] = af * (self.data_bits[1:] / self.data_bits.max())[None, None, :]
        lay[..., 11] = af * ((np.arange(nl) + 1) / nl)[None, None, :]
        lay[..., 12] = done
        lay[..., 13] = running
        lay[..., 14] = pending
        lay[..., 15] = af * np.clip(rem / cfg.deadline_s, 0.0, 1.0)[..., None]
        lay[..., 16] = af * tab.task_deciding[..., None]
        x[:, n1:] = lay.reshape(bsz, mt * nl, N_FEATURES)

        adj = np.zeros((bsz, self.n_graph, self.n_graph), dtype=np.int8)
        adj[:, :n1, :n1] = self.link  # E_alpha: working links between computing nodes
        rows = n1 + np.arange(mt)[:, None] * nl + np.arange(nl - 1)[None, :]  # (M, L-1)
        chain = np.repeat(self.active[:, :, None], nl - 1, axis=2).astype(np.int8)
        bb = np.arange(bsz)[:, None, None]
        adj[bb, rows[None], rows[None] + 1] = chain  # E_beta: layer l -> l + 1
        adj[bb, rows[None] + 1, rows[None]] = chain
        b_i, m_i, l_i = np.nonzero(done | running)  # E_alpha-beta: layer -> node that runs it
        g_rows = n1 + m_i * nl + l_i
        g_nodes = self.layer_node[b_i, m_i, l_i]
        adj[b_i, g_nodes, g_rows] = 1
        adj[b_i, g_rows, g_nodes] = 1
        waiting = self.active & ~busy & (self.prog < nl)  # next layer -> node holding the data
        b_i, m_i = np.nonzero(waiting)
        g_rows = n1 + m_i * nl + self.prog[b_i, m_i]
        g_nodes = self.loc[b_i, m_i]
        adj[b_i, g_nodes, g_rows] = 1
        adj[b_i, g_rows, g_nodes] = 1

        node_mask = np.zeros((bsz, self.n_graph), dtype=np.int8)
        node_mask[:, :n1] = 1
        node_mask[:, n1:] = np.repeat(self.active, nl, axis=1)
        return {
            "x": x,
            "adj": adj,
            "node_mask": node_mask,
            "link_se": self.se_norm.astype(np.float32),
            "task_node": tab.task_node.astype(np.int64),
            "task_progress": tab.task_progress.astype(np.int64),
            "task_deciding": tab.task_deciding.astype(np.int8),
            "share_min": tab.share_min.astype(np.int16),
            "free_share_pct": tab.free_share_pct.astype(np.int16),
            "free_subcarriers": tab.free_subcarriers.astype(np.int8),
        }

    def episode_stats(self) -> dict[str, np.ndarray]:
        """Running totals of the episode, (B,) arrays (``return`` is minus the total cost)."""
        cfg = self.config
        out = {k: v.copy() for k, v in self.totals.items()}
        out["unfinished"] = self.active.sum(1).astype(np.float64)
        out["cost"] = (
            out["system_cost"] + out["penalty"] + cfg.invalid_action_penalty * out["invalid"]
        )
        out["return"] = -out["cost"]
        return out

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the simulator state (not of the generators)."""
        state: dict[str, Any] = {"tables": self.tables}
        for name in _STATE_FIELDS:
            val = getattr(self, name)
            state[name] = (
                {k: v.copy() for k, v in val.items()} if isinstance(val, dict) else val.copy()
            )
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        """Restore a state taken by :meth:`snapshot`."""
        self.tables = state["tables"]
        for name in _STATE_FIELDS:
            val = state[name]
            setattr(
                self,
                name,
                {k: v.copy() for k, v in val.items()} if isinstance(val, dict) else val.copy(),
            )


# --------------------------------------------------------------------------- spaces


def _spaces(cfg: CerlConfig) -> tuple[spaces.Dict, spaces.MultiDiscrete]:
    n1 = cfg.n_devices + 1
    mt = cfg.max_tasks
    n_graph = n1 + mt * N_LAYERS
    k = len(cfg.share_levels_pct)
    obs = spaces.Dict(
        {
            "x": spaces.Box(0.0, 1.0, (n_graph, N_FEATURES), np.float32),
            "adj": spaces.Box(0, 1, (n_graph, n_graph), np.int8),
            "node_mask": spaces.Box(0, 1, (n_graph,), np.int8),
            "link_se": spaces.Box(0.0, 1.0, (n1, n1), np.float32),
            "task_node": spaces.Box(0, n1 - 1, (mt,), np.int64),
            "task_progress": spaces.Box(0, N_LAYERS, (mt,), np.int64),
            "task_deciding": spaces.Box(0, 1, (mt,), np.int8),
            "share_min": spaces.Box(0, k, (mt, n1, N_LAYERS + 1), np.int16),
            "free_share_pct": spaces.Box(0, 100, (n1,), np.int16),
            "free_subcarriers": spaces.Box(0, 1, (cfg.n_subcarriers,), np.int8),
        }
    )
    nvec = np.tile(np.array([n1, N_LAYERS + 1, k, cfg.n_subcarriers], dtype=np.int64), (mt, 1))
    return obs, spaces.MultiDiscrete(nvec)


# --------------------------------------------------------------------------- environments


class CerlEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Distributed collaborative inference of an 8-layer model over N devices and a MEC server.

    CERL environment (paper 002, section 2; state graph section 3.1; parameters section 5.1).
    The modelling choices where the paper is ambiguous are listed in :mod:`edgerl.cerl.env`.

    ## Description
    Node 0 is the MEC server (``mec_capacity_ghz``), nodes ``1..N`` are edge devices with
    capacities drawn per episode. Tasks arrive at the devices (Poisson) and must run the L = 8
    layers of the section 5.1 model (workloads ``C`` = paper calculations x xi cycles, outputs
    ``O`` = elements x 64 bits) within ``deadline_s`` of their arrival. Each slot, every task
    that is not busy gets a node, a block of its next layers, a compute share and a subcarrier;
    the step costs energy (eqs. (4), (5)) and delay (eqs. (1)-(3)), weighed by eq. (6).

    ## Action Space
    ``MultiDiscrete`` of shape ``(M, 4)``, ``M = max_tasks``; row ``m`` is task slot ``m`` and
    its columns are the branches of eq. (12):

    * ``node`` in ``0..N``: node ``d`` that computes the block (0 = MEC server). If it is not
      the node holding the task's data, the data is sent there first.
    * ``block`` in ``0..L``: last layer ``j`` of the block; the block is ``[p+1 : j]`` where
      ``p`` layers are done. ``j = p`` with ``d`` = current node is a wait.
    * ``share`` in ``0..K-1``: index into ``share_levels_pct`` (``r = level% x R_d^max``).
    * ``subcarrier`` in ``0..S-1``: the subcarrier of the transfer.

    Branches that do not apply (empty or busy task slots: all four; a wait: share and
    subcarrier; no transfer: subcarrier) must be 0. Valid actions are decoded task slot by task
    slot and branch by branch with :meth:`masks_given_partial` or :attr:`decoder`
    (:class:`ActionDecoder`); :meth:`action_masks` gives per-branch masks. An action outside
    the masks raises :class:`InvalidActionError` naming the task and the violated constraint
    ((7) subcarriers exclusive, (8) node capacity, (9) layers, (10) deadline), or, with
    ``invalid_action='wait'``, makes that task wait at a penalty (reported in ``info``).

    ## Observation Space
    ``Dict`` (``V = N + 1 + M L`` graph nodes, computing nodes first, then task slot ``m``'s
    layer ``l`` at row ``N + 1 + m L + l``; empty rows are zeros):

    * ``x`` (V, 17) float32 in [0, 1], the feature matrix X. Computing-node columns: 0 is
      computing node, 1 is MEC, 2 capacity / max(MEC, device max) capacity, 3 free share
      (fraction of capacity), 4-5 position / area side, 6 spectral efficiency of its link to
      the MEC server / that at ``min_distance_m``, 7 tasks whose data is here / M.
      Layer columns: 8 is layer of an active task, 9 workload C^l / total workload, 10 output
      size O^l / largest data size, 11 layer index / L, 12 done, 13 running in the current
      step, 14 pending, 15 time to the deadline / ``deadline_s`` (clipped), 16 task decides now.
    * ``adj`` (V, V) int8 {0, 1}, symmetric adjacency A without self loops: links between
      computing nodes (E_alpha), layer l - l+1 of each task (E_beta), layer - node that
      computed / computes it, and next layer - node holding the data (E_alpha-beta).
    * ``node_mask`` (V,) int8: rows that are real graph nodes.
    * ``link_se`` (N+1, N+1) float32: spectral efficiency log2(1 + g p / delta^2) of each link,
      normalised as column 6; 0 without link.
    * ``task_node`` (M,), ``task_progress`` (M,), ``task_deciding`` (M,): data location,
      layers done, whether the task decides in this slot.
    * ``share_min`` (M, N+1, L+1) int16, ``free_share_pct`` (N+1,) int16 in %,
      ``free_subcarriers`` (S,) int8: the mask tables of :class:`MaskTables`.

    ## Rewards
    Eq. (13) summed over the slot: minus ``omega_e (E^Comp + E^Trans) + omega_d (T^Comp +
    T^Trans)`` of every step started in the slot (J and s, eq. (6)), minus
    ``failure_penalty`` per task that failed or was dropped at the end of the slot, minus
    ``invalid_action_penalty`` per replaced action (``invalid_action='wait'`` only).

    ## Starting State
    Device capacities uniform in ``[device_capacity_min_ghz, device_capacity_max_ghz]``,
    positions uniform in the square area (MEC at the centre), then the first slot's Poisson
    arrivals, all from ``self.np_random``. ``reset`` options ``device_positions_m``,
    ``device_capacities_ghz`` and ``initial_tasks`` override them.

    ## Episode End
    Never terminated by default (failures are per task, the system keeps running); truncated
    after ``episode_slots`` slots. With ``drain_at_end=True`` arrivals stop after
    ``episode_slots`` and the episode terminates once every task completed or failed. At the end
    ``info["episode_stats"]`` holds the episode totals.

    ## Arguments
    ``config``: :class:`CerlConfig` or a mapping of its fields; further keyword arguments
    override single fields (``gym.make(ENV_ID, n_devices=5)``). ``render_mode``: must be None.

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: CerlConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        if render_mode is not None:
            raise InputError(f"CerlEnv has no render modes, got render_mode={render_mode!r}")
        self.config: CerlConfig = make_config(config, **overrides)
        self.sim = CerlSimulator(self.config, 1)
        self.observation_space, self.action_space = _spaces(self.config)
        self.render_mode = render_mode
        self._obs: dict[str, np.ndarray] | None = None

    @property
    def decoder(self) -> ActionDecoder:
        """Mask computation and masked decoding for this environment's actions."""
        return self.sim.decoder

    def _single(self, batched: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in batched.items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode (see Starting State); returns the observation and an info dict."""
        super().reset(seed=seed)
        self.sim.reset([self.np_random], options)
        self._obs = self._single(self.sim.observe())
        info = {"dropped": float(self.sim.initial_dropped[0]), "slot": int(self.sim.t[0])}
        return self._obs, info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one slot's action (see Action Space)."""
        a = np.asarray(action)
        if a.shape != (self.config.max_tasks, 4):
            raise InputError(f"action must have shape ({self.config.max_tasks}, 4), got {a.shape}")
        res = self.sim.step(a[None], [self.np_random])
        self._obs = self._single(self.sim.observe())
        info: dict[str, Any] = {k: float(v[0]) for k, v in res.info.items()}
        info["slot"] = int(self.sim.t[0])
        terminated, truncated = bool(res.terminated[0]), bool(res.truncated[0])
        if terminated or truncated:
            info["episode_stats"] = {k: float(v[0]) for k, v in self.sim.episode_stats().items()}
        return self._obs, float(res.reward[0]), terminated, truncated, info

    def action_masks(self) -> dict[str, np.ndarray]:
        """Per-branch masks ``{branch: (M, n) bool}`` of the current state.

        Each task slot's masks are those it has when decided first in the slot (see
        :meth:`ActionDecoder.union_masks`); for exact sequential decoding use
        :meth:`masks_given_partial`.
        """
        if self._obs is None:
            raise InputError("call reset() before action_masks()")
        return self.decoder.union_masks(self._obs)

    def masks_given_partial(self, actions_so_far: Sequence[int] | np.ndarray) -> np.ndarray:
        """Mask of the next sub-action given a prefix of ``action.reshape(-1)``.

        Sub-action ``n`` is branch ``n % 4`` (:data:`BRANCHES`) of task slot ``n // 4``; the
        mask accounts for the subcarriers and shares taken by the prefix.
        """
        if self._obs is None:
            raise InputError("call reset() before masks_given_partial()")
        return self.decoder.masks_given_partial(self._obs, actions_so_far)

    def snapshot(self) -> dict[str, Any]:
        """Simulator state plus the generator state (for search; see :meth:`restore`)."""
        return {
            "sim": self.sim.snapshot(),
            "rng": self.np_random.bit_generator.state,
            "obs": self._obs,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        self.sim.restore(state["sim"])
        self.np_random.bit_generator.state = state["rng"]
        self._obs = state["obs"]


class BatchedCerlEnv(VectorEnv):
    """B copies of :class:`CerlEnv` stepped together with NumPy (same dynamics, same seeds).

    Copy ``i`` reset with ``seed`` uses the generator of ``CerlEnv.reset(seed=seed + i)``, so
    the batch equals B single environments stepped with the same actions. All copies end their
    episodes in the same step (fixed ``episode_slots``) unless ``drain_at_end`` is set, in which
    case a copy that terminated is reset on its own. Autoreset is "same step": the returned
    observation of an ended copy is the first of its next episode; the last one is in
    ``infos["final_obs"]`` (a batched dict, rows of ended copies valid, ``infos["_final_obs"]``
    marks them) with the episode totals in ``infos["episode_stats"]``.

    Args:
        num_envs: Number of copies B.
        config: :class:`CerlConfig` or a mapping; keyword arguments override fields.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 8,
        config: CerlConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        if render_mode is not None:
            raise InputError(f"BatchedCerlEnv has no render modes, got {render_mode!r}")
        self.config: CerlConfig = make_config(config, **overrides)
        self.num_envs = int(num_envs)
        self.sim = CerlSimulator(self.config, self.num_envs)
        self.single_observation_space, self.single_action_space = _spaces(self.config)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._rngs: list[np.random.Generator] | None = None
        self._obs: dict[str, np.ndarray] | None = None

    @property
    def decoder(self) -> ActionDecoder:
        """Mask computation and masked decoding (accepts the batched observation)."""
        return self.sim.decoder

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every copy; ``seed`` int gives copy ``i`` the seed ``seed + i``."""
        if seed is not None:
            if isinstance(seed, (int, np.integer)):
                seeds = [int(seed) + i for i in range(self.num_envs)]
            else:
                seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise InputError(f"need {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        elif self._rngs is None:
            self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self.sim.reset(self._rngs, options)
        self._options = options
        self._obs = self.sim.observe()
        return self._obs, {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every copy with ``actions`` of shape (B, M, 4)."""
        if self._rngs is None:
            raise InputError("call reset() before step()")
        res = self.sim.step(np.asarray(actions), self._rngs)
        obs = self.sim.observe()
        infos: dict[str, Any] = dict(res.info)
        ended = res.terminated | res.truncated
        if ended.any():
            infos["final_obs"] = obs
            infos["_final_obs"] = ended.copy()
            infos["episode_stats"] = self.sim.episode_stats()
            infos["_episode_stats"] = ended.copy()
            obs = self._reset_ended(ended, obs)
        self._obs = obs
        return obs, res.reward, res.terminated, res.truncated, infos

    def _reset_ended(self, ended: np.ndarray, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._rngs is not None
        if ended.all():
            self.sim.reset(self._rngs, self._options)
            return self.sim.observe()
        # Some copies ended (drain_at_end): reset those alone through a one-copy simulator.
        keep = self.sim.snapshot()
        out = {k: v.copy() for k, v in obs.items()}
        single = CerlSimulator(self.config, 1)
        for b in np.flatnonzero(ended):
            single.reset([self._rngs[b]], self._options)
            state = single.snapshot()
            for name in _STATE_FIELDS:
                val = state[name]
                if isinstance(val, dict):
                    for key in val:
                        keep[name][key][b] = val[key][0]
                else:
                    keep[name][b] = val[0]
            for k, v in single.observe().items():
                out[k][b] = v[0]
        keep["tables"] = None
        self.sim.restore(keep)
        self.sim.done_flag[:] = False
        self.sim._refresh()
        return out

    def action_masks(self) -> dict[str, np.ndarray]:
        """Per-branch masks ``{branch: (B, M, n) bool}`` (see :meth:`CerlEnv.action_masks`)."""
        if self._obs is None:
            raise InputError("call reset() before action_masks()")
        return self.decoder.union_masks(self._obs)

    def masks_given_partial(self, actions_so_far: np.ndarray) -> np.ndarray:
        """Masks ``(B, n_values)`` of the next sub-action given prefixes ``(B, n)``."""
        if self._obs is None:
            raise InputError("call reset() before masks_given_partial()")
        return self.decoder.masks_given_partial(self._obs, actions_so_far)


def register_envs() -> None:
    """Register ``edgerl/Cerl-v0`` (and its vector entry point) with Gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point="edgerl.cerl.env:CerlEnv",
            vector_entry_point="edgerl.cerl.env:BatchedCerlEnv",
        )
