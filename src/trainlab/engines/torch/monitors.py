"""Training monitors of the torch engine, measured at evaluations, off the hot path.

On one monitoring batch, in training mode and without an update, record per trainable conv/dense
layer ``k`` (numbered as below): ``weight_norm_k``, ``grad_norm_k`` (the data-loss
gradient), ``dead_relu_k`` (fraction of the units, or conv channels, after layer k whose
ReLU never fired on the batch) and ``logit_norm`` (per-example norm of the logits). The
names match the NumPy engine's, so reports read both. Batch-norm running statistics and
the random generators are restored afterwards: looking never changes training.

Layers are numbered in registration order (``model.modules()``), the forward order of the
built-in models. A custom model (``model.type: custom``)
is numbered the same way, whatever order its forward calls them in, and only its ``nn.ReLU``
modules count for ``dead_relu_k`` (a functional ``F.relu`` has no module to watch).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

WeightLayer = nn.Linear | nn.Conv2d


def _weight_layers_and_relus(model: nn.Module) -> tuple[list[nn.Module], dict[nn.Module, int]]:
    """Trainable conv/dense layers in registration (forward) order, and each ReLU's preceding
    layer index. Frozen layers (a whitening conv) are not monitored: they never change."""
    layers: list[nn.Module] = []
    relu_owner: dict[nn.Module, int] = {}
    for module in model.modules():
        if isinstance(module, WeightLayer) and module.weight.requires_grad:
            layers.append(module)
        elif isinstance(module, nn.ReLU) and layers:
            relu_owner[module] = len(layers) - 1
    return layers, relu_owner


def layer_monitors(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """Norms and dead-unit fractions on the batch ``x`` (B, ...); see the module docstring.

    Args:
        model: the network (left in the mode it was in, its ``.grad`` untouched).
        x: the monitoring batch.
        loss_fn: maps logits (B, K) to the scalar data loss.
    """
    layers, relu_owner = _weight_layers_and_relus(model)
    fired: dict[int, torch.Tensor] = {}

    def record(owner: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            # A unit (a conv channel) is alive if it fired for some example (and position).
            positive = out > 0  # (B, M) or (B, C, H, W)
            alive = positive.any(0) if out.dim() == 2 else positive.flatten(2).any(2).any(0)  # (M,) or (C,)
            fired.setdefault(owner, alive.detach())
        return hook

    handles = [relu.register_forward_hook(record(k)) for relu, k in relu_owner.items()]  # type: ignore[arg-type]
    buffers = [b.detach().clone() for b in model.buffers()]
    was_training = model.training
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            logits = model(x)  # (B, K)
            weights = [layer.weight for layer in layers]
            grads = torch.autograd.grad(loss_fn(logits), weights, allow_unused=True) if weights else ()
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for saved, live in zip(buffers, model.buffers(), strict=True):
                live.copy_(saved)
        model.train(was_training)
    values = {"logit_norm": float(torch.linalg.vector_norm(logits.detach()) / math.sqrt(max(1, len(x))))}
    for k, (weight, grad) in enumerate(zip(weights, grads, strict=True)):
        values[f"weight_norm_{k}"] = float(torch.linalg.vector_norm(weight.detach()))
        values[f"grad_norm_{k}"] = float(torch.linalg.vector_norm(grad)) if grad is not None else 0.0
        if k in fired:
            values[f"dead_relu_{k}"] = float(1.0 - fired[k].float().mean())
    return values


__all__ = ["layer_monitors"]
