"""OptiMetal3B-style potential: OptiMetal2B plus three-body (angle) messages (energy variant).

Three-body terms in the manner of M3GNet and Großmann et al.'s OptiMetal3B, built on the pieces of
:mod:`msl.models.optimetal` (embedding, Gaussian basis, envelope, CGC convolution, residual MLPs,
readout). Notation: edge a = (j -> i) with vector r_a = r_j - r_i (+ image shift), length r_a;
u5 and u4 are polynomial envelopes at ``CUTOFF`` = 5 Å and ``TRIPLET_CUTOFF`` = 4 Å.

- triplets: for every atom i, all ordered pairs (a, b) of distinct edges into i with r_a, r_b <
  4 Å (the M3GNet choice), found on the fly from ``edge_index`` by index arithmetic
  (:func:`triplets`); an atom with c such edges has c(c-1) of them.
- angle features ``P_l(cos theta_ab)``, l = 0..``L_MAX`` (Legendre polynomials, i.e. the m = 0
  spherical harmonics of the paper), cos theta_ab = r_a . r_b / (r_a r_b), with the weight
  ``w_ab = u4(r_a) u4(r_b)``, so that a triplet enters and leaves smoothly at 4 Å.
- edge features ``e_a = MLP(RBF_SCALE * gaussians(r_a))``, width d_h.
- ``N_BLOCKS`` blocks, each:
    1. edge update from its atoms: ``e_a += MLP([h_j, h_i, e_a])``;
    2. line-graph message passing (edges as nodes, triplets as their edges, b -> a): the CGC
       convolution of optimetal2b, ``e_a += sum_b w_ab sigmoid(z W_f) softplus(z W_s) / norm``,
       z = [e_a, e_b, P(cos theta_ab)];
    3. atom update as in optimetal2b, CGC with e_a as the edge features and u5(r_a) as weight:
       ``h_i += sum_a u5 sigmoid(.) softplus(.) / norm``, then ``h += MLP(LayerNorm(h))``.
- readout: atom-wise MLP, summed to the energy by :class:`~msl.models.potential.Potential`.

Smoothness: every message into an atom carries u5 and every three-body message carries u4 u4,
and all features are smooth in the distances and in cos theta, so the energy is twice
differentiable and continuous when a pair crosses 5 Å or a bond crosses 4 Å. Invariance: only
distances and cosines enter.

One size dial: ``size`` indexes ``WIDTHS`` (the ladder of optimetal2b). Parameter counts of every
rung are pinned by ``tests/models/test_models_variants.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from msl.models import potential
from msl.models.optimetal import (CUTOFF, N_BLOCKS, N_RBF, RBF_SCALE, WIDTHS, EnvelopeCGConv,
                                  _mlp)
from msl.models.potential import MAX_Z, GaussianBasis, PolynomialEnvelope, Potential

TRIPLET_CUTOFF = 4.0  # Å, both bonds of a triplet are shorter than this
L_MAX = 3             # angle features P_0 .. P_L_MAX of cos theta


class OptiMetal3B(Potential):
    """Three-body potential of hidden width ``width`` (see module docstring)."""

    def __init__(self, width: int, n_blocks: int = N_BLOCKS, n_rbf: int = N_RBF,
                 cutoff: float = CUTOFF, triplet_cutoff: float = TRIPLET_CUTOFF,
                 l_max: int = L_MAX):
        super().__init__(cutoff)
        self.l_max = int(l_max)
        self.embed = nn.Embedding(MAX_Z + 1, width)
        self.rbf = GaussianBasis(0.0, cutoff, n_rbf)
        self.envelope = PolynomialEnvelope(cutoff)
        self.triplet_envelope = PolynomialEnvelope(triplet_cutoff)
        self.edge_embed = _mlp(n_rbf, width, width)
        self.edge_mlps = nn.ModuleList(_mlp(3 * width, width, width) for _ in range(n_blocks))
        self.angle_convs = nn.ModuleList(EnvelopeCGConv(width, l_max + 1)
                                         for _ in range(n_blocks))
        self.convs = nn.ModuleList(EnvelopeCGConv(width, width) for _ in range(n_blocks))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(n_blocks))
        self.mlps = nn.ModuleList(_mlp(width, 2 * width, width) for _ in range(n_blocks))
        self.readout = _mlp(width, width, 1)

    def atom_features(self, z, edge_vec, edge_index, batch):
        if not potential.FUSED:
            return self._reference_atom_features(z, edge_vec, edge_index, batch)
        src, dst = edge_index
        r = edge_vec.norm(dim=-1)
        edge_weight = self.envelope(r)
        pair = triplets(edge_index, r, self.triplet_envelope.cutoff, z.shape[0])
        b, a = pair
        # per-edge quantities first, then gathered to the (about 6 times more) triplets
        unit = edge_vec / r.unsqueeze(-1)
        cos = (unit.index_select(0, a) * unit.index_select(0, b)).sum(-1)
        angle_attr = legendre(cos, self.l_max)
        u4 = self.triplet_envelope(r)
        angle_weight = u4.index_select(0, a) * u4.index_select(0, b)
        h = self.embed(z)
        e = self.edge_embed(RBF_SCALE * self.rbf(r))
        for edge_mlp, angle_conv, conv, norm, mlp in zip(self.edge_mlps, self.angle_convs,
                                                         self.convs, self.norms, self.mlps):
            e = e + _edge_mlp(edge_mlp, h, e, src, dst)
            e = angle_conv(e, pair, angle_attr, angle_weight)
            h = conv(h, edge_index, e, edge_weight)
            h = h + mlp(norm(h))
        return self.readout(h).squeeze(-1)

    def _reference_atom_features(self, z, edge_vec, edge_index, batch):
        """The code this model ran before ``msl.models.potential.FUSED`` (same function)."""
        src, dst = edge_index
        r = edge_vec.norm(dim=-1)
        edge_weight = self.envelope(r)
        pair = triplets(edge_index, r, self.triplet_envelope.cutoff, z.shape[0])
        b, a = pair
        cos = (edge_vec[a] * edge_vec[b]).sum(-1) / (r[a] * r[b])
        angle_attr = legendre(cos, self.l_max)
        angle_weight = self.triplet_envelope(r[a]) * self.triplet_envelope(r[b])
        h = self.embed(z)
        e = self.edge_embed(RBF_SCALE * self.rbf(r))
        for edge_mlp, angle_conv, conv, norm, mlp in zip(self.edge_mlps, self.angle_convs,
                                                         self.convs, self.norms, self.mlps):
            e = e + edge_mlp(torch.cat([h[src], h[dst], e], dim=-1))
            e = angle_conv(e, pair, angle_attr, angle_weight)
            h = conv(h, edge_index, e, edge_weight)
            h = h + mlp(norm(h))
        return self.readout(h).squeeze(-1)


def _edge_mlp(mlp: nn.Sequential, h, e, src, dst):
    """``mlp(cat([h[src], h[dst], e]))`` with the first layer's atom blocks applied per atom.

    The first Linear acts on [h_j, h_i, e_a]; split into its three column blocks, the two atom
    blocks are applied to the N atoms and gathered, instead of building the [E, 3 d_h]
    concatenation and multiplying it per edge (the trick of ``EnvelopeCGConv``).
    """
    first, act, last = mlp
    w, n_out = h.shape[1], first.out_features
    node = h @ torch.cat([first.weight[:, :w], first.weight[:, w:2 * w]]).T  # [N, 2 n_out]
    hidden = (node[:, :n_out].index_select(0, src) + node[:, n_out:].index_select(0, dst)
              + torch.addmm(first.bias, e, first.weight[:, 2 * w:].T))
    return last(act(hidden))


def triplets(edge_index: torch.Tensor, r: torch.Tensor, cutoff: float, n_atoms: int):
    """Ordered pairs of distinct edges into the same atom, both shorter than ``cutoff``.

    Returns ``[2, T]`` int64 rows (b, a): indices into the edge list, oriented as a line graph
    whose messages flow from edge b to edge a (both edges point into the shared atom i). Pure
    index arithmetic on the edges, so it works on a batch and needs no neighbour-list library;
    the selection is discrete and is not differentiated (positions enter through ``r`` and the
    edge vectors, which the caller gathers with these indices).
    """
    with torch.no_grad():
        short = torch.nonzero(r < cutoff).squeeze(-1)
        target = edge_index[1, short]
        target, order = torch.sort(target, stable=True)
        short = short[order]                       # short edges grouped by their target atom
        count = torch.bincount(target, minlength=n_atoms)
        start = torch.cumsum(count, 0) - count     # first short edge of each atom
        partners = count[target]                   # for each short edge: edges into its atom
        first = torch.repeat_interleave(torch.arange(len(short), device=r.device), partners)
        offset = torch.arange(len(first), device=r.device) - torch.repeat_interleave(
            torch.cumsum(partners, 0) - partners, partners)
        second = start[target[first]] + offset
        keep = first != second
        return torch.stack([short[second[keep]], short[first[keep]]])


def legendre(x: torch.Tensor, l_max: int) -> torch.Tensor:
    """``[P_0(x), ..., P_l_max(x)]`` as [len(x), l_max + 1], by Bonnet's recursion."""
    p = [torch.ones_like(x), x]
    for n in range(1, l_max):
        p.append(((2 * n + 1) * x * p[n] - n * p[n - 1]) / (n + 1))
    return torch.stack(p[:l_max + 1], dim=-1)


def build(size: int) -> OptiMetal3B:
    """Rung ``size`` of the ladder (0 <= size < len(WIDTHS))."""
    return OptiMetal3B(WIDTHS[size])


LADDER = WIDTHS
