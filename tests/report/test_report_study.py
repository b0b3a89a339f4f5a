"""Study reports and comparisons of tiny real studies (MNIST subsets, one CPU thread).

One study searches a categorical and a numeric parameter with repeats (verdicts, a bar chart,
a log-axis scatter, fANOVA); another has trials that fail (a NaN loss). Both reports, and a
comparison of runs, are also opened in headless Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.report.test_report_browser import _open
from tests.studies.conftest import write_study
from trainlab.api import run_study
from trainlab.cli import main
from trainlab.report import study_figures as sfigs
from trainlab.report.study_data import is_study_dir, open_study
from trainlab.report.study_report import build_study_report
from trainlab.report.study_tables import export, tex_escape
from trainlab.studies import Options

pytestmark = pytest.mark.usefixtures("real_data")
STUDY_SECTIONS = ["overview", "settings", "trials", "best", "parameters", "curves", "importance", "export"]


@dataclass
class Studies:
    """The module's study directories, each with its report written."""

    mixed: Path  # model.hidden (categorical) x optimizer.lr (log-uniform), 4 settings x 2 repeats
    failing: Path  # optimizer.lr 0.1 or 1e9: the second fails with a NaN loss


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studies]:
    """Run both studies once for the module and write their reports."""
    root = tmp_path_factory.mktemp("report-studies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLAB_NUM_THREADS", "1")
        mixed = write_study(root / "mixed.yaml", {
            "sampler": "random", "n_trials": 4, "repeats": 2,
            "space": {"model.hidden": [[8], [16]], "optimizer.lr": {"loguniform": [0.01, 0.5]}}},
            root / "runs", name="mixed", train={"epochs": 2, "batch_size": 50})
        failing = write_study(root / "failing.yaml", {"space": {"optimizer.lr": [0.1, 1.0e9]}, "repeats": 2},
                              root / "runs", name="failing", train={"epochs": 1, "batch_size": 50},
                              model={"type": "mlp", "hidden": [32]},
                              data={"dataset": "mnist", "limit": {"train": 2000, "val": 200, "test": 200},
                                    "normalize": "scale"})
        for path in (mixed, failing):
            run_study(path, options=Options(echo=False))
    found = Studies(root / "runs" / "mixed", root / "runs" / "failing")
    for path in (found.mixed, found.failing):
        build_study_report(path)
    yield found


def test_study_report_of_categorical_and_numeric_parameters(studies: Studies) -> None:
    html = (studies.mixed / "report.html").read_text()
    figures = {p.name for p in (studies.mixed / "figures").glob("*.png")}
    assert {"best_run_curves.png", "trial_curves.png", "param_main_model_hidden.png",
            "param_main_optimizer_lr.png", "importance_main.png"} <= figures
    assert all((studies.mixed / "figures" / f.replace(".png", ".svg")).exists() for f in figures)
    assert "Study report: mixed" in html and "8 of 8 trials complete" in html
    for section in STUDY_SECTIONS:
        assert f'<section id="{section}">' in html
    assert "fANOVA" in html and "could not" not in html and 'id="fig-importance_main"' in html
    study = open_study(studies.mixed)
    (stage,) = study.stages
    settings = study.ranked(stage)
    assert len(settings) == 4 and all(s.spread.n == 2 for s in settings)
    assert settings[0].verdict is not None and settings[0].verdict.verdict == "best"
    # the settings table is sorted by the objective, as results.md is (read in its own section:
    # the overview names the best mean too)
    table = html.split('<section id="settings">', 1)[1].split("</section>", 1)[0]
    positions = [table.index(f"{s.spread.mean:.4f}") for s in settings]
    assert positions == sorted(positions)
    assert [s.spread.mean for s in settings] == sorted((s.spread.mean for s in settings), reverse=True)


def test_trial_curves_legend_names_each_parameter(studies: Studies) -> None:
    svg = (studies.mixed / "figures" / "trial_curves.svg").read_text(encoding="utf-8")
    assert "model.hidden=[" in svg and "optimizer.lr=0." in svg  # issue 27: not bare values


def test_export_md_and_tex(studies: Studies) -> None:
    study = open_study(studies.mixed)
    md = export(study, "md").splitlines()
    header = next(line for line in md if line.startswith("| rank"))
    assert header == ("| rank | model.hidden | optimizer.lr | params | n | best_val_accuracy mean ± sd | 95 % CI "
                      "| vs best | test_accuracy mean ± sd | time (s) |")  # chosen on val: test reported beside
    rows = [line for line in md if line.startswith("| ") and line is not header and "---" not in line]
    assert len(rows) == 4 and rows[0].startswith("| **1** |") and "**best**" in rows[0]
    assert " ± " in rows[1] and " – " in rows[1]  # mean ± sd and the 95 % interval
    # the parameter count of each setting's MNIST MLP (784 -> hidden -> 10), seed B's table 2
    counts = {"[8]": 784 * 8 + 8 + 8 * 10 + 10, "[16]": 784 * 16 + 16 + 16 * 10 + 10}
    for row in rows:
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
        assert int(cells[3]) == counts[cells[1]]
    tex = export(study, "tex")
    assert tex.count(r"\begin{tabular}") == 1 and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\pm" in tex and r"\mathbf{" in tex and r"95\,\% CI" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert body.count(r"\\") == 4  # one line per setting
    assert tex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"
    with pytest.raises(ValueError):
        export(study, "csv")


def test_cli_report_dispatches_and_exports(studies: Studies, capsys: pytest.CaptureFixture[str]) -> None:
    assert is_study_dir(studies.mixed) and not is_study_dir(studies.mixed / "t0000-r0")
    assert main(["report", str(studies.mixed), "--format", "md", "--trials", "t0000-r0,t0001-r1"]) == 0
    out = capsys.readouterr().out
    assert "| rank |" in out and "report.html" in out
    assert (studies.mixed / "table.md").read_text().startswith("**Study mixed")
    html = (studies.mixed / "report.html").read_text()
    curves = html.split('<section id="curves">', 1)[1].split("</section>", 1)[0]
    assert "the trials given with --trials" in curves
    legend = (studies.mixed / "figures" / "trial_curves.svg").read_text(encoding="utf-8")
    assert set(re.findall(r"t\d{4}-r\d", legend)) == {"t0000-r0", "t0001-r1"}  # those two only
    assert main(["report", str(studies.mixed), "--trials", "t9999"]) == 2
    assert "t9999" in capsys.readouterr().err
    assert main(["report", str(studies.mixed), "--format", "csv"]) == 2
    assert main(["report", str(studies.mixed / "t0000-r0"), "--format", "md"]) == 2
    capsys.readouterr()


def test_study_with_failed_trials_reports_them(studies: Studies) -> None:
    html = (studies.failing / "report.html").read_text()
    assert "2 of 4 trials complete, 2 failed" in html
    assert html.count("<td>failed</td>") == 2
    trials = html.split('<section id="trials">', 1)[1].split("</section>", 1)[0]
    assert trials.count("the loss became nan") == 2  # the error of each failed trial
    assert (studies.failing / "figures" / "param_main_optimizer_lr.png").exists()  # 1e9: a bar-less value
    assert "one parameter was searched" in html
    assert "this section could not be built" not in html


def test_numeric_and_categorical_figures() -> None:
    points = [sfigs.Point(1e-3, 0.5), sfigs.Point(1e-1, 0.7), sfigs.Point(1e-2, 0.4, "PRUNED"),
              sfigs.Point(3e-2, None, "FAIL"), sfigs.Point(2e-2, None, "RUNNING"), sfigs.Point(5e-2, None, "WAITING"),
              sfigs.Point(4e-2, None, "PRUNED")]  # the last three have no value yet: not drawn, not failed
    fig = sfigs.numeric_effect("optimizer.lr", points, "val acc", log=True, best=1e-1)
    assert fig is not None and fig.axes[0].get_xscale() == "log"
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("pruned (1") for label in labels) and "failed (1)" in labels
    assert "best setting" in labels
    (ticks,) = fig.axes[0].get_lines()
    assert list(ticks.get_xdata()) == [3e-2]
    assert sfigs.numeric_effect("optimizer.lr", points[4:], "val acc", log=True) is None  # nothing to draw
    bars = [sfigs.Bar("a", 0.6, 0.55, 0.65, 2, "best"), sfigs.Bar("b", 0.58, 0.5, 0.66, 2, "tie"),
            sfigs.Bar("c", 0.3, 0.28, 0.32, 2, "worse"), sfigs.Bar("d", None)]
    fig = sfigs.categorical_effect("bn", bars, "test accuracy")
    ax = fig.axes[0]
    assert len(ax.patches) == 3 and ax.get_ylim()[0] == 0.0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["best mean", "not distinguishable from the best", "worse than the best"]


def test_compare_two_runs(studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = studies.mixed / "t0000-r0", studies.mixed / "t0001-r0"
    failed = studies.failing / "t0001-r0"
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), str(failed), "--out", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out.replace("\n", "")
    html = (out / "report.html").read_text()
    assert "Comparison of 3 runs" in html and "mixed/t0000-r0" in html and "failing/t0001-r0" in html
    assert "optimizer.lr" in html and "not finished" in html and "The run failed." in html
    assert (out / "figures" / "compare_curves.png").exists()
    assert main(["compare", str(a), str(tmp_path / "nowhere")]) == 4


def _check(browser: Any, report: Path, sections: list[str], shot: Path) -> Any:
    context, page, problems = _open(browser, report, 1280, 900)
    try:
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.naturalWidth])")
        assert images and not [alt for alt, width in images if width == 0], images
        assert not problems, problems
        found = page.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => s.id)")
        assert found == sections
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        return page.inner_text("#status")
    finally:
        context.close()


def test_study_and_compare_reports_in_chromium(browser: Any, studies: Studies,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    shots = tmp_path_factory.mktemp("study-report-screenshots")
    assert "8 of 8 trials complete" in _check(browser, studies.mixed / "report.html", STUDY_SECTIONS,
                                              shots / "mixed.png")
    assert "2 failed" in _check(browser, studies.failing / "report.html", STUDY_SECTIONS, shots / "failing.png")
    out = shots / "compare"
    assert main(["compare", str(studies.mixed / "t0000-r0"), str(studies.failing / "t0001-r0"),
                 "--out", str(out)]) == 0
    _check(browser, out / "report.html", ["runs", "curves", "config"], shots / "compare.png")
    print(f"study report screenshots: {shots}")
