"""COCO metrics: golden values computed by hand, ignore regions, results files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import (
    COCO_CATEGORY_IDS,
    GroundTruth,
    coco_results_json,
    evaluate_detections,
)

# The hand-made case. Two ground-truth boxes of class 0, both 100 x 100 (area 10^4 > 96^2, so
# "large"). Detection A (score 0.9) equals GT1 (IoU 1). Detection B (score 0.8) is GT2 cut to
# 62 rows: area 6200, all inside GT2, so IoU = 6200 / 10000 = 0.62.
#
# COCO matches at IoU >= t for t in {0.50, 0.55, ..., 0.95}:
# * t in {0.50, 0.55, 0.60} (3 thresholds): A and B are both TPs; precision is 1 at every recall
#   up to 1, so all 101 recall points 0, 0.01, ..., 1 read precision 1 -> AP_t = 1.
# * t in {0.65, ..., 0.95} (7 thresholds): A is a TP (recall 0.5, precision 1), B an FP (recall
#   0.5, precision 0.5). The interpolated curve (running max from the right) is 1 up to recall
#   0.5 and 0 beyond, so the 51 points 0.00..0.50 read 1 and the 50 points above read 0:
#   AP_t = 51/101.
# AP50 = 1, AP75 = 51/101, AP[.5:.95] = (3 * 1 + 7 * 51/101) / 10 = 660/1010,
# AR@100 = (3 * 1 + 7 * 0.5) / 10 = 0.65.
GT_BOXES = [[0, 0, 100, 100], [100, 100, 200, 200]]
DET_A = [0, 0, 100, 100]
DET_B = [100, 100, 200, 162]
# A false positive far from both GT boxes, 50 x 50 (area 2500: "medium").
DET_FP = [300, 300, 350, 350]


def _gt(**kw) -> GroundTruth:
    return GroundTruth(np.array(GT_BOXES, np.float32), np.array([0, 0]), 400, 400, **kw)


def _dets(boxes, scores, classes=None) -> Detections:
    classes = [0] * len(boxes) if classes is None else classes
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes))


def test_golden_two_boxes():
    m = evaluate_detections([_gt()], [_dets([DET_A, DET_B], [0.9, 0.8])])
    assert m["map50"] == pytest.approx(1.0)
    assert m["map75"] == pytest.approx(51 / 101)
    assert m["map50_95"] == pytest.approx(660 / 1010)
    assert m["ar_100"] == pytest.approx(0.65)
    # ar_1: the one allowed detection per image is A: recall 0.5 at every threshold.
    assert m["ar_1"] == pytest.approx(0.5)
    assert m["map_large"] == pytest.approx(660 / 1010)
    # No small or medium ground truth: COCO's -1 becomes NaN.
    assert math.isnan(m["map_small"]) and math.isnan(m["map_medium"]) and math.isnan(m["ar_small"])


def test_higher_scoring_false_positive_lowers_ap():
    # The FP (0.95) now ranks first. Where A and B both match (3 thresholds) the ranked list is
    # FP, TP, TP: (recall, precision) = (0, 0), (0.5, 0.5), (1, 2/3); the running max from the
    # right makes precision 2/3 at every recall point, so AP_t = 2/3.
    # Elsewhere (7 thresholds) it is FP, TP, FP: (0, 0), (0.5, 0.5), (0.5, 1/3) -> interpolated
    # 0.5 on the 51 points up to recall 0.5: AP_t = 0.5 * 51/101.
    m = evaluate_detections([_gt()], [_dets([DET_A, DET_B, DET_FP], [0.9, 0.8, 0.95])])
    assert m["map50"] == pytest.approx(2 / 3)
    assert m["map75"] == pytest.approx(25.5 / 101)
    assert m["map50_95"] == pytest.approx((3 * 2 / 3 + 7 * 25.5 / 101) / 10)
    # The FP is medium-sized and unmatched, so COCO leaves it out of the "large" range.
    assert m["map_large"] == pytest.approx(660 / 1010)


def test_detection_inside_ignore_region_does_not_lower_ap():
    dets = _dets([DET_A, DET_B, DET_FP], [0.9, 0.8, 0.95])
    m = evaluate_detections([_gt(ignore=np.array([[290, 290, 400, 400]], np.float32))], [dets])
    assert m["map50"] == pytest.approx(1.0)
    assert m["map50_95"] == pytest.approx(660 / 1010)
    # A region that ignores another class only leaves the FP counted.
    m2 = evaluate_detections(
        [_gt(ignore=np.array([[290, 290, 400, 400]], np.float32), ignore_classes=np.array([3]))],
        [dets],
    )
    assert m2["map50"] == pytest.approx(2 / 3)
    # A region that covers only part of the FP: IoA = 0.4 < 0.5, so it stays an FP.
    m3 = evaluate_detections([_gt(ignore=np.array([[330, 300, 400, 400]], np.float32))], [dets])
    assert m3["map50"] == pytest.approx(2 / 3)


def test_class_map_and_other_classes():
    # Predictions use class 7 for what the ground truth calls 0; a class-3 detection is unmapped.
    dets = _dets([DET_A, DET_B, DET_FP], [0.9, 0.8, 0.95], classes=[7, 7, 3])
    m = evaluate_detections([_gt()], [dets], class_map={7: 0})
    assert m["map50_95"] == pytest.approx(660 / 1010)
    # Without the map, class 7 has no ground truth (NaN, left out) and class 0 no detections.
    m_raw = evaluate_detections([_gt()], [dets])
    assert m_raw["map50"] == pytest.approx(0.0)


def test_max_dets_caps_per_image():
    # With one detection allowed only A counts: recall 0.5 at precision 1 -> 51/101 everywhere.
    m = evaluate_detections([_gt()], [_dets([DET_A, DET_B], [0.9, 0.8])], max_dets=(1,))
    assert m["map50"] == pytest.approx(51 / 101)
    assert m["ar_1"] == pytest.approx(0.5)
    assert "ar_100" not in m


def test_several_images_and_empty_cases(capsys):
    empty_gt = GroundTruth(np.zeros((0, 4)), np.zeros(0), 50, 50)
    m = evaluate_detections(
        [_gt(), empty_gt, _gt()],
        [_dets([DET_A, DET_B], [0.9, 0.8]), Detections.empty(), _dets([DET_A, DET_B], [0.9, 0.8])],
    )
    assert m["map50_95"] == pytest.approx(660 / 1010)
    # A missed image halves recall: AP50 = 51/101 (the two found boxes rank first).
    m = evaluate_detections(
        [_gt(), _gt()], [_dets([DET_A, [100, 100, 200, 200]], [0.9, 0.8]), Detections.empty()]
    )
    assert m["map50"] == pytest.approx(51 / 101)
    none = evaluate_detections([empty_gt], [Detections.empty()])
    assert all(math.isnan(v) for v in none.values())
    assert capsys.readouterr().out == ""  # pycocotools' chatter is suppressed


def test_bad_input():
    with pytest.raises(InputError, match="2 ground-truth images but 1"):
        evaluate_detections([_gt(), _gt()], [Detections.empty()])
    with pytest.raises(InputError, match="x2 >= x1"):
        GroundTruth(np.array([[10, 0, 5, 5]]), np.array([0]), 20, 20)
    with pytest.raises(InputError, match="max_dets"):
        evaluate_detections([_gt()], [Detections.empty()], max_dets=(0,))


def test_ground_truth_from_coco():
    anns = [
        {"bbox": [10, 20, 30, 40], "category_id": 1, "iscrowd": 0},
        {"bbox": [0, 0, 5, 5], "category_id": 1, "iscrowd": 1},
        {"bbox": [1, 1, 2, 2], "category_id": 9},
    ]
    g = GroundTruth.from_coco(anns, 100, 80, category_to_class={1: 0})
    np.testing.assert_allclose(g.boxes, [[10, 20, 40, 60]])
    np.testing.assert_array_equal(g.classes, [0])
    np.testing.assert_allclose(g.ignore, [[0, 0, 5, 5]])
    np.testing.assert_array_equal(g.ignore_classes, [0])


def test_coco_results_json():
    d = _dets([[10, 20, 40, 60], [0, 0, 1, 2]], [0.5, 0.25], classes=[0, 79])
    res = coco_results_json([d, Detections.empty()], [42, 43], COCO_CATEGORY_IDS)
    assert res == [
        {"image_id": 42, "category_id": 1, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5},
        {"image_id": 42, "category_id": 90, "bbox": [0.0, 0.0, 1.0, 2.0], "score": 0.25},
    ]
    assert len(COCO_CATEGORY_IDS) == 80 and len(set(COCO_CATEGORY_IDS)) == 80
    # A mapping drops unmapped classes; file names are kept as given.
    res = coco_results_json([d], ["a.jpg"], {0: 1})
    assert [r["category_id"] for r in res] == [1] and res[0]["image_id"] == "a.jpg"
    with pytest.raises(InputError):
        coco_results_json([d], [1, 2])


def test_results_json_round_trips_through_pycocotools():
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets = _dets([DET_A, DET_B], [0.9, 0.8])
    res = coco_results_json([dets], [1], {0: 1})
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 400, "height": 400}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
             "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0}
            for i, b in enumerate(GT_BOXES)
        ],
    }  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(660 / 1010)
