"""Where the torch engine's training step spends its time (torch profiler, CPU).

Profiles the engine's own per-step loop (``bench_torch.TrainlabSide``: the object and hooks
``trainlab run`` uses, without the per-epoch evaluation) on two workloads:

- seed C's final CNN (551,722 parameters, batch 256) in bf16 autocast + channels_last, the
  configuration issue 15's 1,900 images/s goal is about;
- the fast CIFAR-10 recipe ``configs/fast/cifar10-94.yaml`` (airbench94's net, batch 1024,
  flip + crop augmentation inside the step).

For each it times ``--steps`` steps without the profiler (ms per step), then profiles as many
and prints: the ops with the most self CPU time and their share of the step; the share spent
in copies and format conversions (``aten::copy_``, ``aten::_to_copy``, ``aten::contiguous``,
``aten::clone``); the scalar reads per step (``aten::_local_scalar_dense``: ``.item()``,
``float(tensor)``; on a GPU each is a device synchronisation, on the CPU a cheap read, and
PyTorch's Adam reads its CPU step counters this way, two per parameter); and the time outside
any op (Python, the loop's own bookkeeping); and the minor page faults per step, timed and
profiled. ``--write-docs`` writes the "hot path" section of docs/performance.md.

The profiler's own records are allocated while the steps run, between the step's large
buffers, so without care the profiled steps grow the heap onto fresh pages and the first op
to write each new buffer pays its page faults: max-pool backward's zero fill of its input
gradient (``aten::fill_``) showed as 14.9 % of the fast recipe's step that way, while the
same steps without the profiler fault no page at all (malloc reuses freed memory, see
``trainlab.engines.cpu_memory``). Before profiling, the script therefore touches and frees
``HEADROOM_MB`` at the heap's top (kept there, not returned to the system), so the
profiled steps run on mapped pages like the timed ones; the page faults per step are
printed for both.

Command: ``python bench/profile_step.py [--steps 10] [--write-docs]``; ``--quick`` profiles a
small batch for 2 steps (a check that the script works, as in the test suite).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import PERFORMANCE_TITLE, default_threads, machine_line, write_doc_section
from bench_torch import TrainlabSide, load_images, prepared, run_config
from torch.profiler import ProfilerActivity, profile

from trainlab.config import RunConfig, load_config
from trainlab.config.overrides import with_overrides

ROOT = Path(__file__).resolve().parents[1]
COPY_OPS = ("aten::copy_", "aten::_to_copy", "aten::contiguous", "aten::clone")
SYNC_OPS = ("aten::_local_scalar_dense",)
TOP = 12
#: Free, already-touched heap kept for the profiler's records (see the module docstring).
HEADROOM_MB = 1024


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    if sys.platform == "win32":
        return 0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def reserve_heap_headroom(megabytes: int) -> None:
    """Touch and free ``megabytes`` of memory: with malloc keeping freed memory (the engine's
    ``retain_freed_memory``) they stay mapped at the heap's top for later allocations."""
    block = torch.empty(megabytes << 20, dtype=torch.uint8)
    block.fill_(0)  # maps every page
    del block


def workloads(quick: bool) -> list[tuple[str, RunConfig]]:
    """(title, run config) of each profiled workload; ``quick`` shrinks the batches."""
    fast = load_config(ROOT / "configs" / "fast" / "cifar10-94.yaml")
    batch = 32 if quick else None
    fast = with_overrides(fast, [f"train.batch_size={batch or 1024}", "train.steps=1000000"], source="profile")
    return [(f"seed C final CNN, bf16, batch {batch or 256}", run_config("c", "bf16", 10**6, batch)),
            (f"fast recipe cifar10-94, bf16, batch {batch or 1024}", fast)]


def profile_workload(config: RunConfig, images: Any, labels: Any, steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` steps, then profile as many; the figures of one workload."""
    side = TrainlabSide(config, prepared(images, labels))
    side.steps(warmup)
    faults, start = minor_faults(), time.perf_counter()
    side.steps(steps)
    step_ms = 1000 * (time.perf_counter() - start) / steps
    timed_faults = (minor_faults() - faults) / steps
    reserve_heap_headroom(HEADROOM_MB)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        faults, start = minor_faults(), time.perf_counter()
        side.steps(steps)
        profiled_ms = 1000 * (time.perf_counter() - start) / steps
        profiled_faults = (minor_faults() - faults) / steps
    # Self times do not overlap: their sum is the time inside ops; the rest is outside any op.
    ops = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    inside_ms = sum(e.self_cpu_time_total for e in ops) / 1000 / steps
    shown = [e for e in ops if e.key.startswith(("aten::", "Optimizer", "autograd::"))]
    top = sorted(shown, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP]
    by_key = {e.key: e for e in ops}
    copies_ms = sum(by_key[k].self_cpu_time_total for k in COPY_OPS if k in by_key) / 1000 / steps
    syncs = sum(by_key[k].count for k in SYNC_OPS if k in by_key) / steps
    return {
        "step_ms": step_ms, "profiled_ms": profiled_ms, "inside_ms": inside_ms,
        "outside_share": max(0.0, 1 - inside_ms / profiled_ms), "copies_share": copies_ms / profiled_ms,
        "syncs_per_step": syncs, "faults_per_step": (timed_faults, profiled_faults), "images_per_s": int(config.train.batch_size) / step_ms * 1000,  # type: ignore[arg-type]
        "top": [(e.key, e.self_cpu_time_total / 1000 / steps, e.count / steps) for e in top],
    }


def report(title: str, result: dict[str, Any]) -> list[str]:
    """Markdown lines of one workload."""
    lines = [f"### {title}", "",
             f"{result['step_ms']:.1f} ms per step without the profiler ({result['images_per_s']:,.0f} images/s), "
             f"{result['profiled_ms']:.1f} ms with it. Copies and format conversions: "
             f"{100 * result['copies_share']:.1f} % of the step; scalar reads per step: "
             f"{result['syncs_per_step']:.2f}; outside any op (Python, the loop's bookkeeping): "
             f"{100 * result['outside_share']:.1f} %. Minor page faults per step: "
             f"{result['faults_per_step'][0]:,.0f} timed, {result['faults_per_step'][1]:,.0f} profiled.", "",
             "| op | self ms per step | share | calls per step |", "|---|---:|---:|---:|"]
    for key, ms, calls in result["top"]:
        lines.append(f"| `{key}` | {ms:.2f} | {100 * ms / result['profiled_ms']:.1f} % | {calls:g} |")
    return [*lines, ""]


def main() -> None:
    """Profile every workload, print the tables, optionally write the docs section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--steps", type=int, default=10, help="steps timed, then as many profiled")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--quick", action="store_true", help="small batches, 2 steps: checks the script runs")
    parser.add_argument("--write-docs", action="store_true", help="write the hot-path section of docs/performance.md")
    args = parser.parse_args()
    steps, warmup = (2, 1) if args.quick else (args.steps, 3)
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    print(machine_line())
    images, labels, source = load_images(args.data_dir, 256 if args.quick else 5120)
    print(f"{len(images)} {source}; {steps} steps timed, then {steps} profiled; {args.threads} threads")
    lines = ["## Hot path: where a training step goes", "",
             "Written by `python bench/profile_step.py --write-docs` (torch profiler, CPU, on the engine's own "
             "step loop as `trainlab run` drives it; the per-epoch evaluation is not in it). The engine's step "
             "reads no scalar from the device (loss and accuracy stay in device buffers until a log "
             "interval); the scalar reads counted below are PyTorch Adam's reads of its CPU step counters "
             "(two per parameter and step, free on a CPU) and the reads of the NaN check and the progress line "
             "at their intervals. "
             "Its augmentation is batched tensor ops. `aten::fill_` is max-pool backward zeroing its input "
             "gradient before it routes the output gradient to each window's maximum (one per max-pool layer, "
             "as in any eager PyTorch net with max pooling); before profiling, the script leaves "
             f"{HEADROOM_MB} MiB of mapped free heap for the profiler's own records, so that the profiled "
             "steps do not fault in fresh pages where the timed ones do not (page faults below).", "",
             f"Date: {datetime.date.today().isoformat()}", "", f"Machine: {machine_line().removeprefix('machine: ')}",
             "", f"Threads: {args.threads}.", ""]
    for title, config in workloads(args.quick):
        result = profile_workload(config, images, labels, steps, warmup)
        section = report(title, result)
        print("\n".join(section))
        lines += section
    if args.write_docs and not args.quick:
        write_doc_section(ROOT / "docs" / "performance.md", "hot-path", "\n".join(lines), PERFORMANCE_TITLE)
        print("wrote the hot-path section of docs/performance.md")


if __name__ == "__main__":
    main()
