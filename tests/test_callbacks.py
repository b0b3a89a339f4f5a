"""Engine-neutral callbacks, driven by hand with a TrainState."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from trainlab.callbacks import (
    CallbackList,
    CheckpointTrigger,
    EarlyStopping,
    ReduceLROnPlateau,
    TrainState,
    flatten_rows,
)
from trainlab.errors import ConfigError


def evaluate(callbacks: CallbackList, state: TrainState, step: int, **values: float) -> None:
    state.step = step
    rows = [{"split": "val", "loss": values.get("loss", 0.0), "accuracy": values.get("accuracy", 0.0)}]
    callbacks.call("on_evaluate", state, rows)


def test_flatten_rows_prefixes_split() -> None:
    rows = [{"split": "val", "loss": 1.5, "accuracy": 0.5, "step": 3}, {"split": "train", "loss": 1.0}]
    assert flatten_rows(rows) == {"val_loss": 1.5, "val_accuracy": 0.5, "train_loss": 1.0}


def test_early_stopping_patience_counts_evaluations_without_improvement() -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    callbacks, state = CallbackList([stopper]), TrainState()
    for step, loss in enumerate([1.0, 0.8, 0.9], start=1):
        evaluate(callbacks, state, step, loss=loss)
        assert not state.stop_training
    evaluate(callbacks, state, 4, loss=0.85)  # the second evaluation without improvement
    assert state.stop_training and stopper.best == 0.8 and stopper.best_step == 2
    assert "did not improve for 2" in state.stop_reason


def test_early_stopping_min_delta_and_max_mode() -> None:
    stopper = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.01)
    callbacks, state = CallbackList([stopper]), TrainState()
    evaluate(callbacks, state, 1, accuracy=0.50)
    evaluate(callbacks, state, 2, accuracy=0.505)  # below min_delta: no improvement
    assert state.stop_training and stopper.mode == "max"


def test_early_stopping_restores_best_weights() -> None:
    weights = {"w": 0}
    state = TrainState(
        snapshot_weights=lambda: dict(weights), restore_weights=lambda snap: weights.update(snap)
    )
    stopper = EarlyStopping(monitor="val_accuracy", patience=5, restore_best=True)
    callbacks = CallbackList([stopper])
    for step, acc in enumerate([0.3, 0.6, 0.4], start=1):
        weights["w"] = step
        evaluate(callbacks, state, step, accuracy=acc)
    callbacks.call("on_train_end", state)
    assert weights["w"] == 2


def test_moving_window_rule_of_seed_a() -> None:
    # stop when the value minus the mean of the previous `window` values is below threshold
    stopper = EarlyStopping(monitor="val_accuracy", patience=None, window=3, threshold=1e-4, start_after=0)
    callbacks, state = CallbackList([stopper]), TrainState()
    for step, acc in enumerate([0.1, 0.2, 0.3, 0.4, 0.5], start=1):
        evaluate(callbacks, state, step, accuracy=acc)
        assert not state.stop_training
    evaluate(callbacks, state, 6, accuracy=0.4)  # mean of (0.3, 0.4, 0.5) = 0.4 -> gain 0
    assert state.stop_training and "mean of the last 3" in state.stop_reason


def first_stop(stopper: EarlyStopping, values: Sequence[float]) -> int | None:
    """The evaluation (1-based step) at which ``stopper`` stops on ``values``, or None."""
    callbacks, state = CallbackList([stopper]), TrainState()
    key = "loss" if stopper.monitor == "val_loss" else "accuracy"
    for step, value in enumerate(values, start=1):
        evaluate(callbacks, state, step, **{key: value})
        if state.stop_training:
            return step
    return None


@pytest.mark.parametrize(
    ("monitor", "values", "threshold", "stops_at"),
    [
        # previous three (.3, .4, .5) mean .4, gain .06: goes on. The current value in the
        # mean (.4533, gain .0067) or a window of 2 (.45, gain .01) would stop here.
        ("val_accuracy", [0.1, 0.2, 0.3, 0.4, 0.5, 0.46], 0.05, None),
        # gain .04 < .05: stops. A window of 4 (mean .35, gain .09) would go on.
        ("val_accuracy", [0.1, 0.2, 0.3, 0.4, 0.5, 0.44], 0.05, 6),
        # exact binary fractions: mean .5, gain exactly the threshold .125 is not "below" it
        ("val_accuracy", [0.25, 0.5, 0.75, 0.625], 0.125, None),
        # min mode: the gain is mean minus value (.6 - .54 = .06 goes on, .6 - .56 = .04 stops)
        ("val_loss", [0.9, 0.8, 0.7, 0.6, 0.5, 0.54], 0.05, None),
        ("val_loss", [0.9, 0.8, 0.7, 0.6, 0.5, 0.56], 0.05, 6),
        # no rule before `window` previous values exist (steps 2 and 3 fall far below 0.5)
        ("val_accuracy", [0.5, 0.1, 0.1, 0.1], 0.0, 4),
    ],
)
def test_moving_window_is_the_mean_of_the_previous_window_values(
        monitor: str, values: list[float], threshold: float, stops_at: int | None) -> None:
    stopper = EarlyStopping(monitor=monitor, patience=None, window=3, threshold=threshold)
    assert first_stop(stopper, values) == stops_at


def test_start_after_delays_stopping() -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=1, start_after=10)
    callbacks, state = CallbackList([stopper]), TrainState()
    evaluate(callbacks, state, 1, loss=1.0)
    evaluate(callbacks, state, 2, loss=2.0)
    assert not state.stop_training
    evaluate(callbacks, state, 10, loss=2.0)
    assert state.stop_training


def test_unmeasured_monitor_is_a_config_error() -> None:
    callbacks = CallbackList([EarlyStopping(monitor="test_accuracy")])
    with pytest.raises(ConfigError, match=r"not measured.*val_accuracy"):
        evaluate(callbacks, TrainState(), 1, loss=1.0)


def test_reduce_on_plateau_lowers_lr_scale_with_floor() -> None:
    plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.3)
    callbacks, state = CallbackList([plateau]), TrainState(lr=1.0)
    for step, loss in enumerate([1.0, 1.0, 1.0], start=1):
        evaluate(callbacks, state, step, loss=loss)
    assert state.lr_scale == pytest.approx(0.5)
    state.lr = 0.5
    evaluate(callbacks, state, 4, loss=1.0)
    evaluate(callbacks, state, 5, loss=1.0)
    assert state.lr_scale == pytest.approx(0.3)  # 0.5 * 0.5 = 0.25 is below min_lr 0.3
    assert plateau.reductions == 2


def test_reduce_on_plateau_cooldown() -> None:
    plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=2)
    callbacks, state = CallbackList([plateau]), TrainState(lr=1.0)
    evaluate(callbacks, state, 1, loss=1.0)
    evaluate(callbacks, state, 2, loss=1.0)
    assert plateau.reductions == 1
    state.lr = 0.5
    evaluate(callbacks, state, 3, loss=1.0)
    assert plateau.reductions == 1  # cooling down: Keras counts the cooldown down first
    evaluate(callbacks, state, 4, loss=1.0)
    assert plateau.reductions == 2


@pytest.mark.parametrize("cooldown", [0, 1])
def test_reduce_on_plateau_cooldown_of_one_acts_as_zero(cooldown: int) -> None:
    """As documented (running experiments rely on it): Keras's count, not PyTorch's, which
    would skip the third evaluation with cooldown 1."""
    plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=cooldown)
    callbacks, state = CallbackList([plateau]), TrainState(lr=1.0)
    for step in (1, 2, 3):
        evaluate(callbacks, state, step, loss=1.0)
    assert plateau.reductions == 2  # at evaluations 2 and 3


@pytest.mark.parametrize("mode", ["min", "max"])
def test_reduce_on_plateau_relative_threshold_follows_pytorch(mode: str) -> None:
    """threshold_mode rel: the lr trajectory of torch.optim.lr_scheduler.ReduceLROnPlateau.

    PyTorch reduces after more than ``patience`` bad evaluations, Keras and trainlab after
    ``patience``: PyTorch's patience 2 is trainlab's 3."""
    import torch

    values = [100.0, 99.995, 99.992, 99.98, 99.979, 99.97, 99.96, 90.0, 89.999, 89.998, 89.997, 89.996, 89.995]
    if mode == "max":
        values = [-v + 200.0 for v in values]
    monitor = "val_loss" if mode == "min" else "val_accuracy"
    ours = ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=3, min_delta=1e-4, threshold_mode="rel")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=2,
                                                        threshold=1e-4, threshold_mode="rel")
    callbacks, state = CallbackList([ours]), TrainState(lr=1.0)
    for step, value in enumerate(values, start=1):
        evaluate(callbacks, state, step, **({"loss": value} if mode == "min" else {"accuracy": value}))
        state.lr = state.lr_scale
        theirs.step(value)
        assert state.lr == pytest.approx(optimizer.param_groups[0]["lr"]), step
    assert ours.reductions == 1
    absolute = ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=3, min_delta=1e-4)
    callbacks, state = CallbackList([absolute]), TrainState(lr=1.0)
    for step, value in enumerate(values, start=1):
        evaluate(callbacks, state, step, **({"loss": value} if mode == "min" else {"accuracy": value}))
    assert absolute.reductions == 0  # the absolute rule counts 99.995 (and every later step) as better


def test_checkpoint_trigger_every_n_and_on_stop() -> None:
    trigger = CheckpointTrigger(every=3)
    callbacks, state = CallbackList([trigger]), TrainState()
    flags = []
    for step in range(1, 7):
        evaluate(callbacks, state, step, loss=1.0)
        flags.append(state.checkpoint_requested)
        state.checkpoint_requested = False
    assert flags == [False, False, True, False, False, True]
    state.request_stop("test")
    evaluate(callbacks, state, 7, loss=1.0)
    assert state.checkpoint_requested


def test_state_dicts_round_trip_for_resume() -> None:
    first = CallbackList([EarlyStopping(window=2, patience=3), ReduceLROnPlateau(patience=1)])
    state = TrainState(lr=0.1)
    for step, loss in enumerate([1.0, 0.9, 0.95], start=1):
        evaluate(first, state, step, loss=loss)
    saved = first.state_dict()
    second = CallbackList([EarlyStopping(window=2, patience=3), ReduceLROnPlateau(patience=1)])
    second.load_state_dict(saved)
    assert second.state_dict() == saved


BASE_LR = 1.0
# (val_loss, val_accuracy) per evaluation. PATIENCE_ENDS: the loss stalls from evaluation 5
# on (two plateau reductions, then early stopping's patience); accuracy climbs too fast for
# the window rule. WINDOW_ENDS: the loss keeps improving, accuracy levels off.
PATIENCE_ENDS = [(1.0, 0.10), (0.9, 0.20), (0.95, 0.30), (0.97, 0.40), (0.85, 0.50), (0.86, 0.60),
                 (0.87, 0.70), (0.845, 0.80), (0.88, 0.90), (0.89, 1.00), (0.9, 1.10), (0.91, 1.20)]
WINDOW_ENDS = [(1.0, 0.10), (0.9, 0.30), (0.91, 0.50), (0.92, 0.52), (0.8, 0.70), (0.7, 0.80),
               (0.6, 0.90), (0.5, 0.92), (0.4, 0.93), (0.3, 0.93)]


def resumable() -> CallbackList:
    """Every stateful callback, with settings under which each part of its state matters."""
    return CallbackList([
        EarlyStopping(monitor="val_loss", patience=6, min_delta=0.01, restore_best=False),
        EarlyStopping(monitor="val_accuracy", window=3, threshold=0.05),
        ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=3, min_lr=0.3),
        CheckpointTrigger(every=3),
    ])


def drive(callbacks: CallbackList, state: TrainState, evaluations: Sequence[tuple[float, float]],
          start: int) -> list[tuple[object, ...]]:
    """Evaluate from step ``start`` as the loop does (until a stop); what each evaluation did."""
    seen: list[tuple[object, ...]] = []
    for step, (loss, accuracy) in enumerate(evaluations, start=start):
        evaluate(callbacks, state, step, loss=loss, accuracy=accuracy)
        seen.append((step, state.stop_training, state.stop_reason, state.lr_scale, state.checkpoint_requested))
        state.checkpoint_requested = False  # the engine saves and clears it
        state.lr = BASE_LR * state.lr_scale  # the next step runs at the lowered rate
        if state.stop_training:
            break
    return seen


@pytest.mark.parametrize("evaluations", [PATIENCE_ENDS, WINDOW_ENDS], ids=["patience", "window"])
def test_a_resumed_run_behaves_as_the_uninterrupted_one(evaluations: list[tuple[float, float]]) -> None:
    """Cut off after each evaluation, checkpointed (through JSON, as on disk) and resumed: the
    rest stops, lowers the lr and asks for checkpoints at the same evaluations."""
    reference, ref_state = resumable(), TrainState(lr=BASE_LR)
    uninterrupted = drive(reference, ref_state, evaluations, start=1)
    assert uninterrupted[-1][1] and uninterrupted[-1][3] < 1.0, "the scenario must lower the lr and stop"
    for cut in range(1, len(uninterrupted)):
        before, state = resumable(), TrainState(lr=BASE_LR)
        assert drive(before, state, evaluations[:cut], start=1) == uninterrupted[:cut]
        saved = json.loads(json.dumps(before.state_dict()))
        after = resumable()
        after.load_state_dict(saved)
        # the loop restores lr_scale itself (loop_state); the step is the checkpoint's
        resumed = TrainState(lr=state.lr, lr_scale=state.lr_scale, step=cut)
        assert drive(after, resumed, evaluations[cut:], start=cut + 1) == uninterrupted[cut:], cut
        for ours, theirs in zip(after.callbacks, reference.callbacks, strict=True):
            assert vars(ours) == vars(theirs), (cut, type(ours).__name__)


def test_unknown_hook_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown callback hook"):
        CallbackList([]).call("on_batch_end", TrainState())


def test_window_rule_alone_when_patience_is_not_given() -> None:
    """Seed A's moving-window stop: the patience rule stays off unless the config names it."""
    from trainlab.config.train import EarlyStoppingConfig

    windowed = EarlyStoppingConfig(monitor="test_accuracy", window=10, threshold=1e-4)
    assert windowed.patience is None
    assert EarlyStoppingConfig(monitor="val_loss").patience == 5
    assert EarlyStoppingConfig(monitor="test_accuracy", window=10, patience=7).patience == 7


@pytest.mark.parametrize("window", [None, 3])
def test_early_stopping_defaults_are_the_configs(window: int | None) -> None:
    """A callback built in Python stops like the same section in YAML (patience 5 without a
    window and off with one, restore_best on, threshold 0)."""
    from trainlab.config import EarlyStoppingConfig

    config = EarlyStoppingConfig(window=window)
    stopper = EarlyStopping(window=window)
    for name in EarlyStoppingConfig.model_fields:
        assert getattr(stopper, name) == getattr(config, name), name
    assert (stopper.patience, stopper.restore_best) == ((5, True) if window is None else (None, True))


def test_reduce_on_plateau_defaults_are_the_configs() -> None:
    from trainlab.config import ReduceOnPlateauConfig

    config, plateau = ReduceOnPlateauConfig(), ReduceLROnPlateau()
    for name in ReduceOnPlateauConfig.model_fields:
        assert getattr(plateau, name) == getattr(config, name), name


EARLY_STOPPING_FIELDS = ("monitor", "mode", "patience", "min_delta", "restore_best", "window", "threshold",
                         "start_after")
PLATEAU_FIELDS = ("monitor", "mode", "factor", "patience", "min_delta", "threshold_mode", "cooldown", "min_lr")


@pytest.mark.parametrize("built_from", ["python", "yaml"])
def test_early_stopping_documented_defaults(built_from: str) -> None:
    """The documented defaults written out (the tests above only compare the callback with the
    config it takes them from): changing one must change this test."""
    from trainlab.config import EarlyStoppingConfig

    def build(**given: object) -> object:
        return EarlyStopping(**given) if built_from == "python" else EarlyStoppingConfig(**given)

    pinned = tuple(getattr(build(), name) for name in EARLY_STOPPING_FIELDS)
    assert pinned == ("val_loss", "min", 5, 0.0, True, None, 0.0, 0)
    assert build(window=10).patience is None  # a window alone: the patience rule off
    assert build(monitor="val_accuracy").mode == "max"  # mode auto, not a fixed "min"


@pytest.mark.parametrize("built_from", ["python", "yaml"])
def test_reduce_on_plateau_documented_defaults(built_from: str) -> None:
    from trainlab.config import ReduceOnPlateauConfig

    plateau = ReduceLROnPlateau() if built_from == "python" else ReduceOnPlateauConfig()
    pinned = tuple(getattr(plateau, name) for name in PLATEAU_FIELDS)
    assert pinned == ("val_loss", "min", 0.1, 10, 1e-4, "abs", 0, 0.0)
    accuracy = (ReduceLROnPlateau(monitor="val_accuracy") if built_from == "python"
                else ReduceOnPlateauConfig(monitor="val_accuracy"))
    assert accuracy.mode == "max"


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("val_loss", "min"), ("val_accuracy", "max"), ("train_seconds", "min"), ("val_top5", "max"),
     ("images_per_second", "max")],
)
def test_one_auto_mode_rule_everywhere(monitor: str, mode: str) -> None:
    """auto is min for losses and times, max otherwise, in the config, both callbacks and a
    study's objective direction alike."""
    from trainlab.config import EarlyStoppingConfig, resolve_mode
    from trainlab.studies.spec import default_direction

    assert resolve_mode(monitor, "auto") == mode
    assert EarlyStopping(monitor=monitor).mode == mode
    assert ReduceLROnPlateau(monitor=monitor).mode == mode
    assert default_direction(monitor) == {"min": "minimize", "max": "maximize"}[mode]
    if monitor in ("val_loss", "val_accuracy"):
        assert EarlyStoppingConfig(monitor=monitor).mode == mode
    assert resolve_mode(monitor, "max" if mode == "min" else "min") != mode  # explicit modes stay
    with pytest.raises(ValueError, match="mode must be"):
        resolve_mode(monitor, "best")
