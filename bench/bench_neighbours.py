"""Periodic neighbour lists: matscipy's compiled code (what msl.graph uses) against ASE's.

Prints the time per structure of each on the same random EMT-alloy cells, and their ratio.
Usage: python bench/bench_neighbours.py [--n 300] [--cutoff 5.0]
"""

import argparse
import time

import numpy as np
from ase.neighborlist import neighbor_list as ase_neighbor_list

from msl import data
from msl.cell import data_dir
from msl.graph import edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="structures timed")
    parser.add_argument("--cutoff", type=float, default=5.0, help="Å")
    args = parser.parse_args()
    structures = data.read(data.embedded(max(args.n, 300), cache_dir=data_dir(), progress=False))
    atoms = [structures.atoms(i) for i in range(args.n)]

    start = time.perf_counter()
    counts = [edges(a.positions, a.cell[:], a.pbc, args.cutoff)[0].shape[1] for a in atoms]
    ours = (time.perf_counter() - start) / args.n
    start = time.perf_counter()
    reference = [len(ase_neighbor_list("i", a, args.cutoff)) for a in atoms]
    theirs = (time.perf_counter() - start) / args.n
    assert counts == reference, "matscipy and ASE disagree on the number of edges"
    print(f"{args.n} structures, mean {np.mean([len(a) for a in atoms]):.1f} atoms, "
          f"{np.mean(counts):.0f} edges each within {args.cutoff} Å")
    print(f"matscipy (msl.graph.edges): {ours * 1e3:.2f} ms/structure")
    print(f"ase.neighborlist:           {theirs * 1e3:.2f} ms/structure")
    print(f"ratio ase / matscipy: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
