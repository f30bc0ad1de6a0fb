"""Energy models: the output contract every energy family keeps, conservative or direct.

Every energy model's ``forward(batch, forces=True, stress=True)`` returns a dict with
``energy`` [B] (eV), ``forces`` [n_atoms, 3] (eV/Å) and ``stress`` [B, 3, 3] (eV/Å^3, ASE sign),
leaving out what was not asked for. Two base classes, both built on :class:`EnergyModel`
(per-element reference energies, output scales, edge vectors from ``pos``, ``cell`` and
``shift``):

- :class:`Potential` (conservative): subclasses implement :meth:`Potential.atom_features`,
  which maps atomic numbers and edge vectors to one invariant scalar per atom;
- :class:`DirectPotential` (direct heads, as Trikha et al.'s transformer and EquiformerV2 have):
  subclasses implement :meth:`DirectPotential.heads`, returning per-atom energies, forces and a
  stress per structure, each of order one; this class scales them to eV, eV/Å and eV/Å^3.

:class:`Potential` turns per-atom energies into physical outputs the same way for every family:

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


class EnergyModel(nn.Module):
    """What every energy family shares: ``cutoff`` (Å, for the neighbour lists), per-element
    reference energies and the output scales (buffers: saved, not trained, not counted in N)."""

    conservative = False  # forces are -dE/dpos (True) or a separate head (False)

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("atom_ref", torch.zeros(MAX_Z + 1))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("force_scale", torch.ones(()))
        self.register_buffer("stress_scale", torch.ones(()))

    @torch.no_grad()
    def set_output_scales(self, forces: float, stress: float) -> None:
        """Typical force (eV/Å) and stress (eV/Å^3) of the training set: what a direct head's
        order-one output is multiplied by. Conservative models ignore them (their forces and
        stress scale with ``energy_scale``)."""
        self.force_scale.fill_(float(forces))
        self.stress_scale.fill_(float(stress))

    @staticmethod
    def edge_vectors(batch, pos, cell) -> torch.Tensor:
        """``r_ij = pos[j] - pos[i] + shift @ cell`` [n_edges, 3] in Å (see msl.graph)."""
        src, dst = batch.edge_index
        offsets = torch.einsum("ei,eij->ej", batch.shift.to(pos.dtype), cell[batch.batch[dst]])
        return pos[src] - pos[dst] + offsets

    def total_energy(self, y, z, batch, n_graphs) -> torch.Tensor:
        """Energy per structure (eV) from per-atom outputs ``y`` of order one."""
        e_atom = self.energy_scale * y + self.atom_ref[z]
        energy = torch.zeros(n_graphs, dtype=e_atom.dtype, device=e_atom.device)
        return energy.index_add(0, batch, e_atom)

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


class Potential(EnergyModel):
    """Conservative energy families; subclasses define ``atom_features``."""

    conservative = True

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
            edge_vec = self.edge_vectors(batch, pos, cell)
            y = self.atom_features(batch.z, edge_vec, batch.edge_index, batch.batch)
            out = {"energy": self.total_energy(y, batch.z, batch.batch, n_graphs)}
            if inputs:
                grads = torch.autograd.grad(out["energy"].sum(), inputs, create_graph=create_graph)
                if forces:
                    out["forces"] = -grads[0]
                if stress:
                    volume = torch.linalg.det(batch.cell).abs()
                    out["stress"] = grads[-1] / volume[:, None, None]
        return out

class DirectPotential(EnergyModel):
    """Energy families with direct force and stress heads; subclasses define ``heads``.

    Not conservative: forces are not -dE/dpos, so MD with them drifts; Trikha et al. trained
    their transformer and EquiformerV2 this way because it is cheaper (no second backward).
    """

    conservative = False

    def heads(self, z, pos, edge_vec, batch, n_graphs: int):  # pragma: no cover
        """Per-atom energies [n_atoms], forces [n_atoms, 3] and stress [n_graphs, 3, 3], each of
        order one (dimensionless). ``batch`` is the whole PyG batch (``edge_index``, ``batch``,
        ``cell`` ...); ``edge_vec`` [n_edges, 3] (Å) are its edge vectors."""
        raise NotImplementedError

    def forward(self, batch, forces: bool = True, stress: bool = True, create_graph=None):
        """Energy [B] (eV), forces [n_atoms, 3] (eV/Å), stress [B, 3, 3] (eV/Å^3), from heads."""
        n_graphs = batch.cell.shape[0]
        edge_vec = self.edge_vectors(batch, batch.pos, batch.cell)
        y, f, s = self.heads(batch.z, batch.pos, edge_vec, batch, n_graphs)
        out = {"energy": self.total_energy(y, batch.z, batch.batch, n_graphs)}
        if forces:
            out["forces"] = self.force_scale * f
        if stress:
            out["stress"] = self.stress_scale * s
        return out


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
