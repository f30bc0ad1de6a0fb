"""Transformers over atoms with direct heads: Trikha et al.'s plain encoder and a local variant.

Two families share this module and one ladder, chosen by ``build(size, variant)``:

- ``"plain"``, Trikha et al.'s transformer (research/papers.md §1.3): atoms are tokens, embedded by
  atomic number; the raw Cartesian positions (Å, three floats) are concatenated to each token, so
  the encoder width is ``d_model + 3``; no positional encoding; padding masked. A pre-norm
  ``torch.nn.TransformerEncoder`` (GELU feed-forward of ``ff_mult`` times the width, no dropout,
  a final layer norm: x-transformers' ``Encoder`` defaults) runs on the padded batch
  [B, max_atoms, d_model + 3] made by ``torch_geometric.utils.to_dense_batch``. Three per-atom MLP
  heads, as in their repo: forces (3, direct), energy (1, summed over atoms by the base class) and
  stress (6 Voigt components, **summed** over atoms as their repo does, then symmetrised to 3x3).
  It ignores the edges and the cell. Its tokens and heads (:class:`TokenPotential`) are shared
  with Trikha et al.'s fully connected baseline, :mod:`msl.models.fcn`.
- ``"local"``: the same pre-norm layers, but each atom attends only to its neighbours within
  ``CUTOFF`` (the graph's edges, periodic images included), with a per-head attention bias from a
  Gaussian expansion of the distance times the polynomial envelope, and the envelope inside the
  softmax (:func:`msl.models.optimetal_tc.enveloped_softmax`) so that a neighbour crossing the
  cutoff switches on smoothly. Tokens are invariant. Per-atom energy from the tokens; direct
  equivariant force and stress heads from the edges:

      F_i     = sum_j w_ij u_ij r_ij / |r_ij|
      sigma   = (1/V) sum_ij u_ij |r_ij| (a_ij r^_ij (x) r^_ij + b_ij I / 3)

  with u the envelope, V the cell volume, and w, a, b the three outputs of one invariant edge MLP
  of (h_i, h_j, |r_ij|), symmetric in i and j (h_i + h_j and h_i * h_j enter, never h_i alone),
  so w_ij = w_ji and the forces sum to zero in every structure. A structure without a cell
  (V = 0) gets zero stress.

Shapes and units: inputs are a PyG batch (``msl.graph``: ``z``, ``pos`` Å, ``cell`` Å,
``edge_index``, ``shift``); :meth:`heads` returns per-atom energies [n_atoms], forces
[n_atoms, 3] and stress [n_graphs, 3, 3], dimensionless and of order one;
:class:`~msl.models.potential.DirectPotential` multiplies them by ``energy_scale`` (eV),
``force_scale`` (eV/Å) and ``stress_scale`` (eV/Å^3) and adds per-element reference energies.

What each respects. Both: permutation of atoms (energy invariant, forces equivariant); each
structure of a batch is independent of the others (padding and other structures are masked).
``plain`` sees raw positions, so it is **not** invariant under rotation or translation, is not
periodic (wrapping an atom back into the cell changes its output) and its stress is extensive;
``SYMMETRIC_VARIANTS`` keeps it out of the shared physics suite, and its own tests show the
violation. ``local`` is invariant (energy) and equivariant (forces, stress) under rotation,
translation and lattice translations, smooth at the cutoff, and passes the shared suite. Neither
is conservative: the forces are not -dE/dpos (the base class says why Trikha et al. chose that).

Why hand-written: ``plain`` uses PyTorch's own encoder. ``local``'s attention runs over edges, and
torch's ``MultiheadAttention`` works on dense [atoms x atoms] masks, which cannot hold several
periodic images of the same neighbour; PyG's ``TransformerConv`` (edge_dim) has the edges, but its
softmax gives an entering neighbour its full weight exp(q.k) at the cutoff, so the energy jumps
(see :class:`msl.models.optimetal_tc.EnvelopeTransformerConv`), and its edge term enters the keys
rather than as an additive bias. So the local layer is written out here, on torch-geometric's
Gaussian basis and the envelope-weighted softmax of ``optimetal_tc``.

One size dial: ``size`` indexes ``LADDER``, the (d_model, depth, heads) configurations of Trikha et
al.'s repo that have parameter counts in its comments (2 thousand to 1.2 million parameters there;
ours, 4 thousand to 1.6 million (plain), differ: torch's attention heads are d_model wide where
x-transformers' have 64 channels, and their MLPOutput heads may differ from the ones we read).
Counts of every rung, both variants, are pinned in ``tests/models/test_models_ladder.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import to_dense_batch

from msl.models import potential
from msl.models.optimetal_tc import enveloped_softmax
from msl.models.potential import MAX_Z, DirectPotential, GaussianBasis, PolynomialEnvelope

TASK = "potential"
CUTOFF = 5.0        # Å: neighbour lists of both (plain ignores them); that of the other families
N_RBF = 16          # Gaussian distance features of the local variant
HEAD_HIDDEN = 128   # hidden width of the output MLPs, as Trikha et al.'s MLPOutput
HEAD_INIT_STD = 0.01  # std of the heads' last-layer weights, as Trikha et al.'s repo


class Rung(NamedTuple):
    d_model: int    # token width (plain adds 3 position channels)
    layers: int     # encoder layers
    heads: int      # attention heads
    ff_mult: int    # feed-forward width / encoder width


LADDER = [Rung(d, layers, heads, 4) for d, layers, heads in [
    (2, 1, 1), (8, 1, 1), (16, 1, 1), (32, 1, 1), (32, 2, 1), (64, 1, 1),
    (64, 2, 1), (96, 2, 1), (128, 2, 1), (128, 3, 1), (192, 3, 1)]]

SYMMETRIC_VARIANTS = {"local"}  # variants invariant under rotation and translation (physics suite)


def output_mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Trikha et al.'s ``MLPOutput``: Linear(in, in)-SiLU-Linear(in, 128)-SiLU-Linear(128, out),
    last layer N(0, 0.01) with zero bias (their heads start near the dataset mean, here the
    reference energies of the base class)."""
    mlp = nn.Sequential(nn.Linear(d_in, d_in), nn.SiLU(), nn.Linear(d_in, HEAD_HIDDEN), nn.SiLU(),
                        nn.Linear(HEAD_HIDDEN, d_out))
    nn.init.normal_(mlp[-1].weight, std=HEAD_INIT_STD)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def voigt_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """[..., 6] Voigt (xx, yy, zz, yz, xz, xy) -> symmetric [..., 3, 3]."""
    xx, yy, zz, yz, xz, xy = v.unbind(-1)
    rows = [torch.stack(r, -1) for r in ((xx, xy, xz), (xy, yy, yz), (xz, yz, zz))]
    return torch.stack(rows, -2)


# ------------------------------------------------------------------ plain (Trikha et al.)


class TokenPotential(DirectPotential):
    """Atoms as tokens, Trikha et al.'s way: each token is an atom's element embedding (``embed``,
    set by the subclass) with its Cartesian position (Å) appended, and three per-atom
    :func:`output_mlp` heads read out energies, direct forces and stresses (the stresses summed
    per structure, as their repo does). Shared by the plain transformer and the fully connected
    baseline (:mod:`msl.models.fcn`), which differ only in what runs between tokens and heads."""

    def add_heads(self, width: int) -> None:
        """The energy (1), force (3) and stress (6, Voigt) heads on features of width ``width``."""
        self.energy_head = output_mlp(width, 1)
        self.force_head = output_mlp(width, 3)
        self.stress_head = output_mlp(width, 6)

    def tokens(self, z, pos) -> torch.Tensor:
        """[n_atoms, d_model + 3]: element embedding, then the position (Å)."""
        return torch.cat([self.embed(z), pos.to(self.embed.weight.dtype)], dim=-1)

    def read_out(self, h, graph, n_graphs: int):
        """Per-atom energies [n_atoms], forces [n_atoms, 3] and the per-atom stresses summed over
        each structure (``graph`` [n_atoms] its index), symmetric [n_graphs, 3, 3]."""
        stress = torch.zeros(n_graphs, 6, dtype=h.dtype, device=h.device)
        stress = stress.index_add(0, graph, self.stress_head(h))
        return self.energy_head(h).squeeze(-1), self.force_head(h), voigt_to_matrix(stress)


class PlainTransformer(TokenPotential):
    """Trikha et al.'s transformer over atoms (see module docstring); not rotation invariant."""

    def __init__(self, rung: Rung, cutoff: float = CUTOFF):
        super().__init__(cutoff)
        width = rung.d_model + 3
        self.embed = nn.Embedding(MAX_Z + 1, rung.d_model)
        layer = nn.TransformerEncoderLayer(width, rung.heads, rung.ff_mult * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        # nested tensors need post-norm layers: left on with pre-norm, torch warns and skips them
        self.encoder = nn.TransformerEncoder(layer, rung.layers, norm=nn.LayerNorm(width),
                                             enable_nested_tensor=False)
        self.add_heads(width)

    def heads(self, z, pos, edge_vec, batch, n_graphs: int):
        dense, mask = to_dense_batch(self.tokens(z, pos), batch.batch,
                                     batch_size=n_graphs)                        # [B, A, d + 3]
        h = self.encoder(dense, src_key_padding_mask=~mask)[mask]               # [n_atoms, d + 3]
        return self.read_out(h, batch.batch, n_graphs)


# ------------------------------------------------------------------ local (cutoff attention)


class LocalAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose attention runs over graph edges (messages j -> i).

    Per head (C channels), with u_ij the envelope and g_ij the Gaussian features of |r_ij|:
    ``s_ij = q_i . k_j / sqrt(C) + u_ij (W_b g_ij)``, weights from
    :func:`~msl.models.optimetal_tc.enveloped_softmax` (u_ij inside the softmax, soft-capped
    scores, a null neighbour), ``m_i = W_o concat_heads sum_j a_ij v_j``; then
    ``h += m``, ``h += FF(LayerNorm(h))`` as in the plain encoder layer.
    """

    def __init__(self, width: int, heads: int, ff: int, n_rbf: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm_attn, self.norm_ff = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.bias = nn.Linear(n_rbf, heads, bias=False)
        self.out = nn.Linear(width, width)
        self.ff = nn.Sequential(nn.Linear(width, ff), nn.GELU(), nn.Linear(ff, width))

    def forward(self, h, edge_index, rbf, envelope):
        n, width = h.shape
        c = width // self.heads
        src, dst = edge_index
        q, kv = self.qkv(self.norm_attn(h)).split([width, 2 * width], dim=-1)
        # index_select, not q[dst]: its backward (index_add) is ~2x faster on CPU than indexing's
        k, v = kv.index_select(0, src).view(-1, 2, self.heads, c).unbind(1)  # [E, H, C] each
        q = q.index_select(0, dst).view(-1, self.heads, c)
        score = (q * k).sum(-1) / c**0.5 + envelope[:, None] * self.bias(rbf)  # [E, H]
        alpha = enveloped_softmax(score, envelope, dst, n)
        message = (alpha.unsqueeze(-1) * v).view(-1, width)
        h = h + self.out(h.new_zeros(n, width).index_add(0, dst, message))
        return h + self.ff(self.norm_ff(h))


class PairHead(nn.Module):
    """Invariant edge outputs [E, n_out], symmetric in the two atoms of an edge.

    Trikha et al.'s MLPOutput with the pair entering at its hidden layer:
    ``g = SiLU(W_1 h)`` per atom, then ``Linear(SiLU(A g_i + A g_j + (P g_i) * (P g_j) + R e_ij))``,
    e_ij the Gaussian features. The per-atom layers run once per atom, not once per edge; the
    128-wide hidden layer runs per edge (~45 per atom within 5 Å) and, at the small rungs, costs
    more than the whole encoder, which is why one such head serves forces and stress together.
    """

    def __init__(self, width: int, n_rbf: int, n_out: int):
        super().__init__()
        self.atom = nn.Sequential(nn.Linear(width, width), nn.SiLU())
        self.lin_sum = nn.Linear(width, HEAD_HIDDEN)
        self.lin_prod = nn.Linear(width, HEAD_HIDDEN, bias=False)
        self.lin_rbf = nn.Linear(n_rbf, HEAD_HIDDEN, bias=False)
        self.lin_out = nn.Linear(HEAD_HIDDEN, n_out)
        nn.init.normal_(self.lin_out.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.lin_out.bias)

    def forward(self, h, edge_index, rbf):  # noqa: D102 (see class docstring)
        if not potential.FUSED:
            return self._reference_forward(h, edge_index, rbf)
        src, dst = edge_index
        g = self.atom(h)
        s, p = self.lin_sum(g), self.lin_prod(g)
        # the [E, 128] hidden layer in three passes: add, multiply-add, matmul-add
        hidden = torch.addcmul(s.index_select(0, src) + s.index_select(0, dst),
                               p.index_select(0, src), p.index_select(0, dst))
        hidden = torch.addmm(hidden, rbf, self.lin_rbf.weight.T)
        return self.lin_out(F.silu(hidden))

    def _reference_forward(self, h, edge_index, rbf):
        """The code this head ran before ``msl.models.potential.FUSED`` (same function)."""
        src, dst = edge_index
        g = self.atom(h)
        sp = torch.cat([self.lin_sum(g), self.lin_prod(g)], dim=-1)
        s_j, p_j = sp.index_select(0, src).chunk(2, dim=-1)
        s_i, p_i = sp.index_select(0, dst).chunk(2, dim=-1)
        return self.lin_out(F.silu(s_i + s_j + p_i * p_j + self.lin_rbf(rbf)))


class LocalTransformer(DirectPotential):
    """Transformer with attention restricted to neighbours within the cutoff (see module
    docstring): invariant tokens, per-atom energy, equivariant direct forces and stress."""

    def __init__(self, rung: Rung, cutoff: float = CUTOFF, n_rbf: int = N_RBF):
        super().__init__(cutoff)
        width = rung.d_model
        self.embed = nn.Embedding(MAX_Z + 1, width)
        self.rbf = GaussianBasis(0.0, cutoff, n_rbf)
        self.envelope = PolynomialEnvelope(cutoff)
        self.layers = nn.ModuleList(LocalAttentionLayer(width, rung.heads, rung.ff_mult * width,
                                                        n_rbf) for _ in range(rung.layers))
        self.norm = nn.LayerNorm(width)
        self.energy_head = output_mlp(width, 1)
        self.edge_head = PairHead(width, n_rbf, 3)  # force weight w, stress a and b

    def tokens(self, z, r, edge_index):
        """Final tokens [n_atoms, d_model], Gaussian features [E, n_rbf], envelope [E]."""
        rbf, envelope = self.rbf(r), self.envelope(r)
        h = self.embed(z)
        for layer in self.layers:
            h = layer(h, edge_index, rbf, envelope)
        return self.norm(h), rbf, envelope

    def atom_features(self, z, edge_vec, edge_index, batch):
        """Per-atom energies [n_atoms] alone (what the shared physics tests call on one atom)."""
        h, _, _ = self.tokens(z, edge_vec.norm(dim=-1), edge_index)
        return self.energy_head(h).squeeze(-1)

    def heads(self, z, pos, edge_vec, batch, n_graphs: int):
        edge_index = batch.edge_index
        r = edge_vec.norm(dim=-1)
        h, rbf, envelope = self.tokens(z, r, edge_index)
        unit = edge_vec / r.clamp_min(1e-9)[:, None]
        w, a, b = (self.edge_head(h, edge_index, rbf) * envelope[:, None]).unbind(-1)  # [E] each
        forces = torch.zeros_like(pos).index_add(0, edge_index[1], w[:, None] * unit)
        a, b = a * r, b * r
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        edge_stress = (a[:, None, None] * unit[:, :, None] * unit[:, None, :]
                       + b[:, None, None] * eye / 3)
        graph = batch.batch[edge_index[1]]
        stress = torch.zeros(n_graphs, 3, 3, dtype=r.dtype, device=r.device)
        stress = stress.index_add(0, graph, edge_stress)
        volume = torch.linalg.det(batch.cell).abs()
        inv_volume = torch.where(volume > 0, 1 / volume.clamp_min(1e-12), torch.zeros_like(volume))
        return self.energy_head(h).squeeze(-1), forces, stress * inv_volume[:, None, None]


def build(size: int, variant: str = "plain") -> DirectPotential:
    """Rung ``size`` of variant ``"plain"`` (Trikha et al.) or ``"local"`` (cutoff attention)."""
    classes = {"plain": PlainTransformer, "local": LocalTransformer}
    if variant not in classes:
        raise ValueError(f"unknown transformer variant {variant!r}; known: plain, local")
    return classes[variant](LADDER[size])
