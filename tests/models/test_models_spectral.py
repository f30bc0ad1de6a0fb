"""Spectral families (Großmann et al.'s OptiMetal2B/3B): output contract, symmetry, parameter
counts against the paper, and that a few steps of training learn.

Each symmetry test runs a small rung of every spectral family in float64 and eval mode (the MLPs
have batch norm, which mixes the structures of a batch only in training), with its weights
perturbed away from the initialisation and non-trivial target statistics (so that the
de-normalisation is exercised and the scalar's ReLU is not active everywhere). Structures are
small rattled fcc and bcc alloy cells built with ASE; graphs come from :func:`msl.graph.edges`.
"""

import re

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from torch_geometric.data import Batch

from msl import graph
from msl.models import MODELS, build_model, count_params, family, task
from msl.models import optimetal_spectral as spectral
from msl.models.potential import EnergyModel
from test_models_physics import random_rotation, rotated, to_data

torch.set_num_threads(2)

ALLOY = [13, 28, 29, 46, 47, 78, 79]  # Al Ni Cu Pd Ag Pt Au
SPECTRAL = sorted(n for n in MODELS if task(n) == "spectral")
VARIANT_OF = {"optimetal2b_spectral": "cgc", "optimetal2b_tc_spectral": "tc",
              "optimetal3b_spectral": "three_body"}

# Großmann et al.'s measured N at d_h = 16 .. 1024 with 4002 outputs (papers.md section 2.5)
PUBLISHED = {
    "cgc": [278_627, 585_507, 1_296_035, 3_104_163, 8_268_707, 24_790_947, 82_608_035],
    "tc": [278_275, 583_779, 1_288_483, 3_072_675, 8_140_195, 24_271_779, 80_521_123],
    "three_body": [291_827, 635_459, 1_490_147, 3_869_219, 11_306_147, 36_895_139,
                   130_933_667],
}


# ------------------------------------------------------------------ structures and evaluation


def alloy(seed: int, lattice="fcc", repeat=(2, 2, 2), cubic=False, shear=0.05,
          rattle=0.1) -> Atoms:
    """A rattled fcc or bcc alloy cell with random species from ``ALLOY``, randomly sheared."""
    rng = np.random.default_rng(seed)
    atoms = (bulk("Cu", "fcc", a=3.6, cubic=cubic) if lattice == "fcc"
             else bulk("Fe", "bcc", a=2.9, cubic=True)).repeat(repeat)
    atoms.numbers = rng.choice(ALLOY, len(atoms))
    deform = np.eye(3) + shear * rng.uniform(-1, 1, (3, 3))
    atoms.set_cell(atoms.cell[:] @ deform, scale_atoms=True)
    atoms.rattle(rattle, seed=seed + 1)
    return atoms


STRUCTURES = [alloy(0), alloy(1, "bcc", repeat=(2, 1, 1)), alloy(2, cubic=True, repeat=1)]


def to_batch(model, atoms_list) -> Batch:
    return Batch.from_data_list([to_data(a, model.cutoff) for a in atoms_list])


def predict(model, atoms_list):
    """Spectra [B, n_grid] and scalars [B] as numpy float64."""
    with torch.no_grad():
        out = model(to_batch(model, atoms_list))
    return out["spectrum"].numpy(), out["scalar"].numpy()


def perturbed(name: str, size: int = 1):
    """Rung ``size`` of family ``name`` in float64 and eval mode, weights perturbed, with target
    statistics of a made-up training set (scalar mean 5, so its ReLU is mostly inactive)."""
    torch.manual_seed(0)
    m = build_model(name, size).double().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    rng = np.random.default_rng(3)
    m.fit_targets(rng.normal(2.0, 0.5, (20, m.n_grid)), rng.normal(5.0, 1.0, 20))
    return m


@pytest.fixture(scope="module", params=SPECTRAL)
def model(request):
    """Module-scoped and shared: tests must not modify it."""
    return perturbed(request.param)


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ contract


def test_registry():
    assert SPECTRAL == sorted(VARIANT_OF)
    for name in SPECTRAL:
        assert family(name).TASK == "spectral" and family(name).LADDER == spectral.WIDTHS
        assert build_model(name, 0).cutoff == spectral.CUTOFF == 5.5


@pytest.mark.parametrize("name", SPECTRAL)
@pytest.mark.parametrize("size", [0, 1])
def test_shapes_finite_and_scalar_non_negative(name, size):
    m = build_model(name, size).double().eval()
    m.fit_targets(np.zeros((2, spectral.N_GRID)), np.array([-3.0, -1.0]))  # pushes scalar < 0
    spectrum, scalar = predict(m, STRUCTURES)
    assert spectrum.shape == (3, spectral.N_GRID) and scalar.shape == (3,)
    assert np.isfinite(spectrum).all() and np.isfinite(scalar).all()
    assert (scalar >= 0).all()


def test_n_grid_is_a_dim():
    m = build_model("optimetal3b_spectral", 0, n_grid=7).double().eval()
    assert predict(m, STRUCTURES[:2])[0].shape == (2, 7)


def test_model_is_not_trivial(model):
    """Guards the symmetry tests against passing vacuously: outputs depend on the structure."""
    spectrum, scalar = predict(model, STRUCTURES)
    squeezed = STRUCTURES[0].copy()
    squeezed.set_cell(squeezed.cell[:] * 0.97, scale_atoms=True)
    spectrum_sq, scalar_sq = predict(model, [squeezed])
    assert np.abs(spectrum_sq[0] - spectrum[0]).max() > 1e-4
    assert abs(scalar_sq[0] - scalar[0]) > 1e-4
    assert np.ptp(scalar) > 1e-4 and (scalar > 0).all()


# ------------------------------------------------------------------ symmetry


def test_rotation_invariance(model):
    rng = np.random.default_rng(2)
    atoms = STRUCTURES[0]
    for _ in range(2):
        assert_same(predict(model, [rotated(atoms, random_rotation(rng))]),
                    predict(model, [atoms]))


def test_translation_invariance(model):
    atoms = STRUCTURES[1]
    moved = atoms.copy()
    moved.positions += np.array([0.7, -1.3, 2.1])
    assert_same(predict(model, [moved]), predict(model, [atoms]))


def test_permutation_invariance(model):
    atoms = STRUCTURES[0]
    order = np.random.default_rng(4).permutation(len(atoms))
    assert_same(predict(model, [atoms[order]]), predict(model, [atoms]))


def test_choice_of_periodic_image(model):
    atoms = STRUCTURES[0]
    moved = atoms.copy()
    moved.positions[3] += atoms.cell[0] - 2 * atoms.cell[2]
    assert_same(predict(model, [moved]), predict(model, [atoms]))


def test_supercell_gives_the_same_prediction(model):
    """Attention pooling and graph LayerNorm are intensive: a 2x1x1 supercell is the same
    material and gets the same spectrum and scalar."""
    for atoms in STRUCTURES[:2]:
        assert_same(predict(model, [atoms.repeat((2, 1, 1))]), predict(model, [atoms]))


def test_batch_equals_each_structure_alone(model):
    """Includes a structure without triplets (simple cubic, bonds of 4.2 Å > 4 Å)."""
    sparse = Atoms("Cu", cell=np.eye(3) * 4.2, pbc=True).repeat((2, 1, 1))
    structures = STRUCTURES + [sparse]
    spectrum, scalar = predict(model, structures)
    for k, atoms in enumerate(structures):
        alone = predict(model, [atoms])
        assert_same((spectrum[k:k + 1], scalar[k:k + 1]), alone)


# ------------------------------------------------------------------ targets


def test_fit_targets_sets_buffers_and_forward_denormalises():
    m = build_model("optimetal2b_spectral", 0).double().eval()
    rng = np.random.default_rng(5)
    spectrum = rng.normal(3.0, 2.0, (30, spectral.N_GRID))
    spectrum[:, 0] = 0.0                   # a point that never varies
    spectrum[rng.random(spectrum.shape) < 0.1] = np.nan
    spectrum[:, 1] = np.nan                # a point with no data
    scalar = rng.normal(4.0, 0.5, 30)
    scalar[[2, 7]] = np.nan
    m.fit_targets(spectrum, scalar)
    buffers = dict(m.named_buffers())
    assert {"spectrum_mean", "spectrum_std", "scalar_mean", "scalar_std"} <= set(buffers)
    assert not {"spectrum_mean", "scalar_std"} & {n for n, _ in m.named_parameters()}
    mean, std = m.spectrum_mean.numpy(), m.spectrum_std.numpy()
    np.testing.assert_allclose(mean[2:], np.nanmean(spectrum[:, 2:], 0), rtol=1e-12)
    np.testing.assert_allclose(std[2:], np.nanstd(spectrum[:, 2:], 0), rtol=1e-12)
    with_data = np.isfinite(spectrum).any(0)
    residual = spectrum[:, with_data] - np.nanmean(spectrum[:, with_data], 0)
    overall = np.sqrt(np.nanmean(residual**2))
    assert mean[0] == mean[1] == 0 and std[0] == std[1] == pytest.approx(0.01 * overall)
    assert float(m.scalar_mean) == pytest.approx(np.nanmean(scalar), rel=1e-12)
    assert float(m.scalar_std) == pytest.approx(np.nanstd(scalar), rel=1e-12)

    batch = to_batch(m, STRUCTURES)
    with torch.no_grad():
        out = m(batch, forces=False, stress=False)   # the potentials' keywords are ignored
        edge_vec = EnergyModel.edge_vectors(batch, batch.pos, batch.cell)
        raw_spectrum, raw_scalar = m.heads(batch, edge_vec, 3)
    np.testing.assert_allclose(out["spectrum"], m.spectrum_mean + m.spectrum_std * raw_spectrum)
    np.testing.assert_allclose(out["scalar"], torch.relu(m.scalar_mean + m.scalar_std * raw_scalar))
    with pytest.raises(ValueError, match=r"\(30, 5\)"):
        m.fit_targets(spectrum[:, :5], scalar)


# ------------------------------------------------------------------ size dial and counts


@pytest.mark.parametrize("variant", ["gcn", "CGC", None])
def test_bad_variant_is_named(variant):
    with pytest.raises(ValueError, match=re.escape(f"unknown variant {variant!r}")):
        spectral.build(0, variant=variant)


@pytest.mark.parametrize("size", [-1, len(spectral.WIDTHS), 1.0, True, "1"])
def test_bad_size_is_named(size):
    with pytest.raises(ValueError, match=re.escape(f"size {size!r}")):
        spectral.build(size)
    with pytest.raises(ValueError, match=re.escape(f"size {size!r}")):
        build_model("optimetal3b_spectral", size)


def meta_count(variant: str, size: int, **dims) -> tuple[int, int]:
    """(n_params, n_params_no_embed), built on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        c = count_params(spectral.build(size, variant, **dims))
    return c["n_params"], c["n_params_no_embed"]


@pytest.mark.parametrize("variant", spectral.VARIANTS)
def test_paper_widths_have_the_published_parameter_counts(variant):
    """With the paper's 4002 outputs, every width of its scan has exactly its measured N."""
    assert spectral.PAPER_WIDTHS == [16, 32, 64, 128, 256, 512, 1024]
    first = spectral.WIDTHS.index(16)
    got = [meta_count(variant, first + k, n_grid=4002)[0]
           for k in range(len(spectral.PAPER_WIDTHS))]
    assert got == PUBLISHED[variant]


def test_group_period_table():
    """pymatgen's groups and periods; lanthanides/actinides group 3; period 7 shares 6."""
    table = spectral.group_period_table()
    assert len(table) == spectral.MAX_Z + 1
    for z, (group, period) in {1: (1, 1), 2: (18, 1), 29: (11, 4), 57: (3, 6), 64: (3, 6),
                               71: (3, 6), 72: (4, 6), 79: (11, 6), 83: (15, 6), 87: (1, 6),
                               92: (3, 6)}.items():
        assert table[z] == (group - 1, period - 1), z


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("name", SPECTRAL)
def test_a_few_training_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    m = build_model(name, 1).double().train()
    batch = to_batch(m, STRUCTURES + [alloy(6, "bcc", repeat=(2, 1, 1))])
    rng = np.random.default_rng(7)
    target_spectrum = torch.as_tensor(rng.normal(1.0, 0.3, (4, m.n_grid)))
    target_scalar = torch.as_tensor(rng.uniform(2.0, 4.0, 4))
    m.fit_targets(target_spectrum.numpy(), target_scalar.numpy())
    optimizer = torch.optim.AdamW(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        out = m(batch)
        loss = ((out["spectrum"] - target_spectrum).abs().mean()
                + (out["scalar"] - target_scalar).abs().mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_batch_of_one_trains():
    """Batch norm in the heads sees one row; it then uses its running statistics."""
    m = build_model("optimetal2b_spectral", 0).double().train()
    out = m(to_batch(m, STRUCTURES[:1]))
    (out["spectrum"].sum() + out["scalar"].sum()).backward()
    assert out["spectrum"].shape == (1, spectral.N_GRID)
