"""TensorBoardLogger: each evaluation's numbers as TensorBoard scalars (``output.tensorboard``).

Event files go to ``<run dir>/tensorboard/``; ``tensorboard --logdir runs`` shows every run.
They are written with ``torch.utils.tensorboard`` (torch is a core dependency; it needs the
tensorboard package), for both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.callbacks.base import TrainState
from trainlab.callbacks.tracker import Tracker, measured, require_package, summary_numbers

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from trainlab.run_files import RunDir

#: The folder of a run directory that holds its event files.
TENSORBOARD_DIR = "tensorboard"
# Statuses whose summary describes the end of training (not a point where it broke off).
_FINISHED = ("completed", "stopped_early")


class TensorBoardLogger(Tracker):
    """Write ``<split>/<column>`` (``val/accuracy``, ``train/loss``...) and ``lr`` at each
    evaluation, at the global step; at the end of a finished run also ``summary/<key>``.

    A resumed run drops the events its earlier attempt wrote after the checkpoint (they are
    trained again, with the same values), so each step appears once.

    Args:
        run_dir: the run directory; the events go to its ``tensorboard/`` folder.

    Raises:
        ConfigError: the tensorboard package is not installed.
    """

    def __init__(self, run_dir: RunDir) -> None:
        require_package("tensorboard", "output.tensorboard")
        self.log_dir = run_dir.path / TENSORBOARD_DIR
        self._writer: SummaryWriter | None = None

    def on_train_begin(self, state: TrainState) -> None:
        from torch.utils.tensorboard import SummaryWriter  # torch's import costs a NumPy run ~1 s

        # state.step is the checkpoint's step on resume: events after it are purged on reading.
        self._writer = SummaryWriter(str(self.log_dir), purge_step=state.step + 1 if state.step else None)

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        writer = self._writer
        if writer is None:
            return
        for row in rows:
            for column, value in measured(row).items():
                writer.add_scalar(f"{row.get('split', 'all')}/{column}", value, state.step)
        writer.add_scalar("lr", state.lr, state.step)

    def on_train_end(self, state: TrainState) -> None:
        if self._writer is not None:
            self._writer.flush()

    def finish(self, summary: Mapping[str, Any], run_path: Path) -> None:
        """Add a finished run's summary numbers, then close the event file."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            if summary.get("status") in _FINISHED:
                step = int(summary.get("steps", 0))
                for key, value in summary_numbers(summary).items():
                    writer.add_scalar(f"summary/{key}", value, step)
        finally:
            writer.close()


__all__ = ["TENSORBOARD_DIR", "TensorBoardLogger"]
