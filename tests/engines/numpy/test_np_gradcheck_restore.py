"""Gradient checks leave no trace: layer state put back, and overrides applied to a RunConfig."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_config
from trainlab.api import gradcheck
from trainlab.config import load_config
from trainlab.engines.numpy import BatchNorm, Dropout, gradcheck_layer
from trainlab.errors import ConfigError


def test_gradcheck_layer_puts_back_batchnorm_running_statistics() -> None:
    rng = np.random.default_rng(0)
    bn = BatchNorm(5, dtype=np.float64)
    bn.buffers["running_mean"][:] = rng.standard_normal(5)
    bn.buffers["running_var"][:] = rng.uniform(0.5, 2.0, 5)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    x = 2.0 + 3.0 * rng.standard_normal((8, 5))  # (N, D)
    gradcheck_layer(bn, x, num_entries=3)
    for key, value in before.items():
        np.testing.assert_array_equal(bn.buffers[key], value)


def test_gradcheck_layer_puts_back_the_dropout_generator() -> None:
    layer = Dropout(0.4, rng=np.random.default_rng(3))
    x = np.random.default_rng(1).standard_normal((6, 7))  # (N, D)
    gradcheck_layer(layer, x, num_entries=3)
    # the next mask is the one an unchecked layer would draw
    np.testing.assert_array_equal(layer.rng.random(4), np.random.default_rng(3).random(4))


def test_gradcheck_applies_overrides_to_a_run_config(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.yaml", tmp_path / "runs"))
    with pytest.raises(ConfigError, match="autograd"):
        gradcheck(config, overrides=["engine=torch"])
