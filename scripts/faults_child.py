"""The child process of ``scripts/faults.py``: one trainlab command with one fault armed.

    python scripts/faults_child.py SIGNAL PHASE N CUT [GO] -- <trainlab arguments>

At the N-th event of PHASE the child sends SIGNAL (KILL, TERM or INT) to itself, so a kill
lands on the same moment every time the plan is replayed. The events:

- ``step``: an optimizer step is about to start;
- ``eval``: one split of an evaluation, or of the summary's final figures, is about to be
  measured (the engine's ``evaluate_split``);
- ``checkpoint`` / ``write`` / ``report``: an atomic write (:mod:`trainlab.io`) of a
  checkpoint / of another run file (metrics.csv, summary.json, predictions, config) / of a
  report file (report.html, figures/). For KILL the temporary file is first cut to the
  fraction CUT of what was written: the disk then holds what a kill in the middle of the
  write leaves. TERM and INT arrive just before the rename;
- ``append``: an append to run.log or steps.csv; for KILL the first CUT of its bytes are
  written first (a kill between two ``write`` calls of one append);
- ``count``: nothing is sent; the number of each event goes to $FAULTS_COUNTS (JSON).

PHASE ``none`` runs the command untouched. GO (a file path) holds the command back, once
trainlab is imported, until that file exists; the child says it is ready by creating
``GO.<pid>.ready``. Runs released by one GO start in the same instant.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import trainlab.io as tio
import trainlab.run_files as run_files
from trainlab.engines import loop, step_log

COUNTS: Counter[str] = Counter()
PLAN: dict[str, Any] = {}


def fire(phase: str) -> None:
    """Count an event of ``phase``; send the signal when it is the planned one."""
    COUNTS[phase] += 1
    if PLAN.get("phase") == phase and COUNTS[phase] == PLAN["n"]:
        os.kill(os.getpid(), PLAN["signal"])


def _due(phase: str) -> bool:
    """Whether the next event of ``phase`` is the planned one (counted by the caller's fire)."""
    return PLAN.get("phase") == phase and COUNTS[phase] + 1 == PLAN["n"]


def _write_phase(path: Path) -> str:
    if path.name.startswith("checkpoint."):
        return "checkpoint"
    if path.name == "report.html" or path.parent.name == "figures":
        return "report"
    return "write"


_atomic_open = tio.atomic_open


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    phase = _write_phase(Path(path))
    with _atomic_open(path, mode, encoding) as handle:
        yield handle
        if _due(phase) and PLAN["signal"] == signal.SIGKILL:
            handle.flush()
            os.ftruncate(handle.fileno(), int(os.fstat(handle.fileno()).st_size * PLAN["cut"]))
        fire(phase)  # before the flush, fsync and rename that make the new file the file


class _TornAppend:
    """An append handle whose planned write stops after the fraction CUT of its bytes."""

    def __init__(self, handle: IO[Any]) -> None:
        self._handle = handle

    def write(self, text: str) -> int:
        if _due("append") and PLAN["signal"] == signal.SIGKILL:
            self._handle.write(text[: int(len(text) * PLAN["cut"])])
            self._handle.flush()
        fire("append")
        return self._handle.write(text)

    def __enter__(self) -> _TornAppend:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def _appending_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    handle = open(file, mode, *args, **kwargs)  # noqa: SIM115 (closed by _TornAppend)
    return _TornAppend(handle) if mode.startswith("a") else handle


def _counting(method: Callable[..., Any], phase: str) -> Callable[..., Any]:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        fire(phase)
        return method(self, *args, **kwargs)

    return wrapper


_run = loop.TrainingLoop.run


def _run_with_eval_hook(self: loop.TrainingLoop) -> dict[str, Any]:
    engine_class = type(self)
    if not getattr(engine_class, "_faults_hooked", False):  # evaluate_split is the engine's own
        engine_class.evaluate_split = _counting(engine_class.evaluate_split, "eval")  # type: ignore[attr-defined]
        engine_class._faults_hooked = True  # type: ignore[attr-defined]
    return _run(self)


def arm(signal_name: str, phase: str, n: int, cut: float) -> None:
    """Install the hooks; ``phase`` ``none`` installs none."""
    if phase == "none":
        return
    PLAN.update(phase=phase, n=n, cut=cut, signal=getattr(signal, f"SIG{signal_name}"))
    tio.atomic_open = atomic_open  # the atomic writers of trainlab.io look it up at each call
    run_files.open = _appending_open  # type: ignore[attr-defined]  # RunDir.log
    step_log.open = _appending_open  # type: ignore[attr-defined]  # StepLog.flush
    loop.TrainingLoop._train_one_step = _counting(loop.TrainingLoop._train_one_step, "step")  # type: ignore[method-assign]
    loop.TrainingLoop.run = _run_with_eval_hook  # type: ignore[method-assign]
    counts_file = os.environ.get("FAULTS_COUNTS")
    if phase == "count" and counts_file:
        atexit.register(lambda: Path(counts_file).write_text(json.dumps(COUNTS), encoding="utf-8"))


def main(argv: list[str]) -> int:
    split = argv.index("--")
    signal_name, phase, n, cut, *go = argv[:split]
    arm(signal_name, phase, int(n), float(cut))
    import trainlab.api  # noqa: F401  (imported before the start line, so that runs start together)
    from trainlab.cli import main as trainlab_main

    if go:
        Path(f"{go[0]}.{os.getpid()}.ready").touch()
        while not Path(go[0]).exists():
            time.sleep(0.002)
    return trainlab_main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
