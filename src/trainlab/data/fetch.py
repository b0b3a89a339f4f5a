"""Download official dataset files: resumable (``.part`` + HTTP Range), md5-verified."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import DatasetNotFoundError, DownloadError
from .archive import extract_atomically
from .loader import locate
from .locations import is_writable_dir, resolve_data_dir
from .registry import DatasetSpec, RemoteFile, get_spec

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline_error(url: str, dest: Path, reason: object) -> DownloadError:
    return DownloadError(
        f"could not download {url} ({reason}). If this machine is offline, download "
        f"{dest.name} by hand from {url} and put it in {dest.parent}"
    )


def _open(url: str, start: int) -> object:
    headers = {"User-Agent": "trainlab"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)


def download(url: str, dest: Path, md5: str | None, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed if present); verify ``md5``.

    A failed transfer keeps the ``.part`` file so the next call resumes it; a checksum mismatch
    deletes it (its bytes cannot be trusted) and raises DownloadError.
    """
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            # The server has nothing past our offset: the .part may already be complete.
            return _finish(part, dest, url, md5)
        raise _offline_error(url, dest, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise _offline_error(url, dest, getattr(exc, "reason", exc)) from exc
    with response as resp:  # type: ignore[attr-defined]
        resumed = start > 0 and resp.status == 206
        if not resumed:
            start = 0  # the server ignored the Range header: start over
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
        )  # fmt: skip
        bar = Progress(*columns, console=Console(stderr=True), disable=not progress)
        try:
            with bar, open(part, "ab" if resumed else "wb") as out:
                task = bar.add_task(dest.name, total=total, completed=start)
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    bar.advance(task, len(block))
        except OSError as exc:
            raise _offline_error(url, dest, f"transfer interrupted: {exc}; run again to resume") from exc
    return _finish(part, dest, url, md5)


def _finish(part: Path, dest: Path, url: str, md5: str | None) -> Path:
    if md5 is not None:
        got = md5_of(part)
        if got != md5:
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {dest.name} from {url}: md5 {got}, expected {md5}; "
                "the partial file was deleted, run the command again"
            )
    os.replace(part, dest)
    return dest


def _have(path: Path, remote: RemoteFile) -> bool:
    return path.is_file() and md5_of(path) == remote.md5


def _fetch_cifar(spec: DatasetSpec, root: Path, progress: bool) -> Path:
    remote = spec.downloads[0]
    archive = root / remote.filename
    if not _have(archive, remote):
        download(remote.url, archive, remote.md5, progress=progress)
    # Extract beside the final folder, then move it into place: never a half folder.
    staging = extract_atomically(archive, root / f".{spec.folder}.extract")
    inner = next(staging.rglob(spec.folder), None)
    target = root / spec.folder
    try:
        if inner is None:
            raise DownloadError(f"{archive}: no {spec.folder}/ inside the archive")
        if not target.exists():
            os.rename(inner, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch_dataset(name: str, data_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Download a named dataset into the data folder (if missing) and return its path.

    Files are fetched from the official addresses, resumed if a ``.part`` exists, and
    md5-verified; CIFAR-10's archive is extracted. Offline, the DownloadError names each URL,
    file and folder so the files can be placed by hand.
    """
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    try:
        return locate(spec.name, root).path
    except DatasetNotFoundError:
        pass  # not there yet (or incomplete): download below
    folder = root / spec.folder
    if not spec.downloads:
        raise DownloadError(
            f"{spec.name} has no official public download. {spec.note} Folder: {folder}"
        )
    if not is_writable_dir(root):
        files = "; ".join(f"{d.url} -> {folder if spec.kind == 'idx' else root}/{d.filename}"
                          for d in spec.downloads)  # fmt: skip
        raise DownloadError(
            f"the data folder {root} is not writable, so {spec.name} cannot be downloaded into "
            f"it. Pass a writable --data-dir (or set $TRAINLAB_DATA), or place the files by "
            f"hand: {files}"
        )
    root.mkdir(parents=True, exist_ok=True)
    if spec.kind == "cifar":
        return _fetch_cifar(spec, root, progress)
    folder.mkdir(parents=True, exist_ok=True)
    for remote in spec.downloads:
        path = folder / remote.filename
        if not _have(path, remote):
            download(remote.url, path, remote.md5, progress=progress)
    return folder


__all__ = ["download", "fetch_dataset", "md5_of"]
