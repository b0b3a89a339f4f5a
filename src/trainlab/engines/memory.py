"""Will a run fit in memory? An estimate from its config, checked before anything is read.

:func:`estimate_memory` adds up, in bytes, what a run holds at its peak:

- parameters: the weights, their gradients, the optimizer's state (a momentum buffer, Adam's
  two moments...), and the copies some options keep (an EMA or lookahead average, early
  stopping's best weights), plus the model's other state (batch-norm statistics);
- activations: every layer's output for one training batch, kept for the backward pass,
  and the gradients flowing back through them (twice the outputs), or an evaluation chunk
  when that is larger;
- dataset: the decoded uint8 images at the chosen resize, the float32 splits that
  ``prepare_data`` makes, and the engine's own copies (the NumPy engine's float64 arrays for
  ``model.dtype: float64``, the torch engine's uint8 packing).

The interpreter and its libraries (torch's own memory) come on top; a step's temporaries
(augmented copies of a batch) are not counted.

The sizes come from the config alone: the model is counted layer by layer
(:mod:`.model_size`), the dataset from its known size or its file count
(:func:`trainlab.data.dataset_shape`); a custom model (``model.type: custom``) is built
and measured instead, which imports torch. A torch run on a CUDA GPU (``train.device: cuda``)
keeps its model and batches there, so only the dataset counts against the host (an Apple
GPU, ``mps``, shares the host's memory). ``device: auto`` is counted as the host: telling
whether a GPU is there would import torch.

:func:`check_memory` refuses a config whose estimate exceeds the memory available now
(``/proc/meminfo``'s MemAvailable, lowered to a cgroup's limit; else ``sysconf``), with
the estimate, its parts and the machine's memory. ``TRAINLAB_MEMORY_CHECK=off`` skips it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.data.shapes import DatasetShape, dataset_shape
from trainlab.errors import ConfigError

from .model_size import ModelSize, model_size

if TYPE_CHECKING:
    from trainlab.config import RunConfig

#: Rows per evaluation forward pass (``EVAL_CHUNK`` of each engine; a test keeps them equal).
EVAL_CHUNK = {"numpy": 4096, "torch": 1024}
#: State tensors per parameter that each optimizer keeps.
OPTIMIZER_SLOTS = {
    "sgd": 0, "momentum": 1, "nesterov": 1, "rmsprop": 1, "adagrad": 1, "muon": 1,
    "adam": 2, "adamw": 2, "adamax": 2, "nadam": 2, "adadelta": 2,
}  # fmt: skip
ENV_SWITCH = "TRAINLAB_MEMORY_CHECK"
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
)


@dataclass(frozen=True)
class MemoryEstimate:
    """The bytes a run needs at its peak, in three parts (see the module docstring).

    Attributes:
        parameters: weights, gradients, optimizer state and weight copies.
        activations: layer outputs and their gradients for one batch (or evaluation chunk).
        dataset: decoded images and the float copies made of them.
        host: the bytes that count against this machine's memory (all three parts, or only
            the dataset when the model trains on a GPU).
        param_count: trainable parameters of the model.
        batch_size: examples per training step.
        data: the dataset's size.
        dtype: the parameters' float type.
    """

    parameters: int
    activations: int
    dataset: int
    host: int
    param_count: int
    batch_size: int
    data: DatasetShape
    dtype: str

    @property
    def total(self) -> int:
        """All three parts."""
        return self.parameters + self.activations + self.dataset

    def parts(self) -> str:
        """``parameters 1.2 GiB (...), activations ..., dataset ...``."""
        h, w, c = self.data.image
        return (
            f"parameters {format_bytes(self.parameters)} ({self.param_count:,} weights in {self.dtype}, "
            f"with gradients and optimizer state), activations {format_bytes(self.activations)} "
            f"(batch {self.batch_size:,}), dataset {format_bytes(self.dataset)} "
            f"({self.data.train + self.data.test:,} images of {h}x{w}x{c} as uint8, and float copies)"
        )


def format_bytes(n: int | float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(n)
    if abs(value) < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


def _split_rows(config: RunConfig, data: DatasetShape) -> tuple[int, int, int]:
    """Rows of the train, validation and test splits after the hold-out and ``data.limit``."""
    d = config.data
    if d.val_size is not None:
        val = min(d.val_size, data.train)
    else:
        val = round(d.val_fraction * data.train)
    limits = d.limits()
    train, test = data.train - val, data.test
    train = min(train, limits.train or train)
    val = min(val, limits.val or val)
    test = min(test, limits.test or test)
    return train, val, test


def _weight_copies(config: RunConfig) -> int:
    """Tensors kept per parameter: the weight, its gradient, optimizer state, other copies."""
    opt = config.optimizer
    slots = OPTIMIZER_SLOTS[opt.type]
    if opt.type == "rmsprop" and opt.momentum:
        slots += 1
    if opt.type == "muon" and opt.other is not None:  # the rest of the model trains with `other`
        slots = max(slots, OPTIMIZER_SLOTS[opt.other.type])
    copies = 2 + slots
    if config.train.ema is not None or config.train.lookahead is not None:
        copies += 1
    stopping = config.train.early_stopping
    if stopping is not None and stopping.restore_best:
        copies += 1
    return copies


def estimate_memory(config: RunConfig, data_dir: str | Path | None = None) -> MemoryEstimate | None:
    """The memory ``config`` needs at its peak, or None when its dataset's size cannot be told
    without reading it (the dataset is missing: the run says so itself)."""
    d = config.data
    data = dataset_shape(d.dataset, data_dir or d.data_dir, d.resize)
    if data is None:
        return None
    h, w, c = data.image
    size: ModelSize = model_size(config.model, (c, h, w), data.classes, config.engine)
    itemsize = 8 if config.model.dtype == "float64" else 4
    train, val, test = _split_rows(config, data)
    batch = config.train.batch_size
    batch = train if batch == "full" else min(int(batch), train)

    # Frozen state (batch-norm statistics, whitening filters): once, and in a snapshot or average.
    parameters = (size.params * _weight_copies(config) + size.frozen * 2) * itemsize
    # Layer outputs are in the parameters' dtype, or 16-bit under torch's bf16/fp16 autocast.
    act_itemsize = 2 if config.engine == "torch" and config.train.precision != "fp32" else itemsize
    training = batch * size.values * act_itemsize * 2  # outputs kept for backward, and their gradients
    rows = min(EVAL_CHUNK[config.engine], max(train, val, test))
    # NumPy layers keep their caches in evaluation too; torch frees each output when done.
    evaluation = rows * act_itemsize * (size.values if config.engine == "numpy" else 2 * size.widest)
    activations = max(training, evaluation)

    used = (train + val + test) * data.pixels
    dataset = (data.train + data.test) * data.pixels + used * 4  # uint8 decoded, float32 splits
    if config.engine == "numpy" and itemsize == 8:
        dataset += used * 8
    on_gpu = config.engine == "torch" and config.train.device == "cuda"
    if config.engine == "torch" and not on_gpu:
        dataset += used  # the uint8 copy the torch engine trains from
    host = dataset if on_gpu else parameters + activations + dataset
    return MemoryEstimate(parameters, activations, dataset, host, size.params, batch, data, config.model.dtype)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get now, or None when the system does not say.

    ``MemAvailable`` of ``/proc/meminfo`` (free memory plus what the kernel can reclaim),
    lowered to the room left under a cgroup's limit (a container); else ``sysconf``'s
    available pages.
    """
    available: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for limit_file, usage_file in _CGROUP_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # v1 writes 2**63 for none
            available = min(available, max(limit - usage, 0))
            break
    return available


def _advice(estimate: MemoryEstimate) -> str:
    largest = max(("parameters", estimate.parameters), ("activations", estimate.activations),
                  ("dataset", estimate.dataset), key=lambda part: part[1])[0]
    return {
        "parameters": "use a smaller model (model.hidden, model.conv, model.fc, model.width; a custom "
                      "model's model.options)",
        "activations": "use a smaller model, train.batch_size or data.resize",
        "dataset": "use a smaller data.resize or data.limit",
    }[largest]


def check_memory(config: RunConfig, data_dir: str | Path | None = None) -> MemoryEstimate | None:
    """Refuse ``config`` when its estimate exceeds this machine's available memory.

    Returns the estimate (None when it cannot be made, or when ``TRAINLAB_MEMORY_CHECK=off``).

    Raises:
        ConfigError: the run cannot fit; gives the estimate, its parts and the memory available.
    """
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    estimate = estimate_memory(config, data_dir)
    if estimate is None:
        return None
    available = available_memory()
    if available is None or estimate.host <= available:
        return estimate
    where = "" if estimate.host == estimate.total else " on the host (the model trains on the GPU)"
    raise ConfigError(
        f"memory: this run needs about {format_bytes(estimate.host)}{where}, more than the "
        f"{format_bytes(available)} this machine has available: {estimate.parts()}; "
        f"{_advice(estimate)}, or set {ENV_SWITCH}=off if the estimate is wrong"
    )


__all__ = ["MemoryEstimate", "available_memory", "check_memory", "estimate_memory", "format_bytes"]
