"""``load_dataset``: find a dataset's files, decode them once, and serve them from the cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config.data import DEFAULT_MAX_IMAGE_PIXELS
from ..errors import DataError, DatasetNotFoundError
from . import cache
from .archive import extract_atomically, single_root
from .cifar import read_cifar_folder, read_cifar_tar
from .idx import idx_source_files, read_idx_folder
from .imagefolder import read_image_folder, target_size
from .locations import cache_root, resolve_data_dir
from .registry import SPECS, DatasetSpec, lookup

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass
class RawDataset:
    """A decoded dataset: uint8 images (N, H, W, C) and int64 labels, as stored on disk.

    Arrays loaded from the cache are read-only memory maps (plain ``np.ndarray`` views);
    copy one before writing into it.
    """

    name: str
    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray | None  # (M, H, W, C) uint8
    y_test: np.ndarray | None  # (M,) int64, None when the test set is unlabelled
    test_ids: list[str] | None
    class_names: list[str]
    source: Path
    fingerprint: str
    skipped_corrupt: int = 0
    cache_dir: Path | None = field(default=None, compare=False)


@dataclass
class Source:
    """Where a dataset was found and how to read it."""

    name: str
    kind: str  # "cifar-folder", "cifar-tar", "idx", "imagefolder", "imagefolder-tar"
    path: Path
    files: list[Path]  # the files whose identity keys the cache
    spec: DatasetSpec | None = None
    strict: bool = False  # check the official counts (named datasets only)


def _not_found(spec: DatasetSpec, data_dir: Path) -> DatasetNotFoundError:
    folder = data_dir / spec.folder
    files = ", ".join(spec.expected_files)
    alt = ""
    if spec.archive:
        where = data_dir if spec.archive_in_parent else folder
        alt = f" (or the archive {spec.archive} in {where})"
    how = (
        f"Download it with `trainlab data fetch {spec.name}`."
        if spec.downloads
        else f"{spec.note} Then run `trainlab data fetch {spec.name}` to check where it goes."
    )
    return DatasetNotFoundError(
        f"dataset {spec.name!r} not found: expected {files} in {folder}{alt}. {how} "
        "Use --data-dir or $TRAINLAB_DATA to point at another data folder."
    )


def _locate_named(spec: DatasetSpec, data_dir: Path) -> Source:
    folder = data_dir / spec.folder
    if spec.kind == "cifar":
        files = [folder / f for f in spec.expected_files]
        if all(f.is_file() for f in files):
            return Source(spec.name, "cifar-folder", folder, files, spec, strict=True)
        for tar in (data_dir / str(spec.archive), folder / str(spec.archive)):
            if tar.is_file():
                return Source(spec.name, "cifar-tar", tar, [tar], spec, strict=True)
        if folder.is_dir():
            missing = [f.name for f in files if not f.is_file()]
            raise DatasetNotFoundError(
                f"{folder}: incomplete CIFAR-10 folder, missing {', '.join(missing)}. "
                f"Download it again with `trainlab data fetch {spec.name}`."
            )
        raise _not_found(spec, data_dir)
    if spec.kind == "idx":
        if not folder.is_dir():
            raise _not_found(spec, data_dir)
        try:
            files = idx_source_files(folder)
        except DatasetNotFoundError as exc:
            raise DatasetNotFoundError(
                f"{exc} Expected {', '.join(spec.expected_files)} in {folder}. "
                f"Download them with `trainlab data fetch {spec.name}`."
            ) from exc
        return Source(spec.name, "idx", folder, files, spec, strict=True)
    # image folder datasets: loose train/ (and test/) or the archive inside the folder
    if (folder / "train").is_dir():
        return Source(spec.name, "imagefolder", folder, cache.walk_files(folder), spec, True)
    for tar in (folder / str(spec.archive), data_dir / str(spec.archive)):
        if tar.is_file():
            return Source(spec.name, "imagefolder-tar", tar, [tar], spec, strict=True)
    raise _not_found(spec, data_dir)


def _strip_archive_suffix(name: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _locate_path(text: str, data_dir: Path) -> Source:
    path = Path(text).expanduser()
    if not path.exists() and not path.is_absolute():
        path = data_dir / text
    if not path.exists():
        raise DatasetNotFoundError(
            f"{text!r} is neither a known dataset ({', '.join(sorted(SPECS))}) nor an existing "
            f"path (looked in {Path.cwd()} and {data_dir})"
        )
    path = path.resolve()
    name = _strip_archive_suffix(path.name)
    if path.is_file():
        if not path.name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise DataError(f"{path}: not a folder or a .tar.gz archive of an image folder")
        if name == "cifar-10-python":
            return Source("cifar10", "cifar-tar", path, [path], lookup("cifar10"))
        return Source(name, "imagefolder-tar", path, [path])
    if (path / "data_batch_1").is_file():
        spec = lookup("cifar10")
        assert spec is not None
        files = [path / f for f in spec.expected_files if (path / f).is_file()]
        return Source(name, "cifar-folder", path, files, spec)
    if any(path.glob("train-images*idx3-ubyte*")):
        spec = next((s for s in SPECS.values() if s.kind == "idx" and s.folder == path.name), None)
        return Source(name, "idx", path, idx_source_files(path), spec or lookup("mnist"))
    archives = [p for p in path.iterdir() if p.name.lower().endswith(_ARCHIVE_SUFFIXES)]
    if not (path / "train").is_dir() and len(archives) == 1:
        # a folder holding just the archive, like cats-vs-dogs/cats-vs-dogs.tar.gz
        return Source(name, "imagefolder-tar", archives[0], [archives[0]])
    return Source(name, "imagefolder", path, cache.walk_files(path))


def locate(name_or_path: str, data_dir: str | Path | None = None) -> Source:
    """Resolve a dataset name (or alias) or a path to a :class:`Source`."""
    root = resolve_data_dir(data_dir)
    spec = lookup(name_or_path)
    if spec is not None:
        return _locate_named(spec, root)
    return _locate_path(name_or_path, root)


def resize_array(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W, C) uint8 images bilinearly to (N, size[0], size[1], C) with PIL."""
    if x.shape[1:3] == size:
        return x
    out = np.empty((x.shape[0], size[0], size[1], x.shape[3]), dtype=np.uint8)
    for i, img in enumerate(x):
        pil = Image.fromarray(img[..., 0] if x.shape[3] == 1 else img)
        arr = np.asarray(pil.resize((size[1], size[0]), Image.Resampling.BILINEAR))
        out[i] = arr[..., None] if x.shape[3] == 1 else arr
    return out


def _extraction_folder(src: Source) -> Path:
    """Where an image-folder archive is extracted: under the cache (the data folder may be
    read-only), keyed by the archive's identity so a changed archive is extracted afresh.

    Raises:
        DataError: the cache folder cannot be created or written.
    """
    key = cache.digest(cache.source_identity([src.path]))
    try:
        extracted = cache_root() / "extracted"
        extracted.mkdir(exist_ok=True)
    except OSError as exc:
        where = exc.filename or os.environ.get("TRAINLAB_CACHE") or "the cache folder"
        raise DataError(
            f"{where}: cannot extract {src.path} into the cache folder ({exc.strerror or exc}); "
            "set TRAINLAB_CACHE to a writable folder, or extract the archive yourself and give "
            "the extracted folder as data.dataset"
        ) from None
    return extracted / f"{src.name}-{key}"


def _decode(
    src: Source, resize: tuple[int, int] | None, skip_corrupt: bool, max_image_pixels: int
) -> dict[str, Any]:
    if src.kind in ("cifar-folder", "cifar-tar"):
        reader = read_cifar_folder if src.kind == "cifar-folder" else read_cifar_tar
        arrays = reader(src.path, strict_counts=src.strict)
    elif src.kind == "idx":
        names = list(src.spec.class_names) if src.spec else [str(i) for i in range(10)]
        arrays = read_idx_folder(src.path, names)
    else:
        root = src.path
        if src.kind == "imagefolder-tar":
            root = single_root(extract_atomically(src.path, _extraction_folder(src)))
        else:
            root = single_root(root)
        return read_image_folder(
            root, resize=resize, skip_corrupt=skip_corrupt, max_image_pixels=max_image_pixels
        )
    if resize is not None:
        arrays["x_train"] = resize_array(arrays["x_train"], resize)
        arrays["x_test"] = resize_array(arrays["x_test"], resize)
    arrays.setdefault("test_ids", None)
    arrays.setdefault("skipped_corrupt", 0)
    return arrays


def _check_expected(src: Source, arrays: dict[str, Any]) -> None:
    """Named datasets must hold their documented counts (catches a wrong or partial copy)."""
    spec = src.spec
    if not (src.strict and spec) or arrays.get("skipped_corrupt"):
        return
    n_train = len(arrays["y_train"])
    n_test = 0 if arrays["x_test"] is None else len(arrays["x_test"])
    if (n_train, n_test) != (spec.train_count, spec.test_count):
        raise DataError(
            f"{src.path}: {n_train} train / {n_test} test images, expected "
            f"{spec.train_count:,} / {spec.test_count:,} for {spec.name}"
        )


def _cache_options(
    src: Source, size: tuple[int, int] | None, skip_corrupt: bool, max_image_pixels: int
) -> dict[str, Any]:
    """The load options that change the decoded arrays, so they key the cache and the fingerprint."""
    options: dict[str, Any] = {"resize": list(size) if size else None, "skip_corrupt": bool(skip_corrupt)}
    if src.kind.startswith("imagefolder") and max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS:
        # Only a changed limit keys the cache (it decides which files are kept), so the
        # fingerprints of datasets read with the default stay what they were.
        options["max_image_pixels"] = int(max_image_pixels)
    return options


def _decode_and_store(
    src: Source,
    entry: Path | None,
    size: tuple[int, int] | None,
    skip_corrupt: bool,
    max_image_pixels: int,
    options: dict[str, Any],
) -> RawDataset:
    """Decode ``src``, check its counts, and store the arrays in the cache ``entry`` (None: no cache)."""
    decoded = _decode(src, size, skip_corrupt, max_image_pixels)
    _check_expected(src, decoded)
    fingerprint = cache.digest(src.name, src.kind, cache.content_digest(decoded), options)
    meta = {
        "name": src.name,
        "class_names": list(decoded["class_names"]),
        "test_ids": decoded["test_ids"],
        "skipped_corrupt": int(decoded["skipped_corrupt"]),
        "source": str(src.path),
        "fingerprint": fingerprint,
        "options": options,
    }
    stored = entry is not None and cache.store_entry(entry, decoded, meta)
    return _raw_dataset(src, decoded, meta, fingerprint, entry if stored else None)


def _raw_dataset(src: Source, arrays: Mapping[str, Any], meta: Mapping[str, Any], fingerprint: str,
                 cache_dir: Path | None) -> RawDataset:
    """The dataset of decoded (or cached) ``arrays`` and their cache ``meta``."""
    return RawDataset(
        name=src.name,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        test_ids=meta["test_ids"],
        class_names=list(meta["class_names"]),
        source=src.path,
        fingerprint=fingerprint,
        skipped_corrupt=int(meta["skipped_corrupt"]),
        cache_dir=cache_dir,
    )


def load_dataset(
    name_or_path: str,
    data_dir: str | Path | None = None,
    *,
    resize: int | tuple[int, int] | None = None,
    skip_corrupt: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> RawDataset:
    """Load a dataset by name (cifar10, mnist, fashion-mnist, cats-vs-dogs) or path.

    The first load decodes the source files and caches uint8 arrays under ``cache_root()``;
    later loads memory-map the cache (well under a second) until a source file changes.

    Args:
        name_or_path: a known name or alias, or a path to an image folder or a ``.tar.gz`` of
            one (relative paths are also tried under the data folder).
        data_dir: the data folder. Default ``$TRAINLAB_DATA`` or ``~/.cache/trainlab/data``.
        resize: an int (square) or (height, width) to resize every image to, bilinear.
            Default None (images must then all have the same size).
        skip_corrupt: leave unreadable images out (counted in ``skipped_corrupt``) instead of
            raising CorruptDataError. Default False.
        max_image_pixels: an image-folder file with more pixels (width x height) is refused
            before it is decoded (ImageTooLargeError), or skipped with ``skip_corrupt``.
            Default Pillow's limit, 89,478,485.
    """
    src = locate(name_or_path, data_dir)
    size = target_size(resize)
    options = _cache_options(src, size, skip_corrupt, max_image_pixels)
    identity = cache.source_identity(src.files)
    # The cache key is cheap (paths, sizes, mtimes); the fingerprint a run records is the
    # decoded content's, so data copied to another folder or machine (new mtimes) still
    # resumes, while any changed pixel or label refuses to.
    key = cache.digest(cache.CACHE_VERSION, src.kind, str(src.path), identity, options)
    try:
        entry: Path | None = cache.entry_dir(src.name, key)
    except OSError:
        entry = None  # no writable cache: decode every time
    hit = cache.load_entry(entry) if entry is not None else None
    if hit is not None:
        arrays, meta = hit
        return _raw_dataset(src, arrays, meta, meta["fingerprint"], entry)
    return _decode_and_store(src, entry, size, skip_corrupt, max_image_pixels, options)


__all__ = ["RawDataset", "Source", "load_dataset", "locate", "resize_array"]
