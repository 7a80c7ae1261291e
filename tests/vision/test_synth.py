"""Tests of the synthetic plaza generator: determinism, geometry, occlusion, video, COCO output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edgerl.utils.errors import InputError
from edgerl.vision.boxes import iou_matrix
from edgerl.vision.synth import (
    MEAN_STATURE_M,
    GroundCamera,
    Scene,
    SynthConfig,
    render_scene,
    render_video,
    write_dataset,
)

SMALL = SynthConfig(people_min=40, people_max=60).resized(480, 270)


@pytest.fixture(scope="module")
def scene_4k() -> Scene:
    """One default 4K still, shared by the geometry tests."""
    return render_scene(SynthConfig(), np.random.default_rng(7))


@pytest.fixture(scope="module")
def scene_no_clutter() -> tuple[SynthConfig, Scene]:
    """A mid-size still where only people can occlude people."""
    cfg = SynthConfig(clutter=0.0, people_min=150, people_max=150).resized(1280, 720)
    return cfg, render_scene(cfg, np.random.default_rng(11))


# ----------------------------------------------------------------------------- config, camera


def test_config_presets_and_validation():
    easy, hard = SynthConfig.preset("easy"), SynthConfig.preset("hard")
    assert easy.people_max < SynthConfig().people_max < hard.people_max
    assert hard.person_height_min_px < easy.person_height_min_px
    assert SynthConfig.preset("default", noise_std=0.0).noise_std == 0.0
    with pytest.raises(InputError, match="unknown"):
        SynthConfig.preset("medium")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="people_min"):
        SynthConfig(people_min=10, people_max=5)
    with pytest.raises(ValidationError):
        SynthConfig(blur_px=4)
    with pytest.raises(ValidationError):
        SynthConfig(colour="red")  # unknown field
    small = SynthConfig().resized(960, 540)
    assert (small.width_px, small.height_px) == (960, 540)
    assert small.person_height_max_px == pytest.approx(100.0)
    # Every field documents itself.
    assert all(f.description for f in SynthConfig.model_fields.values())


def test_camera_perspective_model():
    cfg = SynthConfig()
    cam = GroundCamera.from_config(cfg)
    assert cam.horizon_px == pytest.approx(0.2 * 2160)
    # Calibration: a mean person on the bottom row is person_height_max_px tall, and at the far
    # end of the plaza person_height_min_px tall.
    assert cam.height_at_row(2160) == pytest.approx(400.0)
    z_far = cam.depth_far_m
    _, y_far = cam.project(0.0, z_far)
    assert cam.height_at_row(y_far) == pytest.approx(10.0)
    # Height is linear in the row of the feet and equals f * s / Z.
    for z in (12.0, 40.0, 300.0):
        _, y = cam.project(3.0, z)
        assert cam.height_at_row(y) == pytest.approx(cam.focal_px * MEAN_STATURE_M / z)
    x, z = cam.ground_at(*cam.project(np.array([-5.0, 2.0]), np.array([20.0, 80.0])))
    np.testing.assert_allclose(x, [-5.0, 2.0])
    np.testing.assert_allclose(z, [20.0, 80.0])


# ----------------------------------------------------------------------------- stills


def test_same_seed_same_scene_different_seed_different():
    a = render_scene(SMALL, np.random.default_rng(1))
    b = render_scene(SMALL, np.random.default_rng(1))
    c = render_scene(SMALL, np.random.default_rng(2))
    assert a.image.shape == (270, 480, 3) and a.image.dtype == np.uint8
    np.testing.assert_array_equal(a.image, b.image)
    for name in ("boxes", "visible", "iscrowd", "track_ids", "ignore"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.image, c.image)
    assert len(a.boxes) != len(c.boxes) or not np.array_equal(a.boxes, c.boxes)


def test_label_arrays_are_consistent(scene_4k):
    s = scene_4k
    n = len(s.boxes)
    assert n > 50
    assert s.boxes.dtype == np.float32 and s.boxes.shape == (n, 4)
    assert s.visible.shape == (n,) and s.iscrowd.shape == (n,) and s.track_ids.shape == (n,)
    assert s.iscrowd.dtype == bool
    assert s.ignore.ndim == 2 and s.ignore.shape[1] == 4
    assert len(np.unique(s.track_ids)) == n


def test_boxes_inside_image_with_positive_size(scene_4k):
    b = scene_4k.boxes
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 2] <= 3840) and np.all(b[:, 3] <= 2160)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    assert np.all(np.isfinite(b))


def test_person_heights_follow_perspective(scene_4k):
    s = scene_4k
    b = s.boxes
    # Persons not cut by the frame edge.
    whole = ~s.iscrowd & (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < 3840) & (b[:, 3] < 2160)
    heights = b[whole, 3] - b[whole, 1]
    feet = b[whole, 3]
    assert heights.min() <= 16, heights.min()
    assert heights.max() >= 280, heights.max()
    assert heights.max() <= 520
    assert np.corrcoef(heights, feet)[0, 1] > 0.8
    # Each height is near the explicit model's prediction for its row (stature and pose vary).
    cam = GroundCamera.from_config(SynthConfig())
    predicted = cam.height_at_row(feet)
    rel = np.abs(heights - predicted) / predicted
    assert np.median(rel[heights > 30]) < 0.12


def test_visible_fraction_reflects_occlusion(scene_no_clutter):
    cfg, s = scene_no_clutter
    person = ~s.iscrowd
    vis, b = s.visible[person], s.boxes[person]
    assert np.all((vis >= 0) & (vis <= 1))
    assert np.any(vis < 0.99), "a crowded scene has occluded people"
    assert np.any(vis > 0.999)
    # Without clutter only nearer people hide a person (nearer = feet lower on the image).
    overlap = iou_matrix(b, b) > 0
    np.fill_diagonal(overlap, False)
    nearer = b[None, :, 3] >= b[:, None, 3] - 2
    occluder_exists = (overlap & nearer).any(axis=1)
    assert np.all(vis[~occluder_exists] > 0.999)
    # People whose box lies deep inside a nearer person's box are mostly hidden.
    inside = (
        (b[None, :, 0] <= b[:, None, 0])
        & (b[None, :, 2] >= b[:, None, 2])
        & (b[None, :, 1] <= b[:, None, 1])
        & (b[None, :, 3] >= b[:, None, 3] + 3)
    )
    np.fill_diagonal(inside, False)
    hidden = inside.any(axis=1)
    if hidden.any():
        assert np.all(vis[hidden] < 0.999)


def test_crowds_are_single_far_regions():
    cfg = SynthConfig(crowd_prob=1.0, people_min=80, people_max=80).resized(960, 540)
    s = render_scene(cfg, np.random.default_rng(3))
    assert s.iscrowd.any()
    cam = GroundCamera.from_config(cfg)
    crowd = s.boxes[s.iscrowd]
    # A crowd box lies where a person is at most crowd_height_max_px tall, so near the horizon.
    assert np.all(cam.height_at_row(crowd[:, 3]) <= cfg.crowd_height_max_px * 1.3 + 2)


def test_scene_image_has_texture_and_noise():
    base = SynthConfig(people_min=0, people_max=0, clutter=0.0).resized(320, 180)
    clean = render_scene(base.model_copy(update={"noise_std": 0.0}), 5).image.astype(int)
    noisy = render_scene(base.model_copy(update={"noise_std": 8.0}), 5).image.astype(int)
    diff = (noisy - clean)[100:, :, 0]  # ground, away from the saturated sky
    assert 5.0 < diff.std() < 11.0


# ----------------------------------------------------------------------------- video


def test_video_is_smooth_with_stable_ids():
    cfg = SynthConfig(people_min=30, people_max=40, standing_prob=0.0).resized(480, 270)
    scenes = list(render_video(cfg, 120, np.random.default_rng(0)))
    assert [s.frame_index for s in scenes] == list(range(120))
    # The first frame of a sequence is the still of the same seed.
    still = render_scene(cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(still.image, scenes[0].image)
    np.testing.assert_array_equal(still.track_ids, scenes[0].track_ids)
    W, H = cfg.width_px, cfg.height_px
    prev: dict[int, np.ndarray] = {}
    compared = 0
    for s in scenes:
        assert len(np.unique(s.track_ids)) == len(s.track_ids)
        cur = {int(t): b for t, b, c in zip(s.track_ids, s.boxes, s.iscrowd) if not c}
        for t, b in cur.items():
            if t not in prev:
                continue
            pb = prev[t]
            if min(b[0], pb[0]) <= 0 or max(b[2], pb[2]) >= W or max(b[3], pb[3]) >= H:
                continue  # clipped at the edge: the box itself jumps
            h = max(b[3] - b[1], pb[3] - pb[1])
            centre_shift = np.abs((b[:2] + b[2:] - pb[:2] - pb[2:]) / 2).max()
            assert centre_shift <= 0.06 * h + 1.5, (s.frame_index, t, b, pb)
            assert abs((b[3] - b[1]) - (pb[3] - pb[1])) <= 0.1 * h + 2
            compared += 1
        prev = cur
    assert compared > 1000
    first, last = set(scenes[0].track_ids.tolist()), set(scenes[-1].track_ids.tolist())
    assert last - first, "someone walked in"
    assert first - last, "someone walked out"
    # Identifiers are never reused for a different person within the sequence.
    seen_last: dict[int, int] = {}
    for s in scenes:
        for t in s.track_ids.tolist():
            if t in seen_last:
                assert s.frame_index - seen_last[t] < 60  # a short occlusion or edge at most
            seen_last[t] = s.frame_index


def test_video_deterministic():
    cfg = SMALL
    a = [s.image for s in render_video(cfg, 4, np.random.default_rng(9))]
    b = [s.image for s in render_video(cfg, 4, np.random.default_rng(9))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[3])


# ----------------------------------------------------------------------------- dataset writer


def test_write_dataset_coco(tmp_path):
    from pycocotools.coco import COCO

    cfg = SMALL
    summary = write_dataset(tmp_path / "set", frames=3, seed=4, cfg=cfg)
    root = tmp_path / "set"
    assert summary["frames"] == 3 and summary["persons"] > 0
    coco = COCO(str(root / "annotations.json"))
    assert coco.getCatIds(catNms=["person"]) == [1]
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    for img in coco.loadImgs(coco.getImgIds()):
        assert img["file_name"] == f"images/{img['frame_id']:06d}.jpg"
        pixels = cv2.imread(str(root / img["file_name"]))
        assert pixels.shape == (cfg.height_px, cfg.width_px, 3)
        assert img["sequence_id"] == img["frame_id"] and img["seed"] == 4
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == summary["persons"] + summary["crowd_regions"] + summary["ignore_regions"]
    for a in anns:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= cfg.width_px and y + h <= cfg.height_px
        assert a["area"] == pytest.approx(w * h)
        assert a["category_id"] == 1
        assert 0.0 <= a["visible_fraction"] <= 1.0
        if a["kind"] == "person":
            assert a["ignore"] == int(a["visible_fraction"] < cfg.ignore_visible_below)
            assert a["iscrowd"] == 0
        else:
            assert a["iscrowd"] == 1 and a["ignore"] == 1
    # A still can be regenerated alone from (seed, frame index): same labels as in the file.
    scene = render_scene(cfg, np.random.default_rng([4, 1]))
    boxes_2 = [a["bbox"] for a in anns if a["image_id"] == 2 and a["kind"] != "fake_person"]
    assert len(boxes_2) == len(scene.boxes)
    np.testing.assert_allclose(np.array(boxes_2)[:, 0], scene.boxes[:, 0])
    # Same seed, same file content.
    write_dataset(tmp_path / "again", frames=3, seed=4, cfg=cfg)
    j1 = json.loads((root / "annotations.json").read_text())
    j2 = json.loads((tmp_path / "again" / "annotations.json").read_text())
    assert j1["annotations"] == j2["annotations"]
    assert (root / "images/000002.jpg").read_bytes() == (
        tmp_path / "again/images/000002.jpg"
    ).read_bytes()
    # RGB in memory, BGR on disk: the decoded file is close to the scene converted to BGR.
    decoded = cv2.imread(str(root / "images/000001.jpg")).astype(int)
    assert np.abs(decoded - scene.image[:, :, ::-1].astype(int)).mean() < 6


def test_write_dataset_video_tracks(tmp_path):
    summary = write_dataset(tmp_path, frames=3, seed=1, cfg=SMALL, video=True)
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert {im["sequence_id"] for im in coco["images"]} == {0}
    assert coco["info"]["video"] is True and summary["video"] is True
    tracks = [
        {a["track_id"] for a in coco["annotations"] if a["image_id"] == i and a["track_id"] > 0}
        for i in (1, 2, 3)
    ]
    assert len(tracks[0] & tracks[2]) >= 0.8 * len(tracks[0])


def test_write_dataset_refuses_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="seed"):
        write_dataset(tmp_path, frames=1, seed=-1, cfg=SMALL)
    with pytest.raises(InputError, match="jpeg_quality"):
        write_dataset(tmp_path, frames=1, seed=0, cfg=SMALL, jpeg_quality=0)
