"""Batched augmentation: shapes, dtype and labels kept, mixing weights, determinism, resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainlab.config import AugmentConfig
from trainlab.engines.torch.augment import (
    LUMA,
    BatchAugment,
    affine,
    affine_matrices,
    crop_flip,
    cutmix,
    cutout,
    grayscale,
    hflip,
    mixup,
    pad_crop,
    shift,
)
from trainlab.engines.torch.pixels import PixelSpace, pack_images, unpack_images

NORMALIZER = {"kind": "channel", "mean": [125.0, 122.0, 113.0], "std": [62.0, 61.0, 66.0]}
ONE_EACH: dict[str, dict[str, Any]] = {
    "hflip": {"hflip": True},
    "crop": {"crop_padding": 4},
    "translate": {"translate": 0.1},
    "rotate": {"rotate": 15.0},
    "zoom": {"zoom": 0.2},
    "resized_crop": {"random_resized_crop": (0.5, 1.0)},
    "color_jitter": {"color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}},
    "grayscale": {"grayscale": 0.5},
    "cutout": {"cutout": 8},
    "all_geometric": {"hflip": True, "crop_padding": 2, "rotate": 10.0, "zoom": 0.1, "translate": 0.1},
}


def batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def augmenter(seed: int = 0, **fields: Any) -> BatchAugment:
    return BatchAugment(AugmentConfig(**fields), 10, PixelSpace(NORMALIZER, 3), "cpu", seed=seed)


@pytest.mark.parametrize("name", ONE_EACH)
def test_keeps_shape_dtype_labels_and_is_seeded(name: str) -> None:
    x, y = batch()
    out, soft = augmenter(**ONE_EACH[name])(x.clone(), y)
    assert out.shape == x.shape and out.dtype == x.dtype and soft is None
    assert torch.isfinite(out).all() and not torch.equal(out, x)
    again, _ = augmenter(**ONE_EACH[name])(x.clone(), y)
    assert torch.equal(out, again)
    other, _ = augmenter(seed=1, **ONE_EACH[name])(x.clone(), y)
    assert not torch.equal(out, other)


def test_hflip_flips_exactly_the_drawn_images() -> None:
    x, _ = batch()
    assert torch.equal(hflip(x, torch.Generator(), p=1.0), x.flip(3))
    assert torch.equal(hflip(x, torch.Generator(), p=0.0), x)


def test_shift_moves_pixels_and_fills_zeros() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = shift(x, torch.tensor([1, 0]), torch.tensor([0, -2]), pad=2)
    torch.testing.assert_close(out[0, 0, 1:], x[0, 0, :3])
    assert float(out[0, 0, 0].abs().sum()) == 0
    torch.testing.assert_close(out[1, 0, :, :2], x[1, 0, :, 2:])
    assert float(out[1, 0, :, 2:].abs().sum()) == 0


def test_pad_crop_is_a_zero_filled_shift_within_the_padding() -> None:
    """Each output is its input moved by one (dy, dx) with |dy|, |dx| <= padding, the border
    filled with zeros (the candidates built here with F.pad and slicing, not with shift), and
    the offsets drawn vary over the batch."""
    pad, (h, w) = 2, (6, 6)
    x = torch.rand(64, 2, h, w, generator=torch.Generator().manual_seed(1)) + 1  # no zeros of its own
    out = pad_crop(x, torch.Generator().manual_seed(0), pad)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # zero fill
    offsets = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)]
    found = []
    for i in range(len(x)):
        # moved down dy and right dx: out[r, c] = x[r - dy, c - dx], zero outside x
        hits = [(dy, dx) for dy, dx in offsets
                if torch.equal(out[i], padded[i, :, pad - dy:pad - dy + h, pad - dx:pad - dx + w])]
        assert len(hits) == 1, f"image {i} is no shift within {pad} pixels"
        found.append(hits[0])
    assert len(set(found)) >= 15  # 25 offsets possible; 64 draws give about 23
    assert {dy for dy, _ in found} == {dx for _, dx in found} == set(range(-pad, pad + 1))


def test_affine_fill_modes_match_keras() -> None:
    """A shift right by 2 of 4 pixels uncovers the first 2 columns: zeros leaves 0, nearest
    repeats the edge pixel (a a | a b: ImageDataGenerator's default), reflect mirrors about
    the edge (b a | a b: Keras' RandomTranslation default)."""
    row = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = row.expand(1, 1, 4, 4).contiguous()
    theta = torch.tensor([[[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]])  # x_in = x_out - 1 unit = 2 pixels left
    expected = {"zeros": [0.0, 0.0, 1.0, 2.0], "nearest": [1.0, 1.0, 1.0, 2.0], "reflect": [2.0, 1.0, 1.0, 2.0]}
    for mode, values in expected.items():
        out = affine(x, theta, mode)
        torch.testing.assert_close(out[0, 0], torch.tensor(values).expand(4, 4))
    with pytest.raises(ValueError, match="fill_mode"):
        affine(x, theta, "wrap")


def test_fill_mode_reaches_the_batch_and_needs_a_resampling_transform() -> None:
    """On a uniform image, edge fills leave the image uniform wherever the zoom and shift put
    it; the zero fill darkens the uncovered border."""
    x = torch.full((16, 3, 16, 16), 2.0)
    y = torch.zeros(16, dtype=torch.long)
    for mode in ("nearest", "reflect"):
        out, _ = augmenter(zoom=0.3, translate=0.2, fill_mode=mode)(x.clone(), y)
        torch.testing.assert_close(out, x)
    zeros, _ = augmenter(zoom=0.3, translate=0.2)(x.clone(), y)
    assert float(zeros.min()) == 0.0
    assert AugmentConfig(zoom=0.3, fill_mode="reflect").active() == ["zoom"]
    with pytest.raises(ValueError, match="fill_mode"):
        AugmentConfig(hflip=True, fill_mode="nearest")


def test_zoom_axes_draws_one_factor_or_one_per_axis() -> None:
    """same: each image's two scales are equal (aspect kept); independent: they differ (Keras'
    ImageDataGenerator draws zx and zy apart), each within [1 - zoom, 1 + zoom]. "same" keeps
    the random stream it had before the option existed."""
    def scales(axes: str) -> tuple[torch.Tensor, torch.Tensor]:
        theta = affine_matrices(256, torch.Generator().manual_seed(3), torch.device("cpu"), zoom=0.2, zoom_axes=axes)
        return theta[:, 0, 0], theta[:, 1, 1]

    sx, sy = scales("same")
    assert torch.equal(sx, sy)
    ix, iy = scales("independent")
    assert torch.equal(ix, sx)  # the first axis keeps the shared draw
    assert bool((ix - iy).abs().gt(1e-3).float().mean() > 0.9)
    for s in (ix, iy):
        assert float(s.min()) >= 0.8 and float(s.max()) <= 1.2 and float(s.max() - s.min()) > 0.3
    assert AugmentConfig(zoom=0.1, zoom_axes="independent").active() == ["zoom"]
    with pytest.raises(ValueError, match="zoom_axes"):
        AugmentConfig(translate=0.1, zoom_axes="independent")


def test_fused_crop_flip_equals_flip_then_shift() -> None:
    x, _ = batch(32)
    out = crop_flip(x, torch.Generator().manual_seed(5), 3, 0.5)
    g = torch.Generator().manual_seed(5)
    offsets = torch.randint(-3, 4, (2, 32), generator=g)
    flip = torch.rand(32, generator=g) < 0.5
    expected = shift(torch.where(flip[:, None, None, None], x.flip(3), x), offsets[0], offsets[1], 3)
    assert torch.equal(out, expected)
    assert torch.equal(crop_flip(x, torch.Generator(), 0, 1.0), x.flip(3))


@pytest.mark.parametrize("fields", [
    {"hflip": True, "crop_padding": 4},
    {"hflip": True},
    {"crop_padding": 3, "crop_padding_mode": "reflect"},
    {"hflip": True, "crop_padding": 2, "rotate": 10.0, "mixup": 0.2},
    {"cutout": 4},
    {"mixup": 0.4},
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uint8_batches_give_the_same_floats_as_unpacking_first(fields: dict[str, Any], dtype: torch.dtype) -> None:
    """The engine hands BatchAugment its uint8 pixels; the result must equal, to the bit,
    augmenting the normalised floats (the path before the uint8 gather), soft targets too."""
    pixels = PixelSpace(NORMALIZER, 3)
    raw = torch.randint(0, 256, (24, 3, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    y = torch.arange(24) % 10
    from_bytes, soft_bytes = augmenter(seed=7, **fields)(raw.clone(), y, dtype=dtype)
    from_floats, soft_floats = augmenter(seed=7, **fields)(unpack_images(raw, pixels, dtype), y)
    assert from_bytes.dtype == dtype and from_bytes.shape == (24, 3, 16, 16)
    assert torch.equal(from_bytes, from_floats)
    assert (soft_bytes is None) == (soft_floats is None)
    if soft_bytes is not None:
        assert torch.equal(soft_bytes, soft_floats)


def test_float_batches_take_the_asked_dtype() -> None:
    """Splits that are not pixel values stay floats; the engine asks for its model dtype."""
    x, y = batch()
    out, _ = augmenter(hflip=True, crop_padding=2)(x.clone(), y, dtype=torch.float64)
    assert out.dtype == torch.float64
    same, _ = augmenter(hflip=True, crop_padding=2)(x.clone(), y)
    assert same.dtype == torch.float32 and torch.equal(out, same.to(torch.float64))


def test_cutout_blanks_at_most_a_square() -> None:
    x = torch.ones(64, 1, 16, 16)
    out = cutout(x, torch.Generator().manual_seed(0), 4)
    zeros = (out == 0).flatten(1).sum(1)
    assert int(zeros.max()) == 16 and int(zeros.min()) >= 4  # a corner keeps at least 2x2


def test_grayscale_makes_channels_equal_in_pixel_space() -> None:
    x, y = batch()
    aug = augmenter(grayscale=1.0)
    out, _ = aug(x, y)
    u = aug.pixels.to_unit(out)
    torch.testing.assert_close(u[:, 0], u[:, 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_grayscale_changes_only_the_picked_images_and_leaves_its_input(p: float) -> None:
    u = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    before = u.clone()
    out = grayscale(u, torch.Generator().manual_seed(5), p)
    pick = torch.rand(64, generator=torch.Generator().manual_seed(5)) < p  # the same draw
    gray = (LUMA[0] * u[:, 0] + LUMA[1] * u[:, 1] + LUMA[2] * u[:, 2])[:, None].expand_as(u)
    torch.testing.assert_close(out, torch.where(pick[:, None, None, None], gray, u))
    assert torch.equal(u, before)
    if 0 < p < 1:  # both branches taken
        assert 0 < int(pick.sum()) < 64


def test_color_jitter_stays_in_the_pixel_range() -> None:
    x, y = batch()
    aug = augmenter(color_jitter={"brightness": 0.9, "contrast": 0.9, "saturation": 0.9, "hue": 0.5})
    u = aug.pixels.to_unit(aug(x, y)[0])
    assert float(u.min()) >= -1e-5 and float(u.max()) <= 1 + 1e-5


def test_mixup_mixes_images_and_labels_with_one_weight() -> None:
    x, y = batch()
    targets = torch.nn.functional.one_hot(y, 10).float()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    mixed, soft = mixup(x, targets, 0.7, perm)
    torch.testing.assert_close(mixed, 0.7 * x + 0.3 * x[perm])
    torch.testing.assert_close(soft, 0.7 * targets + 0.3 * targets[perm])
    torch.testing.assert_close(soft.sum(1), torch.ones(len(y)))


def test_cutmix_label_weight_is_the_pasted_area() -> None:
    import numpy as np

    x, y = batch()
    targets = torch.nn.functional.one_hot(y, 10).float()
    perm = torch.roll(torch.arange(len(y)), 1)
    mixed, soft, kept = cutmix(x, targets, 0.6, perm, np.random.default_rng(0))
    from_other = (mixed != x).any(1).flatten(1).float().mean(1)  # (B,) area pasted per image
    assert float(from_other.max()) == pytest.approx(1 - kept, abs=1e-6)
    torch.testing.assert_close(soft, kept * targets + (1 - kept) * targets[perm])


@pytest.mark.parametrize("fields", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}])
def test_batch_mixing_returns_soft_targets(fields: dict[str, float]) -> None:
    x, y = batch(32)
    out, soft = augmenter(**fields)(x, y)
    assert out.shape == x.shape and soft is not None and soft.shape == (32, 10)
    torch.testing.assert_close(soft.sum(1), torch.ones(32))
    # every image keeps its own label with the larger weight or shares it with its partner
    assert bool((soft.gather(1, y[:, None]) > 0).all())


def test_state_dict_continues_the_same_stream() -> None:
    x, y = batch()
    fields = {"hflip": True, "crop_padding": 2, "mixup": 0.5}
    a = augmenter(**fields)
    a(x, y)
    state = a.state_dict()
    expected = a(x, y)
    b = augmenter(seed=9, **fields)
    b.load_state_dict(state)
    got = b(x, y)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


def test_pixel_space_round_trip() -> None:
    x, _ = batch()
    for normalizer in (NORMALIZER, {"kind": "scale", "scale": 1.0}, {"kind": "none"}):
        space = PixelSpace(normalizer, 3)
        torch.testing.assert_close(space.from_unit(space.to_unit(x)), x, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("kind", "options"), [
    ("channel", {}), ("pixel", {}), ("scale", {"scale": 100.0}), ("none", {}), ("feature", {}),
    ("center", {"scale": 100.0, "center_by": "channel"}), ("center", {"scale": 100.0, "center_by": "pixel"}),
    ("fixed", {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
], ids=["channel", "pixel", "scale", "none", "feature", "center-channel", "center-pixel", "fixed"])
def test_pack_images_round_trips_the_data_layer_exactly(kind: str, options: dict[str, Any]) -> None:
    """Batches packed as uint8 and unpacked equal the prepared arrays bit for bit, for every
    normalisation; colour augmentations map them to [0, 1] and back."""
    import numpy as np

    from trainlab.data.normalize import apply_normalizer, fit_normalizer

    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)  # (N, H, W, C)
    images[:, 0, 0, 1] = 77  # a constant position (std 0), like MNIST's corners
    normalizer = fit_normalizer(images, kind, **options)
    normalised = apply_normalizer(images, normalizer)  # (N, C, H, W) float32
    space = PixelSpace(normalizer, 3)
    packed = pack_images(normalised, space)
    assert packed.dtype == torch.uint8
    pixels = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())  # (N, C, H, W)
    assert torch.equal(packed, pixels)
    assert torch.equal(unpack_images(packed, space), torch.from_numpy(normalised))
    x = torch.from_numpy(normalised)
    torch.testing.assert_close(space.to_unit(x) * 255, pixels.float(), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(space.from_unit(space.to_unit(x)), x, atol=1e-4, rtol=1e-5)


def test_pack_images_keeps_floats_that_are_not_pixels() -> None:
    import numpy as np

    not_pixels = np.random.default_rng(1).normal(size=(4, 3, 4, 4)).astype(np.float32)
    space = PixelSpace(NORMALIZER, 3)
    kept = pack_images(not_pixels, space)
    assert kept.dtype == torch.float32 and torch.equal(unpack_images(kept, space), torch.from_numpy(not_pixels))
