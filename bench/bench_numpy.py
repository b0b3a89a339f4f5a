"""Benchmark: the NumPy engine against a plain PyTorch eager loop, and against its BLAS floor.

Both train the same MLP (3072-500-500-10, ReLU, float32, SGD with momentum 0.9, batch 256)
for the same number of steps on the same data (random, or CIFAR-10 when $TRAINLAB_DATA
holds ``cifar-10-batches-py``). The BLAS floor is the step's eight matrix multiplies alone
(3 forward, 5 backward: dW for each layer, dx for the upper two), with preallocated out=
arrays. Each measurement is repeated and the best round kept (the machine may be shared).
Goals: the NumPy engine's throughput >= PyTorch eager's, and its step <= 1.15x the BLAS floor.

The NumPy step is the engine's: forward, loss, backward, update, on the engine's fast path
where it applies (here: float32 momentum, so each weight's update is folded into its
gradient GEMM, see ``trainlab/engines/numpy/fused.py``); "no optimizer step" runs the plain
forward and backward (every dW formed) without an update.

    .venv/bin/python bench/bench_numpy.py --steps 200 [--threads T] [--quick] [--json PATH]

Threads: ``--threads``, else ``$TRAINLAB_NUM_THREADS``, else every core this process may use
(for NumPy's BLAS through threadpoolctl, and for torch).
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
from _common import (
    add_protocol_args,
    default_threads,
    limit_blas_threads,
    machine_line,
    make_row,
    spread,
    write_json,
)
from torch import nn

from trainlab.engines.numpy import Momentum, build_mlp, softmax_cross_entropy
from trainlab.engines.numpy.fused import BLAS_AVAILABLE, plan_fused_updates

SIZES = (3072, 500, 500, 10)
BENCHMARK = Path(__file__).stem
UPDATE = "update fused into the weight GEMMs" if BLAS_AVAILABLE else "plain update (no usable BLAS gemm)"


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
    fused = plan_fused_updates(model, opt, dtype=np.float32)  # as the engine plans it
    nb = x.shape[0] // batch

    def step(i: int) -> None:
        lo = (i % nb) * batch
        logits = model.forward(x[lo:lo + batch], training=True)  # (B, 10)
        _, dlogits = softmax_cross_entropy(logits, y[lo:lo + batch])
        if not update:
            model.backward(dlogits)
            return
        with fused.deferring():
            model.backward(dlogits)
        opt.step(params, grads, lr, products=fused.products())

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
    ap.add_argument("--threads", type=int, default=default_threads())
    args = add_protocol_args(ap).parse_args()
    if args.quick:
        args.steps, args.repeats = 5, 2

    threads = args.threads
    torch.set_num_threads(threads)
    blas_note = limit_blas_threads(threads)
    print(machine_line())
    x, y, source = load_data(20 * args.batch, np.random.default_rng(0))
    rounds: dict[str, list[float]] = {name: [] for name in ("numpy", "fwdbwd", "torch", "blas")}
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits all alike
        rounds["numpy"].append(bench_numpy(x, y, args.steps, args.batch, args.lr))
        rounds["fwdbwd"].append(bench_numpy(x, y, args.steps, args.batch, args.lr, update=False))
        rounds["torch"].append(bench_torch(x, y, args.steps, args.batch, args.lr))
        rounds["blas"].append(bench_blas_floor(args.steps, args.batch))
    best = {name: min(seconds) for name, seconds in rounds.items()}

    print(f"MLP {'-'.join(map(str, SIZES))} ReLU, batch {args.batch}, float32, SGD momentum ({UPDATE}); "
          f"{args.steps} steps, best of {args.repeats}; data: {source}; threads: {threads} "
          f"(torch {torch.__version__}, numpy {np.__version__}; {blas_note})")
    print(f"{'engine':<22}{'ms/step':>10}{'images/s':>12}")
    for name, label in (("numpy", "trainlab numpy"), ("fwdbwd", "  (no optimizer step)"),
                        ("torch", "pytorch eager"), ("blas", "BLAS floor (8 GEMMs)")):
        ms = 1e3 * best[name] / args.steps
        print(f"{label:<22}{ms:>10.2f}{args.batch * args.steps / best[name]:>12.0f}")
    print(f"numpy / pytorch throughput: {best['torch'] / best['numpy']:.2f}x (goal >= 1.0x)")
    print(f"numpy step / BLAS floor:    {best['numpy'] / best['blas']:.2f}x (goal <= 1.15x); "
          f"without the optimizer step {best['fwdbwd'] / best['blas']:.2f}x")
    write_json(args.json, rows_of(rounds, args.steps, args.batch, args.repeats, threads, source))


def rows_of(rounds: dict[str, list[float]], steps: int, batch: int, repeats: int, threads: int,
            source: str) -> list[dict[str, object]]:
    """The result rows: best rounds, with each side's min/median ms per step in the note."""
    best = {name: min(seconds) for name, seconds in rounds.items()}
    mlp = f"MLP {'-'.join(map(str, SIZES))}, batch {batch}, fp32, threads {threads}"

    def ms(name: str) -> str:
        return spread([1e3 * s / steps for s in rounds[name]], "ms/step")

    about = f"best of {repeats} rounds of {steps} steps; data: {source}; numpy: {UPDATE}"
    return [
        make_row(BENCHMARK, f"NumPy engine training step, {mlp}", batch * steps / best["numpy"],
                 batch * steps / best["torch"], peer_name="PyTorch eager", unit="img/s", min_ratio=1.0,
                 note=f"{about}; numpy {ms('numpy')}; torch {ms('torch')}"),
        make_row(BENCHMARK, f"NumPy engine step vs its 8 GEMMs alone, {mlp}", 1e3 * best["numpy"] / steps,
                 1e3 * best["blas"] / steps, peer_name="BLAS floor (8 GEMMs)", unit="ms/step",
                 higher_is_better=False, min_ratio=1 / 1.15,
                 note=f"goal: step <= 1.15x the floor; {about}; floor {ms('blas')}"),
        make_row(BENCHMARK, f"NumPy engine forward+backward (no optimizer step) vs its 8 GEMMs, {mlp}",
                 1e3 * best["fwdbwd"] / steps, 1e3 * best["blas"] / steps, peer_name="BLAS floor (8 GEMMs)",
                 unit="ms/step", higher_is_better=False, note=f"{about}; fwd+bwd {ms('fwdbwd')}"),
    ]


if __name__ == "__main__":
    main()
