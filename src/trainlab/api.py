"""The Python API: load and override a config, run it, open a finished run.

The CLI is a thin layer over these functions, so a notebook gets the same behaviour::

    import trainlab.api as tl
    cfg = tl.load_config("configs/seed-d/2x50.yaml", overrides=["train.epochs=2"])
    run = tl.run(cfg)
    run.summary["test_accuracy"], run.metrics[-1]
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.callbacks import (
    Callback,
    CallbackList,
    CheckpointTrigger,
    EarlyStopping,
    MetricsLogger,
    ReduceLROnPlateau,
    TrainState,
)
from trainlab.config import RunConfig, config_diff, load_config, with_overrides
from trainlab.config.leakage import run_leakage_warning
from trainlab.engines.base import FitContext, get_engine
from trainlab.engines.resume import checkpoint_step, verify_resume_config, verify_resume_data
from trainlab.engines.step_log import read_steps_csv
from trainlab.errors import ConfigError, TrainlabError
from trainlab.gradcheck_run import gradcheck
from trainlab.runs import (
    RunDir,
    create_run_dir,
    discard_run_dir,
    open_run_dir,
    package_versions,
    resume_run_dir,
)

# config.yaml of a run holds the resolved config plus this section, which is not config.
PROVENANCE_KEY = "provenance"
# What Run.series can pair values with: metrics.csv columns that place a row in training.
SERIES_X = ("step", "epoch", "elapsed")


@dataclass
class Run:
    """A run directory opened for reading.

    Attributes:
        path: the run directory.
        config: the resolved config as a plain dict (``provenance`` included).
        metrics: one dict per row of ``metrics.csv``.
        summary: the contents of ``summary.json`` (empty while the run has not finished).
        steps: one dict per row of ``steps.csv`` (``step``, ``epoch``, ``loss``, ``lr``,
            ``elapsed``); empty when the run did not set ``train.log_steps``.
    """

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    steps: list[dict[str, float]] = field(default_factory=list)

    def series(self, column: str, split: str, x: str = "step") -> list[tuple[int | float, float]]:
        """``(x, value)`` pairs of one metric for one split, e.g. ``series("loss", "val")``.

        Args:
            column: a ``metrics.csv`` column: loss, accuracy, lr, elapsed, a monitor...
            split: train, val or test.
            x: the first item of each pair: ``step`` (an int), ``epoch`` (completed epochs)
                or ``elapsed`` (seconds of training; the rows of a run written before that
                column existed have none and are left out). Default ``step``.

        Raises:
            TrainlabError: ``x`` is none of those.
        """
        if x not in SERIES_X:
            raise TrainlabError(f"series(x={x!r}): x must be one of {', '.join(SERIES_X)}")
        return [
            (int(row[x]) if x == "step" else float(row[x]), float(row[column]))
            for row in self.metrics
            if row.get("split") == split and column in row and x in row
        ]


def open_run(path: str | Path) -> Run:
    """Open a finished (or interrupted) run directory."""
    run_dir = open_run_dir(path)
    return Run(run_dir.path, run_dir.read_config(), run_dir.metrics, run_dir.read_summary(),
               read_steps_csv(run_dir.steps_path))


def _config_from_run_dir(run_dir: RunDir) -> RunConfig:
    saved = run_dir.read_config()
    saved.pop(PROVENANCE_KEY, None)
    return RunConfig.from_dict(saved, source=str(run_dir.config_path))


def _with_overrides(config: RunConfig, overrides: Sequence[str] | None) -> RunConfig:
    return with_overrides(config, list(overrides), source="--set") if overrides else config


def _resolve_config(
    config: RunConfig | str | Path | None,
    overrides: Sequence[str] | None,
    resume: str | Path | None,
) -> tuple[RunConfig, Path | None]:
    """The config to run and, when resuming, the run directory (after checking that the config,
    the run's config.yaml and its checkpoint's recorded config all match)."""
    if config is None and resume is None:
        raise ConfigError("nothing to run: give a config file, or --resume RUN_DIR")
    if isinstance(config, str | Path):
        resolved = load_config(config, list(overrides or []))
    elif config is not None:
        resolved = _with_overrides(config, overrides)
    if resume is None:
        return resolved, None
    resume_dir = open_run_dir(resume)
    saved = _config_from_run_dir(resume_dir)
    if config is None:
        resolved = _with_overrides(saved, overrides)
    # The source section documents where settings come from; editing it changes nothing that runs.
    differences = config_diff(saved, resolved, ignore=("source",))
    if differences:
        listed = "; ".join(f"{path}: {old!r} -> {new!r}" for path, old, new in differences[:10])
        raise ConfigError(
            f"cannot resume {resume_dir.path}: its config differs from the one given "
            f"({listed}); resume without changes, or start a new run"
        )
    # config.yaml may have been edited since the checkpoint: the checkpoint records its own config.
    verify_resume_config(resume_dir.path, resolved)
    return resolved, resume_dir.path


def _verify_resume_data(run_dir: RunDir, engine: str, fingerprint: str) -> None:
    """Refuse to resume on data whose fingerprint differs from the checkpoint's (or, for a
    checkpoint that records none, from config.yaml's provenance)."""
    provenance = run_dir.read_config().get(PROVENANCE_KEY) or {}
    recorded = (provenance.get("data") or {}).get("fingerprint") if isinstance(provenance, dict) else None
    verify_resume_data(run_dir.path, engine, fingerprint, recorded if isinstance(recorded, str) else None)


def build_callbacks(
    config: RunConfig, run_dir: RunDir, extra: Sequence[Callback] = ()
) -> list[Callback]:
    """The callbacks a config asks for, then ``extra``, in the order they must run.

    The logger runs first (so a row is on disk before anything decides to stop) and the
    checkpoint trigger last (so it sees a stop request made by the others).
    """
    train = config.train
    callbacks: list[Callback] = [MetricsLogger(run_dir)]
    # The config sections carry exactly the callbacks' arguments, under the same names.
    if train.early_stopping is not None:
        callbacks.append(EarlyStopping(**train.early_stopping.model_dump()))
    if train.reduce_on_plateau is not None:
        callbacks.append(ReduceLROnPlateau(**train.reduce_on_plateau.model_dump()))
    callbacks.extend(extra)
    if config.output.save_checkpoint:
        callbacks.append(CheckpointTrigger(every=train.checkpoint_every or 1))
    return callbacks


def run(
    config: RunConfig | str | Path | None = None,
    *,
    overrides: Sequence[str] | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    run_id: str | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    echo: bool = True,
    callbacks: Sequence[Callback] = (),
) -> Run:
    """Train one run and return it, opened.

    Args:
        config: a :class:`RunConfig` or a YAML path; may be None when ``resume`` is given.
        overrides: ``"a.b=value"`` strings applied on top of the config. Default None.
        resume: a run directory to continue from its last checkpoint. Default None.
        overwrite: start again in an existing run directory. Default False.
        run_id: the run directory's name (letters, digits, ``.``, ``_``, ``-``); default
            ``output.run_id``, else the start time, the seed and a random suffix.
        data_dir: where datasets are read from (overrides ``data.data_dir``). Default None.
        progress: show a progress bar or periodic progress lines. Default True.
        echo: print log lines to the console as well as to ``run.log``. Default True.
        callbacks: more callbacks to drive (e.g. a study's pruning), after the config's own
            and before the checkpoint trigger. Default none.

    A start refused before the first training step (a missing dataset, a checkpoint that
    cannot be resumed) leaves no new run directory behind, and a resumed one as it was.

    Raises:
        ConfigError: the config is invalid, ``run_id`` breaks the name rule, or the config
            differs from the one of the run being resumed.
        RunDirError: the run directory exists (without resume/overwrite), overwrite would
            remove something that is not a trainlab run, or it is not writable.
        DataError: the dataset is missing or corrupt, or is not the data of the run being
            resumed (its fingerprint changed).
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped training; the run was checkpointed at
            the step it stopped at and its summary says "interrupted".
    """
    from trainlab.data import prepare_data  # data readers are only needed once a run starts
    from trainlab.engines.memory import check_memory

    config_obj, resume_dir = _resolve_config(config, overrides, resume)
    engine = get_engine(config_obj.engine)
    engine.check_config(config_obj)  # before touching the disk, so a bad config leaves nothing
    check_memory(config_obj, data_dir)  # a run that cannot fit is refused here, not by a MemoryError
    if resume_dir is not None:
        run_dir = resume_run_dir(resume_dir)  # the user named this folder: any path will do
    else:  # the name rule checks run_id; None draws a default id no other run holds
        run_dir = create_run_dir(config_obj.output.dir, config_obj.name,
                                 run_id if run_id is not None else config_obj.output.run_id,
                                 seed=config_obj.seed, overwrite=overwrite)

    def log(message: str) -> None:
        run_dir.log(message)
        if echo:
            print(message, flush=True)

    data_cfg = config_obj.data
    try:
        data = prepare_data(data_cfg.dataset, data_dir=data_dir or data_cfg.data_dir, seed=config_obj.seed,
                            **data_cfg.prepare_kwargs())
    except BaseException:
        discard_run_dir(run_dir)  # a refused start leaves no run directory behind
        raise
    if resume_dir is not None:  # before anything is written: a refused resume leaves the run as it was
        _verify_resume_data(run_dir, config_obj.engine, data.fingerprint)
    if resume is None:
        resolved_dict = config_obj.model_dump(mode="json")
        resolved_dict[PROVENANCE_KEY] = {
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
        run_dir.write_config(resolved_dict)
    log(f"run {run_dir.path}: engine {config_obj.engine}, dataset {data_cfg.dataset} "
        f"({len(data.y_train)} train / {len(data.y_val)} val)")
    leakage = run_leakage_warning(config_obj)
    if leakage and resume is None:  # run.log keeps it (the report lists its warnings); once per run
        log(f"warning: {leakage}")

    watch = _StartWatch(build_callbacks(config_obj, run_dir, callbacks))
    context = FitContext(run_dir=run_dir, callbacks=watch, state=TrainState(),
                         resume=resume is not None, progress=progress, log=log)
    started = time.perf_counter()
    summary: dict[str, Any] = {"status": "running"}
    try:
        summary.update(engine.fit(config_obj, data, context))
        summary["status"] = "stopped_early" if context.state.stop_training else "completed"
        if context.state.stop_reason:
            summary["stop_reason"] = context.state.stop_reason
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the loop checkpointed the step it stopped at
        summary["status"] = "interrupted"
        log(_interrupted_message(run_dir.path, config_obj))
        raise
    except Exception as exc:
        summary["status"] = "failed"
        summary["error"] = str(exc)
        raise
    finally:
        if watch.began or sys.exc_info()[0] is None:  # trained, or nothing went wrong
            summary.setdefault("steps", context.state.step)
            summary.setdefault("train_seconds", time.perf_counter() - started)
            summary["best_val_accuracy"] = _best(run_dir.metrics, "val", "accuracy")
            run_dir.write_summary(summary)
            if config_obj.output.report:
                _report_quietly(run_dir.path, log)
        else:  # refused before training: a new directory goes, a resumed one is left as it was
            discard_run_dir(run_dir)
    log(_describe(summary))
    return open_run(run_dir.path)


class _StartWatch(CallbackList):
    """The run's callbacks, noting whether training began: ``on_train_begin`` comes once the
    engine has built its model and loaded any checkpoint, just before the first step."""

    began = False

    def call(self, hook: str, state: TrainState, *args: Any) -> None:
        if hook == "on_train_begin":
            self.began = True
        super().call(hook, state, *args)


def _interrupted_message(run_path: Path, config: RunConfig) -> str:
    """Where an interrupted run resumes from: the step its checkpoint on disk holds."""
    step = checkpoint_step(run_path, config.engine)
    if step is None:
        off = "" if config.output.save_checkpoint else " (output.save_checkpoint is off)"
        return f"interrupted before any checkpoint{off}: nothing to resume; start the run again"
    return f"interrupted at step {step}; resume with: trainlab run --resume {run_path}"


def _report_quietly(run_path: Path, log: Callable[[str], None]) -> None:
    """Write the run's report; a report problem is logged, never raised over a training error."""
    try:
        log(f"report: {write_report(run_path)}")
    except Exception as exc:  # the run's own outcome matters more than its report
        log(f"warning: report not written: {exc}")


def _best(rows: list[dict[str, Any]], split: str, column: str) -> float | None:
    values = [float(r[column]) for r in rows if r.get("split") == split and column in r]
    return max(values) if values else None


def _describe(summary: dict[str, Any]) -> str:
    acc = summary.get("test_accuracy")
    acc_text = f"test accuracy {acc:.4f}" if isinstance(acc, float) else "no test labels"
    return (f"{summary['status']}: {acc_text}, {summary.get('steps')} steps in "
            f"{summary.get('train_seconds', 0.0):.1f} s")


def show_config(path: str | Path, overrides: Sequence[str] | None = None) -> str:
    """The fully resolved config of ``path`` (bases merged, overrides applied) as YAML."""
    from trainlab.config import config_to_yaml

    return config_to_yaml(load_config(path, list(overrides or [])))


def validate_files(paths: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """Validate each file, engine rules included: ``(path, error message or None)``.

    A file with a ``study:`` section is checked as a study file (its base run config, the
    search space's paths and values, every stage), so ``trainlab validate`` takes both kinds.
    A run config (a study's base) must also fit in this machine's memory (``check_memory``).
    """
    from trainlab.config import load_config_dict
    from trainlab.engines.memory import check_memory
    from trainlab.studies.spec import load_study

    results: list[tuple[Path, str | None]] = []
    for path in paths:
        try:
            if "study" in load_config_dict(path):
                check_memory(load_study(path).base)  # each trial's run checks its own
            else:
                check_memory(load_config(path))
            results.append((Path(path), None))
        except ConfigError as exc:
            results.append((Path(path), str(exc)))
    return results




def write_report(run_path: str | Path) -> Path:
    """Draw a run's figures (``RUN/figures``, PNG and SVG) and write ``RUN/report.html``.

    Works on finished, failed and interrupted runs alike: what is missing (a summary,
    predictions, the dataset) is said in the report. Returns the report's path.

    Raises:
        RunDirError: ``run_path`` is not a run directory.
    """
    from trainlab.report import build_run_report  # matplotlib is imported only for reports

    return build_run_report(run_path)


__all__ = [
    "PROVENANCE_KEY",
    "Run",
    "build_callbacks",
    "gradcheck",
    "load_config",
    "open_run",
    "run",
    "show_config",
    "validate_files",
    "write_report",
]
