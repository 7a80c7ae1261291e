"""Training of the built-in person detectors on synthetic plaza scenes.

Recipe (one function, :func:`train_detector`, seeded through ``seed_everything``):

1. A pool of synthetic 4K frames is rendered from a range of training seeds (cached as
   arrays, optionally on disk so several sizes share one pool); validation frames come
   from a disjoint seed range.
2. Each iteration draws a batch of random square tiles from the pool: half at native
   resolution, the rest resized by a log-uniform factor (down to 1/4, up to 1.5x) so the
   detector sees people from a few pixels up to several hundred pixels tall; some tiles
   have a non-square content area letterboxed with grey (114) padding, as the inference
   backend does with non-square blocks. Horizontal flips and HSV jitter. Dense crowds
   (labelled as one region), posters of people, people hidden below ``min_visible`` and
   people mostly cut off by the tile border are ignore regions: no class loss there.
3. Labels are assigned per batch with a task-aligned assigner (TOOD, Feng et al. 2021, as
   used by YOLOv8): candidates are the cells whose centre lies inside a box or within one
   stride of its centre, ranked by ``score**alpha * IoU**beta``, top-k kept per box.
4. Loss: binary cross entropy of the class logits against the normalised alignment
   targets, CIoU loss of the positive cells' boxes weighted by the same targets.
5. AdamW with linear warm-up and a cosine learning-rate decay, an exponential moving
   average (EMA) of the weights, gradient clipping.
6. Every ``eval_every_iters`` iterations the EMA model is scored on native-resolution
   tiles of the validation frames (COCO AP through :func:`edgerl.vision.metrics.
   evaluate_detections`); one row per evaluation goes to ``metrics.csv`` and the final
   numbers to ``summary.json``. The EMA weights are saved as ``model.pt`` (a plain dict of
   tensors and primitives, loadable with ``weights_only=True``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from edgerl.utils.config import Config, load_config, register_config
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_torch_save, atomic_write_bytes
from edgerl.utils.rundir import RunDir
from edgerl.utils.seeding import seed_everything
from edgerl.vision.builtin.model import (
    SIZE_SPECS,
    PersonDetector,
    RawOutput,
    build_detector,
    count_parameters,
)
from edgerl.vision.detections import Detections

#: Iterations of each size when the config leaves ``iterations`` unset: one schedule for
#: every size (as the YOLO families do), so sizes differ by capacity only; the largest
#: trains in about eleven minutes on two free CPU threads.
DEFAULT_ITERATIONS: dict[str, int] = {"n": 2000, "s": 2000, "m": 2000}


class Console(Protocol):
    """Anything with a ``print`` method (e.g. ``rich.console.Console``)."""

    def print(self, *objects: Any) -> None: ...  # noqa: D102


@register_config
class DetectorTrainConfig(Config):
    """Configuration of one training run of a built-in detector size."""

    size: str = Field("n", description="Detector size: one of n, s, m.")
    seed: int = Field(0, ge=0, description="Seed of weights init, tile sampling and augmentation.")
    iterations: int | None = Field(
        None,
        ge=1,
        description="Optimiser steps; None uses the size's default (2000 for every size).",
    )
    batch_size: int = Field(8, ge=1, description="Tiles per optimiser step.")
    tile_px: list[int] = Field(
        [320, 352, 384, 416],
        description="Square training tile sizes in pixels (multiples of 32), one drawn per batch.",
    )
    lr: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    lr_final_frac: float = Field(
        0.05, ge=0, le=1, description="Final learning rate as a fraction of the peak."
    )
    warmup_iters: int = Field(150, ge=0, description="Linear learning-rate warm-up steps.")
    weight_decay: float = Field(
        5e-4, ge=0, description="AdamW weight decay (not applied to biases and norms)."
    )
    grad_clip_norm: float = Field(10.0, gt=0, description="Gradient norm clip.")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="Decay of the weights' moving average.")
    box_loss_weight: float = Field(7.5, ge=0, description="Weight of the CIoU box loss.")
    cls_loss_weight: float = Field(1.0, ge=0, description="Weight of the class BCE loss.")
    assign_topk: int = Field(
        10, ge=1, description="Cells assigned per box by the task-aligned assigner."
    )
    assign_alpha: float = Field(0.5, ge=0, description="Score exponent of the alignment metric.")
    assign_beta: float = Field(6.0, ge=0, description="IoU exponent of the alignment metric.")
    assign_radius: float = Field(
        1.0,
        ge=0,
        description="Cells within this many strides of a box centre are candidates (for tiny boxes).",
    )
    native_tile_prob: float = Field(
        0.5, ge=0, le=1, description="Share of tiles cut at native resolution."
    )
    min_scale: float = Field(
        0.25,
        gt=0,
        description="Smallest resize factor of a rescaled tile (output px per frame px).",
    )
    max_scale: float = Field(1.5, gt=0, description="Largest resize factor of a rescaled tile.")
    letterbox_prob: float = Field(
        0.15, ge=0, le=1, description="Share of tiles with a non-square content area padded grey."
    )
    person_centred_prob: float = Field(
        0.7, ge=0, le=1, description="Share of tiles centred near a random person."
    )
    flip_prob: float = Field(0.5, ge=0, le=1, description="Horizontal flip probability.")
    hsv_hue: float = Field(
        0.015, ge=0, le=0.5, description="HSV hue jitter (fraction of the hue circle)."
    )
    hsv_sat: float = Field(0.5, ge=0, le=1, description="HSV saturation gain jitter.")
    hsv_val: float = Field(0.3, ge=0, le=1, description="HSV value gain jitter.")
    min_box_px: float = Field(
        4.0, ge=0, description="Training boxes shorter than this (tile pixels) are dropped."
    )
    min_inside_frac: float = Field(
        0.35,
        ge=0,
        le=1,
        description="A box cut by the tile border is kept if this share of its area is inside.",
    )
    min_visible: float = Field(
        0.1,
        ge=0,
        le=1,
        description="People less visible than this (occlusion) are ignore regions (train and val).",
    )
    synth_preset: str | None = Field(
        "default", description="SynthConfig preset of training and validation frames."
    )
    synth_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="SynthConfig fields set on top of the preset (e.g. width_px).",
    )
    synth_resize_px: list[int] | None = Field(
        None,
        description="Render frames at [width, height] with person sizes scaled along (SynthConfig.resized); None keeps 4K.",
    )
    train_seed_start: int = Field(0, ge=0, description="First seed of the training frames.")
    train_frames: int = Field(
        40, ge=1, description="Frames in the training pool (seeds train_seed_start + i)."
    )
    val_seed_start: int = Field(
        1_000_000,
        ge=0,
        description="First seed of the validation frames (a range never used for training).",
    )
    val_frames: int = Field(3, ge=1, description="Validation frames.")
    val_tile_px: int = Field(
        640, ge=32, description="Side of the native-resolution validation tiles in pixels."
    )
    val_input_px: int = Field(
        640, ge=32, description="Network input side during validation (multiple of 32)."
    )
    eval_every_iters: int = Field(
        500, ge=1, description="Validation (and one metrics.csv row) every this many steps."
    )
    conf_threshold: float = Field(
        0.001, ge=0, le=1, description="Score threshold of validation detections."
    )
    nms_iou: float = Field(
        0.6, gt=0, le=1, description="NMS IoU threshold of validation detections."
    )
    max_detections: int = Field(300, ge=1, description="Detections kept per validation tile.")
    num_threads: int = Field(2, ge=1, description="torch intra-op threads.")
    bf16_autocast: bool = Field(
        True,
        description="Run the training forward pass under CPU bfloat16 autocast (about 1.5x faster with AVX512-BF16/AMX).",
    )
    channels_last: bool = Field(
        True, description="Train in the channels-last memory layout (faster oneDNN kernels)."
    )
    frame_cache_dir: str | None = Field(
        None,
        description="Folder caching rendered frames as .npz (shared by runs with the same synth config).",
    )

    @field_validator("size")
    @classmethod
    def _known_size(cls, v: str) -> str:
        if v not in SIZE_SPECS:
            raise ValueError(f"unknown size {v!r}; valid sizes: {', '.join(SIZE_SPECS)}")
        return v

    @field_validator("tile_px")
    @classmethod
    def _tiles_multiple_of_32(cls, v: list[int]) -> list[int]:
        if not v or any(t < 64 or t % 32 for t in v):
            raise ValueError(f"tile sizes must be multiples of 32 and >= 64, got {v}")
        return v

    @field_validator("synth_resize_px")
    @classmethod
    def _two_sides(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 2 or min(v) < 64):
            raise ValueError(f"must be [width, height] with both >= 64, got {v}")
        return v

    @field_validator("val_input_px")
    @classmethod
    def _input_multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32, got {v}")
        return v

    def resolved_iterations(self) -> int:
        """``iterations`` or the size's default."""
        return (
            int(self.iterations) if self.iterations is not None else DEFAULT_ITERATIONS[self.size]
        )


# ----------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One rendered synthetic frame.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        boxes: (N, 4) float32 xyxy full-body boxes of individual people in pixels.
        visible: (N,) float32 visible fraction of each person.
        ignore: (M, 4) float32 xyxy regions that are neither people nor background: dense
            crowds labelled as one region and posters of people.
        seed: the seed the frame was rendered from.
    """

    image: np.ndarray
    boxes: np.ndarray
    visible: np.ndarray
    ignore: np.ndarray
    seed: int


def make_synth_config(
    preset: str | None,
    overrides: dict[str, Any] | None = None,
    resize_px: Sequence[int] | None = None,
) -> Any:
    """Build an ``edgerl.vision.synth.SynthConfig`` from a preset name and field overrides.

    Args:
        preset: ``SynthConfig.preset`` name, or None for the plain defaults.
        overrides: fields set on top of the preset.
        resize_px: ``[width, height]``: the same scene at another frame size
            (``SynthConfig.resized``), applied last.

    Raises:
        InputError: unknown preset or field (the message names it).
    """
    from edgerl.vision.synth import SynthConfig

    base = SynthConfig.preset(preset) if preset is not None else SynthConfig()
    if overrides:
        data = base.model_dump()
        data.update(overrides)
        try:
            base = SynthConfig.model_validate(data)
        except Exception as exc:  # pydantic.ValidationError, with the field in its text
            raise InputError(f"synth_overrides: {' '.join(str(exc).split())[:300]}") from None
    if resize_px is not None:
        base = base.resized(int(resize_px[0]), int(resize_px[1]))
    return base


def _synth_key(synth_cfg: Any) -> str:
    text = json.dumps(synth_cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def render_frame(
    synth_cfg: Any, seed: int, cache_dir: str | os.PathLike[str] | None = None
) -> Frame:
    """Render (or load from the cache) the synthetic frame of one seed.

    Args:
        synth_cfg: a ``SynthConfig``.
        seed: frame seed; the scene is drawn from ``numpy.random.default_rng(seed)``.
        cache_dir: optional folder of cached frames (``frame_{key}_{seed}.npz``).
    """
    from edgerl.vision.synth import render_scene

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"frame_{_synth_key(synth_cfg)}_{seed}.npz"
        if path.is_file():
            with np.load(path) as data:
                return Frame(data["image"], data["boxes"], data["visible"], data["ignore"], seed)
    scene = render_scene(synth_cfg, np.random.default_rng(seed))
    image = np.ascontiguousarray(scene.image, dtype=np.uint8)
    boxes = np.asarray(scene.boxes, np.float32).reshape(-1, 4)
    visible = np.asarray(scene.visible, np.float32).reshape(-1)
    crowd = np.asarray(scene.iscrowd, bool).reshape(-1)
    ignore = np.concatenate([boxes[crowd], np.asarray(scene.ignore, np.float32).reshape(-1, 4)])
    frame = Frame(image, boxes[~crowd], visible[~crowd], ignore, seed)
    if path is not None:
        import io

        buf = io.BytesIO()
        np.savez(buf, image=image, boxes=frame.boxes, visible=frame.visible, ignore=ignore)
        atomic_write_bytes(path, buf.getvalue())
    return frame


def render_frames(
    synth_cfg: Any, seeds: Sequence[int], cache_dir: str | os.PathLike[str] | None = None
) -> list[Frame]:
    """Render the frames of several seeds (see :func:`render_frame`)."""
    return [render_frame(synth_cfg, int(s), cache_dir) for s in seeds]


# ----------------------------------------------------------------------------------------
# Training tiles
# ----------------------------------------------------------------------------------------


def hsv_jitter(
    image: np.ndarray, rng: np.random.Generator, hue: float, sat: float, val: float
) -> np.ndarray:
    """Random hue shift and saturation/value gains of an RGB uint8 image (a new array)."""
    if hue == 0 and sat == 0 and val == 0:
        return image
    gains = rng.uniform(-1.0, 1.0, 3) * np.array([hue, sat, val]) + 1.0
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    # OpenCV's 8-bit hue runs over 0..179.
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _map_boxes(
    boxes: np.ndarray, x0: int, y0: int, sx: float, sy: float, pad_x: int, pad_y: int
) -> np.ndarray:
    b = boxes.astype(np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - x0) * sx + pad_x
    b[:, [1, 3]] = (b[:, [1, 3]] - y0) * sy + pad_y
    return b


def _clip_to(b: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    c = b.copy()
    c[:, [0, 2]] = c[:, [0, 2]].clip(x1, x2)
    c[:, [1, 3]] = c[:, [1, 3]].clip(y1, y2)
    return c


def sample_tile(
    frame: Frame, tile_px: int, cfg: DetectorTrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one augmented training tile from a frame.

    Args:
        frame: the source frame.
        tile_px: side of the square tile in pixels.
        cfg: the training config (augmentation fields).
        rng: random generator.

    Returns:
        ``(tile (tile_px, tile_px, 3) uint8 RGB, boxes (K, 4), ignore (L, 4))``: float32 xyxy
        in tile pixels. People cut by the border below ``min_inside_frac``, too small after
        resizing, or less visible than ``min_visible`` join the frame's ignore regions.
    """
    img_h, img_w = frame.image.shape[:2]
    scale = 1.0
    if rng.random() >= cfg.native_tile_prob:
        scale = float(math.exp(rng.uniform(math.log(cfg.min_scale), math.log(cfg.max_scale))))
    out_w = out_h = tile_px
    if rng.random() < cfg.letterbox_prob:
        aspect = float(math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
        if aspect >= 1.0:
            out_h = max(32, int(round(tile_px / aspect)))
        else:
            out_w = max(32, int(round(tile_px * aspect)))
    # The crop cannot exceed the frame: raise the scale until it fits.
    scale = max(scale, out_w / img_w, out_h / img_h)
    src_w = min(img_w, max(1, int(round(out_w / scale))))
    src_h = min(img_h, max(1, int(round(out_h / scale))))

    boxes = frame.boxes
    if len(boxes) and rng.random() < cfg.person_centred_prob:
        b = boxes[rng.integers(len(boxes))]
        cx = 0.5 * (b[0] + b[2]) + rng.uniform(-0.4, 0.4) * src_w
        cy = 0.5 * (b[1] + b[3]) + rng.uniform(-0.4, 0.4) * src_h
        x0 = int(np.clip(round(cx - src_w / 2), 0, img_w - src_w))
        y0 = int(np.clip(round(cy - src_h / 2), 0, img_h - src_h))
    else:
        x0 = int(rng.integers(0, img_w - src_w + 1))
        y0 = int(rng.integers(0, img_h - src_h + 1))
    crop = frame.image[y0 : y0 + src_h, x0 : x0 + src_w]
    if (src_w, src_h) != (out_w, out_h):
        interp = cv2.INTER_AREA if src_w > out_w else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (out_w, out_h), interpolation=interp)
    pad_x, pad_y = (tile_px - out_w) // 2, (tile_px - out_h) // 2
    if (out_w, out_h) != (tile_px, tile_px):
        tile = np.full((tile_px, tile_px, 3), 114, np.uint8)
        tile[pad_y : pad_y + out_h, pad_x : pad_x + out_w] = crop
    else:
        tile = np.ascontiguousarray(crop)

    sx, sy = out_w / src_w, out_h / src_h
    region = (pad_x, pad_y, pad_x + out_w, pad_y + out_h)
    b = _map_boxes(boxes, x0, y0, sx, sy, pad_x, pad_y)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    c = _clip_to(b, *region)
    cw, ch = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    touches = (cw > 0) & (ch > 0)
    good = (
        touches
        & (cw >= 1.0)
        & (ch >= cfg.min_box_px)
        & (cw * ch >= cfg.min_inside_frac * area)
        & (frame.visible >= cfg.min_visible)
    )
    ign = _clip_to(_map_boxes(frame.ignore, x0, y0, sx, sy, pad_x, pad_y), *region)
    ign = np.concatenate([ign, c[touches & ~good]])
    ign = ign[(ign[:, 2] > ign[:, 0]) & (ign[:, 3] > ign[:, 1])]
    c = c[good]

    if rng.random() < cfg.flip_prob:
        tile = np.ascontiguousarray(tile[:, ::-1])
        c = np.stack([tile_px - c[:, 2], c[:, 1], tile_px - c[:, 0], c[:, 3]], axis=1)
        ign = np.stack([tile_px - ign[:, 2], ign[:, 1], tile_px - ign[:, 0], ign[:, 3]], axis=1)
    tile = hsv_jitter(tile, rng, cfg.hsv_hue, cfg.hsv_sat, cfg.hsv_val)
    return tile, c.astype(np.float32).reshape(-1, 4), ign.astype(np.float32).reshape(-1, 4)


def _pad_boxes(items: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    m = max(1, max(len(b) for b in items))
    out = torch.zeros(len(items), m, 4)
    valid = torch.zeros(len(items), m, dtype=torch.bool)
    for i, b in enumerate(items):
        if len(b):
            out[i, : len(b)] = torch.from_numpy(b)
            valid[i, : len(b)] = True
    return out, valid


@dataclass(frozen=True)
class Batch:
    """One training batch.

    Attributes:
        images: (B, 3, T, T) float RGB in [0, 1].
        boxes: (B, M, 4) xyxy person boxes in tile pixels, padded.
        valid: (B, M) real rows of ``boxes``.
        ignore: (B, L, 4) xyxy ignore regions, padded.
        ignore_valid: (B, L) real rows of ``ignore``.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    valid: torch.Tensor
    ignore: torch.Tensor
    ignore_valid: torch.Tensor


def make_batch(
    frames: Sequence[Frame], cfg: DetectorTrainConfig, rng: np.random.Generator
) -> Batch:
    """Draw one training batch of ``cfg.batch_size`` tiles of one random size from random frames."""
    tile_px = int(cfg.tile_px[int(rng.integers(len(cfg.tile_px)))])
    tiles, all_boxes, all_ignore = [], [], []
    for _ in range(cfg.batch_size):
        frame = frames[int(rng.integers(len(frames)))]
        tile, boxes, ignore = sample_tile(frame, tile_px, cfg, rng)
        tiles.append(tile)
        all_boxes.append(boxes)
        all_ignore.append(ignore)
    images = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float().div_(255.0)
    gt, valid = _pad_boxes(all_boxes)
    ign, ign_valid = _pad_boxes(all_ignore)
    return Batch(images, gt, valid, ign, ign_valid)


# ----------------------------------------------------------------------------------------
# Assignment and loss
# ----------------------------------------------------------------------------------------


def box_iou_pairs(
    a: torch.Tensor, b: torch.Tensor, ciou: bool = False, eps: float = 1e-7
) -> torch.Tensor:
    """IoU (or CIoU) of xyxy boxes, broadcast over the leading dimensions.

    Args:
        a: (..., 4) boxes.
        b: (..., 4) boxes, broadcastable with ``a``.
        ciou: return the complete IoU (Zheng et al. 2020): IoU minus the normalised centre
            distance and an aspect-ratio consistency term.
        eps: numerical guard.
    """
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = iw * ih
    aw, ah = ax2 - ax1, ay2 - ay1
    bw, bh = bx2 - bx1, by2 - by1
    union = aw * ah + bw * bh - inter + eps
    iou = inter / union
    if not ciou:
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2).pow(2) + (by1 + by2 - ay1 - ay2).pow(2)) / 4
    v = (4 / math.pi**2) * (torch.atan(bw / (bh + eps)) - torch.atan(aw / (ah + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@dataclass
class AssignedTargets:
    """Output of :func:`assign_targets`.

    Attributes:
        fg: (B, N) bool, positive cells.
        boxes: (B, N, 4) target box of each cell (meaningful where ``fg``).
        scores: (B, N) soft class targets (normalised alignment metric, 0 on negatives).
    """

    fg: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor


@torch.no_grad()
def assign_targets(
    pred_scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    anchors: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_valid: torch.Tensor,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    radius: float = 1.0,
    eps: float = 1e-9,
) -> AssignedTargets:
    """Task-aligned label assignment (TOOD) with a centre prior for tiny boxes.

    Args:
        pred_scores: (B, N) predicted person probabilities.
        pred_boxes: (B, N, 4) predicted xyxy boxes in pixels.
        anchors: (N, 2) cell centres.
        strides: (N,) cell strides.
        gt_boxes: (B, M, 4) xyxy ground truth, padded.
        gt_valid: (B, M) which ground-truth rows are real.
        topk: cells kept per box.
        alpha: score exponent of the alignment metric.
        beta: IoU exponent of the alignment metric.
        radius: cells whose centre is within ``radius`` strides of a box centre (both axes)
            are candidates even when outside the box.
        eps: numerical guard.
    """
    b, n = pred_scores.shape
    m = gt_boxes.shape[1]
    if m == 0 or not bool(gt_valid.any()):
        return AssignedTargets(
            torch.zeros(b, n, dtype=torch.bool, device=pred_scores.device),
            torch.zeros(b, n, 4, device=pred_scores.device),
            torch.zeros(b, n, device=pred_scores.device),
        )
    ax = anchors[:, 0].view(1, 1, n)
    ay = anchors[:, 1].view(1, 1, n)
    st = strides.view(1, 1, n)
    x1, y1, x2, y2 = (gt_boxes[..., k : k + 1] for k in range(4))  # (B, M, 1)
    inside = (ax > x1) & (ax < x2) & (ay > y1) & (ay < y2)
    dx = (ax - 0.5 * (x1 + x2)).abs()
    dy = (ay - 0.5 * (y1 + y2)).abs()
    near = (dx < radius * st) & (dy < radius * st)
    cand = (inside | near) & gt_valid[..., None]  # (B, M, N)

    iou = box_iou_pairs(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :]).clamp(min=0)
    metric = pred_scores[:, None, :].pow(alpha) * iou.pow(beta)
    # Rank candidates first, by metric, with ties (metric 0 early in training) broken
    # towards the cells nearest the box centre; non-candidates rank last.
    closeness = 1.0 / (1.0 + (dx + dy) / st)
    rank = torch.where(cand, metric + 1e-6 * closeness, torch.full_like(metric, -1.0))
    k = min(topk, n)
    top_idx = rank.topk(k, dim=-1).indices
    mask = torch.zeros_like(cand).scatter_(-1, top_idx, True) & cand

    # A cell claimed by several boxes goes to the box its prediction overlaps most.
    claims = mask.sum(1)
    if bool((claims > 1).any()):
        best = torch.where(mask, iou, torch.full_like(iou, -1.0)).argmax(1)  # (B, N)
        one_hot = F.one_hot(best, m).permute(0, 2, 1).bool()
        mask = torch.where((claims > 1)[:, None, :], one_hot & mask, mask)
    fg = mask.any(1)
    gt_idx = mask.float().argmax(1)  # (B, N)
    boxes = torch.gather(gt_boxes, 1, gt_idx[..., None].expand(b, n, 4))

    metric = metric * mask
    metric_max = metric.amax(-1, keepdim=True)
    iou_max = (iou * mask).amax(-1, keepdim=True)
    scores = (metric * iou_max / (metric_max + eps)).amax(1)
    # A positive whose prediction does not yet overlap its box still gets a small target,
    # so the class branch learns where people are before the box branch is good.
    scores = torch.where(fg, scores.clamp(min=0.05), torch.zeros_like(scores))
    return AssignedTargets(fg, boxes, scores)


def detection_loss(
    raw: RawOutput,
    gt_boxes: torch.Tensor,
    gt_valid: torch.Tensor,
    cfg: DetectorTrainConfig,
    ignore: torch.Tensor | None = None,
    ignore_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: BCE on class logits and CIoU on positive boxes.

    Args:
        raw: the model's :class:`RawOutput`.
        gt_boxes: (B, M, 4) padded ground truth.
        gt_valid: (B, M) real rows of ``gt_boxes``.
        cfg: the training config (loss and assigner fields).
        ignore: (B, L, 4) ignore regions; cells whose centre lies inside one and that are
            not positives add no class loss.
        ignore_valid: (B, L) real rows of ``ignore``.

    Returns:
        ``(total loss, {"loss_box", "loss_cls", "positives"})``.
    """
    anchors = raw.anchors
    lt, rb = raw.dist[..., :2], raw.dist[..., 2:]
    pred_boxes = torch.cat([anchors[None] - lt, anchors[None] + rb], dim=-1)
    logits = raw.logits[..., 0]
    t = assign_targets(
        logits.detach().sigmoid(),
        pred_boxes.detach(),
        anchors,
        raw.strides,
        gt_boxes,
        gt_valid,
        cfg.assign_topk,
        cfg.assign_alpha,
        cfg.assign_beta,
        cfg.assign_radius,
    )
    norm = t.scores.sum().clamp(min=1.0)
    weight = None
    if (
        ignore is not None
        and ignore.shape[1]
        and ignore_valid is not None
        and bool(ignore_valid.any())
    ):
        ax = anchors[:, 0].view(1, 1, -1)
        ay = anchors[:, 1].view(1, 1, -1)
        inside = (
            (ax > ignore[..., 0:1])
            & (ax < ignore[..., 2:3])
            & (ay > ignore[..., 1:2])
            & (ay < ignore[..., 3:4])
        )
        ignored = (inside & ignore_valid[..., None]).any(1) & ~t.fg
        weight = (~ignored).to(logits.dtype)
    loss_cls = (
        F.binary_cross_entropy_with_logits(logits, t.scores, weight=weight, reduction="sum") / norm
    )
    if bool(t.fg.any()):
        ciou = box_iou_pairs(pred_boxes[t.fg], t.boxes[t.fg], ciou=True)
        loss_box = ((1.0 - ciou) * t.scores[t.fg]).sum() / norm
    else:
        loss_box = pred_boxes.sum() * 0.0
    total = cfg.box_loss_weight * loss_box + cfg.cls_loss_weight * loss_cls
    return total, {
        "loss_box": float(loss_box.detach()),
        "loss_cls": float(loss_cls.detach()),
        "positives": float(t.fg.sum()),
    }


# ----------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValTile:
    """A native-resolution validation tile and its ground truth.

    Attributes:
        image: (T, T, 3) uint8 RGB (smaller at frame edges only if the frame is smaller).
        gt: ``edgerl.vision.metrics.GroundTruth`` in tile pixels (cut or hidden people as
            ignore regions).
    """

    image: np.ndarray
    gt: Any


def _tile_starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil(length / tile)
    # Evenly spread starts; the last tile ends at the frame edge.
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def make_val_tiles(
    frames: Sequence[Frame],
    tile_px: int = 640,
    min_visible: float = 0.1,
    min_inside_frac: float = 0.5,
) -> list[ValTile]:
    """Cut frames into native-resolution tiles with ground truth.

    A person counts as ground truth in a tile when at least ``min_inside_frac`` of its box
    lies inside the tile and it is at least ``min_visible`` visible; people cut more by the
    border, or more hidden, become ignore regions (detecting them is neither right nor
    wrong), as do the frame's crowd regions and posters.

    Args:
        frames: validation frames.
        tile_px: tile side in pixels.
        min_visible: visibility below which a person is ignored.
        min_inside_frac: share of the box that must be inside the tile.
    """
    from edgerl.vision.metrics import GroundTruth

    tiles: list[ValTile] = []
    for frame in frames:
        h, w = frame.image.shape[:2]
        for y0 in _tile_starts(h, tile_px):
            for x0 in _tile_starts(w, tile_px):
                th, tw = min(tile_px, h), min(tile_px, w)
                img = np.ascontiguousarray(frame.image[y0 : y0 + th, x0 : x0 + tw])
                b = frame.boxes - np.array([x0, y0, x0, y0], np.float32)
                area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
                c = b.copy()
                c[:, [0, 2]] = c[:, [0, 2]].clip(0, tw)
                c[:, [1, 3]] = c[:, [1, 3]].clip(0, th)
                inter = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
                touches = inter > 0
                good = touches & (inter >= min_inside_frac * area) & (frame.visible >= min_visible)
                ign = frame.ignore - np.array([x0, y0, x0, y0], np.float32)
                ign = _clip_to(ign, 0, 0, tw, th)
                ign = ign[(ign[:, 2] > ign[:, 0]) & (ign[:, 3] > ign[:, 1])]
                ign = np.concatenate([ign, c[touches & ~good]])
                gt = GroundTruth(c[good], np.zeros(int(good.sum()), np.int64), tw, th, ignore=ign)
                tiles.append(ValTile(img, gt))
    return tiles


@torch.no_grad()
def predict_tiles(
    model: PersonDetector,
    images: Sequence[np.ndarray],
    input_px: int,
    conf_threshold: float = 0.001,
    nms_iou: float = 0.6,
    max_detections: int = 300,
    batch_size: int = 8,
) -> list[Detections]:
    """Run a torch detector on images the way the ONNX backend does (letterbox, NMS).

    Args:
        model: the detector (put in eval mode by the caller).
        images: RGB uint8 images of any size.
        input_px: square network input side (multiple of 32).
        conf_threshold: score threshold.
        nms_iou: NMS IoU threshold.
        max_detections: detections kept per image.
        batch_size: images per forward pass.

    Returns:
        One :class:`Detections` per image, boxes in the image's pixels.
    """
    from edgerl.vision.boxes import nms
    from edgerl.vision.detectors.onnx_backend import letterbox, unletterbox_boxes

    results: list[Detections] = []
    for start in range(0, len(images), batch_size):
        group = images[start : start + batch_size]
        metas, arrays = [], []
        for img in group:
            padded, scale, pad = letterbox(img, input_px, 114, center=True)
            arrays.append(padded)
            metas.append((scale, pad, img.shape[:2]))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        out = model(x).numpy()
        for k, (scale, pad, hw) in enumerate(metas):
            scores = out[k, 4]
            idx = np.flatnonzero(scores >= conf_threshold)
            if len(idx) > 3000:
                idx = idx[np.argsort(-scores[idx])[:3000]]
            cxcywh = out[k][:4, idx].T
            xyxy = np.concatenate(
                [cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1
            )
            keep = nms(xyxy, scores[idx], nms_iou)[:max_detections]
            boxes = unletterbox_boxes(xyxy[keep], scale, pad, hw)
            results.append(Detections(boxes, scores[idx][keep], np.zeros(len(keep), np.int64)))
    return results


def evaluate_predictions(tiles: Sequence[ValTile], preds: Sequence[Detections]) -> dict[str, float]:
    """COCO metrics of per-tile predictions (AP at up to 300 detections per tile)."""
    from edgerl.vision.metrics import evaluate_detections

    return evaluate_detections([t.gt for t in tiles], preds, max_dets=(1, 10, 300))


def evaluate_model(
    model: PersonDetector,
    tiles: Sequence[ValTile],
    input_px: int,
    cfg: DetectorTrainConfig | None = None,
) -> dict[str, float]:
    """COCO metrics of a torch detector on validation tiles at one network input size."""
    cfg = cfg or DetectorTrainConfig()
    was_training = model.training
    model.eval()
    try:
        preds = predict_tiles(
            model,
            [t.image for t in tiles],
            input_px,
            cfg.conf_threshold,
            cfg.nms_iou,
            cfg.max_detections,
        )
    finally:
        model.train(was_training)
    return evaluate_predictions(tiles, preds)


# ----------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------


class ModelEMA:
    """Exponential moving average of a model's weights and buffers.

    The decay ramps up from 0 (``decay * (1 - exp(-updates / tau))``) so the average is not
    dominated by the random initial weights in short runs.

    Args:
        model: the model being trained.
        decay: final decay.
        tau: ramp time constant in updates.
    """

    def __init__(self, model: torch.nn.Module, decay: float, tau: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.tau = max(1.0, float(tau))
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Blend the current weights into the average."""
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / self.tau))
        src = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(src[name].detach(), alpha=1.0 - d)
            else:
                value.copy_(src[name])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        # Weight decay only on conv weights; biases and norm scales are left alone.
        (decay if p.ndim == 4 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(it: int, total: int, cfg: DetectorTrainConfig) -> float:
    """Learning rate at step ``it``: linear warm-up, then cosine decay to ``lr_final_frac``."""
    if it < cfg.warmup_iters:
        return cfg.lr * (0.1 + 0.9 * it / max(1, cfg.warmup_iters))
    span = max(1, total - cfg.warmup_iters)
    progress = min(1.0, (it - cfg.warmup_iters) / span)
    final = cfg.lr * cfg.lr_final_frac
    return final + 0.5 * (cfg.lr - final) * (1.0 + math.cos(math.pi * progress))


def checkpoint_dict(
    model: PersonDetector, cfg: DetectorTrainConfig, extra: dict[str, Any]
) -> dict[str, Any]:
    """A plain checkpoint (tensors and primitives only; ``torch.load(weights_only=True)``)."""
    return {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "size": cfg.size,
        "width_mult": model.width_mult,
        "depth_mult": model.depth_mult,
        "num_classes": model.num_classes,
        "config_json": cfg.model_dump_json(),
        **extra,
    }


def save_checkpoint(path: str | os.PathLike[str], ckpt: dict[str, Any]) -> Path:
    """Write a checkpoint atomically."""
    return atomic_torch_save(path, ckpt)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[PersonDetector, dict[str, Any]]:
    """Load a checkpoint written by :func:`train_detector`.

    Returns:
        ``(model in eval mode, the checkpoint dict)``.

    Raises:
        InputError: the file is missing or not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "width_mult" not in ckpt:
        raise InputError(
            f"{path}: not a built-in detector checkpoint (missing state_dict / width_mult)"
        )
    model = PersonDetector(ckpt["width_mult"], ckpt["depth_mult"], ckpt.get("num_classes", 1))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def _say(console: Console | None, msg: str) -> None:
    if console is not None:
        console.print(msg)


def train_detector(
    cfg: DetectorTrainConfig, out_dir: str | os.PathLike[str], console: Console | None = None
) -> dict[str, Any]:
    """Train one built-in detector size and write a run directory.

    Args:
        cfg: the training config.
        out_dir: run directory (``config.yaml``, ``metrics.csv``, ``summary.json``,
            ``model.pt``).
        console: where progress lines go (anything with ``print``); None is silent.

    Returns:
        The summary dict (also written to ``summary.json``).
    """
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    torch.set_num_threads(cfg.num_threads)
    rng = seed_everything(cfg.seed)
    run = RunDir(out_dir)
    run.write_config(cfg)
    iterations = cfg.resolved_iterations()

    synth_cfg = make_synth_config(cfg.synth_preset, cfg.synth_overrides, cfg.synth_resize_px)
    train_seeds = [cfg.train_seed_start + i for i in range(cfg.train_frames)]
    val_seeds = [cfg.val_seed_start + i for i in range(cfg.val_frames)]
    if set(train_seeds) & set(val_seeds):
        raise InputError(
            f"train seeds {train_seeds[0]}..{train_seeds[-1]} overlap validation seeds "
            f"{val_seeds[0]}..{val_seeds[-1]}: move val_seed_start or train_seed_start"
        )
    _say(console, f"rendering {len(train_seeds)} training and {len(val_seeds)} validation frames")
    t0 = time.perf_counter()
    frames = render_frames(synth_cfg, train_seeds, cfg.frame_cache_dir)
    val_frames = render_frames(synth_cfg, val_seeds, cfg.frame_cache_dir)
    render_s = time.perf_counter() - t0
    val_tiles = make_val_tiles(val_frames, cfg.val_tile_px, cfg.min_visible)
    del val_frames
    n_val_gt = int(sum(len(t.gt.boxes) for t in val_tiles))
    _say(
        console,
        f"frames ready in {render_s:.1f} s; {len(val_tiles)} validation tiles, {n_val_gt} people",
    )

    model = build_detector(cfg.size).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEMA(model, cfg.ema_decay, tau=max(100.0, iterations / 15))
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999)
    )
    _say(
        console,
        f"size {cfg.size}: {count_parameters(model) / 1e6:.2f} M parameters, {iterations} iterations",
    )

    sums = {"loss": 0.0, "loss_box": 0.0, "loss_cls": 0.0, "positives": 0.0}
    count = 0
    last: dict[str, float] = {}
    t_train = time.perf_counter()
    eval_s = 0.0
    for it in range(iterations):
        lr = lr_at(it, iterations, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = make_batch(frames, cfg, rng)
        images = (
            batch.images.contiguous(memory_format=torch.channels_last)
            if cfg.channels_last
            else batch.images
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
            raw = model.forward_train(images)
        loss, parts = detection_loss(
            raw, batch.boxes, batch.valid, cfg, batch.ignore, batch.ignore_valid
        )
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at iteration {it}: loss {float(loss)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
        optimizer.step()
        ema.update(model)
        sums["loss"] += float(loss.detach())
        for key in ("loss_box", "loss_cls", "positives"):
            sums[key] += parts[key]
        count += 1

        done = it + 1
        if done % cfg.eval_every_iters == 0 or done == iterations:
            te = time.perf_counter()
            last = evaluate_model(ema.module, val_tiles, cfg.val_input_px, cfg)
            eval_s += time.perf_counter() - te
            row = {
                "epoch": math.ceil(done / cfg.eval_every_iters),
                "iteration": done,
                "lr": lr,
                "loss": sums["loss"] / count,
                "loss_box": sums["loss_box"] / count,
                "loss_cls": sums["loss_cls"] / count,
                "positives_per_batch": sums["positives"] / count,
                "val_map50": last["map50"],
                "val_map50_95": last["map50_95"],
                "val_map_small": last["map_small"],
                "val_map_medium": last["map_medium"],
                "val_map_large": last["map_large"],
                "elapsed_s": time.perf_counter() - t_start,
            }
            run.log(row)
            _say(
                console,
                f"it {done}/{iterations} loss {row['loss']:.3f} (box {row['loss_box']:.3f} cls {row['loss_cls']:.3f}) "
                f"val AP50 {last['map50']:.3f} AP {last['map50_95']:.3f} [{row['elapsed_s']:.0f} s]",
            )
            sums = dict.fromkeys(sums, 0.0)
            count = 0
            save_checkpoint(
                run.path / "model.pt",
                checkpoint_dict(
                    ema.module, cfg, {"iterations": done, "val_map50": float(last["map50"])}
                ),
            )

    wall = time.perf_counter() - t_start
    summary = {
        "size": cfg.size,
        "params": count_parameters(model),
        "width_mult": model.width_mult,
        "depth_mult": model.depth_mult,
        "iterations": iterations,
        "seed": cfg.seed,
        "train_seeds": f"{train_seeds[0]}..{train_seeds[-1]}",
        "val_seeds": f"{val_seeds[0]}..{val_seeds[-1]}",
        "val_tiles": len(val_tiles),
        "val_people": n_val_gt,
        "val_input_px": cfg.val_input_px,
        "val_map50": float(last.get("map50", math.nan)),
        "val_map50_95": float(last.get("map50_95", math.nan)),
        "val_map_small": float(last.get("map_small", math.nan)),
        "val_map_medium": float(last.get("map_medium", math.nan)),
        "val_map_large": float(last.get("map_large", math.nan)),
        "render_s": render_s,
        "train_s": time.perf_counter() - t_train - eval_s,
        "eval_s": eval_s,
        "wall_s": wall,
        # CPU seconds of this process: the cost without other jobs on shared cores.
        "cpu_s": time.process_time() - cpu_start,
        "torch_version": torch.__version__,
        "checkpoint": "model.pt",
    }
    run.write_summary(summary)
    _say(
        console,
        f"done in {wall:.0f} s: val AP50 {summary['val_map50']:.3f}, AP {summary['val_map50_95']:.3f}",
    )
    return summary


class _PrintConsole:
    def print(self, *objects: Any) -> None:
        print(*objects, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgerl.vision.builtin.train --size n --out RUN_DIR [--config YAML]``."""
    parser = argparse.ArgumentParser(description="Train a built-in person detector size.")
    parser.add_argument("--size", choices=list(SIZE_SPECS), default=None, help="detector size")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--config", default=None, help="YAML with DetectorTrainConfig fields")
    parser.add_argument("--iterations", type=int, default=None, help="override the iterations")
    parser.add_argument("--frame-cache", default=None, help="folder caching rendered frames")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(
            DetectorTrainConfig,
            args.config,
            {"size": args.size, "iterations": args.iterations, "frame_cache_dir": args.frame_cache},
        )
        train_detector(cfg, args.out, console=_PrintConsole())
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
