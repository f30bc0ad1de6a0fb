"""Checks of ``schnet`` (msl.models.schnet) beyond the shared physics suite, which it runs in full.

That it is torch-geometric's SchNet, computed on msl's edges: on a molecule whose atoms all lie
within the cutoff, its energy and forces are those of PyG's own ``SchNet.forward`` (given the
molecule's full graph, since the default radius graph needs torch-cluster), times msl's energy
scale, plus the per-element references. A training step reaches every parameter.
"""

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from torch_geometric.data import Batch
from torch_geometric.nn.aggr import SumAggregation
from torch_geometric.nn.models import SchNet as PygSchNet

from test_models_physics import check_a_training_step_reaches_every_parameter, perturbed, to_data

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model():
    return perturbed("schnet")


def molecule() -> Atoms:
    """Six atoms within 4 Å of each other, no cell: every pair is an edge of msl's graph."""
    rng = np.random.default_rng(3)
    positions = rng.uniform(0.0, 2.3, (6, 3))
    return Atoms(numbers=[13, 29, 29, 47, 79, 46], positions=positions)


class FullGraph(torch.nn.Module):
    """PyG's ``RadiusInteractionGraph`` without torch-cluster: every ordered pair of distinct
    atoms of one molecule closer than ``cutoff`` (no neighbour limit), as (edge_index, lengths)."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = cutoff

    def forward(self, pos, batch):
        dist = torch.cdist(pos, pos)
        pairs = (batch[:, None] == batch[None, :]) & (dist < self.cutoff)
        row, col = torch.nonzero(pairs & ~torch.eye(len(pos), dtype=torch.bool), as_tuple=True)
        return torch.stack([row, col]), (pos[row] - pos[col]).norm(dim=-1)


def test_it_is_torch_geometrics_schnet_on_msls_edges(model):
    atoms = molecule()
    assert isinstance(model.net, PygSchNet) and isinstance(model.net.readout, SumAggregation)
    batch = Batch.from_data_list([to_data(atoms, model.cutoff)])
    assert batch.edge_index.shape[1] == len(atoms) * (len(atoms) - 1)
    out = model(batch)
    pyg = copy.deepcopy(model.net)
    pyg.interaction_graph = FullGraph(model.cutoff)
    z = torch.as_tensor(atoms.numbers)
    pos = torch.as_tensor(atoms.positions).requires_grad_(True)
    e_pyg = pyg(z, pos)[0, 0]  # PyG's forward: readout "add" over the molecule
    (grad,) = torch.autograd.grad(e_pyg, pos)
    scale, ref = float(model.energy_scale), float(model.atom_ref[z].sum())
    expected = scale * float(e_pyg.detach()) + ref
    assert float(out["energy"][0].detach()) == pytest.approx(expected, abs=1e-10)
    np.testing.assert_allclose(out["forces"].detach().numpy(), -scale * grad.numpy(), atol=1e-10)
    assert np.abs(grad.numpy()).max() > 1e-3


def test_a_training_step_reaches_every_parameter():
    check_a_training_step_reaches_every_parameter("schnet", "net.embedding.weight")
