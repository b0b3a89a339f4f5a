"""Model builders: published parameter counts, layer order, activations, init, summary."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from trainlab.config import ModelConfig, RunConfig
from trainlab.engines.torch.models import build_model, count_params
from trainlab.engines.torch.summary import model_summary
from trainlab.errors import ConfigError

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)

SEED_B_CNN = {"type": "cnn", "conv": [{"filters": 18}, {"filters": 36}, {"filters": 72},
                                      {"filters": 72, "pool": None}], "fc": [750]}
SEED_E_CNN = {"type": "cnn", "conv": [{"filters": 32}, {"filters": 64}, {"filters": 64}],
              "fc": [64], "fc_activation": "sigmoid"}
# B's "2,066 parameters, 97.1 %" net has no published layout: three small same-padded
# conv blocks with max-pooling, straight into the output layer.
TINY_CNN = {"type": "cnn", "conv": [{"filters": 4}, {"filters": 8}, {"filters": 10}]}


def model_cfg(model: dict[str, Any]) -> ModelConfig:
    return RunConfig.from_dict({"engine": "torch", "data": {"dataset": "mnist"}, "model": model}).model


@pytest.mark.parametrize(
    ("model", "shape", "expected"),
    [
        ({"type": "mlp", "hidden": [512, 512]}, MNIST, 669_706),
        (SEED_B_CNN, MNIST, 570_436),
        (SEED_E_CNN, CIFAR, 122_570),
        ({"type": "resnet"}, CIFAR, 11_173_962),
        ({"type": "resnet", "depth": 9}, CIFAR, 6_573_120),
        ({"type": "linear"}, CIFAR, 30_730),
    ],
)
def test_published_parameter_counts(model: dict[str, Any], shape: tuple[int, int, int], expected: int) -> None:
    net = build_model(model_cfg(model), shape, 10)
    assert count_params(net) == expected
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_tiny_cnn_fits_the_2100_parameter_budget() -> None:
    net = build_model(model_cfg(TINY_CNN), MNIST, 10)
    assert count_params(net) <= 2_100
    assert net(torch.zeros(3, *MNIST)).shape == (3, 10)


def test_summary_lists_layers_shapes_and_total() -> None:
    net = build_model(model_cfg(SEED_E_CNN), CIFAR, 10)
    text = model_summary(net, CIFAR)
    assert "Total params: 122,570" in text
    assert "(None, 64, 4, 4)" in text and "Conv2d" in text and "65,600" in text



def test_summary_rows_add_up_to_the_total_with_frozen_layers() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    net[0].requires_grad_(False)  # frozen, as the airbench nets' whitening conv
    text = model_summary(net, (3, 8, 8))
    rows = [int(line.split()[-1].replace(",", "")) for line in text.splitlines() if "(Conv2d)" in line
            or "(Linear)" in line or "(Flatten)" in line]
    assert rows == [112, 0, 290] and sum(rows) == 402
    assert "Total params: 402" in text and "Trainable params: 290" in text and "Non-trainable params: 112" in text

@pytest.mark.parametrize("position", ["before", "after"])
def test_batch_norm_position(position: str) -> None:
    net = build_model(model_cfg({"type": "mlp", "hidden": [8], "batch_norm": True, "bn_position": position}),
                      MNIST, 10)
    kinds = [type(m).__name__ for m in net]
    expected = ["BatchNorm1d", "ReLU"] if position == "before" else ["ReLU", "BatchNorm1d"]
    assert kinds[2:4] == expected


def test_rising_dropout_per_block_and_fc() -> None:
    cfg = {"type": "cnn", "conv": [{"filters": 4}, {"filters": 4}, {"filters": 4}],
           "dropout": [0.2, 0.3, 0.4], "fc": [8], "fc_dropout": 0.5}
    net = build_model(model_cfg(cfg), CIFAR, 10)
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.2, 0.3, 0.4, 0.5]


@pytest.mark.parametrize(("fc_batch_norm", "expected"), [(None, 1), (True, 1), (False, 0)])
def test_fc_batch_norm_can_leave_the_dense_layers_out(fc_batch_norm: bool | None, expected: int) -> None:
    cfg = {"type": "cnn", "conv": [{"filters": 4}], "fc": [8], "batch_norm": True, "fc_batch_norm": fc_batch_norm}
    net = build_model(model_cfg(cfg), CIFAR, 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net) == 1
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == expected  # in the one fc layer


def test_fc_batch_norm_is_a_cnn_field() -> None:
    with pytest.raises(ConfigError, match="fc_batch_norm"):
        model_cfg({"type": "mlp", "hidden": [4], "fc_batch_norm": False})


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh"])
def test_activations(activation: str) -> None:
    net = build_model(model_cfg({"type": "mlp", "hidden": [4], "activation": activation}), MNIST, 10)
    names = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "elu": "ELU", "gelu": "GELU", "silu": "SiLU",
             "sigmoid": "Sigmoid", "tanh": "Tanh"}
    assert type(net[2]).__name__ == names[activation]


def test_an_activated_output_layer_is_an_mlp_field() -> None:
    net = build_model(model_cfg({"type": "mlp", "hidden": [4], "activation": "elu", "dropout": 0.3,
                                 "activate_output": True}), MNIST, 10)
    assert [type(m).__name__ for m in net][-4:] == ["Dropout", "Linear", "ELU", "Dropout"]
    with pytest.raises(ConfigError, match="activate_output"):
        model_cfg({"type": "cnn", "conv": [{"filters": 4}], "activate_output": True})


@torch.no_grad()
def test_init_schemes() -> None:
    zero = build_model(model_cfg({"type": "mlp", "hidden": [64], "init": {"scheme": "zero"}}), MNIST, 10)
    assert all(float(p.abs().sum()) == 0 for p in zero.parameters())
    normal = build_model(model_cfg({"type": "mlp", "hidden": [256], "init": {"scheme": "normal", "sigma": 0.1}}),
                         MNIST, 10)
    assert float(normal[1].weight.std()) == pytest.approx(0.1, rel=0.05)
    he = build_model(model_cfg({"type": "cnn", "conv": [{"filters": 64}], "init": {"scheme": "he_normal"}}),
                     CIFAR, 10)
    assert float(he[0].weight.std()) == pytest.approx((2 / 27) ** 0.5, rel=0.1)
    uniform = build_model(model_cfg({"type": "mlp", "hidden": [64], "init": {"scheme": "uniform", "scale": 0.01,
                                                                              "bias": 0.5}}), MNIST, 10)
    assert float(uniform[1].weight.abs().max()) <= 0.01 and float(uniform[1].bias.min()) == 0.5
    # Xavier weights beside PyTorch's own biases (code that re-initialises only the weights)
    kept = build_model(model_cfg({"type": "cnn", "conv": [{"filters": 256}], "fc": [512],
                                  "init": {"scheme": "glorot_uniform", "bias": "uniform_fan_in"}}), CIFAR, 10)
    conv, fc = kept[0], next(m for m in kept if isinstance(m, nn.Linear))
    for module, fan_in in ((conv, 27), (fc, fc.in_features)):
        bound = fan_in**-0.5
        assert float(module.bias.abs().max()) <= bound and float(module.bias.abs().max()) > 0.8 * bound


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    state = torch.get_rng_state()
    a = build_model(model_cfg({"type": "mlp", "hidden": [8]}), MNIST, 10, seed=3)
    b = build_model(model_cfg({"type": "mlp", "hidden": [8]}), MNIST, 10, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_pool_stride_other_than_the_window() -> None:
    """TensorFlow's 3x3 max-pool of stride 2, valid padding (seed A's convnet_tf): 32 -> 15 -> 7."""
    from trainlab.config import ModelConfig
    from trainlab.engines.torch.models import build_cnn

    block = {"filters": 64, "kernel": 5, "pool_size": 3, "pool_stride": 2}
    m = ModelConfig(type="cnn", conv=[block, block], fc=[500])
    net = build_cnn(m, (3, 32, 32), 10)
    pools = [layer for layer in net if isinstance(layer, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2), (3, 2)]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    first_fc = next(layer for layer in net if isinstance(layer, torch.nn.Linear))
    assert first_fc.in_features == 64 * 7 * 7
    default = build_cnn(ModelConfig(type="cnn", conv=[{"filters": 8}]), (3, 32, 32), 10)
    assert next(layer for layer in default if isinstance(layer, torch.nn.Linear)).in_features == 8 * 16 * 16


def test_dense_layers_can_have_their_own_init() -> None:
    """Seed A's convnet_tf.py: N(0, 1e-4^2) convs, glorot_uniform dense layers, biases 1e-5 throughout."""
    m = ModelConfig(type="cnn", conv=[{"filters": 64, "kernel": 5}], fc=[500],
                    init={"scheme": "normal", "sigma": 1e-4, "bias": 1e-5},
                    fc_init={"scheme": "glorot_uniform", "bias": 1e-5})
    net = build_model(m, CIFAR, 10, seed=0)
    conv = next(layer for layer in net.modules() if isinstance(layer, nn.Conv2d))
    dense = [layer for layer in net.modules() if isinstance(layer, nn.Linear)]
    assert float(conv.weight.detach().std()) == pytest.approx(1e-4, rel=0.05)
    for layer in dense:  # Glorot uniform: bound sqrt(6 / (fan_in + fan_out))
        bound = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
        assert 0.9 * bound < float(layer.weight.detach().abs().max()) <= bound
        assert torch.all(layer.bias == 1e-5)
    with pytest.raises(ValueError, match=r"not used by model type .mlp.; use type: cnn"):
        ModelConfig(type="mlp", hidden=[10], fc_init={"scheme": "glorot_uniform"})
