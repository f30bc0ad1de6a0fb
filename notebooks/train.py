# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # One grid cell: train, evaluate, record
#
# Papermill runs this notebook once per cell of a study's grid (`msl sweep`), injecting the
# cell's parameters below the `parameters` cell. Everything happens in `msl.cell.run`; this
# notebook only shows the result. Defaults train a tiny model for a few seconds on a laptop CPU.

# %% tags=["parameters"]
study = "scratch"  # study name, recorded
cell_id = ""  # empty: derived from the other fields (stable hash)
record_dir = ""  # folder for the JSON record; empty: write no record
data_path = ""  # .aselmdb file/folder, ASE .db or extxyz; empty: embedded EMT set
dataset = "emt"  # embedded set only: emt (4-32 atoms) | emt-vdos (4-8 atoms + spectra) | chgnet (4-16 atoms, 59 elements)
pool_size = 300  # embedded set only: structures generated (cached by size+seed)
data_seed = 0  # embedded set only: generation seed
n_val = 50  # fixed validation structures
n_test = 50  # fixed test structures
split_seed = 0  # fixes val/test membership, independent of `seed`
n_train = 64  # D: training structures (nested prefix of one permutation)
reference = "train"  # per-element reference energies fitted on: train (the D training structures) | pool (every structure outside val and test)
model = "optimetal2b"  # family name, a key of msl.models.MODELS
size = 0  # rung of the family's size ladder
seed = 0  # initialisation, training order and subset permutation
epochs = 3  # passes over the D training structures (at least)
min_steps = 0  # more epochs for small D: every run takes at least this many steps
batch_size = 16  # structures per step
max_lr = 2e-3  # peak learning rate after linear warm-up, then cosine decay
lr_gamma = 0.0  # width rule: peak lr is max_lr times (N over lr_ref_params) to the power -lr_gamma
lr_ref_params = 0  # N at which the peak lr is max_lr (0: no rescaling)
warmup_frac = 0.05  # fraction of all steps spent warming up
min_lr_frac = 0.01  # final learning rate as a fraction of max_lr
weight_decay = 0.0  # AdamW decoupled weight decay
grad_clip = 10.0  # max global gradient norm; 0 disables clipping
patience = 0  # early stopping after this many validations without improvement; 0: off
max_steps = 0  # step cap of the early-stopping protocol; 0: fixed epochs (epochs, min_steps)
eval_every = 0  # validate every this many steps (whole epochs); 0: at most 12 times per run
schedule = "cosine"  # cosine (to min_lr_frac over the planned steps) | wsd (constant, cool-down at the end)
warmup_steps = 0  # linear warm-up steps; 0: warmup_frac of the planned steps
cooldown_frac = 0.2  # wsd: cool-down length as a fraction of the steps to the best validation
lr_decay = 0.3  # plateau: factor on the learning rate after `patience` validations without improvement
targets = "default"  # a preset (default, trikha, grossmann, spectral) or "target:loss:weight, ..."
precision = "fp32"  # fp32 | bf16 | fp16 (mixed precision needs CUDA)
device = "cpu"  # cpu | cuda | cuda:N | auto
threads = 0  # torch CPU threads; 0: auto, the idle cores (msl.threads.auto_threads)
resume = 1  # 1: save the training state at each validation and resume a cut-off run
nproc_per_node = 1  # processes (ranks) training the cell together, one per GPU (msl.distributed)
num_workers = 0  # DataLoader processes that read structures and build graphs; 0: none

# %%
from msl import cell, config, plot, report

cfg = config.from_dict({name: globals()[name] for name in config.NAMES})
cfg.with_id().cell_id

# %% [markdown]
# ## Training
# Unknown or bad values stop here, before any work, with a message naming them.

# %%
# NBVAL_IGNORE_OUTPUT
record = cell.run(cfg, progress=False)
report.timing(record)

# %% [markdown]
# ## Result
# Metrics of the best-validation state: the loss of the cell's target table (`targets`), and the
# MAE of every output: energy in eV/atom, force per component in eV/Å, stress per component in
# GPa; for spectral models the spectrum (embedded set: vibrational DOS, 1/THz) and the scalar
# (RMS frequency, THz).

# %%
report.summary(record)

# %%
_ = plot.loss_curve(record)
