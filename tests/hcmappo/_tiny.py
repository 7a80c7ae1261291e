"""Tiny HC-MAPPO-L settings shared by the agent tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgerl.hcmappo.catalog as catalog_mod
from edgerl.edge.profiler import profile_model
from edgerl.hcmappo.config import PAPER_MODELS

LEAK = {
    n: 1.0 - np.arange(profile_model(n).num_layers + 1) / profile_model(n).num_layers
    for n in PAPER_MODELS
}
TINY_ENV = dict(
    n_servers=2,
    n_users=4,
    episode_slots=6,
    deploy_interval_slots=3,
    models=("lenet7", "resnet18", "vgg13"),
    services_per_model=2,
)
TINY_AGENT = dict(
    n_envs=2,
    user_hidden=32,
    critic_hidden=32,
    split_hidden=16,
    deploy_hidden=32,
    alloc_dim=16,
    alloc_heads=2,
    ppo_epochs=2,
    num_minibatches=2,
)


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    # The default leakage tables come from edgerl.edge.privacy; 1 - z / L stands in for them.
    monkeypatch.setattr(catalog_mod, "_LEAKAGE", dict(LEAK))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
