"""Export of built-in detectors to ONNX in the YOLOv8 layout.

The exported graph has one input ``images`` ``[batch, 3, height, width]`` (float32 RGB
/ 255, height and width symbolic multiples of 32) and one output ``output0``
``[batch, 5, anchors]`` (``cx, cy, w, h`` in input pixels and the sigmoid person score),
so :class:`edgerl.vision.detectors.onnx_backend.OnnxDetector` reads it like an
Ultralytics YOLOv8 export. Batch norms are folded into the convolutions first, and the
ONNX Runtime output is checked against the torch output before anything is written.
Files are written atomically with a metadata JSON next to them.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_write_bytes, read_json, write_json
from edgerl.vision.builtin.model import PersonDetector, count_parameters

#: ONNX opset of the exports.
OPSET = 17

#: Default recipe recorded in the metadata of the committed files.
RECIPE = (
    "python -m edgerl.vision.builtin.train --size {size} --out RUN_DIR "
    "(= edgerl train detector --size {size} --out RUN_DIR); "
    "python -m edgerl.vision.builtin.export --run RUN_DIR"
)


def onnx_bytes(model: PersonDetector, export_px: int = 640, opset: int = OPSET) -> bytes:
    """Serialise a detector to ONNX (batch norms folded, dynamic batch/height/width).

    Args:
        model: the detector (not modified).
        export_px: side of the example input used for tracing.
        opset: ONNX opset version.

    Returns:
        The ONNX model as bytes.
    """
    fused = copy.deepcopy(model).eval().fuse()
    example = torch.zeros(1, 3, export_px, export_px)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy (TorchScript) exporter is deprecated in favour of the dynamo one, which
        # needs onnxscript; the traced shape arithmetic warnings are expected (H and W are
        # exported as symbolic dims).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            fused,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={
                "images": {0: "batch", 2: "height", 3: "width"},
                "output0": {0: "batch", 2: "anchors"},
            },
            do_constant_folding=True,
        )
    return buf.getvalue()


def add_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """Return the ONNX model with extra ``metadata_props`` entries (string key/values)."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
    return proto.SerializeToString()


def verify_onnx(
    model: PersonDetector,
    model_bytes: bytes,
    sizes: Sequence[tuple[int, int]] = ((640, 640), (320, 480)),
    batch: int = 2,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    seed: int = 0,
) -> float:
    """Check that ONNX Runtime reproduces the torch output at several input sizes.

    Args:
        model: the torch detector the bytes were exported from.
        model_bytes: the ONNX model.
        sizes: ``(height, width)`` inputs to compare at (multiples of 32).
        batch: images per comparison.
        atol: absolute tolerance (box rows are pixels, score rows probabilities).
        rtol: relative tolerance.
        seed: seed of the random test images.

    Returns:
        The largest absolute difference seen.

    Raises:
        RuntimeError: an output differs beyond the tolerance (or has another shape).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    ref_model = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(batch, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = ref_model(x).numpy()
        got = session.run(["output0"], {"images": x.numpy()})[0]
        if got.shape != ref.shape:
            raise RuntimeError(
                f"ONNX output shape {got.shape} differs from torch {ref.shape} at input {h}x{w}"
            )
        diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= atol + rtol * np.abs(ref)):
            raise RuntimeError(
                f"ONNX output differs from torch at input {h}x{w}: max abs difference {diff.max():.3g}"
            )
    return worst


def export_detector(
    model: PersonDetector,
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    export_px: int = 640,
) -> dict[str, Any]:
    """Export, verify and write one detector with its metadata JSON.

    Args:
        model: the trained detector.
        path: destination ``.onnx`` file; the metadata goes to the same name with ``.json``.
        metadata: extra fields of the metadata JSON (size, seeds, AP, recipe...).
        export_px: default input side recorded in the model (``imgsz``).

    Returns:
        The metadata written (including ``sha256``, ``bytes`` and ``max_abs_diff``).
    """
    path = Path(path)
    meta: dict[str, Any] = {
        "format": "yolov8-onnx",
        "classes": ["person"],
        "input": "images [batch, 3, height, width] float32 RGB / 255, letterbox pad 114 centred",
        "output": "output0 [batch, 5, anchors]: cx, cy, w, h (input pixels), person score (sigmoid)",
        "input_px_default": export_px,
        "width_mult": model.width_mult,
        "depth_mult": model.depth_mult,
        "params": count_parameters(model),
        "opset": OPSET,
        "torch_version": torch.__version__,
    }
    meta.update(metadata or {})
    raw = onnx_bytes(model, export_px)
    props = {
        "names": "{0: 'person'}",
        "imgsz": f"[{export_px}, {export_px}]",
        "stride": "32",
        "task": "detect",
        "description": f"edgerl built-in person detector, size {meta.get('size', '?')}",
    }
    raw = add_metadata(raw, props)
    meta["max_abs_diff"] = verify_onnx(model, raw)
    meta["bytes"] = len(raw)
    meta["sha256"] = hashlib.sha256(raw).hexdigest()
    atomic_write_bytes(path, raw)
    write_json(path.with_suffix(".json"), meta)
    for written in (path, path.with_suffix(".json")):
        written.chmod(0o644)  # package data: readable by everyone (temp files start as 0600)
    return meta


def export_run(
    run_dir: str | Path, out_dir: str | Path | None = None, recipe: str | None = None
) -> dict[str, Any]:
    """Export the checkpoint of a training run as ``person_{size}.onnx`` (+ ``.json``).

    Args:
        run_dir: a run directory written by ``train_detector`` (``model.pt``,
            ``summary.json``).
        out_dir: destination folder; None means the package's ``data/detectors``.
        recipe: the command that reproduces the run (recorded in the metadata).

    Returns:
        The metadata written.
    """
    from edgerl.vision.builtin import DETECTORS_DIR
    from edgerl.vision.builtin.train import load_checkpoint

    run_dir = Path(run_dir)
    model, ckpt = load_checkpoint(run_dir / "model.pt")
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"{run_dir}: no summary.json (the run did not finish)")
    summary = read_json(summary_path)
    size = str(ckpt["size"])
    train_config = json.loads(ckpt.get("config_json") or "{}")
    # Where frames were cached has no effect on the weights; keep local paths out.
    train_config.pop("frame_cache_dir", None)
    meta = {
        "size": size,
        "iterations": summary.get("iterations"),
        "seed": summary.get("seed"),
        "train_seeds": summary.get("train_seeds"),
        "val_seeds": summary.get("val_seeds"),
        "val_input_px": summary.get("val_input_px"),
        "val_map50": summary.get("val_map50"),
        "val_map50_95": summary.get("val_map50_95"),
        "train_wall_s": summary.get("wall_s"),
        "train_config": train_config,
        "recipe": recipe or RECIPE.format(size=size),
    }
    dest = Path(out_dir) if out_dir is not None else DETECTORS_DIR
    return export_detector(model, dest / f"person_{size}.onnx", meta)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgerl.vision.builtin.export --run RUN_DIR [--out DIR]``."""
    parser = argparse.ArgumentParser(description="Export a trained built-in detector to ONNX.")
    parser.add_argument("--run", required=True, help="run directory of train_detector")
    parser.add_argument(
        "--out", default=None, help="destination folder (default: the package data)"
    )
    parser.add_argument("--recipe", default=None, help="command line recorded in the metadata")
    args = parser.parse_args(argv)
    try:
        meta = export_run(args.run, args.out, args.recipe)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote person_{meta['size']}.onnx ({meta['bytes']} bytes, max |onnx - torch| {meta['max_abs_diff']:.2e})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
