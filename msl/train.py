"""The trainer: plain PyTorch, read top to bottom.

AdamW with a peak learning rate ``max_lr``, or ``max_lr * (N / lr_ref_params)^-lr_gamma`` where a
grid rescales it with model size as Großmann et al. did (:func:`peak_lr`); gradient clipping; the
best validation state is kept and restored at the end (as Großmann et al. did); a non-finite or
exploding loss stops the run as ``diverged`` instead of crashing; mixed precision (bf16, or fp16
with a gradient scaler) on CUDA. The loss is the cell's target table (:mod:`msl.targets`).

Two protocols (:func:`plan`), and the record says which ended the run (``stop_reason``):

* **Fixed epochs** (``max_steps`` = 0): ``epochs``, raised where D is small so that every run
  takes at least ``min_steps`` steps; linear warm-up then cosine decay to ``min_lr_frac`` over the
  planned steps; optionally cut short by the patience (``stop_reason`` epochs or patience).
* **Early stopping** (``max_steps`` > 0): validate every ``eval_every`` steps; the run ends when
  ``patience`` validations bring no improvement (``patience``), or at the step cap
  (``max_steps``), which is set high enough to be rarely what ends it. With ``schedule = wsd``
  (warm-up, stable, decay; :func:`lr_at`) the learning rate stays at its peak until then, and a
  short linear cool-down from the best state follows (``cooldown_frac`` of the steps to the
  best validation), because a constant rate does not force the loss down at a step fixed in
  advance: the point where a run stops is set by its data and model, not by the cap.
  With ``schedule = plateau`` (what the published studies use) the rate is multiplied by
  ``lr_decay`` each time ``patience`` validations bring no improvement, and the run ends when
  the next cut would take it below ``min_lr_frac`` of the peak: the reduce-on-plateau rule with
  which MACE, NequIP and Allegro train interatomic potentials. It ends a run only once the loss
  has stopped improving at every rate down to the floor, so it does not stop on one noisy
  validation at the peak rate, and doubling the patience (the convergence check) lengthens every
  level. torch's ``ReduceLROnPlateau`` has the same rule but no end of training and no state
  beside the optimiser's; here the levels are part of the saved training state (:class:`Phase`),
  so that a resumed run continues on the same level.

Resuming: given a ``checkpoint`` path, the whole training state (model, optimiser, schedule,
gradient scaler, RNG states, history, best state) is written there atomically after every
validation; a later call with the same path continues from it, so a run cut off by a kill or a
time limit loses at most the epochs since its last validation, and the result is the same as an
uninterrupted run's (tested). The state holds only tensors and plain Python values and is read
with ``torch.load(..., weights_only=True)``, which refuses to run pickled code: a file that does
not load that way (damaged, or not written by msl) is reported with a warning and the run starts
afresh.

CPU threads: :func:`msl.threads.auto_threads` chooses them where the config leaves
``threads = 0``.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one real training
step (forward, force backward with ``create_graph`` where forces are derivatives, and the
parameter backward). Convention: only matmul-like operations are counted (what FlopCounterMode
counts); the count per atom of that step times the atoms seen in training is the run's training
compute C; evaluation is not counted.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from msl import graph, targets
from msl.config import CellConfig
from msl import distributed  # several processes in one cell: the hooks marked "ranks" below

DIVERGE_FACTOR = 1e4  # a training loss this many times above its first value counts as diverged
MAX_EVALS = 12        # validation passes per run at most (every k-th epoch when epochs are many)


def peak_lr(cfg: CellConfig, n_params: int) -> float:
    """The peak learning rate: ``max_lr``, rescaled with N where ``lr_gamma`` is set."""
    if not cfg.lr_gamma:
        return cfg.max_lr
    return cfg.max_lr * (n_params / cfg.lr_ref_params) ** -cfg.lr_gamma


def plan_epochs(cfg: CellConfig, steps_per_epoch: int) -> int:
    """Epochs actually run: ``epochs``, raised where needed so the run takes >= ``min_steps``."""
    return max(cfg.epochs, math.ceil(cfg.min_steps / max(steps_per_epoch, 1)))


@dataclass(frozen=True)
class Plan:
    """How long a run may train and when it validates, from the config and the epoch length."""
    epochs: int      # the most epochs before the cool-down: the cap, rounded up to whole epochs
    eval_every: int  # validate every this many epochs (and at the end of every phase)
    total: int       # planned optimisation steps (the cosine decays over these)
    warmup: int      # linear warm-up steps


def plan(cfg: CellConfig, steps_per_epoch: int) -> Plan:
    """The fixed-epoch protocol (``max_steps`` = 0: ``epochs``, at least ``min_steps``, at most
    ``MAX_EVALS`` validations unless ``eval_every`` says), or the early-stopping protocol
    (``max_steps`` > 0: validate every ``eval_every`` steps, rounded to whole epochs, until the
    patience or the cap ends the stable phase)."""
    spe = max(steps_per_epoch, 1)
    if cfg.max_steps:
        epochs = math.ceil(cfg.max_steps / spe)
    else:
        epochs = plan_epochs(cfg, spe)
    if cfg.eval_every:
        eval_every = max(1, round(cfg.eval_every / spe))
    else:
        eval_every = max(1, math.ceil(epochs / MAX_EVALS))
    total = epochs * spe
    return Plan(epochs, eval_every, total, cfg.warmup_steps or max(1, int(cfg.warmup_frac * total)))


@dataclass
class Phase:
    """Where a run is: before or in the cool-down (``wsd``), and what ended the stable phase."""
    cooldown_start: int = -1   # step at which the cool-down began; -1: not begun
    cooldown_steps: int = 0    # its length in steps
    stop_reason: str = ""      # patience | max_steps | epochs (empty while training)
    since_best: int = 0        # validations since the best one (the patience counter)
    best_step: int = 0         # optimisation steps at the best validation
    reductions: int = 0        # plateau: cuts of the learning rate so far


def lr_at(cfg: CellConfig, p: Plan, phase: Phase, step: int) -> float:
    """Multiplier of the peak learning rate at optimisation step ``step``.

    ``cosine``: :func:`lr_factor` over the planned steps. ``wsd`` (warm-up, stable, decay): linear
    warm-up, then the peak until the stable phase ends (patience or cap), then a linear cool-down
    to ``min_lr_frac`` over ``cooldown_frac`` times the steps to the best validation. ``plateau``:
    linear warm-up, then ``lr_decay`` to the power of the cuts so far (module docstring). Unlike
    the cosine, these lower the learning rate at no step fixed in advance, so the cap does not
    shape the curve: twice the cap and the patience only lengthen the phases.
    """
    if cfg.schedule == "cosine":
        return lr_factor(step, p.total, p.warmup, cfg.min_lr_frac)
    if cfg.schedule == "plateau":
        return min(1.0, (step + 1) / p.warmup) * cfg.lr_decay ** phase.reductions
    if phase.cooldown_start < 0:
        return min(1.0, (step + 1) / p.warmup)
    done = min(1.0, (step - phase.cooldown_start + 1) / phase.cooldown_steps)
    return 1.0 - (1.0 - cfg.min_lr_frac) * done


@dataclass
class TrainResult:
    status: str                       # ok | diverged
    history: list = field(default_factory=list)  # one dict per validation
    steps: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    best_step: int = 0                # optimisation steps at the best validation
    stopped_early: bool = False       # the patience ended the run (or its stable phase)
    stop_reason: str = ""             # patience | max_steps | epochs | diverged
    cooldown_steps: int = 0           # steps of the wsd cool-down (0: none)
    flops_per_atom: float = 0.0       # training FLOPs per atom per step (see module docstring)
    flops: float = 0.0                # total training FLOPs C
    peak_lr: float = 0.0              # the peak learning rate used
    resumed_from_epoch: int = 0       # epochs taken from a saved training state (0: fresh run)
    train_seconds: float = 0.0        # wall time of training, validation included
    structures_per_second: float = 0.0  # throughput of the training steps alone
    message: str = ""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)


def lr_factor(step: int, total: int, warmup: int, min_frac: float) -> float:
    """Multiplier of max_lr at ``step``: linear warm-up over ``warmup`` steps, then cosine."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def count_flops(model, batch, scales, terms) -> float:
    """Matmul FLOPs of one training step (forward + force backward + parameter backward)."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(batch, **targets.needs(terms))
        targets.loss(out, batch, scales, terms).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def evaluate(model, graphs, scales, terms, cfg: CellConfig, prefix: str, device) -> dict:
    """Metrics over ``graphs``: the table's loss and the MAE of every output (msl.targets)."""
    model.eval()
    metrics = targets.Metrics(prefix)
    for batch in DataLoader(graphs, batch_size=max(cfg.batch_size, 32), shuffle=False,
                            num_workers=cfg.num_workers):
        batch = batch.to(device)
        with _autocast(device, cfg.precision):
            out = model(batch)
        out = {k: v.detach().float() for k, v in out.items()}
        metrics.add(out, batch, float(targets.loss(out, batch, scales, terms)))
    return metrics.result()


def train(model, train_graphs, val_graphs, scales, cfg: CellConfig, progress: bool = True,
          checkpoint: str | os.PathLike | None = None, eval_scales=None):
    """Train ``model`` in place; returns a :class:`TrainResult`. The best-validation state is
    loaded into ``model`` before returning. With ``checkpoint``, resume from the training state
    saved there (if any) and keep it up to date (see the module docstring). The training loss is
    normalised by ``scales``, the validation loss (and so early stopping) by ``eval_scales``
    where given (:func:`msl.cell.eval_scales`: the same for every cell of a study)."""
    device = resolve_device(cfg.device)
    model.to(device)
    terms = targets.table(cfg.targets)
    needs = targets.needs(terms)
    generator = torch.Generator().manual_seed(cfg.seed)
    # torch's DataLoader with msl.graph.collate: the batches torch-geometric's DataLoader builds
    # (same sampler, same order, tested equal), collated in half the time
    loader = torch.utils.data.DataLoader(train_graphs, batch_size=cfg.batch_size, shuffle=True,
                                         generator=generator, collate_fn=graph.collate,
                                         drop_last=len(train_graphs) > cfg.batch_size,
                                         num_workers=cfg.num_workers)
    p = plan(cfg, len(loader))
    loader = distributed.shard(loader)  # ranks: each takes its part of every global batch
    result, phase = TrainResult(status="ok"), Phase()
    params = [q for q in model.parameters() if q.requires_grad]
    result.peak_lr = peak_lr(cfg, sum(q.numel() for q in params))
    # fused=True: one kernel for the whole update instead of a loop over the parameters (the
    # same arithmetic; bench/bench_step.py measures it)
    optimizer = torch.optim.AdamW(params, lr=result.peak_lr, weight_decay=cfg.weight_decay,
                                  fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    first = next(iter(DataLoader(train_graphs, batch_size=cfg.batch_size))).to(device)
    result.flops_per_atom = count_flops(model, first, scales, terms) / first.num_nodes
    best_loss, best_state, first_loss, atoms_seen, structures_seen = math.inf, None, None, 0, 0
    step_seconds, epoch = 0.0, 0
    parts = {"model": model, "optimizer": optimizer, "scaler": scaler}
    saved = _load_state(checkpoint, cfg, p.epochs, parts, generator)
    net = distributed.wrap(model)  # ranks: DistributedDataParallel for the training forward
    if saved is not None:
        epoch = result.resumed_from_epoch = result.epochs_run = saved["epoch"]
        result.history, result.steps, result.best_epoch = saved["history"], saved["steps"], saved["best_epoch"]
        best_loss, best_state, first_loss = saved["best_loss"], saved["best_state"], saved["first_loss"]
        atoms_seen, structures_seen, step_seconds = saved["atoms_seen"], saved["structures_seen"], saved["step_seconds"]
        phase = Phase(**saved["phase"])
    start = time.perf_counter()
    bar = tqdm(total=p.total, initial=result.steps, desc=f"train D={len(train_graphs)}",
               unit="step", disable=not progress, leave=False)
    while not (saved or {}).get("stopped"):  # a state saved at the very end: nothing left to do
        epoch += 1
        model.train()
        train_sum, n_seen = 0.0, 0
        epoch_start = time.perf_counter()
        for batch in loader:
            batch = batch.to(device)
            for group in optimizer.param_groups:
                group["lr"] = result.peak_lr * lr_at(cfg, p, phase, result.steps)
            with _autocast(device, cfg.precision):
                out = net(batch, **needs)
                loss = targets.loss(out, batch, scales, distributed.weigh(terms, out, batch))
            value, n_atoms, n_structures = distributed.totals(loss, batch)  # ranks: summed
            first_loss = value if first_loss is None else first_loss
            if not math.isfinite(value) or value > DIVERGE_FACTOR * max(first_loss, 1e-12):
                result.status, result.message = "diverged", f"training loss {value:.3g} at step {result.steps}"
                break
            optimizer.zero_grad(set_to_none=True)
            # inputs=params: the backward stops at the parameters instead of also accumulating
            # gradients into the positions that the force term differentiated
            scaler.scale(loss).backward(inputs=params)
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            result.steps += 1
            atoms_seen += n_atoms
            structures_seen += n_structures
            train_sum += value * n_structures
            n_seen += n_structures
            bar.update()
        step_seconds += time.perf_counter() - epoch_start
        if result.status != "ok":
            phase.stop_reason = "diverged"
            break
        result.epochs_run = epoch
        cooling = phase.cooldown_start >= 0
        cooled = cooling and result.steps >= phase.cooldown_start + phase.cooldown_steps
        at_cap = not cooling and epoch >= p.epochs
        if epoch % p.eval_every and not (at_cap or cooled):
            continue
        val = distributed.agree(evaluate(model, val_graphs, eval_scales or scales, terms, cfg,
                                         "val", device))
        result.history.append({"epoch": epoch, "step": result.steps,
                               "train/loss": train_sum / max(n_seen, 1),
                               "lr": result.peak_lr * lr_at(cfg, p, phase, result.steps), **val})
        bar.set_postfix(val_loss=f"{val['val/loss']:.4g}")
        if val["val/loss"] < best_loss:
            best_loss, result.best_epoch, phase.best_step = val["val/loss"], epoch, result.steps
            best_state = copy.deepcopy(model.state_dict())
            phase.since_best = 0
        else:
            phase.since_best += 1
        stop = cooled
        if not cooling:
            if cfg.patience and phase.since_best >= cfg.patience:
                if cfg.schedule == "plateau" and \
                        cfg.lr_decay ** (phase.reductions + 1) >= cfg.min_lr_frac * (1 - 1e-9):
                    phase.reductions += 1  # the next, lower level; its patience starts afresh
                    phase.since_best = 0
                else:
                    phase.stop_reason = "patience"
            elif at_cap:
                phase.stop_reason = "max_steps" if cfg.max_steps else "epochs"
            if phase.stop_reason and cfg.schedule == "wsd":  # cool down from the best state
                model.load_state_dict(best_state)
                phase.cooldown_start = result.steps
                phase.cooldown_steps = max(1, math.ceil(cfg.cooldown_frac * phase.best_step))
                bar.total = result.steps + phase.cooldown_steps
            else:
                stop = bool(phase.stop_reason)
        _save_state(checkpoint, cfg, p.epochs, parts, generator, {
            "epoch": epoch, "history": result.history, "steps": result.steps,
            "best_epoch": result.best_epoch, "best_loss": best_loss, "best_state": best_state,
            "first_loss": first_loss, "atoms_seen": atoms_seen, "phase": dataclasses.asdict(phase),
            "structures_seen": structures_seen, "step_seconds": step_seconds, "stopped": stop})
        if stop:
            break
    bar.close()
    result.stop_reason, result.best_step = phase.stop_reason, phase.best_step
    result.stopped_early = phase.stop_reason == "patience"
    result.cooldown_steps = max(0, result.steps - phase.cooldown_start) if phase.cooldown_start >= 0 else 0
    result.train_seconds = time.perf_counter() - start
    result.flops = result.flops_per_atom * atoms_seen
    result.structures_per_second = structures_seen / max(step_seconds, 1e-9)
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _state_key(cfg: CellConfig, epochs: int) -> dict:
    """What a saved state must match to be resumed: the cell (its id hashes every field that
    shapes the run) and the planned epochs."""
    return {"cell_id": cfg.with_id().cell_id, "epochs": epochs}


def _save_state(path, cfg, epochs, parts, generator, progress_state) -> None:
    if path is None or distributed.rank() != 0:  # rank 0 writes; every rank reads
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"key": _state_key(cfg, epochs), **progress_state,
             **{name: part.state_dict() for name, part in parts.items()},
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill during the save leaves the previous state intact


def _load_state(path, cfg, epochs, parts, generator):
    """The saved state at ``path`` loaded into ``parts``; None if there is none or it belongs to
    another run (then it is ignored and overwritten by this run's). Read with
    ``weights_only=True``: tensors and plain values only, never pickled code. A file that cannot
    be read so (damaged, or not written by :func:`_save_state`) is reported and ignored."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # saves are atomic, so this is a foreign or tampered file
        warnings.warn(f"ignoring the training state {path}: torch.load(weights_only=True) refused "
                      f"it ({_reason(err)}), so it is damaged or was not written by msl; training "
                      "starts afresh and overwrites it", stacklevel=3)
        return None
    if not isinstance(state, dict):
        return None
    if state.get("key") != _state_key(cfg, epochs):
        return None
    for name, part in parts.items():
        part.load_state_dict(state[name])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def _reason(err: Exception) -> str:
    """What a failed ``torch.load`` refused, without torch's advice to load untrusted files with
    ``weights_only=False``."""
    text = str(err)
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if code:
        return f"it would call {code.group(1).rstrip('.')}"
    first = (text.strip().splitlines() or [""])[0].split(". ")[0]
    if first.startswith("Weights only load failed"):
        return "not a saved state"
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
