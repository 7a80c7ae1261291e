"""Network pieces shared by the agents: dense GCN (eq. (11) of paper 002), node norm, dueling.

Every module here accepts its parameters either plain (``weight`` of shape ``(out, in)``) or
stacked over a population (``(k, out, in)``), so that one call of
:func:`torch.func.functional_call` with stacked parameters evaluates ``k`` networks at once with
batched matrix products (no Python loop over individuals, no ``vmap``). In population mode every
activation carries a leading ``k`` dimension; inputs that are shared by all individuals (the
graph, the features) are passed once and broadcast. :func:`population_call` does the stacking
from flat parameter vectors (the layout of :func:`torch.nn.utils.parameters_to_vector`).

The normalisation after each GCN layer is :class:`NodeNorm`: BatchNorm's standardisation of
each feature, with the real node rows of one state graph as the batch (``node_mask`` rows
only), a learnable affine transform, and no running statistics. It behaves the same in
training, in fitness evaluation and when acting on a single state, and the network has no
buffers, so its flat parameter vector is its whole state (which the CEM of paper 002 needs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = [
    "DenseGCN",
    "DenseGCNLayer",
    "NodeNorm",
    "PopLinear",
    "dueling_aggregate",
    "masked_mean",
    "normalized_adjacency",
    "param_count",
    "pop_size_of",
    "population_call",
    "propagate",
    "unflatten_parameters",
]

NormKind = Literal["graph", "layer", "none"]


# --------------------------------------------------------------------------- helpers


def pop_size_of(param: Tensor, plain_ndim: int) -> int | None:
    """Population size ``k`` of a parameter, or None when it is plain.

    Args:
        param: A parameter tensor as seen inside ``forward`` (maybe stacked).
        plain_ndim: Its number of dimensions when it is not stacked.
    """
    if param.ndim == plain_ndim:
        return None
    if param.ndim == plain_ndim + 1:
        return int(param.shape[0])
    raise ValueError(f"parameter has {param.ndim} dims, expected {plain_ndim} or {plain_ndim + 1}")


def _bcast(p: Tensor, h: Tensor, plain_ndim: int = 1) -> Tensor:
    """View a (maybe stacked) per-feature parameter so that it broadcasts against ``h``."""
    if p.ndim == plain_ndim:
        return p
    # Stacked (k, f): put k first and singletons between it and the feature axis.
    return p.reshape(p.shape[0], *([1] * (h.ndim - 2)), p.shape[-1])


def pop_linear(h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``h W^T + b`` where ``W`` may be stacked ``(k, out, in)``.

    Args:
        h: ``(..., in)`` for a plain weight; ``(k, ..., in)`` for a stacked one (a leading
            dimension of stride 0, i.e. an ``expand`` of shared data, is computed only once
            per distinct row).
        weight: ``(out, in)`` or ``(k, out, in)``.
        bias: ``(out,)`` or ``(k, out)`` or None.

    Returns:
        ``(..., out)`` or ``(k, ..., out)``.
    """
    if weight.ndim == 2:
        return nn.functional.linear(h, weight, bias)
    k, n_out, n_in = weight.shape
    lead = h.shape[1:-1]
    if h.stride(0) == 0:
        # Shared input: one (N, in) matrix against k weights, without copying it k times.
        out = torch.matmul(h[0].reshape(1, -1, n_in), weight.transpose(1, 2))
    else:
        out = torch.bmm(h.reshape(k, -1, n_in), weight.transpose(1, 2))
    if bias is not None:
        out = out + bias[:, None, :]
    return out.reshape(k, *lead, n_out)


def masked_mean(h: Tensor, mask: Tensor, dim: int = -2) -> Tensor:
    """Mean of ``h`` over ``dim`` counting only rows where ``mask`` is 1.

    Args:
        h: ``(..., V, f)`` (``dim=-2``).
        mask: ``(..., V)`` 0/1 (broadcast against the leading dims of ``h``).
        dim: The node dimension of ``h``.

    Returns:
        ``(..., f)``; zeros where the mask is empty.
    """
    m = mask.to(h.dtype).unsqueeze(-1)
    total = (h * m).sum(dim)
    count = m.sum(dim).clamp_min(1.0)
    return total / count


def normalized_adjacency(
    adj: Tensor, node_mask: Tensor | None = None, self_loops: bool = True
) -> Tensor:
    """Symmetrically normalised adjacency of eq. (11): ``D^-1/2 (A + I) D^-1/2``.

    Rows and columns of nodes outside ``node_mask`` are zero (padding nodes take no part in
    the propagation and do not count in the degrees).

    Args:
        adj: ``(..., V, V)`` 0/1 adjacency without self loops (any dtype).
        node_mask: ``(..., V)`` 0/1 real-node mask; None means every node is real.
        self_loops: Add ``I`` (the hat-A of eq. (11)).

    Returns:
        ``(..., V, V)`` float32 normalised adjacency ``hat-A``.
    """
    a = adj.to(torch.float32)
    if node_mask is None:
        m = torch.ones(a.shape[:-1], dtype=torch.float32, device=a.device)
    else:
        m = node_mask.to(torch.float32)
    a = a * m.unsqueeze(-1) * m.unsqueeze(-2)
    if self_loops:
        a = a + torch.diag_embed(m)
    deg = a.sum(-1)
    d_inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return d_inv_sqrt.unsqueeze(-1) * a * d_inv_sqrt.unsqueeze(-2)


def propagate(a_hat: Tensor, h: Tensor) -> Tensor:
    """``hat-A H`` for a graph batch shared by all individuals.

    Args:
        a_hat: ``(B, V, V)``.
        h: ``(B, V, f)`` or ``(k, B, V, f)``.

    Returns:
        Same shape as ``h``.
    """
    if h.ndim == a_hat.ndim:
        return torch.bmm(a_hat, h) if h.ndim == 3 else a_hat @ h
    k, b, v, f = h.shape
    if h.stride(0) == 0:
        # Shared features (first layer): propagate once, then broadcast over the population.
        return torch.bmm(a_hat, h[0]).unsqueeze(0).expand(k, b, v, f)
    # Fold the population into the columns: one (V, V) x (V, k f) product per graph.
    cols = h.permute(1, 2, 0, 3).reshape(b, v, k * f)
    # Back to (k, B, V, f) in memory order: the norm and activation that follow are faster on
    # contiguous data than on the permuted view.
    return torch.bmm(a_hat, cols).reshape(b, v, k, f).permute(2, 0, 1, 3).contiguous()


# --------------------------------------------------------------------------- modules


class PopLinear(nn.Module):
    """Affine layer like :class:`torch.nn.Linear` whose parameters may be population-stacked.

    Args:
        in_features: Input size.
        out_features: Output size.
        bias: Whether to learn an additive bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same initialisation as :class:`torch.nn.Linear`."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        """``h W^T + b`` (see :func:`pop_linear` for the shapes)."""
        return pop_linear(h, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class DenseGCNLayer(nn.Module):
    """One graph convolution of eq. (11) before its activation: ``hat-A H psi (+ b)``.

    The product is taken in the cheaper order: ``(hat-A H) psi`` when the layer widens,
    ``hat-A (H psi)`` when it narrows.

    Args:
        in_features: Node feature size of ``H``.
        out_features: Node feature size of the output.
        bias: Learn a bias (not needed when a normalisation with a shift follows).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.lin = PopLinear(in_features, out_features, bias=bias)

    def forward(self, h: Tensor, a_hat: Tensor) -> Tensor:
        """Propagate ``h`` (``(B, V, in)`` or ``(k, B, V, in)``) over ``a_hat`` (``(B, V, V)``)."""
        if self.lin.in_features <= self.lin.out_features:
            return self.lin(propagate(a_hat, h))
        z = propagate(a_hat, pop_linear(h, self.lin.weight, None))
        if self.lin.bias is not None:
            z = z + _bcast(self.lin.bias, z)
        return z


class NodeNorm(nn.Module):
    """Per-feature standardisation over the real nodes of each graph, then an affine map.

    ``kind="graph"``: BatchNorm's transform with the node rows of one state graph as the batch
    (masked rows excluded from the statistics and zeroed in the output); no running statistics,
    so training, fitness evaluation and acting use the same function. ``kind="layer"``:
    LayerNorm over the features of each node. ``kind="none"``: identity.

    Args:
        features: Feature size.
        kind: ``"graph"``, ``"layer"`` or ``"none"``.
        eps: Added to the variance.
    """

    def __init__(self, features: int, kind: NormKind = "graph", eps: float = 1e-5) -> None:
        super().__init__()
        if kind not in ("graph", "layer", "none"):
            raise ValueError(f"norm kind must be 'graph', 'layer' or 'none', got {kind!r}")
        self.kind = kind
        self.eps = float(eps)
        if kind != "none":
            self.weight = nn.Parameter(torch.ones(features))
            self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, h: Tensor, node_mask: Tensor) -> Tensor:
        """Normalise ``h`` (``(..., B, V, f)``) given ``node_mask`` (``(B, V)``)."""
        m = node_mask.to(h.dtype)
        if self.kind == "none":
            return h * m.unsqueeze(-1)
        if self.kind == "layer":
            mean = h.mean(-1, keepdim=True)
            var = h.var(-1, keepdim=True, unbiased=False)
            z = (h - mean) * torch.rsqrt(var + self.eps)
            out = z * _bcast(self.weight, z) + _bcast(self.bias, z)
            return out * m.unsqueeze(-1)
        # Masked moments over the nodes as (1 x V) products (one fused pass each instead of
        # several broadcast passes: this is the hot loop of the population fitness); the
        # variance is taken around the mean (two passes) for accuracy.
        count = m.sum(-1).clamp_min(1.0)[..., None, None]  # (B, 1, 1)
        row = m.unsqueeze(-2)  # (B, 1, V)
        mean = torch.matmul(row, h) / count  # (..., B, 1, f)
        c = h - mean
        var = torch.matmul(row, c * c) / count
        scale = _bcast(self.weight, h) * torch.rsqrt(var + self.eps)
        shift = _bcast(self.bias, h)
        mask = m.unsqueeze(-1)
        if torch.is_grad_enabled():
            return (c * scale + shift) * mask
        return c.mul_(scale).add_(shift).mul_(mask)  # no autograd: reuse the buffer

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class DenseGCN(nn.Module):
    """Stack of dense GCN layers (eq. (11)), each followed by :class:`NodeNorm` and ReLU.

    Args:
        in_features: Columns of the feature matrix ``X``.
        dims: Output size of each layer (paper 002: 64, 128, 256).
        norm: Normalisation after each layer (see :class:`NodeNorm`).
    """

    def __init__(self, in_features: int, dims: Sequence[int], norm: NormKind = "graph") -> None:
        super().__init__()
        if len(dims) == 0:
            raise ValueError("DenseGCN needs at least one layer")
        sizes = [int(in_features), *(int(d) for d in dims)]
        # The norm's shift replaces the bias; keep a bias only without a norm.
        self.layers = nn.ModuleList(
            DenseGCNLayer(a, b, bias=(norm == "none")) for a, b in zip(sizes, sizes[1:])
        )
        self.norms = nn.ModuleList(NodeNorm(b, norm) for b in sizes[1:])
        self.out_features = sizes[-1]

    def forward(self, x: Tensor, a_hat: Tensor, node_mask: Tensor) -> Tensor:
        """Node embeddings ``H`` of the last layer.

        Args:
            x: ``(B, V, F)`` features, or ``(k, B, V, F)`` in population mode (an ``expand``
                of shared features is fine and cheap).
            a_hat: ``(B, V, V)`` from :func:`normalized_adjacency`.
            node_mask: ``(B, V)`` real-node mask.

        Returns:
            ``(B, V, f)`` or ``(k, B, V, f)``; rows of padding nodes are zero.
        """
        h = x
        for layer, norm in zip(self.layers, self.norms):
            # eq. (11): H' = sigma(D^-1/2 (A + I) D^-1/2 H psi), with the norm before sigma.
            z = norm(layer(h, a_hat), node_mask)
            h = torch.relu(z) if torch.is_grad_enabled() else z.relu_()
        return h


def dueling_aggregate(value: Tensor, advantages: Tensor) -> Tensor:
    """Dueling combination ``V + (A - mean A)`` over the last dimension (Wang et al. 2016, eq. (9)).

    Args:
        value: ``(...,)`` state values.
        advantages: ``(..., n)`` advantages of one action branch.

    Returns:
        ``(..., n)`` Q-values.
    """
    return value.unsqueeze(-1) + advantages - advantages.mean(-1, keepdim=True)


# --------------------------------------------------------------------------- flat parameters


def param_count(module: nn.Module) -> int:
    """Number of scalars in ``module.parameters()`` (length of its flat vector)."""
    return sum(p.numel() for p in module.parameters())


def unflatten_parameters(flat: Tensor, module: nn.Module) -> dict[str, Tensor]:
    """Split flat parameter vectors into ``{name: tensor}`` for :func:`functional_call`.

    The layout is that of :func:`torch.nn.utils.parameters_to_vector` (``named_parameters``
    order).

    Args:
        flat: ``(P,)`` or ``(k, P)``.
        module: The module whose parameter layout to follow.

    Returns:
        Views of ``flat``: ``{name: (*shape)}`` or ``{name: (k, *shape)}``.
    """
    n = param_count(module)
    if flat.shape[-1] != n:
        raise ValueError(f"flat parameters have length {flat.shape[-1]}, the module has {n}")
    lead = flat.shape[:-1]
    out: dict[str, Tensor] = {}
    start = 0
    for name, p in module.named_parameters():
        size = p.numel()
        out[name] = flat[..., start : start + size].reshape(*lead, *p.shape)
        start += size
    return out


def population_call(module: nn.Module, flat: Tensor, *args: Any, **kwargs: Any) -> Any:
    """Evaluate ``module`` with each row of ``flat`` (``(k, P)``) as its parameters, at once.

    The module's ``forward`` must support stacked parameters (the modules of this file do).
    Non-parameter state (buffers) is shared by all individuals.
    """
    params: Mapping[str, Tensor] = unflatten_parameters(flat, module)
    return functional_call(module, dict(params), args, kwargs, strict=False)
