"""Muon: momentum, then an orthogonalised update, for conv kernels and hidden weight matrices.

For a weight ``W`` (a matrix, or a conv kernel viewed as ``(out, in * k * k)``) with
gradient ``G``, each step:

    buf = mu * buf + G
    U = G + mu * buf   (Nesterov; plain: U = buf)
    W -= lr * NS(U)

where ``NS(U)`` approximates the orthogonal polar factor of ``U`` (``U V^T`` for the SVD
``U S V^T``): every singular value of the update is pushed towards 1, so each step
moves all directions of the weight by a similar amount. ``NS`` is a quintic
Newton-Schulz iteration on the normalised matrix ``X = U / ||U||_F``:

    A = X X^T;  X <- a X + (b A + c A^2) X,   (a, b, c) = (3.4445, -4.7750, 2.0315)

The coefficients (published with Muon by Keller Jordan, 2024) make the iteration
steep near zero rather than convergent, so a few steps (3 to 5) bring the singular
values into roughly [0.7, 1.2], which trains as well as the exact polar factor. It runs
in bfloat16, as the reference does.

Options: ``weight_decay`` is decoupled (``W -= lr * wd * W``); ``normalize_weights``
rescales each weight to Frobenius norm ``sqrt(out)`` before its update (airbench94_muon).

Muon trains only some parameters; :class:`OptimizerChain` steps it together with the
optimizer of the others, and looks like one optimizer to the training loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The approximate orthogonal polar factor of the matrix ``g`` (M, N), in ``g``'s dtype.

    Args:
        g: a 2-D tensor.
        steps: Newton-Schulz iterations. Default 5.
        eps: added to the norm before normalising. Default 1e-7.
        dtype: the iteration's dtype. Default bfloat16.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the wide orientation: X X^T is then the smaller Gram matrix
        x = x.T
    x = x / (torch.linalg.vector_norm(x) + eps)  # every singular value <= 1
    for _ in range(steps):
        gram = x @ x.T  # (m, m), m = min(M, N)
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    if tall:
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon (see the module docstring) for parameters of two or more dimensions.

    Args:
        params: the weights to update (conv kernels, hidden weight matrices).
        lr: learning rate. Default 0.02.
        momentum: mu. Default 0.95.
        nesterov: use ``G + mu * buf``. Default True.
        ns_steps: Newton-Schulz iterations. Default 5.
        weight_decay: decoupled decay. Default 0.
        normalize_weights: rescale each weight to norm ``sqrt(out)`` before its update. Default False.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, weight_decay: float = 0.0,
                 normalize_weights: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps,
                    "weight_decay": weight_decay, "normalize_weights": normalize_weights}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"Muon updates matrices and conv kernels, not a {p.ndim}-D parameter")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(g)
                update = g.add(buf, alpha=mu) if group["nesterov"] else buf
                if group["normalize_weights"]:
                    p.mul_(p.shape[0] ** 0.5 / (torch.linalg.vector_norm(p) + 1e-12))
                if wd:
                    p.mul_(1.0 - lr * wd)
                ortho = newton_schulz(update.reshape(len(update), -1), int(group["ns_steps"]))  # (out, rest)
                p.add_(ortho.view(p.shape), alpha=-lr)
        return loss


class OptimizerChain:
    """Several optimizers over disjoint parameters, stepped together as one.

    ``param_groups`` is every part's groups (live: writing a group's lr reaches its
    optimizer); the state dict holds each part's state dict, in order.

    Args:
        parts: the optimizers.
    """

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = list(parts)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Every part's parameter groups, in order."""
        return [group for part in self.parts for group in part.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every part's gradients."""
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> None:
        """Step every part (a closure is not supported: each part would re-evaluate it)."""
        if closure is not None:
            raise ValueError("OptimizerChain.step takes no closure")
        for part in self.parts:
            part.step()

    def state_dict(self) -> dict[str, Any]:
        """``{"parts": [state dict of each part]}``."""
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        saved = state["parts"]
        if len(saved) != len(self.parts):
            raise ValueError(f"the state has {len(saved)} optimizers, this chain {len(self.parts)}")
        for part, part_state in zip(self.parts, saved, strict=True):
            part.load_state_dict(part_state)


def optimizer_parts(optimizer: torch.optim.Optimizer | OptimizerChain) -> list[torch.optim.Optimizer]:
    """The torch optimizers behind ``optimizer`` (itself, or a chain's parts)."""
    return optimizer.parts if isinstance(optimizer, OptimizerChain) else [optimizer]


__all__ = ["NS_COEFFICIENTS", "Muon", "OptimizerChain", "newton_schulz", "optimizer_parts"]
