"""GCN Q-network with action-branching heads, the double-DQN learner, and the DDQN / D2QN baselines.

The Q-network (paper 002, sections 3.1 and 4.3) is shared by CERL (:mod:`edgerl.cerl.agent`)
and its two learning baselines (section 5.2.2), so that the three methods differ only in how
they search:

* :class:`CerlQNetwork`: a dense GCN (eq. (11); 3 layers 64/128/256, ReLU and a BatchNorm-style
  :class:`~edgerl.rl.nets.NodeNorm`) over the state graph, then one head per branch of the
  action of a task slot (node, block end, share level, subcarrier; eq. (12)) in the manner of
  action branching (BDQ, Tavakoli et al. 2018). A task slot's embedding is the GCN embedding of
  its next layer node and of the node holding its data, plus pooled graph embeddings. Each
  graph node's embedding also gets a linear map of its own features (``QNetConfig.feature_skip``:
  eq. (11) alone makes every computing node without a task look the same). By default the
  block and share heads are node-conditional (``QNetConfig.node_conditional``): they score
  every (task slot, node) pair and are read at the node the node branch chose, an
  autoregressive refinement of BDQ's independent branches.
* **Joint value** (BDQ with a sum over tasks): the value of a joint action ``a`` in state ``s``
  is ``Q(s, a) = v(s) + sum over deciding task slots m of the mean over branches b of
  A_b(s, m, a_mb)`` (``QNetConfig.task_aggregation``; 'mean' over the task slots is BDQ's
  original form), with a state term ``v(s)`` (the whole value when no task decides; with
  node-conditional heads ``A_block`` and ``A_share`` are taken at the chosen node). The greedy
  joint action is decoded task by task under the constraint masks (invalid values get -inf):
  by default (``GcnDqnConfig.greedy_decoding='joint'``) each task slot takes the valid
  ``(d, j, s, w)`` of largest summed branch value (:meth:`ActionDecoder.greedy_joint`, the
  argmax of ``Q`` given the earlier task slots), or branch by branch
  (:meth:`ActionDecoder.greedy`); either way it is always valid and the product space of the
  task slots is never enumerated. Dueling (D2QN) centres each branch: ``A_b - mean(A_b)``.
* **Targets** (eqs. (17)-(18), double DQN): ``y = r + gamma (1 - terminated) Q'(s', a*)`` with
  ``a*`` the online network's greedy decoded action in ``s'`` and ``Q'`` the target network's
  joint value (or its n-step form, ``GcnDqnConfig.n_step``); the loss is the mean squared error (eq. (18)) or Huber.

:class:`DDQNAgent` explores epsilon-greedily (a random valid action per environment copy).
:class:`D2QNAgent` adds the dueling aggregation and adaptive parameter-space noise
(Plappert et al. 2018): it acts greedily with a perturbed copy of the online network whose
noise scale is adapted so that the KL divergence between ``softmax(Q)`` and the perturbed
``softmax`` stays near ``delta = -log(1 - eps + eps / |A|)``.

Both baselines and CERL count their budget in environment transitions and gradient updates:
an epoch of a baseline (``steps_per_epoch`` vector steps of ``n_envs`` copies, one round of
``gradient_steps_per_step`` updates per vector step) matches a CERL generation when
``n_envs = elite_actors + rl_envs`` and ``steps_per_epoch = steps_per_generation``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from edgerl.cerl.env import (
    BRANCHES,
    N_FEATURES,
    N_LAYERS,
    ActionDecoder,
    BatchedCerlEnv,
    CerlConfig,
    CerlEnv,
    layer_workload_cycles,
    make_config,
)
from edgerl.rl.nets import (
    DenseGCN,
    NormKind,
    PopLinear,
    masked_mean,
    normalized_adjacency,
    pop_size_of,
    population_call,
)
from edgerl.rl.replay import DictReplayBuffer, ReplaySample
from edgerl.utils.config import Config, config_from_dict
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_torch_save, read_torch_checkpoint

__all__ = [
    "BranchValues",
    "CerlQNetwork",
    "D2QNAgent",
    "D2QNConfig",
    "DDQNAgent",
    "DDQNConfig",
    "DQNLearner",
    "GcnDqnAgentBase",
    "GcnDqnConfig",
    "GraphBatch",
    "QNetConfig",
    "SlotSelection",
    "action_layout",
    "adapt_noise_scale",
    "branch_kl",
    "compact_graph_batch",
    "deciding_selection",
    "env_config_of",
    "flat_params",
    "graph_batch",
    "greedy_actions",
    "grouped_batches",
    "is_conditional",
    "joint_q",
    "joint_q_selected",
    "masked_branch_max",
    "masked_branch_max_selected",
    "noise_delta",
    "set_flat_params",
    "size_groups",
    "union_mask_tensors",
]

CHECKPOINT_FORMAT = 1
VALIDATION_SEED = 50_000
"""First episode seed of the deployment checks of :attr:`GcnDqnConfig.select_every`."""
Callback = Callable[[dict[str, float]], "bool | None"]
EnvOrConfig = CerlEnv | BatchedCerlEnv | CerlConfig | Mapping[str, Any] | None


# --------------------------------------------------------------------------- configs


class QNetConfig(Config):
    """Architecture of the GCN Q-network."""

    gcn_dims: tuple[int, ...] = (64, 128, 256)
    """Output size of each GCN layer (paper 002, section 5.1: 64, 128, 256)."""

    hidden_dim: int = Field(128, ge=1)
    """Width of the task-slot embedding that feeds the branch heads."""

    key_dim: int = Field(64, ge=1)
    """Size of the query / key vectors scoring (task slot, node) pairs in the node head."""

    norm: NormKind = "graph"
    """Normalisation after each GCN layer: 'graph' (BatchNorm over the nodes of each graph),
    'layer' (LayerNorm per node) or 'none' (see edgerl.rl.nets.NodeNorm)."""

    feature_skip: bool = True
    """Add a linear map of each graph node's own features X to its GCN embedding. In the
    state graph every computing node is linked to every other (E_alpha), so eq. (11) averages
    their features over one and the same neighbourhood: nodes that hold no task (the MEC
    server and the idle devices) got identical embeddings, and the heads could not tell a
    10 GHz server from a 0.2 GHz device."""

    node_conditional: bool = True
    """Score the block and share branches per candidate node (from a (task slot, node) pair
    embedding) and read them at the node chosen first, instead of from the task slot alone.
    The cost of a share level depends on the node's capacity (eqs. (1), (4): energy grows
    with r^2, so 25 % of the 10 GHz MEC server costs ~40x a full 0.25 GHz device), which a
    node-blind share head can only average over the nodes in the replay data."""

    share_block_coupling: bool = False
    """Add to the share value of level s at node d a term ``w(j) B(d, s)`` that scales with
    the block: ``w(j)`` is the block ``[p+1 : j]``'s fraction of the model's cycles and ``B``
    a second node-conditional share head. By eqs. (1) and (4) a block costs its cycles times a
    per-cycle cost ``omega_e k0 r^2 + omega_d / r`` that depends on the node and share only,
    so the value of a share level grows with the block; a block head plus a share head cannot
    express that product (on the tiny instances the learnt values preferred short blocks at low
    shares). Needs node_conditional. Off by default: on the tiny instances (DDQN, 100 epochs,
    'sum' over task slots) it raised the optimality gap from 0.60 to 1.26 (seed 0) and from
    0.62 to 0.70 (seed 1)."""

    task_aggregation: Literal["sum", "mean"] = "sum"
    """How the per-task-slot values add up in the joint value: 'sum' over the deciding task
    slots (costs of eq. (6) add over tasks, as in value decomposition, Sunehag et al. 2018) or
    their 'mean' (BDQ's mean over action dimensions). With 'mean' one task's advantage weighs
    half as much when two tasks decide as when it decides alone; on the tiny instances 'sum'
    took DDQN's optimality gap from 0.95 to 0.60 (seed 0; 0.62 on seed 1; 100 epochs)."""

    @model_validator(mode="after")
    def _check_coupling(self) -> QNetConfig:
        if self.share_block_coupling and not self.node_conditional:
            raise ValueError("share_block_coupling needs node_conditional=True")
        return self


class GcnDqnConfig(Config):
    """Settings shared by CERL's DQN part and the DDQN / D2QN baselines (equal budgets)."""

    buffer_size: int = Field(30_000, ge=1)
    """Replay capacity in transitions."""

    learning_starts: int = Field(512, ge=0)
    """Transitions collected with uniformly random valid actions before learning starts."""

    batch_size: int = Field(64, ge=1)
    """Minibatch size of a gradient update."""

    gradient_steps_per_step: float = Field(1.0, ge=0.0)
    """Gradient updates per vector step of the environment copies (fractions accumulate)."""

    learning_rate: float = Field(5e-4, gt=0.0)
    """Adam step size (alpha of eq. (19))."""

    gamma: float = Field(0.9, ge=0.0, le=1.0)
    """Discount factor (not given in paper 002)."""

    target_update_interval: int = Field(100, ge=1)
    """Gradient updates between hard copies of the online network into its target."""

    n_step: int = Field(1, ge=1)
    """Transitions summed into one TD target of the gradient updates (n-step returns, as in
    Rainbow, Hessel et al. 2018): ``y = sum_{i<k} gamma^i r_{t+i} + gamma^k Q'(s_{t+k}, a*)``
    with ``k = n_step`` or fewer where the episode ends (:meth:`DictReplayBuffer.sample_n_step`).
    1 is the one-step target of eq. (17). CERL's population fitness stays one-step (eq. (14))."""

    max_grad_norm: float = Field(10.0, gt=0.0)
    """Gradient norm clipping of each update."""

    loss: Literal["mse", "huber"] = "mse"
    """TD loss: 'mse' (eq. (18)) or 'huber'."""

    reward_scale: float = Field(1.0, gt=0.0)
    """Rewards are multiplied by this before they are stored (Q-values scale with it)."""

    progress_shaping: float = Field(0.0, ge=0.0)
    """Weight c of potential-based reward shaping (Ng, Harada, Russell, ICML 1999) on the
    stored rewards: r + gamma Phi(s') - Phi(s) with Phi(s) = -c sum over live tasks of the
    share of their workload not yet done. It credits layers as they are finished instead of
    only at the deadline, and leaves the optimal policy unchanged; 0 turns it off (the reported
    costs never include it)."""

    exploration_initial_eps: float = Field(1.0, ge=0.0, le=1.0)
    """Epsilon of the epsilon-greedy rows at the start of learning."""

    exploration_final_eps: float = Field(0.05, ge=0.0, le=1.0)
    """Epsilon after the decay (also used by act(deterministic=False))."""

    exploration_fraction: float = Field(0.3, gt=0.0, le=1.0)
    """Fraction of the learn() budget over which epsilon decays linearly."""

    compress_floats: bool = True
    """Store float observation keys as float16 in the replay buffer."""

    greedy_decoding: Literal["joint", "branchwise"] = "joint"
    """How greedy actions (acting, double-DQN targets) are decoded from the branch values:
    'joint' maximises, task slot by task slot, the sum of the four branch values over the valid
    completions (the argmax of the joint value Q(s, a) the network is trained on);
    'branchwise' takes the node from the node values alone, then the block and share at that
    node. With node-conditional heads the two differ: on the tiny instances of
    cerl-optimality (DDQN, seed 0, 100 epochs, mean over task slots) the learnt joint value
    ranked the optimal first action above the branchwise greedy one in 14 of the 48 states
    where they differed, and the optimality gap went from 1.10 (branchwise) to 0.95 (joint)."""

    net: QNetConfig = QNetConfig()
    """Architecture of the Q-network."""

    select_every: int = Field(0, ge=0)
    """Which network act() deploys (paper 002 says only that CERL is "trained and deployed",
    not with which network): every this many epochs, and once more at the end of learn(), the
    acting network is run greedily on ``select_episodes`` validation episodes of the training
    environment (episode seeds VALIDATION_SEED, VALIDATION_SEED + 1, ...: neither the training
    copies' seeds, below 10,000, nor the test episodes' from 100,000), and act() uses the
    network with the lowest mean validation cost seen so far. The validation episodes are not
    stored in the replay and do not count as training transitions. 0: act() uses the network
    as it is after the last update. The greedy policy of a Q-network can change a lot between
    two nearby updates (CERL, N = 10, seed 1: greedy cost on 3 held-out episodes 9.4 -> 17.5
    -> 13.5 at epochs 30, 35, 40, and a test cost of 51.4 with 35 % completion after the last
    update of the same seed in another run)."""

    select_episodes: int = Field(5, ge=1)
    """Validation episodes of each deployment check (see select_every)."""

    graph_groups: int = Field(8, ge=0)
    """Speed only (same values up to float32 rounding): minibatch states are evaluated in
    this many groups of similar graph size with their padding nodes trimmed
    (:func:`compact_graph_batch`), and node-conditional heads are scored only at the deciding
    task slots (:class:`SlotSelection`); 0 evaluates the padded minibatch with every head."""


class DDQNConfig(GcnDqnConfig):
    """Double DQN baseline (paper 002, section 5.2.2)."""

    n_envs: int = Field(8, ge=1)
    """Environment copies stepped together (set to CERL's elite_actors + rl_envs)."""

    steps_per_epoch: int = Field(8, ge=1)
    """Vector steps per epoch (the callback period; set to CERL's steps_per_generation)."""


class D2QNConfig(DDQNConfig):
    """D2QN baseline: dueling + double DQN + adaptive parameter-space noise."""

    param_noise_init: float = Field(0.05, gt=0.0)
    """Initial standard deviation of the parameter perturbation."""

    param_noise_adapt_coef: float = Field(1.01, gt=1.0)
    """Factor by which the noise scale shrinks (KL > delta) or grows (KL <= delta)."""

    param_noise_adapt_interval: int = Field(10, ge=1)
    """Vector steps between adaptations of the noise scale."""

    param_noise_resample_interval: int = Field(8, ge=1)
    """Vector steps between draws of a new perturbation."""


# --------------------------------------------------------------------------- graph batches


class GraphBatch(NamedTuple):
    """Network inputs of a batch of states (torch tensors; B states, V graph nodes, M tasks).

    Attributes:
        x: ``(B, V, F)`` feature matrix X.
        a_hat: ``(B, V, V)`` normalised adjacency of eq. (11).
        node_mask: ``(B, V)`` float, real graph nodes.
        next_row: ``(B, M)`` graph row of each task slot's next layer.
        task_node: ``(B, M)`` computing node holding each task's data.
        progress: ``(B, M)`` layers done.
        deciding: ``(B, M)`` float, the task slot decides in this state.
        pair: ``(B, M, N+1, 2)`` per (task slot, node): [node holds the task's data,
            spectral efficiency of the link from that node].
        block_work: ``(B, M, L+1)`` fraction of the model's cycles in the block
            ``[progress+1 : j]`` for every block end ``j`` (0 for ``j <= progress``).
    """

    x: Tensor
    a_hat: Tensor
    node_mask: Tensor
    next_row: Tensor
    task_node: Tensor
    progress: Tensor
    deciding: Tensor
    pair: Tensor
    block_work: Tensor


_CUM_WORK = np.concatenate([[0.0], np.cumsum(layer_workload_cycles(1.0))])
_CUM_WORK = _CUM_WORK / _CUM_WORK[-1]  # fraction of the model's cycles done after l layers


def _batched(obs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    if np.asarray(obs["task_node"]).ndim == 1:
        return {k: np.asarray(v)[None] for k, v in obs.items()}, False
    return {k: np.asarray(v) for k, v in obs.items()}, True


def graph_batch(obs: Mapping[str, np.ndarray]) -> GraphBatch:
    """Tensors the Q-network reads from a single or batched CERL observation."""
    o, _ = _batched(obs)
    n1 = o["link_se"].shape[-1]
    node = torch.from_numpy(o["task_node"].astype(np.int64))
    progress = torch.from_numpy(o["task_progress"].astype(np.int64))
    m = node.shape[1]
    node_mask = torch.from_numpy(o["node_mask"].astype(np.float32))
    # Row of the next layer of slot m: N+1 + m L + min(progress, L - 1) (see CerlEnv docs).
    next_row = n1 + torch.arange(m) * N_LAYERS + progress.clamp(max=N_LAYERS - 1)
    link = torch.from_numpy(o["link_se"].astype(np.float32))
    link_from = torch.gather(link, 1, node.unsqueeze(-1).expand(-1, -1, n1))
    is_here = (torch.arange(n1) == node.unsqueeze(-1)).to(torch.float32)
    prog = np.clip(o["task_progress"].astype(np.int64), 0, N_LAYERS)
    work = np.clip(_CUM_WORK[None, None, :] - _CUM_WORK[prog][..., None], 0.0, None)
    return GraphBatch(
        x=torch.from_numpy(o["x"].astype(np.float32)),
        a_hat=normalized_adjacency(torch.from_numpy(o["adj"]), node_mask),
        node_mask=node_mask,
        next_row=next_row,
        task_node=node,
        progress=progress,
        deciding=torch.from_numpy(o["task_deciding"].astype(np.float32)),
        pair=torch.stack([is_here, link_from], dim=-1),
        block_work=torch.from_numpy(work.astype(np.float32)),
    )


def compact_graph_batch(batch: GraphBatch, rows: Tensor, n_nodes: int) -> GraphBatch:
    """States ``rows`` of a batch with their padding graph nodes trimmed.

    The real task-layer nodes of each state move to the front of the task-layer rows (in
    their order), the computing nodes keep rows ``0..N``, and the graph is cut to the largest
    real node count of the selected states plus one padding row; task slots whose next layer
    is a padding node point at that row. The GCN is equivariant under this reordering and
    padding rows take no part in it, so the Q-network gives the same values (up to float32
    summation order) on a smaller graph.

    Args:
        batch: Graph batch of ``B`` states with ``V`` graph nodes.
        rows: ``(B',)`` long, states to keep.
        n_nodes: Computing nodes N + 1 (never moved).
    """
    sub = GraphBatch(*(t[rows] for t in batch))
    v = sub.node_mask.shape[-1]
    task_mask = sub.node_mask[:, n_nodes:]
    # Stable sort: real task-layer nodes first, each state's padding after them.
    order = torch.sort(1.0 - task_mask, dim=-1, stable=True).indices + n_nodes
    keep = min(v, n_nodes + int(task_mask.sum(-1).max()) + 1)
    head = torch.arange(n_nodes).expand(order.shape[0], n_nodes)
    order = torch.cat([head, order], -1)[:, :keep]
    # New row of every old row; rows that were cut (padding only) map to the last row, which
    # is padding in every state whenever anything was cut.
    new_of_old = torch.full((order.shape[0], v), keep - 1, dtype=torch.long)
    new_of_old.scatter_(1, order, torch.arange(keep).expand_as(order).contiguous())
    next_row = new_of_old.gather(1, sub.next_row)
    a = sub.a_hat.gather(1, order.unsqueeze(-1).expand(-1, -1, v))
    a = a.gather(2, order.unsqueeze(1).expand(-1, keep, -1))
    return sub._replace(
        x=sub.x.gather(1, order.unsqueeze(-1).expand(-1, -1, sub.x.shape[-1])),
        a_hat=a,
        node_mask=sub.node_mask.gather(1, order),
        next_row=next_row,
    )


def size_groups(node_mask: Tensor, groups: int) -> list[Tensor]:
    """Split the states of a batch into ``groups`` runs of similar real node counts.

    Returns index tensors (sorted by the count) whose union is ``0..B-1``; evaluating each
    group on its own :func:`compact_graph_batch` costs about the mean of the groups' squared
    node counts instead of the squared padded size.
    """
    order = torch.argsort(node_mask.sum(-1), stable=True)
    return [g for g in torch.tensor_split(order, max(1, min(groups, order.shape[0]))) if len(g)]


def grouped_batches(batch: GraphBatch, n_nodes: int, groups: int) -> list[tuple[Tensor, GraphBatch]]:
    """``(rows, sub-batch)`` pairs covering a batch: ``groups`` size groups
    (:func:`size_groups`), each trimmed by :func:`compact_graph_batch`; ``groups < 1`` gives
    the whole padded batch as one part."""
    if groups < 1:
        return [(torch.arange(batch.node_mask.shape[0]), batch)]
    return [(rows, compact_graph_batch(batch, rows, n_nodes)) for rows in size_groups(batch.node_mask, groups)]


def _gather_rows(h: Tensor, idx: Tensor) -> Tensor:
    """``h[..., b, idx[b, m], :]`` for ``h`` ``(..., B, V, E)`` and ``idx`` ``(B, M)``."""
    lead = h.shape[:-3]
    i = idx.reshape(*([1] * len(lead)), *idx.shape, 1).expand(*lead, *idx.shape, h.shape[-1])
    return h.gather(-2, i)


def _expand_pop(t: Tensor, k: int | None) -> Tensor:
    return t if k is None else t.unsqueeze(0).expand(k, *t.shape)


# --------------------------------------------------------------------------- network


class BranchValues(NamedTuple):
    """Output of :class:`CerlQNetwork`.

    Attributes:
        value: ``(..., B)`` state term ``v(s)``.
        branches: Four tensors ``(..., B, M, n_b)`` (node, block end, share, subcarrier): the
            per-branch values ``A_b`` (centred for a dueling network). With node-conditional
            heads the block and share tensors are ``(..., B, M, N+1, n_b)``: row ``d`` holds
            their values when the task slot goes to node ``d`` (see :func:`is_conditional`).
        share_scale: ``(..., B, M, N+1, K)`` or None: the block-scaled share term
            (:attr:`QNetConfig.share_block_coupling`); the share value of level ``s`` at node
            ``d`` for block end ``j`` is ``share[d, s] + block_work[j] * share_scale[d, s]``.
        block_work: ``(B, M, L+1)`` (from :class:`GraphBatch`) when ``share_scale`` is set.
        task_sum: Per-task values are summed over the deciding task slots (else averaged).
    """

    value: Tensor
    branches: tuple[Tensor, Tensor, Tensor, Tensor]
    share_scale: Tensor | None = None
    block_work: Tensor | None = None
    task_sum: bool = False


class CerlQNetwork(nn.Module):
    """GCN Q-network with one head per action branch of a task slot (see module docstring).

    All parameters may be population-stacked (``torch.func.functional_call`` with
    ``(k, ...)`` tensors, see :func:`edgerl.rl.nets.population_call`): the output then has a
    leading ``k`` dimension. The network has no buffers.

    Args:
        n_nodes: Computing nodes N + 1 (values of the node branch).
        n_levels: Share levels K.
        n_subcarriers: Subcarriers S.
        config: Architecture.
        dueling: Centre each branch's values (dueling aggregation).
    """

    def __init__(
        self,
        n_nodes: int,
        n_levels: int,
        n_subcarriers: int,
        config: QNetConfig | None = None,
        dueling: bool = False,
    ) -> None:
        super().__init__()
        cfg = config or QNetConfig()
        self.n_nodes = int(n_nodes)
        self.n_blocks = N_LAYERS + 1
        self.n_levels = int(n_levels)
        self.n_subcarriers = int(n_subcarriers)
        self.dueling = bool(dueling)
        self.key_dim = int(cfg.key_dim)
        self.gcn = DenseGCN(N_FEATURES, cfg.gcn_dims, norm=cfg.norm)
        emb, hid = self.gcn.out_features, int(cfg.hidden_dim)
        self.feature_skip = PopLinear(N_FEATURES, emb, bias=False) if cfg.feature_skip else None
        self.task_proj = PopLinear(2 * emb, hid)
        self.graph_proj = PopLinear(2 * emb, hid, bias=False)
        self.node_query = PopLinear(hid, self.key_dim)
        self.node_key = PopLinear(emb, self.key_dim)
        self.node_self = PopLinear(emb, 1)
        self.node_pair = PopLinear(2, 1, bias=False)
        self.node_conditional = bool(cfg.node_conditional)
        head_in = hid
        if self.node_conditional:
            # (task slot, node) pair embedding for the node-conditional block / share heads.
            head_in = self.key_dim
            self.cond_task = PopLinear(hid, head_in)
            self.cond_node = PopLinear(emb, head_in, bias=False)
            self.cond_pair = PopLinear(2, head_in, bias=False)
        self.block_head = PopLinear(head_in, self.n_blocks)
        self.share_head = PopLinear(head_in, self.n_levels)
        self.task_sum = cfg.task_aggregation == "sum"
        self.share_scale_head = (
            PopLinear(head_in, self.n_levels) if cfg.share_block_coupling else None
        )
        self.subcarrier_head = PopLinear(hid, self.n_subcarriers)
        self.value_hidden = PopLinear(2 * emb, hid)
        self.value_out = PopLinear(hid, 1)

    @property
    def sparse_heads(self) -> bool:
        """Whether :meth:`forward` accepts a :class:`SlotSelection` (node-conditional heads
        without the block-scaled share term)."""
        return self.node_conditional and self.share_scale_head is None

    def forward(self, batch: GraphBatch, select: SlotSelection | None = None) -> BranchValues:
        """Branch values of a batch of states (see :class:`BranchValues`).

        Args:
            batch: The states.
            select: None for every task slot; else only the selected task slots get branch
                values (see :class:`SlotSelection`, needs :attr:`sparse_heads`): the four
                branch tensors are ``(..., S, N+1)``, ``(..., S, N+1, L+1)``,
                ``(..., S, N+1, K)``, ``(..., S, S_sub)``, or with ``select.node`` the block
                and share tensors ``(..., S, L+1)`` and ``(..., S, K)`` read at that node. The
                state term stays ``(..., B)``. Same numbers as the rows of the full output.
        """
        if select is not None and not self.sparse_heads:
            raise ValueError("a slot selection needs node-conditional heads without coupling")
        k = pop_size_of(self.value_out.weight, 2)
        n1 = self.n_nodes
        x = _expand_pop(batch.x, k)
        h = self.gcn(x, batch.a_hat, batch.node_mask)  # (..., B, V, E)
        if self.feature_skip is not None:
            h = h + self.feature_skip(x)  # padding rows of X are zero, so they stay zero
        comp = h[..., :n1, :]
        g = torch.cat([comp.mean(-2), masked_mean(h[..., n1:, :], batch.node_mask[:, n1:])], -1)
        task_in = torch.cat([_gather_rows(h, batch.next_row), _gather_rows(h, batch.task_node)], -1)
        z = torch.relu(self.task_proj(task_in) + self.graph_proj(g).unsqueeze(-2))
        # Node branch: query of the task slot against a key per computing node, plus a node
        # term and the (data here, link quality) pair features.
        scores = self.node_query(z) @ self.node_key(comp).transpose(-1, -2)
        node = scores / math.sqrt(self.key_dim) + self.node_self(comp).squeeze(-1).unsqueeze(-2)
        node = node + self.node_pair(_expand_pop(batch.pair, k)).squeeze(-1)
        if select is not None:
            return self._selected(batch, select, k, z, comp, g, node)
        # Block branch: the head scores the block length (offset from the layers done);
        # offsets are mapped to the absolute last layer j = progress + offset of the action.
        if self.node_conditional:
            # (..., B, M, N+1, key_dim): task slot m sent to node d.
            pair_h = torch.relu(
                self.cond_task(z).unsqueeze(-2)
                + self.cond_node(comp).unsqueeze(-3)
                + self.cond_pair(_expand_pop(batch.pair, k))
            )
            rel, share = self.block_head(pair_h), self.share_head(pair_h)
            scale = self.share_scale_head(pair_h) if self.share_scale_head is not None else None
        else:
            scale = None
            rel, share = self.block_head(z), self.share_head(z)
        sub = self.subcarrier_head(z)
        value = self.value_out(torch.relu(self.value_hidden(g))).squeeze(-1)
        if self.dueling:
            node, rel, share, sub = (t - t.mean(-1, keepdim=True) for t in (node, rel, share, sub))
            if scale is not None:
                scale = scale - scale.mean(-1, keepdim=True)
        j = torch.arange(self.n_blocks)
        offset = (j - batch.progress.unsqueeze(-1)).clamp_min(0)  # (B, M, L+1)
        if self.node_conditional:
            offset = offset.unsqueeze(-2).expand(*offset.shape[:2], n1, self.n_blocks)
        block = rel.gather(-1, _expand_pop(offset, k))
        return BranchValues(
            value,
            (node, block, share, sub),
            scale,
            batch.block_work if scale is not None else None,
            self.task_sum,
        )


    def _selected(
        self,
        batch: GraphBatch,
        select: SlotSelection,
        k: int | None,
        z: Tensor,
        comp: Tensor,
        g: Tensor,
        node: Tensor,
    ) -> BranchValues:
        """Branch values of the selected task slots only (the tail of :meth:`forward`).

        The node-conditional heads score one (task slot, node) pair per selected slot and
        node (or per selected slot at ``select.node``) instead of every pair of the batch.
        """
        bi, mi = select.batch_idx, select.slot_idx
        n1 = self.n_nodes
        pair = batch.pair[bi, mi]  # (S, N+1, 2)
        cond_node = self.cond_node(comp)[..., bi, :, :]  # (..., S, N+1, key_dim)
        if select.node is not None:
            at = select.node.reshape(-1, 1, 1)
            pair = pair.gather(-2, at.expand(-1, 1, 2)).squeeze(-2)  # (S, 2)
            idx = _expand_like(at.expand(-1, 1, cond_node.shape[-1]), cond_node)
            cond_node = cond_node.gather(-2, idx).squeeze(-2)  # (..., S, key_dim)
            task = self.cond_task(z)[..., bi, mi, :]
        else:
            task = self.cond_task(z)[..., bi, mi, :].unsqueeze(-2)
        pair_h = torch.relu(task + cond_node + self.cond_pair(_expand_pop(pair, k)))
        rel, share = self.block_head(pair_h), self.share_head(pair_h)
        node_s = node[..., bi, mi, :]
        sub = self.subcarrier_head(z[..., bi, mi, :])
        value = self.value_out(torch.relu(self.value_hidden(g))).squeeze(-1)
        if self.dueling:
            node_s, rel, share, sub = (
                t - t.mean(-1, keepdim=True) for t in (node_s, rel, share, sub)
            )
        j = torch.arange(self.n_blocks)
        offset = (j - batch.progress[bi, mi].unsqueeze(-1)).clamp_min(0)  # (S, L+1)
        if select.node is None:
            offset = offset.unsqueeze(-2).expand(offset.shape[0], n1, self.n_blocks)
        block = rel.gather(-1, _expand_pop(offset, k))
        return BranchValues(value, (node_s, block, share, sub), None, None, self.task_sum)


class SlotSelection(NamedTuple):
    """Task slots (and optionally one node each) at which :meth:`CerlQNetwork.forward` scores.

    Attributes:
        batch_idx: ``(S,)`` long, state of each selected slot.
        slot_idx: ``(S,)`` long, task slot.
        node: ``(S,)`` long node at which the node-conditional block / share heads are read,
            or None for every node.
    """

    batch_idx: Tensor
    slot_idx: Tensor
    node: Tensor | None = None


def deciding_selection(deciding: Tensor, actions: Tensor | None = None) -> SlotSelection:
    """The deciding task slots of a batch (``deciding`` ``(B, M)``), read at the actions' nodes
    (``actions`` ``(B, M, 4)``) when given."""
    bi, mi = torch.nonzero(deciding > 0, as_tuple=True)
    return SlotSelection(bi, mi, None if actions is None else actions[bi, mi, 0])


def _scatter_tasks(per_sel: Tensor, select: SlotSelection, shape: torch.Size) -> Tensor:
    """Per-task values ``(..., B, M)`` that are ``per_sel`` at the selected slots, else 0."""
    out = per_sel.new_zeros(*per_sel.shape[:-1], *shape)
    out[..., select.batch_idx, select.slot_idx] = per_sel
    return out


def joint_q_selected(
    values: BranchValues, actions: Tensor, deciding: Tensor, select: SlotSelection
) -> Tensor:
    """:func:`joint_q` from the output of ``forward(batch, select)`` with ``select`` the
    deciding slots at the actions' nodes (:func:`deciding_selection`); the other slots add 0."""
    a = actions[select.batch_idx, select.slot_idx]  # (S, 4)
    chosen = []
    for b, t in enumerate(values.branches):
        idx = _expand_like(a[:, b : b + 1], t[..., :1])
        chosen.append(t.gather(-1, idx).squeeze(-1))
    per_task = _scatter_tasks(torch.stack(chosen, -1).mean(-1), select, deciding.shape)
    return values.value + _over_tasks(per_task, deciding, values.task_sum)


def masked_branch_max_selected(
    values: BranchValues, masks: Sequence[Tensor], deciding: Tensor, select: SlotSelection
) -> Tensor:
    """:func:`masked_branch_max` (node-conditional, uncoupled) from the output of
    ``forward(batch, select)`` with ``select`` the deciding slots at every node."""
    bi, mi = select.batch_idx, select.slot_idx
    masked = []
    for b, (t, mask) in enumerate(zip(values.branches, masks)):
        m = mask[bi, mi]
        m = _expand_like(m.unsqueeze(-2) if b in (1, 2) else m, t)
        masked.append(t.masked_fill(~m, -math.inf))
    best = [t.amax(-1) for t in masked]
    joint = (masked[0] + (best[1] + best[2])).amax(-1) + best[3]
    per_sel = torch.where(torch.isfinite(joint), joint / 4.0, torch.zeros_like(joint))
    per_task = _scatter_tasks(per_sel, select, deciding.shape)
    return values.value + _over_tasks(per_task, deciding, values.task_sum)


# --------------------------------------------------------------------------- joint values


def _expand_like(t: Tensor, ref: Tensor) -> Tensor:
    """Prepend the population dimensions of ``ref`` to ``t`` (``(B, ...)``)."""
    extra = ref.ndim - t.ndim
    return t.reshape(*([1] * extra), *t.shape).expand(*ref.shape[:extra], *t.shape)


def _over_tasks(per_task: Tensor, deciding: Tensor, task_sum: bool) -> Tensor:
    """Sum (or mean) over the deciding task slots (``(..., B, M)`` -> ``(..., B)``); 0 when none."""
    w = deciding if task_sum else deciding / deciding.sum(-1, keepdim=True).clamp_min(1.0)
    return (per_task * w).sum(-1)


def _coupled_share(values: BranchValues, node: Tensor, block: Tensor) -> Tensor | None:
    """``block_work[j] * share_scale[d, :]`` at given nodes and block ends, ``(..., B, M, K)``."""
    if values.share_scale is None or values.block_work is None:
        return None
    scale = _at_node(values.share_scale, node)
    work = values.block_work.gather(-1, block.unsqueeze(-1))  # (B, M, 1)
    return _expand_like(work, scale) * scale


def is_conditional(values: BranchValues) -> bool:
    """Whether the block / share branches are node-conditional (one more dimension)."""
    return values.branches[1].ndim == values.branches[0].ndim + 1


def _at_node(t: Tensor, node: Tensor) -> Tensor:
    """Rows ``t[..., b, m, node[b, m], :]`` of a node-conditional branch ``(..., B, M, N+1, n)``."""
    idx = node.reshape(*node.shape, 1, 1).expand(*node.shape, 1, t.shape[-1])
    return t.gather(-2, _expand_like(idx, t)).squeeze(-2)


def joint_q(values: BranchValues, actions: Tensor, deciding: Tensor) -> Tensor:
    """BDQ joint value ``v(s) + sum_{m deciding} mean_b A_b(s, m, a_mb)`` of given actions.

    The sum over task slots is a mean when ``values.task_sum`` is False; the share value
    includes the block-scaled term when ``values.share_scale`` is set.

    Args:
        values: Network output (maybe population-stacked).
        actions: ``(B, M, 4)`` long.
        deciding: ``(B, M)`` float.

    Returns:
        ``(..., B)``.
    """
    chosen = []
    cond = is_conditional(values)
    coupled = _coupled_share(values, actions[..., 0], actions[..., 1])
    for b, t in enumerate(values.branches):
        if cond and b in (1, 2):
            t = _at_node(t, actions[..., 0])
        if b == 2 and coupled is not None:
            t = t + coupled
        idx = _expand_like(actions[..., b : b + 1], t[..., :1])
        chosen.append(t.gather(-1, idx).squeeze(-1))
    per_task = torch.stack(chosen, -1).mean(-1)
    return values.value + _over_tasks(per_task, deciding, values.task_sum)


def masked_branch_max(values: BranchValues, masks: Sequence[Tensor], deciding: Tensor) -> Tensor:
    """``v(s) + mean_{m deciding, b} max_{valid x} A_b(s, m, x)``: the branch-wise maximum.

    Each branch is maximised over its own mask (``masks`` as from
    :meth:`ActionDecoder.union_masks`), independently of the other branches and task slots,
    as in BDQ's target; used for the population fitness (eq. (14)), where it is computed for
    every individual at once. With node-conditional block / share branches the node is
    maximised jointly with them: ``max_d [A_node(d) + max_j A_block(d, j) + max_s
    A_share(d, s)]`` (the block and share masks are the union over the nodes).

    Args:
        values: Network output (maybe population-stacked).
        masks: Four ``(B, M, n_b)`` bool tensors.
        deciding: ``(B, M)`` float.
    """
    masked = []
    cond = is_conditional(values)
    for b, (t, mask) in enumerate(zip(values.branches, masks)):
        m = _expand_like(mask.unsqueeze(-2) if cond and b in (1, 2) else mask, t)
        masked.append(t.masked_fill(~m, -math.inf))
    best = [t.amax(-1) for t in masked]
    if cond:
        if values.share_scale is not None and values.block_work is not None:
            # Block and share coupled: max over (j, s) of A_block(d, j) + A_share(d, j, s).
            scale = values.share_scale.masked_fill(
                ~_expand_like(masks[2].unsqueeze(-2), values.share_scale), 0.0
            )
            work = _expand_like(values.block_work.unsqueeze(-2), masked[1])  # (.., B, M, 1, L+1)
            pair = masked[1].unsqueeze(-1) + masked[2].unsqueeze(-2)
            pair = pair + work.unsqueeze(-1) * scale.unsqueeze(-2)
            block_share = pair.amax((-1, -2))
        else:
            block_share = best[1] + best[2]
        # max over the node of A_node(d) + max_j A_block(d, j) + max_s A_share(d, s).
        per_node = masked[0] + block_share
        joint = per_node.amax(-1) + best[3]
        per_task = torch.where(torch.isfinite(joint), joint / 4.0, torch.zeros_like(joint))
        return values.value + _over_tasks(per_task, deciding, values.task_sum)
    per_task = torch.stack(best, -1)
    # Non-deciding slots have a single allowed value; mask them out of the mean anyway.
    per_task = torch.where(torch.isfinite(per_task), per_task, torch.zeros_like(per_task))
    return values.value + _over_tasks(per_task.mean(-1), deciding, values.task_sum)


def union_mask_tensors(decoder: ActionDecoder, obs: Mapping[str, np.ndarray]) -> list[Tensor]:
    """The four per-branch union masks of a batched observation as bool tensors."""
    masks = decoder.union_masks(obs)
    return [torch.from_numpy(np.ascontiguousarray(masks[b])) for b in BRANCHES]


def greedy_actions(
    decoder: ActionDecoder,
    obs: Mapping[str, np.ndarray],
    values: BranchValues,
    joint: bool = True,
) -> np.ndarray:
    """Masked greedy joint action(s) from branch values (decoded task by task, -inf masks).

    Args:
        decoder: Mask computation of the environment.
        obs: Single or batched observation.
        values: Network output for ``obs``.
        joint: Per task slot, maximise the sum of the four branch values over the valid
            completions (:meth:`ActionDecoder.greedy_joint`: the argmax of :func:`joint_q`
            given the earlier task slots); False: branch by branch, the node from its own
            values first (:meth:`ActionDecoder.greedy`).
    """
    scores = [t.detach().cpu().numpy() for t in values.branches]
    coupling = None
    if values.share_scale is not None and values.block_work is not None:
        coupling = (
            values.share_scale.detach().cpu().numpy(),
            values.block_work.detach().cpu().numpy(),
        )
    if np.asarray(obs["task_node"]).ndim == 1:
        scores = [s[0] for s in scores]
        coupling = None if coupling is None else (coupling[0][0], coupling[1][0])
    if joint:
        return decoder.greedy_joint(obs, scores, coupling)
    return decoder.greedy(obs, scores, coupling)


# --------------------------------------------------------------------------- learner


class DQNLearner:
    """Online and target GCN Q-networks, their optimiser and the double-DQN update.

    Paper: van Hasselt, Guez, Silver, "Deep Reinforcement Learning with Double Q-learning",
    AAAI 2016; Tavakoli et al., "Action Branching Architectures for Deep RL", AAAI 2018;
    paper 002, eqs. (16)-(19).
    Code: own implementation.

    Args:
        q: The online network (the target is a copy).
        decoder: Masked decoding of the environment's actions.
        config: Learning settings (rate, gamma, loss, clipping, target period).
    """

    def __init__(self, q: CerlQNetwork, decoder: ActionDecoder, config: GcnDqnConfig) -> None:
        self.q = q
        self.q_target = _clone_net(q)
        self.decoder = decoder
        self.config = config
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)
        self.n_updates = 0

    @property
    def _sparse(self) -> bool:
        return self.q.sparse_heads and self.config.graph_groups > 0

    def _groups(self, batch: GraphBatch) -> list[tuple[Tensor, GraphBatch]]:
        return grouped_batches(batch, self.q.n_nodes, self.config.graph_groups)

    def joint_value(self, net: CerlQNetwork, batch: GraphBatch, actions: Tensor) -> Tensor:
        """``joint_q(net(batch), actions, batch.deciding)`` (differentiable when grad is on).

        With :attr:`GcnDqnConfig.graph_groups` > 0 and node-conditional heads the states are
        evaluated in size groups with their padding trimmed and the heads scored only at the
        deciding slots and the actions' nodes (same numbers up to float32 rounding).
        """
        if not self._sparse:
            return joint_q(net(batch), actions, batch.deciding)
        rows_all, parts = [], []
        for rows, g in self._groups(batch):
            sel = deciding_selection(g.deciding, actions[rows])
            parts.append(joint_q_selected(net(g, sel), actions[rows], g.deciding, sel))
            rows_all.append(rows)
        return torch.cat(parts, -1)[..., torch.argsort(torch.cat(rows_all))]

    def branch_values(self, net: CerlQNetwork, batch: GraphBatch) -> BranchValues:
        """``net(batch)`` for decoding; with sparse heads (see :meth:`joint_value`) the block /
        share values of non-deciding task slots are 0 (the decoder never reads them: such a
        slot has a single valid action)."""
        if not self._sparse:
            return net(batch)
        n_b, n_m = batch.deciding.shape
        value = batch.x.new_zeros(n_b)
        full: list[Tensor] | None = None
        for rows, g in self._groups(batch):
            sel = deciding_selection(g.deciding)
            out = net(g, sel)
            value[rows] = out.value
            if full is None:
                full = [t.new_zeros(n_b, n_m, *t.shape[1:]) for t in out.branches]
            for f, t in zip(full, out.branches):
                f[rows[sel.batch_idx], sel.slot_idx] = t
        assert full is not None
        return BranchValues(value, tuple(full), None, None, self.q.task_sum)  # type: ignore[arg-type]

    def td_target(self, sample: ReplaySample, next_batch: GraphBatch | None = None) -> Tensor:
        """``r + gamma (1 - terminated) Q'(s', argmax-decoded by the online net)`` (eq. (17))."""
        nb = graph_batch(sample.next_obs) if next_batch is None else next_batch
        with torch.no_grad():
            a_star = greedy_actions(
                self.decoder,
                sample.next_obs,
                self.branch_values(self.q, nb),
                self.config.greedy_decoding == "joint",
            )
            q_next = self.joint_value(self.q_target, nb, torch.from_numpy(a_star))
            r = torch.from_numpy(sample.rewards)
            done = torch.from_numpy(sample.terminated)
            disc = self.config.gamma if sample.discount is None else torch.from_numpy(sample.discount)
            return r + disc * (1.0 - done) * q_next

    def loss(self, sample: ReplaySample) -> Tensor:
        """TD loss of a minibatch (eq. (18)), differentiable in the online parameters."""
        y = self.td_target(sample)
        b = graph_batch(sample.obs)
        q_sa = self.joint_value(self.q, b, torch.from_numpy(sample.actions.astype(np.int64)))
        if self.config.loss == "huber":
            return nn.functional.smooth_l1_loss(q_sa, y)
        return nn.functional.mse_loss(q_sa, y)

    def update(self, sample: ReplaySample) -> float:
        """One gradient step (eq. (19)); syncs the target every ``target_update_interval``."""
        loss = self.loss(sample)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.n_updates += 1
        if self.n_updates % self.config.target_update_interval == 0:
            self.sync_target()
        return float(loss.detach())

    def sync_target(self) -> None:
        """Hard update ``theta' <- theta``."""
        self.q_target.load_state_dict(self.q.state_dict())


def _clone_net(q: CerlQNetwork) -> CerlQNetwork:
    return copy.deepcopy(q)


# --------------------------------------------------------------------------- parameter noise


def noise_delta(eps: float, sizes: Sequence[int]) -> float:
    """Target KL ``delta = -log(1 - eps + eps / |A|)`` averaged over the branches of sizes ``|A|``."""
    vals = [-math.log(1.0 - eps + eps / max(1, int(n))) for n in sizes]
    return float(np.mean(vals))


def branch_kl(
    values: BranchValues, perturbed: BranchValues, masks: Sequence[Tensor], deciding: Tensor
) -> Tensor:
    """Mean KL(softmax(Q) || softmax(perturbed Q)) over deciding task slots and branches.

    Softmaxes are taken over each branch's valid values (``masks``); a node-conditional
    branch contributes its mean over the task slot's valid nodes. The share branch is taken
    without its block-scaled term (``share_scale``), i.e. for an empty block.
    """
    kls = []
    cond = is_conditional(values)
    for b, (t, tp, mask) in enumerate(zip(values.branches, perturbed.branches, masks)):
        if cond and b in (1, 2):
            mask = mask.unsqueeze(-2).expand_as(t)
        logp = torch.log_softmax(t.masked_fill(~mask, -math.inf), -1)
        logq = torch.log_softmax(tp.masked_fill(~mask, -math.inf), -1)
        terms = torch.where(mask, logp.exp() * (logp - logq), torch.zeros_like(logp))
        kl = terms.sum(-1)
        if cond and b in (1, 2):
            # Node-conditional branch: mean over the nodes the task may go to.
            kl = masked_mean(kl.unsqueeze(-1), masks[0], dim=-2).squeeze(-1)
        kls.append(kl)
    per_task = torch.stack(kls, -1).mean(-1)
    dec = deciding.sum()
    if float(dec) == 0.0:
        return torch.zeros(())
    return (per_task * deciding).sum() / dec


def adapt_noise_scale(scale: float, distance: float, delta: float, coef: float) -> float:
    """Plappert et al. (2018): shrink the scale when the distance exceeds delta, else grow it."""
    return scale / coef if distance > delta else scale * coef


# --------------------------------------------------------------------------- agents


def env_config_of(env_or_config: Any) -> CerlConfig:
    """The :class:`CerlConfig` of an environment, a wrapper of one, a config or a mapping."""
    if isinstance(env_or_config, (CerlEnv, BatchedCerlEnv)):
        return env_or_config.config
    unwrapped = getattr(env_or_config, "unwrapped", None)
    if isinstance(unwrapped, (CerlEnv, BatchedCerlEnv)):
        return unwrapped.config
    return make_config(env_or_config)


def action_layout(cfg: CerlConfig) -> dict[str, Any]:
    """What fixes the shape of actions and observations: N, M, L, share levels, S."""
    return {
        "n_devices": int(cfg.n_devices),
        "max_tasks": int(cfg.max_tasks),
        "n_layers": int(N_LAYERS),
        "share_levels_pct": [int(v) for v in cfg.share_levels_pct],
        "n_subcarriers": int(cfg.n_subcarriers),
    }


class GcnDqnAgentBase:
    """Common machinery of the GCN-DQN agents: environment copies, replay, learner, I/O.

    Args:
        env_or_config: A CERL environment (or wrapper), a :class:`CerlConfig`, a mapping of
            its fields, or None for the defaults. The agent trains on its own
            :class:`BatchedCerlEnv` built from this config.
        config: The agent's config (its class's ``config_cls``) or a mapping of its fields.
        seed: Seeds the network initialisation, the environment copies (``seed + i``), the
            exploration and the replay sampling.
    """

    name: ClassVar[str] = "gcn-dqn"
    config_cls: ClassVar[type[GcnDqnConfig]] = GcnDqnConfig
    dueling: ClassVar[bool] = False

    def __init__(
        self,
        env_or_config: EnvOrConfig = None,
        config: GcnDqnConfig | Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.env_config = env_config_of(env_or_config)
        if isinstance(config, self.config_cls):
            self.config = config
        elif config is None or isinstance(config, Mapping):
            self.config = config_from_dict(
                self.config_cls, dict(config or {}), self.config_cls.__name__
            )
        else:
            raise InputError(
                f"config must be a {self.config_cls.__name__} or a mapping, got {type(config).__name__}"
            )
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.decoder = ActionDecoder(self.env_config)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.q = CerlQNetwork(
                self.env_config.n_devices + 1,
                len(self.env_config.share_levels_pct),
                self.env_config.n_subcarriers,
                self.config.net,
                dueling=self.dueling,
            )
        self.learner = DQNLearner(self.q, self.decoder, self.config)
        work = layer_workload_cycles(self.env_config.cycles_per_calc)
        self._done_share = np.concatenate([[0.0], np.cumsum(work) / work.sum()])
        self.num_timesteps = 0  # environment transitions collected
        self.env: BatchedCerlEnv | None = None
        self.buffer: DictReplayBuffer | None = None
        self._obs: dict[str, np.ndarray] | None = None
        self._grad_credit = 0.0
        self._budget = 1
        self._losses: list[float] = []
        self._episode_costs: dict[str, list[float]] = {}
        self.epochs_done = 0
        self.selected_params: Tensor | None = None
        self.selected_cost = math.inf
        self.validation_cost = math.nan
        self._validated_at = -1

    @property
    def _joint(self) -> bool:
        return self.config.greedy_decoding == "joint"

    # ------------------------------------------------------------------ environment plumbing

    @property
    def n_rows(self) -> int:
        """Environment copies stepped together."""
        raise NotImplementedError

    def _row_groups(self) -> dict[str, np.ndarray]:
        """Named groups of environment rows (for the episode cost statistics)."""
        return {"": np.arange(self.n_rows)}

    def _setup(self) -> None:
        if self.env is not None:
            return
        self.env = BatchedCerlEnv(num_envs=self.n_rows, config=self.env_config)
        obs, _ = self.env.reset(seed=None if self.seed is None else int(self.seed))
        self._obs = obs
        self.buffer = DictReplayBuffer(
            self.env.single_observation_space,
            self.env.single_action_space,
            capacity=self.config.buffer_size,
            num_envs=self.n_rows,
            compress_floats=self.config.compress_floats,
        )

    def _potential(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Phi(s) of :attr:`GcnDqnConfig.progress_shaping` for a batched observation, (B,)."""
        n1 = self.env_config.n_devices + 1
        m = self.env_config.max_tasks
        active = np.asarray(obs["node_mask"])[:, n1:].reshape(-1, m, N_LAYERS)[..., 0] > 0
        left = 1.0 - self._done_share[np.asarray(obs["task_progress"])]
        return -self.config.progress_shaping * (active * left).sum(-1)

    def _step(self, actions: np.ndarray) -> None:
        """Step every copy, store the transitions, record finished episodes."""
        assert self.env is not None and self.buffer is not None and self._obs is not None
        obs, rew, term, trunc, infos = self.env.step(actions)
        stored = np.asarray(rew, dtype=np.float64)
        if self.config.progress_shaping > 0.0:
            ended = np.asarray(term, bool) | np.asarray(trunc, bool)
            phi_next = self._potential(obs)
            if ended.any():
                phi_next = np.where(ended, self._potential(infos["final_obs"]), phi_next)
            phi_next = np.where(np.asarray(term, bool), 0.0, phi_next)
            stored = stored + self.config.gamma * phi_next - self._potential(self._obs)
        self.buffer.add(
            self._obs,
            actions,
            stored.astype(np.float32) * self.config.reward_scale,
            term,
            trunc,
            infos.get("final_obs"),
        )
        if "episode_stats" in infos:
            ended = np.asarray(infos["_episode_stats"], dtype=bool)
            costs = np.asarray(infos["episode_stats"]["cost"], dtype=np.float64)
            for group, rows in self._row_groups().items():
                sel = rows[ended[rows]]
                self._episode_costs.setdefault(group, []).extend(costs[sel].tolist())
        self._obs = obs
        self.num_timesteps += self.n_rows

    def _random_actions(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.decoder.sample(obs, self.rng)

    def _warmup(self) -> None:
        """Fill the replay buffer with random valid actions up to ``learning_starts``."""
        self._setup()
        assert self.buffer is not None and self._obs is not None
        need = max(self.config.learning_starts, self.config.batch_size, 1)
        while len(self.buffer) < need:
            self._step(self._random_actions(self._obs))

    def _epsilon(self) -> float:
        cfg = self.config
        frac = min(1.0, self.num_timesteps / max(1.0, cfg.exploration_fraction * self._budget))
        return cfg.exploration_initial_eps + frac * (
            cfg.exploration_final_eps - cfg.exploration_initial_eps
        )

    def _epsilon_greedy(self, obs: Mapping[str, np.ndarray], eps: float) -> np.ndarray:
        with torch.no_grad():
            actions = greedy_actions(self.decoder, obs, self.q(graph_batch(obs)), self._joint)
        explore = self.rng.random(actions.shape[0]) < eps
        if explore.any():
            actions[explore] = self._random_actions(obs)[explore]
        return actions

    def _train(self, vector_steps: int = 1) -> None:
        """Gradient updates earned by ``vector_steps`` vector steps."""
        assert self.buffer is not None
        self._grad_credit += self.config.gradient_steps_per_step * vector_steps
        while self._grad_credit >= 1.0:
            self._grad_credit -= 1.0
            cfg = self.config
            if cfg.n_step > 1:
                sample = self.buffer.sample_n_step(cfg.batch_size, self.rng, cfg.n_step, cfg.gamma)
            else:
                sample = self.buffer.sample(cfg.batch_size, self.rng)
            self._losses.append(self.learner.update(sample))

    def _epoch_info(self, start: float) -> dict[str, float]:
        info: dict[str, float] = {
            "env_steps": float(self.num_timesteps),
            "gradient_steps": float(self.learner.n_updates),
            "loss_mean": float(np.mean(self._losses)) if self._losses else math.nan,
            "epsilon": float(self._epsilon()),
            "wall_s": float(time.perf_counter() - start),
            "validation_cost": float(self.validation_cost),
        }
        self.validation_cost = math.nan
        for group, costs in self._episode_costs.items():
            key = f"episode_cost_{group}_mean" if group else "episode_cost_mean"
            info[key] = float(np.mean(costs)) if costs else math.nan
        self._losses = []
        self._episode_costs = {}
        return info

    # ------------------------------------------------------------------ deployment choice

    def _candidate_params(self) -> Tensor:
        """Flat parameters of the network the agent acts with before any selection."""
        return flat_params(self.q)

    def _values_of(self, params: Tensor, batch: GraphBatch) -> BranchValues:
        """Branch values of ``batch`` under the flat parameters ``params``."""
        out = population_call(self.q, params.unsqueeze(0), batch)
        return BranchValues(
            out.value[0],
            tuple(t[0] for t in out.branches),  # type: ignore[arg-type]
            None if out.share_scale is None else out.share_scale[0],
            out.block_work,
            out.task_sum,
        )

    def validate(self, params: Tensor | None = None, episodes: int | None = None) -> float:
        """Mean cost of the greedy policy of ``params`` on the validation episodes.

        Args:
            params: Flat network parameters (default: the acting network,
                :meth:`_candidate_params`).
            episodes: Number of episodes (default ``select_episodes``); seeds
                ``VALIDATION_SEED, VALIDATION_SEED + 1, ...`` of the training environment.

        Returns:
            Mean episode cost (eq. (6) cost plus failure penalties).
        """
        from edgerl.cerl.baselines import evaluate_policy

        flat = self._candidate_params() if params is None else params.detach().to(torch.float32)
        n = self.config.select_episodes if episodes is None else int(episodes)

        def policy(obs: Mapping[str, np.ndarray]) -> np.ndarray:
            with torch.no_grad():
                values = self._values_of(flat, graph_batch(obs))
            return greedy_actions(self.decoder, obs, values, self._joint)

        res = evaluate_policy(self.env_config, policy, episodes=n, seed=VALIDATION_SEED)
        return float(res["cost_mean"])

    def _select(self) -> None:
        """Validate the acting network; keep it for act() if it beats the kept one."""
        if self._validated_at == self.epochs_done:
            return
        params = self._candidate_params()
        cost = self.validate(params)
        self._validated_at = self.epochs_done
        self.validation_cost = cost
        if self.selected_params is None or cost < self.selected_cost:
            self.selected_params = params.clone()
            self.selected_cost = cost

    def _end_epoch(self) -> None:
        """Count an epoch; run the deployment check when one is due."""
        self.epochs_done += 1
        every = self.config.select_every
        if every > 0 and self.epochs_done % every == 0:
            self._select()

    def _end_learn(self) -> None:
        """Final deployment check at the end of learn() (the last network is a candidate)."""
        if self.config.select_every > 0:
            self._select()

    # ------------------------------------------------------------------ acting

    def _act_values(self, batch: GraphBatch) -> BranchValues:
        if self.selected_params is not None:
            return self._values_of(self.selected_params, batch)
        return self.q(batch)

    def _act_explore(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._epsilon_greedy(obs, self.config.exploration_final_eps)

    def act(self, obs: Mapping[str, np.ndarray], deterministic: bool = True) -> np.ndarray:
        """Greedy valid action ``(M, 4)`` (or ``(B, M, 4)`` for a batched observation).

        Args:
            obs: Observation of :class:`CerlEnv` (or batched, of :class:`BatchedCerlEnv`).
            deterministic: False adds the agent's exploration (epsilon-greedy with
                ``exploration_final_eps``; D2QN: its perturbed network).
        """
        if not deterministic:
            o, batched = _batched(obs)
            action = self._act_explore(o)
            return action if batched else action[0]
        with torch.no_grad():
            values = self._act_values(graph_batch(obs))
        return greedy_actions(self.decoder, obs, values, self._joint)

    __call__ = act

    # ------------------------------------------------------------------ checkpoints

    def _extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epochs_done": int(self.epochs_done)}
        if self.selected_params is not None:
            state["selected_params"] = self.selected_params.clone()
            state["selected_cost"] = float(self.selected_cost)
        return state

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.epochs_done = int(state.get("epochs_done", 0))
        if "selected_params" in state:
            sel = torch.as_tensor(state["selected_params"], dtype=torch.float32)
            n = sum(p.numel() for p in self.q.parameters())
            if sel.shape != (n,):
                raise InputError(
                    f"checkpoint selected_params has shape {tuple(sel.shape)}, the network "
                    f"{n} parameters"
                )
            self.selected_params = sel
            self.selected_cost = float(state.get("selected_cost", math.inf))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a plain state dict (``torch.save``) atomically.

        The checkpoint holds ``meta`` (kind, format, action layout N / M / L / share levels /
        S, environment and agent configs, seed), the online and target networks, the
        optimiser and the agent's own extra state.
        """
        state = {
            "meta": {
                "kind": self.name,
                "format": CHECKPOINT_FORMAT,
                "layout": action_layout(self.env_config),
                "env_config": self.env_config.model_dump(mode="json"),
                "agent_config": self.config.model_dump(mode="json"),
                "seed": -1 if self.seed is None else int(self.seed),
                "num_timesteps": int(self.num_timesteps),
            },
            "q": self.q.state_dict(),
            "q_target": self.learner.q_target.state_dict(),
            "optimizer": self.learner.optimizer.state_dict(),
            "n_updates": int(self.learner.n_updates),
            "extra": self._extra_state(),
        }
        return atomic_torch_save(path, state)

    @classmethod
    def load(cls, path: str | os.PathLike[str], env_or_config: EnvOrConfig = None) -> Any:
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)``).

        Args:
            path: The checkpoint file.
            env_or_config: The environment the agent will act in; when given, the
                checkpoint's action layout (N, M, L, share levels, S) must equal its layout.

        Raises:
            InputError: If the file is missing or not a checkpoint of this agent, or its
                layout differs from ``env_or_config`` (the message lists every difference).
        """
        p, state = read_torch_checkpoint(path)
        meta = state.get("meta") if isinstance(state, dict) else None
        if not isinstance(meta, dict) or "kind" not in meta:
            raise InputError(f"{p}: not an edgerl CERL agent checkpoint (no 'meta' entry)")
        if meta["kind"] != cls.name:
            raise InputError(f"{p}: holds a '{meta['kind']}' agent, not '{cls.name}'")
        if int(meta.get("format", -1)) != CHECKPOINT_FORMAT:
            raise InputError(
                f"{p}: checkpoint format {meta.get('format')} is not supported "
                f"(expected {CHECKPOINT_FORMAT})"
            )
        env_cfg = make_config(meta["env_config"])
        if env_or_config is not None:
            target = env_config_of(env_or_config)
            mine, theirs = meta["layout"], action_layout(target)
            diff = [k for k in theirs if mine.get(k) != theirs[k]]
            if diff:
                details = "; ".join(
                    f"{k}: checkpoint {mine.get(k)} vs environment {theirs[k]}" for k in diff
                )
                raise InputError(
                    f"{p}: the checkpoint was trained for another action/observation layout "
                    f"and cannot act in this environment ({details})"
                )
            env_cfg = target
        seed = None if int(meta["seed"]) < 0 else int(meta["seed"])
        agent = cls(env_cfg, config=meta["agent_config"], seed=seed)
        try:
            agent.q.load_state_dict(state["q"])
            agent.learner.q_target.load_state_dict(state["q_target"])
            agent.learner.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InputError(f"{p}: network weights do not fit the stored config ({exc})") from None
        agent.learner.n_updates = int(state["n_updates"])
        agent.num_timesteps = int(meta["num_timesteps"])
        agent._load_extra_state(state.get("extra", {}))
        return agent


class DDQNAgent(GcnDqnAgentBase):
    """Double DQN with the GCN branching Q-network (baseline of paper 002, section 5.2.2).

    Paper: van Hasselt, Guez, Silver, "Deep Reinforcement Learning with Double Q-learning",
    AAAI 2016.
    Code: own implementation (see :class:`DQNLearner`).

    Learning: ``learning_starts`` random transitions, then per vector step of ``n_envs`` copies
    an epsilon-greedy action per copy and ``gradient_steps_per_step`` updates.
    """

    name: ClassVar[str] = "ddqn"
    config_cls: ClassVar[type[GcnDqnConfig]] = DDQNConfig
    config: DDQNConfig

    @property
    def n_rows(self) -> int:
        return int(self.config.n_envs)

    def _explore_actions(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._epsilon_greedy(obs, self._epsilon())

    def _before_step(self, step: int) -> None:
        return None

    def learn(
        self,
        total_steps: int,
        callback: Callback | None = None,
    ) -> DDQNAgent:
        """Train for ``total_steps`` environment transitions (warm-up included).

        Args:
            total_steps: Budget in transitions (vector steps x ``n_envs``).
            callback: Called after every epoch (``steps_per_epoch`` vector steps) with a dict
                of metrics (``epoch``, ``env_steps``, ``gradient_steps``, ``loss_mean``,
                ``episode_cost_mean``, ``epsilon``, ``wall_s``); returning False stops.

        Returns:
            self.
        """
        if int(total_steps) < 1:
            raise InputError(f"total_steps must be >= 1, got {total_steps}")
        self._budget = self.num_timesteps + int(total_steps)
        start = time.perf_counter()
        self._warmup()
        epoch = 0
        step = 0
        while self.num_timesteps < self._budget:
            assert self._obs is not None
            self._before_step(step)
            self._step(self._explore_actions(self._obs))
            self._train(1)
            step += 1
            if step % self.config.steps_per_epoch == 0 or self.num_timesteps >= self._budget:
                epoch += 1
                self._end_epoch()
                info = {"epoch": float(epoch), **self._epoch_info(start)}
                if callback is not None and callback(info) is False:
                    break
        self._end_learn()
        return self


class D2QNAgent(DDQNAgent):
    """Dueling double DQN with adaptive parameter-space noise (D2QN, baseline of paper 002).

    Paper: Wang et al., "Dueling Network Architectures for Deep RL", ICML 2016; van Hasselt et
    al., AAAI 2016; Plappert et al., "Parameter Space Noise for Exploration", ICLR 2018.
    Code: own implementation.

    Exploration: the copies act greedily with a perturbed online network
    ``theta + sigma * N(0, I)`` (normalisation parameters unperturbed), redrawn every
    ``param_noise_resample_interval`` vector steps. Every ``param_noise_adapt_interval`` steps
    ``sigma`` is divided by ``param_noise_adapt_coef`` when the mean KL between the masked
    ``softmax(Q)`` and the perturbed one, over a replay minibatch, exceeds
    ``delta = -log(1 - eps + eps / |A_b|)`` (averaged over the branches, with ``eps`` the
    current epsilon of the schedule), and multiplied by it otherwise.
    """

    name: ClassVar[str] = "d2qn"
    config_cls: ClassVar[type[GcnDqnConfig]] = D2QNConfig
    dueling: ClassVar[bool] = True
    config: D2QNConfig

    def __init__(
        self,
        env_or_config: EnvOrConfig = None,
        config: GcnDqnConfig | Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(env_or_config, config, seed)
        self.noise_scale = float(self.config.param_noise_init)
        self.q_perturbed = _clone_net(self.q)
        self._noise_gen = torch.Generator()
        if seed is None:
            self._noise_gen.seed()
        else:
            self._noise_gen.manual_seed(int(seed) + 2)
        self.last_kl = math.nan
        self.perturb()

    def _noisy_names(self) -> list[str]:
        return [n for n, _ in self.q.named_parameters() if ".norms." not in f".{n}"]

    def perturb(self) -> None:
        """Draw a new perturbed copy ``theta + sigma eps`` of the online network."""
        noisy = set(self._noisy_names())
        with torch.no_grad():
            for (name, p), pp in zip(self.q.named_parameters(), self.q_perturbed.parameters()):
                pp.copy_(p)
                if name in noisy:
                    pp.add_(torch.randn(p.shape, generator=self._noise_gen) * self.noise_scale)

    def adapt_noise(self, sample: ReplaySample | None = None) -> float:
        """Adapt ``noise_scale`` from the KL on a replay minibatch; returns that KL."""
        assert self.buffer is not None or sample is not None
        if sample is None:
            assert self.buffer is not None
            sample = self.buffer.sample(self.config.batch_size, self.rng)
        b = graph_batch(sample.obs)
        masks = union_mask_tensors(self.decoder, sample.obs)
        with torch.no_grad():
            kl = float(branch_kl(self.q(b), self.q_perturbed(b), masks, b.deciding))
        delta = noise_delta(self._epsilon(), self.decoder.nvec)
        self.noise_scale = adapt_noise_scale(
            self.noise_scale, kl, delta, self.config.param_noise_adapt_coef
        )
        self.last_kl = kl
        self.perturb()
        return kl

    def _before_step(self, step: int) -> None:
        cfg = self.config
        if step > 0 and step % cfg.param_noise_adapt_interval == 0:
            self.adapt_noise()
        elif step > 0 and step % cfg.param_noise_resample_interval == 0:
            self.perturb()

    def _explore_actions(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            values = self.q_perturbed(graph_batch(obs))
        return greedy_actions(self.decoder, obs, values, self._joint)

    def _act_explore(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._explore_actions(obs)

    def _epoch_info(self, start: float) -> dict[str, float]:
        info = super()._epoch_info(start)
        info["param_noise_scale"] = float(self.noise_scale)
        info["param_noise_kl"] = float(self.last_kl)
        return info

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "noise_scale": float(self.noise_scale)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        super()._load_extra_state(state)
        if "noise_scale" in state:
            self.noise_scale = float(state["noise_scale"])
            self.perturb()


def flat_params(net: nn.Module) -> Tensor:
    """The network's flat parameter vector (a detached copy)."""
    return parameters_to_vector(net.parameters()).detach().clone()


def set_flat_params(net: nn.Module, flat: Tensor) -> None:
    """Write a flat parameter vector into the network."""
    with torch.no_grad():
        vector_to_parameters(flat.detach().to(torch.float32), net.parameters())
