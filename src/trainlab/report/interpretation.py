"""The interpretation sections of a run report: the confusion matrices before and after
training with the per-class scores, the top losses and the calibration.

They are drawn from ``predictions.npz`` (and ``predictions_initial.npz``), which hold the test
split, or the validation split when the run has no labelled test split (an image folder with
an unlabelled ``test/``, issue 27); every caption then says which split the figures are of.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from trainlab import diagnostics as dg
from trainlab.report import figures as figs
from trainlab.report import grids
from trainlab.report.artifacts import Predictions, RunArtifacts
from trainlab.report.html import Block, Section, fmt, note, table, text
from trainlab.report.samples import TOP_LOSSES

# Draws and saves one figure: (file name, caption, maker) -> its block, or None (RunReport.draw).
Draw = Callable[[str, str, Callable[[], Figure | None]], Block | None]
# The kept images of top-loss rows of predictions (rows, labels, split) -> (images, why none).
LossImages = Callable[[list[int], np.ndarray, str], tuple[list[np.ndarray], str]]

# How the report names each split predictions can be of: (in a sentence, as a short adjective).
SPLIT_NAMES = {
    "test": ("test split", "test"),
    "val": ("validation split (no labelled test split)", "validation"),
}


def split_name(split: str) -> str:
    """The split of a run's predictions as the report names it in a sentence."""
    return SPLIT_NAMES[split][0]


def _on(split: str) -> str:
    """What a caption adds to say its split: nothing for test (as before issue 27)."""
    return "" if split == "test" else f" on the {split_name(split)}"


def prediction_sections(art: RunArtifacts, names: list[str], draw: Draw, loss_images: LossImages) -> list[Section]:
    """Confusion matrices and per-class scores, top losses and calibration of the run's predictions.

    Args:
        art: the run's files (``predictions`` and ``initial_predictions`` are read).
        names: the class names, one per column of the probabilities.
        draw: draws and saves a figure (:meth:`trainlab.report.run_report.RunReport.draw`).
        loss_images: the images of the top-loss rows, and why there are none.
    """
    cm_section = Section("confusion", "Confusion matrix and per-class scores")
    top_section = Section("top-losses", "Top losses")
    cal_section = Section("calibration", "Calibration")
    sections = [cm_section, top_section, cal_section]
    preds = art.predictions
    if preds is None or preds.labels is None:
        reason = art.notes.get("predictions") or "the test split is unlabelled"
        for section in sections:
            section.add(note(f"not available: {reason}", "warning"))
        return sections
    if not np.isfinite(preds.probabilities).all():
        for section in sections:
            section.add(note("not available: predictions.npz holds NaN or infinite probabilities "
                             "(the model diverged)", "error"))
        return sections
    if preds.split != "test":
        for section in sections:
            section.add(note("These figures are of the validation split, the images the run held out from "
                             "training: it has no labelled test split.", "info"))
    _confusion(cm_section, preds, art.initial_predictions, names, draw, art.notes.get("initial_predictions", ""))
    _top_losses(top_section, preds, names, draw, loss_images)
    _calibration(cal_section, preds, draw)
    return sections


def _confusion(section: Section, preds: Predictions, initial: Predictions | None, names: list[str],
               draw: Draw, initial_note: str = "") -> None:
    """The confusion matrices before and after training, per-class scores and the most confused pairs;
    ``initial_note`` says why ``initial`` is None (missing or unreadable), when known."""
    assert preds.labels is not None
    probs, labels = preds.probabilities, preds.labels
    where, short = SPLIT_NAMES[preds.split]
    # The figures' own titles name a validation split, which a figure copied out of the report keeps.
    prefix = "" if preds.split == "test" else f"{short}, "
    k = probs.shape[1]
    if initial is not None and initial.probabilities.shape == probs.shape and initial.split == preds.split:
        cm0 = dg.confusion_matrix(labels, initial.probabilities.argmax(1), k)
        section.add(draw("confusion_before", f"{where[:1].upper()}{where[1:]}, initial model (before training).",
                         lambda: figs.confusion_matrices(cm0, names, f"{prefix}before training")))
    else:
        if initial is None:
            why = initial_note or "output.save_predictions was off, or the run predates it"
        else:
            why = "its shape or split differs from predictions.npz"
        section.add(note(f"no confusion matrix before training: the run has no usable predictions_initial.npz ({why})"))
    cm = dg.confusion_matrix(labels, probs.argmax(1), k)
    section.add(draw("confusion_after", f"{where[:1].upper()}{where[1:]}, trained model (rows: true class).",
                     lambda: figs.confusion_matrices(cm, names, f"{prefix}after training")))
    scores = dg.per_class_scores(cm, names)
    section.add(text(f"Accuracy {fmt(float(np.trace(cm) / max(1, cm.sum())))}, "
                     f"macro F1 {fmt(dg.macro_f1(scores))} on {len(labels):,} {short} images."))
    section.add(table(["class", "precision", "recall", "F1", "support"],
                      [[c.name, fmt(c.precision, 3), fmt(c.recall, 3), fmt(c.f1, 3), fmt(c.support)]
                       for c in scores]))
    section.add(draw("class_scores", f"Precision, recall and F1 per class{_on(preds.split)}.",
                     lambda: figs.class_scores(scores, f"{short} split")))
    pairs = dg.most_confused(cm, names, top=8)
    if pairs:
        section.add(text("Most confused pairs (true → predicted):"),
                    table(["true", "predicted", "count", "share of the true class"],
                          [[t, p, fmt(c), f"{c / max(1, cm[names.index(t)].sum()):.1%}"] for t, p, c in pairs]))


def _top_losses(section: Section, preds: Predictions, names: list[str], draw: Draw, loss_images: LossImages) -> None:
    """The largest losses as a table and, where their images were kept, as a grid."""
    assert preds.labels is not None
    labels = preds.labels
    short = SPLIT_NAMES[preds.split][1]
    items = dg.top_losses(preds.probabilities, labels, TOP_LOSSES)
    if not items:
        section.add(text(f"No misclassified {short} images."))
        return
    index = "test index" if preds.split == "test" else "validation index"
    section.add(table([index, "true", "predicted", "confidence", "p(true)", "loss"],
                      [[i.index, names[i.label], names[i.predicted], f"{i.confidence:.1%}",
                        f"{i.true_probability:.2%}", fmt(i.loss, 3)] for i in items[:10]]))
    images, reason = loss_images([i.index for i in items], labels, preds.split)
    if not images:
        section.add(note(reason or f"no {short} images were saved for these predictions", "warning"))
        return
    shown = items[: len(images)]  # large images: the run directory keeps fewer of them
    caption = (f"The most confident mistakes{_on(preds.split)}: true class, prediction with its probability, "
               "and the probability of the true class.")
    section.add(draw("top_losses", caption, lambda: grids.top_losses_grid(images, shown, names, split=f"{short} split")))


def _calibration(section: Section, preds: Predictions, draw: Draw) -> None:
    """The reliability diagram and the expected calibration error."""
    assert preds.labels is not None
    cal = dg.calibration(preds.probabilities, preds.labels)
    section.add(draw("reliability", f"Reliability diagram of the top-class probability (15 bins){_on(preds.split)}. "
                     + figs.max_gap_rule(cal), lambda: figs.reliability_diagram(cal)))
    section.add(text(f"Expected calibration error {cal.ece:.4f}: on average, confidence and accuracy "
                     f"differ by {cal.ece:.1%} (weighted by the share of images in each bin)."))


__all__ = ["SPLIT_NAMES", "prediction_sections", "split_name"]
