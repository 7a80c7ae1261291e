"""Exact minimum cost of tiny CERL instances by exhaustive search (branch and bound).

The problem solved (paper 002, P1 of eq. (6) with the failure penalty of eq. (13)):

    minimise  C(a_0, ..., a_{T-1}) = sum_t [ sum_q omega_e (E^Comp + E^Trans)
                                            + omega_d (T^Comp + T^Trans) + P * failures_t ]
                                   = - sum_t R(t)

over every sequence of joint actions ``a_t`` (all task slots, all four branches) that lies in
the masks of :class:`~edgerl.cerl.env.CerlEnv`, i.e. satisfies constraints (7)-(10), for the
one episode produced by ``reset(seed=seed, options=options)`` and run until it ends
(truncation after ``episode_slots``, or, with ``drain_at_end``, until every task is resolved).
Topology, capacities and arrivals are fixed by the seed: the simulator draws its random numbers
in an order that does not depend on the actions, so the problem is deterministic and ``C`` is
exactly minus the return a policy gets on that episode. Hence the minimum found here is a lower
bound on the episode cost of every policy (LC, EC, random, learnt agents) on the same seed.

Search. Depth-first over slots; at each slot every valid joint action is generated with
:meth:`~edgerl.cerl.env.ActionDecoder.iter_actions`, stepped once, and the children are
visited in increasing order of (step cost + bound). Three devices keep it exact and small:

* Subcarrier symmetry: every subcarrier has the same gain (eq. (2): ``g`` depends only on the
  distance), so which free subcarrier a transfer uses changes nothing but its label; only the
  lowest free one is tried.
* Bound: a live task that must be resolved within the episode still costs at least
  ``min(P, W_left * h)`` with ``W_left`` its cycles not yet started and ``h`` the cost per
  cycle ``omega_e k0 r^2 + omega_d / r`` of eqs. (1), (4) at ``r = max(r*, W_left / tau)``:
  ``r*`` minimises it and ``tau`` is the time left before the deadline (by convexity in
  ``1 / r`` one constant speed is the cheapest way to finish in time; transfers only add
  cost); it is ``P`` when even the fastest node is too slow. A task that may still be running
  when the episode is truncated can cost nothing more and adds 0. Branches whose bound reaches
  the best cost found are cut.
* Transpositions: states reached along different paths (same slot, same task progress, data
  locations, busy times and held resources) share their cost-to-go, memoised as an exact value
  or as a lower bound.

Meant for instances like 2-3 devices, 1-2 tasks, 2-3 share levels and a handful of slots; a node
budget stops runaway searches with an error rather than a silent approximation.

The minimum is clairvoyant: it knows when and where every task of the episode will arrive.
:func:`replanning_cost` is the non-anticipative counterpart: every slot it solves exactly the
problem of the tasks present, as if no task arrived any more, applies the first joint action of
that plan and re-plans in the next slot with whatever arrived. Its gap to the exact minimum
shows how much of a policy's gap is the price of not knowing the future arrivals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from edgerl.cerl.env import CerlConfig, CerlSimulator, make_config
from edgerl.utils.errors import InputError

__all__ = ["cost_per_cycle_floor", "exact_min_cost", "replanning_cost"]


def cost_per_cycle_floor(cfg: CerlConfig) -> float:
    """``c* = min_{r > 0} omega_e k0 r^2 + omega_d / r`` in cost units per cycle.

    At ``r* = (omega_d / (2 omega_e k0))^(1/3)``; 0 when either weight is 0 (the infimum).
    """
    we, wd, k0 = cfg.weight_energy, cfg.weight_delay, cfg.k0
    if we <= 0 or wd <= 0:
        return 0.0
    r = (wd / (2.0 * we * k0)) ** (1.0 / 3.0)
    return we * k0 * r * r + wd / r


def _lower_bound(sim: CerlSimulator, c_star: float) -> float:
    """Cost every live task must still add (module docstring), summed."""
    cfg = sim.config
    slot = cfg.slot_s
    end_s = cfg.episode_slots * slot
    deadline = sim.arr_slot[0] * slot + cfg.deadline_s
    left = sim.cum_cycles[-1] - sim.cum_cycles[sim.prog[0]]
    # Without drain, a task whose deadline lies beyond the last slot start may stay unresolved.
    forced = sim.active[0] & ((deadline <= end_s + 1e-9) | cfg.drain_at_end) & (left > 0)
    if not forced.any():
        return 0.0
    left = left[forced]
    start = np.maximum(sim.t[0], sim.busy_until[0][forced]) * slot
    tau = deadline[forced] - start
    r_max = float(sim.cap_hz[0].max())
    with np.errstate(divide="ignore", invalid="ignore"):
        r_need = np.where(tau > 0, left / np.where(tau > 0, tau, 1.0), np.inf)
    # Per cycle, h(s) = omega_e k0 / s^2 + omega_d s (s = 1 / r) is convex, so by Jensen the
    # cheapest way to run `left` cycles within tau is one constant speed max(r*, left / tau).
    we, wd, k0 = cfg.weight_energy, cfg.weight_delay, cfg.k0
    r_star = (wd / (2.0 * we * k0)) ** (1.0 / 3.0) if we > 0 and wd > 0 else 0.0
    r = np.maximum(r_star, r_need)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_cycle = np.where(
            np.isfinite(r) & (r > 0), we * k0 * r * r + wd / np.where(r > 0, r, 1.0), 0.0
        )
    per_cycle = np.maximum(per_cycle, c_star)
    complete = np.where(r_need <= r_max, left * per_cycle, np.inf)
    return float(np.minimum(cfg.failure_penalty, complete).sum())


def exact_min_cost(
    env_config: CerlConfig | Mapping[str, Any] | None,
    seed: int,
    options: Mapping[str, Any] | None = None,
    *,
    max_nodes: int = 200_000,
) -> tuple[float, list[np.ndarray]]:
    """Minimum episode cost of a tiny instance and the action sequence that reaches it.

    Args:
        env_config: The environment config (or a mapping of its fields).
        seed: The episode's seed, as in ``CerlEnv.reset(seed=seed)``.
        options: Reset options (e.g. ``initial_tasks``), as in ``CerlEnv.reset``.
        max_nodes: Search nodes (stepped children) allowed before giving up.

    Returns:
        ``(cost, actions)``: the minimum of ``-sum_t R(t)`` (see the module docstring) and one
        optimal list of ``(M, 4)`` actions, one per slot; replaying them in
        ``CerlEnv(config).reset(seed=seed, options=options)`` gives that cost.

    Raises:
        InputError: If the search needs more than ``max_nodes`` nodes (instance too large).
    """
    cfg = make_config(env_config, invalid_action="raise")
    sim = CerlSimulator(cfg, 1)
    rng = seeding.np_random(int(seed))[0]
    sim.reset([rng], options)
    return _solve(sim, rng, max_nodes)


def replanning_cost(
    env_config: CerlConfig | Mapping[str, Any] | None,
    seed: int,
    options: Mapping[str, Any] | None = None,
    *,
    max_nodes: int = 200_000,
) -> float:
    """Episode cost of exact re-planning without knowledge of future arrivals.

    In every slot the tasks present are planned exactly (:func:`exact_min_cost` on the current
    state with the arrival rate set to 0), the plan's first joint action is applied in the real
    episode (arrivals on), and the next slot plans again. The policy uses nothing a learnt
    agent could not observe in principle (the state, the model, not the future), so its gap is
    a reference for the gap of the learnt agents.

    Args:
        env_config: The environment config (or a mapping of its fields).
        seed: The episode's seed, as in ``CerlEnv.reset(seed=seed)``.
        options: Reset options, as in ``CerlEnv.reset``.
        max_nodes: Search nodes allowed per slot's plan.

    Returns:
        ``-sum_t R(t)`` of the episode.

    Raises:
        InputError: If a slot's plan needs more than ``max_nodes`` nodes.
    """
    cfg = make_config(env_config, invalid_action="raise")
    quiet = make_config(cfg, arrival_rate_per_s=0.0)
    sim = CerlSimulator(cfg, 1)
    rng = seeding.np_random(int(seed))[0]
    sim.reset([rng], options)
    planner = CerlSimulator(quiet, 1)
    plan_rng = seeding.np_random(0)[0]  # draws nothing: Poisson(0) arrivals
    cost = 0.0
    while not sim.done_flag[0]:
        planner.restore(sim.snapshot())
        _, actions = _solve(planner, plan_rng, max_nodes)
        res = sim.step(actions[0][None], [rng])
        cost -= float(res.reward[0])
    return cost


def _solve(
    sim: CerlSimulator, rng: np.random.Generator, max_nodes: int
) -> tuple[float, list[np.ndarray]]:
    """Branch and bound from the simulator's current state (see the module docstring)."""
    cfg = sim.config
    c_star = cost_per_cycle_floor(cfg)
    memo: dict[bytes, tuple[float, list[np.ndarray] | None]] = {}
    nodes = 0

    def search(budget: float) -> tuple[float, list[np.ndarray] | None]:
        """Min cost-to-go and its actions if it is below ``budget``, else (a bound >= budget, None)."""
        nonlocal nodes
        if sim.done_flag[0]:
            return 0.0, []
        key = _state_key(sim)
        hit = memo.get(key)
        if hit is not None:
            value, acts = hit
            if value >= budget:
                # Exact or not, the value is a lower bound that does not beat the budget: a
                # plan returned here would replace a better one found by the caller.
                return value, None
            if acts is not None:
                return value, acts
        bound_here = _lower_bound(sim, c_star)
        if bound_here >= budget:
            return bound_here, None
        assert sim.tables is not None
        state = sim.snapshot()
        rng_state = rng.bit_generator.state
        children = []
        for action in sim.decoder.iter_actions(sim.tables, canonical_subcarriers=True):
            nodes += 1
            if nodes > max_nodes:
                raise InputError(
                    f"exact search exceeded max_nodes={max_nodes} (n_devices={cfg.n_devices}, "
                    f"max_tasks={cfg.max_tasks}, {len(cfg.share_levels_pct)} share levels, "
                    f"{cfg.episode_slots} slots): the instance is too large for exhaustive search"
                )
            sim.restore(state)
            rng.bit_generator.state = rng_state
            res = sim.step(action[None], [rng], validate=False)
            step_cost = -float(res.reward[0])
            bound = step_cost + _lower_bound(sim, c_star)
            children.append((bound, step_cost, action, sim.snapshot(), rng.bit_generator.state))
        children.sort(key=lambda c: c[0])
        best, best_acts = math.inf, None
        floor = math.inf  # lower bound over the children that did not beat the budget
        for bound, step_cost, action, child, child_rng in children:
            limit = min(budget, best)
            if bound >= limit:
                floor = min(floor, bound)
                break
            sim.restore(child)
            rng.bit_generator.state = child_rng
            value, acts = search(limit - step_cost)
            if acts is not None:
                best, best_acts = step_cost + value, [action, *acts]
            else:
                floor = min(floor, step_cost + value)
        sim.restore(state)
        rng.bit_generator.state = rng_state
        if best_acts is not None and best < budget:
            memo[key] = (best, best_acts)  # exact: every cut child was bounded above it
            return best, best_acts
        low = max(min(best, floor), bound_here)
        memo[key] = (low, None)
        return low, None

    cost, actions = search(math.inf)
    assert actions is not None
    return cost, [a.copy() for a in actions]


def _state_key(sim: CerlSimulator) -> bytes:
    """Everything the cost-to-go depends on (subcarrier labels left out by symmetry)."""
    t = int(sim.t[0])
    active = sim.active[0]
    holding = active & (sim.busy_until[0] > t)
    sending = active & (sim.sc_until[0] > t) & (sim.sc_hold[0] >= 0)
    parts = np.stack(
        [
            active,
            np.where(active, sim.loc[0], -1),
            np.where(active, sim.prog[0], -1),
            np.where(active, sim.arr_slot[0], -1),
            np.where(active, np.maximum(sim.busy_until[0], t), -1),
            np.where(holding, sim.hold_node[0], -1),
            np.where(holding, sim.hold_pct[0], 0),
            np.where(sending, sim.sc_until[0], 0),
        ]
    ).astype(np.int64)
    head = np.array([t, int(sim.done_flag[0])], dtype=np.int64)
    return head.tobytes() + parts.tobytes() + sim.carry_penalty.astype(np.float64).tobytes()
