"""One seeding path: the same seed gives the same draws in Python, NumPy and torch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from edgerl.utils.errors import InputError
from edgerl.utils.seeding import make_rng, seed_everything, worker_seeds


def _draws(seed: int) -> tuple[float, float, float, float]:
    rng = seed_everything(seed)
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(rng.random())


def test_same_seed_same_draws() -> None:
    assert _draws(3) == _draws(3)
    assert _draws(3) != _draws(4)


def test_generator_matches_default_rng() -> None:
    assert seed_everything(11).random() == np.random.default_rng(11).random()


def test_make_rng_passthrough() -> None:
    g = np.random.default_rng(1)
    assert make_rng(g) is g
    assert make_rng(5).random() == np.random.default_rng(5).random()


def test_worker_seeds() -> None:
    assert worker_seeds(10, 3) == [10, 11, 12]


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_bad_seed(bad) -> None:
    with pytest.raises(InputError, match="seed"):
        seed_everything(bad)
