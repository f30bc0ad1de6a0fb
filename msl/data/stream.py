"""Graphs built when a DataLoader asks for them: a cell's training, validation and test sets.

Before, a cell built the graph of every structure in the pool (:func:`msl.graph.build`) and
picked its sets from them, so its memory and its time to the first step grew with the pool; for
OMat24 that is hundreds of GB and hours. A :class:`GraphSet` holds pool indices: item ``k``
reads structure ``indices[k]`` from a :class:`msl.data.pool.Pool` (or cuts it from the
structures the cell read already, ``structures``) and builds its graph there and then, in the
process that asks for it, which is a DataLoader worker where ``num_workers`` > 0
(``torch.utils.data.DataLoader(GraphSet(...), batch_size, num_workers=2, ...)``). Memory is the
few batches a worker prefetches; no graph is built up front.

Each graph equals the one :func:`msl.graph.build` makes for that structure (the same neighbour
list, the same float32 tensors; tested), so training on a GraphSet gives the numbers that training
on the picked graphs of the whole pool gave.

Keeping (``keep``): an item costs about 0.7 ms (its structure cut from those the cell read, its
cached neighbour list loaded, its tensors made; 1.5 ms where the row is read from the pool as
well), against the model time of a few ms per batch of the embedded studies' models. With
``keep`` each graph is built on first use and then kept, so later epochs cost what they did when
the graphs of the whole pool were built up front, and memory grows with the set (D plus
validation and test), never with the pool: a cell of D = 320 (160 steps of optimetal2b size 2)
took 0.7 to 1.1 s more CPU time than on the in-memory path, once (the performance page says
where it goes). A cell keeps where it has no workers (``num_workers`` = 0, the default); with
workers nothing is kept (a worker's graphs die with it at the end of each epoch), so memory stays
at a few batches however large D is, and the workers take the building off the training process.

Workers (``num_workers`` of the cell config, given to the trainer's DataLoaders): they change no
number. The DataLoader's sampler shuffles with the trainer's generator in the cell's process, so
the batches are those of ``num_workers`` = 0 (tested). The workers are not persistent on purpose:
a persistent DataLoader draws its workers' base seed from that generator once instead of once per
epoch, which would shuffle every epoch after the first differently from ``num_workers`` = 0, and
so change the numbers of a cell with the number of its workers. Restarting them costs about 0.2 s
per epoch on the benchmark machine (2 busy cores), so workers pay where epochs are long (large D,
OMat24) and the default is 0.

Spectra: every graph of a set carries the same keys, or batches could not be collated. Given
``spectrum_grid`` (the training set's, where it has spectra), every graph has a ``spectrum``
[1, n_grid] and a ``scalar`` [1], NaN for a structure without (the masked-NaN convention of
:mod:`msl.data.structures`); without it, no graph has them.

Cache (optional, ``cache_dir``): the neighbour list of each structure (int32 edges, int8 shifts;
about 7 kB for 17 atoms at 5 Å) is written once, atomically, to
``cache_dir/<pool fingerprint>-r<cutoff>/<index // 4096>/<index>.npz`` and read back in later
epochs and later cells of the same pool. One file per structure: worker processes write without
locks (a rename is atomic), and only structures some cell used are ever stored. On the embedded
data a cached list saves about a third of an item's cost (0.3 ms of neighbour search against
0.1 ms of loading, next to 0.3 ms of reading the row); more at larger cutoffs and cells. A cache
folder that cannot be written is reported once and the lists are simply rebuilt.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from msl import graph
from msl.data.pool import Pool
from msl.data.structures import Structures

SHARD = 4096  # cache files per folder


class GraphSet(torch.utils.data.Dataset):
    """The graphs of ``pool``'s structures at ``indices``, each read and built when asked for.

    ``structures``: those structures, read already (a cell reads its sets to check their labels
    and fit its scales): items are cut from them instead of read from the pool again, which
    saves decoding the row (0.3 to 0.8 ms, two thirds of an item's cost on the ``emt-vdos``
    rows). The pool still names the cache and the structures in errors.
    """

    def __init__(self, pool: Pool, indices, cutoff: float, cache_dir=None, spectrum_grid=None,
                 keep: bool = False, structures: Structures | None = None):
        self.pool = pool
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if structures is not None and len(structures) != len(self.indices):
            raise ValueError(f"{len(structures)} structures given for {len(self.indices)} indices")
        self.structures = structures
        self.cutoff = float(cutoff)
        self.spectrum_grid = None if spectrum_grid is None else np.asarray(spectrum_grid, float)
        self.cache = (Path(cache_dir) / f"{pool.fingerprint}-r{self.cutoff:g}"
                      if cache_dir is not None else None)
        self.kept = {} if keep else None  # item -> graph, filled as items are first asked for

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        if self.kept is not None and k in self.kept:
            return self.kept[k]
        i = int(self.indices[k])
        one = self.pool.read([i]) if self.structures is None else self.structures.subset([k])
        structure = _with_spectra(one, self.spectrum_grid)
        edge_index, shift = self._edges(i, structure)
        data = graph.to_data(structure, edge_index, shift, [edge_index.shape[1]])[0]
        if self.kept is not None:
            self.kept[k] = data
        return data

    def _edges(self, i: int, s: Structures):
        """Structure ``i``'s neighbour list: from the cache where it holds one, else computed (and
        stored there)."""
        path = self.cache / str(i // SHARD) / f"{i}.npz" if self.cache is not None else None
        if path is not None and path.exists():
            try:
                with np.load(path) as f:
                    edge_index, shift = f["edge_index"].astype(np.int64), f["shift"].astype(np.int64)
                if not edge_index.size or edge_index.max() < len(s.numbers):
                    return edge_index, shift
            except Exception:  # noqa: BLE001 writes are atomic: a foreign file; rebuilt below
                pass
        edge_index, shift = graph.edges(s.positions, s.cells[0], s.pbc[0], self.cutoff)
        if path is not None:
            self._store(path, edge_index, shift)
        return edge_index, shift

    def _store(self, path: Path, edge_index, shift) -> None:
        """Atomic write (temp file, rename): concurrent workers and a killed run leave no partial
        file. An unwritable cache is reported once and switched off."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.savez(fh, edge_index=edge_index.astype(np.int32), shift=shift.astype(np.int8))
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"cannot cache neighbour lists in {self.cache}: {e}; they are rebuilt "
                          "every time", stacklevel=3)
            self.cache = None


def _with_spectra(s: Structures, grid) -> Structures:
    """``s`` (one structure) with the spectral fields of its set: NaN-filled where ``grid`` is
    given and ``s`` lacks them, dropped where it is not (module docstring)."""
    if grid is None:
        if s.spectrum is None and s.scalar is None:
            return s
        spectral = {"spectrum": None, "spectrum_grid": None, "scalar": None}
    else:
        missing = np.full((1, len(grid)), np.nan)
        spectral = {"spectrum": missing if s.spectrum is None else s.spectrum,
                    "spectrum_grid": grid,
                    "scalar": np.full(1, np.nan) if s.scalar is None else s.scalar}
    return Structures(numbers=s.numbers, positions=s.positions, cells=s.cells, pbc=s.pbc,
                      n_atoms=s.n_atoms, energy=s.energy, forces=s.forces, stress=s.stress,
                      **spectral)
