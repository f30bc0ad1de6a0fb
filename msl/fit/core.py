"""The fitting pipeline shared by every form: check inputs, grid, batched refinement, polish.

Steps, in order (``fit``):
1. ``check_inputs``: finite, positive, matching lengths, enough points; a ``ValueError`` names the
   bad value.
2. The form's coarse grid of starting values is scored in one vectorised pass; the best
   ``n_refine`` grid points are refined together by ``solver.levenberg_marquardt``.
3. The best few distinct end points are polished with SciPy (``least_squares`` for squares,
   ``minimize(L-BFGS-B)`` for Huber) with analytic Jacobians and tight tolerances; the lowest
   objective wins. No result depends on one lucky initial value.
4. Covariance from the Jacobian at the optimum (least squares) or from the bootstrap (Huber), the
   diagnostics that set ``poorly_determined``, and AICc (see ``msl.fit.select``).

Residual spaces: ``linear`` r = (yhat - y)/sigma; ``log`` r = (log yhat - log y)/(sigma/y);
``log1p`` r = (log(yhat+1) - log(y+1))/(sigma/(y+1)) (sigma converted by the delta method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import optimize

from msl.fit import solver
from msl.fit.result import FitResult

SPACES = ("linear", "log", "log1p")


@dataclass(frozen=True)
class Form:
    """A functional form in its internal (optimisation) parametrisation.

    ``model(theta (S, p), X (n, k), jac) -> (out (S, n), dout (S, p, n) or None)`` where ``out`` is
    the prediction, or its natural log when ``log_output``. ``log_params[j]`` marks internal
    parameters that are logs of the public ones (public = exp(internal)). ``starts(X, y)`` returns
    the coarse grid (G, p). ``check(theta, X)`` returns form-specific warnings: a text for the
    whole fit, or ``(parameter names, text)`` for the parameters it makes undetermined.
    """

    name: str
    params: tuple[str, ...]
    model: Callable
    starts: Callable
    log_params: tuple[bool, ...]
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    log_output: bool = False
    n_inputs: int = 1
    check: Callable = field(default=lambda theta, X: [])

    @property
    def n_params(self) -> int:
        return len(self.params)

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal -> public parameters, row-wise (exp where ``log_params``)."""
        theta = np.asarray(theta, float)
        return np.where(self.log_params, np.exp(np.where(self.log_params, theta, 0.0)), theta)

    def predict(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out, _ = self.model(np.asarray(theta, float)[None, :], X, False)
        return np.exp(out[0]) if self.log_output else out[0]


def check_inputs(name, n_params, columns, y, sigma=None):
    """Validate and convert inputs; return (X (n, k), y (n,), sigma (n,) or None).

    ``columns`` is a list of (label, values). Raises ``ValueError`` naming the bad value for NaN or
    infinite entries, non-positive x or y, non-positive sigma, mismatched lengths, fewer points
    than parameters, or a column with a single distinct value.
    """
    arrays = [(lab, np.asarray(v, dtype=float).ravel()) for lab, v in columns]
    arrays.append(("y", np.asarray(y, dtype=float).ravel()))
    if sigma is not None:
        arrays.append(("sigma", np.asarray(sigma, dtype=float).ravel()))
    n = arrays[-1 if sigma is None else -2][1].size
    for lab, a in arrays:
        if a.size != n:
            raise ValueError(f"{name}: {lab} has {a.size} values but y has {n}")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise ValueError(f"{name}: {lab}[{bad[0]}] = {a[bad[0]]} is not finite")
        bad = np.flatnonzero(a <= 0)
        if bad.size:
            raise ValueError(f"{name}: {lab}[{bad[0]}] = {a[bad[0]]} is not positive "
                             f"(power laws need {lab} > 0)")
    if n < n_params:
        raise ValueError(f"{name}: needs at least {n_params} points for {n_params} parameters, "
                         f"got {n}")
    X = np.column_stack([a for _, a in arrays[: len(columns)]])
    for j, (lab, _) in enumerate(columns):
        if np.unique(X[:, j]).size < 2:
            raise ValueError(f"{name}: {lab} has a single distinct value {X[0, j]}")
    return X, arrays[len(columns)][1], (arrays[-1][1] if sigma is not None else None)


class Problem:
    """Residuals and Jacobians of one form on one data set, in one residual space."""

    def __init__(self, form: Form, X, y, sigma, space: str):
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        self.form, self.X, self.y, self.space = form, X, y, space
        self.unit = sigma is None
        s = np.ones_like(y) if sigma is None else sigma
        if space == "linear":
            self.target, self.scale = y, s
        elif space == "log":
            self.target, self.scale = np.log(y), (s / y if sigma is not None else s)
        else:
            self.target, self.scale = np.log1p(y), (s / (1 + y) if sigma is not None else s)

    def transformed(self, theta, jac=True):
        """Prediction in the residual space, and its Jacobian (S, p, n) when ``jac``."""
        with np.errstate(all="ignore"):  # bad trial points give inf/nan: rejected, not fatal
            out, dout = self.form.model(theta, self.X, jac)
            if self.form.log_output:
                log_out = out
                if self.space == "log":
                    return out, dout
                out = np.exp(log_out)
                dout = None if dout is None else dout * out[:, None, :]
            if self.space == "linear":
                return out, dout
            if self.space == "log":
                t = np.where(out > 0, np.log(np.abs(out)), np.nan)
                return t, None if dout is None else dout / out[:, None, :]
            t = np.where(out > -1, np.log1p(out), np.nan)
            return t, None if dout is None else dout / (1 + out[:, None, :])

    def resid_jac(self, theta, rows=None):
        t, dt = self.transformed(theta, True)
        if self.unit:
            return t - self.target, dt
        return (t - self.target) / self.scale, dt / self.scale[None, None, :]

    def resid(self, theta):
        t, _ = self.transformed(theta, False)
        return t - self.target if self.unit else (t - self.target) / self.scale


def fit(form: Form, X, y, sigma=None, *, space="linear", delta=None, absolute_sigma=False,
        n_refine=64, n_polish=3, bootstrap=0, seed=0, groups=None) -> FitResult:
    """Fit ``form`` to (X, y) and return a ``FitResult`` (see the module docstring).

    ``delta=None`` is least squares; a float is the Huber threshold in residual units.
    ``absolute_sigma`` keeps sigma as absolute errors for the covariance (otherwise the covariance
    is scaled by the reduced chi-square, as ``scipy.optimize.curve_fit`` does by default).
    ``bootstrap`` > 0 adds percentile intervals from that many case resamples (seeded by ``seed``).
    The ``n_refine`` best grid points are refined together; the ``n_polish`` best distinct end
    points are polished.
    """
    prob = Problem(form, X, y, sigma, space)
    lo, hi = _bounds(form)
    grid = np.clip(form.starts(X, y), lo, hi)
    ones = np.ones(y.size)
    with np.errstate(all="ignore"):
        grid_cost = solver.objective(prob.resid(grid), ones, delta)
    top = solver.best_starts(grid_cost, n_refine)
    if top.size == 0:
        raise RuntimeError(f"{form.name}: no start of the grid gives a finite objective")
    batch = solver.levenberg_marquardt(prob.resid_jac, grid[top], ones, delta=delta, lower=lo,
                                       upper=hi, ftol=1e-10, xtol=1e-8, merge_tol=1e-4,
                                       prune_after=50)
    theta, loss, ok = _polish(prob, batch, delta, lo, hi, n_polish)
    n_near = int(np.sum(batch.cost <= loss * (1 + 1e-6) + 1e-12))
    result = _result(prob, theta, loss, ok, delta, absolute_sigma, sigma, n_starts=grid.shape[0],
                     n_near=n_near)
    if bootstrap:
        result = result.bootstrap(n=bootstrap, seed=seed, groups=groups)
    return result


def _bounds(form):
    p = form.n_params
    lo = np.full(p, -np.inf) if form.lower is None else np.asarray(form.lower, float)
    hi = np.full(p, np.inf) if form.upper is None else np.asarray(form.upper, float)
    return lo, hi


def _distinct(batch, k, within=1.5):
    """Up to ``k`` end points with the lowest objective, skipping near-duplicates and any whose
    objective exceeds ``within`` times the best (degenerate ends, e.g. alpha -> 0, x0 -> inf)."""
    picked = []
    order = solver.best_starts(batch.cost, batch.cost.size)
    for i in order[batch.cost[order] <= within * batch.cost[order[0]] + 1e-300]:
        th = batch.theta[i]
        if all(np.max(np.abs(th - batch.theta[j])) > 1e-6 * (1 + np.max(np.abs(th)))
               for j in picked):
            picked.append(i)
        if len(picked) == k:
            break
    return picked


def _polish(prob, batch, delta, lo, hi, k):
    """Polish the best ``k`` distinct end points with SciPy; return (theta, objective, success)."""
    best = (None, np.inf, False)
    bounded = np.isfinite(lo).any() or np.isfinite(hi).any()
    for i in _distinct(batch, k):
        x0 = batch.theta[i]
        with np.errstate(all="ignore"):
            if delta is None:
                fun = lambda t: prob.resid(t[None])[0]  # noqa: E731
                jac = lambda t: prob.resid_jac(t[None])[1][0].T  # noqa: E731
                res = optimize.least_squares(
                    fun, x0, jac=jac, method="trf" if bounded else "lm", bounds=(lo, hi),
                    x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=1000)
                cost, ok = 0.5 * float(res.fun @ res.fun), res.status > 0
            else:
                res = optimize.minimize(
                    _huber_value_grad, x0, args=(prob, delta), jac=True, method="L-BFGS-B",
                    bounds=list(zip(lo, hi)) if bounded else None,
                    options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000})
                cost, ok = float(res.fun), bool(res.success)
        if not np.isfinite(cost) or cost > batch.cost[i]:
            res_x, cost, ok = x0, float(batch.cost[i]), bool(batch.converged[i])
        else:  # a line search that cannot improve on a converged start has converged too
            res_x, ok = res.x, ok or bool(batch.converged[i])
        if cost < best[1]:
            best = (np.array(res_x, float), cost, ok)
    return best


def _huber_value_grad(theta, prob, delta):
    """Summed Huber objective and its exact gradient ``J^T psi(r)``."""
    r, jac = prob.resid_jac(theta[None])
    r, jac = r[0], jac[0]
    value = float(np.sum(solver.huber(r, delta)))
    if not np.isfinite(value):
        return np.inf, np.zeros_like(theta)
    psi = r * solver.irls_weight(r, delta)
    return value, jac @ psi


def _result(prob, theta, loss, ok, delta, absolute_sigma, sigma, n_starts, n_near):
    """Assemble the ``FitResult``: covariance (least squares only), AICc, diagnostics."""
    form, n, p = prob.form, prob.y.size, prob.form.n_params
    r, jac = prob.resid_jac(theta[None])
    cov_int, cond = None, np.inf
    if n >= p and np.all(np.isfinite(jac)):
        cov_int, cond = _covariance(jac[0].T, r[0], absolute_sigma and sigma is not None)
    if delta is not None:  # a Huber fit takes its covariance from the bootstrap
        cov_int = None
    rss = float(np.sum((form.predict(theta, prob.X) - prob.y) ** 2))
    return FitResult.build(form=form, theta=theta, cov_internal=cov_int, cond=cond, loss=loss,
                           converged=ok, rss=rss, X=prob.X, y=prob.y, sigma=sigma,
                           options=dict(space=prob.space, delta=delta,
                                        absolute_sigma=absolute_sigma),
                           n_starts=n_starts, n_near_best=n_near)


def _covariance(jac, r, absolute):
    """(J^T J)^-1, scaled by the reduced chi-square unless ``absolute``; and cond(J) scaled."""
    n, p = jac.shape
    norms = np.linalg.norm(jac, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    js = jac / norms
    u, s, vt = np.linalg.svd(js, full_matrices=False)
    cond = float(s[0] / s[-1]) if s[-1] > 0 else np.inf
    if not np.isfinite(cond) or cond > 1e12 or n == p:
        return None, cond
    inv = (vt.T / s**2) @ vt
    cov = inv / np.outer(norms, norms)
    if not absolute:
        cov = cov * float(r @ r) / (n - p)
    return cov, cond


def bootstrap_thetas(result: FitResult, n: int, seed: int, groups=None) -> np.ndarray:
    """Refit ``n`` case resamples of the data (whole groups when ``groups`` is given).

    Each resample is a multiplicity vector (how often each point was drawn); all resamples are
    refined together by the batched solver from the point estimate. Uses its own
    ``numpy.random.Generator(seed)``: no global random state, so parallel callers are safe and a
    seed gives the same intervals everywhere. Returns internal parameters (n, p); replicates whose
    refit failed are NaN rows.
    """
    form, opts = result._form, result._options
    prob = Problem(form, result._X, result._y, result._sigma, opts["space"])
    mult = resample_multiplicities(result.n_points, n, seed, groups)
    lo, hi = _bounds(form)
    theta0 = np.repeat(result._theta[None], n, axis=0)
    batch = solver.levenberg_marquardt(prob.resid_jac, theta0, mult, delta=opts["delta"],
                                       lower=lo, upper=hi, max_iter=500)
    out = batch.theta.copy()
    out[~np.isfinite(batch.cost)] = np.nan
    return out


def resample_multiplicities(n_points, n, seed, groups=None):
    """(n, n_points) counts of each point in ``n`` resamples of whole groups (runs)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_points) if groups is None else np.asarray(groups)
    if labels.size != n_points:
        raise ValueError(f"groups has {labels.size} labels but there are {n_points} points")
    uniq, inverse = np.unique(labels, return_inverse=True)
    draws = rng.integers(0, uniq.size, size=(n, uniq.size))
    counts = np.zeros((n, uniq.size))
    np.add.at(counts, (np.arange(n)[:, None], draws), 1.0)
    return counts[:, inverse]
