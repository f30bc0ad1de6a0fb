"""Scaling-law fits: the laws of Kaplan, Hoffmann (Chinchilla), Caballero (BNSL), Großmann et al.

Each function fits one form from a grid of starts (then local refinement with analytic Jacobians)
and returns a ``FitResult``: ``params``, ``stderr``, ``cov``, ``aicc``, ``predict``,
``bootstrap(n, seed)`` / ``ci``, ``poorly_determined`` with ``reason``, ``undetermined`` (the
parameters the data do not pin down, and why), ``shown(name)`` (how every table, legend and
sentence prints a parameter: ``msl.fit.display.format_param``), ``summary()``.
Forms, the space each is fitted in and why: the function docstrings and ``book/methods.md``.

Conventions: N = parameters (``n``), D = training structures (``d``), C = compute in FLOPs with
C = 6 N D for the Chinchilla allocation, L = loss (``y``, > 0). ``sigma`` is the spread over seeds
of a mean loss, in the units of L.
"""

from msl.fit.bnsl import bnsl
from msl.fit.chinchilla import ChinchillaResult, chinchilla
from msl.fit.display import format_param
from msl.fit.forms import broken_power_law, power_law, power_law_floor
from msl.fit.kaplan import kaplan_2d
from msl.fit.result import FitResult
from msl.fit.select import Extrapolation, Ranked, aicc, extrapolation, select

__all__ = [
    "FitResult", "ChinchillaResult", "Ranked", "Extrapolation",
    "power_law", "power_law_floor", "broken_power_law", "bnsl", "kaplan_2d", "chinchilla",
    "select", "extrapolation", "aicc", "format_param",
]
