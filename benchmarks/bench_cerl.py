"""Where one CERL generation (training epoch) spends its time, at the paper's N.

Usage: ``nice -n 5 python benchmarks/bench_cerl.py [--n 50] [--generations 3] [--threads 1]
[--padded] [--profile]``.

Prints seconds per generation split into the population fitness (eq. (14), whole population,
CEM draw and update included), the double-DQN updates and the rest (elite / RL interaction
with the environment copies, greedy decoding included, and the RL injection), then the time of
one greedy decision (``act`` on one N-device state), with the machine load. ``--padded`` runs
the plain paths for comparison (``graph_groups = 0``: every head on the padded minibatch, and
``fitness_chunk = 10``); ``--profile`` adds the top cProfile entries.

Measured (paper preset with DEFAULT_AGENT, N = 50, J = 64, population 50, 8 vector steps of
5 elite + 3 RL copies and 8 gradient updates per generation; 2 CPU cores shared with one other
training process, load average ~1.0; 3 generations after a warm-up one):

* ``--padded``: 24.3 s per generation (fitness 20.0 s, DQN updates 4.1 s, interaction 0.2 s);
  the same code before the fast paths took 28.1 s at load 2.4.
* default: 7.2 s (fitness 4.4 s, DQN updates 2.6 s, interaction 0.2 s); 4.8 s with
  ``--threads 2`` (load 1.1).
* one decision: 2.7-3.4 ms median (dense single-state path, unchanged).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import numpy as np
import torch

from edgerl.cerl.agent import CerlAgent
from edgerl.cerl.env import CerlConfig, CerlEnv
from edgerl.cerl.experiment import DEFAULT_AGENT
from edgerl.utils.config import config_from_dict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=50, help="edge devices N")
    p.add_argument("--generations", type=int, default=3, help="generations timed")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--padded", action="store_true", help="plain paths (graph_groups = 0)")
    p.add_argument("--profile", action="store_true", help="print the top cProfile entries")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = config_from_dict(CerlConfig, {"n_devices": args.n}, "env")
    agent_cfg = dict(DEFAULT_AGENT)
    if args.padded:
        agent_cfg.update(graph_groups=0, fitness_chunk=10)
    agent = CerlAgent(env, agent_cfg, seed=0)
    agent._budget = 10**6
    agent._warmup()
    agent.run_generation()  # first generation: population drawn, caches warm
    parts = {"fitness_s": 0.0, "train_s": 0.0, "generation_s": 0.0}
    orig_train = agent._train

    def timed_train(*a, **k):
        t = time.perf_counter()
        out = orig_train(*a, **k)
        parts["train_s"] += time.perf_counter() - t
        return out

    agent._train = timed_train
    prof = cProfile.Profile() if args.profile else None
    load0 = os.getloadavg()[0]
    if prof is not None:
        prof.enable()
    for _ in range(args.generations):
        stats = agent.run_generation()
        parts["fitness_s"] += stats["fitness_s"]
        parts["generation_s"] += stats["generation_s"]
    if prof is not None:
        prof.disable()
    g = args.generations
    rest = parts["generation_s"] - parts["fitness_s"] - parts["train_s"]
    single = CerlEnv(config=env)
    obs, _ = single.reset(seed=1)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        action = agent.act(obs)
        times.append(time.perf_counter() - t)
        obs, _, term, trunc, _ = single.step(action)
        if term or trunc:
            obs, _ = single.reset()
    mode = "padded" if args.padded else "fast"
    print(f"N = {args.n}, {mode}, {args.threads} thread(s), load {load0:.2f} -> "
          f"{os.getloadavg()[0]:.2f}, per generation:")
    print(f"  total {parts['generation_s'] / g:.2f} s  fitness {parts['fitness_s'] / g:.2f} s  "
          f"DQN updates {parts['train_s'] / g:.2f} s  interaction + injection {rest / g:.2f} s")
    print(f"  one decision: median {1e3 * float(np.median(times)):.1f} ms, "
          f"max {1e3 * max(times):.1f} ms")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
