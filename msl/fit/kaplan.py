"""Two-dimensional L(N, D) maps of Kaplan type (Kaplan et al. 2020; Großmann et al. 2026).

Plain (Kaplan et al. Eq. 1.5):
    L = [ (N_c/N)^(alpha_N/alpha_D) + D_c/D ]^alpha_D
Broken in D (Großmann et al., ``global_scaling_fit_kaplan``):
    L = [ (N_c/N)^(alpha_N/alpha_D2) + (D_c/D) (1 + D_c/D)^(alpha_D1/alpha_D2 - 1) ]^alpha_D2

N = parameters, D = training structures; N_c, D_c in the same units. The plain form reduces to
(N_c/N)^alpha_N as D -> infinity and to (D_c/D)^alpha_D as N -> infinity. In the broken form
alpha_D1 is the small-D exponent (D << D_c) and alpha_D2 the large-D one.

Fitted as Großmann et al. did: least squares in linear space on seed means, weighted by the seed
spread ``sigma`` with the covariance taken as absolute (``curve_fit(absolute_sigma=True)``);
without ``sigma`` unweighted, covariance scaled by the residual variance. Internally the fit works
on log L = alpha_D log S with S computed by log-sum-exp (no overflow for any N_c, D_c) and log
N_c, log D_c, from a grid over the exponents and over N_c, D_c placed where each term alone would
explain the data. Hand-written because no library fits these forms, and the published fit started
from one p0 ([0.5, 0.5, 0.5, 1e4, 1e4]) whose basin the result depends on.
"""

from __future__ import annotations

import itertools

import numpy as np

from msl.fit.core import Form, check_inputs, fit
from msl.fit.result import FitResult

EXPONENTS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.8)
DECADES = np.log(10.0) * np.array([-4.0, -3.0, -2.0, -1.0, 0.0, 1.0])
MIN_EXPONENT = 1e-3  # alpha_D appears in a denominator


def _softmax2(u, v):
    m = np.logaddexp(u, v)
    return m, np.exp(u - m), np.exp(v - m)


def _plain_model(theta, X, jac):
    a_n, a_d, lnc, ldc = (theta[:, j: j + 1] for j in range(4))
    dn = lnc - np.log(X[:, 0])[None, :]
    dd = ldc - np.log(X[:, 1])[None, :]
    log_s, wp, wq = _softmax2(a_n / a_d * dn, dd)
    log_l = a_d * log_s
    if not jac:
        return log_l, None
    cols = [wp * dn, log_s - a_n / a_d * wp * dn, a_n * wp, a_d * wq]
    return log_l, np.stack(cols, axis=1)


def _broken_model(theta, X, jac):
    a_n, a_d1, a_d2, lnc, ldc = (theta[:, j: j + 1] for j in range(5))
    dn = lnc - np.log(X[:, 0])[None, :]
    q = ldc - np.log(X[:, 1])[None, :]
    sp = np.logaddexp(0.0, q)
    k = a_d1 / a_d2
    log_s, wp, wr = _softmax2(a_n / a_d2 * dn, q + (k - 1.0) * sp)
    log_l = a_d2 * log_s
    if not jac:
        return log_l, None
    sig = 0.5 * (1.0 + np.tanh(0.5 * q))
    cols = [wp * dn, wr * sp, log_s - (wp * dn * a_n + wr * sp * a_d1) / a_d2, a_n * wp,
            a_d2 * wr * (1.0 + (k - 1.0) * sig)]
    return log_l, np.stack(cols, axis=1)


def _scale_centre(log_x, log_y, alpha):
    """log x_c at which (x_c/x)^alpha alone would give the median loss."""
    return np.median(log_x + log_y / alpha)


def _plain_starts(X, y):
    ln, ld, ly = np.log(X[:, 0]), np.log(X[:, 1]), np.log(y)
    rows = []
    for a_n, a_d in itertools.product(EXPONENTS, EXPONENTS):
        cn, cd = _scale_centre(ln, ly, a_n), _scale_centre(ld, ly, a_d)
        for on, od in itertools.product(DECADES, DECADES):
            rows.append((a_n, a_d, cn + on, cd + od))
    return np.array(rows)


def _broken_starts(X, y):
    ln, ld, ly = np.log(X[:, 0]), np.log(X[:, 1]), np.log(y)
    rows = []
    for a_n, a_d1, a_d2 in itertools.product(EXPONENTS, EXPONENTS, EXPONENTS[1:]):
        cn = _scale_centre(ln, ly, a_n)
        for on, ldc in itertools.product(DECADES[1:], np.quantile(ld, (0.1, 0.5, 0.9))):
            rows.append((a_n, a_d1, a_d2, cn + on, ldc))
    return np.array(rows)


def _check_broken(theta, X):
    from msl.fit.forms import break_outside

    return break_outside(np.exp(theta[4]), X[:, 1], "D_c", ("alpha_D1",), ("alpha_D2",))


KAPLAN = Form(name="kaplan_2d", params=("alpha_N", "alpha_D", "N_c", "D_c"), model=_plain_model,
              starts=_plain_starts, log_params=(False, False, True, True), log_output=True,
              n_inputs=2, lower=(-np.inf, MIN_EXPONENT, -np.inf, -np.inf))
KAPLAN_BROKEN = Form(name="kaplan_2d_broken", params=("alpha_N", "alpha_D1", "alpha_D2", "N_c",
                                                      "D_c"),
                     model=_broken_model, starts=_broken_starts,
                     log_params=(False, False, False, True, True), log_output=True, n_inputs=2,
                     lower=(-np.inf, -np.inf, MIN_EXPONENT, -np.inf, -np.inf),
                     check=_check_broken)


def kaplan_2d(n, d, y, sigma=None, broken=False, *, space="linear", bootstrap=0, seed=0,
              groups=None) -> FitResult:
    """Fit the Kaplan-type map L(N, D); ``broken=True`` for Großmann et al.'s form broken in D.

    ``n`` = parameters, ``d`` = training structures, ``y`` = loss (one value per (N, D) cell: the
    mean over seeds, with ``sigma`` the spread), all 1D of equal length. Params ``alpha_N``,
    ``alpha_D``, ``N_c``, ``D_c`` (or ``alpha_D1``, ``alpha_D2`` when broken). Predict with
    ``result.predict(n, d)``. Other arguments as ``msl.fit.power_law``.
    """
    form = KAPLAN_BROKEN if broken else KAPLAN
    X, y, sigma = check_inputs(form.name, form.n_params, [("n", n), ("d", d)], y, sigma)
    return fit(form, X, y, sigma, space=space, absolute_sigma=True, bootstrap=bootstrap,
               seed=seed, groups=groups)
