"""Extending a run: ``trainlab run --resume RUN --epochs N`` (``api.run(resume=..., epochs=N)``).

An extension continues a run, finished or not, from its last checkpoint to a longer length.
``config.yaml`` takes the new length and its provenance lists the extension (from, to, at which
step, when); :func:`trainlab.engines.resume.check_config` accepts the checkpoint's shorter
config because of that record, so an extension interrupted before its first checkpoint
resumes like any run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from trainlab.config import PROVENANCE_KEY, RunConfig
from trainlab.engines.resume import checkpoint_step
from trainlab.errors import ConfigError
from trainlab.run_files import RunDir


def extension_of(run_dir: RunDir, config: RunConfig, epochs: int) -> dict[str, Any]:
    """Check that ``run_dir`` can be extended to ``epochs`` and say what the extension records.

    An extension continues the run from its last checkpoint to the new length; it is
    recorded in the run's provenance (``extensions``). The learning-rate schedule is computed
    over the new length: a schedule that depends on it (cosine, linear or one-cycle decay,
    warmup fractions) continues on the longer curve from the step reached, so the lr may jump
    there; a constant or step schedule is unaffected. Early stopping's patience carries on.

    Raises:
        ConfigError: the run is sized by ``train.steps``, ``epochs`` is not beyond its length,
            or it stopped early (its stop stands: start a new run instead).
    """
    train = config.train
    if train.steps is not None:
        raise ConfigError(f"cannot extend {run_dir.path} by epochs: it is sized by train.steps={train.steps}")
    current = int(train.epochs or 0)
    if epochs <= current:
        raise ConfigError(f"--epochs {epochs}: the run is already {current} epochs long; give more")
    if run_dir.read_summary().get("status") == "stopped_early":
        raise ConfigError(f"cannot extend {run_dir.path}: it stopped early, and that stop stands; "
                          "start a new run with more epochs instead")
    return {"from_epochs": current, "to_epochs": epochs,
            "at_step": checkpoint_step(run_dir.path, config.engine),
            "when": dt.datetime.now().isoformat(timespec="seconds")}


def checkpointed_config(config: RunConfig, extension: dict[str, Any] | None) -> RunConfig:
    """The config the run's checkpoint was written with: with an ``extension`` not yet recorded,
    ``config`` at its old length; else ``config`` itself."""
    if extension is None:
        return config
    shorter = config.train.model_copy(update={"epochs": extension["from_epochs"]})
    return config.model_copy(update={"train": shorter})


def record_extension(run_dir: RunDir, config: RunConfig, extension: dict[str, Any]) -> str:
    """``config.yaml`` takes ``config`` (the new length) and its provenance lists ``extension``;
    returns the line for the run's log."""
    provenance = dict(run_dir.read_config().get(PROVENANCE_KEY) or {})
    provenance["extensions"] = [*provenance.get("extensions", []), extension]
    run_dir.write_config({**config.model_dump(mode="json"), PROVENANCE_KEY: provenance})
    return (f"extending from {extension['from_epochs']} to {extension['to_epochs']} epochs at step "
            f"{extension['at_step']} (the lr schedule is computed over the new length)")


__all__ = ["checkpointed_config", "extension_of", "record_extension"]
