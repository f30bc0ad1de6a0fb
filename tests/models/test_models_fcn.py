"""Checks of ``fcn`` (msl.models.fcn), Trikha et al.'s fully connected baseline, in float64.

The shared physics suite runs it for permutations (any, and exchanges of two atoms of one
element), rigid translations, batching and the neighbour list, and skips the symmetries it breaks
by design, with the reasons in ``FCN.breaks``. Here: that it computes Trikha et al.'s padded
forward (on centred positions), that atoms meet only through the centroid, and, as tests, that
the symmetries it breaks are broken (so that its ``breaks`` stays true).
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from torch_geometric.data import Batch
from torch_geometric.utils import to_dense_batch

from msl.models import build_model
from msl.models.transformer import TokenPotential
from test_models_physics import (FAMILIES, alloy, check_a_training_step_reaches_every_parameter,
                                 check_a_lattice_vector_moves_the_output,
                                 check_outputs_do_not_rotate_with_the_input,
                                 evaluate, evaluate_one, perturbed,
                                 to_data)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model():
    return perturbed("fcn")


def relative(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_in_the_physics_suite_with_the_transformers_tokens_and_heads(model):
    assert "fcn" in FAMILIES and "schnet" in FAMILIES
    assert isinstance(model, TokenPotential) and not model.conservative
    assert set(model.breaks) == {"rotation", "periodicity", "locality"}
    plain = build_model("transformer", 0)
    assert [type(m) for m in model.force_head] == [type(m) for m in plain.force_head]


def trikha_forward(model, batch):
    """Their ``FCNModel.forward`` on the padded batch [B, A, d + 3] with its mask, positions
    centred per structure, written out with the model's own layers."""
    pos, graph = batch.pos, batch.batch
    dense_pos, mask = to_dense_batch(pos, graph)
    n_atoms = mask.sum(1, keepdim=True)
    centroid = dense_pos.sum(1) / n_atoms
    dense_z, _ = to_dense_batch(batch.z, graph)
    x = torch.cat([model.embed(dense_z), dense_pos - centroid[:, None]], dim=-1)
    x = model.lin_in(x)
    for block in model.blocks:
        x = x + block(x)
    m = mask.unsqueeze(-1).to(x.dtype)
    forces = (model.force_head(x) * m)[mask]
    energy = (model.energy_head(x).squeeze(-1) * mask).sum(1)
    stress = (model.stress_head(x) * m).sum(1)
    return energy, forces, stress


def test_it_is_trikhas_padded_forward(model):
    """Padding masked, per-atom energies and stresses summed: the flat computation is the same."""
    cluster = Atoms("CuAuNi", positions=[[0, 0, 0], [2.6, 0, 0], [1.1, 2.2, 0.3]])
    structures = [alloy(0), alloy(1, repeat=(1, 1, 1)), cluster]
    batch = Batch.from_data_list([to_data(a, model.cutoff) for a in structures])
    energy, forces, stress = trikha_forward(model, batch)
    out = model(batch)
    z = batch.z
    ref = torch.zeros(3, dtype=torch.float64).index_add(0, batch.batch, model.atom_ref[z])
    expected_energy = model.energy_scale * energy + ref
    np.testing.assert_allclose(out["energy"].detach(), expected_energy.detach(), atol=1e-10)
    np.testing.assert_allclose(out["forces"].detach(), (model.force_scale * forces).detach(),
                               atol=1e-12)
    xx, yy, zz, yz, xz, xy = (model.stress_scale * stress).detach().unbind(-1)
    np.testing.assert_allclose(out["stress"][:, 0, 0].detach(), xx, atol=1e-12)
    np.testing.assert_allclose(out["stress"][:, 1, 2].detach(), yz, atol=1e-12)
    np.testing.assert_allclose(out["stress"][:, 2, 1].detach(), yz, atol=1e-12)


def test_atoms_meet_only_through_the_centroid(model):
    """Two atoms moved in opposite directions keep the centroid: no other atom's force changes."""
    atoms = alloy(3)
    _, f, _ = evaluate_one(model, atoms)
    moved = atoms.copy()
    moved.positions[0] += [0.3, -0.2, 0.1]
    moved.positions[1] -= [0.3, -0.2, 0.1]
    _, f_m, _ = evaluate_one(model, moved)
    np.testing.assert_allclose(f_m[2:], f[2:], atol=1e-12)
    assert relative(f_m[:2], f[:2]) > 1e-3


# ------------------------------------------------------------------ what it breaks, as designed


def test_outputs_do_not_rotate_with_the_input(model):
    check_outputs_do_not_rotate_with_the_input(model)


def test_it_is_not_periodic(model):
    check_a_lattice_vector_moves_the_output(model, force_change=1e-3)
    cell = alloy(4, repeat=(1, 2, 2))
    _, _, s_1 = evaluate_one(model, cell)
    _, _, s_2 = evaluate_one(model, cell.repeat((2, 1, 1)))
    assert relative(s_2, s_1) > 0.1             # per-atom stresses summed: not intensive


def test_a_free_atom_feels_a_force(model):
    out = evaluate(model, [Atoms("Cu", positions=[[1.0, 2.0, 3.0]])], stress=False)
    assert np.abs(out["forces"]).max() > 1e-3


def test_a_training_step_reaches_every_parameter():
    check_a_training_step_reaches_every_parameter("fcn")
