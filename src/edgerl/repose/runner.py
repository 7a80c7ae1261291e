"""Build RE-POSE and its baselines by name, run them over images, and evaluate them.

Used by ``edgerl detect``, ``edgerl evaluate repose``, the demo and the experiments, so that
every method runs through the same executor, detectors, profile and thresholds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgerl.repose.pipeline import (
    FrameResult,
    FullFrame,
    Repose,
    ReposeConfig,
    Uniform,
    parse_option,
)
from edgerl.runtime.base import preload
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.profile import DetectorProfile

#: Method names understood by :func:`build_method` (``full:MODEL@SIZE`` selects a full-frame option).
METHODS: tuple[str, ...] = (
    "full",
    "uniform",
    "sahi",
    "remix",
    "meanshift",
    "repose",
    "repose-parallel",
    "repose-coarse-full",
)

DEFAULT_PROFILE_PATH = Path(__file__).resolve().parents[1] / "data" / "detectors" / "profile.json"


def load_profile(path: str | os.PathLike[str] | None = None) -> DetectorProfile:
    """The detector profile at ``path``, or the committed profile of the built-in family."""
    p = Path(path) if path is not None else DEFAULT_PROFILE_PATH
    if not p.is_file():
        raise InputError(f"{p}: detector profile not found (make one with 'edgerl profile detector')")
    return DetectorProfile.load(p)


def build_method(
    name: str,
    executor: Any,
    cfg: ReposeConfig,
    profile: DetectorProfile | None = None,
    policy: Callable[[np.ndarray], int] | None = None,
) -> Callable[[np.ndarray], FrameResult]:
    """A method by name: ``full[:MODEL@SIZE]``, ``uniform``, ``sahi``, ``remix``, ``meanshift``,
    ``repose``, ``repose-parallel`` (makespan planner) or ``repose-coarse-full`` (ablation)."""
    base, _, arg = name.partition(":")
    if base == "full":
        return FullFrame(executor, cfg, arg or cfg.options[-1])
    if base == "uniform":
        return Uniform(executor, cfg, arg or None)
    if base == "sahi":
        from edgerl.repose.baselines import SahiSliced

        return SahiSliced(executor, cfg, arg or cfg.uniform_option)
    if profile is None:
        profile = load_profile()
    if base == "remix":
        from edgerl.repose.baselines import RemixPlanner

        return RemixPlanner(executor, cfg, profile)
    if base == "meanshift":
        return Repose(executor, cfg, profile, policy=None, name="meanshift")
    if base in ("repose", "repose-parallel", "repose-coarse-full"):
        if policy is None:
            from edgerl.repose.train import load_policy

            policy = load_policy()
        c = cfg.model_copy(update={"planner": "parallel"}) if base == "repose-parallel" else cfg
        return Repose(executor, c, profile, policy=policy, coarse_full_frame=base == "repose-coarse-full", name=base)
    raise InputError(f"method {name!r}: expected one of {', '.join(METHODS)}")


def accepted_sizes(model: str, sizes: Sequence[int]) -> list[int]:
    """The input sizes among ``sizes`` that a detector file accepts (static exports accept one)."""
    from edgerl.vision.detectors import load_detector

    ok, last_err = [], None
    for s in sorted(int(v) for v in sizes):
        try:
            load_detector(model, input_size=s, intra_op_threads=1)
        except InputError as exc:
            last_err = exc
            continue
        ok.append(s)
    if not ok:
        native = load_detector(model, intra_op_threads=1).input_size
        if native[0] == native[1] and native[0] % 32 == 0:
            return [int(native[0])]
        raise InputError(f"{model}: runs at none of the sizes {list(sizes)} ({last_err})")
    return ok


def with_model(cfg: ReposeConfig, model: str, sizes: Sequence[int] = (640, 960, 1280)) -> ReposeConfig:
    """Settings that use one user-given detector (e.g. a YOLOv8 export) at the sizes it accepts."""
    sizes = accepted_sizes(model, sizes)
    from edgerl.vision.detectors import load_detector

    dynamic = getattr(load_detector(model, input_size=sizes[0], intra_op_threads=1), "dynamic_input", False)
    return cfg.model_copy(
        update={
            # a fixed-size export can only letterbox its blocks onto its one input size
            "block_resize": cfg.block_resize if dynamic else "letterbox",
            "options": [f"{model}@{s}" for s in sizes],
            "coarse_option": f"{model}@{sizes[0]}",
            "uniform_option": f"{model}@{sizes[0]}",
        }
    )


def profile_with_model(profile: DetectorProfile | None, cfg: ReposeConfig, prior_model: str = "person_m") -> DetectorProfile:
    """Extend a profile with latencies measured now for options it lacks.

    Models without an accuracy curve borrow ``prior_model``'s (reported in ``settings``).
    """
    from edgerl.vision.detectors import load_detector
    from edgerl.vision.profile import measure_latency_ms

    prof = profile or DetectorProfile()
    opts = {parse_option(o) for o in [*cfg.options, cfg.coarse_option, cfg.uniform_option]}
    for model, size in sorted(opts):
        if str(size) in prof.latency_ms.get(model, {}):
            continue
        det = load_detector(model, input_size=size, conf_threshold=cfg.conf_threshold, intra_op_threads=1)
        prof.latency_ms.setdefault(model, {})[str(size)] = measure_latency_ms(det, size, n_warmup=1, n_runs=3)
        if model not in prof.accuracy:
            if prior_model not in prof.accuracy:
                raise InputError(f"no accuracy curve for {model} and no prior {prior_model} in the profile")
            prof.accuracy[model] = prof.accuracy[prior_model]
            prof.settings.setdefault("accuracy_prior", {})[model] = prior_model
    return prof


@contextmanager
def executor_for(kind: str, n_workers: int, address: str | None = None, **kw: Any) -> Iterator[Any]:
    """An executor as a context manager (closed on exit)."""
    from edgerl.runtime import make_executor

    ex = make_executor(kind, n_workers, address, **kw)
    try:
        yield ex
    finally:
        ex.close()


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def iter_frames(path: str | os.PathLike[str]) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Frames of an image file, a folder of images or a video: ``(name, image or None, error)``.

    A frame that cannot be read yields ``image=None`` with the reason, so a batch run can skip
    it, say so and count it without losing the other frames.
    """
    from edgerl.vision.datasets import read_image

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    elif p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
        import cv2

        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise InputError(f"{p}: cannot open video")
        i = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield f"{p.name}#{i:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), None
                i += 1
        finally:
            cap.release()
        if i == 0:
            raise InputError(f"{p}: video has no readable frames")
        return
    elif p.is_file():
        files = [p]
    else:
        raise InputError(f"{p}: no such file or folder")
    for f in files:
        try:
            yield f.name, read_image(f), None
        except InputError as exc:
            yield f.name, None, str(exc)


def summarise_latency(times_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(times_ms, float)
    if len(a) == 0:
        return {"latency_ms_mean": float("nan"), "latency_ms_p95": float("nan")}
    return {"latency_ms_mean": float(a.mean()), "latency_ms_p95": float(np.percentile(a, 95))}


def evaluate_methods(
    dataset: Sequence[Any],
    methods: dict[str, Callable[[np.ndarray], FrameResult]],
    warmup: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, list[FrameResult]]]:
    """Run each method on every sample and score it with COCO AP (person boxes, ignore regions honoured).

    Methods are interleaved frame by frame (frame 1 through every method, then frame 2, ...,
    the order rotating by one method each frame), so a change in machine load during the run
    weighs on every method alike and latencies stay comparable side by side.

    Returns:
        (per-method summary with ``map50_95``, ``map50``, ``map75``, ``map_small`` ...,
        ``latency_ms_mean``, ``latency_ms_p95``, ``frames``; per-method frame results).
    """
    from edgerl.vision.metrics import GroundTruth, evaluate_detections

    images = [s.load_image() for s in dataset]
    gts = [GroundTruth(s.boxes, np.zeros(len(s.boxes), np.int64), s.width, s.height, s.ignore) for s in dataset]
    out: dict[str, dict[str, float]] = {}
    frames: dict[str, list[FrameResult]] = {}
    names = list(methods)
    if warmup and images:
        # Workers load every detector a method may use (as a deployment does at start-up), and
        # each method runs once, so session creation stays out of the timed frames.
        for name in names:
            m = methods[name]
            specs = getattr(m, "detector_specs", None)
            executor = getattr(m, "executor", None)
            if specs is not None and executor is not None:
                preload(executor, specs())
        for name in names:
            methods[name](images[0])
    per_method: dict[str, list[FrameResult]] = {name: [] for name in names}
    for i, img in enumerate(images):
        k = i % max(len(names), 1)
        for name in names[k:] + names[:k]:
            per_method[name].append(methods[name](img))
            if progress is not None:
                progress(name, i + 1, len(images))
    for name in names:
        results = per_method[name]
        preds = [Detections(r.detections.boxes, r.detections.scores, np.zeros(len(r.detections), np.int64)) for r in results]
        metrics = evaluate_detections(gts, preds, max_dets=(1, 100, 1000))
        lat = summarise_latency([r.timings_ms["total"] for r in results])
        row = {k: float(v) for k, v in metrics.items()}
        row.update(lat)
        row["frames"] = len(results)
        for stage in ("coarse", "cluster", "plan", "fine"):
            vals = [r.timings_ms[stage] for r in results if stage in r.timings_ms]
            if vals:
                row[f"{stage}_ms_mean"] = float(np.mean(vals))
        row["blocks_mean"] = float(np.mean([len(r.blocks) for r in results])) if results else 0.0
        out[name] = row
        frames[name] = results
    return out, frames


def detections_to_coco(
    name: str, det: Detections, image_id: int | None = None, category_ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """COCO results entries for one frame.

    ``category_ids[c]`` is the category id of class ``c`` (COCO's 80-class ids for COCO
    detectors); without it class ``c`` becomes category ``c + 1`` (person = 1).
    """
    rows = []
    for b, s, c in zip(det.boxes, det.scores, det.classes):
        entry: dict[str, Any] = {"file_name": name} if image_id is None else {"image_id": int(image_id)}
        entry.update(
            {
                "category_id": int(category_ids[int(c)]) if category_ids is not None else int(c) + 1,
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                "score": float(s),
            }
        )
        rows.append(entry)
    return rows


def run_on_inputs(
    inputs: str | os.PathLike[str],
    method: Callable[[np.ndarray], FrameResult],
    console: Any = None,
    category_ids: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one method over an image, folder or video; bad frames are skipped and counted."""
    results: list[dict[str, Any]] = []
    times: list[float] = []
    skipped: list[str] = []
    n = 0
    t0 = time.perf_counter()
    for name, img, err in iter_frames(inputs):
        if img is None:
            skipped.append(name)
            if console is not None:
                console.print(f"[yellow]skipped[/] {err}")
            continue
        r = method(img)
        n += 1
        times.append(r.timings_ms["total"])
        results.extend(detections_to_coco(name, r.detections, category_ids=category_ids))
    summary = {
        "frames": n,
        "frames_skipped": len(skipped),
        "skipped": skipped,
        "detections": len(results),
        "wall_s": time.perf_counter() - t0,
        **summarise_latency(times),
    }
    return results, summary
