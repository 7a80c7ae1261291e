"""CERL agent: CEM-evolved population of GCN Q-networks plus a double-DQN learner (paper 002, Alg. 1).

One **generation** (= one training epoch of paper 002) runs the four stages of Algorithm 1:

1. **CEM optimisation** (lines 3-6). Every slot of the population of ``k`` flat parameter
   vectors except the injected RL slot is redrawn from the separable Gaussian
   (:class:`~edgerl.rl.cem.SeparableCEM`, antithetic pairs). The fitness of every individual is
   the negative TD error of eq. (14) on one minibatch of ``J`` replay transitions,
   ``f_i = -mean_j (r_j + gamma (1 - term_j) max_a' Q_{theta'_i}(s'_j, a') - Q_{theta_i}(s_j, a_j))^2``,
   computed for the whole population at once (:func:`population_fitness`: stacked parameters
   through ``torch.func.functional_call`` and batched matrix products, in chunks of
   ``fitness_chunk`` individuals; the minibatch in ``graph_groups`` groups of similar graph
   size with the padding nodes trimmed, and the node-conditional heads scored only at the
   deciding task slots, which leaves the values unchanged up to float32 rounding). ``max_a'`` is the branch-wise maximum over each branch's
   valid values (:func:`~edgerl.cerl.dqn.masked_branch_max`, the BDQ target), and ``theta'_i``
   is the individual's own target network: a fresh draw's own parameters (``fresh_target``),
   the injected RL individual's the RL target network, all synced to their online networks
   every ``target_sync_generations`` = H generations (line 18). The top half are the
   elites; the mean and variance move toward them (eq. (15)).
2. **Elite interaction** (line 7). The ``elite_actors`` best individuals act greedily (masked
   branch decoding) in their own environment copies; their transitions go to the shared replay
   buffer. The other individuals never act.
3. **RL interaction and optimisation** (lines 8-15). The RL network acts epsilon-greedily in
   ``rl_envs`` copies; after every vector step it takes ``gradient_steps_per_step`` double-DQN
   updates (:class:`~edgerl.cerl.dqn.DQNLearner`, eqs. (17)-(19)) on replay minibatches.
4. **RL injection** (lines 16-18). The RL network and its target replace the individual with
   the lowest fitness of this generation (never an elite), so the next draw keeps them; the RL
   target is synced every ``target_update_interval`` updates; the population targets are synced
   every H generations.

A generation therefore costs ``steps_per_generation x (elite_actors + rl_envs)`` environment
transitions and ``steps_per_generation x gradient_steps_per_step`` gradient updates, the same
as an epoch of :class:`~edgerl.cerl.dqn.DDQNAgent` with ``n_envs = elite_actors + rl_envs`` and
``steps_per_epoch = steps_per_generation``.

:meth:`CerlAgent.act` decides with the RL network (``act_network="rl"``, the network the
population's elites feed with experience) or with the individual of best fitness of the last
generation (``"best"``); with ``select_every`` > 0 (:class:`~edgerl.cerl.dqn.GcnDqnConfig`),
with the one of those networks, checked every ``select_every`` generations, that cost least on
validation episodes.

A freshly drawn individual's target network is its own draw (``fresh_target="own"``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.func import functional_call, vmap

from edgerl.cerl.dqn import (
    BranchValues,
    Callback,
    CerlQNetwork,
    EnvOrConfig,
    GcnDqnAgentBase,
    GcnDqnConfig,
    GraphBatch,
    deciding_selection,
    flat_params,
    graph_batch,
    greedy_actions,
    grouped_batches,
    joint_q,
    joint_q_selected,
    masked_branch_max,
    masked_branch_max_selected,
    union_mask_tensors,
)
from edgerl.rl.cem import SeparableCEM
from edgerl.rl.nets import population_call, unflatten_parameters
from edgerl.rl.replay import ReplaySample
from edgerl.utils.errors import InputError

__all__ = ["CerlAgent", "CerlAgentConfig", "population_fitness"]


class CerlAgentConfig(GcnDqnConfig):
    """Settings of :class:`CerlAgent` (plus the shared DQN settings of GcnDqnConfig)."""

    pop_size: int = Field(50, ge=2)
    """Population size k (paper 002: 50)."""

    elite_frac: float = Field(0.5, gt=0.0, lt=1.0)
    """Fraction of the population kept as elites (paper 002: the top half)."""

    fitness_batch: int = Field(64, ge=1)
    """J, replay transitions on which the fitness of eq. (14) is computed (paper 002: 64)."""

    elite_actors: int = Field(5, ge=0)
    """Best elites that interact with the environment, one environment copy each."""

    rl_envs: int = Field(3, ge=1)
    """Environment copies driven by the RL network (epsilon-greedy)."""

    steps_per_generation: int = Field(8, ge=1)
    """Vector steps of all copies per generation (one generation = one epoch)."""

    target_sync_generations: int = Field(1, ge=1)
    """H: generations between hard syncs of every individual's target network (paper: 1)."""

    sigma_init: float = Field(1e-3, gt=0.0)
    """Initial CEM variance per parameter (Sigma = sigma_init I, Algorithm 1)."""

    damp_init: float = Field(1e-3, gt=0.0)
    """Initial variance floor of the CEM update (the epsilon I of eq. (15))."""

    damp_limit: float = Field(1e-5, ge=0.0)
    """Value the variance floor decays to."""

    damp_tau: float = Field(0.95, ge=0.0, le=1.0)
    """Decay factor of the variance floor per generation."""

    var_max: float | None = Field(1e-5, gt=0.0)
    """Upper bound on the CEM variance of every parameter, at the start and after each update
    (None: none, as eq. (15), whose epsilon I is only a lower bound; paper 002 gives no
    value for either). The injected RL network ranks first most generations and the mean moves only
    its log-rank weight (~0.14 of the way for 25 elites) toward it, so the mean lags the RL
    network and the term lambda_1 (z_RL - mu_old)^2 of eq. (15) keeps the variance near the
    square of that lag: at N = 10 the standard deviation grew from 0.032 to 0.07 per
    parameter, as large as the weights themselves (rms 0.03-0.07), and the elites other than
    the RL network acted like random networks (episode cost 400-800 against ~16 for the RL
    network) while they filled half of the replay. With 1e-5 (standard deviation 0.003, a
    tenth of the weights) the elites' episode costs came to 12-35 against the RL network's
    14-31 (same run after epoch 10)."""

    antithetic: bool = True
    """Draw the population in mirrored pairs around the mean."""

    fitness_chunk: int = Field(4, ge=1)
    """Individuals evaluated per batched call in the fitness (speed only: bounds memory; at
    N = 50 with J = 64, chunks of 10 spent half their time in page faults of the ~140 MB
    activations)."""

    act_network: Literal["rl", "best"] = "rl"
    """Network used by act(): the RL network or the best-fitness individual of the last
    generation (with ``select_every`` > 0, the candidate of each deployment check)."""

    fresh_target: Literal["own", "previous"] = "own"
    """Target network theta'_i of an individual freshly drawn from N(mu, Sigma) (Algorithm 1,
    line 3), on which its fitness (eq. (14)) is computed. 'own': its own parameters, i.e. the
    hard update theta'_i <- theta_i of line 18 applied to the new draw, so the fitness is the
    individual's own Bellman residual. 'previous': the parameters its slot held at the last
    sync, i.e. an unrelated earlier draw: the fitness then mostly measures the distance
    between two random networks (N = 10, seed 1: the individual of best fitness cost 346 and
    189 on validation episodes at epochs 15 and 30, against 12 and 9 for the RL network)."""

    @model_validator(mode="after")
    def _check_batch(self) -> CerlAgentConfig:
        if int(round(self.elite_frac * self.pop_size)) >= self.pop_size:
            raise ValueError(
                f"elite_frac * pop_size ({self.elite_frac} * {self.pop_size}) must leave at least "
                "one non-elite slot for the RL injection"
            )
        return self


def population_fitness(
    net: CerlQNetwork,
    population: Tensor,
    targets: Tensor,
    sample: ReplaySample,
    gamma: float,
    next_masks: Sequence[Tensor],
    chunk: int = 10,
    sparse: bool | None = None,
    groups: int = 4,
) -> Tensor:
    """Negative TD error (eq. (14)) of every individual on one replay minibatch, at once.

    Args:
        net: A network whose parameter layout the flat vectors follow.
        population: ``(k, P)`` online parameters ``theta_i``.
        targets: ``(k, P)`` target parameters ``theta'_i``.
        sample: ``J`` transitions (rewards as stored, i.e. scaled).
        gamma: Discount factor.
        next_masks: Per-branch union masks of the next states (``(J, M, n_b)`` bool).
        chunk: Individuals per batched call.
        sparse: Score the node-conditional heads only where they count: the online values at
            the deciding slots and the stored actions' nodes, the target values at the deciding
            slots of the next states (:class:`~edgerl.cerl.dqn.SlotSelection`; non-deciding
            slots add 0 to the joint value either way). Same numbers as the dense path up to
            float32 rounding; None: whenever the network allows it
            (:attr:`CerlQNetwork.sparse_heads`).
        groups: Evaluate the states in this many groups of similar graph size, each with its
            padding nodes trimmed (:func:`~edgerl.cerl.dqn.size_groups`,
            :func:`~edgerl.cerl.dqn.compact_graph_batch`); the values are put back in the
            minibatch's order before the mean. 0: the padded batch as it is.

    Returns:
        ``(k,)`` fitness, higher is better.
    """
    b = graph_batch(sample.obs)
    nb = graph_batch(sample.next_obs)
    actions = torch.from_numpy(sample.actions.astype(np.int64))
    r = torch.from_numpy(sample.rewards)
    not_done = 1.0 - torch.from_numpy(sample.terminated)
    if sparse is None:
        sparse = net.sparse_heads
    n_states = actions.shape[0]

    def parts(batch: GraphBatch, acts: Tensor | None) -> list[tuple[Tensor, GraphBatch, Any]]:
        return [
            (rows, g, deciding_selection(g.deciding, None if acts is None else acts[rows]))
            if sparse
            else (rows, g, None)
            for rows, g in grouped_batches(batch, net.n_nodes, groups)
        ]

    now_parts = parts(b, actions)
    next_parts = parts(nb, None)
    step = max(1, int(chunk))
    out = []
    with torch.inference_mode():
        for c in range(0, population.shape[0], step):
            online, target = population[c : c + step], targets[c : c + step]
            q = torch.empty(online.shape[0], n_states)
            for rows, g, sel in now_parts:
                if sel is not None:
                    qv = population_call(net, online, g, sel)
                    q[:, rows] = joint_q_selected(qv, actions[rows], g.deciding, sel)
                else:
                    q[:, rows] = joint_q(population_call(net, online, g), actions[rows], g.deciding)
            nxt = torch.empty(online.shape[0], n_states)
            for rows, g, sel in next_parts:
                masks = [m[rows] for m in next_masks]
                if sel is not None:
                    tv = population_call(net, target, g, sel)
                    nxt[:, rows] = masked_branch_max_selected(tv, masks, g.deciding, sel)
                else:
                    nxt[:, rows] = masked_branch_max(population_call(net, target, g), masks, g.deciding)
            y = r + gamma * not_done * nxt
            out.append(-((y - q) ** 2).mean(-1))  # eq. (14)
    return torch.cat(out)


class CerlAgent(GcnDqnAgentBase):
    """CERL: CEM-based evolutionary RL over GCN Q-networks (paper 002, Algorithm 1).

    Paper: Tan, Guo, Zhou, Kuang, "CERL: Evolutionary Reinforcement Learning for Partitioned
    Collaborative Inference on On-Device Models", JMLIS 1(1), 2025; fitness and elite
    interaction after VEB-RL (Li et al., ICML 2024), CEM after CEM-RL (ICLR 2019).
    Code: own implementation (no public code of CERL exists).

    See the module docstring for one generation. Args as :class:`GcnDqnAgentBase`, with a
    :class:`CerlAgentConfig`.
    """

    name: ClassVar[str] = "cerl"
    config_cls: ClassVar[type[GcnDqnConfig]] = CerlAgentConfig
    config: CerlAgentConfig

    def __init__(
        self,
        env_or_config: EnvOrConfig = None,
        config: CerlAgentConfig | Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(env_or_config, config, seed)
        cfg = self.config
        self.cem = SeparableCEM(
            flat_params(self.q),
            pop_size=cfg.pop_size,
            elite_frac=cfg.elite_frac,
            sigma_init=cfg.sigma_init,
            damp_init=cfg.damp_init,
            damp_limit=cfg.damp_limit,
            damp_tau=cfg.damp_tau,
            antithetic=cfg.antithetic,
            seed=None if seed is None else int(seed) + 1,
        )
        if cfg.var_max is not None:
            self.cem.var.clamp_(max=cfg.var_max)
        self.population: Tensor | None = None
        self.population_targets: Tensor | None = None
        self.rl_slot: int | None = None
        self.fitness: Tensor | None = None
        self.best_params: Tensor | None = None
        self.generation = 0

    # ------------------------------------------------------------------ rows

    @property
    def n_rows(self) -> int:
        return int(self.config.elite_actors + self.config.rl_envs)

    def _row_groups(self) -> dict[str, np.ndarray]:
        ea = self.config.elite_actors
        return {"elite": np.arange(ea), "rl": np.arange(ea, self.n_rows)}

    # ------------------------------------------------------------------ stages

    def _draw_population(self) -> None:
        """Algorithm 1, line 3: redraw every slot except the injected RL individual."""
        k = self.config.pop_size
        if self.population is None or self.population_targets is None:
            self.population = self.cem.sample(k)
            self.population_targets = self.population.clone()
            return
        keep = self.rl_slot
        slots = [i for i in range(k) if i != keep]
        self.population[slots] = self.cem.sample(len(slots))
        if self.config.fresh_target == "own":
            assert self.population_targets is not None
            self.population_targets[slots] = self.population[slots]

    def evaluate_population(self, sample: ReplaySample | None = None) -> Tensor:
        """Fitness (eq. (14)) of the current population on a replay minibatch of size J."""
        assert self.population is not None and self.population_targets is not None
        if sample is None:
            assert self.buffer is not None
            sample = self.buffer.sample(self.config.fitness_batch, self.rng)
        masks = union_mask_tensors(self.decoder, sample.next_obs)
        return population_fitness(
            self.q,
            self.population,
            self.population_targets,
            sample,
            self.config.gamma,
            masks,
            self.config.fitness_chunk,
            sparse=None if self.config.graph_groups > 0 else False,
            groups=self.config.graph_groups,
        )

    def _elite_actions(self, obs: Mapping[str, np.ndarray], params: Tensor) -> np.ndarray:
        """Greedy actions of individual ``i`` (``params[i]``) in environment copy ``i``."""
        batch = graph_batch(obs)
        # One state per individual: give each copy a batch dimension of 1 and map over both.
        rows = GraphBatch(*(t.unsqueeze(1) for t in batch))
        net = self.q

        def one(flat: Tensor, b: GraphBatch) -> tuple[Tensor, ...]:
            out = functional_call(net, unflatten_parameters(flat, net), (b,))
            extra = () if out.share_scale is None else (out.share_scale,)
            return (out.value, *out.branches, *extra)

        with torch.no_grad():
            out = [t[:, 0] for t in vmap(one)(params, rows)]
        coupled = len(out) > 5
        values = BranchValues(
            out[0],
            tuple(out[1:5]),  # type: ignore[arg-type]
            out[5] if coupled else None,
            batch.block_work if coupled else None,
            self.q.task_sum,
        )
        return greedy_actions(self.decoder, obs, values, self._joint)

    def _interact_and_train(self, actor_params: Tensor) -> None:
        """Algorithm 1, lines 7-15: elites and the RL network act; the RL network learns."""
        ea = self.config.elite_actors
        eps = self._epsilon()
        for _ in range(self.config.steps_per_generation):
            assert self._obs is not None
            obs = self._obs
            parts = []
            if ea > 0:
                parts.append(self._elite_actions({k: v[:ea] for k, v in obs.items()}, actor_params))
            parts.append(self._epsilon_greedy({k: v[ea:] for k, v in obs.items()}, eps))
            self._step(np.concatenate(parts, axis=0))
            self._train(1)

    def _inject(self) -> None:
        """Algorithm 1, lines 16-18: RL injection into the worst slot, target syncs."""
        assert self.population is not None and self.population_targets is not None
        assert self.fitness is not None
        worst = int(torch.argmin(torch.nan_to_num(self.fitness, nan=-math.inf)))
        self.population[worst] = flat_params(self.q)
        self.population_targets[worst] = flat_params(self.learner.q_target)
        self.rl_slot = worst
        if (self.generation + 1) % self.config.target_sync_generations == 0:
            self.population_targets.copy_(self.population)  # line 18, hard update every H

    def run_generation(self) -> dict[str, float]:
        """One generation (epoch) of Algorithm 1; returns its statistics."""
        cfg = self.config
        self._warmup()
        t0 = time.perf_counter()
        self._draw_population()
        assert self.population is not None
        fitness = self.evaluate_population()
        elite_idx = self.cem.update(self.population, fitness)
        if cfg.var_max is not None:
            self.cem.var.clamp_(max=cfg.var_max)
        fitness_s = time.perf_counter() - t0
        rl_fit = float(fitness[self.rl_slot]) if self.rl_slot is not None else math.nan
        rl_elite = self.rl_slot is not None and bool((elite_idx == self.rl_slot).any())
        self.fitness = fitness
        self.best_params = self.population[int(elite_idx[0])].clone()
        ea = cfg.elite_actors
        actors = elite_idx[torch.arange(ea) % elite_idx.shape[0]]
        self._interact_and_train(self.population[actors])
        self._inject()
        self.generation += 1
        return {
            "generation": float(self.generation),
            "fitness_max": float(fitness.max()),
            "fitness_mean": float(fitness.mean()),
            "fitness_rl": rl_fit,
            "rl_is_elite": float(rl_elite),
            "cem_std_mean": float(self.cem.var.sqrt().mean()),
            "fitness_s": float(fitness_s),
            "generation_s": float(time.perf_counter() - t0),
        }

    def learn(
        self,
        total_steps: int | None = None,
        *,
        generations: int | None = None,
        callback: Callback | None = None,
    ) -> CerlAgent:
        """Train for a budget of environment transitions or a number of generations.

        Args:
            total_steps: Budget in transitions (warm-up included); the last generation may
                overshoot it by less than one generation.
            generations: Run exactly this many generations (after the warm-up) instead.
            callback: Called after every generation with a dict of metrics (``generation``,
                ``env_steps``, ``gradient_steps``, ``loss_mean``, ``fitness_max``,
                ``fitness_mean``, ``fitness_rl``, ``rl_is_elite``, ``episode_cost_rl_mean``,
                ``episode_cost_elite_mean``, ``epsilon``, ``generation_s``, ``wall_s``);
                returning False stops.

        Returns:
            self.
        """
        if (total_steps is None) == (generations is None):
            raise InputError("learn() needs exactly one of total_steps and generations")
        per_gen = self.config.steps_per_generation * self.n_rows
        warm = max(self.config.learning_starts, self.config.batch_size, 1)
        if generations is not None:
            if int(generations) < 1:
                raise InputError(f"generations must be >= 1, got {generations}")
            self._budget = self.num_timesteps + warm + int(generations) * per_gen
            n_gen: int | None = int(generations)
        else:
            if int(total_steps) < 1:  # type: ignore[arg-type]
                raise InputError(f"total_steps must be >= 1, got {total_steps}")
            self._budget = self.num_timesteps + int(total_steps)  # type: ignore[arg-type]
            n_gen = None
        start = time.perf_counter()
        self._warmup()
        done = 0
        while (n_gen is not None and done < n_gen) or (
            n_gen is None and self.num_timesteps < self._budget
        ):
            stats = self.run_generation()
            self._end_epoch()
            done += 1
            info = {**stats, **self._epoch_info(start)}
            if callback is not None and callback(info) is False:
                break
        self._end_learn()
        return self

    # ------------------------------------------------------------------ acting and state

    def _candidate_params(self) -> Tensor:
        if self.config.act_network == "best" and self.best_params is not None:
            return self.best_params.clone()
        return flat_params(self.q)

    def _act_values(self, batch: GraphBatch) -> BranchValues:
        if self.selected_params is not None:
            return self._values_of(self.selected_params, batch)
        if self.config.act_network == "best" and self.best_params is not None:
            return self._values_of(self.best_params, batch)
        return self.q(batch)

    def _extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super()._extra_state(),
            "cem": self.cem.state_dict(),
            "generation": int(self.generation),
        }
        if self.best_params is not None:
            state["best_params"] = self.best_params.clone()
        return state

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        super()._load_extra_state(state)
        if "cem" in state:
            self.cem.load_state_dict(dict(state["cem"]))
        self.generation = int(state.get("generation", 0))
        if "best_params" in state:
            best = torch.as_tensor(state["best_params"], dtype=torch.float32)
            if best.shape != self.cem.mean.shape:
                raise InputError(
                    f"checkpoint best_params has {best.shape[0]} parameters, the network "
                    f"{self.cem.num_params}"
                )
            self.best_params = best
