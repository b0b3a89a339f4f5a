"""Fault injection: kill, interrupt, starve and misuse trainlab, and count what survives.

    .venv/bin/python scripts/faults.py                 # the whole run (under 10 minutes on 2 cores)
    .venv/bin/python scripts/faults.py --quick         # a subset (well under a minute; the tests run it)
    .venv/bin/python scripts/faults.py --write-readme  # ...and write its table into README.md

It prints one table: for each fault, how often it was injected, how many runs survived it
(resumed to the identical result, or refused with a clean error), the files left that do not
parse (or temporary files left once the directory was reopened), the finished results lost
or changed, and the Python tracebacks on the children's output. The faults:

- kill -9 at moments drawn with ``--seed`` from the events of an uninterrupted run of the same
  config (training steps, evaluations, checkpoint and other file writes, appends to run.log
  and steps.csv, the report; see scripts/faults_child.py), on both engines, and at random
  times from outside; each killed run is resumed with ``trainlab run --resume DIR`` and
  compared bit for bit with the uninterrupted run (metrics.csv, steps.csv, summary.json
  without its clock figures, predictions.npz);
- SIGTERM and SIGINT the same way: exit 130, the true resume step, then the identical result;
- a disk that fills during a checkpoint write (a tmpfs where one can be mounted, else
  RLIMIT_FSIZE); 8 runs of one config started in the same instant; a study whose worker,
  then whose coordinator, is killed (scripts/faults_studies.py);
- the bad inputs of issue 25 (scripts/faults_inputs.py).

Everything happens in a temporary folder (``--keep`` keeps it). The exit status is 0 when
every fault was survived with nothing invalid, lost or traced back, else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from faults_env import Case, Workspace
from faults_inputs import DAMAGE, Inputs
from faults_runs import (
    Reference,
    disk_full,
    interrupt,
    kill_at_time,
    reference,
    same_instant,
    tmpfs_mountable,
)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
COLUMNS = ("fault", "times injected", "survived", "files invalid", "results lost", "tracebacks")

KILL = {"step": "kill -9 in a training step", "eval": "kill -9 in an evaluation",
        "checkpoint": "kill -9 in a checkpoint write", "write": "kill -9 in another file's write",
        "append": "kill -9 in an append to run.log / steps.csv", "report": "kill -9 in the report"}
AT_TIME = "kill -9 at a random time (from outside)"
TERM, INT = "SIGTERM (stop at the step reached)", "SIGINT / Ctrl-C"
DISK, SAME = "disk full in a checkpoint write", "runs of one config started at once"
WORKER, COORDINATOR = "study: a worker killed mid-trial", "study: coordinator killed, relaunched"
RUN_ID_UP, RUN_ID_PARENT, RUN_ID_ABS = "--run-id ../../x", "--run-id .. --overwrite", "--run-id /abs --overwrite"
EDITED, CHANGED = "config.yaml edited, then resume", "data changed, then resume"
DAMAGED = "damaged checkpoint.npz on evaluate, predict, resume"
BOMB, CACHE = "decompression bomb (PNG header)", "read-only cache, image-folder archive"
UNWRITABLE = "unwritable output: study, report, predict --out"
HIDDEN, EPOCHS, LR = "hidden: [99999999999]", "epochs: true", "lr: .inf"
ROWS = (*KILL.values(), AT_TIME, TERM, INT, DISK, SAME, WORKER, COORDINATOR, RUN_ID_UP, RUN_ID_PARENT,
        RUN_ID_ABS, EDITED, CHANGED, DAMAGED, BOMB, CACHE, UNWRITABLE, HIDDEN, EPOCHS, LR)

Task = Callable[[], "Case | list[Case] | None"]  # None: the fault could not be injected here


class Plan:
    """The faults of one run, drawn with ``seed``: ``parallel`` tasks share the cores,
    ``alone`` ones (many processes of their own, or timed from outside) run one at a time."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.parallel: list[Task] = []
        self.alone: list[Task] = []
        self._drawn: set[tuple[str, str, str, int]] = set()

    def signals(self, ws: Workspace, ref: Reference, sig: str, phases: dict[str, int]) -> None:
        """``sig`` at ``count`` distinct moments of each phase, drawn from ``ref``'s events."""
        for phase, count in phases.items():
            moments = sorted(n for n in range(1, ref.counts.get(phase, 0) + 1)
                             if (ref.name, sig, phase, n) not in self._drawn)
            for n in self.rng.sample(moments, min(count, len(moments))):
                self.moment(ws, ref, sig, phase, n, round(self.rng.uniform(0.05, 0.95), 2))

    def moment(self, ws: Workspace, ref: Reference, sig: str, phase: str, n: int, cut: float) -> None:
        """``sig`` at the ``n``-th event of ``phase`` (a write cut after the fraction ``cut``)."""
        self._drawn.add((ref.name, sig, phase, n))
        row = {"KILL": KILL[phase], "TERM": TERM, "INT": INT}[sig]
        self.parallel.append(lambda: interrupt(ws, ref, row, sig, phase, n, cut))

    def kills_at_time(self, ws: Workspace, ref: Reference, count: int) -> None:
        for _ in range(count):
            delay = round(self.rng.uniform(0.0, 0.8 * ref.train_seconds), 2)  # while it trains
            self.alone.append(lambda delay=delay: kill_at_time(ws, ref, AT_TIME, delay))


def plan_runs(plan: Plan, ws: Workspace, refs: dict[str, Reference], quick: bool, mountable: bool) -> None:
    """The kills, interrupts, full disks and simultaneous starts."""
    numpy = refs["numpy"]
    plan.moment(ws, numpy, "KILL", "append", numpy.counts["append"], 0.5)  # the last log line: a
    # resume must not run on from it (it did, until resume_run_dir cut a torn line)
    if quick:
        plan.signals(ws, numpy, "KILL", {"step": 1, "eval": 1, "checkpoint": 1})
        plan.signals(ws, numpy, "TERM", {"step": 1})
        plan.signals(ws, numpy, "INT", {"checkpoint": 1})
        plan.alone.append(lambda: disk_full(ws, numpy, DISK, mountable))
        plan.alone.append(lambda: same_instant(ws, numpy, SAME, 4))
        return
    torch = refs["torch"]
    plan.signals(ws, numpy, "KILL", {"step": 3, "eval": 2, "checkpoint": 3, "write": 2, "append": 1})
    plan.signals(ws, torch, "KILL", {"step": 2, "eval": 2, "checkpoint": 3, "write": 1, "append": 1})
    plan.signals(ws, refs["numpy-report"], "KILL", {"report": 2})
    plan.signals(ws, refs["torch-report"], "KILL", {"report": 1})
    for sig in ("TERM", "INT"):
        plan.signals(ws, numpy, sig, {"step": 1, "eval": 1, "checkpoint": 1})
        plan.signals(ws, torch, sig, {"step": 1, "checkpoint": 1})
        plan.signals(ws, refs["numpy-report"], sig, {"report": 1})
    plan.kills_at_time(ws, numpy, 2)
    plan.kills_at_time(ws, torch, 2)
    plan.alone += [lambda: disk_full(ws, numpy, DISK, mountable), lambda: disk_full(ws, torch, DISK, mountable),
                   lambda: same_instant(ws, numpy, SAME, 8)]


def plan_studies(plan: Plan, ws: Workspace) -> None:
    import faults_studies as studies  # optuna is imported only here

    def both() -> list[Case]:
        cases = [studies.worker_killed(ws, WORKER), studies.coordinator_killed(ws, COORDINATOR)]
        studies.same_trials(cases, ws)
        return cases

    plan.alone.append(both)


def plan_inputs(plan: Plan, inputs: Inputs, quick: bool) -> None:
    tasks: list[Task] = [
        lambda: inputs.run_id(RUN_ID_UP, "../../x", False),
        lambda: inputs.run_id(RUN_ID_PARENT, "..", True),
        lambda: inputs.run_id(RUN_ID_ABS, str(inputs.ws.root / "victim"), True),
        lambda: inputs.edited_config(EDITED),
        lambda: inputs.config_value(EPOCHS, "validate", "train", "epochs", True, "train.epochs"),
        lambda: inputs.config_value(LR, "validate", "optimizer", "lr", float("inf"), "optimizer.lr"),
    ]
    if quick:
        tasks += [lambda: inputs.damaged_checkpoint(DAMAGED, "truncated", "resume"),
                  lambda: inputs.damaged_checkpoint(DAMAGED, "pickled", "evaluate")]
    else:
        tasks += [lambda d=damage, c=command: inputs.damaged_checkpoint(DAMAGED, d, c)
                  for damage in DAMAGE for command in ("evaluate", "predict", "resume")]
        tasks += [
            lambda: inputs.changed_data(CHANGED),
            lambda: inputs.bomb(BOMB, skip=False), lambda: inputs.bomb(BOMB, skip=True),
            lambda: inputs.read_only_cache(CACHE),
            *[lambda c=command: inputs.unwritable(UNWRITABLE, c) for command in ("study", "report", "predict")],
            lambda: inputs.config_value(EPOCHS, "run", "train", "epochs", True, "train.epochs"),
            lambda: inputs.config_value(LR, "run", "optimizer", "lr", float("inf"), "optimizer.lr"),
            lambda: inputs.config_value(HIDDEN, "validate", "model", "hidden", [99999999999], "memory"),
            lambda: inputs.config_value(HIDDEN, "run", "model", "hidden", [99999999999], "memory"),
        ]
    plan.parallel += tasks


def run_plan(plan: Plan, jobs: int) -> list[Case]:
    """Every task, reported as it ends; a task that raises is a case that did not survive."""
    cases: list[Case] = []

    def done(task: Task) -> list[Case]:
        try:
            result = task()
        except Exception as exc:  # the script's own failure must show, not stop the others
            result = Case("(faults.py itself)", "a task raised", notes=[f"{type(exc).__name__}: {exc}"])
        found = result if isinstance(result, list) else [] if result is None else [result]
        for case in found:
            state = "ok  " if case.survived and not (case.invalid or case.lost or case.tracebacks) else "FAIL"
            print(f"{state} {case.fault}: {case.what}", file=sys.stderr, flush=True)
        return found

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for found in pool.map(done, plan.parallel):
            cases += found
    for task in plan.alone:
        cases += done(task)
    return cases


def table(cases: list[Case]) -> list[list[str]]:
    """The rows of the table (in :data:`ROWS` order) and a total."""
    rows = []
    for fault in [*ROWS, *sorted({c.fault for c in cases} - set(ROWS))]:
        mine = [c for c in cases if c.fault == fault]
        if mine:
            rows.append([fault, *map(str, _figures(mine))])
    return [*rows, ["total", *map(str, _figures(cases))]]


def _figures(cases: list[Case]) -> tuple[int, int, int, int, int]:
    return (len(cases), sum(c.survived for c in cases), sum(len(c.invalid) for c in cases),
            sum(c.lost for c in cases), sum(c.tracebacks for c in cases))


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|---" + "|--:" * (len(COLUMNS) - 1) + "|"]
        return "\n".join(lines + ["| " + " | ".join(f"`{c}`" if c.startswith("--") else c for c in row) + " |"
                                  for row in rows])
    widths = [max(len(str(row[i])) for row in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    line = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))  # noqa: E731
    return "\n".join([line(list(COLUMNS)), line(["-" * w for w in widths]), *map(line, rows)])


def machine() -> str:
    """The CPU, its cores and the load when the run started."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else model
    return f"{os.cpu_count()} cores ({model}), load average {os.getloadavg()[0]:.1f} at the start"


def write_readme(rows: list[list[str]], command: str, header: str) -> None:
    """Replace the table between the markers of README.md."""
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} markers to write the table between")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    block = f"\n{header}\n\n```bash\n{command}\n```\n\n{render(rows, markdown=True)}\n"
    README.write_text(text[:start] + block + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset (numpy engine, no studies): well under a minute")
    parser.add_argument("--seed", type=int, default=0, help="draws the moments of the kills (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="faults injected at once (default 2)")
    parser.add_argument("--write-readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--json", type=Path, help="also write the cases and the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    started, load = time.monotonic(), machine()
    root = Path(tempfile.mkdtemp(prefix="trainlab-faults-"))
    try:
        ws = Workspace(root)
        mountable = tmpfs_mountable(ws)
        names = ["numpy"] if args.quick else ["numpy", "torch", "numpy-report", "torch-report"]
        refs = {name: reference(ws, name, name.split("-")[0], report=name.endswith("report")) for name in names}
        stop = ws.trainlab(["run", str(refs["numpy"].config), "--run-id", "interrupted", "--no-progress"],
                           ("TERM", "step", 100, 0.0))
        if stop.rc != 130:
            raise SystemExit(f"the run to resume in the bad-input faults did not stop:\n{stop.output}")
        plan = Plan(args.seed)
        plan_runs(plan, ws, refs, args.quick, mountable)
        if not args.quick:
            plan_studies(plan, ws)
        plan_inputs(plan, Inputs(ws, refs["numpy"], ws.runs / "numpy" / "interrupted", mountable), args.quick)
        cases = run_plan(plan, args.jobs)
    finally:
        if args.keep:
            print(f"work folder: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.monotonic() - started
    rows = table(cases)
    for case in cases:
        for note in [*case.notes, *case.invalid]:
            print(f"{case.fault} / {case.what}: {note}")
    print(render(rows, markdown=False))
    command = ".venv/bin/python scripts/faults.py" + (" --quick" if args.quick else "") + \
        (f" --seed {args.seed}" if args.seed else "")
    header = (f"{dt.date.today():%Y-%m-%d}, {load}; {'tmpfs' if mountable else 'RLIMIT_FSIZE'} for the "
              f"full disk; wall time {seconds // 60:.0f} min {seconds % 60:.0f} s:")
    print(f"\n{len(cases)} faults in {seconds:.0f} s; {header[:-1]}")
    if args.write_readme:
        write_readme(rows, command, header)
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "columns": COLUMNS, "rows": rows,
                                         "cases": [vars(c) for c in cases]}, indent=1), encoding="utf-8")
    total = rows[-1]
    return 0 if total[1] == total[2] and total[3:] == ["0", "0", "0"] else 1


if __name__ == "__main__":
    sys.exit(main())
