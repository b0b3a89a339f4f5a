"""The ``trainlab`` command line: a thin layer over :mod:`trainlab.api`.

Errors a user can act on (:class:`~trainlab.errors.TrainlabError`) are printed without a
traceback and end the process with the error's exit code (2 for a bad config).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainlab.cli_study import study_app
from trainlab.errors import TrainlabError

app = typer.Typer(
    help="Train, tune and explain image classifiers from one YAML file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show a resolved config or the config JSON Schema.", no_args_is_help=True)
data_app = typer.Typer(help="List, inspect and download datasets.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")

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


@app.command("run")
def run_command(
    config: Annotated[Path | None, typer.Argument(help="Run config (YAML).")] = None,
    set_: SetOption = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory from its checkpoint.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Start again in an existing run directory.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Name of the run directory.")] = None,
    data_dir: DataDirOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar / progress lines.")] = True,
) -> None:
    """Train one run described by CONFIG (or resume one with --resume RUN_DIR)."""
    from trainlab import api

    run = api.run(
        config,
        overrides=set_,
        resume=resume,
        overwrite=overwrite,
        run_id=run_id,
        data_dir=data_dir,
        progress=progress,
    )
    console.print(f"run directory: {run.path}")


@app.command("validate")
def validate_command(
    files: Annotated[list[Path], typer.Argument(help="Config files to check.")],
) -> None:
    """Check config files (fields, values, engine rules) without running anything."""
    from trainlab.api import validate_files
    from trainlab.studies.spec import file_leakage_warning

    failures = 0
    for path, error in validate_files(files):
        if error is None:
            console.print(f"[green]ok[/green] {path}")
            leakage = file_leakage_warning(path)  # valid, but choosing on the test split: say so, once
            if leakage:
                err_console.print(f"[yellow]warning[/yellow] {path}: {leakage}", soft_wrap=True)
        else:
            failures += 1
            err_console.print(f"[red]invalid[/red] {error}")
    if failures:
        raise typer.Exit(2)


@app.command("gradcheck")
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

    Exits with status 1 when any relative error is above --threshold.
    """
    from trainlab.api import gradcheck
    from trainlab.engines.numpy.gradcheck import n_grid

    sweep = [10.0**-k for k in range(1, 10)] if eps_sweep else None
    result = gradcheck(config, overrides=set_, batch_size=batch_size, entries=entries or None,
                       eps=eps, eps_values=sweep, data_dir=data_dir, layer=layer,
                       n_values=n_grid(n_k, n_i) if n_sweep else None)
    result["threshold"] = threshold
    result["passed"] = result["max_rel_error"] <= threshold
    if save is not None:
        from trainlab.io import atomic_write_json
        from trainlab.runs import open_run_dir

        atomic_write_json(open_run_dir(save).path / "gradcheck.json", result)
    if out is not None:
        _write_gradcheck_out(result, out)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        table = Table(title=f"gradient check of {result['config']} (eps {eps:g}, float64)")
        for column in ("parameter", "shape", "entries", "max rel error", "max abs error"):
            table.add_column(column, justify="left" if column == "parameter" else "right")
        for row in result["rows"]:
            style = "red" if row["max_rel_error"] > threshold else None
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
                      f"(threshold {threshold:g})")
    if not result["passed"]:
        raise typer.Exit(1)


def _write_gradcheck_out(result: dict[str, Any], out: Path) -> None:
    """gradcheck.json, and the N sweep's CSV and figure, into ``out``."""
    from trainlab.io import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "gradcheck.json", result)
    if result["n_sweep"]:
        from trainlab.report.gradcheck_sweep import write_n_sweep

        title = (f"{result['config']}: first {result['rows'][0]['entries']} weights of layer {result['layer']} "
                 f"({result['layer_key']})")
        written = write_n_sweep(result["n_sweep"], out, title)
        err_console.print(f"wrote {written['csv']} and {written['png']}")


def _print_n_sweep(result: dict[str, Any]) -> None:
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


@app.command("parity")
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
    """Train CONFIG's MLP on both engines from the same weights (float64) and compare.

    Prints per step the loss of each engine and their difference, then the largest relative
    difference of every parameter. Exits with status 1 when any is above --threshold.
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


TtaOption = Annotated[
    bool | None,
    typer.Option("--tta/--no-tta", help="Average with the mirror images (default: the run's train.tta)."),
]


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    tta: TtaOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Accuracy and loss of a trained run on its test split (reproduces the run's test_accuracy)."""
    from trainlab.predict import evaluate_run

    result = evaluate_run(run_dir, tta=tta, data_dir=data_dir)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    console.print(f"{result['run']} ({result['engine']} engine), {result['examples']} test images"
                  f"{', with TTA' if result['tta'] else ''}", soft_wrap=True)
    console.print(f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f}")
    if result["matches_summary"] is False:
        console.print(f"[yellow]the run recorded test accuracy {result['summary_test_accuracy']:.4f}[/yellow]")
    if result["data_fingerprint_matches"] is False:
        console.print("[yellow]the dataset differs from the one the run was trained on[/yellow]")


@app.command("predict")
def predict_command(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of image files to predict.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (id,label,...).")],
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Add one prob_<class> column per class.")
    ] = False,
    label_names: Annotated[
        bool, typer.Option("--label-names", help="Write class names instead of class indices as labels.")
    ] = False,
    tta: TtaOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Predict a folder of images and write a Kaggle-style CSV: id (file name), label."""
    from trainlab.predict import predict_folder

    result = predict_folder(run_dir, images, out, probabilities=probabilities, label_names=label_names, tta=tta,
                            data_dir=data_dir)
    counts = ", ".join(f"{name} {count}" for name, count in result["counts"].items())
    console.print(f"wrote {result['rows']} rows to {result['out']} ({counts})", soft_wrap=True)


@app.command("lr-find")
def lr_find_command(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOption = None,
    min_lr: Annotated[float, typer.Option(help="First learning rate.")] = 1e-7,
    max_lr: Annotated[float, typer.Option(help="Last learning rate.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Steps from --min-lr to --max-lr.")] = 200,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write a copy of CONFIG with the suggested learning rate.")
    ] = False,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Learning-rate range test: loss against an exponentially growing lr, and a suggestion."""
    from trainlab.lr_find import apply_suggestion, lr_find

    result = lr_find(config, overrides=set_, min_lr=min_lr, max_lr=max_lr, steps=steps,
                     data_dir=data_dir)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        console.print(f"suggested learning rate: [bold]{result.suggestion:.3g}[/bold] "
                      f"(steepest descent; the loss is lowest at {result.min_loss_lr:.3g}); "
                      f"{len(result.lrs)} steps, plot: {result.run_dir / 'lr_find.png'}")
    if apply:
        console.print(f"wrote {apply_suggestion(config, result.suggestion)}")


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
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


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
    console.print(f"[bold]{info.get('name', '')}[/bold]")
    for key, value in info.items():
        if key in ("name", "per_class"):
            continue
        if isinstance(value, list):
            value = ", ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        console.print(f"  {key}: {value}", soft_wrap=True)
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
    """Download a dataset's official archive, verify its checksum, and extract it."""
    from trainlab.data import fetch_dataset

    path = fetch_dataset(name, data_dir, progress=True)
    console.print(f"{name} is ready in {path}")


@data_app.command("show")
def data_show(
    name: Annotated[str, typer.Argument(help="A dataset name (see `data list`) or a path.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Image file to write (.png, .svg or .pdf).")
    ] = None,
    per_class: Annotated[int, typer.Option(help="Images per class.")] = 10,
    data_dir: DataDirOption = None,
) -> None:
    """Draw sample images of every class with the class counts (default file: NAME-samples.png)."""
    from trainlab.report import dataset_figure

    target = out or Path(f"{Path(name).name.split('.')[0] or 'dataset'}-samples.png")
    console.print(f"wrote {dataset_figure(name, target, data_dir, per_class=per_class)}")


@app.command("report")
def report_command(
    path: Annotated[Path, typer.Argument(help="A run directory or a study directory.")],
    trials: Annotated[
        list[str] | None,
        typer.Option("--trials", help="Study: trials whose learning curves are overlaid (keys such as "
                     "t0003-r1, comma-separated or repeated); default: the best few."),
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option("--format", help="Study: also print the settings table as md or tex, ready to paste "
                     "(and write STUDY_DIR/table.md|tex)."),
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Study: its database URL when it is not the directory's journal.")
    ] = None,
    open_figures: Annotated[
        bool, typer.Option("--open-figures", help="Open the report and its figures folder when done.")
    ] = False,
) -> None:
    """Write PATH/report.html and PATH/figures (PNG and SVG) of a run or of a study.

    A study report ranks the settings (mean, sd, 95 % interval over repeats, verdict against
    the best), draws the objective against each parameter, the best run's curves, overlaid
    curves of chosen trials and fANOVA importances.
    """
    import webbrowser

    from trainlab.errors import ConfigError
    from trainlab.report import build_run_report
    from trainlab.report.study_data import is_study_dir

    study = is_study_dir(path) or storage is not None
    if not study and (trials or format_):
        raise ConfigError(f"{path}: --trials and --format are for a study directory; this is not one")
    if format_ is not None and format_ not in ("md", "tex"):
        raise ConfigError(f"--format {format_!r}: use md or tex")
    if study:
        from trainlab.io import atomic_write_text
        from trainlab.report.study_report import build_study_report, study_table

        keys = [k.strip() for item in trials or [] for k in item.split(",") if k.strip()]
        report = build_study_report(path, keys, storage)
        if format_:
            exported = study_table(path, format_, storage)
            atomic_write_text(report.parent / f"table.{format_}", exported)
            sys.stdout.write(exported)
            console.print(f"table: {report.parent / f'table.{format_}'}")
    else:
        report = build_run_report(path)
    figures = sorted((report.parent / "figures").glob("*.png"))
    console.print(f"{len(figures)} figures in {report.parent / 'figures'} (PNG and SVG)")
    console.print(f"report: {report}")
    if open_figures:
        webbrowser.open(report.resolve().as_uri())
        webbrowser.open((report.parent / "figures").resolve().as_uri())


@app.command("compare")
def compare_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (two or more).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the comparison report.")] = Path("compare"),
    x: Annotated[str, typer.Option("--x", help="x axis of the curves: epoch, step, or time (seconds of "
                                   "training).")] = "epoch",
) -> None:
    """Overlay the learning curves of any runs and tabulate their numbers and config differences."""
    from trainlab.report.compare import build_compare_report

    report = build_compare_report(run_dirs, out, x=x)
    console.print(f"report: {report}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trainlab`` script: runs the app and maps errors to exit codes."""
    try:
        app(args=argv, prog_name="trainlab")
    except TrainlabError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
        return exc.exit_code
    except SystemExit as exc:  # the app's normal way out, with its status
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
