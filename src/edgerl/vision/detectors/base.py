"""The interface every detector offers, and the COCO class names."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from edgerl.vision.detections import Detections

#: The 80 COCO detection classes in the contiguous 0-based order that YOLO-family exports use.
COCO_CLASS_NAMES: list[str] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip

#: Keys of the per-call timing dict returned by :meth:`Detector.detect_timed` (milliseconds).
TIMING_KEYS: tuple[str, ...] = ("preprocess", "inference", "postprocess", "total")


class Detector(ABC):
    """An object detector: images in, one :class:`Detections` per image out.

    Detectors are stateless between calls: the result of ``detect`` depends only on the images
    and the constructor's parameters, never on earlier calls.

    Subclasses implement :meth:`detect_timed`, ``name``, ``input_size`` and ``class_names``;
    :meth:`detect` is the same call without the timings.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """A short human-readable name (used in logs, summaries and plots)."""

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, int]:
        """The network input size ``(height, width)`` in pixels that images are resized to."""

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Class names indexed by the class ids the detector returns."""

    @abstractmethod
    def detect_timed(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[Detections], dict[str, float]]:
        """Detect objects and report where the time went.

        Args:
            images: RGB uint8 arrays of shape (H, W, 3); every image may have its own size.

        Returns:
            One :class:`Detections` per image, in order, with boxes in that image's pixels, and
            the wall time of this call in milliseconds under the keys of :data:`TIMING_KEYS`
            (``preprocess``, ``inference``, ``postprocess`` and their sum ``total``).
        """

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in each image.

        Args:
            images: RGB uint8 arrays of shape (H, W, 3); every image may have its own size.

        Returns:
            One :class:`Detections` per image, in order, with boxes in that image's pixels.
        """
        return self.detect_timed(images)[0]

    def __repr__(self) -> str:
        h, w = self.input_size
        return f"{type(self).__name__}(name={self.name!r}, input_size=({h}, {w}))"


def check_images(images: Sequence[np.ndarray], who: str) -> list[np.ndarray]:
    """Validate a batch of RGB uint8 images and return it as a list.

    Args:
        images: The images handed to ``detect``.
        who: Name of the caller, used in error messages.

    Returns:
        The images as a list (unchanged arrays).

    Raises:
        InputError: An image is not a uint8 array of shape (H, W, 3) with H, W > 0.
    """
    from edgerl.utils.errors import InputError

    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise InputError(
            f"{who}: detect() takes a sequence of images, got one array; wrap it in a list"
        )
    out = list(images)
    for i, im in enumerate(out):
        if (
            not isinstance(im, np.ndarray)
            or im.ndim != 3
            or im.shape[2] != 3
            or im.dtype != np.uint8
        ):
            desc = (
                f"{im.dtype} array of shape {im.shape}"
                if isinstance(im, np.ndarray)
                else type(im).__name__
            )
            raise InputError(
                f"{who}: image {i} must be an RGB uint8 array of shape (H, W, 3), got {desc}"
            )
        if im.shape[0] == 0 or im.shape[1] == 0:
            raise InputError(f"{who}: image {i} is empty (shape {im.shape})")
    return out


def now_ms() -> float:
    """A monotonic clock in milliseconds, for the per-stage timings."""
    return time.perf_counter() * 1e3
