"""Training-step throughput: the fast model code against the reference code it replaced, same run.

Every setup trains one model from one initial state on the same batches of the embedded EMT pool
(2,400 structures) three times: with the reference model code (``msl.models.potential.FUSED =
False``, "old"), with the new code ("new"), and with the new code plus three proposed changes to
the trainer loop ("new+trainer", see :class:`Run`). Each step is the trainer's: collation,
forward, force backward, loss, parameter backward, gradient clipping, AdamW. Blocks of steps
alternate between the three runs, so machine load hits them alike; each run's throughput is its
best block. Prints structures per second per core (structures per CPU-second of this process,
which other processes on the machine do not slow down; with one thread, one core; wall-clock
rates are printed too) and the ratio to old, the largest relative difference of the training
losses along the runs (the same function: round-off only), and the matmul FLOP rate of the new
code (FLOPs counted as ``msl.train.count_flops`` does) as a fraction of one core's peak.

Setups: the default study's largest D cell (optimetal2b size 2, batch 16, D = 1,280), the other
conservative families at that rung and D, and transformer_local at the Trikha study's data-scan
cell (size 3, batch 8, D = 640, Trikha's loss). Options list batch sizes (throughput per core of
the new code at each, default study's cell) and cutoffs (edges per atom of the pool).

Usage: python bench/bench_step.py [--setups default,tc,3b,local] [--steps 10] [--blocks 3]
       [--threads 1] [--batch-sizes 16,32,64] [--cutoffs 4,4.5,5] [--peak-gflops 166.4]
"""

import argparse
import math
import time

import torch
from torch_geometric.loader import DataLoader

from msl import data, graph, targets
from msl.cell import data_dir
from msl.models import build_model, potential
from msl.train import count_flops

SETUPS = {  # name: (family, size, batch size, D, targets)
    "default": ("optimetal2b", 2, 16, 1280, "default"),
    "tc": ("optimetal2b_tc", 2, 16, 1280, "default"),
    "3b": ("optimetal3b", 2, 16, 1280, "default"),
    "local": ("transformer_local", 3, 8, 640, "trikha"),
}
POOL = 2400
# one core's fp32 peak: 2.6 GHz (the TSC clock lscpu reports as BogoMIPS / 2 on the benchmark
# machine, an Intel Xeon with AVX-512 and AMX) x 64 FLOPs/cycle (two AVX-512 FMA units)
PEAK_GFLOPS = 2.6 * 64


def pool():
    structures = data.read(data.embedded(POOL, seed=0, cache_dir=data_dir(), progress=False))
    split = data.split(len(structures), 200, 200, seed=0, split_seed=0)
    return structures, split


def prepare(structures, split, family, size, n_train, target_spec):
    """Model (seeded, reference energies and scales fitted), training graphs, scales, terms."""
    train_set = structures.subset(split.train(n_train))
    torch.manual_seed(0)
    model = build_model(family, size)
    model.fit_reference(train_set.numbers, train_set.n_atoms, train_set.energy)
    scales = targets.Scales.from_training(train_set, float(model.energy_scale))
    model.set_output_scales(scales.sigma["forces"], scales.sigma["stress"])
    graphs = graph.build(train_set, model.cutoff)
    return model, graphs, scales, targets.table(target_spec)


class Run:
    """One training run (model copy, AdamW, shuffled loader) advanced a block of steps at a time.

    ``trainer="proposed"`` adds three changes to the trainer loop, measured here first and now
    what ``msl.train`` runs: ``loss.backward(inputs=params)`` (the parameter backward skips the
    second derivatives with respect to positions and strain, which training never uses), AdamW
    with ``fused=True``, and batches collated by :func:`msl.graph.collate`.
    """

    def __init__(self, model, graphs, scales, terms, batch_size, fused, trainer="current"):
        self.model = model
        self.scales, self.terms, self.needs = scales, terms, targets.needs(terms)
        self.fused = fused
        self.proposed = trainer == "proposed"
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-3, fused=self.proposed or None)
        generator = torch.Generator().manual_seed(0)
        if self.proposed:
            self.loader = torch.utils.data.DataLoader(graphs, batch_size=batch_size, shuffle=True,
                                                      drop_last=True, generator=generator,
                                                      collate_fn=graph.collate)
        else:
            self.loader = DataLoader(graphs, batch_size=batch_size, shuffle=True, drop_last=True,
                                     generator=generator)
        self.batches = iter(self.loader)
        self.losses = []

    def steps(self, n):
        """Run ``n`` steps; returns (structures, CPU seconds, wall seconds)."""
        potential.FUSED = self.fused
        self.model.train()
        structures, cpu, wall = 0, time.process_time(), time.perf_counter()
        for _ in range(n):
            batch = next(self.batches, None)
            if batch is None:
                self.batches = iter(self.loader)
                batch = next(self.batches)
            loss = targets.loss(self.model(batch, **self.needs), batch, self.scales, self.terms)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=self.params if self.proposed else None)
            torch.nn.utils.clip_grad_norm_(self.params, 10.0)
            self.optimizer.step()
            self.losses.append(float(loss.detach()))
            structures += batch.num_graphs
        potential.FUSED = True
        return structures, time.process_time() - cpu, time.perf_counter() - wall


def compare(name, structures, split, steps, blocks, peak):
    family, size, batch_size, n_train, target_spec = SETUPS[name]
    model, graphs, scales, terms = prepare(structures, split, family, size, n_train, target_spec)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    runs = {}
    for label, fused, trainer in (("old", False, "current"), ("new", True, "current"),
                                  ("new+trainer", True, "proposed")):
        copy = build_model(family, size)
        copy.load_state_dict(state)
        runs[label] = Run(copy, graphs, scales, terms, batch_size, fused, trainer)
    for run in runs.values():
        run.steps(2)  # warm-up: allocator, first-call costs
    best = {label: (0.0, 0.0) for label in runs}
    for _ in range(blocks):
        for label, run in runs.items():
            n, cpu, wall = run.steps(steps)
            best[label] = (max(best[label][0], n / cpu), max(best[label][1], n / wall))
    old = runs["old"].losses
    rel = max(abs(a - b) / abs(a) for run in ("new", "new+trainer")
              for a, b in zip(old, runs[run].losses))
    batch = next(iter(DataLoader(graphs, batch_size=batch_size)))
    flops = count_flops(runs["new"].model, batch, scales, terms)  # matmul FLOPs of this batch
    potential.FUSED = True
    seconds = _step_seconds(runs["new"], batch)
    print(f"{name:8s} {family} size {size}, batch {batch_size}, D = {n_train}, "
          f"targets {target_spec!r}")
    for label in ("old", "new", "new+trainer"):
        cpu, wall = best[label]
        print(f"         {label:12s} {cpu:7.1f} structures/s per core, ratio to old "
              f"{cpu / best['old'][0]:.2f}x   (wall clock: {wall:.1f}/s, "
              f"{wall / best['old'][1]:.2f}x)")
    print(f"         loss along {len(old)} steps: largest relative difference to old {rel:.1e}")
    print(f"         matmul FLOPs per step {flops / 1e6:.1f} M in {seconds * 1e3:.1f} ms CPU: "
          f"{flops / seconds / 1e9:.2f} GFLOP/s = {100 * flops / seconds / 1e9 / peak:.2f}% "
          f"of one core's peak ({peak:.0f} GFLOP/s)")
    return best["new"][0] / best["old"][0]


def _step_seconds(run, batch, n=5):
    """CPU seconds of one training step on ``batch`` (best of ``n``), collation excluded."""
    best = math.inf
    for _ in range(n):
        start = time.process_time()
        loss = targets.loss(run.model(batch, **run.needs), batch, run.scales, run.terms)
        run.model.zero_grad(set_to_none=True)
        loss.backward()
        best = min(best, time.process_time() - start)
    run.model.zero_grad(set_to_none=True)
    return best


def batch_sizes(structures, split, sizes, steps):
    """Structures per CPU-second of the new path at each batch size (default study's cell)."""
    family, size, _, n_train, target_spec = SETUPS["default"]
    model, graphs, scales, terms = prepare(structures, split, family, size, n_train, target_spec)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rates = {}
    for bs in sizes:
        model.load_state_dict(state)
        run = Run(model, graphs, scales, terms, bs, True)
        run.steps(2)
        rates[bs] = max(_rate(run, max(2, steps * 16 // bs)) for _ in range(3))
    base = rates[sizes[0]]
    print(f"{family} size {size}, D = {n_train}, new path: structures/s per core by batch size")
    for bs, rate in rates.items():
        print(f"         batch {bs:3d}: {rate:7.1f}  ({rate / base:.2f}x batch {sizes[0]})")


def _rate(run, n):
    structures, cpu, _ = run.steps(n)
    return structures / cpu


def edges_per_atom(structures, cutoffs):
    sample = structures.subset(range(400))
    print("edges per atom of the pool (first 400 structures) by cutoff:")
    for cutoff in cutoffs:
        graphs = graph.build(sample, cutoff)
        n_edges = sum(g.edge_index.shape[1] for g in graphs)
        print(f"         {cutoff:.1f} Å: {n_edges / sum(g.num_nodes for g in graphs):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default="default,tc,3b,local")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks per path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", default="", help="e.g. 16,32,64")
    parser.add_argument("--cutoffs", default="", help="e.g. 4,4.5,5")
    parser.add_argument("--peak-gflops", type=float, default=PEAK_GFLOPS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    structures, split = pool()
    print(f"{args.threads} thread(s); blocks of {args.steps} steps, the runs alternating, "
          f"best of {args.blocks} blocks each")
    for name in filter(None, args.setups.split(",")):
        compare(name, structures, split, args.steps, args.blocks, args.peak_gflops)
    if args.batch_sizes:
        batch_sizes(structures, split, [int(b) for b in args.batch_sizes.split(",")], args.steps)
    if args.cutoffs:
        edges_per_atom(structures, [float(c) for c in args.cutoffs.split(",")])


if __name__ == "__main__":
    main()
