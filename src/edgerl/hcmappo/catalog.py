"""Service catalog of HC-MAPPO-L: base models x services, per-split costs as padded arrays.

Paper 003, sections III-B and V-A: nine base models (LeNet-7/9/12, VGG-13/16/19,
ResNet-18/34/50), each instantiated as five services (I = 45).

What a service is. A service is one deployed instance of a base model: the same architecture
with its own weights (e.g. fine-tuned for one application). Two services of one base model
therefore have identical per-split costs and leakage, but a server must cache each of them
separately (its own storage, its own cloud-to-edge download) and a request for one cannot be
served by the other. Service ``i`` belongs to base model ``i // services_per_model``.

Per-split costs come from :func:`edgerl.edge.profiler.profile_model` (batch 1, fp32; split
``z`` runs layers ``1..z`` on the device and ``z+1..L`` on the edge; ``z = 0`` is full edge
execution, ``z = L`` full device execution). Models have different ``L``; every per-split
array is padded to ``Z = max L + 1`` columns, with ``split_valid`` marking the real splits and
zeros in the padding.

Privacy leakage per split is eq. (3): SSIM of a reconstruction from the features sent at
``z``, normalised per model, 1 at ``z = 0`` and 0 at ``z = L``. It comes from
:func:`edgerl.edge.privacy.load_leakage_table` unless an explicit table is passed for a model.

Building a catalog is cheap: profiles are cached on disk by ``profile_model`` and in this
process by :func:`build_catalog`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgerl.edge.profiler import DNNProfile, profile_model
from edgerl.edge.zoo import canonical_name
from edgerl.hcmappo.config import PAPER_MODELS, HcConfig
from edgerl.utils.errors import InputError

__all__ = [
    "SPLIT_FIELDS",
    "ServiceCatalog",
    "build_catalog",
    "catalog_for_config",
    "check_config_fits",
    "clear_catalog_cache",
]

SPLIT_FIELDS: tuple[str, ...] = (
    "device_flops",
    "edge_flops",
    "upload_bytes",
    "device_param_bytes",
    "edge_param_bytes",
)
"""Per-split quantities taken from the profiler's split-point view."""

_PROFILES: dict[str, DNNProfile] = {}
_LEAKAGE: dict[str, np.ndarray] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class ServiceCatalog:
    """The service catalog as NumPy arrays (read-only).

    Per base model ``m`` (``M`` models) and split ``z`` (``Z = max L + 1`` columns):

    Attributes:
        model_names: Canonical names of the ``M`` base models.
        services_per_model: Services per base model.
        num_layers: (M,) int, partitionable layers ``L_m``.
        split_valid: (M, Z) bool, ``z <= L_m``.
        device_flops: (M, Z) float64, FLOPs of layers ``1..z`` per sample (eq. Omega^U).
        edge_flops: (M, Z) float64, FLOPs of layers ``z+1..L`` per sample (Omega^E).
        upload_bytes: (M, Z) float64, bytes sent device -> edge per sample (D^up): the input at
            ``z = 0``, layer ``z``'s output for ``0 < z < L``, 0 at ``z = L``.
        device_param_bytes: (M, Z) float64, weights of layers ``1..z`` the device downloads
            (D^U).
        edge_param_bytes: (M, Z) float64, weights of layers ``z+1..L``.
        leakage: (M, Z) float64 in [0, 1], privacy leakage Lea(z) (eq. (3)); 0 in padding.
        model_bytes: (M,) float64, all weights of the model: the storage D_i a cached service
            takes (C7) and what the cloud sends on a migration (eq. (23)).
        input_bytes: (M,) float64, bytes of one input sample (fp32): D_i^raw of eq. (10).
    """

    model_names: tuple[str, ...]
    services_per_model: int
    num_layers: np.ndarray
    split_valid: np.ndarray
    device_flops: np.ndarray
    edge_flops: np.ndarray
    upload_bytes: np.ndarray
    device_param_bytes: np.ndarray
    edge_param_bytes: np.ndarray
    leakage: np.ndarray
    model_bytes: np.ndarray
    input_bytes: np.ndarray

    def __post_init__(self) -> None:
        for name in (
            "num_layers",
            "split_valid",
            *SPLIT_FIELDS,
            "leakage",
            "model_bytes",
            "input_bytes",
        ):
            getattr(self, name).setflags(write=False)

    @property
    def n_models(self) -> int:
        """M, number of base models."""
        return len(self.model_names)

    @property
    def n_services(self) -> int:
        """I, number of services."""
        return self.n_models * self.services_per_model

    @property
    def n_splits(self) -> int:
        """Z, columns of the per-split arrays: the largest ``L`` plus one."""
        return int(self.split_valid.shape[1])

    @property
    def service_model(self) -> np.ndarray:
        """(I,) int, base model of each service (``i // services_per_model``)."""
        return np.repeat(np.arange(self.n_models), self.services_per_model)

    @property
    def service_names(self) -> tuple[str, ...]:
        """Names ``"<model>#<n>"`` of the I services, ``n = 0..services_per_model-1``."""
        return tuple(f"{m}#{n}" for m in self.model_names for n in range(self.services_per_model))

    @property
    def service_bytes(self) -> np.ndarray:
        """(I,) float64, storage of each service (its model's weights)."""
        return self.model_bytes[self.service_model]

    def per_service(self, name: str) -> np.ndarray:
        """A per-model array expanded to the services: row ``i`` is that of ``i``'s model.

        Args:
            name: One of :data:`SPLIT_FIELDS`, ``split_valid``, ``leakage``, ``num_layers``,
                ``model_bytes`` or ``input_bytes``.
        """
        return np.asarray(getattr(self, name))[self.service_model]


def _profile(name: str) -> DNNProfile:
    with _LOCK:
        prof = _PROFILES.get(name)
    if prof is None:
        prof = profile_model(name)
        with _LOCK:
            _PROFILES[name] = prof
    return prof


def _default_leakage(name: str) -> np.ndarray:
    with _LOCK:
        leak = _LEAKAGE.get(name)
    if leak is None:
        # Imported here so that the catalog works with explicit tables where privacy is absent.
        try:
            from edgerl.edge.privacy import load_leakage_table
        except ImportError as exc:  # pragma: no cover - depends on the installed tree
            raise InputError(
                f"no privacy leakage table for {name!r}: edgerl.edge.privacy is unavailable "
                f"({exc}); pass leakage={{{name!r}: array of L+1 values}} instead"
            ) from None
        leak = np.asarray(load_leakage_table(name), dtype=np.float64)
        with _LOCK:
            _LEAKAGE[name] = leak
    return leak


def _check_leakage(name: str, leak: np.ndarray, n_layers: int, source: str) -> np.ndarray:
    arr = np.asarray(leak, dtype=np.float64).reshape(-1)
    if arr.shape != (n_layers + 1,):
        raise InputError(
            f"{source}: leakage of {name!r} has {arr.size} values; {name} has L = {n_layers} "
            f"partitionable layers, so it needs L + 1 = {n_layers + 1} (z = 0..L)"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise InputError(f"{source}: leakage of {name!r} must lie in [0, 1], got {arr.tolist()}")
    return arr


def build_catalog(
    models: Sequence[str] | None = None,
    services_per_model: int = 5,
    leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> ServiceCatalog:
    """Profile the base models and lay out the service catalog.

    Args:
        models: Base model names (zoo names; case, ``-`` and ``_`` ignored); ``None`` gives the
            paper's nine (:data:`edgerl.hcmappo.config.PAPER_MODELS`).
        services_per_model: Services per base model (>= 1).
        leakage: Optional leakage table per model name (``L + 1`` values in [0, 1], ``z = 0..L``);
            models not in it use :func:`edgerl.edge.privacy.load_leakage_table`.

    Returns:
        The catalog.

    Raises:
        InputError: On an unknown or repeated model, ``services_per_model < 1``, a leakage table
            of the wrong length or range, a leakage entry for a model not in ``models``, or a
            missing default leakage table.
    """
    if models is None:
        models = PAPER_MODELS
    if int(services_per_model) < 1:
        raise InputError(f"services_per_model must be >= 1, got {services_per_model!r}")
    names = tuple(canonical_name(m) for m in models)
    if not names:
        raise InputError("models: the catalog needs at least one base model")
    if len(set(names)) != len(names):
        raise InputError(f"models: base models must be distinct, got {list(models)}")
    overrides = {canonical_name(k): v for k, v in (leakage or {}).items()}
    extra = sorted(set(overrides) - set(names))
    if extra:
        raise InputError(
            f"leakage: tables given for {extra}, which are not in models {list(names)}"
        )

    profiles = [_profile(n) for n in names]
    n_layers = np.array([p.num_layers for p in profiles], dtype=np.int64)
    n_splits = int(n_layers.max()) + 1
    m = len(names)
    arrays = {f: np.zeros((m, n_splits), dtype=np.float64) for f in SPLIT_FIELDS}
    valid = np.zeros((m, n_splits), dtype=bool)
    leak = np.zeros((m, n_splits), dtype=np.float64)
    for row, (name, prof) in enumerate(zip(names, profiles)):
        n = prof.num_layers + 1
        valid[row, :n] = True
        for f in SPLIT_FIELDS:
            arrays[f][row, :n] = [getattr(s, f) for s in prof.splits]
        if name in overrides:
            leak[row, :n] = _check_leakage(name, overrides[name], prof.num_layers, "leakage")
        else:
            leak[row, :n] = _check_leakage(
                name, _default_leakage(name), prof.num_layers, "edgerl.edge.privacy"
            )
    return ServiceCatalog(
        model_names=names,
        services_per_model=int(services_per_model),
        num_layers=n_layers,
        split_valid=valid,
        leakage=leak,
        model_bytes=np.array([p.total_params_bytes for p in profiles], dtype=np.float64),
        input_bytes=np.array([p.input_bytes for p in profiles], dtype=np.float64),
        **arrays,
    )


def clear_catalog_cache() -> None:
    """Forget the profiles and leakage tables cached in this process."""
    with _LOCK:
        _PROFILES.clear()
        _LEAKAGE.clear()


def catalog_for_config(
    config: HcConfig, leakage: Mapping[str, Sequence[float] | np.ndarray] | None = None
) -> ServiceCatalog:
    """The catalog of ``config.models`` x ``config.services_per_model``, checked against it.

    Raises:
        InputError: See :func:`build_catalog` and :func:`check_config_fits`.
    """
    catalog = build_catalog(config.models, config.services_per_model, leakage)
    check_config_fits(config, catalog)
    return catalog


def check_config_fits(config: HcConfig, catalog: ServiceCatalog) -> None:
    """Refuse settings under which a server could cache no service at all.

    Raises:
        InputError: If the low end of ``server_storage_gb`` is below the smallest service, or
            the catalog does not match ``models`` / ``services_per_model``.
    """
    if tuple(canonical_name(m) for m in config.models) != catalog.model_names:
        raise InputError(
            f"HcConfig.models {list(config.models)} do not match the catalog's "
            f"{list(catalog.model_names)}"
        )
    if config.services_per_model != catalog.services_per_model:
        raise InputError(
            f"HcConfig.services_per_model = {config.services_per_model} does not match the "
            f"catalog's {catalog.services_per_model}"
        )
    smallest = int(np.argmin(catalog.model_bytes))
    need_gb = float(catalog.model_bytes[smallest]) / 1e9
    low = config.server_storage_gb[0]
    if low < need_gb:
        raise InputError(
            f"HcConfig: field 'server_storage_gb' = {tuple(config.server_storage_gb)}: a server "
            f"with {low} GB cannot cache any service (the smallest, "
            f"{catalog.model_names[smallest]}, needs {need_gb:.6f} GB); the low end must be "
            f">= {need_gb:.6f}"
        )
