"""Monitors: per-layer norms, dead ReLUs, and that looking changes nothing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.engines.torch.monitors import layer_monitors


def test_norms_dead_relus_and_no_side_effects() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3), nn.ReLU(),
                        nn.Linear(3, 2))
    with torch.no_grad():
        net[4].bias.fill_(-100.0)  # the second layer's ReLUs never fire
    x = torch.randn(32, 5)
    buffers = [b.clone() for b in net.buffers()]
    rng = torch.get_rng_state()
    values = layer_monitors(net, x, lambda logits: logits.square().mean())
    assert values["dead_relu_1"] == 1.0 and values["dead_relu_0"] < 1.0
    assert values["weight_norm_0"] == float(net[0].weight.detach().norm())
    # every example's logits are the output bias (the ReLUs before it are dead): its norm
    assert values["logit_norm"] == pytest.approx(float(net[6].bias.detach().norm()), rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers(), strict=True))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in net.parameters())
    # the gradient norms are those of the same pass done by hand (same dropout mask)
    net[4].bias.data.fill_(0.0)
    values = layer_monitors(net, x, lambda logits: logits.square().mean())
    logits = net(x)  # (32, 2), no longer the same row for every example
    logits.square().mean().backward()
    for k, index in enumerate((0, 4, 6)):
        assert values[f"grad_norm_{k}"] == float(net[index].weight.grad.norm())
    # logit_norm is per example: sqrt(sum of squared logits / B), not the norm of the whole batch
    expected = math.sqrt(float(logits.detach().double().square().sum()) / len(x))
    assert values["logit_norm"] == pytest.approx(expected, rel=1e-6)


def test_conv_channels_count_as_units() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([-100.0, -100.0, 100.0, 100.0]))
    values = layer_monitors(net, torch.randn(8, 1, 6, 6), lambda logits: logits.sum())
    assert values["dead_relu_0"] == 0.5
