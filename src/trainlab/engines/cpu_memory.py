"""Keep freed memory in the process for the next training step (glibc malloc, Linux).

A training step allocates the same large buffers again and again (activations, their
gradients, max-pool backward's zero-filled input gradient). glibc's malloc serves each
block over 32 MB with a fresh ``mmap`` and unmaps it when freed, so every step pays the
page faults of touching that memory anew, and trims the heap's free top back to the
system as well. ``bench/profile_step.py`` run with and without ``TRAINLAB_MALLOC=system``
shows the difference on seed C's CNN and the fast CIFAR-10 recipe's net.

:func:`retain_freed_memory` makes malloc take every block from its heap (``M_MMAP_MAX``
0) and keep up to 2 GiB of free heap top (``M_TRIM_THRESHOLD``), so a step reuses the
previous step's pages. The process then holds on to its peak memory until it exits, which
is what a training process needs anyway. ``TRAINLAB_MALLOC=system`` leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
_TRIM_BYTES = 2**31 - 1  # mallopt takes an int
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed memory instead of returning it; True when set.

    Once per process; a no-op (False) off Linux/glibc or with ``TRAINLAB_MALLOC=system``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if sys.platform != "linux" or os.environ.get("TRAINLAB_MALLOC", "").lower() == "system":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # absent from musl: AttributeError
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_BYTES))
    return _applied


__all__ = ["retain_freed_memory"]
