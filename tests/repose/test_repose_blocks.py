"""Property tests of uniform slicing (coarse-detection blocks, RE-POSE Sec. III-A1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerl.repose.blocks import axis_slices, uniform_blocks
from edgerl.utils.errors import InputError


def test_uniform_blocks_golden() -> None:
    np.testing.assert_array_equal(
        uniform_blocks((100, 50), 2, 1), [[0, 0, 50, 50], [50, 0, 100, 50]]
    )
    # 2 x 2 with 30% overlap on 4K: width ceil(3840 / 1.7) = 2259 (overlap 678 >= 0.3 * 2259),
    # height ceil(2160 / 1.7) = 1271 (overlap 382 >= 381.3)
    np.testing.assert_array_equal(
        uniform_blocks((3840, 2160), 2, 2, 0.3),
        [[0, 0, 2259, 1271], [1581, 0, 3840, 1271], [0, 889, 2259, 2160], [1581, 889, 3840, 2160]],
    )


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 5000),
    n=st.integers(1, 12),
    overlap=st.floats(0.0, 0.9, allow_nan=False),
)
def test_axis_slices_properties(length: int, n: int, overlap: float) -> None:
    n = min(n, length)
    starts, size = axis_slices(length, n, overlap)
    assert len(starts) == n and 1 <= size <= length
    assert starts[0] == 0 and starts[-1] + size == length  # last slice on the border
    assert (np.diff(starts) >= 0).all()
    covered = np.zeros(length, dtype=bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered.all()  # every pixel
    if n > 1:
        assert (size - np.diff(starts) >= overlap * size - 1e-9).all()  # overlap
        if size > 1:  # the size is the smallest that meets the overlap
            smaller = size - 1
            step = -(-(length - smaller) // (n - 1))
            assert step > smaller - np.ceil(overlap * smaller - 1e-9)


@settings(max_examples=100, deadline=None)
@given(
    w=st.integers(1, 800),
    h=st.integers(1, 800),
    cols=st.integers(1, 5),
    rows=st.integers(1, 5),
    overlap=st.floats(0.0, 0.5, allow_nan=False),
)
def test_uniform_blocks_cover_frame(w: int, h: int, cols: int, rows: int, overlap: float) -> None:
    cols, rows = min(cols, w), min(rows, h)
    blocks = uniform_blocks((w, h), cols, rows, overlap)
    assert blocks.shape == (rows * cols, 4) and blocks.dtype == np.int64
    assert (blocks[:, :2] >= 0).all() and (blocks[:, 2] <= w).all() and (blocks[:, 3] <= h).all()
    sizes = blocks[:, 2:] - blocks[:, :2]
    assert (sizes == sizes[0]).all()  # one block size
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in blocks:
        mask[y1:y2, x1:x2] = True
    assert mask.all()
    # row-major order: x varies fastest
    assert (blocks[:cols, 1] == 0).all()


def test_uniform_blocks_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="overlap_frac"):
        uniform_blocks((100, 100), 2, 2, 1.0)
    with pytest.raises(InputError, match="number of slices"):
        uniform_blocks((3, 100), 4, 1)
    with pytest.raises(InputError, match="frame_wh"):
        uniform_blocks(("a", 100), 1, 1)
