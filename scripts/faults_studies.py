"""The faults of studies: a worker of ``trainlab study --workers 3`` killed in the middle of a
trial, and the coordinator of ``--workers 2`` killed while both its workers train, then the
same command run again. Either way every trial must end complete exactly once.
"""

from __future__ import annotations

import csv
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from faults_check import differences, result_of
from faults_env import Case, Outcome, Workspace
from optuna.trial import TrialState

from trainlab.studies import Options, load_study, open_study_storage
from trainlab.studies.results import RESULTS_CSV

LRS = [0.0005, 0.001, 0.002, 0.003, 0.004, 0.006]  # 6 trials of about a second each


def study_file(ws: Workspace, name: str) -> Path:
    """A grid study over the learning rate of the tiny run (its trials train 450 steps)."""
    path = ws.config(name, "numpy", train={"epochs": 25, "log_steps": None})
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["study"] = {"objective": "best_val_accuracy", "space": {"optimizer.lr": LRS}}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _trials(handle: Any, name: str) -> list[Any]:
    """Every trial of the study ``name``, all attempts included."""
    trials: list[Any] = []
    for frozen in handle.storage.get_all_studies():
        if frozen.user_attrs.get("trainlab_study") == name:
            trials += handle.storage.get_all_trials(handle.storage.get_study_id_from_name(frozen.study_name))
    return trials


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _children(parent: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(int(p.name)) == parent]


def _running(study: Any, handle: Any, parent: int) -> list[tuple[int, str]]:
    """(worker pid, key) of the trials that ``parent``'s workers train (their metrics.csv exists)."""
    out = []
    for trial in _trials(handle, study.name):
        pid = trial.user_attrs.get("worker", {}).get("pid")
        training = (study.dir / trial.user_attrs.get("key", "-") / "metrics.csv").exists()
        if trial.state == TrialState.RUNNING and pid and _parent_of(pid) == parent and training:
            out.append((int(pid), trial.user_attrs["key"]))
    return out


def _wait_for(proc: Any, study: Any, want: int, timeout: float = 120.0) -> tuple[Any, list[tuple[int, str]]]:
    """Wait until ``want`` of ``proc``'s workers train a trial; the storage and those trials."""
    handle, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if handle is None and (study.dir / "study.journal").exists():
            handle = open_study_storage(study, Options())
        running = _running(study, handle, proc.pid) if handle is not None else []
        if len(running) >= want:
            return handle, running
        time.sleep(0.02)
    raise RuntimeError(f"the workers of {study.name} never trained {want} trials at once")


def _check(case: Case, ws: Workspace, study: Any, outcomes: list[Outcome]) -> bool:
    """Every trial complete exactly once, every abandoned trial run again once, every trial
    directory valid, results.csv whole, no traceback."""
    for outcome in outcomes:
        case.child(outcome)
    ok = all(o.rc == 0 for o in outcomes) or case.fail(f"exits {[o.rc for o in outcomes]}: "
                                                        f"{outcomes[-1].output.strip()[-200:]}")
    trials = _trials(open_study_storage(study, Options()), study.name)
    complete = Counter(t.user_attrs.get("key") for t in trials if t.state == TrialState.COMPLETE)
    keys = [f"t{i:04d}" for i in range(len(LRS))]
    missing, twice = [k for k in keys if not complete[k]], [k for k, n in complete.items() if n > 1]
    case.lost += len(missing)
    if missing or twice:
        ok = case.fail(f"trials lost {missing}, run twice {twice}")
    if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
        ok = case.fail("trials left running or waiting")
    rows = list(csv.DictReader((study.dir / RESULTS_CSV).open(encoding="utf-8")))
    if sorted(r["trial"] for r in rows) != keys or {r["state"] for r in rows} != {"COMPLETE"}:
        ok = case.fail(f"{RESULTS_CSV} holds {len(rows)} rows, states {sorted({r['state'] for r in rows})}")
    for key in keys:
        ok = case.files(study.dir / key) and ok
    return ok


def worker_killed(ws: Workspace, fault: str) -> Case:
    """kill -9 of one of 3 workers in the middle of a trial (frozen first, so that its trial
    cannot end between the look and the kill)."""
    path = study_file(ws, "study-w")
    study = load_study(path)
    started = time.monotonic()
    proc = ws.start(ws.argv(["study", str(path), "-q", "--workers", "3"]))
    case = Case(fault, "study --workers 3")
    try:
        handle, running = _wait_for(proc, study, 1)
        for pid, key in running:
            os.kill(pid, signal.SIGSTOP)
            if any(p == pid for p, _ in _running(study, handle, proc.pid)):
                os.kill(pid, signal.SIGKILL)
                case.what = f"study --workers 3: worker killed in trial {key}"
                break
            os.kill(pid, signal.SIGCONT)
    except RuntimeError as exc:
        case.notes.append(str(exc))
    outcomes = [ws.finish(proc, started)]
    if not (study.dir / RESULTS_CSV).exists():  # the documented way on: the same command again
        outcomes.append(ws.trainlab(["study", str(path), "-q", "--workers", "3"]))
    case.survived = _check(case, ws, study, outcomes) and not case.notes
    return case


def coordinator_killed(ws: Workspace, fault: str) -> Case:
    """kill -9 of ``trainlab study --workers 2`` while both workers train: they must stop within
    seconds, and the same command then finishes the study, each trial once."""
    path = study_file(ws, "study-c")
    study = load_study(path)
    started = time.monotonic()
    proc = ws.start(ws.argv(["study", str(path), "-q", "--workers", "2"]))
    case = Case(fault, "study --workers 2: coordinator killed, then run again")
    children: list[int] = []
    try:
        _, running = _wait_for(proc, study, 2)
        children = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        case.what += f" (trials {', '.join(key for _, key in running)} training)"
    except RuntimeError as exc:
        case.notes.append(str(exc))
    first = ws.finish(proc, started)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    outliving = [pid for pid in children if _alive(pid)]
    for pid in outliving:  # the workers this script's coordinator started; none must be left
        os.kill(pid, signal.SIGKILL)
    if outliving:
        case.notes.append(f"{len(outliving)} workers outlived their coordinator by 15 s")
    case.child(first)
    again = ws.trainlab(["study", str(path), "-q", "--workers", "2"])
    case.survived = _check(case, ws, study, [again]) and not case.notes
    return case


def same_trials(cases: list[Case], ws: Workspace) -> None:
    """The two studies search the same grid with the same seed: each trial's result must be the
    same in both, whichever of them a fault interrupted."""
    first, second = load_study(ws.root / "configs" / "study-w.yaml"), load_study(ws.root / "configs" / "study-c.yaml")
    for i in range(len(LRS)):
        key = f"t{i:04d}"
        if not (first.dir / key).exists() or not (second.dir / key).exists():
            continue
        found = differences(result_of(first.dir / key), result_of(second.dir / key))
        if found:
            cases[-1].lost += 1
            cases[-1].survived = cases[-1].fail(f"{key} differs between the studies: {'; '.join(found)}")
