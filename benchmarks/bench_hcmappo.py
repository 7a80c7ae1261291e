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

Run: ``python benchmarks/bench_hcmappo.py [--iterations 3] [--threads 1] [--out results.json]``
"""

from __future__ import annotations

import argparse
import os
import time

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=3, help="timed training iterations")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--env-copies", type=int, default=8, help="B of the environment benchmark")
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
    res["load_average_1min_end"] = os.getloadavg()[0]
    report("hcmappo", res, args.out)


if __name__ == "__main__":
    main()
