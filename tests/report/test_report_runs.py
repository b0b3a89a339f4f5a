"""Reports of real runs from both engines, and of runs that failed, were killed or have no
predictions: every report is written, and says what is missing instead of crashing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.report.conftest import CIFAR, ReportRuns
from trainlab import api
from trainlab.cli import main
from trainlab.data import prepare_data
from trainlab.errors import RunDirError
from trainlab.report.artifacts import load_artifacts
from trainlab.report.images import load_run_data
from trainlab.report.run_report import RunReport
from trainlab.run_files import REPORT_IMAGES_FILE

SECTIONS = ("overview", "curves", "confusion", "top-losses", "calibration", "weights", "monitors", "data",
            "model", "config", "environment", "log")


def _report(path: Path) -> str:
    return (path / "report.html").read_text(encoding="utf-8")


def _figures(path: Path) -> set[str]:
    return {p.stem for p in (path / "figures").glob("*.png")}


def test_every_report_has_every_section(report_runs: ReportRuns) -> None:
    for name, path in report_runs.all().items():
        text = _report(path)
        for anchor in SECTIONS:
            assert f'<section id="{anchor}">' in text, (name, anchor)
            assert f'href="#{anchor}"' in text, (name, anchor)


def test_reports_are_self_contained(report_runs: ReportRuns) -> None:
    for path in report_runs.all().values():
        text = _report(path)
        assert "<script" not in text
        assert not re.search(r"""(src|href)=["']https?://""", text)
        assert not re.search(r"@import|url\(", text)
        srcs = re.findall(r'<img src="([^"]+)"', text)
        assert srcs and all(src.startswith("data:image/png;base64,") for src in srcs)


def test_numpy_mlp_report(report_runs: ReportRuns) -> None:
    path = report_runs.mlp
    expected = {"learning_curves", "confusion_before", "confusion_after", "class_scores", "reliability",
                "top_losses", "weight_templates", "layer_norms", "class_counts", "samples"}
    assert expected <= _figures(path)
    for stem in expected:
        assert (path / "figures" / f"{stem}.svg").stat().st_size > 0
    text = _report(path)
    assert "Run report: mlp/a" in text
    assert "Gradient check" in text and "0.W" in text
    assert "Expected calibration error" in text
    assert "before training" in text and "no predictions_initial.npz" not in text
    assert "the first 30 units" in text  # an MLP's first layer has more units than classes


def test_early_stopping_point_is_marked(report_runs: ReportRuns) -> None:
    run = api.open_run(report_runs.mlp)
    assert run.summary["status"] == "stopped_early"
    text = _report(report_runs.mlp)
    assert "The dash-dot line marks the best evaluation (step 10)." in text
    assert "best step (early stopping)" in text


def test_linear_report_has_one_template_per_class(report_runs: ReportRuns) -> None:
    text = _report(report_runs.linear)
    assert "one template per class" in text
    assert "no predictions_initial.npz" in text  # removed by the fixture: said, not hidden
    assert "airplane" in text


def test_torch_report(report_runs: ReportRuns) -> None:
    path = report_runs.torch_cnn
    assert {"augmentation", "weight_templates", "confusion_after", "layer_norms"} <= _figures(path)
    text = _report(path)
    assert "Total params" in text  # model_summary.txt
    assert "filters of the first conv layer" in text
    assert "fp32" in text and "CPU threads" in text


def test_failed_run_report_says_so(report_runs: ReportRuns) -> None:
    text = _report(report_runs.failed)
    assert 'class="note banner error"' in text
    assert "The run failed." in text
    assert "The loss became nan" in text  # the error, from summary.json
    assert "not available: no predictions.npz" in text


def test_killed_run_report_says_so(report_runs: ReportRuns) -> None:
    text = _report(report_runs.killed)
    assert "no summary.json" in text
    assert 'class="note banner warning"' in text
    assert "not available" in text
    assert "learning_curves" in _figures(report_runs.killed)


def test_run_without_predictions(report_runs: ReportRuns) -> None:
    path = report_runs.no_predictions
    text = _report(path)
    assert "not available: no predictions.npz in the run directory" in text
    assert {"learning_curves", "layer_norms", "weight_templates"} <= _figures(path)
    assert "confusion_after" not in _figures(path)


def test_log_text_is_escaped(report_runs: ReportRuns, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(report_runs.failed, run)
    with open(run / "run.log", "a", encoding="utf-8") as handle:
        handle.write("2026-01-01T00:00:00 warning: <script>alert(1)</script> & <b>bold</b>\n")
    text = api.write_report(run).read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text


def test_missing_dataset_is_a_note(report_runs: ReportRuns, tmp_path: Path) -> None:
    run = tmp_path / "run"  # a run from before report_images.npz: its report reads the dataset
    shutil.copytree(report_runs.linear, run, ignore=shutil.ignore_patterns("figures", "report.html",
                                                                           REPORT_IMAGES_FILE))
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["data"]["dataset"] = str(tmp_path / "no-such-dataset")
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    text = api.write_report(run).read_text(encoding="utf-8")
    assert "the dataset could not be loaded on this machine" in text
    assert "confusion_after" in _figures(run)  # predictions need no images
    assert "top_losses" not in _figures(run)


def _bare_run(path: Path) -> Path:
    """A run directory with a config only (numpy engine, a dataset that is not there)."""
    path.mkdir()
    config = {"name": "bare", "engine": "numpy", "data": {"dataset": str(path / "no-such-dataset")}}
    (path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_empty_or_truncated_npz_files_are_notes(tmp_path: Path) -> None:
    run = _bare_run(tmp_path / "run")
    (run / "predictions.npz").write_bytes(b"")  # np.load: EOFError
    for name in ("predictions_initial.npz", REPORT_IMAGES_FILE):  # np.load: zipfile.BadZipFile
        np.savez(run / name, probabilities=np.full((4, 2), 0.5, np.float32))
        whole = (run / name).read_bytes()
        (run / name).write_bytes(whole[: len(whole) // 2])
    art = load_artifacts(run)
    assert art.predictions is None and art.initial_predictions is None
    assert art.notes["predictions"].startswith("predictions.npz could not be read")
    # A compressed member with a damaged deflate stream: zlib.error from np.load.
    np.savez_compressed(run / "predictions.npz", probabilities=np.linspace(0, 1, 2000, dtype=np.float32))
    damaged = bytearray((run / "predictions.npz").read_bytes())
    damaged[60:90] = bytes(b ^ 0x5A for b in damaged[60:90])  # inside the member's compressed data
    (run / "predictions.npz").write_bytes(bytes(damaged))
    assert load_artifacts(run).notes["predictions"].startswith("predictions.npz could not be read")
    assert art.notes["initial_predictions"].startswith("predictions_initial.npz could not be read")
    report = RunReport(art)
    assert report.images is None and report.data_note.startswith(f"{REPORT_IMAGES_FILE} could not be read")


def test_gradcheck_hint_names_save(tmp_path: Path) -> None:
    report = RunReport(load_artifacts(_bare_run(tmp_path / "run")))
    hints = [block.text for block in report.monitors().blocks if "gradient check" in block.text]
    assert hints == ["No gradient check was saved with this run (trainlab gradcheck CONFIG --save RUN_DIR adds one)."]


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirError):
        api.write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == RunDirError.exit_code


def test_split_indices_match_prepare_data(report_runs: ReportRuns, real_data: Path) -> None:
    config = yaml.safe_load((report_runs.linear / "config.yaml").read_text(encoding="utf-8"))
    data = load_run_data(config)
    prepared = prepare_data("cifar10", limit=CIFAR["limit"], normalize="none", seed=0)
    assert np.array_equal(data.raw.y_train[data.train_idx], prepared.y_train)
    assert np.array_equal(data.raw.y_train[data.val_idx], prepared.y_val)
    assert np.array_equal(data.test_labels(), prepared.y_test)
    first = data.test_image(0).transpose(2, 0, 1)  # (C, H, W)
    assert np.array_equal(first, prepared.x_test[0].astype(np.uint8))


def test_report_command(report_runs: ReportRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(report_runs.failed, run, ignore=shutil.ignore_patterns("figures", "report.html"))
    assert main(["report", str(run)]) == 0
    assert "The run failed." in (run / "report.html").read_text(encoding="utf-8")  # the failed run's own report
    assert "report:" in capsys.readouterr().out


def test_data_show_command(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnist.png"
    assert main(["data", "show", "mnist", "--out", str(out), "--per-class", "4"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "show", "mnist", "--out", str(tmp_path / "x.gif")]) == 2


def test_diverged_predictions_are_a_note(report_runs: ReportRuns, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(report_runs.failed, run, ignore=shutil.ignore_patterns("figures", "report.html"))
    probabilities = np.full((5, 10), np.nan, dtype=np.float32)
    np.savez(run / "predictions.npz", probabilities=probabilities, labels=np.arange(5))
    text = api.write_report(run).read_text(encoding="utf-8")
    assert "NaN or infinite probabilities" in text
