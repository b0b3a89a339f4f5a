"""Layers of the NumPy engine: each a forward/backward pair with an explicit cache.

A layer holds ``params`` (learnable arrays by name) and ``grads`` (same keys, same shapes,
filled by ``backward``), and ``buffers`` for non-learned state that checkpoints must keep
(BatchNorm running statistics). ``forward`` stores what ``backward`` needs in
``self.cache`` and keeps its result in ``self.last_output`` so that monitors can read
activation statistics without recomputing them.

Arrays in ``params``, ``grads`` and ``buffers`` are allocated once and only ever updated in
place (``out=``), so views handed to an optimizer or a checkpoint stay valid.

dtype follows the parameters (float32 by default; float64 with ``model.dtype: float64`` and
for gradient checks); activations follow their input. N is the batch size, D the number of
input features and M the number of output features throughout.
"""

from __future__ import annotations

import numpy as np

from trainlab.engines.numpy.init import init_bias, init_weight


class Layer:
    """Base class: ``forward(x, training) -> out`` and ``backward(dout) -> dx``.

    Attributes:
        params: learnable arrays by name.
        grads: gradients of the loss with respect to ``params`` (same keys and shapes).
        buffers: non-learned state saved in checkpoints (empty for most layers).
        cache: what ``backward`` needs from the last ``forward``.
        last_output: the last ``forward`` result (for activation monitors).
        need_dx: when False, ``backward`` may skip the input gradient and return None
            (a model sets it on its first layer: nobody needs the gradient of the data).
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.cache: object = None
        self.last_output: np.ndarray | None = None
        self.need_dx: bool = True

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Compute the layer output and cache what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Fill ``self.grads`` from upstream ``dout`` and return the input gradient."""
        raise NotImplementedError

    def _make_grads(self) -> None:
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"


class Linear(Layer):
    """Affine layer ``out = x @ W + b``.

    Shapes: x (N, D) (or (N, d1, ..., dk) with D = d1*...*dk, flattened as a view),
    W (D, M), b (M,), out (N, M); backward: dout (N, M) -> dx like x, dW (D, M), db (M,).
    ``bias=False`` drops ``b`` (used in front of BatchNorm, whose beta replaces it);
    ``bias_init`` is its start: a constant (default 0) or ``"uniform_fan_in"`` (see
    :func:`init_bias`).
    An input whose dtype differs from W is cast once; feed W's dtype to avoid the copy.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        rng: np.random.Generator | None = None,
        init_scheme: str = "he_normal",
        sigma: float | None = None,
        scale: float | None = None,
        value: float | None = None,
        bias: bool = True,
        bias_init: float | str = 0.0,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.params["W"] = init_weight(
            (self.in_dim, self.out_dim), init_scheme, rng,
            sigma=sigma, scale=scale, value=value, dtype=dtype,
        )  # (D, M)
        if bias:
            self.params["b"] = init_bias(self.out_dim, self.in_dim, bias_init, rng, dtype)  # (M,)
        self._make_grads()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, M); caches x (N, D) and the input shape."""
        W = self.params["W"]  # (D, M)
        in_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)  # (N, D)
        if x.dtype != W.dtype:
            x = x.astype(W.dtype)
        out = np.dot(x, W)  # (N, M)
        if "b" in self.params:
            np.add(out, self.params["b"], out=out)
        self.cache = (x, in_shape)
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """dout (N, M) -> dx (N, D) (or None when ``need_dx`` is False); fills dW, db."""
        x, _ = self.cache  # (N, D)
        dout = dout.astype(self.params["W"].dtype, copy=False)
        np.dot(x.T, dout, out=self.grads["W"])  # (D, M)
        return self.backward_except_weight(dout)

    def backward_except_weight(self, dout: np.ndarray) -> np.ndarray | None:
        """The rest of :meth:`backward` once dW is taken care of: fills db and returns dx (N, D)
        (or None when ``need_dx`` is False) of dout (N, M), which is in W's dtype."""
        _, in_shape = self.cache
        if "b" in self.params:
            np.sum(dout, axis=0, out=self.grads["b"])  # (M,)
        if not self.need_dx:
            return None
        dx = np.dot(dout, self.params["W"].T)  # (N, D)
        return dx.reshape(in_shape)


class ReLU(Layer):
    """``out = max(x, 0)``. Shapes: x, out, dout, dx all (N, D).

    ``inplace=True`` writes the output over x and the input gradient over dout (no new
    arrays); a model uses it where nobody else reads those arrays afterwards.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches out (its sign is the mask)."""
        out = np.maximum(x, 0, out=x if self.inplace else None)  # (N, D)
        self.cache = out
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D) = dout where out > 0, else 0."""
        mask = self.cache > 0  # (N, D) bool
        return np.multiply(dout, mask, out=dout if self.inplace else None)


class LeakyReLU(Layer):
    """``out = x if x > 0 else slope * x``. Shapes: x, out, dout, dx all (N, D)."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches the positive mask (N, D)."""
        pos = x > 0  # (N, D) bool
        out = np.where(pos, x, x * self.slope)  # (N, D)
        self.cache = pos
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D) = dout * (1 if x > 0 else slope)."""
        pos = self.cache  # (N, D)
        return np.where(pos, dout, dout * self.slope)


class ELU(Layer):
    """``out = x if x > 0 else alpha * (exp(x) - 1)``. Shapes: all (N, D)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches the positive mask and out."""
        pos = x > 0  # (N, D) bool
        neg = self.alpha * np.expm1(np.minimum(x, 0))  # (N, D), no overflow for big x
        out = np.where(pos, x, neg)  # (N, D)
        self.cache = (pos, out)
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D) = dout * (1 if x > 0 else out + alpha)."""
        pos, out = self.cache
        return np.where(pos, dout, dout * (out + self.alpha))


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))``, computed as ``(1 + tanh(x / 2)) / 2`` (no overflow)."""

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches out."""
        out = np.tanh(x * 0.5)  # (N, D)
        out += 1
        out *= 0.5
        self.cache = out
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D) = dout * out * (1 - out)."""
        out = self.cache  # (N, D)
        return dout * out * (1 - out)


class Tanh(Layer):
    """``out = tanh(x)``. Shapes: all (N, D)."""

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches out."""
        out = np.tanh(x)  # (N, D)
        self.cache = out
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D) = dout * (1 - out^2)."""
        out = self.cache  # (N, D)
        return dout * (1 - out * out)


class BatchNorm(Layer):
    """Batch normalisation over the features of (N, D) inputs (Ioffe & Szegedy 2015).

    Training: ``xhat = (x - mean_batch) / sqrt(var_batch + eps)``, ``out = gamma * xhat +
    beta``, with the biased batch variance; the running averages are updated as
    ``running = momentum * running + (1 - momentum) * batch`` (CS231n's convention, so
    momentum 0.9 here is PyTorch's momentum 0.1). Evaluation uses the running averages.

    Shapes: x, out, dout, dx (N, D); gamma, beta, running_mean, running_var (D,).
    """

    def __init__(
        self,
        dim: int,
        *,
        momentum: float = 0.9,
        eps: float = 1e-5,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.params["gamma"] = np.ones(dim, dtype=dtype)  # (D,)
        self.params["beta"] = np.zeros(dim, dtype=dtype)  # (D,)
        self.buffers["running_mean"] = np.zeros(dim, dtype=dtype)  # (D,)
        self.buffers["running_var"] = np.ones(dim, dtype=dtype)  # (D,)
        self._make_grads()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches xhat (N, D), 1/std (D,) and the mode."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        if training:
            mean = x.mean(axis=0)  # (D,)
            xc = x - mean  # (N, D)
            var = np.mean(xc * xc, axis=0)  # (D,)
            inv_std = 1.0 / np.sqrt(var + self.eps)  # (D,)
            xhat = np.multiply(xc, inv_std, out=xc)  # (N, D)
            m = self.momentum
            for name, batch in (("running_mean", mean), ("running_var", var)):
                buf = self.buffers[name]
                buf *= m
                buf += (1 - m) * batch
        else:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)  # (D,)
            xhat = (x - self.buffers["running_mean"]) * inv_std  # (N, D)
        out = xhat * gamma  # (N, D)
        out += beta
        self.cache = (xhat, inv_std.astype(x.dtype, copy=False), training)
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D); fills dgamma (D,), dbeta (D,).

        Training mode uses the closed form
        ``dx = gamma / (N * std) * (N * dout - sum(dout) - xhat * sum(dout * xhat))``.
        """
        xhat, inv_std, training = self.cache
        gamma = self.params["gamma"]  # (D,)
        dbeta = np.sum(dout, axis=0, out=self.grads["beta"])  # (D,)
        dgamma = np.sum(dout * xhat, axis=0, out=self.grads["gamma"])  # (D,)
        if not training:
            return dout * (gamma * inv_std)  # (N, D)
        n = dout.shape[0]
        dx = xhat * dgamma  # (N, D)
        np.subtract(n * dout, dx, out=dx)
        dx -= dbeta
        dx *= gamma * inv_std / n
        return dx


class Dropout(Layer):
    """Inverted dropout: drop each unit with probability ``p`` in training and scale the
    kept ones by ``1 / (1 - p)``, so the expectation is unchanged; identity at eval.

    The mask comes from ``rng`` (a ``np.random.Generator``; one is made from ``seed`` when
    not given), so a seed fixes every mask. Shapes: x, out, dout, dx, mask all (N, D).
    """

    def __init__(
        self, p: float, *, rng: np.random.Generator | None = None, seed: int | None = None
    ) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) -> out (N, D); caches the scaled mask (N, D), or None at eval."""
        if not training or self.p == 0.0:
            self.cache = None
            self.last_output = x
            return x
        keep = self.rng.random(x.shape) >= self.p  # (N, D) bool
        mask = np.multiply(keep, 1.0 / (1.0 - self.p), dtype=x.dtype)  # (N, D)
        out = x * mask  # (N, D)
        self.cache = mask
        self.last_output = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (N, D) -> dx (N, D) = dout * mask (identity at eval)."""
        mask = self.cache
        return dout if mask is None else dout * mask


__all__ = [
    "ELU",
    "BatchNorm",
    "Dropout",
    "Layer",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Tanh",
]
