"""What each engine can train, declared once, at the bottom of the import order.

Config validation (the engine checks of :mod:`trainlab.config.run`) reads these lists,
and the engines check their own registries against them when imported, so the config
cannot accept what an engine lacks nor refuse what it has. Config never imports an
engine: the declaration lives here and the engines import it.
"""

from __future__ import annotations

#: The models the NumPy engine builds (``model.type``); the others (cnn, resnet, fast_cifar and
#: custom, a torch module from a factory) are the torch engine's alone.
NUMPY_MODELS = ("linear", "mlp")
#: The NumPy engine's update rules (``optimizer.type``), in the order of its registry.
NUMPY_OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adagrad")

__all__ = ["NUMPY_MODELS", "NUMPY_OPTIMIZERS"]
