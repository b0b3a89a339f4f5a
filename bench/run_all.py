"""Run every benchmark back to back and write one table: bench/results.md.

Usage: python bench/run_all.py [--quick] [--only NAME ...] [--output PATH] [--timeout S] [--quiet]
                               [--write-docs]

Each ``bench/bench_*.py`` runs as its own process with ``--json`` (and ``--quick``), one
after the other, so no two compete for the cores; their rows (see ``bench/_common.py``)
make one table: the workload, trainlab's figure, the peer's, the ratio (> 1: trainlab is
better) and the goal. The markdown file records the command, the date, the machine and
each script's wall time. A script that fails or times out is a "failed" line with the end
of its output, and the command exits with status 1 after writing everything else.

``--quick`` runs every benchmark at tiny sizes (seconds: it checks that they work) and
writes ``bench/results-quick.md`` unless ``--output`` says otherwise, so a quick run never
overwrites the real results. Run the real one on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import FIELDS, fmt, machine_info, machine_line

HERE = Path(__file__).resolve().parent
ORDER = ("bench_data", "bench_numpy", "bench_torch", "bench_compile", "bench_augment", "bench_dropout", "bench_conv_grad",
         "bench_study", "bench_time_to_accuracy", "bench_epoch")
TIMEOUT_S = {"bench_time_to_accuracy": 3 * 3600}  # trains to an accuracy target, more than once
DEFAULT_TIMEOUT_S = 1800
#: Scripts that write a section of docs/performance.md when given --write-docs.
WRITES_DOCS = ("bench_torch", "bench_compile", "bench_time_to_accuracy")
QUICK_TIMEOUT_S = 300
TAIL_LINES = 25


def discover(only: list[str] | None) -> list[Path]:
    """The bench scripts, in ``ORDER`` then by name; ``only`` keeps those named (``torch`` or ``bench_torch``)."""
    scripts = sorted(HERE.glob("bench_*.py"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER
                                                            else len(ORDER), p.stem))
    if not only:
        return scripts
    wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in only}
    wanted = {name.removesuffix(".py") for name in wanted}
    unknown = wanted - {p.stem for p in scripts}
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; "
                         f"there are: {', '.join(p.stem for p in scripts)}")
    return [p for p in scripts if p.stem in wanted]


def run_script(script: Path, quick: bool, timeout: float, echo: bool, write_docs: bool = False) -> dict[str, Any]:
    """Run one script with ``--json``; its rows, status, wall time and the tail of its output.

    ``write_docs`` passes ``--write-docs`` to the scripts of :data:`WRITES_DOCS` (full mode).
    """
    with tempfile.TemporaryDirectory(prefix="trainlab-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, str(script), "--json", str(out), *(["--quick"] if quick else [])]
        if write_docs and not quick and script.stem in WRITES_DOCS:
            command.append("--write-docs")
        start = time.perf_counter()
        # its own session, so that a timeout can stop the script and any worker it started
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, cwd=HERE.parent, start_new_session=True)
        stopped = threading.Event()
        timer = threading.Timer(timeout, _stop, args=(proc, stopped))
        timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                if echo:
                    print(f"  | {line}", end="", flush=True)
            code = proc.wait()
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        result: dict[str, Any] = {"script": script.stem, "seconds": seconds, "code": code, "rows": [],
                                  "tail": "\n".join(tail), "error": ""}
        if stopped.is_set():
            result["error"] = f"timed out after {timeout:.0f} s"
        elif code != 0:
            result["error"] = f"exit status {code}"
        else:
            try:
                result["rows"] = _valid_rows(json.loads(out.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                result["error"] = f"no valid --json rows: {exc}"
        return result


def _stop(proc: subprocess.Popen[str], stopped: threading.Event) -> None:
    """Interrupt the script's process group (its finally blocks run), then kill it 15 s later."""
    stopped.set()
    for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait is None:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _valid_rows(rows: Any) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise ValueError("not a JSON list")
    for row in rows:
        missing = [f for f in FIELDS if not isinstance(row, dict) or f not in row]
        if missing:
            raise ValueError(f"a row lacks {', '.join(missing)}")
    return rows


def _ratio(row: dict[str, Any]) -> str:
    ratio = row.get("ratio")
    if ratio is None:
        return "-"
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def _met(row: dict[str, Any]) -> str:
    return {True: "yes", False: "no", None: "-"}[row.get("met")]


def _figure(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{fmt(value)} {unit}"


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One dict of printable cells per result row, and one "failed" line per failed script."""
    cells = []
    for result in results:
        if result["error"]:
            cells.append({"benchmark": _short(result["script"]), "workload": f"FAILED: {result['error']}",
                          "trainlab": "-", "vs": "-", "peer": "-", "ratio": "-", "goal": "-", "met": "failed",
                          "note": "the end of its output is below the table"})
            continue
        for row in result["rows"]:
            cells.append({"benchmark": _short(row["benchmark"]), "workload": row["workload"],
                          "trainlab": _figure(row["trainlab"], row["unit"]), "vs": row["peer_name"],
                          "peer": _figure(row["peer"], row["unit"]), "ratio": _ratio(row),
                          "goal": row["goal"] or "-", "met": _met(row), "note": row.get("note", "")})
    return cells


def _short(script: str) -> str:
    return script.removeprefix("bench_")


COLUMNS = ("benchmark", "workload", "trainlab", "vs", "peer", "ratio", "goal", "met")


def print_table(cells: list[dict[str, str]], title: str) -> None:
    """The table on the terminal, with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for name in COLUMNS:
        justify = "right" if name in ("trainlab", "peer", "ratio") else "center" if name == "met" else "left"
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    colour = {"yes": "green", "no": "red", "failed": "bold red"}
    for c in cells:
        met = f"[{colour[c['met']]}]{c['met']}[/]" if c["met"] in colour else c["met"]
        table.add_row(*(c[k] for k in COLUMNS[:-1]), met)
    Console(width=max(160, Console().width)).print(table)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(cells: list[dict[str, str]], results: list[dict[str, Any]], info: dict[str, Any],
             command: str, started: str, quick: bool, total: float) -> str:
    """The results file: header, command, machine, the table, wall times, failures."""
    lines = [
        "<!-- Generated by `python bench/run_all.py`: do not edit by hand, rerun the command. -->",
        "",
        "# Benchmark results" + (" (quick mode)" if quick else ""),
        "",
        f"Written by `python bench/run_all.py` on {started}, in {total:.0f} s. Command:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    if quick:
        lines += ["**Quick mode**: tiny sizes that check the benchmarks run; the figures mean nothing.", ""]
    lines += [
        "Ratio > 1 means trainlab is better (trainlab / peer for rates, peer / trainlab for times).",
        "Every benchmark runs both sides in the same process, alternating or back to back; scripts",
        "run one after the other.",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}; flags: {' '.join(info['cpu_flags']) or 'none of the AVX/AMX ones'}",
        f"- cores: {info['cores']} ({info['usable_cores']} usable); load average at the start: "
        f"{', '.join(str(v) for v in info['load_average'] or [])}",
        f"- {info['os']}, Python {info['python']}",
        f"- torch {info['torch']} ({info['torch_build']}); {info['torch_threads']} threads by default",
        f"- numpy {info['numpy']}, BLAS: {info['numpy_blas']}",
        f"- keras {info['keras'] or 'not installed'}",
        f"- threads asked for: TRAINLAB_NUM_THREADS={os.environ.get('TRAINLAB_NUM_THREADS', 'unset')}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        "",
        "## Results",
        "",
        "| " + " | ".join((*COLUMNS, "note")) + " |",
        "|---|---|--:|---|--:|--:|---|:-:|---|",
    ]
    for c in cells:
        lines.append("| " + " | ".join(_md(c[k]) for k in (*COLUMNS, "note")) + " |")
    lines += ["", "## Scripts", "", "| script | status | rows | wall s |", "|---|---|--:|--:|"]
    for r in results:
        lines.append(f"| {r['script']} | {_md(r['error']) or 'ok'} | {len(r['rows'])} | {r['seconds']:.1f} |")
    for r in results:
        if r["error"]:
            lines += ["", f"### {r['script']} failed: {r['error']}", "", "Last lines of its output:", "",
                      "```", r["tail"], "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the scripts, print the table, write the markdown; 1 when a script failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that every benchmark runs")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. torch bench_data)")
    parser.add_argument("--output", type=Path,
                        help="markdown file (default bench/results.md; bench/results-quick.md with --quick)")
    parser.add_argument("--timeout", type=float, help="seconds per script (default: per script)")
    parser.add_argument("--quiet", action="store_true", help="do not echo each script's output")
    parser.add_argument("--write-docs", action="store_true",
                        help="also let bench_torch, bench_compile and bench_time_to_accuracy write their sections of docs/performance.md (not with --quick)")
    args = parser.parse_args()
    output = args.output or HERE / ("results-quick.md" if args.quick else "results.md")
    scripts = discover(args.only)
    command = shlex.join(["python", "bench/run_all.py", *sys.argv[1:]])
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    info = machine_info()
    print(machine_line(info), flush=True)
    begin = time.perf_counter()
    results = []
    for script in scripts:
        timeout = args.timeout or (QUICK_TIMEOUT_S if args.quick else TIMEOUT_S.get(script.stem, DEFAULT_TIMEOUT_S))
        print(f"== {script.stem}{' --quick' if args.quick else ''} (timeout {timeout:.0f} s)", flush=True)
        result = run_script(script, args.quick, timeout, echo=not args.quiet, write_docs=args.write_docs)
        status = f"FAILED ({result['error']})" if result["error"] else f"{len(result['rows'])} rows"
        print(f"== {script.stem}: {status} in {result['seconds']:.1f} s", flush=True)
        if result["error"] and args.quiet:
            print(result["tail"])
        results.append(result)
    total = time.perf_counter() - begin
    cells = table_rows(results)
    print_table(cells, f"trainlab benchmarks{' (quick: figures mean nothing)' if args.quick else ''}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(cells, results, info, command, started, args.quick, total), encoding="utf-8")
    print(f"wrote {output} ({total:.0f} s)")
    failed = [r["script"] for r in results if r["error"]]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
