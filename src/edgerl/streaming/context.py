"""Context features of the stream for the contextual bandit (paper 004, section 4.1).

The context ``z`` of a decision is built from the detections of the last processed frame and
two "tiny" learned metrics: the AdaScale-style predicted scale and the switchability class
probabilities. Its length is ``14 + n_classes``: 22 for Argoverse-HD's 8 classes and 44 for
ImageNet-VID's 30, the two sizes given in section 5 of the paper.

Slots of :func:`context_vector` (``C = n_classes``; names from :func:`CONTEXT_NAMES`):

====================  ==========================================================================
``scale_current``     current input scale (shorter side of the detector input, pixels) divided
                      by the shorter side of the original image
``scale_predicted``   the scale regressor's output, normalised the same way; 0 when absent
``count_class_k``     number of detections of class k (k = 0..C-1), raw counts
``conf_mean``         mean detection confidence (0 with no detections)
``conf_std``          population standard deviation of the confidences (0 with < 2 detections)
``count_small``       detections with box area < 32^2 (original-image pixels^2)
``count_medium``      detections with 32^2 <= area < 96^2
``count_large``       detections with area >= 96^2
``extent_x_min``      min of x1 over the detections / image width (clipped to [0, 1])
``extent_x_max``      max of x2 / image width
``extent_y_min``      min of y1 / image height
``extent_y_max``      max of y2 / image height (all four extents 0 with no detections)
``switch_low``        switchability class probabilities (low / medium / high) from
``switch_medium``     :class:`SwitchabilityClassifier`; the paper feeds the classifier's
``switch_high``       probability vector to the agent (appendix D); zeros when absent
====================  ==========================================================================

The bandit's policy may append three *dynamics* slots (:func:`dynamics_features`,
:data:`DYNAMICS_NAMES`): the number of confident detections, their median height and the motion
speed of the objects between the last two detector outputs. The counts above include every
low-score candidate the detector returns (up to its top-k), so they say little about the crowd,
and nothing in the slots above measures motion, which decides how much latency costs.

The extents are the bounding rectangle of all detections, a cheap stand-in for the paper's
crop extents (convex hull of the image patches that overlap a detection, appendix B).

Labels of the two learned metrics:

* **AdaScale** (Chin et al., MLSys 2019; paper 004 section 4.1): the detector runs at every
  scale; the per-object "loss" of ground-truth object g at scale s is ``1 - IoU`` of the
  best-overlapping same-class detection (1 when there is none), boxes in original-image
  pixels. The optimal scale is the one whose ``n`` smallest losses sum lowest, where ``n`` is
  the smallest number of matched objects (loss < 1) over the scales, at least 1 (so a scale that
  finds nothing never ties with one that finds something); ties go to the smallest scale.
* **Switchability** (paper 004, appendix D): every model runs on the image; each model's mean
  IoU (mIoU: mean over the ground-truth objects of the best same-class IoU, 1 for an image
  without objects) is computed and the standard deviation SD of the mIoUs across models is
  bucketed with the dataset's mean mu and standard deviation sigma of SD: low if
  ``SD <= mu - alpha*sigma``, high if ``SD > mu + alpha*sigma``, medium otherwise (alpha = 0.5).

The paper's regressor and classifier read backbone features; the ones here read the cheap
scene statistics of :func:`scene_features` (optionally with :func:`image_statistics`), so they
run without the detector's internals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.utils.seeding import make_rng
from edgerl.vision.boxes import iou_matrix
from edgerl.vision.detections import Detections

__all__ = [
    "CONTEXT_NAMES",
    "DYNAMICS_NAMES",
    "LARGE_AREA_PX2",
    "SCENE_FEATURE_NAMES",
    "SMALL_AREA_PX2",
    "SWITCHABILITY_LEVELS",
    "ScaleRegressor",
    "SwitchabilityClassifier",
    "adascale_labels",
    "context_dim",
    "context_vector",
    "dynamics_features",
    "image_statistics",
    "mean_iou",
    "per_object_losses",
    "scene_features",
    "switchability_labels",
    "switchability_sd",
]

#: COCO area limits (pixels^2): small < 32^2 <= medium < 96^2 <= large.
SMALL_AREA_PX2 = 32.0**2
LARGE_AREA_PX2 = 96.0**2

#: Switchability classes, in the order of their probability slots.
SWITCHABILITY_LEVELS: tuple[str, ...] = ("low", "medium", "high")

_N_FIXED = 14  # context slots that do not depend on the number of classes


def _check_n_classes(n_classes: int) -> int:
    if int(n_classes) < 1:
        raise InputError(f"n_classes must be >= 1, got {n_classes}")
    return int(n_classes)


def SCENE_FEATURE_NAMES(n_classes: int) -> tuple[str, ...]:
    """Names of the :func:`scene_features` slots (``9 + n_classes`` of them)."""
    c = _check_n_classes(n_classes)
    return (
        tuple(f"count_class_{k}" for k in range(c))
        + ("conf_mean", "conf_std", "count_small", "count_medium", "count_large")
        + ("extent_x_min", "extent_x_max", "extent_y_min", "extent_y_max")
    )


def CONTEXT_NAMES(n_classes: int) -> tuple[str, ...]:
    """Names of the :func:`context_vector` slots, in order (``14 + n_classes`` of them)."""
    return (
        ("scale_current", "scale_predicted")
        + SCENE_FEATURE_NAMES(n_classes)
        + tuple(f"switch_{lvl}" for lvl in SWITCHABILITY_LEVELS)
    )


def context_dim(n_classes: int) -> int:
    """Length of the context vector: ``14 + n_classes``."""
    return _N_FIXED + _check_n_classes(n_classes)


def _image_hw(image_hw: Sequence[int]) -> tuple[float, float]:
    try:
        h, w = (float(v) for v in image_hw)
    except (TypeError, ValueError):
        raise InputError(f"image_hw must be (height, width), got {image_hw!r}") from None
    if not (h > 0 and w > 0):
        raise InputError(f"image_hw must be positive, got {tuple(image_hw)}")
    return h, w


def scene_features(dets: Detections, image_hw: Sequence[int], n_classes: int) -> np.ndarray:
    """Scene aggregates of one frame's detections (the middle slots of the context).

    Args:
        dets: Detections with boxes in original-image pixels.
        image_hw: Original image (height, width) in pixels.
        n_classes: Number of classes; class ids must lie in ``[0, n_classes)``.

    Returns:
        float32 array of length ``9 + n_classes``, slots named by :func:`SCENE_FEATURE_NAMES`.

    Raises:
        InputError: A class id is outside ``[0, n_classes)`` or ``image_hw`` is invalid.
    """
    c = _check_n_classes(n_classes)
    h, w = _image_hw(image_hw)
    out = np.zeros(c + 9, dtype=np.float32)
    n = len(dets)
    if n == 0:
        return out
    cls = dets.classes
    lo, hi = int(cls.min()), int(cls.max())
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        raise InputError(f"detection class id {bad} is outside [0, {c}) (n_classes = {c})")
    out[:c] = np.bincount(cls, minlength=c)
    s = dets.scores.astype(np.float64)
    mean = float(s.sum()) / n
    out[c] = mean
    out[c + 1] = float(np.sqrt(np.dot(s - mean, s - mean) / n))
    b = dets.boxes.astype(np.float64)
    area = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    n_small = int(np.count_nonzero(area < SMALL_AREA_PX2))
    n_large = int(np.count_nonzero(area >= LARGE_AREA_PX2))
    out[c + 2 : c + 5] = (n_small, n - n_small - n_large, n_large)
    lo_xy = b[:, :2].min(axis=0)
    hi_xy = b[:, 2:].max(axis=0)
    out[c + 5 : c + 9] = np.clip([lo_xy[0] / w, hi_xy[0] / w, lo_xy[1] / h, hi_xy[1] / h], 0.0, 1.0)
    return out


DYNAMICS_NAMES: tuple[str, ...] = ("count_confident", "height_confident", "speed")
"""Names of the :func:`dynamics_features` slots."""


def dynamics_features(
    last_dets: Detections,
    prev_dets: Detections | None,
    frames_apart: float,
    image_hw: Sequence[int],
    fps: float = 30.0,
    min_score: float = 0.3,
    count_scale: float = 100.0,
    max_speed: float = 5.0,
) -> np.ndarray:
    """Density, object size and motion speed of the scene from the last two detector outputs.

    The counts of :func:`scene_features` include every low-confidence candidate the detector
    returns (up to its top-k), so they follow the top-k more than the crowd. These three slots
    read only the confident detections (score >= ``min_score``):

    * ``count_confident``: their number divided by ``count_scale``;
    * ``height_confident``: their median box height over the image height (0 without any);
    * ``speed``: motion in object heights per second. Each confident box of the last output is
      paired with the confident box of the previous output whose centre is nearest; the
      centre displacement over the last box's height is kept when it is below 2 heights (a
      farther neighbour is another person); the median of the kept ratios, divided by the
      time between the two outputs' input frames (``frames_apart / fps``), clipped to
      ``[0, max_speed]``. 0 without a previous output, without pairs or with
      ``frames_apart <= 0``.

    Args:
        last_dets: Detections of the last processed frame (original-image pixels).
        prev_dets: Detections of the processed frame before it, or None.
        frames_apart: Input frames between the two outputs.
        image_hw: Original image (height, width).
        fps: Frame rate.
        min_score: Confidence of a detection that counts.
        count_scale: Divisor of the count.
        max_speed: Upper clip of the speed (heights per second).

    Returns:
        float32 array ``[count_confident, height_confident, speed]``.
    """
    h, _ = _image_hw(image_hw)
    out = np.zeros(len(DYNAMICS_NAMES), dtype=np.float32)
    cur = last_dets.boxes[last_dets.scores >= min_score].astype(np.float64)
    if len(cur) == 0:
        return out
    hc = np.maximum(cur[:, 3] - cur[:, 1], 1e-6)
    out[0] = len(cur) / float(count_scale)
    out[1] = float(np.median(hc)) / h
    if prev_dets is None or not frames_apart > 0 or not fps > 0:
        return out
    prev = prev_dets.boxes[prev_dets.scores >= min_score].astype(np.float64)
    if len(prev) == 0:
        return out
    cc = 0.5 * (cur[:, :2] + cur[:, 2:])
    cp = 0.5 * (prev[:, :2] + prev[:, 2:])
    d2 = ((cc[:, None, :] - cp[None, :, :]) ** 2).sum(axis=-1)
    ratio = np.sqrt(d2.min(axis=1)) / hc
    ratio = ratio[ratio < 2.0]
    if ratio.size:
        out[2] = min(float(np.median(ratio)) * float(fps) / float(frames_apart), float(max_speed))
    return out


def context_vector(
    last_dets: Detections,
    image_hw: Sequence[int],
    current_scale: float,
    n_classes: int,
    predicted_scale: float | None = None,
    switchability: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """The bandit's context for one decision (slots documented in the module docstring).

    Args:
        last_dets: Detections of the last processed frame, boxes in original-image pixels.
        image_hw: Original image (height, width) in pixels.
        current_scale: Current detector input scale: its shorter side in pixels.
        n_classes: Number of classes of the detector's label space.
        predicted_scale: Output of :meth:`ScaleRegressor.predict` (pixels), or None.
        switchability: Probabilities of the low / medium / high switchability classes
            (:meth:`SwitchabilityClassifier.predict_proba`), or None.

    Returns:
        float32 array of length :func:`context_dim` ``(n_classes)``.
    """
    h, w = _image_hw(image_hw)
    short = min(h, w)
    c = _check_n_classes(n_classes)
    z = np.zeros(_N_FIXED + c, dtype=np.float32)
    if not np.isfinite(current_scale) or current_scale <= 0:
        raise InputError(f"current_scale must be a positive pixel size, got {current_scale!r}")
    z[0] = float(current_scale) / short
    if predicted_scale is not None:
        if not np.isfinite(predicted_scale):
            raise InputError(f"predicted_scale must be finite, got {predicted_scale!r}")
        z[1] = float(predicted_scale) / short
    z[2 : 11 + c] = scene_features(last_dets, (h, w), c)
    if switchability is not None:
        p = np.asarray(switchability, dtype=np.float32).reshape(-1)
        if p.shape[0] != len(SWITCHABILITY_LEVELS) or not np.all(np.isfinite(p)):
            raise InputError(
                f"switchability must hold {len(SWITCHABILITY_LEVELS)} finite probabilities "
                f"({', '.join(SWITCHABILITY_LEVELS)}), got {p.tolist()}"
            )
        z[11 + c :] = p
    return z


def image_statistics(image: np.ndarray, stride: int = 8) -> np.ndarray:
    """Cheap statistics of a strided subsample of an image: gray mean, gray std, edge density.

    Args:
        image: (H, W) or (H, W, 3) array, values 0..255.
        stride: Keep every ``stride``-th row and column.

    Returns:
        float32 array ``[mean / 255, std / 255, mean |horizontal and vertical difference| / 255]``.
    """
    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"image must be (H, W) or (H, W, C), got shape {a.shape}")
    sub = a[:: max(1, int(stride)), :: max(1, int(stride))].astype(np.float32)
    gray = sub.mean(axis=2) if sub.ndim == 3 else sub
    dx = np.abs(np.diff(gray, axis=1)).mean() if gray.shape[1] > 1 else 0.0
    dy = np.abs(np.diff(gray, axis=0)).mean() if gray.shape[0] > 1 else 0.0
    return np.asarray([gray.mean(), gray.std(), 0.5 * (dx + dy)], dtype=np.float32) / 255.0


# --------------------------------------------------------------------------- labels


def per_object_losses(gt_boxes: np.ndarray, gt_classes: np.ndarray, dets: Detections) -> np.ndarray:
    """AdaScale-style foreground loss of each ground-truth object: 1 - best same-class IoU.

    Args:
        gt_boxes: (G, 4) xyxy ground-truth boxes in original-image pixels.
        gt_classes: (G,) class ids.
        dets: Detections at some scale, mapped back to original-image pixels.

    Returns:
        float64 array (G,) in [0, 1]; 1 where no detection of the object's class overlaps it.
        Detections may serve several objects (no one-to-one matching).
    """
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gc = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
    if len(g) != len(gc):
        raise InputError(f"per_object_losses: {len(g)} boxes but {len(gc)} classes")
    if len(g) == 0:
        return np.zeros(0, dtype=np.float64)
    if len(dets) == 0:
        return np.ones(len(g), dtype=np.float64)
    iou = iou_matrix(g, dets.boxes)
    iou = np.where(gc[:, None] == dets.classes[None, :], iou, 0.0)
    return 1.0 - iou.max(axis=1)


def adascale_labels(
    per_scale_losses: np.ndarray | Sequence[Sequence[float]],
    scales_px: Sequence[float] | None = None,
) -> int:
    """Index of the optimal scale of one image (AdaScale's label).

    Args:
        per_scale_losses: (S, G) losses of the G ground-truth objects at each of S scales
            (:func:`per_object_losses`); an object is foreground at a scale when its loss < 1.
        scales_px: The S scales (used to break ties, sums within 1e-9, towards the smallest);
            None breaks ties towards the lowest index.

    Returns:
        The scale index whose ``n`` smallest losses sum lowest, ``n = max(1, min over scales
        of the number of foreground objects)``; with no objects (G = 0) the smallest scale.
    """
    loss = np.asarray(per_scale_losses, dtype=np.float64)
    if loss.ndim != 2 or loss.shape[0] < 1:
        raise InputError(
            f"per_scale_losses must be a (scales, objects) table, got shape {loss.shape}"
        )
    n_scales, n_obj = loss.shape
    if scales_px is None:
        order = np.arange(n_scales)
    else:
        sc = np.asarray(scales_px, dtype=np.float64).reshape(-1)
        if sc.shape[0] != n_scales:
            raise InputError(f"scales_px has {sc.shape[0]} values for {n_scales} scales")
        order = np.argsort(sc, kind="stable")
    if n_obj == 0:
        return int(order[0])
    n = max(1, int((loss < 1.0).sum(axis=1).min()))
    totals = np.sort(loss, axis=1)[:, :n].sum(axis=1)
    # sums within 1e-9 of the minimum tie (0.1 + 0.2 vs 0.15 + 0.15); the first in `order` wins
    tied = totals[order] <= totals.min() + 1e-9
    return int(order[np.argmax(tied)])


def mean_iou(gt_boxes: np.ndarray, gt_classes: np.ndarray, dets: Detections) -> float:
    """Mean over ground-truth objects of the best same-class IoU (1.0 with no objects)."""
    losses = per_object_losses(gt_boxes, gt_classes, dets)
    return 1.0 if losses.size == 0 else float(1.0 - losses.mean())


def switchability_sd(per_model_miou: np.ndarray) -> np.ndarray:
    """Standard deviation (population) of the models' mIoU per image.

    Args:
        per_model_miou: (N images, M models) mIoU table (:func:`mean_iou`).

    Returns:
        float64 array (N,).
    """
    m = np.asarray(per_model_miou, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise InputError(f"per_model_miou must be (images, models >= 2), got shape {m.shape}")
    return m.std(axis=1)


def switchability_labels(
    sd: np.ndarray,
    alpha: float = 0.5,
    mu: float | None = None,
    sigma: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """Bucket switchability SDs into low (0) / medium (1) / high (2) (paper 004, appendix D).

    Args:
        sd: (N,) standard deviations from :func:`switchability_sd`.
        alpha: Half-width of the medium band in units of sigma (paper: 0.5).
        mu: Mean of SD over the training set; None computes it from ``sd``.
        sigma: Standard deviation of SD over the training set; None computes it from ``sd``.

    Returns:
        ``(labels, mu, sigma)``: int64 labels, and the mu and sigma used (reuse them for new
        data so labels keep their meaning).
    """
    s = np.asarray(sd, dtype=np.float64).reshape(-1)
    if s.size == 0 and (mu is None or sigma is None):
        raise InputError("switchability_labels: no SD values to take mu and sigma from")
    if alpha < 0:
        raise InputError(f"alpha must be >= 0, got {alpha}")
    mu = float(s.mean()) if mu is None else float(mu)
    sigma = float(s.std()) if sigma is None else float(sigma)
    labels = np.ones(s.shape, dtype=np.int64)
    labels[s <= mu - alpha * sigma] = 0
    labels[s > mu + alpha * sigma] = 2
    return labels, mu, sigma


# --------------------------------------------------------------------------- tiny models


def _features(X: np.ndarray, who: str) -> np.ndarray:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise InputError(
            f"{who}: X must be a finite (samples, features) array, got shape {x.shape}"
        )
    return x


class ScaleRegressor:
    """Tiny AdaScale-style regressor: scene statistics -> optimal input scale (pixels).

    A standardising scaler and a small ReLU MLP (``sklearn``, L-BFGS) regress the optimal scale
    mapped to ``[0, 1]`` over ``[min(scales_px), max(scales_px)]``; predictions are clipped to
    that range and mapped back to pixels. Prediction runs the fitted weights in NumPy, about
    two orders of magnitude faster per call than sklearn's validated ``predict`` (``model``
    keeps the fitted sklearn pipeline, which gives the same values).

    Args:
        scales_px: The scales the labels index (e.g. ``(720, 600, 480, 360, 240)``).
        hidden_sizes: Hidden layer widths of the MLP.
        l2_penalty: L2 weight penalty of the MLP (sklearn's ``alpha``); the labels are noisy
            and few, so a strong one keeps the fit smooth.
        max_iter: Training iterations (L-BFGS).
        seed: Int seed or Generator for the MLP's initialisation.
    """

    def __init__(
        self,
        scales_px: Sequence[float],
        hidden_sizes: Sequence[int] = (16,),
        l2_penalty: float = 1.0,
        max_iter: int = 500,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.scales_px = np.asarray(scales_px, dtype=np.float64).reshape(-1)
        if self.scales_px.size < 1 or np.any(self.scales_px <= 0):
            raise InputError(f"scales_px must hold positive pixel sizes, got {list(scales_px)}")
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        if not l2_penalty >= 0:
            raise InputError(f"l2_penalty must be >= 0, got {l2_penalty}")
        self.l2_penalty = float(l2_penalty)
        self.max_iter = int(max_iter)
        self.rng = make_rng(seed)
        self.model = None
        self._lo = float(self.scales_px.min())
        self._span = float(self.scales_px.max() - self.scales_px.min())
        self._mean = self._scale = None
        self._layers: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, X: np.ndarray, y: np.ndarray) -> ScaleRegressor:
        """Fit on features ``X`` (N, F) and optimal scale indices ``y`` (N,) into ``scales_px``."""
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = _features(X, "ScaleRegressor.fit")
        idx = np.asarray(y, dtype=np.int64).reshape(-1)
        if idx.shape[0] != x.shape[0]:
            raise InputError(f"ScaleRegressor.fit: {x.shape[0]} samples but {idx.shape[0]} labels")
        if np.any(idx < 0) or np.any(idx >= self.scales_px.size):
            raise InputError(
                f"ScaleRegressor.fit: labels must index scales_px (0..{self.scales_px.size - 1})"
            )
        target = (self.scales_px[idx] - self._lo) / self._span if self._span > 0 else idx * 0.0
        scaler = StandardScaler()
        mlp = MLPRegressor(
            hidden_layer_sizes=self.hidden_sizes,
            activation="relu",
            solver="lbfgs",
            alpha=self.l2_penalty,
            max_iter=self.max_iter,
            random_state=int(self.rng.integers(0, 2**31 - 1)),
        )
        self.model = make_pipeline(scaler, mlp).fit(x, target)
        self._mean, self._scale = scaler.mean_.copy(), scaler.scale_.copy()
        self._layers = [(w.copy(), b.copy()) for w, b in zip(mlp.coefs_, mlp.intercepts_)]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted optimal scale in pixels, (N,) float64 within the scale range."""
        if self.model is None:
            raise InputError("ScaleRegressor.predict: call fit first")
        h = (_features(X, "ScaleRegressor.predict") - self._mean) / self._scale
        for w, b in self._layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self._layers[-1]
        t = np.clip((h @ w + b)[:, 0], 0.0, 1.0)
        return self._lo + t * self._span

    def predict_index(self, X: np.ndarray) -> np.ndarray:
        """Index of the scale in ``scales_px`` nearest to the prediction, (N,) int64."""
        p = self.predict(X)
        return np.abs(p[:, None] - self.scales_px[None, :]).argmin(axis=1).astype(np.int64)


class SwitchabilityClassifier:
    """Tiny switchability classifier: scene statistics -> low / medium / high probabilities.

    A standardising scaler and a multinomial logistic regression (softmax outputs, cross
    entropy, as in appendix D of paper 004). Prediction runs the fitted weights in NumPy
    (``model`` keeps the fitted sklearn pipeline, which gives the same values).

    Args:
        c: Inverse L2 regularisation strength of the logistic regression.
        max_iter: Solver iterations.
    """

    def __init__(self, c: float = 1.0, max_iter: int = 1000) -> None:
        if not c > 0:
            raise InputError(f"c must be > 0, got {c}")
        self.c = float(c)
        self.max_iter = int(max_iter)
        self.model = None
        self._fitted = False
        self._classes = np.zeros(0, dtype=np.int64)
        self._constant: np.ndarray | None = None
        self._mean = self._scale = self._coef = self._intercept = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> SwitchabilityClassifier:
        """Fit on features ``X`` (N, F) and labels ``y`` (N,) in {0: low, 1: medium, 2: high}."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = _features(X, "SwitchabilityClassifier.fit")
        lab = np.asarray(y, dtype=np.int64).reshape(-1)
        k = len(SWITCHABILITY_LEVELS)
        if lab.shape[0] != x.shape[0]:
            raise InputError(
                f"SwitchabilityClassifier.fit: {x.shape[0]} samples but {lab.shape[0]} labels"
            )
        if np.any(lab < 0) or np.any(lab >= k):
            raise InputError(f"SwitchabilityClassifier.fit: labels must lie in 0..{k - 1}")
        self._fitted = True
        self._classes = np.unique(lab)
        if self._classes.size == 1:
            # one class seen: predict it with certainty
            self._constant = np.zeros(k)
            self._constant[self._classes[0]] = 1.0
            self.model = None
            return self
        self._constant = None
        scaler = StandardScaler()
        logreg = LogisticRegression(C=self.c, max_iter=self.max_iter)
        self.model = make_pipeline(scaler, logreg).fit(x, lab)
        self._mean, self._scale = scaler.mean_.copy(), scaler.scale_.copy()
        self._coef, self._intercept = logreg.coef_.copy(), logreg.intercept_.copy()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 3) in the order low, medium, high (0 for unseen classes)."""
        if not self._fitted:
            raise InputError("SwitchabilityClassifier.predict_proba: call fit first")
        x = _features(X, "SwitchabilityClassifier.predict_proba")
        if self._constant is not None:
            return np.repeat(self._constant[None, :], x.shape[0], axis=0)
        logits = ((x - self._mean) / self._scale) @ self._coef.T + self._intercept
        if logits.shape[1] == 1:  # two classes: one logistic score for the second
            p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            p = np.stack([1.0 - p1, p1], axis=1)
        else:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
        out = np.zeros((x.shape[0], len(SWITCHABILITY_LEVELS)))
        out[:, self._classes] = p
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class (N,) int64: 0 low, 1 medium, 2 high."""
        return self.predict_proba(X).argmax(axis=1).astype(np.int64)
