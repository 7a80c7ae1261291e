"""Privacy leakage: SSIM sanity, normalisation goldens, a tiny real attack, committed tables, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgerl.cli import app, main
from edgerl.edge import privacy
from edgerl.edge.privacy import (
    DEFAULT_TABLE_DIR,
    PrivacyProfile,
    layer_names,
    load_leakage_table,
    measure_leakage,
    normalise_leakage,
    reconstruction_ssim,
    synthetic_images,
    write_leakage_table,
)
from edgerl.edge.profiler import profile_model
from edgerl.hcmappo.config import PAPER_MODELS
from edgerl.utils.errors import InputError

# --------------------------------------------------------------------------- SSIM


def test_ssim_identical_images_is_one() -> None:
    imgs = synthetic_images(3, 32, np.random.default_rng(1))
    assert reconstruction_ssim(imgs, imgs.copy()) == pytest.approx(1.0, abs=1e-12)
    # One (3, H, W) image works too.
    assert reconstruction_ssim(imgs[0], imgs[0]) == pytest.approx(1.0, abs=1e-12)


def test_ssim_falls_with_noise() -> None:
    rng = np.random.default_rng(2)
    imgs = synthetic_images(4, 32, rng)
    noise = rng.standard_normal(imgs.shape)
    scores = [
        reconstruction_ssim(imgs, np.clip(imgs + sigma * noise, 0.0, 1.0))
        for sigma in (0.02, 0.1, 0.3)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    # Against a flat grey image the structure term is ~0 on textured crops.
    assert reconstruction_ssim(imgs, np.full_like(imgs, 0.5)) < 0.5


def test_ssim_shape_checks() -> None:
    a = np.zeros((2, 3, 16, 16))
    with pytest.raises(InputError, match="must match"):
        reconstruction_ssim(a, np.zeros((2, 3, 16, 15)))
    with pytest.raises(InputError, match="7x7"):
        reconstruction_ssim(np.zeros((1, 3, 6, 6)), np.zeros((1, 3, 6, 6)))


def test_synthetic_images_range_and_seed() -> None:
    a = synthetic_images(5, 24, np.random.default_rng(3))
    b = synthetic_images(5, 24, np.random.default_rng(3))
    assert a.shape == (5, 3, 24, 24) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0.02  # not blank


# --------------------------------------------------------------------------- normalisation


def test_normalise_golden() -> None:
    # Interior (z = 1..4) = 0.8, 0.5, 0.6, 0.2: min 0.2, max 0.8, span 0.6, so
    # (0.8-0.2)/0.6 = 1, (0.5-0.2)/0.6 = 0.5, (0.6-0.2)/0.6 = 2/3, (0.2-0.2)/0.6 = 0.
    # With z=0 -> 1 and z=L -> 0: [1, 1, 0.5, 2/3, 0, 0]; running minimum turns 2/3 into 0.5.
    out = normalise_leakage([1.0, 0.8, 0.5, 0.6, 0.2, 0.0])
    np.testing.assert_allclose(out, [1.0, 1.0, 0.5, 0.5, 0.0, 0.0], atol=1e-12)


def test_normalise_ignores_boundary_entries_and_rise_at_start() -> None:
    # Interior 0.3, 0.9, 0.6: min 0.3, max 0.9, span 0.6 -> 0, 1, 0.5; the running minimum
    # from z = 0 keeps 0 once reached: [1, 0, 0, 0, 0]. Boundary raw values do not matter.
    np.testing.assert_allclose(
        normalise_leakage([0.1, 0.3, 0.9, 0.6, 0.7]), [1.0, 0.0, 0.0, 0.0, 0.0], atol=1e-12
    )


def test_normalise_flat_and_tiny() -> None:
    # Flat interior is conservative: all 1, then 0 at z = L.
    np.testing.assert_array_equal(normalise_leakage([1.0, 0.4, 0.4, 0.4, 0.0]), [1, 1, 1, 1, 0])
    # L = 1: only the boundary conventions.
    np.testing.assert_array_equal(normalise_leakage([0.7, 0.2]), [1.0, 0.0])
    # L = 2: one attacked split, flat by definition.
    np.testing.assert_array_equal(normalise_leakage([1.0, 0.5, 0.0]), [1.0, 1.0, 0.0])
    with pytest.raises(InputError, match="ssim_raw"):
        normalise_leakage([1.0])
    with pytest.raises(InputError, match="finite"):
        normalise_leakage([1.0, float("nan"), 0.5, 0.0])


def test_normalise_properties_random_curves() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(3, 25))
        raw = rng.uniform(-0.2, 1.0, size=n)
        out = normalise_leakage(raw)
        assert out.shape == (n,)
        assert out[0] == 1.0 and out[-1] == 0.0
        assert np.all(np.diff(out) <= 0.0)
        assert np.all((out >= 0.0) & (out <= 1.0))
        # Min-max makes it invariant to a positive affine change of the attacked values.
        scaled = raw.copy()
        scaled[1:-1] = 0.3 * raw[1:-1] + 0.1
        np.testing.assert_allclose(normalise_leakage(scaled), out, atol=1e-9)
        # A curve that already falls is kept up to the rescaling.
        falling = np.sort(raw)[::-1]
        inner = falling[1:-1]
        if n > 3 and inner.max() - inner.min() > 1e-6:
            expect = (inner - inner.min()) / (inner.max() - inner.min())
            np.testing.assert_allclose(normalise_leakage(falling)[1:-1], expect, atol=1e-9)


# --------------------------------------------------------------------------- decoder


@pytest.mark.parametrize(
    ("shape", "size"),
    [((6, 14, 14), 32), ((16, 5, 5), 32), ((120,), 32), ((64, 32, 32), 32), ((256, 2, 2), 24)],
)
def test_decoder_output_shape(shape: tuple[int, ...], size: int) -> None:
    dec = privacy._Decoder(shape, size).eval()
    with torch.no_grad():
        out = dec(torch.randn(2, *shape))
    assert out.shape == (2, 3, size, size)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


# --------------------------------------------------------------------------- tiny real run


@pytest.fixture(scope="module")
def lenet7_profile() -> PrivacyProfile:
    return measure_leakage("lenet7", n_train=64, n_test=16, steps=40, seed=0)


def test_tiny_run_shape_and_conventions(lenet7_profile: PrivacyProfile) -> None:
    prof = lenet7_profile
    num_splits = len(profile_model("lenet7", use_cache=False).splits)  # L + 1 = 6
    assert num_splits == 6
    assert prof.model == "lenet7" and prof.num_layers == 5
    assert prof.z == tuple(range(6))
    assert len(prof.ssim_raw) == len(prof.leakage) == num_splits
    assert prof.leakage[0] == 1.0 and prof.leakage[-1] == 0.0
    assert np.all(np.diff(prof.leakage) <= 0.0)
    assert all(-1.0 <= v <= 1.0 for v in prof.ssim_raw)
    np.testing.assert_allclose(prof.leakage, normalise_leakage(prof.ssim_raw))
    for key in ("seed", "steps", "image_size_px", "n_train", "n_test", "decoders"):
        assert key in prof.recipe
    assert prof.recipe["image_size_px"] == 32 and len(prof.recipe["decoders"]) == 4


def test_tiny_run_shallow_leaks_more_than_deep(lenet7_profile: PrivacyProfile) -> None:
    raw = lenet7_profile.ssim_raw
    # z = 1: 6x14x14 feature map; z = L-1 = 4: the 84-wide vector of F6.
    assert raw[1] > raw[4] + 0.05
    assert raw[1] > float(np.mean(raw[2:5]))


def test_tiny_run_is_deterministic() -> None:
    kwargs = dict(n_train=8, n_test=2, steps=2, seed=5)
    a = measure_leakage("lenet7", **kwargs)
    b = measure_leakage("LeNet-7", **kwargs)
    assert a.ssim_raw == b.ssim_raw


def test_bad_settings_raise() -> None:
    with pytest.raises(InputError, match="vgg17"):
        measure_leakage("vgg17", n_train=8, n_test=2, steps=1, seed=0)
    with pytest.raises(InputError, match="steps"):
        measure_leakage("lenet7", n_train=8, n_test=2, steps=0, seed=0)
    with pytest.raises(InputError, match="image_size"):
        measure_leakage("lenet7", image_size=4, n_train=8, n_test=2, steps=1, seed=0)


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_committed_tables(name: str) -> None:
    leak = load_leakage_table(name)
    splits = profile_model(name, use_cache=False).splits
    assert leak.shape == (len(splits),)
    assert leak[0] == 1.0 and leak[-1] == 0.0
    assert np.all(np.diff(leak) <= 0.0)
    data = json.loads((DEFAULT_TABLE_DIR / f"{name}.json").read_text())
    assert data["model"] == name and len(data["ssim_raw"]) == len(splits)
    # The committed recipe attacks every split 0 < z < L.
    assert len(data["recipe"]["decoders"]) == len(splits) - 2
    assert len(layer_names(name)) == len(splits) - 1


def test_committed_tables_shallow_above_deep() -> None:
    for name in PAPER_MODELS:
        raw = json.loads((DEFAULT_TABLE_DIR / f"{name}.json").read_text())["ssim_raw"]
        assert raw[1] > raw[-2], name


def test_load_table_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="vgg17"):
        load_leakage_table("vgg17")
    with pytest.raises(InputError) as info:
        load_leakage_table("lenet7", table_dir=tmp_path)
    assert "lenet7.json" in str(info.value) and "edgerl profile privacy --model lenet7" in str(
        info.value
    )
    (tmp_path / "lenet7.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_leakage_table("lenet7", table_dir=tmp_path)
    bad = {"model": "lenet7", "z": [0, 1, 2], "ssim_raw": [1, 0.5, 0], "leakage": [1, 0.2, 0.5]}
    (tmp_path / "lenet7.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="never rise"):
        load_leakage_table("lenet7", table_dir=tmp_path)
    (tmp_path / "lenet7.json").write_text(json.dumps({"model": "lenet7", "z": [0, 1]}))
    with pytest.raises(InputError, match="missing field 'leakage'"):
        load_leakage_table("lenet7", table_dir=tmp_path)


def test_write_and_round_trip(tmp_path: Path) -> None:
    prof = PrivacyProfile(
        model="lenet7",
        z=(0, 1, 2, 3, 4, 5),
        ssim_raw=(1.0, 0.6, 0.4, 0.3, 0.35, 0.0),
        leakage=tuple(normalise_leakage([1.0, 0.6, 0.4, 0.3, 0.35, 0.0]).tolist()),
        recipe={"seed": 1},
    )
    path = write_leakage_table(prof, tmp_path / "sub" / "lenet7.json")
    assert PrivacyProfile.from_dict(json.loads(path.read_text())) == prof
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    np.testing.assert_allclose(load_leakage_table("lenet7", table_dir=path.parent), prof.leakage)
    with pytest.raises(InputError, match="ssim_raw has 2 entries"):
        PrivacyProfile(model="x", z=(0, 1, 2), ssim_raw=(1.0, 0.0), leakage=(1.0, 0.5, 0.0))


# --------------------------------------------------------------------------- CLI


def test_cli_profile_privacy(tmp_path: Path) -> None:
    out = tmp_path / "lenet7.json"
    result = CliRunner().invoke(
        app,
        [
            "profile", "privacy", "--model", "lenet7", "--steps", "3", "--n-train", "8",
            "--n-test", "2", "--seed", "1", "--json", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "lenet7" in result.output and "leakage" in result.output and "c5" in result.output
    data = json.loads(out.read_text())
    assert data["model"] == "lenet7" and len(data["leakage"]) == 6
    assert data["recipe"]["steps"] == 3 and data["recipe"]["seed"] == 1


def test_cli_profile_privacy_bad_model(capsys) -> None:
    assert main(["profile", "privacy", "--model", "vgg17", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "vgg17" in err and "vgg16" in err
