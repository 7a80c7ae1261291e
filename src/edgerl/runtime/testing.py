"""A tiny deterministic detector for executor tests that need no model file.

``BlobDetector`` finds connected bright regions (all channels above a threshold) and
returns their bounding boxes, score = mean brightness / 255. It is a real, if trivial,
detector, so executor equivalence and fault-recovery tests exercise the full path.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgerl.vision.detections import Detections


class BlobDetector:
    """Bright-blob detector.

    Args:
        threshold: pixel value (0..255) above which a pixel belongs to a blob.
        min_area_px: smallest blob kept.
    """

    name = "blob"

    def __init__(self, threshold: int = 200, min_area_px: int = 4) -> None:
        self.threshold = threshold
        self.min_area_px = min_area_px

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for img in images:
            mask = (img.min(axis=2) > self.threshold).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            boxes, scores = [], []
            for i in range(1, n):
                x, y, w, h, area = stats[i]
                if area < self.min_area_px:
                    continue
                boxes.append([x, y, x + w, y + h])
                scores.append(float(img[y : y + h, x : x + w].mean()) / 255.0)
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores), np.zeros(len(scores))))
        return out


def blob_factory(model: str, input_size: int, conf_threshold: float) -> BlobDetector:
    """Detector factory for executors: ignores model/size, returns a BlobDetector."""
    return BlobDetector()
