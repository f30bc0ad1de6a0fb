"""Claims: a cell is claimed atomically before it runs; stale claims are taken over; two sweeps of
one grid at once train every cell once."""

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from msl import claims, results

FIXTURE = Path(__file__).parent / "fixtures" / "study" / "grid.yaml"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claim_is_exclusive_and_released(tmp_path):
    first = claims.acquire(tmp_path, "cell-a")
    assert first is not None
    info = json.loads((tmp_path / "cell-a.claim").read_text())
    assert info["host"] == socket.gethostname() and info["pid"] > 0 and info["started"]
    assert claims.acquire(tmp_path, "cell-a") is None  # held by a live process (this one)
    claims.release(first)
    assert not (tmp_path / "cell-a.claim").exists()
    assert claims.acquire(tmp_path, "cell-a") is not None


def test_only_one_of_many_concurrent_claimants_wins(tmp_path):
    won, barrier = [], threading.Barrier(16)

    def grab():
        barrier.wait()
        if claims.acquire(tmp_path, "cell-b") is not None:
            won.append(1)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "cell-c.claim").write_text(json.dumps(
        {"cell_id": "cell-c", "host": socket.gethostname(), "pid": _dead_pid(), "token": "old"}))
    claim = claims.acquire(tmp_path, "cell-c")
    assert claim is not None and claim.token != "old"
    assert json.loads((tmp_path / "cell-c.claim").read_text())["token"] == claim.token


def test_reused_pid_does_not_keep_a_claim_alive(tmp_path):
    import os

    (tmp_path / "cell-d.claim").write_text(json.dumps(
        {"cell_id": "cell-d", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": 1,
         "token": "old"}))
    assert claims.acquire(tmp_path, "cell-d") is not None


def test_claim_of_another_host_without_job_is_kept(tmp_path):
    (tmp_path / "cell-e.claim").write_text(json.dumps(
        {"cell_id": "cell-e", "host": "elsewhere.example", "pid": 1, "token": "old"}))
    assert claims.acquire(tmp_path, "cell-e") is None


@pytest.mark.parametrize("state, taken", [("PENDING", False), ("RUNNING", False),
                                          ("COMPLETED", True), ("CANCELLED", True),
                                          (None, True)])
def test_slurm_claim_follows_its_job(tmp_path, state, taken):
    (tmp_path / "cell-f.claim").write_text(json.dumps(
        {"cell_id": "cell-f", "host": "node7", "pid": 1, "token": "sub", "job_id": "12_3"}))
    states = lambda ids: {} if state is None else {"12_3": state}  # noqa: E731
    assert (claims.acquire(tmp_path, "cell-f", job_states=states) is not None) == taken
    # the task of the submission that made the claim, or the same job after a requeue, owns it
    assert claims.acquire(tmp_path, "cell-f", token="sub", job_states=states) is not None \
        or taken
    unknowable = lambda ids: None  # noqa: E731  (no squeue, no controller: never taken over)
    (tmp_path / "cell-g.claim").write_text(json.dumps(
        {"cell_id": "cell-g", "host": "node7", "pid": 1, "token": "sub", "job_id": "13"}))
    assert claims.acquire(tmp_path, "cell-g", job_states=unknowable) is None
    assert claims.acquire(tmp_path, "cell-g", job_id="13", job_states=unknowable) is not None


def two_cell_grid() -> str:
    """The CI grid cut to two cells (D = 16 and 32) of 24 epochs on one thread: long enough to
    be interrupted mid-training (tests/test_slurm.py), short enough for CI."""
    text = FIXTURE.read_text().replace("[16, 32, 64]", "[16, 32]")
    text = text.replace("  epochs: 2\n", "  epochs: 24\n  threads: 1\n")
    return text[:text.index("  params:")]


_REFERENCE: dict = {}


def sweep_twice_at_once(study: Path) -> list[str]:
    """Two ``msl sweep`` commands on one grid at the same moment (two terminals)."""
    cmd = [sys.executable, "-m", "msl.cli", "sweep", str(study), "--workers", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=study.parent) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    return outs


def local_reference(tmp_path_factory) -> dict:
    """Records of :func:`two_cell_grid` run by the local pool, by cell id (run once a session)."""
    if not _REFERENCE:
        study = tmp_path_factory.mktemp("local") / "study"
        study.mkdir()
        (study / "grid.yaml").write_text(two_cell_grid())
        sweep_twice_at_once(study)
        _REFERENCE.update({r["cell_id"]: r for r in results.load(study, status="ok")})
    return _REFERENCE


@pytest.mark.slow
def test_two_sweeps_at_once_train_each_cell_once(tmp_path, tiny_pool):
    """Measured before claims: both sweeps reported "to run" for every cell and trained each
    twice. Now each cell runs in exactly one of them (from a directory outside the repo)."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "grid.yaml").write_text(two_cell_grid())
    outs = sweep_twice_at_once(study)
    ran = [int(re.search(r"(\d+) cell\(s\) run here", out).group(1)) for out in outs]
    assert sum(ran) == 2, outs
    records = results.load(study, status="ok")
    assert len(records) == 2
    assert not list((study / "claims").glob("*.claim"))  # every claim released
    _REFERENCE.update({r["cell_id"]: r for r in records})
