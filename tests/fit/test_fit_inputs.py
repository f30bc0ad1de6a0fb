"""Bad inputs fail loudly; selection, extrapolation and printing behave."""

import numpy as np
import pytest

import msl.fit as fit
from msl.fit.result import format_pm

X = np.geomspace(1e3, 1e5, 8)
Y = (50.0 / X) ** 0.3


@pytest.mark.parametrize("x, y, sigma, message", [
    ([1.0, 2.0, -3.0], [1.0, 2.0, 3.0], None, r"x\[2\] = -3.0 is not positive"),
    ([1.0, 2.0, 3.0], [1.0, 0.0, 3.0], None, r"y\[1\] = 0.0 is not positive"),
    ([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], None, r"x\[2\] = nan is not finite"),
    ([1.0, 2.0, 3.0], [1.0, np.inf, 3.0], None, r"y\[1\] = inf is not finite"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], None, "x has 3 values but y has 2"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.1, 0.1], "sigma has 2 values"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.1, -0.1, 0.1], r"sigma\[1\] = -0.1"),
    ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], None, "single distinct value"),
])
def test_fit_bad_input_raises_naming_the_value(x, y, sigma, message):
    with pytest.raises(ValueError, match=message):
        fit.power_law(x, y, sigma)


def test_fit_too_few_points_for_the_parameters():
    with pytest.raises(ValueError, match="needs at least 3 points"):
        fit.broken_power_law([1.0, 2.0], [1.0, 0.5])
    with pytest.raises(ValueError, match="needs at least 6 points"):
        fit.bnsl(X[:5], Y[:5], n_breaks=1)
    with pytest.raises(ValueError, match="needs at least 5 points"):
        fit.chinchilla([1e6, 2e6, 4e6, 8e6], [1e8, 1e9, 1e8, 1e9], [3, 2.5, 2.6, 2.2])
    with pytest.raises(ValueError, match="n_breaks = 5"):
        fit.bnsl(X, Y, n_breaks=5)
    with pytest.raises(ValueError, match="space must be one of"):
        fit.power_law(X, Y, space="loglog")


def test_fit_select_ranks_by_aicc_and_refuses_mixed_data():
    rng = np.random.default_rng(0)
    x = np.geomspace(2.5e3, 1.6e5, 12)
    y = (5e4 / x) ** 0.42 * (1 + 5e4 / x) ** (0.15 - 0.42) * (1 + 0.003 * rng.standard_normal(12))
    fits = [fit.power_law(x, y), fit.power_law_floor(x, y), fit.broken_power_law(x, y)]
    table = fit.select(fits)
    assert table[0].result.form == "broken_power_law"
    assert table[0].delta_aicc == 0 and all(row.delta_aicc >= 0 for row in table)
    assert np.isclose(sum(row.weight for row in table), 1.0)
    assert "AICc" in str(table[0])
    with pytest.raises(ValueError, match="different data"):
        fit.select([fits[0], fit.power_law(x[:-1], y[:-1])])


def test_fit_aicc_formula():
    n, k, rss = 7, 3, 0.01
    expected = 2 * k + n * np.log(rss / n) + (2 * k * k + 2 * k) / (n - k - 1)
    assert np.isclose(fit.aicc(rss, n, k), expected)
    assert fit.aicc(rss, 4, 3) == np.inf


def test_fit_extrapolation_prefers_the_true_form():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e3, 1e6, 14)
    y = (5e4 / x) ** 0.42 * (1 + 5e4 / x) ** (0.15 - 0.42) * (1 + 0.003 * rng.standard_normal(14))
    plain = fit.extrapolation(fit.power_law, x, y, n_holdout=3)
    broken = fit.extrapolation(fit.broken_power_law, x, y, n_holdout=3)
    assert plain.n_train == 11 and plain.n_holdout == 3
    assert broken.rmsle_holdout < plain.rmsle_holdout
    assert plain.rmsle_holdout > plain.rmsle_train
    with pytest.raises(ValueError, match="n_holdout"):
        fit.extrapolation(fit.power_law, x, y, n_holdout=14)


def test_fit_extrapolation_2d_holds_out_the_largest_compute():
    n, d = [a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e7, 5), np.geomspace(1e3, 1e5, 5))]
    y = ((2e5 / n) ** (0.3 / 0.25) + 2e4 / d) ** 0.25
    ex = fit.extrapolation(fit.kaplan_2d, (n, d), y, n_holdout=4)
    assert ex.n_holdout == 4 and ex.rmsle_holdout < 1e-6


def test_fit_summary_and_format():
    assert format_pm(0.4612, 0.0312) == "0.461 ± 0.031"
    assert format_pm(52352.0, 3100.0) == "5.24e4 ± 0.31e4"
    assert format_pm(1e-20, 0.48) == "0.0 ± 0.5"
    result = fit.power_law(X, Y * (1 + 0.01 * np.sin(X)))
    text = result.summary()
    assert text.startswith("power_law: n = 8") and "alpha = 0.3" in text
    assert str(result) == text
    assert result.n_params == 2 and set(result.stderr) == {"alpha", "x0"}
    assert result.cov.shape == (2, 2)
    assert np.allclose(result.predict(X), Y, rtol=0.05)


def test_fit_result_to_dict_is_json_ready():
    import json

    result = fit.power_law(X, Y * (1 + 0.01 * np.cos(X))).bootstrap(n=50, seed=0)
    row = result.to_dict()
    assert {"alpha", "alpha_stderr", "alpha_lo", "alpha_hi", "aicc"} <= set(row)
    json.dumps(row)
    assert result == result  # arrays are excluded from comparison
