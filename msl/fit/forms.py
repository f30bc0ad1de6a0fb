"""One-dimensional laws of Großmann et al. (2026): power law, power law with floor, broken law.

Conventions: x is the scaled resource (N = parameters, D = training structures, C = FLOPs), y the
loss L > 0. As in Großmann et al.'s ``scaling_law_results.ipynb`` (``research/papers.md``
§2.6-2.7), the default fit is least squares in linear space on the mean loss over seeds,
weighted by ``sigma`` (the spread over seeds) when given, with the covariance scaled by the
reduced chi-square (``curve_fit``'s ``absolute_sigma=False``). ``space="log"`` fits log L
instead (the natural choice for a plain power law on data spanning decades). Scales (x0, x_c)
are optimised as logarithms so that the search is over decades; exponents are free in sign
(Großmann et al. report alpha_2 = -0.01 for a saturating parameter scan).

Why hand-written: ``scipy.optimize.curve_fit`` fits from one initial value, and the published fits
depend on it (p0 = 0.1, x_min); here every form scans a grid of starts and refines the best ones
(``msl.fit.core``), with analytic Jacobians, so that the answer is the global least-squares
optimum.
"""

from __future__ import annotations

import numpy as np

from msl.fit.core import Form, check_inputs, fit
from msl.fit.result import FitResult

ALPHAS = np.concatenate([-np.geomspace(0.5, 0.02, 4), np.geomspace(0.02, 3.0, 14)])


def _softplus(u):
    return np.logaddexp(0.0, u)


def _sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _profile_log_x0(lx, ly, alphas):
    """For each exponent, the log x0 that matches mean(log y): log y = alpha (log x0 - log x)."""
    return np.mean(ly[None, :] / alphas[:, None] + lx[None, :], axis=1)


def _ols_alpha(lx, ly):
    slope = np.polyfit(lx, ly, 1)[0]
    return -slope if abs(slope) > 1e-3 else 1e-3


# --- L = (x0/x)^alpha ---------------------------------------------------------------------------

def _power_model(theta, X, jac):
    alpha, lx0 = theta[:, 0:1], theta[:, 1:2]
    du = lx0 - np.log(X[:, 0])[None, :]
    log_y = alpha * du
    if not jac:
        return log_y, None
    return log_y, np.stack([du, np.broadcast_to(alpha, du.shape)], axis=1)


def _power_starts(X, y):
    lx, ly = np.log(X[:, 0]), np.log(y)
    alphas = np.append(ALPHAS, _ols_alpha(lx, ly))
    return np.column_stack([alphas, _profile_log_x0(lx, ly, alphas)])


POWER_LAW = Form(name="power_law", params=("alpha", "x0"), model=_power_model,
                 starts=_power_starts, log_params=(False, True), log_output=True)


# --- L = L_inf + (x0/x)^alpha --------------------------------------------------------------------

def _floor_model(theta, X, jac):
    alpha, lx0, floor = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    du = lx0 - np.log(X[:, 0])[None, :]
    with np.errstate(over="ignore"):
        term = np.exp(alpha * du)
    y = floor + term
    if not jac:
        return y, None
    return y, np.stack([term * du, term * alpha, np.ones_like(term)], axis=1)


def _floor_starts(X, y):
    lx = np.log(X[:, 0])
    rows = []
    for frac in (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98):
        floor = frac * y.min()
        ly = np.log(y - floor)
        alphas = np.append(ALPHAS, _ols_alpha(lx, ly))
        lx0 = _profile_log_x0(lx, ly, alphas)
        rows.append(np.column_stack([alphas, lx0, np.full(alphas.size, floor)]))
    return np.vstack(rows)


POWER_LAW_FLOOR = Form(name="power_law_floor", params=("alpha", "x0", "L_inf"),
                       model=_floor_model, starts=_floor_starts, log_params=(False, True, False),
                       lower=(-np.inf, -np.inf, 0.0))


# --- L = (x_c/x)^alpha_2 (1 + x_c/x)^(alpha_1 - alpha_2) ----------------------------------------

def _broken_model(theta, X, jac):
    a1, a2, lxc = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    u = lxc - np.log(X[:, 0])[None, :]  # log(x_c/x): large for x << x_c
    sp = _softplus(u)
    log_y = a2 * u + (a1 - a2) * sp
    if not jac:
        return log_y, None
    d_lxc = a2 + (a1 - a2) * _sigmoid(u)
    return log_y, np.stack([sp, u - sp, d_lxc], axis=1)


def _broken_starts(X, y):
    lx = np.log(X[:, 0])
    lxc = np.linspace(lx.min() - np.log(10), lx.max() + np.log(10), 17)
    a = np.linspace(-0.4, 2.0, 13)
    g1, g2, g3 = np.meshgrid(a, a, lxc, indexing="ij")
    return np.column_stack([g1.ravel(), g2.ravel(), g3.ravel()])


def break_outside(xc, x, name, below, above):
    """Form-check items for a break ``xc`` outside the data ``x``: the break and the slope on the
    side without data (``below``: the parameters seen only for x < xc; ``above``: for x > xc)
    are undetermined. The text names the data range, never the break's own digits."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo <= xc <= hi:
        return []
    side, names = ("below", below) if xc < lo else ("above", above)
    return [((name, *names), f"break {name} {side} the data range [{lo:.3g}, {hi:.3g}]")]


def _broken_check(theta, X):
    return break_outside(np.exp(theta[2]), X[:, 0], "x_c", ("alpha_1",), ("alpha_2",))


BROKEN_POWER_LAW = Form(name="broken_power_law", params=("alpha_1", "alpha_2", "x_c"),
                        model=_broken_model, starts=_broken_starts,
                        log_params=(False, False, True), log_output=True, check=_broken_check)


# --- public functions ----------------------------------------------------------------------------

def power_law(x, y, sigma=None, *, space="linear", bootstrap=0, seed=0, groups=None) -> FitResult:
    """Fit L = (x0/x)^alpha; params ``alpha`` (dimensionless), ``x0`` (units of x).

    ``sigma`` (same units as y) weights the residuals; ``space`` is ``"linear"`` (Großmann et al.)
    or ``"log"``; ``bootstrap`` > 0 adds percentile intervals over that many resamples of runs
    (``groups`` labels points of one run). Raises ``ValueError`` on bad input.
    """
    X, y, sigma = check_inputs("power_law", 2, [("x", x)], y, sigma)
    return fit(POWER_LAW, X, y, sigma, space=space, bootstrap=bootstrap, seed=seed, groups=groups)


def power_law_floor(x, y, sigma=None, *, space="linear", bootstrap=0, seed=0,
                    groups=None) -> FitResult:
    """Fit L = L_inf + (x0/x)^alpha with L_inf >= 0; params ``alpha``, ``x0``, ``L_inf``.

    Großmann et al.'s form for parameter scaling (it saturates). An L_inf that ends on 0 is
    reported as on its bound (``poorly_determined``). Other arguments as ``power_law``.
    """
    X, y, sigma = check_inputs("power_law_floor", 3, [("x", x)], y, sigma)
    return fit(POWER_LAW_FLOOR, X, y, sigma, space=space, bootstrap=bootstrap, seed=seed,
               groups=groups)


def broken_power_law(x, y, sigma=None, *, space="linear", bootstrap=0, seed=0,
                     groups=None) -> FitResult:
    """Fit the smoothly broken law L = (x_c/x)^alpha_2 (1 + x_c/x)^(alpha_1 - alpha_2).

    Großmann et al.'s form for data scaling: L ~ (x_c/x)^alpha_1 for x << x_c (``alpha_1``, the
    small-x exponent) and L ~ (x_c/x)^alpha_2 for x >> x_c (``alpha_2``, large-x); ``x_c`` is the
    break, in units of x. A break outside the data range is flagged ``poorly_determined``.
    """
    X, y, sigma = check_inputs("broken_power_law", 3, [("x", x)], y, sigma)
    return fit(BROKEN_POWER_LAW, X, y, sigma, space=space, bootstrap=bootstrap, seed=seed,
               groups=groups)
