"""The run directory: resolved config, metrics, summary, log and checkpoint of one run.

Layout of ``runs/<name>/<run-id>/``::

    config.yaml      the resolved config, with seed, package versions and a data fingerprint
    metrics.csv      one row per evaluation (epoch, step, split, loss, accuracy, lr, elapsed, ...)
    steps.csv        with train.log_steps: step, epoch, loss, lr, elapsed every N steps
    summary.json     final figures (test_accuracy, test_loss, best_val_accuracy, ...)
    run.log          a plain-text log of the run
    checkpoint.npz / checkpoint.pt   whatever the engine needs to resume exactly

Every file is written atomically (see :mod:`trainlab.io`), so a run killed at any moment
leaves complete files behind and can be resumed or reported.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import platform
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from trainlab.errors import RunDirError
from trainlab.io import atomic_write_json, atomic_write_text

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STEPS_FILE = "steps.csv"
SUMMARY_FILE = "summary.json"
LOG_FILE = "run.log"

# Leading metrics columns in a fixed order; engines may add any others after these.
METRICS_COLUMNS = ("epoch", "step", "split", "loss", "accuracy", "lr")

SUMMARY_KEYS = (
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "epochs",
    "steps",
    "train_seconds",
    "images_per_second",
    "params",
    "status",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the installed packages that decide a run's numbers.

    Read from the package metadata, so a NumPy run does not pay for importing torch.
    """
    versions = {"python": platform.python_version()}
    for package in ("trainlab", "numpy", "torch", "pydantic"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def default_run_id(seed: int) -> str:
    """A run id that sorts by start time and names the seed, e.g. ``20261124-101530-s0``."""
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-s{seed}"


@dataclass
class RunDir:
    """One run's directory and its files. Create with :func:`create_run_dir` or :func:`open_run_dir`."""

    path: Path
    _rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _columns: list[str] = field(default_factory=lambda: list(METRICS_COLUMNS), repr=False)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def steps_path(self) -> Path:
        return self.path / STEPS_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def checkpoint_path(self, suffix: str = ".npz") -> Path:
        """Path of the checkpoint file; the engine picks the suffix (``.npz`` or ``.pt``)."""
        return self.path / f"checkpoint{suffix}"

    # -- config ---------------------------------------------------------------------------
    def write_config(self, resolved: Mapping[str, Any]) -> None:
        """Write the resolved config (a plain dict) as YAML."""
        text = yaml.safe_dump(dict(resolved), sort_keys=False, default_flow_style=None)
        atomic_write_text(self.config_path, text)

    def read_config(self) -> dict[str, Any]:
        """The resolved config as written by :meth:`write_config`."""
        if not self.config_path.exists():
            raise RunDirError(f"{self.path}: no {CONFIG_FILE}; is this a trainlab run directory?")
        loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise RunDirError(f"{self.config_path}: not a mapping")
        return loaded

    # -- metrics --------------------------------------------------------------------------
    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The metrics rows written so far (a copy)."""
        return [dict(row) for row in self._rows]

    def append_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows and rewrite ``metrics.csv`` atomically (metrics files are small)."""
        for row in rows:
            for key in row:
                if key not in self._columns:
                    self._columns.append(key)
            self._rows.append(dict(row))
        self._flush_metrics()

    def truncate_metrics(self, last_step: int) -> None:
        """Drop rows after ``last_step``: on resume, rows logged after the checkpoint are redone."""
        self._rows = [row for row in self._rows if int(row.get("step", 0)) <= last_step]
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns, lineterminator="\n")
        writer.writeheader()
        for row in self._rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in self._columns})
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def load_metrics(self) -> None:
        """Read ``metrics.csv`` back into memory (numbers parsed, empty cells dropped)."""
        self._rows, self._columns = read_metrics_csv(self.metrics_path)

    # -- summary and log ------------------------------------------------------------------
    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        atomic_write_json(self.summary_path, dict(summary))

    def read_summary(self) -> dict[str, Any]:
        """The summary, or an empty dict when the run has not written one yet."""
        if not self.summary_path.exists():
            return {}
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    def log(self, message: str) -> None:
        """Append a time-stamped line to ``run.log`` (append-only, so a torn last line is harmless)."""
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "item"):  # NumPy scalars
        return _csv_value(value.item())
    return value


def _parse_cell(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_metrics_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (numbers parsed, empty cells left out) and column names of a ``metrics.csv``."""
    if not path.exists():
        return [], list(METRICS_COLUMNS)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or METRICS_COLUMNS)
        rows = [{k: _parse_cell(v) for k, v in row.items() if v not in ("", None)} for row in reader]
    return rows, columns


def create_run_dir(
    output_dir: str | Path,
    name: str,
    run_id: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> RunDir:
    """Create (or reopen for resume) ``output_dir/name/run_id``.

    Args:
        output_dir: the runs root, e.g. ``runs``.
        name: the run (or study) name from the config.
        run_id: the run's id inside that folder.
        resume: reopen an existing run directory to continue it. Default False.
        overwrite: delete an existing run directory's files and start again. Default False.

    Raises:
        RunDirError: the directory exists and neither flag was given, or it cannot be written.
    """
    path = Path(output_dir) / name / run_id
    exists = path.exists() and any(path.iterdir())
    if exists and not (resume or overwrite):
        raise RunDirError(
            f"run directory {path} already exists; pass --resume {path} to continue it, "
            "--overwrite to start it again, or choose another --run-id"
        )
    if resume and not exists:
        raise RunDirError(f"cannot resume {path}: it does not exist or is empty")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(
            f"cannot write the run directory {path}: {exc.strerror or exc}; "
            "set output.dir (or --set output.dir=...) to a writable folder"
        ) from exc
    if exists and overwrite and not resume:
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    run = RunDir(path)
    if resume:
        run.load_metrics()
    return run


def open_run_dir(path: str | Path) -> RunDir:
    """Open an existing run directory for reading (config, metrics, summary)."""
    run_path = Path(path)
    if not (run_path / CONFIG_FILE).exists():
        raise RunDirError(f"{run_path} is not a trainlab run directory (no {CONFIG_FILE} there)")
    run = RunDir(run_path)
    run.load_metrics()
    return run


__all__ = [
    "CONFIG_FILE",
    "LOG_FILE",
    "METRICS_COLUMNS",
    "METRICS_FILE",
    "STEPS_FILE",
    "SUMMARY_FILE",
    "SUMMARY_KEYS",
    "RunDir",
    "create_run_dir",
    "default_run_id",
    "open_run_dir",
    "package_versions",
    "read_metrics_csv",
]
