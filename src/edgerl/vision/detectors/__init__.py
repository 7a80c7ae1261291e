"""Object detectors behind one interface: ``detect(images) -> list[Detections]``.

``load_detector(spec)`` builds one from a specification string (a built-in name such as
``person_s`` or a path to a YOLOv8 or YOLOX ``.onnx`` export).
"""

from edgerl.vision.detectors.base import COCO_CLASS_NAMES, TIMING_KEYS, Detector
from edgerl.vision.detectors.onnx_backend import (
    STRIDES,
    OnnxDetector,
    decode_yolov8,
    decode_yolox,
    letterbox,
    load_detector,
    nms_class_aware,
    num_anchors,
    preprocess,
    resolve_model,
    unletterbox_boxes,
    yolox_grid,
)

__all__ = [
    "COCO_CLASS_NAMES",
    "STRIDES",
    "TIMING_KEYS",
    "Detector",
    "OnnxDetector",
    "decode_yolov8",
    "decode_yolox",
    "letterbox",
    "load_detector",
    "nms_class_aware",
    "num_anchors",
    "preprocess",
    "resolve_model",
    "unletterbox_boxes",
    "yolox_grid",
]
