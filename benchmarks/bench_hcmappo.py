"""HC-MAPPO-L training speed: environment slots per second and seconds per paper-scale iteration.

The paper-scale setting of paper 003 (section V-A): J = 10 servers, K = 50 users, I = 45
services, iterations of 200 slots, 1000 iterations. Measured:

* ``env_slots_per_s``: slots per second of :class:`~edgerl.hcmappo.batched.BatchedHcEnv`
  alone (B copies, random valid actions drawn up front, so only the environment is timed);
* one training iteration of HC-MAPPO-L (rollout of 200 slots with every policy, then the PPO
  updates of the three layers), split into ``rollout_s`` and ``update_s``, with its CPU time,
  and the projected time of the paper's 1000 iterations.

Torch runs on ``--threads`` intra-op threads (default 1: the batches are small, and a shared
machine gives little to a second thread). Timings on a shared machine are inflated by the
other processes: the load average at the start is reported with them.

Run: ``nice -n 5 .venv/bin/python benchmarks/bench_hcmappo.py --iterations 3 [--threads 1]
[--split] [--out results.json]``. ``--split`` adds ``split_cpu_s_per_iteration``: CPU seconds
per iteration in each part (acting per layer, environment steps, rollout critics, the update
of each layer, GAE, the dual step; :func:`bench_split`).

Measured on the project machine (2 cores shared with other jobs, load average 3.9-4.0 during
every run, one torch thread, 3 timed iterations, the two versions alternated twice), before
and after the speed paths of :mod:`edgerl.hcmappo.agent` that change no number:

=====================  =================  =================
per iteration          before             after
=====================  =================  =================
wall s                 8.22 / 7.99        7.17 / 6.86
CPU s                  4.09 / 3.95        3.56 / 3.37
projected 1000 it.     137 / 133 min      120 / 114 min
CPU-min per 1000 it.   68 / 66            59 / 56
=====================  =================  =================

Wall time at that load is about twice the CPU time (two cores, four runnable jobs); on a quiet
machine an iteration took 3.42 s before (load 1.25, CPU 3.39 s), so about 2.9 s (48 min per
1000 iterations) is expected after. CPU split after (s per iteration): acting deploy 0.36,
users 0.28, allocation 0.37; environment steps 0.25; rollout critics 0.12; updates deploy
0.53, users 0.89-0.93, allocation 0.48; GAE 0.004; dual step < 0.001; the rest 0.07. Two torch
threads on the loaded machine were several times slower (one run had not finished after
3.6 min against about 35 s with one thread), so keep one thread there.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import report

from edgerl.hcmappo import BatchedHcEnv, HcAgent, HcConfig, method_config
from edgerl.hcmappo.baselines import fill_in_order

PAPER_ITERATIONS = 1000


def _random_actions(env: BatchedHcEnv, rng: np.random.Generator) -> np.ndarray:
    """A random valid action of the current phase (deployment: services in random order)."""
    obs = env.observe()
    if env.phase == "deploy":
        lay = env.layouts["deploy"]
        size = obs["deploy_obs"][..., lay["size_fraction"]]
        rows = size.reshape(-1, size.shape[-1])
        order = np.argsort(rng.random(rows.shape), axis=-1)
        return fill_in_order(order, rows).reshape(size.shape)
    if env.phase == "user":
        smask, zmask = obs["user_server_mask"], obs["user_split_mask"]
        srv = np.argmax(rng.random(smask.shape) * smask, axis=-1)
        spl = np.argmax(rng.random(zmask.shape) * zmask, axis=-1)
        return np.stack([srv, spl], -1)
    return rng.random((env.num_envs, env.n_servers, 2, env.n_users)).astype(np.float32)


def bench_env(num_envs: int, slots: int) -> dict[str, float]:
    """Slots per second of the batched environment under random valid actions."""
    env = BatchedHcEnv(num_envs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acting = 0.0
    done = 0
    t0 = time.perf_counter()
    while done < slots:
        ta = time.perf_counter()
        act = _random_actions(env, rng)
        acting += time.perf_counter() - ta
        step = env.step(act)
        if "user_cost" in step.info:
            done += 1
    wall = time.perf_counter() - t0 - acting
    return {
        "num_envs": num_envs,
        "slots": done,
        "env_s": wall,
        "env_slots_per_s": done * num_envs / wall,
    }


def bench_training(iterations: int, agent_overrides: dict | None = None) -> dict[str, object]:
    """Seconds per HC-MAPPO-L iteration at paper scale (after one warm-up iteration)."""
    agent = HcAgent(HcConfig(), method_config("hc-mappo-l", agent_overrides or {}), seed=0)
    rows: list[dict[str, float]] = []
    agent.learn(1)  # warm-up: first calls, allocator
    agent.learn(iterations, callback=lambda info: rows.append(info) and None)
    keys = ("rollout_s", "update_s", "iteration_s", "iteration_cpu_s")
    out: dict[str, object] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    slots = agent.env_config.episode_slots * agent.config.n_envs
    out["slots_per_iteration"] = slots
    out["train_slots_per_s"] = slots / float(out["iteration_s"])
    out["projected_paper_min"] = float(out["iteration_s"]) * PAPER_ITERATIONS / 60.0
    out["projected_paper_cpu_min"] = float(out["iteration_cpu_s"]) * PAPER_ITERATIONS / 60.0
    out["iterations_timed"] = len(rows)
    return out


SPLIT_PARTS = {
    "act_deploy_s": ("agent", "_act_deploy"),
    "act_user_s": ("agent", "_act_user"),
    "act_alloc_s": ("agent", "_act_alloc"),
    "rollout_critics_s": ("agent", "_rollout_values"),
    "env_step_deploy_s": ("env", "step_deploy"),
    "env_step_user_s": ("env", "step_user"),
    "env_step_alloc_s": ("env", "step_alloc"),
    "env_observe_s": ("env", "observe"),
    "env_state_s": ("env", "state"),
    "update_deploy_s": ("agent", "_update_deploy"),
    "update_users_s": ("agent", "_update_users"),
    "update_alloc_s": ("agent", "_update_alloc"),
    "gae_s": ("agent", "_targets"),
    "lagrange_s": ("lagrange", "update"),
}
"""Parts of an iteration timed by :func:`bench_split` (instance methods wrapped with timers)."""


def bench_split(iterations: int) -> dict[str, float]:
    """CPU seconds per paper-scale iteration spent in each part of :data:`SPLIT_PARTS`.

    CPU time of this process (``time.process_time``), so that other processes on the machine
    inflate it less than wall time. Parts nest: ``gae_s`` and ``lagrange_s`` are inside the
    ``update_*`` parts, ``env_observe_s`` and ``env_state_s`` are partly inside the steps (a
    step returns the next observation); ``other_s`` is the iteration's CPU time outside the
    top-level parts (rollout bookkeeping, metrics).
    """
    agent = HcAgent(HcConfig(), method_config("hc-mappo-l", {}), seed=0)
    agent.learn(1)
    totals = dict.fromkeys(SPLIT_PARTS, 0.0)
    owners = {"agent": agent, "env": agent.env, "lagrange": agent.lagrange}

    def timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += time.process_time() - t0

        return run

    for key, (owner, name) in SPLIT_PARTS.items():
        obj = owners[owner]
        setattr(obj, name, timed(key, getattr(obj, name)))
    rows: list[dict[str, float]] = []
    agent.learn(iterations, callback=lambda info: rows.append(info) and None)
    out = {k: v / len(rows) for k, v in totals.items()}
    cpu = float(np.mean([r["iteration_cpu_s"] for r in rows]))
    top = (
        "act_deploy_s",
        "act_user_s",
        "act_alloc_s",
        "rollout_critics_s",
        "env_step_deploy_s",
        "env_step_user_s",
        "env_step_alloc_s",
        "update_deploy_s",
        "update_users_s",
        "update_alloc_s",
    )
    out["iteration_cpu_s"] = cpu
    out["other_s"] = cpu - sum(out[k] for k in top)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=3, help="timed training iterations")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--env-copies", type=int, default=8, help="B of the environment benchmark")
    ap.add_argument(
        "--split", action="store_true", help="also time the parts of an iteration (CPU seconds)"
    )
    ap.add_argument("--out")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    res: dict[str, object] = {
        "load_average_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    res["env"] = bench_env(args.env_copies, 200)
    res["env_single_copy"] = bench_env(1, 200)
    res["training"] = bench_training(args.iterations)
    if args.split:
        res["split_cpu_s_per_iteration"] = bench_split(args.iterations)
    res["load_average_1min_end"] = os.getloadavg()[0]
    report("hcmappo", res, args.out)


if __name__ == "__main__":
    main()
