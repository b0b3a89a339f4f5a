"""The report of one run: figures under ``figures/`` and a self-contained ``report.html``.

Each section is drawn on its own; anything that is missing (no summary of a killed run,
no predictions of a failed one, no dataset on this machine) or that fails to draw becomes
a note in the report, never an exception.

The images it shows come from the run directory (:mod:`.samples`, saved when training ended);
only a run saved before that file existed has its dataset read again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure

from trainlab import diagnostics as dg
from trainlab.engines.step_log import read_steps_csv
from trainlab.errors import TrainlabError
from trainlab.report import curves as cfigs
from trainlab.report import figures as figs
from trainlab.report import grids, kernels, sources
from trainlab.report.artifacts import NPZ_ERRORS, RunArtifacts, load_artifacts
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
from trainlab.report.interpretation import prediction_sections, split_name
from trainlab.report.samples import (
    MAX_CLASSES_SHOWN,
    ReportImages,
    load_report_images,
    report_images_from_dataset,
)
from trainlab.run_files import FIGURES_DIR, REPORT_FILE, REPORT_IMAGES_FILE, STEPS_FILE

MAX_UNITS_SHOWN = 30
LOG_TAIL = 40


class RunReport:
    """Builds the sections of one run's report (see :func:`build_run_report`)."""

    def __init__(self, artifacts: RunArtifacts) -> None:
        self.art = artifacts
        self.figure_dir = artifacts.path / FIGURES_DIR
        self.saved: list[figs.SavedFigure] = []
        self.data_note = ""
        self.from_run_dir = False  # the images come from REPORT_IMAGES_FILE, not from the dataset
        self.images: ReportImages | None = None
        try:
            self.images = load_report_images(artifacts.path)
            self.from_run_dir = self.images is not None
        except NPZ_ERRORS as exc:  # read the dataset instead, as for an older run
            self.data_note = f"{REPORT_IMAGES_FILE} could not be read ({exc}); "
        if self.images is None:
            self.images = self._dataset_images()

    def _dataset_images(self) -> ReportImages | None:
        """The images read from the run's dataset (None, with ``data_note`` set, when it cannot be)."""
        try:
            return report_images_from_dataset(self.art.config, self.art.predictions)
        except (TrainlabError, OSError, ValueError) as exc:
            self.data_note += f"the dataset could not be loaded on this machine, so images are left out: {exc}"
            return None

    # -- helpers --------------------------------------------------------------------------
    def draw(self, name: str, caption: str, make: Callable[[], Figure | None]) -> Block | None:
        """Draw and save a figure; a failure becomes a warning note (None: nothing to draw)."""
        return draw_figure(self.figure_dir, name, caption, make, self.saved)

    @property
    def class_names(self) -> list[str]:
        """The dataset's class names, or class indices when they are unknown."""
        k = self.art.num_classes
        if self.images is not None and (k is None or len(self.images.class_names) == k):
            return self.images.class_names
        return [str(i) for i in range(k or 0)]

    # -- sections -------------------------------------------------------------------------
    def banner(self) -> Block:
        """How the run ended, as the report's status line."""
        level = {"completed": "info", "stopped_early": "info", "failed": "error"}.get(self.art.status, "warning")
        message = self.art.status_message()
        if self.art.has_nan():
            message += " A logged loss is NaN or infinite."
        return note(message, level)

    def overview(self) -> Section:
        """Key numbers of the run."""
        s, art = self.art.summary, self.art
        section = Section("overview", "Overview")
        rows = [["status", art.status]]
        for key, label in (("test_accuracy", "test accuracy"), ("test_loss", "test loss"),
                           ("best_val_accuracy", "best validation accuracy"),
                           ("final_val_accuracy", "final validation accuracy"),
                           ("final_train_accuracy", "final train accuracy"), ("final_train_loss", "final train loss"),
                           ("epochs", "epochs"), ("steps", "steps"), ("params", "parameters"),
                           ("train_seconds", "training time (s)"), ("images_per_second", "throughput (images/s)")):
            if s.get(key) is not None:
                rows.append([label, fmt(s[key])])
        if art.early_stop_step is not None:
            rows.append(["best step (early stopping)", fmt(art.early_stop_step)])
        if art.predictions is not None and art.predictions.labels is not None:  # issue 27: say which split
            rows.append(["confusion matrix, top losses, calibration", f"from the {split_name(art.predictions.split)}"])
        section.add(table(["", "value"], rows))
        for key in ("summary",):
            if key in art.notes:
                section.add(note(art.notes[key], "warning"))
        return section

    def curves(self) -> Section:
        """Learning curves and learning rate."""
        section = Section("curves", "Learning curves")
        metrics = self.art.metrics
        if not metrics:
            return section.add(note("no metrics.csv rows yet: the run stopped before its first evaluation", "warning"))
        steps, epochs = self.art.summary.get("steps"), self.art.summary.get("epochs")
        per_epoch = round(steps / epochs) if steps and epochs else None
        caption = "Loss and accuracy per evaluation (train: mean over the steps since the last evaluation)."
        if self.art.early_stop_step is not None:
            caption += f" The dash-dot line marks the best evaluation (step {self.art.early_stop_step})."
        fixed_lr = figs.constant_lr(metrics)
        if fixed_lr is not None:  # issue 27: a constant learning rate is a number, not a panel
            caption += f" Learning rate {fixed_lr:g} (constant), so it has no panel."
        block = self.draw("learning_curves", caption,
                          lambda: figs.learning_curves(metrics, self.art.early_stop_step, per_epoch))
        section.add(block, self.draw("learning_curves_time", "Accuracy and loss against training time "
                                     "(seconds of training, continued across a resume).",
                                     lambda: cfigs.curves_against_time(metrics)))
        every = (self.art.config.get("train") or {}).get("log_steps")
        step_rows = read_steps_csv(self.art.path / STEPS_FILE)
        section.add(self.draw("step_losses", f"Training loss of the batch of each logged step (steps.csv, "
                              f"train.log_steps {every}) and its running mean.", lambda: cfigs.step_losses(step_rows)))
        best = [r for r in metrics if r.get("split") == "val" and isinstance(r.get("accuracy"), float)]
        if best:
            top = max(best, key=lambda r: r["accuracy"])
            step = int(top.get("step", 0))
            epoch = f" (epoch {step / per_epoch:.3g})" if per_epoch else ""
            section.add(text(f"Best validation accuracy {fmt(top['accuracy'])} at step {step:,}{epoch}."))
        return section

    def predictions(self) -> list[Section]:
        """Confusion matrices, per-class scores, top losses and calibration
        (:func:`.interpretation.prediction_sections`)."""
        return prediction_sections(self.art, self.class_names, self.draw, self._loss_images)

    def _loss_images(self, rows: list[int], labels: np.ndarray, split: str) -> tuple[list[np.ndarray], str]:
        """The kept images of the top-loss ``rows`` of predictions of ``split`` with ``labels``,
        and, when there are none, why."""
        images = self.images.test_images_for(rows, labels, split) if self.images is not None else []
        if not images and self.from_run_dir:  # predictions newer than the saved images: try the dataset
            from_dataset = self._dataset_images()
            images = from_dataset.test_images_for(rows, labels, split) if from_dataset is not None else []
            return images, from_dataset.test_note if from_dataset is not None else self.data_note
        return images, self.images.test_note if self.images is not None else self.data_note

    def weights(self) -> Section:
        """Weight templates of the first dense (or conv) layer."""
        section = Section("weights", "Weight templates")
        weights = self.art.weights
        if not weights:
            return section.add(note(self.art.notes.get("weights", "no weights"), "warning"))
        small = kernels.small_first_conv(weights)
        if small is not None:  # issue 27: 3x3 kernels as image templates are noise; draw their weights
            return section.add(self.draw("weight_templates", kernels.kernel_caption(*small),
                                         lambda: kernels.kernel_grid(*small)))
        found = dg.first_layer_templates(weights, self.art.engine, self.images.image_shape if self.images else None)
        if found is None:
            return section.add(text("The first layer has no weights that can be drawn as images."))
        templates, what = found
        k = self.art.num_classes
        if len(templates) == k:
            titles = self.class_names
            what += ": one template per class"
        else:
            templates = templates[:MAX_UNITS_SHOWN]
            titles = [f"unit {i}" for i in range(len(templates))]
            what += f" (the first {len(templates)} units)"
        section.add(self.draw("weight_templates", what + ", each scaled to its own range.",
                              lambda: grids.weight_templates_grid(templates, titles, what)))
        return section

    def monitors(self) -> Section:
        """Per-layer norms, warnings and the gradient check."""
        section = Section("monitors", "Training monitors")
        block = self.draw("layer_norms", "Per-layer norms on a monitoring batch at each evaluation.",
                          lambda: figs.layer_norms(self.art.metrics))
        section.add(block or text("The run logged no per-layer monitors."))
        warnings = self.art.warnings
        if warnings:
            section.add(text("Warnings raised during training:"), *(note(w, "warning") for w in warnings))
        else:
            section.add(text("No warnings were raised during training."))
        check = self.art.gradcheck
        if check and check.get("rows"):
            section.add(text(f"Gradient check (eps {check.get('eps')}): largest relative error "
                             f"{fmt(check.get('max_rel_error'))}."),
                        table(["parameter", "shape", "entries", "max rel error", "max abs error"],
                              [[r["name"], "x".join(map(str, r["shape"])), fmt(r["entries"]),
                                f"{r['max_rel_error']:.2e}", f"{r['max_abs_error']:.2e}"] for r in check["rows"]]))
        elif self.art.engine == "numpy":
            section.add(text("No gradient check was saved with this run "
                             "(trainlab gradcheck CONFIG --save RUN_DIR adds one)."))
        return section

    def data_section(self) -> Section:
        """Class counts, samples per class and, for a run that augments, the augmentation preview."""
        section = Section("data", "Data")
        images = self.images
        if images is None:
            return section.add(note(self.data_note, "warning"))
        names = images.class_names
        counts = images.counts()
        section.add(table(["class", *[s for s, c in counts.items() if c is not None]],
                          [[name, *[fmt(int(c[i])) for c in counts.values() if c is not None]]
                           for i, name in enumerate(names)]))
        section.add(self.draw("class_counts", "Examples per class in each split of this run.",
                              lambda: figs.class_counts(counts, names)))
        shown = min(len(names), MAX_CLASSES_SHOWN)
        x, y = images.samples_x, images.samples_y
        keep = y < shown
        labels = [f"{n} ({int(counts['train'][i]):,})" for i, n in enumerate(names[:shown])]
        section.add(self.draw("samples", "Training images of each class, as stored (before normalisation); "
                              "in brackets: training examples of the class.",
                              lambda: grids.sample_grid(x[keep], y[keep], labels, "training samples per class")))
        if images.preview:
            preview = images.preview
            section.add(self.draw("augmentation", "The same training images through each configured augmentation "
                                  "(one random draw each), then all together.",
                                  lambda: grids.augmentation_grid(preview)))
        elif images.preview_note:
            section.add(note(f"no augmentation preview: {images.preview_note}", "warning"))
        return section

    def model(self) -> Section:
        """Model summary and parameter table."""
        section = Section("model", "Model")
        if self.art.model_summary:
            section.add(pre(self.art.model_summary))
        if self.art.weights:
            rows = dg.parameter_table(self.art.weights)
            trainable = sum(r.count for r in rows if r.trainable)
            section.add(text(f"{trainable:,} trainable parameters in {sum(r.trainable for r in rows)} arrays "
                             "(from the checkpoint)."),
                        table(["array", "shape", "count", "kind"],
                              [[r.name, " x ".join(map(str, r.shape)), fmt(r.count),
                                "parameter" if r.trainable else "buffer"] for r in rows]))
        elif not self.art.model_summary:
            section.add(note(self.art.notes.get("weights", "no model information"), "warning"))
        return section

    def config_section(self) -> Section:
        """The resolved config."""
        config = {k: v for k, v in self.art.config.items() if k != "provenance"}
        return Section("config", "Resolved config").add(pre(yaml.safe_dump(config, sort_keys=False)))

    def environment(self) -> Section:
        """Versions, device, precision, threads, time and data provenance."""
        section = Section("environment", "Environment")
        provenance = self.art.config.get("provenance") or {}
        s = self.art.summary
        rows = [[f"{name} version", str(v)] for name, v in (provenance.get("versions") or {}).items()]
        rows.append(["engine", self.art.engine])
        for key in ("device", "precision", "tta"):
            if key in s:
                rows.append([key, fmt(s[key])])
        threads = re.search(r"(\d+) threads", self.art.log_text)
        if threads:
            rows.append(["CPU threads", threads.group(1)])
        rows.append(["started", str(provenance.get("created", "–"))])
        for key, label in (("train_seconds", "training time (s)"), ("images_per_second", "throughput (images/s)")):
            if s.get(key) is not None:
                rows.append([label, fmt(s[key])])
        for key, value in (provenance.get("data") or {}).items():
            rows.append([f"data {key}", fmt(value) if not isinstance(value, dict) else
                         ", ".join(f"{k} {v}" for k, v in value.items())])
        return section.add(table(["", "value"], rows))

    def log(self) -> Section:
        """The end of run.log."""
        section = Section("log", "Log")
        lines = self.art.log_text.splitlines()
        if not lines:
            return section.add(text("No run.log."))
        if len(lines) > LOG_TAIL:
            section.add(text(f"The last {LOG_TAIL} of {len(lines)} lines of run.log:"))
        return section.add(pre("\n".join(lines[-LOG_TAIL:])))

    def sections(self) -> list[Section]:
        """Every section, in reading order."""
        parts: list[Section] = []
        builders: list[tuple[str, str, Callable[[], Section | list[Section]]]] = [
            ("overview", "Overview", self.overview), ("curves", "Learning curves", self.curves),
            ("predictions", "Predictions", self.predictions), ("weights", "Weight templates", self.weights),
            ("monitors", "Training monitors", self.monitors), ("data", "Data", self.data_section),
            ("model", "Model", self.model),
            (sources.ANCHOR, sources.TITLE, lambda: sources.source_sections(self.art.config)),
            ("config", "Resolved config", self.config_section),
            ("environment", "Environment", self.environment), ("log", "Log", self.log),
        ]
        for anchor, title, build in builders:
            try:
                built = build()
            except Exception as exc:  # a section that cannot be built is reported, not raised
                built = Section(anchor, title).add(
                    note(f"this section could not be built: {type(exc).__name__}: {exc}", "error"))
            parts.extend(built if isinstance(built, list) else [built])
        return parts


def build_run_report(run_path: str | Path) -> Path:
    """Draw a run's figures into ``RUN/figures`` and write ``RUN/report.html``; returns its path.

    Raises:
        RunDirError: ``run_path`` is not a run directory.
    """
    artifacts = load_artifacts(run_path)
    report = RunReport(artifacts)
    sections = report.sections()
    created = (artifacts.config.get("provenance") or {}).get("created", "")
    subtitle = f"{artifacts.engine} engine · {artifacts.config.get('data', {}).get('dataset', '')} · {created}"
    return write_report(artifacts.path / REPORT_FILE, f"Run report: {artifacts.name}", sections,
                        subtitle=subtitle, banner=report.banner())


__all__ = ["RunReport", "build_run_report"]
