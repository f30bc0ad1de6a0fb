"""Checks specific to the optimetal2b_tc and optimetal3b families, in float64.

The shared physics checks (``test_models_physics.py``) and pinned ladders
(``test_models_ladder.py``) run on every family in ``MODELS``, these two included. Added here:
continuity when a third atom crosses a cutoff while other neighbours stay (5 Å, and 4 Å for the three-body terms), with controls showing that the
test catches the naive formulations; the triplet list against brute force; the double backward
of the enveloped softmax; two training steps.
"""

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from torch.autograd import gradcheck, gradgradcheck
from torch_geometric.data import Batch
from torch_geometric.utils import softmax

from msl import targets
from msl.models import optimetal3b, optimetal_tc
from test_models_physics import alloy, evaluate_one, perturbed, to_data

torch.set_num_threads(2)

FAMILIES = {"optimetal2b_tc": optimetal_tc, "optimetal3b": optimetal3b}



@pytest.fixture(scope="module", params=sorted(FAMILIES))
def model(request):
    """Rung 1 in float64, perturbed, with a random reference (the recipe of the physics tests)."""
    return perturbed(request.param)


# ------------------------------------------------------------------ a third atom crosses a cutoff


def trimer(s: float, angle_deg: float) -> Atoms:
    """Atom 0 at the origin, atom 1 at 2.5 Å, atom 2 at distance ``s`` from atom 0."""
    t = np.radians(angle_deg)
    return Atoms("CuAuNi", positions=[[0, 0, 0], [2.5, 0, 0], [s * np.cos(t), s * np.sin(t), 0]])


def crossing_jumps(model, rc: float, angle_deg: float, d: float = 1e-7):
    """Jumps of energy and forces as atom 2 moves from rc - d to rc + d from atom 0.

    The energy jump is corrected by the work of the mean force (trapezoid rule), so a smooth
    model gives ~0 even though its forces there are not zero.
    """
    (e_in, f_in, _), (e_out, f_out, _) = (evaluate_one(model, trimer(rc + x, angle_deg),
                                                       stress=False) for x in (-d, d))
    t = np.radians(angle_deg)
    n = np.array([np.cos(t), np.sin(t), 0.0])
    work = -0.5 * (f_in[2] + f_out[2]) @ n * 2 * d
    return abs(e_out - e_in - work), np.abs(f_out - f_in).max()


# angle 60°: atom 2 stays 4.33 Å from atom 1 at s = 5; angle 80°: 4.33 Å at s = 4
CROSSINGS = [(5.0, 60.0)]
CROSSINGS_3B = [(optimetal3b.TRIPLET_CUTOFF, 80.0)]


@pytest.mark.parametrize("rc,angle", CROSSINGS)
def test_a_third_atom_enters_the_cutoff_smoothly(model, rc, angle):
    """Atom 0 keeps a neighbour while another enters: the attention normalisation must not jump."""
    de, df = crossing_jumps(model, rc, angle)
    assert de < 1e-10 and df < 1e-5


def test_a_bond_enters_the_three_body_cutoff_smoothly():
    m = _model_3b()
    de, df = crossing_jumps(m, *CROSSINGS_3B[0])
    assert de < 1e-10 and df < 1e-5


class HardCutoff(torch.nn.Module):
    def __init__(self, cutoff):
        super().__init__()
        self.cutoff = cutoff

    def forward(self, r):
        return (r < self.cutoff).to(r.dtype)


def test_crossing_test_catches_a_hard_three_body_cutoff():
    """Control: the same crossing with a step instead of the 4 Å envelope jumps; and the
    three-body terms matter at all (energy changes when they are switched off)."""
    m = _model_3b()
    hard = copy.deepcopy(m)
    hard.triplet_envelope = HardCutoff(optimetal3b.TRIPLET_CUTOFF)
    de, df = crossing_jumps(hard, *CROSSINGS_3B[0])
    assert de > 1e-5 or df > 1e-3
    off = copy.deepcopy(m)
    off.triplet_envelope = HardCutoff(0.0)
    atoms = trimer(3.0, 80.0)
    assert abs(evaluate_one(off, atoms, stress=False)[0]
               - evaluate_one(m, atoms, stress=False)[0]) > 1e-4


def test_crossing_test_catches_envelope_times_plain_softmax(monkeypatch):
    """Control: attention = envelope x PyG's softmax (the naive fix) jumps when a neighbour
    enters, because the newcomer enters the denominator with full weight."""
    m = _model_tc()
    monkeypatch.setattr(optimetal_tc, "enveloped_softmax",
                        lambda s, w, index, n: w[:, None] * softmax(s, index, num_nodes=n))
    de, df = crossing_jumps(m, *CROSSINGS[0])
    assert de > 1e-5


def _model_tc():
    return _perturbed(optimetal_tc.build(1))


def _model_3b():
    return _perturbed(optimetal3b.build(1))


def _perturbed(m):
    torch.manual_seed(0)
    m = m.double().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return m


# ------------------------------------------------------------------ pieces


def test_enveloped_softmax_has_exact_first_and_second_derivatives():
    gen = torch.Generator().manual_seed(0)
    score = torch.randn(12, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(12, generator=gen, dtype=torch.float64).requires_grad_(True)
    index = torch.tensor([0, 0, 1, 1, 1, 3, 3, 0, 1, 3, 3, 3])  # atom 2 has no neighbours
    f = lambda s, w: optimetal_tc.enveloped_softmax(s, w, index, 4)  # noqa: E731
    assert gradcheck(f, (score, weight)) and gradgradcheck(f, (score, weight))
    alpha = f(score, weight).detach()
    total = torch.zeros(4, 2, dtype=torch.float64).index_add(0, index, alpha)
    assert torch.all(total < 1) and torch.all(total[2] == 0)
    far = f(score + 1000.0, weight)  # large scores: the shift keeps exp finite
    assert torch.isfinite(far).all()


def test_triplets_match_brute_force_in_a_batch():
    structures = [alloy(0), alloy(1, repeat=(1, 1, 1)), Atoms("Cu", positions=[[0, 0, 0]])]
    batch = Batch.from_data_list([to_data(a, 5.0) for a in structures])
    src, dst = batch.edge_index
    vec = batch.pos[src] - batch.pos[dst] + torch.einsum(
        "ei,eij->ej", batch.shift, batch.cell[batch.batch[dst]])
    r = vec.norm(dim=-1)
    got = optimetal3b.triplets(batch.edge_index, r, 4.0, batch.num_nodes)
    short = [e for e in range(len(r)) if r[e] < 4.0]
    brute = {(b, a) for a in short for b in short if a != b and dst[a] == dst[b]}
    assert got.shape[1] == len(brute) > 0 and set(map(tuple, got.T.tolist())) == brute


def test_legendre_polynomials():
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    p = optimetal3b.legendre(x, 3)
    expected = torch.stack([torch.ones_like(x), x, (3 * x**2 - 1) / 2, (5 * x**3 - 3 * x) / 2], -1)
    torch.testing.assert_close(p, expected)


# ------------------------------------------------------------------ ladder


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_two_training_steps_with_force_loss(name):
    """As in msl.train: train mode (create_graph), energy + forces + stress loss, backward
    through the forces (double backward), AdamW step; every parameter gets a finite gradient."""
    torch.manual_seed(0)
    model = FAMILIES[name].build(1).train()
    graphs = []
    for seed in (20, 21):
        data = to_data(alloy(seed, repeat=(1, 1, 1), cubic=True), 5.0)
        for key in ("pos", "cell", "shift"):
            data[key] = data[key].float()
        data.energy = torch.tensor([-12.0])
        data.forces = 0.3 * torch.randn(data.num_nodes, 3)
        data.stress = 0.01 * torch.randn(1, 3, 3)
        graphs.append(data)
    batch = Batch.from_data_list(graphs)
    scales = targets.Scales({"energy": 0.1, "forces": 0.3, "stress": 0.01})
    terms = targets.table("default")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = copy.deepcopy(model.state_dict())
    for _ in range(2):
        loss = targets.loss(model(batch), batch, scales, terms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        optimizer.step()
        assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(list(model.parameters()))
