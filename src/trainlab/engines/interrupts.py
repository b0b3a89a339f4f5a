"""Interrupts that keep progress: SIGINT (Ctrl-C) and SIGTERM stop a run between two steps.

SIGTERM is what ``timeout``, SLURM, ``docker stop`` and a study coordinator's end send;
by default it ends Python at once, with no summary and the progress since the last
checkpoint lost. Ctrl-C raises KeyboardInterrupt wherever the program happens to be, in
the middle of an update as well, where no consistent checkpoint can be taken.

While a :class:`StopSignals` is active, the first of either signal only sets
:attr:`StopSignals.requested`; the training loop looks at it between steps and stops there,
with a checkpoint of that step (:meth:`trainlab.engines.loop.TrainingLoop.run`). A second
signal raises KeyboardInterrupt at once, for a user who will not wait for the step to end.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """A context manager: SIGINT and SIGTERM ask the loop to stop instead of ending the process.

    Handlers are installed only in the main thread (Python runs signal handlers there, and
    ``signal.signal`` refuses any other thread), and not over a signal that is ignored (a
    job started with ``nohup``, or in the background of a non-interactive shell, ignores
    SIGINT and must go on ignoring it) or whose handler was not set from Python. On exit
    the previous handlers are put back.

    Attributes:
        requested: the name of the first signal received (``"SIGTERM"``), or None.
        immediate: when True, the first signal too raises KeyboardInterrupt at once (set by
            the loop once nothing is left that a checkpoint would keep). Default False.

    Example:
        >>> with StopSignals() as signals:
        ...     while not signals.requested:
        ...         step()
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self.immediate = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            if previous is None or previous == signal.SIG_IGN:
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None or self.immediate:  # a second signal: stop now, mid-step if need be
            raise KeyboardInterrupt(name)
        self.requested = name

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


__all__ = ["SIGNALS", "StopSignals"]
