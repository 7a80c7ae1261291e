"""``edgerl demo``: the main job, offline, on built-in defaults.

A short synthetic 4K clip (seeds never used in training) goes through RE-POSE with E local
edge workers and through the uniform 2x2 baseline, with the same built-in detectors and
executor. The demo prints a comparison table (AP and latency per frame), writes an annotated
frame (RE-POSE's blocks and detections) as PNG, and a run directory with the resolved
config, per-frame metrics and summary.json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from rich.console import Console

from edgerl.repose.pipeline import FrameResult, ReposeConfig
from edgerl.utils.config import Config, load_config
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything


class DemoConfig(Config):
    """Settings of the demo."""

    seed: int = Field(0, ge=0, description="Seed of everything random (the clip uses clip_seed).")
    clip_seed: int = Field(750_000, ge=0, description="Seed of the synthetic clip (held out from training).")
    frames: int = Field(8, ge=1, le=300, description="Frames in the clip (30 FPS).")
    width_px: int = Field(3840, ge=64, description="Frame width.")
    height_px: int = Field(2160, ge=64, description="Frame height.")
    methods: list[str] = Field(
        default_factory=lambda: ["uniform", "repose"], min_length=1, description="Methods to compare."
    )
    executor: str = Field("local", pattern="^(local|ray)$", description="Executor kind.")
    repose: ReposeConfig = Field(default_factory=ReposeConfig, description="RE-POSE and baseline settings.")


def make_clip(cfg: DemoConfig) -> list[Any]:
    """The clip as dataset samples: video frames with persons, crowds and posters as ignore regions."""
    from edgerl.vision.synth import SynthConfig, render_video, scene_sample

    sc = SynthConfig()
    if (cfg.width_px, cfg.height_px) != (sc.width_px, sc.height_px):
        sc = sc.resized(cfg.width_px, cfg.height_px)
    video = render_video(sc, cfg.frames, np.random.default_rng(cfg.clip_seed))
    return [scene_sample(s, i + 1) for i, s in enumerate(video)]


def annotate(image: np.ndarray, result: FrameResult, max_width: int = 1920) -> np.ndarray:
    """RE-POSE's blocks (with their detector option) and detections drawn on a frame (RGB)."""
    import cv2

    img = image.copy()
    for b, (model, size) in zip(result.blocks, result.options):
        x0, y0, x1, y1 = (int(v) for v in b)
        cv2.rectangle(img, (x0, y0), (x1, y1), (255, 200, 0), 6)
        cv2.putText(img, f"{model}@{size}", (x0 + 8, y0 + 40), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 200, 0), 3)
    for b, s in zip(result.detections.boxes, result.detections.scores):
        if s < 0.3:
            continue
        x0, y0, x1, y1 = (int(v) for v in b)
        cv2.rectangle(img, (x0, y0), (x1, y1), (255, 0, 60), 3)
    h, w = img.shape[:2]
    if w > max_width:
        img = cv2.resize(img, (max_width, int(round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    return img


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Encode an RGB image as PNG and write it atomically."""
    import cv2

    from edgerl.utils.io import atomic_write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB image
        raise RuntimeError("PNG encoding failed")
    return atomic_write_bytes(path, buf.tobytes())


def run_demo(
    out_dir: str | os.PathLike[str] = "runs/demo",
    seed: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo and return its summary (also written to ``out_dir/summary.json``)."""
    from edgerl.repose.experiment import print_table
    from edgerl.repose.runner import build_method, evaluate_methods, executor_for, load_profile
    from edgerl.repose.train import load_policy

    console = console or Console()
    cfg = load_config(DemoConfig, config_path, overrides={"seed": seed})
    for m in cfg.methods:  # validate names and resources before anything is written
        if m.split(":")[0] not in ("full", "uniform", "sahi", "remix", "meanshift", "repose", "repose-parallel", "repose-coarse-full"):
            from edgerl.utils.errors import InputError

            raise InputError(f"{config_path or 'config'}: methods: {m!r} is not a known method")
    profile = load_profile()
    policy = load_policy()
    seed_everything(cfg.seed)
    rd = RunDir(Path(out_dir), flush_every=10_000)
    rd.write_config(cfg)

    console.print(f"generating a {cfg.frames}-frame {cfg.width_px}x{cfg.height_px} synthetic clip (seed {cfg.clip_seed})")
    clip = make_clip(cfg)
    n_obj = sum(len(s.boxes) for s in clip)
    console.print(f"{n_obj} labelled persons; running {', '.join(cfg.methods)} on {cfg.repose.n_workers} {cfg.executor} edge workers")

    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), console=console) as prog:
        tasks: dict[str, Any] = {}

        def _progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = prog.add_task(name, total=total)
            prog.update(tasks[name], completed=done)

        with executor_for(cfg.executor, cfg.repose.n_workers) as ex:
            built = {m: build_method(m, ex, cfg.repose, profile, policy) for m in cfg.methods}
            table, frames = evaluate_methods(clip, built, progress=_progress)
    for name, results in frames.items():
        for i, r in enumerate(results):
            rd.log({"method": name, "frame": i, "detections": len(r.detections), "blocks": len(r.blocks), **{f"{k}_ms": v for k, v in r.timings_ms.items()}})
    print_table(table, console)
    main = "repose" if "repose" in frames else next(iter(frames))
    png = write_png(Path(out_dir) / "annotated_frame.png", annotate(clip[0].image, frames[main][0]))
    summary: dict[str, Any] = {
        "frames": cfg.frames,
        "frame_size": [cfg.width_px, cfg.height_px],
        "clip_seed": cfg.clip_seed,
        "workers": cfg.repose.n_workers,
        "budget_ms": cfg.repose.budget_ms,
        "methods": table,
    }
    if "repose" in table and "uniform" in table:
        u, r = table["uniform"], table["repose"]
        summary["repose_vs_uniform_map50_95_ratio"] = r["map50_95"] / u["map50_95"] if u["map50_95"] > 0 else float("nan")
        summary["repose_vs_uniform_latency_ratio"] = r["latency_ms_mean"] / u["latency_ms_mean"]
        console.print(
            f"RE-POSE vs uniform 2x2: AP[.5:.95] x{summary['repose_vs_uniform_map50_95_ratio']:.2f}, "
            f"latency x{summary['repose_vs_uniform_latency_ratio']:.2f}"
        )
    rd.flush()
    rd.write_summary(summary, json_path=json_path)
    console.print(f"wrote {rd.path}/config.yaml, metrics.csv, summary.json and {png.name}")
    return summary
