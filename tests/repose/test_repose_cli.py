"""RE-POSE commands end to end on tiny synthetic data with the committed detectors and policy."""

from __future__ import annotations

import json
from pathlib import Path

from edgerl.cli import main


def test_evaluate_repose_side_by_side(tmp_path: Path) -> None:
    data = tmp_path / "set"
    assert main(["synth", "--out", str(data), "--frames", "2", "--seed", "700100", "--width", "960", "--height", "540"]) == 0
    out = tmp_path / "cmp.json"
    rc = main(["evaluate", "repose", "--data", str(data), "--methods", "uniform,meanshift,repose", "--workers", "2",
               "--budget-ms", "100", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"uniform", "meanshift", "repose"}
    for row in res["methods"].values():
        for key in ("map50_95", "map50", "latency_ms_mean", "latency_ms_p95"):
            assert key in row
        assert 0.0 <= row["map50_95"] <= row["map50"] <= 1.0
    assert res["methods"]["repose"]["coarse_ms_mean"] > 0
    assert res["budget_ms"] == 100


def test_experiment_quick_preset(tmp_path: Path, monkeypatch) -> None:
    from edgerl.repose import experiment

    # an even smaller quick preset keeps the test short; the command path is the real one
    monkeypatch.setitem(experiment.PRESETS, "quick", {"frames": 1, "width_px": 960, "height_px": 540, "budget_ms": 100.0})
    out = tmp_path / "fig5"
    assert main(["experiment", "repose-fig5", "--preset", "quick", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"repose-fig5.csv", "repose-fig5.png", "summary.json", "config.yaml", "metrics.csv"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "repose-fig5" and summary["preset"] == "quick"
    assert set(summary["methods"]) == {"meanshift", "repose"}
    assert summary["seeds"] == [700_000]


def test_fig3_runs_every_budget_side_by_side(tmp_path: Path, monkeypatch) -> None:
    from edgerl.repose import experiment

    monkeypatch.setitem(
        experiment.PRESETS, "quick", {"frames": 1, "width_px": 960, "height_px": 540, "budgets_ms": [60.0, 120.0]}
    )
    out = tmp_path / "fig3"
    assert main(["experiment", "repose-fig3", "--preset", "quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    keys = {"uniform", "full"} | {f"{m}@{b}ms" for m in ("repose", "meanshift", "remix") for b in (60, 120)}
    assert set(summary["methods"]) == keys
    ratio = summary["vs_uniform"]["repose@120ms"]
    m = summary["methods"]
    assert ratio["ap_ratio"] == m["repose@120ms"]["map50_95"] / m["uniform"]["map50_95"]
    assert ratio["latency_ratio"] == m["repose@120ms"]["latency_ms_mean"] / m["uniform"]["latency_ms_mean"]


def test_evaluate_methods_interleaves_frames() -> None:
    import numpy as np

    from edgerl.repose.pipeline import FrameResult
    from edgerl.repose.runner import evaluate_methods
    from edgerl.vision.detections import Detections

    calls: list[tuple[str, int]] = []

    class Sample:
        def __init__(self, i: int) -> None:
            self.i, self.boxes, self.ignore, self.width, self.height = i, np.zeros((0, 4)), np.zeros((0, 4)), 8, 8

        def load_image(self) -> np.ndarray:
            return np.full((8, 8, 3), self.i, np.uint8)

    def method(name: str):
        def run(img: np.ndarray) -> FrameResult:
            calls.append((name, int(img[0, 0, 0])))
            return FrameResult(Detections.empty(), {"total": 1.0})

        return run

    table, frames = evaluate_methods([Sample(i) for i in range(3)], {n: method(n) for n in "abc"})
    # warm-up on frame 0, then frame i through every method starting at method i mod 3
    assert calls == [("a", 0), ("b", 0), ("c", 0),
                     ("a", 0), ("b", 0), ("c", 0),
                     ("b", 1), ("c", 1), ("a", 1),
                     ("c", 2), ("a", 2), ("b", 2)]  # fmt: skip
    assert [len(frames[n]) for n in "abc"] == [3, 3, 3] and table["a"]["frames"] == 3


def test_experiment_bad_preset(tmp_path: Path, capsys) -> None:
    assert main(["experiment", "repose-fig4", "--preset", "huge", "--out", str(tmp_path / "x")]) == 2
    assert "huge" in capsys.readouterr().err


def test_experiment_config_overrides_preset(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("frames: 0\n")
    assert main(["experiment", "repose-fig5", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "frames" in err and "bad.yaml" in err
    good = tmp_path / "good.yaml"
    good.write_text("frames: 1\nwidth_px: 640\nheight_px: 360\nbudget_ms: 80\nseed: 700123\n")
    out = tmp_path / "fig5"
    assert main(["experiment", "repose-fig5", "--config", str(good), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [700123] and summary["frame_size"] == [640, 360]
