"""HC-MAPPO-L: privacy-aware edge-device collaborative inference with safe MARL (paper 003).

Paper: Wang, Fan, Cheng, Yuan, Min, Liwang, Xia, "Safe Multi-Agent Deep Reinforcement Learning
for Privacy-Aware Edge-Device Collaborative DNN Inference". The environment (PettingZoo
``ParallelEnv`` :class:`HcEnv` over the batched NumPy core :class:`BatchedHcEnv`), the
hierarchical agent :class:`HcAgent` with its ablations, the heuristic baselines and the
experiments of section V.
"""

from edgerl.hcmappo.agent import METHODS, HcAgent, HcAgentConfig, method_config
from edgerl.hcmappo.baselines import (
    BASELINES,
    EdgeOnly,
    Greedy,
    GreedyCost,
    LocalOnly,
    LruDeployer,
    RandomPolicy,
    evaluate_policy,
    make_baseline,
)
from edgerl.hcmappo.batched import BatchedHcEnv, HcStep
from edgerl.hcmappo.config import HcConfig, make_config
from edgerl.hcmappo.env import HcEnv, env, parallel_env

__all__ = [
    "BASELINES",
    "METHODS",
    "BatchedHcEnv",
    "EdgeOnly",
    "Greedy",
    "GreedyCost",
    "HcAgent",
    "HcAgentConfig",
    "HcConfig",
    "HcEnv",
    "HcStep",
    "LocalOnly",
    "LruDeployer",
    "RandomPolicy",
    "env",
    "evaluate_policy",
    "make_baseline",
    "make_config",
    "method_config",
    "parallel_env",
]
