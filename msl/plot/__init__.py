"""Figures: single runs (:mod:`msl.plot.training`) and scaling laws (:mod:`msl.plot.scaling`)."""

from msl.plot.training import loss_curve

__all__ = ["loss_curve"]
