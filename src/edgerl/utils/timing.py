"""Small timing helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timer(store: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time (ms) of the ``with`` block to ``store[key]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + (time.perf_counter() - t0) * 1e3
