"""Checkpoints of the torch engine: one ``checkpoint.pt``, written atomically, read safely.

A checkpoint holds tensors and plain containers only (model and optimizer state dicts,
generator states as uint8 tensors, the epoch's permutation, and a JSON string of scalars),
so it loads with ``torch.load(weights_only=True)``: a file holding any other pickled
object (a tampered checkpoint that would run code) is refused, never executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from trainlab.errors import TrainingError
from trainlab.io import atomic_write_with


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it over ``path``."""
    atomic_write_with(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU.

    ``mmap``: map the tensors instead of reading them (cheap when only ``meta`` is wanted).

    Raises:
        TrainingError: the file is missing, or holds something other than tensors and
            plain containers (it may have been tampered with), or is corrupt.
    """
    if not path.exists():
        raise TrainingError(f"cannot resume: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise TrainingError(
            f"refused to load {path}: it holds objects other than tensors and plain containers, "
            f"so it was not written by trainlab or was tampered with ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise TrainingError(f"cannot read the checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or "meta" not in payload:
        raise TrainingError(f"{path} is not a trainlab torch checkpoint")
    return payload


__all__ = ["load_checkpoint", "save_checkpoint"]
