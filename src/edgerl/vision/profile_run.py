"""``edgerl profile detector``: measure latency and accuracy-by-area profiles of detectors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.vision.profile import DetectorProfile, ValImage, measure_latency_ms, profile_accuracy


def validation_images(data: str | os.PathLike[str] | None, frames: int, seed: int) -> list[ValImage]:
    """Validation images from a COCO-format set, or synthetic 4K frames made from ``seed + i``."""
    if data is not None:
        from edgerl.vision.datasets import load_dataset

        ds = load_dataset(Path(data))
        if len(ds) == 0:
            raise InputError(f"{data}: the set has no images")
        return [ValImage(s.load_image(), s.boxes, s.ignore) for s in ds]
    from edgerl.vision.synth import SynthConfig, render_scene, scene_sample

    out = []
    for i in range(frames):
        smp = scene_sample(render_scene(SynthConfig(), np.random.default_rng(seed + i)), i + 1)
        out.append(ValImage(smp.image, smp.boxes, smp.ignore))
    return out


def profile_detectors(
    models: Sequence[str],
    sizes: Sequence[int],
    json_path: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    frames: int = 3,
    seed: int = 900_000,
    tile_scales: Sequence[float] = (1.0, 2.0, 4.0),
    n_runs: int = 10,
    console: Any = None,
    keep_latency: bool = False,
) -> DetectorProfile:
    """Profile every model at every size; write the JSON and return the profile.

    With ``keep_latency`` only accuracy is measured: latencies (and the machine they were
    measured on) come from the profile already at ``json_path``, e.g. one measured on the
    edge device itself, which must hold every (model, size) asked for.
    """
    from edgerl.vision.detectors import load_detector

    if not models:
        raise InputError("--model: give at least one detector")
    for s in sizes:
        if s <= 0 or s % 32:
            raise InputError(f"--sizes: {s} is not a positive multiple of 32")
    old = None
    if keep_latency:
        if not Path(json_path).is_file():
            raise InputError(f"--keep-latency: {json_path} does not exist; it must hold the latencies to keep")
        old = DetectorProfile.load(json_path)
        for model in models:
            for s in sizes:
                old.latency(model, int(s))  # names the missing (model, size) and what is there
    images = validation_images(data, frames, seed)
    prof = DetectorProfile(
        settings={
            "sizes": list(map(int, sizes)),
            "tile_scales": list(tile_scales),
            "validation": str(data) if data is not None else f"synthetic default, seeds {seed}..{seed + frames - 1}",
            "iou_threshold": 0.5,
            "conf_threshold": 0.25,
            "latency": f"median of {n_runs} runs after 2 warm-up runs, 1 intra-op thread",
        }
    )
    if old is not None:
        prof.machine = old.machine
        prof.settings["latency"] = old.settings.get("latency", "kept from the previous profile")
    for model in models:
        dets = {int(s): load_detector(model, input_size=int(s), conf_threshold=0.25, intra_op_threads=1) for s in sizes}
        for s, det in dets.items():
            lat = old.latency(model, s) if old is not None else measure_latency_ms(det, s, n_runs=n_runs)
            prof.latency_ms.setdefault(model, {})[str(s)] = lat
        prof.accuracy[model] = profile_accuracy(dets.__getitem__, list(dets), images, tile_scales)
        if console is not None:
            lat = ", ".join(f"{s}: {v:.1f} ms" for s, v in prof.latency_ms[model].items())
            rec = prof.accuracy[model].recall
            console.print(f"{model}: latency {lat}; recall by log2 area {np.round(rec, 2).tolist()}")
    prof.save(json_path)
    if console is not None:
        console.print(f"wrote {json_path}")
    return prof
