"""Pixel values and normalised batches: :class:`PixelSpace` maps a normalised batch to
[0, 1] pixels and back (for the colour augmentations), and :func:`pack_images` /
:func:`unpack_images` keep a dataset on the device as uint8 pixels when that is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainlab.data.normalize import normalizer_affine


def _constant(value: np.ndarray | float | None, default: float, device: torch.device | str) -> Any:
    """``value`` as a float32 tensor on ``device`` (an array) or a Python float (a scalar);
    ``default`` for None."""
    if value is None:
        return default
    if isinstance(value, np.ndarray) and value.ndim:
        return torch.from_numpy(value.astype(np.float32)).to(device)
    return float(value)


class PixelSpace:
    """Maps normalised images to pixel values in [0, 1] and back, from a data normaliser.

    ``normalised = (pixels - b) / a`` with pixels in 0..255 (:func:`normalizer_affine`:
    ``b`` the shift, ``a`` the spread), constants per channel, per position or scalar.

    Args:
        normalizer: ``PreparedData.normalizer`` (any kind of :mod:`trainlab.data.normalize`).
        channels: number of image channels.
        device: where the constants live.
    """

    def __init__(self, normalizer: dict[str, Any] | None, channels: int, device: torch.device | str = "cpu") -> None:
        affine = normalizer_affine(normalizer or {"kind": "none"}, channels)
        self.a: Any = _constant(affine.spread, 1.0, device)
        self.b: Any = _constant(affine.shift, 0.0, device)
        # The data layer's float32 factor (1 / std computed in float64, or scale / 255): the
        # normalised values of unpacked batches then equal the prepared ones bit for bit.
        factor = affine.factor
        if factor is not None and not (isinstance(factor, np.ndarray) and factor.ndim):
            factor = float(np.float32(factor))
        self.inv_a: Any = _constant(factor, 1.0, device)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, C, H, W) -> pixels in [0, 1]."""
        return (x * self.a + self.b) / 255.0

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> normalised."""
        return (u * 255.0 - self.b) / self.a

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised -> pixel values in 0..255 (floats)."""
        return x * self.a + self.b

    def from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Pixel values in 0..255 -> normalised."""
        return (raw - self.b) / self.a


# Largest distance from a whole number that still counts as a pixel value after the
# float32 round trip (normalise, then undo): the real error is about 1e-5.
PACK_TOLERANCE = 1e-3
PACK_CHUNK = 4096


def pack_images(x: np.ndarray, pixels: PixelSpace, device: torch.device | str = "cpu") -> torch.Tensor:
    """A split as uint8 pixels (N, C, H, W) on ``device`` when its normalised floats are
    whole pixel values (a quarter of the memory, and cheaper batch gathers), else as floats.

    Use :func:`unpack_images` on each gathered batch.
    """
    floats = torch.from_numpy(np.ascontiguousarray(x))
    if floats.dtype != torch.float32 or len(floats) == 0:
        return floats.to(device)
    packed = torch.empty(floats.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(floats), PACK_CHUNK):
        raw = pixels.to_raw(floats[start : start + PACK_CHUNK].to(device))  # (n, C, H, W)
        whole = raw.round()
        if float((raw - whole).abs().max()) > PACK_TOLERANCE or float(whole.min()) < 0 or float(whole.max()) > 255:
            return floats.to(device)  # not pixel values (e.g. another normaliser): keep floats
        packed[start : start + PACK_CHUNK] = whole.to(torch.uint8)
    return packed


def unpack_images(xb: torch.Tensor, pixels: PixelSpace, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised floats of a batch from :func:`pack_images` (floats pass through).

    In place on the fresh float copy, and the same operations as the data layer
    (subtract the mean, multiply by the float32 reciprocal), so values match it exactly.
    """
    if xb.dtype != torch.uint8:
        return xb.to(dtype)
    out = xb.to(dtype)
    if isinstance(pixels.b, torch.Tensor) or pixels.b:
        out.sub_(pixels.b)
    if isinstance(pixels.inv_a, torch.Tensor) or pixels.inv_a != 1.0:
        out.mul_(pixels.inv_a)
    return out


__all__ = ["PixelSpace", "pack_images", "unpack_images"]
