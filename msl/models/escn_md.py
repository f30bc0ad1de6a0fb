"""fairchem-core's eSCN-MD backbone (the UMA architecture) as a conservative msl potential.

What fairchem provides: :class:`fairchem.core.models.uma.escn_md.eSCNMDBackbone`, built here from
its constructor (no pretrained weights): atoms embedded by atomic number as l=0 coefficients of
``sphere_channels`` spherical-harmonic channels up to degree ``lmax``; an edge-degree embedding;
``num_layers`` eSCN-MD blocks, each an SO(2) convolution in the frame of every edge (Passaro &
Zitnick 2023) followed by an atom-wise feed-forward, under equivariant RMS norms; every edge
message is multiplied by fairchem's degree-5 polynomial envelope of r / cutoff, so the energy is
smooth when atoms cross the cutoff. Its output is the node embedding [n_atoms, (lmax+1)^2, C].

What this wrapper adds:

- msl's graph instead of fairchem's: the backbone runs with its on-the-fly graph off and is fed
  the edge vectors that :class:`~msl.models.potential.Potential` computes from the strained
  ``pos`` and ``cell`` (see :meth:`EscnMD.atom_features`);
- an energy MLP on the l=0 channels of the node embedding (fairchem's ``MLP_EFS_Head`` layout),
  giving one invariant scalar per atom; :class:`~msl.models.potential.Potential` turns it into
  energy (eV), forces = -dE/dpos (eV/Å) and stress = dE/dstrain / V (eV/Å^3, ASE sign);
- neutral defaults for UMA's system inputs: charge 0, spin 0 (fairchem's null spin), no dataset
  embedding (msl trains on one dataset at a time).

Choices that differ from UMA's, each for a reason the shared float64 physics tests check:

- ``act_type="gate"`` and ``ff_type="spectral"`` (gated nonlinearities): exactly equivariant.
  UMA's ``ff_type="grid"`` applies its MLP on a sampled sphere, equivariant only up to the grid's
  quadrature error (``research/stack.md`` 2b);
- ``N_DISTANCE_BASIS = 16`` Gaussians over the cutoff (width 0.67 Å) instead of UMA's 512: with
  64 (width 0.16 Å) a perturbed rung-1 model's energy was so curved that central differences with
  h = 1e-4 Å missed the autograd forces by 1.6e-6 eV/Å, all of it O(h^2) truncation (it fell
  100-fold at h = 1e-5); 32 was still borderline (3e-7), 16 leaves a margin of 10.

Two behaviours inherited from fairchem: each forward draws a random roll angle per edge about
its axis (``torch.rand``, so it consumes the global RNG; the energy does not depend on it beyond
round-off, 1e-15 relative in float64); a batch without any edge gets one dummy self-loop, which
the envelope zeroes.

One size dial: ``size`` indexes ``LADDER``; each rung sets width (``sphere_channels`` = hidden =
edge channels), ``lmax`` = ``mmax`` and ``num_layers``. N grows about as width^2 (the radial MLPs
that make the SO(2) weights of every edge dominate); the ladder spans 8.5 k to 19 M parameters.
Parameter counts of every rung are pinned in ``tests/models/test_models_ladder.py``; the element,
source and target embedding tables are ``nn.Embedding`` (left out of ``n_params_no_embed``);
fairchem's charge and spin embeddings are fixed (not trained) and so not counted.
"""

from __future__ import annotations

import torch
from torch import nn

from msl.models.potential import MAX_Z, Potential

CUTOFF = 5.0            # Å, as the other msl families
N_DISTANCE_BASIS = 16   # Gaussians of the edge length, width 0.67 Å (UMA: 512; see above)

# rung -> backbone shape; width is sphere_channels = hidden_channels = edge_channels
LADDER = [
    dict(width=8, lmax=1, num_layers=2),
    dict(width=8, lmax=2, num_layers=2),
    dict(width=16, lmax=2, num_layers=2),
    dict(width=24, lmax=2, num_layers=2),
    dict(width=32, lmax=2, num_layers=3),
    dict(width=48, lmax=2, num_layers=3),
    dict(width=64, lmax=2, num_layers=4),
    dict(width=96, lmax=2, num_layers=4),
    dict(width=128, lmax=2, num_layers=4),
    dict(width=128, lmax=3, num_layers=6),
]


class _Inputs(dict):
    """The plain dict the backbone reads, with the ``get(key, default=...)`` it calls (a
    keyword a builtin dict does not take; fairchem normally passes an ``AtomicData``)."""

    def get(self, key, default=None):
        return super().get(key, default)


class EscnMD(Potential):
    """eSCN-MD backbone plus an l=0 energy MLP (see module docstring)."""

    def __init__(self, width: int, lmax: int, num_layers: int, cutoff: float = CUTOFF,
                 num_distance_basis: int = N_DISTANCE_BASIS):
        super().__init__(cutoff)
        from fairchem.core.models.uma.escn_md import eSCNMDBackbone  # seconds to import

        self.backbone = eSCNMDBackbone(
            max_num_elements=MAX_Z + 1, sphere_channels=width, lmax=lmax, mmax=lmax,
            num_layers=num_layers, hidden_channels=width, edge_channels=width,
            num_distance_basis=num_distance_basis, cutoff=cutoff,
            otf_graph=False,  # msl's neighbour list, fed in atom_features
            direct_forces=False, regress_forces=False, regress_stress=False,  # msl's autograd
            act_type="gate", ff_type="spectral",  # exactly equivariant, see module docstring
            use_dataset_embedding=False,
        )
        self.energy_mlp = nn.Sequential(
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 1))

    def atom_features(self, z, edge_vec, edge_index, batch):
        """Per-atom energies [n_atoms] from the backbone's l=0 node embedding.

        fairchem computes its edge vectors as ``pos[edge_index[0]] - pos[edge_index[1]] +
        cell_offsets @ cell`` and sends messages edge_index[0] -> edge_index[1] (the scatter
        target), the orientation of msl's (source j, target i) and of msl's ``r_ij``. Passing
        ``pos = 0``, ``cell = I`` and ``cell_offsets = r_ij`` makes its vectors exactly msl's,
        with the gradient flowing back to ``edge_vec`` (and so to msl's strained pos and cell).
        ``nedges`` only spreads the (identical) cells over the edges, so edge order is free.
        """
        n_graphs = int(batch.max()) + 1 if batch.numel() else 0
        dtype, device = edge_vec.dtype, edge_vec.device
        zeros = torch.zeros(n_graphs, dtype=torch.long, device=device)
        inputs = _Inputs(
            atomic_numbers=z, batch=batch,
            pos=torch.zeros(len(z), 3, dtype=dtype, device=device),
            cell=torch.eye(3, dtype=dtype, device=device).expand(n_graphs, 3, 3),
            cell_offsets=edge_vec, edge_index=edge_index,
            natoms=torch.bincount(batch, minlength=n_graphs),
            nedges=torch.bincount(batch[edge_index[1]], minlength=n_graphs),
            charge=zeros, spin=zeros)
        node = self.backbone(inputs)["node_embedding"]
        return self.energy_mlp(node[:, 0, :]).squeeze(-1)


def build(size: int) -> EscnMD:
    """Rung ``size`` of the ladder (0 <= size < len(LADDER))."""
    return EscnMD(**LADDER[size])


TASK = "potential"
