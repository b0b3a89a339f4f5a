"""The command line: exit codes, messages without tracebacks, the config and data commands."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from rich.text import Text
from typer import _click as click

from tests.helpers import write_config
from trainlab.cli import app, main
from trainlab.cli_common import close_commands, echo, print_error

EXAMPLES = sorted(Path(__file__).resolve().parents[1].glob("configs/examples/*.yaml"))


def test_validate_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert EXAMPLES, "no example configs"
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    assert capsys.readouterr().out.count("ok") == len(EXAMPLES)


SHIPPED = sorted(Path(__file__).resolve().parents[1].glob("configs/seed-*/*.yaml"))


def test_validate_every_shipped_run_and_study_file(capsys: pytest.CaptureFixture[str]) -> None:
    """Every seed config validates; study files are checked as studies (search paths and all)."""
    assert len(SHIPPED) > 30
    assert main(["validate", *map(str, SHIPPED)]) == 0
    assert capsys.readouterr().out.count("ok") == len(SHIPPED)


def test_validate_study_file_names_bad_search_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "study.yaml"
    bad.write_text("name: s\nengine: numpy\ndata: {dataset: mnist}\nmodel: {type: mlp, hidden: [10]}\n"
                   "study: {objective: test_accuracy, space: {model.hiden: [[4], [8]]}}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "study.space" in err and "model.hiden" in err and "hidden" in err


def test_validate_applies_the_engine_rules_run_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config every field of which is valid, but that the torch engine cannot build, fails
    ``validate`` as it would fail ``run``; so does a study whose base it is."""
    even = tmp_path / "even.yaml"
    even.write_text("name: x\nengine: torch\ndata: {dataset: mnist}\nmodel: {type: cnn, conv: "
                    "[{filters: [8], kernel: 4, padding: same}]}\n")
    study = tmp_path / "study.yaml"
    study.write_text(even.read_text() + "study: {objective: test_accuracy, space: {optimizer.lr: [0.1, 0.01]}}\n")
    for path in (even, study):
        assert main(["validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert "model.conv[0].padding" in err and "odd kernel" in err, err


def test_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nengine: numpy\ndata: {dataset: mnist}\nmodel: {type: mlp, hidden: [10]}\n"
                   "train: {epoch: 3}\n")
    proc = subprocess.run([sys.executable, "-m", "trainlab.cli", "run", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "train.epoch" in proc.stderr and "epochs" in proc.stderr and "bad.yaml" in proc.stderr


def test_yaml_syntax_error_names_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "syntax.yaml"
    bad.write_text("name: x\nmodel: [unclosed\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "syntax.yaml" in err and "line" in err


def test_config_show_applies_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    assert main(["config", "show", str(cfg), "--set", "train.epochs=7", "--set", "optimizer.lr=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 7" in out and "0.001" in out


def test_config_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main(["config", "schema", "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    assert {"data", "model", "optimizer", "train"} <= set(schema["properties"])


def test_data_list_and_info(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    assert "cifar10" in capsys.readouterr().out
    assert main(["data", "info", "mnist", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "mnist"
    assert info["counts"] == {"train": 60_000, "test": 10_000}
    assert (info["per_class"]["train"]["1"], info["per_class"]["test"]["5"]) == (6742, 892)
    assert (info["num_classes"], info["image_shape"], info["dtype"]) == (10, [28, 28, 1], "uint8")
    # MNIST's well-known statistics, as fractions of 255 (the torchvision Normalize constants)
    assert [round(v, 4) for v in info["train_mean"]] == [0.1307]
    assert [round(v, 4) for v in info["train_std"]] == [0.3081]


def test_missing_dataset_exit_code_and_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "trainlab data fetch cifar10" in err and str(tmp_path) in err


def test_run_and_refuse_existing(real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 100})
    assert main(["run", str(cfg), "--run-id", "r", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "t" / "r" / "summary.json").is_file()
    assert main(["run", str(cfg), "--run-id", "r", "--no-progress"]) == 4
    assert "--resume" in capsys.readouterr().err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "validate", "config", "data"):
        assert command in out


@pytest.mark.parametrize(("typed", "suggested"), [
    ("trian", "'run'"),  # there is no train command: its alias and the typo lead to run
    ("train", "'run'"),
    ("stduy", "'study'"),
    ("evalute", "'evaluate'"),
    ("eval", "'evaluate'"),
])
def test_unknown_command_suggests_the_closest(typed: str, suggested: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([typed]) == 2
    assert f"No such command '{typed}'. Did you mean {suggested}" in capsys.readouterr().err


def test_unknown_command_without_a_close_one_suggests_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xyzzy"]) == 2
    err = capsys.readouterr().err
    assert "No such command 'xyzzy'." in err and "Did you mean" not in err


def test_close_commands_maps_aliases_and_drops_repeats() -> None:
    commands = ["run", "report", "study", "status"]
    assert close_commands("trian", commands, {"train": "run", "tune": "study"}) == ["run"]
    assert close_commands("run", commands, {"rnu": "run"}) == ["run"]
    assert close_commands("statsu", commands) == ["status"]
    assert close_commands("nothing", commands, {"fit": "missing"}) == []


def test_study_subcommand_typo_is_not_taken_for_a_study_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "stauts"]) == 2
    assert "No such command 'stauts'. Did you mean 'status'?" in capsys.readouterr().err
    assert main(["study", "missing-study.yaml"]) == 2  # a file name: run's own error
    assert "missing-study.yaml" in capsys.readouterr().err


STUDY_FILE = Path(__file__).resolve().parents[1] / "configs" / "demo" / "study.yaml"


@pytest.mark.parametrize("file", [str(STUDY_FILE), "not-there.yaml"])
def test_study_file_help_is_the_help_of_study_run(file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", file, "--help"]) == 0
    out = capsys.readouterr().out
    assert "trainlab study run [OPTIONS]" in out and "--workers" in out


def test_study_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--help"]) == 0
    out = capsys.readouterr().out
    assert "trainlab study [OPTIONS] COMMAND" in out and "--workers" not in out
    for command in ("run", "status"):
        assert f"│ {command} " in out


def _help_texts(command: click.Command, path: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every help text of ``command`` and its subcommands."""
    yield path, command.help or ""
    for param in command.params:
        yield f"{path} {param.name}", getattr(param, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, f"{path} {name}")


def test_help_texts_keep_their_brackets() -> None:
    """Help is rich markup: 'trainlab[export]' must be written 'trainlab\\[export]' to show."""
    for where, text in _help_texts(typer.main.get_command(app), "trainlab"):
        assert Text.from_markup(text).plain == text.replace("\\[", "["), where


def test_echo_and_print_error_print_markup_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    echo("--set optimizer.type=[adam] [bold]x[/bold]")
    print_error("malformed key '[x]' in [red]")
    captured = capsys.readouterr()
    assert captured.out == "--set optimizer.type=[adam] [bold]x[/bold]\n"
    assert captured.err == "error: malformed key '[x]' in [red]\n"
