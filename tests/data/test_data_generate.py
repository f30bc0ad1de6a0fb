"""The embedded EMT dataset: determinism, filter, labels, caching and atomic writes."""

import json
import socket
import sys
import time

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.db import connect

from msl.data import embedded, generate
from msl.data.generate import RECIPE, _build, candidate, min_distance

gen_module = sys.modules["msl.data.generate"]  # the package re-exports the function `generate`


def rows(path):
    """(atoms, data) of every row, read with plain ASE."""
    with connect(path, type="aselmdb", readonly=True, use_lock_file=False) as db:
        return [(r.toatoms(), r.data) for r in db.select()]


def arrays(path):
    out = []
    for atoms, _ in rows(path):
        out.append((atoms.numbers, atoms.positions, atoms.cell[:], atoms.get_potential_energy(),
                    atoms.get_forces(), atoms.get_stress()))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("gen") / "small.aselmdb", 20, seed=3, workers=2,
                    progress=False)


def test_workers_do_not_change_the_result(small, tmp_path):
    serial = generate(tmp_path / "serial.aselmdb", 20, seed=3, workers=1, progress=False)
    a, b = arrays(small), arrays(serial)
    assert len(a) == len(b) == 20
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_seed_changes_the_result(small, tmp_path):
    other = generate(tmp_path / "other.aselmdb", 5, seed=4, workers=1, progress=False)
    assert not np.array_equal(arrays(small)[0][1], arrays(other)[0][1])


def test_prefix_property_across_sizes(small, tmp_path):
    """Candidates are taken in order, so a smaller n is a prefix of a larger one (same seed)."""
    short = generate(tmp_path / "short.aselmdb", 7, seed=3, workers=1, progress=False)
    for x, y in zip(arrays(short), arrays(small)[:7]):
        np.testing.assert_array_equal(x[1], y[1])


def test_filter_is_applied(small):
    kept = []
    for atoms, data in rows(small):
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() <= RECIPE["max_force"]
        ratio = min_distance(atoms, 1.5 * data["d_nn"]) / data["d_nn"]
        assert ratio >= RECIPE["min_distance_ratio"]
        assert ratio == pytest.approx(data["d_min_ratio"])
        kept.append(data["candidate"])
    # kept candidates are exactly those among 0..last that pass the filter, in order
    statuses = [candidate(3, i)[0] for i in range(kept[-1] + 1)]
    assert kept == [i for i, s in enumerate(statuses) if s == "ok"]
    assert set(statuses) - {"ok"}, "expected at least one rejected candidate in this range"


def test_labels_are_emt(small):
    for atoms, _ in rows(small)[:3]:
        stored = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
        atoms.calc = EMT()
        np.testing.assert_allclose(atoms.get_potential_energy(), stored[0], rtol=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), stored[1], atol=1e-10)
        np.testing.assert_allclose(atoms.get_stress(), stored[2], atol=1e-12)


def test_sidecar_and_no_stray_files(small):
    meta = json.loads(small.with_name(small.name + ".json").read_text())
    assert meta["n_structures"] == 20 and meta["settings"]["seed"] == 3
    assert meta["n_candidates"] == 20 + sum(meta["rejected"].values())
    assert meta["file_bytes"] == small.stat().st_size and meta["versions"]["ase"]
    assert sorted(p.name for p in small.parent.iterdir()) == ["small.aselmdb", "small.aselmdb.json"]


def test_recipe_statistics():
    """Steps 1-4 only (no EMT): sizes, rattle shares and strain as documented."""
    n_atoms, rattles = [], []
    for i in range(600):
        atoms, info = _build(np.random.default_rng(np.random.SeedSequence([0, i])),
                             ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"))
        n_atoms.append(len(atoms))
        rattles.append(info["rattle"])
    assert 4 <= min(n_atoms) and max(n_atoms) <= 32 and 14 < np.mean(n_atoms) < 21
    shares = [rattles.count(k) / len(rattles) for k in ("thermal", "large", "none")]
    np.testing.assert_allclose(shares, [0.7, 0.2, 0.1], atol=0.06)


def test_embedded_is_cached(tmp_path, monkeypatch):
    path = embedded(6, seed=1, workers=1, cache_dir=tmp_path, progress=False)
    assert path.name == "emt-alloys-n6-seed1.aselmdb"
    mtime = path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(gen_module, "generate", fail)
    t0 = time.perf_counter()
    assert embedded(6, seed=1, workers=2, cache_dir=tmp_path, progress=False) == path
    assert time.perf_counter() - t0 < 0.5
    assert path.stat().st_mtime_ns == mtime

    # a sidecar with other settings (e.g. an older recipe) means the file is regenerated
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text())
    meta["settings"]["recipe_version"] = 0
    side.write_text(json.dumps(meta))
    calls = []
    monkeypatch.setattr(gen_module, "generate", lambda *a, **k: calls.append(a))
    embedded(6, seed=1, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    real = gen_module.candidate

    def flaky(seed, i, *args):
        if i == 4:
            raise KeyboardInterrupt
        return real(seed, i, *args)

    monkeypatch.setattr(gen_module, "candidate", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "x.aselmdb", 10, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_removed(tmp_path):
    dead = tmp_path / f".x.aselmdb.{socket.gethostname()}.999999999.tmp"
    dead.write_bytes(b"partial")
    (tmp_path / f"{dead.name}-lock").write_bytes(b"")
    generate(tmp_path / "x.aselmdb", 2, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.aselmdb", "x.aselmdb.json"]


@pytest.mark.parametrize("kwargs, bad", [({"n_structures": 0}, "0"),
                                         ({"n_structures": 3, "elements": ("Cu", "Fe")}, "Fe")])
def test_bad_arguments(tmp_path, kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        generate(tmp_path / "x.aselmdb", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_provenance_reads_the_sidecar_and_is_none_for_a_real_file(tiny_pool, tmp_path):
    from pathlib import Path

    from msl.data import store

    meta = json.loads(Path(f"{tiny_pool}.json").read_text())
    made = store.provenance(tiny_pool)
    assert made["kind"] == "emt" and made["structures"] == 120 == meta["n_structures"]
    assert made["candidates"] == meta["n_candidates"] >= 120
    assert made["rejected (distance)"] + made["rejected (force)"] == made["candidates"] - 120
    assert "distinct elements" not in made and "wall_s" not in str(made)
    assert f"{meta['wall_s']:.1f} s on {meta['workers']} worker(s)" in store.generation_time(tiny_pool)
    assert store.provenance(tmp_path / "real.extxyz") is None
    assert store.generation_time(tmp_path / "real.extxyz") is None
