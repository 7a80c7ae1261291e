"""On-policy learning pieces: GAE, PPO losses, action masks, value normalisation, Lagrangian.

Used by the HC-MAPPO-L agents (paper 003, Algorithm 1): every layer computes GAE advantages
(line 15), the user layer runs PPO-Lagrangian with a separate cost critic and a projected
dual ascent on its multiplier (lines 17-18, eq. (33)), and all layers follow MAPPO's recipe
(value normalisation, clipped value loss, action masks).

Paper: Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage
Estimation", ICLR 2016 (GAE); Schulman et al., "Proximal Policy Optimization Algorithms", 2017
(clipped surrogate); Yu et al., "The Surprising Effectiveness of PPO in Cooperative
Multi-Agent Games", NeurIPS 2022 (MAPPO: value normalisation, clipped value loss, masks);
Ray et al., "Benchmarking Safe Exploration in Deep RL", 2019 (PPO-Lagrangian).
Code: own implementation.

Conventions: a time axis comes first (``[T, ...]``) and any number of batch/agent dimensions
may follow; losses reduce to a scalar by a (maybe masked) mean over every sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from edgerl.utils.errors import InputError

__all__ = [
    "MASKED_LOGIT",
    "LagrangeMultiplier",
    "ValueNorm",
    "clipped_value_loss",
    "gae",
    "lagrangian_advantage",
    "masked_categorical",
    "normalize_advantages",
    "ppo_policy_loss",
]

ArrayLike = Union[np.ndarray, Tensor]

#: Logit given to invalid actions. Finite (unlike ``-inf``) so that entropies, KL terms and
#: their gradients stay finite; ``exp(-1e9)`` is exactly 0 in float32 and float64, so invalid
#: actions have probability 0 and are never sampled.
MASKED_LOGIT = -1.0e9


# --------------------------------------------------------------------------- GAE


def _float_dtype_np(*arrays: np.ndarray) -> np.dtype:
    return np.result_type(*(a.dtype for a in arrays), np.float32)


def _float_dtype_torch(*tensors: Tensor) -> torch.dtype:
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = torch.promote_types(dt, t.dtype)
    return dt if dt.is_floating_point else torch.get_default_dtype()


def _prefix_expand(x: Any, shape: tuple[int, ...], name: str, lib: Any) -> Any:
    """Broadcast ``x`` whose shape is a prefix of ``shape`` over the trailing dimensions."""
    xs = tuple(x.shape)
    if len(xs) > len(shape) or xs != tuple(shape[: len(xs)]):
        raise InputError(
            f"gae: {name} has shape {xs}; it must equal the rewards' shape {tuple(shape)} or a "
            f"prefix of it (e.g. {tuple(shape[:1])})"
        )
    x = x.reshape(xs + (1,) * (len(shape) - len(xs)))
    return lib.broadcast_to(x, shape)


def gae(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_value: ArrayLike | float,
    gamma: float = 0.99,
    lam: float = 0.95,
    *,
    truncated: ArrayLike | None = None,
    bootstrap_values: ArrayLike | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """Generalised advantage estimates and value targets of one rollout.

    With ``V_t = values[t]`` and ``e_t = 1`` at an episode end after step ``t``:

    ``delta_t = r_t + gamma * next_t - V_t`` where ``next_t`` is ``V_{t+1}`` inside an episode,
    ``last_value`` after the last step of the rollout when it is not an episode end, ``0`` at
    a termination and ``bootstrap_values[t]`` at a truncation;
    ``A_t = delta_t + gamma * lam * (1 - e_t) * A_{t+1}`` (no sum across an episode end);
    ``returns_t = A_t + V_t`` (the critic's target, ``TD(lambda)`` return).

    Works on NumPy arrays or torch tensors (torch when ``rewards`` or ``values`` is a tensor;
    the result follows their device; the recursion is differentiable, so pass detached values
    when the advantages must be constants). The same call serves reward and cost streams.

    Args:
        rewards: ``[T, ...]`` reward (or cost) received after the action of step ``t``.
        values: ``[T, ...]`` critic values ``V(s_t)`` of the same stream.
        dones: ``[T]`` or ``[T, ...]`` (a prefix of the rewards' shape, broadcast over the rest;
            e.g. one flag per step shared by all agents): 1 where the episode ended after step
            ``t`` for any reason. Nothing is bootstrapped across it.
        last_value: ``[...]`` (or a scalar) ``V(s_T)`` of the state reached after the last step,
            used when the rollout stops inside an episode (``dones[T - 1] = 0``).
        gamma: Discount factor in ``[0, 1]`` (paper 003: 0.99).
        lam: GAE ``lambda`` in ``[0, 1]`` (paper 003: 0.95).
        truncated: Optional, same shapes as ``dones``: 1 where the episode was cut by a time
            limit after step ``t`` while its state was not terminal (Gymnasium's
            ``truncated and not terminated``). Such a step ends the episode too (whatever
            ``dones`` says) but its return is bootstrapped from ``bootstrap_values[t]``.
        bootstrap_values: ``[T, ...]`` like ``values``: ``V`` of the final observation of a
            truncated episode (read only where ``truncated`` is 1; any finite value elsewhere).
            Required with ``truncated``.

    Returns:
        ``(advantages, returns)``, both ``[T, ...]``, floating point, same library as the input.
    """
    if not 0.0 <= gamma <= 1.0:
        raise InputError(f"gae: gamma must lie in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise InputError(f"gae: lam must lie in [0, 1], got {lam}")
    if (truncated is None) != (bootstrap_values is None):
        raise InputError("gae: truncated and bootstrap_values must be given together")

    use_torch = isinstance(rewards, Tensor) or isinstance(values, Tensor)
    if use_torch:
        device = rewards.device if isinstance(rewards, Tensor) else values.device
        r = torch.as_tensor(rewards, device=device)
        v = torch.as_tensor(values, device=device)
        dt = _float_dtype_torch(r, v)
        r, v = r.to(dt), v.to(dt)

        def conv(x: Any) -> Tensor:
            return torch.as_tensor(x, device=device).to(dt)

        lib: Any = torch
    else:
        r = np.asarray(rewards)
        v = np.asarray(values)
        dt_np = _float_dtype_np(r, v)
        r, v = r.astype(dt_np, copy=False), v.astype(dt_np, copy=False)

        def conv(x: Any) -> np.ndarray:
            return np.asarray(x).astype(dt_np, copy=False)

        lib = np

    shape = tuple(r.shape)
    if len(shape) == 0 or shape[0] == 0:
        raise InputError(f"gae: rewards must have shape [T, ...] with T >= 1, got {shape}")
    if tuple(v.shape) != shape:
        raise InputError(f"gae: values have shape {tuple(v.shape)}, rewards {shape}; they must match")
    ends = _prefix_expand(conv(dones), shape, "dones", lib) > 0
    last = conv(last_value)
    try:
        last = lib.broadcast_to(last, shape[1:])
    except (RuntimeError, ValueError) as exc:
        raise InputError(
            f"gae: last_value has shape {tuple(last.shape)}, expected {shape[1:]} (one value per "
            "trailing entry of the rewards) or a scalar"
        ) from exc

    cat = torch.cat if use_torch else np.concatenate
    where = torch.where if use_torch else np.where
    zero = r.new_zeros(()) if use_torch else np.zeros((), dt_np)
    next_v = cat([v[1:], last[None]], 0)
    if truncated is not None:
        cut = _prefix_expand(conv(truncated), shape, "truncated", lib) > 0
        boot = conv(bootstrap_values)
        if tuple(boot.shape) != shape:
            raise InputError(
                f"gae: bootstrap_values have shape {tuple(boot.shape)}, expected {shape} "
                "(like values)"
            )
        ends = ends | cut
        next_v = where(cut, boot, where(ends, zero, next_v))
    else:
        next_v = where(ends, zero, next_v)
    delta = r + gamma * next_v - v
    carry = where(ends, zero, zero + gamma * lam)

    # Backward recursion over time, vectorised over the trailing dimensions.
    adv: list[Any] = [None] * shape[0]
    acc = delta[-1]
    adv[-1] = acc
    for t in range(shape[0] - 2, -1, -1):
        acc = delta[t] + carry[t] * acc
        adv[t] = acc
    advantages = torch.stack(adv, 0) if use_torch else np.stack(adv, 0)
    return advantages, advantages + v


def normalize_advantages(
    adv: Tensor, mask: Tensor | None = None, eps: float = 1e-8
) -> Tensor:
    """Standardise advantages to mean 0, standard deviation 1 over the (masked) samples.

    Args:
        adv: Advantages of any shape.
        mask: Optional 0/1 tensor broadcastable to ``adv``; only its samples count in the
            moments (the others are standardised with the same moments).
        eps: Added to the standard deviation.
    """
    if mask is None:
        mean = adv.mean()
        std = adv.std(unbiased=False)
    else:
        m = mask.to(adv.dtype).expand_as(adv)
        n = m.sum().clamp_min(1.0)
        mean = (adv * m).sum() / n
        std = (((adv - mean) ** 2 * m).sum() / n).sqrt()
    return (adv - mean) / (std + eps)


# --------------------------------------------------------------------------- masks


def masked_categorical(logits: Tensor, mask: Tensor | None) -> Categorical:
    """A categorical distribution over the actions allowed by ``mask``.

    Invalid actions get the logit :data:`MASKED_LOGIT` (not ``-inf``): they have probability
    0, are never sampled, their log-probability is about ``-1e9``, and entropies and
    gradients stay finite. Gradients do not flow into the logits of invalid actions.

    Args:
        logits: ``(..., n_actions)`` unnormalised log-probabilities.
        mask: ``(..., n_actions)`` (or broadcastable) bool / 0-1, true where the action is
            allowed; None allows every action.

    Returns:
        ``torch.distributions.Categorical`` over the last dimension.

    Raises:
        InputError: when some row allows no action.
    """
    if not logits.is_floating_point():
        raise InputError(f"masked_categorical: logits must be floating point, got {logits.dtype}")
    if mask is None:
        return Categorical(logits=logits)
    m = mask.to(device=logits.device) != 0
    try:
        m = m.expand_as(logits)
    except RuntimeError as exc:
        raise InputError(
            f"masked_categorical: mask of shape {tuple(mask.shape)} does not broadcast to the "
            f"logits' shape {tuple(logits.shape)}"
        ) from exc
    valid_rows = m.any(-1)
    if not bool(valid_rows.all()):
        bad = torch.nonzero(~valid_rows)[:5].tolist()
        raise InputError(
            f"masked_categorical: {int((~valid_rows).sum())} row(s) of the action mask allow no "
            f"action (first indices: {bad}); every row needs at least one valid action"
        )
    # float16 cannot hold -1e9: use half its most negative number there.
    fill = max(MASKED_LOGIT, torch.finfo(logits.dtype).min / 2)
    return Categorical(logits=torch.where(m, logits, logits.new_tensor(fill)))


# --------------------------------------------------------------------------- losses


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def ppo_policy_loss(
    new_logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    clip: float = 0.2,
    mask: Tensor | None = None,
) -> Tensor:
    """PPO's clipped surrogate, negated for minimisation.

    ``loss = -mean(min(rho A, clip(rho, 1 - clip, 1 + clip) A))`` with
    ``rho = exp(new_logp - old_logp)``. Where the ratio has left the trust region in the
    direction the advantage favours (``rho > 1 + clip`` with ``A > 0``, ``rho < 1 - clip`` with
    ``A < 0``) the clipped term is the minimum and the sample gives no gradient.

    Args:
        new_logp: Log-probabilities of the taken actions under the current policy (with grad).
        old_logp: The same under the behaviour policy (constants).
        adv: Advantages (constants), e.g. from :func:`lagrangian_advantage`.
        clip: Clipping range ``epsilon`` (paper 003: 0.2).
        mask: Optional 0/1 weights of the samples (e.g. MAPPO's active-agent mask).

    Returns:
        Scalar loss.
    """
    if clip < 0:
        raise InputError(f"ppo_policy_loss: clip must be >= 0, got {clip}")
    ratio = torch.exp(new_logp - old_logp)
    surr = ratio * adv
    surr_clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv
    return -_masked_mean(torch.minimum(surr, surr_clipped), mask)


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    clip: float = 0.2,
    mask: Tensor | None = None,
    huber_delta: float | None = None,
) -> Tensor:
    """MAPPO's clipped value loss: the larger of the plain and the clipped error.

    ``v_c = old + clip(values - old, -clip, clip)``;
    ``loss = mean(max(f(values - returns), f(v_c - returns)))`` with ``f(e) = e^2 / 2`` or,
    with ``huber_delta``, the Huber function (``e^2 / 2`` for ``|e| <= delta``, else
    ``delta (|e| - delta / 2)``). All three inputs live in the same (e.g. normalised) scale.

    Args:
        values: Current critic outputs (with grad).
        old_values: Critic outputs at collection time (constants).
        returns: Value targets (constants), e.g. from :func:`gae`.
        clip: Clipping range of the value change.
        mask: Optional 0/1 sample weights.
        huber_delta: Use the Huber function with this threshold instead of the square.

    Returns:
        Scalar loss.
    """
    if clip < 0:
        raise InputError(f"clipped_value_loss: clip must be >= 0, got {clip}")

    def f(e: Tensor) -> Tensor:
        if huber_delta is None:
            return 0.5 * e * e
        a = e.abs()
        return torch.where(a <= huber_delta, 0.5 * e * e, huber_delta * (a - 0.5 * huber_delta))

    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = torch.maximum(f(values - returns), f(v_clipped - returns))
    return _masked_mean(loss, mask)


def lagrangian_advantage(adv_r: ArrayLike, adv_c: ArrayLike, lam: float | ArrayLike) -> ArrayLike:
    """PPO-Lagrangian advantage ``(A_r - lam A_c) / (1 + lam)``.

    Ascending it follows the gradient of eq. (38) of paper 003 (reward objective minus ``lam``
    times the cost objective); dividing by ``1 + lam`` keeps its scale bounded as ``lam`` grows.

    Args:
        adv_r: Reward advantages.
        adv_c: Cost advantages (positive: more cost than expected).
        lam: Lagrange multiplier (>= 0), a float or a scalar array/tensor.
    """
    return (adv_r - lam * adv_c) / (1.0 + lam)


# --------------------------------------------------------------------------- value norm


class ValueNorm(nn.Module):
    """Running mean and variance of value targets with debiasing (MAPPO, without PopArt).

    After each :meth:`update` with a batch ``x`` (reduced over its leading dimensions):
    ``m <- beta m + (1 - beta) mean(x)``, ``s <- beta s + (1 - beta) mean(x^2)``,
    ``d <- beta d + (1 - beta)`` (all start at 0). The estimates are the debiased
    ``mu = m / d`` and ``var = max(s / d - mu^2, var_min)``, i.e. exponentially weighted
    averages over the batches seen. The critic learns ``normalize(returns)``; its outputs are
    turned back with ``denormalize`` when computing GAE. State lives in float64 buffers, so
    ``state_dict`` / ``load_state_dict`` round-trip it.

    Args:
        shape: Trailing shape of one value (``()`` for scalars, ``(1,)`` for ``[..., 1]``).
        beta: Decay of the running averages in ``(0, 1)`` (MAPPO: 0.99999).
        eps: Lower bound on the debiasing term.
        var_min: Lower bound on the variance.
    """

    def __init__(
        self,
        shape: int | Sequence[int] = (),
        beta: float = 0.99999,
        eps: float = 1e-5,
        var_min: float = 1e-2,
    ) -> None:
        super().__init__()
        if not 0.0 < beta < 1.0:
            raise InputError(f"ValueNorm: beta must lie in (0, 1), got {beta}")
        if var_min <= 0.0 or eps <= 0.0:
            raise InputError(f"ValueNorm: eps and var_min must be > 0, got {eps}, {var_min}")
        self.shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        self.beta = float(beta)
        self.eps = float(eps)
        self.var_min = float(var_min)
        self.register_buffer("running_mean", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    def _batch(self, x: ArrayLike) -> Tensor:
        t = torch.as_tensor(x).to(device=self.running_mean.device, dtype=torch.float64)
        k = len(self.shape)
        if t.ndim < k or tuple(t.shape[t.ndim - k :]) != self.shape:
            raise InputError(
                f"ValueNorm: input of shape {tuple(t.shape)} does not end in the normalised "
                f"shape {self.shape}"
            )
        return t

    @torch.no_grad()
    def update(self, x: ArrayLike) -> None:
        """Fold one batch of value targets into the running moments."""
        t = self._batch(x)
        lead = tuple(range(t.ndim - len(self.shape)))
        if t.numel() == 0:
            return
        if not bool(torch.isfinite(t).all()):
            raise InputError("ValueNorm.update: the batch holds NaN or inf values")
        b = self.beta
        self.running_mean.mul_(b).add_((1 - b) * t.mean(dim=lead))
        self.running_mean_sq.mul_(b).add_((1 - b) * (t * t).mean(dim=lead))
        self.debiasing_term.mul_(b).add_(1 - b)

    def mean_var(self) -> tuple[Tensor, Tensor]:
        """Debiased running mean and variance (float64, of the normalised shape)."""
        d = self.debiasing_term.clamp_min(self.eps)
        mean = self.running_mean / d
        var = (self.running_mean_sq / d - mean * mean).clamp_min(self.var_min)
        return mean, var

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # keep buffers float64
        out = super()._apply(fn, *args, **kwargs)
        for name in ("running_mean", "running_mean_sq", "debiasing_term"):
            buf = getattr(self, name)
            if buf.dtype != torch.float64:
                setattr(self, name, buf.to(torch.float64))
        return out

    def normalize(self, x: ArrayLike) -> ArrayLike:
        """``(x - mu) / sqrt(var)``, in the dtype (and library) of ``x``."""
        mean, var = self.mean_var()
        return self._map(x, lambda t: (t - mean) / var.sqrt())

    def denormalize(self, x: ArrayLike) -> ArrayLike:
        """``x sqrt(var) + mu``, in the dtype (and library) of ``x``."""
        mean, var = self.mean_var()
        return self._map(x, lambda t: t * var.sqrt() + mean)

    def _map(self, x: ArrayLike, fn: Any) -> ArrayLike:
        is_np = not isinstance(x, Tensor)
        src = torch.as_tensor(np.asarray(x)) if is_np else x
        out_dtype = src.dtype if src.is_floating_point() else torch.get_default_dtype()
        self._batch(src)  # shape check
        t = src.to(device=self.running_mean.device, dtype=torch.float64)
        out = fn(t).to(device=src.device, dtype=out_dtype)
        return out.numpy() if is_np else out

    def extra_repr(self) -> str:
        return f"shape={self.shape}, beta={self.beta}"


# --------------------------------------------------------------------------- Lagrangian


class LagrangeMultiplier:
    """Multiplier of one long-term constraint, updated by projected dual ascent (eq. (33)).

    ``lam <- clip(lam + lr (mean_cost - limit), lower, upper)``: it grows while the measured
    cost exceeds the limit and shrinks (down to ``lower``) otherwise. Paper 003:
    ``lam_0 = 0.01``, ``alpha_lambda = 0.01``, ``lam`` in ``[0, 100]``; Algorithm 1 line 17
    takes ``mean_cost`` as the user cost averaged over episodes and agents.

    Args:
        init: Initial value ``lam_0``.
        lr: Dual step size ``alpha_lambda`` (> 0).
        lower: Lower bound of the projection (>= 0).
        upper: Upper bound of the projection.
    """

    def __init__(
        self, init: float = 0.01, lr: float = 0.01, lower: float = 0.0, upper: float = 100.0
    ) -> None:
        for name, val in (("init", init), ("lr", lr), ("lower", lower), ("upper", upper)):
            if not math.isfinite(float(val)):
                raise InputError(f"LagrangeMultiplier: {name} must be finite, got {val}")
        if lr <= 0:
            raise InputError(f"LagrangeMultiplier: lr must be > 0, got {lr}")
        if not 0.0 <= lower <= upper:
            raise InputError(
                f"LagrangeMultiplier: need 0 <= lower <= upper, got lower={lower}, upper={upper}"
            )
        if not lower <= init <= upper:
            raise InputError(
                f"LagrangeMultiplier: init={init} lies outside [lower, upper] = [{lower}, {upper}]"
            )
        self.lr = float(lr)
        self.lower = float(lower)
        self.upper = float(upper)
        self._value = float(init)

    @property
    def value(self) -> float:
        """The current multiplier ``lam``."""
        return self._value

    def update(self, mean_cost: float | ArrayLike, limit: float) -> float:
        """One projected ascent step on ``lam``; returns the new value.

        Args:
            mean_cost: Measured constraint cost ``hat J^C`` of the last iteration (a scalar;
                an array or tensor of one element is accepted).
            limit: The constraint's threshold ``bar J^C`` in the same unit.
        """
        c = float(mean_cost.item() if hasattr(mean_cost, "item") else mean_cost)
        if not math.isfinite(c) or not math.isfinite(float(limit)):
            raise InputError(
                f"LagrangeMultiplier.update: mean_cost={c} and limit={limit} must be finite"
            )
        step = self._value + self.lr * (c - float(limit))
        self._value = min(max(step, self.lower), self.upper)
        return self._value

    def state_dict(self) -> dict[str, float]:
        """``{"value", "lr", "lower", "upper"}`` as plain floats."""
        return {"value": self._value, "lr": self.lr, "lower": self.lower, "upper": self.upper}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (bounds and step size included when present)."""
        if "value" not in state:
            raise InputError("LagrangeMultiplier.load_state_dict: the state has no 'value' entry")
        lower = float(state.get("lower", self.lower))
        upper = float(state.get("upper", self.upper))
        value = float(state["value"])
        lr = float(state.get("lr", self.lr))
        if not (0.0 <= lower <= value <= upper) or not lr > 0 or not math.isfinite(upper):
            raise InputError(
                f"LagrangeMultiplier.load_state_dict: value={value}, lr={lr}, bounds "
                f"[{lower}, {upper}] are not a valid state (need 0 <= lower <= value <= upper, lr > 0)"
            )
        self._value, self.lr, self.lower, self.upper = value, lr, lower, upper
