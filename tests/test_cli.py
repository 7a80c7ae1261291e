"""The command line: version, DNN profile, config errors, demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgerl import __version__
from edgerl.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgerl", *args], capture_output=True, text=True, timeout=300)


def test_version_entry_point() -> None:
    r = _run("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"edgerl {__version__}"


def test_profile_dnn_vgg16_json(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("EDGERL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "vgg16.json"
    assert main(["profile", "dnn", "vgg16", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vgg16" in printed
    prof = json.loads(out.read_text())
    # Published VGG-16 cost: ~15.5 GMAC, 138.36 M parameters (fp32 bytes = 4 x params).
    assert prof["total_macs"] == pytest.approx(15.5e9, rel=0.02)
    assert prof["total_params_bytes"] == 4 * 138_357_544
    assert len(prof["layers"]) == 16
    assert prof["layers"][0]["macs"] == 224 * 224 * 64 * 3 * 9


def test_profile_dnn_unknown_model(capsys) -> None:
    assert main(["profile", "dnn", "vgg17"]) == 2
    err = capsys.readouterr().err
    assert "vgg17" in err and "vgg16" in err


def test_bad_config_exit_2_names_field_writes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("frames: -5\n")
    out = tmp_path / "run"
    r = _run("demo", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "frames" in lines[0] and "-5" in lines[0] and "greater than or equal to 1" in lines[0]
    assert not out.exists()


def test_unknown_config_field(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("bandwith_hz: 1\n")
    assert main(["demo", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown field 'bandwith_hz'" in err and "clip_seed" in err
    assert not (tmp_path / "r").exists()


def test_usage_error_exit_2() -> None:
    assert main(["profile", "dnn"]) == 2
    assert main(["no-such-command"]) == 2


def test_demo_run_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(
        "frames: 1\nwidth_px: 960\nheight_px: 540\nmethods: [uniform, repose]\n"
        "repose:\n  n_workers: 2\n  coarse_option: person_n@512\n  uniform_option: person_n@512\n"
        "  options: [person_n@512, person_s@640]\n"
    )
    out = tmp_path / "run"
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--json", str(tmp_path / "s.json")]) == 0
    assert {p.name for p in out.iterdir()} == {"config.yaml", "metrics.csv", "summary.json", "annotated_frame.png"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads((tmp_path / "s.json").read_text())
    assert set(summary["methods"]) == {"uniform", "repose"}
    for row in summary["methods"].values():
        assert 0.0 <= row["map50_95"] <= 1.0 and row["latency_ms_mean"] > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # one row per (method, frame)
    import cv2

    png = cv2.imread(str(out / "annotated_frame.png"))
    assert png.shape == (540, 960, 3)


def test_demo_unknown_method_writes_nothing(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("methods: [uniform, magic]\n")
    assert main(["demo", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "magic" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_experiment_config_is_merged_over_the_preset(tmp_path: Path) -> None:
    from edgerl.cli import _experiment_config, _merged
    from edgerl.utils.errors import InputError

    base = {"a": 1, "env": {"n": 3, "p": 0.5}, "seeds": [0]}
    assert _merged(base, {"env": {"n": 5}, "seeds": [1, 2]}) == {"a": 1, "env": {"n": 5, "p": 0.5}, "seeds": [1, 2]}
    assert base["env"] == {"n": 3, "p": 0.5}  # the preset itself is left alone

    from edgerl.cerl.experiment import PRESETS, CerlExperimentConfig

    y = tmp_path / "c.yaml"
    y.write_text("epochs: 7\nenv: {episode_slots: 4}\n")
    cfg = _experiment_config(CerlExperimentConfig, PRESETS, "quick", y)
    assert cfg.epochs == 7 and cfg.n_devices == PRESETS["quick"]["n_devices"]
    assert cfg.env == {**PRESETS["quick"]["env"], "episode_slots": 4}
    assert _experiment_config(CerlExperimentConfig, PRESETS, "paper", None) is None
    with pytest.raises(InputError, match="--preset: 'huge'"):
        _experiment_config(CerlExperimentConfig, PRESETS, "huge", y)
