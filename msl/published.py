"""Published numbers of other scaling-law studies, as plain data with their sources.

Nothing here fits or computes; ``msl.reanalysis`` and ``tests/fit/test_fit_published.py`` read it.
Every number is copied from ``shared/research/papers.md`` (the project's research notes), which
in turn took them from the papers, their repositories and blog posts; the section is named at
each table. Names follow ``msl.fit``: N = parameters (``n_params``), D = training structures
(``n_train``), L = loss; fitted parameters carry ``msl.fit``'s names (``alpha``, ``x0``,
``L_inf``, ``alpha_1``, ``alpha_2``, ``x_c``) so that a published row and our fit line up.

Großmann et al. 2026, "Broken neural scaling laws in materials science" (arXiv 2602.05702;
repository MaxGrossmann/optimetal, ``research/scaling_data/``):

* Models: OptiMetal2B with CGConv message passing (``2B-CGC``), OptiMetal2B with
  TransformerConv (``2B-TC``), OptiMetal3B with three-body messages and TransformerConv
  (``3B-TC``).
* Loss L_val: the validation loss of the training objective, MAE over the 4002 numbers of the
  interband dielectric function (Re and Im of eps(omega) on 2001 frequencies, 0 to 20 eV) plus
  the MAE of the Drude frequency in eV (papers.md §2.2, §2.4). Dimensionless as printed (eps is
  dimensionless; the Drude term is in eV and added as a number). Measured on the full
  validation split of 20,179 materials. Every loss below is the **mean over 3 seeds**; the seed
  standard deviations, which the paper used as fit weights, are not in papers.md (only their
  range, ``SEED_STD_RANGE``).
* Published fits: ``scipy.optimize.curve_fit`` in linear space on the seed means weighted by the
  seed spread; AICc on unweighted residuals (papers.md §2.7). Scales were printed as
  ``10^a ± 10^b``: stored here as value 10^a and standard error 10^b. A standard error printed
  as ``0.00`` is stored as 0.0 and means "below 0.005" (``PRINTED_RESOLUTION``).
"""

from __future__ import annotations

import numpy as np

MODELS = ("2B-CGC", "2B-TC", "3B-TC")
LOSS = ("L_val: validation MAE of the interband dielectric function (Re and Im, 2001 "
        "frequencies) plus MAE of the Drude frequency (eV); mean over 3 seeds")
SEED_STD_RANGE = (0.002, 0.028)  # papers.md §2.5: the spread of each point is not given
PRINTED_RESOLUTION = 0.005  # half the last printed digit of the fit tables (two decimals)

# --- Großmann et al., 1D data scan ("hestness"), papers.md §2.5 ----------------------------------
# d_h = 256 (N ~ 8-11M; the N of the d_h = 256 rung of the parameter scan), 3 seeds per point.
# Subsets of the 160,728 training materials drawn with random.Random(42).sample (§2.1).
DATA_SCAN_WIDTH = 256
DATA_SCAN_D = np.array([2500, 5000, 10000, 20000, 40000, 80000, 160000], dtype=float)
DATA_SCAN_LOSS = {  # research/scaling_data/scaling_results.json, mean L_val over 3 seeds
    "2B-CGC": np.array([1.5784, 1.3872, 1.2263, 1.0650, 0.8957, 0.7349, 0.5770]),
    "2B-TC": np.array([1.6528, 1.4581, 1.2758, 1.0476, 0.8683, 0.7145, 0.5679]),
    "3B-TC": np.array([1.4541, 1.2756, 1.1142, 0.9379, 0.7654, 0.6214, 0.4937]),
}

# --- Großmann et al., 1D parameter scan ("kaplan"), papers.md §2.5 -------------------------------
# Width ladder d_h (spectra_dim = 4 d_h) at D = 20,000, 3 seeds. N is the measured parameter count
# (the paper's x for parameter scaling), including embeddings and heads.
PARAM_SCAN_D = 20000
WIDTHS = np.array([16, 32, 64, 128, 256, 512, 1024])
PARAM_SCAN_N = {
    "2B-CGC": np.array([278627, 585507, 1296035, 3104163, 8268707, 24790947, 82608035], float),
    "2B-TC": np.array([278275, 583779, 1288483, 3072675, 8140195, 24271779, 80521123], float),
    "3B-TC": np.array([291827, 635459, 1490147, 3869219, 11306147, 36895139, 130933667], float),
}
PARAM_SCAN_LOSS = {  # mean L_val over 3 seeds, one per width above
    "2B-CGC": np.array([1.2932, 1.1907, 1.1333, 1.0955, 1.0590, 1.0374, 1.0206]),
    "2B-TC": np.array([1.2568, 1.1855, 1.1442, 1.0874, 1.0678, 1.0444, 1.0448]),
    "3B-TC": np.array([1.1199, 1.0696, 1.0272, 0.9653, 0.9440, 0.9249, 0.9279]),
}

# --- Großmann et al., 2D grid, papers.md §2.5 ----------------------------------------------------
# 7 D x 7 widths x 3 seeds for 2B-TC and 3B-TC; papers.md reproduces only the D = 160,000 row
# (scaling_grid_results.json is not in the notes). Widths as ``WIDTHS``; we assume the same widths
# give the same N as in the parameter scan (same architecture and config), which papers.md does
# not state.
GRID_D = 160000
GRID_LOSS_AT_D = {
    "2B-TC": np.array([1.069, 0.853, 0.711, 0.625, 0.573, 0.536, 0.512]),
    "3B-TC": np.array([0.881, 0.720, 0.609, 0.535, 0.489, 0.466, 0.453]),
}

# --- Großmann et al., fitted 1D laws, papers.md §2.8 ---------------------------------------------
# FITS[scan][form] = {"source": ..., "models": {model: {"params": {name: (value, stderr)},
#                                                       "aicc": float}}}
# stderr None: printed without an error. "params" empty and "note": the paper reports no fit.
# "broken_power_law_amplitude" is A times the broken law (a form msl.fit does not fit).
_E = 10.0  # scales printed as 10^a ± 10^b
FITS = {
    "data": {
        "broken_power_law": {
            "source": "Tab. 1, top (probably): research/scaling_data/scaling/"
                      "val_loss_scaling_laws.txt; papers.md §2.8",
            "models": {
                "2B-CGC": {"params": {"alpha_1": (0.15, 0.0), "alpha_2": (0.42, 0.01),
                                      "x_c": (_E ** 4.72, _E ** 3.33)}, "aicc": -57.74},
                "2B-TC": {"params": {"alpha_1": (0.18, 0.01), "alpha_2": (0.39, 0.03),
                                     "x_c": (_E ** 4.62, _E ** 3.62)}, "aicc": -44.88},
                "3B-TC": {"params": {"alpha_1": (0.17, 0.01), "alpha_2": (0.38, 0.02),
                                     "x_c": (_E ** 4.43, _E ** 3.25)}, "aicc": -57.70},
            },
        },
        "power_law": {
            "source": "SI (probably), repo tables; papers.md §2.8 'Other fits'",
            "models": {
                "2B-CGC": {"params": {"alpha": (0.23, None), "x0": (_E ** 4.29, None)},
                           "aicc": -36.20},
                "2B-TC": {"params": {"alpha": (0.24, None), "x0": (_E ** 4.29, None)},
                          "aicc": -34.87},
                "3B-TC": {"params": {"alpha": (0.25, None), "x0": (_E ** 4.10, None)},
                          "aicc": -39.91},
            },
        },
        "power_law_floor": {
            "source": "SI (probably); papers.md §2.8 'Other fits' (L_inf printed as 0.00)",
            "models": {
                "2B-CGC": {"params": {"alpha": (0.23, None), "L_inf": (0.0, None)},
                           "aicc": -29.20},
                "2B-TC": {"params": {"alpha": (0.24, None), "L_inf": (0.0, None)},
                          "aicc": -27.87},
                "3B-TC": {"params": {"alpha": (0.25, None), "L_inf": (0.0, None)},
                          "aicc": -32.91},
            },
        },
        "broken_power_law_amplitude": {
            "source": "SI (probably); papers.md §2.8 'Other fits'",
            "models": {
                "2B-CGC": {"params": {"alpha_1": (0.16, None), "alpha_2": (0.51, None),
                                      "x_c": (_E ** 5.00, None), "A": (0.87, None)},
                           "aicc": -49.89},
                "2B-TC": {"params": {"alpha_1": (0.11, None), "alpha_2": (0.32, None),
                                     "x_c": (_E ** 3.87, None), "A": (1.55, None)},
                          "aicc": -38.72},
                "3B-TC": {"params": {"alpha_1": (0.12, None), "alpha_2": (0.34, None),
                                     "x_c": (_E ** 4.03, None), "A": (1.27, None)},
                          "aicc": -48.48},
            },
        },
    },
    "params": {
        "power_law_floor": {
            "source": "Tab. 1, bottom (probably): research/scaling_data/scaling/"
                      "val_loss_scaling_laws.txt; papers.md §2.8",
            "models": {
                "2B-CGC": {"params": {"alpha": (0.53, 0.03), "x0": (_E ** 4.40, _E ** 3.46),
                                      "L_inf": (1.01, 0.0)}, "aicc": -60.97},
                "2B-TC": {"params": {"alpha": (0.58, 0.06), "x0": (_E ** 4.33, _E ** 3.77),
                                     "L_inf": (1.03, 0.01)}, "aicc": -54.73},
                "3B-TC": {"params": {"alpha": (0.41, 0.09), "x0": (_E ** 3.95, _E ** 3.78),
                                     "L_inf": (0.89, 0.02)}, "aicc": -51.17},
            },
        },
        "broken_power_law": {
            "source": "SI (probably); papers.md §2.8 'Other fits'",
            "models": {
                "2B-CGC": {"params": {"alpha_1": (0.09, None), "alpha_2": (-0.01, None),
                                      "x_c": (_E ** 6.60, None)}, "aicc": -48.73},
                "2B-TC": {"params": {"alpha_1": (0.07, None), "alpha_2": (-0.01, None),
                                     "x_c": (_E ** 6.79, None)}, "aicc": -56.10},
                "3B-TC": {"params": {"alpha_1": (0.12, None), "alpha_2": (0.02, None),
                                     "x_c": (_E ** 5.74, None)}, "aicc": -47.24},
            },
        },
        "broken_power_law_amplitude": {
            "source": "SI (probably); papers.md §2.8 'Other fits' (AICc only)",
            "models": {m: {"params": {}, "aicc": a}
                       for m, a in zip(MODELS, (-50.34, -44.71, -47.04))},
        },
        "power_law": {
            "source": "SI (probably); papers.md §2.8: printed as 'Unstable fit'",
            "models": {m: {"params": {}, "aicc": None, "note": "Unstable fit"} for m in MODELS},
        },
    },
}

# --- Großmann et al., 2D maps, papers.md §2.6 and §2.8 -------------------------------------------
# Kaplan-type map broken in D (msl.fit.kaplan_2d(broken=True)), Tab. 2 (probably):
#   L = [(N_c/N)^(alpha_N/alpha_D2) + (D_c/D)(1 + D_c/D)^(alpha_D1/alpha_D2 - 1)]^alpha_D2
# Hoffmann-type: L = L0 + (N_c/N)^alpha_N + (D_c/D)^alpha_D2 (1 + D_c/D)^(alpha_D1 - alpha_D2).
MAPS = {
    "kaplan_2d_broken": {
        "source": "Tab. 2 (probably): research/scaling_data/scaling_grid/"
                  "kaplan_val_loss_scaling_fits.txt; papers.md §2.8",
        "models": {
            "2B-TC": {"params": {"alpha_N": (0.30, 0.01), "alpha_D1": (0.20, 0.0),
                                 "alpha_D2": (0.37, 0.0), "N_c": (_E ** 5.36, _E ** 3.64),
                                 "D_c": (_E ** 4.51, _E ** 2.61)}, "aicc": -344.50},
            "3B-TC": {"params": {"alpha_N": (0.33, 0.0), "alpha_D1": (0.16, 0.0),
                                 "alpha_D2": (0.46, 0.0), "N_c": (_E ** 5.14, _E ** 3.40),
                                 "D_c": (_E ** 4.47, _E ** 2.57)}, "aicc": -359.55},
        },
    },
    "hoffmann_2d_broken": {
        "source": "SI (probably); papers.md §2.8 'Other fits'",
        "models": {
            "2B-TC": {"params": {"alpha_N": (0.43, None), "alpha_D1": (0.26, None),
                                 "alpha_D2": (0.31, None), "N_c": (_E ** 4.38, None),
                                 "D_c": (_E ** 4.00, None), "L0": (0.0, None)},
                      "aicc": -253.68},
            "3B-TC": {"params": {"alpha_N": (0.77, None), "alpha_D1": (0.13, None),
                                 "alpha_D2": (0.61, None), "N_c": (_E ** 4.86, None),
                                 "D_c": (_E ** 4.12, None), "L0": (0.0, None)},
                      "aicc": -285.21},
        },
    },
}

# --- Other published exponents, papers.md §1.6 and §3 --------------------------------------------
# Trikha et al. 2025 (arXiv 2509.21811), EquiformerV2 on OMat24, from the authors' blog post
# (https://akshaytrikha.github.io/research/2025/09/25/scaling.html): L = a X^(-beta). The loss
# (probably the total validation loss), the units of C (probably FLOPs), the fit method and the
# number of points are not stated; no uncertainties. The transformer's laws were "not clean enough".
TRIKHA_EQV2 = {
    "params": {"a": 7.76e2, "beta": 0.383},   # X = P, parameters
    "compute": {"a": 4.99e5, "beta": 0.339},  # X = C, compute (units not found)
    "data": {"a": 6.47e1, "beta": 0.242},     # X = D, training data
}
# Frey et al. 2023, "Neural scaling of deep chemical models", Nat. Mach. Intell. 5, 1297 (abstract):
# L = alpha R^(-beta) with R the resource; no uncertainties in the abstract.
FREY_EXPONENTS = {
    "ChemGPT (chemistry LLM, largest dataset)": 0.17,
    "equivariant GNN interatomic potentials": 0.26,
}


def scan(name: str, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, mean loss) of Großmann et al.'s scan ``"data"`` (x = D) or ``"params"`` (x = N)."""
    if model not in MODELS:
        raise KeyError(f"unknown model {model!r}; known: {MODELS}")
    if name == "data":
        return DATA_SCAN_D.copy(), DATA_SCAN_LOSS[model].copy()
    if name == "params":
        return PARAM_SCAN_N[model].copy(), PARAM_SCAN_LOSS[model].copy()
    raise KeyError(f"unknown scan {name!r}; known: 'data', 'params'")


def published_fit(scan_name: str, form: str, model: str) -> dict | None:
    """The published row {"params", "aicc"} of ``form`` on a scan, or None if none was printed."""
    table = FITS.get(scan_name, {}).get(form)
    return None if table is None else table["models"].get(model)
