"""Broken Neural Scaling Laws (Caballero, Gupta, Rish, Krueger; ICLR 2023, arXiv 2210.14891).

    y = a + b x^(-c0) prod_{i=1..n} (1 + (x/d_i)^(1/f_i))^(-c_i f_i)

``a`` is the unimprovable loss (y as x -> infinity), ``b`` the offset on a log-log plot, ``c0``
the first slope, ``c_i`` the change of slope at break i (after break k the slope of y - a is
-(c0 + ... + c_k)), ``d_i`` where break i happens (units of x), ``f_i`` > 0 its sharpness (smaller
is sharper). 3n + 3 parameters.

Fitted as the authors' reference code does (``research/anchors.md`` §1.2): least squares on
log(y + 1), from the best points of a coarse grid. Their grid searched b and d_i on a log-like
scale and a, c, f linearly; ours searches log b (profiled: for each grid point the b that matches
the mean of log(y - a)), log d_i at the data's x quantiles (a break outside the fitted range
cannot be identified, BNSL's own point), log f_i, and a, c linearly. Hand-written because no
library fits BNSL; the reference scripts are unlicensed and fit only one break.
"""

from __future__ import annotations

import itertools

import numpy as np

from msl.fit.core import Form, check_inputs, fit
from msl.fit.result import FitResult

MAX_BREAKS = 3


def _names(n_breaks):
    names = ["a", "b", "c0"]
    for i in range(1, n_breaks + 1):
        names += [f"c{i}", f"d{i}", f"f{i}"]
    return tuple(names)


def _model(n_breaks):
    def model(theta, X, jac):
        lx = np.log(X[:, 0])[None, :]
        a, lb, c0 = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        log_g = lb - c0 * lx
        parts = []
        for i in range(n_breaks):
            c, ld, lf = (theta[:, 3 + 3 * i + j: 4 + 3 * i + j] for j in range(3))
            f = np.exp(lf)
            v = (lx - ld) / f
            sp = np.logaddexp(0.0, v)
            log_g = log_g - c * f * sp
            parts.append((c, f, v, sp))
        with np.errstate(over="ignore"):
            g = np.exp(log_g)
        y = a + g
        if not jac:
            return y, None
        cols = [np.ones_like(g), g, -g * lx]
        for c, f, v, sp in parts:
            sig = 0.5 * (1.0 + np.tanh(0.5 * v))
            cols += [-g * f * sp, g * c * sig, -g * c * f * (sp - sig * v)]
        return y, np.stack(cols, axis=1)
    return model


def _starts(n_breaks):
    c_grid = {1: (-0.5, 0.0, 0.3, 1.0, 3.0), 2: (-0.3, 0.0, 0.5, 2.0), 3: (0.0, 0.5, 2.0)}
    f_grid = {1: (0.05, 0.2, 1.0), 2: (0.1, 0.5), 3: (0.2,)}
    n_d = {1: 8, 2: 6, 3: 5}

    def starts(X, y):
        lx, ymin = np.log(X[:, 0]), y.min()
        rows = []
        if n_breaks == 0:
            others = [()]
        else:
            ld = np.quantile(lx, np.linspace(0.05, 0.95, n_d[n_breaks]))
            per_break = list(itertools.product(c_grid[n_breaks], ld, np.log(f_grid[n_breaks])))
            others = [combo for combo in itertools.product(per_break, repeat=n_breaks)
                      if all(combo[i][1] < combo[i + 1][1] for i in range(n_breaks - 1))]
        for a_frac, c0 in itertools.product((0.0, 0.5, 0.8, 0.95), (0.0, 0.1, 0.25, 0.5, 1.0)):
            for combo in others:
                rows.append([a_frac * ymin, 0.0, c0, *[v for brk in combo for v in brk]])
        rows = np.array(rows)
        with np.errstate(all="ignore"):  # b is profiled: the b matching mean log(y - a)
            shape = _model(n_breaks)(rows, X, False)[0] - rows[:, :1]  # (S, n) with b = 1
            rows[:, 1] = np.mean(np.log(y[None, :] - rows[:, :1]) - np.log(shape), axis=1)
        return rows[np.isfinite(rows[:, 1])]
    return starts


def _check(n_breaks):
    """A break d_i outside the data: d_i, f_i and c_i undetermined, and when it lies below the
    data also the slopes before it (c0 .. c_{i-1}), which only enter as a sum there."""
    from msl.fit.forms import break_outside

    def check(theta, X):
        out = []
        for i in range(1, n_breaks + 1):
            own = (f"c{i}", f"f{i}")
            out += break_outside(np.exp(theta[1 + 3 * i]), X[:, 0], f"d{i}",
                                 own + tuple(f"c{j}" for j in range(i)), own)
        return out
    return check


def bnsl_form(n_breaks: int) -> Form:
    """The BNSL ``Form`` with ``n_breaks`` breaks (0 to 3)."""
    if n_breaks not in range(MAX_BREAKS + 1):
        raise ValueError(f"bnsl: n_breaks = {n_breaks} not in 0..{MAX_BREAKS}")
    log_params = (False, True, False) + (False, True, True) * n_breaks
    return Form(name=f"bnsl_{n_breaks}", params=_names(n_breaks), model=_model(n_breaks),
                starts=_starts(n_breaks), log_params=log_params, check=_check(n_breaks))


def bnsl(x, y, n_breaks=1, sigma=None, *, space="log1p", bootstrap=0, seed=0,
         groups=None) -> FitResult:
    """Fit a BNSL with ``n_breaks`` breaks; params ``a, b, c0, c1, d1, f1, ...``.

    ``space="log1p"`` (default) is the authors' least squares on log(y + 1); ``"log"`` and
    ``"linear"`` are also available. A break outside the data range is flagged
    ``poorly_determined``. Other arguments as ``msl.fit.power_law``.
    """
    form = bnsl_form(n_breaks)
    X, y, sigma = check_inputs(form.name, form.n_params, [("x", x)], y, sigma)
    return fit(form, X, y, sigma, space=space, bootstrap=bootstrap, seed=seed, groups=groups)
