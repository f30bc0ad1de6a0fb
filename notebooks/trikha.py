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
# # Energies, forces and stresses: scaling in data, parameters and compute
#
# Trikha et al. (2025) trained a plain transformer over atoms and EquiformerV2 on OMat24 and
# fitted $L = a X^{-\alpha}$ to the validation loss against the number of training structures
# D, parameters N and training compute C. This chapter runs their study on the embedded EMT
# dataset with their loss, $2.5\,\mathrm{MAE}(E/\mathrm{atom}) + 20\,\mathrm{L2MAE}(F) +
# 5\,\mathrm{MAE}(\sigma_\mathrm{iso}) + 5\,\mathrm{MAE}(\sigma_\mathrm{aniso})$ (eV/atom, eV/Å and
# eV/Å³; `msl.targets`), for three families:
#
# - **transformer**: theirs, atoms as tokens with raw Cartesian positions and direct force and
#   stress heads; it sees neither periodicity nor rotations;
# - **transformer_local**: the same trunk attending only to neighbours within 5 Å (periodic
#   images included) with a distance bias, and force and stress heads built from bond vectors, so
#   that it respects translations, rotations and periodicity: what the plain one misses;
# - **equiformer_v2**: EquiformerV2 from fairchem-core's equivariant blocks, with direct force and
#   rank-2 stress heads, as Trikha et al. trained it.
#
# fairchem-core's eSCN-MD, the fourth family of msl (conservative: forces and stress as
# derivatives of the energy), costs seconds per training step on one CPU core, so it is in the
# GPU grid (`grids/trikha-omat24`) but not in this CPU study. Every run trains until early
# stopping ends it (the reduce-on-plateau protocol of the training page) and keeps its best
# validation state; the checks below say whether twice the patience and the step cap would still
# move it. To afford that on 2 CPU cores the scans are narrower than the other chapters' (one
# decade each, the equivariant model's at small D).
#
# Compute scaling needs no runs of its own: along every run of the parameter scans the loss is
# recorded against the FLOPs spent so far (counted by `torch.utils.flop_counter` on a real
# training step), and the compute-optimal frontier is the lower envelope over model sizes.
# Everything below is computed from the study's records; nothing here trains.

# %% tags=["parameters"]
study_dir = "../tests/fixtures/trikha"  # folder holding grid.yaml and records/

# %% tags=["hide-input"]
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from IPython.display import display
from myst_nb import glue

from msl import analysis, convergence, grid as grids, tuning
from msl.plot import scaling, training

warnings.simplefilter("ignore", RuntimeWarning)  # overflow in fit starts far from the optimum
study = grids.load(study_dir)
df = analysis.table(study)
report = convergence.report(study)
families = list(dict.fromkeys(df.model))
print(f"study {study.study!r}: {study.description}")
df.groupby(["scan", "status"]).size().rename("runs").unstack(fill_value=0)

# %% [markdown]
# ## All runs
# Metrics of the best-validation state of every run: the loss above (dimensionless sum of MAEs
# in eV/atom, eV/Å, eV/Å³ with Trikha's weights), and the energy MAE (eV/atom), force MAE per
# component (eV/Å) and stress MAE per component (GPa); what ended each run.

# %% tags=["hide-input"]
df = df.merge(report.frame[["cell_id", "scan", "stop_reason"]], on=["cell_id", "scan"], how="left")
columns = ["scan", "n_params", "n_train", "seed", "steps", "stop_reason", "flops", "val/loss",
           "val/energy_mae", "val/forces_mae", "val/stress_mae", "wall_s"]
df[columns].sort_values(["scan", "n_params", "n_train"]).round(4).reset_index(drop=True)

# %% [markdown]
# ## Convergence of every scan
# Both ends of each scan were trained a second time with the patience and the step cap doubled:
# unless the longer run lowered the best validation loss by 5% or more, the point counts as
# converged (a longer run that ended higher is named in the verdict). The
# points between the ends count as converged when their runs were ended by early stopping
# rather than by the cap.

# %% tags=["hide-input"]
glue("trikha_verdict", report.verdict, display=False)
report.shown_checks()

# %% [markdown]
# Validation loss against step for every run, one panel per scan (dots: best validations;
# crosses: runs cut by the cap):

# %% tags=["hide-input"]
_ = training.curves_figure(study, report.frame, report.scans, report.records)

# %% [markdown]
# ## Learning rate per size
# For each parameter scan, short runs at three peak learning rates (10x apart end to end) at its
# smallest and its largest model: the best of each next to the one fixed rate the scan uses,
# which agrees when it is within a factor of $\sqrt{10}$.

# %% tags=["hide-input"]
tuning.section(report.frame, study)

# %% [markdown]
# ## Does each family learn forces?
# A force MAE is only meaningful beside that of predicting zero force on every atom (the mean
# absolute force component of the validation set). Trikha et al. report that their plain
# transformer's force error plateaus; here, per family and D, the ratio of the two (below 1:
# better than zero forces).

# %% tags=["hide-input"]
learns = analysis.force_baseline(df, study)
glue("trikha_forces", analysis.force_verdict(learns), display=False)
learns

# %% [markdown]
# Forces: {glue:text}`trikha_forces`.
#
# ## Data and parameter scaling on converged points
# $L = (x_0/x)^{\alpha}$ fitted to the converged points of each scan (seed means where there are
# several seeds), only where at least five remain; hollow points are not converged, left out of
# the fit, and named below. Then each law, fitted without the two largest converged points,
# predicts them with a 95% interval.

# %% tags=["hide-input"]
_ = training.fits_figure(report.fitted, report.x_labels(analysis.X_LABEL))
convergence.fit_table(report.fitted)

# %% tags=["hide-input"]
for name, (pts, result, why) in report.fitted.items():
    print(f"{name}: left out: {convergence.not_converged(pts)}")
    table, reason = convergence.predictions(pts)
    print(f"  prediction of the two largest points: {reason}" if reason else "")
    if not table.empty:
        display(convergence.shown_predictions(table))

# %% [markdown]
# The same converged points, for each family and scan: the simple power law fitted in log space
# (the headline exponent), the simple, floor, broken and BNSL laws ranked by AICc (linear space,
# as Großmann et al.), and the extrapolation error of the simple law fitted without the two
# largest points (RMS error of log L on the held-out points, beside the in-sample one).

# %% tags=["hide-input"]
converged = df[df.cell_id.isin(report.good)]
exponents, fitted, headline = analysis.exponent_fits(converged, study, families)
exponents

# %% [markdown]
# ## Compute scaling and the compute-optimal frontier
# Each curve is one run of a parameter scan (one model size), its validation loss against the
# training FLOPs spent up to that validation; the black line is the lower envelope over sizes,
# and $L = (C_0/C)^{\alpha_C}$ is fitted in log space to the runs that make it up.

# %% tags=["hide-input"]
panels = [f for f in families if analysis.scan_names(study, axis="size", model=f)]
fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), layout="constrained",
                         squeeze=False)
compute_rows = []
for ax, family in zip(axes[0], panels):
    curves = analysis.compute_curves(study, analysis.scan_names(study, axis="size", model=family)[0])
    front, result = analysis.frontier_fit(curves)
    scaling.frontier(ax, curves.flops, curves["val/loss"], groups=curves.n_params,
                     loss_label="validation loss")
    ax.set_title(family)
    if result is not None:
        grid = np.geomspace(front.flops.min(), front.flops.max(), 50)
        ax.plot(grid, result.predict(grid), "--", color="C3", lw=1.2,
                label=result.stated("alpha", "α_C"))
        ax.legend(fontsize=6)
        compute_rows.append(analysis.exponent_row(family, "C", front.flops.to_numpy(), result))
_ = fig

# %% [markdown]
# ## Our exponents beside the published ones
# Trikha et al. report, for EquiformerV2 on OMat24, $\alpha_N$ = 0.383, $\alpha_C$ = 0.339 and
# $\alpha_D$ = 0.242 (no uncertainties given; for their transformer the fits were "not clean
# enough" to report); Frey et al. found 0.26 for data scaling of equivariant GNN potentials.

# %% tags=["hide-input"]
ours = pd.concat([exponents, pd.DataFrame(compute_rows)], ignore_index=True)
table = pd.concat([ours.reindex(columns=["model", "X", "alpha", "range", "decades"]),
                   analysis.published_exponents()], ignore_index=True)
table.sort_values(["X", "model"]).astype(object).fillna("").reset_index(drop=True)

# %% [markdown]
# What differs, and why the numbers need not agree:
#
# - **Data.** OMat24 has 10^8 DFT structures of 89 elements far from equilibrium; the embedded
#   set has a few thousand small EMT cells of 7 metals. EMT energies are smooth pair-functional sums,
#   easier to learn, and a 2,400-structure pool spans only about 1.5 decades of D.
# - **Range.** Every point here is trained to early stopping and checked, which on 2 CPU cores
#   means one decade of D (10 to 100 cells of 4 to 8 atoms) and models of at most 10^5
#   parameters; Trikha et al.'s scans span several decades on GPUs. Exponents over one decade
#   carry wide errors, and small D is where learning curves are steepest and least like their
#   asymptote.
# - **Loss and units.** The loss is a weighted sum of MAEs in eV/atom, eV/Å and eV/Å³, the same
#   weights as theirs; its absolute value depends on the label scale of the dataset, so the
#   prefactors $a$ are not comparable, only the exponents.
# - **Compute.** C here counts matmul FLOPs of forward and backward (FlopCounterMode), as
#   Trikha et al. did; their compute axis is in units that were not reported.
