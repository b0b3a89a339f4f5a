"""Run the seed-study reproductions listed in a manifest and write docs/reproductions.md.

Each manifest row names a config, the published figure and how many seeds to run. Every
(row, seed) trains once into ``runs/<config name>/<row id>-s<seed>-<config hash>``; the hash
covers the config as written (bases merged; seed, name, output and its source section left out)
and the row's overrides, so editing a config's reading makes its old runs stale instead of
silently reused. Each finished run is also recorded in the ledger docs/reproductions.json
(runs/ is not committed), so the table keeps the rows of earlier sessions. Finished runs are
skipped, so the script can be stopped and started again, row by row, and several copies can
share the rows: a seed that another live copy is training (its lock file beside the run
directory) is skipped::

    TRAINLAB_DATA=/work/shared/datasets .venv/bin/python scripts/reproduce.py            # everything
    .venv/bin/python scripts/reproduce.py --rows D1 D2 --seeds 1                          # some rows
    .venv/bin/python scripts/reproduce.py --only-table                                    # just the table

The engine (numpy or torch) and precision of a row come from its config, so rows of either
engine share the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when imported by tests
from repro_ledger import Entry, Ledger
from repro_manifest import (
    DEFAULT_LEDGER,
    DEFAULT_MANIFEST,
    DEFAULT_OUTPUT,
    ROOT,
    Progress,
    Result,
    Row,
    can_resume,
    config_hash,
    load_manifest,
    read_progress,
    read_result,
    resolved_config,
    row_hash,
    run_dir,
    shown,
)
from repro_verdict import Verdict, describe, summary_line, verdict

# What tests and other scripts use from here, including names defined by the sibling modules.
__all__ = [
    "DEFAULT_MANIFEST", "Ledger", "Result", "Row", "can_resume", "collect", "collect_progress", "config_hash", "describe", "engine_of", "load_manifest",
    "main", "read_result", "render", "row_verdict", "run_dir", "train_row",
]


def ledger_entry(row: Row, result: Result, digest: str) -> Entry:
    """The ledger's record of a finished run of ``row``, dated today on this machine."""
    return Entry(row=row.id, seed=result.seed, config_hash=digest, status=result.status, value=result.value,
                 seconds=result.seconds, epochs=result.epochs, machine=machine(),
                 date=dt.date.today().isoformat())


def lock_path(path: Path) -> Path:
    """The lock file of the run at ``path``: beside it (a fresh run replaces its directory),
    hidden, so that a glob over the run directories does not pick it up."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[int | None]:
    """Hold the lock of the run at ``path`` while the block runs, if no other process holds it.

    Yields None when this process holds it, else the pid of the process that does (-1 if it
    has not written it yet). The lock is an advisory ``flock`` on the file, which the system
    drops when its process ends, so a run cut off with its session leaves no stale lock. The
    file stays afterwards: removing it would let a process that opened it just before lock the
    removed file while a third creates and locks a new one.
    """
    import fcntl  # POSIX only, like the rest of the run machinery

    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            written = os.read(fd, 32).decode("ascii", "replace").strip()
            yield int(written) if written.isdigit() else -1
            return
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        yield None
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def train_row(row: Row, seeds: int, ledger: Ledger) -> None:
    """Train every missing seed of ``row`` (seeds 0..seeds-1), one after the other.

    A seed the ledger already holds under the row's current config is not trained again, nor
    one that another live process is training (see :func:`run_lock`); each finished run is
    recorded in the ledger at once.
    """
    digest = row_hash(row)
    for seed in range(seeds):
        path = run_dir(row, seed)
        if read_result(path, seed, row.metric) is not None or ledger.get(row.id, seed, digest) is not None:
            print(f"{row.id} seed {seed}: done already ({shown(path)})", flush=True)
            continue
        with run_lock(path) as holder:
            if holder is not None:
                who = f"pid {holder}" if holder > 0 else "its pid not yet written"
                print(f"{row.id} seed {seed}: being trained by another process ({who}); skipped", flush=True)
                continue
            if read_result(path, seed, row.metric) is not None:  # finished by another process meanwhile
                print(f"{row.id} seed {seed}: done already ({shown(path)})", flush=True)
                continue
            elapsed, resuming = _train_seed(row, seed, path)
        # A resumed run's wall clock is lost with the process that was cut off; its training
        # time (carried over the resume by the checkpoint) stands in for it.
        wall = {"resumed_seconds": elapsed} if resuming else {"wall_seconds": elapsed}
        (path / "reproduce.json").write_text(json.dumps(wall), encoding="utf-8")
        result = read_result(path, seed, row.metric)
        if result is not None:
            ledger.record(ledger_entry(row, result, digest))
            ledger.save()
        outcome = "diverged" if result is None or result.value is None else f"{result.value:.2f} %"
        print(f"{row.id} seed {seed}: {outcome} in {elapsed:.0f} s", flush=True)


def _train_seed(row: Row, seed: int, path: Path) -> tuple[float, bool]:
    """Train (or resume) one seed of ``row`` into ``path``; (seconds it took, whether it resumed)."""
    import trainlab.api as tl
    from trainlab.errors import TrainingError

    resuming = can_resume(path)
    action = "resuming from its last checkpoint" if resuming else "training"
    print(f"{row.id} seed {seed}: {action} -> {shown(path)}", flush=True)
    started = time.perf_counter()
    try:
        if resuming:
            tl.run(resume=path, progress=False, echo=False)
        else:
            tl.run(ROOT / row.config, overrides=[*row.overrides, f"seed={seed}"],
                   run_id=path.name, overwrite=True, progress=False, echo=False)
    except TrainingError as error:  # a diverged run is a result, recorded as "failed"
        print(f"{row.id} seed {seed}: {error}", flush=True)
    return time.perf_counter() - started, resuming


def collect(row: Row, seeds: int, ledger: Ledger) -> list[Result]:
    """The finished results of seeds 0..seeds-1 of ``row`` (missing runs left out).

    A run directory under ``runs/`` wins (and is recorded in the ledger); otherwise the
    ledger's entry for the row's current config hash stands in for a run trained in an
    earlier session.
    """
    from trainlab.errors import ConfigError

    results = []
    try:
        digest = row_hash(row)
    except ConfigError as error:  # a broken row must not stop the table of the others
        print(f"{row.id}: {error}", file=sys.stderr)
        return []
    for seed in range(seeds):
        try:
            path = run_dir(row, seed)
        except ConfigError as error:
            print(f"{row.id}: {error}", file=sys.stderr)
            return []
        result = read_result(path, seed, row.metric)
        if result is not None:
            ledger.record(ledger_entry(row, result, digest))
        else:
            entry = ledger.get(row.id, seed, digest)
            if entry is not None:
                result = Result(seed=seed, status=entry.status, value=entry.value, seconds=entry.seconds,
                                epochs=entry.epochs)
        if result is not None:
            results.append(result)
    return results


def collect_progress(row: Row, seeds: int) -> list[Progress]:
    """How far the unfinished, resumable seeds of ``row`` got (none when all finished)."""
    from trainlab.errors import ConfigError

    found = []
    for seed in range(seeds):
        try:
            progress = read_progress(run_dir(row, seed), seed, row.metric)
        except ConfigError:
            return []
        if progress is not None:
            found.append(progress)
    return found


def progress_text(row: Row, progress: Sequence[Progress]) -> str:
    """The table's words for runs cut off before the end, with the command that continues them."""
    try:
        total = resolved_config(row).get("train", {}).get("epochs")
    except Exception:  # the table of the other rows must not depend on this one
        total = None
    parts = []
    for p in progress:
        shown = "no evaluation yet" if p.value is None else f"{p.split} {p.value:.2f} %"
        of = f" of {total}" if total else ""
        parts.append(f"seed {p.seed} cut off at epoch {p.epoch}{of} after {p.seconds:,.0f} s of training "
                     f"({shown})")
    return ("unfinished: " + "; ".join(parts) + f"; `scripts/reproduce.py --rows {row.id}` continues "
            "from the checkpoint")


def row_verdict(row: Row, results: Sequence[Result]) -> Verdict:
    """The two-sided verdict of ``row`` over its finished seeds (see repro_verdict)."""
    return verdict(row.published, row.expect, [r.value for r in results])


def engine_of(row: Row) -> str:
    """``engine/precision`` of a row's resolved config, e.g. ``numpy/float32``."""
    from trainlab.errors import ConfigError

    try:
        config = resolved_config(row)
    except ConfigError:
        return "invalid config"
    dtype = config.get("model", {}).get("dtype")
    # train.precision (fp32, bf16 autocast, ...) is the torch engine's; numpy runs in model.dtype
    precision = dtype if config.get("engine") == "numpy" else config.get("train", {}).get("precision") or dtype
    return f"{config.get('engine', '?')}/{precision or '?'}"


def machine() -> str:
    """One line on the machine the runs were timed on."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def rerun_command(row: Row) -> str:
    """The command that reruns every seed of a row."""
    return f"TRAINLAB_DATA=/work/shared/datasets .venv/bin/python scripts/reproduce.py --rows {row.id}"


def single_command(row: Row) -> str:
    """The plain ``trainlab run`` command of one seed of a row."""
    sets = " ".join(f"--set {o}" for o in [*row.overrides, "seed=0"])
    return f"TRAINLAB_DATA=/work/shared/datasets .venv/bin/trainlab run {row.config} {sets}"


def settings_text(row: Row) -> str:
    """How many of the row's settings are published and which are our readings (its ``source:``)."""
    from trainlab.config import load_config_dict
    from trainlab.config.source import summarize
    from trainlab.errors import ConfigError

    try:
        raw = load_config_dict(ROOT / row.config)
    except ConfigError:
        return "invalid config"
    counts = summarize(raw, raw.get("source") or {})
    readings = counts["reading_keys"]
    text = f"{counts['published']} published, {len(readings)} readings"
    if counts["uncovered"]:
        text += f", {len(counts['uncovered'])} without source"
    return text + (": " + ", ".join(f"`{k}`" for k in readings) if readings else "")


def seeds_sentence(rows: Sequence[Row]) -> str:
    """How many seeds the rows ask for, naming the rows that ask for fewer than the most."""
    most = max((row.seeds for row in rows), default=0)
    fewer = [row for row in rows if row.seeds < most]
    text = f"Rows ask for {most} seeds"
    if not fewer:
        return text + "."
    counts = sorted({row.seeds for row in fewer}, reverse=True)
    parts = []
    for n in counts:
        ids = [row.id for row in fewer if row.seeds == n]
        parts.append(f"{', '.join(ids)} {'asks' if len(ids) == 1 else 'ask'} for {n}")
    return (text + "; " + "; ".join(parts) + " (issue 24 asks for at least 3 seeds a row, and 5 where a run "
            "takes under 5 minutes).")


def render(rows: Sequence[Row], results: dict[str, list[Result]], engines: dict[str, str],
           header: str, progress: dict[str, list[Progress]] | None = None,
           settings: dict[str, str] | None = None) -> str:
    """The markdown of docs/reproductions.md from rows and their finished results.

    ``progress``: per row id, its unfinished runs (cut off, resumable); shown next to the verdict.
    ``settings``: per row id, the count of published settings and the list of readings.
    """
    verdicts = {row.id: row_verdict(row, results.get(row.id, [])) for row in rows}
    lines = [
        "# Reproductions of the seed studies",
        "",
        header,
        "",
        f"**Summary: {summary_line(v.kind for v in verdicts.values())}** (of {len(rows)} rows).",
        "",
        "How to read a verdict: **reproduced** means the published figure is consistent with our seeds "
        "(the mean within 1 point of it, or, over 3 or more seeds that spread, the figure within mean ± 2 sd). "
        "**above** and **below** mean it is not: above is not a success, it says our config is probably not "
        "the report's experiment, and the row's note says which setting may differ and what was tried. "
        "Qualitative rows state their threshold, fixed before running; every seed must meet it. "
        f"{seeds_sentence(rows)} "
        "s/run is the mean wall time of one run (data loading included; a run resumed after a cut-off counts "
        "its training time); epochs is the mean number trained "
        "(below the config's count when early stopping ended a run). The settings column counts the settings "
        "whose value is quoted from the report (with file and line) and names our readings; "
        "`trainlab config show --provenance FILE` lists each with its origin.",
        "",
        "The published conclusions of the seed studies' comparisons are quoted and checked against trainlab "
        "studies in [studies.md](studies.md) (`scripts/study_outcomes.py`).",
        "",
        "| row | source | setting | published | measured mean ± sd | [min, max] | seeds | verdict | s/run | epochs "
        "| engine | settings |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        got = results.get(row.id, [])
        values = [r.value for r in got if r.value is not None]
        mean_sd, span = describe(values)
        seeds = f"{len(got)}/{row.seeds}" + (" (partial)" if 0 < len(got) < row.seeds else "")
        published = row.published_text or (f"{row.published:.2f}" if row.published is not None else "—")
        seconds = f"{statistics.fmean(r.seconds for r in got):.0f}" if got else "—"
        trained = [r.epochs for r in got if r.epochs is not None]
        epochs = f"{statistics.fmean(trained):.3g}" if trained else "—"
        target = verdicts[row.id].text
        unfinished = (progress or {}).get(row.id)
        if unfinished:
            target = (f"{target}; " if got else "") + progress_text(row, unfinished)
        cells = [row.id, row.table, row.description, published, mean_sd, span, seeds,
                 target, seconds, epochs, engines.get(row.id, "?"), (settings or {}).get(row.id, "—")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Commands, readings and notes", ""]
    for row in rows:
        lines.append(f"- **{row.id}** (`{row.config}`): `{rerun_command(row)}`; one seed: `{single_command(row)}`.")
        if row.reading:
            lines.append(f"  Reading: {row.reading}")
        if row.notes:
            lines.append(f"  {row.notes}")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--rows", nargs="+", metavar="ID", help="only these rows, in this order (default: all)")
    parser.add_argument("--seeds", type=int, help="seeds per row (default: each row's own)")
    parser.add_argument("--ledger", type=Path, default=DEFAULT_LEDGER,
                        help="the record of finished runs that the table is also written from")
    parser.add_argument("--only-table", action="store_true", help="rebuild the table from finished runs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train what is missing (unless --only-table), then write the markdown table."""
    args = parse_args(argv)
    rows = load_manifest(args.manifest)
    known = {row.id for row in rows}
    unknown = sorted(set(args.rows or []) - known)
    if unknown:
        print(f"unknown row ids {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    ledger = Ledger(args.ledger)
    if not args.only_table:
        by_id = {row.id: row for row in rows}
        for row_id in args.rows or list(by_id):  # in the order given on the command line
            train_row(by_id[row_id], args.seeds or by_id[row_id].seeds, ledger)
    results = {row.id: collect(row, row.seeds, ledger) for row in rows}
    ledger.save()
    progress = {row.id: collect_progress(row, row.seeds) for row in rows}
    engines = {row.id: engine_of(row) for row in rows}
    settings = {row.id: settings_text(row) for row in rows}
    command = "scripts/reproduce.py --only-table"
    header = (
        f"Generated by `.venv/bin/python {command}` from the finished runs under `runs/` and the ledger "
        f"`{shown(args.ledger.resolve())}` (manifest: `{shown(args.manifest.resolve())}`) on "
        f"{dt.date.today().isoformat()}; do not edit by hand.  \nTable written on: {machine()}. "
        "The ledger records the machine of each run. Rows trained over several sessions on the project's "
        "2-core machines of the day, often sharing the cores with other work, so the wall times are "
        "indicative only."
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(rows, results, engines, header, progress, settings), encoding="utf-8")
    print(f"wrote {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
