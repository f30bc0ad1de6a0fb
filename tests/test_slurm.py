"""The Slurm executor against a real single-node Slurm on localhost (``.ci/slurm-up`` starts one;
``.ci/run`` calls it before ``make test``). Without one, these tests skip and say why.

One grid of two cells goes through everything a cluster does to a sweep: submission as a job
array, a task killed outright (``scancel``: failed in ``msl status``, re-submitted by the next
``msl sweep``), a task preempted mid-training (``scancel --signal=USR2``: requeued by submitit,
resumed from the cell's training state), and records equal to the local pool's."""

import re
import shutil
import subprocess
import time

import pytest

from msl import claims, grid, results
from msl.cli import main
from test_claims import local_reference, two_cell_grid

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
DEADLINE = 300  # seconds; a loaded 2-core machine can stall Slurm's steps for a minute


def _why_no_slurm() -> str | None:
    for tool in ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo"):
        if not shutil.which(tool):
            return f"no Slurm here ({tool} is not on the PATH); .ci/slurm-up starts one (as root)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=5)
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                               timeout=10)
    except subprocess.TimeoutExpired:
        return "Slurm's controller does not answer (scontrol ping); .ci/slurm-up starts one"
    if "UP" not in ping.stdout:
        return f"slurmctld is not up: {(ping.stdout + ping.stderr).strip()}"
    if not {"idle", "mixed", "allocated", "completing"} & set(nodes.stdout.split()):
        return f"no Slurm node takes jobs (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = _why_no_slurm()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def study(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "grid.yaml").write_text(two_cell_grid())
    return folder


def _status(study, capsys) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["status", str(study)]) == 0
    out = capsys.readouterr().out
    states = {}
    for line in out.splitlines()[:-1]:
        cell_id, state = re.match(r"(\S+)\s+(not started|\S+)", line).groups()
        states[cell_id] = state
    return states, out


def _until(what, check, deadline):
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_slurm_sweep_preempted_killed_resubmitted_equals_local(cluster, study, tiny_pool,
                                                                 tmp_path_factory, capsys):
    cells = sorted(grid.load(study).cells(), key=lambda c: c[0].n_train)
    d16, d32 = (cfg.cell_id for cfg, _ in cells)
    deadline = time.monotonic() + DEADLINE

    states, out = _status(study, capsys)
    assert states == {d16: "not started", d32: "not started"}
    assert out.splitlines()[-1] == "ci: 2 cells: 0 done, 0 running, 0 pending, 0 failed, 2 not started"

    assert main(["sweep", str(study), "--executor", "slurm", "--time", "10",
                 "--cpus-per-cell", "1", "--max-parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 to run as one Slurm job array" in out and "submitted 2 cell(s)" in out, out
    jobs = {c: claims.read(study / "claims", c)["job_id"] for c in (d16, d32)}
    assert re.fullmatch(r"\d+_[01]", jobs[d16]) and jobs[d16].split("_")[0] == jobs[d32].split("_")[0]

    # a task killed outright: failed in msl status, with its job and state
    subprocess.run(["scancel", jobs[d16]], check=True)
    _until("the cancelled task to show as failed", lambda: _status(study, capsys)[0][d16] == "failed",
           deadline)
    assert jobs[d16] in _status(study, capsys)[1] or "Kernel died" in _status(study, capsys)[1]

    # a task preempted once its training state exists: requeued, resumed from that state
    state = study / "checkpoints" / f"{d32}.state.pt"
    _until("d32's first training state", state.exists, deadline)
    assert not results.finished(study / "records", d32), "d32 finished before it could be preempted"
    subprocess.run(["scancel", "--signal=USR2", jobs[d32]], check=True)

    # the next sweep re-submits the killed cell only: the preempted one is still held by its job
    assert main(["sweep", str(study), "--executor", "slurm", "--time", "10",
                 "--cpus-per-cell", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 claimed by another sweep, 1 to run" in out, out
    assert claims.read(study / "claims", d32)["job_id"] == jobs[d32]

    seen = set()

    def both_done():
        now, _ = _status(study, capsys)
        seen.add(now[d32])
        return set(now.values()) == {"done"}

    _until("both records", both_done, deadline)
    assert "pending" in seen  # requeued: pending again until Slurm lets it start
    states, out = _status(study, capsys)
    assert out.splitlines()[-1] == "ci: 2 cells: 2 done, 0 running, 0 pending, 0 failed, 0 not started"

    records = {r["cell_id"]: r for r in results.load(study)}
    assert records[d32]["resumed_from_epoch"] > 0  # resumed from the saved state, not from scratch
    log = (study / "runs" / "slurm" / f"{jobs[d32]}_0_log.out").read_text()
    assert f"Requeued job {jobs[d32]}" in log and log.count("Starting with JobEnvironment") == 2
    local = local_reference(tmp_path_factory)
    for cell_id in (d16, d32):  # the numbers of an uninterrupted local run
        assert records[cell_id]["status"] == "ok"
        assert records[cell_id]["metrics"] == local[cell_id]["metrics"], cell_id
        assert records[cell_id]["history"] == local[cell_id]["history"], cell_id
        assert (study / "runs" / f"{cell_id}.ipynb").exists()
    # released once the notebook run ends, a moment after the record is written
    _until("the claims' release", lambda: not list((study / "claims").glob("*.claim")), deadline)


@pytest.mark.parametrize("args, word", [
    (["--partition", "nonesuch"], "nonesuch"),
    (["--sbatch-option", "constraint=nonesuch"], "constraint=nonesuch"),
])
def test_option_sbatch_rejects_stops_before_anything(cluster, study, tiny_pool, capsys, args, word):
    before = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                                text=True).stdout.split())
    assert main(["sweep", str(study), "--executor", "slurm", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msl: error: sbatch rejects") and word in err, err
    assert [p.name for p in study.iterdir()] == ["grid.yaml"]
    after = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                               text=True).stdout.split())
    assert after <= before  # nothing submitted
