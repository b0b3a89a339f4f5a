"""Batched, seeded training-time augmentation on tensors, on the training device.

Every function takes a whole batch ``x`` (B, C, H, W) and a ``torch.Generator`` on the
batch's device, draws one random parameter per image in one call, and transforms the
batch with a few tensor operations: no per-image Python. The geometric transforms that
resample (translate, rotate, zoom, random-resized-crop) are folded into one affine matrix
per image and one ``grid_sample``; flip and pad-and-crop are fused into one gather.

Images arrive normalised (``data.normalize``). Geometric transforms and cutout work in
that space and fill with 0 (the mean colour for per-channel normalisation), unless
``augment.fill_mode`` (the resampling transforms) or ``crop_padding_mode`` says otherwise; colour
transforms need pixel values, so :class:`~trainlab.engines.torch.pixels.PixelSpace` maps
to [0, 1] and back.

:class:`BatchAugment` chains what ``augment`` turns on, in a fixed order: flip and crop
(fused), the low-resolution window or resize of ``augment.low_res``' first epochs, affine,
colour jitter, grayscale, cutout, then mixup or cutmix (which return soft targets). Batch-level scalars (the mixing weight, the cutmix box) come from a NumPy
generator; both generators' states go into checkpoints.

``bench/bench_augment.py`` times each augmentation against its kornia counterpart on the
same batches; this code is faster on every one here (1.1x-14x on 2 CPU threads), so the
engine does not depend on kornia.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from trainlab.engines.torch.color import LUMA, color_jitter, grayscale
from trainlab.engines.torch.pixels import PixelSpace, unpack_images
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from trainlab.config import AugmentConfig, RunConfig
    from trainlab.config.augment import LowResConfig

#: Model types whose first layer sees every pixel of a fixed-size input: no low_res for them.
FIXED_INPUT_MODELS = ("linear", "mlp")


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low  # (n,)


def hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability ``p``."""
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < p  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Move image i down by ``dy[i]`` and right by ``dx[i]`` pixels (|d| <= pad), filling with 0."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    # Every crop position as a view, then one advanced-indexing copy (faster than two gathers).
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p + 1, 2p + 1, H, W)
    return windows[torch.arange(b, device=x.device), :, pad - dy, pad - dx]  # (B, C, H, W)


def pad_crop(x: torch.Tensor, g: torch.Generator, padding: int) -> torch.Tensor:
    """Pad by ``padding`` zeros and crop back at a random offset (the CIFAR standard)."""
    if padding <= 0:
        return x
    offsets = torch.randint(-padding, padding + 1, (2, x.shape[0]), generator=g, device=x.device)  # (2, B)
    return shift(x, offsets[0], offsets[1], padding)


def crop_flip(x: torch.Tensor, g: torch.Generator, padding: int, flip_p: float, *,
              flip: torch.Tensor | None = None, reflect: bool = False,
              pixels: PixelSpace | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pad-and-crop and horizontal flip in one gather (the CIFAR standard, fused).

    Image i is flipped with probability ``flip_p`` (or where the boolean mask ``flip``
    (B,) says, without drawing), then shifted by a random offset in ``[-padding,
    padding]`` per axis, the uncovered border filled with zeros or, with ``reflect``, by
    reflection (``F.pad(mode="reflect")``'s border, as airbench): the same distribution as
    :func:`hflip` followed by :func:`pad_crop`, in one pass over the batch instead of four
    (flip, select, pad, crop); measured 2-3x faster on CPU (bench/bench_augment.py).

    With ``pixels``, ``x`` may hold uint8 pixels as :func:`pack_images` stores them: the
    gather then moves a quarter of the bytes and the result is :func:`unpack_images`'
    normalised floats (``dtype``), equal bit for bit to unpacking first (the gather only copies
    values; the zero fill is applied to the normalised floats, as before); measured
    about 1.15x faster than gathering floats on CPU (bench/bench_augment.py).
    """
    b, c, h, w = x.shape
    dev = x.device
    if reflect and padding >= min(h, w):
        raise ValueError(f"reflect padding of {padding} needs images larger than {padding} pixels (got {h}x{w})")
    if padding:
        offsets = torch.randint(-padding, padding + 1, (2, b), generator=g, device=dev)  # (2, B)
    else:
        offsets = torch.zeros(2, b, dtype=torch.int64, device=dev)
    if flip is None:
        flip = torch.rand(b, generator=g, device=dev) < flip_p  # (B,)
    i, j = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = i[None] - offsets[0][:, None]  # (B, H) source row of each output row
    shifted = j[None] - offsets[1][:, None]  # (B, W) column in the flipped-or-not image
    if reflect:  # -1 -> 1, h -> h - 2: mirror about the edge pixels
        source_rows = torch.where(rows < 0, -rows, torch.where(rows >= h, 2 * (h - 1) - rows, rows))
        source_cols = torch.where(shifted < 0, -shifted, torch.where(shifted >= w, 2 * (w - 1) - shifted, shifted))
    else:
        source_rows, source_cols = rows.clamp(0, h - 1), shifted.clamp(0, w - 1)
    cols = torch.where(flip[:, None], w - 1 - source_cols, source_cols)  # (B, W) source column
    index = (source_rows * w)[:, :, None] + cols[:, None, :]  # (B, H, W)
    out = x.reshape(b, c, h * w).gather(2, index.reshape(b, 1, h * w).expand(b, c, h * w))
    out = out.reshape(b, c, h, w)
    if pixels is not None:
        out = unpack_images(out, pixels, dtype)
    if padding and not reflect:
        # Zero fill outside the image: one in-place product with a (B, 1, H, W) mask built
        # as an outer product (boolean ops on (B, H, W) were 3x slower).
        row_ok = ((rows >= 0) & (rows < h)).to(out.dtype)  # (B, H)
        col_ok = ((shifted >= 0) & (shifted < w)).to(out.dtype)  # (B, W)
        out.mul_((row_ok[:, :, None] * col_ok[:, None, :])[:, None])
    return out


def random_window(x: torch.Tensor, g: torch.Generator, size: int) -> torch.Tensor:
    """A ``size`` x ``size`` window of each image at its own random offset (B, C, size, size).

    The top-left corner is drawn uniformly among the positions that keep the window inside
    the image, rows first, then columns. As :func:`shift`: every window as a view, then one
    advanced-indexing copy.
    """
    b, _, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"a {size}x{size} window does not fit in {h}x{w} images")
    top = torch.randint(0, h - size + 1, (b,), generator=g, device=x.device)  # (B,)
    left = torch.randint(0, w - size + 1, (b,), generator=g, device=x.device)  # (B,)
    windows = x.unfold(2, size, 1).unfold(3, size, 1)  # (B, C, H - s + 1, W - s + 1, s, s)
    return windows[torch.arange(b, device=x.device), :, top, left]  # (B, C, s, s)


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """Every image resized to ``size`` x ``size`` (bilinear, antialiased), (B, C, size, size).

    Antialiased: each output pixel averages all the input pixels it covers (torchvision's
    and PIL's resize do the same), so the small image is what a lower-resolution camera
    would record rather than a point sampling with aliasing; the full-size evaluation
    images have no aliasing either. It costs a few ms more per 1024 CIFAR images than
    plain bilinear on one CPU thread, little against a training step.
    """
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def low_res(x: torch.Tensor, g: torch.Generator, cfg: LowResConfig) -> torch.Tensor:
    """``augment.low_res``' transform of a batch: :func:`random_window` (crop) or :func:`shrink` (resize)."""
    return random_window(x, g, cfg.size) if cfg.mode == "crop" else shrink(x, cfg.size)


def check_low_res(config: RunConfig, input_shape: tuple[int, int, int] | None = None,
                  model: nn.Module | None = None) -> None:
    """Refuse an ``augment.low_res`` the run cannot train with; nothing when it is off.

    Without ``input_shape`` (before the data is read) only the model type is checked:
    linear and mlp take one input size, and a cnn needs ``model.global_pool``. With it, the
    size must be below the images' sides; with ``model`` too, one eval-mode forward of two
    zero images of the low resolution must work (a cnn whose pools shrink the small image
    away, or a custom model that takes one size, fails here, not in the first step). That
    forward changes no weights, statistics or generator.

    Raises:
        ConfigError: naming the field and the fix.
    """
    low = config.augment.low_res
    if low is None:
        return
    m = config.model
    if m.type in FIXED_INPUT_MODELS:
        raise ConfigError(
            f"augment.low_res: model type '{m.type}' takes only the full-size input (its first layer sees "
            "every pixel); use a conv model with a global pool (cnn with model.global_pool: max or avg, "
            "resnet, fast_cifar) or remove augment.low_res"
        )
    if m.type == "cnn" and m.global_pool == "none":
        raise ConfigError(
            "augment.low_res: a cnn needs model.global_pool: max or avg to take smaller images (without it, "
            "its dense layers expect the full-size feature map); set model.global_pool or remove augment.low_res"
        )
    if input_shape is None:
        return
    channels, h, w = (int(d) for d in input_shape)
    if low.size >= min(h, w):
        raise ConfigError(
            f"augment.low_res.size: {low.size} is not smaller than the {h}x{w} training images; "
            f"use a size below {min(h, w)} or remove augment.low_res"
        )
    if model is None:
        return
    reference = next(iter(model.parameters()), torch.empty(0))  # where and in what the model computes
    device, dtype = reference.device, reference.dtype
    was_training = model.training
    devices = [device.index or 0] if device.type == "cuda" else []
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model(torch.zeros(2, channels, low.size, low.size, device=device, dtype=dtype))
    except Exception as exc:  # whatever the model raises, it is the size that it refuses
        raise ConfigError(
            f"augment.low_res.size: the model cannot take {low.size}x{low.size} images "
            f"({type(exc).__name__}: {exc}); use a larger size or remove augment.low_res"
        ) from exc
    finally:
        model.train(was_training)


def affine_matrices(
    n: int,
    g: torch.Generator,
    device: torch.device,
    *,
    rotate: float = 0.0,
    translate: float = 0.0,
    zoom: float = 0.0,
    zoom_axes: str = "same",
    resized_crop: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Per-image affine maps (n, 2, 3) from output to input coordinates in [-1, 1] units.

    rotate: degrees in [-rotate, rotate]; translate: fraction of the size in each axis;
    zoom: scale in [1 - zoom, 1 + zoom] (below 1 zooms in), one factor for both axes or, with
    ``zoom_axes="independent"``, one per axis; resized_crop: the fraction of
    the area kept, drawn in [lo, hi], with an aspect ratio in [3/4, 4/3] (Inception-style).
    """
    angle = _uniform(n, -rotate, rotate, g, device) * (math.pi / 180.0)  # (n,)
    sx = sy = _uniform(n, 1.0 - zoom, 1.0 + zoom, g, device) if zoom else torch.ones(n, device=device)
    if zoom and zoom_axes == "independent":  # drawn after sx, so "same" keeps its random stream
        sy = _uniform(n, 1.0 - zoom, 1.0 + zoom, g, device)
    tx = _uniform(n, -2 * translate, 2 * translate, g, device)  # (n,) full width is 2 units
    ty = _uniform(n, -2 * translate, 2 * translate, g, device)
    if resized_crop is not None:
        area = _uniform(n, resized_crop[0], resized_crop[1], g, device)
        log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), g, device)
        cw = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # (n,) crop width / image width
        ch = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
        tx = tx + (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - cw)
        ty = ty + (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - ch)
        sx, sy = sx * cw, sy * ch
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([sx * cos, -sx * sin, tx], 1), torch.stack([sy * sin, sy * cos, ty], 1)], 1
    )
    return theta  # (n, 2, 3)


#: ``augment.fill_mode`` -> grid_sample's padding_mode. With align_corners=False, "reflection"
#: mirrors about the pixel edge (d c b a | a b c d), as Keras' "reflect" does.
FILL_MODES = {"zeros": "zeros", "nearest": "border", "reflect": "reflection"}


def affine(x: torch.Tensor, theta: torch.Tensor, fill_mode: str = "zeros") -> torch.Tensor:
    """Resample every image through its affine map (bilinear), filling the area it uncovers as
    ``fill_mode`` says: zeros, nearest (the edge pixel) or reflect (mirrored about the edge)."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {sorted(FILL_MODES)}, got {fill_mode!r}")
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=FILL_MODES[fill_mode], align_corners=False)


def cutout(x: torch.Tensor, g: torch.Generator, size: int) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square at a random centre per image (may overlap the edge)."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=g, device=x.device)[:, None]  # (B, 1)
    cx = torch.randint(0, w, (b,), generator=g, device=x.device)[:, None]
    rows = torch.arange(h, device=x.device)[None] - (cy - size // 2)  # (B, H)
    cols = torch.arange(w, device=x.device)[None] - (cx - size // 2)  # (B, W)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x * (~inside)[:, None].to(x.dtype)  # (B, C, H, W)


def mixup(
    x: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * x + (1 - lam) * x[perm]``; soft targets (B, K) mixed with the same weight."""
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


def cutmix(
    x: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste a box of ``x[perm]`` of area about ``1 - lam`` into every image (Yun et al. 2019).

    Returns the mixed batch, the targets mixed by the box's true area, and that weight.
    """
    _, _, h, w = x.shape
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, kept * targets + (1 - kept) * targets[perm], kept


class BatchAugment:
    """The augmentations ``augment`` turns on, applied to whole batches.

    Args:
        cfg: the ``augment`` section.
        num_classes: width of the soft targets of mixup/cutmix.
        pixels: maps to [0, 1] pixels for the colour transforms.
        device: the training device (the generator lives there).
        seed: seed of both generators.

    Example:
        >>> aug = BatchAugment(cfg.augment, 10, PixelSpace(data.normalizer, 3), "cpu", seed=0)
        >>> x, soft = aug(x, y)  # soft is None unless mixup/cutmix is on
    """

    def __init__(self, cfg: AugmentConfig, num_classes: int, pixels: PixelSpace,
                 device: torch.device | str = "cpu", seed: int = 0, num_examples: int | None = None) -> None:
        self.cfg, self.num_classes, self.pixels = cfg, num_classes, pixels
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.rng = np.random.default_rng(seed)
        # Alternating flip: whether each training example is flipped in even epochs, drawn once.
        self.flip_base: torch.Tensor | None = None
        if cfg.hflip == "alternating" and num_examples:
            self.flip_base = torch.rand(num_examples, generator=self.generator, device=self.device) < 0.5

    def flips(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """Alternating flip's mask (B,) for training examples ``index`` in epoch ``epoch``
        (0-based): the drawn flips in even epochs, their complement in odd ones."""
        if self.flip_base is None:
            raise ValueError("alternating flips need num_examples when the BatchAugment is built")
        base = self.flip_base.index_select(0, index.to(self.device))
        return ~base if epoch % 2 else base

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.cfg.active())

    def __call__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None,
                 epoch: int = 0, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment a batch x (B, C, H, W) with labels y (B,); returns (x, soft targets (B, K) or None).

        ``x`` holds normalised floats, or uint8 pixels as :func:`pack_images` stores them;
        either way it becomes :func:`unpack_images`' floats of ``dtype`` (None: float32 for
        pixels, x's own dtype for floats). Pixels are normalised after the crop/flip gather,
        which is cheaper on bytes, with the same values as unpacking before augmenting.
        ``index`` (B,), the examples' positions in the training split, and ``epoch`` are
        what alternating flips need; without them those flips are random (p = 0.5).
        ``epoch`` (0-based) also says whether ``augment.low_res`` applies: before its
        ``epochs``, the returned batch is (B, C, size, size).
        """
        c, g = self.cfg, self.generator
        packed = x.dtype == torch.uint8
        if dtype is None:
            dtype = torch.float32 if packed else x.dtype
        if not packed:
            x = x.to(dtype)
        if c.hflip or c.crop_padding:
            alternate = c.hflip == "alternating" and index is not None and self.flip_base is not None
            x = crop_flip(x, g, c.crop_padding, 0.5 if c.hflip else 0.0,
                          flip=self.flips(index, epoch) if alternate else None,  # type: ignore[arg-type]
                          reflect=c.crop_padding_mode == "reflect",
                          pixels=self.pixels if packed else None, dtype=dtype)
        elif packed:
            x = unpack_images(x, self.pixels, dtype)
        if c.low_res is not None and epoch < c.low_res.epochs:
            x = low_res(x, g, c.low_res)
        if c.resamples():
            theta = affine_matrices(x.shape[0], g, x.device, rotate=c.rotate, translate=c.translate,
                                    zoom=c.zoom, zoom_axes=c.zoom_axes, resized_crop=c.random_resized_crop)
            x = affine(x, theta, c.fill_mode)
        if c.color_jitter is not None or c.grayscale:
            u = self.pixels.to_unit(x)
            if c.color_jitter is not None:
                u = color_jitter(u, g, c.color_jitter)
            if c.grayscale:
                u = grayscale(u, g, c.grayscale)
            x = self.pixels.from_unit(u)
        if c.cutout:
            x = cutout(x, g, c.cutout)
        if not (c.mixup or c.cutmix):
            return x, None
        targets = F.one_hot(y, self.num_classes).to(x.dtype)  # (B, K)
        perm = torch.randperm(x.shape[0], generator=g, device=x.device)
        use_cutmix = bool(c.cutmix) and (not c.mixup or self.rng.random() < 0.5)
        alpha = c.cutmix if use_cutmix else c.mixup
        lam = float(self.rng.beta(alpha, alpha))
        if use_cutmix:
            x, targets, _ = cutmix(x, targets, lam, perm, self.rng)
        else:
            x, targets = mixup(x, targets, lam, perm)
        return x, targets

    def state_dict(self) -> dict[str, Any]:
        """Both generators' states (a uint8 tensor and a JSON string), and alternating
        flip's drawn flips, for checkpoints."""
        state: dict[str, Any] = {"generator": self.generator.get_state(),
                                 "rng": json.dumps(self.rng.bit_generator.state)}
        if self.flip_base is not None:
            state["flip_base"] = self.flip_base.cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        if "flip_base" in state:
            self.flip_base = state["flip_base"].to(self.device)


__all__ = [
    "FIXED_INPUT_MODELS",
    "LUMA",
    "BatchAugment",
    "affine",
    "affine_matrices",
    "check_low_res",
    "color_jitter",
    "crop_flip",
    "cutmix",
    "cutout",
    "grayscale",
    "hflip",
    "low_res",
    "mixup",
    "pad_crop",
    "random_window",
    "shift",
    "shrink",
]
