"""The size ladder of every family: pinned parameter counts and the size dial's error handling.

``PINNED`` is the source of truth for N quoted anywhere (STYLE rule 1: counts come from a test,
not from comments). A change to a family's architecture changes these numbers on purpose; update
the table in the same change and say so in the decision log.
"""

import re

import pytest
import torch

from msl.models import MODELS, build_model, check_size, count_params, family

# family -> (n_params, n_params_no_embed) of every rung, in ladder order
PINNED = {
    "optimetal2b": [
        (3_361, 2_553),          # width 8
        (6_241, 5_029),          # 12
        (9_921, 8_305),          # 16
        (19_681, 17_257),        # 24
        (32_641, 29_409),        # 32
        (68_161, 63_313),        # 48
        (116_481, 110_017),      # 64
        (251_521, 241_825),      # 96
        (437_761, 424_833),      # 128
        (963_841, 944_449),      # 192
        (1_694_721, 1_668_865),  # 256
    ],
    "optimetal2b_tc": [(3_097, 2_289), (5_845, 4_633), (9_393, 7_777), (18_889, 16_465),
                       (31_585, 28_353), (66_577, 61_729), (114_369, 107_905), (248_353, 238_657),
                       (433_537, 420_609), (957_505, 938_113), (1_686_273, 1_660_417)],
    "transformer": [(4_261, 4_059), (8_719, 7_911), (16_343, 14_727), (37_351, 34_119),
                    (52_506, 49_274), (102_407, 95_943), (157_146, 150_682), (317_082, 307_386),
                    (532_314, 519_386), (739_949, 727_021), (1_587_501, 1_568_109)],
    "transformer_local": [(3_896, 3_694), (7_748, 6_940), (14_452, 12_836), (33_236, 30_004),
                          (45_956, 42_724), (92_308, 85_844), (142_308, 135_844),
                          (291_908, 282_212), (494_756, 481_828), (693_044, 680_116),
                          (1_505_076, 1_485_684)],
    "equiformer_v2": [(3_045, 1_631), (6_176, 4_055), (13_541, 9_299), (19_320, 14_371),
                      (30_456, 24_093), (36_110, 29_040), (50_518, 42_034), (73_373, 62_465),
                      (141_889, 126_436), (186_970, 168_790), (225_339, 205_341),
                      (293_790, 271_065), (386_862, 361_410), (486_314, 457_226),
                      (870_466, 831_379), (2_196_128, 2_131_690), (3_680_934, 3_594_276),
                      (5_368_761, 5_265_034), (6_390_224, 6_273_569), (11_953_602, 11_788_770)],
    # (embed, hidden, depth) = (8, 16, 2) ... (128, 256, 15); heads 128 wide
    "fcn": [(10_242, 9_434), (21_626, 20_010), (40_722, 38_298), (61_418, 58_186),
            (133_338, 128_490), (187_338, 181_278), (370_554, 362_474), (664_746, 655_050),
            (1_338_634, 1_325_706)],
    # (hidden = filters, interactions) = (8, 1) ... (192, 6); 50 Gaussians
    "schnet": [(1_529, 729), (2_509, 1_309), (5_521, 3_921), (9_913, 7_513), (21_217, 18_017),
               (41_425, 36_625), (68_033, 61_633), (182_497, 172_897), (455_809, 443_009),
               (984_769, 965_569)],
    "escn_md": [(8_529, 6_105), (15_969, 13_545), (56_769, 51_921), (122_401, 115_129),
                (308_801, 299_105), (682_849, 668_305), (1_583_617, 1_564_225),
                (3_536_641, 3_507_553), (6_263_809, 6_225_025), (18_953_473, 18_914_689)],
    # spectral families at the embedded grid (141 points), d_h = 4 ... 1024
    "optimetal2b_spectral": [(3_998, 3_902), (9_870, 9_678), (27_662, 27_278), (87_438, 86_670),
                             (303_758, 302_222), (1_123_470, 1_120_398), (4_311_182, 4_305_038),
                             (16_879_758, 16_867_470), (66_789_518, 66_764_942)],
    "optimetal2b_tc_spectral": [(4_006, 3_910), (9_822, 9_630), (27_310, 26_926), (85_710, 84_942),
                                (296_206, 294_670), (1_091_982, 1_088_910),
                                (4_182_670, 4_176_526), (16_360_590, 16_348_302),
                                (64_702_606, 64_678_030)],
    "optimetal3b_spectral": [(5_090, 4_994), (13_526, 13_334), (40_862, 40_478),
                             (137_390, 136_622), (497_870, 496_334), (1_888_526, 1_885_454),
                             (7_348_622, 7_342_478), (28_983_950, 28_971_662),
                             (115_115_150, 115_090_574)],
    "optimetal3b": [(5_009, 4_201), (10_201, 8_989), (17_185, 15_569), (36_529, 34_105),
                    (63_041, 59_809), (137_569, 132_721), (240_769, 234_305), (533_185, 523_489),
                    (940_289, 927_361), (2_098_561, 2_079_169), (3_715_585, 3_689_729)],
}


@pytest.fixture(scope="module")
def counts():
    """count_params of every rung of every family (built once; the big rungs take a moment)."""
    return {name: [meta_count(name, size) for size in range(len(family(name).LADDER))]
            for name in MODELS}


def meta_count(name: str, size: int) -> dict:
    """count_params of a rung built on the meta device (shapes only, no memory: the largest
    rungs have ~10^8 parameters); a family whose constructor needs real tensors is built on CPU."""
    try:
        with torch.device("meta"):
            return count_params(build_model(name, size))
    except (NotImplementedError, RuntimeError):
        return count_params(build_model(name, size))


def test_every_family_is_pinned():
    assert sorted(PINNED) == sorted(MODELS), "add the new family's counts to PINNED"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_counts_are_pinned(counts, name):
    got = [(c["n_params"], c["n_params_no_embed"]) for c in counts[name]]
    assert got == PINNED[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ladder_is_strictly_increasing_over_two_decades(counts, name):
    """At least 8 rungs over at least two decades of N (DESIGN.md, Models)."""
    n = [c["n_params"] for c in counts[name]]
    assert all(a < b for a, b in zip(n, n[1:])), n
    assert len(n) >= 8 and max(n) / min(n) >= 100, n
    n_no_embed = [c["n_params_no_embed"] for c in counts[name]]
    assert all(a < b for a, b in zip(n_no_embed, n_no_embed[1:])), n_no_embed


@pytest.mark.parametrize("name", sorted(MODELS))
def test_embeddings_are_counted_apart(counts, name):
    for c in counts[name]:
        assert 0 < c["n_params_no_embed"] < c["n_params"]


def test_buffers_are_not_parameters():
    """Reference energies and the energy scale are buffers: saved, not trained, not in N."""
    model = build_model("optimetal2b", 0)
    n = count_params(model)["n_params"]
    assert n == sum(p.numel() for p in model.parameters())
    buffers = dict(model.named_buffers())
    assert "atom_ref" in buffers and "energy_scale" in buffers
    assert "atom_ref" in model.state_dict()
    model.requires_grad_(False)
    assert count_params(model) == {"n_params": 0, "n_params_no_embed": 0}


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="'transformerx'.*optimetal2b"):
        build_model("transformerx", 0)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [-1, "top", 1.0, True, "1", None])
def test_bad_size_is_named(name, size):
    if size == "top":
        size = len(family(name).LADDER)
    with pytest.raises(ValueError, match=re.escape(f"size {size!r} is not a rung of {name!r}")):
        build_model(name, size)
    with pytest.raises(ValueError, match=re.escape(f"size {size!r}")):
        check_size(name, size)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_rung_is_a_valid_size(name):
    for size in range(len(family(name).LADDER)):
        check_size(name, size)  # no error
