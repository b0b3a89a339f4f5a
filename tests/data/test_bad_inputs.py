"""Broken, hostile or missing inputs: each gives a clear error naming the file at fault."""

from __future__ import annotations

import errno
import gzip
import inspect
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from synthdata import idx_bytes, write_cifar, write_idx, write_image_folder

from trainlab.config import DataConfig
from trainlab.config.data import DEFAULT_MAX_IMAGE_PIXELS
from trainlab.data import load_dataset, prepare_data
from trainlab.data.imagefolder import ImageTooLargeError
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


def _decoded(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One file as the loader documents it: PIL's RGB conversion, resized bilinearly to (H, W)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if size is not None:
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def _assert_rows(x: np.ndarray, files: list[Path], size: tuple[int, int] | None = None) -> None:
    """Row i of ``x`` is the decoded ``files[i]``: pixels and order both checked."""
    assert len(x) == len(files)
    for row, path in zip(x, files, strict=True):
        assert np.array_equal(row, _decoded(path, size)), path


def test_image_folder_flat_test(tmp_path: Path) -> None:
    # 11 files a class, so natural order ("2" before "10") differs from plain string order
    root = write_image_folder(tmp_path / "pets", per_class=11, n_test=12)
    ds = load_dataset(str(root))
    assert ds.name == "pets" and ds.class_names == ["cat", "dog"]
    assert ds.x_train.shape == (22, 16, 16, 3)  # grayscale files converted to RGB
    assert ds.y_test is None and ds.test_ids == [str(i) for i in range(1, 13)]  # natural order
    # stored order: class folders by name, then each folder's files in natural order
    train = [(root / "train" / name / f"{i}.{name}.png", label)
             for label, name in enumerate(ds.class_names) for i in range(11)]  # fmt: skip
    assert ds.y_train.tolist() == [label for _, label in train]
    _assert_rows(ds.x_train, [path for path, _ in train])
    assert np.array_equal(ds.x_train[0, ..., 0], ds.x_train[0, ..., 2])  # 0.cat.png is grayscale
    _assert_rows(ds.x_test, [root / "test" / f"{i}.png" for i in range(1, 13)])


def test_image_folder_labelled_test_and_resize(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", test="labelled")
    ds = load_dataset(str(root), resize=(8, 10))
    assert ds.x_train.shape == (12, 8, 10, 3) and ds.x_test.shape == (4, 8, 10, 3)
    assert ds.y_test.tolist() == [0, 0, 1, 1] and ds.test_ids is None
    assert ds.y_train.tolist() == [0] * 6 + [1] * 6
    # resize=(8, 10) is (H, W): every 16x16 file resized bilinearly to 10 wide, 8 high
    _assert_rows(ds.x_train, [root / "train" / name / f"{i}.{name}.png" for name in ("cat", "dog")
                              for i in range(6)], (8, 10))  # fmt: skip
    _assert_rows(ds.x_test, [root / "test" / name / f"t{i}.png" for name in ("cat", "dog") for i in range(2)],
                 (8, 10))


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
def test_tar_unsafe_member_refused(tmp_path: Path, session_cache: Path, fresh_cache: Path, name: str,
                                   kind: bytes) -> None:  # fmt: skip
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path / "pets.tar.gz", member)
    extracted = fresh_cache / "extracted"
    # Where the member would land if written: an absolute name where it says; "../evil.txt" beside
    # the temporary folder it is extracted into (extracted/.<name>.tmp-*), i.e. in extracted/, or
    # a level up if the layout changes; and beside the archive.
    landing = [extracted / "evil.txt", fresh_cache / "evil.txt", tmp_path / "evil.txt",
               session_cache / "evil.txt"]  # fmt: skip
    if name.startswith("/"):
        landing.append(Path(name))
        Path(name).unlink(missing_ok=True)  # a stale one from an earlier run would fail the check
    with pytest.raises(UnsafeDataError) as err:
        load_dataset(str(archive))
    assert name in str(err.value)
    assert [path for path in landing if path.exists()] == []
    # nothing half-extracted is left for another process to pick up
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


# ---- decompression bombs and the pixel limit ---------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_decompression_bomb_named_or_skipped(tmp_path: Path) -> None:
    """Past Pillow's own limit, a clean error naming the file and its size (not Pillow's exception)."""
    root = write_image_folder(tmp_path / "pets")
    (root / "train" / "cat" / "bomb.png").write_bytes(_png_claiming(30_000, 30_000))
    with pytest.raises(ImageTooLargeError) as err:
        load_dataset(str(root))
    assert isinstance(err.value, DataError)
    message = str(err.value)
    assert "bomb.png" in message and "30000x30000" in message and "900,000,000 pixels" in message
    assert "data.max_image_pixels" in message and "skip_corrupt" in message
    ds = load_dataset(str(root), skip_corrupt=True)
    assert ds.skipped_corrupt == 1 and ds.x_train.shape == (12, 16, 16, 3)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS  # Pillow's global is left as it was


def test_max_image_pixels_from_the_config(tmp_path: Path) -> None:
    """``data.max_image_pixels: 100`` refuses a 16x16 file (256 pixels); skip_corrupt leaves it out."""
    root = write_image_folder(tmp_path / "pets", size=(8, 8), test=None)
    Image.new("RGB", (16, 16)).save(root / "train" / "dog" / "9.dog.png")
    cfg = DataConfig(dataset=str(root), max_image_pixels=100, resize=8, val_fraction=0.0)
    with pytest.raises(DataError, match=r"9\.dog\.png: image is 16x16 \(WxH\) = 256 pixels, over the limit of 100"):
        prepare_data(cfg.dataset, **cfg.prepare_kwargs())
    skipping = cfg.model_copy(update={"skip_corrupt": True})
    data = prepare_data(skipping.dataset, **skipping.prepare_kwargs())
    assert len(data.y_train) == 12  # the 13th file, over the limit, skipped
    assert load_dataset(str(root), skip_corrupt=True, max_image_pixels=100).skipped_corrupt == 1
    # the default limit reads it, and keeps the fingerprint a run made before the field existed
    default = load_dataset(str(root), resize=8)
    assert len(default.y_train) == 13
    assert default.fingerprint != load_dataset(str(root), resize=8, max_image_pixels=300).fingerprint


def test_prepare_kwargs_cover_the_data_section() -> None:
    """Every field of the data section reaches prepare_data (but the dataset and its folder)."""
    kwargs = DataConfig(dataset="cifar10").prepare_kwargs()
    assert set(kwargs) == set(DataConfig.model_fields) - {"dataset", "data_dir"}
    assert set(kwargs) <= set(inspect.signature(prepare_data).parameters)


# ---- a cache folder that cannot be written ----------------------------------------------


def _pets_archive(tmp_path: Path) -> Path:
    src = write_image_folder(tmp_path / "src" / "pets")
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="pets")
    return archive


def test_cache_folder_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _pets_archive(tmp_path)
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "not-a-folder" / "cache"))
    with pytest.raises(DataError) as err:
        load_dataset(str(archive))
    assert "not-a-folder" in str(err.value) and "pets.tar.gz" in str(err.value)
    assert "TRAINLAB_CACHE" in str(err.value)


def _refuse_mkdir(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """``os.mkdir`` of a new folder under ``folder`` fails with errno ``code`` (even for root)."""
    real_mkdir = os.mkdir

    def refusing_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).is_relative_to(folder) and not Path(path).exists():  # EEXIST comes first
            raise OSError(code, os.strerror(code), str(path))  # EACCES gives a PermissionError
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refusing_mkdir)


def _assert_blames_the_cache(err: pytest.ExceptionInfo[DataError], cache: Path, reason: str) -> None:
    """A DataError naming the cache folder that cannot be written, the reason and the archive."""
    assert not isinstance(err.value, CorruptDataError)  # the archive is fine
    message = str(err.value)
    assert str(cache / "extracted") in message and reason in message
    assert "pets.tar.gz" in message and "cannot extract" in message and "TRAINLAB_CACHE" in message


@pytest.mark.parametrize("existing", [False, True], ids=["empty-cache", "cache-with-extracted"])
def test_read_only_cache_with_an_archive(tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                         existing: bool) -> None:
    """A read-only file system under the cache (EROFS even for root): a DataError naming the folder."""
    archive = _pets_archive(tmp_path)
    fresh_cache.mkdir()
    if existing:
        (fresh_cache / "extracted").mkdir()
    _refuse_mkdir(monkeypatch, fresh_cache, errno.EROFS)
    with pytest.raises(DataError) as err:
        load_dataset(str(archive))
    _assert_blames_the_cache(err, fresh_cache, "Read-only file system")


@pytest.mark.parametrize("existing", [False, True], ids=["empty-cache", "cache-with-extracted"])
def test_permission_denied_cache_with_an_archive(tmp_path: Path, fresh_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    """What a 0555 cache folder gives a non-root user (EACCES), injected so root runs it too."""
    archive = _pets_archive(tmp_path)
    fresh_cache.mkdir()
    if existing:
        (fresh_cache / "extracted").mkdir()
    _refuse_mkdir(monkeypatch, fresh_cache, errno.EACCES)
    with pytest.raises(DataError) as err:
        load_dataset(str(archive))
    _assert_blames_the_cache(err, fresh_cache, "Permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder")
def test_unwritable_cache_folder_with_an_archive(tmp_path: Path, fresh_cache: Path) -> None:
    archive = _pets_archive(tmp_path)
    fresh_cache.mkdir(mode=0o555)
    try:
        with pytest.raises(DataError) as err:
            load_dataset(str(archive))
        _assert_blames_the_cache(err, fresh_cache, "Permission denied")
    finally:
        fresh_cache.chmod(0o755)


def test_full_cache_while_extracting(tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing a member blames the folder being written, not the archive."""
    archive = _pets_archive(tmp_path)

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("trainlab.data.archive.shutil.copyfileobj", disk_full)
    with pytest.raises(DataError) as err:
        load_dataset(str(archive))
    assert not isinstance(err.value, CorruptDataError)  # the archive is fine
    assert "No space left on device" in str(err.value) and "cannot extract" in str(err.value)
    assert str(fresh_cache / "extracted") in str(err.value)
    assert not any((fresh_cache / "extracted").iterdir())  # the half extraction is gone
