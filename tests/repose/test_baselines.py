"""The SAHI and REMIX baselines: SAHI's own sliced inference against our slicing + NMS, and
REMIX plans checked by hand and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgerl.repose.baselines import (
    RemixPlanner,
    SahiSliced,
    grid_edges,
    object_histogram,
    sahi_detection_model,
    sahi_slices,
)
from edgerl.repose.blocks import uniform_blocks
from edgerl.repose.pipeline import ReposeConfig, nms_merge, run_blocks
from edgerl.runtime import LocalExecutor
from edgerl.runtime.testing import blob_factory
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.profile import AreaAccuracy, DetectorProfile

pytest.importorskip("sahi")


def _rows(det: Detections) -> list:
    """Boxes and scores as sorted, rounded rows (order-free comparison)."""
    return sorted(np.round(np.c_[det.boxes, det.scores].astype(np.float64), 4).tolist())


def _covers(blocks: np.ndarray, wh: tuple[int, int]) -> bool:
    mask = np.zeros((wh[1], wh[0]), bool)
    for x0, y0, x1, y1 in blocks:
        mask[y0:y1, x0:x1] = True
    return bool(mask.all())


# --------------------------------------------------------------------------- SAHI


def _gradient_scene(seed: int = 0, wh: tuple[int, int] = (1000, 700), n: int = 40) -> np.ndarray:
    """Bright rectangles whose brightness ramps from the top-left to the bottom-right corner.

    A rectangle cut by a slice edge (either axis) is detected as a part whose mean brightness,
    hence score, differs from the whole rectangle's, so NMS never breaks a tie between the two
    (SAHI and we order tied scores differently).
    """
    rng = np.random.default_rng(seed)
    w, h = wh
    img = np.zeros((h, w, 3), np.uint8)
    for _ in range(n):
        bw, bh = int(rng.integers(8, 40)), int(rng.integers(10, 60))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        if img[max(y - 3, 0) : y + bh + 3, max(x - 3, 0) : x + bw + 3].any():
            continue
        d = np.add.outer(np.arange(bh), np.arange(bw)) / (bw + bh - 2)
        img[y : y + bh, x : x + bw] = (205 + 50 * d).round().astype(np.uint8)[:, :, None]
    return img


def _cfg(**kw) -> ReposeConfig:
    base = dict(
        n_workers=2,
        options=["a@320", "a@640"],
        budget_ms=50.0,
        conf_threshold=0.05,
        nms_iou=0.5,
        uniform_option="a@320",
        accuracy_kind="recall",  # the hand-made profiles below record recall at IoU 0.5 only
    )
    base.update(kw)
    return ReposeConfig(**base)


def test_sahi_slices_are_sahis_own_and_differ_from_uniform_blocks() -> None:
    from sahi.slicing import get_slice_bboxes

    wh = (1280, 720)
    s = sahi_slices(wh, 512, 0.2)
    assert s.tolist() == get_slice_bboxes(720, 1280, 512, 512, False, 0.2, 0.2)
    cols, rows = len(np.unique(s[:, 0])), len(np.unique(s[:, 1]))
    assert (cols, rows) == (3, 2) and len(s) == 6
    assert ((s[:, 2] - s[:, 0]) == 512).all() and ((s[:, 3] - s[:, 1]) == 512).all()
    u = uniform_blocks(wh, cols, rows, 0.2)
    assert len(u) == len(s)
    assert _covers(s, wh) and _covers(u, wh)
    # SAHI steps 512 - int(0.2 * 512) = 410 px and pushes the last slice back inside the frame
    # (a shorter last step); uniform_blocks spreads smaller, equal blocks evenly.
    assert np.diff(np.unique(s[:, 0])).tolist() == [410, 358]
    ux = np.diff(np.unique(u[:, 0]))
    assert ux.max() - ux.min() <= 1
    assert (u[:, 2] - u[:, 0]).max() < 512


@pytest.mark.parametrize("overlap", [0.2, 0.35])
def test_sahi_adapter_equals_our_slicing_plus_nms(overlap: float) -> None:
    from sahi.slicing import get_slice_bboxes

    frame = _gradient_scene()
    h, w = frame.shape[:2]
    cfg = _cfg()
    with LocalExecutor(2, factory=blob_factory) as ex:
        res = SahiSliced(
            ex, cfg, "a@320", slice_px=320, overlap=overlap, postprocess="NMS", match_metric="IOU"
        )(frame)
        slices = np.asarray(get_slice_bboxes(h, w, 320, 320, False, overlap, overlap), np.int64)
        raw = run_blocks(frame, slices, [("a", 320)] * len(slices), ex, cfg.conf_threshold)
    # SAHI suppresses at IoU >= threshold, our NMS at IoU > threshold; pairs at exactly 0.5 do
    # occur (a rectangle cut in half by a slice edge), so the reference threshold sits just
    # below (IoUs of boxes this small are never within 1e-6 of 0.5 unless equal to it).
    ref = nms_merge(raw, cfg.nms_iou - 1e-6)
    ours = nms_merge(raw, cfg.nms_iou)
    assert set(map(tuple, _rows(ref))) <= set(map(tuple, _rows(ours)))
    assert res.blocks.tolist() == slices.tolist()
    assert res.info["slices"] == len(slices) > 4
    assert len(res.detections) == len(ref) > 10
    assert _rows(res.detections) == _rows(ref)
    # the comparison is not vacuous: NMS removed duplicates from overlaps and cut rectangles
    assert len(raw) > len(ref)
    assert set(res.timings_ms) >= {"slice", "fine", "merge", "total"}


class _FixedDetector:
    """Returns the same two boxes on any image: a big box and a small one inside it."""

    def detect(self, images):
        boxes = np.array([[10, 10, 110, 110], [20, 20, 40, 40]], np.float32)
        return [Detections(boxes, np.array([0.9, 0.8]), np.zeros(2)) for _ in images]


def test_low_confidence_keeps_requested_postprocess() -> None:
    from sahi.predict import get_sliced_prediction

    frame = np.zeros((200, 200, 3), np.uint8)
    cfg = _cfg(conf_threshold=0.05)  # below SAHI's 0.1 switch
    method = SahiSliced(
        None,
        cfg,
        "a@320",
        slice_px=320,
        postprocess="GREEDYNMM",
        match_metric="IOS",
        match_threshold=0.5,
        detector=_FixedDetector(),
    )
    res = method(frame)
    # GREEDYNMM with IoS: the small box (IoS 1 with the big one) is merged into it
    assert _rows(res.detections) == [[10.0, 10.0, 110.0, 110.0, 0.9]]
    assert res.info["postprocess"] == "GREEDYNMM"
    # the trap being avoided: without force_postprocess_type SAHI silently runs NMS/IoU and
    # keeps both boxes (IoU 0.04)
    model = sahi_detection_model(_FixedDetector().detect, confidence_threshold=0.05)
    trap = get_sliced_prediction(
        frame,
        model,
        320,
        320,
        0.2,
        0.2,
        perform_standard_pred=False,
        postprocess_type="GREEDYNMM",
        postprocess_match_metric="IOS",
        postprocess_match_threshold=0.5,
        verbose=0,
    )
    assert len(trap.object_prediction_list) == 2


def test_sahi_adapter_applies_shift_and_threshold() -> None:
    model = sahi_detection_model(
        _FixedDetector().detect, class_names=["person"], confidence_threshold=0.85
    )
    img = np.zeros((120, 120, 3), np.uint8)
    model.perform_inference(img)
    model.convert_original_predictions(shift_amount=[100, 50], full_shape=[400, 400])
    preds = model.object_prediction_list
    assert len(preds) == 1  # 0.8 < 0.85 dropped
    assert preds[0].get_shifted_object_prediction().bbox.to_xyxy() == [110, 60, 210, 160]
    assert preds[0].category.name == "person"


def test_sahi_bad_inputs() -> None:
    with pytest.raises(InputError, match="postprocess"):
        SahiSliced(None, _cfg(), postprocess="SOFT")
    with pytest.raises(InputError, match="match_metric"):
        SahiSliced(None, _cfg(), match_metric="GIOU")
    with pytest.raises(InputError, match="overlap"):
        sahi_slices((100, 100), 64, 1.0)


# --------------------------------------------------------------------------- REMIX

# recall 0 up to log2 area 8.5, 1 from 9.5 (bin centres 2, 6, 8.5, 9.5, 10.5, 17.5)
_STEP_ACC = AreaAccuracy(
    [0, 4, 8, 9, 10, 11, 24], [10] * 6, [0, 0, 0, 10, 10, 10], [10] * 6, [10] * 6
)


def _remix_profile() -> DetectorProfile:
    return DetectorProfile(
        latency_ms={"a": {"320": 10.0, "640": 30.0}, "b": {"640": 45.0}},
        accuracy={
            "a": _STEP_ACC,
            "b": AreaAccuracy([0, 6, 24], [10, 10], [2, 10], [10, 10], [10, 10]),
        },
    )


_QUADRANTS = {"tl": (0, 0), "tr": (320, 0), "bl": (0, 320), "br": (320, 320)}


def _squares(quadrant: str, n: int = 5, seed: int = 0) -> np.ndarray:
    """n non-touching 16x16 boxes well inside one 320x320 quadrant of a 640x640 frame."""
    ox, oy = _QUADRANTS[quadrant]
    rng = np.random.default_rng(seed)
    cells = rng.choice(49, size=n, replace=False)
    xy = np.array([[ox + 20 + 40 * (c % 7), oy + 20 + 40 * (c // 7)] for c in cells], np.float32)
    return np.c_[xy, xy + 16]


def _det(boxes: np.ndarray, score: float = 0.9) -> Detections:
    return Detections(boxes, np.full(len(boxes), score), np.zeros(len(boxes)))


@pytest.mark.parametrize("quadrant", list(_QUADRANTS))
def test_remix_spends_the_one_expensive_block_on_the_busy_quadrant(quadrant: str) -> None:
    # By hand: a 16x16 object (area bin centre 2^8.25 px^2) is found (recall 1) only when its
    # block is a 320x320 quadrant run at 640 (x4 area: 2^10.25); at 320, or in any block with a
    # 640 px side, its resized area stays <= 2^8.25 (recall 0). The budget (50 ms) pays one
    # a@640 block (30 ms) plus two a@320 blocks: the 2x2 grid (4 blocks, 60 ms) does not fit,
    # the 2x2 grid with its empty cells merged row-wise (3 blocks, 50 ms) does.
    cfg = _cfg(budget_ms=50.0)
    planner = RemixPlanner(
        None,
        cfg,
        _remix_profile(),
        history_frames=3,
        candidate_grids=((1, 1), (1, 2), (2, 1), (2, 2)),
        overlap=0.0,
    )
    for seed in range(3):
        planner.observe(_det(_squares(quadrant, seed=seed)), (640, 640))
    plan = planner.plan((640, 640))
    assert plan.partition == "2x2-merged" and len(plan.blocks) == 3
    expensive = [i for i, o in enumerate(plan.options) if o == ("a", 640)]
    assert len(expensive) == 1
    ox, oy = _QUADRANTS[quadrant]
    assert plan.blocks[expensive[0]].tolist() == [ox, oy, ox + 320, oy + 320]
    assert plan.latency_ms == pytest.approx(50.0)
    assert plan.feasible and not plan.default
    assert plan.expected_objects == pytest.approx(5.0)
    assert plan.estimated_recall == pytest.approx(1.0)
    # the two other blocks cover the rest of the frame
    assert _covers(plan.blocks, (640, 640))


def test_remix_with_a_tighter_budget_finds_nothing_worth_paying_for() -> None:
    # 40 ms cannot pay a@640 on a quadrant plus the rest of the frame: every feasible plan has
    # estimated value 0, and the fastest of them (one a@320 block on the full frame) wins.
    planner = RemixPlanner(
        None, _cfg(budget_ms=40.0), _remix_profile(), candidate_grids=((1, 1), (2, 2)), overlap=0.0
    )
    planner.observe(_det(_squares("tl")), (640, 640))
    plan = planner.plan((640, 640))
    assert plan.partition == "1x1" and plan.options == (("a", 320),)
    assert plan.value == 0.0 and plan.latency_ms == 10.0


def test_remix_first_frame_default_then_planned() -> None:
    frame = np.zeros((640, 640, 3), np.uint8)
    gt = _squares("tl")
    for x0, y0, x1, y1 in gt.astype(int):
        frame[y0:y1, x0:x1] = 255
    cfg = _cfg(budget_ms=50.0)
    with LocalExecutor(2, factory=blob_factory) as ex:
        planner = RemixPlanner(
            ex, cfg, _remix_profile(), candidate_grids=((1, 1), (2, 2)), overlap=0.0
        )
        first = planner(frame)
        second = planner(frame)
    assert first.info["default_plan"] and first.info["history_frames"] == 0
    assert first.blocks.tolist() == [
        [0, 0, 320, 320],
        [320, 0, 640, 320],
        [0, 320, 320, 640],
        [320, 320, 640, 640],
    ]
    assert first.options == (("a", 320),) * 4  # the fastest option
    assert _rows(first.detections) == _rows(_det(gt, 1.0))
    assert not second.info["default_plan"] and second.info["history_frames"] == 1
    assert second.info["partition"] == "2x2-merged"
    assert second.blocks[second.options.index(("a", 640))].tolist() == [0, 0, 320, 320]
    assert _rows(second.detections) == _rows(_det(gt, 1.0))
    assert second.info["plan_latency_ms"] <= 50.0
    assert set(second.timings_ms) == {"plan", "fine", "total"}


def _brute_best(values: np.ndarray, lat: np.ndarray, budget: float) -> float:
    """Best total value over every option assignment within the summed-latency budget."""
    k, m = values.shape
    combos = np.array(list(itertools.product(range(m), repeat=k)))
    rows = np.arange(k)
    ok = lat[combos].sum(1) <= budget + 1e-9
    return float(values[rows, combos[ok]].sum(1).max()) if ok.any() else -np.inf


@pytest.mark.parametrize("budget", [25.0, 40.0, 70.0, 120.0])
def test_remix_plan_respects_budget_and_is_best_over_candidates(budget: float) -> None:
    rng = np.random.default_rng(int(budget))
    cfg = _cfg(options=["a@320", "a@640", "b@640"], budget_ms=budget)
    planner = RemixPlanner(None, cfg, _remix_profile(), history_frames=4)
    wh = (960, 540)
    for _ in range(6):  # more frames than the window: only the last 4 count
        n = int(rng.integers(3, 12))
        xy = rng.uniform([0, 0], [900, 480], size=(n, 2))
        wd = rng.uniform(6, 60, size=(n, 2))
        planner.observe(_det(np.c_[xy, xy + wd]), wh)
    assert planner.history_len == 4
    plan = planner.plan(wh)
    lat = {o: cfg_l for o, cfg_l in zip(planner.options, planner.latency)}
    assert plan.latency_ms <= budget + 1e-9 and plan.feasible
    assert plan.latency_ms == pytest.approx(sum(lat[o] for o in plan.options))
    cands = planner.candidates(wh)
    names = [c.name for c in cands]
    assert {"1x1", "1x2", "2x1", "2x2", "3x3"} <= set(names)
    best = max(_brute_best(c.values, planner.latency, budget) for c in cands)
    assert plan.value == pytest.approx(best, abs=1e-9)


def test_remix_parallel_planner_bounds_the_makespan() -> None:
    cfg = _cfg(options=["a@320", "a@640"], budget_ms=40.0, planner="parallel", n_workers=2)
    planner = RemixPlanner(None, cfg, _remix_profile(), candidate_grids=((2, 2),), overlap=0.0)
    planner.observe(_det(np.r_[_squares("tl"), _squares("br", seed=1)]), (640, 640))
    plan = planner.plan((640, 640))
    # 2 x a@640 (busy quadrants) + 2 x a@320 sum to 80 ms, but each of two workers runs one of
    # each in 40 ms: the makespan, not the sum, is held within the budget
    loads = np.zeros(2)
    for (m, s), wkr in zip(plan.options, plan.workers):
        loads[wkr] += _remix_profile().latency(m, s)
    assert sorted(plan.options) == [("a", 320), ("a", 320), ("a", 640), ("a", 640)]
    assert loads.max() <= 40.0 and plan.latency_ms == pytest.approx(loads.max())
    assert plan.estimated_recall == pytest.approx(1.0)


def test_remix_history_window_and_resets() -> None:
    planner = RemixPlanner(None, _cfg(), _remix_profile(), history_frames=2, history_conf=0.5)
    planner.observe(_det(_squares("tl"), score=0.3), (640, 640))  # below history_conf
    assert planner.distribution((640, 640)).sum() == 0
    assert planner.plan((640, 640)).default  # nothing seen yet
    for _ in range(3):
        planner.observe(_det(_squares("tl")), (640, 640))
    assert planner.history_len == 2
    assert planner.distribution((640, 640)).sum() == pytest.approx(5.0)
    assert planner.distribution((800, 600)) is None
    planner.observe(_det(_squares("tl")), (800, 600))  # new frame size: old history dropped
    assert planner.history_len == 1


def test_object_histogram_cells_and_bins() -> None:
    boxes = np.array([[0, 0, 16, 16], [630, 630, 640, 640], [319, 0, 323, 4]], np.float32)
    hist = object_histogram(boxes, (640, 640), 2, 2)
    assert hist.sum() == 3
    assert hist[0, 0, 16] == 1  # area 256 = 2^8 -> bin [8, 8.5)
    assert hist[1, 1, 13] == 1  # area 100 -> log2 6.64 -> bin [6.5, 7)
    assert hist[0, 1, 8] == 1  # centre x 321 >= 320 -> right cell; area 16 -> bin [4, 4.5)
    assert grid_edges(640, 3).tolist() == [0, 213, 426, 640]
    assert set(grid_edges(640, 3)) <= set(grid_edges(640, 6))


def test_remix_bad_inputs() -> None:
    with pytest.raises(InputError, match="candidate_grids"):
        RemixPlanner(None, _cfg(), _remix_profile(), candidate_grids=((0, 2),))
    with pytest.raises(InputError, match="no accuracy for c"):
        prof = _remix_profile()
        prof.latency_ms["c"] = {"320": 5.0}
        RemixPlanner(None, _cfg(options=["c@320"]), prof)
    with pytest.raises(InputError, match="no latency for a at 960"):
        RemixPlanner(None, _cfg(options=["a@960"]), _remix_profile())
    planner = RemixPlanner(None, _cfg(budget_ms=5.0, on_infeasible="error"), _remix_profile())
    planner.observe(_det(_squares("tl")), (640, 640))
    with pytest.raises(InputError, match="budget_ms=5"):
        planner.plan((640, 640))


def test_remix_blocks_grow_by_the_overlap() -> None:
    planner = RemixPlanner(None, _cfg(), _remix_profile(), candidate_grids=((2, 2),), overlap=0.2)
    planner.observe(_det(_squares("tl")), (640, 640))
    (cand,) = [c for c in planner.candidates((640, 640)) if c.name == "2x2"]
    # each side grows by 0.2 / 2 of a 320 px cell, clipped to the frame
    assert cand.blocks.tolist() == [
        [0, 0, 352, 352],
        [288, 0, 640, 352],
        [0, 288, 352, 640],
        [288, 288, 640, 640],
    ]
    assert cand.cores.tolist() == [
        [0, 0, 320, 320],
        [320, 0, 640, 320],
        [0, 320, 320, 640],
        [320, 320, 640, 640],
    ]
    assert cand.expected_objects.tolist() == [5.0, 0.0, 0.0, 0.0]
