"""Light tracker: velocity estimate, propagation, template shift, cost model, errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.streaming.tracker import LightTracker, LightTrackerConfig, profile_tracker_cost
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections


def _dets(boxes, classes=None) -> Detections:
    b = np.asarray(boxes, float).reshape(-1, 4)
    return Detections(b, np.full(len(b), 0.8), np.zeros(len(b)) if classes is None else classes)


def test_velocity_and_propagation_golden():
    # Frame 0: [0, 0, 10, 10]; frame 2: [4, 2, 14, 12]. Displacement per frame (2, 1, 2, 1);
    # with smoothing 0.5 and a previous velocity of 0: v = 0.5 * (2, 1, 2, 1) = (1, .5, 1, .5).
    # Tracking to frame 5 (3 frames on): [4 + 3, 2 + 1.5, 14 + 3, 12 + 1.5] = [7, 3.5, 17, 13.5].
    tr = LightTracker()
    tr.update(_dets([0, 0, 10, 10]), 0)
    tr.update(_dets([4, 2, 14, 12]), 2)
    np.testing.assert_allclose(tr.velocity, [[1, 0.5, 1, 0.5]])
    out = tr.track(5)
    np.testing.assert_allclose(out.boxes, [[7, 3.5, 17, 13.5]])
    assert out.scores[0] == pytest.approx(0.8)
    # Steps chain from where the previous one left the box: frame 6 adds one more velocity.
    np.testing.assert_allclose(tr.track(6).boxes, [[8, 4, 18, 14]])
    # Smoothing 1 keeps only the newest displacement.
    tr1 = LightTracker(LightTrackerConfig(velocity_smoothing=1.0))
    tr1.update(_dets([0, 0, 10, 10]), 0)
    tr1.update(_dets([4, 2, 14, 12]), 2)
    np.testing.assert_allclose(tr1.velocity, [[2, 1, 2, 1]])


def test_association_uses_the_moved_boxes():
    # A 10 px box moving 4 px per frame: after two detections (IoU 6/14 = 0.43) v = 4
    # (smoothing 1). The next detection, 3 frames later, is 12 px on at [16, 26]: it does not
    # overlap the last detected box [4, 14] (IoU 0) but equals the box moved by 3 v, so the track
    # continues and the velocity stays (16 - 4) / 3 = 4.
    tr = LightTracker(LightTrackerConfig(velocity_smoothing=1.0))
    tr.update(_dets([0, 0, 10, 10]), 0)
    tr.update(_dets([4, 0, 14, 10]), 1)
    tr.update(_dets([16, 0, 26, 10]), 4)
    np.testing.assert_allclose(tr.velocity, [[4, 0, 4, 0]])
    # A different class is a new track, at rest.
    tr.update(_dets([20, 0, 30, 10], classes=np.array([3])), 5)
    np.testing.assert_allclose(tr.velocity, [[0, 0, 0, 0]])


def _textured_frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Smooth random texture (sum of a few sinusoids) so that shifts are identifiable.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for _ in range(6):
        fy, fx, ph = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6.3)
        img += np.sin(fy * yy + fx * xx + ph)
    return ((img - img.min()) / np.ptp(img) * 255).astype(np.uint8)


def test_template_shift_recovers_a_known_motion():
    # The frame content moves by (+3, -2) px between the detector frame and the tracked frame.
    # With no velocity (one detection), only the template search can find the motion. The
    # scale equals the short side, so the tracker works at full resolution.
    rng = np.random.default_rng(1)
    big = _textured_frame(rng, 140, 180)
    f0 = big[10:130, 10:170]
    f1 = big[12:132, 7:167]  # content at (x, y) in f0 is at (x + 3, y - 2) in f1
    tr = LightTracker(LightTrackerConfig(scale=120, template_px=12, search_radius_px=4))
    tr.update(_dets([[40, 40, 70, 70], [90, 50, 120, 90]]), 0, image=f0)
    out = tr.track(1, image=f1)
    np.testing.assert_allclose(out.boxes, [[43, 38, 73, 68], [93, 48, 123, 88]])
    # Without an image the boxes stay put (zero velocity).
    tr2 = LightTracker(LightTrackerConfig(scale=120))
    tr2.update(_dets([[40, 40, 70, 70]]), 0, image=f0)
    np.testing.assert_allclose(tr2.track(1).boxes, [[40, 40, 70, 70]])


def test_template_shift_at_reduced_scale():
    # Scale 60 on a 120-row frame halves the resolution: a motion of (+4, +2) px is a (+2, +1)
    # shift at tracker scale and is mapped back to (+4, +2). RGB input is averaged to gray.
    rng = np.random.default_rng(2)
    big = _textured_frame(rng, 140, 180)
    f0 = np.repeat(big[10:130, 10:170, None], 3, axis=2)
    f1 = np.repeat(big[8:128, 6:166, None], 3, axis=2)
    tr = LightTracker(LightTrackerConfig(template_px=8, search_radius_px=3))
    tr.update(_dets([[60, 40, 100, 80]]), 0, image=f0, scale=60)
    np.testing.assert_allclose(tr.track(1, image=f1).boxes, [[64, 42, 104, 82]])


def test_cost_model_golden():
    # 480^2 * 16/9 = 409600 px = 0.4096 Mpx -> 1.5e-3 + 8e-3 * 0.4096 = 4.7768e-3 s.
    tr = LightTracker()
    assert tr.cost_s(480) == pytest.approx(4.7768e-3)
    assert tr.cost_s(720) > tr.cost_s(480)


def test_profile_tracker_cost_fits_the_model():
    cfg = profile_tracker_cost([90, 180], np.random.default_rng(0), n_tracks=5,
                               frame_hw=(180, 320), repeat=2)  # fmt: skip
    assert cfg.cost_base_s >= 0 and cfg.cost_per_mpx_s >= 0
    assert cfg.aspect == pytest.approx(320 / 180)
    assert 0 < LightTracker(cfg).cost_s(180) < 1.0
    with pytest.raises(InputError, match="two distinct scales"):
        profile_tracker_cost([90, 90], np.random.default_rng(0))


def test_errors_and_reset():
    tr = LightTracker()
    assert len(tr.track(3)) == 0  # nothing tracked yet
    tr.update(_dets([0, 0, 10, 10]), 4)
    with pytest.raises(InputError, match="frame_index 4 is not after the last detector update"):
        tr.update(_dets([0, 0, 10, 10]), 4)
    tr.track(6)
    with pytest.raises(InputError, match="frame_index 5 is before the current frame"):
        tr.track(5)
    with pytest.raises(InputError, match="image must be HxW"):
        tr.update(_dets([0, 0, 10, 10]), 7, image=np.zeros(5))
    tr.reset()
    assert tr.frame is None and len(tr.track(0)) == 0
