"""Interrupts keep progress: SIGTERM is handled like Ctrl-C, both stop the run between two
steps with a checkpoint of that step, and the printed resume step is the checkpoint's."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainlab.api as tl
from tests.data.synthdata import write_idx
from tests.helpers import InterruptAt, timeless, write_config
from trainlab.callbacks.base import Callback
from trainlab.engines.interrupts import StopSignals
from trainlab.engines.resume import checkpoint_step
from trainlab.run_files import read_metrics_csv


class SignalAt(Callback):
    """Sends ``signum`` to this process at the end of the epoch that ends at step ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_epoch_end(self, state: Any) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A tiny MNIST-like folder of IDX files (no real data needed)."""
    return write_idx(tmp_path / "mnist", n_train=200, n_test=40)


def _config(tmp_path: Path, dataset: Path, engine: str = "numpy", **train: Any) -> Path:
    # 9 steps per epoch and an evaluation every 4: an epoch end falls between two evaluations,
    # and checkpoints only every 2nd evaluation, so a stop at an epoch end is nobody's checkpoint.
    return write_config(tmp_path / "c.yaml", tmp_path / "runs", engine=engine,
                        data={"dataset": str(dataset), "normalize": "channel", "val_fraction": 0.1},
                        model={"type": "mlp", "hidden": [8], "dropout": 0.2},
                        optimizer={"type": "adam", "lr": 0.001},
                        train={"epochs": 3, "batch_size": 20, "eval_every": 4, "checkpoint_every": 2,
                               "log_steps": 1, **train})


# -- the signal handlers ---------------------------------------------------------------------------
def test_first_signal_asks_to_stop_a_second_one_stops_at_once_and_handlers_are_restored() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as signals:
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_ignored_signals_stay_ignored_and_other_threads_install_nothing() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    seen: list[Any] = []

    def in_thread() -> None:
        with StopSignals():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]


# -- a run stopped by a signal ---------------------------------------------------------------------
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize(("engine", "signum"), [("numpy", signal.SIGTERM), ("numpy", signal.SIGINT),
                                                ("torch", signal.SIGTERM)],
                         ids=["numpy-SIGTERM", "numpy-SIGINT", "torch-SIGTERM"])
def test_signal_checkpoints_the_step_reached_and_the_resume_is_exact(
    tmp_path: Path, dataset: Path, engine: str, signum: int
) -> None:
    cfg = _config(tmp_path, dataset, engine)
    reference = tl.run(cfg, run_id="whole", progress=False, echo=False)
    handlers = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[SignalAt(18, signum)])
    assert signal.getsignal(signal.SIGTERM) == handlers  # installed for the run only
    cut = tmp_path / "runs" / "t" / "cut"
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    log = (cut / "run.log").read_text()
    assert f"{signal.Signals(signum).name} received: stopping at step 18" in log
    assert f"interrupted at step 18; resume with: trainlab run --resume {cut}\n" in log
    assert checkpoint_step(cut, engine) == 18  # evaluations at 16 and 20: the checkpoint is the stop's

    resumed = tl.run(resume=cut, progress=False, echo=False)
    assert "resumed at step 18 of 27" in (cut / "run.log").read_text()
    assert timeless(resumed.metrics) == timeless(reference.metrics)  # the 20's train row spans the stop
    assert timeless(resumed.steps) == timeless(reference.steps)
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert resumed.summary["test_loss"] == reference.summary["test_loss"]


def test_a_keyboard_interrupt_mid_evaluation_names_the_step_of_the_checkpoint_on_disk(
    tmp_path: Path, dataset: Path
) -> None:
    cfg = _config(tmp_path, dataset)
    with pytest.raises(KeyboardInterrupt):  # raised inside a callback: no consistent state to save
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(12)])
    cut = tmp_path / "runs" / "t" / "cut"
    log = (cut / "run.log").read_text()
    assert "interrupted at step 8; resume with" in log and "interrupted at step 12" not in log
    assert checkpoint_step(cut, "numpy") == 8
    reference = tl.run(cfg, run_id="whole", progress=False, echo=False)
    assert timeless(tl.run(resume=cut, progress=False, echo=False).metrics) == timeless(reference.metrics)


def test_an_interrupt_without_checkpoints_says_there_is_nothing_to_resume(tmp_path: Path, dataset: Path) -> None:
    cfg = _config(tmp_path, dataset)
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, overrides=["output.save_checkpoint=false"], run_id="cut", progress=False, echo=False,
               callbacks=[SignalAt(9, signal.SIGTERM)])
    cut = tmp_path / "runs" / "t" / "cut"
    assert not (cut / "checkpoint.npz").exists()
    assert "interrupted before any checkpoint (output.save_checkpoint is off)" in (cut / "run.log").read_text()


class _SignalAtEvaluation(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_evaluate(self, state: Any, rows: list[dict[str, Any]]) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class _InterruptAtTrainEnd(Callback):
    """A kill after the stop's checkpoint, before the final one."""

    def on_train_end(self, state: Any) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("stop", [_SignalAtEvaluation, _InterruptAtTrainEnd], ids=["SIGTERM", "killed"])
def test_an_early_stopped_run_interrupted_at_its_stop_stays_stopped_on_resume(
    tmp_path: Path, dataset: Path, stop: type[Callback]
) -> None:
    stopping = {"early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 10.0},
                "epochs": 6, "checkpoint_every": 1}
    cfg = _config(tmp_path, dataset, **stopping)
    reference = tl.run(cfg, run_id="whole", progress=False, echo=False)
    stop_step = reference.summary["steps"]
    assert reference.summary["status"] == "stopped_early" and stop_step < 54
    with pytest.raises(KeyboardInterrupt):
        callback = stop(stop_step) if stop is _SignalAtEvaluation else stop()  # type: ignore[call-arg]
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[callback])
    resumed = tl.run(resume=tmp_path / "runs" / "t" / "cut", progress=False, echo=False)
    assert resumed.summary["status"] == "stopped_early" and resumed.summary["steps"] == stop_step
    assert timeless(resumed.metrics) == timeless(reference.metrics)


# -- the command line, signalled from outside ----------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_run_stopped_by_a_signal_exits_130_with_a_true_resume_step(
    tmp_path: Path, dataset: Path, signum: int
) -> None:
    cfg = _config(tmp_path, dataset, epochs=2000)  # ~18,000 steps: far longer than the test waits
    cut = tmp_path / "runs" / "t" / "cut"
    env = {**os.environ, "TRAINLAB_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "run", str(cfg), "--run-id", "cut",
                             "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (cut / "metrics.csv").exists() and len(read_metrics_csv(cut / "metrics.csv")[0]) >= 4:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be signalled"
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    match = re.search(r"interrupted at step (\d+); resume with: trainlab run --resume (\S+)", output)
    assert match is not None, output
    step = int(match.group(1))
    assert step > 0 and step == checkpoint_step(cut, "numpy") == summary["steps"]
    with np.load(cut / "checkpoint.npz") as saved:
        assert json.loads(str(saved["meta"]))["step"] == step
    # The resume starts where the message said (stopped again at its first evaluation).
    first_eval = (step // 4 + 1) * 4
    with pytest.raises(KeyboardInterrupt):
        tl.run(resume=Path(match.group(2)), progress=False, echo=False, callbacks=[InterruptAt(first_eval)])
    assert f"resumed at step {step} of 18000" in (cut / "run.log").read_text()
