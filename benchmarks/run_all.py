"""Run every benchmark and write results under benchmarks/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    rc = 0
    for name in ("bench_synth", "bench_detectors", "bench_repose"):
        r = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--out", str(out / f"{name}.json")])
        rc = rc or r.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
