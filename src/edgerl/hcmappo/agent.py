"""HC-MAPPO-L agent: hierarchical constrained MAPPO-Lagrangian (paper 003, Algorithm 1).

Paper: Wang, Fan, Cheng, Yuan, Min, Liwang, Xia, "Safe Multi-Agent Deep Reinforcement Learning
for Privacy-Aware Edge-Device Collaborative DNN Inference", section IV-B and Algorithm 1.
Code: own implementation on :class:`edgerl.hcmappo.batched.BatchedHcEnv` and
:mod:`edgerl.rl.onpolicy`.

Three layers, each with parameters shared by its agents (section IV-B4):

* **Deployment** (section IV-B1): an auto-regressive GRU policy per server. The observation is
  encoded into the initial hidden state; step ``n`` feeds the previous choice (one-hot, a start
  token first) and the indicator ``x^st`` of the services chosen so far, and outputs a
  distribution over the services. The mask removes services already chosen and services that
  no longer fit the storage left (C7); the sequence ends when nothing fits (optionally also by
  a stop action, ``deploy_stop_action``). The same mask function, applied in the same order to
  the same float64 bookkeeping, serves sampling and the recomputation of log-probabilities in
  the update (:meth:`DeployPolicy.sample`, :meth:`DeployPolicy.evaluate`), so both give the
  same masks; the log-probability of the macro-action is the sum over its steps (eq. (30)).
  The critic shares the GRU: step values ``V(h_n)`` (plus the global state when critics are
  centralised) averaged over the steps give the macro-action's value (eq. (29)). Its entropy
  bonus is the mean step entropy.
* **Users** (section IV-B2): one actor shared by every user over its own observation, with two
  masked heads: the server (eq. (20)) and the split point. Server logits add a score computed
  by one rule for every server from that server's own entries (channel, cache, load); the
  split head is conditioned on the chosen server (one-hot and its entries), so the split can
  depend on that server's channel (:class:`UserActor`). Its
  critics are centralised (CTDE): a reward critic and a separate cost critic on the global
  ``state()`` plus the user's own features. The advantage is
  ``(A_r - lambda A_c) / (1 + lambda)`` with both streams from GAE and standardised; the
  multiplier follows projected dual ascent on the mean user delay of the iteration against
  ``delay_limit_s`` (eq. (33), Algorithm 1 lines 17-18), in ``[0, lagrange_max]``. The
  entropy coefficient of the user policy can be annealed linearly to 0
  (``ent_user_anneal_iterations``), so that the sampled actions the dual step measures
  converge to the acting policy.
* **Allocation** (section IV-B3): a :class:`~edgerl.rl.attention.SetEncoder` over the users the
  server serves, a context ``g`` from the server's own entries and the mean user embedding, and
  two query-key branches (compute, bandwidth) whose scores ``g^T kappa_k / sqrt(d_h)`` are the
  means of a Gaussian over per-user logits; the weights are the masked softmax of the sampled
  logits (a logistic-normal policy: deterministic acting uses the softmax of the means). The
  compute branch covers the served users that compute on the edge (``z < L``), the bandwidth
  branch every served user, as the environment normalises them. The log-std of each branch is
  a learned scalar. Critic: the server's own entries and pooled user rows (plus the state when
  centralised).

Every layer runs PPO (clipped surrogate, clipped value loss, value normalisation) on GAE
advantages of its own reward: users eq. (25), allocation eq. (26), deployment eq. (24) per
deployment interval. An iteration is ``episodes_per_iteration`` whole episodes of each of the
``n_envs`` copies (200 slots each by default); the episode's end is treated as terminal, which
is exact because every observation and the state carry the episode ``progress``.

Ablations (section V-A) are flags of the same code, so every method gets the same networks,
settings and budget (:data:`METHODS`, :func:`method_config`): H-MAPPO (no Lagrangian,
``lambda = 0``), HC-IPPO-L (critics see only the agent's own observation), H-IPPO (both) and
Heuristic-MAPPO-L (LRU deployment and equal shares with the learned user layer).

Speed: the deployment block ``vec(X)`` of the user observation (J x I entries) is the same
for every user of a copy, so the first layer of the user networks applies its weights to it
once per copy and to the user's own entries per user; likewise the global state once per copy.
This is the same function as one linear layer on the concatenation. The critics do not act,
so the rollout only stores their inputs and evaluates them in one batch per critic at its end
(the parameters do not change during a rollout). Most of an iteration is the PPO update,
whose cost is proportional to ``ppo_epochs``. The following change no number (each is tested
to give bitwise the values of the plain code): the rollout runs in ``torch.inference_mode``
and reads each phase's observation from the previous step's return; categorical heads use
:class:`MaskedCategorical` (the library distribution's arithmetic without its argument
checks, which cost more than the arithmetic on a rollout step's few rows); the deployment
update builds the teacher-forcing inputs and masks once for all passes
(:meth:`DeployPolicy.teacher_inputs`), the allocation update its critic's pooled inputs once;
Adam steps all tensors of a group together (``foreach``). What remains is arithmetic: linear
layers and their gradients, ``tanh``, and the GRU cell of the deployment rollout, whose steps
are sequential.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from edgerl.hcmappo.baselines import (
    STORAGE_MARGIN,
    LruDeployer,
    equal_shares,
    popularity_deployment,
    split_obs,
)
from edgerl.hcmappo.batched import ALLOC_GLOBAL_FEATURES, BatchedHcEnv
from edgerl.hcmappo.catalog import ServiceCatalog
from edgerl.hcmappo.config import HcConfig, make_config
from edgerl.hcmappo.env import HcEnv
from edgerl.rl.attention import QueryKeyScores, SetEncoder, masked_softmax
from edgerl.rl.onpolicy import (
    MASKED_LOGIT,
    LagrangeMultiplier,
    ValueNorm,
    clipped_value_loss,
    gae,
    lagrangian_advantage,
    masked_categorical,
    normalize_advantages,
    ppo_policy_loss,
)
from edgerl.utils.config import Config, config_from_dict
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_torch_save, read_torch_checkpoint
from edgerl.utils.seeding import make_rng

__all__ = [
    "CHECKPOINT_KIND",
    "METHODS",
    "AllocPolicy",
    "MaskedCategorical",
    "DeployPolicy",
    "HcAgent",
    "HcAgentConfig",
    "UserActor",
    "ValueNet",
    "method_config",
]

CHECKPOINT_KIND = "hc-mappo-l"
CHECKPOINT_FORMAT = 1

METHODS: dict[str, dict[str, Any]] = {
    "hc-mappo-l": {
        "lagrangian": True,
        "centralised_critics": True,
        "deploy_policy": "learned",
        "alloc_policy": "learned",
    },
    "hc-ippo-l": {
        "lagrangian": True,
        "centralised_critics": False,
        "deploy_policy": "learned",
        "alloc_policy": "learned",
    },
    "h-mappo": {
        "lagrangian": False,
        "centralised_critics": True,
        "deploy_policy": "learned",
        "alloc_policy": "learned",
    },
    "h-ippo": {
        "lagrangian": False,
        "centralised_critics": False,
        "deploy_policy": "learned",
        "alloc_policy": "learned",
    },
    "heuristic-mappo-l": {
        "lagrangian": True,
        "centralised_critics": True,
        "deploy_policy": "lru",
        "alloc_policy": "equal",
    },
}
"""The learned methods of section V-A as settings of :class:`HcAgentConfig`."""

Callback = Callable[[dict[str, Any]], "bool | None"]
EnvOrConfig = BatchedHcEnv | HcEnv | HcConfig | Mapping[str, Any] | None


class HcAgentConfig(Config):
    """Settings of :class:`HcAgent`; defaults are paper 003 section V-A where it gives them."""

    # ----------------------------------------------------------------- rollouts
    n_envs: int = Field(1, ge=1)
    """B, environment copies stepped together in a rollout (1: an iteration is the paper's
    200-slot collection; more copies give more samples per update at proportional cost)."""

    episodes_per_iteration: int = Field(1, ge=1)
    """Whole episodes of every copy per iteration (episode_slots slots each; paper: 200)."""

    # ----------------------------------------------------------------- PPO (section V-A)
    lr: float = Field(3e-4, gt=0.0)
    """Adam learning rate of every network (paper: 3e-4)."""

    gamma: float = Field(0.99, ge=0.0, le=1.0)
    """Discount per decision step (per slot; per interval for the deployment layer) (paper:
    0.99); used by the allocation layer, and by the user and deployment layers whose own
    discount is None."""

    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    """GAE lambda (paper: 0.95)."""

    user_gamma: float | None = Field(0.0, ge=0.0, le=1.0)
    """Discount of the user layer's reward and cost streams; None uses ``gamma`` (the paper
    shares 0.99 across layers). Our default is 0: a user's choice acts on its own later
    rewards only through the server loads and the next deployments, so with 0.99 its GAE
    advantage also carries the noise of about a hundred later slots; 0 makes it the immediate
    reward of eq. (25) minus the value and learns in far fewer iterations."""

    deploy_gamma: float | None = Field(0.0, ge=0.0, le=1.0)
    """Discount of the deployment layer's reward stream, per deployment interval; None uses
    ``gamma`` (the paper shares 0.99 across layers). Our default is 0. A deployment holds for
    its own interval only: its hits are those of that interval and its migration cost (eq. (23)) is paid by the
    reward of the decision that downloads, so eq. (24) credits each decision with its own
    interval. With 0.99 the GAE advantage of one decision also carries the hits of about
    seventeen later intervals, which depend on later deployments and on the users: on the
    Table I setting (J = 10, K = 50) the reward of one server-interval varies by about 14 hits
    around its server's mean, but its 0.99 return by about 160, so the advantage hardly sees
    whether the decision covered a service. 0 makes it the reward of eq. (24) minus the
    value; what is lost is the credit for keeping a service that saves a later download."""

    clip: float = Field(0.2, ge=0.0)
    """PPO clipping range (paper: 0.2)."""

    value_clip: float = Field(0.2, ge=0.0)
    """Clipping range of the value change in the value loss (MAPPO; normalised units)."""

    ent_user: float = Field(0.05, ge=0.0)
    """Entropy coefficient of the user policy (paper: 0.05)."""

    ent_user_anneal_iterations: int | None = Field(None, ge=1)
    """Iterations over which the user entropy coefficient falls linearly from ``ent_user`` to
    0 (then stays 0): iteration ``n`` (counted from 1 over the agent's whole training) uses
    ``ent_user * max(0, 1 - (n - 1) / N)``. None keeps ``ent_user`` throughout. Our choice,
    not the paper's (it gives one coefficient): the multiplier's dual step (Algorithm 1, line
    18) uses the delay of the sampled actions, and at a constant 0.05 the sampled partition
    points and servers stay spread (80 iterations: 11-14 s sampled against 2.4 s for the
    most likely actions), so lambda keeps rising while the acting policy already meets the
    limit. The deployment and allocation coefficients are not annealed."""

    ent_deploy: float = Field(0.25, ge=0.0)
    """Entropy coefficient of the deployment policy, on its mean step entropy (paper: 0.25)."""

    ent_alloc: float = Field(0.0, ge=0.0)
    """Entropy coefficient of the allocation policy (not given; 0 lets the advantages alone
    set its log-std)."""

    ppo_epochs: int = Field(2, ge=1)
    """Passes over an iteration's samples per update (not given in the paper). The update is
    most of an iteration's time; 2 passes keep the paper's 1000 iterations within an hour on
    two CPU cores (at 4 passes the updates alone take about 3.6 s per iteration)."""

    num_minibatches: int = Field(2, ge=1)
    """Minibatches per pass of the deployment and allocation layers (split by decision and
    copy), and of the user layer when ``user_minibatches`` is None."""

    user_minibatches: int | None = Field(8, ge=1)
    """Minibatches per pass of the user layer (split by slot and copy; not given in the
    paper). Its 200 slots x K users are plenty of rows for 8 gradient steps per pass, which
    learn much faster than 2 at nearly the same cost; None: ``num_minibatches``."""

    max_grad_norm: float = Field(10.0, gt=0.0)
    """Gradient norm clip per network (MAPPO's default)."""

    value_loss_coef: float = Field(1.0, ge=0.0)
    """Weight of the value losses."""

    huber_delta: float | None = Field(10.0, gt=0.0)
    """Huber threshold of the value loss (MAPPO's default); None for the squared error."""

    value_norm: bool = True
    """Normalise value targets with running statistics (MAPPO's ValueNorm)."""

    # ----------------------------------------------------------------- Lagrangian (eq. (33))
    lagrangian: bool = True
    """Constrain the mean user delay with a Lagrange multiplier; False keeps lambda = 0."""

    lagrange_init: float = Field(0.01, ge=0.0)
    """lambda_0 (paper: 0.01)."""

    lagrange_lr: float = Field(0.01, gt=0.0)
    """alpha_lambda, dual step per second of mean delay above the limit (paper: 0.01)."""

    lagrange_max: float = Field(100.0, ge=0.0)
    """Upper end of the projection of lambda (paper: [0, 100])."""

    # ----------------------------------------------------------------- ablation switches
    centralised_critics: bool = True
    """Critics see the global state (CTDE); False: only the agent's own observation (IPPO)."""

    deploy_policy: Literal["learned", "lru", "popularity"] = "learned"
    """Deployment layer: the auto-regressive policy, or an LRU / popularity rule."""

    alloc_policy: Literal["learned", "equal"] = "learned"
    """Allocation layer: the attention policy, or equal shares."""

    # ----------------------------------------------------------------- networks (section V-A)
    user_hidden: int = Field(256, ge=1)
    """Width of the user actor's two Tanh layers (paper: 256)."""

    critic_hidden: int = Field(256, ge=1)
    """Width of the critics' two Tanh layers (paper: 256)."""

    split_hidden: int = Field(64, ge=1)
    """Hidden width of the split head (on the trunk and the chosen server)."""

    deploy_hidden: int = Field(256, ge=1)
    """GRU hidden size of the deployment policy (paper: 256)."""

    deploy_sample_when_deterministic: bool = True
    """Acting with ``deterministic=True`` still draws the deployment from its policy (with
    the agent's seeded generator). The deployment policy keeps a high entropy (coefficient
    0.25), and taking the most likely service at every step gives nearly the same services on
    every server and leaves the rest cached nowhere: the homogeneous strategy section IV-A
    warns about. False takes the most likely service at every step."""

    deploy_stop_action: bool = False
    """Let the deployment sequence end early with a stop action (the paper ends it only when
    nothing fits)."""

    alloc_dim: int = Field(128, ge=1)
    """Embedding size of the allocation policy's attention (paper: 128)."""

    alloc_heads: int = Field(4, ge=1)
    """Attention heads of the allocation set encoder (divides alloc_dim)."""

    alloc_layers: int = Field(1, ge=1)
    """Transformer blocks of the allocation set encoder."""

    alloc_log_std_init: float = -0.5
    """Initial log standard deviation of the allocation logits."""


def method_config(method: str, overrides: Mapping[str, Any] | None = None) -> HcAgentConfig:
    """The agent config of a learned method (:data:`METHODS`) with shared overrides.

    Overrides that set a method switch (``lagrangian``, ``centralised_critics``,
    ``deploy_policy``, ``alloc_policy``) are refused: they would turn one method into another.

    Raises:
        InputError: On an unknown method, a switch in ``overrides`` or a bad field.
    """
    flags = METHODS.get(method)
    if flags is None:
        raise InputError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    data = dict(overrides or {})
    clash = sorted(set(data) & set(flags))
    if clash:
        raise InputError(
            f"agent settings {clash} choose the method; set 'method' instead "
            f"(one of {', '.join(METHODS)})"
        )
    data.update(flags)
    return config_from_dict(HcAgentConfig, data, "agent")


# --------------------------------------------------------------------------- networks


def _ortho(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


_TANH_GAIN = nn.init.calculate_gain("tanh")


class MaskedCategorical:
    """Masked categorical distribution with the arithmetic of :func:`masked_categorical`.

    The same operations in the same order as ``masked_categorical(logits, mask)`` (invalid
    actions at :data:`~edgerl.rl.onpolicy.MASKED_LOGIT`, then
    ``torch.distributions.Categorical``): normalised logits ``z - logsumexp(z)``, ``probs =
    softmax`` of those, ``log_prob`` a gather, ``entropy = -sum(clamp(logits) probs)``; so every
    number, and its gradient, is bitwise that of the library object. It skips the
    distribution's argument validation, which costs more than the arithmetic at the sizes of
    a rollout step; a row with no valid action is still refused when ``check`` is set.

    Args:
        logits: ``(..., n_actions)`` unnormalised log-probabilities.
        mask: ``(..., n_actions)`` bool, true where the action is allowed.
        check: Raise :class:`InputError` when some row allows no action (callers whose masks
            always allow one, by construction, pass False).
    """

    __slots__ = ("_probs", "logits")

    def __init__(self, logits: Tensor, mask: Tensor, check: bool = True) -> None:
        if mask.dtype != torch.bool:
            mask = mask != 0
        if check and not bool(mask.any(-1).all()):
            masked_categorical(logits, mask)  # raises its InputError naming the rows
        fill = max(MASKED_LOGIT, torch.finfo(logits.dtype).min / 2)
        z = torch.where(mask, logits, logits.new_tensor(fill))
        self.logits = z - z.logsumexp(dim=-1, keepdim=True)
        self._probs: Tensor | None = None

    @property
    def probs(self) -> Tensor:
        """Probabilities ``(..., n_actions)`` (softmax of the normalised logits)."""
        if self._probs is None:
            self._probs = F.softmax(self.logits, dim=-1)
        return self._probs

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-probability of the actions ``value`` (the batch shape of the logits)."""
        return self.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        """Entropy per row."""
        logits = torch.clamp(self.logits, min=torch.finfo(self.logits.dtype).min)
        return -(logits * self.probs).sum(-1)


def _sample_categorical(
    dist: torch.distributions.Categorical | MaskedCategorical, gen: torch.Generator | None
) -> Tensor:
    probs = dist.probs
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=gen).reshape(probs.shape[:-1])


class ValueNet(nn.Module):
    """MLP critic over per-agent entries plus entries shared by a group of agents.

    ``V = W3 tanh(W2 tanh(W_l local + W_s shared + b) + b2) + b3``: one Tanh MLP on the
    concatenation ``[local, shared]``, with the shared part's product computed once per group.

    Args:
        local_dim: Entries per agent.
        shared_dim: Entries per group (0: none).
        hidden: Width of both hidden layers.
    """

    def __init__(self, local_dim: int, shared_dim: int, hidden: int) -> None:
        super().__init__()
        self.local_in = _ortho(nn.Linear(local_dim, hidden), _TANH_GAIN)
        self.shared_in = (
            _ortho(nn.Linear(shared_dim, hidden, bias=False), _TANH_GAIN) if shared_dim else None
        )
        self.body = nn.Sequential(
            nn.Tanh(),
            _ortho(nn.Linear(hidden, hidden), _TANH_GAIN),
            nn.Tanh(),
            _ortho(nn.Linear(hidden, 1), 1.0),
        )

    def forward(self, local: Tensor, shared: Tensor | None = None) -> Tensor:
        """``local`` (G, A, Dl), ``shared`` (G, Ds) -> values (G, A)."""
        h = self.local_in(local)
        if self.shared_in is not None:
            if shared is None:
                raise InputError("ValueNet: this critic needs its shared entries")
            h = h + self.shared_in(shared).unsqueeze(-2)
        return self.body(h).squeeze(-1)


class UserActor(nn.Module):
    """Shared user policy: a Tanh trunk and two masked heads, server then split (eq. (20)).

    The server logits are a per-server-index linear head on the trunk plus a score shared by
    all servers, computed from the trunk and that server's own entries of the observation
    (uplink and downlink quality, whether it caches the request, its last load): the same
    rule applies to every server, so "a server that caches my service over a good channel"
    is learnt once rather than per index. The split head sees the trunk, the chosen server
    (one-hot) and that server's entries.

    Args:
        local_dim: The user's own observation entries (all but the deployment block).
        shared_dim: Entries of the deployment block (the same for every user of a copy).
        n_servers: J.
        n_splits: Z.
        hidden: Trunk width.
        split_hidden: Hidden width of the split head and of the per-server score.
        server_features: (F, J) indices into the local entries of each server's F entries.
    """

    def __init__(
        self,
        local_dim: int,
        shared_dim: int,
        n_servers: int,
        n_splits: int,
        hidden: int,
        split_hidden: int,
        server_features: Tensor | np.ndarray,
    ) -> None:
        super().__init__()
        self.n_servers = int(n_servers)
        idx = torch.as_tensor(np.asarray(server_features), dtype=torch.long)
        if idx.ndim != 2 or idx.shape[1] != n_servers:
            raise InputError(
                f"UserActor: server_features must be (F, {n_servers}) indices, got {tuple(idx.shape)}"
            )
        self.register_buffer("server_features", idx, persistent=False)
        n_f = idx.shape[0]
        self.local_in = _ortho(nn.Linear(local_dim, hidden), _TANH_GAIN)
        self.shared_in = _ortho(nn.Linear(shared_dim, hidden, bias=False), _TANH_GAIN)
        self.body = nn.Sequential(
            nn.Tanh(), _ortho(nn.Linear(hidden, hidden), _TANH_GAIN), nn.Tanh()
        )
        self.server_head = _ortho(nn.Linear(hidden, n_servers), 0.01)
        self.score_ctx = _ortho(nn.Linear(hidden, split_hidden), _TANH_GAIN)
        self.score_feat = _ortho(nn.Linear(n_f, split_hidden, bias=False), _TANH_GAIN)
        self.score_out = _ortho(nn.Linear(split_hidden, 1), 0.01)
        self.split_head = nn.Sequential(
            _ortho(nn.Linear(hidden + n_servers + n_f, split_hidden), _TANH_GAIN),
            nn.Tanh(),
            _ortho(nn.Linear(split_hidden, n_splits), 0.01),
        )

    def forward(
        self,
        local: Tensor,
        shared: Tensor,
        server_mask: Tensor,
        split_mask: Tensor,
        server: Tensor | None = None,
        split: Tensor | None = None,
        *,
        deterministic: bool = False,
        gen: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample (or score the given) actions.

        Args:
            local: (G, K, Dl). shared: (G, Ds). server_mask: (G, K, J). split_mask: (G, K, Z).
            server, split: (G, K) actions to score; None samples them (argmax when
                ``deterministic``).

        Returns:
            ``(server, split, log_prob, entropy)``, each (G, K); the entropy is that of the
            server head plus that of the split head given the server.
        """
        h = self.body(self.local_in(local) + self.shared_in(shared).unsqueeze(-2))
        feats = local[..., self.server_features].transpose(-1, -2)  # (G, K, J, F)
        score = self.score_out(
            torch.tanh(self.score_ctx(h).unsqueeze(-2) + self.score_feat(feats))
        ).squeeze(-1)
        d_srv = MaskedCategorical(self.server_head(h) + score, server_mask)
        if server is None:
            server = d_srv.logits.argmax(-1) if deterministic else _sample_categorical(d_srv, gen)
        onehot = F.one_hot(server, self.n_servers).to(h.dtype)
        chosen = feats.gather(
            -2, server[..., None, None].expand(*server.shape, 1, feats.shape[-1])
        ).squeeze(-2)
        d_spl = MaskedCategorical(self.split_head(torch.cat([h, onehot, chosen], -1)), split_mask)
        if split is None:
            split = d_spl.logits.argmax(-1) if deterministic else _sample_categorical(d_spl, gen)
        logp = d_srv.log_prob(server) + d_spl.log_prob(split)
        ent = d_srv.entropy() + d_spl.entropy()
        return server, split, logp, ent


@dataclass
class DeploySample:
    """One auto-regressive deployment decision per server (rows ``N = B x J``).

    Attributes:
        actions: (N, S) int64 chosen service per step (``I`` = stop), -1 after the end.
        deployment: (N, I) bool services chosen.
        log_prob: (N,) sum of the step log-probabilities (eq. (30)).
        entropy: (N,) mean step entropy.
        value: (N,) mean step value (eq. (29)), normalised units.
        masks: (N, S, I + stop) bool masks of every step (all False after the end).
    """

    actions: Tensor
    deployment: Tensor
    log_prob: Tensor
    entropy: Tensor
    value: Tensor
    masks: Tensor


class DeployPolicy(nn.Module):
    """Auto-regressive deployment policy with a GRU and step-wise values (section IV-B1).

    Args:
        obs_dim: Deployment observation size.
        n_services: I.
        hidden: GRU hidden size.
        state_dim: Global state size for the value (0: the value sees only the GRU state).
        stop_action: Add a stop action (index I) that is always allowed.
    """

    def __init__(
        self, obs_dim: int, n_services: int, hidden: int, state_dim: int, stop_action: bool
    ) -> None:
        super().__init__()
        self.n_services = int(n_services)
        self.stop = bool(stop_action)
        self.n_actions = self.n_services + int(self.stop)
        self.encode = nn.Sequential(_ortho(nn.Linear(obs_dim, hidden), _TANH_GAIN), nn.Tanh())
        self.gru = nn.GRU(2 * self.n_services + 1, hidden, batch_first=True)
        for name, p in self.gru.named_parameters():
            if "weight" in name:
                nn.init.orthogonal_(p)
            else:
                nn.init.zeros_(p)
        self.logits = _ortho(nn.Linear(hidden, self.n_actions), 0.01)
        self.v_in = _ortho(nn.Linear(hidden, hidden), _TANH_GAIN)
        self.v_state = (
            _ortho(nn.Linear(state_dim, hidden, bias=False), _TANH_GAIN) if state_dim else None
        )
        self.v_out = nn.Sequential(nn.Tanh(), _ortho(nn.Linear(hidden, 1), 1.0))

    # The two functions below are the only place the storage mask is defined; sampling and
    # evaluation call them in the same order on the same float64 numbers.
    def step_mask(self, selected: Tensor, used: Tensor, size: Tensor) -> Tensor:
        """(N, I + stop) allowed actions: not chosen yet and fitting the storage left (C7)."""
        fits = ~selected & (used.unsqueeze(-1) + size <= 1.0 - STORAGE_MARGIN)
        if self.stop:
            fits = torch.cat([fits, torch.ones_like(fits[:, :1])], -1)
        return fits

    def advance(
        self, selected: Tensor, used: Tensor, size: Tensor, action: Tensor, active: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Book the services chosen at one step (stop and inactive rows change nothing)."""
        real = active & (action >= 0) & (action < self.n_services)
        idx = action.clamp(0, self.n_services - 1)
        add = F.one_hot(idx, self.n_services).bool() & real.unsqueeze(-1)
        gain = torch.where(
            real, size.gather(1, idx.unsqueeze(-1)).squeeze(-1), torch.zeros_like(used)
        )
        return selected | add, used + gain

    def _input(self, prev: Tensor, selected: Tensor) -> Tensor:
        return torch.cat([F.one_hot(prev, self.n_services + 1).float(), selected.float()], -1)

    def _values(self, hs: Tensor, state_proj: Tensor | None) -> Tensor:
        z = self.v_in(hs)
        if state_proj is not None:
            z = z + state_proj.unsqueeze(1)
        return self.v_out(z).squeeze(-1)

    def _state_proj(self, state: Tensor | None) -> Tensor | None:
        if self.v_state is None:
            return None
        if state is None:
            raise InputError("DeployPolicy: the centralised value needs the global state")
        return self.v_state(state)

    def sample(
        self,
        obs: Tensor,
        size: Tensor,
        state: Tensor | None = None,
        *,
        deterministic: bool = False,
        gen: torch.Generator | None = None,
    ) -> DeploySample:
        """Draw one deployment per row, step by step.

        Args:
            obs: (N, D) deployment observations.
            size: (N, I) float64 service size / storage of the row's server.
            state: (N, Ds) global state per row, for the centralised value (without it the
                returned value is 0).
            deterministic: Take the most likely service at every step.
            gen: Generator of the draws.
        """
        n, n_i = size.shape
        steps = self.n_actions
        hx = self.encode(obs)
        gru = self.gru
        selected = torch.zeros((n, n_i), dtype=torch.bool)
        used = torch.zeros(n, dtype=size.dtype)
        prev = torch.full((n,), n_i, dtype=torch.long)
        alive = torch.ones(n, dtype=torch.bool)
        actions = torch.full((n, steps), -1, dtype=torch.long)
        masks = torch.zeros((n, steps, self.n_actions), dtype=torch.bool)
        logp = torch.zeros(n)
        ent = torch.zeros(n)
        count = torch.zeros(n)
        zero = torch.zeros(n)
        no_action = torch.full((n,), -1, dtype=torch.long)
        # Ended rows get a harmless mask (action 0 allowed); their draws are discarded below.
        ended_mask = F.one_hot(torch.zeros(n, dtype=torch.long), self.n_actions).bool()
        hs = []
        for t in range(steps):
            mask = self.step_mask(selected, used, size)
            active = alive & mask[:, :n_i].any(-1)
            if not bool(active.any()):
                break
            # One step of the GRU's own cell (the same function nn.GRU applies per step).
            hx = torch.gru_cell(
                self._input(prev, selected),
                hx,
                gru.weight_ih_l0,
                gru.weight_hh_l0,
                gru.bias_ih_l0,
                gru.bias_hh_l0,
            )
            h = hx
            hs.append(h)
            row_mask = torch.where(active.unsqueeze(-1), mask, ended_mask)
            dist = MaskedCategorical(self.logits(h), row_mask, check=False)
            a = dist.logits.argmax(-1) if deterministic else _sample_categorical(dist, gen)
            logp = logp + torch.where(active, dist.log_prob(a), zero)
            ent = ent + torch.where(active, dist.entropy(), zero)
            count = count + active.float()
            actions[:, t] = torch.where(active, a, no_action)
            masks[:, t] = mask & active.unsqueeze(-1)
            selected, used = self.advance(selected, used, size, a, active)
            prev = torch.where(active, a, prev)
            alive = active & (a < n_i)
        if hs and (state is not None or self.v_state is None):
            vs = self._values(torch.stack(hs, 1), self._state_proj(state))
            valid = (actions[:, : len(hs)] >= 0).float()
            value = (vs * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        else:  # acting without the state: the value is not needed
            value = torch.zeros(n)
        return DeploySample(
            actions=actions,
            deployment=selected,
            log_prob=logp,
            entropy=ent / count.clamp_min(1.0),
            value=value,
            masks=masks,
        )

    def teacher_inputs(self, size: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """GRU inputs and step masks of given action sequences (they depend on no parameter).

        Rebuilt with :meth:`step_mask` / :meth:`advance` from the actions, in the order
        :meth:`sample` applied them. Each row's entries depend on that row alone, so the
        inputs of a whole update can be built once and indexed per minibatch.

        Args:
            size: (N, I) float64. actions: (N, S) from :meth:`sample`.

        Returns:
            ``(inputs (N, L, 2 I + 1) float32, masks (N, L, I + stop) bool)`` over the first
            ``L = max(1, longest sequence)`` steps; masks are False after a row's end.
        """
        n, n_i = size.shape
        length = int((actions >= 0).sum(1).max().item()) if actions.numel() else 0
        length = max(length, 1)
        acts = actions[:, :length]
        selected = torch.zeros((n, n_i), dtype=torch.bool)
        used = torch.zeros(n, dtype=size.dtype)
        prev = torch.full((n,), n_i, dtype=torch.long)
        inputs, masks = [], []
        for t in range(length):
            a = acts[:, t]
            active = a >= 0
            mask = self.step_mask(selected, used, size)
            inputs.append(self._input(prev, selected))
            masks.append(mask & active.unsqueeze(-1))
            selected, used = self.advance(selected, used, size, a, active)
            prev = torch.where(active, a, prev)
        return torch.stack(inputs, 1), torch.stack(masks, 1)

    def evaluate(
        self,
        obs: Tensor,
        size: Tensor,
        actions: Tensor,
        state: Tensor | None = None,
        *,
        prepared: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Log-probability, mean step entropy, value and masks of given action sequences.

        The masks are rebuilt with :meth:`step_mask` / :meth:`advance` from the actions
        (:meth:`teacher_inputs`), and the GRU runs over the whole sequence at once (teacher
        forcing).

        Args:
            obs: (N, D). size: (N, I) float64. actions: (N, S) from :meth:`sample`.
            state: (N, Ds) for the centralised value.
            prepared: ``teacher_inputs(size, actions)`` of these rows, possibly built for a
                larger set of rows and indexed (extra steps past the longest sequence here
                are cut); None builds them.

        Returns:
            ``(log_prob (N,), entropy (N,), value (N,), masks (N, S, I + stop))``.
        """
        n = size.shape[0]
        length = int((actions >= 0).sum(1).max().item()) if actions.numel() else 0
        length = max(length, 1)
        acts = actions[:, :length]
        if prepared is None:
            prepared = self.teacher_inputs(size, actions)
        inputs, m = prepared[0][:, :length], prepared[1][:, :length]
        out, _ = self.gru(inputs, self.encode(obs).unsqueeze(0))
        valid = acts >= 0
        # Rows after their end get a harmless mask; their terms are zeroed.
        safe = torch.where(
            valid.unsqueeze(-1), m, F.one_hot(torch.zeros_like(acts), self.n_actions).bool()
        )
        dist = MaskedCategorical(self.logits(out), safe, check=False)
        vf = valid.float()
        logp = (dist.log_prob(acts.clamp_min(0)) * vf).sum(1)
        count = vf.sum(1).clamp_min(1.0)
        ent = (dist.entropy() * vf).sum(1) / count
        vs = self._values(out, self._state_proj(state))
        value = (vs * vf).sum(1) / count
        full = torch.zeros((n, actions.shape[1], self.n_actions), dtype=torch.bool)
        full[:, :length] = m
        return logp, ent, value, full


class AllocPolicy(nn.Module):
    """Attention allocation policy with a compute and a bandwidth branch (section IV-B3).

    Args:
        user_features: Features of one user row of the allocation observation.
        global_features: Server-level entries of the allocation observation.
        dim: Embedding size (paper: 128).
        n_heads: Attention heads.
        n_layers: Transformer blocks.
        log_std_init: Initial log-std of both branches.
    """

    def __init__(
        self,
        user_features: int,
        global_features: int,
        dim: int,
        n_heads: int,
        n_layers: int,
        log_std_init: float,
    ) -> None:
        super().__init__()
        self.encoder = SetEncoder(user_features, dim, n_heads, n_layers)
        self.context = nn.Sequential(
            _ortho(nn.Linear(global_features + dim, dim), _TANH_GAIN), nn.Tanh()
        )
        key_dim = max(1, dim // 2)
        self.comp = QueryKeyScores(dim, dim, key_dim)
        self.band = QueryKeyScores(dim, dim, key_dim)
        self.log_std = nn.Parameter(torch.full((2,), float(log_std_init)))

    def means(self, users: Tensor, served: Tensor, globals_: Tensor) -> Tensor:
        """(N, n, F), (N, n) bool, (N, G) -> (N, 2, n) logit means (0 where not served)."""
        e = self.encoder(users, served)
        cnt = served.sum(-1, keepdim=True).clamp_min(1).to(e.dtype)
        pooled = e.sum(-2) / cnt
        g = self.context(torch.cat([globals_, pooled], -1))
        mu = torch.stack([self.comp(g, e, served), self.band(g, e, served)], -2)
        return torch.where(served.unsqueeze(-2), mu, torch.zeros_like(mu))

    def forward(
        self,
        users: Tensor,
        valid: Tensor,
        globals_: Tensor,
        latent: Tensor | None = None,
        *,
        deterministic: bool = False,
        gen: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample (or score) the per-user logits of both branches.

        Args:
            users: (N, n, F) packed user rows. valid: (N, 2, n) bool: the compute and the
                bandwidth branch's users. globals_: (N, G).
            latent: (N, 2, n) logits to score; None samples them (the means when
                ``deterministic``).

        Returns:
            ``(latent, weights (N, 2, n), log_prob (N,), entropy (N,))``; weights are the
            masked softmax of the latent per branch.
        """
        served = valid.any(-2)
        mu = self.means(users, served, globals_)
        std = self.log_std.exp().view(1, 2, 1)
        if latent is None:
            latent = mu if deterministic else mu + std * torch.randn(mu.shape, generator=gen)
            latent = torch.where(valid, latent, torch.zeros_like(latent))
        vf = valid.to(mu.dtype)
        log_norm = -0.5 * math.log(2 * math.pi) - self.log_std.view(1, 2, 1)
        lp = -0.5 * ((latent - mu) / std) ** 2 + log_norm
        logp = (lp * vf).sum((-1, -2))
        ent = ((0.5 + 0.5 * math.log(2 * math.pi) + self.log_std.view(1, 2, 1)) * vf).sum((-1, -2))
        weights = masked_softmax(latent, valid)
        return latent, weights, logp, ent


def pack_sets(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Indices that bring each row's true entries first, cut to the longest row.

    Args:
        mask: (N, K) bool.

    Returns:
        ``(index (N, n), packed_mask (N, n))`` with ``n = max(1, max row count)``; gather
        with ``index`` to pack, scatter to it to unpack (padding entries are masked).
    """
    n = max(1, int(mask.sum(-1).max().item())) if mask.numel() else 1
    order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)[:, :n]
    return order, mask.gather(1, order)


def _size_buckets(served: Tensor, has: Tensor, min_rows: int = 256) -> list[Tensor]:
    """Row indices of the sets with a user, grouped by set size so that packing pads little.

    Sizes fall into the buckets (0, 2], (2, 4], (4, 8], ... (one bucket when there are fewer
    than ``min_rows`` rows, where the call overhead would outweigh the padding saved).
    """
    rows = torch.nonzero(has).squeeze(-1)
    if rows.numel() < min_rows:
        return [rows] if rows.numel() else []
    cnt = served[rows].sum(-1).float()
    bucket = torch.ceil(torch.log2(cnt.clamp_min(1.0))).long().clamp_min(1)
    return [rows[bucket == b] for b in torch.unique(bucket)]


# --------------------------------------------------------------------------- agent


@dataclass
class _Layouts:
    user_local: np.ndarray  # user obs columns other than the deployment block
    user_dep: slice
    alloc_globals: int
    alloc_features: int
    needs_compute: int
    size_fraction: slice


def _env_of(
    env_or_config: EnvOrConfig, catalog: ServiceCatalog | None, leakage: Any
) -> tuple[HcConfig, ServiceCatalog | None, Any]:
    if isinstance(env_or_config, HcEnv):
        env_or_config = env_or_config.core
    if isinstance(env_or_config, BatchedHcEnv):
        return env_or_config.config, env_or_config.catalog, None
    if env_or_config is None or isinstance(env_or_config, (HcConfig, Mapping)):
        return make_config(env_or_config), catalog, leakage
    raise InputError(
        f"env_or_config: expected a BatchedHcEnv, HcEnv, HcConfig or mapping, got {type(env_or_config).__name__}"
    )


def layout_of(env: BatchedHcEnv) -> dict[str, Any]:
    """What fixes the agent's network shapes: J, K, the catalog and the observation sizes."""
    return {
        "n_servers": int(env.n_servers),
        "n_users": int(env.n_users),
        "n_services": int(env.n_services),
        "n_splits": int(env.n_splits),
        "models": list(env.catalog.model_names),
        "services_per_model": int(env.catalog.services_per_model),
        "obs_dims": {k: int(v) for k, v in env.obs_dims.items()},
    }


class HcAgent:
    """HC-MAPPO-L and its ablations on :class:`BatchedHcEnv` (see the module docstring).

    Args:
        env_or_config: The environment (a :class:`BatchedHcEnv` or :class:`HcEnv`: its config
            and catalog are reused) or an :class:`HcConfig` / mapping / None (defaults).
        config: :class:`HcAgentConfig` or a mapping of its fields.
        seed: Seeds the networks, the action draws, the minibatch order and the training
            copies (copy ``b`` of the first reset gets ``seed + b``).
        catalog: Service catalog, when a config is given (built from it otherwise).
        leakage: Leakage tables, when the catalog is built here.

    Raises:
        InputError: On a bad config.
    """

    def __init__(
        self,
        env_or_config: EnvOrConfig = None,
        config: HcAgentConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        *,
        catalog: ServiceCatalog | None = None,
        leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    ) -> None:
        if isinstance(config, HcAgentConfig):
            self.config = config
        else:
            self.config = config_from_dict(HcAgentConfig, dict(config or {}), "agent")
        cfg = self.config
        if int(seed) < 0:
            raise InputError(f"seed must be >= 0, got {seed!r}")
        self.seed = int(seed)
        env_cfg, cat, leak = _env_of(env_or_config, catalog, leakage)
        self.env = BatchedHcEnv(
            cfg.n_envs, env_cfg, catalog=cat, leakage=leak if cat is None else None
        )
        self.env_config: HcConfig = self.env.config
        env = self.env
        self.layout = layout_of(env)
        lay_u = env.layouts["user"]
        dep = lay_u["deployment"]
        total_u = env.obs_dims["user"]
        self._lay = _Layouts(
            user_local=np.r_[0 : dep.start, dep.stop : total_u],
            user_dep=dep,
            alloc_globals=len(ALLOC_GLOBAL_FEATURES),
            alloc_features=(env.obs_dims["alloc"] - len(ALLOC_GLOBAL_FEATURES)) // env.n_users,
            needs_compute=env.layouts["alloc_user"]["needs_compute"].start,
            size_fraction=env.layouts["deploy"]["size_fraction"],
        )
        self._user_local_idx = torch.as_tensor(self._lay.user_local)
        n_local = len(self._lay.user_local)
        n_dep = dep.stop - dep.start
        d_state = env.obs_dims["state"]
        central = cfg.centralised_critics
        a_local = 2 * self._lay.alloc_features + self._lay.alloc_globals

        self._gen = torch.Generator().manual_seed(self.seed)
        self.rng = make_rng(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.user_actor = UserActor(
                n_local,
                n_dep,
                env.n_servers,
                env.n_splits,
                cfg.user_hidden,
                cfg.split_hidden,
                self._server_feature_index(),
            )
            # IPPO critics see the user's own observation (own entries + deployment block);
            # centralised ones the global state (which holds the deployment) instead.
            self.user_critic = ValueNet(n_local, d_state if central else n_dep, cfg.critic_hidden)
            self.cost_critic = (
                ValueNet(n_local, d_state if central else n_dep, cfg.critic_hidden)
                if cfg.lagrangian
                else None
            )
            self.deploy_policy = (
                DeployPolicy(
                    env.obs_dims["deploy"],
                    env.n_services,
                    cfg.deploy_hidden,
                    d_state if central else 0,
                    cfg.deploy_stop_action,
                )
                if cfg.deploy_policy == "learned"
                else None
            )
            if cfg.alloc_policy == "learned":
                self.alloc_policy: AllocPolicy | None = AllocPolicy(
                    self._lay.alloc_features,
                    self._lay.alloc_globals,
                    cfg.alloc_dim,
                    cfg.alloc_heads,
                    cfg.alloc_layers,
                    cfg.alloc_log_std_init,
                )
                self.alloc_critic: ValueNet | None = ValueNet(
                    a_local, d_state if central else 0, cfg.critic_hidden
                )
            else:
                self.alloc_policy = None
                self.alloc_critic = None
        self.norms: dict[str, ValueNorm] = {}
        if cfg.value_norm:
            self.norms = {k: ValueNorm() for k in ("user", "cost", "alloc", "deploy")}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "user": torch.optim.Adam(
                [
                    p
                    for m in (self.user_actor, self.user_critic, self.cost_critic)
                    if m is not None
                    for p in m.parameters()
                ],
                lr=cfg.lr,
                foreach=True,
            )
        }
        if self.deploy_policy is not None:
            self.optimizers["deploy"] = torch.optim.Adam(
                self.deploy_policy.parameters(), lr=cfg.lr, foreach=True
            )
        if self.alloc_policy is not None and self.alloc_critic is not None:
            self.optimizers["alloc"] = torch.optim.Adam(
                [*self.alloc_policy.parameters(), *self.alloc_critic.parameters()],
                lr=cfg.lr,
                foreach=True,
            )
        if cfg.lagrangian:
            self.lagrange = LagrangeMultiplier(
                cfg.lagrange_init, cfg.lagrange_lr, 0.0, cfg.lagrange_max
            )
        else:
            self.lagrange = LagrangeMultiplier(0.0, 1.0, 0.0, 0.0)
        # One LRU record for the training copies, another for act() (evaluation episodes).
        self._lru = LruDeployer(env.n_services) if cfg.deploy_policy == "lru" else None
        self._lru_act = LruDeployer(env.n_services) if cfg.deploy_policy == "lru" else None
        self.iterations = 0
        self.num_timesteps = 0
        self._started = False

    # ----------------------------------------------------------------- helpers

    def _server_feature_index(self) -> np.ndarray:
        """(4, J) positions, in the local user entries, of each server's own entries."""
        lay = self.env.layouts["user"]
        pos = {int(c): i for i, c in enumerate(self._lay.user_local)}
        rows = []
        for name in ("uplink_se", "downlink_se", "cached", "load"):
            sl = lay[name]
            rows.append([pos[c] for c in range(sl.start, sl.stop)])
        return np.asarray(rows, dtype=np.int64)

    @property
    def lambda_(self) -> float:
        """The current Lagrange multiplier (0 without the Lagrangian)."""
        return self.lagrange.value

    def user_entropy_coef(self, iteration: int | None = None) -> float:
        """Entropy coefficient of the user policy in the update of an iteration.

        Args:
            iteration: 1-based iteration (default: the next one, ``self.iterations + 1``).

        Returns:
            ``ent_user``, or with ``ent_user_anneal_iterations = N`` the linear anneal
            ``ent_user * max(0, 1 - (iteration - 1) / N)``.
        """
        cfg = self.config
        n = self.iterations + 1 if iteration is None else int(iteration)
        if cfg.ent_user_anneal_iterations is None:
            return float(cfg.ent_user)
        return float(cfg.ent_user * max(0.0, 1.0 - (n - 1) / cfg.ent_user_anneal_iterations))

    def _denorm(self, key: str, v: Tensor) -> np.ndarray:
        if key in self.norms:
            return np.asarray(self.norms[key].denormalize(v.double()).numpy())
        return v.double().numpy()

    def _user_inputs(self, user_obs: np.ndarray) -> tuple[Tensor, Tensor]:
        o = torch.as_tensor(user_obs)
        local = o[..., self._user_local_idx]
        dep = o[..., 0, self._lay.user_dep]
        return local, dep

    def _alloc_inputs(
        self, alloc_obs: np.ndarray, served: np.ndarray
    ) -> tuple[Tensor, Tensor, Tensor]:
        """users (B, J, K, F), globals (B, J, G), valid (B, J, 2, K)."""
        o = torch.as_tensor(alloc_obs)
        b, j, _ = o.shape
        g = self._lay.alloc_globals
        users = o[..., g:].reshape(b, j, self.env.n_users, self._lay.alloc_features)
        srv = torch.as_tensor(served, dtype=torch.bool)
        comp = srv & (users[..., self._lay.needs_compute] > 0.5)
        return users, o[..., :g], torch.stack([comp, srv], -2)

    def _alloc_critic_local(self, users: Tensor, globals_: Tensor, served: Tensor) -> Tensor:
        m = served.unsqueeze(-1).to(users.dtype)
        cnt = m.sum(-2).clamp_min(1.0)
        mean = (users * m).sum(-2) / cnt
        mx = torch.where(served.unsqueeze(-1), users, torch.zeros_like(users)).amax(-2)
        return torch.cat([globals_, mean, mx], -1)

    def _alloc_run(
        self,
        users: Tensor,
        globals_: Tensor,
        valid: Tensor,
        latent: Tensor | None = None,
        *,
        deterministic: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Run the allocation policy on rows (..., K) with packing; returns unpacked tensors.

        Returns:
            ``(latent (R, 2, K), weights (R, 2, K), log_prob (R,), entropy (R,), has (R,))``
            over the flattened rows R; ``has`` marks rows with at least one valid user.
        """
        assert self.alloc_policy is not None
        lead = users.shape[:-2]
        k, f = users.shape[-2:]
        u = users.reshape(-1, k, f)
        v = valid.reshape(-1, 2, k)
        r = u.shape[0]
        served = v.any(-2)
        has = v.any(-1).any(-1)
        lat_out = torch.zeros((r, 2, k))
        w_out = torch.zeros((r, 2, k))
        logp = torch.zeros(r)
        ent = torch.zeros(r)
        g_flat = globals_.reshape(-1, globals_.shape[-1])
        lat_flat = latent.reshape(-1, 2, k) if latent is not None else None
        for rows in _size_buckets(served, has):
            idx, _ = pack_sets(served[rows])
            ix = idx.unsqueeze(1).expand(-1, 2, -1)
            pu = u[rows].gather(1, idx.unsqueeze(-1).expand(-1, -1, f))
            pv = v[rows].gather(2, ix)
            pl = lat_flat[rows].gather(2, ix) if lat_flat is not None else None
            lat, w, lp, en = self.alloc_policy(
                pu, pv, g_flat[rows], pl, deterministic=deterministic, gen=self._gen
            )
            lat_out = lat_out.index_put(
                (rows,), torch.zeros((rows.numel(), 2, k)).scatter(2, ix, lat)
            )
            w_out = w_out.index_put((rows,), torch.zeros((rows.numel(), 2, k)).scatter(2, ix, w))
            logp = logp.index_put((rows,), lp)
            ent = ent.index_put((rows,), en)
        return (
            lat_out.reshape(*lead, 2, k),
            w_out.reshape(*lead, 2, k),
            logp.reshape(lead),
            ent.reshape(lead),
            has.reshape(lead),
        )

    def _deploy_rows(
        self, deploy_obs: np.ndarray, state: np.ndarray | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        o = torch.as_tensor(deploy_obs)
        b, j, d = o.shape
        size = o[..., self._lay.size_fraction].reshape(b * j, -1).double()
        st = None
        if state is not None and self.config.centralised_critics:
            st = torch.as_tensor(state).unsqueeze(1).expand(b, j, -1).reshape(b * j, -1)
        return o.reshape(b * j, d), size, st

    # ----------------------------------------------------------------- acting

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action of the current phase for :meth:`BatchedHcEnv.step`.

        Args:
            obs: A :class:`BatchedHcEnv` (acts in its phase) or the dict of its ``observe()``
                for one phase.
            deterministic: Most likely actions (True; the deployment is still drawn unless
                ``deploy_sample_when_deterministic`` is False) or draws from the policies.

        Returns:
            deploy (B, J, I) bool; user (B, K, 2) int64 (server, split); alloc (B, J, 2, K)
            float32 weights.
        """
        phase, o, _ = split_obs(obs)
        if phase == "deploy":
            det = deterministic and not self.config.deploy_sample_when_deterministic
            return self._act_deploy(o["deploy_obs"], None, det, self._lru_act)[0]
        if phase == "user":
            server, split, *_ = self._act_user(o, deterministic, self._lru_act)
            return np.stack([server.numpy(), split.numpy()], -1)
        return self._act_alloc(o, deterministic)[0]

    def _act_deploy(
        self,
        deploy_obs: np.ndarray,
        state: np.ndarray | None,
        deterministic: bool,
        lru: LruDeployer | None,
    ) -> tuple[np.ndarray, DeploySample | None]:
        b, j, _ = deploy_obs.shape
        lay = self.env.layouts["deploy"]
        if self.deploy_policy is None:
            if lru is not None:
                return lru.deploy(deploy_obs, lay), None
            return popularity_deployment(deploy_obs, lay), None
        obs, size, st = self._deploy_rows(deploy_obs, state)
        s = self.deploy_policy.sample(obs, size, st, deterministic=deterministic, gen=self._gen)
        return s.deployment.reshape(b, j, -1).numpy(), s

    def _act_user(
        self, o: Mapping[str, np.ndarray], deterministic: bool, lru: LruDeployer | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        local, dep = self._user_inputs(o["user_obs"])
        smask = torch.as_tensor(np.asarray(o["user_server_mask"], dtype=bool))
        zmask = torch.as_tensor(np.asarray(o["user_split_mask"], dtype=bool))
        server, split, logp, _ = self.user_actor(
            local, dep, smask, zmask, deterministic=deterministic, gen=self._gen
        )
        if lru is not None:
            svc = o["user_obs"][..., self.env.layouts["user"]["service_onehot"]].argmax(-1)
            lru.record(server.numpy(), svc, self.env.n_servers)
        return server, split, logp, local, dep

    def _act_alloc(
        self, o: Mapping[str, np.ndarray], deterministic: bool
    ) -> tuple[np.ndarray, Any]:
        b, j, _ = o["alloc_obs"].shape
        if self.alloc_policy is None:
            return equal_shares(b, j, self.env.n_users), None
        users, glob, valid = self._alloc_inputs(o["alloc_obs"], o["alloc_user_mask"])
        lat, w, logp, _, _ = self._alloc_run(users, glob, valid, deterministic=deterministic)
        return w.numpy().astype(np.float32), (users, glob, valid, lat, logp)

    # ----------------------------------------------------------------- rollout

    def _collect(self) -> tuple[dict[str, Any], dict[str, float]]:
        """Run ``episodes_per_iteration`` episodes of every copy with the stochastic policies."""
        env = self.env
        cfg = self.config
        if not self._started:
            env.reset(seed=self.seed)
            self._started = True
        elif env.phase != "deploy" or env.t != 0:
            env.reset()  # only after an interrupted iteration: iterations are whole episodes
        central = cfg.centralised_critics
        u: dict[str, list[Any]] = {
            k: []
            for k in (
                "local",
                "dep",
                "state",
                "smask",
                "zmask",
                "server",
                "split",
                "logp",
                "vr",
                "vc",
                "rew",
                "cost",
                "done",
            )
        }
        a: dict[str, list[Any]] = {
            k: [] for k in ("users", "glob", "valid", "state", "lat", "logp", "v", "rew", "done")
        }
        d: dict[str, list[Any]] = {
            k: [] for k in ("obs", "size", "state", "actions", "logp", "v", "rew", "done")
        }
        stats: list[dict[str, np.ndarray]] = []
        slots = env.config.episode_slots * cfg.episodes_per_iteration
        done_slots = 0
        # Every step returns the observation of the phase that acts next, so the loop reads
        # it from there instead of building it again (the first one of the rollout aside).
        nxt: Mapping[str, np.ndarray] = {}
        while done_slots < slots:
            if env.phase == "deploy":
                o = nxt if "deploy_obs" in nxt else env.observe()
                state = env.state() if central else None
                x, s = self._act_deploy(o["deploy_obs"], state, False, self._lru)
                if s is not None:
                    obs_rows, size, _ = self._deploy_rows(o["deploy_obs"], state)
                    d["obs"].append(obs_rows)
                    d["size"].append(size)
                    d["state"].append(torch.as_tensor(state) if state is not None else None)
                    d["actions"].append(s.actions)
                    d["logp"].append(s.log_prob)
                    d["v"].append(s.value)
                    d["rew"].append(np.zeros((env.num_envs, env.n_servers)))
                    d["done"].append(np.zeros(env.num_envs, dtype=bool))
                nxt = env.step_deploy(x).obs
            # user phase
            o = nxt if "user_obs" in nxt else env.observe()
            state_u = torch.as_tensor(env.state()) if central else None
            server, split, logp, local, dep = self._act_user(o, False, self._lru)
            u["local"].append(local)
            u["dep"].append(dep)
            u["state"].append(state_u)
            u["smask"].append(torch.as_tensor(np.asarray(o["user_server_mask"], dtype=bool)))
            u["zmask"].append(torch.as_tensor(np.asarray(o["user_split_mask"], dtype=bool)))
            u["server"].append(server)
            u["split"].append(split)
            u["logp"].append(logp)
            nxt = env.step_user(server.numpy(), split.numpy()).obs
            # allocation phase
            o = nxt if "alloc_obs" in nxt else env.observe()
            w, extra = self._act_alloc(o, deterministic=False)
            if extra is not None:
                users, glob, valid, lat, alogp = extra
                state_a = torch.as_tensor(env.state()) if central else None
                a["users"].append(users)
                a["glob"].append(glob)
                a["valid"].append(valid)
                a["state"].append(state_a)
                a["lat"].append(lat)
                a["logp"].append(alogp)
            step = env.step_alloc(w[:, :, 0], w[:, :, 1])
            nxt = step.obs
            trunc = step.truncated
            u["rew"].append(step.rewards["user"])
            u["cost"].append(step.costs["user"])
            u["done"].append(trunc)
            if extra is not None:
                a["rew"].append(step.rewards["alloc"])
                a["done"].append(trunc)
            if d["rew"]:
                d["rew"][-1] = d["rew"][-1] + step.rewards["deploy"]
                d["done"][-1] = d["done"][-1] | trunc
            if trunc.all():
                stats.append(step.info["episode_stats"])
            done_slots += 1
        self.num_timesteps += slots * env.num_envs
        metrics = {
            k: float(np.mean([s[k] for s in stats]))
            for k in stats[0]
            if k not in ("slots", "migration_s_total")
        }
        metrics["migration_s_total"] = float(np.mean([s["migration_s_total"] for s in stats]))
        self._rollout_values(u, a)
        return {"user": u, "alloc": a, "deploy": d}, metrics

    def _rollout_values(self, u: dict[str, list[Any]], a: dict[str, list[Any]]) -> None:
        """Critic values of every collected slot, in one batch per critic.

        The parameters do not change during a rollout, so these are the values the critics
        gave in each slot; one large product per layer is much faster than one per slot.
        """
        central = self.config.centralised_critics
        t_len = len(u["local"])
        if t_len:
            local = torch.cat(u["local"])  # (T B, K, Dl)
            shared = torch.cat(u["state"]) if central else torch.cat(u["dep"])
            lead = (t_len, *u["local"][0].shape[:-2])
            u["vr"] = list(self.user_critic(local, shared).reshape(*lead, -1))
            if self.cost_critic is not None:
                u["vc"] = list(self.cost_critic(local, shared).reshape(*lead, -1))
        if a["users"] and self.alloc_critic is not None:
            users = torch.cat(a["users"])
            glob = torch.cat(a["glob"])
            served = torch.cat(a["valid"])[..., 1, :]
            state = torch.cat(a["state"]) if central else None
            v = self.alloc_critic(self._alloc_critic_local(users, glob, served), state)
            a["v"] = list(v.reshape(len(a["users"]), *a["users"][0].shape[:-2]))

    # ----------------------------------------------------------------- update

    def _targets(
        self, key: str, rew: np.ndarray, v_norm: Tensor, done: np.ndarray
    ) -> tuple[np.ndarray, Tensor]:
        """GAE advantages (numpy) and normalised value targets (torch) of one stream."""
        cfg = self.config
        values = self._denorm(key, v_norm)
        gamma = cfg.gamma
        if key in ("user", "cost") and cfg.user_gamma is not None:
            gamma = cfg.user_gamma
        if key == "deploy" and cfg.deploy_gamma is not None:
            gamma = cfg.deploy_gamma
        adv, ret = gae(rew, values, done, 0.0, gamma, cfg.gae_lambda)
        if key in self.norms:
            self.norms[key].update(torch.as_tensor(ret).reshape(-1))
            target = torch.as_tensor(self.norms[key].normalize(np.asarray(ret))).float()
        else:
            target = torch.as_tensor(ret).float()
        return np.asarray(adv), target

    def _minibatches(self, n: int, parts: int | None = None) -> list[np.ndarray]:
        k = min(self.config.num_minibatches if parts is None else parts, n)
        return np.array_split(self.rng.permutation(n), k)

    def _clip_step(self, key: str, groups: Sequence[nn.Module | None]) -> None:
        for g in groups:
            if g is not None:
                nn.utils.clip_grad_norm_(g.parameters(), self.config.max_grad_norm)
        self.optimizers[key].step()

    def _value_loss(
        self, v: Tensor, old: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        cfg = self.config
        return clipped_value_loss(
            v, old, target, cfg.value_clip, mask=mask, huber_delta=cfg.huber_delta
        )

    def _update_users(self, u: dict[str, list[Any]]) -> dict[str, float]:
        cfg = self.config
        t_len = len(u["rew"])
        b, k = u["rew"][0].shape
        rew = np.stack(u["rew"])
        cost = np.stack(u["cost"])
        done = np.stack(u["done"])
        vr_old = torch.stack(u["vr"])
        adv_r, tgt_r = self._targets("user", rew, vr_old, done)
        adv = normalize_advantages(torch.as_tensor(adv_r).float())
        cost_mean = float(cost.mean())
        if cfg.lagrangian:
            # Algorithm 1 lines 17-18: dual step on the iteration's mean delay, then the
            # policy update with the new multiplier.
            lam = self.lagrange.update(cost_mean, self.env_config.delay_limit_s)
            vc_old = torch.stack(u["vc"])
            adv_c, tgt_c = self._targets("cost", cost, vc_old, done)
            adv = lagrangian_advantage(
                adv, normalize_advantages(torch.as_tensor(adv_c).float()), lam
            )
        else:
            lam = 0.0
        g = t_len * b
        ent_coef = self.user_entropy_coef()

        def flat(key: str) -> Tensor:
            x = torch.stack(u[key])
            return x.reshape(g, *x.shape[2:])

        local, dep = flat("local"), flat("dep")
        state = flat("state") if cfg.centralised_critics else None
        smask, zmask = flat("smask"), flat("zmask")
        server, split, logp_old = flat("server"), flat("split"), flat("logp")
        adv = adv.reshape(g, k)
        vr_old, tgt_r = vr_old.reshape(g, k), tgt_r.reshape(g, k)
        if cfg.lagrangian:
            vc_old, tgt_c = vc_old.reshape(g, k), tgt_c.reshape(g, k)
        logs: dict[str, list[float]] = {
            "user_policy_loss": [],
            "user_value_loss": [],
            "user_entropy": [],
            "cost_value_loss": [],
        }
        for _ in range(cfg.ppo_epochs):
            for mb in self._minibatches(g, cfg.user_minibatches):
                idx = torch.as_tensor(mb)
                _, _, logp, ent = self.user_actor(
                    local[idx], dep[idx], smask[idx], zmask[idx], server[idx], split[idx]
                )
                pl = ppo_policy_loss(logp, logp_old[idx], adv[idx], cfg.clip)
                shared = state[idx] if state is not None else dep[idx]
                vl = self._value_loss(self.user_critic(local[idx], shared), vr_old[idx], tgt_r[idx])
                loss = pl - ent_coef * ent.mean() + cfg.value_loss_coef * vl
                if self.cost_critic is not None:
                    vcl = self._value_loss(
                        self.cost_critic(local[idx], shared), vc_old[idx], tgt_c[idx]
                    )
                    loss = loss + cfg.value_loss_coef * vcl
                    logs["cost_value_loss"].append(float(vcl.detach()))
                self.optimizers["user"].zero_grad()
                loss.backward()
                self._clip_step("user", (self.user_actor, self.user_critic, self.cost_critic))
                logs["user_policy_loss"].append(float(pl.detach()))
                logs["user_value_loss"].append(float(vl.detach()))
                logs["user_entropy"].append(float(ent.detach().mean()))
        out = {key: float(np.mean(v)) if v else math.nan for key, v in logs.items()}
        out.update(
            lambda_=lam, cost_mean=cost_mean, reward=float(rew.mean()), ent_user_coef=ent_coef
        )
        return out

    def _update_alloc(self, a: dict[str, list[Any]]) -> dict[str, float]:
        cfg = self.config
        assert self.alloc_policy is not None and self.alloc_critic is not None
        t_len = len(a["rew"])
        b, j = a["rew"][0].shape
        rew = np.stack(a["rew"])
        done = np.stack(a["done"])
        v_old = torch.stack(a["v"])
        adv_np, tgt = self._targets("alloc", rew, v_old, done)
        g = t_len * b

        def flat(key: str) -> Tensor:
            x = torch.stack(a[key])
            return x.reshape(g, *x.shape[2:])

        users, glob, valid, lat, logp_old = (
            flat("users"),
            flat("glob"),
            flat("valid"),
            flat("lat"),
            flat("logp"),
        )
        state = flat("state") if cfg.centralised_critics else None
        has = valid.any(-1).any(-1)
        adv = normalize_advantages(torch.as_tensor(adv_np).float().reshape(g, j), has)
        v_old, tgt = v_old.reshape(g, j), tgt.reshape(g, j)
        # The critic's pooled inputs are row-wise functions of the data: built once.
        crit_local = self._alloc_critic_local(users, glob, valid[..., 1, :])
        logs: dict[str, list[float]] = {"alloc_policy_loss": [], "alloc_value_loss": []}
        for _ in range(cfg.ppo_epochs):
            for mb in self._minibatches(g):
                idx = torch.as_tensor(mb)
                _, _, logp, ent, hs = self._alloc_run(users[idx], glob[idx], valid[idx], lat[idx])
                pl = ppo_policy_loss(logp, logp_old[idx], adv[idx], cfg.clip, mask=hs)
                v = self.alloc_critic(crit_local[idx], state[idx] if state is not None else None)
                vl = self._value_loss(v, v_old[idx], tgt[idx])
                ent_term = (ent * hs).sum() / hs.sum().clamp_min(1)
                loss = pl - cfg.ent_alloc * ent_term + cfg.value_loss_coef * vl
                self.optimizers["alloc"].zero_grad()
                loss.backward()
                self._clip_step("alloc", (self.alloc_policy, self.alloc_critic))
                logs["alloc_policy_loss"].append(float(pl.detach()))
                logs["alloc_value_loss"].append(float(vl.detach()))
        out = {key: float(np.mean(v)) for key, v in logs.items()}
        out["alloc_reward"] = float(rew.mean())
        out["alloc_log_std"] = float(self.alloc_policy.log_std.detach().mean())
        return out

    def _update_deploy(self, d: dict[str, list[Any]]) -> dict[str, float]:
        cfg = self.config
        assert self.deploy_policy is not None
        n_d = len(d["rew"])
        b, j = d["rew"][0].shape
        rew = np.stack(d["rew"])
        done = np.stack(d["done"])
        v_old = torch.stack(d["v"]).reshape(n_d, b, j)
        adv_np, tgt = self._targets("deploy", rew, v_old, done)
        obs = torch.cat(d["obs"])
        size = torch.cat(d["size"])
        actions = torch.cat(d["actions"])
        state = None
        if cfg.centralised_critics:
            state = torch.cat(
                [s.unsqueeze(1).expand(b, j, -1).reshape(b * j, -1) for s in d["state"]]
            )
        logp_old = torch.cat(d["logp"])
        adv = normalize_advantages(torch.as_tensor(adv_np).float().reshape(-1))
        v_old, tgt = v_old.reshape(-1), tgt.reshape(-1)
        n = obs.shape[0]
        # GRU inputs and masks depend on the actions alone: built once for every pass.
        teach_in, teach_mask = self.deploy_policy.teacher_inputs(size, actions)
        logs: dict[str, list[float]] = {
            "deploy_policy_loss": [],
            "deploy_value_loss": [],
            "deploy_entropy": [],
        }
        for _ in range(cfg.ppo_epochs):
            for mb in self._minibatches(n):
                idx = torch.as_tensor(mb)
                logp, ent, v, _ = self.deploy_policy.evaluate(
                    obs[idx],
                    size[idx],
                    actions[idx],
                    state[idx] if state is not None else None,
                    prepared=(teach_in[idx], teach_mask[idx]),
                )
                pl = ppo_policy_loss(logp, logp_old[idx], adv[idx], cfg.clip)
                vl = self._value_loss(v, v_old[idx], tgt[idx])
                loss = pl - cfg.ent_deploy * ent.mean() + cfg.value_loss_coef * vl
                self.optimizers["deploy"].zero_grad()
                loss.backward()
                self._clip_step("deploy", (self.deploy_policy,))
                logs["deploy_policy_loss"].append(float(pl.detach()))
                logs["deploy_value_loss"].append(float(vl.detach()))
                logs["deploy_entropy"].append(float(ent.detach().mean()))
        out = {key: float(np.mean(v)) for key, v in logs.items()}
        out["deploy_reward"] = float(rew.mean())
        return out

    # ----------------------------------------------------------------- learn

    def learn(self, iterations: int, callback: Callback | None = None) -> HcAgent:
        """Train for ``iterations`` iterations of Algorithm 1 (collect, GAE, dual step, PPO).

        Args:
            iterations: Iterations (each ``n_envs x episodes_per_iteration`` whole episodes).
            callback: Called after every iteration with a dict of metrics: ``iteration``,
                ``env_steps`` (slots x copies so far), the episode means ``delay_s_mean``,
                ``user_cost_mean``, ``energy_j_mean``, ``privacy_cost_mean``,
                ``success_rate``, ``cache_hit_rate``, ``miss_avoidable_rate``,
                ``miss_no_cache_rate``, ``system_cost_mean``; ``reward`` (mean user reward per
                slot), ``cost_mean`` (the mean delay the dual step used), ``lambda`` (the
                multiplier of this update), ``ent_user_coef`` (the user entropy coefficient of
                this update), the losses, ``rollout_s``,
                ``update_s``, ``iteration_s``, ``iteration_cpu_s`` (CPU time of this process) and
                ``env_steps_per_s``. Returning False stops.

        Returns:
            self.
        """
        if int(iterations) < 0:
            raise InputError(f"iterations must be >= 0, got {iterations!r}")
        for _ in range(int(iterations)):
            t0 = time.perf_counter()
            c0 = time.process_time()
            # Inference mode: no autograd bookkeeping; the update only reads tensors stacked
            # from the stored ones (new tensors), so none is saved for a backward pass.
            with torch.inference_mode():
                data, metrics = self._collect()
            t1 = time.perf_counter()
            info: dict[str, Any] = {
                "iteration": self.iterations + 1,
                "env_steps": self.num_timesteps,
            }
            info.update(metrics)
            if data["deploy"]["rew"]:
                info.update(self._update_deploy(data["deploy"]))
            info.update(self._update_users(data["user"]))
            if data["alloc"]["rew"]:
                info.update(self._update_alloc(data["alloc"]))
            t2 = time.perf_counter()
            info["lambda"] = info.pop("lambda_")
            slots = (
                self.env_config.episode_slots
                * self.config.episodes_per_iteration
                * self.config.n_envs
            )
            info.update(
                rollout_s=t1 - t0,
                update_s=t2 - t1,
                iteration_s=t2 - t0,
                iteration_cpu_s=time.process_time() - c0,
                env_steps_per_s=slots / (t2 - t0),
            )
            self.iterations += 1
            if callback is not None and callback(info) is False:
                break
        return self

    # ----------------------------------------------------------------- checkpoints

    def _modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module | None] = {
            "user_actor": self.user_actor,
            "user_critic": self.user_critic,
            "cost_critic": self.cost_critic,
            "deploy_policy": self.deploy_policy,
            "alloc_policy": self.alloc_policy,
            "alloc_critic": self.alloc_critic,
        }
        return {k: m for k, m in mods.items() if m is not None}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a plain state dict atomically (networks, optimisers, value norms, multiplier).

        ``meta`` holds the kind, the format, the layout (J, K, catalog, observation sizes),
        the environment and agent configs, the seed and the progress counters.
        """
        state = {
            "meta": {
                "kind": CHECKPOINT_KIND,
                "format": CHECKPOINT_FORMAT,
                "layout": self.layout,
                "env_config": self.env_config.model_dump(mode="json"),
                "agent_config": self.config.model_dump(mode="json"),
                "seed": self.seed,
                "iterations": self.iterations,
                "num_timesteps": self.num_timesteps,
            },
            "nets": {k: m.state_dict() for k, m in self._modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "value_norms": {k: n.state_dict() for k, n in self.norms.items()},
            "lagrange": self.lagrange.state_dict(),
        }
        return atomic_torch_save(path, state)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        env_or_config: EnvOrConfig = None,
        *,
        catalog: ServiceCatalog | None = None,
        leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    ) -> HcAgent:
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)``).

        Args:
            path: The checkpoint file.
            env_or_config: The environment the agent will act in; its layout (J, K, catalog,
                observation sizes) must equal the checkpoint's. None: the stored config.
            catalog: Service catalog for a config (built otherwise).
            leakage: Leakage tables when the catalog is built.

        Raises:
            InputError: If the file is missing or not an HC-MAPPO-L checkpoint, or it was
                trained for another layout (the message lists every difference).
        """
        p, state = read_torch_checkpoint(path)
        meta = state.get("meta") if isinstance(state, dict) else None
        if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
            raise InputError(
                f"{p}: not an HC-MAPPO-L agent checkpoint (no 'meta' of kind {CHECKPOINT_KIND!r})"
            )
        if int(meta.get("format", -1)) != CHECKPOINT_FORMAT:
            raise InputError(
                f"{p}: checkpoint format {meta.get('format')} is not supported (expected {CHECKPOINT_FORMAT})"
            )
        target = env_or_config if env_or_config is not None else meta["env_config"]
        agent = cls(
            target, meta["agent_config"], seed=int(meta["seed"]), catalog=catalog, leakage=leakage
        )
        mine, theirs = meta["layout"], agent.layout
        diff = [k for k in theirs if mine.get(k) != theirs[k]]
        if diff:
            details = "; ".join(
                f"{k}: checkpoint {mine.get(k)} vs environment {theirs[k]}" for k in diff
            )
            raise InputError(
                f"{p}: the checkpoint was trained for another layout of servers, users or services "
                f"and cannot act in this environment ({details})"
            )
        try:
            mods = agent._modules()
            if set(mods) != set(state["nets"]):
                raise KeyError(f"networks {sorted(state['nets'])} vs {sorted(mods)}")
            for k, m in mods.items():
                m.load_state_dict(state["nets"][k])
            for k, o in agent.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
            for k, n in agent.norms.items():
                n.load_state_dict(state["value_norms"][k])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InputError(f"{p}: network weights do not fit the stored config ({exc})") from None
        agent.lagrange.load_state_dict(state["lagrange"])
        agent.iterations = int(meta["iterations"])
        agent.num_timesteps = int(meta["num_timesteps"])
        return agent
