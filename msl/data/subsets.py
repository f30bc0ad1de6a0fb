"""Fixed validation/test sets and nested training subsets of one pool of structures.

Two seeds, two jobs:

* ``split_seed`` decides which structures are validation and test. It is fixed for a study
  (default 0), so every cell, whatever its training seed, is measured on the same sets.
* ``seed`` decides the training order: a permutation of the remaining structures. The training
  set of size D is its first D entries (:meth:`Split.train`), so for one seed every larger D
  contains every smaller one, and changing ``seed`` re-draws the subsets, never val/test.

With ``groups`` (one label per structure, e.g. reduced formulas from
:meth:`Structures.formulas`), whole groups are assigned, so no group appears in two of
val/test/train. Groups are shuffled (by ``split_seed``) and walked in that order: a group
goes to val if it fits in the room left there (``n_val`` structures), otherwise to test if it
fits there, otherwise to train. Sizes are therefore exact whenever enough small groups exist,
and never exceed ``n_val``/``n_test``; a group larger than ``n_val`` and ``n_test`` always
trains. Check ``len(split.val)`` if groups are large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Split:
    """Indices into a pool: fixed ``val`` and ``test``, and the training order (all int64)."""

    val: np.ndarray          # [n_val] sorted, fixed by split_seed
    test: np.ndarray         # [n_test] sorted, fixed by split_seed
    train_order: np.ndarray  # permutation (by seed) of every index in neither val nor test

    def train(self, n_train: int) -> np.ndarray:
        """The first ``n_train`` of the training order: nested, so larger D ⊇ smaller D."""
        available = len(self.train_order)
        if not 1 <= n_train <= available:
            raise ValueError(
                f"n_train={n_train} is not possible: the training pool holds {available} "
                f"structures (pool minus {len(self.val)} val and {len(self.test)} test); "
                f"use 1 <= n_train <= {available}"
            )
        return self.train_order[:n_train]


def split(n_pool: int, n_val: int, n_test: int, seed: int = 0, groups=None,
          split_seed: int = 0) -> Split:
    """Split ``range(n_pool)`` into fixed val/test sets and a seeded training order.

    ``val``/``test`` depend only on ``(n_pool, n_val, n_test, groups, split_seed)``;
    ``train_order`` is a ``seed``-permutation of the rest (see the module docstring).
    Raises ``ValueError`` naming the bad value if sizes are negative or leave no training pool.
    """
    for name, value in (("n_pool", n_pool), ("n_val", n_val), ("n_test", n_test)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if n_val + n_test >= n_pool:
        raise ValueError(
            f"n_val={n_val} + n_test={n_test} leaves no training structures in a pool of {n_pool}"
        )
    split_rng = np.random.default_rng(np.random.SeedSequence([int(split_seed), 0x5717]))
    if groups is None:
        # = split_rng.permutation(n_pool) (the same draws: a shuffle's depend on the length
        # only), in 4 bytes an index: for OMat24's 1.1e8 structures the pool-sized arrays below
        # peak at 12 bytes a structure instead of 24 (tested equal)
        perm = np.arange(n_pool, dtype=np.int32 if n_pool < 2**31 else np.int64)
        split_rng.shuffle(perm)
        val, test, rest = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
    else:
        val, test, rest = _group_split(np.asarray(groups), n_pool, n_val, n_test, split_rng)
    val, test = np.sort(val).astype(np.int64), np.sort(test).astype(np.int64)
    order = np.sort(rest)  # the training order must not depend on how val/test were drawn
    perm = rest = None  # the first permutation is freed before the int64 copy below
    # = .permutation(order), shuffled in place
    np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A19])).shuffle(order)
    return Split(val=val, test=test, train_order=order.astype(np.int64, copy=False))


def _group_split(groups: np.ndarray, n_pool: int, n_val: int, n_test: int, rng):
    """Whole groups to val, then test, each only where it fits; the rest trains."""
    if groups.shape != (n_pool,):
        raise ValueError(f"groups must have one label per structure ({n_pool}), "
                         f"got shape {groups.shape}")
    labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    target = {"val": n_val, "test": n_test}
    chosen = {"val": [], "test": [], "train": []}
    for g in rng.permutation(len(labels)):
        where = next((k for k in ("val", "test") if counts[g] <= target[k]), "train")
        if where != "train":
            target[where] -= counts[g]
        chosen[where].append(g)
    member = [np.flatnonzero(np.isin(inverse, chosen[k])) for k in ("val", "test", "train")]
    if n_val and not len(member[0]) or n_test and not len(member[1]):
        raise ValueError(f"no group is small enough for n_val={n_val} / n_test={n_test}; "
                         f"the smallest group has {counts.min()} structures")
    return member[0], member[1], member[2]
