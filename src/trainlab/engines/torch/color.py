"""Colour transforms of batched augmentation, on pixels in [0, 1] (B, C, H, W).

Each draws one random parameter per image from a ``torch.Generator`` and transforms the
batch with a few tensor operations (see :mod:`.augment`, which chains them).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from trainlab.config import ColorJitterConfig

# ITU-R 601 luma weights (as PIL's convert("L") and torchvision).
LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low  # (n,)


def _gray(u: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of pixels u (B, C, H, W); one batched matmul for RGB."""
    b, c, h, w = u.shape
    if c != 3:
        return u.mean(1, keepdim=True)
    weights = torch.tensor([LUMA], dtype=u.dtype, device=u.device)  # (1, 3)
    return (weights @ u.reshape(b, 3, h * w)).reshape(b, 1, h, w)


# RGB <-> YIQ: hue is a rotation of the (I, Q) plane.
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def color_jitter(u: torch.Tensor, g: torch.Generator, cj: ColorJitterConfig) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter of pixels ``u`` in [0, 1], clamped after.

    Works in place on ``u`` where it can (callers pass a fresh tensor).
    """
    n, dev = u.shape[0], u.device

    def factor(strength: float) -> torch.Tensor:
        return _uniform(n, max(0.0, 1 - strength), 1 + strength, g, dev)[:, None, None, None]

    if cj.brightness:
        u = u.mul_(factor(cj.brightness)).clamp_(0, 1)
    if cj.contrast:
        mean = _gray(u).mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        u = u.sub_(mean).mul_(factor(cj.contrast)).add_(mean).clamp_(0, 1)
    if u.shape[1] == 3 and cj.saturation:
        gray = _gray(u)  # (B, 1, H, W)
        u = u.sub_(gray).mul_(factor(cj.saturation)).add_(gray).clamp_(0, 1)
    if u.shape[1] == 3 and cj.hue:
        turn = _uniform(n, -cj.hue, cj.hue, g, dev) * (2 * math.pi)  # (B,)
        yiq = torch.tensor(_YIQ, dtype=u.dtype, device=dev)
        rot = torch.zeros(n, 3, 3, dtype=u.dtype, device=dev)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2] = torch.cos(turn), -torch.sin(turn)
        rot[:, 2, 1], rot[:, 2, 2] = torch.sin(turn), torch.cos(turn)
        m = torch.linalg.inv(yiq) @ rot @ yiq  # (B, 3, 3)
        b, _, h, w = u.shape
        u = torch.bmm(m, u.reshape(b, 3, h * w)).reshape(b, 3, h, w).clamp_(0, 1)
    return u


def grayscale(u: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """Turn each image gray with probability ``p`` (channels kept).

    On CPU only the picked images are converted (1.69 -> 1.34 ms for 512 CIFAR-10 images at
    p = 0.2 here; converting all, then picking, had trailed kornia in ``bench_augment``); on
    an accelerator the whole-batch form avoids the host sync that finding the picked indices
    would cost. Both give the same result.
    """
    pick = torch.rand(u.shape[0], generator=g, device=u.device) < p  # (B,)
    if u.device.type != "cpu":
        return torch.where(pick[:, None, None, None], _gray(u).expand_as(u), u)
    index = pick.nonzero().squeeze(1)  # (k,)
    return u.index_copy(0, index, _gray(u[index]).expand(-1, u.shape[1], -1, -1))


__all__ = ["LUMA", "color_jitter", "grayscale"]
