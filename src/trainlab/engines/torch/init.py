"""Initialisation of the torch engine's conv and dense layers from the config's ``model.init``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainlab.engines.torch.layers import Whiten

if TYPE_CHECKING:
    from trainlab.config import InitConfig


def init_weights(model: nn.Module, init: InitConfig, dense_init: InitConfig | None = None) -> None:
    """Apply ``init`` to every conv and dense weight (biases get ``init.bias``: a constant, or
    ``uniform_fan_in``, PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))), then, with
    ``init.dirac``, the identity kernel to the first in_channels filters of every conv.

    ``dense_init``, when given, replaces ``init`` for the dense (``nn.Linear``) layers.
    ``default`` keeps PyTorch's own initialisation (biases included). Whitening convs are
    left alone: their weights come from the data.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d) and not isinstance(m, Whiten)]
    with torch.no_grad():
        for module in layers:
            chosen = dense_init if dense_init is not None and isinstance(module, nn.Linear) else init
            if chosen.scheme != "default":
                _init_layer(module, chosen)
        if init.dirac:
            for module in layers:
                if isinstance(module, nn.Conv2d):
                    nn.init.dirac_(module.weight[: module.in_channels])


def _init_layer(module: nn.Linear | nn.Conv2d, init: InitConfig) -> None:
    """One layer's weight by ``init.scheme``, and its bias to ``init.bias``."""
    weight = module.weight
    if init.scheme == "zero":
        nn.init.zeros_(weight)
    elif init.scheme == "constant":
        nn.init.constant_(weight, float(init.value or 0.0))
    elif init.scheme == "normal":
        nn.init.normal_(weight, 0.0, float(init.sigma or 0.01))
    elif init.scheme == "uniform":
        scale = float(init.scale or 0.05)
        nn.init.uniform_(weight, -scale, scale)
    elif init.scheme == "glorot_normal":
        nn.init.xavier_normal_(weight)
    elif init.scheme == "glorot_uniform":
        nn.init.xavier_uniform_(weight)
    elif init.scheme == "he_normal":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    elif init.scheme == "he_uniform":
        nn.init.kaiming_uniform_(weight, nonlinearity="relu")
    if module.bias is not None:
        if init.bias == "uniform_fan_in":  # PyTorch's own default bias, kept beside another weight scheme
            bound = 1.0 / math.sqrt(max(module.weight[0].numel(), 1))
            nn.init.uniform_(module.bias, -bound, bound)
        else:
            nn.init.constant_(module.bias, float(init.bias))


__all__ = ["init_weights"]
