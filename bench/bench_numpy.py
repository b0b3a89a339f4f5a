"""Benchmark: the NumPy engine against a plain PyTorch eager loop, and against its BLAS floor.

Both train the same MLP (3072-500-500-10, ReLU, float32, SGD with momentum 0.9, batch 256)
for the same number of steps on the same data (random, or CIFAR-10 when $TRAINLAB_DATA
holds ``cifar-10-batches-py``). The BLAS floor is the step's eight matrix multiplies alone
(3 forward, 5 backward: dW for each layer, dx for the upper two), with preallocated out=
arrays. Each measurement is repeated and the best round kept (the machine may be shared).

    .venv/bin/python bench/bench_numpy.py --steps 200
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.engines.numpy import Momentum, build_mlp, softmax_cross_entropy

SIZES = (3072, 500, 500, 10)


def load_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """x (n, 3072) float32 standardised, y (n,) int64; real CIFAR-10 when available."""
    root = os.environ.get("TRAINLAB_DATA")
    path = Path(root, "cifar-10-batches-py", "data_batch_1") if root else None
    if path is not None and path.exists():
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")  # trusted local file
        x = np.asarray(batch[b"data"][:n], dtype=np.float32)  # (n, 3072)
        x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
        y = np.asarray(batch[b"labels"][:n], dtype=np.int64)  # (n,)
        return np.ascontiguousarray(x, dtype=np.float32), y, "CIFAR-10 data_batch_1"
    x = rng.standard_normal((n, SIZES[0]), dtype=np.float32)  # (n, 3072)
    y = rng.integers(0, SIZES[-1], n).astype(np.int64)  # (n,)
    return x, y, "random"


def bench_numpy(
    x: np.ndarray, y: np.ndarray, steps: int, batch: int, lr: float, update: bool = True
) -> float:
    """Seconds for ``steps`` training steps of the NumPy engine (after a warm-up);
    ``update=False`` leaves out the optimizer step (forward, loss and backward only)."""
    model = build_mlp(SIZES[0], SIZES[-1], list(SIZES[1:-1]), rng=np.random.default_rng(0))
    params, grads = model.parameters(), model.gradients()
    opt = Momentum(momentum=0.9)
    nb = x.shape[0] // batch

    def step(i: int) -> None:
        lo = (i % nb) * batch
        logits = model.forward(x[lo:lo + batch], training=True)  # (B, 10)
        _, dlogits = softmax_cross_entropy(logits, y[lo:lo + batch])
        model.backward(dlogits)
        if update:
            opt.step(params, grads, lr)

    for i in range(10):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return time.perf_counter() - t0


def bench_torch(x: np.ndarray, y: np.ndarray, steps: int, batch: int, lr: float) -> float:
    """Seconds for ``steps`` training steps of a plain PyTorch eager loop."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(),
                          nn.Linear(SIZES[1], SIZES[2]), nn.ReLU(),
                          nn.Linear(SIZES[2], SIZES[3]))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    nb = x.shape[0] // batch

    def step(i: int) -> None:
        lo = (i % nb) * batch
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tx[lo:lo + batch]), ty[lo:lo + batch])
        loss.backward()
        opt.step()

    for i in range(10):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return time.perf_counter() - t0


def bench_blas_floor(steps: int, batch: int) -> float:
    """Seconds for ``steps`` rounds of the step's 8 GEMMs with preallocated outputs."""
    rng = np.random.default_rng(0)
    d0, d1, d2, d3 = SIZES
    f32 = np.float32
    x = rng.standard_normal((batch, d0), dtype=f32)  # (B, 3072)
    W = [rng.standard_normal(s, dtype=f32) for s in ((d0, d1), (d1, d2), (d2, d3))]
    h1, h2, z = (np.empty((batch, d), f32) for d in (d1, d2, d3))  # (B, 500) (B, 500) (B, 10)
    dz = rng.standard_normal((batch, d3), dtype=f32)  # (B, 10)
    dh2, dh1 = np.empty_like(h2), np.empty_like(h1)
    dW = [np.empty_like(w) for w in W]

    def gemms() -> None:
        np.dot(x, W[0], out=h1)
        np.dot(h1, W[1], out=h2)
        np.dot(h2, W[2], out=z)
        np.dot(h2.T, dz, out=dW[2])
        np.dot(dz, W[2].T, out=dh2)
        np.dot(h1.T, dh2, out=dW[1])
        np.dot(dh2, W[1].T, out=dh1)
        np.dot(x.T, dh1, out=dW[0])

    for _ in range(10):
        gemms()
    t0 = time.perf_counter()
    for _ in range(steps):
        gemms()
    return time.perf_counter() - t0


def main() -> None:
    """Run the three measurements and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the best is kept")
    ap.add_argument("--lr", type=float, default=0.01)
    args = ap.parse_args()

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    x, y, source = load_data(20 * args.batch, np.random.default_rng(0))
    best = dict.fromkeys(("numpy", "fwdbwd", "torch", "blas"), float("inf"))
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits all alike
        best["numpy"] = min(best["numpy"], bench_numpy(x, y, args.steps, args.batch, args.lr))
        best["fwdbwd"] = min(best["fwdbwd"],
                             bench_numpy(x, y, args.steps, args.batch, args.lr, update=False))
        best["torch"] = min(best["torch"], bench_torch(x, y, args.steps, args.batch, args.lr))
        best["blas"] = min(best["blas"], bench_blas_floor(args.steps, args.batch))

    print(f"MLP {'-'.join(map(str, SIZES))} ReLU, batch {args.batch}, float32, SGD momentum; "
          f"{args.steps} steps, best of {args.repeats}; data: {source}; threads: {threads} "
          f"(torch {torch.__version__}, numpy {np.__version__})")
    print(f"{'engine':<22}{'ms/step':>10}{'images/s':>12}")
    for name, label in (("numpy", "trainlab numpy"), ("fwdbwd", "  (no optimizer step)"),
                        ("torch", "pytorch eager"), ("blas", "BLAS floor (8 GEMMs)")):
        ms = 1e3 * best[name] / args.steps
        print(f"{label:<22}{ms:>10.2f}{args.batch * args.steps / best[name]:>12.0f}")
    print(f"numpy / pytorch throughput: {best['torch'] / best['numpy']:.2f}x (goal >= 1.0x)")
    print(f"numpy step / BLAS floor:    {best['numpy'] / best['blas']:.2f}x (goal <= 1.15x); "
          f"without the optimizer step {best['fwdbwd'] / best['blas']:.2f}x")


if __name__ == "__main__":
    main()
