"""The scaling figures draw what they claim: points, fit lines, bands, envelope, map cells."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import msl.fit as fit  # noqa: E402
from msl.plot import scaling  # noqa: E402

RNG = np.random.default_rng(0)


def test_fit_plot_loglog_with_band(tmp_path):
    x = np.geomspace(2.5e3, 1.6e5, 7)
    y = (5e4 / x) ** 0.42 * (1 + 5e4 / x) ** (0.15 - 0.42) * (1 + 0.004 * RNG.standard_normal(7))
    result = fit.broken_power_law(x, y, sigma=0.01 * y)
    ax = Figure().subplots()
    scaling.loglog(ax, x, y, yerr=0.01 * y, fit=result, label="2B-CGC", xlabel=scaling.D_LABEL)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "D (training structures)"
    assert len(ax.collections) >= 1  # the band
    lo, hi = result.band(x)
    assert np.all(lo <= result.predict(x)) and np.all(result.predict(x) <= hi)
    boot = result.bootstrap(n=50, seed=1)
    scaling.loglog(ax, x, y, fit=boot, extend=2.0)
    ax.figure.savefig(tmp_path / "loglog.png")


def test_fit_plot_map_2d_panels():
    n, d = [a.ravel() for a in np.meshgrid(np.geomspace(3e5, 8e7, 5),
                                           np.geomspace(2.5e3, 1.6e5, 4))]
    y = ((2e5 / n) ** (0.3 / 0.25) + 2e4 / d) ** 0.25 * (1 + 0.005 * RNG.standard_normal(n.size))
    result = fit.kaplan_2d(n, d, y)
    fig = scaling.map_2d(n[:-1], d[:-1], y[:-1], fit=result, loss_label="val loss")
    axes = fig.axes
    assert len(axes) == 6  # three panels, three colour bars
    assert axes[0].get_xlabel() == scaling.N_LABEL and axes[1].get_xlabel() == scaling.D_LABEL
    mesh = axes[2].collections[0]
    assert np.ma.count_masked(mesh.get_array()) == 1  # the missing cell stays blank


def test_fit_plot_frontier_envelope():
    flops = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    loss = np.array([5.0, 4.0, 4.5, 3.0, 3.5])
    assert list(scaling.lower_envelope(flops, loss, convex=False)) == [0, 1, 3]
    assert list(scaling.lower_envelope(flops, loss)) == [0, 3]  # (2, 4) lies above in log-log
    n = np.repeat(np.geomspace(1e6, 1e8, 4), 6)
    d = np.tile(np.geomspace(1e4, 1e7, 6), 4)
    y = 1.7 + 400 * n**-0.34 + 400 * d**-0.28
    result = fit.chinchilla(n, d, y, bootstrap=30,
                            starts=[[0.5, 6.0, 6.0, 0.3, 0.3], [0.0, 5.0, 5.0, 0.5, 0.5]])
    ax = Figure().subplots()
    scaling.frontier(ax, 6 * n * d, y, groups=n, fit=result)
    assert ax.get_xlabel() == "C (training FLOPs)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "lower envelope" in labels and "fitted L_opt(C)" in labels


def test_plain_y_ticks_labels_log_axes_with_plain_numbers():
    import matplotlib.pyplot as plt

    from msl.plot import scaling

    fig, ax = plt.subplots()
    ax.set_yscale("log")
    scaling.plain_y_ticks(ax)
    assert ax.yaxis.get_major_formatter()(0.5, 0) == "0.5"
    assert ax.yaxis.get_minor_formatter()(0.7, 0) == "0.7"
    plt.close(fig)
