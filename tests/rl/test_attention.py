"""Set attention: permutation equivariance, padding invariance, masked softmax, query scores."""

from __future__ import annotations

import math

import pytest
import torch

from edgerl.rl.attention import MultiHeadSelfAttention, QueryKeyScores, SetEncoder, masked_softmax
from edgerl.utils.errors import InputError


def _encoder(seed: int = 0, **kw) -> SetEncoder:
    torch.manual_seed(seed)
    return SetEncoder(5, dim=16, n_heads=4, n_layers=2, **kw)


def test_masked_softmax_by_hand_and_empty_row() -> None:
    scores = torch.tensor([[0.0, math.log(3.0), 100.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    w = masked_softmax(scores, mask)
    # Row 0: exp(0) : exp(log 3) = 1 : 3 over the two valid entries; row 1 has none.
    torch.testing.assert_close(w, torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.0, 0.0]]))


def test_attention_matches_single_head_by_hand() -> None:
    # One head, identity projections: output = softmax(h h^T / sqrt(d)) h over real entities.
    att = MultiHeadSelfAttention(2, 1)
    with torch.no_grad():
        att.qkv.weight.copy_(torch.cat([torch.eye(2)] * 3))
        att.qkv.bias.zero_()
        att.out.weight.copy_(torch.eye(2))
        att.out.bias.zero_()
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    out = att(h, torch.tensor([[True, True, False]]))
    # Entity 0 scores: (1, 0) / sqrt(2) -> weights e^a / (e^a + 1) with a = 1/sqrt(2).
    a = 1.0 / math.sqrt(2.0)
    p = math.exp(a) / (math.exp(a) + 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([p, 1 - p]))
    torch.testing.assert_close(out[0, 1], torch.tensor([1 - p, p]))


def test_set_encoder_permutation_equivariant() -> None:
    enc = _encoder().eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 5, generator=gen)
    mask = torch.rand(3, 7, generator=gen) < 0.7
    perm = torch.randperm(7, generator=gen)
    out = enc(x, mask)
    out_p = enc(x[:, perm], mask[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-5, atol=1e-5)
    assert out.shape == (3, 7, 16)


def test_padding_does_not_change_real_entities() -> None:
    enc = _encoder(activation="relu")
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 5, generator=gen)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 3] = False  # a second set with only 3 real entities
    out = enc(x, mask)
    # Pad both sets to 9 entities with large garbage features.
    pad = torch.randn(2, 5, 5, generator=gen) * 1e3
    xp = torch.cat([x, pad], 1)
    mp = torch.cat([mask, torch.zeros(2, 5, dtype=torch.bool)], 1)
    outp = enc(xp, mp)
    torch.testing.assert_close(outp[:, :4][mask], out[mask], rtol=1e-5, atol=1e-5)
    assert bool((outp[~mp] == 0).all()) and bool((out[~mask] == 0).all())
    # And the garbage gets no gradient.
    xp.requires_grad_(True)
    enc(xp, mp).sum().backward()
    assert bool((xp.grad[:, 4:] == 0).all())


def test_set_encoder_leading_dims_and_empty_set() -> None:
    enc = _encoder()
    x = torch.randn(2, 3, 4, 5)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # one empty set
    out = enc(x, mask)
    assert out.shape == (2, 3, 4, 16)
    assert bool(torch.isfinite(out).all()) and bool((out[0, 1] == 0).all())
    flat = enc(x.reshape(6, 4, 5), mask.reshape(6, 4)).reshape(2, 3, 4, 16)
    torch.testing.assert_close(out, flat)
    with pytest.raises(InputError, match="mask"):
        enc(x, mask[..., :3])


def test_query_key_scores() -> None:
    torch.manual_seed(0)
    head = QueryKeyScores(query_features=6, key_features=5, key_dim=8)
    g = torch.randn(2, 6)
    e = torch.randn(2, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    s = head(g, e, mask)
    assert s.shape == (2, 4)
    # Direct formula q^T kappa / sqrt(d) at the real entities.
    q = head.query(g)
    k = head.key(e)
    ref = (k * q[:, None, :]).sum(-1) / math.sqrt(8)
    torch.testing.assert_close(s[mask], ref[mask])
    assert bool((s[~mask] < -1e8).all())
    w = masked_softmax(s, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert bool((w[~mask] == 0).all())
