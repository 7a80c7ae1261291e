"""Tests of the built-in person detector family: model, assignment, training, export."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from edgerl.utils.errors import InputError
from edgerl.vision.builtin import BUILTIN_SIZES, builtin_metadata_path, builtin_model_path
from edgerl.vision.builtin.export import export_detector, onnx_bytes, verify_onnx
from edgerl.vision.builtin.model import STRIDES, PersonDetector, build_detector, count_parameters
from edgerl.vision.builtin.train import (
    DetectorTrainConfig,
    Frame,
    assign_targets,
    box_iou_pairs,
    load_checkpoint,
    make_val_tiles,
    sample_tile,
    train_detector,
)


def _tiny_model(seed: int = 0) -> PersonDetector:
    torch.manual_seed(seed)
    model = PersonDetector(width_mult=0.25, depth_mult=0.33)
    # Randomise the batch-norm statistics so that folding them is actually exercised.
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return model.eval()


# -- package API -----------------------------------------------------------------------------


def test_builtin_model_path_names_file_per_size():
    assert BUILTIN_SIZES == ("n", "s", "m")
    for size in BUILTIN_SIZES:
        path = builtin_model_path(size)
        assert path.name == f"person_{size}.onnx"
        assert path.parent.name == "detectors" and path.parent.parent.name == "data"
        assert builtin_metadata_path(size).name == f"person_{size}.json"


def test_builtin_model_path_rejects_unknown_size():
    with pytest.raises(InputError, match=r"'xl'.*n, s, m"):
        builtin_model_path("xl")


def test_build_detector_rejects_unknown_size():
    with pytest.raises(ValueError, match="'l'"):
        build_detector("l")


def test_sizes_grow_in_parameters():
    params = [count_parameters(build_detector(s)) for s in BUILTIN_SIZES]
    assert params[0] < params[1] < params[2]
    # Together the three exports must stay small (float32 weights, < 15 MB).
    assert sum(params) * 4 < 15e6


# -- model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(64, 96), (128, 128)])
def test_forward_yolov8_layout(hw):
    h, w = hw
    model = _tiny_model()
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        out = model(x)
        raw = model.forward_train(x)
    n = sum((h // s) * (w // s) for s in STRIDES)
    assert out.shape == (2, 5, n)
    assert raw.dist.shape == (2, n, 4) and raw.logits.shape == (2, n, 1)
    scores = out[:, 4]
    assert torch.all((scores >= 0) & (scores <= 1))
    assert torch.all(out[:, 2:4] > 0)
    # The export decode equals the training decode: cx = anchor + (r - l) / 2, w = l + r.
    lt, rb = raw.dist[..., :2], raw.dist[..., 2:]
    centre = raw.anchors[None] + (rb - lt) / 2
    torch.testing.assert_close(out[:, :2].transpose(1, 2), centre, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out[:, 2:4].transpose(1, 2), lt + rb, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(scores, raw.logits[..., 0].sigmoid())
    # First cell of stride 8 is centred at (4, 4); the last cell of stride 32 at the far corner.
    torch.testing.assert_close(raw.anchors[0], torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(raw.anchors[-1], torch.tensor([w - 16.0, h - 16.0]))


def test_fuse_keeps_outputs():
    model = _tiny_model()
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        ref = model(x)
        fused = model.fuse()(x)
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-3)


# -- boxes, assignment -----------------------------------------------------------------------


def test_box_iou_pairs_golden_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert float(box_iou_pairs(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(box_iou_pairs(a, a, ciou=True)) == pytest.approx(1.0, abs=1e-6)
    half = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    assert float(box_iou_pairs(a, half)) == pytest.approx(50 / 150, abs=1e-6)
    far = torch.tensor([[20.0, 20.0, 30.0, 30.0]])
    assert float(box_iou_pairs(a, far)) == 0.0
    # CIoU subtracts the centre distance over the enclosing diagonal: 800 / 1800.
    assert float(box_iou_pairs(a, far, ciou=True)) == pytest.approx(-800 / 1800, abs=1e-5)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    from edgerl.vision.builtin.model import make_anchors

    shapes = [(h // s, w // s) for s in STRIDES]
    return make_anchors(shapes, torch.device("cpu"), torch.float32)


def test_assign_targets_gives_tiny_box_a_cell_and_resolves_conflicts():
    anchors, strides = _grid(64, 64)
    n = len(anchors)
    # A 3x9 px person between cell centres (no stride-8 centre lies inside it) and two
    # identical boxes competing for the same cells.
    gt = torch.tensor(
        [[[9.0, 9.0, 12.0, 18.0], [30.0, 30.0, 50.0, 60.0], [30.0, 30.0, 50.0, 60.0]]]
    )
    valid = torch.ones(1, 3, dtype=torch.bool)
    pred = torch.cat([anchors - 4.0, anchors + 4.0], dim=1)[None]
    scores = torch.full((1, n), 0.5)
    t = assign_targets(scores, pred, anchors, strides, gt, valid, topk=5)
    assert t.fg.any()
    tiny_cells = (t.boxes[0, :, 3] == 18.0) & t.fg[0]
    assert 1 <= int(tiny_cells.sum()) <= 5
    big_cells = (t.boxes[0, :, 3] == 60.0) & t.fg[0]
    assert 1 <= int(big_cells.sum()) <= 5  # each cell is given to one box only
    assert torch.all(t.scores[0, t.fg[0]] > 0) and torch.all(t.scores[0, ~t.fg[0]] == 0)
    # Padding rows are never assigned.
    valid[0, 0] = False
    t2 = assign_targets(scores, pred, anchors, strides, gt, valid, topk=5)
    assert not bool(((t2.boxes[0, :, 3] == 18.0) & t2.fg[0]).any())


# -- data ------------------------------------------------------------------------------------


def _box_frame() -> Frame:
    image = np.full((400, 600, 3), 200, np.uint8)
    box = np.array([[300.0, 100.0, 330.0, 190.0]], np.float32)
    image[100:190, 300:330] = 10
    return Frame(image, box, np.ones(1, np.float32), np.zeros((0, 4), np.float32), seed=0)


@pytest.mark.parametrize("native", [True, False])
def test_sample_tile_keeps_boxes_on_their_pixels(native):
    cfg = DetectorTrainConfig(
        native_tile_prob=1.0 if native else 0.0,
        min_scale=0.5,
        max_scale=1.4,
        person_centred_prob=1.0,
        hsv_hue=0,
        hsv_sat=0,
        hsv_val=0,
        letterbox_prob=0.5,
    )
    frame = _box_frame()
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(20):
        tile, boxes, _ = sample_tile(frame, 128, cfg, rng)
        assert tile.shape == (128, 128, 3) and tile.dtype == np.uint8
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
            inner = tile[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
            if inner.size:
                assert inner.mean() < 60, "the box does not sit on the dark person"
                seen += 1
    assert seen >= 10


def test_val_tiles_cover_frame_and_ignore_cut_people():
    frame = _box_frame()
    tiles = make_val_tiles([frame], tile_px=320)
    assert len(tiles) == 4  # 600 x 400 -> starts (0, 280) x (0, 80)
    counts = [len(t.gt.boxes) for t in tiles]
    # The person (x 300..330) is fully inside the two right tiles (x 280..600) and only
    # 20/30 inside the left ones (x 0..320): kept there too (>= half inside).
    assert counts == [1, 1, 1, 1]
    narrow = make_val_tiles([frame], tile_px=310)
    left = narrow[0]  # x 0..310 holds 10/30 of the person: an ignore region, not ground truth
    assert len(left.gt.boxes) == 0 and len(left.gt.ignore) == 1


# -- training and export ---------------------------------------------------------------------


def _smoke_config(**kw) -> DetectorTrainConfig:
    base = dict(
        size="n",
        iterations=5,
        batch_size=2,
        tile_px=[128],
        warmup_iters=2,
        train_frames=2,
        val_frames=1,
        val_tile_px=192,
        val_input_px=192,
        eval_every_iters=5,
        synth_resize_px=[640, 360],
        num_threads=1,
    )
    base.update(kw)
    return DetectorTrainConfig(**base)


def test_training_smoke_writes_run_dir_and_is_reproducible(tmp_path):
    cfg = _smoke_config(frame_cache_dir=str(tmp_path / "cache"))
    summary = train_detector(cfg, tmp_path / "run_a")
    run = tmp_path / "run_a"
    for name in ("config.yaml", "metrics.csv", "summary.json", "model.pt"):
        assert (run / name).is_file(), name
    assert summary["iterations"] == 5 and summary["size"] == "n"
    assert 0.0 <= summary["val_map50"] <= 1.0 or np.isnan(summary["val_map50"])
    assert json.loads((run / "summary.json").read_text())["train_seeds"] == "0..1"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 1 and float(rows[0]["loss"]) > 0
    model, ckpt = load_checkpoint(run / "model.pt")
    assert ckpt["size"] == "n" and ckpt["iterations"] == 5
    assert isinstance(model, PersonDetector)
    # Same seed, same frames (now from the cache): the same losses.
    train_detector(cfg, tmp_path / "run_b")
    rows_b = list(csv.DictReader(open(tmp_path / "run_b" / "metrics.csv")))
    assert float(rows_b[0]["loss"]) == pytest.approx(float(rows[0]["loss"]), rel=1e-5)


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="tile"):
        DetectorTrainConfig(tile_px=[100])
    with pytest.raises(ValueError, match="size"):
        DetectorTrainConfig(size="xl")
    with pytest.raises(ValueError, match="overlap"):
        from edgerl.vision.builtin.train import train_detector as _train

        _train(_smoke_config(val_seed_start=1), "/nonexistent-dir-never-created")


def test_export_round_trip_matches_torch(tmp_path):
    from edgerl.vision.detectors.onnx_backend import OnnxDetector

    model = _tiny_model(seed=3)
    meta = export_detector(model, tmp_path / "person_t.onnx", {"size": "t"}, export_px=320)
    path = tmp_path / "person_t.onnx"
    assert path.is_file() and (tmp_path / "person_t.json").is_file()
    assert meta["max_abs_diff"] < 1e-3
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # Runs at another size and batch than the traced one, output name and layout intact.
    det = OnnxDetector(path, input_size=(256, 384), conf_threshold=0.0)
    assert det.layout == "yolov8" and det.num_classes == 1 and det.class_names == ["person"]
    assert det.input_size == (256, 384)
    assert OnnxDetector(path).input_size == (320, 320)  # from the recorded imgsz
    # A corrupted export is caught by the check.
    other = _tiny_model(seed=4)
    with pytest.raises(RuntimeError, match="differs"):
        verify_onnx(other, onnx_bytes(model, 320), sizes=((64, 64),))


# -- committed weights -----------------------------------------------------------------------

_COMMITTED = [s for s in BUILTIN_SIZES if builtin_model_path(s).is_file()]

#: Thresholds for every committed size on the 640 px tiles of the lower part of validation
#: frames 1_000_000 and 1_000_001 (input 640): recall at IoU 0.5 of the 25 people >= 48 px
#: tall and at least half visible (measured n 0.96, s 0.92, m 0.96), and the share of the
#: detections scoring >= 0.5 that overlap some person at IoU 0.5 (measured n 0.92, s 0.81,
#: m 0.91). An untrained network scores 0 on both.
_MIN_RECALL = 0.8
_MIN_PRECISION = 0.7


@pytest.fixture(scope="module")
def val_frames() -> list[Frame]:
    from edgerl.vision.builtin.train import make_synth_config, render_frame

    return [render_frame(make_synth_config("default"), seed) for seed in (1_000_000, 1_000_001)]


@pytest.mark.skipif(not _COMMITTED, reason="no committed built-in detector files")
@pytest.mark.parametrize("size", _COMMITTED)
def test_committed_detector_finds_people(size, val_frames):
    from edgerl.vision.boxes import iou_matrix
    from edgerl.vision.detectors.onnx_backend import OnnxDetector

    meta = json.loads(builtin_metadata_path(size).read_text())
    assert meta["size"] == size and meta["opset"] == 17
    assert meta["sha256"] == hashlib.sha256(builtin_model_path(size).read_bytes()).hexdigest()
    det = OnnxDetector(builtin_model_path(size), input_size=640, conf_threshold=0.3)
    assert det.layout == "yolov8" and det.class_names == ["person"]

    found = total = correct = confident = 0
    for frame in val_frames:
        h, w = frame.image.shape[:2]
        for y0 in (h - 1280, h - 640):
            for x0 in range(0, w - 639, 640):
                pred = det.detect([frame.image[y0 : y0 + 640, x0 : x0 + 640]])[0]
                b = frame.boxes - np.array([x0, y0, x0, y0], np.float32)
                inside = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= 640) & (b[:, 3] <= 640)
                big = inside & (b[:, 3] - b[:, 1] >= 48) & (frame.visible >= 0.5)
                total += int(big.sum())
                if big.any() and len(pred):
                    found += int((iou_matrix(b[big], pred.boxes).max(axis=1) >= 0.5).sum())
                sure = pred.select(pred.scores >= 0.5)
                confident += len(sure)
                if len(sure) and len(b):
                    correct += int((iou_matrix(sure.boxes, b).max(axis=1) >= 0.5).sum())
    assert total >= 10, "the validation frames should hold people to find"
    assert found / total >= _MIN_RECALL, f"{size}: recall {found}/{total}"
    assert confident > 0 and correct / confident >= _MIN_PRECISION, (
        f"{size}: precision {correct}/{confident}"
    )
