"""The run directory: files, atomic metrics, refusal to clobber, resume bookkeeping."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def test_output_dir_under_a_file_is_unwritable(tmp_path: Path) -> None:
    # Works as root too: a path through a regular file can never be created.
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(RunDirError, match="cannot write the run directory"):
        create_run_dir(blocker, "s", "r")
