"""The size of a config's model, counted from the config alone (nothing is built).

:func:`model_size` walks the layers the builders of both engines make (``engines/torch/
models.py``; the NumPy engine's linear and mlp models are the same layers) and counts the
parameters and the values each layer outputs for one example. The memory estimate turns
those into bytes; importing torch for that would cost ``trainlab validate`` seconds.
``tests/test_memory_estimate.py`` checks the counts against the built torch models.

A custom model (``model.type: custom``) is the exception: its layers are known only to the
module its factory builds, so it is built (on torch's meta device when it allows) and
measured by a forward pass (``engines/torch/custom.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainlab.config import ConvBlockConfig, ModelConfig

#: Basic blocks per stage of the CIFAR ResNets (``engines/torch/models.py``).
RESNET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@dataclass
class ModelSize:
    """What a model holds and what it computes per example.

    Attributes:
        params: trainable parameters.
        frozen: other tensors of its state (batch-norm running statistics, a frozen scale,
            the whitening filters).
        values: values every layer outputs for one example, summed (the input included): what
            training keeps for the backward pass.
        widest: the largest single layer output for one example (what evaluation holds).
    """

    params: int = 0
    frozen: int = 0
    values: int = 0
    widest: int = 0

    def output(self, values: int) -> None:
        """Record one layer output of ``values`` per example."""
        self.values += values
        self.widest = max(self.widest, values)

    def batch_norm(self, channels: int, positions: int, m: ModelConfig) -> None:
        """A batch norm over ``channels`` (scale and shift; running mean and variance)."""
        self.params += channels * (2 if m.bn_weight else 1)
        self.frozen += channels * (2 if m.bn_weight else 3)
        self.output(channels * positions)


def model_size(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int,
               engine: str = "torch") -> ModelSize:
    """Count the model of ``m`` for images of ``input_shape`` (C, H, W) and ``num_classes``,
    as ``engine`` builds it (the NumPy engine drops the bias of a Linear its batch norm follows)."""
    if m.type == "custom":  # only the module itself knows its layers: build it (torch is needed then)
        from trainlab.engines.torch.custom import custom_model_size

        return custom_model_size(m, input_shape, num_classes)
    size = ModelSize()
    size.output(input_shape[0] * input_shape[1] * input_shape[2])
    if m.type in ("linear", "mlp"):
        features = _dense_stack(size, m, input_shape[0] * input_shape[1] * input_shape[2],
                                list(m.hidden) if m.type == "mlp" else [], m.layer_dropouts(),
                                m.batch_norm, m.activation,
                                bias=not (engine == "numpy" and m.batch_norm and m.bn_position == "before"))
        _head(size, m, features, num_classes)
    elif m.type == "cnn":
        _cnn(size, m, input_shape, num_classes)
    elif m.type == "fast_cifar" or (m.type == "resnet" and m.depth == 9):
        _resnet9(size, m, input_shape, num_classes)
    else:
        _resnet(size, m, input_shape, num_classes)
    return size


def _dense_stack(size: ModelSize, m: ModelConfig, features: int, widths: list[int], rates: list[float],
                 batch_norm: bool, activation: str, bias: bool = True) -> int:
    """Dense layers (Linear, [BN], activation, [dropout]); returns the last width."""
    for width, rate in zip(widths, rates, strict=True):
        size.params += features * width + (width if bias else 0)
        size.output(width)
        if batch_norm:
            size.batch_norm(width, 1, m)
        if activation != "linear":
            size.output(width)
        if rate:
            size.output(width)
        features = width
    return features


def _head(size: ModelSize, m: ModelConfig, features: int, num_classes: int) -> None:
    """The output layer, its logit scale, and ``activate_output``'s activation and dropout."""
    size.params += features * num_classes + (num_classes if m.head_bias else 0)
    size.output(num_classes)
    if m.head_scale != 1.0:
        size.output(num_classes)
    if m.activate_output:
        size.output(num_classes)
        rates = m.layer_dropouts()
        if rates and rates[-1]:
            size.output(num_classes)


def _pooled(h: int, w: int, block: ConvBlockConfig) -> tuple[int, int]:
    step = block.pool_stride or block.pool_size
    return (h - block.pool_size) // step + 1, (w - block.pool_size) // step + 1


def _cnn(size: ModelSize, m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> None:
    c, h, w = input_shape
    if m.whiten is not None:
        k = m.whiten.kernel
        out = 2 * c * k * k
        size.frozen += out * c * k * k  # its filters come from the data and never train
        size.params += out if m.whiten.bias else 0
        c, h, w = out, max(h - k + 1, 0), max(w - k + 1, 0)
        size.output(c * h * w)
        if m.whiten.activation:
            size.output(c * h * w)
    for block, rate in zip(m.conv, m.layer_dropouts(), strict=True):
        k, stride = block.kernel, block.stride
        pad = k // 2 if block.padding == "same" else 0 if block.padding == "valid" else int(block.padding)
        pool_first = block.pool is not None and block.pool_position == "after_first_conv"
        for position, filters in enumerate(block.filter_list()):
            size.params += filters * c * k * k + (filters if m.conv_bias else 0)
            h, w = max((h + 2 * pad - k) // stride + 1, 0), max((w + 2 * pad - k) // stride + 1, 0)
            size.output(filters * h * w)
            if pool_first and position == 0:
                h, w = (max(v, 0) for v in _pooled(h, w, block))
                size.output(filters * h * w)
            if m.batch_norm:
                size.batch_norm(filters, h * w, m)
            size.output(filters * h * w)
            c = filters
        if block.pool is not None and not pool_first:
            h, w = (max(v, 0) for v in _pooled(h, w, block))
            size.output(c * h * w)
        if rate:
            size.output(c * h * w)
    if m.global_pool != "none":
        h = w = 1
        size.output(c)
    fc_norm = m.fc_norm()
    features = _dense_stack(size, m, c * h * w, list(m.fc), m.fc_dropouts(), fc_norm,
                            m.fc_activation or m.activation)
    _head(size, m, features, num_classes)


def _conv_bn(size: ModelSize, m: ModelConfig, c_in: int, c_out: int, positions: int) -> None:
    """A 3x3 conv without bias, batch norm and the activation."""
    size.params += c_out * c_in * 9
    size.output(c_out * positions)
    size.batch_norm(c_out, positions, m)
    size.output(c_out * positions)


def _resnet9(size: ModelSize, m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> None:
    width = m.width or 64
    c, h, w = input_shape
    _conv_bn(size, m, c, width, h * w)
    for c_in, c_out, residual in ((width, 2 * width, True), (2 * width, 4 * width, False),
                                  (4 * width, 8 * width, True)):
        _conv_bn(size, m, c_in, c_out, h * w)
        h, w = h // 2, w // 2  # MaxPool2d(2)
        size.output(c_out * h * w)
        if residual:
            _conv_bn(size, m, c_out, c_out, h * w)
            _conv_bn(size, m, c_out, c_out, h * w)
            size.output(c_out * h * w)  # the sum
    size.output(8 * width)  # global max pool
    if isinstance(m.dropout, float) and m.dropout:
        size.output(8 * width)
    size.params += 8 * width * num_classes  # no bias, then a fixed scale
    size.output(num_classes)
    size.output(num_classes)


def _resnet(size: ModelSize, m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> None:
    width = m.width or 64
    c, h, w = input_shape
    _conv_bn(size, m, c, width, h * w)
    c_in = width
    for stage, blocks in enumerate(RESNET_STAGES.get(m.depth or 18, RESNET_STAGES[18])):
        channels = width * 2**stage
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1  # 3x3 convs padded by 1
            _conv_bn(size, m, c_in, channels, h * w)
            size.params += channels * channels * 9
            size.output(channels * h * w)
            size.batch_norm(channels, h * w, m)
            if stride != 1 or c_in != channels:  # the 1x1 shortcut conv and its batch norm
                size.params += channels * c_in
                size.output(channels * h * w)
                size.batch_norm(channels, h * w, m)
            size.output(channels * h * w)  # the sum
            size.output(channels * h * w)  # its activation
            c_in = channels
    size.output(c_in)  # global average pool
    if isinstance(m.dropout, float) and m.dropout:
        size.output(c_in)
    size.params += c_in * num_classes + num_classes
    size.output(num_classes)


__all__ = ["ModelSize", "model_size"]
