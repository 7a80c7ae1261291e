"""Deep contextual bandit with action-branching heads (paper 004, section 4.4).

Paper: Ghosh, Iyer, Nambi, Kumar, Nagpal, Sivasubramanian, Rao, Reddi, Chakrabarti, Misra,
"Adaptive Streaming Perception using Deep Reinforcement Learning" (Chanakya), 2021.

A decision picks one value per *decision dimension* (branch) of the detector configuration,
e.g. input scale, model, number of proposals / maximum detections and tracker stride. The
action-value network (:class:`BranchingQNet`) is a shared MLP trunk over the context vector
(4 hidden layers of 256 in the paper) followed by one linear head per branch, so it predicts
``sum_i |D_i|`` values instead of ``prod_i |D_i|`` (action branching, Tavakoli et al. 2018).

Learning (section 4.4): every decision ``(z, a, r)`` goes into a replay buffer of the last
``buffer_size`` (256) decisions; an update samples ``batch_size`` (32) of them and minimises

    L = E_(z,a,r)~B [ 1/|D| * sum_i (r - Q_i(z, a_i))^2 ]

with Adam (lr 1e-4), i.e. every branch regresses its *chosen* arm's value onto the one scalar
reward of the whole decision; ``branch_loss="sum"`` drops the ``1/|D|``. A contextual bandit has
no bootstrapping: the target is the reward itself.

Full information (not in the paper): :meth:`ContextualBandit.store_full` stores a decision
whose reward is known for *every* arm of every branch (a per-branch target vector, e.g. computed
by branching a simulator, :mod:`~edgerl.streaming.counterfactual`). Such an entry regresses all
arms of a branch at once, ``1/|D| * sum_i mean_d (t_i[d] - Q_i(z, d))^2``; a minibatch may mix
both kinds of entries, and one without full-information entries is the loss above exactly.

Exploration (section 4.4), one of:

* **epsilon-greedy per branch.** Each branch independently takes a uniformly random arm with
  probability ``eps`` and its greedy arm otherwise. The ``k``-th exploring decision (0-based)
  uses ``eps_k = max(eps_final, eps_initial * decay**k)`` (1 -> 0.15, decay 0.999 per
  decision); ``eps`` reaches 0.15 after 1897 decisions.
* **UCB per branch.** A neural bandit has no closed-form confidence width (NeuralUCB needs the
  inverse of a gradient-feature covariance); the paper uses the count-based form, and so do we:
  at the ``tau``-th exploring decision (1-based) branch ``i`` picks

      argmax_d [ Q_i(z_tau, d) + c * sqrt(ln(tau) / N_i(d)) ],   c = 1.5,

  where ``N_i(d)`` counts how often arm ``d`` of branch ``i`` was chosen before, over all
  contexts (the counts do not depend on the context). An arm with ``N_i(d) = 0`` has an
  infinite bonus, so every branch tries each of its arms once (untried arms in the order of
  their predicted value) before it repeats one.

``act(context, deterministic=True)`` is the greedy test-time policy: no exploration, and no
counter (epsilon, tau, arm counts) moves.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from edgerl.utils.config import Config, config_from_dict
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_torch_save, read_torch_checkpoint, to_json
from edgerl.utils.seeding import make_rng

__all__ = [
    "BanditConfig",
    "BranchingQNet",
    "ContextualBandit",
]

CHECKPOINT_KIND = "streaming-contextual-bandit"
CHECKPOINT_FORMAT = 1

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


class BanditConfig(Config):
    """Deep contextual bandit of paper 004 (defaults: section 5, 'RL training')."""

    hidden_sizes: tuple[int, ...] = (256, 256, 256, 256)
    """Width of each hidden layer of the shared trunk (paper: 4 layers of 256)."""

    activation: Literal["relu", "tanh", "elu"] = "relu"
    """Nonlinearity after each hidden layer."""

    exploration: Literal["epsilon_greedy", "ucb"] = "epsilon_greedy"
    """Exploration while training: per-branch epsilon-greedy or per-branch count UCB."""

    epsilon_initial: float = Field(1.0, ge=0.0, le=1.0)
    """Epsilon of the first exploring decision."""

    epsilon_final: float = Field(0.15, ge=0.0, le=1.0)
    """Floor of epsilon."""

    epsilon_decay: float = Field(0.999, gt=0.0, le=1.0)
    """Factor applied to epsilon after every exploring decision."""

    ucb_c: float = Field(1.5, ge=0.0)
    """Confidence scale c of the UCB bonus c * sqrt(ln(tau) / N)."""

    buffer_size: int = Field(256, ge=1)
    """Replay capacity in decisions (the newest are kept)."""

    batch_size: int = Field(32, ge=1)
    """Decisions per gradient update (fewer while the buffer holds fewer)."""

    learning_starts: int = Field(32, ge=1)
    """Decisions stored before observe() starts updating the network."""

    updates_per_observe: int = Field(1, ge=0)
    """Adam updates run by each observe() call once learning has started."""

    learning_rate: float = Field(1e-4, gt=0.0)
    """Adam step size."""

    branch_loss: Literal["mean", "sum"] = "mean"
    """How the per-branch squared errors combine: 'mean' (the paper's 1/|D| sum) or 'sum'."""

    @field_validator("hidden_sizes")
    @classmethod
    def _check_hidden(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(int(h) < 1 for h in v):
            raise ValueError(f"every hidden size must be >= 1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _check_pairs(self) -> BanditConfig:
        if self.epsilon_final > self.epsilon_initial:
            raise ValueError(
                f"epsilon_final ({self.epsilon_final}) must be <= epsilon_initial "
                f"({self.epsilon_initial})"
            )
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be <= buffer_size ({self.buffer_size})"
            )
        if self.learning_starts > self.buffer_size:
            raise ValueError(
                f"learning_starts ({self.learning_starts}) must be <= buffer_size "
                f"({self.buffer_size})"
            )
        return self


def _check_layout(context_dim: int, n_arms: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    if int(context_dim) < 1:
        raise InputError(f"context_dim must be >= 1, got {context_dim}")
    arms = tuple(int(n) for n in n_arms)
    if not arms:
        raise InputError("n_arms must list at least one decision dimension (branch)")
    if any(n < 1 for n in arms):
        raise InputError(f"n_arms: every branch needs >= 1 arm, got {list(arms)}")
    return int(context_dim), arms


class BranchingQNet(nn.Module):
    """Shared MLP trunk over the context, one linear head of arm values per branch.

    Args:
        context_dim: Length of the context vector.
        n_arms: Number of arms of each branch (e.g. ``(5, 3, 4, 5)`` for scale, model,
            maximum detections, tracker stride).
        hidden_sizes: Width of each hidden trunk layer; empty gives linear heads on the context.
        activation: 'relu', 'tanh' or 'elu' after each hidden layer.
    """

    def __init__(
        self,
        context_dim: int,
        n_arms: Sequence[int],
        hidden_sizes: Sequence[int] = (256, 256, 256, 256),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.context_dim, self.n_arms = _check_layout(context_dim, n_arms)
        if activation not in _ACTIVATIONS:
            raise InputError(f"activation: {activation!r} is not one of {sorted(_ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = self.context_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, int(h)), _ACTIVATIONS[activation]()]
            width = int(h)
        self.trunk = nn.Sequential(*layers)
        # Separate heads: the loss of a branch reaches only the row of its chosen arm.
        self.heads = nn.ModuleList(nn.Linear(width, n) for n in self.n_arms)

    def forward(self, context: Tensor) -> list[Tensor]:
        """Arm values of every branch.

        Args:
            context: ``[B, context_dim]`` float tensor.

        Returns:
            One ``[B, n_arms[i]]`` tensor per branch.
        """
        h = self.trunk(context)
        return [head(h) for head in self.heads]


class ContextualBandit:
    """Deep contextual bandit choosing one arm per decision dimension (paper 004, sec. 4.4).

    Args:
        context_dim: Length of the context vector (:func:`edgerl.streaming.context.context_dim`).
        n_arms: Number of arms of each branch.
        config: A :class:`BanditConfig` or a mapping of its fields; None for the defaults.
        seed: An int seed or a ``numpy.random.Generator``; it drives the network initialisation
            (through a forked torch RNG, global torch state is untouched), exploration and
            replay sampling.
        branch_names: Optional names of the branches (kept in checkpoints, used in messages).
    """

    def __init__(
        self,
        context_dim: int,
        n_arms: Sequence[int],
        config: BanditConfig | Mapping[str, Any] | None = None,
        seed: int | np.random.Generator | None = None,
        branch_names: Sequence[str] | None = None,
    ) -> None:
        self.context_dim, self.n_arms = _check_layout(context_dim, n_arms)
        if isinstance(config, BanditConfig):
            self.config = config
        elif config is None or isinstance(config, Mapping):
            self.config = config_from_dict(BanditConfig, dict(config or {}), "BanditConfig")
        else:
            raise InputError(
                f"config must be a BanditConfig or a mapping, got {type(config).__name__}"
            )
        if branch_names is None:
            branch_names = [f"branch{i}" for i in range(len(self.n_arms))]
        self.branch_names = tuple(str(n) for n in branch_names)
        if len(self.branch_names) != len(self.n_arms):
            raise InputError(
                f"branch_names has {len(self.branch_names)} names for {len(self.n_arms)} branches"
            )
        self.rng = make_rng(seed)
        init_seed = int(self.rng.integers(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.net = BranchingQNet(
                self.context_dim, self.n_arms, self.config.hidden_sizes, self.config.activation
            )
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.learning_rate)
        self.n_decisions = 0  # exploring decisions taken (epsilon decays, tau counts these)
        self.n_updates = 0
        self.arm_counts = [np.zeros(n, dtype=np.int64) for n in self.n_arms]
        cap = self.config.buffer_size
        self._contexts = np.zeros((cap, self.context_dim), dtype=np.float32)
        self._actions = np.zeros((cap, len(self.n_arms)), dtype=np.int64)
        self._rewards = np.zeros(cap, dtype=np.float32)
        self._targets = np.zeros((cap, sum(self.n_arms)), dtype=np.float32)
        self._full = np.zeros(cap, dtype=bool)
        self._pos = 0
        self._size = 0

    # ------------------------------------------------------------------ inspection

    @property
    def epsilon(self) -> float:
        """Epsilon of the next exploring decision: max(final, initial * decay**n_decisions)."""
        c = self.config
        return max(c.epsilon_final, c.epsilon_initial * c.epsilon_decay**self.n_decisions)

    @property
    def buffer_len(self) -> int:
        """Decisions currently held in the replay buffer."""
        return self._size

    def q_values(self, context: np.ndarray) -> list[np.ndarray]:
        """Predicted arm values of each branch for one context (float64 arrays)."""
        x = self._check_context(context)
        with torch.no_grad():
            out = self.net(torch.as_tensor(x[None]))
        return [q[0].double().numpy() for q in out]

    def _check_context(self, context: np.ndarray) -> np.ndarray:
        x = np.asarray(context, dtype=np.float32).reshape(-1)
        if x.shape[0] != self.context_dim:
            raise InputError(
                f"context has {x.shape[0]} values, the bandit takes {self.context_dim}"
            )
        if not np.all(np.isfinite(x)):
            raise InputError(f"context holds non-finite values: {x.tolist()}")
        return x

    def _check_action(self, action: Sequence[int]) -> np.ndarray:
        a = np.asarray(action, dtype=np.int64).reshape(-1)
        if a.shape[0] != len(self.n_arms) or np.any(a < 0) or np.any(a >= np.asarray(self.n_arms)):
            raise InputError(
                f"action {np.asarray(action).tolist()} does not fit the branch layout "
                f"{list(self.n_arms)} (one arm index per branch, 0 <= arm < n_arms)"
            )
        return a

    # ------------------------------------------------------------------ acting

    def act(self, context: np.ndarray, deterministic: bool = False) -> tuple[int, ...]:
        """Choose one arm per branch.

        Args:
            context: The context vector, shape ``(context_dim,)``.
            deterministic: Greedy arms, no exploration, no counter moves (test time).

        Returns:
            One arm index per branch.
        """
        qs = self.q_values(context)
        if deterministic:
            return tuple(int(np.argmax(q)) for q in qs)
        if self.config.exploration == "epsilon_greedy":
            eps = self.epsilon
            arms = []
            for q in qs:
                if self.rng.random() < eps:
                    arms.append(int(self.rng.integers(len(q))))
                else:
                    arms.append(int(np.argmax(q)))
        else:
            tau = self.n_decisions + 1
            arms = [self._ucb_arm(q, counts, tau) for q, counts in zip(qs, self.arm_counts)]
        for counts, arm in zip(self.arm_counts, arms):
            counts[arm] += 1
        self.n_decisions += 1
        return tuple(arms)

    def _ucb_arm(self, q: np.ndarray, counts: np.ndarray, tau: int) -> int:
        untried = counts == 0
        if np.any(untried):
            # infinite bonus: the best-valued untried arm
            return int(np.argmax(np.where(untried, q, -np.inf)))
        bonus = self.config.ucb_c * np.sqrt(math.log(tau) / counts)
        return int(np.argmax(q + bonus))

    # ------------------------------------------------------------------ learning

    def store(self, context: np.ndarray, action: Sequence[int], reward: float) -> None:
        """Put one decision into the replay buffer (the oldest is dropped when full)."""
        x = self._check_context(context)
        a = self._check_action(action)
        r = float(reward)
        if not math.isfinite(r):
            raise InputError(f"reward must be finite, got {reward!r}")
        self._put(x, a, r, None)

    def store_full(self, context: np.ndarray, targets: Sequence[np.ndarray | Sequence[float]]) -> None:
        """Put one full-information decision into the replay buffer: the target value of every
        arm of every branch (``targets[i]`` has ``n_arms[i]`` finite values). Its updates
        regress every arm of each branch on its target (see the module docstring)."""
        x = self._check_context(context)
        if len(targets) != len(self.n_arms):
            raise InputError(f"store_full: {len(targets)} target vectors for {len(self.n_arms)} branches")
        rows = []
        for i, (t, n) in enumerate(zip(targets, self.n_arms)):
            v = np.asarray(t, dtype=np.float64).reshape(-1)
            if v.shape[0] != n:
                raise InputError(f"store_full: branch {self.branch_names[i]} has {n} arms, got {v.shape[0]} targets")
            if not np.all(np.isfinite(v)):
                raise InputError(f"store_full: targets of branch {self.branch_names[i]} must be finite, got {v.tolist()}")
            rows.append(v)
        greedy = np.asarray([int(np.argmax(v)) for v in rows], dtype=np.int64)
        self._put(x, greedy, float(rows[0][greedy[0]]), np.concatenate(rows))

    def _put(self, x: np.ndarray, a: np.ndarray, r: float, targets: np.ndarray | None) -> None:
        self._contexts[self._pos] = x
        self._actions[self._pos] = a
        self._rewards[self._pos] = r
        self._full[self._pos] = targets is not None
        if targets is not None:
            self._targets[self._pos] = targets
        self._pos = (self._pos + 1) % self.config.buffer_size
        self._size = min(self._size + 1, self.config.buffer_size)

    def observe(self, context: np.ndarray, action: Sequence[int], reward: float) -> float | None:
        """Store a decision and its reward, then run ``updates_per_observe`` updates.

        Updates start once the buffer holds ``learning_starts`` decisions.

        Returns:
            The mean loss of the updates run, or None when none ran.
        """
        self.store(context, action, reward)
        if self._size < self.config.learning_starts or self.config.updates_per_observe == 0:
            return None
        losses = [self.learn_step() for _ in range(self.config.updates_per_observe)]
        return float(np.mean(losses))

    def learn_step(self) -> float:
        """One Adam update on a minibatch drawn without replacement from the buffer.

        Returns:
            The loss of the minibatch before the update.

        Raises:
            InputError: The buffer is empty.
        """
        if self._size == 0:
            raise InputError("learn_step: the replay buffer is empty (store decisions first)")
        n = min(self.config.batch_size, self._size)
        idx = self.rng.choice(self._size, size=n, replace=False)
        x = torch.as_tensor(self._contexts[idx])
        a = torch.as_tensor(self._actions[idx])
        r = torch.as_tensor(self._rewards[idx])
        qs = self.net(x)
        full = self._full[idx]
        if not full.any():
            per_branch = torch.stack(
                [((q.gather(1, a[:, i : i + 1]).squeeze(1) - r) ** 2).mean() for i, q in enumerate(qs)]
            )
        else:
            mask = torch.as_tensor(full)
            terms, off = [], 0
            for i, q in enumerate(qs):
                n = q.shape[1]
                chosen = (q.gather(1, a[:, i : i + 1]).squeeze(1) - r) ** 2
                every = ((q - torch.as_tensor(self._targets[idx, off : off + n])) ** 2).mean(1)
                terms.append(torch.where(mask, every, chosen).mean())
                off += n
            per_branch = torch.stack(terms)
        loss = per_branch.mean() if self.config.branch_loss == "mean" else per_branch.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.n_updates += 1
        return float(loss.detach())

    def learn(self, n_updates: int) -> list[float]:
        """Run ``n_updates`` updates on the stored decisions (the paper's per-sequence update).

        Returns:
            The loss of each update.
        """
        if int(n_updates) < 0:
            raise InputError(f"n_updates must be >= 0, got {n_updates}")
        return [self.learn_step() for _ in range(int(n_updates))]

    # ------------------------------------------------------------------ checkpoints

    def _layout(self) -> dict[str, Any]:
        return {
            "context_dim": self.context_dim,
            "n_arms": list(self.n_arms),
            "hidden_sizes": list(self.config.hidden_sizes),
            "activation": self.config.activation,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a plain state dict atomically: layout, config, network, optimiser, counters,
        replay buffer and the exploration RNG state (so a loaded bandit continues identically).
        """
        state = {
            "meta": {
                "kind": CHECKPOINT_KIND,
                "format": CHECKPOINT_FORMAT,
                "layout": self._layout(),
                "branch_names": list(self.branch_names),
                "config": self.config.model_dump(mode="json"),
            },
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "n_decisions": int(self.n_decisions),
            "n_updates": int(self.n_updates),
            "arm_counts": [torch.as_tensor(c) for c in self.arm_counts],
            "buffer": {
                "contexts": torch.as_tensor(self._contexts[: self._size].copy()),
                "actions": torch.as_tensor(self._actions[: self._size].copy()),
                "rewards": torch.as_tensor(self._rewards[: self._size].copy()),
                "targets": torch.as_tensor(self._targets[: self._size].copy()),
                "full": torch.as_tensor(self._full[: self._size].copy()),
                "pos": int(self._pos),
            },
            "rng_state": to_json(self.rng.bit_generator.state, indent=None),
        }
        return atomic_torch_save(path, state)

    @staticmethod
    def _read(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
        p, state = read_torch_checkpoint(path)
        meta = state.get("meta") if isinstance(state, dict) else None
        if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
            raise InputError(f"{p}: not a streaming contextual-bandit checkpoint")
        if int(meta.get("format", -1)) != CHECKPOINT_FORMAT:
            raise InputError(
                f"{p}: checkpoint format {meta.get('format')} is not supported "
                f"(expected {CHECKPOINT_FORMAT})"
            )
        return p, state

    def load(self, path: str | os.PathLike[str]) -> ContextualBandit:
        """Load a checkpoint written by :meth:`save` into this bandit (``weights_only=True``).

        The checkpoint's layout (context size, arms per branch, trunk sizes, activation) must
        equal this bandit's; the stored config replaces this bandit's config.

        Returns:
            ``self``.

        Raises:
            InputError: The file is missing, not a bandit checkpoint, or trained for another
                layout (the message lists each difference).
        """
        p, state = self._read(path)
        mine, theirs = self._layout(), state["meta"]["layout"]
        diff = [k for k in mine if theirs.get(k) != mine[k]]
        if diff:
            what = {
                "context_dim": "context vector length",
                "n_arms": "arms per branch",
                "hidden_sizes": "trunk layer widths",
                "activation": "activation",
            }
            details = "; ".join(
                f"{what[k]} ({k}): checkpoint {theirs.get(k)} vs this bandit {mine[k]}"
                for k in diff
            )
            raise InputError(
                f"{p}: the checkpoint was trained for another branch layout or context size "
                f"and cannot drive this bandit ({details})"
            )
        self.config = config_from_dict(BanditConfig, state["meta"]["config"], f"{p}: config")
        self.branch_names = tuple(state["meta"].get("branch_names", self.branch_names))
        try:
            self.net.load_state_dict(state["net"])
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.learning_rate)
            self.optimizer.load_state_dict(state["optimizer"])
            counts = [np.asarray(c.numpy(), dtype=np.int64) for c in state["arm_counts"]]
            buf = state["buffer"]
            contexts = buf["contexts"].numpy()
            actions = buf["actions"].numpy()
            rewards = buf["rewards"].numpy()
            n_all = sum(self.n_arms)
            targets = buf["targets"].numpy() if "targets" in buf else np.zeros((len(rewards), n_all), np.float32)
            full = buf["full"].numpy() if "full" in buf else np.zeros(len(rewards), bool)
            if targets.shape != (len(rewards), n_all) or full.shape != (len(rewards),):
                raise ValueError(f"full-information targets of shape {tuple(targets.shape)} for {len(rewards)} entries of {n_all} arms")
        except (RuntimeError, KeyError, ValueError, AttributeError) as exc:
            raise InputError(f"{p}: checkpoint contents do not fit its layout ({exc})") from None
        self.arm_counts = counts
        self.n_decisions = int(state["n_decisions"])
        self.n_updates = int(state["n_updates"])
        cap = self.config.buffer_size
        size = min(len(rewards), cap)
        self._contexts = np.zeros((cap, self.context_dim), dtype=np.float32)
        self._actions = np.zeros((cap, len(self.n_arms)), dtype=np.int64)
        self._rewards = np.zeros(cap, dtype=np.float32)
        self._targets = np.zeros((cap, sum(self.n_arms)), dtype=np.float32)
        self._full = np.zeros(cap, dtype=bool)
        self._contexts[:size] = contexts[:size]
        self._actions[:size] = actions[:size]
        self._rewards[:size] = rewards[:size]
        self._targets[:size] = targets[:size]
        self._full[:size] = full[:size]
        self._size = size
        self._pos = int(buf["pos"]) % cap
        rng_state = json.loads(state["rng_state"])
        if rng_state.get("bit_generator") == type(self.rng.bit_generator).__name__:
            self.rng.bit_generator.state = rng_state
        return self

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], seed: int | np.random.Generator | None = None
    ) -> ContextualBandit:
        """A bandit with the layout and config stored in a checkpoint, loaded from it."""
        p, state = cls._read(path)
        meta = state["meta"]
        layout = meta["layout"]
        bandit = cls(
            int(layout["context_dim"]),
            layout["n_arms"],
            config=meta["config"],
            seed=seed,
            branch_names=meta.get("branch_names"),
        )
        return bandit.load(p)
