import math

import numpy as np
import pytest
import torch

from msl import cell, config, targets
from msl.train import lr_factor


def test_lr_schedule_warms_up_then_decays_to_floor():
    total, warmup = 100, 10
    f = [lr_factor(s, total, warmup, 0.01) for s in range(total + 1)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(b <= a + 1e-12 for a, b in zip(f[10:], f[11:]))  # monotone decay after warm-up
    assert f[-1] == pytest.approx(0.01)


def test_converged_rule():
    flat = [{"val/loss": v} for v in [1.0, 0.5, 0.4, 0.399, 0.3985, 0.398, 0.398, 0.398]]
    falling = [{"val/loss": 1.0 / (i + 1)} for i in range(8)]
    assert cell.converged(flat, stopped_early=False)
    assert not cell.converged(falling, stopped_early=False)
    assert cell.converged(falling, stopped_early=True)


def tiny(**kw):
    base = dict(pool_size=120, n_train=24, n_val=16, n_test=16, epochs=2, batch_size=8)
    return config.from_dict({**base, **kw})


def test_cell_runs_and_is_deterministic(tiny_pool, tmp_path):
    a = cell.run(tiny(record_dir=str(tmp_path)), progress=False)
    b = cell.run(tiny(), progress=False)
    assert a["status"] == "ok" and a["steps"] == 2 * 3
    for key in ("val/loss", "val/energy_mae", "val/forces_mae", "val/stress_mae", "test/loss"):
        assert math.isfinite(a["metrics"][key]) and a["metrics"][key] == b["metrics"][key]
    assert a["flops"] > 0 and a["n_params"] > 1000
    assert (tmp_path / f"{a['cell_id']}.json").exists()
    assert (tmp_path.parent / "checkpoints" / f"{a['cell_id']}.pt").exists()


def test_training_reduces_validation_loss(tiny_pool):
    rec = cell.run(tiny(epochs=6, max_lr=3e-3), progress=False)
    losses = [h["val/loss"] for h in rec["history"]]
    assert min(losses[1:]) < losses[0]


def test_flops_grow_with_model_size(tiny_pool):
    small = cell.run(tiny(epochs=1, size=0), progress=False)
    large = cell.run(tiny(epochs=1, size=3), progress=False)
    assert large["flops"] > 2 * small["flops"]


def test_divergence_is_recorded_not_raised(tiny_pool, monkeypatch, tmp_path):
    real = targets.loss
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["n"] > 4 else value

    monkeypatch.setattr(targets, "loss", exploding)
    rec = cell.run(tiny(epochs=3, record_dir=str(tmp_path)), progress=False)
    assert rec["status"] == "diverged" and "nan" in rec["error"]
    assert rec["metrics"] == {}


def test_pool_too_small_stops_before_work(tiny_pool, tmp_path):
    with pytest.raises(ValueError, match="n_train=500"):
        cell.run(tiny(n_train=500, record_dir=str(tmp_path)), progress=False)
    assert not list(tmp_path.iterdir())


def test_missing_data_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.aselmdb"):
        cell.run(tiny(data_path=str(tmp_path / "nowhere.aselmdb"), record_dir=str(tmp_path)))
    assert not list(tmp_path.iterdir())


def test_failure_during_training_writes_failed_record(tiny_pool, monkeypatch, tmp_path):
    from msl import train as train_module

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(cell, "train", broken)
    with pytest.raises(RuntimeError):
        cell.run(tiny(record_dir=str(tmp_path)), progress=False)
    (record,) = tmp_path.glob("*.json")
    assert '"failed"' in record.read_text() and "simulated" in record.read_text()


def test_min_steps_raises_epochs_only_where_d_is_small():
    from msl.train import plan_epochs

    cfg = config.from_dict({"epochs": 40, "min_steps": 500})
    assert plan_epochs(cfg, steps_per_epoch=2) == 250   # D = 40, batch 16
    assert plan_epochs(cfg, steps_per_epoch=80) == 40   # D = 1280: the epoch count rules


def test_validation_is_thinned_when_epochs_are_many(tiny_pool):
    from msl.train import MAX_EVALS

    rec = cell.run(tiny(epochs=1, min_steps=3 * MAX_EVALS * 3, n_train=24), progress=False)
    assert rec["epochs_run"] == 3 * MAX_EVALS and len(rec["history"]) <= MAX_EVALS
    assert rec["history"][-1]["epoch"] == rec["epochs_run"]


def test_a_cut_off_run_resumes_to_the_same_result(tiny_pool, monkeypatch, tmp_path):
    """Interrupt training after the 2nd validation, run the cell again: it continues from the
    saved state (not from scratch) and ends with exactly the uninterrupted run's result."""
    from msl import train as train_module

    whole = cell.run(tiny(epochs=4), progress=False)
    real, calls = train_module.evaluate, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill between the 2nd and 3rd validation
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", interrupted)
    cfg = tiny(epochs=4, record_dir=str(tmp_path / "records"))
    with pytest.raises(KeyboardInterrupt):
        cell.run(cfg, progress=False)
    state = tmp_path / "checkpoints" / f"{cfg.with_id().cell_id}.state.pt"
    assert state.exists() and not list((tmp_path / "records").glob("*.json"))
    torch.load(state, weights_only=True)  # tensors and plain values only: no pickled code
    monkeypatch.setattr(train_module, "evaluate", real)
    resumed = cell.run(cfg, progress=False)
    assert resumed["resumed_from_epoch"] == 2 and resumed["steps"] == whole["steps"]
    assert resumed["metrics"] == whole["metrics"]
    assert [h["val/loss"] for h in resumed["history"]] == [h["val/loss"] for h in whole["history"]]
    assert not state.exists()  # the training state goes once the record is written


def test_a_saved_state_of_another_run_is_ignored(tiny_pool, tmp_path):
    cfg = tiny(epochs=2, record_dir=str(tmp_path / "records"))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"key": {"cell_id": "someone-else", "epochs": 2}}, folder / f"{cfg.with_id().cell_id}.state.pt")
    rec = cell.run(cfg, progress=False)
    assert rec["status"] == "ok" and rec["resumed_from_epoch"] == 0


class _Payload:
    """Unpickling this runs ``open(path, "w")``: what a tampered state file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_state_file_with_pickled_code_is_not_run(tiny_pool, tmp_path):
    """The state is read with weights_only=True: a file holding pickled code is refused with a
    warning naming it, nothing in it runs, and training starts afresh (and overwrites it)."""
    cfg = tiny(epochs=2, record_dir=str(tmp_path / "records")).with_id()
    folder, marker = tmp_path / "checkpoints", tmp_path / "code-ran"
    folder.mkdir()
    state = folder / f"{cfg.cell_id}.state.pt"
    from msl.train import _state_key

    torch.save({"key": _state_key(cfg, 2), "payload": _Payload(marker)}, state)
    torch.load(state, weights_only=False)  # the payload is live: a plain load runs it
    assert marker.exists()
    marker.unlink()
    with pytest.warns(UserWarning, match=rf"ignoring the training state {state}: "
                      r"torch.load\(weights_only=True\) refused it \(it would call io.open\)"):
        rec = cell.run(cfg, progress=False)
    assert not marker.exists()
    assert rec["status"] == "ok" and rec["resumed_from_epoch"] == 0


def test_auto_threads(monkeypatch, capsys):
    from msl import threads as train_module
    from msl.threads import auto_threads

    monkeypatch.setattr(train_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(train_module.time, "sleep", lambda s: None)
    assert auto_threads(3) == 3  # asked for
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert auto_threads(0) == 5  # the environment's explicit choice
    monkeypatch.delenv("OMP_NUM_THREADS")

    def machine(load, running):
        monkeypatch.setattr(train_module.os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(train_module, "_running_tasks", lambda: running)
        return auto_threads(0)

    assert machine(0.2, 1) == 2 and capsys.readouterr().err == ""  # idle: every core
    assert machine(1.3, 2) == 1  # another process busy on one core
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "using 1 of 2 CPU cores" in err and "threads=N" in err
    assert machine(1.3, 1) == 2  # the load is a run that has just ended: nothing runs now
    assert machine(0.1, 2) == 1  # a run started at the same moment: not in the load average yet
    assert machine(1.3, None) == 1 and machine(0.4, None) == 2  # not Linux: the load average
    assert machine(7.0, 9) == 1  # never fewer than one
    capsys.readouterr()


def test_thread_count_changes_results_only_by_round_off(tiny_pool):
    """Why auto_threads may pick the count from the machine's load: only float32 round-off
    (parallel sums in another order) depends on it."""
    one = cell.run(tiny(threads=1), progress=False)
    two = cell.run(tiny(threads=2), progress=False)
    assert one["metrics"] == pytest.approx(two["metrics"], rel=1e-5)
    assert one["steps"] == two["steps"]


def test_a_potential_needs_every_training_energy(tmp_path):
    """Labels left out of a file are NaN; a potential cannot fit reference energies to NaN."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for seed in range(6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((4, 3)))
        frames.append(atoms)
    write(tmp_path / "forces-only.extxyz", frames)
    cfg = config.from_dict({"data_path": str(tmp_path / "forces-only.extxyz"), "n_train": 2,
                            "n_val": 2, "n_test": 2, "record_dir": str(tmp_path / "records")})
    with pytest.raises(ValueError, match=r"needs the energy of every training structure.*"
                       r"forces-only\.extxyz has no energy \(2 of the 2"):
        cell.run(cfg, progress=False)
    assert not (tmp_path / "records").exists()


def test_peak_lr_follows_the_width_rule():
    from msl.train import peak_lr

    cfg = config.from_dict({"max_lr": 1e-3, "lr_gamma": 1.0, "lr_ref_params": 1000})
    assert peak_lr(cfg, 1000) == pytest.approx(1e-3)
    assert peak_lr(cfg, 4000) == pytest.approx(2.5e-4)
    assert peak_lr(config.from_dict({"max_lr": 1e-3}), 4000) == 1e-3


def test_trikha_table_is_the_papers_loss(tiny_pool):
    """2.5 per-atom energy MAE + 20 force L2-MAE + 5 isotropic + 5 deviatoric stress MAE."""
    from torch_geometric.data import Batch, Data

    terms = targets.table("trikha")
    assert [(t.target, t.loss, t.weight) for t in terms] == [
        ("energy", "mae", 2.5), ("forces", "l2mae", 20.0), ("stress_iso", "mae", 5.0),
        ("stress_aniso", "mae", 5.0)]
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    data = [Data(energy=rand(1), forces=rand(n, 3), stress=rand(1, 3, 3), cell=rand(1, 3, 3),
                 num_nodes=n) for n in (2, 5)]
    batch = Batch.from_data_list(data)
    out = {"energy": rand(2), "forces": rand(7, 3), "stress": rand(2, 3, 3)}
    n = torch.tensor([2.0, 5.0], dtype=torch.float64)
    e = ((out["energy"] - batch.energy) / n).abs().mean()
    f = (out["forces"] - batch.forces).norm(dim=1).mean()
    tr = lambda s: s.diagonal(dim1=1, dim2=2).mean(1)  # noqa: E731
    iso = (tr(out["stress"]) - tr(batch.stress)).abs().mean()
    dev = lambda s: s - tr(s)[:, None, None] * torch.eye(3, dtype=s.dtype)  # noqa: E731
    aniso = (dev(out["stress"]) - dev(batch.stress)).abs().mean()
    scales = targets.Scales({k: 1.0 for k in targets.TARGETS})
    expected = 2.5 * e + 20 * f + 5 * iso + 5 * aniso
    assert float(targets.loss(out, batch, scales, terms)) == pytest.approx(float(expected))


def test_trikha_loss_trains_a_cell(tiny_pool):
    rec = cell.run(tiny(targets="trikha", epochs=3), progress=False)
    assert rec["status"] == "ok" and rec["targets"][1] == {
        "target": "forces", "level": "atom", "loss": "l2mae", "weight": 20.0}
    assert math.isfinite(rec["metrics"]["val/stress_aniso_mae"])


@pytest.mark.parametrize("model", ["schnet", "fcn"])
def test_trikha_families_train_a_cell(tiny_pool, model):
    """SchNet and the fully connected baseline, as the Trikha study trains them (a few steps)."""
    rec = cell.run(tiny(model=model, size=0, targets="trikha", epochs=1), progress=False)
    assert rec["status"] == "ok" and rec["model"] == model and rec["steps"] == 3
    for key in ("val/loss", "val/energy_mae", "val/forces_mae", "val/stress_aniso_mae"):
        assert math.isfinite(rec["metrics"][key]), key
    assert rec["n_params"] > rec["n_params_no_embed"] > 0 and rec["flops"] > 0


# --- the early-stopping protocol (max_steps, eval_every, patience, wsd) ---------------------------

def early(**kw):
    """A tiny cell under the early-stopping protocol: 3 steps an epoch (D = 24, batch 8)."""
    return tiny(**{"max_steps": 300, "eval_every": 3, "patience": 2, "schedule": "wsd",
                   "warmup_steps": 3, "max_lr": 5e-2, **kw})


def test_wsd_stops_by_patience_then_cools_down_from_the_best_state(tiny_pool):
    rec = cell.run(early(), progress=False)
    assert rec["stop_reason"] == "patience" and rec["stopped_early"] and rec["converged"]
    assert rec["steps"] < 300 and rec["cooldown_steps"] >= 1
    lrs = [h["lr"] for h in rec["history"]]
    stable = [h["lr"] for h in rec["history"] if h["step"] <= rec["steps"] - rec["cooldown_steps"]]
    assert stable[1:] == pytest.approx([5e-2] * (len(stable) - 1))  # constant after warm-up
    assert lrs[-1] == pytest.approx(5e-2 * 0.01)                     # cooled down to min_lr_frac
    best = min(h["val/loss"] for h in rec["history"])
    assert rec["metrics"]["val/loss"] == pytest.approx(best, rel=1e-5)  # the best state is kept


def test_the_cap_ends_a_run_that_is_still_improving(tiny_pool):
    rec = cell.run(early(max_steps=9, patience=50, max_lr=2e-3), progress=False)
    assert rec["stop_reason"] == "max_steps" and not rec["converged"]
    assert rec["steps"] == 9 + rec["cooldown_steps"]


def test_cosine_with_a_cap_stops_without_cooldown(tiny_pool):
    rec = cell.run(early(schedule="cosine", max_steps=12, patience=50), progress=False)
    assert rec["stop_reason"] == "max_steps" and rec["cooldown_steps"] == 0 and rec["steps"] == 12


def test_an_early_stopped_run_resumes_to_the_same_result(tiny_pool, monkeypatch, tmp_path):
    """Kill during the cool-down's first validation: the resumed run ends as the whole one."""
    from msl import train as train_module

    whole = cell.run(early(), progress=False)
    n_evals = len(whole["history"])
    real, calls = train_module.evaluate, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n_evals:  # the last validation (in the cool-down)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", interrupted)
    cfg = early(record_dir=str(tmp_path / "records"))
    with pytest.raises(KeyboardInterrupt):
        cell.run(cfg, progress=False)
    monkeypatch.setattr(train_module, "evaluate", real)
    resumed = cell.run(cfg, progress=False)
    assert resumed["resumed_from_epoch"] > 0 and resumed["steps"] == whole["steps"]
    assert resumed["stop_reason"] == whole["stop_reason"] == "patience"
    assert resumed["metrics"] == whole["metrics"]


@pytest.mark.parametrize("values, word", [
    ({"max_steps": 100}, "eval_every"),
    ({"max_steps": 100, "eval_every": 10}, "patience"),
    ({"schedule": "wsd"}, "max_steps"),
    ({"schedule": "linear"}, "schedule"),
    ({"cooldown_frac": 0.0}, "cooldown_frac"),
    ({"max_steps": -5}, "max_steps"),
    ({"reference": "val"}, "reference"),
])
def test_protocol_settings_are_checked(values, word):
    with pytest.raises(ValueError, match=word):
        config.from_dict(values)


def test_new_protocol_fields_keep_earlier_cell_ids():
    """Fields added with the early-stopping protocol enter the id only when set: every cell
    published before them keeps its id (this one is a committed fixture record)."""
    from msl import grid

    ids = {cfg.cell_id for cfg, _ in grid.load("tests/fixtures/study").cells()}
    assert "optimetal2b-s0-d16-seed0-827cedf8" in ids
    assert early().with_id().cell_id != early(max_steps=600).with_id().cell_id


def test_plateau_cuts_the_rate_at_each_plateau_and_stops_at_the_floor(tiny_pool):
    """``plateau``: the rate drops by ``lr_decay`` after every ``patience`` validations without
    improvement; the run ends (by patience) when the next cut would go below ``min_lr_frac``."""
    rec = cell.run(early(schedule="plateau", lr_decay=0.3, min_lr_frac=0.01, patience=1,
                         max_lr=0.3), progress=False)
    assert rec["stop_reason"] == "patience" and rec["converged"] and rec["cooldown_steps"] == 0
    levels = sorted({round(h["lr"] / 0.3, 6) for h in rec["history"] if h["step"] > 3},
                    reverse=True)
    assert levels == pytest.approx([1.0, 0.3, 0.09, 0.027])  # 0.0081 < 0.01: stop instead
    best = min(h["val/loss"] for h in rec["history"])
    assert rec["metrics"]["val/loss"] == pytest.approx(best, rel=1e-5)


def test_a_plateau_run_resumes_on_its_level(tiny_pool, monkeypatch, tmp_path):
    """Killed after its second cut, a plateau run resumes on the same level to the same end."""
    from msl import train as train_module

    kw = dict(schedule="plateau", patience=1, max_lr=0.3)
    whole = cell.run(early(**kw), progress=False)
    cut = next(i for i, h in enumerate(whole["history"]) if h["lr"] < 0.3 * 0.3 * 1.01)
    real, calls = train_module.evaluate, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == cut + 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", interrupted)
    cfg = early(record_dir=str(tmp_path / "records"), **kw)
    with pytest.raises(KeyboardInterrupt):
        cell.run(cfg, progress=False)
    monkeypatch.setattr(train_module, "evaluate", real)
    resumed = cell.run(cfg, progress=False)
    assert resumed["resumed_from_epoch"] > 0 and resumed["steps"] == whole["steps"]
    assert [h["lr"] for h in resumed["history"]] == [h["lr"] for h in whole["history"]]
    assert resumed["metrics"] == whole["metrics"]


@pytest.mark.parametrize("kind, cutoff", [("emt", 5.0), ("emt-vdos", 5.0)])
def test_collate_builds_torch_geometrics_batch(tiny_pool, tiny_vdos_pool, kind, cutoff):
    """The trainer's collation (msl.graph.collate) equals torch-geometric's Batch key by key."""
    from torch_geometric.data import Batch

    from msl import data, graph

    pool = data.read(tiny_pool if kind == "emt" else tiny_vdos_pool)
    graphs = graph.build(pool, cutoff)[:7]
    ours, theirs = graph.collate(graphs), Batch.from_data_list(graphs)
    assert ours.num_graphs == theirs.num_graphs and ours.num_nodes == theirs.num_nodes
    for key in theirs.keys():
        a, b = getattr(ours, key), getattr(theirs, key)
        assert torch.equal(a, b) if torch.is_tensor(b) else a == b, key


def test_reported_losses_are_normalised_alike_for_every_d(tiny_pool):
    """Validation and test losses are normalised by the fixed validation set's spreads, the
    same for every D (the training loss keeps the training set's): with D = 2 a training-set
    normalisation made the validation loss 10^5."""
    small = cell.run(tiny(n_train=2, epochs=1), progress=False)
    large = cell.run(tiny(n_train=24, epochs=1), progress=False)
    assert small["eval_scales"] == large["eval_scales"]
    assert small["scales"] != large["scales"]
    assert small["metrics"]["val/loss"] < 100


def test_pool_references_are_fitted_outside_validation_and_test(tiny_pool, monkeypatch):
    """reference="pool" fits the per-element reference energies on every structure outside the
    validation and test sets, the same for every D; the default fits them on the D structures."""
    from msl import data
    from msl.models.potential import reference_fit

    fitted = []

    def stop(model, *args, **kwargs):
        fitted.append(model.atom_ref.clone())
        raise RuntimeError("stop before training")

    monkeypatch.setattr(cell, "train", stop)
    for n_train, where in ((2, "pool"), (24, "pool"), (2, "train")):
        with pytest.raises(RuntimeError, match="stop before training"):
            cell.run(tiny(n_train=n_train, reference=where), progress=False)
    structures = data.read(cell.dataset_path(tiny()))
    pool = structures.subset(data.split(len(structures), 16, 16, seed=0).train_order)
    expected = reference_fit(pool.numbers, pool.n_atoms, pool.energy)[0]
    assert torch.equal(fitted[0], fitted[1]) and not torch.allclose(fitted[0], fitted[2])
    assert np.allclose(fitted[0].double().numpy(), expected, atol=1e-4)
    assert tiny(reference="pool").with_id().cell_id != tiny().with_id().cell_id
