"""Training progress: a live bar on a terminal, plain periodic lines elsewhere (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def format_fields(fields: dict[str, Any]) -> str:
    """``{"loss": 1.234567, "lr": 0.002}`` -> ``"loss 1.235 lr 0.002"`` (None values left out)."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, float):
            text = f"{value:.4g}" if key != "img/s" else f"{value:,.0f}"
        else:
            text = str(value)
        parts.append(f"{key} {text}")
    return " ".join(parts)


def format_seconds(seconds: float) -> str:
    """Seconds as ``H:MM:SS``."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
    """Reports steps done, loss, accuracy, learning rate, images/s and the time left.

    Args:
        total_steps: the number of steps planned.
        description: the label in front of the bar. Default ``"train"``.
        enabled: False silences it entirely. Default True.
        stream: where to write. Default ``sys.stderr``.
        interval_seconds: the gap between plain lines when ``stream`` is not a terminal.
            Default 10.

    Example:
        >>> with ProgressReporter(1500) as bar:
        ...     bar.update(10, loss=2.1, acc=0.2)
    """

    def __init__(
        self,
        total_steps: int,
        description: str = "train",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_seconds: float = 10.0,
    ) -> None:
        self.total_steps = max(1, total_steps)
        self.description = description
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval_seconds = interval_seconds
        self.live = enabled and self.stream.isatty()
        self._progress: Progress | None = None
        self._task: Any = None
        self._start_time = 0.0
        self._start_step = 0
        self._last_line = 0.0

    def __enter__(self) -> ProgressReporter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, initial_step: int = 0) -> None:
        """Begin timing (``initial_step`` > 0 when resuming)."""
        self._start_time = self._last_line = time.perf_counter()
        self._start_step = initial_step
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total_steps, completed=initial_step, info=""
            )

    def update(self, step: int, **fields: Any) -> None:
        """Report that ``step`` steps are done, with the latest figures."""
        if not self.enabled:
            return
        info = format_fields(fields)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)
            return
        now = time.perf_counter()
        if now - self._last_line < self.interval_seconds and step < self.total_steps:
            return
        self._last_line = now
        done = step - self._start_step
        elapsed = now - self._start_time
        eta = elapsed / done * (self.total_steps - step) if done > 0 else 0.0
        percent = 100.0 * step / self.total_steps
        print(
            f"{self.description} step {step}/{self.total_steps} ({percent:.0f}%) {info} "
            f"elapsed {format_seconds(elapsed)} ETA {format_seconds(eta)}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        """Stop the live bar (plain mode needs nothing)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


__all__ = ["ProgressReporter", "format_fields", "format_seconds"]
