"""Plots of single runs: the loss curve of a record."""

from __future__ import annotations

import matplotlib.pyplot as plt


def loss_curve(record: dict, ax=None):
    """Training and validation loss (dimensionless, log scale) against epoch for one record."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    history = record.get("history") or []
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train/loss"] for h in history], label="train", color="0.55")
    ax.plot(epochs, [h["val/loss"] for h in history], label="validation", color="C0")
    if record.get("best_epoch"):
        ax.axvline(record["best_epoch"], color="C3", lw=0.8, ls=":", label="best validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised MSE)")
    ax.set_title(f"{record['model']} size {record['size']}, D = {record['n_train']}", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ax


def scan_curves(ax, runs, *, x_label="D", cmap="viridis"):
    """Validation loss against optimisation step for every run of one scan, one colour per value
    of the scan's axis (``runs``: (axis value, record) pairs); a dot marks each run's best
    validation, a cross a run that its step cap (not early stopping) ended. Returns ``ax``."""
    import matplotlib as mpl
    import numpy as np

    values = sorted({v for v, _ in runs})
    cm = mpl.colormaps[cmap]
    colour = {v: cm(i / max(1, len(values) - 1)) for i, v in enumerate(values)}
    seen = set()
    for value, rec in runs:
        history = rec.get("history") or []
        if not history:
            continue
        steps = np.array([h["step"] for h in history])
        loss = np.array([h["val/loss"] for h in history])
        label = f"{x_label} = {value:g}" if value not in seen else None
        seen.add(value)
        ax.plot(steps, loss, color=colour[value], lw=1, label=label)
        best = int(np.argmin(loss))
        ax.plot(steps[best], loss[best], "o", ms=3, color=colour[value])
        if rec.get("stop_reason") == "max_steps":
            ax.plot(steps[-1], loss[-1], "x", ms=6, color=colour[value])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("validation loss")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    return ax


def converged_points(ax, points, *, color="C0"):
    """A scan's seed means on log-log axes: filled where every seed converged, hollow where one
    did not (``points``: the frame of :func:`msl.convergence.points`). Returns ``ax``."""
    means = points.groupby("x").agg(loss=("val/loss", "mean"), ok=("converged", "all"))
    for ok, face, label in ((True, color, "converged"), (False, "none", "not converged")):
        part = means[means.ok == ok]
        if len(part):
            ax.plot(part.index, part.loss, "o", ms=5, mfc=face, mec=color, label=label, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    return ax


def _panels(n: int, width: float, height: float, per_row: int):
    """A figure of ``n`` panels, ``per_row`` to a row (panels past ``n`` hidden): (fig, axes)."""
    rows, cols = -(-n // per_row), min(per_row, n)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), layout="constrained",
                             squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:n]


def curves_figure(study, frame, scans, records, *, width=4.6, per_row=3):
    """One panel of :func:`scan_curves` per scan in ``scans`` (``frame``: the study's
    :func:`msl.convergence.frame`; ``records``: its records by cell id). Returns the figure."""
    from msl.analysis import AXIS_X

    fig, axes = _panels(len(scans), width, 3.5, per_row)
    for ax, name in zip(axes, scans):
        axis = AXIS_X.get(study.axis(name), study.axis(name))
        part = frame[(frame.scan == name) & (frame.status == "ok")]
        scan_curves(ax, [(getattr(r, axis), records[r.cell_id]) for r in part.itertuples()],
                    x_label={"n_train": "D", "n_params": "N"}.get(axis, axis))
        ax.set_title(name, fontsize=10)
    return fig


def fits_figure(fitted, x_labels, *, width=4.6, per_row=3):
    """One panel per scan of :func:`msl.convergence.fit_scans`: its points (hollow where not
    converged) and, where fitted, the power law on the converged ones. ``x_labels``: axis label
    per scan. Returns the figure."""
    from msl.plot import scaling

    fig, axes = _panels(len(fitted), width, 3.7, per_row)
    for ax, (name, (pts, result, _)) in zip(axes, fitted.items()):
        converged_points(ax, pts)
        if result is not None:
            good = pts[pts.converged].groupby("x")["val/loss"].mean()
            scaling.loglog(ax, good.index, good.to_numpy(), fit=result, color="C0")
        ax.set_xlabel(x_labels[name])
        ax.set_ylabel("validation loss L")
        ax.set_title(f"{name}: {result.stated('alpha') if result else 'no fit'}", fontsize=9)
        ax.legend(frameon=False, fontsize=7)
    return fig
