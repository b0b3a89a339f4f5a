"""Run the seed-study reproductions listed in a manifest and write docs/reproductions.md.

Each manifest row names a config, the published figure and how many seeds to run. Every
(row, seed) trains once into ``runs/<config name>/<row id>-s<seed>-<config hash>``; the hash
covers the resolved config (as written, seed and output left out), so editing a config's reading makes
its old runs stale instead of silently reused. Finished runs are skipped, so the script can be
stopped and started again, row by row::

    TRAINLAB_DATA=/work/shared/datasets .venv/bin/python scripts/reproduce.py            # everything
    .venv/bin/python scripts/reproduce.py --rows D1 D2 --seeds 1                          # some rows
    .venv/bin/python scripts/reproduce.py --only-table                                    # just the table

The engine (numpy or torch) and precision of a row come from its config, so rows of either
engine share the manifest.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = ROOT / "configs" / "reproductions.yaml"
DEFAULT_OUTPUT = ROOT / "docs" / "reproductions.md"
FINISHED = ("completed", "stopped_early", "failed")  # "failed": diverged, kept as a result
TOLERANCE = 1.0  # points of accuracy the mean may fall below the published figure


@dataclass
class Row:
    """One manifest row: a published figure and the config that reproduces it.

    Attributes:
        id: short unique name (``D1``), used by ``--rows``.
        table: source table and row in the reference, e.g. ``D, row 1``.
        description: the setting, in a few words.
        config: path of the run config, relative to the repository root.
        published: the published figure in percent, or None for a qualitative row.
        expect: qualitative rows: ``{"max": 20}`` / ``{"min": 90}`` (percent) that every seed must meet.
        published_text: how the published figure is shown (default: the number).
        metric: the summary field compared (default ``test_accuracy``).
        seeds: how many seeds to run (default 5).
        overrides: ``key=value`` overrides applied on top of the config (default none).
        reading: the reading chosen for details the source leaves unstated.
        notes: what else was tried, or why the row runs shorter than published.
    """

    id: str
    table: str
    description: str
    config: str
    published: float | None = None
    expect: dict[str, float] = field(default_factory=dict)
    published_text: str = ""
    metric: str = "test_accuracy"
    seeds: int = 5
    overrides: list[str] = field(default_factory=list)
    reading: str = ""
    notes: str = ""


@dataclass
class Result:
    """The outcome of one finished (row, seed) run."""

    seed: int
    status: str
    value: float | None  # the metric in percent; None when the run diverged
    seconds: float
    epochs: float | None = None  # epochs trained (fewer than asked after early stopping)


def load_manifest(path: Path) -> list[Row]:
    """The rows of a manifest file (``defaults:`` merged into each row)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = data.get("defaults", {})
    rows = [Row(**{**defaults, **entry}) for entry in data["rows"]]
    ids = [row.id for row in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate row ids {duplicates}")
    return rows


def resolved_config(row: Row, seed: int = 0) -> dict[str, Any]:
    """The row's config for ``seed``, bases merged and overrides applied, as a plain dict."""
    from trainlab.config import load_config

    config = load_config(ROOT / row.config, [*row.overrides, f"seed={seed}"])
    return config.model_dump(mode="json")


def config_hash(raw: dict[str, Any], overrides: Sequence[str] = ()) -> str:
    """Eight hex digits identifying a config as written (bases merged) plus its overrides.

    Seed, name and output are left out. The unvalidated mapping is hashed, not the resolved
    config, so a new field with a default in trainlab's schema does not make old runs stale.
    """
    kept = {k: v for k, v in raw.items() if k not in ("seed", "output", "name")}
    text = json.dumps([kept, sorted(o for o in overrides if not o.startswith("seed="))],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_dir(row: Row, seed: int) -> Path:
    """Where the run of ``row`` with ``seed`` lives."""
    from trainlab.config import load_config_dict

    config = resolved_config(row, seed)
    digest = config_hash(load_config_dict(ROOT / row.config), row.overrides)
    return ROOT / config["output"]["dir"] / config["name"] / f"{row.id}-s{seed}-{digest}"


@dataclass
class Progress:
    """How far an unfinished (row, seed) run got before it was cut off (its last checkpoint)."""

    seed: int
    epoch: int
    seconds: float  # training time up to the checkpoint
    split: str  # the split of ``value``: the metric's own, else val
    value: float | None  # accuracy in percent at the checkpoint's epoch


def checkpoint_meta(path: Path) -> dict[str, Any] | None:
    """The bookkeeping of a run directory's checkpoint (step, epoch, train_seconds), if any."""
    if (path / "checkpoint.npz").exists():
        import numpy as np

        with np.load(path / "checkpoint.npz", allow_pickle=False) as saved:
            return dict(json.loads(str(saved["meta"])))
    if (path / "checkpoint.pt").exists():
        from trainlab.engines.torch.checkpoint import load_checkpoint

        # mmap: only the small meta string is read, not the weights and optimizer state
        return dict(json.loads(load_checkpoint(path / "checkpoint.pt", mmap=True)["meta"]))
    return None


def read_progress(path: Path, seed: int, metric: str) -> Progress | None:
    """The progress of an unfinished run that can be resumed, or None (finished or never started)."""
    if read_result(path, seed, metric) is not None or not can_resume(path):
        return None
    meta = checkpoint_meta(path)
    if meta is None:
        return None
    epoch = int(meta["epoch"])
    wanted = "test" if metric.startswith("test") or metric.endswith("test_accuracy") else "val"
    latest: dict[str, float] = {}
    metrics_path = path / "metrics.csv"
    if metrics_path.exists():
        with metrics_path.open(encoding="utf-8", newline="") as handle:
            for line in csv.DictReader(handle):
                if line.get("epoch") and int(float(line["epoch"])) <= epoch and line.get("accuracy"):
                    latest[line["split"]] = 100.0 * float(line["accuracy"])
    split = wanted if wanted in latest else "val"
    return Progress(seed=seed, epoch=epoch, seconds=float(meta.get("train_seconds", 0.0)), split=split,
                    value=latest.get(split))


def read_result(path: Path, seed: int, metric: str) -> Result | None:
    """The result stored in a run directory, or None when the run has not finished."""
    summary_path = path / "summary.json"
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    status = summary.get("status", "")
    if status not in FINISHED:
        return None
    value = summary.get(metric)
    seconds = float(summary.get("train_seconds") or 0.0)
    wall_path = path / "reproduce.json"
    if wall_path.exists():
        wall = json.loads(wall_path.read_text(encoding="utf-8"))
        seconds = float(wall.get("wall_seconds", seconds))
    percent = 100.0 * float(value) if isinstance(value, int | float) and status != "failed" else None
    epochs = summary.get("epochs")
    return Result(seed=seed, status=status, value=percent, seconds=seconds,
                  epochs=float(epochs) if isinstance(epochs, int | float) else None)


def shown(path: Path) -> Path:
    """``path`` relative to the repository when it lies inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def can_resume(path: Path) -> bool:
    """Whether ``path`` holds an unfinished run that can continue from its checkpoint.

    A run cut off by the end of a session (or a kill) keeps its per-epoch checkpoint;
    continuing it gives the metrics of an uninterrupted run, so it is not started over.
    """
    return (path / "config.yaml").exists() and any(path.glob("checkpoint.*"))


def train_row(row: Row, seeds: int) -> None:
    """Train every missing seed of ``row`` (seeds 0..seeds-1), one after the other."""
    import trainlab.api as tl
    from trainlab.errors import TrainingError

    for seed in range(seeds):
        path = run_dir(row, seed)
        if read_result(path, seed, row.metric) is not None:
            print(f"{row.id} seed {seed}: done already ({shown(path)})", flush=True)
            continue
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
        elapsed = time.perf_counter() - started
        # A resumed run's wall clock is lost with the process that was cut off; its training
        # time (carried over the resume by the checkpoint) stands in for it.
        wall = {"resumed_seconds": elapsed} if resuming else {"wall_seconds": elapsed}
        (path / "reproduce.json").write_text(json.dumps(wall), encoding="utf-8")
        result = read_result(path, seed, row.metric)
        outcome = "diverged" if result is None or result.value is None else f"{result.value:.2f} %"
        print(f"{row.id} seed {seed}: {outcome} in {elapsed:.0f} s", flush=True)


def collect(row: Row, seeds: int) -> list[Result]:
    """The finished results of seeds 0..seeds-1 of ``row`` (missing runs left out)."""
    from trainlab.errors import ConfigError

    results = []
    for seed in range(seeds):
        try:
            path = run_dir(row, seed)
        except ConfigError as error:  # a broken row must not stop the table of the others
            print(f"{row.id}: {error}", file=sys.stderr)
            return []
        result = read_result(path, seed, row.metric)
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


def verdict(row: Row, results: Sequence[Result]) -> str:
    """Whether the row meets its target, in words.

    Numeric rows: met when the mean is at most ``TOLERANCE`` points below the published
    figure and the published figure lies inside the seed range; "better" when every seed
    beats it. Qualitative rows: met when every seed satisfies ``expect``.
    """
    values = [r.value for r in results if r.value is not None]
    if not results:
        return "not run"
    if row.published is None:
        if not row.expect:
            return "no target"
        low, high = row.expect.get("min", -math.inf), row.expect.get("max", math.inf)
        bad = [r for r in results if r.value is None or not low <= r.value <= high]
        bound = " and ".join(
            f"{op} {v:g}" for op, v in (("≥", low), ("≤", high)) if math.isfinite(v)
        )
        return f"met (every seed {bound})" if not bad else f"missed ({len(bad)} of {len(results)} seeds)"
    if len(values) < len(results):
        return f"missed ({len(results) - len(values)} runs diverged)"
    mean = statistics.fmean(values)
    if min(values) > row.published:
        return f"met (better: every seed above, mean +{mean - row.published:.2f})"
    gap = row.published - mean
    in_range = min(values) <= row.published <= max(values)
    if gap <= TOLERANCE and in_range:
        return "met"
    reasons = []
    if gap > TOLERANCE:
        reasons.append(f"mean {gap:.2f} points below")
    if not in_range:
        reasons.append(f"published above the best seed by {row.published - max(values):.2f}")
    return "missed (" + "; ".join(reasons) + ")"


def describe(values: Sequence[float]) -> tuple[str, str]:
    """``("mean ± sd", "[min, max]")`` of percentages; sd over seeds (n - 1).

    A single seed has no spread: it is shown as ``"98.75 (1 seed, no sd)"``.
    """
    if not values:
        return "—", "—"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed, no sd)", f"[{values[0]:.2f}, {values[0]:.2f}]"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}", f"[{min(values):.2f}, {max(values):.2f}]"


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


def render(rows: Sequence[Row], results: dict[str, list[Result]], engines: dict[str, str],
           header: str, progress: dict[str, list[Progress]] | None = None) -> str:
    """The markdown of docs/reproductions.md from rows and their finished results.

    ``progress``: per row id, its unfinished runs (cut off, resumable); shown next to the verdict.
    """
    lines = [
        "# Reproductions of the seed studies",
        "",
        header,
        "",
        "Target per row: the mean over seeds at most 1 point below the published test accuracy "
        "(or better) and the published figure inside the seed range [min, max]. "
        "s/run is the mean wall time of one run (data loading included) on the machine above; "
        "epochs is the mean number of epochs trained (below the config's count when early stopping ended a run).",
        "",
        "The published conclusions of the seed studies' comparisons (optimizers, BN position, initialisations, "
        "regularisers, hidden sizes, the lambda search, the seed A grid...) are checked against trainlab studies "
        "in [studies.md](studies.md) (`scripts/study_outcomes.py`): the measured ranking of each study file and "
        "which conclusions hold beyond seed noise.",
        "",
        "| row | source | setting | published | measured mean ± sd | [min, max] | seeds | target | s/run | epochs | engine | reading |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        got = results.get(row.id, [])
        values = [r.value for r in got if r.value is not None]
        mean_sd, span = describe(values)
        seeds = f"{len(got)}/{row.seeds}" + (" (fewer than asked)" if len(got) < row.seeds else "")
        published = row.published_text or (f"{row.published:.2f}" if row.published is not None else "—")
        seconds = f"{statistics.fmean(r.seconds for r in got):.0f}" if got else "—"
        trained = [r.epochs for r in got if r.epochs is not None]
        epochs = f"{statistics.fmean(trained):.3g}" if trained else "—"
        target = verdict(row, got)
        unfinished = (progress or {}).get(row.id)
        if unfinished:
            target = (f"{target}; " if got else "") + progress_text(row, unfinished)
        cells = [row.id, row.table, row.description, published, mean_sd, span, seeds,
                 target, seconds, epochs, engines.get(row.id, "?"), row.reading]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Commands and notes", ""]
    for row in rows:
        lines.append(f"- **{row.id}** (`{row.config}`): `{rerun_command(row)}`; one seed: `{single_command(row)}`.")
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
    if not args.only_table:
        by_id = {row.id: row for row in rows}
        for row_id in args.rows or list(by_id):  # in the order given on the command line
            train_row(by_id[row_id], args.seeds or by_id[row_id].seeds)
    results = {row.id: collect(row, row.seeds) for row in rows}
    progress = {row.id: collect_progress(row, row.seeds) for row in rows}
    engines = {row.id: engine_of(row) for row in rows}
    command = "scripts/reproduce.py --only-table"
    header = (
        f"Generated by `.venv/bin/python {command}` from the finished runs under `runs/` "
        f"(manifest: `{args.manifest.resolve().relative_to(ROOT)}`) on "
        f"{dt.date.today().isoformat()}; do not edit by hand.  \nTable written on: {machine()}. "
        "Rows trained over several sessions, on the project's 2-core machines of the day (an AMD EPYC "
        "for the first NumPy rows), often sharing the cores with other work or paused while benchmarks "
        "ran, so the wall times are indicative only."
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(rows, results, engines, header, progress), encoding="utf-8")
    print(f"wrote {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
