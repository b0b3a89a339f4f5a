"""What every benchmark script shares: the ``--quick``/``--json`` protocol, result rows, the machine.

Every ``bench/bench_*.py`` accepts ``--quick`` (tiny sizes, a few seconds: it checks that the
benchmark works, its figures mean nothing) and ``--json PATH``, and with ``--json`` writes a
JSON list of rows, one per compared workload::

    {"benchmark": "bench_torch", "workload": "seed E CNN, batch 50, fp32",
     "trainlab": 1038.0, "peer": 981.0, "peer_name": "plain PyTorch loop", "unit": "img/s",
     "ratio": 1.06, "higher_is_better": true, "goal": ">= 0.97x", "met": true, "note": ""}

``ratio`` is always > 1 when trainlab is better: trainlab / peer for rates, peer / trainlab
for times. ``peer``, ``ratio`` and ``met`` are null when there is no peer figure (a peer
that is not installed) or no goal. ``bench/run_all.py`` runs every script and gathers the
rows into one table and ``bench/results.md``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

FIELDS = ("benchmark", "workload", "trainlab", "peer", "peer_name", "unit", "ratio",
          "higher_is_better", "goal", "met", "note")

# CPU flags that decide which kernels torch and OpenBLAS pick on x86.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8")


def add_protocol_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--quick`` and ``--json PATH`` to a benchmark's argument parser."""
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, a few seconds: checks that the benchmark runs (figures mean nothing)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the result rows as a JSON list to PATH")
    return parser


def default_threads() -> int:
    """``$TRAINLAB_NUM_THREADS`` (as the torch engine reads it), else the cores this process may use."""
    value = os.environ.get("TRAINLAB_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def limit_blas_threads(threads: int) -> str:
    """Limit NumPy's BLAS to ``threads`` threads (threadpoolctl when installed); say what was done."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "BLAS threads not limited (threadpoolctl is not installed)"
    threadpool_limits(limits=threads, user_api="blas")
    return f"BLAS threads {threads}"


def ratio_of(trainlab: float, peer: float | None, higher_is_better: bool) -> float | None:
    """trainlab / peer for rates, peer / trainlab for times: > 1 means trainlab is better."""
    if peer is None or peer <= 0 or trainlab <= 0:
        return None
    return trainlab / peer if higher_is_better else peer / trainlab


def make_row(benchmark: str, workload: str, trainlab: float, peer: float | None, *, peer_name: str,
             unit: str, higher_is_better: bool = True, min_ratio: float | None = None,
             goal: str = "", met: bool | None = None, note: str = "") -> dict[str, Any]:
    """One result row.

    Args:
        benchmark: the script's stem (``bench_torch``).
        workload: what was measured, with its sizes.
        trainlab: trainlab's figure, in ``unit``.
        peer: the peer's figure in ``unit``; None when the peer did not run.
        peer_name: what the peer is (``plain PyTorch loop``).
        unit: ``img/s``, ``s``, ``ms/step``, ``s/trial``...
        higher_is_better: True for rates, False for times. Default True.
        min_ratio: a goal on the ratio (``ratio >= min_ratio``); sets ``goal`` and ``met``.
            Default None.
        goal: the goal in words when it is not a ratio (with ``met`` given). Default "".
        met: whether a non-ratio goal is met. Default None.
        note: anything a reader of the table needs. Default "".
    """
    ratio = ratio_of(trainlab, peer, higher_is_better)
    if min_ratio is not None:
        shown = f"{min_ratio:.3g}"
        goal = f">= {shown if '.' in shown else shown + '.0'}x"
        met = None if ratio is None else ratio >= min_ratio * (1 - 1e-9)
    return {"benchmark": benchmark, "workload": workload, "trainlab": float(trainlab),
            "peer": None if peer is None else float(peer), "peer_name": peer_name, "unit": unit,
            "ratio": None if ratio is None else round(ratio, 4), "higher_is_better": higher_is_better,
            "goal": goal, "met": met, "note": note}


def spread(values: list[float], unit: str = "") -> str:
    """``min 1.2, median 1.3 of 5`` (for a row's note: the figure is one of them)."""
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    suffix = f" {unit}" if unit else ""
    return f"min {fmt(ordered[0])}, median {fmt(median)}{suffix} of {n}"


def fmt(value: float | None) -> str:
    """A figure for a table: a whole number (thousands separated) from 100 up, else 3 significant
    digits; '-' for None."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


#: The first line of docs/performance.md, which several benchmarks write a section of.
PERFORMANCE_TITLE = (
    "# Performance\n\nGenerated by the benchmarks named in each section (`--write-docs`); "
    "do not edit by hand, rerun them."
)


def _markers(key: str) -> tuple[str, str]:
    """The comments that open and close section ``key`` of a generated document."""
    return f"<!-- begin {key} -->", f"<!-- end {key} -->"


def write_doc_section(path: Path, key: str, markdown: str, title: str) -> None:
    """Write ``markdown`` as the section ``key`` of the generated document ``path``.

    Several benchmarks write one document (docs/performance.md): each owns the text between
    ``<!-- begin KEY -->`` and ``<!-- end KEY -->``, which it replaces; other sections are
    kept. A new section goes at the end; a new document starts with ``title``.
    """
    begin, end = _markers(key)
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def read_doc_section(path: Path, key: str) -> str | None:
    """The text of section ``key`` of the generated document ``path`` (None: no such section)."""
    begin, end = _markers(key)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin not in text or end not in text.split(begin, 1)[1]:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def write_json(path: Path | None, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` as a JSON list (nothing when ``path`` is None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, []
    if found := re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE):
        model = found.group(1).strip()
    if found := re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE):
        flags = set(found.group(1).split())
    return model, [f for f in CPU_FLAGS if f in flags]


def _torch_build() -> str:
    """torch's math libraries in short: MKL, oneDNN, OpenMP versions, BLAS and the CPU kernels used."""
    import torch

    text, parts = torch.__config__.show(), []
    patterns = (("MKL", r"Math Kernel Library Version (\S+)"), ("oneDNN", r"MKL-DNN (v\S+)"),
                ("OpenMP", r"OpenMP (\d+)"), ("BLAS", r"BLAS_INFO=(\w+)"),
                ("CPU capability", r"CPU capability usage: (\S+)"))
    for name, pattern in patterns:
        if found := re.search(pattern, text):
            parts.append(f"{name} {found.group(1)}")
    return ", ".join(parts) or "unknown"


def _numpy_blas() -> str:
    """NumPy's BLAS: library, version, architecture and threads (threadpoolctl), else the build info."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("user_api") == "blas" and "numpy" in str(lib.get("filepath", "")):
                return (f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture')}, "
                        f"{lib.get('threading_layer')}, {lib.get('num_threads')} threads)")
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # numpy's config layout changes between versions
        return "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine and software a benchmark ran on (imports numpy and torch)."""
    import numpy as np
    import torch

    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "keras": _version("keras"),
        "torch_build": _torch_build(),
        "torch_threads": torch.get_num_threads(),
        "numpy_blas": _numpy_blas(),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line of :func:`machine_info` for a benchmark's printed header."""
    m = info or machine_info()
    keras = f", keras {m['keras']}" if m.get("keras") else ""
    return (f"machine: {m['cpu']} ({' '.join(m['cpu_flags']) or 'no AVX flags'}), {m['cores']} cores, "
            f"load {m['load_average']}; python {m['python']}, torch {m['torch']} "
            f"[{m['torch_build']}], numpy {m['numpy']} [{m['numpy_blas']}]{keras}")
