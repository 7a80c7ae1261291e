"""Layer profiler: hand-computed and published goldens, split-point invariants, cache, output."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table
from torch import nn

from edgerl.edge.profiler import (
    DNNProfile,
    LayerProfile,
    partition_layers,
    profile_model,
    profile_module,
    profile_to_json,
    render_profile_table,
    split_points,
)
from edgerl.edge.zoo import CERL_PAPER_OUTPUT_ELEMENTS, MODEL_NAMES
from edgerl.utils.errors import InputError

# Every counted op is a multiply-accumulate kind: convolutions and matrix products. Batch norm,
# activations, pooling, softmax, layer norm, bias and residual additions are not counted.
COUNTED_OPS = {"aten.convolution", "aten.addmm", "aten.mm", "aten.bmm", "aten.baddbmm"}


@pytest.fixture(scope="module")
def profiles() -> dict[str, DNNProfile]:
    return {name: profile_model(name, use_cache=False) for name in MODEL_NAMES}


def test_vgg13_first_conv_golden(profiles: dict[str, DNNProfile]) -> None:
    first = profiles["vgg13"].layers[0]
    # 3 -> 64 channels, 3x3 kernel, 224x224 output: 224 * 224 * 64 * (3 * 3 * 3) = 86,704,128 MACs.
    assert first.kind == "conv"
    assert first.macs == 224 * 224 * 64 * 27 == 86_704_128
    assert first.flops == 2 * first.macs
    assert first.output_shape == (64, 224, 224)
    assert first.output_bytes == 64 * 224 * 224 * 4
    assert first.param_bytes == (27 * 64 + 64) * 4  # weights + bias, fp32
    assert first.members == ("conv1_1", "relu1_1")


def test_resnet18_stem_golden(profiles: dict[str, DNNProfile]) -> None:
    stem = profiles["resnet18"].layers[0]
    # 7x7/2 conv 3 -> 64 on 224 -> 112x112: 112 * 112 * 64 * 147 = 118,013,952 MACs; the
    # folded max pool leaves 64x56x56.
    assert stem.macs == 112 * 112 * 64 * 147
    assert stem.output_shape == (64, 56, 56)
    assert stem.members == ("conv1", "bn1", "relu", "maxpool")


def test_lenet7_total_golden(profiles: dict[str, DNNProfile]) -> None:
    # C1 28*28*6*75 = 352,800; C3 10*10*16*150 = 240,000; C5 120*400 = 48,000;
    # F6 120*84 = 10,080; output 84*10 = 840; total 651,720 MACs.
    prof = profiles["lenet7"]
    assert [layer.macs for layer in prof.layers] == [352_800, 240_000, 48_000, 10_080, 840]
    assert prof.total_macs == 651_720


@pytest.mark.parametrize(
    ("name", "published_macs"),
    [("vgg16", 15.5e9), ("resnet18", 1.82e9), ("resnet50", 4.09e9)],
)
def test_totals_match_published(
    profiles: dict[str, DNNProfile], name: str, published_macs: float
) -> None:
    prof = profiles[name]
    assert prof.total_macs == pytest.approx(published_macs, rel=0.02)
    assert prof.total_flops == 2 * prof.total_macs


def test_only_multiply_accumulate_ops_counted(profiles: dict[str, DNNProfile]) -> None:
    for name, prof in profiles.items():
        for layer in prof.layers:
            assert set(layer.flops_by_op) <= COUNTED_OPS, (name, layer.name)
            assert sum(layer.flops_by_op.values()) == layer.flops
            assert layer.flops == 2 * layer.macs
    # CNNs: convolutions and the FC's addmm only; the transformer adds bmm (QK^T, AV).
    assert {op for layer in profiles["resnet50"].layers for op in layer.flops_by_op} == {
        "aten.convolution",
        "aten.addmm",
    }
    assert "aten.bmm" in profiles["cerl8"].layers[3].flops_by_op


@pytest.mark.parametrize(
    ("name", "params"),
    [("resnet18", 11_689_512), ("vgg16", 138_357_544), ("resnet50", 25_557_032)],
)
def test_param_bytes_match_published(
    profiles: dict[str, DNNProfile], name: str, params: int
) -> None:
    assert profiles[name].total_params_bytes == 4 * params


def test_cerl8_matches_paper_shapes(profiles: dict[str, DNNProfile]) -> None:
    prof = profiles["cerl8"]
    # CERL section 5.1: conv, conv, conv, Trans, conv, conv, conv, FC with outputs
    # 4x32x32, 64x16x16, 64x8x8, 64x8x8, 64x4x4, 64x2x2, 64x1x1 (flattened), 9.
    assert [layer.kind for layer in prof.layers] == [
        "conv",
        "conv",
        "conv",
        "transformer",
        "conv",
        "conv",
        "conv",
        "linear",
    ]
    assert [layer.output_shape for layer in prof.layers] == [
        (4, 32, 32),
        (64, 16, 16),
        (64, 8, 8),
        (64, 8, 8),
        (64, 4, 4),
        (64, 2, 2),
        (64,),
        (9,),
    ]
    assert [layer.output_bytes // 4 for layer in prof.layers] == list(CERL_PAPER_OUTPUT_ELEMENTS)
    # First conv by hand: 32*32 outputs x 4 kernels x 3*3*3 = 110,592 MACs; FC 64*9 = 576.
    assert prof.layers[0].macs == 32 * 32 * 4 * 27
    assert prof.layers[7].macs == 64 * 9
    # Transformer: 4 blocks x (qkv 64*64*768 + proj 64*256*64 + QK^T and AV 2*8*64*64*32
    # + FFN 64*2*64*512) = 4 x 10,485,760 = 41,943,040 MACs (paper: 45.4164e6 via calflops).
    assert prof.layers[3].macs == 41_943_040


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_split_invariants(profiles: dict[str, DNNProfile], name: str) -> None:
    prof = profiles[name]
    n = prof.num_layers
    splits = prof.splits
    c, h, w = prof.input_shape
    assert [s.z for s in splits] == list(range(n + 1))
    for s in splits:
        assert s.device_flops + s.edge_flops == prof.total_flops
        assert s.device_macs + s.edge_macs == prof.total_macs
        assert s.device_param_bytes + s.edge_param_bytes == prof.total_params_bytes
    for a, b in pairwise(splits):
        assert a.device_flops <= b.device_flops
        assert a.device_param_bytes <= b.device_param_bytes
    # z = 0: all on the edge, the raw fp32 image is uploaded.
    assert splits[0].device_flops == 0 and splits[0].device_param_bytes == 0
    assert splits[0].upload_bytes == c * h * w * 4 == prof.input_bytes
    # z = L: all on the device, nothing uploaded.
    assert splits[-1].edge_flops == 0 and splits[-1].upload_bytes == 0
    for z in range(1, n):
        assert splits[z].upload_bytes == prof.layers[z - 1].output_bytes


_layer_st = st.builds(
    lambda macs, params, out: (macs, params, out),
    st.integers(0, 10**12),
    st.integers(0, 10**9),
    st.integers(1, 10**8),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(_layer_st, min_size=1, max_size=30), st.integers(1, 10**8))
def test_split_points_property(layers: list[tuple[int, int, int]], input_bytes: int) -> None:
    profs = [
        LayerProfile(i, f"l{i}", "conv", (f"l{i}",), m, 2 * m, {}, p, o, (o // 4,))
        for i, (m, p, o) in enumerate(layers, 1)
    ]
    splits = split_points(profs, input_bytes)
    total = sum(2 * m for m, _, _ in layers)
    assert len(splits) == len(layers) + 1
    assert all(s.device_flops + s.edge_flops == total for s in splits)
    assert all(a.device_flops <= b.device_flops for a, b in pairwise(splits))
    assert splits[0].upload_bytes == input_bytes and splits[-1].upload_bytes == 0


def test_num_classes_changes_last_layer() -> None:
    prof = profile_model("resnet18", num_classes=10, use_cache=False)
    assert prof.num_classes == 10
    assert prof.layers[-1].macs == 512 * 10
    assert prof.layers[-1].output_shape == (10,)


def test_dict_round_trip(profiles: dict[str, DNNProfile]) -> None:
    prof = profiles["resnet50"]
    data = prof.to_dict()
    for key in (
        "model",
        "input_shape",
        "total_macs",
        "total_flops",
        "total_params_bytes",
        "layers",
        "splits",
    ):
        assert key in data
    assert DNNProfile.from_dict(json.loads(json.dumps(data))) == prof
    with pytest.raises(InputError, match="layers"):
        DNNProfile.from_dict({k: v for k, v in data.items() if k != "layers"})


def test_cache_round_trip(tmp_path: Path) -> None:
    first = profile_model("lenet12", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    stem = files[0].stem
    assert "lenet12" in stem and "3x32x32" in stem and "nc10" in stem
    assert torch.__version__.split("+")[0] in stem
    assert profile_model("lenet12", cache_dir=tmp_path) == first

    # The second call really reads the file: an edited value comes back.
    data = json.loads(files[0].read_text())
    data["layers"][0]["macs"] = 123
    files[0].write_text(json.dumps(data))
    assert profile_model("lenet12", cache_dir=tmp_path).layers[0].macs == 123

    # A corrupt file is measured again and replaced.
    files[0].write_text("{not json")
    assert profile_model("lenet12", cache_dir=tmp_path) == first
    assert DNNProfile.from_dict(json.loads(files[0].read_text())) == first

    # Another class count is another cache entry.
    profile_model("lenet12", cache_dir=tmp_path, num_classes=5)
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_cache_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERL_CACHE_DIR", str(tmp_path))
    profile_model("lenet7")
    assert len(list((tmp_path / "profiles").glob("lenet7__*.json"))) == 1


def test_no_cache_writes_nothing(tmp_path: Path) -> None:
    profile_model("lenet7", cache_dir=tmp_path, use_cache=False)
    assert not list(tmp_path.iterdir())


def test_unknown_model_names_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        profile_model("alexnet", cache_dir=tmp_path)
    assert "alexnet" in str(info.value)
    assert all(name in str(info.value) for name in MODEL_NAMES)


def test_partition_grouping_rules() -> None:
    model = nn.Sequential(
        nn.BatchNorm2d(3),  # leading: folded into the first compute layer
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)),  # nested: flattened
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 2),
    )
    layers = partition_layers(model)
    assert [(layer.name, layer.kind) for layer in layers] == [
        ("1", "conv"),
        ("3", "conv"),
        ("6", "linear"),
    ]
    assert layers[0].members == ("0", "1", "2.0", "2.1")
    prof = profile_module(model, (3, 8, 8), name="toy")
    # conv 8*8*8*27 = 13,824; conv 4*4*8*72 = 9,216; linear 128*2 = 256.
    assert [layer.macs for layer in prof.layers] == [13_824, 9_216, 256]
    assert [layer.output_shape for layer in prof.layers] == [(8, 4, 4), (128,), (2,)]
    # BatchNorm weights count with the layer they are folded into: 2*3 + 8*27 + 8.
    assert prof.layers[0].param_bytes == (6 + 216 + 8) * 4
    with pytest.raises(InputError, match="nn.Sequential"):
        partition_layers(nn.Linear(2, 2))
    with pytest.raises(InputError, match="no compute layer"):
        partition_layers(nn.Sequential(nn.ReLU()))


def test_json_and_table(profiles: dict[str, DNNProfile], tmp_path: Path) -> None:
    prof = profiles["vgg16"]
    out = profile_to_json(prof, tmp_path / "sub" / "vgg16.json")
    data = json.loads(out.read_text())
    assert data["total_macs"] == prof.total_macs
    assert data["total_params_bytes"] == 4 * 138_357_544
    assert len(data["layers"]) == 16 and len(data["splits"]) == 17
    table = render_profile_table(prof)
    assert isinstance(table, Table)
    assert table.row_count == prof.num_layers
