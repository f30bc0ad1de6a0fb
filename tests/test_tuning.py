"""msl.tuning on handmade learning-rate scans."""

import pytest

from msl import convergence, grid, tuning
from msl import results as records

GRID = """study: lr
fixed: {n_train: 64, max_lr: 3.0e-3}
scans:
  lr_small: {axis: max_lr, max_lr: [1.0e-3, 3.0e-3, 1.0e-2], size: 0}
  lr_large: {axis: max_lr, max_lr: [1.0e-3, 3.0e-3, 1.0e-2], size: 3}
  params: {axis: size, size: [0, 1, 2, 3]}
"""
N = {0: 3361, 3: 30000}


def make(tmp_path, best):
    """Loss parabolic in log lr around ``best[size]``."""
    import math

    (tmp_path / "grid.yaml").write_text(GRID)
    g = grid.load(tmp_path)
    for cfg, _ in g.cells():
        loss = 1 + (math.log10(cfg.max_lr) - math.log10(best.get(cfg.size, 3e-3))) ** 2
        records.write(g.record_dir / f"{cfg.cell_id}.json", {
            "cell_id": cfg.cell_id, "status": "ok", "model": cfg.model, "size": cfg.size,
            "n_params": N.get(cfg.size, 5000), "n_train": cfg.n_train, "seed": cfg.seed,
            "steps": 10, "stop_reason": "patience", "converged": True, "metrics": {"val/loss": loss}})
    return g


def test_optima_and_a_fixed_rule_that_agrees(tmp_path):
    g = make(tmp_path, {0: 3e-3, 3: 3e-3})
    best = tuning.optima(convergence.frame(g), g)
    assert list(best["best max_lr"]) == [3e-3, 3e-3] and not best["on the edge"].any()
    assert tuning.rule(best) == pytest.approx(0.0, abs=1e-12)
    check = tuning.check_rule(best, {**g.fixed, **g.scans["params"]})
    assert check.agrees.all()


def test_a_fixed_rule_that_misses_the_large_rung(tmp_path):
    g = make(tmp_path, {0: 1e-2, 3: 1e-3})
    best = tuning.optima(convergence.frame(g), g)
    assert best["on the edge"].all()
    assert tuning.rule(best) == pytest.approx(1 / 0.95, rel=0.05)   # log(10)/log(30000/3361)
    check = tuning.check_rule(best, {"max_lr": 1e-2})
    assert list(check.agrees) == [True, False]
    width_rule = {"max_lr": 1e-2, "lr_gamma": tuning.rule(best), "lr_ref_params": 3361}
    assert tuning.check_rule(best, width_rule).agrees.all()


def test_a_scan_too_narrow_is_refused(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID.replace("[1.0e-3, 3.0e-3, 1.0e-2], size: 0",
                                                     "[1.0e-3, 3.0e-3], size: 0"))
    g = grid.load(tmp_path)
    with pytest.raises(ValueError, match="lr_small"):
        tuning.optima(convergence.frame(g), g)
