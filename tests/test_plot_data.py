import numpy as np

from msl import data
from msl.plot import data as data_plots
from msl.plot.training import loss_curve


def test_overview_and_summary_of_a_real_pool(tiny_pool):
    structures = data.read(tiny_pool)
    fig = data_plots.overview(structures)
    assert len(fig.axes) == 6
    summary = data_plots.summary(structures)
    assert summary["structures"] == "120"
    rms = float(summary["force component"].split()[1])
    assert np.isclose(rms, np.sqrt(np.mean(structures.forces ** 2)), rtol=1e-3)


def test_loss_curve_marks_the_best_epoch():
    record = {"model": "optimetal2b", "size": 0, "n_train": 10, "best_epoch": 2,
              "history": [{"epoch": e, "train/loss": 1.0 / e, "val/loss": 1.2 / e} for e in (1, 2, 3)]}
    ax = loss_curve(record)
    assert len(ax.lines) == 3 and ax.get_yscale() == "log"
