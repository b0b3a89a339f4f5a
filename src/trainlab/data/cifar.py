"""Reader for CIFAR-10 "python version": pickled batches in a folder or in the official .tar.gz.

The batches are pickles, and unpickling runs code named by the file. A restricted unpickler
admits only the handful of NumPy/builtin globals a batch holds, so a hostile file is refused
before anything it names is imported or called.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import CorruptDataError, UnsafeDataError
from .registry import CIFAR_BATCHES


def _numpy_reconstruct() -> Callable[..., Any]:
    # NumPy 2 moved the module to numpy._core; old pickles still name numpy.core, and importing
    # numpy.core itself warns, so both names resolve to the new location.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _numpy_scalar() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return scalar


def _codecs_encode() -> Callable[..., Any]:
    # Python 3 writes bytes objects in protocol-2 pickles as _codecs.encode(text, "latin1").
    import _codecs

    return _codecs.encode


_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): _codecs_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` admits only the globals a CIFAR batch can hold."""

    def __init__(self, file: BinaryIO, *, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise UnsafeDataError(
                f"{self._source}: refused to unpickle global {module}.{name} "
                "(a CIFAR batch only holds NumPy arrays, lists and bytes); the file is not a "
                "CIFAR-10 batch or has been tampered with"
            )
        return factory()


def safe_unpickle(data: bytes, source: str) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; malformed input -> CorruptDataError."""
    try:
        return SafeUnpickler(io.BytesIO(data), source=source).load()
    except UnsafeDataError:
        raise
    except Exception as exc:  # pickle raises many types on truncated or garbled input
        raise CorruptDataError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt, delete it and download it again"
        ) from exc


def _key(d: dict[Any, Any], name: str) -> Any:
    # encoding="bytes" gives bytes keys for Python-2 pickles, str keys for Python-3 ones.
    for key in (name.encode(), name):
        if key in d:
            return d[key]
    raise KeyError(name)


def _parse_batch(obj: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one unpickled batch and return (images (N,32,32,3) uint8, labels (N,) int64)."""
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{source}: expected a dict, got {type(obj).__name__}")
    try:
        data = _key(obj, "data")
        labels = _key(obj, "labels")
    except KeyError as exc:
        raise CorruptDataError(f"{source}: missing key {exc.args[0]!r} in the batch") from exc
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise CorruptDataError(f"{source}: 'data' must be a 2-D uint8 array")
    if data.shape[1] != 3072:
        raise CorruptDataError(f"{source}: 'data' has shape {data.shape}, expected (N, 3072)")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != data.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise CorruptDataError(
            f"{source}: {y.shape[0] if y.ndim else 0} labels for {data.shape[0]} images"
        )
    if y.size and (y.min() < 0 or y.max() > 9):
        raise CorruptDataError(f"{source}: labels out of range 0..9 (min {y.min()}, max {y.max()})")
    # Rows are channel-major (1024 R, 1024 G, 1024 B); images are stored (N, H, W, C).
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(x), y.astype(np.int64)


def _parse_meta(obj: Any, source: str) -> list[str]:
    try:
        names = _key(obj, "label_names")
    except (KeyError, TypeError) as exc:
        raise CorruptDataError(f"{source}: no 'label_names' in the meta file") from exc
    out = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    if len(out) != 10:
        raise CorruptDataError(f"{source}: {len(out)} class names, expected 10")
    return out


def _assemble(read: Callable[[str], bytes], where: str) -> dict[str, Any]:
    """Read every batch through ``read(member_name)`` and validate the whole set."""
    xs, ys = [], []
    for name in CIFAR_BATCHES:
        x, y = _parse_batch(safe_unpickle(read(name), f"{where}/{name}"), f"{where}/{name}")
        xs.append(x)
        ys.append(y)
    x_test, y_test = _parse_batch(
        safe_unpickle(read("test_batch"), f"{where}/test_batch"), f"{where}/test_batch"
    )
    classes = _parse_meta(safe_unpickle(read("batches.meta"), f"{where}/batches.meta"),
                          f"{where}/batches.meta")  # fmt: skip
    x_train, y_train = np.concatenate(xs), np.concatenate(ys)
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "class_names": classes,
    }


def validate_full(arrays: dict[str, Any], where: str) -> None:
    """Check the official sizes: 50,000 train and 10,000 test rows, all 10 classes present."""
    n_train, n_test = len(arrays["y_train"]), len(arrays["y_test"])
    if (n_train, n_test) != (50_000, 10_000):
        raise CorruptDataError(
            f"{where}: {n_train} train / {n_test} test images, expected 50,000 / 10,000"
        )
    if len(np.unique(arrays["y_train"])) != 10:
        raise CorruptDataError(f"{where}: the training batches do not hold all 10 classes")


def read_cifar_folder(folder: Path, *, strict_counts: bool = True) -> dict[str, Any]:
    """Read ``cifar-10-batches-py/`` (any file missing -> CorruptDataError naming it)."""

    def read(name: str) -> bytes:
        path = folder / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CorruptDataError(f"{path}: cannot read ({exc.strerror or exc})") from exc

    arrays = _assemble(read, str(folder))
    if strict_counts:
        validate_full(arrays, str(folder))
    return arrays


def read_cifar_tar(archive: Path, *, strict_counts: bool = True) -> dict[str, Any]:
    """Read the batches straight out of ``cifar-10-python.tar.gz`` (nothing is extracted)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members: dict[str, tarfile.TarInfo] = {}
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and (base in CIFAR_BATCHES or base in ("test_batch", "batches.meta")):
                    members[base] = member

            def read(name: str) -> bytes:
                if name not in members:
                    raise CorruptDataError(f"{archive}: no member {name!r} in the archive")
                handle = tar.extractfile(members[name])
                assert handle is not None  # regular files always give a handle
                return handle.read()

            arrays = _assemble(read, str(archive))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptDataError(
            f"{archive}: truncated or corrupt archive ({type(exc).__name__}: {exc}); "
            "delete it and download it again"
        ) from exc
    if strict_counts:
        validate_full(arrays, str(archive))
    return arrays


__all__ = ["SafeUnpickler", "read_cifar_folder", "read_cifar_tar", "safe_unpickle"]
