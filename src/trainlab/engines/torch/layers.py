"""Small layers the model builders share: a data-initialised whitening conv, batch norm as
the config asks for it, a constant scale, and a dropout that is fast on the CPU.

The whitening conv (``model.whiten``) is the first layer of airbench-style nets: a conv
with no padding whose filters decorrelate the image's ``k x k`` patches. Its weights
come from the training images when the run starts (:func:`init_whitening`) and never
train; only its optional bias does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from trainlab.config import ModelConfig

WHITEN_CHUNK = 500  # images per block of patches while summing the covariance


class Scale(nn.Module):
    """Multiplies by a constant (ResNet-9 scales its logits by 0.125, airbench by 1/9)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape preserved."""
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


#: Resolution of :class:`Dropout`'s keep test on the CPU: 15 random bits per element.
DROPOUT_BITS = 15


class Dropout(nn.Dropout):
    """Inverted dropout (``nn.Dropout``'s meaning), with a fast mask on the CPU.

    PyTorch's CPU dropout draws one random number per element (``bernoulli_``), which made
    dropout a large part of seed C's bf16 training step here (``bench/profile_step.py``).
    On the CPU this layer draws one 32-bit random integer per two elements from the same
    global generator, keeps an element when its 15 random bits are at least
    ``round(p * 2**15)``, and scales kept elements by ``1 / (1 - p)``: the same expectation,
    a drop rate within 2**-16 of ``p`` (0.2 becomes 0.20001). ``bench/bench_dropout.py``
    times it against ``nn.Dropout``. Other devices, and eval mode, use ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        n = x.numel()
        halves = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16)[:n]
        threshold = round(self.p * (1 << DROPOUT_BITS))
        keep = (halves & ((1 << DROPOUT_BITS) - 1)) >= threshold  # (n,) bool
        # The mask in x's own memory layout (channels_last included): a matching-stride multiply.
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        mask = keep.as_strided(x.shape, x.stride()) if dense else keep.view(x.shape)
        return x * mask.to(x.dtype).mul_(1.0 / (1.0 - self.p))


class Whiten(nn.Conv2d):
    """A ``kernel x kernel`` conv, no padding, ``2 * C * kernel**2`` outputs, frozen weights.

    The weights are placeholders until :func:`init_whitening` sets them from data. Once
    :func:`drop_whiten_bias_grads` has frozen the bias (``bias_frozen``), the forward uses it
    detached: with frozen weights and an input that needs no gradient, the output then needs
    none, and the backward skips this conv, its activation and the next conv's input gradient.
    """

    def __init__(self, channels: int, kernel: int, bias: bool = True) -> None:
        super().__init__(channels, 2 * channels * kernel * kernel, kernel, padding=0, bias=bias)
        self.weight.requires_grad_(False)
        self.bias_frozen = False
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 2 C k^2, H - k + 1, W - k + 1)."""
        if self.bias_frozen and self.bias is not None:
            # Detached, not requires_grad_(False): the bias stays a trainable parameter for
            # count_params, the summary and the optimizer's groups; it just gets no gradient.
            return self._conv_forward(x, self.weight, self.bias.detach())
        return super().forward(x)


def make_batch_norm(channels: int, m: ModelConfig, dims: int = 2) -> nn.Module:
    """Batch norm over ``channels`` with the config's momentum, eps and (maybe frozen) scale.

    Args:
        channels: features (dense) or channels (conv).
        m: the ``model`` section (``bn_momentum``, ``bn_eps``, ``bn_weight``).
        dims: 1 for dense layers (B, D), 2 for convs (B, C, H, W). Default 2.
    """
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    norm = cls(channels, eps=m.bn_eps, momentum=m.bn_momentum)
    if not m.bn_weight:
        norm.weight.requires_grad_(False)  # stays 1: only the shift learns
    return norm


def patch_covariance(images: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of every ``kernel x kernel`` patch of ``images``
    (N, C, H, W), D = C * kernel**2, in float64, summed over chunks to bound memory.

    A patch is flattened in the conv weight's order (channel, row, column).
    """
    d = images.shape[1] * kernel * kernel
    total = torch.zeros(d, dtype=torch.float64)
    outer = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), WHITEN_CHUNK):
        chunk = images[start : start + WHITEN_CHUNK].detach().to("cpu", torch.float64)
        patches = F.unfold(chunk, kernel).transpose(1, 2).reshape(-1, d)  # (n * L, D)
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    return mean, outer / count - torch.outer(mean, mean)


def whitening_filters(images: torch.Tensor, kernel: int, eps: float) -> torch.Tensor:
    """Filters (2D, C, k, k) that whiten the patches of ``images`` (N, C, H, W).

    For each eigenvector ``v`` of the patch covariance, strongest first, the filter
    ``v / sqrt(lambda + eps)`` and its negative: the first D filters map a patch to
    coordinates with (nearly) unit variance and no correlation.
    """
    channels = images.shape[1]
    _, cov = patch_covariance(images, kernel)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending; columns are eigenvectors
    order = torch.arange(len(eigenvalues) - 1, -1, -1)
    scaled = eigenvectors[:, order].T / torch.sqrt(eigenvalues[order].clamp(min=0) + eps)[:, None]  # (D, D)
    filters = scaled.reshape(-1, channels, kernel, kernel)
    return torch.cat([filters, -filters]).to(torch.float32)  # (2D, C, k, k)


@torch.no_grad()
def init_whitening(model: nn.Module, images: torch.Tensor, eps: float) -> bool:
    """Set every :class:`Whiten` layer of ``model`` from ``images`` (N, C, H, W, normalised);
    returns whether there was one."""
    found = False
    for module in model.modules():
        if isinstance(module, Whiten):
            filters = whitening_filters(images, module.kernel_size[0], eps)
            module.weight.copy_(filters.to(module.weight.dtype))
            found = True
    return found


def whiten_layers(model: nn.Module) -> list[Whiten]:
    """The model's whitening convs."""
    return [m for m in model.modules() if isinstance(m, Whiten)]


def drop_whiten_bias_grads(model: nn.Module) -> None:
    """Clear the whitening biases' gradients, so that no optimizer updates them this step, and
    freeze the biases (``Whiten.bias_frozen``), so that later steps do not compute them.

    Called before the forward of every step from ``model.whiten.bias_epochs`` on. Freezing spares
    each later step the backward of the whitening conv, its activation and the next conv's
    input gradient (about 5 % of cifar10-94-muon's step at batch 2000 on the CPU), as
    airbench's ``requires_grad = False`` on the bias does.
    """
    for layer in whiten_layers(model):
        if layer.bias is not None:
            layer.bias.grad = None
            layer.bias_frozen = True


__all__ = [
    "Dropout",
    "Scale",
    "Whiten",
    "drop_whiten_bias_grads",
    "init_whitening",
    "make_batch_norm",
    "patch_covariance",
    "whiten_layers",
    "whitening_filters",
]
