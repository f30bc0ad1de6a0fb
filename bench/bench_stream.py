"""Peak memory and time to the first step of one cell against the size of its pool: the streamed
data path (msl.data.stream, what msl.cell.run does) against the whole pool in memory (the path it
replaced), measured in the same run.

Pools: the embedded EMT pool of 2,400 structures (generated once and cached, as bench_step.py
uses it) with its rows repeated to one ``.aselmdb`` file of 10^4 structures (20 s), and a folder
of 10 copies of that file (10^5 structures, 0.3 GB). Generating 10^4 new structures would take
about a minute of both cores (research/data.md, §1) for nothing: repeated rows cost a reader what
new ones would, every row is read and every graph built anew.

Each measurement is a fresh process (this script with ``--child``): it imports msl and torch,
starts the clock, and sets up a cell of D = 1,000 (optimetal2b size 0, batch 16, 100 validation
and 100 test structures, one thread, ``num_workers`` = 0) until its first optimisation step ends;
there it prints the wall and CPU seconds since the clock started, its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) and, at that moment, its anonymous and file-backed RSS
(``/proc/self/status``) and the part of the latter that maps the pool's LMDB files
(``/proc/self/smaps``), and exits. CPU seconds are the measure to read on a shared machine: wall
time also counts the waits for a core. File-backed RSS is mostly torch's shared libraries, plus
the pages of the LMDB files mapped while reading rows: the kernel maps up to 64 kB around each
page read (fault-around), so without the pool's unmapping (msl.data.pool.UNMAP_ROWS) it grew with
the structures read, up to the whole file where the file is small (the 10^4 file is 27 MB): clean
page cache, not memory the process allocated, but counted in RSS. The in-memory path is
msl.cell's data path at 037e13a: ``msl.data.read`` of the whole pool (cached as ``.npz``),
``msl.graph.build`` of every structure (neighbour lists cached), then the cell's sets picked
from them. "cold": no cache of
msl's (the OS file cache is left alone); "warm": the same run again, with what the cold run had
cached by its first step (in memory: the read and graph caches of the whole pool; streamed: the
neighbour lists of the first batches, so warm and cold differ little there).

Prints one row per path, cache state and pool, and the ratio 10^5 / 10^4 of each.

Usage: python bench/bench_stream.py [--work /tmp/msl-bench-stream] [--repeats 5] [--paths streamed]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = 2400          # structures of the embedded pool that is repeated
SMALL = 10_000       # structures of the pool file
COPIES = 10          # files in the pool folder
CELL = dict(n_train=1000, n_val=100, n_test=100, epochs=1, batch_size=16, threads=1, resume=0)


def make_pools(work: Path) -> tuple[Path, Path]:
    """The 10^4 file and the folder of its 10 copies, made once in ``work``."""
    from ase.db import connect

    from msl import data
    from msl.cell import data_dir

    small, folder = work / "pool-1e4.aselmdb", work / "pool-1e5"
    if not small.exists():
        base = data.embedded(BASE, seed=0, cache_dir=data_dir(), progress=False)
        tmp = work / ".pool-1e4.aselmdb"
        tmp.unlink(missing_ok=True)
        with connect(base, type="aselmdb", readonly=True, use_lock_file=False) as src:
            rows = list(src.select())
        with connect(tmp, type="aselmdb", use_lock_file=False) as db:
            for i in range(SMALL):
                row = rows[i % len(rows)]
                db.write(row.toatoms(), data=row.data)
        Path(f"{tmp}-lock").unlink(missing_ok=True)
        os.replace(tmp, small)
    if not folder.exists():
        tmp = work / ".pool-1e5"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for k in range(COPIES):
            shutil.copy(small, tmp / f"part-{k:02d}.aselmdb")
        os.replace(tmp, folder)
    return small, folder


def in_memory(cfg, path: Path) -> None:
    """msl.cell's data path before streaming (037e13a), up to training."""
    import numpy as np
    import torch

    from msl import cell, data, graph
    from msl.targets import Scales
    from msl.train import train

    torch.set_num_threads(cfg.threads)
    structures = data.read(path)
    split = data.split(len(structures), cfg.n_val, cfg.n_test, seed=cfg.seed,
                       split_seed=cfg.split_seed)
    train_idx = split.train(cfg.n_train)
    train_set = structures.subset(train_idx)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = cell._build(cfg, train_set)
    scales = Scales.from_training(train_set, float(model.energy_scale))
    model.set_output_scales(forces=scales.sigma["forces"], stress=scales.sigma["stress"])
    reference = cell.eval_scales(structures.subset(split.val), cfg)
    graphs = graph.build(structures, model.cutoff, cache_dir=cell.data_dir() / "graphs",
                         key=path.stem)
    train(model, [graphs[i] for i in train_idx], [graphs[i] for i in split.val], scales, cfg,
          progress=False, eval_scales=reference)


def child(path_kind: str, pool: Path) -> None:
    """One measurement (module docstring); prints one JSON line and exits at the first step."""
    import torch

    from msl import cell, config

    cfg = config.from_dict({**CELL, "data_path": str(pool)})
    start, cpu_start = time.perf_counter(), time.process_time()
    step = torch.optim.AdamW.step

    def first_step(self, *args, **kwargs):
        step(self, *args, **kwargs)
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print(json.dumps({"seconds": time.perf_counter() - start,
                          "cpu_seconds": time.process_time() - cpu_start,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "anon_mb": int(status["RssAnon"].split()[0]) / 1024,
                          "file_mb": int(status["RssFile"].split()[0]) / 1024,
                          "lmdb_mb": lmdb_rss_mb()}), flush=True)
        os._exit(0)  # the measurement is taken: skip the rest of the run and its clean-up

    torch.optim.AdamW.step = first_step
    if path_kind == "streamed":
        cell.run(cfg, progress=False)
    else:
        in_memory(cfg, pool)
    raise SystemExit("training ended without an optimisation step")


def lmdb_rss_mb() -> float:
    """RSS of this process's mappings of ``.aselmdb`` files (``/proc/self/smaps``)."""
    total, name = 0, ""
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0]:  # a mapping's header: address range, ..., path (if any)
            name = fields[5] if len(fields) > 5 else ""
        elif fields[0] == "Rss:" and name.endswith(".aselmdb"):
            total += int(fields[1])
    return total / 1024


def measure(path_kind: str, pool: Path, data_dir: Path) -> dict:
    env = {**os.environ, "MSL_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", path_kind, str(pool)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{path_kind} on {pool} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def clear_caches(work: Path, data_dir: Path) -> None:
    """msl's caches: the read cache beside the pools and the graph caches."""
    shutil.rmtree(work / ".msl-cache", ignore_errors=True)
    shutil.rmtree(data_dir / "graphs", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "msl-bench-stream",
                        help="folder for the pools and caches (about 0.4 GB)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs of each streamed measurement (the median is shown)")
    parser.add_argument("--paths", nargs="+", default=["in memory", "streamed"],
                        choices=["in memory", "streamed"], help="data paths to measure")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "POOL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]))
    args.work.mkdir(parents=True, exist_ok=True)
    data_dir = args.work / "data"
    start = time.perf_counter()
    pools = dict(zip(("1e4", "1e5"), make_pools(args.work)))
    print(f"pools ready in {time.perf_counter() - start:.0f} s: {SMALL} structures ({BASE} "
          f"embedded ones repeated) in one file, and {COPIES} copies of it in a folder")
    rows = {}
    for path_kind, repeats in (("in memory", 1), ("streamed", args.repeats)):
        if path_kind not in args.paths:
            continue
        for size, pool in pools.items():
            for state in ("cold", "warm"):
                runs = []
                for _ in range(repeats):
                    if state == "cold":
                        clear_caches(args.work, data_dir)
                    runs.append(measure(path_kind, pool, data_dir))
                m = rows[path_kind, state, size] = {k: statistics.median(run[k] for run in runs)
                                                    for k in runs[0]}
                print(f"{path_kind:9s} {state:4s} pool {size}: {m['seconds']:7.2f} s to the first "
                      f"step ({m['cpu_seconds']:6.2f} s CPU), peak RSS {m['peak_rss_mb']:6.0f} MB; "
                      f"at the step {m['anon_mb']:6.0f} MB anonymous, {m['file_mb']:4.0f} MB "
                      f"file-backed ({m['lmdb_mb']:4.1f} MB of it LMDB)", flush=True)
    print("\nratio pool 1e5 / pool 1e4 (1.00: flat in the pool size)")
    keys = {"wall": "seconds", "CPU": "cpu_seconds", "peak RSS": "peak_rss_mb", "anon": "anon_mb",
            "file": "file_mb"}
    print(f"{'path':9s} {'caches':6s} " + " ".join(f"{k:>8s}" for k in keys))
    for path_kind in args.paths:
        for state in ("cold", "warm"):
            a, b = rows[path_kind, state, "1e4"], rows[path_kind, state, "1e5"]
            print(f"{path_kind:9s} {state:6s} " + " ".join(f"{b[k] / a[k]:8.2f}" for k in keys.values()))


if __name__ == "__main__":
    main()
