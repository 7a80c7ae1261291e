"""The HC-MAPPO-L service catalog: profiler numbers, padding, services, leakage tables."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import edgerl.hcmappo.catalog as catalog_mod
from edgerl.edge.profiler import profile_model
from edgerl.hcmappo import costs
from edgerl.hcmappo.catalog import SPLIT_FIELDS, build_catalog, catalog_for_config
from edgerl.hcmappo.config import PAPER_MODELS, make_config
from edgerl.utils.errors import InputError


@pytest.fixture(scope="module")
def leakage() -> dict[str, np.ndarray]:
    """Leakage 1 - z / L per model: 1 at z = 0, 0 at z = L (the paper's conventions)."""
    return {
        n: 1.0 - np.arange(profile_model(n).num_layers + 1) / profile_model(n).num_layers
        for n in PAPER_MODELS
    }


def test_catalog_matches_profiler_split_points(leakage) -> None:
    cat = build_catalog(leakage=leakage)
    assert cat.model_names == PAPER_MODELS
    assert cat.n_services == 45
    # the deepest model is VGG-19 with 19 partitionable layers -> 20 split columns
    assert cat.n_splits == 20
    for m, name in enumerate(PAPER_MODELS):
        prof = profile_model(name)
        n_layers = prof.num_layers
        assert cat.num_layers[m] == n_layers
        assert cat.split_valid[m].sum() == n_layers + 1
        assert cat.split_valid[m, : n_layers + 1].all()
        for field in SPLIT_FIELDS:
            want = [getattr(s, field) for s in prof.splits]
            np.testing.assert_array_equal(getattr(cat, field)[m, : n_layers + 1], want)
            # padding beyond z = L holds zeros
            assert not getattr(cat, field)[m, n_layers + 1 :].any()
        np.testing.assert_allclose(cat.leakage[m, : n_layers + 1], leakage[name])
        assert cat.model_bytes[m] == prof.total_params_bytes
        assert cat.input_bytes[m] == prof.input_bytes
        # split conventions: everything on the edge at z = 0, everything on the device at z = L
        assert cat.device_flops[m, 0] == 0 and cat.edge_flops[m, n_layers] == 0
        assert cat.upload_bytes[m, 0] == prof.input_bytes and cat.upload_bytes[m, n_layers] == 0


def test_services_share_their_model(leakage) -> None:
    cat = build_catalog(leakage=leakage)
    assert cat.service_names[:6] == (
        "lenet7#0",
        "lenet7#1",
        "lenet7#2",
        "lenet7#3",
        "lenet7#4",
        "lenet9#0",
    )
    np.testing.assert_array_equal(cat.service_model, np.repeat(np.arange(9), 5))
    for i in range(cat.n_services):
        m = i // 5
        assert cat.service_bytes[i] == cat.model_bytes[m]
        np.testing.assert_array_equal(cat.per_service("edge_flops")[i], cat.edge_flops[m])
    with pytest.raises(ValueError):
        cat.edge_flops[0, 0] = 1.0  # read-only


def test_smaller_catalog_and_other_service_counts(leakage) -> None:
    cat = build_catalog(
        ("LeNet-7", "resnet18"),
        2,
        leakage={"lenet7": leakage["lenet7"], "resnet18": leakage["resnet18"]},
    )
    assert cat.model_names == ("lenet7", "resnet18")
    assert cat.n_services == 4 and cat.n_splits == 11  # ResNet-18 has 10 layers
    assert cat.service_names == ("lenet7#0", "lenet7#1", "resnet18#0", "resnet18#1")


def test_leakage_tables_are_checked(leakage) -> None:
    bad = dict(leakage)
    bad["vgg16"] = np.linspace(1, 0, 5)
    with pytest.raises(InputError, match=r"vgg16.*L \+ 1 = 17"):
        build_catalog(leakage=bad)
    bad["vgg16"] = np.full(17, 1.5)
    with pytest.raises(InputError, match=r"vgg16.*\[0, 1\]"):
        build_catalog(leakage=bad)
    with pytest.raises(InputError, match="not in models"):
        build_catalog(("lenet7",), leakage={"lenet7": leakage["lenet7"], "vgg16": leakage["vgg16"]})
    with pytest.raises(InputError, match="distinct"):
        build_catalog(("lenet7", "LeNet7"), leakage=leakage)
    with pytest.raises(InputError, match="services_per_model"):
        build_catalog(services_per_model=0, leakage=leakage)


def test_privacy_module_is_imported_lazily(monkeypatch, leakage) -> None:
    # With edgerl.edge.privacy unimportable, explicit tables still build the catalog ...
    monkeypatch.setitem(sys.modules, "edgerl.edge.privacy", None)
    monkeypatch.setattr(catalog_mod, "_LEAKAGE", {})
    cat = build_catalog(("lenet7",), leakage={"lenet7": leakage["lenet7"]})
    assert cat.n_services == 5
    # ... and a missing table says how to pass one
    with pytest.raises(InputError, match="leakage="):
        build_catalog(("lenet7",))


def test_default_tables_when_committed() -> None:
    from edgerl.edge import privacy

    if not all((privacy.DEFAULT_TABLE_DIR / f"{m}.json").is_file() for m in PAPER_MODELS):
        pytest.skip("default privacy tables are not committed yet")
    cat = build_catalog()
    for m, n in enumerate(cat.num_layers):
        assert cat.leakage[m, 0] == 1.0 and cat.leakage[m, n] == 0.0


def test_profiles_are_cached_in_process(monkeypatch, leakage) -> None:
    build_catalog(leakage=leakage)
    calls = []
    monkeypatch.setattr(catalog_mod, "profile_model", lambda name: calls.append(name))
    build_catalog(leakage=leakage)
    assert calls == []


def test_storage_that_holds_no_model_is_refused(leakage) -> None:
    # the smallest service is LeNet-7: 248 024 bytes of weights = 0.000248 GB
    cfg = make_config(server_storage_gb=(0.0001, 0.0002))
    with pytest.raises(InputError, match="server_storage_gb.*lenet7"):
        catalog_for_config(cfg, leakage)
    catalog_for_config(make_config(server_storage_gb=(0.00025, 0.0003)), leakage)


def test_full_device_energy_of_vgg16_is_on_the_papers_scale() -> None:
    # VGG-16 at 224 x 224 is 15.47 GMAC = 30.9 GFLOP per sample; the catalog's Omega^U at z = L
    # must hold it (FLOPs, not MACs: Table I gives epsilon in J/FLOP).
    cat = build_catalog(["vgg16"], 1, leakage={"vgg16": np.linspace(1.0, 0.0, 17)})
    flops = cat.device_flops[0, cat.num_layers[0]]
    assert flops == pytest.approx(30.95e9, rel=0.01)
    # Eq. (6) at the middle of Table I's range, epsilon = (1e-11 + 1e-9) / 2 = 5.05e-10 J/FLOP,
    # one sample: 5.05e-10 * 30.95e9 = 15.6 J, the paper's ~15 J per user (section V-B) is the
    # energy of running large models on the device, not of offloading them.
    e = costs.energy_j(5.05e-10, 1, flops, 0.5, 0.0)
    assert e == pytest.approx(15.63, rel=0.01)
