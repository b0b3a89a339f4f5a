"""Per-epoch parity: trainlab's cifar10-94 net against the plain-PyTorch airbench94 rendition.

Usage: python bench/bench_epoch.py [--data-dir DIR] [--images N] [--batch B] [--steps S]
                                   [--passes P] [--threads T] [--quick] [--json PATH]

Issue 28: on the same net, trainlab's epoch costs no more than the plain-PyTorch
rendition's (ratio plain / trainlab >= 1.0x, measured side by side in one run). Both sides
train airbench94's net (``configs/fast/cifar10-94.yaml``) on the same CIFAR-10 subset, in
bf16, in one process:

- trainlab: the torch engine's own training object built from the recipe and its per-step
  loop body (``bench_torch.TrainlabSide``: shuffle, alternating flip, reflect-pad crop,
  label smoothing, summed loss, Nesterov SGD, the learning-rate schedule, lookahead, the
  whitening bias dropped after its epochs).
- plain: the airbench94 rendition the time-to-accuracy benchmark trains
  (``bench/_airbench_peers.py``: its net, whitening init, batch augmentation, optimizer,
  schedule and lookahead) as a hand-written loop.

Lookahead runs from the first step on both sides (``train.lookahead.start_epoch=0``), so
every timed epoch is a steady-state one (the recipe's epochs 3 on). The per-epoch test
evaluation is left out on both sides: this measures the training part of an epoch.

Each side warms up for a few steps, then the sides run ``--passes`` alternating passes of
``--steps`` steps (default: one whole epoch, ``--images // --batch`` steps); the median pass,
scaled to an epoch, counts. Uses CIFAR-10 from ``--data-dir`` / ``$TRAINLAB_DATA`` when found,
else random images. Threads: ``--threads``, else ``$TRAINLAB_NUM_THREADS``, else every core.
``--quick``: 256 images, batch 32, one pass of 2 steps after a 1-step warm-up.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _airbench_peers import airbench_net, init_whiten, lookahead, peer_batch, peer_optimizers
from _common import add_protocol_args, default_threads, machine_line, make_row, spread, write_json
from bench_torch import TrainlabSide, alternating_passes, load_images, prepared

from trainlab.config import RunConfig, load_config
from trainlab.config.overrides import with_overrides
from trainlab.data import PreparedData
from trainlab.engines.cpu_memory import retain_freed_memory

BENCHMARK = Path(__file__).stem
ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "fast" / "cifar10-94.yaml"
GOAL = 1.0
WARMUP_STEPS = 3
#: The recipe trains 11 epochs; its schedule (warm-up 23 %, then down) spans that many here too.
RECIPE_EPOCHS = 11
LOOKAHEAD_EVERY, LOOKAHEAD_DECAY = 5, 0.95**5
WHITEN_BIAS_EPOCHS = 3


def recipe_config(batch: int, total_steps: int) -> RunConfig:
    """The cifar10-94 recipe at ``batch``, its schedule stretched over ``total_steps`` steps and
    lookahead from the first epoch (so that every timed epoch is a steady-state one)."""
    config = load_config(RECIPE)
    overrides = [f"train.batch_size={batch}", f"train.steps={total_steps}", "train.device=cpu",
                 f"schedule.warmup_steps={int(0.23 * total_steps)}", "train.lookahead.start_epoch=0"]
    return with_overrides(config, overrides, source=BENCHMARK)


class AirbenchSide:
    """The plain airbench94 rendition's loop (as ``_airbench_peers.run_peer``), by steps."""

    def __init__(self, data: PreparedData, batch: int, total_steps: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.x = torch.from_numpy(data.x_train)  # normalised float32 (N, 3, 32, 32), as run_peer's
        self.y = torch.from_numpy(data.y_train).long()
        net = airbench_net(muon=False)
        init_whiten(net[0], self.x[:5000])
        self.net = net.to(memory_format=torch.channels_last)
        self.batch, self.total = batch, total_steps
        self.per_epoch = len(self.y) // batch
        self.whiten_steps = WHITEN_BIAS_EPOCHS * self.per_epoch
        self.opts, self.set_lr = peer_optimizers(self.net, False, batch)
        self.flip_base = torch.rand(len(self.y), generator=self.gen) < 0.5
        self.perm = torch.arange(len(self.y))
        self.step_count = 0
        self.average: dict[str, torch.Tensor] | None = None

    def steps(self, count: int) -> None:
        """``count`` training steps: the body of run_peer's loop, lookahead every 5 steps."""
        for _ in range(count):
            position, epoch = self.step_count % self.per_epoch, self.step_count // self.per_epoch
            if position == 0:
                self.perm = torch.randperm(len(self.y), generator=self.gen)
                self.net[0].bias.requires_grad_(self.step_count < self.whiten_steps)
            idx = self.perm[position * self.batch : (position + 1) * self.batch]
            xb = peer_batch(self.x[idx], self.flip_base[idx] ^ bool(epoch % 2), 2, self.gen)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self.net(xb.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(out.float(), self.y[idx], label_smoothing=0.2, reduction="sum")
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            self.set_lr(self.step_count, self.total, self.whiten_steps)
            for opt in self.opts:
                opt.step()
            self.step_count += 1
            if self.step_count % LOOKAHEAD_EVERY == 0:
                ramp = (self.step_count / self.total) ** 3
                self.average = lookahead(self.net, self.average, LOOKAHEAD_DECAY * ramp)


def compare(images: np.ndarray, labels: np.ndarray, batch: int, steps: int, passes: int,
            warmup: int) -> dict[str, Any]:
    """Warm-up seconds and per-pass seconds of both sides on the same images."""
    data = prepared(images, labels)
    per_epoch = len(labels) // batch
    # the schedule must cover every step run (warm-up and passes), and at least the recipe's epochs
    total = max(RECIPE_EPOCHS * per_epoch, warmup + steps * passes + 1)
    sides = {"trainlab": TrainlabSide(recipe_config(batch, total), data),
             "plain": AirbenchSide(data, batch, total)}
    warmups, seconds = alternating_passes(sides, warmup, steps, passes)
    return {"warmup": warmups, "seconds": seconds, "per_epoch": per_epoch}


def row_of(result: dict[str, Any], images: int, batch: int, steps: int, source: str) -> dict[str, Any]:
    """The result row: seconds per epoch of each side (median pass scaled to an epoch)."""
    per_epoch = result["per_epoch"]
    epoch_s = {name: float(np.median(s)) / steps * per_epoch for name, s in result["seconds"].items()}
    spreads = "; ".join(f"{name} {spread(s, 's/pass')}" for name, s in result["seconds"].items())
    return make_row(BENCHMARK, f"configs/fast/cifar10-94.yaml net, {images} {source}, batch {batch}, "
                    f"bf16, {per_epoch} steps/epoch (training only)", epoch_s["trainlab"], epoch_s["plain"],
                    peer_name="plain PyTorch airbench94 rendition", unit="s/epoch", higher_is_better=False,
                    min_ratio=GOAL,
                    note=f"median of {len(result['seconds']['trainlab'])} alternating passes of {steps} "
                         f"steps, scaled to {per_epoch} steps; {spreads}")


def main() -> None:
    """Parse arguments, time both sides, print and (with --json) write the row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--images", type=int, default=10240, help="training images (an epoch's worth)")
    parser.add_argument("--batch", type=int, default=1024, help="batch size (the recipe's: 1024)")
    parser.add_argument("--steps", type=int, help="steps per timed pass (default: one epoch)")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = add_protocol_args(parser).parse_args()
    warmup = WARMUP_STEPS
    if args.quick:
        args.images, args.batch, args.steps, args.passes, warmup = 256, 32, 2, 1, 1
    per_epoch = args.images // args.batch
    if per_epoch < 1:
        raise SystemExit(f"--images {args.images} is less than one batch of {args.batch}")
    steps = args.steps or per_epoch
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)  # the engine sets its threads from it
    torch.set_num_threads(args.threads)
    # The engine makes malloc reuse freed memory for its process: set it before either side is
    # built, so that the plain loop runs with it too.
    retain_freed_memory()
    print(machine_line())
    images, labels, source = load_images(args.data_dir, args.images)
    print(f"{len(images)} {source}, batch {args.batch}, {args.passes} alternating passes of {steps} steps "
          f"(median), torch {torch.__version__}, {args.threads} threads", flush=True)
    result = compare(images, labels, args.batch, steps, args.passes, warmup)
    row = row_of(result, len(images), args.batch, steps, source)
    for name, seconds in result["seconds"].items():
        print(f"{name:>9}: warm-up {result['warmup'][name]:.2f} s; s/pass {[round(s, 2) for s in seconds]}")
    print(f"s/epoch ({per_epoch} steps): trainlab {row['trainlab']:.2f}, plain {row['peer']:.2f}; "
          f"ratio plain / trainlab {row['ratio']:.3f}x (goal >= {GOAL}x: {'met' if row['met'] else 'not met'})")
    write_json(args.json, [row])


if __name__ == "__main__":
    main()
