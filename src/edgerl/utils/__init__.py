"""Utilities: seeding, run directories, atomic writers, timing, config loading."""

from edgerl.utils.errors import InputError
from edgerl.utils.io import atomic_write_bytes, atomic_write_text, read_json, write_csv, write_json
from edgerl.utils.seeding import make_rng, seed_everything, worker_seeds

__all__ = [
    "InputError",
    "atomic_write_bytes",
    "atomic_write_text",
    "make_rng",
    "read_json",
    "seed_everything",
    "worker_seeds",
    "write_csv",
    "write_json",
]
