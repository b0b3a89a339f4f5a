"""The engines keep freed memory for the next step instead of faulting fresh pages in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import trainlab.engines.cpu_memory as cpu_memory

# Allocate a 128 MB block twice; print how many more bytes malloc holds in mmap-ed blocks while
# the second one lives (glibc's mallinfo2), and whether the second took the first one's address.
_PROBE = """
import ctypes, numpy as np
from trainlab.engines.cpu_memory import retain_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
print(retain_freed_memory())
block = np.ones(32 * 2**20, np.float32); first = block.ctypes.data; del block
before = mallinfo2().hblkhd
block = np.ones(32 * 2**20, np.float32)
print(mallinfo2().hblkhd - before, block.ctypes.data == first)
"""


def _probe(**env: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                          env={**os.environ, **env})
    return done.stdout.split()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc settings")
def test_large_blocks_come_from_the_heap_and_are_reused() -> None:
    applied, mapped, same_address = _probe()
    assert applied == "True"
    assert int(mapped) == 0 and same_address == "True"  # the freed block's pages serve the next one
    applied, mapped, _ = _probe(TRAINLAB_MALLOC="system")
    assert applied == "False"
    assert int(mapped) >= 128 * 2**20  # glibc's default: a fresh mmap for each large block


def test_opt_out_and_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_memory, "_applied", None)
    monkeypatch.setenv("TRAINLAB_MALLOC", "system")
    assert cpu_memory.retain_freed_memory() is False
    monkeypatch.delenv("TRAINLAB_MALLOC")
    assert cpu_memory.retain_freed_memory() is False  # decided once for the process
