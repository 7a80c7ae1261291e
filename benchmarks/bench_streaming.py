"""Streaming evaluation speed: sAP of a 900-frame stream, and the virtual-clock simulator.

The stream: 900 frames at 30 FPS, 20 objects per frame in 3 classes moving at constant velocity
(up to 3 px per frame, not stopped at the border), 50 detections per
frame (the 20 objects with box noise plus 30 false positives), detector runtime samples around
1.6 frames, shrinking-tail scheduling, with and without Kalman forecasting, and with runtimes
drawn as common random numbers (``KeyedDraws``: one seeded generator per run). Also: one minibatch
update of the streaming bandit with one torch thread and with torch's default.

Run: ``python benchmarks/bench_streaming.py [--out results.json] [--reference]``
(``--reference`` also times the pycocotools backend once, about 20 s on one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import report, time_ms

from edgerl.streaming.forecast import KalmanForecaster
from edgerl.streaming.sap import streaming_ap
from edgerl.streaming.simulator import (
    KeyedDraws,
    LazyDetectionCache,
    RuntimeProfile,
    ShrinkingTail,
    fixed_policy,
    simulate,
)
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import GroundTruth

N_FRAMES, FPS, N_OBJ, N_DET, W, H = 900, 30.0, 20, 50, 1920, 1080


def make_stream(seed: int) -> tuple[list[GroundTruth], LazyDetectionCache]:
    """Ground truth of moving boxes and a cache of noisy per-frame detections."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform([0, 0], [W - 200, H - 200], (N_OBJ, 2))
    vel = rng.uniform(-3, 3, (N_OBJ, 2))
    wh = rng.uniform(16, 200, (N_OBJ, 2))
    cls = rng.integers(0, 3, N_OBJ)

    def boxes(i: int) -> np.ndarray:
        xy = p0 + vel * i  # constant velocity; boxes may drift past the border
        return np.concatenate([xy, xy + wh], axis=1)

    gts = [GroundTruth(boxes(i), cls, W, H) for i in range(N_FRAMES)]
    det_rng = np.random.default_rng(seed + 1)

    def detect(config: str, i: int) -> Detections:
        b = boxes(i) + det_rng.normal(0, 3, (N_OBJ, 4))
        n_fp = N_DET - N_OBJ
        fxy = det_rng.uniform([0, 0], [W - 100, H - 100], (n_fp, 2))
        fp = np.concatenate([fxy, fxy + det_rng.uniform(10, 100, (n_fp, 2))], axis=1)
        allb = np.concatenate([b, fp])
        allb = np.concatenate([allb[:, :2], np.maximum(allb[:, 2:], allb[:, :2] + 1)], axis=1)
        scores = np.concatenate([det_rng.uniform(0.5, 1, N_OBJ), det_rng.uniform(0, 0.6, n_fp)])
        classes = np.concatenate([cls, det_rng.integers(0, 3, n_fp)])
        return Detections(allb, scores, classes)

    return gts, LazyDetectionCache(detect)


def bandit_updates(repeat: int) -> dict[str, dict[str, float]]:
    """Time of one minibatch update of the paper's bandit (4 x 256 MLP, batch 32, 15-dim context,
    branches 1/5/4/1) with one torch thread and with torch's default thread count."""
    import torch

    from edgerl.streaming.bandit import ContextualBandit
    from edgerl.streaming.train import torch_threads

    rng = np.random.default_rng(0)
    bandit = ContextualBandit(15, (1, 5, 4, 1), seed=0)
    for _ in range(256):
        bandit.store(rng.normal(size=15), (0, int(rng.integers(5)), int(rng.integers(4)), 0), float(rng.normal()))
    out = {}
    for label, n in (("threads_1", 1), (f"threads_{torch.get_num_threads()}", 0)):
        with torch_threads(n):
            out[label] = time_ms(bandit.learn_step, repeat * 10, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference", action="store_true", help="also time pycocotools once")
    args = ap.parse_args()
    gts, cache = make_stream(0)
    prof = RuntimeProfile({"det": np.random.default_rng(2).normal(0.054, 0.004, 200).clip(0.03)})
    res: dict[str, object] = {"n_frames": N_FRAMES, "objects_per_frame": N_OBJ}
    sims = {}
    for name, fc in (("plain", None), ("forecast", KalmanForecaster())):
        sims[name] = simulate(
            N_FRAMES, FPS, fixed_policy("det"), cache, prof, ShrinkingTail(),
            np.random.default_rng(0), forecaster=fc,
        )  # fmt: skip
        res[f"simulate_{name}"] = time_ms(
            lambda fc=fc: simulate(
                N_FRAMES, FPS, fixed_policy("det"), cache, prof, ShrinkingTail(),
                np.random.default_rng(0), forecaster=fc,
            ),
            args.repeat, 1,
        )  # fmt: skip
    res["simulate_plain_keyed_draws"] = time_ms(
        lambda: simulate(N_FRAMES, FPS, fixed_policy("det"), cache, prof, ShrinkingTail(), KeyedDraws((0,))),
        args.repeat, 1,
    )  # fmt: skip
    # One output per frame (forecasting) is the heaviest case for the evaluation.
    outs = sims["forecast"].outputs
    res["n_outputs"] = len(outs)
    res["dets_per_frame"] = N_DET
    res["sap_numpy"] = time_ms(lambda: streaming_ap(gts, outs, fps=FPS), args.repeat, 1)
    for name, sim in sims.items():
        r = streaming_ap(gts, sim.outputs, fps=FPS)
        res[f"sap_value_{name}"] = round(r["sap"], 4)
        res[f"mean_frame_lag_{name}"] = round(r["mean_frame_lag"], 3)
    res["bandit_update"] = bandit_updates(args.repeat)
    if args.reference:
        t0 = time.perf_counter()
        ref = streaming_ap(gts, outs, fps=FPS, backend="pycocotools")
        res["sap_pycocotools_s"] = round(time.perf_counter() - t0, 2)
        res["backends_agree"] = abs(ref["sap"] - streaming_ap(gts, outs, fps=FPS)["sap"]) < 1e-12
    report("streaming", res, args.out)
    print(f"sAP of {N_FRAMES} frames: {res['sap_numpy']['median_ms'] / 1e3:.2f} s (median)")


if __name__ == "__main__":
    main()
