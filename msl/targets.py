"""The target table: what a model predicts, at which level, how each term is scored, and its weight.

A run's loss is ``sum_k weight_k * loss_k(prediction_k, label_k)`` over the rows of its table.
A grid changes the table with one flat string, the ``targets`` parameter of a cell: either a
preset name (:data:`PRESETS`) or rows ``target:loss:weight`` separated by commas, e.g. Trikha et
al.'s ``"energy:mae:2.5, forces:l2mae:20, stress_iso:mae:5, stress_aniso:mae:5"``.

Targets (labels in training units; the unit a metric is reported in, if different, in brackets):

================  ======  ===================================================  ==============
target            level   what                                                 unit
================  ======  ===================================================  ==============
energy            system  total energy per atom                                eV/atom
forces            atom    force vector                                         eV/Å
stress            system  stress tensor, 9 components                          eV/Å^3 [GPa]
stress_iso        system  isotropic part, trace / 3                            eV/Å^3 [GPa]
stress_aniso      system  deviatoric part, stress - trace/3 * I (9 comps.)     eV/Å^3 [GPa]
spectrum          system  spectrum on the data's grid (embedded: vibrational   data's (1/THz)
                          DOS on [-8, 20] THz)
scalar            system  one scalar per structure (embedded: RMS frequency)   data's (THz)
================  ======  ===================================================  ==============

Losses (all averaged over the labelled values; NaN labels, e.g. a file without stress, are masked):

=======  =====================================================================================
mse      mean squared error, in training units squared
nmse     mse / sigma^2: sigma is the target's spread in the training set (:class:`Scales`), so
         each term starts near one and the weights say what they mean: relative importance
mae      mean absolute error, in training units (Trikha's and Großmann's choice)
nmae     mae / sigma
l2mae    mean over rows of the Euclidean norm of the error vector (forces: per atom; stress:
         per structure over its 9 components), fairchem's ``l2mae``
=======  =====================================================================================

Sigmas (:class:`Scales`), fixed per run from the training subset: energy, the spread of the
per-atom energy left after the per-element reference fit; forces and the stresses, RMS component;
spectrum, the RMS deviation from the mean training spectrum; scalar, its standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from msl.data.structures import GPA_PER_EV_A3

LEVELS = {"energy": "system", "forces": "atom", "stress": "system", "stress_iso": "system",
          "stress_aniso": "system", "spectrum": "system", "scalar": "system"}
TARGETS = tuple(LEVELS)
POTENTIAL_TARGETS = ("energy", "forces", "stress", "stress_iso", "stress_aniso")
SPECTRAL_TARGETS = ("spectrum", "scalar")
LOSSES = ("mse", "nmse", "mae", "nmae", "l2mae")
UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "GPa", "stress_iso": "GPa",
         "stress_aniso": "GPa", "spectrum": "1/THz", "scalar": "THz"}
_REPORT_SCALE = {"stress": GPA_PER_EV_A3, "stress_iso": GPA_PER_EV_A3,
                 "stress_aniso": GPA_PER_EV_A3}
PRESETS = {
    # normalised MSE of energy, forces and stress: the foundation's default
    "default": "energy:nmse:1, forces:nmse:1, stress:nmse:0.1",
    # Trikha et al. (fairchem's eqV2-S OMat24 config): 2.5 E + 20 F + 5 sigma_iso + 5 sigma_aniso
    "trikha": "energy:mae:2.5, forces:l2mae:20, stress_iso:mae:5, stress_aniso:mae:5",
    # Großmann et al.: MAE(spectrum) + MAE(scalar), in the data's own units
    "grossmann": "spectrum:mae:1, scalar:mae:1",
    # the same with each MAE divided by the target's spread (our spectral default, see methods)
    "spectral": "spectrum:nmae:1, scalar:nmae:1",
}


@dataclass(frozen=True)
class Term:
    """One row of the target table."""

    target: str
    loss: str
    weight: float

    @property
    def level(self) -> str:
        return LEVELS[self.target]


def table(spec: str) -> tuple[Term, ...]:
    """Parse a preset name or ``"target:loss:weight, ..."``; ValueError naming a bad entry."""
    text = PRESETS.get(spec.strip(), spec)
    terms = []
    for entry in (e.strip() for e in text.split(",")):
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) != 3:
            raise ValueError(f"targets entry {entry!r} is not target:loss:weight "
                             f"(or use a preset: {', '.join(PRESETS)})")
        target, kind, weight = parts
        if target not in LEVELS:
            raise ValueError(f"unknown target {target!r} in targets; known: {', '.join(TARGETS)}")
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r} for {target}; known: {', '.join(LOSSES)}")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"weight {weight!r} of {target} is not a number") from None
        if not w >= 0:
            raise ValueError(f"weight of {target} must not be negative, got {w!r}")
        if target in (t.target for t in terms):
            raise ValueError(f"target {target!r} appears twice in targets")
        terms.append(Term(target, kind, w))
    if not any(t.weight > 0 for t in terms):
        raise ValueError(f"targets {spec!r}: at least one weight must be positive")
    return tuple(terms)


def check_task(terms, task: str) -> None:
    """The targets must be ones that a family of kind ``task`` predicts."""
    allowed = SPECTRAL_TARGETS if task == "spectral" else POTENTIAL_TARGETS
    for t in terms:
        if t.target not in allowed:
            raise ValueError(f"target {t.target!r} cannot be learnt by a {task} model; "
                             f"it predicts {', '.join(allowed)}")


def needs(terms) -> dict[str, bool]:
    """Which derived outputs an energy model must compute for this table."""
    names = {t.target for t in terms if t.weight > 0}
    return {"forces": "forces" in names, "stress": bool(names & {"stress", "stress_iso",
                                                                  "stress_aniso"})}


def _iso(s: torch.Tensor) -> torch.Tensor:
    return s.diagonal(dim1=-2, dim2=-1).mean(-1)


def _aniso(s: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(3, dtype=s.dtype, device=s.device)
    return s - _iso(s)[..., None, None] * eye


def pairs(out: dict, batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(prediction, label) of every target the outputs allow, in training units."""
    result = {}
    if "energy" in out:
        n_atoms = torch.bincount(batch.batch, minlength=batch.cell.shape[0]).to(out["energy"].dtype)
        result["energy"] = (out["energy"] / n_atoms, batch.energy / n_atoms)
    if "forces" in out:
        result["forces"] = (out["forces"], batch.forces)
    if "stress" in out:
        result["stress"] = (out["stress"], batch.stress)
        result["stress_iso"] = (_iso(out["stress"]), _iso(batch.stress))
        result["stress_aniso"] = (_aniso(out["stress"]), _aniso(batch.stress))
    if "spectrum" in out:
        result["spectrum"] = (out["spectrum"], batch.spectrum)
    if "scalar" in out:
        result["scalar"] = (out["scalar"], batch.scalar)
    return result


def term_loss(kind: str, pred: torch.Tensor, true: torch.Tensor, sigma: float) -> torch.Tensor:
    """One loss term over the labelled values (NaN labels masked); zero if nothing is labelled."""
    if kind == "l2mae":
        rows = pred.shape[0]
        err = (pred - true).reshape(rows, -1)
        ok = torch.isfinite(err).all(-1)
        return err[ok].norm(dim=-1).mean() if ok.any() else pred.new_zeros(())
    mask = torch.isfinite(true)
    if not mask.any():
        return pred.new_zeros(())
    err = pred[mask] - true[mask]
    if kind in ("nmse", "nmae"):
        err = err / sigma
    return err.square().mean() if kind in ("mse", "nmse") else err.abs().mean()


def loss(out: dict, batch, scales: Scales, terms) -> torch.Tensor:
    """The table's weighted sum of loss terms (dimensionless for normalised losses)."""
    available = pairs(out, batch)
    total = next(iter(out.values())).new_zeros(())
    for t in terms:
        if t.weight == 0:
            continue
        if t.target not in available:
            raise ValueError(f"the model gave no {t.target!r} output for the target table")
        pred, true = available[t.target]
        total = total + t.weight * term_loss(t.loss, pred, true, scales.sigma[t.target])
    return total


@dataclass(frozen=True)
class Scales:
    """Spread ``sigma[target]`` of every target in the training set, in training units."""

    sigma: dict

    @classmethod
    def from_training(cls, structures, energy_sigma: float = 1.0) -> Scales:
        """From the training :class:`~msl.data.structures.Structures`; ``energy_sigma`` is the
        per-atom energy spread left after the reference fit (eV/atom), as the model computed it."""
        rms = lambda a: float(np.sqrt(np.nanmean(np.square(a)))) if np.isfinite(a).any() else 1.0
        stress = structures.stress
        iso = np.trace(stress, axis1=1, axis2=2) / 3
        sigma = {"energy": max(energy_sigma, 1e-6), "forces": max(rms(structures.forces), 1e-6),
                 "stress": max(rms(stress), 1e-8), "stress_iso": max(rms(iso), 1e-8),
                 "stress_aniso": max(rms(stress - iso[:, None, None] * np.eye(3)), 1e-8)}
        spectrum = getattr(structures, "spectrum", None)
        if spectrum is not None and np.isfinite(spectrum).any():
            sigma["spectrum"] = max(rms(spectrum - np.nanmean(spectrum, axis=0)), 1e-12)
        scalar = getattr(structures, "scalar", None)
        if scalar is not None and np.isfinite(scalar).any():
            sigma["scalar"] = max(float(np.nanstd(scalar)), 1e-12)
        return cls(sigma)

    def asdict(self) -> dict[str, float]:
        """``{target}_sigma`` in training units, for the record."""
        return {f"{k}_sigma": float(v) for k, v in self.sigma.items()}


class Metrics:
    """Accumulates absolute errors and the per-structure loss; ``result()`` gives the metric dict:
    ``<prefix>/loss`` and the MAE of every target the outputs allow, in the units of ``UNITS``."""

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
                mae = self.sums[name] / self.counts[name] * _REPORT_SCALE.get(name, 1.0)
                metrics[f"{self.prefix}/{name}_mae"] = mae
        return metrics
