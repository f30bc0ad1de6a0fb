"""Trainer overhead: msl.train.train against a bare PyTorch loop over the same model and batches.

Both run the same number of optimisation steps on the same embedded-dataset graphs with the same
model rung, batch size and optimiser; the bare loop has no scheduler, clipping, autocast,
progress bar, validation or FLOP counting. Prints structures/s of each and the overhead ratio.
Usage: python bench/bench_trainer.py [--model optimetal2b] [--size 2] [--targets default]
       [--n-train 256] [--epochs 4] [--threads 1]
"""

import argparse
import time

import torch
from torch_geometric.loader import DataLoader

from msl import config, data, graph, targets
from msl.cell import data_dir
from msl.models import build_model
from msl.train import train


def bare_loop(model, graphs, scales, terms, epochs, batch_size, lr, seed) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    model.train()
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            loss = targets.loss(model(batch, **targets.needs(terms)), batch, scales, terms)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n += batch.num_graphs
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="optimetal2b")
    parser.add_argument("--size", type=int, default=2)
    parser.add_argument("--targets", default="default", help="a target-table preset or spec")
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    structures = data.read(data.embedded(600, cache_dir=data_dir(), progress=False))
    train_set = structures.subset(range(args.n_train))
    cutoff = build_model(args.model, args.size).cutoff
    graphs = graph.build(train_set, cutoff)
    val = graph.build(structures.subset(range(500, 564)), cutoff)
    cfg = config.from_dict({"model": args.model, "size": args.size, "n_train": args.n_train,
                            "epochs": args.epochs, "batch_size": 16, "max_lr": 5e-3, "n_val": 64,
                            "targets": args.targets})
    terms = targets.table(cfg.targets)
    results = {}
    for name in ("bare", "msl", "bare", "msl"):  # interleaved, best of two each
        torch.manual_seed(0)
        model = build_model(args.model, args.size)
        model.fit_reference(train_set.numbers, train_set.n_atoms, train_set.energy)
        scales = targets.Scales.from_training(train_set, float(model.energy_scale))
        model.set_output_scales(scales.sigma["forces"], scales.sigma["stress"])
        if name == "bare":
            rate = bare_loop(model, graphs, scales, terms, args.epochs, 16, 5e-3, 0)
        else:
            rate = train(model, graphs, val, scales, cfg, progress=False).structures_per_second
        results[name] = max(results.get(name, 0.0), rate)
    print(f"{args.model} size {args.size}, targets {args.targets!r}, D = {args.n_train}, "
          f"{args.epochs} epochs, batch 16, {args.threads} thread(s)")
    print(f"bare PyTorch loop: {results['bare']:.1f} structures/s")
    print(f"msl trainer:       {results['msl']:.1f} structures/s (training steps only)")
    print(f"overhead: {(results['bare'] / results['msl'] - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
