"""The faults of single runs: kill -9, SIGTERM and SIGINT at planned moments, a full disk, and
8 runs of one config started in the same instant.

Each run is compared with a :class:`Reference`, the same config trained without a fault.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from faults_check import differences, result_of
from faults_env import Case, Outcome, Workspace

from trainlab.engines.resume import checkpoint_step


@dataclass
class Reference:
    """A config trained without a fault: its result, its wall time and how often each event
    of :mod:`faults_child` happened (the range a planned moment is drawn from)."""

    name: str
    engine: str
    config: Path
    result: dict[str, object] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    train_seconds: float = 0.0
    checkpoint_bytes: int = 0


def reference(ws: Workspace, name: str, engine: str, report: bool = False) -> Reference:
    """Train ``name`` (a tiny config of ``engine``) once, counting its events."""
    ref = Reference(name, engine, ws.config(name, engine, report))
    counts = ws.root / f"{name}.counts.json"
    started = time.monotonic()
    outcome = ws.trainlab(["run", str(ref.config), "--run-id", "reference", "--no-progress"],
                          ("KILL", "count", 0, 0.0), env={**ws.env, "FAULTS_COUNTS": str(counts)})
    ref.seconds = time.monotonic() - started
    run = ws.runs / name / "reference"
    if outcome.rc != 0:
        raise SystemExit(f"the reference run {name} failed:\n{outcome.output}")
    ref.result, ref.counts = result_of(run), json.loads(counts.read_text())
    ref.train_seconds = json.loads((run / "summary.json").read_text())["train_seconds"]
    ref.checkpoint_bytes = next(run.glob("checkpoint.*")).stat().st_size
    return ref


def _resume(case: Case, ws: Workspace, ref: Reference, run: Path, run_id: str) -> bool:
    """Resume ``run`` and compare it with ``ref``. With no checkpoint on disk, the right answer
    is a refusal, and then starting again with --overwrite (as that refusal says) must give the
    reference's result."""
    step = checkpoint_step(run, ref.engine)
    resumed = case.child(ws.trainlab(["run", "--resume", str(run), "--no-progress"]))
    if step is None:
        if not case.refused(resumed, 4):
            return False
        resumed = case.child(ws.trainlab(["run", str(ref.config), "--run-id", run_id, "--overwrite",
                                          "--no-progress"]))
    if resumed.rc != 0:
        case.lost += 1
        return case.fail(f"resume exit {resumed.rc}: {resumed.output.strip()[-240:]}")
    ok = case.files(run, reopened=True)
    if step is not None and f"resumed at step {step} of" not in (run / "run.log").read_text(encoding="utf-8"):
        ok = case.fail(f"the resume did not start at the checkpoint's step {step}")
    found = differences(result_of(run), ref.result)
    if found:
        case.lost += 1
        return case.fail("not the reference's result: " + "; ".join(found))
    return ok


def _signalled(case: Case, outcome: Outcome, run: Path, ref: Reference, sig: str, phase: str) -> bool:
    """SIGTERM and SIGINT: exit 130 with the true resume step, or (in the report, after
    training) a run that is complete already."""
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    if phase == "report":
        if outcome.rc in (130, -signal.SIGTERM) and summary.get("status") == "completed":
            return True
        return case.fail(f"exit {outcome.rc}, status {summary.get('status')} after a {sig} in the report")
    found = re.search(r"interrupted at step (\d+); resume with: trainlab run --resume (\S+)", outcome.output)
    step = checkpoint_step(run, ref.engine)
    if outcome.rc != 130 or found is None:
        return case.fail(f"exit {outcome.rc} without the resume line: {outcome.output.strip()[-200:]}")
    if int(found.group(1)) != step or Path(found.group(2)) != run or summary.get("status") != "interrupted":
        return case.fail(f"said step {found.group(1)}, the checkpoint holds {step}; status {summary.get('status')}")
    return True


def interrupt(ws: Workspace, ref: Reference, fault: str, sig: str, phase: str, n: int, cut: float) -> Case:
    """Send ``sig`` (KILL, TERM, INT) at the ``n``-th event of ``phase``, check, resume, compare."""
    detail = f" (first {cut:.0%} written)" if sig == "KILL" and phase in ("checkpoint", "write", "report", "append") else ""
    case = Case(fault, f"{ref.engine}: SIG{sig} at {phase} #{n}{detail}")
    run_id = f"{sig.lower()}-{phase}-{n}"
    outcome = case.child(ws.trainlab(["run", str(ref.config), "--run-id", run_id, "--no-progress"],
                                     (sig, phase, n, cut)))
    run = ws.runs / ref.name / run_id
    if sig == "KILL":
        ok = outcome.rc == -signal.SIGKILL or case.fail(f"exit {outcome.rc}, not killed: the fault did not fire")
    else:
        ok = _signalled(case, outcome, run, ref, sig, phase)
    ok = case.files(run, reopened=False) and ok
    case.survived = _resume(case, ws, ref, run, run_id) and ok
    return case


def kill_at_time(ws: Workspace, ref: Reference, fault: str, delay: float) -> Case | None:
    """kill -9 from outside, ``delay`` seconds after the run's first log line, wherever the run
    then is (the seconds before it are spent importing, which no kill can harm). None when
    the run ended before the kill: nothing was injected."""
    case = Case(fault, f"{ref.engine}: SIGKILL {delay:.2f} s after the run's first log line")
    run_id = f"kill-at-{delay:.2f}"
    run = ws.runs / ref.name / run_id
    started = time.monotonic()
    proc = ws.start(ws.argv(["run", str(ref.config), "--run-id", run_id, "--no-progress"]))
    while not (run / "run.log").exists() and proc.poll() is None and time.monotonic() - started < ws.timeout:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    outcome = case.child(ws.finish(proc, started))
    if outcome.rc == 0:
        print(f"skip {fault}: {case.what}: the run ended first", file=sys.stderr)
        return None
    ok = outcome.rc == -signal.SIGKILL or case.fail(f"exit {outcome.rc}, not killed")
    ok = case.files(run, reopened=False) and ok
    case.survived = _resume(case, ws, ref, run, run_id) and ok
    return case


# A full disk: a tmpfs mounted in a mount namespace of the child's own (it vanishes with the
# child), copied out before the child ends, so that the run directory can be checked and resumed.
_TMPFS = ('mount -t tmpfs -o size="$FAULTS_SIZE" tmpfs "$FAULTS_MNT" || exit 97; "$@"; rc=$?; '
          'cp -a "$FAULTS_MNT"/. "$FAULTS_COPY"/; exit $rc')


def tmpfs_mountable(ws: Workspace) -> bool:
    """Whether this user may mount a tmpfs in a private mount namespace (root, or CAP_SYS_ADMIN)."""
    if not shutil.which("unshare"):
        return False
    probe = ws.root / "probe-mount"
    probe.mkdir(exist_ok=True)
    command = ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=64k",
               "tmpfs", str(probe)]
    return subprocess.run(command, capture_output=True).returncode == 0


def disk_full(ws: Workspace, ref: Reference, fault: str, mountable: bool) -> Case:
    """The disk fills up while a checkpoint is written: exit 6 with one line, a clean run
    directory, and a resume from the checkpoint before (or a clean refusal where there is none)."""
    folder = ws.root / "disk-full" / f"{ref.engine}-{'tmpfs' if mountable else 'rlimit'}"
    mnt, copy = folder / "mnt", folder / "copy"
    mnt.mkdir(parents=True)
    copy.mkdir()
    config = ws.config(f"{ref.name}-full", ref.engine, output={"dir": str(mnt)})
    args = ["run", str(config), "--run-id", "full", "--no-progress"]
    if mountable:  # room for one checkpoint and half of the next: the second checkpoint fails
        size = int(ref.checkpoint_bytes * 1.5) + 160 * 1024
        case = Case(fault, f"{ref.engine}: a {size // 1024} kB tmpfs")
        env = {**ws.env, "FAULTS_SIZE": str(size), "FAULTS_MNT": str(mnt), "FAULTS_COPY": str(copy)}
        outcome = ws.trainlab(args, prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", _TMPFS, "sh"],
                              env=env)
        cause, run = os.strerror(28), copy / config.stem / "full"  # ENOSPC
    else:  # no mount: every file is limited to half a checkpoint, so the first checkpoint fails
        limit = ref.checkpoint_bytes // 2
        case = Case(fault, f"{ref.engine}: RLIMIT_FSIZE {limit // 1024} kB")
        setting = f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); " \
                  "os.execvp(sys.argv[1], sys.argv[1:])"
        outcome = ws.trainlab(args, prefix=[sys.executable, "-c", setting])
        cause, run = os.strerror(27), mnt / config.stem / "full"  # EFBIG
    case.child(outcome)
    ok = case.refused(outcome, 6, "checkpoint", cause)
    if not run.is_dir():
        case.fail(f"no run directory at {run}")
        return case
    ok = case.files(run, reopened=True) and ok
    ref_here = Reference(config.stem, ref.engine, config, ref.result)
    case.survived = _resume(case, ws, ref_here, run, "full") and ok
    return case


def same_instant(ws: Workspace, ref: Reference, fault: str, runs: int) -> list[Case]:
    """``runs`` runs of one config with default ids, released in the same instant: each gets
    a directory of its own and the reference's result."""
    config = ws.config(f"{ref.name}-same", ref.engine)
    go = ws.root / "go"
    started = time.monotonic()
    procs = [ws.start(ws.argv(["run", str(config), "--no-progress"], go=go)) for _ in range(runs)]
    deadline = time.monotonic() + ws.timeout
    while (len(list(ws.root.glob("go.*.ready"))) < runs and time.monotonic() < deadline
           and all(proc.poll() is None for proc in procs)):
        time.sleep(0.01)
    go.touch()  # every child has imported trainlab: all start now
    outcomes = [ws.finish(proc, started) for proc in procs]
    folder = ws.runs / config.stem
    dirs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []
    seconds = {d.name.split("-s")[0] for d in dirs}
    cases = []
    for i, outcome in enumerate(outcomes):
        case = Case(fault, f"run {i + 1} of {runs} ({len(dirs)} directories, {len(seconds)} distinct start seconds)")
        case.child(outcome)
        said = re.search(r"run directory: (\S+)", outcome.output)
        run = Path(said.group(1)) if said else None
        if outcome.rc != 0 or run is None:
            case.lost += 1
            case.notes.append(f"exit {outcome.rc}: {outcome.output.strip()[-200:]}")
            cases.append(case)
            continue
        log = (run / "run.log").read_text(encoding="utf-8")
        ok = case.files(run)
        starts = re.findall(r"^\S+ run (\S+): engine", log, re.MULTILINE)
        if starts != [str(run)] or log.count("completed:") != 1:
            ok = case.fail("run.log holds lines of another run")
        found = differences(result_of(run), ref.result)
        if found:
            case.lost += 1
            ok = case.fail("; ".join(found))
        case.survived = ok and len(dirs) == runs
        cases.append(case)
    return cases
