"""A study's grid: ``book/<study>/grid.yaml`` -> validated cells with stable ids.

Format (every key below is checked; anything else is an error)::

    study: default                 # name (defaults to the folder name)
    description: one line          # optional
    notebook: notebooks/train.ipynb  # optional; the template papermill runs per cell
    analysis: notebooks/analysis.ipynb  # optional; the chapter `msl analyse` executes
    compare: ../default            # optional; another study the chapter compares with (its
                                   # folder, relative to this file's), passed as `compare_dir`
    fixed:                         # parameters shared by every cell
      epochs: 40
    slurm:                         # optional: `msl sweep --executor slurm` options (msl.slurm)
      time: 120                    # minutes per cell; also partition, mem, cpus_per_cell, ...
    scans:                         # named scans; a list value is an axis (lists are crossed)
      data:
        axis: n_train              # the scanned parameter, for plots and checks
        n_train: [32, 100, 316]
        size: 2
        budget_check: 2            # optional: rerun both ends of the axis with twice the budget
                                   # (2x max_steps and patience; 2x epochs and min_steps without a cap)
        end_seeds: [0, 1, 2]       # optional: more seeds at both ends of the axis only (where the
                                   # fits' seed spread and the extrapolation test matter most)
      params:
        axis: size
        size: [0, 1, 2, 3]
        n_train: 316

A cell is a flat dict of notebook parameters; its id is :func:`msl.config.cell_id`, so the same
configuration reached from two scans is one cell, trained once. The budget-check cells (the two
ends of a scan's axis with ``budget_check`` times the budget, see :func:`budget_keys`) belong to
the scan ``<name>/budget``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from msl.config import CellConfig, from_dict

TOP_KEYS = {"study", "description", "notebook", "analysis", "compare", "fixed", "scans", "slurm"}
SCAN_KEYS = {"axis", "budget_check", "end_seeds"}
DEFAULT_NOTEBOOK = "notebooks/train.ipynb"
DEFAULT_ANALYSIS = "notebooks/analysis.ipynb"


@dataclass
class Grid:
    study: str
    study_dir: Path
    notebook: str
    analysis: str = DEFAULT_ANALYSIS
    description: str = ""
    fixed: dict = field(default_factory=dict)
    scans: dict = field(default_factory=dict)
    slurm: dict = field(default_factory=dict)   # options of `msl sweep --executor slurm`
    compare: Path | None = None                 # the study the chapter compares with

    @property
    def record_dir(self) -> Path:
        return self.study_dir / "records"

    @property
    def run_dir(self) -> Path:
        return self.study_dir / "runs"

    def axis(self, scan: str) -> str:
        return self.scans[scan.split("/")[0]]["axis"]

    def cells(self) -> list[tuple[CellConfig, tuple[str, ...]]]:
        """Every distinct cell with the scans it belongs to, in grid order."""
        found: dict[str, tuple[CellConfig, list[str]]] = {}
        for name, spec in self.scans.items():
            for scan, values in _expand(name, spec, self.fixed):
                values.update(study=self.study, record_dir=str(self.record_dir.resolve()))
                cfg = _config(values, f"scan {scan!r}").with_id()
                scans = found.setdefault(cfg.cell_id, (cfg, []))[1]
                if scan not in scans:  # an end seed that the scan already has
                    scans.append(scan)
        return [(cfg, tuple(scans)) for cfg, scans in found.values()]

    def finished(self) -> list[tuple[CellConfig, tuple[str, ...], dict]]:
        """(config, scans, record) of every cell that has a record, in grid order; records of
        cells no longer in the grid are left out."""
        from msl import results  # records know nothing of grids; only this reader joins them

        by_id = {r["cell_id"]: r for r in results.load(self.study_dir)}
        return [(cfg, scans, by_id[cfg.cell_id]) for cfg, scans in self.cells()
                if cfg.cell_id in by_id]


def load(path: str | Path) -> Grid:
    """Read and check a grid file; errors name the file and the offending key or value."""
    path = Path(path)
    if path.is_dir():
        path = path / "grid.yaml"
    if not path.exists():
        raise FileNotFoundError(f"grid file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"grid file {path} is not valid YAML: {err}") from err
    if not isinstance(spec, dict):
        raise ValueError(f"grid file {path} must hold a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; allowed: {sorted(TOP_KEYS)}")
    scans = spec.get("scans") or {}
    if not scans:
        raise ValueError(f"{path}: no scans defined")
    for name, scan in scans.items():
        _check_scan(path, name, scan)
    return Grid(study=spec.get("study", path.parent.name), study_dir=path.parent,
                notebook=spec.get("notebook", DEFAULT_NOTEBOOK),
                analysis=spec.get("analysis", DEFAULT_ANALYSIS),
                description=spec.get("description", ""), fixed=spec.get("fixed") or {},
                scans=scans, slurm=_check_slurm(path, spec.get("slurm")),
                compare=_check_compare(path, spec.get("compare")))


def _check_compare(path, folder) -> Path | None:
    """The ``compare:`` study's folder (relative to the grid file's), which must hold a grid."""
    if folder is None:
        return None
    found = (path.parent / str(folder)).resolve()
    if not (found / "grid.yaml").exists():
        raise ValueError(f"{path}: compare: {folder!r} is not a study folder ({found} holds no "
                         f"grid.yaml)")
    return found


def _check_slurm(path, block) -> dict:
    """The ``slurm:`` block (see :mod:`msl.slurm`): known keys and sane values, or ValueError."""
    from msl.slurm import check_block

    return check_block(block, f"{path}: slurm")


def _check_scan(path, name, scan) -> None:
    if "/" in str(name):
        raise ValueError(f"{path}: scan name {name!r} must not contain '/'")
    if not isinstance(scan, dict) or "axis" not in scan:
        raise ValueError(f"{path}: scan {name!r} needs an 'axis' key naming the scanned parameter")
    axis = scan["axis"]
    if not isinstance(scan.get(axis), list) or len(scan[axis]) < 2:
        raise ValueError(f"{path}: scan {name!r} must list at least two values of its axis {axis!r}")
    seeds = scan.get("end_seeds", [])
    if not isinstance(seeds, list) or not all(isinstance(v, int) and v >= 0 for v in seeds):
        raise ValueError(f"{path}: scan {name!r}: end_seeds={seeds!r} must be a list of seeds "
                         "(non-negative integers)")
    factor = scan.get("budget_check", 0)
    if not isinstance(factor, (int, float)) or (factor and factor <= 1):
        raise ValueError(f"{path}: scan {name!r}: budget_check={factor!r} must be a number > 1")


def _expand(name: str, spec: dict, fixed: dict):
    """Yield (scan tag, parameter dict) for the crossed axes of one scan and its budget checks."""
    params = {**fixed, **{k: v for k, v in spec.items() if k not in SCAN_KEYS}}
    axes = {k: v for k, v in params.items() if isinstance(v, list)}
    for combo in itertools.product(*axes.values()):
        yield name, {**params, **dict(zip(axes, combo))}
    axis = spec["axis"]
    ends = {min(spec[axis]), max(spec[axis])}
    others = {k: v for k, v in axes.items() if k not in (axis, "seed")}
    for end, seed in itertools.product(sorted(ends), spec.get("end_seeds", [])):
        for combo in itertools.product(*others.values()):
            yield name, {**params, **dict(zip(others, combo)), axis: end, "seed": seed}
    factor = spec.get("budget_check")
    if factor:
        others = {k: v for k, v in axes.items() if k != axis}
        budget = {key: int(round(factor * params.get(key, CellConfig.__dataclass_fields__[key].default)))
                  for key in budget_keys(params)}
        for end in sorted(ends):
            for combo in itertools.product(*others.values()):
                yield f"{name}/budget", {**params, **dict(zip(others, combo)), axis: end, **budget}


def budget_keys(params: dict) -> tuple[str, ...]:
    """What a budget check multiplies: the step cap and the patience under the early-stopping
    protocol (``max_steps`` > 0), else the epochs and the minimum steps of a fixed epoch count."""
    if params.get("max_steps", 0):
        return ("max_steps", "patience")
    return ("epochs", "min_steps")


def _config(values: dict, where: str) -> CellConfig:
    try:
        return from_dict(values)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
