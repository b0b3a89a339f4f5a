"""Seed B's finite-difference check: chosen entries, the N sweep, its figure, and the CLI."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_config
from trainlab.cli import main
from trainlab.engines.numpy.gradcheck import (
    first_entries,
    gradcheck,
    linear_weight_key,
    n_grid,
    n_sweep,
)
from trainlab.engines.numpy.layers import Linear, ReLU
from trainlab.engines.numpy.model import build_mlp
from trainlab.report.gradcheck_sweep import write_n_sweep

LINEAR_BACKWARD = Linear.backward


def net(activation: str = "relu", seed: int = 1):
    """A 3-layer float64 MLP and a batch of 8 (random inputs, 10 classes)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 50)), rng.integers(0, 10, 8)  # (N, D), (N,)
    model = build_mlp(50, 10, [16, 16], activation=activation, init_scheme="glorot_uniform",
                      rng=np.random.default_rng(seed), dtype=np.float64)
    return model, x, y


def unmasked_relu_backward(self: ReLU, dout: np.ndarray) -> np.ndarray:
    """A classic bug: the ReLU's backward forgets its mask and passes every gradient through.

    It shows in the weights into a unit only where that unit is inactive for some example.
    """
    return dout


def unaveraged_linear_backward(self: Linear, dout: np.ndarray) -> np.ndarray | None:
    """Another classic: dW summed over the batch where the loss averages (N times too large)."""
    dx = LINEAR_BACKWARD(self, dout)
    self.grads["W"] *= dout.shape[0]
    return dx


def test_n_grid_is_the_notebooks_grid() -> None:
    grid = n_grid()
    assert len(grid) == 30 and grid == sorted(grid)
    assert grid[:6] == [1, 2, 3, 4, 5, 10] and grid[-1] == 500_000
    # the notebook plots the ten largest eps of its 30: N = 1..5 and 10..50
    assert n_grid(5, 1) == [1, 2, 3, 4, 5, 10, 20, 30, 40, 50]
    with pytest.raises(ValueError, match="k_max"):
        n_grid(0, 3)


def test_first_entries_read_a_weight_matrix_as_out_by_in() -> None:
    # W (D_in=3, D_out=4): the first weights go into output unit 0 from inputs 0, 1, 2
    assert first_entries((3, 4), 4).tolist() == [0, 4, 8, 1]
    assert first_entries((5,), 3).tolist() == [0, 1, 2]
    assert first_entries((3, 4), 100).size == 12


def test_layer_numbers_count_affine_layers_from_one() -> None:
    model = build_mlp(6, 3, [5, 4], batch_norm=True, dropout=0.2, rng=np.random.default_rng(0))
    kinds = [type(layer).__name__ for layer in model.layers]
    keys = [linear_weight_key(model, k) for k in (1, 2, 3)]
    assert [kinds[int(k.split(".")[0])] for k in keys] == ["Linear"] * 3
    assert keys[0] == "0.W" and keys == sorted(keys, key=lambda k: int(k.split(".")[0]))
    with pytest.raises(IndexError, match="3 affine layer"):
        linear_weight_key(model, 4)


def test_gradcheck_of_the_first_entries_of_one_parameter() -> None:
    model, x, y = net()
    key = linear_weight_key(model, 2)
    (row,) = gradcheck(model, x, y, keys=[key], first=True, num_entries=10)
    assert row.name == key and row.entries == 10 and row.max_rel_error < 1e-6
    with pytest.raises(KeyError, match=r"9\.W"):
        gradcheck(model, x, y, keys=["9.W"])


def test_difference_shrinks_as_n_grows_until_rounding() -> None:
    # tanh is smooth: the centred difference's error is c * eps**2 until rounding
    # (about 1e-16 * loss / eps) takes over near N = 1e4, so from N = 1 to 5000 every
    # step must be smaller than the last, by about 100 per decade.
    model, x, y = net("tanh")
    before = model.state_arrays()
    rows = n_sweep(model, x, y, n_grid(), key=linear_weight_key(model, 2), num_entries=10)
    assert [r.n for r in rows] == n_grid() and rows[0].eps == 1.0 and rows[-1].eps == pytest.approx(2e-6)
    truncation = [r.max_abs_diff for r in rows if r.n <= 5000]
    assert all(b < a for a, b in itertools.pairwise(truncation)), truncation
    by_n = {r.n: r.max_abs_diff for r in rows}
    slope = np.log10(by_n[1000] / by_n[10]) / 2  # per decade of N
    assert slope == pytest.approx(-2.0, abs=0.1)
    assert min(by_n.values()) < 1e-9
    for k, v in model.state_arrays().items():  # the sweep leaves the model as it was
        np.testing.assert_array_equal(v, before[k])
    # a ReLU net (seed B's) crosses kinks at large eps, then falls the same way
    model, x, y = net("relu")
    relu = {r.n: r.max_abs_diff for r in n_sweep(model, x, y, n_grid(), key=linear_weight_key(model, 2))}
    assert relu[1000] < 1e-9 < relu[1] and relu[1000] < relu[100] < relu[10]


def test_a_wrong_backward_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y = net()
    key = linear_weight_key(model, 2)
    good = n_sweep(model, x, y, n_grid(), key=key)
    monkeypatch.setattr(ReLU, "backward", unmasked_relu_backward)
    bad = n_sweep(model, x, y, n_grid(), key=key)
    # no N gets the difference under the bug's floor, while the right backward goes to ~1e-12
    assert min(r.max_abs_diff for r in good) < 1e-10
    assert min(r.max_abs_diff for r in bad) > 1e-4
    (row,) = gradcheck(model, x, y, keys=[key], first=True, num_entries=10)
    assert row.max_rel_error > 1e-2


def test_n_sweep_refuses_a_step_that_is_not_positive() -> None:
    model, x, y = net()
    with pytest.raises(ValueError, match="N > 0"):
        n_sweep(model, x, y, [10, 0], key="0.W")


def test_sweep_files_with_exact_zeros(tmp_path: Path) -> None:
    rows = [{"n": n, "eps": 1 / n, "max_abs_diff": d, "max_rel_error": d, "zeros": 0}
            for n, d in ((1, 1e-2), (10, 1e-4), (100, 0.0))]
    written = write_n_sweep(rows, tmp_path / "out", "t")
    assert all(path.exists() for path in written.values())
    table = list(csv.DictReader(written["csv"].open()))
    assert [r["n"] for r in table] == ["1", "10", "100"] and float(table[1]["eps"]) == 0.1
    all_zero = [{**r, "max_abs_diff": 0.0} for r in rows]  # nothing to put on a log axis
    assert write_n_sweep(all_zero, tmp_path / "zero")["png"].stat().st_size > 0
    with pytest.raises(ValueError, match="at least one"):
        write_n_sweep([], tmp_path / "empty")


@pytest.mark.usefixtures("real_data")
def test_gradcheck_cli_n_sweep_on_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "b.yaml", tmp_path / "runs",
                       model={"type": "mlp", "hidden": [64, 64], "init": {"scheme": "glorot_uniform"}})
    out = tmp_path / "out"
    args = ["gradcheck", str(cfg), "--layer", "2", "--entries", "10", "--n-sweep", "--n-i", "3"]
    assert main([*args, "--out", str(out)]) == 0
    assert "passed" in capsys.readouterr().out
    result = json.loads((out / "gradcheck.json").read_text())
    assert result["layer"] == 2 and [r["name"] for r in result["rows"]] == [result["layer_key"]]
    assert result["rows"][0]["entries"] == 10
    assert [r["n"] for r in result["n_sweep"]] == n_grid(5, 3)
    assert len(list(csv.DictReader((out / "n_sweep.csv").open()))) == 20
    assert (out / "n_sweep.png").exists() and (out / "n_sweep.svg").exists()
    monkeypatch.setattr(Linear, "backward", unaveraged_linear_backward)
    assert main(args) == 1  # the wrong backward fails the check of those 10 weights
    assert "failed" in capsys.readouterr().out
    monkeypatch.undo()
    assert main(["gradcheck", str(cfg), "--n-sweep"]) == 2
    assert "--layer" in capsys.readouterr().err
    assert main(["gradcheck", str(cfg), "--layer", "4"]) == 2
    assert "3 affine layer" in capsys.readouterr().err
