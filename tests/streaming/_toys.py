"""Toy streams shared by the streaming tests: two configurations of one model, ``("toy", 200)``
and ``("toy", 100)``, whose cached candidates are given box by box."""

from __future__ import annotations

import numpy as np

from edgerl.streaming.data import StreamVideo
from edgerl.vision.metrics import GroundTruth


def toy_stream(seed: int, split: str, gts: list[GroundTruth], at_200: list[np.ndarray], at_100: list[np.ndarray]) -> StreamVideo:
    """A 200x200 video whose frames hold four candidates per configuration (scores 0.9 .. 0.6),
    20 ms inference per frame and a negligible NMS time."""
    n = len(gts)
    scores = np.tile(np.array([0.9, 0.8, 0.7, 0.6], np.float32), n)
    off = np.arange(0, 4 * n + 1, 4, dtype=np.int64)
    cands = {("toy", 200): (np.concatenate(at_200), scores, off), ("toy", 100): (np.concatenate(at_100), scores, off)}
    infer = {k: np.full(n, 0.02) for k in cands}
    nms = {(m, s, 10): np.array([1e-4]) for m, s in cands}
    return StreamVideo(seed, split, (200, 200), 30.0, gts, cands, infer, nms, 0.6)


def drifting_people(seed: int, n: int, speed_px: float, offset_px: float) -> StreamVideo:
    """Four 40x40 people drifting right by ``speed_px`` per frame: scale 200 finds them exactly,
    scale 100 finds every box shifted by ``offset_px`` in x and y."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(10, 100, (4, 2))
    gts, good, off = [], [], []
    for i in range(n):
        xy = start + [speed_px * i, 0.0]
        b = np.concatenate([xy, xy + 40], axis=1).astype(np.float32)
        gts.append(GroundTruth(b, np.zeros(4, np.int64), 200, 200))
        good.append(b)
        off.append(b + offset_px)
    return toy_stream(seed, "train", gts, good, off)
