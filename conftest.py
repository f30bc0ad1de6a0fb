"""Shared fixtures. Generated datasets and graph caches go to one folder per test session
(``MSL_DATA_DIR``), which notebook kernels started by nbval and papermill inherit."""

import os
import tempfile

import pytest

os.environ.setdefault("MSL_DATA_DIR", tempfile.mkdtemp(prefix="msl-test-data-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_pool():
    """Path of a small embedded dataset (generated once per session, then cached)."""
    from msl import data
    from msl.cell import data_dir

    return data.embedded(120, seed=0, cache_dir=data_dir(), progress=False)


@pytest.fixture(scope="session")
def tiny_vdos_pool():
    """Path of a small embedded dataset with vibrational spectra (``emt-vdos``)."""
    from msl import data
    from msl.cell import data_dir

    return data.embedded(60, seed=0, cache_dir=data_dir(), progress=False, kind="emt-vdos")
