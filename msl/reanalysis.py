"""Re-analysis of Großmann et al.'s published mean losses: our fits beside the published tables.

Reads ``msl.published`` (the numbers) and fits them with ``msl.fit`` (the laws); the book chapter
``notebooks/published.py`` shows the tables this module builds. Fits are unweighted (papers.md
gives no per-point seed spreads; the paper weighted by them), least squares in linear space as
the paper did, AICc on unweighted residuals as the paper computed it.

Agreement rule (``agrees``): |ours - published| <= 2 sqrt(se_ours^2 + se_pub^2), where se_pub is
the published standard error but at least the printing resolution (half the last printed digit:
0.005 for exponents and floors, a factor 10^0.005 for scales printed as 10^a), so that a value
printed without an error, or with "± 0.00", is compared at the precision it was printed to.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

import msl.fit as fit
from msl import published
from msl.fit import display
from msl.fit.kaplan import KAPLAN_BROKEN

FORMS = {  # the 1D laws of Großmann et al. that msl.fit fits, by msl.fit's form name
    "power_law": fit.power_law,
    "power_law_floor": fit.power_law_floor,
    "broken_power_law": fit.broken_power_law,
}
PAPER_FORM = {"data": "broken_power_law", "params": "power_law_floor"}  # drawn in their Fig. 1
SCALES = ("x0", "x_c", "N_c", "D_c")  # printed as 10^a: compared with a relative resolution
SCANS = ("data", "params")


def fit_forms(x, y) -> dict:
    """{form name: FitResult} of every law in ``FORMS`` fitted to (x, y)."""
    return {name: fn(x, y) for name, fn in FORMS.items()}


def fit_all() -> dict:
    """{(model, scan): {form: FitResult}} for every model and both scans of Großmann et al."""
    return {(m, s): fit_forms(*published.scan(s, m)) for m in published.MODELS for s in SCANS}


def resolution(name: str, value: float) -> float:
    """Half the last printed digit of a published parameter, in its units."""
    if name in SCALES:
        return abs(value) * (10 ** published.PRINTED_RESOLUTION - 1)
    return published.PRINTED_RESOLUTION


def printed(name: str, value: float, se=None) -> str:
    """A published parameter as the paper printed it: two decimals, scales as 10^a, and the
    error where one was printed (``0.15 ± 0.00``, ``10^4.72 ± 10^3.33``)."""
    if name in SCALES:
        text = f"10^{math.log10(value):.2f}"
        return text if se is None else f"{text} ± 10^{math.log10(se):.2f}"
    return f"{value:.2f}" if se is None else f"{value:.2f} ± {se:.2f}"


def agrees(name: str, ours: float, se_ours: float, pub: float, se_pub,
           undetermined: str | None = None) -> bool | None:
    """Whether our value and the published one agree within 2 combined standard errors.

    ``se_pub`` None (printed without an error) or below the printing resolution counts as the
    resolution. None when our value is undetermined (``undetermined``, the reason, or a standard
    error not finite or at least the value: nothing to compare with).
    """
    if display.why_undetermined(ours, se_ours, undetermined) is not None:
        return None
    se_p = max(se_pub or 0.0, resolution(name, pub))
    return bool(abs(ours - pub) <= 2 * math.hypot(se_ours, se_p))


def ranking(fits: dict) -> pd.DataFrame:
    """AICc ranking of our forms per model and scan, with the published AICc of the same form.

    AICc, dAICc and weights are rounded (``msl.fit.display``); ``poorly determined`` gives the
    reason, empty when there is none. ``published rank`` ranks the published AICc among all
    forms the paper printed for that scan (including the broken law with amplitude, which
    msl.fit does not fit).
    """
    rows = []
    for (model, scan), results in fits.items():
        printed = {f: t["models"][model]["aicc"] for f, t in published.FITS[scan].items()
                   if t["models"][model]["aicc"] is not None}
        order = sorted(printed, key=printed.get)
        for rank, r in enumerate(fit.select(results.values()), start=1):
            form = r.result.form
            rows.append({"model": model, "scan": scan, "rank": rank, "form": form,
                         "k": r.result.n_params, **display.criteria(r),
                         "poorly determined": r.result.reason,
                         "published AICc": printed.get(form, math.nan),
                         "published rank": order.index(form) + 1 if form in printed else None})
    return pd.DataFrame(rows)


def comparison(fits: dict) -> pd.DataFrame:
    """One row per published parameter of a form we fit: ours ± se (``FitResult.shown``: or
    "undetermined" with the reason) beside the published value ± se as printed, and whether
    they agree (None where ours is undetermined)."""
    rows = []
    for (model, scan), results in fits.items():
        for form, result in results.items():
            row = published.published_fit(scan, form, model)
            for name, (pub, se_pub) in (row or {"params": {}})["params"].items():
                ours, se = result.params[name], result.stderr[name]
                rows.append({"model": model, "scan": scan, "form": form, "parameter": name,
                             "ours": result.shown(name),
                             "published": printed(name, pub, se_pub),
                             "agree": agrees(name, ours, se, pub, se_pub,
                                             result.undetermined.get(name))})
    return pd.DataFrame(rows)


def asymptotes(x, y, n_points: int = 3) -> tuple:
    """Simple power laws on the first and on the last ``n_points`` points, fitted in log space.

    The paper's "asymptotic fits" of Fig. 1 (``np.polyfit`` in log10-log10 on the first and last 3
    points); a log-space least-squares power law is the same line, with a standard error.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not 2 <= n_points < x.size:
        raise ValueError(f"asymptotes: n_points = {n_points} must be in [2, {x.size - 1}]")
    return (fit.power_law(x[:n_points], y[:n_points], space="log"),
            fit.power_law(x[-n_points:], y[-n_points:], space="log"))


def asymptote_table(n_points: int = 3) -> pd.DataFrame:
    """Exponents of the first and last ``n_points`` of every scan, and whether they differ.

    ``steeper`` / ``flatter``: the last-points exponent is larger / smaller than the first-points
    one by more than 2 combined standard errors; ``same`` otherwise. Exponents are shown
    ``FitResult.shown``; the fits are kept in ``attrs["fits"]`` {(model, scan): (first, last)}.
    """
    rows, fits = [], {}
    for model in published.MODELS:
        for scan in SCANS:
            first, last = fits[(model, scan)] = asymptotes(*published.scan(scan, model), n_points)
            a1, a2 = first.params["alpha"], last.params["alpha"]
            diff, tol = a2 - a1, 2 * math.hypot(first.stderr["alpha"], last.stderr["alpha"])
            rows.append({"model": model, "scan": scan, "alpha first": first.shown("alpha"),
                         "alpha last": last.shown("alpha"),
                         "change": "steeper" if diff > tol else "flatter" if -diff > tol
                         else "same"})
    table = pd.DataFrame(rows)
    table.attrs["fits"] = fits
    return table


def extrapolation_table(n_holdout: int = 2) -> tuple[pd.DataFrame, dict]:
    """Every form fitted on all but the ``n_holdout`` largest points, scored on those.

    Returns (table, {(model, scan, form): Extrapolation}); errors are RMS log errors and mean
    absolute relative errors (``msl.fit.extrapolation``), rounded (``msl.fit.display``).
    """
    def rounded(value):
        return display.round_criterion(value, display.ERROR_DECIMALS)

    rows, runs = [], {}
    for model in published.MODELS:
        for scan in SCANS:
            x, y = published.scan(scan, model)
            for form, fn in FORMS.items():
                ex = fit.extrapolation(fn, x, y, n_holdout=n_holdout)
                runs[(model, scan, form)] = ex
                rows.append({"model": model, "scan": scan, "form": form,
                             "RMSLE fit": rounded(ex.rmsle_train),
                             "RMSLE held out": rounded(ex.rmsle_holdout),
                             "rel. error held out": rounded(ex.mare_holdout),
                             "poorly determined": ex.fit.reason})
    return pd.DataFrame(rows), runs


def map_prediction(model: str, n, d) -> np.ndarray:
    """L(N, D) of the published 2D Kaplan-type map broken in D (Tab. 2) at the given N, D."""
    p = published.MAPS["kaplan_2d_broken"]["models"][model]["params"]
    theta = np.array([p["alpha_N"][0], p["alpha_D1"][0], p["alpha_D2"][0],
                      math.log(p["N_c"][0]), math.log(p["D_c"][0])])
    n, d = np.broadcast_arrays(np.asarray(n, float), np.asarray(d, float))
    return KAPLAN_BROKEN.predict(theta, np.column_stack([n.ravel(), d.ravel()])).reshape(n.shape)


def map_check() -> pd.DataFrame:
    """The published 2D map against the published 1D means it should reproduce.

    Three slices per model with a 2D map: the parameter scan (D = 20k), the grid row at D = 160k
    and the data scan (d_h = 256; N taken from the parameter scan's d_h = 256 rung).
    """
    rows = []
    for model in published.MAPS["kaplan_2d_broken"]["models"]:
        n = published.PARAM_SCAN_N[model]
        n_256 = n[list(published.WIDTHS).index(published.DATA_SCAN_WIDTH)]
        slices = [("params, D = 20k", n, np.full(n.size, float(published.PARAM_SCAN_D)),
                   published.PARAM_SCAN_LOSS[model]),
                  ("grid, D = 160k", n, np.full(n.size, float(published.GRID_D)),
                   published.GRID_LOSS_AT_D[model]),
                  ("data, d_h = 256", np.full(7, n_256), published.DATA_SCAN_D,
                   published.DATA_SCAN_LOSS[model])]
        for name, nn, dd, loss in slices:
            pred = map_prediction(model, nn, dd)
            rel = pred / loss - 1
            rows.append({"model": model, "slice": name, "points": loss.size,
                         "mean |rel. error|": round(float(np.mean(np.abs(rel))), 4),
                         "max |rel. error|": round(float(np.max(np.abs(rel))), 4)})
    return pd.DataFrame(rows)


def bnsl_check() -> pd.DataFrame:
    """BNSL with 0 and 1 breaks on every scan: a and c0 (``FitResult.shown``), AICc, and why
    it is poorly determined (empty when it is not).

    One break has 6 parameters; on 7 points AICc's correction (2k^2 + 2k)/(n - k - 1) is
    undefined (n <= k + 1), so it cannot enter the ranking. Zero breaks is a + b x^(-c0): the
    floor law with the floor free in sign.
    """
    rows = []
    for model in published.MODELS:
        for scan in SCANS:
            x, y = published.scan(scan, model)
            for n_breaks in (0, 1):
                r = fit.bnsl(x, y, n_breaks=n_breaks)
                rows.append({"model": model, "scan": scan, "breaks": n_breaks,
                             "k": r.n_params,
                             "AICc": display.round_criterion(r.aicc, display.AICC_DECIMALS),
                             "a": r.shown("a"), "c0": r.shown("c0"),
                             "poorly determined": r.reason})
    return pd.DataFrame(rows)
