"""The PyTorch engine: models from config, every optimizer and schedule, batched augmentation.

``TorchEngine`` (in :mod:`.engine`) is what ``engine: torch`` runs; the builders and
helpers are re-exported for tests, notebooks and benchmarks.
"""

from __future__ import annotations

from trainlab.engines.torch.augment import BatchAugment
from trainlab.engines.torch.engine import TorchEngine
from trainlab.engines.torch.models import build_model, count_params
from trainlab.engines.torch.optim import build_optimizer, penalty
from trainlab.engines.torch.pixels import PixelSpace
from trainlab.engines.torch.summary import model_summary

__all__ = [
    "BatchAugment",
    "PixelSpace",
    "TorchEngine",
    "build_model",
    "build_optimizer",
    "count_params",
    "model_summary",
    "penalty",
]
