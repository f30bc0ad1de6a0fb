"""Several processes in one cell: DistributedDataParallel on one node.

A cell with ``nproc_per_node`` = P > 1 trains in P processes (ranks): one per GPU with NCCL, or
P on the CPU with gloo (how CI tests it). The ranks start in one of three ways:

* ``msl train`` or :func:`msl.cell.run` in a plain process: :func:`launch` starts P workers with
  torch's own launcher, ``torch.distributed.launcher.elastic_launch`` (what ``torchrun
  --standalone`` runs: a rendezvous on a free port of 127.0.0.1, then ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each worker's environment). Each worker
  runs the same cell; rank 0's record is what the call returns. This is also what a sweep's
  cell does, in the local pool or in a one-task Slurm job.
* under ``torchrun --nproc-per-node P`` (any launcher that sets ``RANK`` and ``WORLD_SIZE``):
  the process already is a rank.
* as P Slurm tasks of one job step (``msl sweep --executor slurm`` asks for
  ``ntasks-per-node`` = P, :mod:`msl.slurm`): rank, size and local rank come from
  ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` and ``SLURM_LOCALID``, and the rendezvous is on
  127.0.0.1 (the tasks share one node) at a port drawn from ``SLURM_JOB_ID``, as submitit's
  ``TorchDistributedEnvironment`` does. That helper is not used: its ``export`` narrows
  ``CUDA_VISIBLE_DEVICES`` to one GPU, which changes what ``device = cuda`` means, and refuses
  where ``MASTER_ADDR`` is set already; reading Slurm's variables here also lets a test start the
  ranks as Slurm would, without Slurm.

Each rank uses ``cuda:LOCAL_RANK`` (or ``cuda:0`` where the launcher shows each process one
GPU). With P ranks launched here, each takes ``threads`` / P CPU threads (the cell's threads, or
its idle cores, shared); a Slurm task has its own CPUs (``--cpus-per-cell`` per task).

Why a P-process run gives the one-process run's numbers, up to float32 round-off:

* **Batches.** The global batch stays ``batch_size``. The one-process loader's own sampler (same
  generator, the same permutation per epoch) draws each global batch and :class:`Shard` gives
  rank r its r-th contiguous part, ``batch_size / P`` structures. torch's DistributedSampler
  would instead deal out the epoch with its own seed, so the P-process run would step on other
  batches than the one-process run.
* **Loss.** Every loss term is a mean over labelled values (structures, atoms or components),
  and the shards of one batch hold different numbers of atoms, so the ranks' own means would
  not average to the batch mean. :func:`weigh` scales each term's weight on rank r by
  ``P n_r / n`` (n_r its labelled values, n the batch's: one small all-reduce per step); the
  ranks' losses then average to the global-batch loss exactly, and DistributedDataParallel's
  gradient average (during the backward) is its gradient. This holds for the force term too:
  the forces are ``-dE/dpos`` with ``create_graph``, a backward to the positions only, and DDP
  hooks the accumulation of the parameters' gradients, which only the final backward reaches.
* **Decisions.** The step's loss, atoms and structures are summed over the ranks
  (:func:`totals`), so the divergence test sees the global loss and FLOPs and throughput count
  every rank. Every rank validates on the whole validation set (ranks hold the same parameters,
  so this costs no wall time where each has its own device, and no rank idles in a collective
  while another validates) and rank 0's numbers are broadcast (:func:`agree`), so the best
  state, the patience and the wsd/plateau phase are decided alike on every rank: a rank that
  stopped alone would leave the others waiting in a collective for ever.

Only the order of summation differs: gradients and per-atom terms are summed over a shard and
then across ranks instead of over the batch. ``tests/test_distributed.py`` measures the
difference of the loss curves and holds it to a relative 1e-4.

Rank 0 alone writes: the record, the checkpoint, the training state and the progress bar. Every
rank reads the training state to resume, so a cut-off run continues on any number of processes.
The dataset and graph caches are shared; each is written atomically by whichever rank builds it
first. A rank that fails stops the others: the launcher raises a RuntimeError naming the rank
that failed first and its error; rank 0's ``failed`` record holds its own error, which is the
closed connection where another rank failed first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import os
import signal
import tempfile
import threading
import uuid
import warnings

import torch
import torch.distributed as dist

from msl import targets

TIMEOUT = datetime.timedelta(minutes=60)  # a collective waits this long for a slow rank
SLURM_PORTS = (20000, 60000)              # MASTER_PORT under Slurm: drawn from the job id


@dataclasses.dataclass(frozen=True)
class Ranks:
    """Where this process stands among the ranks of a cell, as its launcher said."""
    rank: int
    size: int
    local_rank: int
    init_method: str  # env:// (torchrun) or tcp://127.0.0.1:PORT (Slurm)
    source: str       # who said: torchrun or Slurm


def rank() -> int:
    """This process's rank (0 where there is no process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def size() -> int:
    """Processes of the cell (1 where there is no process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def from_environment() -> Ranks | None:
    """The ranks that a launcher set up (torchrun's variables, else a Slurm job step's), or None
    where this process was started alone."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in env:
        return Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]),
                     int(env.get("LOCAL_RANK", env["RANK"])), "env://", "torchrun")
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1)
    if tasks > 1 and "SLURM_PROCID" in env:
        nodes = int(env.get("SLURM_STEP_NUM_NODES", "1") or 1)
        if nodes > 1:
            raise ValueError(f"the Slurm job step spans {nodes} nodes; a cell's processes "
                             "(nproc_per_node) must share one node")
        low, high = SLURM_PORTS
        port = int(env.get("MASTER_PORT") or low + int(env.get("SLURM_JOB_ID") or 0) % (high - low))
        return Ranks(int(env["SLURM_PROCID"]), tasks, int(env.get("SLURM_LOCALID", "0")),
                     f"tcp://{env.get('MASTER_ADDR', '127.0.0.1')}:{port}", "Slurm")
    return None


def check(cfg, device: torch.device) -> None:
    """``nproc_per_node`` against this machine, before any work: ValueError naming the value.
    Where this process will launch the ranks, each needs a CUDA device (``device`` cuda) or a CPU
    core; where a launcher started it as a rank, the rank count must be ``nproc_per_node``."""
    n = cfg.nproc_per_node
    if n == 1 or dist.is_initialized():
        return
    ranks = from_environment()
    if ranks is not None:
        if ranks.size != n:
            raise ValueError(f"nproc_per_node={n}, but {ranks.source} started this process as "
                             f"one of {ranks.size}")
        if device.type == "cuda" and torch.cuda.device_count() == 0:
            raise ValueError(f"nproc_per_node={n} on device {cfg.device!r}: this process sees "
                             "no CUDA device")
        return
    if device.type == "cuda":
        have, what = torch.cuda.device_count(), "CUDA device(s)"
    else:
        have, what = _cores(), "CPU core(s)"
    if n > have:
        raise ValueError(f"nproc_per_node={n} exceeds the {have} {what} of this machine "
                         f"(device {cfg.device!r}: one process per {what.split('(')[0].strip()})")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def launches(cfg) -> bool:
    """Whether this process must start the cell's ranks (it is not one of them yet)."""
    return cfg.nproc_per_node > 1 and not dist.is_initialized() and from_environment() is None


def launch(cfg, progress: bool, threads: int) -> dict:
    """Run the cell (``cfg`` with its id) in ``nproc_per_node`` workers started by torch's
    launcher; returns rank 0's record. ``threads`` CPU threads are shared among the workers. A
    worker that fails stops the others; its error is raised here as a RuntimeError (rank 0 has
    written the failed record where it was the one to fail)."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    n = cfg.nproc_per_node
    worker = dataclasses.replace(cfg, threads=max(1, threads // n))  # not hashed: the id stays
    # the launcher's own files (the workers' error files) go to a folder removed afterwards
    with tempfile.TemporaryDirectory(prefix="msl-ranks-") as folder, _signals_kept():
        conf = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, max_restarts=0,
                            run_id=f"msl-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d",
                            rdzv_endpoint="127.0.0.1:0", local_addr="127.0.0.1",
                            start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=folder))
        try:
            returned = elastic_launch(conf, _worker)(worker, progress)
        except ChildFailedError as err:
            first, failure = err.get_first_failure()
            raise RuntimeError(f"rank {first} of {n} failed: {_message(failure)}") from None
    return returned[0]


@contextlib.contextmanager
def _signals_kept():
    """The launcher turns SIGTERM, SIGINT, SIGHUP and SIGQUIT into its own exception (to stop the
    workers) and leaves it so; afterwards the caller's handlers are back (Ctrl-C raises
    KeyboardInterrupt again, a notebook kernel stops quietly)."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    kept = {sig: signal.getsignal(sig) for sig in (getattr(signal, n, None) for n in names) if sig}
    variable = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in kept.items():
                if handler is not None:  # None: set outside Python, nothing to put back
                    signal.signal(sig, handler)
        if variable is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = variable


def _worker(cfg, progress: bool) -> dict:
    """One rank, started by :func:`launch`: the cell, with its exception written where the
    launcher reads it (``record``), so that launch's message names it."""
    from torch.distributed.elastic.multiprocessing.errors import record

    from msl import cell

    return record(cell.run)(cfg, progress=progress)


def _message(failure) -> str:
    message = failure.message
    if isinstance(message, dict):  # the error file of @record: {"message": text, ...}
        message = message.get("message", message)
    lines = str(message).strip().splitlines()
    return lines[-1] if lines else f"exit code {failure.exitcode}"


@contextlib.contextmanager
def joined(cfg, device: torch.device):
    """The process group of a rank (gloo on CPU, NCCL on CUDA with this rank's device made the
    current one) for the length of the block; nothing where the cell runs in one process, or
    where the caller already made the group."""
    if cfg.nproc_per_node == 1 or dist.is_initialized():
        yield
        return
    ranks = from_environment()
    if device.type == "cuda":  # one GPU per rank; cuda:0 where each process is shown only one
        torch.cuda.set_device(ranks.local_rank if torch.cuda.device_count() > 1 else 0)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=ranks.init_method, rank=ranks.rank,
                            world_size=ranks.size, timeout=TIMEOUT)
    try:
        yield
    finally:
        # a DistributedDataParallel left for the garbage collector would hold the group past its
        # destruction and free it later, from a deallocation that keeps Python's lock while gloo's
        # threads may need it to finish their last work: a deadlock (seen in the tests)
        gc.collect()
        dist.destroy_process_group()


# ---- the training loop's hooks: each one is the identity in a one-process run ----------------

class Shard(torch.utils.data.Sampler):
    """Rank ``rank``'s contiguous part of every batch that ``batches`` (a batch sampler) yields:
    the one-process run's global batches, split among ``size`` ranks (module docstring)."""

    def __init__(self, batches, rank: int, size: int):
        self.batches, self.rank, self.size = batches, rank, size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            k, extra = divmod(len(batch), self.size)
            start = self.rank * k + min(self.rank, extra)
            yield batch[start:start + k + (self.rank < extra)]


def shard(loader):
    """``loader`` with each of its batches cut to this rank's part (:func:`sharded`)."""
    return loader if size() == 1 else sharded(loader, rank(), size())


def sharded(loader, rank: int, size: int):
    """``loader`` giving rank ``rank`` of ``size`` its part of every batch: the same dataset,
    collation and generator, so the generator is drawn on exactly as in one process (a loader
    draws a seed from it per epoch, its sampler a permutation)."""
    return torch.utils.data.DataLoader(
        loader.dataset, batch_sampler=Shard(loader.batch_sampler, rank, size),
        collate_fn=loader.collate_fn, generator=loader.generator, num_workers=loader.num_workers)


def wrap(model):
    """``model`` in DistributedDataParallel, for the training forward only (validation, FLOP
    counting and state dicts use the bare model, so saved states have the same keys in any
    number of processes). Buffers are synchronised once, not at each forward: the families keep
    only constants in them (no batch norm)."""
    if size() == 1:
        return model
    # DDP compares a gradient's strides with its bucket's literally: the [1, n] weight of a
    # readout gets strides (1, 1) from the force term's double backward, contiguous all the same,
    # and DDP would warn on every rank that this "may impair performance"
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return torch.nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)


def weigh(terms, out: dict, batch):
    """The target table with each term's weight scaled by ``P n_r / n``: this rank's labelled
    values over the global batch's (module docstring), so that the mean of the ranks' losses is
    the global-batch loss."""
    if size() == 1:
        return terms
    labels = targets.pairs(out, batch)
    local = [_labelled(t, labels) for t in terms]
    total = torch.tensor(local, dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    return tuple(dataclasses.replace(t, weight=t.weight * size() * n / m if m else 0.0)
                 for t, n, m in zip(terms, local, total.tolist()))


def _labelled(term, labels: dict) -> int:
    """Values that ``term`` averages over in :func:`msl.targets.term_loss`: finite labels, or
    rows with every component finite for ``l2mae``."""
    if term.target not in labels:
        return 0
    true = labels[term.target][1]
    if term.loss == "l2mae":
        return int(torch.isfinite(true.reshape(true.shape[0], -1)).all(-1).sum())
    return int(torch.isfinite(true).sum())


def totals(loss: torch.Tensor, batch) -> tuple[float, int, int]:
    """The global batch's loss (the mean of the ranks' weighed losses), atoms and structures."""
    value = float(loss.detach())
    if size() == 1:
        return value, batch.num_nodes, batch.num_graphs
    sums = torch.tensor([value, batch.num_nodes, batch.num_graphs], dtype=torch.float64,
                        device=_device())
    dist.all_reduce(sums)
    return float(sums[0]) / size(), int(sums[1]), int(sums[2])


def agree(value):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _device() -> torch.device:
    """Where a collective's tensors must live: NCCL's on this rank's GPU, gloo's on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
