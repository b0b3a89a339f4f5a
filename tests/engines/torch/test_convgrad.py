"""The 3x3 conv whose small-map weight gradient is nine matrix products (convgrad)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.engines.torch.convgrad import (
    WEIGHT_GRAD_ENV,
    Conv2d,
    _SmallMapConv3x3,
    conv3x3_weight_grad,
    gemm_weight_grad_enabled,
)


def _reference_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, c_out: int) -> torch.Tensor:
    weight = torch.zeros(c_out, x.shape[1], 3, 3, dtype=x.dtype)
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (5, 4), (7, 7)])
def test_weight_grad_matches_the_convolution_backward_in_float64(size: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, *size, dtype=torch.float64, generator=gen)
    grad_out = torch.randn(3, 5, *size, dtype=torch.float64, generator=gen)
    ours = conv3x3_weight_grad(x, grad_out)
    assert ours.shape == (5, 4, 3, 3)
    torch.testing.assert_close(ours, _reference_weight_grad(x, grad_out, 5), rtol=1e-12, atol=1e-12)


def test_weight_grad_takes_channels_last_and_returns_channels_last() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64, generator=gen).to(memory_format=torch.channels_last)
    grad_out = torch.randn(4, 8, 3, 3, dtype=torch.float64, generator=gen).to(memory_format=torch.channels_last)
    ours = conv3x3_weight_grad(x, grad_out)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, _reference_weight_grad(x, grad_out, 8), rtol=1e-12, atol=1e-12)


def test_the_function_passes_gradcheck() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(_SmallMapConv3x3.apply, (x, weight))


def _pair(seed: int = 3) -> tuple[nn.Conv2d, Conv2d]:
    torch.manual_seed(seed)
    plain = nn.Conv2d(16, 32, 3, 1, 1, bias=False).to(memory_format=torch.channels_last)
    ours = Conv2d(16, 32, 3, 1, 1, bias=False).to(memory_format=torch.channels_last)
    ours.load_state_dict(plain.state_dict())
    return plain, ours


def _grads(conv: nn.Conv2d, x: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        out = conv(x)
    out.backward(grad_out)
    return out, x.grad, conv.weight.grad


def test_conv2d_under_bf16_autocast_matches_nn_conv2d(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "gemm")
    plain, ours = _pair()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 16, 3, 3, generator=gen).to(memory_format=torch.channels_last)
    grad_out = torch.randn(64, 32, 3, 3, generator=gen).bfloat16().to(memory_format=torch.channels_last)
    out_p, gx_p, gw_p = _grads(plain, x, grad_out)
    out_o, gx_o, gw_o = _grads(ours, x, grad_out)
    assert out_o.dtype == torch.bfloat16 and gw_o.dtype == torch.float32
    torch.testing.assert_close(out_o, out_p, rtol=0, atol=0)  # the same forward kernel
    torch.testing.assert_close(gx_o, gx_p, rtol=0, atol=0)  # the same input-gradient kernel
    # Both sum in float32 and round to bf16 once: within a bf16 rounding of each other.
    torch.testing.assert_close(gw_o, gw_p, rtol=2e-2, atol=2e-2 * gw_p.abs().max().item())


def test_conv2d_takes_the_products_only_where_they_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = _SmallMapConv3x3.apply

    def counting(*args: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(_SmallMapConv3x3, "apply", counting)
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "gemm")
    _, conv = _pair()
    small = torch.randn(2, 16, 5, 5)
    with torch.autocast("cpu", torch.bfloat16):
        conv(small)
        assert len(calls) == 1
        conv(torch.randn(2, 16, 6, 6))  # 36 pixels: over SMALL_MAP_PIXELS
        with torch.no_grad():
            conv(small)  # no gradient wanted
    conv(small)  # float32
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "onednn")
    with torch.autocast("cpu", torch.bfloat16):
        conv(small)
    assert len(calls) == 1
    strided = Conv2d(16, 32, 3, 2, 1, bias=False)
    biased = Conv2d(16, 32, 3, 1, 1, bias=True)
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "gemm")
    with torch.autocast("cpu", torch.bfloat16):
        strided(small)
        biased(small)
    assert len(calls) == 1


def test_the_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "gemm")
    assert gemm_weight_grad_enabled()
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "onednn")
    assert not gemm_weight_grad_enabled()
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "fast")
    with pytest.raises(ValueError, match="auto, gemm, onednn"):
        gemm_weight_grad_enabled()


def test_a_traced_conv2d_exports_as_a_plain_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHT_GRAD_ENV, "gemm")
    plain, ours = _pair()
    x = torch.randn(2, 16, 3, 3)
    traced = torch.jit.trace(ours, x, check_trace=False)
    torch.testing.assert_close(traced(x), plain(x))
