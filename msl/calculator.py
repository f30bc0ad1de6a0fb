"""Any msl energy model as an ASE calculator, trained or freshly initialised.

    from msl.calculator import Calculator
    atoms.calc = Calculator.from_checkpoint("book/default/checkpoints/<cell_id>.pt")
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Units are ASE's: eV, eV/Å, eV/Å^3 (stress in Voigt order xx, yy, zz, yz, xz, xy).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from torch_geometric.data import Batch, Data

from msl import graph
from msl.models import build_model


class Calculator(AseCalculator):
    """Energy, forces and stress of any msl energy model (:class:`~msl.models.potential.EnergyModel`:
    conservative or with direct heads); spectral models are refused with a clear error."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, device: str = "cpu", dtype=torch.float64, **kwargs):
        from msl.models.potential import EnergyModel

        if not isinstance(model, EnergyModel):
            raise TypeError(f"{type(model).__name__} does not predict energies, so it cannot be an "
                            f"ASE calculator (spectral models predict a spectrum and a scalar)")
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", **kwargs) -> "Calculator":
        """Load a checkpoint written by :func:`msl.cell.run` (model name, size, state dict)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        # cast before loading, so that a float64 state dict is not rounded through float32
        model = build_model(state["model"], state["size"]).to(kwargs.get("dtype", torch.float64))
        model.load_state_dict(state["state_dict"])
        return cls(model, device=device, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(np.all(atoms.pbc))
        edge_index, shift = graph.edges(atoms.positions, atoms.cell[:], atoms.pbc,
                                        self.model.cutoff)
        kw = dict(dtype=self.dtype, device=self.device)
        data = Data(z=torch.as_tensor(atoms.numbers, device=self.device),
                    pos=torch.as_tensor(atoms.positions, **kw),
                    cell=torch.as_tensor(np.asarray(atoms.cell[:])[None], **kw),
                    edge_index=torch.as_tensor(edge_index, device=self.device),
                    shift=torch.as_tensor(shift, **kw), num_nodes=len(atoms))
        out = self.model(Batch.from_data_list([data]), forces=True, stress=periodic)
        energy = float(out["energy"][0].detach())
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out["forces"].detach().cpu().numpy()}
        if periodic:
            stress = out["stress"][0].detach().cpu().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
