"""Model families: a plain dict from family name to its module, and one size dial per family.

Each family module defines ``LADDER`` (one entry per rung) and ``build(size)``; rung ``size`` is
the only knob a grid turns. Add a family by adding a module and one line to ``MODELS``.
"""

from __future__ import annotations

import numbers

from torch import nn

from msl.models import optimetal, optimetal3b, optimetal_tc

MODELS = {
    "optimetal2b": optimetal,  # invariant CGC message passing, energy + forces + stress
    "optimetal2b_tc": optimetal_tc,  # optimetal2b with envelope-weighted TransformerConv attention
    "optimetal3b": optimetal3b,  # optimetal2b plus three-body (angle) messages over bond pairs < 4 Å
}


def family(name: str):
    """The module of family ``name``; unknown names raise, listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def check_size(name: str, size: int) -> None:
    """Raise a ValueError naming ``size`` if it is not a rung of family ``name``."""
    ladder = family(name).LADDER
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < len(ladder):
        raise ValueError(f"size {size!r} is not a rung of {name!r}: choose 0..{len(ladder) - 1}")


def build_model(name: str, size: int) -> nn.Module:
    """Build rung ``size`` of family ``name`` (freshly initialised, on CPU)."""
    check_size(name, size)
    return family(name).build(size)


def count_params(model: nn.Module) -> dict[str, int]:
    """Trainable parameters N, with and without embedding tables (``nn.Embedding``).

    Convention: N counts every trainable parameter; ``n_params_no_embed`` leaves out embedding
    tables, as Kaplan et al. did. Buffers (reference energies, scales) are not parameters.
    """
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embed = sum(p.numel() for m in model.modules() if isinstance(m, nn.Embedding)
                for p in m.parameters() if p.requires_grad)
    return {"n_params": total, "n_params_no_embed": total - embed}
