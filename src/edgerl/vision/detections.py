"""The detection result type shared by every detector, stage and metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: float32 array (N, 4), xyxy in the input image's pixels.
        scores: float32 array (N,), confidence in [0, 1].
        classes: int64 array (N,), class ids (0 = person for the built-in family; COCO
            detectors use their own 0-based ids, 0 = person as well).
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        b = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        s = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        c = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if not (len(b) == len(s) == len(c)):
            raise ValueError(f"Detections: boxes {len(b)}, scores {len(s)} and classes {len(c)} differ in length")
        object.__setattr__(self, "boxes", b)
        object.__setattr__(self, "scores", s)
        object.__setattr__(self, "classes", c)

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, mask_or_index: np.ndarray) -> Detections:
        """A subset by boolean mask or integer index."""
        return Detections(self.boxes[mask_or_index], self.scores[mask_or_index], self.classes[mask_or_index])

    @staticmethod
    def concat(items: list[Detections]) -> Detections:
        """Concatenate several results into one."""
        if not items:
            return Detections.empty()
        return Detections(
            np.concatenate([d.boxes for d in items]),
            np.concatenate([d.scores for d in items]),
            np.concatenate([d.classes for d in items]),
        )
