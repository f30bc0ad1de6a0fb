"""The chgnet dataset kind: CHGNet's own labels, ASE's stress sign, the filter, determinism across
workers, the sidecar's composition spread, caching, and the errors (missing package, bad input)."""

import json
import sys

import numpy as np
import pytest
from ase.db import connect

from msl.data import chgnet, embedded, generate, read
from msl.data.generate import KINDS

BLOCK = 4  # candidates per batch in these tests: 6 structures take 2 or more blocks, 2 workers


def rows(path):
    """(atoms, data) of every row, read with plain ASE."""
    with connect(path, type="aselmdb", readonly=True, use_lock_file=False) as db:
        return [(r.toatoms(), r.data) for r in db.select()]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """6 structures, seed 1, 2 workers, through ``embedded`` (so also its file name and cache);
    labelled by CHGNet, about 10 s on a busy CPU."""
    pytest.importorskip("chgnet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(chgnet.RECIPE, "block", BLOCK)
        return embedded(6, seed=1, workers=2, cache_dir=tmp_path_factory.mktemp("chgnet"),
                        progress=False, kind="chgnet")


@pytest.mark.slow
def test_workers_do_not_change_the_rows(pool, tmp_path, monkeypatch):
    monkeypatch.setitem(chgnet.RECIPE, "block", BLOCK)
    serial = generate(tmp_path / "serial.aselmdb", 6, seed=1, workers=1, progress=False,
                      kind="chgnet")
    for (a, da), (b, db) in zip(rows(pool), rows(serial), strict=True):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell[:], b.cell[:])
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        np.testing.assert_array_equal(a.get_stress(), b.get_stress())
        assert da.keys() == db.keys()
        for key in da:
            np.testing.assert_array_equal(da[key], db[key])


def test_labels_are_chgnets_own(pool):
    """Stored labels equal CHGNet's own ASE calculator on the same structure (one at a time,
    where the file's labels came in batches: equal to float32 round-off)."""
    from chgnet.model.dynamics import CHGNetCalculator

    calc = CHGNetCalculator(model=chgnet.model(), use_device="cpu")
    for atoms, data in rows(pool):
        stored = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
        atoms.calc = calc
        np.testing.assert_allclose(atoms.get_potential_energy(), stored[0], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(atoms.get_forces(), stored[1], atol=1e-4)
        np.testing.assert_allclose(atoms.get_stress(), stored[2], atol=1e-6)  # eV/Å^3
        np.testing.assert_allclose(calc.results["magmoms"], data["magmoms"], atol=1e-4)


def test_stress_is_the_strain_derivative_of_the_energy(pool):
    """ASE's sign: stress = (1/V) dE/dε, positive under tension (as in the EMT set)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms, _ = rows(pool)[0]
    stress, h = atoms.get_stress(voigt=False), 2e-3
    energies = []
    for e in (h, -h):
        strained = atoms.copy()
        strained.set_cell(atoms.cell[:] @ (np.eye(3) + np.diag([e, 0, 0])), scale_atoms=True)
        p = chgnet.model().predict_structure(AseAtomsAdaptor.get_structure(strained), task="e")
        energies.append(float(p["e"]) * len(atoms))
    fd = (energies[0] - energies[1]) / (2 * h * atoms.get_volume())
    assert fd == pytest.approx(stress[0, 0], rel=0.05, abs=2e-4)


def test_every_row_passes_the_filter(pool):
    meta = json.loads(pool.with_name(pool.name + ".json").read_text())
    candidates = []
    for atoms, data in rows(pool):
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() <= chgnet.RECIPE["max_force"]
        ratio = chgnet.contact_ratio(atoms)
        assert ratio >= chgnet.RECIPE["min_distance_ratio"]
        assert ratio == pytest.approx(data["d_min_ratio"])
        assert data["sid"] == f"chgnet-crystals-seed1-{data['candidate']}"
        assert data["prototype"] in chgnet.PROTOTYPES
        assert data["perturbation"] in chgnet.PERTURBATIONS
        assert set(data["elements"]) <= set(chgnet.ELEMENTS)
        assert 4 <= len(atoms) <= 16 and data["magmoms"].shape == (len(atoms),)
        candidates.append(data["candidate"])
    assert candidates == sorted(candidates)  # taken in order of the candidate index
    assert meta["n_candidates"] == candidates[-1] + 1  # ...and every rejection before the last
    assert meta["n_candidates"] == 6 + sum(meta["rejected"].values())


def test_sidecar_has_the_composition_spread_and_versions(pool):
    meta = json.loads(pool.with_name(pool.name + ".json").read_text())
    spread = meta["composition"]
    elements = [set(data["elements"]) for _, data in rows(pool)]
    assert spread["n_elements"] == len(set().union(*elements))
    assert spread["structures_per_element"] == {
        e: sum(e in s for s in elements) for e in chgnet.ELEMENTS if any(e in s for s in elements)}
    assert sum(spread["atoms_per_element"].values()) == meta["n_atoms_total"]
    assert sum(spread["prototypes"].values()) == sum(spread["perturbations"].values()) == 6
    assert meta["settings"]["kind"] == "chgnet" and meta["settings"]["seed"] == 1
    assert meta["versions"]["chgnet"] == "0.4.2" and meta["versions"]["torch"]
    assert meta["structures_per_s"] > 0 and meta["file_bytes"] == pool.stat().st_size


def test_read_returns_the_labels(pool, tmp_path):
    s = read(pool, cache_dir=tmp_path)
    stored = rows(pool)
    assert len(s) == len(stored)
    offsets = np.concatenate([[0], np.cumsum(s.n_atoms)])
    for k, (atoms, _) in enumerate(stored):
        assert s.energy[k] == atoms.get_potential_energy()
        np.testing.assert_array_equal(s.forces[offsets[k]:offsets[k + 1]], atoms.get_forces())
        np.testing.assert_allclose(s.stress[k], atoms.get_stress(voigt=False), atol=1e-12)


def test_embedded_is_cached_by_name(pool, monkeypatch):
    assert pool.name == "chgnet-crystals-n6-seed1.aselmdb"
    monkeypatch.setitem(chgnet.RECIPE, "block", BLOCK)
    monkeypatch.setattr(chgnet, "generate", lambda *a, **k: pytest.fail("generated again"))
    assert embedded(6, seed=1, cache_dir=pool.parent, progress=False, kind="chgnet") == pool


def test_missing_chgnet_names_the_install_command(tmp_path, monkeypatch, capsys):
    from msl.cli import main

    for name in ("chgnet", "chgnet.model"):
        monkeypatch.setitem(sys.modules, name, None)  # `import chgnet.model` now raises
    for call in (lambda: generate(tmp_path / "x.aselmdb", 3, progress=False, kind="chgnet"),
                 lambda: embedded(3, cache_dir=tmp_path / "cache", progress=False, kind="chgnet")):
        with pytest.raises(ImportError, match=r"pip install chgnet==0\.4\.2"):
            call()
    out = tmp_path / "y.aselmdb"
    assert main(["data", "--kind", "chgnet", "--n", "3", "--out", str(out)]) == 2
    assert "pip install chgnet==0.4.2" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_bad_size_kind_and_elements(tmp_path):
    for call in (lambda: generate(tmp_path / "x.aselmdb", 0, progress=False, kind="chgnet"),
                 lambda: embedded(0, cache_dir=tmp_path, progress=False, kind="chgnet")):
        with pytest.raises(ValueError, match="n_structures must be >= 1, got 0"):
            call()
    with pytest.raises(ValueError, match=r"'dft'.*emt, emt-vdos, chgnet"):
        generate(tmp_path / "x.aselmdb", 3, progress=False, kind="dft")
    with pytest.raises(ValueError, match="own element set"):
        generate(tmp_path / "x.aselmdb", 3, progress=False, kind="chgnet", elements=("Cu",))
    assert list(tmp_path.iterdir()) == [] and "chgnet" in KINDS


def test_a_block_of_one_is_labelled_alike(pool):
    """CHGNet returns a dict, not a list, for one structure; the labels agree with the batch's."""
    (status, payload), = chgnet.label(1, 0, 1)
    atoms, data = rows(pool)[0]
    assert status == "ok" and data["candidate"] == 0
    np.testing.assert_array_equal(payload["positions"], atoms.positions)
    assert payload["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-6, abs=1e-4)
    np.testing.assert_allclose(payload["forces"], atoms.get_forces(), atol=1e-4)
