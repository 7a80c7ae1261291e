"""Config loading: a wrong field, type or value is refused with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from edgerl.utils.config import Config, load_config
from edgerl.utils.errors import InputError


class _Radio(Config):
    bandwidth_hz: float = Field(20e6, gt=0, description="Channel bandwidth.")
    tx_power_dbm: float = Field(30.0, ge=-30, le=60, description="Transmit power.")
    mode: str = Field("ofdma", pattern="^(ofdma|tdma)$", description="Access scheme.")


class _Outer(Config):
    seed: int = Field(0, ge=0, description="Seed.")
    radio: _Radio = Field(default_factory=_Radio, description="Radio settings.")


def test_defaults_and_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\nradio:\n  bandwidth_hz: 1.0e7\n")
    cfg = load_config(_Outer, p)
    assert cfg.seed == 3 and cfg.radio.bandwidth_hz == 1e7 and cfg.radio.tx_power_dbm == 30.0
    assert "bandwidth_hz: 10000000.0" in cfg.to_yaml()


def test_none_path_gives_defaults() -> None:
    assert load_config(_Outer).radio.mode == "ofdma"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seed: -2\n", "field 'seed' = -2"),
        ("radio:\n  bandwidth_hz: fast\n", "field 'radio.bandwidth_hz' = 'fast'"),
        ("radio:\n  tx_power_dbm: 99\n", "field 'radio.tx_power_dbm' = 99: Input should be less than or equal to 60"),
        ("radio:\n  bandwith_hz: 5\n", "unknown field 'radio.bandwith_hz'; allowed fields: bandwidth_hz, tx_power_dbm, mode"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("seed: [\n", "not valid YAML at line"),
    ],
)
def test_bad_config_one_line(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(_Outer, p)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(p))
    assert expected in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        load_config(_Outer, tmp_path / "nope.yaml")


def test_overrides_validated() -> None:
    assert load_config(_Outer, overrides={"seed": 9}).seed == 9
    with pytest.raises(InputError, match="field 'seed'"):
        load_config(_Outer, overrides={"seed": -1})
