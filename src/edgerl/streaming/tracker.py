"""A light tracker for the frames between detector runs (NumPy only).

Paper 004 lets a configuration run its detector on one frame in ``k`` (the tracker stride) and a
cheaper tracker (Tracktor in the paper) on the frames in between. This module's tracker is far
lighter than Tracktor and never finds new objects; it only carries the last detections forward:

1. **Velocity.** When a detector result arrives, each box is associated (greedy, same class,
   IoU >= ``match_iou``) with the previous tracks *moved to the new frame*. A matched track's
   velocity (pixels per frame, per xyxy coordinate) becomes an exponential average of its old
   velocity and the displacement since the previous detection divided by the frames elapsed;
   a new track starts at rest.
2. **Propagation.** A tracking step on frame ``j`` moves every box by ``(j - j_prev) * velocity``
   from where the previous step (or detection) left it.
3. **Template shift (optional, when images are given).** The detector frame is reduced to
   grayscale at the tracker scale (short side ``scale`` pixels, nearest-neighbour sampling) and a
   ``template_px`` square around each box centre is kept. On a tracking step with an image, each
   template is searched within ``search_radius_px`` (at tracker scale) around the propagated
   centre by the smallest mean absolute difference, and the box is moved by the best shift. All
   tracks are searched at once with a sliding-window view.

Cost model. ``cost_s(scale) = cost_base_s + cost_per_mpx_s * megapixels(scale)``, where
``megapixels(scale) = scale^2 * aspect / 1e6`` is the size of the reduced frame; the simulator
charges one tracking step this many seconds. :func:`profile_tracker_cost` measures steps at
several scales and fits both constants by least squares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from edgerl.streaming.forecast import greedy_associate
from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections

__all__ = ["LightTrackerConfig", "LightTracker", "profile_tracker_cost"]


class LightTrackerConfig(Config):
    """Settings of :class:`LightTracker`."""

    match_iou: float = Field(0.3, ge=0, le=1)
    """Minimum IoU to continue a track of the same class with a new detection."""
    velocity_smoothing: float = Field(0.5, gt=0, le=1)
    """Weight of the newest displacement in the velocity average (1 = newest only)."""
    scale: float = Field(480.0, gt=0)
    """Default tracker input short side (pixels) for template matching."""
    template_px: int = Field(12, ge=3)
    """Side of the square template around each box centre, at tracker scale (pixels)."""
    search_radius_px: int = Field(4, ge=0)
    """Largest template shift searched per step, at tracker scale (pixels)."""
    aspect: float = Field(16 / 9, gt=0)
    """Frame width / height used by the cost model."""
    cost_base_s: float = Field(1.5e-3, ge=0)
    """Fixed cost of one tracking step (s)."""
    cost_per_mpx_s: float = Field(8e-3, ge=0)
    """Cost per megapixel of the reduced frame (s)."""


def _gray_at_scale(image: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """Grayscale float32 frame with short side ``scale`` (nearest sampling) and the factor."""
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise InputError(f"LightTracker: image must be HxW or HxWxC, got shape {img.shape}")
    h, w = img.shape[:2]
    f = min(1.0, float(scale) / min(h, w))
    h2, w2 = max(1, round(h * f)), max(1, round(w * f))
    rows = np.minimum(((np.arange(h2) + 0.5) / f).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(w2) + 0.5) / f).astype(np.int64), w - 1)
    small = img[rows[:, None], cols[None, :]].astype(np.float32)
    if small.ndim == 3:
        small = small.mean(axis=2)
    return small, f


class LightTracker:
    """Velocity propagation with an optional template-shift correction.

    Args:
        config: Tracker settings and cost model.
    """

    def __init__(self, config: LightTrackerConfig | None = None) -> None:
        self.config = config or LightTrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every track."""
        self.boxes = np.zeros((0, 4))
        """Current xyxy boxes (after the latest detection or tracking step)."""
        self.frame: int | None = None
        """Frame index the current boxes belong to."""
        self.velocity = np.zeros((0, 4))
        """Velocity per track, pixels per frame for each xyxy coordinate."""
        self.scores = np.zeros(0, np.float32)
        self.classes = np.zeros(0, np.int64)
        self._det_boxes = np.zeros((0, 4))
        self._det_frame: int | None = None
        self._templates: np.ndarray | None = None
        self._scale = self.config.scale

    def cost_s(self, scale: float) -> float:
        """Modelled runtime (s) of one tracking step with input short side ``scale`` pixels."""
        c = self.config
        return c.cost_base_s + c.cost_per_mpx_s * float(scale) ** 2 * c.aspect / 1e6

    def update(
        self,
        detections: Detections,
        frame_index: int,
        image: np.ndarray | None = None,
        scale: float | None = None,
    ) -> None:
        """Take a detector result on frame ``frame_index``.

        Args:
            detections: The detector result.
            frame_index: Its input frame.
            image: That frame; when given, templates are cut for the template-shift correction.
            scale: Tracker input short side (pixels) for the templates and the searches until the
                next update; default ``config.scale``.

        Raises:
            InputError: ``frame_index`` is not after the previous detector update.
        """
        frame_index = int(frame_index)
        if self._det_frame is not None and frame_index <= self._det_frame:
            raise InputError(
                f"LightTracker.update: frame_index {frame_index} is not after the last detector "
                f"update ({self._det_frame})"
            )
        new = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
        vel = np.zeros_like(new)
        if len(self._det_boxes) and len(new):
            dt = frame_index - self._det_frame
            moved = self._det_boxes + dt * self.velocity
            pi, ni = greedy_associate(
                moved, self.classes, new, detections.classes, self.config.match_iou
            )
            a = self.config.velocity_smoothing
            obs = (new[ni] - self._det_boxes[pi]) / dt
            vel[ni] = a * obs + (1 - a) * self.velocity[pi]
        self.boxes = new.copy()
        self._det_boxes = new.copy()
        self.velocity = vel
        self.scores = detections.scores.copy()
        self.classes = detections.classes.copy()
        self.frame = self._det_frame = frame_index
        self._templates = None
        self._scale = self.config.scale if scale is None else float(scale)
        if image is not None and len(new):
            self._templates = self._cut_templates(image)

    def _centres_small(self, boxes: np.ndarray, f: float) -> np.ndarray:
        return np.rint((boxes[:, :2] + boxes[:, 2:]) * 0.5 * f).astype(np.int64)

    def _patches(self, small: np.ndarray, centres: np.ndarray, half: int, size: int) -> np.ndarray:
        """Square patches of side ``size`` starting at ``centre - half`` (edge-padded)."""
        pad = size
        padded = np.pad(small, pad, mode="edge")
        r0 = np.clip(centres[:, 1] - half + pad, 0, padded.shape[0] - size)
        c0 = np.clip(centres[:, 0] - half + pad, 0, padded.shape[1] - size)
        rr = r0[:, None, None] + np.arange(size)[None, :, None]
        cc = c0[:, None, None] + np.arange(size)[None, None, :]
        return padded[rr, cc]

    def _cut_templates(self, image: np.ndarray) -> np.ndarray:
        small, f = _gray_at_scale(image, self._scale)
        t = self.config.template_px
        return self._patches(small, self._centres_small(self.boxes, f), t // 2, t)

    def track(self, frame_index: int, image: np.ndarray | None = None) -> Detections:
        """Boxes carried to frame ``frame_index`` (>= the current frame).

        Args:
            frame_index: Frame to track to.
            image: That frame; with it (and templates from the last detector frame) each box is
                corrected by the best template shift.

        Raises:
            InputError: ``frame_index`` is before the current frame.
        """
        if self.frame is None:
            return Detections.empty()
        dt = int(frame_index) - self.frame
        if dt < 0:
            raise InputError(
                f"LightTracker.track: frame_index {frame_index} is before the current frame "
                f"({self.frame})"
            )
        boxes = self.boxes + dt * self.velocity
        if image is not None and self._templates is not None and len(boxes):
            boxes = boxes + self._template_shift(image, boxes)
        self.boxes, self.frame = boxes, int(frame_index)
        return Detections(boxes, self.scores, self.classes)

    def _template_shift(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        small, f = _gray_at_scale(image, self._scale)
        t, r = self.config.template_px, self.config.search_radius_px
        win = self._patches(small, self._centres_small(boxes, f), t // 2 + r, t + 2 * r)
        views = sliding_window_view(win, (t, t), axis=(1, 2))  # (N, 2r+1, 2r+1, t, t)
        sad = np.abs(views - self._templates[:, None, None]).mean(axis=(3, 4))
        flat = sad.reshape(len(boxes), -1)
        # Prefer no shift when it is as good as any other (flat regions, lost objects).
        flat = flat - 1e-6 * (flat.shape[1] // 2 == np.arange(flat.shape[1]))
        best = np.argmin(flat, axis=1)
        dy, dx = np.divmod(best, 2 * r + 1)
        shift = np.stack([dx - r, dy - r], axis=1) / f
        return np.concatenate([shift, shift], axis=1)


def profile_tracker_cost(
    scales: Sequence[float],
    rng: np.random.Generator,
    n_tracks: int = 20,
    frame_hw: tuple[int, int] = (1080, 1920),
    repeat: int = 5,
    config: LightTrackerConfig | None = None,
) -> LightTrackerConfig:
    """Measure template-shift tracking steps on random frames and fit the cost model.

    Args:
        scales: Tracker input short sides to time (at least two distinct values).
        rng: Source of the random frames and boxes.
        n_tracks: Boxes tracked per step.
        frame_hw: Size of the full-resolution frames (height, width).
        repeat: Timed steps per scale (the median is used).
        config: Base settings; the fitted ``cost_base_s`` / ``cost_per_mpx_s`` replace its own.

    Returns:
        A copy of ``config`` with the fitted cost constants (clipped at 0) and ``aspect`` set to
        ``width / height`` of ``frame_hw``.
    """
    scales = [float(s) for s in scales]
    if len(set(scales)) < 2:
        raise InputError(f"profile_tracker_cost: need two distinct scales, got {scales}")
    h, w = frame_hw
    base = config or LightTrackerConfig()
    cfg = base.model_copy(update={"aspect": w / h})
    xy = rng.uniform(0, min(h, w) * 0.8, (n_tracks, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 120, (n_tracks, 2))], axis=1)
    dets = Detections(boxes, np.ones(n_tracks), np.zeros(n_tracks, np.int64))
    mpx, secs = [], []
    for s in scales:
        tr = LightTracker(cfg)
        frames = rng.integers(0, 256, (repeat + 1, h, w), dtype=np.uint8)
        tr.update(dets, 0, frames[0], scale=s)
        times = []
        for k in range(1, repeat + 1):
            t0 = time.perf_counter()
            tr.track(k, frames[k])
            times.append(time.perf_counter() - t0)
        mpx.append(s * s * cfg.aspect / 1e6)
        secs.append(float(np.median(times)))
    A = np.stack([np.ones(len(mpx)), np.asarray(mpx)], axis=1)
    (c0, c1), *_ = np.linalg.lstsq(A, np.asarray(secs), rcond=None)
    return cfg.model_copy(
        update={"cost_base_s": max(0.0, float(c0)), "cost_per_mpx_s": max(0.0, float(c1))}
    )
