"""``edgerl demo``: the main job, offline, on built-in defaults.

The demo profiles the DNN model zoo layer by layer and, for one edge device and one edge
server joined by a wireless uplink, finds the delay-optimal split point of each model
(device compute + upload + server compute), writing a run directory with the resolved
config, one metrics row per (model, split) and a summary.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from rich.console import Console
from rich.table import Table

from edgerl.utils.config import Config, load_config
from edgerl.utils.errors import InputError
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything


class DemoConfig(Config):
    """Settings of the demo."""

    seed: int = Field(0, ge=0, description="Seed for everything random.")
    models: list[str] = Field(
        default_factory=lambda: ["lenet7", "vgg16", "resnet18", "resnet50", "cerl8"],
        min_length=1,
        description="Zoo models to profile and split.",
    )
    device_flops_per_s: float = Field(50e9, gt=0, description="Device compute speed.")
    server_flops_per_s: float = Field(1000e9, gt=0, description="Edge server compute speed.")
    bandwidth_hz: float = Field(20e6, gt=0, description="Uplink bandwidth.")
    tx_power_dbm: float = Field(23.0, ge=-30, le=50, description="Device transmit power.")
    distance_m: float = Field(200.0, gt=0, description="Device to server distance.")
    noise_figure_db: float = Field(6.0, ge=0, description="Receiver noise figure.")
    shadowing_std_db: float = Field(8.0, ge=0, description="Log-normal shadowing std.")


def _split_delays(profile, rate_bps: float, cfg: DemoConfig) -> list[dict]:
    rows = []
    for sp in profile.splits:
        dev_s = sp.device_flops / cfg.device_flops_per_s
        up_s = sp.upload_bytes * 8 / rate_bps
        srv_s = sp.edge_flops / cfg.server_flops_per_s
        rows.append(
            {
                "model": profile.model,
                "z": sp.z,
                "device_s": dev_s,
                "upload_s": up_s,
                "server_s": srv_s,
                "delay_s": dev_s + up_s + srv_s,
                "upload_bytes": sp.upload_bytes,
            }
        )
    return rows


def run_demo(
    out_dir: str | os.PathLike[str] = "runs/demo",
    seed: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    console: Console | None = None,
) -> dict:
    """Run the demo and return its summary (also written to ``out_dir/summary.json``)."""
    from edgerl.edge.channel import (
        channel_gain_from_path_loss,
        log_distance_path_loss_db,
        uplink_rate_bps,
    )
    from edgerl.edge.profiler import profile_model
    from edgerl.edge.units import dbm_to_w, thermal_noise_w
    from edgerl.edge.zoo import canonical_name

    console = console or Console()
    cfg = load_config(DemoConfig, config_path, overrides={"seed": seed})
    for m in cfg.models:  # validate names before anything is written
        canonical_name(m)
    rng = seed_everything(cfg.seed)
    rd = RunDir(Path(out_dir), flush_every=10_000)
    rd.write_config(cfg)

    pl_db = log_distance_path_loss_db(cfg.distance_m, shadowing_std_db=cfg.shadowing_std_db, rng=rng)
    gain = channel_gain_from_path_loss(pl_db)
    noise = thermal_noise_w(cfg.bandwidth_hz, cfg.noise_figure_db)
    rate = float(uplink_rate_bps(cfg.bandwidth_hz, dbm_to_w(cfg.tx_power_dbm), gain, noise))
    console.print(f"uplink: path loss {float(pl_db):.1f} dB, rate {rate / 1e6:.2f} Mbit/s")

    table = Table(title="Delay-optimal split point per model")
    for col in ("model", "layers", "GMACs", "best z", "delay (ms)", "all-edge (ms)", "all-device (ms)"):
        table.add_column(col, justify="right" if col != "model" else "left")
    summary: dict = {"seed": cfg.seed, "uplink_rate_bps": rate, "path_loss_db": float(pl_db)}
    for name in cfg.models:
        prof = profile_model(name)
        rows = _split_delays(prof, rate, cfg)
        for r in rows:
            rd.log(r)
        best = min(rows, key=lambda r: r["delay_s"])
        table.add_row(
            prof.model,
            str(prof.num_layers),
            f"{prof.total_macs / 1e9:.3f}",
            str(best["z"]),
            f"{best['delay_s'] * 1e3:.1f}",
            f"{rows[0]['delay_s'] * 1e3:.1f}",
            f"{rows[-1]['delay_s'] * 1e3:.1f}",
        )
        summary[f"{prof.model}_best_split"] = best["z"]
        summary[f"{prof.model}_delay_ms_best"] = best["delay_s"] * 1e3
        summary[f"{prof.model}_delay_ms_all_edge"] = rows[0]["delay_s"] * 1e3
        summary[f"{prof.model}_delay_ms_all_device"] = rows[-1]["delay_s"] * 1e3
    console.print(table)
    rd.flush()
    rd.write_summary(summary, json_path=json_path)
    console.print(f"wrote {rd.path}/config.yaml, metrics.csv, summary.json")
    return summary


__all__ = ["DemoConfig", "InputError", "run_demo"]
