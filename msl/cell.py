"""One grid cell, end to end: data -> subset -> graphs -> model -> training -> record.

``notebooks/train.ipynb`` and ``msl train`` both call :func:`run`; the notebook only adds plots.
Data: the pool is opened by index (:func:`msl.data.open_pool`), never read whole; the cell reads
the structures it uses, its D training structures (for the reference energies and the output
scales), its validation set (for :func:`eval_scales` and the zero-force baseline) and its test
set, checking their labels, and builds their graphs as they are first asked for, then keeps
them, or, with ``num_workers`` > 0, builds them every epoch in DataLoader workers
(:mod:`msl.data.stream`). Its memory and its time to the first step do not grow with the pool.
The split is the permutation it always was, drawn from the pool size alone.
Order of work: validate everything that can be checked before any compute (config, dataset size
against the requested D, the labels the model needs), then train. A bad value stops the run with a
ValueError naming it and writes nothing; an error during training writes a ``failed`` record (with
the error) and re-raises. CPU threads: ``threads``, or where it is 0 the idle cores
(:func:`msl.threads.auto_threads`).

Several processes (``nproc_per_node`` > 1, :mod:`msl.distributed`): the checks run first, in the
calling process, so that a bad value (``nproc_per_node`` above the devices present included)
stops before anything starts; then the ranks start (or, under torchrun or as Slurm tasks, this
process is one) and each runs this function. Rank 0 alone scores the model and writes the
record and the checkpoint; the record says how many processes trained (``world_size``).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from msl import data, distributed
from msl import results as records
from msl.config import CellConfig
from msl.data.stream import GraphSet
from msl.models import build_model, count_params, task
from msl.models.potential import reference_fit
from msl.targets import Scales, table
from msl.threads import auto_threads
from msl.train import evaluate, resolve_device, train

CONVERGED_TOLERANCE = 0.02  # see `converged`


def data_dir() -> Path:
    """Where generated datasets and caches live: ``$MSL_DATA_DIR``, else ``~/.cache/msl``."""
    return Path(os.environ.get("MSL_DATA_DIR") or Path.home() / ".cache" / "msl")


def dataset_path(cfg: CellConfig, progress: bool = True) -> Path:
    """The file the cell reads: ``data_path`` if given, else the (cached) embedded set ``dataset``."""
    if cfg.data_path:
        path = Path(cfg.data_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data_path {cfg.data_path!r} does not exist")
        return path
    return data.embedded(cfg.pool_size, seed=cfg.data_seed, cache_dir=data_dir(), progress=progress,
                         kind=cfg.dataset)


def check_pool(cfg: CellConfig, n_pool: int) -> None:
    """D plus the validation and test sets must fit in the pool."""
    need = cfg.n_train + cfg.n_val + cfg.n_test
    if need > n_pool:
        raise ValueError(f"n_train={cfg.n_train} + n_val={cfg.n_val} + n_test={cfg.n_test} = {need} "
                         f"exceeds the {n_pool} structures in the dataset")


def check_labels(cfg: CellConfig, train_set, train_idx, path) -> None:
    """A potential needs the energy of every training structure (it fits per-element reference
    energies to them); a label missing from the file is NaN (msl.data.read), so refuse it here
    rather than train on NaN. Non-finite labels present in a file are refused by the reader
    (msl.data.read.from_atoms) as the cell reads the structures it uses (:func:`run`)."""
    if task(cfg.model) == "spectral":
        return
    missing = np.flatnonzero(np.isnan(train_set.energy))
    if missing.size:
        raise ValueError(f"model {cfg.model!r} needs the energy of every training structure, but "
                         f"structure {int(train_idx[missing[0]])} of {path} has no energy "
                         f"({missing.size} of the {len(train_idx)} training structures lack one)")


def eval_scales(val_set, cfg: CellConfig) -> Scales:
    """The spreads that normalise every loss this cell reports (validation during training, for
    early stopping, and the final validation and test losses): those of the fixed validation
    set, the same for every cell of a study. The training loss keeps the training set's spreads
    (all a model may know), but a loss normalised by them is not comparable across D: with D = 2
    the energy spread left after the reference fit is zero, and a validation loss divided by it
    is 10^5 (measured)."""
    energy_sigma = 1.0
    if task(cfg.model) != "spectral" and np.isfinite(val_set.energy).all():
        energy_sigma = reference_fit(val_set.numbers, val_set.n_atoms, val_set.energy)[1]
    return Scales.from_training(val_set, energy_sigma)


def zero_force_mae(structures) -> float:
    """Force MAE per component (eV/Å) of predicting zero forces: the mean absolute force
    component of ``structures``. A model whose force MAE is not clearly below it has not learnt
    forces (Trikha et al. report such a plateau for their transformer)."""
    forces = structures.forces
    return float(np.abs(forces[np.isfinite(forces)]).mean())


def converged(history: list[dict], stopped_early: bool) -> bool:
    """Under the fixed-epoch protocol, a run counts as converged if early stopping ended it, or if
    its best validation loss improved by less than ``CONVERGED_TOLERANCE`` (relative) over the
    last quarter of its epochs. Under the early-stopping protocol only the patience counts (see
    :func:`run`). The analysis adds a stronger check: the same cell with twice the budget
    (msl.convergence)."""
    if stopped_early:
        return True
    losses = np.minimum.accumulate([h["val/loss"] for h in history])
    if len(losses) < 4:
        return False
    before = losses[int(0.75 * len(losses)) - 1]
    return bool((before - losses[-1]) / before < CONVERGED_TOLERANCE)


def run(cfg: CellConfig, progress: bool = True) -> dict:
    """Train one cell and return its record (also written to ``record_dir`` if set)."""
    cfg = cfg.with_id()
    start = time.perf_counter()
    device = resolve_device(cfg.device)  # fails early if CUDA is asked for but absent
    distributed.check(cfg, device)  # nproc_per_node against the devices present
    path = dataset_path(cfg, progress)
    pool = data.open_pool(path)
    check_pool(cfg, len(pool))
    split = data.split(len(pool), cfg.n_val, cfg.n_test, seed=cfg.seed, split_seed=cfg.split_seed)
    # the cell keeps its own indices only: the training order holds every pool index (8 bytes a
    # structure, 0.9 GB for OMat24's 1.1e8), freed here rather than held through training
    idx = {"train": split.train(cfg.n_train).copy(), "val": split.val, "test": split.test}
    if cfg.reference == "pool":  # every structure outside val and test, in the training order
        idx["reference"] = split.train_order.copy()  # (a pool-sized read: memory grows with it)
    del split
    sets = {name: pool.read(idx[name]) for name in idx}  # a bad label in any stops the run now
    check_labels(cfg, sets["train"], idx["train"], path)
    threads = auto_threads(cfg.threads)  # after the checks: warns only for a real run
    if distributed.launches(cfg):
        return distributed.launch(cfg, progress, threads)
    torch.set_num_threads(threads)
    with distributed.joined(cfg, device):
        progress = progress and distributed.rank() == 0  # one progress bar: rank 0's
        try:
            record = _train_and_score(cfg, pool, idx, sets, path, device, progress)
        except Exception as err:  # recorded, then re-raised: the sweep and papermill see the failure
            record = {**_header(cfg, path), "status": "failed",
                      "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            _finish(cfg, record, start)
            raise
        return _finish(cfg, record, start)


def _train_and_score(cfg, pool, idx, sets, path, device, progress) -> dict:
    train_set, val_set = sets["train"], sets["val"]
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = _build(cfg, train_set, sets.get("reference", train_set))
    scales = Scales.from_training(train_set, float(getattr(model, "energy_scale", 1.0)))
    if hasattr(model, "set_output_scales"):
        model.set_output_scales(forces=scales.sigma["forces"], stress=scales.sigma["stress"])
    reference = eval_scales(val_set, cfg)
    graphs = {name: GraphSet(pool, idx[name], model.cutoff, cache_dir=data_dir() / "graphs",
                             spectrum_grid=train_set.spectrum_grid, keep=not cfg.num_workers,
                             structures=sets[name])
              for name in ("train", "val", "test")}
    state = _state_path(cfg) if cfg.resume and cfg.record_dir else None
    result = train(model, graphs["train"], graphs["val"], scales, cfg, progress=progress,
                   checkpoint=state, eval_scales=reference)
    terms = table(cfg.targets)
    if distributed.rank() != 0:  # the other ranks only helped train; rank 0 scores and writes
        return {"status": result.status, "world_size": distributed.size(),
                "rank": distributed.rank()}
    metrics = {}
    if result.status == "ok":
        metrics.update(evaluate(model, graphs["val"], reference, terms, cfg, "val", device))
        metrics.update(evaluate(model, graphs["test"], reference, terms, cfg, "test", device))
        if "val/forces_mae" in metrics:  # the baseline a force model must beat: predict zero
            metrics["val/forces_mae_zero"] = zero_force_mae(val_set)
        _save_checkpoint(cfg, model)
    return {
        **_header(cfg, path), **count_params(model), "status": result.status,
        "error": result.message or None, "metrics": metrics, "history": result.history,
        "steps": result.steps, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "stop_reason": result.stop_reason,
        "best_step": result.best_step, "cooldown_steps": result.cooldown_steps,
        "converged": result.status == "ok" and (result.stop_reason == "patience" if cfg.max_steps
                                                 else converged(result.history, result.stopped_early)),
        "resumed_from_epoch": result.resumed_from_epoch, "peak_lr": result.peak_lr,
        "flops": result.flops, "flops_per_atom": result.flops_per_atom,
        "train_seconds": result.train_seconds,
        "structures_per_second": result.structures_per_second,
        "n_train_atoms": int(train_set.n_atoms.sum()),
        "scales": scales.asdict(), "eval_scales": reference.asdict(), "task": task(cfg.model),
        "targets": [{"target": t.target, "level": t.level, "loss": t.loss, "weight": t.weight}
                    for t in terms],
        "device": str(device),
        "world_size": distributed.size(),  # processes that trained (msl.distributed)
    }


def _build(cfg: CellConfig, train_set, reference_set):
    """The model of ``cfg``, with its output scales fitted to the training set and a potential's
    per-element reference energies to ``reference_set``: the training set, or with
    ``reference="pool"`` every structure outside the validation and test sets (those with an
    energy). The second is fairchem's practice (linear element references fitted once on the
    whole training data, so that a model learns only what they leave), and matters where a pool
    has many elements: on 59 elements a D = 32 subset leaves most elements unseen, and their
    missing references (several eV per atom) swamp everything else the model learns (measured on
    the ``chgnet`` kind: validation energy MAE 2.6 eV/atom, forces no better than predicting
    zero)."""
    if task(cfg.model) == "spectral":
        if not train_set.has_spectra:
            raise ValueError(f"model {cfg.model!r} predicts spectra, but the dataset has none "
                             f"(use dataset='emt-vdos' or a file with spectra)")
        model = build_model(cfg.model, cfg.size, n_grid=train_set.spectrum.shape[1])
        model.fit_targets(train_set.spectrum, train_set.scalar)
        return model
    model = build_model(cfg.model, cfg.size)
    known = np.flatnonzero(np.isfinite(reference_set.energy))
    if len(known) < len(reference_set):
        reference_set = reference_set.subset(known)
    model.fit_reference(reference_set.numbers, reference_set.n_atoms, reference_set.energy)
    return model


def _header(cfg: CellConfig, path) -> dict:
    return {"study": cfg.study, "cell_id": cfg.cell_id, "model": cfg.model, "size": cfg.size,
            "n_train": cfg.n_train, "seed": cfg.seed, "epochs": cfg.epochs,
            "dataset": str(path), "config": cfg.asdict()}


def _checkpoint_dir(cfg: CellConfig) -> Path:
    return Path(cfg.record_dir).parent / "checkpoints"


def _state_path(cfg: CellConfig) -> Path:
    """The resumable training state of a cell (see msl.train), beside its checkpoint."""
    return _checkpoint_dir(cfg) / f"{cfg.cell_id}.state.pt"


def _save_checkpoint(cfg: CellConfig, model) -> None:
    """The trained model (best validation state) for msl.calculator; the resumable training
    state is no longer needed once the record exists and is removed by :func:`_finish`."""
    if cfg.record_dir:
        folder = _checkpoint_dir(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{cfg.cell_id}.pt.tmp"
        torch.save({"model": cfg.model, "size": cfg.size, "state_dict": model.state_dict()}, tmp)
        os.replace(tmp, folder / f"{cfg.cell_id}.pt")


def _finish(cfg: CellConfig, record: dict, start: float) -> dict:
    if distributed.rank() != 0:  # rank 0 writes the record (msl.distributed)
        return record
    record["wall_seconds"] = time.perf_counter() - start
    record.update(records.provenance())
    if cfg.record_dir:
        records.write(Path(cfg.record_dir) / f"{cfg.cell_id}.json", record)
        if record["status"] == "ok":
            _state_path(cfg).unlink(missing_ok=True)
    return record
