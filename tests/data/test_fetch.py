"""fetch_dataset and download against a local HTTP server (no internet needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from synthdata import write_cifar

from trainlab.data import fetch_dataset, load_dataset
from trainlab.data import registry as reg
from trainlab.data.fetch import download
from trainlab.errors import DownloadError


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from ``directory`` and honours ``Range: bytes=N-`` (206 responses)."""

    requests_seen: list[str | None] = []  # noqa: RUF012 - shared on purpose, reset per server

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        type(self).requests_seen.append(self.headers.get("Range"))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if start >= len(data) and rng:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()
    _RangeHandler.requests_seen = []

    def handler(*args: object, **kwargs: object) -> _RangeHandler:
        return _RangeHandler(*args, directory=str(www), **kwargs)  # type: ignore[arg-type]

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


def test_download_verifies_md5(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    payload = np.random.default_rng(0).bytes(300_000)
    (www / "blob.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    download(base + "blob.bin", dest, hashlib.md5(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload and not dest.with_name("blob.bin.part").exists()


def test_download_resumes_partial(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    payload = np.random.default_rng(1).bytes(200_000)
    (www / "blob.bin").write_bytes(payload)
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(payload[:123_456])
    download(base + "blob.bin", dest, hashlib.md5(payload).hexdigest(), progress=True)
    assert dest.read_bytes() == payload
    assert _RangeHandler.requests_seen == ["bytes=123456-"]


def test_download_complete_part_416(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    (www / "blob.bin").write_bytes(b"abc" * 100)
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(b"abc" * 100)
    download(base + "blob.bin", dest, hashlib.md5(b"abc" * 100).hexdigest(), progress=False)
    assert dest.read_bytes() == b"abc" * 100 and not dest.with_name("blob.bin.part").exists()
    # one request, resuming at the .part's end; the server's 416 kept the .part (no second GET)
    assert _RangeHandler.requests_seen == ["bytes=300-"]


def test_download_md5_mismatch(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    (www / "blob.bin").write_bytes(b"hello" * 1000)
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError) as err:
        download(base + "blob.bin", dest, "0" * 32, progress=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "blob.bin" in msg and base in msg and "0" * 32 in msg
    assert not dest.exists() and not dest.with_name("blob.bin.part").exists()


def test_download_offline_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/train-images-idx3-ubyte.gz"
    dest = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DownloadError) as err:
        download(url, dest, None, progress=False)
    msg = str(err.value)
    assert url in msg and "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "mnist") in msg


def _patch_downloads(monkeypatch: pytest.MonkeyPatch, name: str, base: str, md5s: dict[str, str]) -> None:
    spec = reg.SPECS[name]
    files = tuple(reg.RemoteFile(f, base + f, md5s[f]) for f in md5s)
    monkeypatch.setitem(reg.SPECS, name, dataclasses.replace(spec, downloads=files))


def test_fetch_mnist_from_local_mirror(server: tuple[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, real_data: Path,
                                       fresh_cache: Path) -> None:  # fmt: skip
    base, www = server
    md5s = {}
    for remote in reg.SPECS["mnist"].downloads:  # the real files, with their official md5s
        data = (real_data / "mnist" / remote.filename).read_bytes()
        (www / remote.filename).write_bytes(data)
        md5s[remote.filename] = remote.md5
        assert hashlib.md5(data).hexdigest() == remote.md5
    _patch_downloads(monkeypatch, "mnist", base, md5s)
    data_dir = tmp_path / "data"
    folder = fetch_dataset("mnist", data_dir, progress=False)
    assert folder == data_dir / "mnist"
    assert load_dataset("mnist", data_dir).x_train.shape == (60_000, 28, 28, 1)
    seen = len(_RangeHandler.requests_seen)
    assert fetch_dataset("mnist", data_dir, progress=False) == folder  # present: no download
    assert len(_RangeHandler.requests_seen) == seen


def test_fetch_cifar_extracts_archive(server: tuple[str, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    base, www = server
    src = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    _patch_downloads(monkeypatch, "cifar10", base,
                     {archive.name: hashlib.md5(archive.read_bytes()).hexdigest()})  # fmt: skip
    data_dir = tmp_path / "data"
    folder = fetch_dataset("cifar-10", data_dir, progress=False)
    assert folder == data_dir / "cifar-10-batches-py" and (folder / "data_batch_5").is_file()
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_fetch_offline_names_url_file_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/"
    _patch_downloads(monkeypatch, "fashion-mnist", base,
                     {r.filename: r.md5 for r in reg.SPECS["fashion-mnist"].downloads})  # fmt: skip
    with pytest.raises(DownloadError) as err:
        fetch_dataset("fashion-mnist", tmp_path, progress=False)
    msg = str(err.value)
    assert base + "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "fashion-mnist") in msg


def test_fetch_cats_vs_dogs_has_no_url(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"no official public download.*cats-vs-dogs\.tar\.gz"):
        fetch_dataset("cats-vs-dogs", tmp_path)


def test_fetch_present_dataset_returns_path(real_data: Path) -> None:
    assert fetch_dataset("cifar10", real_data) == real_data.resolve() / "cifar-10-batches-py"


def test_official_sources() -> None:
    urls = {r.filename: (r.url, r.md5) for r in reg.SPECS["fashion-mnist"].downloads}
    assert urls["t10k-images-idx3-ubyte.gz"][1] == "bef4ecab320f06d8554ea6380940ec79"
    mnist = {r.filename: r.url for r in reg.SPECS["mnist"].downloads}
    assert mnist["train-labels-idx1-ubyte.gz"].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")


def test_fetch_unwritable_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod does not stop root, so the writability probe itself is replaced
    monkeypatch.setattr("trainlab.data.fetch.is_writable_dir", lambda folder: False)
    with pytest.raises(DownloadError, match="not writable") as err:
        fetch_dataset("mnist", tmp_path, progress=False)
    assert "ossci-datasets" in str(err.value) and str(tmp_path / "mnist") in str(err.value)
    assert not any(tmp_path.iterdir())
