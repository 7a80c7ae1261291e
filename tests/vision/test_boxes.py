"""Tests of box geometry and NMS against brute-force references and hand-computed values."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgerl.utils.errors import InputError
from edgerl.vision.boxes import (
    batched_nms,
    box_area,
    clip_boxes,
    ioa,
    ios,
    iou_matrix,
    map_boxes_from_block,
    map_boxes_to_block,
    nms,
    nms_detections,
    scale_boxes,
    validate_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from edgerl.vision.detections import Detections

# ----------------------------------------------------------------------------- references


def ref_iou(a: list[float], b: list[float]) -> Fraction:
    """Exact IoU of two boxes with rational arithmetic."""
    a = [Fraction(v) for v in a]
    b = [Fraction(v) for v in b]
    iw = max(Fraction(0), min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(Fraction(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(Fraction(0), a[2] - a[0]) * max(Fraction(0), a[3] - a[1])
    area_b = max(Fraction(0), b[2] - b[0]) * max(Fraction(0), b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else Fraction(0)


def ref_greedy_nms(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    """Textbook greedy NMS: visit by score, keep unless a kept box overlaps more than thr."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(ref_iou(boxes[i], boxes[k]) <= Fraction(thr) for k in kept):
            kept.append(i)
    return kept


coord = st.floats(min_value=0, max_value=100, allow_nan=False, width=32)


@st.composite
def box_lists(draw, min_size: int = 0, max_size: int = 12, positive: bool = False):
    n = draw(st.integers(min_size, max_size))
    out = []
    for _ in range(n):
        x1, y1 = draw(coord), draw(coord)
        lo = 0.5 if positive else 0.0
        w = draw(st.floats(min_value=lo, max_value=60, width=32))
        h = draw(st.floats(min_value=lo, max_value=60, width=32))
        out.append([x1, y1, x1 + w, y1 + h])
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


# ----------------------------------------------------------------------------- goldens


def test_area_and_iou_golden():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [10, 10, 20, 20], [0, 0, 10, 10], [2, 2, 4, 4]], np.float32)
    np.testing.assert_allclose(box_area(b), [100, 100, 100, 4])
    # 25 / (100 + 100 - 25); touching boxes share no area; identical = 1; nested 4/100.
    np.testing.assert_allclose(iou_matrix(a, b), [[25 / 175, 0.0, 1.0, 0.04]])
    np.testing.assert_allclose(ioa(b, a), [[0.25], [0.0], [1.0], [1.0]])
    np.testing.assert_allclose(ios(a, b), [[0.25, 0.0, 1.0, 1.0]])


def test_degenerate_and_empty():
    z = np.zeros((0, 4), np.float32)
    assert iou_matrix(z, z).shape == (0, 0)
    assert iou_matrix(z, np.ones((3, 4))).shape == (0, 3)
    point = np.array([[3, 3, 3, 3]], np.float32)
    assert iou_matrix(point, point)[0, 0] == 0.0
    assert box_area(np.array([[5, 5, 1, 1]]))[0] == 0.0
    assert nms(z, np.zeros(0), 0.5).shape == (0,)
    assert batched_nms(z, np.zeros(0), np.zeros(0), 0.5).shape == (0,)


def test_nms_golden():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9], [21, 20, 31, 30]],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.6])
    # 3 (0.95) suppresses 0 (IoU 0.9) and 1; 2 suppresses 4 (IoU 90/110).
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    # Suppression needs IoU strictly above the threshold: IoU exactly 0.5 (50 / 100) survives 0.5.
    pair = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)
    assert nms(pair, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(pair, np.array([0.9, 0.8]), 0.49).tolist() == [0]
    # With a threshold above every IoU nothing is suppressed.
    assert sorted(nms(boxes, scores, 0.99).tolist()) == [0, 1, 2, 3, 4]
    classes = np.array([0, 1, 0, 0, 0])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [3, 1, 2]
    det = Detections(boxes, scores, classes)
    out = nms_detections(det, 0.5)
    np.testing.assert_allclose(out.scores, [0.95, 0.8, 0.7], rtol=1e-6)
    assert len(nms_detections(det, 0.5, class_aware=False)) == 2


def test_clip_scale_convert():
    b = np.array([[-5, 2, 120, 50]], np.float32)
    np.testing.assert_array_equal(clip_boxes(b, 100, 40), [[0, 2, 100, 40]])
    np.testing.assert_array_equal(scale_boxes(b, 2.0, 0.5), [[-10, 1, 240, 25]])
    np.testing.assert_array_equal(xyxy_to_xywh(b), [[-5, 2, 125, 48]])
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(b)), b)


def test_map_from_block_golden():
    # Block (100, 50)-(300, 150) (200 x 100) resized to 640 x 320: scale 0.3125 in x and y.
    boxes = np.array([[0, 0, 640, 320], [64, 32, 128, 64]], np.float32)
    out = map_boxes_from_block(boxes, (100, 50, 300, 150), (640, 320))
    np.testing.assert_allclose(out, [[100, 50, 300, 150], [120, 60, 140, 70]])
    with pytest.raises(ValueError):
        map_boxes_from_block(boxes, (10, 10, 10, 20), (64, 64))


def test_validate_boxes_names_source():
    ok = validate_boxes(np.array([[0, 0, 10, 10]]), 10, 10, "det.json")
    assert ok.dtype == np.float32
    with pytest.raises(InputError, match=r"det\.json: box 1 .*negative size"):
        validate_boxes(np.array([[0, 0, 1, 1], [5, 5, 4, 6]]), 10, 10, "det.json")
    with pytest.raises(InputError, match="frame.jpg: box 0 .*NaN"):
        validate_boxes(np.array([[0, np.nan, 1, 1]]), 10, 10, "frame.jpg")
    with pytest.raises(InputError, match="outside the 10x10 image"):
        validate_boxes(np.array([[0, 0, 11, 5]]), 10, 10, "x")
    validate_boxes(np.array([[0, 0, 11, 5]]), 10, 10, "x", tolerance_px=1.5)
    with pytest.raises(InputError, match="shape"):
        validate_boxes(np.zeros((2, 3)), 10, 10, "x")


# ----------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(box_lists(), box_lists())
def test_iou_matches_bruteforce(a, b):
    got = iou_matrix(a, b)
    assert got.shape == (len(a), len(b))
    for i in range(len(a)):
        for j in range(len(b)):
            assert got[i, j] == pytest.approx(
                float(ref_iou(a[i].tolist(), b[j].tolist())), abs=1e-9
            )


@settings(max_examples=60, deadline=None)
@given(box_lists(min_size=1, positive=True), box_lists(min_size=1))
def test_iou_properties(a, b):
    m = iou_matrix(a, b)
    assert np.all((m >= 0) & (m <= 1))
    np.testing.assert_allclose(m, iou_matrix(b, a).T)
    np.testing.assert_allclose(np.diag(iou_matrix(a, a)), 1.0)
    # IoU never exceeds intersection over the smaller box, which never exceeds 1.
    assert np.all(m <= ios(a, b) + 1e-12)


@settings(max_examples=80, deadline=None)
@given(
    box_lists(max_size=14),
    st.data(),
    st.sampled_from([0.0, 0.1, 0.3, 0.45, 0.5, 0.7, 0.9]),
)
def test_nms_equals_bruteforce(boxes, data, thr):
    n = len(boxes)
    scores = np.asarray(
        data.draw(st.lists(st.sampled_from([0.1, 0.2, 0.5, 0.9]), min_size=n, max_size=n)),
        dtype=np.float64,
    )
    blist = boxes.tolist()
    # Exact ties with the threshold depend on float rounding; keep away from them.
    for i in range(n):
        for j in range(i + 1, n):
            assume(abs(float(ref_iou(blist[i], blist[j])) - thr) > 1e-9)
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == ref_greedy_nms(blist, scores.tolist(), thr)
    m = iou_matrix(boxes[keep], boxes[keep])
    np.fill_diagonal(m, 0.0)
    assert np.all(m <= thr)


@settings(max_examples=60, deadline=None)
@given(box_lists(max_size=14), st.data(), st.sampled_from([0.2, 0.5, 0.7]))
def test_batched_nms_per_class(boxes, data, thr):
    n = len(boxes)
    scores = np.asarray(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    classes = np.asarray(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int64)
    blist = boxes.tolist()
    for i in range(n):
        for j in range(i + 1, n):
            assume(abs(float(ref_iou(blist[i], blist[j])) - thr) > 1e-9)
    keep = batched_nms(boxes, scores, classes, thr)
    expected = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        sub = ref_greedy_nms([blist[i] for i in idx], scores[idx].tolist(), thr)
        expected += [int(idx[k]) for k in sub]
    assert sorted(keep.tolist()) == sorted(expected)
    # No pair of kept boxes of the same class overlaps more than the threshold.
    m = iou_matrix(boxes[keep], boxes[keep])
    same = classes[keep][:, None] == classes[keep][None, :]
    np.fill_diagonal(same, False)
    assert np.all(m[same] <= thr)
    # Kept boxes come out by decreasing score.
    assert np.all(np.diff(scores[keep]) <= 0)


@settings(max_examples=60, deadline=None)
@given(
    box_lists(min_size=1),
    st.tuples(st.floats(0, 3000), st.floats(0, 2000), st.floats(1, 2000), st.floats(1, 2000)),
    st.tuples(st.integers(32, 1280), st.integers(32, 1280)),
)
def test_block_mapping_roundtrip(boxes, block, resized):
    x, y, w, h = block
    bx = (x, y, x + w, y + h)
    there = map_boxes_from_block(boxes, bx, resized)
    back = map_boxes_to_block(there, bx, resized)
    # Frame coordinates are float32: their rounding is magnified by resized / block size.
    amplification = max(resized[0] / w, resized[1] / h)
    atol = 4 * np.finfo(np.float32).eps * (5000 + 100) * amplification + 1e-4
    np.testing.assert_allclose(back, boxes, rtol=0, atol=atol)
    # Mapping is affine with positive scale: order of coordinates is kept.
    assert np.all(there[:, 2] >= there[:, 0]) and np.all(there[:, 3] >= there[:, 1])
