"""trainlab's CPU dropout: nn.Dropout's meaning (inverted dropout) from a cheaper mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.engines.torch.layers import Dropout


@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_drop_rate_and_expectation(p: float) -> None:
    torch.manual_seed(0)
    y = Dropout(p)(torch.ones(400_000))
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(p, abs=0.004)  # 400k draws: sd of the rate about 0.0008
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p))
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)  # the expectation is kept


def test_seeded_masks_repeat_and_differ_between_calls() -> None:
    layer = Dropout(0.3)
    torch.manual_seed(1)
    a, b = layer(torch.ones(1000)), layer(torch.ones(1000))
    torch.manual_seed(1)
    assert torch.equal(layer(torch.ones(1000)), a)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    y = Dropout(0.25)(x)
    y.sum().backward()
    assert x.grad is not None
    expected = (y != 0).float() / 0.75
    assert torch.allclose(x.grad, expected)
    assert torch.allclose(y, x.detach() * expected)


def test_channels_last_layout_is_kept_and_masked_elementwise() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    y = Dropout(0.5)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    kept = y != 0
    assert torch.allclose(y[kept], 2 * x[kept])


def test_eval_mode_p0_and_p1() -> None:
    x = torch.randn(10, 3)
    layer = Dropout(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert isinstance(layer, nn.Dropout)  # summaries and monitors see a dropout layer
