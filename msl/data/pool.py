"""A dataset's structures by index, read only when asked for: what a cell opens instead of the pool.

A cell needs, of a pool of structures, only its size (to draw the split, :func:`msl.data.split`)
and the structures it uses: its D training structures and the validation and test sets. For
OMat24 (10^8 structures, hundreds of GB) reading the whole pool first (:func:`msl.data.read`)
costs hours and more memory than a workstation has, so :func:`open_pool` opens a dataset lazily:

* ``.aselmdb`` (OMat24, the embedded sets) and ASE ``.db`` files, and folders of them in the order
  :func:`msl.data.read` concatenates them (by file name): opening reads the index of each file
  (its row ids), nothing else; :meth:`Pool.read` fetches rows by id and packs them with the same
  code as :func:`msl.data.read` (:func:`msl.data.read.from_atoms`), so a subset read here equals
  the same subset of the whole file read there (tested). Rows become ``ase.Atoms`` the way
  fairchem-core's ``AseDBDataset.get_atoms`` makes them (``row.toatoms()``, row ``data`` into
  ``atoms.info``), through ``ase.db`` itself: importing fairchem costs 5 to 10 s per cell.
* extxyz and ``.npz`` have no random access; they are read whole (:func:`msl.data.read`, cached)
  and served from memory, as before. Use ``.aselmdb`` for large pools.

Memory: an open LMDB file keeps its row ids; where they run 1..n without gaps (as written by
``msl.data.generate`` or fairchem, without deletions) they are kept as a ``range`` (no memory),
else as int64 (8 bytes per structure). Opening a file lists its ids once in the backend (a
Python list, about 36 bytes per structure of that file, freed as soon as it is replaced). An ASE
``.db`` (SQLite) file has no index of its ids, so opening one walks its rows once (ase gives no
cheaper way); that is fine for the small files such databases hold.

Mapped pages: LMDB reads through a memory map, and each page fault maps the pages around it that
the OS file cache holds (the kernel's fault-around, up to 64 kB), so every row read adds up to
64 kB of file-backed RSS that stays mapped while the file is open: about 80 MB for the 1,200
rows of a cell of D = 1,000 (measured), capped by the file size, so a pool of small files looked
smaller than one of large files. These are clean pages of the file cache, not memory the process
allocated, but they count in RSS; so the pool closes its LMDB environments (unmapping them) after
every ``UNMAP_ROWS`` rows it reads, and the backend reopens them on the next read (36 us). The
mapped pages of the pool stay under about ``UNMAP_ROWS`` x 64 kB (4 MB) however many rows a
process reads and however large the pool.

Processes: a :class:`Pool` opened in a cell is used by DataLoader worker processes too
(:mod:`msl.data.stream`). Forked workers inherit it; ase's LMDB backend reopens its environment in
a new process itself, and ase's SQLite backend connects per query. Pickled (``spawn`` or
``forkserver`` workers), a pool drops its connections and reconnects on first use.

Labels are checked (finite where given, :func:`msl.data.read.from_atoms`) for the structures read,
so an error names a bad structure by its pool index when a cell reads it, not when the pool opens.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from msl.data.read import DB_SUFFIXES, _check_lmdb, _check_sqlite, _sources, from_atoms
from msl.data.read import read as read_whole
from msl.data.structures import Structures

UNMAP_ROWS = 64  # LMDB rows read between two unmappings of the pool's files (module docstring)


def open_pool(path) -> Pool:
    """The dataset at ``path`` (file or folder, as :func:`msl.data.read` takes) opened by index.

    Raises as :func:`msl.data.read` does: ``FileNotFoundError`` for a missing path, ``ValueError``
    naming the file for an unsupported, corrupt or empty one.
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.suffix == ".npz":
        return Pool(path, [path], memory=read_whole(path))
    sources = _sources(path)
    if all(src.suffix in DB_SUFFIXES for src in sources):
        return Pool(path, sources)
    return Pool(path, sources, memory=read_whole(path))


class Pool:
    """Random access to the structures of one dataset (module docstring); ``len`` is the pool size."""

    def __init__(self, path: Path, sources: list[Path], memory: Structures | None = None):
        self.path, self.sources, self.memory = path, sources, memory
        self._dbs, self._ids, self._mapped = None, None, 0
        if memory is None:
            self._connect()
            sizes = [len(ids) for ids in self._ids]
        else:
            sizes = [len(memory)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"Pool({len(self)} structures in {self.path})"

    @property
    def fingerprint(self) -> str:
        """A key for caches of what is built from this pool: absolute path, size and modification
        time of every source file, so a changed file never reuses another's cache."""
        key = [f"{src}|{src.stat().st_size}|{src.stat().st_mtime_ns}" for src in self.sources]
        digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
        return f"{self.path.name}-{digest}"

    def read(self, indices) -> Structures:
        """The structures at ``indices`` (pool indices, any order, repeats allowed), in that order.

        ``IndexError`` for an index outside the pool; ``ValueError`` naming the dataset and the
        pool index of a structure with a non-finite label.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][0]
            raise IndexError(f"structure index {bad} out of range for the {len(self)} structures "
                             f"of {self.path}")
        if self.memory is not None:
            return self.memory.subset(idx)
        if self._dbs is None:
            self._connect()
        atoms = [self._atoms(int(i)) for i in idx]
        try:
            return from_atoms(atoms, ids=idx)
        except ValueError as e:
            raise ValueError(f"dataset {self.path}: {e}") from e

    def _atoms(self, i: int):
        """Pool structure ``i`` as ``ase.Atoms``, as fairchem's ``AseDBDataset.get_atoms`` makes it."""
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        if self._mapped >= UNMAP_ROWS:
            self._unmap()
        row = self._dbs[k]._get_row(int(self._ids[k][i - self.offsets[k]]))
        self._mapped += 1
        atoms = row.toatoms()
        if isinstance(row.data, dict):
            atoms.info.update(row.data)
        return atoms

    def _unmap(self) -> None:
        """Close the LMDB environments, which unmaps their pages (module docstring); ase's LMDB
        backend opens a new one on its next read, as it does in a new process."""
        for db in self._dbs:
            env = getattr(db, "_env", None)  # the LMDB backend's; SQLite files have none
            if env is not None and getattr(db, "_env_pid", None) == os.getpid():
                env.close()
                db._env = None
        self._mapped = 0

    def _connect(self) -> None:
        """Open every source file; a failure is a ``ValueError`` naming the file, as in
        :func:`msl.data.read`."""
        dbs, ids = [], []
        for src in self.sources:
            try:
                db, row_ids = _open(src)
            except Exception as e:
                raise ValueError(f"cannot read dataset {src}: {type(e).__name__}: {e}") from e
            if not len(row_ids):
                raise ValueError(f"dataset {src} is empty: it holds no structures")
            dbs.append(db)
            ids.append(row_ids)
        self._dbs, self._ids = dbs, ids

    def __getstate__(self) -> dict:
        """Pickled for ``spawn``/``forkserver`` workers: without the open files (reopened there)."""
        return {**self.__dict__, "_dbs": None, "_ids": None, "_mapped": 0}


def _open(src: Path):
    """An ASE database and its row ids in order (the order fairchem's ``AseDBDataset`` uses)."""
    import ase.db

    if src.suffix == ".db":
        _check_sqlite(src)
        db = ase.db.connect(str(src), type="db")
        return db, np.array([row.id for row in db.select()], dtype=np.int64)
    _check_lmdb(src)
    db = ase.db.connect(str(src), type="aselmdb", readonly=True, use_lock_file=False)
    ids = db.ids
    # the backend lists its ids (~36 bytes each in a Python list, 3.6 GB for OMat24): replaced by
    # a range or int64, in the backend too, so that an open pool's memory does not grow with it
    compact = range(1, len(ids) + 1) if not ids or ids[-1] == len(ids) else np.asarray(ids)
    db.ids = compact
    return db, compact
