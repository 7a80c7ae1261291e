"""Model selection per block: the multiple-choice knapsack of RE-POSE (Sec. III-B, eqs. (17)-(22)).

* :func:`block_values` computes the expected precision ``P_ij`` of block ``i`` under model ``j``
  from the areas of the objects in the block (eqs. (17)-(18)).
* :func:`solve_mckp` picks exactly one model per block (eq. (21)) maximising the sum of
  ``P_ij`` (eq. (20)) with the *sum* of latencies within the budget (eq. (22)), by dynamic
  programming over a discretised latency axis with backtracking (Sec. III-B2).
* :func:`solve_parallel` goes beyond the paper: the blocks run on ``E`` identical workers in
  parallel, so the constraint is on the slowest worker (the makespan), not on the sum.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from edgerl.utils.errors import InputError

__all__ = [
    "ParallelPlan",
    "Plan",
    "PrecisionTable",
    "block_values",
    "lpt_assign",
    "solve_mckp",
    "solve_parallel",
]

# Largest DP table (blocks x models x latency bins) accepted before asking for a coarser grid.
_MAX_DP_CELLS = 50_000_000
# Largest exhaustive search accepted for method="brute".
_MAX_BRUTE_COMBOS = 20_000_000


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Plan:
    """A model choice for every block.

    Attributes:
        choice: model index per block (``x_ij = 1`` for ``j = choice[i]``, eq. (19)).
        total_value: sum of the chosen ``P_ij`` (eq. (20)).
        total_latency_ms: sum of the chosen latencies (left side of eq. (22)).
        feasible: whether the plan meets the latency budget; False only for the cheapest plan
            returned with ``on_infeasible="cheapest"``.
    """

    choice: tuple[int, ...]
    total_value: float
    total_latency_ms: float
    feasible: bool


@dataclass(frozen=True)
class ParallelPlan(Plan):
    """A model choice and a worker for every block (blocks of a worker run one after another).

    Attributes:
        worker: worker index per block, in ``0 .. n_workers-1``.
        worker_latency_ms: total latency of each worker's blocks.
        makespan_ms: the slowest worker's latency, the quantity held within the budget.
        method: the algorithm that produced the plan: ``"dp"`` (one worker), ``"separable"``
            (a worker per block), ``"brute"`` or ``"milp"`` (proven optimal), ``"greedy"``.
    """

    worker: tuple[int, ...]
    worker_latency_ms: tuple[float, ...]
    makespan_ms: float
    method: str


# --------------------------------------------------------------------------- validation


def _as_problem(values: np.ndarray, latency_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise InputError(f"values must be a (blocks, models) array, got shape {v.shape}")
    k, m = v.shape
    if m == 0:
        raise InputError("values must offer at least one model per block, got 0 columns")
    lat = np.asarray(latency_ms, dtype=np.float64)
    if lat.shape == (m,):
        lat = np.broadcast_to(lat, (k, m))
    elif lat.shape != (k, m):
        raise InputError(
            f"latency_ms must have shape ({m},) (per model) or ({k}, {m}) (per block and model), "
            f"got {lat.shape}"
        )
    if not np.isfinite(v).all():
        raise InputError("values contain NaN or infinite entries")
    if not np.isfinite(lat).all() or (lat < 0).any():
        raise InputError("latency_ms must be finite and >= 0")
    return v, np.ascontiguousarray(lat)


def _check_budget(budget_ms: float) -> float:
    b = float(budget_ms)
    if not math.isfinite(b) or b < 0:
        raise InputError(f"budget_ms must be a finite number >= 0, got {budget_ms!r}")
    return b


def _check_on_infeasible(on_infeasible: str) -> None:
    if on_infeasible not in ("error", "cheapest"):
        raise InputError(f"on_infeasible must be 'error' or 'cheapest', got {on_infeasible!r}")


def _tol(budget: float) -> float:
    return 1e-9 * max(1.0, abs(budget))


def _cheapest(v: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Per block the fastest model; among equally fast ones the most valuable."""
    return np.lexsort((-v, lat), axis=1)[:, 0] if v.size else np.zeros(0, np.int64)


def _best(v: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Per block the most valuable model; among equally valuable ones the fastest."""
    return np.lexsort((lat, -v), axis=1)[:, 0]


def _plan(v: np.ndarray, lat: np.ndarray, choice: np.ndarray, feasible: bool) -> Plan:
    rows = np.arange(len(choice))
    return Plan(
        tuple(int(j) for j in choice),
        float(v[rows, choice].sum()),
        float(lat[rows, choice].sum()),
        feasible,
    )


# --------------------------------------------------------------------------- MCKP, eqs. (19)-(22)


def _dp(v: np.ndarray, cost: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-value table over "total cost <= b" for b = 0..capacity, and the argmax per block.

    ``best[b]`` after block i is ``max_j best_prev[b - cost_ij] + v_ij``; -inf marks budgets no
    choice fits. Vectorised over b; ties keep the lowest model index.
    """
    k, m = v.shape
    best = np.zeros(capacity + 1)  # no block yet: value 0 at every budget
    arg = np.full((k, capacity + 1), -1, dtype=np.int32)
    for i in range(k):
        new = np.full(capacity + 1, -np.inf)
        for j in range(m):
            c = int(cost[i, j])
            if c > capacity:
                continue
            cand = np.full(capacity + 1, -np.inf)
            cand[c:] = best[: capacity + 1 - c] + v[i, j]
            better = cand > new
            new[better] = cand[better]
            arg[i, better] = j
        best = new
    return best, arg


def solve_mckp(
    values: np.ndarray,
    latency_ms: np.ndarray,
    budget_ms: float,
    *,
    resolution_ms: float = 0.1,
    on_infeasible: str = "error",
) -> Plan:
    """Optimal model per block under a total latency budget (eqs. (19)-(22), Sec. III-B2).

    Dynamic programming over latency discretised to ``resolution_ms``: latencies are rounded
    *up* to the grid and the budget *down*, so a returned plan never exceeds the budget, and the
    plan is optimal whenever the latencies lie on the grid (otherwise optimal for the rounded
    latencies). Among optimal plans the one with the least rounded latency is returned.
    Complexity O(K * M * budget / resolution) time, O(K * budget / resolution) memory.

    Args:
        values: (K, M) ``P_ij``, the value of model j on block i (eq. (18)).
        latency_ms: (M,) latency per model ``d_j`` (as in eq. (22)), or (K, M) per block.
        budget_ms: ``D_max``, the budget on the summed latency.
        resolution_ms: latency grid step (> 0).
        on_infeasible: when even the fastest model on every block exceeds the budget:
            ``"error"`` raises, ``"cheapest"`` returns that fastest plan with ``feasible=False``.

    Returns:
        The :class:`Plan`.

    Raises:
        InputError: bad shapes or values, a grid too fine for the budget, or an infeasible
            budget with ``on_infeasible="error"`` (the message names the budget and the cheapest
            total latency).
    """
    v, lat = _as_problem(values, latency_ms)
    budget = _check_budget(budget_ms)
    _check_on_infeasible(on_infeasible)
    if not resolution_ms > 0:
        raise InputError(f"resolution_ms must be > 0, got {resolution_ms!r}")
    k, m = v.shape
    if k == 0:
        return Plan((), 0.0, 0.0, True)
    rows = np.arange(k)
    tol = _tol(budget)
    cheap = _cheapest(v, lat)
    cheap_ms = float(lat[rows, cheap].sum())
    if cheap_ms > budget + tol:
        if on_infeasible == "error":
            raise InputError(
                f"budget_ms={budget:g} is below the cheapest plan's total latency "
                f"{cheap_ms:.3f} ms ({k} blocks, fastest model each); raise the budget or use "
                "on_infeasible='cheapest'"
            )
        return _plan(v, lat, cheap, False)
    best = _best(v, lat)
    if lat[rows, best].sum() <= budget + tol:  # the unconstrained optimum already fits
        return _plan(v, lat, best, True)
    capacity = int(math.floor(budget / resolution_ms + 1e-9))
    if k * m * (capacity + 1) > _MAX_DP_CELLS:
        raise InputError(
            f"resolution_ms={resolution_ms:g} is too fine for budget_ms={budget:g} with {k} blocks "
            f"and {m} models ({k * m * (capacity + 1)} DP cells > {_MAX_DP_CELLS}); use a coarser "
            "resolution"
        )
    cost = np.maximum(np.ceil(lat / resolution_ms - 1e-9), 0).astype(np.int64)
    table, arg = _dp(v, cost, capacity)
    top = table[capacity]
    if not np.isfinite(top):
        # Only rounding up can make the grid infeasible while the cheapest plan fits exactly.
        return _plan(v, lat, cheap, True)
    # Least budget that reaches the optimum (within float tolerance) -> least-latency optimum.
    b = int(np.argmax(table >= top - 1e-9 * max(1.0, abs(top))))
    choice = np.empty(k, dtype=np.int64)
    for i in range(k - 1, -1, -1):  # backtracking
        j = int(arg[i, b])
        choice[i] = j
        b -= int(cost[i, j])
    return _plan(v, lat, choice, True)


# --------------------------------------------------------------------------- parallel planner


def lpt_assign(latency_ms: np.ndarray, n_workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Longest-processing-time-first assignment of jobs to identical workers.

    Jobs in decreasing latency each go to the currently least-loaded worker (lowest index on
    ties). Graham's bound: makespan <= (4/3 - 1/(3E)) times the optimum.

    Args:
        latency_ms: (K,) job latencies.
        n_workers: number of workers E >= 1.

    Returns:
        ``(worker, loads)``: (K,) int64 worker per job and (E,) float64 total latency per worker.
    """
    lat = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    worker = np.zeros(len(lat), dtype=np.int64)
    heap = [(0.0, e) for e in range(n_workers)]
    for i in np.argsort(-lat, kind="stable").tolist():
        load, e = heapq.heappop(heap)
        worker[i] = e
        heapq.heappush(heap, (load + float(lat[i]), e))
    loads = np.bincount(worker, weights=lat, minlength=n_workers).astype(np.float64)
    return worker, loads


def _lpt_makespan(lat: list[float], n_workers: int) -> float:
    loads = [0.0] * n_workers
    for x in sorted(lat, reverse=True):
        e = loads.index(min(loads))
        loads[e] += x
    return max(loads)


class _SearchLimit(Exception):
    """The exact packing search ran out of nodes."""


def _pack_exact(
    lat: np.ndarray, n_workers: int, cap: float, node_limit: int = 20_000
) -> np.ndarray | None:
    """Depth-first search for an assignment with every worker's load <= ``cap``.

    Jobs in decreasing latency; workers with equal load are tried once (they are
    interchangeable). Returns the (K,) worker per job, or None when none exists or the search
    exceeds ``node_limit`` nodes.
    """
    order = np.argsort(-lat, kind="stable")
    items = lat[order].tolist()
    k = len(items)
    loads = [0.0] * n_workers
    assign = [0] * k
    nodes = 0

    def place(t: int) -> bool:
        nonlocal nodes
        if t == k:
            return True
        nodes += 1
        if nodes > node_limit:
            raise _SearchLimit
        x = items[t]
        tried: set[float] = set()
        for e in range(n_workers):
            load = loads[e]
            if load in tried or load + x > cap:
                continue
            tried.add(load)
            loads[e] = load + x
            assign[t] = e
            if place(t + 1):
                return True
            loads[e] = load
        return False

    try:
        found = place(0)
    except _SearchLimit:
        return None
    if not found:
        return None
    worker = np.empty(k, dtype=np.int64)
    worker[order] = assign
    return worker


def _assign(chosen: np.ndarray, n_workers: int, budget: float, tol: float) -> np.ndarray:
    """LPT assignment, or the exact search's when LPT misses the budget and the search fits."""
    worker, loads = lpt_assign(chosen, n_workers)
    if loads.max() <= budget + tol:
        return worker
    exact = _pack_exact(chosen, n_workers, budget + tol)
    return worker if exact is None else exact


def _parallel_plan(
    v: np.ndarray,
    lat: np.ndarray,
    choice: np.ndarray,
    worker: np.ndarray | None,
    n_workers: int,
    feasible: bool,
    method: str,
) -> ParallelPlan:
    rows = np.arange(len(choice))
    chosen = lat[rows, choice]
    if worker is None:
        worker, loads = lpt_assign(chosen, n_workers)
    else:
        loads = np.bincount(worker, weights=chosen, minlength=n_workers).astype(np.float64)
    return ParallelPlan(
        choice=tuple(int(j) for j in choice),
        total_value=float(v[rows, choice].sum()),
        total_latency_ms=float(chosen.sum()),
        feasible=feasible,
        worker=tuple(int(e) for e in worker),
        worker_latency_ms=tuple(float(x) for x in loads),
        makespan_ms=float(loads.max()) if len(loads) else 0.0,
        method=method,
    )


def _brute(
    v: np.ndarray, lat: np.ndarray, budget: float, n_workers: int, tol: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Exhaustive search over model choices and worker assignments (block 0 on worker 0).

    Returns the best feasible ``(choice, worker, True)`` (most value, then least makespan), or
    the choice/assignment of least makespan with ``False`` when none fits.
    """
    k, m = v.shape
    e = n_workers
    rows = np.arange(k)
    choices = np.stack(np.unravel_index(np.arange(m**k), (m,) * k), axis=1)  # (C, K)
    rest = np.unravel_index(np.arange(e ** (k - 1)), (e,) * (k - 1)) if k > 1 else ()
    assign = np.column_stack([np.zeros(e ** (k - 1), dtype=np.int64), *rest])  # (A, K)
    onehot = (assign[:, :, None] == np.arange(e)).astype(np.float64)  # (A, K, E)
    lat_c = lat[rows, choices]  # (C, K)
    val_c = v[rows, choices].sum(axis=1)
    n_c, n_a = len(choices), len(assign)
    best_ms = np.empty(n_c)
    best_a = np.empty(n_c, dtype=np.int64)
    step = max(1, (1 << 20) // (n_a * e))
    for s in range(0, n_c, step):
        loads = np.einsum("ck,ake->cae", lat_c[s : s + step], onehot)
        ms = loads.max(axis=2)
        a = np.argmin(ms, axis=1)
        best_a[s : s + step] = a
        best_ms[s : s + step] = ms[np.arange(len(a)), a]
    ok = best_ms <= budget + tol
    if not ok.any():
        c = int(np.argmin(best_ms))
        return choices[c], assign[best_a[c]], False
    idx = np.flatnonzero(ok)
    c = int(idx[np.lexsort((best_ms[idx], -val_c[idx]))[0]])
    return choices[c], assign[best_a[c]], True


def _milp(
    v: np.ndarray, lat: np.ndarray, budget: float, n_workers: int, time_limit_s: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact MILP over binaries z_ije (block i runs model j on worker e).

    max sum v_ij z_ije  s.t.  sum_je z_ije = 1 (each block once, eq. (21)),
    sum_ij d_ij z_ije <= budget for every worker e (the per-worker form of eq. (22)).
    Workers are identical, so block i is restricted to workers 0..i (symmetry breaking).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    k, m = v.shape
    e = n_workers
    n = k * m * e
    # variable index (i, j, w) -> (i * m + j) * e + w
    c = -np.repeat(v.reshape(-1), e)
    a_eq = np.zeros((k, n))
    for i in range(k):
        a_eq[i, i * m * e : (i + 1) * m * e] = 1.0
    a_w = np.zeros((e, n))
    lat_rep = np.repeat(lat.reshape(-1), e)
    w_of = np.tile(np.arange(e), k * m)
    a_w[w_of, np.arange(n)] = lat_rep
    i_of = np.repeat(np.arange(k), m * e)
    upper = np.where(w_of <= i_of, 1.0, 0.0)
    res = milp(
        c,
        constraints=[LinearConstraint(a_eq, 1.0, 1.0), LinearConstraint(a_w, -np.inf, budget)],
        integrality=np.ones(n),
        bounds=Bounds(np.zeros(n), upper),
        options={"time_limit": time_limit_s},
    )
    if res.x is None:
        return None
    z = np.round(res.x).reshape(k, m, e)
    choice = z.sum(axis=2).argmax(axis=1)
    worker = z.sum(axis=1).argmax(axis=1)
    return choice.astype(np.int64), worker.astype(np.int64)


def _upgrade(
    v: np.ndarray, lat: np.ndarray, choice: np.ndarray, budget: float, n_workers: int, tol: float
) -> np.ndarray:
    """Greedy upgrades: repeatedly apply the single-block model change with the best value gain
    per extra millisecond whose LPT packing still fits the budget; stop when none fits."""
    k = len(choice)
    rows = np.arange(k)
    ch = choice.copy()
    cur = lat[rows, ch].copy()
    cap_sum = n_workers * budget + tol
    while True:
        dv = v - v[rows, ch][:, None]
        dl = lat - cur[:, None]
        ii, jj = np.nonzero((dv > 1e-12) & (lat <= budget + tol))
        if len(ii) == 0:
            return ch
        gain, extra = dv[ii, jj], dl[ii, jj]
        ratio = np.where(extra <= 0, np.inf, gain / np.where(extra <= 0, 1.0, extra))
        order = np.lexsort((-gain, -ratio))  # free upgrades first, then by gain per ms
        total = float(cur.sum())
        accepted = False
        for o in order.tolist():
            i, j = int(ii[o]), int(jj[o])
            if total + extra[o] > cap_sum:  # necessary condition: the sum fits on E workers
                continue
            trial = cur.tolist()
            trial[i] = float(lat[i, j])
            if _lpt_makespan(trial, n_workers) <= budget + tol:
                ch[i] = j
                cur[i] = lat[i, j]
                accepted = True
                break
        if not accepted:
            return ch


def _exchange(
    v: np.ndarray,
    lat: np.ndarray,
    choice: np.ndarray,
    budget: float,
    n_workers: int,
    tol: float,
    max_tries: int = 256,
) -> np.ndarray:
    """Local search over pairs of model changes on two different blocks (e.g. a downgrade that
    frees time for a more valuable upgrade): apply the pair of largest net value gain whose LPT
    packing fits, re-run the upgrades, repeat; at most ``max_tries`` packings per round."""
    k, m = v.shape
    rows = np.arange(k)
    ch = choice.copy()
    blk = np.repeat(rows, m)
    mod = np.tile(np.arange(m), k)
    cap_sum = n_workers * budget + tol
    for _ in range(k * m):
        cur_v, cur_l = v[rows, ch], lat[rows, ch]
        dv = (v - cur_v[:, None]).reshape(-1)
        dl = (lat - cur_l[:, None]).reshape(-1)
        ok = (lat <= budget + tol).reshape(-1) & (mod != ch[blk])
        gain = dv[:, None] + dv[None, :]
        valid = (
            ok[:, None]
            & ok[None, :]
            & (blk[:, None] < blk[None, :])
            & (gain > 1e-12)
            & (cur_l.sum() + dl[:, None] + dl[None, :] <= cap_sum)
        )
        aa, bb = np.nonzero(valid)
        if len(aa) == 0:
            return ch
        order = np.argsort(-gain[aa, bb], kind="stable")[:max_tries]
        base = cur_l.tolist()
        accepted = False
        for o in order.tolist():
            a, b = int(aa[o]), int(bb[o])
            trial = list(base)
            trial[blk[a]] = float(lat[blk[a], mod[a]])
            trial[blk[b]] = float(lat[blk[b], mod[b]])
            if _lpt_makespan(trial, n_workers) <= budget + tol:
                ch[blk[a]], ch[blk[b]] = mod[a], mod[b]
                ch = _upgrade(v, lat, ch, budget, n_workers, tol)
                accepted = True
                break
        if not accepted:
            return ch
    return ch


def _downgrade(
    v: np.ndarray, lat: np.ndarray, choice: np.ndarray, budget: float, n_workers: int, tol: float
) -> np.ndarray | None:
    """From ``choice``, repeatedly take the model change that saves the most milliseconds per unit
    of value lost until the LPT packing fits; None when no change can save time."""
    k = len(choice)
    rows = np.arange(k)
    ch = choice.copy()
    while _lpt_makespan(lat[rows, ch].tolist(), n_workers) > budget + tol:
        saved = lat[rows, ch][:, None] - lat
        lost = v[rows, ch][:, None] - v
        ii, jj = np.nonzero(saved > 1e-12)
        if len(ii) == 0:
            return None
        s, lo = saved[ii, jj], lost[ii, jj]
        ratio = np.where(lo <= 0, np.inf, s / np.where(lo <= 0, 1.0, lo))
        o = int(np.lexsort((-s, -ratio))[0])
        ch[ii[o]] = jj[o]
    return ch


def _greedy(
    v: np.ndarray,
    lat: np.ndarray,
    budget: float,
    n_workers: int,
    tol: float,
    cheap: np.ndarray,
    resolution_ms: float,
) -> np.ndarray:
    """Best of greedy upgrades from (a) the cheapest plan, (b) MCKP relaxations whose plans
    LPT-pack within the budget (the summed budget is bisected between the cheapest total and
    ``E * budget``) and (c) the most valuable plan greedily downgraded until it packs; each start
    is improved by upgrades and then by pair exchanges."""
    k = len(cheap)
    rows = np.arange(k)
    starts = [cheap]
    # (b) models slower than the budget can never run; price them out of the relaxation.
    fits = lat <= budget + tol
    lat_fit = np.where(fits, lat, n_workers * budget * 4 + 1.0)
    lo, hi = float(lat[rows, cheap].sum()), n_workers * budget
    res = max(resolution_ms, hi / 2000.0)
    s = hi
    for _ in range(8):
        plan = solve_mckp(v, lat_fit, s, resolution_ms=res, on_infeasible="cheapest")
        ch = np.asarray(plan.choice, dtype=np.int64)
        if plan.feasible and _lpt_makespan(lat[rows, ch].tolist(), n_workers) <= budget + tol:
            starts.append(ch)
            if s == hi:
                break
            lo = s
        else:
            hi = s
        s = 0.5 * (lo + hi)
    # (c) the best model per block among those within the budget, then downgrades.
    down = _downgrade(v, lat, _best(np.where(fits, v, -np.inf), lat), budget, n_workers, tol)
    if down is not None:
        starts.append(down)
    best_ch, best_key = cheap, (-np.inf, 0.0)
    for st in starts:
        ch = _exchange(v, lat, _upgrade(v, lat, st, budget, n_workers, tol), budget, n_workers, tol)
        key = (float(v[rows, ch].sum()), -_lpt_makespan(lat[rows, ch].tolist(), n_workers))
        if key > best_key:
            best_ch, best_key = ch, key
    return best_ch


def solve_parallel(
    values: np.ndarray,
    latency_ms: np.ndarray,
    budget_ms: float,
    n_workers: int,
    *,
    method: str = "auto",
    on_infeasible: str = "error",
    resolution_ms: float = 0.1,
    brute_force_limit: int = 200_000,
    time_limit_s: float = 10.0,
) -> ParallelPlan:
    """Model per block and worker per block so that the slowest worker meets the budget.

    Extends the MCKP of eqs. (19)-(22) to E identical workers running their blocks in parallel:
    maximise ``sum P_ij`` subject to ``max_e sum_{i on e} d_ij <= budget`` (the blocks of one
    worker run one after another). Algorithms:

    * one worker: the exact DP of :func:`solve_mckp` (``"dp"``);
    * at least as many workers as blocks: each block independently takes its best model that
      fits the budget (``"separable"``, exact);
    * ``"brute"``: exhaustive search over ``M^K`` model choices times ``E^(K-1)`` assignments
      (exact; used by ``"auto"`` when that product is at most ``brute_force_limit``);
    * ``"milp"``: exact MILP (HiGHS through :func:`scipy.optimize.milp`) over binaries
      ``z_ije``, with ``time_limit_s``;
    * ``"greedy"`` (``"auto"`` for larger instances): start from the fastest plan and from the
      optimal plans of the MCKP relaxation (sum of latencies <= budget * E, bisected down until
      the plan's LPT packing fits), then repeatedly apply the single-block model upgrade with the
      best value gain per extra millisecond whose LPT packing (:func:`lpt_assign`) still fits;
      the best result wins. Workers are assigned by LPT.

    Args:
        values: (K, M) ``P_ij``.
        latency_ms: (M,) or (K, M) latencies; a worker's load is the sum over its blocks.
        budget_ms: budget on the makespan.
        n_workers: number of workers E >= 1.
        method: ``"auto"``, ``"greedy"``, ``"brute"`` or ``"milp"``.
        on_infeasible: ``"error"`` or ``"cheapest"`` (the plan of least makespan found, flagged
            ``feasible=False``), as in :func:`solve_mckp`.
        resolution_ms: latency grid of the DP (one worker, and the greedy's relaxation).
        brute_force_limit: largest ``M^K * E^(K-1)`` searched exhaustively by ``"auto"``.
        time_limit_s: time limit of the MILP.

    Returns:
        The :class:`ParallelPlan`.
    """
    v, lat = _as_problem(values, latency_ms)
    budget = _check_budget(budget_ms)
    _check_on_infeasible(on_infeasible)
    if int(n_workers) != n_workers or n_workers < 1:
        raise InputError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    if method not in ("auto", "greedy", "brute", "milp"):
        raise InputError(f"method must be 'auto', 'greedy', 'brute' or 'milp', got {method!r}")
    n_workers = int(n_workers)
    k, m = v.shape
    rows = np.arange(k)
    tol = _tol(budget)
    if k == 0:
        return ParallelPlan((), 0.0, 0.0, True, (), (0.0,) * n_workers, 0.0, "separable")

    def infeasible(choice: np.ndarray, worker: np.ndarray | None, method_name: str) -> ParallelPlan:
        plan = _parallel_plan(v, lat, choice, worker, n_workers, False, method_name)
        if on_infeasible == "error":
            raise InputError(
                f"budget_ms={budget:g} is below the makespan of the cheapest plan found, "
                f"{plan.makespan_ms:.3f} ms ({k} blocks on {n_workers} workers); raise the "
                "budget or use on_infeasible='cheapest'"
            )
        return plan

    cheap = _cheapest(v, lat)
    if n_workers == 1:
        try:
            p = solve_mckp(v, lat, budget, resolution_ms=resolution_ms, on_infeasible=on_infeasible)
        except InputError as exc:
            raise InputError(f"{exc} (1 worker)") from None
        ch = np.asarray(p.choice, dtype=np.int64)
        return _parallel_plan(v, lat, ch, np.zeros(k, np.int64), 1, p.feasible, "dp")
    if n_workers >= k:
        fits = lat <= budget + tol
        if not fits.any(axis=1).all():
            return infeasible(cheap, np.arange(k), "separable")
        masked = np.where(fits, v, -np.inf)
        ch = _best(masked, lat)
        return _parallel_plan(v, lat, ch, np.arange(k), n_workers, True, "separable")
    n_combos = m**k * n_workers ** (k - 1)
    if method == "brute" and n_combos > _MAX_BRUTE_COMBOS:
        raise InputError(
            f"method='brute' would search {n_combos} combinations ({m}^{k} models x "
            f"{n_workers}^{k - 1} assignments > {_MAX_BRUTE_COMBOS}); use 'greedy' or 'milp'"
        )
    if method == "brute" or (method == "auto" and n_combos <= brute_force_limit):
        ch, worker, ok = _brute(v, lat, budget, n_workers, tol)
        if not ok:
            return infeasible(ch, worker, "brute")
        return _parallel_plan(v, lat, ch, worker, n_workers, True, "brute")
    cheap_ms = _lpt_makespan(lat[rows, cheap].tolist(), n_workers)
    if method == "milp":
        sol = _milp(v, lat, budget, n_workers, time_limit_s)
        if sol is None:
            return infeasible(cheap, None, "milp")
        return _parallel_plan(v, lat, sol[0], sol[1], n_workers, True, "milp")
    if cheap_ms > budget + tol:
        packed = _pack_exact(lat[rows, cheap], n_workers, budget + tol)
        if packed is None:
            return infeasible(cheap, None, "greedy")
    ch = _greedy(v, lat, budget, n_workers, tol, cheap, resolution_ms)
    worker = _assign(lat[rows, ch], n_workers, budget, tol)
    return _parallel_plan(v, lat, ch, worker, n_workers, True, "greedy")


# --------------------------------------------------------------------------- block values


@dataclass(frozen=True, eq=False)
class PrecisionTable:
    """Precision of each model as a function of the object's area after resizing (``p_j``).

    A binned profile (e.g. measured per COCO-style size bin) read by linear interpolation in
    log-area between the bins' geometric centres, constant beyond the outermost centres.

    Attributes:
        area_edges: (B+1,) increasing bin edges of the resized object area, pixels^2, > 0.
        precision: (M, B) precision of model j in bin b.
    """

    area_edges: np.ndarray
    precision: np.ndarray

    def __post_init__(self) -> None:
        edges = np.asarray(self.area_edges, dtype=np.float64).reshape(-1)
        prec = np.asarray(self.precision, dtype=np.float64)
        if len(edges) < 2 or not (edges > 0).all() or not (np.diff(edges) > 0).all():
            raise InputError("area_edges must hold >= 2 strictly increasing positive areas (px^2)")
        if prec.ndim != 2 or prec.shape[1] != len(edges) - 1:
            raise InputError(
                f"precision must have shape (models, {len(edges) - 1}) for {len(edges)} edges, "
                f"got {prec.shape}"
            )
        if not np.isfinite(prec).all():
            raise InputError("precision contains NaN or infinite entries")
        object.__setattr__(self, "area_edges", edges)
        object.__setattr__(self, "precision", prec)

    @property
    def n_models(self) -> int:
        """Number of models M."""
        return self.precision.shape[0]

    def __call__(self, model: int, areas: np.ndarray) -> np.ndarray:
        """``p_model(areas)`` for resized areas in pixels^2."""
        log_edges = np.log(self.area_edges)
        centres = 0.5 * (log_edges[:-1] + log_edges[1:])
        a = np.log(np.maximum(np.asarray(areas, dtype=np.float64), 1e-12))
        return np.interp(a, centres, self.precision[model])


def block_values(
    blocks: np.ndarray,
    areas: Sequence[np.ndarray],
    precision: PrecisionTable | Sequence[Callable[[np.ndarray], np.ndarray]],
    model_input_sizes: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Expected precision ``P_ij`` of every block under every model (eqs. (17)-(18)).

    ``A'_ik(j) = A_ik * S_j^2 / (W_i * H_i)`` (eq. (17): the block is resized to ``S_j x S_j``)
    and ``P_ij = mean_k p_j(A'_ik(j))`` (eq. (18)). A block without objects has value 0.

    Args:
        blocks: (K, 4) xyxy blocks in frame pixels (positive width and height).
        areas: K arrays, the original areas ``A_ik`` (pixels^2) of the objects in each block
            (e.g. :func:`edgerl.repose.clustering.cluster_areas`).
        precision: a :class:`PrecisionTable` with M models, or M vectorised callables mapping
            resized areas to precision.
        model_input_sizes: (M,) input sizes ``S_j`` in pixels (e.g. 640, 768, 896, 1024, 1280).

    Returns:
        (K, M) float64 values.
    """
    b = np.asarray(blocks, dtype=np.float64).reshape(-1, 4)
    k = len(b)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    if (bw <= 0).any() or (bh <= 0).any():
        raise InputError("blocks must have positive width and height (xyxy)")
    sizes = np.asarray(model_input_sizes, dtype=np.float64).reshape(-1)
    m = len(sizes)
    if m == 0 or not (sizes > 0).all():
        raise InputError(f"model_input_sizes must be positive pixels, got {model_input_sizes!r}")
    if len(areas) != k:
        raise InputError(f"areas must hold one array per block ({k}), got {len(areas)}")
    if isinstance(precision, PrecisionTable):
        if precision.n_models != m:
            raise InputError(
                f"precision table has {precision.n_models} models but model_input_sizes has {m}"
            )
        fns: list[Callable[[np.ndarray], np.ndarray]] = [partial(precision, j) for j in range(m)]
    else:
        fns = list(precision)
        if len(fns) != m:
            raise InputError(f"precision must hold {m} callables (one per model), got {len(fns)}")
    per_block = [np.asarray(a, dtype=np.float64).reshape(-1) for a in areas]
    counts = np.array([len(a) for a in per_block], dtype=np.int64)
    out = np.zeros((k, m))
    if counts.sum() == 0:
        return out
    flat = np.concatenate(per_block)
    blk = np.repeat(np.arange(k), counts)
    resized = flat[:, None] * (sizes**2)[None, :] / (bw * bh)[blk][:, None]  # eq. (17)
    denom = np.maximum(counts, 1)
    for j, fn in enumerate(fns):
        p = np.asarray(fn(resized[:, j]), dtype=np.float64).reshape(-1)
        if p.shape != (len(flat),):
            raise InputError(
                f"precision function {j} returned shape {p.shape}, expected ({len(flat)},)"
            )
        out[:, j] = np.bincount(blk, weights=p, minlength=k) / denom  # eq. (18)
    return out
