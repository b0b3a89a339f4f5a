"""The ``model`` section: architecture, activation, normalisation, dropout and init."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from ._base import (
    Activation,
    PositiveInt,
    Probability,
    StrictModel,
    field_error,
    name_or,
    scalar_or,
)
from .model_factory import check_custom_model

PositiveFloat = Annotated[float, Field(gt=0.0)]

ModelType = Literal["linear", "mlp", "cnn", "resnet", "fast_cifar", "custom"]
InitScheme = Literal[
    "default",
    "zero",
    "constant",
    "normal",
    "uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
]
#: The weight schemes every engine implements: all of InitScheme but ``default`` (each
#: engine's own choice). The NumPy engine's ``init.SCHEMES`` is this tuple.
WEIGHT_SCHEMES: tuple[str, ...] = tuple(s for s in get_args(InitScheme) if s != "default")
Dropout = scalar_or(Probability, list[Probability])


class InitConfig(StrictModel):
    """How weights (and biases) are initialised."""

    scheme: InitScheme = Field(
        "default",
        description="default: the engine's own; zero; constant (value); normal N(0, sigma^2); uniform "
        "U(-scale, scale); glorot_*/he_* scaled by fan-in/fan-out (Keras' glorot_uniform, he_normal...).",
    )
    sigma: float | None = Field(
        None, gt=0.0, description="Standard deviation for scheme normal (default 0.01)."
    )
    scale: float | None = Field(
        None, gt=0.0, description="Half-width for scheme uniform (default 0.05)."
    )
    value: float | None = Field(
        None, description="Every weight's value for scheme constant (required there)."
    )
    bias: float | Literal["uniform_fan_in"] = Field(
        0.0,
        description="Initial value of every bias, or uniform_fan_in: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), "
        "PyTorch's default bias, kept beside another weight scheme (code that re-initialises only the "
        "weights, e.g. with xavier_uniform_).",
    )
    dirac: bool = Field(
        False,
        description="After the scheme, set the first in_channels filters of every conv to the identity "
        "(dirac) kernel, so each conv starts by passing its input through (airbench's init).",
    )

    @model_validator(mode="after")
    def _fill_per_scheme(self) -> InitConfig:
        owners = {"sigma": "normal", "scale": "uniform", "value": "constant"}
        for name, scheme in owners.items():
            if getattr(self, name) is not None and self.scheme != scheme:
                raise field_error(
                    name,
                    f"only used by scheme '{scheme}', not '{self.scheme}'",
                    getattr(self, name),
                )
        if self.scheme == "normal" and self.sigma is None:
            self.sigma = 0.01
        if self.scheme == "uniform" and self.scale is None:
            self.scale = 0.05
        if self.scheme == "constant" and self.value is None:
            raise field_error("value", "scheme 'constant' needs a value")
        return self


class ConvBlockConfig(StrictModel):
    """One block of a CNN: one or more convolutions, then optional pooling and dropout."""

    filters: scalar_or(PositiveInt, list[PositiveInt]) = Field(  # type: ignore[valid-type]
        description="Output channels of the block's conv; a list gives several convs in a row (VGG-style)."
    )
    kernel: PositiveInt = Field(3, description="Square kernel size of every conv in the block.")
    stride: PositiveInt = Field(1, description="Stride of every conv in the block.")
    padding: name_or(Literal["same", "valid"], int) = Field(  # type: ignore[valid-type]
        "same", description="same (keep size), valid (no padding), or a number of pixels."
    )
    pool: Literal["max", "avg"] | None = Field(
        "max", description="Pooling after the convs; null for none."
    )
    pool_size: PositiveInt = Field(2, description="Pooling window (and stride, unless pool_stride).")
    pool_stride: PositiveInt | None = Field(
        None,
        description="Pooling stride when it differs from the window (TensorFlow's 3x3 max-pool of stride 2, "
        "padding 'valid': pool_size 3, pool_stride 2); null = pool_size.",
    )
    pool_position: Literal["after_convs", "after_first_conv"] = Field(
        "after_convs",
        description="after_convs: conv, BN, act, ..., then pool; after_first_conv: the first conv, the "
        "pool, then its BN and activation, then the other convs (airbench's conv-pool-bn-act).",
    )
    dropout: Probability | None = Field(
        None, description="Dropout after the block; overrides model.dropout for this block."
    )

    @model_validator(mode="after")
    def _check(self) -> ConvBlockConfig:
        if isinstance(self.filters, list) and not self.filters:
            raise field_error("filters", "needs at least one conv", self.filters)
        if isinstance(self.padding, int) and self.padding < 0:
            raise field_error("padding", "must be >= 0", self.padding)
        return self

    def filter_list(self) -> list[int]:
        """Output channels of each conv of the block."""
        return list(self.filters) if isinstance(self.filters, list) else [self.filters]


class WhitenConfig(StrictModel):
    """A frozen first conv that whitens image patches, initialised from the training images.

    Its filters are the eigenvectors ``v`` of the covariance of the ``kernel`` x ``kernel``
    patches of the first ``images`` training images, each scaled by ``1/sqrt(eigenvalue +
    eps)``, with both ``+v`` and ``-v`` (so ``2 * C * kernel**2`` output channels); no
    padding, so the image shrinks by ``kernel - 1``. Computed when the run starts, before
    any training, deterministically.
    """

    kernel: PositiveInt = Field(2, description="Patch size (square).")
    eps: PositiveFloat = Field(
        5e-4, description="Added to each eigenvalue before the inverse square root (damps noise directions)."
    )
    images: PositiveInt = Field(
        5000, description="Number of training images (the first ones) whose patches are used."
    )
    bias: bool = Field(True, description="Give the whitening conv a learned bias (its weights never train).")
    bias_epochs: PositiveInt | None = Field(
        None, description="Train the bias for this many epochs only, then freeze it; null = throughout."
    )
    activation: bool = Field(True, description="Apply model.activation to the whitened output.")

    @model_validator(mode="after")
    def _check(self) -> WhitenConfig:
        if self.bias_epochs is not None and not self.bias:
            raise field_error("bias_epochs", "needs bias: true", self.bias_epochs)
        return self


class ModelConfig(StrictModel):
    """Architecture. The output layer (one unit per class) is always added: don't list it."""

    type: ModelType = Field(
        description="linear (softmax/linear classifier), mlp (hidden dense layers), cnn (conv blocks + fc), "
        "resnet (depth, width), fast_cifar (a small fast CIFAR-10 ResNet), custom (your own torch "
        "module, built by model.factory)."
    )
    hidden: list[PositiveInt] = Field(
        default_factory=list, description="mlp: widths of the hidden layers."
    )
    activation: Activation = Field(
        "relu", description="Activation of hidden layers and convs (linear: none, the identity)."
    )
    leaky_slope: float = Field(0.01, ge=0.0, description="Negative slope of leaky_relu.")
    batch_norm: bool = Field(
        False, description="Batch norm on every hidden dense layer and every conv."
    )
    bn_position: Literal["before", "after"] = Field(
        "before", description="Batch norm before or after the activation."
    )
    bn_momentum: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="Batch norm running-average momentum m in PyTorch's convention, both engines: "
        "running = (1 - m) * running + m * batch. Keras (and CS231n) write the weight kept on the old "
        "value: Keras BatchNormalization(momentum=0.99) is bn_momentum: 0.01; airbench's 'momentum 0.6' is 0.4.",
    )
    bn_eps: PositiveFloat = Field(
        1e-5,
        description="Batch norm epsilon added to the variance, both engines (PyTorch's default 1e-5); "
        "Keras BatchNormalization(epsilon=1e-3) is bn_eps: 0.001 (the same meaning, another default).",
    )
    bn_weight: bool = Field(
        True, description="torch: learn batch norm's scale (gamma); false keeps it fixed at 1 (the shift still learns)."
    )
    dropout: Dropout = Field(  # type: ignore[valid-type]
        0.0,
        description="Dropout rate after each hidden layer (mlp) or conv block (cnn), or a list with one "
        "rate per layer/block; resnet/fast_cifar: before the classifier.",
    )
    init: InitConfig = Field(default_factory=InitConfig, description="Weight initialisation.")
    fc_init: InitConfig | None = Field(
        None,
        description="cnn: initialisation of the dense layers (fc and output) when it differs from the convs' "
        "(seed A's convnet_tf.py: N(0, 1e-4^2) convs, TensorFlow's default glorot_uniform dense layers); "
        "null = model.init.",
    )
    conv: list[ConvBlockConfig] = Field(
        default_factory=list, description="cnn: the conv blocks, in order."
    )
    fc: list[PositiveInt] = Field(
        default_factory=list,
        description="cnn: widths of the dense layers between the convs and the output.",
    )
    fc_activation: Activation | None = Field(
        None, description="cnn: activation of the fc layers; null = same as activation."
    )
    fc_dropout: Dropout = Field(  # type: ignore[valid-type]
        0.0, description="cnn: dropout after each fc layer, or one rate per fc layer."
    )
    fc_batch_norm: bool | None = Field(
        None,
        description="cnn: batch norm in the fc layers; null = same as batch_norm (false keeps "
        "it in the conv blocks only, like most VGG-style nets).",
    )
    depth: PositiveInt | None = Field(None, description="resnet: number of layers (default 18).")
    width: PositiveInt | None = Field(
        None, description="resnet/fast_cifar: channels of the first stage (default 64)."
    )
    dtype: Literal["float32", "float64"] = Field(
        "float32", description="Parameter dtype (float64 for gradient checks)."
    )
    whiten: WhitenConfig | None = Field(
        None, description="cnn: a frozen patch-whitening first conv initialised from the data; null = none."
    )
    conv_bias: bool = Field(
        True, description="cnn: give the convs a bias (false drops it; batch norm makes it redundant)."
    )
    global_pool: Literal["none", "max", "avg"] = Field(
        "none", description="cnn: pool each channel over the whole remaining image before the fc layers."
    )
    head_bias: bool = Field(True, description="linear/mlp/cnn: give the output layer a bias.")
    activate_output: bool = Field(
        False,
        description="mlp: run the output layer through the hidden activation and the last hidden layer's "
        "dropout too, so the logits are activation(W h + b), as seed A's mlp_tf.py builds every dense layer; "
        "false keeps the usual linear output.",
    )
    head_scale: PositiveFloat = Field(
        1.0, description="linear/mlp/cnn: multiply the logits by this constant (airbench: 1/9)."
    )
    factory: str | None = Field(
        None,
        description="custom: the function that builds the model, 'package.module:function' or "
        "'path/to/file.py:function' (a relative path is relative to the config file). It is called as "
        "function(input_shape=(C, H, W), num_classes=K, **options) under the run's seed and returns a "
        "torch.nn.Module mapping (N, C, H, W) images to (N, K) logits. model.init, when set, "
        "re-initialises its Linear and Conv2d layers; by default the module keeps its own initialisation.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="custom: keyword arguments passed to the factory, e.g. {width: 32}; a study can "
        "search them (model.options.width).",
    )

    @model_validator(mode="after")
    def _check_architecture(self) -> ModelConfig:
        t = self.type
        self._check_type_fields()
        self._check_type_options()
        if t == "mlp" and not self.hidden:
            raise field_error(
                "hidden", "type 'mlp' needs at least one hidden layer (or use type: linear)", []
            )
        if t == "cnn" and not self.conv:
            raise field_error("conv", "type 'cnn' needs at least one conv block", [])
        if t == "custom":
            check_custom_model(self)
        self._check_dropout_lengths()
        if t == "resnet":
            self.depth = self.depth or 18
        if t in ("resnet", "fast_cifar"):
            self.width = self.width or 64
        return self

    def _check_type_fields(self) -> None:
        """Refuse a field of other model types (hidden, conv, depth, factory...) that is set."""
        t = self.type
        uses = {
            "hidden": t == "mlp",
            "conv": t == "cnn",
            "fc": t == "cnn",
            "fc_activation": t == "cnn",
            "fc_batch_norm": t == "cnn",
            "depth": t == "resnet",
            "width": t in ("resnet", "fast_cifar"),
            "whiten": t == "cnn",
            "fc_init": t == "cnn",
            "factory": t == "custom",
            "options": t == "custom",
        }
        hints = {
            "hidden": "use type: mlp",
            "conv": "use type: cnn",
            "fc": "use type: cnn",
            "fc_activation": "use type: cnn",
            "fc_batch_norm": "use type: cnn",
            "depth": "use type: resnet",
            "width": "use type: resnet",
            "whiten": "use type: cnn",
            "fc_init": "use type: cnn (other types have one init)",
            "factory": "use type: custom",
            "options": "use type: custom (model.options are the factory's arguments)",
        }
        if t == "cnn":
            hints["hidden"] = "a cnn's dense layers go in fc"
        for name, used in uses.items():
            value = getattr(self, name)
            if not used and value not in (None, [], {}):
                raise field_error(name, f"not used by model type '{t}'; {hints[name]}", value)

    def _check_type_options(self) -> None:
        """Refuse a switch (conv_bias, head_scale...) moved off its default on a type that ignores it."""
        t = self.type
        cnn_only = {"conv_bias": True, "global_pool": "none"}
        head_only = {"head_bias": True, "head_scale": 1.0}
        mlp_only = {"activate_output": False}
        for name, default in {**cnn_only, **head_only, **mlp_only}.items():
            value = getattr(self, name)
            if name in cnn_only:
                allowed, hint = t == "cnn", "use type: cnn"
            elif name in mlp_only:
                allowed, hint = t == "mlp", "use type: mlp"
            else:
                allowed, hint = t in ("linear", "mlp", "cnn"), "resnet/fast_cifar build their own head"
            if value != default and not allowed:
                raise field_error(name, f"not used by model type '{t}'; {hint}", value)

    def _check_dropout_lengths(self) -> None:
        layers = {
            "mlp": ("hidden layers", len(self.hidden)),
            "cnn": ("conv blocks", len(self.conv)),
        }
        if isinstance(self.dropout, list):
            if self.type not in layers:
                raise field_error(
                    "dropout",
                    f"model type '{self.type}' takes one dropout rate, not a list",
                    self.dropout,
                )
            what, n = layers[self.type]
            if len(self.dropout) != n:
                raise field_error(
                    "dropout", f"has {len(self.dropout)} rates for {n} {what}", self.dropout
                )
        elif self.type == "linear" and self.dropout:
            raise field_error(
                "dropout", "a linear model has no hidden layers to drop out", self.dropout
            )
        if isinstance(self.fc_dropout, list) and len(self.fc_dropout) != len(self.fc):
            raise field_error(
                "fc_dropout",
                f"has {len(self.fc_dropout)} rates for {len(self.fc)} fc layers",
                self.fc_dropout,
            )
        if self.type != "cnn" and self.fc_dropout:
            raise field_error(
                "fc_dropout",
                f"not used by model type '{self.type}'; use type: cnn",
                self.fc_dropout,
            )

    def layer_dropouts(self) -> list[float]:
        """Dropout rate after each hidden layer (mlp) or conv block (cnn); [] for other types."""
        if self.type == "mlp":
            n = len(self.hidden)
        elif self.type == "cnn":
            n = len(self.conv)
        else:
            return []
        rates = list(self.dropout) if isinstance(self.dropout, list) else [self.dropout] * n
        if self.type == "cnn":
            rates = [
                r if block.dropout is None else block.dropout
                for r, block in zip(rates, self.conv, strict=True)
            ]
        return rates

    def fc_norm(self) -> bool:
        """Whether a cnn's fc layers get batch norm: ``fc_batch_norm``, else ``batch_norm``."""
        return self.batch_norm if self.fc_batch_norm is None else self.fc_batch_norm

    def fc_dropouts(self) -> list[float]:
        """Dropout rate after each fc layer of a cnn."""
        if isinstance(self.fc_dropout, list):
            return list(self.fc_dropout)
        return [self.fc_dropout] * len(self.fc)
