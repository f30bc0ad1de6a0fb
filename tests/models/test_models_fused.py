"""The fast code paths of the model families against the reference paths they replaced.

``msl.models.potential.FUSED`` selects them (True; every test here sets it) or the reference code (False):
the CGC convolution through torch-geometric's ``propagate``, forces and stress from a position
and strain gradient, Gaussian features with subnormal values, the layers as first written. Both
must compute the same function with the same parameters: values, forces, stress and the
parameter gradients of a force loss (the double backward of training) agree to float64 round-off.
The hand-written CGC message passing is also checked against torch-geometric's own ``CGConv``.
"""

import copy

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import CGConv
from torch_geometric.nn.models.schnet import GaussianSmearing

from msl import graph
from msl.models import potential
from msl.models.optimetal import NEIGHBOUR_NORM, EnvelopeCGConv
from msl.models.potential import GaussianBasis

from test_models_physics import alloy, perturbed, to_data

FAMILIES = ["optimetal2b", "optimetal2b_tc", "optimetal3b", "transformer_local", "schnet"]


@pytest.fixture(autouse=True)
def fast_paths():
    """Every test here runs the fast paths unless it asks for the reference; the module's own
    setting (off until the next re-run of the studies) is restored afterwards."""
    saved = potential.FUSED
    potential.FUSED = True
    yield
    potential.FUSED = saved


def _with_reference(fn, *args):
    potential.FUSED = False
    try:
        return fn(*args)
    finally:
        potential.FUSED = True


def _random_graph(n_atoms=9, n_edges=60, width=6, edge_dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64, generator=gen)
    x = torch.randn(n_atoms, width, **f64).requires_grad_()
    edge_index = torch.randint(0, n_atoms, (2, n_edges), generator=gen)
    edge_attr = (3 * torch.randn(n_edges, edge_dim, **f64)).requires_grad_()
    weight = torch.rand(n_edges, **f64).requires_grad_()
    return x, edge_index, edge_attr, weight


def _derivatives(fn, inputs, params):
    """Output, first derivatives (with graph) of a scalar of it, and second derivatives of a
    scalar of those, with respect to ``inputs`` and ``params``: what a training step with a force
    loss differentiates."""
    out = fn()
    scalar = (out.sin() * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype)
              .view_as(out)).sum()
    first = torch.autograd.grad(scalar, inputs, create_graph=True)
    loss = sum((g ** 2).sum() for g in first)
    second = torch.autograd.grad(loss, list(inputs) + list(params))
    return [out.detach()] + [g.detach() for g in first] + list(second)


def _assert_all_close(a, b, rtol=1e-10, atol=1e-12):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=rtol, atol=atol)


def test_fused_cgconv_equals_torch_geometric_cgconv():
    """Unit envelope: ``x + (CGConv(x) - x) / NEIGHBOUR_NORM``, values and first and second
    derivatives with respect to atoms, edge features and every parameter."""
    x, edge_index, edge_attr, _ = _random_graph()
    ones = torch.ones(edge_index.shape[1], dtype=torch.float64)
    torch.manual_seed(0)
    ours = EnvelopeCGConv(6, 5).double()
    pyg = CGConv(6, dim=5, aggr="add").double()
    pyg.load_state_dict(ours.state_dict())
    fused = _derivatives(lambda: ours(x, edge_index, edge_attr, ones), (x, edge_attr),
                         list(ours.parameters()))
    plain = _derivatives(lambda: x + (pyg(x, edge_index, edge_attr) - x) / NEIGHBOUR_NORM,
                         (x, edge_attr), list(pyg.parameters()))
    _assert_all_close(fused, plain)


def test_fused_cgconv_equals_its_propagate_path():
    """With envelope weights (also differentiated): the fast path against ``propagate``."""
    x, edge_index, edge_attr, weight = _random_graph(seed=1)
    torch.manual_seed(1)
    conv = EnvelopeCGConv(6, 5).double()
    args = (x, edge_attr, weight)
    fused = _derivatives(lambda: conv(x, edge_index, edge_attr, weight), args,
                         list(conv.parameters()))
    reference = _with_reference(_derivatives, lambda: conv(x, edge_index, edge_attr, weight),
                                args, list(conv.parameters()))
    _assert_all_close(fused, reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_basis_drops_only_what_no_float_resolves(dtype):
    """Equal to torch-geometric's GaussianSmearing where it is at least eps^2, exactly zero
    below, and never subnormal."""
    r = torch.linspace(0.0, 5.0, 20001, dtype=dtype)
    ours, pyg = GaussianBasis(0.0, 5.0, 16).to(dtype), GaussianSmearing(0.0, 5.0, 16).to(dtype)
    a, b = ours(r), pyg(r)
    eps = torch.finfo(dtype).eps
    kept = b >= eps ** 2 * 1.01
    assert torch.equal(a[kept], b[kept])
    assert torch.all(a[b < eps ** 2 * 0.99] == 0)
    assert not torch.any((a != 0) & (a.abs() < torch.finfo(dtype).tiny))
    assert torch.all(a.max(dim=1).values > 0.88)  # the claim of the docstring
    assert int((~kept).sum()) > 0  # the test reaches the cut


def _outputs(model, batch, loss_weights):
    """Energy, forces, stress and the parameter gradient of a loss on all three."""
    model.zero_grad(set_to_none=True)
    out = model(batch, forces=True, stress=True, create_graph=True)
    loss = sum((w * out[k] ** 2).sum() for k, w in loss_weights.items())
    loss.backward()
    values = [out[k].detach() for k in ("energy", "forces", "stress")]
    return values + [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_and_reference_paths_compute_the_same_function(name):
    model = perturbed(name).train()
    structures = [alloy(21), alloy(22, repeat=(1, 1, 1), cubic=True)]
    batch = Batch.from_data_list([to_data(a, model.cutoff) for a in structures])
    weights = {"energy": 1.0, "forces": 0.7, "stress": 0.3}
    fused = _outputs(model, batch, weights)
    reference = _with_reference(_outputs, copy.deepcopy(model), batch, weights)
    assert len(fused) == len(reference) > 3
    _assert_all_close(fused, reference, rtol=1e-9, atol=1e-11)


def test_collate_builds_torch_geometrics_batch(tiny_pool):
    from msl import data

    structures = data.read(tiny_pool).subset(range(7))
    graphs = graph.build(structures, 5.0)
    ours, pyg = graph.collate(graphs), Batch.from_data_list(graphs)
    assert sorted(ours.keys()) == sorted(pyg.keys())
    for key in pyg.keys():
        if torch.is_tensor(pyg[key]):
            assert torch.equal(ours[key], pyg[key]), key
            assert ours[key].dtype == pyg[key].dtype, key
        else:
            assert ours[key] == pyg[key], key
    assert (ours.num_graphs, ours.num_nodes) == (pyg.num_graphs, pyg.num_nodes)
