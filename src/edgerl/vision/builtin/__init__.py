"""The built-in person detector family (sizes ``n`` < ``s`` < ``m``).

Small anchor-free detectors trained on synthetic PANDA-like plaza scenes and shipped as
ONNX files in the YOLOv8 export layout, so they run through the same ONNX Runtime
backend as third-party YOLOv8 exports. :func:`builtin_model_path` names the committed
file of a size; :mod:`edgerl.vision.builtin.train` and
:mod:`edgerl.vision.builtin.export` rebuild them.
"""

from __future__ import annotations

from pathlib import Path

from edgerl.utils.errors import InputError

#: The sizes of the family, smallest (fastest) first.
BUILTIN_SIZES: tuple[str, ...] = ("n", "s", "m")

#: Folder of the committed ONNX files and their metadata.
DETECTORS_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "detectors"


def _check_size(size: str) -> str:
    if size not in BUILTIN_SIZES:
        raise InputError(
            f"built-in detector size {size!r} is unknown; valid sizes: {', '.join(BUILTIN_SIZES)}"
        )
    return size


def builtin_model_path(size: str) -> Path:
    """Path of the committed ONNX file of a built-in size.

    Args:
        size: one of :data:`BUILTIN_SIZES`.

    Returns:
        ``.../edgerl/data/detectors/person_{size}.onnx`` (it may be absent in a checkout
        that has not trained the family yet; check ``.is_file()``).

    Raises:
        InputError: unknown size (the message names it and the valid sizes).
    """
    return DETECTORS_DIR / f"person_{_check_size(size)}.onnx"


def builtin_metadata_path(size: str) -> Path:
    """Path of the metadata JSON written next to :func:`builtin_model_path`.

    Raises:
        InputError: unknown size.
    """
    return DETECTORS_DIR / f"person_{_check_size(size)}.json"


__all__ = ["BUILTIN_SIZES", "DETECTORS_DIR", "builtin_metadata_path", "builtin_model_path"]
