"""trainlab's CPU dropout vs ``torch.nn.Dropout``, forward + backward, side by side.

The workload is the dropout of seed C's final CNN at batch 256: the activations after its
three conv blocks and its dense layer ((256, 32, 16, 16) at rate 0.2, (256, 64, 8, 8) at
0.3, (256, 128, 4, 4) at 0.4, (256, 128) at 0.5), in bf16 and channels_last as the CNN
trains here, then in fp32. Each pass applies every layer and backpropagates a fixed
gradient; the two implementations alternate, and the median pass counts. PyTorch's CPU
dropout draws one random number per element (``bernoulli_``); trainlab's
(:class:`trainlab.engines.torch.layers.Dropout`) draws one 32-bit integer per two elements.

Command: ``python bench/bench_dropout.py [--passes 15] [--threads T] [--json PATH] [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import add_protocol_args, default_threads, machine_line, make_row, spread, write_json
from torch import nn

from trainlab.engines.torch.layers import Dropout

BENCHMARK = Path(__file__).stem
LAYERS = [((256, 32, 16, 16), 0.2), ((256, 64, 8, 8), 0.3), ((256, 128, 4, 4), 0.4), ((256, 128), 0.5)]


def inputs(dtype: torch.dtype, batch: int) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(activation, its incoming gradient, rate) per layer, channels_last for the 4-d ones."""
    g = torch.Generator().manual_seed(0)
    out = []
    for shape, rate in LAYERS:
        shape = (batch, *shape[1:])
        x = torch.randn(shape, generator=g).to(dtype)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append((x.requires_grad_(), torch.randn(shape, generator=g).to(dtype), rate))
    return out


def one_pass(layers: list[nn.Module], data: list[tuple[torch.Tensor, torch.Tensor, float]]) -> float:
    """Seconds for forward + backward through every layer."""
    start = time.perf_counter()
    for layer, (x, grad, _) in zip(layers, data, strict=True):
        layer(x).backward(grad)
    return time.perf_counter() - start


def main() -> None:
    """Time both dropouts in alternating passes for bf16 and fp32; print and write the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = add_protocol_args(parser).parse_args()
    batch, passes = (16, 2) if args.quick else (256, args.passes)
    torch.set_num_threads(args.threads)
    print(machine_line())
    rows: list[dict[str, Any]] = []
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        data = inputs(dtype, batch)
        sides = {"trainlab": [Dropout(rate) for _, _, rate in data],
                 "torch": [nn.Dropout(rate) for _, _, rate in data]}
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        for layers in sides.values():
            one_pass(layers, data)  # warm-up
        for _ in range(passes):
            for side, layers in sides.items():
                seconds[side].append(one_pass(layers, data))
        ms = {side: 1000 * float(np.median(s)) for side, s in seconds.items()}
        workload = f"dropout forward + backward, seed C's 4 layers at batch {batch}, {name}"
        rows.append(make_row(BENCHMARK, workload, ms["trainlab"], ms["torch"], peer_name="torch.nn.Dropout",
                             unit="ms/pass", higher_is_better=False, min_ratio=1.0,
                             note=f"median of {passes} alternating passes; trainlab {spread(seconds['trainlab'], 's')};"
                                  f" torch {spread(seconds['torch'], 's')}; {args.threads} threads"))
        print(f"{workload}: trainlab {ms['trainlab']:.2f} ms, nn.Dropout {ms['torch']:.2f} ms, "
              f"{ms['torch'] / ms['trainlab']:.2f}x", flush=True)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
