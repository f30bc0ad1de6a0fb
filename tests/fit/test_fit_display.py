"""Fit numbers are shown rounded to their standard error, or as "undetermined" with the reason:
per-parameter flags of ``diagnose``, ``format_param`` / ``FitResult.shown``, and the verdicts."""

import re

import numpy as np
import pytest

import msl.fit as fit
from msl.fit import verdicts
from msl.fit.display import format_aicc, format_interval, format_param, format_pm
from msl.fit.forms import BROKEN_POWER_LAW

X = np.geomspace(1e3, 1e5, 10)


def _broken_data(x_c, seed=3):
    """A broken law with alpha_1 = 0.1 below ``x_c`` and alpha_2 = 0.4 above, 0.3 % noise."""
    y = BROKEN_POWER_LAW.predict(np.array([0.1, 0.4, np.log(x_c)]), X[:, None])
    return y * (1 + 0.003 * np.random.default_rng(seed).standard_normal(X.size))


@pytest.mark.parametrize("value, err, text", [
    (0.4612, 0.0412, "0.46 ± 0.04"),          # leading digit of the error >= 3.55: one digit
    (0.4612, 0.0312, "0.461 ± 0.031"),        # 100-354: two digits
    (0.5, 0.097, "0.50 ± 0.10"),              # 950-999 round up to 1000: two digits
    (7442733.0, 2106489.0, "7.4e6 ± 2.1e6"),  # a big scale is never printed to the unit
    (3.2e-5, 4e-7, "3.20e-5 ± 0.04e-5"),
    (-0.0084, 0.0038, "-0.008 ± 0.004"),
])
def test_determined_value_is_rounded_to_its_error(value, err, text):
    assert format_param(value, err) == text == format_pm(value, err)


def test_rounding_hides_the_optimisers_last_digits():
    # issue 9: the same x_c printed 7442732.0 on one machine and 7442733.0 on another
    assert format_param(7442732.0, 2106489.0) == format_param(7442733.0, 2106488.7)
    assert format_param(0.41512, 0.01931) == format_param(0.41512 * (1 + 1e-9), 0.01931)


def test_value_with_stderr_above_it_is_undetermined():
    assert format_param(3.5e11, 5.4e14) == "undetermined (stderr exceeds its value)"
    assert format_param(3.8e11, 6.1e14) == format_param(3.5e11, 5.4e14)
    assert format_param(0.3, float("nan")) == "undetermined (no standard error)"
    assert format_param(0.3, 0.01, "on its bound") == "undetermined (on its bound)"


def test_interval_is_rounded_like_its_value():
    assert format_interval(0.14237, 0.16641, 0.0037) == "[0.142, 0.166]"
    assert format_interval(41312.0, 59207.0, 3100.0) == "[4.13e4, 5.92e4]"


def test_format_aicc_one_decimal():
    assert format_aicc(-60.26541) == "-60.3"
    assert format_aicc(3.04, sign=True) == "+3.0"
    assert format_aicc(float("inf")) == "inf" and format_aicc(float("nan")) == "undefined"


def test_break_below_the_data_leaves_the_slope_above_determined():
    result = fit.broken_power_law(X, _broken_data(x_c=10.0))
    assert set(result.undetermined) == {"x_c", "alpha_1"}
    assert "below the data range" in result.undetermined["x_c"]
    assert result.why_undetermined("alpha_2") is None
    assert result.shown("alpha_2") == format_pm(result.params["alpha_2"],
                                                result.stderr["alpha_2"])
    assert result.shown("alpha_2").startswith("0.39")
    assert result.shown("x_c").startswith("undetermined (break x_c below the data range")
    assert result.stated("alpha_1", why=False) == "alpha_1 undetermined"


def test_break_above_the_data_leaves_the_slope_below_determined():
    result = fit.broken_power_law(X, _broken_data(x_c=1e7))
    assert set(result.undetermined) == {"x_c", "alpha_2"}
    assert "above the data range" in result.reason
    assert result.shown("alpha_1").startswith("0.10")


def test_whole_fit_reasons_apply_to_every_parameter():
    result = fit.power_law(X[:2], (50.0 / X[:2]) ** 0.3)
    assert result.undetermined == {"alpha": "no degrees of freedom", "x0": "no degrees of freedom"}
    assert result.shown("alpha") == "undetermined (no degrees of freedom)"
    assert "alpha = undetermined" in result.summary()


def test_reasons_never_quote_an_undetermined_value():
    floor = fit.power_law_floor(X, (50.0 / X) ** 0.3)  # no floor: L_inf on its bound 0
    assert "on its bound" in floor.undetermined["L_inf"] and "L_inf on its bound" in floor.reason
    broken = fit.broken_power_law(X, _broken_data(x_c=10.0))
    for result in (floor, broken):
        for name in result.undetermined:
            value, se = result.params[name], result.stderr[name]
            for digits in (f"{value:.3g}", f"{value:.4g}", f"{se:.3g}"):
                assert value == 0 or digits not in result.reason, (name, digits)


def test_break_verdict_outside_the_data_names_no_slope_or_break_digits():
    y = _broken_data(x_c=10.0)
    simple, broken = fit.power_law(X, y), fit.broken_power_law(X, y)
    text = verdicts.break_sentence(simple, broken, X)
    assert "no break is located in the measured range" in text
    assert "D_c undetermined (break x_c below the data range" in text
    assert f"slope over the measured range = {broken.shown('alpha_2')}" in text
    hidden = (broken.params["x_c"], broken.params["alpha_1"])
    for value in hidden:
        for digits in (f"{value:.2f}", f"{value:.3g}", f"{value:.2e}"):
            assert digits not in text
    # every number in it is the AICc difference, the data range or the rounded alpha_2
    allowed = {"1e+03", "1e+05"} | set(re.findall(r"-?\d+\.\d+", broken.shown("alpha_2")))
    numbers = set(re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", text)) - allowed
    assert numbers <= {format_aicc(simple.aicc - broken.aicc, sign=True).lstrip("+"), "2"}


def test_break_verdict_inside_the_data_quotes_break_and_slopes():
    y = _broken_data(x_c=1e4)
    simple, broken = fit.power_law(X, y), fit.broken_power_law(X, y)
    assert broken.undetermined == {}
    text = verdicts.break_sentence(simple, broken, X)
    assert text.startswith("the broken law is preferred")
    assert f"D_c = {broken.shown('x_c')} lies inside the measured range" in text
    assert f"slope below the break = {broken.shown('alpha_1')}" in text


def test_a_value_at_the_limit_of_floating_point_is_undetermined():
    """A scale of 3e-321 "± 0" (seen in a fit whose exponent went to zero) is not a number."""
    from msl.fit import display

    assert display.format_param(3e-321, 0.0).startswith("undetermined")
    assert display.format_param(0.46, 0.05) == "0.46 ± 0.05"
