"""Streaming average precision (sAP, Li et al., ECCV 2020, "Towards Streaming Perception").

A streaming detector is judged on what it has *delivered* by the time each frame is shown, not on
what it eventually computes for that frame. Frame ``i`` of a stream at ``fps`` frames per second
is shown at ``i / fps`` seconds after the stream starts. Its ground truth is compared with the
latest output whose timestamp is ``<= i / fps`` (a zero-order hold of the output stream): an output
keeps standing in for every later frame until a newer one arrives. Frames shown before the first
output have no prediction at all; they still count, so their ground-truth objects are misses.
All frames are then scored together in one standard COCO evaluation, and sAP is its
AP[.5:.95] (paper 004 instantiates its reward on the same rule, eq. (1)).

Timestamps are seconds on the stream's clock (virtual or measured), starting at 0 with frame 0.

Scoring backend. ``pycocotools`` matches detections to ground truth in a pure-Python triple loop
(IoU thresholds x detections x ground truth, once per area range), about 20 s for a 900-frame
stream with 20 objects and 50 detections per frame on one core. :func:`coco_ap` is a NumPy
re-implementation of the same bbox evaluation (same greedy matching, tie-breaking, crowd and
area-range rules, same 101-point interpolation) that runs the detection loop once for all frames,
IoU thresholds and area ranges at a time; the tests check that it returns the numbers of
:func:`~edgerl.vision.metrics.evaluate_detections` on random scenes with crowds, ties and several
classes. :func:`streaming_ap` uses it by default and takes ``backend="pycocotools"`` for the
reference path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections
from edgerl.vision.metrics import AP_KEYS, GroundTruth, evaluate_detections

__all__ = ["StreamOutput", "match_outputs", "streaming_ap", "coco_ap", "SAP_KEYS"]

#: sAP keys of :func:`streaming_ap` and the :func:`evaluate_detections` key each comes from.
SAP_KEYS: dict[str, str] = {
    "sap": "map50_95",
    "sap50": "map50",
    "sap75": "map75",
    "sap_small": "map_small",
    "sap_medium": "map_medium",
    "sap_large": "map_large",
}

# An output is "from the future" when it claims an input frame shown after its own timestamp.
# Timestamps summed in floating point may land a few ulps below ``frame_index / fps``; this slack
# (one nanosecond) absorbs that without admitting any real look-ahead.
_FUTURE_SLACK_S = 1e-9


@dataclass(frozen=True)
class StreamOutput:
    """One result delivered by a streaming detector.

    Attributes:
        time_s: Stream time (s) at which the result became available, >= 0.
        frame_index: Index of the input frame it was computed from (for a forecast: the frame it
            forecasts to).
        detections: The result, xyxy boxes in the frame's pixels.
    """

    time_s: float
    frame_index: int
    detections: Detections

    def __post_init__(self) -> None:
        t = float(self.time_s)
        if not math.isfinite(t):
            raise InputError(f"StreamOutput.time_s must be finite, got {self.time_s!r}")
        if int(self.frame_index) != self.frame_index or int(self.frame_index) < 0:
            raise InputError(
                f"StreamOutput.frame_index must be a non-negative int, got {self.frame_index!r}"
            )
        if not isinstance(self.detections, Detections):
            raise InputError(
                f"StreamOutput.detections must be Detections, got {type(self.detections).__name__}"
            )
        object.__setattr__(self, "time_s", t)
        object.__setattr__(self, "frame_index", int(self.frame_index))


def _check_fps(fps: float) -> float:
    f = float(fps)
    if not (math.isfinite(f) and f > 0):
        raise InputError(f"fps must be a finite number > 0, got {fps!r}")
    return f


def match_outputs(times: Sequence[float] | np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Index of the output each frame is scored against (zero-order hold).

    Frame ``i`` takes the last output ``j`` with ``times[j] <= i / fps``; of several outputs with
    the same timestamp the last one in the sequence wins.

    Args:
        times: Output timestamps in seconds, non-decreasing, all >= 0.
        n_frames: Number of frames in the stream (frame ``i`` shown at ``i / fps``).
        fps: Frame rate of the stream (frames per second, > 0).

    Returns:
        int64 array (n_frames,): output index per frame, -1 where no output has arrived yet.

    Raises:
        InputError: ``fps`` or ``n_frames`` invalid, a timestamp negative or not finite, or the
            timestamps out of order (the first offending position is named).
    """
    fps = _check_fps(fps)
    if int(n_frames) != n_frames or n_frames < 0:
        raise InputError(f"n_frames must be a non-negative int, got {n_frames!r}")
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(t)):
        j = int(np.flatnonzero(~np.isfinite(t))[0])
        raise InputError(f"output {j}: time_s = {float(t[j])!r} is not finite")
    if t.size and t.min() < 0:
        j = int(np.flatnonzero(t < 0)[0])
        raise InputError(
            f"output {j}: time_s = {float(t[j])!r} is before the stream start (times must be >= 0 s)"
        )
    if t.size > 1 and np.any(np.diff(t) < 0):
        j = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
        raise InputError(
            f"output {j}: time_s = {float(t[j])!r} is earlier than output {j - 1} "
            f"({float(t[j - 1])!r}); "
            "outputs must be in non-decreasing time order"
        )
    # Same division as the frame times a simulator writes (i / fps), so an output stamped
    # exactly at a frame's display time is matched to that frame.
    frame_t = np.arange(int(n_frames), dtype=np.float64) / fps
    return np.searchsorted(t, frame_t, side="right").astype(np.int64) - 1


def _check_frame_indices(frame_indices: Sequence[int] | np.ndarray, n: int) -> int:
    """First frame index of a contiguous run of ``n`` frames; InputError on gaps."""
    fi = np.asarray(frame_indices).reshape(-1)
    if fi.size != n:
        raise InputError(f"frame_indices has {fi.size} entries but gts has {n}")
    if n == 0:
        return 0
    if not np.issubdtype(fi.dtype, np.integer):
        raise InputError(f"frame_indices must be integers, got dtype {fi.dtype}")
    first = int(fi[0])
    if first < 0:
        raise InputError(f"frame_indices[0] = {first} is negative")
    expected = first + np.arange(n)
    bad = np.flatnonzero(fi != expected)
    if bad.size:
        k = int(bad[0])
        raise InputError(
            f"frame_indices[{k}] = {int(fi[k])}, expected {int(expected[k])}: the ground truth "
            "must cover consecutive frames without gaps (a frame without objects needs an "
            "empty GroundTruth, not a missing entry)"
        )
    return first


# COCO bbox evaluation constants (pycocotools ``Params.setDetParams``).
_IOU_THRS = np.linspace(0.5, 0.95, 10)
_REC_THRS = np.linspace(0.0, 1.0, 101)
_AREA_RNG = np.array([[0.0, 1e10], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e10]])
# Upper bound on the elements of one padded (groups x dets x IoU thresholds x area ranges x
# ground truth) block, so crowded frames are matched in pieces instead of one huge array.
_BLOCK_ELEMS = 8_000_000


def _xywh32(boxes: np.ndarray) -> np.ndarray:
    """xyxy float32 -> xywh with width/height rounded to float32 (as the COCO files carry them)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    wh = (b[:, 2:] - b[:, :2]).astype(np.float32)
    return np.concatenate([b[:, :2], wh], axis=1).astype(np.float64)


def _pairwise_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO box overlap of padded groups: d (N, D, 4), g (N, G, 4) xywh, crowd (N, G) -> (N, D, G).

    Evaluated in the same order of operations as pycocotools' ``bbIou`` so that results sitting
    exactly on an IoU threshold fall on the same side; against a crowd box the union is the
    detection's own area.
    """
    dx, dy, dw, dh = (d[:, :, None, k] for k in range(4))
    gx, gy, gw, gh = (g[:, None, :, k] for k in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    u = np.where(crowd[:, None, :], da, da + gw * gh - inter)
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, u, out=out, where=(w > 0) & (h > 0) & (u > 0))
    return out


def _match_block(
    iou: np.ndarray,
    d_valid: np.ndarray,
    g_valid: np.ndarray,
    g_crowd: np.ndarray,
    g_ign: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """COCO greedy matching of a block of padded (image, class) groups.

    Args:
        iou: (N, D, G) overlaps, detections in descending score order.
        d_valid: (N, D) real (not padding) detections.
        g_valid: (N, G) real ground truth.
        g_crowd: (N, G) crowd (ignore-region) boxes: may absorb any number of detections.
        g_ign: (N, A, G) ground truth ignored in each area range (crowds, or area outside it).

    Returns:
        matched (N, A, T, D) and matched_to_ignored (N, A, T, D) booleans.
    """
    n, nd, ng = iou.shape
    na, nt = g_ign.shape[1], len(_IOU_THRS)
    thr = np.minimum(_IOU_THRS, 1 - 1e-10)[None, None, :, None]
    taken = np.zeros((n, na, nt, ng), dtype=bool)  # non-crowd ground truth already matched
    matched = np.zeros((n, na, nt, nd), dtype=bool)
    to_ign = np.zeros((n, na, nt, nd), dtype=bool)
    ign = g_ign[:, :, None, :]
    crowd = np.broadcast_to(g_crowd[:, None, None, :], taken.shape)
    for k in range(nd):
        ov = np.where(g_valid, iou[:, k, :], -1.0)[:, None, None, :]
        cand = (ov >= thr) & ~taken & d_valid[:, k, None, None, None]
        # pycocotools scans regular ground truth before ignored ground truth, keeps the best IoU
        # seen (a later equal IoU replaces it) and stops at the first ignored box once a regular
        # one matched: the best regular candidate wins, else the best ignored one.
        reg = cand & ~ign
        irr = cand & ign
        has_reg = reg.any(axis=-1)
        has_ign = irr.any(axis=-1)
        pick = np.where(has_reg[..., None], reg, irr)
        score = np.where(pick, np.broadcast_to(ov, pick.shape), -np.inf)
        m = ng - 1 - np.argmax(score[..., ::-1], axis=-1)  # last of equal maxima
        hit = has_reg | has_ign
        matched[..., k] = hit
        to_ign[..., k] = hit & ~has_reg
        upd = hit & ~np.take_along_axis(crowd, m[..., None], axis=-1)[..., 0]
        if upd.any():
            ii, aa, tt = np.nonzero(upd)
            taken[ii, aa, tt, m[ii, aa, tt]] = True
    return matched, to_ign


def coco_ap(
    gts: Sequence[GroundTruth],
    preds: Sequence[Detections],
    class_map: Mapping[int, int] | None = None,
    max_det: int = 100,
) -> dict[str, float]:
    """COCO box AP of predictions against ground truth, computed with NumPy.

    Returns the AP entries of :func:`~edgerl.vision.metrics.evaluate_detections` (same inputs,
    same rules: ignore regions as crowd boxes, area ranges 32^2/96^2 on box areas, at most
    ``max_det`` detections per image and class) without its per-detection Python loops.

    Args:
        gts: Ground truth, one per image.
        preds: Predictions, one per image, same order.
        class_map: Prediction class id -> ground-truth class id; other classes are dropped.
        max_det: Detections kept per image and class (highest scores first).

    Returns:
        ``map50_95``, ``map50``, ``map75``, ``map_small``, ``map_medium``, ``map_large``; NaN
        where no ground truth falls in that bucket.

    Raises:
        InputError: ``gts`` and ``preds`` differ in length or ``max_det`` < 1.
    """
    if len(gts) != len(preds):
        raise InputError(f"coco_ap: {len(gts)} ground-truth images but {len(preds)} predictions")
    if int(max_det) != max_det or max_det < 1:
        raise InputError(f"coco_ap: max_det must be a positive int, got {max_det!r}")
    max_det = int(max_det)
    nan = {k: math.nan for k in AP_KEYS}
    mapped = list(preds)
    if class_map is not None:
        lookup = {int(k): int(v) for k, v in class_map.items()}
        src = np.asarray(sorted(lookup), dtype=np.int64)
        dst = np.asarray([lookup[k] for k in src.tolist()], dtype=np.int64)
        mapped = []
        for d in preds:
            d = d.select(np.isin(d.classes, src))
            mapped.append(Detections(d.boxes, d.scores, dst[np.searchsorted(src, d.classes)]))
    cats: set[int] = set()
    for g in gts:
        cats.update(g.classes.tolist())
        if g.ignore_classes is not None:
            cats.update(g.ignore_classes.tolist())
    for d in mapped:
        cats.update(d.classes.tolist())
    if not gts or not cats:
        return nan
    cat_ids = np.asarray(sorted(cats), dtype=np.int64)
    n_cat = len(cat_ids)

    # Flat ground truth in pycocotools' per-image order: regular boxes, then ignore regions
    # (a region without a class is one crowd box per category).
    g_box, g_img, g_cat, g_crowd = [], [], [], []
    for i, g in enumerate(gts):
        g_box.append(_xywh32(g.boxes))
        g_img.append(np.full(len(g.boxes), i))
        g_cat.append(np.searchsorted(cat_ids, g.classes))
        g_crowd.append(np.zeros(len(g.boxes), bool))
        if len(g.ignore):
            if g.ignore_classes is None:
                rb = np.repeat(g.ignore, n_cat, axis=0)
                rc = np.tile(np.arange(n_cat), len(g.ignore))
            else:
                rb, rc = g.ignore, np.searchsorted(cat_ids, g.ignore_classes)
            g_box.append(_xywh32(rb))
            g_img.append(np.full(len(rb), i))
            g_cat.append(rc)
            g_crowd.append(np.ones(len(rb), bool))
    gb = np.concatenate(g_box).reshape(-1, 4)
    gkey = np.concatenate(g_img).astype(np.int64) * n_cat + np.concatenate(g_cat)
    gcrowd = np.concatenate(g_crowd)
    garea = gb[:, 2] * gb[:, 3]
    # A ground-truth box is ignored in area range a if it is a crowd or its area lies outside.
    g_out = (garea[:, None] < _AREA_RNG[None, :, 0]) | (garea[:, None] > _AREA_RNG[None, :, 1])
    gign = gcrowd[:, None] | g_out  # (G, A)

    d_box = [_xywh32(d.boxes) for d in mapped]
    db = np.concatenate(d_box).reshape(-1, 4) if d_box else np.zeros((0, 4))
    dscore = np.concatenate([d.scores.astype(np.float64) for d in mapped])
    dimg = np.concatenate([np.full(len(d), i) for i, d in enumerate(mapped)]).astype(np.int64)
    dcat = np.concatenate([np.searchsorted(cat_ids, d.classes) for d in mapped]).astype(np.int64)
    dkey = dimg * n_cat + dcat
    # Per (image, class): highest score first, stable; keep the first max_det.
    order = np.lexsort((-dscore, dkey))
    db, dscore, dkey = db[order], dscore[order], dkey[order]
    starts = np.searchsorted(dkey, dkey, side="left")
    rank = np.arange(len(dkey)) - starts
    keep = rank < max_det
    db, dscore, dkey, rank = db[keep], dscore[keep], dkey[keep], rank[keep]
    darea = db[:, 2] * db[:, 3]
    d_out = (darea[:, None] < _AREA_RNG[None, :, 0]) | (darea[:, None] > _AREA_RNG[None, :, 1])

    gorder = np.argsort(gkey, kind="stable")
    gb, gkey, gcrowd, gign = gb[gorder], gkey[gorder], gcrowd[gorder], gign[gorder]
    gpos = np.arange(len(gkey)) - np.searchsorted(gkey, gkey, side="left")

    # Groups = (image, class) pairs holding a detection or ground truth; padded blocks.
    keys = np.union1d(dkey, gkey)
    nd_per = np.bincount(np.searchsorted(keys, dkey), minlength=len(keys))
    ng_per = np.bincount(np.searchsorted(keys, gkey), minlength=len(keys))
    d_grp = np.searchsorted(keys, dkey)
    g_grp = np.searchsorted(keys, gkey)
    n_a, n_t = len(_AREA_RNG), len(_IOU_THRS)
    has_iou = (nd_per > 0) & (ng_per > 0)
    # Groups without both kinds need no matching: their detections are all unmatched.
    blk_order = np.flatnonzero(has_iou)
    blk_order = blk_order[np.argsort(-(nd_per[blk_order] * ng_per[blk_order]), kind="stable")]
    pos = 0
    matched_d = np.zeros((len(dkey), n_a, n_t), dtype=bool)
    ign_d = np.zeros((len(dkey), n_a, n_t), dtype=bool)
    while pos < len(blk_order):
        nd0, ng0 = int(nd_per[blk_order[pos]]), int(ng_per[blk_order[pos]])
        size = max(1, _BLOCK_ELEMS // max(1, nd0 * ng0 * n_a * n_t))
        grp = blk_order[pos : pos + size]
        pos += len(grp)
        nd_b, ng_b = int(nd_per[grp].max()), int(ng_per[grp].max())
        local = np.full(len(keys), -1)
        local[grp] = np.arange(len(grp))
        dsel = np.flatnonzero(local[d_grp] >= 0)
        gsel = np.flatnonzero(local[g_grp] >= 0)
        dl, gl = local[d_grp[dsel]], local[g_grp[gsel]]
        pd = np.zeros((len(grp), nd_b, 4))
        pg = np.zeros((len(grp), ng_b, 4))
        dv = np.zeros((len(grp), nd_b), bool)
        gv = np.zeros((len(grp), ng_b), bool)
        gc = np.zeros((len(grp), ng_b), bool)
        gi = np.zeros((len(grp), n_a, ng_b), bool)
        pd[dl, rank[dsel]] = db[dsel]
        dv[dl, rank[dsel]] = True
        pg[gl, gpos[gsel]] = gb[gsel]
        gv[gl, gpos[gsel]] = True
        gc[gl, gpos[gsel]] = gcrowd[gsel]
        gi[gl, :, gpos[gsel]] = gign[gsel]
        m, ig = _match_block(_pairwise_iou(pd, pg, gc), dv, gv, gc, gi)
        matched_d[dsel] = m[dl, :, :, rank[dsel]]
        ign_d[dsel] = ig[dl, :, :, rank[dsel]]
    # Unmatched detections outside the area range are ignored.
    ign_d |= ~matched_d & d_out[:, :, None]
    tp = matched_d & ~ign_d
    fp = ~matched_d & ~ign_d

    # Accumulate per class over all images: pycocotools concatenates images in order, each in
    # score order, then sorts stably by score.
    prec = -np.ones((n_t, len(_REC_THRS), n_cat, n_a))
    d_cat = dkey % n_cat
    d_img = dkey // n_cat
    g_cat = gkey % n_cat
    npig = np.zeros((n_cat, n_a), dtype=np.int64)
    np.add.at(npig, g_cat, ~gign)
    for k in range(n_cat):
        sel = np.flatnonzero(d_cat == k)
        sel = sel[np.lexsort((rank[sel], d_img[sel], -dscore[sel]))]
        for a in range(n_a):
            if npig[k, a] == 0:
                continue
            nd_k = len(sel)
            if nd_k == 0:
                prec[:, :, k, a] = 0.0
                continue
            tps = np.cumsum(tp[sel, a, :], axis=0).T.astype(np.float64)  # (T, nd)
            fps = np.cumsum(fp[sel, a, :], axis=0).T.astype(np.float64)
            rc = tps / npig[k, a]
            pr = tps / (fps + tps + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            for t in range(n_t):
                idx = np.searchsorted(rc[t], _REC_THRS, side="left")
                ok = idx < nd_k
                prec[t, :, k, a] = np.where(ok, pr[t, np.minimum(idx, nd_k - 1)], 0.0)

    def mean_valid(x: np.ndarray) -> float:
        v = x[x > -1]
        return float(v.mean()) if v.size else math.nan

    t50 = int(np.argmin(np.abs(_IOU_THRS - 0.5)))
    t75 = int(np.argmin(np.abs(_IOU_THRS - 0.75)))
    return {
        "map50_95": mean_valid(prec[:, :, :, 0]),
        "map50": mean_valid(prec[t50, :, :, 0]),
        "map75": mean_valid(prec[t75, :, :, 0]),
        "map_small": mean_valid(prec[:, :, :, 1]),
        "map_medium": mean_valid(prec[:, :, :, 2]),
        "map_large": mean_valid(prec[:, :, :, 3]),
    }


def streaming_ap(
    gts: Sequence[GroundTruth],
    outputs: Sequence[StreamOutput],
    fps: float = 30.0,
    class_map: Mapping[int, int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
    frame_indices: Sequence[int] | np.ndarray | None = None,
    backend: Literal["numpy", "pycocotools"] = "numpy",
) -> dict[str, float]:
    """Streaming AP of an output stream against per-frame ground truth.

    Args:
        gts: Ground truth of consecutive frames (one entry per frame, empty frames included).
        outputs: Results in the order they were delivered (non-decreasing ``time_s``).
        fps: Frame rate of the stream (frames per second).
        class_map: Prediction class id -> ground-truth class id, as in
            :func:`~edgerl.vision.metrics.evaluate_detections`.
        max_dets: Detection caps per frame and category (AP uses the largest).
        frame_indices: Stream frame index of each ``gts`` entry; must be consecutive
            (``k, k + 1, ...``). None means ``0, 1, ..., len(gts) - 1``. Use it to score a
            segment of a stream, e.g. the frames between two decisions of an adaptive policy.
        backend: ``"numpy"`` (:func:`coco_ap`, fast) or ``"pycocotools"`` (the reference
            :func:`~edgerl.vision.metrics.evaluate_detections`); both give the same numbers.

    Returns:
        Flat dict: ``sap``, ``sap50``, ``sap75``, ``sap_small``, ``sap_medium``, ``sap_large``
        (in [0, 1]; NaN where no ground truth falls in that bucket); ``n_frames`` (frames scored);
        ``n_outputs`` (outputs given); ``n_missed_frames`` (frames before the first output, scored
        with an empty prediction); ``n_in_time`` (distinct outputs that some frame is scored
        against); ``n_current_frames`` (frames whose output was computed from that very frame,
        Li et al.'s "in time" count); ``mean_frame_lag`` (mean of ``i - frame_index`` over frames
        with an output, in frames; NaN if none).

    Raises:
        InputError: Outputs out of time order, before the stream start, or from the future
            (``frame_index / fps > time_s``); ``frame_indices`` with gaps; invalid ``fps``.
    """
    fps = _check_fps(fps)
    n = len(gts)
    first = 0 if frame_indices is None else _check_frame_indices(frame_indices, n)
    out_frames = np.fromiter((o.frame_index for o in outputs), dtype=np.int64, count=len(outputs))
    times = np.fromiter((o.time_s for o in outputs), dtype=np.float64, count=len(outputs))
    matched = match_outputs(times, first + n, fps)[first:]
    future = out_frames / fps > times + _FUTURE_SLACK_S
    if np.any(future):
        j = int(np.flatnonzero(future)[0])
        raise InputError(
            f"output {j}: frame_index = {int(out_frames[j])} is shown at "
            f"{out_frames[j] / fps:.6f} s, after its time_s = {times[j]:.6f} s "
            "(an output cannot use a frame from the future)"
        )
    has = matched >= 0
    empty = Detections.empty()
    preds = [outputs[j].detections if j >= 0 else empty for j in matched.tolist()]
    if backend == "numpy":
        caps = [int(m) for m in max_dets]
        if not caps or min(caps) < 1:
            raise InputError(f"max_dets must hold positive ints, got {tuple(max_dets)}")
        metrics = coco_ap(gts, preds, class_map=class_map, max_det=max(caps))
    elif backend == "pycocotools":
        metrics = evaluate_detections(gts, preds, class_map=class_map, max_dets=max_dets)
    else:
        raise InputError(f"backend must be 'numpy' or 'pycocotools', got {backend!r}")
    frames = first + np.arange(n)
    lag = frames[has] - out_frames[matched[has]]
    result: dict[str, float] = {k: metrics[src] for k, src in SAP_KEYS.items()}
    result.update(
        n_frames=n,
        n_outputs=len(outputs),
        n_missed_frames=int(n - has.sum()),
        n_in_time=int(np.unique(matched[has]).size),
        n_current_frames=int(np.sum(lag == 0)),
        mean_frame_lag=float(lag.mean()) if lag.size else math.nan,
    )
    return result
