"""Where a study's trials live, and how workers share them safely.

- Default: a journal file in the study directory (``study.journal``, Optuna's
  ``JournalFileBackend``): no server, any number of worker processes on this machine.
- ``--storage postgresql://user@host/db`` (or ``$TRAINLAB_STORAGE``; an SQLAlchemy URL of
  PostgreSQL or SQLite):
  workers on any number of machines. Optuna's heartbeat marks the trials of a dead worker
  stale; they are failed and queued again (:func:`enqueue_retry`). ``--retry-failed`` queues
  the failed trials of a study again the same way (:func:`enqueue_failed`).

On both, a trial records the worker that runs it (host, pid, process start time), so a
worker on the same machine notices at once that another one died (kill -9) and queues its
trial again without waiting for the heartbeat's grace period.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from trainlab.errors import ConfigError

from .optuna_adapter import rdb_engine, trial_id

JOURNAL_FILE = "study.journal"
LOCK_FILE = "study.lock"
STORAGE_ENV = "TRAINLAB_STORAGE"
# MySQL is left out on purpose: planning a stage needs a lock good across machines, which
# trainlab takes as a PostgreSQL advisory lock (setup_lock), or a file lock beside SQLite.
_RDB_PREFIXES = ("postgresql", "postgres", "sqlite")
#: User attributes of one attempt at a trial (who ran it, how it ended), not of its setting.
ATTEMPT_ATTRS = ("worker", "error", "result")
#: A running trial that names no worker this long after its claim was claimed by a worker that
#: died before it could write its name (the two writes cannot be one).
UNNAMED_CLAIM_GRACE_S = 120.0


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning (heartbeat and retry callback are 'experimental')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@dataclass
class StorageHandle:
    """An opened storage, its URL (for messages) and what kind it is."""

    storage: optuna.storages.BaseStorage
    url: str
    kind: str  # "journal" or "rdb"
    lock_path: Path | None = None

    @property
    def heartbeat(self) -> bool:
        """Whether Optuna's heartbeat runs on this storage."""
        return self.kind == "rdb" and self.storage.get_heartbeat_interval() is not None  # type: ignore[attr-defined]


def resolve_url(url: str | None, study_dir: Path) -> str:
    """The storage URL: the one given, else ``$TRAINLAB_STORAGE``, else the journal file."""
    url = url or os.environ.get(STORAGE_ENV) or ""
    return url or str(study_dir / JOURNAL_FILE)


def open_storage(url: str, heartbeat: int | None = 10, lock_dir: Path | None = None) -> StorageHandle:
    """Open a storage URL (an SQLAlchemy URL) or a journal file path.

    Args:
        url: ``postgresql://...``, ``sqlite:///...``, or a path to a journal file.
        heartbeat: seconds between heartbeats on a database (grace: 3 beats); None: off.
        lock_dir: where the journal's set-up lock lives (default: beside the journal).

    Raises:
        ConfigError: the database cannot be reached, or the URL is not understood or is
            MySQL's (not supported: see ``_RDB_PREFIXES``).
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if "://" in url and scheme == "mysql":
        raise ConfigError(f"--storage {_redact(url)}: MySQL is not supported (workers on several "
                          "machines need PostgreSQL's advisory lock to plan a stage); use "
                          "postgresql://user@host:port/db")
    if "://" in url and scheme not in _RDB_PREFIXES:
        raise ConfigError(f"--storage {url!r}: not a storage URL; use postgresql://user@host:port/db, "
                          "sqlite:///path, or a journal file path")
    if scheme in _RDB_PREFIXES and "://" in url:
        if scheme == "postgres":
            url = "postgresql" + url[len("postgres"):]
        options: dict[str, Any] = {}
        try:
            with quiet_experimental():
                if heartbeat:
                    options = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat,
                               "heartbeat_stale_trial_callback": enqueue_retry}
                storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **options)
        except Exception as error:  # SQLAlchemy's errors vary by driver
            raise ConfigError(f"--storage {_redact(url)}: cannot open the database: {error}") from None
        return StorageHandle(storage, _redact(url), "rdb")
    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    lock = (lock_dir or path.parent) / LOCK_FILE
    return StorageHandle(optuna.storages.JournalStorage(backend), str(path), "journal", lock)


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        tail = f"{user}:***@{tail.split('@', 1)[1]}"
    return head + sep + tail


@contextlib.contextmanager
def setup_lock(handle: StorageHandle, name: str) -> Iterator[None]:
    """Hold the study's set-up lock: one worker at a time plans a stage's trials.

    PostgreSQL: an advisory lock (good across machines); a journal or SQLite file: a file lock.
    """
    if handle.kind == "rdb" and handle.url.startswith("postgresql"):
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
        engine = rdb_engine(handle.storage)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    lock_path = handle.lock_path or Path(handle.url.split("///", 1)[-1] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- workers ----------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (tells a reused pid apart); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: host, pid and the process's start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def worker_alive(worker: dict[str, Any]) -> bool | None:
    """Whether a worker of this machine still runs: True, False, or None (another machine)."""
    if worker.get("host") != socket.gethostname():
        return None
    pid = int(worker.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True  # no /proc: trust kill(0)
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return worker.get("start") in (None, _start_time(pid))


def requeue(storage: optuna.storages.BaseStorage, study: optuna.Study, trial: FrozenTrial,
            reason: str) -> bool:
    """Fail a running trial and queue a copy with the same parameters; False if already done.

    ``storage`` is the one ``study`` was opened on (``StorageHandle.storage``).
    """
    tid = trial_id(storage, study.study_name, trial.number)
    try:
        # The reason first: a finished (failed) trial takes no more attributes.
        storage.set_trial_user_attr(tid, "error", reason)
        if not storage.set_trial_state_values(tid, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    enqueue_retry(study, trial)
    return True


def enqueue_retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a waiting copy of a failed trial: same parameters and setting, a fresh attempt.

    Like Optuna's retry callbacks (``failed_trial`` and ``retry_history`` in the system
    attributes), except that the attempt's own attributes (:data:`ATTEMPT_ATTRS`) are not
    copied: a copy that still named the dead worker would look dead again to every other
    worker in the moment between its claim and its new worker writing its name, and be
    queued a second time.
    """
    system_attrs: dict[str, Any] = {"failed_trial": trial.number, **trial.system_attrs}
    system_attrs["retry_history"] = [*trial.system_attrs.get("retry_history", []), trial.number]
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS},
        system_attrs=system_attrs,
    ))


#: States in which a planned trial's key is taken care of: done, or about to be run.
_SETTLED_OR_QUEUED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def enqueue_failed(study: optuna.Study) -> list[str]:
    """Queue again each planned trial of ``study`` that failed; the keys queued, in key order.

    A key (``user_attrs["key"]``, the trial's run directory) is queued once, as a copy of its
    latest failed attempt (:func:`enqueue_retry`), and only when none of its trials is
    complete, pruned, running or waiting: a key retried already, or run again by another
    worker meanwhile, is left alone. The failed attempts stay in the history as FAIL.
    Call it under the study's set-up lock, so that two workers do not queue the same key.
    """
    taken: set[str] = set()
    failed: dict[str, FrozenTrial] = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        key = trial.user_attrs.get("key")
        if key is None:  # not a planned trial (every planned one has its key)
            continue
        if trial.state in _SETTLED_OR_QUEUED:
            taken.add(str(key))
        elif trial.state == TrialState.FAIL:
            failed[str(key)] = trial  # the latest failed attempt: the one numbered last
    queued = sorted(key for key in failed if key not in taken)
    for key in queued:
        enqueue_retry(study, failed[key])
    return queued


def reclaim_dead(handle: StorageHandle, study: optuna.Study) -> int:
    """Requeue the trials of dead workers; the number requeued.

    Heartbeat (databases) catches workers anywhere; the pid check catches those of this
    machine at once, with any storage.
    """
    if handle.heartbeat:
        with quiet_experimental():
            optuna.storages.fail_stale_trials(study)
    count = 0
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if isinstance(worker, dict):
            if worker_alive(worker) is False:
                count += requeue(handle.storage, study, trial, f"worker {worker.get('host')}:{worker.get('pid')} died")
        elif (trial.datetime_start is not None
              and (now - trial.datetime_start).total_seconds() > UNNAMED_CLAIM_GRACE_S):
            count += requeue(handle.storage, study, trial, "its worker died between claiming it and writing its name")
    return count


class Heartbeat:
    """Records the heartbeat of a running trial from a thread (databases only)."""

    def __init__(self, handle: StorageHandle, trial_id: int) -> None:
        self._handle = handle
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self._handle.heartbeat:
            interval = self._handle.storage.get_heartbeat_interval()  # type: ignore[attr-defined]
            self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True)
            self._thread.start()
        return self

    def _beat(self, interval: float) -> None:
        while True:
            with contextlib.suppress(Exception):  # a lost beat is harmless; the next one follows
                self._handle.storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
            if self._stop.wait(interval):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
