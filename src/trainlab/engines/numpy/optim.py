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
"""

from __future__ import annotations

import inspect

import numpy as np


class Optimizer:
    """Base: ``step(params, grads, lr)``, ``state_dict()``, ``load_state_dict(d)``."""

    slots: tuple[str, ...] = ()

    def __init__(self, weight_decay: float = 0.0) -> None:
        self.weight_decay = float(weight_decay)
        self.state: dict[str, np.ndarray | int] = {"t": 0}
        self._scratch: dict[str, np.ndarray] = {}

    def _slot(self, slot: str, key: str, like: np.ndarray) -> np.ndarray:
        name = f"{slot}:{key}"
        arr = self.state.get(name)
        if arr is None:
            arr = self.state[name] = np.zeros_like(like)
        return arr  # type: ignore[return-value]

    def _tmp(self, key: str, like: np.ndarray) -> np.ndarray:
        arr = self._scratch.get(key)
        if arr is None or arr.shape != like.shape or arr.dtype != like.dtype:
            arr = self._scratch[key] = np.empty_like(like)
        return arr

    def _grad(self, key: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The gradient with coupled weight decay folded in (a scratch copy if any)."""
        if not self.weight_decay:
            return g
        out = self._tmp("wd:" + key, p)
        np.multiply(p, self.weight_decay, out=out)
        out += g
        return out

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every array of ``params`` in place from ``grads`` (same keys)."""
        self.state["t"] = int(self.state["t"]) + 1
        for key, p in params.items():
            self._update(key, p, self._grad(key, p, grads[key]), float(lr))

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray | float | int]:
        """Step count, hyperparameters and copies of every slot array."""
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

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        tmp = self._tmp(key, p)
        np.multiply(g, lr, out=tmp)
        p -= tmp


class Momentum(Optimizer):
    """Classical momentum: ``v = mu * v - lr * g; p += v`` (v starts at zero)."""

    slots = ("v",)

    def __init__(self, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)
        self.momentum = float(momentum)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        v = self._slot("v", key, p)
        tmp = self._tmp(key, p)
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

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        mu = self.momentum
        v = self._slot("v", key, p)
        tmp = self._tmp(key, p)
        # p += -mu * v_prev + (1 + mu) * (mu * v_prev - lr * g) = mu^2 v_prev - (1 + mu) lr g
        np.multiply(v, mu * mu, out=tmp)
        p += tmp
        np.multiply(g, (1 + mu) * lr, out=tmp)
        p -= tmp
        v *= mu
        np.multiply(g, lr, out=tmp)
        v -= tmp


class RMSprop(Optimizer):
    """RMSprop: ``c = alpha * c + (1 - alpha) * g^2; p -= lr * g / (sqrt(c) + eps)``."""

    slots = ("cache",)

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)
        self.alpha, self.eps = float(alpha), float(eps)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        c = self._slot("cache", key, p)
        tmp = self._tmp(key, p)
        c *= self.alpha
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.alpha
        c += tmp
        np.sqrt(c, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        p -= tmp


class Adagrad(Optimizer):
    """Adagrad: ``c += g^2; p -= lr * g / (sqrt(c) + eps)`` (eps 1e-10 as in PyTorch)."""

    slots = ("cache",)

    def __init__(self, eps: float = 1e-10, weight_decay: float = 0.0) -> None:
        super().__init__(weight_decay)
        self.eps = float(eps)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        c = self._slot("cache", key, p)
        tmp = self._tmp(key, p)
        np.multiply(g, g, out=tmp)
        c += tmp
        np.sqrt(c, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        p -= tmp


class Adam(Optimizer):
    """Adam with bias correction: ``m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``."""

    slots = ("m", "v")

    def __init__(
        self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0
    ) -> None:
        super().__init__(weight_decay)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        b1, b2, t = self.beta1, self.beta2, int(self.state["t"])
        m, v = self._slot("m", key, p), self._slot("v", key, p)
        tmp = self._tmp(key, p)
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

    def __init__(
        self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01
    ) -> None:
        super().__init__(beta1, beta2, eps, weight_decay)

    def _grad(self, key: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        if self.weight_decay:
            p *= 1 - lr * self.weight_decay
        super()._update(key, p, g, lr)


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
    """Build an optimizer by name (sgd|momentum|nesterov|rmsprop|adam|adamw|adagrad).

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
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "make_optimizer",
]
