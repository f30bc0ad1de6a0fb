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
# # Scaling of an invariant GNN potential on the embedded EMT dataset
#
# This chapter is the executed analysis notebook of one study: it reads the study's grid and
# records (one JSON record per trained cell), fits $L = (x_0/x)^{\alpha}$ to the validation loss
# against the number of training structures $D$ and against the number of parameters $N$, and
# checks whether the runs at the ends of each scan were trained long enough. Nothing here trains:
# re-running it needs only the records.

# %% tags=["parameters"]
study_dir = "../tests/fixtures/study"  # folder holding grid.yaml and records/

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
from myst_nb import glue

from msl import analysis, grid as grids
from msl.plot import scaling

study = grids.load(study_dir)
df = analysis.table(study)
print(f"study {study.study!r}: {study.description}")
df.groupby(["scan", "status"]).size().rename("cells").to_frame()

# %% [markdown]
# ## All runs
# Validation and test metrics of the best-validation state of every cell: loss is the weighted
# normalised MSE (dimensionless), energy MAE in eV/atom, force MAE per component in eV/Å, stress
# MAE per component in GPa; C is the training compute in FLOPs (matmul FLOPs counted by
# `torch.utils.flop_counter` on a real step, times the atoms seen).

# %% tags=["hide-input"]
columns = ["scan", "model", "size", "n_params", "n_train", "seed", "epochs_run", "steps", "flops",
           "converged", "val/loss", "val/energy_mae", "val/forces_mae", "val/stress_mae"]
df[columns].sort_values(["scan", "n_params", "n_train"]).round(4).reset_index(drop=True)

# %% [markdown]
# ## Data and parameter scaling
# Each panel shows one scan (validation loss against its axis) with the fitted power law and its
# uncertainty band. Exponents come with standard errors from the fit's covariance, weighted by the
# spread over seeds where a scan has several seeds, and are rounded to what the error supports; a
# parameter the points do not determine (too few of them, or an error larger than the value) is
# shown as "undetermined", with the reason.

# %% tags=["hide-input"]
fits = {name: analysis.fit_scan(df, study, name) for name in study.scans}
fig, axes = plt.subplots(1, len(fits), figsize=(5 * len(fits), 3.8), layout="constrained",
                         squeeze=False)
for ax, (name, result) in zip(axes[0], fits.items()):
    scaling.loglog(ax, result.x, result.y, yerr=result.sigma, fit=result.result, label=name)
    ax.set_xlabel(analysis.X_LABEL[result.x_name])
    ax.set_ylabel("validation loss L")
    ax.set_title(f"{name}: {result.result.stated('alpha')}")
for name, result in fits.items():
    glue(f"alpha_{name}", result.result.shown("alpha"), display=False)
    glue(f"range_{name}", f"{result.x.min():.3g} to {result.x.max():.3g}", display=False)

# %% tags=["hide-input"]
analysis.fits_table(fits)

# %% [markdown]
# ## Per-target errors
# The same scans, broken down into the three targets the loss combines.

# %% tags=["hide-input"]
targets = [("val/energy_mae", "energy MAE (eV/atom)"), ("val/forces_mae", "force MAE (eV/Å)"),
           ("val/stress_mae", "stress MAE (GPa)")]
fig, axes = plt.subplots(len(fits), 3, figsize=(13, 3.4 * len(fits)), layout="constrained",
                         squeeze=False)
for row, name in zip(axes, fits):
    for ax, (metric, label) in zip(row, targets):
        x_name, x, y, sigma = analysis.scan_points(df, study, name, metric)
        scaling.loglog(ax, x, y, yerr=sigma, label=name)
        ax.set_xlabel(analysis.X_LABEL[x_name])
        ax.set_ylabel(label)

# %% [markdown]
# ## Is each point trained to convergence?
# A point on a scaling curve means something only if more training would not move it. For the
# smallest and the largest value of each scan's axis the grid also trains the same cell with
# twice the epochs (and twice the minimum number of steps); a change of the validation loss below 5% counts as converged. Where it is
# larger, the exponent above mixes data or model scaling with under-training, and is a property
# of this training budget rather than of the model.

# %% tags=["hide-input"]
checks = analysis.budget_check(df, study)
glue("budget_verdict", analysis.budget_verdict(checks), display=False)
checks.round(4) if len(checks) else "no budget checks in this grid"

# %% [markdown]
# ## Loss against compute
# Every finished run, coloured by model size: the lower envelope is the compute-optimal frontier
# of this study.

# %% tags=["hide-input"]
ok = df[df.status == "ok"].drop_duplicates("cell_id")
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
scaling.frontier(ax, ok["flops"].to_numpy(), ok["val/loss"].to_numpy(), groups=ok["n_params"].to_numpy())
ax.set_xlabel(analysis.X_LABEL["flops"])
_ = ax.set_ylabel("validation loss L")

# %% [markdown]
# ## Findings
# - Data scaling over D = {glue:text}`range_data`: $\alpha_D$ = {glue:text}`alpha_data`.
# - Parameter scaling over N = {glue:text}`range_params`: $\alpha_N$ = {glue:text}`alpha_params`.
# - Convergence: {glue:text}`budget_verdict`.
