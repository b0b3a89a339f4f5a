"""trainlab's small-map 3x3 conv (``convgrad.Conv2d``) against ``nn.Conv2d``, forward + backward.

On the CPUs measured so far, oneDNN's bf16 weight gradient of a 3x3 conv on a small map
(the last conv of the airbench nets, 3x3 pixels; 2x2 in their low-resolution epochs;
ResNet-18's last stage, 4x4) costs several times its forward. ``convgrad.Conv2d`` computes
it as nine matrix products instead. This benchmark times one forward and backward (input
and weight gradients) of each layer under bf16 autocast, channels_last, with the products
forced on (``TRAINLAB_CONV_WEIGHT_GRAD=gemm``), against ``nn.Conv2d`` with the same
weights, alternating, the median pass counting. Where the ratio stays under 1.0 on a
machine, ``auto`` must not take the products there: the row says what ``auto`` does here.

Command: ``python bench/bench_conv_grad.py [--passes 9] [--threads T] [--json PATH] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import add_protocol_args, default_threads, machine_line, make_row, spread, write_json
from torch import nn

from trainlab.engines.cpu_memory import retain_freed_memory
from trainlab.engines.torch.convgrad import WEIGHT_GRAD_ENV, Conv2d, cpu_has_amx

BENCHMARK = Path(__file__).stem
#: (name, batch, channels in, channels out, map side)
LAYERS = [
    ("airbench nets' last conv", 1000, 256, 256, 3),
    ("airbench nets' last conv, 24x24 low-res epochs", 1000, 256, 256, 2),
    ("ResNet-18's last stage", 256, 512, 512, 4),
]


def one_pass(conv: nn.Conv2d, x: torch.Tensor, grad_out: torch.Tensor) -> float:
    """Seconds for a forward and a backward (input and weight gradients) under bf16 autocast."""
    conv.weight.grad = None
    x.grad = None
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16):
        out = conv(x)
    out.backward(grad_out)
    return time.perf_counter() - start


def main() -> None:
    """Time both convs in alternating passes per layer; print and write the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=9)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = add_protocol_args(parser).parse_args()
    retain_freed_memory()  # as the engine does: no fresh page faults per pass
    os.environ[WEIGHT_GRAD_ENV] = "gemm"
    torch.set_num_threads(args.threads)
    passes = 2 if args.quick else args.passes
    print(machine_line())
    auto = "takes the products here (AMX)" if cpu_has_amx() else "keeps oneDNN's kernel here (no AMX)"
    rows: list[dict[str, Any]] = []
    for name, batch, c_in, c_out, side in LAYERS:
        batch = 8 if args.quick else batch
        torch.manual_seed(0)
        plain = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False).to(memory_format=torch.channels_last)
        ours = Conv2d(c_in, c_out, 3, 1, 1, bias=False).to(memory_format=torch.channels_last)
        ours.load_state_dict(plain.state_dict())
        x = torch.randn(batch, c_in, side, side).to(memory_format=torch.channels_last).requires_grad_()
        grad_out = torch.randn(batch, c_out, side, side).bfloat16().to(memory_format=torch.channels_last)
        sides = {"trainlab": ours, "torch": plain}
        seconds: dict[str, list[float]] = {key: [] for key in sides}
        for conv in sides.values():
            one_pass(conv, x, grad_out)  # warm-up
        for _ in range(passes):
            for key, conv in sides.items():
                seconds[key].append(one_pass(conv, x, grad_out))
        ms = {key: 1000 * float(np.median(s)) for key, s in seconds.items()}
        workload = f"3x3 conv {c_in}->{c_out} on {side}x{side} maps, batch {batch}, bf16 ({name})"
        rows.append(make_row(BENCHMARK, workload, ms["trainlab"], ms["torch"], peer_name="torch.nn.Conv2d",
                             unit="ms/pass", higher_is_better=False, min_ratio=1.0,
                             note=f"median of {passes} alternating passes; products forced on; auto {auto}; "
                                  f"trainlab {spread(seconds['trainlab'], 's')}; "
                                  f"torch {spread(seconds['torch'], 's')}; {args.threads} threads"))
        print(f"{workload}: trainlab {ms['trainlab']:.1f} ms, nn.Conv2d {ms['torch']:.1f} ms, "
              f"{ms['torch'] / ms['trainlab']:.2f}x", flush=True)
    print(f"TRAINLAB_CONV_WEIGHT_GRAD=auto {auto}")
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
