"""Separable cross-entropy method (CEM) over flat parameter vectors.

Used by CERL (paper 002, section 4.1, eq. (15)) to evolve a population of Q-networks kept as
flat vectors (the layout of :func:`torch.nn.utils.parameters_to_vector`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from edgerl.utils.errors import InputError

__all__ = ["SeparableCEM", "log_rank_weights"]


def log_rank_weights(n_elite: int) -> Tensor:
    """Log-rank weights of the elites, best first: ``w_i ~ log((n_elite + 1) / i)``, sum 1.

    Args:
        n_elite: Number of elites (>= 1).

    Returns:
        ``(n_elite,)`` float64 weights, decreasing, summing to 1.
    """
    if n_elite < 1:
        raise InputError(f"n_elite must be >= 1, got {n_elite}")
    ranks = torch.arange(1, n_elite + 1, dtype=torch.float64)
    w = math.log(n_elite + 1) - torch.log(ranks)
    return w / w.sum()


class SeparableCEM:
    """Diagonal-Gaussian CEM with antithetic sampling and a decaying variance floor.

    Paper: Pourchot and Sigaud, "CEM-RL: Combining evolutionary and gradient-based methods for
    policy search", ICLR 2019; Li et al., "Value-Evolutionary-Based Reinforcement Learning"
    (VEB-RL), ICML 2024; Tan et al., CERL, JMLIS 2025, eq. (15).
    Code: own implementation (reference code of CEM-RL: github.com/apourchot/CEM-RL).

    The search distribution is ``N(mu, diag(var))``. One generation:

    1. :meth:`sample` draws individuals in antithetic pairs ``mu + s * eps``, ``mu - s * eps``
       (rows ``2 i`` and ``2 i + 1``), ``s = sqrt(var)``.
    2. :meth:`update` ranks them by fitness (higher is better), keeps the top
       ``n_elite = elite_frac * pop_size`` as elites ``z_1..z_n`` (best first) and sets, with the
       log-rank weights ``lambda_i`` (:func:`log_rank_weights`),
       ``mu_new = sum_i lambda_i z_i`` and
       ``var_new = sum_i lambda_i (z_i - mu_old)^2 + damp`` (eq. (15), diagonal part; ``damp``
       is the ``epsilon I`` term), after which ``damp <- tau damp + (1 - tau) damp_limit``.

    Args:
        mean: Initial mean ``mu`` (``(P,)``), e.g. the flat parameters of a fresh network.
        pop_size: Population size ``k`` (paper 002: 50).
        elite_frac: Fraction of the population kept as elites (paper 002: top half).
        sigma_init: Initial variance of every coordinate (``Sigma = sigma_init I``).
        damp_init: Initial variance floor added in the update.
        damp_limit: Value the floor decays to.
        damp_tau: Decay factor of the floor per update.
        antithetic: Draw mirrored pairs (otherwise independent draws).
        seed: Seed of the sampling generator.
    """

    def __init__(
        self,
        mean: Tensor,
        pop_size: int = 50,
        elite_frac: float = 0.5,
        sigma_init: float = 1e-3,
        damp_init: float = 1e-3,
        damp_limit: float = 1e-5,
        damp_tau: float = 0.95,
        antithetic: bool = True,
        seed: int | None = None,
    ) -> None:
        if mean.ndim != 1:
            raise InputError(f"CEM mean must be a flat vector, got shape {tuple(mean.shape)}")
        if int(pop_size) < 2:
            raise InputError(f"pop_size must be >= 2, got {pop_size}")
        if not 0.0 < float(elite_frac) <= 1.0:
            raise InputError(f"elite_frac must lie in (0, 1], got {elite_frac}")
        for name, val in (("sigma_init", sigma_init), ("damp_init", damp_init)):
            if float(val) <= 0.0:
                raise InputError(f"{name} must be > 0, got {val}")
        if float(damp_limit) < 0.0:
            raise InputError(f"damp_limit must be >= 0, got {damp_limit}")
        if not 0.0 <= float(damp_tau) <= 1.0:
            raise InputError(f"damp_tau must lie in [0, 1], got {damp_tau}")
        self.pop_size = int(pop_size)
        self.n_elite = max(1, int(round(float(elite_frac) * self.pop_size)))
        self.mean = mean.detach().to(torch.float32).clone()
        self.var = torch.full_like(self.mean, float(sigma_init))
        self.damp = float(damp_init)
        self.damp_limit = float(damp_limit)
        self.damp_tau = float(damp_tau)
        self.antithetic = bool(antithetic)
        self.weights = log_rank_weights(self.n_elite).to(torch.float32)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()  # fresh entropy for this generator only
        else:
            self.generator.manual_seed(int(seed))
        self.generation = 0

    @property
    def num_params(self) -> int:
        """Length ``P`` of the parameter vectors."""
        return int(self.mean.shape[0])

    def sample(self, n: int | None = None) -> Tensor:
        """Draw ``n`` individuals (default ``pop_size``) as a ``(n, P)`` tensor.

        With antithetic sampling, rows ``2 i`` and ``2 i + 1`` are mirror images around the
        mean (for odd ``n`` the last mirror is dropped).
        """
        n = self.pop_size if n is None else int(n)
        if n < 1:
            return self.mean.new_zeros((0, self.num_params))
        std = self.var.sqrt()
        if not self.antithetic:
            eps = torch.randn(n, self.num_params, generator=self.generator)
            return self.mean + std * eps
        half = (n + 1) // 2
        eps = torch.randn(half, self.num_params, generator=self.generator)
        pairs = torch.stack([self.mean + std * eps, self.mean - std * eps], dim=1)
        return pairs.reshape(2 * half, self.num_params)[:n]

    def update(self, population: Tensor, fitness: Tensor) -> Tensor:
        """Move the distribution toward the elites (eq. (15)); returns the elite indices.

        Args:
            population: ``(n, P)`` individuals, ``n >= n_elite``.
            fitness: ``(n,)`` fitness, higher is better (NaN counts as the worst).

        Returns:
            ``(n_elite,)`` long indices into ``population``, best first.
        """
        if population.ndim != 2 or population.shape[1] != self.num_params:
            raise InputError(
                f"population must be (n, {self.num_params}), got {tuple(population.shape)}"
            )
        fit = torch.as_tensor(fitness, dtype=torch.float64).reshape(-1)
        if fit.shape[0] != population.shape[0]:
            raise InputError(
                f"fitness has {fit.shape[0]} entries for {population.shape[0]} individuals"
            )
        if population.shape[0] < self.n_elite:
            raise InputError(f"need at least {self.n_elite} individuals, got {population.shape[0]}")
        fit = torch.nan_to_num(fit, nan=-math.inf)
        order = torch.argsort(fit, descending=True, stable=True)
        elite_idx = order[: self.n_elite]
        z = population[elite_idx].to(torch.float32)
        w = self.weights.unsqueeze(1)
        old_mean = self.mean
        self.mean = (w * z).sum(0)  # eq. (15), mean
        self.var = (w * (z - old_mean) ** 2).sum(0) + self.damp  # eq. (15), diagonal + eps I
        self.damp = self.damp_tau * self.damp + (1.0 - self.damp_tau) * self.damp_limit
        self.generation += 1
        return elite_idx

    def state_dict(self) -> dict[str, Any]:
        """Plain state (tensors and numbers) for ``torch.save`` / ``weights_only`` loading."""
        return {
            "mean": self.mean.clone(),
            "var": self.var.clone(),
            "damp": self.damp,
            "generation": self.generation,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        mean = torch.as_tensor(state["mean"], dtype=torch.float32)
        if mean.shape != self.mean.shape:
            raise InputError(
                f"CEM state has {mean.shape[0]} parameters, expected {self.num_params}"
            )
        self.mean = mean.clone()
        self.var = torch.as_tensor(state["var"], dtype=torch.float32).clone()
        self.damp = float(state["damp"])
        self.generation = int(state["generation"])
        self.generator.set_state(state["generator"])
