"""A batched Levenberg-Marquardt solver: many starts (or many bootstrap replicates) at once.

Why hand-written: SciPy's ``least_squares`` and ``minimize`` optimise one start at a time, and a
scaling-law fit needs hundreds to thousands of starts (Hoffmann et al.'s Chinchilla grid has 4,500)
and a thousand bootstrap refits. Doing them one by one costs a Python loop of optimiser overhead
per start; here every start advances together in a few NumPy array operations per iteration, and
SciPy then polishes the single best point (see ``msl.fit.core``).

The objective is ``sum_i m_i * rho(r_i)`` over residuals ``r_i`` with non-negative multiplicities
``m_i`` (1 for a plain fit, bootstrap counts for a resample) and ``rho`` either the square
``r**2 / 2`` or the Huber function with threshold ``delta``. The Huber case uses iteratively
re-weighted least squares (IRLS): the weight ``psi(r)/r = min(1, delta/|r|)`` makes ``J^T W r``
the exact gradient and ``J^T W J`` a majoriser of the curvature, so that every accepted step
lowers the true objective. Steps are accepted only when the true objective decreases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# resid_jac(theta (S, p), rows) -> residuals (S, n), Jacobian (S, p, n); rows selects the
# starts that are still active, so that problems with per-start data (bootstrap) can index it.
ResidJac = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def huber(r: np.ndarray, delta: float | None) -> np.ndarray:
    """Huber loss per residual, ``r**2/2`` inside ``|r| <= delta`` and linear outside.

    ``delta=None`` gives the plain square ``r**2/2`` (least squares).
    """
    if delta is None:
        return 0.5 * r * r
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def irls_weight(r: np.ndarray, delta: float | None) -> np.ndarray:
    """``psi(r)/r`` for the loss above: 1 for least squares, ``min(1, delta/|r|)`` for Huber."""
    if delta is None:
        return np.ones_like(r)
    a = np.abs(r)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))


def objective(r: np.ndarray, mult: np.ndarray, delta: float | None) -> np.ndarray:
    """Summed (not averaged) loss per start; non-finite residuals give ``inf``."""
    with np.errstate(invalid="ignore", over="ignore"):
        cost = np.sum(mult * huber(r, delta), axis=-1)
    return np.where(np.isfinite(cost), cost, np.inf)


@dataclass
class BatchResult:
    """Where each start ended: parameters (S, p), objective (S,), and whether it converged."""

    theta: np.ndarray
    cost: np.ndarray
    converged: np.ndarray
    n_iter: int


def levenberg_marquardt(
    resid_jac: ResidJac,
    theta0: np.ndarray,
    mult: np.ndarray,
    *,
    delta: float | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    max_iter: int = 400,
    ftol: float = 1e-12,
    xtol: float = 1e-10,
    merge_tol: float | None = None,
    prune_after: int | None = None,
) -> BatchResult:
    """Minimise ``sum_i mult[s, i] * rho(r_i(theta_s))`` for every start ``s`` at once.

    ``theta0`` is (S, p); ``mult`` is (S, n) or (n,) multiplicities. Bounds are enforced by
    projecting each trial step onto the box. The damping follows Nielsen's rule (gain ratio of
    actual to predicted decrease). A start stops when an accepted step changes the objective by
    less than ``ftol`` (relative) and the parameters by less than ``xtol`` (relative), or when
    its damping grows past 1e12 (no descent direction left: a minimum up to rounding).

    ``merge_tol`` (only for starts that share their data): every few iterations a start that has
    come within ``merge_tol`` (relative, every parameter) of one of the lowest points found so far
    stops and, at the end, takes that point's end result: from there on it would follow the same
    path. ``prune_after`` (also only for shared data): from that iteration on, a start whose
    objective is still more than twice the lowest found is abandoned (marked not converged).
    """
    theta = np.array(theta0, dtype=float, copy=True)
    n_start, n_par = theta.shape
    lo = np.full(n_par, -np.inf) if lower is None else np.asarray(lower, float)
    hi = np.full(n_par, np.inf) if upper is None else np.asarray(upper, float)
    theta = np.clip(theta, lo, hi)
    mult = np.broadcast_to(np.asarray(mult, float), (n_start, np.shape(mult)[-1]))
    r, jac = resid_jac(theta, np.arange(n_start))
    cost = objective(r, mult, delta)
    lam, nu = np.full(n_start, 1e-3), np.full(n_start, 2.0)
    active = np.isfinite(cost)
    converged = np.zeros(n_start, bool)
    merged_into = np.full(n_start, -1)
    it = 0
    for it in range(1, max_iter + 1):
        if merge_tol is not None and it % 5 == 0:
            _merge(theta, cost, active, merged_into, merge_tol)
        if prune_after is not None and it >= prune_after and it % 5 == 0:
            active &= cost <= 2.0 * np.min(cost)
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        sel = slice(None) if rows.size == n_start else rows  # a slice avoids copies
        step, predicted = _lm_step(r[sel], jac[sel], mult[sel], lam[sel], delta)
        trial = np.clip(theta[sel] + step, lo, hi)
        r_new, jac_new = resid_jac(trial, rows)
        cost_new = objective(r_new, mult[sel], delta)
        better = cost_new < cost[sel]
        acc, rej = rows[better], rows[~better]
        gain = (cost[acc] - cost_new[better]) / np.maximum(predicted[better], 1e-300)
        small = (cost[acc] - cost_new[better] <= ftol * np.maximum(cost_new[better], 1e-300)) & (
            np.linalg.norm(trial[better] - theta[acc], axis=1)
            <= xtol * (np.linalg.norm(theta[acc], axis=1) + xtol))
        theta[acc], cost[acc] = trial[better], cost_new[better]
        r[acc], jac[acc] = r_new[better], jac_new[better]
        lam[acc] *= np.clip(1.0 - (2.0 * np.minimum(gain, 1.0) - 1.0) ** 3, 1.0 / 3.0, 1.0)
        lam[acc] = np.maximum(lam[acc], 1e-15)
        nu[acc] = 2.0
        lam[rej] *= nu[rej]
        nu[rej] *= 2.0
        done = np.concatenate([acc[small], rej[lam[rej] > 1e12]])
        converged[done] = True
        active[done] = False
    _resolve_merges(theta, cost, converged, merged_into)
    return BatchResult(theta=theta, cost=cost, converged=converged, n_iter=it)


def _merge(theta, cost, active, merged_into, tol, n_ref=8):
    """Stop active starts that sit within ``tol`` of one of the ``n_ref`` lowest points."""
    refs = best_starts(cost, n_ref)
    rows = np.flatnonzero(active)
    rows = rows[~np.isin(rows, refs)]
    if rows.size == 0 or refs.size == 0:
        return
    scale = 1.0 + np.abs(theta[refs])  # (K, p)
    dist = np.max(np.abs(theta[rows][:, None, :] - theta[refs][None]) / scale[None], axis=2)
    near = (dist <= tol) & (cost[refs][None, :] <= cost[rows][:, None])
    hit = near.any(axis=1)
    merged_into[rows[hit]] = refs[np.argmax(near[hit], axis=1)]
    active[rows[hit]] = False


def _resolve_merges(theta, cost, converged, merged_into):
    """Give each merged start the end result of the start it joined (following chains)."""
    for i in np.flatnonzero(merged_into >= 0):
        root = i
        while merged_into[root] >= 0:
            root = merged_into[root]
        theta[i], cost[i], converged[i] = theta[root], cost[root], converged[root]


def _lm_step(r, jac, mult, lam, delta):
    """Solve ``(J W J^T + lam * diag) step = -J W r`` per start; also the predicted decrease.

    ``jac`` is (S, p, n). The predicted decrease is that of the quadratic model without damping,
    ``-(g . step + step . H step / 2)``.
    """
    w = mult * irls_weight(r, delta)
    jw = jac * w[:, None, :]  # (S, p, n)
    grad = np.matmul(jw, r[:, :, None])[:, :, 0]
    hess = np.matmul(jw, np.swapaxes(jac, 1, 2))
    diag = np.diagonal(hess, axis1=1, axis2=2).copy()
    floor = 1e-12 * np.maximum(diag.max(axis=1, keepdims=True), 1e-300)
    damped = hess.copy()
    idx = np.arange(hess.shape[1])
    damped[:, idx, idx] += lam[:, None] * np.maximum(diag, floor)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.all(np.isfinite(damped), axis=(1, 2)) & np.all(np.isfinite(grad), axis=1)
    step = np.zeros_like(grad)
    if ok.any():
        try:
            step[ok] = np.linalg.solve(damped[ok], -grad[ok][:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step[ok] = -np.einsum("spq,sq->sp", np.linalg.pinv(damped[ok]), grad[ok])
    with np.errstate(invalid="ignore", over="ignore"):
        predicted = -(np.sum(grad * step, axis=1)
                      + 0.5 * np.einsum("sp,spq,sq->s", step, hess, step))
    return step, predicted


def best_starts(costs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` lowest finite objective values, best first."""
    finite = np.flatnonzero(np.isfinite(costs))
    if finite.size == 0:
        return finite
    k = min(k, finite.size)
    part = finite[np.argpartition(costs[finite], k - 1)[:k]]
    return part[np.argsort(costs[part])]
