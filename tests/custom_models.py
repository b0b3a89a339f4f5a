"""Model factories for the ``model.type: custom`` tests (``tests.custom_models:<name>``).

Good ones, and one of each way a factory can be wrong, so the tests can check that each
mistake gets a clean error naming it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def small_cnn(input_shape: tuple[int, int, int], num_classes: int, width: int = 8) -> nn.Module:
    """Conv (width), ReLU, 2x2 max-pool, conv (2 width), ReLU, 2x2 max-pool, flatten, linear."""
    _channels, height, width_px = input_shape
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, width, H/2, W/2)
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 2 width, H/4, W/4)
        nn.Flatten(),  # (N, 2 width H/4 W/4)
        nn.Linear(2 * width * (height // 4) * (width_px // 4), num_classes),  # (N, K)
    )


class Nested(nn.Module):
    """A module tree with its own forward: a ReLU module, a functional ReLU, batch norm, a
    reused activation, and layers registered out of forward order."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(16, num_classes)  # registered first, runs last
        self.body = nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.proj = nn.Linear(4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K)."""
        h = self.body(x).mean(dim=(2, 3))  # (N, 4)
        return self.head(F.relu(self.proj(h)))


def nested(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """:class:`Nested`."""
    return Nested(input_shape, num_classes)


class NeedsRealTensors(nn.Module):
    """A forward that reads a value (``.item()``), which the meta device cannot give."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K), scaled by a number read off the weights."""
        scale = 1.0 + 0.0 * float(self.fc.weight.abs().max().item())
        return self.fc(x.flatten(1)) * scale


def needs_real_tensors(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """:class:`NeedsRealTensors`."""
    return NeedsRealTensors(input_shape, num_classes)


def returns_int(input_shape: tuple[int, int, int], num_classes: int) -> int:
    """Wrong: not a module."""
    return num_classes


def wrong_classes(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Wrong: one logit too many."""
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes + 1))


def wrong_input(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Wrong: its first layer expects another image size."""
    return nn.Sequential(nn.Flatten(), nn.Linear(7, num_classes))


def no_parameters(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Wrong: gives (N, K) but has nothing to train."""
    return nn.Sequential(nn.Flatten(), nn.AdaptiveAvgPool1d(num_classes))


def fails(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Wrong: the factory itself raises."""
    raise RuntimeError("out of ideas")


NOT_CALLABLE = 3
