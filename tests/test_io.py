"""Atomic writes: a writer killed at any moment leaves the old file or the new one."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from trainlab.errors import FileAccessError
from trainlab.io import atomic_save_npy, atomic_write_json, atomic_write_text

WRITER = textwrap.dedent(
    """
    import sys, time
    from trainlab.io import atomic_open
    target = sys.argv[1]
    with atomic_open(target, "wb") as handle:
        for chunk in range(400):
            handle.write(b"N" * 65536)   # 25 MiB in slow chunks, so a kill lands mid-write
            handle.flush()
            if chunk == 0:
                print("writing", flush=True)  # the parent times its kill from here
            time.sleep(0.002)
    print("finished", flush=True)
    """
)


def test_killed_writer_leaves_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "metrics.csv"
    old = b"old content\n" * 1000
    target.write_bytes(old)
    for delay in (0.0, 0.1, 0.3):
        hidden = {p.name for p in tmp_path.iterdir() if p.name.startswith(".")}  # earlier kills' leftovers
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"  # mid-write from now on
        time.sleep(delay)
        assert {p.name for p in tmp_path.iterdir() if p.name.startswith(".")} - hidden, "no temporary file"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the writer finished before it was killed"
        assert target.read_bytes() == old
    # Leftover temporary files are hidden dot-files; the target itself is never torn.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["metrics.csv"]


def test_completed_writer_replaces_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", WRITER, str(target)], capture_output=True, check=True)
    assert b"finished" in proc.stdout
    assert target.stat().st_size == 400 * 65536
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        atomic_write_json(target, {"a": object()})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_npy_roundtrip_and_mmap(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    atomic_save_npy(tmp_path / "a.npy", array)
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    np.testing.assert_array_equal(loaded, array)


def test_write_into_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError) as caught:  # an OSError too, naming the target (not the temp file)
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")
    assert caught.value.errno == errno.ENOENT and caught.value.filename == str(tmp_path / "missing" / "x.txt")
    assert os.listdir(tmp_path) == []
