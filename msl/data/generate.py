"""The embedded dataset: EMT-labelled random alloy cells, sampled the way OMat24 was.

No network is needed: ASE's EMT potential labels random fcc/bcc/hcp alloy cells of
Al, Cu, Ag, Au, Ni, Pd, Pt with energy (eV), forces (eV/Å) and stress (eV/Å^3, ASE sign).
The file is an ASE database in OMat24's own on-disk format (LMDB-backed ``.aselmdb``), so the
default data and real OMat24 files go through the same reader (:func:`msl.data.read`).

Recipe for candidate ``i`` (measured in ``research/data.md`` §1); every random draw comes from its
own stream ``np.random.SeedSequence([seed, i])``, so the result does not depend on ``workers``:

1. Cell: N is drawn uniformly over the feasible sizes in [4, 32]; then one of the diagonal
   supercells (fcc primitive or cubic, bcc primitive or cubic, hcp) with exactly N atoms whose
   repeats differ by at most a factor 3 (no needle-shaped cells).
2. Composition: k ~ U{1..4} distinct elements, fractions ~ Dirichlet(1); each site's species
   drawn i.i.d. Lattice constant by Vegard's law over the sites from the fcc reference values
   (``ase.data.reference_states``); bcc and hcp get the same volume per atom as fcc.
3. Strain: symmetric, its 6 independent components ~ N(0, 0.03); atoms move with the cell.
4. Rattle: 70 % thermal, Gaussian σ = 0.05 Å·sqrt(T / 300 K) with T ~ U(300, 3000) K;
   20 % large, σ ~ U(0.2, 0.35) Å; 10 % none.
5. Filter: keep the structure only if d_min / d_nn ≥ 0.6 **and** max_atoms |F| ≤ 20 eV/Å, where
   d_min is the shortest interatomic distance (periodic images included) and d_nn the ideal
   nearest-neighbour distance of the unstrained lattice. Why: large rattles put atoms on top of
   each other, where EMT gives forces up to thousands of eV/Å that no model should be asked to
   fit and that would dominate a force loss. The distance test alone still leaves max|F| up to
   155 eV/Å, so the force cap is what removes the outliers; the rule keeps about 87 % of
   candidates. Candidates are taken in order of ``i`` until ``n_structures`` pass.

Every row also stores ``data`` = {sid, candidate, lattice, rattle, rattle_sigma (Å),
temperature (K, NaN unless thermal), d_nn (Å), d_min_ratio} for provenance.

Kinds (:data:`KINDS`; the kind and its overrides are part of the recipe, so caches never mix;
``"chgnet"``, CHGNet-labelled crystal prototypes across the periodic table, has its own recipe in
:mod:`msl.data.chgnet`):

* ``"emt"``: the recipe above; energy, forces, stress.
* ``"emt-vdos"``: small cells, 4 to 8 atoms (feasible sizes 4, 6, 8), otherwise the same
  recipe and filter; each accepted structure is also labelled, in the same worker, with its
  Gamma-point vibrational density of states from the EMT Hessian (:mod:`msl.data.spectra`: 141
  points, -8 to 20 THz, 1/THz) and the RMS frequency (THz). Row ``data`` then also holds
  ``spectrum``, ``spectrum_grid``, ``scalar`` (the RMS frequency), ``frequencies`` (the 3N - 3
  signed frequencies, THz) and ``n_imaginary``; :func:`msl.data.read` returns the first three
  as ``Structures.spectrum``/``spectrum_grid``/``scalar``. Cost: 6N more force calls per
  structure (``research/data.md`` §4).
"""

from __future__ import annotations

import math
import os
import time
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from msl.data import chgnet, spectra, store

ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
RECIPE = {                      # the sampling recipe; any change here invalidates cached datasets
    "recipe_version": 1,
    "min_atoms": 4,             # atoms per cell, inclusive range
    "max_atoms": 32,
    "max_repeat_ratio": 3,      # largest / smallest supercell repeat
    "max_elements": 4,          # k ~ U{1..max_elements}
    "strain_std": 0.03,         # std of each symmetric strain component
    "rattle_p": [0.7, 0.2, 0.1],  # thermal, large, none
    "thermal_sigma_300k": 0.05,   # Å at 300 K, scales as sqrt(T / 300 K)
    "temperature_k": [300.0, 3000.0],
    "large_sigma": [0.2, 0.35],   # Å
    "min_distance_ratio": 0.6,    # keep d_min / d_nn >= this
    "max_force": 20.0,            # eV/Å, keep max |F| <= this
}
EMT_KINDS = {                  # kind: how its recipe differs from RECIPE
    "emt": {},
    "emt-vdos": {"max_atoms": 8, "spectrum": spectra.SETTINGS},
}
KINDS = (*EMT_KINDS, "chgnet")  # every embedded kind; "chgnet" is msl.data.chgnet's own recipe
PACKAGES = ("msl", "ase", "numpy", "matscipy", "lmdb")  # versions recorded in the sidecar
_RATTLES = ("thermal", "large", "none")
_LATTICES = {  # name: (structure, cubic, atoms in the cell, d_nn / a_fcc)
    "fcc-primitive": ("fcc", False, 1, 2 ** -0.5),
    "fcc-cubic": ("fcc", True, 4, 2 ** -0.5),
    "bcc-primitive": ("bcc", False, 1, 2 ** (-1 / 3) * 3 ** 0.5 / 2),
    "bcc-cubic": ("bcc", True, 2, 2 ** (-1 / 3) * 3 ** 0.5 / 2),
    "hcp": ("hcp", False, 2, 2 ** -0.5),  # ideal c/a; same volume per atom as fcc
}


def recipe(kind: str = "emt") -> dict:
    """The full recipe of EMT ``kind``: :data:`RECIPE` with the kind's overrides and its name
    (``"chgnet"``'s is :data:`msl.data.chgnet.RECIPE`)."""
    if kind not in EMT_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; kinds: {', '.join(KINDS)}")
    return {"kind": kind, **RECIPE, **EMT_KINDS[kind]}


@lru_cache(maxsize=None)
def _cell_options(min_atoms: int, max_atoms: int, max_repeat_ratio: int):
    """Feasible (lattice, repeats) for each atom count N, in a fixed order."""
    options: dict[int, list] = {}
    r = range(1, max_atoms + 1)
    for name, (_, _, n_basis, _) in _LATTICES.items():
        for reps in ((a, b, c) for a in r for b in r for c in r):
            n = n_basis * reps[0] * reps[1] * reps[2]
            if min_atoms <= n <= max_atoms and max(reps) <= max_repeat_ratio * min(reps):
                options.setdefault(n, []).append((name, reps))
    return dict(sorted(options.items()))


def _build(rng: np.random.Generator, elements: tuple[str, ...], kind: str = "emt"):
    """Steps 1-4 of the recipe of ``kind``: an unlabelled structure and its provenance dict."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    rules = recipe(kind)
    options = _cell_options(rules["min_atoms"], rules["max_atoms"], rules["max_repeat_ratio"])
    sizes = list(options)
    n = sizes[rng.integers(len(sizes))]
    name, reps = options[n][rng.integers(len(options[n]))]
    structure, cubic, _, nn_per_a = _LATTICES[name]

    k = int(rng.integers(1, min(rules["max_elements"], len(elements)) + 1))
    chosen = rng.choice(len(elements), size=k, replace=False)
    fractions = rng.dirichlet(np.ones(k))
    species = [elements[j] for j in chosen[rng.choice(k, size=n, p=fractions)]]
    a_fcc = float(np.mean([reference_states[atomic_numbers[s]]["a"] for s in species]))
    d_nn = a_fcc * nn_per_a
    lattice_a = {"fcc": a_fcc, "bcc": a_fcc * 2 ** (-1 / 3), "hcp": d_nn}[structure]
    atoms = bulk("X", structure, a=lattice_a, cubic=cubic).repeat(reps)
    atoms.set_chemical_symbols(species)

    e = rng.normal(0.0, rules["strain_std"], 6)  # Voigt order xx yy zz yz xz xy
    strain = np.array([[e[0], e[5], e[4]], [e[5], e[1], e[3]], [e[4], e[3], e[2]]])
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)

    rattle = _RATTLES[rng.choice(3, p=rules["rattle_p"])]
    temperature, sigma = float("nan"), 0.0
    if rattle == "thermal":
        temperature = float(rng.uniform(*rules["temperature_k"]))
        sigma = rules["thermal_sigma_300k"] * math.sqrt(temperature / 300.0)
    elif rattle == "large":
        sigma = float(rng.uniform(*rules["large_sigma"]))
    atoms.positions += rng.normal(0.0, sigma, (n, 3))
    info = {"lattice": name, "rattle": rattle, "rattle_sigma": sigma,
            "temperature": temperature, "d_nn": d_nn}
    return atoms, info


def min_distance(atoms, cutoff: float) -> float:
    """Shortest interatomic distance in Å, periodic images included; ``cutoff`` if none shorter."""
    from matscipy.neighbours import neighbour_list

    d = neighbour_list("d", atoms, cutoff)
    return float(d.min()) if len(d) else float(cutoff)


def candidate(seed: int, i: int, elements=ELEMENTS, kind: str = "emt"):
    """Build, filter and label candidate ``i`` of ``kind``: ``(status, payload)``.

    ``status`` is ``"ok"`` (payload: dict of arrays and provenance; for ``emt-vdos`` also
    ``"data"``, the dict of :func:`msl.data.spectra.vdos`), ``"distance"`` or ``"force"``
    (rejected by the filter; payload None).
    """
    from ase.calculators.emt import EMT

    rules = recipe(kind)
    rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
    atoms, info = _build(rng, tuple(elements), kind)
    info["d_min_ratio"] = min_distance(atoms, 1.5 * info["d_nn"]) / info["d_nn"]
    if info["d_min_ratio"] < rules["min_distance_ratio"]:
        return "distance", None
    atoms.calc = EMT()
    forces = atoms.get_forces()
    if np.linalg.norm(forces, axis=1).max() > rules["max_force"]:
        return "force", None
    payload = {
        "numbers": atoms.numbers, "positions": atoms.positions, "cell": atoms.cell[:],
        "energy": float(atoms.get_potential_energy()), "forces": forces,
        "stress": atoms.get_stress(voigt=False), "info": {"candidate": i, **info},
    }
    if rules.get("spectrum"):
        payload["data"] = spectra.vdos(atoms, atoms.calc)  # same EMT instance, 6N more calls
    return "ok", payload


def _label(seed: int, elements, kind: str, start: int, stop: int) -> list:
    return [candidate(seed, i, elements, kind) for i in range(start, stop)]


def _settings(n_structures: int, seed: int, elements, kind: str = "emt") -> dict:
    return {"generator": "msl.data.generate", "n_structures": int(n_structures),
            "seed": int(seed), "elements": list(elements), **recipe(kind)}


def generate(path, n_structures: int, seed: int = 0, workers: int | None = None,
             elements=ELEMENTS, progress: bool = True, kind: str = "emt") -> Path:
    """Generate ``n_structures`` labelled structures of ``kind`` (recipe, filter, kinds: module
    docstring; ``kind="chgnet"`` is :func:`msl.data.chgnet.generate`, which takes no
    ``elements``). An unknown ``kind`` raises ``ValueError`` listing :data:`KINDS`.

    Writes an ASE database ``path`` (``.aselmdb``, OMat24's format) and a sidecar
    ``<path>.json`` with the settings, counts, throughput and package versions. The output depends
    only on ``(n_structures, seed, elements, kind)``, not on ``workers`` (processes; default
    ``os.cpu_count()``). The database is written to a temp file in the same folder and renamed,
    so an interrupted run never leaves a partial file at ``path`` (:mod:`msl.data.store`).
    Returns ``path``.
    """
    if kind == "chgnet":
        if tuple(elements) != ELEMENTS:
            raise ValueError("kind 'chgnet' has its own element set (msl.data.chgnet.ELEMENTS); "
                             "`elements` is for the EMT kinds")
        return chgnet.generate(path, n_structures, seed=seed, workers=workers, progress=progress)
    settings = _settings(n_structures, seed, elements, kind)  # checks kind before any work
    if n_structures < 1:
        raise ValueError(f"n_structures must be >= 1, got {n_structures}")
    unknown = [e for e in elements if e not in ELEMENTS]
    if unknown or not elements:
        raise ValueError(f"elements {unknown or list(elements)} not supported; EMT has {ELEMENTS}")
    workers = max(1, int(workers or os.cpu_count() or 1))
    tally, t0 = {}, time.perf_counter()
    desc = "EMT alloys" + (" + VDOS" if settings.get("spectrum") else "")
    block = max(1, min(16, n_structures // (8 * workers)))  # EMT labels candidates one by one
    payloads = store.accepted(partial(_label, seed, tuple(elements), kind), n_structures, workers,
                              tally, acceptance=0.85, block=block)  # ~87 % pass the filter
    n_atoms = store.write(path, payloads, n_structures, f"{kind}-alloys-seed{seed}",
                          f"{desc} ({workers} workers)", progress)
    store.write_sidecar(path, settings, n_structures, n_atoms, tally, ("distance", "force"),
                        workers, time.perf_counter() - t0, PACKAGES)
    return Path(path)


def embedded(n_structures: int, seed: int = 0, workers: int | None = None,
             cache_dir="data", progress: bool = True, kind: str = "emt") -> Path:
    """The embedded dataset of ``kind``, generated once: ``<cache_dir>/{kind}-alloys-n{n}-seed{seed}
    .aselmdb`` for the EMT kinds, ``<cache_dir>/chgnet-crystals-n{n}-seed{seed}.aselmdb`` for
    ``kind="chgnet"`` (:func:`msl.data.chgnet.embedded`).

    ``kind="emt"`` (``emt-alloys-...``) is the default set; ``kind="emt-vdos"``
    (``emt-vdos-alloys-...``) adds spectra (module docstring). The kind is in both the file name
    and the recorded settings, so kinds never share a cache entry.

    If the file exists and its sidecar records the same settings (recipe included), nothing is
    generated and the call returns at once. Parallel callers wait on a lock file
    ``.<name>.lock`` in ``cache_dir``, so the dataset is generated once (:func:`msl.data.store
    .cached`). ``cache_dir`` is relative to the working directory.
    """
    if kind == "chgnet":
        return chgnet.embedded(n_structures, seed=seed, workers=workers, cache_dir=cache_dir,
                               progress=progress)
    settings = _settings(n_structures, seed, ELEMENTS, kind)  # unknown kind: ValueError here
    path = Path(cache_dir) / f"{kind}-alloys-n{int(n_structures)}-seed{int(seed)}.aselmdb"
    return store.cached(path, settings, lambda: generate(
        path, n_structures, seed=seed, workers=workers, progress=progress, kind=kind))
