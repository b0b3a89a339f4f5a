"""Run directories: where they come from (created, resumed, overwritten, cleaned) and their layout.

The files are named, read and written in :mod:`trainlab.run_files`.
Layout of ``runs/<name>/<run-id>/``::

    config.yaml      the resolved config, with seed, package versions and a data fingerprint
    metrics.csv      one row per evaluation (epoch, step, split, loss, accuracy, lr, elapsed, ...)
    steps.csv        with train.log_steps: step, epoch, loss, lr, elapsed every N steps
    summary.json     final figures (test_accuracy, test_loss, best_val_accuracy, ...)
    run.log          a plain-text log of the run
    checkpoint.npz / checkpoint.pt   whatever the engine needs to resume exactly
    .trainlab-run    the marker: this folder was created by trainlab for a run

Every file but the appended ``run.log`` and ``steps.csv`` is written atomically (see
:mod:`trainlab.io`), so a run killed at any moment leaves complete files behind (at worst a
torn last line in those two, which a resume repairs) and can be resumed or reported; the
temporary files such a kill leaves are removed when the directory is next opened.

A run directory is created with an exclusive ``mkdir``, so two processes never share one,
and its name (like the run name above it) follows :mod:`trainlab.names`. ``overwrite``
removes only a directory that holds the marker (or, from before markers, a run's config).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import time
from importlib import metadata
from pathlib import Path

from trainlab.errors import RunDirError
from trainlab.io import is_temp_file_name
from trainlab.names import check_name
from trainlab.run_files import (
    CONFIG_FILE,
    LOG_FILE,
    MARKER_FILE,
    START_FILES,
    RunDir,
    drop_torn_line,
)

# A temporary file younger than this may belong to a live writer (a run being reported on
# while it trains); one older is an orphan of a killed process. Resume removes them all.
STALE_TEMP_SECONDS = 600.0
# Default ids end in 4 random hex digits; a collision (1 in 65536 per pair started in the
# same second) just draws again.
_ID_TRIES = 32


def package_versions() -> dict[str, str]:
    """Versions of Python and of the installed packages that decide a run's numbers.

    Read from the package metadata, so a NumPy run does not pay for importing torch.
    """
    versions = {"python": platform.python_version()}
    for package in ("trainlab", "numpy", "torch", "pydantic"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def default_run_id(seed: int) -> str:
    """A run id that sorts by start time, names the seed and ends in 4 random hex digits,
    e.g. ``20261124-101530-s0-3fa9``.

    The suffix comes from the operating system, not from the seeded generators, so runs of one
    config started in the same second still get different ids.
    """
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-s{seed}-{secrets.token_hex(2)}"


def create_run_dir(
    output_dir: str | Path,
    name: str,
    run_id: str | None = None,
    *,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
) -> RunDir:
    """Create (or reopen for resume) ``output_dir/name/run_id``.

    Args:
        output_dir: the runs root, e.g. ``runs``.
        name: the run (or study) name from the config.
        run_id: the run's id inside that folder. Default None: :func:`default_run_id` of
            ``seed``, drawn again if another run took it first.
        seed: the seed a default id names. Default 0.
        resume: reopen an existing run directory to continue it. Default False.
        overwrite: remove an existing run directory (one holding a trainlab run) and start
            again. Default False.

    Raises:
        ConfigError: ``name`` or ``run_id`` breaks the name rule (:mod:`trainlab.names`).
        RunDirError: the directory exists and neither flag was given, overwrite found
            something that is not a run, or it cannot be written.
    """
    check_name(name, "name")
    if run_id is not None:
        check_name(run_id, "run_id")
    parent = Path(output_dir) / name
    if resume:
        if run_id is None:
            raise RunDirError(f"cannot resume a run in {parent} without its run id")
        return resume_run_dir(parent / run_id)
    if run_id is None:
        for _ in range(_ID_TRIES):
            run = _make_run_dir(parent / default_run_id(seed), taken_ok=True)
            if run is not None:
                return run
        raise RunDirError(f"no free run id in {parent} after {_ID_TRIES} tries; give one with --run-id")
    path = parent / run_id
    if overwrite and (path.exists() or path.is_symlink()):
        _remove_for_overwrite(path)
    run = _make_run_dir(path, taken_ok=False)
    assert run is not None  # taken_ok=False raises instead
    return run


def _make_run_dir(path: Path, *, taken_ok: bool) -> RunDir | None:
    """Create ``path`` exclusively and mark it; None when it exists and ``taken_ok``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path)  # exclusive: of two processes asking for one path, exactly one gets it
    except FileExistsError:
        if taken_ok:
            return None
        raise RunDirError(
            f"run directory {path} already exists; pass --resume {path} to continue it, "
            "--overwrite to start it again, or choose another --run-id"
        ) from None
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        _write_marker(path)
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise _unwritable(path, exc) from exc
    return RunDir(path, fresh=True)


def _write_marker(path: Path) -> None:
    with open(path / MARKER_FILE, "x", encoding="utf-8") as handle:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        handle.write(json.dumps({"created": stamp, "pid": os.getpid()}) + "\n")


def _unwritable(path: Path, exc: OSError) -> RunDirError:
    return RunDirError(
        f"cannot write the run directory {path}: {exc.strerror or exc}; "
        "set output.dir (or --set output.dir=...) to a writable folder"
    )


def holds_a_run(path: Path) -> bool:
    """Whether ``path`` is a directory trainlab made for a run: it holds the marker, or (a run
    directory written before markers existed) a ``config.yaml`` with the run's provenance."""
    if (path / MARKER_FILE).is_file():
        return True
    try:
        loaded = RunDir(path).read_config()  # a mapping, or RunDirError (missing, damaged)
    except (OSError, RunDirError):
        return False
    return isinstance(loaded.get("provenance"), dict)


def _remove_for_overwrite(path: Path) -> None:
    """Remove the run directory ``path`` for ``overwrite``; refuse anything that is not a run."""
    why = None
    if path.is_symlink():
        why = "it is a symbolic link"
    elif not path.is_dir():
        why = "it is not a directory"
    elif any(path.iterdir()) and not holds_a_run(path):
        why = f"it holds no trainlab run (no {MARKER_FILE} marker, no {CONFIG_FILE} with provenance)"
    if why is not None:
        raise RunDirError(f"--overwrite refuses to remove {path}: {why}; remove it yourself "
                          "or choose another --run-id")
    # Renamed away first, so the new run starts in a directory that is entirely its own.
    trash = path.parent / f".{path.name}.overwritten-{secrets.token_hex(4)}"
    try:
        path.rename(trash)
    except OSError as exc:
        raise RunDirError(f"--overwrite could not remove {path}: {exc.strerror or exc}") from exc
    try:
        shutil.rmtree(trash)
    except OSError as exc:
        raise RunDirError(f"--overwrite moved {path} to {trash} but could not remove it: "
                          f"{exc.strerror or exc}") from exc


def resume_run_dir(path: str | Path) -> RunDir:
    """Reopen the run directory ``path`` to continue it, after removing orphaned temporary files
    and the torn last line a kill in the middle of an append left in ``run.log``.

    Raises:
        RunDirError: it does not exist, is empty, or cannot be written.
    """
    run_path = Path(path)
    if not run_path.is_dir() or not any(run_path.iterdir()):
        raise RunDirError(f"cannot resume {run_path}: it does not exist or is empty")
    try:
        remove_orphaned_temp_files(run_path, older_than=None, strict=True)
        drop_torn_line(run_path / LOG_FILE)  # a kill mid-append; steps.csv is rewritten by StepLog.begin
        probe = run_path / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
        if not (run_path / MARKER_FILE).exists():  # a run from before markers existed
            _write_marker(run_path)
    except OSError as exc:
        raise _unwritable(run_path, exc) from exc
    run = RunDir(run_path)
    run.load_metrics()
    return run


def open_run_dir(path: str | Path) -> RunDir:
    """Open an existing run directory for reading (config, metrics, summary).

    Temporary files a killed writer left (older than :data:`STALE_TEMP_SECONDS`) are
    removed; a read-only directory is opened as it is.
    """
    run_path = Path(path)
    if not run_path.exists():
        raise RunDirError(f"{run_path} does not exist")
    if not (run_path / CONFIG_FILE).exists():
        raise RunDirError(f"{run_path} is not a trainlab run directory (no {CONFIG_FILE} there)")
    remove_orphaned_temp_files(run_path, older_than=STALE_TEMP_SECONDS)
    run = RunDir(run_path)
    run.load_metrics()
    return run


def remove_orphaned_temp_files(path: Path, older_than: float | None, strict: bool = False) -> list[Path]:
    """Remove the temporary files of atomic writes (:mod:`trainlab.io`) under the run ``path``.

    Args:
        path: a run directory; its subfolders (``figures/``) are searched too.
        older_than: only files last modified this many seconds ago or earlier; None: all of
            them (the caller is about to be the directory's only writer).
        strict: raise an OSError that removing one raises. Default False: skip that file.

    Returns:
        The files removed.
    """
    now = time.time()
    removed = []
    for folder, _, names in os.walk(path):
        for name in names:
            if not is_temp_file_name(name):
                continue
            temp = Path(folder) / name
            try:
                if older_than is None or now - temp.lstat().st_mtime >= older_than:
                    temp.unlink()
                    removed.append(temp)
            except FileNotFoundError:  # its writer finished (renamed it) meanwhile
                continue
            except OSError:
                if strict:
                    raise
    return removed


def discard_run_dir(run: RunDir) -> bool:
    """Remove ``run``'s directory after a start refused before any training step.

    Only a directory this process created (``run.fresh``) that holds nothing but what a start
    writes (:data:`START_FILES` and temporary files) is removed, so nothing else is ever lost.
    The run name's folder above it goes too when that leaves it empty (the first run of a
    name made it).

    Returns:
        Whether it was removed.
    """
    if not run.fresh:
        return False
    try:
        if not all(_written_at_start(entry) for entry in run.path.iterdir()):
            return False
        shutil.rmtree(run.path)
    except OSError:
        return False
    with contextlib.suppress(OSError):  # not empty (other runs of the name), or not ours to remove
        run.path.parent.rmdir()
    return True


def _written_at_start(entry: Path) -> bool:
    return entry.is_file() and (entry.name in START_FILES or is_temp_file_name(entry.name))


__all__ = [
    "STALE_TEMP_SECONDS",
    "create_run_dir",
    "default_run_id",
    "discard_run_dir",
    "holds_a_run",
    "open_run_dir",
    "package_versions",
    "remove_orphaned_temp_files",
    "resume_run_dir",
]
