"""The spectral target: EMT Hessian physics, VDOS rules, the emt-vdos dataset, spectra I/O."""

import json
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect
from ase.io import write

from msl.data import Structures, embedded, generate, read, spectra
from msl.data.generate import KINDS

gen_module = sys.modules["msl.data.generate"]
BASE = ("numbers", "positions", "cells", "pbc", "n_atoms", "energy", "forces", "stress")


def cu_au(rattle=0.05, seed=0):
    """A rattled 4-atom Cu3Au cubic cell with EMT attached."""
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True)
    atoms[1].symbol = "Au"
    atoms.rattle(rattle, seed=seed)
    atoms.calc = EMT()
    return atoms


def mass_weighted_eigenvalues(atoms, hess):
    w = 1.0 / np.sqrt(np.repeat(atoms.get_masses(), 3))
    return np.linalg.eigvalsh(hess * w[:, None] * w[None, :])


# --- Hessian and frequencies ---------------------------------------------------------------

def test_hessian_is_symmetric_and_converged_in_the_step():
    atoms = cu_au()
    raw = spectra.hessian(atoms, symmetrise=False)
    scale = np.abs(raw).max()
    assert np.abs(raw - raw.T).max() < 1e-5 * scale  # forces are a gradient: d2E is symmetric
    hess = spectra.hessian(atoms)
    np.testing.assert_array_equal(hess, hess.T)
    # central differences: the error is O(h^2), so halving h changes little
    np.testing.assert_allclose(spectra.hessian(atoms, step=0.005), hess, atol=1e-4 * scale)
    np.testing.assert_array_equal(atoms.positions, cu_au().positions)  # atoms left as they were


def test_hessian_diagonal_matches_second_difference_of_energy():
    """Independent of the forces: d2E/dx2 from three energies, for every coordinate."""
    atoms = cu_au()
    hess = spectra.hessian(atoms)
    work, x0, h = atoms.copy(), atoms.get_positions(), 0.01
    work.calc = EMT()
    e0 = work.get_potential_energy()
    diag = []
    for k in range(3 * len(atoms)):
        e = []
        for sign in (1, -1):
            x = x0.copy()
            x[k // 3, k % 3] += sign * h
            work.set_positions(x)
            e.append(work.get_potential_energy())
        diag.append((e[0] - 2 * e0 + e[1]) / h**2)
    np.testing.assert_allclose(np.diag(hess), diag, rtol=1e-3, atol=1e-3)


def test_translations_are_zero_modes_of_a_periodic_cell():
    atoms = cu_au()
    raw, hess = spectra.hessian(atoms, symmetrise=False), spectra.hessian(atoms)
    n = len(atoms)
    # forces sum to zero for every displacement (exact), and a rigid shift changes no force
    # (the acoustic sum rule, to the O(h^2) finite-difference error)
    assert np.abs(raw.reshape(n, 3, n, 3).sum(axis=2)).max() < 1e-9
    assert np.abs(hess.reshape(n, 3, n, 3).sum(axis=2)).max() < 1e-5 * np.abs(hess).max()
    lam = mass_weighted_eigenvalues(atoms, hess)
    nu = np.sign(lam) * np.sqrt(np.abs(lam)) * spectra.thz_per_unit()
    small = np.sort(np.abs(nu))
    assert small[2] < 1e-3 and small[3] > 1.0  # exactly 3 zero modes, well separated
    kept = spectra.frequencies(hess, atoms.get_masses())
    assert kept.shape == (3 * n - 3,) and np.all(np.diff(kept) >= 0)
    assert np.abs(kept).min() > 1.0


def test_fcc_cu_gamma_frequencies_match_ase_phonons(tmp_path):
    """Perfect fcc Cu at EMT equilibrium: the 4-atom cubic cell's Gamma modes are the primitive
    cell's X-point phonons (folded), computed independently by ase.phonons on a 4x4x4 supercell."""
    from ase.phonons import Phonons
    from ase.units import _e, _hplanck
    from scipy.optimize import minimize_scalar

    def energy(a):
        prim = bulk("Cu", "fcc", a=a)
        prim.calc = EMT()
        return prim.get_potential_energy()

    a0 = minimize_scalar(energy, bracket=(3.5, 3.6, 3.7), tol=1e-10).x
    cell = bulk("Cu", "fcc", a=a0, cubic=True)
    cell.calc = EMT()
    assert np.abs(cell.get_stress()).max() < 1e-6  # equilibrium
    nu = spectra.frequencies(spectra.hessian(cell), cell.get_masses())
    assert nu.shape == (9,) and (nu > 0).all()  # a stable crystal: all real

    prim = bulk("Cu", "fcc", a=a0)
    phonons = Phonons(prim, EMT(), supercell=(4, 4, 4), delta=0.01, name=str(tmp_path / "ph"))
    phonons.run()
    phonons.read(acoustic=False)
    x_points = 2 * np.pi / a0 * np.eye(3)  # the three X points, Cartesian 1/Å
    fractional = np.linalg.solve((2 * np.pi * prim.cell.reciprocal()).T, x_points.T).T
    ev = phonons.band_structure(fractional).ravel()
    reference = np.sort(ev / (_hplanck / _e) / 1e12)  # eV -> THz
    np.testing.assert_allclose(nu, reference, rtol=1e-4)
    np.testing.assert_allclose(nu[[0, -1]], [5.53, 8.14], atol=0.01)  # TA(X), LA(X) of EMT Cu


def test_thz_conversion():
    from ase import units

    # sqrt(eV / (Å^2 amu)) in rad/s, over 2π, in THz, from SI constants
    si = np.sqrt(units._e / (1e-20 * units._amu)) / (2 * np.pi) / 1e12
    assert spectra.thz_per_unit() == pytest.approx(si, rel=1e-9)
    assert spectra.thz_per_unit() == pytest.approx(15.6333, abs=1e-4)


def test_frequencies_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"hessian has shape \(6, 6\)"):
        spectra.frequencies(np.zeros((6, 6)), np.ones(3))
    with pytest.raises(ValueError, match="calculator"):
        spectra.hessian(bulk("Cu"))


# --- spectrum and scalar rules ---------------------------------------------------------------

def test_dos_area_is_the_fraction_of_modes_inside_the_grid():
    nu = np.array([-20.0, 0.0, 5.0, 10.0, 30.0])  # 3 of 5 well inside [-8, 20]
    g = spectra.dos(nu)
    assert g.shape == spectra.GRID.shape == (141,)
    np.testing.assert_allclose(np.diff(spectra.GRID), 0.2, atol=1e-12)
    assert np.trapezoid(g, spectra.GRID) == pytest.approx(0.6, abs=1e-9)
    both = spectra.dos(np.stack([nu, nu[::-1] + 1]))  # batched equals unbatched
    np.testing.assert_allclose(both[0], g)
    np.testing.assert_allclose(both[1], spectra.dos(nu[::-1] + 1))
    assert spectra.rms_frequency([-3.0, 4.0]) == pytest.approx(np.sqrt(12.5))


def test_rattled_cell_puts_weight_at_negative_frequency():
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat((1, 1, 2))
    atoms.rattle(0.15, seed=2)
    atoms.calc = EMT()
    out = spectra.vdos(atoms)
    nu = out["frequencies"]
    assert out["n_imaginary"] == (nu < 0).sum() >= 1 and nu.shape == (21,)
    negative = spectra.GRID < -0.75  # 3 sigma below zero
    area = np.trapezoid(out["spectrum"] * negative, spectra.GRID)
    assert area > 0.5 * out["n_imaginary"] / len(nu)
    assert out["scalar"] == pytest.approx(np.sqrt(np.mean(nu**2)))
    np.testing.assert_array_equal(out["spectrum_grid"], spectra.GRID)


# --- the emt-vdos dataset ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def vdos_db(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("vdos") / "vdos.aselmdb", 6, seed=2, workers=2,
                    progress=False, kind="emt-vdos")


def db_rows(path):
    with connect(path, type="aselmdb", readonly=True, use_lock_file=False) as db:
        return [(r.toatoms(), r.data) for r in db.select()]


def test_vdos_dataset_is_independent_of_workers(vdos_db, tmp_path):
    serial = generate(tmp_path / "serial.aselmdb", 6, seed=2, workers=1, progress=False,
                      kind="emt-vdos")
    for (a, da), (b, db) in zip(db_rows(vdos_db), db_rows(serial), strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        for key in ("spectrum", "spectrum_grid", "frequencies", "scalar"):
            np.testing.assert_array_equal(da[key], db[key])


def test_vdos_dataset_round_trips_through_read(vdos_db, tmp_path):
    s = read(vdos_db, cache_dir=tmp_path)
    rows = db_rows(vdos_db)
    assert s.has_spectra and len(s) == 6 and s.n_atoms.min() >= 4 and s.n_atoms.max() <= 8
    np.testing.assert_array_equal(s.spectrum_grid, spectra.GRID)
    for i, (atoms, data) in enumerate(rows):
        np.testing.assert_array_equal(s.spectrum[i], data["spectrum"])
        assert s.scalar[i] == data["scalar"]
        assert data["frequencies"].shape == (3 * len(atoms) - 3,)
    # the labels are EMT's: recompute one structure from scratch
    atoms = s.atoms(0)
    atoms.calc = EMT()
    np.testing.assert_allclose(spectra.vdos(atoms)["spectrum"], s.spectrum[0], atol=1e-10)
    cached = read(vdos_db, cache_dir=tmp_path)  # from the npz cache
    np.testing.assert_array_equal(cached.spectrum, s.spectrum)
    np.testing.assert_array_equal(cached.scalar, s.scalar)
    # subset, save/load and Structures.atoms carry the spectra
    back = Structures.load(s.subset([4, 1]).save(tmp_path / "sub.npz"))
    np.testing.assert_array_equal(back.spectrum, s.spectrum[[4, 1]])
    np.testing.assert_array_equal(back.scalar, s.scalar[[4, 1]])
    np.testing.assert_array_equal(back.spectrum_grid, s.spectrum_grid)
    assert s.atoms(4).info["scalar"] == s.scalar[4]


def test_cache_kinds_do_not_mix(tmp_path, monkeypatch):
    plain = embedded(6, seed=1, workers=1, cache_dir=tmp_path, progress=False)
    vdos = embedded(6, seed=1, workers=1, cache_dir=tmp_path, progress=False, kind="emt-vdos")
    assert (plain.name, vdos.name) == ("emt-alloys-n6-seed1.aselmdb",
                                       "emt-vdos-alloys-n6-seed1.aselmdb")
    meta = [json.loads(p.with_name(p.name + ".json").read_text())["settings"]
            for p in (plain, vdos)]
    assert [m["kind"] for m in meta] == ["emt", "emt-vdos"]
    assert meta[0]["max_atoms"] == 32 and meta[1]["max_atoms"] == 8 and "spectrum" in meta[1]
    assert not read(plain).has_spectra and read(vdos).has_spectra
    monkeypatch.setattr(gen_module, "generate", lambda *a, **k: pytest.fail("generated again"))
    assert embedded(6, seed=1, cache_dir=tmp_path, progress=False, kind="emt-vdos") == vdos
    assert embedded(6, seed=1, cache_dir=tmp_path, progress=False) == plain


def test_bad_kind(tmp_path):
    for call in (lambda: generate(tmp_path / "x.aselmdb", 3, progress=False, kind="dft"),
                 lambda: embedded(3, cache_dir=tmp_path, progress=False, kind="dft")):
        with pytest.raises(ValueError, match=r"'dft'.*emt, emt-vdos"):
            call()
    assert list(tmp_path.iterdir()) == [] and list(KINDS) == ["emt", "emt-vdos", "chgnet"]


# --- spectra users bring along -----------------------------------------------------------------

GRID = np.linspace(0.0, 10.0, 11)  # e.g. photon energies of a dielectric function, eV


def frame(seed, spectrum=True, scalar=True, grid=GRID):
    atoms = cu_au(seed=seed)
    atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                       forces=atoms.get_forces())
    if spectrum:
        atoms.info["spectrum"] = np.random.default_rng(seed).random(len(grid))
        atoms.info["spectrum_grid"] = grid
    if scalar:
        atoms.info["scalar"] = 0.5 + seed
    return atoms


def check(s, frames):
    assert s.has_spectra
    np.testing.assert_array_equal(s.spectrum_grid, GRID)
    for i, atoms in enumerate(frames):
        want = atoms.info.get("spectrum", np.full(len(GRID), np.nan))
        np.testing.assert_array_equal(s.spectrum[i], want)
        np.testing.assert_array_equal(s.scalar[i], atoms.info.get("scalar", np.nan))


def test_extxyz_spectra(tmp_path):
    frames = [frame(0), frame(1, spectrum=False), frame(2, scalar=False)]
    write(tmp_path / "eps.extxyz", frames)
    check(read(tmp_path / "eps.extxyz"), frames)
    # Structures.atoms writes the same keys, so extxyz round-trips
    s = read(tmp_path / "eps.extxyz")
    write(tmp_path / "again.extxyz", [s.atoms(i) for i in range(len(s))])
    check(read(tmp_path / "again.extxyz"), frames)


def test_ase_db_spectra_and_folders(tmp_path, vdos_db):
    frames = [frame(3), frame(4, scalar=False), frame(5, spectrum=False)]
    with connect(tmp_path / "b.db") as db:
        for atoms in frames:
            keys = ("spectrum", "spectrum_grid", "scalar")
            db.write(atoms, data={k: atoms.info[k] for k in keys if k in atoms.info})
    check(read(tmp_path / "b.db"), frames)

    # a folder: a file without spectra gets NaN rows next to one with them
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.db").write_bytes((tmp_path / "b.db").read_bytes())
    generate(folder / "a.aselmdb", 2, seed=0, workers=1, progress=False)
    both = read(folder)  # sorted by name: a.aselmdb (no spectra), then b.db
    assert len(both) == 5 and np.isnan(both.spectrum[:2]).all() and np.isnan(both.scalar[:2]).all()
    check(both.subset([2, 3, 4]), frames)

    # ... and two files on different grids name both files
    (folder / "c.aselmdb").write_bytes(vdos_db.read_bytes())
    with pytest.raises(ValueError, match=r"different grids: .*b\.db has 11 .*c\.aselmdb has 141"):
        read(folder)


def two_grids():
    return [frame(0), frame(1, grid=GRID + 0.5)]


def short_grid():
    atoms = frame(0)
    atoms.info["spectrum_grid"] = GRID[:5]
    return [atoms]


def no_grid():
    atoms = frame(0)
    del atoms.info["spectrum_grid"]
    return [atoms]


@pytest.mark.parametrize("frames, match", [
    (two_grids, r"eps\.extxyz: structure 1 has a spectrum_grid .* differs from structure 0's"),
    (short_grid, r"eps\.extxyz: structure 0: spectrum has 11 values but its spectrum_grid has 5"),
    (no_grid, r"eps\.extxyz: structure 0 has atoms.info\[.spectrum.\] but no .*spectrum_grid"),
])
def test_bad_spectra_in_a_file(tmp_path, frames, match):
    write(tmp_path / "eps.extxyz", frames())
    with pytest.raises(ValueError, match=match):
        read(tmp_path / "eps.extxyz")


def test_structures_validates_spectra():
    s = read_free_structures()
    base = {k: getattr(s, k) for k in BASE}
    with pytest.raises(ValueError, match=r"Structures\.spectrum has shape \(2, 10\)"):
        Structures(**base, spectrum=np.zeros((2, 10)), spectrum_grid=GRID)
    with pytest.raises(ValueError, match=r"Structures\.scalar has shape \(3,\)"):
        Structures(**base, scalar=np.zeros(3))
    with pytest.raises(ValueError, match=r"Structures\.spectrum_grid must be .*increasing"):
        Structures(**base, spectrum=np.zeros((2, 11)), spectrum_grid=GRID[::-1])
    with pytest.raises(ValueError, match=r"Structures\.spectrum is given but .*spectrum_grid"):
        Structures(**base, spectrum=np.zeros((2, 11)))
    with pytest.raises(ValueError, match=r"Structures\.spectrum_grid is given but"):
        Structures(**base, spectrum_grid=GRID)
    ok = Structures(**base, spectrum=np.zeros((2, 11)), spectrum_grid=GRID, scalar=[1, np.nan])
    assert ok.has_spectra and not s.has_spectra and ok.subset([1]).spectrum.shape == (1, 11)


def read_free_structures():
    return Structures(numbers=[29] * 5, positions=np.zeros((5, 3)), cells=np.zeros((2, 3, 3)),
                      pbc=np.ones((2, 3)), n_atoms=[4, 1], energy=[0, 0], forces=np.zeros((5, 3)),
                      stress=np.zeros((2, 3, 3)))
