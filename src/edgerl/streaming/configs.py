"""The detector configuration grid of adaptive streaming perception (paper 004, section 5).

A configuration fixes four knobs of one detector run:

* **model**: a built-in detector (``person_n`` < ``person_s`` < ``person_m``) or a path to a
  YOLOv8/YOLOX ``.onnx`` export (the paper switches between YOLOv3, FCOS and Faster R-CNN);
* **scale**: the input scale as the short side of the resized frame in pixels (the paper's
  ``s1 = {720, 640, 560, 480, 360}``);
* **topk**: the one-stage analogue of the number of proposals (``np = {100, 300, 500, 1000}``):
  only the ``topk`` highest-scoring candidate boxes enter NMS, and at most ``topk`` detections
  leave it;
* **stride**: tracker stride ``k``: one detector run, then ``k - 1`` tracker steps (1 = no
  tracker; the paper's ``k = {3, 5, 10, 15, 30}``).

A configuration is written ``MODEL@SCALE_kTOPK_sSTRIDE``, e.g. ``person_n@480_k300_s1``; the
model part may be a path (it is everything before the last ``@``).

The full product of the default values is 3 x 5 x 4 x 6 = 360 configurations. Every (model,
scale) pair needs its own cached detector pass over every video, so the experiments trim the
grid: the main table uses one model and no tracker (5 x 4 = 20 configurations), the tracking
and switching experiments add one dimension each (see :mod:`edgerl.streaming.experiment`).

Input geometry: detectors take sizes that are multiples of 32 (the largest head stride), and
some exports need even multiples of 32 after a stride-16 split, so a scale is mapped to the
network input :func:`input_hw`: height ``ceil(scale / 32) * 32``, width the multiple of 32
nearest to ``scale * W / H``; the frame is letterboxed into it, so the short side after
resizing is :func:`effective_scale` (``scale`` itself for 720, 640, 480, 360 on 16:9 frames;
558 for 560).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

from pydantic import Field, field_validator

from edgerl.utils.config import Config
from edgerl.utils.errors import InputError

__all__ = [
    "BRANCHES",
    "DEFAULT_MODELS",
    "DEFAULT_SCALES",
    "DEFAULT_STRIDES",
    "DEFAULT_TOPKS",
    "ConfigGrid",
    "StreamConfig",
    "effective_scale",
    "input_hw",
]

#: Paper 004's scale space s1 (short side, pixels).
DEFAULT_SCALES: tuple[int, ...] = (720, 640, 560, 480, 360)
#: The built-in detector family, smallest first.
DEFAULT_MODELS: tuple[str, ...] = ("person_n", "person_s", "person_m")
#: Pre-NMS top-k candidates (= maximum detections), the analogue of the paper's proposals.
DEFAULT_TOPKS: tuple[int, ...] = (100, 300, 500, 1000)
#: Tracker strides; 1 means the detector runs on every processed frame.
DEFAULT_STRIDES: tuple[int, ...] = (1, 3, 5, 10, 15, 30)
#: Decision dimensions (bandit branches), in the order of :meth:`ConfigGrid.n_arms`.
BRANCHES: tuple[str, ...] = ("model", "scale", "topk", "stride")

_NAME = re.compile(r"^(?P<model>.+)@(?P<scale>\d+)_k(?P<topk>\d+)_s(?P<stride>\d+)$")
_FORMAT = "MODEL@SCALE_kTOPK_sSTRIDE (e.g. person_n@480_k300_s1)"


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise InputError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def input_hw(scale: int, image_hw: Sequence[int]) -> tuple[int, int]:
    """Network input ``(height, width)`` for a frame of ``image_hw`` at short side ``scale``.

    Height is ``scale`` rounded up to a multiple of 32; width is ``scale * W / H`` rounded to the
    nearest multiple of 32 (at least 32). Portrait frames swap the roles.

    Args:
        scale: Short side in pixels (> 0).
        image_hw: Frame (height, width) in pixels.
    """
    s = _positive_int("scale", scale)
    h, w = (int(v) for v in image_hw)
    if h < 1 or w < 1:
        raise InputError(f"image_hw must be positive, got {tuple(image_hw)}")
    short = 32 * math.ceil(s / 32)
    long = max(32, 32 * round(s * max(h, w) / min(h, w) / 32))
    return (short, long) if h <= w else (long, short)


def effective_scale(scale: int, image_hw: Sequence[int]) -> float:
    """Short side (pixels) of the frame after letterboxing into :func:`input_hw`."""
    ih, iw = input_hw(scale, image_hw)
    h, w = (int(v) for v in image_hw)
    return min(ih / h, iw / w) * min(h, w)


@dataclass(frozen=True)
class StreamConfig:
    """One detector configuration.

    Attributes:
        model: Built-in detector name or path to an ``.onnx`` file.
        scale: Input short side in pixels.
        topk: Candidates entering NMS and the cap on detections.
        stride: Processed frames per detector run (1 = no tracker).
    """

    model: str
    scale: int
    topk: int
    stride: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InputError(f"StreamConfig.model must be a non-empty string, got {self.model!r}")
        object.__setattr__(self, "scale", _positive_int("StreamConfig.scale", self.scale))
        object.__setattr__(self, "topk", _positive_int("StreamConfig.topk", self.topk))
        object.__setattr__(self, "stride", _positive_int("StreamConfig.stride", self.stride))

    @property
    def name(self) -> str:
        """``MODEL@SCALE_kTOPK_sSTRIDE``."""
        return f"{self.model}@{self.scale}_k{self.topk}_s{self.stride}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> StreamConfig:
        """Inverse of :attr:`name`.

        Raises:
            InputError: ``name`` does not have the form ``MODEL@SCALE_kTOPK_sSTRIDE``.
        """
        m = _NAME.match(str(name).strip())
        if m is None:
            raise InputError(f"configuration {name!r} is not of the form {_FORMAT}")
        return cls(m["model"], int(m["scale"]), int(m["topk"]), int(m["stride"]))


class ConfigGrid(Config):
    """The values of each decision dimension; the grid is their product.

    Defaults are the full paper grid (360 configurations); experiments trim it.
    """

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS), min_length=1)
    """Detectors: built-in names (person_n, person_s, person_m) or paths to .onnx files."""

    scales: list[int] = Field(default_factory=lambda: list(DEFAULT_SCALES), min_length=1)
    """Input short sides in pixels."""

    topks: list[int] = Field(default_factory=lambda: list(DEFAULT_TOPKS), min_length=1)
    """Pre-NMS candidate counts (= maximum detections per frame)."""

    strides: list[int] = Field(default_factory=lambda: list(DEFAULT_STRIDES), min_length=1)
    """Tracker strides (1 = detector on every processed frame)."""

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: list[str]) -> list[str]:
        if any(not m or "@" in m and not m.endswith(".onnx") for m in v):
            raise ValueError(f"model names must be non-empty (a path may contain '@' only if it ends in .onnx), got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"models must be distinct, got {v}")
        return v

    @field_validator("scales", "topks", "strides")
    @classmethod
    def _check_ints(cls, v: list[int]) -> list[int]:
        if any(int(x) < 1 for x in v):
            raise ValueError(f"values must be >= 1, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"values must be distinct, got {v}")
        return v

    # ------------------------------------------------------------------ structure

    def values(self, branch: str) -> list[str] | list[int]:
        """The values of one decision dimension (one of :data:`BRANCHES`)."""
        if branch not in BRANCHES:
            raise InputError(f"branch {branch!r} is unknown; valid: {', '.join(BRANCHES)}")
        return list(getattr(self, branch + "s"))

    @property
    def n_arms(self) -> tuple[int, ...]:
        """Arms per branch, in the order of :data:`BRANCHES` (1 for a fixed dimension)."""
        return tuple(len(self.values(b)) for b in BRANCHES)

    def __len__(self) -> int:
        return math.prod(self.n_arms)

    def configs(self) -> list[StreamConfig]:
        """Every configuration of the grid (model slowest, stride fastest)."""
        return [StreamConfig(*v) for v in product(self.models, self.scales, self.topks, self.strides)]

    def names(self) -> list[str]:
        """Names of :meth:`configs`."""
        return [c.name for c in self.configs()]

    def model_scales(self) -> list[tuple[str, int]]:
        """The (model, scale) pairs whose detector outputs the grid needs."""
        return list(product(self.models, self.scales))

    # ------------------------------------------------------------------ membership

    def check(self, config: str | StreamConfig) -> StreamConfig:
        """The configuration if it is in the grid.

        Raises:
            InputError: A malformed name, or a configuration outside the grid; the message names
                it, the dimension that is off, and the valid values.
        """
        c = config if isinstance(config, StreamConfig) else StreamConfig.parse(config)
        for branch in BRANCHES:
            value = getattr(c, branch)
            valid = self.values(branch)
            if value not in valid:
                raise InputError(
                    f"configuration {c.name!r} is not in the grid: {branch} {value!r} is not one "
                    f"of {valid} (grid: models {self.models}, scales {self.scales}, topks "
                    f"{self.topks}, strides {self.strides})"
                )
        return c

    def __contains__(self, config: object) -> bool:
        try:
            self.check(config)  # type: ignore[arg-type]
        except InputError:
            return False
        return True

    def from_action(self, action: Sequence[int]) -> StreamConfig:
        """The configuration of one arm index per branch (order of :data:`BRANCHES`)."""
        a = [int(x) for x in action]
        arms = self.n_arms
        if len(a) != len(arms) or any(not 0 <= x < n for x, n in zip(a, arms)):
            raise InputError(
                f"action {list(action)} does not fit the grid's arms per branch {list(arms)} "
                f"({', '.join(BRANCHES)})"
            )
        return StreamConfig(*(self.values(b)[x] for b, x in zip(BRANCHES, a)))

    def to_action(self, config: str | StreamConfig) -> tuple[int, ...]:
        """Arm index per branch of a configuration in the grid."""
        c = self.check(config)
        return tuple(self.values(b).index(getattr(c, b)) for b in BRANCHES)

    def nearest(self, model: str | None = None, scale: int | None = None, topk: int | None = None, stride: int = 1) -> StreamConfig:
        """The grid configuration closest to the given values (first model when None or absent;
        nearest scale / top-k / stride by absolute difference, ties to the first listed)."""
        m = model if model in self.models else self.models[0]

        def near(values: list[int], target: int | None) -> int:
            if target is None:
                return values[0]
            return min(values, key=lambda v: abs(v - target))

        return StreamConfig(m, near(self.scales, scale), near(self.topks, topk), near(self.strides, stride))
