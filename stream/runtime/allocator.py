"""glibc's malloc held to fixed thresholds in a long-running process.

glibc serves a request of at least its *mmap threshold* (128 KB at start) with
a mapping of its own, given back to the system when it is freed; smaller ones
come from its heaps, which it shrinks only from the top. The threshold moves:
each time a mapped block is freed, it rises to that block's size (up to 32
MB), and the trim threshold with it. In a worker whose batches, snapshots and
model fits free arrays of a few hundred KB to a few MB all the time, the
threshold soon sits at megabytes, those arrays land in the heaps, and the
heaps keep what they once held: on the 1.7 M event run, 240 to 250 MB of
heap, a third to a half of it free at any time, most of the worker's memory
past its start-up.

:func:`hold_thresholds` fixes both thresholds (``mallopt``), which also stops
them moving: arrays of :data:`MMAP_THRESHOLD` and more are mapped and handed
back when freed, and a heap is trimmed once twice that is free at its top.
At 128 KB the same run held 80 to 95 MB of heap with 6 to 7 MB free, but the
worker's system time tripled (62 s against about 20 s: a mapping, its page
faults and its unmapping for each array of a scoring batch); at 1 MB, the
default, the peak was the same (591 and 592 MB, both with polars still
loaded) at 21 s of system time (docs/performance.md).
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment
do the same from the process's start.

Outside glibc (musl, macOS) there is no ``mallopt`` to call: nothing is done.

Examples
--------
>>> hold_thresholds(0)  # 0: glibc's own (moving) thresholds, nothing changed
False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The bytes from which a request gets a mapping of its own (glibc starts at 128 KB).
MMAP_THRESHOLD = 1024 * 1024


def hold_thresholds(mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes and its trim threshold at
    twice that (see the module docs); returns whether it was done.

    Parameters
    ----------
    mmap_threshold
        The bytes from which a request is mapped on its own (0: leave glibc's moving
        thresholds as they are).
    """
    if mmap_threshold <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt here (not glibc): the allocator keeps its thresholds")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold)
    )
