"""The ``trainlab`` command line: a thin layer over :mod:`trainlab.api`.

Errors a user can act on (:class:`~trainlab.errors.TrainlabError`) are printed without a
traceback and end the process with the error's exit code (2 for a bad config); so is every
``OSError`` (exit code 6, see :mod:`trainlab.errors`), as one line naming the path and the cause.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from trainlab.cli_checks import gradcheck_command, parity_command
from trainlab.cli_common import (
    DataDirOption,
    JsonOption,
    SetOption,
    TrainlabGroup,
    console,
    echo,
    err_console,
    labelled,
    print_error,
)
from trainlab.cli_data import config_app, data_app
from trainlab.cli_export import export_command
from trainlab.cli_study import dashboard_command, study_app
from trainlab.errors import TrainlabError, user_error

app = typer.Typer(
    cls=TrainlabGroup,  # "No such command" suggests commands, `trainlab train` suggests run
    help="Train, tune and explain image classifiers from one YAML file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# The config and data groups live in cli_data.py, the study group in cli_study.py.
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")

@app.command("run")
def run_command(
    config: Annotated[Path | None, typer.Argument(help="Run config (YAML).")] = None,
    set_: SetOption = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory from its checkpoint.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="With --resume: extend the run (finished or not) to N "
                                 "epochs; recorded in its provenance; the lr schedule follows the new length.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Start again in an existing run directory (only one "
                                            "that trainlab created for a run).")] = False,
    run_id: Annotated[str | None, typer.Option(help="Name of the run directory: letters, digits, '.', "
                                               "'_' and '-' (default: the config's output.run_id, else "
                                               "start time, seed, random suffix).")] = None,
    data_dir: DataDirOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar / progress lines.")] = True,
) -> None:
    """Train one run described by CONFIG (a run's own config.yaml reruns it), or continue one
    with --resume RUN_DIR (and extend it with --epochs N)."""
    from trainlab import api
    from trainlab.names import check_name

    if run_id is not None:
        check_name(run_id, "--run-id")  # here, so that the message names the option as typed
    run = api.run(
        config,
        overrides=set_,
        resume=resume,
        epochs=epochs,
        overwrite=overwrite,
        run_id=run_id,
        data_dir=data_dir,
        progress=progress,
    )
    echo(f"run directory: {run.path}")


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
            echo(labelled("ok", "green", path))
            leakage = file_leakage_warning(path)  # valid, but choosing on the test split: say so, once
            if leakage:
                echo(labelled("warning", "yellow", f"{path}: {leakage}"), stderr=True)
        else:
            failures += 1
            echo(labelled("invalid", "red", error), stderr=True)
    if failures:
        raise typer.Exit(2)


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
    """Accuracy and loss of a trained run on its test split (reproduces the run's test_accuracy),
    or on its validation split when the dataset has no labelled test split."""
    from trainlab.predict import evaluate_run

    result = evaluate_run(run_dir, tta=tta, data_dir=data_dir)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    split = result["split"]
    console.print(f"{result['run']} ({result['engine']} engine), {result['examples']} {split} images"
                  f"{', with TTA' if result['tta'] else ''}", soft_wrap=True)
    console.print(f"{split} accuracy {result['accuracy']:.4f}, {split} loss {result['loss']:.4f}"
                  f"{' (no labelled test split)' if split == 'val' else ''}")
    if result["matches_summary"] is False:
        console.print(f"[yellow]the run recorded {split} accuracy {result['summary_accuracy']:.4f}[/yellow]")
    if result["data_fingerprint_matches"] is False:
        console.print("[yellow]the dataset differs from the one the run was trained on[/yellow]")


@app.command("predict")
def predict_command(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of image files to predict (subfolders too).")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (id,label,...).")],
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Add one prob_<class> column per class.")
    ] = False,
    label_names: Annotated[
        bool, typer.Option("--label-names", help="Write class names instead of class indices as labels.")
    ] = False,
    resize: Annotated[bool, typer.Option(
        "--resize", help="Resize images of another size to the run's input size (bilinear, as training "
        "resizes for data.resize); without it they are refused.")] = False,
    skip_corrupt: Annotated[bool, typer.Option(
        "--skip-corrupt", help="Leave out unreadable or too large files and list them, with the reason, "
        "in <out>.skipped.txt; without it the first one stops.")] = False,
    tta: TtaOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Predict a folder of images (and its subfolders) and write a Kaggle-style CSV: id (the
    path relative to the folder, without extension), label."""
    from trainlab.predict import predict_folder

    result = predict_folder(run_dir, images, out, probabilities=probabilities, label_names=label_names, tta=tta,
                            resize=resize, skip_corrupt=skip_corrupt, data_dir=data_dir)
    counts = ", ".join(f"{name} {count}" for name, count in result["counts"].items())
    console.print(f"wrote {result['rows']} rows to {result['out']} ({counts})", soft_wrap=True)
    if result["skipped"]:
        names = [path for path, _ in result["skipped"]]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        err_console.print(f"[yellow]skipped {len(names)} unreadable or too large image file(s)[/yellow] "
                          f"(listed in {escape(result['skipped_file'])}): {escape(shown)}", soft_wrap=True,
                          highlight=False)


@app.command("lr-find")
def lr_find_command(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOption = None,
    min_lr: Annotated[float, typer.Option(help="First learning rate.")] = 1e-7,
    max_lr: Annotated[float, typer.Option(help="End of the sweep: each step multiplies the lr by gamma = "
                                          "(--max-lr / --min-lr) ** (1 / --steps), so the last step "
                                          "uses --max-lr / gamma, one step short of it.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Steps from --min-lr to --max-lr.")] = 200,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write a copy of CONFIG, with the --set values, and the suggested learning rate.")
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
        echo(Text.assemble("suggested learning rate: ", (f"{result.suggestion:.3g}", "bold"),
                           f" (steepest descent; the loss is lowest at {result.min_loss_lr:.3g}); "
                           f"{len(result.lrs)} steps, plot: {result.run_dir / 'lr_find.png'}"))
    if apply:
        echo(f"wrote {apply_suggestion(config, result.suggestion, overrides=set_)}")


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

    from trainlab.api import write_report
    from trainlab.run_files import FIGURES_DIR

    keys = [k.strip() for item in trials or [] for k in item.split(",") if k.strip()]
    report = write_report(path, trials=keys, table_format=format_, storage=storage)
    if format_:
        table = report.parent / f"table.{format_}"
        sys.stdout.write(table.read_text(encoding="utf-8"))
        echo(f"table: {table}")
    folder = report.parent / FIGURES_DIR
    echo(f"{len(sorted(folder.glob('*.png')))} figures in {folder} (PNG and SVG)")
    echo(f"report: {report}")
    if open_figures:
        webbrowser.open(report.resolve().as_uri())
        webbrowser.open(folder.resolve().as_uri())


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
    echo(f"report: {report}")


# The checks live in cli_checks.py, export in cli_export.py, the dashboard in cli_study.py;
# registered here, after the commands above.
app.command("gradcheck")(gradcheck_command)
app.command("parity")(parity_command)
app.command("export")(export_command)
app.command("dashboard")(dashboard_command)  # also `trainlab study dashboard`


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trainlab`` script: runs the app and maps errors to exit codes."""
    try:
        app(args=argv, prog_name="trainlab")
    except (TrainlabError, OSError) as exc:  # OSError: permission, disk full, read-only, no such folder
        error = user_error(exc)
        print_error(error)
        return error.exit_code
    except SystemExit as exc:  # the app's normal way out, with its status
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
