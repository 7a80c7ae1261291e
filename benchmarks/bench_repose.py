"""RE-POSE decision-path benchmarks.

* RL-DCA + clustering decision time per frame with 300 detections (target <= 10 ms);
* MCKP solve time for 16 blocks x 5 models (target <= 1 ms);
* frame throughput with 1 and 2 local workers on the built-in detectors (target >= 1.5x).

Run: ``python benchmarks/bench_repose.py [--out results.json]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import report, time_ms

from edgerl.repose.env import RLDCAConfig, greedy_refine, synthetic_frames
from edgerl.repose.mckp import solve_mckp
from edgerl.repose.train import load_policy


def decision_time() -> dict:
    policy = load_policy()
    cfg = RLDCAConfig()
    frames = [f for f in synthetic_frames(40, seed=5) if len(f[0]) > 0]
    rng = np.random.default_rng(0)
    out = {}
    for n in (100, 300):
        sets = []
        for boxes, wh in frames[:10]:
            idx = rng.choice(len(boxes), size=n, replace=len(boxes) < n)
            jitter = rng.normal(0, 3, (n, 4)).astype(np.float32)
            sets.append((np.clip(boxes[idx] + np.abs(jitter) * [[-1, -1, 1, 1]], 0, None), wh))
        it = iter(sets * 100)
        out[f"dets_{n}"] = time_ms(lambda: greedy_refine(policy, *next(it), cfg), repeat=30, warmup=3)
    return out


def mckp_time() -> dict:
    """16 blocks x 5 models, budget 1.8x the cheapest plan (so the DP runs), pipeline grid."""
    from edgerl.repose.pipeline import ReposeConfig

    rng = np.random.default_rng(0)
    res = ReposeConfig().plan_resolution_ms
    cases = []
    for _ in range(50):
        v = rng.random((16, 5))
        lat = np.broadcast_to(np.sort(rng.uniform(5, 60, 5)), v.shape)
        cases.append((v, lat, 1.8 * float(lat[:, 0].sum())))
    it = iter(cases * 10)
    out = time_ms(lambda: solve_mckp(*next(it), resolution_ms=res), repeat=200, warmup=5)
    out["resolution_ms"] = res
    return out


def throughput(frames: int = 4) -> dict:
    from edgerl.repose.pipeline import ReposeConfig, Uniform
    from edgerl.runtime import LocalExecutor
    from edgerl.vision.synth import SynthConfig, render_scene

    imgs = [render_scene(SynthConfig(), np.random.default_rng(800_000 + i)).image for i in range(frames)]
    res = {}
    for e in (1, 2):
        cfg = ReposeConfig(n_workers=e, uniform_option="person_s@640")
        with LocalExecutor(e) as ex:
            m = Uniform(ex, cfg)
            m(imgs[0])
            t0 = time.perf_counter()
            for img in imgs:
                m(img)
            res[f"workers_{e}_fps"] = frames / (time.perf_counter() - t0)
    res["speedup_2_vs_1"] = res["workers_2_fps"] / res["workers_1_fps"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    report("repose", {"decision": decision_time(), "mckp_16x5": mckp_time(), "throughput": throughput()}, args.out)


if __name__ == "__main__":
    main()
