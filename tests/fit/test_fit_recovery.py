"""Every form recovers known parameters from noisy synthetic data within its reported errors."""

import numpy as np
import pytest

import msl.fit as fit
from msl.fit.bnsl import bnsl_form
from msl.fit.chinchilla import CHINCHILLA
from msl.fit.forms import BROKEN_POWER_LAW, POWER_LAW_FLOOR
from msl.fit.kaplan import KAPLAN, KAPLAN_BROKEN

N_SIGMA = 4.0  # recovered within this many reported standard errors


def _noisy(form, theta, X, rel_noise, seed):
    y = form.predict(np.asarray(theta, float), X)
    sigma = rel_noise * y
    return y + sigma * np.random.default_rng(seed).standard_normal(y.size), sigma


def _assert_recovered(result, truth, n_sigma=N_SIGMA):
    assert not result.poorly_determined, result.reason
    for name, value in truth.items():
        err = abs(result.params[name] - value)
        assert err <= n_sigma * result.stderr[name], (
            f"{result.form}.{name}: {result.params[name]:.5g} vs true {value:.5g} "
            f"(stderr {result.stderr[name]:.3g})")


def test_fit_power_law_recovers_exponent():
    x = np.geomspace(1e3, 1e7, 12)
    y = (200.0 / x) ** 0.3 * (1 + 0.01 * np.random.default_rng(1).standard_normal(x.size))
    result = fit.power_law(x, y, sigma=0.01 * y)
    _assert_recovered(result, {"alpha": 0.3, "x0": 200.0})
    log_fit = fit.power_law(x, y, space="log")
    _assert_recovered(log_fit, {"alpha": 0.3, "x0": 200.0})


def test_fit_power_law_floor_recovers_floor():
    x = np.geomspace(1e5, 1e8, 20)
    theta = [0.5, np.log(3e4), 1.0]
    y, sigma = _noisy(POWER_LAW_FLOOR, theta, x[:, None], 0.003, seed=2)
    result = fit.power_law_floor(x, y, sigma)
    _assert_recovered(result, {"alpha": 0.5, "x0": 3e4, "L_inf": 1.0})


def test_fit_broken_power_law_recovers_both_exponents():
    x = np.geomspace(2.5e3, 1.6e5, 15)
    y, sigma = _noisy(BROKEN_POWER_LAW, [0.15, 0.42, np.log(5e4)], x[:, None], 0.005, seed=3)
    result = fit.broken_power_law(x, y, sigma)
    _assert_recovered(result, {"alpha_1": 0.15, "alpha_2": 0.42, "x_c": 5e4})


def test_fit_bnsl_recovers_caballero_ground_truth():
    """The noiseless-simulation parameters of the BNSL reference code (anchors.md §1.2)."""
    truth = dict(a=0.41388, b=2.27727, c0=0.05508, c1=5.66290, d1=612.58, f1=0.05919)
    theta = [truth["a"], np.log(truth["b"]), truth["c0"], truth["c1"], np.log(truth["d1"]),
             np.log(truth["f1"])]
    x = np.geomspace(1, 4095, 60)
    y, _ = _noisy(bnsl_form(1), theta, x[:, None], 0.005, seed=4)
    result = fit.bnsl(x, y, n_breaks=1)
    _assert_recovered(result, truth)


def _grid_2d():
    n = np.geomspace(2.8e5, 8e7, 7)
    d = np.geomspace(2.5e3, 1.6e5, 7)
    nn, dd = np.meshgrid(n, d)
    return nn.ravel(), dd.ravel()


@pytest.mark.parametrize("broken", [False, True])
def test_fit_kaplan_2d_recovers_map(broken):
    n, d = _grid_2d()
    if broken:
        form, theta = KAPLAN_BROKEN, [0.30, 0.20, 0.37, np.log(10**5.36), np.log(10**4.51)]
        truth = dict(alpha_N=0.30, alpha_D1=0.20, alpha_D2=0.37, N_c=10**5.36, D_c=10**4.51)
    else:
        form, theta = KAPLAN, [0.30, 0.25, np.log(2e5), np.log(2e4)]
        truth = dict(alpha_N=0.30, alpha_D=0.25, N_c=2e5, D_c=2e4)
    y, sigma = _noisy(form, theta, np.column_stack([n, d]), 0.01, seed=5)
    result = fit.kaplan_2d(n, d, y, sigma, broken=broken)
    _assert_recovered(result, truth)
    assert result.predict(n[:3], d[:3]).shape == (3,)


def _chinchilla_data(n_sizes=8, n_data=10, seed=6, noise=0.01):
    pts = [(n, n * r) for n in np.geomspace(7e7, 1.6e10, n_sizes)
           for r in np.geomspace(2, 400, n_data)]
    X = np.array(pts)
    truth = [np.log(1.69), np.log(406.4), np.log(410.7), 0.34, 0.28]
    log_l = CHINCHILLA.model(np.array([truth]), X, False)[0][0]
    y = np.exp(log_l + noise * np.random.default_rng(seed).standard_normal(log_l.size))
    return X[:, 0], X[:, 1], y


def test_fit_chinchilla_recovers_hoffmann_surface():
    n, d, y = _chinchilla_data()
    result = fit.chinchilla(n, d, y, bootstrap=300, seed=0)
    truth = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    _assert_recovered(result, truth)
    for name, value in truth.items():
        lo, hi = result.ci[name]
        assert lo < result.params[name] < hi
    c = 5.88e23
    assert np.isclose(6 * result.n_opt(c) * result.d_opt(c), c)
    assert result.loss_opt(c) <= result.predict(result.n_opt(c) * 2, result.d_opt(c) / 2)
    assert result.loss_opt(c) <= result.predict(result.n_opt(c) / 2, result.d_opt(c) * 2)
    lo, hi = result.frontier_ci(c)["n_opt"]
    assert lo < result.n_opt(c) < hi


def test_fit_chinchilla_global_optimum_does_not_depend_on_starts():
    n, d, y = _chinchilla_data(n_sizes=6, n_data=8, seed=7)
    full = fit.chinchilla(n, d, y, bootstrap=0)
    one = fit.chinchilla(n, d, y, bootstrap=0, starts=[[0.5, 6.0, 6.0, 0.3, 0.3]])
    assert full.loss <= one.loss * (1 + 1e-9)
    assert full.n_near_best > 100  # many starts of Hoffmann's grid reach the same optimum


def test_fit_chinchilla_collinear_design_is_poorly_determined():
    n = np.geomspace(1e7, 1e10, 30)
    d = 20 * n
    y = 1.7 + 400 * n**-0.34 + 400 * d**-0.28
    result = fit.chinchilla(n, d, y * np.exp(0.01 * np.random.default_rng(8).standard_normal(30)),
                            bootstrap=50)
    assert result.poorly_determined
    assert "collinear" in result.reason


def test_fit_break_outside_data_is_poorly_determined():
    x = np.geomspace(1e3, 1e5, 10)
    y = (50.0 / x) ** 0.3 * (1 + 0.003 * np.random.default_rng(9).standard_normal(10))
    result = fit.broken_power_law(x, y)
    assert result.poorly_determined, result.summary()


def test_fit_floor_absent_is_reported_on_bound():
    x = np.geomspace(1e3, 1e6, 10)
    y = (50.0 / x) ** 0.3 * (1 + 0.003 * np.random.default_rng(10).standard_normal(10))
    result = fit.power_law_floor(x, y)
    assert result.poorly_determined and "L_inf" in result.reason


def test_fit_bnsl_two_breaks_recovers_and_wins_aicc():
    truth = dict(a=0.1, b=3.0, c0=0.1, c1=0.6, d1=100.0, f1=0.2, c2=-0.4, d2=1e4, f2=0.2)
    theta = [0.1, np.log(3.0), 0.1, 0.6, np.log(100.0), np.log(0.2), -0.4, np.log(1e4),
             np.log(0.2)]
    x = np.geomspace(1, 1e5, 50)
    y = bnsl_form(2).predict(np.array(theta), x[:, None])
    y = y * (1 + 0.003 * np.random.default_rng(0).standard_normal(x.size))
    two = fit.bnsl(x, y, n_breaks=2)
    _assert_recovered(two, truth)
    assert fit.select([fit.bnsl(x, y, n_breaks=1), two])[0].result is two
