"""Run directories: ``config.yaml`` (resolved), ``metrics.csv`` and ``summary.json``.

Every file is written atomically. Metrics rows accumulate in memory and the CSV is
rewritten (atomically) on each flush, so an interrupted run leaves the last complete
CSV rather than a truncated one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgerl.utils.io import atomic_write_text, write_csv, write_json


def run_name(env_id: str, exp_name: str, seed: int, when: float | None = None) -> str:
    """CleanRL-style run name ``{env_id}__{exp_name}__{seed}__{unix time}``."""
    return f"{env_id}__{exp_name}__{seed}__{int(when if when is not None else time.time())}"


class RunDir:
    """A run directory writer.

    Args:
        path: folder of the run (created).
        flush_every: rewrite ``metrics.csv`` after this many new rows.
    """

    def __init__(self, path: str | os.PathLike[str], flush_every: int = 1) -> None:
        self.path = Path(path)
        self.flush_every = max(1, int(flush_every))
        self._rows: list[dict[str, Any]] = []
        self._unflushed = 0
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: Any) -> Path:
        """Save the resolved config (a pydantic model, dict or YAML text) as ``config.yaml``."""
        import yaml

        if hasattr(config, "to_yaml"):
            text = config.to_yaml()
        elif hasattr(config, "model_dump"):
            text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        elif isinstance(config, str):
            text = config
        else:
            text = yaml.safe_dump(dict(config), sort_keys=False)
        return atomic_write_text(self.path / "config.yaml", text)

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one metrics row (flat keys with units in the names)."""
        self._rows.append(dict(row))
        self._unflushed += 1
        if self._unflushed >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Rewrite ``metrics.csv`` with every row so far."""
        write_csv(self.path / "metrics.csv", self._rows)
        self._unflushed = 0

    def write_summary(self, summary: Mapping[str, Any], json_path: str | os.PathLike[str] | None = None) -> Path:
        """Write ``summary.json`` (and the same content to ``json_path`` if given)."""
        if self._rows and self._unflushed:
            self.flush()
        out = write_json(self.path / "summary.json", dict(summary))
        if json_path is not None:
            write_json(json_path, dict(summary))
        return out

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)
