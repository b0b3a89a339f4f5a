"""Update rules of the NumPy engine (CS231n's optim.py, as small classes).

Each optimizer updates ``params`` in place, key by key (keys like ``"0.W"``), from
``grads`` and the learning rate of this step (schedules live in ``trainlab.schedules``).
Its state (step count, per-key slot arrays) sits in ``self.state`` and round-trips through
``state_dict()`` / ``load_state_dict()`` exactly, so a checkpoint ``.npz`` resumes
bit-for-bit. Slot arrays are keyed ``"<slot>:<param key>"`` (``"v:0.W"``).

Coupled ``weight_decay`` (all optimizers but AdamW) adds ``weight_decay * p`` to the
gradient before the update, for every parameter handed to ``step``; AdamW's
``weight_decay`` is decoupled (``p -= lr * weight_decay * p`` before the Adam step).
Gradients are never modified.

The engine's fast path (``fused.py``) keeps its own forms of these rules; ``step`` only hands
it the keys whose gradients it holds (``products``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Protocol

import numpy as np

# Elements per work item: the update runs chunk by chunk so that the scratch array and the
# slot being updated stay in the L2 cache between the few NumPy calls of one update
# (measured: ~25 % less optimizer time than whole-array passes, 1.8M-parameter MLP).
# Threads were tried and lost: OpenBLAS's worker threads keep spinning after each GEMM.
CHUNK = 131072


class GradientProduct(Protocol):
    """A gradient its holder did not form, that updates its parameter itself (``fused.py``)."""

    def update(self, optimizer: Optimizer, key: str, p: np.ndarray, lr: float) -> None:
        """Apply ``optimizer``'s update rule to ``p`` (key ``key``) from this gradient."""


def _scaled_descent(
    p: np.ndarray, g: np.ndarray, c: np.ndarray, tmp: np.ndarray, eps: float, lr: float
) -> None:
    """``p -= lr * g / (sqrt(c) + eps)`` in place through ``tmp`` (RMSprop and Adagrad)."""
    np.sqrt(c, out=tmp)
    tmp += eps
    np.divide(g, tmp, out=tmp)
    tmp *= lr
    p -= tmp


class Optimizer:
    """Base: ``step(params, grads, lr)``, ``state_dict()``, ``load_state_dict(d)``.

    Subclasses name their per-parameter slot arrays in ``slots`` and write the update of
    one contiguous piece in ``_kernel``. The update is element-wise, so ``step`` runs it
    over cache-sized chunks; the result is bit-identical to a single pass.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, weight_decay: float = 0.0) -> None:
        self.weight_decay = float(weight_decay)
        self.state: dict[str, np.ndarray | int] = {"t": 0}
        self._scratch: dict[str, np.ndarray] = {}

    def slot(self, slot: str, key: str, like: np.ndarray) -> np.ndarray:
        """The slot array ``slot`` of parameter ``key`` (zeros like ``like`` on first use)."""
        name = f"{slot}:{key}"
        arr = self.state.get(name)
        if arr is None:
            arr = self.state[name] = np.zeros_like(like)
        return arr  # type: ignore[return-value]

    def _tmp(self, name: str, dtype: np.dtype) -> np.ndarray:
        """A CHUNK-long scratch array, reused by every chunk so that it stays in cache."""
        key = f"{name}:{np.dtype(dtype).str}"
        arr = self._scratch.get(key)
        if arr is None:
            arr = self._scratch[key] = np.empty(CHUNK, dtype=dtype)
        return arr

    def step(
        self,
        params: dict[str, np.ndarray],
        grads: dict[str, np.ndarray],
        lr: float,
        products: Mapping[str, GradientProduct] | None = None,
    ) -> None:
        """Update every array of ``params`` in place from ``grads`` (same keys).

        Args:
            params: the parameters by key, updated in place.
            grads: their gradients, same keys and shapes; never modified.
            lr: this step's learning rate.
            products: keys whose gradient the engine's fast path holds instead of ``grads``
                (``fused.py``): each product updates its own parameter and that key's
                ``grads`` entry is unread. Default None: every key from ``grads``.
        """
        self.state["t"] = int(self.state["t"]) + 1
        lr = float(lr)
        products = products or {}
        work = []
        for key, p in params.items():
            if key in products:
                continue
            g = grads[key]
            if p.shape != g.shape:
                raise ValueError(f"gradient {key!r} has shape {g.shape}, parameter {p.shape}")
            if not p.flags.c_contiguous:
                raise ValueError(f"parameter {key!r} must be C-contiguous (updated in place)")
            flat = [p.reshape(-1), np.ascontiguousarray(g).reshape(-1)]  # (P,) views
            flat += [self.slot(s, key, p).reshape(-1) for s in self.slots]
            scratch = [self._tmp("tmp", p.dtype)]
            if self.weight_decay and self._coupled_decay:
                scratch.append(self._tmp("wd", p.dtype))
            for lo in range(0, p.size, CHUNK):
                n = min(CHUNK, p.size - lo)
                work.append([a[lo:lo + n] for a in flat] + [t[:n] for t in scratch])
        # Products first: one that cannot update under this rule raises before any parameter changed.
        for key, product in products.items():
            product.update(self, key, params[key], lr)
        self._run(work, lr)

    _coupled_decay = True

    def _run(self, work: list[list[np.ndarray]], lr: float) -> None:
        ns = len(self.slots)
        for arrays in work:
            p, g, slots, tmp = arrays[0], arrays[1], arrays[2:2 + ns], arrays[2 + ns]
            if self.weight_decay and self._coupled_decay:
                gw = arrays[3 + ns]  # g + weight_decay * p, gradients stay untouched
                np.multiply(p, self.weight_decay, out=gw)
                gw += g
                g = gw
            self._kernel(p, g, slots, tmp, lr)

    def _kernel(
        self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], tmp: np.ndarray, lr: float
    ) -> None:
        """Update the piece p in place from g; ``slots`` as named in ``self.slots``;
        ``tmp`` is scratch space like p. All are 1-D views of the same length."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray | float | int]:
        """Step count, hyperparameters (``"hp:<name>"``) and copies of every slot array."""
        d: dict[str, np.ndarray | float | int] = {"t": int(self.state["t"])}
        for k, v in self.state.items():
            if k != "t":
                d[k] = np.array(v, copy=True)
        for name in inspect.signature(type(self).__init__).parameters:
            if name != "self":
                d[f"hp:{name}"] = float(getattr(self, name))
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore a ``state_dict()`` (arrays from an ``.npz`` are fine)."""
        self.state = {"t": int(d["t"])}
        for k, v in d.items():
            if k.startswith("hp:"):
                setattr(self, k[3:], float(v))
            elif k != "t":
                self.state[k] = np.array(v, copy=True)


class SGD(Optimizer):
    """Vanilla SGD: ``p -= lr * g``."""

    def __init__(self, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        np.multiply(g, lr, out=tmp)
        p -= tmp


class Momentum(Optimizer):
    """Classical momentum: ``v = mu * v - lr * g; p += v`` (v starts at zero)."""

    slots = ("v",)

    def __init__(self, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)
        self.momentum = float(momentum)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        (v,) = slots
        np.multiply(g, lr, out=tmp)
        v *= self.momentum
        v -= tmp
        p += v


class Nesterov(Optimizer):
    """Nesterov momentum (CS231n form): ``v_prev = v; v = mu * v - lr * g;
    p += -mu * v_prev + (1 + mu) * v``."""

    slots = ("v",)

    def __init__(self, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)
        self.momentum = float(momentum)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        (v,) = slots
        mu = self.momentum
        # p += -mu * v_prev + (1 + mu) * (mu * v_prev - lr * g) = mu^2 v_prev - (1 + mu) lr g
        np.multiply(v, mu * mu, out=tmp)
        p += tmp
        np.multiply(g, (1 + mu) * lr, out=tmp)
        p -= tmp
        v *= mu
        np.multiply(g, lr, out=tmp)
        v -= tmp


class RMSprop(Optimizer):
    """RMSprop: ``c = alpha * c + (1 - alpha) * g^2; p -= lr * g / (sqrt(c) + eps)``.

    With ``momentum`` mu > 0 (PyTorch's form): ``buf = mu * buf + g / (sqrt(c) + eps);
    p -= lr * buf`` (buf starts at zero). Keras' ``v = mu * v - lr * g / (...); p += v`` is
    the same at a constant lr. At mu = 0 there is no buffer and the update is the plain one.
    """

    def __init__(
        self, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0
    ) -> None:
        super().__init__(weight_decay)
        self.alpha, self.eps, self.momentum = float(alpha), float(eps), float(momentum)

    @property
    def slots(self) -> tuple[str, ...]:  # type: ignore[override]
        """The squared-gradient average, and the momentum buffer when mu > 0."""
        return ("cache", "buf") if self.momentum else ("cache",)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        c = slots[0]
        c *= self.alpha
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.alpha
        c += tmp
        if not self.momentum:
            _scaled_descent(p, g, c, tmp, self.eps, lr)
            return
        buf = slots[1]
        np.sqrt(c, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        buf *= self.momentum
        buf += tmp
        np.multiply(buf, lr, out=tmp)
        p -= tmp


class Adagrad(Optimizer):
    """Adagrad: ``c += g^2; p -= lr * g / (sqrt(c) + eps)`` (eps 1e-10 as in PyTorch)."""

    slots = ("cache",)

    def __init__(self, eps: float = 1e-10, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)
        self.eps = float(eps)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        (c,) = slots
        np.multiply(g, g, out=tmp)
        c += tmp
        _scaled_descent(p, g, c, tmp, self.eps, lr)


class Adam(Optimizer):
    """Adam with bias correction: ``m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``."""

    slots = ("m", "v")

    def __init__(
        self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0
    ) -> None:
        super().__init__(weight_decay)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        m, v = slots
        b1, b2, t = self.beta1, self.beta2, int(self.state["t"])
        m *= b1
        np.multiply(g, 1 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp
        # sqrt(v / bc2) + eps, then m / bc1 / that
        np.multiply(v, 1.0 / (1 - b2**t), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr / (1 - b1**t)
        p -= tmp


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter): ``p -= lr * weight_decay * p``, then the Adam step on
    the raw gradient (decoupled decay; default 0.01 as in PyTorch)."""

    _coupled_decay = False

    def __init__(
        self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01
    ) -> None:
        super().__init__(beta1, beta2, eps, weight_decay)

    def _kernel(self, p, g, slots, tmp, lr):  # type: ignore[no-untyped-def]
        if self.weight_decay:
            p *= 1 - lr * self.weight_decay
        super()._kernel(p, g, slots, tmp, lr)


#: Every update rule by name; equal to config's NUMPY_OPTIMIZERS (checked by engine.py).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "adagrad": Adagrad,
}


def make_optimizer(type: str, **options: float) -> Optimizer:
    """Build an optimizer by name: a key of :data:`OPTIMIZERS`.

    Unknown types or options raise ``ValueError`` naming them and the accepted ones.
    """
    cls = OPTIMIZERS.get(type)
    if cls is None:
        raise ValueError(f"unknown optimizer type {type!r}; choose one of {', '.join(OPTIMIZERS)}")
    accepted = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for optimizer {type!r}; "
            f"accepted: {', '.join(accepted)}"
        )
    return cls(**options)


__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "GradientProduct",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "make_optimizer",
]
