"""Joint greedy decoding of branch scores against a brute-force search over valid actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgerl.cerl.dqn import CerlQNetwork, QNetConfig, graph_batch, greedy_actions, joint_q
from edgerl.cerl.env import CerlEnv, MaskTables, TaskView


def _row_score(scores: list[np.ndarray], m: int, row: np.ndarray) -> float:
    d, j, s, w = (int(v) for v in row)
    blk, shr = scores[1][m], scores[2][m]
    blk = blk[d] if blk.ndim == 2 else blk
    shr = shr[d] if shr.ndim == 2 else shr
    return float(scores[0][m][d] + blk[j] + shr[s] + scores[3][m][w])


def _brute_force(env: CerlEnv, obs: dict, scores: list[np.ndarray]) -> np.ndarray:
    """Task slot by task slot, the valid row of largest summed score given the earlier rows.

    Enumerates every valid (d, j, s, w) of the slot with the masks of the decoder's views.
    """
    dec = env.decoder
    tables, _ = MaskTables.from_obs(obs)
    free_pct = tables.free_share_pct.astype(np.int64).copy()
    free_sc = tables.free_subcarriers.astype(bool).copy()
    out = np.zeros((dec.max_tasks, 4), dtype=np.int64)
    for m in range(dec.max_tasks):
        view = TaskView(dec, tables, m, free_pct, free_sc)
        if not view.deciding[0]:
            continue
        best, best_row = -np.inf, None
        for d in np.flatnonzero(view.node_mask()[0]):
            da = np.array([d])
            for j in np.flatnonzero(view.block_mask(da)[0]):
                ja = np.array([j])
                for s in np.flatnonzero(view.share_mask(da, ja)[0]):
                    for w in np.flatnonzero(view.subcarrier_mask(da)[0]):
                        row = np.array([d, j, s, w])
                        v = _row_score(scores, m, row)
                        if v > best:
                            best, best_row = v, row
        assert best_row is not None
        view.commit(best_row[None], free_pct, free_sc)
        out[m] = best_row
    return out


@pytest.mark.parametrize("conditional", [True, False])
def test_greedy_joint_equals_brute_force(conditional: bool) -> None:
    env = CerlEnv(
        n_devices=3,
        max_tasks=3,
        arrival_rate_per_s=1.5,
        share_levels_pct=(25, 50, 100),
        n_subcarriers=2,
        slot_s=0.5,
    )
    rng = np.random.default_rng(0)
    n1, nb, nk, ns = env.decoder.nvec
    checked = 0
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        for _ in range(6):
            m = env.config.max_tasks
            blk_shape = (m, n1, nb) if conditional else (m, nb)
            shr_shape = (m, n1, nk) if conditional else (m, nk)
            scores = [
                rng.normal(size=(m, n1)),
                rng.normal(size=blk_shape),
                rng.normal(size=shr_shape),
                rng.normal(size=(m, ns)),
            ]
            got = env.decoder.greedy_joint(obs, scores)
            want = _brute_force(env, obs, scores)
            dec = obs["task_deciding"].astype(bool)
            # Same summed score per task slot (ties between equal sums are measure-zero).
            np.testing.assert_array_equal(got[dec], want[dec])
            checked += int(dec.sum())
            obs, *_ = env.step(got)  # raises if the decoded action left the masks
    assert checked >= 10


def test_greedy_joint_beats_branchwise_on_its_own_objective() -> None:
    # Node 1 has the best node score, but node 2's block and share scores outweigh it.
    env = CerlEnv(
        n_devices=2, max_tasks=1, arrival_rate_per_s=0.0, share_levels_pct=(50, 100), slot_s=1.0
    )
    obs, _ = env.reset(
        seed=0,
        options={
            "device_positions_m": [[260.0, 250.0], [240.0, 250.0]],
            "device_capacities_ghz": [1.0, 1.0],
            "initial_tasks": [1],
        },
    )
    n1, nb, nk, ns = env.decoder.nvec
    node = np.array([[-5.0, 1.0, 0.5]])  # branchwise picks node 1 (the source device)
    block = np.zeros((1, n1, nb))
    block[0, 2, 8] = 3.0  # the whole model on node 2: 0.5 + 3 > 1 + 0
    share = np.zeros((1, n1, nk))
    sub = np.zeros((1, ns))
    scores = [node, block, share, sub]
    branchwise = env.decoder.greedy(obs, scores)
    joint = env.decoder.greedy_joint(obs, scores)
    assert branchwise[0, 0] == 1
    assert joint[0, 0] == 2 and joint[0, 1] == 8
    # Summed scores: joint 0.5 + 3 + 0 + 0 = 3.5; branchwise 1 + 0 + 0 + 0 = 1.
    assert _row_score(scores, 0, joint[0]) == pytest.approx(3.5)
    assert _row_score(scores, 0, branchwise[0]) == pytest.approx(1.0)


def test_joint_decoding_maximises_the_network_joint_value() -> None:
    # With one deciding task slot, the joint-decoded action's Q is the max over all valid
    # actions (enumerated by iter_actions); the branchwise action's Q is never above it.
    env = CerlEnv(
        n_devices=2, max_tasks=1, arrival_rate_per_s=0.0, share_levels_pct=(50, 100), slot_s=1.0
    )
    torch.manual_seed(0)
    net = CerlQNetwork(3, 2, env.config.n_subcarriers, QNetConfig(gcn_dims=(16, 16), hidden_dim=16))
    net.eval()
    for seed in range(3):
        obs, _ = env.reset(seed=seed, options={"initial_tasks": [1]})
        b = graph_batch(obs)
        with torch.no_grad():
            values = net(b)
            q_all = np.array(
                [
                    float(joint_q(values, torch.from_numpy(a[None]), b.deciding))
                    for a in env.decoder.iter_actions(obs)
                ]
            )
        joint = greedy_actions(env.decoder, obs, values, joint=True)
        branchwise = greedy_actions(env.decoder, obs, values, joint=False)
        with torch.no_grad():
            q_joint = float(joint_q(values, torch.from_numpy(joint[None]), b.deciding))
            q_branch = float(joint_q(values, torch.from_numpy(branchwise[None]), b.deciding))
        assert q_joint == pytest.approx(float(q_all.max()), abs=1e-5)
        assert q_branch <= q_joint + 1e-6
