"""RL-DCA: the cluster-adjustment environment of RE-POSE (Sec. III-A3, eqs. (2)-(16)).

Paper: Shi et al., "RE-POSE: Synergizing Reinforcement Learning-Based Partitioning and
Offloading for Edge Object Detection".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field, model_validator

from edgerl.repose.clustering import (
    Clustering,
    initial_clusters,
    merge_closest,
    select_split_cluster,
    split_cluster,
)
from edgerl.utils.config import Config
from edgerl.utils.errors import InputError
from edgerl.vision.detections import Detections

__all__ = [
    "ACTION_KEEP",
    "ACTION_MERGE",
    "ACTION_SPLIT",
    "ENV_ID",
    "RLDCAConfig",
    "RLDCAEnv",
    "RewardTerms",
    "apply_action",
    "greedy_refine",
    "observe",
    "register_envs",
    "reward_terms",
    "synthetic_frames",
]

ENV_ID = "edgerl/RLDCA-v0"

ACTION_KEEP = 0
ACTION_MERGE = 1
ACTION_SPLIT = 2

#: Features per cluster in the observation: (mu_x, mu_y, mu_w, mu_h, S) of eq. (2).
N_CLUSTER_FEATURES = 5

Frame = tuple[np.ndarray | Detections, tuple[int, int]]


class RLDCAConfig(Config):
    """RL-DCA environment and inference settings (RE-POSE Sec. III-A)."""

    alpha_t: float = Field(0.5, gt=0.0, lt=1.0)
    """Exponent alpha_T of the y-transform y_T = y**alpha_T before MeanShift (eq. (1))."""

    bandwidth: float | None = Field(None, gt=0.0)
    """MeanShift bandwidth as a fraction of the frame (transformed units); None: estimated."""

    bandwidth_quantile: float = Field(0.3, gt=0.0, le=1.0)
    """Quantile of the bandwidth estimate (k-th neighbour with k = quantile * N)."""

    bin_seeding: bool = False
    """Seed MeanShift from a grid of pitch = bandwidth instead of from every detection."""

    weight_tightness: float = Field(10.0, ge=0.0)
    """alpha of eq. (16): weight of the tightness penalty R1 (eq. (12))."""

    weight_area_variance: float = Field(1.0, ge=0.0)
    """beta of eq. (16): weight of the area-variance penalty R2 (eq. (13))."""

    weight_count: float = Field(1.0, ge=0.0)
    """gamma of eq. (16): weight of the cluster-count penalty R3 (eq. (14))."""

    weight_close_pairs: float = Field(0.5, ge=0.0)
    """delta of eq. (16): weight of the close-cluster penalty R4 (eq. (15))."""

    n_min: int = Field(2, ge=0)
    """N_min of eq. (14): fewer clusters than this are penalised."""

    n_max: int = Field(8, ge=1)
    """N_max of eq. (14): more clusters than this are penalised."""

    d_m_frac: float = Field(0.05, ge=0.0)
    """d_m of eq. (15): minimum centroid distance, in normalised frame units (x/W, y/H)."""

    t_max: int = Field(8, ge=1)
    """T_max: steps per episode and greedy inference steps (Algorithm 1)."""

    n_max_obs: int = Field(16, ge=1)
    """Clusters in the observation (padded with zeros / truncated, Sec. III-A3b)."""

    @model_validator(mode="after")
    def _check_ranges(self) -> RLDCAConfig:
        if self.n_min > self.n_max:
            raise ValueError(f"n_min ({self.n_min}) must be <= n_max ({self.n_max})")
        if self.n_max > self.n_max_obs:
            raise ValueError(
                f"n_max ({self.n_max}) must be <= n_max_obs ({self.n_max_obs}) so that every "
                "cluster of an unpenalised clustering is observed"
            )
        return self


# --------------------------------------------------------------------------- reward


@dataclass(frozen=True)
class RewardTerms:
    """The four reward components of eqs. (12)-(15) (all <= 0).

    Attributes:
        tightness: R1, eq. (12), minus the mean over clusters of the mean member-to-centroid
            distance (normalised frame units).
        area_variance: R2, eq. (13), minus the mean over clusters of the variance of member
            areas (areas in units of the frame's mean box area, population variance).
        count: R3, eq. (14), minus the distance of N to the range [N_min, N_max].
        close_pairs: R4, eq. (15), minus the number of cluster pairs closer than d_m.
    """

    tightness: float
    area_variance: float
    count: float
    close_pairs: float

    def total(self, cfg: RLDCAConfig) -> float:
        """The combined reward of eq. (16)."""
        return (
            cfg.weight_tightness * self.tightness
            + cfg.weight_area_variance * self.area_variance
            + cfg.weight_count * self.count
            + cfg.weight_close_pairs * self.close_pairs
        )


def reward_terms(clustering: Clustering, cfg: RLDCAConfig) -> RewardTerms:
    """R1..R4 of eqs. (12)-(15) for a clustering (vectorised; O(N + K^2)).

    Means over clusters are 0 when there are no clusters.
    """
    c = clustering
    k = c.n_clusters
    if k == 0:
        r1 = r2 = 0.0
    else:
        cnt = np.maximum(c.counts, 1)
        # eq. (12): R1 = -(1/N) sum_i (1/S_i) sum_{(x,y) in C_i} ||(x,y) - (mu_x, mu_y)||
        dist = np.linalg.norm(c.xy - c.centroids[c.labels], axis=1)
        r1 = -float(np.mean(np.bincount(c.labels, weights=dist, minlength=k) / cnt))
        # eq. (13): R2 = -(1/N) sum_i Var(A_i1 .. A_iS_i), two-pass population variance
        mean_a = np.bincount(c.labels, weights=c.area, minlength=k) / cnt
        dev = c.area - mean_a[c.labels]
        r2 = -float(np.mean(np.bincount(c.labels, weights=dev * dev, minlength=k) / cnt))
    # eq. (14): linear penalty outside [N_min, N_max]
    if k < cfg.n_min:
        r3 = -float(cfg.n_min - k)
    elif k > cfg.n_max:
        r3 = -float(k - cfg.n_max)
    else:
        r3 = 0.0
    # eq. (15): R4 = -(1/2) sum_{i != j} 1(||mu_i - mu_j|| < d_m) = -#{pairs i < j closer than d_m}
    if k >= 2:
        diff = c.centroids[:, None, :] - c.centroids[None, :, :]
        close = np.sqrt((diff * diff).sum(axis=-1)) < cfg.d_m_frac
        r4 = -float(np.triu(close, 1).sum())
    else:
        r4 = 0.0
    return RewardTerms(r1, r2, r3, r4)


# --------------------------------------------------------------------------- state and actions


def observe(clustering: Clustering, n_max_obs: int) -> np.ndarray:
    """The state vector of eq. (2), padded/truncated to ``n_max_obs`` clusters, plus N.

    Per cluster ``(mu_x, mu_y, mu_w, mu_h, S_i / N_det)``: centroid and mean box size in
    normalised frame units and the share of the frame's detections. Clusters are ordered by size
    (descending), then ``mu_y``, then ``mu_x`` (ascending), so the largest are kept when
    truncating; missing clusters are zeros. The last entry is ``min(K, n_max_obs) / n_max_obs``.

    Returns:
        float32 array of length ``5 * n_max_obs + 1``, all entries in ``[0, 1]``.
    """
    obs = np.zeros(N_CLUSTER_FEATURES * n_max_obs + 1, dtype=np.float32)
    k = clustering.n_clusters
    if k:
        st = clustering.stats()
        st[:, 4] /= max(clustering.n_detections, 1)
        order = np.lexsort((st[:, 0], st[:, 1], -st[:, 4]))[:n_max_obs]
        rows = np.clip(st[order], 0.0, 1.0)
        obs[: rows.size] = rows.reshape(-1)
    obs[-1] = min(k, n_max_obs) / n_max_obs
    return obs


def action_mask(clustering: Clustering) -> np.ndarray:
    """Boolean mask of the actions that change the clustering (keep is always allowed)."""
    return np.array(
        [True, clustering.n_clusters >= 2, select_split_cluster(clustering) is not None]
    )


def apply_action(clustering: Clustering, action: int) -> tuple[Clustering, bool]:
    """Apply keep (eq. (3)), merge (eqs. (4)-(6)) or split (eqs. (7)-(10)).

    Invalid actions (merge with fewer than two clusters, split when no cluster has two distinct
    centres) leave the clustering unchanged, like keep.

    Returns:
        ``(new_clustering, valid)`` where ``valid`` is False for an invalid action.
    """
    if action == ACTION_KEEP:
        return clustering, True
    if action == ACTION_MERGE:
        if clustering.n_clusters < 2:
            return clustering, False
        return merge_closest(clustering), True
    if action == ACTION_SPLIT:
        i = select_split_cluster(clustering)
        if i is None:
            return clustering, False
        return split_cluster(clustering, i), True
    raise InputError(f"action must be 0 (keep), 1 (merge) or 2 (split), got {action!r}")


def _frame_boxes(frame: Any, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    try:
        boxes, frame_wh = frame
    except (TypeError, ValueError):
        raise InputError(
            f"{where} must be a (boxes, (width, height)) pair, got {type(frame).__name__}"
        ) from None
    if isinstance(boxes, Detections):
        boxes = boxes.boxes
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise InputError(f"{where}: boxes must be a finite (N, 4) xyxy array, got {b.shape}")
    try:
        w, h = (int(v) for v in frame_wh)
    except (TypeError, ValueError):
        raise InputError(f"{where}: frame size must be (width, height), got {frame_wh!r}") from None
    if w <= 0 or h <= 0:
        raise InputError(f"{where}: frame size must be positive, got {frame_wh!r}")
    return b, (w, h)


def _initial_clustering(
    boxes: np.ndarray, frame_wh: tuple[int, int], cfg: RLDCAConfig
) -> Clustering:
    labels = initial_clusters(
        boxes,
        frame_wh,
        cfg.alpha_t,
        cfg.bandwidth,
        quantile=cfg.bandwidth_quantile,
        bin_seeding=cfg.bin_seeding,
    )
    return Clustering.from_boxes(boxes, frame_wh, labels)


# --------------------------------------------------------------------------- synthetic frames


def synthetic_frames(
    n_frames: int = 32,
    seed: int = 0,
    frame_wh: tuple[int, int] = (3840, 2160),
    max_groups: int = 8,
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Detection sets of crowd-like frames with perspective, for training and defaults.

    Each frame holds 1..``max_groups`` groups of person boxes; a group's box height grows with
    its vertical position (small far away at the top, large near the bottom, as in PANDA) and
    its spread grows with the box size.

    Args:
        n_frames: number of frames.
        seed: seed of the generator.
        frame_wh: frame (width, height) in pixels.
        max_groups: most groups per frame.

    Returns:
        List of ``(boxes (N, 4) float32 xyxy, frame_wh)``.
    """
    rng = np.random.default_rng(seed)
    w, h = frame_wh
    frames = []
    for _ in range(n_frames):
        groups = []
        for _ in range(int(rng.integers(1, max_groups + 1))):
            cy = rng.uniform(0.15, 0.95)
            cx = rng.uniform(0.05, 0.95)
            box_h = h * (0.01 + 0.12 * cy**2) * rng.uniform(0.8, 1.25)
            n = int(rng.integers(2, 40))
            spread = box_h * rng.uniform(0.5, 3.0)
            xc = cx * w + rng.normal(0.0, spread, n)
            yc = cy * h + rng.normal(0.0, 0.5 * spread, n)
            bh = box_h * rng.uniform(0.85, 1.15, n) * (1.0 + 0.5 * (yc / h - cy))
            bw = 0.4 * bh * rng.uniform(0.8, 1.2, n)
            groups.append(np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], axis=1))
        boxes = np.clip(np.concatenate(groups), 0.0, [w, h, w, h])
        keep = (boxes[:, 2] - boxes[:, 0] >= 2.0) & (boxes[:, 3] - boxes[:, 1] >= 2.0)
        frames.append((boxes[keep].astype(np.float32), (w, h)))
    return frames


# --------------------------------------------------------------------------- environment


class RLDCAEnv(gym.Env[np.ndarray, np.int64]):
    """Refine a MeanShift clustering of one frame's detections by merging and splitting.

    RE-POSE RL-DCA (Sec. III-A3). Paper: Shi et al., RE-POSE. One episode refines the clustering
    of one frame.

    ## Description
    At reset a frame (a set of coarse detections) is drawn and clustered with the y-transform
    and MeanShift (eq. (1), Sec. III-A2); the initial clustering of each frame is computed once
    and cached. Each step applies keep, merge or split and rewards the new clustering.

    ## Action Space
    ``Discrete(3)``: 0 keep (eq. (3)); 1 merge the two clusters with the closest centroids
    (eqs. (4)-(6)); 2 split the cluster with the largest scatter by 1-D 2-means along its axis
    of larger variance (eqs. (7)-(10), see
    :func:`~edgerl.repose.clustering.select_split_cluster`). Invalid actions (merge with one
    cluster, split with no splittable cluster) are no-ops that get the reward of keep;
    ``info["action_valid"]`` reports them and :meth:`action_masks` lists the valid ones (for
    maskable policies).

    ## Observation Space
    ``Box(0, 1, (5 * n_max_obs + 1,), float32)``: per cluster ``(mu_x, mu_y, mu_w, mu_h,
    S_i / N_det)`` with centroid and mean box size as fractions of the frame width/height and
    the cluster's share of detections; sorted by size, then ``mu_y``, ``mu_x``; padded with zeros
    or truncated to ``n_max_obs`` clusters (eq. (2)); last entry ``min(K, n_max_obs)/n_max_obs``.

    ## Rewards
    ``alpha R1 + beta R2 + gamma R3 + delta R4`` (eq. (16)) of the clustering after the action:
    tightness (eq. (12)), area variance (eq. (13)), count outside ``[n_min, n_max]``
    (eq. (14)), pairs of centroids closer than ``d_m_frac`` (eq. (15)). See :class:`RewardTerms`.

    ## Starting State
    The MeanShift clustering of a frame drawn uniformly with ``self.np_random`` (or the frame
    ``options["frame_index"]``).

    ## Episode End
    Never terminated; truncated after ``t_max`` steps (Algorithm 1 runs exactly T_max steps).

    ## Arguments
    ``frames``: sequence of ``(boxes, (width, height))`` with boxes an (N, 4) xyxy array or a
    :class:`~edgerl.vision.detections.Detections`; ``None`` uses :func:`synthetic_frames`.
    ``config``: :class:`RLDCAConfig` (or a dict of its fields). ``render_mode``: must be None.

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        frames: Sequence[Frame] | None = None,
        config: RLDCAConfig | dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise InputError(f"RLDCAEnv has no render modes, got render_mode={render_mode!r}")
        if config is None:
            config = RLDCAConfig()
        elif isinstance(config, dict):
            config = RLDCAConfig(**config)
        self.config: RLDCAConfig = config
        if frames is None:
            frames = synthetic_frames()
        self._frames = [_frame_boxes(f, f"frames[{i}]") for i, f in enumerate(frames)]
        if not self._frames:
            raise InputError("frames must hold at least one (boxes, frame size) pair")
        self._initial: dict[int, Clustering] = {}
        n = config.n_max_obs
        self.action_space = spaces.Discrete(3)
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(N_CLUSTER_FEATURES * n + 1,), dtype=np.float32
        )
        self.render_mode = render_mode
        self._clustering: Clustering | None = None
        self._frame_index = -1
        self._t = 0

    @property
    def clustering(self) -> Clustering:
        """The current clustering (after :meth:`reset`)."""
        if self._clustering is None:
            raise RuntimeError("call reset() before reading the clustering")
        return self._clustering

    @property
    def n_frames(self) -> int:
        """Number of frames the environment draws from."""
        return len(self._frames)

    def _initial_for(self, index: int) -> Clustering:
        c = self._initial.get(index)
        if c is None:
            boxes, wh = self._frames[index]
            c = _initial_clustering(boxes, wh, self.config)
            self._initial[index] = c
        return c

    def _info(self, terms: RewardTerms | None, valid: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "frame_index": self._frame_index,
            "n_clusters": self.clustering.n_clusters,
            "action_valid": valid,
        }
        if terms is not None:
            info["reward_terms"] = asdict(terms)
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a frame and return the observation of its MeanShift clustering."""
        super().reset(seed=seed)
        if options and "frame_index" in options:
            idx = int(options["frame_index"])
            if not 0 <= idx < len(self._frames):
                raise InputError(
                    f"options['frame_index'] = {idx} out of range 0..{len(self._frames) - 1}"
                )
        else:
            idx = int(self.np_random.integers(len(self._frames)))
        self._frame_index = idx
        self._clustering = self._initial_for(idx)
        self._t = 0
        return observe(self._clustering, self.config.n_max_obs), self._info(None, True)

    def step(
        self, action: int | np.integer
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply an action; reward the resulting clustering (eq. (16))."""
        if self._clustering is None:
            raise RuntimeError("call reset() before step()")
        self._clustering, valid = apply_action(self._clustering, int(action))
        self._t += 1
        terms = reward_terms(self._clustering, self.config)
        reward = terms.total(self.config)
        truncated = self._t >= self.config.t_max
        obs = observe(self._clustering, self.config.n_max_obs)
        return obs, float(reward), False, truncated, self._info(terms, valid)

    def action_masks(self) -> np.ndarray:
        """Valid actions of the current state, (3,) bool (keep is always valid)."""
        return action_mask(self.clustering)


# --------------------------------------------------------------------------- inference


def greedy_refine(
    policy_fn: Callable[[np.ndarray], int | np.integer],
    boxes: np.ndarray | Detections,
    frame_wh: tuple[int, int],
    cfg: RLDCAConfig | None = None,
) -> np.ndarray:
    """RL-DCA inference (Algorithm 1, steps 2-3): MeanShift, then ``t_max`` policy steps.

    Args:
        policy_fn: maps an observation (as in :class:`RLDCAEnv`) to an action in {0, 1, 2}; for a
            PPO model use ``lambda o: model.predict(o, deterministic=True)[0]`` (the greedy
            ``argmax_a pi(a | s)`` of Algorithm 1).
        boxes: (N, 4) xyxy detections of the frame (or a Detections).
        frame_wh: frame (width, height) in pixels.
        cfg: settings; defaults when None.

    Returns:
        (N,) int64 cluster labels ``0 .. K-1`` of the final clustering.
    """
    cfg = cfg or RLDCAConfig()
    b, wh = _frame_boxes((boxes, frame_wh), "greedy_refine input")
    c = _initial_clustering(b, wh, cfg)
    for _ in range(cfg.t_max):
        action = int(policy_fn(observe(c, cfg.n_max_obs)))
        c, _ = apply_action(c, action)
    return c.labels.copy()


def register_envs() -> None:
    """Register ``edgerl/RLDCA-v0`` with Gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="edgerl.repose.env:RLDCAEnv")
