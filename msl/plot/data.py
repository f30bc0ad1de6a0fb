"""Figures of a dataset: what the labels look like before any model sees them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from ase.data import chemical_symbols

from msl.data.structures import GPA_PER_EV_A3, Structures


def overview(structures: Structures):
    """Six panels: atoms per structure, energy per atom, force components, stress components,
    the largest force per structure, and how often each element occurs (eV, eV/Å, GPa)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), layout="constrained")
    (a, b, c), (d, e, f) = axes
    a.hist(structures.n_atoms, bins=np.arange(0.5, structures.n_atoms.max() + 1.5), color="C0")
    a.set_xlabel("atoms per structure")
    b.hist(structures.energy / structures.n_atoms, bins=60, color="C1")
    b.set_xlabel("energy per atom (eV/atom)")
    forces = structures.forces[np.isfinite(structures.forces)]
    c.hist(forces.ravel(), bins=80, color="C2", log=True)
    c.set_xlabel("force component (eV/Å)")
    stress = structures.stress[np.isfinite(structures.stress)] * GPA_PER_EV_A3
    d.hist(stress.ravel(), bins=80, color="C3", log=True)
    d.set_xlabel("stress component (GPa)")
    starts = structures.atom_offsets[:-1]
    norms = np.linalg.norm(np.nan_to_num(structures.forces), axis=1)
    e.hist(np.maximum.reduceat(norms, starts), bins=60, color="C4")
    e.set_xlabel("largest |F| in the structure (eV/Å)")
    z, counts = np.unique(structures.numbers, return_counts=True)
    f.bar([chemical_symbols[i] for i in z], counts / counts.sum(), color="C5")
    f.set_ylabel("fraction of atoms")
    for ax in (a, b, c, d, e):
        ax.set_ylabel("count")
    return fig


def summary(structures: Structures) -> dict[str, str]:
    """Headline numbers of a dataset, formatted with units."""
    per_atom = structures.energy / structures.n_atoms
    return {
        "structures": f"{len(structures):,}",
        "atoms": f"{len(structures.numbers):,} (mean {structures.n_atoms.mean():.1f} per structure)",
        "energy per atom": f"mean {np.nanmean(per_atom):.3f} eV/atom, std {np.nanstd(per_atom):.3f}",
        "force component": f"RMS {np.sqrt(np.nanmean(structures.forces ** 2)):.3f} eV/Å",
        "stress component": f"RMS {np.sqrt(np.nanmean(structures.stress ** 2)) * GPA_PER_EV_A3:.2f} GPa",
        "distinct formulas": f"{len(set(structures.formulas())):,}",
    }


def spectra(structures: Structures, n_examples: int = 6, seed: int = 0):
    """Three panels for a dataset with spectra: a few example spectra on their grid, the mean
    spectrum with its 10-90 % band, and the distribution of the scalar. Units are the embedded
    set's (vibrational DOS in 1/THz on a THz grid, RMS frequency in THz)."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    grid, spec = structures.spectrum_grid, structures.spectrum
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(np.isfinite(spec).all(1))
    formulas = structures.formulas()
    for i in rng.choice(labelled, min(n_examples, len(labelled)), replace=False):
        a.plot(grid, spec[i], lw=1, label=f"{formulas[i]} ({structures.n_atoms[i]} atoms)")
    a.legend(fontsize=7)
    a.set_title("examples")
    lo, mid, hi = np.nanpercentile(spec[labelled], [10, 50, 90], axis=0)
    b.fill_between(grid, lo, hi, alpha=0.3, color="C0", lw=0, label="10-90 %")
    b.plot(grid, np.nanmean(spec[labelled], axis=0), color="C0", label="mean")
    b.plot(grid, mid, color="C1", lw=1, label="median")
    b.legend(fontsize=7)
    b.set_title("all structures")
    for ax in (a, b):
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel("frequency (THz; < 0: unstable modes)")
        ax.set_ylabel("DOS (1/THz)")
    c.hist(structures.scalar[np.isfinite(structures.scalar)], bins=50, color="C2")
    c.set_xlabel("RMS frequency (THz)")
    c.set_ylabel("count")
    return fig
