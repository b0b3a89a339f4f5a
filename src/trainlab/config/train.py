"""The ``train`` section: run length, batching, evaluation, clipping and callbacks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import Monitor, PositiveInt, StrictModel, field_error, name_or, resolve_mode

Mode = Literal["min", "max", "auto"]


class EarlyStoppingConfig(StrictModel):
    """Stop when the monitored metric stops improving (Keras' EarlyStopping).

    An evaluation is "bad" when it improves on the best value by less than ``min_delta``;
    with ``window``, when it improves on the mean of the previous ``window`` values by less
    than ``threshold``. Training stops after more than ``patience`` bad evaluations in a row.
    """

    monitor: Monitor = Field(
        "val_loss", description="Metric to watch: {train,val,test}_{loss,accuracy}."
    )
    mode: Mode = Field(
        "auto", description="min, max, or auto (max for accuracies, min for losses)."
    )
    patience: int = Field(5, ge=0, description="Bad evaluations tolerated before stopping.")
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
        return self


class ReduceOnPlateauConfig(StrictModel):
    """Multiply the learning rate by ``factor`` when the monitored metric stops improving."""

    monitor: Monitor = Field(
        "val_loss", description="Metric to watch: {train,val,test}_{loss,accuracy}."
    )
    mode: Mode = Field(
        "auto", description="min, max, or auto (max for accuracies, min for losses)."
    )
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="New lr = lr * factor.")
    patience: int = Field(10, ge=0, description="Bad evaluations tolerated before reducing.")
    min_delta: float = Field(1e-4, ge=0.0, description="Smallest change that counts as better.")
    min_lr: float = Field(0.0, ge=0.0, description="Never reduce below this.")
    cooldown: int = Field(
        0, ge=0, description="Evaluations to wait after a reduction before counting again."
    )

    @model_validator(mode="after")
    def _resolve_mode(self) -> ReduceOnPlateauConfig:
        self.mode = resolve_mode(self.monitor, self.mode)
        return self


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
        None, description="Save a checkpoint every this many evaluations; null = at the end only."
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
    tta: bool = Field(
        False, description="torch: test-time augmentation (average with the horizontal flip) at evaluation."
    )

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if self.epochs is not None and self.steps is not None:
            raise field_error(
                "steps", f"give either epochs ({self.epochs}) or steps, not both", self.steps
            )
        return self  # RunConfig fills the length (epochs 10, or from schedule.cycles)
