"""Data: the embedded datasets, readers for real datasets, and nested training subsets.

``Structures`` is the data-key contract (shapes and units in :mod:`msl.data.structures`);
``embedded``/``generate`` make the embedded datasets of :data:`KINDS`: EMT alloys by default
(``kind="emt-vdos"`` adds a vibrational spectrum and a scalar, computed by
:mod:`msl.data.spectra`), CHGNet-labelled crystal prototypes with ``kind="chgnet"``
(:mod:`msl.data.chgnet`; :mod:`msl.data.store` writes and caches every kind); ``read`` loads
any supported file into ``Structures``; ``open_pool`` opens one by index and reads only the
structures asked for (:mod:`msl.data.pool`; graphs built on the fly: :mod:`msl.data.stream`,
which imports torch); ``split`` fixes validation/test sets and nested training subsets.
"""

from msl.data import spectra
from msl.data.generate import KINDS, embedded, generate
from msl.data.pool import Pool, open_pool
from msl.data.read import read
from msl.data.structures import GPA_PER_EV_A3, Structures
from msl.data.subsets import Split, split

__all__ = ["Structures", "GPA_PER_EV_A3", "read", "open_pool", "Pool", "embedded", "generate",
           "KINDS", "split", "Split", "spectra"]
