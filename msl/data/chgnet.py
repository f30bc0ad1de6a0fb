"""The ``chgnet`` dataset kind: crystal prototypes across the periodic table, labelled by CHGNet.

The EMT set (:mod:`msl.data.generate`) has seven metals and a potential with little chemistry;
this kind asks whether a scaling law survives on labels closer to OMat24's. The teacher is the
universal potential CHGNet (``pip install chgnet==0.4.2``, BSD; its 0.3.0 weights ship in the
wheel, so no network is needed), run on the CPU in float32 with one torch thread per worker.
The file is the same ``.aselmdb`` as the EMT set's and goes through the same reader.

Why hand-written: OMat24 built its structures from relaxed Materials Project and Alexandria
crystals, which are not available offline, and no library makes OMat24-style prototype sets
(ASE and pymatgen build one prototype at a time; enumeration tools order the sites of one
lattice). So the
recipe below builds the common prototypes itself and perturbs them the way OMat24 perturbed its
own (rattled, strained, short high-temperature molecular dynamics).

Recipe for candidate ``i``; every random draw comes from ``np.random.SeedSequence([seed, i])``:

1. Prototype, uniform over :data:`PROTOTYPES`: an elemental reference crystal, or a binary or
   ternary decoration of a common prototype (rocksalt, CsCl, zincblende, wurtzite, fluorite,
   rutile, NiAs, CdI2, AlB2, pyrite, corundum, L1_2, A15, perovskite, spinel, half and full
   Heusler), built as its primitive cell (1 to 14 atoms) with ``ase.spacegroup.crystal``.
2. Decoration: each site group takes a distinct element drawn uniformly from its pool
   (:data:`POOLS`): 43 metals for cation and intermetallic sites, 13 non-metals and metalloids
   for anion sites, 10 p-block elements for the Z sites of Heusler, AlB2 and A15 phases, and
   the metals with B, C, Si, Ge, As, Sb for elemental references; 59 elements in all
   (:data:`ELEMENTS`). Left out: H and the noble gases (molecular, or no compounds in these
   prototypes), the lanthanides and actinides (f-electron chemistry, where the PBE+U labels
   CHGNet learnt from are least settled), Tc and Po (radioactive), Hg and Tl (few compounds of
   these prototypes).
3. Volume: the cell is scaled so that the tightest pair of atoms touches, min over pairs
   d_ij / (r_i + r_j) = 1, with r the empirical atomic radii of pymatgen's
   ``Element.atomic_radius`` (Slater 1964; Na-Cl 2.80 Å, Mg-O 2.10 Å, Ga-As 2.45 Å against
   2.82, 2.11, 2.45 measured). An elemental reference takes its measured lattice constant from
   ``ase.data.reference_states`` where that is fcc, bcc, hcp or diamond, and the radius rule on
   a bcc lattice otherwise (Mn, Ga, In, Sn, Bi, B, As, Sb).
4. Supercell: N drawn uniformly over the feasible sizes in [4, 16] atoms, then one diagonal
   repeat of the primitive cell with exactly N atoms whose repeats differ by at most a factor 2.
5. Perturbation, one of three (probabilities 0.4, 0.3, 0.3):
   ``rattle`` (Boltzmann-like): T ~ U(300, 3000) K, every atom displaced by a Gaussian of
   σ = 0.05 Å·sqrt(T / 300 K); ``strain``: a symmetric strain whose 6 components are
   ~ N(0, 0.04), atoms moving with the cell, then a 300 K rattle (σ = 0.05 Å);
   ``md``: T ~ U(1000, 3000) K, Maxwell-Boltzmann velocities at T (no net momentum), then 10
   velocity-Verlet steps of 2 fs driven by CHGNet itself (its ASE calculator); the last frame is
   kept (NVE from the ideal crystal, so it ends near T/2).
6. Filter: candidates with d_min / d_0 < 0.6 are dropped before labelling, where d_min / d_0 is
   min over pairs of d_ij / (r_i + r_j) (periodic images included); labelled candidates with
   max_atoms |F| > 20 eV/Å are dropped after, as in the EMT set. Candidates are taken in order
   of ``i`` until ``n_structures`` pass. Measured on 1,000 structures (seed 0): 1,006
   candidates, none dropped by distance (the closest pair came to 0.73 of contact), 6 by force.
7. Labels: the candidates of each block of 16 (``i`` = 16b..16b+15) that pass the distance test
   go to ``CHGNet.predict_structure`` as one batch, so the batches, and with them every float,
   do not depend on the number of workers. Energy (eV) = CHGNet's eV/atom times the atom count;
   forces (eV/Å); stress (3×3, eV/Å^3) = CHGNet's GPa times ``ase.units.GPa``, the conversion
   of its own ASE calculator (``chgnet.model.dynamics.CHGNetCalculator``), so the ASE sign
   convention of the EMT set (positive under tension), symmetrised (CHGNet's asymmetry is
   float32 round-off, ~1e-8 eV/Å^3); magnetic moments (μB) in row ``data`` as ``magmoms``.

Row ``data`` also holds sid, candidate, prototype, formula, elements, perturbation, temperature
(K: the rattle's, or the MD's start), rattle_sigma (Å; 0 for ``md``), strain (6 Voigt
components; zero unless ``strain``) and d_min_ratio. The sidecar adds ``composition``
(structures and atoms per element, the number of distinct elements, prototypes, perturbations
and element counts per structure).

Cost (the sidecar records ``structures_per_s``): a batch of 16 structures takes about 2 s on one
busy CPU thread; an ``md`` candidate costs 10 more calls of 0.02 to 0.2 s (forces only), most of
the time. 1,000 structures (9.9 atoms on average, all 59 elements): 230 s with 2 workers on 2
cores shared with other work (4.35 structures/s).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
import warnings
from collections import Counter
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from msl.data import store

METALS = ("Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba", "Sc", "Ti", "V", "Cr", "Mn",
          "Fe", "Co", "Ni", "Cu", "Zn", "Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd", "Hf",
          "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Al", "Ga", "In", "Sn", "Pb", "Bi")
POOLS = {  # the elements a site group draws from
    "metal": METALS,
    "anion": ("C", "N", "O", "F", "P", "S", "Cl", "As", "Se", "Br", "Sb", "Te", "I"),
    "p-block": ("B", "Al", "Si", "Ga", "Ge", "As", "In", "Sn", "Sb", "Bi"),
    "element": METALS + ("B", "C", "Si", "Ge", "As", "Sb"),  # elemental references
}
ELEMENTS = tuple(sorted({e for pool in POOLS.values() for e in pool}, key=atomic_numbers.get))
CUBIC = (1, 1, 1, 90, 90, 90)
PROTOTYPES = {  # name: (space group, cell (a = 1), [(pool, Wyckoff position) per site group])
    "element": None,  # an elemental reference crystal (step 3)
    "rocksalt": (225, CUBIC, [("metal", (0, 0, 0)), ("anion", (.5, .5, .5))]),
    "cscl": (221, CUBIC, [("metal", (0, 0, 0)), ("metal", (.5, .5, .5))]),
    "zincblende": (216, CUBIC, [("metal", (0, 0, 0)), ("anion", (.25, .25, .25))]),
    "wurtzite": (186, (1, 1, 1.633, 90, 90, 120),
                 [("metal", (1 / 3, 2 / 3, 0)), ("anion", (1 / 3, 2 / 3, .375))]),
    "fluorite": (225, CUBIC, [("metal", (0, 0, 0)), ("anion", (.25, .25, .25))]),
    "rutile": (136, (1, 1, .644, 90, 90, 90), [("metal", (0, 0, 0)), ("anion", (.305, .305, 0))]),
    "nias": (194, (1, 1, 1.39, 90, 90, 120),
             [("metal", (0, 0, 0)), ("anion", (1 / 3, 2 / 3, .25))]),
    "cdi2": (164, (1, 1, 1.6, 90, 90, 120), [("metal", (0, 0, 0)), ("anion", (1 / 3, 2 / 3, .25))]),
    "alb2": (191, (1, 1, 1.08, 90, 90, 120),
             [("metal", (0, 0, 0)), ("p-block", (1 / 3, 2 / 3, .5))]),
    "pyrite": (205, CUBIC, [("metal", (0, 0, 0)), ("anion", (.385, .385, .385))]),
    "corundum": (167, (1, 1, 2.73, 90, 90, 120),
                 [("metal", (0, 0, .352)), ("anion", (.306, 0, .25))]),
    "l12": (221, CUBIC, [("metal", (0, .5, .5)), ("metal", (0, 0, 0))]),
    "a15": (223, CUBIC, [("metal", (.25, 0, .5)), ("p-block", (0, 0, 0))]),
    "perovskite": (221, CUBIC, [("metal", (0, 0, 0)), ("metal", (.5, .5, .5)),
                                ("anion", (.5, .5, 0))]),
    "spinel": (227, CUBIC, [("metal", (.125, .125, .125)), ("metal", (.5, .5, .5)),
                            ("anion", (.2625, .2625, .2625))]),  # origin choice 2
    "half-heusler": (216, CUBIC, [("metal", (0, 0, 0)), ("metal", (.5, .5, .5)),
                                  ("p-block", (.25, .25, .25))]),
    "heusler": (225, CUBIC, [("metal", (.25, .25, .25)), ("metal", (0, 0, 0)),
                             ("p-block", (.5, .5, .5))]),
}
PERTURBATIONS = ("rattle", "strain", "md")
RECIPE = {                      # the sampling recipe; any change here invalidates cached datasets
    "kind": "chgnet",
    "recipe_version": 1,
    "teacher": "CHGNet 0.3.0 weights (pip chgnet==0.4.2), CPU, float32",
    "radii": "pymatgen Element.atomic_radius",
    "min_atoms": 4,             # atoms per cell, inclusive range
    "max_atoms": 16,
    "max_repeat_ratio": 2,      # largest / smallest supercell repeat
    "perturbation_p": [0.4, 0.3, 0.3],  # rattle, strain, md
    "rattle_sigma_300k": 0.05,  # Å at 300 K, scales as sqrt(T / 300 K)
    "rattle_temperature_k": [300.0, 3000.0],
    "strain_std": 0.04,         # std of each symmetric strain component
    "md_temperature_k": [1000.0, 3000.0],
    "md_steps": 10,
    "md_timestep_fs": 2.0,
    "min_distance_ratio": 0.6,  # keep min d_ij / (r_i + r_j) >= this
    "max_force": 20.0,          # eV/Å, keep max |F| <= this
    "block": 16,                # candidates labelled as one batch (fixes the float round-off)
}
PACKAGES = ("msl", "chgnet", "torch", "pymatgen", "ase", "numpy", "matscipy", "lmdb")
_ACCEPTANCE = 0.95  # share of candidates passing the filter (sizes the first wave; 0.994 measured)


def recipe() -> dict:
    """The full recipe: :data:`RECIPE` with the element pools and the prototypes, as JSON
    reads them back (lists), so that a sidecar's settings compare equal."""
    return json.loads(json.dumps({**RECIPE, "pools": POOLS, "prototypes": PROTOTYPES}))


def _settings(n_structures: int, seed: int) -> dict:
    if int(n_structures) < 1:
        raise ValueError(f"n_structures must be >= 1, got {n_structures}")
    return {"generator": "msl.data.chgnet", "n_structures": int(n_structures), "seed": int(seed),
            **recipe()}


def require() -> None:
    """Raise ``ImportError`` naming the install command if the chgnet package is missing."""
    try:
        import chgnet.model  # noqa: F401
    except ImportError as err:
        raise ImportError("the 'chgnet' dataset kind needs the chgnet package: pip install "
                          "chgnet==0.4.2 (or `make install`, which installs requirements.lock)"
                          ) from err


@lru_cache(maxsize=None)
def model():
    """CHGNet with its shipped weights, on the CPU (loaded once per process, its banner muted)."""
    require()
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(verbose=False, use_device="cpu")


def calculator(task: str = "efsm"):
    """CHGNet's own ASE calculator (eV, eV/Å, eV/Å^3, μB) on :func:`model`; ``task="ef"``
    computes energy and forces only (the MD of step 5: a third cheaper than with stress)."""
    from chgnet.model.dynamics import CHGNetCalculator

    class Calculator(CHGNetCalculator):
        def calculate(self, atoms=None, properties=None, system_changes=None):
            super().calculate(atoms, properties, system_changes, task=task)

    with contextlib.redirect_stdout(io.StringIO()):
        return Calculator(model=model(), use_device="cpu")


@lru_cache(maxsize=None)
def _radius(symbol: str) -> float:
    from pymatgen.core import Element

    return float(Element(symbol).atomic_radius)


def contact_ratio(atoms, reach: float = 1.5) -> float:
    """min over pairs of d_ij / (r_i + r_j), periodic images included; ``reach`` if no pair is
    closer than that (pairs are searched out to 2 ``reach`` r_max)."""
    from matscipy.neighbours import neighbour_list

    radii = np.array([_radius(s) for s in atoms.get_chemical_symbols()])
    i, j, d = neighbour_list("ijd", atoms, 2 * reach * float(radii.max()))
    return float(min(reach, (d / (radii[i] + radii[j])).min())) if len(d) else reach


def _prototype(rng: np.random.Generator, name: str):
    """Steps 1-3: the decorated primitive cell of ``name`` at its radius-rule volume."""
    from ase.build import bulk
    from ase.data import reference_states
    from ase.spacegroup import crystal

    if name == "element":
        symbol = POOLS["element"][rng.integers(len(POOLS["element"]))]
        ref = reference_states[atomic_numbers[symbol]] or {}
        if ref.get("symmetry") in ("fcc", "bcc", "hcp", "diamond"):
            return bulk(symbol)  # the measured lattice
        atoms = bulk(symbol, "bcc", a=1.0)
    else:
        spacegroup, cell, sites = PROTOTYPES[name]
        symbols: list[str] = []
        for pool, _ in sites:
            options = [e for e in POOLS[pool] if e not in symbols]
            symbols.append(options[rng.integers(len(options))])
        atoms = crystal(symbols, [xyz for _, xyz in sites], spacegroup=spacegroup,
                        cellpar=list(cell), primitive_cell=True,
                        setting=2 if spacegroup == 227 else 1)
    # built at a = 1 Å (lattice vectors <= 1.1 Å): pairs out to 3 Å include the tightest one
    r_max = max(_radius(s) for s in atoms.get_chemical_symbols())
    atoms.set_cell(atoms.cell[:] / contact_ratio(atoms, reach=1.5 / r_max), scale_atoms=True)
    return atoms


@lru_cache(maxsize=None)
def _repeats(n_basis: int) -> dict:
    """Feasible diagonal repeats for each atom count N, in a fixed order (step 4)."""
    low, high, ratio = RECIPE["min_atoms"], RECIPE["max_atoms"], RECIPE["max_repeat_ratio"]
    r = range(1, high + 1)
    options: dict[int, list] = {}
    for reps in ((a, b, c) for a in r for b in r for c in r):
        n = n_basis * reps[0] * reps[1] * reps[2]
        if low <= n <= high and max(reps) <= ratio * min(reps):
            options.setdefault(n, []).append(reps)
    return dict(sorted(options.items()))


def _md(atoms, temperature: float, rng: np.random.Generator) -> None:
    """Step 5, ``md``: NVE from Maxwell-Boltzmann velocities at ``temperature``, CHGNet forces."""
    from ase import units
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calculator(task="ef")
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    VelocityVerlet(atoms, timestep=RECIPE["md_timestep_fs"] * units.fs).run(RECIPE["md_steps"])
    atoms.calc = None
    atoms.set_momenta(None)
    atoms.wrap()


def build(seed: int, i: int):
    """Steps 1-5 for candidate ``i``: an unlabelled structure and its provenance dict."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
    name = list(PROTOTYPES)[rng.integers(len(PROTOTYPES))]
    atoms = _prototype(rng, name)
    options = _repeats(len(atoms))
    n = list(options)[rng.integers(len(options))]
    atoms = atoms.repeat(options[n][rng.integers(len(options[n]))])

    perturbation = PERTURBATIONS[rng.choice(3, p=RECIPE["perturbation_p"])]
    strain, sigma = np.zeros(6), 0.0
    if perturbation == "md":
        temperature = float(rng.uniform(*RECIPE["md_temperature_k"]))
        _md(atoms, temperature, rng)
    else:
        temperature = 300.0  # the rattle that follows a strain
        if perturbation == "rattle":
            temperature = float(rng.uniform(*RECIPE["rattle_temperature_k"]))
        else:
            e = strain = rng.normal(0.0, RECIPE["strain_std"], 6)  # Voigt: xx yy zz yz xz xy
            matrix = np.array([[e[0], e[5], e[4]], [e[5], e[1], e[3]], [e[4], e[3], e[2]]])
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + matrix), scale_atoms=True)
        sigma = RECIPE["rattle_sigma_300k"] * math.sqrt(temperature / 300.0)
        atoms.positions += rng.normal(0.0, sigma, (len(atoms), 3))
    symbols = sorted(set(atoms.get_chemical_symbols()), key=atomic_numbers.get)
    info = {"prototype": name, "formula": atoms.get_chemical_formula(mode="metal"),
            "elements": symbols, "perturbation": perturbation, "temperature": temperature,
            "rattle_sigma": sigma, "strain": strain, "d_min_ratio": contact_ratio(atoms)}
    return atoms, info


def _predict(structures) -> list[dict]:
    """CHGNet's predictions for pymatgen ``structures`` in one batch (a list, even of one)."""
    if not structures:
        return []
    out = model().predict_structure(structures, batch_size=len(structures))
    return [out] if isinstance(out, dict) else out


@contextlib.contextmanager
def _one_thread():
    """torch on one thread (restored after), so that every worker sums in the same order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def label(seed: int, start: int, stop: int) -> list:
    """Build, filter and label candidates ``start..stop-1`` as one batch (steps 1-7):
    ``[(status, payload), ...]`` with status ``"ok"``, ``"distance"`` or ``"force"``."""
    from ase import units
    from pymatgen.io.ase import AseAtomsAdaptor

    with _one_thread(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Converting a tensor with requires_grad=True")
        built = [(i, *build(seed, i)) for i in range(start, stop)]
        spaced = [b for b in built if b[2]["d_min_ratio"] >= RECIPE["min_distance_ratio"]]
        predictions = _predict([AseAtomsAdaptor.get_structure(atoms) for _, atoms, _ in spaced])
    labelled = {}
    for (i, atoms, info), p in zip(spaced, predictions, strict=True):
        forces, stress = np.asarray(p["f"], dtype=float), np.asarray(p["s"], dtype=float)
        if np.linalg.norm(forces, axis=1).max() > RECIPE["max_force"]:
            labelled[i] = ("force", None)
            continue
        labelled[i] = ("ok", {
            "numbers": atoms.numbers, "positions": atoms.positions, "cell": atoms.cell[:],
            "energy": float(p["e"]) * len(atoms), "forces": forces,
            "stress": (stress + stress.T) / 2 * units.GPa,
            "info": {"candidate": i, **info},
            "data": {"magmoms": np.asarray(p["m"], dtype=float)}})
    return [labelled.get(i, ("distance", None)) for i in range(start, stop)]


def _counted(payloads, spread: dict):
    """Pass the payloads through; fill ``spread`` with the composition spread of those passed."""
    per_structure, per_atom, prototypes, perturbations, n_species = (Counter() for _ in range(5))
    try:
        for p in payloads:
            info = p["info"]
            per_structure.update(info["elements"])
            per_atom.update(chemical_symbols[z] for z in p["numbers"])
            prototypes[info["prototype"]] += 1
            perturbations[info["perturbation"]] += 1
            n_species[len(info["elements"])] += 1
            yield p
    finally:
        payloads.close()
        spread.update({
            "n_elements": len(per_structure),
            "structures_per_element": {e: per_structure[e] for e in ELEMENTS if e in per_structure},
            "atoms_per_element": {e: per_atom[e] for e in ELEMENTS if e in per_atom},
            "elements_per_structure": {str(k): v for k, v in sorted(n_species.items())},
            "prototypes": {k: prototypes[k] for k in PROTOTYPES if k in prototypes},
            "perturbations": {k: perturbations[k] for k in PERTURBATIONS if k in perturbations}})


def generate(path, n_structures: int, seed: int = 0, workers: int | None = None,
             progress: bool = True) -> Path:
    """Generate ``n_structures`` CHGNet-labelled crystals (module docstring) into ``path``.

    Writes an ASE database ``path`` (``.aselmdb``) and a sidecar ``<path>.json`` with the
    settings, counts, rejections, composition spread, throughput and package versions, atomically
    (:mod:`msl.data.store`). The output depends only on ``(n_structures, seed)``, not on
    ``workers`` (forked processes; default ``os.cpu_count()``). A missing chgnet package raises
    ``ImportError`` naming the install command before any work. Returns ``path``.
    """
    settings = _settings(n_structures, seed)
    require()
    workers = max(1, int(workers or os.cpu_count() or 1))
    tally, spread, t0 = {}, {}, time.perf_counter()
    payloads = store.accepted(partial(label, int(seed)), n_structures, workers, tally,
                              acceptance=_ACCEPTANCE, block=RECIPE["block"])
    n_atoms = store.write(path, _counted(payloads, spread), n_structures,
                          f"chgnet-crystals-seed{seed}", f"CHGNet crystals ({workers} workers)",
                          progress)
    store.write_sidecar(path, settings, n_structures, n_atoms, tally, ("distance", "force"),
                        workers, time.perf_counter() - t0, PACKAGES, composition=spread)
    return Path(path)


def embedded(n_structures: int, seed: int = 0, workers: int | None = None, cache_dir="data",
             progress: bool = True) -> Path:
    """``<cache_dir>/chgnet-crystals-n{n}-seed{seed}.aselmdb``, generated once (cached by size,
    seed and recipe like the EMT kinds: :func:`msl.data.store.cached`)."""
    settings = _settings(n_structures, seed)
    path = Path(cache_dir) / f"chgnet-crystals-n{int(n_structures)}-seed{int(seed)}.aselmdb"
    return store.cached(path, settings, lambda: generate(
        path, n_structures, seed=seed, workers=workers, progress=progress))
