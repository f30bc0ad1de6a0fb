"""The command line: bad input exits non-zero with a message naming the bad value."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def msl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "msl.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("args, word", [
    (["train", "--model", "nonesuch"], "nonesuch"),
    (["train", "--max-lr", "-0.001"], "max_lr"),
    (["train", "--max-lr", "inf"], "max_lr must be a finite number, got inf"),
    (["train", "--grad-clip", "nan"], "grad_clip must be a finite number, got nan"),
    (["train", "--size", "42"], "42"),
    (["train", "--data-path", "/no/such/file.aselmdb"], "/no/such/file.aselmdb"),
    (["sweep", "/no/such/grid.yaml"], "/no/such/grid.yaml"),
])
def test_bad_input_exits_2_naming_the_value(args, word, tmp_path):
    out = msl(*args, "--record-dir", str(tmp_path)) if args[0] == "train" else msl(*args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("msl: error:") and word in out.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_train_command_writes_the_same_record_as_the_notebook_path(tmp_path, tiny_pool):
    out = msl("train", "--pool-size", "120", "--n-train", "16", "--n-val", "16", "--n-test", "16",
              "--epochs", "1", "--batch-size", "8", "--record-dir", str(tmp_path), "--quiet")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    record = json.loads((tmp_path / f"{summary['cell_id']}.json").read_text())
    assert record["status"] == "ok" and record["metrics"] == summary["metrics"]


def test_corrupt_dataset_file_exits_2_naming_it(tmp_path):
    bad = tmp_path / "broken.aselmdb"
    bad.write_bytes(b"\x00not an lmdb file\xff" * 64)
    records = tmp_path / "records"
    out = msl("train", "--data-path", str(bad), "--record-dir", str(records))
    assert out.returncode == 2 and "broken.aselmdb" in out.stderr, out.stderr
    assert not records.exists()


def test_dataset_with_nan_energies_exits_2_naming_file_and_structure(tmp_path):
    """An extxyz whose every energy is NaN used to train and end as ``diverged`` at step 0."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for seed in range(8):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = SinglePointCalculator(atoms, energy=float("nan"), forces=np.zeros((4, 3)))
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames)
    records = tmp_path / "records"
    out = msl("train", "--data-path", str(tmp_path / "data.extxyz"), "--n-train", "2",
              "--n-val", "2", "--n-test", "2", "--record-dir", str(records), "--quiet")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("msl: error:")
    assert "data.extxyz: structure 0 has energy nan" in out.stderr, out.stderr
    assert not records.exists() and not (tmp_path / "checkpoints").exists()


# --- msl sweep / msl status: executors, Slurm options, status, any working directory ---------

FIXTURE_GRID = Path(__file__).parent / "fixtures" / "study" / "grid.yaml"


@pytest.fixture
def study(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(FIXTURE_GRID, folder / "grid.yaml")
    return folder


@pytest.mark.parametrize("args, grid_extra, word", [
    (["--executor", "dask"], "", "'dask'"),
    (["--executor", "slurm", "--mem", "lots"], "", "'lots'"),
    (["--executor", "slurm", "--time", "0"], "", "time must be a whole number >= 1, got 0"),
    (["--executor", "slurm", "--sbatch-option", "array=0-3"], "", "'array'"),
    (["--executor", "slurm", "--workers", "3"], "", "--workers 3"),
    (["--partition", "debug"], "", "['partition']"),
    ([], "slurm:\n  partitoin: debug\n", "partitoin"),
    ([], "slurm:\n  max_parallel: -1\n", "max_parallel must be a whole number >= 1, got -1"),
])
def test_bad_executor_or_slurm_option_exits_2_before_anything(study, capsys, args, grid_extra,
                                                               word):
    from msl.cli import main

    if grid_extra:
        (study / "grid.yaml").write_text((study / "grid.yaml").read_text() + grid_extra)
    assert main(["sweep", str(study), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msl: error:") and word in err, err
    assert sorted(p.name for p in study.iterdir()) == ["grid.yaml"]


def test_slurm_executor_without_sbatch_exits_2(study, capsys, monkeypatch, tmp_path):
    from msl.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert main(["sweep", str(study), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msl: error:") and "sbatch" in err and "PATH" in err, err
    assert sorted(p.name for p in study.iterdir()) == ["grid.yaml"]


def test_status_shows_done_failed_running_and_not_started(study, capsys):
    import os
    import socket

    from msl import grid
    from msl.cli import main

    a, b, c, d = (cfg.cell_id for cfg, _ in grid.load(study).cells())
    (study / "records").mkdir()
    shutil.copy(FIXTURE_GRID.parent / "records" / f"{a}.json", study / "records")
    (study / "records" / f"{b}.json").write_text(json.dumps(
        {"cell_id": b, "status": "failed", "error": "Traceback (most recent call last):\n"
         "RuntimeError: boom at step 3"}))
    (study / "claims").mkdir()
    (study / "claims" / f"{c}.claim").write_text(json.dumps(
        {"cell_id": c, "host": socket.gethostname(), "pid": os.getpid(), "token": "t"}))
    assert main(["status", str(study)]) == 0
    lines = capsys.readouterr().out.splitlines()
    states = {line.split()[0]: line.split(None, 1)[1] for line in lines[:-1]}
    assert states[a] == "done"
    assert states[b].split(None, 1) == ["failed", "RuntimeError: boom at step 3"]
    assert states[c].startswith("running") and f"pid {os.getpid()}" in states[c]
    assert states[d] == "not started"
    assert lines[-1] == "ci: 4 cells: 1 done, 1 running, 0 pending, 1 failed, 1 not started"

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a sweep killed with -9 leaves its claim behind: failed, taken over next time
    (study / "claims" / f"{c}.claim").write_text(json.dumps(
        {"cell_id": c, "host": socket.gethostname(), "pid": gone.pid, "token": "t"}))
    assert main(["status", str(study)]) == 0
    assert "process gone without a record" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_works_from_any_directory(study, tmp_path, tiny_pool, capsys, monkeypatch):
    """Used to fail with ``notebook notebooks/train.ipynb does not exist`` outside the repo."""
    from msl.cli import main
    from msl.sweep import REPO, resolve

    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "study", "--dry-run"]) == 0
    assert "4 to run on 1 worker(s)" in capsys.readouterr().out
    assert resolve("notebooks/data.ipynb") == REPO / "notebooks" / "data.ipynb"
    (study / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "train.ipynb", study / "notebooks" / "train.ipynb")
    from msl import grid
    assert resolve("notebooks/train.ipynb", grid.load(study)) == study / "notebooks" / "train.ipynb"
    with pytest.raises(FileNotFoundError, match="nonesuch.ipynb"):
        resolve("nonesuch.ipynb", grid.load(study))


def test_command_line_slurm_options_override_the_grid_block(study):
    from msl import grid, slurm

    (study / "grid.yaml").write_text((study / "grid.yaml").read_text() + (
        "slurm:\n  partition: gpu\n  time: 30\n  mem: 8G\n  sbatch:\n    qos: high\n"))
    block = grid.load(study).slurm
    opts = slurm.options(block, {"time": 5, "cpus_per_cell": 4, "sbatch": ["account=matsci",
                                                                          "--qos=low", "exclusive"]})
    assert opts == slurm.Options(partition="gpu", time=5, mem="8G", cpus_per_cell=4,
                                 sbatch={"qos": "low", "account": "matsci", "exclusive": True})
    assert slurm.options(block, {}).time == 30 and slurm.options(None, {}).time == slurm.DEFAULT_TIME
