"""The ``keras.fit`` side of ``bench_torch.py``: the same net in Keras 3 on its torch backend.

keras is a ``bench`` extra (``pip install -e ".[bench]"``), never a runtime dependency of
trainlab; :func:`keras_available` says whether it is installed. The net is built from the
same run config as the torch engine's (layer sizes, batch norm and its position, dropout,
activations, L2 on the kernels, optimizer), so the trainable parameter counts match; the
images are the same normalised float32 arrays, NHWC as Keras wants them, and ``fit`` runs
at the same precision (bf16 = Keras' ``mixed_bfloat16`` policy).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from trainlab.config import RunConfig


def keras_available() -> bool:
    """True when the ``keras`` package can be imported."""
    try:
        return importlib.util.find_spec("keras") is not None
    except ValueError:  # a half-imported module
        return False


def import_keras() -> Any:
    """Keras on its torch backend (the backend is chosen by the environment before the import)."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"keras was imported earlier with the {keras.backend.backend()} backend")
    return keras


def _activation(keras: Any, name: str, slope: float) -> Any:
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=slope)
    return keras.layers.Activation(name)  # relu, elu, gelu (exact), silu, sigmoid, tanh


def _dense_or_conv_args(keras: Any, config: RunConfig) -> dict[str, Any]:
    scheme = config.model.init.scheme
    args: dict[str, Any] = {}
    if scheme in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal"):
        args["kernel_initializer"] = scheme
    if config.regularization.l2:
        # trainlab's penalty is Keras' own: l2 * sum(W**2) over every conv and dense kernel
        args["kernel_regularizer"] = keras.regularizers.L2(config.regularization.l2)
    return args


def _norm_act(keras: Any, config: RunConfig, activation: str) -> list[Any]:
    m = config.model
    act = _activation(keras, activation, m.leaky_slope)
    if not m.batch_norm:
        return [act]
    # The config's running-average momentum in Keras' convention (the weight kept on the old value).
    norm = keras.layers.BatchNormalization(momentum=1.0 - m.bn_momentum, epsilon=m.bn_eps)
    return [norm, act] if m.bn_position == "before" else [act, norm]


def build_keras_model(keras: Any, config: RunConfig, input_shape: tuple[int, int, int],
                      num_classes: int) -> Any:
    """The config's mlp or cnn as a ``keras.Sequential`` taking NHWC images (H, W, C).

    Raises:
        ValueError: a model type or option this mirror of the torch builders does not cover.
    """
    m, layers = config.model, keras.layers
    extra = _dense_or_conv_args(keras, config)
    stack: list[Any] = [keras.Input(shape=input_shape)]
    if m.type == "mlp":
        stack.append(layers.Flatten())
        for width, rate in zip(m.hidden, m.layer_dropouts(), strict=True):
            stack += [layers.Dense(width, **extra), *_norm_act(keras, config, m.activation)]
            stack += [layers.Dropout(rate)] if rate else []
    elif m.type == "cnn":
        for block, rate in zip(m.conv, m.layer_dropouts(), strict=True):
            pixels = block.padding if isinstance(block.padding, int) else 0
            padding = "valid" if isinstance(block.padding, int) else block.padding
            for filters in block.filter_list():
                stack += [layers.ZeroPadding2D(pixels)] if pixels else []
                stack += [layers.Conv2D(filters, block.kernel, strides=block.stride, padding=padding, **extra),
                          *_norm_act(keras, config, m.activation)]
            if block.pool is not None:
                pool = layers.MaxPooling2D if block.pool == "max" else layers.AveragePooling2D
                stack.append(pool(block.pool_size))
            stack += [layers.Dropout(rate)] if rate else []
        # Flatten order differs from torch's NCHW flatten; the dense layer's size does not.
        stack.append(layers.Flatten())
        for width, rate in zip(m.fc, m.fc_dropouts(), strict=True):
            stack += [layers.Dense(width, **extra), *_norm_act(keras, config, m.fc_activation or m.activation)]
            stack += [layers.Dropout(rate)] if rate else []
    else:
        raise ValueError(f"the keras peer builds mlp and cnn models, not {m.type!r}")
    stack.append(layers.Dense(num_classes, **extra))
    return keras.Sequential(stack)


def keras_optimizer(keras: Any, config: RunConfig) -> Any:
    """The config's optimizer (adam, sgd, momentum, nesterov) as a Keras optimizer.

    Raises:
        ValueError: another optimizer type.
    """
    o = config.optimizer
    if o.type == "adam":
        return keras.optimizers.Adam(learning_rate=o.lr, epsilon=o.eps or 1e-8)
    if o.type in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if o.type == "sgd" else (o.momentum if o.momentum is not None else 0.9)
        return keras.optimizers.SGD(learning_rate=o.lr, momentum=momentum, nesterov=o.type == "nesterov")
    raise ValueError(f"the keras peer has no {o.type!r} optimizer")


def trainable_params(model: Any) -> int:
    """Number of trainable parameters (batch norm's moving statistics left out, as in torch)."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


class KerasSide:
    """``keras.fit`` on the same images: each call of :meth:`steps` is one epoch of exactly ``count`` batches."""

    def __init__(self, config: RunConfig, images: np.ndarray, labels: np.ndarray) -> None:
        """``images``: the normalised training images (N, 3, 32, 32) float32, as the other sides use."""
        self.keras = keras = import_keras()
        self.bf16 = config.train.precision == "bf16"
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16" if self.bf16 else "float32")
        try:
            self.model = build_keras_model(keras, config, (32, 32, 3), 10)
        finally:
            keras.mixed_precision.set_dtype_policy("float32")  # the policy is global
        self.model.compile(optimizer=keras_optimizer(keras, config), jit_compile=False,
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"])  # trainlab's step also sums loss and accuracy
        self.x = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)  # (N, 32, 32, 3)
        self.y = labels.astype(np.int64)
        self.batch = int(config.train.batch_size)  # type: ignore[arg-type]
        self.passes = 0
        self.params = trainable_params(self.model)
        self.policy = "mixed_bfloat16" if self.bf16 else "float32"

    def steps(self, count: int) -> None:
        """One ``fit`` epoch of ``count`` shuffled batches, from a window of the images (a view, no copy)."""
        n = count * self.batch
        if n > len(self.x):
            raise ValueError(f"keras needs {n} images for {count} steps of {self.batch}; "
                             f"pass --images {n} or more")
        start = (self.passes * n) % (len(self.x) - n + 1)
        self.passes += 1
        self.model.fit(self.x[start : start + n], self.y[start : start + n], batch_size=self.batch,
                       epochs=1, shuffle=True, verbose=0)
