"""The console progress: epoch on the bar, a line per evaluation with the best so far, a last line."""

from __future__ import annotations

import io

from trainlab.progress import ProgressReporter, evaluation_line, final_line


def _rows(val_acc: float, val_loss: float = 1.0) -> list[dict[str, object]]:
    return [{"split": "train", "loss": 2.0, "accuracy": 0.1},
            {"split": "val", "loss": val_loss, "accuracy": val_acc}]


def test_plain_lines_name_the_epoch_and_track_the_best_evaluation() -> None:
    stream = io.StringIO()
    bar = ProgressReporter(30, stream=stream, interval_seconds=0.0, steps_per_epoch=10)
    bar.start()
    bar.update(5, **{"train loss": 2.5})
    bar.evaluation(10, _rows(0.40, 1.5))
    bar.evaluation(20, _rows(0.55, 1.2))
    bar.evaluation(30, _rows(0.50, 1.3))  # worse: the best stays at epoch 2
    bar.close()
    bar.final({"final_val_accuracy": 0.50, "test_accuracy": 0.52, "test_loss": 1.25})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("train epoch 1/3 step 5/30") and "train loss 2.5" in lines[0]
    assert lines[1] == "epoch 1/3 (step 10): val loss 1.5000 acc 0.4000 | best acc 0.4000 (epoch 1)"
    assert lines[2] == "epoch 2/3 (step 20): val loss 1.2000 acc 0.5500 | best acc 0.5500 (epoch 2)"
    assert lines[3] == "epoch 3/3 (step 30): val loss 1.3000 acc 0.5000 | best acc 0.5500 (epoch 2)"
    assert lines[4] == ("done: best val acc 0.5500 (epoch 2), final val acc 0.5000, test acc 0.5200, "
                        "test loss 1.2500")


def test_disabled_reporter_prints_nothing_but_still_tracks_the_best() -> None:
    stream = io.StringIO()
    bar = ProgressReporter(20, enabled=False, stream=stream, steps_per_epoch=10)
    bar.start()
    bar.evaluation(10, _rows(0.3))
    bar.final({"test_accuracy": 0.3})
    assert stream.getvalue() == "" and bar.best == (0.3, 1.0)


def test_lines_without_a_validation_split() -> None:
    assert evaluation_line(1.0, 2.0, 10, [{"split": "train", "loss": 1.0, "accuracy": 0.5}], None) is None
    assert final_line({}, None) == "done: no validation or test split to measure"
    assert final_line({"test_accuracy": 0.9}, None) == "done: test acc 0.9000"


def test_partial_epochs_keep_a_decimal() -> None:
    line = evaluation_line(2.5, 3.0, 25, _rows(0.6), (0.6, 2.5))
    assert line is not None and line.startswith("epoch 2.5/3 (step 25)") and line.endswith("(epoch 2.5)")
