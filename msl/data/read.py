"""Read a dataset file (or a folder of them) into :class:`Structures`, with an ``.npz`` cache.

Supported sources:

* ``.aselmdb`` (OMat24's LMDB-backed ASE database, and the embedded dataset) and any ASE
  database ``.db``: read through fairchem-core's ``AseDBDataset.get_atoms``, the same code path
  fairchem uses for OMat24, so the default data and real OMat24 files are read identically;
* a folder: every ``*.aselmdb`` and ``*.db`` file in it (not recursive, hidden files skipped),
  sorted by name and concatenated in that order;
* ``.extxyz`` / ``.xyz`` (MPtrj, Alexandria exports): ``ase.io.read(path, index=":")``;
  labels are taken from the calculator ASE attaches (``energy``, ``forces``, ``stress`` keys);
* ``.npz`` written by :meth:`Structures.save`.

A label a structure does not carry is NaN (energy [eV], forces [eV/Å], stress [eV/Å^3]);
losses and metrics must mask NaN targets. Stress given as a Voigt 6-vector is expanded to 3×3.
A label a structure does carry must be finite: NaN or ±inf in a given energy, force, stress,
spectrum or scalar (an extxyz with ``energy=nan``, say) raises ``ValueError`` naming the file, the
first such structure and the label (``dataset data.extxyz: structure 0 has energy nan``); leave a
label out of the file where it is unknown.

Spectra and a scalar target (optional, e.g. the dielectric functions of Großmann et al.) are
read from ``atoms.info`` under these keys (never from ``atoms.arrays``):

===================  ===========================  ===========================================
key                  value                        becomes
===================  ===========================  ===========================================
``spectrum``         1-D array [n_grid]           a row of ``Structures.spectrum``
``spectrum_grid``    1-D array [n_grid], rising   ``Structures.spectrum_grid`` (one per dataset)
``scalar``           number                       an entry of ``Structures.scalar``
===================  ===========================  ===========================================

In extxyz these are ordinary info keys on the comment line (``ase.io.write`` writes arrays in
``atoms.info`` exactly). In an ASE database (``.aselmdb``/``.db``) they go in the row's ``data``
(``db.write(atoms, data={"spectrum": ..., "spectrum_grid": ..., "scalar": ...})``): fairchem's
``AseDBDataset.get_atoms`` copies row ``data`` into ``atoms.info`` but drops ``key_value_pairs``,
so a scalar stored as a key-value pair is not read. A structure without ``spectrum`` gets a NaN
row, one without ``scalar`` a NaN; a dataset where no structure has one gets None. All spectra
must share one grid (equal to within 1e-6 of the grid spacing): a spectrum without its grid, a
length that differs from its grid, or two grids, within a file or across the files of a folder,
raise ``ValueError`` naming the structure or both files. The embedded ``emt-vdos`` dataset stores
its vibrational DOS (1/THz) on a THz grid and the RMS frequency (THz) this way.

Cache: the arrays are saved as ``.npz`` in ``cache_dir`` (default ``.msl-cache`` beside the
data file or folder) under a key made of the absolute path, size and modification time of every
source file. A cached read imports neither fairchem (~10 s) nor torch. If the cache folder cannot
be written (read-only data), a warning is issued and the data are simply not cached.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from msl.data.structures import Structures

DB_SUFFIXES = (".aselmdb", ".db")
XYZ_SUFFIXES = (".extxyz", ".xyz")
SUPPORTED = DB_SUFFIXES + XYZ_SUFFIXES + (".npz", "a folder of .aselmdb/.db files")
LABELS = ("energy", "forces", "stress", "spectrum", "scalar")  # checked in this order per structure
_CACHE_FORMAT = 3  # bump when the reader's output changes (2: spectra and scalar, 3: finite labels)


def read(path, cache_dir=None) -> Structures:
    """Load ``path`` (a file or folder, see the module docstring) as :class:`Structures`.

    Raises ``FileNotFoundError`` if ``path`` does not exist, ``ValueError`` naming the path for
    an unsupported extension, an unreadable or corrupt file, or a dataset with no structures.
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.suffix == ".npz":
        return Structures.load(path)
    sources = _sources(path)
    cache = _cache_file(path, sources, cache_dir)
    if cache.exists():
        try:
            return Structures.load(cache)
        except ValueError:
            pass  # a damaged cache entry is rebuilt below
    parts = [_read_one(src) for src in sources]
    data = _concatenate(parts, sources) if len(parts) > 1 else parts[0]
    try:
        data.save(cache)
    except OSError as e:
        warnings.warn(f"could not cache {path} in {cache.parent}: {e}", stacklevel=2)
    return data


def _sources(path: Path) -> list[Path]:
    """The data files behind ``path``; ``ValueError`` if unsupported or an empty folder."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix in DB_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise ValueError(f"folder {path} holds no {' or '.join(DB_SUFFIXES)} files")
        return files
    if path.suffix not in DB_SUFFIXES + XYZ_SUFFIXES:
        raise ValueError(
            f"unsupported dataset file {path} (extension {path.suffix!r}); "
            f"supported: {', '.join(SUPPORTED)}"
        )
    return [path]


def _cache_file(path: Path, sources: list[Path], cache_dir) -> Path:
    """Cache location keyed by format version and (absolute path, size, mtime) of every source."""
    key = [f"msl-read-v{_CACHE_FORMAT}"]
    for src in sources:
        st = src.stat()
        key.append(f"{src}|{st.st_size}|{st.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else path.parent / ".msl-cache"
    return folder / f"{path.name}-{digest}.npz"


def _read_one(src: Path) -> Structures:
    """Read one data file; any failure becomes ``ValueError`` naming the file and the reason."""
    try:
        atoms_list = _ase_db_atoms(src) if src.suffix in DB_SUFFIXES else _xyz_atoms(src)
    except Exception as e:
        if _is_empty_message(e):
            raise ValueError(f"dataset {src} is empty: it holds no structures") from e
        raise ValueError(f"cannot read dataset {src}: {type(e).__name__}: {e}") from e
    if not atoms_list:
        raise ValueError(f"dataset {src} is empty: it holds no structures")
    try:
        return from_atoms(atoms_list)
    except ValueError as e:
        raise ValueError(f"dataset {src}: {e}") from e


def _is_empty_message(e: Exception) -> bool:
    return isinstance(e, ValueError) and "No valid ase data found" in str(e)


def _ase_db_atoms(src: Path) -> list:
    """All rows of an ASE database through fairchem's ``AseDBDataset`` (imported here: ~10 s)."""
    from tqdm.auto import tqdm

    from msl.quiet import import_quietly

    AseDBDataset = import_quietly("fairchem.core.datasets").AseDBDataset

    _check_sqlite(src) if src.suffix == ".db" else _check_lmdb(src)
    dataset = AseDBDataset(config={"src": str(src)})
    if len(dataset.dbs) == 0:  # fairchem skips a file it cannot connect to, silently
        raise ValueError("not an ASE database")
    n = len(dataset)
    return [dataset.get_atoms(i) for i in tqdm(range(n), desc=f"reading {src.name}",
                                               unit="structure", disable=n < 10_000)]


def _check_lmdb(src: Path) -> None:
    """Open the LMDB file once ourselves: a corrupt file fails here with LMDB's own reason,
    instead of inside the ASE backend, whose destructor then raises a second error."""
    import lmdb

    lmdb.open(str(src), subdir=False, readonly=True, lock=False).close()


def _check_sqlite(src: Path) -> None:
    """``ase.db.connect`` would happily create tables in a non-database file; refuse instead."""
    with open(src, "rb") as f:
        head = f.read(16)
    if head and head != b"SQLite format 3\x00":
        raise ValueError("not an SQLite file (bad header)")


def _xyz_atoms(src: Path) -> list:
    from ase.io import read as ase_read

    return ase_read(src, index=":")


def _label(atoms, name: str):
    """A calculator result, or None if the structure does not carry it."""
    calc = atoms.calc
    if calc is None:
        return None
    value = calc.results.get(name)
    if value is None and name == "energy":
        value = calc.results.get("free_energy")
    return value


def _stress33(stress) -> np.ndarray:
    s = np.asarray(stress, dtype=float)
    if s.shape == (6,):  # Voigt xx yy zz yz xz xy
        s = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
    return s.reshape(3, 3)


def _same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and no point further apart than 1e-6 of ``b``'s smallest spacing."""
    if a.shape != b.shape:
        return False
    scale = np.diff(b).min() if len(b) > 1 else max(abs(float(b[0])), 1.0)
    return bool(np.abs(a - b).max() <= 1e-6 * scale)


def _info_array(atoms, key: str, i: int) -> np.ndarray:
    value = np.atleast_1d(np.asarray(atoms.info[key], dtype=float))
    if value.ndim != 1:
        raise ValueError(f"structure {i}: atoms.info[{key!r}] has shape {value.shape}, "
                         "expected a 1-D array")
    return value


def _spectra(atoms_list, ids) -> dict:
    """``spectrum``, ``spectrum_grid`` and ``scalar`` from ``atoms.info`` (module docstring);
    errors name structure ``i`` as ``ids[i]``."""
    n = len(atoms_list)
    rows, grid, first, scalar = {}, None, None, np.full(n, np.nan)
    for i, atoms in enumerate(atoms_list):
        info, name = atoms.info, ids[i]
        if "scalar" in info:
            try:
                scalar[i] = float(info["scalar"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"structure {name}: atoms.info['scalar'] = {info['scalar']!r} is "
                                 "not a number") from e
        if "spectrum" not in info and "spectrum_grid" not in info:
            continue
        for key, other in (("spectrum", "spectrum_grid"), ("spectrum_grid", "spectrum")):
            if key not in info:
                raise ValueError(f"structure {name} has atoms.info[{other!r}] but no "
                                 f"atoms.info[{key!r}]")
        spectrum, g = _info_array(atoms, "spectrum", name), _info_array(atoms, "spectrum_grid", name)
        if spectrum.shape != g.shape:
            raise ValueError(f"structure {name}: spectrum has {len(spectrum)} values but its "
                             f"spectrum_grid has {len(g)} points")
        if grid is None:
            grid, first = g, name
        elif not _same_grid(g, grid):
            raise ValueError(f"structure {name} has a spectrum_grid ({len(g)} points, {g[0]:g} to "
                             f"{g[-1]:g}) that differs from structure {first}'s ({len(grid)} "
                             f"points, {grid[0]:g} to {grid[-1]:g}); all spectra need one grid")
        rows[i] = spectrum
    out = {"scalar": scalar if not np.isnan(scalar).all() else None}
    if grid is not None:
        spectra = np.full((n, len(grid)), np.nan)
        for i, row in rows.items():
            spectra[i] = row
        out.update(spectrum=spectra, spectrum_grid=grid)
    return out


def from_atoms(atoms_list, ids=None) -> Structures:
    """Pack ``ase.Atoms`` (labels from their calculators; NaN where missing) into Structures.

    Spectra and scalars come from ``atoms.info`` (keys in the module docstring). A label that is
    given must be finite, else ``ValueError`` naming the structure (:func:`_check_finite`): as
    ``ids[i]`` where given (a subset read by :mod:`msl.data.pool` names its pool indices), else
    by its position ``i`` in ``atoms_list``.
    """
    n = len(atoms_list)
    ids = range(n) if ids is None else [int(i) for i in ids]
    energy = np.full(n, np.nan)
    stress = np.full((n, 3, 3), np.nan)
    forces = []
    given = {name: np.zeros(n, dtype=bool) for name in LABELS}  # the label is in the file
    for i, atoms in enumerate(atoms_list):
        e, f, s = (_label(atoms, k) for k in ("energy", "forces", "stress"))
        if e is not None:
            energy[i] = float(e)
        if s is not None:
            stress[i] = _stress33(s)
        forces.append(np.full((len(atoms), 3), np.nan) if f is None else np.asarray(f, float))
        for name, value in (("energy", e), ("forces", f), ("stress", s)):
            given[name][i] = value is not None
        for name in ("spectrum", "scalar"):
            given[name][i] = name in atoms.info
    data = Structures(
        numbers=np.concatenate([a.numbers for a in atoms_list]),
        positions=np.concatenate([a.positions for a in atoms_list]),
        cells=np.stack([a.cell[:] for a in atoms_list]),
        pbc=np.stack([a.pbc for a in atoms_list]),
        n_atoms=[len(a) for a in atoms_list], energy=energy,
        forces=np.concatenate(forces), stress=stress, **_spectra(atoms_list, ids),
    )
    _check_finite(data, given, ids)
    return data


def _check_finite(data: Structures, given: dict, ids) -> None:
    """Every label a structure carries (``given[label][i]``) must be finite: a missing label is
    NaN, so NaN in a file would pass for missing, and NaN or inf would poison the fitted scales
    and reference energies. ``ValueError`` names the first bad structure, its label and value."""
    scalar = data.scalar if data.scalar is not None else np.full(len(data), np.nan)  # all NaN
    rows = {"energy": data.energy, "stress": data.stress, "spectrum": data.spectrum,
            "scalar": scalar}
    finite = {
        "energy": np.isfinite(data.energy),
        "forces": np.logical_and.reduceat(np.isfinite(data.forces).all(1), data.atom_offsets[:-1]),
        "stress": np.isfinite(data.stress).all((1, 2)),
        "spectrum": None if data.spectrum is None else np.isfinite(data.spectrum).all(1),
        "scalar": np.isfinite(scalar),
    }
    bad = {name: given[name] & ~ok for name, ok in finite.items() if ok is not None}
    first = min((int(np.argmax(b)) for b in bad.values() if b.any()), default=None)
    if first is None:
        return
    name = next(name for name, b in bad.items() if b[first])
    if name == "forces":
        row = data.forces[data.atom_offsets[first]:data.atom_offsets[first + 1]]
    else:
        row = np.atleast_1d(rows[name][first])
    where = tuple(np.argwhere(~np.isfinite(row))[0])
    at = {"forces": f" (atom {where[0]})", "spectrum": f" (grid point {where[0]})"}.get(name, "")
    raise ValueError(f"structure {ids[first]} has {name} {row[where]:g}{at}; a label must be finite "
                     "(leave it out of the file where it is unknown)")


def _concatenate(parts: list[Structures], sources: list[Path]) -> Structures:
    """One Structures from several files; their spectra need one grid (else ``ValueError``)."""
    arrays = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in ("numbers", "positions", "cells", "pbc", "n_atoms", "energy", "forces", "stress")
    }
    with_spectra = [(p, src) for p, src in zip(parts, sources) if p.has_spectra]
    if with_spectra:
        grid, first = with_spectra[0][0].spectrum_grid, with_spectra[0][1]
        for p, src in with_spectra[1:]:
            if not _same_grid(p.spectrum_grid, grid):
                raise ValueError(
                    f"spectra on different grids: {first} has {len(grid)} points "
                    f"({grid[0]:g} to {grid[-1]:g}), {src} has {len(p.spectrum_grid)} "
                    f"({p.spectrum_grid[0]:g} to {p.spectrum_grid[-1]:g})")
        arrays["spectrum_grid"] = grid
        arrays["spectrum"] = np.concatenate([
            p.spectrum if p.has_spectra else np.full((len(p), len(grid)), np.nan) for p in parts])
    if any(p.scalar is not None for p in parts):
        arrays["scalar"] = np.concatenate([
            p.scalar if p.scalar is not None else np.full(len(p), np.nan) for p in parts])
    return Structures(**arrays)
