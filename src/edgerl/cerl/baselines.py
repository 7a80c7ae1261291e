"""Baselines of CERL (paper 002, section 5.2.2): all local (LC), all on the MEC server (EC), random.

Every baseline offers the agent interface of the project (``learn``, ``act``, ``save``,
``load``); ``learn`` does nothing. They decide from the observation alone, through
:class:`~edgerl.cerl.env.ActionDecoder`, so their actions always lie within the masks.

* :class:`LocalComputing` (LC): every task runs all its layers on its source device in one
  block, with the largest share level that is free (the device's full capacity when it is
  idle: "local computing at the maximum CPU frequency", the usual reading of LC in MEC
  papers). When that block cannot meet the deadline (or the device is busy) the task waits,
  and fails if that lasts until its deadline.
* :class:`EdgeComputing` (EC): every task sends its input to the MEC server and runs all layers
  there in one block, with the share level closest to an equal split of the server among the
  devices, ``100 / N`` % (ties go to the larger level), on the lowest free subcarrier. When that
  is not possible in the slot, the task waits.
* :class:`RandomPolicy`: each sub-action uniform over its conditional mask (task slot by task
  slot, branch by branch), i.e. a uniform pick among valid values at each step of the decoding,
  not a uniform draw over the set of joint actions.

:func:`evaluate_policy` runs any policy for a number of episodes and returns the metrics used
by the experiments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgerl.cerl.env import (
    N_LAYERS,
    ActionDecoder,
    BatchedCerlEnv,
    CerlConfig,
    CerlEnv,
    TaskView,
    make_config,
)
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_torch_save

__all__ = [
    "BASELINES",
    "CerlBaseline",
    "EdgeComputing",
    "LocalComputing",
    "RandomPolicy",
    "evaluate_policy",
    "make_baseline",
]

EnvOrConfig = CerlEnv | BatchedCerlEnv | CerlConfig | Mapping[str, Any] | None


def _config_of(env_or_config: Any) -> CerlConfig:
    if isinstance(env_or_config, (CerlEnv, BatchedCerlEnv)):
        return env_or_config.config
    unwrapped = getattr(env_or_config, "unwrapped", None)
    if isinstance(unwrapped, CerlEnv):
        return unwrapped.config
    return make_config(env_or_config)


def _first_true(mask: np.ndarray) -> np.ndarray:
    return mask.argmax(-1)


def _last_true(mask: np.ndarray) -> np.ndarray:
    n = mask.shape[-1]
    return n - 1 - mask[:, ::-1].argmax(-1)


def _prefer(mask: np.ndarray, preferred: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``preferred`` where the mask allows it, otherwise ``fallback``."""
    ok = mask[np.arange(mask.shape[0]), preferred]
    return np.where(ok, preferred, fallback)


class CerlBaseline:
    """Common part of the CERL baselines: config binding, no-op learning, checkpoints.

    Args:
        env_or_config: A :class:`CerlEnv` / :class:`BatchedCerlEnv` (or a Gymnasium wrapper of
            one), a :class:`CerlConfig`, a mapping of its fields, or None for the defaults.
        seed: Seed of the policy's own generator (used by :class:`RandomPolicy`).
    """

    name: ClassVar[str] = "baseline"

    def __init__(self, env_or_config: EnvOrConfig = None, seed: int | None = None) -> None:
        self.config = _config_of(env_or_config)
        self.decoder = ActionDecoder(self.config)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def learn(self, *args: Any, **kwargs: Any) -> CerlBaseline:
        """Nothing to learn; returns ``self`` (same call shape as the learning agents)."""
        return self

    def _choose(self, m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = True) -> np.ndarray:
        """Action for one observation ``(M, 4)`` or a batch ``(B, M, 4)``.

        Args:
            obs: Observation of :class:`CerlEnv` (or batched, of :class:`BatchedCerlEnv`).
            deterministic: Accepted for the common interface; LC and EC are deterministic,
                :class:`RandomPolicy` always samples.
        """
        return self.decoder.decode(obs, self._choose)

    __call__ = act

    def _layout(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "n_devices": cfg.n_devices,
            "max_tasks": cfg.max_tasks,
            "n_subcarriers": cfg.n_subcarriers,
            "share_levels_pct": list(cfg.share_levels_pct),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``{"kind", "layout", "config", "seed"}`` atomically with ``torch.save``."""

        state = {
            "kind": self.name,
            "layout": self._layout(),
            "config": self.config.model_dump(mode="json"),
            "seed": -1 if self.seed is None else int(self.seed),
        }
        return atomic_torch_save(path, state)

    @classmethod
    def load(cls, path: str | os.PathLike[str], env_or_config: EnvOrConfig = None) -> CerlBaseline:
        """Load a checkpoint written by :meth:`save` (``weights_only=True``).

        Args:
            path: The checkpoint.
            env_or_config: If given, the checkpoint's action layout (N, M, S, share levels)
                must match it.

        Raises:
            InputError: If the file is missing or foreign, of another baseline, or its layout
                differs from ``env_or_config``.
        """
        import torch

        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: checkpoint not found")
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(
                f"{p}: not a baseline checkpoint ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(state, dict) or "kind" not in state:
            raise InputError(f"{p}: not a CERL baseline checkpoint (no 'kind' entry)")
        if state["kind"] != cls.name:
            raise InputError(f"{p}: holds baseline '{state['kind']}', not '{cls.name}'")
        obj = cls(state["config"], seed=None if state["seed"] < 0 else state["seed"])
        if env_or_config is not None:
            other = cls(env_or_config)
            mine, theirs = obj._layout(), other._layout()
            diff = [k for k in mine if mine[k] != theirs[k]]
            if diff:
                details = ", ".join(f"{k}: checkpoint {mine[k]} vs env {theirs[k]}" for k in diff)
                raise InputError(f"{p}: action layout differs from the environment ({details})")
            obj = cls(env_or_config, seed=obj.seed)
        return obj


class LocalComputing(CerlBaseline):
    """LC: all layers on the source device at the largest free share (see module docstring)."""

    name: ClassVar[str] = "lc"

    def _choose(self, m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
        wait_block = view.progress
        if br == 0:
            return _prefer(mask, view.node, _first_true(mask))
        if br == 1:
            return _prefer(mask, np.full_like(wait_block, N_LAYERS), _first_true(mask))
        if br == 2:
            return _last_true(mask)
        return _first_true(mask)


class EdgeComputing(CerlBaseline):
    """EC: all layers on the MEC server at about ``100 / N`` % of it (see module docstring)."""

    name: ClassVar[str] = "ec"

    def __init__(self, env_or_config: EnvOrConfig = None, seed: int | None = None) -> None:
        super().__init__(env_or_config, seed)
        self.target_pct = 100.0 / self.config.n_devices
        self._node = np.zeros(0, dtype=np.int64)

    def _choose(self, m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
        if br == 0:
            mec_ok = view.allowed[:, 0, N_LAYERS]
            d = np.where(mec_ok, 0, view.node)
            self._node = _prefer(mask, d, _first_true(mask))
            return self._node
        if br == 1:
            on_mec = self._node == 0
            want = np.where(on_mec, N_LAYERS, view.progress)
            return _prefer(mask, want, _first_true(mask))
        if br == 2:
            levels = self.decoder.levels_pct.astype(np.float64)
            # Closest valid level to the equal split; ties to the larger level.
            dist = np.abs(levels - self.target_pct) - 1e-9 * levels
            score = np.where(mask, -dist[None, :], -np.inf)
            return score.argmax(-1)
        return _first_true(mask)


class RandomPolicy(CerlBaseline):
    """Random: each sub-action uniform over its conditional mask."""

    name: ClassVar[str] = "random"

    def _choose(self, m: int, br: int, mask: np.ndarray, view: TaskView) -> np.ndarray:
        keys = self.rng.random(mask.shape)
        return np.where(mask, keys, -1.0).argmax(-1)

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = True) -> np.ndarray:
        """A random valid action (``deterministic`` is ignored: this policy is random)."""
        return self.decoder.decode(obs, self._choose)


BASELINES: dict[str, type[CerlBaseline]] = {
    "lc": LocalComputing,
    "ec": EdgeComputing,
    "random": RandomPolicy,
}
"""The baselines by name."""


def make_baseline(
    name: str, env_or_config: EnvOrConfig = None, seed: int | None = None
) -> CerlBaseline:
    """Build a baseline by name (``lc``, ``ec``, ``random``).

    Raises:
        InputError: On an unknown name (the message lists the valid ones).
    """
    key = str(name).lower()
    if key not in BASELINES:
        raise InputError(f"unknown CERL baseline {name!r}; valid: {', '.join(BASELINES)}")
    return BASELINES[key](env_or_config, seed=seed)


Policy = CerlBaseline | Callable[[Mapping[str, np.ndarray]], np.ndarray] | Any


def _act(policy: Policy, obs: Mapping[str, np.ndarray]) -> np.ndarray:
    if hasattr(policy, "act"):
        return policy.act(obs, deterministic=True)
    if callable(policy):
        return policy(obs)
    raise InputError(f"policy must offer act(obs) or be callable, got {type(policy).__name__}")


def evaluate_policy(
    env_or_cfg: Any,
    policy: Policy,
    episodes: int = 5,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Run ``policy`` for ``episodes`` episodes (seeds ``seed, seed + 1, ...``) and summarise.

    Args:
        env_or_cfg: A :class:`CerlEnv` (or a wrapper of one, e.g. from ``gym.make``), a
            :class:`CerlConfig` or a mapping of its fields.
        policy: An object with ``act(obs, deterministic=True)`` or a callable ``obs -> action``.
        episodes: Number of episodes (>= 1).
        seed: Seed of the first episode.
        options: Reset options passed to every episode.

    Returns:
        Per-episode means (units in the docs): ``cost_mean`` / ``cost_std`` (minus the
        return: eq. (6) cost + failure penalties P(t) + invalid-action penalties),
        ``system_cost_mean`` (eq. (6) only, = 0.8 energy + 0.2 delay by default),
        ``penalty_mean``, ``energy_mean`` (J per episode), ``delay_mean`` (s per episode:
        compute + transfer delays of eq. (6)), ``collaborations_mean`` (transfers between nodes
        per episode), ``tasks_mean`` (arrivals per episode), ``task_delay_s_mean`` (arrival to
        end of the last layer, completed tasks), and ``completion_rate`` = completed /
        (completed + failed + dropped) over all episodes (tasks still running when an episode
        is truncated are not counted; NaN when no task was resolved).

    Raises:
        InputError: On ``episodes < 1`` or an environment that is not a CERL environment.
    """
    if int(episodes) < 1:
        raise InputError(f"episodes must be >= 1, got {episodes!r}")
    if isinstance(env_or_cfg, CerlEnv) or isinstance(
        getattr(env_or_cfg, "unwrapped", None), CerlEnv
    ):
        env = env_or_cfg
    elif isinstance(env_or_cfg, (CerlConfig, Mapping)) or env_or_cfg is None:
        env = CerlEnv(config=env_or_cfg)
    else:
        raise InputError(
            f"env_or_cfg must be a CerlEnv, a CerlConfig or a mapping, got {type(env_or_cfg).__name__}"
        )
    stats: list[dict[str, float]] = []
    for e in range(int(episodes)):
        obs, _ = env.reset(seed=int(seed) + e, options=dict(options) if options else None)
        while True:
            obs, _, terminated, truncated, info = env.step(_act(policy, obs))
            if terminated or truncated:
                stats.append(info["episode_stats"])
                break

    def mean(key: str) -> float:
        return float(np.mean([s[key] for s in stats]))

    completed = sum(s["completed"] for s in stats)
    resolved = completed + sum(s["failed"] for s in stats)
    costs = np.array([s["cost"] for s in stats])
    return {
        "cost_mean": float(costs.mean()),
        "cost_std": float(costs.std()),
        "system_cost_mean": mean("system_cost"),
        "penalty_mean": mean("penalty"),
        "energy_mean": mean("energy_j"),
        "delay_mean": mean("delay_s"),
        "completion_rate": float(completed / resolved) if resolved else float("nan"),
        "collaborations_mean": mean("collaborations"),
        "tasks_mean": mean("arrived"),
        "task_delay_s_mean": float(sum(s["task_delay_s_sum"] for s in stats) / completed)
        if completed
        else float("nan"),
        "episodes": float(len(stats)),
    }
