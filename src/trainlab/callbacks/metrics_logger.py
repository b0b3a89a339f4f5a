"""MetricsLogger: append each evaluation's rows to the run's ``metrics.csv``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainlab.callbacks.base import Callback, TrainState

if TYPE_CHECKING:
    from trainlab.run_files import RunDir


class MetricsLogger(Callback):
    """Write every evaluation's rows (one per split) to ``metrics.csv``, atomically.

    Each row gets ``epoch``, ``step`` and ``lr`` from the state unless the engine set them.

    Args:
        run_dir: the run directory written to.

    Example:
        >>> logger = MetricsLogger(run_dir)
    """

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        stamped = [{"epoch": state.epoch, "step": state.step, "lr": state.lr, **row} for row in rows]
        self.run_dir.append_metrics(stamped)
