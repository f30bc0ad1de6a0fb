"""SchNet (Schütt et al. 2017), torch-geometric's :class:`torch_geometric.nn.models.SchNet`, as a
conservative msl potential on periodic graphs: the classic invariant baseline.

What torch-geometric provides, used as it is (modules, initialisation, functions): atoms embedded
by atomic number; ``num_interactions`` interaction blocks ``h += Lin(SSP(CFConv(h)))``, each a
continuous-filter convolution whose filters are an MLP of ``num_gaussians`` Gaussians of the
distance times the cosine cutoff ``0.5 (cos(pi r / cutoff) + 1)``; an atom-wise readout
``Lin(SSP(Lin(h)))`` to one scalar per atom (SSP: shifted softplus).

What this wrapper adds, the way fairchem 1.x's ``SchNetWrap`` fed periodic graphs to the same
class: PyG's ``SchNet.forward`` builds a radius graph of the bare positions (no periodic images,
and it needs torch-cluster), so :meth:`SchNet.atom_features` calls the model's own submodules in
the order ``forward`` does, on msl's periodic edges (``msl.graph``: images included) and their
lengths from the edge vectors that :class:`~msl.models.potential.Potential` computes from the
strained positions and cell. So the energy is PyG's SchNet's with ``readout="add"`` (extensive:
a sum over atoms), plus msl's per-element reference energies and residual scale (buffers, in
place of PyG's ``atomref``, ``mean`` and ``std``); forces and stress are its derivatives.
Edges at or beyond ``cutoff`` are dropped, because the cosine cutoff rises again past it
(tested: a graph cut at 1.5 cutoffs gives the same outputs). The tests check the equality with
PyG's own ``forward`` on a molecule. The one change to PyG's modules: its Gaussian expansion is
swapped for :class:`~msl.models.potential.GaussianBasis`, a subclass with the same buffers and
values that, on the fast path, drops subnormal features that slow CPU matrix products.

Smoothness at the cutoff, as PyG's SchNet has it: the cosine cutoff and its slope vanish there,
its curvature does not, so energy and forces are continuous and forces vanish linearly (not
quadratically, as under the polynomial envelope of the other families) when a neighbour leaves;
the shared physics suite checks each family at its own order (:attr:`SchNet.cutoff_order`).

Invariant to rotation, translation, permutation and lattice translations, by construction; the
shared physics suite checks all of them. PyG's embedding has 100 rows (atomic numbers 1..99).

One size dial: ``size`` indexes ``LADDER`` of (hidden channels = filters, interactions), at 50
Gaussians and a 5 Å cutoff (the other families' cutoff; Trikha et al. used 5 Å and 50 Gaussians
with (64, 3), (128, 6) and (256, 8), research/papers.md §1.9). Counts of every rung, 1.5 thousand
to 0.98 million parameters (2.8 decades), are pinned in ``tests/models/test_models_ladder.py``.
"""

from __future__ import annotations

from typing import NamedTuple

from torch_geometric.nn.models import SchNet as PygSchNet

from msl.models.potential import GaussianBasis, Potential

TASK = "potential"
CUTOFF = 5.0        # Å, as the other families and Trikha et al.'s SchNet
N_GAUSSIANS = 50    # Gaussians of the distance (PyG's default, Trikha et al.'s value)


class Rung(NamedTuple):
    hidden: int        # hidden channels, and the number of filters
    interactions: int  # interaction blocks


LADDER = [Rung(*r) for r in [(8, 1), (12, 1), (16, 2), (24, 2), (32, 3), (48, 3), (64, 3),
                             (96, 4), (128, 6), (192, 6)]]


class SchNet(Potential):
    """torch-geometric's SchNet on msl's periodic edges (see module docstring)."""

    cutoff_order = 1  # the cosine cutoff: the energy and its first derivative are continuous

    def __init__(self, rung: Rung, cutoff: float = CUTOFF, n_gaussians: int = N_GAUSSIANS):
        super().__init__(cutoff)
        self.net = PygSchNet(hidden_channels=rung.hidden, num_filters=rung.hidden,
                             num_interactions=rung.interactions, num_gaussians=n_gaussians,
                             cutoff=cutoff, readout="add")
        self.net.distance_expansion = GaussianBasis(0.0, cutoff, n_gaussians)

    def atom_features(self, z, edge_vec, edge_index, batch):
        """Per-atom outputs of PyG's ``SchNet.forward`` before its readout, on msl's edges."""
        r = edge_vec.norm(dim=-1)
        inside = r < self.cutoff
        edge_index, r = edge_index[:, inside], r[inside]
        net = self.net
        h = net.embedding(z)
        edge_attr = net.distance_expansion(r)
        for interaction in net.interactions:
            h = h + interaction(h, edge_index, r, edge_attr)
        return net.lin2(net.act(net.lin1(h))).squeeze(-1)


def build(size: int) -> SchNet:
    """Rung ``size`` of the ladder (0 <= size < len(LADDER))."""
    return SchNet(LADDER[size])
