"""The peak learning rate per model size, from a study's learning-rate scans (no training here).

A parameter scan is fair only if every rung trains at a good learning rate. A grid tunes it with
short scans whose axis is ``max_lr`` (at least 3 values spanning 10x) at the smallest and the
largest rung of each parameter scan::

    lr_small: {axis: max_lr, max_lr: [1.0e-3, 3.0e-3, 1.0e-2], size: 0, n_train: 320}
    lr_large: {axis: max_lr, max_lr: [1.0e-3, 3.0e-3, 1.0e-2], size: 5, n_train: 320}

:func:`optima` finds the best value per rung (flagging one on the edge of its scan, where the
optimum may lie beyond), :func:`rule` the power of N through the two optima, and
:func:`check_rule` compares them with the rule the parameter scan actually uses (a fixed
``max_lr``, or Großmann et al.'s width rule ``max_lr (N / lr_ref_params)^-lr_gamma``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from msl.grid import Grid

AXIS = "max_lr"
MIN_VALUES, MIN_SPAN = 3, 10.0   # what a learning-rate scan must cover


def lr_scans(grid: Grid) -> list[str]:
    """The scans of ``grid`` along ``max_lr``."""
    return [name for name, spec in grid.scans.items() if spec["axis"] == AXIS]


def check_scan(grid: Grid, name: str) -> None:
    """A learning-rate scan must have at least 3 values spanning at least 10x."""
    values = grid.scans[name][AXIS]
    if len(values) < MIN_VALUES or max(values) / min(values) < MIN_SPAN * (1 - 1e-9):
        raise ValueError(f"learning-rate scan {name!r} has {values}: it needs at least "
                         f"{MIN_VALUES} values spanning at least {MIN_SPAN:g}x")


def optima(df: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """The best ``max_lr`` of every learning-rate scan (mean validation loss over seeds), and
    whether it lies on the edge of the scanned values. ``df``: :func:`msl.convergence.frame`."""
    rows = []
    for name in lr_scans(grid):
        check_scan(grid, name)
        part = df[(df.scan == name) & (df.status == "ok")]
        if part.empty:
            continue
        means = part.groupby(AXIS)["val/loss"].mean()
        best = float(means.idxmin())
        values = grid.scans[name][AXIS]
        rows.append({"scan": name, "model": part.model.iloc[0], "size": int(part["size"].iloc[0]),
                     "n_params": int(part.n_params.iloc[0]), "best max_lr": best,
                     "val/loss at best": float(means.min()),
                     "on the edge": best in (min(values), max(values))})
    return pd.DataFrame(rows)


def rule(best: pd.DataFrame) -> float | None:
    """gamma of lr = c N^-gamma through the optima of the smallest and the largest rung of one
    family (``best``: its rows of :func:`optima`); None with fewer than two rungs."""
    if len(best) < 2:
        return None
    ordered = best.sort_values("n_params")
    lo, hi = ordered.iloc[0], ordered.iloc[-1]
    return -math.log(hi["best max_lr"] / lo["best max_lr"]) / math.log(hi.n_params / lo.n_params)


def rule_lr(spec: dict, n_params: float) -> float:
    """The peak learning rate a grid's parameters give a model of ``n_params`` parameters (as
    :func:`msl.train.peak_lr`)."""
    gamma, ref = spec.get("lr_gamma", 0.0), spec.get("lr_ref_params", 0)
    return spec["max_lr"] * (n_params / ref) ** -gamma if gamma else spec["max_lr"]


def check_rule(best: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Per tuned rung: its best ``max_lr`` beside what the parameter scan's rule (``params``: the
    scan's fixed and own values) gives it, and whether they agree to within the scan's spacing
    (a factor of sqrt(10) for values 3x apart: the optimum lies somewhere between neighbours)."""
    rows = []
    for _, r in best.iterrows():
        used = rule_lr(params, r.n_params)
        ratio = used / r["best max_lr"]
        rows.append({"scan": r.scan, "n_params": r.n_params, "best max_lr": r["best max_lr"],
                     "rule's max_lr": used, "ratio": ratio,
                     "agrees": bool(1 / math.sqrt(10) <= ratio <= math.sqrt(10))})
    return pd.DataFrame(rows)


def curves(df: pd.DataFrame, grid: Grid):
    """(scan, n_params, lr values, mean loss, spread or None) of every learning-rate scan, for
    the figure of loss against learning rate."""
    out = []
    for name in lr_scans(grid):
        part = df[(df.scan == name) & (df.status == "ok")]
        if part.empty:
            continue
        grouped = part.groupby(AXIS)["val/loss"]
        spread = grouped.std(ddof=1).to_numpy() if grouped.count().min() > 1 else None
        out.append((name, int(part.n_params.iloc[0]), np.array(grouped.mean().index, float),
                    grouped.mean().to_numpy(), spread))
    return out


def figure(df: pd.DataFrame, grid: Grid):
    """Validation loss against peak learning rate for every learning-rate scan (error bars: the
    spread over seeds), one line per tuned rung; None where the grid has no such scans."""
    import matplotlib.pyplot as plt

    lines = curves(df, grid)
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    for name, n_params, lr_values, loss, spread in lines:
        model = df[df.scan == name].model.iloc[0]
        ax.errorbar(lr_values, loss, yerr=spread, fmt="o-", ms=4, capsize=2,
                    label=f"{model}, N = {n_params:,}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("validation loss L")
    ax.legend(frameon=False, fontsize=7)
    return fig


def summary(df: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Per learning-rate scan: its best value, whether that lies on the edge of the scan, the
    value the matching parameter scan's rule gives that rung, and whether they agree
    (:func:`check_rule`); the rule's gamma fitted through the family's two optima beside it."""
    best = optima(df, grid)
    if best.empty:
        return best
    rows = []
    for model, part in best.groupby("model", sort=False):
        params = [n for n, s in grid.scans.items()
                  if s["axis"] == "size" and {**grid.fixed, **s}.get("model") == model]
        gamma = rule(part)
        checked = (check_rule(part, {**grid.fixed, **grid.scans[params[0]]}) if params
                   else pd.DataFrame({"scan": part.scan}))
        for (_, r), (_, c) in zip(part.iterrows(), checked.iterrows()):
            rows.append({"model": model, "scan": r.scan, "N": r.n_params,
                         "best max_lr": r["best max_lr"], "on the edge": r["on the edge"],
                         "rule's max_lr": c.get("rule's max_lr"), "agrees": c.get("agrees"),
                         "gamma through the optima": "undetermined (one rung)" if gamma is None
                         else f"{gamma:.2f}"})
    return pd.DataFrame(rows)


def section(df: pd.DataFrame, grid: Grid):
    """What a chapter shows of the learning-rate scans: draws :func:`figure` and returns
    :func:`summary`, or a sentence where the grid has no such scans."""
    figure(df, grid)
    table = summary(df, grid)
    return table if len(table) else "no learning-rate scans in this grid: one fixed peak learning rate"
