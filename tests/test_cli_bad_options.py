"""Bad option values and contradictory options at the command line: exit 2 with one line that
says what to give, never a traceback (found by trying bad inputs as a new user would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_config
from trainlab.cli import main

pytestmark = pytest.mark.usefixtures("real_data")

SMALL = {"dataset": "mnist", "limit": {"train": 200, "val": 100, "test": 100}, "normalize": "scale"}


def _finished_run(tmp_path: Path) -> Path:
    """A two-step MNIST run trained through the CLI into tmp_path/runs/t/r."""
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", data=SMALL, train={"steps": 2, "batch_size": 50})
    assert main(["run", str(config), "--run-id", "r", "--no-progress"]) == 0
    return tmp_path / "runs" / "t" / "r"


@pytest.mark.parametrize(("options", "message"), [
    (["--entries", "-1"], "--entries: 0 (every entry) or more"),
    (["--batch-size", "0"], "--batch-size: at least 1 example"),
    (["--eps", "0"], "--eps: a finite step above 0"),
    (["--eps", "nan"], "--eps: a finite step above 0"),
    (["--threshold", "-1"], "--threshold: a finite relative error of 0 or more"),
])
def test_gradcheck_refuses_options_it_cannot_check_with(options: list[str], message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", data=SMALL)
    assert main(["gradcheck", str(config), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("per_class", ["0", "-2", "51"])
def test_data_show_needs_a_sensible_number_per_class(per_class: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "show", "mnist", "--out", str(tmp_path / "s.png"), "--per-class", per_class]) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "s.png").exists()


def test_data_show_refuses_a_strip_too_wide_from_python_too(tmp_path: Path) -> None:
    from trainlab.errors import ConfigError
    from trainlab.report import dataset_figure

    with pytest.raises(ConfigError, match="--per-class: 1 to 50 images per class"):
        dataset_figure("mnist", tmp_path / "s.png", per_class=0)


def test_resume_and_overwrite_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _finished_run(tmp_path)
    before = (run_dir / "summary.json").read_text()
    assert main(["run", "--resume", str(run_dir), "--overwrite", "--no-progress"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert (run_dir / "summary.json").read_text() == before  # neither resumed nor started again


def test_compare_needs_two_different_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = str(_finished_run(tmp_path))
    for runs in ([run_dir], [run_dir, run_dir]):
        assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 2
        assert "two or more different run directories" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_both_lengths_say_how_to_drop_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", data=SMALL)
    assert main(["validate", str(config)]) == 0
    assert main(["run", str(config), "--set", "train.steps=5", "--no-progress"]) == 2
    assert "--set train.epochs=null" in capsys.readouterr().err


def test_a_run_directory_given_as_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _finished_run(tmp_path)
    assert main(["run", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "a folder, not a config file" in err and f"--resume {run_dir}" in err
    assert main(["validate", str(tmp_path)]) == 2
    printed = capsys.readouterr()
    assert "a folder, not a config file" in printed.out + printed.err


def test_a_run_directory_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path / "nosuch")]) == 4
    assert "nosuch does not exist" in capsys.readouterr().err


def test_a_run_without_a_checkpoint_is_refused_before_its_data_is_read(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run_dir = _finished_run(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")  # no model.json either
    capsys.readouterr()
    assert main(["export", str(bare), "--format", "torchscript"]) == 4
    err = capsys.readouterr().err
    assert "no checkpoint.npz, so there is no trained model to load" in err
    assert "preparing its dataset" not in err
