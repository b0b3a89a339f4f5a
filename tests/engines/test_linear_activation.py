"""activation: linear (no activation, seed E's Keras convs) on both engines."""

from __future__ import annotations

import numpy as np
import torch

from trainlab.engines.numpy.model import build_mlp
from trainlab.engines.torch.models import make_activation


def test_numpy_linear_mlp_is_one_affine_map() -> None:
    rng = np.random.default_rng(0)
    net = build_mlp(6, 3, [5, 4], activation="linear", rng=rng, dtype=np.float64)
    assert len(net.layers) == 3  # three Linear layers, nothing between them
    x = rng.normal(size=(7, 6))
    # an affine map: f(a x + (1 - a) y) = a f(x) + (1 - a) f(y)
    y = rng.normal(size=(7, 6))
    mixed = net.forward(0.3 * x + 0.7 * y, False)
    assert np.allclose(mixed, 0.3 * net.forward(x, False) + 0.7 * net.forward(y, False))


def test_torch_linear_activation_is_the_identity() -> None:
    act = make_activation("linear")
    x = torch.randn(4, 3)
    assert isinstance(act, torch.nn.Identity) and torch.equal(act(x), x)
