"""Streamer Kalman forecaster: hand-computed filter steps, association, area filter, errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.streaming.forecast import (
    KalmanConfig,
    KalmanForecaster,
    greedy_associate,
    ltwh_to_xyxy,
    xyxy_to_ltwh,
)
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections


def _dets(ltwh, classes=None, scores=None) -> Detections:
    b = ltwh_to_xyxy(np.asarray(ltwh, float))
    n = len(b)
    return Detections(
        b,
        np.full(n, 0.9) if scores is None else scores,
        np.zeros(n, np.int64) if classes is None else classes,
    )


def test_one_track_two_updates_golden():
    # Frame 0: z0 = [l, t, w, h] = [100, 50, 40, 80]; x0 = [z0, 0, 0, 0, 0], P0 = 100 I.
    # Frame 2 (dt = 2): z1 = [110, 54, 40, 80]. IoU of the xyxy boxes [100, 50, 140, 130] and
    # [110, 54, 150, 134]: intersection 30 * 76 = 2280, union 3200 + 3200 - 2280 = 4120 -> 0.55,
    # so they associate.
    # Each coordinate c has a 2x2 block [position, velocity], the blocks are independent:
    #   predict: F = [[1, 2], [0, 1]], F (100 I) F^T = 100 [[5, 2], [2, 1]], Q = 2^2 I = 4 I
    #            -> P- = [[504, 200], [200, 104]]; x- = [z0_c, 0]
    #   update:  S = 504 + 10 = 514, K = [504, 200] / 514
    #            position = z0_c + 504/514 (z1_c - z0_c), velocity = 200/514 (z1_c - z0_c)
    #            P+ = P- - K [504, 200] = [[504 - 504^2/514, 200 - 504*200/514],
    #                                      [.., 104 - 200^2/514]]
    #               = [[5040, 2000], [2000, 13456]] / 514
    #   l: innovation 10 -> l = 100 + 5040/514, vl = 2000/514
    #   t: innovation 4  -> t = 50 + 2016/514,  vt = 800/514
    #   w, h: innovation 0 -> unchanged, zero velocity.
    f = KalmanForecaster()
    f.update(_dets([[100, 50, 40, 80]]), 0)
    f.update(_dets([[110, 54, 40, 80]]), 2)
    want_x = [100 + 5040 / 514, 50 + 2016 / 514, 40, 80, 2000 / 514, 800 / 514, 0, 0]
    np.testing.assert_allclose(f.x[0], want_x, rtol=1e-12)
    want_p = np.zeros((8, 8))
    for c in range(4):
        want_p[c, c] = 5040 / 514
        want_p[c, c + 4] = want_p[c + 4, c] = 2000 / 514
        want_p[c + 4, c + 4] = 13456 / 514
    np.testing.assert_allclose(f.P[0], want_p, rtol=1e-12, atol=1e-12)
    # Forecast to frame 5 (3 frames on): l = 100 + (5040 + 3 * 2000)/514 = 100 + 11040/514,
    # t = 50 + (2016 + 3 * 800)/514 = 50 + 4416/514, w = 40, h = 80.
    out = f.forecast(5)
    left, top = 100 + 11040 / 514, 50 + 4416 / 514
    np.testing.assert_allclose(out.boxes[0], [left, top, left + 40, top + 80], rtol=1e-6)
    assert out.scores[0] == pytest.approx(0.9) and out.classes[0] == 0


def test_predict_golden():
    # P0 = 100 I, dt = 3: F P0 F^T = 100 [[1 + 9, 3], [3, 1]] per coordinate, + Q = 9 I
    # -> [[1009, 300], [300, 109]].
    f = KalmanForecaster()
    f.update(_dets([[0, 0, 20, 20]]), 4)
    _, P = f.predict(3)
    assert P[0, 0, 0] == pytest.approx(1009) and P[0, 0, 4] == pytest.approx(300)
    assert P[0, 4, 4] == pytest.approx(109) and P[0, 0, 1] == 0


def test_batched_tracks_equal_single_tracks():
    # Three far-apart objects filtered together give the same states as three separate filters.
    rng = np.random.default_rng(0)
    starts = np.array([[10, 10, 30, 40], [300, 200, 50, 50], [600, 100, 20, 60]], float)
    steps = [(0, 0), (2, 3), (3, -2), (5, 1)]
    joint = KalmanForecaster()
    single = [KalmanForecaster() for _ in range(3)]
    for k, (frame, _) in enumerate(steps):
        z = starts + np.array([steps[k][1], 0, 0, 0]) * k + rng.normal(0, 0.5, starts.shape)
        joint.update(_dets(z), frame)
        for j in range(3):
            single[j].update(_dets(z[j : j + 1]), frame)
    for j in range(3):
        np.testing.assert_allclose(joint.x[j], single[j].x[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(joint.P[j], single[j].P[0], rtol=1e-10, atol=1e-10)


def test_unmatched_tracks_end_and_new_ones_start():
    f = KalmanForecaster()
    f.update(_dets([[0, 0, 20, 20], [100, 100, 20, 20]]), 0)
    # Second result: the first object again (moved 2 px) and a new one far away; the second
    # track has no match and ends, the new box starts at rest with P0.
    f.update(_dets([[2, 0, 20, 20], [400, 400, 30, 30]]), 1)
    assert len(f) == 2
    assert f.x[0, 4] > 0  # moving right
    np.testing.assert_array_equal(f.x[1], [400, 400, 30, 30, 0, 0, 0, 0])
    np.testing.assert_array_equal(f.P[1], 100 * np.eye(8))


def test_class_mismatch_blocks_association():
    f = KalmanForecaster()
    f.update(_dets([[0, 0, 20, 20]], classes=np.array([1])), 0)
    f.update(_dets([[2, 0, 20, 20]], classes=np.array([2])), 1)
    np.testing.assert_array_equal(f.x[0, 4:], 0)  # a fresh track, not a continued one


def test_small_forecasts_are_dropped():
    # Areas 8 * 9 = 72 < 75 (dropped) and 9 * 9 = 81 (kept).
    f = KalmanForecaster()
    f.update(_dets([[0, 0, 8, 9], [50, 50, 9, 9]]), 0)
    out = f.forecast(0)
    assert len(out) == 1
    np.testing.assert_allclose(out.boxes[0], [50, 50, 59, 59])
    # A box shrinking by 4 px per frame in width: w = 20 - 4 dt becomes <= 0 and is dropped.
    f2 = KalmanForecaster(KalmanConfig(min_area_px2=0))
    f2.x = np.array([[0, 0, 20, 20, 0, 0, -4, 0]], float)
    f2.P = np.eye(8)[None] * 100
    f2.scores, f2.classes, f2.last_frame = np.ones(1, np.float32), np.zeros(1, np.int64), 0
    assert len(f2.forecast(4)) == 1 and len(f2.forecast(5)) == 0


def test_greedy_associate_takes_highest_iou_first():
    # All boxes 10 x 10 (area 100), shifted along x; IoU of a shift d is (10 - d) / (10 + d).
    # prev 0 = [0, 10], prev 1 = [4, 14]; new 0 = [1, 11], new 1 = [5, 15], new 2 = [30, 40].
    # IoU: (p0, n0) d=1 -> 9/11 = 0.818; (p0, n1) d=5 -> 5/15 = 0.333; (p1, n0) d=3 -> 7/13 =
    # 0.538; (p1, n1) d=1 -> 0.818; n2 overlaps nothing. Greedy takes (p0, n0), then (p1, n1)
    # (a tie at 0.818: lower prev index first); the rest is used up.
    prev = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], float)
    new = np.array([[1, 0, 11, 10], [5, 0, 15, 10], [30, 0, 40, 10]], float)
    pi, ni = greedy_associate(prev, np.zeros(2), new, np.zeros(3), 0.3)
    assert list(zip(pi.tolist(), ni.tolist())) == [(0, 0), (1, 1)]
    # With new 0 removed, prev 0 still pairs with new 1 (IoU 0.333 >= 0.3) only if prev 1 does
    # not take it first: prev 1 has IoU 0.818 with it, so prev 0 stays unmatched.
    pi, ni = greedy_associate(prev, np.zeros(2), new[1:], np.zeros(2), 0.3)
    assert list(zip(pi.tolist(), ni.tolist())) == [(1, 0)]
    # Threshold above 0.818 and a class mismatch both leave nothing.
    assert len(greedy_associate(prev, np.zeros(2), new, np.zeros(3), 0.85)[0]) == 0
    assert len(greedy_associate(prev, np.zeros(2), new, np.ones(3), 0.3)[0]) == 0


def test_box_conversions_round_trip():
    b = np.array([[1.0, 2.0, 11.0, 22.0]])
    np.testing.assert_array_equal(xyxy_to_ltwh(b), [[1, 2, 10, 20]])
    np.testing.assert_array_equal(ltwh_to_xyxy(xyxy_to_ltwh(b)), b)


def test_errors():
    f = KalmanForecaster()
    assert len(f.forecast(3)) == 0  # nothing tracked yet
    f.update(_dets([[0, 0, 20, 20]]), 5)
    with pytest.raises(InputError, match="frame_index 5 is not after the last update"):
        f.update(_dets([[0, 0, 20, 20]]), 5)
    with pytest.raises(InputError, match="frame_index 4 is before the last update"):
        f.forecast(4)
    with pytest.raises(InputError, match="measurement_var_px2"):
        from edgerl.utils.config import config_from_dict

        config_from_dict(KalmanConfig, {"measurement_var_px2": -1})
