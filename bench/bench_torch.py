"""trainlab's torch training loop vs a plain hand-written PyTorch loop, on the same batches.

Usage: python bench/bench_torch.py [--data-dir DIR] [--images N] [--steps S] [--threads T]
                                   [--models e,c,mlp] [--precisions fp32,bf16]

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

- trainlab: the torch engine's own ``_Training`` object built from the config (model,
  optimizer, penalty, clipping, device-side metric sums, NaN check every 20 steps), its
  step function and data-order/learning-rate bookkeeping as ``run()`` does them. The
  per-epoch evaluation, monitors and checkpoint are left out: they happen once an epoch,
  not per step.
- plain: ``torch.optim`` and a loop written by hand (forward, cross-entropy plus the
  same L2 sum, backward, step).

Each side is timed in alternating passes of ``--steps`` steps after a warm-up; the median
pass counts (on a shared machine a single pass, fast or slow, says little). Prints images/s of both and the ratio trainlab/plain
(goal >= 0.97). If ``keras`` is installed (a bench extra, never a runtime dependency),
``keras.fit`` with the torch backend would be the third column; it is skipped otherwise.
Uses CIFAR-10 from ``--data-dir`` / ``$TRAINLAB_DATA`` when found, else random images.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainlab.callbacks import CallbackList, TrainState
from trainlab.config import RunConfig
from trainlab.data import PreparedData
from trainlab.data.normalize import apply_normalizer, fit_normalizer
from trainlab.engines.base import FitContext
from trainlab.engines.torch.engine import _Training
from trainlab.engines.torch.models import build_model, count_params
from trainlab.engines.torch.optim import penalized_params
from trainlab.engines.torch.runtime import TrainOptions, stream_seed
from trainlab.runs import RunDir

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


def run_config(key: str, precision: str, steps: int) -> RunConfig:
    spec = MODELS[key]
    return RunConfig.from_dict({
        "engine": "torch", "seed": 0, "data": {"dataset": "cifar10"},
        "model": spec["model"], "optimizer": spec["optimizer"],
        "regularization": spec.get("regularization", {}),
        "train": {"steps": steps, "batch_size": spec["batch"], "precision": precision, "device": "cpu"},
    })


def prepared(images: np.ndarray, labels: np.ndarray) -> PreparedData:
    normalizer = fit_normalizer(images, "channel")
    x = apply_normalizer(images, normalizer)  # (N, 3, 32, 32) float32
    empty = x[:0]
    return PreparedData(x, labels.astype(np.int64), empty, np.zeros(0, np.int64), None, None, None,
                        [str(k) for k in range(10)], (3, 32, 32), 10, normalizer, "bench", Path("."))


class TrainlabSide:
    """The torch engine's training object and its per-step loop body (as ``_Training.run``)."""

    def __init__(self, config: RunConfig, data: PreparedData) -> None:
        context = FitContext(run_dir=RunDir(Path(tempfile.gettempdir()) / "trainlab-bench"),
                             callbacks=CallbackList([]), state=TrainState(), progress=False, log=lambda _m: None)
        self.training = _Training(config, data, context, TrainOptions(device="cpu", precision=config.train.precision))

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


def bench(key: str, precision: str, images: np.ndarray, data: PreparedData, steps: int,
          passes: int) -> tuple[float, float, int]:
    """Images/s of (trainlab, plain): the median pass of ``passes`` alternating passes of ``steps`` steps."""
    config = run_config(key, precision, 10**6)
    trainlab, plain = TrainlabSide(config, data), PlainSide(config, data, images)
    trainlab.steps(3)
    plain.steps(3)  # warm-up: allocator, kernels, optimizer state
    seconds_t, seconds_p = [], []
    for _ in range(passes):
        seconds_t.append(timed(trainlab, steps))
        seconds_p.append(timed(plain, steps))
    images = steps * MODELS[key]["batch"]
    return images / float(np.median(seconds_t)), images / float(np.median(seconds_p)), count_params(plain.model)


def main() -> None:
    """Parse arguments, run every model and precision, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA"))
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed pass")
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", default="e,c,mlp")
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    os.environ["TRAINLAB_NUM_THREADS"] = str(args.threads)  # the engine sets its threads from it
    torch.set_num_threads(args.threads)
    images, labels, source = load_images(args.data_dir, args.images)
    data = prepared(images, labels)
    print(f"{len(images)} {source}, {args.passes} alternating passes of {args.steps} steps (median), "
          f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores")
    header = f"{'model':<22}{'params':>10}{'batch':>7}{'precision':>10}{'trainlab img/s':>16}" \
             f"{'plain img/s':>13}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for key in args.models.split(","):
        for precision in args.precisions.split(","):
            ours, plain, params = bench(key, precision, images, data, args.steps, args.passes)
            print(f"{MODELS[key]['title']:<22}{params:>10,}{MODELS[key]['batch']:>7}{precision:>10}"
                  f"{ours:>16,.0f}{plain:>13,.0f}{ours / plain:>7.2f}x", flush=True)
    if importlib.util.find_spec("keras") is None:
        print("keras is not installed: the keras.fit comparison (goal trainlab >= 1.4x) was skipped "
              "(pip install keras in a bench environment to run it)")
    else:
        print("keras is installed, but its keras.fit comparison is not written yet: skipped")


if __name__ == "__main__":
    main()
