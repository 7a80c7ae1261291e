"""Atomic writes: an interrupted write leaves no partial file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgerl.utils import io as eio


def test_atomic_write_roundtrip(tmp_path: Path) -> None:
    p = eio.write_json(tmp_path / "a" / "s.json", {"x": 1.5, "y": [1, 2]})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [1, 2]}
    assert [f.name for f in p.parent.iterdir()] == ["s.json"]


def test_failed_write_keeps_old_content_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "summary.json"
    eio.write_json(target, {"old": True})

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(eio.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        eio.write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["summary.json"]


def test_failed_first_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(eio.os, "replace", lambda a, b: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        eio.atomic_write_text(tmp_path / "m.csv", "a,b\n1,2\n")
    assert list(tmp_path.iterdir()) == []


_WRITER = r"""
import sys, time
from edgerl.utils.io import atomic_write_bytes
target = sys.argv[1]
blob = b"x" * (8 << 20)
print("ready", flush=True)
i = 0
while True:
    atomic_write_bytes(target, bytes([65 + i % 26]) + blob)
    i += 1
"""


def test_killed_writer_never_leaves_partial_file(tmp_path: Path) -> None:
    """Kill a process that rewrites an 8 MiB file in a loop; the file is always whole."""
    target = tmp_path / "big.bin"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists()
    assert target.stat().st_size == (8 << 20) + 1
    data = target.read_bytes()
    assert data[1:].count(b"x") == 8 << 20


def test_write_csv_union_header(tmp_path: Path) -> None:
    p = eio.write_csv(tmp_path / "m.csv", [{"a": 1}, {"a": 2, "b": 3}])
    assert p.read_text().splitlines() == ["a,b", "1,", "2,3"]


def test_read_json_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    from edgerl.utils.errors import InputError

    with pytest.raises(InputError, match="bad.json"):
        eio.read_json(bad)
    with pytest.raises(InputError, match="missing.json: file not found"):
        eio.read_json(tmp_path / "missing.json")


def test_numpy_values_serialise(tmp_path: Path) -> None:
    import numpy as np

    p = eio.write_json(tmp_path / "n.json", {"a": np.float32(0.5), "b": np.arange(3), "c": np.int64(7)})
    assert json.loads(p.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": 7}
