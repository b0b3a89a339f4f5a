"""The decoded-array cache: invalidation, read-only data folders, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from synthdata import write_cifar, write_idx, write_image_folder

from trainlab.data import cache_root, load_dataset, resolve_data_dir


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("TRAINLAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "trainlab" / "data"
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_cache_hit_and_invalidation(tmp_path: Path, fresh_cache: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    first = load_dataset(str(folder))
    again = load_dataset(str(folder))
    assert again.cache_dir == first.cache_dir and again.fingerprint == first.fingerprint
    assert not again.x_train.flags.writeable  # served from the memory-mapped cache
    assert np.array_equal(again.x_train, first.x_train)

    # same size, new content and mtime: the cache must not serve stale pixels
    path = folder / "data_batch_1"
    write_cifar(tmp_path / "other", seed=1)
    path.write_bytes((tmp_path / "other" / "data_batch_1").read_bytes())
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_dataset(str(folder))
    assert changed.fingerprint != first.fingerprint and changed.cache_dir != first.cache_dir
    assert not np.array_equal(changed.x_train[:20], first.x_train[:20])
    assert np.array_equal(changed.x_train[20:], first.x_train[20:])


def test_fingerprint_follows_content_not_file_times(tmp_path: Path, fresh_cache: Path) -> None:
    """Data copied elsewhere with new modification times (another machine, ``cp`` without -p)
    keeps its fingerprint, so a run's checkpoint still resumes on it; a touched file that
    still holds the same bytes keeps it too."""
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    first = load_dataset(str(folder))
    copy = tmp_path / "elsewhere" / "cifar-10-batches-py"
    copy.mkdir(parents=True)
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
        os.utime(copy / path.name, ns=(time.time_ns(), time.time_ns() + 5 * 10**9))
    copied = load_dataset(str(copy))
    assert copied.cache_dir != first.cache_dir  # a new source: decoded again...
    assert copied.fingerprint == first.fingerprint  # ...to the same content
    os.utime(folder / "data_batch_1", ns=(time.time_ns(), time.time_ns() + 9 * 10**9))
    assert load_dataset(str(folder)).fingerprint == first.fingerprint


def test_resize_and_options_are_cached_separately(tmp_path: Path, fresh_cache: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    plain = load_dataset(str(folder))
    small = load_dataset(str(folder), resize=14)
    assert small.x_train.shape == (30, 14, 14, 1) and plain.x_train.shape == (30, 28, 28, 1)
    assert small.fingerprint != plain.fingerprint
    assert len(list((fresh_cache / "datasets").iterdir())) == 2


def test_incomplete_manifest_not_trusted(tmp_path: Path, fresh_cache: Path) -> None:
    folder = write_idx(tmp_path / "mnist")
    first = load_dataset(str(folder))
    assert first.cache_dir is not None
    (first.cache_dir / "x_train.npy").write_bytes(b"torn")
    again = load_dataset(str(folder))
    assert np.array_equal(again.x_train, first.x_train)


def test_read_only_data_folder(tmp_path: Path, fresh_cache: Path) -> None:
    data = tmp_path / "data"
    write_cifar(data / "cifar-10-batches-py")
    write_idx(data / "mnist")
    src = write_image_folder(tmp_path / "src")
    with tarfile.open(data / "pets.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=".")
    before = _snapshot(data)
    for p in [data, *data.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        # tests may run as root, where chmod does not stop writes: the snapshot is the check
        load_dataset(str(data / "cifar-10-batches-py"))
        load_dataset("mnist/", data)
        ds = load_dataset("pets.tar.gz", data)
        assert ds.x_train.shape == (12, 16, 16, 3)
        load_dataset("pets.tar.gz", data)
    finally:
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert _snapshot(data) == before
    assert (fresh_cache / "extracted").is_dir()


_CHILD = """
import sys, numpy as np
from trainlab.data import load_dataset
ds = load_dataset(sys.argv[1])
np.save(sys.argv[2], np.asarray(ds.x_train))
print(ds.fingerprint)
"""


def test_two_processes_fill_same_cache(tmp_path: Path, fresh_cache: Path) -> None:
    src = write_image_folder(tmp_path / "src", per_class=40)
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    env = {**os.environ, "TRAINLAB_CACHE": str(fresh_cache)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(archive), str(tmp_path / f"out{i}.npy")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    assert results[0][0] == results[1][0]
    a, b = np.load(tmp_path / "out0.npy"), np.load(tmp_path / "out1.npy")
    assert a.shape == (80, 16, 16, 3) and np.array_equal(a, b)
    assert np.array_equal(load_dataset(str(archive)).x_train, a)
    leftovers = [p.name for p in (fresh_cache / "extracted").iterdir() if ".tmp-" in p.name]
    assert leftovers == []
