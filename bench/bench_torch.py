"""trainlab's torch training loop vs a plain hand-written PyTorch loop, on the same batches.

Usage: python bench/bench_torch.py [--data-dir DIR] [--images N] [--steps S] [--threads T]
                                   [--models e,c,mlp] [--precisions fp32,bf16] [--batch B]
                                   [--passes P] [--no-keras] [--no-compile] [--write-docs]
                                   [--quick] [--json PATH]

Three CIFAR-10 nets, each with its seed study's optimizer and batch size:

- ``e``: seed E's Keras CNN (conv 32-64-64, each with max-pooling, dense 64 sigmoid;
  122,570 parameters), SGD lr 0.015 momentum 0.5, batch 50.
- ``c``: seed C's final CNN (VGG-style: three blocks of two 3x3 convs, 32-64-128 filters,
  batch norm before ReLU, dropout 0.2/0.3/0.4, dense 128 with dropout 0.5, He init),
  Adam 1e-3, L2 1e-4 on the kernels, batch 256.
- ``mlp``: 3072-500-500-10 ReLU MLP, SGD lr 0.01 momentum 0.9, batch 100.

Both sides hold the images as one uint8 tensor (N, 3, 32, 32), gather each batch by index
in the same order (the engine's data-order generator), normalise it, and train in the
same precision (fp32, or bf16 autocast), channels_last for the CNNs:

- trainlab: the torch engine's own ``TorchTraining`` object built from the config (model,
  optimizer, penalty, clipping, device-side metric sums, NaN check every 20 steps), its
  step function and data-order/learning-rate bookkeeping as ``run()`` does them. The
  per-epoch evaluation, monitors and checkpoint are left out: they happen once an epoch,
  not per step.
- plain: ``torch.optim`` and a loop written by hand (forward, cross-entropy plus the
  same L2 sum, backward, step).

- keras: if ``keras`` is installed (the ``bench`` extra, never a runtime dependency), the
  same net built in Keras 3 from the same config (same layer sizes, so the same trainable
  parameter count, checked and printed; same optimizer, L2 and batch size), trained by
  ``keras.fit`` on its torch backend at the same precision (bf16 = the ``mixed_bfloat16``
  policy) on the same normalised images as float32 NHWC arrays. A keras pass is one
  ``fit`` epoch of exactly ``--steps`` batches (see ``bench/_keras_peer.py``). Without
  keras, or with ``--no-keras``, the column is skipped with a note.

Every side runs with malloc reusing freed memory (``trainlab.engines.cpu_memory``, which the
engine turns on for its process), set before any side is built.

Each side is timed in alternating passes of ``--steps`` steps after a warm-up; the median
pass counts (on a shared machine a single pass, fast or slow, says little; 11 passes by default,
as 7 left the medians of a 2-core AMD EPYC VM up to 1.5x their minimum). Prints images/s
of each and the ratios trainlab/plain (goal >= 0.97) and trainlab/keras (goal >= 1.4).
Unless ``--no-compile`` (or ``--quick``), a fourth side, the engine with ``train.compile: true``,
adds a row against the eager engine with its compile time and break-even; ``--write-docs``
writes those answers into the "torch.compile" section of docs/performance.md.
Uses CIFAR-10 from ``--data-dir`` / ``$TRAINLAB_DATA`` when found, else random images.
Threads: ``--threads``, else ``$TRAINLAB_NUM_THREADS``, else every core this process may use.
``--quick``: 256 images, batch 32, one pass of 2 steps after a 1-step warm-up, no compiled side.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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
from _keras_peer import KerasSide, keras_available

from trainlab.callbacks import CallbackList, TrainState
from trainlab.config import RunConfig
from trainlab.data import PreparedData
from trainlab.data.normalize import apply_normalizer, fit_normalizer
from trainlab.engines.base import FitContext
from trainlab.engines.cpu_memory import retain_freed_memory
from trainlab.engines.torch.engine import TorchTraining
from trainlab.engines.torch.models import build_model, count_params
from trainlab.engines.torch.optim import penalized_params
from trainlab.engines.torch.runtime import TrainOptions, stream_seed
from trainlab.run_files import RunDir

BENCHMARK = Path(__file__).stem
ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 3
PLAIN_GOAL, KERAS_GOAL = 0.97, 1.4

MODELS: dict[str, dict[str, Any]] = {
    "e": {
        "title": "seed E CNN",
        "model": {"type": "cnn", "conv": [{"filters": 32}, {"filters": 64}, {"filters": 64}],
                  "fc": [64], "fc_activation": "sigmoid"},
        "optimizer": {"type": "momentum", "lr": 0.015, "momentum": 0.5},
        "batch": 50,
    },
    "c": {
        "title": "seed C final CNN",
        "model": {"type": "cnn", "batch_norm": True, "bn_position": "before", "init": {"scheme": "he_uniform"},
                  "conv": [{"filters": [32, 32]}, {"filters": [64, 64]}, {"filters": [128, 128]}],
                  "dropout": [0.2, 0.3, 0.4], "fc": [128], "fc_dropout": 0.5},
        "optimizer": {"type": "adam", "lr": 1e-3},
        "regularization": {"l2": 1e-4},
        "batch": 256,
    },
    "mlp": {
        "title": "MLP 3072-500-500-10",
        "model": {"type": "mlp", "hidden": [500, 500]},
        "optimizer": {"type": "momentum", "lr": 0.01, "momentum": 0.9},
        "batch": 100,
    },
}


def load_images(data_dir: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` CIFAR-10 training images (N, 32, 32, 3) uint8 and labels, or random ones."""
    if data_dir:
        try:
            from trainlab.data import load_dataset

            raw = load_dataset("cifar10", data_dir)
            return np.asarray(raw.x_train[:n]), np.asarray(raw.y_train[:n]), "CIFAR-10"
        except Exception as exc:  # a benchmark falls back rather than stops
            print(f"(CIFAR-10 not loaded: {exc}; using random images)")
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n), "random images"


def run_config(key: str, precision: str, steps: int, batch: int | None = None) -> RunConfig:
    """The run config of model ``key`` at ``precision``; ``batch`` overrides its seed study's batch."""
    spec = MODELS[key]
    return RunConfig.from_dict({
        "engine": "torch", "seed": 0, "data": {"dataset": "cifar10"},
        "model": spec["model"], "optimizer": spec["optimizer"],
        "regularization": spec.get("regularization", {}),
        "train": {"steps": steps, "batch_size": batch or spec["batch"], "precision": precision, "device": "cpu"},
    })


def prepared(images: np.ndarray, labels: np.ndarray) -> PreparedData:
    normalizer = fit_normalizer(images, "channel")
    x = apply_normalizer(images, normalizer)  # (N, 3, 32, 32) float32
    empty = x[:0]
    return PreparedData(x, labels.astype(np.int64), empty, np.zeros(0, np.int64), None, None, None,
                        [str(k) for k in range(10)], (3, 32, 32), 10, normalizer, "bench", Path("."))


class TrainlabSide:
    """The torch engine's training object and its per-step loop body (as ``TorchTraining.run``)."""

    def __init__(self, config: RunConfig, data: PreparedData, compile_model: bool = False) -> None:
        context = FitContext(run_dir=RunDir(Path(tempfile.gettempdir()) / "trainlab-bench"),
                             callbacks=CallbackList([]), state=TrainState(), progress=False, log=lambda _m: None)
        options = TrainOptions(device="cpu", precision=config.train.precision, compile=compile_model)
        self.training = TorchTraining(config, data, context, options)

    def steps(self, count: int) -> None:
        """The loop's own per-step hooks (shuffle, step, progress read), without evaluations."""
        t, state = self.training, self.training.state
        for _ in range(count):
            position = state.step % t.steps_per_epoch
            if position == 0 and t.config.train.shuffle:
                t.shuffle()
            lr = t.learning_rate(state.step)
            t.step(position, lr)
            state.step += 1
            state.lr = lr
            if state.step % t.progress_every == 0:
                t.progress_figures()
        t.check_finite()


class PlainSide:
    """A hand-written PyTorch loop: the same model, data order, precision and loss."""

    def __init__(self, config: RunConfig, data: PreparedData, images: np.ndarray) -> None:
        self.config = config
        self.model = build_model(config.model, (3, 32, 32), 10, seed=stream_seed(config.seed, 0))
        self.conv = config.model.type == "cnn"
        if self.conv:
            self.model = self.model.to(memory_format=torch.channels_last)
        o = config.optimizer
        params = list(self.model.parameters())
        if o.type == "adam":
            self.opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=o.lr, foreach=True)
        else:
            self.opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, foreach=True)
        self.l2 = config.regularization.l2
        self.kernels = penalized_params(self.model)
        norm = data.normalizer
        self.mean = torch.tensor(norm["mean"], dtype=torch.float32).reshape(1, 3, 1, 1)
        self.inv_std = torch.from_numpy((1.0 / np.asarray(norm["std"])).astype(np.float32)).reshape(1, 3, 1, 1)
        self.x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())  # (N, 3, 32, 32) uint8
        self.y = torch.from_numpy(data.y_train)
        self.batch = int(config.train.batch_size)  # type: ignore[arg-type]
        self.gen = torch.Generator().manual_seed(stream_seed(config.seed, 1))  # the engine's data order
        self.step_count, self.perm = 0, torch.arange(len(self.y))
        self.bf16 = config.train.precision == "bf16"

    def steps(self, count: int) -> None:
        n, bs = len(self.y), self.batch
        per_epoch = n // bs
        self.model.train()
        for _ in range(count):
            position = self.step_count % per_epoch
            if position == 0:
                self.perm = torch.randperm(n, generator=self.gen)
            index = self.perm[position * bs : (position + 1) * bs]
            xb = self.x.index_select(0, index).float().sub_(self.mean).mul_(self.inv_std)
            if self.conv:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = self.y.index_select(0, index)
            cast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with cast:
                logits = self.model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            if self.l2:
                loss = loss + self.l2 * sum(w.pow(2).sum() for w in self.kernels)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step_count += 1


def timed(side: Any, steps: int) -> float:
    start = time.perf_counter()
    side.steps(steps)
    return time.perf_counter() - start


def bench(config: RunConfig, images: np.ndarray, data: PreparedData, steps: int, passes: int,
          keras: bool, warmup: int = 3, compiled: bool = False) -> dict[str, Any]:
    """Seconds per pass of each side over ``passes`` alternating passes of ``steps`` steps.

    Returns ``{"seconds": {side: [...]}, "params": {side: n}, "warmup": {side: s},
    "warmup_steps": n}`` for the sides trainlab, plain, (when ``keras``) keras and (when
    ``compiled``) ``compiled``: the engine with ``train.compile`` on, whose warm-up holds
    torch.compile's compile time.

    Raises:
        RuntimeError: the keras net's trainable parameter count differs from the torch net's.
    """
    plain = PlainSide(config, data, images)
    sides: dict[str, Any] = {"trainlab": TrainlabSide(config, data), "plain": plain}
    params = {"plain": count_params(plain.model)}  # the engine builds the same model from the config
    if keras:
        sides["keras"] = KerasSide(config, data.x_train, data.y_train)
        params["keras"] = sides["keras"].params
        if params["keras"] != params["plain"]:
            raise RuntimeError(f"the keras net has {params['keras']:,} trainable parameters, "
                               f"the torch net {params['plain']:,}: not the same net")
    if compiled:
        sides["compiled"] = TrainlabSide(config, data, compile_model=True)
    # allocator, kernels, optimizer state; keras builds its train function; torch.compile compiles
    warmups, seconds = alternating_passes(sides, warmup, steps, passes)
    return {"seconds": seconds, "params": params, "warmup": warmups, "warmup_steps": warmup}


def alternating_passes(sides: dict[str, Any], warmup: int, steps: int,
                       passes: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each side's warm-up seconds (``warmup`` steps), then seconds per pass of ``steps`` steps
    over ``passes`` rounds in which every side runs one pass in turn. The order turns by one
    side each round, so that no side always goes first: in A/A runs of one MLP (the same code
    on both sides) the side that went second measured about 1 % faster."""
    warmups = {name: timed(side, warmup) for name, side in sides.items()}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_index in range(passes):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(sides[name], steps))
    return warmups, seconds


def rows_of(title: str, config: RunConfig, result: dict[str, Any], steps: int,
            keras_note: str) -> list[dict[str, Any]]:
    """Result rows of one model and precision: trainlab vs plain, trainlab vs keras.fit."""
    batch, precision = int(config.train.batch_size), config.train.precision  # type: ignore[arg-type]
    seconds = result["seconds"]
    rate = {name: steps * batch / float(np.median(s)) for name, s in seconds.items()}
    passes = f"median of {len(seconds['trainlab'])} alternating passes of {steps} steps"
    workload = f"{title} ({result['params']['plain']:,} params), batch {batch}, {precision}"
    spreads = {name: f"{name} {spread(s, 's/pass')}" for name, s in seconds.items()}
    rows = [make_row(BENCHMARK, workload, rate["trainlab"], rate["plain"], peer_name="plain PyTorch loop",
                     unit="img/s", min_ratio=PLAIN_GOAL,
                     note=f"{passes}; {spreads['trainlab']}; {spreads['plain']}")]
    policy = "mixed_bfloat16" if precision == "bf16" else "float32"
    if not keras_note:
        keras_note = (f"{passes}; {spreads['trainlab']}; {spreads['keras']}; "
                      f"trainable params: keras {result['params']['keras']:,}, torch {result['params']['plain']:,}")
    rows.append(make_row(BENCHMARK, workload, rate["trainlab"], rate.get("keras"),
                         peer_name=f"keras.fit (torch backend, {policy})", unit="img/s", min_ratio=KERAS_GOAL,
                         note=keras_note))
    if "compiled" in rate:
        extra = result["warmup"]["compiled"] - result["warmup"]["trainlab"]
        rows.append(make_row(
            BENCHMARK, f"{workload}, train.compile: true", rate["compiled"], rate["trainlab"],
            peer_name="trainlab eager (train.compile: false, the default)", unit="img/s",
            note=f"{passes}; compile time {extra:.1f} s (warm-up of {result['warmup_steps']} steps, "
                 f"compiled minus eager); {spreads['compiled']}; break-even after {_break_even(extra, rate)}"))
    return rows


def break_even_images(extra_s: float, eager_rate: float, compiled_rate: float) -> float | None:
    """Images trained before compiling pays back ``extra_s`` of compile time (None: never, it is slower)."""
    gain = 1.0 / eager_rate - 1.0 / compiled_rate  # seconds saved per image
    return extra_s / gain if gain > 0 else None


def break_even_text(images: float | None) -> str:
    """:func:`break_even_images` in words."""
    return "never (slower per step)" if images is None else f"{images:,.0f} images"


def _break_even(extra_s: float, rate: dict[str, float]) -> str:
    """How many images before compiling pays back its compile time ("never" when slower)."""
    return break_even_text(break_even_images(extra_s, rate["trainlab"], rate["compiled"]))


def compile_verdicts(rows: list[dict[str, Any]]) -> str:
    """docs/performance.md's torch.compile section: the measured answer per model and precision."""
    lines = ["## torch.compile", "",
             "Written by `bench/bench_torch.py --write-docs` (trainlab's step with `train.compile: true` against "
             "the same engine in eager mode, alternating passes on the same batches; compile time = the "
             "compiled side's warm-up minus the eager side's). `train.compile` stays off by default.", "",
             f"Date: {datetime.date.today().isoformat()}", "", f"Machine: {machine_line().removeprefix('machine: ')}",
             "", "| model, precision | eager img/s | compiled img/s | compiled / eager | compile time | answer |",
             "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        if not row["workload"].endswith("train.compile: true"):
            continue
        compile_s = row["note"].split("compile time ", 1)[1].split(" s", 1)[0]
        ratio = row["ratio"] or 0.0
        answer = ("pays in a long run (compile time is paid back, see the break-even in bench/results.md)"
                  if ratio >= 1.03 else "does not pay: within 3 % of eager or slower; keep it off")
        lines.append(f"| {row['workload'].removesuffix(', train.compile: true')} | {fmt(row['peer'])} | "
                     f"{fmt(row['trainlab'])} | {ratio:.2f}x | {compile_s} s | {answer} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, run every model and precision, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed pass")
    parser.add_argument("--passes", type=int, default=11)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--models", default="e,c,mlp")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch", type=int, help="one batch size for every model (default: each seed study's)")
    parser.add_argument("--no-keras", action="store_true", help="leave out the keras.fit column")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the engine with train.compile (default: on, off with --quick)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the torch.compile section of docs/performance.md (needs --compile)")
    args = add_protocol_args(parser).parse_args()
    warmup = WARMUP_STEPS
    if args.quick:
        args.images, args.steps, args.passes, warmup = 256, 2, 1, 1
        args.batch = args.batch or 32
    compiled = not args.quick if args.compile is None else args.compile
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)  # the engine sets its threads from it
    torch.set_num_threads(args.threads)
    # The engine makes malloc reuse freed memory for the whole process: set it first, so that
    # the plain loop and keras.fit run with it too (every side in its best CPU mode).
    retain_freed_memory()
    keras_note = ""
    if args.no_keras:
        keras_note = "skipped (--no-keras)"
    elif not keras_available():
        keras_note = "keras is not installed: skipped (pip install -e '.[bench]')"
    print(machine_line())
    models = args.models.split(",")
    needed = args.steps * max(args.batch or MODELS[key]["batch"] for key in models)
    if not keras_note and args.images < needed:  # a keras pass is a window of distinct images
        print(f"(--images raised from {args.images} to {needed}: a keras pass needs steps x batch images)")
        args.images = needed
    images, labels, source = load_images(args.data_dir, args.images)
    data = prepared(images, labels)
    print(f"{len(images)} {source}, {args.passes} alternating passes of {args.steps} steps (median), "
          f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores")
    header = f"{'model':<22}{'params':>10}{'batch':>7}{'precision':>10}{'trainlab img/s':>16}" \
             f"{'plain img/s':>13}{'ratio':>8}{'keras img/s':>13}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    rows: list[dict[str, Any]] = []
    for key in models:
        for precision in args.precisions.split(","):
            config = run_config(key, precision, 10**6, args.batch)
            result = bench(config, images, data, args.steps, args.passes, not keras_note, warmup, compiled)
            plain_row, keras_row, *compile_rows = rows_of(MODELS[key]["title"], config, result, args.steps,
                                                          keras_note)
            rows += [plain_row, keras_row, *compile_rows]
            keras_cells = f"{keras_row['peer']:>13,.0f}{keras_row['ratio']:>7.2f}x" if keras_row["peer"] else \
                f"{'-':>13}{'-':>8}"
            print(f"{MODELS[key]['title']:<22}{result['params']['plain']:>10,}{config.train.batch_size:>7}"
                  f"{precision:>10}{plain_row['trainlab']:>16,.0f}{plain_row['peer']:>13,.0f}"
                  f"{plain_row['ratio']:>7.2f}x{keras_cells}", flush=True)
            if "keras" in result["params"]:
                print(f"  trainable parameters: torch {result['params']['plain']:,}, "
                      f"keras {result['params']['keras']:,}")
            for row in compile_rows:
                print(f"  train.compile: {row['trainlab']:,.0f} img/s, {row['ratio']:.2f}x eager; {row['note']}",
                      flush=True)
    print(f"goals: trainlab / plain >= {PLAIN_GOAL}x, trainlab / keras.fit >= {KERAS_GOAL}x")
    if keras_note:
        print(f"keras.fit comparison: {keras_note}")
    write_json(args.json, rows)
    if args.write_docs:
        if not compiled:
            raise SystemExit("--write-docs writes the torch.compile answers: run without --quick/--no-compile")
        write_doc_section(ROOT / "docs" / "performance.md", "torch-compile", compile_verdicts(rows),
                          PERFORMANCE_TITLE)
        print("wrote the torch.compile section of docs/performance.md")


if __name__ == "__main__":
    main()
