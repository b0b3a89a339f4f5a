"""Running a study: plan each stage once, then let any number of workers take its trials.

The plan of a stage (every grid point or random draw times the repeats, or one empty slot
per TPE trial, whose other repeats are queued when its first repeat has drawn its setting) is
enqueued once, under the study's set-up lock, as WAITING trials. A worker claims a WAITING
trial atomically (Optuna's own state change), runs it as a normal run directory
``<study dir>/<trial key>``, and tells the result. Nothing is ever sampled outside the plan,
so each planned trial runs exactly once however many workers share the study; a trial
whose worker died is failed and queued again under the same key (and the same run
directory, resumed from its checkpoint when it has one). A trial that failed (its run
raised) stays failed on a resume, unless ``retry_failed`` queues it again the same way.

How a trial's run is trained is injected (:class:`TrialExecutor`): studies sit below the
API in the import order, so :func:`trainlab.api.run_study` passes the API's executor.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from trainlab.callbacks import Callback
from trainlab.callbacks.mlflow import study_run
from trainlab.config import RunConfig, resolve_mode
from trainlab.errors import ConfigError, TrainlabError
from trainlab.names import NAME_RULE, is_safe_name

from .optuna_adapter import claim_waiting, label_objective, open_trial
from .pruning import PRUNED_PREFIX, PruningCallback, make_pruner
from .results import (
    STUDY_ATTR,
    StageData,
    load_stages,
    params_key,
    rank_settings,
    setting_key,
    trial_warnings,
    write_results,
)
from .space import Param, Scalar, grid_points, narrow, overrides_for, random_points
from .spec import Stage, Study, load_study, trial_config
from .storage import (
    Heartbeat,
    StorageHandle,
    enqueue_failed,
    open_storage,
    reclaim_dead,
    requeue,
    resolve_url,
    setup_lock,
    worker_identity,
)
from .workers import abandonable, check_stop, run_workers

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TrialExecutor(Protocol):
    """How a worker runs one trial: ``execute(config, run_dir, callbacks, data_dir) -> summary``.

    Studies never import :mod:`trainlab.api` (it sits above them); its caller injects this.
    :func:`trainlab.api.execute_trial` is the real one; tests pass fakes. It trains
    ``config`` as the run directory ``run_dir`` (the trial's key under the study directory)
    with the given ``callbacks`` (the pruner's, when the stage prunes) and data folder, and
    returns the run's ``summary.json`` contents. It must also finish a directory left by a
    dead worker (the trial is queued again under the same key). With ``workers > 1`` it is
    sent to each worker process, so it must pickle: a module-level function.
    """

    def __call__(self, config: RunConfig, run_dir: Path, callbacks: list[Callback],
                 data_dir: str | None, /) -> dict[str, Any]:
        """Run (or finish) the trial's run directory and return its summary."""


@dataclass
class Options:
    """How to run: storage, heartbeat, data folder, output."""

    storage: str | None = None
    heartbeat: int = 10
    data_dir: str | None = None
    echo: bool = True
    poll: float = 0.5
    results_every: float = 2.0
    tag: str = ""


@dataclass
class Worker:
    """Takes trials of a study until every stage is done."""

    study: Study
    handle: StorageHandle
    options: Options = field(default_factory=Options)
    execute: TrialExecutor = field(kw_only=True)  # no default: studies cannot import the API's
    _last_results: float = 0.0

    # -- stages -------------------------------------------------------------------------
    def run(self) -> None:
        """Work through every stage in order; a later stage starts when the previous is done."""
        for stage in self.study.stages:
            ostudy, params = self.prepare(stage)
            self.work(stage, ostudy, params)
        self.write_results()

    def prepare(self, stage: Stage) -> tuple[optuna.Study, list[Param]]:
        """Create the stage's Optuna study and enqueue its plan, once across all workers."""
        with setup_lock(self.handle, self.study.name):
            ostudy = optuna.create_study(
                storage=self.handle.storage, study_name=self.study.stage_name(stage),
                direction=self.study.direction, sampler=self._sampler(stage),
                pruner=make_pruner(stage.pruner), load_if_exists=True)
            label_objective(ostudy, self.study.metric)  # also names a stage planned before this was done
            if "space" in ostudy.user_attrs:
                self._check_plan(ostudy, stage)
                return ostudy, [Param.from_dict(d) for d in ostudy.user_attrs["space"]]
            params = self._stage_params(stage)
            points = self._points(stage, params)
            for repeat in range(stage.repeats if stage.sampler != "tpe" else 1):
                for slot, point in enumerate(points):
                    ostudy.enqueue_trial(point or {}, user_attrs=self._attrs(stage, slot, repeat))
            attrs = {STUDY_ATTR: self.study.name, "stage_name": stage.name, "stage_index": stage.index,
                     "stages": [s.name for s in self.study.stages], "metric": self.study.metric,
                     "direction": self.study.direction, "sampler": stage.sampler,
                     "repeats": stage.repeats, "planned": len(points) * stage.repeats,
                     "source": self.study.source, "overrides": list(self.study.overrides),
                     "leakage": self.study.leakage, "base_config": self.study.base.model_dump(mode="json")}
            for key, value in attrs.items():
                ostudy.set_user_attr(key, value)
            ostudy.set_user_attr("space", [p.to_dict() for p in params])  # last: marks it planned
            return ostudy, params

    def _check_plan(self, ostudy: optuna.Study, stage: Stage) -> None:
        """A planned stage resumes only as it was planned: with the same ``--set`` overrides,
        the same run config and (for a stage with a space of its own) the same space.

        Otherwise its finished trials (of another size, net or grid) would be kept as if they
        were this run's, and an edited study file would be silently ignored. Stages planned
        before the run config was stored are checked for their overrides only.
        """
        planned = list(ostudy.user_attrs.get("overrides", []))
        fresh = "resume with the study file and --set as they were, or give --name (or --dir) for a study of its own"
        if planned != list(self.study.overrides):
            shown = " ".join(f"--set {o}" for o in planned) or "no --set"
            given = " ".join(f"--set {o}" for o in self.study.overrides) or "no --set"
            raise ConfigError(f"study {ostudy.study_name} in {self.study.dir} was run with {shown}, "
                              f"this command has {given}; {fresh}")
        changed = self._changed_fields(ostudy.user_attrs.get("base_config"))
        if changed:
            raise ConfigError(f"study {ostudy.study_name} in {self.study.dir} was planned from another run "
                              f"config: {'; '.join(changed)}; {fresh}")
        if not (stage.narrow or stage.best):
            stored = ostudy.user_attrs["space"]
            current = json.loads(json.dumps([p.to_dict() for p in stage.params]))  # as the storage keeps it
            if stored != current:
                names = sorted({d["name"] for d in stored} ^ {d["name"] for d in current}
                               | {a["name"] for a, b in zip(stored, current, strict=False) if a != b})
                raise ConfigError(f"study {ostudy.study_name} in {self.study.dir} was planned with another "
                                  f"space (changed: {', '.join(names) or 'the order of its parameters'}); {fresh}")

    def _changed_fields(self, stored: dict[str, Any] | None) -> list[str]:
        """``path: planned -> now`` for each run-config field that differs from the planned one
        (output, name and the source notes aside); [] when none, or nothing was stored."""
        if not isinstance(stored, dict):
            return []
        from trainlab.config import config_diff

        try:
            planned = RunConfig.from_dict(stored)
        except (ConfigError, ValueError):  # stored by a trainlab whose schema differs: nothing to compare
            return []
        diffs = config_diff(planned, self.study.base, ignore=("output", "name", "source"))
        shown = [f"{path}: {before!r} -> {after!r}" for path, before, after in diffs[:4]]
        return shown + ([f"{len(diffs) - 4} more"] if len(diffs) > 4 else [])

    def _sampler(self, stage: Stage) -> optuna.samplers.BaseSampler:
        seed = self.study.seed + stage.index
        if stage.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, (stage.n_trials or 10) // 3)))
        return optuna.samplers.RandomSampler(seed=seed)  # never consulted: the plan fixes every value

    def _points(self, stage: Stage, params: list[Param]) -> list[dict[str, Scalar] | None]:
        if stage.sampler == "grid":
            return list(grid_points(params))
        if stage.sampler == "random":
            return list(random_points(params, stage.n_trials or 1, self.study.seed + 1000 * stage.index))
        return [None] * (stage.n_trials or 1)  # TPE samples when the trial starts

    def _attrs(self, stage: Stage, slot: int, repeat: int) -> dict[str, Any]:
        prefix = f"{stage.name}-" if len(self.study.stages) > 1 else ""
        key = f"{prefix}t{slot:04d}" + (f"-r{repeat}" if stage.repeats > 1 else "")
        return {"key": key, "slot": slot, "repeat": repeat, "seed": self.study.base.seed + repeat}

    def _stage_params(self, stage: Stage) -> list[Param]:
        """A stage's space: its own, or the previous one narrowed / fixed at its best."""
        if not (stage.narrow or stage.best):
            return stage.params
        stored = load_stages(self.handle, self.study.name).get(self.study.name, [])
        previous = next(s for s in stored if s.index == stage.index - 1)
        settings = rank_settings(previous, self.study.alpha)
        if not settings:
            raise TrainlabError(f"stage {stage.name}: the previous stage {previous.name} has no "
                                "completed trial to narrow around")
        top = stage.narrow.top if stage.narrow else 1
        best = [s.params for s in settings[:top]]
        inherited = narrow(previous.params, best, stage.narrow.margin if stage.narrow else 0.0)
        if stage.best:
            inherited = [_fixed(p, best[0][p.name]) for p in inherited if p.name in best[0]]
        own = {p.name for p in stage.params}
        return [p for p in inherited if p.name not in own] + stage.params

    # -- trials -------------------------------------------------------------------------
    def work(self, stage: Stage, ostudy: optuna.Study, params: list[Param]) -> None:
        """Claim and run trials of one stage until none is waiting or running."""
        while True:
            check_stop()  # a worker whose coordinator is gone stops here, between trials
            reclaim_dead(self.handle, ostudy)
            trial_id = self._claim(ostudy)
            if trial_id is None:
                if not ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                    return
                time.sleep(self.options.poll)  # others are running the last trials
                continue
            self.run_trial(stage, ostudy, params, trial_id)

    def _claim(self, ostudy: optuna.Study) -> int | None:
        """Claim a WAITING trial of the stage for this worker; its id, or None if none waits."""
        return claim_waiting(self.handle.storage, ostudy)

    def run_trial(self, stage: Stage, ostudy: optuna.Study, params: list[Param], trial_id: int) -> None:
        """Run one claimed trial and tell Optuna how it ended."""
        storage = self.handle.storage  # the one ostudy was opened on
        storage.set_trial_user_attr(trial_id, "worker", worker_identity())
        trial = open_trial(ostudy, trial_id)
        attrs = storage.get_trial(trial_id).user_attrs
        key = str(attrs.get("key", f"t{trial.number:04d}"))
        values = {p.name: p.suggest(trial) for p in params}
        if stage.sampler == "tpe" and self._reuse_finished(ostudy, trial, key, values, attrs):
            self._maybe_results()
            return
        if stage.sampler == "tpe" and stage.repeats > 1 and attrs.get("repeat", 0) == 0:
            self._enqueue_repeats(stage, ostudy, attrs, values)
        run_dir = self.study.dir / key
        started = time.perf_counter()
        callback = None
        try:
            overrides = {**overrides_for(params, values), "seed": attrs.get("seed", self.study.base.seed),
                         "output.dir": str(self.study.dir.parent), "name": self.study.dir.name}
            config = trial_config(self.study, stage, overrides, f"{self.study.source}: trial {key}")
            monitor = stage.pruner.monitor if stage.pruner else ""
            callbacks: list[Callback] = []
            if stage.pruner:
                callback = PruningCallback(trial, monitor, maximize=resolve_mode(monitor) == "max",
                                           study_maximizes=self.study.direction == "maximize")
                callbacks.append(callback)
            with Heartbeat(self.handle, trial_id), abandonable():
                summary = self.execute(config, run_dir, callbacks, self.options.data_dir)
        except KeyboardInterrupt:
            requeue(storage, ostudy, storage.get_trial(trial_id), "interrupted (Ctrl-C, or stopped); it runs again")
            raise
        except Exception as error:  # a failed trial must not stop the study
            message = f"{type(error).__name__}: {error}" if not isinstance(error, TrainlabError) else str(error)
            storage.set_trial_user_attr(trial_id, "error", message)
            ostudy.tell(trial, state=TrialState.FAIL)
            self._echo(f"{key} failed: {message}")
            self._maybe_results()
            return
        seconds = time.perf_counter() - started
        numbers = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        warnings = trial_warnings(run_dir)
        storage.set_trial_user_attr(trial_id, "result", {
            "summary": numbers, "status": summary.get("status"), "run_dir": str(run_dir), "seconds": seconds,
            **({"warnings": warnings} if warnings else {})})
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        for warning in warnings:  # the run's own console is quiet in a study: say them here
            self._echo(f"{key} warning: {warning}")
        pruned = (callback is not None and callback.pruned) or str(summary.get("stop_reason", "")).startswith(PRUNED_PREFIX)
        value = summary.get(self.study.metric)
        if pruned:
            ostudy.tell(trial, state=TrialState.PRUNED)
            self._echo(f"{key} {shown}: pruned ({seconds:.1f} s)")
        elif not isinstance(value, int | float) or not math.isfinite(value):
            storage.set_trial_user_attr(trial_id, "error", f"{self.study.metric} is {value!r} in summary.json "
                                        f"(status {summary.get('status')})")
            ostudy.tell(trial, state=TrialState.FAIL)
            self._echo(f"{key} {shown}: failed, {self.study.metric} = {value!r}")
        else:
            ostudy.tell(trial, float(value))
            self._echo(f"{key} {shown}: {self.study.metric} {value:.4f} ({seconds:.1f} s)")
        self._maybe_results()

    def _reuse_finished(self, ostudy: optuna.Study, trial: optuna.Trial, key: str,
                        values: dict[str, Scalar], attrs: dict[str, Any]) -> bool:
        """TPE sampled a setting that already finished with this seed: tell Optuna that run's
        value instead of training the same run again (runs are deterministic on CPU).

        The trial records ``duplicate_of`` and the first run's result; the results count the
        setting once (see ``rank_settings``). Returns whether the trial was settled this way.
        """
        wanted = params_key(values)
        seed = attrs.get("seed", self.study.base.seed)
        for done in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if (done.value is not None and done.user_attrs.get("seed", self.study.base.seed) == seed
                    and setting_key(done) == wanted):
                first = str(done.user_attrs.get("key", f"t{done.number:04d}"))
                trial.set_user_attr("duplicate_of", first)
                if "result" in done.user_attrs:
                    trial.set_user_attr("result", done.user_attrs["result"])
                ostudy.tell(trial, float(done.value))
                self._echo(f"{key}: the same setting and seed as {first}, not run again "
                           f"({self.study.metric} {done.value:.4f})")
                return True
        return False

    def _enqueue_repeats(self, stage: Stage, ostudy: optuna.Study, attrs: dict[str, Any],
                         values: dict[str, Scalar]) -> None:
        """TPE samples a setting in its first repeat; the other repeats are queued with it."""
        keys = {t.user_attrs.get("key") for t in ostudy.get_trials(deepcopy=False)}
        slot = int(attrs.get("slot", 0))
        for repeat in range(1, stage.repeats):
            extra = self._attrs(stage, slot, repeat)
            if extra["key"] not in keys:
                ostudy.enqueue_trial(dict(values), user_attrs=extra)

    # -- output -------------------------------------------------------------------------
    def _echo(self, line: str) -> None:
        if self.options.echo:
            print(f"{self.options.tag}{line}", flush=True)

    def _maybe_results(self) -> None:
        now = time.monotonic()
        if now - self._last_results >= self.options.results_every:
            self.write_results()

    def write_results(self) -> None:
        """Rewrite results.csv and results.md from the storage."""
        self._last_results = time.monotonic()
        write_results(self.handle, self.study.name, self.study.dir, self.study.metric, self.study.alpha)


def _fixed(param: Param, value: Scalar) -> Param:
    """A parameter reduced to one value (a stage that runs the previous best)."""
    if param.kind in ("uniform", "loguniform"):
        return Param(param.name, "choice", values=(float(value),))  # type: ignore[arg-type]
    if param.kind == "int":
        return Param(param.name, "choice", values=(int(value),))  # type: ignore[arg-type]
    return narrow([param], [{param.name: value}], 0.0)[0]


# -- entry points ---------------------------------------------------------------------------


def open_study_storage(study: Study, options: Options) -> StorageHandle:
    """The storage a study runs on (``--storage``, ``$TRAINLAB_STORAGE`` or the journal file)."""
    study.dir.mkdir(parents=True, exist_ok=True)
    return open_storage(resolve_url(options.storage, study.dir), options.heartbeat, lock_dir=study.dir)


def _worker_main(source: str, study_dir: str | None, options: Options, index: int,
                 overrides: tuple[str, ...], name: str | None, execute: TrialExecutor) -> None:
    """One worker process of ``run_study`` (started by :func:`~trainlab.studies.workers.run_workers`).

    ``execute`` arrived pickled, by name: unpickling it imported its module (the API) here.
    """
    options.tag = f"[w{index}] "
    study = load_study(source, study_dir, overrides, name)
    Worker(study, open_study_storage(study, options), options, execute=execute).run()


def queue_failed(study: Study, handle: StorageHandle, echo: bool = True) -> list[str]:
    """Queue again the failed trials of the study's planned stages; their keys, stage by stage.

    Under the study's set-up lock, each failed key of a stage is queued once
    (:func:`~trainlab.studies.storage.enqueue_failed`) under the same key, so its run directory
    is reused (resumed from its checkpoint when it has one). A stage not planned yet has no
    trial to retry. With ``echo``, prints how many were queued.
    """
    planned = {s.study_name: s for s in handle.storage.get_all_studies()}
    keys: list[str] = []
    late: list[str] = []  # later stages already planned from the earlier ones' results
    with setup_lock(handle, study.name):
        for stage in study.stages:
            name = study.stage_name(stage)
            if name not in planned or "space" not in planned[name].user_attrs:
                continue
            if keys and (stage.narrow or stage.best):
                late.append(stage.name)
            ostudy = optuna.load_study(study_name=name, storage=handle.storage,
                                       sampler=optuna.samplers.RandomSampler())  # samples nothing here
            keys += enqueue_failed(ostudy)
    if echo:
        shown = f": {', '.join(keys)}" if keys else ""
        print(f"retrying {len(keys)} failed trial(s){shown}", flush=True)
        if late:
            print(f"note: stage(s) {', '.join(late)} were planned from earlier stages before these trials "
                  "ran; their search space stays as it was", flush=True)
    return keys


def _check_picklable(execute: TrialExecutor, workers: int) -> None:
    """Worker processes get ``execute`` pickled; say so here rather than in each of them."""
    try:
        pickle.dumps(execute)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(f"workers={workers}: the trial executor is sent to worker processes and must "
                         f"pickle (a module-level function); {error}") from None


def run_study(study: Study | str | Path, *, execute: TrialExecutor, workers: int = 1,
              options: Options | None = None, retry_failed: bool = False) -> list[StageData]:
    """Run a study to the end (or resume it) with ``workers`` local processes.

    Args:
        study: a loaded study, or the path of a study file.
        workers: worker processes on this machine; 1 runs in this process. Default 1.
        options: storage URL, heartbeat, data folder, output. Default Options().
        retry_failed: first queue each failed trial again, once per key, under its key and
            run directory (:func:`queue_failed`); a key with a complete, pruned, running or
            waiting trial is left alone. Default False: failed trials stay failed.
        execute: how one trial's run is done (:class:`TrialExecutor`): the API's
            :func:`trainlab.api.execute_trial` (``trainlab.api.run_study`` passes it), or a fake.

    Raises:
        ValueError: ``workers > 1`` with an ``execute`` that cannot be pickled.

    Returns:
        The study's stages as stored, after writing results.csv and results.md.
    """
    options = options or Options()
    study = load_study(study) if isinstance(study, str | Path) else study
    if not is_safe_name(study.dir.name):
        raise ConfigError(f"{study.source}: study.dir {study.dir}: its last part names the runs; "
                          f"use {NAME_RULE}")
    if workers > 1:
        _check_picklable(execute, workers)
    handle = open_study_storage(study, options)
    if retry_failed:  # here, once, not in each worker: a trial failing again is not retried again
        queue_failed(study, handle, options.echo)
    # With output.mlflow, the study's MLflow run: each trial's run is logged as its child.
    with study_run(study.dir, study.base, study.name):
        if workers <= 1:
            Worker(study, handle, options, execute=execute).run()
        else:
            codes = run_workers(_worker_main, [(study.source, str(study.dir), options, i, study.overrides,
                                                study.name, execute) for i in range(workers)])
            died = [f"w{i} (exit {code})" for i, code in enumerate(codes) if code]
            if died and options.echo:
                print(f"workers ended abnormally: {', '.join(died)}; finishing their trials here", flush=True)
            Worker(study, handle, options, execute=execute).run()  # anything left (a dead worker's trial), and results
    return load_stages(handle, study.name).get(study.name, [])

