"""Test-time augmentation: the logits of a batch averaged over fixed, weighted views.

Modes (``train.tta``; ``True`` means ``flip``, ``False`` or ``none`` no TTA):

- ``flip``: the image and its mirror image, 1/2 each;
- ``translate``: the image (1/2) and its shifts by one pixel down-right and up-left
  (1/4 each), the new border filled by reflection;
- ``flip_translate``: airbench's six views: the image and its mirror (1/4 each), and each
  of the two shifts and their mirrors (1/8 each).

The views are deterministic, so evaluation stays reproducible.

Selective TTA (``train.tta_below``): the plain view first, for every image; only images
whose top softmax probability is below the threshold get the other views (averaged with
the plain one at the mode's weights); the others keep their plain logits. The views cost
a forward pass each, so a threshold that leaves most images confident saves most of
them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

TTA_MODES = ("none", "flip", "translate", "flip_translate")


def tta_mode(tta: bool | str) -> str:
    """The mode name of a ``train.tta`` value (``True`` -> flip, ``False`` -> none).

    Raises:
        ValueError: an unknown mode.
    """
    if tta is True:
        return "flip"
    if tta is False or tta is None:
        return "none"
    if tta not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {tta!r}; choose one of {', '.join(TTA_MODES)}")
    return str(tta)


def shift_reflect(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move every image of x (B, C, H, W) down by ``dy`` and right by ``dx`` pixels
    (|d| <= 1 recommended), filling the uncovered border by reflection."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return x
    _, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # (B, C, H + 2p, W + 2p)
    return padded[:, :, pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def tta_views(x: torch.Tensor, mode: str) -> list[tuple[torch.Tensor, float]]:
    """The (view, weight) pairs of ``mode`` for the batch x (B, C, H, W); weights sum to 1."""
    mode = tta_mode(mode)
    if mode == "none":
        return [(x, 1.0)]
    if mode == "flip":
        return [(x, 0.5), (x.flip(3), 0.5)]
    shifted = [shift_reflect(x, 1, 1), shift_reflect(x, -1, -1)]
    if mode == "translate":
        return [(x, 0.5), (shifted[0], 0.25), (shifted[1], 0.25)]
    views = [(x, 0.25), (x.flip(3), 0.25)]
    for view in shifted:
        views += [(view, 0.125), (view.flip(3), 0.125)]
    return views


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: bool | str,
               below: float | None = None, *, static_shapes: bool = False) -> torch.Tensor:
    """Weighted mean of ``forward``'s float32 logits (B, K) over the views of ``mode``.

    ``below``: selective TTA. Only the images whose plain view's top softmax probability is
    below it get the other views; the rest keep the plain view's logits. None: every image.

    ``static_shapes``: with ``below``, pass every view of every image through ``forward`` and
    pick each image's result afterwards, instead of gathering the unsure images first: the
    same logits without a data-dependent batch size, which a traced or ONNX export needs.
    """
    mode = tta_mode(mode)
    every_image = below is None or mode == "none"
    if every_image or static_shapes:
        views = tta_views(x, mode)
        plain = forward(views[0][0]).float()  # (B, K): the first view is the image itself
        total = plain * views[0][1]
        for view, weight in views[1:]:
            total = total + forward(view).float() * weight
        if every_image:
            return total
        unsure_rows = torch.softmax(plain, dim=1).amax(dim=1, keepdim=True) < below  # (B, 1)
        return torch.where(unsure_rows, total, plain)
    plain = forward(x).float()  # (B, K): the first view is the image itself
    unsure = (torch.softmax(plain, dim=1).amax(dim=1) < below).nonzero().squeeze(1)  # (U,)
    if len(unsure) == 0:
        return plain
    views = tta_views(x.index_select(0, unsure), mode)  # the views of the unsure images only
    total = plain.index_select(0, unsure) * views[0][1]
    for view, weight in views[1:]:
        total = total + forward(view).float() * weight
    return plain.index_copy(0, unsure, total)


__all__ = ["TTA_MODES", "shift_reflect", "tta_logits", "tta_mode", "tta_views"]
