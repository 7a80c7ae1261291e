"""ONNX Runtime backend for YOLOv8 and YOLOX exports.

Two output layouts are understood (see ``shared/REFERENCES.md``, "Detector model formats"):

* **YOLOv8** (Ultralytics export): input RGB float32 in [0, 1], letterboxed with grey (114)
  padding centred on both sides; output ``[B, 4 + C, N]`` holding (cx, cy, w, h) in input pixels
  followed by C per-class scores that are already sigmoid (no objectness).
* **YOLOX** (Megvii export): input BGR float32 in 0..255 without normalisation, letterboxed with
  grey (114) padding on the bottom/right only (YOLOX's ``preproc`` pastes the resized image at the
  top-left corner); output ``[B, N, 5 + C]`` holding raw per-anchor regressions that still need
  the grid/stride decode, then objectness and C class scores.

For both, ``N = sum((H / s) * (W / s) for s in (8, 16, 32))``, so the layout is told apart by the
axis that carries N. Both families have a largest stride of 32, so input sizes must be multiples
of 32. A model exported at a static size is made size-agnostic by turning its input H/W into
symbolic dims; whether the graph then really runs at the requested size is checked by running it
once, because some exports bake size-dependent constants (e.g. YOLOv8's anchor grid) into the
graph.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.detectors.base import COCO_CLASS_NAMES, Detector, check_images, now_ms

Layout = Literal["auto", "yolov8", "yolox"]

#: Strides of the three detection heads shared by YOLOv8 and YOLOX.
STRIDES: tuple[int, ...] = (8, 16, 32)
#: At most this many candidates (highest scores) enter NMS, as in the upstream post-processing.
MAX_NMS_CANDIDATES = 30000
_LAYOUTS = ("auto", "yolov8", "yolox")


def _as_hw(size: int | Sequence[int], what: str = "size") -> tuple[int, int]:
    """Normalise ``size`` (an int or ``(height, width)``) to a pair of positive ints."""
    if isinstance(size, (int, np.integer)):
        hw = (int(size), int(size))
    else:
        vals = list(size)
        if len(vals) != 2:
            raise InputError(f"{what} must be an int or (height, width), got {size!r}")
        hw = (int(vals[0]), int(vals[1]))
    if hw[0] <= 0 or hw[1] <= 0:
        raise InputError(f"{what} must be positive, got {size!r}")
    return hw


def letterbox(
    image: np.ndarray,
    size: int | tuple[int, int],
    pad_value: int = 114,
    center: bool = True,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize an image to fit ``size`` keeping its aspect ratio, and pad the rest.

    Args:
        image: Array (H, W) or (H, W, C) of any dtype OpenCV can resize.
        size: Target size, an int (square) or ``(height, width)``.
        pad_value: Value written into the padding.
        center: Split the padding evenly between both sides (YOLOv8; the odd pixel goes to the
            bottom/right). When False all padding goes to the bottom/right (YOLOX).

    Returns:
        ``(padded, scale, (pad_x, pad_y))``: the padded image of shape ``size`` (same dtype and
        channels), the resize factor, and the left/top padding in pixels. A point ``(x, y)`` of
        the original maps to ``(x * scale + pad_x, y * scale + pad_y)``.
    """
    th, tw = _as_hw(size)
    h, w = image.shape[:2]
    scale = min(th / h, tw / w)
    nh = min(th, max(1, round(h * scale)))
    nw = min(tw, max(1, round(w * scale)))
    if (nh, nw) != (h, w):
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if image.ndim == 3 and resized.ndim == 2:  # OpenCV drops a trailing channel of 1
            resized = resized[:, :, None]
    else:
        resized = image
    pad_x, pad_y = ((tw - nw) // 2, (th - nh) // 2) if center else (0, 0)
    out = np.full((th, tw) + image.shape[2:], pad_value, dtype=image.dtype)
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
    return out, float(scale), (int(pad_x), int(pad_y))


def preprocess(
    image: np.ndarray, input_hw: tuple[int, int], layout: Literal["yolov8", "yolox"]
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Turn one RGB uint8 image into the network input of a YOLOv8 or YOLOX export.

    YOLOv8: RGB scaled to [0, 1], letterbox padding (114) centred. YOLOX: BGR kept in 0..255,
    padding (114) on the bottom/right only, as YOLOX's own ``preproc`` does.

    Args:
        image: RGB uint8 array (H, W, 3).
        input_hw: Network input ``(height, width)``.
        layout: ``"yolov8"`` or ``"yolox"``.

    Returns:
        ``(chw, scale, (pad_x, pad_y))``: float32 array (3, height, width) and the letterbox
        geometry (see :func:`letterbox`).
    """
    if layout == "yolox":
        # Resize first and swap channels on the small result (the grey pad is the same in all).
        padded, scale, pad = letterbox(image, input_hw, 114, center=False)
        return padded.transpose(2, 0, 1)[::-1].astype(np.float32), scale, pad
    if layout == "yolov8":
        padded, scale, pad = letterbox(image, input_hw, 114, center=True)
        return padded.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0), scale, pad
    raise ValueError(f"preprocess: unknown layout {layout!r}")


def unletterbox_boxes(
    boxes: np.ndarray, scale: float, pad: tuple[int, int], image_hw: tuple[int, int]
) -> np.ndarray:
    """Map xyxy boxes from letterboxed input pixels back to the original image and clip them.

    Args:
        boxes: Array (K, 4) xyxy in network-input pixels.
        scale: The ``scale`` returned by :func:`letterbox`.
        pad: The ``(pad_x, pad_y)`` returned by :func:`letterbox`.
        image_hw: ``(height, width)`` of the original image.

    Returns:
        float32 array (K, 4) xyxy in original-image pixels, clipped to the image.
    """
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - pad[0]) / scale
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[1]) / scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, image_hw[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, image_hw[0])
    return out


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1).astype(np.float32)


def _squeeze_batch(output: np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(output)
    if out.ndim == 3:
        if out.shape[0] != 1:
            raise ValueError(f"{name}: expected one image's output, got batch of {out.shape[0]}")
        out = out[0]
    if out.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D (or [1, ...] 3-D) array, got shape {np.shape(output)}"
        )
    return out


def _select(
    scores_all: np.ndarray, conf_threshold: float, classes: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best class per anchor, then the confidence and class filters.

    The class filter is applied after the arg-max (an anchor whose best class is filtered out
    is dropped, not demoted to its best allowed class), as upstream YOLO post-processing does.

    Returns:
        ``(kept_anchor_indices, scores, class_ids)``.
    """
    cls = scores_all.argmax(axis=1)
    score = scores_all[np.arange(len(cls)), cls]
    keep = score >= conf_threshold
    if classes is not None:
        keep &= np.isin(cls, np.asarray(list(classes), dtype=np.int64))
    idx = np.flatnonzero(keep)
    return idx, score[idx].astype(np.float32), cls[idx].astype(np.int64)


def decode_yolov8(
    output: np.ndarray, conf_threshold: float = 0.0, classes: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's YOLOv8 output into scored candidate boxes (before NMS).

    Args:
        output: Array (4 + C, N) or (1, 4 + C, N): rows 0..3 are (cx, cy, w, h) in network-input
            pixels, rows 4.. are per-class scores in [0, 1].
        conf_threshold: Keep anchors whose best class score is >= this.
        classes: Keep only these class ids (None keeps all).

    Returns:
        ``(boxes, scores, class_ids)``: float32 (K, 4) xyxy in network-input pixels, float32
        (K,), int64 (K,).
    """
    out = _squeeze_batch(output, "decode_yolov8")
    if out.shape[0] < 5:
        raise ValueError(f"decode_yolov8: expected 4 + C rows with C >= 1, got shape {out.shape}")
    idx, score, cls = _select(out[4:].T, conf_threshold, classes)
    boxes = _cxcywh_to_xyxy(out[:4, idx].T.astype(np.float32))
    return boxes, score, cls


def yolox_grid(
    input_hw: tuple[int, int], strides: Sequence[int] = STRIDES
) -> tuple[np.ndarray, np.ndarray]:
    """Anchor-cell coordinates and strides in YOLOX's output order.

    Anchors run over the strides in order, and within one stride row by row with x fastest.

    Args:
        input_hw: Network input ``(height, width)``.
        strides: Head strides.

    Returns:
        ``(grid, stride)``: float32 (N, 2) cell (x, y) indices and float32 (N, 1) strides.
    """
    grids, strs = [], []
    for s in strides:
        gh, gw = input_hw[0] // s, input_hw[1] // s
        ys, xs = np.meshgrid(
            np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij"
        )
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strs.append(np.full((gh * gw, 1), s, dtype=np.float32))
    return np.concatenate(grids), np.concatenate(strs)


def num_anchors(input_hw: tuple[int, int], strides: Sequence[int] = STRIDES) -> int:
    """Number of anchors N of a YOLOv8/YOLOX head at this input size."""
    return int(sum((input_hw[0] // s) * (input_hw[1] // s) for s in strides))


def _yolox_is_decoded(xy: np.ndarray, grid: np.ndarray, stride: np.ndarray) -> bool:
    """Tell a decoded YOLOX output from a raw one by where its centres lie.

    Decoded centres sit near their cell centres ``(grid + 0.5) * stride`` (pixels, up to the
    input size); raw offsets are O(1) numbers, hundreds of pixels away from most cell centres.
    """
    centres = (grid + 0.5) * stride
    return float(np.median(np.abs(xy - centres))) < float(np.median(np.abs(xy)))


def decode_yolox(
    output: np.ndarray,
    input_hw: tuple[int, int],
    strides: Sequence[int] = STRIDES,
    conf_threshold: float = 0.0,
    classes: Sequence[int] | None = None,
    decoded: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's YOLOX output into scored candidate boxes (before NMS).

    Raw outputs are decoded per anchor as ``xy = (raw_xy + grid) * stride`` and
    ``wh = exp(raw_wh) * stride``; the score of a class is ``objectness * class_score``.
    Objectness/class values outside [0, 1] are taken as logits and passed through a sigmoid.

    Args:
        output: Array (N, 5 + C) or (1, N, 5 + C).
        input_hw: Network input ``(height, width)`` the output was produced at.
        strides: Head strides, in output order.
        conf_threshold: Keep anchors whose best ``obj * cls`` is >= this.
        classes: Keep only these class ids (None keeps all).
        decoded: Whether the export already applied the grid/stride decode (boxes as cx, cy, w,
            h in pixels). None detects it from the values.

    Returns:
        ``(boxes, scores, class_ids)``: float32 (K, 4) xyxy in network-input pixels, float32
        (K,), int64 (K,).
    """
    out = _squeeze_batch(output, "decode_yolox")
    grid, stride = yolox_grid(input_hw, strides)
    if out.shape[0] != len(grid) or out.shape[1] < 6:
        raise ValueError(
            f"decode_yolox: expected shape ({len(grid)}, 5 + C) for input {input_hw[0]}x{input_hw[1]} "
            f"and strides {tuple(strides)}, got {out.shape}"
        )
    out = out.astype(np.float32, copy=False)
    probs = out[:, 4:]
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        probs = 1.0 / (1.0 + np.exp(-probs))
    idx, score, cls = _select(probs[:, :1] * probs[:, 1:], conf_threshold, classes)
    if decoded is None:
        decoded = _yolox_is_decoded(out[:, :2], grid, stride)
    reg = out[idx, :4]
    if not decoded:
        s = stride[idx]
        reg = np.concatenate([(reg[:, :2] + grid[idx]) * s, np.exp(reg[:, 2:4]) * s], axis=1)
    return _cxcywh_to_xyxy(reg), score, cls


def nms_class_aware(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Greedy per-class non-maximum suppression.

    Boxes of different classes never suppress each other: each class is shifted to its own
    region of the plane before one class-agnostic pass.

    Args:
        boxes: (K, 4) xyxy.
        scores: (K,).
        classes: (K,) integer class ids.
        iou_threshold: A box is dropped when its IoU with a kept higher-scoring box of the same
            class exceeds this.
        max_keep: Stop after this many boxes are kept (they are the same as the first
            ``max_keep`` of a full pass, since boxes are visited by decreasing score).

    Returns:
        int64 indices of kept boxes, by decreasing score.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    shift = (np.abs(b).max() + 1.0) * 2.0
    b = b + (np.asarray(classes, dtype=np.float64) * shift)[:, None]
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    order = np.argsort(-np.asarray(scores), kind="stable")
    limit = n if max_keep is None else max_keep
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = (np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])).clip(0)
        ih = (np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])).clip(0)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _load_model(path: Path):  # -> onnx.ModelProto
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for corrupt input
        raise InputError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})"
        ) from exc
    if not model.graph.node or not model.graph.output:
        raise InputError(f"{path}: not a readable ONNX model (empty graph)")
    return model


def _graph_input(model, path: Path):  # -> onnx.ValueInfoProto
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise InputError(f"{path}: expected a detector with one image input, found inputs {names}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or (dims[1].HasField("dim_value") and dims[1].dim_value != 3):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        raise InputError(
            f"{path}: input {inputs[0].name!r} has shape {shape}, expected [B, 3, H, W]"
        )
    return inputs[0]


def _static_dim(dim) -> int | None:
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _make_hw_symbolic(model, input_name: str) -> None:
    """Turn the image input's H and W into symbolic dims, in place.

    Output dims past the batch axis become symbolic too (N depends on the size), and stored
    intermediate shapes are dropped because they describe the old size.
    """
    for inp in model.graph.input:
        if inp.name == input_name:
            dims = inp.type.tensor_type.shape.dim
            dims[2].dim_param = "height"
            dims[3].dim_param = "width"
    for out in model.graph.output:
        for k, d in enumerate(out.type.tensor_type.shape.dim):
            if k > 0:
                d.dim_param = f"{out.name}_dim{k}"
    del model.graph.value_info[:]


def _class_names_from_metadata(model) -> list[str] | None:
    for prop in model.metadata_props:
        if prop.key == "names":
            try:
                names = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, (list, tuple)):
                return [str(n) for n in names]
    return None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OnnxDetector(Detector):
    """A YOLOv8 or YOLOX detector exported to ONNX, run with ONNX Runtime.

    Paper: YOLOX (Ge et al., 2021), YOLOv8 (Ultralytics, 2023).
    Code: Megvii-BaseDetection/YOLOX ``yolox/data/data_augment.py`` (``preproc``) and
    ``yolox/models/yolo_head.py`` (``decode_outputs``); ultralytics ``LetterBox`` and
    ``non_max_suppression``.

    The model is loaded (and, where needed, made size-agnostic) in the constructor and run once
    on a blank image to check that it works at ``input_size`` and to read its output layout, so
    any problem with the file surfaces there as an :class:`InputError`.

    Args:
        path: The ``.onnx`` file.
        input_size: Network input, an int (square) or ``(height, width)``, multiples of 32.
            None uses the model's static size (or 640 when the model has none).
        conf_threshold: Keep detections whose score is >= this.
        iou_threshold: Per-class NMS IoU threshold.
        classes: Keep only these class ids (None keeps all).
        max_detections: At most this many detections per image (highest scores).
        intra_op_threads: ONNX Runtime intra-op threads (inter-op is 1, execution sequential).
        layout: ``"yolov8"``, ``"yolox"`` or ``"auto"`` (read from the output shape).
        batch_size: Images stacked per run when the model's batch dim is dynamic; a static batch
            dim B is used as is (the last group is padded); ignored for B = 1.
        class_names: Names of the class ids; None reads them from the model's metadata, or uses
            the COCO names for an 80-class model.
        providers: ONNX Runtime execution providers (default CPU only).

    Raises:
        InputError: The file is missing or not a detector of a known layout, or it cannot run at
            ``input_size`` (the message names the sizes it accepts), or an argument is invalid.
    """

    def __init__(
        self,
        path: str | Path,
        input_size: int | tuple[int, int] | None = None,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        classes: Sequence[int] | None = None,
        max_detections: int = 300,
        intra_op_threads: int = 1,
        layout: Layout = "auto",
        batch_size: int = 8,
        class_names: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.max_detections = int(max_detections)
        self.intra_op_threads = int(intra_op_threads)
        self._check_args(layout, batch_size)

        if not self.path.is_file():
            raise InputError(f"detector model {self.path} does not exist (expected an .onnx file)")
        model = _load_model(self.path)
        inp = _graph_input(model, self.path)
        dims = inp.type.tensor_type.shape.dim
        static_hw = (_static_dim(dims[2]), _static_dim(dims[3]))
        self._static_hw = static_hw if None not in static_hw else None
        if input_size is None:
            input_size = self._static_hw or _imgsz_from_metadata(model) or 640
        self._input_hw = _as_hw(input_size, "input_size")
        h, w = self._input_hw
        if h % STRIDES[-1] or w % STRIDES[-1]:
            raise InputError(
                f"{self.path} cannot run at input size {h}x{w}: sizes must be multiples of {STRIDES[-1]}"
            )
        self._input_name = inp.name
        self._resized = self._static_hw is not None and self._static_hw != self._input_hw
        if self._resized:
            _make_hw_symbolic(model, inp.name)
        batch_dim = _static_dim(dims[0])
        self._session = self._make_session(model.SerializeToString(), providers)
        self._output_name = self._session.get_outputs()[0].name

        if batch_dim is not None:
            self._batch, self._pad_batch = batch_dim, True
        else:
            self._batch, self._pad_batch = max(1, int(batch_size)), False
        out_shape = self._probe()
        self.layout, self.num_classes = self._read_layout(out_shape, layout)
        if self.classes is not None:
            bad = [c for c in self.classes if not 0 <= c < self.num_classes]
            if bad:
                raise InputError(
                    f"classes {bad} are out of range for {self.path} ({self.num_classes} classes)"
                )
        if class_names is not None and len(class_names) != self.num_classes:
            raise InputError(
                f"class_names has {len(class_names)} names but {self.path} has {self.num_classes} classes"
            )
        names = list(class_names) if class_names is not None else _class_names_from_metadata(model)
        if names is None or len(names) != self.num_classes:
            names = (
                list(COCO_CLASS_NAMES)
                if self.num_classes == 80
                else [f"class{i}" for i in range(self.num_classes)]
            )
        self._class_names = names

    # -- construction helpers ---------------------------------------------------------------

    def _check_args(self, layout: str, batch_size: int) -> None:
        if not 0.0 <= self.conf_threshold <= 1.0:
            raise InputError(f"conf_threshold must be in [0, 1], got {self.conf_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise InputError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_detections < 1:
            raise InputError(f"max_detections must be >= 1, got {self.max_detections}")
        if self.intra_op_threads < 1:
            raise InputError(f"intra_op_threads must be >= 1, got {self.intra_op_threads}")
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if layout not in _LAYOUTS:
            raise InputError(f"layout must be one of {_LAYOUTS}, got {layout!r}")

    def _accepted_sizes(self) -> str:
        if self._static_hw is not None and self._resized:
            sh, sw = self._static_hw
            return f"it accepts only its static size {sh}x{sw}"
        return f"sizes must be multiples of {STRIDES[-1]}"

    def _make_session(self, model_bytes: bytes, providers: Sequence[str] | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(
                model_bytes,
                sess_options=opts,
                providers=list(providers or ["CPUExecutionProvider"]),
            )
        except Exception as exc:
            raise InputError(f"{self.path}: ONNX Runtime cannot load it ({_short(exc)})") from exc

    def _run(self, batch: np.ndarray, quiet: bool = False) -> np.ndarray:
        opts = None
        if quiet:  # a failing probe is reported through InputError, not ONNX Runtime's log
            import onnxruntime as ort

            opts = ort.RunOptions()
            opts.log_severity_level = 4
        return self._session.run([self._output_name], {self._input_name: batch}, opts)[0]

    def _try_run(self, n: int) -> tuple[tuple[int, ...] | None, Exception | None]:
        """Run a blank batch of ``n`` images; return the output shape or the error."""
        h, w = self._input_hw
        try:
            return tuple(self._run(np.zeros((n, 3, h, w), np.float32), quiet=True).shape), None
        except Exception as exc:  # noqa: BLE001 -- ONNX Runtime's error types share no base but Exception
            return None, exc

    def _probe(self) -> tuple[int, ...]:
        """Run a blank batch once; fall back to batch 1 if a 'dynamic' batch dim is not."""
        h, w = self._input_hw
        n = self._batch if self._pad_batch else min(2, self._batch)
        shape, exc = self._try_run(n)
        if shape is None and not self._pad_batch and n > 1:
            shape, _ = self._try_run(1)
            if shape is not None:
                self._batch = 1
        if shape is not None:
            return shape
        if self._resized:
            raise InputError(
                f"{self.path} cannot run at input size {h}x{w}: {self._accepted_sizes()} "
                f"(ONNX Runtime: {_short(exc, 160)})"
            ) from exc
        raise InputError(
            f"{self.path} failed to run at input size {h}x{w} ({_short(exc)})"
        ) from exc

    def _read_layout(self, shape: tuple[int, ...], layout: str) -> tuple[str, int]:
        n = num_anchors(self._input_hw)
        v8 = len(shape) == 3 and shape[2] == n and shape[1] > 4
        yx = len(shape) == 3 and shape[1] == n and shape[2] > 5
        h, w = self._input_hw
        expect = {"yolov8": f"[B, 4+C, {n}]", "yolox": f"[B, {n}, 5+C]"}
        if layout == "auto":
            if v8:
                return "yolov8", shape[1] - 4
            if yx:
                return "yolox", shape[2] - 5
            raise InputError(
                f"{self.path}: output shape {list(shape)} at input {h}x{w} matches neither the YOLOv8 "
                f"layout {expect['yolov8']} nor the YOLOX layout {expect['yolox']}"
            )
        if layout == "yolov8" and v8:
            return "yolov8", shape[1] - 4
        if layout == "yolox" and yx:
            return "yolox", shape[2] - 5
        raise InputError(
            f"{self.path}: output shape {list(shape)} at input {h}x{w} does not match the {layout} "
            f"layout {expect[layout]}"
        )

    # -- Detector interface -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model file's stem, e.g. ``yolox_nano``."""
        return self.path.stem

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input ``(height, width)``."""
        return self._input_hw

    @property
    def class_names(self) -> list[str]:
        """Class names indexed by class id."""
        return list(self._class_names)

    @property
    def batch_size(self) -> int:
        """Images per ONNX Runtime call actually used."""
        return self._batch

    def _postprocess(
        self,
        output: np.ndarray,
        scale: float,
        pad: tuple[int, int],
        image_hw: tuple[int, int],
        input_hw: tuple[int, int] | None = None,
    ) -> Detections:
        if self.layout == "yolox":
            boxes, scores, cls = decode_yolox(
                output, input_hw or self._input_hw, STRIDES, self.conf_threshold, self.classes
            )
        else:
            boxes, scores, cls = decode_yolov8(output, self.conf_threshold, self.classes)
        if len(scores) > MAX_NMS_CANDIDATES:
            top = np.argpartition(-scores, MAX_NMS_CANDIDATES)[:MAX_NMS_CANDIDATES]
            boxes, scores, cls = boxes[top], scores[top], cls[top]
        keep = nms_class_aware(boxes, scores, cls, self.iou_threshold, self.max_detections)
        return Detections(
            unletterbox_boxes(boxes[keep], scale, pad, image_hw), scores[keep], cls[keep]
        )

    @property
    def dynamic_input(self) -> bool:
        """Whether the session accepts any input size (multiples of 32) per call."""
        return self._static_hw is None or self._resized

    def detect_timed(
        self, images: Sequence[np.ndarray], input_hw: tuple[int, int] | None = None
    ) -> tuple[list[Detections], dict[str, float]]:
        """Detect objects and time the stages; see :meth:`Detector.detect_timed`.

        Args:
            images: RGB uint8 images.
            input_hw: network input (height, width) for this call instead of ``input_size``
                (multiples of 32; only for models whose input size is not fixed).
        """
        imgs = check_images(images, self.name)
        timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        results: list[Detections] = []
        if input_hw is not None:
            input_hw = _as_hw(input_hw, "input_hw")
            if input_hw != self._input_hw and not self.dynamic_input:
                raise InputError(
                    f"{self.name}: cannot run at input size {input_hw[0]}x{input_hw[1]}: "
                    f"it accepts only {self._input_hw[0]}x{self._input_hw[1]}"
                )
        run_hw = input_hw or self._input_hw
        h, w = run_hw
        for start in range(0, len(imgs), self._batch):
            group = imgs[start : start + self._batch]
            t0 = now_ms()
            rows = len(group) if not self._pad_batch else self._batch
            batch = np.zeros((rows, 3, h, w), np.float32)
            metas = []
            for k, img in enumerate(group):
                batch[k], scale, pad = preprocess(img, run_hw, self.layout)
                metas.append((scale, pad, img.shape[:2]))
            t1 = now_ms()
            out = self._run(batch)
            t2 = now_ms()
            for k, (scale, pad, hw) in enumerate(metas):
                results.append(self._postprocess(out[k], scale, pad, hw, run_hw))
            t3 = now_ms()
            timings["preprocess"] += t1 - t0
            timings["inference"] += t2 - t1
            timings["postprocess"] += t3 - t2
        timings["total"] = timings["preprocess"] + timings["inference"] + timings["postprocess"]
        return results, timings

    def candidates(
        self,
        images: Sequence[np.ndarray],
        input_hw: tuple[int, int] | None = None,
        max_candidates: int = MAX_NMS_CANDIDATES,
        classes: Sequence[int] | None = None,
    ) -> list[Detections]:
        """Decoded candidate boxes before NMS, in original-image pixels, by decreasing score.

        The same decoding and confidence / class filters as :meth:`detect`, but no NMS, so a
        caller can apply its own candidate cap and NMS afterwards (e.g. one cached pass serving
        several top-k settings). NMS of the first ``k`` candidates with this detector's
        ``iou_threshold`` and at most ``max_detections`` kept gives the boxes :meth:`detect`
        returns when ``MAX_NMS_CANDIDATES = k`` (NMS commutes with the letterbox's uniform
        scale and shift, up to float rounding), once clipped to the image.

        Args:
            images: RGB uint8 images.
            input_hw: Network input (height, width) for this call instead of ``input_size``
                (multiples of 32; only for models whose input size is not fixed).
            max_candidates: Keep at most this many candidates per image (highest scores).
            classes: Keep only these class ids; None applies the detector's own ``classes``.

        Returns:
            One :class:`Detections` per image: boxes (K, 4) float32 xyxy in original-image
            pixels, **not clipped** to the image (a box may reach into the letterbox padding),
            scores float32 non-increasing (ties in anchor order), class ids.

        Raises:
            InputError: Bad images, an input size the model cannot take, ``max_candidates`` < 1
                or a class id out of range.
        """
        imgs = check_images(images, self.name)
        if int(max_candidates) < 1:
            raise InputError(f"max_candidates must be >= 1, got {max_candidates!r}")
        keep_classes = self.classes if classes is None else tuple(int(c) for c in classes)
        if keep_classes is not None:
            bad = [c for c in keep_classes if not 0 <= c < self.num_classes]
            if bad:
                raise InputError(
                    f"classes {bad} are out of range for {self.path} ({self.num_classes} classes)"
                )
        run_hw = self._input_hw if input_hw is None else _as_hw(input_hw, "input_hw")
        if run_hw != self._input_hw and not self.dynamic_input:
            raise InputError(
                f"{self.name}: cannot run at input size {run_hw[0]}x{run_hw[1]}: "
                f"it accepts only {self._input_hw[0]}x{self._input_hw[1]}"
            )
        h, w = run_hw
        results: list[Detections] = []
        for start in range(0, len(imgs), self._batch):
            group = imgs[start : start + self._batch]
            rows = len(group) if not self._pad_batch else self._batch
            batch = np.zeros((rows, 3, h, w), np.float32)
            metas = []
            for k, img in enumerate(group):
                batch[k], scale, pad = preprocess(img, run_hw, self.layout)
                metas.append((scale, pad))
            out = self._run(batch)
            for k, (scale, pad) in enumerate(metas):
                if self.layout == "yolox":
                    boxes, scores, cls = decode_yolox(
                        out[k], run_hw, STRIDES, self.conf_threshold, keep_classes
                    )
                else:
                    boxes, scores, cls = decode_yolov8(out[k], self.conf_threshold, keep_classes)
                order = np.argsort(-scores, kind="stable")[: int(max_candidates)]
                b = boxes[order].astype(np.float32)
                b[:, [0, 2]] = (b[:, [0, 2]] - pad[0]) / scale
                b[:, [1, 3]] = (b[:, [1, 3]] - pad[1]) / scale
                results.append(
                    Detections(b, scores[order].astype(np.float32), cls[order].astype(np.int64))
                )
        return results


def _imgsz_from_metadata(model) -> tuple[int, int] | None:
    """The export size an Ultralytics model records in its metadata (``imgsz``), if any."""
    for prop in model.metadata_props:
        if prop.key == "imgsz":
            try:
                val = ast.literal_eval(prop.value)
                return _as_hw(val if isinstance(val, int) else tuple(val))
            except (ValueError, SyntaxError, TypeError, InputError):
                return None
    return None


def resolve_model(spec: str | Path) -> Path:
    """The ONNX file a detector specification names.

    ``person_n`` / ``person_s`` / ``person_m`` (or ``builtin:n`` ...) name the built-in family;
    anything else is a path to an ``.onnx`` file.

    Raises:
        InputError: unknown name, or a built-in file that is absent.
    """
    text = str(spec)
    size = None
    if text.startswith("builtin:"):
        size = text.split(":", 1)[1]
    elif text.startswith("person_") and not text.endswith(".onnx") and "/" not in text:
        size = text[len("person_") :]
    if size is not None:
        from edgerl.vision.builtin import builtin_model_path

        path = builtin_model_path(size)
        if not path.is_file():
            raise InputError(f"built-in detector {text!r}: {path} is missing (train it with 'edgerl train detector')")
        return path
    path = Path(spec)
    if path.suffix.lower() == ".onnx" or path.is_file():
        return path
    raise InputError(
        f"unknown detector {text!r}: expected person_n, person_s, person_m or a path to an .onnx file "
        "(YOLOv8 or YOLOX export)"
    )


def load_detector(spec: str | Path, **kwargs) -> Detector:
    """Build a detector from a specification string.

    Args:
        spec: a built-in name (``person_n``, ``person_s``, ``person_m``) or a path to an ``.onnx``
            file (YOLOv8 or YOLOX export).
        **kwargs: Passed to the detector's constructor (e.g. ``input_size``, ``conf_threshold``).

    Returns:
        The detector.

    Raises:
        InputError: ``spec`` names no known detector or the file is not usable.
    """
    return OnnxDetector(resolve_model(spec), **kwargs)
