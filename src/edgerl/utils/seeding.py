"""The one seeding path of the project.

Top-level runners call :func:`seed_everything` once; library code takes an ``rng`` or
``seed`` argument instead of touching global state; workers and vectorised
sub-environments get ``seed + i``.
"""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic_torch: bool = False) -> np.random.Generator:
    """Seed Python, NumPy and torch (if importable) and return a NumPy ``Generator``.

    Args:
        seed: non-negative integer seed.
        deterministic_torch: also ask torch for deterministic algorithms.

    Returns:
        ``numpy.random.default_rng(seed)``, the generator library code should receive.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        from edgerl.utils.errors import InputError

        raise InputError(f"seed: {seed!r} is not a non-negative integer")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    else:
        torch.manual_seed(seed)
        if deterministic_torch:
            torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Return a ``Generator`` from a seed, an existing generator (returned as is) or ``None``."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def worker_seeds(seed: int, n: int) -> list[int]:
    """Seeds for ``n`` workers or sub-environments: ``seed + i``."""
    return [int(seed) + i for i in range(n)]
