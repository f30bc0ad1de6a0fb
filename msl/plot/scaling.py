"""Figures of scaling laws: log-log data with fits, the 2D L(N, D) map, the compute frontier.

Matplotlib's object-oriented API only (no ``pyplot`` state in the drawing functions, no style
sheets). Axis labels carry units: N in parameters, D in training structures, C in FLOPs; the loss
label is the caller's (it depends on the target).
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FormatStrFormatter, NullFormatter
from matplotlib import colors
from matplotlib.figure import Figure

N_LABEL = "N (parameters)"
D_LABEL = "D (training structures)"
C_LABEL = "C (training FLOPs)"


def loglog(ax, x, y, yerr=None, fit=None, label=None, band=True, *, color=None, extend=1.0,
           level=0.95, xlabel=None, ylabel="loss", fit_label=None):
    """Data with error bars on log-log axes, and optionally a fitted 1D law with its band.

    ``yerr`` is the spread over seeds (units of y); ``fit`` a ``FitResult`` of a 1D form; the
    line runs over the data range stretched by ``extend`` (a factor in x on each side, to show an
    extrapolation); ``band`` shades the ``level`` interval from the fit's bootstrap if it has one,
    else from its covariance. Returns ``ax``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    bars = ax.errorbar(x, y, yerr=yerr, fmt="o", ms=4, capsize=2, color=color, label=label,
                       zorder=3)
    color = bars.lines[0].get_color()
    if fit is not None:
        grid = np.geomspace(x.min() / extend, x.max() * extend, 200)
        ax.plot(grid, fit.predict(grid), "--", color=color, lw=1.2,
                label=fit_label if fit_label is not None else _fit_label(fit))
        bounds = fit.band(grid, level=level) if band else None
        if bounds is not None:
            ax.fill_between(grid, *bounds, color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # minor labels collide on ranges under a decade
        axis.set_minor_formatter(NullFormatter())
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


def _fit_label(fit):
    """A short legend entry: the form and its exponents with standard errors, or "undetermined"
    (``FitResult.stated``, without the reason: tables give it)."""
    parts = [fit.stated(k, why=False) for k in fit.params if k.startswith(("alpha", "c"))]
    return f"{fit.form}: " + ", ".join(parts)


def map_2d(n, d, y, fit=None, *, yerr=None, loss_label="loss", cmap="viridis", title=None):
    """The three panels of Großmann et al.'s Fig. 2, returned as a new ``Figure``.

    Top: L vs N, one colour per D. Middle: L vs D, one colour per N. Bottom: a colour map of
    L(N, D) on the measured grid (cells without data are blank). With ``fit`` (a ``kaplan_2d``
    or ``chinchilla`` result) each curve gets its fitted line and the map its contours.
    ``n``, ``d``, ``y`` (and ``yerr``) are 1D, one entry per (N, D) cell (seed means).
    """
    n, d, y = (np.asarray(a, float).ravel() for a in (n, d, y))
    fig = Figure(figsize=(5.0, 10.0), layout="constrained")
    ax_n, ax_d, ax_map = fig.subplots(3, 1)
    _curves(fig, ax_n, n, d, y, yerr, fit, cmap, along="n", loss_label=loss_label)
    _curves(fig, ax_d, n, d, y, yerr, fit, cmap, along="d", loss_label=loss_label)
    _colour_map(fig, ax_map, n, d, y, fit, cmap, loss_label)
    if title:
        fig.suptitle(title)
    return fig


def _curves(fig, ax, n, d, y, yerr, fit, cmap, along, loss_label):
    """Loss against ``along`` ("n" or "d"), one curve per value of the other variable."""
    x, other = (n, d) if along == "n" else (d, n)
    levels = np.unique(other)
    norm = colors.LogNorm(levels.min(), levels.max())
    cm = _cmap(cmap)
    for level in levels:
        sel = other == level
        order = np.argsort(x[sel])
        c = cm(norm(level))
        err = None if yerr is None else np.asarray(yerr, float).ravel()[sel][order]
        ax.errorbar(x[sel][order], y[sel][order], yerr=err, fmt="o", ms=3, capsize=1.5, color=c)
        if fit is not None:
            grid = np.geomspace(x.min(), x.max(), 100)
            pair = (grid, np.full_like(grid, level)) if along == "n" else (
                np.full_like(grid, level), grid)
            ax.plot(grid, fit.predict(*pair), "-", color=c, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL if along == "n" else D_LABEL)
    ax.set_ylabel(loss_label)
    bar = fig.colorbar(_mappable(norm, cm), ax=ax)
    bar.set_label(D_LABEL if along == "n" else N_LABEL)


def _colour_map(fig, ax, n, d, y, fit, cmap, loss_label):
    """pcolormesh of the measured L(N, D) (log colour scale) with fitted contours."""
    n_vals, d_vals = np.unique(n), np.unique(d)
    grid = np.full((d_vals.size, n_vals.size), np.nan)
    grid[np.searchsorted(d_vals, d), np.searchsorted(n_vals, n)] = y
    norm = colors.LogNorm(np.nanmin(grid), np.nanmax(grid))
    mesh = ax.pcolormesh(_edges(n_vals), _edges(d_vals), np.ma.masked_invalid(grid),
                         cmap=_cmap(cmap), norm=norm, shading="flat")
    if fit is not None:
        nn, dd = np.meshgrid(np.geomspace(n_vals.min(), n_vals.max(), 80),
                             np.geomspace(d_vals.min(), d_vals.max(), 80))
        lines = ax.contour(nn, dd, fit.predict(nn, dd), levels=6, colors="white",
                           linewidths=0.8)
        ax.clabel(lines, fontsize=7, fmt="%.3g")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL)
    ax.set_ylabel(D_LABEL)
    fig.colorbar(mesh, ax=ax).set_label(loss_label)


def _edges(values):
    """Cell edges halfway (geometrically) between sorted positive values."""
    if values.size == 1:
        return np.array([values[0] / 1.5, values[0] * 1.5])
    logs = np.log(values)
    mid = (logs[1:] + logs[:-1]) / 2
    first, last = 2 * logs[0] - mid[0], 2 * logs[-1] - mid[-1]
    return np.exp(np.concatenate([[first], mid, [last]]))


def _cmap(name):
    from matplotlib import colormaps

    return colormaps[name]


def _mappable(norm, cm):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cm)


def plain_y_ticks(ax):
    """Label the y axis of a log plot with plain numbers (major and minor ticks), for losses
    that span less than a decade, where 10^x labels would leave the axis almost unlabelled."""
    for set_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        set_formatter(FormatStrFormatter("%g"))
    return ax


def lower_envelope(flops, loss, convex=True):
    """Indices of the compute-optimal runs, in order of increasing compute.

    ``convex=True``: the lower convex hull of the points in (log C, log L), up to the lowest loss
    (the efficient frontier as Kaplan et al. and Hoffmann et al. draw it). ``convex=False``: every
    run with a lower loss than all runs of smaller compute (the Pareto set).
    """
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    order = np.lexsort((loss, flops))
    best, pareto = np.inf, []
    for i in order:
        if loss[i] < best:
            best = loss[i]
            pareto.append(i)
    if not convex:
        return np.array(pareto, dtype=int)
    px, py = np.log(flops), np.log(loss)
    hull = []
    for i in pareto:  # monotone chain, lower hull; the Pareto set already falls monotonically
        while len(hull) >= 2 and _cross(px, py, hull[-2], hull[-1], i) <= 0:
            hull.pop()
        hull.append(i)
    return np.array(hull, dtype=int)


def _cross(px, py, a, b, c):
    return (px[b] - px[a]) * (py[c] - py[a]) - (py[b] - py[a]) * (px[c] - px[a])


def frontier(ax, flops, loss, groups=None, *, fit=None, cmap="viridis", group_label="N",
             loss_label="loss", level=0.95):
    """Loss against compute C (FLOPs), coloured by ``groups`` (e.g. N), with the frontier.

    The frontier is the lower envelope of the measured runs (``lower_envelope``), drawn as a
    black line; with ``fit`` (a ``chinchilla`` result) the predicted compute-optimal loss
    L_opt(C), with its bootstrap band when the fit has one, is drawn over the same range.
    Returns ``ax``.
    """
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    if groups is None:
        ax.plot(flops, loss, "o", ms=3, color="0.6", zorder=2)
    else:
        groups = np.asarray(groups)
        levels = np.unique(groups)
        cm = _cmap(cmap)
        for k, g in enumerate(levels):
            sel = groups == g
            order = np.argsort(flops[sel])
            ax.plot(flops[sel][order], loss[sel][order], "o-", ms=3, lw=0.8,
                    color=cm(k / max(1, levels.size - 1)), label=f"{group_label} = {g:.3g}"
                    if np.issubdtype(levels.dtype, np.number) else f"{group_label} = {g}")
    env = lower_envelope(flops, loss)
    ax.plot(flops[env], loss[env], "k-", lw=1.6, label="lower envelope", zorder=4)
    if fit is not None:
        grid = np.geomspace(flops.min(), flops.max(), 200)
        ax.plot(grid, fit.loss_opt(grid), "--", color="C3", lw=1.4, label="fitted L_opt(C)",
                zorder=5)
        if fit.boot is not None:
            lo, hi = fit.frontier_ci(grid, level=level)["loss_opt"]
            ax.fill_between(grid, lo, hi, color="C3", alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(C_LABEL)
    ax.set_ylabel(loss_label)
    ax.legend(frameon=False, fontsize=7)
    return ax


def scan_panel(ax, fitted: dict, form: str, *, xlabel=None, ylabel="loss", asymptotes=0,
               color=None, label=None):
    """One 1D scan in the style of Großmann et al.'s Fig. 1: seed means with their spread, the
    law ``form`` fitted to them with its band, and optionally simple power laws fitted in log
    space to the first and last ``asymptotes`` points (thin dotted lines, their slopes in the
    legend) to show a break. ``fitted`` is a ``msl.analysis.fit_forms`` result."""
    from msl.reanalysis import asymptotes as asymptote_fits

    _, x, y, sigma = fitted["points"]
    if len(x) == 0:
        ax.text(0.5, 0.5, "no finished runs", transform=ax.transAxes, ha="center")
        return ax
    result = fitted["fits"].get(form)
    loglog(ax, x, y, yerr=sigma, fit=result, label=label, color=color, xlabel=xlabel,
           ylabel=ylabel)
    if asymptotes and len(x) > asymptotes:
        for part, fit_part in zip(("first", "last"), asymptote_fits(x, y, asymptotes)):
            grid = np.geomspace(x.min(), x.max(), 50)
            ax.plot(grid, fit_part.predict(grid), ":", lw=1, color="0.4" if part == "first" else "0.1",
                    label=f"{part} {asymptotes}: {fit_part.stated('alpha', 'α', why=False)}")
    plain_y_ticks(ax)
    ax.legend(fontsize=7)
    return ax
