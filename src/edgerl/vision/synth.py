"""Synthetic PANDA-like scenes: a static camera looking down on a crowded plaza.

The scene is built on an explicit perspective model (:class:`GroundCamera`): a pinhole camera
with a horizontal optical axis at height ``h_c`` above flat ground. A ground point at lateral
offset ``X`` and depth ``Z`` (metres) appears at ``x = c_x + f X / Z``, ``y = y_h + f h_c / Z``,
and a person of stature ``s`` standing there is ``f s / Z`` pixels tall, so the height of a
person on the image grows linearly with the row of the feet::

    height_px = s / h_c * (y_foot - y_h)

``h_c`` and ``f`` are chosen so that a person of mean stature (1.7 m) whose feet touch the
bottom row is ``person_height_max_px`` tall; the plaza ends at the depth where that person is
``person_height_min_px`` tall. Everything else is placed in metres on the ground and projected.

People are articulated figures (head, hair, torso, two-segment arms and legs, shoes, some
with bags) with varied skin tones, clothing, poses and walking phases, in groups of varied
size; far groups may be dense crowds. Figures are drawn far to near into the frame and into a
per-pixel owner buffer, so each person's visible fraction is the share of its in-frame pixels
that no nearer object covers. Distractors: a skyline with windows and posters of people (the
posters are ignore regions, like PANDA's "fake person"), a tree line, textured paving in
perspective, lawns, painted markings, trees, lamp posts, benches, bins, bollards and statues
that occlude people, cast shadows, a global lighting change, optics blur and sensor noise.

Video mode moves groups along smooth paths (an Ornstein-Uhlenbeck turning rate) at ``fps``
frames per second; groups walk in from the sides and the bottom and leave the same way; track
ids stay with a person for the whole sequence. Randomness comes only from the
``numpy.random.Generator`` passed in, so a seed fixes pixels and labels.

Speed: the background (sky, skyline, ground, static shadows) and the static objects are built
once per sequence; a frame copies the background and draws each figure with a few OpenCV
primitives into a small label patch that is pasted with one masked assignment. Noise uses a
byte bank drawn once per sequence and mapped to Gaussian levels through a lookup table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import ConfigDict, Field, model_validator

from edgerl.utils.config import Config, register_config
from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_write_bytes, write_json
from edgerl.utils.seeding import make_rng

__all__ = [
    "MEAN_STATURE_M",
    "SynthConfig",
    "GroundCamera",
    "Scene",
    "render_scene",
    "render_video",
    "write_dataset",
]

MEAN_STATURE_M = 1.7
"""Stature of the reference person used to calibrate the camera."""

_SHIFT = 3  # fractional bits of OpenCV drawing coordinates: 1/8-pixel placement
_ONE = 1 << _SHIFT
_STRIDE_M = 1.4  # distance covered by one full walking cycle
_TURN_TAU_S = 3.0  # correlation time of a group's turning rate
_TURN_STD_RAD_S = 0.25  # stationary spread of the turning rate

# ----------------------------------------------------------------------------- config


@register_config
class SynthConfig(Config):
    """Knobs of the synthetic plaza scenes (pixel sizes refer to ``width_px x height_px``)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    width_px: int = Field(3840, ge=64, le=16384)
    """Frame width in pixels."""
    height_px: int = Field(2160, ge=64, le=16384)
    """Frame height in pixels."""
    horizon_frac: float = Field(0.2, ge=0.02, le=0.7)
    """Row of the horizon as a fraction of the frame height (0 = top row)."""
    camera_hfov_deg: float = Field(70.0, gt=10.0, lt=150.0)
    """Horizontal field of view of the pinhole camera in degrees."""
    person_height_min_px: float = Field(10.0, gt=1.0)
    """Height of a person of mean stature at the far end of the plaza."""
    person_height_max_px: float = Field(400.0, gt=1.0)
    """Height of a person of mean stature whose feet touch the bottom row."""
    stature_std_frac: float = Field(0.06, ge=0.0, le=0.3)
    """Relative standard deviation of body height among people."""
    people_min: int = Field(100, ge=0, le=20000)
    """Fewest people in a frame (the target population is drawn in [people_min, people_max])."""
    people_max: int = Field(300, ge=0, le=20000)
    """Most people in a frame."""
    group_size_mean: float = Field(2.0, ge=1.0, le=20.0)
    """Mean number of people who walk or stand together (1 = everyone alone)."""
    group_spread_m: float = Field(1.0, gt=0.0, le=20.0)
    """Radius of a group on the ground in metres."""
    standing_prob: float = Field(0.35, ge=0.0, le=1.0)
    """Probability that a group stands still."""
    walk_speed_mps: float = Field(1.3, ge=0.0, le=5.0)
    """Mean walking speed in metres per second."""
    crowd_prob: float = Field(0.05, ge=0.0, le=1.0)
    """Probability that a far group is a dense crowd, labelled as one iscrowd region."""
    crowd_size_min: int = Field(8, ge=2, le=500)
    """Fewest people in a crowd."""
    crowd_size_max: int = Field(30, ge=2, le=500)
    """Most people in a crowd."""
    crowd_height_max_px: float = Field(28.0, gt=0.0)
    """Crowds form only where a person of mean stature is at most this tall."""
    bag_prob: float = Field(0.3, ge=0.0, le=1.0)
    """Probability that a person carries a backpack or a handbag."""
    clutter: float = Field(0.5, ge=0.0, le=1.0)
    """Amount of distractors: trees, lamp posts, benches, bins, bollards, statues, posters."""
    shadow_strength: float = Field(0.35, ge=0.0, le=1.0)
    """How much a cast shadow darkens the ground (0 = no shadows)."""
    lighting_jitter: float = Field(0.15, ge=0.0, le=1.0)
    """Size of global brightness and colour changes (per still; a slow drift in video)."""
    noise_std: float = Field(3.0, ge=0.0, le=50.0)
    """Standard deviation of the sensor noise in 8-bit grey levels."""
    blur_px: int = Field(3, ge=0, le=15)
    """Size of the Gaussian optics blur kernel in pixels (0 or 1 = none; must be odd)."""
    fps: float = Field(30.0, gt=0.0, le=1000.0)
    """Frame rate of video mode in frames per second."""
    min_pixels: int = Field(6, ge=1)
    """A person with fewer pixels inside the frame is left out of the labels."""
    ignore_visible_below: float = Field(0.1, ge=0.0, le=1.0)
    """Persons whose visible fraction is below this are written with "ignore": 1."""

    @model_validator(mode="after")
    def _check_ranges(self) -> SynthConfig:
        if self.people_min > self.people_max:
            raise ValueError(
                f"people_min ({self.people_min}) exceeds people_max ({self.people_max})"
            )
        if self.crowd_size_min > self.crowd_size_max:
            raise ValueError(
                f"crowd_size_min ({self.crowd_size_min}) exceeds crowd_size_max ({self.crowd_size_max})"
            )
        if self.person_height_min_px >= self.person_height_max_px:
            raise ValueError(
                f"person_height_min_px ({self.person_height_min_px}) must be below "
                f"person_height_max_px ({self.person_height_max_px})"
            )
        if self.blur_px > 1 and self.blur_px % 2 == 0:
            raise ValueError(f"blur_px ({self.blur_px}) must be odd, 0 or 1")
        return self

    @classmethod
    def preset(cls, name: Literal["easy", "default", "hard"], **overrides: Any) -> SynthConfig:
        """A named difficulty preset, with optional field overrides.

        ``easy``: few, larger people, little clutter, clean images. ``default``: PANDA-like
        density. ``hard``: dense crowds down to 8 px, heavy clutter, strong lighting change,
        noise and blur.
        """
        presets: dict[str, dict[str, Any]] = {
            "easy": dict(
                people_min=15,
                people_max=40,
                person_height_min_px=24.0,
                group_size_mean=1.5,
                crowd_prob=0.0,
                clutter=0.15,
                shadow_strength=0.2,
                lighting_jitter=0.05,
                noise_std=1.5,
                bag_prob=0.15,
            ),
            "default": {},
            "hard": dict(
                people_min=300,
                people_max=600,
                person_height_min_px=8.0,
                group_size_mean=3.0,
                crowd_prob=0.15,
                clutter=1.0,
                shadow_strength=0.5,
                lighting_jitter=0.35,
                noise_std=6.0,
                blur_px=5,
                bag_prob=0.45,
            ),
        }
        if name not in presets:
            raise InputError(f"synth preset {name!r} is unknown; choose one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def resized(self, width_px: int, height_px: int) -> SynthConfig:
        """The same scene at another frame size: pixel sizes scale with the frame height.

        Useful for small test frames: ``SynthConfig().resized(960, 540)`` looks like the 4K
        default shrunk four times (the smallest person height is kept at 4 px or more).
        """
        s = height_px / self.height_px
        hmax = self.person_height_max_px * s
        hmin = min(max(self.person_height_min_px * s, 4.0), 0.5 * hmax)
        return self.model_copy(
            update=dict(
                width_px=int(width_px),
                height_px=int(height_px),
                person_height_min_px=hmin,
                person_height_max_px=hmax,
                crowd_height_max_px=max(self.crowd_height_max_px * s, hmin),
            )
        )


# ----------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class GroundCamera:
    """Pinhole camera with a horizontal optical axis above a flat ground plane.

    Attributes:
        width_px: frame width.
        height_px: frame height.
        horizon_px: image row of the horizon ``y_h``.
        focal_px: focal length ``f`` in pixels.
        cam_height_m: camera height ``h_c`` above the ground.
        depth_near_m: depth of the ground seen on the bottom row.
        depth_far_m: far end of the plaza (a mean person is ``person_height_min_px`` tall).
    """

    width_px: int
    height_px: int
    horizon_px: float
    focal_px: float
    cam_height_m: float
    depth_near_m: float
    depth_far_m: float

    @classmethod
    def from_config(cls, cfg: SynthConfig) -> GroundCamera:
        """Calibrate the camera so that people span the configured height range."""
        horizon = cfg.horizon_frac * cfg.height_px
        focal = 0.5 * cfg.width_px / math.tan(math.radians(cfg.camera_hfov_deg) / 2)
        # A mean person with feet on the bottom row is person_height_max_px tall:
        # s / h_c * (H - y_h) = h_max.
        cam_h = MEAN_STATURE_M * (cfg.height_px - horizon) / cfg.person_height_max_px
        return cls(
            width_px=cfg.width_px,
            height_px=cfg.height_px,
            horizon_px=horizon,
            focal_px=focal,
            cam_height_m=cam_h,
            depth_near_m=focal * cam_h / (cfg.height_px - horizon),
            depth_far_m=focal * MEAN_STATURE_M / cfg.person_height_min_px,
        )

    @property
    def cx(self) -> float:
        """Image column of the optical axis."""
        return 0.5 * self.width_px

    def project(self, x_m: np.ndarray | float, z_m: np.ndarray | float) -> tuple[Any, Any]:
        """Image position ``(x, y)`` of ground points at lateral ``x_m`` and depth ``z_m``."""
        return (
            self.cx + self.focal_px * np.asarray(x_m) / z_m,
            self.horizon_px + self.focal_px * self.cam_height_m / np.asarray(z_m),
        )

    def ground_at(self, x_px: np.ndarray | float, y_px: np.ndarray | float) -> tuple[Any, Any]:
        """Ground point ``(X, Z)`` in metres seen at image ``(x, y)`` (``y`` below the horizon)."""
        z = self.focal_px * self.cam_height_m / (np.asarray(y_px) - self.horizon_px)
        return (np.asarray(x_px) - self.cx) * z / self.focal_px, z

    def pixels_per_m(self, z_m: np.ndarray | float) -> Any:
        """Scale of an upright object at depth ``z_m`` in pixels per metre."""
        return self.focal_px / np.asarray(z_m)

    def height_at_row(
        self, y_foot_px: np.ndarray | float, stature_m: float = MEAN_STATURE_M
    ) -> Any:
        """Image height of a person whose feet are on row ``y_foot_px``: linear in the row."""
        return stature_m / self.cam_height_m * (np.asarray(y_foot_px) - self.horizon_px)

    def depth_for_height(self, height_px: float, stature_m: float = MEAN_STATURE_M) -> float:
        """Depth at which a person of ``stature_m`` is ``height_px`` tall."""
        return self.focal_px * stature_m / height_px


# ----------------------------------------------------------------------------- figures

# Label values of a figure patch; colours come from a per-person palette.
_SKIN, _HAIR, _SHIRT, _SHIRT_DARK, _TROUSERS, _TROUSERS_DARK, _SHOES, _BAG = range(1, 9)
_N_LABELS = 9

_SKIN_TONES = np.array(
    [
        [255, 224, 196],
        [241, 194, 160],
        [224, 172, 130],
        [198, 134, 90],
        [160, 104, 66],
        [122, 78, 48],
        [92, 58, 36],
        [66, 42, 28],
    ],
    dtype=np.float64,
)
_HAIR_TONES = np.array(
    [[20, 16, 14], [48, 32, 22], [84, 56, 34], [140, 100, 60], [200, 170, 110], [160, 160, 160]],
    dtype=np.float64,
)
_DULL_CLOTHES = np.array(
    [
        [25, 25, 28],
        [60, 60, 66],
        [110, 110, 115],
        [200, 200, 200],
        [240, 240, 236],
        [30, 40, 80],
        [70, 90, 130],
        [90, 70, 50],
        [60, 80, 50],
        [150, 130, 100],
    ],
    dtype=np.float64,
)


@dataclass
class _Look:
    """Appearance of one person, fixed for a whole sequence."""

    palette: np.ndarray  # (_N_LABELS, 3) uint8 RGB
    bag: int  # 0 none, 1 backpack, 2 handbag
    short_sleeves: bool
    long_hair: bool
    arm_style: int  # 0 natural, 1 phone at the face, 2 hands in pockets (standing only)


def _clothing_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.65:
        base = _DULL_CLOTHES[rng.integers(len(_DULL_CLOTHES))]
    else:
        hue = rng.integers(0, 180)
        hsv = np.array([[[hue, rng.integers(120, 256), rng.integers(90, 256)]]], np.uint8)
        base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
    return base + rng.normal(0.0, 8.0, 3)


def _random_look(rng: np.random.Generator, bag_prob: float) -> _Look:
    pal = np.zeros((_N_LABELS, 3), np.float64)
    pal[_SKIN] = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0.0, 6.0, 3)
    pal[_HAIR] = _HAIR_TONES[rng.integers(len(_HAIR_TONES))] + rng.normal(0.0, 5.0, 3)
    pal[_SHIRT] = _clothing_colour(rng)
    pal[_TROUSERS] = (
        _clothing_colour(rng) if rng.random() < 0.6 else _DULL_CLOTHES[rng.integers(0, 7)]
    )
    # The far arm and leg are in their own shade (a cheap depth cue in profile).
    pal[_SHIRT_DARK] = pal[_SHIRT] * 0.72
    pal[_TROUSERS_DARK] = pal[_TROUSERS] * 0.72
    pal[_SHOES] = _DULL_CLOTHES[rng.integers(0, 4)] * 0.8
    pal[_BAG] = _clothing_colour(rng)
    bag = 0
    if rng.random() < bag_prob:
        bag = 1 if rng.random() < 0.55 else 2
    u = rng.random()
    return _Look(
        palette=np.clip(pal, 0, 255).astype(np.uint8),
        bag=bag,
        short_sleeves=bool(rng.random() < 0.4),
        long_hair=bool(rng.random() < 0.35),
        arm_style=0 if u < 0.7 else (1 if u < 0.85 else 2),
    )


def _pt(x: float, y: float) -> tuple[int, int]:
    """A point in OpenCV fixed-point coordinates."""
    return int(round(x * _ONE)), int(round(y * _ONE))


def _thick(t: float) -> int:
    return max(1, int(round(t)))


def _draw_figure(
    height_px: float,
    frac_x: float,
    frac_y: float,
    phase: float,
    swing: float,
    side: float,
    facing: float,
    away: bool,
    look: _Look,
) -> tuple[np.ndarray, int, int]:
    """Draw one person into a new label patch.

    Args:
        height_px: stature on the image.
        frac_x: sub-pixel part of the foot position (x).
        frac_y: sub-pixel part of the foot position (y).
        phase: walking cycle phase in radians.
        swing: walking amplitude in [0, 1] (0 = standing).
        side: how much the person is seen in profile, ``|cos(heading)|`` in [0, 1].
        facing: +1 when walking to the right of the image, -1 to the left.
        away: seen from behind (walking away from the camera).
        look: appearance.

    Returns:
        ``(labels, ax, ay)``: uint8 label patch and the integer patch position of the foot
        point's pixel, so the patch's top-left corner goes to ``(floor(x) - ax, floor(y) - ay)``.
    """
    h = float(height_px)
    half_w = int(math.ceil(0.38 * h)) + 4
    ph = int(math.ceil(1.06 * h)) + 6
    pw = 2 * half_w
    lab = np.zeros((ph, pw), np.uint8)
    ax, ay = half_w, ph - 3
    ox, oy = ax + frac_x, ay + frac_y

    def p(u: float, v: float) -> tuple[int, int]:
        return _pt(ox + u * h, oy + v * h)

    front = 1.0 - side
    profile = side >= 0.5
    fwd = side * facing  # multiplies forward (walking-direction) x components

    # Legs: thigh and shin angles from vertical; the body is lifted so the lower foot touches
    # the ground, which gives the natural bob of a walk.
    thigh, shin = 0.245, 0.235
    legs = []
    for j in range(2):
        ph_j = phase + j * math.pi
        a = 0.42 * swing * math.sin(ph_j)
        g = a - 0.45 * swing * 0.5 * (1.0 + math.cos(ph_j))
        legs.append((a, g))
    extent = max(thigh * math.cos(a) + shin * math.cos(g) for a, g in legs)
    hip_y = -(extent + 0.025)
    sh_y = hip_y - 0.315
    head_y = sh_y - 0.11
    head_r = 0.062
    sw = 0.12 * front + 0.055 * side
    hw = 0.085 * front + 0.05 * side
    lean = 0.025 * swing * fwd

    leg_t = _thick(0.075 * h)
    arm_t = _thick(0.048 * h)

    def draw_leg(j: int, label: int) -> None:
        a, g = legs[j]
        hx = (0.045 * front) * (1 if j == 0 else -1)
        knee = (hx + thigh * math.sin(a) * fwd, hip_y + thigh * math.cos(a))
        ankle = (knee[0] + shin * math.sin(g) * fwd, knee[1] + shin * math.cos(g))
        cv2.line(lab, p(hx, hip_y + 0.02), p(*knee), label, leg_t, cv2.LINE_8, _SHIFT)
        cv2.line(lab, p(*knee), p(*ankle), label, leg_t, cv2.LINE_8, _SHIFT)
        toe = (ankle[0] + 0.055 * fwd + 0.01 * front * (1 if j == 0 else -1), ankle[1] + 0.012)
        cv2.line(lab, p(*ankle), p(*toe), _SHOES, _thick(0.035 * h), cv2.LINE_8, _SHIFT)

    def arm_points(j: int) -> list[tuple[float, float]]:
        side_sign = 1 if j == 0 else -1
        sx = (sw - 0.02) * side_sign * front + lean
        sy = sh_y + 0.02
        up, fore = 0.17, 0.155
        if swing > 0.05 or look.arm_style == 0:
            b = -0.38 * swing * math.sin(phase + j * math.pi)
            out = 0.09 * side_sign * front
            elbow = (sx + up * (math.sin(b) * fwd + out), sy + up * math.cos(b))
            c = b + 0.3 * swing + 0.1
            hand = (elbow[0] + fore * (math.sin(c) * fwd + out), elbow[1] + fore * math.cos(c))
        elif look.arm_style == 1 and j == 0:
            elbow = (sx + 0.03 * fwd + 0.02 * side_sign * front, sy + up)
            hand = (sx * 0.3 + 0.04 * fwd, head_y + 0.02)
        else:
            elbow = (sx + 0.02 * side_sign * front, sy + up)
            hand = (sx * 0.8 + 0.01 * side_sign * front, sy + up + fore * 0.8)
        return [(sx, sy), elbow, hand]

    def draw_arm(j: int, sleeve: int) -> tuple[float, float]:
        s, e, hnd = arm_points(j)
        cv2.line(lab, p(*s), p(*e), sleeve, arm_t, cv2.LINE_8, _SHIFT)
        cv2.line(
            lab, p(*e), p(*hnd), _SKIN if look.short_sleeves else sleeve, arm_t, cv2.LINE_8, _SHIFT
        )
        cv2.circle(lab, p(*hnd), int(round(0.024 * h * _ONE)), _SKIN, -1, cv2.LINE_8, _SHIFT)
        return hnd

    far_shirt = _SHIRT_DARK if profile else _SHIRT
    far_trousers = _TROUSERS_DARK if profile else _TROUSERS

    # Back to front: far limbs, backpack in profile, near leg, torso, near arm, head.
    draw_arm(1, far_shirt)
    draw_leg(1, far_trousers)
    if look.bag == 1 and profile:
        bx = -facing * (sw + 0.005) + lean
        pts = [
            p(bx, sh_y + 0.03),
            p(bx - facing * 0.085, sh_y + 0.05),
            p(bx - facing * 0.085, sh_y + 0.22),
            p(bx, sh_y + 0.22),
        ]
        cv2.fillPoly(lab, [np.array(pts, np.int32)], _BAG, cv2.LINE_8, _SHIFT)
    draw_leg(0, _TROUSERS)
    band = [
        p(-hw, hip_y - 0.01),
        p(hw, hip_y - 0.01),
        p(hw * 0.85, hip_y + 0.07),
        p(-hw * 0.85, hip_y + 0.07),
    ]
    cv2.fillPoly(lab, [np.array(band, np.int32)], _TROUSERS, cv2.LINE_8, _SHIFT)
    torso = [p(-sw + lean, sh_y), p(sw + lean, sh_y), p(hw, hip_y + 0.02), p(-hw, hip_y + 0.02)]
    cv2.fillPoly(lab, [np.array(torso, np.int32)], _SHIRT, cv2.LINE_8, _SHIFT)
    if look.bag == 1 and not profile and away:
        pts = [
            p(-0.08 + lean, sh_y + 0.03),
            p(0.08 + lean, sh_y + 0.03),
            p(0.08, sh_y + 0.22),
            p(-0.08, sh_y + 0.22),
        ]
        cv2.fillPoly(lab, [np.array(pts, np.int32)], _BAG, cv2.LINE_8, _SHIFT)
    hand = draw_arm(0, _SHIRT)
    if look.bag == 2:
        pts = [
            p(hand[0] - 0.035, hand[1] + 0.01),
            p(hand[0] + 0.035, hand[1] + 0.01),
            p(hand[0] + 0.04, hand[1] + 0.085),
            p(hand[0] - 0.04, hand[1] + 0.085),
        ]
        cv2.fillPoly(lab, [np.array(pts, np.int32)], _BAG, cv2.LINE_8, _SHIFT)
    # Neck and head; hair covers the back of the head, or its top seen from the front.
    hx = lean * 1.2
    cv2.line(lab, p(hx, sh_y + 0.01), p(hx, head_y), _SKIN, _thick(0.04 * h), cv2.LINE_8, _SHIFT)
    r = int(round(head_r * h * _ONE))
    cv2.circle(lab, p(hx, head_y), r, _SKIN, -1, cv2.LINE_8, _SHIFT)
    if away and not profile:
        cv2.circle(lab, p(hx, head_y), r, _HAIR, -1, cv2.LINE_8, _SHIFT)
    else:
        back = -0.012 * fwd
        cv2.ellipse(
            lab,
            p(hx + back, head_y - 0.004),
            (r, int(round(r * 0.85))),
            0.0,
            180.0,
            360.0,
            _HAIR,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
    if look.long_hair:
        bx = hx - 0.04 * fwd
        pts = [
            p(bx - 0.05 * front - 0.02, head_y),
            p(bx + 0.05 * front + 0.02, head_y),
            p(bx + 0.05 * front + 0.02, sh_y + 0.04),
            p(bx - 0.05 * front - 0.02, sh_y + 0.04),
        ]
        if away or profile:
            cv2.fillPoly(lab, [np.array(pts, np.int32)], _HAIR, cv2.LINE_8, _SHIFT)
    return lab, ax, ay


# ----------------------------------------------------------------------------- static objects


@dataclass
class _Sprite:
    """A pre-drawn static object standing on the ground at ``depth_m``."""

    labels: np.ndarray
    palette: np.ndarray
    x0: int
    y0: int
    depth_m: float


def _label_canvas(width_m: float, height_m: float, ppm: float) -> tuple[np.ndarray, float, float]:
    """An empty label patch for an object; returns it and the base point (pixels)."""
    w = int(math.ceil(width_m * ppm)) + 6
    h = int(math.ceil(height_m * ppm)) + 6
    return np.zeros((h, w), np.uint8), w / 2.0, h - 3.0


def _make_object(
    kind: str, cam: GroundCamera, x_m: float, z_m: float, rng: np.random.Generator, cfg: SynthConfig
) -> _Sprite:
    """Draw one static object (trees, posts, benches, bins, bollards, statues)."""
    ppm = float(cam.pixels_per_m(z_m))
    fx, fy = cam.project(x_m, z_m)
    pal = np.zeros((8, 3), np.float64)

    def p(u: float, v: float) -> tuple[int, int]:
        return _pt(bx + u * ppm, by - v * ppm)  # u metres right, v metres up

    def rect(u0: float, v0: float, u1: float, v1: float, label: int) -> None:
        pts = np.array([p(u0, v0), p(u1, v0), p(u1, v1), p(u0, v1)], np.int32)
        cv2.fillPoly(lab, [pts], label, cv2.LINE_8, _SHIFT)

    if kind == "tree":
        trunk_h = rng.uniform(2.0, 3.2)
        crown = rng.uniform(1.3, 2.4)
        lab, bx, by = _label_canvas(2.6 * crown, trunk_h + 2.2 * crown, ppm)
        pal[1] = np.array([90, 64, 40]) + rng.normal(0, 8, 3)
        green = np.array([60, 110, 50]) + rng.normal(0, 12, 3)
        pal[2], pal[3], pal[4] = green, green * 0.8, green * 1.15
        rect(-0.15, 0.0, 0.15, trunk_h + 0.3, 1)
        for k in range(5):
            cu = rng.uniform(-0.45, 0.45) * crown
            cv_ = trunk_h + crown * rng.uniform(0.7, 1.2)
            r = crown * rng.uniform(0.55, 0.85)
            cv2.ellipse(
                lab,
                p(cu, cv_),
                (int(r * ppm * _ONE), int(0.85 * r * ppm * _ONE)),
                0.0,
                0.0,
                360.0,
                2 + k % 3,
                -1,
                cv2.LINE_8,
                _SHIFT,
            )
    elif kind == "lamp":
        pole_h = rng.uniform(4.0, 6.0)
        lab, bx, by = _label_canvas(1.2, pole_h + 0.6, ppm)
        pal[1] = np.array([40, 44, 48]) + rng.normal(0, 6, 3)
        pal[2] = np.array([235, 230, 200])
        rect(-0.07, 0.0, 0.07, pole_h, 1)
        rect(-0.12, 0.0, 0.12, 0.4, 1)
        cv2.ellipse(
            lab,
            p(0.0, pole_h + 0.1),
            (int(0.3 * ppm * _ONE), int(0.15 * ppm * _ONE)),
            0.0,
            0.0,
            360.0,
            2,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
    elif kind == "bench":
        lab, bx, by = _label_canvas(2.0, 1.0, ppm)
        wood = np.array([130, 90, 55]) if rng.random() < 0.6 else np.array([90, 95, 100])
        pal[1] = wood + rng.normal(0, 8, 3)
        pal[2] = np.array([35, 35, 38])
        for u in (-0.8, 0.7):
            rect(u, 0.0, u + 0.1, 0.45, 2)
        rect(-0.9, 0.4, 0.9, 0.5, 1)
        rect(-0.9, 0.6, 0.9, 0.85, 1)
    elif kind == "bin":
        lab, bx, by = _label_canvas(0.7, 1.1, ppm)
        pal[1] = (
            np.array([50, 90, 60]) if rng.random() < 0.5 else np.array([80, 80, 86])
        ) + rng.normal(0, 6, 3)
        pal[2] = pal[1] * 0.7
        rect(-0.28, 0.0, 0.28, 0.95, 1)
        rect(-0.3, 0.9, 0.3, 1.0, 2)
    elif kind == "bollard":
        lab, bx, by = _label_canvas(0.4, 1.1, ppm)
        pal[1] = np.array([60, 60, 64]) + rng.normal(0, 6, 3)
        pal[2] = np.array([210, 200, 80]) if rng.random() < 0.5 else np.array([220, 220, 220])
        rect(-0.1, 0.0, 0.1, 0.95, 1)
        rect(-0.1, 0.7, 0.1, 0.8, 2)
        cv2.circle(lab, p(0.0, 0.95), int(0.1 * ppm * _ONE), 1, -1, cv2.LINE_8, _SHIFT)
    else:  # statue: a person-like figure on a pedestal, a hard negative for detectors
        stature = rng.uniform(1.9, 2.4)
        ped = rng.uniform(0.8, 1.4)
        lab, bx, by = _label_canvas(1.6, ped + stature * 1.08, ppm)
        stone = np.array([150, 145, 135]) if rng.random() < 0.5 else np.array([95, 75, 45])
        pal[1] = stone * 0.85
        rect(-0.6, 0.0, 0.6, ped, 1)
        look = _random_look(rng, 0.0)
        figure, fax, fay = _draw_figure(
            stature * ppm,
            0.0,
            0.0,
            rng.uniform(0, 6.28),
            rng.uniform(0.0, 0.6),
            rng.uniform(0, 1),
            float(rng.choice([-1.0, 1.0])),
            False,
            look,
        )
        # Paste the figure (all in stone shades) on the pedestal.
        top_x = int(round(bx)) - fax
        top_y = int(round(by - ped * ppm)) - fay
        _paste_labels(lab, figure, top_x, top_y, offset=1)
        shades = stone[None, :] * rng.uniform(0.85, 1.15, (_N_LABELS, 1))
        pal = np.concatenate([pal[:2], shades[1:]], axis=0)
    palette = np.clip(pal, 0, 255).astype(np.uint8)
    return _Sprite(
        lab,
        palette,
        int(math.floor(fx)) - int(round(bx)),
        int(math.floor(fy)) - int(round(by)),
        float(z_m),
    )


def _paste_labels(dst: np.ndarray, src: np.ndarray, x0: int, y0: int, offset: int = 0) -> None:
    """Copy non-zero labels of ``src`` (plus ``offset``) into ``dst`` at ``(x0, y0)``, clipped."""
    h, w = dst.shape
    sh, sw = src.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + sw, w), min(y0 + sh, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sub = src[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    sel = sub > 0
    dst[cy0:cy1, cx0:cx1][sel] = sub[sel] + offset


def _composite(
    frame: np.ndarray,
    owner: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    x0: int,
    y0: int,
    pid: int,
) -> int:
    """Paste a label patch onto the frame and the owner buffer; return in-frame pixel count."""
    h, w = owner.shape
    ph, pw = labels.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + pw, w), min(y0 + ph, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return 0
    sub = labels[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    sel = sub > 0
    frame[cy0:cy1, cx0:cx1][sel] = palette[sub[sel]]
    owner[cy0:cy1, cx0:cx1][sel] = pid
    return int(np.count_nonzero(sel))


# ----------------------------------------------------------------------------- background


def _darken_polys(img: np.ndarray, polys: list[np.ndarray], factor: float) -> None:
    """Multiply the pixels inside fixed-point polygons by ``factor`` (one masked pass)."""
    if not polys or factor >= 1.0:
        return
    allpts = np.concatenate(polys) >> _SHIFT
    x0 = int(max(allpts[:, 0].min() - 1, 0))
    y0 = int(max(allpts[:, 1].min() - 1, 0))
    x1 = int(min(allpts[:, 0].max() + 2, img.shape[1]))
    y1 = int(min(allpts[:, 1].max() + 2, img.shape[0]))
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift_off = np.array([x0 << _SHIFT, y0 << _SHIFT], np.int32)
    cv2.fillPoly(mask, [pp - shift_off for pp in polys], 1, cv2.LINE_8, _SHIFT)
    roi = img[y0:y1, x0:x1]
    sel = mask > 0
    k = int(round(factor * 256))
    roi[sel] = ((roi[sel].astype(np.uint16) * k) >> 8).astype(np.uint8)


def _ground_quad(cam: GroundCamera, x0: float, z0: float, x1: float, z1: float) -> np.ndarray:
    """Fixed-point image polygon of a ground rectangle ``[x0, x1] x [z0, z1]`` (metres)."""
    xs = np.array([x0, x1, x1, x0])
    zs = np.array([z0, z0, z1, z1])
    px, py = cam.project(xs, zs)
    return np.round(np.stack([px, py], axis=1) * _ONE).astype(np.int32)


@dataclass
class _Background:
    image: np.ndarray
    ignore: np.ndarray  # (M, 4) xyxy
    sprites: list[_Sprite]
    light_dir: tuple[float, float]  # image direction of cast shadows (unit vector)


def _build_background(cam: GroundCamera, cfg: SynthConfig, rng: np.random.Generator) -> _Background:
    """Sky, skyline, ground and static objects of one sequence."""
    W, H = cam.width_px, cam.height_px
    yh = int(round(cam.horizon_px))
    img = np.empty((H, W, 3), np.uint8)

    # Sky: vertical gradient, clear or overcast.
    top = np.array([95, 140, 200]) if rng.random() < 0.6 else np.array([170, 175, 185])
    top = top + rng.normal(0, 10, 3)
    bottom = np.array([205, 212, 222]) + rng.normal(0, 6, 3)
    t = np.linspace(0.0, 1.0, max(yh, 1))[:, None]
    sky = np.clip(top * (1 - t) + bottom * t, 0, 255).astype(np.uint8)
    img[:yh] = sky[:, None, :]

    # Ground: paving base colour, lawns and markings in perspective, joints, texture.
    paving = [
        np.array([150, 148, 142]),
        np.array([176, 164, 140]),
        np.array([150, 112, 96]),
        np.array([128, 128, 132]),
    ][rng.integers(4)] + rng.normal(0, 6, 3)
    img[yh:] = np.clip(paving, 0, 255).astype(np.uint8)
    z_near, z_far = cam.depth_near_m, cam.depth_far_m
    half_span = lambda z: 0.55 * W * z / cam.focal_px  # noqa: E731 - lateral half-width at z
    n_lawns = rng.poisson(1 + 3 * cfg.clutter)
    for _ in range(n_lawns):
        z0 = math.exp(rng.uniform(math.log(z_near), math.log(z_far)))
        z1 = z0 * rng.uniform(1.05, 1.6)
        xc = rng.uniform(-1, 1) * half_span(z0)
        ww = rng.uniform(3, 25)
        colour = np.array([80, 125, 60]) + rng.normal(0, 10, 3)
        quad = _ground_quad(cam, xc - ww, z0, xc + ww, z1)
        cv2.fillPoly(
            img, [quad], tuple(int(c) for c in np.clip(colour, 0, 255)), cv2.LINE_AA, _SHIFT
        )
    for _ in range(rng.poisson(1 + 2 * cfg.clutter)):
        z0 = z_near * rng.uniform(0.9, 2.0)
        z1 = z0 * rng.uniform(3.0, 12.0)
        xc = rng.uniform(-1, 1) * half_span(z0)
        paint = (235, 235, 225) if rng.random() < 0.7 else (225, 190, 60)
        cv2.fillPoly(
            img, [_ground_quad(cam, xc - 0.08, z0, xc + 0.08, z1)], paint, cv2.LINE_AA, _SHIFT
        )
    joint = tuple(int(c) for c in np.clip(paving * 0.82, 0, 255))
    tile = rng.uniform(1.5, 4.0)
    z = z_near * 0.9
    while z < z_far * 1.5:
        y = cam.horizon_px + cam.focal_px * cam.cam_height_m / z
        gap = y - (cam.horizon_px + cam.focal_px * cam.cam_height_m / (z + tile))
        if gap < 5:
            break
        cv2.line(img, _pt(0, y), _pt(W, y), joint, 1, cv2.LINE_AA, _SHIFT)
        z += tile
    z_lines_end = z
    x_lim = half_span(z_near) * 1.2
    k_max = int(x_lim / tile) + 1
    for k in range(-k_max, k_max + 1):
        x_m = k * tile
        p0 = cam.project(x_m, z_lines_end)
        p1 = cam.project(x_m, z_near * 0.9)
        cv2.line(img, _pt(*p0), _pt(*p1), joint, 1, cv2.LINE_AA, _SHIFT)
    # Weathering: large soft blotches plus a finer grain, each one resize of a small noise field.
    gsize = (W, H - yh)
    coarse = rng.standard_normal((max(2, (H - yh) // 96), max(2, W // 96))).astype(np.float32)
    fine = rng.standard_normal((max(2, (H - yh) // 6), max(2, W // 6))).astype(np.float32)
    blotch = cv2.resize(coarse, gsize, interpolation=cv2.INTER_CUBIC) * (4.0 + 5.0 * cfg.clutter)
    blotch += cv2.resize(fine, gsize, interpolation=cv2.INTER_LINEAR) * 2.5
    offset = np.clip(blotch + 128.0, 0, 255).astype(np.uint8)
    ground = img[yh:]
    pos = np.clip(np.arange(256) - 128, 0, 255).astype(np.uint8)
    neg = np.clip(128 - np.arange(256), 0, 255).astype(np.uint8)
    off_pos = cv2.cvtColor(cv2.LUT(offset, pos), cv2.COLOR_GRAY2RGB)
    off_neg = cv2.cvtColor(cv2.LUT(offset, neg), cv2.COLOR_GRAY2RGB)
    img[yh:] = cv2.subtract(cv2.add(ground, off_pos), off_neg)

    # Skyline: buildings standing beyond the far end of the plaza, drawn far to near.
    ignore: list[list[float]] = []
    layers = sorted(rng.uniform(1.1, 1.8, 3) * z_far, reverse=True)
    for li, zb in enumerate(layers):
        ppm = cam.focal_px / zb
        x = -rng.uniform(0, 40) * ppm
        while x < W:
            bw = rng.uniform(12, 60) * ppm
            bh = min(rng.uniform(8, 70) * ppm, 0.95 * cam.horizon_px)
            if rng.random() < 0.25:
                x += bw * rng.uniform(0.2, 1.0)  # a gap in the skyline
                continue
            x0, x1 = int(x), int(min(x + bw, W))
            y0, y1 = int(cam.horizon_px - bh), int(cam.horizon_px) + 2
            facade = np.array(
                [[170, 160, 150], [120, 110, 105], [200, 195, 185], [150, 160, 175], [110, 90, 80]][
                    rng.integers(5)
                ]
            )
            facade = np.clip(facade * (0.8 + 0.1 * li) + rng.normal(0, 10, 3), 0, 255)
            if x1 > max(x0, 0) and y1 > y0:
                reg = img[max(y0, 0) : y1, max(x0, 0) : x1]
                reg[:] = facade.astype(np.uint8)
                floor_px = 3.2 * ppm
                if floor_px >= 3:
                    rows = np.flatnonzero((np.arange(reg.shape[0]) % floor_px) < 0.5 * floor_px)
                    col_px = rng.uniform(2.0, 4.0) * ppm
                    cols = np.flatnonzero((np.arange(reg.shape[1]) % col_px) < 0.55 * col_px)
                    rows = rows[(rows > 1) & (rows < reg.shape[0] - floor_px)]
                    if rows.size and cols.size:
                        glass = np.array([60, 75, 95]) + rng.normal(0, 12, 3)
                        reg[np.ix_(rows, cols)] = np.clip(glass, 0, 255).astype(np.uint8)
                # Posters of people on the nearest facades: PANDA's "fake person" ignore regions.
                if li == len(layers) - 1 and rng.random() < 0.35 * cfg.clutter:
                    ignore_box = _draw_poster(img, x0, y0, x1, y1, ppm, rng)
                    if ignore_box is not None:
                        ignore.append(ignore_box)
            x += bw
    # A tree line where the plaza meets the buildings.
    n_trees = int(W / 30 * (0.3 + cfg.clutter))
    zt = z_far * 1.05
    ppm = cam.focal_px / zt
    for _ in range(n_trees):
        xt = rng.uniform(0, W)
        r = rng.uniform(2.0, 4.5) * ppm
        green = np.clip(np.array([55, 90, 50]) + rng.normal(0, 10, 3), 0, 255)
        cv2.ellipse(
            img,
            _pt(xt, cam.horizon_px - 0.7 * r),
            (int(r * _ONE), int(0.8 * r * _ONE)),
            0.0,
            0.0,
            360.0,
            tuple(int(c) for c in green),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )

    # Static objects on the plaza and their shadows.
    sun = rng.uniform(-2.6, -0.5) if rng.random() < 0.5 else rng.uniform(0.5, 2.6)
    light_dir = (math.cos(sun), 0.25 * abs(math.sin(sun)) + 0.1)
    norm = math.hypot(*light_dir)
    light_dir = (light_dir[0] / norm, light_dir[1] / norm)
    sprites: list[_Sprite] = []
    kinds = ["tree", "lamp", "bench", "bin", "bollard", "statue"]
    weights = np.array([0.22, 0.22, 0.18, 0.12, 0.18, 0.08])
    n_obj = rng.poisson(40 * cfg.clutter)
    shadow_polys = []
    for _ in range(n_obj):
        kind = kinds[rng.choice(len(kinds), p=weights)]
        z_lo = z_near * (2.5 if kind in ("tree", "statue") else 1.0)
        z_o = math.exp(rng.uniform(math.log(z_lo), math.log(z_far)))
        x_img = rng.uniform(0, W)
        x_o = (x_img - cam.cx) * z_o / cam.focal_px
        if kind == "bollard":  # a short row of them
            for k in range(int(rng.integers(3, 7))):
                sprites.append(_make_object(kind, cam, x_o + 1.5 * k, z_o, rng, cfg))
        else:
            sprites.append(_make_object(kind, cam, x_o, z_o, rng, cfg))
    for s in sprites:
        bx = s.x0 + s.labels.shape[1] / 2.0
        by = s.y0 + s.labels.shape[0] - 3.0
        length = 0.6 * s.labels.shape[0]
        c = (bx + light_dir[0] * length * 0.5, by + light_dir[1] * length * 0.2)
        width = min(0.12 * length, 0.4 * s.labels.shape[1])
        axes = (max(int(0.5 * length * _ONE), 1), max(int(width * _ONE), 1))
        ang = math.degrees(math.atan2(light_dir[1] * 0.4, light_dir[0]))
        poly = cv2.ellipse2Poly((int(c[0] * _ONE), int(c[1] * _ONE)), axes, int(ang), 0, 360, 10)
        shadow_polys.append(poly.astype(np.int32))
    # Long shadows of the buildings along the far edge of the plaza.
    for _ in range(rng.poisson(1 + cfg.clutter)):
        z0 = z_far * rng.uniform(0.3, 0.9)
        xc = rng.uniform(-1, 1) * half_span(z0)
        shadow_polys.append(
            _ground_quad(cam, xc, z0, xc + rng.uniform(10, 60), z0 * rng.uniform(1.2, 2.0))
        )
    _darken_polys(img, shadow_polys, 1.0 - 0.8 * cfg.shadow_strength)
    return _Background(img, np.asarray(ignore, np.float32).reshape(-1, 4), sprites, light_dir)


def _draw_poster(
    img: np.ndarray, x0: int, y0: int, x1: int, y1: int, ppm: float, rng: np.random.Generator
) -> list[float] | None:
    """A billboard with printed people on a facade; returns its box (an ignore region)."""
    pw = rng.uniform(5, 12) * ppm
    ph = pw * rng.uniform(0.9, 1.5)
    if x1 - x0 < pw + 2 or y1 - y0 < ph + 2 or ph < 16:
        return None
    px0 = rng.uniform(x0 + 1, x1 - pw - 1)
    py0 = rng.uniform(y0 + 1, y1 - ph - 1)
    bx0, by0 = int(px0), int(py0)
    bx1, by1 = int(px0 + pw), int(py0 + ph)
    if bx0 < 0 or by0 < 0 or bx1 > img.shape[1] or by1 > img.shape[0]:
        return None
    bg = np.clip(np.array([230, 225, 215]) + rng.normal(0, 15, 3), 0, 255).astype(np.uint8)
    img[by0:by1, bx0:bx1] = bg
    for _ in range(int(rng.integers(1, 4))):
        look = _random_look(rng, 0.2)
        fh = ph * rng.uniform(0.55, 0.85)
        lab, ax, ay = _draw_figure(
            fh,
            0.0,
            0.0,
            rng.uniform(0, 6.28),
            rng.uniform(0, 1),
            rng.uniform(0, 1),
            float(rng.choice([-1.0, 1.0])),
            False,
            look,
        )
        fx = int(rng.uniform(bx0 + 0.25 * pw, bx1 - 0.25 * pw))
        fy = by1 - 2
        tmp = img[by0:by1, bx0:bx1]
        owner = np.zeros(tmp.shape[:2], np.uint16)
        _composite(tmp, owner, lab, look.palette, fx - bx0 - ax, fy - by0 - ay, 1)
    return [float(bx0), float(by0), float(bx1), float(by1)]


# ----------------------------------------------------------------------------- people


@dataclass
class _Person:
    track_id: int
    dx_m: float  # offset from the group centre
    dz_m: float
    stature_m: float
    look: _Look
    phase: float
    heading: float  # own facing when the group stands


@dataclass
class _Group:
    x_m: float
    z_m: float
    heading: float
    turn_rate: float
    speed_mps: float
    standing: bool
    crowd_id: int  # > 0 for a dense crowd labelled as one region
    members: list[_Person] = field(default_factory=list)
    entered: bool = False
    age_frames: int = 0


class _World:
    """State of one sequence: background, static objects, people groups and their motion."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.cam = GroundCamera.from_config(cfg)
        self.bg = _build_background(self.cam, cfg, rng)
        self.next_id = 1
        self.target = int(rng.integers(cfg.people_min, cfg.people_max + 1))
        self.groups: list[_Group] = []
        while self.population < self.target:
            self.groups.append(self._new_group(at_edge=False))
        # Global lighting: a per-sequence base and, in video, a slow drift around it.
        j = cfg.lighting_jitter
        self.gain = 1.0 + rng.uniform(-0.35, 0.25) * j
        self.tint = 1.0 + rng.normal(0.0, 0.06 * j, 3)
        self.gamma = 1.0 + rng.uniform(-0.25, 0.25) * j
        self.drift = 0.0
        self.frame_index = 0
        # Sensor noise: a byte bank, read at a random offset every frame.
        n = cfg.width_px * cfg.height_px * 3
        self.noise_bank = (
            np.frombuffer(rng.bytes(n + 65536), np.uint8) if cfg.noise_std > 0 else None
        )
        self.noise_luts = _noise_luts(cfg.noise_std)

    @property
    def population(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def _new_person(self, dx: float, dz: float, heading: float) -> _Person:
        rng, cfg = self.rng, self.cfg
        stature = MEAN_STATURE_M * max(0.5, 1.0 + rng.normal(0.0, cfg.stature_std_frac))
        person = _Person(
            self.next_id,
            dx,
            dz,
            stature,
            _random_look(rng, cfg.bag_prob),
            rng.uniform(0, 2 * math.pi),
            heading + rng.normal(0, 0.6),
        )
        self.next_id += 1
        return person

    def _new_group(self, at_edge: bool) -> _Group:
        rng, cfg, cam = self.rng, self.cfg, self.cam
        z_near, z_far = cam.depth_near_m, cam.depth_far_m
        crowd = rng.random() < cfg.crowd_prob
        z_crowd = cam.depth_for_height(cfg.crowd_height_max_px)
        if crowd and z_crowd >= z_far:
            crowd = False
        if crowd:
            z = math.exp(rng.uniform(math.log(z_crowd), math.log(z_far)))
            n = int(rng.integers(cfg.crowd_size_min, cfg.crowd_size_max + 1))
            standing = True
        else:
            z = math.exp(rng.uniform(math.log(z_near * 0.93), math.log(z_far)))
            n = 1 + int(rng.poisson(cfg.group_size_mean - 1.0))
            standing = bool(rng.random() < cfg.standing_prob)
        margin = 0.03 * cam.width_px
        heading = rng.uniform(-math.pi, math.pi)
        if at_edge:
            crowd, standing = False, False
            n = 1 + int(rng.poisson(cfg.group_size_mean - 1.0))
            where = rng.random()
            h_px = cam.focal_px * MEAN_STATURE_M / z
            if where < 0.4:  # walk in from the left
                x_img = -0.45 * h_px - 2.0
                heading = rng.uniform(-1.0, 1.0)
            elif where < 0.8:  # from the right
                x_img = cam.width_px + 0.45 * h_px + 2.0
                heading = math.pi + rng.uniform(-1.0, 1.0)
            else:  # from below the bottom edge, walking away from the camera
                z = z_near * rng.uniform(0.55, 0.8)
                x_img = rng.uniform(0, cam.width_px)
                heading = math.pi / 2 + rng.uniform(-0.6, 0.6)
        else:
            x_img = rng.uniform(-margin, cam.width_px + margin)
        x = (x_img - cam.cx) * z / cam.focal_px
        speed = 0.0 if standing else max(0.3, rng.normal(cfg.walk_speed_mps, 0.2))
        group = _Group(x, z, heading, 0.0, speed, standing, 0)
        if crowd:
            group.crowd_id = self.next_id
            self.next_id += 1
            radius = 0.45 * math.sqrt(n)
        else:
            radius = cfg.group_spread_m * math.sqrt(n) / 1.4 if n > 1 else 0.0
        for _ in range(n):
            r = radius * math.sqrt(rng.random())
            t = rng.uniform(0, 2 * math.pi)
            group.members.append(self._new_person(r * math.cos(t), r * math.sin(t), heading))
        return group

    def _member_box(self, g: _Group, p: _Person) -> tuple[float, float, float, float]:
        z = g.z_m + p.dz_m
        if z <= 0.2:  # behind the camera: nowhere on the image
            return -1.0, -1.0, -1.0, -1.0
        x, y = self.cam.project(g.x_m + p.dx_m, z)
        h = self.cam.focal_px * p.stature_m / z
        return float(x - 0.4 * h), float(y - h), float(x + 0.4 * h), float(y)

    def _in_view(self, g: _Group) -> bool:
        W, H = self.cam.width_px, self.cam.height_px
        for p in g.members:
            x0, y0, x1, y1 = self._member_box(g, p)
            if x1 > 0 and x0 < W and y1 > 0 and y0 < H:
                return True
        return False

    def step(self) -> None:
        """Advance the world by one frame: move groups, retire those that left, spawn new ones."""
        rng, cfg, cam = self.rng, self.cfg, self.cam
        dt = 1.0 / cfg.fps
        noise = rng.standard_normal(len(self.groups))
        # Ornstein-Uhlenbeck turning rate: smooth, bounded curvature of the paths.
        decay = math.exp(-dt / _TURN_TAU_S)
        kick = _TURN_STD_RAD_S * math.sqrt(1.0 - decay * decay)
        for g, n in zip(self.groups, noise):
            g.age_frames += 1
            if g.standing:
                continue
            g.turn_rate = g.turn_rate * decay + kick * float(n)
            g.heading += g.turn_rate * dt
            g.x_m += g.speed_mps * math.cos(g.heading) * dt
            g.z_m += g.speed_mps * math.sin(g.heading) * dt
            if g.z_m > cam.depth_far_m:  # the far end of the plaza: turn back
                g.z_m = cam.depth_far_m
                g.heading = -g.heading
                g.turn_rate = 0.0
            step_phase = 2 * math.pi * g.speed_mps * dt / _STRIDE_M
            for p in g.members:
                p.phase += step_phase
        kept = []
        for g in self.groups:
            visible = self._in_view(g)
            g.entered = g.entered or visible
            too_old = not g.entered and g.age_frames > 20 * cfg.fps
            gone = g.entered and not visible
            if not (gone or too_old or g.z_m + min(p.dz_m for p in g.members) <= 0.2):
                kept.append(g)
        self.groups = kept
        # Keep the population near its target: at most one new group walks in per frame.
        if self.population < self.target:
            self.groups.append(self._new_group(at_edge=True))
        # Slow lighting drift (clouds): a mean-reverting random walk.
        self.drift = 0.995 * self.drift + 0.004 * cfg.lighting_jitter * float(rng.standard_normal())
        self.frame_index += 1

    def render(self) -> Scene:
        """Draw the current state."""
        cfg, cam = self.cfg, self.cam
        W, H = cam.width_px, cam.height_px
        frame = self.bg.image.copy()
        owner = np.zeros((H, W), np.uint16)

        # Everyone in (or near) the view, with image geometry.
        items: list[tuple[float, int, Any]] = []  # (depth, order, payload)
        people: list[tuple[_Group, _Person, float, float, float]] = []
        for g in self.groups:
            for p in g.members:
                z = g.z_m + p.dz_m
                if z <= 0.2:
                    continue
                x, y = cam.project(g.x_m + p.dx_m, z)
                h = cam.focal_px * p.stature_m / z
                if x + 0.5 * h < 0 or x - 0.5 * h > W or y - 1.1 * h > H or y < 0:
                    continue
                people.append((g, p, float(x), float(y), float(h)))
        for i, (g, p, *_geometry) in enumerate(people):
            items.append((g.z_m + p.dz_m, i, ("person", i)))
        for j, s in enumerate(self.bg.sprites):
            items.append((s.depth_m, len(people) + j, ("sprite", j)))
        items.sort(key=lambda t: (-t[0], t[1]))

        # Cast shadows of people on the ground, before anyone is drawn.
        if cfg.shadow_strength > 0 and people:
            lx, ly = self.bg.light_dir
            polys = []
            for _, _, x, y, h in people:
                c = (x + lx * 0.28 * h, y + ly * 0.06 * h)
                axes = (max(int(0.32 * h * _ONE), 1), max(int(0.055 * h * _ONE), 1))
                ang = int(math.degrees(math.atan2(ly * 0.3, lx)))
                polys.append(
                    cv2.ellipse2Poly(
                        (int(c[0] * _ONE), int(c[1] * _ONE)), axes, ang, 0, 360, 20
                    ).astype(np.int32)
                )
            # Shadows are drawn in vertical bands so each masked pass stays local.
            _darken_shadow_bands(frame, polys, 1.0 - 0.8 * cfg.shadow_strength)

        n = len(people)
        in_frame = np.zeros(n + 1, np.int64)
        boxes = np.zeros((n, 4), np.float64)
        for _, _, (kind, idx) in items:
            if kind == "sprite":
                s = self.bg.sprites[idx]
                _composite(frame, owner, s.labels, s.palette, s.x0, s.y0, 0)
                continue
            g, p, x, y, h = people[idx]
            heading = p.heading if g.standing else g.heading
            swing = 0.0 if g.standing else min(1.0, g.speed_mps / 1.3)
            side = abs(math.cos(heading))
            facing = 1.0 if math.cos(heading) >= 0 else -1.0
            away = math.sin(heading) > 0
            fx, fy = math.floor(x), math.floor(y)
            lab, ax, ay = _draw_figure(
                h, x - fx, y - fy, p.phase, swing, side, facing, away, p.look
            )
            x0, y0 = int(fx) - ax, int(fy) - ay
            in_frame[idx + 1] = _composite(frame, owner, lab, p.look.palette, x0, y0, idx + 1)
            body = (lab > 0) & (lab != _BAG)
            rows = np.flatnonzero(body.any(axis=1))
            cols = np.flatnonzero(body.any(axis=0))
            if rows.size:
                boxes[idx] = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
        visible_px = np.bincount(owner.ravel(), minlength=n + 1)[: n + 1]

        # Labels: individual persons, and one region per crowd.
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, W)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, H)
        ok = (
            (in_frame[1:] >= cfg.min_pixels)
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )
        out_boxes, out_vis, out_crowd, out_ids = [], [], [], []
        crowds: dict[int, list[int]] = {}
        for i, (g, p, *_rest) in enumerate(people):
            if not ok[i]:
                continue
            if g.crowd_id:
                crowds.setdefault(g.crowd_id, []).append(i)
                continue
            out_boxes.append(boxes[i])
            out_vis.append(visible_px[i + 1] / in_frame[i + 1])
            out_crowd.append(False)
            out_ids.append(p.track_id)
        for cid, members in crowds.items():
            mb = boxes[members]
            out_boxes.append(
                np.array([mb[:, 0].min(), mb[:, 1].min(), mb[:, 2].max(), mb[:, 3].max()])
            )
            idx1 = np.asarray(members) + 1
            out_vis.append(visible_px[idx1].sum() / max(in_frame[idx1].sum(), 1))
            out_crowd.append(True)
            out_ids.append(cid)

        frame = self._finish(frame)
        return Scene(
            image=frame,
            boxes=np.asarray(out_boxes, np.float32).reshape(-1, 4),
            visible=np.clip(np.asarray(out_vis, np.float32), 0.0, 1.0),
            iscrowd=np.asarray(out_crowd, bool),
            track_ids=np.asarray(out_ids, np.int64),
            ignore=self.bg.ignore.copy(),
            frame_index=self.frame_index,
        )

    def _finish(self, frame: np.ndarray) -> np.ndarray:
        """Global lighting, optics blur and sensor noise."""
        cfg, rng = self.cfg, self.rng
        gain = self.gain * (1.0 + self.drift)
        if cfg.lighting_jitter > 0:
            v = np.arange(256, dtype=np.float64) / 255.0
            lut = np.clip(255.0 * (v[:, None] ** self.gamma) * gain * self.tint[None, :], 0, 255)
            frame = cv2.LUT(frame, lut.astype(np.uint8).reshape(256, 1, 3))
        if cfg.blur_px > 1:
            frame = cv2.GaussianBlur(frame, (cfg.blur_px, cfg.blur_px), 0)
        if self.noise_bank is not None and self.noise_luts is not None:
            size = frame.size
            off = int(rng.integers(0, len(self.noise_bank) - size + 1))
            raw = self.noise_bank[off : off + size].reshape(frame.shape)
            pos, neg = self.noise_luts
            frame = cv2.subtract(cv2.add(frame, cv2.LUT(raw, pos)), cv2.LUT(raw, neg))
        return np.ascontiguousarray(frame)


def _darken_shadow_bands(frame: np.ndarray, polys: list[np.ndarray], factor: float) -> None:
    """Darken many small polygons one by one, so each masked pass covers only its own box."""
    for poly in polys:
        _darken_polys(frame, [poly], factor)


def _noise_luts(noise_std: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Map a uniform byte to the positive and negative parts of a Gaussian level."""
    if noise_std <= 0:
        return None
    from scipy.special import ndtri

    q = np.round(noise_std * ndtri((np.arange(256) + 0.5) / 256.0))
    return np.clip(q, 0, 255).astype(np.uint8), np.clip(-q, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Scene:
    """One rendered frame and its labels.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        boxes: (N, 4) float32 xyxy full-body boxes (amodal: occluded parts included), clipped
            to the frame; for a crowd, the union of its members.
        visible: (N,) float32 share of the in-frame pixels of the figure (or crowd) that no
            nearer person or object covers; truncation by the frame edge shows in the box.
        iscrowd: (N,) bool, True for a dense far crowd labelled as one region.
        track_ids: (N,) int64, unique within a sequence and stable across its frames.
        ignore: (M, 4) float32 xyxy ignore regions (posters of people).
        frame_index: position in the sequence (0 for a still).
    """

    image: np.ndarray
    boxes: np.ndarray
    visible: np.ndarray
    iscrowd: np.ndarray
    track_ids: np.ndarray
    ignore: np.ndarray
    frame_index: int = 0


def render_video(
    cfg: SynthConfig | None = None,
    n_frames: int = 1,
    rng: np.random.Generator | int | None = None,
) -> Iterator[Scene]:
    """Render a sequence of ``n_frames`` frames of one plaza at ``cfg.fps``.

    The background and the static objects are built once; people walk along smooth paths,
    enter and leave; ``track_ids`` follow each person.

    Args:
        cfg: scene knobs (defaults to ``SynthConfig()``).
        n_frames: number of frames to yield.
        rng: a ``numpy.random.Generator`` (or a seed); the only source of randomness.

    Yields:
        One :class:`Scene` per frame.
    """
    cfg = cfg or SynthConfig()
    if n_frames < 0:
        raise InputError(f"n_frames: {n_frames} must be >= 0")
    world = _World(cfg, make_rng(rng))
    for i in range(n_frames):
        if i:
            world.step()
        yield world.render()


def render_scene(
    cfg: SynthConfig | None = None, rng: np.random.Generator | int | None = None
) -> Scene:
    """Render one still frame (the first frame of a fresh sequence)."""
    return next(render_video(cfg, 1, rng))


def scene_sample(scene: Scene, image_id: int, ignore_visible_below: float = 0.1) -> Any:
    """A rendered scene as an in-memory :class:`~edgerl.vision.datasets.Sample` for evaluation.

    Persons at least ``ignore_visible_below`` visible are ground truth (class 0); crowds, barely
    visible persons and posters become ignore regions, as :func:`write_dataset` labels them.
    """
    from edgerl.vision.datasets import Sample

    keep = (scene.visible >= ignore_visible_below) & ~scene.iscrowd
    ignore = np.concatenate([scene.ignore.reshape(-1, 4), scene.boxes[~keep]]).astype(np.float32)
    h, w = scene.image.shape[:2]
    return Sample(None, scene.image, w, h, scene.boxes[keep], np.zeros(int(keep.sum()), np.int64), ignore, image_id)


def write_dataset(
    out_dir: str | Path,
    frames: int,
    seed: int,
    cfg: SynthConfig | None = None,
    video: bool = False,
    jpeg_quality: int = 92,
) -> dict[str, Any]:
    """Render frames and write them as a COCO-format detection set.

    Layout: ``out_dir/images/000000.jpg, ...`` and ``out_dir/annotations.json``. Each image's
    ``file_name`` is relative to ``out_dir`` (``"images/000000.jpg"``), so loading the JSON
    with the images resolved against the JSON's folder finds them.

    Images carry ``id`` (from 1), ``file_name``, ``width``, ``height``, ``frame_id`` (order in
    the set), ``sequence_id`` (stills: one per frame; video: 0) and ``seed``. Annotations carry
    ``id``, ``image_id``, ``category_id`` 1 (``person``), ``bbox`` (x, y, w, h in pixels),
    ``area`` (box area), ``iscrowd``, ``visible_fraction``, ``track_id``, ``kind``
    (``person``, ``crowd`` or ``fake_person``) and ``ignore``:

    - persons: ``iscrowd`` 0, ``ignore`` 1 when ``visible_fraction`` is below
      ``cfg.ignore_visible_below`` (still in the file; COCO tools that read only ``iscrowd``
      count them as normal ground truth, :func:`edgerl.vision.datasets.load_coco` turns them
      into ignore regions);
    - dense crowds: ``iscrowd`` 1, ``ignore`` 1, ``track_id`` of the crowd;
    - posters of people (ignore regions): ``iscrowd`` 1, ``ignore`` 1, ``track_id`` -1.

    People entirely outside the frame are left out; boxes of people cut by the frame edge are
    clipped to it. Stills are independent: frame ``i`` is rendered from the seed sequence
    ``[seed, i]``, so any frame can be regenerated alone. Video frames share one generator
    seeded with ``seed``. Each file is written atomically; ``annotations.json`` comes last.

    Args:
        out_dir: output folder (created).
        frames: number of frames.
        seed: non-negative integer seed.
        cfg: scene knobs (defaults to ``SynthConfig()``).
        video: one sequence of consecutive frames instead of independent stills.
        jpeg_quality: JPEG quality 1..100.

    Returns:
        Summary with the counts written and the mean render time per frame.
    """
    cfg = cfg or SynthConfig()
    if frames < 0:
        raise InputError(f"frames: {frames} must be >= 0")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: {seed!r} must be a non-negative integer")
    if not 1 <= int(jpeg_quality) <= 100:
        raise InputError(f"jpeg_quality: {jpeg_quality} must be in 1..100")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)

    def scenes() -> Iterator[Scene]:
        if video:
            yield from render_video(cfg, frames, np.random.default_rng(int(seed)))
        else:
            for i in range(frames):
                yield render_scene(cfg, np.random.default_rng([int(seed), i]))

    images, annotations = [], []
    counts = {"persons": 0, "ignored_persons": 0, "crowd_regions": 0, "ignore_regions": 0}
    render_s = 0.0
    it = scenes()
    for i in range(frames):
        t0 = time.perf_counter()
        scene = next(it)
        render_s += time.perf_counter() - t0
        name = f"images/{i:06d}.jpg"
        ok, buf = cv2.imencode(
            ".jpg",
            cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)],
        )
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            raise RuntimeError(f"JPEG encoding of frame {i} failed")
        atomic_write_bytes(out / name, buf.tobytes())
        image_id = i + 1
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "width": cfg.width_px,
                "height": cfg.height_px,
                "frame_id": i,
                "sequence_id": 0 if video else i,
                "seed": int(seed),
            }
        )
        for b, vis, crowd, tid in zip(scene.boxes, scene.visible, scene.iscrowd, scene.track_ids):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            ignored = bool(crowd) or float(vis) < cfg.ignore_visible_below
            if crowd:
                counts["crowd_regions"] += 1
            else:
                counts["persons"] += 1
                counts["ignored_persons"] += int(ignored)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": w * h,
                    "iscrowd": int(bool(crowd)),
                    "ignore": int(ignored),
                    "visible_fraction": round(float(vis), 4),
                    "track_id": int(tid),
                    "kind": "crowd" if crowd else "person",
                }
            )
        for b in scene.ignore:
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            counts["ignore_regions"] += 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": w * h,
                    "iscrowd": 1,
                    "ignore": 1,
                    "visible_fraction": 1.0,
                    "track_id": -1,
                    "kind": "fake_person",
                }
            )
    coco = {
        "info": {
            "description": "edgerl synthetic plaza scenes",
            "generator": "edgerl.vision.synth",
            "seed": int(seed),
            "video": bool(video),
            "fps": cfg.fps,
            "config": cfg.model_dump(mode="json"),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    ann_path = write_json(out / "annotations.json", coco, indent=None)
    return {
        "out_dir": str(out),
        "annotations_path": str(ann_path),
        "frames": int(frames),
        "seed": int(seed),
        "video": bool(video),
        "width_px": cfg.width_px,
        "height_px": cfg.height_px,
        **counts,
        "render_ms_mean": 1000.0 * render_s / max(frames, 1),
    }
