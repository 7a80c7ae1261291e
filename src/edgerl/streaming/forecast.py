"""Streamer-style Kalman forecasting of detections (Li et al., ECCV 2020, section 5).

A detector that finishes late reports where objects *were*; Streamer extrapolates each object to
the time of the frame being shown. Every detection is a track with a constant-velocity Kalman
filter on its box:

* state ``x = [l, t, w, h, vl, vt, vw, vh]`` (left, top, width, height in pixels and their
  velocities in pixels per frame); time steps ``dt`` are counted in frames;
* transition ``F = [[I, dt I], [0, I]]``, process noise ``Q = q dt^2 I`` (q = 1 in Streamer),
  measurement ``z = [l, t, w, h]`` with ``H = [I, 0]`` and noise ``R = 10 I``, initial covariance
  ``P0 = 100 I`` with zero velocity;
* a new result is associated with the previous tracks greedily (highest IoU first) among boxes of
  the same class with IoU >= 0.3; a matched track is predicted ``dt`` frames ahead and corrected
  with its detection, an unmatched detection starts a track, an unmatched track ends;
* a forecast to frame ``j`` is ``box + (j - last update frame) * velocity``; boxes left with an
  area under 75 px^2 (or a non-positive side) are dropped.

All tracks are updated in one batch of 8x8 matrix operations.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.vision.boxes import iou_matrix
from edgerl.vision.detections import Detections

__all__ = ["KalmanConfig", "KalmanForecaster", "greedy_associate", "xyxy_to_ltwh", "ltwh_to_xyxy"]


class KalmanConfig(Config):
    """Constants of the Streamer forecaster (defaults: Li et al.)."""

    process_noise_scale: float = Field(1.0, gt=0)
    """q in Q = q * dt^2 * I (dt in frames)."""
    measurement_var_px2: float = Field(10.0, gt=0)
    """Measurement noise variance R (pixels^2) of each box coordinate."""
    init_var_px2: float = Field(100.0, gt=0)
    """Initial state variance P0 (pixels^2, and (pixels/frame)^2 for velocities)."""
    match_iou: float = Field(0.3, ge=0, le=1)
    """Minimum IoU for a new detection to continue a track of the same class."""
    min_area_px2: float = Field(75.0, ge=0)
    """Forecast boxes with a smaller area (pixels^2) are dropped."""


def xyxy_to_ltwh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) [left, top, width, height], float64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def ltwh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) [left, top, width, height] -> (N, 4) xyxy, float64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def greedy_associate(
    prev_boxes: np.ndarray,
    prev_classes: np.ndarray,
    new_boxes: np.ndarray,
    new_classes: np.ndarray,
    min_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one association by IoU among boxes of the same class.

    Pairs are taken in order of decreasing IoU (ties: lower previous index, then lower new
    index); a pair is taken when neither box is used yet and its IoU is >= ``min_iou``.

    Args:
        prev_boxes: (N, 4) xyxy boxes of the existing tracks.
        prev_classes: (N,) their classes.
        new_boxes: (M, 4) xyxy boxes of the new result.
        new_classes: (M,) their classes.
        min_iou: Association threshold.

    Returns:
        ``(prev_idx, new_idx)``: int64 arrays of equal length, the matched pairs.
    """
    n, m = len(prev_boxes), len(new_boxes)
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iou = iou_matrix(prev_boxes, new_boxes)
    same = np.asarray(prev_classes)[:, None] == np.asarray(new_classes)[None, :]
    iou = np.where(same, iou, -1.0)
    rows, cols = np.nonzero(iou >= min_iou)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_p = np.zeros(n, bool)
    used_n = np.zeros(m, bool)
    pi, ni = [], []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if used_p[r] or used_n[c]:
            continue
        used_p[r] = used_n[c] = True
        pi.append(r)
        ni.append(c)
    return np.asarray(pi, np.int64), np.asarray(ni, np.int64)


class KalmanForecaster:
    """Per-object constant-velocity Kalman filters that forecast boxes to a later frame.

    Args:
        config: Filter and association constants (defaults: Streamer's).

    Example:
        >>> f = KalmanForecaster()
        >>> f.update(dets_frame_3, 3)
        >>> f.forecast(5)  # boxes extrapolated two frames ahead
    """

    def __init__(self, config: KalmanConfig | None = None) -> None:
        self.config = config or KalmanConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every track."""
        self.x = np.zeros((0, 8))
        """State per track: [l, t, w, h, vl, vt, vw, vh] (px, px/frame)."""
        self.P = np.zeros((0, 8, 8))
        """State covariance per track."""
        self.scores = np.zeros(0, np.float32)
        self.classes = np.zeros(0, np.int64)
        self.last_frame: int | None = None
        """Frame index of the last update (None before the first)."""

    def __len__(self) -> int:
        return len(self.x)

    def _init_tracks(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((len(z), 8))
        x[:, :4] = z
        P = np.broadcast_to(np.eye(8) * self.config.init_var_px2, (len(z), 8, 8)).copy()
        return x, P

    def predict(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Prior state and covariance of every track ``dt`` frames after the last update."""
        F = np.eye(8)
        F[:4, 4:] = dt * np.eye(4)
        x = self.x @ F.T
        Q = self.config.process_noise_scale * dt**2 * np.eye(8)
        P = F @ self.P @ F.T + Q
        return x, P

    def _correct(
        self, x: np.ndarray, P: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        S = P[:, :4, :4] + self.config.measurement_var_px2 * np.eye(4)
        # K = P H^T S^-1; with S symmetric, K^T = S^-1 H P.
        K = np.swapaxes(np.linalg.solve(S, P[:, :4, :]), 1, 2)
        x = x + np.einsum("nij,nj->ni", K, z - x[:, :4])
        P = P - K @ P[:, :4, :]
        return x, P

    def update(self, detections: Detections, frame_index: int) -> None:
        """Take a result computed from frame ``frame_index``.

        Raises:
            InputError: ``frame_index`` is not after the previous update.
        """
        frame_index = int(frame_index)
        if self.last_frame is not None and frame_index <= self.last_frame:
            raise InputError(
                f"KalmanForecaster.update: frame_index {frame_index} is not after the last "
                f"update ({self.last_frame}); updates must move forward in time"
            )
        z = xyxy_to_ltwh(detections.boxes)
        x_new, P_new = self._init_tracks(z)
        if len(self.x) and len(z):
            dt = frame_index - self.last_frame
            pi, ni = greedy_associate(
                ltwh_to_xyxy(self.x[:, :4]), self.classes, detections.boxes,
                detections.classes, self.config.match_iou,
            )  # fmt: skip
            if len(pi):
                xp, Pp = self.predict(dt)
                xc, Pc = self._correct(xp[pi], Pp[pi], z[ni])
                x_new[ni], P_new[ni] = xc, Pc
        self.x, self.P = x_new, P_new
        self.scores = detections.scores.copy()
        self.classes = detections.classes.copy()
        self.last_frame = frame_index

    def forecast(self, frame_index: int) -> Detections:
        """Tracks extrapolated to frame ``frame_index`` (>= the last update frame).

        Raises:
            InputError: ``frame_index`` is before the last update.
        """
        if self.last_frame is None:
            return Detections.empty()
        dt = int(frame_index) - self.last_frame
        if dt < 0:
            raise InputError(
                f"KalmanForecaster.forecast: frame_index {frame_index} is before the last "
                f"update ({self.last_frame})"
            )
        ltwh = self.x[:, :4] + dt * self.x[:, 4:]
        w, h = ltwh[:, 2], ltwh[:, 3]
        keep = (w > 0) & (h > 0) & (w * h >= self.config.min_area_px2)
        return Detections(ltwh_to_xyxy(ltwh[keep]), self.scores[keep], self.classes[keep])
