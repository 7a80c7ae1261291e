"""Privacy leakage per split point, measured by a model-inversion attack (HC-MAPPO-L, paper 003).

Paper 003 section III-B, eq. (3): the leakage of split ``z`` is the SSIM between an input image
and the image an attacker reconstructs from the features sent at that split; section III-E,
eqs. (10)-(11), multiplies it by the user's privacy weight and the raw input size to get the
privacy cost. Fig. 2 reports raw SSIM for VGG-16 of 0.99 (l = 2), 0.59 (l = 8), 0.35 (l = 14).

The attack (:func:`measure_leakage`):

1. **Victim.** The zoo model (:func:`edgerl.edge.zoo.build_model`) with its deterministic
   seeded initialisation, in eval mode, untrained: no pretrained weights exist here and nothing
   may be downloaded. A check on LeNet-9 trained for 1,500 Adam steps on a synthetic
   crowd-count task lowered the raw SSIM at every split (0.75 -> 0.58 after the first layer,
   0.42 -> 0.39 at the deepest attacked split) and made the normalised curve fall faster in the
   middle (0.25 -> 0.08 and 0 at ``z = 2, 3``), with the same order of splits. Training VGG and
   ResNet victims as well does not fit the cost budget on two CPU cores, and one treatment for
   all nine models keeps the tables comparable, so every table uses the untrained victim.
2. **Images.** Square crops of synthetic plaza scenes (:func:`edgerl.vision.synth.render_scene`,
   ``default`` preset at 640x360), of random size and position, randomly mirrored and resized
   with area averaging to the model's input size; all from one seeded ``numpy`` generator.
   VGG and ResNet may be attacked at a reduced resolution (``image_size``, 64 px by default):
   the split structure (which layer pools or strides) is the same, only the spatial sizes shrink.
3. **Features.** Layers ``1..z`` of :func:`edgerl.edge.profiler.partition_layers` run on every
   image; the attacker standardises each feature channel with the mean and standard deviation
   of its own training set (features of a randomly initialised net differ in scale by orders of
   magnitude between depths).
4. **Decoder.** One per split, sized to the feature shape: spatial features ``(C, h, w)`` get a
   1x1 convolution, vector features ``(D,)`` a linear layer onto a 32x4x4 map; then stages of
   bilinear up-sampling (x2, the last one onto the exact image size), each followed by a 3x3
   convolution, batch norm and ReLU (features already at full size get one such stage without
   up-sampling), and a 3x3 convolution to RGB with a sigmoid. Stage widths shrink as the
   resolution grows (``256 / r`` channels at side ``r``, between 8 and 64), which keeps every
   stage at about the same cost. Trained with Adam (learning rate 5e-3, cosine-decayed to 0) on
   the mean squared error for ``steps`` mini-batches of 16 images.
5. **Score.** Mean SSIM (``skimage.metrics.structural_similarity``, ``data_range=1``, over the
   RGB channels) between held-out images and their reconstructions.

Split conventions (:func:`normalise_leakage`): the raw SSIM is min-max normalised per model over
the attacked splits ``0 < z < L`` (as the paper's public release does); ``z = 0`` (the raw input
is sent) has leakage 1 and ``z = L`` (nothing is sent) leakage 0 (paper section III-B); and a
running minimum from ``z = 0`` makes the curve non-increasing in ``z`` (our addition): whoever
holds the output of layer ``z`` can compute the output of layer ``z + 1``, so a deeper split
cannot leak more than a shallower one, and a measured rise is attack noise.

The committed default tables live in ``edgerl/data/privacy/<model>.json``
(:func:`load_leakage_table`); ``edgerl/data/privacy/README.md`` gives the command that
regenerates them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgerl.edge.profiler import partition_layers
from edgerl.edge.zoo import build_model, canonical_name, input_shape
from edgerl.utils.errors import InputError
from edgerl.utils.io import read_json, write_json

__all__ = [
    "DEFAULT_IMAGE_SIZE_PX",
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "DEFAULT_SEED",
    "DEFAULT_STEPS",
    "DEFAULT_TABLE_DIR",
    "PrivacyProfile",
    "default_image_size",
    "layer_names",
    "load_leakage_table",
    "measure_leakage",
    "normalise_leakage",
    "reconstruction_ssim",
    "render_privacy_table",
    "synthetic_images",
    "write_leakage_table",
]

PRIVACY_SCHEMA_VERSION: int = 1
"""Bumped whenever the table layout or the meaning of a field changes."""

DEFAULT_TABLE_DIR: Path = Path(__file__).resolve().parents[1] / "data" / "privacy"
"""Folder of the committed default tables, one ``<model>.json`` per zoo model."""

DEFAULT_IMAGE_SIZE_PX: int = 64
"""Attack resolution of the 224-px models (VGG, ResNet); smaller models run at their own size."""

DEFAULT_N_TRAIN: int = 256
"""Images the attacker's decoders are trained on (recipe of the committed tables)."""

DEFAULT_N_TEST: int = 64
"""Held-out images the SSIM is averaged over (recipe of the committed tables)."""

DEFAULT_STEPS: int = 160
"""Adam steps per decoder (recipe of the committed tables)."""

DEFAULT_SEED: int = 0
"""Seed of the committed tables."""

_BATCH_SIZE = 16
_LEARNING_RATE = 5e-3
_VECTOR_SIDE = 4  # vector features are mapped onto a 4x4 map
_VECTOR_WIDTH = 32  # channels of that map
_WIDTH_BUDGET = 256  # decoder stage width at side r: _WIDTH_BUDGET / r, clamped
_WIDTH_MIN = 8
_WIDTH_MAX = 64
_FEATURE_CHUNK = 64  # images per forward pass of the victim
_STD_FLOOR = 1e-6
_SCENE_WIDTH_PX = 640
_SCENE_HEIGHT_PX = 360
_CROPS_PER_SCENE = 32
_CROP_MIN_PX = 48
_CROP_MAX_PX = 240
_FLAT_SPREAD = 1e-9  # below this, raw SSIM of the attacked splits counts as flat


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PrivacyProfile:
    """Measured leakage of one model at every split point ``z = 0..L``.

    Attributes:
        model: Canonical zoo name.
        z: Split points ``0..L`` (``L`` partitionable layers, :func:`partition_layers`).
        ssim_raw: Mean SSIM of the attacker's reconstructions per split, in ``[-1, 1]``
            (``L + 1`` entries). ``z = 0`` holds 1 (the input itself is sent: SSIM of an image
            with itself) and ``z = L`` holds 0 (nothing is sent); ``0 < z < L`` are measured.
        leakage: :func:`normalise_leakage` of ``ssim_raw``: in ``[0, 1]``, 1 at ``z = 0``, 0 at
            ``z = L``, non-increasing (``L + 1`` entries).
        recipe: Every setting of the measurement (seed, steps, image size, image counts,
            decoder, optimiser, victim weights, image source, torch version, wall time).
    """

    model: str
    z: tuple[int, ...]
    ssim_raw: tuple[float, ...]
    leakage: tuple[float, ...]
    recipe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.z)
        if n < 2 or tuple(self.z) != tuple(range(n)):
            raise InputError(f"privacy profile {self.model!r}: z must be 0..L, got {list(self.z)}")
        for name in ("ssim_raw", "leakage"):
            if len(getattr(self, name)) != n:
                raise InputError(
                    f"privacy profile {self.model!r}: {name} has {len(getattr(self, name))} "
                    f"entries, expected L + 1 = {n}"
                )

    @property
    def num_layers(self) -> int:
        """Number of partitionable layers ``L``."""
        return len(self.z) - 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``schema_version``, ``model``, ``num_layers``, ``z``, ``ssim_raw``,
        ``leakage`` and ``recipe``."""
        return {
            "schema_version": PRIVACY_SCHEMA_VERSION,
            "model": self.model,
            "num_layers": self.num_layers,
            "z": list(self.z),
            "ssim_raw": [float(v) for v in self.ssim_raw],
            "leakage": [float(v) for v in self.leakage],
            "recipe": dict(self.recipe),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "privacy profile") -> PrivacyProfile:
        """Inverse of :meth:`to_dict`.

        Args:
            data: The dict.
            source: Named in error messages (e.g. the file it came from).

        Raises:
            InputError: If a field is missing or malformed (the message names it).
        """
        try:
            version = int(data.get("schema_version", PRIVACY_SCHEMA_VERSION))
            if version != PRIVACY_SCHEMA_VERSION:
                raise ValueError(
                    f"schema_version {version} is not the supported {PRIVACY_SCHEMA_VERSION}"
                )
            leakage = tuple(float(v) for v in data["leakage"])
            if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in leakage):
                raise ValueError("leakage values must lie in [0, 1]")
            recipe = data.get("recipe", {})
            if not isinstance(recipe, Mapping):
                raise ValueError("recipe must be a mapping")
            return cls(
                model=str(data["model"]),
                z=tuple(int(v) for v in data["z"]),
                ssim_raw=tuple(float(v) for v in data["ssim_raw"]),
                leakage=leakage,
                recipe=dict(recipe),
            )
        except KeyError as exc:
            raise InputError(f"{source}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: malformed ({exc})") from None


# --------------------------------------------------------------------------- pure pieces


def normalise_leakage(ssim_raw: Sequence[float]) -> np.ndarray:
    """Leakage per split from raw SSIM per split (conventions in the module docstring).

    ``n_z = (s_z - min) / (max - min)`` with min and max over ``0 < z < L``; then ``n_0 = 1``,
    ``n_L = 0`` and ``leak_z = min(n_0, ..., n_z)``. When the attacked splits are flat
    (``max - min`` below 1e-9) they all get 1, the conservative value.

    Args:
        ssim_raw: ``L + 1`` raw SSIM values (the entries at ``z = 0`` and ``z = L`` are not used).

    Returns:
        ``(L + 1,)`` float64 array in ``[0, 1]``, non-increasing, 1 first and 0 last.

    Raises:
        InputError: With fewer than 2 entries or a non-finite attacked value.
    """
    raw = np.asarray(ssim_raw, dtype=np.float64).reshape(-1)
    if raw.size < 2:
        raise InputError(f"ssim_raw: need L + 1 >= 2 values, got {raw.size}")
    inner = raw[1:-1]
    if not np.all(np.isfinite(inner)):
        raise InputError(f"ssim_raw: attacked splits must be finite, got {inner.tolist()}")
    out = np.empty_like(raw)
    out[0], out[-1] = 1.0, 0.0
    if inner.size:
        lo, hi = float(inner.min()), float(inner.max())
        out[1:-1] = (inner - lo) / (hi - lo) if hi - lo > _FLAT_SPREAD else 1.0
    return np.minimum.accumulate(out)


def reconstruction_ssim(original: np.ndarray, reconstructed: np.ndarray) -> float:
    """Mean SSIM between two batches of RGB images in ``[0, 1]``.

    Args:
        original: ``(N, 3, H, W)`` (or one ``(3, H, W)`` image), values in ``[0, 1]``.
        reconstructed: Same shape.

    Returns:
        Mean over images of ``skimage.metrics.structural_similarity`` with ``data_range=1`` and
        the colour axis as ``channel_axis`` (Gaussian-free 7x7 window, the library default).

    Raises:
        InputError: On a shape mismatch or images smaller than 7x7.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(reconstructed, dtype=np.float64)
    if a.ndim == 3 and b.ndim == 3:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(
            f"reconstruction_ssim: shapes {a.shape} and {b.shape} must match as (N, C, H, W)"
        )
    if min(a.shape[2:]) < 7:
        raise InputError(f"reconstruction_ssim: images of {a.shape[2:]} px are below 7x7")
    scores = [
        structural_similarity(
            np.moveaxis(x, 0, -1), np.moveaxis(y, 0, -1), data_range=1.0, channel_axis=-1
        )
        for x, y in zip(a, b)
    ]
    return float(np.mean(scores))


def synthetic_images(n: int, size_px: int, rng: np.random.Generator) -> np.ndarray:
    """Natural-looking RGB images: resized square crops of synthetic plaza scenes.

    One scene (``default`` preset, 640x360) is rendered per 32 images; each crop has a side drawn
    uniformly in [48, 240] px and a uniform position, is mirrored with probability 1/2 and
    resized to ``size_px`` with area averaging.

    Args:
        n: Number of images.
        size_px: Side of the square output images.
        rng: The only source of randomness.

    Returns:
        ``(n, 3, size_px, size_px)`` float32 in ``[0, 1]``.
    """
    import cv2

    from edgerl.vision.synth import SynthConfig, render_scene

    if n < 1 or size_px < 1:
        raise InputError(f"synthetic_images: n ({n}) and size_px ({size_px}) must be >= 1")
    cfg = SynthConfig.preset("default").resized(_SCENE_WIDTH_PX, _SCENE_HEIGHT_PX)
    out = np.empty((n, 3, size_px, size_px), dtype=np.float32)
    scene = None
    for i in range(n):
        if i % _CROPS_PER_SCENE == 0:
            scene = render_scene(cfg, rng).image
        assert scene is not None
        h, w = scene.shape[:2]
        side = int(rng.integers(_CROP_MIN_PX, min(_CROP_MAX_PX, h, w) + 1))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = scene[y0 : y0 + side, x0 : x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        interp = cv2.INTER_AREA if side >= size_px else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(crop), (size_px, size_px), interpolation=interp)
        out[i] = img.transpose(2, 0, 1).astype(np.float32) / 255.0
    return out


def default_image_size(model_name: str) -> int:
    """Attack resolution used when ``image_size`` is not given: the model's own input side,
    capped at :data:`DEFAULT_IMAGE_SIZE_PX` (LeNet 32 px, VGG/ResNet 64 px)."""
    return min(input_shape(model_name)[1], DEFAULT_IMAGE_SIZE_PX)


# --------------------------------------------------------------------------- decoder


def _stage_width(side: int) -> int:
    return int(min(_WIDTH_MAX, max(_WIDTH_MIN, _WIDTH_BUDGET // max(side, 1))))


def _up_sizes(start: int, target: int) -> list[int]:
    sizes: list[int] = []
    side = start
    while side < target:
        side = min(2 * side, target)
        sizes.append(side)
    return sizes


class _Decoder(nn.Module):
    """Features at one split -> RGB image (design in the module docstring, step 4)."""

    def __init__(self, feature_shape: tuple[int, ...], image_size: int) -> None:
        super().__init__()
        if len(feature_shape) == 3:
            channels, side = int(feature_shape[0]), int(feature_shape[1])
            width = _stage_width(side)
            self.head: nn.Module = nn.Sequential(
                nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
            self.vector = False
        elif len(feature_shape) == 1:
            side = _VECTOR_SIDE
            width = _VECTOR_WIDTH
            self.head = nn.Sequential(
                nn.Linear(int(feature_shape[0]), width * side * side),
                nn.BatchNorm1d(width * side * side),
                nn.ReLU(inplace=True),
            )
            self.vector = True
        else:
            raise InputError(f"cannot decode features of shape {feature_shape}")
        self.side, self.width = side, width
        stages: list[nn.Module] = []
        cin = width
        for target in _up_sizes(side, image_size) or [image_size]:
            cout = _stage_width(target)
            if target != side:
                stages.append(nn.Upsample(size=(target, target), mode="bilinear"))
            stages += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin, side = cout, target
        stages += [nn.Conv2d(cin, 3, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        if self.vector:
            h = h.view(x.shape[0], self.width, _VECTOR_SIDE, _VECTOR_SIDE)
        return self.body(h)


def _describe_decoder(feature_shape: tuple[int, ...], image_size: int) -> str:
    if len(feature_shape) == 3:
        side = int(feature_shape[1])
        head = f"conv1x1 {feature_shape[0]}->{_stage_width(side)}"
    else:
        side = _VECTOR_SIDE
        head = f"linear {feature_shape[0]}->{_VECTOR_WIDTH}x{side}x{side}"
    widths = [f"{s}px:{_stage_width(s)}" for s in _up_sizes(side, image_size) or [image_size]]
    return f"{head}; (bilinear up)+conv3x3+bn+relu at {' '.join(widths)}; conv3x3->3 sigmoid"


# --------------------------------------------------------------------------- attack


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = (0, 2, 3) if train.ndim == 4 else (0,)
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(_STD_FLOOR)
    return (train - mean) / std, (test - mean) / std


def _attack_split(
    feats_train: torch.Tensor,
    feats_test: torch.Tensor,
    images_train: torch.Tensor,
    images_test: np.ndarray,
    *,
    steps: int,
    seed: int,
    rng: np.random.Generator,
    device: torch.device,
) -> float:
    x_train, x_test = _standardise(feats_train, feats_test)
    image_size = int(images_train.shape[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = _Decoder(tuple(x_train.shape[1:]), image_size).to(device)
    opt = torch.optim.Adam(decoder.parameters(), lr=_LEARNING_RATE)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    n = x_train.shape[0]
    batch = min(_BATCH_SIZE, n)
    decoder.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(n, size=batch, replace=False))
        xb = x_train[idx].to(device)
        yb = images_train[idx].to(device)
        loss = nn.functional.mse_loss(decoder(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    decoder.eval()
    with torch.no_grad():
        recon = torch.cat(
            [
                decoder(x_test[i : i + _FEATURE_CHUNK].to(device)).cpu()
                for i in range(0, len(x_test), _FEATURE_CHUNK)
            ]
        )
    return reconstruction_ssim(images_test, recon.numpy())


def measure_leakage(
    model_name: str,
    *,
    image_size: int | None = None,
    n_train: int = DEFAULT_N_TRAIN,
    n_test: int = DEFAULT_N_TEST,
    steps: int = DEFAULT_STEPS,
    seed: int = DEFAULT_SEED,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
) -> PrivacyProfile:
    """Attack every split ``0 < z < L`` of a zoo model and return its privacy profile.

    Method in the module docstring. Deterministic for a given seed, thread count and machine.

    Args:
        model_name: Zoo model (see :data:`edgerl.edge.zoo.MODEL_NAMES`).
        image_size: Side of the square input images in pixels; ``None`` uses
            :func:`default_image_size` (64 for VGG/ResNet, the native 32 for LeNet). At least 8.
        n_train: Images the decoders are trained on (at least 2).
        n_test: Held-out images the SSIM is averaged over (at least 1).
        steps: Adam steps per decoder (mini-batches of 16), at least 1.
        seed: Seed of the victim's weights, the images, the decoders and the batches.
        device: Torch device for the victim and the decoders.
        num_threads: Torch CPU threads during the measurement (restored afterwards); ``None``
            keeps the current setting. One thread is the robust choice on a shared machine:
            small convolutions on two threads slow down several times when another process
            occupies a core.

    Returns:
        The profile (``L + 1`` entries per curve, recipe filled in).

    Raises:
        InputError: On an unknown model or an out-of-range setting (the message names it).
    """
    key = canonical_name(model_name)
    size = default_image_size(key) if image_size is None else image_size
    for name, value, low in (
        ("image_size", size, 8),
        ("n_train", n_train, 2),
        ("n_test", n_test, 1),
        ("steps", steps, 1),
        ("seed", seed, 0),
        ("num_threads", 1 if num_threads is None else num_threads, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{name}: {value!r} is not an integer >= {low}")
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _measure(
            key, int(size), int(n_train), int(n_test), int(steps), int(seed), torch.device(device)
        )
    finally:
        torch.set_num_threads(previous_threads)


def _measure(
    key: str, size: int, n_train: int, n_test: int, steps: int, seed: int, dev: torch.device
) -> PrivacyProfile:
    start, start_cpu = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(key)
    model.eval().to(dev)
    layers = partition_layers(model)
    num_layers = len(layers)
    images = synthetic_images(n_train + n_test, size, rng)
    images_train = torch.from_numpy(images[:n_train])
    images_test = images[n_train:]

    # z = 0 sends the input itself (SSIM 1); z = L sends nothing (no reconstruction, 0).
    ssim_raw = [1.0] + [0.0] * num_layers
    decoders: list[str] = []
    feats = torch.from_numpy(images)
    for z in range(1, num_layers):
        with torch.no_grad():
            module = layers[z - 1].module
            feats = torch.cat(
                [
                    module(feats[i : i + _FEATURE_CHUNK].to(dev)).cpu()
                    for i in range(0, len(feats), _FEATURE_CHUNK)
                ]
            )
        decoders.append(f"z={z}: {_describe_decoder(tuple(feats.shape[1:]), size)}")
        ssim_raw[z] = _attack_split(
            feats[:n_train],
            feats[n_train:],
            images_train,
            images_test,
            steps=steps,
            seed=seed + z,
            rng=rng,
            device=dev,
        )
    leakage = normalise_leakage(ssim_raw)
    recipe = {
        "seed": seed,
        "steps": steps,
        "image_size_px": size,
        "model_input_shape": list(input_shape(key)),
        "n_train": n_train,
        "n_test": n_test,
        "batch_size": _BATCH_SIZE,
        "optimizer": f"Adam lr {_LEARNING_RATE} cosine-decayed to 0 over the steps",
        "loss": "mse",
        "victim_weights": "zoo initialisation under torch.manual_seed(seed), eval mode, untrained",
        "feature_preprocessing": "per-channel standardisation with training-set statistics",
        "images": (
            f"synthetic plaza scenes (default preset, {_SCENE_WIDTH_PX}x{_SCENE_HEIGHT_PX}, one "
            f"per {_CROPS_PER_SCENE} images), square crops {_CROP_MIN_PX}-{_CROP_MAX_PX} px, "
            "mirrored w.p. 0.5, resized"
        ),
        "ssim": "skimage structural_similarity, data_range=1, channel_axis, 7x7 window",
        "decoders": decoders,
        "normalisation": "min-max over 0<z<L, z=0 -> 1, z=L -> 0, running minimum",
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(time.process_time() - start_cpu, 1),
    }
    return PrivacyProfile(
        model=key,
        z=tuple(range(num_layers + 1)),
        ssim_raw=tuple(float(v) for v in ssim_raw),
        leakage=tuple(float(v) for v in leakage),
        recipe=recipe,
    )


# --------------------------------------------------------------------------- tables


def write_leakage_table(profile: PrivacyProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile.to_dict()`` to ``path`` as JSON, atomically.

    Returns:
        The path written.
    """
    return write_json(path, profile.to_dict())


def _regenerate_hint(key: str) -> str:
    return (
        f"regenerate it with 'edgerl profile privacy --model {key} --json "
        f"{DEFAULT_TABLE_DIR / (key + '.json')}' (see {DEFAULT_TABLE_DIR / 'README.md'})"
    )


def load_leakage_table(
    model_name: str, table_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Leakage per split point ``z = 0..L`` of a zoo model, from the committed tables.

    Args:
        model_name: Zoo model name.
        table_dir: Folder holding ``<model>.json``; ``None`` uses :data:`DEFAULT_TABLE_DIR`.

    Returns:
        ``(L + 1,)`` float64 array: 1 at ``z = 0``, 0 at ``z = L``, non-increasing.

    Raises:
        InputError: On an unknown model, or a missing, unreadable or inconsistent table (the
            message names the file and the command that regenerates it).
    """
    key = canonical_name(model_name)
    folder = Path(table_dir) if table_dir is not None else DEFAULT_TABLE_DIR
    path = folder / f"{key}.json"
    if not path.is_file():
        raise InputError(f"{path}: privacy table not found; {_regenerate_hint(key)}")
    try:
        prof = PrivacyProfile.from_dict(read_json(path), source=str(path))
    except InputError as exc:
        raise InputError(f"{exc}; {_regenerate_hint(key)}") from None
    if prof.model != key:
        raise InputError(
            f"{path}: holds model {prof.model!r}, expected {key!r}; {_regenerate_hint(key)}"
        )
    leak = np.asarray(prof.leakage, dtype=np.float64)
    if leak[0] != 1.0 or leak[-1] != 0.0 or np.any(np.diff(leak) > 0):
        raise InputError(
            f"{path}: leakage must start at 1, end at 0 and never rise; {_regenerate_hint(key)}"
        )
    return leak


def layer_names(model_name: str) -> list[str]:
    """Names of the partitionable layers ``1..L`` of a zoo model (layer ``z`` is entry ``z - 1``)."""
    with torch.device("meta"):
        model = build_model(canonical_name(model_name))
    return [layer.name for layer in partition_layers(model)]


def render_privacy_table(profile: PrivacyProfile) -> Any:
    """A ``rich.table.Table`` of the profile: one row per split point, the recipe in the caption.

    Columns: z, the layer the split follows (for zoo models), raw SSIM, leakage.
    """
    from rich.table import Table

    try:
        names: list[str] | None = layer_names(profile.model)
    except InputError:
        names = None
    if names is not None and len(names) != profile.num_layers:
        names = None
    r = profile.recipe
    table = Table(
        title=f"{profile.model} privacy leakage ({profile.num_layers} partitionable layers)",
        caption=(
            f"{r.get('image_size_px', '?')} px, {r.get('n_train', '?')} train / "
            f"{r.get('n_test', '?')} test images, {r.get('steps', '?')} steps, seed "
            f"{r.get('seed', '?')}, {r.get('wall_s', '?')} s; z = 0: raw input sent, "
            "z = L: nothing sent"
        ),
    )
    table.add_column("z", justify="right")
    if names is not None:
        table.add_column("after layer", justify="left")
    table.add_column("SSIM raw", justify="right")
    table.add_column("leakage", justify="right")
    for z, raw, leak in zip(profile.z, profile.ssim_raw, profile.leakage):
        row = [str(z)]
        if names is not None:
            row.append("(input)" if z == 0 else names[z - 1])
        row += [f"{raw:.3f}", f"{leak:.3f}"]
        table.add_row(*row)
    return table
