"""Checkpoints of the torch engine: one ``checkpoint.pt``, written atomically, read safely.

A checkpoint holds tensors and plain containers only (model and optimizer state dicts,
generator states as uint8 tensors, the epoch's permutation, the per-step records of the
current evaluation interval, and a JSON string of scalars), so it loads with
``torch.load(weights_only=True)``: a file holding any other pickled object (a tampered
checkpoint that would run code) is refused, never executed.

What it holds is listed by :func:`save_training`: the loop's part
(:meth:`~trainlab.engines.loop.TrainingLoop.loop_state`: the step, the callbacks' state and
the record that verifies a resume), then weights, optimizer state, every generator still in
use (data order, augmentation, dropout; the initialisation is seeded apart and needs none),
the epoch's permutation and the weight
average (``train.ema`` / ``train.lookahead``), so a resumed run reproduces an uninterrupted
one bit for bit on CPU, also from a checkpoint taken between evaluations (an interrupt).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainlab.engines.resume import checkpoint_fits
from trainlab.errors import RunDirError
from trainlab.io import atomic_write_with

if TYPE_CHECKING:
    from trainlab.engines.torch.engine import TorchTraining


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it over ``path``."""
    atomic_write_with(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU.

    ``mmap``: map the tensors instead of reading them (cheap when only ``meta`` is wanted).

    Raises:
        RunDirError: the file is missing, or holds something other than tensors and
            plain containers (it may have been tampered with), or is corrupt.
    """
    if not path.exists():
        raise RunDirError(f"cannot resume: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise RunDirError(
            f"refused to load {path}: it holds objects other than tensors and plain containers, "
            f"so it was not written by trainlab or was tampered with ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise RunDirError(f"cannot read the checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or "meta" not in payload:
        raise RunDirError(f"{path} is not a trainlab torch checkpoint")
    return payload


def load_meta(path: Path) -> dict[str, Any]:
    """The JSON ``meta`` of a checkpoint, its tensors mapped rather than read.

    Raises:
        RunDirError: as :func:`load_checkpoint`, or ``meta`` is not a JSON object.
    """
    payload = load_checkpoint(path, mmap=True)
    try:
        meta = json.loads(payload["meta"])
    except (TypeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise RunDirError(f"{path} is not a trainlab torch checkpoint (its meta is not a JSON object)")
    return meta


def save_training(training: TorchTraining) -> None:
    """Write everything a bit-for-bit resume of ``training`` needs (see the module docstring)."""
    filled = training.interval_steps
    meta = {
        **training.loop_state(),
        "interval": {"seen": training.seen, "steps": filled, "start": training.interval_start},
    }
    best = {str(i): weights for i, weights in training.best_weights().items()}
    payload: dict[str, Any] = {
        "meta": json.dumps(meta),
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "permutation": training.permutation,
        "data_gen": training.data_gen.get_state(),
        "augment": training.augment.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "best_weights": best,
        # An interrupt checkpoints between evaluations: these records make the next train row.
        "interval_losses": training.step_losses[:filled].cpu(),
        "interval_correct": training.step_correct[:filled].cpu(),
    }
    if training.average is not None:
        payload["average"] = training.average.state_dict()
    if training.device.type == "cuda":
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    if training.scaler.is_enabled():
        payload["scaler"] = training.scaler.state_dict()
    save_checkpoint(training.checkpoint_path, payload)


def load_training(training: TorchTraining) -> dict[str, Any]:
    """Restore :func:`save_training`'s checkpoint into ``training``; returns its ``meta``.

    Raises:
        RunDirError: the checkpoint is unreadable, refused, or does not fit the run.
        ConfigError, DataError: it was written with another config or other data
            (:meth:`~trainlab.engines.loop.TrainingLoop.verify_checkpoint`).
    """
    path = training.checkpoint_path
    payload = load_checkpoint(path)
    with checkpoint_fits(path):
        meta = json.loads(payload["meta"])
        training.verify_checkpoint(meta, path)
        training.model.load_state_dict(payload["model"])
        training.optimizer.load_state_dict(payload["optimizer"])
        permutation = payload["permutation"]
        if permutation.shape != training.permutation.shape:
            raise ValueError(f"its permutation has {len(permutation)} entries for {len(training.permutation)} "
                             "training examples")
        training.permutation = permutation
        training.data_gen.set_state(payload["data_gen"])
        training.augment.load_state_dict(payload["augment"])
        if training.average is not None and "average" in payload:
            training.average.load_state_dict(payload["average"])
        torch.set_rng_state(payload["torch_rng"])
        if "cuda_rng" in payload and training.device.type == "cuda":
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        if "scaler" in payload and training.scaler.is_enabled():
            training.scaler.load_state_dict(payload["scaler"])
        training.restore_loop_state(meta, {int(i): weights for i, weights in payload["best_weights"].items()})
        training.reset_interval()  # the interval starts at the resumed step, unless it was saved mid-way
        interval = meta.get("interval")
        if interval is not None and "interval_losses" in payload:
            filled = int(interval["steps"])
            if filled > len(training.step_losses):  # a run driven without evaluations grows them
                training.step_losses = torch.zeros(filled, dtype=torch.float64, device=training.device)
                training.step_correct = torch.zeros(filled, dtype=torch.int64, device=training.device)
            training.step_losses[:filled] = payload["interval_losses"].to(training.step_losses)
            training.step_correct[:filled] = payload["interval_correct"].to(training.step_correct)
            training.interval_steps, training.seen = filled, int(interval["seen"])
            training.interval_start = int(interval["start"])
    return meta


__all__ = ["load_checkpoint", "load_meta", "load_training", "save_checkpoint", "save_training"]
