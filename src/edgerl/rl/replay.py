"""Experience replay for dictionary observations, stored compactly.

Graph states are large (a ``V x V`` adjacency per state), so :class:`DictReplayBuffer` stores
each observation key in the smallest exact form its space allows and stores every state once:

* 0/1 integer keys (adjacency, masks) as bits (:func:`numpy.packbits`, 8x smaller than int8);
* other integer keys in the narrowest integer type covering the space's bounds;
* float keys with bounds inside the float16 range as float16 when ``compress_floats`` (the
  only lossy choice: relative error below 5e-4), else float32.

Transitions of ``num_envs`` parallel environment copies are written row by row (one row per
vector step). The next state of a transition is the state of the same copy in the next row,
so it is not stored twice; when the episode of a copy ends in a row (terminated or truncated)
its true last state (``final_obs`` of the vector environment's autoreset) is kept aside for
that transition, so truncated transitions bootstrap from the right state. The newest row
waits for its successor and is not sampled yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from edgerl.utils.errors import InputError

__all__ = ["DictReplayBuffer", "ReplaySample"]

_F16_MAX = 65504.0


@dataclass(frozen=True)
class ReplaySample:
    """A minibatch of transitions (NumPy arrays, batch first).

    Attributes:
        obs: Decoded observations ``{key: (n, ...)}`` in the space's dtypes.
        actions: ``(n, *action_shape)``.
        rewards: ``(n,)`` float32.
        terminated: ``(n,)`` float32, 1 where the episode terminated (no bootstrap).
        next_obs: Decoded next observations (the final state where the episode ended).
        rows: ``(n,)`` ring row of each transition.
        envs: ``(n,)`` environment copy of each transition.
        discount: ``(n,)`` float32 ``gamma^k`` of the ``k`` steps summed into ``rewards``
            (:meth:`DictReplayBuffer.sample_n_step`), or None for one-step transitions.
    """

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    next_obs: dict[str, np.ndarray]
    rows: np.ndarray
    envs: np.ndarray
    discount: np.ndarray | None = None


def _int_dtype(lo: int, hi: int) -> np.dtype:
    for dt in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


class _Codec:
    """Encoding of one array-valued space into its stored form (and back)."""

    def __init__(self, name: str, space: spaces.Space[Any], compress_floats: bool) -> None:
        self.name = name
        if isinstance(space, spaces.MultiBinary):
            shape, dtype, lo, hi = tuple(space.shape), np.dtype(np.int8), 0, 1
            is_int = True
        elif isinstance(space, spaces.Box):
            shape, dtype = tuple(space.shape), np.dtype(space.dtype)
            is_int = np.issubdtype(dtype, np.integer) or dtype == np.bool_
            lo, hi = float(np.min(space.low)), float(np.max(space.high))
        elif isinstance(space, spaces.MultiDiscrete):
            shape, dtype = tuple(space.shape), np.dtype(space.dtype)
            is_int, lo, hi = True, 0, float(np.max(space.nvec) - 1)
        elif isinstance(space, spaces.Discrete):
            shape, dtype, is_int = (), np.dtype(np.int64), True
            lo, hi = float(space.start), float(space.start + space.n - 1)
        else:
            raise InputError(
                f"replay key {name!r}: unsupported space {type(space).__name__} "
                "(Box, MultiBinary, MultiDiscrete or Discrete)"
            )
        self.shape = shape
        self.dtype = dtype
        self.bits = is_int and lo >= 0 and hi <= 1 and len(shape) > 0
        if self.bits:
            self.stored_shape = (*shape[:-1], math.ceil(shape[-1] / 8))
            self.stored_dtype = np.dtype(np.uint8)
        elif is_int:
            self.stored_shape = shape
            self.stored_dtype = _int_dtype(int(math.floor(lo)), int(math.ceil(hi)))
        else:
            small = compress_floats and math.isfinite(lo) and math.isfinite(hi)
            small = small and max(abs(lo), abs(hi)) <= _F16_MAX
            self.stored_shape = shape
            self.stored_dtype = np.dtype(np.float16 if small else np.float32)

    def alloc(self, lead: tuple[int, ...]) -> np.ndarray:
        return np.zeros((*lead, *self.stored_shape), dtype=self.stored_dtype)

    def encode(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if self.shape and tuple(a.shape[a.ndim - len(self.shape) :]) != self.shape:
            raise InputError(
                f"replay key {self.name!r}: shape {a.shape} does not end in {self.shape}"
            )
        if self.bits:
            return np.packbits(a.astype(bool), axis=-1)
        return a.astype(self.stored_dtype)

    def decode(self, s: np.ndarray) -> np.ndarray:
        if self.bits:
            return np.unpackbits(s, axis=-1, count=self.shape[-1]).astype(self.dtype)
        return s.astype(self.dtype)


class DictReplayBuffer:
    """Ring buffer of transitions from ``num_envs`` environment copies with Dict observations.

    Args:
        observation_space: The single-copy ``spaces.Dict`` observation space.
        action_space: The single-copy action space (Box, MultiDiscrete, Discrete, MultiBinary).
        capacity: Transitions kept (rounded up to whole rows of ``num_envs``).
        num_envs: Environment copies written per :meth:`add`.
        compress_floats: Store bounded float keys as float16 (see module docstring).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space[Any],
        capacity: int,
        num_envs: int = 1,
        compress_floats: bool = True,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict):
            raise InputError(
                f"observation_space must be a gymnasium Dict space, got {type(observation_space).__name__}"
            )
        if int(capacity) < 1:
            raise InputError(f"capacity must be >= 1, got {capacity}")
        if int(num_envs) < 1:
            raise InputError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        # Two rows at least: the newest row is not sampled until its successor exists.
        self.rows = max(2, math.ceil(int(capacity) / self.num_envs) + 1)
        self.capacity = (self.rows - 1) * self.num_envs
        self._obs_codecs = {k: _Codec(k, s, compress_floats) for k, s in observation_space.items()}
        self._act_codec = _Codec("action", action_space, compress_floats=False)
        lead = (self.rows, self.num_envs)
        self._obs = {k: c.alloc(lead) for k, c in self._obs_codecs.items()}
        self._actions = self._act_codec.alloc(lead)
        self._rewards = np.zeros(lead, dtype=np.float32)
        self._terminated = np.zeros(lead, dtype=np.float32)
        self._ended = np.zeros(lead, dtype=bool)
        # Final states of episodes that ended in a row: {row: {env: {key: stored array}}}.
        self._final: dict[int, dict[int, dict[str, np.ndarray]]] = {}
        self._pos = 0  # next row to write
        self._written = 0  # rows written in total

    # ------------------------------------------------------------------ writing

    def add(
        self,
        obs: Mapping[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_obs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Write one row: the transitions of every copy from state ``obs``.

        Args:
            obs: Batched observation ``{key: (num_envs, ...)}`` the actions were taken in.
            actions: ``(num_envs, *action_shape)``.
            rewards: ``(num_envs,)``.
            terminated: ``(num_envs,)`` bool.
            truncated: ``(num_envs,)`` bool.
            final_obs: Batched last observations of the copies whose episode ended in this
                step (rows of the other copies are ignored); required when any ended.

        Raises:
            InputError: On a wrong batch size or a missing ``final_obs``.
        """
        term = np.asarray(terminated, dtype=bool).reshape(-1)
        trunc = np.asarray(truncated, dtype=bool).reshape(-1)
        if term.shape[0] != self.num_envs or trunc.shape[0] != self.num_envs:
            raise InputError(
                f"replay add: expected {self.num_envs} copies, got {term.shape[0]} flags"
            )
        ended = term | trunc
        if ended.any() and final_obs is None:
            raise InputError("replay add: final_obs is required when an episode ended")
        r = self._pos
        self._final.pop(r, None)
        for k, c in self._obs_codecs.items():
            self._obs[k][r] = c.encode(obs[k])
        self._actions[r] = self._act_codec.encode(np.asarray(actions))
        self._rewards[r] = np.asarray(rewards, dtype=np.float32).reshape(-1)
        self._terminated[r] = term
        self._ended[r] = ended
        if ended.any():
            assert final_obs is not None
            self._final[r] = {
                int(e): {k: c.encode(final_obs[k][e]) for k, c in self._obs_codecs.items()}
                for e in np.flatnonzero(ended)
            }
        self._pos = (r + 1) % self.rows
        self._written += 1

    # ------------------------------------------------------------------ reading

    @property
    def _stored_rows(self) -> int:
        return min(self._written, self.rows)

    def __len__(self) -> int:
        """Number of transitions that can be sampled now."""
        return max(0, self._stored_rows - 1) * self.num_envs

    def _decode(self, store: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: c.decode(store[k]) for k, c in self._obs_codecs.items()}

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplaySample:
        """Uniform minibatch (with replacement) of the sampleable transitions.

        Raises:
            InputError: When the buffer holds no sampleable transition.
        """
        _, rows, envs, _ = self._draw(batch_size, rng)
        return self._gather(rows, envs)

    def _draw(
        self, batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Uniform draw of sampleable transitions: ``(age, rows, envs, n_rows)``, with ``age``
        the complete rows after the oldest one and ``n_rows`` the complete rows stored."""
        n_rows = self._stored_rows - 1
        if n_rows < 1:
            raise InputError("replay sample: the buffer holds no complete transition yet")
        oldest = self._pos if self._written >= self.rows else 0
        flat = rng.integers(0, n_rows * self.num_envs, size=int(batch_size))
        age = flat // self.num_envs
        return age, (oldest + age) % self.rows, flat % self.num_envs, n_rows

    def sample_n_step(
        self, batch_size: int, rng: np.random.Generator, n_step: int, gamma: float
    ) -> ReplaySample:
        """Uniform minibatch of ``n``-step transitions (Sutton and Barto, 2018, section 7.1).

        The start transitions are drawn as in :meth:`sample`. From each, up to ``n_step``
        consecutive transitions of the same copy are summed, ``sum_i gamma^i r_{t+i}``,
        stopping early where the episode ended or where no later complete transition is
        stored yet; ``next_obs`` is the state after the last one, ``terminated`` its flag and
        ``discount`` ``gamma^k`` for the ``k`` transitions summed. ``n_step = 1`` gives the
        transitions of :meth:`sample` (same draws) with ``discount = gamma``.

        Raises:
            InputError: When the buffer holds no sampleable transition, or ``n_step < 1``.
        """
        if int(n_step) < 1:
            raise InputError(f"n_step must be >= 1, got {n_step}")
        age, rows, envs, n_rows = self._draw(batch_size, rng)
        ret = self._rewards[rows, envs].astype(np.float64)
        last = rows.copy()
        k = np.ones(rows.shape[0], dtype=np.int64)
        live = ~self._ended[rows, envs]
        for i in range(1, int(n_step)):
            live &= age + i < n_rows  # row age + i must itself be a complete transition
            if not live.any():
                break
            r = (rows + i) % self.rows
            ret = np.where(live, ret + gamma**i * self._rewards[r, envs], ret)
            last = np.where(live, r, last)
            k = k + live
            live &= ~self._ended[r, envs]
        return self._gather(rows, envs, last, ret.astype(np.float32), (float(gamma) ** k).astype(np.float32))

    def _gather(
        self,
        rows: np.ndarray,
        envs: np.ndarray,
        last: np.ndarray | None = None,
        rewards: np.ndarray | None = None,
        discount: np.ndarray | None = None,
    ) -> ReplaySample:
        """Transitions starting at ``rows``; the next state and its flag are those after row
        ``last`` (default ``rows``), the rewards ``rewards`` (default the rows' own)."""
        last = rows if last is None else last
        nxt = (last + 1) % self.rows
        obs = self._decode({k: v[rows, envs] for k, v in self._obs.items()})
        next_store = {k: v[nxt, envs].copy() for k, v in self._obs.items()}
        for i in np.flatnonzero(self._ended[last, envs]):
            final = self._final[int(last[i])][int(envs[i])]
            for k in next_store:
                next_store[k][i] = final[k]
        return ReplaySample(
            obs=obs,
            actions=self._act_codec.decode(self._actions[rows, envs]),
            rewards=self._rewards[rows, envs].copy() if rewards is None else rewards,
            terminated=self._terminated[last, envs].copy(),
            next_obs=self._decode(next_store),
            rows=rows,
            envs=envs,
            discount=discount,
        )

    def nbytes(self) -> int:
        """Bytes held by the ring arrays (the kept final states not included)."""
        arrays = [*self._obs.values(), self._actions, self._rewards, self._terminated, self._ended]
        return int(sum(a.nbytes for a in arrays))
