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
from typing import TYPE_CHECKING, Any

from trainlab.callbacks import (
    Callback,
    CallbackList,
    CheckpointTrigger,
    EarlyStopping,
    MetricsLogger,
    MlflowLogger,
    ReduceLROnPlateau,
    TensorBoardLogger,
    TrainState,
    check_trackers,
    finish_trackers,
)
from trainlab.config import RunConfig, config_diff, load_config, with_overrides
from trainlab.config.leakage import run_leakage_warning
from trainlab.engines.base import FitContext, get_engine
from trainlab.engines.resume import checkpoint_step, verify_resume, verify_resume_config
from trainlab.engines.step_log import read_steps_csv
from trainlab.errors import ConfigError, TrainlabError
from trainlab.gradcheck_run import gradcheck, write_gradcheck
from trainlab.runs import (
    RunDir,
    create_run_dir,
    discard_run_dir,
    open_run_dir,
    package_versions,
    resume_run_dir,
)

if TYPE_CHECKING:  # studies sit below the API; imported where a study runs
    from trainlab.studies import Options as StudyOptions
    from trainlab.studies import Study
    from trainlab.studies.results import StageData

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


def build_callbacks(
    config: RunConfig, run_dir: RunDir, extra: Sequence[Callback] = ()
) -> list[Callback]:
    """The callbacks a config asks for, then ``extra``, in the order they must run.

    The logger runs first (so a row is on disk before anything decides to stop), then the
    trackers (``output.tensorboard``, ``output.mlflow``), and the checkpoint trigger last (so
    it sees a stop request made by the others).
    """
    train = config.train
    callbacks: list[Callback] = [MetricsLogger(run_dir)]
    if config.output.tensorboard:
        callbacks.append(TensorBoardLogger(run_dir))
    if config.output.mlflow is not None:
        callbacks.append(MlflowLogger(config, run_dir))
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
    check_trackers(config_obj)  # a tracker's missing package, too
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
        verify_resume(run_dir, config_obj, data.fingerprint)
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
    if resume is None or not run_dir.model_path.exists():  # a run from before model.json gains it on resume
        from trainlab.run_files import ModelSpec  # what predict needs: shape, classes, normaliser

        run_dir.write_model(ModelSpec.of(config_obj.engine, data))
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
            _save_report_images(data, config_obj, run_dir.path, log)  # the report then needs no dataset
            if config_obj.output.report:
                _report_quietly(run_dir.path, log)
            finish_trackers(watch.callbacks, summary, run_dir.path, log)  # after the report they upload
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


def _save_report_images(data: Any, config: RunConfig, run_path: Path, log: Callable[[str], None]) -> None:
    """Save the images the run's report shows (``data``: the PreparedData it trained on); a
    problem is logged, never raised over a training error."""
    from trainlab.report.samples import save_report_images

    try:
        save_report_images(data, config.model_dump(mode="json"), run_path)
    except Exception as exc:  # the report falls back to reading the dataset
        log(f"warning: report images not saved: {exc}")


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




def write_report(path: str | Path, *, trials: Sequence[str] = (), table_format: str | None = None,
                 storage: str | None = None) -> Path:
    """Draw the figures (``PATH/figures``, PNG and SVG) and write ``PATH/report.html`` of a run or a study.

    A study directory (it holds the study's journal), or any ``path`` given with ``storage``,
    gets the study report; anything else the run report, which works on finished, failed and
    interrupted runs alike (what is missing is said in the report). Returns the report's path.

    Args:
        path: a run directory or a study directory.
        trials: study only: keys of the trials whose curves are overlaid (``t0003-r1``);
            default: the best few.
        table_format: study only: also write the settings table, ready to paste, as ``md`` or
            ``tex`` to ``PATH/table.<format>``. Default None (no table).
        storage: study only: its database URL when it is not the directory's journal.

    Raises:
        ConfigError: ``trials`` or ``table_format`` for a run directory; a ``table_format``
            other than md or tex; a trial key the study does not have.
        RunDirError: ``path`` is neither a study directory nor a run directory.
    """
    from trainlab.report import build_run_report  # matplotlib is imported only for reports
    from trainlab.report.study_data import is_study_dir

    study = is_study_dir(Path(path)) or storage is not None
    if not study and (trials or table_format):
        raise ConfigError(f"{path}: --trials and --format are for a study directory; this is not one")
    if table_format is not None and table_format not in ("md", "tex"):
        raise ConfigError(f"--format {table_format!r}: use md or tex")
    if not study:
        return build_run_report(path)
    from trainlab.io import atomic_write_text
    from trainlab.report.study_report import build_study_report, study_table

    report = build_study_report(Path(path), list(trials), storage)
    if table_format:
        atomic_write_text(report.parent / f"table.{table_format}", study_table(Path(path), table_format, storage))
    return report


def execute_trial(config: RunConfig, run_dir: Path, callbacks: list[Callback],
                  data_dir: str | None) -> dict[str, Any]:
    """Run (or finish) one study trial's run directory with :func:`run`; the run's summary.

    The studies' trial executor (:class:`trainlab.studies.TrialExecutor`), which
    :func:`run_study` injects. A directory left by a dead worker is reused: its summary if
    it finished with the same config, its checkpoint if it has one, else it is started again.
    """
    config_file = run_dir / "config.yaml"
    resume: Path | None = None
    if config_file.exists():
        try:
            previous = open_run(run_dir)
            saved = {k: v for k, v in previous.config.items() if k != PROVENANCE_KEY}
            same = not config_diff(RunConfig.from_dict(saved, str(config_file)), config, ignore=("source",))
        except TrainlabError:
            same = False
        if same and previous.summary.get("status") in ("completed", "stopped_early"):
            return previous.summary
        if same and any(run_dir.glob("checkpoint.*")):
            resume = run_dir
    if resume is not None:
        return run(resume=resume, data_dir=data_dir, progress=False, echo=False, callbacks=callbacks).summary
    return run(config, run_id=run_dir.name, overwrite=True, data_dir=data_dir, progress=False, echo=False,
               callbacks=callbacks).summary


def run_study(study: Study | str | Path, *, workers: int = 1,
              options: StudyOptions | None = None) -> dict[str, list[StageData]]:
    """Run a study to the end (or resume it: the same call), its trials trained by :func:`execute_trial`.

    Args:
        study: a loaded study (:func:`trainlab.studies.load_study`), or the path of a study file.
        workers: worker processes on this machine; 1 runs in this process. Default 1.
        options: storage URL, heartbeat, data folder, output. Default ``Options()``.

    Returns:
        The study's stages as stored, after writing results.csv and results.md
        (see :func:`trainlab.studies.run_study`).
    """
    from trainlab import studies  # looked up on the package at call time, so it can be replaced

    return studies.run_study(study, workers=workers, options=options, execute=execute_trial)


__all__ = [
    "PROVENANCE_KEY",
    "Run",
    "build_callbacks",
    "execute_trial",
    "gradcheck",
    "load_config",
    "open_run",
    "run",
    "run_study",
    "show_config",
    "validate_files",
    "write_gradcheck",
    "write_report",
]
