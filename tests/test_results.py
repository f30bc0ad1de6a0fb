import json
import os
import signal
import subprocess
import sys

import pytest

from msl import results


def test_write_read_roundtrip(tmp_path):
    path = results.write(tmp_path / "r" / "a.json", {"cell_id": "a", "status": "ok", "x": 1.5})
    assert results.read(path)["x"] == 1.5
    assert results.finished(tmp_path / "r", "a")
    assert not results.finished(tmp_path / "r", "b")
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["a.json"]  # no temp files left


def test_failed_and_corrupt_records_are_not_finished(tmp_path):
    results.write(tmp_path / "f.json", {"cell_id": "f", "status": "failed", "error": "boom"})
    assert not results.finished(tmp_path, "f")
    (tmp_path / "c.json").write_text('{"cell_id": "c", "stat')
    assert not results.finished(tmp_path, "c")
    with pytest.raises(ValueError, match="c.json"):
        results.read(tmp_path / "c.json")


def test_bad_status_is_refused(tmp_path):
    with pytest.raises(ValueError, match="weird"):
        results.write(tmp_path / "x.json", {"cell_id": "x", "status": "weird"})
    assert not (tmp_path / "x.json").exists()


def test_killed_writer_leaves_old_record_or_new_one(tmp_path):
    """SIGKILL a process that rewrites a large record in a loop: the file always parses."""
    path = tmp_path / "big.json"
    results.write(path, {"cell_id": "big", "status": "ok", "v": 0})
    code = ("import sys; from msl import results\n"
            "for i in range(10**6):\n"
            f"    results.write({str(path)!r}, {{'cell_id': 'big', 'status': 'ok', 'v': i, "
            "'pad': list(range(20000))})\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(20):
            try:
                proc.wait(timeout=0.15)
            except subprocess.TimeoutExpired:
                pass
            json.loads(path.read_text())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert results.read(path)["cell_id"] == "big"


def test_provenance_has_versions_and_commit():
    prov = results.provenance()
    assert prov["versions"]["torch"].startswith("2.13")
    assert "machine" in prov


def test_provenance_lists_the_packages_that_shape_a_record():
    prov = results.provenance()
    for name in ("torch", "torch-geometric", "fairchem-core", "ase", "pymatgen", "matscipy",
                 "numpy", "scipy", "pandas", "matplotlib", "papermill", "msl"):
        assert name in prov["versions"], name
        assert prov["versions"][name], f"{name} is not installed"
    assert "git_commit" in prov and "python" in prov
