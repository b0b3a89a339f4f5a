"""The files of ``trainlab predict``: find the images of a folder, decode them as training
decoded its images, and write the submission CSV and its list of skipped files.

Images are decoded with the image-folder reader's own helpers
(:func:`trainlab.data.imagefolder.decode_image`, :func:`~trainlab.data.imagefolder.open_image`):
the same mode conversion (RGB, or 8-bit grayscale for a one-channel model), the same
``data.max_image_pixels`` limit, and the same bilinear resize that ``data.resize`` applies
at training time, which is also what ``--resize`` uses.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainlab.data.imagefolder import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    ImageTooLargeError,
    decode_image,
    natural_key,
    open_image,
    target_size,
)
from trainlab.errors import CorruptDataError, DataError
from trainlab.io import atomic_write_text

#: Appended to the CSV's name for the list of the files ``--skip-corrupt`` left out.
SKIPPED_SUFFIX = ".skipped.txt"
# What Pillow raises on a file it cannot decode (as the image-folder reader catches it).
_UNREADABLE = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def image_id(path: Path, root: Path) -> str:
    """The submission id of ``path``: its path relative to ``root`` without the extension, with
    ``/`` separators (``cats/12`` for ``root/cats/12.jpg``; a file directly in ``root``: its stem)."""
    return path.relative_to(root).with_suffix("").as_posix()


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` and its subfolders, in natural order (``2.jpg`` before
    ``10.jpg``, folder by folder), hidden files and folders left out.

    Symbolic links to folders are not followed (a link to a parent would never end); links
    to files are read.

    Raises:
        DataError: the folder does not exist, holds no images, or two files share an id
            (:func:`image_id`: the same relative path but for the extension).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; --images takes a folder of image files")
    files: list[Path] = []
    for current, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # pruned in place: os.walk skips them
        base = Path(current)
        files.extend(base / name for name in names
                     if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
                     and (base / name).is_file())
    if not files:
        raise DataError(f"{root}: no image files ({'/'.join(sorted(IMAGE_EXTENSIONS))}) in this folder "
                        "or its subfolders")
    files.sort(key=lambda p: [natural_key(part) for part in p.relative_to(root).parts])
    seen: dict[str, Path] = {}
    for path in files:
        key = image_id(path, root)
        if key in seen:
            raise DataError(f"{path} and {seen[key]} have the same id {key!r}; rename one of them")
        seen[key] = path
    return files


def read_image(path: Path, input_shape: tuple[int, int, int], size: tuple[int, int] | None,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode one file to uint8 (H, W, C) for a model of ``input_shape`` (C, H, W), resized
    bilinearly to ``size`` (H, W) when given, as training decoded its images.

    Raises:
        ImageTooLargeError: the file is over ``max_pixels`` pixels.
        OSError, UnidentifiedImageError, ValueError, SyntaxError: Pillow cannot decode it.
        DataError: it decodes to another size than the model's (and ``size`` is None).
    """
    channels, height, width = input_shape
    if channels == 3:
        arr = decode_image(path, size, max_pixels)  # (H, W, 3), exactly the training reader
    else:
        with open_image(path, max_pixels) as im:
            im.load()
            gray = im.convert("L")
        if size is not None and gray.size != (size[1], size[0]):
            gray = gray.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # as decode_image resizes
        arr = np.asarray(gray, dtype=np.uint8)[..., None]  # (H, W, 1)
    if arr.shape[:2] != (height, width):
        raise DataError(
            f"{path}: image is {arr.shape[1]}x{arr.shape[0]} (WxH) but the run was trained on "
            f"{width}x{height} images and its config does not resize (data.resize is null); pass --resize "
            f"(resize=True) to resize them to {width}x{height} bilinearly as training resizes, or resize "
            f"the images yourself, or train a run with data.resize"
        )
    return arr


@dataclass
class ReadImages:
    """What :func:`read_image_files` read: the images, the files they came from, the files left out.

    Attributes:
        images: uint8 (N, H, W, C), one per file of ``kept``.
        kept: the files decoded, in the order given.
        skipped: ``(file, reason)`` of each file left out, in the order given.
    """

    images: np.ndarray
    kept: list[Path]
    skipped: list[tuple[Path, str]]


def read_image_files(files: Sequence[Path], input_shape: tuple[int, int, int], size: tuple[int, int] | None,
                     max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, *, skip_corrupt: bool = False) -> ReadImages:
    """Decode ``files`` for a model of ``input_shape`` (C, H, W) (see :func:`read_image`).

    With ``skip_corrupt``, unreadable files and files over ``max_pixels`` are left out and
    listed with the reason; an image of another size is refused all the same (it is not
    damaged: ``size`` is the cure).

    Raises:
        CorruptDataError: without ``skip_corrupt``, the first unreadable file (named).
        ImageTooLargeError: without ``skip_corrupt``, the first file over ``max_pixels``.
        DataError: an image of another size than the model's, ``size`` being None.
    """
    channels, height, width = input_shape
    images = np.empty((len(files), height, width, channels), dtype=np.uint8)  # (N, H, W, C)
    kept: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in files:
        try:
            arr = read_image(path, input_shape, size, max_pixels)
        except ImageTooLargeError as exc:
            if not skip_corrupt:
                raise ImageTooLargeError(f"{exc}; trainlab predict: --skip-corrupt leaves such files out") from None
            skipped.append((path, str(exc).removeprefix(f"{path}: ")))
            continue
        except _UNREADABLE as exc:
            reason = f"corrupt or unreadable image ({type(exc).__name__}: {exc})"
            if not skip_corrupt:
                raise CorruptDataError(f"{path}: {reason}; fix or remove it, or pass --skip-corrupt "
                                       "(skip_corrupt=True) to leave such files out") from None
            skipped.append((path, reason))
            continue
        images[len(kept)] = arr
        kept.append(path)
    return ReadImages(images[: len(kept)], kept, skipped)


def read_images(files: list[Path], input_shape: tuple[int, int, int],
                resize: int | tuple[int, int] | None,
                max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode ``files`` to uint8 (N, H, W, C) as training decoded its images, resized to
    ``resize`` (a ``data.resize`` value: an int for a square, or (H, W)) when given.

    Raises:
        ImageTooLargeError: a file over ``max_pixels`` pixels (the run's data.max_image_pixels).
        CorruptDataError: a file that cannot be decoded (named).
        DataError: an image whose size differs from training's and ``resize`` is None.
    """
    return read_image_files(files, input_shape, target_size(resize), max_pixels).images


def write_submission(out: Path, ids: Sequence[str], predicted: np.ndarray, probabilities: np.ndarray | None,
                     class_names: Sequence[str], label_names: bool) -> list[str]:
    """Write ``id,label[,prob_<class>...]`` to ``out`` atomically; returns the columns.

    Args:
        out: the CSV file.
        ids: one id per row.
        predicted: class index (N,) per row.
        probabilities: (N, K) to write as ``prob_<class>`` columns (6 decimals), or None.
        class_names: the K class names (``csv`` quotes a name holding a comma or a quote).
        label_names: write the class name as the label instead of its index.
    """
    columns = ["id", "label"] + ([f"prob_{name}" for name in class_names] if probabilities is not None else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for i, (key, k) in enumerate(zip(ids, predicted, strict=True)):
        label = class_names[int(k)] if label_names else int(k)
        extra = [f"{p:.6f}" for p in probabilities[i]] if probabilities is not None else []
        writer.writerow([key, label, *extra])
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, buffer.getvalue())
    return columns


def skipped_file(out: Path) -> Path:
    """Where the files left out of the CSV ``out`` are listed: ``<out>.skipped.txt``."""
    return out.with_name(out.name + SKIPPED_SUFFIX)


def write_skipped(out: Path, skipped: Sequence[tuple[Path, str]]) -> Path | None:
    """List ``skipped`` (``path<TAB>reason`` a line) beside the CSV ``out``; returns the file,
    or None when nothing was skipped, and then removes such a list left by an earlier
    prediction into ``out`` (it would describe another CSV)."""
    target = skipped_file(out)
    if not skipped:
        target.unlink(missing_ok=True)
        return None
    # Tabs and newlines in a reason would break the one-line-per-file format.
    lines = [f"{path}\t{' '.join(reason.split())}\n" for path, reason in skipped]
    atomic_write_text(target, "".join(lines))
    return target


__all__ = [
    "SKIPPED_SUFFIX",
    "ReadImages",
    "image_id",
    "list_images",
    "read_image",
    "read_image_files",
    "read_images",
    "skipped_file",
    "write_skipped",
    "write_submission",
]
