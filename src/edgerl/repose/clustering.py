"""Clustering of one frame's coarse detections (RE-POSE, Sec. III-A2 and III-A3).

Pure functions on arrays plus one immutable state object, :class:`Clustering`, on which the
RL-DCA actions (keep / merge / split) operate.

Coordinate conventions used throughout this module:

* **Initial clustering features** (MeanShift): ``(x / W, (y / H) ** alpha_t)`` of each box centre,
  i.e. the x coordinate normalised by the frame width and the y coordinate normalised by the
  frame height and then passed through the y-transform of eq. (1). Both features lie in
  ``[0, 1]``, so a MeanShift bandwidth is a fraction of the frame (in transformed units along y).
* **Geometry of a clustering** (state, rewards, merge and split): box centres and sizes normalised
  per axis, ``(x / W, y / H)`` and ``(w / W, h / H)``, *without* the y-transform. The paper
  describes the centroid of the state as the "spatial center" of a cluster, so the transform is
  only used to seed MeanShift.
* **Areas** (reward term R2): box areas in units of the mean box area of the frame, so that the
  area-variance term is O(1) and independent of the resolution (the paper gives no unit).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edgerl.utils.errors import InputError

__all__ = [
    "FALLBACK_BANDWIDTH",
    "Clustering",
    "center_features",
    "cluster_areas",
    "cluster_blocks",
    "estimate_bandwidth",
    "initial_clusters",
    "kmeans_1d_two",
    "mean_shift",
    "merge_closest",
    "select_split_cluster",
    "split_cluster",
    "y_transform",
]

#: Bandwidth (in normalised feature units) used when the estimate degenerates to zero, e.g. when
#: all box centres coincide or there are fewer than two boxes.
FALLBACK_BANDWIDTH = 0.1

# Upper bound on the number of float64 entries of one pairwise-distance chunk (~8 MiB).
_CHUNK_ENTRIES = 1 << 20


# --------------------------------------------------------------------------- validation


def _check_frame(frame_wh: tuple[int, int] | Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in frame_wh)
    except (TypeError, ValueError):
        raise InputError(f"frame_wh must be (width, height) in pixels, got {frame_wh!r}") from None
    if w <= 0 or h <= 0:
        raise InputError(f"frame_wh must be positive (width, height) in pixels, got {frame_wh!r}")
    return w, h


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes must be an (N, 4) xyxy array, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise InputError("boxes contain NaN or infinite coordinates")
    return b


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise InputError(f"labels must have shape ({n},) (one per box), got {lab.shape}")
    if n and not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"labels must be integers, got dtype {lab.dtype}")
    return lab.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- initial clustering


def y_transform(y_norm: np.ndarray | float, alpha_t: float) -> np.ndarray:
    """The non-linear y-transform of eq. (1): ``y_T = y ** alpha_t``.

    Stretches the upper part of the frame (small, dense objects) and compresses the lower part
    (large, sparse objects) before MeanShift.

    Args:
        y_norm: y coordinates normalised to ``[0, 1]``; values outside are clipped.
        alpha_t: the exponent, ``0 < alpha_t < 1``.

    Returns:
        float64 array of the transformed values, in ``[0, 1]``.

    Raises:
        InputError: when ``alpha_t`` is not in ``(0, 1)``.
    """
    if not 0.0 < float(alpha_t) < 1.0:
        raise InputError(f"alpha_t must be in (0, 1), got {alpha_t!r}")
    y = np.clip(np.asarray(y_norm, dtype=np.float64), 0.0, 1.0)
    return np.power(y, float(alpha_t))


def center_features(boxes: np.ndarray, frame_wh: tuple[int, int], alpha_t: float) -> np.ndarray:
    """MeanShift features of each box: ``(x_c / W, (y_c / H) ** alpha_t)``.

    Args:
        boxes: (N, 4) xyxy boxes in frame pixels.
        frame_wh: frame (width, height) in pixels.
        alpha_t: y-transform exponent of eq. (1).

    Returns:
        (N, 2) float64 features, both in ``[0, 1]``.
    """
    w, h = _check_frame(frame_wh)
    b = _check_boxes(boxes)
    x = np.clip(0.5 * (b[:, 0] + b[:, 2]) / w, 0.0, 1.0)
    y = y_transform(0.5 * (b[:, 1] + b[:, 3]) / h, alpha_t)
    return np.stack([x, y], axis=1)


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of ``a`` and rows of ``b`` (exact differences)."""
    out = np.zeros((len(a), len(b)))
    for d in range(a.shape[1]):  # one 2-D pass per dimension: no (n, m, D) temporary
        diff = a[:, d, None] - b[None, :, d]
        out += diff * diff
    return out


def estimate_bandwidth(features: np.ndarray, quantile: float = 0.3) -> float:
    """MeanShift bandwidth: mean distance of each point to its k-th nearest point.

    Same estimator as :func:`sklearn.cluster.estimate_bandwidth` (``k = int(n * quantile)``,
    counting the point itself), except that ``k`` is at least 2 so that the estimate is never
    the trivial zero distance of a point to itself when ``n * quantile < 2``.

    Args:
        features: (N, D) points.
        quantile: fraction of points that defines k, in ``(0, 1]``.

    Returns:
        The bandwidth; 0.0 for fewer than two points.
    """
    if not 0.0 < quantile <= 1.0:
        raise InputError(f"quantile must be in (0, 1], got {quantile!r}")
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n < 2:
        return 0.0
    k = min(max(int(n * quantile), 2), n)
    rows = max(1, _CHUNK_ENTRIES // n)
    total = 0.0
    for start in range(0, n, rows):
        d2 = _pairwise_sq(x[start : start + rows], x)
        total += float(np.sqrt(np.partition(d2, k - 1, axis=1)[:, k - 1]).sum())
    return total / n


def _bin_seeds(x: np.ndarray, bin_size: float, min_bin_freq: int) -> np.ndarray:
    """Seeds on a grid of pitch ``bin_size`` (one per occupied bin, first-seen order)."""
    binned = np.round(x / bin_size)
    _, first, counts = np.unique(binned, axis=0, return_index=True, return_counts=True)
    keep = counts >= min_bin_freq
    order = np.argsort(first[keep], kind="stable")
    seeds = binned[first[keep][order]]
    if len(seeds) == len(x):
        return x.copy()
    # float32 grid points, as scikit-learn's get_bin_seeds produces them.
    return seeds.astype(np.float32).astype(np.float64) * bin_size


def mean_shift(
    features: np.ndarray,
    bandwidth: float,
    *,
    bin_seeding: bool = False,
    min_bin_freq: int = 1,
    max_iter: int = 300,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat-kernel MeanShift, vectorised over all seeds at once.

    Follows the algorithm of :class:`sklearn.cluster.MeanShift` step for step (each seed climbs
    until its shift is at most ``1e-3 * bandwidth`` or ``max_iter``; modes are sorted by
    intensity and near-duplicates within ``bandwidth`` removed; every point gets the label of its
    nearest mode), but moves all seeds together with one matrix product per iteration instead
    of one neighbour query per seed, which makes it one to two orders of magnitude faster on a
    few hundred points. The tests check that the labels equal scikit-learn's.

    Args:
        features: (N, D) points, N >= 1.
        bandwidth: kernel radius (> 0) in feature units.
        bin_seeding: seed from a grid of pitch ``bandwidth`` instead of from every point.
        min_bin_freq: with ``bin_seeding``, only bins holding at least this many points seed.
        max_iter: iteration limit per seed.

    Returns:
        ``(labels, centers)``: (N,) int64 labels and (K, D) float64 modes, label k = centers[k].
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
    if not bandwidth > 0:
        raise InputError(f"bandwidth must be > 0, got {bandwidth!r}")
    bw2 = float(bandwidth) ** 2
    seeds = _bin_seeds(x, float(bandwidth), min_bin_freq) if bin_seeding else x.copy()
    n_seeds, n_pts = len(seeds), len(x)
    means = seeds.copy()
    counts = np.zeros(n_seeds, dtype=np.int64)
    iters = np.zeros(n_seeds, dtype=np.int64)
    active = np.ones(n_seeds, dtype=bool)
    stop_thresh = 1e-3 * float(bandwidth)
    chunk = max(1, _CHUNK_ENTRIES // n_pts)
    while active.any():
        for start in range(0, n_seeds, chunk):
            idx = np.flatnonzero(active[start : start + chunk]) + start
            if len(idx) == 0:
                continue
            old = means[idx]
            within = (_pairwise_sq(old, x) <= bw2).astype(np.float64)
            cnt = within.sum(axis=1)
            empty = cnt == 0
            new = (within @ x) / np.maximum(cnt, 1.0)[:, None]
            shift = np.sqrt(((new - old) ** 2).sum(axis=1))
            done = empty | (shift <= stop_thresh) | (iters[idx] == max_iter)
            means[idx[~empty]] = new[~empty]
            counts[idx] = cnt.astype(np.int64)
            iters[idx[~done]] += 1
            active[idx[done]] = False
    # Modes with a non-empty final window, keyed by position (duplicates collapse).
    intensity: dict[tuple[float, ...], int] = {}
    for m, c in zip(map(tuple, means.tolist()), counts.tolist()):
        if c > 0:
            intensity[m] = c
    if not intensity:  # pragma: no cover - every seed lies within reach of a point
        return np.zeros(n_pts, dtype=np.int64), x.mean(axis=0, keepdims=True)
    ranked = sorted(intensity.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    sorted_centers = np.array([kv[0] for kv in ranked], dtype=np.float64)
    d2c = _pairwise_sq(sorted_centers, sorted_centers)
    unique = np.ones(len(sorted_centers), dtype=bool)
    for i in range(len(sorted_centers)):
        if unique[i]:
            unique[d2c[i] <= bw2] = False
            unique[i] = True
    centers = sorted_centers[unique]
    labels = np.argmin(_pairwise_sq(x, centers), axis=1).astype(np.int64)
    return labels, centers


def initial_clusters(
    boxes: np.ndarray,
    frame_wh: tuple[int, int],
    alpha_t: float = 0.5,
    bandwidth: float | None = None,
    *,
    quantile: float = 0.3,
    bin_seeding: bool = False,
    backend: str = "numpy",
) -> np.ndarray:
    """Initial clusters of a frame's detections: y-transform (eq. (1)) + MeanShift (Sec. III-A2).

    Features are ``(x_c / W, (y_c / H) ** alpha_t)`` (see the module docstring), so the bandwidth
    is a fraction of the frame.

    Args:
        boxes: (N, 4) xyxy boxes in frame pixels.
        frame_wh: frame (width, height) in pixels.
        alpha_t: y-transform exponent, ``0 < alpha_t < 1``.
        bandwidth: MeanShift radius in feature units; ``None`` estimates it with
            :func:`estimate_bandwidth` (``quantile``), falling back to :data:`FALLBACK_BANDWIDTH`
            when the estimate is zero (fewer than two distinct centres).
        quantile: quantile of the bandwidth estimate.
        bin_seeding: seed MeanShift from a grid instead of from every point (faster, coarser).
        backend: ``"numpy"`` (vectorised, the default) or ``"sklearn"``
            (:class:`sklearn.cluster.MeanShift`); both give the same labels.

    Returns:
        (N,) int64 labels ``0 .. K-1``; an empty array for no boxes, ``[0]`` for one box.
    """
    b = _check_boxes(boxes)
    feats = center_features(b, frame_wh, alpha_t)
    n = len(b)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if bandwidth is not None and not bandwidth > 0:
        raise InputError(f"bandwidth must be > 0 or None, got {bandwidth!r}")
    bw = float(bandwidth) if bandwidth is not None else estimate_bandwidth(feats, quantile)
    if bw <= 1e-9:
        bw = FALLBACK_BANDWIDTH
    if backend == "numpy":
        return mean_shift(feats, bw, bin_seeding=bin_seeding)[0]
    if backend == "sklearn":
        from sklearn.cluster import MeanShift

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "binning data failed" falls back to all points
            fitted = MeanShift(bandwidth=bw, bin_seeding=bin_seeding).fit(feats)
        return fitted.labels_.astype(np.int64)
    raise InputError(f"backend must be 'numpy' or 'sklearn', got {backend!r}")


# --------------------------------------------------------------------------- clustering state


@dataclass(frozen=True, eq=False)
class Clustering:
    """A clustering of one frame's detections: the RL-DCA state ``C`` (Sec. III-A3b).

    Build it with :meth:`from_boxes`. All arrays are per detection; labels are contiguous
    ``0 .. n_clusters-1`` and every cluster is non-empty. Operations return new objects.

    Attributes:
        xy: (N, 2) box centres normalised per axis, ``(x / W, y / H)``.
        wh: (N, 2) box sizes normalised per axis, ``(w / W, h / H)``.
        area: (N,) box areas in units of the frame's mean box area (1.0 when all are zero).
        labels: (N,) int64 cluster of each box.
        n_clusters: number of clusters K.
    """

    xy: np.ndarray
    wh: np.ndarray
    area: np.ndarray
    labels: np.ndarray
    n_clusters: int

    @classmethod
    def from_boxes(
        cls, boxes: np.ndarray, frame_wh: tuple[int, int], labels: np.ndarray
    ) -> Clustering:
        """A clustering of ``boxes`` (clipped to the frame) with arbitrary integer labels.

        Labels are renumbered to ``0 .. K-1`` in increasing order of the given values.
        """
        w, h = _check_frame(frame_wh)
        b = _check_boxes(boxes)
        lab = _check_labels(labels, len(b))
        b = np.clip(b, 0.0, [w, h, w, h])
        bw = np.maximum(b[:, 2] - b[:, 0], 0.0)
        bh = np.maximum(b[:, 3] - b[:, 1], 0.0)
        xy = np.stack([0.5 * (b[:, 0] + b[:, 2]) / w, 0.5 * (b[:, 1] + b[:, 3]) / h], axis=1)
        wh = np.stack([bw / w, bh / h], axis=1)
        area = bw * bh
        mean_area = float(area.mean()) if len(area) else 0.0
        area = area / mean_area if mean_area > 0 else np.ones_like(area)
        uniq, inv = np.unique(lab, return_inverse=True)
        return cls(xy, wh, area, inv.reshape(-1).astype(np.int64), len(uniq))

    def relabel(self, labels: np.ndarray) -> Clustering:
        """The same detections with new labels (renumbered to ``0 .. K-1``)."""
        lab = _check_labels(labels, len(self.labels))
        uniq, inv = np.unique(lab, return_inverse=True)
        return Clustering(self.xy, self.wh, self.area, inv.reshape(-1).astype(np.int64), len(uniq))

    @property
    def n_detections(self) -> int:
        """Number of detections N."""
        return len(self.labels)

    @cached_property
    def counts(self) -> np.ndarray:
        """(K,) int64 cluster sizes ``S_i`` (number of objects, Sec. III-A3b)."""
        return np.bincount(self.labels, minlength=self.n_clusters)

    def _cluster_mean(self, values: np.ndarray) -> np.ndarray:
        k = self.n_clusters
        cols = [np.bincount(self.labels, weights=values[:, c], minlength=k) for c in range(2)]
        return np.stack(cols, axis=1) / np.maximum(self.counts, 1)[:, None]

    @cached_property
    def centroids(self) -> np.ndarray:
        """(K, 2) cluster centroids ``(mu_x, mu_y)`` in normalised frame coordinates."""
        return self._cluster_mean(self.xy)

    @cached_property
    def mean_wh(self) -> np.ndarray:
        """(K, 2) mean normalised box size ``(mu_w, mu_h)`` per cluster."""
        return self._cluster_mean(self.wh)

    @cached_property
    def sse(self) -> np.ndarray:
        """(K,) sum of squared distances of the members' centres to their centroid."""
        d = self.xy - self.centroids[self.labels]
        return np.bincount(self.labels, weights=(d * d).sum(axis=1), minlength=self.n_clusters)

    @cached_property
    def splittable(self) -> np.ndarray:
        """(K,) bool: the cluster has at least two distinct centres."""
        k = self.n_clusters
        lo = np.full((k, 2), np.inf)
        hi = np.full((k, 2), -np.inf)
        np.minimum.at(lo, self.labels, self.xy)
        np.maximum.at(hi, self.labels, self.xy)
        return (hi > lo).any(axis=1)

    def stats(self) -> np.ndarray:
        """(K, 5) float64 rows ``(mu_x, mu_y, mu_w, mu_h, S_i)`` of eq. (2), in label order."""
        return np.column_stack([self.centroids, self.mean_wh, self.counts.astype(np.float64)])

    def members(self, i: int) -> np.ndarray:
        """Indices of the detections in cluster ``i``."""
        return np.flatnonzero(self.labels == i)


# --------------------------------------------------------------------------- actions


def merge_closest(clustering: Clustering) -> Clustering:
    """Merge the two clusters whose centroids are closest (eqs. (4)-(6)).

    Ties are broken by the lowest ``(i, j)`` pair in label order. The merged cluster takes the
    lower label; labels above the removed one shift down by one.

    Returns:
        The new clustering, or ``clustering`` itself when it has fewer than two clusters (no-op).
    """
    k = clustering.n_clusters
    if k < 2:
        return clustering
    d2 = _pairwise_sq(clustering.centroids, clustering.centroids)
    d2[np.tril_indices(k)] = np.inf
    i, j = divmod(int(np.argmin(d2)), k)  # eq. (4): argmin over i != j of d_ij
    lab = clustering.labels.copy()
    lab[lab == j] = i
    lab[lab > j] -= 1
    return Clustering(clustering.xy, clustering.wh, clustering.area, lab, k - 1)


def kmeans_1d_two(values: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """Exact 2-means of 1-D data by sorting and prefix sums, O(n log n).

    In one dimension the optimal clusters are two intervals of the sorted values, so the optimum
    is the best of the ``n - 1`` cut points; each cut's within-cluster sum of squares comes from
    prefix sums. Cuts are only made between distinct values, so equal values stay together.

    Args:
        values: (n,) data.

    Returns:
        ``(upper, threshold, inertia)``: boolean mask of the values in the upper cluster, the cut
        value (midpoint between the two clusters' closest members) and the optimal sum of squared
        distances to the two means; ``None`` when fewer than two distinct values exist.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = len(v)
    if n < 2:
        return None
    s = np.sort(v)
    if s[0] == s[-1]:
        return None
    c = s - s.mean()  # centred for numerical stability of the prefix-sum formula
    left = np.cumsum(c)[:-1]  # sum of the k smallest, k = 1 .. n-1
    total = float(c.sum())
    k = np.arange(1, n, dtype=np.float64)
    # SSE(cut after the k smallest) = sum(c^2) - gain_k with gain_k = L^2/k + R^2/(n-k).
    gain = left**2 / k + (total - left) ** 2 / (n - k)
    gain[s[:-1] == s[1:]] = -np.inf  # no cut inside a run of equal values
    cut = int(np.argmax(gain))
    inertia = max(float((c * c).sum()) - float(gain[cut]), 0.0)
    threshold = 0.5 * (s[cut] + s[cut + 1])
    return v > s[cut], threshold, inertia


def select_split_cluster(clustering: Clustering) -> int | None:
    """The cluster the split action divides: the one with the largest scatter.

    The paper leaves the choice of ``C_i`` in ``a_split(C_i)`` open. We split the cluster with the
    largest sum of squared distances of its members to its centroid (the bisecting-k-means
    rule): it is the loosest cluster weighted by its size, so splitting it gives the largest
    reduction of within-cluster scatter, which the tightness penalty (eq. (12)) rewards.

    Returns:
        The label, or ``None`` when no cluster has two distinct centres (nothing to split).
    """
    ok = clustering.splittable
    if not ok.any():
        return None
    return int(np.argmax(np.where(ok, clustering.sse, -np.inf)))


def split_cluster(clustering: Clustering, i: int) -> Clustering:
    """Split cluster ``i`` in two by 1-D 2-means along its axis of larger variance (eqs. (7)-(10)).

    The axis is the one along which the members' centres vary more (the text of Sec. III-A3c;
    eq. (7) prints ``argmin`` but "the dimension with the larger variance" is meant); on a tie
    the y axis is used, the axis of the size stratification (Sec. III-A2). The members above the
    cut get the new label ``K``; the others keep ``i``.

    Returns:
        The new clustering, or ``clustering`` itself when cluster ``i`` has fewer than two
        distinct centres (no-op).
    """
    k = clustering.n_clusters
    if not 0 <= i < k:
        raise InputError(f"cluster index {i} out of range for {k} clusters")
    idx = clustering.members(i)
    pts = clustering.xy[idx]
    var = pts.var(axis=0)
    axis = 0 if var[0] > var[1] else 1  # eq. (7), larger variance; ties -> y
    res = kmeans_1d_two(pts[:, axis])  # eq. (8)
    if res is None:
        other = kmeans_1d_two(pts[:, 1 - axis])
        if other is None:
            return clustering
        res = other
    upper = res[0]
    lab = clustering.labels.copy()
    lab[idx[upper]] = k  # eq. (10): C_i replaced by C_new1 (label i) and C_new2 (label K)
    return Clustering(clustering.xy, clustering.wh, clustering.area, lab, k + 1)


# --------------------------------------------------------------------------- blocks


def cluster_blocks(
    boxes: np.ndarray,
    labels: np.ndarray,
    frame_wh: tuple[int, int],
    *,
    margin_px: float = 16.0,
    margin_frac: float = 0.0,
    min_size_px: int = 32,
) -> np.ndarray:
    """One image block per cluster: the hull of its boxes plus a margin (Sec. II-B).

    Each side of a cluster's hull is pushed out by ``margin_px + margin_frac * extent`` (the
    hull's width for left/right, its height for top/bottom). Blocks smaller than
    ``min_size_px`` (capped at the frame size) grow about their centre, are shifted back inside
    the frame, and are rounded outward to whole pixels.

    Args:
        boxes: (N, 4) xyxy boxes in frame pixels.
        labels: (N,) integer cluster labels; blocks are returned in increasing label order.
        frame_wh: frame (width, height) in pixels.
        margin_px: margin in pixels on each side (>= 0).
        margin_frac: margin as a fraction of the hull's extent on each side (>= 0).
        min_size_px: minimum block width and height in pixels (>= 1 is enforced).

    Returns:
        (K, 4) int64 xyxy blocks with ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``.
    """
    w, h = _check_frame(frame_wh)
    b = _check_boxes(boxes)
    lab = _check_labels(labels, len(b))
    if margin_px < 0 or margin_frac < 0:
        raise InputError(
            f"margins must be >= 0, got margin_px={margin_px}, margin_frac={margin_frac}"
        )
    if len(b) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    uniq, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(-1)
    k = len(uniq)
    lo = np.full((k, 2), np.inf)
    hi = np.full((k, 2), -np.inf)
    np.minimum.at(lo, inv, b[:, :2])
    np.maximum.at(hi, inv, b[:, 2:])
    ext = hi - lo
    margin = margin_px + margin_frac * ext
    lo, hi = lo - margin, hi + margin
    size = np.array([w, h], dtype=np.float64)
    min_size = np.minimum(float(max(min_size_px, 1)), size)
    grow = np.maximum(min_size - (hi - lo), 0.0) / 2
    lo, hi = lo - grow, hi + grow
    # Shift blocks that stick out back inside, then clip (only bites when larger than the frame).
    shift = np.maximum(-lo, 0.0) - np.maximum(hi - size, 0.0)
    lo, hi = np.clip(lo + shift, 0.0, size), np.clip(hi + shift, 0.0, size)
    lo_i = np.floor(lo + 1e-9).astype(np.int64)
    hi_i = np.ceil(hi - 1e-9).astype(np.int64)
    return np.concatenate([lo_i, hi_i], axis=1)


def cluster_areas(boxes: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """Areas (pixels^2) of the boxes of each cluster, in increasing label order.

    The ``A_ik`` of eq. (17), ready for :func:`edgerl.repose.mckp.block_values`.
    """
    b = _check_boxes(boxes)
    lab = _check_labels(labels, len(b))
    area = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    uniq, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    return [area[order[bounds[c] : bounds[c + 1]]] for c in range(len(uniq))]
