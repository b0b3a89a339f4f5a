"""The manifest of reproduction rows and what a row's run directories hold.

Used by ``scripts/reproduce.py``: a row names a config, its published figure and how many
seeds to run; each (row, seed) trains into ``runs/<config name>/<row id>-s<seed>-<hash>``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = ROOT / "configs" / "reproductions.yaml"
DEFAULT_OUTPUT = ROOT / "docs" / "reproductions.md"
DEFAULT_LEDGER = ROOT / "docs" / "reproductions.json"
FINISHED = ("completed", "stopped_early", "failed")  # "failed": diverged, kept as a result
# Keys of a config that do not change what runs: the seed (a row runs several), where it
# writes, its name, and the source section (where each setting comes from).
NOT_HASHED = ("seed", "output", "name", "source")


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

    Seed, name, output and the source section are left out. The unvalidated mapping is
    hashed, not the resolved config, so a new field with a default in trainlab's schema does
    not make old runs stale.
    """
    kept = {k: v for k, v in raw.items() if k not in NOT_HASHED}
    text = json.dumps([kept, sorted(o for o in overrides if not o.startswith("seed="))],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def row_hash(row: Row) -> str:
    """The config hash of ``row`` (its file with bases merged, plus its overrides)."""
    from trainlab.config import load_config_dict

    return config_hash(load_config_dict(ROOT / row.config), row.overrides)


def run_dir(row: Row, seed: int) -> Path:
    """Where the run of ``row`` with ``seed`` lives."""
    config = resolved_config(row, seed)
    return ROOT / config["output"]["dir"] / config["name"] / f"{row.id}-s{seed}-{row_hash(row)}"


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


