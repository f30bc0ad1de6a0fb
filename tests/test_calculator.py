"""The ASE calculator: same numbers as the model, ASE's finite differences, checkpoints, Voigt."""

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.stress import voigt_6_to_full_3x3_stress
from torch_geometric.data import Batch

from msl import graph
from msl.calculator import Calculator
from msl.data.structures import Structures
from msl.models import build_model

torch.set_num_threads(2)

NAME, SIZE = "optimetal2b", 1


def alloy(seed: int, repeat=(2, 1, 1)) -> Atoms:
    """A rattled fcc alloy cell with a sheared cell (so every stress component is non-zero)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6).repeat(repeat)
    atoms.numbers = rng.choice([13, 28, 29, 46, 47, 78, 79], len(atoms))
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.05 * rng.uniform(-1, 1, (3, 3))),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=seed + 1)
    return atoms


def trained_like(seed: int = 0):
    """A float64 model with weights away from initialisation and a random reference energy."""
    torch.manual_seed(seed)
    model = build_model(NAME, SIZE).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.atom_ref.uniform_(-6.0, -1.0)
        model.energy_scale.fill_(2.5)
    return model


@pytest.fixture(scope="module")
def model():
    return trained_like()


def test_matches_the_model_on_the_data_pipelines_graph(model):
    """The calculator's graph and the dataset's (graph.build) give the same numbers.

    Positions and cell are rounded to float32 first, so that graph.build's float32 tensors hold
    them exactly and the comparison can be tight.
    """
    atoms = alloy(0)
    atoms.positions = atoms.positions.astype(np.float32)
    atoms.cell = np.asarray(atoms.cell[:], dtype=np.float32)
    atoms.calc = Calculator(model)
    n = len(atoms)
    structures = Structures(numbers=atoms.numbers, positions=atoms.positions,
                            cells=atoms.cell[:][None], pbc=atoms.pbc[None], n_atoms=[n],
                            energy=[np.nan], forces=np.full((n, 3), np.nan),
                            stress=np.full((1, 3, 3), np.nan))
    data = graph.build(structures, model.cutoff)[0]
    for key in ("pos", "cell", "shift"):
        data[key] = data[key].double()
    out = model.eval()(Batch.from_data_list([data]))
    assert atoms.get_potential_energy() == pytest.approx(float(out["energy"][0].detach()), abs=1e-10)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), out["stress"][0].detach().numpy(),
                               atol=1e-10)


def test_stress_is_voigt_xx_yy_zz_yz_xz_xy(model):
    atoms = alloy(1)
    atoms.calc = Calculator(model)
    voigt, full = atoms.get_stress(), atoms.get_stress(voigt=False)
    assert voigt.shape == (6,) and full.shape == (3, 3)
    assert np.abs(voigt[3:]).min() > 1e-6  # the shear components are exercised
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    expected = [full[0, 0], full[1, 1], full[2, 2], full[1, 2], full[0, 2], full[0, 1]]
    np.testing.assert_allclose(voigt, expected, atol=0)
    np.testing.assert_allclose(voigt_6_to_full_3x3_stress(voigt), full, atol=0)


def test_forces_agree_with_ases_finite_differences(model):
    atoms = alloy(2)
    atoms.calc = Calculator(model)
    forces = atoms.get_forces()
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    assert np.abs(forces).max() > 1e-2
    np.testing.assert_allclose(forces, numeric, atol=1e-7)


def test_stress_agrees_with_ases_finite_differences(model):
    atoms = alloy(3)
    atoms.calc = Calculator(model)
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress).max() > 1e-3
    np.testing.assert_allclose(stress, numeric, atol=1e-9)


def test_recalculates_when_the_atoms_move(model):
    atoms = alloy(4)
    atoms.calc = Calculator(model)
    e0 = atoms.get_potential_energy()
    atoms.positions[0] += [0.05, -0.02, 0.03]
    e1 = atoms.get_potential_energy()
    atoms.set_cell(atoms.cell[:] * 1.01, scale_atoms=True)
    e2 = atoms.get_potential_energy()
    assert e0 != e1 and e1 != e2


def test_cluster_has_energy_and_forces_but_no_stress(model):
    """A non-periodic molecule (zero cell) works; stress is left out, as V is undefined."""
    atoms = Atoms("CuAuNi", positions=[[0, 0, 0], [2.6, 0, 0], [1.1, 2.2, 0.3]])
    atoms.calc = Calculator(model)
    forces = atoms.get_forces()
    assert np.isfinite(atoms.get_potential_energy())
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-12)
    assert np.abs(forces).max() > 0
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-4), atol=1e-7)
    assert "stress" not in atoms.calc.results


def save_checkpoint(model, path, name=NAME, size=SIZE):
    """What :func:`msl.cell.run` writes."""
    torch.save({"model": name, "size": size, "state_dict": model.state_dict()}, path)
    return path


def test_checkpoint_round_trip(tmp_path):
    """A checkpoint as training writes it (float32 weights) gives identical results, in float64."""
    torch.manual_seed(3)
    model32 = build_model(NAME, SIZE)
    with torch.no_grad():
        for p in model32.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model32.atom_ref.uniform_(-6.0, -1.0)
    loaded = Calculator.from_checkpoint(save_checkpoint(model32, tmp_path / "cell.pt"))
    assert loaded.model.atom_ref.dtype == torch.float64 and not loaded.model.training
    atoms = alloy(5)
    atoms.calc = Calculator(copy.deepcopy(model32))
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = loaded
    assert atoms.get_potential_energy() == e  # identical, not merely close
    np.testing.assert_array_equal(atoms.get_forces(), f)
    np.testing.assert_array_equal(atoms.get_stress(), s)
    atoms.calc = Calculator(copy.deepcopy(model32), dtype=torch.float32)
    assert atoms.get_potential_energy() == pytest.approx(e, rel=1e-5)  # float32 evaluation


def test_float64_checkpoint_round_trip_is_exact(model, tmp_path):
    """A float64 model saved and reloaded must keep its float64 weights (no float32 rounding)."""
    loaded = Calculator.from_checkpoint(save_checkpoint(model, tmp_path / "cell64.pt"))
    for key, value in model.state_dict().items():
        diff = (loaded.model.state_dict()[key] - value).abs().max().item()
        assert diff == 0, f"{key}: reloaded differs by up to {diff:.2e} (rounded to float32?)"
    atoms = alloy(5)
    atoms.calc = Calculator(model)
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = loaded
    assert atoms.get_potential_energy() == e
    np.testing.assert_array_equal(atoms.get_forces(), f)


def test_freshly_initialised_model():
    """An untrained rung works out of the box: finite outputs, Newton's third law."""
    torch.manual_seed(4)
    atoms = alloy(7, repeat=(2, 2, 1))
    atoms.calc = Calculator(build_model(NAME, 0))
    assert np.isfinite(atoms.get_potential_energy())
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert forces.shape == (len(atoms), 3) and stress.shape == (6,)
    assert np.isfinite(forces).all() and np.isfinite(stress).all()
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-12)
    assert np.abs(forces).max() > 0


POTENTIALS = [
    "transformer", "transformer_local", "equiformer_v2", "escn_md", "schnet", "fcn"]


@pytest.mark.parametrize("name", POTENTIALS)
def test_every_energy_family_is_a_calculator(name, tmp_path):
    """Each family behind build_model works through ASE, also from a training checkpoint, with
    the same numbers as calling the model directly on the data pipeline's graph."""
    torch.manual_seed(0)
    model = build_model(name, 0)
    with torch.no_grad():
        model.atom_ref.uniform_(-6.0, -1.0)
        model.set_output_scales(forces=0.5, stress=0.01)
    atoms = alloy(11)
    atoms.calc = Calculator.from_checkpoint(save_checkpoint(model, tmp_path / "c.pt", name, 0))
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert np.isfinite(energy) and forces.shape == (len(atoms), 3) and stress.shape == (6,)
    reference = Structures(numbers=atoms.numbers, positions=atoms.positions,
                           cells=atoms.cell[:][None], pbc=atoms.pbc[None], n_atoms=[len(atoms)],
                           energy=[np.nan], forces=np.full((len(atoms), 3), np.nan),
                           stress=np.full((1, 3, 3), np.nan))
    batch = Batch.from_data_list(graph.build(reference, model.cutoff))
    for key in ("pos", "cell", "shift"):  # the pipeline stores float32; compare in float64
        batch[key] = batch[key].double()
    direct = model.double().eval()(batch)
    assert energy == pytest.approx(float(direct["energy"][0].detach()), rel=1e-5)
    np.testing.assert_allclose(forces, direct["forces"].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_a_spectral_model_is_refused():
    with pytest.raises(TypeError, match="does not predict energies"):
        Calculator(build_model("optimetal2b_spectral", 0))
