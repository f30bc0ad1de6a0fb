"""Pools opened by index and graphs built on the fly: the same structures, graphs, batches and
records as reading the whole pool into memory."""

import dataclasses
import pickle
import shutil

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

from msl import cell, config, data, graph
from msl.data.stream import GraphSet
from msl.targets import Scales, table
from msl.train import evaluate, train


def assert_same_structures(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=f.name)


def assert_same_graphs(a, b):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        if torch.is_tensor(a[key]):
            assert a[key].dtype == b[key].dtype, key
            assert torch.equal(a[key].nan_to_num(), b[key].nan_to_num()), key
    assert a.num_nodes == b.num_nodes


def test_pool_reads_what_read_reads(tiny_pool):
    whole = data.read(tiny_pool)
    pool = data.open_pool(tiny_pool)
    assert len(pool) == len(whole)
    idx = [7, 3, 119, 0, 7]  # any order, repeats allowed
    assert_same_structures(pool.read(idx), whole.subset(idx))
    assert_same_structures(pickle.loads(pickle.dumps(pool)).read(idx), whole.subset(idx))
    with pytest.raises(IndexError, match="index 120 out of range for the 120 structures"):
        pool.read([120])


def test_the_pool_unmaps_its_files_as_it_reads(tiny_pool, monkeypatch):
    """Every UNMAP_ROWS rows the LMDB environments are closed (their mapped pages leave the RSS)
    and reopened on the next read; the rows read are the same."""
    from msl.data import pool as pool_module

    monkeypatch.setattr(pool_module, "UNMAP_ROWS", 3)
    whole = data.read(tiny_pool)
    pool = data.open_pool(tiny_pool)
    backend = type(pool._dbs[0])
    opened, open_env = [], backend._open_lmdb_env
    monkeypatch.setattr(backend, "_open_lmdb_env", lambda db: opened.append(1) or open_env(db))
    for i in range(10):
        assert_same_structures(pool.read([i]), whole.subset([i]))
    assert len(opened) == 3  # closed after rows 3, 6 and 9, reopened for rows 4, 7 and 10
    assert_same_structures(pool.read(range(20, 40)), whole.subset(range(20, 40)))


def test_a_folder_is_one_pool_in_name_order(tiny_pool, tmp_path):
    """As :func:`msl.data.read` concatenates a folder: files sorted by name, .aselmdb and .db."""
    whole = data.read(tiny_pool)
    folder = tmp_path / "pool"
    folder.mkdir()
    files = {"b.aselmdb": range(0, 10), "a.aselmdb": range(10, 25), "c.db": range(25, 30)}
    for name, rows in files.items():
        with connect(folder / name, **({"type": "aselmdb"} if name.endswith("aselmdb") else {})) as db:
            for i in rows:
                db.write(whole.atoms(i))
    for lock in folder.glob("*-lock"):
        lock.unlink()
    shutil.copy(tiny_pool, folder / ".hidden.aselmdb")  # skipped, as by msl.data.read
    pool = data.open_pool(folder)
    order = [*range(10, 25), *range(0, 10), *range(25, 30)]
    assert len(pool) == 30 and list(pool.offsets) == [0, 15, 25, 30]
    assert_same_structures(pool.read(range(30)), whole.subset(order))
    assert_same_structures(pool.read(range(30)), data.read(folder))
    assert_same_structures(pool.read([29, 0, 16]), whole.subset([order[29], order[0], order[16]]))


def test_a_bad_label_is_named_by_its_pool_index_when_read(tiny_pool, tmp_path):
    whole = data.read(tiny_pool)
    folder = tmp_path / "pool"
    folder.mkdir()
    for name, rows in (("a.aselmdb", range(4)), ("b.aselmdb", range(4, 8))):
        with connect(folder / name, type="aselmdb") as db:
            for i in rows:
                atoms = whole.atoms(i)
                if i == 6:
                    atoms.calc = SinglePointCalculator(atoms, energy=float("nan"),
                                                       forces=atoms.get_forces())
                db.write(atoms)
    pool = data.open_pool(folder)  # opening reads no structure
    pool.read([0, 5, 7])
    with pytest.raises(ValueError, match=r"pool: structure 6 has energy nan"):
        pool.read([0, 6])


@pytest.mark.parametrize("pool_fixture", ["tiny_pool", "tiny_vdos_pool"])
def test_graphs_equal_graph_build(pool_fixture, request, tmp_path):
    """Built on the fly, from the cache, with spectra: the graphs graph.build makes."""
    path = request.getfixturevalue(pool_fixture)
    whole = data.read(path)
    expected = graph.build(whole, 5.0)
    idx = [4, 0, 31, 4]
    for cache in (None, tmp_path, tmp_path):  # built, built and stored, loaded
        for given in (None, whole.subset(idx)):  # read from the pool, or cut from those read
            graphs = GraphSet(data.open_pool(path), idx, 5.0, cache_dir=cache,
                              spectrum_grid=whole.spectrum_grid, structures=given)
            assert len(graphs) == 4
            for k, i in enumerate(idx):
                assert_same_graphs(graphs[k], expected[i])
    with pytest.raises(ValueError, match="3 structures given for 4 indices"):
        GraphSet(data.open_pool(path), idx, 5.0, structures=whole.subset(idx[:3]))
    assert len(list(tmp_path.rglob("*.npz"))) == 3


def test_every_graph_of_a_set_has_the_same_keys(tiny_pool):
    """Spectra: NaN where a structure has none and the set has a grid; none without a grid."""
    grid = np.linspace(0.0, 1.0, 5)
    with_grid = GraphSet(data.open_pool(tiny_pool), [0], 5.0, spectrum_grid=grid)[0]
    assert with_grid.spectrum.shape == (1, 5) and torch.isnan(with_grid.spectrum).all()
    assert with_grid.scalar.shape == (1,) and torch.isnan(with_grid.scalar).all()
    assert "spectrum" not in GraphSet(data.open_pool(tiny_pool), [0], 5.0)[0].keys()


def _batches(graphs, num_workers, epochs=2):
    generator = torch.Generator().manual_seed(3)
    loader = torch.utils.data.DataLoader(graphs, batch_size=4, shuffle=True, generator=generator,
                                         collate_fn=graph.collate, drop_last=True,
                                         num_workers=num_workers)
    return [batch for _ in range(epochs) for batch in loader]


def test_workers_give_the_same_batches(tiny_pool, tmp_path):
    graphs = GraphSet(data.open_pool(tiny_pool), np.arange(10, 30), 5.0, cache_dir=tmp_path)
    serial, parallel = _batches(graphs, 0), _batches(graphs, 2)
    assert len(serial) == len(parallel) == 10
    for a, b in zip(serial, parallel):
        assert_same_graphs(a, b)


def tiny(**kw):
    base = dict(pool_size=120, n_train=24, n_val=16, n_test=16, epochs=2, batch_size=8)
    return config.from_dict({**base, **kw})


def test_a_streamed_cell_gives_the_record_of_the_pool_in_memory(tiny_pool):
    """The cell's data path before streaming (msl.cell at 037e13a): read the pool, build the
    graphs of all of it, pick the sets. Same split, scales and graphs, so the same numbers."""
    cfg = tiny().with_id()
    streamed = cell.run(cfg, progress=False)
    structures = data.read(tiny_pool)
    split = data.split(len(structures), cfg.n_val, cfg.n_test, seed=cfg.seed,
                       split_seed=cfg.split_seed)
    train_set = structures.subset(split.train(cfg.n_train))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = cell._build(cfg, train_set, train_set)
    scales = Scales.from_training(train_set, float(model.energy_scale))
    model.set_output_scales(forces=scales.sigma["forces"], stress=scales.sigma["stress"])
    reference = cell.eval_scales(structures.subset(split.val), cfg)
    graphs = graph.build(structures, model.cutoff)
    pick = lambda idx: [graphs[i] for i in idx]  # noqa: E731
    cpu = torch.device("cpu")
    result = train(model, pick(split.train(cfg.n_train)), pick(split.val), scales, cfg,
                   progress=False, eval_scales=reference)
    terms = table(cfg.targets)
    metrics = {**evaluate(model, pick(split.val), reference, terms, cfg, "val", cpu),
               **evaluate(model, pick(split.test), reference, terms, cfg, "test", cpu),
               "val/forces_mae_zero": cell.zero_force_mae(structures.subset(split.val))}
    assert streamed["scales"] == scales.asdict()
    assert streamed["eval_scales"] == reference.asdict()
    assert streamed["history"] == result.history
    assert streamed["metrics"] == metrics


def test_workers_change_neither_the_record_nor_the_cell_id(tiny_pool):
    serial = cell.run(tiny(), progress=False)
    parallel = cell.run(tiny(num_workers=2), progress=False)
    assert parallel["cell_id"] == serial["cell_id"]
    assert parallel["metrics"] == serial["metrics"] and parallel["history"] == serial["history"]
    with pytest.raises(ValueError, match="num_workers must not be negative"):
        tiny(num_workers=-1)


def test_opening_fails_as_reading_does(tmp_path):
    """Missing, corrupt and empty files: the errors of msl.data.read, naming the file."""
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        data.open_pool(tmp_path / "nowhere.aselmdb")
    (tmp_path / "broken.aselmdb").write_bytes(b"\x00not an lmdb file\xff" * 64)
    with pytest.raises(ValueError, match="cannot read dataset .*broken.aselmdb"):
        data.open_pool(tmp_path / "broken.aselmdb")
    (tmp_path / "broken.db").write_bytes(b"not sqlite at all")
    with pytest.raises(ValueError, match="cannot read dataset .*broken.db: .*bad header"):
        data.open_pool(tmp_path / "broken.db")
    with connect(tmp_path / "empty.aselmdb", type="aselmdb"):
        pass
    with pytest.raises(ValueError, match="empty.aselmdb is empty"):
        data.open_pool(tmp_path / "empty.aselmdb")


def test_kept_graphs_are_built_once(tiny_pool, monkeypatch):
    graphs = GraphSet(data.open_pool(tiny_pool), [5, 6], 5.0, keep=True)
    first = graphs[1]
    monkeypatch.setattr(graphs.pool, "read", lambda idx: pytest.fail("read again"))
    assert graphs[1] is first
