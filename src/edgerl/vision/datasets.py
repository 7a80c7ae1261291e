"""Dataset loaders: COCO, PANDA, VisDrone-DET and MOT17 ground truth in one in-memory form.

Every loader returns a :class:`Dataset` of :class:`Sample` objects: the image (as a path,
read on demand with :func:`read_image`), its size, ``xyxy`` float32 boxes in pixels of that
image, 0-based class ids into ``Dataset.category_names``, and ignore regions (``xyxy``,
detections inside them are neither true nor false positives). Annotation files are checked
as they are read; a malformed one raises :class:`~edgerl.utils.errors.InputError` naming the
file, the entry and the field.

Images are not decoded while loading (only their headers are read where the annotation lacks
the size), so large sets load quickly.
"""

from __future__ import annotations

import configparser
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, overload

import cv2
import numpy as np

from edgerl.utils.errors import InputError
from edgerl.utils.io import read_json

__all__ = [
    "Sample",
    "Dataset",
    "read_image",
    "image_size",
    "load_coco",
    "load_panda",
    "load_visdrone",
    "load_mot",
    "load_dataset",
    "VISDRONE_CATEGORIES",
    "MOT_IGNORE_CLASSES",
]

VISDRONE_CATEGORIES = (
    "pedestrian",
    "people",
    "bicycle",
    "car",
    "van",
    "truck",
    "tricycle",
    "awning-tricycle",
    "bus",
    "motor",
)
"""VisDrone-DET categories 1..10 (0 = ignored regions and 11 = others are not objects)."""

MOT_IGNORE_CLASSES = (2, 7, 8, 12)
"""MOT17 classes that are people but not scored: person on vehicle, static person,
distractor, reflection. Detections on them are ignored."""

_PANDA_BOX_KEYS = {"full": "full body", "visible": "visible body", "head": "head"}


# ----------------------------------------------------------------------------- containers


def _boxes(arr: Any) -> np.ndarray:
    return np.asarray(arr, dtype=np.float32).reshape(-1, 4)


@dataclass(frozen=True)
class Sample:
    """One annotated image.

    Attributes:
        image_path: where the image is (``None`` for an in-memory image).
        image: the decoded RGB uint8 image, or ``None`` (read on demand from ``image_path``).
        width: image width in pixels.
        height: image height in pixels.
        boxes: float32 (N, 4) xyxy ground-truth boxes in pixels.
        classes: int64 (N,) 0-based indices into the dataset's ``category_names``.
        ignore: float32 (M, 4) xyxy ignore regions.
        image_id: integer id, unique within the dataset.
        meta: anything else the source provides (file name, per-box ``track_ids``,
            ``visible_fraction``, frame numbers, ...); per-box arrays have length N.
    """

    image_path: Path | None
    image: np.ndarray | None
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray
    image_id: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        b = _boxes(self.boxes)
        c = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if len(b) != len(c):
            raise ValueError(f"Sample {self.image_id}: {len(b)} boxes but {len(c)} classes")
        object.__setattr__(self, "boxes", b)
        object.__setattr__(self, "classes", c)
        object.__setattr__(self, "ignore", _boxes(self.ignore))
        if self.image_path is not None:
            object.__setattr__(self, "image_path", Path(self.image_path))

    def load_image(self) -> np.ndarray:
        """The image as RGB uint8 (H, W, 3): the in-memory one or :func:`read_image`."""
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise InputError(f"sample {self.image_id}: has neither an image nor an image path")
        return read_image(self.image_path)


class Dataset(Sequence[Sample]):
    """A list of :class:`Sample` plus the names of its categories.

    Args:
        samples: the images.
        category_names: name of each 0-based class id.
        category_ids: the source's id of each class (e.g. COCO category ids), default 1..K.
        name: where the set came from (shown in messages).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        category_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
        name: str = "",
    ) -> None:
        self.samples = list(samples)
        self.category_names = tuple(category_names)
        self.category_ids = tuple(
            range(1, len(self.category_names) + 1) if category_ids is None else category_ids
        )
        if len(self.category_ids) != len(self.category_names):
            raise ValueError("category_ids and category_names differ in length")
        self.name = name

    def __len__(self) -> int:
        return len(self.samples)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> Dataset: ...

    def __getitem__(self, index: int | slice) -> Sample | Dataset:
        if isinstance(index, slice):
            return Dataset(self.samples[index], self.category_names, self.category_ids, self.name)
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        n_boxes = sum(len(s.boxes) for s in self.samples)
        return (
            f"Dataset({self.name!r}, {len(self)} images, {n_boxes} boxes, "
            f"categories={list(self.category_names)})"
        )

    def to_coco(self) -> dict[str, Any]:
        """The ground truth as a COCO dict (ignore regions become ``iscrowd`` 1 boxes).

        ``file_name`` is the image path as stored (absolute or relative to the working folder).
        """
        images, anns = [], []
        for s in self.samples:
            images.append(
                {
                    "id": int(s.image_id),
                    "width": int(s.width),
                    "height": int(s.height),
                    "file_name": str(s.image_path) if s.image_path is not None else "",
                }
            )
            rows = [(b, int(self.category_ids[c]), 0) for b, c in zip(s.boxes, s.classes)]
            person_id = int(self.category_ids[0]) if self.category_ids else 1
            rows += [(b, person_id, 1) for b in s.ignore]
            for b, cat, crowd in rows:
                w, h = float(b[2] - b[0]), float(b[3] - b[1])
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": int(s.image_id),
                        "category_id": cat,
                        "bbox": [float(b[0]), float(b[1]), w, h],
                        "area": w * h,
                        "iscrowd": crowd,
                        "ignore": crowd,
                    }
                )
        cats = [{"id": int(i), "name": n} for i, n in zip(self.category_ids, self.category_names)]
        return {"images": images, "annotations": anns, "categories": cats}


# ----------------------------------------------------------------------------- images


def _fail(source: Any, where: str, value: Any, expected: str) -> NoReturn:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise InputError(f"{source}: {where} = {text}: expected {expected}")


def _check_complete(path: Path, data: bytes) -> None:
    """Refuse JPEG and PNG files that end before their end marker (cut-off downloads)."""
    # A JPEG's last start-of-scan marker must be followed by an end-of-image marker.
    if data[:3] == b"\xff\xd8\xff" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise InputError(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        raise InputError(f"{path}: truncated PNG (no IEND chunk)")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3).

    Conversion rules:

    - grey images are replicated to three channels; an alpha channel is dropped (not
      composited); any other channel count is refused;
    - 16-bit images are mapped to 8 bits as ``round(v * 255 / 65535)`` (the full 16-bit range
      is assumed); float or other sample types are refused;
    - EXIF orientation is not applied: boxes refer to the stored pixel grid.

    Raises:
        InputError: naming the file, when it is missing, empty, truncated (JPEG without an
            end-of-image marker after its last scan, PNG without IEND), not decodable, or of an
            unsupported sample type or channel count.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: image file not found") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, expected an image file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the image ({exc.strerror})") from None
    if not data:
        raise InputError(f"{p}: empty file, expected an image")
    _check_complete(p, data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"{p}: not a readable image (unknown format or corrupt data)")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(
            f"{p}: sample type {img.dtype} is not supported (expected 8- or 16-bit integers)"
        )
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise InputError(f"{p}: {channels} channels are not supported (expected 1, 3 or 4)")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # Start-of-frame markers (C0..CF except DHT C4, JPG C8, DAC CC) carry the size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header for JPEG and PNG.

    Raises:
        InputError: the file is missing or not a readable image.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(65536)
    except FileNotFoundError:
        raise InputError(f"{p}: image file not found") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the image ({exc.strerror})") from None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:3] == b"\xff\xd8\xff":
        size = _jpeg_size(head)
        if size is None:  # the frame header lies beyond a large EXIF block
            size = _jpeg_size(p.read_bytes())
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
    img = read_image(p)
    return int(img.shape[1]), int(img.shape[0])


# ----------------------------------------------------------------------------- field checks


def _number(value: Any, source: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(source, where, value, "a finite number")
    return float(value)


def _positive_int(value: Any, source: Any, where: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
        or value <= 0
    ):
        _fail(source, where, value, "a positive integer")
    return int(value)


def _xywh(value: Any, source: Any, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        _fail(source, where, value, "[x, y, width, height]")
    x, y, w, h = (_number(v, source, where) for v in value)
    if w < 0 or h < 0:
        _fail(source, where, value, "[x, y, width, height] with width, height >= 0")
    return [x, y, x + w, y + h]


def _mapping(value: Any, source: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(source, where, value, "a JSON object")
    return value


def _list(value: Any, source: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(source, where, value, "a JSON list")
    return value


# ----------------------------------------------------------------------------- COCO


def load_coco(json_path: str | Path, image_root: str | Path | None = None) -> Dataset:
    """Load a COCO detection ground-truth file.

    Category ids are sorted and numbered 0..K-1 (``Dataset.category_ids`` keeps the
    originals). Annotations with ``iscrowd`` 1 or ``ignore`` 1 become ignore regions.
    ``file_name`` is resolved against ``image_root`` (default: the JSON's folder, which is
    how :func:`edgerl.vision.synth.write_dataset` lays out its sets). Missing ``width`` or
    ``height`` are read from the image header. ``meta`` holds ``file_name``, every other image
    field (e.g. ``frame_id``, ``sequence_id``) and per-box ``annotation_ids``, ``track_ids``
    (-1 when absent) and ``visible_fraction`` (NaN when absent).

    Raises:
        InputError: naming the file, the entry and the field of the first problem.
    """
    path = Path(json_path)
    return _coco_from_dict(read_json(path), path, image_root)


def _coco_from_dict(data: Any, path: Path, image_root: str | Path | None) -> Dataset:
    data = _mapping(data, path, "top level")
    if "images" not in data:
        raise InputError(f"{path}: field 'images' is missing (not a COCO file?)")
    images = _list(data["images"], path, "images")
    annotations = _list(data.get("annotations", []), path, "annotations")
    if "categories" not in data:
        raise InputError(f"{path}: field 'categories' is missing")
    categories = _list(data["categories"], path, "categories")
    root = Path(image_root) if image_root is not None else path.parent

    cat_names: dict[int, str] = {}
    for i, cat in enumerate(categories):
        cat = _mapping(cat, path, f"categories[{i}]")
        cid = cat.get("id")
        if isinstance(cid, bool) or not isinstance(cid, int):
            _fail(path, f"categories[{i}].id", cid, "an integer")
        if cid in cat_names:
            _fail(path, f"categories[{i}].id", cid, "ids that are unique")
        cat_names[cid] = str(cat.get("name", cid))
    cat_ids = sorted(cat_names)
    cat_index = {cid: k for k, cid in enumerate(cat_ids)}

    per_image: dict[int, dict[str, list[Any]]] = {}
    order: list[int] = []
    info: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(images):
        img = _mapping(img, path, f"images[{i}]")
        iid = img.get("id")
        if isinstance(iid, bool) or not isinstance(iid, int):
            _fail(path, f"images[{i}].id", iid, "an integer")
        if iid in info:
            _fail(path, f"images[{i}].id", iid, "ids that are unique")
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            _fail(path, f"images[{i}].file_name", name, "a non-empty string")
        info[iid] = img
        order.append(iid)
        per_image[iid] = {
            "boxes": [],
            "classes": [],
            "ignore": [],
            "ann_ids": [],
            "tracks": [],
            "visible": [],
        }

    for i, ann in enumerate(annotations):
        ann = _mapping(ann, path, f"annotations[{i}]")
        iid = ann.get("image_id")
        if isinstance(iid, bool) or not isinstance(iid, int) or iid not in per_image:
            _fail(path, f"annotations[{i}].image_id", iid, "the id of an entry of 'images'")
        cid = ann.get("category_id")
        if isinstance(cid, bool) or not isinstance(cid, int) or cid not in cat_index:
            _fail(
                path,
                f"annotations[{i}].category_id",
                cid,
                f"one of the category ids {cat_ids[:10]}",
            )
        box = _xywh(ann.get("bbox"), path, f"annotations[{i}].bbox")
        slot = per_image[iid]
        if ann.get("iscrowd", 0) or ann.get("ignore", 0):
            slot["ignore"].append(box)
            continue
        slot["boxes"].append(box)
        slot["classes"].append(cat_index[cid])
        slot["ann_ids"].append(ann.get("id", -1))
        track = ann.get("track_id", -1)
        if isinstance(track, bool) or not isinstance(track, int):
            _fail(path, f"annotations[{i}].track_id", track, "an integer")
        slot["tracks"].append(track)
        vis = ann.get("visible_fraction")
        slot["visible"].append(float(vis) if isinstance(vis, (int, float)) else math.nan)

    samples = []
    for i, iid in zip(range(len(order)), order):
        img = info[iid]
        image_path = root / img["file_name"]
        if "width" in img or "height" in img:
            width = _positive_int(img.get("width"), path, f"images[{i}].width")
            height = _positive_int(img.get("height"), path, f"images[{i}].height")
        else:
            width, height = image_size(image_path)
        slot = per_image[iid]
        meta = {k: v for k, v in img.items() if k not in ("id", "width", "height")}
        meta["annotation_ids"] = np.asarray(slot["ann_ids"], np.int64)
        meta["track_ids"] = np.asarray(slot["tracks"], np.int64)
        meta["visible_fraction"] = np.asarray(slot["visible"], np.float32)
        samples.append(
            Sample(
                image_path,
                None,
                width,
                height,
                slot["boxes"],
                slot["classes"],
                slot["ignore"],
                iid,
                meta,
            )
        )
    return Dataset(samples, [cat_names[c] for c in cat_ids], cat_ids, name=str(path))


# ----------------------------------------------------------------------------- PANDA


def _panda_rect(value: Any, width: int, height: int, source: Path, where: str) -> list[float]:
    rect = _mapping(value, source, where)
    corners = []
    for key in ("tl", "br"):
        pt = _mapping(rect.get(key), source, f"{where}.{key}")
        corners += [
            _number(pt.get("x"), source, f"{where}.{key}.x"),
            _number(pt.get("y"), source, f"{where}.{key}.y"),
        ]
    x1, y1, x2, y2 = corners
    if x2 < x1 or y2 < y1:
        _fail(source, where, value, "'tl' above and left of 'br'")
    return [x1 * width, y1 * height, x2 * width, y2 * height]


def load_panda(
    json_path: str | Path,
    image_root: str | Path | None = None,
    box: Literal["full", "visible", "head"] = "full",
) -> Dataset:
    """Load PANDA image annotations (one JSON object keyed by image path).

    Each entry has ``"image id"``, ``"image size": {"width", "height"}`` and
    ``"objects list"``. Objects of category ``person`` give one box from
    ``rects[<"full body" | "visible body" | "head">]``, each ``{"tl": {x, y}, "br": {x, y}}``
    in coordinates normalised to [0, 1]; objects of any other category (``crowd``,
    ``fake person``, ``ignore``, ...) give their ``rect`` as an ignore region.

    Because coordinates are normalised, boxes are scaled to the size of the image file when it
    exists (so resized copies, e.g. the 3840x2160 set used by RE-POSE, load correctly) and to
    the annotated ``image size`` otherwise. ``meta`` keeps ``file_name``,
    ``annotated_size`` and all three person boxes (``full_boxes``, ``visible_boxes``,
    ``head_boxes``, NaN rows where a person lacks one).

    Args:
        json_path: the annotation file.
        image_root: folder the keys are relative to (default: the JSON's folder).
        box: which person box becomes ``Sample.boxes``.

    Raises:
        InputError: naming the file, the image key and the field of the first problem.
    """
    path = Path(json_path)
    return _panda_from_dict(read_json(path), path, image_root, box)


def _panda_from_dict(data: Any, path: Path, image_root: str | Path | None, box: str) -> Dataset:
    if box not in _PANDA_BOX_KEYS:
        raise InputError(f"box: {box!r} is not one of {sorted(_PANDA_BOX_KEYS)}")
    data = _mapping(data, path, "top level")
    root = Path(image_root) if image_root is not None else path.parent
    samples = []
    used_ids: set[int] = set()
    for n, (name, entry) in enumerate(data.items()):
        where = f"[{name!r}]"
        entry = _mapping(entry, path, where)
        size = _mapping(entry.get("image size"), path, f"{where}['image size']")
        ann_w = _positive_int(size.get("width"), path, f"{where}['image size'].width")
        ann_h = _positive_int(size.get("height"), path, f"{where}['image size'].height")
        iid = entry.get("image id", n + 1)
        if isinstance(iid, bool) or not isinstance(iid, int) or iid in used_ids:
            _fail(path, f"{where}['image id']", iid, "an integer unique in the file")
        used_ids.add(iid)
        image_path = root / name
        width, height = image_size(image_path) if image_path.is_file() else (ann_w, ann_h)
        objects = _list(entry.get("objects list", []), path, f"{where}['objects list']")
        kinds: dict[str, list[list[float]]] = {k: [] for k in _PANDA_BOX_KEYS}
        ignore = []
        for k, obj in enumerate(objects):
            ow = f"{where}['objects list'][{k}]"
            obj = _mapping(obj, path, ow)
            category = obj.get("category")
            if not isinstance(category, str):
                _fail(path, f"{ow}.category", category, "a string")
            if category == "person":
                rects = _mapping(obj.get("rects"), path, f"{ow}.rects")
                if _PANDA_BOX_KEYS[box] not in rects:
                    _fail(path, f"{ow}.rects", sorted(rects), f"a '{_PANDA_BOX_KEYS[box]}' rect")
                for kind, key in _PANDA_BOX_KEYS.items():
                    if key in rects:
                        r = _panda_rect(rects[key], width, height, path, f"{ow}.rects['{key}']")
                    else:
                        r = [math.nan] * 4
                    kinds[kind].append(r)
            else:
                if "rect" not in obj:
                    _fail(path, f"{ow}.rect", None, f"a rect for category '{category}'")
                ignore.append(_panda_rect(obj["rect"], width, height, path, f"{ow}.rect"))
        meta = {
            "file_name": name,
            "annotated_size": (ann_w, ann_h),
            "full_boxes": _boxes(kinds["full"]),
            "visible_boxes": _boxes(kinds["visible"]),
            "head_boxes": _boxes(kinds["head"]),
        }
        chosen = kinds[box]
        samples.append(
            Sample(image_path, None, width, height, chosen, [0] * len(chosen), ignore, iid, meta)
        )
    return Dataset(samples, ["person"], [1], name=str(path))


# ----------------------------------------------------------------------------- text formats


def _read_rows(path: Path, min_fields: int, what: str) -> list[tuple[int, list[float]]]:
    """Comma-separated numeric rows with their line numbers; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the annotation file ({exc})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if parts and parts[-1] == "":  # some VisDrone files end each line with a comma
            parts = parts[:-1]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InputError(
                f"{path}:{lineno}: {line[:60]!r}: expected {what} (comma-separated numbers)"
            ) from None
        if len(values) < min_fields or not all(math.isfinite(v) for v in values):
            raise InputError(
                f"{path}:{lineno}: {line[:60]!r}: expected {what} ({min_fields} finite numbers)"
            )
        rows.append((lineno, values))
    return rows


def _find_image(image_dir: Path, stem: str) -> Path | None:
    for ext in (".jpg", ".jpeg", ".png", ".JPG", ".PNG"):
        cand = image_dir / f"{stem}{ext}"
        if cand.is_file():
            return cand
    return None


def load_visdrone(ann_dir: str | Path, image_dir: str | Path, persons_only: bool = True) -> Dataset:
    """Load VisDrone-DET ground truth (one ``.txt`` per image, same stem as the image).

    Each line is ``x, y, w, h, score, category, truncation, occlusion`` in pixels. Mapping:

    - category 0 (ignored regions), category 11 (others) and any box with score 0 (marked
      "not evaluated") become ignore regions;
    - ``persons_only=True`` (default): categories 1 (pedestrian) and 2 (people) become class 0
      ``person``; vehicles (3..10) are dropped;
    - ``persons_only=False``: category k in 1..10 becomes class k-1 named after
      :data:`VISDRONE_CATEGORIES`.

    Image sizes come from the image headers. ``meta`` has ``file_name``, per-box
    ``truncation``, ``occlusion`` and ``visdrone_category``.

    Raises:
        InputError: a folder or an image is missing, or a line is malformed (file and line named).
    """
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    if not ann_dir.is_dir():
        raise InputError(f"{ann_dir}: annotation folder not found")
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder not found")
    files = sorted(ann_dir.glob("*.txt"))
    if not files:
        raise InputError(f"{ann_dir}: no .txt annotation files")
    samples = []
    for n, txt in enumerate(files):
        image_path = _find_image(image_dir, txt.stem)
        if image_path is None:
            raise InputError(f"{txt}: its image {image_dir / txt.stem}.jpg is missing")
        width, height = image_size(image_path)
        boxes, classes, ignore, trunc, occl, cats = [], [], [], [], [], []
        for lineno, v in _read_rows(txt, 8, "x,y,w,h,score,category,truncation,occlusion"):
            x, y, w, h, score, cat = v[:6]
            if w < 0 or h < 0:
                raise InputError(f"{txt}:{lineno}: negative box size w={w}, h={h}")
            cat_i = int(cat)
            if cat_i != cat or not 0 <= cat_i <= 11:
                raise InputError(f"{txt}:{lineno}: category {cat} is not an integer in 0..11")
            xyxy = [x, y, x + w, y + h]
            if cat_i in (0, 11) or score == 0:
                ignore.append(xyxy)
                continue
            if persons_only:
                if cat_i not in (1, 2):
                    continue
                classes.append(0)
            else:
                classes.append(cat_i - 1)
            boxes.append(xyxy)
            trunc.append(int(v[6]))
            occl.append(int(v[7]))
            cats.append(cat_i)
        meta = {
            "file_name": image_path.name,
            "truncation": np.asarray(trunc, np.int64),
            "occlusion": np.asarray(occl, np.int64),
            "visdrone_category": np.asarray(cats, np.int64),
        }
        samples.append(Sample(image_path, None, width, height, boxes, classes, ignore, n + 1, meta))
    if persons_only:
        return Dataset(samples, ["person"], [1], name=str(ann_dir))
    return Dataset(samples, VISDRONE_CATEGORIES, list(range(1, 11)), name=str(ann_dir))


def _seqinfo(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid seqinfo.ini ({exc})") from None
    if "Sequence" not in parser:
        raise InputError(f"{path}: section [Sequence] is missing")
    return dict(parser["Sequence"])


def load_mot(gt_txt: str | Path, image_dir: str | Path | None = None) -> Dataset:
    """Load MOT17-style tracking ground truth as per-frame detection samples.

    ``gt.txt`` lines are ``frame, id, x, y, w, h, conf, class, visibility``. Mapping:

    - class 1 (pedestrian) with conf 1 becomes class 0 ``person``;
    - class 1 with conf 0, and classes 2, 7, 8, 12 (person on vehicle, static person,
      distractor, reflection; see :data:`MOT_IGNORE_CLASSES`) become ignore regions;
    - vehicles and occluders (3, 4, 5, 6, 9, 10, 11) are dropped: they are not people, so a
      detection on them stays a false positive.

    MOT boxes are 1-based (the top-left pixel is (1, 1)); they are shifted by -1 to the 0-based
    pixel grid used everywhere else. The sequence's ``seqinfo.ini`` (next to the ``gt`` folder)
    gives the image folder, extension, size and length; without it the images in
    ``image_dir`` are listed and the first one's header gives the size. Every frame of the
    sequence is a sample (frames without people included); ``image_id`` is the frame number.
    ``meta`` has ``file_name``, ``frame``, ``sequence`` and per-box ``track_ids`` and
    ``visibility``.

    Raises:
        InputError: the file is missing or malformed (file and line named), or the image size
            cannot be found.
    """
    gt = Path(gt_txt)
    rows = _read_rows(gt, 9, "frame,id,x,y,w,h,conf,class,visibility")
    seq_dir = gt.parent.parent
    info: dict[str, str] = {}
    if (seq_dir / "seqinfo.ini").is_file():
        info = _seqinfo(seq_dir / "seqinfo.ini")
    img_dir = Path(image_dir) if image_dir is not None else seq_dir / info.get("imdir", "img1")
    ext = info.get("imext", ".jpg")
    width = height = None
    if "imwidth" in info and "imheight" in info:
        try:
            width, height = int(info["imwidth"]), int(info["imheight"])
        except ValueError:
            raise InputError(
                f"{seq_dir / 'seqinfo.ini'}: imWidth/imHeight {info['imwidth']!r}, "
                f"{info['imheight']!r}: expected integers"
            ) from None
    listed = (
        sorted(p for p in img_dir.glob(f"*{ext}") if p.stem.isdigit()) if img_dir.is_dir() else []
    )
    if width is None:
        if not listed:
            raise InputError(
                f"{gt}: image size unknown: no seqinfo.ini in {seq_dir} and no images in {img_dir}"
            )
        width, height = image_size(listed[0])
    assert height is not None

    by_frame: dict[int, dict[str, list[Any]]] = {}
    for lineno, v in rows:
        frame, tid, x, y, w, h, conf, cls, vis = v[:9]
        if frame != int(frame) or frame < 1:
            raise InputError(f"{gt}:{lineno}: frame {frame} is not a positive integer")
        if w < 0 or h < 0:
            raise InputError(f"{gt}:{lineno}: negative box size w={w}, h={h}")
        slot = by_frame.setdefault(int(frame), {"boxes": [], "ignore": [], "ids": [], "vis": []})
        xyxy = [x - 1.0, y - 1.0, x - 1.0 + w, y - 1.0 + h]
        cls_i = int(cls)
        if cls_i == 1 and conf != 0:
            slot["boxes"].append(xyxy)
            slot["ids"].append(int(tid))
            slot["vis"].append(vis)
        elif cls_i == 1 or cls_i in MOT_IGNORE_CLASSES:
            slot["ignore"].append(xyxy)

    if "seqlength" in info and info["seqlength"].isdigit():
        frames = list(range(1, int(info["seqlength"]) + 1))
    elif listed:
        frames = [int(p.stem) for p in listed]
    else:
        frames = sorted(by_frame)
    names = {int(p.stem): p.name for p in listed}
    seq_name = info.get("name", seq_dir.name)
    samples = []
    for f in frames:
        slot = by_frame.get(f, {"boxes": [], "ignore": [], "ids": [], "vis": []})
        file_name = names.get(f, f"{f:06d}{ext}")
        meta = {
            "file_name": file_name,
            "frame": f,
            "sequence": seq_name,
            "track_ids": np.asarray(slot["ids"], np.int64),
            "visibility": np.asarray(slot["vis"], np.float32),
        }
        samples.append(
            Sample(
                img_dir / file_name,
                None,
                width,
                height,
                slot["boxes"],
                [0] * len(slot["boxes"]),
                slot["ignore"],
                f,
                meta,
            )
        )
    return Dataset(samples, ["person"], [1], name=str(gt))


# ----------------------------------------------------------------------------- dispatch


def load_dataset(path: str | Path, image_root: str | Path | None = None) -> Dataset:
    """Load a dataset, recognising its format.

    Accepted:

    - a COCO JSON file (top-level ``images`` list), or a folder holding ``annotations.json``
      (the layout :func:`edgerl.vision.synth.write_dataset` writes);
    - a PANDA JSON file (an object whose entries have ``image size`` / ``objects list``);
    - a MOT17 ``gt.txt``, or a sequence folder holding ``gt/gt.txt``;
    - a VisDrone-DET folder holding ``annotations/`` and ``images/``.

    Args:
        path: file or folder.
        image_root: image folder for JSON formats (default: the JSON's folder).

    Raises:
        InputError: the path is missing or its format is not recognised.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "annotations.json").is_file():
            return load_dataset(p / "annotations.json", image_root)
        if (p / "gt" / "gt.txt").is_file():
            return load_mot(p / "gt" / "gt.txt")
        if (p / "annotations").is_dir() and (p / "images").is_dir():
            return load_visdrone(p / "annotations", p / "images")
        raise InputError(
            f"{p}: dataset format not recognised; expected annotations.json (COCO), gt/gt.txt "
            f"(MOT) or annotations/ + images/ (VisDrone-DET)"
        )
    if not p.exists():
        raise InputError(f"{p}: dataset not found")
    if p.suffix.lower() == ".json":
        data = read_json(p)
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            return _coco_from_dict(data, p, image_root)
        if (
            isinstance(data, dict)
            and data
            and all(
                isinstance(v, dict) and ("image size" in v or "objects list" in v)
                for v in data.values()
            )
        ):
            return _panda_from_dict(data, p, image_root, "full")
        raise InputError(
            f"{p}: JSON is neither COCO (top-level 'images' list) nor PANDA (entries with "
            f"'image size' and 'objects list')"
        )
    if p.suffix.lower() == ".txt":
        return load_mot(p)
    raise InputError(f"{p}: unsupported annotation file (expected .json or MOT gt.txt)")
