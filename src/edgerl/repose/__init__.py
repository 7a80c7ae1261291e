"""RE-POSE: RL-driven partitioning (RL-DCA) and MCKP-planned parallel offloading.

Paper: Shi et al., "RE-POSE: Synergizing Reinforcement Learning-Based Partitioning and
Offloading for Edge Object Detection". Importing this package registers ``edgerl/RLDCA-v0``.
"""

from edgerl.repose.blocks import uniform_blocks
from edgerl.repose.clustering import (
    Clustering,
    cluster_areas,
    cluster_blocks,
    initial_clusters,
    merge_closest,
    split_cluster,
    y_transform,
)
from edgerl.repose.env import ENV_ID, RLDCAConfig, RLDCAEnv, greedy_refine, register_envs
from edgerl.repose.mckp import (
    ParallelPlan,
    Plan,
    PrecisionTable,
    block_values,
    solve_mckp,
    solve_parallel,
)

register_envs()

__all__ = [
    "ENV_ID",
    "Clustering",
    "ParallelPlan",
    "Plan",
    "PrecisionTable",
    "RLDCAConfig",
    "RLDCAEnv",
    "block_values",
    "cluster_areas",
    "cluster_blocks",
    "greedy_refine",
    "initial_clusters",
    "merge_closest",
    "register_envs",
    "solve_mckp",
    "solve_parallel",
    "split_cluster",
    "uniform_blocks",
    "y_transform",
]
