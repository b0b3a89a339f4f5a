"""The README's examples run as written: its config is the file it names, its Python blocks run
(on real data, in a scratch folder), and every `trainlab ...` command line it shows parses
(command and options exist; checked with --help, which stops before any work)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from trainlab.cli import main

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


def _argv(command: str) -> list[str]:
    """The arguments up to a ``|`` between alternatives, optional ``[...]`` parts left out and
    ``a|b`` choices taken at their first."""
    words = []
    for word in shlex.split(command)[1:]:
        if word == "|":
            break
        if word.startswith("[") and not word.startswith("[-") and "=" not in word:
            continue
        word = word.strip("[]") if word.startswith("[-") else word
        words.append(word.split("|")[0])
    return words


def test_the_config_shown_is_the_file_it_names() -> None:
    (block,) = [b for b in _blocks("yaml") if b.startswith("# configs/examples/mnist-mlp-numpy.yaml\n")]
    assert block.split("\n", 1)[1] == (ROOT / "configs/examples/mnist-mlp-numpy.yaml").read_text()


@pytest.mark.parametrize("command", _command_lines())
def test_every_command_line_parses(command: str) -> None:
    assert main([*_argv(command), "--help"]) == 0, command


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
