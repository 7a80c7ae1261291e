"""OnnxDetector.candidates: decoded boxes before NMS, checked against hand-computed scores and
against detect() (NMS of the first k candidates = detect with k as its candidate cap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgerl.vision.detectors.onnx_backend as onnx_backend
from edgerl.utils.errors import InputError
from edgerl.vision.detectors import OnnxDetector, load_detector, nms_class_aware
from edgerl.vision.synth import SynthConfig, render_video


def _colour_model(path: Path) -> Path:
    """A YOLOv8-layout ONNX model: every anchor predicts the input box (24, 24, 40, 40); its
    class-0 score is the mean red level of the anchor's cell (average pool per stride), its
    class-1 score the mean blue level."""
    import onnx
    from onnx import TensorProto, helper

    w = np.zeros((6, 3, 1, 1), np.float32)
    w[4, 0, 0, 0] = 1.0
    w[5, 2, 0, 0] = 1.0
    b = np.array([32, 32, 16, 16, 0, 0], np.float32)
    inits = [
        helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
        helper.make_tensor("b", TensorProto.FLOAT, b.shape, b),
        helper.make_tensor("shape", TensorProto.INT64, [3], [0, 6, -1]),
    ]
    nodes = []
    for s in (8, 16, 32):
        nodes.append(helper.make_node("AveragePool", ["images"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]))
        nodes.append(helper.make_node("Conv", [f"p{s}", "w", "b"], [f"c{s}"]))
        nodes.append(helper.make_node("Reshape", [f"c{s}", "shape"], [f"r{s}"]))
    nodes.append(helper.make_node("Concat", ["r8", "r16", "r32"], ["output0"], axis=2))
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["n", 6, "a"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> OnnxDetector:
    path = _colour_model(tmp_path_factory.mktemp("cand") / "colour.onnx")
    return OnnxDetector(path, input_size=64, conf_threshold=0.6, batch_size=2)


def test_candidates_golden_scores_order_and_unclipped_boxes(tiny):
    # A red 8 x 64 image in a 64 x 64 input: scale 1, 28 grey (114) rows above and below, so
    # rows 28..35 are red. Class-0 score of an anchor = mean red level of its cell:
    #   stride 8 (8 x 8 cells): rows 24-31 and 32-39 are half red: 0.5 + 0.5 * 114/255 = 0.7235
    #     for 2 x 8 = 16 cells; all other rows are grey (0.447 < 0.6, dropped);
    #   stride 16: rows 16-31 / 32-47 hold 4 red rows of 16: 0.25 + 0.75 * 0.447 = 0.5853
    #     (< 0.6, dropped); stride 32: 4 red rows of 32: 0.125 + 0.875 * 0.447 = 0.5162 (dropped).
    # Every anchor predicts the input box (24, 24, 40, 40): minus the 28-row pad that is
    # (24, -4, 40, 12), reaching outside the 8-row image (candidates are not clipped).
    img = _solid(8, 64, (255, 0, 0))
    c = tiny.candidates([img])[0]
    half = 0.5 + 0.5 * 114 / 255
    assert len(c) == 16
    np.testing.assert_allclose(c.scores, [half] * 16, atol=2e-3)
    np.testing.assert_allclose(c.boxes, [[24, -4, 40, 12]] * 16, atol=1e-4)
    assert c.classes.tolist() == [0] * 16
    # detect() clips the one box left after NMS to the image
    d = tiny.detect([img])[0]
    np.testing.assert_allclose(d.boxes, [[24, 0, 40, 8]], atol=1e-4)
    # cap and class override; the detector's own settings are untouched
    assert len(tiny.candidates([img], max_candidates=5)[0]) == 5
    assert len(tiny.candidates([img], classes=[1])[0]) == 0
    assert tiny.classes is None and len(tiny.detect([img])[0]) == 1


def test_candidates_sorted_in_batches_and_at_other_sizes(tiny):
    # Red above, blue below (32 x 64 each half): both classes present, scores non-increasing.
    img = np.concatenate([_solid(32, 64, (255, 0, 0)), _solid(32, 64, (0, 0, 255))], axis=0)
    one = tiny.candidates([img])[0]
    assert set(one.classes.tolist()) == {0, 1} and np.all(np.diff(one.scores) <= 0)
    three = tiny.candidates([img, img, img])  # batch of 2, then 1
    for c in three:
        np.testing.assert_array_equal(c.scores, one.scores)
        np.testing.assert_array_equal(c.boxes, one.boxes)
    big = tiny.candidates([img], input_hw=(128, 128))[0]  # scale 2: boxes halve
    assert len(big) > len(one)
    np.testing.assert_allclose(big.boxes[0], [12, 12, 20, 20], atol=1e-4)


def test_candidates_bad_input(tiny):
    img = _solid(8, 64, (255, 0, 0))
    with pytest.raises(InputError, match="max_candidates"):
        tiny.candidates([img], max_candidates=0)
    with pytest.raises(InputError, match=r"classes \[7\]"):
        tiny.candidates([img], classes=[7])
    with pytest.raises(InputError, match="RGB uint8"):
        tiny.candidates([np.zeros((4, 4), np.uint8)])


def test_nms_of_candidates_equals_detect(monkeypatch):
    # Two frames of a synthetic plaza through the built-in person detector.
    synth = SynthConfig().resized(320, 192)
    frames = [s.image for s in render_video(synth, 2, np.random.default_rng(3))]
    iou = 0.6
    for k in (30, 300):
        monkeypatch.setattr(onnx_backend, "MAX_NMS_CANDIDATES", k)
        det = load_detector("person_n", conf_threshold=0.01, max_detections=k, iou_threshold=iou)
        for hw in ((192, 320), (128, 224)):
            refs = det.detect_timed(frames, input_hw=hw)[0]
            cands = det.candidates(frames, input_hw=hw, max_candidates=k)
            for ref, c in zip(refs, cands):
                assert 0 < len(c) <= k and np.all(np.diff(c.scores) <= 0)
                keep = nms_class_aware(c.boxes, c.scores, c.classes, iou, k)
                boxes = c.boxes[keep].copy()
                boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 320)
                boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 192)
                assert len(keep) == len(ref) > 0
                np.testing.assert_array_equal(c.scores[keep], ref.scores)
                np.testing.assert_allclose(boxes, ref.boxes, atol=1e-3)
