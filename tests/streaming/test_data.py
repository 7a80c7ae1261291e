"""Synthetic streaming videos and the detection cache: top-k from candidates vs the detector,
cache files, runtime profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgerl.vision.detectors.onnx_backend as onnx_backend
from edgerl.streaming import data as sdata
from edgerl.streaming.configs import ConfigGrid, input_hw
from edgerl.streaming.data import (
    StreamDataConfig,
    StreamDataset,
    topk_nms,
    video_schedule,
    video_synth_config,
)
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError
from edgerl.vision.detectors import load_detector
from edgerl.vision.synth import render_video

GRID = ConfigGrid(models=["person_n"], scales=[192, 128], topks=[100, 300], strides=[1])


def tiny_data(cache: Path, **kw) -> StreamDataConfig:
    base = dict(width_px=320, height_px=192, n_frames=12, train_frames=None, n_train_videos=1, n_test_videos=1, nms_timing_frames=2, cache_dir=str(cache))
    return StreamDataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> StreamDataset:
    return StreamDataset(tiny_data(tmp_path_factory.mktemp("cache")), GRID)


def test_topk_nms_golden():
    # sorted candidates: A (0.9), B overlaps A (IoU 0.81 > 0.6) (0.8), C apart (0.7), D (0.6)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [-5, 40, 5, 50]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    d = topk_nms(boxes, scores, 2, 0.6, (100, 100))
    assert d.scores.tolist() == pytest.approx([0.9])  # only A and B enter; B is suppressed
    d = topk_nms(boxes, scores, 4, 0.6, (100, 100))
    assert d.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert d.boxes[2].tolist() == [0, 40, 5, 50]  # clipped to the frame after NMS
    d = topk_nms(boxes, scores, 3, 0.9, (100, 100))  # B survives a looser NMS; cap = k = 3
    assert len(d) == 3 and d.classes.tolist() == [0, 0, 0]


def test_topk_from_candidates_equals_the_detector_with_that_cap(monkeypatch):
    cfg = StreamDataConfig(width_px=320, height_px=192)
    frames = [s.image for s in render_video(video_synth_config(cfg, 5), 2, np.random.default_rng(5))]
    cand = sdata._Detector("person_n", cfg)
    cases = []
    for scale in (192, 128):
        hw = input_hw(scale, (192, 320))
        for img in frames:
            boxes, scores, seconds = cand.candidates(img, hw)
            assert seconds > 0 and np.all(np.diff(scores) <= 0) and len(scores) <= cfg.max_candidates
            cases.append((img, hw, boxes, scores))
    for k in (20, 100, 300):
        # the detector itself with k as its pre-NMS cap and max_detections = k
        monkeypatch.setattr(onnx_backend, "MAX_NMS_CANDIDATES", k)
        det = load_detector("person_n", conf_threshold=cfg.conf_threshold, max_detections=k, iou_threshold=cfg.nms_iou)
        for img, hw, boxes, scores in cases:
            mine = topk_nms(boxes, scores, k, cfg.nms_iou, (192, 320))
            ref = det.detect_timed([img], input_hw=hw)[0][0]
            assert len(mine) == len(ref) > 0
            np.testing.assert_allclose(mine.boxes, ref.boxes, atol=1e-3)
            np.testing.assert_array_equal(mine.scores, ref.scores)


def test_dataset_structure(dataset):
    assert [v.name for v in dataset.train] == ["train-0"] and [v.name for v in dataset.test] == ["test-1000000"]
    for v in dataset.train + dataset.test:
        assert v.n_frames == 12 and v.image_hw == (192, 320)
        for g in v.gts:
            assert np.all(g.boxes[:, 2] <= 320) and np.all(g.boxes[:, 3] <= 192) and np.all(g.classes == 0)
        for key in GRID.model_scales():
            assert v.infer_s[key].shape == (12,) and np.all(v.infer_s[key] > 0)
            boxes, scores, off = v.candidates[key]
            assert off[0] == 0 and off[-1] == len(boxes) == len(scores)
        d = v.detections("person_n@192_k100_s1", 3)
        assert len(d) <= 100 and v.detections("person_n@192_k100_s1", 3) is d  # memoised
    with pytest.raises(InputError, match=r"no cached detections for person_n@720"):
        dataset.train[0].detections("person_n@720_k100_s1", 0)


def test_cache_file_is_reused(tmp_path, monkeypatch, dataset):
    cfg = tiny_data(dataset.cache_dir)
    files = sorted(p.name for p in Path(dataset.cache_dir).iterdir())
    assert len(files) == 2 and all(f.startswith("video_s") and f.endswith(".npz") for f in files)

    def no_render(*a, **k):
        raise AssertionError("rendered although the cache holds everything")

    monkeypatch.setattr(sdata, "_render_frames", no_render)
    again = StreamDataset(cfg, GRID)
    v0, v1 = dataset.train[0], again.train[0]
    np.testing.assert_array_equal(v0.infer_s[("person_n", 192)], v1.infer_s[("person_n", 192)])
    np.testing.assert_array_equal(v0.gts[5].boxes, v1.gts[5].boxes)
    # another scale is missing: the video is rendered again
    with pytest.raises(AssertionError, match="rendered"):
        StreamDataset(cfg, GRID.model_copy(update={"scales": [192, 160]}))


def test_runtime_profile(dataset):
    prof = dataset.runtime_profile(GRID, speed_factor=2.0, slowdowns=[1.0, 3.0])
    v = dataset.train[0]
    det = v.infer_s[("person_n", 128)]
    nms = float(v.nms_s[("person_n", 128, 300)].mean())
    s = prof.samples("person_n@128_k300_s1")
    np.testing.assert_allclose(s, np.concatenate([det + nms, 3 * (det + nms)]))
    assert prof.mean_s("person_n@128_k300_s1") == pytest.approx(2 * (det.mean() + nms) / 2.0)
    assert dataset.mean_runtime_frames("person_n@128_k300_s1", 2.0) == pytest.approx((det.mean() + nms) / 2 * 30)
    with pytest.raises(InputError, match="slowdowns"):
        dataset.runtime_profile(GRID, slowdowns=[0.0])


def test_runtime_profile_without_samples_is_refused(dataset, monkeypatch):
    monkeypatch.setitem(dataset.train[0].infer_s, ("person_n", 192), np.zeros(0))
    with pytest.raises(InputError, match=r"configuration 'person_n@192_k100_s1' has no runtime samples"):
        dataset.runtime_profile(GRID)


def test_config_validation(tmp_path):
    with pytest.raises(InputError, match="overlap"):
        config_from_dict(StreamDataConfig, {"n_train_videos": 5, "test_seed_start": 3}, "data")
    with pytest.raises(InputError, match=r"grid.topks \[2000\] exceed data.max_candidates"):
        StreamDataset(tiny_data(tmp_path), GRID.model_copy(update={"topks": [100, 2000]}))
    with pytest.raises(InputError, match="unknown detector"):
        StreamDataset(tiny_data(tmp_path), GRID.model_copy(update={"models": ["no_such_model"]}))


def test_scene_variation_is_seeded():
    cfg = StreamDataConfig()
    a, b = video_synth_config(cfg, 3), video_synth_config(cfg, 3)
    assert a == b and a.width_px == 1280 and a.fps == 30.0
    heights = {round(video_synth_config(cfg, s).person_height_max_px, 3) for s in range(6)}
    assert len(heights) == 6
    # zoom in [0.45, 2.2] of the resized default (400 px at 2160 -> 133.33 px at 720)
    assert all(0.45 * 133.3 <= h <= 2.2 * 133.4 for h in heights)
    flat = video_synth_config(cfg.model_copy(update={"vary_scenes": False}), 3)
    assert flat.person_height_max_px == pytest.approx(400 * 720 / 2160)
    over = video_synth_config(cfg.model_copy(update={"synth_overrides": {"walk_speed_mps": 3.0}}), 3)
    assert over.walk_speed_mps == 3.0


@pytest.mark.parametrize("seed", [0, 1, 7, 1_000_000])
def test_video_schedule_scenes_tile_the_video(seed):
    cfg = StreamDataConfig()
    sched = video_schedule(cfg, seed, 300)
    assert sched == video_schedule(cfg, seed, 300)  # seeded
    assert sched[0].start_frame == 0 and sched[0].render_seed == (seed,)
    for k in range(1, len(sched)):
        assert sched[k].start_frame == sched[k - 1].start_frame + sched[k - 1].n_frames  # no gap
        assert sched[k].render_seed == (seed, 2, k)
    assert sched[-1].start_frame + sched[-1].n_frames == 300
    # every scene 60..150 frames; the last may absorb a rest under 60: at most 60 + 150 - 1
    assert all(60 <= s.n_frames <= 150 for s in sched[:-1]) and 60 <= sched[-1].n_frames <= 209
    for s in sched:
        zoom = s.synth.person_height_max_px / (400 * 720 / 2160)
        assert 0.45 - 1e-9 <= zoom <= 2.2 + 1e-9
        assert 10 <= s.synth.people_max <= 160 and s.synth.people_min == max(1, 2 * s.synth.people_max // 3)
        assert 0.5 * 1.3 - 1e-9 <= s.synth.walk_speed_mps <= 2.8 * 1.3 + 1e-9
    # the first scene does not depend on the length of the video
    assert video_schedule(cfg, seed, 90)[0].synth == sched[0].synth


def test_video_schedule_one_scene_and_bad_settings():
    cfg = StreamDataConfig(scene_frames=None)
    (only,) = video_schedule(cfg, 4, 300)
    assert (only.start_frame, only.n_frames, only.render_seed) == (0, 300, (4,))
    assert video_schedule(StreamDataConfig(), 4, 300)[0].synth == only.synth
    # 300 frames in scenes of exactly 100: three scenes with distinct content
    three = video_schedule(StreamDataConfig(scene_frames=[100, 100]), 4, 300)
    assert [s.n_frames for s in three] == [100, 100, 100]
    assert len({s.synth.person_height_max_px for s in three}) == 3
    with pytest.raises(InputError, match="scene_frames"):
        config_from_dict(StreamDataConfig, {"scene_frames": [50, 10]}, "data")
    with pytest.raises(InputError, match="train_scene_frames"):
        config_from_dict(StreamDataConfig, {"train_scene_frames": [50, 10]}, "data")
    with pytest.raises(InputError, match="zoom_range"):
        config_from_dict(StreamDataConfig, {"zoom_range": [0.0, 2.0]}, "data")
    with pytest.raises(InputError, match="speed_range"):
        config_from_dict(StreamDataConfig, {"speed_range": [1.0, 4.0]}, "data")
    with pytest.raises(InputError, match="n_frames"):
        video_schedule(cfg, 4, 0)


def test_scenes_are_cut_in_the_rendered_video(tmp_path):
    # 12 frames in scenes of 4: every 4th frame starts a new plaza (a cut), inside a scene the
    # background stays; the one-scene video is a different cache file.
    cfg = tiny_data(tmp_path, scene_frames=[4, 4])
    sched = video_schedule(cfg, 0, 12)
    assert [s.start_frame for s in sched] == [0, 4, 8]
    frames = [f.image.astype(np.int16) for f in sdata._render_frames(sched)]
    step = [float(np.abs(a - b).mean()) for a, b in zip(frames, frames[1:])]
    cuts = [step[3], step[7]]
    inside = [x for i, x in enumerate(step) if i not in (3, 7)]
    assert min(cuts) > 2 * max(inside)
    ds = StreamDataset(cfg, GRID.model_copy(update={"scales": [128], "topks": [100]}))
    assert ds.train[0].n_frames == 12
    one = StreamDataset(tiny_data(tmp_path, scene_frames=None), GRID.model_copy(update={"scales": [128], "topks": [100]}))
    assert len(list(tmp_path.iterdir())) == 4 and one.train[0].n_frames == 12


def test_train_scene_frames_only_change_the_training_videos():
    cfg = StreamDataConfig(scene_frames=[100, 100], train_scene_frames=[30, 30])
    # a training video of 150 frames in scenes of 30: five scenes; a test video keeps 100
    train = video_schedule(cfg, 4, 150, "train")
    assert [s.n_frames for s in train] == [30] * 5
    assert [s.n_frames for s in video_schedule(cfg, 4, 300)] == [100, 100, 100]
    assert video_schedule(cfg, 4, 300, "test") == video_schedule(StreamDataConfig(scene_frames=[100, 100]), 4, 300)
    # scene content draws follow the same generator: the first scene is the same
    assert train[0].synth == video_schedule(cfg, 4, 300)[0].synth
    assert cfg.scene_range("train") == [30, 30] and cfg.scene_range("test") == [100, 100]
    # with one scene per video the training range is not used
    assert StreamDataConfig(scene_frames=None, train_scene_frames=[30, 30]).scene_range("train") is None
