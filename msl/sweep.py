"""Execute a grid: one papermill run of the train notebook per cell, in a local process pool or
as a Slurm job array (:mod:`msl.slurm`).

Before any cell runs, every key of the grid is checked against the parameters that the notebook
declares (``papermill.inspect_notebook``), every value against :class:`msl.config.CellConfig`,
and every D against the size of its dataset (embedded datasets are generated first, once).

Resume: a cell whose record exists with status ok or diverged is skipped, so a sweep interrupted
at any moment (Ctrl-C, ``kill -9``) and started again re-runs only what did not finish. Records
are written atomically by the cell itself (:mod:`msl.results`); executed notebooks are written to
a temporary name and renamed, so ``runs/<cell_id>.ipynb`` is never a half-written file.

Claims: a cell is claimed (:mod:`msl.claims`) just before it runs and released when its run
ends, so two sweeps of one grid at once (two terminals, or a local pool and a Slurm submission)
never train one cell twice; a sweep leaves out the cells that another live sweep holds.

Executors, one per module behind one small interface (``where()``, ``prepare(grid, todo)``,
``run(grid, todo, timeout, progress) -> [Outcome]``): :class:`LocalPool` here, the standard
library's ProcessPoolExecutor (a concurrency cap, no bookkeeping folders), each worker starting
the notebook's kernel with ``OMP_NUM_THREADS`` set so that workers do not oversubscribe the
cores; and :class:`msl.slurm.SlurmArray`.

Paths: the default notebooks are the ones beside the installed ``msl`` package
(``<repo>/notebooks``); a notebook or ``data_path`` named in a grid is looked up relative to the
grid file, then to the repository; so a sweep works from any directory, and a Slurm task
wherever the cluster starts it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import msl
from msl import claims, data, results
from msl.cell import check_pool, data_dir, dataset_path
from msl.grid import SCAN_KEYS, Grid, load

KERNEL = "python3"
REPO = Path(msl.__file__).resolve().parents[1]
EXECUTORS = ("local", "slurm")


@dataclass
class Outcome:
    cell_id: str
    ok: bool
    seconds: float
    error: str = ""
    skipped: str = ""   # why the cell was not run here (finished, or claimed by another sweep)


def resolve(name: str | os.PathLike, grid: Grid | None = None, kind: str = "notebook") -> Path:
    """A path named in a grid (or a default one): absolute as given, else the first that exists
    of <grid folder>/name and <repo>/name."""
    path = Path(name).expanduser()
    if path.is_absolute():
        if not path.exists():
            raise FileNotFoundError(f"{kind} {path} does not exist")
        return path
    bases = ([grid.study_dir.resolve()] if grid is not None else []) + [REPO]
    for base in bases:
        if (base / path).exists():
            return (base / path).resolve()
    raise FileNotFoundError(f"{kind} {name} does not exist (looked in "
                            f"{', '.join(str(b) for b in bases)})")


def notebook_path(grid: Grid) -> Path:
    return resolve(grid.notebook, grid)


def notebook_parameters(notebook: str | Path) -> set[str]:
    """Names declared in the notebook's ``parameters`` cell."""
    import papermill

    path = Path(notebook)
    if not path.exists():
        raise FileNotFoundError(f"notebook {path} does not exist")
    return set(papermill.inspect_notebook(str(path)))


def _located(grid: Grid, cfg):
    """``cfg`` with a relative ``data_path`` found beside the grid or in the repository (its cell
    id, computed from the grid's text, is kept)."""
    if cfg.data_path and not Path(cfg.data_path).expanduser().is_absolute():
        try:
            return dataclasses.replace(cfg, data_path=str(resolve(cfg.data_path, grid, "data_path")))
        except FileNotFoundError:
            return cfg  # as given (relative to the working directory); dataset_path names it
    return cfg


def parameters(grid: Grid, cfg) -> dict:
    """The notebook parameters of one cell."""
    return _located(grid, cfg).asdict()


def check(grid: Grid, progress: bool = True) -> list:
    """Validate the whole grid against the notebook and the data; return the cells."""
    notebook = notebook_path(grid)
    declared = notebook_parameters(notebook)
    used = set(grid.fixed) | {k for s in grid.scans.values() for k in s} - SCAN_KEYS
    undeclared = sorted(used - declared)
    if undeclared:
        raise ValueError(f"grid key(s) {undeclared} are not parameters of {grid.notebook}; "
                         f"declared: {sorted(declared)}")
    cells = grid.cells()
    pools: dict[str, int] = {}
    for cfg, _ in cells:
        path = dataset_path(_located(grid, cfg), progress)
        if str(path) not in pools:
            pools[str(path)] = len(data.open_pool(path))  # the size only: nothing is read
        check_pool(cfg, pools[str(path)])
    return cells


def pending(grid: Grid, cells: list) -> list:
    """Cells without a finished record."""
    return [(cfg, scans) for cfg, scans in cells if not results.finished(grid.record_dir, cfg.cell_id)]


def held(grid: Grid, todo: list) -> set[str]:
    """Cell ids of ``todo`` that a live claim of another sweep holds."""
    found = claims.all_claims(claims.folder(grid.study_dir))
    found = {k: v for k, v in found.items() if k in {cfg.cell_id for cfg, _ in todo}}
    cache = _job_state_cache(found.values())
    return {cell_id for cell_id, info in found.items() if not claims.stale(info, cache)}


def _job_state_cache(infos):
    """One ``squeue`` for every job id among the claims; returns a job_states function."""
    ids = {i["job_id"] for i in infos if i.get("job_id")}
    if not ids:
        return lambda _ids: {}
    from msl.slurm import job_states

    states = job_states(ids)
    return lambda _ids: states


class LocalPool:
    """The local executor: a process pool of ``workers`` cells at once."""

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers

    def where(self) -> str:
        return f"on {self.workers} worker(s)"

    def prepare(self, grid: Grid, todo: list) -> None:
        """A cell's ``nproc_per_node`` above this machine's devices stops the sweep here, before
        any cell runs (msl.distributed.check)."""
        from msl.distributed import check
        from msl.train import resolve_device

        for cfg, _ in todo:
            if cfg.nproc_per_node > 1:
                check(cfg, resolve_device(cfg.device))

    def run(self, grid: Grid, todo: list, timeout: float | None, progress: bool) -> list[Outcome]:
        grid.run_dir.mkdir(parents=True, exist_ok=True)
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        notebook = str(notebook_path(grid))
        claims_dir = str(claims.folder(grid.study_dir.resolve()))
        outcomes = []
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(execute, notebook, parameters(grid, cfg),
                                   str(grid.run_dir.resolve()), threads, timeout, claims_dir)
                       for cfg, _ in longest_first(todo)]
            bar = tqdm(total=len(futures), desc=f"sweep {grid.study}", unit="cell",
                       disable=not progress)
            try:
                for future in as_completed(futures):
                    report(bar, outcomes, future.result())
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                raise
            finally:
                bar.close()
        return outcomes


def longest_first(todo: list) -> list:
    """``todo`` with the cells expected to take longest first, so that no long cell starts last
    while the other workers idle (longest-processing-time scheduling; the order changes no
    result). Expected length, in order: step cap (or epochs), patience, rung, D: the budget
    checks (twice the cap and patience) first, the short learning-rate scans last."""
    def length(item):
        cfg = item[0]
        return (cfg.max_steps or cfg.epochs, cfg.patience, cfg.size, cfg.n_train)
    return sorted(todo, key=length, reverse=True)


def report(bar, outcomes: list, outcome: Outcome) -> None:
    """Add a finished cell's ``outcome`` to ``outcomes`` and the progress bar (both executors);
    a failure is printed with its error."""
    outcomes.append(outcome)
    bar.update()
    bar.set_postfix(failed=sum(not o.ok for o in outcomes))
    if not outcome.ok:
        tqdm.write(f"cell {outcome.cell_id} failed: {outcome.error}")


def executor(name: str, workers: int | None = None, slurm: dict | None = None, grid=None,
             wait: bool = False):
    """The executor called ``name`` (local or slurm), its options checked."""
    if name not in EXECUTORS:
        raise ValueError(f"executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "local":
        given = sorted(k for k, v in (slurm or {}).items() if v not in (None, [], {}))
        if given:
            raise ValueError(f"Slurm option(s) {given} need --executor slurm")
        return LocalPool(1 if workers is None else workers)
    from msl import slurm as slurm_mod

    if workers is not None:
        raise ValueError(f"--workers {workers} applies to --executor local; with Slurm, "
                         f"--max-parallel caps the cells that run at once")
    return slurm_mod.SlurmArray(slurm_mod.options(grid.slurm if grid else None, slurm), wait=wait)


def run(grid_path: str | Path, workers: int | None = 1, timeout: float | None = None,
        progress: bool = True, dry_run: bool = False, executor_name: str = "local",
        slurm: dict | None = None, wait: bool = False) -> list[Outcome]:
    """Run every unfinished cell of the grid that no other sweep holds; returns one Outcome per
    cell this sweep ran or found claimed (``skipped``). With ``executor_name="slurm"`` the cells
    are submitted; without ``wait`` the call returns once they are (no Outcomes then)."""
    if timeout is not None and timeout < 1:
        raise ValueError(f"timeout must be at least 1 second per notebook cell, got {timeout}")
    if executor_name not in EXECUTORS:  # before reading anything
        raise ValueError(f"executor {executor_name!r} is not one of {', '.join(EXECUTORS)}")
    if executor_name == "local" and workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    grid = load(grid_path)
    engine = executor(executor_name, workers, slurm, grid, wait)
    cells = check(grid, progress)
    unfinished = pending(grid, cells)
    busy = held(grid, unfinished)
    todo = [(cfg, scans) for cfg, scans in unfinished if cfg.cell_id not in busy]
    if todo:
        engine.prepare(grid, todo)  # sbatch --test-only: bad Slurm options stop here
    if progress:
        claimed = f"{len(busy)} claimed by another sweep, " if busy else ""
        print(f"{grid.study}: {len(cells)} cells, {len(cells) - len(unfinished)} already done, "
              f"{claimed}{len(todo)} to run {engine.where()}", flush=True)
    if dry_run or not todo:
        return []
    outcomes = engine.run(grid, todo, timeout, progress)
    ran = [o for o in outcomes if not o.skipped]
    skipped = [o for o in outcomes if o.skipped]
    if progress and outcomes:
        reasons = f" ({', '.join(sorted({o.skipped for o in skipped}))})" if skipped else ""
        print(f"{grid.study}: {len(ran)} cell(s) run here, {sum(not o.ok for o in ran)} failed; "
              f"{len(skipped)} not run here{reasons}", flush=True)
    return outcomes


def execute(notebook: str, parameters: dict, run_dir: str, threads: int,
            timeout: float | None = None, claims_dir: str | None = None, token: str | None = None,
            job_id: str | None = None) -> Outcome:
    """Run the notebook for one cell (in a pool worker or a Slurm task); never raises for a
    failed cell. With ``claims_dir`` the cell is claimed first (skipped if another sweep holds
    it or its record is finished) and released when the run ends."""
    import papermill

    cell_id = parameters["cell_id"]
    claim = None
    if claims_dir:
        record_dir = parameters.get("record_dir") or ""
        if record_dir and results.finished(record_dir, cell_id):
            return Outcome(cell_id, True, 0.0, skipped="finished meanwhile")
        claim = claims.acquire(claims_dir, cell_id, token=token, job_id=job_id)
        if claim is None:
            return Outcome(cell_id, True, 0.0, skipped="claimed by another sweep")
        if record_dir and results.finished(record_dir, cell_id):  # finished between the checks
            claims.release(claim)
            return Outcome(cell_id, True, 0.0, skipped="finished meanwhile")
        claims.clear_failed(claims_dir, cell_id)
    parameters = {**parameters, "threads": parameters.get("threads") or threads}
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                      MSL_DATA_DIR=str(data_dir()))
    final = Path(run_dir) / f"{cell_id}.ipynb"
    final.parent.mkdir(parents=True, exist_ok=True)
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
    # reached only when the run ended by itself: a preempted Slurm task leaves here through
    # SystemExit (submitit requeues it) and keeps its claim, which names its job
    if claims_dir:
        if error:
            claims.mark_failed(claims_dir, cell_id, error, job_id)
        claims.release(claim)
    return Outcome(cell_id, not error, time.perf_counter() - start, error)


@dataclass
class CellState:
    cell_id: str
    state: str      # done, running, pending, failed, not started
    detail: str = ""


STATES = ("done", "running", "pending", "failed", "not started")


def status(grid_path: str | Path) -> tuple[Grid, list[CellState]]:
    """Every cell of the grid with its state, from the records, the claims and Slurm (squeue)."""
    grid = load(grid_path)
    claims_dir = claims.folder(grid.study_dir)
    held_by = claims.all_claims(claims_dir)
    from msl.slurm import job_states, log_path

    job_ids = {i["job_id"] for i in held_by.values() if i.get("job_id")}
    states = job_states(job_ids) if job_ids else {}
    here = socket.gethostname()
    out = []
    for cfg, _ in grid.cells():
        cell_id = cfg.cell_id
        record = _record(grid, cell_id)
        if record and record["status"] in results.FINISHED:
            out.append(CellState(cell_id, "done", "" if record["status"] == "ok" else record["status"]))
            continue
        info = held_by.get(cell_id)
        if info and info.get("job_id"):
            job = info["job_id"]
            state = None if states is None else states.get(job)
            if states is None:
                out.append(CellState(cell_id, "running", f"Slurm job {job} (squeue cannot be asked)"))
                continue
            if claims.is_live(state):
                kind = "pending" if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD",
                                              "REQUEUE_FED", "SUSPENDED") else "running"
                out.append(CellState(cell_id, kind, f"Slurm job {job} {state}"))
                continue
            out.append(CellState(cell_id, "failed",
                                 f"Slurm job {job} ended ({state or 'gone from squeue'}) without a "
                                 f"record; log: {log_path(grid.run_dir, job)}"))
            continue
        if info:
            who = f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
            if info.get("host") != here or not claims.stale(info):
                out.append(CellState(cell_id, "running", who))
            else:
                out.append(CellState(cell_id, "failed", f"{who}: process gone without a record"))
            continue
        failures = []
        if record and record["status"] == "failed":
            failures.append((_mtime(grid.record_dir / f"{cell_id}.json"), record.get("error") or ""))
        marker = claims.read_failed(claims_dir, cell_id)
        if marker:
            failures.append((_mtime(claims_dir / f"{cell_id}{claims.FAILED}"), marker["error"]))
        if failures:
            lines = str(max(failures)[1]).strip().splitlines()
            out.append(CellState(cell_id, "failed", lines[-1] if lines else ""))
        else:
            out.append(CellState(cell_id, "not started"))
    return grid, out


def _record(grid: Grid, cell_id: str) -> dict | None:
    path = grid.record_dir / f"{cell_id}.json"
    try:
        return results.read(path) if path.exists() else None
    except ValueError:
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def format_status(grid: Grid, cells: list[CellState]) -> str:
    width = max((len(c.cell_id) for c in cells), default=0)
    lines = [f"{c.cell_id:<{width}}  {c.state:<11}  {c.detail}".rstrip() for c in cells]
    counts = {s: sum(c.state == s for c in cells) for s in STATES}
    lines.append(f"{grid.study}: {len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
