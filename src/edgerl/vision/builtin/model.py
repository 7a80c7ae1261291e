"""The built-in person detector: a small anchor-free network in plain PyTorch.

The network is a YOLOv8-like design without distribution focal loss:

* backbone: ``ConvBNSiLU`` stem and stride-2 convolutions with CSP (``C2f``) stages,
  features at strides 8, 16 and 32, an ``SPPF`` block on the deepest one;
* neck: a PAN-FPN (top-down then bottom-up) mixing the three levels;
* head: one decoupled head per level, a box branch predicting the distances
  ``(l, t, r, b)`` from the cell centre to the box sides (in units of the level's
  stride, made positive with ``softplus``) and a class branch predicting one logit
  per class.

``forward`` returns the YOLOv8 export layout ``[B, 4 + C, N]``: ``(cx, cy, w, h)`` in
input pixels followed by sigmoid class scores, ``N`` cells over the three levels in
the order stride 8, 16, 32, row-major inside each level. Any input whose height and
width are multiples of 32 works. ``forward_train`` returns the raw outputs the loss
needs.

Sizes ``n``, ``s`` and ``m`` differ by a width multiplier (channels) and a depth
multiplier (bottlenecks per CSP stage), as in the YOLO family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: Strides of the three output levels.
STRIDES: tuple[int, int, int] = (8, 16, 32)

#: Channels of (stem, stride 4, stride 8, stride 16, stride 32) at width multiplier 1.
BASE_WIDTHS: tuple[int, int, int, int, int] = (16, 32, 64, 128, 192)

#: Bottlenecks of the CSP stages at (stride 4, 8, 16, 32) at depth multiplier 1.
BASE_DEPTHS: tuple[int, int, int, int] = (1, 2, 2, 1)


@dataclass(frozen=True)
class SizeSpec:
    """Width and depth multipliers of one detector size.

    Attributes:
        width_mult: multiplier of :data:`BASE_WIDTHS` (channels rounded to multiples of 8).
        depth_mult: multiplier of :data:`BASE_DEPTHS` (rounded, at least 1).
    """

    width_mult: float
    depth_mult: float


#: The sizes of the built-in family, smallest first.
SIZE_SPECS: dict[str, SizeSpec] = {
    "n": SizeSpec(width_mult=0.5, depth_mult=0.5),
    "s": SizeSpec(width_mult=0.75, depth_mult=0.5),
    "m": SizeSpec(width_mult=1.0, depth_mult=1.0),
}


def _round_channels(c: float, divisor: int = 8) -> int:
    return max(divisor, int(math.ceil(c / divisor) * divisor))


class ConvBNSiLU(nn.Module):
    """Convolution, batch normalisation and SiLU.

    Args:
        c_in: input channels.
        c_out: output channels.
        k: kernel size (odd; padding keeps the size at stride 1).
        s: stride.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convolutions with an optional residual connection.

    Args:
        c: channels in and out.
        shortcut: add the input to the output.
    """

    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = ConvBNSiLU(c, c, 3)
        self.cv2 = ConvBNSiLU(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP stage: split after a 1x1 conv, chain bottlenecks on one half, concatenate all.

    Args:
        c_in: input channels.
        c_out: output channels.
        n: number of bottlenecks.
        shortcut: residual connections inside the bottlenecks.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = ConvBNSiLU(c_in, 2 * self.c, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = ConvBNSiLU((2 + n) * self.c, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, dim=1)
        parts = [a, b]
        for block in self.blocks:
            b = block(b)
            parts.append(b)
        return self.cv2(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max pools, concatenated.

    Args:
        c_in: input channels.
        c_out: output channels.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBNSiLU(c_in, hidden, 1)
        self.cv2 = ConvBNSiLU(4 * hidden, c_out, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        p1 = self.pool(x)
        p2 = self.pool(p1)
        p3 = self.pool(p2)
        return self.cv2(torch.cat([x, p1, p2, p3], dim=1))


class LevelHead(nn.Module):
    """Decoupled head of one level: a box branch and a class branch.

    Args:
        c_in: input channels.
        c_box: hidden channels of the box branch.
        c_cls: hidden channels of the class branch.
        num_classes: number of classes.
    """

    def __init__(self, c_in: int, c_box: int, c_cls: int, num_classes: int) -> None:
        super().__init__()
        self.box = nn.Sequential(ConvBNSiLU(c_in, c_box, 3), ConvBNSiLU(c_box, c_box, 3))
        self.box_pred = nn.Conv2d(c_box, 4, 1)
        self.cls = nn.Sequential(ConvBNSiLU(c_in, c_cls, 3), ConvBNSiLU(c_cls, c_cls, 3))
        self.cls_pred = nn.Conv2d(c_cls, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.box_pred(self.box(x)), self.cls_pred(self.cls(x))


class RawOutput(NamedTuple):
    """Undecoded outputs of :meth:`PersonDetector.forward_train`.

    Attributes:
        dist: (B, N, 4) positive distances (l, t, r, b) in input pixels.
        logits: (B, N, C) class logits.
        anchors: (N, 2) cell centres (x, y) in input pixels.
        strides: (N,) stride of each cell's level in pixels.
    """

    dist: torch.Tensor
    logits: torch.Tensor
    anchors: torch.Tensor
    strides: torch.Tensor


def make_anchors(
    shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres and strides of every level, flattened in output order.

    Args:
        shapes: (height, width) of each level's feature map, strides 8, 16, 32.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        ``(anchors (N, 2) as (x, y) pixels, strides (N,))``.
    """
    points, strides = [], []
    for (h, w), s in zip(shapes, STRIDES):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([gx, gy], dim=-1).reshape(-1, 2))
        strides.append(torch.full((h * w,), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(strides)


class PersonDetector(nn.Module):
    """Anchor-free person detector with three output levels (strides 8, 16, 32).

    Args:
        width_mult: channel multiplier of :data:`BASE_WIDTHS`.
        depth_mult: depth multiplier of :data:`BASE_DEPTHS`.
        num_classes: number of classes (1: person).
    """

    def __init__(
        self, width_mult: float = 0.5, depth_mult: float = 0.5, num_classes: int = 1
    ) -> None:
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(
                f"PersonDetector: width_mult {width_mult} and depth_mult {depth_mult} must be > 0"
            )
        if num_classes < 1:
            raise ValueError(f"PersonDetector: num_classes {num_classes} must be >= 1")
        self.width_mult = float(width_mult)
        self.depth_mult = float(depth_mult)
        self.num_classes = int(num_classes)
        c0, c1, c2, c3, c4 = (_round_channels(c * width_mult) for c in BASE_WIDTHS)
        d1, d2, d3, d4 = (max(1, round(d * depth_mult)) for d in BASE_DEPTHS)

        # Backbone.
        self.stem = ConvBNSiLU(3, c0, 3, 2)
        self.stage1 = nn.Sequential(ConvBNSiLU(c0, c1, 3, 2), C2f(c1, c1, d1))
        self.stage2 = nn.Sequential(ConvBNSiLU(c1, c2, 3, 2), C2f(c2, c2, d2))
        self.stage3 = nn.Sequential(ConvBNSiLU(c2, c3, 3, 2), C2f(c3, c3, d3))
        self.stage4 = nn.Sequential(ConvBNSiLU(c3, c4, 3, 2), C2f(c4, c4, d4), SPPF(c4, c4))

        # PAN-FPN neck (no shortcuts inside the neck's CSP stages, as in YOLOv8).
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.td4 = C2f(c4 + c3, c3, d4, shortcut=False)
        self.td3 = C2f(c3 + c2, c2, d4, shortcut=False)
        self.down3 = ConvBNSiLU(c2, c2, 3, 2)
        self.bu4 = C2f(c2 + c3, c3, d4, shortcut=False)
        self.down4 = ConvBNSiLU(c3, c3, 3, 2)
        self.bu5 = C2f(c3 + c4, c4, d4, shortcut=False)

        c_box = max(16, c2 // 2)
        c_cls = max(16, c2 // 2)
        self.heads = nn.ModuleList(LevelHead(c, c_box, c_cls, num_classes) for c in (c2, c3, c4))
        self._init_biases()

    def _init_biases(self) -> None:
        for head, s in zip(self.heads, STRIDES):
            # Start the class scores near the prior share of positive cells (about 5 per
            # object, a few objects per 640 px tile) so early training is not swamped by
            # the negatives' loss.
            nn.init.constant_(
                head.cls_pred.bias, math.log(5.0 / self.num_classes / (640.0 / s) ** 2)
            )
            # Start the box sides about one stride from the cell centre (softplus(0.55) ~ 1).
            nn.init.constant_(head.box_pred.bias, 0.55)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stage1(self.stem(x))
        p3 = self.stage2(x)
        p4 = self.stage3(p3)
        p5 = self.stage4(p4)
        t4 = self.td4(torch.cat([self.up(p5), p4], dim=1))
        n3 = self.td3(torch.cat([self.up(t4), p3], dim=1))
        n4 = self.bu4(torch.cat([self.down3(n3), t4], dim=1))
        n5 = self.bu5(torch.cat([self.down4(n4), p5], dim=1))
        return [n3, n4, n5]

    def _raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        box_parts, cls_parts, shapes = [], [], []
        for feat, head in zip(self._features(x), self.heads):
            box, cls = head(feat)
            shapes.append((int(feat.shape[2]), int(feat.shape[3])))
            # float32 from here on: under bf16 autocast the decode to pixels needs the
            # precision (a bf16 distance of 200 px is only good to about 1 px).
            box_parts.append(box.flatten(2).float())
            cls_parts.append(cls.flatten(2).float())
        return torch.cat(box_parts, dim=2), torch.cat(cls_parts, dim=2), shapes

    def forward_train(self, x: torch.Tensor) -> RawOutput:
        """Raw outputs for the loss.

        Args:
            x: (B, 3, H, W) float RGB in [0, 1], H and W multiples of 32.

        Returns:
            A :class:`RawOutput` with distances already in pixels.
        """
        box, cls, shapes = self._raw(x)
        anchors, strides = make_anchors(shapes, x.device, box.dtype)
        dist = F.softplus(box).transpose(1, 2) * strides[None, :, None]
        return RawOutput(dist, cls.transpose(1, 2), anchors, strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded predictions in the YOLOv8 export layout.

        Args:
            x: (B, 3, H, W) float RGB in [0, 1], H and W multiples of 32.

        Returns:
            (B, 4 + C, N): rows ``cx, cy, w, h`` in input pixels, then sigmoid scores.
        """
        box, cls, _ = self._raw(x)
        # Anchors are rebuilt from the feature shapes so the ONNX graph keeps H and W
        # symbolic (the export has dynamic height and width axes).
        grids, strides = [], []
        for s in STRIDES:
            h = x.shape[2] // s
            w = x.shape[3] // s
            ys = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) * s
            xs = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) * s
            gx = xs.view(1, -1).expand(h, w).reshape(-1)
            gy = ys.view(-1, 1).expand(h, w).reshape(-1)
            grids.append(torch.stack([gx, gy], dim=0))
            strides.append(torch.full_like(gx, float(s)))
        anchors = torch.cat(grids, dim=1).unsqueeze(0)  # (1, 2, N)
        stride = torch.cat(strides).view(1, 1, -1)
        dist = F.softplus(box) * stride
        lt, rb = dist[:, :2], dist[:, 2:]
        x1y1 = anchors - lt
        x2y2 = anchors + rb
        cxcy = (x1y1 + x2y2) * 0.5
        wh = x2y2 - x1y1
        return torch.cat([cxcy, wh, cls.sigmoid()], dim=1)

    def fuse(self) -> PersonDetector:
        """Fold every batch norm into its convolution (inference only, in place)."""
        for module in self.modules():
            if isinstance(module, ConvBNSiLU) and not isinstance(module.bn, nn.Identity):
                module.conv = _fuse_conv_bn(module.conv, module.bn)
                module.bn = nn.Identity()
        return self


def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        groups=conv.groups,
        bias=True,
    )
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def build_detector(size: str, num_classes: int = 1) -> PersonDetector:
    """A fresh (randomly initialised) detector of a named size.

    Args:
        size: one of ``SIZE_SPECS`` (``"n"``, ``"s"``, ``"m"``).
        num_classes: number of classes.

    Raises:
        ValueError: unknown size (the message lists the valid ones).
    """
    if size not in SIZE_SPECS:
        raise ValueError(f"detector size {size!r} is unknown; valid sizes: {', '.join(SIZE_SPECS)}")
    spec = SIZE_SPECS[size]
    return PersonDetector(spec.width_mult, spec.depth_mult, num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
