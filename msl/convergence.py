"""Is a scaling point converged, and do the laws extrapolate? (From records; no training here.)

A scaling point is only as good as its convergence: a point that more training would still move
is not a point on a scaling curve. This module turns a study's records into

- :func:`checks`: the convergence check of every scan end. The grid reruns both ends of each scan
  with ``budget_check`` times the budget (:mod:`msl.grid`): twice the step cap and twice the
  patience under the early-stopping protocol (``max_steps`` > 0), twice the epochs and minimum
  steps under a fixed epoch count. The check passes when the longer run does not lower the best
  validation loss by ``TOLERANCE`` (5 %) or more. It is one-sided on purpose: the question is
  whether more training would still move the point down. A longer run that ends *higher* did not
  train the model further; it followed another trajectory (with twice the patience the rate is
  cut later, and the run settles in another minimum), and that difference is the spread between
  trajectories, which the seeds measure. Measured on the default study: at D = 32 to 64 the
  longer runs ended 6 % to 15 % higher, the spread between seeds is of the same size. The table
  keeps the signed change, and the verdict names every check whose longer run ended higher by
  more than the tolerance.
- :func:`points`: every (x, seed) point of a scan with a ``converged`` flag and the reason when
  it is not: the record must say its run converged (under the early-stopping protocol: early
  stopping ended it, not its step cap; under a fixed epoch count: that, or a best validation loss
  flat over the last quarter, :func:`msl.cell.converged`), and an end point must also pass its
  check.
- :func:`fit_converged`: the power law fitted to the converged points only, and only where at
  least ``MIN_POINTS`` of them remain (otherwise the reason, never a number).
- :func:`predictions`: fit on all but the largest two converged points, predict those two with a
  95 % interval (bootstrap over seeds where there are several, else the covariance's delta
  method), and compare with the measured losses: the study's own test of whether its laws
  extrapolate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from msl import fit
from msl.analysis import AXIS_X, scan_names
from msl.grid import Grid

TOLERANCE = 0.05      # (L(2x budget) - L) / L above -TOLERANCE: converged (more training does not lower it)
MIN_POINTS = 5        # a fit is shown only with at least this many converged points
N_BOOT = 1000         # bootstrap resamples for the prediction intervals


def frame(grid: Grid) -> pd.DataFrame:
    """One row per (cell, scan) of ``grid`` with a finished record: what the checks need."""
    rows = []
    for cfg, scans, rec in grid.finished():
        for scan in scans:
            rows.append({
                "scan": scan, "cell_id": cfg.cell_id, "status": rec["status"],
                "model": rec["model"], "size": rec["size"], "n_params": rec.get("n_params"),
                "n_train": rec["n_train"], "seed": rec["seed"], "max_lr": cfg.max_lr,
                "steps": rec.get("steps"), "max_steps": cfg.max_steps, "patience": cfg.patience,
                "epochs": cfg.epochs, "stop_reason": _stop_reason(rec),
                "run_converged": _run_converged(rec),
                "val/loss": rec.get("metrics", {}).get("val/loss", np.nan),
            })
    return pd.DataFrame(rows)


def _stop_reason(rec: dict) -> str:
    """What ended the run; records from before ``stop_reason`` ran a fixed epoch count."""
    if rec["status"] != "ok":
        return rec["status"]
    if rec.get("stop_reason"):
        return rec["stop_reason"]
    return "patience" if rec.get("stopped_early") else "epochs"


def _run_converged(rec: dict) -> bool:
    """The record's own verdict (msl.cell.run): under the early-stopping protocol, early
    stopping ended the run; under a fixed epoch count, that or a flat last quarter."""
    return rec["status"] == "ok" and bool(rec.get("converged"))


def checks(df: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """The check of both ends of every scan with ``budget_check``: best validation loss with the
    grid's budget and with the larger one, the relative change, and whether the larger budget
    failed to lower it by 5 % or more (see the module docstring)."""
    rows = []
    for name, spec in grid.scans.items():
        if not spec.get("budget_check"):
            continue
        axis = spec["axis"]
        x_name = AXIS_X.get(axis, axis)
        base = df[(df.scan == name) & (df.status == "ok")]
        longer = df[(df.scan == f"{name}/budget") & (df.status == "ok")]
        for end in (min(spec[axis]), max(spec[axis])):
            for seed in sorted(base.seed.unique()):
                a = base[(base[axis] == end) & (base.seed == seed)]
                b = longer[(longer[axis] == end) & (longer.seed == seed)]
                if a.empty or b.empty:
                    continue
                a, b = a.iloc[0], b.iloc[0]
                change = (b["val/loss"] - a["val/loss"]) / a["val/loss"]
                rows.append({
                    "scan": name, "model": a["model"], "x": x_name, "value": a[x_name],
                    "seed": int(seed), "steps": int(a["steps"]), "ended by": a["stop_reason"],
                    "val/loss": a["val/loss"], "steps (2x)": int(b["steps"]),
                    "ended by (2x)": b["stop_reason"], "val/loss (2x)": b["val/loss"],
                    "relative change": change, "converged": bool(change > -TOLERANCE),
                })
    return pd.DataFrame(rows)


def points(df: pd.DataFrame, grid: Grid, scan: str, checked: pd.DataFrame | None = None):
    """Every (x, seed) point of ``scan`` with ``converged`` and, where not, ``why``."""
    axis = grid.axis(scan)
    x_name = AXIS_X.get(axis, axis)
    rows = df[(df.scan == scan) & (df.status == "ok")].copy()
    rows["x"] = rows[x_name].astype(float)
    checked = checks(df, grid) if checked is None else checked
    mine = checked[checked.scan == scan] if not checked.empty else checked
    converged, why = [], []
    for _, r in rows.iterrows():
        reasons = []
        if not r["run_converged"]:
            reasons.append(f"ended by {r['stop_reason']}, not by early stopping")
        if not mine.empty:
            c = mine[(mine.value == r[x_name]) & (mine.seed == r["seed"])]
            if not c.empty and not c["converged"].iloc[0]:
                reasons.append(f"twice the budget moved it by {c['relative change'].iloc[0]:+.0%}")
        converged.append(not reasons)
        why.append("; ".join(reasons))
    rows["converged"], rows["why"] = converged, why
    return rows[["x", "seed", "val/loss", "steps", "stop_reason", "converged", "why", "cell_id"]]


def _means(pts: pd.DataFrame):
    """Seed means of the converged points: x, mean, spread (None for one seed), per-seed rows."""
    good = pts[pts.converged]
    grouped = good.groupby("x")["val/loss"]
    x = np.array(grouped.mean().index, float)
    y = grouped.mean().to_numpy()
    sigma = grouped.std(ddof=1).to_numpy() if len(x) and grouped.count().min() > 1 else None
    return x, y, sigma, good


def fit_converged(pts: pd.DataFrame):
    """(FitResult or None, reason): L = (x0/x)^alpha on the converged points' seed means.

    Weighted by the spread over seeds in linear space where every point has several seeds, else
    unweighted in log space (as :func:`msl.analysis.fit_scan`)."""
    x, y, sigma, _ = _means(pts)
    if len(x) < MIN_POINTS:
        return None, (f"only {len(x)} converged point(s); a fit needs at least {MIN_POINTS}")
    if sigma is not None and np.all(sigma > 0):
        return fit.power_law(x, y, sigma), ""
    return fit.power_law(x, y, space="log"), ""


def predictions(pts: pd.DataFrame, n_holdout: int = 2, level: float = 0.95,
                seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Fit on all but the ``n_holdout`` largest converged x, predict those with a ``level``
    interval, compare with what was measured. Returns (table, reason if no table)."""
    x, y, sigma, good = _means(pts)
    if len(x) - n_holdout < 3:
        return pd.DataFrame(), (f"{len(x)} converged point(s): predicting {n_holdout} needs at "
                                f"least {n_holdout + 3}")
    keep = x < np.sort(x)[-n_holdout]
    held = ~keep
    n_seeds = good.groupby("x").seed.nunique().min()
    if n_seeds > 1:   # bootstrap over seeds: each resample draws whole seeds' runs
        sub = good[good.x.isin(x[keep])]
        result = fit.power_law(sub.x.to_numpy(), sub["val/loss"].to_numpy(), space="log")
        result = result.bootstrap(N_BOOT, seed=seed, level=level, groups=sub.seed.to_numpy())
        method = f"bootstrap over {n_seeds} seeds"
    else:
        result = fit.power_law(x[keep], y[keep], space="log")
        method = "covariance (one seed)"
    band = result.band(x[held], level=level)
    pred = result.predict(x[held])
    lo, hi = (np.full_like(pred, np.nan), np.full_like(pred, np.nan)) if band is None else band
    rows = []
    for xi, p, l, h, obs in zip(x[held], pred, lo, hi, y[held]):
        rows.append({"x": xi, "predicted": p, "interval lo": l, "interval hi": h,
                     "measured": obs, "error": obs / p - 1,
                     "inside": bool(l <= obs <= h) if np.isfinite(l) else None,
                     "from": f"{keep.sum()} smaller points, {method}"})
    return pd.DataFrame(rows), ""


def verdict(checked: pd.DataFrame) -> str:
    """One sentence: how many end-point checks passed, and which failed."""
    if checked.empty:
        return "this study has no convergence checks, so convergence is not established"
    failed = checked[~checked.converged]
    higher = checked[checked["relative change"] >= TOLERANCE]
    head = (f"{int(checked.converged.sum())} of {len(checked)} end-point checks converged "
            f"(twice the budget did not lower the best validation loss by {TOLERANCE:.0%} or more)")
    name = lambda r: f"{r.scan} at {r.x} = {r.value:g} (seed {r.seed}, {r['relative change']:+.0%})"  # noqa: E731
    if not failed.empty:
        head += "; not converged: " + ", ".join(name(r) for _, r in failed.iterrows())
    if not higher.empty:
        head += ("; the longer run ended higher (another trajectory, not more training) at "
                 + ", ".join(name(r) for _, r in higher.iterrows()))
    return head


def fit_scans(df: pd.DataFrame, grid: Grid, scans, checked: pd.DataFrame | None = None) -> dict:
    """{scan: (points, FitResult or None, reason)} for the named scans (:func:`fit_converged`)."""
    checked = checks(df, grid) if checked is None else checked
    out = {}
    for name in scans:
        pts = points(df, grid, name, checked)
        result, why = fit_converged(pts)
        out[name] = (pts, result, why)
    return out


def fit_table(fitted: dict) -> pd.DataFrame:
    """One row per scan: its range, converged points of all, and the fitted exponent and scale
    as :meth:`msl.fit.FitResult.shown` gives them, or why there is no fit."""
    rows = []
    for name, (pts, result, why) in fitted.items():
        means = pts.groupby("x").converged.all()
        rows.append({"scan": name, "range": f"{pts.x.min():.3g} – {pts.x.max():.3g}",
                     "converged points": f"{int(means.sum())} of {len(means)}",
                     "alpha": result.shown("alpha") if result else "not fitted",
                     "x0": result.shown("x0") if result else "",
                     "note": why or ("; ".join(sorted(set(result.undetermined.values())))
                                     if result.undetermined else "")})
    return pd.DataFrame(rows).set_index("scan")


def not_converged(pts: pd.DataFrame) -> str:
    """The points left out of a fit, named with the reason, for the chapter's text."""
    bad = pts[~pts.converged]
    if bad.empty:
        return "none"
    return "; ".join(f"{r.x:g} (seed {r.seed}: {r.why})" for r in bad.itertuples())


def shown_predictions(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`predictions` as the book shows it: losses to 3 significant digits, errors in %."""
    if table.empty:
        return table
    out = pd.DataFrame({"x": table.x.map(lambda v: f"{v:g}")})
    out["predicted"] = table.predicted.map(lambda v: f"{v:.3g}")
    out["95% interval"] = [f"[{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) else "none"
                           for lo, hi in zip(table["interval lo"], table["interval hi"])]
    out["measured"] = table.measured.map(lambda v: f"{v:.3g}")
    out["measured / predicted - 1"] = table.error.map(lambda v: f"{v:+.0%}")
    out["inside"] = table.inside.map({True: "yes", False: "no", None: ""})
    out["from"] = table["from"]
    return out


def converged_ids(df: pd.DataFrame, grid: Grid, checked: pd.DataFrame | None = None) -> set[str]:
    """Cell ids of every converged run of ``grid``: its record says it converged and, where it
    is the end of a checked scan, the check passed (:func:`points`). What other fits (laws
    ranked by AICc, 2D maps, compute frontiers) may use."""
    checked = checks(df, grid) if checked is None else checked
    good = set(df[df.run_converged].cell_id)
    for name in grid.scans:
        if grid.axis(name) in AXIS_X and name in df.scan.values:
            pts = points(df, grid, name, checked)
            good -= set(pts[~pts.converged].cell_id)
    return good


@dataclass
class Report:
    """What a chapter shows of a study's convergence, computed once (:func:`report`)."""
    frame: pd.DataFrame     # :func:`frame`
    checks: pd.DataFrame    # :func:`checks`
    scans: list             # the 1D scans along D or N
    fitted: dict            # :func:`fit_scans` of those scans
    good: set               # :func:`converged_ids`
    records: dict           # every record by cell id (for the training curves)
    grid: Grid

    @property
    def verdict(self) -> str:
        return verdict(self.checks)

    def shown_checks(self):
        """The checks as a chapter shows them (losses to 4 decimals), or a sentence if none."""
        if self.checks.empty:
            return "no convergence checks in this grid"
        return self.checks.round({"val/loss": 4, "val/loss (2x)": 4, "relative change": 3})

    def show_fits(self) -> None:
        """Print the points each fit left out (with the reason), then each law's predictions of
        its scan's two largest converged points (:func:`predictions`), as a chapter shows them."""
        from IPython.display import display

        for name, (pts, _, _) in self.fitted.items():
            print(f"{name}: left out: {not_converged(pts)}")
        for name, (pts, _, _) in self.fitted.items():
            table, reason = predictions(pts)
            print(f"predictions of {name}: {reason}" if reason else f"predictions of {name}:")
            if not table.empty:
                display(shown_predictions(table))

    def x_labels(self, labels: dict) -> dict:
        """Axis label of every fitted scan, from ``labels`` keyed by the fit's x (n_train, n_params)."""
        return {name: labels[AXIS_X[self.grid.axis(name)]] for name in self.fitted}


def report(grid: Grid) -> Report:
    """The convergence checks, the converged points and the power laws fitted to them for every
    1D scan of ``grid`` along D or N (2D maps are not scans here; their cells count as converged
    when their records say so)."""
    from msl import results

    df = frame(grid)
    checked = checks(df, grid)
    scans = [name for name in scan_names(grid) if grid.axis(name) in AXIS_X]
    return Report(frame=df, checks=checked, scans=scans, fitted=fit_scans(df, grid, scans, checked),
                  good=converged_ids(df, grid, checked),
                  records={r["cell_id"]: r for r in results.load(grid.study_dir)}, grid=grid)


def exponents(report: Report) -> dict:
    """{"alpha_D": ..., "alpha_N": ...} of a study's converged fits as the book shows them
    (:meth:`msl.fit.FitResult.shown`, or "not fitted" with the reason), each with its range:
    the scans along D and along N of :func:`report`, first of each kind."""
    out = {}
    for name, (pts, result, why) in report.fitted.items():
        key = {"n_train": "alpha_D", "size": "alpha_N"}[report.grid.axis(name)]
        if key not in out:
            shown = result.shown("alpha") if result else f"not fitted ({why})"
            out[key] = (shown, f"{pts.x.min():,.0f} – {pts.x.max():,.0f}")
    return out


def exponent_table(reports: dict, published: dict | None = None) -> pd.DataFrame:
    """One row per study of ``reports`` ({label: :class:`Report`}): alpha_D and alpha_N with their
    ranges; then one row per ``published`` entry ({label: {"alpha_D": value, "alpha_N": value}},
    printed values without uncertainties, shown as printed)."""
    rows = []
    for label, rep in reports.items():
        found = exponents(rep)
        row = {"source": label}
        for key, x in (("alpha_D", "D"), ("alpha_N", "N")):
            shown, span = found.get(key, ("no scan", ""))
            row.update({key: shown, f"{x} range": span})
        rows.append(row)
    for label, values in (published or {}).items():
        rows.append({"source": label, "alpha_D": values.get("alpha_D", ""), "D range": "",
                     "alpha_N": values.get("alpha_N", ""), "N range": ""})
    return pd.DataFrame(rows).set_index("source")
