"""The analysis reads only a grid and records: synthetic records with a known law are recovered."""

import numpy as np
import pytest

from msl import analysis, grid, results

GRID = """
fixed: {epochs: 10, pool_size: 5000}
scans:
  data: {axis: n_train, n_train: [50, 100, 200, 400, 800], size: 1, budget_check: 2}
"""


def make_study(tmp_path, alpha=0.4, seeds=(0,), noise=0.0, longer=1.0):
    (tmp_path / "grid.yaml").write_text(GRID.replace("size: 1", "size: 1, seed: " + str(list(seeds))))
    g = grid.load(tmp_path)
    rng = np.random.default_rng(0)
    for cfg, scans in g.cells():
        loss = (30.0 / cfg.n_train) ** alpha * (1 + noise * rng.standard_normal())
        if scans == ("data/budget",):
            loss *= longer
        results.write(g.record_dir / f"{cfg.cell_id}.json", {
            "cell_id": cfg.cell_id, "status": "ok", "model": cfg.model, "size": cfg.size,
            "n_params": 1000, "n_train": cfg.n_train, "seed": cfg.seed, "epochs": cfg.epochs,
            "metrics": {"val/loss": loss}})
    return g


def test_fit_recovers_exponent_of_synthetic_records(tmp_path):
    g = make_study(tmp_path, alpha=0.4)
    df = analysis.table(g)
    assert len(df) == 5 + 2
    result = analysis.fit_scan(df, g, "data")
    assert result.alpha[0] == pytest.approx(0.4, rel=1e-6)
    assert list(result.x) == [50, 100, 200, 400, 800]


def test_seed_spread_becomes_sigma(tmp_path):
    g = make_study(tmp_path, alpha=0.3, seeds=(0, 1, 2), noise=0.05)
    result = analysis.fit_scan(analysis.table(g), g, "data")
    assert result.sigma is not None and np.all(result.sigma > 0)
    assert result.alpha[0] == pytest.approx(0.3, abs=4 * result.alpha[1] + 0.02)


def test_fit_needs_two_finished_points(tmp_path):
    g = make_study(tmp_path)
    df = analysis.table(g)
    df.loc[df.n_train != 50, "status"] = "failed"
    with pytest.raises(ValueError, match="1 finished point"):
        analysis.fit_scan(df, g, "data")


def test_break_verdict_names_no_digits_of_a_break_outside_the_data(tmp_path):
    g = make_study(tmp_path, alpha=0.4, noise=0.01)  # a power law: no break in the data
    forms = analysis.fit_forms(analysis.table(g), g, "data")
    broken = forms["fits"]["broken_power_law"]
    assert "x_c" in broken.undetermined
    text = analysis.break_verdict(forms)
    assert "no break is located in the measured range (50 to 800)" in text
    assert "D_c undetermined (" in text
    for name in ("x_c", "alpha_1", "alpha_2"):
        if name in broken.undetermined:
            value = broken.params[name]
            assert all(d not in text for d in (f"{value:.2f}", f"{value:.3g}", f"{value:.2e}"))
    assert "fitted floor L_inf undetermined (" in analysis.saturation_verdict(forms)
