"""``trainlab gradcheck`` and ``trainlab parity``: the checks of the engines' gradients and agreement."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from trainlab.cli_common import DataDirOption, JsonOption, SetOption, console, echo, err_console


def gradcheck_command(
    config: Annotated[Path, typer.Argument(help="Run config with engine: numpy.")],
    set_: SetOption = None,
    batch_size: Annotated[int, typer.Option(help="Examples in the checked batch.")] = 8,
    entries: Annotated[
        int, typer.Option(help="Entries checked per parameter (a seeded sample); 0 checks every entry.")
    ] = 100,
    eps: Annotated[float, typer.Option(help="Finite-difference step.")] = 1e-5,
    threshold: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    eps_sweep: Annotated[
        bool, typer.Option("--eps-sweep", help="Also report the error for eps = 1/N, N = 10 ... 1e9.")
    ] = False,
    layer: Annotated[
        int | None, typer.Option("--layer", min=1, help="Check only the weights of this affine layer (1: input to "
                                 "first hidden layer): its first --entries weights, into output unit 0 from inputs "
                                 "0, 1, ... (seed B: --layer 2 --entries 10).")
    ] = None,
    n_sweep: Annotated[
        bool, typer.Option("--n-sweep", help="Also difference those weights with eps = 1/N for N = k*10^i "
                           "(k = 1..--n-k, i = 0..--n-i), as seed B's figures 5 and 6; needs --layer.")
    ] = False,
    n_k: Annotated[int, typer.Option("--n-k", min=1, help="Largest k of the N sweep.")] = 5,
    n_i: Annotated[int, typer.Option("--n-i", min=0, help="Largest power of ten i of the N sweep.")] = 5,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write gradcheck.json here, and with --n-sweep n_sweep.csv and "
                                  "n_sweep.png/.svg (max |grad - approx| against N and eps, log-log).")
    ] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    save: Annotated[
        Path | None, typer.Option("--save", help="Also write gradcheck.json into this run directory (its report shows it).")
    ] = None,
) -> None:
    """Compare analytic gradients with centred finite differences (float64), per parameter.

    Exits with status 1 when any relative error of the check at --eps is above --threshold;
    the --eps-sweep and --n-sweep results are reported only and never fail the run.
    """
    from trainlab.api import gradcheck, write_gradcheck
    from trainlab.engines.numpy.gradcheck import n_grid

    sweep = [10.0**-k for k in range(1, 10)] if eps_sweep else None
    result = gradcheck(config, overrides=set_, batch_size=batch_size, entries=entries or None,
                       eps=eps, eps_values=sweep, data_dir=data_dir, layer=layer,
                       n_values=n_grid(n_k, n_i) if n_sweep else None, threshold=threshold)
    written = write_gradcheck(result, out=out, run_dir=save)
    if "csv" in written:
        echo(f"wrote {written['csv']} and {written['png']}", stderr=True)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print_gradcheck(result, eps)
    if not result["passed"]:
        raise typer.Exit(1)


def _print_gradcheck(result: dict[str, Any], eps: float) -> None:
    """The per-parameter table of a gradcheck result, its eps and N sweeps, and the verdict."""
    table = Table(title=f"gradient check of {result['config']} (eps {eps:g}, float64)")
    for column in ("parameter", "shape", "entries", "max rel error", "max abs error"):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for row in result["rows"]:
        style = "red" if row["max_rel_error"] > result["threshold"] else None
        table.add_row(row["name"], "x".join(map(str, row["shape"])), str(row["entries"]),
                      f"{row['max_rel_error']:.2e}", f"{row['max_abs_error']:.2e}", style=style)
    console.print(table)
    if result["eps_sweep"]:
        sweep_table = Table(title="error against eps = 1/N")
        for column in ("eps", "max rel error", "max abs error"):
            sweep_table.add_column(column, justify="right")
        for row in result["eps_sweep"]:
            sweep_table.add_row(f"{row['eps']:.0e}", f"{row['max_rel_error']:.2e}",
                                f"{row['max_abs_error']:.2e}")
        console.print(sweep_table)
    if result["n_sweep"]:
        _print_n_sweep(result)
    verdict = "[green]passed[/green]" if result["passed"] else "[red]failed[/red]"
    console.print(f"{verdict}: largest relative error {result['max_rel_error']:.2e} "
                  f"(threshold {result['threshold']:g})")


def _print_n_sweep(result: dict[str, Any]) -> None:
    """The N sweep's table; a warning when every checked weight had a zero gradient."""
    rows = result["n_sweep"]
    entries = result["rows"][0]["entries"]
    table = Table(title=f"max |grad - approx|, first {entries} weights of layer {result['layer']}, eps = 1/N")
    for column in ("N", "eps", "max abs diff", "max rel error", "both 0"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['n']:g}", f"{row['eps']:.1e}", f"{row['max_abs_diff']:.2e}",
                      f"{row['max_rel_error']:.2e}", str(row["zeros"]))
    console.print(table)
    if all(row["zeros"] == entries for row in rows):
        err_console.print("[yellow]warning[/yellow]: every checked weight has a zero gradient on this batch "
                          "(its ReLU unit is inactive for every example), so the sweep checks nothing; use a "
                          "larger --batch-size or another --layer")


def parity_command(
    config: Annotated[Path, typer.Argument(help="Run config with a linear or mlp model (either engine).")],
    set_: SetOption = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 16,
    data: Annotated[str, typer.Option(help="random (normal inputs shaped like the dataset) or real.")] = "random",
    threshold: Annotated[float, typer.Option(help="Largest relative difference that passes.")] = 1e-6,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train CONFIG's linear or MLP model on both engines from the same weights (float64) and compare.

    Prints per step the loss of each engine and their difference, then the largest relative
    difference of every parameter and batch-norm buffer. Exits with status 1 when the largest
    relative difference of the losses, gradients, parameters or buffers is above --threshold.
    """
    from trainlab.config import load_config
    from trainlab.parity import run_parity

    result = run_parity(load_config(config, list(set_ or [])), steps=steps, batch_size=batch_size, data=data,
                        data_dir=data_dir, threshold=threshold)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print_parity(result)
    if not result["passed"]:
        raise typer.Exit(1)


def _print_parity(result: dict[str, Any]) -> None:
    """The per-step and per-parameter tables of a parity result."""
    threshold = result["threshold"]
    console.print(f"{result['model']}; {result['optimizer']}, schedule {result['schedule']}, "
                  f"{result['data']}, float64", soft_wrap=True)
    steps = Table(title="per step: numpy engine vs torch engine")
    for column in ("step", "lr", "loss numpy", "loss torch", "abs diff", "rel diff", "grad rel diff"):
        steps.add_column(column, justify="right")
    for row in result["rows"]:
        steps.add_row(str(row["step"]), f"{row['lr_numpy']:.4g}", f"{row['loss_numpy']:.12f}",
                      f"{row['loss_torch']:.12f}", f"{row['loss_abs_diff']:.1e}", f"{row['loss_rel_diff']:.1e}",
                      f"{row['grad_rel_diff']:.1e}")
    console.print(steps)
    params = Table(title=f"parameters after {result['steps']} steps")
    for column in ("numpy", "torch", "shape", "rel diff", "abs diff"):
        params.add_column(column, justify="left" if column in ("numpy", "torch") else "right")
    for row in result["params"]:
        params.add_row(row["numpy"], row["torch"], "x".join(map(str, row["shape"])), f"{row['rel_diff']:.1e}",
                       f"{row['abs_diff']:.1e}", style="red" if row["rel_diff"] > threshold else None)
    for row in result["buffers"]:
        params.add_row(row["numpy"], row["torch"], "", f"{row['rel_diff']:.1e}", "",
                       style="red" if row["rel_diff"] > threshold else None)
    console.print(params)
    for row in result["torch_only"]:
        console.print(f"torch only: {row['torch']} ({row['note']}; max |value| {row['max_abs']:.1e})")
    verdict = "[green]passed[/green]" if result["passed"] else "[red]failed[/red]"
    console.print(f"{verdict}: largest relative difference {result['max_rel_diff']:.2e} (threshold {threshold:g})")
