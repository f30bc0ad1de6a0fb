"""Conservative energy models: energy from atoms, forces and stress from autograd.

Every energy family subclasses :class:`Potential` and implements :meth:`Potential.atom_features`,
which maps atomic numbers and edge vectors to one invariant scalar per atom. This module turns that
into physical outputs the same way for every family:

- energy ``E = sum_atoms (energy_scale * y_a + atom_ref[z_a])`` in eV, where ``atom_ref`` is a
  per-element reference energy fitted by least squares on the training set (:meth:`fit_reference`);
- forces ``F = -dE/dpos`` in eV/Å (conservative by construction);
- stress ``sigma = (1/V) dE/d(strain)`` in eV/Å^3 (ASE's sign convention), from a symmetric strain
  applied to positions and cell at zero and differentiated (the displacement trick).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_Z = 100


class Potential(nn.Module):
    """Base class of the energy families; subclasses define ``atom_features``."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("atom_ref", torch.zeros(MAX_Z + 1))
        self.register_buffer("energy_scale", torch.ones(()))

    def atom_features(self, z, edge_vec, edge_index, batch) -> torch.Tensor:  # pragma: no cover
        """Per-atom invariant energies ``y_a`` [n_atoms] (dimensionless, order 1)."""
        raise NotImplementedError

    def forward(self, batch, forces: bool = True, stress: bool = True, create_graph=None):
        """Energy [B] (eV), forces [n_atoms, 3] (eV/Å) and stress [B, 3, 3] (eV/Å^3).

        ``create_graph`` defaults to ``self.training`` (a training step needs the double
        backward through the forces; evaluation does not).
        """
        if create_graph is None:
            create_graph = self.training
        pos, cell = batch.pos, batch.cell
        n_graphs = cell.shape[0]
        inputs = []
        with torch.enable_grad():
            if forces:
                pos = pos.detach().requires_grad_(True)
                inputs.append(pos)
            if stress:
                strain = torch.zeros(n_graphs, 3, 3, dtype=pos.dtype, device=pos.device,
                                     requires_grad=True)
                inputs.append(strain)
                sym = 0.5 * (strain + strain.transpose(1, 2))
                pos = pos + torch.einsum("ai,aij->aj", pos, sym[batch.batch])
                cell = cell + torch.bmm(cell, sym)
            src, dst = batch.edge_index
            offsets = torch.einsum("ei,eij->ej", batch.shift, cell[batch.batch[dst]])
            edge_vec = pos[src] - pos[dst] + offsets
            y = self.atom_features(batch.z, edge_vec, batch.edge_index, batch.batch)
            e_atom = self.energy_scale * y + self.atom_ref[batch.z]
            energy = torch.zeros(n_graphs, dtype=e_atom.dtype, device=e_atom.device)
            energy = energy.index_add(0, batch.batch, e_atom)
            out = {"energy": energy}
            if inputs:
                grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
                if forces:
                    out["forces"] = -grads[0]
                if stress:
                    volume = torch.linalg.det(batch.cell).abs()
                    out["stress"] = grads[-1] / volume[:, None, None]
        return out

    @torch.no_grad()
    def fit_reference(self, numbers: np.ndarray, n_atoms: np.ndarray, energy: np.ndarray):
        """Fit per-element reference energies and the residual per-atom scale on training data.

        Solves ``energy_s ~ sum_z count_{s,z} ref_z`` by least squares (elements absent from the
        training set keep 0) and sets ``energy_scale`` to the standard deviation of the residual
        energy per atom (eV), so that the network's output is of order one. These are buffers,
        not parameters: they are saved with the model but not trained and not counted in N.
        """
        structure = np.repeat(np.arange(len(n_atoms)), n_atoms)
        counts = np.zeros((len(n_atoms), MAX_Z + 1))
        np.add.at(counts, (structure, numbers), 1.0)
        present = counts.sum(0) > 0
        ref = np.zeros(MAX_Z + 1)
        ref[present] = np.linalg.lstsq(counts[:, present], energy, rcond=None)[0]
        residual = (energy - counts @ ref) / n_atoms
        scale = float(np.std(residual)) if len(energy) > 1 else 1.0
        self.atom_ref.copy_(torch.as_tensor(ref, dtype=self.atom_ref.dtype))
        self.energy_scale.fill_(max(scale, 1e-3))


class PolynomialEnvelope(nn.Module):
    """Smooth cutoff u(r/r_c) of DimeNet (Gasteiger et al. 2020), without DimeNet's 1/x factor.

    u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1, else 0: value, first
    and second derivative vanish at the cutoff, so energies and forces are continuous when atoms
    cross it. Written here because PyG's ``dimenet.Envelope`` multiplies by 1/x.
    """

    def __init__(self, cutoff: float, exponent: int = 5):
        super().__init__()
        self.cutoff, self.p = float(cutoff), int(exponent)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p, x = self.p, r / self.cutoff
        u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x**(p + 1) - p * (p + 1) / 2 * x**(p + 2)
        return torch.where(x < 1, u, torch.zeros_like(u))
