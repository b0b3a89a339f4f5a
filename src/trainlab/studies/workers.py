"""A study's worker processes on this machine, which end when their coordinator does.

``trainlab study FILE --workers N`` starts N worker processes and waits for them. A
coordinator killed outright (kill -9, the OOM killer) cannot stop them itself, so each
worker asks the kernel to signal it when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``;
elsewhere a thread that watches ``os.getppid()``), and then stops:

- in a trial, the trial is interrupted as Ctrl-C would interrupt it (the run stops at its
  next step, with a checkpoint of that step): it is failed and queued again
  (:func:`~trainlab.studies.storage.requeue`), and a relaunch runs it in the same run
  directory, resumed from that checkpoint;
- between trials (claiming, planning a stage, writing results) the worker finishes what
  it does and stops before it claims another trial, so the storage never holds half a step.

SIGTERM sent to a worker (``timeout``, a batch system) stops it the same way. A relaunch of
the same command then finishes the study: every trial runs to its end exactly once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from trainlab.errors import TrainlabError, user_error

#: The signal a worker gets when its coordinator dies. Not SIGTERM: a run may handle SIGTERM
#: itself while it trains, and this one must reach the worker's own handler. A hangup from a
#: terminal while the coordinator lives (under nohup) is ignored (see ``_on_stop_signal``).
PARENT_DEATH_SIGNAL = signal.SIGHUP
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: Seconds between looks at the parent where the kernel cannot signal its death.
_WATCH_INTERVAL_S = 1.0
#: Seconds a coordinator interrupted by Ctrl-C waits for its workers to requeue their trials.
INTERRUPT_GRACE_S = 30.0


class WorkerStopped(KeyboardInterrupt):
    """Raised in a worker told to stop (its coordinator died, or SIGTERM).

    A KeyboardInterrupt, so that a trial in progress is requeued exactly as after Ctrl-C.
    """


_stop = threading.Event()
_parent_pid: int | None = None
_in_trial = False


def stop_requested() -> bool:
    """Whether this worker was told to stop."""
    return _stop.is_set()


def check_stop() -> None:
    """Raise :class:`WorkerStopped` if this worker was told to stop (call it between trials)."""
    if _stop.is_set():
        raise WorkerStopped("the study's coordinator is gone or sent SIGTERM; stopping")


@contextlib.contextmanager
def abandonable() -> Iterator[None]:
    """Mark the running of one trial: a stop now interrupts the trial instead of waiting for it."""
    global _in_trial
    check_stop()  # told to stop between the claim and here: hand the trial back at once
    _in_trial = True
    try:
        yield
    finally:
        _in_trial = False


def _on_stop_signal(signum: int, frame: Any) -> None:
    if signum == PARENT_DEATH_SIGNAL and _parent_pid is not None and os.getppid() == _parent_pid:
        return  # a terminal's hangup while the coordinator lives: the coordinator decides
    _stop.set()
    if _in_trial:
        # Interrupt the trial the way Ctrl-C does, through whatever SIGINT handler the run has
        # installed (it may stop at the next step with a checkpoint); else raise here.
        if callable(signal.getsignal(signal.SIGINT)):
            signal.raise_signal(signal.SIGINT)
        else:
            raise WorkerStopped(f"signal {signum}")


def _set_parent_death_signal() -> bool:
    """Ask Linux to send :data:`PARENT_DEATH_SIGNAL` when the parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """Poll for the parent's death (no prctl): signal this process as the kernel would."""
    while not _stop.wait(_WATCH_INTERVAL_S):
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), PARENT_DEATH_SIGNAL)
            return


def follow_parent(parent_pid: int) -> None:
    """In a worker: stop when ``parent_pid`` (the coordinator) dies, and on SIGTERM.

    Must run in the worker's main thread, before it does anything with the study.
    """
    global _parent_pid
    _parent_pid = parent_pid
    for signum in (PARENT_DEATH_SIGNAL, signal.SIGTERM):
        signal.signal(signum, _on_stop_signal)
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # it died before the kernel was asked to tell
        _stop.set()
        check_stop()


def _entry(parent_pid: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    """A worker process: follow the parent, run ``target``, end with an exit code, no traceback."""
    try:
        follow_parent(parent_pid)
        target(*args)
    except KeyboardInterrupt:  # Ctrl-C, or stopped: its trial is queued again
        sys.exit(130)
    except (TrainlabError, OSError) as exc:
        error = user_error(exc)
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_code)


def run_workers(target: Callable[..., None], args: Sequence[tuple[Any, ...]]) -> list[int | None]:
    """Run ``target(*args[i])`` in one spawned worker process each; wait for all; their exit codes.

    ``target`` must be importable by name (a module-level function). On Ctrl-C the workers
    (which get it too, from the terminal) have :data:`INTERRUPT_GRACE_S` to requeue their
    trials before the interrupt is raised here.
    """
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_entry, args=(os.getpid(), target, a)) for a in args]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.join(timeout=INTERRUPT_GRACE_S)
        raise
    return [process.exitcode for process in processes]


__all__ = ["WorkerStopped", "abandonable", "check_stop", "follow_parent", "run_workers", "stop_requested"]
