"""Attention over variable-size sets of entities with a padding mask.

For the allocation policy of HC-MAPPO-L (paper 003, section IV-B3): a server sees a padded
list of its associated users (service, input size, split point), encodes them with
self-attention (:class:`SetEncoder`, one embedding per user, independent of their order and
of the padding) and scores them against a query built from its own context
(:class:`QueryKeyScores`, ``g^T kappa_k / sqrt(d_h)``), whose masked softmax gives the
resource fractions.

Shapes: entities ``(..., N, F)`` with any leading batch dimensions, mask ``(..., N)`` true for
real entities. Rows of padding entities are zero in every output and never influence the
real ones; a set with no real entity is allowed (all-zero output, zero weights).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from edgerl.rl.onpolicy import MASKED_LOGIT
from edgerl.utils.errors import InputError

__all__ = ["MultiHeadSelfAttention", "QueryKeyScores", "SetEncoder", "masked_softmax"]

Activation = Literal["tanh", "relu"]


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` over the entries where ``mask`` is true, 0 elsewhere.

    A slice with no true entry gives all zeros (not NaN).

    Args:
        scores: Scores of any shape.
        mask: Bool / 0-1, broadcastable to ``scores``.
        dim: The dimension to normalise over.
    """
    m = (mask != 0).expand_as(scores)
    neg = torch.finfo(scores.dtype).min
    w = torch.softmax(scores.masked_fill(~m, neg), dim=dim) * m
    # Valid slices already sum to 1 (masked entries are exactly 0 after exp); the division
    # only zeroes the uniform weights softmax gives a slice with no valid entry.
    return w / w.sum(dim, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def _check(x: Tensor, mask: Tensor, features: int, who: str) -> None:
    if x.ndim < 2 or x.shape[-1] != features:
        raise InputError(f"{who}: entities must be (..., N, {features}), got {tuple(x.shape)}")
    if tuple(mask.shape) != tuple(x.shape[:-1]):
        raise InputError(
            f"{who}: mask has shape {tuple(mask.shape)}, expected {tuple(x.shape[:-1])} "
            "(one flag per entity)"
        )


def _act(kind: Activation) -> nn.Module:
    if kind == "tanh":
        return nn.Tanh()
    if kind == "relu":
        return nn.ReLU()
    raise InputError(f"activation must be 'tanh' or 'relu', got {kind!r}")


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with ``n_heads`` heads over the real entities.

    Args:
        dim: Embedding size (divisible by ``n_heads``).
        n_heads: Number of heads.
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim < 1 or n_heads < 1 or dim % n_heads:
            raise InputError(f"attention: dim={dim} must be a positive multiple of n_heads={n_heads}")
        self.dim = int(dim)
        self.n_heads = int(n_heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """Attend from every entity to the real ones.

        Args:
            h: ``(B, N, dim)``.
            mask: ``(B, N)`` bool, true for real entities.

        Returns:
            ``(B, N, dim)`` (rows of padding entities are not meaningful; callers zero them).
        """
        b, n, d = h.shape
        dh = d // self.n_heads
        qkv = self.qkv(h).reshape(b, n, 3, self.n_heads, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, N, dh)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, H, N, N)
        w = masked_softmax(scores, mask[:, None, None, :])
        o = (w @ v).transpose(1, 2).reshape(b, n, d)
        return self.out(o)


class _Block(nn.Module):
    """Pre-norm transformer block: ``h + MHA(LN h)``, then ``h + FF(LN h)``."""

    def __init__(self, dim: int, n_heads: int, ff_dim: int, activation: Activation) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, n_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), _act(activation), nn.Linear(ff_dim, dim))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        h = h + self.attn(self.norm1(h), mask)
        return h + self.ff(self.norm2(h))


class SetEncoder(nn.Module):
    """Self-attention encoder of a padded set of entities; one embedding per entity.

    An input projection, ``n_layers`` pre-norm transformer blocks (multi-head self-attention
    restricted to the real entities, then a feed-forward layer) and a final LayerNorm. There
    is no positional encoding, so permuting the entities permutes the outputs; per-entity
    LayerNorm keeps padding rows out of every statistic. Linear layers start orthogonal
    (paper 003 uses orthogonal initialisation and Tanh activations).

    Args:
        in_features: Features ``F`` of one entity.
        dim: Embedding size (paper 003: 128).
        n_heads: Attention heads (divides ``dim``).
        n_layers: Transformer blocks (>= 1).
        ff_dim: Hidden size of the feed-forward layers (default ``2 dim``).
        activation: ``"tanh"`` or ``"relu"``.
    """

    def __init__(
        self,
        in_features: int,
        dim: int = 128,
        n_heads: int = 4,
        n_layers: int = 1,
        ff_dim: int | None = None,
        activation: Activation = "tanh",
    ) -> None:
        super().__init__()
        if in_features < 1:
            raise InputError(f"SetEncoder: in_features must be >= 1, got {in_features}")
        if n_layers < 1:
            raise InputError(f"SetEncoder: n_layers must be >= 1, got {n_layers}")
        self.in_features = int(in_features)
        self.dim = int(dim)
        self.inp = nn.Sequential(nn.Linear(in_features, dim), _act(activation))
        ff = int(ff_dim) if ff_dim is not None else 2 * self.dim
        self.blocks = nn.ModuleList(_Block(dim, n_heads, ff, activation) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        gain = nn.init.calculate_gain(activation)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.orthogonal_(mod.weight, gain=gain)
                nn.init.zeros_(mod.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Embed every entity in the context of the real ones.

        Args:
            x: ``(..., N, F)`` entity features (padding rows may hold anything finite).
            mask: ``(..., N)`` bool / 0-1, true for real entities.

        Returns:
            ``(..., N, dim)``; rows of padding entities are zero.
        """
        _check(x, mask, self.in_features, "SetEncoder")
        lead, n = x.shape[:-2], x.shape[-2]
        m = (mask != 0).reshape(-1, n)
        keep = m.unsqueeze(-1).to(x.dtype)
        # Zero the padding features first so that garbage there cannot produce inf/NaN.
        h = self.inp(x.reshape(-1, n, self.in_features) * keep)
        for block in self.blocks:
            h = block(h, m)
        h = self.norm(h) * keep
        return h.reshape(*lead, n, self.dim)


class QueryKeyScores(nn.Module):
    """Scaled dot-product scores of entities against one query per set.

    ``q = W_q g``, ``kappa_k = MLP_key(e_k)``, ``score_k = q^T kappa_k / sqrt(d_h)`` (paper 003,
    section IV-B3); padding entities get :data:`~edgerl.rl.onpolicy.MASKED_LOGIT`, so the scores
    can go to :func:`masked_softmax` (allocation weights) or
    :func:`~edgerl.rl.onpolicy.masked_categorical` (a choice among the entities).

    Args:
        query_features: Size of the context ``g``.
        key_features: Size of one entity embedding ``e_k``.
        key_dim: ``d_h``.
        activation: Hidden activation of the key MLP.
    """

    def __init__(
        self,
        query_features: int,
        key_features: int,
        key_dim: int = 64,
        activation: Activation = "tanh",
    ) -> None:
        super().__init__()
        self.key_features = int(key_features)
        self.key_dim = int(key_dim)
        self.query = nn.Linear(query_features, key_dim)
        self.key = nn.Sequential(
            nn.Linear(key_features, key_dim), _act(activation), nn.Linear(key_dim, key_dim)
        )
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.orthogonal_(mod.weight, gain=1.0)
                nn.init.zeros_(mod.bias)

    def forward(self, context: Tensor, entities: Tensor, mask: Tensor) -> Tensor:
        """Scores of the entities.

        Args:
            context: ``(..., query_features)``.
            entities: ``(..., N, key_features)``.
            mask: ``(..., N)`` bool / 0-1, true for real entities.

        Returns:
            ``(..., N)`` scores; :data:`MASKED_LOGIT` at padding entities.
        """
        _check(entities, mask, self.key_features, "QueryKeyScores")
        q = self.query(context).unsqueeze(-1)  # (..., d, 1)
        k = self.key(entities)  # (..., N, d)
        scores = (k @ q).squeeze(-1) / math.sqrt(self.key_dim)
        return scores.masked_fill(mask == 0, MASKED_LOGIT)
