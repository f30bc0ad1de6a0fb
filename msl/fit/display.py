"""How fit numbers are shown: a value to the precision its standard error supports, or a word.

The one entry point for a fitted parameter is ``format_param(value, stderr, reason)`` (a
``FitResult`` calls it as ``result.shown(name)``): ``"0.46 ± 0.03"`` when the parameter is
determined, ``"undetermined (<reason>)"`` when ``msl.fit`` flagged it (``reason``), when its
standard error is not finite, or when the error is at least its magnitude. Digits of a parameter
the data do not pin down are not shown anywhere: they change from one machine to the next.

Rounding (``format_pm``): the error to two significant digits when its first three digits are
100 to 354, to one otherwise (the Particle Data Group's rule; 950 to 999 round up to 1000, two
digits), and the value to the same decimal place; numbers from 10^4 up or below 10^-3 share
the exponent of the value, ``7.4e6 ± 2.1e6``, never a scale printed to the unit. Criteria of fits
(AICc, Akaike weights, errors of predictions) have their own fixed rounding (``AICC_DECIMALS``
etc.), coarse enough that the optimiser's last digits never show.
"""

from __future__ import annotations

import math

AICC_DECIMALS = 1      # AICc and differences of AICc
WEIGHT_DECIMALS = 2    # Akaike weights
ERROR_DECIMALS = 3     # RMS log errors and relative errors of predictions
UNDETERMINED = "undetermined"
STDERR_TOO_LARGE = "stderr exceeds its value"
AT_FLOAT_LIMIT = "driven to the limit of floating point: the data do not fix it"
FLOAT_RANGE = (1e-200, 1e200)  # |value| outside: a parameter run off to zero or infinity
NO_STDERR = "no standard error"


def why_undetermined(value: float, stderr: float, reason: str | None = None) -> str | None:
    """Why a fitted value cannot be shown as a number, or None when it can.

    ``reason`` (from the fit's diagnosis) wins; otherwise a value or error that is not finite,
    an error at least as large as the value's magnitude, or a value the optimiser pushed to the
    limits of floating point (such as a scale of 3e-321 "± 0" where the exponent is zero:
    digits of round-off, not a measurement).
    """
    if reason:
        return reason
    if not (_finite(value) and _finite(stderr)):
        return NO_STDERR
    if not stderr < abs(value):
        return STDERR_TOO_LARGE
    if not FLOAT_RANGE[0] < abs(value) < FLOAT_RANGE[1]:
        return AT_FLOAT_LIMIT
    return None


def format_param(value: float, stderr: float, reason: str | None = None) -> str:
    """``"0.46 ± 0.03"`` or ``"undetermined (<why>)"`` (see ``why_undetermined``)."""
    why = why_undetermined(value, stderr, reason)
    if why is not None:
        return f"{UNDETERMINED} ({why})"
    return format_pm(value, stderr)


def format_pm(value: float, err: float) -> str:
    """``value ± err`` rounded to the error: 1 or 2 significant digits of ``err`` (2 when its
    first digits are 100 to 354, see the module docstring), ``value`` to the same decimal
    place; a shared power of ten (``7.4e6 ± 2.1e6``) for magnitudes from 10^4 up or below
    10^-3. No judgement on whether the value is determined: that is ``format_param``'s."""
    if not (_finite(value) and _finite(err) and err > 0):
        return f"{_plain(value)} ± {_plain(err)}"
    place = _error_place(err)
    step = 10.0 ** place
    v, e = round(value / step) * step, round(err / step) * step
    big = max(abs(v), e)
    if 1e-3 <= big < 1e4:
        decimals = max(0, -place)
        return f"{v:.{decimals}f} ± {e:.{decimals}f}"
    exp = math.floor(math.log10(big))
    decimals = max(0, exp - place)
    scale = 10.0 ** exp
    return f"{v / scale:.{decimals}f}e{exp} ± {e / scale:.{decimals}f}e{exp}"


def format_interval(lo: float, hi: float, err: float) -> str:
    """``[lo, hi]`` (e.g. a bootstrap interval) rounded to the place ``format_pm`` rounds a value
    with standard error ``err`` to."""
    if not (_finite(lo) and _finite(hi) and _finite(err) and err > 0):
        return f"[{_plain(lo)}, {_plain(hi)}]"
    place = _error_place(err)
    step = 10.0 ** place
    a, b = round(lo / step) * step, round(hi / step) * step
    big = max(abs(a), abs(b))
    if big == 0 or 1e-3 <= big < 1e4:
        return f"[{a:.{max(0, -place)}f}, {b:.{max(0, -place)}f}]"
    exp = math.floor(math.log10(big))
    d, scale = max(0, exp - place), 10.0 ** exp
    return f"[{a / scale:.{d}f}e{exp}, {b / scale:.{d}f}e{exp}]"


def _error_place(err: float) -> int:
    """Power of ten of the last digit shown of ``err``."""
    exp = math.floor(math.log10(err))
    lead = err / 10.0 ** exp  # in [1, 10)
    if lead < 3.55 or lead >= 9.5:  # 9.5 and up rounds to 10: two digits of the next decade
        return exp - 1 if lead < 3.55 else exp
    return exp


def format_aicc(value: float, sign: bool = False) -> str:
    """AICc (or with ``sign`` a difference of AICc) to ``AICC_DECIMALS`` decimals."""
    if not _finite(value):
        return "undefined" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:{'+' if sign else ''}.{AICC_DECIMALS}f}"


def criteria(ranked) -> dict:
    """{"AICc", "dAICc", "weight"} of one ``msl.fit.Ranked`` row, rounded for a table."""
    return {"AICc": round_criterion(ranked.aicc, AICC_DECIMALS),
            "dAICc": round_criterion(ranked.delta_aicc, AICC_DECIMALS),
            "weight": round_criterion(ranked.weight, WEIGHT_DECIMALS)}


def round_criterion(value, decimals: int):
    """``value`` rounded to ``decimals`` for a table (None and non-finite values pass through)."""
    if value is None or not _finite(value):
        return value
    return round(float(value), decimals) + 0.0  # + 0.0: no "-0.0"


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _plain(v) -> str:
    if not _finite(v):
        return str(v)
    return f"{v:.3g}"

