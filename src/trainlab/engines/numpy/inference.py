"""A trained NumPy model from a run directory's checkpoint, and its logits on new images.

Evaluation here repeats what the training run did at its end (eval mode, chunks of
``EVAL_CHUNK`` images, the run's ``model.dtype``), so ``trainlab evaluate`` reproduces the
run's test accuracy. The counterpart of :class:`trainlab.engines.torch.inference.TrainedModel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainlab.engines.numpy.checkpoint import load_model_arrays
from trainlab.engines.numpy.engine import EVAL_CHUNK, build_model
from trainlab.errors import RunDirError
from trainlab.io import require_checkpoint

if TYPE_CHECKING:
    from trainlab.config import RunConfig


class TrainedModel:
    """A NumPy model rebuilt from its config and loaded from a checkpoint.

    Args:
        config: the run's resolved config.
        checkpoint: the run's ``checkpoint.npz``.
        input_shape: (C, H, W) of the images it was trained on.
        num_classes: units of its output layer.

    Raises:
        RunDirError: the checkpoint is missing, unreadable, or does not fit the config's model
            (a checkpoint from an incompatible config).
    """

    def __init__(self, config: RunConfig, checkpoint: Path, input_shape: tuple[int, int, int],
                 num_classes: int) -> None:
        require_checkpoint(checkpoint)
        self.dtype = np.dtype(config.model.dtype)
        self.num_classes = num_classes
        input_dim = int(np.prod(input_shape))
        # The generator only fills weights that the checkpoint's replace at once.
        self.model = build_model(config, input_dim, num_classes, np.random.default_rng(0))
        arrays = load_model_arrays(checkpoint)  # a damaged or pickle-holding file: a RunDirError naming it
        try:
            self.model.load_state_arrays(arrays)
        except ValueError as exc:
            raise RunDirError(
                f"{checkpoint} does not fit the model that {checkpoint.parent / 'config.yaml'} describes "
                f"({config.model.type}, {num_classes} classes, {input_dim} inputs): {exc}. The checkpoint comes "
                "from a run with another model or dataset config; use the run directory it was written in"
            ) from None

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(np.ascontiguousarray(x.reshape(len(x), -1), dtype=self.dtype), False)

    def logits(self, x: np.ndarray, tta: bool | str = False) -> np.ndarray:
        """Logits (N, K) in float32 of normalised images x (N, C, H, W); any true ``tta``
        averages them with those of the mirror images (the NumPy engine has no other views)."""
        chunks = []
        for start in range(0, len(x), EVAL_CHUNK):
            xb = x[start : start + EVAL_CHUNK]  # (n, C, H, W)
            out = self._forward(xb)  # (n, K)
            if tta:
                out = (out + self._forward(xb[..., ::-1])) / 2
            chunks.append(out.astype(np.float32))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes), np.float32)


__all__ = ["TrainedModel"]
