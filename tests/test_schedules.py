"""Learning-rate schedules: values at chosen steps."""

from __future__ import annotations

import math
import re

import pytest

from trainlab.schedules import lr_at

BASE = {"base_lr": 0.1, "total_steps": 1000, "steps_per_epoch": 100}


def lr(step: int, type_: str, **kw) -> float:
    return lr_at(step, type=type_, **{**BASE, **kw})


def test_constant() -> None:
    assert lr(0, "constant") == lr(999, "constant") == 0.1


def test_step_decay() -> None:
    kw = {"step_size": 3, "gamma": 0.5, "per": "epoch"}
    assert lr(0, "step", **kw) == pytest.approx(0.1)
    assert lr(299, "step", **kw) == pytest.approx(0.1)
    assert lr(300, "step", **kw) == pytest.approx(0.05)
    assert lr(650, "step", **kw) == pytest.approx(0.025)


def test_exponential_per_epoch() -> None:
    kw = {"gamma": 0.95, "per": "epoch"}
    assert lr(99, "exponential", **kw) == pytest.approx(0.1)
    assert lr(100, "exponential", **kw) == pytest.approx(0.095)
    assert lr(250, "exponential", **kw) == pytest.approx(0.1 * 0.95**2)
    assert lr(3, "exponential", gamma=0.9) == pytest.approx(0.1 * 0.9**3)


def test_cyclical_triangular() -> None:
    kw = {"min_lr": 0.01, "max_lr": 0.11, "step_size": 100}
    assert lr(0, "cyclical", **kw) == pytest.approx(0.01)
    assert lr(50, "cyclical", **kw) == pytest.approx(0.06)  # quarter cycle
    assert lr(100, "cyclical", **kw) == pytest.approx(0.11)  # half cycle
    assert lr(150, "cyclical", **kw) == pytest.approx(0.06)
    assert lr(200, "cyclical", **kw) == pytest.approx(0.01)  # full cycle
    assert lr(300, "cyclical", **kw) == pytest.approx(0.11)
    # 5 cycles over 1000 steps: half-cycle 100
    assert lr(100, "cyclical", min_lr=0.01, max_lr=0.11, cycles=5) == pytest.approx(0.11)


def test_one_cycle() -> None:
    kw = {"max_lr": 1.0, "pct_start": 0.3}
    assert lr(0, "one_cycle", **kw) == pytest.approx(1.0 / 25)
    assert lr(150, "one_cycle", **kw) == pytest.approx(1 / 25 + (1 - 1 / 25) / 2)
    assert lr(300, "one_cycle", **kw) == pytest.approx(1.0)  # the peak
    assert max(lr(s, "one_cycle", **kw) for s in range(1000)) == pytest.approx(1.0)
    assert lr(650, "one_cycle", **kw) == pytest.approx((1 + 1e-4) / 2)
    assert lr(1000, "one_cycle", **kw) == pytest.approx(1e-4)


def test_cosine() -> None:
    assert lr(0, "cosine") == pytest.approx(0.1)
    assert lr(500, "cosine", min_lr=0.02) == pytest.approx(0.06)
    assert lr(1000, "cosine") == pytest.approx(0.0, abs=1e-15)
    assert lr(250, "cosine") == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))


def test_warmup_linear() -> None:
    assert lr(0, "warmup_linear", warmup_steps=100) == 0.0
    assert lr(50, "warmup_linear", warmup_steps=100) == pytest.approx(0.05)
    assert lr(100, "warmup_linear", warmup_steps=100) == pytest.approx(0.1)
    # then linearly down to min_lr (default 0) at the last step
    total = 1000
    assert lr(550, "warmup_linear", warmup_steps=100, total_steps=total) == pytest.approx(0.05)
    assert lr(total, "warmup_linear", warmup_steps=100, total_steps=total) == pytest.approx(0.0)
    assert lr(550, "warmup_linear", warmup_steps=100, total_steps=total, min_lr=0.02) == pytest.approx(0.06)


def test_constant_and_cosine_warmup() -> None:
    assert lr(0, "constant", warmup_steps=10) == 0.0
    assert lr(5, "constant", warmup_steps=10) == pytest.approx(0.05)
    assert lr(10, "constant", warmup_steps=10) == pytest.approx(0.1)
    assert lr(5, "cosine", warmup_steps=10, total_steps=110) == pytest.approx(0.05)
    assert lr(10, "cosine", warmup_steps=10, total_steps=110) == pytest.approx(0.1)
    assert lr(60, "cosine", warmup_steps=10, total_steps=110) == pytest.approx(0.05)
    assert lr(110, "cosine", warmup_steps=10, total_steps=110) == pytest.approx(0.0)



def test_ramps_are_straight_between_their_ends() -> None:
    """Quarter points and a pct_start other than the default: a midpoint alone cannot tell a
    straight ramp from a cosine or any other symmetric curve."""
    cyc = {"min_lr": 0.01, "max_lr": 0.11, "step_size": 100}
    assert lr(25, "cyclical", **cyc) == pytest.approx(0.035)
    assert lr(175, "cyclical", **cyc) == pytest.approx(0.035)
    assert lr(25, "warmup_linear", warmup_steps=100) == pytest.approx(0.025)
    assert lr(325, "warmup_linear", warmup_steps=100) == pytest.approx(0.1 - 0.1 * 225 / 900)
    one = {"max_lr": 1.0, "pct_start": 0.2}
    assert lr(50, "one_cycle", **one) == pytest.approx(0.04 + 0.96 * 0.25)
    assert lr(200, "one_cycle", **one) == pytest.approx(1.0)  # the peak moves with pct_start
    assert lr(400, "one_cycle", **one) == pytest.approx(1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(3, "cosine", warmup_steps=12, total_steps=112) == pytest.approx(0.025)


def test_warmup_starts_at_start_lr() -> None:
    assert lr(0, "constant", warmup_steps=10, start_lr=0.02) == pytest.approx(0.02)
    assert lr(5, "constant", warmup_steps=10, start_lr=0.02) == pytest.approx(0.06)
    assert lr(50, "warmup_linear", warmup_steps=100, start_lr=0.02) == pytest.approx(0.06)
    assert lr(5, "cosine", warmup_steps=10, total_steps=110, start_lr=0.04) == pytest.approx(0.07)

@pytest.mark.parametrize(
    ("type_", "kw", "name"),
    [
        ("step", {"gamma": 0.5}, "step_size"),
        ("step", {"step_size": 2}, "gamma"),
        ("exponential", {}, "gamma"),
        ("cyclical", {"max_lr": 1.0}, "step_size"),
        ("cyclical", {"step_size": 10}, "max_lr"),
        ("warmup_linear", {}, "warmup_steps"),
        ("linear_decay", {}, "linear_decay"),
        ("constant", {"per": "batch"}, "batch"),
    ],
)
def test_errors_name_the_problem(type_: str, kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        lr(0, type_, **kw)


# -- inverse_time: Keras' legacy time-based decay ---------------------------------------------
def keras_legacy_sgd_lrs(lr0: float, decay: float, updates: int) -> list[float]:
    """The lr of each update of Keras 2's ``SGD(lr0, decay=decay)``, as its code wrote it:
    ``lr = self.lr * (1. / (1. + self.decay * self.iterations))``, iterations counting the
    updates done before this one."""
    return [lr0 * (1.0 / (1.0 + decay * iterations)) for iterations in range(updates)]


def test_inverse_time_per_step_is_keras_legacy_decay() -> None:
    expected = keras_legacy_sgd_lrs(0.015, 0.001, 2500)
    got = [lr_at(s, base_lr=0.015, type="inverse_time", total_steps=2500, steps_per_epoch=1000,
                 per="step", decay=0.001) for s in range(2500)]
    assert got == pytest.approx(expected, rel=1e-15)
    assert got[0] == 0.015  # the first update uses the base lr
    assert got[1000] == pytest.approx(0.015 / 2)  # decay * t = 1 halves it


def test_inverse_time_per_epoch_counts_completed_epochs() -> None:
    kw = {"decay": 0.5, "per": "epoch"}
    assert lr(0, "inverse_time", **kw) == lr(99, "inverse_time", **kw) == 0.1
    assert lr(100, "inverse_time", **kw) == pytest.approx(0.1 / 1.5)
    assert lr(250, "inverse_time", **kw) == pytest.approx(0.1 / 2.0)
    with pytest.raises(ValueError, match="decay"):
        lr(0, "inverse_time")


def test_inverse_time_config_defaults_and_errors() -> None:
    from trainlab.config import RunConfig, with_overrides
    from trainlab.errors import ConfigError

    def build(schedule: dict) -> RunConfig:
        return RunConfig.from_dict({"data": {"dataset": "mnist"}, "model": {"type": "linear"},
                                    "schedule": schedule})

    cfg = build({"type": "inverse_time", "decay": 0.001})
    assert (cfg.schedule.per, cfg.schedule.decay) == ("step", 0.001)
    assert build({"type": "inverse_time", "decay": 0.05, "per": "epoch"}).schedule.per == "epoch"
    for schedule, message in [
        ({"type": "inverse_time"}, "schedule.decay: schedule type 'inverse_time' needs decay"),
        ({"type": "inverse_time", "decay": 0}, "schedule.decay"),
        ({"type": "exponential", "gamma": 0.9, "decay": 0.01},
         "schedule.decay: not used by schedule type 'exponential' (used by: inverse_time)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build(schedule)
    # Switching the type away (a study, an override) drops the decay instead of failing on it.
    switched = with_overrides(cfg, ["schedule.type=cosine"])
    assert switched.schedule.type == "cosine" and switched.schedule.decay is None


def test_inverse_time_is_described_in_the_schema() -> None:
    from trainlab.config import config_schema

    schedule = config_schema()["$defs"]["ScheduleConfig"]["properties"]
    assert "inverse_time" in schedule["type"]["description"]
    assert "1 + decay * t" in schedule["decay"]["description"]


def test_switching_the_schedule_type_drops_every_field_of_the_old_type() -> None:
    """start_lr is a field of some types only, like decay: an override of schedule.type drops
    it instead of failing on it (the list of such fields is the config's, in one place)."""
    from trainlab.config import RunConfig, with_overrides

    cfg = RunConfig.from_dict({"data": {"dataset": "mnist"}, "model": {"type": "linear"},
                               "schedule": {"type": "cosine", "warmup_steps": 3, "start_lr": 0.01}})
    switched = with_overrides(cfg, ["schedule.type=step", "schedule.step_size=2"])
    assert (switched.schedule.type, switched.schedule.start_lr, switched.schedule.warmup_steps) == ("step", None, None)
    kept = with_overrides(cfg, ["schedule.type=constant", "schedule.start_lr=0.02"])
    assert kept.schedule.start_lr == 0.02
