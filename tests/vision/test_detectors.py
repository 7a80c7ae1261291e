"""Detectors: pure pre/post-processing (hand-made arrays), a hand-built ONNX model, real assets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.detectors import (
    COCO_CLASS_NAMES,
    TIMING_KEYS,
    Detector,
    OnnxDetector,
    decode_yolov8,
    decode_yolox,
    letterbox,
    load_detector,
    nms_class_aware,
    num_anchors,
    preprocess,
    unletterbox_boxes,
    yolox_grid,
)
from edgerl.vision.metrics import GroundTruth, evaluate_detections

# ---------------------------------------------------------------------------------------------
# letterbox


def test_letterbox_centred_golden():
    img = np.full((100, 200, 3), 7, np.uint8)  # H=100, W=200
    out, scale, pad = letterbox(img, 64)
    # scale = min(64/100, 64/200) = 0.32 -> 32 x 64; 32 rows of padding split 16 / 16.
    assert scale == pytest.approx(0.32) and pad == (0, 16) and out.shape == (64, 64, 3)
    assert (out[:16] == 114).all() and (out[16:48] == 7).all() and (out[48:] == 114).all()


def test_letterbox_top_left_and_odd_padding():
    img = np.full((100, 200, 3), 7, np.uint8)
    out, scale, pad = letterbox(img, 64, pad_value=0, center=False)
    assert pad == (0, 0) and (out[:32] == 7).all() and (out[32:] == 0).all()
    # (height, width) target with 33 rows of padding: 16 on top, 17 below.
    out, scale, pad = letterbox(img, (65, 64))
    assert (
        pad == (0, 16)
        and (out[16:48] == 7).all()
        and (out[48:] == 114).all()
        and (out[:16] == 114).all()
    )
    # Taller than wide: padding goes left/right.
    out, scale, pad = letterbox(np.zeros((40, 10, 3), np.uint8), 80)
    assert (
        scale == 2.0
        and pad == (30, 0)
        and (out[:, 30:50] == 0).all()
        and (out[:, :30] == 114).all()
    )


def test_preprocess_per_layout_golden():
    # A 2 x 4 RGB image into a 4 x 4 input: scale 1, two rows of padding.
    img = np.zeros((2, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    x, scale, pad = preprocess(img, (4, 4), "yolox")
    # YOLOX: BGR, 0..255, content on top, padding below.
    assert x.shape == (3, 4, 4) and x.dtype == np.float32 and scale == 1.0 and pad == (0, 0)
    np.testing.assert_array_equal(x[:, :2, 0], [[30, 30], [20, 20], [10, 10]])
    assert (x[:, 2:] == 114).all()
    # YOLOv8: RGB / 255, one padding row above and one below.
    x, scale, pad = preprocess(img, (4, 4), "yolov8")
    assert pad == (0, 1)
    np.testing.assert_allclose(
        x[:, 1:3, 0], np.array([[10, 10], [20, 20], [30, 30]]) / 255, rtol=1e-6
    )
    np.testing.assert_allclose(x[:, 0], 114 / 255, rtol=1e-6)
    np.testing.assert_allclose(x[:, 3], 114 / 255, rtol=1e-6)


def test_unletterbox_inverts_letterbox():
    _, scale, pad = letterbox(np.zeros((100, 200, 3), np.uint8), 64)
    # Image box (50, 25)-(150, 75) -> input (16, 24)-(48, 40) under scale 0.32, pad (0, 16).
    back = unletterbox_boxes(np.array([[16, 24, 48, 40], [-5, 0, 70, 70]]), scale, pad, (100, 200))
    np.testing.assert_allclose(back[0], [50, 25, 150, 75], atol=1e-4)
    np.testing.assert_allclose(back[1], [0, 0, 200, 100], atol=1e-4)  # clipped to the image


# ---------------------------------------------------------------------------------------------
# decoding and NMS


def test_decode_yolov8_golden():
    # 3 anchors, 2 classes; rows cx, cy, w, h, score0, score1.
    out = np.array(
        [
            [10, 50, 30],
            [20, 60, 30],
            [4, 10, 2],
            [6, 20, 2],
            [0.9, 0.1, 0.2],
            [0.3, 0.7, 0.1],
        ],
        np.float32,
    )
    boxes, scores, cls = decode_yolov8(out[None], conf_threshold=0.25)
    np.testing.assert_allclose(boxes, [[8, 17, 12, 23], [45, 50, 55, 70]])
    np.testing.assert_allclose(scores, [0.9, 0.7])
    np.testing.assert_array_equal(cls, [0, 1])
    boxes, scores, cls = decode_yolov8(out, conf_threshold=0.25, classes=[1])
    np.testing.assert_allclose(boxes, [[45, 50, 55, 70]])
    # Anchor 2's best score is 0.2: gone at 0.25, kept at 0.2 (the threshold is inclusive).
    assert len(decode_yolov8(out, conf_threshold=0.2)[0]) == 3


def test_yolox_grid_order():
    grid, stride = yolox_grid((64, 64))
    assert len(grid) == num_anchors((64, 64)) == 64 + 16 + 4
    # Stride 8 comes first (8 x 8 cells), then stride 16, row by row with x fastest.
    np.testing.assert_array_equal(grid[9], [1, 1])
    assert stride[9, 0] == 8
    np.testing.assert_array_equal(grid[64 + 2 * 4 + 1], [1, 2])
    assert stride[64 + 9, 0] == 16
    np.testing.assert_array_equal(grid[-1], [1, 1])
    assert stride[-1, 0] == 32
    assert num_anchors((640, 640)) == 8400 and num_anchors((416, 416)) == 3549


def _yolox_raw() -> np.ndarray:
    """Raw YOLOX output at 64 x 64 with one confident anchor: stride 16, cell (x=1, y=2)."""
    out = np.zeros((84, 7), np.float32)  # 5 + 2 classes
    out[:, 4] = 0.01
    k = 64 + 2 * 4 + 1
    out[k] = [0.5, 0.25, math.log(2.0), 0.0, 0.8, 0.5, 0.9]
    return out


def test_decode_yolox_raw_golden():
    # cx = (1 + 0.5) * 16 = 24, cy = (2 + 0.25) * 16 = 36, w = e^log2 * 16 = 32, h = 16
    # -> xyxy (8, 28, 40, 44); score = 0.8 * max(0.5, 0.9) = 0.72, class 1.
    boxes, scores, cls = decode_yolox(_yolox_raw()[None], (64, 64), conf_threshold=0.1)
    np.testing.assert_allclose(boxes, [[8, 28, 40, 44]], atol=1e-5)
    np.testing.assert_allclose(scores, [0.72], atol=1e-6)
    np.testing.assert_array_equal(cls, [1])
    assert len(decode_yolox(_yolox_raw(), (64, 64), conf_threshold=0.1, classes=[0])[0]) == 0
    assert len(decode_yolox(_yolox_raw(), (64, 64), conf_threshold=0.73)[0]) == 0


def test_decode_yolox_detects_decoded_exports_and_logits():
    raw = _yolox_raw()
    grid, stride = yolox_grid((64, 64))
    dec = raw.copy()
    dec[:, :2] = (raw[:, :2] + grid) * stride
    dec[:, 2:4] = np.exp(raw[:, 2:4]) * stride
    want = decode_yolox(raw, (64, 64), conf_threshold=0.1)
    got = decode_yolox(dec, (64, 64), conf_threshold=0.1)
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # Forcing the wrong assumption gives a different box, so the detection above matters.
    wrong = decode_yolox(dec, (64, 64), conf_threshold=0.1, decoded=False)[0]
    assert not np.allclose(wrong, want[0])
    # Objectness/class logits are passed through a sigmoid.
    logits = raw.copy()
    p = np.clip(raw[:, 4:], 1e-6, 1 - 1e-6)
    logits[:, 4:] = np.log(p / (1 - p))
    np.testing.assert_allclose(
        decode_yolox(logits, (64, 64), conf_threshold=0.1)[1], [0.72], atol=1e-5
    )
    with pytest.raises(ValueError, match="expected shape"):
        decode_yolox(raw, (96, 96))


def test_nms_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 9], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # Box 1 overlaps box 0 (IoU 0.8) in the same class -> dropped; box 2 (IoU 0.9 with 0) is
    # another class -> kept; box 3 is far away.
    keep = nms_class_aware(boxes, scores, np.array([0, 0, 1, 0]), 0.45)
    np.testing.assert_array_equal(keep, [0, 2, 3])
    keep = nms_class_aware(boxes, scores, np.array([0, 0, 0, 0]), 0.85)
    np.testing.assert_array_equal(keep, [0, 1, 3])  # IoU 0.8 <= 0.85 kept, 0.9 dropped
    np.testing.assert_array_equal(
        nms_class_aware(boxes, scores, np.zeros(4), 0.45, max_keep=1), [0]
    )
    assert len(nms_class_aware(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5)) == 0


# ---------------------------------------------------------------------------------------------
# a hand-built YOLOv8-layout model (dynamic batch and size) for the detector contract


def _tiny_yolov8_onnx(path: Path, batch_dim: str | int = "batch") -> Path:
    """A model with the YOLOv8 output layout: per stride, average-pool + 1x1 conv + flatten.

    Every anchor predicts the same box (cx, cy, w, h) = (32, 32, 16, 16) in input pixels; the
    class-0 score is the mean red level of the anchor's cell, the class-1 score the mean blue.
    """
    import onnx
    from onnx import TensorProto, helper

    weight = np.zeros((6, 3, 1, 1), np.float32)
    weight[4, 0] = 1.0  # class 0 <- R
    weight[5, 2] = 1.0  # class 1 <- B
    bias = np.array([32, 32, 16, 16, 0, 0], np.float32)
    inits = [
        helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel()),
        helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias),
        helper.make_tensor("shape", TensorProto.INT64, [3], [0, 6, -1]),
    ]
    nodes, heads = [], []
    for s in (8, 16, 32):
        nodes += [
            helper.make_node(
                "AveragePool", ["images"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]
            ),
            helper.make_node("Conv", [f"p{s}", "w", "b"], [f"c{s}"]),
            helper.make_node("Reshape", [f"c{s}", "shape"], [f"r{s}"]),
        ]
        heads.append(f"r{s}")
    nodes.append(helper.make_node("Concat", heads, ["output0"], axis=2))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch_dim, 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch_dim, 6, "n"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _tiny_yolov8_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def _solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def test_tiny_model_batches_and_maps_boxes_back(tiny_model):
    det = OnnxDetector(
        tiny_model, input_size=64, conf_threshold=0.6, batch_size=2, class_names=["red", "blue"]
    )
    assert isinstance(det, Detector)
    assert det.layout == "yolov8" and det.num_classes == 2 and det.batch_size == 2
    assert det.input_size == (64, 64) and det.class_names == ["red", "blue"] and det.name == "tiny"
    red, blue, grey = (
        _solid(32, 64, (255, 0, 0)),
        _solid(64, 32, (0, 0, 255)),
        _solid(50, 50, (128, 128, 128)),
    )
    res, timings = det.detect_timed([red, blue, grey])
    assert len(res) == 3 and all(isinstance(r, Detections) for r in res)
    assert set(timings) == set(TIMING_KEYS) and timings["total"] >= timings["inference"] > 0
    # The red 32 x 64 image sits at scale 1 under 16 rows of padding: input box (24, 24, 40, 40)
    # maps to (24, 8, 40, 24). The blue 64 x 32 image is padded 16 columns on the left.
    np.testing.assert_array_equal(res[0].classes, [0])
    np.testing.assert_allclose(res[0].boxes, [[24, 8, 40, 24]])
    assert res[0].scores[0] == pytest.approx(1.0)
    np.testing.assert_array_equal(res[1].classes, [1])
    np.testing.assert_allclose(res[1].boxes, [[8, 24, 24, 40]])
    assert len(res[2]) == 0  # grey: both scores ~0.5 < 0.6
    # Stateless: one image at a time gives the same answers.
    for img, want in zip([red, blue, grey], res):
        got = det.detect([img])[0]
        np.testing.assert_allclose(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.classes, want.classes)


def test_tiny_model_class_filter_conf_and_sizes(tiny_model):
    red, blue = _solid(32, 64, (255, 0, 0)), _solid(64, 32, (0, 0, 255))
    only_blue = OnnxDetector(tiny_model, input_size=64, conf_threshold=0.6, classes=[1])
    res = only_blue.detect([red, blue])
    assert len(res[0]) == 0 and list(res[1].classes) == [1]
    # Left half red, right half blue: every anchor predicts the same box, but NMS is per class,
    # so one box of each class survives. Each anchor keeps only its best class.
    halves = np.concatenate([_solid(64, 32, (255, 0, 0)), _solid(64, 32, (0, 0, 255))], axis=1)
    low = OnnxDetector(tiny_model, input_size=64, conf_threshold=0.6)
    d = low.detect([halves])[0]
    assert sorted(d.classes.tolist()) == [0, 1]
    np.testing.assert_allclose(d.boxes, [[24, 24, 40, 40]] * 2)
    # Grey (128 / 255 = 0.502 in both channels) passes 0.5 but not 0.6; ties go to class 0.
    grey = _solid(64, 64, (128, 128, 128))
    assert len(low.detect([grey])[0]) == 0
    half = OnnxDetector(tiny_model, input_size=64, conf_threshold=0.5).detect([grey])[0]
    assert half.classes.tolist() == [0] and half.scores[0] == pytest.approx(128 / 255)
    # A dynamic-size model runs at any multiple of 32 and refuses the rest.
    assert OnnxDetector(tiny_model, input_size=(96, 128)).input_size == (96, 128)
    with pytest.raises(InputError, match=r"tiny\.onnx.*100x100.*multiples of 32"):
        OnnxDetector(tiny_model, input_size=100)
    with pytest.raises(InputError, match=r"classes \[5\]"):
        OnnxDetector(tiny_model, input_size=64, classes=[5])
    with pytest.raises(InputError, match="class_names has 1 names"):
        OnnxDetector(tiny_model, input_size=64, class_names=["red"])
    with pytest.raises(InputError, match="conf_threshold"):
        OnnxDetector(tiny_model, conf_threshold=1.5)
    with pytest.raises(InputError, match="RGB uint8"):
        low.detect([np.zeros((10, 10), np.uint8)])


def test_static_batch_is_padded(tmp_path):
    det = OnnxDetector(
        _tiny_yolov8_onnx(tmp_path / "b3.onnx", batch_dim=3), input_size=64, conf_threshold=0.6
    )
    assert det.batch_size == 3
    res = det.detect([_solid(32, 64, (255, 0, 0))] * 4)
    assert len(res) == 4 and all(list(r.classes) == [0] for r in res)


def test_wrong_layout_and_bad_files(tiny_model, tmp_path):
    with pytest.raises(InputError, match=r"tiny\.onnx.*does not match the yolox layout"):
        OnnxDetector(tiny_model, input_size=64, layout="yolox")
    # A model whose output is not a detection head.
    import onnx
    from onnx import TensorProto, helper

    ident = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["images"], ["out"])],
            "ident",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    ident.ir_version = 8
    onnx.save(ident, str(tmp_path / "ident.onnx"))
    with pytest.raises(InputError, match=r"ident\.onnx.*matches neither"):
        OnnxDetector(tmp_path / "ident.onnx", input_size=64)

    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    with pytest.raises(InputError, match=r"notes\.onnx"):
        OnnxDetector(text)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_model.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cut\.onnx"):
        OnnxDetector(cut)
    with pytest.raises(InputError, match=r"missing\.onnx does not exist"):
        load_detector(str(tmp_path / "missing.onnx"))
    with pytest.raises(InputError, match="unknown detector 'yolo-tiny'"):
        load_detector("yolo-tiny")


def test_load_detector_passes_arguments(tiny_model):
    det = load_detector(str(tiny_model), input_size=96, conf_threshold=0.7)
    assert (
        isinstance(det, OnnxDetector) and det.input_size == (96, 96) and det.conf_threshold == 0.7
    )


# ---------------------------------------------------------------------------------------------
# real assets (skipped when ../shared/assets is absent)


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _names(det: Detector, d: Detections) -> list[str]:
    return sorted(det.class_names[c] for c in d.classes)


@pytest.fixture(scope="module")
def yolov8(assets_dir) -> OnnxDetector:
    return OnnxDetector(assets_dir / "models" / "yolov8n_int8.onnx")


@pytest.mark.assets
def test_yolov8_bus(yolov8, assets_dir):
    assert yolov8.layout == "yolov8" and yolov8.input_size == (640, 640)
    assert yolov8.class_names == COCO_CLASS_NAMES
    d = yolov8.detect([_rgb(assets_dir / "images" / "bus.jpg")])[0]
    # At the default 0.25: the bus and 4 persons. The fourth person, cut by the left border,
    # scores ~0.31 with this int8 export; the other three score ~0.89 and the bus ~0.82.
    assert _names(yolov8, d) == ["bus"] + ["person"] * 4
    assert _names(yolov8, d.select(d.scores > 0.5)) == ["bus"] + ["person"] * 3
    assert (d.scores[d.classes == 0] > 0.8).sum() == 3 and (d.scores[d.classes == 5] > 0.8).all()
    bus = d.boxes[d.classes == 5][0]
    # The bus spans nearly the whole 810 x 1080 photo's width, rows ~230..770.
    assert bus[0] < 60 and bus[2] > 770 and 200 < bus[1] < 260 and 740 < bus[3] < 800


@pytest.mark.assets
def test_yolov8_filters(assets_dir):
    img = _rgb(assets_dir / "images" / "bus.jpg")
    path = assets_dir / "models" / "yolov8n_int8.onnx"
    persons = OnnxDetector(path, classes=[0]).detect([img])[0]
    assert list(persons.classes) == [0] * 4
    strict = OnnxDetector(path, conf_threshold=0.85).detect([img])[0]
    assert (strict.scores >= 0.85).all() and 5 not in strict.classes and len(strict) == 3
    loose = OnnxDetector(path, conf_threshold=0.1).detect([img])[0]
    assert len(loose) > 5 and (loose.scores >= 0.1).all()
    assert len(OnnxDetector(path, conf_threshold=0.1, max_detections=2).detect([img])[0]) == 2


@pytest.mark.assets
def test_yolov8_accepts_only_640(assets_dir):
    # The export bakes its 8400-anchor grid into the graph, so other sizes cannot run.
    path = assets_dir / "models" / "yolov8n_int8.onnx"
    with pytest.raises(
        InputError, match=r"yolov8n_int8\.onnx cannot run at input size 320x320: .*only .*640x640"
    ):
        OnnxDetector(path, input_size=320)
    with pytest.raises(InputError, match=r"yolov8n_int8\.onnx.*multiples of 32"):
        OnnxDetector(path, input_size=500)


@pytest.mark.assets
@pytest.mark.parametrize("size", [416, 640])
def test_yolox_runs_at_416_and_640(assets_dir, size):
    det = OnnxDetector(
        assets_dir / "models" / "yolox_nano.onnx", input_size=size, conf_threshold=0.5
    )
    assert det.layout == "yolox" and det.input_size == (size, size) and det.num_classes == 80
    d = det.detect([_rgb(assets_dir / "images" / "bus.jpg")])[0]
    names = _names(det, d)
    assert names.count("bus") == 1 and names.count("person") >= 3


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


@pytest.mark.assets
@pytest.mark.parametrize("size", [416, 640, 1024])
def test_yolox_finds_all_terrain_persons(assets_dir, size):
    meta = json.loads((assets_dir / "images" / "terrain1_coco.json").read_text())
    im = meta["images"][0]
    gt = GroundTruth.from_coco(
        meta["annotations"], im["width"], im["height"], category_to_class={1: 0}
    )
    assert len(gt.boxes) == 7
    det = OnnxDetector(assets_dir / "models" / "yolox_nano.onnx", input_size=size, classes=[0])
    d = det.detect([_rgb(assets_dir / "images" / "terrain1.jpg")])[0]
    assert (_iou(gt.boxes, d.boxes).max(axis=1) >= 0.5).all()
    m = evaluate_detections([gt], [d])
    assert m["map50"] > 0.9 and m["ar_100"] > 0.5


@pytest.mark.assets
def test_truncated_real_model(assets_dir, tmp_path):
    cut = tmp_path / "yolox_cut.onnx"
    cut.write_bytes((assets_dir / "models" / "yolox_nano.onnx").read_bytes()[:100_000])
    with pytest.raises(InputError, match=r"yolox_cut\.onnx"):
        OnnxDetector(cut)
