"""torch.compile on the fast recipes: the engine's step compiled vs eager, alternating passes.

Usage: python bench/bench_compile.py [--data-dir DIR] [--steps S] [--passes P] [--threads T]
                                     [--recipes cifar10-94,cifar10-90] [--precisions bf16,fp32]
                                     [--quick] [--json PATH] [--write-docs]

``bench/bench_torch.py`` answers "does ``train.compile`` pay?" for seed E's CNN, seed C's CNN
and the MLP; this script answers it for the nets of ``configs/fast/`` (airbench94's net in
``cifar10-94``, its narrower sibling in ``cifar10-90``): each recipe's config, at each
precision asked for, run by the torch engine's own step loop (``bench_torch.TrainlabSide``:
augmentation, lookahead, label smoothing and the optimizer included; the per-epoch evaluation
left out) twice: with ``train.compile: false`` (the default) and ``true``. Both sides warm up
(the compiled side's warm-up holds the compile), then run ``--passes`` alternating passes of
``--steps`` steps; the median pass counts. Prints images/s, the ratio compiled / eager, the
compile time (compiled warm-up minus eager warm-up) and after how many images compiling pays
it back. ``--write-docs`` writes the "torch.compile on the fast recipes" section of
docs/performance.md. ``--quick``: cifar10-90 in bf16 only, batch 16, one pass of 1 step after
a 1-step warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    PERFORMANCE_TITLE,
    add_protocol_args,
    default_threads,
    fmt,
    machine_line,
    make_row,
    spread,
    write_doc_section,
    write_json,
)
from bench_torch import (
    TrainlabSide,
    alternating_passes,
    break_even_images,
    break_even_text,
    load_images,
    prepared,
)

from trainlab.config import RunConfig, load_config
from trainlab.config.overrides import with_overrides
from trainlab.engines.cpu_memory import retain_freed_memory

BENCHMARK = Path(__file__).stem
ROOT = Path(__file__).resolve().parents[1]
#: Compiled must beat eager by more than this to be worth its compile time and its risks.
PAYS = 1.03


def recipe_config(recipe: str, precision: str, batch: int | None) -> tuple[RunConfig, int | None]:
    """``configs/fast/<recipe>.yaml`` at ``precision`` (and ``batch`` when given), endless steps,
    and the number of steps the recipe itself trains (None when it counts epochs)."""
    config = load_config(ROOT / "configs" / "fast" / f"{recipe}.yaml")
    overrides = [f"train.precision={precision}", "train.steps=1000000", "train.device=cpu"]
    if batch:
        overrides.append(f"train.batch_size={batch}")
    return with_overrides(config, overrides, source=BENCHMARK), config.train.steps


def compare(config: RunConfig, images: np.ndarray, labels: np.ndarray, steps: int, passes: int,
            warmup: int) -> dict[str, Any]:
    """Warm-up seconds and per-pass seconds of the eager and the compiled engine on ``config``."""
    data = prepared(images, labels)
    sides = {"eager": TrainlabSide(config, data), "compiled": TrainlabSide(config, data, compile_model=True)}
    warmups, seconds = alternating_passes(sides, warmup, steps, passes)
    return {"warmup": warmups, "seconds": seconds}


def row_of(recipe: str, config: RunConfig, result: dict[str, Any], steps: int,
           run_steps: int | None) -> dict[str, Any]:
    """The result row of one recipe and precision (trainlab: compiled, peer: eager);
    ``run_steps``: the steps of the recipe's own run (its length, against the break-even)."""
    batch = int(config.train.batch_size)  # type: ignore[arg-type]
    rate = {name: steps * batch / float(np.median(s)) for name, s in result["seconds"].items()}
    extra = result["warmup"]["compiled"] - result["warmup"]["eager"]
    needed = break_even_images(extra, rate["eager"], rate["compiled"])
    break_even = break_even_text(needed)
    spreads = "; ".join(f"{name} {spread(s, 's/pass')}" for name, s in result["seconds"].items())
    row = make_row(BENCHMARK, f"configs/fast/{recipe}.yaml, batch {batch}, {config.train.precision}, "
                   "train.compile: true", rate["compiled"], rate["eager"],
                   peer_name="trainlab eager (train.compile: false, the default)", unit="img/s",
                   note=f"median of {len(result['seconds']['eager'])} alternating passes of {steps} steps; "
                        f"compile time {extra:.1f} s; break-even after {break_even}; {spreads}")
    row["compile_seconds"], row["break_even"], row["break_even_images"] = extra, break_even, needed
    row["run_images"] = int(run_steps) * batch if run_steps else None
    return row


def answer(row: dict[str, Any]) -> str:
    """Whether ``train.compile`` pays for one recipe and precision, in words."""
    if (row["ratio"] or 0.0) < PAYS:
        return f"does not pay: within {100 * (PAYS - 1):.0f} % of eager or slower; keep it off"
    run, needed = row.get("run_images"), row.get("break_even_images")
    if run is not None and needed is not None and needed > run:
        return (f"faster per step, but the recipe's run ({run:,} images) ends before the compile time is "
                "paid back; keep it off")
    return "pays: turn it on for this recipe and precision"


def verdicts(rows: list[dict[str, Any]], command: str) -> str:
    """docs/performance.md's section: the measured answer per recipe and precision."""
    lines = ["## torch.compile on the fast recipes", "",
             f"Written by `{command}` (the torch engine's step loop on each recipe's config with "
             "`train.compile: true` against the same config eager, alternating passes on the same "
             "batches; compile time = the compiled side's warm-up minus the eager side's). `train.compile` "
             "stays off by default; the recipes leave it off.", "",
             f"Date: {datetime.date.today().isoformat()}", "", f"Machine: {machine_line().removeprefix('machine: ')}",
             "", "| recipe, precision | eager img/s | compiled img/s | compiled / eager | compile time | "
             "break-even | answer |", "|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        lines.append(f"| {row['workload'].removesuffix(', train.compile: true')} | {fmt(row['peer'])} | "
                     f"{fmt(row['trainlab'])} | {row['ratio'] or 0.0:.2f}x | {row['compile_seconds']:.1f} s | "
                     f"{row['break_even']} | {answer(row)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, time every recipe and precision, print and optionally write the answers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--steps", type=int, default=3, help="steps per timed pass")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--recipes", default="cifar10-94,cifar10-90")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the 'torch.compile on the fast recipes' section of docs/performance.md")
    args = add_protocol_args(parser).parse_args()
    batch, warmup = None, 2
    if args.quick:
        args.recipes, args.precisions, args.steps, args.passes, batch, warmup = "cifar10-90", "bf16", 1, 1, 16, 1
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)  # the engine sets its threads from it
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the engine does for its process
    print(machine_line())
    recipes, precisions = args.recipes.split(","), args.precisions.split(",")
    configs = {(r, p): recipe_config(r, p, batch) for r in recipes for p in precisions}
    needed = max(int(c.train.batch_size) for c, _ in configs.values()) * (warmup + args.steps)  # type: ignore[arg-type]
    images, labels, source = load_images(args.data_dir, max(needed, 2048))
    print(f"{len(images)} {source}, {args.passes} alternating passes of {args.steps} steps (median), "
          f"torch {torch.__version__}, {args.threads} threads")
    rows = []
    for (recipe, precision), (config, run_steps) in configs.items():
        result = compare(config, images, labels, args.steps, args.passes, warmup)
        row = row_of(recipe, config, result, args.steps, run_steps)
        rows.append(row)
        print(f"{recipe:<12}{precision:>6}  eager {row['peer']:>7,.0f} img/s  compiled {row['trainlab']:>7,.0f} "
              f"img/s  {row['ratio']:.2f}x  compile {row['compile_seconds']:.1f} s  "
              f"break-even {row['break_even']}", flush=True)
    write_json(args.json, rows)
    if args.write_docs and not args.quick:
        command = (f"python bench/bench_compile.py --recipes {args.recipes} --precisions {args.precisions} "
                   f"--steps {args.steps} --passes {args.passes} --write-docs")
        write_doc_section(ROOT / "docs" / "performance.md", "torch-compile-recipes", verdicts(rows, command),
                          PERFORMANCE_TITLE)
        print("wrote the torch.compile-on-the-fast-recipes section of docs/performance.md")


if __name__ == "__main__":
    main()
