"""Periodic structures with their labels, as flat numpy arrays: the data-key contract of msl.

Atoms of all structures are concatenated; structure ``i`` owns the atom rows
``atom_offsets[i]:atom_offsets[i + 1]``. Every field, with shape and unit:

=============  ==========================  ================================================
field          shape, dtype                meaning, unit
=============  ==========================  ================================================
``numbers``    [n_atoms_total] int64       atomic numbers
``positions``  [n_atoms_total, 3] float64  Cartesian positions, Å
``cells``      [n_structures, 3, 3] f64    lattice vectors as rows, Å
``pbc``        [n_structures, 3] bool      periodic along each lattice vector
``n_atoms``    [n_structures] int64        atoms per structure
``energy``     [n_structures] float64      total energy, eV
``forces``     [n_atoms_total, 3] float64  forces, eV/Å
``stress``     [n_structures, 3, 3] f64    stress, eV/Å^3, ASE sign convention
=============  ==========================  ================================================

Optional, frequency-resolved target (None when a dataset has none; see :attr:`has_spectra`):

=================  ==========================  ============================================
field              shape, dtype                meaning, unit
=================  ==========================  ============================================
``spectrum``       [n_structures, n_grid] f64  a spectrum on the common grid; NaN rows where
                                               a structure has none. Embedded ``emt-vdos``:
                                               vibrational DOS, 1/THz (:mod:`msl.data.spectra`)
``spectrum_grid``  [n_grid] float64            the common grid, strictly increasing;
                                               embedded: frequency, THz
``scalar``         [n_structures] float64      a scalar target, NaN where absent; embedded:
                                               RMS vibrational frequency, THz
=================  ==========================  ============================================

``spectrum`` and ``spectrum_grid`` come together (both None or both arrays); ``scalar`` is
independent. Units of a user's own spectra are whatever the source file used.

Stress follows ASE: ``stress = (1/V) dE/dstrain``, so a cell that wants to expand (compressed)
has negative diagonal stress. Multiply by :data:`GPA_PER_EV_A3` for GPa.

A label that a source file does not provide (stress is often missing in real data, sometimes
forces) is NaN; losses and metrics must mask NaN targets.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields
from functools import cached_property
from math import gcd
from pathlib import Path

import numpy as np

GPA_PER_EV_A3 = 160.21766208
"""1 eV/Å^3 in GPa."""

_DTYPES = {
    "numbers": np.int64, "positions": np.float64, "cells": np.float64, "pbc": bool,
    "n_atoms": np.int64, "energy": np.float64, "forces": np.float64, "stress": np.float64,
}
OPTIONAL = ("spectrum", "spectrum_grid", "scalar")  # float64, None when absent


@dataclass(frozen=True, eq=False)
class Structures:
    """Periodic structures as flat numpy arrays; fields, shapes and units in the module docstring.

    Arrays are converted to the contract's dtypes and their shapes checked on construction;
    a mismatch raises ``ValueError`` naming the field.
    """

    numbers: np.ndarray    # int64 [n_atoms_total]           atomic numbers
    positions: np.ndarray  # float64 [n_atoms_total, 3]       Å (Cartesian)
    cells: np.ndarray      # float64 [n_structures, 3, 3]     Å, rows are lattice vectors
    pbc: np.ndarray        # bool [n_structures, 3]
    n_atoms: np.ndarray    # int64 [n_structures]
    energy: np.ndarray     # float64 [n_structures]           eV, total energy
    forces: np.ndarray     # float64 [n_atoms_total, 3]       eV/Å
    stress: np.ndarray     # float64 [n_structures, 3, 3]     eV/Å^3, ASE sign convention
    spectrum: np.ndarray | None = None       # float64 [n_structures, n_grid], NaN rows = none
    spectrum_grid: np.ndarray | None = None  # float64 [n_grid], strictly increasing
    scalar: np.ndarray | None = None         # float64 [n_structures], NaN = none

    def __post_init__(self):
        for name, dtype in _DTYPES.items():
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        n, a = len(self.n_atoms), len(self.numbers)
        expected = {
            "numbers": (a,), "positions": (a, 3), "cells": (n, 3, 3), "pbc": (n, 3),
            "n_atoms": (n,), "energy": (n,), "forces": (a, 3), "stress": (n, 3, 3),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"Structures.{name} has shape {getattr(self, name).shape}, expected {shape} "
                    f"for {n} structures with {a} atoms in total"
                )
        if int(self.n_atoms.sum()) != a or (n and self.n_atoms.min() < 1):
            raise ValueError(
                f"Structures.n_atoms must be >= 1 and sum to len(numbers) = {a}, "
                f"got sum {int(self.n_atoms.sum())}"
            )
        self._check_optional(n)

    def _check_optional(self, n: int) -> None:
        """Convert and check ``spectrum``, ``spectrum_grid`` and ``scalar`` (module docstring)."""
        for name in OPTIONAL:
            if getattr(self, name) is not None:
                object.__setattr__(self, name,
                                   np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        spectrum, grid = self.spectrum, self.spectrum_grid
        if (spectrum is None) != (grid is None):
            given, missing = ("spectrum", "spectrum_grid") if grid is None else (
                "spectrum_grid", "spectrum")
            raise ValueError(f"Structures.{given} is given but Structures.{missing} is None; "
                             "a spectrum needs its grid")
        if grid is not None:
            if grid.ndim != 1 or len(grid) < 1:
                raise ValueError(f"Structures.spectrum_grid has shape {grid.shape}, "
                                 "expected (n_grid,) with n_grid >= 1")
            if not np.isfinite(grid).all() or (np.diff(grid) <= 0).any():
                raise ValueError("Structures.spectrum_grid must be finite and strictly "
                                 f"increasing, got {grid}")
            if spectrum.shape != (n, len(grid)):
                raise ValueError(f"Structures.spectrum has shape {spectrum.shape}, expected "
                                 f"{(n, len(grid))} for {n} structures on a {len(grid)}-point grid")
        if self.scalar is not None and self.scalar.shape != (n,):
            raise ValueError(f"Structures.scalar has shape {self.scalar.shape}, expected {(n,)} "
                             f"for {n} structures")

    def __len__(self) -> int:
        """Number of structures."""
        return len(self.n_atoms)

    def __repr__(self) -> str:
        return f"Structures({len(self)} structures, {len(self.numbers)} atoms)"

    @property
    def has_spectra(self) -> bool:
        """True if the dataset carries spectra (some rows may still be NaN: structures without)."""
        return self.spectrum is not None

    @cached_property
    def atom_offsets(self) -> np.ndarray:
        """int64 [n_structures + 1]: structure i owns atom rows offsets[i]:offsets[i + 1]."""
        return np.concatenate([[0], np.cumsum(self.n_atoms)]).astype(np.int64)

    def subset(self, indices) -> Structures:
        """The structures at ``indices`` (int array-like), in the order given."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][0]
            raise IndexError(f"structure index {bad} out of range for {len(self)} structures")
        counts = self.n_atoms[idx]
        starts = self.atom_offsets[idx]
        new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        atom_idx = np.arange(new_offsets[-1]) + np.repeat(starts - new_offsets[:-1], counts)
        return Structures(
            numbers=self.numbers[atom_idx], positions=self.positions[atom_idx],
            cells=self.cells[idx], pbc=self.pbc[idx], n_atoms=counts, energy=self.energy[idx],
            forces=self.forces[atom_idx], stress=self.stress[idx],
            spectrum=None if self.spectrum is None else self.spectrum[idx],
            spectrum_grid=self.spectrum_grid,
            scalar=None if self.scalar is None else self.scalar[idx],
        )

    def atoms(self, i: int):
        """Structure ``i`` as ``ase.Atoms`` with a SinglePointCalculator holding its labels.

        NaN (missing) labels are left out of the calculator. A spectrum and scalar, where
        present, go into ``atoms.info`` under the keys :func:`msl.data.read` reads back
        (``spectrum``, ``spectrum_grid``, ``scalar``), so ``ase.io.write`` to extxyz round-trips.
        """
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        lo, hi = self.atom_offsets[i], self.atom_offsets[i + 1]
        atoms = Atoms(numbers=self.numbers[lo:hi], positions=self.positions[lo:hi],
                      cell=self.cells[i], pbc=self.pbc[i])
        labels = {"energy": self.energy[i], "forces": self.forces[lo:hi], "stress": self.stress[i]}
        results = {k: np.array(v) for k, v in labels.items() if not np.isnan(v).any()}
        if "energy" in results:
            results["energy"] = float(results["energy"])
        atoms.calc = SinglePointCalculator(atoms, **results)
        if self.spectrum is not None and not np.isnan(self.spectrum[i]).all():
            atoms.info["spectrum"] = self.spectrum[i].copy()
            atoms.info["spectrum_grid"] = self.spectrum_grid.copy()
        if self.scalar is not None and not np.isnan(self.scalar[i]):
            atoms.info["scalar"] = float(self.scalar[i])
        return atoms

    def formulas(self) -> list[str]:
        """Reduced formula of every structure, elements in alphabetical order (``"AlCu3"``)."""
        from ase.data import chemical_symbols

        out = []
        for lo, hi in zip(self.atom_offsets[:-1], self.atom_offsets[1:]):
            z, counts = np.unique(self.numbers[lo:hi], return_counts=True)
            g = 0
            for c in counts:
                g = gcd(g, int(c))
            parts = sorted((chemical_symbols[zi], int(c) // g) for zi, c in zip(z, counts))
            out.append("".join(s + (str(c) if c > 1 else "") for s, c in parts))
        return out

    def save(self, path) -> Path:
        """Write all fields (optional ones only if present) to an uncompressed ``.npz`` atomically
        (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **{f.name: getattr(self, f.name) for f in fields(self)
                               if getattr(self, f.name) is not None})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path) -> Structures:
        """Read a file written by :meth:`save`; ``ValueError`` naming the path if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _DTYPES}  # each array read exactly once
                arrays.update({name: npz[name] for name in OPTIONAL if name in npz.files})
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"cannot read structures from {path}: {type(e).__name__}: {e}") from e
        return cls(**arrays)
