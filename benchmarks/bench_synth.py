"""Synthetic scene generator speed: time per 4K still and per video frame (1 thread).

Run: ``python benchmarks/bench_synth.py [--out results.json]``
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from _common import report, time_ms

from edgerl.vision.synth import SynthConfig, render_scene, render_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    res = {}
    for preset in ("easy", "default", "hard"):
        cfg = SynthConfig.preset(preset)
        seeds = iter(range(10_000))
        res[f"still_{preset}"] = time_ms(lambda: render_scene(cfg, np.random.default_rng(next(seeds))), args.repeat, 1)
        vid = render_video(cfg, 10_000, np.random.default_rng(1))
        res[f"video_frame_{preset}"] = time_ms(lambda: next(vid), args.repeat * 2, 2)
    res["frame_px"] = [3840, 2160]
    report("synth", res, args.out)


if __name__ == "__main__":
    main()
