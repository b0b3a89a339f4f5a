"""Safe, atomic extraction of ``.tar.gz`` archives.

Every member is checked before it is written: absolute paths, ``..``, links and device
files are refused (a hostile archive could otherwise write outside its folder). Extraction
goes to a temporary sibling folder that is renamed into place at the end, so a parallel
process sees either no folder or a complete one.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import uuid
from pathlib import Path, PurePosixPath

from ..errors import CorruptDataError, DataError, UnsafeDataError

_COMPLETE = ".trainlab-complete"  # written last inside the temp folder
# Errors of writing the extracted files, not of reading the archive: the folder is at fault.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _unwritable(folder: Path, archive: Path, exc: OSError) -> DataError:
    return DataError(
        f"{folder}: cannot extract {archive} here ({exc.strerror or exc}); free space or make the "
        "folder writable (an image-folder archive is extracted under $TRAINLAB_CACHE)"
    )


def check_member(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    """Return the member's safe relative path or raise UnsafeDataError naming it."""
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeDataError(f"{archive}: member {name!r} has an absolute path; refused")
    if ".." in path.parts or "\\" in name:
        raise UnsafeDataError(f"{archive}: member {name!r} escapes the folder ('..'); refused")
    if member.issym() or member.islnk():
        raise UnsafeDataError(
            f"{archive}: member {name!r} is a link (-> {member.linkname!r}); refused"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeDataError(f"{archive}: member {name!r} is a device or special file; refused")
    return path


def extract_into(archive: Path, target: Path) -> None:
    """Extract every member of ``archive`` into the existing folder ``target`` after checks."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = check_member(member, archive)
                out = target.joinpath(*rel.parts) if rel.parts else target
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                handle = tar.extractfile(member)
                assert handle is not None  # regular files always give a handle
                # Written by hand (not tar.extract) so no owner, mode or link metadata is applied.
                with handle, open(out, "wb") as dst:
                    shutil.copyfileobj(handle, dst, 1 << 20)
    except (tarfile.TarError, EOFError) as exc:
        raise CorruptDataError(
            f"{archive}: truncated or corrupt archive ({type(exc).__name__}: {exc})"
        ) from exc
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)) and not archive.exists():
            raise CorruptDataError(f"{archive}: cannot read the archive ({exc})") from exc
        if exc.errno in _WRITE_ERRNOS and os.access(archive, os.R_OK):
            raise _unwritable(target, archive, exc) from None
        raise CorruptDataError(
            f"{archive}: extraction failed ({type(exc).__name__}: {exc})"
        ) from exc


def is_complete(folder: Path) -> bool:
    """True when ``folder`` is a finished extraction made by :func:`extract_atomically`."""
    return (folder / _COMPLETE).is_file()


def extract_atomically(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` so that ``dest`` appears complete or not at all; return ``dest``.

    If another process finishes first, its folder is kept and ours is discarded.

    Raises:
        DataError: ``dest``'s folder cannot be written (read-only, full); names the folder.
        CorruptDataError: the archive is truncated or corrupt; UnsafeDataError: a member is
            refused.
    """
    if is_complete(dest):
        return dest
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:  # a read-only or full cache folder: say which, not a traceback
        raise _unwritable(dest.parent, archive, exc) from None
    try:
        extract_into(archive, tmp)
        (tmp / _COMPLETE).write_text("ok\n")
        try:
            os.rename(tmp, dest)
        except OSError:
            # dest exists: either a complete folder from a faster process, or a stale
            # incomplete one (impossible via this function, but be safe) that we replace.
            if not is_complete(dest):
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def single_root(folder: Path, marker: str = "train") -> Path:
    """Return the folder holding ``marker``: ``folder`` itself or its one subfolder."""
    if (folder / marker).is_dir():
        return folder
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / marker).is_dir():
        return subdirs[0]
    return folder


__all__ = ["check_member", "extract_atomically", "extract_into", "is_complete", "single_root"]
