"""Großmann et al.'s OptiMetal2B and OptiMetal3B as spectral models (a spectrum + a scalar).

The architectures of "Broken neural scaling laws in materials science" (Großmann, Grunert, Runge
2026; repository MaxGrossmann/optimetal, ``optimetal/nn``, configs in
``research/scaling_law_base_config``), built from torch-geometric's own layers as the paper was,
predicting a spectrum on a fixed grid and one non-negative scalar per structure (their dielectric
function and Drude frequency; here whatever the data carry). Not differentiated for forces, so
the layers are used as they are (ReLU, batch norm, no smooth-cutoff weights on messages).

Shared parts, at hidden width d_h (the size dial):

- node embedding: one-hot of the element's group (18) and period (6), 24 dims, through an MLP
  24 -> d_h -> d_h -> d_h. Groups and periods come from pymatgen's ``Element.group`` / ``.row``
  over Z = 1..100: lanthanides and actinides are group 3 (pymatgen's and the paper's rule);
  period 7 (Z >= 87) shares period 6's slot, since the paper's one-hot has six periods (its data
  stopped at Bi). The first Linear of that MLP acts on a one-hot, so it is held as an
  ``nn.Embedding`` table (24 rows, summed for group and period) plus a bias: the same function,
  initialisation and parameter count, but counted as an embedding by ``count_params``.
- edge embedding: 32 Gaussians on [0, 5.5] Å, std 4 x their spacing, times the polynomial
  envelope (p = 4) at 5.5 Å, through an MLP 32 -> d_h -> d_h -> d_h.
- every MLP is torch-geometric's ``MLP`` with its defaults (ReLU; batch norm after each hidden
  Linear; plain last layer); ``allow_single_element`` lets batch norm see a batch of one.
- readout: vector attention pooling, ``softmax_atoms(Linear(x)) * x`` summed per structure (per
  channel), so the pooled vector is intensive; spectrum head d_h -> 4 d_h -> 4 d_h -> n_grid and
  scalar head d_h -> d_h -> d_h -> 1.

Variants:

- ``cgc`` (OptiMetal2B-CGC): 2 layers ``x = CGConv(x); x = x + MLP(x); x = LayerNorm(x)``, MLP
  d_h -> 6 d_h -> d_h, torch-geometric's graph-mode LayerNorm (one mean and variance per graph).
- ``tc`` (OptiMetal2B-TC): the same with ``TransformerConv(d_h, d_h / 2, heads=2, edge_dim=d_h,
  beta=True)``.
- ``three_body`` (OptiMetal3B): angle features of every triplet (two edges into one atom, both
  shorter than 4 Å): cos theta through the m = 0 spherical harmonics l = 0..3, then an MLP
  4 -> d_h -> d_h -> d_h. Two triplet layers, each: edge update ``e = LN(e + Linear([x_c, x_n,
  e]))``; angle update ``a = LN(a + Linear([e_b, e_a, a]))``; a TransformerConv block (heads 8) on
  the line graph (edges as nodes, triplets as their edges, angles as edge features); a
  TransformerConv block (heads 8) on the atoms with the edges as edge features. As in the paper,
  an edge's messages go from its centre atom c (the atom its triplets share) to its neighbour n.
  Rungs narrower than 8 use d_h heads of one channel.

Outputs are de-normalised: ``spectrum = spectrum_mean + spectrum_std * head`` and ``scalar =
ReLU(scalar_mean + scalar_std * head)`` (buffers set by :meth:`SpectralModel.fit_targets`; with
their defaults 0 and 1 this is the paper's model, which trained on raw targets). Invariant to
rotation, translation, permutation, the choice of periodic image and (through the attention
pooling and the per-graph LayerNorm) replication into a supercell, all by construction.

One size dial: ``size`` indexes ``WIDTHS``. With ``n_grid = 4002`` (their 2001 complex points)
rungs 16..1024 have exactly the parameter counts the paper reports; every rung's count at the
default ``N_GRID`` is pinned by ``tests/models/test_models_ladder.py``.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MLP, CGConv, LayerNorm, TransformerConv, global_add_pool
from torch_geometric.nn.norm import BatchNorm
from torch_geometric.utils import softmax

from msl.models.optimetal3b import legendre, triplets
from msl.models.potential import EnergyModel, PolynomialEnvelope

TASK = "spectral"
WIDTHS = [4, 8, 16, 32, 64, 128, 256, 512, 1024]  # d_h of rung `size`; 16..1024 are the paper's
LADDER = WIDTHS
PAPER_WIDTHS = WIDTHS[2:]  # the widths of Großmann et al.'s parameter scan
VARIANTS = ("cgc", "tc", "three_body")
N_GRID = 141           # default spectrum length: the embedded vibrational DOS, [-8, 20] THz by 0.2
CUTOFF = 5.5           # Å, two-body edges
TRIPLET_CUTOFF = 4.0   # Å, both bonds of a triplet are shorter than this
N_RBF = 32             # Gaussians on [0, CUTOFF]
RBF_WIDTH = 4.0        # Gaussian std in units of the spacing between centres
ENVELOPE_EXPONENT = 4  # p of the polynomial envelope
L_MAX = 3              # angle features: m = 0 spherical harmonics l = 0..L_MAX
N_LAYERS = 2           # message-passing (2B) or triplet (3B) layers
DEPTH = 2              # hidden layers of the embedding MLPs and of the heads
MLP_MULTIPLIER = 6     # hidden width of the MLP in each message-passing block, x d_h
SPECTRUM_MULTIPLIER = 4  # hidden width of the spectrum head, x d_h
HEADS = {"tc": 2, "three_body": 8}  # attention heads of TransformerConv
N_GROUPS, N_PERIODS = 18, 6
MAX_Z = 100


# ------------------------------------------------------------------ the output contract


class SpectralModel(nn.Module):
    """What every spectral family shares: ``cutoff`` (Å, for the neighbour lists), the target
    statistics (buffers: saved, not trained, not in N) and de-normalised outputs.

    Subclasses implement :meth:`heads`, returning the normalised spectrum [B, n_grid] and
    scalar [B]; ``forward(batch)`` returns ``{"spectrum": [B, n_grid], "scalar": [B]}`` in the
    data's units, the scalar through a ReLU (non-negative).
    """

    def __init__(self, cutoff: float, n_grid: int):
        super().__init__()
        self.cutoff, self.n_grid = float(cutoff), int(n_grid)
        self.register_buffer("spectrum_mean", torch.zeros(self.n_grid))
        self.register_buffer("spectrum_std", torch.ones(self.n_grid))
        self.register_buffer("scalar_mean", torch.zeros(()))
        self.register_buffer("scalar_std", torch.ones(()))

    def heads(self, batch, edge_vec: torch.Tensor, n_graphs: int):  # pragma: no cover
        """Normalised spectrum [B, n_grid] and scalar [B] (order one)."""
        raise NotImplementedError

    def forward(self, batch, **ignored):
        """Spectrum [B, n_grid] and scalar [B] >= 0 in the data's units; ``ignored`` takes the
        potentials' keywords (``forces``, ``stress``) so a trainer can call every family alike."""
        n_graphs = batch.cell.shape[0]
        edge_vec = EnergyModel.edge_vectors(batch, batch.pos, batch.cell)
        spectrum, scalar = self.heads(batch, edge_vec, n_graphs)
        return {"spectrum": self.spectrum_mean + self.spectrum_std * spectrum,
                "scalar": torch.relu(self.scalar_mean + self.scalar_std * scalar)}

    @torch.no_grad()
    def fit_targets(self, spectrum: np.ndarray, scalar: np.ndarray) -> None:
        """Set the target statistics from the training set (NaN entries are left out).

        ``spectrum_mean`` / ``spectrum_std``: per grid point; a point's std is floored at 1% of
        the spectrum's overall std, so that a point where every training spectrum is the same
        (e.g. zero) stays learnable. ``scalar_mean`` / ``scalar_std``: of the scalar. Anything
        without finite data keeps mean 0 and std 1.
        """
        spectrum = np.asarray(spectrum, dtype=float)
        scalar = np.asarray(scalar, dtype=float).reshape(-1)
        if spectrum.ndim != 2 or spectrum.shape[1] != self.n_grid:
            raise ValueError(f"spectrum has shape {spectrum.shape}; expected [n, {self.n_grid}]")
        mean, std = _nan_stats(spectrum)
        overall = _nan_stats((spectrum - mean).reshape(-1, 1), centred=True)[1][0]
        std = np.maximum(std, 1e-2 * overall) if overall > 0 else np.ones_like(std)
        scalar_mean, scalar_std = (float(v[0]) for v in _nan_stats(scalar[:, None]))
        self.spectrum_mean.copy_(torch.as_tensor(mean))
        self.spectrum_std.copy_(torch.as_tensor(std))
        self.scalar_mean.fill_(scalar_mean)
        self.scalar_std.fill_(scalar_std if scalar_std > 0 else 1.0)


def _nan_stats(x: np.ndarray, centred: bool = False):
    """Column means and (population) stds over finite entries; 0 and 0 for an empty column.
    ``centred``: x is already centred (std is the RMS)."""
    finite = np.isfinite(x)
    count = finite.sum(0)
    x0 = np.where(finite, x, 0.0)
    mean = np.zeros(x.shape[1]) if centred else x0.sum(0) / np.maximum(count, 1)
    var = (np.where(finite, x - mean, 0.0) ** 2).sum(0) / np.maximum(count, 1)
    return mean, np.sqrt(var)


# ------------------------------------------------------------------ building blocks


def mlp(channels: list[int]) -> MLP:
    """torch-geometric's MLP with its defaults (ReLU, batch norm, plain last layer), as the
    paper built every MLP; batch norm of a single row uses the running statistics."""
    return MLP(channels, act="relu", plain_last=True, norm="batch_norm",
               norm_kwargs={"allow_single_element": True})


@functools.lru_cache(maxsize=1)
def group_period_table() -> tuple[tuple[int, int], ...]:
    """Zero-based (group, period) of Z = 0..MAX_Z from pymatgen (Z = 0 is a dummy (0, 0)).

    Lanthanides and actinides have group 3 (pymatgen's convention, the paper's table);
    period 7 shares period 6's slot (the paper's one-hot has six periods).
    """
    from pymatgen.core import Element  # imported here: only needed to build the table

    table = [(0, 0)]
    for z in range(1, MAX_Z + 1):
        element = Element.from_Z(z)
        table.append((element.group - 1, min(element.row, N_PERIODS) - 1))
    return tuple(table)


class GroupPeriodEmbedding(nn.Module):
    """``Linear(onehot(group) ++ onehot(period))`` held as a 24-row embedding table plus a bias
    (same function and parameter count; initialised like the Linear it replaces)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("table", torch.tensor(group_period_table()), persistent=False)
        self.onehot = nn.Embedding(N_GROUPS + N_PERIODS, width)
        self.bias = nn.Parameter(torch.empty(width))
        bound = 1.0 / math.sqrt(N_GROUPS + N_PERIODS)  # nn.Linear's default initialisation
        nn.init.uniform_(self.onehot.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        group, period = self.table[z].unbind(-1)
        return self.onehot(group) + self.onehot(N_GROUPS + period) + self.bias


class GaussianBasis(nn.Module):
    """``N_RBF`` Gaussians on [0, cutoff] (std ``RBF_WIDTH`` spacings) times the envelope."""

    def __init__(self, cutoff: float = CUTOFF, n_rbf: int = N_RBF, width: float = RBF_WIDTH):
        super().__init__()
        self.register_buffer("offset", torch.linspace(0.0, cutoff, n_rbf), persistent=False)
        self.coeff = -0.5 / (width * cutoff / (n_rbf - 1)) ** 2
        self.envelope = PolynomialEnvelope(cutoff, ENVELOPE_EXPONENT)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        gauss = torch.exp(self.coeff * (r.unsqueeze(-1) - self.offset) ** 2)
        return self.envelope(r).unsqueeze(-1) * gauss


def angle_features(cos: torch.Tensor, l_max: int = L_MAX) -> torch.Tensor:
    """m = 0 real spherical harmonics ``sqrt((2l+1)/4pi) P_l(cos)``, l = 0..l_max."""
    norm = torch.tensor([math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(l_max + 1)],
                        dtype=cos.dtype, device=cos.device)
    return legendre(cos, l_max) * norm


class Block(nn.Module):
    """``x = conv(x); x = x + MLP(x); x = LayerNorm_graph(x)`` (a transformer-encoder block)."""

    def __init__(self, conv: nn.Module, width: int):
        super().__init__()
        self.conv = conv
        self.mlp = mlp([width, MLP_MULTIPLIER * width, width])
        self.norm = LayerNorm(width, mode="graph")

    def forward(self, x, edge_index, edge_attr, batch, n_graphs: int):
        x = self.conv(x, edge_index, edge_attr)
        x = x + self.mlp(x)
        return self.norm(x, batch, n_graphs)


def transformer_block(width: int, heads: int) -> Block:
    heads = min(heads, width)
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of {heads} attention heads")
    return Block(TransformerConv(width, width // heads, heads=heads, concat=True,
                                 edge_dim=width, beta=True), width)


# ------------------------------------------------------------------ the models


class OptiMetal(SpectralModel):
    """Embeddings, attention pooling and heads of every OptiMetal variant; subclasses
    implement :meth:`interact` (the message passing, see the module docstring)."""

    def __init__(self, width: int, n_grid: int = N_GRID, cutoff: float = CUTOFF):
        super().__init__(cutoff, n_grid)
        self.width = int(width)
        self.embed = GroupPeriodEmbedding(width)
        self.node_norm = BatchNorm(width, allow_single_element=True)
        self.node_mlp = mlp([width] * DEPTH + [width])   # the rest of 24 -> d_h -> d_h -> d_h
        self.rbf = GaussianBasis(cutoff)
        self.edge_mlp = mlp([N_RBF] + [width] * DEPTH + [width])
        self.attention = mlp([width, width])             # a single Linear
        self.spectrum_head = mlp([width] + [SPECTRUM_MULTIPLIER * width] * DEPTH + [n_grid])
        self.scalar_head = mlp([width] + [width] * DEPTH + [1])

    def interact(self, x, e, edge_vec, batch, n_graphs: int) -> torch.Tensor:
        """Atom features [n_atoms, d_h] after message passing."""
        raise NotImplementedError  # pragma: no cover

    def heads(self, batch, edge_vec, n_graphs):
        x = self.node_mlp(torch.relu(self.node_norm(self.embed(batch.z))))
        e = self.edge_mlp(self.rbf(edge_vec.norm(dim=-1)))
        x = self.interact(x, e, edge_vec, batch, n_graphs)
        att = softmax(self.attention(x), batch.batch, num_nodes=n_graphs)
        pooled = global_add_pool(x * att, batch.batch, size=n_graphs)
        return self.spectrum_head(pooled), self.scalar_head(pooled).squeeze(-1)


class OptiMetal2B(OptiMetal):
    """Two-body OptiMetal with CGConv (``conv="cgc"``) or TransformerConv (``conv="tc"``)."""

    def __init__(self, width: int, conv: str = "cgc", n_grid: int = N_GRID):
        super().__init__(width, n_grid)
        if conv == "cgc":
            self.blocks = nn.ModuleList(Block(CGConv(width, dim=width, aggr="add"), width)
                                        for _ in range(N_LAYERS))
        else:
            self.blocks = nn.ModuleList(transformer_block(width, HEADS["tc"])
                                        for _ in range(N_LAYERS))

    def interact(self, x, e, edge_vec, batch, n_graphs):
        for block in self.blocks:
            x = block(x, batch.edge_index, e, batch.batch, n_graphs)
        return x


class OptiMetal3B(OptiMetal):
    """Three-body OptiMetal: triplet layers of edge, angle, line-graph and atom updates."""

    def __init__(self, width: int, n_grid: int = N_GRID,
                 triplet_cutoff: float = TRIPLET_CUTOFF):
        super().__init__(width, n_grid)
        self.triplet_cutoff = float(triplet_cutoff)
        self.angle_mlp = mlp([L_MAX + 1] + [width] * DEPTH + [width])
        self.layers = nn.ModuleList(nn.ModuleDict({
            "edge_update": mlp([3 * width, width]),      # a single Linear
            "edge_norm": LayerNorm(width, mode="graph"),
            "angle_update": mlp([3 * width, width]),
            "angle_norm": LayerNorm(width, mode="graph"),
            "line_graph": transformer_block(width, HEADS["three_body"]),
            "atoms": transformer_block(width, HEADS["three_body"]),
        }) for _ in range(N_LAYERS))

    def interact(self, x, e, edge_vec, batch, n_graphs):
        neighbour, centre = batch.edge_index   # edge (j -> i): triplets share i, the centre
        r = edge_vec.norm(dim=-1)
        pair = triplets(batch.edge_index, r, self.triplet_cutoff, x.shape[0])
        b, a = pair                            # line-graph messages b -> a
        cos = (edge_vec[a] * edge_vec[b]).sum(-1) / (r[a] * r[b])
        t = self.angle_mlp(angle_features(cos.clamp(-1 + 1e-7, 1 - 1e-7)))
        edge_batch = batch.batch[centre]
        angle_batch = edge_batch[a]
        outward = torch.stack([centre, neighbour])  # the paper's orientation: centre -> neighbour
        for layer in self.layers:
            e = e + layer["edge_update"](torch.cat([x[centre], x[neighbour], e], dim=-1))
            e = layer["edge_norm"](e, edge_batch, n_graphs)
            t = t + layer["angle_update"](torch.cat([e[b], e[a], t], dim=-1))
            t = layer["angle_norm"](t, angle_batch, n_graphs)
            e = layer["line_graph"](e, pair, t, edge_batch, n_graphs)
            x = layer["atoms"](x, outward, e, batch.batch, n_graphs)
        return x


def build(size: int, variant: str = "cgc", n_grid: int = N_GRID) -> OptiMetal:
    """Rung ``size`` (0 <= size < len(WIDTHS)) of ``variant`` ("cgc", "tc" or "three_body"),
    predicting a spectrum of ``n_grid`` points (4002 reproduces the paper's models)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if (not isinstance(size, numbers.Integral) or isinstance(size, bool)
            or not 0 <= size < len(WIDTHS)):
        raise ValueError(f"size {size!r} is not a rung: choose 0..{len(WIDTHS) - 1}")
    width = WIDTHS[int(size)]
    if variant == "three_body":
        return OptiMetal3B(width, n_grid=n_grid)
    return OptiMetal2B(width, conv=variant, n_grid=n_grid)
