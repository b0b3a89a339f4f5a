"""Model builders of the torch engine: mlp, cnn (from the config's block list), resnet.

Every builder returns an ``nn.Sequential`` (or a small module tree for resnets) whose
parameter count follows from the config alone, so published counts can be checked:
seed B's MNIST MLP 784-512-512-10 has 669,706 parameters, its CNN 18-36-72-72 + FC 750
has 570,436, seed E's Keras CNN has 122,570.

A custom model comes from the user's factory (:mod:`.custom`); the rest of this module
(output weight, counts) works on any module, and so does :func:`.summary.model_summary`.

Initialisation (:mod:`.init`) is applied after construction, to the weights of every conv
and dense layer (``model.init``), with ``torch``'s global generator forked and seeded so
that building a model never moves the training run's random streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainlab.engines.torch.convgrad import Conv2d
from trainlab.engines.torch.custom import build_custom
from trainlab.engines.torch.init import init_weights
from trainlab.engines.torch.layers import Dropout, Scale, Whiten, make_batch_norm
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import ConvBlockConfig, ModelConfig


def make_activation(name: str, leaky_slope: float = 0.01) -> nn.Module:
    """The activation module called ``name`` (relu, leaky_relu, elu, gelu, silu, sigmoid, tanh, linear)."""
    if name == "linear":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(leaky_slope)
    if name == "elu":
        return nn.ELU()
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()  # x * sigmoid(x), Keras' "silu"/"swish"
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    raise ConfigError(f"model.activation: unknown activation {name!r}")


def _norm_act(
    layers: list[nn.Module], norm: nn.Module | None, act: nn.Module, position: str
) -> None:
    """Append batch norm and the activation in the configured order."""
    if norm is not None and position == "before":
        layers.append(norm)
    layers.append(act)
    if norm is not None and position == "after":
        layers.append(norm)


def build_mlp(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """Flatten, then per hidden width: Linear, [BN], activation, [BN], [Dropout]; then the output
    (followed by the activation and the last hidden dropout with ``activate_output``).

    A ``linear`` model is the same with no hidden layers.
    """
    layers: list[nn.Module] = [nn.Flatten()]  # (B, C*H*W)
    hidden = list(m.hidden) if m.type == "mlp" else []
    in_features = _append_dense(layers, m, math.prod(input_shape), hidden, m.layer_dropouts(), m.activation,
                                m.batch_norm)
    layers += _head(m, in_features, num_classes)  # (B, K)
    _append_output_activation(layers, m)
    return nn.Sequential(*layers)


def _append_dense(layers: list[nn.Module], m: ModelConfig, in_features: int, widths: list[int],
                  rates: list[float], activation: str, batch_norm: bool) -> int:
    """Append per width: Linear, [BN], activation, [BN], [Dropout]; returns the last width."""
    for width, rate in zip(widths, rates, strict=True):
        layers.append(nn.Linear(in_features, width))
        norm = make_batch_norm(width, m, dims=1) if batch_norm else None
        _norm_act(layers, norm, make_activation(activation, m.leaky_slope), m.bn_position)
        if rate:
            layers.append(Dropout(rate))
        in_features = width
    return in_features


def _append_output_activation(layers: list[nn.Module], m: ModelConfig) -> None:
    """With ``activate_output``: the hidden activation and the last hidden dropout after the output."""
    if m.activate_output:
        layers.append(make_activation(m.activation, m.leaky_slope))
        rates = m.layer_dropouts()
        if rates and rates[-1]:
            layers.append(Dropout(rates[-1]))


def _head(m: ModelConfig, in_features: int, num_classes: int) -> list[nn.Module]:
    """The output layer (``head_bias``), then the logit scale when ``head_scale`` is not 1."""
    head: list[nn.Module] = [nn.Linear(in_features, num_classes, bias=m.head_bias)]
    if m.head_scale != 1.0:
        head.append(Scale(m.head_scale))
    return head


def _conv_padding(padding: str | int, kernel: int) -> int:
    if padding == "same":
        if kernel % 2 == 0:
            raise ConfigError(f"model.conv: padding 'same' needs an odd kernel (got {kernel})")
        return kernel // 2
    if padding == "valid":
        return 0
    return int(padding)


def build_cnn(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """[Whitening], conv blocks (convs with BN and activation, pooling, dropout), [global pool],
    flatten, fc layers, output.

    A block with ``pool_position: after_first_conv`` runs conv, pool, BN, activation, then
    its other convs (airbench's layout); otherwise conv, BN, activation per conv, then the pool.

    Raises:
        ConfigError: a block shrinks the image below one pixel.
    """
    layers: list[nn.Module] = []
    channels, height, width = _append_whiten(layers, m, input_shape)
    for index, (block, rate) in enumerate(zip(m.conv, m.layer_dropouts(), strict=True)):
        channels, height, width = _append_conv_block(layers, m, block, channels, height, width)
        if height < 1 or width < 1:
            raise ConfigError(
                f"model.conv[{index}]: the image is {height}x{width} after this block; "
                "use padding 'same', fewer pooling layers, or a larger data.resize"
            )
        if rate:
            layers.append(Dropout(rate))
    if m.global_pool != "none":
        layers.append(nn.AdaptiveMaxPool2d(1) if m.global_pool == "max" else nn.AdaptiveAvgPool2d(1))
        height = width = 1
    layers.append(nn.Flatten())  # (B, C*H*W)
    fc_norm = m.fc_norm()
    in_features = _append_dense(layers, m, channels * height * width, list(m.fc), m.fc_dropouts(),
                                m.fc_activation or m.activation, fc_norm)
    layers += _head(m, in_features, num_classes)  # (B, K)
    _append_output_activation(layers, m)
    return nn.Sequential(*layers)


def _append_whiten(
    layers: list[nn.Module], m: ModelConfig, input_shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Append the whitening layer (and its activation), if any; returns (C, H, W) after it.

    Raises:
        ConfigError: the whitening kernel is larger than the image.
    """
    channels, height, width = input_shape
    if m.whiten is not None:
        k = m.whiten.kernel
        layers.append(Whiten(channels, k, bias=m.whiten.bias))  # (B, 2 C k^2, H - k + 1, W - k + 1)
        if m.whiten.activation:
            layers.append(make_activation(m.activation, m.leaky_slope))
        channels, height, width = 2 * channels * k * k, height - k + 1, width - k + 1
        if height < 1 or width < 1:
            raise ConfigError(f"model.whiten.kernel: {k} is larger than the {input_shape[1]}x{input_shape[2]} image")
    return channels, height, width


def _append_conv_block(
    layers: list[nn.Module], m: ModelConfig, block: ConvBlockConfig, channels: int, height: int, width: int
) -> tuple[int, int, int]:
    """Append one conv block's convs, batch norms, activations and pool; returns (C, H, W) after it."""
    pad = _conv_padding(block.padding, block.kernel)
    pool_first = block.pool is not None and block.pool_position == "after_first_conv"
    for position, filters in enumerate(block.filter_list()):
        # Batch norm makes the conv bias redundant only when it follows the conv
        # directly; keep the bias by default so parameter counts match Keras'.
        layers.append(Conv2d(channels, filters, block.kernel, block.stride, pad, bias=m.conv_bias))
        height = (height + 2 * pad - block.kernel) // block.stride + 1
        width = (width + 2 * pad - block.kernel) // block.stride + 1
        if pool_first and position == 0:
            height, width = _append_pool(layers, block.pool, block.pool_size, block.pool_stride, height, width)
        norm = make_batch_norm(filters, m) if m.batch_norm else None
        _norm_act(layers, norm, make_activation(m.activation, m.leaky_slope), m.bn_position)
        channels = filters
    if block.pool is not None and not pool_first:
        height, width = _append_pool(layers, block.pool, block.pool_size, block.pool_stride, height, width)
    return channels, height, width


def _append_pool(
    layers: list[nn.Module], kind: str, size: int, stride: int | None, height: int, width: int
) -> tuple[int, int]:
    """Append a max or average pool (window ``size``, ``stride`` or else ``size``, no padding).

    Returns the new height and width.
    """
    step = stride or size
    layers.append(nn.MaxPool2d(size, step) if kind == "max" else nn.AvgPool2d(size, step))
    return (height - size) // step + 1, (width - size) // step + 1


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet-18 (He et al. 2016), CIFAR variant."""

    def __init__(self, in_channels: int, channels: int, stride: int, act: nn.Module,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = norm(channels)
        self.act1 = act
        self.conv2 = Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = norm(channels)
        self.act2 = type(act)() if not isinstance(act, nn.LeakyReLU) else nn.LeakyReLU(act.negative_slope)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), norm(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C, H / stride, W / stride)."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class Residual(nn.Module):
    """``x + f(x)``: ResNet-9's residual branch."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape preserved."""
        return x + self.branch(x)


def _conv_bn(c_in: int, c_out: int, m: ModelConfig) -> list[nn.Module]:
    return [Conv2d(c_in, c_out, 3, 1, 1, bias=False), make_batch_norm(c_out, m),
            make_activation(m.activation, m.leaky_slope)]


def build_resnet9(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """The ResNet-9 of the DAWNBench CIFAR-10 entries (Page 2018): prep, three stages, pool, linear."""
    w = m.width or 64

    def stage(c_in: int, c_out: int, residual: bool) -> list[nn.Module]:
        layers = [*_conv_bn(c_in, c_out, m), nn.MaxPool2d(2)]
        if residual:
            layers.append(Residual(nn.Sequential(*_conv_bn(c_out, c_out, m), *_conv_bn(c_out, c_out, m))))
        return layers

    rate = m.dropout if isinstance(m.dropout, float) else 0.0
    return nn.Sequential(
        *_conv_bn(input_shape[0], w, m),  # (B, w, H, W)
        *stage(w, 2 * w, True),  # (B, 2w, H/2, W/2)
        *stage(2 * w, 4 * w, False),  # (B, 4w, H/4, W/4)
        *stage(4 * w, 8 * w, True),  # (B, 8w, H/8, W/8)
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),  # (B, 8w)
        *([Dropout(rate)] if rate else []),
        nn.Linear(8 * w, num_classes, bias=False),
        Scale(0.125),  # (B, K)
    )


RESNET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def build_resnet(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """CIFAR ResNet-18/34 (3x3 stem, no stem pooling), or ResNet-9 for ``depth: 9``."""
    depth = m.depth or 18
    if depth == 9:
        return build_resnet9(m, input_shape, num_classes)
    if depth not in RESNET_STAGES:
        raise ConfigError(f"model.depth: resnet depth {depth} is not built; choose 9, 18 or 34")
    w = m.width or 64
    layers: list[nn.Module] = [
        Conv2d(input_shape[0], w, 3, 1, 1, bias=False),
        make_batch_norm(w, m),
        make_activation(m.activation, m.leaky_slope),
    ]
    in_channels = w
    for stage, blocks in enumerate(RESNET_STAGES[depth]):
        channels = w * 2**stage
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            layers.append(BasicBlock(in_channels, channels, stride, make_activation(m.activation, m.leaky_slope),
                                     lambda c: make_batch_norm(c, m)))
            in_channels = channels
    rate = m.dropout if isinstance(m.dropout, float) else 0.0
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (B, 8w)
    if rate:
        layers.append(Dropout(rate))
    layers.append(nn.Linear(in_channels, num_classes))  # (B, K)
    return nn.Sequential(*layers)


def build_model(
    m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, seed: int = 0
) -> nn.Module:
    """The config's model, initialised from ``seed`` without touching the global torch RNG.

    Args:
        m: the ``model`` section.
        input_shape: (C, H, W) of one image.
        num_classes: units of the output layer.
        seed: seed of the initial weights. Default 0.

    A custom model (``model.factory``) is built by its factory under the same seeded RNG;
    ``model.init`` then applies to its Linear and Conv2d layers only when set (its default,
    ``default``, leaves the factory's own initialisation alone).

    Raises:
        ConfigError: the config describes a model that cannot be built (a custom factory that
            fails or returns a wrong model: see :func:`build_custom`).
    """
    builders = {
        "linear": build_mlp,
        "mlp": build_mlp,
        "cnn": build_cnn,
        "resnet": build_resnet,
        "fast_cifar": build_resnet9,
        "custom": build_custom,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builders[m.type](m, input_shape, num_classes)
        init_weights(model, m.init, m.fc_init)
    return model.to(torch.float64 if m.dtype == "float64" else torch.float32)


def output_weight(model: nn.Module) -> nn.Parameter | None:
    """The output layer's weight (the last dense layer's), or None without one."""
    dense = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return dense[-1].weight if dense else None


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "BasicBlock",
    "build_cnn",
    "build_mlp",
    "build_model",
    "build_resnet",
    "build_resnet9",
    "count_params",
    "init_weights",
    "make_activation",
    "output_weight",
]
