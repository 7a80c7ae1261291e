"""Model zoo: registry, forward shapes, published parameter counts, partition equivalence."""

from __future__ import annotations

import pytest
import torch

from edgerl.edge.profiler import partition_layers
from edgerl.edge.zoo import (
    CERL_PAPER_OUTPUT_ELEMENTS,
    CERL_PAPER_WORKLOAD_CALCS,
    MODEL_NAMES,
    build_model,
    canonical_name,
    default_num_classes,
    input_shape,
)
from edgerl.utils.errors import InputError

# Published parameter counts (He et al. 2016 / Simonyan & Zisserman 2015 as tabulated by the
# reference implementations): exact, no tolerance.
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    # LeNet-5 layout on 3 channels, by hand: C1 (3*25+1)*6 = 456, C3 (6*25+1)*16 = 2416,
    # C5 (16*25+1)*120 = 48120, F6 121*84 = 10164, output 85*10 = 850; sum 62006.
    "lenet7": 62_006,
}

# Real forward passes only where they are cheap; VGG-16/19 differ from VGG-13 only in repeat
# counts and are checked on the meta device (shapes without arithmetic).
REAL_FORWARD = [n for n in MODEL_NAMES if n not in ("vgg16", "vgg19")]


def _meta_model(name: str, num_classes: int | None = None) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name, num_classes=num_classes).eval()


def test_registry() -> None:
    assert len(MODEL_NAMES) == 10 and len(set(MODEL_NAMES)) == 10
    assert canonical_name("VGG-16") == "vgg16"
    assert canonical_name("ResNet_50") == "resnet50"
    assert canonical_name("LeNet-12") == "lenet12"
    assert input_shape("lenet9") == (3, 32, 32)
    assert input_shape("vgg19") == (3, 224, 224)
    assert input_shape("resnet34") == (3, 224, 224)
    assert input_shape("cerl8") == (3, 64, 64)
    assert default_num_classes("cerl8") == 9
    assert default_num_classes("resnet18") == 1000


@pytest.mark.parametrize("call", [build_model, input_shape, canonical_name])
def test_unknown_name_lists_valid_ones(call) -> None:
    with pytest.raises(InputError) as info:
        call("alexnet")
    msg = str(info.value)
    assert "alexnet" in msg
    assert all(name in msg for name in MODEL_NAMES)


def test_bad_num_classes() -> None:
    with pytest.raises(InputError, match="num_classes"):
        build_model("lenet7", num_classes=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_meta_forward_shape(name: str) -> None:
    model = _meta_model(name)
    y = model(torch.zeros((1, *input_shape(name)), device="meta"))
    assert tuple(y.shape) == (1, default_num_classes(name))


@pytest.mark.parametrize("name", REAL_FORWARD)
@torch.no_grad()
def test_real_forward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    y = model(torch.randn((1, *input_shape(name))))
    assert tuple(y.shape) == (1, default_num_classes(name))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["lenet12", "resnet50", "vgg19", "cerl8"])
def test_num_classes_configurable(name: str) -> None:
    y = _meta_model(name, num_classes=7)(torch.zeros((2, *input_shape(name)), device="meta"))
    assert tuple(y.shape) == (2, 7)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_parameter_counts(name: str) -> None:
    model = _meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]


def test_depths() -> None:
    # Partitionable (compute) layers: LeNet-7 = 3 conv + 2 FC; the deeper LeNets add convs.
    # VGG: 10/13/16 convs + 3 FC; ResNet: stem + blocks + FC.
    expected = {
        "lenet7": 5,
        "lenet9": 7,
        "lenet12": 10,
        "vgg13": 13,
        "vgg16": 16,
        "vgg19": 19,
        "resnet18": 1 + 8 + 1,
        "resnet34": 1 + 16 + 1,
        "resnet50": 1 + 16 + 1,
        "cerl8": 8,
    }
    for name, depth in expected.items():
        assert len(partition_layers(_meta_model(name))) == depth, name


@pytest.mark.parametrize("name", ["lenet9", "lenet12", "resnet18", "cerl8"])
@torch.no_grad()
def test_partition_layers_compose_to_model(name: str) -> None:
    """Running the partitionable layers in sequence (any split) equals the whole model."""
    torch.manual_seed(1)
    model = build_model(name).eval()
    shape = input_shape(name) if name != "resnet18" else (3, 64, 64)
    x = torch.randn((2, *shape))
    full = model(x)
    layers = partition_layers(model)
    z = len(layers) // 2
    h = x
    for layer in layers[:z]:  # device part
        h = layer.module(h)
    for layer in layers[z:]:  # edge part
        h = layer.module(h)
    torch.testing.assert_close(h, full)


def test_cerl_paper_constants() -> None:
    # CERL section 5.1: conv workloads F^{l-1} x 64 x 17 (first layer: 4 kernels), transformer
    # 45.4164e6, FC (64 + 63) x 9; outputs 4x32x32, 64x16x16, 64x8x8 (x2), 64x4x4, 64x2x2, 64, 9.
    assert CERL_PAPER_WORKLOAD_CALCS[0] == 835_584
    assert CERL_PAPER_WORKLOAD_CALCS[2] == 17_825_792
    assert CERL_PAPER_WORKLOAD_CALCS[3] == pytest.approx(45.4164e6)
    assert CERL_PAPER_WORKLOAD_CALCS[7] == 1143
    assert CERL_PAPER_OUTPUT_ELEMENTS == (4096, 16384, 4096, 4096, 1024, 256, 64, 9)
