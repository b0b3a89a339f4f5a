"""``trainlab study``: run a study file, show how far a study has got, or open it in optuna-dashboard.

``trainlab study FILE`` is short for ``trainlab study run FILE``; ``trainlab dashboard`` is
``trainlab study dashboard`` (cli.py registers it at the top level too).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer import _click as click

from trainlab.cli_common import SuggestingGroup, close_commands, echo, labelled

console = Console()


class _RunByDefault(SuggestingGroup):
    """A group whose first argument, when it is not a subcommand, is the study file of ``run``.

    So ``study FILE --help`` is the help of ``study run`` and ``study --help`` the group's. A
    first word that is no file and is close to a subcommand (``study stauts``) stays a
    subcommand, so that the error suggests the subcommand instead of a missing study file.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names \
                and not self._mistyped_command(args[0]):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def _mistyped_command(self, word: str) -> bool:
        """Whether ``word`` reads as a misspelt subcommand rather than a study file or an option."""
        if word.startswith("-") or Path(word).suffix or Path(word).exists():
            return False
        return bool(close_commands(word, list(self.commands)))


study_app = typer.Typer(
    cls=_RunByDefault,
    help="Run hyperparameter studies (grid, random, TPE; pruning; coarse-to-fine; many workers).",
    no_args_is_help=True,
)

StorageOption = Annotated[
    str | None,
    typer.Option("--storage", help="Storage URL shared by workers (postgresql://user@host:port/db); "
                 "default $TRAINLAB_STORAGE, else study.journal in the study directory."),
]


@study_app.command("run")
def run_command(
    file: Annotated[Path, typer.Argument(help="Study file (YAML): a run config plus a study: section.")],
    storage: StorageOption = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes on this machine.")] = 1,
    study_dir: Annotated[Path | None, typer.Option("--dir", "--out", help="Study directory (default: study.dir, "
                                                   "else <output.dir>/<name>).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Override a field of the base run config: --set train.epochs=3 (YAML-typed "
        "value; repeatable); a study. key changes the study section: --set study.stages[0].n_trials=6. "
        "Give a reduced study its own --name.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Study name (default: study.name, else the "
                                             "run name); names the default study directory.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Dataset folder.")] = None,
    heartbeat: Annotated[int, typer.Option(help="Seconds between heartbeats on a database; a worker "
                                           "silent for 3 beats is dead and its trial runs again.")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per trial.")] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Run the failed trials again, once each, in their own run directories "
        "(resumed from their checkpoint when they have one). A trial failed by a refused resume fails "
        "again: move its directory away, or fix the cause, first.")] = False,
) -> None:
    """Run (or resume: same command) a study; trials are run directories in the study directory.

    A resume skips failed trials; --retry-failed runs them again.
    """
    from trainlab.api import run_study
    from trainlab.studies import Options, load_study, stage_status
    from trainlab.studies.results import RESULTS_MD

    study = load_study(file, study_dir, set_, name)
    options = Options(storage=storage, heartbeat=heartbeat, data_dir=str(data_dir) if data_dir else None,
                      echo=not quiet)
    console.print(f"study {study.name}: {len(study.stages)} stage(s), objective {study.metric} "
                  f"({study.direction}), directory {study.dir}")
    if study.overrides:
        echo(f"overridden by --set: {', '.join(study.overrides)}")  # the --set values verbatim
    if study.leakage:
        echo(labelled("warning:", "yellow", study.leakage), stderr=True)
    stages = run_study(study, workers=workers, options=options, retry_failed=retry_failed)
    _print_status(study.name, [stage_status(s) for s in stages], len(study.stages))
    console.print(f"results: {study.dir / RESULTS_MD}")


@study_app.command("status")
def status_command(
    target: Annotated[Path | None, typer.Argument(help="A study directory or study file.")] = None,
    storage: StorageOption = None,
    name: Annotated[str | None, typer.Option(help="Only this study (default: every study there).")] = None,
    watch: Annotated[bool | None, typer.Option("--watch/--no-watch", help="Live progress bars until the "
                                               "study finishes (default: when on a terminal).")] = None,
) -> None:
    """Trials done, running, failed, pruned, and the best so far, of each stage."""
    from trainlab.errors import ConfigError
    from trainlab.studies import load_stages, open_storage, stage_status
    from trainlab.studies.storage import JOURNAL_FILE, resolve_url

    if target is None and storage is None:
        raise ConfigError("study status: give a study directory or file, or --storage URL")
    lock_dir = None
    if target is not None and target.is_file():
        from trainlab.studies import load_study

        study = load_study(target)
        target, name = study.dir, name or study.name
    if target is not None:
        if storage is None and not target.exists():
            raise ConfigError(f"{target} does not exist")
        if storage is None and not (target / JOURNAL_FILE).exists():
            raise ConfigError(f"{target}: no {JOURNAL_FILE} here; is it a study directory? "
                              "(a study on a database needs --storage URL)")
        lock_dir = target
    url = resolve_url(storage, target or Path("."))
    handle = open_storage(url, heartbeat=None, lock_dir=lock_dir)
    watch = sys.stdout.isatty() if watch is None else watch
    found = load_stages(handle, name)
    if not found:
        raise ConfigError(f"no trainlab study {'named ' + repr(name) + ' ' if name else ''}in {handle.url}")
    if watch:
        _watch(handle, name)
        found = load_stages(handle, name)
    for study_name, stages in found.items():
        _print_status(study_name, [stage_status(s) for s in stages], len(stages[0].attrs.get("stages", [])))


@study_app.command("dashboard")
def dashboard_command(
    study_dir: Annotated[Path, typer.Argument(help="A study directory (its study.journal, or with --storage "
                                              "the database it ran on).")],
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: other machines too).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8080,
) -> None:
    """Browse a study's trials in optuna-dashboard (needs: pip install 'trainlab\\[dashboard]'); Ctrl-C stops it."""
    from trainlab.report.study_data import open_study
    from trainlab.studies.dashboard import serve_dashboard

    # The same lookup as `trainlab report STUDY_DIR`: the folder's journal, or --storage.
    study = open_study(study_dir, storage)

    def ready(url: str) -> None:
        console.print(f"study {study.name} ({study.handle.url}) in optuna-dashboard: {url}  (Ctrl-C stops it)",
                      soft_wrap=True)

    serve_dashboard(study.handle, host, port, on_ready=ready)


def _print_status(name: str, rows: list[dict[str, Any]], total_stages: int) -> None:
    table = Table(title=f"study {name}")
    columns = ("stage", "planned", "complete", "running", "waiting", "pruned", "failed", "best")
    for column in columns:
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in rows:
        best = f"{row['best']:.4f}" if row["best"] is not None else "-"
        table.add_row(row["stage"], *(str(row[c]) for c in columns[1:-1]), best)
    for _ in range(max(0, total_stages - len(rows))):
        table.add_row("(not started)", *[""] * (len(columns) - 1))
    console.print(table)
    for row in rows:
        if row["best_params"]:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row["best_params"].items())
            console.print(f"best setting of {row['stage']}: {params}", soft_wrap=True)
    failed = sum(row["failed"] for row in rows)
    if failed:
        console.print(f"{failed} failed trial(s) (errors in results.csv); run them again with "
                      "trainlab study run FILE --retry-failed", soft_wrap=True)


def _finished(stages: list[Any]) -> bool:
    from optuna.trial import TrialState

    if not stages or len(stages) < len(stages[0].attrs.get("stages", [])):
        return False
    return all(s.count(TrialState.RUNNING) == 0 and s.count(TrialState.WAITING) == 0 for s in stages)


def _watch(handle: Any, name: str | None) -> None:
    """Progress bars (one per stage) refreshed every second until every study there is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trainlab.studies import load_stages, stage_status

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, Any] = {}
        while True:
            found = load_stages(handle, name)
            for study_name, stages in found.items():
                for stage in stages:
                    row = stage_status(stage)
                    done = row["complete"] + row["pruned"] + row["failed"]
                    best = f"best {row['best']:.4f}" if row["best"] is not None else ""
                    info = f"{row['running']} running, {row['pruned']} pruned, {row['failed']} failed {best}"
                    label = f"{study_name} {stage.name}"
                    if label not in tasks:
                        tasks[label] = progress.add_task(label, total=row["planned"], info=info)
                    progress.update(tasks[label], completed=done, total=row["planned"], info=info)
            if all(_finished(stages) for stages in found.values()):
                return
            time.sleep(1.0)
