"""``dataset_shape``: how big a dataset is (counts, image shape, classes) without decoding it.

The memory estimate of a run config needs the size of its data before anything is read:
a named dataset's size is in its registry entry, an image folder's is its file count and
the resize (else the first image's header), and an image-folder archive's comes from
listing its members, read but not extracted.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from PIL import UnidentifiedImageError

from ..errors import DataError
from .archive import single_root
from .imagefolder import IMAGE_EXTENSIONS, image_size, scan_folder, target_size
from .loader import Source, locate
from .registry import lookup

#: Files whose header is tried for an image folder's size when the first ones are unreadable.
_HEADERS_TRIED = 20


@dataclass(frozen=True)
class DatasetShape:
    """The size of a dataset as it will be decoded.

    Attributes:
        name: the dataset's name.
        train: images of the training set, before the validation hold-out.
        test: images of the test set (0 without one).
        image: (H, W, C) of one decoded image, after the resize.
        classes: number of classes.
    """

    name: str
    train: int
    test: int
    image: tuple[int, int, int]
    classes: int

    @property
    def pixels(self) -> int:
        """Values of one image (H * W * C)."""
        h, w, c = self.image
        return h * w * c


def dataset_shape(
    name_or_path: str, data_dir: str | Path | None = None, resize: int | tuple[int, int] | None = None
) -> DatasetShape | None:
    """The size of ``name_or_path`` as ``load_dataset`` would decode it, or None when it
    cannot be told without decoding (a path that is missing, or a folder that is malformed:
    the run itself then says what is wrong). A named dataset's size comes from the registry,
    present on disk or not.

    A named dataset (and a folder of a known format) counts its official number of images,
    so a subset of one is overestimated.
    """
    size = target_size(resize)
    spec = lookup(name_or_path)
    if spec is None:
        try:
            source = locate(name_or_path, data_dir)
        except (DataError, OSError):
            return None
        spec = source.spec
        if source.kind.startswith("imagefolder"):
            return _folder_shape(source, size)
    if spec is None:
        return None
    h, w, c = spec.image_shape
    if size is not None:
        h, w = size
    return DatasetShape(spec.name, spec.train_count, spec.test_count, (h, w, c), len(spec.class_names))


def _folder_shape(source: Source, size: tuple[int, int] | None) -> DatasetShape | None:
    if source.kind == "imagefolder-tar":
        return _archive_shape(source, size)
    try:
        layout = scan_folder(single_root(source.path))
    except (DataError, OSError):
        return None
    for path, _ in layout.train[: 1 if size else _HEADERS_TRIED]:
        try:
            h, w = size or image_size(path)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            continue
        return DatasetShape(source.name, len(layout.train), len(layout.test), (h, w, 3), len(layout.class_names))
    return None


def _archive_shape(source: Source, size: tuple[int, int] | None) -> DatasetShape | None:
    """Count the images of an image-folder archive from its member names (train/<class>/file,
    test/file or test/<class>/file, under an optional top folder); read one header."""
    classes: set[str] = set()
    train = test = 0
    hw = size
    try:
        with tarfile.open(source.path, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 2 or parts[-1].startswith("."):
                    continue
                if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if len(parts) >= 3 and parts[-3] == "train":
                    classes.add(parts[-2])
                    train += 1
                    if hw is None:
                        hw = _member_size(tar.extractfile(member))
                elif parts[-2] == "test" or (len(parts) >= 3 and parts[-3] == "test"):
                    test += 1
    except (tarfile.TarError, OSError, EOFError):
        return None
    if not train or hw is None:
        return None
    return DatasetShape(source.name, train, test, (hw[0], hw[1], 3), len(classes))


def _member_size(handle: IO[bytes] | None) -> tuple[int, int] | None:
    if handle is None:
        return None
    try:
        with handle:
            return image_size(handle)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


__all__ = ["DatasetShape", "dataset_shape"]
