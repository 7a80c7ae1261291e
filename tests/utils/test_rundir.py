"""Run directories hold the resolved config, the metrics CSV and the summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import Field

from edgerl.utils.config import Config
from edgerl.utils.rundir import RunDir, run_name


class _Cfg(Config):
    lr: float = Field(3e-4, description="Learning rate.")


def test_rundir_files(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run", flush_every=2)
    rd.write_config(_Cfg())
    rd.log({"step": 1, "loss": 0.5})
    assert not (rd.path / "metrics.csv").exists()  # not flushed yet
    rd.log({"step": 2, "loss": 0.25})
    rows = list(csv.DictReader(open(rd.path / "metrics.csv")))
    assert [r["loss"] for r in rows] == ["0.5", "0.25"]
    rd.log({"step": 3, "loss": 0.125})
    rd.write_summary({"loss_final": 0.125}, json_path=tmp_path / "copy.json")
    assert json.loads((rd.path / "summary.json").read_text()) == {"loss_final": 0.125}
    assert json.loads((tmp_path / "copy.json").read_text()) == {"loss_final": 0.125}
    assert len(list(csv.DictReader(open(rd.path / "metrics.csv")))) == 3
    assert (rd.path / "config.yaml").read_text() == "lr: 0.0003\n"


def test_run_name() -> None:
    assert run_name("edgerl/RLDCA-v0", "ppo", 1, when=100.7) == "edgerl/RLDCA-v0__ppo__1__100"
