"""The learning-rate range test: the curve, the suggestion, --apply, and bad arguments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import write_config
from trainlab.cli import main
from trainlab.config import load_config
from trainlab.errors import ConfigError
from trainlab.lr_find import apply_suggestion, lr_find, smooth, suggest


def test_smooth_is_bias_corrected() -> None:
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    # beta 0.5: the raw averages 0.5, 0.25, 0.125 divided by 1 - 0.5**i (0.5, 0.75, 0.875);
    # without the correction the first value would be pulled halfway to 0.
    assert smooth([1.0, 0.0, 0.0], beta=0.5) == pytest.approx([1.0, 1 / 3, 1 / 7], rel=1e-12)
    # the default beta 0.98: the second value is (0.98 * 0.02 * 1 + 0.02 * 3) / (1 - 0.98**2)
    assert smooth([1.0, 3.0])[1] == pytest.approx((0.98 * 0.02 + 0.02 * 3) / (1 - 0.98**2), rel=1e-12)


def test_suggest_finds_steepest_descent_before_the_minimum() -> None:
    lrs = [10.0 ** (k / 10) for k in range(-60, 1)]  # 1e-6 .. 1
    # a loss that is flat, falls fastest at 1e-2, bottoms out at 1e-1 and rises again
    losses = [2.0 - math.tanh((math.log10(lr) + 2) * 2) + (max(0.0, math.log10(lr) + 1) * 20) for lr in lrs]
    steepest, lowest = suggest(lrs, losses, skip_start=5)
    assert steepest == pytest.approx(1e-2, rel=0.3)
    assert 1e-2 < lowest <= 1e-1 * 1.01


def test_lr_find_on_mnist_suggests_the_right_decade(real_data: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 64},
                       data={"dataset": "mnist", "limit": 3000, "normalize": "scale"})
    result = lr_find(cfg, steps=120)
    # plain SGD on a small MNIST MLP trains well between a few hundredths and about one
    assert 0.02 <= result.suggestion <= 2.0
    assert result.suggestion == suggest(result.lrs, result.smoothed)[0]  # from the curve it wrote
    assert (result.run_dir / "lr_find.png").is_file() and (result.run_dir / "lr_find.json").is_file()
    assert result.lrs[0] == pytest.approx(1e-7) and result.lrs == sorted(result.lrs)


def test_apply_writes_a_copy_with_the_suggestion(real_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1, "batch_size": 64},
                       data={"dataset": "mnist", "limit": 2000, "normalize": "scale"})
    assert main(["lr-find", str(cfg), "--steps", "60", "--min-lr", "1e-4", "--max-lr", "3", "--apply"]) == 0
    assert "suggested learning rate" in capsys.readouterr().out
    copy = load_config(tmp_path / "c.lr-found.yaml")
    (found,) = (tmp_path / "runs").rglob("lr_find.json")
    suggestion = json.loads(found.read_text())["suggestion"]
    assert copy.optimizer.lr == float(f"{suggestion:.3g}") and 1e-4 <= copy.optimizer.lr <= 3


def test_apply_sets_the_peak_of_a_one_cycle_schedule(tmp_path: Path) -> None:
    plain = write_config(tmp_path / "p.yaml", tmp_path / "runs")
    assert load_config(apply_suggestion(plain, 0.0123456)).optimizer.lr == 0.0123
    cycle = write_config(tmp_path / "c.yaml", tmp_path / "runs", optimizer={"type": "sgd", "lr": 0.05},
                         schedule={"type": "one_cycle", "max_lr": 0.5})
    copy = load_config(apply_suggestion(cycle, 0.0123456, out=tmp_path / "found.yaml"))
    assert copy.schedule.max_lr == 0.0123 and copy.optimizer.lr == 0.05


def test_bad_range_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    with pytest.raises(ConfigError, match="min_lr < max_lr"):
        lr_find(cfg, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ConfigError, match="both finite"):  # not a schedule error about an override never typed
        lr_find(cfg, min_lr=1e-5, max_lr=float("inf"))


class _Stop(Exception):
    """Ends lr_find at api.run, before any training."""


@pytest.mark.parametrize("as_path", [True, False], ids=["path", "run-config"])
def test_overrides_apply_to_a_path_and_to_a_run_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       as_path: bool) -> None:
    from trainlab import api

    path = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    seen = []

    def run(config: object, **kwargs: object) -> None:
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(api, "run", run)
    with pytest.raises(_Stop):
        lr_find(path if as_path else load_config(path), overrides=["name=other", "train.batch_size=32"])
    assert seen[0].name == "other-lr-find" and seen[0].train.batch_size == 32


def test_apply_keeps_the_set_values_the_test_ran_with(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    target = apply_suggestion(cfg, 0.0123456, overrides=["optimizer.type=adam", "train.batch_size=32"])
    copy = load_config(target)
    assert (copy.optimizer.type, copy.train.batch_size, copy.optimizer.lr) == ("adam", 32, 0.0123)
    assert target.read_text().startswith("# c.yaml and optimizer.type=adam, train.batch_size=32 with optimizer.lr")
    assert load_config(apply_suggestion(cfg, 0.5)).optimizer.type == load_config(cfg).optimizer.type
