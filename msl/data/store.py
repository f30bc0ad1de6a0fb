"""Storing a generated dataset: the parts every embedded kind shares.

A generator (:mod:`msl.data.generate` for EMT, :mod:`msl.data.chgnet` for CHGNet) supplies one
function, ``label(start, stop) -> [(status, payload), ...]``, that builds, filters and labels the
candidates ``start..stop-1``; this module does the rest the same way for every kind:

* :func:`accepted` runs ``label`` over consecutive blocks of candidates, in forked worker
  processes, and yields the accepted payloads in order of the candidate index until enough have
  passed; what is yielded depends only on ``label``, never on the number of workers;
* :func:`write` writes them as rows of an ASE database (``.aselmdb``, OMat24's format) through a
  temp file in the same folder that is renamed at the end, so an interrupted run never leaves a
  partial file; :func:`write_sidecar` writes ``<path>.json`` (settings, counts, throughput,
  versions) the same way;
* :func:`cached` returns a cached file whose sidecar records the same settings, or generates it
  once under a file lock when several processes ask at the same time.

A payload is a dict: ``numbers``, ``positions`` (Å), ``cell`` (Å), ``energy`` (eV), ``forces``
(eV/Å), ``stress`` (3×3, eV/Å^3, ASE sign), ``info`` (provenance, with the ``candidate`` index),
and optionally ``data`` (more row data, e.g. spectra or magnetic moments).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import socket
import time
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path


def _context():
    """fork where available: unlike spawn, it does not re-run an unguarded ``__main__`` script
    in every worker (which would hang), and it starts in milliseconds."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _label_block(label, bounds):
    return label(*bounds)


def accepted(label, n_structures: int, workers: int, tally: dict, acceptance: float,
             block: int):
    """Yield the payloads of accepted candidates in order of their index until ``n_structures``.

    ``label(start, stop)`` returns ``(status, payload)`` for each candidate of ``start..stop-1``
    (``status`` "ok" or the name of the filter that rejected it; ``tally`` counts them).
    Candidates are labelled in blocks of ``block`` starting at multiples of ``block``; waves of
    blocks are sized from the expected ``acceptance``. ``label`` must be picklable (a module-level
    function or a ``functools.partial`` of one) when ``workers > 1``.
    """
    pool = _context().Pool(workers) if workers > 1 else None
    try:
        start, n_ok = 0, 0
        while n_ok < n_structures:
            need = int((n_structures - n_ok) / acceptance) + 4 * workers
            bounds = [(s, s + block) for s in range(start, start + need, block)]
            task = partial(_label_block, label)
            results = pool.imap(task, bounds) if pool else map(task, bounds)
            for block_results in results:
                for status, payload in block_results:
                    tally[status] = tally.get(status, 0) + 1
                    if status == "ok":
                        n_ok += 1
                        yield payload
                        if n_ok == n_structures:
                            return
            start = bounds[-1][1]
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _write_rows(db, payloads, sid_prefix: str, on_row) -> int:
    """Write payloads to an open ASE database; return the total number of atoms."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    n_atoms = 0
    for p in payloads:
        atoms = Atoms(numbers=p["numbers"], positions=p["positions"], cell=p["cell"], pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=p["energy"], forces=p["forces"],
                                           stress=p["stress"].reshape(3, 3))
        sid = f"{sid_prefix}-{p['info']['candidate']}"
        db.write(atoms, data={"sid": sid, **p["info"], **p.get("data", {})})
        n_atoms += len(atoms)
        on_row()
    return n_atoms


def write(path, payloads, n_structures: int, sid_prefix: str, desc: str,
          progress: bool = True) -> int:
    """Write the ``payloads`` generator to the database ``path`` atomically; return its atoms.

    The rows go to a temp file in the same folder, renamed to ``path`` at the end; whatever
    happens, the temp file and LMDB's lock files are removed and ``payloads`` is closed (which
    stops a worker pool at once if writing failed). Row ``data`` holds ``sid`` =
    ``<sid_prefix>-<candidate>``, the payload's ``info`` and its ``data``.
    """
    from ase.db import connect
    from tqdm.auto import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = _temp_name(path)
    bar = tqdm(total=n_structures, desc=desc, unit="structure", disable=not progress)
    try:
        with connect(tmp, type="aselmdb", append=False) as db:
            n_atoms = _write_rows(db, payloads, sid_prefix, on_row=bar.update)
        os.replace(tmp, path)
    finally:
        payloads.close()
        bar.close()
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}-lock").unlink(missing_ok=True)  # LMDB's lock file
        Path(f"{path}-lock").unlink(missing_ok=True)
    return n_atoms


def write_sidecar(path, settings: dict, n_structures: int, n_atoms: int, tally: dict,
                  filters, workers: int, wall: float, packages, **extra) -> None:
    """Write ``<path>.json``: settings, counts, rejections per filter, throughput, versions."""
    path = Path(path)
    n_candidates = sum(tally.values())
    _write_json(Path(f"{path}.json"), {
        "settings": settings, "n_structures": n_structures,
        "n_atoms_total": n_atoms, "n_candidates": n_candidates,
        "rejected": {name: tally.get(name, 0) for name in filters},
        "acceptance": n_structures / n_candidates, "file_bytes": path.stat().st_size,
        "workers": workers, "wall_s": round(wall, 3),
        "structures_per_s": round(n_structures / wall, 2), **extra,
        "versions": versions(packages), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def versions(packages) -> dict:
    """Python's version and each package's (None where it is not installed)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp"


def _remove_stale_temps(path: Path) -> None:
    """Remove temp files of killed generations of ``path`` on this host (their pid is gone)."""
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.{host}.*.tmp*"):
        pid = tmp.name[len(f".{path.name}.{host}."):].split(".")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's


def _write_json(path: Path, obj: dict) -> None:
    tmp = _temp_name(path)
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def provenance(path) -> dict | None:
    """What a generated file holds and how it was filtered, from its sidecar ``<path>.json``:
    kind, structures, atoms, candidates, rejections per filter, acceptance, and for the
    ``chgnet`` kind the number of distinct elements; None for a file without a sidecar (a real
    dataset). The same on every machine (:func:`generation_time` says how long it took)."""
    meta = _sidecar(path)
    if meta is None:
        return None
    out = {"kind": meta["settings"].get("kind"), "structures": meta["n_structures"],
           "atoms": meta["n_atoms_total"], "candidates": meta["n_candidates"],
           **{f"rejected ({name})": n for name, n in meta["rejected"].items()},
           "acceptance": round(meta["acceptance"], 3)}
    if "composition" in meta:
        out["distinct elements"] = meta["composition"]["n_elements"]
    return out


def generation_time(path) -> str | None:
    """How long generating ``path`` took, from its sidecar (a sentence); None without one."""
    meta = _sidecar(path)
    if meta is None:
        return None
    return (f"generated in {meta['wall_s']:.1f} s on {meta['workers']} worker(s) "
            f"({meta['structures_per_s']:.2f} structures/s) on the machine that made it")


def _sidecar(path) -> dict | None:
    try:
        return json.loads(Path(f"{path}.json").read_text())
    except (OSError, ValueError):
        return None


def sidecar_matches(path, settings: dict) -> bool:
    """True if ``path`` and its sidecar exist, the settings agree and the file size is as written."""
    meta = _sidecar(path)
    try:
        return meta["settings"] == settings and meta["file_bytes"] == Path(path).stat().st_size
    except (OSError, KeyError, TypeError):  # no sidecar (None), or a file or key missing
        return False


@contextmanager
def _file_lock(path: Path):
    """Exclusive advisory lock (POSIX flock) so that parallel callers generate a file once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, atomic rename still keeps the file whole
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(path, settings: dict, make) -> Path:
    """``path`` if its sidecar records ``settings``, else ``make()`` (which writes it) first.

    Parallel callers wait on a lock file ``.<name>.lock`` beside ``path`` (left in place:
    removing a lock file races), so the file is generated once.
    """
    path = Path(path)
    if sidecar_matches(path, settings):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path.parent / f".{path.name}.lock"):
        if not sidecar_matches(path, settings):  # another process may have made it meanwhile
            make()
    return path
