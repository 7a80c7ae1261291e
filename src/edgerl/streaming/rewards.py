"""Rewards of the streaming bandit (paper 004, section 4.2, eqs. (1) and (2)).

* **R1** (eq. (1)): the reward of the decision taken at frame ``a`` and replaced by the next
  decision at frame ``b`` is the streaming AP (AP[.5:.95] of one COCO evaluation) over the
  frames ``[a, b)``, each frame ``i`` scored against the latest output whose timestamp is
  ``<= i / fps`` (zero-order hold). Outputs delivered before ``a`` still stand in for the first
  frames of the segment until a newer one arrives, exactly as in the sAP of the whole stream;
  ``R1(0, T)`` is the stream's sAP.
* **R2** (eq. (2), ``R_fixed_adv``): ``lambda * (R1 - R1_fixed)``, where ``R1_fixed`` is R1 of a
  fixed configuration's output stream (run once and cached) over the same frames. It removes
  the difficulty of the sequence from the reward, so it measures the advantage of the choice.

A segment without any ground-truth object has no defined AP (COCO marks it -1, the metric
gives NaN). A NaN reward cannot be learnt from, so such a segment gets R1 = 0; R2 is then
``lambda * (0 - 0) = 0`` as well: the decision neither helped nor hurt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.vision.metrics import GroundTruth

if TYPE_CHECKING:
    from edgerl.streaming.sap import StreamOutput

__all__ = ["decision_rewards", "reward_r1", "reward_r2", "segments"]


def _check_range(frame_range: Sequence[int], n_frames: int) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in frame_range)
    except (TypeError, ValueError):
        raise InputError(f"frame_range must be (start, stop), got {frame_range!r}") from None
    if not (0 <= a <= b <= n_frames):
        raise InputError(
            f"frame_range ({a}, {b}) must satisfy 0 <= start <= stop <= {n_frames} "
            "(the number of ground-truth frames)"
        )
    return a, b


def reward_r1(
    gts: Sequence[GroundTruth],
    outputs: Sequence[StreamOutput],
    frame_range: Sequence[int],
    fps: float = 30.0,
    class_map: Mapping[int, int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
) -> float:
    """R1: streaming AP over frames ``[a, b)`` of a stream (eq. (1)).

    Args:
        gts: Ground truth of every frame of the stream, ``gts[i]`` for frame ``i``.
        outputs: Every output of the stream so far (:class:`~edgerl.streaming.sap.StreamOutput`,
            non-decreasing ``time_s``); outputs after the segment are ignored by the hold rule.
        frame_range: ``(a, b)``: the decision frame and the next decision's frame.
        fps: Frame rate of the stream (frame ``i`` is shown at ``i / fps`` s).
        class_map: Prediction class id -> ground-truth class id (see
            :func:`~edgerl.vision.metrics.evaluate_detections`).
        max_dets: Detection caps per frame and category.

    Returns:
        AP[.5:.95] in [0, 1]; 0.0 for an empty range or a range without ground-truth objects.
    """
    from edgerl.streaming.sap import streaming_ap

    a, b = _check_range(frame_range, len(gts))
    seg = list(gts[a:b])
    if not any(len(g.boxes) for g in seg):
        return 0.0
    sap = streaming_ap(
        seg, outputs, fps=fps, class_map=class_map, max_dets=max_dets,
        frame_indices=np.arange(a, b),
    )["sap"]  # fmt: skip
    return 0.0 if math.isnan(sap) else float(sap)


def reward_r2(r1: float, r1_fixed: float, scale: float = 1.0) -> float:
    """R2 = ``scale * (r1 - r1_fixed)`` (eq. (2), ``scale`` is the paper's lambda > 0)."""
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"scale (lambda) must be a finite number > 0, got {scale!r}")
    if not (math.isfinite(r1) and math.isfinite(r1_fixed)):
        raise InputError(f"rewards must be finite, got r1 = {r1!r}, r1_fixed = {r1_fixed!r}")
    return float(scale) * (float(r1) - float(r1_fixed))


def segments(decision_frames: Sequence[int], n_frames: int) -> list[tuple[int, int]]:
    """Frame ranges ``[f_k, f_{k+1})`` of successive decisions; the last runs to ``n_frames``.

    Raises:
        InputError: Decision frames not strictly increasing or outside ``[0, n_frames)``.
    """
    f = [int(v) for v in decision_frames]
    if any(b <= a for a, b in zip(f, f[1:])):
        raise InputError(f"decision_frames must be strictly increasing, got {f}")
    if f and (f[0] < 0 or f[-1] >= n_frames):
        raise InputError(f"decision_frames must lie in [0, {n_frames}), got {f}")
    return list(zip(f, f[1:] + [int(n_frames)]))


def decision_rewards(
    gts: Sequence[GroundTruth],
    outputs: Sequence[StreamOutput],
    decision_frames: Sequence[int],
    fps: float = 30.0,
    fixed_outputs: Sequence[StreamOutput] | None = None,
    scale: float = 1.0,
    class_map: Mapping[int, int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
) -> np.ndarray:
    """Reward of every decision of a finished stream (the paper's reward reconstruction).

    Args:
        gts: Ground truth of every frame.
        outputs: The output stream produced under the agent's decisions.
        decision_frames: Frame index of each decision, strictly increasing.
        fps: Frame rate.
        fixed_outputs: The cached output stream of the fixed policy; given, the rewards are R2,
            otherwise R1.
        scale: lambda of R2.
        class_map: As in :func:`reward_r1`.
        max_dets: As in :func:`reward_r1`.

    Returns:
        float64 array, one reward per decision.
    """
    out = []
    for seg in segments(decision_frames, len(gts)):
        r1 = reward_r1(gts, outputs, seg, fps, class_map, max_dets)
        if fixed_outputs is not None:
            r1 = reward_r2(r1, reward_r1(gts, fixed_outputs, seg, fps, class_map, max_dets), scale)
        out.append(r1)
    return np.asarray(out, dtype=np.float64)
