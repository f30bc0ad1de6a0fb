"""Model choice (AICc) and the extrapolation test (fit small, predict large)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from msl.fit.result import FitResult


def aicc(rss: float, n: int, k: int) -> float:
    """Small-sample Akaike criterion, as Großmann et al. compute it.

    AIC = 2k + n ln(RSS/n) and AICc = AIC + (2k^2 + 2k)/(n - k - 1), with RSS the *unweighted*
    sum of squared residuals y - yhat in linear space, n points and k fitted parameters. Using the
    same RSS for every form (whatever space it was fitted in) makes AICc values of different forms
    on the same data comparable. Returns ``inf`` when n <= k + 1 (the correction is undefined) and
    ``-inf`` for an exact fit (RSS = 0).
    """
    if n <= k + 1:
        return math.inf
    if rss <= 0:
        return -math.inf
    return 2 * k + n * math.log(rss / n) + (2 * k * k + 2 * k) / (n - k - 1)


@dataclass(frozen=True)
class Ranked:
    """One row of ``select``'s table: the fit, its AICc, AICc minus the best, Akaike weight."""

    result: FitResult
    aicc: float
    delta_aicc: float
    weight: float

    def __str__(self):
        from msl.fit.display import AICC_DECIMALS as A, WEIGHT_DECIMALS as W

        flag = "  (poorly determined)" if self.result.poorly_determined else ""
        return (f"{self.result.form:<18} AICc = {self.aicc:8.{A}f}  "
                f"dAICc = {self.delta_aicc:6.{A}f}  weight = {self.weight:.{W}f}{flag}")


def select(results) -> list[Ranked]:
    """Rank fits of the same data by AICc, best (lowest) first.

    AICc = 2k + n ln(RSS/n) + (2k^2 + 2k)/(n - k - 1) (``aicc``); ``delta_aicc`` is the
    difference to the best and ``weight`` the Akaike weight exp(-dAICc/2) / sum. A difference
    below about 2 does not distinguish two forms. Raises ``ValueError`` if the fits were made on
    different data (AICc values are then not comparable).
    """
    results = list(results)
    if not results:
        raise ValueError("select: no fits given")
    ref = results[0]
    for r in results[1:]:
        if r._X.shape[0] != ref._X.shape[0] or not (
                np.array_equal(r._y, ref._y) and np.array_equal(r._X, ref._X)):
            raise ValueError(f"select: {r.form} was fitted on different data than {ref.form}")
    values = np.array([r.aicc for r in results])
    best = np.min(values)
    delta = values - best if np.isfinite(best) else np.zeros_like(values)
    w = np.exp(-0.5 * np.where(np.isfinite(delta), delta, np.inf))
    w = w / w.sum() if w.sum() > 0 else w
    order = np.argsort(values, kind="stable")
    return [Ranked(results[i], float(values[i]), float(delta[i]), float(w[i])) for i in order]


@dataclass(frozen=True)
class Extrapolation:
    """Errors of a law fitted on the smaller points, in sample and on held-out larger points.

    Errors are root-mean-square log errors, RMSLE = sqrt(mean((log yhat - log y)^2)), as in
    Caballero et al.'s BNSL code, and mean absolute relative errors |yhat/y - 1|.
    """

    fit: FitResult
    n_train: int
    n_holdout: int
    rmsle_train: float
    rmsle_holdout: float
    mare_train: float
    mare_holdout: float
    predicted: np.ndarray
    observed: np.ndarray

    def __str__(self):
        return (f"{self.fit.form}: fit on {self.n_train} smallest, hold out {self.n_holdout} "
                f"largest: RMSLE in sample {self.rmsle_train:.3f}, held out "
                f"{self.rmsle_holdout:.3f}")


def extrapolation(fit_fn, x, y, n_holdout=2, sigma=None, **kw) -> Extrapolation:
    """Fit ``fit_fn`` on all but the ``n_holdout`` largest x; score it on those held out.

    ``x`` is 1D for the 1D laws, or a pair ``(n, d)`` for 2D laws; then "largest" means the largest
    products n*d (the largest compute), and ``fit_fn`` is called as ``fit_fn(n, d, y, ...)``.
    ``sigma`` (if given) is split alongside; other keyword arguments go to ``fit_fn``.
    """
    two_d = isinstance(x, tuple)
    cols = [np.asarray(c, float).ravel() for c in (x if two_d else (x,))]
    y = np.asarray(y, float).ravel()
    key = np.prod(cols, axis=0)
    if not 0 < n_holdout < y.size:
        raise ValueError(f"extrapolation: n_holdout = {n_holdout} must be in [1, {y.size - 1}]")
    order = np.argsort(key, kind="stable")
    train, hold = order[: y.size - n_holdout], order[y.size - n_holdout:]
    if sigma is not None:
        kw["sigma"] = np.asarray(sigma, float).ravel()[train]
    result = fit_fn(*[c[train] for c in cols], y[train], **kw)
    pred_train = result.predict(*[c[train] for c in cols])
    pred_hold = result.predict(*[c[hold] for c in cols])
    return Extrapolation(
        fit=result, n_train=train.size, n_holdout=hold.size,
        rmsle_train=_rmsle(pred_train, y[train]), rmsle_holdout=_rmsle(pred_hold, y[hold]),
        mare_train=float(np.mean(np.abs(pred_train / y[train] - 1))),
        mare_holdout=float(np.mean(np.abs(pred_hold / y[hold] - 1))),
        predicted=pred_hold, observed=y[hold])


def _rmsle(pred, obs):
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sqrt(np.mean((np.log(pred) - np.log(obs)) ** 2)))
