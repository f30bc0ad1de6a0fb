"""Plain sentences on what fits of one scan say: is there a break, is there a floor.

Every number in them is shown as ``FitResult.stated`` shows it: rounded to its standard error,
or "undetermined" with the reason. A break the data do not locate (e.g. outside the measured
range) and the slope on its far side are never quoted; AICc differences have one decimal.
``msl.analysis.break_verdict`` / ``saturation_verdict`` call these with a scan's fits.
"""

from __future__ import annotations

import numpy as np

from msl.fit.display import format_aicc


def preference(d_aicc: float, other: str, simple_as_good: str) -> str:
    """Which law AICc prefers from ``d_aicc`` = AICc(simple) - AICc(other): a difference below
    2 does not distinguish them."""
    if d_aicc > 2:
        return f"the {other} is preferred"
    return simple_as_good if d_aicc > -2 else "the simple law is preferred"


def break_sentence(simple, broken, x) -> str:
    """AICc of the broken law against the simple one, where the break D_c sits and the slopes
    below and above it; with D_c undetermined, only the slope(s) over the data measured."""
    x = np.asarray(x, float)
    d_aicc = simple.aicc - broken.aicc
    head = (f"{preference(d_aicc, 'broken law', 'the simple law is as good (ΔAICc < 2)')} "
            f"(AICc simple − broken = {format_aicc(d_aicc, sign=True)})")
    span, xc = f"{x.min():.3g} to {x.max():.3g}", broken.params["x_c"]
    if broken.why_undetermined("x_c") is not None:
        seen = (["alpha_2"] if xc < x.min() else ["alpha_1"] if xc > x.max()
                else ["alpha_1", "alpha_2"])
        slopes = ", ".join(broken.stated(k, "slope over the measured range" if len(seen) == 1
                                         else f"slope {k}") for k in seen)
        return (f"{head}; no break is located in the measured range ({span}): "
                f"{broken.stated('x_c', 'D_c')}; {slopes}")
    return (f"{head}; {broken.stated('x_c', 'D_c')} lies inside the measured range ({span}); "
            f"{broken.stated('alpha_1', 'slope below the break')}, "
            f"{broken.stated('alpha_2', 'slope above it')}")


def saturation_sentence(simple, floor, y) -> str:
    """AICc of the law with floor against the simple one, and the floor L_inf (or that it is
    undetermined) against the smallest loss measured ``min(y)``."""
    d_aicc = simple.aicc - floor.aicc
    head = (f"{preference(d_aicc, 'floor', 'a floor is not needed (ΔAICc < 2)')} "
            f"(AICc simple − floor = {format_aicc(d_aicc, sign=True)})")
    return (f"{head}; fitted floor {floor.stated('L_inf')} against a smallest mean loss of "
            f"{np.min(y):.3g}; exponent {floor.stated('alpha')}")
