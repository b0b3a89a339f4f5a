"""``trainlab config`` and ``trainlab data``: look at configs (resolved, provenance, JSON Schema)
and at datasets (list, info, fetch, sample images). Registered by :mod:`trainlab.cli`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from trainlab.cli_common import DataDirOption, JsonOption, SetOption, console, echo

config_app = typer.Typer(help="Show a resolved config or the config JSON Schema.", no_args_is_help=True)
data_app = typer.Typer(help="List, inspect and download datasets.", no_args_is_help=True)


@config_app.command("show")
def config_show(
    file: Annotated[Path, typer.Argument(help="Config file.")],
    set_: SetOption = None,
    provenance: Annotated[bool, typer.Option(
        "--provenance", help="List every field with where its value comes from (published, reading, set, "
        "default) instead of the YAML.")] = False,
    check_quotes: Annotated[Path | None, typer.Option(
        "--check-quotes", metavar="DIR", help="With --provenance: look for each at: quote in the reports "
        "in DIR; exit 2 listing the ones not found.")] = None,
) -> None:
    """Print the fully resolved config (bases merged, overrides applied, defaults filled in)."""
    if provenance or check_quotes is not None:
        from trainlab.cli_source import print_provenance

        if print_provenance(console, file, set_ or [], check_quotes):
            raise typer.Exit(2)
        return
    from trainlab.api import show_config

    sys.stdout.write(show_config(file, set_ or []))


@config_app.command("schema")
def config_schema_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of run configs (for editor completion and checking)."""
    from trainlab.config import config_schema

    text = json.dumps(config_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        from trainlab.io import atomic_write_text

        atomic_write_text(output, text)
        echo(f"wrote {output}")


@data_app.command("list")
def data_list(as_json: JsonOption = False) -> None:
    """List the datasets trainlab knows by name."""
    from trainlab.data import list_datasets

    datasets = list_datasets()
    if as_json:
        sys.stdout.write(json.dumps(datasets, indent=2, default=str) + "\n")
        return
    table = Table(title="datasets")
    for column in ("name", "description", "folder"):
        table.add_column(column)
    for entry in datasets:
        table.add_row(str(entry.get("name")), str(entry.get("description", "")), str(entry.get("folder", "")))
    console.print(table)


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="A dataset name (see `data list`) or a path.")],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Counts per split and class, shape, dtype, per-channel mean/std, and where it was read from."""
    from trainlab.data import dataset_info

    info = dataset_info(name, data_dir)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    _print_info(info)


def _print_info(info: dict[str, Any]) -> None:
    """A dataset_info dict as a short header and a table of counts per class and split."""
    echo(Text(str(info.get("name", "")), style="bold"))
    for key, value in info.items():
        if key in ("name", "per_class"):
            continue
        if isinstance(value, list):
            value = ", ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        echo(f"  {key}: {value}")
    per_class = info.get("per_class")
    if isinstance(per_class, dict) and per_class:
        splits = list(per_class)
        classes = list(dict.fromkeys(c for counts in per_class.values() if counts for c in counts))
        table = Table(title="examples per class")
        table.add_column("class")
        for split in splits:
            table.add_column(split, justify="right")
        for name in classes:
            cells = [str((per_class[s] or {}).get(name, "-")) if per_class[s] else "unlabelled"
                     for s in splits]
            table.add_row(name, *cells)
        console.print(table)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="A dataset name (see `data list`).")],
    data_dir: DataDirOption = None,
) -> None:
    """Download a dataset's official files unless it is already there, verify their md5
    checksums, and extract CIFAR-10's archive."""
    from trainlab.data import fetch_dataset

    path = fetch_dataset(name, data_dir, progress=True)
    echo(f"{name} is ready in {path}")


@data_app.command("show")
def data_show(
    name: Annotated[str, typer.Argument(help="A dataset name (see `data list`) or a path.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Image file to write (.png, .svg or .pdf).")
    ] = None,
    per_class: Annotated[int, typer.Option(min=1, max=50, help="Images per class (1 to 50).")] = 10,
    data_dir: DataDirOption = None,
) -> None:
    """Draw sample images of each class (the first 20 classes) with the class counts (default file: NAME-samples.png)."""
    from trainlab.report import dataset_figure

    target = out or Path(f"{Path(name).name.split('.')[0] or 'dataset'}-samples.png")
    echo(f"wrote {dataset_figure(name, target, data_dir, per_class=per_class)}")


__all__ = ["config_app", "data_app"]
