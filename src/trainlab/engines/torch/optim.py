"""Optimizers, penalties and clipping of the torch engine.

Four ways to shrink weights, side by side (they are not the same thing):

- ``regularization.l2`` (and ``l1``): a penalty *added to the loss*, Keras'
  ``kernel_regularizer`` semantics: ``loss += l2 * sum(W**2) + l1 * sum(|W|)`` over conv
  and dense kernels (``apply_to: all``: every parameter). Its gradient, ``2 * l2 * W``,
  then flows through the optimizer like any other (Adam rescales it).
- ``optimizer.weight_decay`` for every type but adamw and muon: *coupled* decay,
  ``g += wd * p`` inside the optimizer, for every parameter (PyTorch's ``weight_decay``). For
  SGD this is the L2 penalty with ``l2 = wd / 2``.
- ``optimizer.weight_decay`` for adamw (and muon, on the matrices it updates): *decoupled*
  decay (Loshchilov & Hutter), ``p -= lr * wd * p`` before the step, never seen by the
  moment estimates.
- ``regularization.shrink``: ``p *= 1 - shrink`` right before every step, for the
  parameters ``apply_to`` covers, whatever the lr: with SGD ``W = W - lr * dW - shrink * W``
  (hand-written update rules, seed E's). :func:`shrink_before_step` installs it.

Momentum and Nesterov follow the config's documented form, the NumPy engine's and Keras':
``v = mu * v - lr * g; p += v`` (Nesterov: ``p += mu * v - lr * g`` with the new ``v``).
PyTorch's SGD keeps ``buf = mu * buf + g; p -= lr * buf`` instead: the two agree at a
constant learning rate but not under a schedule (the velocity here keeps the lr each
gradient was taken with), so :class:`MomentumSGD` implements the config's form. RMSprop's
``momentum`` is PyTorch's own form, ``buf = mu * buf + g / (sqrt(v) + eps); p -= lr * buf``,
as the config documents and the NumPy engine implements.

The learning rate is written into every parameter group before each step, from
:func:`trainlab.schedules.lr_at` times the plateau scale, times the group's
``lr_factor`` (1 unless ``optimizer.bias_lr_scale`` or muon's ``other`` optimizer set
one), so the optimizers below are built with a placeholder lr.

``optimizer.bias_lr_scale`` puts every 1-D parameter (biases, batch-norm scales and
shifts) in a second group with ``lr * scale`` and ``weight_decay / scale``: a larger
step, the same shrinkage ``lr * wd`` per step. ``muon`` (:mod:`.muon`) trains the conv
kernels and hidden weight matrices; everything else (the output layer, biases, batch
norm) goes to ``optimizer.other``, chained with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainlab.engines.torch.muon import Muon, OptimizerChain, optimizer_parts
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import OptimizerConfig, RegularizationConfig

class MomentumSGD(torch.optim.SGD):
    """SGD with momentum in the config's form: ``v = mu * v - lr * g; p += v``.

    Nesterov (``nesterov=True``): ``v = mu * v - lr * g; p += mu * v - lr * g``, which
    equals the NumPy engine's ``p += -mu * v_prev + (1 + mu) * v``. Coupled
    ``weight_decay`` adds ``wd * p`` to the gradient first, as PyTorch's SGD does. The
    velocity is kept per parameter under the state key ``"velocity"`` and updated with
    ``foreach`` kernels (one call per step for all parameters). A checkpoint written with
    ``torch.optim.SGD`` (state ``momentum_buffer``) resumes with ``v = -lr * buf``, exact at
    a constant lr.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                         foreach=True)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
            grads = [p.grad for p in params]
            if wd:
                grads = torch._foreach_add(grads, params, alpha=wd)
            velocity = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    if "momentum_buffer" in state:  # a checkpoint of torch.optim.SGD: v = -lr * buf
                        state["velocity"] = state.pop("momentum_buffer").mul_(-lr)
                    else:
                        state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocity.append(state["velocity"])
            torch._foreach_mul_(velocity, mu)
            torch._foreach_add_(velocity, grads, alpha=-lr)  # v = mu v - lr g
            if group["nesterov"]:
                torch._foreach_add_(params, velocity, alpha=mu)
                torch._foreach_add_(params, grads, alpha=-lr)  # p += mu v - lr g
            else:
                torch._foreach_add_(params, velocity)  # p += v
        return loss


OPTIMIZERS = (
    "sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adamax", "nadam", "adagrad", "adadelta",
)


def _param_groups(params: list[nn.Parameter], lr: float, wd: float, bias_lr_scale: float) -> list[dict[str, Any]]:
    """One group, or with ``bias_lr_scale`` != 1 the weights and the 1-D parameters apart."""
    if bias_lr_scale == 1.0:
        return [{"params": params}]
    weights = [p for p in params if p.ndim >= 2]
    vectors = [p for p in params if p.ndim < 2]
    groups: list[dict[str, Any]] = []
    if weights:
        groups.append({"params": weights})
    if vectors:
        groups.append({"params": vectors, "lr": lr * bias_lr_scale, "weight_decay": wd / bias_lr_scale,
                       "lr_factor": bias_lr_scale})
    return groups


def build_optimizer(params: Iterable[nn.Parameter], o: OptimizerConfig,
                    output_weight: nn.Parameter | None = None) -> torch.optim.Optimizer | OptimizerChain:
    """The torch optimizer for the config's ``optimizer`` section (see the module docstring).

    ``foreach`` kernels are used where PyTorch has them: one fused call per step instead
    of one per parameter.

    Args:
        params: the parameters to train.
        o: the ``optimizer`` section.
        output_weight: the output layer's weight, which muon leaves to ``optimizer.other``
            (Muon is for hidden layers). Default None.

    Returns:
        A torch optimizer, or for muon an :class:`OptimizerChain` (which steps, zeroes and
        saves like one).
    """
    params = list(params)
    if o.type == "muon":
        return _build_muon(params, o, output_weight)
    return _build_single(params, o)


def _build_muon(params: list[nn.Parameter], o: OptimizerConfig, output_weight: nn.Parameter | None) -> OptimizerChain:
    """Muon on the matrices and kernels (not the output layer), ``o.other`` on the rest."""
    hidden = [p for p in params if p.ndim >= 2 and p is not output_weight]
    rest = [p for p in params if not (p.ndim >= 2 and p is not output_weight)]
    if not hidden:
        raise ConfigError("optimizer.type: muon needs conv kernels or hidden weight matrices to train, "
                          "and this model has none; use another optimizer")
    lr = float(o.lr or 0.02)
    parts: list[torch.optim.Optimizer] = [
        Muon(hidden, lr=lr, momentum=float(o.momentum or 0.0), nesterov=bool(o.nesterov_momentum),
             ns_steps=int(o.ns_steps or 5), weight_decay=float(o.weight_decay or 0.0),
             normalize_weights=bool(o.normalize_weights))
    ]
    if rest and o.other is not None:
        other = _build_single(rest, o.other)
        ratio = float(o.other.lr or 0.01) / lr  # the other optimizer's lr follows the same schedule
        for group in other.param_groups:
            group["lr_factor"] = group.get("lr_factor", 1.0) * ratio
        parts.append(other)
    return OptimizerChain(parts)


def _build_single(params: list[nn.Parameter], o: OptimizerConfig) -> torch.optim.Optimizer:
    """Every optimizer type but muon (with ``bias_lr_scale``'s second group when asked)."""
    lr, wd = float(o.lr or 0.01), float(o.weight_decay or 0.0)
    groups: Any = _param_groups(params, lr, wd, float(o.bias_lr_scale))
    params = groups
    if o.type == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, foreach=True)
    if o.type in ("momentum", "nesterov"):
        return MomentumSGD(params, lr=lr, momentum=float(o.momentum or 0.0), nesterov=o.type == "nesterov",
                           weight_decay=wd)
    if o.type == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(o.alpha or 0.99), eps=float(o.eps or 1e-8),
                                   weight_decay=wd, momentum=float(o.momentum or 0.0), foreach=True)
    betas = tuple(float(b) for b in (o.betas or (0.9, 0.999)))
    if o.type == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=float(o.eps or 1e-8), weight_decay=wd,
                                foreach=True)
    if o.type == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=float(o.eps or 1e-8), weight_decay=wd,
                                 foreach=True)
    if o.type == "adamax":
        return torch.optim.Adamax(params, lr=lr, betas=betas, eps=float(o.eps or 1e-8), weight_decay=wd,
                                  foreach=True)
    if o.type == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, eps=float(o.eps or 1e-8), weight_decay=wd,
                                 foreach=True)
    if o.type == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=float(o.eps or 1e-10), weight_decay=wd, foreach=True)
    if o.type == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=float(o.rho or 0.9), eps=float(o.eps or 1e-6),
                                    weight_decay=wd, foreach=True)
    raise ValueError(f"unknown optimizer type {o.type!r}; choose one of {', '.join(OPTIMIZERS)}")


def set_lr(optimizer: torch.optim.Optimizer | OptimizerChain, lr: float) -> None:
    """Write ``lr`` times the group's ``lr_factor`` (default 1) into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_factor", 1.0)


def shrink_before_step(optimizer: torch.optim.Optimizer | OptimizerChain, params: list[nn.Parameter],
                       shrink: float) -> None:
    """Multiply ``params`` by ``1 - shrink`` right before each step of ``optimizer``.

    ``regularization.shrink``: with SGD the step becomes ``W = W - lr * dW - shrink * W``,
    dW taken at the unshrunk W, as the NumPy engine does. A step pre-hook rather than a call
    in the training step, so that a step the fp16 gradient scaler skips shrinks nothing
    either; each part of a muon chain shrinks its own parameters. Nothing is installed
    when ``shrink`` is 0.

    Args:
        optimizer: the optimizer (or muon chain) that steps ``params``.
        params: the parameters to shrink (:func:`penalized_params`).
        shrink: the fraction taken off at every step, in [0, 1).
    """
    if not shrink:
        return
    factor = 1.0 - float(shrink)
    for part in optimizer_parts(optimizer):
        owned = {id(p) for group in part.param_groups for p in group["params"]}
        mine = [p for p in params if id(p) in owned]
        if not mine:
            continue

        def hook(_optimizer: Any, _args: Any, _kwargs: Any, mine: list[nn.Parameter] = mine) -> None:
            with torch.no_grad():
                torch._foreach_mul_(mine, factor)

        part.register_step_pre_hook(hook)


def penalized_params(model: nn.Module, apply_to: str = "weights") -> list[nn.Parameter]:
    """Parameters the L1/L2 penalties and the shrink cover: conv and dense kernels, or all
    with ``"all"``."""
    if apply_to == "all":
        return [p for p in model.parameters() if p.requires_grad]
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv2d) and m.weight.requires_grad
    ]


def penalty(params: list[nn.Parameter], reg: RegularizationConfig) -> torch.Tensor | None:
    """``l1 * sum|W| + l2 * sum W^2`` over ``params`` as a 0-d tensor, or None when both are 0.

    Keras' semantics (no factor 1/2): ``l2: 1e-4`` adds ``1e-4 * sum(W**2)`` to the loss.
    """
    if not params or not (reg.l1 or reg.l2):
        return None
    total = params[0].new_zeros(())
    if reg.l2:
        total = total + reg.l2 * sum(torch.linalg.vector_norm(p) ** 2 for p in params)
    if reg.l1:
        total = total + reg.l1 * sum(p.abs().sum() for p in params)
    return total


def clip_gradients(
    params: list[nn.Parameter], clip_value: float | None, clip_norm: float | None
) -> torch.Tensor | None:
    """Clip every gradient element to ``[-clip_value, clip_value]``, then the global norm.

    Norm clipping scales by ``min(1, clip_norm / (norm + 1e-12))``, as the NumPy engine:
    the clipped norm is ``clip_norm`` to 12 digits, where PyTorch's ``clip_grad_norm_``
    (``+ 1e-6``) leaves it about ``1e-6 / norm`` short. Returns the global norm before norm
    clipping (a device tensor, not read here) or None.
    """
    if clip_value is not None:
        nn.utils.clip_grad_value_(params, clip_value, foreach=True)
    if clip_norm is None:
        return None
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # no host sync
    torch._foreach_mul_(grads, torch.clamp(clip_norm / (total + 1e-12), max=1.0))
    return total


__all__ = [
    "OPTIMIZERS",
    "MomentumSGD",
    "build_optimizer",
    "clip_gradients",
    "penalized_params",
    "penalty",
    "set_lr",
    "shrink_before_step",
]
