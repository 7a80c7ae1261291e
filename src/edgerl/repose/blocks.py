"""Uniform slicing of a frame into overlapping blocks (coarse detection, RE-POSE Sec. III-A1).

Pure integer arithmetic: the slices of an axis have one common size, the first starts at 0,
the last ends exactly at the border, the starts are spread evenly, and adjacent slices overlap
by at least ``overlap_frac`` of the slice size.
"""

from __future__ import annotations

import math

import numpy as np

from edgerl.utils.errors import InputError

__all__ = ["axis_slices", "uniform_blocks"]


def axis_slices(length: int, n: int, overlap_frac: float = 0.0) -> tuple[np.ndarray, int]:
    """Starts and common size of ``n`` slices covering ``[0, length)`` with overlap.

    The size ``s`` is the smallest integer for which evenly spread integer starts
    ``floor(k (length - s) / (n - 1))`` leave every adjacent pair overlapping by at least
    ``ceil(overlap_frac * s)`` pixels.

    Args:
        length: axis length in pixels (>= 1).
        n: number of slices, ``1 <= n <= length``.
        overlap_frac: minimum overlap of adjacent slices as a fraction of the slice size,
            ``0 <= overlap_frac < 1``.

    Returns:
        ``(starts, size)``: (n,) int64 starts (increasing, first 0, last ``length - size``) and
        the slice size in pixels.
    """
    if length < 1:
        raise InputError(f"axis length must be >= 1 pixel, got {length}")
    if not 1 <= n <= length:
        raise InputError(
            f"number of slices must be in 1..{length} for an axis of {length} px, got {n}"
        )
    if not 0.0 <= overlap_frac < 1.0:
        raise InputError(f"overlap_frac must be in [0, 1), got {overlap_frac!r}")
    if n == 1:
        return np.zeros(1, dtype=np.int64), length
    size = max(1, math.ceil(length / (n - (n - 1) * overlap_frac) - 1e-9))

    def fits(s: int) -> bool:
        max_step = -(-(length - s) // (n - 1))  # ceil((length - s) / (n - 1))
        return max_step <= s - math.ceil(overlap_frac * s - 1e-9)

    while size < length and not fits(size):
        size += 1
    starts = (np.arange(n, dtype=np.int64) * (length - size)) // (n - 1)
    return starts, size


def uniform_blocks(
    frame_wh: tuple[int, int], n_cols: int, n_rows: int, overlap_frac: float = 0.0
) -> np.ndarray:
    """An ``n_rows x n_cols`` grid of equal, overlapping blocks covering the frame exactly.

    Args:
        frame_wh: frame (width, height) in pixels.
        n_cols: blocks per row.
        n_rows: blocks per column.
        overlap_frac: minimum overlap of adjacent blocks as a fraction of the block size,
            applied along both axes, ``0 <= overlap_frac < 1``.

    Returns:
        (n_rows * n_cols, 4) int64 xyxy blocks in row-major order (top row first, left to
        right); every pixel of the frame lies in at least one block.
    """
    try:
        w, h = (int(v) for v in frame_wh)
    except (TypeError, ValueError):
        raise InputError(f"frame_wh must be (width, height) in pixels, got {frame_wh!r}") from None
    xs, bw = axis_slices(w, n_cols, overlap_frac)
    ys, bh = axis_slices(h, n_rows, overlap_frac)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    x1, y1 = gx.reshape(-1), gy.reshape(-1)
    return np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.int64)
