"""Models of the NumPy engine: a ``Sequential`` stack of layers and the MLP builder."""

from __future__ import annotations

import numpy as np

from trainlab.engines.numpy.layers import (
    ELU,
    BatchNorm,
    Dropout,
    Layer,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
)

ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "linear")
RELU_FAMILY = ("relu", "leaky_relu", "elu")


class Sequential:
    """Layers applied in order. Parameter keys are ``"<layer index>.<name>"`` (``"0.W"``,
    ``"1.gamma"``); BatchNorm running statistics are ``"1.running_mean"`` etc.

    ``forward`` returns logits that belong to the caller (a fresh array); the first layer
    skips its input gradient (``need_dx = False``), so ``backward`` returns None when the
    first layer is a Linear.
    """

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = list(layers)
        if self.layers:
            self.layers[0].need_dx = False

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x (N, D) (or (N, C, H, W), flattened by the first Linear) -> logits (N, K)."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dlogits: np.ndarray) -> np.ndarray | None:
        """dlogits (N, K) -> gradient of the input (or None); fills every layer's grads."""
        d: np.ndarray | None = dlogits
        for layer in reversed(self.layers):
            d = layer.backward(d)
            if d is None:
                break
        return d

    def _named(self, attr: str) -> dict[str, np.ndarray]:
        return {
            f"{i}.{name}": arr
            for i, layer in enumerate(self.layers)
            for name, arr in getattr(layer, attr).items()
        }

    def parameters(self) -> dict[str, np.ndarray]:
        """Learnable arrays by key (the layers' own arrays: update them in place)."""
        return self._named("params")

    def gradients(self) -> dict[str, np.ndarray]:
        """Gradients by the same keys as ``parameters()`` (the layers' own arrays)."""
        return self._named("grads")

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-learned state by key (BatchNorm running statistics)."""
        return self._named("buffers")

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers: everything a checkpoint needs."""
        return {k: v.copy() for k, v in {**self.parameters(), **self.buffers()}.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy ``state_arrays()`` output back in place; missing, unexpected or
        mis-shaped keys raise ``ValueError`` naming them."""
        own = {**self.parameters(), **self.buffers()}
        missing = sorted(set(own) - set(arrays))
        unexpected = sorted(set(arrays) - set(own))
        if missing or unexpected:
            raise ValueError(f"state arrays do not match the model: missing {missing}, "
                             f"unexpected {unexpected}")
        for k, dst in own.items():
            src = np.asarray(arrays[k])
            if src.shape != dst.shape:
                raise ValueError(f"state array {k!r} has shape {src.shape}, model has {dst.shape}")
            np.copyto(dst, src, casting="same_kind")

    def num_params(self) -> int:
        """Number of learnable scalars."""
        return int(sum(p.size for p in self.parameters().values()))

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


def _activation(name: str, leaky_slope: float) -> Layer:
    if name == "relu":
        return ReLU(inplace=True)  # its input is the previous layer's fresh output
    if name == "leaky_relu":
        return LeakyReLU(leaky_slope)
    if name == "elu":
        return ELU()
    if name == "sigmoid":
        return Sigmoid()
    if name == "tanh":
        return Tanh()
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def _checked_dropouts(activation: str, bn_position: str, dropout: float | list[float], n_hidden: int) -> list[float]:
    """The dropout rate of each hidden layer, once ``activation`` and ``bn_position`` are known names.

    Raises ``ValueError`` naming an unknown activation or position, or a list of rates of the wrong length.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if bn_position not in ("before", "after"):
        raise ValueError(f"unknown bn_position {bn_position!r}; choose 'before' or 'after'")
    drops = list(dropout) if isinstance(dropout, list | tuple) else [float(dropout)] * n_hidden
    if len(drops) != n_hidden:
        raise ValueError(f"dropout has {len(drops)} values for {n_hidden} hidden layers")
    return drops


# Long for its 18 arguments and the docstring that explains them; the body is one loop over the layers.
def build_mlp(
    input_dim: int,
    num_classes: int,
    hidden: list[int],
    *,
    activation: str = "relu",
    batch_norm: bool = False,
    bn_position: str = "before",
    dropout: float | list[float] = 0.0,
    init_scheme: str = "default",
    sigma: float | None = None,
    scale: float | None = None,
    value: float | None = None,
    bias_init: float | str = 0.0,
    rng: np.random.Generator,
    dtype: np.dtype | type = np.float32,
    leaky_slope: float = 0.01,
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
    activate_output: bool = False,
) -> Sequential:
    """An MLP ``input_dim -> hidden[0] -> ... -> num_classes``; ``hidden=[]`` gives a
    linear classifier.

    Each hidden block is ``Linear, [BatchNorm], activation, [Dropout]`` with
    ``bn_position="before"`` (BatchNorm between Linear and activation; that Linear has no
    bias since BatchNorm's beta replaces it exactly) or ``Linear, activation, [BatchNorm],
    [Dropout]`` with ``"after"``. ``dropout`` is one probability for every hidden layer or
    one per hidden layer (0 leaves it out). ``init_scheme="default"`` is ``he_normal``
    for the relu family (relu, leaky_relu, elu) and ``glorot_uniform`` otherwise; the
    output layer uses the same scheme; biases start at ``bias_init`` (a constant, default 0,
    or ``"uniform_fan_in"``). Weights and dropout masks come from ``rng``.
    ReLU runs in place (no copy), so the ``last_output`` of a layer feeding a ReLU holds
    the activated values; read pre-activation statistics before the next layer runs.
    ``bn_momentum`` (default 0.1) and ``bn_eps`` (default 1e-5) are the config's, in
    PyTorch's convention: BatchNorm keeps ``1 - bn_momentum`` of its running averages.
    ``activate_output`` (default False) follows the output Linear with the hidden
    activation and the last hidden layer's dropout, as code that builds every dense layer
    alike does; the logits are then ``activation(W h + b)``.
    """
    drops = _checked_dropouts(activation, bn_position, dropout, len(hidden))
    if init_scheme == "default":
        init_scheme = "he_normal" if activation in RELU_FAMILY else "glorot_uniform"
    init = {"init_scheme": init_scheme, "sigma": sigma, "scale": scale, "value": value, "bias_init": bias_init}

    def norm(dim: int) -> BatchNorm:
        return BatchNorm(dim, momentum=1.0 - float(bn_momentum), eps=float(bn_eps), dtype=dtype)

    layers: list[Layer] = []
    dims = [int(input_dim), *(int(h) for h in hidden)]
    for d_in, d_out, p in zip(dims[:-1], dims[1:], drops, strict=True):
        bn_first = batch_norm and bn_position == "before"
        layers.append(Linear(d_in, d_out, rng=rng, bias=not bn_first, dtype=dtype, **init))
        if bn_first:
            layers.append(norm(d_out))
        if activation != "linear":  # linear: no activation layer at all
            layers.append(_activation(activation, leaky_slope))
        if batch_norm and bn_position == "after":
            layers.append(norm(d_out))
        if p > 0:
            layers.append(Dropout(p, rng=rng))
    layers.append(Linear(dims[-1], num_classes, rng=rng, dtype=dtype, **init))
    if activate_output:
        if activation != "linear":
            layers.append(_activation(activation, leaky_slope))
        if drops and drops[-1] > 0:
            layers.append(Dropout(drops[-1], rng=rng))
    return Sequential(layers)


__all__ = ["ACTIVATIONS", "Sequential", "build_mlp"]
