"""The configuration of one training run (one grid cell): flat scalars, validated before any work.

The parameters cell of ``notebooks/train.ipynb`` repeats these defaults literally (papermill needs
literals); ``tests/test_notebooks.py`` checks that the two agree. ``msl train`` exposes every field
as a command-line option. Defaults run on a laptop CPU in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class CellConfig:
    # where the run belongs
    study: str = "scratch"          # study name, recorded
    cell_id: str = ""               # empty: derived from the other fields (stable hash)
    record_dir: str = ""            # folder for the JSON record; empty: write no record
    # data
    data_path: str = ""             # .aselmdb file/folder, ASE .db or extxyz; empty: embedded EMT set
    dataset: str = "emt"            # embedded set only: emt (4-32 atoms) | emt-vdos (4-8 atoms + spectra) | chgnet (4-16 atoms, 59 elements)
    pool_size: int = 300            # embedded set only: structures generated (cached by size+seed)
    data_seed: int = 0              # embedded set only: generation seed
    n_val: int = 50                 # fixed validation structures
    n_test: int = 50                # fixed test structures
    split_seed: int = 0             # fixes val/test membership, independent of `seed`
    n_train: int = 64               # D: training structures (nested prefix of one permutation)
    reference: str = "train"        # per-element reference energies fitted on: train (the D training structures) | pool (every structure outside val and test)
    # model
    model: str = "optimetal2b"      # family name, a key of msl.models.MODELS
    size: int = 0                   # rung of the family's size ladder
    # optimisation
    seed: int = 0                   # initialisation, training order and subset permutation
    epochs: int = 3                 # passes over the D training structures (at least)
    min_steps: int = 0              # more epochs for small D: every run takes at least this many steps
    batch_size: int = 16            # structures per step
    max_lr: float = 2e-3            # peak learning rate after linear warm-up, then cosine decay
    lr_gamma: float = 0.0           # width rule: peak lr is max_lr times (N over lr_ref_params) to the power -lr_gamma
    lr_ref_params: int = 0          # N at which the peak lr is max_lr (0: no rescaling)
    warmup_frac: float = 0.05       # fraction of all steps spent warming up
    min_lr_frac: float = 0.01       # final learning rate as a fraction of max_lr
    weight_decay: float = 0.0       # AdamW decoupled weight decay
    grad_clip: float = 10.0         # max global gradient norm; 0 disables clipping
    patience: int = 0               # early stopping after this many validations without improvement; 0: off
    max_steps: int = 0              # step cap of the early-stopping protocol; 0: fixed epochs (epochs, min_steps)
    eval_every: int = 0             # validate every this many steps (whole epochs); 0: at most 12 times per run
    schedule: str = "cosine"        # cosine (to min_lr_frac over the planned steps) | wsd (constant, cool-down at the end)
                                    # | plateau (constant, times lr_decay at each plateau, stop below min_lr_frac)
    warmup_steps: int = 0           # linear warm-up steps; 0: warmup_frac of the planned steps
    cooldown_frac: float = 0.2      # wsd: cool-down length as a fraction of the steps to the best validation
    lr_decay: float = 0.3           # plateau: factor on the learning rate when `patience` validations bring no improvement
    # loss: a preset (default, trikha, grossmann, spectral) or "target:loss:weight, ..." (msl.targets)
    targets: str = "default"
    # execution
    precision: str = "fp32"         # fp32 | bf16 | fp16 (mixed precision needs CUDA)
    device: str = "cpu"             # cpu | cuda | cuda:N | auto
    threads: int = 0                # torch CPU threads; 0: auto, the idle cores (msl.threads.auto_threads)
    resume: int = 1                 # 1: save the training state at each validation and resume a cut-off run
    nproc_per_node: int = 1         # processes (ranks) training the cell together, one per GPU (msl.distributed)
    num_workers: int = 0            # DataLoader processes that read structures and build graphs; 0: none

    def __post_init__(self):
        validate(self)

    def with_id(self) -> "CellConfig":
        """This config with ``cell_id`` filled in (unchanged if already set)."""
        return self if self.cell_id else dataclasses.replace(self, cell_id=cell_id(self.asdict()))

    def asdict(self) -> dict:
        return dataclasses.asdict(self)


NAMES = tuple(f.name for f in fields(CellConfig))
SCHEDULES = ("cosine", "wsd", "plateau")
REFERENCES = ("train", "pool")  # where a potential's per-element reference energies are fitted
# fields added after records were published: they enter the cell id only when they differ from
# these defaults, so that every earlier cell keeps its id (and its record)
_HASHED_IF_SET = {"max_steps": 0, "eval_every": 0, "schedule": "cosine", "warmup_steps": 0,
                  "cooldown_frac": 0.2, "lr_decay": 0.3, "reference": "train"}
# fields that say where results go rather than what is computed; they do not enter the cell id
_NOT_HASHED = ("study", "cell_id", "record_dir", "threads", "resume", "nproc_per_node",
               "num_workers")
# num_workers only moves the reading and graph building into DataLoader processes: the batches
# and every number stay those of num_workers = 0 (msl.data.stream; tested bit for bit)
# nproc_per_node says how the work is spread: the processes of a cell split each global batch of
# `batch_size` and train on exactly the one-process run's batches, loss and gradients, summed in
# another order (msl.distributed), so like `threads` it moves results by float32 round-off only
# (tested to 1e-4 relative); a cell keeps its id, record and training state when it is re-run on
# another machine layout, and its record says how many processes ran (`world_size`)
DATASETS = ("emt", "emt-vdos", "chgnet")  # kinds of embedded dataset (msl.data.generate.KINDS, tested equal)


def from_dict(values: dict) -> CellConfig:
    """Build a config from a dict, rejecting unknown keys and values of the wrong type."""
    unknown = sorted(set(values) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(NAMES)}")
    types = {f.name: f.type for f in fields(CellConfig)}
    clean = {}
    for key, value in values.items():
        clean[key] = _coerce(key, value, types[key])
    return CellConfig(**clean)


def _coerce(key, value, type_name):
    kind = {"int": int, "float": float, "str": str}[type_name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"parameter {key}={value!r} must be of type {type_name}")
    return value


def cell_id(values: dict) -> str:
    """Readable, stable id: model, size, D, seed and a hash of every field that shapes the run."""
    hashed = {k: values[k] for k in sorted(values) if k not in _NOT_HASHED
              and not (k in _HASHED_IF_SET and values[k] == _HASHED_IF_SET[k])}
    digest = hashlib.sha1(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:8]
    return f"{values['model']}-s{values['size']}-d{values['n_train']}-seed{values['seed']}-{digest}"


def validate(cfg: CellConfig) -> None:
    """Raise ValueError naming the first bad value. Data-dependent checks live in msl.cell."""
    from msl.models import check_size, task  # late import: msl.models imports torch
    from msl.targets import check_task, table

    for f in fields(cfg):  # inf and nan pass every comparison below (or fail it silently)
        if f.type == "float" and not math.isfinite(getattr(cfg, f.name)):
            raise ValueError(f"{f.name} must be a finite number, got {getattr(cfg, f.name)!r}")
    positive = {"n_train": cfg.n_train, "n_val": cfg.n_val, "n_test": cfg.n_test,
                "epochs": cfg.epochs, "batch_size": cfg.batch_size, "pool_size": cfg.pool_size}
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"{key} must be at least 1, got {value!r}")
    if not cfg.max_lr > 0:
        raise ValueError(f"max_lr must be positive, got {cfg.max_lr!r}")
    for key in ("warmup_frac", "min_lr_frac"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise ValueError(f"{key} must lie in [0, 1], got {getattr(cfg, key)!r}")
    for key in ("weight_decay", "grad_clip", "patience", "threads", "min_steps", "lr_gamma",
                "lr_ref_params", "num_workers"):
        if getattr(cfg, key) < 0:
            raise ValueError(f"{key} must not be negative, got {getattr(cfg, key)!r}")
    if cfg.lr_gamma and not cfg.lr_ref_params:
        raise ValueError(f"lr_gamma={cfg.lr_gamma!r} needs lr_ref_params, the N where lr = max_lr")
    for key in ("max_steps", "eval_every", "warmup_steps"):
        if getattr(cfg, key) < 0:
            raise ValueError(f"{key} must not be negative, got {getattr(cfg, key)!r}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule {cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if cfg.max_steps and not (cfg.eval_every and cfg.patience):
        raise ValueError(f"max_steps={cfg.max_steps} (the early-stopping protocol) needs eval_every "
                         f"and patience, got eval_every={cfg.eval_every}, patience={cfg.patience}")
    if cfg.schedule in ("wsd", "plateau") and not cfg.max_steps:
        raise ValueError(f"schedule {cfg.schedule!r} needs max_steps (its run ends by early stopping "
                         "or at the cap), got max_steps=0")
    if cfg.reference not in REFERENCES:
        raise ValueError(f"reference {cfg.reference!r} is not one of {', '.join(REFERENCES)}")
    if not 0 < cfg.lr_decay < 1:
        raise ValueError(f"lr_decay must lie in (0, 1), got {cfg.lr_decay!r}")
    if not 0 < cfg.cooldown_frac <= 1:
        raise ValueError(f"cooldown_frac must lie in (0, 1], got {cfg.cooldown_frac!r}")
    _check_processes(cfg)
    if cfg.resume not in (0, 1):
        raise ValueError(f"resume must be 0 or 1, got {cfg.resume!r}")
    if cfg.dataset not in DATASETS:
        raise ValueError(f"dataset {cfg.dataset!r} is not one of {', '.join(DATASETS)}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision {cfg.precision!r} is not one of {', '.join(PRECISIONS)}")
    if cfg.precision != "fp32" and cfg.device == "cpu":
        raise ValueError(f"precision {cfg.precision!r} needs a CUDA device; device is 'cpu'")
    if not (cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:")):
        raise ValueError(f"device {cfg.device!r} is not cpu, cuda, cuda:N or auto")
    check_size(cfg.model, cfg.size)
    check_task(table(cfg.targets), task(cfg.model))


def _check_processes(cfg: CellConfig) -> None:
    """``nproc_per_node`` against the rest of the config; the machine's devices are checked
    where the cell runs (msl.distributed.check)."""
    n = cfg.nproc_per_node
    if n < 1:
        raise ValueError(f"nproc_per_node must be at least 1, got {n!r}")
    if cfg.batch_size % n:
        raise ValueError(f"nproc_per_node={n} must divide batch_size={cfg.batch_size}: each "
                         "process takes an equal part of every global batch")
    if cfg.n_train < n:
        raise ValueError(f"nproc_per_node={n} exceeds n_train={cfg.n_train}: every process "
                         "needs at least one training structure")
    if n > 1 and cfg.device.startswith("cuda:"):
        raise ValueError(f"nproc_per_node={n} needs device 'cuda' or 'auto' (each process takes "
                         f"its own GPU, cuda:LOCAL_RANK), got {cfg.device!r}")
