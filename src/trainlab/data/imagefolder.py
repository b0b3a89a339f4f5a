"""Reader for image folders: ``train/<class>/*.jpg|png|...`` and an optional ``test/``.

``test/`` is either labelled (``test/<class>/...`` with the training class names) or flat
and unlabelled (Kaggle style: the file stems are the ids of a submission).

Decoding is serial on purpose: on small images (64x64 JPEGs) PIL's per-image Python overhead
dominates, so a thread pool measured no faster and a process pool slower on 2 cores; and the
decoded arrays are cached, so this runs once per dataset.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config.data import DEFAULT_MAX_IMAGE_PIXELS
from ..errors import CorruptDataError, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})


class ImageTooLargeError(DataError):
    """An image file claims more pixels than ``data.max_image_pixels`` (a decompression bomb)."""


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``"2"`` before ``"10"`` (numbers compared as numbers)."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", text) if tok]  # fmt: skip


def _images_in(folder: Path) -> list[Path]:
    files = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]  # fmt: skip
    return sorted(files, key=lambda p: natural_key(p.name))


def _subdirs(folder: Path) -> list[Path]:
    dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: natural_key(p.name))


@dataclass
class FolderLayout:
    """The files of an image folder, found without decoding anything."""

    root: Path
    class_names: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]  # label -1 when the test set is unlabelled
    test_labelled: bool
    has_test: bool


def scan_folder(root: Path) -> FolderLayout:
    """Find classes and files; empty or missing class folders raise DataError naming them."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(
            f"{root}: no train/ folder; an image folder needs train/<class>/*.jpg|png "
            "(and optionally test/)"
        )
    class_dirs = _subdirs(train_dir)
    if not class_dirs:
        raise DataError(f"{train_dir}: no class folders (expected train/<class>/<image files>)")
    class_names = [d.name for d in class_dirs]
    train: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        files = _images_in(class_dir)
        if not files:
            raise DataError(
                f"{class_dir}: empty class folder (no {'/'.join(sorted(IMAGE_EXTENSIONS))} "
                "files); remove it or add its images"
            )
        train.extend((f, label) for f in files)

    test: list[tuple[Path, int]] = []
    test_dir = root / "test"
    labelled = False
    if test_dir.is_dir():
        subdirs, loose = _subdirs(test_dir), _images_in(test_dir)
        if subdirs and loose:
            raise DataError(
                f"{test_dir}: holds both class folders and loose images; use test/<class>/ for "
                "a labelled test set or only loose files for an unlabelled one"
            )
        if subdirs:
            labelled = True
            index = {name: i for i, name in enumerate(class_names)}
            for sub in subdirs:
                if sub.name not in index:
                    raise DataError(
                        f"{sub}: test class {sub.name!r} is not a training class "
                        f"({', '.join(class_names)})"
                    )
                test.extend((f, index[sub.name]) for f in _images_in(sub))
        else:
            test = [(f, -1) for f in loose]
    return FolderLayout(root, class_names, train, test, labelled, test_dir.is_dir() and bool(test))


def target_size(resize: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """(H, W) from an int (square) or an (H, W) pair."""
    if resize is None:
        return None
    if isinstance(resize, int):
        return (resize, resize)
    h, w = resize
    return (int(h), int(w))


def _too_large(path: Path, what: str, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{path}: {what}, over the limit of {max_pixels:,} pixels (data.max_image_pixels); a file "
        "this large may be a decompression bomb: raise data.max_image_pixels if you trust it, or "
        "set data.skip_corrupt: true to leave such files out"
    )


@contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's module-wide decompression-bomb limit set to ``max_pixels`` (None: off) for one
    decode.

    Pillow warns past that limit and fails past twice it, in ``Image.open`` and while it
    decodes (a GIF frame); the warning is silenced because :func:`open_image` makes the
    decision itself. Decoding is serial, so setting the module-wide value does not race.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def image_size(file: Path | IO[bytes]) -> tuple[int, int]:
    """(height, width) of an image from its header alone; nothing is decoded, so no pixel limit.

    Raises:
        OSError, UnidentifiedImageError: the file is not an image Pillow can read.
    """
    with _pillow_limit(None), Image.open(file) as im:
        width, height = im.size
    return height, width


@contextmanager
def open_image(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Iterator[Image.Image]:
    """``Image.open(path)`` refused when its header claims more than ``max_pixels`` pixels.

    Use it as ``with open_image(path, limit) as im: im.load()``: the limit holds while the
    image decodes (Pillow checks GIF frames as it reads them).

    Raises:
        ImageTooLargeError: the image is over the limit (named, with its size).
    """
    try:
        with _pillow_limit(max_pixels):
            with _pillow_limit(None):  # the header only; the check below can then give the size
                im = Image.open(path)
            with im:
                width, height = im.size
                if width * height > max_pixels:
                    raise _too_large(path, f"image is {width}x{height} (WxH) = {width * height:,} pixels",
                                     max_pixels)
                yield im
    except Image.DecompressionBombError as exc:  # a frame past twice the limit, met while decoding
        raise _too_large(path, f"Pillow refused it ({exc})", max_pixels) from None


def decode_image(
    path: Path, size: tuple[int, int] | None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode one file to (H, W, 3) uint8 RGB, resized bilinearly to ``size`` (H, W) if given.

    Raises:
        ImageTooLargeError: the file's header claims more than ``max_pixels`` pixels (width x
            height); nothing is decoded then.
    """
    with open_image(path, max_pixels) as im:
        im.load()  # decode now, so a truncated file fails here rather than later
        rgb = im.convert("RGB")
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def decode_files(
    files: list[tuple[Path, int]],
    size: tuple[int, int] | None,
    *,
    skip_corrupt: bool,
    expected_shape: tuple[int, ...] | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[np.ndarray, np.ndarray, list[Path], int]:
    """Decode ``files``; return (images (N,H,W,3), labels (N,), kept paths, skipped count).

    With ``skip_corrupt``, unreadable files and files over ``max_pixels`` are left out and
    counted; otherwise the first one raises (CorruptDataError, ImageTooLargeError).
    """
    images: list[np.ndarray] = []
    labels: list[int] = []
    kept: list[Path] = []
    skipped = 0
    for path, label in files:
        try:
            arr = decode_image(path, size, max_pixels)
        except ImageTooLargeError:
            if skip_corrupt:
                skipped += 1
                continue
            raise
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            if skip_corrupt:
                skipped += 1
                continue
            raise CorruptDataError(
                f"{path}: corrupt or unreadable image ({type(exc).__name__}: {exc}); "
                "fix or delete it, or pass skip_corrupt=True to leave such files out"
            ) from exc
        if expected_shape is None:
            expected_shape = arr.shape
        elif arr.shape != expected_shape:
            raise DataError(
                f"{path}: image is {arr.shape[1]}x{arr.shape[0]} (WxH) but earlier images are "
                f"{expected_shape[1]}x{expected_shape[0]}; pass resize=<size> (e.g. resize=64) "
                "to load images of mixed sizes"
            )
        images.append(arr)
        labels.append(label)
        kept.append(path)
    if images:
        x = np.stack(images)  # (N, H, W, 3)
    else:
        h, w = (size if size else (expected_shape or (0, 0))[:2])
        x = np.zeros((0, h, w, 3), dtype=np.uint8)
    return x, np.asarray(labels, dtype=np.int64), kept, skipped


def read_image_folder(
    root: Path,
    *,
    resize: int | tuple[int, int] | None = None,
    skip_corrupt: bool = False,
    layout: FolderLayout | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> dict[str, Any]:
    """Decode an image folder into uint8 arrays (see the module docstring for the layout).

    A file over ``max_image_pixels`` pixels is refused like an unreadable one (skipped and
    counted with ``skip_corrupt``).
    """
    layout = layout or scan_folder(root)
    size = target_size(resize)
    x_train, y_train, _, skipped = decode_files(
        layout.train, size, skip_corrupt=skip_corrupt, max_pixels=max_image_pixels
    )
    if len(x_train) == 0:
        raise DataError(f"{root / 'train'}: no readable training images")
    for label, name in enumerate(layout.class_names):
        if not np.any(y_train == label):
            raise DataError(f"{root / 'train' / name}: every image of this class is corrupt")
    out: dict[str, Any] = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": None,
        "y_test": None,
        "test_ids": None,
        "class_names": layout.class_names,
    }
    if layout.has_test:
        x_test, y_test, kept, skipped_test = decode_files(
            layout.test, size, skip_corrupt=skip_corrupt, expected_shape=x_train.shape[1:],
            max_pixels=max_image_pixels,
        )
        skipped += skipped_test
        out["x_test"] = x_test
        if layout.test_labelled:
            out["y_test"] = y_test
        else:
            out["test_ids"] = [p.stem for p in kept]
    out["skipped_corrupt"] = skipped
    return out


__all__ = [
    "FolderLayout",
    "ImageTooLargeError",
    "decode_image",
    "image_size",
    "natural_key",
    "open_image",
    "read_image_folder",
    "scan_folder",
    "target_size",
]
