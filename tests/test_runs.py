"""The run directory: files, atomic metrics, refusal to clobber, resume bookkeeping."""

from __future__ import annotations

import builtins
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from trainlab.errors import RunDirError
from trainlab.run_files import MARKER_FILE, read_metrics_csv
from trainlab.runs import create_run_dir, open_run_dir


def test_run_dir_files(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "study", "r1")
    run.write_config({"name": "study", "seed": 3})
    run.append_metrics([{"epoch": 1, "step": 10, "split": "val", "loss": 1.25, "accuracy": 0.5, "lr": 0.1}])
    run.append_metrics([{"epoch": 2, "step": 20, "split": "val", "loss": 1.0, "accuracy": 0.6, "lr": 0.1,
                         "grad_norm": 2.5}])
    run.write_summary({"test_accuracy": 0.61, "status": "completed"})
    run.log("hello")
    rows, columns = read_metrics_csv(run.metrics_path)
    assert columns[:6] == ["epoch", "step", "split", "loss", "accuracy", "lr"]
    assert columns[-1] == "grad_norm"
    assert rows[0]["loss"] == 1.25 and "grad_norm" not in rows[0] and rows[1]["grad_norm"] == 2.5
    assert json.loads(run.summary_path.read_text())["test_accuracy"] == 0.61
    assert "hello" in run.log_path.read_text()
    reopened = open_run_dir(run.path)
    assert reopened.read_config() == {"name": "study", "seed": 3}
    assert reopened.metrics == rows


def test_existing_run_dir_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "s", "r")
    run.write_config({"a": 1})
    with pytest.raises(RunDirError, match=r"already exists.*--resume"):
        create_run_dir(tmp_path, "s", "r")
    (run.path / "figures").mkdir()
    fresh = create_run_dir(tmp_path, "s", "r", overwrite=True)
    assert [p.name for p in fresh.path.iterdir()] == [MARKER_FILE]  # nothing of the old run is left


def test_resume_truncates_rows_after_checkpoint(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "s", "r")
    run.append_metrics([{"step": s, "split": "val", "loss": 1.0 / s} for s in (1, 2, 3)])
    resumed = create_run_dir(tmp_path, "s", "r", resume=True)
    assert [r["step"] for r in resumed.metrics] == [1, 2, 3]
    resumed.truncate_metrics(2)
    assert [r["step"] for r in read_metrics_csv(run.metrics_path)[0]] == [1, 2]


def test_resume_of_missing_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="cannot resume"):
        create_run_dir(tmp_path, "s", "nope", resume=True)


def test_open_non_run_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a trainlab run directory"):
        open_run_dir(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RunDirError, match="cannot write the run directory"):
            create_run_dir(locked, "s", "r")
    finally:
        locked.chmod(0o700)


def _denied(path: Any) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))


def test_unwritable_output_dir_for_everyone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-only folder injected (EACCES from mkdir under it), so root runs it too."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = os.mkdir

    def read_only_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).is_relative_to(locked) and not Path(path).exists():  # EEXIST comes first
            raise _denied(path)
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    with pytest.raises(RunDirError) as caught:
        create_run_dir(locked, "s", "r")
    assert str(caught.value) == (f"cannot write the run directory {locked / 's' / 'r'}: Permission denied; "
                                 "set output.dir (or --set output.dir=...) to a writable folder")
    assert list(locked.iterdir()) == []


def test_unwritable_marker_removes_the_new_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is made but its marker cannot be written (EACCES, for root too): the error
    says so and the empty run directory is not left behind to block the next try."""
    real_open = builtins.open

    def no_marker(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int) and Path(file).name == MARKER_FILE and Path(file).is_relative_to(tmp_path):
            raise _denied(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_marker)
    with pytest.raises(RunDirError) as caught:
        create_run_dir(tmp_path, "s", "r")
    assert str(caught.value).startswith(f"cannot write the run directory {tmp_path / 's' / 'r'}: Permission denied;")
    assert list((tmp_path / "s").iterdir()) == []
    monkeypatch.undo()
    assert (create_run_dir(tmp_path, "s", "r").path / MARKER_FILE).is_file()


def test_output_dir_under_a_file_is_unwritable(tmp_path: Path) -> None:
    # Works as root too: a path through a regular file can never be created.
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(RunDirError, match="cannot write the run directory"):
        create_run_dir(blocker, "s", "r")
