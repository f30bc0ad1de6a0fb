"""msl.published holds the numbers as papers.md prints them; msl.reanalysis builds the chapter's
tables from them (fits, agreement, asymptotes, extrapolation, the 2D-map check, BNSL)."""

import math

import numpy as np
import pytest

from msl import published, reanalysis


def test_published_scans_have_seven_points_and_falling_loss():
    for model in published.MODELS:
        for scan in reanalysis.SCANS:
            x, y = published.scan(scan, model)
            assert x.shape == y.shape == (7,)
            assert np.all(np.diff(x) > 0)
            assert y[-1] < y[0]
    for model, loss in published.GRID_LOSS_AT_D.items():
        assert loss.shape == published.WIDTHS.shape and model in published.MODELS


def test_published_scan_returns_copies_and_rejects_unknown_names():
    x, y = published.scan("data", "3B-TC")
    y[0] = -1.0
    assert published.DATA_SCAN_LOSS["3B-TC"][0] == 1.4541
    with pytest.raises(KeyError, match="unknown model"):
        published.scan("data", "4B")
    with pytest.raises(KeyError, match="unknown scan"):
        published.scan("compute", "2B-TC")


def test_published_fit_lookup_and_scales_as_printed():
    row = published.published_fit("data", "broken_power_law", "2B-CGC")
    assert row["aicc"] == -57.74
    assert math.isclose(math.log10(row["params"]["x_c"][0]), 4.72)
    assert math.isclose(math.log10(row["params"]["x_c"][1]), 3.33)
    assert published.published_fit("params", "bnsl_1", "2B-TC") is None
    assert published.published_fit("params", "power_law", "2B-TC")["note"] == "Unstable fit"


def test_agrees_uses_the_printing_resolution():
    assert reanalysis.agrees("alpha", 0.154, 0.0, 0.15, 0.0)        # within 2 x 0.005
    assert not reanalysis.agrees("alpha", 0.17, 0.001, 0.15, 0.0)
    assert reanalysis.agrees("alpha", 0.17, 0.001, 0.15, 0.01)
    assert reanalysis.agrees("alpha", 0.5, math.nan, 0.5, 0.1) is None
    assert reanalysis.agrees("x_c", 1.02e4, 0.0, 1.0e4, None)       # 10^0.005: 1.2% per sigma
    assert not reanalysis.agrees("x_c", 1.05e4, 0.0, 1.0e4, None)


def test_fit_forms_recovers_an_exact_broken_law():
    x = np.geomspace(1e3, 1e6, 9)
    y = (3e4 / x) ** 0.4 * (1 + 3e4 / x) ** (0.15 - 0.4)
    results = reanalysis.fit_forms(x, y)
    assert set(results) == set(reanalysis.FORMS)
    broken = results["broken_power_law"]
    assert broken.params["alpha_1"] == pytest.approx(0.15, abs=1e-4)
    assert broken.params["alpha_2"] == pytest.approx(0.4, abs=1e-4)
    assert broken.params["x_c"] == pytest.approx(3e4, rel=1e-3)


@pytest.fixture(scope="module")
def fits():
    return reanalysis.fit_all()


def test_ranking_matches_the_papers_choices(fits):
    table = reanalysis.ranking(fits)
    assert len(table) == len(published.MODELS) * 2 * len(reanalysis.FORMS)
    best = table[table["rank"] == 1].set_index(["model", "scan"])["form"]
    for model in published.MODELS:
        assert best[(model, "data")] == "broken_power_law"
        assert best[(model, "params")] == "power_law_floor"
    # our unweighted optimum has an AICc at most the published (weighted-fit) one (ours is
    # rounded to 1 decimal)
    both = table.dropna(subset=["published AICc"])
    assert (both["AICc"] <= both["published AICc"] + 0.05).all()
    assert (table["AICc"] == table["AICc"].round(1)).all()
    assert (table["weight"] == table["weight"].round(2)).all()


def test_comparison_has_every_published_parameter_of_our_forms(fits):
    table = reanalysis.comparison(fits)
    expected = sum(len(published.published_fit(s, f, m)["params"])
                   for m in published.MODELS for s in reanalysis.SCANS
                   for f in reanalysis.FORMS if published.published_fit(s, f, m))
    assert len(table) == expected
    tab1 = table[table["form"] == table["scan"].map(reanalysis.PAPER_FORM)]
    assert tab1["agree"].all()
    # ours: strings rounded to the standard error, never a scale printed to the unit (issue 9)
    row = table.set_index(["model", "scan", "form", "parameter"])
    assert row.loc[("2B-TC", "params", "broken_power_law", "x_c"), "ours"] == "7.4e6 ± 2.1e6"
    assert row.loc[("2B-CGC", "data", "broken_power_law", "alpha_1"), "ours"] == "0.154 ± 0.004"
    assert row.loc[("2B-CGC", "data", "broken_power_law", "x_c"), "published"] == (
        "10^4.72 ± 10^3.33")
    # a floor on its bound is undetermined, and not compared
    floor = row.loc[("2B-CGC", "data", "power_law_floor", "L_inf")]
    assert floor["ours"].startswith("undetermined (") and floor["agree"] is None


def test_asymptotes_are_log_space_lines_and_show_the_break():
    x, y = published.scan("data", "2B-CGC")
    first, last = reanalysis.asymptotes(x, y, 3)
    slope = np.polyfit(np.log10(x[:3]), np.log10(y[:3]), 1)[0]
    assert first.params["alpha"] == pytest.approx(-slope, rel=1e-6)
    assert last.params["alpha"] > first.params["alpha"]
    with pytest.raises(ValueError, match="n_points"):
        reanalysis.asymptotes(x, y, 7)
    table = reanalysis.asymptote_table()
    assert set(table[table["scan"] == "data"]["change"]) == {"steeper"}
    assert set(table[table["scan"] == "params"]["change"]) == {"flatter"}


def test_extrapolation_table_scores_every_form():
    table, runs = reanalysis.extrapolation_table(n_holdout=2)
    assert len(table) == len(runs) == len(published.MODELS) * 2 * len(reanalysis.FORMS)
    assert all(r.n_holdout == 2 and r.n_train == 5 for r in runs.values())
    assert (table["RMSLE held out"] >= table["RMSLE fit"]).all()


def test_published_map_reproduces_the_published_slices():
    n = published.PARAM_SCAN_N["3B-TC"]
    pred = reanalysis.map_prediction("3B-TC", n, np.full(n.size, 160000.0))
    assert pred.shape == n.shape and np.all(np.diff(pred) < 0)
    table = reanalysis.map_check()
    assert len(table) == 2 * 3
    assert (table["max |rel. error|"] < 0.1).all()


def test_bnsl_with_one_break_cannot_be_ranked_on_seven_points():
    table = reanalysis.bnsl_check()
    one = table[table["breaks"] == 1]
    assert np.isinf(one["AICc"]).all() and (one["poorly determined"] != "").all()
    zero = table[table["breaks"] == 0]
    assert np.isfinite(zero["AICc"]).all()
