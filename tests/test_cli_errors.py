"""OSErrors at the command line: one line naming the path and the cause, exit code 6, no traceback,
and nothing half-written where a write fails (a folder that cannot be written, a full disk)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import write_config
from trainlab.cli import main
from trainlab.errors import FileAccessError, RunDirError, user_error
from trainlab.io import atomic_write_text, atomic_write_with

pytestmark = pytest.mark.usefixtures("real_data")

SMALL = {"dataset": "mnist", "limit": {"train": 200, "val": 100, "test": 100}, "normalize": "scale"}
TINY = {"epochs": 1, "batch_size": 50}


def _config(folder: Path, output_dir: Path, name: str = "run.yaml") -> Path:
    return write_config(folder / name, output_dir, data=SMALL, train=TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished NumPy run on 200 MNIST images (about a second)."""
    root = tmp_path_factory.mktemp("trained")
    assert main(["run", str(_config(root, root / "runs")), "--run-id", "r", "--no-progress"]) == 0
    return root / "runs" / "t" / "r"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _under_a_file(tmp_path: Path) -> Path:
    """A folder path that cannot exist: its parent is a regular file (NotADirectoryError, for root too)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    return blocker / "out"


def _permissions_enforced(tmp_path: Path) -> bool:
    """Whether this user is refused a write into a 0o500 folder: not root (which ignores file
    permissions), unless root runs without CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return True
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o500)
    try:
        (probe / "x").write_text("x")
    except PermissionError:
        return True
    finally:
        probe.chmod(0o700)
    return False


# Locks a path for a test: a folder becomes read-only, a file unreadable.
Lock = Callable[[Path], Path]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Lock]:
    """Makes a folder read-only (0o500), a file unreadable (0o000); skips the test where
    permissions are not enforced."""
    if not _permissions_enforced(tmp_path):
        pytest.skip("root ignores file permissions; the under-a-file and denied cases cover root")
    made: list[tuple[Path, int]] = []

    def make(path: Path) -> Path:
        if path.is_file():
            path.chmod(0o000)
            made.append((path, 0o600))
            return path
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o500)
        made.append((path, 0o700))
        return path

    yield make
    for path, mode in reversed(made):  # pytest must be able to remove tmp_path
        path.chmod(mode)


def _denied(path: Any) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))


@pytest.fixture
def denied(monkeypatch: pytest.MonkeyPatch) -> Lock:
    """The root-proof ``read_only``: the calls that create a file or folder (os.mkdir, os.open
    with O_CREAT, which tempfile.mkstemp uses, and open() to write) raise EACCES for a new
    entry of a locked folder, and every open of a locked file raises it, as the kernel
    answers a user without permission; other paths are untouched."""
    folders: set[str] = set()
    files: set[str] = set()
    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open

    def refused(path: Any, creates: bool) -> bool:
        if isinstance(path, int):  # a file descriptor
            return False
        full = os.path.abspath(os.fspath(path))
        if full in files:
            return True
        # EEXIST (or opening an existing file) comes before EACCES.
        return creates and os.path.dirname(full) in folders and not os.path.lexists(full)

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if refused(path, True):
            raise _denied(path)
        real_mkdir(path, *args, **kwargs)

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if refused(path, bool(flags & os.O_CREAT)):
            raise _denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if refused(file, any(c in mode for c in "wxa+")):
            raise _denied(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)  # pathlib opens through io.open

    def lock(path: Path) -> Path:
        if path.is_file():
            files.add(os.path.abspath(path))
            return path
        path.mkdir(parents=True, exist_ok=True)
        folders.add(os.path.abspath(path))
        return path

    return lock


def _one_error_line(err: str, *parts: str) -> str:
    """The single ``error:`` line of ``err``, checked to contain every one of ``parts``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    data = yaml.safe_load(_config(tmp_path, tmp_path / "runs", "base.yaml").read_text())
    data["study"] = {"objective": "best_val_accuracy", "space": {"optimizer.lr": [0.1, 0.2]}}
    path.write_text(yaml.safe_dump(data))
    return path


# -- a folder that cannot be written: under a file (everyone), read-only (not root) ------------


@pytest.mark.parametrize("command", ["predict", "data show", "study", "config schema"])
def test_output_under_a_file_is_one_clean_line(command: str, tmp_path: Path, trained: Path, images: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = _under_a_file(tmp_path)
    argv = {
        "predict": ["predict", str(trained), "--images", str(images), "--out", str(out / "p.csv")],
        "data show": ["data", "show", "mnist", "--out", str(out / "samples.png"), "--per-class", "1"],
        "study": ["study", str(_study_file(tmp_path)), "--dir", str(out / "s"), "-q"],
        "config schema": ["config", "schema", "-o", str(out / "schema.json")],
    }[command]
    assert main(argv) == FileAccessError.exit_code == 6
    _one_error_line(capsys.readouterr().err, str(tmp_path / "blocker"), "Not a directory")


def test_run_output_under_a_file_is_a_run_dir_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, _under_a_file(tmp_path) / "runs")
    assert main(["run", str(config), "--no-progress"]) == RunDirError.exit_code
    _one_error_line(capsys.readouterr().err, str(tmp_path / "blocker"), "Not a directory")


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run reports without their sections: drawing every figure takes seconds, and these tests are
    about writing report.html."""
    from trainlab.report.run_report import RunReport

    monkeypatch.setattr(RunReport, "sections", lambda self: [])


@pytest.mark.parametrize("name", ["report.html", "summary.json"])
def test_report_and_evaluate_when_a_run_file_is_a_folder(name: str, tmp_path: Path, trained: Path,
                                                         no_figures: None, capsys: pytest.CaptureFixture[str]) -> None:
    """report.html cannot be replaced, summary.json cannot be read: a folder stands in their place."""
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    (run / name).unlink(missing_ok=True)
    (run / name).mkdir()
    command = "report" if name == "report.html" else "evaluate"
    assert main([command, str(run)]) == 6
    _one_error_line(capsys.readouterr().err, str(run / name), "Is a directory")
    assert not list(run.glob(".*.tmp"))


READ_ONLY_COMMANDS = ["run", "study", "report", "predict", "data show", "evaluate"]


def _check_read_only(command: str, tmp_path: Path, trained: Path, images: Path, lock: Lock,
                     capsys: pytest.CaptureFixture[str]) -> None:
    """Run ``command`` against a locked folder ``ro`` (for evaluate: a run whose summary.json
    cannot be read) and check for one ``Permission denied`` line naming it, and no temp file."""
    out = tmp_path / "ro"
    if command in ("report", "evaluate"):
        shutil.copytree(trained, out / "r")
        if command == "evaluate":
            lock(out / "r" / "summary.json")
    lock(out)
    if command == "report":
        lock(out / "r")
    # The path the message must name: the file or folder the user asked for, never a temp file.
    argv, code, named = {
        "run": (["run", str(_config(tmp_path, out)), "--no-progress"], RunDirError.exit_code,
                f"cannot write the run directory {out / 't'}{os.sep}"),
        "study": (["study", str(_study_file(tmp_path)), "--dir", str(out / "s"), "-q"], 6, f"{out / 's'}:"),
        "report": (["report", str(out / "r")], 6, f"cannot write {out / 'r' / 'report.html'}:"),
        "predict": (["predict", str(trained), "--images", str(images), "--out", str(out / "p.csv")], 6,
                    f"cannot write {out / 'p.csv'}:"),
        "data show": (["data", "show", "mnist", "--out", str(out / "samples.png"), "--per-class", "1"], 6,
                      f"cannot write {out / 'samples.png'}:"),
        "evaluate": (["evaluate", str(out / "r")], 6, f"{out / 'r' / 'summary.json'}:"),
    }[command]
    assert main(argv) == code
    line = _one_error_line(capsys.readouterr().err, named, "Permission denied")
    assert ".tmp" not in line
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS)
def test_read_only_folders(command: str, tmp_path: Path, trained: Path, images: Path, no_figures: None,
                           read_only: Lock, capsys: pytest.CaptureFixture[str]) -> None:
    _check_read_only(command, tmp_path, trained, images, read_only, capsys)


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS)
def test_permission_denied_for_everyone(command: str, tmp_path: Path, trained: Path, images: Path,
                                        no_figures: None, denied: Lock, capsys: pytest.CaptureFixture[str]) -> None:
    """The same refusals injected (EACCES from the calls that create or open), so they are
    tested as root too, where chmod changes nothing."""
    _check_read_only(command, tmp_path, trained, images, denied, capsys)


# -- a full disk ---------------------------------------------------------------------------------


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: a write past the limit fails with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_while_writing_the_checkpoint(tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: the 100 kB checkpoint fails, the small files fit."""
    config = _config(tmp_path, tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "trainlab.cli", "run", str(config), "--run-id", "full",
                           "--no-progress"], capture_output=True, text=True, timeout=120,
                          preexec_fn=_file_size_limit(50_000))
    run = tmp_path / "runs" / "t" / "full"
    assert proc.returncode == 6, proc.stderr
    line = _one_error_line(proc.stderr, f"cannot write {run / 'checkpoint.npz'}", os.strerror(errno.EFBIG))
    assert ".tmp" not in line
    assert not (run / "checkpoint.npz").exists() and not list(run.glob(".*.tmp"))  # nothing half-written
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "checkpoint.npz" in summary["error"]


# -- the atomic write and the CLI's choice of message ---------------------------------------------


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")

    def half_then_full(handle: object) -> None:
        handle.write(b"new, half")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(FileAccessError) as caught:
        atomic_write_with(target, half_then_full)
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_writer_that_hides_the_os_error_and_one_about_another_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"

    def like_torch_save(handle: object) -> None:  # torch.save raises a RuntimeError over the OSError
        try:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    with pytest.raises(FileAccessError, match=f"cannot write {target}: File too large"):
        atomic_write_with(target, like_torch_save)

    def reads_a_missing_file(handle: object) -> None:
        (tmp_path / "missing.txt").read_text()

    with pytest.raises(FileNotFoundError) as caught:  # not this write's failure: left as it is
        atomic_write_with(target, reads_a_missing_file)
    assert not isinstance(caught.value, FileAccessError)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unwritable_folder_names_the_target_not_the_temp_file(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError) as caught:
        atomic_write_text(_under_a_file(tmp_path) / "x.txt", "x")
    assert caught.value.filename == str(tmp_path / "blocker" / "out" / "x.txt")


def test_the_first_of_chained_os_errors_is_shown() -> None:
    """A checkpoint write fails on a full disk, then the summary written on the way out too."""
    try:
        try:
            raise FileAccessError(errno.ENOSPC, None, "runs/x/checkpoint.npz", "write")
        finally:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/x/.summary.json.1.tmp")
            except OSError as raw:
                raise FileAccessError.from_os_error(raw, "write", "runs/x/summary.json") from raw
    except OSError as exc:
        shown = user_error(exc)
    assert str(shown) == "cannot write runs/x/checkpoint.npz: No space left on device" and shown.exit_code == 6


# -- user text keeps its [brackets]: rich would read [adam] or [exp] as console markup ----------


@pytest.mark.parametrize(("override", "shown"), [
    ("optimizer.type=[adam]", "(--set optimizer.type=[adam]): optimizer.type:"),
    ("optimizer..lr=1", "--set 'optimizer..lr=1': malformed key 'optimizer..lr'"),
    ("[x]=1", "--set '[x]=1': malformed key '[x]'"),
])
def test_set_errors_show_the_override_as_typed(override: str, shown: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, tmp_path / "runs")
    assert main(["config", "show", str(config), "--set", override]) == 2
    _one_error_line(capsys.readouterr().err, shown)


def test_validate_and_run_echo_paths_with_brackets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "[exp]"
    folder.mkdir()
    good = _config(folder, folder / "[runs]")
    bad = folder / "bad.yaml"
    bad.write_text(good.read_text().replace("type: sgd", "type: '[sgd]'"))
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"ok {good}" in captured.out
    assert f"invalid {bad}: optimizer.type:" in captured.err and "'[sgd]'" in captured.err
    assert main(["run", str(good), "--run-id", "r", "--no-progress"]) == 0
    assert f"run directory: {folder / '[runs]' / 't' / 'r'}" in capsys.readouterr().out


def test_study_echoes_its_overrides_as_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "[exp]"
    assert main(["study", str(_study_file(tmp_path)), "--set", f"output.dir={out}", "--dir",
                 str(tmp_path / "s"), "-q"]) == 0
    assert f"overridden by --set: output.dir={out}" in capsys.readouterr().out
