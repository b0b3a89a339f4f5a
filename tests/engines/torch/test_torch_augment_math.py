"""The maths of batched augmentation: colour jitter's four components and the affine parameters.

The constants the code documents are written out here (ITU-R 601 luma, the YIQ matrix), so a
changed constant in ``color.py`` fails these tests instead of moving the expected values along.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from trainlab.config import AugmentConfig
from trainlab.config.augment import ColorJitterConfig
from trainlab.engines.torch import augment, color
from trainlab.engines.torch.augment import BatchAugment, affine
from trainlab.engines.torch.color import color_jitter
from trainlab.engines.torch.pixels import PixelSpace

# ITU-R 601 luma, the gray of color.py's docstring (as PIL's convert("L") and torchvision).
LUMA_601 = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
# RGB -> YIQ: Y is the luma above; hue jitter rotates the (I, Q) plane.
YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                   dtype=torch.float64)
N = 512  # images per draw: enough for the drawn factors to cover most of their range


def colourful(n: int, centre: tuple[float, float, float], spread: float, seed: int = 0) -> torch.Tensor:
    """Pixels (n, 3, 6, 6) in float64, channel c uniform in centre[c] +- spread.

    Distinct channel means make a wrong luma weight visible; staying away from 0 and 1
    keeps the unclamped maths checkable.
    """
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(n, 3, 6, 6, generator=g, dtype=torch.float64) * 2 - 1) * spread
    return torch.tensor(centre, dtype=torch.float64)[None, :, None, None] + noise


def luma(u: torch.Tensor) -> torch.Tensor:
    """Luma (B, H, W) of RGB pixels u (B, 3, H, W), by the documented weights."""
    return torch.einsum("c,bchw->bhw", LUMA_601.to(u.dtype), u)


def jitter(u: torch.Tensor, seed: int = 1, **strengths: float) -> torch.Tensor:
    """color_jitter of a copy of ``u`` with only the named components on (the rest default to 0)."""
    return color_jitter(u.clone(), torch.Generator().manual_seed(seed), ColorJitterConfig(**strengths))


def per_image_factor(out: torch.Tensor, u: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Least-squares f (B,) of out - centre = f * (u - centre), one factor per image."""
    a, b = (u - centre).flatten(1), (out - centre).flatten(1)
    return (a * b).sum(1) / (a * a).sum(1)


def assert_spread(values: torch.Tensor, low: float, high: float, cover: float = 0.8) -> None:
    """All values in [low, high] (up to rounding) and spread over ``cover`` of that range."""
    eps = 1e-6 * max(1.0, abs(low), abs(high))
    assert float(values.min()) >= low - eps and float(values.max()) <= high + eps, (values.min(), values.max())
    assert float(values.max() - values.min()) >= cover * (high - low), (values.min(), values.max())


# ---- colour jitter, one component at a time ---------------------------------------------------


def test_brightness_scales_each_image_by_one_factor_and_clamps_at_one() -> None:
    """out = clamp(f * u, 0, 1) with one f per image drawn in [1 - s, 1 + s]."""
    s = 0.5
    u = colourful(N, (0.5, 0.5, 0.5), 0.45)  # in [0.05, 0.95]: bright pixels clamp when f > 1
    out = jitter(u, brightness=s)
    ratio = out / u
    free = out < 1  # not clamped
    hi = torch.where(free, ratio, -math.inf).amax((1, 2, 3))  # (B,)
    lo = torch.where(free, ratio, math.inf).amin((1, 2, 3))
    torch.testing.assert_close(hi, lo, atol=1e-12, rtol=0)  # one ratio per image
    assert_spread(hi, 1 - s, 1 + s)
    # the clamped pixels are exactly those the factor pushes past 1
    f = hi[:, None, None, None]
    assert torch.equal(~free, u * f >= 1 - 1e-12)
    assert bool((~free).any())


def test_contrast_keeps_each_images_mean_luma() -> None:
    """out = m + f (u - m), m the image's mean luma, f in [1 - s, 1 + s]: the mean luma stays m."""
    s = 0.5
    u = colourful(N, (0.6, 0.5, 0.4), 0.1)
    out = jitter(u, contrast=s)
    assert float(out.min()) > 0 and float(out.max()) < 1  # nothing clamped: the identity is exact
    m = luma(u).mean((1, 2))  # (B,)
    torch.testing.assert_close(luma(out).mean((1, 2)), m, atol=1e-12, rtol=0)
    centre = m[:, None, None, None]
    f = per_image_factor(out, u, centre)
    torch.testing.assert_close(out, centre + f[:, None, None, None] * (u - centre), atol=1e-12, rtol=0)
    assert_spread(f, 1 - s, 1 + s)


def test_saturation_scales_the_distance_from_the_luma_gray() -> None:
    """out = gray + f (u - gray), gray the pixel's luma, f in [1 - s, 1 + s]."""
    s = 0.5
    u = colourful(N, (0.6, 0.5, 0.4), 0.1)
    out = jitter(u, saturation=s)
    assert float(out.min()) > 0 and float(out.max()) < 1
    gray = luma(u)[:, None]  # (B, 1, H, W)
    f = per_image_factor(out, u, gray)
    torch.testing.assert_close(out, gray + f[:, None, None, None] * (u - gray), atol=1e-12, rtol=0)
    assert_spread(f, 1 - s, 1 + s)


def test_saturation_factor_zero_gives_the_luma_gray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Saturation 1 draws factors in [0, 2]; pinned to its lower end, every pixel becomes its luma
    in all three channels (what grayscale gives)."""
    def lowest(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
        return torch.full((n,), low, dtype=torch.float32, device=device)

    monkeypatch.setattr(color, "_uniform", lowest)
    u = colourful(16, (0.7, 0.5, 0.2), 0.2)
    out = jitter(u, saturation=1.0)
    torch.testing.assert_close(out, luma(u)[:, None].expand_as(u), atol=1e-12, rtol=0)


def test_hue_rotates_chroma_and_keeps_luma() -> None:
    """In YIQ, hue jitter keeps Y (the luma) and turns (I, Q) by one angle per image, drawn in
    +- hue turns."""
    hue = 0.25
    u = colourful(N, (0.55, 0.5, 0.45), 0.05)  # nearly gray: any turn stays inside [0, 1]
    out = jitter(u, hue=hue)
    assert float(out.min()) > 0 and float(out.max()) < 1  # nothing clamped
    torch.testing.assert_close(luma(out), luma(u), atol=1e-12, rtol=0)
    yiq_in, yiq_out = (torch.einsum("kc,bchw->bkhw", YIQ, v).flatten(2) for v in (u, out))  # (B, 3, HW)
    z_in = torch.complex(yiq_in[:, 1], yiq_in[:, 2])  # (B, HW) chroma as I + iQ
    z_out = torch.complex(yiq_out[:, 1], yiq_out[:, 2])
    turn = torch.angle((z_out * z_in.conj()).sum(1))  # (B,) the image's rotation
    # 1e-6: the angle is drawn in float32, so its cos and sin are float32's
    torch.testing.assert_close(z_out, torch.polar(torch.ones_like(turn), turn)[:, None] * z_in,
                               atol=1e-6, rtol=0)
    assert_spread(turn, -2 * math.pi * hue, 2 * math.pi * hue)


# ---- the affine parameters, read off the matrices BatchAugment draws from its config -----------


def drawn_thetas(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> torch.Tensor:
    """The per-image affine maps (N, 2, 3) that BatchAugment(AugmentConfig(**fields)) resamples
    a batch of N images with (its ``affine`` call recorded, then run)."""
    seen: list[torch.Tensor] = []

    def record(x: torch.Tensor, theta: torch.Tensor, fill_mode: str = "zeros") -> torch.Tensor:
        seen.append(theta)
        return affine(x, theta, fill_mode)

    monkeypatch.setattr(augment, "affine", record)
    pixels = PixelSpace({"kind": "none"}, 3)
    aug = BatchAugment(AugmentConfig(**fields), 10, pixels, "cpu", seed=3)
    aug(torch.rand(N, 3, 4, 4), torch.zeros(N, dtype=torch.long))
    assert len(seen) == 1 and seen[0].shape == (N, 2, 3)
    return seen[0].double()


def linear_part(theta: torch.Tensor) -> torch.Tensor:
    """The 2x2 part (N, 2, 2) of affine maps (N, 2, 3)."""
    return theta[:, :, :2]


def test_rotation_angle_stays_within_the_configured_degrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """rotate: 15 draws angles in [-15, 15] degrees; alone, the map is a pure rotation."""
    cfg = AugmentConfig(rotate=15.0)
    theta = drawn_thetas(monkeypatch, rotate=cfg.rotate)
    degrees = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    assert_spread(degrees, -cfg.rotate, cfg.rotate)
    torch.testing.assert_close(torch.linalg.det(linear_part(theta)), torch.ones(N, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(theta[:, :, 2].abs().max()) == 0.0


def test_translation_stays_within_the_configured_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """translate: t shifts by up to t of the size per axis. affine_grid (align_corners=False)
    spans the image's outer edges with [-1, 1], so the size is 2 units and the bound is 2 t."""
    cfg = AugmentConfig(translate=0.1)
    theta = drawn_thetas(monkeypatch, translate=cfg.translate)
    bound = 2 * cfg.translate
    assert_spread(theta[:, 0, 2], -bound, bound)
    assert_spread(theta[:, 1, 2], -bound, bound)
    torch.testing.assert_close(linear_part(theta), torch.eye(2, dtype=torch.float64).expand(N, 2, 2))


def test_translation_units_are_the_derived_pixels() -> None:
    """The bound's derivation: 2 t units of a 20-pixel-wide image, t = 0.1, are 2 pixels."""
    x = torch.arange(20.0).expand(1, 1, 5, 20).contiguous()
    theta = torch.tensor([[[1.0, 0.0, 2 * 0.1], [0.0, 1.0, 0.0]]])  # input x = output x + 0.2 units
    out = affine(x, theta)
    torch.testing.assert_close(out[..., :18], x[..., 2:])


@pytest.mark.parametrize("axes", ["same", "independent"])
def test_zoom_scale_stays_within_the_configured_range(monkeypatch: pytest.MonkeyPatch, axes: str) -> None:
    """zoom: z scales each axis by a factor in [1 - z, 1 + z], so the area scale (the 2x2
    determinant) lies in [(1 - z)^2, (1 + z)^2]; with one factor it is that factor squared."""
    cfg = AugmentConfig(zoom=0.2, zoom_axes=axes)
    theta = drawn_thetas(monkeypatch, zoom=cfg.zoom, zoom_axes=cfg.zoom_axes)
    det = torch.linalg.det(linear_part(theta))
    assert_spread(det, (1 - cfg.zoom) ** 2, (1 + cfg.zoom) ** 2, cover=0.7)
    if axes == "same":
        assert_spread(det.sqrt(), 1 - cfg.zoom, 1 + cfg.zoom)
    assert float(theta[:, 0, 1].abs().max()) == 0.0 and float(theta[:, 1, 0].abs().max()) == 0.0


@pytest.mark.parametrize("scale", [(0.2, 0.6), (0.5, 1.0)])
def test_resized_crop_keeps_the_configured_area_inside_the_image(
    monkeypatch: pytest.MonkeyPatch, scale: tuple[float, float]
) -> None:
    """random_resized_crop: [lo, hi] samples a window of that fraction of the area (the 2x2
    determinant: the window's width times height, in image units) with an aspect ratio in
    [3/4, 4/3], lying inside the image (|centre| + half-size <= 1 per axis). Near an area
    of 1 a side is capped at the image's, so the area can fall below the draw but not below lo."""
    cfg = AugmentConfig(random_resized_crop=scale)
    lo, hi = cfg.random_resized_crop  # type: ignore[misc]
    theta = drawn_thetas(monkeypatch, random_resized_crop=cfg.random_resized_crop)
    cw, ch = theta[:, 0, 0], theta[:, 1, 1]  # no rotation: the diagonal is the window's size
    assert float(theta[:, 0, 1].abs().max()) == 0.0 and float(theta[:, 1, 0].abs().max()) == 0.0
    assert_spread(torch.linalg.det(linear_part(theta)), lo, hi, cover=0.6)
    assert_spread(cw / ch, 3 / 4, 4 / 3, cover=0.5)
    assert bool((theta[:, 0, 2].abs() + cw <= 1 + 1e-6).all())
    assert bool((theta[:, 1, 2].abs() + ch <= 1 + 1e-6).all())
