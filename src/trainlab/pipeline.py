"""One run, stage by stage: resolve -> open -> prepare -> fit -> finalise -> report.

:func:`trainlab.api.run` calls these stages in order; each takes what the one before it made:

- :func:`resolve`: the config to run (file, overrides, a run to resume or extend), checked
  against the engine, the trackers' packages and this machine's memory, before anything
  touches the disk.
- :func:`open_run` (a :class:`Session`): a new run directory, or the one to resume. It comes
  before the data are read, so a taken run directory is refused in a moment.
- :func:`prepare`: the data, the resume check, ``config.yaml`` and ``model.json``. A refused
  start removes the new directory again; a refused resume leaves the run as it was.
- :func:`fit`: the engine trains; what happened (summary, error) comes back as an
  :class:`Outcome` instead of an exception, so the stages after it always run.
- :func:`finalise`: ``summary.json`` and the images the report shows.
- :func:`report`: figures and ``report.html`` (``output.report``), then the trackers' last
  uploads, which include the report.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.callbacks import (
    Callback,
    TrainState,
    build_callbacks,
    check_trackers,
    finish_trackers,
)
from trainlab.callbacks.from_config import StartWatch
from trainlab.config import PROVENANCE_KEY, RunConfig, config_diff, resolve_config, with_overrides
from trainlab.config.leakage import run_leakage_warning
from trainlab.engines.base import FitContext, get_engine
from trainlab.engines.resume import (
    checkpoint_step,
    recorded_extensions,
    verify_resume,
    verify_resume_config,
)
from trainlab.engines.run_length import batch_norm_warmup_warning
from trainlab.errors import ConfigError
from trainlab.progress import final_line
from trainlab.run_extension import checkpointed_config, extension_of, record_extension
from trainlab.run_files import ModelSpec, RunDir
from trainlab.runs import (
    create_run_dir,
    discard_run_dir,
    open_run_dir,
    package_versions,
    resume_run_dir,
)

if TYPE_CHECKING:
    from trainlab.data import PreparedData


@dataclass
class Plan:
    """What :func:`resolve` decided: the config, and the run to continue (if any).

    Attributes:
        config: the resolved, checked config.
        resume_dir: the run directory to continue; None for a new run.
        extension: with ``epochs=`` on a resume, what the extension records in the run's
            provenance (``from_epochs``, ``to_epochs``, ``at_step``, ``when``); else None.
    """

    config: RunConfig
    resume_dir: Path | None = None
    extension: dict[str, Any] | None = None


@dataclass
class Session:
    """An open run directory and how the run writes to it.

    Attributes:
        plan: the :class:`Plan` it runs.
        run_dir: the run directory.
        echo: print log lines to the console as well as to ``run.log``.
    """

    plan: Plan
    run_dir: RunDir
    echo: bool = True

    @property
    def config(self) -> RunConfig:
        """The run's config."""
        return self.plan.config

    @property
    def resumed(self) -> bool:
        """True when the run continues from a checkpoint."""
        return self.plan.resume_dir is not None

    def log(self, message: str) -> None:
        """One line to ``run.log`` (and the console with ``echo``)."""
        self.run_dir.log(message)
        if self.echo:
            print(message, flush=True)


@dataclass
class Outcome:
    """What :func:`fit` ended with.

    Attributes:
        summary: the summary so far (``status``: completed, stopped_early, failed or
            interrupted).
        began: training began (the engine built its model and loaded any checkpoint).
        error: the exception that ended it (re-raised once the run is finalised), or None.
        callbacks: the run's callbacks (the trackers finish after the report).
        best: (accuracy, epoch) of the best validation row, once :func:`finalise` has read
            ``metrics.csv``; None before, or without a validation row.
    """

    summary: dict[str, Any]
    began: bool
    error: BaseException | None = None
    callbacks: list[Callback] = field(default_factory=list)
    best: tuple[float, float] | None = None


# -- resolve -----------------------------------------------------------------------------
def resolve(config: RunConfig | str | Path | dict[str, Any] | None, overrides: Sequence[str] | None,
            resume: str | Path | None, *, epochs: int | None = None,
            data_dir: str | Path | None = None) -> Plan:
    """The config to run, checked before anything touches the disk.

    Args:
        config: a RunConfig, a YAML path (a run's own ``config.yaml`` too) or a dict of
            sections; may be None when ``resume`` is given.
        overrides: ``"a.b=value"`` strings applied on top.
        resume: a run directory to continue from its checkpoint.
        epochs: with ``resume``: extend the run to this many epochs (see :func:`trainlab.run_extension.extension_of`).
        data_dir: where datasets are read from (for the memory estimate).

    Raises:
        ConfigError: invalid config; a resume under another config; ``epochs`` without
            ``resume`` or not beyond the run's length.
        RunDirError: the run to resume has no readable checkpoint.
    """
    from trainlab.engines.memory import check_memory

    if config is None and resume is None:
        raise ConfigError("nothing to run: give a config file, or --resume RUN_DIR")
    if epochs is not None and resume is None:
        raise ConfigError("--epochs extends a run: give it with --resume RUN_DIR")
    resolved = resolve_config(config, overrides) if config is not None else None
    plan = Plan(resolved) if resume is None else _resume_plan(resolved, overrides, resume, epochs)  # type: ignore[arg-type]
    get_engine(plan.config.engine).check_config(plan.config)
    check_trackers(plan.config)  # a tracker's missing package, too
    check_memory(plan.config, data_dir)  # a run that cannot fit is refused here, not by a MemoryError
    return plan


def _resume_plan(config: RunConfig | None, overrides: Sequence[str] | None, resume: str | Path,
                 epochs: int | None) -> Plan:
    """Continue ``resume`` under its own config (which ``config`` must equal), or extend it."""
    resume_dir = open_run_dir(resume)
    saved, provenance = resume_dir.read_run_config()
    resolved = config if config is not None else (
        with_overrides(saved, list(overrides), source="--set") if overrides else saved)
    # The source section documents where settings come from; editing it changes nothing that runs.
    differences = config_diff(saved, resolved, ignore=("source",))
    if differences:
        listed = "; ".join(f"{path}: {old!r} -> {new!r}" for path, old, new in differences[:10])
        raise ConfigError(
            f"cannot resume {resume_dir.path}: its config differs from the one given "
            f"({listed}); resume without changes, extend it with --epochs N, or start a new run"
        )
    # config.yaml may have been edited since the checkpoint: the checkpoint records its own config.
    verify_resume_config(resume_dir.path, resolved, recorded_extensions(provenance))
    if epochs is None:
        return Plan(resolved, resume_dir.path)
    extension = extension_of(resume_dir, resolved, epochs)
    longer = resolved.model_copy(update={"train": resolved.train.model_copy(update={"epochs": epochs})})
    return Plan(RunConfig.from_dict(longer.model_dump(mode="json"), source=str(resume_dir.config_path)),
                resume_dir.path, extension)


# -- open --------------------------------------------------------------------------------
def open_run(plan: Plan, *, run_id: str | None = None, overwrite: bool = False, echo: bool = True) -> Session:
    """The run directory: the one to resume, or a new one named ``run_id`` (else
    ``output.run_id``, else a default id no other run holds).

    Raises:
        ConfigError: ``run_id`` breaks the name rule.
        RunDirError: the directory exists (without ``overwrite``), ``overwrite`` would remove
            something that is not a trainlab run, or it is not writable.
    """
    if plan.resume_dir is not None:
        run_dir = resume_run_dir(plan.resume_dir)  # the user named this folder: any path will do
    else:
        config = plan.config
        run_dir = create_run_dir(config.output.dir, config.name,
                                 run_id if run_id is not None else config.output.run_id,
                                 seed=config.seed, overwrite=overwrite)
    return Session(plan, run_dir, echo)


# -- prepare -----------------------------------------------------------------------------
def prepare(session: Session, data_dir: str | Path | None = None) -> PreparedData:
    """Read the data, verify a resume against them, then write ``config.yaml`` and ``model.json``.

    Raises:
        DataError: the dataset is missing or corrupt, or is not the data of the run being
            resumed. A new run directory is removed again; a resumed one is left as it was.
        ConfigError: the checkpoint was written with another config.
    """
    from trainlab.data import prepare_data  # data readers are only needed once a run starts

    config, run_dir = session.config, session.run_dir
    data_cfg = config.data
    try:
        data = prepare_data(data_cfg.dataset, data_dir=data_dir or data_cfg.data_dir, seed=config.seed,
                            **data_cfg.prepare_kwargs())
        if session.resumed:  # before anything is written: a refused resume leaves the run as it was
            verify_resume(run_dir, checkpointed_config(config, session.plan.extension), data.fingerprint)
    except BaseException:
        if not session.resumed:
            discard_run_dir(run_dir)  # a refused start leaves no run directory behind
        raise
    if not session.resumed:
        run_dir.write_config({**config.model_dump(mode="json"), PROVENANCE_KEY: _provenance(data)})
    elif session.plan.extension is not None:
        session.log(record_extension(run_dir, config, session.plan.extension))
    if not session.resumed or not run_dir.model_path.exists():  # a run from before model.json gains it
        run_dir.write_model(ModelSpec.of(config.engine, data))
    session.log(f"run {run_dir.path}: engine {config.engine}, dataset {data_cfg.dataset} "
                f"({len(data.y_train)} train / {len(data.y_val)} val)")
    if not session.resumed:  # run.log keeps these (the report lists its warnings); once per run
        for warning in (run_leakage_warning(config), batch_norm_warmup_warning(config, len(data.y_train))):
            if warning:
                session.log(f"warning: {warning}")
    return data


def _provenance(data: PreparedData) -> dict[str, Any]:
    """config.yaml's record of when, with which versions and on which data the run started."""
    return {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "versions": package_versions(),
        "data": {
            "fingerprint": data.fingerprint,
            "source": str(data.source),
            "train": len(data.y_train),
            "val": len(data.y_val),
            "test": len(data.x_test) if data.x_test is not None else 0,
            "normalizer": {k: v for k, v in data.normalizer.items() if k == "kind"},
        },
    }


# -- fit ---------------------------------------------------------------------------------
def fit(session: Session, data: PreparedData, callbacks: Sequence[Callback] = (),
        progress: bool = True) -> Outcome:
    """Train; every ending (completed, stopped early, failed, interrupted) is an :class:`Outcome`."""
    config = session.config
    watch = StartWatch(build_callbacks(config, session.run_dir, callbacks))
    context = FitContext(run_dir=session.run_dir, callbacks=watch, state=TrainState(),
                         resume=session.resumed, progress=progress, log=session.log)
    started = time.perf_counter()
    summary: dict[str, Any] = {"status": "running"}
    error: BaseException | None = None
    try:
        summary.update(get_engine(config.engine).fit(config, data, context))
        summary["status"] = "stopped_early" if context.state.stop_training else "completed"
        if context.state.stop_reason:
            summary["stop_reason"] = context.state.stop_reason
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the loop checkpointed the step it stopped at
        summary["status"], error = "interrupted", exc
        session.log(_interrupted_message(session.run_dir.path, config))
    except Exception as exc:
        summary["status"], summary["error"], error = "failed", str(exc), exc
    summary.setdefault("steps", context.state.step)
    summary.setdefault("train_seconds", time.perf_counter() - started)
    return Outcome(summary, watch.began, error, watch.callbacks)


def _interrupted_message(run_path: Path, config: RunConfig) -> str:
    """Where an interrupted run resumes from: the step its checkpoint on disk holds."""
    step = checkpoint_step(run_path, config.engine)
    if step is None:
        off = "" if config.output.save_checkpoint else " (output.save_checkpoint is off)"
        return f"interrupted before any checkpoint{off}: nothing to resume; start the run again"
    return f"interrupted at step {step}; resume with: trainlab run --resume {run_path}"


# -- finalise and report -----------------------------------------------------------------
def finalise(session: Session, data: PreparedData, outcome: Outcome) -> None:
    """``summary.json`` (with the best validation accuracy) and the images the report shows.

    A run refused before training began leaves nothing: a new directory is removed, a
    resumed one is left as it was.
    """
    if not outcome.began and outcome.error is not None:
        if not session.resumed:
            discard_run_dir(session.run_dir)
        return
    outcome.best = best_validation(session.run_dir.metrics)
    outcome.summary["best_val_accuracy"] = outcome.best[0] if outcome.best else None
    session.run_dir.write_summary(outcome.summary)
    try:  # the report then needs no dataset
        from trainlab.report.samples import save_report_images

        save_report_images(data, session.config.model_dump(mode="json"), session.run_dir.path)
    except Exception as exc:  # the report falls back to reading the dataset
        session.log(f"warning: report images not saved: {exc}")


def report(session: Session, outcome: Outcome,
           write: Callable[[Path], Path] | None = None) -> None:
    """The report (``output.report``), shown as a step, then the trackers' last uploads.

    A report problem is logged, never raised over the run's own outcome. ``write`` draws the
    report of a run directory; default :func:`trainlab.report.build_run_report`.
    """
    if not outcome.began and outcome.error is not None:
        return
    path = session.run_dir.path
    if session.config.output.report:
        if write is None:
            from trainlab.report import build_run_report as write  # matplotlib only for reports
        session.log("writing the report (figures and report.html)...")
        started = time.perf_counter()
        try:
            session.log(f"report: {write(path)} ({time.perf_counter() - started:.1f} s)")
        except Exception as exc:  # the run's own outcome matters more than its report
            session.log(f"warning: report not written: {exc}")
    finish_trackers(outcome.callbacks, outcome.summary, path, session.log)  # after the report they upload
    session.log(f"{outcome.summary['status']}: {outcome.summary.get('steps')} steps in "
                f"{outcome.summary.get('train_seconds', 0.0):.1f} s; {final_line(outcome.summary, outcome.best).removeprefix('done: ')}")


def best_validation(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """(accuracy, epoch) of the best validation row in ``metrics.csv`` rows; None without one."""
    best: tuple[float, float] | None = None
    for row in rows:
        if row.get("split") == "val" and "accuracy" in row:
            accuracy = float(row["accuracy"])
            if best is None or accuracy > best[0]:
                best = (accuracy, float(row.get("epoch", 0.0)))
    return best


__all__ = [
    "Outcome",
    "Plan",
    "Session",
    "best_validation",
    "finalise",
    "fit",
    "open_run",
    "prepare",
    "report",
    "resolve",
]
