"""GAE, PPO losses, masked categorical, value normalisation and the Lagrange multiplier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgerl.rl.onpolicy import (
    LagrangeMultiplier,
    ValueNorm,
    clipped_value_loss,
    gae,
    lagrangian_advantage,
    masked_categorical,
    normalize_advantages,
    ppo_policy_loss,
)
from edgerl.utils.errors import InputError

# --------------------------------------------------------------------------- GAE


def test_gae_three_steps_by_hand() -> None:
    # gamma = 0.5, lam = 0.5 (gamma * lam = 0.25); the episode ends after step 1.
    r = np.array([1.0, 2.0, 3.0])
    v = np.array([0.5, 1.0, 2.0])
    d = np.array([0, 1, 0])
    last = 4.0
    adv, ret = gae(r, v, d, last, gamma=0.5, lam=0.5)
    # delta_2 = 3 + 0.5 * 4 - 2     = 3.0   (bootstrap from last_value)
    # delta_1 = 2 + 0.5 * 0 - 1     = 1.0   (episode end: no next value)
    # delta_0 = 1 + 0.5 * 1 - 0.5   = 1.0
    # A_2 = 3.0; A_1 = 1.0 (no carry across the end); A_0 = 1.0 + 0.25 * 1.0 = 1.25
    np.testing.assert_allclose(adv, [1.25, 1.0, 3.0])
    np.testing.assert_allclose(ret, [1.75, 2.0, 5.0])


def test_gae_truncation_by_hand() -> None:
    # Same rollout, but the end after step 1 is a time-limit cut with V(final obs) = 6.
    r = np.array([1.0, 2.0, 3.0])
    v = np.array([0.5, 1.0, 2.0])
    d = np.array([0, 1, 0])
    boot = np.array([0.0, 6.0, 0.0])
    adv, _ = gae(r, v, d, 4.0, 0.5, 0.5, truncated=np.array([0, 1, 0]), bootstrap_values=boot)
    # delta_1 = 2 + 0.5 * 6 - 1 = 4.0; still no carry into step 2: A_0 = 1.0 + 0.25 * 4 = 2.0
    np.testing.assert_allclose(adv, [2.0, 4.0, 3.0])


def _gae_reference(r, v, d, last, gamma, lam):
    """Naive O(T^2) per-element sum: A_t = sum_l (gamma lam)^l delta_{t+l} within the episode."""
    t_len = r.shape[0]
    r2 = r.reshape(t_len, -1)
    v2 = v.reshape(t_len, -1)
    d2 = np.broadcast_to(d.reshape(d.shape + (1,) * (r.ndim - d.ndim)), r.shape).reshape(t_len, -1)
    last2 = np.broadcast_to(last, r.shape[1:]).reshape(-1)
    out = np.zeros_like(r2)
    for j in range(r2.shape[1]):
        delta = np.zeros(t_len)
        for t in range(t_len):
            if d2[t, j]:
                nxt = 0.0
            elif t == t_len - 1:
                nxt = last2[j]
            else:
                nxt = v2[t + 1, j]
            delta[t] = r2[t, j] + gamma * nxt - v2[t, j]
        for t in range(t_len):
            total = 0.0
            for k in range(t, t_len):
                total += (gamma * lam) ** (k - t) * delta[k]
                if d2[k, j]:
                    break
            out[t, j] = total
    return out.reshape(r.shape)


@pytest.mark.parametrize("shape", [(17,), (17, 4)])
def test_gae_matches_naive_reference(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=shape)
    v = rng.normal(size=shape)
    d = (rng.random(shape) < 0.2).astype(np.float64)
    last = rng.normal(size=shape[1:])
    adv, ret = gae(r, v, d, last, gamma=0.9, lam=0.8)
    ref = _gae_reference(r, v, d, last, 0.9, 0.8)
    assert adv.shape == shape
    np.testing.assert_allclose(adv, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret, ref + v, rtol=1e-12, atol=1e-12)
    # The torch path gives the same numbers.
    adv_t, ret_t = gae(torch.from_numpy(r), torch.from_numpy(v), torch.from_numpy(d),
                       torch.from_numpy(np.asarray(last)), gamma=0.9, lam=0.8)
    assert isinstance(adv_t, torch.Tensor) and adv_t.dtype == torch.float64
    np.testing.assert_allclose(adv_t.numpy(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret_t.numpy(), ref + v, rtol=1e-12, atol=1e-12)


def test_gae_shared_dones_broadcast_over_agents() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=(12, 3))
    v = rng.normal(size=(12, 3))
    d = (rng.random(12) < 0.3).astype(np.float64)
    adv, _ = gae(r, v, d, np.zeros(3), 0.99, 0.95)
    adv_full, _ = gae(r, v, np.repeat(d[:, None], 3, 1), np.zeros(3), 0.99, 0.95)
    np.testing.assert_allclose(adv, adv_full)
    np.testing.assert_allclose(adv, _gae_reference(r, v, d, np.zeros(3), 0.99, 0.95))


def test_truncation_equals_termination_with_bootstrapped_reward() -> None:
    # A cut with bootstrap b is the same as a termination whose reward is r + gamma b.
    rng = np.random.default_rng(2)
    r = rng.normal(size=(9, 2))
    v = rng.normal(size=(9, 2))
    cut = np.zeros(9)
    cut[[3, 6]] = 1
    boot = rng.normal(size=(9, 2))
    adv, _ = gae(r, v, np.zeros(9), 0.3, 0.9, 0.7, truncated=cut, bootstrap_values=boot)
    r2 = r + 0.9 * boot * cut[:, None]
    adv2, _ = gae(r2, v, cut, 0.3, 0.9, 0.7)
    np.testing.assert_allclose(adv, adv2, rtol=1e-12, atol=1e-12)


def test_gae_lambda_one_gives_discounted_return() -> None:
    # lam = 1: returns are the discounted sums of rewards plus the discounted bootstrap.
    r = np.array([1.0, 0.0, 2.0])
    adv, ret = gae(r, np.array([5.0, -1.0, 3.0]), np.zeros(3), 10.0, gamma=0.5, lam=1.0)
    # G_2 = 2 + 0.5 * 10 = 7; G_1 = 0 + 0.5 * 7 = 3.5; G_0 = 1 + 0.5 * 3.5 = 2.75
    np.testing.assert_allclose(ret, [2.75, 3.5, 7.0])


def test_gae_rejects_bad_input() -> None:
    r = np.zeros((4, 2))
    with pytest.raises(InputError, match="values"):
        gae(r, np.zeros((4, 3)), np.zeros(4), np.zeros(2))
    with pytest.raises(InputError, match="dones"):
        gae(r, r, np.zeros(2), np.zeros(2))
    with pytest.raises(InputError, match="gamma"):
        gae(r, r, np.zeros(4), np.zeros(2), gamma=1.5)
    with pytest.raises(InputError, match="together"):
        gae(r, r, np.zeros(4), np.zeros(2), truncated=np.zeros(4))
    with pytest.raises(InputError, match="last_value"):
        gae(r, r, np.zeros(4), np.zeros(3))


# --------------------------------------------------------------------------- masks


def test_masked_categorical_never_samples_masked_actions() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, generator=gen) * 3.0
    mask = torch.rand(8, 6, generator=gen) < 0.5
    mask[:, 0] = True  # every row has a valid action
    logits[~mask] += 50.0  # make the masked actions the most attractive ones
    dist = masked_categorical(logits, mask)
    torch.manual_seed(0)
    samples = dist.sample((5000,))  # (5000, 8)
    assert bool(mask.gather(1, samples.T).all())
    ent = dist.entropy()
    assert bool(torch.isfinite(ent).all()) and bool((ent >= 0).all())
    assert bool((dist.log_prob(torch.full((8,), 0)) > -100).all())
    lp_all = dist.logits  # normalised log-probabilities
    assert bool((lp_all[~mask] < -1e6).all())
    # Probabilities of the valid actions are the softmax over the valid logits alone.
    row = 0
    valid = mask[row]
    ref = torch.softmax(logits[row][valid], 0)
    torch.testing.assert_close(dist.probs[row][valid], ref)


def test_masked_categorical_gradients_finite_and_zero_on_masked() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    dist = masked_categorical(logits, mask)
    (dist.entropy().sum() + dist.log_prob(torch.tensor([0, 2, 3])).sum()).backward()
    assert bool(torch.isfinite(logits.grad).all())
    assert bool((logits.grad[~mask] == 0).all())


def test_masked_categorical_all_masked_row_raises() -> None:
    logits = torch.zeros(2, 3)
    mask = torch.tensor([[1, 0, 0], [0, 0, 0]])
    with pytest.raises(InputError, match="no action"):
        masked_categorical(logits, mask)


# --------------------------------------------------------------------------- losses


def test_ppo_policy_loss_golden() -> None:
    new = torch.tensor([math.log(1.5), math.log(0.5)])
    old = torch.zeros(2)
    adv = torch.tensor([1.0, -2.0])
    loss = ppo_policy_loss(new, old, adv, clip=0.2)
    # Sample 0: rho = 1.5, A = 1:  min(1.5, 1.2) = 1.2
    # Sample 1: rho = 0.5, A = -2: min(-1.0, 0.8 * -2 = -1.6) = -1.6
    # loss = -(1.2 - 1.6) / 2 = 0.2
    assert loss.item() == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("ratio", "adv", "has_grad"),
    [
        (1.5, 1.0, False),  # above 1 + clip, advantage wants it higher: clipped
        (0.5, -1.0, False),  # below 1 - clip, advantage wants it lower: clipped
        (1.5, -1.0, True),  # above 1 + clip but advantage pulls it back: gradient kept
        (0.5, 1.0, True),
        (1.1, 1.0, True),  # inside the trust region
    ],
)
def test_ppo_clipping_removes_gradient(ratio: float, adv: float, has_grad: bool) -> None:
    new = torch.tensor([math.log(ratio)], requires_grad=True)
    ppo_policy_loss(new, torch.zeros(1), torch.tensor([adv]), clip=0.2).backward()
    if has_grad:
        # d/d logp of -(rho A) = -rho A
        assert new.grad.item() == pytest.approx(-ratio * adv)
    else:
        assert new.grad.item() == 0.0


def test_ppo_policy_loss_mask() -> None:
    new = torch.tensor([math.log(1.5), math.log(0.5), 3.0])
    adv = torch.tensor([1.0, -2.0, 100.0])
    loss = ppo_policy_loss(new, torch.zeros(3), adv, 0.2, mask=torch.tensor([1, 1, 0]))
    assert loss.item() == pytest.approx(0.2)  # the masked third sample does not count


def test_clipped_value_loss_golden() -> None:
    values = torch.tensor([2.0, 0.9])
    old = torch.tensor([1.0, 1.0])
    ret = torch.tensor([3.0, 1.0])
    loss = clipped_value_loss(values, old, ret, clip=0.2)
    # Sample 0: v_c = 1 + clip(1, -0.2, 0.2) = 1.2; max((2-3)^2, (1.2-3)^2) / 2 = 3.24 / 2 = 1.62
    # Sample 1: v_c = 0.9 (inside); (0.9 - 1)^2 / 2 = 0.005
    # mean = (1.62 + 0.005) / 2 = 0.8125
    assert loss.item() == pytest.approx(0.8125)
    huber = clipped_value_loss(values, old, ret, clip=0.2, huber_delta=1.0)
    # Sample 0 with Huber(delta = 1): |e| = 1.8 -> 1 * (1.8 - 0.5) = 1.3; sample 1: 0.005
    assert huber.item() == pytest.approx((1.3 + 0.005) / 2)


def test_lagrangian_advantage() -> None:
    # (A_r - lam A_c) / (1 + lam) with lam = 3: (2 - 3 * 1) / 4 = -0.25; (1 - 3 * -1) / 4 = 1
    out = lagrangian_advantage(torch.tensor([2.0, 1.0]), torch.tensor([1.0, -1.0]), 3.0)
    torch.testing.assert_close(out, torch.tensor([-0.25, 1.0]))
    np.testing.assert_allclose(lagrangian_advantage(np.array([2.0]), np.array([5.0]), 0.0), [2.0])


def test_normalize_advantages() -> None:
    adv = torch.tensor([1.0, 3.0, 100.0])
    out = normalize_advantages(adv, mask=torch.tensor([1, 1, 0]), eps=0.0)
    # mean 2, std 1 over the first two samples
    torch.testing.assert_close(out, torch.tensor([-1.0, 1.0, 98.0]))
    full = normalize_advantages(torch.randn(1000))
    assert abs(full.mean().item()) < 1e-5 and abs(full.std(unbiased=False).item() - 1) < 1e-4


# --------------------------------------------------------------------------- value norm


def test_value_norm_by_hand() -> None:
    vn = ValueNorm(beta=0.5)
    vn.update(torch.tensor([1.0, 3.0]))
    # m = 0.5 * 2 = 1, s = 0.5 * 5 = 2.5, d = 0.5 -> mu = 2, var = 5 - 4 = 1
    mean, var = vn.mean_var()
    assert (mean.item(), var.item()) == pytest.approx((2.0, 1.0))
    vn.update(torch.tensor([5.0]))
    # m = 0.5 + 2.5 = 3, s = 1.25 + 12.5 = 13.75, d = 0.75 -> mu = 4, var = 18.333 - 16 = 2.333
    mean, var = vn.mean_var()
    assert (mean.item(), var.item()) == pytest.approx((4.0, 13.75 / 0.75 - 16.0))


def test_value_norm_converges_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    vn = ValueNorm(shape=(1,), beta=0.999)
    for _ in range(200):
        vn.update(rng.normal(3.0, 2.0, size=(64, 5, 1)))
    mean, var = vn.mean_var()
    assert mean.item() == pytest.approx(3.0, abs=0.05)
    assert var.item() == pytest.approx(4.0, rel=0.05)
    x = torch.randn(7, 1, dtype=torch.float32) * 5 + 3
    y = vn.normalize(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(vn.denormalize(y), x)
    xn = rng.normal(size=(3, 1))
    np.testing.assert_allclose(vn.denormalize(vn.normalize(xn)), xn)
    # state_dict round trip
    other = ValueNorm(shape=(1,), beta=0.999)
    other.load_state_dict(vn.state_dict())
    torch.testing.assert_close(other.normalize(x), y)
    with pytest.raises(InputError, match="shape"):
        vn.update(np.zeros((4, 2)))


def test_value_norm_survives_float_cast() -> None:
    vn = ValueNorm()
    vn.update(torch.tensor([1.0, 2.0]))
    vn.float()
    assert vn.running_mean.dtype == torch.float64


# --------------------------------------------------------------------------- Lagrange


def test_lagrange_sign_bounds_and_golden_sequence() -> None:
    lm = LagrangeMultiplier(init=0.01, lr=0.01)
    # limit 3: costs 5, 1, 2.5 -> 0.01 + 0.02 = 0.03; 0.03 - 0.02 = 0.01; 0.01 - 0.005 = 0.005
    seq = [lm.update(c, 3.0) for c in (5.0, 1.0, 2.5)]
    assert seq == pytest.approx([0.03, 0.01, 0.005])
    assert lm.value == pytest.approx(0.005)
    # Sign: above the limit raises, below lowers.
    up = LagrangeMultiplier(init=1.0, lr=0.1)
    assert up.update(4.0, 3.0) > 1.0
    down = LagrangeMultiplier(init=1.0, lr=0.1)
    assert down.update(2.0, 3.0) < 1.0
    # Projection at both bounds.
    low = LagrangeMultiplier(init=0.01, lr=0.01)
    assert low.update(0.0, 3.0) == 0.0  # 0.01 - 0.03 < 0
    high = LagrangeMultiplier(init=99.0, lr=1.0, upper=100.0)
    assert high.update(torch.tensor(10.0), 3.0) == 100.0  # 99 + 7 > 100


def test_lagrange_state_dict_and_validation() -> None:
    lm = LagrangeMultiplier(init=0.5, lr=0.2, upper=10.0)
    lm.update(4.0, 3.0)
    other = LagrangeMultiplier()
    other.load_state_dict(lm.state_dict())
    assert other.value == pytest.approx(0.7)
    assert (other.lr, other.upper) == (0.2, 10.0)
    with pytest.raises(InputError, match="init"):
        LagrangeMultiplier(init=-1.0)
    with pytest.raises(InputError, match="lr"):
        LagrangeMultiplier(lr=0.0)
    with pytest.raises(InputError, match="finite"):
        lm.update(float("nan"), 3.0)
    with pytest.raises(InputError, match="value"):
        other.load_state_dict({"value": 500.0})
