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
from msl.fit.forms import BROKEN_POWER_LAW

D = np.array([2500, 5000, 10000, 20000, 40000, 80000, 160000.0])
LOSS_VS_D = {
    "2B-CGC": [1.5784, 1.3872, 1.2263, 1.0650, 0.8957, 0.7349, 0.5770],
    "2B-TC": [1.6528, 1.4581, 1.2758, 1.0476, 0.8683, 0.7145, 0.5679],
    "3B-TC": [1.4541, 1.2756, 1.1142, 0.9379, 0.7654, 0.6214, 0.4937],
}
N = {
    "2B-CGC": [278627, 585507, 1296035, 3104163, 8268707, 24790947, 82608035],
    "2B-TC": [278275, 583779, 1288483, 3072675, 8140195, 24271779, 80521123],
    "3B-TC": [291827, 635459, 1490147, 3869219, 11306147, 36895139, 130933667],
}
LOSS_VS_N = {
    "2B-CGC": [1.2932, 1.1907, 1.1333, 1.0955, 1.0590, 1.0374, 1.0206],
    "2B-TC": [1.2568, 1.1855, 1.1442, 1.0874, 1.0678, 1.0444, 1.0448],
    "3B-TC": [1.1199, 1.0696, 1.0272, 0.9653, 0.9440, 0.9249, 0.9279],
}
# Published (value, stderr) and AICc; Tab. 1 of the paper as reproduced in papers.md §2.8.
DATA_BROKEN = {
    "2B-CGC": dict(alpha_1=(0.15, 0.005), alpha_2=(0.42, 0.01), log10_x_c=4.72, aicc=-57.74),
    "2B-TC": dict(alpha_1=(0.18, 0.01), alpha_2=(0.39, 0.03), log10_x_c=4.62, aicc=-44.88),
    "3B-TC": dict(alpha_1=(0.17, 0.01), alpha_2=(0.38, 0.02), log10_x_c=4.43, aicc=-57.70),
}
PARAM_FLOOR = {
    "2B-CGC": dict(alpha=(0.53, 0.03), L_inf=(1.01, 0.005), log10_x0=4.40, aicc=-60.97),
    "2B-TC": dict(alpha=(0.58, 0.06), L_inf=(1.03, 0.01), log10_x0=4.33, aicc=-54.73),
    "3B-TC": dict(alpha=(0.41, 0.09), L_inf=(0.89, 0.02), log10_x0=3.95, aicc=-51.17),
}
DATA_SIMPLE = {"2B-CGC": (0.23, -36.20), "2B-TC": (0.24, -34.87), "3B-TC": (0.25, -39.91)}
PARAM_BROKEN_AICC = {"2B-CGC": -48.73, "2B-TC": -56.10, "3B-TC": -47.24}
MODELS = list(LOSS_VS_D)


def _agree(result, published):
    for name, spec in published.items():
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
