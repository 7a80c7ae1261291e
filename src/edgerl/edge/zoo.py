"""DNN model zoo in plain PyTorch, laid out for layer partitioning.

Models (HC-MAPPO-L's nine base models, paper 003 section V, plus CERL's device model):

* ``lenet7``, ``lenet9``, ``lenet12``: LeNet family on 3x32x32 input (10 classes by default).
* ``vgg13``, ``vgg16``, ``vgg19``: VGG configurations B, D, E without batch norm, 3x224x224
  input (Simonyan & Zisserman, 2015), 1000 classes by default.
* ``resnet18``, ``resnet34``, ``resnet50``: ResNets (He et al., 2016) on 3x224x224, with the
  stride of a down-sampling bottleneck on its 3x3 convolution ("ResNet v1.5", the layout whose
  published cost is 4.09 GMAC for ResNet-50), 1000 classes by default.
* ``cerl8``: CERL's 8-layer device model (paper 002 section 5.1, Fig. 3) on 3x64x64, 9 classes.

Every model is an ``nn.Sequential`` whose children are either compute layers (``Conv2d``,
``Linear``), compute blocks (:class:`BasicBlock`, :class:`Bottleneck`,
:class:`TransformerUnit`) or parameter-free / normalisation layers (activation, pooling, batch
norm, dropout, flatten). :mod:`edgerl.edge.profiler` groups the latter into the preceding compute
layer, which gives the partitionable layers: running children ``[:k]`` on one node and ``[k:]``
on another is exactly a split.

LeNet depth convention. The name counts layers the way LeCun et al. count LeNet-5's seven:
convolution, sub-sampling and fully connected layers, not the input. ``lenet7`` is that classic
net (C1 5x5/6, S2, C3 5x5/16, S4, C5 5x5/120, F6 84, output) with ReLU and max pooling; the two
deeper variants keep its three stages and stack more convolutions per stage:

* ``lenet9``: C1 5x5/6 pad 2, C2 5x5/6, S3, C4 3x3/16 pad 1, C5 5x5/16, S6, C7 5x5/120, F8 84,
  F9 output (7 partitionable layers).
* ``lenet12``: C1 3x3/6 pad 1, C2 3x3/6 pad 1, C3 5x5/6, S4, C5 3x3/16 pad 1, C6 3x3/16 pad 1,
  C7 5x5/16, S8, C9 3x3/32 pad 1, C10 5x5/120, F11 84, F12 output (10 partitionable layers).

CERL device model (paper 002 section 5.1). Matched: the layer order conv, conv, conv,
transformer, conv, conv, conv, FC; every tensor shape in the paper's list
``3x64x64 -> 4x32x32 -> 64x16x16 -> 64x8x8 -> 64x8x8 -> 64x4x4 -> 64x2x2 -> 64x1x1 -> 9``;
4 kernels in the first convolution and 64 in the others, each followed by batch norm and ReLU;
3x3 kernels (the paper's "17 multiply/add calculations" per kernel position is 9 multiplies + 8
adds of a 3x3 window), stride 2 to halve the resolution; the FC is 64 -> 9 (the paper's
``(64 + 63) x 9`` calculations). Gaps: (1) the paper's workload formula
``C = F^{l-1} x 64 x 17`` is not a true operation count (it ignores stride and input channels),
so measured MACs differ per layer; the paper's own numbers are kept in
:data:`CERL_PAPER_WORKLOAD_CALCS` for the CERL environment. (2) The transformer is described only
as "4 attention units, each with 8 heads and a dimension of 32" and 45.4164 M multiply-adds; we
read it as 4 stacked pre-norm attention blocks over the 64 spatial positions (tokens of 64
channels), 8 heads of dimension 32 each (attention width 256), and a 512-wide ReLU feed-forward
(the width is not given; our choice), no positional encoding (none is mentioned). That measures
41.94 M MACs, 7.6 % below the paper's figure.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from edgerl.utils.errors import InputError

MODEL_NAMES: tuple[str, ...] = (
    "lenet7",
    "lenet9",
    "lenet12",
    "vgg13",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet34",
    "resnet50",
    "cerl8",
)
"""Canonical names accepted by :func:`build_model` (case, ``-`` and ``_`` are ignored)."""

_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet7": (3, 32, 32),
    "lenet9": (3, 32, 32),
    "lenet12": (3, 32, 32),
    "vgg13": (3, 224, 224),
    "vgg16": (3, 224, 224),
    "vgg19": (3, 224, 224),
    "resnet18": (3, 224, 224),
    "resnet34": (3, 224, 224),
    "resnet50": (3, 224, 224),
    "cerl8": (3, 64, 64),
}

_DEFAULT_NUM_CLASSES: dict[str, int] = {
    "lenet7": 10,
    "lenet9": 10,
    "lenet12": 10,
    "vgg13": 1000,
    "vgg16": 1000,
    "vgg19": 1000,
    "resnet18": 1000,
    "resnet34": 1000,
    "resnet50": 1000,
    "cerl8": 9,
}

CERL_PAPER_WORKLOAD_CALCS: tuple[float, ...] = (
    3 * 64 * 64 * 4 * 17,
    4 * 32 * 32 * 64 * 17,
    64 * 16 * 16 * 64 * 17,
    45.4164e6,
    64 * 8 * 8 * 64 * 17,
    64 * 4 * 4 * 64 * 17,
    64 * 2 * 2 * 64 * 17,
    127 * 9,
)
"""CERL section 5.1 per-layer workload ``C`` in floating-point calculations, before the factor
``xi`` (cycles per calculation, 10 in the paper): multiply by ``xi`` to get CPU cycles."""

CERL_PAPER_OUTPUT_ELEMENTS: tuple[int, ...] = (
    4 * 32 * 32,
    64 * 16 * 16,
    64 * 8 * 8,
    64 * 8 * 8,
    64 * 4 * 4,
    64 * 2 * 2,
    64 * 1 * 1,
    9,
)
"""CERL section 5.1 per-layer output size in elements; the paper's ``O`` in bits is this x 64
(it stores 8-byte floats)."""


def canonical_name(name: str) -> str:
    """Normalise a model name (``"VGG-16"`` -> ``"vgg16"``) and check that it exists.

    Args:
        name: Model name, any case, with or without ``-`` / ``_``.

    Returns:
        The canonical name, one of :data:`MODEL_NAMES`.

    Raises:
        InputError: If the name is unknown; the message lists the valid names.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in _INPUT_SHAPES:
        raise InputError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return key


def input_shape(name: str) -> tuple[int, int, int]:
    """Input shape ``(C, H, W)`` of a zoo model (batch dimension excluded).

    Args:
        name: Model name (see :data:`MODEL_NAMES`).

    Returns:
        ``(channels, height, width)``.

    Raises:
        InputError: If the name is unknown.
    """
    return _INPUT_SHAPES[canonical_name(name)]


def default_num_classes(name: str) -> int:
    """Number of output classes a zoo model has when ``num_classes`` is not given."""
    return _DEFAULT_NUM_CLASSES[canonical_name(name)]


# --------------------------------------------------------------------------- blocks


def _init_conv_bn(module: nn.Module) -> None:
    # He initialisation for ReLU nets; BN starts as the identity.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            bn=nn.BatchNorm2d(cout),
        )
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and an identity shortcut.

    The shortcut becomes a strided 1x1 convolution + batch norm when the shape changes.

    Args:
        in_channels: Input channels.
        channels: Output channels.
        stride: Stride of the first convolution (2 halves the resolution).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = _conv_bn(in_channels, channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` of shape (N, in_channels, H, W)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck block: 1x1 reduce, 3x3, 1x1 expand (x4), with a shortcut.

    The stride sits on the 3x3 convolution (ResNet v1.5).

    Args:
        in_channels: Input channels.
        channels: Width of the 3x3 convolution; the block outputs ``4 * channels``.
        stride: Stride of the 3x3 convolution.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = _conv_bn(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` of shape (N, in_channels, H, W)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class _AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention + feed-forward block over a token sequence.

    Attention is written with explicit matrix products (no fused kernel) so that
    ``FlopCounterMode`` sees and counts every multiply.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(n, t, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        attn = scores.softmax(dim=-1) @ v  # (n, heads, t, head_dim)
        x = x + self.proj(attn.transpose(1, 2).reshape(n, t, -1))
        return x + self.ffn(self.norm2(x))


class TransformerUnit(nn.Module):
    """CERL's transformer layer: attention blocks over the spatial positions of a feature map.

    The (N, C, H, W) map is read as N sequences of H*W tokens with C features, passed through
    ``num_blocks`` attention blocks and reshaped back, so the layer keeps the shape (CERL
    section 5.1: 64x8x8 in and out).

    Args:
        channels: Feature channels ``C`` (token width).
        num_blocks: Stacked attention blocks ("4 attention units").
        num_heads: Heads per block.
        head_dim: Width of each head.
        ffn_dim: Hidden width of each block's feed-forward network.
    """

    def __init__(
        self,
        channels: int = 64,
        num_blocks: int = 4,
        num_heads: int = 8,
        head_dim: int = 32,
        ffn_dim: int = 512,
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(_AttentionBlock(channels, num_heads, head_dim, ffn_dim) for _ in range(num_blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to ``x`` of shape (N, C, H, W); returns the same shape."""
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, H*W, C)
        tokens = self.blocks(tokens)
        return tokens.transpose(1, 2).reshape(n, c, h, w)


# --------------------------------------------------------------------------- LeNet

# Convolutions as (out_channels, kernel, padding); "M" is a 2x2 max pool.
_LENET_CONVS: dict[str, list[tuple[int, int, int] | str]] = {
    "lenet7": [(6, 5, 0), "M", (16, 5, 0), "M", (120, 5, 0)],
    "lenet9": [(6, 5, 2), (6, 5, 0), "M", (16, 3, 1), (16, 5, 0), "M", (120, 5, 0)],
    "lenet12": [
        (6, 3, 1),
        (6, 3, 1),
        (6, 5, 0),
        "M",
        (16, 3, 1),
        (16, 3, 1),
        (16, 5, 0),
        "M",
        (32, 3, 1),
        (120, 5, 0),
    ],
}


def _lenet(name: str, num_classes: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    cin, idx = 3, 0
    for item in _LENET_CONVS[name]:
        idx += 1
        if item == "M":
            layers[f"s{idx}"] = nn.MaxPool2d(2)
            continue
        assert not isinstance(item, str)
        cout, kernel, pad = item
        layers[f"c{idx}"] = nn.Conv2d(cin, cout, kernel, padding=pad)
        layers[f"relu{idx}"] = nn.ReLU(inplace=True)
        cin = cout
    layers["flatten"] = nn.Flatten()
    layers[f"f{idx + 1}"] = nn.Linear(120, 84)
    layers[f"relu{idx + 1}"] = nn.ReLU(inplace=True)
    layers[f"f{idx + 2}"] = nn.Linear(84, num_classes)
    model = nn.Sequential(layers)
    _init_conv_bn(model)
    return model


# --------------------------------------------------------------------------- VGG

_VGG_STAGES: dict[str, tuple[int, ...]] = {
    # convolutions per stage; stage widths are 64, 128, 256, 512, 512
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}


def _vgg(name: str, num_classes: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    cin = 3
    for stage, (width, repeats) in enumerate(zip((64, 128, 256, 512, 512), _VGG_STAGES[name]), 1):
        for i in range(1, repeats + 1):
            layers[f"conv{stage}_{i}"] = nn.Conv2d(cin, width, 3, padding=1)
            layers[f"relu{stage}_{i}"] = nn.ReLU(inplace=True)
            cin = width
        layers[f"pool{stage}"] = nn.MaxPool2d(2)
    # Adaptive pooling keeps the classifier's 512x7x7 input for inputs other than 224x224.
    layers["avgpool"] = nn.AdaptiveAvgPool2d(7)
    layers["flatten"] = nn.Flatten()
    layers["fc6"] = nn.Linear(512 * 7 * 7, 4096)
    layers["relu6"] = nn.ReLU(inplace=True)
    layers["drop6"] = nn.Dropout(0.5)
    layers["fc7"] = nn.Linear(4096, 4096)
    layers["relu7"] = nn.ReLU(inplace=True)
    layers["drop7"] = nn.Dropout(0.5)
    layers["fc8"] = nn.Linear(4096, num_classes)
    model = nn.Sequential(layers)
    _init_conv_bn(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return model


# --------------------------------------------------------------------------- ResNet

_RESNET_LAYOUT: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


def _resnet(name: str, num_classes: int) -> nn.Sequential:
    block, repeats = _RESNET_LAYOUT[name]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv1"] = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    layers["bn1"] = nn.BatchNorm2d(64)
    layers["relu"] = nn.ReLU(inplace=True)
    layers["maxpool"] = nn.MaxPool2d(3, stride=2, padding=1)
    cin = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), repeats), 1):
        for i in range(count):
            stride = 2 if (stage > 1 and i == 0) else 1
            layers[f"layer{stage}_{i}"] = block(cin, width, stride)
            cin = width * block.expansion
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(cin, num_classes)
    model = nn.Sequential(layers)
    _init_conv_bn(model)
    return model


# --------------------------------------------------------------------------- CERL


def _cerl8(num_classes: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()

    def conv(idx: int, cin: int, cout: int) -> None:
        layers[f"conv{idx}"] = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        layers[f"bn{idx}"] = nn.BatchNorm2d(cout)
        layers[f"relu{idx}"] = nn.ReLU(inplace=True)

    conv(1, 3, 4)  # 3x64x64 -> 4x32x32
    conv(2, 4, 64)  # -> 64x16x16
    conv(3, 64, 64)  # -> 64x8x8
    layers["trans"] = TransformerUnit(64)  # 64x8x8 -> 64x8x8
    conv(4, 64, 64)  # -> 64x4x4
    conv(5, 64, 64)  # -> 64x2x2
    conv(6, 64, 64)  # -> 64x1x1
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(64, num_classes)  # -> 9
    model = nn.Sequential(layers)
    _init_conv_bn(model)
    return model


# --------------------------------------------------------------------------- registry


def build_model(name: str, num_classes: int | None = None) -> nn.Sequential:
    """Build a zoo model with freshly initialised weights (eval mode is up to the caller).

    Parameters are created on torch's current default device, so
    ``with torch.device("meta"): build_model(...)`` builds a weightless copy for shape and cost
    analysis.

    Args:
        name: Model name (see :data:`MODEL_NAMES`; case, ``-`` and ``_`` are ignored).
        num_classes: Output classes; ``None`` uses the model's default (LeNet 10,
            VGG/ResNet 1000, CERL 9).

    Returns:
        The model as an ``nn.Sequential`` of partitionable pieces.

    Raises:
        InputError: On an unknown name (the message lists the valid names) or
            ``num_classes < 1``.
    """
    key = canonical_name(name)
    if num_classes is None:
        num_classes = _DEFAULT_NUM_CLASSES[key]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    if key.startswith("lenet"):
        return _lenet(key, num_classes)
    if key.startswith("vgg"):
        return _vgg(key, num_classes)
    if key.startswith("resnet"):
        return _resnet(key, num_classes)
    return _cerl8(num_classes)
