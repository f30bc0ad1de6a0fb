"""A frequency-resolved target from the physics calculator: the vibrational density of states.

Großmann et al. predict a spectrum on a frequency grid plus a scalar; the embedded dataset's
analogue (``kind="emt-vdos"`` in :mod:`msl.data.generate`, measured in ``research/data.md`` §4)
is computed for one periodic structure at a time, at Gamma only:

1. Hessian by central finite differences of the forces, ``H[3a+i, :] = -(F(x + h e) - F(x - h e))
   / (2h)`` with ``h = 0.01 Å``: 6N force calls on one calculator, then symmetrised
   ``(H + Hᵀ) / 2``. Unit eV/Å².
2. Mass weighting ``D = H / sqrt(m_a m_b)`` (amu), eigenvalues λ in eV/(Å² amu).
3. Signed frequencies ``ν = sign(λ) sqrt(|λ|)`` converted to THz: ``sqrt(eV/(Å² amu))`` is an
   angular frequency in ASE's time unit (Å sqrt(amu/eV) ≈ 10.18 fs), so ``ν [THz] =
   sqrt(|λ|) · ase.units.s / (2π · 1e12)`` = 15.6333 THz per unit (:func:`thz_per_unit`).
4. **Acoustic modes**: the 3 frequencies with the smallest ``|ν|`` are dropped (the rigid
   translations, exactly zero for a periodic cell; rotations are not zero modes of a periodic
   cell, so 3N − 3 modes remain).
5. **Unstable modes**: a negative eigenvalue (imaginary frequency; the rattled, unrelaxed cells
   have many) is kept as a negative frequency ``-sqrt(|λ|)``. This is continuous in the structure
   and puts the instability on the spectrum's negative axis.
6. Spectrum: each mode a Gaussian (σ = 0.25 THz) on the fixed grid :data:`GRID` (141 points,
   -8 to 20 THz in steps of 0.2 THz), divided by the number of modes 3N − 3, so it is a
   vibrational density of states in 1/THz with unit area over the whole axis. It is **not**
   renormalised on the grid: modes outside it (about 1 %) are counted in the normalisation,
   so the area on the grid is the fraction of modes inside.
7. Scalar: the RMS frequency ``sqrt(mean ν²)`` over the 3N − 3 modes, in THz (ν² = |ν|² for
   an imaginary mode, so an unstable mode raises it like a stable one of the same |ν|).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

STEP = 0.01           # Å, central-difference displacement
SIGMA = 0.25          # THz, Gaussian broadening
GRID_MIN, GRID_MAX, GRID_POINTS = -8.0, 20.0, 141  # THz, inclusive: 0.2 THz spacing
N_ACOUSTIC = 3        # translations dropped at Gamma
SETTINGS = {          # goes into the dataset recipe: any change here invalidates cached datasets
    "spectrum": "vdos", "hessian_step": STEP, "sigma_thz": SIGMA,
    "grid_thz": [GRID_MIN, GRID_MAX, GRID_POINTS], "acoustic_dropped": N_ACOUSTIC,
    "imaginary": "negative", "scalar": "rms_frequency_thz",
}
GRID = np.linspace(GRID_MIN, GRID_MAX, GRID_POINTS)
"""float64 [141]: the common frequency grid of the embedded spectra, THz."""


@lru_cache(maxsize=1)
def thz_per_unit() -> float:
    """THz per sqrt(eV/(Å² amu)): ``ase.units.s / (2π · 1e12)`` ≈ 15.6333 (ase imported here)."""
    from ase import units

    return units.s / (2 * math.pi * 1e12)


def hessian(atoms, calc=None, step: float = STEP, symmetrise: bool = True) -> np.ndarray:
    """float64 [3N, 3N], eV/Å²: second derivatives of the energy by central differences of forces.

    Row ``3a + i`` is ``-(F(x_ai + h) - F(x_ai - h)) / (2h)``, flattened atom-major. ``calc``
    (default ``atoms.calc``) is attached to one copy of ``atoms`` and reused for all 6N calls;
    ``atoms`` itself is not changed. ``symmetrise=False`` returns the raw matrix (its asymmetry
    measures the finite-difference error).
    """
    if calc is None:
        calc = atoms.calc
    if calc is None:
        raise ValueError("hessian needs a calculator: pass calc= or set atoms.calc")
    if not step > 0:
        raise ValueError(f"step must be > 0 Å, got {step}")
    work = atoms.copy()
    work.calc = calc
    x0 = atoms.get_positions()
    n = len(atoms)
    h = np.empty((3 * n, 3 * n))
    for k in range(3 * n):
        forces = []
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[k // 3, k % 3] += sign * step
            work.set_positions(x)
            forces.append(work.get_forces().reshape(-1))
        h[k] = -(forces[0] - forces[1]) / (2 * step)
    return 0.5 * (h + h.T) if symmetrise else h


def frequencies(hess: np.ndarray, masses) -> np.ndarray:
    """float64 [3N - 3], THz, ascending: signed Gamma frequencies without the acoustic modes.

    ``hess`` [3N, 3N] in eV/Å² (:func:`hessian`), ``masses`` [N] in amu. Rules (module docstring):
    ν = sign(λ) sqrt(|λ|) of the mass-weighted Hessian, imaginary modes negative, the 3 smallest
    |ν| dropped.
    """
    masses = np.asarray(masses, dtype=float)
    n = len(masses)
    if hess.shape != (3 * n, 3 * n):
        raise ValueError(f"hessian has shape {hess.shape}, expected {(3 * n, 3 * n)} for {n} atoms")
    if n < 2:
        raise ValueError(f"a vibrational spectrum needs >= 2 atoms, got {n}")
    w = 1.0 / np.sqrt(np.repeat(masses, 3))
    lam = np.linalg.eigvalsh(hess * w[:, None] * w[None, :])
    nu = np.sign(lam) * np.sqrt(np.abs(lam)) * thz_per_unit()
    keep = np.sort(np.argsort(np.abs(nu), kind="stable")[N_ACOUSTIC:])
    return nu[keep]


def dos(freqs, grid=GRID, sigma: float = SIGMA) -> np.ndarray:
    """float64 [..., n_grid], 1/THz: Gaussian-broadened density of states of ``freqs`` [..., M].

    Each of the M modes contributes a unit-area Gaussian of width ``sigma`` (THz), divided by M;
    not renormalised on ``grid``, so modes outside it are counted (module docstring, step 6).
    """
    nu = np.asarray(freqs, dtype=float)
    grid = np.asarray(grid, dtype=float)
    z = (grid[..., None, :] - nu[..., :, None]) / sigma
    return np.exp(-0.5 * z * z).sum(axis=-2) / (nu.shape[-1] * sigma * math.sqrt(2 * math.pi))


def rms_frequency(freqs) -> np.ndarray:
    """RMS frequency sqrt(mean ν²) over the last axis of ``freqs``, THz; |ν| for imaginary modes."""
    nu = np.asarray(freqs, dtype=float)
    return np.sqrt(np.mean(nu * nu, axis=-1))


def vdos(atoms, calc=None) -> dict:
    """The spectral labels of one structure, as stored in an embedded ``emt-vdos`` row's ``data``.

    Returns ``{"spectrum": [141] 1/THz, "spectrum_grid": [141] THz, "scalar": RMS frequency
    (THz), "frequencies": [3N - 3] signed THz, "n_imaginary": modes with ν < 0}``.
    ``calc`` defaults to ``atoms.calc`` (one EMT instance is reused for the 6N force calls).
    """
    nu = frequencies(hessian(atoms, calc), atoms.get_masses())
    return {"spectrum": dos(nu), "spectrum_grid": GRID.copy(), "scalar": float(rms_frequency(nu)),
            "frequencies": nu, "n_imaginary": int((nu < 0).sum())}
