"""Training monitors of the NumPy engine: per-layer norms and dead ReLUs (the warnings drawn
from them are :mod:`trainlab.monitoring`'s).

At each evaluation the engine runs one monitoring batch through the model layer by layer
(forward and backward, in training mode, without an update) and records, per Linear layer
``k``: the weight norm, the gradient norm, the activation norm (the output of that
layer's activation) and the norm of the delta backpropagated into the layer's output;
plus the logit norm and, per ReLU, the fraction of units dead on the whole batch.
Norms of activations and deltas are averaged per example (Frobenius norm / sqrt(N)) so
they do not grow with the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from trainlab.engines.numpy.layers import BatchNorm, Dropout, Linear, ReLU
from trainlab.engines.numpy.model import Sequential


def _per_example_norm(array: np.ndarray) -> float:
    return float(np.linalg.norm(array) / math.sqrt(max(1, array.shape[0])))


def _blocks(model: Sequential) -> list[list[int]]:
    """Layer indexes grouped per Linear: the Linear and the layers up to the next Linear."""
    blocks: list[list[int]] = []
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Linear) or not blocks:
            blocks.append([index])
        else:
            blocks[-1].append(index)
    return blocks


def layer_monitors(
    model: Sequential,
    x: np.ndarray,
    dlogits_fn: Callable[[np.ndarray], np.ndarray],
) -> dict[str, float]:
    """Norms per Linear layer on one batch, named ``weight_norm_k``, ``grad_norm_k``,
    ``act_norm_k``, ``delta_norm_k``, ``dead_relu_k``, plus ``logit_norm``.

    Args:
        model: the network; its gradients are overwritten (call between steps only).
        x: the monitoring batch (N, D).
        dlogits_fn: maps logits (N, K) to the loss gradient (N, K).
    """
    outputs: list[np.ndarray] = []
    # BN running statistics must not move because we looked: save and restore them.
    buffers = {k: v.copy() for k, v in model.buffers().items()}
    dropout_states = [
        layer.rng.bit_generator.state for layer in model.layers if isinstance(layer, Dropout)
    ]
    h = x
    for layer in model.layers:
        h = layer.forward(h, True)
        outputs.append(h.copy())  # in-place layers overwrite their input later
    logits = outputs[-1]
    deltas: dict[int, np.ndarray] = {}
    d: np.ndarray | None = dlogits_fn(logits)
    for index in range(len(model.layers) - 1, -1, -1):
        deltas[index] = d  # the gradient arriving at this layer's output
        d = model.layers[index].backward(d)
        if d is None:
            break
    model.load_state_arrays({**model.parameters(), **buffers})
    for layer, state in zip(
        (layer for layer in model.layers if isinstance(layer, Dropout)), dropout_states, strict=True
    ):
        layer.rng.bit_generator.state = state

    values: dict[str, float] = {"logit_norm": _per_example_norm(logits)}
    for k, block in enumerate(_blocks(model)):
        linear = model.layers[block[0]]
        if not isinstance(linear, Linear):
            continue
        values[f"weight_norm_{k}"] = float(np.linalg.norm(linear.params["W"]))
        values[f"grad_norm_{k}"] = float(np.linalg.norm(linear.grads["W"]))
        values[f"delta_norm_{k}"] = _per_example_norm(deltas[block[0]])
        last = [i for i in block if not isinstance(model.layers[i], Dropout | BatchNorm)][-1]
        values[f"act_norm_{k}"] = _per_example_norm(outputs[last])
        relus = [i for i in block if isinstance(model.layers[i], ReLU)]
        if relus:
            active = (outputs[relus[0]] > 0).any(axis=0)  # (M,) unit fired for some example
            values[f"dead_relu_{k}"] = float(1.0 - active.mean())
    return values


__all__ = ["layer_monitors"]
