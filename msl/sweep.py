"""Execute a grid: one papermill run of the train notebook per cell, in a local process pool.

Before any cell runs, every key of the grid is checked against the parameters that the notebook
declares (``papermill.inspect_notebook``), every value against :class:`msl.config.CellConfig`,
and every D against the size of its dataset (embedded datasets are generated first, once).

Resume: a cell whose record exists with status ok or diverged is skipped, so a sweep interrupted
at any moment (Ctrl-C, ``kill -9``) and started again re-runs only what did not finish. Records
are written atomically by the cell itself (:mod:`msl.results`); executed notebooks are written to
a temporary name and renamed, so ``runs/<cell_id>.ipynb`` is never a half-written file.

The pool is the standard library's ProcessPoolExecutor (a concurrency cap, no bookkeeping
folders); each worker starts the notebook's kernel with ``OMP_NUM_THREADS`` set so that workers
do not oversubscribe the cores. On a cluster, :mod:`msl.slurm` submits the same cells.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from msl import data, results
from msl.cell import check_pool, data_dir, dataset_path
from msl.grid import Grid, load

KERNEL = "python3"


@dataclass
class Outcome:
    cell_id: str
    ok: bool
    seconds: float
    error: str = ""


def notebook_parameters(notebook: str | Path) -> set[str]:
    """Names declared in the notebook's ``parameters`` cell."""
    import papermill

    path = Path(notebook)
    if not path.exists():
        raise FileNotFoundError(f"notebook {path} does not exist")
    return set(papermill.inspect_notebook(str(path)))


def check(grid: Grid, progress: bool = True) -> list:
    """Validate the whole grid against the notebook and the data; return the cells."""
    declared = notebook_parameters(grid.notebook)
    used = set(grid.fixed) | {k for s in grid.scans.values() for k in s} - {"axis", "budget_check"}
    undeclared = sorted(used - declared)
    if undeclared:
        raise ValueError(f"grid key(s) {undeclared} are not parameters of {grid.notebook}; "
                         f"declared: {sorted(declared)}")
    cells = grid.cells()
    pools: dict[str, int] = {}
    for cfg, _ in cells:
        path = dataset_path(cfg, progress)
        if str(path) not in pools:
            pools[str(path)] = len(data.read(path))
        check_pool(cfg, pools[str(path)])
    return cells


def pending(grid: Grid, cells: list) -> list:
    """Cells without a finished record."""
    return [(cfg, scans) for cfg, scans in cells if not results.finished(grid.record_dir, cfg.cell_id)]


def run(grid_path: str | Path, workers: int = 1, timeout: float | None = None,
        progress: bool = True, dry_run: bool = False) -> list[Outcome]:
    """Run every unfinished cell of the grid; returns one Outcome per cell executed."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if timeout is not None and timeout < 1:
        raise ValueError(f"timeout must be at least 1 second per notebook cell, got {timeout}")
    grid = load(grid_path)
    cells = check(grid, progress)
    todo = pending(grid, cells)
    if progress:
        print(f"{grid.study}: {len(cells)} cells, {len(cells) - len(todo)} already done, "
              f"{len(todo)} to run on {workers} worker(s)")
    if dry_run or not todo:
        return []
    grid.run_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    outcomes = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(execute, grid.notebook, cfg.asdict(), str(grid.run_dir), threads,
                               timeout) for cfg, _ in todo]
        bar = tqdm(total=len(futures), desc=f"sweep {grid.study}", unit="cell", disable=not progress)
        try:
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                bar.update()
                bar.set_postfix(failed=sum(not o.ok for o in outcomes))
                if not outcome.ok:
                    tqdm.write(f"cell {outcome.cell_id} failed: {outcome.error}")
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise
        finally:
            bar.close()
    return outcomes


def execute(notebook: str, parameters: dict, run_dir: str, threads: int,
            timeout: float | None = None) -> Outcome:
    """Run the notebook for one cell (in a pool worker); never raises for a failed cell."""
    import papermill

    cell_id = parameters["cell_id"]
    parameters = {**parameters, "threads": parameters.get("threads") or threads}
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                      MSL_DATA_DIR=str(data_dir()))
    final = Path(run_dir) / f"{cell_id}.ipynb"
    partial = final.with_name(f".{cell_id}.{os.getpid()}.partial.ipynb")
    start = time.perf_counter()
    error = ""
    # the kernel's own stderr (jupyter's warnings, native library messages) goes to a per-cell
    # log beside the executed notebook instead of through the sweep's progress bar
    with open(final.with_suffix(".log"), "w") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            papermill.execute_notebook(notebook, str(partial), parameters=parameters,
                                       kernel_name=KERNEL, progress_bar=False,
                                       execution_timeout=None if timeout is None
                                       else math.ceil(timeout), cwd=os.getcwd())
        except Exception as err:  # the cell's own failed record says what went wrong
            lines = str(err).strip().splitlines()
            error = f"{type(err).__name__}: {lines[-1] if lines else ''}"
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if partial.exists():
        os.replace(partial, final)
    return Outcome(cell_id, not error, time.perf_counter() - start, error)
