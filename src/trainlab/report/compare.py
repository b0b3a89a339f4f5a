"""``trainlab compare RUN_DIR... --x epoch|step|time``: one report that overlays the learning
curves of any runs (against epochs, optimizer steps or training time) and puts their numbers
and the config fields in which they differ side by side.

Runs may come from different studies, engines or datasets; a run that failed or was killed
is shown with its status (and whatever curves it logged), never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from trainlab.engines.step_log import read_steps_csv
from trainlab.errors import ConfigError
from trainlab.report import curves as cfigs
from trainlab.report import figures as figs
from trainlab.report.artifacts import RunArtifacts, load_artifacts
from trainlab.report.html import Block, Section, figure, fmt, note, table, text, write_report
from trainlab.run_files import FIGURES_DIR, REPORT_FILE, STEPS_FILE

SUMMARY_KEYS = (("test_accuracy", "test accuracy"), ("test_loss", "test loss"),
                ("best_val_accuracy", "best val accuracy"), ("final_train_loss", "final train loss"),
                ("epochs", "epochs"), ("steps", "steps"), ("params", "parameters"),
                ("train_seconds", "time (s)"), ("images_per_second", "images/s"))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``dotted.path -> value`` (lists kept whole)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def config_differences(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The config fields (provenance and output left out) whose values differ between runs."""
    flat = [flatten({k: v for k, v in c.items() if k not in ("provenance", "output")}) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    rows = []
    for key in keys:
        values = [json.dumps(f[key], default=str) if key in f else "–" for f in flat]
        if len(set(values)) > 1:
            rows.append((key, [v.strip('"') for v in values]))
    return rows


def run_labels(runs: Sequence[RunArtifacts]) -> list[str]:
    """Short unique labels: ``name/run-id``, with the parent folder added where two collide."""
    labels = [r.name for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.path.parent.parent.name}/{r.path.parent.name}/{r.path.name}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{i + 1}]" for i, label in enumerate(labels)]
    return labels


def _steps_per_epoch(art: RunArtifacts, step_rows: Sequence[Mapping[str, float]]) -> float | None:
    """From the summary, else (a killed run) from its last steps.csv row; None when unknown."""
    steps, epochs = art.summary.get("steps"), art.summary.get("epochs")
    if steps and epochs:
        return steps / epochs
    if step_rows and step_rows[-1]["epoch"] > 0:
        return step_rows[-1]["step"] / step_rows[-1]["epoch"]
    return None


def run_curve(label: str, art: RunArtifacts) -> cfigs.RunCurve:
    """A run's metrics.csv and steps.csv rows for the overlaid figures."""
    step_rows = read_steps_csv(art.path / STEPS_FILE)
    return cfigs.RunCurve(label, art.metrics, step_rows, _steps_per_epoch(art, step_rows))


class CompareReport:
    """Builds the sections of a comparison of runs (see :func:`build_compare_report`).

    Args:
        runs: the runs' artifacts, in the order of the report.
        out: the report's folder (figures go to ``out/figures``).
        x: the x axis of the overlaid curves: ``epoch``, ``step`` or ``time``. Default ``epoch``.
    """

    def __init__(self, runs: Sequence[RunArtifacts], out: Path, x: str = "epoch") -> None:
        self.runs = list(runs)
        self.labels = run_labels(runs)
        self.figure_dir = out / FIGURES_DIR
        self.x = x

    def draw(self, name: str, caption: str, make: Callable[[], Figure | None]) -> Block | None:
        """Draw and save a figure; a failure becomes a warning note."""
        try:
            fig = make()
            if fig is None:
                return None
            return figure(figs.save_figure(fig, self.figure_dir, name, caption))
        except Exception as exc:  # one broken figure must not cost the whole report
            return note(f"the figure {name!r} could not be drawn: {type(exc).__name__}: {exc}", "warning")

    def banner(self) -> Block:
        """Which runs did not finish."""
        unfinished = [f"{label} ({art.status})" for label, art in zip(self.labels, self.runs, strict=True)
                      if not art.finished]
        if unfinished:
            return note(f"{len(self.runs)} runs compared; not finished: {', '.join(unfinished)}.", "warning")
        return note(f"{len(self.runs)} runs compared, all finished.")

    def numbers(self) -> Section:
        """Status and key numbers of each run."""
        section = Section("runs", "Runs")
        keys = [(k, label) for k, label in SUMMARY_KEYS if any(r.summary.get(k) is not None for r in self.runs)]
        rows = [[label, art.engine, art.status, *[(cfigs.epochs_text(art.summary) or fmt(None)) if k == "epochs"
                                                  else fmt(art.summary.get(k)) for k, _ in keys]]
                for label, art in zip(self.labels, self.runs, strict=True)]
        section.add(table(["run", "engine", "status", *[label for _, label in keys]], rows))
        section.add(table(["run", "directory"], [[label, str(art.path)] for label, art in
                                                 zip(self.labels, self.runs, strict=True)]))
        for label, art in zip(self.labels, self.runs, strict=True):
            if not art.finished:
                section.add(note(f"{label}: {art.status_message()}", "error" if art.status == "failed" else "warning"))
        return section

    def curves(self) -> Section:
        """Overlaid learning curves against ``self.x``, and the per-step losses of the runs
        that logged them."""
        section = Section("curves", "Learning curves")
        curves = [run_curve(label, art) for label, art in zip(self.labels, self.runs, strict=True)]
        axis = cfigs.resolve_axis(self.x, curves)
        names = {"epoch": "epochs", "step": "optimizer steps", "time": "training time"}
        against = names[axis]
        why = {"time": " (each run's own clock, continued across a resume)"}.get(axis, "")
        if axis != self.x:
            why = " (not epochs: a run's steps per epoch is unknown)"
        block = self.draw("compare_curves", f"Validation accuracy and loss, and training loss, of every run "
                          f"against {against}{why}.", lambda: cfigs.overlaid_curves(curves, axis))
        section.add(block or note("no run has metrics to draw against this axis yet", "warning"))
        empty = [curve.label for curve in curves if not curve.metrics]
        if empty:
            section.add(note(f"no metrics.csv rows: {', '.join(empty)}", "warning"))
        untimed = [curve.label for curve in curves if curve.metrics and not curve.has_time()]
        if axis == "time" and untimed:
            section.add(note(f"left out of the time axis (their metrics.csv has no elapsed column: they "
                             f"were written before it existed): {', '.join(untimed)}", "warning"))
        # self.x, not axis: steps.csv rows carry their own epoch, so no run falls back to steps.
        section.add(self.draw("compare_step_losses", f"Training loss at each logged step (steps.csv, running "
                              f"mean) against {names[self.x]}; only runs trained with train.log_steps.",
                              lambda: cfigs.overlaid_step_losses(curves, self.x)))
        return section

    def configs(self) -> Section:
        """The config fields in which the runs differ."""
        section = Section("config", "Config differences")
        rows = config_differences([art.config for art in self.runs])
        if not rows:
            return section.add(text("The resolved configs are identical (apart from output and provenance)."))
        return section.add(table(["field", *self.labels], [[key, *values] for key, values in rows]))

    def sections(self) -> list[Section]:
        """Every section in reading order."""
        return [self.numbers(), self.curves(), self.configs()]


def build_compare_report(run_paths: Sequence[str | Path], out: str | Path, x: str = "epoch") -> Path:
    """Write ``OUT/report.html`` (and ``OUT/figures``) comparing the runs; returns its path.

    Args:
        run_paths: the run directories.
        out: the report's folder (created if needed).
        x: the x axis of the overlaid curves: ``epoch``, ``step`` or ``time`` (the runs'
            training time, from metrics.csv's ``elapsed`` column). Default ``epoch``.

    Raises:
        ConfigError: ``x`` is not one of those, or fewer than two different runs are given.
        RunDirError: a path is not a run directory.
    """
    if x not in cfigs.X_AXES:
        raise ConfigError(f"--x {x!r}: the x axis must be one of {', '.join(cfigs.X_AXES)}")
    if len({Path(p).resolve() for p in run_paths}) < 2:
        raise ConfigError("compare needs two or more different run directories "
                          f"(got {', '.join(str(p) for p in run_paths) or 'none'}); `trainlab report RUN_DIR` reports one run")
    runs = [load_artifacts(p) for p in run_paths]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = CompareReport(runs, out, x)
    title = f"Comparison of {len(runs)} runs"
    return write_report(out / REPORT_FILE, title, report.sections(), subtitle=" · ".join(report.labels),
                        banner=report.banner())


__all__ = ["CompareReport", "build_compare_report", "config_differences", "flatten", "run_curve", "run_labels"]
