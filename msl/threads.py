"""CPU threads for a training run: the idle cores, unless the config or the environment says.

Its own module because the choice reads the machine (``/proc/loadavg``, CPU affinity), which has
nothing to do with the training loop.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def auto_threads(requested: int = 0) -> int:
    """The torch CPU threads for a run whose config asks for ``requested`` (0: choose).

    * ``requested > 0``: that many.
    * else ``$OMP_NUM_THREADS``, where set to a positive integer (``msl sweep`` sets it per worker).
    * else the idle cores: the cores this process may run on (``os.sched_getaffinity``) less those
      that other processes keep busy, at least one. Busy cores are the other tasks running now
      (Linux: the "running" count of ``/proc/loadavg``, less this process, median of 9 looks over
      0.2 s); elsewhere the 1-minute load average (``os.getloadavg``) rounded half up. The count
      now, unlike the load average, sees a run started at the same moment (``&`` in a shell
      loop) and forgets one that has just ended (the previous command of a loop). On an idle
      machine this is every core, torch's own default; on 2 cores with one other training
      process it is 1 (torch's default of 2 ran 58x slower there, its threads fighting the other
      process's). Both figures are the kernel's, machine-wide: in a container that does not
      virtualise them they include the host's other work.

    Where other work lowers the count, one line on stderr says so and how to override it
    (``threads=N``). The thread count changes results only by float32 round-off (parallel sums
    add in another order: 1 against 2 threads moved metrics by ~1e-7 relative, tested); ``msl
    sweep`` sets the threads of every cell explicitly, so a sweep's results do not depend on load.
    """
    if requested > 0:
        return requested
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    load, busy = _busy_cores()
    threads = max(1, cores - busy)
    if threads < cores:
        print(f"msl: warning: using {threads} of {cores} CPU cores, as other processes keep "
              f"{min(busy, cores)} busy (1-minute load average {load:.2f}); to override, set "
              "threads=N (msl train --threads N, papermill -p threads N)", file=sys.stderr)
    return threads


def _busy_cores() -> tuple[float, int]:
    """(1-minute load average, cores that other processes keep busy); see :func:`auto_threads`."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    now = []
    for _ in range(9):  # the median of 9 looks 20 ms apart: a passing burst does not count
        now.append(_running_tasks())
        time.sleep(0.02)
    if None in now:  # no /proc/loadavg (not Linux): the load average, rounded half up
        return load, int(load + 0.5)
    return load, max(sorted(now)[len(now) // 2] - 1, 0)  # less this process


def _running_tasks() -> int | None:
    """Tasks running on the machine at this moment, this one included (the 4th field of
    ``/proc/loadavg``, "running/total"); None where there is no such file."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None
