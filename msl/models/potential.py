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

Both come from one gradient, ``dE/dr_e`` with respect to the edge vectors, gathered into forces and
summed into the strain derivative (the virial): the same derivatives, computed with less work in
training (see :meth:`Potential._edge_gradient_forward`). :data:`FUSED` switches this and the fast
paths of the model families back to the reference code, for benchmarks and equality tests.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch_geometric.nn.models.schnet import GaussianSmearing

MAX_Z = 100
FUSED = True
"""Use the fast code paths of the model families (True), or the reference paths they replaced
(False): the same functions and parameters, computed as before (PyG's message passing,
subnormal Gaussian features...). Read at call time; ``bench/bench_step.py`` and
``tests/models/test_models_fused.py`` switch it to compare the two. Not a configuration field:
results do not depend on it beyond floating-point rounding (1e-7 relative on the loss of 32
training steps). Off for now: the book's committed results were trained by the reference paths,
and switching it on changes their last digits, so it is switched on together with the next
re-run of the studies (issue 10), whose steps it makes about 2x cheaper (bench/bench_step.py).
Set ``msl.models.potential.FUSED = True`` to use it now."""


class EnergyModel(nn.Module):
    """What every energy family shares: ``cutoff`` (Å, for the neighbour lists), per-element
    reference energies and the output scales (buffers: saved, not trained, not counted in N)."""

    conservative = False  # forces are -dE/dpos (True) or a separate head (False)
    cutoff_order = 2      # derivatives of the energy continuous where a neighbour crosses the
                          # cutoff: 2 under the polynomial envelope, 1 under SchNet's cosine
    breaks: dict[str, str] = {}
    """Symmetries a family does not respect by design, each with the reason; the shared physics
    suite (``tests/models/test_models_physics.py``) skips the tests of these and only these.
    Keys: ``"rotation"`` (invariance of the energy, equivariance of forces and stress),
    ``"periodicity"`` (wrapping atoms into the cell, lattice translations, supercells) and
    ``"locality"`` (a finite cutoff: free and distant atoms feel no force and add their isolated
    energies)."""

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
        ref, scale = reference_fit(numbers, n_atoms, energy)
        self.atom_ref.copy_(torch.as_tensor(ref, dtype=self.atom_ref.dtype))
        self.energy_scale.fill_(scale)


def reference_fit(numbers: np.ndarray, n_atoms: np.ndarray, energy: np.ndarray):
    """(per-element reference energies indexed by Z, the standard deviation of the residual
    energy per atom in eV, at least 1e-3): the least-squares fit of ``energy_s ~ sum_z
    count_{s,z} ref_z`` (elements absent keep 0). What :meth:`EnergyModel.fit_reference` sets on
    the training set, and what :func:`msl.cell.run` computes on the fixed validation set to
    normalise the losses it reports."""
    structure = np.repeat(np.arange(len(n_atoms)), n_atoms)
    counts = np.zeros((len(n_atoms), MAX_Z + 1))
    np.add.at(counts, (structure, numbers), 1.0)
    present = counts.sum(0) > 0
    ref = np.zeros(MAX_Z + 1)
    ref[present] = np.linalg.lstsq(counts[:, present], energy, rcond=None)[0]
    residual = (energy - counts @ ref) / n_atoms
    scale = float(np.std(residual)) if len(energy) > 1 else 1.0
    return ref, max(scale, 1e-3)


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
        if FUSED and (forces or stress):
            return self._edge_gradient_forward(batch, forces, stress, create_graph)
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

    def _edge_gradient_forward(self, batch, forces: bool, stress: bool, create_graph: bool):
        """:meth:`forward` from one gradient, ``g_e = dE/dr_e`` with respect to the edge vectors.

        The energy depends on positions and cell only through the edge vectors
        ``r_e = pos[src] - pos[dst] + shift @ cell``, so (the same derivatives as the reference
        path's, which differentiates with respect to positions and a strain, reassociated)
        ``F_k = sum_{e: dst = k} g_e - sum_{e: src = k} g_e`` and, since a strain ``S`` maps every
        edge vector to ``r_e (1 + S)``, ``dE/dS = sum_e r_e (x) g_e`` summed per structure and
        symmetrised. This avoids differentiating (twice, in training) through the gathers of
        positions and the per-edge cell products; forces and stress stay exact derivatives of the
        energy (tested against finite differences in ``tests/models/test_models_physics.py``).
        """
        n_graphs = batch.cell.shape[0]
        src, dst = batch.edge_index
        with torch.enable_grad():
            edge_vec = self.edge_vectors(batch, batch.pos.detach(), batch.cell.detach())
            edge_vec = edge_vec.detach().requires_grad_(True)
            y = self.atom_features(batch.z, edge_vec, batch.edge_index, batch.batch)
            out = {"energy": self.total_energy(y, batch.z, batch.batch, n_graphs)}
            grad, = torch.autograd.grad(out["energy"].sum(), [edge_vec], create_graph=create_graph,
                                        allow_unused=True, materialize_grads=True)
        if forces:
            force = torch.zeros_like(batch.pos, dtype=grad.dtype).index_add(0, dst, grad)
            out["forces"] = force.index_add(0, src, grad, alpha=-1)
        if stress:
            virial = torch.zeros(n_graphs, 3, 3, dtype=grad.dtype, device=grad.device)
            virial = virial.index_add(0, batch.batch.index_select(0, dst),
                                      edge_vec.detach().unsqueeze(-1) * grad.unsqueeze(-2))
            volume = torch.linalg.det(batch.cell).abs()
            out["stress"] = 0.5 * (virial + virial.transpose(1, 2)) / volume[:, None, None]
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


class GaussianBasis(GaussianSmearing):
    """torch-geometric's :class:`GaussianSmearing` (same buffers, same values), with every value
    below ``eps^2`` of its dtype (1.4e-14 in float32, 4.9e-32 in float64) set to exactly zero.

    Why: a Gaussian of width 1/3 Å evaluated 4.4-4.8 Å from its centre is a subnormal float32
    (below 1.2e-38), and about a fifth of all features were. Subnormal operands make MKL's matrix
    products about 60 times slower on CPU ([10^4, 16] @ [16, 32]: 6 ms instead of 0.09 ms), and
    the products of the next-smallest features with gradients were subnormal too; together they
    made an optimetal2b training step about 1.6 times slower (``bench/bench_step.py``). The cut changes nothing a float
    can resolve: every distance in (0, cutoff] lies within half a spacing of some centre, whose
    feature is at least 0.88, so a dropped feature is below ``1.2 eps^2`` of the largest one on
    its edge, far below the rounding of any sum it enters; flush-to-zero hardware makes a change
    of the same kind. Gradients of the dropped features (as small) are zero.
    """

    def forward(self, dist: torch.Tensor) -> torch.Tensor:  # noqa: D102 (see class docstring)
        if not FUSED:
            return super().forward(dist)
        arg = self.coeff * (dist.view(-1, 1) - self.offset.view(1, -1)) ** 2
        floor = 2 * math.log(torch.finfo(arg.dtype).eps)
        return torch.exp(torch.where(arg < floor, float("-inf"), arg))


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
