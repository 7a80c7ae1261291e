"""Layer profiles of DNNs for partitioning: per-layer cost and the split-point view.

Partitionable layers (HC-MAPPO-L section III, footnote 1): compute layers (``Conv2d``,
``Linear``, a transformer layer, a whole ResNet basic/bottleneck block) each start a layer;
activation, pooling, batch norm, dropout and flatten are folded into the preceding compute layer
(into the following one when no compute layer precedes them). :func:`partition_layers` does the
grouping on any ``nn.Sequential``; nested ``nn.Sequential`` children are flattened into it.

What is counted. FLOPs are what ``torch.utils.flop_counter.FlopCounterMode`` reports:
convolutions, matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``) and fused attention,
each at 2 FLOPs per multiply-accumulate; bias additions, batch norm, activations, pooling,
softmax, layer norm and residual additions are not counted. Every counted op is a
multiply-accumulate op, so ``MACs = FLOPs / 2``. The model runs on PyTorch's ``meta`` device:
shapes and counts without any arithmetic, so even VGG-19 profiles in milliseconds.

Bytes are fp32 (4 bytes per element) at batch 1. Parameter bytes count ``nn.Parameter``
tensors only (as published parameter counts do); buffers such as batch-norm running statistics
are left out.

Split point ``z`` (HC-MAPPO-L): layers ``1..z`` run on the user device, ``z+1..L`` on the edge
server; ``z = 0`` is full edge execution, ``z = L`` full device execution. Per split:

* ``device_flops`` / ``edge_flops`` (and MACs): sums over the two parts.
* ``upload_bytes``: what the device sends to the edge server: the input image at ``z = 0``, the
  output of layer ``z`` for ``0 < z < L``, and ``0`` at ``z = L`` (the result stays on the
  device; a system that must report the result elsewhere adds ``DNNProfile.output_bytes``).
* ``device_param_bytes`` / ``edge_param_bytes``: weights each side must hold (the device
  downloads its part).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgerl.edge.zoo import (
    BasicBlock,
    Bottleneck,
    TransformerUnit,
    build_model,
    canonical_name,
    default_num_classes,
    input_shape,
)
from edgerl.utils.errors import InputError
from edgerl.utils.io import read_json, write_json

if TYPE_CHECKING:
    from rich.table import Table

BYTES_PER_ELEMENT: int = 4
"""fp32."""

PROFILE_SCHEMA_VERSION: int = 1
"""Bumped whenever the profile layout or counting rules change; part of the cache key."""

CACHE_ENV_VAR: str = "EDGERL_CACHE_DIR"
"""Environment variable naming edgerl's cache root; profiles go to ``<root>/profiles``."""

_COMPUTE_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Conv2d, "conv"),
    (nn.Linear, "linear"),
    (TransformerUnit, "transformer"),
    (nn.TransformerEncoderLayer, "transformer"),
    (BasicBlock, "basic_block"),
    (Bottleneck, "bottleneck"),
)

# Layers that carry no partition decision of their own (folded into a neighbour).
_FOLDED: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.Hardswish,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.Dropout,
    nn.Flatten,
    nn.Identity,
)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class LayerProfile:
    """Cost of one partitionable layer at batch 1.

    Attributes:
        index: 1-based position among the partitionable layers.
        name: Name of the layer's compute module in the model (e.g. ``"conv1_1"``).
        kind: ``conv``, ``linear``, ``transformer``, ``basic_block``, ``bottleneck`` (or the
            lower-cased class name of another compute module).
        members: Names of all modules folded into this layer, in execution order.
        macs: Multiply-accumulates.
        flops: FLOPs as reported by ``FlopCounterMode`` (``2 * macs``).
        flops_by_op: FLOPs per counted ATen op (e.g. ``{"aten.convolution": ...}``).
        param_bytes: Parameter bytes (fp32) of all folded modules.
        output_bytes: Bytes (fp32) of the layer's output tensor.
        output_shape: Output shape without the batch dimension.
    """

    index: int
    name: str
    kind: str
    members: tuple[str, ...]
    macs: int
    flops: int
    flops_by_op: Mapping[str, int]
    param_bytes: int
    output_bytes: int
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "members": list(self.members),
            "macs": self.macs,
            "flops": self.flops,
            "flops_by_op": dict(self.flops_by_op),
            "param_bytes": self.param_bytes,
            "output_bytes": self.output_bytes,
            "output_shape": list(self.output_shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerProfile:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(data["index"]),
            name=str(data["name"]),
            kind=str(data["kind"]),
            members=tuple(str(m) for m in data["members"]),
            macs=int(data["macs"]),
            flops=int(data["flops"]),
            flops_by_op={str(k): int(v) for k, v in data["flops_by_op"].items()},
            param_bytes=int(data["param_bytes"]),
            output_bytes=int(data["output_bytes"]),
            output_shape=tuple(int(s) for s in data["output_shape"]),
        )


@dataclass(frozen=True)
class SplitPoint:
    """Costs of splitting after layer ``z`` (device runs ``1..z``, edge ``z+1..L``).

    Attributes:
        z: Split index, 0 (all on the edge) to L (all on the device).
        device_macs: MACs run on the device.
        edge_macs: MACs run on the edge server.
        device_flops: FLOPs run on the device.
        edge_flops: FLOPs run on the edge server.
        upload_bytes: Bytes sent device -> edge (input at ``z = 0``, layer ``z``'s output for
            ``0 < z < L``, 0 at ``z = L``).
        device_param_bytes: Weight bytes of layers ``1..z`` (downloaded to the device).
        edge_param_bytes: Weight bytes of layers ``z+1..L``.
    """

    z: int
    device_macs: int
    edge_macs: int
    device_flops: int
    edge_flops: int
    upload_bytes: int
    device_param_bytes: int
    edge_param_bytes: int

    def to_dict(self) -> dict[str, int]:
        """Plain JSON-ready dict."""
        return {
            "z": self.z,
            "device_macs": self.device_macs,
            "edge_macs": self.edge_macs,
            "device_flops": self.device_flops,
            "edge_flops": self.edge_flops,
            "upload_bytes": self.upload_bytes,
            "device_param_bytes": self.device_param_bytes,
            "edge_param_bytes": self.edge_param_bytes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitPoint:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: int(data[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DNNProfile:
    """Layer profile of one DNN at batch 1, fp32.

    Attributes:
        model: Model name.
        input_shape: Input ``(C, H, W)``.
        num_classes: Output classes the model was built with (``None`` for a foreign module).
        torch_version: ``torch.__version__`` that measured it.
        layers: Partitionable layers in execution order (``L = len(layers)``).
        input_bytes: Bytes of the input tensor.
        splits: Split points ``z = 0..L`` (see :func:`split_points`).
    """

    model: str
    input_shape: tuple[int, int, int]
    num_classes: int | None
    torch_version: str
    layers: tuple[LayerProfile, ...]
    input_bytes: int
    splits: tuple[SplitPoint, ...] = field(default=())

    @property
    def num_layers(self) -> int:
        """Number of partitionable layers ``L``."""
        return len(self.layers)

    @property
    def total_macs(self) -> int:
        """Sum of the layers' MACs."""
        return sum(layer.macs for layer in self.layers)

    @property
    def total_flops(self) -> int:
        """Sum of the layers' FLOPs."""
        return sum(layer.flops for layer in self.layers)

    @property
    def total_params_bytes(self) -> int:
        """Sum of the layers' parameter bytes (fp32)."""
        return sum(layer.param_bytes for layer in self.layers)

    @property
    def total_params(self) -> int:
        """Number of parameters."""
        return self.total_params_bytes // BYTES_PER_ELEMENT

    @property
    def output_bytes(self) -> int:
        """Bytes of the model's final output (0 for a model without layers)."""
        return self.layers[-1].output_bytes if self.layers else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with keys ``model``, ``input_shape``, ``total_macs``,
        ``total_flops``, ``total_params_bytes``, ``layers`` and ``splits`` (and a few more)."""
        return {
            "schema_version": PROFILE_SCHEMA_VERSION,
            "model": self.model,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "torch_version": self.torch_version,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "num_layers": self.num_layers,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "total_params_bytes": self.total_params_bytes,
            "layers": [layer.to_dict() for layer in self.layers],
            "splits": [split.to_dict() for split in self.splits],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DNNProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            InputError: If a field is missing or malformed (the message names it).
        """
        try:
            shape = tuple(int(s) for s in data["input_shape"])
            if len(shape) != 3:
                raise ValueError(f"input_shape must have 3 entries, got {shape}")
            nc = data.get("num_classes")
            return cls(
                model=str(data["model"]),
                input_shape=(shape[0], shape[1], shape[2]),
                num_classes=None if nc is None else int(nc),
                torch_version=str(data.get("torch_version", "")),
                layers=tuple(LayerProfile.from_dict(d) for d in data["layers"]),
                input_bytes=int(data["input_bytes"]),
                splits=tuple(SplitPoint.from_dict(d) for d in data["splits"]),
            )
        except KeyError as exc:
            raise InputError(f"DNN profile: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"DNN profile: malformed ({exc})") from None


# --------------------------------------------------------------------------- grouping


def _compute_kind(module: nn.Module) -> str | None:
    for cls, kind in _COMPUTE_KINDS:
        if isinstance(module, cls):
            return kind
    if isinstance(module, _FOLDED) or not any(True for _ in module.parameters(recurse=True)):
        return None
    # A parametrised module of unknown type is a compute unit of its own.
    return type(module).__name__.lower()


def _flatten_sequential(module: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            out.extend(_flatten_sequential(child, prefix=f"{full}."))
        else:
            out.append((full, child))
    return out


@dataclass(frozen=True)
class PartitionLayer:
    """One partitionable layer: a compute module and the modules folded into it.

    Attributes:
        name: Name of the compute module.
        kind: Compute kind (see :class:`LayerProfile`).
        members: Names of the folded modules in the model, in execution order.
        module: ``nn.Sequential`` running the folded modules in order.
    """

    name: str
    kind: str
    members: tuple[str, ...]
    module: nn.Sequential


def partition_layers(model: nn.Module) -> list[PartitionLayer]:
    """Group a sequential model into its partitionable layers.

    Args:
        model: An ``nn.Sequential`` (nested ``nn.Sequential`` children are flattened); running
            the returned modules one after another is the same as running ``model``.

    Returns:
        The partitionable layers in execution order.

    Raises:
        InputError: If ``model`` is not an ``nn.Sequential`` or has no compute layer.
    """
    if not isinstance(model, nn.Sequential):
        raise InputError(
            f"cannot partition a {type(model).__name__}: layer profiling needs an nn.Sequential "
            "of layers (see edgerl.edge.zoo)"
        )
    groups: list[tuple[str, str, list[tuple[str, nn.Module]]]] = []
    leading: list[tuple[str, nn.Module]] = []
    for name, child in _flatten_sequential(model):
        kind = _compute_kind(child)
        if kind is not None:
            groups.append((name, kind, [*leading, (name, child)]))
            leading = []
        elif groups:
            groups[-1][2].append((name, child))
        else:
            # Nothing precedes: fold into the first compute layer instead.
            leading.append((name, child))
    if not groups:
        raise InputError(f"{type(model).__name__} has no compute layer to partition")
    return [
        PartitionLayer(
            name=name,
            kind=kind,
            members=tuple(member for member, _ in members),
            module=nn.Sequential(*(module for _, module in members)),
        )
        for name, kind, members in groups
    ]


# --------------------------------------------------------------------------- profiling


def split_points(layers: Iterable[LayerProfile], input_bytes: int) -> tuple[SplitPoint, ...]:
    """Split-point view ``z = 0..L`` of a list of layer profiles (conventions: module docstring).

    Args:
        layers: Partitionable layers in execution order.
        input_bytes: Bytes of the model input (uploaded at ``z = 0``).

    Returns:
        ``L + 1`` split points.
    """
    layers = tuple(layers)
    n = len(layers)
    total_macs = sum(layer.macs for layer in layers)
    total_flops = sum(layer.flops for layer in layers)
    total_params = sum(layer.param_bytes for layer in layers)
    out: list[SplitPoint] = []
    dev_macs = dev_flops = dev_params = 0
    for z in range(n + 1):
        if z > 0:
            dev_macs += layers[z - 1].macs
            dev_flops += layers[z - 1].flops
            dev_params += layers[z - 1].param_bytes
        if z == 0:
            upload = input_bytes
        elif z == n:
            upload = 0
        else:
            upload = layers[z - 1].output_bytes
        out.append(
            SplitPoint(
                z=z,
                device_macs=dev_macs,
                edge_macs=total_macs - dev_macs,
                device_flops=dev_flops,
                edge_flops=total_flops - dev_flops,
                upload_bytes=upload,
                device_param_bytes=dev_params,
                edge_param_bytes=total_params - dev_params,
            )
        )
    return tuple(out)


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def profile_module(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    name: str = "custom",
    num_classes: int | None = None,
) -> DNNProfile:
    """Profile a sequential model layer by layer (batch 1, fp32).

    The model may live on any device; it is run on a ``meta`` input when its parameters are on
    the ``meta`` device (no arithmetic), otherwise on a zero input on its own device.

    Args:
        model: ``nn.Sequential`` to profile (see :func:`partition_layers`).
        input_shape: Input ``(C, H, W)``.
        name: Name recorded in the profile.
        num_classes: Recorded in the profile only.

    Returns:
        The profile, including the split-point view.

    Raises:
        InputError: If the model cannot be partitioned.
    """
    layers = partition_layers(model)
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((1, *input_shape), device=device)
    input_bytes = x.numel() * BYTES_PER_ELEMENT
    profiles: list[LayerProfile] = []
    try:
        for index, layer in enumerate(layers, 1):
            counter = FlopCounterMode(display=False)
            with counter:
                x = layer.module(x)
            by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
            flops = int(counter.get_total_flops())
            profiles.append(
                LayerProfile(
                    index=index,
                    name=layer.name,
                    kind=layer.kind,
                    members=layer.members,
                    macs=flops // 2,  # every counted op is a multiply-accumulate op
                    flops=flops,
                    flops_by_op=by_op,
                    param_bytes=_count_params(layer.module) * BYTES_PER_ELEMENT,
                    output_bytes=x.numel() * BYTES_PER_ELEMENT,
                    output_shape=tuple(int(s) for s in x.shape[1:]),
                )
            )
    finally:
        model.train(was_training)
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    return DNNProfile(
        model=name,
        input_shape=shape,
        num_classes=num_classes,
        torch_version=torch.__version__,
        layers=tuple(profiles),
        input_bytes=input_bytes,
        splits=split_points(profiles, input_bytes),
    )


def default_cache_dir() -> Path:
    """Profile cache folder: ``$EDGERL_CACHE_DIR/profiles`` or ``~/.cache/edgerl/profiles``."""
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "edgerl"
    return base / "profiles"


def cache_key(name: str, shape: tuple[int, int, int], num_classes: int) -> str:
    """File stem of a cached profile: model, input shape, classes, torch and schema version."""
    torch_tag = re.sub(r"[^A-Za-z0-9.]+", "_", torch.__version__)
    dims = "x".join(str(int(s)) for s in shape)
    return f"{name}__{dims}__nc{num_classes}__torch{torch_tag}__v{PROFILE_SCHEMA_VERSION}"


def profile_model(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    use_cache: bool = True,
) -> DNNProfile:
    """Profile a zoo model, reading and writing a JSON cache.

    Args:
        name: Zoo model name (see :data:`edgerl.edge.zoo.MODEL_NAMES`).
        cache_dir: Cache folder; ``None`` uses :func:`default_cache_dir`.
        num_classes: Output classes; ``None`` uses the model's default.
        use_cache: Read and write the cache; ``False`` always measures and writes nothing.

    Returns:
        The profile. A cached file that cannot be read back is measured again and replaced.

    Raises:
        InputError: On an unknown model name (the message lists the valid ones).
    """
    key = canonical_name(name)
    nc = default_num_classes(key) if num_classes is None else num_classes
    shape = input_shape(key)
    path = None
    if use_cache:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        path = folder / f"{cache_key(key, shape, nc)}.json"
        if path.is_file():
            try:
                cached = DNNProfile.from_dict(read_json(path))
            except InputError:
                cached = None  # unreadable: measure again below and overwrite
            if cached is not None and cached.model == key and cached.num_classes == nc:
                return cached
    with torch.device("meta"):
        model = build_model(key, num_classes=nc)
    profile = profile_module(model, shape, name=key, num_classes=nc)
    if path is not None:
        write_json(path, profile.to_dict())
    return profile


# --------------------------------------------------------------------------- output


def profile_to_json(profile: DNNProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile.to_dict()`` to ``path`` as JSON, atomically.

    Returns:
        The path written.
    """
    return write_json(path, profile.to_dict())


def render_profile_table(profile: DNNProfile) -> Table:
    """A ``rich.table.Table`` of the profile: one row per layer, totals in the caption.

    Columns: z (= layer index), layer name, kind, output shape, MMACs, MFLOPs, parameter KB,
    output KB, upload KB when split after this layer.
    """
    from rich.table import Table

    table = Table(
        title=f"{profile.model} {'x'.join(map(str, profile.input_shape))} "
        f"({profile.num_layers} partitionable layers)",
        caption=(
            f"total {profile.total_macs / 1e6:,.2f} MMAC = {profile.total_flops / 1e6:,.2f} MFLOP, "
            f"params {profile.total_params:,} ({profile.total_params_bytes / 1024:,.1f} KB fp32), "
            f"input {profile.input_bytes / 1024:,.1f} KB"
        ),
    )
    for header in (
        "z",
        "layer",
        "kind",
        "output",
        "MMAC",
        "MFLOP",
        "params KB",
        "out KB",
        "upload KB",
    ):
        justify = "left" if header in ("layer", "kind", "output") else "right"
        table.add_column(header, justify=justify)
    for layer, split in zip(profile.layers, profile.splits[1:]):
        table.add_row(
            str(layer.index),
            layer.name,
            layer.kind,
            "x".join(map(str, layer.output_shape)),
            f"{layer.macs / 1e6:,.3f}",
            f"{layer.flops / 1e6:,.3f}",
            f"{layer.param_bytes / 1024:,.1f}",
            f"{layer.output_bytes / 1024:,.1f}",
            f"{split.upload_bytes / 1024:,.1f}",
        )
    return table
