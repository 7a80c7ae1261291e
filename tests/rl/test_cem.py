"""Separable CEM update maths (paper 002, eq. (15); CEM-RL / VEB-RL rules)."""

from __future__ import annotations

import math

import pytest
import torch

from edgerl.rl.cem import SeparableCEM, log_rank_weights
from edgerl.utils.errors import InputError


def test_log_rank_weights_by_hand() -> None:
    w = log_rank_weights(2)
    # log(3/1) and log(3/2), normalised.
    a, b = math.log(3.0), math.log(1.5)
    torch.testing.assert_close(w, torch.tensor([a / (a + b), b / (a + b)], dtype=torch.float64))
    assert torch.all(w[:-1] > w[1:])


def test_update_mean_and_variance_by_hand() -> None:
    cem = SeparableCEM(
        torch.zeros(2),
        pop_size=4,
        elite_frac=0.5,
        damp_init=0.01,
        damp_tau=0.5,
        damp_limit=0.0,
        seed=0,
    )
    pop = torch.tensor([[1.0, 1.0], [4.0, -2.0], [-9.0, 9.0], [2.0, 0.0]])
    fit = torch.tensor([0.5, 3.0, -7.0, 1.0])  # elites: row 1 (best), then row 3
    elites = cem.update(pop, fit)
    assert elites.tolist() == [1, 3]
    a, b = math.log(3.0), math.log(1.5)
    l1, l2 = a / (a + b), b / (a + b)
    mean = [l1 * 4.0 + l2 * 2.0, l1 * -2.0 + l2 * 0.0]
    # Variance around the OLD mean (zeros) plus the damping of this generation.
    var = [l1 * 16.0 + l2 * 4.0 + 0.01, l1 * 4.0 + l2 * 0.0 + 0.01]
    torch.testing.assert_close(cem.mean, torch.tensor(mean))
    torch.testing.assert_close(cem.var, torch.tensor(var))
    assert cem.damp == pytest.approx(0.005)  # tau * damp + (1 - tau) * limit


def test_variance_uses_old_mean_not_new() -> None:
    cem = SeparableCEM(torch.tensor([10.0]), pop_size=2, elite_frac=0.5, damp_init=1e-9, seed=0)
    cem.update(torch.tensor([[12.0], [0.0]]), torch.tensor([1.0, 0.0]))
    # One elite at 12: the new mean is 12, the variance (12 - 10)^2 (not 0 around the new mean).
    torch.testing.assert_close(cem.mean, torch.tensor([12.0]))
    torch.testing.assert_close(cem.var, torch.tensor([4.0]), atol=1e-6, rtol=0)


def test_damping_decays_to_limit() -> None:
    cem = SeparableCEM(
        torch.zeros(3), pop_size=4, damp_init=1e-2, damp_limit=1e-4, damp_tau=0.9, seed=0
    )
    for _ in range(200):
        pop = cem.sample()
        cem.update(pop, torch.arange(4.0))
    assert cem.damp == pytest.approx(1e-4, rel=1e-3)
    assert bool((cem.var >= 1e-4 * 0.999).all())  # the floor keeps the search alive


def test_antithetic_pairs_sum_to_twice_the_mean() -> None:
    mean = torch.tensor([1.0, -2.0, 0.5])
    cem = SeparableCEM(mean, pop_size=6, sigma_init=0.3, seed=1)
    pop = cem.sample()
    assert pop.shape == (6, 3)
    torch.testing.assert_close(pop[0::2] + pop[1::2], (2 * mean).expand(3, 3))
    assert not torch.allclose(pop[0], pop[2])  # different pairs differ
    odd = cem.sample(5)
    assert odd.shape == (5, 3)
    torch.testing.assert_close(odd[0] + odd[1], 2 * mean)


def test_sampling_spread_matches_variance() -> None:
    cem = SeparableCEM(torch.zeros(4000), pop_size=2, sigma_init=0.04, seed=2)
    pop = cem.sample(2)
    assert float(pop[0].std()) == pytest.approx(0.2, rel=0.05)


def test_nan_fitness_is_worst_and_bad_inputs_refused() -> None:
    cem = SeparableCEM(torch.zeros(1), pop_size=4, seed=0)
    pop = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    elites = cem.update(pop, torch.tensor([float("nan"), 0.0, 1.0, -1.0]))
    assert elites.tolist() == [2, 1]
    with pytest.raises(InputError, match="fitness"):
        cem.update(pop, torch.zeros(3))
    with pytest.raises(InputError, match="pop_size"):
        SeparableCEM(torch.zeros(1), pop_size=1)


def test_state_round_trip_reproduces_samples() -> None:
    cem = SeparableCEM(torch.zeros(5), pop_size=4, seed=3)
    cem.update(cem.sample(), torch.arange(4.0))
    state = cem.state_dict()
    expected = cem.sample()
    other = SeparableCEM(torch.zeros(5), pop_size=4, seed=99)
    other.load_state_dict(state)
    torch.testing.assert_close(other.sample(), expected)
