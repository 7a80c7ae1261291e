"""CLI end to end on tiny data: synth, detect (real exports, bad frames), error paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgerl.cli import main


def test_synth_writes_coco(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), "--frames", "2", "--seed", "5", "--width", "480", "--height", "270"]) == 0
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 2
    img = coco.loadImgs(coco.getImgIds()[0])[0]
    assert (img["width"], img["height"]) == (480, 270)
    assert (out / img["file_name"]).is_file()
    assert coco.loadCats(coco.getCatIds())[0]["name"] == "person"


def test_synth_bad_preset(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path / "x"), "--preset", "extreme"]) == 2
    assert "extreme" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_detect_real_yolox_skips_bad_frame(tmp_path: Path, assets_dir: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(assets_dir / "images" / "terrain1.jpg", frames / "a.jpg")
    data = (assets_dir / "images" / "terrain1.jpg").read_bytes()
    (frames / "b.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (frames / "c.jpg").write_bytes(b"")  # empty
    out = tmp_path / "out"
    rc = main(
        ["detect", "--input", str(frames), "--model", str(assets_dir / "models" / "yolox_nano.onnx"),
         "--method", "full", "--workers", "1", "--conf", "0.3", "--out", str(out)]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 1 and summary["frames_skipped"] == 2
    assert sorted(summary["skipped"]) == ["b.jpg", "c.jpg"]
    dets = json.loads((out / "detections.json").read_text())
    persons = [d for d in dets if d["category_id"] == 1 and d["score"] > 0.3]
    assert len(persons) >= 7  # terrain1 has 7 labelled persons
    assert all(d["file_name"] == "a.jpg" for d in dets)


def test_detect_missing_input(tmp_path: Path, capsys) -> None:
    assert main(["detect", "--input", str(tmp_path / "none"), "--method", "full", "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_detect_unknown_method(tmp_path: Path, capsys, assets_dir: Path) -> None:
    img = assets_dir / "images" / "bus.jpg"
    rc = main(["detect", "--input", str(img), "--method", "magic", "--model", str(assets_dir / "models" / "yolox_nano.onnx"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "method 'magic'" in capsys.readouterr().err


def test_detect_unreachable_ray_address(tmp_path: Path, capsys, assets_dir: Path) -> None:
    pytest.importorskip("ray")
    img = assets_dir / "images" / "bus.jpg"
    rc = main(
        ["detect", "--input", str(img), "--method", "full", "--model", str(assets_dir / "models" / "yolox_nano.onnx"),
         "--executor", "ray", "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_detect_on_video(tmp_path: Path) -> None:
    """A short synthetic video through `edgerl detect` with the built-in detector."""
    import cv2
    import numpy as np

    from edgerl.vision.builtin import builtin_model_path
    from edgerl.vision.synth import SynthConfig, render_video

    if not builtin_model_path("n").is_file():
        pytest.skip("built-in detector absent")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    if not writer.isOpened():
        pytest.skip("no video encoder in this OpenCV build")
    for scene in render_video(SynthConfig.preset("easy").resized(640, 360), 3, np.random.default_rng(700_900)):
        writer.write(cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    rc = main(["detect", "--input", str(path), "--method", "uniform", "--workers", "2", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["frames_skipped"] == 0
    names = {d["file_name"] for d in json.loads((out / "detections.json").read_text())}
    assert names <= {"clip.avi#000000", "clip.avi#000001", "clip.avi#000002"} and names
