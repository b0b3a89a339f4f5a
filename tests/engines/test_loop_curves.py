"""The shared loop's clock and per-step log: metrics.csv's ``elapsed`` column, ``steps.csv``
every ``train.log_steps`` steps, and both across a SIGKILL and a resume (real short runs on
an MNIST subset, seconds each), plus :mod:`trainlab.engines.step_log` on its own."""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trainlab.api as tl
from tests.helpers import timeless, write_config
from trainlab.engines.step_log import STEPS_COLUMNS, StepLog, read_steps_csv
from trainlab.errors import TrainlabError
from trainlab.run_files import read_metrics_csv

STEPS_PER_EPOCH = 40  # 2000 training images (write_config's limit) in batches of 50


def _config(tmp_path: Path, **train: object) -> Path:
    return write_config(tmp_path / "c.yaml", tmp_path / "runs",
                        train={"epochs": 2, "batch_size": 50, "eval_every": 10, **train})


def _eval_elapsed(metrics: list[dict]) -> list[float]:
    """The elapsed value of each evaluation (one per step; every split row carries the same)."""
    by_step: dict[int, set[float]] = {}
    for row in metrics:
        by_step.setdefault(row["step"], set()).add(row["elapsed"])
    assert all(len(values) == 1 for values in by_step.values()), by_step
    return [next(iter(by_step[step])) for step in sorted(by_step)]


def _checkpoint_meta(run_path: Path) -> dict:
    with np.load(run_path / "checkpoint.npz", allow_pickle=False) as saved:
        return json.loads(str(saved["meta"]))


# -- real runs ----------------------------------------------------------------------------
@pytest.mark.usefixtures("real_data")
def test_elapsed_grows_at_every_evaluation_and_steps_csv_has_a_row_every_n_steps(tmp_path: Path) -> None:
    run = tl.run(_config(tmp_path, log_steps=7), run_id="r", progress=False, echo=False)
    _, columns = read_metrics_csv(run.path / "metrics.csv")
    assert columns[6] == "elapsed"  # right after the fixed columns, before the monitors
    assert all(isinstance(row["elapsed"], float) for row in run.metrics)
    clock = _eval_elapsed(run.metrics)
    assert len(clock) == 8 and clock[0] > 0 and all(b > a for a, b in itertools.pairwise(clock))
    assert clock[-1] <= run.summary["train_seconds"]

    assert [row["step"] for row in run.steps] == list(range(7, 81, 7))
    assert [row["epoch"] for row in run.steps] == [round(s / STEPS_PER_EPOCH, 6) for s in range(7, 81, 7)]
    assert all(row["lr"] == 0.1 and np.isfinite(row["loss"]) for row in run.steps)
    times = [row["elapsed"] for row in run.steps]
    assert times[0] > 0 and times == sorted(times) and times[-1] <= run.summary["train_seconds"]
    header = (run.path / "steps.csv").read_text().splitlines()[0]
    assert header == ",".join(STEPS_COLUMNS)


@pytest.mark.usefixtures("real_data")
def test_steps_csv_holds_the_loss_of_each_single_step(tmp_path: Path) -> None:
    # With an evaluation after every step, the train row's mean is the loss of that one step.
    run = tl.run(_config(tmp_path, epochs=None, steps=12, log_steps=1, eval_every=1), run_id="r",
                 progress=False, echo=False)
    train_losses = [row["loss"] for row in run.metrics if row["split"] == "train"]
    assert [row["step"] for row in run.steps] == list(range(1, 13))
    assert [row["loss"] for row in run.steps] == train_losses


@pytest.mark.usefixtures("real_data")
def test_no_steps_csv_without_log_steps(tmp_path: Path) -> None:
    run = tl.run(_config(tmp_path), run_id="r", progress=False, echo=False)
    assert not (run.path / "steps.csv").exists() and run.steps == []


# The child process kills itself (SIGKILL: no cleanup, no flush) in a callback hook at a step.
KILLER = """
import os, signal, sys
import trainlab.api as tl
from trainlab.callbacks import Callback

class Kill(Callback):
    def on_evaluate(self, state, rows):
        if sys.argv[2] == "on_evaluate" and state.step >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, state):
        if sys.argv[2] == "on_epoch_end" and state.step >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

tl.run(sys.argv[1], run_id="killed", progress=False, echo=False, callbacks=[Kill()])
"""


@pytest.mark.usefixtures("real_data")
@pytest.mark.parametrize(("train", "hook", "kill_step", "checkpoint_step", "last_row"), [
    # In the evaluation of step 60, before its checkpoint: the rows up to 60 are on disk
    # (appended at the progress update of step 60), past the checkpoint of step 50.
    ({"batch_size": 50, "eval_every": 10, "log_steps": 3}, "on_evaluate", 60, 50, 60),
    # Right after the checkpoint of step 31 (one epoch of batches of 64), whose row was
    # appended only by the flush before that checkpoint (the last progress update was at 30).
    ({"batch_size": 64, "log_steps": 1}, "on_epoch_end", 31, 31, 31),
])
def test_kill_and_resume_continue_the_clock_without_duplicate_or_missing_steps(
        tmp_path: Path, train: dict, hook: str, kill_step: int, checkpoint_step: int, last_row: int) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 2, **train})
    whole = tl.run(cfg, run_id="whole", progress=False, echo=False)
    env = {**os.environ, "TRAINLAB_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", KILLER, str(cfg), hook, str(kill_step)], env=env,
                           capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    killed = tmp_path / "runs" / "t" / "killed"
    checkpoint = _checkpoint_meta(killed)
    assert checkpoint["step"] == checkpoint_step
    assert max(row["step"] for row in read_steps_csv(killed / "steps.csv")) == last_row
    with open(killed / "steps.csv", "a", encoding="utf-8") as handle:
        handle.write("99,1.575,0.4")  # as a kill in the middle of an append leaves it

    resumed = tl.run(resume=killed, progress=False, echo=False)
    every, total = train["log_steps"], whole.summary["steps"]
    assert [row["step"] for row in resumed.steps] == list(range(every, total + 1, every))  # once each
    assert timeless(resumed.steps) == timeless(whole.steps)  # the same losses as an unbroken run
    assert timeless(resumed.metrics) == timeless(whole.metrics)
    clock = _eval_elapsed(resumed.metrics)
    assert all(b > a for a, b in itertools.pairwise(clock))
    after = [row["elapsed"] for row in resumed.metrics if row["step"] > checkpoint_step]
    assert after and min(after) >= checkpoint["train_seconds"]  # resumed from the saved clock, not 0
    times = [row["elapsed"] for row in resumed.steps]
    assert times == sorted(times)
    assert resumed.summary["train_seconds"] >= checkpoint["train_seconds"] > 0


@pytest.mark.usefixtures("real_data")
def test_torch_engine_logs_steps_from_its_device_losses(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="torch",
                       train={"steps": 8, "batch_size": 50, "eval_every": 1, "log_steps": 2})
    run = tl.run(cfg, run_id="r", progress=False, echo=False)
    train_losses = {row["step"]: row["loss"] for row in run.metrics if row["split"] == "train"}
    assert [row["step"] for row in run.steps] == [2, 4, 6, 8]
    for row in run.steps:
        assert row["loss"] == pytest.approx(train_losses[row["step"]], rel=1e-6)


# -- the Python API -------------------------------------------------------------------------
@pytest.mark.usefixtures("real_data")
def test_series_against_elapsed_and_a_run_written_before_the_column(tmp_path: Path) -> None:
    run = tl.run(_config(tmp_path), run_id="r", progress=False, echo=False)
    by_time = run.series("accuracy", "val", x="elapsed")
    by_step = run.series("accuracy", "val")
    assert [v for _, v in by_time] == [v for _, v in by_step] and len(by_step) == 8
    assert [t for t, _ in by_time] == _eval_elapsed(run.metrics)
    assert all(isinstance(s, int) for s, _ in by_step)
    assert [e for e, _ in run.series("loss", "train", x="epoch")] == [0] * 3 + [1] * 4 + [2]
    with pytest.raises(TrainlabError, match="x must be one of step, epoch, elapsed"):
        run.series("loss", "val", x="time")

    # A run directory from before the column: its metrics.csv without elapsed.
    rows, columns = read_metrics_csv(run.path / "metrics.csv")
    with open(run.path / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [c for c in columns if c != "elapsed"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    old = tl.open_run(run.path)
    assert old.series("accuracy", "val") == by_step
    assert old.series("accuracy", "val", x="elapsed") == [] and old.steps == []


# -- steps.csv on its own -------------------------------------------------------------------
def test_step_log_appends_whole_rows_and_a_resume_keeps_those_up_to_its_step(tmp_path: Path) -> None:
    path = tmp_path / "steps.csv"
    log = StepLog(path, every=2, steps_per_epoch=4)
    log.begin(0, resume=False)
    assert path.read_text() == "step,epoch,loss,lr,elapsed\n"
    for step in range(1, 9):
        if log.due(step):
            log.record(step, 1.0 / step, 0.5, step * 0.25)
    assert read_steps_csv(path) == []  # nothing is written before a flush
    log.flush()
    log.flush()  # a second flush with nothing new writes nothing
    rows = read_steps_csv(path)
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert rows[1] == {"step": 4, "epoch": 1.0, "loss": 0.25, "lr": 0.5, "elapsed": 1.0}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("10,2.5,0.1")  # torn: no line end
    assert [r["step"] for r in read_steps_csv(path)] == [2, 4, 6, 8]

    StepLog(path, every=2, steps_per_epoch=4).begin(5, resume=True)
    assert path.read_text() == "step,epoch,loss,lr,elapsed\n2,0.5,0.5,0.5,0.5\n4,1.0,0.25,0.5,1.0\n"
    StepLog(path, every=2, steps_per_epoch=4).begin(0, resume=False)  # a new run starts empty
    assert read_steps_csv(path) == []


def test_step_log_reads_device_losses_in_one_transfer_and_refuses_a_bad_interval(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "steps.csv"
    log = StepLog(path, every=1, steps_per_epoch=10)
    log.begin(0, resume=False)
    for step, loss in enumerate((2.5, 1.25, float("nan")), start=1):
        log.record(step, torch.tensor(loss, dtype=torch.float32), 0.1, 0.0)
    log.flush()
    losses = [row["loss"] for row in read_steps_csv(path)]
    assert losses[:2] == [2.5, 1.25] and np.isnan(losses[2])
    assert read_steps_csv(tmp_path / "missing.csv") == []
    with pytest.raises(ValueError, match="every must be >= 1"):
        StepLog(path, every=0, steps_per_epoch=10)
