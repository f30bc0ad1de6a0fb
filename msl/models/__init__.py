"""Model families: a plain dict from family name to its module, and one size dial per family.

Each family module defines ``LADDER`` (one entry per rung) and ``build(size, **dims)``; rung
``size`` is the only knob a grid turns (``dims`` are fixed by the data, such as the length of a
spectrum). Modules are imported on first use, so that a study of one family does not pay for
importing another's libraries (fairchem-core takes seconds). Add a family by adding a module and
one line to ``MODELS``.

Two kinds of family, told apart by the module attribute ``TASK``:

- ``"potential"``: energy (eV), forces (eV/Å), stress (eV/Å^3) of a structure, see
  :mod:`msl.models.potential` (conservative or with direct heads);
- ``"spectral"``: a spectrum on a fixed grid plus one scalar per structure, see
  :mod:`msl.models.optimetal_spectral`.
"""

from __future__ import annotations

import numbers

from torch import nn

from msl.quiet import import_quietly

MODELS = {
    # potentials (energy, forces, stress)
    "optimetal2b": "msl.models.optimetal",  # invariant CGC message passing, conservative
    "optimetal2b_tc": "msl.models.optimetal_tc",  # optimetal2b with envelope-weighted attention
    "optimetal3b": "msl.models.optimetal3b",  # optimetal2b plus three-body (angle) messages
    "equiformer_v2": "msl.models.equiformer_v2",  # EquiformerV2 from fairchem-core's blocks
    "transformer": "msl.models.transformer:plain",
    "transformer_local": "msl.models.transformer:local",
    "escn_md": "msl.models.escn_md",  # fairchem-core's eSCN-MD (UMA) backbone, conservative
    "schnet": "msl.models.schnet",  # torch-geometric's SchNet on periodic edges, conservative
    "fcn": "msl.models.fcn",  # Trikha et al.'s fully connected per-atom baseline, direct heads
    # spectral (spectrum on a grid + scalar), Großmann et al.'s OptiMetal models
    "optimetal2b_spectral": "msl.models.optimetal_spectral:cgc",
    "optimetal2b_tc_spectral": "msl.models.optimetal_spectral:tc",
    "optimetal3b_spectral": "msl.models.optimetal_spectral:three_body",
}


class _Variant:
    """A family that is one variant of a module holding several (``module:variant``)."""

    def __init__(self, module, variant: str):
        self.module, self.variant = module, variant
        self.LADDER = module.LADDER
        self.TASK = getattr(module, "TASK", "potential")
        self.SYMMETRIC = variant in getattr(module, "SYMMETRIC_VARIANTS", {variant})

    def build(self, size: int, **dims):
        return self.module.build(size, variant=self.variant, **dims)


def family(name: str):
    """The module of family ``name`` (imported now); unknown names raise, listing the known."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    path, _, variant = MODELS[name].partition(":")
    module = import_quietly(path)
    return _Variant(module, variant) if variant else module


def task(name: str) -> str:
    """``"potential"`` or ``"spectral"``: what family ``name`` predicts."""
    return getattr(family(name), "TASK", "potential")


def check_size(name: str, size: int) -> None:
    """Raise a ValueError naming ``size`` if it is not a rung of family ``name``."""
    ladder = family(name).LADDER
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < len(ladder):
        raise ValueError(f"size {size!r} is not a rung of {name!r}: choose 0..{len(ladder) - 1}")


def build_model(name: str, size: int, **dims) -> nn.Module:
    """Build rung ``size`` of family ``name`` (freshly initialised, on CPU).

    ``dims``: sizes fixed by the data, passed to the family's ``build`` (spectral families take
    ``n_grid``, the length of the spectrum; its default is the embedded dataset's grid).
    """
    check_size(name, size)
    return family(name).build(size, **dims)


def count_params(model: nn.Module) -> dict[str, int]:
    """Trainable parameters N, with and without embedding tables (``nn.Embedding``).

    Convention: N counts every trainable parameter; ``n_params_no_embed`` leaves out embedding
    tables, as Kaplan et al. did. Buffers (reference energies, scales) are not parameters.
    """
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embed = sum(p.numel() for m in model.modules() if isinstance(m, nn.Embedding)
                for p in m.parameters() if p.requires_grad)
    return {"n_params": total, "n_params_no_embed": total - embed}
