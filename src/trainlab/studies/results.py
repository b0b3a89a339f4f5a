"""What a study's storage holds, as tables: results.csv, results.md, and the status counts.

Everything is read from the storage (not from run directories), so every machine sharing a
PostgreSQL study writes the same complete table. A planned trial re-run after its worker
died, or after it failed (``--retry-failed``), appears once, as its latest attempt.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from trainlab.config.leakage import leakage_warning, objective_selection
from trainlab.diagnostics import log_warnings
from trainlab.io import atomic_write_text
from trainlab.run_files import RunDir

from .space import Param
from .stats import TEST_NAME, Spread, Verdict, spread, verdicts
from .storage import StorageHandle

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
STUDY_ATTR = "trainlab_study"
#: summary.json numbers results.csv shows beside the objective; ``params`` is the model's
#: parameter count (seed B's table 2 puts it beside the accuracies).
METRIC_COLUMNS = ("test_accuracy", "test_loss", "best_val_accuracy", "final_val_loss", "train_seconds", "params")
_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3, "WAITING": 4}


@dataclass
class StageData:
    """One stage as stored: its Optuna study's attributes and its trials (latest attempts)."""

    name: str
    study_name: str
    index: int
    attrs: dict[str, Any]
    trials: list[FrozenTrial]
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def params(self) -> list[Param]:
        return [Param.from_dict(d) for d in self.attrs.get("space", [])]

    @property
    def maximize(self) -> bool:
        return self.attrs.get("direction", "maximize") == "maximize"

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)


@dataclass
class Setting:
    """One point of a stage's space with its repeats."""

    params: dict[str, Any]
    values: list[float]
    trials: list[FrozenTrial]
    spread: Spread
    verdict: Verdict | None = None


def load_stages(handle: StorageHandle, name: str | None = None) -> dict[str, list[StageData]]:
    """The trainlab studies in a storage (all, or the one named), each as its stages in order."""
    out: dict[str, list[StageData]] = {}
    for frozen in handle.storage.get_all_studies():
        owner = frozen.user_attrs.get(STUDY_ATTR)
        if owner is None or (name is not None and owner != name):
            continue
        study_id = handle.storage.get_study_id_from_name(frozen.study_name)
        trials = handle.storage.get_all_trials(study_id, deepcopy=False)
        latest: dict[str, FrozenTrial] = {}
        attempts: dict[str, int] = {}
        for trial in sorted(trials, key=lambda t: t.number):
            key = str(trial.user_attrs.get("key", f"#{trial.number}"))
            latest[key] = trial
            attempts[key] = attempts.get(key, 0) + 1
        out.setdefault(owner, []).append(StageData(
            name=frozen.user_attrs.get("stage_name", frozen.study_name), study_name=frozen.study_name,
            index=int(frozen.user_attrs.get("stage_index", 0)), attrs=dict(frozen.user_attrs),
            trials=list(latest.values()), attempts=attempts))
    for stages in out.values():
        stages.sort(key=lambda s: s.index)
    return out


def params_key(params: dict[str, Any]) -> str:
    """One string per setting: equal parameter values give equal keys."""
    return json.dumps(params, sort_keys=True, default=str)


def setting_key(trial: FrozenTrial) -> str:
    """Trials with the same parameters (any seed) share this key."""
    return params_key(trial.params)


def rank_settings(stage: StageData, alpha: float = 0.05) -> list[Setting]:
    """The stage's settings, best mean objective first, each with its spread and verdict.

    A setting's repeats are its trials with distinct seeds: a second trial of the same
    setting and seed (TPE can sample a finished setting again) is the same run, not
    another sample of the seed noise, so only the first one counts.
    """
    groups: dict[str, list[FrozenTrial]] = {}
    seen: set[tuple[str, Any]] = set()
    for trial in sorted(stage.trials, key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            key = setting_key(trial)
            if (key, trial.user_attrs.get("seed")) in seen:
                continue
            seen.add((key, trial.user_attrs.get("seed")))
            groups.setdefault(key, []).append(trial)
    settings = [Setting(dict(ts[0].params), [float(t.value) for t in ts], ts,  # type: ignore[arg-type]
                        spread([float(t.value) for t in ts]))  # type: ignore[arg-type]
                for ts in groups.values()]
    sign = -1.0 if stage.maximize else 1.0
    settings.sort(key=lambda s: sign * s.spread.mean)
    for setting, verdict in zip(settings, verdicts([s.values for s in settings], stage.maximize, alpha),
                                strict=True):
        setting.verdict = verdict
    return settings


def study_leakage(stages: Sequence[StageData], metric: str) -> str | None:
    """The test-set selection warning stored with the study; for a study stored before it was
    recorded, the warning about its objective alone."""
    if stages and "leakage" in stages[0].attrs:
        return stages[0].attrs["leakage"]
    return leakage_warning([objective_selection(metric)])


def trial_summary(trial: FrozenTrial) -> dict[str, Any]:
    """The numbers of the trial's run summary as the runner stored them ({} when none)."""
    return (trial.user_attrs.get("result") or {}).get("summary") or {}


def summary_number(trial: FrozenTrial, key: str) -> float | None:
    """``key`` of the trial's run summary when it is a finite number, else None."""
    value = trial_summary(trial).get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def param_count(setting: Setting) -> int | None:
    """The model's parameter count of a setting: ``params`` of its trials' summary.json
    (the same for every repeat: seeds do not change the architecture); None when no trial
    recorded one."""
    for trial in setting.trials:
        count = summary_number(trial, "params")
        if count is not None:
            return int(count)
    return None


def _sorted_trials(stage: StageData) -> list[FrozenTrial]:
    sign = -1.0 if stage.maximize else 1.0

    def order(t: FrozenTrial) -> tuple[int, float, int]:
        value = sign * t.value if t.value is not None and t.state == TrialState.COMPLETE else math.inf
        return (_STATE_ORDER.get(t.state.name, 9), value, t.number)

    return sorted(stage.trials, key=order)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def trial_rows(stages: Sequence[StageData], metric: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of results.csv: one row per planned trial, stage by stage; in a stage,
    by state (complete first), then best objective first, then trial number."""
    names = list(dict.fromkeys(p.name for s in stages for p in s.params))
    metrics = [metric, *(m for m in METRIC_COLUMNS if m != metric)]
    columns = ["stage", "trial", "number", "state", *names, "seed", "objective", *metrics,
               "seconds", "attempts", "run_dir", "error"]
    rows: list[dict[str, Any]] = []
    for stage in stages:
        for trial in _sorted_trials(stage):
            result = trial.user_attrs.get("result", {})
            summary = result.get("summary", {})
            key = str(trial.user_attrs.get("key", f"#{trial.number}"))
            row = {"stage": stage.name, "trial": key, "number": trial.number, "state": trial.state.name,
                   **{n: trial.params.get(n) for n in names}, "seed": trial.user_attrs.get("seed"),
                   "objective": trial.value if trial.state == TrialState.COMPLETE else None,
                   **{m: summary.get(m) for m in metrics}, "seconds": _seconds(trial),
                   "attempts": stage.attempts.get(key, 1), "run_dir": result.get("run_dir"),
                   "error": trial.user_attrs.get("error")}
            rows.append(row)
    return columns, rows


def csv_cell(value: Any) -> str:
    """One results.csv cell, written so that pandas (or any CSV reader) types its column.

    Missing: empty (never ``None``); booleans: ``true`` / ``false``; floats: the shortest text
    that reads back the same number (``repr``; ``nan``, ``inf``); a list or mapping: its JSON
    text, as Optuna stores a choice of lists (the csv module quotes it, so it stays one column).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # float() too: repr of a NumPy float is "np.float64(...)"
        return repr(float(value))
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def results_csv(stages: Sequence[StageData], metric: str) -> str:
    """results.csv as text: the columns of :func:`trial_rows`, cells by :func:`csv_cell`."""
    columns, rows = trial_rows(stages, metric)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "/") for c in row) + " |" for row in rows]
    return lines


def trial_warnings(run_dir: Path) -> list[str]:
    """The warnings a trial's run logged (``run.log``), each once, in order; none without a log."""
    try:
        text = RunDir(run_dir).log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return list(dict.fromkeys(log_warnings(text)))


#: the summary key reported beside an objective chosen on other data (a study that selects on
#: validation reports what its settings give on the test split, which chose nothing)
REPORTED = "test_accuracy"


def reports_test_beside(metric: str) -> bool:
    """Whether a study ranked by ``metric`` shows :data:`REPORTED` beside it: when the
    objective is not a test-split metric (a test objective already is the test figure)."""
    return not metric.startswith("test_")


def reported_values(setting: Setting, key: str = REPORTED) -> list[float]:
    """``key`` of each repeat of ``setting`` that recorded it (its run's summary.json)."""
    return [value for value in (summary_number(trial, key) for trial in setting.trials) if value is not None]


def warned_trials(stages: Sequence[StageData]) -> dict[str, list[str]]:
    """Each distinct warning of the trials that stored a result, with the keys of the trials that
    logged it, in trial order (a study of short runs warns about all of them with one line)."""
    found: dict[str, list[str]] = {}
    for stage in stages:
        for trial in sorted(stage.trials, key=lambda t: t.number):
            for warning in (trial.user_attrs.get("result") or {}).get("warnings", []):
                found.setdefault(warning, []).append(str(trial.user_attrs.get("key", f"#{trial.number}")))
    return found


def warned_trials_lines(stages: Sequence[StageData], shown: int = 6) -> list[str]:
    """One line per distinct trial warning: the warning, then how many trials logged it and the
    first ``shown`` of their keys (results.md lists them, the study report shows each as a note)."""
    lines = []
    for warning, keys in warned_trials(stages).items():
        named = ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
        lines.append(f"{warning} ({len(keys)} trial{'s' if len(keys) > 1 else ''}: {named})")
    return lines


def _warnings_section(stages: Sequence[StageData]) -> list[str]:
    lines = warned_trials_lines(stages)
    return ["## Warnings raised in trials", "", *(f"- {line}" for line in lines), ""] if lines else []


def _mean_sd_text(values: Sequence[float]) -> str:
    if not values:
        return ""
    return f"{statistics.fmean(values):.4g}" + (f" ± {statistics.stdev(values):.3g}" if len(values) > 1 else "")


def results_markdown(name: str, stages: Sequence[StageData], metric: str, alpha: float = 0.05) -> str:
    """results.md as text: per stage, the settings (mean ± sd, 95 % CI, verdict, and the test
    accuracy beside an objective that is not a test metric) and the trials."""
    direction = stages[0].attrs.get("direction", "maximize") if stages else "maximize"
    lines = [f"# Study {name}", "",
             f"Objective: `{metric}` ({direction}). Written {dt.datetime.now():%Y-%m-%d %H:%M}.", ""]
    overrides = stages[0].attrs.get("overrides", []) if stages else []
    if overrides:  # a reduced-size study says so in its results
        lines += ["Overridden by --set: " + ", ".join(f"`{o}`" for o in overrides) + ".", ""]
    leakage = study_leakage(stages, metric)
    if leakage:  # the figures below were chosen on the test set: say so where they are read
        lines += [f"**Warning**: {leakage}", ""]
    lines += _warnings_section(stages)  # before the figures they may explain (e.g. a setting at chance)
    for stage in stages:
        counts = {s.name: stage.count(s) for s in TrialState}
        planned = stage.attrs.get("planned", len(stage.trials))
        lines += [f"## Stage {stage.name}", "",
                  f"Sampler {stage.attrs.get('sampler')}, repeats {stage.attrs.get('repeats', 1)}; "
                  f"{planned} trials planned: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
                  f"{counts['FAIL']} failed, {counts['RUNNING']} running, {counts['WAITING']} waiting.", ""]
        duplicates = sum("duplicate_of" in t.user_attrs for t in stage.trials)
        if duplicates:
            lines[-1:-1] = [f"{duplicates} of the complete trials drew a setting that had already run with the "
                            "same seed; they reuse that run's result and count once below."]
        lines += [f"- `{p.name}`: {p.describe()}" for p in stage.params] + [""]
        settings = rank_settings(stage, alpha)
        names = [p.name for p in stage.params]
        if settings:
            repeated = any(s.spread.n > 1 for s in settings)
            counts = [param_count(s) for s in settings]
            counted = any(c is not None for c in counts)  # studies run before summaries had params: none
            tested = [reported_values(s) for s in settings] if reports_test_beside(metric) else []
            reported = any(tested)  # chosen on other data: the test split's figures beside
            header = (["rank", *names] + (["params"] if counted else [])
                      + ["n", f"mean {metric}", "sd", "95 % CI"] + (["vs best"] if repeated else [])
                      + ([f"{REPORTED} mean ± sd"] if reported else []))
            rows = []
            for rank, (s, count) in enumerate(zip(settings, counts, strict=True), 1):
                ci = f"{s.spread.ci_low:.4g} .. {s.spread.ci_high:.4g}" if s.spread.n > 1 else ""
                sd = f"{s.spread.sd:.3g}" if s.spread.n > 1 else ""
                row = [rank, *(s.params.get(n) for n in names), *([count] if counted else []), s.spread.n,
                       f"{s.spread.mean:.4g}", sd, ci]
                row += [s.verdict.text if s.verdict else ""] if repeated else []
                rows.append(row + ([_mean_sd_text(tested[rank - 1])] if reported else []))
            lines += ["### Settings, best first", "", *_table(header, rows), ""]
            if repeated:
                lines += [f"Verdicts: each setting against the best by {TEST_NAME} over its repeats "
                          f"(seeds), p-values Holm-adjusted, alpha {alpha}; "
                          "'not distinguishable' means the ranking is within seed noise.", ""]
        _, rows_ = trial_rows([stage], metric)
        counted = any(r["params"] is not None for r in rows_)
        shown = ["trial", "state", *names, "seed", "objective", "test_accuracy", *(["params"] if counted else []),
                 "seconds"]
        lines += ["### Trials", "", *_table(shown, [[r[c] for c in shown] for r in rows_]), ""]
    return "\n".join(lines)


def write_results(handle: StorageHandle, name: str, study_dir: Path, metric: str,
                  alpha: float = 0.05) -> tuple[Path, Path]:
    """Write results.csv and results.md into the study directory (atomically)."""
    stages = load_stages(handle, name).get(name, [])
    study_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = study_dir / RESULTS_CSV, study_dir / RESULTS_MD
    atomic_write_text(csv_path, results_csv(stages, metric))
    atomic_write_text(md_path, results_markdown(name, stages, metric, alpha))
    return csv_path, md_path


def stage_status(stage: StageData) -> dict[str, Any]:
    """Counts and best so far of one stage."""
    settings = rank_settings(stage)
    best = settings[0] if settings else None
    return {"stage": stage.name, "planned": stage.attrs.get("planned", len(stage.trials)),
            "complete": stage.count(TrialState.COMPLETE), "running": stage.count(TrialState.RUNNING),
            "waiting": stage.count(TrialState.WAITING), "pruned": stage.count(TrialState.PRUNED),
            "failed": stage.count(TrialState.FAIL),
            "best": best.spread.mean if best else None, "best_params": best.params if best else None}
