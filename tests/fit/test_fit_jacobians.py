"""Every form's analytic Jacobian against central finite differences."""

import numpy as np
import pytest

from msl.fit.bnsl import bnsl_form
from msl.fit.chinchilla import CHINCHILLA
from msl.fit.forms import BROKEN_POWER_LAW, POWER_LAW, POWER_LAW_FLOOR
from msl.fit.kaplan import KAPLAN, KAPLAN_BROKEN

RNG = np.random.default_rng(0)
X1 = np.geomspace(10.0, 1e5, 25)[:, None]
X2 = np.column_stack([np.geomspace(1e5, 1e8, 25), RNG.permutation(np.geomspace(1e3, 1e6, 25))])

CASES = [
    (POWER_LAW, X1, [0.3, np.log(50.0)]),
    (POWER_LAW_FLOOR, X1, [0.4, np.log(200.0), 0.5]),
    (BROKEN_POWER_LAW, X1, [0.15, 0.45, np.log(3e3)]),
    (bnsl_form(0), X1, [0.2, 0.5, 0.3]),
    (bnsl_form(1), X1, [0.2, 0.5, 0.1, 0.8, np.log(1e3), np.log(0.3)]),
    (bnsl_form(2), X1, [0.2, 0.5, 0.1, 0.8, np.log(1e2), np.log(0.3), -0.4, np.log(1e4), 0.1]),
    (KAPLAN, X2, [0.3, 0.25, np.log(2e5), np.log(3e4)]),
    (KAPLAN_BROKEN, X2, [0.3, 0.2, 0.4, np.log(2e5), np.log(3e4)]),
    (CHINCHILLA, X2, [0.5, 6.0, 6.0, 0.34, 0.28]),
]


@pytest.mark.parametrize("form, X, theta", CASES, ids=[c[0].name for c in CASES])
def test_fit_jacobian_matches_finite_differences(form, X, theta):
    theta = np.asarray(theta, float)[None, :]
    _, jac = form.model(theta, X, True)
    assert jac.shape == (1, form.n_params, X.shape[0])
    for j in range(form.n_params):
        h = 1e-6 * max(1.0, abs(theta[0, j]))
        up, down = theta.copy(), theta.copy()
        up[0, j] += h
        down[0, j] -= h
        numeric = (form.model(up, X, False)[0] - form.model(down, X, False)[0]) / (2 * h)
        np.testing.assert_allclose(jac[0, j], numeric[0], rtol=1e-5, atol=1e-8 * np.abs(
            numeric).max() + 1e-12, err_msg=f"{form.name}: d/d{form.params[j]}")
