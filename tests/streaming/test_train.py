"""Bandit training (Algorithms 1-2): rewards R1 / R2 wired into learning on a toy stream, and the
``edgerl train streaming`` command end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from edgerl.cli import main
from edgerl.streaming.bandit import ContextualBandit
from edgerl.streaming.configs import ConfigGrid
from edgerl.streaming.data import StreamVideo
from edgerl.streaming.policies import (
    BanditPolicy,
    ContextModels,
    StaticPolicy,
    bandit_context_dim,
    evaluate_streams,
    run_policy,
)
from edgerl.streaming.simulator import RuntimeProfile
from edgerl.streaming.train import (
    StreamSetup,
    StreamTrainConfig,
    chosen_threshold,
    fixed_config,
    train_bandit,
    validation_sap,
)
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError

from ._toys import drifting_people

TOY_GRID = ConfigGrid(models=["toy"], scales=[200, 100], topks=[10], strides=[1])


def toy_video(seed: int, n: int = 60) -> StreamVideo:
    """Scale 100 finds boxes 25 px off (IoU 225 / 2975 = 0.08 < 0.5: never a match)."""
    return drifting_people(seed, n, 0.5, 25.0)


def toy_setup() -> StreamSetup:
    ds = SimpleNamespace(train=[toy_video(1), toy_video(2)], test=[toy_video(3)])
    runtimes = RuntimeProfile({c: [0.02] for c in TOY_GRID.names()})  # 0.6 frames each
    return StreamSetup(ds, TOY_GRID, runtimes, ContextModels((200, 200), TOY_GRID.scales), {})


def toy_cfg(reward: str) -> StreamTrainConfig:
    return config_from_dict(
        StreamTrainConfig,
        {
            "grid": TOY_GRID.model_dump(),
            "epochs": 6,
            "reward": reward,
            "fixed_config": "toy@100_k10_s1",
            "decide_prob": 0.15,
            "updates_per_video": 16,
            "forecast": False,
            "bandit": {"hidden_sizes": [32], "learning_rate": 3e-3, "learning_starts": 4, "batch_size": 8, "buffer_size": 64, "epsilon_decay": 0.97},
        },
    )


@pytest.mark.parametrize("reward", ["r1", "r2"])
def test_greedy_choice_converges_to_the_clearly_best_configuration(reward):
    setup, cfg = toy_setup(), toy_cfg(reward)
    bandit, rows = train_bandit(setup, cfg, seed=0)
    assert len(rows) == 6 * 2 and rows[-1]["epsilon"] < rows[0]["epsilon"]
    rewards = bandit._rewards[: bandit.buffer_len]
    if reward == "r1":
        assert rewards.max() <= 1.0  # an sAP
    else:
        # R2 = 10 * (R1 - R1 of the fixed policy); the fixed policy (scale 100) never matches,
        # so R2 = 10 * R1 and a good segment is worth several units
        assert rewards.max() > 3.0 and rewards.min() >= -1e-9
    # greedy test policy: every decision picks scale 200
    pol = BanditPolicy(bandit, TOY_GRID, setup.models, explore=False, interval_frames=10, forecast=False)
    res = run_policy(pol, setup.test[0], setup.runtimes, np.random.default_rng(0))
    assert set(res.configs) == {"toy@200_k10_s1"}
    assert res.evaluate(setup.test[0].gts)["sap"] > 0.5


def test_training_is_seeded():
    setup, cfg = toy_setup(), toy_cfg("r2")
    cfg.epochs = 2
    a, _ = train_bandit(setup, cfg, seed=3)
    b, _ = train_bandit(setup, cfg, seed=3)
    assert np.array_equal(a._rewards, b._rewards) and np.array_equal(a._actions, b._actions)


def test_validation_videos_pick_the_best_epoch():
    setup, cfg = toy_setup(), toy_cfg("r2")
    cfg.val_videos = 1  # learn on train-1, pick the epoch on train-2
    bandit, rows = train_bandit(setup, cfg, seed=0)
    assert {r["video"] for r in rows if "reward_mean" in r} == {"train-1"}
    val = [r for r in rows if r["video"] == "validation"]
    assert [r["epoch"] for r in val] == [1, 2, 3, 4, 5, 6]
    best = rows[-1]
    saps = [r["sap"] for r in val]
    assert best["video"] == "validation_best" and best["sap"] == max(saps)
    assert best["epoch"] == 1 + saps.index(max(saps))  # the first epoch reaching the best
    # the kept weights reproduce the best validation sAP (the greedy runs are deterministic)
    assert validation_sap(bandit, setup, setup.train[1:], cfg, 0, True) == pytest.approx(best["sap"])
    # picking only from epoch 4 on: the best of epochs 4-6
    late = cfg.model_copy(update={"select_from_epoch": 4})
    _, rows4 = train_bandit(setup, late, seed=0)
    assert [r["sap"] for r in rows4 if r["video"] == "validation"] == saps
    assert rows4[-1]["sap"] == max(saps[3:]) and rows4[-1]["epoch"] == 4 + saps[3:].index(max(saps[3:]))
    with pytest.raises(InputError, match="select_from_epoch"):
        config_from_dict(StreamTrainConfig, {"epochs": 3, "select_from_epoch": 4}, "train")
    cfg.val_videos = 2
    with pytest.raises(InputError, match=r"val_videos \(2\) must leave at least one of the 2"):
        train_bandit(setup, cfg, seed=0)


def test_fixed_config_must_be_in_the_grid():
    cfg = toy_cfg("r2")
    assert fixed_config(cfg).name == "toy@100_k10_s1"
    assert StreamTrainConfig().fixed_config is None
    assert fixed_config(StreamTrainConfig()).name == "person_n@480_k300_s1"
    with pytest.raises(InputError, match=r"fixed_config.*scale 999 is not one of"):
        config_from_dict(StreamTrainConfig, {"fixed_config": "person_n@999_k300_s1"}, "cfg")


def tiny_train_yaml(tmp_path: Path) -> Path:
    cfg = {
        "epochs": 1,
        "data": {"width_px": 320, "height_px": 192, "n_frames": 16, "train_frames": None, "n_train_videos": 1, "n_test_videos": 1, "nms_timing_frames": 2, "cache_dir": str(tmp_path / "cache")},
        "grid": {"models": ["person_n"], "scales": [192, 128], "topks": [100, 300], "strides": [1]},
        "fixed_config": "person_n@128_k300_s1",
        "context_every_frames": 4,
        "updates_per_video": 2,
        "bandit": {"hidden_sizes": [16], "learning_starts": 1, "batch_size": 1, "buffer_size": 16},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_train_streaming(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "streaming", "--out", str(out), "--config", str(tiny_train_yaml(tmp_path)), "--seed", "4"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "metrics.csv", "summary.json", "bandit.pt", "context_models.npz", "runtimes.json"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [4] and summary["fixed_config"] == "person_n@128_k300_s1"
    for m in ("bandit", "fixed"):
        assert 0.0 <= summary["methods"][m]["sap"] <= 1.0
    assert 0.0 <= summary["context_share_of_detector"] < 0.5
    bandit = ContextualBandit.from_checkpoint(out / "bandit.pt")
    assert bandit.n_arms == (1, 2, 2, 1) and bandit.branch_names == ("model", "scale", "topk", "stride")
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 4
    with np.load(out / "context_models.npz") as z:
        assert z["scale_X"].shape[0] == z["scale_y"].shape[0] > 0


def test_cli_train_streaming_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("fixed_config: person_n@999_k300_s1\n")
    assert main(["train", "streaming", "--out", str(tmp_path / "r"), "--config", str(path)]) == 2
    assert "scale 999 is not one of" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_shape_rewards_penalty_and_clip():
    from edgerl.streaming.train import shape_rewards

    acts = [(0, 1), (0, 1), (2, 1), (2, 0), (2, 0)]
    r = np.array([0.5, -0.2, 3.0, 0.1, -4.0])
    # decisions 2 and 3 change the action: 3.0 - 0.25 = 2.75, 0.1 - 0.25 = -0.15
    np.testing.assert_allclose(shape_rewards(r, acts, 0.25), [0.5, -0.2, 2.75, -0.15, -4.0])
    # then the clip at 1: [0.5, -0.2, 1.0, -0.15, -1.0]
    np.testing.assert_allclose(shape_rewards(r, acts, 0.25, clip=1.0), [0.5, -0.2, 1.0, -0.15, -1.0])
    np.testing.assert_array_equal(shape_rewards(r, acts), r)
    assert r[2] == 3.0  # the input is not modified
    with pytest.raises(InputError, match="5 rewards for 4 decisions"):
        shape_rewards(r, acts[:4])
    with pytest.raises(InputError, match="reward_clip"):
        config_from_dict(StreamTrainConfig, {"reward_clip": 0.0}, "train")


def test_r2_common_draws_cancel_the_runtime_noise():
    # one configuration, the fixed policy's own: the bandit's run and the fixed run differ only
    # through their runtime draws (three samples, 0.3 to 2.1 frames); with common draws the two
    # runs are the same and every R2 is exactly 0
    grid = ConfigGrid(models=["toy"], scales=[200], topks=[10], strides=[1])
    base = toy_setup()
    setup = StreamSetup(base.dataset, grid, RuntimeProfile({"toy@200_k10_s1": [0.01, 0.04, 0.07]}), base.models, {})
    cfg = toy_cfg("r2").model_copy(update={"grid": grid, "fixed_config": "toy@200_k10_s1", "epochs": 2})
    crn, _ = train_bandit(setup, cfg.model_copy(update={"r2_common_draws": True}), seed=0)
    assert crn.buffer_len > 0 and np.all(crn._rewards[: crn.buffer_len] == 0.0)
    plain, _ = train_bandit(setup, cfg, seed=0)
    assert np.any(plain._rewards[: plain.buffer_len] != 0.0)


def test_deviation_threshold_is_chosen_on_the_validation_videos():
    setup, cfg = toy_setup(), toy_cfg("r2")
    cfg = cfg.model_copy(update={"val_videos": 1, "deviation_thresholds": [float("-inf"), 0.1, float("inf")]})
    bandit, rows = train_bandit(setup, cfg, seed=0)
    taus = [r for r in rows if r["video"] == "validation_threshold"]
    assert [r["threshold"] for r in taus] == [float("inf"), 0.1, float("-inf")]  # larger first
    # tau = inf is the fixed policy (scale 100, never a match) on the validation video, with the
    # validation runtime draws (0, 13, 0)
    val = setup.train[1:]
    fixed_run = run_policy(StaticPolicy("toy@100_k10_s1", forecast=False), val[0], setup.runtimes, np.random.default_rng([0, 13, 0]))
    assert taus[0]["sap"] == evaluate_streams(val, [fixed_run])["sap"] == 0.0
    # the network's predicted advantage of scale 200 over 100 is 0.2-0.45 reward units at the
    # validation decisions, so 0.1 and -inf make the same decisions (scale 200 throughout); on
    # the tie the larger tau is kept
    assert taus[1]["sap"] == taus[2]["sap"] > 0.5
    best = rows[-1]
    assert best["video"] == "validation_threshold_best" and best["threshold"] == 0.1 == chosen_threshold(rows)
    assert validation_sap(bandit, setup, val, cfg, 0, True, fixed=fixed_config(cfg), threshold=0.1) == best["sap"]
    # a threshold above every predicted advantage keeps the fixed configuration: sAP 0
    assert validation_sap(bandit, setup, val, cfg, 0, True, fixed=fixed_config(cfg), threshold=2.0) == 0.0
    assert chosen_threshold([r for r in rows if r["video"] != "validation_threshold_best"]) == float("-inf")
    # all candidates tie (the fixed policy is the best arm): inf, i.e. the fixed policy, is kept
    same = cfg.model_copy(update={"fixed_config": "toy@200_k10_s1"})
    _, rows2 = train_bandit(setup, same, seed=0)
    if len({r["sap"] for r in rows2 if r["video"] == "validation_threshold"}) == 1:
        assert chosen_threshold(rows2) == float("inf")
    with pytest.raises(InputError, match="val_videos >= 1"):
        config_from_dict(StreamTrainConfig, {"deviation_thresholds": [0.1, float("inf")]}, "train")
    with pytest.raises(InputError, match="non-empty"):
        config_from_dict(StreamTrainConfig, {"val_videos": 1, "deviation_thresholds": []}, "train")


def test_validation_repeats_pool_more_runtime_draws():
    base, cfg = toy_setup(), toy_cfg("r2")
    runtimes = RuntimeProfile({c: [0.01, 0.04, 0.07] for c in TOY_GRID.names()})  # 0.3-2.1 frames
    setup = StreamSetup(base.dataset, TOY_GRID, runtimes, base.models, {})
    bandit = ContextualBandit(bandit_context_dim(False), TOY_GRID.n_arms, seed=0)
    cfg2 = cfg.model_copy(update={"val_repeats": 2})
    got = validation_sap(bandit, setup, setup.train, cfg2, 5, True)
    # reference: every video with draws (5, 13, k), then again with (5, 13, k, 1), pooled
    pol = BanditPolicy(bandit, TOY_GRID, setup.models, explore=False, interval_frames=cfg.test_interval_frames, forecast=False)
    seeds = [[5, 13, 0], [5, 13, 1], [5, 13, 0, 1], [5, 13, 1, 1]]
    vids = setup.train + setup.train
    runs = [run_policy(pol, v, runtimes, np.random.default_rng(s)) for v, s in zip(vids, seeds)]
    assert got == evaluate_streams(vids, runs)["sap"]
    assert [r.detector_runs for r in runs[:2]] != [r.detector_runs for r in runs[2:]]  # other draws
    assert validation_sap(bandit, setup, setup.train, cfg, 5, True) == evaluate_streams(vids[:2], runs[:2])["sap"]
