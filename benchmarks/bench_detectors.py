"""Detector latency ladder: built-in family and (when present) the real COCO exports.

Median of timed runs after warm-up, 1 intra-op thread, at several input sizes.
Run: ``python benchmarks/bench_detectors.py [--sizes 320,640,960] [--out results.json]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import report

from edgerl.vision.builtin import BUILTIN_SIZES, builtin_model_path
from edgerl.vision.detectors import load_detector
from edgerl.vision.profile import machine_info, measure_latency_ms

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "models"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="320,640,960,1280")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    models = {f"person_{s}": str(builtin_model_path(s)) for s in BUILTIN_SIZES if builtin_model_path(s).is_file()}
    if (ASSETS / "yolox_nano.onnx").is_file():
        models["yolox_nano"] = str(ASSETS / "yolox_nano.onnx")
    res: dict = {"machine": machine_info(), "latency_ms": {}}
    for name, path in models.items():
        res["latency_ms"][name] = {}
        for s in sizes:
            det = load_detector(path, input_size=s, intra_op_threads=1)
            res["latency_ms"][name][str(s)] = measure_latency_ms(det, s, n_runs=args.runs)
    if (ASSETS / "yolov8n_int8.onnx").is_file():
        det = load_detector(str(ASSETS / "yolov8n_int8.onnx"), intra_op_threads=1)
        res["latency_ms"]["yolov8n_int8"] = {"640": measure_latency_ms(det, 640, n_runs=args.runs)}
    names = [n for n in models if n.startswith("person_")]
    ratios = {}
    for a, b in zip(names, names[1:]):
        ratios[f"{b}/{a}"] = {s: res["latency_ms"][b][s] / res["latency_ms"][a][s] for s in res["latency_ms"][a]}
    res["ratio_to_next_smaller"] = ratios
    report("detectors", res, args.out)


if __name__ == "__main__":
    main()
