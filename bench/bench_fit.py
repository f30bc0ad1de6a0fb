"""Benchmark msl.fit against the naive SciPy procedure, both measured in this run.

Baseline: what one writes without ``msl.fit`` - a Python loop over the same grid of starts, each
start optimised by SciPy with finite-difference gradients (``curve_fit`` for least-squares forms,
``minimize(L-BFGS-B)`` on the summed Huber loss for Chinchilla), keeping the best. Ours: the
batched Levenberg-Marquardt over all starts with analytic Jacobians, then a SciPy polish.

Where the full baseline would take minutes (Chinchilla's 4,500 starts, 1,000 bootstrap refits) it
runs on a random subset and the time is scaled up per start; the line says so. Each row also says
whether the two found the same optimum (objective values agree to 1e-6 relative, or ours lower).

Run: ``python bench/bench_fit.py`` (``--quick`` for fewer repeats and smaller baseline subsets).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from scipy import optimize

import msl.fit as fit
from msl.fit import core, solver
from msl.fit.bnsl import bnsl_form
from msl.fit.chinchilla import CHINCHILLA
from msl.fit.forms import BROKEN_POWER_LAW, POWER_LAW, POWER_LAW_FLOOR
from msl.fit.kaplan import KAPLAN_BROKEN


def timed(fn, repeats):
    """Median wall time of ``repeats`` calls (seconds) and the last return value."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def naive_least_squares(form, X, y, space, starts):
    """curve_fit from every start with finite-difference Jacobians; the best objective."""
    prob = core.Problem(form, X, y, None, space)
    best = np.inf
    for x0 in starts:
        def model(_, *theta):
            return prob.transformed(np.array(theta)[None], False)[0][0]
        try:
            with warnings.catch_warnings():  # scoped: curve_fit warns on flat starts
                warnings.simplefilter("ignore")
                theta, _ = optimize.curve_fit(model, X[:, 0], prob.target, p0=x0, maxfev=10000)
        except (RuntimeError, ValueError):
            continue
        best = min(best, 0.5 * float(np.sum(prob.resid(theta[None])[0] ** 2)))
    return best


def naive_huber(prob, starts, delta=1e-3):
    """L-BFGS-B on the summed Huber loss, finite-difference gradient, from every start."""
    def objective(theta):
        return float(solver.objective(prob.resid(theta[None]), np.ones(prob.y.size), delta)[0])
    best = np.inf
    for x0 in starts:
        res = optimize.minimize(objective, x0, method="L-BFGS-B")
        best = min(best, float(res.fun))
    return best


def same(ours, theirs):
    return "yes" if ours <= theirs * (1 + 1e-6) + 1e-15 else f"no (naive {theirs:.6g} lower)"


def one_d_cases(rng):
    d = np.array([2500, 5000, 10000, 20000, 40000, 80000, 160000.0])
    loss_d = np.array([1.5784, 1.3872, 1.2263, 1.0650, 0.8957, 0.7349, 0.5770])
    n = np.array([278627, 585507, 1296035, 3104163, 8268707, 24790947, 82608035.0])
    loss_n = np.array([1.2932, 1.1907, 1.1333, 1.0955, 1.0590, 1.0374, 1.0206])
    x = np.geomspace(1, 4095, 60)
    bnsl_theta = [0.41388, np.log(2.27727), 0.05508, 5.66290, np.log(612.58), np.log(0.05919)]
    y_bnsl = bnsl_form(1).predict(np.array(bnsl_theta), x[:, None])
    y_bnsl = y_bnsl * (1 + 0.005 * rng.standard_normal(x.size))
    return [
        ("power_law (7 pts, D scan)", fit.power_law, POWER_LAW, d, loss_d, "linear"),
        ("power_law_floor (7 pts, N scan)", fit.power_law_floor, POWER_LAW_FLOOR, n, loss_n,
         "linear"),
        ("broken_power_law (7 pts, D scan)", fit.broken_power_law, BROKEN_POWER_LAW, d, loss_d,
         "linear"),
        ("bnsl 1 break (60 pts)", fit.bnsl, bnsl_form(1), x, y_bnsl, "log1p"),
    ]


def grossmann_p0(form, x, y):
    """The single initial value of Großmann et al.'s curve_fit calls (papers.md §2.7)."""
    lx0 = np.log(x.min())
    return {"power_law": [[0.1, lx0]], "power_law_floor": [[0.1, lx0, y[-1]]],
            "broken_power_law": [[0.1, 0.1, lx0]]}.get(form.name)


def bench_1d(rng, repeats):
    print("\n1D fits (median of %d runs; naive = curve_fit from every start of the same grid)"
          % repeats)
    print(f"{'form':<34} {'ours [s]':>9} {'naive [s]':>10} {'ratio':>7}  same optimum")
    for label, fn, form, x, y, space in one_d_cases(rng):
        t_ours, result = timed(lambda: fn(x, y), repeats)
        X = x[:, None]
        starts = form.starts(X, y)
        t_naive, best = timed(lambda: naive_least_squares(form, X, y, space, starts), 1)
        print(f"{label:<34} {t_ours:9.3f} {t_naive:10.3f} {t_naive / t_ours:7.0f}  "
              f"{same(result.loss, best)}   ({starts.shape[0]} starts)")
        p0 = grossmann_p0(form, x, y)
        if p0 is not None:
            t_one, one = timed(lambda: naive_least_squares(form, X, y, space, p0), repeats)
            print(f"{'  one curve_fit from the paper p0':<34} {'':9} {t_one:10.3f} "
                  f"{t_one / t_ours:7.2f}  {same(result.loss, one)}")


def chinchilla_data(rng, n_sizes=15, n_data=20, noise=0.01):
    pts = np.array([(n, n * r) for n in np.geomspace(7e7, 1.6e10, n_sizes)
                    for r in np.geomspace(2, 400, n_data)])
    truth = np.array([np.log(1.69), np.log(406.4), np.log(410.7), 0.34, 0.28])
    log_l = CHINCHILLA.model(truth[None], pts, False)[0][0]
    return pts[:, 0], pts[:, 1], np.exp(log_l + noise * rng.standard_normal(log_l.size))


def bench_chinchilla(rng, subset, boot_subset, n_boot=1000):
    n, d, y = chinchilla_data(rng)
    print(f"\nChinchilla, {y.size} points, Hoffmann's full grid of 4,500 starts")
    t_fit, result = timed(lambda: fit.chinchilla(n, d, y, bootstrap=0), 1)
    t_boot, booted = timed(lambda: result.bootstrap(n=n_boot, seed=0), 1)
    X = np.column_stack([n, d])
    prob = core.Problem(CHINCHILLA, X, y, None, "log")
    starts = CHINCHILLA.starts(X, y)
    pick = rng.choice(starts.shape[0], size=subset, replace=False)
    t_sub, best = timed(lambda: naive_huber(prob, starts[pick]), 1)
    t_naive = t_sub * starts.shape[0] / subset
    print(f"  fit, all starts:   ours {t_fit:7.2f} s   naive {t_naive:8.1f} s (from {subset} "
          f"starts x {starts.shape[0] / subset:.0f})   ratio {t_naive / t_fit:5.0f}   "
          f"same optimum: {same(result.loss, best)} (naive on its subset)")
    t_bsub, _ = timed(lambda: _naive_bootstrap(prob, result._theta, boot_subset), 1)
    t_bnaive = t_bsub * n_boot / boot_subset
    print(f"  bootstrap x{n_boot}:  ours {t_boot:7.2f} s   naive {t_bnaive:8.1f} s (from "
          f"{boot_subset} refits)   ratio {t_bnaive / t_boot:5.0f}")
    print("  " + booted.summary().replace("\n", "\n  "))


def _naive_bootstrap(prob, theta0, n_boot, delta=1e-3):
    """One BFGS refit per resample, finite-difference gradient, from the point estimate."""
    counts = core.resample_multiplicities(prob.y.size, n_boot, seed=0)
    for m in counts:
        optimize.minimize(lambda t: float(solver.objective(prob.resid(t[None]), m, delta)[0]),
                          theta0, method="L-BFGS-B")


def bench_kaplan(rng, repeats):
    n, d = [a.ravel() for a in np.meshgrid(np.geomspace(2.8e5, 8e7, 7),
                                           np.geomspace(2.5e3, 1.6e5, 7))]
    theta = np.array([0.30, 0.20, 0.37, np.log(10**5.36), np.log(10**4.51)])
    y = KAPLAN_BROKEN.predict(theta, np.column_stack([n, d]))
    y = y * (1 + 0.01 * rng.standard_normal(y.size))
    t, _ = timed(lambda: fit.kaplan_2d(n, d, y, sigma=0.01 * y, broken=True), repeats)
    n_starts = KAPLAN_BROKEN.starts(np.column_stack([n, d]), y).shape[0]
    print(f"\nkaplan_2d broken, 49 points, {n_starts} starts: {t:.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller subsets")
    args = parser.parse_args()
    repeats, subset, boot_subset = (1, 60, 20) if args.quick else (5, 150, 100)
    rng = np.random.default_rng(0)
    print(f"msl.fit benchmark: {os.cpu_count()} CPUs visible, load average "
          f"{os.getloadavg()[0]:.1f} (timings on a shared machine vary by tens of percent)")
    bench_1d(rng, repeats)
    bench_kaplan(rng, repeats)
    bench_chinchilla(rng, subset, boot_subset)


if __name__ == "__main__":
    main()
