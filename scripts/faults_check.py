"""What ``scripts/faults.py`` checks after a fault: every file of a run directory parses, no
temporary file is left, and a run's results match an uninterrupted run's bit for bit.

The readers are strict where a file is rewritten atomically (any damage is a defect) and
allow one thing where a file is appended to: a last line without its line end, which a kill
in the middle of an append leaves and which the readers and a resume drop (``torn_ok``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from trainlab.engines.step_log import STEPS_COLUMNS
from trainlab.io import is_temp_file_name
from trainlab.run_files import (
    CONFIG_FILE,
    LOG_FILE,
    MARKER_FILE,
    METRICS_FILE,
    STEPS_FILE,
    SUMMARY_FILE,
)

# Summary keys that measure the clock, not the result: they differ between any two runs.
TIMING_KEYS = frozenset({"train_seconds", "images_per_second"})
# A run.log line starts with its time stamp; one met anywhere else means two lines were merged.
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ")


def temp_files(path: Path) -> list[Path]:
    """The temporary files of atomic writes under ``path``."""
    return sorted(p for p in path.rglob("*") if is_temp_file_name(p.name))


def invalid_files(run: Path, torn_ok: bool = False) -> list[str]:
    """What is wrong with the files of the run directory ``run`` (empty: every file parses).

    Args:
        run: a run directory.
        torn_ok: allow a last line without its line end in the appended files (run.log,
            steps.csv): right after a kill, not once the directory was reopened.
    """
    problems = []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        if is_temp_file_name(path.name):
            continue  # judged by the caller: expected after a kill, not once the dir is reopened
        try:
            problem = _check_file(path, torn_ok)
        except Exception as exc:  # any reader's failure is the finding
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        if problem:
            problems.append(f"{path.relative_to(run)}: {problem}")
    return problems


def _check_file(path: Path, torn_ok: bool) -> str | None:
    name, suffix = path.name, path.suffix
    if name == CONFIG_FILE:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        return None if isinstance(loaded, dict) and "provenance" in loaded else "not a resolved config"
    if name in (SUMMARY_FILE, MARKER_FILE) or suffix == ".json":
        return None if isinstance(json.loads(path.read_text(encoding="utf-8")), dict) else "not a JSON object"
    if name == METRICS_FILE:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        bad = [r for r in rows if None in r or not r.get("step") or not r.get("split")]
        return f"{len(bad)} malformed rows" if bad else None
    if name == STEPS_FILE:
        return _check_steps(path.read_text(encoding="utf-8"), torn_ok)
    if name == LOG_FILE:
        return _check_log(path.read_text(encoding="utf-8"), torn_ok)
    if name.startswith("checkpoint."):
        return _check_checkpoint(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as saved:
            for key in saved.files:
                saved[key]
        return None
    if suffix == ".png":
        with Image.open(path) as image:
            image.verify()
        return None
    if suffix in (".html", ".svg", ".txt", ".md", ".csv"):
        text = path.read_text(encoding="utf-8")
        if suffix == ".html" and "</html>" not in text:
            return "report.html is cut short"
        return None
    return None


def _check_steps(text: str, torn_ok: bool) -> str | None:
    lines = text.split("\n")
    if lines[-1] and not torn_ok:
        return "the last line has no line end"
    whole = lines[:-1]
    if not whole or whole[0] != ",".join(STEPS_COLUMNS):
        return "no header"
    steps = []
    for line in whole[1:]:
        cells = line.split(",")
        if len(cells) != len(STEPS_COLUMNS):
            return f"malformed row {line[:60]!r}"
        [float(cell) for cell in cells]
        steps.append(int(cells[0]))
    return None if steps == sorted(set(steps)) else "steps repeated or out of order"


def _check_log(text: str, torn_ok: bool) -> str | None:
    if text and not text.endswith("\n") and not torn_ok:
        return "the last line has no line end"
    for line in text.splitlines():
        if _STAMP.search(line, 1):
            return f"two lines merged: {line[:80]!r}"
    return None


def _check_checkpoint(path: Path) -> str | None:
    if path.suffix == ".pt":
        from trainlab.engines.torch.checkpoint import load_checkpoint

        load_checkpoint(path)
    else:
        from trainlab.engines.numpy.checkpoint import load_arrays

        load_arrays(path)
    return None


def result_of(run: Path) -> dict[str, Any]:
    """What an interrupted and resumed run must share with an uninterrupted one: metrics.csv
    and steps.csv cell for cell (as text, the clock's column left out), the summary without
    its clock figures, and the test predictions' bytes."""
    result: dict[str, Any] = {}
    for name in (METRICS_FILE, STEPS_FILE):
        if (run / name).exists():
            rows = csv.DictReader(io.StringIO((run / name).read_text(encoding="utf-8")))
            result[name] = [{k: v for k, v in row.items() if k != "elapsed"} for row in rows]
    if (run / SUMMARY_FILE).exists():
        summary = json.loads((run / SUMMARY_FILE).read_text(encoding="utf-8"))
        result[SUMMARY_FILE] = {k: v for k, v in summary.items() if k not in TIMING_KEYS}
    if (run / "predictions.npz").exists():
        with np.load(run / "predictions.npz", allow_pickle=False) as saved:
            digest = hashlib.sha256()
            for key in sorted(saved.files):
                digest.update(key.encode() + np.ascontiguousarray(saved[key]).tobytes())
        result["predictions.npz"] = digest.hexdigest()
    return result


def differences(result: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """The files whose contents differ between two :func:`result_of` (empty: identical)."""
    out = []
    for name in sorted(set(result) | set(reference)):
        if name not in result:
            out.append(f"{name} missing")
        elif result[name] != reference[name]:
            out.append(f"{name} differs{_first_difference(result[name], reference[name])}")
    return out


def _first_difference(got: Any, want: Any) -> str:
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return f" ({len(got)} rows, not {len(want)})"
        row = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        return f" (row {row + 1})"
    if isinstance(got, dict) and isinstance(want, dict):
        keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        return f" ({', '.join(keys[:5])})"
    return ""


def has_traceback(text: str) -> bool:
    """Whether a child's output holds a Python traceback."""
    return "Traceback (most recent call last)" in text


def error_lines(text: str) -> list[str]:
    """The ``error:`` lines the CLI prints for an error it turns into an exit code."""
    return [line for line in text.splitlines() if line.startswith("error:")]
