"""Curves against steps and training time: the run report's per-step loss and time figures,
``trainlab compare --x epoch|step|time``, run directories from before the ``elapsed``
column, and the figure functions of :mod:`trainlab.report.curves` on their own."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import trainlab.api as tl
from tests.helpers import write_config
from trainlab.cli import main
from trainlab.report import curves as cfigs
from trainlab.report.artifacts import RunArtifacts, load_artifacts
from trainlab.report.compare import CompareReport
from trainlab.report.run_report import RunReport
from trainlab.run_files import read_metrics_csv


@dataclass
class CurveRuns:
    fine: Path  # batches of 20 (100 steps per epoch), every step in steps.csv
    coarse: Path  # batches of 50 (40 steps per epoch), every 5th step in steps.csv
    old: Path  # a copy of `coarse` as written before elapsed and steps.csv existed


def _strip_elapsed(run_path: Path) -> None:
    rows, columns = read_metrics_csv(run_path / "metrics.csv")
    with open(run_path / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [c for c in columns if c != "elapsed"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (run_path / "steps.csv").unlink()


@pytest.fixture(scope="module")
def curve_runs(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CurveRuns]:
    root = tmp_path_factory.mktemp("curve-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_NUM_THREADS", "1")
        fine = write_config(root / "fine.yaml", root / "runs", name="fine",
                            train={"epochs": 2, "batch_size": 20, "eval_every": 25, "log_steps": 1})
        coarse = write_config(root / "coarse.yaml", root / "runs", name="coarse",
                              train={"epochs": 2, "batch_size": 50, "eval_every": 10, "log_steps": 5})
        fine_run = tl.run(fine, run_id="a", progress=False, echo=False).path
        coarse_run = tl.run(coarse, run_id="a", progress=False, echo=False).path
    old = root / "runs" / "coarse" / "old"
    shutil.copytree(coarse_run, old)
    _strip_elapsed(old)
    yield CurveRuns(fine_run, coarse_run, old)


# -- the run report -------------------------------------------------------------------------
def test_run_report_has_the_per_step_loss_and_the_curves_against_time(curve_runs: CurveRuns) -> None:
    report = tl.write_report(curve_runs.fine)
    html = report.read_text(encoding="utf-8")
    for name in ("learning_curves", "learning_curves_time", "step_losses"):
        assert (curve_runs.fine / "figures" / f"{name}.png").stat().st_size > 0, name
        assert (curve_runs.fine / "figures" / f"{name}.svg").exists(), name
    assert "Accuracy and loss against training time" in html
    assert "Training loss of the batch of each logged step (steps.csv, train.log_steps 1)" in html
    assert html.count("data:image/png;base64,") >= 3  # figures embedded: the file stands alone
    assert "could not be drawn" not in html


def test_report_of_a_run_from_before_elapsed_has_its_curves_and_no_warnings(curve_runs: CurveRuns) -> None:
    report = RunReport(load_artifacts(curve_runs.old))
    blocks = report.curves().blocks
    names = [saved.name for saved in report.saved]
    assert names == ["learning_curves"]  # no time or per-step figure, and no note about them
    assert not any(block.kind == "note" for block in blocks)


# -- trainlab compare --x ---------------------------------------------------------------------
def test_compare_against_time_steps_and_epochs(curve_runs: CurveRuns, tmp_path: Path) -> None:
    runs = [str(curve_runs.fine), str(curve_runs.coarse), str(curve_runs.old)]
    out = tmp_path / "by-time"
    assert main(["compare", *runs, "--out", str(out), "--x", "time"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "against training time (each run" in html
    assert "left out of the time axis" in html and "coarse/old" in html
    assert (out / "figures" / "compare_curves.png").exists()
    assert (out / "figures" / "compare_step_losses.png").exists()
    for x, caption in (("step", "against optimizer steps."), ("epoch", "against epochs.")):
        out = tmp_path / f"by-{x}"
        assert main(["compare", *runs, "--out", str(out), "--x", x]) == 0
        html = (out / "report.html").read_text(encoding="utf-8")
        assert caption in html and "left out of the time axis" not in html
    assert main(["compare", *runs, "--out", str(tmp_path / "no"), "--x", "wall"]) == 2  # a ConfigError
    assert not (tmp_path / "no").exists()


def test_compare_step_losses_stay_against_epochs_when_the_curves_fall_back_to_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logged = tmp_path / "logged"
    logged.mkdir()
    lines = ["step,epoch,loss,lr,elapsed"] + [f"{s},{s / 20},{1 / s},0.1,{s / 100}" for s in range(1, 41)]
    (logged / "steps.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    metrics = [{"step": s, "split": "val", "loss": 1 / s, "accuracy": s / 50} for s in (20, 40)]
    runs = [RunArtifacts(logged, {"name": "logged"}, metrics, {"steps": 40, "epochs": 2}),
            RunArtifacts(tmp_path / "killed", {"name": "killed"}, metrics, {})]  # steps per epoch unknown
    drawn = []
    draw = cfigs.overlaid_step_losses
    monkeypatch.setattr(cfigs, "overlaid_step_losses", lambda *args: drawn.append(draw(*args)) or drawn[-1])
    blocks = CompareReport(runs, tmp_path / "out", "epoch").curves().blocks
    curves, steps = (block.figure.caption for block in blocks if block.figure is not None)
    assert "against optimizer steps (not epochs" in curves
    assert "against epochs;" in steps
    (fig,) = drawn
    assert fig.axes[0].get_xlabel() == "epoch" and max(fig.axes[0].get_lines()[0].get_xdata()) == 2.0


def test_compare_time_axis_puts_each_point_at_its_elapsed_seconds(curve_runs: CurveRuns) -> None:
    metrics = load_artifacts(curve_runs.coarse).metrics
    curve = cfigs.RunCurve("coarse", metrics, steps_per_epoch=40.0)
    elapsed = [r["elapsed"] for r in metrics if r["split"] == "val"]
    fig = cfigs.overlaid_curves([curve], "time")
    assert fig is not None
    (line,) = fig.axes[0].get_lines()
    assert np.allclose(line.get_xdata(), elapsed) and fig.axes[0].get_xlabel() == "training time (s)"
    (line,) = cfigs.overlaid_curves([curve], "epoch").axes[0].get_lines()
    assert np.allclose(line.get_xdata(), [r["step"] / 40 for r in metrics if r["split"] == "val"])
    unknown = cfigs.RunCurve("killed", metrics)  # no summary: steps per epoch unknown
    assert cfigs.resolve_axis("epoch", [curve, unknown]) == "step"
    assert cfigs.overlaid_curves([curve, unknown], "epoch").axes[0].get_xlabel() == "step"
    old = cfigs.RunCurve("old", load_artifacts(curve_runs.old).metrics)
    assert not old.has_time() and cfigs.overlaid_curves([old], "time") is None


# -- figure helpers -------------------------------------------------------------------------
def test_time_unit_and_running_mean() -> None:
    assert cfigs.time_unit(90) == (1.0, "s")
    assert cfigs.time_unit(25 * 60) == (60.0, "min")  # seed E's runs took 7 to 41 minutes
    assert cfigs.time_unit(5 * 3600) == (3600.0, "h")
    x = np.arange(1, 201, dtype=float)
    smooth_x, smooth_y = cfigs.running_mean(x, x)
    assert len(smooth_y) == 197 and smooth_x[0] == 4 and smooth_y[0] == pytest.approx(2.5)
    short_x, short_y = cfigs.running_mean(x[:60], x[:60])  # fewer than 2 values per window: as is
    assert np.array_equal(short_x, x[:60]) and np.array_equal(short_y, x[:60])


def test_step_loss_figure_skips_non_finite_losses_and_shows_epochs() -> None:
    rows = [{"step": s, "epoch": s / 10, "loss": 1.0 / s, "lr": 0.1, "elapsed": s * 0.01} for s in range(1, 201)]
    rows[50]["loss"] = float("nan")
    fig = cfigs.step_losses(rows)
    assert fig is not None
    ax = fig.axes[0]
    raw, smooth = ax.get_lines()
    assert len(raw.get_xdata()) == 199 and len(smooth.get_xdata()) == 197  # a window of 3
    assert any(child.get_xlabel() == "epoch" for child in ax.child_axes)  # the secondary top axis
    assert cfigs.step_losses([{**rows[0], "loss": float("nan")}]) is None


def test_a_config_without_an_engine_key_reads_as_the_run_configs_default(tmp_path: Path) -> None:
    assert RunArtifacts(tmp_path, {"name": "old"}, [], {}).engine == "torch"
    assert RunArtifacts(tmp_path, {"name": "np", "engine": "numpy"}, [], {}).engine == "numpy"
