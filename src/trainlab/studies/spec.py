"""The study file: a run config (inline or ``base: run.yaml``) plus a ``study:`` section.

Example::

    base: ../seed-d/2x50-bn.yaml
    study:
      objective: best_val_accuracy        # or {metric: test_loss, direction: minimize}
      sampler: random                     # grid (default when every range is discrete), random, tpe
      n_trials: 60
      repeats: 1
      space:
        regularization.l2: {loguniform: [1.0e-5, 1.0e-1]}
        bn: {linked: {before: {model.batch_norm: true, model.bn_position: before},
                      after: {model.batch_norm: true, model.bn_position: after}}}
      stages:                             # optional: coarse-to-fine
        - {name: coarse}
        - {name: fine, narrow: {top: 3}, n_trials: 20}
        - {name: final, best: true, overrides: {schedule.cycles: 3}}
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from trainlab.config import (
    RunConfig,
    load_config,
    load_config_dict,
    resolve_mode,
    validation_error_to_config_error,
    with_overrides,
)
from trainlab.config._base import StrictModel
from trainlab.config.leakage import (
    SelectionOnTest,
    leakage_warning,
    objective_selection,
    pruner_selection,
    run_leakage_warning,
    run_selections,
)
from trainlab.config.overrides import deep_merge, parse_overrides
from trainlab.config.run import SafeName
from trainlab.errors import ConfigError
from trainlab.names import check_name

from .space import Param, grid_points, overrides_for, parse_space

SamplerName = Literal["grid", "random", "tpe"]
#: Numbers a run's summary.json holds (both engines); the objective must be one of them.
SUMMARY_METRICS = (
    "best_val_accuracy", "test_accuracy", "test_loss", "final_val_accuracy", "final_val_loss",
    "final_train_accuracy", "final_train_loss", "train_seconds", "images_per_second", "params",
    "steps", "epochs",
)
MAX_CHECKED_POINTS = 2000


class _Strict(StrictModel):
    """Unknown keys, infinities and booleans-as-numbers are refused, as in run configs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=False)


class ObjectiveSpec(_Strict):
    """What a trial is scored by: a summary.json metric and whether higher is better."""

    metric: str = Field("best_val_accuracy", description="A key of summary.json.")
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Default: minimize for losses and seconds, else maximize."
    )


class PrunerSpec(_Strict):
    """Stop clearly bad trials early from a per-evaluation metric (``monitor``: validation
    accuracy by default)."""

    type: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    monitor: str = Field("val_accuracy", description="The per-evaluation metric reported, e.g. val_loss.")
    n_startup_trials: int = Field(5, ge=0, description="median: trials finished before pruning starts.")
    n_warmup_steps: int = Field(0, ge=0, description="median: evaluations before a trial can be pruned.")
    min_resource: int = Field(1, ge=1, description="successive_halving/hyperband: evaluations first rung.")
    reduction_factor: int = Field(3, ge=2, description="successive_halving/hyperband: rung ratio.")


class NarrowSpec(_Strict):
    """Coarse-to-fine: narrow the previous stage's ranges around its best ``top`` settings."""

    top: int = Field(3, ge=1, description="How many of the previous stage's best settings.")
    margin: float = Field(
        0.25, ge=0.0, description="Widen the span of the best values by this fraction of it on each side."
    )


class StageSpec(_Strict):
    """One stage of a multi-stage study."""

    name: SafeName
    sampler: SamplerName | None = None
    n_trials: int | None = Field(None, ge=1)
    repeats: int | None = Field(None, ge=1)
    space: dict[str, Any] | None = None
    narrow: NarrowSpec | None = None
    best: bool = Field(False, description="Run the previous stage's best setting (with overrides).")
    overrides: dict[str, Any] = Field(default_factory=dict)
    pruner: PrunerSpec | Literal["median", "successive_halving", "hyperband", "none"] | None = None


class StudySection(_Strict):
    """The ``study:`` section of a study file."""

    name: SafeName | None = Field(None, description="Default: the run config's name.")
    dir: str | None = Field(None, description="Study directory; default <output.dir>/<name>.")
    objective: ObjectiveSpec | str = "best_val_accuracy"
    sampler: SamplerName | None = None
    seed: int = Field(0, ge=0)
    n_trials: int | None = Field(None, ge=1)
    repeats: int = Field(1, ge=1)
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="Significance level of the verdicts.")
    pruner: PrunerSpec | Literal["median", "successive_halving", "hyperband", "none"] | None = None
    space: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(default_factory=list)


class _File(_Strict):
    study: StudySection


@dataclass
class Stage:
    """A resolved stage: what to search and how."""

    index: int
    name: str
    sampler: SamplerName
    n_trials: int | None
    repeats: int
    params: list[Param]
    narrow: NarrowSpec | None = None
    best: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    pruner: PrunerSpec | None = None


@dataclass
class Study:
    """A loaded, validated study file."""

    name: str
    dir: Path
    source: str
    base: RunConfig
    metric: str
    direction: Literal["maximize", "minimize"]
    stages: list[Stage]
    seed: int = 0
    alpha: float = 0.05
    #: ``--set key=value`` overrides as given: of the base run config, and ``study.`` ones of the
    #: study section (a reduced-size study records them)
    overrides: tuple[str, ...] = ()
    #: the one-line warning when the study chooses anything on the test split (its objective,
    #: a pruner, or its runs' callbacks); None when it does not (see ``config.leakage``)
    leakage: str | None = None

    def stage_name(self, stage: Stage) -> str:
        """The Optuna study name of a stage (the study name alone for one stage)."""
        return self.name if len(self.stages) == 1 else f"{self.name}.{stage.name}"


def default_direction(metric: str) -> Literal["maximize", "minimize"]:
    """Minimize losses and times, maximize everything else (:func:`trainlab.config.resolve_mode`)."""
    return "minimize" if resolve_mode(metric) == "min" else "maximize"


def _pruner(raw: Any) -> PrunerSpec | None:
    spec = PrunerSpec(type=raw) if isinstance(raw, str) else raw
    return None if spec is None or spec.type == "none" else spec


def load_study(path: str | Path, dir_override: str | Path | None = None,
               overrides: Sequence[str] | None = None, name: str | None = None) -> Study:
    """Read and validate a study file.

    Args:
        path: the study file.
        dir_override: the study directory (``--dir``). Default None: study.dir, else
            ``<output.dir>/<name>``.
        overrides: ``key.path=value`` strings applied to the base run config before the stages'
            overrides and the searched fields (``--set train.epochs=3``); a ``study.`` key changes
            the study section (``--set study.stages[0].n_trials=12``). Default None.
        name: the study name (``--name``), which also names the default directory, so that a
            reduced-size study does not share the full study's directory. Default None.

    Raises:
        ConfigError: naming the file and the field (``study.space['optimizer.lr']``...).
    """
    if name is not None:
        check_name(name, "--name")
    source = str(path)
    data = load_config_dict(path)
    raw = data.pop("study", None)
    if raw is None:
        raise ConfigError(f"{source}: a study file needs a study: section (objective, space, sampler...)")
    overrides = tuple(overrides or ())
    study_sets = [o for o in overrides if o.split("=", 1)[0].strip().startswith("study.")]
    if study_sets:  # --set study.stages[0].n_trials=12: a smaller search of the same study
        raw = deep_merge(raw, parse_overrides(study_sets)["study"])
    try:
        section = _File.model_validate({"study": raw}).study
    except ValidationError as error:
        raise validation_error_to_config_error(error, source, _File) from None
    base = RunConfig.from_dict(data, source=source)
    run_sets = [o for o in overrides if o not in study_sets]
    if run_sets:
        base = with_overrides(base, run_sets, source=f"{source}: --set")
    objective = ObjectiveSpec(metric=section.objective) if isinstance(section.objective, str) else section.objective
    if objective.metric not in SUMMARY_METRICS:
        close = difflib.get_close_matches(objective.metric, SUMMARY_METRICS, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"{source}: study.objective: {objective.metric!r} is not a summary.json metric; "
                          f"{hint}(known: {', '.join(SUMMARY_METRICS)})")
    if objective.metric.startswith("test_") and not base.train.final_test_eval:
        raise ConfigError(f"{source}: study.objective: {objective.metric} is measured on the test split, which "
                          "train.final_test_eval: false keeps out of every trial; choose a validation metric "
                          "(best_val_accuracy, final_val_loss, ...) or evaluate the test split")
    name = name or section.name or base.name
    study_dir = Path(dir_override or section.dir or Path(base.output.dir) / name)
    stages = _stages(section, source, base)
    study = Study(name=name, dir=study_dir, source=source, base=base, metric=objective.metric,
                  direction=objective.direction or default_direction(objective.metric),
                  stages=stages, seed=section.seed, alpha=section.alpha, overrides=overrides)
    selections: list[SelectionOnTest | None] = [objective_selection(objective.metric)]
    for stage in stages:
        selections += _check_values(study, stage)
    for index, stage in enumerate(stages):
        own = bool(section.stages) and section.stages[index].pruner is not None
        if stage.pruner is not None:
            where = f"study.stages[{index}].pruner.monitor" if own else "study.pruner.monitor"
            selections.append(pruner_selection(stage.pruner.monitor, where))
    study.leakage = leakage_warning(selections)
    return study


def file_leakage_warning(path: str | Path) -> str | None:
    """The test-set selection warning of a run file or a study file (None: it chooses
    nothing on the test split), for ``trainlab validate``.

    Raises:
        ConfigError: the file is invalid (as :func:`load_study` and ``load_config`` say).
    """
    if "study" in load_config_dict(path):
        return load_study(path).leakage
    return run_leakage_warning(load_config(path))


def _stages(section: StudySection, source: str, base: RunConfig) -> list[Stage]:
    specs = section.stages or [StageSpec(name="main")]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: study.stages: stage names must differ (got {', '.join(names)})")
    stages: list[Stage] = []
    discreteness: list[list[str]] = []  # per stage: its continuous parameters
    for index, spec in enumerate(specs):
        where = f"{source}: study.stages[{index}]" if section.stages else f"{source}: study"
        if index == 0 and (spec.narrow or spec.best):
            raise ConfigError(f"{where}: the first stage has no previous stage to narrow or take the best of")
        if spec.narrow and spec.best:
            raise ConfigError(f"{where}: give narrow or best, not both")
        own = spec.space if spec.space is not None else (section.space if index == 0 else None)
        space_where = f"{where}.space" if spec.space is not None else f"{source}: study.space"
        params = parse_space(own, space_where)
        if index == 0 and not params:
            raise ConfigError(f"{source}: study.space: empty; give at least one config path and its range")
        if "seed" in {p.name for p in params} and (spec.repeats or section.repeats) > 1:
            raise ConfigError(f"{where}: repeats set the seed; do not also search over seed")
        continuous = [p.name for p in params if not p.discrete]
        if spec.narrow:  # the previous stage's ranges carry over, narrowed
            continuous += [n for n in discreteness[-1] if n not in continuous]
        discreteness.append(continuous)
        previous = stages[-1].sampler if stages else "grid"
        default = "grid" if not continuous else ("tpe" if previous == "grid" else previous)
        sampler = spec.sampler or section.sampler or default
        if sampler == "grid" and continuous and not spec.best:
            raise ConfigError(f"{where}: sampler grid needs discrete ranges; {continuous[0]!r} is "
                              f"continuous (use grid/choice/int, or sampler random or tpe)")
        n_trials = spec.n_trials or section.n_trials
        if sampler != "grid" and not spec.best and n_trials is None:
            raise ConfigError(f"{where}: sampler {sampler} needs n_trials (how many settings to try)")
        if spec.best:
            sampler, n_trials = "grid", None
        try:
            with_overrides(base, spec.overrides, source=f"{where}.overrides")
        except ConfigError as error:
            raise ConfigError(str(error)) from None
        stages.append(Stage(index=index, name=spec.name, sampler=sampler, n_trials=n_trials,
                            repeats=spec.repeats or section.repeats, params=params,
                            narrow=spec.narrow, best=spec.best, overrides=dict(spec.overrides),
                            pruner=_pruner(spec.pruner if spec.pruner is not None else section.pruner)))
    return stages


def trial_config(study: Study, stage: Stage, overrides: dict[str, Any], source: str) -> RunConfig:
    """The run config of one setting: base, stage overrides, then the setting's fields.

    Trials write no per-run report (seconds each; the study's results cover them) unless a
    stage's overrides set ``output.report: true``.
    """
    return with_overrides(
        study.base, {"output.report": False, **stage.overrides, **overrides}, source=source
    )


def _check_values(study: Study, stage: Stage) -> list[SelectionOnTest]:
    """Build the config of every grid point (the first MAX_CHECKED_POINTS) once; for sampled
    spaces, of each discrete value and each range's two ends, one parameter at a time.

    Catches a value the run config refuses (``optimizer.lr: 0``, ``momentum`` for adam)
    before any trial runs, and returns the choices those configs make on the test split
    (an early-stopping monitor may be searched, or set by a stage's overrides).
    """
    found: list[SelectionOnTest] = []
    params = stage.params
    if stage.sampler == "grid":
        points = list(itertools.islice(grid_points(params), MAX_CHECKED_POINTS))
    else:
        points = []
        for p in params:
            if p.discrete:
                points += [{p.name: v} for v in p.choices()]
            else:
                points += [{p.name: p.low}, {p.name: p.high}]
    for point in points:
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        source = f"{study.source}: stage {stage.name}, setting {shown}"
        found += run_selections(trial_config(study, stage, overrides_for(params, point), source))
    return found
