"""Import a module with the process's C-level stderr silenced.

fairchem-core imports NVIDIA Warp, whose compiled core prints a CUDA-driver warning straight to
file descriptor 2 on every machine without a GPU. In a notebook that text lands, or not, in
whichever cell happens to be running, which makes executed notebooks differ from run to run
(and ``pytest --nbval`` fail). Python-level errors still raise as usual; only text written to
fd 2 during the first import is dropped.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys


def import_quietly(path: str):
    """``importlib.import_module(path)``, with fd 2 sent to /dev/null during a first import."""
    if path in sys.modules:
        return sys.modules[path]
    with contextlib.ExitStack() as stack:
        try:
            saved = os.dup(2)
        except OSError:  # no usable stderr: nothing to silence
            return importlib.import_module(path)
        stack.callback(os.close, saved)
        devnull = os.open(os.devnull, os.O_WRONLY)
        stack.callback(os.close, devnull)
        sys.stderr.flush()
        os.dup2(devnull, 2)
        stack.callback(os.dup2, saved, 2)
        return importlib.import_module(path)
