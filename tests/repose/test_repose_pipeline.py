"""The RE-POSE pipeline end to end on a frame of bright rectangles with an exact detector."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.repose.pipeline import FullFrame, Repose, ReposeConfig, Uniform, parse_option
from edgerl.runtime import LocalExecutor
from edgerl.runtime.testing import blob_factory
from edgerl.utils.errors import InputError
from edgerl.vision.profile import AreaAccuracy, DetectorProfile


def _frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 1280x720 frame with two groups of white rectangles (the 'people')."""
    rng = np.random.default_rng(seed)
    img = np.zeros((720, 1280, 3), np.uint8)
    boxes = []
    for cx, cy in ((250, 200), (1000, 550)):
        for _ in range(6):
            x = int(cx + rng.integers(-120, 120))
            y = int(cy + rng.integers(-80, 80))
            w, h = int(rng.integers(6, 14)), int(rng.integers(15, 30))
            if img[y - 3 : y + h + 3, x - 3 : x + w + 3].any():
                continue
            img[y : y + h, x : x + w] = 255
            boxes.append([x, y, x + w, y + h])
    return img, np.array(boxes, np.float32)


def _profile() -> DetectorProfile:
    acc = AreaAccuracy([4, 8, 12, 16], [10, 10, 10], [5, 9, 10], [5, 9, 10], [5, 9, 10])
    return DetectorProfile(
        latency_ms={"a": {"64": 1.0, "128": 3.0}, "b": {"128": 6.0}},
        accuracy={"a": acc, "b": acc},
    )


def _cfg(**kw) -> ReposeConfig:
    base = dict(
        n_workers=2,
        coarse_rows=1,
        coarse_option="a@64",
        options=["a@64", "a@128", "b@128"],
        budget_ms=20.0,
        block_margin_px=8,
        block_min_px=32,
        uniform_option="a@64",
        conf_threshold=0.1,
        accuracy_kind="recall",  # the hand-made profile records recall at IoU 0.5 only
    )
    base.update(kw)
    return ReposeConfig(**base)


def _sorted(b: np.ndarray) -> list:
    return sorted(np.round(b, 2).tolist())


@pytest.mark.parametrize("planner", ["sum", "parallel"])
def test_meanshift_pipeline_finds_every_object(planner: str) -> None:
    frame, gt = _frame()
    with LocalExecutor(2, factory=blob_factory) as ex:
        method = Repose(ex, _cfg(planner=planner), _profile(), policy=None)
        res = method(frame)
    assert method.name == "meanshift"
    assert _sorted(res.detections.boxes) == _sorted(gt)
    assert res.info["clusters"] == len(res.blocks) >= 2
    # every object lies inside some block
    for b in gt:
        inside = (res.blocks[:, 0] <= b[0]) & (res.blocks[:, 1] <= b[1]) & (res.blocks[:, 2] >= b[2]) & (res.blocks[:, 3] >= b[3])
        assert inside.any()
    # blocks are far smaller than the frame: RE-POSE only looks where objects are
    assert ((res.blocks[:, 2:] - res.blocks[:, :2]).prod(1)).sum() < 0.5 * 1280 * 720
    assert res.info["plan_latency_ms"] <= 20.0 + 1e-9
    assert set(res.timings_ms) == {"coarse", "cluster", "plan", "fine", "total"}


def test_policy_keep_equals_meanshift() -> None:
    frame, _ = _frame(1)
    with LocalExecutor(2, factory=blob_factory) as ex:
        a = Repose(ex, _cfg(), _profile(), policy=None)(frame)
        b = Repose(ex, _cfg(), _profile(), policy=lambda obs: 0)(frame)  # always "keep"
    assert _sorted(a.blocks) == _sorted(b.blocks)


def test_empty_frame_gives_empty_result() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    with LocalExecutor(1, factory=blob_factory) as ex:
        res = Repose(ex, _cfg(), _profile())(frame)
    assert len(res.detections) == 0 and res.info["clusters"] == 0


def test_uniform_and_full_baselines() -> None:
    frame, gt = _frame(2)
    with LocalExecutor(2, factory=blob_factory) as ex:
        u = Uniform(ex, _cfg())(frame)
        f = FullFrame(ex, _cfg(), "a@64")(frame)
    assert len(u.blocks) == 4
    assert _sorted(u.detections.boxes) == _sorted(gt)  # overlap duplicates removed by NMS
    assert _sorted(f.detections.boxes) == _sorted(gt)


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="MODEL@SIZE"):
        parse_option("person_n")
    with pytest.raises(InputError, match="MODEL@SIZE"):
        parse_option("person_n@100")
    with LocalExecutor(1, factory=blob_factory) as ex, pytest.raises(InputError, match="no latency for c at 64"):
        Repose(ex, _cfg(options=["c@64"]), _profile())
    with pytest.raises(InputError):
        from edgerl.utils.config import config_from_dict

        config_from_dict(ReposeConfig, {"planner": "max"})


def test_area_input_hw_golden() -> None:
    from edgerl.repose.pipeline import area_input_hw

    # 1280x720 block at S=640: f = 640 / sqrt(921600) = 0.6667 -> 480 x 853.3 -> (480, 864) after rounding to 32
    assert area_input_hw(1280, 720, 640) == (480, 864)
    # a tiny block is enlarged at most max_upscale times: 100x50 at S=640 -> f = 2 -> (96, 192)
    assert area_input_hw(100, 50, 640, max_upscale=2.0) == (96, 192)
    # never below one stride: 3840x10 at S=64: f = 64 / sqrt(38400) = 0.3266 -> w = 1254.2 -> 1248, h -> 32
    assert area_input_hw(3840, 10, 64, max_upscale=1.0) == (32, 1248)


def test_resized_area_factor_golden() -> None:
    from edgerl.repose.pipeline import resized_area_factor

    blocks = np.array([[0, 0, 1280, 720], [0, 0, 100, 50]])
    # area: S^2 / (W H) (paper eq. (17)), capped at max_upscale^2
    assert resized_area_factor(blocks, 640, "area", 2.0) == pytest.approx([640**2 / (1280 * 720), 4.0])
    # letterbox: (S / max(W, H))^2
    assert resized_area_factor(blocks, 640, "letterbox") == pytest.approx([(640 / 1280) ** 2, (640 / 100) ** 2])


def test_area_resize_tasks_reach_workers() -> None:
    """The executor receives (h, w) inputs under area resizing and S under letterbox."""
    from edgerl.repose.pipeline import run_blocks

    seen = []

    class _Spy:
        n_workers = 1

        def run(self, tasks):
            seen.extend(t.input_size for t in tasks)
            from edgerl.runtime.base import TaskResult
            from edgerl.vision.detections import Detections

            return [TaskResult(t.task_id, 0, Detections.empty(), 0.0) for t in tasks]

    frame = np.zeros((720, 1280, 3), np.uint8)
    blocks = np.array([[0, 0, 1280, 720]])
    run_blocks(frame, blocks, [("m", 640)], _Spy(), 0.1, resize="area")
    run_blocks(frame, blocks, [("m", 640)], _Spy(), 0.1, resize="letterbox")
    assert seen == [(480, 864), 640]


def test_plan_values_objective_golden() -> None:
    from edgerl.repose.pipeline import plan_values

    # bin centres 6, 10, 14 (log2 area) with recall 0.5, 0.9, 1.0. Block 0 is 64x64 run at 64
    # (factor 1): objects of 2^6 and 2^10 px^2 score 0.5 and 0.9; block 1 holds one 2^14 object (1.0).
    prof = _profile()
    blocks = np.array([[0, 0, 64, 64], [100, 100, 164, 164]])
    areas = [np.array([2.0**6, 2.0**10]), np.array([2.0**14])]
    mean = plan_values(prof, [("a", 64)], blocks, areas, "recall", "letterbox", objective="block_mean")
    total = plan_values(prof, [("a", 64)], blocks, areas, "recall", "letterbox", objective="objects")
    assert mean[:, 0] == pytest.approx([0.7, 1.0])  # (0.5 + 0.9) / 2, eq. (18)
    assert total[:, 0] == pytest.approx([1.4, 1.0])  # expected objects found per block
    with pytest.raises(InputError, match="plan objective"):
        plan_values(prof, [("a", 64)], blocks, areas, objective="max")


def test_methods_name_every_detector_they_may_run() -> None:
    cfg = _cfg(coarse_conf=0.2)
    with LocalExecutor(1, factory=blob_factory) as ex:
        assert Repose(ex, cfg, _profile(), policy=None).detector_specs() == [
            ("a", 64, 0.2), ("a", 64, 0.1), ("a", 128, 0.1), ("b", 128, 0.1)
        ]
        assert Uniform(ex, cfg).detector_specs() == [("a", 64, 0.1)]
        assert FullFrame(ex, cfg, "b@128").detector_specs() == [("b", 128, 0.1)]
