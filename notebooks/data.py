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
# # The dataset
#
# What the models of this study learn from, before any model sees it: sizes, labels and
# composition of every structure in the pool (training, validation and test sets together).
# `msl study` executes this notebook for the study's dataset; its defaults show a small
# embedded pool.

# %% tags=["parameters"]
data_path = ""  # .aselmdb file/folder, ASE .db or extxyz; empty: embedded EMT set
dataset = "emt"  # embedded set only: emt (4-32 atoms) | emt-vdos (4-8 atoms + spectra) | chgnet (4-16 atoms, 59 elements)
pool_size = 300  # embedded set only: structures generated (cached by size+seed)
data_seed = 0  # embedded set only: generation seed

# %% tags=["hide-input"]
import pandas as pd

from msl import cell, config, data
from msl.data import store
from msl.plot import data as data_plots

cfg = config.from_dict({"data_path": data_path, "dataset": dataset, "pool_size": pool_size,
                        "data_seed": data_seed})
path = cell.dataset_path(cfg, progress=False)
structures = data.read(path)
pd.Series(data_plots.summary(structures), name="value").to_frame()

# %% [markdown]
# The embedded sets are generated offline, each by its own recipe. `emt` and `emt-vdos`: ASE's
# EMT potential labels random fcc, bcc and hcp alloy cells of Al, Cu, Ag, Au, Ni, Pd and Pt,
# strained and rattled as OMat24's structures were (`msl.data.generate`). `chgnet`: elemental
# crystals and binary and ternary decorations of common prototypes across 59 elements, rattled,
# strained or heated by 20 fs of molecular dynamics, labelled by the universal potential CHGNet
# (`msl.data.chgnet`). Both drop structures with overlapping atoms or forces above 20 eV/Å. How
# this pool was generated (from the file's sidecar; nothing for a real dataset):

# %% tags=["hide-input"]
made = store.provenance(path)
pd.Series(made, name="value").to_frame() if made else print("a real dataset: no generation record")

# %% tags=["hide-input", "nbval-ignore-output"]
print(store.generation_time(path) or "")

# %% tags=["hide-input"]
_ = data_plots.overview(structures)

# %% [markdown]
# Where the dataset carries spectra (the `emt-vdos` kind, or a file with its own), the target of
# the spectral models: the vibrational density of states from the finite-difference Hessian of
# each small cell (mass-weighted, Gaussian-broadened, unit area; imaginary modes of the rattled,
# unrelaxed cells sit at negative frequency) and its scalar summary, the RMS frequency
# (`msl.data.spectra`). Without spectra this cell prints a line and draws nothing.

# %% tags=["hide-input"]
if structures.has_spectra:
    _ = data_plots.spectra(structures)
else:
    print("no spectra in this dataset")
