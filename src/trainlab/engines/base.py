"""The engine interface that the NumPy and PyTorch engines implement.

An engine turns a validated run config and prepared data into a trained model. It does not
own a training loop: the shared loop (:class:`trainlab.engines.loop.TrainingLoop`) owns the
run (its length, the order of events, metrics rows, final figures, predictions, checkpoints'
common part and resume), and an engine subclasses it with only its step, its evaluation,
its state arrays and a loader for them. Everything around the loop (data, the run
directory, callbacks, summaries) is shared too and never knows which engine ran.

Call order, from :func:`trainlab.api.run`:

1. :meth:`Engine.check_config` when the config is validated, before any data is read;
2. :meth:`Engine.fit` once, with the prepared data and a :class:`FitContext`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from trainlab.errors import TrainlabError

if TYPE_CHECKING:
    from trainlab.callbacks import CallbackList, TrainState
    from trainlab.config import RunConfig
    from trainlab.data import PreparedData
    from trainlab.run_files import RunDir


@dataclass
class FitContext:
    """What an engine gets besides the config and data.

    Attributes:
        run_dir: where metrics, the checkpoint and the log go.
        callbacks: call ``callbacks.call(hook, state, ...)`` at the hooks' points.
        state: the shared training state the callbacks read and change.
        resume: continue from ``run_dir``'s checkpoint instead of starting afresh.
        progress: show a progress bar (terminal) or periodic lines (log, CI).
        log: writes one line to the run log (and to the console with ``api.run``'s ``echo``).
    """

    run_dir: RunDir
    callbacks: CallbackList
    state: TrainState
    resume: bool = False
    progress: bool = True
    log: Callable[[str], None] = field(default=print)


@runtime_checkable
class Engine(Protocol):
    """A training engine. Implementations: ``numpy`` and ``torch``."""

    name: str

    def check_config(self, config: RunConfig) -> None:
        """Raise :class:`~trainlab.errors.ConfigError` for anything this engine cannot run.

        Called when a config is validated, before data is read, so a bad config fails fast.
        """
        ...

    def fit(self, config: RunConfig, data: PreparedData, context: FitContext) -> dict[str, Any]:
        """Train (or resume) and return the summary figures the engine measured.

        The dict holds at least ``test_accuracy``, ``test_loss``, ``epochs``, ``steps``,
        ``train_seconds``, ``images_per_second`` and ``params``; the caller adds the rest.
        Must write ``metrics.csv`` rows through the callbacks and checkpoints when
        ``state.checkpoint_requested`` is set.
        """
        ...


# Engines are imported on first use, so `trainlab validate` never pays for importing torch.
_ENGINES = {
    "numpy": "trainlab.engines.numpy.engine:NumpyEngine",
    "torch": "trainlab.engines.torch.engine:TorchEngine",
}


def get_engine(name: str) -> Engine:
    """Return an instance of the engine called ``name`` (``numpy`` or ``torch``)."""
    if name not in _ENGINES:
        raise TrainlabError(f"unknown engine {name!r}; engines are: {', '.join(_ENGINES)}")
    module_name, class_name = _ENGINES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("trainlab.engines"):
            raise TrainlabError(
                f"engine {name!r} is not part of this trainlab version yet ({module_name} is missing)"
            ) from exc
        raise
    return getattr(module, class_name)()


__all__ = ["Engine", "FitContext", "get_engine"]
