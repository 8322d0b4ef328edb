"""glibc's malloc with fixed thresholds hands freed arrays back; with its moving ones it
keeps them (the worker's heaps on the 1.7 M event run: stream.runtime.allocator)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

#: Frees 100 arrays of 2 MB allocated between small blocks that stay (what a worker's
#: batches and snapshots do), after an 8 MB array was freed (which raises glibc's moving
#: threshold to 8 MB), and prints how many MB of anonymous memory were handed back.
_CHURN = """
import sys
import numpy as np
from stream.runtime.allocator import hold_thresholds

if sys.argv[1] == "held":
    assert hold_thresholds()


def anon_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon"):
                return int(line.split()[1]) // 1024


big = np.ones((8 << 20) // 8)
del big
kept, arrays = [], []
for i in range(100):
    arrays.append(np.ones((2 << 20) // 8))
    kept.append(bytes(2000) + bytes([i % 256]))
before = anon_mb()
del arrays
print(before - anon_mb())
"""


def _handed_back(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and /proc")
def test_held_thresholds_hand_freed_arrays_back() -> None:
    assert _handed_back("moving") < 50  # the 200 MB stay in the heap
    assert _handed_back("held") > 150  # mapped on their own, unmapped when freed
