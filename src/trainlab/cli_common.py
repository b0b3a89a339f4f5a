"""What the ``trainlab`` command modules share: the consoles, the common options, printing that
keeps user text verbatim, and the command group that suggests a command for a mistyped one.

Rich reads ``[word]`` in a printed string as console markup and drops it, so a message that
holds text a user typed (``--set optimizer.type=[adam]``), a path or a config value is printed
with :func:`echo` (markup off), styled only through :func:`labelled`, never by formatting it
into a markup string.
"""

from __future__ import annotations

from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from rich.console import Console
from rich.text import Text
from typer import _click as click
from typer.core import TyperGroup

console = Console()
err_console = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: --set train.epochs=3 (YAML-typed value)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Dataset folder (default: the config's data.data_dir, for commands that "
                 "read a config; else $TRAINLAB_DATA; else ~/.cache/trainlab/data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def labelled(label: str, style: str, message: object) -> Text:
    """``label message`` with the label in ``style`` and the message verbatim, [brackets] and all."""
    return Text.assemble((label, style), " ", str(message))


def echo(message: object, *, stderr: bool = False, highlight: bool = True) -> None:
    """Print ``message`` (a string, or Text from :func:`labelled`) with console markup off.

    Args:
        message: what to print; a string is shown exactly as it is.
        stderr: print on standard error instead of standard output.
        highlight: let rich colour numbers and paths (it never changes the text).
    """
    target = err_console if stderr else console
    shown = message if isinstance(message, Text) else str(message)
    target.print(shown, markup=False, highlight=highlight, soft_wrap=True)


def print_error(error: object) -> None:
    """Print ``error: MESSAGE`` on standard error, the message exactly as the error says it."""
    echo(labelled("error:", "red", error), stderr=True, highlight=False)


def close_commands(word: str, commands: list[str], aliases: dict[str, str] | None = None) -> list[str]:
    """The commands that ``word`` was probably meant to be, closest first (at most three).

    Args:
        word: what the user typed in place of a command.
        commands: the group's command names.
        aliases: words users try for a command (``train``) mapped to its name (``run``); a word
            close to an alias suggests the command it names.

    Returns:
        Command names, without repeats; empty when nothing is close.
    """
    aliases = {alias: name for alias, name in (aliases or {}).items() if name in commands}
    matches = get_close_matches(word, [*commands, *aliases], n=3)
    return list(dict.fromkeys(aliases.get(match, match) for match in matches))


class SuggestingGroup(TyperGroup):
    """A command group whose "No such command" error suggests the closest commands.

    Typer suggests only names close to the typo; this group also knows :attr:`aliases`, the
    words people try for a command (``trainlab train`` or ``trainlab trian``: did you mean
    ``run``?).
    """

    #: Words users type for a command, mapped to the command's name.
    aliases: ClassVar[dict[str, str]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.suggest_commands = False  # resolve_command below suggests, aliases included

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command named by ``args[0]``; a usage error naming the closest commands when none is."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError as error:
            typed = args[0] if args else ""
            matches = [] if typed.startswith("-") else close_commands(typed, list(self.commands), self.aliases)
            if matches and not ctx.resilient_parsing:
                error.message = (f"{error.message.rstrip('.')}. Did you mean "
                                 f"{' or '.join(repr(m) for m in matches)}?")
            raise


class TrainlabGroup(SuggestingGroup):
    """The top-level ``trainlab`` group: suggestions know the words used for its commands elsewhere."""

    aliases: ClassVar[dict[str, str]] = {
        "train": "run", "fit": "run", "tune": "study", "search": "study", "eval": "evaluate",
        "test": "evaluate", "infer": "predict", "check": "validate", "lint": "validate",
    }
