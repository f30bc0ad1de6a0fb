"""Readers (fairchem's ASE-DB dataset, extxyz, folders), the read cache, Structures and errors."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect
from ase.io import write

from msl.data import GPA_PER_EV_A3, Structures, generate, read

read_module = sys.modules["msl.data.read"]  # the package re-exports the function `read`


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("read") / "emt.aselmdb", 12, seed=5, workers=1,
                    progress=False)


@pytest.fixture(scope="module")
def data(db_path, tmp_path_factory):
    return read(db_path, cache_dir=tmp_path_factory.mktemp("cache"))


def labelled(n_atoms=4, seed=0, stress=True):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, max(1, n_atoms // 4)))
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def assert_same(s: Structures, atoms_list, atol=1e-12):
    """Same structures and labels; extxyz stores positions with 8 decimals, hence ``atol``."""
    assert len(s) == len(atoms_list)
    for i, atoms in enumerate(atoms_list):
        lo, hi = s.atom_offsets[i], s.atom_offsets[i + 1]
        np.testing.assert_array_equal(s.numbers[lo:hi], atoms.numbers)
        np.testing.assert_allclose(s.positions[lo:hi], atoms.positions, rtol=0, atol=atol)
        np.testing.assert_allclose(s.cells[i], atoms.cell[:], rtol=0, atol=atol)
        np.testing.assert_allclose(s.energy[i], atoms.get_potential_energy(), rtol=1e-12)
        np.testing.assert_allclose(s.forces[lo:hi], atoms.get_forces(), rtol=0, atol=atol)


def test_fairchem_reader_equals_plain_ase(db_path, data):
    with connect(db_path, type="aselmdb", readonly=True, use_lock_file=False) as db:
        atoms_list = [row.toatoms() for row in db.select()]
    assert_same(data, atoms_list)
    for i, atoms in enumerate(atoms_list):
        np.testing.assert_allclose(data.stress[i], atoms.get_stress(voigt=False), atol=1e-14)
    assert data.pbc.all() and data.n_atoms.sum() == len(data.numbers)


def test_cache_is_used_without_fairchem(db_path, tmp_path):
    first = read(db_path, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    code = ("import sys, time; from msl.data import read; t = time.perf_counter(); "
            f"s = read({str(db_path)!r}, cache_dir={str(tmp_path)!r}); "
            "print(len(s), time.perf_counter() - t, 'fairchem' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.split()
    assert out[0] == str(len(first)) and float(out[1]) < 1.0 and out[2:] == ["False", "False"]


def test_cache_follows_the_file(db_path, tmp_path, monkeypatch):
    copy = tmp_path / "copy.aselmdb"
    shutil.copy(db_path, copy)
    read(copy)  # default cache folder: beside the file
    assert len(list((tmp_path / ".msl-cache").glob("copy.aselmdb-*.npz"))) == 1
    calls = []
    real = read_module._read_one
    monkeypatch.setattr(read_module, "_read_one", lambda src: calls.append(src) or real(src))
    read(copy)
    assert calls == []
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed
    read(copy)
    assert calls == [copy]


def test_extxyz_with_missing_stress(tmp_path):
    frames = [labelled(4, 0), labelled(8, 1, stress=False)]
    write(tmp_path / "mptrj.extxyz", frames)
    s = read(tmp_path / "mptrj.extxyz")
    assert_same(s, frames, atol=1e-7)
    np.testing.assert_allclose(s.stress[0], frames[0].get_stress(voigt=False), atol=1e-9)
    assert np.isnan(s.stress[1]).all()


def test_sqlite_db_and_folder(db_path, tmp_path):
    frames = [labelled(4, 2), labelled(8, 3)]
    with connect(tmp_path / "b.db") as db:
        for atoms in frames:
            db.write(atoms)
    assert_same(read(tmp_path / "b.db"), frames)
    shutil.copy(db_path, tmp_path / "a.aselmdb")
    (tmp_path / "a.aselmdb.json").write_text("{}")  # sidecars and lock files are skipped
    (tmp_path / "a.aselmdb-lock").write_bytes(b"")
    both = read(tmp_path)
    single = read(db_path)
    assert len(both) == len(single) + 2  # sorted by name: a.aselmdb, then b.db
    np.testing.assert_array_equal(both.subset(range(len(single))).positions, single.positions)
    assert_same(both.subset([len(single), len(single) + 1]), frames)


def test_structures_roundtrip_and_helpers(data, tmp_path):
    path = data.save(tmp_path / "s.npz")
    back = read(path)
    for name in ("numbers", "positions", "cells", "pbc", "n_atoms", "energy", "forces", "stress"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    sub = data.subset([3, 0])
    assert list(sub.n_atoms) == [data.n_atoms[3], data.n_atoms[0]]
    atoms = data.atoms(3)
    np.testing.assert_array_equal(sub.positions[: sub.n_atoms[0]], atoms.positions)
    assert atoms.get_potential_energy() == data.energy[3]
    np.testing.assert_allclose(atoms.get_stress(voigt=False), data.stress[3])
    assert len(data.formulas()) == len(data) and data.formulas()[3] == atoms.get_chemical_formula(
        "metal", empirical=True)
    assert GPA_PER_EV_A3 == pytest.approx(160.2177, rel=1e-6)


def test_structures_formulas_and_validation():
    s = Structures(numbers=[29, 29, 29, 13, 13, 13, 13], positions=np.zeros((7, 3)),
                   cells=np.zeros((2, 3, 3)), pbc=np.ones((2, 3)), n_atoms=[4, 3],
                   energy=[0, 0], forces=np.zeros((7, 3)), stress=np.zeros((2, 3, 3)))
    assert s.formulas() == ["AlCu3", "Al"]
    with pytest.raises(ValueError, match="forces"):
        Structures(**{**{k: getattr(s, k) for k in ("numbers", "positions", "cells", "pbc",
                                                     "n_atoms", "energy", "stress")},
                      "forces": np.zeros((6, 3))})


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.aselmdb"):
        read(tmp_path / "nothere.aselmdb")


def test_unknown_extension(tmp_path):
    (tmp_path / "x.cif").write_text("data_x\n")
    with pytest.raises(ValueError, match=r"x\.cif.*supported: \.aselmdb"):
        read(tmp_path / "x.cif")


@pytest.mark.parametrize("name, content", [
    ("corrupt.aselmdb", np.random.default_rng(0).bytes(8192)),
    ("corrupt.db", np.random.default_rng(1).bytes(4096)),
    ("garbage.extxyz", b"3\nnot a header\nCu 0 0\nthis is not xyz\n"),
])
def test_corrupt_files(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}.*:"):
        read(tmp_path / name)
    assert not (tmp_path / ".msl-cache").exists() or not any((tmp_path / ".msl-cache").iterdir())


def test_empty_datasets(tmp_path):
    with connect(tmp_path / "empty.aselmdb", type="aselmdb"):
        pass
    for p in tmp_path.glob("*-lock"):
        p.unlink()
    with pytest.raises(ValueError, match="empty.aselmdb is empty"):
        read(tmp_path / "empty.aselmdb")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="folder.*holds no"):
        read(tmp_path / "folder")


def _with(atoms, energy=None, forces=None, stress=None, **info):
    """``atoms`` (a copy) with exactly these labels; unset ones are left out of the file."""
    atoms = atoms.copy()
    labels = {"energy": energy, "forces": forces, "stress": stress}
    atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in labels.items() if v is not None})
    atoms.info.update(info)
    return atoms


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("bad, message", [
    ({"energy": NAN}, "structure 1 has energy nan"),
    ({"energy": -INF}, "structure 1 has energy -inf"),
    ({"forces": np.where(np.arange(12).reshape(4, 3) == 7, INF, 0.0)},
     r"structure 1 has forces inf \(atom 2\)"),
    ({"stress": np.array([0, 0, 0, NAN, 0, 0])}, "structure 1 has stress nan"),
    ({"scalar": NAN}, "structure 1 has scalar nan"),
    ({"spectrum": np.array([1.0, NAN, 3.0]), "spectrum_grid": np.arange(3.0)},
     r"structure 1 has spectrum nan \(grid point 1\)"),
])
def test_non_finite_labels_are_refused_naming_file_structure_and_label(tmp_path, bad, message):
    """A label that is given must be finite; NaN stands for a label the file does not give."""
    good = labelled(4, 0)
    fine = {"energy": good.get_potential_energy(), "forces": good.get_forces()}
    frames = [_with(good, **fine), _with(good, **{**fine, **bad}), _with(good, energy=NAN)]
    write(tmp_path / "data.extxyz", frames)
    with pytest.raises(ValueError, match=rf"data\.extxyz: {message}; a label must be finite"):
        read(tmp_path / "data.extxyz")
    assert not (tmp_path / ".msl-cache").exists()  # nothing cached: the next read fails again


def test_the_first_bad_structure_is_named_whatever_its_label(tmp_path):
    good = labelled(4, 0)
    fine = {"energy": good.get_potential_energy(), "forces": good.get_forces()}
    frames = [_with(good, **fine), _with(good, **fine, scalar=INF), _with(good, energy=NAN)]
    write(tmp_path / "data.extxyz", frames)
    with pytest.raises(ValueError, match="structure 1 has scalar inf"):
        read(tmp_path / "data.extxyz")


def test_labels_left_out_are_nan_and_accepted(tmp_path):
    good = labelled(4, 0)
    frames = [_with(good, energy=1.0), _with(good, forces=good.get_forces()), _with(good)]
    write(tmp_path / "data.extxyz", frames)
    s = read(tmp_path / "data.extxyz")
    assert s.energy[0] == 1.0 and np.isnan(s.energy[1:]).all()
    assert np.isnan(s.forces[:4]).all() and np.isfinite(s.forces[4:8]).all()
    assert np.isnan(s.stress).all() and s.scalar is None
