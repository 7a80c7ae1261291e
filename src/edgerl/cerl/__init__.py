"""CERL: evolutionary RL for partitioned collaborative inference (paper 002).

Paper: Tan, Guo, Zhou, Kuang, "CERL: Evolutionary Reinforcement Learning for Partitioned
Collaborative Inference on On-Device Models", JMLIS 2025. Importing this package registers
``edgerl/Cerl-v0`` (single environment; ``gym.make_vec`` with
``vectorization_mode="vector_entry_point"`` gives :class:`BatchedCerlEnv`).
"""

from edgerl.cerl.baselines import (
    BASELINES,
    CerlBaseline,
    EdgeComputing,
    LocalComputing,
    RandomPolicy,
    evaluate_policy,
    make_baseline,
)
from edgerl.cerl.env import (
    BRANCHES,
    ENV_ID,
    N_LAYERS,
    ActionDecoder,
    BatchedCerlEnv,
    CerlConfig,
    CerlEnv,
    CerlSimulator,
    InvalidActionError,
    MaskTables,
    layer_data_bits,
    layer_workload_cycles,
    make_config,
    register_envs,
)
from edgerl.cerl.exact import cost_per_cycle_floor, exact_min_cost

register_envs()

__all__ = [
    "BASELINES",
    "BRANCHES",
    "ENV_ID",
    "N_LAYERS",
    "ActionDecoder",
    "BatchedCerlEnv",
    "CerlBaseline",
    "CerlConfig",
    "CerlEnv",
    "CerlSimulator",
    "EdgeComputing",
    "InvalidActionError",
    "LocalComputing",
    "MaskTables",
    "RandomPolicy",
    "cost_per_cycle_floor",
    "evaluate_policy",
    "exact_min_cost",
    "layer_data_bits",
    "layer_workload_cycles",
    "make_baseline",
    "make_config",
    "register_envs",
]
