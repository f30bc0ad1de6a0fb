"""Records: one JSON file per grid cell, written atomically; everything downstream reads these.

A record holds the full config, package versions and git commit, parameter counts, FLOPs, wall
time, throughput, the loss curve, final validation and test metrics per target, and a status:
``ok``, ``diverged`` or ``failed`` (with the error). Keys of ``metrics`` read ``val/forces_mae``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

STATUSES = ("ok", "diverged", "failed")
FINISHED = ("ok", "diverged")   # a resumed sweep skips these; failed cells run again
# distribution names as installed (importlib.metadata); the full set is pinned in requirements.lock
PACKAGES = ("torch", "torch-geometric", "fairchem-core", "ase", "pymatgen", "matscipy", "numpy",
            "scipy", "pandas", "matplotlib", "papermill", "msl")


def write(path: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` as JSON to ``path`` atomically: a temp file in the same folder, fsync,
    then rename. A process killed at any moment leaves either the old file or the new one."""
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status {record.get('status')!r} is not one of {STATUSES}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | os.PathLike) -> dict:
    """One record; a file that is not a complete record raises ValueError naming it."""
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"record {path} is not valid JSON: {err}") from err
    if "cell_id" not in record or record.get("status") not in STATUSES:
        raise ValueError(f"record {path} lacks a cell_id or a valid status")
    return record


def load(study_dir: str | os.PathLike, status: str | None = None) -> list[dict]:
    """All records of a study (``<study_dir>/records/*.json``), optionally of one status."""
    records = [read(p) for p in sorted(Path(study_dir, "records").glob("*.json"))]
    return [r for r in records if status is None or r["status"] == status]


def finished(record_dir: str | os.PathLike, cell_id: str) -> bool:
    """True if the cell has a record whose status is ok or diverged."""
    path = Path(record_dir, f"{cell_id}.json")
    if not path.exists():
        return False
    try:
        return read(path)["status"] in FINISHED
    except ValueError:
        return False


def provenance() -> dict:
    """Package versions, git commit and machine, for reproducing a record."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"versions": versions, "git_commit": _git_commit(), "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
