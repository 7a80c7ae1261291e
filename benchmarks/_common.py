"""Shared helpers of the benchmark scripts: timing and JSON output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def time_ms(fn: Callable[[], object], repeat: int = 20, warmup: int = 2) -> dict[str, float]:
    """Median, mean and p95 wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    a = np.asarray(t)
    return {"median_ms": float(np.median(a)), "mean_ms": float(a.mean()), "p95_ms": float(np.percentile(a, 95))}


def report(name: str, result: dict, out: str | None = None) -> None:
    """Print a result as JSON and optionally save it."""
    text = json.dumps({"benchmark": name, **result}, indent=2)
    print(text)
    if out:
        from edgerl.utils.io import atomic_write_text

        atomic_write_text(out, text + "\n")
