"""Time to accuracy: trainlab's fast recipes against plain-PyTorch airbench94 and airbench94_muon.

Usage: python bench/bench_time_to_accuracy.py [--data-dir DIR] [--seeds N] [--threads T] [--device cpu|cuda]
                                              [--recipes cifar10-94,cifar10-94-muon,cifar10-94-muon-lowres,cifar10-90,mnist-99]
                                              [--sides trainlab,airbench94,airbench94_muon]
                                              [--trials-json PATH] [--render-from PATH] [--keep-going]
                                              [--quick] [--json PATH] [--write-docs]

For each seed (0 to N-1), each recipe of ``configs/fast/`` is trained by ``trainlab.api.run``
and each rendition its recipes are compared with, back to back (the order alternates with
the seed, so a machine that slows down during the benchmark hurts both sides alike):

- ``cifar10-94``, ``cifar10-94-muon`` and ``cifar10-94-muon-lowres`` vs airbench94 and airbench94_muon: airbench94 is
  the same net (whitening conv, three conv-pool-BN-GELU groups, scaled head), schedule,
  lookahead, alternating flip, reflect-padded crops and 6-view TTA, written as a plain
  PyTorch loop (``bench/_airbench_peers.py``) from the published description of Keller
  Jordan's cifar10-airbench (not copied from it); airbench94_muon puts Muon on the conv
  kernels, SGD on the rest, batch 2000, 8 epochs. Target 94 %; the goal: at most 0.8x
  airbench94_muon's time and faster than airbench94, over at least 5 seeds.
- ``cifar10-90`` vs airbench94 (its time to 90 %); goal: 3 minutes.
- ``mnist-99``: no peer; the goal is 99 % within 30 s.

Both sides run in their best CPU mode (bf16 autocast, channels_last), with the same
thread count, and read their data through trainlab's cache (``prepare_data``).
``--device cuda`` trains both sides on the GPU instead (trainlab's recipe with
``train.device=cuda``; the renditions keep the model, the data and the augmentation on the
GPU), reads the clock after ``torch.cuda.synchronize()``, and first trains each side once,
untimed and unrecorded (seed 0, the same budget), so that the CUDA context, the libraries'
kernels and the decoded data cache are loaded before any timed run, as in a process that
trains many runs (airbench's own timings). Runs on a GPU are keyed by the GPU (and the host
CPU), so they are never compared with CPU runs; ``bench/gpu_time_to_accuracy.sh`` runs this on
a lent GPU machine, with ``--keep-going`` (a side whose run fails is skipped from then on and
the others go on, so that an unattended call still brings their runs back). Each run
records the wall clock from its start (before the data is loaded) at every test evaluation:
after every epoch without TTA, then the final one with TTA (trainlab's at the moment
``api.run`` returns, after its checkpoint, so trainlab's time is an upper bound; reports
and prediction files are off, as the peer writes neither). ``bench/_tta_protocol.py``
judges the runs (the protocol of issue 28: mean ± sd and range of the final accuracies,
each side's median time to its own mean at the target, rows at a short peer's final mean).

``--trials-json PATH`` keeps every run there, written after each run; a later command with
the same PATH trains only the (side, recipe, seed) runs it lacks on this machine and thread
count (``--seeds 5`` after ``--seeds 3`` trains seeds 3 and 4), so a long benchmark can be
spread over sessions, also with ``--sides`` (e.g. ``trainlab,airbench94_muon``). A trainlab
run recorded from a different version of its recipe file is trained again. ``--write-docs``
(full mode only) keeps the runs in ``bench/tta-trials.json`` unless ``--trials-json`` says
otherwise and writes the time-to-accuracy section of ``docs/performance.md`` from everything
that file holds, after every run. ``--render-from PATH`` trains nothing: the rows (and with
``--write-docs`` the section) from such a file. ``--quick``: a few hundred images, one short
epoch per side, seed 0, target 0 (the first evaluation): it checks that everything runs; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _airbench_peers import Budget, run_peer, synchronize
from _airbench_peers import peer_batch as peer_batch  # re-exported for the tests
from _common import add_protocol_args, default_threads, write_json
from _tta_protocol import (
    MIN_SEEDS,
    PEERS,
    RECIPES,
    ROOT,
    SIDES,
    TRIALS_JSON,
    Run,
    Trial,
    TrialStore,
    device_machine_info,
    device_machine_line,
    json_rows,
    machine_key,
    print_table,
    recipe_digest,
    store_rows,
    write_docs,
)

import trainlab.api as tl
from trainlab.callbacks import Callback, TrainState
from trainlab.engines.cpu_memory import retain_freed_memory

QUICK_TRAIN, QUICK_TEST, QUICK_BATCH = 512, 256, 128
DOCS = ROOT / "docs" / "performance.md"


# -- trainlab ----------------------------------------------------------------------------------
DEVICES = ("cpu", "cuda")


def check_device(device: str) -> None:
    """Refuse ``--device cuda`` where PyTorch sees no GPU, before anything trains or is written.

    Raises:
        SystemExit: ``cuda`` asked for without a usable GPU, or an unknown device.
    """
    if device not in DEVICES:
        raise SystemExit(f"--device {device}: choose from {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        why = "was built without CUDA" if torch.version.cuda is None else "sees no CUDA device"
        raise SystemExit(f"--device cuda: PyTorch {torch.__version__} {why}; run on a GPU machine "
                         "(bench/gpu_time_to_accuracy.sh) or use --device cpu")


class _Clock(Callback):
    """Records the time and test accuracy of every evaluation of a run."""

    def __init__(self, start: float, trial: Trial, device: str = "cpu") -> None:
        self.start, self.trial, self.device = start, trial, device

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["split"] == "test":
                synchronize(self.device)  # the accuracy is on the host already; this makes it explicit
                self.trial.evaluations.append((time.perf_counter() - self.start, float(row["accuracy"]),
                                               f"epoch {state.epoch}"))


def quick_overrides(recipe: str) -> list[str]:
    """A few hundred images, one short epoch: checks that the recipe runs.

    What is shortened is read from the recipe: its length (in epochs or steps), the whitening
    bias's epochs, a warm-up and a lookahead, each only where the recipe has it.
    """
    from trainlab.config import load_config

    config = load_config(ROOT / "configs" / "fast" / f"{recipe}.yaml")
    overrides = [f"data.limit={{train: {QUICK_TRAIN}, test: {QUICK_TEST}}}", f"train.batch_size={QUICK_BATCH}"]
    if config.train.steps is None and config.augment.low_res is None:
        overrides.append("train.epochs=1")
    else:  # steps, also for a recipe given in epochs whose low-res epochs would outlast one epoch
        overrides += ["train.epochs=null", f"train.steps={QUICK_TRAIN // QUICK_BATCH}"]
    whiten = config.model.whiten
    if whiten is not None:
        overrides.append(f"model.whiten.images={QUICK_TRAIN}")
        if whiten.bias_epochs is not None:
            overrides.append("model.whiten.bias_epochs=1")
    if config.schedule.warmup_steps:
        overrides.append("schedule.warmup_steps=1")
    if config.train.lookahead is not None:
        overrides += ["train.lookahead.start_epoch=0", "train.lookahead.every=1"]
    return overrides


def trainlab_overrides(recipe: str, seed: int, workdir: Path, quick: bool, device: str = "cpu") -> list[str]:
    """The overrides a benchmark run of ``recipe`` trains with: seed, a scratch output folder,
    no report or prediction files (the peer writes neither), the device named (the recipes say
    ``auto``, which would put trainlab on a GPU while the peers train on the CPU), and with
    ``quick`` :func:`quick_overrides`."""
    overrides = [f"seed={seed}", f"output.dir={workdir}", "output.report=false", "output.save_predictions=false",
                 f"train.device={device}"]
    return overrides + quick_overrides(recipe) if quick else overrides


def run_trainlab(recipe: str, seed: int, data_dir: str | None, quick: bool, workdir: Path,
                 device: str = "cpu") -> Trial:
    """Train ``configs/fast/<recipe>.yaml`` with ``api.run`` on ``device``; the clock starts before data loading."""
    overrides = trainlab_overrides(recipe, seed, workdir, quick, device)
    trial = Trial()
    start = time.perf_counter()
    run = tl.run(ROOT / "configs" / "fast" / f"{recipe}.yaml", overrides=overrides, run_id=f"seed{seed}",
                 overwrite=True, data_dir=data_dir, progress=False, echo=False,
                 callbacks=[_Clock(start, trial, device)])
    synchronize(device)
    trial.total_s = time.perf_counter() - start
    tta = run.config["train"]["tta"]
    trial.evaluations.append((trial.total_s, float(run.summary["test_accuracy"]),
                              f"final, TTA {tta}" if tta else "final"))
    return trial


# -- the peer (its rendition: bench/_airbench_peers.py) ----------------------------------------
def peer_budget(kind: str, quick: bool) -> Budget:
    """The published budget of airbench94 / airbench94_muon, or ``--quick``'s one short epoch."""
    if quick:
        return Budget(QUICK_BATCH, 1, QUICK_TRAIN, QUICK_TEST, lookahead_start=0, lookahead_every=1,
                      whiten_bias_epochs=1)
    return Budget(2000, 8) if kind == "airbench94_muon" else Budget(1024, 9.9)


# -- the benchmark ------------------------------------------------------------------------------
def parse_sides(text: str | None, recipes: list[str]) -> tuple[bool, list[str]]:
    """``--sides``: whether trainlab runs, and the peers that do (default: trainlab and every
    peer of ``recipes``). A peer that no recipe asked for is compared with is an error."""
    needed = [p for p in PEERS if any(p in RECIPES[r]["peers"] for r in recipes)]
    if text is None:
        return True, needed
    sides = [s for s in text.split(",") if s]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        raise SystemExit(f"unknown side(s) {', '.join(unknown)}; choose from {', '.join(SIDES)}")
    idle = [p for p in sides if p in PEERS and p not in needed]
    if idle:
        raise SystemExit(f"{', '.join(idle)}: no recipe asked for ({', '.join(recipes)}) is compared with it")
    return "trainlab" in sides, [p for p in PEERS if p in sides]


def plan(seeds: list[int], recipes: list[str], trainlab: bool, peers: list[str]) -> list[tuple[int, str, str]]:
    """The runs to make, as (seed, side, recipe) with a peer's own name as its recipe; the order
    alternates with the seed."""
    jobs = [("trainlab", r) for r in recipes if trainlab] + [(p, p) for p in peers]
    return [(seed, side, name) for seed in seeds for side, name in (jobs if seed % 2 == 0 else jobs[::-1])]


def pending(store: TrialStore, jobs: list[tuple[int, str, str]], machine: str, threads: int,
            digests: dict[str, str]) -> tuple[list[tuple[int, str, str]], list[str]]:
    """The jobs the store lacks on this machine and thread count, and a line per job skipped.

    A trainlab run recorded from a recipe file whose digest differs from ``digests`` is not
    skipped: it is trained again (and replaces the old run).
    """
    todo, skipped = [], []
    for seed, side, name in jobs:
        found = store.find((side, name, seed, machine, threads))
        label = f"trainlab {name}" if side == "trainlab" else side
        if found is not None and (side != "trainlab" or found.config == digests.get(name)):
            skipped.append(f"skip {label} seed {seed}: recorded ({found.trial.total_s:.1f} s, "
                           f"final accuracy {found.trial.final:.4f})")
        else:
            if found is not None:
                skipped.append(f"retrain {label} seed {seed}: recorded from another version of its recipe file")
            todo.append((seed, side, name))
    return todo, skipped


def warmups(todo: list[tuple[int, str, str]], device: str) -> list[tuple[str, str]]:
    """The (side, recipe) pairs to train once, untimed, before the timed runs: on a GPU each pair
    that has runs to train, in the order of their first run; none on the CPU.

    A process's first GPU run pays for creating the CUDA context, loading cuBLAS/cuDNN and their
    kernels and (on a fresh machine) decoding the data cache: seconds, against runs of seconds.
    Timed cold, whichever side went first would carry it; airbench's own figures are of runs
    made one after another in a warm process.
    """
    if device != "cuda":
        return []
    return list(dict.fromkeys((side, name) for _, side, name in todo))


def train_one(side: str, name: str, seed: int, data_dir: str | None, quick: bool, workdir: Path,
              device: str) -> Trial:
    """One run of ``side`` (``trainlab`` with the recipe ``name``, or a rendition) with ``seed``."""
    if side == "trainlab":
        return run_trainlab(name, seed, data_dir, quick, workdir, device)
    return run_peer(name, seed, data_dir, peer_budget(name, quick), device)


def guarded(train: Callable[[], Trial], label: str, keep_going: bool) -> Trial | None:
    """``train()``; with ``keep_going`` a failure prints its traceback and gives None instead of
    ending the benchmark (an unattended GPU call then still brings back the other sides' runs)."""
    if not keep_going:
        return train()
    try:
        return train()
    except Exception:
        traceback.print_exc()
        print(f"{label} failed: its remaining runs are skipped (--keep-going)", flush=True)
        return None


def open_store(path: Path | None, quick: bool) -> TrialStore:
    """The runs file at ``path`` when it exists (resumed), else an empty store."""
    if path is None or not path.exists():
        return TrialStore(quick)
    store = TrialStore.load(path)
    if store.quick != quick:
        mode = "--quick" if store.quick else "full-size"
        raise SystemExit(f"{path} holds {mode} runs; use another --trials-json for this mode")
    return store


def render_from(path: Path, write: bool, json_out: Path | None) -> None:
    """Rows and (``write``) the docs section from a ``--trials-json`` file, with no training."""
    store = TrialStore.load(path)
    rows = store_rows(store)
    print_table(rows)
    write_json(json_out, json_rows(rows))
    if write and not store.quick:
        write_docs(DOCS, store)
        print("wrote docs/performance.md")


def main() -> None:
    """Parse arguments, train the runs the trials file lacks, print and write the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--seeds", type=int, default=MIN_SEEDS, help=f"seeds 0 to N-1 (default {MIN_SEEDS})")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="CPU threads of both sides (on a GPU: of the host-side work)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where both sides train (default cpu); cuda: the GPU, after an untimed "
                             "warm-up run of each side")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--sides", help=f"comma-separated, of {', '.join(SIDES)} (default: trainlab and the "
                                        "peers of the recipes)")
    parser.add_argument("--write-docs", action="store_true", help="write docs/performance.md (full mode only)")
    parser.add_argument("--keep-going", action="store_true",
                        help="a side whose run fails is skipped from then on, the others go on; the "
                             "exit status is still 1")
    parser.add_argument("--trials-json", type=Path, metavar="PATH",
                        help="keep every run's evaluations in PATH, written after each run; runs already "
                             "there (same side, recipe, seed, machine, threads) are not trained again")
    parser.add_argument("--render-from", type=Path, metavar="PATH",
                        help="train nothing: the rows (and with --write-docs the section) from a "
                             "--trials-json file")
    args = add_protocol_args(parser).parse_args()
    if args.render_from:
        render_from(args.render_from, args.write_docs, args.json)
        return
    if args.write_docs and not args.quick and args.trials_json is None:
        args.trials_json = TRIALS_JSON  # what the section is written from, kept beside it
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = set(recipes) - set(RECIPES)
    if unknown:
        raise SystemExit(f"unknown recipe(s) {', '.join(sorted(unknown))}; choose from {', '.join(RECIPES)}")
    trainlab, peers = parse_sides(args.sides, recipes)
    check_device(args.device)
    seeds = list(range(1 if args.quick else args.seeds))
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)  # the engine sets its threads from it
    torch.set_num_threads(args.threads)
    # The engine makes malloc reuse freed memory for the whole process; set it before either
    # side runs, so that the peers train with it too (their best CPU mode) whatever the order.
    retain_freed_memory()
    info = device_machine_info(args.device)
    machine = machine_key(info)
    print(device_machine_line(info))
    print(f"{len(seeds)} seed(s), {args.threads} threads, device {args.device}"
          f"{', quick check' if args.quick else ''}")
    store = open_store(args.trials_json, args.quick)
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    store.note_request(recipes, command)
    digests = {r: recipe_digest(r) for r in recipes}
    jobs = plan(seeds, recipes, trainlab, peers)
    todo, skipped = pending(store, jobs, machine, args.threads, digests)
    for line in skipped:
        print(line)
    print(f"{len(todo)} run(s) to train, {len(jobs) - len(todo)} already recorded in {args.trials_json}"
          if args.trials_json else f"{len(todo)} run(s) to train", flush=True)
    failed: set[tuple[str, str]] = set()  # (side, recipe) whose run failed (--keep-going)
    with tempfile.TemporaryDirectory(prefix="trainlab-tta-") as tmp:
        for side, name in warmups(todo, args.device):
            label = f"trainlab {name}" if side == "trainlab" else side
            trial = guarded(lambda side=side, name=name: train_one(side, name, 0, args.data_dir, args.quick,
                                                                   Path(tmp), args.device),
                            f"warm-up {label}", args.keep_going)
            if trial is None:
                failed.add((side, name))
                continue
            print(f"warm-up {label} (not timed, not recorded): {trial.total_s:.1f} s, final accuracy "
                  f"{trial.final:.4f}", flush=True)
        for seed, side, name in todo:
            if (side, name) in failed:
                continue
            label = f"trainlab {name}" if side == "trainlab" else side
            trial = guarded(lambda seed=seed, side=side, name=name: train_one(
                side, name, seed, args.data_dir, args.quick, Path(tmp), args.device),
                f"seed {seed} {label}", args.keep_going)
            if trial is None:
                failed.add((side, name))
                continue
            print(f"seed {seed} {label}: {trial.total_s:.1f} s, final accuracy {trial.final:.4f}", flush=True)
            store.add(Run(side, name, seed, trial, machine, args.threads,
                          digests[name] if side == "trainlab" else None,
                          device_machine_line(device_machine_info(args.device)),
                          datetime.date.today().isoformat()))
            if args.trials_json:
                store.save(args.trials_json)
            if args.write_docs and not args.quick:  # after every run: an interrupted benchmark keeps its runs
                write_docs(DOCS, store)
                print(f"wrote docs/performance.md ({len(store.runs)} runs recorded)", flush=True)
    if not todo:  # nothing trained: still record the command and recipes, and render what is there
        if args.trials_json:
            store.save(args.trials_json)
        if args.write_docs and not args.quick:
            write_docs(DOCS, store)
            print(f"wrote docs/performance.md ({len(store.runs)} runs recorded)")
    rows = store_rows(store)
    print_table(rows)
    write_json(args.json, json_rows(rows))
    if failed:
        names = ", ".join(f"trainlab {n}" if s == "trainlab" else s for s, n in sorted(failed))
        raise SystemExit(f"failed (skipped after its first failure): {names}")


if __name__ == "__main__":
    main()
