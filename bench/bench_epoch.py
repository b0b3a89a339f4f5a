"""Per-epoch parity: a fast recipe's net in trainlab against its plain-PyTorch airbench rendition.

Usage: python bench/bench_epoch.py [--recipe {all,cifar10-94,cifar10-94-muon}] [--set KEY=VALUE ...]
                                   [--data-dir DIR] [--images N] [--batch B] [--steps S]
                                   [--passes P] [--threads T] [--eval-passes E] [--quick] [--json PATH]

Issue 28: on the same net, trainlab's epoch costs no more than the plain-PyTorch
rendition's (ratio plain / trainlab >= 1.0x, measured side by side in one run). Both sides
train the recipe's net on the same CIFAR-10 subset, in bf16, in one process. ``--recipe``
picks the recipe and its peer (``bench/_airbench_peers.py``); by default (``all``) each recipe
is timed against its own rendition, one after the other, a row each (``run_all.py`` records both):

- ``cifar10-94``: ``configs/fast/cifar10-94.yaml`` against the airbench94
  rendition (Nesterov SGD, the triangular schedule, lookahead);
- ``cifar10-94-muon``: ``configs/fast/cifar10-94-muon.yaml`` against the airbench94_muon
  rendition (Muon on the conv kernels and Nesterov SGD on the rest, every lr falling
  linearly to 0, no lookahead).

The two sides:

- trainlab: the torch engine's own training object built from the recipe and its per-step
  loop body (``bench_torch.TrainlabSide``: shuffle, alternating flip, reflect-pad crop,
  label smoothing, summed loss, the optimizers, the learning-rate schedule, lookahead where
  the recipe has it, the whitening bias frozen after its epochs).
- plain: the rendition the time-to-accuracy benchmark trains (its net, whitening init,
  optimizers, schedule, lookahead for airbench94) as ``run_peer``'s loop, by steps, each
  step ``_airbench_peers.peer_step`` (batch augmentation, loss, optimizer steps).

The recipe's schedule is stretched over the steps run (at least the recipe's epochs), on
both sides. Lookahead, where the recipe has it, runs from the first step on both sides
(``train.lookahead.start_epoch=0``), so that every timed epoch has it, as the recipe's
epochs 3 on do. Both sides train the whitening bias for its first 3 epochs, as the recipes
and renditions do. The per-epoch test evaluation is left out on both sides: this measures
the training part of an epoch.

``--set KEY=VALUE`` (repeatable, with one ``--recipe``) overrides the trainlab side's recipe, e.g.
to time a tuned candidate: ``--set train.batch_size=1000 --set train.epochs=7 --set optimizer.lr=0.17``. The
plain side takes the same batch size. Only keys that leave the two sides the same net doing
the same work per step are taken (:data:`SAME_NET_KEYS`: the batch size, the length in
epochs, the optimizers' hyperparameter values, none turning a momentum or weight decay on or
off); any other (``model.*``, ``augment.*`` such as ``augment.low_res``, ``loss.*``, the
optimizer's type, precision...) is refused. The plain side keeps its published values.
``--batch`` defaults to the recipe's batch size (after ``--set``).

``--eval-passes E`` also times the evaluation of the images, alternating E times per kind: the
plain forward, and the final one with TTA (trainlab: the recipe's ``train.tta``; plain: the
rendition's 6 views), both in eval mode and bf16, so that the end of a run is compared too.

Each side warms up for a few steps, then the sides run ``--passes`` alternating passes of
``--steps`` steps (default: one whole epoch, ``--images // --batch`` steps); the median pass,
scaled to an epoch, counts. Uses CIFAR-10 from ``--data-dir`` / ``$TRAINLAB_DATA`` when found,
else random images. Threads: ``--threads``, else ``$TRAINLAB_NUM_THREADS``, else every core.
``--quick``: 256 images, batch 32, one pass of 2 steps after a 1-step warm-up (per recipe).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _airbench_peers import (
    airbench_net,
    init_whiten,
    lookahead,
    peer_eval,
    peer_optimizers,
    peer_step,
)
from _common import add_protocol_args, default_threads, machine_line, make_row, spread, write_json
from bench_torch import TrainlabSide, alternating_passes, load_images, prepared

from trainlab.config import RunConfig, load_config
from trainlab.config.overrides import with_overrides
from trainlab.data import PreparedData
from trainlab.engines.cpu_memory import retain_freed_memory

BENCHMARK = Path(__file__).stem
ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.0
WARMUP_STEPS = 3
#: CIFAR-10's training images: the recipes train on all of them (their length in epochs is of these).
CIFAR10_TRAIN = 50_000
#: airbench94's triangular schedule peaks at 23 % of the steps (``peer_optimizers``), as cifar10-94's warm-up.
WARMUP_FRACTION = 0.23
LOOKAHEAD_EVERY, LOOKAHEAD_DECAY = 5, 0.95**5
WHITEN_BIAS_EPOCHS = 3
#: The ``--set`` keys that leave both sides the same net doing the same work per step: the plain
#: side follows the batch size; the length and the optimizers' values change numbers, not work.
SAME_NET_KEYS = ("train.batch_size", "train.epochs",
                 *(f"optimizer.{p}{k}" for p in ("", "other.")
                   for k in ("lr", "momentum", "weight_decay", "bias_lr_scale")))


@dataclass(frozen=True)
class Recipe:
    """A fast recipe this benchmark times and the airbench rendition it is timed against."""

    name: str
    muon: bool  # the peer is airbench94_muon (else airbench94)

    @property
    def path(self) -> Path:
        """The recipe's file."""
        return ROOT / "configs" / "fast" / f"{self.name}.yaml"

    @property
    def peer(self) -> str:
        """The rendition's name, as ``run_peer`` takes it."""
        return "airbench94_muon" if self.muon else "airbench94"


RECIPES = {r.name: r for r in (Recipe("cifar10-94", muon=False), Recipe("cifar10-94-muon", muon=True))}
DEFAULT_RECIPE = RECIPES["cifar10-94"]


def checked_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` as given, once every key is one of :data:`SAME_NET_KEYS`.

    Raises:
        SystemExit: an override without ``=``, or of another key (it would make the two sides
            different nets or steps).
    """
    for text in overrides:
        key, sep, _ = text.partition("=")
        if not sep:
            raise SystemExit(f"--set {text!r}: expected KEY=VALUE, e.g. train.batch_size=1000")
        if key.strip() not in SAME_NET_KEYS:
            raise SystemExit(f"--set {text!r}: not taken; only {', '.join(SAME_NET_KEYS)} leave the plain "
                             "rendition the same net doing the same work per step")
    return list(overrides)


def _field(config: Any, key: str) -> Any:
    """The value of dotted ``key`` in ``config`` (None where a section is absent)."""
    for name in key.split("."):
        config = getattr(config, name, None)
    return config


def recipe_epochs(config: RunConfig) -> int:
    """A recipe's length in epochs of CIFAR-10's training images: ``train.epochs``, else ``train.steps``
    over its batches per epoch."""
    train = config.train
    if train.epochs is not None:
        return train.epochs
    return math.ceil(train.steps / (CIFAR10_TRAIN // train.batch_size))  # type: ignore[operator]


def tuned_recipe(recipe: Recipe, overrides: Sequence[str] = ()) -> RunConfig:
    """The recipe with ``--set`` ``overrides`` (checked); its length pinned in epochs first, so
    that a new batch size keeps the recipe's epochs rather than its steps.

    Raises:
        SystemExit: an override :func:`checked_overrides` refuses, or one that turns a momentum or
            a weight decay on or off (work per step the rendition then does differently).
    """
    config = load_config(recipe.path)
    if not overrides:
        return config
    length = f"train.epochs={recipe_epochs(config)}"
    tuned = with_overrides(config, [length, *checked_overrides(overrides)], source=BENCHMARK)
    for key in SAME_NET_KEYS:
        before, after = _field(config, key) or 0, _field(tuned, key) or 0
        # torch skips a zero weight decay and keeps no buffer for a zero momentum: work per step
        if key.endswith(("momentum", "weight_decay")) and (before == 0) != (after == 0):
            raise SystemExit(f"--set {key}: {before} -> {after} turns on or off work per step that the "
                             f"{recipe.peer} rendition {'does not do' if before == 0 else 'does'}; not taken")
    return tuned


def recipe_config(batch: int, total_steps: int, recipe: Recipe = DEFAULT_RECIPE,
                  overrides: Sequence[str] = ()) -> RunConfig:
    """The recipe (with ``overrides``) at ``batch``, its schedule stretched over ``total_steps``
    steps (cifar10-94's warm-up kept at 23 % of them) and its lookahead, if any, from the first
    epoch (so that every timed epoch is a steady-state one)."""
    config = tuned_recipe(recipe, overrides)
    bench = [f"train.batch_size={batch}", f"train.steps={total_steps}", "train.device=cpu"]
    if not recipe.muon:  # airbench94_muon's lr falls from the first step: no warm-up to stretch
        bench.append(f"schedule.warmup_steps={int(WARMUP_FRACTION * total_steps)}")
    if config.train.lookahead is not None:
        bench.append("train.lookahead.start_epoch=0")
    return with_overrides(config, bench, source=BENCHMARK)


class AirbenchSide:
    """The plain airbench94 (or, with ``muon``, airbench94_muon) rendition's loop
    (as ``_airbench_peers.run_peer``), by steps."""

    def __init__(self, data: PreparedData, batch: int, total_steps: int, seed: int = 0,
                 muon: bool = False) -> None:
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.x = torch.from_numpy(data.x_train)  # normalised float32 (N, 3, 32, 32), as run_peer's
        self.y = torch.from_numpy(data.y_train).long()
        net = airbench_net(muon=muon)
        init_whiten(net[0], self.x[:5000])
        self.net = net.to(memory_format=torch.channels_last)
        self.muon = muon
        self.batch, self.total = batch, total_steps
        self.per_epoch = len(self.y) // batch
        self.whiten_steps = WHITEN_BIAS_EPOCHS * self.per_epoch
        self.opts, self.set_lr = peer_optimizers(self.net, muon, batch)
        self.flip_base = torch.rand(len(self.y), generator=self.gen) < 0.5
        self.perm = torch.arange(len(self.y))
        self.step_count = 0
        self.average: dict[str, torch.Tensor] | None = None

    def steps(self, count: int) -> None:
        """``count`` training steps: the body of run_peer's loop; airbench94's lookahead every 5 steps
        (airbench94_muon has none)."""
        for _ in range(count):
            position, epoch = self.step_count % self.per_epoch, self.step_count // self.per_epoch
            if position == 0:
                self.perm = torch.randperm(len(self.y), generator=self.gen)
                self.net[0].bias.requires_grad_(self.step_count < self.whiten_steps)
            idx = self.perm[position * self.batch : (position + 1) * self.batch]
            self.set_lr(self.step_count, self.total, self.whiten_steps)
            peer_step(self.net, self.opts, self.x[idx], self.y[idx], self.flip_base[idx] ^ bool(epoch % 2), self.gen)
            self.step_count += 1
            if not self.muon and self.step_count % LOOKAHEAD_EVERY == 0:
                ramp = (self.step_count / self.total) ** 3
                self.average = lookahead(self.net, self.average, LOOKAHEAD_DECAY * ramp)


def compare(images: np.ndarray, labels: np.ndarray, batch: int, steps: int, passes: int, warmup: int,
            recipe: Recipe = DEFAULT_RECIPE, overrides: Sequence[str] = (), eval_passes: int = 0) -> dict[str, Any]:
    """Warm-up seconds and per-pass seconds of both sides on the same images; with
    ``eval_passes``, then seconds per evaluation of those images, without and with TTA."""
    data = prepared(images, labels)
    per_epoch = len(labels) // batch
    # the schedule must cover every step run (warm-up and passes), and at least the recipe's epochs
    epochs = recipe_epochs(tuned_recipe(recipe, overrides))
    total = max(epochs * per_epoch, warmup + steps * passes + 1)
    sides = {"trainlab": TrainlabSide(recipe_config(batch, total, recipe, overrides), data),
             "plain": AirbenchSide(data, batch, total, muon=recipe.muon)}
    warmups, seconds = alternating_passes(sides, warmup, steps, passes)
    result: dict[str, Any] = {"warmup": warmups, "seconds": seconds, "per_epoch": per_epoch}
    if eval_passes:
        result["eval"] = {tta: alternating_passes(evaluators(sides, tta), 1, 1, eval_passes)[1]
                          for tta in (False, True)}
    return result


class Evaluation:
    """One side's evaluation of the training images as a benchmark side (``steps(n)``: n
    evaluations): trainlab's ``logits_of`` (with the recipe's ``train.tta`` views when ``tta``)
    or the rendition's ``peer_eval`` (airbench's 6 views), both in bf16, in eval mode."""

    def __init__(self, side: TrainlabSide | AirbenchSide, tta: bool) -> None:
        self.side, self.tta = side, tta

    def steps(self, count: int) -> None:
        for _ in range(count):
            if isinstance(self.side, TrainlabSide):
                training = self.side.training
                training.logits_of(training.x_train, training.config.train.tta if self.tta else False)
            else:
                peer_eval(self.side.net, self.side.x, self.side.y, self.tta)


def evaluators(sides: dict[str, Any], tta: bool) -> dict[str, Evaluation]:
    """The sides' evaluations, with or without test-time augmentation."""
    return {name: Evaluation(side, tta) for name, side in sides.items()}


def eval_rows(result: dict[str, Any], images: int, source: str, recipe: Recipe = DEFAULT_RECIPE) -> list[dict[str, Any]]:
    """One row per evaluation kind (plain, with TTA): median seconds of each side."""
    rows = []
    for tta, seconds in result.get("eval", {}).items():
        median = {name: float(np.median(s)) for name, s in seconds.items()}
        spreads = "; ".join(f"{name} {spread(s, 's')}" for name, s in seconds.items())
        views = "with TTA (trainlab: the recipe's train.tta; plain: airbench's 6 views)" if tta else "no TTA"
        rows.append(make_row(BENCHMARK, f"configs/fast/{recipe.name}.yaml net, evaluation of {images} {source}, "
                             f"{views}, bf16", median["trainlab"], median["plain"],
                             peer_name=f"plain PyTorch {recipe.peer} rendition", unit="s/eval",
                             higher_is_better=False, min_ratio=GOAL,
                             note=f"median of {len(seconds['trainlab'])} alternating evaluations; {spreads}"))
    return rows


def row_of(result: dict[str, Any], images: int, batch: int, steps: int, source: str,
           recipe: Recipe = DEFAULT_RECIPE, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The result row: seconds per epoch of each side (median pass scaled to an epoch)."""
    per_epoch = result["per_epoch"]
    epoch_s = {name: float(np.median(s)) / steps * per_epoch for name, s in result["seconds"].items()}
    spreads = "; ".join(f"{name} {spread(s, 's/pass')}" for name, s in result["seconds"].items())
    tuned = "".join(f" --set {text}" for text in overrides)
    return make_row(BENCHMARK, f"configs/fast/{recipe.name}.yaml{tuned} net, {images} {source}, batch {batch}, "
                    f"bf16, {per_epoch} steps/epoch (training only)", epoch_s["trainlab"], epoch_s["plain"],
                    peer_name=f"plain PyTorch {recipe.peer} rendition", unit="s/epoch", higher_is_better=False,
                    min_ratio=GOAL,
                    note=f"median of {len(result['seconds']['trainlab'])} alternating passes of {steps} "
                         f"steps, scaled to {per_epoch} steps; {spreads}")


def time_recipe(recipe: Recipe, args: argparse.Namespace, images: np.ndarray, labels: np.ndarray,
                source: str) -> list[dict[str, Any]]:
    """Time one recipe against its rendition; print the outcome; its rows (epoch, then evaluations)."""
    batch = args.batch or int(tuned_recipe(recipe, args.overrides).train.batch_size)  # type: ignore[arg-type]
    warmup, steps, passes = WARMUP_STEPS, args.steps, args.passes
    if args.quick:
        batch, steps, passes, warmup = 32, 2, 1, 1
    per_epoch = len(images) // batch
    if per_epoch < 1:
        raise SystemExit(f"--images {len(images)} is less than one batch of {batch}")
    steps = steps or per_epoch
    print(f"{recipe.name}{''.join(f' --set {t}' for t in args.overrides)} against the {recipe.peer} rendition; "
          f"{len(images)} {source}, batch {batch}, {passes} alternating passes of {steps} steps "
          f"(median), torch {torch.__version__}, {args.threads} threads", flush=True)
    result = compare(images, labels, batch, steps, passes, warmup, recipe, args.overrides, args.eval_passes)
    row = row_of(result, len(images), batch, steps, source, recipe, args.overrides)
    evaluated = eval_rows(result, len(images), source, recipe)
    for name, seconds in result["seconds"].items():
        print(f"{name:>9}: warm-up {result['warmup'][name]:.2f} s; s/pass {[round(s, 2) for s in seconds]}")
    print(f"s/epoch ({per_epoch} steps): trainlab {row['trainlab']:.2f}, plain {row['peer']:.2f}; "
          f"ratio plain / trainlab {row['ratio']:.3f}x (goal >= {GOAL}x: {'met' if row['met'] else 'not met'})")
    for extra in evaluated:
        print(f"{extra['workload']}: trainlab {extra['trainlab']:.2f} s, plain {extra['peer']:.2f} s; "
              f"ratio plain / trainlab {extra['ratio']:.3f}x")
    return [row, *evaluated]


def main() -> None:
    """Parse arguments, time both sides of each recipe asked for, print and (with --json) write the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=["all", *sorted(RECIPES)], default="all",
                        help="the recipe, timed against its airbench rendition (default: all, one after the other)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override the trainlab side's recipe (repeatable, with one --recipe; the plain side "
                             "takes its batch size). Only keys that keep both sides the same net doing the same "
                             f"work per step: {', '.join(SAME_NET_KEYS)}, none turning a momentum or weight decay "
                             "on or off; any other is refused")
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--images", type=int, default=10240, help="training images (an epoch's worth)")
    parser.add_argument("--batch", type=int, help="batch size of both sides (default: the recipe's, after --set)")
    parser.add_argument("--steps", type=int, help="steps per timed pass (default: one epoch)")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--eval-passes", type=int, default=0,
                        help="also time evaluating the images, without and with TTA, over this many alternating "
                             "evaluations after the training passes (default 0: off)")
    args = add_protocol_args(parser).parse_args()
    if args.recipe == "all" and args.overrides:
        parser.error("--set changes one recipe: name it with --recipe")
    if args.batch is not None and any(t.partition("=")[0].strip() == "train.batch_size" for t in args.overrides):
        parser.error("give the batch size once: --batch or --set train.batch_size")
    recipes = list(RECIPES.values()) if args.recipe == "all" else [RECIPES[args.recipe]]
    if args.quick:
        args.images = 256
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)  # the engine sets its threads from it
    torch.set_num_threads(args.threads)
    # The engine makes malloc reuse freed memory for its process: set it before either side is
    # built, so that the plain loop runs with it too.
    retain_freed_memory()
    print(machine_line())
    images, labels, source = load_images(args.data_dir, args.images)
    rows = [row for recipe in recipes for row in time_recipe(recipe, args, images, labels, source)]
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
