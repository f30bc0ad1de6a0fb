"""The Slurm executor: a sweep's unfinished cells as one job array, through submitit.

``msl sweep GRID --executor slurm`` claims the cells (:mod:`msl.claims`), checks the options with
``sbatch --test-only``, then submits one array task per cell (``SlurmExecutor.map_array``). Each
task runs the same papermill cell as the local pool (:func:`msl.sweep.execute`) and writes the
same record. Logs land beside the run notebooks: ``<study>/runs/slurm/<job>_<task>_0_log.out``
and ``..._log.err`` (with submitit's pickles).

Options (the grid's ``slurm:`` block, overridden key by key on the command line)::

    slurm:
      partition: gpu          # --partition
      time: 120               # --time, minutes per cell (default 60)
      mem: 16G                # --mem, per cell (sbatch syntax: 16G, 4000M, or MB as a number)
      cpus_per_cell: 4        # --cpus-per-cell (default 1; also the cell's CPU threads)
      gpus_per_cell: 1        # --gpus-per-cell (default 0)
      max_parallel: 8         # --max-parallel: array throttle (sbatch --array=0-N%8)
      sbatch:                 # --sbatch-option KEY=VALUE (repeatable): any other sbatch option
        qos: high
        account: matsci

Cells with ``nproc_per_node`` = P > 1 (:mod:`msl.distributed`): the array asks for P tasks per
cell on one node (``--ntasks-per-node=P``, so every cell of one submission must have the same P)
and ``--cpus-per-cell`` CPUs for each; with ``--gpus-per-cell`` it must give each task a GPU
(``gpus_per_cell >= P``). Task 0 runs the train notebook and writes the record, as for a
one-process cell; the other tasks train with it (:meth:`CellTask.__call__`) and write nothing.
The ranks find each other from Slurm's variables (``SLURM_PROCID``...). Not yet run on a real
cluster (CI's Slurm tests run one-process cells); the same start-up is tested with two processes
given Slurm's variables. Where task 0 skips its cell (another sweep holds it), the other tasks
wait for it until the rendezvous times out (:data:`msl.distributed.TIMEOUT`).

Preemption and time limits: Slurm sends USR2 (``--signal=USR2@90``) before it stops a task;
the task is a :class:`submitit.helpers.Checkpointable`, so submitit requeues it
(``scontrol requeue``) and it starts again from the cell's training state (saved at every
validation, :mod:`msl.train`), ending with the numbers of an uninterrupted run. A requeued task
waits ``cred_expire`` + 1 s before Slurm starts it again (120 s by default). A task killed
outright (``scancel``, node failure, out of memory) leaves its claim behind; ``msl status`` shows
the cell as failed, and the next ``msl sweep`` takes the claim over and submits it again.

Job states come from ``squeue --states=all`` (it lists finished jobs for ``MinJobAge``, 300 s by
default), not from ``sacct``, which needs Slurm's accounting database: on a cluster without one
(and on CI) submitit's own state polling is blind, so neither claims nor ``--wait`` rely on it. A
job that squeue no longer knows has ended.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import submitit

# keys of a grid's slurm: block, with the command line option that overrides each
KEYS = {"partition": "--partition", "time": "--time", "mem": "--mem",
        "cpus_per_cell": "--cpus-per-cell", "gpus_per_cell": "--gpus-per-cell",
        "max_parallel": "--max-parallel", "sbatch": "--sbatch-option"}
# sbatch options msl sets itself: overriding them would break logs, arrays or requeueing
RESERVED = {"array", "output", "error", "open-mode", "signal", "wrap", "parsable", "test-only"}
DEFAULT_TIME = 60
POLL_SECONDS = 5.0


@dataclass
class Options:
    partition: str | None = None
    time: int = DEFAULT_TIME
    mem: str | None = None
    cpus_per_cell: int = 1
    gpus_per_cell: int = 0
    max_parallel: int | None = None
    sbatch: dict = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in asdict(self).items() if v not in (None, {}, 0)
                 and k != "sbatch"]
        parts += [f"--{k}" + ("" if v is True else f"={v}") for k, v in self.sbatch.items()]
        return ", ".join(parts)


def check_block(block, where: str) -> dict:
    """A ``slurm:`` block (grid file) or the command line's Slurm options, validated; returns the
    normalised mapping. Raises ValueError naming ``where``, the key and the value."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise ValueError(f"{where}: must be a mapping of {sorted(KEYS)}, got {block!r}")
    unknown = sorted(set(block) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(KEYS)}")
    out = {}
    for key, value in block.items():
        if value is None:
            continue
        if key == "partition":
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: partition must be a name, got {value!r}")
            out[key] = value.strip()
        elif key == "mem":
            text = str(value).strip()
            if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", text, re.I):
                raise ValueError(f"{where}: mem must be like 16G, 4000M or a number of MB, "
                                 f"got {value!r}")
            out[key] = text
        elif key == "sbatch":
            out[key] = _check_sbatch(value, where)
        else:
            low = 0 if key == "gpus_per_cell" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{where}: {key} must be a whole number >= {low}, got {value!r}")
            out[key] = value
    return out


def _check_sbatch(value, where: str) -> dict:
    if isinstance(value, (list, tuple)):  # the command line's KEY=VALUE strings
        pairs = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            pairs[key] = val if sep else True
        value = pairs
    if not isinstance(value, dict):
        raise ValueError(f"{where}: sbatch must map option names to values, got {value!r}")
    out = {}
    for key, val in value.items():
        name = str(key).strip().lstrip("-").replace("_", "-")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise ValueError(f"{where}: sbatch option {key!r} is not an option name")
        if name in RESERVED:
            raise ValueError(f"{where}: sbatch option {name!r} is set by msl and cannot be given")
        if val is None or isinstance(val, (dict, list)):
            raise ValueError(f"{where}: sbatch option {name!r} needs a value, got {val!r}")
        out[name] = val
    return out


def options(grid_block: dict | None, overrides: dict | None) -> Options:
    """The grid's block with the command line's values on top (``sbatch`` merged by key)."""
    merged = dict(check_block(grid_block, "grid slurm"))
    cli = check_block({k: v for k, v in (overrides or {}).items() if v not in (None, [], {})},
                      "Slurm options")
    sbatch = {**merged.pop("sbatch", {}), **cli.pop("sbatch", {})}
    merged.update(cli)
    return Options(**merged, sbatch=sbatch)


def require_sbatch() -> str:
    """Path of sbatch; ValueError if Slurm's commands are not on the PATH."""
    found = shutil.which("sbatch")
    if not found:
        raise ValueError("--executor slurm needs Slurm's sbatch, which is not on the PATH "
                         "(run on a Slurm login node, or use --executor local)")
    for tool in ("srun", "squeue", "scontrol"):
        if not shutil.which(tool):
            raise ValueError(f"--executor slurm needs Slurm's {tool}, which is not on the PATH")
    return found


def job_states(job_ids) -> dict[str, str] | None:
    """``{job id: state}`` from ``squeue --states=all`` (array tasks as ``<job>_<task>``); a job
    Slurm no longer knows is absent. None where Slurm cannot be asked (no squeue, no
    controller)."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    if not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "--states=all", "--array", "-o", "%i|%T",
                              "-j", ",".join(ids)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state
    return states


def log_path(run_dir: str | Path, job_id: str, stream: str = "err") -> Path:
    """A task's submitit log (``stream`` out or err)."""
    return Path(run_dir) / "slurm" / f"{job_id}_0_log.{stream}"


class CellTask(submitit.helpers.Checkpointable):
    """One grid cell as a Slurm task: claims the cell (its claim already carries this
    submission's token), runs the train notebook (:func:`msl.sweep.execute`), writes the record.
    On preemption or a time limit submitit calls :meth:`checkpoint` and requeues the task."""

    def __init__(self, notebook: str, run_dir: str, claims_dir: str, token: str, threads: int,
                 timeout: float | None, data_dir: str):
        self.notebook, self.run_dir, self.claims_dir = notebook, run_dir, claims_dir
        self.token, self.threads, self.timeout, self.data_dir = token, threads, timeout, data_dir

    def __call__(self, parameters: dict):
        from msl import sweep

        os.environ["MSL_DATA_DIR"] = self.data_dir
        env = submitit.JobEnvironment()
        if env.global_rank > 0:  # a further process of a cell with nproc_per_node > 1
            return _help_train(parameters, self.threads)
        job_id = str(env.job_id)
        return sweep.execute(self.notebook, parameters, self.run_dir, self.threads, self.timeout,
                             claims_dir=self.claims_dir, token=self.token, job_id=job_id)

    def checkpoint(self, parameters: dict) -> submitit.helpers.DelayedSubmission:
        """The same task with the same cell: the training state on disk
        (``checkpoints/<cell_id>.state.pt``, saved at every validation) carries the progress."""
        return submitit.helpers.DelayedSubmission(self, parameters)


def _help_train(parameters: dict, threads: int) -> None:
    """Slurm task 1, 2... of a multi-process cell: train beside task 0 (which runs the notebook,
    claims the cell and writes its record), without a notebook, a claim or a record. Nothing to do
    where the record is already finished (task 0 then skips the cell too)."""
    from msl import cell, config, results

    cfg = config.from_dict({**parameters, "threads": parameters.get("threads") or threads})
    if cfg.record_dir and results.finished(cfg.record_dir, cfg.with_id().cell_id):
        return None
    os.environ.update(OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads))
    cell.run(cfg, progress=False)
    return None


def processes(todo: list, opts: Options) -> int:
    """Slurm tasks per array task: the cells' ``nproc_per_node``, one value for the whole array
    (sbatch takes one ``--ntasks-per-node``); ValueError where the cells disagree or where
    ``gpus_per_cell`` cannot give each process a GPU."""
    counts = sorted({cfg.nproc_per_node for cfg, _ in todo}) or [1]
    if len(counts) > 1:
        raise ValueError(f"the cells to submit have nproc_per_node {counts}; one Slurm array takes "
                         "one --ntasks-per-node, so submit them from grids with one value each")
    n = counts[0]
    if n > 1 and 0 < opts.gpus_per_cell < n:
        raise ValueError(f"nproc_per_node={n} needs a GPU per process, but gpus_per_cell is "
                         f"{opts.gpus_per_cell}")
    return n


class SubmitError(RuntimeError):
    """sbatch accepted the options but the submission failed."""


class SlurmArray:
    """The executor: ``run(grid, todo, timeout, progress)`` submits, and with ``wait`` returns one
    Outcome per cell as the local pool does."""

    def __init__(self, opts: Options, wait: bool = False, poll: float = POLL_SECONDS):
        require_sbatch()
        self.opts, self.wait, self.poll = opts, wait, poll

    def where(self) -> str:
        return f"as one Slurm job array ({self.opts.describe()})"

    def _executor(self, grid, todo: list):
        folder = grid.run_dir.resolve() / "slurm"
        try:
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3,
                                        python=shlex.quote(sys.executable))
        except RuntimeError as err:
            raise ValueError(f"--executor slurm: {err}") from err
        o = self.opts
        params = {"job_name": f"msl-{grid.study}", "time": o.time, "cpus_per_task": o.cpus_per_cell}
        if o.partition:
            params["partition"] = o.partition
        if o.mem:
            params["mem"] = o.mem
        if o.gpus_per_cell:
            params["gpus_per_node"] = o.gpus_per_cell
        n = processes(todo, o)
        if n > 1:
            params["ntasks_per_node"] = n
        if o.max_parallel:
            params["array_parallelism"] = o.max_parallel
        if o.sbatch:
            params["additional_parameters"] = dict(o.sbatch)
        ex.update_parameters(**params)
        return ex

    def prepare(self, grid, todo: list) -> None:
        """``sbatch --test-only`` on the very script that would be submitted: a partition, memory,
        GPU or other option that sbatch rejects stops here, before anything is written."""
        from submitit.slurm.slurm import _make_sbatch_string

        ex = self._executor(grid, todo)
        text = _make_sbatch_string(command="true", folder=ex.folder,
                                   map_count=max(2, len(todo)), **ex.parameters)
        with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="msl-test-only-") as fh:
            fh.write(text)
            fh.flush()
            try:
                out = subprocess.run(["sbatch", "--test-only", fh.name], capture_output=True,
                                     text=True, timeout=120)
            except subprocess.TimeoutExpired as err:
                raise ValueError("sbatch --test-only did not answer within 120 s") from err
        if out.returncode != 0:
            said = [ln.strip() for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
            raise ValueError(f"sbatch rejects the Slurm options ({self.opts.describe()}): "
                             f"{'; '.join(said[:2]) or f'exit code {out.returncode}'}")

    def run(self, grid, todo: list, timeout: float | None, progress: bool) -> list:
        from msl import claims, sweep
        from msl.cell import data_dir

        claims_dir = claims.folder(grid.study_dir.resolve())
        token = claims.new_token()
        ids = [cfg.cell_id for cfg, _ in todo]
        got = set(claims.acquire_many(claims_dir, ids, token))
        cells = [cfg for cfg, _ in todo if cfg.cell_id in got]
        skipped = [sweep.Outcome(i, True, 0.0, skipped="claimed by another sweep")
                   for i in ids if i not in got]
        if not cells:
            return skipped
        try:
            ex = self._executor(grid, todo)
            task = CellTask(str(sweep.notebook_path(grid)), str(grid.run_dir.resolve()),
                                        str(claims_dir), token, self.opts.cpus_per_cell, timeout,
                                        str(data_dir().resolve()))
            grid.run_dir.mkdir(parents=True, exist_ok=True)
            jobs = ex.map_array(task, [sweep.parameters(grid, cfg) for cfg in cells])
        except Exception as err:
            claims.release_token(claims_dir, [c.cell_id for c in cells], token)
            raise SubmitError(f"Slurm submission failed: {type(err).__name__}: {err}") from err
        for cfg, job in zip(cells, jobs):
            claims.set_job(claims_dir, cfg.cell_id, token, str(job.job_id))
        first = str(jobs[0].job_id).split("_")[0]
        if progress:
            print(f"{grid.study}: submitted {len(jobs)} cell(s) as Slurm job {first}; logs in "
                  f"{ex.folder}; watch with: msl status {grid.study_dir}", flush=True)
        if not self.wait:
            return skipped
        return skipped + self._wait(grid, cells, jobs, progress)

    def _wait(self, grid, cells, jobs, progress: bool) -> list:
        """Until every task has a result or Slurm says it ended; Ctrl-C stops waiting only."""
        from submitit.core.utils import pickle_load
        from tqdm.auto import tqdm

        from msl import results, sweep

        left = {str(job.job_id): (cfg, job) for cfg, job in zip(cells, jobs)}
        outcomes = []
        bar = tqdm(total=len(left), desc=f"slurm {grid.study}", unit="cell", disable=not progress)
        start = time.monotonic()
        try:
            while left:
                states = job_states(left)
                for job_id, (cfg, job) in list(left.items()):
                    outcome = None
                    if job.paths.result_pickle.exists():
                        outcome = _read_result(pickle_load, job, cfg.cell_id, start)
                    elif states is not None and not _live(states.get(job_id)):
                        time.sleep(0.5)  # a result written just before the job ended
                        if job.paths.result_pickle.exists():
                            outcome = _read_result(pickle_load, job, cfg.cell_id, start)
                        elif results.finished(grid.record_dir, cfg.cell_id):
                            outcome = sweep.Outcome(cfg.cell_id, True, time.monotonic() - start)
                        else:
                            state = states.get(job_id) or "gone from squeue"
                            outcome = sweep.Outcome(
                                cfg.cell_id, False, time.monotonic() - start,
                                f"Slurm job {job_id} ended ({state}) without a result; see "
                                f"{log_path(grid.run_dir, job_id)}")
                    if outcome is not None:
                        del left[job_id]
                        sweep.report(bar, outcomes, outcome)
                if left:
                    time.sleep(self.poll)
        except KeyboardInterrupt:
            print(f"msl: stopped waiting; the Slurm jobs keep running (msl status "
                  f"{grid.study_dir})", file=sys.stderr)
            raise
        finally:
            bar.close()
        return outcomes


def _live(state) -> bool:
    from msl.claims import is_live

    return is_live(state)


def _read_result(pickle_load, job, cell_id: str, start: float):
    from msl import sweep

    try:
        kind, value = pickle_load(job.paths.result_pickle)
    except Exception as err:  # a half-visible file on a slow shared file system
        return sweep.Outcome(cell_id, False, time.monotonic() - start, f"unreadable result: {err}")
    if kind == "success":
        return value
    lines = str(value).strip().splitlines()
    return sweep.Outcome(cell_id, False, time.monotonic() - start,
                         f"task raised: {lines[-1] if lines else value}")
