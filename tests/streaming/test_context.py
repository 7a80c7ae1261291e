"""Context features, AdaScale and switchability labels, and the tiny metric models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgerl.streaming.context import (
    CONTEXT_NAMES,
    SCENE_FEATURE_NAMES,
    ScaleRegressor,
    SwitchabilityClassifier,
    adascale_labels,
    context_dim,
    context_vector,
    image_statistics,
    mean_iou,
    per_object_losses,
    scene_features,
    switchability_labels,
    switchability_sd,
)
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections

# Image 100 (h) x 200 (w), three classes.
DETS = Detections(
    boxes=np.array([[10, 20, 30, 40], [50, 10, 100, 60], [5, 8, 125, 98]], np.float32),
    scores=np.array([0.9, 0.5, 0.7], np.float32),
    classes=np.array([0, 2, 0]),
)


def test_context_vector_golden() -> None:
    z = context_vector(DETS, (100, 200), 60, 3, predicted_scale=48, switchability=(0.2, 0.5, 0.3))
    names = CONTEXT_NAMES(3)
    assert len(z) == len(names) == context_dim(3) == 17
    got = dict(zip(names, z.tolist()))
    expected = {
        "scale_current": 0.6,  # 60 px / shorter side 100 px
        "scale_predicted": 0.48,  # 48 / 100
        "count_class_0": 2.0,
        "count_class_1": 0.0,
        "count_class_2": 1.0,
        "conf_mean": 0.7,  # (0.9 + 0.5 + 0.7) / 3
        "conf_std": math.sqrt(0.08 / 3),  # deviations 0.2, -0.2, 0: sqrt(0.08 / 3) = 0.16330
        "count_small": 1.0,  # 20 x 20 = 400 < 1024
        "count_medium": 1.0,  # 50 x 50 = 2500 in [1024, 9216)
        "count_large": 1.0,  # 120 x 90 = 10800 >= 9216
        "extent_x_min": 0.025,  # min x1 = 5, / 200
        "extent_x_max": 0.625,  # max x2 = 125, / 200
        "extent_y_min": 0.08,  # min y1 = 8, / 100
        "extent_y_max": 0.98,  # max y2 = 98, / 100
        "switch_low": 0.2,
        "switch_medium": 0.5,
        "switch_high": 0.3,
    }
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    assert z.dtype == np.float32


def test_paper_context_sizes() -> None:
    # Argoverse-HD (8 classes) -> 22 slots, ImageNet-VID (30 classes) -> 44 (paper 004, sec. 5)
    assert context_dim(8) == len(CONTEXT_NAMES(8)) == 22
    assert context_dim(30) == 44
    assert len(set(CONTEXT_NAMES(30))) == 44
    assert len(SCENE_FEATURE_NAMES(8)) == 17


def test_empty_detections_and_absent_metrics() -> None:
    z = context_vector(Detections.empty(), (1200, 1920), 600, 8)
    assert z[0] == pytest.approx(0.5)
    assert np.all(z[1:] == 0.0)


def test_size_bins_at_the_coco_limits() -> None:
    boxes = np.array([[0, 0, 31.9, 32], [0, 0, 32, 32], [0, 0, 96, 95.9], [0, 0, 96, 96]])
    d = Detections(boxes, np.full(4, 0.5), np.zeros(4, dtype=np.int64))
    f = dict(zip(SCENE_FEATURE_NAMES(1), scene_features(d, (200, 200), 1).tolist()))
    # areas 1020.8 (small), 1024 (medium), 9206.4 (medium), 9216 (large)
    assert (f["count_small"], f["count_medium"], f["count_large"]) == (1.0, 2.0, 1.0)


def test_context_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="class id 2 is outside"):
        context_vector(DETS, (100, 200), 60, 2)
    with pytest.raises(InputError, match="switchability"):
        context_vector(DETS, (100, 200), 60, 3, switchability=(0.5, 0.5))
    with pytest.raises(InputError, match="image_hw"):
        context_vector(DETS, (0, 200), 60, 3)
    with pytest.raises(InputError, match="current_scale"):
        context_vector(DETS, (100, 200), 0, 3)


def test_per_object_losses_and_miou() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32)
    gt_cls = np.array([0, 1, 0])
    d = Detections(
        np.array([[0, 0, 10, 5], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
        np.ones(3, np.float32),
        np.array([0, 0, 0]),
    )
    # object 0: IoU 50 / 100 = 0.5; object 1: only a detection of another class -> 1;
    # object 2: exact -> 0
    loss = per_object_losses(gt, gt_cls, d)
    assert loss.tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert mean_iou(gt, gt_cls, d) == pytest.approx(0.5)  # (0.5 + 0 + 1) / 3
    assert per_object_losses(gt, gt_cls, Detections.empty()).tolist() == [1.0, 1.0, 1.0]
    assert mean_iou(np.zeros((0, 4)), np.zeros(0), d) == 1.0


def test_adascale_labels_hand_table() -> None:
    table = np.array([
        [0.10, 0.20, 0.30, 1.00],  # 600 px: 3 foreground objects
        [0.15, 0.15, 1.00, 1.00],  # 480 px: 2
        [0.05, 0.40, 0.50, 0.60],  # 360 px: 4
    ])  # fmt: skip
    # n = min(3, 2, 4) = 2; sums of the 2 smallest: 0.30, 0.30, 0.45 -> 600 and 480 tie
    assert adascale_labels(table, scales_px=(600, 480, 360)) == 1  # tie -> smaller scale
    assert adascale_labels(table) == 0  # no scales given: tie -> lower index
    # a fourth scale that finds nothing: n = max(1, 0) = 1; smallest losses 0.10, 0.15,
    # 0.05, 1.00 -> 360 px
    with_miss = np.vstack([table, np.ones(4)])
    assert adascale_labels(with_miss, scales_px=(600, 480, 360, 240)) == 2
    # no objects: the smallest scale
    assert adascale_labels(np.zeros((3, 0)), scales_px=(600, 480, 360)) == 2
    with pytest.raises(InputError, match="scales_px has 2 values for 3 scales"):
        adascale_labels(table, scales_px=(600, 480))


def test_switchability_labels_golden() -> None:
    # per image: SD of the models' mIoU (population SD): (0.5, 0.7) -> 0.1, (0.6, 0.6) -> 0
    assert switchability_sd(np.array([[0.5, 0.7], [0.6, 0.6]])).tolist() == pytest.approx(
        [0.1, 0.0]
    )
    # SD = 0..4: mu = 2, sigma = sqrt(2) = 1.4142; alpha = 0.5 -> medium band (1.2929, 2.7071]
    labels, mu, sigma = switchability_labels(np.arange(5.0))
    assert labels.tolist() == [0, 0, 1, 2, 2]
    assert (mu, sigma) == pytest.approx((2.0, math.sqrt(2.0)))
    # the band edges belong to the lower class: low includes mu - alpha*sigma
    labels, _, _ = switchability_labels(np.array([1.0, 3.0]), alpha=1.0, mu=2.0, sigma=1.0)
    assert labels.tolist() == [0, 1]


def _toy_features(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 5))
    y = np.where(x[:, 0] > 0.5, 0, np.where(x[:, 0] < -0.5, 2, 1))
    return x, y


def test_scale_regressor_learns_a_separable_rule() -> None:
    rng = np.random.default_rng(0)
    x, y = _toy_features(rng, 400)
    reg = ScaleRegressor((600, 480, 360), seed=0).fit(x, y)
    xt, yt = _toy_features(rng, 200)
    pred = reg.predict(xt)
    assert pred.min() >= 360 and pred.max() <= 600
    assert np.mean(reg.predict_index(xt) == yt) > 0.85
    # the NumPy forward pass equals sklearn's own predict
    ref = 360 + np.clip(reg.model.predict(xt), 0.0, 1.0) * 240
    assert np.allclose(pred, ref, rtol=0, atol=1e-9)
    with pytest.raises(InputError, match="call fit first"):
        ScaleRegressor((600, 480)).predict(xt)
    with pytest.raises(InputError, match="labels must index"):
        ScaleRegressor((600, 480)).fit(x, y)


def test_switchability_classifier_probabilities() -> None:
    rng = np.random.default_rng(1)
    x, y = _toy_features(rng, 400)
    clf = SwitchabilityClassifier().fit(x, y)
    xt, yt = _toy_features(rng, 200)
    p = clf.predict_proba(xt)
    assert p.shape == (200, 3)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.mean(clf.predict(xt) == yt) > 0.85
    assert np.allclose(p, clf.model.predict_proba(xt), rtol=0, atol=1e-12)  # sklearn reference
    # a class absent from training keeps a zero column; one class only -> certainty
    two = SwitchabilityClassifier().fit(x[y != 1], y[y != 1])
    p2 = two.predict_proba(xt)
    assert np.all(p2[:, 1] == 0.0)
    assert np.allclose(p2[:, [0, 2]], two.model.predict_proba(xt), rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="call fit first"):
        SwitchabilityClassifier().predict_proba(xt)
    one = SwitchabilityClassifier().fit(x[:5], np.full(5, 2))
    assert one.predict_proba(xt[:2]).tolist() == [[0.0, 0.0, 1.0]] * 2


def test_image_statistics() -> None:
    img = np.zeros((16, 16), np.uint8)
    img[:, 8:] = 255
    # stride 8 keeps columns 0 and 8 of rows 0 and 8: gray (0, 255) per row
    stats = image_statistics(img, stride=8)
    # mean 0.5, std 0.5, |dx| = 255 (one pair per row), |dy| = 0 -> (1 + 0) / 2 = 0.5
    assert stats.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_dynamics_features_hand_computed():
    from edgerl.streaming.context import DYNAMICS_NAMES, dynamics_features

    hw = (100, 200)
    # last output: two confident boxes (heights 20 and 40) and one below the score limit
    last = Detections(
        np.array([[10, 10, 20, 30], [100, 40, 120, 80], [0, 0, 5, 5]], np.float32),
        np.array([0.9, 0.5, 0.1], np.float32),
        np.zeros(3, np.int64),
    )
    # previous output, 2 frames earlier: the first box 4 px to the left, the second 10 px up,
    # plus a far-away confident box and a low-score box right on top of the first one
    prev = Detections(
        np.array([[6, 10, 16, 30], [100, 30, 120, 70], [180, 0, 190, 10], [10, 10, 20, 30]], np.float32),
        np.array([0.8, 0.6, 0.7, 0.2], np.float32),
        np.zeros(4, np.int64),
    )
    z = dynamics_features(last, prev, 2, hw, fps=30.0, min_score=0.3, count_scale=100.0)
    assert len(z) == len(DYNAMICS_NAMES) == 3
    # count: 2 / 100; median height (20, 40) = 30 over 100 px
    assert z[0] == pytest.approx(0.02) and z[1] == pytest.approx(0.30)
    # displacement / height: 4 / 20 = 0.2 and 10 / 40 = 0.25; median 0.225 heights in 2 frames
    # -> 0.225 * 30 / 2 = 3.375 heights per second
    assert z[2] == pytest.approx(3.375, rel=1e-6)
    # clipped at max_speed; no previous output or frames_apart 0: speed 0, other slots kept
    assert dynamics_features(last, prev, 2, hw, max_speed=1.0)[2] == pytest.approx(1.0)
    assert dynamics_features(last, None, 2, hw)[2] == 0.0
    assert dynamics_features(last, prev, 0, hw)[2] == 0.0
    np.testing.assert_allclose(dynamics_features(last, None, 2, hw)[:2], z[:2])
    # a neighbour farther than 2 heights is another object: no pair, speed 0
    far = Detections(np.array([[150, 60, 160, 80]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int64))
    one = Detections(np.array([[10, 10, 20, 30]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int64))
    assert dynamics_features(one, far, 1, hw)[2] == 0.0
    # nothing confident: all zero
    np.testing.assert_array_equal(dynamics_features(Detections.empty(), prev, 2, hw), np.zeros(3))


def test_dynamics_speed_matches_a_brute_force_pairing():
    from edgerl.streaming.context import dynamics_features

    rng = np.random.default_rng(3)
    for _ in range(20):
        n, m = rng.integers(1, 8, size=2)
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(5, 40, (n, 2))
        cur = np.concatenate([xy, xy + wh], 1)
        xy2 = rng.uniform(0, 150, (m, 2))
        wh2 = rng.uniform(5, 40, (m, 2))
        prv = np.concatenate([xy2, xy2 + wh2], 1)
        a = Detections(cur.astype(np.float32), np.ones(n, np.float32), np.zeros(n, np.int64))
        b = Detections(prv.astype(np.float32), np.ones(m, np.float32), np.zeros(m, np.int64))
        ratios = []
        for box in a.boxes.astype(np.float64):
            c = (box[:2] + box[2:]) / 2
            d = min(math.dist(c, (q[:2] + q[2:]) / 2) for q in b.boxes.astype(np.float64))
            if d / (box[3] - box[1]) < 2.0:
                ratios.append(d / (box[3] - box[1]))
        want = min(float(np.median(ratios)) * 30.0 / 3.0, 5.0) if ratios else 0.0
        assert dynamics_features(a, b, 3, (200, 200))[2] == pytest.approx(want, rel=1e-5)
