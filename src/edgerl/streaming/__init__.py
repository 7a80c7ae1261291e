"""Adaptive streaming perception (paper 004, "Chanakya"): a contextual bandit choosing detector
configurations at run time, judged by streaming AP.

Building blocks: :mod:`~edgerl.streaming.sap` (streaming AP), :mod:`~edgerl.streaming.simulator`
(virtual clock, schedulers), :mod:`~edgerl.streaming.forecast` and
:mod:`~edgerl.streaming.tracker`, :mod:`~edgerl.streaming.bandit`,
:mod:`~edgerl.streaming.context`, :mod:`~edgerl.streaming.rewards`. The system on top:
:mod:`~edgerl.streaming.configs` (configuration grid), :mod:`~edgerl.streaming.data` (synthetic
videos and cached detections), :mod:`~edgerl.streaming.policies`,
:mod:`~edgerl.streaming.train` and :mod:`~edgerl.streaming.experiment`.

Submodules that import torch or the detectors are loaded on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # configuration grid
    "BRANCHES": "configs",
    "ConfigGrid": "configs",
    "StreamConfig": "configs",
    "input_hw": "configs",
    # data
    "StreamDataConfig": "data",
    "StreamDataset": "data",
    "StreamVideo": "data",
    "topk_nms": "data",
    "video_schedule": "data",
    # building blocks
    "StreamOutput": "sap",
    "streaming_ap": "sap",
    "RuntimeProfile": "simulator",
    "KeyedDraws": "simulator",
    "ModifiedShrinkingTail": "simulator",
    "simulate": "simulator",
    "KalmanForecaster": "forecast",
    "LightTracker": "tracker",
    "BanditConfig": "bandit",
    "ContextualBandit": "bandit",
    "context_vector": "context",
    "reward_r1": "rewards",
    "reward_r2": "rewards",
    # policies
    "AdaScalePolicy": "policies",
    "BanditPolicy": "policies",
    "ContextModels": "policies",
    "RandomPolicy": "policies",
    "StaticPolicy": "policies",
    "choose_static_expert": "policies",
    "evaluate_streams": "policies",
    "fit_context_models": "policies",
    "run_policy": "policies",
    "streamer": "policies",
    # training and experiments
    "StreamTrainConfig": "train",
    "train_bandit": "train",
    "train_streaming": "train",
    "StreamExperimentConfig": "experiment",
    "oracle_saps": "experiment",
    "run_experiment": "experiment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgerl.streaming' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgerl.streaming.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
