"""Study tables with the model's parameter count, and the study's test-set leakage warning in
its results and report (a stand-in for the training run: no data needed)."""

from __future__ import annotations

import csv
import html
import itertools
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial

import trainlab.studies as studies
from tests.studies.conftest import write_study
from trainlab.callbacks import Callback
from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.report.study_data import open_study
from trainlab.report.study_report import build_study_report
from trainlab.report.study_tables import export, settings_table
from trainlab.studies import Options, run_study
from trainlab.studies.results import (
    RESULTS_CSV,
    RESULTS_MD,
    StageData,
    reports_test_beside,
    results_markdown,
    study_leakage,
    warned_trials_lines,
)

INPUTS, CLASSES = 784, 10


def mlp_params(hidden: list[int]) -> int:
    """Weights and biases of an MNIST MLP with these hidden sizes."""
    dims = [INPUTS, *hidden, CLASSES]
    return sum(a * b + b for a, b in itertools.pairwise(dims))


def fake_run(with_params: bool = True):
    """Scores a config by its width (wider is better) and records its parameter count."""

    def execute(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
        hidden = list(config.model.hidden)
        score = 0.9 + 0.0001 * sum(hidden) + 0.001 * config.seed
        summary: dict[str, Any] = {"status": "completed", "test_accuracy": score, "best_val_accuracy": score}
        if with_params:
            summary["params"] = mlp_params(hidden)
        return summary

    return execute


SIZES = [[32, 32], [512, 512], [64, 64]]


def _run(tmp_path: Path, name: str, objective: str, with_params: bool = True) -> Path:
    path = write_study(tmp_path / f"{name}.yaml", {"objective": objective, "repeats": 2,
                                                   "space": {"model.hidden": SIZES}},
                       tmp_path / "runs", name=name)
    run_study(path, options=Options(echo=False), execute=fake_run(with_params))
    return tmp_path / "runs" / name


def test_tables_show_each_settings_parameter_count(tmp_path: Path) -> None:
    study_dir = _run(tmp_path, "sizes", "test_accuracy")
    rows = list(csv.DictReader((study_dir / RESULTS_CSV).open()))
    assert len(rows) == 6 and all(int(r["params"]) == mlp_params(json.loads(r["model.hidden"])) for r in rows)
    md = (study_dir / RESULTS_MD).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert header.startswith("| rank | model.hidden | params | n |")
    assert f"| 1 | [512, 512] | {mlp_params([512, 512])} | 2 |" in md  # seed B's best model: 669706
    assert mlp_params([512, 512]) == 669706
    trials = next(line for line in md.splitlines() if line.startswith("| trial"))
    assert "| params |" in trials

    study = open_study(study_dir)
    table = settings_table(study, study.stages[0])
    assert table.counted and table.columns[:4] == ["rank", "model.hidden", "params", "n"]
    assert [cells[2] for cells in table.cells()] == [str(mlp_params(h)) for h in ([512, 512], [64, 64], [32, 32])]
    exported = export(study, "md")
    assert "| rank | model.hidden | params | n |" in exported and "|---:|---|---:|---:|" in exported
    assert f"| **1** | **[512, 512]** | **{mlp_params([512, 512])}** |" in exported
    tex = export(study, "tex")
    assert r"{rlrrrrlr}" in tex and " & params & $n$ & " in tex
    assert f"\\textbf{{{mlp_params([512, 512])}}}" in tex and f" & {mlp_params([32, 32])} & 2 & " in tex
    html = build_study_report(study_dir).read_text()
    assert html.count('<th class="num">params</th>') == 2  # the settings and the trials tables
    assert html.count(f'<td class="num">{mlp_params([64, 64])}</td>') == 1 + 2  # one setting, two trials


def test_without_counts_the_column_is_left_out(tmp_path: Path) -> None:
    study_dir = _run(tmp_path, "old", "best_val_accuracy", with_params=False)
    study = open_study(study_dir)
    table = settings_table(study, study.stages[0])
    assert not table.counted and "params" not in table.columns
    assert "params" not in export(study, "md") and "params" not in export(study, "tex")
    assert "| params |" not in (study_dir / RESULTS_MD).read_text()


def test_results_and_report_carry_the_leakage_warning(tmp_path: Path) -> None:
    leaky = _run(tmp_path, "leaky", "test_accuracy")
    clean = _run(tmp_path, "clean", "best_val_accuracy")
    md = (leaky / RESULTS_MD).read_text()
    warnings = [line for line in md.splitlines() if "selects on the test set" in line]
    assert len(warnings) == 1 and warnings[0].startswith("**Warning**: ")
    assert "study.objective = test_accuracy chooses the best setting" in warnings[0]
    assert "test set" not in (clean / RESULTS_MD).read_text()
    html = build_study_report(leaky).read_text()
    assert html.count("selects on the test set") == 1 and "optimistically biased" in html
    assert "selects on the test set" not in build_study_report(clean).read_text()
    # a study stored before the warning was recorded is judged by its objective
    study = open_study(leaky)
    for stage in study.stages:
        del stage.attrs["leakage"]
    assert study_leakage(study.stages, study.metric) is not None
    assert "selects on the test set" in results_markdown(study.name, study.stages, study.metric)
    assert study_leakage(study.stages, "best_val_accuracy") is None


def test_study_command_prints_the_warning_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    real = studies.run_study

    def run_with_fake(study: Any, workers: int, options: Options, execute: Any, retry_failed: bool = False) -> Any:
        return real(study, workers=workers, options=options, execute=fake_run(), retry_failed=retry_failed)

    monkeypatch.setattr(studies, "run_study", run_with_fake)
    path = write_study(tmp_path / "cli.yaml", {"objective": "test_accuracy", "space": {"model.hidden": SIZES}},
                       tmp_path / "runs", name="cli")
    assert main(["study", str(path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("selects on the test set") == 1 and "study.objective = test_accuracy" in captured.err
    assert "test set" not in captured.out


def warning_run(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
    """Logs what a short BatchNorm run logs: its width decides whether it warns (32: yes)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = ["2026-12-07T10:00:00 run started"]
    if config.model.hidden[0] == 32:
        lines += ["2026-12-07T10:00:01 warning: BatchNorm's running statistics will still hold 64 % ...",
                  "2026-12-07T10:00:02 warning: BatchNorm's running statistics will still hold 64 % ..."]
    if config.seed == 1:
        lines.append("2026-12-07T10:00:03 warning: gradients vanish at step 10")
    (run_dir / "run.log").write_text("\n".join(lines) + "\n")
    return fake_run()(config, run_dir, callbacks, data_dir)


def test_trial_warnings_reach_the_console_the_results_and_the_report(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(tmp_path / "warned.yaml", {"objective": "best_val_accuracy", "repeats": 2,
                                                  "space": {"model.hidden": SIZES}}, tmp_path / "runs", name="warned")
    run_study(path, options=Options(echo=True), execute=warning_run)
    out = capsys.readouterr().out
    # each trial says its warnings once (the log's repeat of a line counts once)
    assert out.count("warning: BatchNorm's running statistics") == 2
    assert out.count("warning: gradients vanish at step 10") == 3
    study_dir = tmp_path / "runs" / "warned"
    md = (study_dir / RESULTS_MD).read_text()
    section = md[md.index("## Warnings raised in trials"):md.index("## Stage")]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines == ["- BatchNorm's running statistics will still hold 64 % ... (2 trials: t0000-r0, t0000-r1)",
                     "- gradients vanish at step 10 (3 trials: t0000-r1, t0001-r1, t0002-r1)"]
    page = html.unescape(build_study_report(study_dir).read_text())
    # the report shows the same lines as notes
    for line in lines:
        assert page.count(f"Trials warned: {line[2:]}") == 1
    # a study without warnings has no such section
    assert "Warnings raised in trials" not in (_run(tmp_path, "quiet", "best_val_accuracy") / RESULTS_MD).read_text()


def test_warned_trials_lines_name_the_first_trials_and_count_the_rest() -> None:
    def trial(number: int, warnings: list[str]) -> FrozenTrial:
        return optuna.trial.create_trial(value=0.5, user_attrs={"key": f"t{number:04d}-r0",
                                                                 "result": {"warnings": warnings}})

    trials = [trial(n, ["short run"] + (["lr too high"] if n == 3 else [])) for n in range(8)]
    for number, t in enumerate(trials):
        t.number = number
    stage = StageData(name="s1", study_name="x", index=0, attrs={}, trials=list(reversed(trials)))
    assert warned_trials_lines([stage], shown=6) == [
        "short run (8 trials: t0000-r0, t0001-r0, t0002-r0, t0003-r0, t0004-r0, t0005-r0 and 2 more)",
        "lr too high (1 trial: t0003-r0)"]


def test_a_study_that_chooses_on_validation_reports_each_settings_test_accuracy(tmp_path: Path) -> None:
    def execute(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
        val = 0.9 + 0.0001 * sum(config.model.hidden) + 0.001 * config.seed
        return {"status": "completed", "best_val_accuracy": val, "test_accuracy": val - 0.05 - 0.002 * config.seed}

    path = write_study(tmp_path / "val.yaml", {"objective": "best_val_accuracy", "repeats": 2,
                                               "space": {"model.hidden": SIZES}}, tmp_path / "runs", name="val")
    run_study(path, options=Options(echo=False), execute=execute)
    study = open_study(tmp_path / "runs" / "val")
    table = settings_table(study, study.stages[0])
    assert table.reported and table.columns[-2] == "test_accuracy mean ± sd"
    # [512, 512]: val 1.0024 and 1.0034 (mean 1.0029), test 0.9524 and 0.9514 over seeds 0 and 1
    assert table.cells()[0][-2] == "0.9519 ± 0.0007"
    md, tex = export(study, "md"), export(study, "tex")
    assert "| test_accuracy mean ± sd | time (s) |" in md and r"$\mathbf{0.9519 \pm 0.0007}$" in tex
    assert "{rlrrrlrr}" in tex  # one more number column
    assert "reported beside the objective; it chose nothing" in build_study_report(tmp_path / "runs" / "val").read_text()
    results = (tmp_path / "runs" / "val" / RESULTS_MD).read_text()
    assert "| vs best | test_accuracy mean ± sd |" in results and "| 0.9519 ± 0.000707 |" in results
    # a study that chooses on the test split has no second column of it
    chosen_on_test = open_study(_run(tmp_path, "on-test", "test_accuracy"))
    assert not settings_table(chosen_on_test, chosen_on_test.stages[0]).reported
    assert "test_accuracy mean" not in (tmp_path / "runs" / "on-test" / RESULTS_MD).read_text()
    assert reports_test_beside("best_val_accuracy") and not reports_test_beside("test_loss")
