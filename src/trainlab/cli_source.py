"""``trainlab config show FILE --provenance``: each resolved field and where its value comes from."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainlab.config.source_checks import quote_problems
from trainlab.config.source_listing import list_sources

QUOTE_CHARS = 90
VALUE_CHARS = 40
_STYLE = {"published": "green", "reading": "yellow", "set": "red", "default": "dim"}


def print_provenance(
    console: Console, file: Path, overrides: list[str], check_quotes: Path | None = None
) -> list[str]:
    """Print the table of fields with their origins and a one-line summary.

    Args:
        console: where to print.
        file: a run or study file, or a run directory's config.yaml.
        overrides: ``--set`` strings.
        check_quotes: a folder of source reports; when given, every ``at`` quote is looked
            for there. Default None: no check.

    Returns:
        The quote problems (empty without ``check_quotes``), printed after the summary.

    Raises:
        ConfigError: the file does not load or validate.
    """
    listing = list_sources(file, overrides)
    table = Table(title=f"where each setting of {file} comes from", title_justify="left")
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold", max_width=VALUE_CHARS)
    table.add_column("origin", overflow="fold")
    for row in listing.rows:
        value = row.value if isinstance(row.value, str) else json.dumps(row.value)
        # Text, not markup: quotes and values may hold [brackets].
        table.add_row(row.path, Text(value), Text(row.origin(QUOTE_CHARS), style=_STYLE[row.kind]))
    console.print(table)
    console.print(listing.summary(), highlight=False)
    if check_quotes is None:
        return []
    if not check_quotes.is_dir():
        problem = f"--check-quotes {check_quotes}: not a folder (give the folder that holds the source reports)"
        console.print(Text(problem, style="red"))
        return [problem]
    problems = quote_problems(listing.config.source, check_quotes)
    quoted = sum(1 for e in listing.config.source.values() if e.at is not None)
    if problems:
        console.print(Text(f"{len(problems)} of {quoted} quotes are not where their at: says:", style="red"))
        for problem in problems:
            console.print(Text(f"  {problem}"), soft_wrap=True)
    else:
        console.print(f"all {quoted} quotes found in {check_quotes}", highlight=False)
    return problems


__all__ = ["print_provenance"]
