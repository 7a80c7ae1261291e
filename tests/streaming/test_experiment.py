"""Streaming experiments: every experiment writes its CSV, PNG and summary (tiny settings), the
command line runs one, and the quick preset stays within its time budget."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from edgerl.cli import main
from edgerl.streaming.configs import StreamConfig
from edgerl.streaming.experiment import (
    EXPERIMENTS,
    PRESETS,
    StreamExperimentConfig,
    _r2_train,
    make_config,
    run_experiment,
)
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError


def tiny(cache: Path) -> dict:
    """Smaller than the quick preset: 320x192 frames, 16 frames per video, one epoch."""
    cfg = json.loads(json.dumps(PRESETS["quick"]))
    cfg["train"]["data"].update(width_px=320, height_px=192, n_frames=16, nms_timing_frames=2, cache_dir=str(cache))
    cfg["train"]["grid"]["scales"] = [192, 128]
    cfg["train"].update(epochs=1, context_every_frames=4)
    cfg["streamer_scales"] = [192]
    cfg["tracking_strides"] = [1, 3]
    cfg["switch_costs_ms"] = [50.0]
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _check_outputs(out: Path, name: str, summary: dict) -> None:
    assert (out / f"{name}.csv").is_file() and (out / f"{name}.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["experiment"] == name and on_disk["seeds"] == summary["seeds"]
    for m, row in on_disk["methods"].items():
        for k in ("sap", "sap50", "sap75", "sap_small", "sap_medium", "sap_large"):
            assert k in row, (m, k)
        assert 0.0 <= row["sap"] <= 1.0 and len(row["sap_per_seed"]) == len(summary["seeds"])
    rows = _read_csv(out / f"{name}.csv")
    pooled = {r["method"] for r in rows if r.get("video") == "all"}
    assert pooled == set(on_disk["methods"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_table3_through_the_cli(tmp_path, cache):
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny(cache)))
    out = tmp_path / "t3"
    assert main(["experiment", "streaming-table3", "--out", str(out), "--config", str(cfg_path)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    _check_outputs(out, "streaming-table3", summary)
    assert set(summary["methods"]) == {"bandit", "static_expert", "streamer_s192", "adascale", "adascale_idle_free", "random"}
    # the static expert is the best configuration on the training videos
    table = summary["static_expert_train_sap"]
    assert table[summary["static_expert_config"]] == max(table.values())
    assert summary["bandit_minus_static_expert_sap"] == pytest.approx(summary["methods"]["bandit"]["sap"] - summary["methods"]["static_expert"]["sap"])
    assert 0.0 < summary["context_share_of_detector"] < 0.5 and summary["sap_eval_s_900_frames"] > 0
    assert summary["r2_fixed_policy"] == "static_expert"
    margins = summary["bandit_minus_static_expert_sap_per_seed"]
    assert margins == pytest.approx([summary["methods"]["bandit"]["sap"] - summary["methods"]["static_expert"]["sap"]])
    # no deviation thresholds in this config: the plain greedy policy
    assert summary["bandit_deviation_threshold_per_seed"] == [-math.inf]
    n_dev, n_dec = summary["bandit_deviating_decisions_per_seed"][0]
    assert 0 <= n_dev <= n_dec
    oracle = summary["oracle"]
    assert set(oracle) == {"best_static_on_test", "per_video", "per_scene", "per_segment", "segment_frames"}
    assert all(0.0 <= oracle[k] <= 1.0 for k in ("per_video", "per_scene", "per_segment"))


@pytest.mark.parametrize("name", ["streaming-resilience", "streaming-tracking", "streaming-switching"])
def test_other_experiments_write_their_outputs(tmp_path, cache, name):
    cfg = config_from_dict(StreamExperimentConfig, tiny(cache), "tiny")
    summary = run_experiment(name, tmp_path / name, "quick", cfg)
    _check_outputs(tmp_path / name, name, summary)
    methods = set(summary["methods"])
    if name == "streaming-resilience":
        assert {"bandit@slow2x", "bandit_nominal@slow2x", "static_expert@nominal", "static_expert_nominal@slow2x"} <= methods
    elif name == "streaming-tracking":
        assert methods == {"static_expert", "static_expert_k3", "bandit_no_tracker", "bandit_tracker"}
        assert summary["static_tracker_config"].endswith("_s3")
    else:
        assert {"streamer_person_n", "streamer_person_s", "static_expert", "bandit@switch50ms", "bandit_no_switchability@switch50ms"} <= methods
        assert summary["grid_size"] == 2 * 2 * 2


def test_r2_fixed_policy_follows_the_setting():
    cfg = make_config("quick")
    expert = StreamConfig.parse("person_n@256_k100_s1")
    tcfg = _r2_train(cfg, cfg.train, expert, reward="r1")
    assert tcfg.fixed_config == expert.name and tcfg.reward == "r1"
    paper_fixed = cfg.model_copy(update={"r2_fixed_policy": "config"})
    assert _r2_train(paper_fixed, cfg.train, expert).fixed_config is None  # train.fixed_config
    assert make_config("paper").train.val_videos == 8 and make_config("quick").train.val_videos == 0


def test_bad_names():
    with pytest.raises(InputError, match="expected one of streaming-table3"):
        run_experiment("streaming-nope", "/nonexistent", "quick")
    with pytest.raises(InputError, match="--preset: 'fast'"):
        make_config("fast")
    assert set(EXPERIMENTS) == {"streaming-table3", "streaming-resilience", "streaming-tracking", "streaming-switching"}
    paper = make_config("paper")
    assert paper.seeds == [0, 1, 2] and paper.train.epochs == 10 and paper.train.data.n_train_videos == 20
    # test videos on seeds never read while the preset's settings were chosen
    assert paper.train.data.seeds("test") == [4_000_000, 4_000_001, 4_000_002, 4_000_003]
    # test (and validation) runtimes are common random numbers keyed by frame and configuration
    assert paper.train.common_runtime_draws and not make_config("quick").train.common_runtime_draws
    # conservative deviation: tau = inf (the static expert itself) is always a candidate
    taus = paper.train.deviation_thresholds
    assert taus is not None and math.inf in taus and -math.inf in taus and paper.train.val_repeats == 2
    assert paper.train.data.frames("train") == 150 and paper.train.data.frames("test") == 300
    assert paper.train.data.scene_range("train") == [30, 75] and paper.train.data.scene_range("test") == [60, 150]
    assert paper.train.r2_common_draws and paper.train.select_from_epoch == 5


@pytest.mark.slow
def test_quick_preset_from_scratch(tmp_path):
    cfg = make_config("quick")
    cfg.train.data.cache_dir = str(tmp_path / "cache")  # rendering and detection included
    summary = run_experiment("streaming-table3", tmp_path / "q", "quick", cfg)
    _check_outputs(tmp_path / "q", "streaming-table3", summary)
