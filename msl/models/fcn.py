"""Trikha et al.'s fully connected baseline (``--architecture FCN``): one MLP per atom, no messages.

Their ``omat24/models/fcn.py`` (research/papers.md §1.3 and §1.9): atoms are tokens of an element
embedding with the Cartesian position (Å, three floats) appended, as for their transformer; a
linear layer to width ``hidden``; ``depth`` residual blocks ``h += LeakyReLU(LayerNorm(W h + b))``;
then the three per-atom output heads of their transformer: energy (summed over atoms), direct
forces, and a 6-component Voigt stress summed over atoms. Tokens and heads are the transformer's
own (:class:`msl.models.transformer.TokenPotential`); what differs is that nothing mixes atoms:
every layer acts on one token.

One departure from their code, and why: the position appended to each token is measured from the
structure's centroid (the mean position of its atoms), not from the origin of the coordinates.
With raw positions a rigid shift of a structure changed every prediction; centred, energy, forces
and stress are exactly invariant to it, at no cost in parameters. The centroid is the only thing an
atom learns of the others (a per-atom model has no other route), so this FCN can learn the energy
of an atom as a function of its element and of where it sits in its cell, and nothing else: it is
the baseline that shows what a model without interactions reaches. Their code pads each batch to
[B, max_atoms, d + 3] and masks the padding; since every layer here acts on one atom, the padded
and the flat computations give the same numbers, and this module skips the padding.

What it respects, as tested in the shared physics suite (``tests/models/test_models_physics.py``)
and its own file: permutations of atoms, any of them, including exchanges of two atoms of one
element (energy and stress invariant, forces permuted); rigid translations; batches (each
structure is independent of the others). What it does not, by design (:attr:`FCN.breaks` says
why, and the suite skips these tests): rotations, periodicity, locality. It ignores the edges and
the cutoff. Not conservative: forces and stress come from heads.

One size dial: ``size`` indexes ``LADDER``, which holds their five configurations (embedding,
hidden, depth) = (8, 16, 2), (24, 48, 4), (60, 108, 8), (96, 192, 12), (128, 256, 15) and four
between them. Their comments give 970 to 1 M parameters (we could not reproduce these counts
from their code); ours span 10 thousand to 1.3 million (2.1 decades), with the 128-wide
``MLPOutput`` heads of msl's plain transformer, which hold 8.6 of the 10 thousand at the smallest
rung. Counts of every rung are pinned in ``tests/models/test_models_ladder.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from msl.models.potential import MAX_Z
from msl.models.transformer import CUTOFF, TokenPotential

TASK = "potential"


class Rung(NamedTuple):
    embed: int      # element embedding width
    hidden: int     # width of the residual blocks and of the heads' input
    depth: int      # residual blocks


LADDER = [Rung(*r) for r in [
    (8, 16, 2), (16, 32, 2), (24, 48, 4), (32, 64, 4), (48, 96, 6), (60, 108, 8), (80, 160, 8),
    (96, 192, 12), (128, 256, 15)]]


class FCN(TokenPotential):
    """Per-atom MLP over [element embedding, centred position] with direct heads (see module
    docstring)."""

    breaks = {
        "rotation": "its tokens hold Cartesian positions and its force and stress heads emit "
                    "Cartesian components, so rotating a structure does not rotate its outputs",
        "periodicity": "its tokens hold positions, not positions modulo the cell: wrapping an atom "
                       "into the cell or moving it by a lattice vector changes the outputs, and "
                       "its per-atom stresses are summed, so a supercell's stress is not its "
                       "cell's",
        "locality": "it has no cutoff and direct force heads: a free atom gets a force, and the "
                    "centroid couples atoms at any distance",
    }

    def __init__(self, rung: Rung, cutoff: float = CUTOFF):
        super().__init__(cutoff)  # for the neighbour lists of the data pipeline; unused here
        self.embed = nn.Embedding(MAX_Z + 1, rung.embed)
        self.lin_in = nn.Linear(rung.embed + 3, rung.hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(rung.hidden, rung.hidden), nn.LayerNorm(rung.hidden),
                          nn.LeakyReLU())
            for _ in range(rung.depth))
        self.add_heads(rung.hidden)

    def heads(self, z, pos, edge_vec, batch, n_graphs: int):
        graph = batch.batch
        total = pos.new_zeros(n_graphs, 3).index_add(0, graph, pos)
        n_atoms = torch.bincount(graph, minlength=n_graphs).clamp_min(1).to(pos.dtype)
        centred = pos - (total / n_atoms[:, None]).index_select(0, graph)  # from the centroid
        h = self.lin_in(self.tokens(z, centred))
        for block in self.blocks:
            h = h + block(h)
        return self.read_out(h, graph, n_graphs)


def build(size: int) -> FCN:
    """Rung ``size`` of the ladder (0 <= size < len(LADDER))."""
    return FCN(LADDER[size])
