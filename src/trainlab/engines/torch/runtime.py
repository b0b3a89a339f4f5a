"""Where and how the torch engine computes: device, threads, precision, seeds, the loss.

The run options of ``config.train`` that say how to run rather than what to train
(``device``, ``precision``, ``compile``, ``tta``, ``tta_below``) are gathered into a
:class:`TrainOptions` by :func:`train_options`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import RunConfig

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainOptions:
    """How to run, as opposed to what to train.

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        precision: ``fp32``; ``bf16`` autocast (CPU with bf16 instructions, or GPU);
            ``fp16`` autocast with a gradient scaler (GPU only).
        compile: run the model through ``torch.compile``.
        tta: test-time augmentation of the final evaluation: False, True (the mirror
            image), or a mode of :mod:`.tta` (``translate``, ``flip_translate``).
        tta_below: selective TTA: only images whose plain prediction's top probability is
            below it get the other views; None: every image.
    """

    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    tta: bool | str = False
    tta_below: float | None = None


def train_options(config: RunConfig) -> TrainOptions:
    """The device, precision, compile and TTA options of ``config.train``."""
    train = config.train
    return TrainOptions(device=train.device, precision=train.precision, compile=train.compile, tta=train.tta,
                        tta_below=train.tta_below)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when there is a GPU, else MPS, else the CPU.

    Raises:
        ConfigError: the named device is not available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' asked for, but PyTorch sees no GPU; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device: 'mps' asked for, but it is not available; use auto or cpu")
    return torch.device(name)


def cpu_threads() -> int:
    """Threads for CPU training: ``$TRAINLAB_NUM_THREADS``, else ``$OMP_NUM_THREADS``, else
    every core this process may run on.

    On a machine shared with other jobs, fewer threads than cores can be far faster
    (measured here: a small MLP step took 130 ms with 2 threads on 2 busy cores, 1.8 ms
    with 1), hence the override.
    """
    for name in ("TRAINLAB_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def stream_seed(seed: int, stream: int) -> int:
    """Independent 63-bit seeds per random stream (0 init, 1 data order, 2 augment, 3 dropout)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32).

    Raises:
        ConfigError: fp16 off a GPU.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision: fp16 needs a CUDA GPU; use bf16 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def data_loss(config: RunConfig, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
    """The config's loss of logits (B, K) against labels y (B,) or soft targets (B, K), in at
    least fp32 (half-precision logits are upcast; float64 stays float64)."""
    loss = config.loss
    logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
    if loss.type == "squared":
        # 0.5 * sum_c (z - onehot)^2 per example (sum_c ... with loss.half false), as the
        # NumPy engine's squared loss.
        target = soft if soft is not None else F.one_hot(y, logits.shape[1]).to(logits.dtype)
        per_example = ((logits - target) ** 2).sum(1)  # (B,)
        if loss.half:
            per_example = 0.5 * per_example
        return per_example.mean() if loss.reduction == "mean" else per_example.sum()
    return F.cross_entropy(logits, soft if soft is not None else y,
                           label_smoothing=loss.label_smoothing, reduction=loss.reduction)


__all__ = [
    "PRECISIONS",
    "TrainOptions",
    "autocast",
    "cpu_threads",
    "data_loss",
    "pick_device",
    "stream_seed",
    "train_options",
]
