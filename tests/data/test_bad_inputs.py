"""Broken, hostile or missing inputs: each gives a clear error naming the file at fault."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from synthdata import idx_bytes, write_cifar, write_idx, write_image_folder

from trainlab.data import load_dataset
from trainlab.errors import (
    CorruptDataError,
    DataError,
    DatasetNotFoundError,
    UnsafeDataError,
)

pytestmark = pytest.mark.usefixtures("fresh_cache")


# ---- missing data -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion-mnist", "cats-vs-dogs"])
def test_missing_dataset_message(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and f"trainlab data fetch {name}" in msg
    expected = {"cifar10": "data_batch_1", "mnist": "train-images-idx3-ubyte.gz",
                "fashion-mnist": "t10k-labels-idx1-ubyte.gz",
                "cats-vs-dogs": "cats-vs-dogs.tar.gz"}[name]  # fmt: skip
    assert expected in msg


def test_missing_one_idx_file(tmp_path: Path) -> None:
    write_idx(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_unknown_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="neither a known dataset"):
        load_dataset("no-such-folder", tmp_path)


# ---- CIFAR pickles -------------------------------------------------------------------------


def test_tiny_cifar_folder_loads(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset(str(folder))
    assert ds.x_train.shape == (100, 32, 32, 3) and ds.x_test.shape == (20, 32, 32, 3)
    assert ds.class_names[1] == "automobile"
    # row layout: 1024 R, then G, then B values
    raw = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")[b"data"]
    assert np.array_equal(ds.x_train[0, :, :, 1].ravel(), raw[0, 1024:2048])


def test_tiny_cifar_fails_official_counts(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py")
    with pytest.raises(CorruptDataError, match="expected 50,000 / 10,000"):
        load_dataset("cifar10", tmp_path)


def test_truncated_pickle(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CorruptDataError, match="data_batch_3"):
        load_dataset(str(folder))


def test_pickle_with_other_global_refused(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UnsafeDataError) as err:
        load_dataset(str(folder))
    assert "data_batch_2" in str(err.value)
    assert "system" in str(err.value)  # posix.system or os.system: the global is named
    assert not marker.exists()


def test_pickle_labels_out_of_range(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    path = folder / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch[b"labels"][3] = 12
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(CorruptDataError, match=r"test_batch.*out of range"):
        load_dataset(str(folder))


def test_pickle_wrong_shape(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    path = folder / "data_batch_1"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch[b"data"] = batch[b"data"][:, :3000]
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(CorruptDataError, match=r"data_batch_1.*3072"):
        load_dataset(str(folder))


def test_cifar_tar_gz_read_directly(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    ds = load_dataset(str(archive))
    assert ds.x_train.shape == (100, 32, 32, 3)
    assert np.array_equal(ds.x_train, load_dataset(str(folder)).x_train)


# ---- IDX -----------------------------------------------------------------------------------


def test_tiny_idx_plain_and_gz(tmp_path: Path) -> None:
    a = load_dataset(str(write_idx(tmp_path / "a" / "mnist", gz=True)))
    b = load_dataset(str(write_idx(tmp_path / "b" / "mnist", gz=False)))
    assert a.x_train.shape == (30, 28, 28, 1) and np.array_equal(a.x_train, b.x_train)
    assert a.y_test.tolist() == list(np.arange(10))


def test_truncated_gzip(tmp_path: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte.gz.*gzip"):
        load_dataset("mnist", tmp_path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[20:60] = b"\xff" * 40
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_dataset("mnist", tmp_path)


def test_truncated_idx_size_mismatch(tmp_path: Path) -> None:
    folder = write_idx(tmp_path / "mnist", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte.*declares shape"):
        load_dataset("mnist", tmp_path)


def test_idx_bad_magic(tmp_path: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    labels = gzip.decompress((folder / "train-labels-idx1-ubyte.gz").read_bytes())
    # an images file where a labels file belongs
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + labels[4:]))
    with pytest.raises(CorruptDataError, match=r"train-labels-idx1-ubyte.gz.*bad magic"):
        load_dataset("mnist", tmp_path)


def test_idx_labels_out_of_range(tmp_path: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    bad = np.arange(30).astype(np.uint8)  # labels up to 29
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(bad)))
    with pytest.raises(CorruptDataError, match=r"train-labels.*out of range"):
        load_dataset("mnist", tmp_path)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    short = (np.arange(25) % 10).astype(np.uint8)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(short)))
    with pytest.raises(CorruptDataError, match=r"30 images but .* 25 labels"):
        load_dataset("mnist", tmp_path)


def test_tiny_mnist_fails_official_counts(tmp_path: Path) -> None:
    write_idx(tmp_path / "mnist")
    with pytest.raises(DataError, match="expected 60,000 / 10,000"):
        load_dataset("mnist", tmp_path)


# ---- image folders ----------------------------------------------------------------------


def test_image_folder_flat_test(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", n_test=12)
    ds = load_dataset(str(root))
    assert ds.name == "pets" and ds.class_names == ["cat", "dog"]
    assert ds.x_train.shape == (12, 16, 16, 3)  # grayscale files converted to RGB
    assert ds.y_test is None and ds.test_ids == [str(i) for i in range(1, 13)]  # natural order


def test_image_folder_labelled_test_and_resize(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", test="labelled")
    ds = load_dataset(str(root), resize=(8, 10))
    assert ds.x_train.shape == (12, 8, 10, 3) and ds.x_test.shape == (4, 8, 10, 3)
    assert ds.y_test.tolist() == [0, 0, 1, 1] and ds.test_ids is None


def test_relative_path_under_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_folder(tmp_path / "data" / "pets", test=None)
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("pets", tmp_path / "data")
    assert ds.source == (tmp_path / "data" / "pets").resolve() and ds.x_test is None


def test_mixed_shapes_suggest_resize(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", test=None)
    odd = root / "train" / "dog" / "3.dog.png"
    from PIL import Image

    Image.new("RGB", (20, 16)).save(odd)
    with pytest.raises(DataError) as err:
        load_dataset(str(root))
    assert "3.dog.png" in str(err.value) and "resize" in str(err.value)
    assert load_dataset(str(root), resize=16).x_train.shape == (12, 16, 16, 3)


def test_empty_class_folder(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets")
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match=r"train/bird.*empty class folder"):
        load_dataset(str(root))


def test_corrupt_image_named_or_skipped(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets")
    bad = root / "train" / "cat" / "2.cat.png"
    bad.write_bytes(bad.read_bytes()[:40])
    (root / "test" / "3.png").write_bytes(b"not an image at all")
    with pytest.raises(CorruptDataError, match=r"2\.cat\.png") as err:
        load_dataset(str(root))
    assert "skip_corrupt" in str(err.value)
    ds = load_dataset(str(root), skip_corrupt=True)
    assert ds.skipped_corrupt == 2
    assert ds.x_train.shape[0] == 11 and ds.test_ids == ["1", "2", "4", "5"]


# ---- tar archives ------------------------------------------------------------------------


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    """A .tar.gz holding a valid image folder plus one hostile ``member``."""
    src = write_image_folder(path.parent / "src")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "train", arcname="train")
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../evil.txt", tarfile.REGTYPE), ("/tmp/evil.txt", tarfile.REGTYPE),
     ("train/cat/link.png", tarfile.SYMTYPE), ("train/cat/hard.png", tarfile.LNKTYPE),
     ("train/cat/dev", tarfile.CHRTYPE)],
)  # fmt: skip
def test_tar_unsafe_member_refused(tmp_path: Path, session_cache: Path, name: str, kind: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path / "pets.tar.gz", member)
    with pytest.raises(UnsafeDataError) as err:
        load_dataset(str(archive))
    assert name in str(err.value)
    assert not (tmp_path / "evil.txt").exists()
    # nothing half-extracted is left for another process to pick up
    extracted = tmp_path / "cache" / "extracted"
    assert not extracted.exists() or not any(extracted.iterdir())


def test_tar_image_folder_with_top_folder(tmp_path: Path) -> None:
    src = write_image_folder(tmp_path / "pets")
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="pets")
    ds = load_dataset(str(archive))
    assert ds.name == "pets" and ds.x_train.shape == (12, 16, 16, 3) and len(ds.test_ids) == 5
    assert not (tmp_path / "train").exists()  # extracted into the cache, not beside the archive


def test_truncated_tar_gz(tmp_path: Path) -> None:
    src = write_image_folder(tmp_path / "pets")
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    archive.write_bytes(archive.read_bytes()[:-300])
    with pytest.raises(CorruptDataError, match=r"pets\.tar\.gz"):
        load_dataset(str(archive))
