"""The spectral pipeline end to end: emt-vdos data -> graphs with spectra -> spectral model ->
the target table's loss -> a record with spectrum and scalar metrics."""

import math

import numpy as np
import pytest

from msl import cell, config, targets


def tiny(**kw):
    base = dict(dataset="emt-vdos", pool_size=60, n_train=24, n_val=12, n_test=12, epochs=2,
                batch_size=8, targets="spectral", model="optimetal2b_spectral", size=1)
    return config.from_dict({**base, **kw})


@pytest.mark.parametrize("model", ["optimetal2b_spectral", "optimetal2b_tc_spectral",
                                   "optimetal3b_spectral"])
def test_spectral_cell_runs_and_records_spectrum_metrics(tiny_vdos_pool, tmp_path, model):
    rec = cell.run(tiny(model=model, record_dir=str(tmp_path)), progress=False)
    assert rec["status"] == "ok" and rec["task"] == "spectral"
    for key in ("val/loss", "val/spectrum_mae", "val/scalar_mae", "test/spectrum_mae"):
        assert math.isfinite(rec["metrics"][key]), key
    assert "val/energy_mae" not in rec["metrics"]
    assert rec["scales"]["spectrum_sigma"] > 0 and rec["scales"]["scalar_sigma"] > 0
    assert [t["target"] for t in rec["targets"]] == ["spectrum", "scalar"]


def test_spectral_training_lowers_the_validation_loss(tiny_vdos_pool):
    """A few epochs lower the validation loss below that of the first validation."""
    rec = cell.run(tiny(epochs=12, n_train=36, max_lr=5e-3), progress=False)
    first, best = rec["history"][0]["val/loss"], min(h["val/loss"] for h in rec["history"])
    assert best < first


def test_width_rule_rescales_the_peak_lr(tiny_vdos_pool):
    rec = cell.run(tiny(epochs=1, lr_gamma=1.0, lr_ref_params=1000, max_lr=1e-3), progress=False)
    assert rec["peak_lr"] == pytest.approx(1e-3 * 1000 / rec["n_params"])


def test_spectral_model_on_data_without_spectra_names_the_problem(tiny_pool, tmp_path):
    with pytest.raises(ValueError, match="has none"):
        cell.run(tiny(dataset="emt", pool_size=120, record_dir=str(tmp_path)), progress=False)


def test_potential_cannot_take_a_spectral_table():
    with pytest.raises(ValueError, match="cannot be learnt by a potential"):
        config.from_dict({"model": "optimetal2b", "targets": "spectral"})
    with pytest.raises(ValueError, match="cannot be learnt by a spectral"):
        config.from_dict({"model": "optimetal3b_spectral", "targets": "default"})


def test_nmae_is_scale_free():
    """Multiplying labels and predictions by 10 (and the sigma with them) leaves nmae unchanged."""
    import torch

    pred, true = torch.randn(5, 7), torch.randn(5, 7)
    a = targets.term_loss("nmae", pred, true, 2.0)
    b = targets.term_loss("nmae", 10 * pred, 10 * true, 20.0)
    assert float(a) == pytest.approx(float(b))
    true[0, 0] = float("nan")
    assert np.isfinite(float(targets.term_loss("mae", pred, true, 1.0)))
