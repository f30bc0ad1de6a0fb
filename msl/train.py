"""The trainer: plain PyTorch, read top to bottom.

AdamW; linear warm-up to ``max_lr`` then cosine decay to ``min_lr_frac * max_lr``, stepped per
batch; a fixed number of epochs, raised where D is small so that every run takes at least
``min_steps`` optimisation steps, optionally cut short by early stopping on the validation loss;
gradient clipping; the best validation state is kept and restored at the end (as Großmann et al.
did); a non-finite or exploding loss stops the run as ``diverged`` instead of crashing; mixed
precision (bf16, or fp16 with a gradient scaler) on CUDA.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one real training
step (forward, force backward with ``create_graph``, and the parameter backward). Convention:
only matmul-like operations are counted (what FlopCounterMode counts); the count per atom of that
step times the atoms seen in training is the run's training compute C; evaluation is not counted.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from msl import targets
from msl.config import CellConfig

DIVERGE_FACTOR = 1e4  # a training loss this many times above its first value counts as diverged
MAX_EVALS = 40        # validation passes per run at most (every k-th epoch when epochs are many)


def plan_epochs(cfg: CellConfig, steps_per_epoch: int) -> int:
    """Epochs actually run: ``epochs``, raised where needed so the run takes >= ``min_steps``."""
    return max(cfg.epochs, math.ceil(cfg.min_steps / max(steps_per_epoch, 1)))


@dataclass
class TrainResult:
    status: str                       # ok | diverged
    history: list = field(default_factory=list)  # one dict per epoch
    steps: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    stopped_early: bool = False
    flops_per_atom: float = 0.0       # training FLOPs per atom per step (see module docstring)
    flops: float = 0.0                # total training FLOPs C
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


def count_flops(model, batch, scales, weights) -> float:
    """Matmul FLOPs of one training step (forward + force backward + parameter backward)."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        targets.loss(out, batch, scales, weights).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def evaluate(model, graphs, scales, weights, cfg: CellConfig, prefix: str, device) -> dict:
    """Metrics over ``graphs`` (loss, energy/forces/stress MAE in eV/atom, eV/Å, GPa)."""
    model.eval()
    metrics = targets.Metrics(prefix)
    for batch in DataLoader(graphs, batch_size=max(cfg.batch_size, 32), shuffle=False):
        batch = batch.to(device)
        with _autocast(device, cfg.precision):
            out = model(batch)
        out = {k: v.detach().float() for k, v in out.items()}
        metrics.add(out, batch, float(targets.loss(out, batch, scales, weights)))
    return metrics.result()


def train(model, train_graphs, val_graphs, scales, cfg: CellConfig, progress: bool = True):
    """Train ``model`` in place; returns a :class:`TrainResult`. The best-validation state is
    loaded into ``model`` before returning."""
    device = resolve_device(cfg.device)
    model.to(device)
    weights = {"energy": cfg.w_energy, "forces": cfg.w_forces, "stress": cfg.w_stress}
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_graphs, batch_size=cfg.batch_size, shuffle=True,
                        generator=generator, drop_last=len(train_graphs) > cfg.batch_size)
    epochs = plan_epochs(cfg, len(loader))
    eval_every = max(1, math.ceil(epochs / MAX_EVALS))
    total = epochs * len(loader)
    warmup = max(1, int(cfg.warmup_frac * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.max_lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, cfg.min_lr_frac))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    first = next(iter(DataLoader(train_graphs, batch_size=cfg.batch_size))).to(device)
    result = TrainResult(status="ok")
    result.flops_per_atom = count_flops(model, first, scales, weights) / first.num_nodes
    best_loss, best_state, first_loss, atoms_seen, structures_seen = math.inf, None, None, 0, 0
    start = time.perf_counter()
    bar = tqdm(total=total, desc=f"train D={len(train_graphs)}", unit="step", disable=not progress,
               leave=False)
    step_seconds = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        train_sum, n_seen = 0.0, 0
        epoch_start = time.perf_counter()
        for batch in loader:
            batch = batch.to(device)
            with _autocast(device, cfg.precision):
                out = model(batch)
                loss = targets.loss(out, batch, scales, weights)
            value = float(loss.detach())
            first_loss = value if first_loss is None else first_loss
            if not math.isfinite(value) or value > DIVERGE_FACTOR * max(first_loss, 1e-12):
                result.status, result.message = "diverged", f"training loss {value:.3g} at step {result.steps}"
                break
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            result.steps += 1
            atoms_seen += batch.num_nodes
            structures_seen += batch.num_graphs
            train_sum += value * batch.cell.shape[0]
            n_seen += batch.cell.shape[0]
            bar.update()
        step_seconds += time.perf_counter() - epoch_start
        if result.status != "ok":
            break
        result.epochs_run = epoch
        if epoch % eval_every and epoch != epochs:
            continue
        val = evaluate(model, val_graphs, scales, weights, cfg, "val", device)
        result.history.append({"epoch": epoch, "step": result.steps,
                               "train/loss": train_sum / max(n_seen, 1),
                               "lr": scheduler.get_last_lr()[0], **val})
        bar.set_postfix(val_loss=f"{val['val/loss']:.4g}")
        if val["val/loss"] < best_loss:
            best_loss, result.best_epoch = val["val/loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif cfg.patience and epoch - result.best_epoch >= cfg.patience:
            result.stopped_early = True
            break
    bar.close()
    result.train_seconds = time.perf_counter() - start
    result.flops = result.flops_per_atom * atoms_seen
    result.structures_per_second = structures_seen / max(step_seconds, 1e-9)
    if best_state is not None:
        model.load_state_dict(best_state)
    return result
