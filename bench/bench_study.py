"""Overhead of a study per trial: 50 trials of a run that does almost nothing, against 50
direct ``api.run`` calls of the same run in one process.

    TRAINLAB_DATA=../shared/datasets .venv/bin/python bench/bench_study.py [--trials 50]
        [--storage postgresql://...]   # default: a throwaway local PostgreSQL server when installed
        [--quick] [--json PATH]        # --quick: 3 trials, no PostgreSQL unless --storage is given

Prints seconds per trial: direct, study on the journal file, study on PostgreSQL, and the
overhead of each (goal: under 0.5 s per trial with the file storage).
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from _common import add_protocol_args, machine_line, make_row, write_json

BENCHMARK = Path(__file__).stem
GOAL_OVERHEAD = 0.5  # seconds per trial, journal file

RUN = {
    "name": "bench",
    "engine": "numpy",
    "data": {"dataset": "mnist", "limit": {"train": 100, "val": 50, "test": 50}, "normalize": "scale"},
    "model": {"type": "mlp", "hidden": [4]},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"steps": 1, "batch_size": 50},
    # report off: study trials write none either (runs write one by default since reports came in)
    "output": {"save_predictions": False, "save_checkpoint": False, "report": False},
}


@contextmanager
def local_postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL server on 127.0.0.1 (None when PostgreSQL is not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    bindir, root = Path(found[-1]).parent, Path(tempfile.mkdtemp(prefix="bench-pg-"))
    as_root = os.geteuid() == 0

    def run(*args: str) -> None:
        cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in args)] if as_root else list(args)
        subprocess.run(cmd, check=True, capture_output=True)

    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root}", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast")
        shutil.rmtree(root, ignore_errors=True)


def write_study(folder: Path, trials: int) -> Path:
    """A grid of ``trials`` learning rates over the do-nothing run."""
    lrs = [round(0.01 + 0.001 * i, 6) for i in range(trials)]
    data = {**RUN, "output": {**RUN["output"], "dir": str(folder / "runs")},
            "study": {"space": {"optimizer.lr": lrs}}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def time_direct(folder: Path, trials: int) -> float:
    import trainlab.api as tl
    from trainlab.config import RunConfig

    config = RunConfig.from_dict({**RUN, "output": {**RUN["output"], "dir": str(folder / "direct")}})
    tl.run(config, run_id="warm", progress=False, echo=False)
    start = time.perf_counter()
    for i in range(trials):
        tl.run(config, overrides=[f"optimizer.lr={0.01 + 0.001 * i}"], run_id=f"r{i}", progress=False, echo=False)
    return (time.perf_counter() - start) / trials


def time_study(path: Path, storage: str | None, trials: int) -> float:
    from trainlab.api import run_study
    from trainlab.studies import Options

    start = time.perf_counter()
    (stage,) = run_study(path, options=Options(storage=storage, echo=False))
    assert sum(t.state.name == "COMPLETE" for t in stage.trials) == trials
    return (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--storage", help="a PostgreSQL URL (default: start a local server)")
    args = add_protocol_args(parser).parse_args()
    if args.quick:
        args.trials = 3
    print(machine_line())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        direct = time_direct(folder, args.trials)
        file_study = time_study(write_study(folder / "file", args.trials), None, args.trials)
        print(f"direct api.run:        {direct:.3f} s per trial ({args.trials} runs)")
        print(f"study, journal file:   {file_study:.3f} s per trial (overhead {file_study - direct:+.3f} s)")
        rows.append(_row("journal file", file_study, direct, args.trials, GOAL_OVERHEAD))
        if args.quick and args.storage is None:
            print("study, PostgreSQL:     skipped (--quick starts no server; give --storage to include it)")
        else:
            with local_postgres() if args.storage is None else _given(args.storage) as url:
                if url is None:
                    print("study, PostgreSQL:     skipped (PostgreSQL is not installed)")
                else:
                    pg = time_study(write_study(folder / "pg", args.trials), url, args.trials)
                    print(f"study, PostgreSQL:     {pg:.3f} s per trial (overhead {pg - direct:+.3f} s, "
                          f"{pg - file_study:+.3f} s over the file)")
                    rows.append(_row("PostgreSQL", pg, direct, args.trials, None))
    write_json(args.json, rows)


def _row(storage: str, study: float, direct: float, trials: int, goal: float | None) -> dict[str, object]:
    """A study's seconds per trial against direct ``api.run`` calls; the goal bounds the overhead."""
    overhead = study - direct
    return make_row(BENCHMARK, f"study overhead per trial, {storage} storage ({trials} trials of a 1-step run)",
                    study, direct, peer_name="direct api.run calls", unit="s/trial", higher_is_better=False,
                    goal=f"overhead < {goal} s/trial" if goal is not None else "",
                    met=None if goal is None else overhead < goal,
                    note=f"overhead {overhead:+.3f} s/trial; one pass of {trials} trials each")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
