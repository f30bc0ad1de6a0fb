"""Chinchilla Approach 3 (Hoffmann et al. 2022) as corrected by Besiroglu et al. (Epoch AI, 2024).

    L(N, D) = E + A / N^alpha + B / D^beta

N = parameters (count them one way and say which: ``msl.models.count_params``), D = training structures (or
tokens), L = loss. Fitted exactly as ``research/anchors.md`` §2.1-2.4 describe:

* log-sum-exp parametrisation A = e^a, B = e^b, E = e^e, so that
  log Lhat = LSE(a - alpha log N, b - beta log D, e);
* objective: the *summed* (not averaged; averaging made Hoffmann's L-BFGS stop early) Huber loss
  of log Lhat - log L with delta = 1e-3;
* starts: Hoffmann's full grid, alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
  a, b in {0, 5, ..., 25} (4,500 starts). *Every* start is refined (batched IRLS Levenberg-
  Marquardt, ``msl.fit.solver``), then the best few are polished with L-BFGS-B and the analytic
  gradient J^T psi(r) at ftol = 1e-15;
* uncertainties: bootstrap over runs (Besiroglu et al. used 4,000 resamples; default here 1,000),
  standard errors = sqrt(diag(cov)) of the bootstrap estimates, 95% percentile intervals.

Compute-optimal allocation (Hoffmann Eq. 4) with the convention C = 6 N D (FLOPs: 2 N per sample
forward, twice that backward, D samples): G = (alpha A / (beta B))^(1/(alpha+beta)),
N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6)^(alpha/(alpha+beta)) / G.

Hand-written because the one packaged fitter (PyPI ``chinchilla``) defaults to an asymmetric
absolute loss in linear space, and the reference notebooks are unlicensed.
"""

from __future__ import annotations

import itertools
from dataclasses import fields, replace

import numpy as np

from msl.fit.core import Form, check_inputs, fit
from msl.fit.result import FitResult

HOFFMANN_GRID = dict(
    e=np.arange(-1.0, 1.01, 0.5), a=np.arange(0.0, 25.1, 5.0), b=np.arange(0.0, 25.1, 5.0),
    alpha=np.arange(0.0, 2.01, 0.5), beta=np.arange(0.0, 2.01, 0.5))


def _model(theta, X, jac):
    e, a, b, alpha, beta = (theta[:, j: j + 1] for j in range(5))
    ln, ld = np.log(X[:, 0])[None, :], np.log(X[:, 1])[None, :]
    u_a, u_b = a - alpha * ln, b - beta * ld
    m = np.maximum(np.maximum(u_a, u_b), e)
    w_e, w_a, w_b = np.exp(e - m), np.exp(u_a - m), np.exp(u_b - m)
    total = w_e + w_a + w_b
    log_l = m + np.log(total)
    if not jac:
        return log_l, None
    out = np.empty((log_l.shape[0], 5, log_l.shape[1]))
    for j, w in enumerate((w_e, w_a, w_b)):  # softmax weights of E, A/N^alpha, B/D^beta in L
        np.divide(w, total, out=out[:, j])
    np.multiply(out[:, 1], -ln, out=out[:, 3])
    np.multiply(out[:, 2], -ld, out=out[:, 4])
    return log_l, out


def _hoffmann_starts(X, y):
    g = HOFFMANN_GRID
    return np.array(list(itertools.product(g["e"], g["a"], g["b"], g["alpha"], g["beta"])))


def _check(theta, X):
    out = [((name,), f"non-positive exponent {name}")
           for name, value in (("alpha", theta[3]), ("beta", theta[4])) if value <= 0]
    corr = np.corrcoef(np.log(X[:, 0]), np.log(X[:, 1]))[0, 1]
    if abs(corr) > 0.99:
        out.append((("A", "B", "alpha", "beta"),
                    f"collinear design (corr(log N, log D) = {corr:.3f}): A and B are not "
                    "identifiable; vary D at fixed N"))
    return out


CHINCHILLA = Form(name="chinchilla", params=("E", "A", "B", "alpha", "beta"), model=_model,
                  starts=_hoffmann_starts, log_params=(True, True, True, False, False),
                  log_output=True, n_inputs=2, check=_check)


class ChinchillaResult(FitResult):
    """A ``FitResult`` with the compute-optimal allocation (C = 6 N D, FLOPs)."""

    def _g(self, p=None):
        p = self.params if p is None else p
        return (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / (p["alpha"] + p["beta"]))

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a, a = beta/(alpha + beta)."""
        return self.params["beta"] / (self.params["alpha"] + self.params["beta"])

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b, b = alpha/(alpha + beta)."""
        return self.params["alpha"] / (self.params["alpha"] + self.params["beta"])

    def n_opt(self, flops):
        """Loss-minimising parameter count N_opt(C) at compute C = 6 N D (FLOPs)."""
        return _allocation(self.params, np.asarray(flops, float))[0]

    def d_opt(self, flops):
        """Loss-minimising number of training samples D_opt(C) at compute C (FLOPs)."""
        return _allocation(self.params, np.asarray(flops, float))[1]

    def loss_opt(self, flops):
        """The compute-optimal frontier L_opt(C) = L(N_opt(C), D_opt(C))."""
        return _allocation(self.params, np.asarray(flops, float))[2]

    def frontier_ci(self, flops, level=None):
        """Bootstrap percentile bands {"n_opt"|"d_opt"|"loss_opt": (lo, hi)} at compute C."""
        if self.boot is None:
            raise ValueError("chinchilla: frontier_ci needs a bootstrapped fit (bootstrap > 0)")
        level = self.level if level is None else level
        flops = np.asarray(flops, float)
        samples = [_allocation(dict(zip(self.params, row)), flops) for row in self.boot]
        stack = np.array(samples)  # (n_boot, 3, ...)
        q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
        lo, hi = np.nanpercentile(stack, q, axis=0)
        return {k: (lo[i], hi[i]) for i, k in enumerate(("n_opt", "d_opt", "loss_opt"))}


def _allocation(p, flops):
    """(N_opt, D_opt, L_opt) at compute C = 6 N D for parameters ``p`` (Hoffmann Eq. 4)."""
    s = p["alpha"] + p["beta"]
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / s)
    n = g * (flops / 6.0) ** (p["beta"] / s)
    d = (flops / 6.0) ** (p["alpha"] / s) / g
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    return n, d, loss


def chinchilla(n, d, y, delta=1e-3, *, bootstrap=1000, seed=0, groups=None,
               starts=None) -> ChinchillaResult:
    """Fit L = E + A/N^alpha + B/D^beta by Hoffmann's procedure (see the module docstring).

    ``n`` = parameters, ``d`` = training samples, ``y`` = final loss of each run (one row per
    run). ``delta`` is the Huber threshold on log-loss residuals. ``bootstrap`` resamples runs
    (``groups`` labels rows of one run) for ``stderr``, ``cov`` and 95% intervals ``ci``; with
    ``bootstrap=0`` no uncertainty is computed. ``starts`` (k, 5) in the internal order
    (e, a, b, alpha, beta) replaces Hoffmann's grid. Returns a ``ChinchillaResult`` with
    ``n_opt(C)``, ``d_opt(C)``, ``loss_opt(C)`` (C = 6 N D FLOPs) and ``frontier_ci(C)``.
    """
    form = CHINCHILLA
    X, y, _ = check_inputs("chinchilla", form.n_params, [("n", n), ("d", d)], y, None)
    if starts is not None:
        given = np.atleast_2d(np.asarray(starts, float))
        form = replace(CHINCHILLA, starts=lambda X, y: given)
    result = fit(form, X, y, None, space="log", delta=float(delta), n_refine=100_000,
                 n_polish=5)
    result = ChinchillaResult(**{f.name: getattr(result, f.name) for f in fields(result)})
    return result.bootstrap(n=bootstrap, seed=seed, groups=groups) if bootstrap else result
