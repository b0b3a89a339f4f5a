"""The report of a study: ``STUDY_DIR/report.html`` and its figures under ``STUDY_DIR/figures``.

Sections: an overview with the trial counts; the settings ranked by the objective (mean ±
sd and 95 % interval over repeats, verdict against the best, time) and every trial with its
state; the best run's learning curves; the objective against each parameter; overlaid
learning curves of chosen trials; parameter importance (Optuna's fANOVA); and the settings
table as Markdown and LaTeX. Failed and pruned trials are shown as such; a section that
cannot be built becomes a note, except that a ConfigError (a ``--trials`` key that names no
trial) is raised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from trainlab.errors import ConfigError
from trainlab.report import figures as figs
from trainlab.report import sources
from trainlab.report import study_figures as sfigs
from trainlab.report.curves import epochs_text
from trainlab.report.html import (
    Block,
    Section,
    draw_figure,
    fmt,
    note,
    pre,
    table,
    text,
    write_report,
)
from trainlab.report.study_data import (
    StudyData,
    open_study,
    shown,
    trial_key,
    trial_seconds,
    trial_value,
)
from trainlab.report.study_tables import REPORTED, export, settings_table
from trainlab.report.study_trials import STATE_TEXT, trial_table
from trainlab.run_files import FIGURES_DIR, REPORT_FILE, read_metrics_csv
from trainlab.studies.results import StageData, study_leakage, trial_summary, warned_trials_lines
from trainlab.studies.space import Param
from trainlab.studies.stats import TEST_NAME

DEFAULT_TRIALS = 4
MIN_IMPORTANCE_TRIALS = 6
NUMERIC_KINDS = ("uniform", "loguniform", "int")


def _metrics(run_dir: Path | None) -> list[dict[str, object]]:
    if run_dir is None or not (run_dir / "metrics.csv").exists():
        return []
    return read_metrics_csv(run_dir / "metrics.csv")[0]


def _steps_per_epoch(trial: FrozenTrial) -> float | None:
    summary = trial_summary(trial)
    steps, epochs = summary.get("steps"), summary.get("epochs")
    return steps / epochs if steps and epochs else None


def curve_label(trial: FrozenTrial) -> str:
    """A trial's legend entry: its key and its parameters as ``name=value`` (the dotted config
    path, or the label of a linked setting), e.g. ``t0003-r0: optimizer.lr=0.01, bn=before``,
    and its state when it did not complete."""
    params = ", ".join(f"{name}={shown(value)}" for name, value in trial.params.items())
    state = "" if trial.state == TrialState.COMPLETE else f" ({STATE_TEXT.get(trial.state.name, trial.state.name)})"
    return f"{trial_key(trial)}: {params}{state}" if params else f"{trial_key(trial)}{state}"


class StudyReport:
    """Builds the sections of one study's report (see :func:`build_study_report`)."""

    def __init__(self, study: StudyData, trials: Sequence[str] | None = None) -> None:
        self.study = study
        self.figure_dir = study.path / FIGURES_DIR
        self.chosen = list(trials or [])
        self.multi = len(study.stages) > 1

    def draw(self, name: str, caption: str, make: Callable[[], Figure | None]) -> Block | None:
        """Draw and save a figure; a failure becomes a warning note (None: nothing to draw)."""
        return draw_figure(self.figure_dir, name, caption, make)

    def _stage_title(self, title: str, stage: StageData) -> str:
        return f"{title}, stage {stage.name}" if self.multi else title

    # -- sections -------------------------------------------------------------------------
    def banner(self) -> Block:
        """The study's trial counts as the status line."""
        s = self.study
        counts = {state: s.count(state) for state in TrialState}
        total = len(s.trials)
        parts = [f"{counts[TrialState.COMPLETE]} of {total} trials complete"]
        parts += [f"{counts[st]} {STATE_TEXT[st.name]}" for st in (TrialState.PRUNED, TrialState.FAIL,
                                                                      TrialState.RUNNING, TrialState.WAITING)
                  if counts[st]]
        message = ", ".join(parts) + "."
        if counts[TrialState.FAIL]:
            message += " Failed trials are listed with their error in the trial table."
        if not counts[TrialState.COMPLETE]:
            return note(message + " No trial completed, so nothing is ranked.", "error")
        level = "warning" if counts[TrialState.FAIL] or counts[TrialState.RUNNING] or counts[TrialState.WAITING] \
            else "info"
        return note(message, level)

    def overview(self) -> Section:
        """Objective, stages, searched parameters and the best setting."""
        s = self.study
        section = Section("overview", "Overview")
        first = s.stages[0].attrs if s.stages else {}
        rows = [["study", s.name], ["objective", f"{s.metric} ({'maximize' if s.maximize else 'minimize'})"],
                ["study file", str(first.get("source", "–"))], ["stages", str(len(s.stages))]]
        if first.get("overrides"):
            rows.append(["overridden by --set", ", ".join(first["overrides"])])
        for stage in s.stages:
            planned = stage.attrs.get("planned", len(stage.trials))
            rows.append([f"stage {stage.name}", f"sampler {stage.attrs.get('sampler')}, repeats "
                         f"{stage.attrs.get('repeats', 1)}, {planned} trials planned"])
        seconds = [t for t in (trial_seconds(trial) for _, trial in s.trials) if t is not None]
        if seconds:
            rows.append(["trial time (s), total", fmt(sum(seconds))])
        section.add(table(["", "value"], rows))
        leakage = study_leakage(s.stages, s.metric)
        if leakage:
            section.add(note(leakage, "warning"))
        for line in warned_trials_lines(s.stages):  # e.g. every trial too short for BN
            section.add(note(f"Trials warned: {line}", "warning"))
        for stage in s.stages:
            section.add(text(self._stage_title("Searched", stage) + ":"),
                        *[note(f"{p.name}: {p.describe()}") for p in stage.params])
        best = s.best_settings()
        if best:
            stage, setting = best[0]
            params = ", ".join(f"{k} = {shown(v)}" for k, v in setting.params.items())
            section.add(text(f"Best setting: {params} with {s.metric} {setting.spread.mean:.4f}"
                             + (f" ± {setting.spread.sd:.4f} (sd over {setting.spread.n} repeats)"
                                if setting.spread.n > 1 else "") + "."))
        return section

    def settings(self) -> Section:
        """Settings ranked by the objective, and every trial with its state."""
        section = Section("settings", "Settings, best first")
        reported = False
        for stage in self.study.stages:
            st = settings_table(self.study, stage)
            reported = reported or st.reported
            if self.multi:
                section.add(text(f"Stage {stage.name}:"))
            if not st.rows:
                section.add(note("no completed trial in this stage, nothing to rank", "warning"))
                continue
            section.add(table(st.columns, st.cells()))
        section.add(text(f"Mean ± sample standard deviation and t-based 95 % interval of {self.study.metric} "
                         f"over the repeats (seeds) of each setting. 'vs best': {TEST_NAME} against the best "
                         f"setting, p-values Holm-adjusted, alpha {self.study.alpha}; 'not distinguishable' "
                         "means the ranking is within seed noise. params: the model's number of learnable "
                         "parameters. Time: mean wall time of a trial."
                         + (f" {REPORTED}: the same repeats on the test split, reported beside the "
                            "objective; it chose nothing." if reported else "")))
        return section

    def trials(self) -> Section:
        """Every trial, sorted by the objective, failed and pruned ones with their state."""
        section = Section("trials", "Trials")
        s = self.study
        section.add(table(*trial_table(s, self.multi)))
        if s.count(TrialState.PRUNED):
            section.add(text(f"A pruned trial shows the last value it reported (its {s.metric} was not "
                             "reached) and the whole epochs it completed, with the steps of the epoch it was "
                             "stopped in; its run directory holds what it trained."))
        section.add(text(f"Each trial is a run directory {s.path}/<trial>; `trainlab report` of it gives its "
                         "full run report (confusion matrix, top losses, calibration...)."))
        return section

    def best_run(self) -> Section:
        """Learning curves of the best setting's best repeat."""
        section = Section("best", "The best run")
        best = self.study.best_settings()
        if not best:
            return section.add(note("no completed trial: there is no best run", "warning"))
        _, setting = best[0]
        trial = self.study.best_trial(setting)
        run_dir = self.study.run_dir(trial)
        metrics = _metrics(run_dir)
        summary = trial_summary(trial)
        params = ", ".join(f"{k} = {shown(v)}" for k, v in trial.params.items())
        section.add(text(f"Trial {trial_key(trial)} ({params}, seed {trial.user_attrs.get('seed')}): "
                         f"{self.study.metric} {fmt(trial.value)}; run directory {run_dir or 'missing'}."))
        rows = [[k.replace("_", " "), epochs_text(summary) if k == "epochs" else fmt(summary[k])] for k in
                ("test_accuracy", "test_loss", "best_val_accuracy", "final_train_loss", "epochs", "params",
                 "train_seconds") if summary.get(k) is not None]
        if rows:
            section.add(table(["", "value"], rows))
        if not metrics:
            return section.add(note("its metrics.csv is missing", "warning"))
        per_epoch = _steps_per_epoch(trial)
        fixed_lr = figs.constant_lr(metrics)
        what = "Loss, accuracy and learning rate" if fixed_lr is None else \
            f"Loss and accuracy (learning rate {fixed_lr:g}, constant)"
        return section.add(self.draw("best_run_curves", f"{what} of trial {trial_key(trial)}.",
                                     lambda: figs.learning_curves(metrics, None, round(per_epoch) if per_epoch
                                                                  else None)))

    def parameters(self) -> Section:
        """The objective against each searched parameter."""
        section = Section("parameters", f"{self.study.metric} against each parameter")
        for stage in self.study.stages:
            for param in stage.params:
                block = self._parameter(stage, param)
                section.add(block)
        if not section.blocks:
            section.add(note("no parameter to show", "warning"))
        return section

    def _parameter(self, stage: StageData, param: Param) -> Block | None:
        s = self.study
        name = f"param_{stage.name}_{param.name}".replace(".", "_").replace("/", "_")
        if param.kind in NUMERIC_KINDS:
            points = []
            for trial in stage.trials:
                if param.name not in trial.params:
                    continue
                value = trial_value(trial, s.metric)
                if value is None:  # failed, or still running
                    continue
                points.append(sfigs.Point(float(trial.params[param.name]), value, trial.state.name))
            positive = [p.value for p in points if p.value > 0]
            log = param.kind == "loguniform" or (len(positive) == len(points) and len(positive) > 1
                                                 and max(positive) / min(positive) >= 20)
            ranked = s.ranked(stage)
            best = float(ranked[0].params[param.name]) if ranked else None
            caption = (f"{s.metric} of every trial against {param.name}"
                       + (" (log axis)" if log else "") + "; the star marks the best setting.")
            return self.draw(name, self._stage_title(caption, stage),
                             lambda: sfigs.numeric_effect(param.name, points, s.metric, log, best))
        bars = []
        ranked = s.ranked(stage)
        for choice in param.choices():
            # The best setting with this value (in a one-parameter study: the setting itself).
            match = next((x for x in ranked if x.params.get(param.name) == choice), None)
            if match is None:
                bars.append(sfigs.Bar(shown(choice), None))
                continue
            sp = match.spread
            bars.append(sfigs.Bar(shown(choice), sp.mean, sp.ci_low if sp.n > 1 else None,
                                  sp.ci_high if sp.n > 1 else None, sp.n,
                                  match.verdict.verdict if match.verdict else "n/a"))
        several = len(stage.params) > 1
        caption = (f"Mean {s.metric} of {'the best setting with ' if several else ''}each value of {param.name}, "
                   "with its 95 % interval over repeats; colours give the verdict against the best setting "
                   f"({TEST_NAME}, Holm-adjusted).")
        return self.draw(name, self._stage_title(caption, stage),
                         lambda: sfigs.categorical_effect(param.name, bars, s.metric,
                                                          "best setting per value" if several else ""))

    def chosen_trials(self) -> list[FrozenTrial]:
        """The trials whose curves are overlaid: ``--trials``, else the best repeat of the best settings."""
        s = self.study
        by_key = {trial_key(t): t for _, t in s.trials}
        if self.chosen:
            missing = [k for k in self.chosen if k not in by_key]
            if missing:
                raise ConfigError(f"--trials: no trial {', '.join(missing)} in {s.path} "
                                  f"(trials: {', '.join(sorted(by_key))})")
            return [by_key[k] for k in self.chosen]
        return [s.best_trial(setting) for _, setting in s.best_settings()[:DEFAULT_TRIALS]]

    def curves(self) -> Section:
        """Overlaid learning curves of the chosen trials."""
        section = Section("curves", "Learning curves of chosen trials")
        trials = self.chosen_trials()
        if not trials:
            return section.add(note("no completed trial to show", "warning"))
        curves = []
        for trial in trials:
            curves.append(sfigs.Curve(curve_label(trial), _metrics(self.study.run_dir(trial)),
                                      _steps_per_epoch(trial)))
        how = "the trials given with --trials" if self.chosen else \
            f"the best repeat of the {len(trials)} best settings (choose others with --trials KEY,KEY)"
        return section.add(self.draw("trial_curves", f"Validation accuracy and loss, and training loss, of {how}.",
                                     lambda: sfigs.overlaid_curves(curves))
                           or note("the chosen trials have no metrics.csv", "warning"))

    def importance(self) -> Section:
        """fANOVA parameter importance of each stage with enough trials and parameters."""
        section = Section("importance", "Parameter importance")
        for stage in self.study.stages:
            complete = stage.count(TrialState.COMPLETE)
            distinct = len({str(sorted(t.params.items())) for t in stage.trials if t.state == TrialState.COMPLETE})
            where = f"stage {stage.name}: " if self.multi else ""
            if len(stage.params) < 2:
                section.add(text(f"{where}one parameter was searched, so there is nothing to apportion: its "
                                 "effect is the chart above."))
                continue
            if complete < MIN_IMPORTANCE_TRIALS or distinct < 3:
                section.add(text(f"{where}{complete} completed trials ({distinct} settings): fANOVA needs at "
                                 f"least {MIN_IMPORTANCE_TRIALS} completed trials over 3 settings."))
                continue
            method = "fANOVA"
            try:
                values = self._importances(stage)
            except Exception as exc:  # Optuna refuses some spaces; say why rather than fail
                section.add(note(f"{where}parameter importance could not be computed: {type(exc).__name__}: {exc}",
                                 "warning"))
                continue
            section.add(self.draw(f"importance_{stage.name}", f"{where}importance of each parameter for "
                                  f"{self.study.metric} (Optuna's {method} over the completed trials; "
                                  "normalised to sum to 1).",
                                  lambda values=values, method=method: sfigs.importance_bars(values, method)))
        return section

    def _importances(self, stage: StageData) -> dict[str, float]:
        """fANOVA importances of the stage's parameters (seeded, so reports repeat)."""
        import optuna
        from optuna.importance import FanovaImportanceEvaluator, get_param_importances

        ostudy = optuna.load_study(study_name=stage.study_name, storage=self.study.handle.storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_param_importances(ostudy, evaluator=FanovaImportanceEvaluator(seed=0))

    def export(self) -> Section:
        """The settings table as Markdown and LaTeX (also: trainlab report STUDY_DIR --format md|tex)."""
        section = Section("export", "Tables to paste")
        if not self.study.best_settings():
            return section.add(text("No completed trial: no table."))
        section.add(text("Markdown:"), pre(export(self.study, "md")), text("LaTeX (booktabs):"),
                    pre(export(self.study, "tex")))
        return section

    def sections(self) -> list[Section]:
        """Every section, in reading order; one that fails becomes an error note, except that a
        ConfigError (such as a ``--trials`` key that names no trial) is raised."""
        parts: list[Section] = []
        builders: list[tuple[str, str, Callable[[], Section | list[Section]]]] = [
            ("overview", "Overview", self.overview), ("settings", "Settings, best first", self.settings),
            ("trials", "Trials", self.trials), ("best", "The best run", self.best_run),
            ("parameters", "Each parameter", self.parameters), ("curves", "Learning curves", self.curves),
            ("importance", "Parameter importance", self.importance),
            (sources.ANCHOR, sources.TITLE, lambda: sources.study_source_sections(self.study)),
            ("export", "Tables to paste", self.export),
        ]
        for anchor, title, build in builders:
            try:
                built = build()  # a list: a section shown only when there is something to show
                parts.extend(built if isinstance(built, list) else [built])
            except ConfigError:
                raise
            except Exception as exc:  # a section that cannot be built is reported, not raised
                parts.append(Section(anchor, title).add(
                    note(f"this section could not be built: {type(exc).__name__}: {exc}", "error")))
        return parts


def build_study_report(study_path: str | Path, trials: Sequence[str] | None = None,
                       storage: str | None = None) -> Path:
    """Draw a study's figures into ``STUDY/figures`` and write ``STUDY/report.html``; returns its path.

    Args:
        study_path: the study directory.
        trials: keys of the trials whose learning curves are overlaid. Default None: the best few.
        storage: the study's database URL when it is not the directory's journal. Default None.

    Raises:
        RunDirError: no study there. ConfigError: a key of ``trials`` is not a trial.
    """
    study = open_study(study_path, storage)
    report = StudyReport(study, trials)
    sections = report.sections()
    subtitle = f"{len(study.trials)} trials · objective {study.metric} · {study.path}"
    return write_report(study.path / REPORT_FILE, f"Study report: {study.name}", sections, subtitle=subtitle,
                        banner=report.banner())


def study_table(study_path: str | Path, fmt_name: str, storage: str | None = None) -> str:
    """The study's settings tables as Markdown (``md``) or LaTeX (``tex``)."""
    return export(open_study(study_path, storage), fmt_name)


__all__ = ["StudyReport", "build_study_report", "curve_label", "study_table"]
