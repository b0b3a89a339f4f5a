"""The from-scratch NumPy engine: layers with hand-written forward/backward, losses,
initialisers, update rules, the MLP builder and numerical gradient checks."""

from __future__ import annotations

from trainlab.engines.numpy.gradcheck import (
    GradcheckRow,
    eps_sweep,
    gradcheck,
    gradcheck_layer,
    relative_error,
)
from trainlab.engines.numpy.init import SCHEMES, init_weight
from trainlab.engines.numpy.layers import (
    ELU,
    BatchNorm,
    Dropout,
    Layer,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
)
from trainlab.engines.numpy.losses import (
    LOSSES,
    accuracy,
    l1_penalty,
    l2_penalty,
    log_softmax,
    shrink_weights,
    softmax,
    softmax_cross_entropy,
    squared_loss,
)
from trainlab.engines.numpy.model import ACTIVATIONS, Sequential, build_mlp
from trainlab.engines.numpy.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Momentum,
    Nesterov,
    Optimizer,
    RMSprop,
    make_optimizer,
)

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEMES",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "BatchNorm",
    "Dropout",
    "GradcheckRow",
    "Layer",
    "LeakyReLU",
    "Linear",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "accuracy",
    "build_mlp",
    "eps_sweep",
    "gradcheck",
    "gradcheck_layer",
    "init_weight",
    "l1_penalty",
    "l2_penalty",
    "log_softmax",
    "make_optimizer",
    "relative_error",
    "shrink_weights",
    "softmax",
    "softmax_cross_entropy",
    "squared_loss",
]
