"""Checks of the two transformer families (msl.models.transformer), in float64.

``transformer_local`` also runs the shared physics suite (``test_models_physics.py``);
``transformer`` (Trikha et al.'s plain encoder over raw Cartesian positions) is kept out of it, so
it is tested here for what it does respect (permutations, masking of padding, shapes and scales)
and, as a test, for what it does not: rotating or translating the input does not rotate or leave
unchanged its outputs. Both: pinned ladders, a training step. Local only: the net force vanishes
(the force weights are symmetric in i and j), and a third atom crosses the cutoff smoothly.
"""

import numpy as np
import pytest
import torch
from ase import Atoms

from msl.models import family, transformer
from test_models_physics import (alloy, check_a_training_step_reaches_every_parameter,
                                 check_a_lattice_vector_moves_the_output,
                                 check_outputs_do_not_rotate_with_the_input, evaluate,
                                 evaluate_one, perturbed)

torch.set_num_threads(2)

VARIANTS = {"transformer": "plain", "transformer_local": "local"}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    """Rung 1 in float64, perturbed, with a random reference (the physics-suite recipe)."""
    return perturbed(request.param)


def _name(model) -> str:
    """The registry name of ``model``'s family."""
    return "transformer" if isinstance(model, transformer.PlainTransformer) else "transformer_local"


@pytest.fixture(scope="module")
def plain():
    return perturbed("transformer")


@pytest.fixture(scope="module")
def local():
    return perturbed("transformer_local")


# ------------------------------------------------------------------ ladder and registry


def test_both_variants_share_the_ladder_and_only_local_is_symmetric():
    assert family("transformer").LADDER is family("transformer_local").LADDER
    assert not family("transformer").SYMMETRIC and family("transformer_local").SYMMETRIC


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="'global'"):
        transformer.build(0, variant="global")


# ------------------------------------------------------------------ both: what they respect


def test_outputs_have_shapes_and_follow_the_scales(model):
    structures = [alloy(0), alloy(1, repeat=(1, 1, 1))]
    out = evaluate(model, structures)
    n_atoms = sum(len(a) for a in structures)
    assert out["energy"].shape == (2,) and out["forces"].shape == (n_atoms, 3)
    assert out["stress"].shape == (2, 3, 3)
    np.testing.assert_allclose(out["stress"], out["stress"].transpose(0, 2, 1), atol=1e-14)
    assert np.abs(out["forces"]).max() > 1e-3 and np.abs(out["stress"]).max() > 1e-4
    scaled = perturbed(_name(model))
    with torch.no_grad():
        scaled.force_scale.fill_(3.0)
        scaled.stress_scale.fill_(0.01)
    out2 = evaluate(scaled, structures)
    np.testing.assert_allclose(out2["forces"], 3.0 * out["forces"], rtol=1e-12)
    np.testing.assert_allclose(out2["stress"], 0.01 * out["stress"], rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(out2["energy"], out["energy"], rtol=1e-12)


def test_permutation_invariance_and_equivariance(model):
    atoms = alloy(4)
    e, f, s = evaluate_one(model, atoms)
    perm = np.random.default_rng(5).permutation(len(atoms))
    e_p, f_p, s_p = evaluate_one(model, atoms[perm])
    assert e_p == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(f_p, f[perm], atol=1e-10)
    np.testing.assert_allclose(s_p, s, atol=1e-10)


def test_batch_equals_each_structure_alone(model):
    """Structures of 8, 4, 2 and 3 atoms: the plain variant pads all to 8, and must mask it."""
    cluster = Atoms("CuAuNi", positions=[[0, 0, 0], [2.6, 0, 0], [1.1, 2.2, 0.3]])
    structures = [alloy(9), alloy(10, repeat=(1, 1, 1), cubic=True), alloy(11, repeat=(2, 1, 1)),
                  cluster]
    batched = evaluate(model, structures, stress=False)
    alone = [evaluate_one(model, a, stress=False) for a in structures]
    np.testing.assert_allclose(batched["energy"], [e for e, _, _ in alone], rtol=0, atol=1e-10)
    np.testing.assert_allclose(batched["forces"], np.concatenate([f for _, f, _ in alone]),
                               atol=1e-10)
    periodic = evaluate(model, structures[:3])
    np.testing.assert_allclose(periodic["stress"],
                               np.stack([evaluate_one(model, a)[2] for a in structures[:3]]),
                               atol=1e-10)


def test_a_training_step_reaches_every_parameter(model):
    check_a_training_step_reaches_every_parameter(_name(model))


# ------------------------------------------------------------------ plain: what it misses


def relative(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_plain_forces_do_not_rotate_with_the_input(plain):
    """Trikha et al.'s encoder sees raw Cartesian positions: it is not rotation equivariant."""
    check_outputs_do_not_rotate_with_the_input(plain)


def test_plain_is_not_translation_invariant_nor_periodic(plain):
    atoms = alloy(2)
    e, f, _ = evaluate_one(plain, atoms)
    moved = atoms.copy()
    moved.positions += np.array([1.7, -2.3, 0.9])
    e_t, f_t, _ = evaluate_one(plain, moved)
    assert abs(e_t - e) > 1e-3 and relative(f_t, f) > 0.1
    check_a_lattice_vector_moves_the_output(plain, force_change=0.01)


def test_plain_ignores_the_neighbour_list(plain):
    atoms = alloy(3)
    e, f, s = evaluate_one(plain, atoms)
    e_long, f_long, s_long = evaluate_one(plain, atoms, cutoff=1.5 * plain.cutoff)
    assert e_long == pytest.approx(e, abs=1e-12)
    np.testing.assert_allclose(f_long, f, atol=1e-12)
    np.testing.assert_allclose(s_long, s, atol=1e-12)


# ------------------------------------------------------------------ local: beyond the shared suite


def test_local_net_force_vanishes(local):
    """w_ij = w_ji and r_ji = -r_ij: the direct forces obey Newton's third law."""
    for atoms in (alloy(6), Atoms("CuAuNi", positions=[[0, 0, 0], [2.6, 0, 0], [1.1, 2.2, 0.3]])):
        _, f, _ = evaluate_one(local, atoms, stress=False)
        assert np.abs(f).max() > 1e-3
        np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-12)


def test_local_stress_is_zero_without_a_cell(local):
    cluster = Atoms("CuAu", positions=[[0, 0, 0], [2.6, 0, 0]])
    _, _, s = evaluate_one(local, cluster)
    assert np.all(s == 0)


def test_local_third_atom_crosses_the_cutoff_smoothly(local):
    """Atom 0 keeps a neighbour at 2.5 Å while atom 2 crosses its cutoff (4.33 Å from atom 1)."""
    rc, t = local.cutoff, np.radians(60.0)

    def trimer(s):
        third = [s * np.cos(t), s * np.sin(t), 0]
        return Atoms("CuAuNi", positions=[[0, 0, 0], [2.5, 0, 0], third])

    # atom 2 also moves relative to atom 1, so the energy has a slope here: compare the step
    # across the cutoff with the step just before it (a jump, or a kink, would show)
    (e0, f0, _), (e1, f1, _), (e2, f2, _) = (evaluate_one(local, trimer(rc + d), stress=False)
                                             for d in (-3e-7, -1e-7, 1e-7))
    assert abs((e2 - e1) - (e1 - e0)) < 1e-11 and np.abs((f2 - f1) - (f1 - f0)).max() < 1e-10
    assert abs(e2 - e1) > 1e-8                      # ... and the slope is not zero
    e_far, _, _ = evaluate_one(local, trimer(0.7 * rc), stress=False)
    assert abs(e_far - e2) > 1e-4                # atom 2 does interact inside the cutoff
