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
