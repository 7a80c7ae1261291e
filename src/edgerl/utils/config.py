"""Typed configuration: pydantic models loaded from YAML.

Every component has a config model deriving from :class:`Config` (unknown fields are
refused, values are validated, units are in the field names). :func:`load_config`
turns any problem into an :class:`~edgerl.utils.errors.InputError` whose message is one
line naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgerl.utils.errors import InputError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base of every config model: strict about unknown fields, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def to_yaml(self) -> str:
        """The resolved config as YAML text (all defaults filled in)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) if loc else "<root>"


def _model_at(root: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that owns the last element of ``loc`` (for listing its fields)."""
    model = root
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def format_validation_error(
    exc: ValidationError, source: str, root: type[BaseModel] | None = None
) -> str:
    """One line for the first problem of a pydantic ``ValidationError``."""
    err = exc.errors()[0]
    field = _field_path(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        allowed = ""
        cls = _model_at(root or _MODEL_REGISTRY.get(exc.title), tuple(err.get("loc", ())))
        if cls is not None:
            allowed = "; allowed fields: " + ", ".join(cls.model_fields)
        return f"{source}: unknown field '{field}'{allowed}"
    if kind == "missing":
        return f"{source}: field '{field}' is required"
    msg = err.get("msg", "invalid value")
    ctx = err.get("ctx") or {}
    if "expected" in ctx and "expected" not in msg:
        msg += f" (expected {ctx['expected']})"
    more = len(exc.errors()) - 1
    tail = f" (+{more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: field '{field}' = {value!r}: {msg}{tail}"


_MODEL_REGISTRY: dict[str, type[BaseModel]] = {}


def register_config(cls: type[C]) -> type[C]:
    """Class decorator recording a config model by name (used in error messages)."""
    _MODEL_REGISTRY[cls.__name__] = cls
    return cls


def config_from_dict(cls: type[C], data: dict[str, Any] | None, source: str = "config") -> C:
    """Validate ``data`` into ``cls``; raise ``InputError`` with a one-line message on failure."""
    _MODEL_REGISTRY.setdefault(cls.__name__, cls)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: top level must be a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source, cls)) from None


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping; ``InputError`` naming the file otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, expected a YAML file") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{p}: not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(f"{p}: top level must be a mapping of fields, got {type(loaded).__name__}")
    return loaded


def load_config(
    cls: type[C], path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> C:
    """Load a config of type ``cls`` from a YAML file (or defaults when ``path`` is None).

    Args:
        cls: the config model.
        path: YAML file; ``None`` means all defaults.
        overrides: top-level fields set after reading the file (e.g. from CLI flags).
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        data = read_yaml_mapping(path)
    if overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return config_from_dict(cls, data, source)
