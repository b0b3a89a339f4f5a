"""The workspace of ``scripts/faults.py``: a synthetic dataset, tiny configs, the children it
starts and :class:`Case`, the outcome of one injected fault.

Everything lives in one temporary folder; the children get one thread each and a cache of
their own there, never the user's.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from faults_check import error_lines, has_traceback, invalid_files, temp_files

SCRIPTS = Path(__file__).resolve().parent
CHILD = SCRIPTS / "faults_child.py"
NO_FAULT = ("KILL", "none", 0, 0.0)


@dataclass
class Outcome:
    """A finished child: exit status (negative: the signal that ended it) and output."""

    rc: int
    output: str
    seconds: float


@dataclass
class Case:
    """One injected fault and what it left: a table row sums the cases of its ``fault``."""

    fault: str
    what: str
    survived: bool = False
    invalid: list[str] = field(default_factory=list)
    lost: int = 0
    tracebacks: int = 0
    notes: list[str] = field(default_factory=list)

    def child(self, outcome: Outcome) -> Outcome:
        """Note a traceback in a child's output; return the outcome."""
        if has_traceback(outcome.output):
            self.tracebacks += 1
            self.notes.append("traceback: " + outcome.output.strip().splitlines()[-1][:160])
        return outcome

    def files(self, run: Path, reopened: bool = True, skip: tuple[str, ...] = ()) -> bool:
        """Check every file of ``run``; once ``reopened``, no temporary file and no torn line may remain."""
        problems = [p for p in invalid_files(run, torn_ok=not reopened) if not p.startswith(skip)]
        if reopened:
            problems += [f"{p.relative_to(run)}: temporary file left" for p in temp_files(run)]
        self.invalid += [f"{run.name}/{p}" for p in problems]
        return not problems

    def refused(self, outcome: Outcome, code: int, *parts: str) -> bool:
        """Whether ``outcome`` is a clean refusal: exit ``code``, one ``error:`` line holding ``parts``."""
        lines = error_lines(outcome.output)
        if outcome.rc != code or len(lines) != 1 or has_traceback(outcome.output):
            self.notes.append(f"exit {outcome.rc} (wanted {code}): {_tail(outcome.output)}")
            return False
        missing = [part for part in parts if part not in lines[0]]
        if missing:
            self.notes.append(f"the error line lacks {missing}: {lines[0][:200]}")
        return not missing

    def fail(self, note: str) -> bool:
        """Note why the case did not survive; False, for ``ok = check or case.fail(...)``."""
        self.notes.append(note)
        return False


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-2:])[:240]


def idx_bytes(array: np.ndarray) -> bytes:
    """An array as an IDX file (the MNIST format): magic, big-endian sizes, the bytes."""
    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_digits(folder: Path, seed: int = 0, n_train: int = 400, n_test: int = 100) -> Path:
    """A tiny MNIST-like folder: noisy 28x28 images with a bar whose place gives the class."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 140, (n, 28, 28)).astype(np.uint8)  # (N, 28, 28)
        for i, label in enumerate(labels):
            images[i, 2 * label: 2 * label + 4, 4:24] += 100
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return folder


class Workspace:
    """The folder of one faults run: data, configs, runs, cache; children are started from here.

    Args:
        root: an empty folder.
        timeout: seconds a child may take before it is killed (and the case fails).
    """

    def __init__(self, root: Path, timeout: float = 240.0) -> None:
        self.root, self.timeout = root, timeout
        self.data = write_digits(root / "data" / "mnist")
        self.runs = root / "runs"
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAINLAB_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "TRAINLAB_CACHE": str(root / "cache"), "COLUMNS": "200"}
        self.env.pop("TRAINLAB_STORAGE", None)
        entry = Path(sys.executable).with_name("trainlab")  # the `trainlab` command itself, where installed
        self.command = [str(entry)] if entry.exists() else [sys.executable, "-m", "trainlab.cli"]

    def config(self, name: str, engine: str = "numpy", report: bool = False, **sections: Any) -> Path:
        """A tiny run config: 270 steps, an evaluation every 7 steps, a checkpoint at each one."""
        config: dict[str, Any] = {
            "name": name, "seed": 0, "engine": engine,
            "data": {"dataset": str(self.data), "normalize": "channel", "val_fraction": 0.1},
            "model": {"type": "mlp", "hidden": [32], "dropout": 0.1},
            "optimizer": {"type": "adam", "lr": 0.002},
            "train": {"epochs": 15, "batch_size": 20, "eval_every": 7, "checkpoint_every": 1, "log_steps": 1},
            "output": {"dir": str(self.runs), "report": report},
        }
        for key, value in sections.items():  # a section given is merged into the default one
            config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
        path = self.root / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    def argv(self, args: list[str], fault: tuple[str, str, int, float] = NO_FAULT,
             go: Path | None = None) -> list[str]:
        """The command line of ``trainlab ARGS``, through the fault child when a fault is armed
        or the start waits for the file ``go``."""
        if fault[1] == "none" and go is None:
            return [*self.command, *args]
        armed = [str(part) for part in fault] + ([str(go)] if go is not None else [])
        return [sys.executable, str(CHILD), *armed, "--", *args]

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a child in a process group of its own (so that a timeout ends all of it)."""
        return subprocess.Popen(argv, cwd=self.root, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def finish(self, proc: subprocess.Popen[str], started: float, timeout: float | None = None) -> Outcome:
        """Wait for ``proc``; past the timeout its group is killed and the outcome says so."""
        try:
            output, _ = proc.communicate(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            end_group(proc)
            output, _ = proc.communicate()
            output += f"\n[faults] timed out after {timeout or self.timeout:.0f} s"
        return Outcome(proc.returncode, output, time.monotonic() - started)

    def trainlab(self, args: list[str], fault: tuple[str, str, int, float] = NO_FAULT,
                 prefix: list[str] | None = None, env: dict[str, str] | None = None) -> Outcome:
        """Run ``trainlab ARGS`` (after ``prefix``, a wrapper such as unshare) to its end."""
        started = time.monotonic()
        return self.finish(self.start([*(prefix or []), *self.argv(args, fault)], env), started)

    def copy_run(self, run: Path, name: str) -> Path:
        """A copy of the run directory ``run`` beside it, named ``name``."""
        target = run.parent / name
        shutil.copytree(run, target)
        return target


def end_group(proc: subprocess.Popen[Any]) -> None:
    """Kill the process group of a child this script started (it and what it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
