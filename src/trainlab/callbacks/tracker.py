"""Trackers: callbacks that copy a run to an outside tool (TensorBoard, MLflow).

A tracker is a :class:`~trainlab.callbacks.base.Callback` with one more step,
:meth:`Tracker.finish`, which :func:`trainlab.api.run` calls once ``summary.json`` and the
report are written, however training ended once it began (completed, stopped, failed or
interrupted; a run refused before its first step finishes no tracker): the loop's
``on_train_end`` comes before both, and not at all after a failure.

The tools are optional (the ``trackers`` extra): :func:`check_trackers` turns a missing
package into a :class:`~trainlab.errors.ConfigError` before a run touches the disk.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.callbacks.base import Callback
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import RunConfig

#: How to install the optional tracker packages.
TRACKERS_EXTRA = "pip install 'trainlab[trackers]'"
# Columns of a metrics row that place it rather than measure something.
PLACE_COLUMNS = frozenset({"split", "step", "epoch", "elapsed", "lr"})


class Tracker(Callback):
    """A callback that sends a run elsewhere; :meth:`finish` closes it after the run ends."""

    def finish(self, summary: Mapping[str, Any], run_path: Path) -> None:
        """Called once after ``summary.json`` (and the report, when one is written) are on
        disk, whatever the run's ``status``; a tracker that never began has nothing to do."""


def require_package(package: str, field: str) -> None:
    """Import ``package`` or say how to install it.

    Raises:
        ConfigError: ``field`` is set but ``package`` cannot be imported.
    """
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"{field} needs the {package} package: {TRACKERS_EXTRA}") from None


def check_trackers(config: RunConfig) -> None:
    """Refuse a config whose trackers are not installed (before the run writes anything).

    Raises:
        ConfigError: ``output.tensorboard`` or ``output.mlflow`` is on without its package.
    """
    if config.output.tensorboard:
        require_package("tensorboard", "output.tensorboard")
    if config.output.mlflow is not None:
        require_package("mlflow", "output.mlflow")


def measured(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a metrics row measures (``loss``, ``accuracy``, engine columns), by column."""
    return {key: float(value) for key, value in row.items()
            if key not in PLACE_COLUMNS and isinstance(value, int | float) and not isinstance(value, bool)}


def summary_numbers(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a run's summary (``test_accuracy``, ``steps``...)."""
    return {key: float(value) for key, value in summary.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def finish_trackers(callbacks: Iterable[Callback], summary: Mapping[str, Any], run_path: Path,
                    log: Callable[[str], None]) -> None:
    """Call :meth:`Tracker.finish` on each tracker; a failure is logged, never raised over
    the run's own outcome (its files are on disk whatever a tracker does)."""
    for callback in callbacks:
        if isinstance(callback, Tracker):
            try:
                callback.finish(summary, run_path)
            except Exception as exc:
                log(f"warning: {type(callback).__name__} did not finish: {type(exc).__name__}: {exc}")


__all__ = [
    "TRACKERS_EXTRA",
    "Tracker",
    "check_trackers",
    "finish_trackers",
    "measured",
    "require_package",
    "summary_numbers",
]
