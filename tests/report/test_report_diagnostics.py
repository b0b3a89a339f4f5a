"""Diagnostics from known inputs: hand-made predictions, toy calibrations, tiny weight matrices."""

from __future__ import annotations

import numpy as np
import pytest

from trainlab import diagnostics as dg

NAMES = ["cat", "dog", "bird"]


def test_confusion_matrix_counts_hand_made_predictions() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 1, 0, 1, 1, 2, 0, 1, 2])
    cm = dg.confusion_matrix(labels, predicted, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    assert cm.sum() == len(labels)
    rates = dg.normalize_rows(cm)
    assert np.allclose(rates.sum(axis=1), 1.0)
    assert rates[2, 2] == pytest.approx(0.5)


def test_confusion_matrix_empty_class_and_bad_lengths() -> None:
    cm = dg.confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3)
    assert dg.normalize_rows(cm)[2].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="differ in length"):
        dg.confusion_matrix(np.array([0, 1]), np.array([0]), 2)


def test_per_class_scores() -> None:
    cm = np.array([[2, 1, 0], [0, 2, 0], [1, 1, 2]])
    scores = dg.per_class_scores(cm, NAMES)
    cat, dog, bird = scores
    assert cat.precision == pytest.approx(2 / 3) and cat.recall == pytest.approx(2 / 3)
    assert dog.precision == pytest.approx(0.5) and dog.recall == pytest.approx(1.0)
    assert dog.f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert bird.precision == pytest.approx(1.0) and bird.recall == pytest.approx(0.5)
    assert [s.support for s in scores] == [3, 2, 4]
    # A class never predicted and never present: zeros, not NaN; left out of the macro F1.
    empty = dg.per_class_scores(np.array([[1, 0], [0, 0]]), ["a", "b"])
    assert (empty[1].precision, empty[1].recall, empty[1].f1) == (0.0, 0.0, 0.0)
    assert dg.macro_f1(empty) == pytest.approx(1.0)


def test_most_confused_pairs() -> None:
    cm = np.array([[5, 3, 0], [1, 5, 0], [0, 4, 5]])
    assert dg.most_confused(cm, NAMES, top=2) == [("bird", "dog", 4), ("cat", "dog", 3)]
    assert dg.most_confused(np.eye(3, dtype=int), NAMES) == []


def test_top_losses_are_the_confident_mistakes() -> None:
    probabilities = np.array([
        [0.9, 0.05, 0.05],  # right
        [0.1, 0.8, 0.1],  # wrong (true 0), p(true) 0.1
        [0.01, 0.98, 0.01],  # wrong (true 0), p(true) 0.01: the worst
        [0.3, 0.3, 0.4],  # wrong (true 1), p(true) 0.3
    ])
    labels = np.array([0, 0, 0, 1])
    items = dg.top_losses(probabilities, labels, top=10)
    assert [i.index for i in items] == [2, 1, 3]
    assert items[0].predicted == 1 and items[0].confidence == pytest.approx(0.98)
    assert items[0].loss == pytest.approx(-np.log(0.01))
    assert len(dg.top_losses(probabilities, labels, top=1)) == 1


def test_ece_of_a_perfectly_calibrated_toy_is_zero() -> None:
    # In each confidence level c, exactly a fraction c of the predictions is right.
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for confidence in (0.35, 0.5, 0.65, 0.8, 0.95):
        n = 200
        right = round(confidence * n)
        for i in range(n):
            p = np.full(3, (1 - confidence) / 2)
            p[0] = confidence
            rows.append(p)
            labels.append(0 if i < right else int(rng.integers(1, 3)))
    cal = dg.calibration(np.array(rows), np.array(labels), bins=10)
    assert cal.ece == pytest.approx(0.0, abs=1e-9)
    assert cal.counts.sum() == len(labels)


def test_ece_of_an_overconfident_model() -> None:
    # Always 99 % sure, right half of the time: ECE = 0.49.
    probabilities = np.tile([0.99, 0.01], (100, 1))
    labels = np.array([0, 1] * 50)
    cal = dg.calibration(probabilities, labels)
    assert cal.ece == pytest.approx(0.49)
    assert cal.max_gap == pytest.approx(0.49)
    assert np.isnan(cal.accuracy[0])  # empty bins are NaN, not 0


def test_weight_templates_one_image_per_class() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3 * 4 * 5, 10))  # (D, K) as the NumPy engine stores it
    templates = dg.weight_templates(weights, (3, 4, 5))
    assert templates.shape == (10, 4, 5, 3)
    assert templates.min() == 0.0 and templates.max() == 1.0
    assert np.allclose(templates.reshape(10, -1).min(1), 0) and np.allclose(templates.reshape(10, -1).max(1), 1)
    # Template k is column k, laid out (C, H, W) like the flattened input.
    expected = weights[:, 7].reshape(3, 4, 5).transpose(1, 2, 0)
    scaled = (expected - expected.min()) / (expected.max() - expected.min())
    assert np.allclose(templates[7], scaled)
    with pytest.raises(ValueError, match="inputs"):
        dg.weight_templates(weights, (1, 4, 5))
    flat = dg.weight_templates(np.ones((4, 2)), (1, 2, 2))
    assert np.all(flat == 0)  # a constant template does not divide by zero


def test_parameter_table() -> None:
    arrays = {"0.W": np.zeros((784, 50)), "0.b": np.zeros(50), "1.gamma": np.zeros(50),
              "1.running_mean": np.zeros(50), "1.num_batches_tracked": np.zeros(())}
    rows = dg.parameter_table(arrays)
    assert [r.name for r in rows] == ["0.W", "0.b", "1.gamma", "1.running_mean"]
    assert rows[0].count == 784 * 50 and rows[0].shape == (784, 50)
    assert [r.trainable for r in rows] == [True, True, True, False]


def test_early_stopping_step_and_log_warnings() -> None:
    reason = "early stopping: val_loss did not improve for 3 evaluations (best 0.5 at step 120)"
    assert dg.early_stopping_step({"status": "stopped_early", "stop_reason": reason}) == 120
    assert dg.early_stopping_step({"status": "completed"}) is None
    assert dg.early_stopping_step({"stop_reason": "reduce-on-plateau"}) is None
    log = ("2026-01-01T00:00:00 run started\n"
           "2026-01-01T00:00:01 warning: gradients vanish at step 10\n"
           "warning: 95% of the ReLUs of layer 0 are dead\n")
    assert dg.log_warnings(log) == ["gradients vanish at step 10", "95% of the ReLUs of layer 0 are dead"]
    assert dg.class_counts(np.array([0, 2, 2]), 4).tolist() == [1, 0, 2, 0]
