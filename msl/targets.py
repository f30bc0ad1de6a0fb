"""The target table: what a model predicts, at which level, in which unit, and how it is scored.

=========  ======  =============  ==============================  ===================
target     level   trained in     loss term                       metric (reported)
=========  ======  =============  ==============================  ===================
energy     system  eV/atom        MSE / sigma_E^2  * w_energy     MAE, eV/atom
forces     atom    eV/Å           MSE / sigma_F^2  * w_forces     MAE per component, eV/Å
stress     system  eV/Å^3         MSE / sigma_S^2  * w_stress     MAE per component, GPa
=========  ======  =============  ==============================  ===================

The sigmas are fixed per run from the training subset (energy: the spread of the per-atom energy
left after the per-element reference fit; forces: RMS force component; stress: RMS stress
component), so that each term is of order one at the start and the weights mean what they say:
the relative importance of the terms. NaN labels (files without stress, say) are masked out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from msl.data.structures import GPA_PER_EV_A3

TARGETS = ("energy", "forces", "stress")
UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "GPa"}
_REPORT_SCALE = {"energy": 1.0, "forces": 1.0, "stress": GPA_PER_EV_A3}


@dataclass(frozen=True)
class Scales:
    """Normalising sigmas of the three targets, in training units (eV/atom, eV/Å, eV/Å^3)."""

    energy: float
    forces: float
    stress: float

    @classmethod
    def from_training(cls, forces: np.ndarray, stress: np.ndarray, energy_sigma: float):
        rms = lambda a: float(np.sqrt(np.nanmean(np.square(a)))) if np.isfinite(a).any() else 1.0
        return cls(energy=max(energy_sigma, 1e-6), forces=max(rms(forces), 1e-6),
                   stress=max(rms(stress), 1e-8))


def pairs(out: dict, batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(prediction, label) per target, in training units; energy per atom."""
    n_atoms = torch.bincount(batch.batch, minlength=batch.cell.shape[0]).to(out["energy"].dtype)
    result = {"energy": (out["energy"] / n_atoms, batch.energy / n_atoms)}
    if "forces" in out:
        result["forces"] = (out["forces"], batch.forces)
    if "stress" in out:
        result["stress"] = (out["stress"], batch.stress)
    return result


def loss(out: dict, batch, scales: Scales, weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum of the normalised mean squared errors (dimensionless)."""
    total = out["energy"].new_zeros(())
    for name, (pred, true) in pairs(out, batch).items():
        if weights.get(name, 0) == 0:
            continue
        mask = torch.isfinite(true)
        if mask.any():
            err = (pred[mask] - true[mask]) / getattr(scales, name)
            total = total + weights[name] * err.square().mean()
    return total


class Metrics:
    """Accumulates absolute errors and the per-structure loss; ``result()`` gives the metric dict."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.sums = {name: 0.0 for name in TARGETS}
        self.counts = {name: 0 for name in TARGETS}
        self.loss_sum, self.n_graphs = 0.0, 0

    def add(self, out: dict, batch, batch_loss: float) -> None:
        for name, (pred, true) in pairs(out, batch).items():
            mask = torch.isfinite(true)
            self.sums[name] += float((pred[mask] - true[mask]).abs().sum())
            self.counts[name] += int(mask.sum())
        n_graphs = batch.cell.shape[0]
        self.loss_sum += batch_loss * n_graphs
        self.n_graphs += n_graphs

    def result(self) -> dict[str, float]:
        metrics = {f"{self.prefix}/loss": self.loss_sum / max(self.n_graphs, 1)}
        for name in TARGETS:
            if self.counts[name]:
                mae = self.sums[name] / self.counts[name] * _REPORT_SCALE[name]
                metrics[f"{self.prefix}/{name}_mae"] = mae
        return metrics
