"""Checks specific to the escn_md family (fairchem-core's eSCN-MD backbone behind msl's graph).

The shared physics checks (``test_models_physics.py``) run on it in float64 like on every family.
Added here: the pinned ladder; msl's edges fed to the backbone give what fairchem's own graph and
input path give on the same structure (edge orientation, cell offsets), with a control showing
that the check catches a flipped orientation; two training steps with a force loss.
"""

import copy

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from msl import graph
from msl.models import escn_md
from test_models_physics import alloy, perturbed, to_data

torch.set_num_threads(2)


def test_backbone_is_fairchems_with_its_own_graph_off():
    from fairchem.core.models.uma.escn_md import eSCNMDBackbone

    model = escn_md.build(0)
    assert isinstance(model.backbone, eSCNMDBackbone) and model.conservative
    assert not model.backbone.otf_graph and model.backbone.cutoff == model.cutoff
    # only the autograd of msl's Potential: the backbone itself neither sets requires_grad nor
    # differentiates
    assert not model.backbone.regress_config.forces and not model.backbone.regress_config.stress


# ------------------------------------------------------------------ fairchem's own graph


def wrapped(atoms):
    """``atoms`` with every atom inside the cell, as fairchem's ``AtomicData.from_ase`` puts
    them (msl keeps positions as given), so that both graphs have the same cell offsets."""
    out = atoms.copy()
    out.wrap()
    return out


def fairchem_batch(atoms_list, cutoff):
    """fairchem's input for ``atoms_list`` (wrapped): its own neighbour list (pymatgen), with
    positions and cell in float64 (``from_ase`` stores float32)."""
    from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch

    data = [AtomicData.from_ase(a, r_edges=True, radius=cutoff, max_neigh=10_000,
                                r_energy=False, r_forces=False, r_stress=False)
            for a in atoms_list]
    batch = atomicdata_list_to_batch(data)
    f32_pos = np.concatenate([a.positions for a in atoms_list]).astype(np.float32)
    assert np.array_equal(batch.pos.numpy(), f32_pos), "fairchem moved the atoms"
    batch.pos = torch.as_tensor(np.concatenate([a.positions for a in atoms_list]))
    batch.cell = torch.as_tensor(np.stack([a.cell[:] for a in atoms_list]))
    return batch


def test_msl_edges_are_fairchems_edges():
    """Same directed edges, same orientation: msl's (source j, target i, shift of j) is
    fairchem's (edge_index[0], edge_index[1], cell_offsets)."""
    atoms = wrapped(alloy(30, repeat=(2, 1, 1)))
    edge_index, shift = graph.edges(atoms.positions, atoms.cell[:], atoms.pbc, 5.0)
    ours = sorted(zip(*edge_index, *shift.T))
    theirs = fairchem_batch([atoms], 5.0)
    theirs = sorted(zip(*theirs.edge_index.tolist(), *theirs.cell_offsets.long().T.tolist()))
    assert len(ours) > 50 and [tuple(map(int, e)) for e in ours] == theirs


def test_atom_energies_match_fairchems_input_path():
    """Per-atom energies from msl's edge vectors (what ``atom_features`` feeds the backbone)
    equal those of the backbone reading fairchem's own graph, positions, cell and offsets; with
    the orientation flipped they do not (the control)."""
    model = perturbed("escn_md")
    structures = [wrapped(alloy(31, repeat=(2, 1, 1))),
                  wrapped(alloy(32, repeat=(1, 1, 1), cubic=True))]
    batch = Batch.from_data_list([to_data(a, model.cutoff) for a in structures])
    edge_vec = model.edge_vectors(batch, batch.pos, batch.cell)
    ours = model.atom_features(batch.z, edge_vec, batch.edge_index, batch.batch)

    theirs_input = fairchem_batch(structures, model.cutoff)
    node = model.backbone(theirs_input)["node_embedding"]
    theirs = model.energy_mlp(node[:, 0, :]).squeeze(-1)
    np.testing.assert_allclose(ours.detach(), theirs.detach(), rtol=0, atol=1e-10)

    # r_i - r_j instead of r_j - r_i (flipping both index and vector would only reorder the
    # symmetric neighbour list)
    flipped = model.atom_features(batch.z, -edge_vec, batch.edge_index, batch.batch)
    assert (flipped - ours).abs().max() > 1e-4


# ------------------------------------------------------------------ training


def test_two_training_steps_with_force_loss():
    """As in msl.train: train mode (create_graph), energy + force loss, backward through the
    forces (double backward), AdamW step; every trained parameter gets a finite gradient and
    changes, and the loss on the batch goes down."""
    torch.manual_seed(0)
    model = escn_md.build(0).train()
    graphs = []
    for seed in (20, 21):
        data = to_data(alloy(seed, repeat=(1, 1, 1), cubic=True), model.cutoff)
        for key in ("pos", "cell", "shift"):
            data[key] = data[key].float()
        data.energy = torch.tensor([-12.0])
        data.forces = 0.3 * torch.randn(data.num_nodes, 3)
        graphs.append(data)
    batch = Batch.from_data_list(graphs)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in trained], lr=1e-3)
    before = copy.deepcopy(model.state_dict())

    def loss_fn():
        out = model(batch, forces=True, stress=False)
        energy_loss = ((out["energy"] - batch.energy) ** 2).mean()
        return energy_loss + ((out["forces"] - batch.forces) ** 2).mean()

    losses = []
    for _ in range(2):
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, p in trained:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and loss_fn().item() < losses[0]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {n for n, _ in trained} <= changed


@pytest.mark.parametrize("size", [0, 1])
def test_float32_forward_of_small_rungs(size):
    """The default precision of training: finite outputs of the contract's shapes."""
    model = escn_md.build(size).eval()
    atoms = alloy(40, repeat=(1, 1, 1), cubic=True)
    data = to_data(atoms, model.cutoff)
    for key in ("pos", "cell", "shift"):
        data[key] = data[key].float()
    out = model(Batch.from_data_list([data, data]))
    assert out["energy"].shape == (2,) and out["forces"].shape == (8, 3)
    assert out["stress"].shape == (2, 3, 3)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert out["energy"].dtype == torch.float32
