"""Model factories for ``model.type: custom`` (see custom-model.yaml beside this file).

A factory is a function of the image shape and the class count, plus any keyword
arguments of ``model.options``; it returns a ``torch.nn.Module`` whose forward maps a batch
of images (N, C, H, W) to logits (N, K). trainlab calls it under the run's seed, so its
random initialisation is the same on every run of one config.
"""

from __future__ import annotations

from torch import nn


def small_cnn(input_shape: tuple[int, int, int], num_classes: int, width: int = 16,
              dropout: float = 0.0) -> nn.Module:
    """Two 3x3 conv blocks (width, then 2 * width channels; ReLU, 2x2 max-pool), global
    average pooling, optional dropout, and a linear classifier."""
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, width, H/2, W/2)
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 2 width, H/4, W/4)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),  # (N, 2 width)
        nn.Dropout(dropout),
        nn.Linear(2 * width, num_classes),  # (N, K)
    )
