"""The Python API: run a config (a file, a dict or a RunConfig), train your own module, load a
trained run and predict with it, run studies, write reports.

The CLI is a thin layer over these functions, so a notebook gets the same behaviour::

    import trainlab.api as tl
    run = tl.run("configs/examples/mnist-mlp-numpy.yaml", overrides=["train.epochs=1"])
    model = tl.load(run.path)                  # from the run directory alone
    model.predict(images).labels, model.metrics
    model.export("onnx")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab import pipeline
from trainlab.callbacks import Callback, build_callbacks
from trainlab.config import PROVENANCE_KEY, RunConfig, config_diff, load_config
from trainlab.engines.step_log import read_steps_csv
from trainlab.errors import ConfigError, TrainlabError
from trainlab.gradcheck_run import gradcheck, write_gradcheck
from trainlab.run_files import RunDir
from trainlab.runs import open_run_dir
from trainlab.trained import Model, Predictions, load

if TYPE_CHECKING:  # studies sit below the API; imported where a study runs
    from torch import nn

    from trainlab.studies import Options as StudyOptions
    from trainlab.studies import Study
    from trainlab.studies.results import StageData

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


def run(
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    *,
    overrides: Sequence[str] | None = None,
    resume: str | Path | None = None,
    epochs: int | None = None,
    overwrite: bool = False,
    run_id: str | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    echo: bool = True,
    callbacks: Sequence[Callback] = (),
) -> Run:
    """Train one run and return it, opened.

    The stages of :mod:`trainlab.pipeline` in order: resolve, open, prepare, fit, finalise,
    report. Every ending of training (completed, stopped early, failed, interrupted) is
    finalised and reported before its error, if any, is raised.

    Args:
        config: a :class:`RunConfig`, a YAML path (a run's own ``config.yaml`` reruns it) or
            a dict of sections; may be None when ``resume`` is given.
        overrides: ``"a.b=value"`` strings applied on top of the config. Default None.
        resume: a run directory to continue from its last checkpoint. Default None.
        epochs: with ``resume``: extend the run (finished or not) to this many epochs; the
            extension is recorded in its provenance, and the lr schedule is computed over the
            new length (see :func:`trainlab.run_extension.extension_of`). Default None.
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
        ConfigError: the config is invalid, ``run_id`` breaks the name rule, the config
            differs from the one of the run being resumed, ``epochs`` cannot extend it, or
            ``resume`` and ``overwrite`` are both given.
        RunDirError: the run directory exists (without resume/overwrite), overwrite would
            remove something that is not a trainlab run, it is not writable, or the run to
            resume has no readable checkpoint.
        DataError: the dataset is missing or corrupt, or is not the data of the run being
            resumed (its fingerprint changed).
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped training; the run was checkpointed at
            the step it stopped at (unless ``output.save_checkpoint`` is off) and its summary
            says "interrupted".
    """
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite starts one again from scratch: give one of them")
    plan = pipeline.resolve(dict(config) if isinstance(config, Mapping) else config, overrides, resume,
                            epochs=epochs, data_dir=data_dir)
    session = pipeline.open_run(plan, run_id=run_id, overwrite=overwrite, echo=echo)
    data = pipeline.prepare(session, data_dir)
    outcome = pipeline.fit(session, data, callbacks, progress)
    pipeline.finalise(session, data, outcome)
    pipeline.report(session, outcome, write=write_report)
    if outcome.error is not None:
        raise outcome.error
    return open_run(session.run_dir.path)


def fit(module: nn.Module, config: RunConfig | str | Path | Mapping[str, Any], *, name: str | None = None,
        **run_kwargs: Any) -> Run:
    """Train a torch module built in Python under ``config`` and return the run, opened.

    ``config``'s model section is replaced by the module
    (:func:`trainlab.custom_model.config_for_module` keeps its ``dtype``); data, optimizer,
    callbacks, monitors, checkpoints and the report work as for a built-in model. The run
    trains a copy of ``module``; when it finishes (completed or stopped early) with a
    checkpoint (``output.save_checkpoint``), the weights evaluations used are copied back into
    ``module``; a failed or interrupted run raises and leaves ``module`` as it was. Resuming
    with ``resume=`` works in the same process only: a module object cannot be rebuilt by
    another one (put its class in a file and use ``model.factory`` for that).

    Args:
        module: an ``nn.Module`` mapping (N, C, H, W) images to (N, K) logits.
        config: a RunConfig, a YAML path, or a mapping of sections (the model section may be absent).
        name: its registry name (``model.factory: trainlab.custom_model:registered.<name>``);
            default its class name and a number, the same for the same object.
        **run_kwargs: passed to :func:`run` (overrides, resume, run_id, data_dir, callbacks...).

    Raises:
        ConfigError: the module or the config is invalid (as :func:`run`).
    """
    from trainlab.custom_model import config_for_module

    done = run(config_for_module(module, config, name=name), **run_kwargs)
    if RunDir(done.path).checkpoint_path(".pt").exists():  # the weights evaluations used (EMA too)
        module.load_state_dict(load(done.path, device="cpu").module.state_dict())
    return done


def show_config(path: str | Path, overrides: Sequence[str] | None = None) -> str:
    """The fully resolved config of ``path`` (bases merged, overrides applied) as YAML."""
    from trainlab.config import config_to_yaml

    return config_to_yaml(load_config(path, list(overrides or [])))


def validate_files(paths: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """Validate each file, engine rules included: ``(path, error message or None)``.

    A file with a ``study:`` section is checked as a study file (its base run config, the
    search space's paths and values, every stage), so ``trainlab validate`` takes both kinds.
    A run config (a study's base) then passes what ``trainlab run`` checks before it reads any
    data: its engine's rules (``Engine.check_config``), its trackers' packages, and this
    machine's memory (``check_memory``).
    """
    from trainlab.callbacks.tracker import check_trackers
    from trainlab.config import load_config_dict
    from trainlab.engines.base import get_engine
    from trainlab.engines.memory import check_memory
    from trainlab.studies.spec import load_study

    results: list[tuple[Path, str | None]] = []
    for path in paths:
        try:
            # A study's base only: each trial's run checks its own config when it starts.
            config = load_study(path).base if "study" in load_config_dict(path) else load_config(path)
            get_engine(config.engine).check_config(config)
            check_trackers(config)
            check_memory(config)
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
    directory = RunDir(run_dir)
    resume: Path | None = None
    if directory.config_path.exists():
        try:
            previous = open_run(run_dir)
            same = not config_diff(directory.read_run_config()[0], config, ignore=("source",))
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


def run_study(study: Study | str | Path, *, workers: int = 1, options: StudyOptions | None = None,
              retry_failed: bool = False) -> list[StageData]:
    """Run a study to the end (or resume it: the same call), its trials trained by :func:`execute_trial`.

    Args:
        study: a loaded study (:func:`trainlab.studies.load_study`), or the path of a study file.
        workers: worker processes on this machine; 1 runs in this process. Default 1.
        options: storage URL, heartbeat, data folder, output. Default ``Options()``.
        retry_failed: first queue each failed trial again, once per key, in its own run
            directory (resumed from its checkpoint when it has one). Default False.

    Returns:
        The study's stages as stored, after writing results.csv and results.md
        (see :func:`trainlab.studies.run_study`).
    """
    from trainlab import studies  # looked up on the package at call time, so it can be replaced

    return studies.run_study(study, workers=workers, options=options, execute=execute_trial,
                             retry_failed=retry_failed)


__all__ = [
    "PROVENANCE_KEY",
    "Model",
    "Predictions",
    "Run",
    "build_callbacks",
    "execute_trial",
    "fit",
    "gradcheck",
    "load",
    "load_config",
    "open_run",
    "run",
    "run_study",
    "show_config",
    "validate_files",
    "write_gradcheck",
    "write_report",
]
