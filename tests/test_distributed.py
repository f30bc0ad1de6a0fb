"""Several processes in one cell (msl.distributed): two gloo processes on the CPU against one.

Tolerance: ``RTOL`` = 1e-4 relative on every loss and metric. The two runs step on the same
global batches with the same global loss, so only the order of float32 sums differs (over a
shard, then across ranks, instead of over the batch): about 1e-7 relative per gradient, which
AdamW's normalised steps pass on to the parameters at the level of their last bits, growing at
most slowly over a run of a few dozen steps. A mistake in the split would show far above 1e-4:
averaging the ranks' own loss means instead of weighing them moves the loss by about 1e-2 on
these batches (asserted below), and another batch order changes the first epoch's loss by more.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from msl import cell, config, distributed, targets

RTOL = 1e-4
EPOCHS = 6  # 3 steps an epoch: 18 steps, a validation after each epoch


def tiny(**kw):
    base = dict(pool_size=120, n_train=24, n_val=16, n_test=16, epochs=EPOCHS, batch_size=8)
    return config.from_dict({**base, **kw})


def curve(record) -> list[float]:
    return [h[k] for h in record["history"] for k in ("train/loss", "val/loss")]


def assert_close(a: list[float], b: list[float]) -> float:
    """Max relative difference of two loss lists, asserted below RTOL."""
    assert len(a) == len(b)
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    assert worst < RTOL, (worst, a, b)
    return worst


@pytest.fixture(scope="module")
def one_process(tiny_pool):
    return cell.run(tiny(), progress=False)


def test_shards_split_every_global_batch_of_the_one_process_loader():
    """Rank r's batches are the r-th parts of the one-process loader's batches, epoch after
    epoch: the same generator draws, so the same permutations."""
    def loader():
        return torch.utils.data.DataLoader(list(range(23)), batch_size=8, shuffle=True,
                                           generator=torch.Generator().manual_seed(3),
                                           drop_last=True, collate_fn=list)

    one = loader()
    whole = [batch for _ in range(3) for batch in one]
    parts = []
    for rank in range(2):
        mine = distributed.sharded(loader(), rank, 2)
        assert len(mine) == len(one)
        parts.append([batch for _ in range(3) for batch in mine])
    assert [a + b for a, b in zip(*parts)] == whole
    assert {len(b) for b in parts[0] + parts[1]} == {4}
    uneven = distributed.Shard([[0, 1, 2, 3, 4]], 0, 2), distributed.Shard([[0, 1, 2, 3, 4]], 1, 2)
    assert [list(s) for s in uneven] == [[[0, 1, 2]], [[3, 4]]]


def _gradient_rank(rank, port, graphs, state, scales, tables, out_path):
    """One of two gloo ranks: DDP-wrapped model, this rank's half of ``graphs``, the weighed
    loss of each table; rank 0 saves the loss and the gradient."""
    import torch.distributed as dist
    from torch_geometric.data import Batch

    from msl.models import build_model

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    model = build_model("optimetal2b", 0)
    model.load_state_dict(state)
    net = distributed.wrap(model)
    batch = Batch.from_data_list(graphs[rank * len(graphs) // 2:(rank + 1) * len(graphs) // 2])
    found = {}
    for name, terms in tables.items():
        net.zero_grad(set_to_none=True)
        out = net(batch, **targets.needs(terms))
        loss = targets.loss(out, batch, scales, distributed.weigh(terms, out, batch))
        value, atoms, structures = distributed.totals(loss, batch)
        loss.backward()
        found[name] = (value, atoms, structures, [p.grad.clone() for p in model.parameters()])
    if rank == 0:
        torch.save(found, out_path)
    del net  # before the group: see msl.distributed.joined
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gradient_of_weighed_shards_is_the_batch_gradient(tiny_pool, tmp_path):
    """The heart of the 1-vs-2 equivalence, on one batch: two DDP ranks, each with half of the
    structures (different atom counts), give the one-process loss and gradient of the whole
    batch, force term (a double backward) included, for mean-type and l2mae losses."""
    from torch_geometric.data import Batch

    from msl import data, graph
    from msl.models import build_model

    structures = data.read(tiny_pool)
    model = build_model("optimetal2b", 0)
    model.fit_reference(structures.numbers, structures.n_atoms, structures.energy)
    scales = targets.Scales.from_training(structures, float(model.energy_scale))
    model.set_output_scales(forces=scales.sigma["forces"], stress=scales.sigma["stress"])
    graphs = graph.build(structures, model.cutoff)[:8]
    tables = {name: targets.table(name) for name in ("default", "trikha")}
    out_path = tmp_path / "rank0.pt"
    torch.multiprocessing.spawn(_gradient_rank, nprocs=2, args=(
        _free_port(), graphs, model.state_dict(), scales, tables, out_path))
    found = torch.load(out_path, weights_only=False)
    batch = Batch.from_data_list(graphs)
    for name, terms in tables.items():
        model.zero_grad(set_to_none=True)
        loss = targets.loss(model(batch, **targets.needs(terms)), batch, scales, terms)
        loss.backward()
        loss = float(loss.detach())
        value, atoms, structures_seen, grads = found[name]
        assert value == pytest.approx(loss, rel=1e-6)
        assert (atoms, structures_seen) == (batch.num_nodes, 8)
        for p, g in zip(model.parameters(), grads):
            assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6 * float(p.grad.abs().max())), name
        halves = [Batch.from_data_list(graphs[:4]), Batch.from_data_list(graphs[4:])]
        naive = sum(float(targets.loss(model(b, **targets.needs(terms)), b, scales, terms).detach())
                    for b in halves) / 2
        print(f"{name}: mean of the halves' losses {naive:.6g}, batch loss {loss:.6g}")
        assert abs(naive - loss) > 1e-3 * loss  # the weighing is needed


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_one_process_curve(one_process, tmp_path):
    """Same cell, same global batch: the loss curve (training and validation loss at every
    validation) and the final metrics within RTOL; one record and one checkpoint, by rank 0;
    FLOPs and throughput count both ranks; the caller's signal handlers are back afterwards."""
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    two = cell.run(tiny(nproc_per_node=2, record_dir=str(tmp_path / "records")), progress=False)
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert two["status"] == "ok" and two["world_size"] == 2 and one_process["world_size"] == 1
    assert two["cell_id"] == one_process["cell_id"]  # nproc_per_node is not hashed
    assert two["config"]["nproc_per_node"] == 2
    assert two["steps"] == one_process["steps"] == 3 * EPOCHS
    worst = assert_close(curve(one_process), curve(two))
    metrics = sorted(one_process["metrics"])
    assert sorted(two["metrics"]) == metrics
    assert_close([one_process["metrics"][k] for k in metrics], [two["metrics"][k] for k in metrics])
    assert two["flops"] == one_process["flops"] > 0  # every rank's atoms, counted once
    assert two["structures_per_second"] > 0
    records = list((tmp_path / "records").iterdir())
    assert [p.name for p in records] == [f"{two['cell_id']}.json"]
    assert json.loads(records[0].read_text())["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [f"{two['cell_id']}.pt"]
    print(f"max relative difference of the loss curves, 1 vs 2 processes: {worst:.2e}")


@pytest.mark.slow
def test_a_killed_two_process_run_resumes(one_process, tmp_path, tiny_pool):
    """``msl train --nproc-per-node 2`` killed (SIGKILL to the launcher and both ranks) after its
    first saved state; the same cell run again continues from rank 0's state on both ranks and
    ends with the uninterrupted run's curve."""
    records = tmp_path / "records"
    cfg = tiny(nproc_per_node=2, record_dir=str(records)).with_id()
    state = tmp_path / "checkpoints" / f"{cfg.cell_id}.state.pt"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in cfg.asdict().items()
            if v != getattr(config.CellConfig(), k)]
    run = subprocess.Popen([sys.executable, "-m", "msl.cli", "train", "--quiet", *args],
                           start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not state.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert state.exists() and not records.exists()
    deadline = time.monotonic() + 30
    while _alive(run.pid) and time.monotonic() < deadline:  # the ranks died with the launcher
        time.sleep(0.1)
    assert not _alive(run.pid)
    resumed = cell.run(cfg, progress=False)
    assert 0 < resumed["resumed_from_epoch"] < EPOCHS and resumed["world_size"] == 2
    assert resumed["steps"] == one_process["steps"]
    assert_close(curve(one_process), curve(resumed))
    assert not state.exists() and (records / f"{cfg.cell_id}.json").exists()


@pytest.mark.slow
def test_ranks_from_slurm_tasks(one_process, tmp_path):
    """Two processes started as the tasks of a Slurm job step would be (SLURM_PROCID...):
    they find each other without a launcher; task 0 writes the record, task 1 nothing."""
    cfg = tiny(nproc_per_node=2, record_dir=str(tmp_path / "records")).with_id()
    code = (f"from msl import cell, config; cell.run(config.from_dict({cfg.asdict()!r}), "
            "progress=False)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_STEP_NUM_TASKS="2", SLURM_JOB_ID="4242", MASTER_PORT=str(_free_port()))
    tasks = [subprocess.Popen([sys.executable, "-c", code], env={**env, "SLURM_PROCID": str(r),
                                                                 "SLURM_LOCALID": str(r)})
             for r in range(2)]
    assert [t.wait(timeout=600) for t in tasks] == [0, 0]
    (path,) = (tmp_path / "records").iterdir()
    record = json.loads(path.read_text())
    assert path.name == f"{cfg.cell_id}.json" and record["world_size"] == 2
    assert_close(curve(one_process), curve(record))


def test_more_processes_than_cores_exit_2_before_anything(tmp_path, capsys):
    from msl.cli import main

    args = ["train", "--nproc-per-node", "4096", "--batch-size", "4096", "--n-train", "4096",
            "--record-dir", str(tmp_path / "records")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("msl: error: nproc_per_node=4096 exceeds the") and "CPU core" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, word", [
    (["--nproc-per-node", "0"], "nproc_per_node must be at least 1, got 0"),
    (["--nproc-per-node", "3"], "nproc_per_node=3 must divide batch_size=16"),
])
def test_bad_process_counts_exit_2(tmp_path, capsys, args, word):
    from msl.cli import main

    assert main(["train", *args, "--record-dir", str(tmp_path / "records")]) == 2
    assert word in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_sweep_stops_on_too_many_processes_before_any_cell(tmp_path, tiny_pool, capsys,
                                                              monkeypatch):
    from msl.cli import main

    study = tmp_path / "study"
    study.mkdir()
    (study / "grid.yaml").write_text(
        "study: ddp\nfixed:\n  pool_size: 120\n  n_val: 16\n  n_test: 16\n  batch_size: 8\n"
        "  nproc_per_node: 2\nscans:\n  data:\n    axis: n_train\n    n_train: [16, 24]\n")
    monkeypatch.setattr(distributed, "_cores", lambda: 1)
    assert main(["sweep", str(study)]) == 2
    assert "nproc_per_node=2 exceeds the 1 CPU core(s)" in capsys.readouterr().err
    assert sorted(p.name for p in study.iterdir()) == ["grid.yaml"]


def test_a_slurm_array_asks_for_one_task_per_process():
    from msl.slurm import Options, processes

    cells = [(tiny(nproc_per_node=2, seed=s), {}) for s in range(2)]
    assert processes(cells, Options()) == 2
    assert processes([(tiny(), {})], Options()) == 1
    with pytest.raises(ValueError, match=r"nproc_per_node \[1, 2\]"):
        processes(cells + [(tiny(), {})], Options())
    with pytest.raises(ValueError, match="nproc_per_node=2 needs a GPU per process"):
        processes(cells, Options(gpus_per_cell=1))
