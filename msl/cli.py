"""Command line: ``msl train``, ``msl sweep``, ``msl analyse``, ``msl study``, ``msl data``.

Every error that a user can cause (a bad value, a missing file) is printed as one line,
``msl: error: ...``, with exit code 2 and nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from msl.config import CellConfig

DATA_NOTEBOOK = "notebooks/data.ipynb"


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one cell without a notebook and write its record",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(CellConfig):
        kind = {"int": int, "float": float, "str": str}[f.type]
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=f.default,
                       help=f"({f.type})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    for name, text in (("sweep", "run every unfinished cell of a grid through papermill"),
                       ("study", "sweep, then execute the analysis notebook into the study folder")):
        p = sub.add_parser(name, help=text)
        p.add_argument("grid", help="book/<study>/grid.yaml or its folder")
        p.add_argument("--workers", type=int, default=1, help="cells run at once")
        p.add_argument("--timeout", type=int, default=None, help="seconds per notebook cell")
        p.add_argument("--dry-run", action="store_true", help="validate and list, run nothing")
    p = sub.add_parser("analyse", help="execute the data and analysis notebooks of a study (no training)")
    p.add_argument("grid", help="book/<study>/grid.yaml or its folder")
    p = sub.add_parser("data", help="generate the embedded EMT dataset")
    p.add_argument("--n", type=int, required=True, help="structures to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--kind", default="emt", help="emt (4-32 atoms) or emt-vdos (4-8 atoms with "
                   "vibrational spectra)")
    p.add_argument("--out", default=None, help="output .aselmdb (default: the cache folder)")
    return parser


def analyse(grid_path: str) -> Path:
    """Execute the data-overview notebook and the study's analysis notebook (grid key
    ``analysis``) into ``<study>/data.ipynb`` and ``<study>/analysis.ipynb`` (no training);
    returns the analysis notebook's path."""
    from msl.grid import load

    grid = load(grid_path)
    first = grid.cells()[0][0]
    _execute(DATA_NOTEBOOK, grid.study_dir / "data.ipynb",
             {"data_path": first.data_path, "dataset": first.dataset,
              "pool_size": first.pool_size, "data_seed": first.data_seed})
    return _execute(grid.analysis, grid.study_dir / "analysis.ipynb",
                    {"study_dir": str(grid.study_dir.resolve())})


def _execute(notebook: str, out: Path, parameters: dict) -> Path:
    import papermill

    partial = out.with_name(f".{out.stem}.{os.getpid()}.partial.ipynb")
    papermill.execute_notebook(notebook, str(partial), kernel_name="python3",
                               parameters=parameters, progress_bar=False, cwd=os.getcwd())
    _hide_parameters(partial)
    os.replace(partial, out)
    print(f"{out} written")
    return out


def _hide_parameters(path: Path) -> None:
    """Tag the parameter cells ``remove-cell``: the book shows findings, not machine paths."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def _dispatch(args) -> int:
    if args.command == "train":
        from msl import cell, config

        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(CellConfig)}
        record = cell.run(config.from_dict(values), progress=not args.quiet)
        summary = {k: record[k] for k in ("cell_id", "status", "n_params", "n_train", "steps",
                                          "flops")}
        print(json.dumps({**summary, "metrics": record["metrics"]}, indent=1))
        return 0 if record["status"] == "ok" else 1
    if args.command in ("sweep", "study"):
        from msl import sweep

        outcomes = sweep.run(args.grid, workers=args.workers, timeout=args.timeout,
                             dry_run=args.dry_run)
        failed = [o.cell_id for o in outcomes if not o.ok]
        if failed:
            print(f"msl: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        if args.command == "study" and not args.dry_run:
            analyse(args.grid)
        return 0
    if args.command == "analyse":
        analyse(args.grid)
        return 0
    if args.command == "data":
        from msl import data
        from msl.cell import data_dir

        if args.out:
            path = data.generate(args.out, args.n, seed=args.seed, workers=args.workers,
                                 kind=args.kind)
        else:
            path = data.embedded(args.n, seed=args.seed, workers=args.workers, cache_dir=data_dir(),
                                 kind=args.kind)
        print(path)
        return 0
    raise AssertionError(args.command)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"msl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("msl: interrupted; finished cells are kept, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
