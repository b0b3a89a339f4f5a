"""A 3x3 conv whose weight gradient on small feature maps is nine matrix products.

On a CPU with AMX, oneDNN's bf16 weight gradient of a 3x3, stride-1, padding-1 conv is
slow on small maps: for 256 -> 256 channels at batch 1000 it takes 49 ms at 3x3 (the last
conv of the airbench nets), about eight times its forward, and 41 ms at 2x2 (measured on a
2-core Xeon with AMX, 2 threads; ``bench/bench_conv_grad.py`` times it on the machine at
hand). The same gradient written as nine products, one per kernel tap, of the output
gradient (as a ``(B H W, C_out)`` matrix) with the input shifted by that tap (a
``(B H W, C_in)`` matrix), takes 15 ms at 3x3 and 8 ms at 2x2. From 7x7 maps on, and in
float32, oneDNN's kernel is as fast or faster, so :class:`Conv2d` takes the products only
for bf16 on maps of at most :data:`SMALL_MAP_PIXELS` pixels, and only where
:func:`gemm_weight_grad_enabled` says so.

The result is the same gradient up to the order of the float sums (both accumulate in float32
and round to bf16 once).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Largest map (height x width) on which :class:`Conv2d` computes its weight gradient as
#: matrix products: 5x5 gained 1.7x over oneDNN on the AMX machine, 7x7 nothing.
SMALL_MAP_PIXELS = 25

#: ``TRAINLAB_CONV_WEIGHT_GRAD``: ``auto`` (default: the products where the CPU has AMX,
#: the only kind measured to gain), ``gemm`` (always, on eligible convs), ``onednn`` (never).
WEIGHT_GRAD_ENV = "TRAINLAB_CONV_WEIGHT_GRAD"
WEIGHT_GRAD_CHOICES = ("auto", "gemm", "onednn")


@functools.cache
def cpu_has_amx() -> bool:
    """Whether /proc/cpuinfo lists ``amx_bf16`` (False where the file is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_bf16" in line for line in text.splitlines())


def gemm_weight_grad_enabled() -> bool:
    """Whether :class:`Conv2d` may take the matrix-product weight gradient (see
    :data:`WEIGHT_GRAD_ENV`); raises ValueError on an unknown setting."""
    choice = os.environ.get(WEIGHT_GRAD_ENV, "auto").strip().lower() or "auto"
    if choice not in WEIGHT_GRAD_CHOICES:
        raise ValueError(f"{WEIGHT_GRAD_ENV}={choice!r}: choose one of {', '.join(WEIGHT_GRAD_CHOICES)}")
    return choice == "gemm" or (choice == "auto" and cpu_has_amx())


def conv3x3_weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Weight gradient (C_out, C_in, 3, 3) of a 3x3, stride-1, padding-1, bias-free conv.

    Args:
        x: the conv's input (B, C_in, H, W).
        grad_out: the gradient of its output (B, C_out, H, W), same dtype.

    Tap (i, j) of the kernel sees input pixel (h + i - 1, w + j - 1) at output pixel (h, w),
    so its gradient is ``grad_out`` as a (C_out, B H W) matrix times the input shifted by
    (i - 1, j - 1), zero-padded, as a (B H W, C_in) matrix. Returned in channels_last.
    """
    batch, c_in, height, width = x.shape
    c_out = grad_out.shape[1]
    padded = x.new_zeros(batch, height + 2, width + 2, c_in)
    padded[:, 1 : height + 1, 1 : width + 1] = x.permute(0, 2, 3, 1)
    # (C_out, B H W): a transposed view when grad_out is channels_last, else one copy.
    grad_rows = grad_out.permute(0, 2, 3, 1).reshape(-1, c_out).t()
    taps = x.new_empty(3, 3, c_out, c_in)
    for i in range(3):
        for j in range(3):
            shifted = padded[:, i : i + height, j : j + width].reshape(-1, c_in)  # (B H W, C_in)
            torch.matmul(grad_rows, shifted, out=taps[i, j])
    # (3, 3, C_out, C_in) -> (C_out, C_in, 3, 3) with channels_last strides (C_in innermost).
    return taps.permute(2, 0, 1, 3).contiguous().permute(0, 3, 1, 2)


class _SmallMapConv3x3(torch.autograd.Function):
    """A 3x3 conv (stride 1, padding 1, no bias) with the matrix-product weight gradient."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, None, 1, 1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_w = conv3x3_weight_grad(x, grad_out)
        return grad_x, grad_w


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, state dict and forward), with the matrix-product weight
    gradient of the module docstring where it applies: a 3x3 kernel, stride 1, padding 1, no
    dilation, groups or bias, a CPU input of at most :data:`SMALL_MAP_PIXELS` pixels computed
    in bf16 (bf16 tensors, or CPU autocast to bf16), a weight that needs a gradient, and not
    while tracing for export. Everywhere else it is ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W'), as ``nn.Conv2d``."""
        dtype = self._small_map_dtype(x)
        if dtype is None:
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            return _SmallMapConv3x3.apply(x.to(dtype), self.weight.to(dtype))

    def _small_map_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """bf16 where the matrix-product path applies to this call, else None."""
        # Tracing first: a traced export records the plain conv, and reads no shape.
        if (torch.jit.is_tracing() or torch.jit.is_scripting()
                or not (torch.is_grad_enabled() and self.weight.requires_grad)
                or self.kernel_size != (3, 3) or self.stride != (1, 1) or self.padding != (1, 1)
                or self.dilation != (1, 1) or self.groups != 1 or self.bias is not None
                or self.padding_mode != "zeros" or x.device.type != "cpu" or x.dim() != 4
                or x.shape[-2] * x.shape[-1] > SMALL_MAP_PIXELS):
            return None
        autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if not (autocast_bf16 or (x.dtype == torch.bfloat16 and self.weight.dtype == torch.bfloat16)):
            return None
        return torch.bfloat16 if gemm_weight_grad_enabled() else None


__all__ = [
    "SMALL_MAP_PIXELS",
    "WEIGHT_GRAD_ENV",
    "Conv2d",
    "conv3x3_weight_grad",
    "cpu_has_amx",
    "gemm_weight_grad_enabled",
]
