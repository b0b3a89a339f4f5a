"""``trainlab export``: a trained run's model as TorchScript or ONNX, taking raw pixels."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trainlab.cli_common import DataDirOption, JsonOption, console


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    format_: Annotated[str, typer.Option(
        "--format", help="torchscript, or onnx (needs the export extra: pip install 'trainlab\\[export]').")
    ] = "torchscript",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="File to write, or a folder for the default name (default: RUN_DIR/model.torchscript.pt "
        "or RUN_DIR/model.onnx). FILE.json beside it describes the input, the output and the class names.")
    ] = None,
    tta: Annotated[bool | None, typer.Option(
        "--tta/--no-tta", help="Average with the mirror images inside the export (default: the run's train.tta, "
        "so the export gives the run's predictions).")
    ] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export a trained run's model with its normalisation inside: it takes raw pixels (N, C, H, W),
    float32 in 0..255, and gives logits (N, K). Checked against the run on random images before writing."""
    from trainlab.export import export_run, sidecar_path

    path = export_run(run_dir, format_, out, tta=tta, data_dir=data_dir)
    description = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    if as_json:
        sys.stdout.write(json.dumps({"out": str(path), "sidecar": str(sidecar_path(path)), **description},
                                    indent=2) + "\n")
        return
    given, gives = description["input"], description["output"]
    console.print(f"wrote {escape(str(path))} ({format_}): input {given['name']} "
                  f"({', '.join(map(str, given['shape']))}) float32 in 0..255, output {gives['name']} "
                  f"({', '.join(map(str, gives['shape']))}); described in {escape(str(sidecar_path(path)))}",
                  soft_wrap=True)
    check = description["check"]
    if check.get("max_abs_logit_difference") is not None:
        console.print(f"check: largest logit difference from the run's own {check['max_abs_logit_difference']:.2g} "
                      f"on {check['images']} random images", soft_wrap=True)
    if check.get("note"):
        console.print(f"[yellow]{escape(check['note'])}[/yellow]", soft_wrap=True)


__all__ = ["export_command"]
