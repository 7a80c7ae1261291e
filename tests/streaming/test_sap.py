"""Streaming AP: zero-order hold, hand-computed sAP cases, bad input, fast COCO backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgerl.streaming.sap import StreamOutput, coco_ap, match_outputs, streaming_ap
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import GroundTruth, evaluate_detections

BOX = [100.0, 100.0, 200.0, 200.0]  # 100 x 100: area 10^4 > 96^2, a "large" object


def _gt(box=BOX) -> GroundTruth:
    return GroundTruth(np.array([box], np.float32), np.array([0]), 640, 480)


def _det(box=BOX, score=0.9) -> Detections:
    return Detections(np.array([box], np.float32), np.array([score]), np.array([0]))


def test_match_outputs_golden():
    # fps 10: frames shown at 0.0, 0.1, 0.2, 0.3 s. Frame 0 precedes every output (-1); frame 1
    # sees outputs 0..2 (0.05, 0.1, 0.1 <= 0.1) and takes the last, 2; frames 2 and 3 take 3.
    got = match_outputs([0.05, 0.1, 0.1, 0.2], 4, 10.0)
    assert got.tolist() == [-1, 2, 3, 3]
    assert got.dtype == np.int64


def test_match_outputs_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        times = np.sort(np.round(rng.uniform(0, 2, rng.integers(0, 30)), 2))
        fps = float(rng.choice([10.0, 30.0, 25.0]))
        n = int(rng.integers(0, 60))
        want = []
        for i in range(n):
            ok = [j for j, t in enumerate(times) if t <= i / fps]
            want.append(ok[-1] if ok else -1)
        assert match_outputs(times, n, fps).tolist() == want


def test_perfect_static_boxes_sap_one_and_lag():
    # One output, computed from frame 0 and delivered at t = 0, holds for all three frames of a
    # static object: every frame is a TP, so sAP = 1; lags are 0, 1, 2 frames -> mean 1.
    gts = [_gt()] * 3
    res = streaming_ap(gts, [StreamOutput(0.0, 0, _det())], fps=10.0)
    assert res["sap"] == pytest.approx(1.0)
    assert res["mean_frame_lag"] == pytest.approx(1.0)
    assert res["n_missed_frames"] == 0
    assert res["n_in_time"] == 1
    assert res["n_current_frames"] == 1
    assert res["n_frames"] == 3 and res["n_outputs"] == 1


def test_missing_first_frame_costs_computable_ap():
    # Static box, 3 frames at fps 10 (shown at 0.0, 0.1, 0.2 s); the only output arrives at
    # 0.05 s, so frame 0 has no prediction (a miss) and frames 1 and 2 are TPs. Recall reaches 2/3
    # at precision 1 at every IoU threshold; of the 101 recall points 0, 0.01, ..., 1 those
    # <= 0.666.. are 0 .. 0.66: 67 points. sAP = 67/101, a drop of 34/101 from the perfect 1.
    gts = [_gt()] * 3
    res = streaming_ap(gts, [StreamOutput(0.05, 0, _det())], fps=10.0)
    assert res["sap"] == pytest.approx(67 / 101)
    assert res["sap50"] == pytest.approx(67 / 101)
    assert res["n_missed_frames"] == 1
    # The two matched frames lag by 1 and 2 frames.
    assert res["mean_frame_lag"] == pytest.approx(1.5)


def test_late_output_on_moving_object():
    # The object moves +20 px in x per frame (100 x 100 box). Output k is computed from frame k
    # and delivered at (k + 1) / fps, so frame i >= 1 is scored against the box of frame i - 1:
    # shifted by 20 px, IoU = (100 - 20) * 100 / (100 * 100 + 20 * 100) = 80/120 = 2/3.
    # Frame 0 has no output (miss). 3 GT, 2 detections at IoU 2/3:
    # * thresholds 0.50, 0.55, 0.60, 0.65: 2 TPs, recall 2/3 at precision 1 -> AP = 67/101;
    # * thresholds 0.70 .. 0.95 (6): no TP -> AP = 0.
    # sAP = 4/10 * 67/101 = 268/1010; sAP50 = 67/101; sAP75 = 0; every matched lag is 1 frame.
    fps = 10.0

    def box(i: int) -> list[float]:
        return [100.0 + 20 * i, 100.0, 200.0 + 20 * i, 200.0]

    gts = [_gt(box(i)) for i in range(3)]
    outs = [StreamOutput((k + 1) / fps, k, _det(box(k), 0.9 - 0.1 * k)) for k in range(3)]
    res = streaming_ap(gts, outs, fps=fps)
    assert res["sap"] == pytest.approx(268 / 1010)
    assert res["sap50"] == pytest.approx(67 / 101)
    assert res["sap75"] == pytest.approx(0.0)
    assert res["sap_large"] == pytest.approx(268 / 1010)
    assert math.isnan(res["sap_small"])
    assert res["mean_frame_lag"] == pytest.approx(1.0)
    assert res["n_missed_frames"] == 1
    assert res["n_in_time"] == 2  # output 2 arrives at 0.3 s, after the last frame (0.2 s)
    assert res["n_current_frames"] == 0


def test_frame_indices_scores_a_segment():
    # Frames 1..2 of the moving-object stream above: both matched with IoU 2/3, no miss:
    # recall 1 at precision 1 for thresholds <= 0.65 -> sAP = 4/10.
    fps = 10.0

    def box(i: int) -> list[float]:
        return [100.0 + 20 * i, 100.0, 200.0 + 20 * i, 200.0]

    outs = [StreamOutput((k + 1) / fps, k, _det(box(k))) for k in range(3)]
    res = streaming_ap([_gt(box(1)), _gt(box(2))], outs, fps=fps, frame_indices=[1, 2])
    assert res["sap"] == pytest.approx(0.4)
    assert res["n_frames"] == 2 and res["n_missed_frames"] == 0


def test_backends_agree_on_stream():
    rng = np.random.default_rng(3)
    n, fps = 40, 30.0
    gts, outs = [], []
    for i in range(n):
        xy = rng.uniform(0, 500, (5, 2))
        b = np.concatenate([xy, xy + rng.uniform(10, 150, (5, 2))], 1)
        gts.append(GroundTruth(b, rng.integers(0, 2, 5), 640, 640))
        d = b + rng.normal(0, 6, b.shape)
        d = np.concatenate([np.minimum(d[:, :2], d[:, 2:]), np.maximum(d[:, :2], d[:, 2:])], 1)
        outs.append(
            StreamOutput(
                (i + 1.7) / fps, i, Detections(d, rng.uniform(0, 1, 5), rng.integers(0, 2, 5))
            )
        )
    a = streaming_ap(gts, outs, fps=fps)
    b = streaming_ap(gts, outs, fps=fps, backend="pycocotools")
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12, nan_ok=True), k


def _random_scene(rng: np.random.Generator, n_img: int, n_cls: int):
    gts, preds = [], []
    for _ in range(n_img):
        ng = int(rng.integers(0, 8))
        xy = rng.uniform(0, 300, (ng, 2))
        wh = rng.choice([5, 20, 40, 60, 100, 150], (ng, 2)) * rng.uniform(0.5, 1.5, (ng, 2))
        b = np.concatenate([xy, xy + wh], 1)
        c = rng.integers(0, n_cls, ng)
        ni = int(rng.integers(0, 3))
        ixy = rng.uniform(0, 300, (ni, 2))
        ib = np.concatenate([ixy, ixy + rng.uniform(20, 120, (ni, 2))], 1)
        ic = None if rng.random() < 0.5 else rng.integers(0, n_cls, ni)
        gts.append(GroundTruth(b, c, 400, 400, ib, ic))
        nd = int(rng.integers(0, 15))
        src = rng.integers(0, max(ng, 1), nd)
        db = b[src] + rng.normal(0, rng.choice([0, 2, 8]), (nd, 4)) if ng else np.zeros((nd, 4))
        fake = rng.random(nd) < 0.3
        fxy = rng.uniform(0, 300, (nd, 2))
        db[fake] = np.concatenate([fxy, fxy + rng.uniform(5, 100, (nd, 2))], 1)[fake]
        db = np.concatenate([np.minimum(db[:, :2], db[:, 2:]), np.maximum(db[:, :2], db[:, 2:])], 1)
        scores = np.round(rng.uniform(0, 1, nd), 1)  # coarse scores: many ties
        cls = np.where(rng.random(nd) < 0.8, c[src] if ng else 0, rng.integers(0, n_cls + 1, nd))
        preds.append(Detections(db, scores, cls))
    return gts, preds


@pytest.mark.parametrize("seed", range(25))
def test_coco_ap_equals_pycocotools(seed):
    # Random scenes with crowds (class-specific and all-class), duplicates (exact IoU ties),
    # tied scores, boxes in every area range, spurious classes, small detection caps.
    rng = np.random.default_rng(seed)
    gts, preds = _random_scene(rng, int(rng.integers(1, 12)), int(rng.integers(1, 4)))
    max_det = int(rng.choice([3, 100]))
    class_map = None if seed % 4 else {0: 1, 1: 0, 2: 0}
    want = evaluate_detections(gts, preds, class_map=class_map, max_dets=(1, max_det))
    got = coco_ap(gts, preds, class_map=class_map, max_det=max_det)
    for k, v in got.items():
        assert v == pytest.approx(want[k], abs=1e-12, nan_ok=True), k


def test_coco_ap_iou_exactly_on_threshold():
    # Detection [0, 0, 100, 50] vs GT [0, 0, 100, 100]: IoU = 5000/10000 = 0.5 exactly, a TP at
    # the 0.5 threshold only (COCO matches at IoU >= t): AP50 = 1, AP = 1/10.
    gt = GroundTruth(np.array([[0, 0, 100, 100]], np.float32), np.array([0]), 200, 200)
    det = Detections(np.array([[0, 0, 100, 50]], np.float32), np.array([0.5]), np.array([0]))
    got = coco_ap([gt], [det])
    assert got["map50"] == pytest.approx(1.0)
    assert got["map50_95"] == pytest.approx(0.1)
    want = evaluate_detections([gt], [det])
    assert got["map50_95"] == pytest.approx(want["map50_95"], abs=1e-15)


def test_coco_ap_equal_iou_tie_goes_to_the_later_ground_truth():
    # GT1 = [0, 0, 10, 10], GT2 = [10, 0, 20, 10]. Detection A (score 0.9) = [0, 0, 20, 10] has
    # IoU 100/200 = 0.5 with both; pycocotools keeps the later of equal IoUs, so A takes GT2 at
    # t = 0.5 and detection B (0.8) = GT1 exactly still finds GT1 free: AP_0.5 = 1.
    # t >= 0.55 (9 thresholds): A is an FP, B a TP; precision 0.5 at recall 0.5, the 51 recall
    # points 0 .. 0.5 read 0.5 -> AP_t = 25.5/101. AP = (1 + 9 * 25.5/101) / 10 = 330.5/1010.
    gt = GroundTruth(np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32), [0, 0], 50, 50)
    det = Detections(
        np.array([[0, 0, 20, 10], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.8]), [0, 0]
    )
    got = coco_ap([gt], [det])
    assert got["map50"] == pytest.approx(1.0)
    assert got["map50_95"] == pytest.approx(330.5 / 1010)
    assert got["map50_95"] == pytest.approx(evaluate_detections([gt], [det])["map50_95"])


def test_coco_ap_empty_inputs_nan():
    gt = GroundTruth(np.zeros((0, 4)), np.zeros(0), 10, 10)
    assert all(math.isnan(v) for v in coco_ap([gt], [Detections.empty()]).values())
    assert all(math.isnan(v) for v in coco_ap([], []).values())


def test_errors_name_the_input():
    gts = [_gt()] * 3
    with pytest.raises(InputError, match=r"output 1: time_s = 0.1 is earlier than output 0"):
        streaming_ap(gts, [StreamOutput(0.2, 0, _det()), StreamOutput(0.1, 0, _det())], fps=10)
    with pytest.raises(InputError, match=r"output 0: time_s = -0.1 is before the stream start"):
        streaming_ap(gts, [StreamOutput(-0.1, 0, _det())], fps=10)
    # Frame 2 is shown at 0.2 s; an output claiming it at 0.15 s looked into the future.
    with pytest.raises(InputError, match=r"output 0: frame_index = 2 .*from the future"):
        streaming_ap(gts, [StreamOutput(0.15, 2, _det())], fps=10)
    with pytest.raises(InputError, match=r"frame_indices\[1\] = 3, expected 2"):
        streaming_ap(gts, [], fps=10, frame_indices=[1, 3, 4])
    with pytest.raises(InputError, match="fps"):
        streaming_ap(gts, [], fps=0)
    with pytest.raises(InputError, match="backend"):
        streaming_ap(gts, [], backend="nope")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="frame_index"):
        StreamOutput(0.0, -1, _det())
    with pytest.raises(InputError, match="n_frames"):
        match_outputs([0.0], -2, 30)
    with pytest.raises(InputError, match="2 ground-truth images but 1"):
        coco_ap(gts[:2], [_det()])
