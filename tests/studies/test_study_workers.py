"""Many workers on one study, a worker killed with SIGKILL mid-trial and restarted.

Real ``trainlab study`` processes on tiny MNIST runs, against PostgreSQL (3 separate
workers, as on 3 machines) and against the default journal file (``--workers 3``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

import trainlab.studies.storage as storage_module
from tests.studies.conftest import write_study
from trainlab.api import execute_trial
from trainlab.studies import Options, load_study, open_storage, open_study_storage
from trainlab.studies.optuna_adapter import trial_id as trial_id_of
from trainlab.studies.results import RESULTS_CSV
from trainlab.studies.runner import Worker
from trainlab.studies.storage import Heartbeat, reclaim_dead

pytestmark = pytest.mark.usefixtures("real_data")

GRID = {"optimizer.lr": [0.02, 0.05, 0.1, 0.2], "model.activation": ["relu", "tanh", "sigmoid"]}  # 12 trials
SLOWER = {"limit": {"train": 1500, "val": 200, "test": 200}}  # about 0.3 s a trial


def _study_file(tmp_path: Path) -> Path:
    data = {"dataset": "mnist", "normalize": "scale", **SLOWER}
    return write_study(tmp_path / "grid.yaml", {"space": GRID}, tmp_path / "runs", name="grid", data=data,
                       train={"epochs": 3, "batch_size": 50})


def _start(path: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "trainlab.cli", "study", str(path), "-q", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _trials(handle: Any) -> list[Any]:
    """Every trial of the study "grid", all attempts included."""
    out: list[Any] = []
    for frozen in handle.storage.get_all_studies():
        if frozen.user_attrs.get("trainlab_study") == "grid":
            out += handle.storage.get_all_trials(handle.storage.get_study_id_from_name(frozen.study_name))
    return out


def _child_of(parent: int) -> Callable[[int], bool]:
    def check(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return int(stat.rsplit(")", 1)[1].split()[1]) == parent

    return check


def _kill_one_mid_trial(handle: Any, eligible: Callable[[int], bool], deadline: float = 60.0) -> int:
    """Wait until two trials finished, then SIGKILL a worker (``eligible``) in mid-trial."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        try:
            trials = _trials(handle)
        except Exception:  # the study may not exist yet
            trials = []
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        running = [t.user_attrs.get("worker", {}).get("pid") for t in trials if t.state == TrialState.RUNNING]
        victims = [pid for pid in running if pid and eligible(pid)]
        if done >= 2 and victims:
            # Freeze the worker, then check its trial is still running: a trial can finish
            # between the read above and the kill, and then there would be nothing to re-run.
            victim = victims[0]
            os.kill(victim, signal.SIGSTOP)
            still = [t for t in _trials(handle) if t.state == TrialState.RUNNING
                     and t.user_attrs.get("worker", {}).get("pid") == victim]
            if still:
                os.kill(victim, signal.SIGKILL)
                return int(victim)
            os.kill(victim, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("no worker was running a trial")


def _check_complete(handle: Any, study_dir: Path, killed: int) -> None:
    trials = _trials(handle)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = Counter(t.user_attrs["key"] for t in complete)
    assert sorted(keys) == [f"t{i:04d}" for i in range(12)] and set(keys.values()) == {1}, keys
    points = Counter((t.params["optimizer.lr"], t.params["model.activation"]) for t in complete)
    assert len(points) == 12 and set(points.values()) == {1}  # no grid point twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    requeued = [t for t in trials if t.state == TrialState.FAIL]
    assert len(requeued) == 1 and requeued[0].user_attrs["worker"]["pid"] == killed
    (retry,) = [t for t in complete if t.user_attrs["key"] == requeued[0].user_attrs["key"]]
    assert retry.system_attrs["failed_trial"] == requeued[0].number  # re-queued, then run once
    rows = list(csv.DictReader((study_dir / RESULTS_CSV).open()))
    assert len(rows) == 12 and {r["state"] for r in rows} == {"COMPLETE"}
    assert all(r["test_accuracy"] and r["objective"] for r in rows)
    for row in rows:  # every trial is a normal, finished run directory
        assert (study_dir / row["trial"] / "summary.json").is_file()


def test_three_workers_on_postgresql_one_killed_and_restarted(tmp_path: Path, postgres_url: str) -> None:
    path = _study_file(tmp_path)
    args = ("--storage", postgres_url, "--heartbeat", "1")
    workers = [_start(path, *args) for _ in range(3)]
    handle = open_storage(postgres_url, heartbeat=None)
    pids = {w.pid for w in workers}
    killed = _kill_one_mid_trial(handle, pids.__contains__)
    victim = next(w for w in workers if w.pid == killed)
    victim.wait(timeout=10)
    workers.append(_start(path, *args))  # restarted
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode in (0, -signal.SIGKILL), out.decode()
    _check_complete(handle, tmp_path / "runs" / "grid", killed)


def test_workers_3_on_the_journal_file_one_killed_and_restarted(tmp_path: Path) -> None:
    path = _study_file(tmp_path)
    parent = _start(path, "--workers", "3")
    study = load_study(path)
    journal = study.dir / "study.journal"
    for _ in range(200):
        if journal.exists():
            break
        time.sleep(0.05)
    handle = open_study_storage(study, Options())
    killed = _kill_one_mid_trial(handle, _child_of(parent.pid))
    restarted = _start(path)
    for process in (parent, restarted):
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out.decode()
    _check_complete(handle, study.dir, killed)
    again = _start(path)  # a finished study: the same command changes nothing
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and len(_trials(handle)) == 13, out.decode()


def test_heartbeat_requeues_the_trial_of_a_silent_worker(tmp_path: Path, postgres_url: str) -> None:
    """A worker on another machine stops beating: after the grace period its trial runs again."""
    path = write_study(tmp_path / "hb.yaml", {"space": {"optimizer.lr": [0.1, 0.2]}}, tmp_path / "runs", name="hb")
    study = load_study(path)
    handle = open_storage(postgres_url, heartbeat=1)
    worker = Worker(study, handle, Options(echo=False), execute=execute_trial)
    ostudy, _ = worker.prepare(study.stages[0])
    storage = handle.storage  # the one ostudy was opened on
    trial_id = worker._claim(ostudy)
    assert trial_id is not None
    storage.set_trial_user_attr(trial_id, "worker", {"host": "elsewhere", "pid": 1})
    with Heartbeat(handle, trial_id):
        time.sleep(1.5)
        reclaim_dead(handle, ostudy)  # beating: not stale
        assert storage.get_trial(trial_id).state == TrialState.RUNNING
    time.sleep(3.5)  # silent for longer than the grace period (3 beats)
    reclaim_dead(handle, ostudy)
    assert storage.get_trial(trial_id).state == TrialState.FAIL
    waiting = ostudy.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 2 and {t.user_attrs["key"] for t in waiting} == {"t0000", "t0001"}


def test_a_requeued_trial_is_not_taken_for_dead_again_while_it_is_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry of a dead worker's trial does not carry that worker's name: between a live
    worker's claim and its first write, other workers must not requeue it a second time."""
    path = write_study(tmp_path / "rq.yaml", {"space": {"optimizer.lr": [0.1, 0.2]}}, tmp_path / "runs", name="rq")
    study = load_study(path)
    handle = open_study_storage(study, Options(echo=False))
    worker = Worker(study, handle, Options(echo=False), execute=execute_trial)
    ostudy, _ = worker.prepare(study.stages[0])
    storage = handle.storage  # the one ostudy was opened on
    first = worker._claim(ostudy)
    assert first is not None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    storage.set_trial_user_attr(first, "worker", {"host": socket.gethostname(), "pid": dead.pid})
    assert reclaim_dead(handle, ostudy) == 1
    assert storage.get_trial(first).user_attrs["error"] == f"worker {socket.gethostname()}:{dead.pid} died"
    (retry,) = [t for t in ostudy.get_trials(states=(TrialState.WAITING,))
                if t.user_attrs["key"] == storage.get_trial(first).user_attrs["key"]]
    assert "worker" not in retry.user_attrs and "error" not in retry.user_attrs
    assert retry.system_attrs["failed_trial"] == storage.get_trial(first).number
    retry_id = trial_id_of(storage, ostudy.study_name, retry.number)
    claimed = storage.set_trial_state_values(retry_id, state=TrialState.RUNNING)
    assert claimed  # claimed; its worker has not written its name yet
    assert reclaim_dead(handle, ostudy) == 0
    assert storage.get_trial(retry_id).state == TrialState.RUNNING
    # A claim that never gets a name (its worker died in that moment) is requeued after a grace.
    monkeypatch.setattr(storage_module, "UNNAMED_CLAIM_GRACE_S", 0.0)
    assert reclaim_dead(handle, ostudy) == 1
    assert storage.get_trial(retry_id).state == TrialState.FAIL


# -- the coordinator killed: its workers end, a relaunch finishes ----------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _children(parent: int) -> list[int]:
    is_child = _child_of(parent)
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and is_child(int(p.name))]


def _kill_mid_trial(parent: subprocess.Popen[bytes], study: Any, log: Path) -> list[int]:
    """Wait until both workers of ``parent`` train a trial, then kill -9 ``parent``; its children."""
    handle = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if handle is None and (study.dir / "study.journal").exists():
            handle = open_study_storage(study, Options())
        running = [t for t in _trials(handle) if t.state == TrialState.RUNNING] if handle else []
        pids = {t.user_attrs.get("worker", {}).get("pid") for t in running}
        training = [t for t in running if (study.dir / t.user_attrs["key"] / "metrics.csv").exists()]
        if len(pids & set(_children(parent.pid))) == 2 and len(training) == 2:
            children = _children(parent.pid)  # the workers, and multiprocessing's resource tracker
            parent.kill()
            return children
        time.sleep(0.05)
    raise AssertionError(f"the two workers never trained at once: {log.read_text()}")


def test_killing_the_coordinator_ends_its_workers_and_a_relaunch_finishes(tmp_path: Path) -> None:
    """kill -9 of ``trainlab study --workers 2`` while both workers train: they stop within
    seconds (each handing back its trial), and the same command then finishes the study."""
    space = {"optimizer.lr": [0.05, 0.1, 0.2, 0.4]}  # 4 trials of a few seconds each
    path = write_study(tmp_path / "grid.yaml", {"space": space}, tmp_path / "runs", name="grid",
                       data={"dataset": "mnist", "normalize": "scale", **SLOWER},
                       train={"epochs": 100, "batch_size": 50}, output={"report": False})
    study = load_study(path)
    with (tmp_path / "first.log").open("wb") as log:  # a file: no pipe left unread once the parent is gone
        command = [sys.executable, "-m", "trainlab.cli", "study", str(path), "-q", "--workers", "2"]
        parent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    children: list[int] = []
    try:
        children = _kill_mid_trial(parent, study, tmp_path / "first.log")
        parent.wait()
        stopped = time.monotonic() + 5  # they stop in about a second; unstopped, they would train 5 s more
        while any(_alive(pid) for pid in children) and time.monotonic() < stopped:
            time.sleep(0.05)
        assert not [pid for pid in children if _alive(pid)], "workers outlived their coordinator"
    finally:  # a failure must not leave them running
        parent.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    handle = open_study_storage(study, Options())
    states = Counter(t.state for t in _trials(handle))
    # Handed back and queued again (either trial may have just ended between the look and the kill).
    assert states[TrialState.RUNNING] == 0 and states[TrialState.FAIL] >= 1

    again = _start(path, "--workers", "2")
    out, _ = again.communicate(timeout=180)
    assert again.returncode == 0, out.decode()
    trials = _trials(handle)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["key"] for t in complete) == [f"t{i:04d}" for i in range(4)]  # each once
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for failed in (t for t in trials if t.state == TrialState.FAIL):  # each abandoned trial ran again
        (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == failed.number]
        assert retry.user_attrs["key"] == failed.user_attrs["key"]
    for trial in complete:
        summary = json.loads((study.dir / trial.user_attrs["key"] / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 100 * 30
