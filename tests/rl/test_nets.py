"""Dense GCN (eq. (11) of paper 002), node norm and population-stacked evaluation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from edgerl.rl.nets import (
    DenseGCN,
    DenseGCNLayer,
    NodeNorm,
    PopLinear,
    dueling_aggregate,
    normalized_adjacency,
    population_call,
    unflatten_parameters,
)

# Path graph 0 - 1 - 2.
PATH = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.int8)


def test_normalized_adjacency_by_hand() -> None:
    a = normalized_adjacency(PATH[None])[0]
    # A + I has degrees 2, 3, 2; entry (i, j) = 1 / sqrt(d_i d_j) where linked.
    s6 = 1.0 / math.sqrt(6.0)
    expected = torch.tensor([[1 / 2, s6, 0.0], [s6, 1 / 3, s6], [0.0, s6, 1 / 2]])
    torch.testing.assert_close(a, expected)


def test_normalized_adjacency_ignores_padding_nodes() -> None:
    mask = torch.tensor([[1, 1, 0]])
    a = normalized_adjacency(PATH[None], mask)[0]
    # Node 2 is padding: nodes 0 and 1 both have degree 2 in A + I.
    expected = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(a, expected)


@pytest.mark.parametrize("widen", [True, False])
def test_gcn_layer_matches_hand_computation(widen: bool) -> None:
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    n_out = 3 if widen else 1  # both product orders of DenseGCNLayer
    layer = DenseGCNLayer(2, n_out, bias=False)
    w = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0]])[:n_out]  # (out, in)
    with torch.no_grad():
        layer.lin.weight.copy_(w)
    a_hat = normalized_adjacency(PATH[None])
    out = torch.relu(layer(h[None], a_hat))[0]
    # Rows of H psi: h_i . w_o for each output o.
    hw = [
        [sum(h[i, c].item() * w[o, c].item() for c in range(2)) for o in range(n_out)]
        for i in range(3)
    ]
    s6 = 1.0 / math.sqrt(6.0)
    coef = [[0.5, s6, 0.0], [s6, 1 / 3, s6], [0.0, s6, 0.5]]
    expected = [
        [max(0.0, sum(coef[i][j] * hw[j][o] for j in range(3))) for o in range(n_out)]
        for i in range(3)
    ]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_node_norm_uses_real_nodes_only() -> None:
    norm = NodeNorm(2, "graph")
    h = torch.tensor([[[1.0, 4.0], [3.0, 8.0], [100.0, -50.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = norm(h, mask)[0]
    # Mean (2, 6), population std (1, 2) over the two real rows; padding row zeroed.
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_dueling_aggregate() -> None:
    v = torch.tensor([2.0])
    adv = torch.tensor([[1.0, 2.0, 6.0]])
    torch.testing.assert_close(dueling_aggregate(v, adv), torch.tensor([[0.0, 1.0, 5.0]]))


@pytest.mark.parametrize("norm", ["graph", "layer", "none"])
def test_population_call_equals_loop(norm: str) -> None:
    torch.manual_seed(0)
    net = DenseGCN(5, (4, 6, 3), norm=norm)  # type: ignore[arg-type]
    x = torch.rand(2, 7, 5)
    adj = (torch.rand(2, 7, 7) < 0.4).to(torch.int8)
    adj = adj | adj.transpose(1, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    a_hat = normalized_adjacency(adj, mask)
    flat = parameters_to_vector(net.parameters()).detach()
    pop = flat + 0.3 * torch.randn(4, flat.numel())
    stacked = population_call(net, pop, x.unsqueeze(0).expand(4, *x.shape), a_hat, mask)
    assert stacked.shape == (4, 2, 7, 3)
    twin = copy.deepcopy(net)
    for i in range(4):
        vector_to_parameters(pop[i], twin.parameters())
        torch.testing.assert_close(stacked[i], twin(x, a_hat, mask), atol=1e-5, rtol=1e-5)


def test_unflatten_follows_parameters_to_vector() -> None:
    lin = PopLinear(3, 2)
    flat = parameters_to_vector(lin.parameters()).detach()
    parts = unflatten_parameters(flat, lin)
    torch.testing.assert_close(parts["weight"], lin.weight.detach())
    torch.testing.assert_close(parts["bias"], lin.bias.detach())
    with pytest.raises(ValueError, match="length"):
        unflatten_parameters(flat[:-1], lin)
