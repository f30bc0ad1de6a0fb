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
# # Broken scaling of a spectral target: OptiMetal2B and 3B on vibrational spectra
#
# Großmann et al. (2026) trained invariant GNNs to predict a spectrum on a frequency grid (the
# interband dielectric function) together with one scalar (the Drude frequency), and found a
# *broken* power law in the number of training structures D, a power law in the number of
# parameters N that saturates quickly, and a Kaplan-type map L(N, D). Their data cannot be
# downloaded here, so this study gives the embedded EMT dataset an analogous frequency-resolved
# target computed by the same physics calculator: the vibrational density of states of each
# small cell (finite-difference Hessian, 141 points on [−8, 20] THz) and its RMS frequency (see
# the data chapter of this study).
#
# The three models are theirs, parameter for parameter (at the paper's 4,002 outputs our
# builds have exactly the published N at every width, a test checks it): OptiMetal2B with CGC or
# TransformerConv message passing, and OptiMetal3B with three-body messages over bond pairs
# within 4 Å. The loss is MAE(spectrum) + MAE(scalar), each divided by the target's spread in the
# training set (the paper's two terms happen to be of similar size; ours, in 1/THz and THz, are
# not). As in the paper, the TransformerConv models' learning rate is rescaled with size as
# lr = lr_ref (N/N_ref)^−1, CGC keeps a fixed one; three seeds per cell in the 1D scans.
# Everything below is computed from the study's records; nothing here trains.

# %% tags=["parameters"]
study_dir = "../tests/fixtures/spectral"  # folder holding grid.yaml and records/

# %% tags=["hide-input"]
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from msl import analysis, grid as grids
from msl.plot import scaling

warnings.simplefilter("ignore", RuntimeWarning)  # overflow in fit starts far from the optimum
study = grids.load(study_dir)
df = analysis.table(study)
FAMILIES = {"optimetal2b_spectral": "2B-CGC", "optimetal2b_tc_spectral": "2B-TC",
            "optimetal3b_spectral": "3B"}
print(f"study {study.study!r}: {study.description}")
df.groupby(["scan", "status"]).size().rename("runs").unstack(fill_value=0)

# %% [markdown]
# ## 1D scans: fits of four laws, ranked by AICc
# Each scan's seed means are fitted in linear space, weighted by the spread over the three seeds
# (the paper's procedure), with four laws: the simple power law $L = (x_0/x)^\alpha$, the law with
# a floor $L = L_\infty + (x_0/x)^\alpha$, the broken law
# $L = (x_c/x)^{\alpha_2}(1 + x_c/x)^{\alpha_1 - \alpha_2}$ (slope $\alpha_1$ below $x_c$,
# $\alpha_2$ above) and Caballero et al.'s BNSL with one break (6 parameters). AICc uses the
# unweighted residuals, as the paper computed it; with 7 or 5 points BNSL's small-sample
# correction is undefined (n ≤ k + 1), so it cannot be ranked on these scans and says so.

# %% tags=["hide-input"]
fitted = {}
for family in FAMILIES:
    for axis, kind in (("n_train", "data"), ("size", "params")):
        (scan,) = analysis.scan_names(study, axis=axis, model=family)
        fitted[(family, kind)] = analysis.fit_forms(df, study, scan)
ranks = analysis.ranking({f"{FAMILIES[f]} {k}": v for (f, k), v in fitted.items()})
ranks.astype(object).fillna("").set_index(["scan", "rank"])

# %% [markdown]
# ## Data and parameter scaling (the paper's Fig. 1)
# Top row: loss against D at $d_h$ = 16 with the broken law and the simple laws fitted to the
# first three and the last three points (the paper's "asymptotic fits": a break shows as two
# different slopes). Bottom row: loss against N at D = 400 with the law with a floor. Error bars:
# standard deviation over three seeds; bands: 95 % intervals of the fit.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(14, 8), layout="constrained")
for column, (family, name) in enumerate(FAMILIES.items()):
    scaling.scan_panel(axes[0, column], fitted[(family, "data")], "broken_power_law",
                       xlabel=scaling.D_LABEL, ylabel="validation loss", asymptotes=3,
                       color=f"C{column}", label=name)
    scaling.scan_panel(axes[1, column], fitted[(family, "params")], "power_law_floor",
                       xlabel=scaling.N_LABEL, ylabel="validation loss", color=f"C{column}",
                       label=name)
    axes[0, column].set_title(name)
_ = fig

# %% [markdown]
# What the fits say, scan by scan (sentences written by `msl.analysis` from the fits above; a
# break or a slope the data do not determine is named as undetermined, never quoted):

# %% tags=["hide-input"]
for family, name in FAMILIES.items():
    print(f"{name}, data:   {analysis.break_verdict(fitted[(family, 'data')])}")
    print(f"{name}, params: {analysis.saturation_verdict(fitted[(family, 'params')])}")

# %% [markdown]
# ## The 2D map L(N, D) (the paper's Fig. 2)
# 2B-TC and 3B on a 5 × 5 grid of widths ($d_h$ = 4 … 64) and training-set sizes (D = 50 …
# 800), one seed, fitted with the Kaplan-type form broken in D,
# $L = [(N_c/N)^{\alpha_N/\alpha_{D,2}} + (D_c/D)(1 + D_c/D)^{\alpha_{D,1}/\alpha_{D,2} - 1}]^{\alpha_{D,2}}$.

# %% tags=["hide-input"]
maps = {}
for family in ("optimetal2b_tc_spectral", "optimetal3b_spectral"):
    (scan,) = analysis.scan_names(study, model=family, maps=True)
    maps[FAMILIES[family]] = analysis.fit_map(df, study, scan)
analysis.map_table(maps)

# %% tags=["hide-input"]
for name, m in maps.items():
    if len(m["y"]):
        display(scaling.map_2d(m["n"], m["d"], m["y"], m["fit"], loss_label="validation loss",
                               title=name))

# %% [markdown]
# ## Beside the paper
# The paper's own choices (the broken law for D, the floor for N) fitted to our scans, next to
# their published parameters (their Tab. 1). The exponents and the place of the break relative
# to the data range are what can be compared: the scales ($x_c$, $x_0$) count different things
# (their D is up to 160,000 DFT spectra and their N up to 10^8; ours are 1,600 EMT cells and
# 5·10^5 parameters), and their losses are plain MAEs of a different spectrum.

# %% tags=["hide-input"]
analysis.paper_comparison(fitted)

# %% [markdown]
# ## Was the training long enough?
# The CGC parameter scan was repeated at both ends with twice the epochs and steps. Large
# changes mean the exponents describe this training budget, not converged models; the paper
# trained for 500 epochs, which 2 CPU cores cannot.

# %% tags=["hide-input"]
checks = analysis.budget_check(df, study)
print(analysis.budget_verdict(checks))
checks.round(4)

# %% [markdown]
# ## Cost
# Wall time per run (papermill, data loading and evaluation included) and training compute.

# %% tags=["hide-input"]
df.groupby("model").agg(runs=("cell_id", "nunique"), wall_s=("wall_s", "sum"),
                        flops=("flops", "sum")).round(0)
