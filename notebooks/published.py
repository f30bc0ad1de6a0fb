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
# # Großmann et al.'s published losses bear out their tables: data scaling breaks, parameter scaling saturates
#
# This chapter re-analyses the numbers Großmann et al. (2026, "Broken neural scaling laws in
# materials science", arXiv 2602.05702) published, not runs of ours: the mean validation loss
# over 3 seeds of their data scan (D = 2,500 to 160,000 training materials at width
# d_h = 256) and their parameter scan (d_h = 16 to 1024, N = 0.28 to 131 million parameters,
# at D = 20,000), for the models 2B-CGC, 2B-TC and 3B-TC. The loss is the validation MAE of
# the interband dielectric function (real and imaginary parts on 2001 frequencies) plus the MAE
# of the Drude frequency. The numbers, with their sources, are in `msl/published.py`; the
# analysis is in `msl/reanalysis.py` and the fits in `msl.fit`.
#
# One difference to the paper is unavoidable: they weighted each mean by its spread over seeds,
# and those spreads are not in our notes (only their range, 0.002 to 0.028). Our fits are
# unweighted least squares in linear space; AICc is computed on unweighted residuals, as the
# paper computed it.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from myst_nb import glue

from msl import published, reanalysis
from msl.plot import scaling

fits = reanalysis.fit_all()
ranking = reanalysis.ranking(fits)
comparison = reanalysis.comparison(fits)
asymptotes = reanalysis.asymptote_table()
extrapolation, extrapolation_runs = reanalysis.extrapolation_table(n_holdout=2)
map_check = reanalysis.map_check()
bnsl_check = reanalysis.bnsl_check()
best = ranking[ranking["rank"] == 1].set_index(["model", "scan"])["form"]
print(f"{len(fits)} scans fitted with {len(reanalysis.FORMS)} forms each; loss: {published.LOSS}")

# %% [markdown]
# ## The data scan is best described by a broken power law, the parameter scan by a floor
# Every form fitted to every scan, ranked by AICc (lower is better; a difference below about 2
# does not distinguish two forms; `weight` is the Akaike weight). `published rank` ranks the
# paper's AICc among all forms it printed for that scan, including its broken law with an
# amplitude, which we do not fit. The paper printed no AICc for the simple power law on the
# parameter scan ("Unstable fit"). `poorly determined` says which parameters the data do not
# pin down, and why.

# %% tags=["hide-input"]
ranking

# %% [markdown]
# ## Our parameters agree with the published ones within their uncertainties
# Our fitted values ± one standard error (rounded to what the error supports; a parameter the
# data do not determine is shown as "undetermined", with the reason) beside the published ones as
# the paper printed them. `agree` is True when the two differ by at most twice their combined
# standard error, with a published error printed as 0.00, or not printed, taken as the printing
# resolution (0.005, or a factor 10^0.005 for scales printed as 10^a); it is empty where ours is
# undetermined. Exponents and floors first (dimensionless), then the scales x0 and x_c (in
# training materials for the data scan, parameters for the parameter scan).

# %% tags=["hide-input"]
comparison[~comparison["parameter"].isin(reanalysis.SCALES)].reset_index(drop=True)

# %% tags=["hide-input"]
comparison[comparison["parameter"].isin(reanalysis.SCALES)].reset_index(drop=True)

# %% [markdown]
# ## In the style of the paper's Fig. 1
# Top: loss against D at d_h = 256; bottom: loss against N at D = 20,000. Dashed lines are the
# forms the paper drew (broken law for data, floor for parameters), fitted by us, with their 95%
# band from the fit covariance. Grey lines are the simple power laws fitted on the first 3
# (dotted) and on the last 3 (dash-dotted) points of 2B-CGC, the paper's "asymptotic" fits that
# show the break.
# There are no error bars: the seed spreads are not in our notes.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 1, figsize=(6.5, 8), layout="constrained")
for ax, scan in zip(axes, reanalysis.SCANS):
    form = reanalysis.PAPER_FORM[scan]
    for model in published.MODELS:
        x, y = published.scan(scan, model)
        scaling.loglog(ax, x, y, fit=fits[(model, scan)][form], label=model, ylabel="L_val",
                       xlabel=scaling.D_LABEL if scan == "data" else scaling.N_LABEL)
    x, y = published.scan(scan, "2B-CGC")
    grid = np.geomspace(x.min(), x.max(), 100)
    for which, style, result in zip(("first", "last"), (":", "-."),
                                    reanalysis.asymptotes(x, y, 3)):
        ax.plot(grid, result.predict(grid), style, color="0.4", lw=1.2,
                label=f"2B-CGC {which} 3: {result.stated('alpha')}")
    ax.set_title(f"{scan} scan: {form}")
    scaling.plain_y_ticks(ax)
    ax.legend(frameon=False, fontsize=7)
_ = fig

# %% [markdown]
# ## The local exponent changes along every scan
# A simple power law on the first 3 and on the last 3 points of each scan, as the paper's
# asymptotic fits (a straight line in log-log space, with its standard error). `change` says
# whether the last exponent is steeper or flatter than the first by more than twice their
# combined standard error.

# %% tags=["hide-input"]
asymptotes

# %% [markdown]
# ## Fitted on the smaller points, the laws predict the two largest to within a few per cent at best
# Each form fitted on the 5 smallest points of a scan and scored on the 2 largest (held out):
# root-mean-square log error in the fit and on the held-out points, and the mean relative error
# on the held-out points. `poorly determined` says what the 5 points do not pin down (for the
# broken law: a break outside the fitted range).

# %% tags=["hide-input"]
extrapolation

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(13, 7), layout="constrained")
for row, scan in zip(axes, reanalysis.SCANS):
    for ax, model in zip(row, published.MODELS):
        x, y = published.scan(scan, model)
        for form in reanalysis.FORMS:
            run = extrapolation_runs[(model, scan, form)]
            grid = np.geomspace(x.min(), x.max(), 100)
            ax.plot(grid, run.fit.predict(grid), "--", lw=1.1,
                    label=f"{form}: held-out RMSLE {run.rmsle_holdout:.3f}")
        ax.plot(x[:-2], y[:-2], "ko", ms=4, label="fitted")
        ax.plot(x[-2:], y[-2:], "o", mfc="none", mec="C3", ms=7, label="held out")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(scaling.D_LABEL if scan == "data" else scaling.N_LABEL)
        ax.set_ylabel("L_val")
        ax.set_title(f"{model}, {scan} scan")
        scaling.plain_y_ticks(ax)
        ax.legend(frameon=False, fontsize=6)
_ = fig

# %% [markdown]
# ## The floor in N is set by the data: at D = 160,000 the same widths reach a much lower floor
# Our notes hold one more slice of the paper's 2D grid: the loss of 2B-TC and 3B-TC at
# D = 160,000 for the same seven widths (we assume the same N per width as in the parameter
# scan). Beside the D = 20,000 scan, with a floor law fitted to each slice. The table checks
# the published 2D map (Kaplan-type, broken in D; the paper's Tab. 2) against the published 1D
# means it should reproduce.

# %% tags=["hide-input"]
grid_fits = {model: reanalysis.fit_forms(published.PARAM_SCAN_N[model], loss)
             for model, loss in published.GRID_LOSS_AT_D.items()}
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for ax, (model, loss) in zip(axes, published.GRID_LOSS_AT_D.items()):
    n = published.PARAM_SCAN_N[model]
    scaling.loglog(ax, n, published.PARAM_SCAN_LOSS[model],
                   fit=fits[(model, "params")]["power_law_floor"], label="D = 20,000",
                   xlabel=scaling.N_LABEL, ylabel="L_val")
    scaling.loglog(ax, n, loss, fit=grid_fits[model]["power_law_floor"], label="D = 160,000",
                   xlabel=scaling.N_LABEL, ylabel="L_val")
    for d in (published.PARAM_SCAN_D, published.GRID_D):
        ax.plot(n, reanalysis.map_prediction(model, n, np.full(n.size, float(d))), "-",
                color="0.5", lw=0.8)
    ax.set_title(f"{model} (grey: published 2D map)")
    scaling.plain_y_ticks(ax)
    ax.legend(frameon=False, fontsize=7)
_ = fig

# %% tags=["hide-input"]
map_check

# %% [markdown]
# ## BNSL does not fit seven points with a break
# Caballero et al.'s BNSL with one break has 6 parameters: on 7 points AICc is undefined
# (n ≤ k + 1) and the fit is flagged poorly determined, so it is left out of the ranking.
# Without a break it is a + b x^(-c0), the floor law with the floor free in sign; on the data
# scans it reaches a negative floor a (an unphysical loss limit) to bend the line as the break
# does.

# %% tags=["hide-input"]
bnsl_check

# %% [markdown]
# ## Other published exponents, for scale
# Exponents L ∝ X^(-alpha) quoted by other materials and chemistry studies (from our research
# notes, without uncertainties): Trikha et al.'s EquiformerV2 on OMat24 and Frey et al.'s
# chemical models, beside the exponents fitted here.

# %% tags=["hide-input"]
others = [{"study": "Trikha et al. 2025, EquiformerV2", "resource": f"{axis}",
           "alpha": f"{law['beta']:g}"} for axis, law in published.TRIKHA_EQV2.items()]
others += [{"study": f"Frey et al. 2023, {name}", "resource": "data", "alpha": f"{value:g}"}
           for name, value in published.FREY_EXPONENTS.items()]
for model in published.MODELS:
    data, params = fits[(model, "data")], fits[(model, "params")]
    others += [
        {"study": f"this re-analysis, {model}", "resource": "data (simple law)",
         "alpha": data["power_law"].shown("alpha")},
        {"study": f"this re-analysis, {model}", "resource": "data (large-D, broken law)",
         "alpha": data["broken_power_law"].shown("alpha_2")},
        {"study": f"this re-analysis, {model}", "resource": "params (floor law)",
         "alpha": params["power_law_floor"].shown("alpha")}]
pd.DataFrame(others)

# %% tags=["hide-input"]
agree = comparison["agree"].dropna()
glue("n_agree", f"{int(agree.sum())} of {agree.size}", display=False)
glue("n_not_compared", f"{comparison['agree'].isna().sum()}", display=False)
same_best = ranking[ranking["rank"] == 1]["published rank"].eq(1)
glue("n_same_best", f"{int(same_best.sum())} of {same_best.size}", display=False)
for model in published.MODELS:
    key = model.replace("-", "_")
    broken = fits[(model, "data")]["broken_power_law"]
    floor = fits[(model, "params")]["power_law_floor"]
    pub_broken = published.published_fit("data", "broken_power_law", model)["params"]
    pub_floor = published.published_fit("params", "power_law_floor", model)["params"]
    glue(f"best_data_{key}", best[(model, "data")], display=False)
    glue(f"best_params_{key}", best[(model, "params")], display=False)
    glue(f"a1_{key}", broken.shown("alpha_1"), display=False)
    glue(f"a2_{key}", broken.shown("alpha_2"), display=False)
    glue(f"dc_{key}", broken.shown("x_c"), display=False)
    glue(f"pub_a1_{key}", f"{pub_broken['alpha_1'][0]:.2f}", display=False)
    glue(f"pub_a2_{key}", f"{pub_broken['alpha_2'][0]:.2f}", display=False)
    glue(f"an_{key}", floor.shown("alpha"), display=False)
    glue(f"linf_{key}", floor.shown("L_inf"), display=False)
    glue(f"pub_an_{key}", f"{pub_floor['alpha'][0]:.2f}", display=False)
    glue(f"pub_linf_{key}", f"{pub_floor['L_inf'][0]:.2f}", display=False)
tc_params = ranking[(ranking["model"] == "2B-TC") & (ranking["scan"] == "params")]
glue("tc_params_daicc", f"{tc_params['dAICc'].iloc[1]:.1f}", display=False)
cgc = asymptotes[(asymptotes["model"] == "2B-CGC") & (asymptotes["scan"] == "data")].iloc[0]
glue("cgc_first", cgc["alpha first"], display=False)
glue("cgc_last", cgc["alpha last"], display=False)
held = extrapolation[extrapolation["scan"] == "data"].set_index(["model", "form"])
for model in published.MODELS:
    key = model.replace("-", "_")
    glue(f"ex_simple_{key}", f"{100 * held.loc[(model, 'power_law'), 'rel. error held out']:.0f}%",
         display=False)
    glue(f"ex_broken_{key}",
         f"{100 * held.loc[(model, 'broken_power_law'), 'rel. error held out']:.0f}%",
         display=False)
for model, results in grid_fits.items():
    key = model.replace("-", "_")
    floor = results["power_law_floor"]
    glue(f"grid_linf_{key}", floor.shown("L_inf"), display=False)
glue("map_max_error", f"{100 * map_check['max |rel. error|'].max():.0f}%", display=False)

# %% [markdown]
# ## Findings
# * **The published tables hold up.** Re-fitted from the published means alone, without the
#   seed weights, {glue:text}`n_agree` published parameters agree with ours within twice their
#   combined standard errors ({glue:text}`n_not_compared` more, the floors of the floor law on
#   the data scans, sit on their bound 0 and are undetermined, as the paper's 0.00 says), and
#   our AICc ranking puts first the form the paper's ranking put
#   first in {glue:text}`n_same_best` scans.
# * **Data scaling breaks and gets steeper.** AICc prefers the broken power law on the data scan
#   of 2B-CGC ({glue:text}`best_data_2B_CGC`), 2B-TC ({glue:text}`best_data_2B_TC`) and 3B-TC
#   ({glue:text}`best_data_3B_TC`). The small-D exponents are {glue:text}`a1_2B_CGC`,
#   {glue:text}`a1_2B_TC` and {glue:text}`a1_3B_TC` (published {glue:text}`pub_a1_2B_CGC`,
#   {glue:text}`pub_a1_2B_TC`, {glue:text}`pub_a1_3B_TC`); the large-D exponents
#   {glue:text}`a2_2B_CGC`, {glue:text}`a2_2B_TC` and {glue:text}`a2_3B_TC` (published
#   {glue:text}`pub_a2_2B_CGC`, {glue:text}`pub_a2_2B_TC`, {glue:text}`pub_a2_3B_TC`). The
#   break sits at D_c = {glue:text}`dc_2B_CGC`, {glue:text}`dc_2B_TC` and {glue:text}`dc_3B_TC`
#   training materials. The first and last three points of 2B-CGC alone give exponents of
#   {glue:text}`cgc_first` and {glue:text}`cgc_last`.
# * **Parameter scaling at D = 20,000 saturates.** AICc prefers the floor law for 2B-CGC
#   ({glue:text}`best_params_2B_CGC`), 2B-TC ({glue:text}`best_params_2B_TC`) and 3B-TC
#   ({glue:text}`best_params_3B_TC`); for 2B-TC the broken law is only
#   {glue:text}`tc_params_daicc` behind, so the two cannot be told apart (the paper, with
#   weights, preferred the broken law there). Exponents alpha_N = {glue:text}`an_2B_CGC`,
#   {glue:text}`an_2B_TC` and {glue:text}`an_3B_TC` (published {glue:text}`pub_an_2B_CGC`,
#   {glue:text}`pub_an_2B_TC`, {glue:text}`pub_an_3B_TC`), floors L_inf = {glue:text}`linf_2B_CGC`,
#   {glue:text}`linf_2B_TC` and {glue:text}`linf_3B_TC` (published {glue:text}`pub_linf_2B_CGC`,
#   {glue:text}`pub_linf_2B_TC`, {glue:text}`pub_linf_3B_TC`).
# * **The floor is set by the data, not by the models.** At D = 160,000 the same widths fall
#   to floors of {glue:text}`grid_linf_2B_TC` (2B-TC) and {glue:text}`grid_linf_3B_TC` (3B-TC);
#   the published 2D map reproduces all three published 1D slices to within
#   {glue:text}`map_max_error`.
# * **Extrapolation favours the break only once the data show it.** Fitted on the five smallest
#   data-scan points, the simple law misses the two largest by {glue:text}`ex_simple_2B_CGC`,
#   {glue:text}`ex_simple_2B_TC` and {glue:text}`ex_simple_3B_TC` (2B-CGC, 2B-TC, 3B-TC); the
#   broken law by {glue:text}`ex_broken_2B_CGC`, {glue:text}`ex_broken_2B_TC` and
#   {glue:text}`ex_broken_3B_TC`. With the break near or beyond the last fitted point, five
#   points barely locate it, and those fits are flagged poorly determined.
