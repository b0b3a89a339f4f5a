"""``steps.csv``: the training loss, learning rate and elapsed time every ``train.log_steps``
optimizer steps, for a loss curve at the resolution of single steps (seed E's figure 4).

Each row holds the loss of that step's batch, not a mean over the last N steps: a row then
needs nothing but its own step, so a resumed run writes exactly the rows of a run that was
never stopped (a running mean would need its partial window saved in the checkpoint).

Cost: :meth:`StepLog.record` keeps the loss as the engine hands it over (a float, or a 0-d
tensor left on its device) and reads no clock beyond one ``perf_counter``; the rows are
converted and appended, in whole lines, only by :meth:`StepLog.flush`, which the loop calls
where it reads the device anyway (progress updates), before every checkpoint and at the end.

Kills and resume: the file is appended to (rewriting it at every flush would cost time
quadratic in the number of rows), so a kill may tear its last line. On resume,
:meth:`StepLog.begin` rewrites it atomically with the whole rows up to the checkpoint's
step, so the steps that are redone are not written twice; the loop flushes before every
checkpoint, so no row up to it is missing. :func:`read_steps_csv` skips a torn line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.io import atomic_write_text

STEPS_COLUMNS = ("step", "epoch", "loss", "lr", "elapsed")


class StepLog:
    """Buffers the rows of ``steps.csv`` and appends them in whole lines.

    Args:
        path: the ``steps.csv`` file (its folder must exist).
        every: optimizer steps between rows (``train.log_steps``).
        steps_per_epoch: turns a step into the ``epoch`` column (a fraction inside an epoch).

    Example:
        >>> log = StepLog(run_dir.steps_path, every=10, steps_per_epoch=90)
        >>> log.begin(0, resume=False)
        >>> if log.due(step):
        ...     log.record(step, loss, lr, elapsed)
        >>> log.flush()
    """

    def __init__(self, path: Path, every: int, steps_per_epoch: int) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.path = path
        self.every = every
        self.steps_per_epoch = max(1, steps_per_epoch)
        self._pending: list[tuple[int, Any, float, float]] = []  # (step, loss, lr, elapsed)

    def due(self, step: int) -> bool:
        """Whether the step just done (1-based) gets a row."""
        return step % self.every == 0

    def begin(self, step: int, resume: bool) -> None:
        """Start the file before the first step: a new run gets just the header; a resumed
        one (at ``step``) keeps its whole rows up to ``step``. Written atomically."""
        kept = [row for row in read_steps_csv(self.path) if row["step"] <= step] if resume else []
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(STEPS_COLUMNS)
        writer.writerows([[_cell(row[column]) for column in STEPS_COLUMNS] for row in kept])
        atomic_write_text(self.path, buffer.getvalue())
        self._pending.clear()

    def record(self, step: int, loss: Any, lr: float, elapsed: float) -> None:
        """Keep the row of ``step``; ``loss`` may be a device tensor (read at :meth:`flush`)."""
        self._pending.append((step, loss, lr, elapsed))

    def flush(self) -> None:
        """Append the rows recorded since the last flush (one write, whole lines)."""
        if not self._pending:
            return
        losses = _floats([loss for _, loss, _, _ in self._pending])
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for (step, _, lr, elapsed), loss in zip(self._pending, losses, strict=True):
            epoch = round(step / self.steps_per_epoch, 6)
            writer.writerow([step, _cell(epoch), _cell(loss), _cell(float(lr)), _cell(round(elapsed, 4))])
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
        self._pending.clear()


def _floats(values: Sequence[Any]) -> list[float]:
    """Losses as floats; device tensors are stacked and copied to the host in one transfer."""
    if not all(hasattr(value, "detach") for value in values):
        return [float(value) for value in values]
    import torch  # only an engine that hands over tensors gets here, so torch is loaded

    stacked = torch.stack([value.detach().reshape(()) for value in values])  # (R,)
    return [float(value) for value in stacked.double().cpu().tolist()]


def _cell(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def read_steps_csv(path: Path) -> list[dict[str, float]]:
    """The rows of a ``steps.csv``, numbers parsed (``step`` an int).

    A missing file gives no rows; a line torn by a kill (no line end, or cells that are
    not numbers) is left out.
    """
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    text = text[: text.rfind("\n") + 1]  # a kill mid-append leaves a last line without its end
    rows: list[dict[str, float]] = []
    for record in csv.DictReader(io.StringIO(text)):
        try:
            row = {column: float(record[column]) for column in STEPS_COLUMNS}
        except (KeyError, TypeError, ValueError):
            continue
        row["step"] = int(row["step"])
        rows.append(row)
    return rows


__all__ = ["STEPS_COLUMNS", "StepLog", "read_steps_csv"]
