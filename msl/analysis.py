"""From a study's records to its tables, fits and convergence checks (no training here).

The analysis notebook calls these; they read only the grid file and the records, so re-running
the analysis never retrains. Conventions: x is D (``n_train``, training structures) for a data
scan and N (``n_params``, trainable parameters incl. embeddings) for a parameter scan; L is the
validation loss of the best-validation state (``val/loss``, dimensionless, see msl.targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from msl import fit, reanalysis
from msl.fit import display, verdicts
from msl.grid import Grid

AXIS_X = {"n_train": "n_train", "size": "n_params"}   # scanned parameter -> x of the fit
X_LABEL = {"n_train": "D (training structures)", "n_params": "N (parameters)",
           "flops": "C (training FLOPs)"}
MIN_FIT_POINTS = 5        # as msl.convergence.MIN_POINTS: no law from fewer points
FORCE_LEARNT = 0.5        # force MAE below this fraction of the zero-force baseline: learns forces
METRICS = ("loss", "energy_mae", "forces_mae", "stress_mae", "spectrum_mae", "scalar_mae",
           "forces_mae_zero")
FORMS_1D = {  # the 1D laws compared by AICc: Großmann et al.'s three, plus BNSL with one break
    **reanalysis.FORMS,
    "bnsl_1": lambda x, y, sigma=None: fit.bnsl(x, y, 1, sigma),
}


def table(grid: Grid) -> pd.DataFrame:
    """One row per (cell, scan) with the numbers the book shows; records missing are dropped."""
    rows = []
    for cfg, scans, rec in grid.finished():
        metrics = rec.get("metrics", {})
        for scan in scans:
            rows.append({
                "scan": scan, "cell_id": cfg.cell_id, "status": rec["status"],
                "model": rec["model"], "size": rec["size"], "n_params": rec.get("n_params"),
                "n_train": rec["n_train"], "seed": rec["seed"], "epochs": rec["epochs"],
                "epochs_run": rec.get("epochs_run"), "steps": rec.get("steps"), "flops": rec.get("flops"),
                "converged": rec.get("converged"), "wall_s": rec.get("wall_seconds"),
                "peak_lr": rec.get("peak_lr"),
                **{k: metrics.get(k, np.nan) for k in
                   [f"{split}/{m}" for split in ("val", "test") for m in METRICS]},
            })
    return pd.DataFrame(rows)


@dataclass
class ScanFit:
    scan: str
    x_name: str
    x: np.ndarray           # distinct x values
    y: np.ndarray           # mean val/loss over seeds
    sigma: np.ndarray | None  # spread over seeds (None for a single seed)
    result: object          # msl.fit.FitResult

    @property
    def alpha(self) -> tuple[float, float]:
        return self.result.params["alpha"], self.result.stderr["alpha"]


def scan_points(df: pd.DataFrame, grid: Grid, scan: str, metric: str = "val/loss"):
    """(x name, x, mean y, sigma or None) of one scan's ok runs, averaged over seeds."""
    x_name = AXIS_X.get(grid.axis(scan), grid.axis(scan))
    rows = df[(df.scan == scan) & (df.status == "ok")]
    if rows.empty:
        return x_name, np.array([]), np.array([]), None
    grouped = rows.groupby(x_name)[metric]
    x = np.array(grouped.mean().index, dtype=float)
    y = grouped.mean().to_numpy()
    n_seeds = grouped.count().to_numpy()
    sigma = grouped.std(ddof=1).to_numpy() if n_seeds.min() > 1 else None
    return x_name, x, y, sigma


def fit_scan(df: pd.DataFrame, grid: Grid, scan: str, metric: str = "val/loss") -> ScanFit:
    """L = (x0/x)^alpha fitted to one scan.

    With several seeds: in linear space, weighted by the spread over seeds (Großmann et al.'s
    procedure). With one seed there is no per-point uncertainty, and the losses span decades, so
    the fit is unweighted in log space (relative errors; Kaplan et al.'s log-log fits), which
    keeps the smallest losses from being ignored.
    """
    x_name, x, y, sigma = scan_points(df, grid, scan, metric)
    if len(x) < 2:
        raise ValueError(f"scan {scan!r} has {len(x)} finished point(s); a fit needs at least 2")
    if sigma is not None and np.all(sigma > 0):
        result = fit.power_law(x, y, sigma)
    else:
        result = fit.power_law(x, y, space="log")
        sigma = None
    return ScanFit(scan, x_name, x, y, sigma, result)


def scan_names(grid: Grid, axis: str | None = None, model: str | None = None,
               maps: bool = False) -> list[str]:
    """The 1D scans of ``grid`` (no budget checks), or with ``maps`` its 2D scans (both ``size``
    and ``n_train`` listed); optionally only those along ``axis`` or of one ``model`` (as fixed
    in the scan or the grid)."""
    out = []
    for name, spec in grid.scans.items():
        params = {**grid.fixed, **spec}
        is_map = isinstance(params.get("size"), list) and isinstance(params.get("n_train"), list)
        if is_map != maps or (axis is not None and spec["axis"] != axis):
            continue
        if model is not None and spec.get("model", grid.fixed.get("model")) != model:
            continue
        out.append(name)
    return out


def fit_forms(df: pd.DataFrame, grid: Grid, scan: str, metric: str = "val/loss") -> dict:
    """Every law of ``FORMS_1D`` fitted to one scan's seed means.

    Linear space, weighted by the spread over seeds where there are several (Großmann et al.'s
    procedure; AICc from the unweighted residuals, as they computed it). A form that cannot be
    fitted to these points (too few of them, a solver failure) is left out, with the reason in
    ``skipped``. Returns {"points": (x_name, x, y, sigma), "fits": {form: FitResult},
    "skipped": {form: reason}}.
    """
    x_name, x, y, sigma = scan_points(df, grid, scan, metric)
    sigma = sigma if sigma is not None and np.all(sigma > 0) else None
    fits, skipped = {}, {}
    for name, fn in FORMS_1D.items():
        try:
            fits[name] = fn(x, y, sigma)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
            skipped[name] = str(err)
    return {"points": (x_name, x, y, sigma), "fits": fits, "skipped": skipped}


def ranking(fitted: dict[str, dict]) -> pd.DataFrame:
    """AICc ranking of the forms of every scan (``fit_forms`` results by scan name): rank, AICc,
    dAICc, Akaike weight (rounded, ``msl.fit.display``), the exponents (``FitResult.stated``),
    and whether it is poorly determined (with the reason)."""
    rows = []
    for scan, f in fitted.items():
        for rank, r in enumerate(fit.select(f["fits"].values()) if f["fits"] else [], start=1):
            res = r.result
            exps = ", ".join(res.stated(k) for k in res.params if k.startswith(("alpha", "c")))
            rows.append({"scan": scan, "rank": rank, "form": res.form, "k": res.n_params,
                         **display.criteria(r), "exponents": exps,
                         "poorly determined": res.reason if res.poorly_determined else ""})
        for form, reason in f["skipped"].items():
            rows.append({"scan": scan, "rank": None, "form": form, "AICc": np.inf,
                         "poorly determined": f"not fitted: {reason}"})
    return pd.DataFrame(rows)


def map_points(df: pd.DataFrame, grid: Grid, scan: str, metric: str = "val/loss"):
    """(N, D, mean L, spread or None) of a 2D scan (sizes x D crossed), one row per (N, D)."""
    rows = df[(df.scan == scan) & (df.status == "ok")]
    grouped = rows.groupby(["n_params", "n_train"])[metric]
    mean = grouped.mean()
    n = np.array([i[0] for i in mean.index], float)
    d = np.array([i[1] for i in mean.index], float)
    sigma = grouped.std(ddof=1).to_numpy() if grouped.count().min() > 1 else None
    return n, d, mean.to_numpy(), sigma


def compute_curves(grid: Grid, scan: str) -> pd.DataFrame:
    """Validation loss against training compute along every run of a scan: one row per
    validation of each record's history, with C = FLOPs per step x steps so far (the training
    FLOPs of a run are spread evenly over its steps). The lower envelope over model sizes is the
    compute-optimal frontier."""
    rows = []
    for cfg, scans, rec in grid.finished():
        if scan not in scans or rec["status"] != "ok" or not rec.get("steps"):
            continue
        per_step = rec["flops"] / rec["steps"]
        for h in rec["history"]:
            rows.append({"cell_id": cfg.cell_id, "model": rec["model"], "size": rec["size"],
                         "n_params": rec["n_params"], "n_train": rec["n_train"],
                         "seed": rec["seed"], "step": h["step"], "flops": per_step * h["step"],
                         "val/loss": h["val/loss"]})
    return pd.DataFrame(rows)


PAPER_NAMES = {"optimetal2b_spectral": "2B-CGC", "optimetal2b_tc_spectral": "2B-TC",
               "optimetal3b_spectral": "3B-TC"}  # our spectral families -> Großmann et al.'s


def paper_comparison(fitted: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """Our fitted parameters beside Großmann et al.'s, per family, scan and form.

    ``fitted`` maps (family, "data" | "params") to a ``fit_forms`` result. The forms compared are
    the paper's own choices: the broken law for D, the law with floor for N. Scales (x_c, x0) are
    not comparable across datasets (ours are counted in our structures and parameters), the
    exponents and the position of the break relative to the data range are.
    """
    from msl import published

    rows = []
    for (family, scan), f in fitted.items():
        form = "broken_power_law" if scan == "data" else "power_law_floor"
        res = f["fits"].get(form)
        pub = published.published_fit(scan, form, PAPER_NAMES[family])
        if res is None or pub is None:
            continue
        for name, (value, se) in pub["params"].items():
            rows.append({"model": PAPER_NAMES[family], "scan": scan, "form": form,
                         "parameter": name, "ours": res.shown(name),
                         "published": reanalysis.printed(name, value, se)})
    return pd.DataFrame(rows)


def break_verdict(f: dict) -> str:
    """A plain sentence on whether a data scan (a ``fit_forms`` result) shows a break: AICc of
    the broken law against the simple one, where the break sits, and the slopes before and after
    it (``msl.fit.verdicts.break_sentence``: nothing undetermined is quoted)."""
    simple, broken = f["fits"].get("power_law"), f["fits"].get("broken_power_law")
    if simple is None or broken is None:
        return "the broken law could not be fitted to this scan"
    return verdicts.break_sentence(simple, broken, f["points"][1])


def saturation_verdict(f: dict) -> str:
    """A plain sentence on whether a parameter scan saturates: AICc of the law with floor
    against the simple one, and the floor against the smallest loss measured
    (``msl.fit.verdicts.saturation_sentence``)."""
    simple, floor = f["fits"].get("power_law"), f["fits"].get("power_law_floor")
    if simple is None or floor is None:
        return "the law with floor could not be fitted to this scan"
    return verdicts.saturation_sentence(simple, floor, f["points"][2])


def frontier_fit(curves: pd.DataFrame, metric: str = "val/loss"):
    """L = (C0/C)^alpha fitted in log space to the compute-optimal frontier (the lower convex
    envelope, ``msl.plot.scaling.lower_envelope``) of ``compute_curves`` rows; returns
    (frontier rows, FitResult or None when fewer than 3 runs make up the frontier)."""
    from msl.plot.scaling import lower_envelope

    idx = lower_envelope(curves["flops"].to_numpy(), curves[metric].to_numpy())
    front = curves.iloc[idx]
    if len(front) < 3:
        return front, None
    return front, fit.power_law(front["flops"].to_numpy(), front[metric].to_numpy(), space="log")


def exponent_row(name: str, axis: str, x: np.ndarray, result, ranked=None, extrap=None) -> dict:
    """One row of an exponents table: L = a X^-alpha ± its standard error (``FitResult.shown``)
    and range, the form AICc prefers (from ``ranking`` rows of the same scan) and the
    extrapolation error (RMS log errors, rounded as ``msl.fit.display`` rounds them)."""
    held, fitted = (None, None) if extrap is None else (
        display.round_criterion(e, display.ERROR_DECIMALS)
        for e in (extrap.rmsle_holdout, extrap.rmsle_train))
    return {"model": name, "X": axis, "alpha": result.shown("alpha"), "points": len(x),
            "range": f"{np.min(x):.3g} – {np.max(x):.3g}",
            "decades": round(float(np.log10(np.max(x) / np.min(x))), 2),
            "AICc prefers": None if ranked is None else ranked,
            "held-out RMSLE (2 largest)": held, "in-sample RMSLE": fitted}


def published_exponents() -> pd.DataFrame:
    """Trikha et al.'s EquiformerV2 exponents and Frey et al.'s, as rows of the same table."""
    from msl import published

    rows = [{"model": "EquiformerV2 (Trikha et al., OMat24)", "X": axis,
             "alpha": f"{v['beta']:g}"}
            for axis, v in (("N", published.TRIKHA_EQV2["params"]),
                            ("C", published.TRIKHA_EQV2["compute"]),
                            ("D", published.TRIKHA_EQV2["data"]))]
    rows += [{"model": f"{k} (Frey et al.)", "X": "D", "alpha": f"{v:g}"}
             for k, v in published.FREY_EXPONENTS.items()]
    return pd.DataFrame(rows)


def fit_map(df: pd.DataFrame, grid: Grid, scan: str, metric: str = "val/loss") -> dict:
    """Großmann et al.'s Kaplan-type map broken in D fitted to a 2D scan's cell means:
    {"n", "d", "y", "fit" (FitResult or None), "reason" (why there is no fit, else "")}."""
    n, d, y, sigma = map_points(df, grid, scan, metric)
    try:
        result = fit.kaplan_2d(n, d, y, sigma, broken=True)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
        return {"n": n, "d": d, "y": y, "fit": None, "reason": str(err)}
    return {"n": n, "d": d, "y": y, "fit": result, "reason": ""}


def map_table(maps: dict[str, dict]) -> pd.DataFrame:
    """One column per map: fitted parameters ± standard errors, points, AICc, diagnosis."""
    columns = {}
    for name, m in maps.items():
        r = m["fit"]
        if r is None:
            columns[name] = {"points": len(m["y"]), "poorly determined": f"not fitted: {m['reason']}"}
            continue
        columns[name] = {**{k: r.shown(k) for k in r.params},
                         "points": len(m["y"]), "AICc": display.format_aicc(r.aicc),
                         "poorly determined": r.reason or "no"}
    return pd.DataFrame(columns)


def exponent_fits(df: pd.DataFrame, grid: Grid, families, n_holdout: int = 2):
    """Data and parameter exponents of every family in ``families``: per family and kind
    ("data", "params"), the headline law fitted by :func:`fit_scan`, the four laws of
    :func:`fit_forms` and, where at least 3 points remain for the fit, the extrapolation error
    of the simple law fitted without the ``n_holdout`` largest points. Returns
    (table of :func:`exponent_row` rows, {(family, kind): fit_forms result},
    {(family, kind): ScanFit}). A scan with fewer than ``MIN_FIT_POINTS`` points (after the
    caller dropped those that did not converge) gets a row that says so, and no fit."""
    rows, fitted, headline = [], {}, {}
    for family in families:
        for axis, kind, label in (("n_train", "data", "D"), ("size", "params", "N")):
            scans = scan_names(grid, axis=axis, model=family)
            if not scans:
                continue
            x_name, x, _, _ = scan_points(df, grid, scans[0])
            if len(x) < MIN_FIT_POINTS:
                rows.append({"model": family, "X": label, "alpha": "not fitted", "points": len(x),
                             "note": f"{len(x)} point(s); a fit needs at least {MIN_FIT_POINTS}"})
                continue
            scan_fit = fit_scan(df, grid, scans[0])
            forms = fit_forms(df, grid, scans[0])
            ranked = ranking({scans[0]: forms})
            extrap = None
            if len(scan_fit.x) - n_holdout >= 3:
                extrap = fit.extrapolation(fit.power_law, scan_fit.x, scan_fit.y,
                                           n_holdout=n_holdout, space="log")
            fitted[(family, kind)], headline[(family, kind)] = forms, scan_fit
            rows.append(exponent_row(family, label, scan_fit.x, scan_fit.result,
                                     ranked.iloc[0]["form"], extrap))
    return pd.DataFrame(rows), fitted, headline


def force_baseline(df: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Per family and D (data scans, seed means): the force MAE beside that of predicting zero
    forces (``val/forces_mae_zero`` of the record) and their ratio (eV/Å, per component)."""
    rows = []
    for name in scan_names(grid, axis="n_train"):
        part = df[(df.scan == name) & (df.status == "ok")]
        if part.empty or "val/forces_mae_zero" not in part:
            continue
        means = part.groupby("n_train")[["val/forces_mae", "val/forces_mae_zero"]].mean()
        for d, r in means.iterrows():
            rows.append({"model": part.model.iloc[0], "D": int(d),
                         "force MAE (eV/Å)": r["val/forces_mae"],
                         "zero forces (eV/Å)": r["val/forces_mae_zero"],
                         "ratio": r["val/forces_mae"] / r["val/forces_mae_zero"]})
    return pd.DataFrame(rows).round(4)


def force_verdict(table: pd.DataFrame) -> str:
    """One sentence per family: from which D its force MAE is below ``FORCE_LEARNT`` of the
    zero-force baseline (it learns forces), or that it never is in the scanned range."""
    if table.empty:
        return "no data scan of a force model in this grid"
    parts = []
    for model, rows in table.groupby("model", sort=False):
        good = rows[rows.ratio < FORCE_LEARNT]
        worst = rows.ratio.min()
        if good.empty:
            parts.append(f"{model} does not learn forces at any D up to {rows.D.max()} (its best "
                         f"force MAE is {worst:.0%} of predicting zero)")
        else:
            parts.append(f"{model} learns forces from D = {good.D.min()} (force MAE "
                         f"{good.ratio.iloc[0]:.0%} of predicting zero there, "
                         f"{rows.ratio.iloc[-1]:.0%} at D = {rows.D.max()})")
    return "; ".join(parts)
