"""The README's examples run as written: its config is the file it names, its Python blocks run
(on real data, in a scratch folder), and every `trainlab ...` command line it shows parses
as the CLI would parse it (commands, option types and choices, argument counts), each
alternative it lists, without running anything."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer import _click as click  # typer's own copy of click, as trainlab.cli_common uses

from trainlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _command_lines() -> list[str]:
    """``trainlab ...`` lines of the bash blocks and the indented examples, comments cut."""
    lines = [line for block in _blocks("bash") for line in block.splitlines()]
    lines += [line[4:] for line in README.splitlines() if line.startswith("    trainlab ")]
    commands = []
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line.strip())
        if line.startswith(("trainlab ", ".venv/bin/trainlab ")) or " .venv/bin/trainlab " in line:
            commands.append(line[line.index("trainlab "):])
    return commands


PLACEHOLDERS = {"N": "2"}  # a README placeholder that must parse as its option's type


def _variants(command: str) -> list[list[str]]:
    """Every argument list a README command line stands for.

    ``group a | b X | c Y`` is ``group a``, ``group b X`` and ``group c Y``; an ``a|b`` word is
    tried at each choice (the other words at their first); optional ``[...]`` parts are tried
    all left out and all given. Placeholders that must be numbers get one (PLACEHOLDERS).
    """
    segments = [shlex.split(part) for part in command.split(" | ")]
    first = segments[0][1:]  # without "trainlab"
    lines = [first] + [first[:-1] + rest for rest in segments[1:]]
    variants: list[list[str]] = []
    for words in lines:
        for with_optional in (False, True):
            kept: list[str] = []
            optional = False
            for word in words:
                if word.startswith("["):
                    optional = True
                if with_optional or not optional:
                    kept.append(PLACEHOLDERS.get(word.strip("[]"), word.strip("[]")))
                if word.endswith("]"):
                    optional = False
            choices = [i for i, word in enumerate(kept) if "|" in word]
            base = [word.split("|")[0] for word in kept]
            variants.append(base)
            for i in choices:
                for choice in kept[i].split("|")[1:]:
                    variants.append([*base[:i], choice, *base[i + 1:]])
    unique: list[list[str]] = []
    for argv in variants:
        if argv not in unique:
            unique.append(argv)
    return unique


def _is_group(command: click.Command) -> bool:
    return hasattr(command, "resolve_command")  # typer's groups are not click.core.Group


def _parse_only(argv: list[str]) -> click.Command:
    """Parse ``argv`` down to the command it runs, as ``trainlab`` would (option types and
    choices, argument counts, a study file routed to ``study run``), without running it."""
    command = typer.main.get_command(app)
    assert _is_group(command)
    context = command.make_context("trainlab", list(argv))
    while _is_group(command):
        name, command, rest = command.resolve_command(context, [*context._protected_args, *context.args])
        assert command is not None, argv
        context = command.make_context(name, rest, parent=context)
    return command


def test_the_config_shown_is_the_file_it_names() -> None:
    (block,) = [b for b in _blocks("yaml") if b.startswith("# configs/examples/mnist-mlp-numpy.yaml\n")]
    assert block.split("\n", 1)[1] == (ROOT / "configs/examples/mnist-mlp-numpy.yaml").read_text()


@pytest.mark.parametrize("command", _command_lines())
def test_every_command_line_parses(command: str) -> None:
    for argv in _variants(command):
        assert not _is_group(_parse_only(argv)), argv  # down to a command, not a bare group


def test_variants_cover_alternatives_choices_and_optional_parts() -> None:
    assert _variants("trainlab data list | info NAME | show NAME") == [
        ["data", "list"], ["data", "info", "NAME"], ["data", "show", "NAME"]]
    assert _variants("trainlab compare A B --out DIR [--x epoch|step]") == [
        ["compare", "A", "B", "--out", "DIR"], ["compare", "A", "B", "--out", "DIR", "--x", "epoch"],
        ["compare", "A", "B", "--out", "DIR", "--x", "step"]]
    assert _variants("trainlab study S.yaml [--workers N]")[-1] == ["study", "S.yaml", "--workers", "2"]


def test_a_wrong_option_value_or_command_is_caught() -> None:
    with pytest.raises(click.exceptions.UsageError):
        _parse_only(["run", "FILE", "--no-such-option"])
    with pytest.raises(click.exceptions.UsageError):
        _parse_only(["study", "S.yaml", "--workers", "N"])
    with pytest.raises(click.exceptions.UsageError):
        _parse_only(["data", "nope", "NAME"])


@pytest.mark.usefixtures("real_data")
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_every_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxscript")  # the quick start exports to ONNX (the export extra)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    code = _blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    assert os.listdir(tmp_path / "runs")  # it trained
