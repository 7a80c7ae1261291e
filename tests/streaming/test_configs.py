"""Configuration grid of the streaming bandit: names, membership, arms, input geometry."""

from __future__ import annotations

import itertools

import pytest

from edgerl.streaming.configs import (
    BRANCHES,
    ConfigGrid,
    StreamConfig,
    effective_scale,
    input_hw,
)
from edgerl.utils.config import config_from_dict
from edgerl.utils.errors import InputError


def test_name_round_trip_and_paths():
    c = StreamConfig("person_n", 480, 300, 1)
    assert c.name == "person_n@480_k300_s1"
    assert StreamConfig.parse(c.name) == c
    # a path may contain '@' and '_k': the last '@' that starts a valid suffix splits it
    p = StreamConfig.parse("/models/a@b_k2/yolo.onnx@640_k1000_s5")
    assert p == StreamConfig("/models/a@b_k2/yolo.onnx", 640, 1000, 5)
    assert StreamConfig.parse(p.name) == p


@pytest.mark.parametrize("bad", ["person_n", "person_n@480", "person_n@480_k300", "@480_k300_s1", "person_n@480_k300_sx"])
def test_malformed_names_are_refused(bad):
    with pytest.raises(InputError, match=r"not of the form MODEL@SCALE_kTOPK_sSTRIDE"):
        StreamConfig.parse(bad)


def test_non_positive_values_are_refused():
    with pytest.raises(InputError, match="StreamConfig.topk"):
        StreamConfig("person_n", 480, 0)
    with pytest.raises(InputError, match="StreamConfig.stride"):
        StreamConfig.parse("person_n@480_k300_s0")


def test_default_grid_is_the_paper_product():
    g = ConfigGrid()
    assert g.n_arms == (3, 5, 4, 6)
    assert len(g) == 3 * 5 * 4 * 6 == len(g.configs()) == len(set(g.names()))
    assert g.scales == [720, 640, 560, 480, 360] and g.topks == [100, 300, 500, 1000]
    assert g.strides == [1, 3, 5, 10, 15, 30]
    assert len(g.model_scales()) == 15


def test_configuration_outside_the_grid_names_it_and_the_valid_values():
    g = ConfigGrid(models=["person_n"], strides=[1])
    assert g.check("person_n@560_k500_s1") == StreamConfig("person_n", 560, 500, 1)
    with pytest.raises(InputError) as e:
        g.check("person_n@600_k300_s1")
    msg = str(e.value)
    assert "'person_n@600_k300_s1'" in msg and "scale 600" in msg and "[720, 640, 560, 480, 360]" in msg
    with pytest.raises(InputError, match=r"model 'person_s' is not one of \['person_n'\]"):
        g.check("person_s@480_k300_s1")
    with pytest.raises(InputError, match=r"stride 5 is not one of \[1\]"):
        g.check("person_n@480_k300_s5")
    assert "person_n@480_k300_s1" in g and "person_n@480_k300_s5" not in g and "junk" not in g


def test_actions_map_one_to_one_onto_configurations():
    g = ConfigGrid(models=["person_n", "person_s"], scales=[640, 360], topks=[100, 300, 1000], strides=[1, 5])
    seen = set()
    for a in itertools.product(*(range(n) for n in g.n_arms)):
        c = g.from_action(a)
        assert g.to_action(c) == a
        seen.add(c)
    assert seen == set(g.configs())
    with pytest.raises(InputError, match="does not fit the grid"):
        g.from_action((0, 2, 0, 0))
    with pytest.raises(InputError, match="does not fit the grid"):
        g.from_action((0, 0, 0))
    assert g.values("topk") == [100, 300, 1000] and BRANCHES[2] == "topk"


def test_nearest():
    g = ConfigGrid(models=["person_n", "person_s"], strides=[1, 3])
    assert g.nearest(scale=540, topk=1000) == StreamConfig("person_n", 560, 1000, 1)
    assert g.nearest(model="person_s", scale=600, topk=200, stride=4) == StreamConfig("person_s", 640, 100, 3)
    assert g.nearest(model="other") .model == "person_n"


def test_grid_validation_names_the_field():
    with pytest.raises(InputError, match="field 'scales'.*distinct"):
        config_from_dict(ConfigGrid, {"scales": [480, 480]}, "grid")
    with pytest.raises(InputError, match="field 'topks'.*>= 1"):
        config_from_dict(ConfigGrid, {"topks": [0, 100]}, "grid")
    with pytest.raises(InputError, match="field 'models'"):
        config_from_dict(ConfigGrid, {"models": []}, "grid")


def test_input_geometry():
    hw = (720, 1280)
    # height: scale rounded up to a multiple of 32; width: 16/9 * scale to the nearest 32
    assert input_hw(720, hw) == (736, 1280)  # 1280 / 32 = 40
    assert input_hw(640, hw) == (640, 1152)  # 1137.8 / 32 = 35.6 -> 36
    assert input_hw(560, hw) == (576, 992)  # 995.6 / 32 = 31.1 -> 31
    assert input_hw(480, hw) == (480, 864)  # 853.3 / 32 = 26.7 -> 27
    assert input_hw(360, hw) == (384, 640)
    # letterboxed short side: min(736/720, 1280/1280) * 720 = 720; min(576/720, 992/1280) * 720
    # = 0.775 * 720 = 558
    assert effective_scale(720, hw) == pytest.approx(720.0)
    assert effective_scale(560, hw) == pytest.approx(558.0)
    assert effective_scale(360, hw) == pytest.approx(360.0)
    assert input_hw(360, (1280, 720)) == (640, 384)  # portrait swaps the roles
    for s in range(64, 1000, 7):
        h, w = input_hw(s, hw)
        assert h % 32 == 0 and w % 32 == 0 and h >= s
    with pytest.raises(InputError, match="scale"):
        input_hw(0, hw)
