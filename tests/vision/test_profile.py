"""Detector profiles: matching, tiling, accuracy by resized area, latency, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgerl.runtime.testing import BlobDetector
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.profile import (
    AreaAccuracy,
    DetectorProfile,
    ValImage,
    match_at_iou,
    measure_latency_ms,
    profile_accuracy,
    tiles,
)


def test_match_greedy_by_score() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    # det0 overlaps gt0 with IoU 81/119 (0.68); det1 (higher score) is the same box as gt0;
    # det2 misses. Greedy: det1 takes gt0, det0 finds nothing left above 0.5, det2 none.
    det = Detections(np.array([[1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]]), [0.5, 0.9, 0.8], [0, 0, 0])
    tp, keep, matched = match_at_iou(det, gt)
    assert tp.tolist() == [False, True, False]
    assert matched.tolist() == [True, False]
    assert keep.all()
    # det2 inside an ignore region: dropped from the count, not a false positive.
    tp, keep, _ = match_at_iou(det, gt, ignore=np.array([[45, 45, 70, 70]], np.float32))
    assert keep.tolist() == [True, True, False]


def test_tiles_cover_frame() -> None:
    ts = tiles(100, 70, 32)
    cover = np.zeros((70, 100), int)
    for x0, y0, x1, y1 in ts:
        assert x1 - x0 == 32 and y1 - y0 == 32
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert len(ts) == 4 * 3


def test_area_accuracy_interpolation() -> None:
    acc = AreaAccuracy([4, 6, 8, 10], gt_count=[10, 0, 4], gt_matched=[5, 0, 4], det_count=[5, 0, 4], det_tp=[5, 0, 4])
    # bin centres 5, 7, 9 (log2 area); bin 7 is empty so 5 -> 9 is interpolated: at 7, (0.5+1)/2.
    vals = acc.value(np.array([2.0**5, 2.0**7, 2.0**9, 2.0**12, 2.0**3]))
    assert vals[:4] == pytest.approx([0.5, 0.75, 1.0, 1.0])
    # below the first edge the value falls towards 0 at edge-1 = 3
    assert vals[4] == pytest.approx(0.0)
    assert acc.precision[1] != acc.precision[1]  # NaN for an empty bin
    with pytest.raises(InputError, match="accuracy kind"):
        acc.value(np.array([1.0]), kind="f1")


def _blob_image(rng: np.random.Generator, sizes: list[int]) -> ValImage:
    img = np.zeros((512, 512, 3), np.uint8)
    boxes = []
    x = 4
    for s in sizes:
        y = int(rng.integers(4, 512 - s - 4))
        img[y : y + s, x : x + s] = 255
        boxes.append([x, y, x + s, y + s])
        x += s + 12
    return ValImage(img, np.array(boxes, np.float32), np.zeros((0, 4), np.float32))


def test_profile_accuracy_with_exact_detector() -> None:
    rng = np.random.default_rng(0)
    imgs = [_blob_image(rng, [4, 8, 16, 32, 64]) for _ in range(2)]
    # The blob detector finds every rectangle exactly, at native resolution; with tile = size
    # (scale 1) the resized area is the native area: 16, 64, 256, 1024, 4096 px^2.
    acc = profile_accuracy(lambda s: BlobDetector(), [512], imgs, tile_scales=(1.0,), log2_edges=[3, 5, 7, 9, 11, 13])
    assert acc.gt_count == [2, 2, 2, 2, 2]
    assert acc.recall.tolist() == [1.0] * 5
    assert acc.precision.tolist() == [1.0] * 5
    # A detector that cannot see blobs under 100 px^2 loses exactly the two smallest bins.
    acc2 = profile_accuracy(
        lambda s: BlobDetector(min_area_px=100), [512], imgs, tile_scales=(1.0,), log2_edges=[3, 5, 7, 9, 11, 13]
    )
    assert acc2.recall.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


class _WideBlobs:
    """Blob detector whose boxes are 3 px too wide: a blob of side s is found with IoU s / (s + 3)."""

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        out = BlobDetector().detect(images)
        return [Detections(d.boxes + np.array([0, 0, 3, 0], np.float32), d.scores, d.classes) for d in out]


def test_recall_coco_counts_tight_boxes_only() -> None:
    rng = np.random.default_rng(1)
    imgs = [_blob_image(rng, [4, 8, 16, 32, 64])]
    acc = profile_accuracy(lambda s: _WideBlobs(), [512], imgs, tile_scales=(1.0,), log2_edges=[3, 5, 7, 9, 11, 13])
    # IoU per side s: 4/7 = 0.571, 8/11 = 0.727, 16/19 = 0.842, 32/35 = 0.914, 64/67 = 0.955.
    # Thresholds 0.50, 0.55, ..., 0.95 passed: 2, 5, 7, 9, 10 of 10.
    assert acc.recall.tolist() == [1.0] * 5  # all matched at IoU 0.5
    assert acc.recall_coco.tolist() == pytest.approx([0.2, 0.5, 0.7, 0.9, 1.0])
    assert acc.value(np.array([2.0**6]), kind="recall_coco")[0] == pytest.approx(0.5)
    # A profile made before per-threshold recall was recorded says what to do.
    old = AreaAccuracy([3, 5], [1], [1], [1], [1])
    with pytest.raises(InputError, match="recall_coco.*edgerl profile detector"):
        old.value(np.array([16.0]), kind="recall_coco")


def test_profile_json_roundtrip(tmp_path: Path) -> None:
    prof = DetectorProfile(latency_ms={"m": {"320": 5.0, "640": 20.0}, "n": {"320": 2.0}})
    prof.accuracy["m"] = AreaAccuracy([0, 1, 2], [1, 1], [1, 0], [1, 1], [1, 0])
    p = prof.save(tmp_path / "p.json")
    back = DetectorProfile.load(p)
    assert back.options() == [("n", 320), ("m", 320), ("m", 640)]
    assert back.latency("m", 640) == 20.0
    assert back.accuracy["m"].recall.tolist() == [1.0, 0.0]
    prof.accuracy["m"] = AreaAccuracy([0, 1, 2], [2, 1], [1, 0], [1, 1], [1, 0], [0.5, 0.9], [[2, 1], [0, 0]])
    back = DetectorProfile.load(prof.save(tmp_path / "q.json"))
    assert back.accuracy["m"].recall_coco.tolist() == [0.5, 0.5]  # (2+0)/2/2, (1+0)/2/1
    assert "cpu_count" in back.machine
    with pytest.raises(InputError, match="no latency for m at 1024"):
        back.latency("m", 1024)


def test_measure_latency_positive() -> None:
    assert measure_latency_ms(BlobDetector(), 64, n_warmup=1, n_runs=3) > 0


def test_profile_detectors_keep_latency(tmp_path: Path) -> None:
    from edgerl.vision.profile_run import profile_detectors
    from edgerl.vision.synth import SynthConfig, write_dataset

    write_dataset(tmp_path / "val", 1, 5, SynthConfig().resized(320, 180))
    out = tmp_path / "p.json"
    DetectorProfile(latency_ms={"person_n": {"64": 1.5}}, machine={"where": "edge box"}).save(out)
    prof = profile_detectors(["person_n"], [64], out, data=tmp_path / "val", tile_scales=(1.0,), keep_latency=True)
    back = DetectorProfile.load(out)
    assert back.latency("person_n", 64) == 1.5 and prof.machine == {"where": "edge box"}
    acc = back.accuracy["person_n"]
    assert len(acc.gt_matched_iou) == 10 and sum(acc.gt_count) > 0
    # matched at IoU 0.5 is the first row of the per-threshold counts; stricter thresholds match fewer
    assert acc.gt_matched_iou[0] == acc.gt_matched
    assert np.all(np.diff(np.asarray(acc.gt_matched_iou), axis=0) <= 0)
    with pytest.raises(InputError, match="no latency for person_n at 96"):
        profile_detectors(["person_n"], [96], out, data=tmp_path / "val", keep_latency=True)
    with pytest.raises(InputError, match="--keep-latency.*does not exist"):
        profile_detectors(["person_n"], [64], tmp_path / "none.json", data=tmp_path / "val", keep_latency=True)
