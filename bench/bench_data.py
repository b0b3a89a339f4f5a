"""Cold decode vs cached load of CIFAR-10 and MNIST (the datasets layer's cache).

Usage: python bench/bench_data.py [--data-dir DIR] [--repeat N] [--datasets NAME ...] [--quick] [--json PATH]

Each repeat decodes into a fresh, empty cache folder (cold: read + validate + write the
cache), then loads again from that cache (warm: memory-mapped .npy), timed both alone and
with a full read of the pixels. Prints the best time of each and the ratios. The goal
(DESIGN.md: "a second load takes well under a second") is a cached load, pixels read
included, under 1 s. ``--quick``: one repeat.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import add_protocol_args, machine_line, make_row, spread, write_json

from trainlab.data import load_dataset, resolve_data_dir

BENCHMARK = Path(__file__).stem
COLD = "cold decode into an empty cache"


def _time_load(name: str, data_dir: Path) -> tuple[float, float, int]:
    """(seconds to load_dataset, seconds including a full read of the pixels, checksum)."""
    start = time.perf_counter()
    ds = load_dataset(name, data_dir)
    opened = time.perf_counter() - start
    # touch every byte so a lazy memory map is not timed as free
    checksum = int(np.asarray(ds.x_train).sum(dtype=np.uint64)) + int(ds.y_train.sum())
    return opened, time.perf_counter() - start, checksum


def bench(name: str, data_dir: Path, repeat: int) -> tuple[list[float], list[float], list[float]]:
    """Cold, warm-open and warm-read seconds of each repeat; every cold run starts from an empty cache."""
    colds, opens, reads = [], [], []
    for _ in range(repeat):
        cache = Path(tempfile.mkdtemp(prefix="trainlab-bench-cache-"))
        os.environ["TRAINLAB_CACHE"] = str(cache)
        try:
            _, cold, sum_cold = _time_load(name, data_dir)
            warm_open, warm_read, sum_warm = _time_load(name, data_dir)
            if sum_cold != sum_warm:
                raise SystemExit(f"{name}: cached arrays differ from the decoded ones")
            colds.append(cold)
            opens.append(warm_open)
            reads.append(warm_read)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return colds, opens, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data folder (default $TRAINLAB_DATA)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per dataset (best is shown)")
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "mnist"])
    args = add_protocol_args(parser).parse_args()
    if args.quick:
        args.repeat = 1
    data_dir = resolve_data_dir(args.data_dir)
    saved = os.environ.get("TRAINLAB_CACHE")
    print(machine_line())
    print(f"data dir: {data_dir}   repeat: {args.repeat} (best of)   cpus: {os.cpu_count()}")
    print("cold = decode into an empty cache; cached = load_dataset alone (memory map),")
    print("cached+read = load_dataset and a sum over every pixel; ratios are cold / cached")
    header = ("dataset", "cold s", "cached s", "ratio", "cached+read s", "ratio")
    print("{:<10} {:>8} {:>9} {:>8} {:>14} {:>7}".format(*header))
    rows = []
    try:
        for name in args.datasets:
            colds, opens, reads = bench(name, data_dir, args.repeat)
            cold, warm_open, warm_read = min(colds), min(opens), min(reads)
            print(f"{name:<10} {cold:>8.3f} {warm_open:>9.4f} {cold / warm_open:>7.0f}x "
                  f"{warm_read:>14.4f} {cold / warm_read:>6.1f}x")
            cold_note = f"best times; cold {spread(colds, 's')}"
            rows.append(make_row(BENCHMARK, f"{name}: cached load (memory map)", warm_open, cold,
                                 peer_name=COLD, unit="s", higher_is_better=False,
                                 note=f"{cold_note}; cached {spread(opens, 's')}"))
            rows.append(make_row(BENCHMARK, f"{name}: cached load + read every pixel", warm_read, cold,
                                 peer_name=COLD, unit="s", higher_is_better=False, goal="< 1 s",
                                 met=warm_read < 1.0, note=f"{cold_note}; cached+read {spread(reads, 's')}"))
    finally:
        if saved is None:
            os.environ.pop("TRAINLAB_CACHE", None)
        else:
            os.environ["TRAINLAB_CACHE"] = saved
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
