"""Fixed val/test sets, nested training subsets, group splits."""

import numpy as np
import pytest

from msl.data import Split, split


def test_disjoint_and_complete():
    s = split(100, 10, 15, seed=1)
    assert isinstance(s, Split) and len(s.val) == 10 and len(s.test) == 15
    everything = np.concatenate([s.val, s.test, s.train_order])
    assert sorted(everything.tolist()) == list(range(100))
    assert s.val.dtype == s.test.dtype == s.train_order.dtype == np.int64


def test_nested_prefixes():
    s = split(200, 20, 20, seed=7)
    sizes = [1, 5, 20, 80, 160]
    for small, large in zip(sizes, sizes[1:]):
        assert set(s.train(small)) <= set(s.train(large))
        assert not set(s.train(large)) & (set(s.val) | set(s.test))


def test_val_test_do_not_depend_on_training_seed():
    a, b = split(300, 30, 30, seed=0), split(300, 30, 30, seed=1)
    np.testing.assert_array_equal(a.val, b.val)
    np.testing.assert_array_equal(a.test, b.test)
    assert sorted(a.train_order) == sorted(b.train_order)
    assert not np.array_equal(a.train_order, b.train_order)
    c = split(300, 30, 30, seed=0, split_seed=1)
    assert not np.array_equal(a.val, c.val)


def test_deterministic():
    a, b = split(50, 5, 5, seed=3), split(50, 5, 5, seed=3)
    for x, y in zip((a.val, a.test, a.train_order), (b.val, b.test, b.train_order)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("n_train", [72, 1000, 0, -1])
def test_train_size_out_of_range(n_train):
    s = split(100, 10, 19, seed=0)
    with pytest.raises(ValueError, match=rf"n_train={n_train}.*71"):
        s.train(n_train)


def test_bad_split_sizes():
    with pytest.raises(ValueError, match="n_val=60"):
        split(100, 60, 40)
    with pytest.raises(ValueError, match="n_test"):
        split(100, 10, -1)


def test_group_split_has_no_leak():
    rng = np.random.default_rng(0)
    groups = np.array([f"F{k}" for k in rng.integers(0, 40, 400)] + [f"U{k}" for k in range(100)])
    s = split(len(groups), 30, 40, seed=2, groups=groups)
    parts = [set(groups[idx]) for idx in (s.val, s.test, s.train_order)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert len(s.val) == 30 and len(s.test) == 40  # exact: singleton groups fill the room
    assert len(s.val) + len(s.test) + len(s.train_order) == len(groups)


def test_group_larger_than_val_trains():
    groups = ["big"] * 50 + [f"u{k}" for k in range(50)]
    s = split(100, 10, 10, seed=0, groups=groups)
    assert set(range(50)) <= set(s.train_order)


def test_groups_must_match_pool():
    with pytest.raises(ValueError, match="one label per structure"):
        split(10, 2, 2, groups=["a"] * 9)


@pytest.mark.parametrize("n_pool, n_val, n_test", [(5, 1, 1), (300, 50, 50), (100_003, 100, 100)])
def test_split_draws_what_numpy_permutations_draw(n_pool, n_val, n_test):
    """The split as first written (int64 permutations): the int32, in-place version gives the
    same indices, so every cell keeps its sets."""
    for seed, split_seed in ((0, 0), (3, 1)):
        perm = np.random.default_rng(np.random.SeedSequence([split_seed, 0x5717])).permutation(n_pool)
        rest = np.sort(perm[n_val + n_test:])
        order = np.random.default_rng(np.random.SeedSequence([seed, 0x7A19])).permutation(rest)
        s = split(n_pool, n_val, n_test, seed=seed, split_seed=split_seed)
        np.testing.assert_array_equal(s.val, np.sort(perm[:n_val]))
        np.testing.assert_array_equal(s.test, np.sort(perm[n_val:n_val + n_test]))
        np.testing.assert_array_equal(s.train_order, order)
        assert s.train_order.dtype == np.int64
