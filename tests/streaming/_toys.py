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
