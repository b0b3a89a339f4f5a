"""The named datasets trainlab knows: where they live under the data folder and where they come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DatasetNotFoundError


@dataclass(frozen=True)
class RemoteFile:
    """One official download: ``url`` is saved as ``filename`` and must hash to ``md5``."""

    filename: str
    url: str
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a named dataset."""

    name: str
    kind: str  # "cifar", "idx" or "imagefolder": which reader decodes it
    description: str
    folder: str  # the folder expected under the data dir
    expected_files: tuple[str, ...]  # what a user must place in ``folder`` (or an alternative)
    downloads: tuple[RemoteFile, ...] = ()
    archive: str | None = None  # an accepted archive in place of the folder
    archive_in_parent: bool = False  # True when the archive sits beside ``folder`` (CIFAR)
    train_count: int = 0
    test_count: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)  # (H, W, C)
    class_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

_MNIST_BASE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")

SPECS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        name="cifar10",
        kind="cifar",
        description="CIFAR-10: 60,000 32x32 colour images in 10 classes (python version).",
        folder="cifar-10-batches-py",
        expected_files=(*CIFAR_BATCHES, "test_batch", "batches.meta"),
        downloads=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
        archive="cifar-10-python.tar.gz",
        archive_in_parent=True,
        train_count=50_000,
        test_count=10_000,
        image_shape=(32, 32, 3),
        class_names=_CIFAR_CLASSES,
        aliases=("cifar-10",),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        kind="idx",
        description="MNIST: 70,000 28x28 grayscale handwritten digits (IDX files).",
        folder="mnist",
        expected_files=_IDX_FILES,
        downloads=(
            RemoteFile(_IDX_FILES[0], _MNIST_BASE + _IDX_FILES[0], "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile(_IDX_FILES[1], _MNIST_BASE + _IDX_FILES[1], "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile(_IDX_FILES[2], _MNIST_BASE + _IDX_FILES[2], "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile(_IDX_FILES[3], _MNIST_BASE + _IDX_FILES[3], "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        train_count=60_000,
        test_count=10_000,
        image_shape=(28, 28, 1),
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        kind="idx",
        description="Fashion-MNIST: 70,000 28x28 grayscale Zalando article images (IDX files).",
        folder="fashion-mnist",
        expected_files=_IDX_FILES,
        downloads=(
            RemoteFile(_IDX_FILES[0], _FASHION_BASE + _IDX_FILES[0], "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile(_IDX_FILES[1], _FASHION_BASE + _IDX_FILES[1], "25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile(_IDX_FILES[2], _FASHION_BASE + _IDX_FILES[2], "bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile(_IDX_FILES[3], _FASHION_BASE + _IDX_FILES[3], "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        train_count=60_000,
        test_count=10_000,
        image_shape=(28, 28, 1),
        class_names=_FASHION_CLASSES,
        aliases=("fashion_mnist", "fashionmnist"),
    ),
    "cats-vs-dogs": DatasetSpec(
        name="cats-vs-dogs",
        kind="imagefolder",
        description=(
            "Cats vs Dogs (IFT6135 H19 Kaggle): 19,998 labelled 64x64 JPEGs, 4,999 unlabelled test."
        ),
        folder="cats-vs-dogs",
        expected_files=("cats-vs-dogs.tar.gz",),
        archive="cats-vs-dogs.tar.gz",
        train_count=19_998,
        test_count=4_999,
        image_shape=(64, 64, 3),
        class_names=("cat", "dog"),
        aliases=("cats_vs_dogs", "catsvsdogs"),
        note=(
            "No official public download exists: place cats-vs-dogs.tar.gz (train/cat, train/dog, "
            "test/) or the extracted train/ and test/ folders in the folder."
        ),
    ),
}

_ALIASES: dict[str, str] = {
    alias: spec.name for spec in SPECS.values() for alias in (spec.name, *spec.aliases)
}


def lookup(name: str) -> DatasetSpec | None:
    """Return the spec of a known dataset name or alias (case-insensitive), else None."""
    key = _ALIASES.get(name.strip().lower())
    return SPECS[key] if key else None


def get_spec(name: str) -> DatasetSpec:
    """Like :func:`lookup` but raises DatasetNotFoundError listing the known names."""
    spec = lookup(name)
    if spec is None:
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(SPECS))} "
            "(or give a path to an image folder or a .tar.gz of one)"
        )
    return spec


def list_datasets() -> list[dict[str, Any]]:
    """Describe every known dataset: name, description, folder expected, URLs, counts, image shape."""
    rows: list[dict[str, Any]] = []
    for spec in SPECS.values():
        rows.append(
            {
                "name": spec.name,
                "aliases": list(spec.aliases),
                "description": spec.description,
                "folder": spec.folder,
                "expected_files": list(spec.expected_files),
                "archive": spec.archive,
                "urls": [d.url for d in spec.downloads],
                "md5": {d.filename: d.md5 for d in spec.downloads},
                "train_count": spec.train_count,
                "test_count": spec.test_count,
                "image_shape": list(spec.image_shape),
                "num_classes": len(spec.class_names),
                "note": spec.note,
            }
        )
    return rows


__all__ = ["SPECS", "DatasetSpec", "RemoteFile", "get_spec", "list_datasets", "lookup"]
