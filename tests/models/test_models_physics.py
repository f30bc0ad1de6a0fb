"""Physics of the energy families in ``msl.models.MODELS`` (STYLE rule 8), in float64.

Families whose module sets ``SYMMETRIC = False`` (Trikha et al.'s plain transformer, which sees raw
Cartesian positions) are left out here and tested for what they do and do not respect in their
own file. Tests of conservative forces (forces = -dE/dpos, stress = dE/dstrain / V) skip families
with direct force heads, which are not conservative by design. A family that breaks a symmetry by
design says which, and why, in its model's ``breaks`` (:class:`~msl.models.potential.EnergyModel`):
the tests of that symmetry skip it with that reason, and every other test here runs (Trikha et
al.'s fully connected baseline, ``fcn``, breaks rotation, periodicity and locality). Families
whose cutoff function is smooth to a lower order than the polynomial envelope's (SchNet's cosine
cutoff) say so in ``cutoff_order``; the cutoff tests check each at its own order.

Each test runs on a small rung of each family, with its weights perturbed away from the
initialisation (so that the many-body terms are not negligible), a random non-zero per-element
reference energy and a non-unit energy scale (so that the reference path of
:class:`~msl.models.potential.Potential` is exercised). Structures are small rattled alloy cells
built with ASE, some with a sheared (triclinic) cell; graphs come from :func:`msl.graph.edges`,
the neighbour list the calculator and the data pipeline use.
"""

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from torch_geometric.data import Batch, Data

from msl import graph
from msl.models import MODELS, build_model, family, task
from msl.models.potential import PolynomialEnvelope

torch.set_num_threads(2)

ALLOY = [13, 28, 29, 46, 47, 78, 79]  # Al Ni Cu Pd Ag Pt Au


# ------------------------------------------------------------------ structures and evaluation


def alloy(seed: int, repeat=(2, 2, 2), cubic=False, shear=0.05, rattle=0.1) -> Atoms:
    """A rattled fcc alloy cell with random species from ``ALLOY`` and a randomly sheared cell."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=cubic).repeat(repeat)
    atoms.numbers = rng.choice(ALLOY, len(atoms))
    deform = np.eye(3) + shear * rng.uniform(-1, 1, (3, 3))
    atoms.set_cell(atoms.cell[:] @ deform, scale_atoms=True)
    atoms.rattle(rattle, seed=seed + 1)
    return atoms


def to_data(atoms: Atoms, cutoff: float) -> Data:
    """Float64 graph of ``atoms`` with every edge shorter than ``cutoff`` Å."""
    edge_index, shift = graph.edges(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    f64 = dict(dtype=torch.float64)
    return Data(z=torch.as_tensor(atoms.numbers, dtype=torch.long),
                pos=torch.as_tensor(atoms.positions, **f64),
                cell=torch.as_tensor(np.asarray(atoms.cell[:])[None], **f64),
                edge_index=torch.as_tensor(edge_index), shift=torch.as_tensor(shift, **f64),
                num_nodes=len(atoms))


def evaluate(model, atoms_list, stress=True, cutoff=None):
    """Energies [B], forces [n_atoms_total, 3] and stresses [B, 3, 3] as numpy float64."""
    cutoff = model.cutoff if cutoff is None else cutoff
    batch = Batch.from_data_list([to_data(a, cutoff) for a in atoms_list])
    out = model(batch, forces=True, stress=stress)
    return {k: v.detach().numpy() for k, v in out.items()}


def evaluate_one(model, atoms, stress=True, cutoff=None):
    out = evaluate(model, [atoms], stress=stress, cutoff=cutoff)
    return out["energy"][0], out["forces"], out["stress"][0] if stress else None


def energy(model, atoms) -> float:
    batch = Batch.from_data_list([to_data(atoms, model.cutoff)])
    return float(model(batch, forces=False, stress=False)["energy"][0].detach())


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rotated(atoms: Atoms, rot: np.ndarray) -> Atoms:
    """``atoms`` with positions and cell vectors (rows) rotated by ``rot``: r' = R r."""
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ rot.T, scale_atoms=False)
    out.positions = atoms.positions @ rot.T
    return out


# ------------------------------------------------------------------ the model under test


FAMILIES = sorted(n for n in MODELS
                  if task(n) == "potential" and getattr(family(n), "SYMMETRIC", True))


def needs_conservative(model):
    if not model.conservative:
        pytest.skip("direct force and stress heads: not derivatives of the energy, by design")


def needs(model, symmetry: str):
    """Skip unless ``model`` respects ``symmetry`` (a key of ``EnergyModel.breaks``)."""
    reason = model.breaks.get(symmetry)
    if reason:
        pytest.skip(f"{type(model).__name__} breaks {symmetry} by design: {reason}")


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    """A small rung of each family in float64, perturbed, with a random reference energy.

    Module-scoped and shared: tests must not modify it (copy it first).
    """
    return perturbed(request.param)


def perturbed(name: str):
    """Rung 1 of family ``name`` in float64, weights perturbed so that the many-body terms are
    not negligible, with a random per-element reference and a non-unit energy scale."""
    torch.manual_seed(0)
    size = min(1, len(family(name).LADDER) - 1)
    m = build_model(name, size).double().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        m.atom_ref.uniform_(-6.0, -1.0, generator=gen)
        m.energy_scale.fill_(2.5)
    return m


def check_a_training_step_reaches_every_parameter(name: str, embedding: str = "embed.weight"):
    """One float32 step of rung 1 of family ``name`` on two alloy cells: every parameter gets a
    finite gradient, non-zero except the ``embedding`` table (most rows are not looked up)."""
    torch.manual_seed(0)
    m = build_model(name, 1)
    batch = Batch.from_data_list([to_data(alloy(s), m.cutoff) for s in (0, 1)])
    batch.pos, batch.cell, batch.shift = batch.pos.float(), batch.cell.float(), batch.shift.float()
    out = m(batch)
    loss = sum(out[k].square().mean() for k in ("energy", "forces", "stress"))
    loss.backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if pname != embedding:
            assert p.grad.abs().max() > 0, pname


def test_model_is_not_trivial(model):
    """Guards the other tests against passing vacuously: the energy depends on the geometry."""
    atoms = alloy(0)
    e, f, s = evaluate_one(model, atoms)
    squeezed = atoms.copy()
    squeezed.set_cell(atoms.cell[:] * 0.97, scale_atoms=True)
    assert abs(energy(model, squeezed) - e) > 1e-3
    assert np.abs(f).max() > 1e-3 and np.abs(s).max() > 1e-4
    assert np.isfinite(e) and np.isfinite(f).all() and np.isfinite(s).all()


# ------------------------------------------------------------------ symmetry


def test_rotation_invariance_and_equivariance(model):
    needs(model, "rotation")
    rng = np.random.default_rng(2)
    atoms = alloy(1)
    e, f, s = evaluate_one(model, atoms)
    for _ in range(2):
        rot = random_rotation(rng)
        e_r, f_r, s_r = evaluate_one(model, rotated(atoms, rot))
        assert e_r == pytest.approx(e, abs=1e-10)
        np.testing.assert_allclose(f_r, f @ rot.T, atol=1e-10)  # F' = F R^T (rows)
        np.testing.assert_allclose(s_r, rot @ s @ rot.T, atol=1e-10)


@pytest.mark.parametrize("wrap", [False, True])
def test_translation_invariance(model, wrap):
    """A rigid shift, then (``wrap``) with the atoms wrapped back into the cell."""
    if wrap:
        needs(model, "periodicity")
    atoms = alloy(2)
    e, f, s = evaluate_one(model, atoms)
    moved = atoms.copy()
    moved.positions += np.array([1.7, -2.3, 0.9])
    if wrap:
        moved.wrap()
        assert np.abs(moved.positions - atoms.positions).max() > 1.0  # some atom did wrap
    e_t, f_t, s_t = evaluate_one(model, moved)
    assert e_t == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(f_t, f, atol=1e-10)
    np.testing.assert_allclose(s_t, s, atol=1e-10)


def test_lattice_translation_of_one_atom_changes_nothing(model):
    """Moving one atom by a lattice vector is the same crystal (the image shifts must follow)."""
    needs(model, "periodicity")
    atoms = alloy(3)
    e, f, s = evaluate_one(model, atoms)
    moved = atoms.copy()
    moved.positions[0] += atoms.cell[0] - 2 * atoms.cell[2]
    e_m, f_m, s_m = evaluate_one(model, moved)
    assert e_m == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(f_m, f, atol=1e-10)
    np.testing.assert_allclose(s_m, s, atol=1e-10)


def test_permutation_invariance_and_equivariance(model):
    atoms = alloy(4)
    e, f, s = evaluate_one(model, atoms)
    perm = np.random.default_rng(5).permutation(len(atoms))
    e_p, f_p, s_p = evaluate_one(model, atoms[perm])
    assert e_p == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(f_p, f[perm], atol=1e-10)
    np.testing.assert_allclose(s_p, s, atol=1e-10)


def test_exchanging_two_atoms_of_one_element_changes_nothing_but_their_forces(model):
    """Two Cu atoms trade places: the same structure, so the same energy and stress, and the two
    force rows trade places (a permutation that keeps every element where it was)."""
    atoms = alloy(4)
    atoms.numbers[[0, 5]] = 29
    e, f, s = evaluate_one(model, atoms)
    swapped = atoms.copy()
    swapped.positions[[0, 5]] = atoms.positions[[5, 0]]
    e_x, f_x, s_x = evaluate_one(model, swapped)
    assert e_x == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(f_x, f[[5, 1, 2, 3, 4, 0, 6, 7]], atol=1e-10)
    np.testing.assert_allclose(s_x, s, atol=1e-10)


def test_net_force_vanishes_in_a_periodic_cell(model):
    """Translation invariance implies sum_a F_a = 0 (Newton's third law)."""
    needs_conservative(model)
    _, f, _ = evaluate_one(model, alloy(6))
    np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-10)


# ------------------------------------------------------------------ derivatives


def test_forces_are_minus_the_energy_gradient(model):
    """Central finite differences on every coordinate of a sheared cell, at h = 1e-4 Å and h / 2,
    Richardson-extrapolated: the O(h^2) truncation cancels, leaving O(h^4). (Plain central
    differences at 1e-4 Å miss SchNet's forces by 1.4e-6 eV/Å, all of it truncation: it falls
    100-fold per 10-fold smaller h; its Gaussians are 0.1 Å apart, so its energy is curved.)"""
    needs_conservative(model)
    atoms, h = alloy(7, repeat=(2, 1, 1)), 1e-4
    _, forces, _ = evaluate_one(model, atoms)

    def central(a, i, step):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, i] += step
        minus.positions[a, i] -= step
        return -(energy(model, plus) - energy(model, minus)) / (2 * step)

    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for i in range(3):
            numeric[a, i] = (4 * central(a, i, h / 2) - central(a, i, h)) / 3
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, numeric, atol=1e-7 * max(1.0, np.abs(forces).max()))


@pytest.mark.parametrize("i,j", [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)])
def test_stress_is_the_strain_derivative(model, i, j):
    """sigma_ij = (E(+eps) - E(-eps)) / (2 eps V) for a symmetric strain of cell and positions."""
    needs_conservative(model)
    atoms, eps = alloy(8, repeat=(2, 1, 1)), 1e-5
    _, _, stress = evaluate_one(model, atoms)
    strain = np.zeros((3, 3))
    strain[i, j] += eps / 2
    strain[j, i] += eps / 2  # symmetric: d(strain component)/d(eps) sums to 1 over ij and ji
    e = {}
    for sign in (+1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell[:] @ (np.eye(3) + sign * strain), scale_atoms=True)
        e[sign] = energy(model, strained)
    numeric = (e[+1] - e[-1]) / (2 * eps * atoms.get_volume())
    assert stress[i, j] == pytest.approx(numeric, rel=1e-7, abs=1e-9)  # FD truncation ~h^2
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)


def test_energy_is_extensive_in_a_supercell(model):
    """A 2x1x1 supercell is the same crystal: twice the energy, the forces of each atom repeated,
    the same stress."""
    needs(model, "periodicity")
    atoms = alloy(15, repeat=(1, 2, 2))
    e, f, s = evaluate_one(model, atoms)
    e_2, f_2, s_2 = evaluate_one(model, atoms.repeat((2, 1, 1)))
    assert e_2 == pytest.approx(2 * e, abs=1e-9)
    np.testing.assert_allclose(f_2, np.concatenate([f, f]), atol=1e-10)
    np.testing.assert_allclose(s_2, s, atol=1e-10)


# ------------------------------------------------------------------ batching


def test_batch_equals_each_structure_alone(model):
    structures = [alloy(9), alloy(10, repeat=(1, 1, 1), cubic=True), alloy(11, repeat=(2, 1, 1)),
                  alloy(12, repeat=(1, 1, 1), shear=0.0)]
    batched = evaluate(model, structures)
    alone = [evaluate_one(model, a) for a in structures]
    np.testing.assert_allclose(batched["energy"], [e for e, _, _ in alone], rtol=0, atol=1e-10)
    np.testing.assert_allclose(batched["forces"], np.concatenate([f for _, f, _ in alone]),
                               atol=1e-10)
    np.testing.assert_allclose(batched["stress"], np.stack([s for _, _, s in alone]), atol=1e-10)


def test_batch_with_a_cluster_without_stress(model):
    cluster = Atoms("CuAuNi", positions=[[0, 0, 0], [2.6, 0, 0], [1.1, 2.2, 0.3]])
    structures = [cluster, alloy(13, repeat=(1, 1, 1))]
    batched = evaluate(model, structures, stress=False)
    alone = [evaluate_one(model, a, stress=False) for a in structures]
    assert "stress" not in batched
    np.testing.assert_allclose(batched["energy"], [e for e, _, _ in alone], rtol=0, atol=1e-10)
    np.testing.assert_allclose(batched["forces"], np.concatenate([f for _, f, _ in alone]),
                               atol=1e-10)


# ------------------------------------------------------------------ cutoff and isolated atoms


def test_polynomial_envelope_is_smooth_and_zero_beyond_cutoff():
    """u(0) = 1; u, u' and u'' vanish at the cutoff from below; u = 0 beyond it."""
    env = PolynomialEnvelope(5.0)
    r = torch.tensor([5.0 - 1e-9], dtype=torch.float64, requires_grad=True)
    u = env(r)
    (du,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), r)
    assert abs(u.item()) < 1e-12 and abs(du.item()) < 1e-12 and abs(d2u.item()) < 1e-6
    assert env(torch.tensor([0.0], dtype=torch.float64)).item() == pytest.approx(1.0, abs=1e-15)
    beyond = torch.tensor([5.0, 5.0 + 1e-9, 5.5, 9.0], dtype=torch.float64)
    assert torch.all(env(beyond) == 0)
    inside = env(torch.linspace(0, 5, 101, dtype=torch.float64)[:-1])
    assert torch.all(inside > 0) and torch.all(inside[1:] <= inside[:-1])  # monotone decay


def dimer(r: float, symbols="CuAu") -> Atoms:
    return Atoms(symbols, positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]])


def test_energy_is_continuous_as_a_pair_crosses_the_cutoff(model):
    """Forces vanish at the cutoff as (rc - r)^order: quadratically under the polynomial envelope
    (order 2: below 1e-9 eV/Å within 1e-6 Å), linearly under SchNet's cosine cutoff (order 1)."""
    needs(model, "locality")
    rc, order = model.cutoff, model.cutoff_order
    e_in, f_in, _ = evaluate_one(model, dimer(rc - 1e-6), stress=False)
    e_out, f_out, _ = evaluate_one(model, dimer(rc + 1e-6), stress=False)
    _, f_closer, _ = evaluate_one(model, dimer(rc - 1e-7), stress=False)
    assert abs(e_in - e_out) < 1e-9
    assert np.abs(f_in).max() < (1e-9 if order >= 2 else 1e-5) and np.abs(f_out).max() == 0.0
    assert np.abs(f_closer).max() <= 1.2 * 10.0**-order * np.abs(f_in).max() + 1e-12
    # ... while well inside the cutoff the pair does interact, so the check above is not vacuous
    e_near, f_near, _ = evaluate_one(model, dimer(0.7 * rc), stress=False)
    assert abs(e_near - e_out) > 1e-4 and np.abs(f_near).max() > 1e-4


def test_periodic_energy_is_continuous_across_the_cutoff(model):
    """A one-atom chain whose period crosses the cutoff: each atom meets its own images."""
    rc = model.cutoff

    def chain(a):
        return Atoms("Pd", positions=[[0, 0, 0]], cell=[a, 12.0, 12.0], pbc=True)

    order = model.cutoff_order
    (e_in, _, s_in), (e_out, _, s_out) = (evaluate_one(model, chain(rc + d)) for d in (-1e-6, 1e-6))
    assert abs(e_in - e_out) < 1e-9
    np.testing.assert_allclose(s_in, s_out, atol=1e-9 if order >= 2 else 1e-6)


def test_edges_beyond_the_cutoff_contribute_nothing(model):
    """The model's envelope, not the neighbour list, defines the cutoff: a graph with edges out
    to 1.5 cutoffs gives the same energy, forces and stress as one cut at the cutoff."""
    atoms = alloy(14)
    e, f, s = evaluate_one(model, atoms)
    e_long, f_long, s_long = evaluate_one(model, atoms, cutoff=1.5 * model.cutoff)
    assert e_long == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(f_long, f, atol=1e-10)
    np.testing.assert_allclose(s_long, s, atol=1e-10)


def isolated_energy(model, z: int) -> float:
    """Reference plus the network's constant term: one atom with no edges."""
    y = model.atom_features(torch.tensor([z]), torch.zeros(0, 3, dtype=torch.float64),
                            torch.zeros(2, 0, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    return float((model.energy_scale * y[0] + model.atom_ref[z]).detach())


@pytest.mark.parametrize("z", [13, 79])
def test_isolated_atom(model, z):
    """No neighbours: E = atom_ref[z] + the network's constant term; zero forces and stress."""
    needs(model, "locality")
    expected = isolated_energy(model, z)
    free = Atoms(numbers=[z], positions=[[0.3, -1.2, 4.0]])
    e_free, f_free, _ = evaluate_one(model, free, stress=False)
    boxed = Atoms(numbers=[z], positions=[[1.0, 2.0, 3.0]], cell=[12.0, 13.0, 14.0], pbc=True)
    e_box, f_box, s_box = evaluate_one(model, boxed)
    assert e_free == pytest.approx(expected, abs=1e-12)
    assert e_box == pytest.approx(expected, abs=1e-12)
    assert np.all(f_free == 0) and np.all(f_box == 0) and np.all(s_box == 0)
    # the reference enters additively, one to one
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.atom_ref[z] += 1.25
    assert evaluate_one(shifted, free, stress=False)[0] == pytest.approx(e_free + 1.25, abs=1e-12)


def test_atoms_beyond_the_cutoff_are_independent(model):
    """Two atoms farther apart than the cutoff: the energy is the sum of isolated energies."""
    needs(model, "locality")
    pair = dimer(model.cutoff + 0.5, "AlAu")
    e, f, _ = evaluate_one(model, pair, stress=False)
    assert e == pytest.approx(isolated_energy(model, 13) + isolated_energy(model, 79), abs=1e-12)
    assert np.all(f == 0)


def check_outputs_do_not_rotate_with_the_input(model) -> None:
    """For a family that sees raw Cartesian positions (the plain transformer, the FCN): rotating
    the input changes the energy and does not rotate forces and stress (an equivariant model
    gives ~1e-15 here)."""
    atoms = alloy(1)
    e, f, s = evaluate_one(model, atoms)
    rot = random_rotation(np.random.default_rng(2))
    e_r, f_r, s_r = evaluate_one(model, rotated(atoms, rot))
    scale = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())  # noqa: E731
    assert scale(f_r, f @ rot.T) > 0.1
    assert scale(s_r, rot @ s @ rot.T) > 0.1
    assert abs(e_r - e) > 1e-3


def check_a_lattice_vector_moves_the_output(model, force_change: float) -> None:
    """For a family that is not periodic: moving one atom by a lattice vector (the same crystal)
    changes the energy, and the forces by more than ``force_change`` (relative)."""
    atoms = alloy(2)
    e, f, _ = evaluate_one(model, atoms)
    lattice = atoms.copy()
    lattice.positions[0] += atoms.cell[0]
    e_l, f_l, _ = evaluate_one(model, lattice)
    assert abs(e_l - e) > 1e-3
    assert float(np.abs(f_l - f).max() / np.abs(f).max()) > force_change
