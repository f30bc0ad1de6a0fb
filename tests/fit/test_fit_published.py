"""Re-fit the published mean losses of Großmann et al. (research/papers.md §2.5, §2.8).

The paper fitted the mean over 3 seeds *weighted by the seed spread*; papers.md gives the means
but only the range of the spreads (0.002-0.028), not the spread of each point. So these fits are
unweighted, and the published exponents cannot be required to the printed digits. What can be
required exactly:
* our fit is the global least-squares optimum, so its AICc (computed as the paper computes it,
  on unweighted linear residuals) is at most the published AICc, and close to it;
* the AICc of the published broken-law parameters, recomputed from papers.md's unrounded values,
  matches the printed AICc;
* exponents agree with the published ones within twice the published standard error.
"""

import math

import numpy as np
import pytest

import msl.fit as fit
from msl import published
from msl.fit.forms import BROKEN_POWER_LAW

# The published numbers live in msl.published (papers.md §2.5 and §2.8, with sources there).
D = published.DATA_SCAN_D
LOSS_VS_D = published.DATA_SCAN_LOSS
N = published.PARAM_SCAN_N
LOSS_VS_N = published.PARAM_SCAN_LOSS


def _table(scan, form):
    """{model: {param: (value, stderr), "log10_<scale>": log10 value, "aicc": AICc}}.

    Scales (x_c, x0) are compared in log10 only; their published standard errors are ignored.
    """
    out = {}
    for model, row in published.FITS[scan][form]["models"].items():
        entry = {}
        for name, (value, err) in row["params"].items():
            if name in ("x_c", "x0"):
                entry[f"log10_{name}"] = math.log10(value)
            else:
                entry[name] = (value, err)
        out[model] = {**entry, "aicc": row["aicc"]}
    return out


# Published (value, stderr) and AICc; Tab. 1 of the paper as reproduced in papers.md §2.8.
DATA_BROKEN = _table("data", "broken_power_law")
PARAM_FLOOR = _table("params", "power_law_floor")
DATA_SIMPLE = {m: (row["params"]["alpha"][0], row["aicc"])
               for m, row in published.FITS["data"]["power_law"]["models"].items()}
PARAM_BROKEN_AICC = {m: row["aicc"]
                     for m, row in published.FITS["params"]["broken_power_law"]["models"].items()}
MODELS = list(published.MODELS)


def _agree(result, row):
    for name, spec in row.items():
        if isinstance(spec, tuple):
            value, err = spec
            assert abs(result.params[name] - value) <= 2 * max(err, 0.005), (name, result)
        elif name.startswith("log10_"):
            assert abs(math.log10(result.params[name[6:]]) - spec) <= 0.2, (name, result)


@pytest.mark.parametrize("model", MODELS)
def test_fit_published_data_scaling_broken(model):
    result = fit.broken_power_law(D, LOSS_VS_D[model])
    pub = DATA_BROKEN[model]
    _agree(result, pub)
    assert pub["aicc"] - 4.0 <= result.aicc <= pub["aicc"] + 1e-6


@pytest.mark.parametrize("model", MODELS)
def test_fit_published_parameter_scaling_floor(model):
    result = fit.power_law_floor(N[model], LOSS_VS_N[model])
    pub = PARAM_FLOOR[model]
    _agree(result, pub)
    assert pub["aicc"] - 4.0 <= result.aicc <= pub["aicc"] + 1e-6


@pytest.mark.parametrize("model", MODELS)
def test_fit_published_simple_and_broken_aicc_bounds(model):
    simple = fit.power_law(D, LOSS_VS_D[model])
    alpha, aicc = DATA_SIMPLE[model]
    assert abs(simple.params["alpha"] - alpha) <= 0.01
    assert aicc - 6.0 <= simple.aicc <= aicc + 1e-6
    broken_n = fit.broken_power_law(N[model], LOSS_VS_N[model])
    assert PARAM_BROKEN_AICC[model] - 4.0 <= broken_n.aicc <= PARAM_BROKEN_AICC[model] + 1e-6


def test_fit_published_aicc_recomputed_from_unrounded_parameters():
    """papers.md §2.7: 2B-CGC data fit alpha_1 = 0.154, alpha_2 = 0.422, D_c = 52,352."""
    theta = np.array([0.154, 0.422, np.log(52352.0)])
    y = np.array(LOSS_VS_D["2B-CGC"])
    rss = float(np.sum((BROKEN_POWER_LAW.predict(theta, D[:, None]) - y) ** 2))
    assert abs(fit.aicc(rss, 7, 3) - DATA_BROKEN["2B-CGC"]["aicc"]) < 0.5


def test_fit_published_model_choice():
    """AICc picks the broken law for data scaling and the floor for parameter scaling (CGC, 3B).

    For 2B-TC the paper (weighted) prefers the broken law by 1.4; unweighted the two are within 2
    of each other, i.e. not distinguishable, which is what is asserted.
    """
    for model in MODELS:
        data = fit.select([fit.power_law(D, LOSS_VS_D[model]),
                           fit.broken_power_law(D, LOSS_VS_D[model])])
        assert data[0].result.form == "broken_power_law"
        params = fit.select([fit.power_law_floor(N[model], LOSS_VS_N[model]),
                             fit.broken_power_law(N[model], LOSS_VS_N[model])])
        if model == "2B-TC":
            assert params[1].delta_aicc < 2.0
        else:
            assert params[0].result.form == "power_law_floor"


@pytest.mark.skip(reason="papers.md gives only the D = 160k row of the 2D grid "
                         "(scaling_grid_results.json is not reproduced), so Tab. 2's 2D "
                         "Kaplan-type fit cannot be re-fitted")
def test_fit_published_2d_kaplan_map():
    pass


@pytest.mark.skip(reason="Trikha et al. give fitted constants (papers.md §1.6) but no losses; "
                         "the Chinchilla and Epoch data (anchors.md §2) are not in papers.md "
                         "and Epoch's CSV has no licence")
def test_fit_published_trikha_and_chinchilla():
    pass
