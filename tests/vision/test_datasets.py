"""Tests of the dataset loaders against hand-written fixtures of each real format."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerl.utils.errors import InputError
from edgerl.vision.datasets import (
    Dataset,
    Sample,
    image_size,
    load_coco,
    load_dataset,
    load_mot,
    load_panda,
    load_visdrone,
    read_image,
)

FIXTURES = Path(__file__).parent / "fixtures"


def write_image(path: Path, width: int, height: int, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


# ----------------------------------------------------------------------------- read_image


def test_read_image_channel_and_depth_rules(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[0, 0] = (255, 0, 0)  # blue in OpenCV order
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    rgb = read_image(tmp_path / "c.png")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 255]

    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    g = read_image(tmp_path / "g.png")
    assert g.shape == (4, 5, 3)
    assert np.array_equal(g[:, :, 0], gray) and np.array_equal(g[:, :, 2], gray)

    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 2] = 200  # red
    bgra[..., 3] = 0  # fully transparent: alpha is dropped, not composited
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    a = read_image(tmp_path / "a.png")
    assert a.shape == (3, 3, 3) and a[0, 0].tolist() == [200, 0, 0]

    deep = np.array([[0, 65535, 257 * 100, 32768]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    d = read_image(tmp_path / "d.png")
    assert d[0, :, 0].tolist() == [0, 255, 100, 128]


def test_read_image_refuses_bad_files(tmp_path):
    with pytest.raises(InputError, match="nothere.jpg: image file not found"):
        read_image(tmp_path / "nothere.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    with pytest.raises(InputError, match="junk.jpg: not a readable image"):
        read_image(tmp_path / "junk.jpg")
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg: truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    ok, buf = cv2.imencode(".png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(buf.tobytes()[:-20])
    with pytest.raises(InputError, match="cut.png: truncated PNG"):
        read_image(tmp_path / "cut.png")
    # The complete files read fine.
    (tmp_path / "whole.jpg").write_bytes(data)
    assert read_image(tmp_path / "whole.jpg").shape == (64, 64, 3)


def test_read_image_refuses_float_samples(tmp_path):
    path = tmp_path / "f.tiff"
    if not cv2.imwrite(str(path), np.full((4, 4), 0.5, np.float32)):
        pytest.skip("this OpenCV build writes no float TIFF")
    with pytest.raises(InputError, match="f.tiff: sample type float32"):
        read_image(path)


def test_image_size_from_headers(tmp_path):
    assert image_size(write_image(tmp_path / "x.jpg", 37, 21)) == (37, 21)
    assert image_size(write_image(tmp_path / "x.png", 5, 9)) == (5, 9)
    with pytest.raises(InputError, match="not found"):
        image_size(tmp_path / "none.png")


# ----------------------------------------------------------------------------- COCO


def test_load_coco_fixture_goldens():
    ds = load_coco(FIXTURES / "coco_tiny.json")
    assert ds.category_names == ("person", "car") and ds.category_ids == (1, 3)
    assert len(ds) == 2 and [s.image_id for s in ds] == [7, 9]
    a = ds[0]
    assert a.image_path == FIXTURES / "images/a.png"
    assert (a.width, a.height) == (64, 48)
    np.testing.assert_array_equal(a.boxes, [[10, 5, 18, 25], [30.5, 10, 50.5, 20.25]])
    assert a.classes.tolist() == [0, 1]
    np.testing.assert_array_equal(a.ignore, [[0, 0, 6, 6], [40, 30, 44, 38]])
    assert a.meta["track_ids"].tolist() == [4, -1]
    assert a.meta["visible_fraction"][0] == pytest.approx(0.75)
    assert np.isnan(a.meta["visible_fraction"][1])
    assert a.meta["frame_id"] == 0 and a.meta["sequence_id"] == 3
    b = ds[1]
    np.testing.assert_array_equal(b.boxes, [[1, 2, 4, 6]])
    assert b.ignore.shape == (0, 4)
    assert isinstance(ds[:1], Dataset) and len(ds[:1]) == 1


def test_load_coco_size_from_image_header(tmp_path):
    write_image(tmp_path / "pics" / "p.jpg", 33, 17)
    coco = {
        "images": [{"id": 1, "file_name": "p.jpg"}],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    ds = load_coco(tmp_path / "gt.json", image_root=tmp_path / "pics")
    assert (ds[0].width, ds[0].height) == (33, 17)
    assert ds[0].load_image().shape == (17, 33, 3)


def _coco_fixture() -> dict:
    return json.loads((FIXTURES / "coco_tiny.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotations\[0\]\.bbox"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, -3, 4]), r"annotations\[1\]\.bbox"),
        (lambda d: d["annotations"][2].update(bbox=[1, "a", 3, 4]), r"annotations\[2\]\.bbox"),
        (lambda d: d["annotations"][0].update(category_id=99), r"annotations\[0\]\.category_id"),
        (lambda d: d["annotations"][4].update(image_id=1234), r"annotations\[4\]\.image_id"),
        (lambda d: d["annotations"][0].update(track_id="x"), r"annotations\[0\]\.track_id"),
        (lambda d: d["images"][1].update(id=7), r"images\[1\]\.id"),
        (lambda d: d["images"][0].update(width=0), r"images\[0\]\.width"),
        (lambda d: d["images"][0].pop("file_name"), r"images\[0\]\.file_name"),
        (lambda d: d.pop("categories"), "'categories' is missing"),
        (lambda d: d.pop("images"), "'images' is missing"),
        (lambda d: d.update(annotations={"a": 1}), "annotations"),
        (lambda d: d["annotations"].append(5), r"annotations\[5\]"),
    ],
)
def test_load_coco_malformed_names_file_and_field(tmp_path, mutate, message):
    data = _coco_fixture()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as err:
        load_coco(path)
    assert str(path) in str(err.value)


def test_load_coco_bad_json(tmp_path):
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(InputError, match="broken.json: not valid JSON"):
        load_coco(tmp_path / "broken.json")
    with pytest.raises(InputError, match="file not found"):
        load_coco(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- PANDA


def test_load_panda_fixture_goldens():
    ds = load_panda(FIXTURES / "panda_tiny.json", image_root=FIXTURES / "no_images_here")
    assert ds.category_names == ("person",)
    assert [s.image_id for s in ds] == [11, 12]
    s = ds[0]
    assert (s.width, s.height) == (1000, 800)  # annotated size: the images are absent
    np.testing.assert_allclose(s.boxes, [[100, 160, 150, 400], [500, 400, 560, 600]])
    assert s.classes.tolist() == [0, 0]
    np.testing.assert_allclose(s.ignore, [[800, 80, 900, 160], [0, 0, 50, 80]])
    np.testing.assert_allclose(
        s.meta["visible_boxes"], [[100, 160, 150, 320], [500, 400, 560, 560]]
    )
    np.testing.assert_allclose(s.meta["head_boxes"], [[110, 160, 140, 200], [500, 400, 520, 424]])
    assert s.meta["file_name"] == "scene_01/IMG_01.jpg"
    assert s.image_path == FIXTURES / "no_images_here" / "scene_01/IMG_01.jpg"
    assert len(ds[1].boxes) == 0
    np.testing.assert_allclose(ds[1].ignore, [[250, 200, 500, 600]])
    heads = load_panda(FIXTURES / "panda_tiny.json", box="head")
    np.testing.assert_allclose(heads[0].boxes, [[110, 160, 140, 200], [500, 400, 520, 424]])
    vis = load_panda(FIXTURES / "panda_tiny.json", box="visible")
    np.testing.assert_allclose(vis[0].boxes[1], [500, 400, 560, 560])


def test_load_panda_scales_to_resized_images(tmp_path):
    shutil.copy(FIXTURES / "panda_tiny.json", tmp_path / "ann.json")
    write_image(tmp_path / "scene_01" / "IMG_01.jpg", 500, 400)  # half the annotated size
    ds = load_panda(tmp_path / "ann.json")
    assert (ds[0].width, ds[0].height) == (500, 400)
    np.testing.assert_allclose(ds[0].boxes, [[50, 80, 75, 200], [250, 200, 280, 300]])
    assert ds[0].meta["annotated_size"] == (1000, 800)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["scene_01/IMG_01.jpg"]["objects list"][0]["rects"].pop("full body"),
            r"objects list'\]\[0\]\.rects",
        ),
        (
            lambda d: d["scene_01/IMG_01.jpg"]["objects list"][1]["rects"]["full body"].update(
                tl={"x": 0.9, "y": 0.5}
            ),
            r"\[1\]\.rects\['full body'\]",
        ),
        (
            lambda d: d["scene_01/IMG_01.jpg"]["objects list"][0]["rects"]["full body"][
                "br"
            ].update(x="far"),
            r"\['full body'\]\.br\.x",
        ),
        (lambda d: d["scene_01/IMG_01.jpg"].pop("image size"), "'image size'"),
        (lambda d: d["scene_01/IMG_02.jpg"]["objects list"][0].pop("rect"), r"\[0\]\.rect"),
        (lambda d: d["scene_01/IMG_02.jpg"].update({"image id": 11}), "'image id'"),
        (lambda d: d["scene_01/IMG_02.jpg"]["image size"].update(width=-5), "width"),
    ],
)
def test_load_panda_malformed(tmp_path, mutate, message):
    data = json.loads((FIXTURES / "panda_tiny.json").read_text())
    data = copy.deepcopy(data)
    mutate(data)
    path = tmp_path / "panda_bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as err:
        load_panda(path)
    assert "panda_bad.json" in str(err.value)


# ----------------------------------------------------------------------------- VisDrone


@pytest.fixture
def visdrone_dir(tmp_path) -> Path:
    root = tmp_path / "VisDrone2019-DET-val"
    shutil.copytree(FIXTURES / "visdrone" / "annotations", root / "annotations")
    write_image(root / "images" / "0000001_00000_d_0000001.jpg", 80, 60)
    write_image(root / "images" / "0000002_00000_d_0000002.jpg", 20, 10)
    return root


def test_load_visdrone_persons(visdrone_dir):
    ds = load_visdrone(visdrone_dir / "annotations", visdrone_dir / "images")
    assert ds.category_names == ("person",) and len(ds) == 2
    s = ds[0]
    assert (s.width, s.height) == (80, 60)
    # pedestrian and people are persons; the car is dropped.
    np.testing.assert_array_equal(s.boxes, [[10, 20, 15, 32], [30, 22, 36, 32]])
    assert s.classes.tolist() == [0, 0]
    # ignored region (cat 0), a score-0 box and an "others" box (cat 11) are ignore regions.
    np.testing.assert_array_equal(s.ignore, [[0, 0, 40, 8], [5, 40, 8, 46], [60, 2, 64, 6]])
    assert s.meta["occlusion"].tolist() == [0, 1]
    assert s.meta["visdrone_category"].tolist() == [1, 2]
    np.testing.assert_array_equal(ds[1].boxes, [[1, 1, 3, 4]])


def test_load_visdrone_all_categories(visdrone_dir):
    ds = load_visdrone(visdrone_dir / "annotations", visdrone_dir / "images", persons_only=False)
    assert ds.category_names[:2] == ("pedestrian", "people") and ds.category_names[3] == "car"
    assert ds[0].classes.tolist() == [0, 1, 3]
    assert ds.category_ids[3] == 4


def test_load_visdrone_errors(visdrone_dir):
    (visdrone_dir / "images" / "0000002_00000_d_0000002.jpg").unlink()
    with pytest.raises(InputError, match="0000002_00000_d_0000002.txt: its image"):
        load_visdrone(visdrone_dir / "annotations", visdrone_dir / "images")
    write_image(visdrone_dir / "images" / "0000002_00000_d_0000002.jpg", 20, 10)
    bad = visdrone_dir / "annotations" / "0000002_00000_d_0000002.txt"
    bad.write_text("1,1,2,3,1,1,0,0\n1,2,3\n")
    with pytest.raises(InputError, match=r"0000002_00000_d_0000002.txt:2: .*8 finite numbers"):
        load_visdrone(visdrone_dir / "annotations", visdrone_dir / "images")
    bad.write_text("1,1,2,3,1,zebra,0,0\n")
    with pytest.raises(InputError, match=r"\.txt:1: "):
        load_visdrone(visdrone_dir / "annotations", visdrone_dir / "images")
    bad.write_text("1,1,2,3,1,12,0,0\n")
    with pytest.raises(InputError, match="category 12"):
        load_visdrone(visdrone_dir / "annotations", visdrone_dir / "images")


# ----------------------------------------------------------------------------- MOT


def test_load_mot_fixture_goldens():
    gt = FIXTURES / "mot" / "MOT17-02-FRCNN" / "gt" / "gt.txt"
    ds = load_mot(gt)
    assert [s.image_id for s in ds] == [1, 2, 3]  # seqLength 3: frame 3 has no people
    f1 = ds[0]
    assert (f1.width, f1.height) == (1920, 1080)
    assert f1.image_path == FIXTURES / "mot" / "MOT17-02-FRCNN" / "img1" / "000001.jpg"
    # 1-based MOT boxes shifted to the 0-based pixel grid.
    np.testing.assert_allclose(
        f1.boxes, [[1337, 417, 1504, 796], [585, 446, 670, 709], [1584, -2, 1920, 576]]
    )
    assert f1.meta["track_ids"].tolist() == [2, 3, 4]
    np.testing.assert_allclose(f1.meta["visibility"], [0.86811, 1.0, 0.86482], rtol=1e-6)
    # static person (7), pedestrian with conf 0, distractor (8); the car (3) is dropped.
    np.testing.assert_allclose(
        f1.ignore, [[911, 483, 1008, 592], [1162, 440, 1195, 530], [199, 199, 219, 259]]
    )
    np.testing.assert_allclose(ds[1].ignore, [[699, 499, 729, 529]])  # reflection (12)
    assert len(ds[2].boxes) == 0 and ds[2].meta["sequence"] == "MOT17-02-FRCNN"


def test_load_mot_without_seqinfo(tmp_path):
    seq = tmp_path / "seq"
    (seq / "gt").mkdir(parents=True)
    shutil.copy(FIXTURES / "mot" / "MOT17-02-FRCNN" / "gt" / "gt.txt", seq / "gt" / "gt.txt")
    with pytest.raises(InputError, match="image size unknown"):
        load_mot(seq / "gt" / "gt.txt")
    for f in (1, 2):
        write_image(seq / "img1" / f"{f:06d}.jpg", 40, 30)
    ds = load_mot(seq / "gt" / "gt.txt")
    assert [s.image_id for s in ds] == [1, 2]
    assert (ds[0].width, ds[0].height) == (40, 30)
    assert ds[0].load_image().shape == (30, 40, 3)


def test_load_mot_malformed(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,5,5,1,1,1\n1,2,10,10,5,5,1\n")
    with pytest.raises(InputError, match=r"gt.txt:2: .*9 finite numbers"):
        load_mot(gt, image_dir=tmp_path)
    gt.write_text("0.5,1,10,10,5,5,1,1,1\n")
    write_image(tmp_path / "000001.jpg", 8, 8)
    with pytest.raises(InputError, match=r"gt.txt:1: frame 0.5"):
        load_mot(gt, image_dir=tmp_path)


# ----------------------------------------------------------------------------- dispatch, round trips


def test_load_dataset_dispatch(tmp_path, visdrone_dir):
    assert load_dataset(FIXTURES / "coco_tiny.json").category_names == ("person", "car")
    panda = load_dataset(FIXTURES / "panda_tiny.json")
    assert [s.image_id for s in panda] == [11, 12]
    assert len(load_dataset(FIXTURES / "mot" / "MOT17-02-FRCNN")) == 3
    assert len(load_dataset(visdrone_dir)) == 2
    (tmp_path / "other.json").write_text(json.dumps({"hello": [1, 2]}))
    with pytest.raises(InputError, match="other.json: JSON is neither COCO"):
        load_dataset(tmp_path / "other.json")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="emptydir: dataset format not recognised"):
        load_dataset(tmp_path / "emptydir")
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "nothing")


def test_synthetic_set_round_trip(tmp_path):
    from edgerl.vision.synth import SynthConfig, render_scene, write_dataset

    cfg = SynthConfig(people_min=40, people_max=60).resized(320, 180)
    write_dataset(tmp_path, frames=2, seed=3, cfg=cfg)
    ds = load_dataset(tmp_path)
    assert len(ds) == 2 and ds.category_names == ("person",)
    scene = render_scene(cfg, np.random.default_rng([3, 0]))
    keep = ~scene.iscrowd & (scene.visible >= cfg.ignore_visible_below)
    np.testing.assert_allclose(ds[0].boxes, scene.boxes[keep])
    assert len(ds[0].ignore) == (~keep).sum() + len(scene.ignore)
    np.testing.assert_array_equal(ds[0].meta["track_ids"], scene.track_ids[keep])
    img = ds[0].load_image()
    assert img.shape == (180, 320, 3)
    assert np.abs(img.astype(int) - scene.image.astype(int)).mean() < 6


def test_to_coco_round_trip(tmp_path):
    ds = load_coco(FIXTURES / "coco_tiny.json")
    path = tmp_path / "again.json"
    path.write_text(json.dumps(ds.to_coco()))
    again = load_coco(path, image_root="/")
    for a, b in zip(ds, again):
        np.testing.assert_allclose(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.ignore, b.ignore)
    assert again.category_ids == ds.category_ids


def test_sample_checks_lengths():
    with pytest.raises(ValueError, match="2 boxes but 1 classes"):
        Sample(None, None, 10, 10, np.zeros((2, 4)), [0], np.zeros((0, 4)), 1)
    s = Sample(None, np.zeros((2, 2, 3), np.uint8), 2, 2, [], [], [], 5)
    assert s.boxes.shape == (0, 4) and s.load_image().shape == (2, 2, 3)
    with pytest.raises(InputError, match="neither an image nor an image path"):
        Sample(None, None, 2, 2, [], [], [], 6).load_image()
