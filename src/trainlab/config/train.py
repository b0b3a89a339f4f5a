"""The ``train`` section: run length, batching, evaluation, clipping and callbacks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import Monitor, PositiveInt, StrictModel, field_error, name_or, resolve_mode

Mode = Literal["min", "max", "auto"]

#: Early stopping's patience when neither ``patience`` nor ``window`` is given.
DEFAULT_PATIENCE = 5


class EarlyStoppingConfig(StrictModel):
    """Stop when the monitored metric stops improving (Keras' EarlyStopping).

    An evaluation is "bad" when it improves on the best value by no more than
    ``min_delta``; training stops at the ``patience``-th bad evaluation in a row (Keras'
    rule; at the first with ``patience`` 0). With ``window``, it also stops at the first
    evaluation that improves on the mean of the previous ``window`` values by less than
    ``threshold``; the patience rule is then off unless ``patience`` is given. These are
    also the defaults of :class:`trainlab.callbacks.EarlyStopping`.
    """

    monitor: Monitor = Field(
        "val_loss", description="Metric to watch: {train,val,test}_{loss,accuracy}."
    )
    mode: Mode = Field(
        "auto", description="min, max, or auto (max for accuracies, min for losses)."
    )
    patience: int | None = Field(
        None,
        ge=0,
        description=f"Stop after this many evaluations in a row without improvement (default "
        f"{DEFAULT_PATIENCE}; with window: off unless given).",
    )
    min_delta: float = Field(
        0.0, ge=0.0, description="Smallest change over the best value that counts as better."
    )
    restore_best: bool = Field(
        True, description="Restore the weights of the best evaluation at the end."
    )
    window: PositiveInt | None = Field(
        None,
        description="Moving-window rule: compare with the mean of the last `window` values instead of the best.",
    )
    threshold: float = Field(
        0.0, description="Moving-window rule: smallest improvement over the window mean."
    )
    start_after: int = Field(0, ge=0, description="Never stop before this many optimizer steps.")

    @model_validator(mode="after")
    def _check(self) -> EarlyStoppingConfig:
        if self.window is None and self.threshold:
            raise field_error(
                "threshold", "only used with window (the moving-window rule)", self.threshold
            )
        self.mode = resolve_mode(self.monitor, self.mode)
        if self.patience is None and self.window is None:
            self.patience = DEFAULT_PATIENCE
        return self


class ReduceOnPlateauConfig(StrictModel):
    """Multiply the learning rate by ``factor`` when the monitored metric stops improving.

    These are also the defaults of :class:`trainlab.callbacks.ReduceLROnPlateau`.
    """

    monitor: Monitor = Field(
        "val_loss", description="Metric to watch: {train,val,test}_{loss,accuracy}."
    )
    mode: Mode = Field(
        "auto", description="min, max, or auto (max for accuracies, min for losses)."
    )
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="New lr = lr * factor.")
    patience: int = Field(10, ge=0, description="Bad evaluations tolerated before reducing.")
    min_delta: float = Field(1e-4, ge=0.0, description="Smallest change that counts as better.")
    threshold_mode: Literal["abs", "rel"] = Field(
        "abs",
        description="abs: better by more than min_delta (Keras); rel: better by more than min_delta times "
        "the best value (PyTorch's ReduceLROnPlateau default, threshold_mode='rel').",
    )
    min_lr: float = Field(0.0, ge=0.0, description="Never reduce below this.")
    cooldown: int = Field(
        0,
        ge=0,
        description="After a reduction, the next cooldown - 1 evaluations do not count toward patience "
        "(Keras's rule, so 1 acts as 0; PyTorch's cooldown n equals this cooldown n + 1).",
    )

    @model_validator(mode="after")
    def _resolve_mode(self) -> ReduceOnPlateauConfig:
        self.mode = resolve_mode(self.monitor, self.mode)
        return self


class WeightAverageConfig(StrictModel):
    """A running average of the weights (``train.ema``, or ``train.lookahead``).

    Every ``every`` steps from epoch ``start_epoch`` on, ``avg = d * avg + (1 - d) * w``
    over every floating-point tensor of the model's state (weights and batch-norm
    statistics), with ``d = decay * (step / total_steps) ** ramp_power`` (so with a
    ramp the average follows the weights early and averages strongly at the end). The
    first such step copies the weights. ``ema``: evaluations, the final metrics,
    predictions and ``trainlab evaluate`` use the average; training continues from the
    raw weights. ``lookahead``: after every update, and at the end of every epoch, the
    weights are set to the average (airbench94's lookahead).
    """

    decay: float = Field(0.999, ge=0.0, lt=1.0, description="Decay d per update (0.95**5 for airbench94).")
    every: PositiveInt = Field(1, description="Update the average every this many optimizer steps.")
    ramp_power: float = Field(
        0.0, ge=0.0, description="Use decay * (step / total_steps) ** ramp_power; 0 = a constant decay."
    )
    start_epoch: int = Field(0, ge=0, description="First epoch (0-based) whose steps update the average.")


TtaMode = Literal["none", "flip", "translate", "flip_translate"]


class TrainConfig(StrictModel):
    """Run length, batching, evaluation and callbacks."""

    epochs: PositiveInt | None = Field(
        None, description="Passes over the training split (default 10 if steps is not given)."
    )
    steps: PositiveInt | None = Field(
        None, description="Optimizer steps to train for, instead of epochs."
    )
    batch_size: name_or(Literal["full"], PositiveInt) = Field(  # type: ignore[valid-type]
        32, description="Examples per step, or 'full' for full-batch gradient descent."
    )
    shuffle: bool = Field(True, description="Reshuffle the training split every epoch.")
    eval_every: PositiveInt | None = Field(
        None, description="Evaluate every this many steps; null = once per epoch."
    )
    eval_on_test: bool = Field(
        False,
        description="Also evaluate on the test split at every evaluation (to plot or monitor it).",
    )
    final_test_eval: bool = Field(
        True,
        description="At the end, evaluate the test split (test_loss, test_accuracy, and the saved predictions). "
        "false never evaluates the test split at all, so that choosing hyperparameters on the validation split "
        "cannot peek at it (the tuning files under configs/fast/tuning/ set it); the predictions are then the "
        "validation split's.",
    )
    final_train_eval: bool = Field(
        True,
        description="At the end, evaluate the whole training split once more (eval mode, the weights "
        "evaluations use) for the summary's final_train_loss and final_train_accuracy; false leaves those "
        "keys out and saves that pass (a fast recipe's clock).",
    )
    log_steps: PositiveInt | None = Field(
        None,
        description="Write the training loss of every Nth optimizer step (with its lr and elapsed "
        "seconds) to steps.csv, for a per-step loss curve; null = off.",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Early stopping; null = off."
    )
    reduce_on_plateau: ReduceOnPlateauConfig | None = Field(
        None, description="Reduce lr on plateau; null = off."
    )
    grad_clip_value: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="Clip every gradient element to [-v, v]."
    )
    grad_clip_norm: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="Rescale gradients so that their global L2 norm is at most this."
    )
    checkpoint_every: PositiveInt | None = Field(
        None, description="Save a checkpoint every this many evaluations and at the end; null = every evaluation."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="torch: where to train; auto picks cuda, then mps, then cpu."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="torch: fp32, bf16 autocast (CPUs with bf16 instructions, GPUs), or fp16 with a "
        "grad scaler (CUDA only). The numpy engine uses model.dtype instead.",
    )
    compile: bool = Field(False, description="torch: compile the model with torch.compile.")
    tta: name_or(TtaMode, bool) = Field(  # type: ignore[valid-type]
        False,
        description="torch: test-time augmentation of the final evaluation and predictions. false/none: off; "
        "true/flip: average the logits of each image and its mirror image; translate: the image (1/2) and "
        "its one-pixel shifts up-left and down-right (reflect padding, 1/4 each); flip_translate: those "
        "three and their mirror images (airbench's six views, weights 1/4, 1/4 and 1/8 each). flip is "
        "stored as true and none as false.",
    )
    tta_below: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="torch: selective TTA. Only the images whose plain prediction's top softmax probability is "
        "below this get the other views of train.tta (averaged with the plain view at the mode's weights); the "
        "others keep their plain logits, saving those views' forward passes. null: every image.",
    )
    ema: WeightAverageConfig | None = Field(
        None, description="torch: evaluate with an exponential moving average of the weights; null = off."
    )
    lookahead: WeightAverageConfig | None = Field(
        None, description="torch: pull the weights back to their running average (lookahead); null = off."
    )

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if self.epochs is not None and self.steps is not None:
            raise field_error(
                "steps", f"give either epochs ({self.epochs}) or steps, not both: set the other to null "
                "(e.g. --set train.epochs=null with --set train.steps=N)", self.steps
            )
        if self.ema is not None and self.lookahead is not None:
            raise field_error("lookahead", "give either ema or lookahead, not both", "...")
        if self.tta == "none":
            self.tta = False
        elif self.tta == "flip":
            self.tta = True
        if self.eval_on_test and not self.final_test_eval:
            raise field_error("final_test_eval", "false keeps the test split out of the run, but train.eval_on_test "
                              "evaluates it at every evaluation: set one of them the other way", self.final_test_eval)
        if self.tta_below is not None and self.tta is False:
            raise field_error("tta_below", "selects the images that get train.tta's views, so it needs train.tta "
                              "(true, translate or flip_translate)", self.tta_below)
        return self  # RunConfig fills the length (epochs 10, or from schedule.cycles)
