"""Where one CERL generation (training epoch) spends its time, at the paper's N.

Usage: ``python benchmarks/bench_cerl.py [--n 50] [--generations 3] [--profile]``.

Prints seconds per generation split into the population fitness (eq. (14), whole population),
the elite / RL interaction with the environment copies (greedy decoding included) and the
double-DQN updates, with the machine load; ``--profile`` adds the top cProfile entries.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import torch

from edgerl.cerl.agent import CerlAgent
from edgerl.cerl.env import CerlConfig
from edgerl.cerl.experiment import DEFAULT_AGENT
from edgerl.utils.config import config_from_dict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=50, help="edge devices N")
    p.add_argument("--generations", type=int, default=3, help="generations timed")
    p.add_argument("--profile", action="store_true", help="print the top cProfile entries")
    args = p.parse_args()
    torch.set_num_threads(1)
    env = config_from_dict(CerlConfig, {"n_devices": args.n}, "env")
    agent = CerlAgent(env, dict(DEFAULT_AGENT), seed=0)
    agent._budget = 10**6
    agent._warmup()
    agent.run_generation()  # first generation: population drawn, caches warm
    parts = {"fitness_s": 0.0, "act_s": 0.0, "train_s": 0.0, "generation_s": 0.0}
    orig_train = agent._train

    def timed(name, fn):
        def run(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            parts[name] += time.perf_counter() - t
            return out

        return run

    agent._train = timed("train_s", orig_train)
    prof = cProfile.Profile() if args.profile else None
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
    print(f"N = {args.n}, load {os.getloadavg()[0]:.2f}, per generation:")
    print(f"  total {parts['generation_s'] / g:.2f} s  fitness {parts['fitness_s'] / g:.2f} s  "
          f"DQN updates {parts['train_s'] / g:.2f} s  interaction + injection {rest / g:.2f} s")
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
