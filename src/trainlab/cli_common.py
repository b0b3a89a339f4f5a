"""What the ``trainlab`` command modules share: the consoles and the common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: --set train.epochs=3 (YAML-typed value)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Dataset folder (default: $TRAINLAB_DATA, else ~/.cache/trainlab/data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
