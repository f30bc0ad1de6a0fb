"""End to end: the CI grid through papermill, records, resume after kill -9, and the analysis."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msl import grid, results, sweep

FIXTURE = Path("tests/fixtures/study/grid.yaml")
pytestmark = pytest.mark.slow


@pytest.fixture
def study(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "grid.yaml")
    return folder


def test_sweep_runs_every_cell_then_resumes_without_rerunning(study, tiny_pool):
    outcomes = sweep.run(study, workers=2, progress=False)
    assert len(outcomes) == 4 and all(o.ok for o in outcomes), outcomes
    records = results.load(study)
    assert {r["status"] for r in records} == {"ok"} and len(records) == 4
    for r in records:
        assert (study / "runs" / f"{r['cell_id']}.ipynb").exists()
        assert (study / "runs" / f"{r['cell_id']}.log").exists()
        assert r["metrics"]["val/forces_mae"] > 0 and r["n_params"] > 0
    assert sweep.run(study, workers=2, progress=False) == []  # everything done: nothing runs
    victim = records[0]["cell_id"]
    (study / "records" / f"{victim}.json").unlink()
    again = sweep.run(study, workers=1, progress=False)
    assert [o.cell_id for o in again] == [victim]

    from msl.cli import analyse
    out = analyse(str(study))
    assert out.exists() and "alpha" in out.read_text()
    assert "distinct formulas" in (study / "data.ipynb").read_text()
    import nbformat
    cells = nbformat.read(out, as_version=4).cells
    hidden = [c for c in cells if "remove-cell" in c.metadata.get("tags", [])]
    assert {t for c in hidden for t in c.metadata["tags"]} >= {"parameters", "injected-parameters"}


def test_kill_9_mid_sweep_then_resume(study, tiny_pool):
    cmd = [sys.executable, "-m", "msl.cli", "sweep", str(study), "--workers", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((study / "records").glob("*.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its pool worker and the kernel
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in (study / "records").glob("*.json")}
    assert done, "no record appeared before the deadline"
    for name in done:
        json.loads((study / "records" / name).read_text())  # complete, parseable
    _, states = sweep.status(study)  # the killed sweep's claims are stale, not "running"
    assert {s.state for s in states} <= {"done", "failed", "not started"}, states
    outcomes = sweep.run(study, workers=2, progress=False)
    rerun = {f"{o.cell_id}.json" for o in outcomes}
    assert not rerun & set(done)  # finished cells were not run again
    assert len(results.load(study, status="ok")) == 4
    for name, mtime in done.items():
        assert (study / "records" / name).stat().st_mtime_ns == mtime


def test_undeclared_grid_key_stops_before_any_work(study):
    text = (study / "grid.yaml").read_text().replace("  epochs: 2", "  epochs: 2\n  dropout: 0.1")
    (study / "grid.yaml").write_text(text)
    with pytest.raises(ValueError, match="dropout"):
        sweep.run(study, workers=1, progress=False)
    assert not (study / "records").exists() and not (study / "runs").exists()


def test_d_larger_than_pool_stops_before_any_work(study, tiny_pool):
    text = (study / "grid.yaml").read_text().replace("[16, 32, 64]", "[16, 32, 6400]")
    (study / "grid.yaml").write_text(text)
    with pytest.raises(ValueError, match="n_train=6400"):
        sweep.run(study, workers=1, progress=False)
    assert not (study / "records").exists()


def test_dry_run_lists_without_running(study, tiny_pool, capsys):
    assert sweep.run(study, workers=2, dry_run=True) == []
    assert "4 to run" in capsys.readouterr().out
    assert not (study / "records").exists()


def test_cells_match_grid_expansion(study):
    assert len(grid.load(study).cells()) == 4


def test_book_builds_from_an_executed_analysis(tmp_path):
    """The last step of the pipeline: Jupyter Book renders an executed analysis (no re-execution),
    with the glued findings in the text. Uses the committed CI-study records."""
    from msl.cli import analyse

    study = tmp_path / "study"
    shutil.copytree(FIXTURE.parent, study)
    analyse(str(study))
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy("_config.yml", book / "_config.yml")
    shutil.copy(study / "analysis.ipynb", book / "analysis.ipynb")
    (book / "intro.md").write_text("# CI book\n\nThe CI study.\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: analysis\n")
    jb = Path(sys.executable).parent / "jupyter-book"
    out = subprocess.run([str(jb), "build", str(book)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    page = (book / "_build" / "html" / "analysis.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Data scaling over D = 16 to 64 : \\(\\alpha_D\\) =" in text
    assert str(study) not in text  # the parameter cells (machine paths) are hidden


def test_a_cell_that_fails_is_reported_and_runs_again_next_time(study, tiny_pool):
    """A per-cell timeout kills the notebook: the sweep reports it (no exception), keeps the
    executed notebook for inspection, writes no finished record, and a later sweep retries it."""
    text = (study / "grid.yaml").read_text().replace("[16, 32, 64]", "[16, 32]")
    text = text.replace("size: [0, 1]", "size: [0, 1]\n    n_val: 16")
    (study / "grid.yaml").write_text(text)
    outcomes = sweep.run(study, workers=1, timeout=1, progress=False)
    assert outcomes and not any(o.ok for o in outcomes)
    assert all("Timeout" in o.error or "timed out" in o.error.lower() for o in outcomes), outcomes
    assert not results.load(study, status="ok")
    assert len(sweep.pending(grid.load(study), grid.load(study).cells())) == len(outcomes)
    _, states = sweep.status(study)  # failed, with the error's last line; no claim left
    assert {s.state for s in states} == {"failed"} and all("Timeout" in s.detail or "timed out"
                                                         in s.detail.lower() for s in states)
    assert not list((study / "claims").glob("*.claim"))


def test_longest_cells_start_first_and_the_order_keeps_every_cell():
    g = grid.load(Path(__file__).parent.parent / "book" / "default")
    todo = g.cells()
    ordered = sweep.longest_first(todo)
    assert sorted(c.cell_id for c, _ in ordered) == sorted(c.cell_id for c, _ in todo)
    scans = [s[0] for _, s in ordered]
    n_checks = sum(s.endswith("/budget") for s in scans)
    assert n_checks == 4 and all(s.endswith("/budget") for s in scans[:n_checks])
    assert all(s.startswith("lr_") for s in scans[-6:])   # the short learning-rate scans last
    sizes = [c.size for c, s in ordered if s[0] == "params"]
    assert sizes == sorted(sizes, reverse=True)
