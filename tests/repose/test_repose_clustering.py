"""Unit tests of the RL-DCA clustering primitives (RE-POSE eqs. (1), (4)-(10))."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans, MeanShift
from sklearn.cluster import estimate_bandwidth as sk_estimate_bandwidth

from edgerl.repose.clustering import (
    FALLBACK_BANDWIDTH,
    Clustering,
    center_features,
    cluster_areas,
    cluster_blocks,
    estimate_bandwidth,
    initial_clusters,
    kmeans_1d_two,
    mean_shift,
    merge_closest,
    select_split_cluster,
    split_cluster,
    y_transform,
)
from edgerl.utils.errors import InputError


def _boxes_at(centres_px: np.ndarray, size_px: float = 10.0) -> np.ndarray:
    c = np.asarray(centres_px, dtype=np.float64)
    h = size_px / 2
    return np.column_stack([c[:, 0] - h, c[:, 1] - h, c[:, 0] + h, c[:, 1] + h])


def _blobs(rng: np.random.Generator) -> np.ndarray:
    n_blobs = int(rng.integers(1, 7))
    parts = [
        rng.normal(c, rng.uniform(0.01, 0.06), (int(rng.integers(4, 50)), 2))
        for c in rng.uniform(0, 1, (n_blobs, 2))
    ]
    return np.concatenate(parts)


# --------------------------------------------------------------------------- eq. (1)


def test_y_transform_golden() -> None:
    # 0.25 ** 0.5 = 0.5; 0 and 1 are fixed points; values outside [0, 1] are clipped.
    np.testing.assert_allclose(y_transform([0.0, 0.25, 1.0, 1.5, -0.1], 0.5), [0, 0.5, 1, 1, 0])
    # alpha < 1 stretches the top of the frame: y_T >= y everywhere.
    y = np.linspace(0, 1, 11)
    assert (y_transform(y, 0.3) >= y).all()


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5, 2.0])
def test_y_transform_rejects_alpha_outside_open_unit_interval(alpha: float) -> None:
    with pytest.raises(InputError, match="alpha_t"):
        y_transform(0.5, alpha)


def test_center_features_scale() -> None:
    boxes = np.array([[0, 0, 20, 40], [380, 100, 400, 200]], dtype=np.float64)
    f = center_features(boxes, (400, 200), alpha_t=0.5)
    # centres (10, 20) and (390, 150) in a 400 x 200 frame
    np.testing.assert_allclose(f, [[10 / 400, (20 / 200) ** 0.5], [390 / 400, (150 / 200) ** 0.5]])


# --------------------------------------------------------------------------- MeanShift


def test_estimate_bandwidth_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = _blobs(rng)
        for q in (0.1, 0.3, 0.6):
            if int(len(x) * q) < 2:
                continue
            assert estimate_bandwidth(x, q) == pytest.approx(sk_estimate_bandwidth(x, quantile=q))


def test_estimate_bandwidth_small_inputs() -> None:
    assert estimate_bandwidth(np.zeros((1, 2))) == 0.0
    # two points: k is raised to 2, so the estimate is their distance (not 0)
    assert estimate_bandwidth(np.array([[0.0, 0.0], [0.3, 0.4]])) == pytest.approx(0.5)


@pytest.mark.parametrize("bin_seeding", [False, True])
def test_mean_shift_labels_equal_sklearn(bin_seeding: bool) -> None:
    rng = np.random.default_rng(1)
    for _ in range(25):
        x = _blobs(rng)
        bw = estimate_bandwidth(x, float(rng.uniform(0.1, 0.4)))
        ours, centers = mean_shift(x, bw, bin_seeding=bin_seeding)
        ref = MeanShift(bandwidth=bw, bin_seeding=bin_seeding).fit(x)
        np.testing.assert_array_equal(ours, ref.labels_)
        np.testing.assert_allclose(centers, ref.cluster_centers_, atol=1e-3 * bw)


def test_initial_clusters_separates_groups_and_backends_agree() -> None:
    rng = np.random.default_rng(2)
    top = rng.normal([1000, 300], 40, (30, 2))
    bottom = rng.normal([3000, 1800], 60, (20, 2))
    boxes = _boxes_at(np.concatenate([top, bottom]), 30)
    labels = initial_clusters(boxes, (3840, 2160), alpha_t=0.5, bandwidth=0.2)
    assert len(np.unique(labels)) == 2
    assert len(np.unique(labels[:30])) == 1 and len(np.unique(labels[30:])) == 1
    for bw in (0.2, None):  # given and estimated bandwidth
        ours = initial_clusters(boxes, (3840, 2160), alpha_t=0.5, bandwidth=bw)
        sk = initial_clusters(boxes, (3840, 2160), alpha_t=0.5, bandwidth=bw, backend="sklearn")
        np.testing.assert_array_equal(ours, sk)


def test_initial_clusters_degenerate_inputs() -> None:
    wh = (640, 480)
    assert initial_clusters(np.zeros((0, 4)), wh).shape == (0,)
    np.testing.assert_array_equal(initial_clusters(np.array([[1, 1, 5, 5]]), wh), [0])
    # identical centres: the estimate is 0, the fallback bandwidth gives one cluster
    same = np.tile([[100, 100, 120, 140]], (5, 1))
    np.testing.assert_array_equal(initial_clusters(same, wh), np.zeros(5))
    assert FALLBACK_BANDWIDTH > 0
    with pytest.raises(InputError, match="boxes"):
        initial_clusters(np.zeros((3, 3)), wh)
    with pytest.raises(InputError, match="frame_wh"):
        initial_clusters(np.zeros((1, 4)), (0, 10))
    with pytest.raises(InputError, match="backend"):
        initial_clusters(same, wh, backend="torch")


def test_y_transform_changes_clustering_of_far_rows() -> None:
    # Two rows of people at the top (y = 0.05 H and 0.15 H) are 0.1 H apart; the transform
    # stretches that gap to 0.15 ** 0.3 - 0.05 ** 0.3 ~= 0.19, so a bandwidth of 0.15 splits
    # them, while without stretching (alpha_t close to 1) they merge.
    xs = np.linspace(100, 1000, 10)
    centres = np.concatenate(
        [np.column_stack([xs, np.full(10, 108)]), np.column_stack([xs, np.full(10, 324)])]
    )
    boxes = _boxes_at(centres, 8)
    stretched = initial_clusters(boxes, (3840, 2160), alpha_t=0.3, bandwidth=0.15)
    plain = initial_clusters(boxes, (3840, 2160), alpha_t=0.999, bandwidth=0.15)
    assert len(np.unique(stretched)) == 2
    assert len(np.unique(plain)) == 1


# --------------------------------------------------------------------------- 1-D 2-means


def _brute_2means(values: np.ndarray) -> float:
    best = np.inf
    n = len(values)
    for mask in itertools.product([False, True], repeat=n - 1):
        m = np.array((False, *mask))  # first value fixed to one side (symmetry)
        if not m.any():
            continue
        a, b = values[m], values[~m]
        best = min(best, ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
    return best


def test_kmeans_1d_two_is_exact_against_all_bipartitions() -> None:
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(2, 11))
        v = rng.normal(0, 1, n) if rng.random() < 0.7 else rng.integers(0, 4, n).astype(float)
        res = kmeans_1d_two(v)
        if np.unique(v).size < 2:
            assert res is None
            continue
        assert res is not None
        upper, thr, inertia = res
        assert inertia == pytest.approx(_brute_2means(v), abs=1e-9)
        a, b = v[upper], v[~upper]
        assert len(a) and len(b)
        assert inertia == pytest.approx(
            ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum(), abs=1e-9
        )
        assert (a > thr).all() and (b < thr).all()


def test_kmeans_1d_two_not_worse_than_sklearn() -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        v = np.concatenate(
            [
                rng.normal(rng.uniform(-5, 5), rng.uniform(0.1, 2), int(rng.integers(1, 80)))
                for _ in range(3)
            ]
        )
        res = kmeans_1d_two(v)
        assert res is not None
        sk = KMeans(n_clusters=2, n_init=10, random_state=0).fit(v.reshape(-1, 1))
        assert res[2] <= sk.inertia_ * (1 + 1e-9) + 1e-9
        assert res[2] == pytest.approx(sk.inertia_, rel=1e-6)  # Lloyd finds the 1-D optimum here


# --------------------------------------------------------------------------- state and actions


def _frame_100() -> tuple[np.ndarray, tuple[int, int]]:
    # A (10,10) 10x10, B (30,10) 10x20, C (80,80) 20x20 in a 100 x 100 frame.
    boxes = np.array([[5, 5, 15, 15], [25, 0, 35, 20], [70, 70, 90, 90]], dtype=np.float64)
    return boxes, (100, 100)


def test_clustering_stats_golden() -> None:
    boxes, wh = _frame_100()
    c = Clustering.from_boxes(boxes, wh, np.array([7, 7, 3]))
    # labels renumbered in increasing order of the given values: 3 -> 0, 7 -> 1
    np.testing.assert_array_equal(c.labels, [1, 1, 0])
    assert c.n_clusters == 2
    # eq. (2) rows (mu_x, mu_y, mu_w, mu_h, S)
    np.testing.assert_allclose(c.stats(), [[0.8, 0.8, 0.2, 0.2, 1], [0.2, 0.1, 0.1, 0.15, 2]])
    # areas 100, 200, 400 in units of their mean 700/3
    np.testing.assert_allclose(c.area, [3 / 7, 6 / 7, 12 / 7])
    np.testing.assert_allclose(c.sse, [0.0, 0.02])  # 0.1^2 + 0.1^2


def test_merge_closest_golden() -> None:
    centres = np.array([[10, 10], [20, 10], [90, 90], [60, 10]], dtype=np.float64)
    c = Clustering.from_boxes(_boxes_at(centres, 2), (100, 100), np.array([0, 1, 2, 3]))
    m = merge_closest(c)  # clusters 0 and 1 are 0.1 apart: the closest pair (eq. (4))
    np.testing.assert_array_equal(m.labels, [0, 0, 1, 2])
    assert m.n_clusters == 3
    m2 = merge_closest(m)  # centroids (0.15,0.1), (0.9,0.9), (0.6,0.1): 0 and 2 merge
    np.testing.assert_array_equal(m2.labels, [0, 0, 1, 0])
    one = merge_closest(merge_closest(m2))
    assert one.n_clusters == 1 and merge_closest(one) is one  # no-op with one cluster


def test_split_cluster_along_larger_variance() -> None:
    # Spread along x (0.1, 0.2, 0.7, 0.8) more than along y (0.5, 0.52, 0.5, 0.52).
    xs = np.array([[10, 50], [20, 52], [70, 50], [80, 52], [50, 95]], dtype=np.float64)
    c = Clustering.from_boxes(_boxes_at(xs, 2), (100, 100), np.array([0, 0, 0, 0, 1]))
    s = split_cluster(c, 0)
    np.testing.assert_array_equal(s.labels, [0, 0, 2, 2, 1])
    # Same points transposed: spread along y -> split along y.
    ys = xs[:, ::-1].copy()
    t = split_cluster(
        Clustering.from_boxes(_boxes_at(ys, 2), (100, 100), np.array([0, 0, 0, 0, 1])), 0
    )
    np.testing.assert_array_equal(t.labels, [0, 0, 2, 2, 1])


def test_split_uses_larger_not_smaller_variance() -> None:
    # x: 0.1, 0.9, 0.1, 0.9 (var 0.16); y: 0.40, 0.42, 0.44, 0.46 (var 0.0005).
    # Along x the cut separates {0, 2} from {1, 3}; along y (eq. (7) as printed, argmin) it
    # would separate {0, 1} from {2, 3}.
    pts = np.array([[10, 40], [90, 42], [10, 44], [90, 46]], dtype=np.float64)
    c = Clustering.from_boxes(_boxes_at(pts, 2), (100, 100), np.zeros(4, dtype=np.int64))
    np.testing.assert_array_equal(split_cluster(c, 0).labels, [0, 1, 0, 1])


def test_select_split_cluster_largest_scatter_and_unsplittable() -> None:
    pts = np.array([[10, 10], [12, 10], [50, 50], [90, 50], [70, 90]], dtype=np.float64)
    c = Clustering.from_boxes(_boxes_at(pts, 2), (100, 100), np.array([0, 0, 1, 1, 2]))
    assert select_split_cluster(c) == 1  # SSE 0.08 vs 0.0002 vs 0
    same = Clustering.from_boxes(np.tile([[1, 1, 3, 3]], (3, 1)), (10, 10), np.zeros(3, np.int64))
    assert select_split_cluster(same) is None
    assert split_cluster(same, 0) is same
    with pytest.raises(InputError):
        split_cluster(c, 5)


# --------------------------------------------------------------------------- blocks


def test_cluster_blocks_golden() -> None:
    boxes = np.array(
        [[10, 10, 20, 20], [30, 40, 50, 60], [50, 50, 52, 52], [0, 0, 4, 4]], dtype=np.float64
    )
    labels = np.array([5, 5, 8, 9])
    blocks = cluster_blocks(boxes, labels, (100, 100), margin_px=5, min_size_px=32)
    np.testing.assert_array_equal(
        blocks,
        [
            [5, 5, 55, 65],  # hull (10,10)-(50,60) plus 5 px
            [35, 35, 67, 67],  # hull 2x2 + 5 px = 12 px, grown to 32 about the centre 51
            [0, 0, 32, 32],  # 14 px at the corner, grown to 32 and shifted inside
        ],
    )
    frac = cluster_blocks(
        boxes[:2], labels[:2], (100, 100), margin_px=0, margin_frac=0.1, min_size_px=1
    )
    np.testing.assert_array_equal(frac, [[6, 5, 54, 65]])  # 40 x 50 hull, 4 px and 5 px margins


def test_cluster_blocks_properties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        w, h = int(rng.integers(20, 500)), int(rng.integers(20, 500))
        n = int(rng.integers(1, 30))
        xy = rng.uniform(-10, [w + 10, h + 10], (n, 2))
        boxes = np.column_stack([xy, xy + rng.uniform(0, 40, (n, 2))])
        labels = rng.integers(0, 5, n)
        min_size = int(rng.integers(1, 64))
        blocks = cluster_blocks(
            boxes, labels, (w, h), margin_px=float(rng.uniform(0, 10)), min_size_px=min_size
        )
        assert len(blocks) == len(np.unique(labels))
        assert (
            (blocks[:, :2] >= 0).all() and (blocks[:, 2] <= w).all() and (blocks[:, 3] <= h).all()
        )
        assert (blocks[:, 2] - blocks[:, 0] >= min(min_size, w)).all()
        assert (blocks[:, 3] - blocks[:, 1] >= min(min_size, h)).all()
        clipped = np.clip(boxes, 0, [w, h, w, h])
        for k, lab in enumerate(np.unique(labels)):  # every box (clipped) lies in its block
            b = clipped[labels == lab]
            assert (b[:, 0] >= blocks[k, 0]).all() and (b[:, 2] <= blocks[k, 2]).all()
            assert (b[:, 1] >= blocks[k, 1]).all() and (b[:, 3] <= blocks[k, 3]).all()


def test_cluster_areas_golden() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 2, 3], [5, 5, 6, 9]], dtype=np.float64)
    areas = cluster_areas(boxes, np.array([4, 1, 4]))
    assert len(areas) == 2
    np.testing.assert_allclose(areas[0], [6.0])
    np.testing.assert_allclose(areas[1], [100.0, 4.0])
