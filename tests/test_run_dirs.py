"""Run directories you can trust: one name rule, overwrite only of runs, exclusive creation,
ids that cannot collide, and clean-up (orphaned temp files, the umask, refused starts)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import trainlab.api as tl
from tests.data.synthdata import write_idx
from tests.helpers import InterruptAt, write_config
from trainlab import runs
from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.errors import ConfigError, DataError, RunDirError, TrainlabError
from trainlab.names import NAME_RULE, check_name, is_safe_name
from trainlab.run_files import MARKER_FILE
from trainlab.runs import (
    STALE_TEMP_SECONDS,
    create_run_dir,
    default_run_id,
    discard_run_dir,
    open_run_dir,
    resume_run_dir,
)
from trainlab.studies.spec import load_study

BAD_NAMES = ["../../x", "..", ".", "/abs/path", "", "a/b", "a\x00b", "x\n", "-x", "x" * 129]


def tiny_config(tmp_path: Path, **sections: Any) -> Path:
    """A numpy run of 4 steps on 100 synthetic MNIST-like images (well under a second)."""
    folder = tmp_path / "mnist"
    if not folder.exists():
        write_idx(folder, n_train=100, n_test=20)
    defaults: dict[str, Any] = {
        "data": {"dataset": str(folder), "normalize": "scale"},
        "model": {"type": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 20},
    }
    return write_config(tmp_path / "c.yaml", tmp_path / "runs", **{**defaults, **sections})


# -- one name rule ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_the_name_rule_refuses_paths_and_odd_names(bad: str) -> None:
    assert not is_safe_name(bad)
    with pytest.raises(ConfigError, match="--run-id") as caught:
        check_name(bad, "--run-id")
    assert NAME_RULE in str(caught.value) or "empty" in str(caught.value)


def test_the_name_rule_takes_ordinary_names() -> None:
    for good in ("r1", "2x50-bn", "lambda_search.reduced", "20261124-101530-s0-3fa9", "x" * 128):
        assert check_name(good, "name") == good


@pytest.mark.parametrize("field", ["name", "output.run_id"])
def test_config_names_follow_the_rule(field: str) -> None:
    for bad in BAD_NAMES:
        section, _, key = field.rpartition(".")
        value: dict[str, Any] = {key: bad}
        data: dict[str, Any] = {"data": {"dataset": "mnist"}, "model": {"type": "linear"},
                                **({section: value} if section else value)}
        with pytest.raises(ConfigError, match=rf"{field}: .*(letters, digits|empty)"):
            RunConfig.from_dict(data)


@pytest.mark.parametrize("bad", ["../../x", "..", "/abs/path", "a/b", "x\n"])
def test_study_names_follow_the_rule(tmp_path: Path, bad: str) -> None:
    study_file = tmp_path / "s.yaml"
    study_file.write_text(yaml.safe_dump({
        "data": {"dataset": "mnist"}, "model": {"type": "linear"},
        # output two levels down, so that the escape ../../x would land in tmp_path/x
        "output": {"dir": str(tmp_path / "a" / "b")},
        "study": {"space": {"optimizer.lr": [0.1, 0.01]}},
    }))
    assert load_study(study_file).name == "run"
    with pytest.raises(ConfigError, match="--name"):
        load_study(study_file, name=bad)
    assert main(["study", "run", str(study_file), "--name", bad, "--quiet"]) == 2
    assert not (tmp_path / "x").exists()
    named = yaml.safe_load(study_file.read_text())
    named["study"]["name"] = bad
    study_file.write_text(yaml.safe_dump(named))
    with pytest.raises(ConfigError, match=r"study\.name"):
        load_study(study_file)


def test_run_id_cannot_leave_the_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``--run-id ../../x`` ran in tmp_path/x, outside runs/t/."""
    cfg = tiny_config(tmp_path)
    assert main(["run", str(cfg), "--run-id", "../../x", "--no-progress"]) == 2
    assert "--run-id '../../x'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match=r"run_id '\.\./\.\./x'"):
        tl.run(cfg, run_id="../../x", progress=False, echo=False)
    with pytest.raises(ConfigError, match=r"output\.run_id"):
        tl.run(cfg, overrides=["output.run_id=../../x"], progress=False, echo=False)
    assert not (tmp_path / "x").exists()


def test_overwrite_with_a_path_for_run_id_deletes_nothing(tmp_path: Path) -> None:
    """Before: ``--run-id .. --overwrite`` deleted runs/t/ and every run in it, and
    ``--run-id /some/folder --overwrite`` that folder's contents."""
    cfg = tiny_config(tmp_path)
    assert main(["run", str(cfg), "--run-id", "keep", "--no-progress"]) == 0
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    for bad in ("..", str(precious)):
        assert main(["run", str(cfg), "--run-id", bad, "--overwrite", "--no-progress"]) == 2
    assert (tmp_path / "runs" / "t" / "keep" / "summary.json").is_file()
    assert (precious / "thesis.tex").read_text() == "years of work"


# -- overwrite only what is ours ------------------------------------------------------------
def test_overwrite_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    """Before: any folder at runs/<name>/<id> had its contents deleted by --overwrite."""
    folder = tmp_path / "runs" / "t" / "notes"
    folder.mkdir(parents=True)
    (folder / "todo.txt").write_text("keep me")
    with pytest.raises(RunDirError, match=rf"--overwrite refuses to remove .*notes: it holds no trainlab run .*{MARKER_FILE}"):
        create_run_dir(tmp_path / "runs", "t", "notes", overwrite=True)
    assert (folder / "todo.txt").read_text() == "keep me"
    (folder / "todo.txt").unlink()
    os.symlink(tmp_path, tmp_path / "runs" / "t" / "link")
    with pytest.raises(RunDirError, match="symbolic link"):
        create_run_dir(tmp_path / "runs", "t", "link", overwrite=True)
    assert create_run_dir(tmp_path / "runs", "t", "notes", overwrite=True).path == folder  # empty: fine


def test_overwrite_replaces_a_run_marked_or_from_before_markers(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "t", "r")
    assert (run.path / MARKER_FILE).is_file() and run.fresh
    (run.path / "figures").mkdir()
    (run.path / "figures" / "curve.png").write_bytes(b"png")
    again = create_run_dir(tmp_path, "t", "r", overwrite=True)
    assert [p.name for p in again.path.iterdir()] == [MARKER_FILE]
    legacy = tmp_path / "t" / "old"  # written before markers: its config has a provenance section
    legacy.mkdir()
    (legacy / "config.yaml").write_text(yaml.safe_dump({"name": "t", "provenance": {"created": "x"}}))
    assert [p.name for p in create_run_dir(tmp_path, "t", "old", overwrite=True).path.iterdir()] == [MARKER_FILE]
    assert not [p for p in (tmp_path / "t").iterdir() if p.name.startswith(".")]  # no trash left


# -- exclusive creation, ids that cannot collide --------------------------------------------
def test_default_ids_carry_a_random_suffix() -> None:
    ids = {default_run_id(7) for _ in range(20)}
    assert len(ids) > 1
    for run_id in ids:
        stamp, seed, suffix = run_id.rsplit("-", 2)
        assert seed == "s7" and len(suffix) == 4 and int(suffix, 16) >= 0 and len(stamp) == 15


def test_a_taken_default_id_is_drawn_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(["same", "same", "other"])
    monkeypatch.setattr(runs, "default_run_id", lambda seed: next(drawn))
    first = create_run_dir(tmp_path, "t", seed=1)
    second = create_run_dir(tmp_path, "t", seed=1)
    assert (first.path.name, second.path.name) == ("same", "other")


def test_an_existing_empty_folder_is_not_taken_over(tmp_path: Path) -> None:
    """Exclusive creation: a folder another process just made (still empty) is not shared."""
    (tmp_path / "t" / "r").mkdir(parents=True)
    with pytest.raises(RunDirError, match="already exists"):
        create_run_dir(tmp_path, "t", "r")


def _start_at_once(config: str, barrier: Any) -> None:
    barrier.wait()
    tl.run(config, progress=False, echo=False)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_eight_runs_started_at_once_get_eight_directories(tmp_path: Path) -> None:
    """Before: ids were YYYYMMDD-HHMMSS-s<seed>, so runs started in one second collided."""
    cfg = tiny_config(tmp_path)
    context = multiprocessing.get_context("fork")  # the children start at once, with trainlab imported
    barrier = context.Barrier(8)
    workers = [context.Process(target=_start_at_once, args=(str(cfg), barrier)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * 8
    made = sorted((tmp_path / "runs" / "t").iterdir())
    assert len(made) == 8
    for path in made:
        summary = json.loads((path / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 4
        log = (path / "run.log").read_text()
        assert log.count(" run ") == 1 and str(path) in log  # its own log, not interleaved


# -- clean-up ---------------------------------------------------------------------------------
def _orphan(folder: Path, name: str, age: float) -> Path:
    """A temporary file as io.atomic_open names it, last written ``age`` seconds ago."""
    path = folder / f".{name}.k3x_9q2z.tmp"
    path.write_bytes(b"half a file")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_resume_removes_orphaned_temp_files(tmp_path: Path) -> None:
    """Before: the temporary files a kill -9 left stayed in the run directory for good."""
    run = create_run_dir(tmp_path, "t", "r")
    run.write_config({"name": "t"})
    (run.path / "figures").mkdir()
    orphans = [_orphan(run.path, "checkpoint.npz", 1.0), _orphan(run.path / "figures", "curve.png", 1.0)]
    keep = run.path / "notes.tmp"  # not a name atomic_open makes
    keep.write_text("mine")
    resume_run_dir(run.path)
    assert not any(p.exists() for p in orphans) and keep.exists()


def test_resume_cuts_the_torn_last_line_of_run_log(tmp_path: Path) -> None:
    """Before: after a kill in the middle of an append, the resume's first line ran on from the
    torn one ("... completed: test 2026-... run ..."), one line holding two (scripts/faults.py)."""
    run = create_run_dir(tmp_path, "t", "r")
    run.log("first")
    with open(run.log_path, "a", encoding="utf-8") as handle:
        handle.write("2026-11-24T10:15:30 compl")  # the part of "completed: ..." written before the kill
    resume_run_dir(run.path).log("resumed")
    assert [line.split(" ", 1)[1] for line in run.log_path.read_text().splitlines()] == ["first", "resumed"]


def test_opening_removes_only_stale_temp_files(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "t", "r")
    run.write_config({"name": "t"})
    stale = _orphan(run.path, "checkpoint.npz", STALE_TEMP_SECONDS + 60)
    live = _orphan(run.path, "metrics.csv", 1.0)  # may be a live writer's: a report of a running run
    open_run_dir(run.path)
    assert not stale.exists() and live.exists()


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    """Before: atomically written files kept mkstemp's 0600 whatever the umask."""
    script = (
        "import sys; from trainlab.runs import create_run_dir\n"
        "run = create_run_dir(sys.argv[1], 't', 'r')\n"
        "run.write_config({'a': 1}); run.write_summary({'status': 'completed'}); run.log('hello')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, preexec_fn=lambda: os.umask(0o027))
    run_path = tmp_path / "t" / "r"
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_path.iterdir()}
    assert modes == {name: 0o640 for name in ("config.yaml", "summary.json", "run.log", MARKER_FILE)}
    assert run_path.stat().st_mode & 0o777 == 0o750


def test_a_refused_start_leaves_no_run_directory(tmp_path: Path) -> None:
    """Before: a missing dataset left an empty run directory behind."""
    cfg = tiny_config(tmp_path, data={"dataset": str(tmp_path / "no-such-data"), "normalize": "scale"})
    with pytest.raises(DataError):
        tl.run(cfg, run_id="r", progress=False, echo=False)
    with pytest.raises(DataError):
        tl.run(cfg, progress=False, echo=False)
    assert not (tmp_path / "runs" / "t").exists()  # nor the run name's folder it would have made


def test_discard_keeps_what_it_did_not_write(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path, "t", "r")
    (run.path / "mine.txt").write_text("a file someone put there")
    assert not discard_run_dir(run) and run.path.is_dir()
    reopened = resume_run_dir(run.path)  # not created by this call: never removed
    (run.path / "mine.txt").unlink()
    assert not discard_run_dir(reopened) and run.path.is_dir()
    assert discard_run_dir(run) and not run.path.exists()


def test_a_refused_resume_writes_no_report_and_keeps_the_summary(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a resume that failed before training rewrote summary.json as failed and wrote
    report.html."""
    reports: list[Path] = []
    monkeypatch.setattr(tl, "write_report", lambda path: reports.append(Path(path)) or Path(path))
    cfg = tiny_config(tmp_path, output={"dir": str(tmp_path / "runs"), "report": True},
                      train={"epochs": 1, "batch_size": 20, "eval_every": 2})
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="r", progress=False, echo=False, callbacks=[InterruptAt(2)])
    run_path = tmp_path / "runs" / "t" / "r"
    assert len(reports) == 1
    summary = (run_path / "summary.json").read_text()
    for checkpoint in run_path.glob("checkpoint.*"):
        checkpoint.unlink()  # nothing to resume from: refused before the first step
    with pytest.raises(TrainlabError):
        tl.run(resume=run_path, progress=False, echo=False)
    assert len(reports) == 1
    assert (run_path / "summary.json").read_text() == summary


def test_a_damaged_config_or_summary_is_a_clear_error_not_a_traceback(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: r\nmodel: [\n", encoding="utf-8")  # edited by hand, cut off
    with pytest.raises(RunDirError, match="not readable YAML"):
        runs.open_run_dir(run).read_config()
    assert main(["evaluate", str(run)]) == RunDirError.exit_code  # the message, no traceback
    err = capsys.readouterr().err
    assert "not readable YAML" in err and "Traceback" not in err
    (run / "config.yaml").write_text("name: r\n", encoding="utf-8")
    (run / "summary.json").write_text('{"status": "comp', encoding="utf-8")
    with pytest.raises(RunDirError, match="not readable JSON"):
        runs.open_run_dir(run).read_summary()
    (run / "summary.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RunDirError, match="not a JSON object"):
        runs.open_run_dir(run).read_summary()
