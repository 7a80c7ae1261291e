"""Rewards R1 (eq. (1)) and R2 (eq. (2)) of paper 004 on toy streams."""

from __future__ import annotations

import numpy as np
import pytest

from edgerl.streaming.rewards import decision_rewards, reward_r1, reward_r2, segments
from edgerl.streaming.sap import StreamOutput
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import GroundTruth

FPS = 10.0


def _box(i: int, speed: float) -> np.ndarray:
    x = 10.0 + speed * i
    return np.array([[x, 20.0, x + 40.0, 60.0]], np.float32)


def _stream(n: int, speed: float) -> list[GroundTruth]:
    return [GroundTruth(_box(i, speed), np.array([0]), 640, 480) for i in range(n)]


def _outputs(n: int, speed: float, delay_frames: int) -> list[StreamOutput]:
    # output for frame i, exact box, delivered delay_frames later (at (i + delay) / fps)
    return [
        StreamOutput((i + delay_frames) / FPS, i, Detections(_box(i, speed), [0.9], [0]))
        for i in range(n)
    ]


def test_perfect_outputs_give_one_and_none_give_zero() -> None:
    gts = _stream(8, speed=30.0)
    perfect = _outputs(8, 30.0, delay_frames=0)
    assert reward_r1(gts, perfect, (0, 8), FPS) == pytest.approx(1.0)
    assert reward_r1(gts, perfect, (3, 6), FPS) == pytest.approx(1.0)
    assert reward_r1(gts, [], (0, 8), FPS) == 0.0


def test_zero_order_hold_uses_the_latest_output_in_time() -> None:
    # Static object, outputs one frame late: frame 0 has no output yet (a miss), frames 1..3
    # hold the previous frame's (identical) box. 3 of 4 objects found at precision 1:
    # interpolated precision 1 at the 76 recall points 0.00..0.75 of 101 -> AP = 76 / 101.
    gts = _stream(4, speed=0.0)
    late = _outputs(4, 0.0, delay_frames=1)
    assert reward_r1(gts, late, (0, 4), FPS) == pytest.approx(76 / 101)
    # the segment [1, 4) starts after the first output: every frame is covered -> 1.0
    assert reward_r1(gts, late, (1, 4), FPS) == pytest.approx(1.0)
    # Fast object (30 px per frame on a 40 px box): the held box of frame i - 1 overlaps frame
    # i's box by IoU = (10 x 40) / (2 x 40 x 40 - 10 x 40) = 400 / 2800 = 0.14 < 0.5: all misses
    fast = _stream(4, speed=30.0)
    assert reward_r1(fast, _outputs(4, 30.0, delay_frames=1), (1, 4), FPS) == 0.0


def test_outputs_after_the_segment_do_not_count() -> None:
    gts = _stream(6, speed=0.0)
    # the only output arrives at frame 4's time: segment [0, 4) has nothing to show
    only_late = [StreamOutput(4 / FPS, 4, Detections(_box(4, 0.0), [0.9], [0]))]
    assert reward_r1(gts, only_late, (0, 4), FPS) == 0.0
    assert reward_r1(gts, only_late, (4, 6), FPS) == pytest.approx(1.0)


def test_empty_segment_rewards_zero() -> None:
    empty = [GroundTruth(np.zeros((0, 4)), np.zeros(0), 640, 480) for _ in range(3)]
    outs = [StreamOutput(0.0, 0, Detections(_box(0, 0.0), [0.9], [0]))]
    assert reward_r1(empty, outs, (0, 3), FPS) == 0.0
    assert reward_r1(_stream(3, 0.0), outs, (2, 2), FPS) == 0.0


def test_r2_arithmetic() -> None:
    # 10 * (0.6 - 0.45) = 1.5
    assert reward_r2(0.6, 0.45, 10.0) == pytest.approx(1.5)
    assert reward_r2(0.2, 0.5) == pytest.approx(-0.3)
    with pytest.raises(InputError, match="lambda"):
        reward_r2(0.6, 0.45, 0.0)
    with pytest.raises(InputError, match="finite"):
        reward_r2(float("nan"), 0.45)


def test_decision_rewards_over_segments() -> None:
    assert segments([0, 3, 5], 8) == [(0, 3), (3, 5), (5, 8)]
    gts = _stream(8, speed=0.0)
    late = _outputs(8, 0.0, delay_frames=1)
    perfect = _outputs(8, 0.0, delay_frames=0)
    r1 = decision_rewards(gts, late, [0, 4], FPS)
    # [0, 4): 76 / 101 as above; [4, 8): held outputs cover every frame -> 1
    assert r1.tolist() == pytest.approx([76 / 101, 1.0])
    r2 = decision_rewards(gts, late, [0, 4], FPS, fixed_outputs=perfect, scale=2.0)
    # 2 * (76 / 101 - 1) = -50 / 101 on the first segment, 0 on the second
    assert r2.tolist() == pytest.approx([-50 / 101, 0.0])
    with pytest.raises(InputError, match="strictly increasing"):
        segments([0, 4, 4], 8)


def test_bad_frame_range() -> None:
    gts = _stream(4, 0.0)
    with pytest.raises(InputError, match="frame_range"):
        reward_r1(gts, [], (2, 5), FPS)
    with pytest.raises(InputError, match="frame_range"):
        reward_r1(gts, [], (3, 1), FPS)
