"""Command line: ``msl train``, ``msl sweep``, ``msl status``, ``msl analyse``, ``msl study``, ``msl data``.

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

DATA_NOTEBOOK = "notebooks/data.ipynb"   # beside the installed msl package (msl.sweep.resolve)


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
        p.add_argument("--executor", default="local",
                       help="local (a process pool, the default) or slurm (one job array)")
        p.add_argument("--workers", type=int, default=None, help="cells run at once (local; default 1)")
        p.add_argument("--timeout", type=int, default=None, help="seconds per notebook cell")
        p.add_argument("--dry-run", action="store_true", help="validate and list, run nothing")
        s = p.add_argument_group("Slurm (--executor slurm; these override the grid's slurm: block)")
        s.add_argument("--partition", default=None, help="sbatch --partition")
        s.add_argument("--time", type=int, default=None, help="minutes per cell (default 60)")
        s.add_argument("--mem", default=None, help="memory per cell, e.g. 16G")
        s.add_argument("--cpus-per-cell", type=int, default=None, help="CPUs (and threads) per cell")
        s.add_argument("--gpus-per-cell", type=int, default=None, help="GPUs per cell")
        s.add_argument("--max-parallel", type=int, default=None, help="array throttle: tasks at once")
        s.add_argument("--sbatch-option", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option (repeatable), e.g. qos=high")
        if name == "sweep":
            s.add_argument("--wait", action="store_true",
                           help="wait for the tasks and report them (msl study always waits)")
    p = sub.add_parser("status", help="every cell of a grid: done, running, pending, failed or "
                       "not started")
    p.add_argument("grid", help="book/<study>/grid.yaml or its folder")
    p = sub.add_parser("analyse", help="execute the data and analysis notebooks of a study (no training)")
    p.add_argument("grid", help="book/<study>/grid.yaml or its folder")
    p = sub.add_parser("data", help="generate an embedded dataset")
    p.add_argument("--n", type=int, required=True, help="structures to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--kind", default="emt", help="emt (4-32 atoms), emt-vdos (4-8 atoms with "
                   "vibrational spectra) or chgnet (4-16-atom crystals of 59 elements labelled by "
                   "CHGNet; needs `pip install chgnet==0.4.2`)")
    p.add_argument("--out", default=None, help="output .aselmdb (default: the cache folder)")
    return parser


def analyse(grid_path: str) -> Path:
    """Execute the data-overview notebook and the study's analysis notebook (grid key
    ``analysis``) into ``<study>/data.ipynb`` and ``<study>/analysis.ipynb`` (no training);
    returns the analysis notebook's path."""
    from msl.grid import load
    from msl.sweep import parameters, resolve

    grid = load(grid_path)
    first = parameters(grid, grid.cells()[0][0])
    _execute(resolve(DATA_NOTEBOOK), grid.study_dir / "data.ipynb",
             {"data_path": first["data_path"], "dataset": first["dataset"],
              "pool_size": first["pool_size"], "data_seed": first["data_seed"]})
    chapter = {"study_dir": str(grid.study_dir.resolve())}
    if grid.compare is not None:  # the study the chapter compares with (grid key `compare`)
        chapter["compare_dir"] = str(grid.compare)
    return _execute(resolve(grid.analysis, grid), grid.study_dir / "analysis.ipynb", chapter)


def _execute(notebook: str | Path, out: Path, parameters: dict) -> Path:
    import papermill

    partial = out.with_name(f".{out.stem}.{os.getpid()}.partial.ipynb")
    papermill.execute_notebook(str(notebook), str(partial), kernel_name="python3",
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
        if record.get("rank"):  # one of several processes started by torchrun: rank 0 reports
            return 0 if record["status"] == "ok" else 1
        summary = {k: record[k] for k in ("cell_id", "status", "n_params", "n_train", "steps",
                                          "flops")}
        print(json.dumps({**summary, "metrics": record["metrics"]}, indent=1))
        return 0 if record["status"] == "ok" else 1
    if args.command in ("sweep", "study"):
        from msl import sweep

        slurm = {"partition": args.partition, "time": args.time, "mem": args.mem,
                 "cpus_per_cell": args.cpus_per_cell, "gpus_per_cell": args.gpus_per_cell,
                 "max_parallel": args.max_parallel, "sbatch": args.sbatch_option}
        wait = args.command == "study" or getattr(args, "wait", False)
        outcomes = sweep.run(args.grid, workers=args.workers, timeout=args.timeout,
                             dry_run=args.dry_run, executor_name=args.executor, slurm=slurm,
                             wait=wait)
        failed = [o.cell_id for o in outcomes if not o.ok]
        if failed:
            print(f"msl: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        if args.command == "study" and not args.dry_run:
            grid, cells = sweep.status(args.grid)
            unfinished = [c.cell_id for c in cells if c.state != "done"]
            if unfinished:  # held by another sweep that is still running them
                print(f"msl: {len(unfinished)} cell(s) not finished yet (another sweep holds "
                      f"them); run the analysis once they are: msl analyse {args.grid}",
                      file=sys.stderr)
                return 1
            analyse(args.grid)
        return 0
    if args.command == "status":
        from msl import sweep

        grid, cells = sweep.status(args.grid)
        print(sweep.format_status(grid, cells))
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
    except (ValueError, FileNotFoundError, ImportError) as err:  # ImportError: e.g. chgnet,
        print(f"msl: error: {err}", file=sys.stderr)               # an optional package
        return 2
    except KeyboardInterrupt:
        print("msl: interrupted; finished cells are kept, run the same command to resume",
              file=sys.stderr)
        return 130
    except RuntimeError as err:
        from msl.slurm import SubmitError

        if not isinstance(err, SubmitError):
            raise
        print(f"msl: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
