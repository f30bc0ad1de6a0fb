"""msl.convergence on a handmade study: checks, converged points, fits, predictions."""

import numpy as np
import pytest

from msl import convergence, grid
from msl import results as records

GRID = """study: handmade
fixed: {max_steps: 1000, eval_every: 10, patience: 3, schedule: wsd, seed: [0, 1, 2]}
scans:
  data: {axis: n_train, n_train: [20, 40, 80, 160, 320, 640, 1280], size: 0, budget_check: 2}
"""


def truth(d):
    return (1e4 / d) ** 0.3


def make_study(tmp_path, cap_ended=(), moved=None):
    """Records following L = (1e4/D)^0.3 with 2% seed noise; ``cap_ended`` lists D whose runs
    hit their cap; ``moved`` maps a D end to the relative change its 2x check shows."""
    (tmp_path / "grid.yaml").write_text(GRID)
    g = grid.load(tmp_path)
    rng = np.random.default_rng(0)
    moved = moved or {}
    for cfg, scans in g.cells():
        loss = truth(cfg.n_train) * (1 + 0.02 * rng.standard_normal())
        if scans == ("data/budget",):
            loss = loss * (1 + moved.get(cfg.n_train, 0.01))
        reason = "max_steps" if cfg.n_train in cap_ended and scans != ("data/budget",) else "patience"
        records.write(g.record_dir / f"{cfg.cell_id}.json", {
            "cell_id": cfg.cell_id, "status": "ok", "model": cfg.model, "size": cfg.size,
            "n_params": 5000, "n_train": cfg.n_train, "seed": cfg.seed, "steps": 500,
            "stop_reason": reason, "converged": reason == "patience",
            "metrics": {"val/loss": float(loss)}})
    return g


def test_all_converged_gives_a_fit_and_predictions(tmp_path):
    g = make_study(tmp_path)
    df = convergence.frame(g)
    checked = convergence.checks(df, g)
    assert len(checked) == 6 and checked.converged.all()  # 2 ends x 3 seeds
    pts = convergence.points(df, g, "data", checked)
    assert pts.converged.all() and len(pts) == 21
    result, why = convergence.fit_converged(pts)
    assert why == "" and result.params["alpha"] == pytest.approx(0.3, abs=0.03)
    table, why = convergence.predictions(pts)
    assert why == "" and list(table.x) == [640, 1280]
    assert table.inside.all() and (table["interval lo"] < table.predicted).all()
    assert "bootstrap over 3 seeds" in table["from"].iloc[0]
    assert convergence.verdict(checked).startswith("6 of 6 end-point checks converged")


def test_points_that_fail_are_left_out_and_named(tmp_path):
    g = make_study(tmp_path, cap_ended=(80, 160, 320), moved={1280: -0.2})
    df = convergence.frame(g)
    checked = convergence.checks(df, g)
    assert (~checked.converged).sum() == 3  # the large end, every seed
    pts = convergence.points(df, g, "data", checked)
    bad = pts[~pts.converged]
    assert set(bad.x) == {80, 160, 320, 1280}
    assert "ended by max_steps" in bad[bad.x == 80].why.iloc[0]
    assert "twice the budget moved it by -2" in bad[bad.x == 1280].why.iloc[0]
    result, why = convergence.fit_converged(pts)  # 3 converged points remain: no fit
    assert result is None and "only 3 converged point(s)" in why
    table, why = convergence.predictions(pts)
    assert table.empty and "needs at least 5" in why
    assert "data at n_train = 1280 (seed 0, -2" in convergence.verdict(checked)


def test_a_longer_run_that_ends_higher_is_not_a_failure_but_is_named(tmp_path):
    """One-sided: more training that ends 10% higher did not move the point down; the verdict
    still names it (the spread between trajectories)."""
    g = make_study(tmp_path, moved={1280: +0.10})
    df = convergence.frame(g)
    checked = convergence.checks(df, g)
    assert checked.converged.all()
    text = convergence.verdict(checked)
    assert text.startswith("6 of 6 end-point checks converged")
    assert "ended higher" in text and "n_train = 1280 (seed 1, +11%)" in text


def test_exponent_table_shows_fitted_or_why_not_and_published_as_printed(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    good = convergence.report(make_study(tmp_path / "a"))
    bad = convergence.report(make_study(tmp_path / "b", cap_ended=(80, 160, 320)))
    table = convergence.exponent_table({"good": good, "bad": bad},
                                       {"paper": {"alpha_D": 0.242, "alpha_N": 0.383}})
    assert table.loc["good", "alpha_D"] == good.fitted["data"][1].shown("alpha")
    assert " ± " in table.loc["good", "alpha_D"] and table.loc["good", "D range"] == "20 – 1,280"
    assert table.loc["bad", "alpha_D"].startswith("not fitted (only 4 converged point(s)")
    assert table.loc["good", "alpha_N"] == "no scan"
    assert table.loc["paper", "alpha_D"] == 0.242 and table.loc["paper", "alpha_N"] == 0.383
