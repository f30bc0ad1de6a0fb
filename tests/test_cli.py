"""The command line: bad input exits non-zero with a message naming the bad value."""

import json
import subprocess
import sys

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
