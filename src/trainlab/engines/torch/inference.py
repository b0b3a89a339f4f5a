"""A trained torch model from a run directory's checkpoint, and its logits on new images.

Evaluation here repeats what the training run did at its end (same chunking, autocast
precision, channels_last layout, TTA views and, with ``train.ema``, the averaged weights
as :meth:`TorchTraining.logits_of`), so ``trainlab evaluate`` reproduces the run's test
accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from trainlab.engines.torch.checkpoint import load_checkpoint
from trainlab.engines.torch.engine import CONV_MODELS, EVAL_CHUNK
from trainlab.engines.torch.models import build_model
from trainlab.engines.torch.runtime import autocast, pick_device
from trainlab.engines.torch.tta import tta_logits, tta_mode
from trainlab.errors import ConfigError, RunDirError
from trainlab.io import require_checkpoint

if TYPE_CHECKING:
    from trainlab.config import RunConfig


class TrainedModel:
    """A torch model rebuilt from its config and loaded from a checkpoint, in eval mode.

    Args:
        config: the run's resolved config.
        checkpoint: the run's ``checkpoint.pt``.
        input_shape: (C, H, W) of the images it was trained on.
        num_classes: units of its output layer.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``; default the run's ``train.device``,
            or ``auto`` when that one is not available here.

    Raises:
        RunDirError: the checkpoint is missing, unsafe, or does not fit the config's model
            (a checkpoint from an incompatible config).
    """

    def __init__(self, config: RunConfig, checkpoint: Path, input_shape: tuple[int, int, int], num_classes: int,
                 device: str | None = None) -> None:
        require_checkpoint(checkpoint)
        self.config = config
        self.device = _device(device or config.train.device)
        self.precision = config.train.precision
        if self.precision == "fp16" and self.device.type != "cuda":
            self.precision = "fp32"  # fp16 autocast needs a GPU; fp32 computes the same model
        payload = load_checkpoint(checkpoint)
        state = dict(payload["model"])
        average = payload.get("average") or {}
        if average.get("mode") == "ema" and "average" in average:
            state.update(average["average"])  # evaluations used the EMA weights
        model = build_model(config.model, input_shape, num_classes, seed=0)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            details = "; ".join(line.strip() for line in str(exc).splitlines()[1:4])
            raise RunDirError(
                f"{checkpoint} does not fit the model that {checkpoint.parent / 'config.yaml'} describes "
                f"({config.model.type}, {num_classes} classes, input {'x'.join(map(str, input_shape))}): {details}. "
                "The checkpoint comes from a run with another model or dataset config; "
                "use the run directory it was written in"
            ) from None
        self.channels_last = config.model.type in CONV_MODELS
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.dtype = torch.float64 if config.model.dtype == "float64" else torch.float32

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def logits(self, x: np.ndarray, tta: bool | str = False) -> torch.Tensor:
        """Logits (N, K) in float32 on the CPU of normalised images x (N, C, H, W);
        ``tta`` (a ``train.tta`` value: true/flip, translate, flip_translate) averages them
        over the views of :mod:`.tta`, for the images the run's ``train.tta_below`` selects."""
        mode = tta_mode(tta)
        chunks = []
        with autocast(self.device, self.precision):
            for start in range(0, len(x), EVAL_CHUNK):
                xb = torch.from_numpy(np.ascontiguousarray(x[start : start + EVAL_CHUNK])).to(self.device, self.dtype)
                if mode == "none":
                    out = self.model(self._input(xb)).float()  # (n, K)
                else:
                    out = tta_logits(lambda v: self.model(self._input(v)), xb, mode,
                                     self.config.train.tta_below)
                chunks.append(out.cpu())
        if not chunks:
            return torch.zeros((0, self.model_classes()), dtype=torch.float32)
        return torch.cat(chunks)

    def model_classes(self) -> int:
        """Units of the output layer."""
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)][-1]
        return int(last.out_features)


def _device(name: str) -> torch.device:
    """The named device, or ``auto``'s choice when it is not available on this machine."""
    try:
        return pick_device(name)
    except ConfigError:  # a run trained on a GPU, evaluated where there is none
        return pick_device("auto")


__all__ = ["TrainedModel"]
