"""Small MLP policies kept as plain state dicts and run with NumPy at inference.

Checkpoints are ``torch.save`` of a flat ``{name: tensor}`` dict (loaded with
``weights_only=True``), written atomically; inference needs no torch graph, so an
RL-DCA decision costs a few matrix products.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_torch_save


class MLPPolicy:
    """A ReLU MLP mapping an observation to action logits; ``act`` is the greedy argmax.

    Args:
        weights: list of (W (out, in), b (out,)) pairs, hidden layers then the output layer.
    """

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
        if not weights:
            raise InputError("MLPPolicy needs at least one layer")
        self.weights = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in weights]
        for (w1, _), (w2, _) in zip(self.weights, self.weights[1:]):
            if w1.shape[0] != w2.shape[1]:
                raise InputError(f"MLPPolicy layer shapes do not chain: {w1.shape} then {w2.shape}")

    @property
    def obs_dim(self) -> int:
        return int(self.weights[0][0].shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.weights[-1][0].shape[0])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32)
        for i, (w, b) in enumerate(self.weights):
            x = x @ w.T + b
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return x

    def act(self, obs: np.ndarray, deterministic: bool = True) -> int:
        """Greedy action (deterministic) for one observation."""
        return int(np.argmax(self.logits(obs)))

    __call__ = act

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(self.weights):
            out[f"layers.{i}.weight"] = w
            out[f"layers.{i}.bias"] = b
        return out

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, object], source: str = "policy") -> MLPPolicy:
        weights = []
        i = 0
        while f"layers.{i}.weight" in sd:
            weights.append((np.asarray(sd[f"layers.{i}.weight"]), np.asarray(sd[f"layers.{i}.bias"])))
            i += 1
        if not weights:
            raise InputError(f"{source}: no 'layers.0.weight' entry: not an MLP policy state dict")
        return cls(weights)

    @classmethod
    def from_sb3(cls, model: object) -> MLPPolicy:
        """The actor of a Stable-Baselines3 on-policy model with an MLP extractor (ReLU)."""
        pol = model.policy  # type: ignore[attr-defined]
        layers = [m for m in pol.mlp_extractor.policy_net if hasattr(m, "weight")]
        weights = [(m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy()) for m in layers]
        an = pol.action_net
        weights.append((an.weight.detach().cpu().numpy(), an.bias.detach().cpu().numpy()))
        return cls(weights)

    def save(self, path: str | os.PathLike[str]) -> Path:
        import torch

        return atomic_torch_save(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.state_dict().items()})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MLPPolicy:
        import torch

        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: policy file not found")
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign file
            raise InputError(f"{p}: not a policy checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(sd, dict):
            raise InputError(f"{p}: expected a state dict, found {type(sd).__name__}")
        return cls.from_state_dict({k: v.numpy() for k, v in sd.items()}, str(p))
