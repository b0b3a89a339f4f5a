"""Training progress: a live bar on a terminal, plain periodic lines elsewhere (logs, CI).

Like Keras and Lightning: the bar names the epoch and the running training figures (the mean
over the steps since the last evaluation, labelled so), a line after each evaluation gives the
validation loss and accuracy with the best so far, and a last line gives the best validation
and the test figures.
"""

from __future__ import annotations

import math
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


def evaluation_line(epoch: float, total_epochs: float, step: int, rows: list[dict[str, Any]],
                    best: tuple[float, float] | None) -> str | None:
    """The line printed after an evaluation, or None when it has no validation row.

    ``best`` is (accuracy, epoch) of the best validation accuracy so far, this one included.
    Example: ``epoch 3/20 (step 1170): val loss 0.9121 acc 0.6810 | best acc 0.6900 (epoch 2)``.
    """
    val = next((row for row in rows if row.get("split") == "val"), None)
    if val is None:
        return None
    line = (f"epoch {_epoch_text(epoch)}/{_epoch_text(total_epochs)} (step {step}): "
            f"val loss {float(val['loss']):.4f} acc {float(val['accuracy']):.4f}")
    if best is not None:
        line += f" | best acc {best[0]:.4f} (epoch {_epoch_text(best[1])})"
    return line


def final_line(summary: dict[str, Any], best: tuple[float, float] | None) -> str:
    """The last line of a run: best validation accuracy (and its epoch), final val and test."""
    parts = []
    if best is not None:
        parts.append(f"best val acc {best[0]:.4f} (epoch {_epoch_text(best[1])})")
    for key, label in (("final_val_accuracy", "final val acc"), ("test_accuracy", "test acc"),
                       ("test_loss", "test loss")):
        value = summary.get(key)
        if value is not None:
            parts.append(f"{label} {float(value):.4f}")
    return "done: " + (", ".join(parts) if parts else "no validation or test split to measure")


def _epoch_text(epoch: float) -> str:
    """Whole epochs as ints; a run stopped mid-epoch (train.steps) keeps one decimal."""
    return str(round(epoch)) if abs(epoch - round(epoch)) < 1e-9 else f"{epoch:.1f}"


class ProgressReporter:
    """Reports the epoch, steps done, running loss and accuracy, learning rate, images/s and the
    time left; prints a line per evaluation that has a validation row, when ``steps_per_epoch``
    is given, and one at the end (:meth:`evaluation`, :meth:`final`).

    Args:
        total_steps: the number of steps planned.
        description: the label in front of the bar. Default ``"train"``.
        enabled: False silences it entirely. Default True.
        stream: where to write. Default ``sys.stderr``.
        interval_seconds: the gap between plain lines when ``stream`` is not a terminal.
            Default 10.
        steps_per_epoch: steps in one epoch; given, the bar and lines name the epoch, and
            evaluations print their lines. Default None.

    Example:
        >>> with ProgressReporter(1500, steps_per_epoch=150) as bar:
        ...     bar.update(10, **{"train loss": 2.1, "train acc": 0.2})
    """

    def __init__(
        self,
        total_steps: int,
        description: str = "train",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_seconds: float = 10.0,
        steps_per_epoch: int | None = None,
    ) -> None:
        self.total_steps = max(1, total_steps)
        self.steps_per_epoch = steps_per_epoch
        self.best: tuple[float, float] | None = None  # (val accuracy, epoch) of the best evaluation
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

    def _epoch_of(self, step: int) -> str | None:
        """``"epoch 3/20"`` for the epoch that ``step`` is in (the last one once it is done)."""
        if not self.steps_per_epoch:
            return None
        total = self.total_steps / self.steps_per_epoch
        current = min(step // self.steps_per_epoch + 1, math.ceil(total))
        return f"epoch {current}/{_epoch_text(total)}"

    def update(self, step: int, **fields: Any) -> None:
        """Report that ``step`` steps are done, with the latest figures."""
        if not self.enabled:
            return
        epoch = self._epoch_of(step)
        info = format_fields(fields)
        if self._progress is not None:
            description = f"{self.description} {epoch}" if epoch else self.description
            self._progress.update(self._task, completed=step, info=info, description=description)
            return
        now = time.perf_counter()
        if now - self._last_line < self.interval_seconds and step < self.total_steps:
            return
        self._last_line = now
        done = step - self._start_step
        elapsed = now - self._start_time
        eta = elapsed / done * (self.total_steps - step) if done > 0 else 0.0
        percent = 100.0 * step / self.total_steps
        where = f"{epoch} " if epoch else ""
        print(
            f"{self.description} {where}step {step}/{self.total_steps} ({percent:.0f}%) {info} "
            f"elapsed {format_seconds(elapsed)} ETA {format_seconds(eta)}",
            file=self.stream,
            flush=True,
        )

    def _print(self, line: str) -> None:
        """A line above the live bar (which stays at the bottom), or a plain line."""
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def evaluation(self, step: int, rows: list[dict[str, Any]]) -> None:
        """After an evaluation: print its validation loss and accuracy and the best so far.

        Prints nothing without ``steps_per_epoch`` or without a validation row; the best
        validation accuracy is tracked either way.
        """
        val = next((row for row in rows if row.get("split") == "val"), None)
        epoch = step / self.steps_per_epoch if self.steps_per_epoch else float(step)
        if val is not None and (self.best is None or float(val["accuracy"]) > self.best[0]):
            self.best = (float(val["accuracy"]), epoch)
        if not self.enabled or not self.steps_per_epoch:
            return
        line = evaluation_line(epoch, self.total_steps / self.steps_per_epoch, step, rows, self.best)
        if line is not None:
            self._print(line)

    def final(self, summary: dict[str, Any]) -> None:
        """The run's last line: best validation accuracy, final validation and test figures."""
        if self.enabled:
            self._print(final_line(summary, self.best))

    def close(self) -> None:
        """Stop the live bar (plain mode needs nothing)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


__all__ = ["ProgressReporter", "evaluation_line", "final_line", "format_fields", "format_seconds"]
