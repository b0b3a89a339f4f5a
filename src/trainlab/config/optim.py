"""The ``loss``, ``optimizer``, ``schedule`` and ``regularization`` sections.

Fields that only some types use default to null and are filled with that type's default
during validation (so a resolved config states every value it ran with); a field given
for a type that does not use it is an error rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ._base import PositiveInt, Probability, StrictModel, field_error

OptimizerType = Literal[
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "adam",
    "adamw",
    "adagrad",
    "adadelta",
    "adamax",
    "nadam",
    "muon",
]
ScheduleType = Literal[
    "constant",
    "step",
    "exponential",
    "inverse_time",
    "cyclical",
    "one_cycle",
    "cosine",
    "warmup_linear",
]
PositiveFloat = Annotated[float, Field(gt=0.0)]


class LossConfig(StrictModel):
    """The training loss (softmax cross-entropy, or squared error against one-hot targets).

    ``squared`` costs ``0.5 * sum_c (z_c - onehot_c)^2`` per example on the raw scores z
    (gradient ``z - onehot``); with ``half: false`` it costs ``sum_c (z_c - onehot_c)^2``
    (gradient ``2 (z - onehot)``), the "mean sum of squared errors" of reports that write
    the loss without the 1/2. ``reduction`` then averages or sums over the batch.
    """

    type: Literal["cross_entropy", "squared"] = Field(
        "cross_entropy", description="cross_entropy (softmax) or squared (MSE on one-hot targets)."
    )
    label_smoothing: Probability = Field(
        0.0, description="Mass spread uniformly over the other classes."
    )
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="Average or sum the loss over a batch."
    )
    half: bool = Field(
        True,
        description="squared: per example 0.5 * sum_c (z - onehot)^2 (true) or sum_c (z - onehot)^2 "
        "without the 1/2 (false; gradient 2 (z - onehot)). Only squared has it.",
    )

    @model_validator(mode="after")
    def _check_half(self) -> LossConfig:
        if not self.half and self.type != "squared":
            raise field_error("half", f"only loss type 'squared' has a 1/2 factor to drop, not '{self.type}'",
                              self.half)
        return self


_LR = {
    "sgd": 0.01,
    "momentum": 0.01,
    "nesterov": 0.01,
    "rmsprop": 1e-3,
    "adam": 1e-3,
    "adamw": 1e-3,
    "adagrad": 1e-2,
    "adadelta": 1.0,
    "adamax": 2e-3,
    "nadam": 2e-3,
    "muon": 0.02,
}
# The value each type gets when the field is not given; a type missing from a field's table
# does not use that field.
_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "momentum": {"momentum": 0.9, "nesterov": 0.9, "rmsprop": 0.0, "muon": 0.95},
    "betas": {t: (0.9, 0.999) for t in ("adam", "adamw", "adamax", "nadam")},
    "eps": {
        "rmsprop": 1e-8,
        "adam": 1e-8,
        "adamw": 1e-8,
        "adamax": 1e-8,
        "nadam": 1e-8,
        "adagrad": 1e-10,
        "adadelta": 1e-6,
    },
    "rho": {"adadelta": 0.9},
    "alpha": {"rmsprop": 0.99},
    "nesterov_momentum": {"muon": True},
    "ns_steps": {"muon": 5},
    "normalize_weights": {"muon": False},
}
#: The optimizer fields that validation fills per type, and muon's ``other`` optimizer. A
#: change of ``optimizer.type`` resets them: see ``config.overrides``.
OPTIMIZER_TYPE_FIELDS = (*_OPTIMIZER_DEFAULTS, "other")


class OptimizerConfig(StrictModel):
    """The update rule. Defaults follow PyTorch, except the learning rates (the ``lr`` field
    lists each type's; rmsprop's 1e-3 is Keras', PyTorch's is 1e-2).

    ``muon`` (Jordan et al. 2024) updates every conv kernel and hidden weight matrix with
    momentum followed by a Newton-Schulz orthogonalisation of the update; the output
    layer, biases and batch-norm parameters are trained by ``other``, another optimizer
    section. The schedule scales both: each group's lr is its own base lr times
    ``schedule(step) / optimizer.lr``.
    """

    type: OptimizerType = Field(
        "sgd",
        description="sgd (plain), momentum, nesterov, rmsprop, adam, adamw, adagrad, adadelta, adamax, nadam, "
        "muon (torch only: Muon for conv kernels and hidden weight matrices, optimizer.other for the rest).",
    )
    lr: PositiveFloat | None = Field(
        None,
        description="Learning rate (default per type: 0.01 for sgd/momentum/nesterov/adagrad, 1e-3 for "
        "adam/adamw/rmsprop, 2e-3 for adamax/nadam, 1.0 for adadelta, 0.02 for muon).",
    )
    momentum: Probability | None = Field(
        None,
        description="momentum/nesterov: momentum coefficient mu (default 0.9). Both engines update "
        "v = mu*v - lr*g; p += v (nesterov: p += mu*v - lr*g with the new v), as Keras and CS231n; "
        "PyTorch's own SGD (buf = mu*buf + g; p -= lr*buf) is the same only at a constant lr. "
        "rmsprop (default 0.0 = none): buf = mu*buf + g/(sqrt(v)+eps); p -= lr*buf, PyTorch's form "
        "(Keras' RMSprop(momentum=mu) is the same at a constant lr). "
        "muon: buf = mu*buf + g (default 0.95).",
    )
    betas: tuple[Probability, Probability] | None = Field(
        None, description="adam/adamw/adamax/nadam: [beta1, beta2] (default [0.9, 0.999])."
    )
    eps: PositiveFloat | None = Field(
        None, description="Adaptive types: term added to the denominator."
    )
    rho: Probability | None = Field(
        None, description="adadelta: decay of the squared-gradient average (default 0.9)."
    )
    alpha: Probability | None = Field(
        None, description="rmsprop: decay of the squared-gradient average (default 0.99)."
    )
    weight_decay: float | None = Field(
        None,
        ge=0.0,
        description="Weight decay: decoupled for adamw (default 0.01) and muon (p -= lr*wd*p, default 0), "
        "an L2 term added to the gradient for the others (default 0).",
    )
    bias_lr_scale: PositiveFloat = Field(
        1.0,
        description="torch: multiply the lr of biases and batch-norm parameters (every 1-D parameter) by "
        "this; their weight_decay is divided by it, so the shrinkage per step (lr * wd) stays that of the "
        "weights (airbench's bias_scaler). With muon, set it in optimizer.other.",
    )
    nesterov_momentum: bool | None = Field(
        None, description="muon: Nesterov momentum, g + mu*buf instead of buf (default true)."
    )
    ns_steps: PositiveInt | None = Field(
        None, description="muon: Newton-Schulz iterations orthogonalising each update (default 5)."
    )
    normalize_weights: bool | None = Field(
        None,
        description="muon: before each update, rescale each kernel to norm sqrt(output channels) "
        "(airbench94_muon; default false).",
    )
    other: OptimizerConfig | None = Field(
        None,
        description="muon: the optimizer of the output layer, biases and batch-norm parameters "
        "(default {type: adamw}); its lr is its own, scaled by the same schedule.",
    )

    @model_validator(mode="after")
    def _fill_per_type(self) -> OptimizerConfig:
        for name, table in _OPTIMIZER_DEFAULTS.items():
            value = getattr(self, name)
            if self.type not in table:
                if value is not None:
                    users = ", ".join(table)
                    raise field_error(
                        name, f"not used by optimizer type '{self.type}' (used by: {users})", value
                    )
            elif value is None:
                setattr(self, name, table[self.type])
        if self.type == "muon":
            if self.other is None:
                self.other = OptimizerConfig(type="adamw")
            if self.other.type == "muon":
                raise field_error("other.type", "muon cannot be its own other optimizer", "muon")
            if self.bias_lr_scale != 1.0:
                raise field_error(
                    "bias_lr_scale", "muon updates no biases; set optimizer.other.bias_lr_scale", self.bias_lr_scale
                )
        elif self.other is not None:
            raise field_error("other", f"only used by optimizer type 'muon', not '{self.type}'", "...")
        if self.lr is None:
            self.lr = _LR[self.type]
        if self.weight_decay is None:
            self.weight_decay = 0.01 if self.type == "adamw" else 0.0
        return self


# For each schedule type: the fields it uses, with the default filled in (None = required,
# _OPTIONAL = may stay null; one_cycle's min_lr is derived from max_lr).
_OPTIONAL = "optional"
_SCHEDULE_FIELDS: dict[str, dict[str, Any]] = {
    "constant": {"warmup_steps": 0, "start_lr": _OPTIONAL},
    "step": {"step_size": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "inverse_time": {"decay": None},
    "cyclical": {"min_lr": None, "max_lr": None, "step_size": None, "cycles": _OPTIONAL},
    "one_cycle": {"max_lr": None, "pct_start": 0.3, "min_lr": _OPTIONAL},
    "cosine": {"min_lr": 0.0, "warmup_steps": 0, "start_lr": _OPTIONAL},
    "warmup_linear": {"warmup_steps": None, "min_lr": 0.0, "start_lr": _OPTIONAL},
}
_STEP_SCHEDULES = ("inverse_time", "cyclical", "one_cycle", "warmup_linear")
#: The schedule fields that only some types use, in the order validation checks them. A
#: change of ``schedule.type`` resets them (and ``per``): see ``config.overrides``.
SCHEDULE_TYPE_FIELDS = (
    "step_size",
    "gamma",
    "min_lr",
    "max_lr",
    "cycles",
    "warmup_steps",
    "pct_start",
    "start_lr",
    "decay",
)


class ScheduleConfig(StrictModel):
    """How the learning rate changes over training.

    constant: optimizer.lr (after optional linear warmup). step: lr * gamma every step_size.
    exponential: lr * gamma each `per` (gamma 0.95 = 5 % less each epoch). inverse_time:
    lr / (1 + decay * t), t the optimizer steps taken so far (per: step, the default) or the
    epochs completed (per: epoch): Keras' legacy ``SGD(lr, decay=...)``. cyclical: triangular
    between min_lr and max_lr, step_size per half cycle (Smith 2017). one_cycle: up from
    max_lr/25 to max_lr over pct_start of training, then down to min_lr. cosine: lr down to
    min_lr over training. warmup_linear: linear up to lr over warmup_steps, then down to min_lr.
    The warmups of constant, cosine and warmup_linear start from start_lr (default 0).
    """

    type: ScheduleType = Field(
        "constant",
        description="constant, step, exponential, inverse_time, cyclical, one_cycle, cosine, warmup_linear.",
    )
    per: Literal["step", "epoch"] | None = Field(
        None,
        description="Unit of step_size, of exponential decay and of inverse_time's t: optimizer steps or "
        "epochs (default step for inverse_time/cyclical/one_cycle/warmup_linear, else epoch).",
    )
    step_size: PositiveInt | None = Field(
        None, description="step: decay period; cyclical: half-cycle length."
    )
    gamma: float | None = Field(
        None,
        gt=0.0,
        description="step/exponential: factor per step_size/unit (step default 0.1); below 1 it "
        "decays, above 1 it grows (the lr range test of `trainlab lr-find` uses that).",
    )
    min_lr: float | None = Field(
        None, ge=0.0, description="cyclical: lower bound; cosine/warmup_linear/one_cycle: final lr."
    )
    max_lr: PositiveFloat | None = Field(
        None, description="cyclical: upper bound; one_cycle: peak lr."
    )
    cycles: PositiveInt | None = Field(
        None,
        description="cyclical: train for exactly this many cycles (sets train.steps or train.epochs).",
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="constant/cosine/warmup_linear: linear warmup steps."
    )
    start_lr: float | None = Field(
        None,
        ge=0.0,
        description="constant/cosine/warmup_linear: lr at step 0, where the warmup starts (default 0).",
    )
    pct_start: float | None = Field(
        None, gt=0.0, lt=1.0, description="one_cycle: fraction of training spent rising."
    )
    decay: PositiveFloat | None = Field(
        None,
        description="inverse_time (required): lr_t = optimizer.lr / (1 + decay * t), t = steps taken so far "
        "(per: step) or epochs completed (per: epoch). Keras' legacy SGD(decay=1e-3) is decay: 0.001 with "
        "per: step (it decays every iteration, not every epoch).",
    )

    @model_validator(mode="after")
    def _fill_per_type(self) -> ScheduleConfig:
        fields = _SCHEDULE_FIELDS[self.type]
        for name in SCHEDULE_TYPE_FIELDS:
            value = getattr(self, name)
            if name not in fields:
                if value is not None:
                    users = ", ".join(t for t, f in _SCHEDULE_FIELDS.items() if name in f)
                    raise field_error(
                        name, f"not used by schedule type '{self.type}' (used by: {users})", value
                    )
                continue
            default = fields[name]
            if value is None and default is None:
                raise field_error(name, f"schedule type '{self.type}' needs {name}")
            if value is None and isinstance(default, float | int):
                setattr(self, name, default)
        if self.type == "one_cycle" and self.min_lr is None:
            self.min_lr = self.max_lr / 25 / 1e4  # PyTorch OneCycleLR's final lr
        if self.type == "cyclical" and self.min_lr >= self.max_lr:
            raise field_error("min_lr", f"must be below max_lr ({self.max_lr})", self.min_lr)
        if self.type == "one_cycle" and self.min_lr >= self.max_lr:
            raise field_error("min_lr", f"must be below max_lr ({self.max_lr})", self.min_lr)
        if self.per is None:
            self.per = "step" if self.type in _STEP_SCHEDULES else "epoch"
        return self

    def cycle_length(self) -> int | None:
        """Length of ``cycles`` full cycles in units of ``per`` (cyclical only), else None."""
        if self.type == "cyclical" and self.cycles:
            return 2 * self.step_size * self.cycles
        return None


class RegularizationConfig(StrictModel):
    """Penalties added to the loss, l1 * sum|W| + l2 * sum W^2 (Keras' kernel_regularizer),
    and a shrink of the weights at every step.

    Three ways to decay weights, not the same thing: ``l2`` is a loss term, so its gradient
    ``2 * l2 * W`` is scaled by the lr and goes through the optimizer (Adam rescales it);
    ``optimizer.weight_decay`` is PyTorch's (added to the gradient, or decoupled
    ``lr * wd * W`` for adamw); ``shrink`` takes ``shrink * W`` off at every step whatever
    the lr: ``W = W - lr * dW - shrink * W`` for SGD, as in hand-written update rules.
    """

    l1: float = Field(0.0, ge=0.0, description="L1 penalty strength (lambda).")
    l2: float = Field(
        0.0,
        ge=0.0,
        description="L2 penalty strength (lambda): l2 * sum of squared weights added to the loss; its "
        "gradient 2*l2*W is scaled by the lr (and by the optimizer).",
    )
    shrink: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Multiply every weight that apply_to covers by (1 - shrink) at each step, before the "
        "optimizer's update, not scaled by the lr: W = W - lr*dW - shrink*W with SGD (a decay of "
        "shrink*W per step, unlike l2 and optimizer.weight_decay, which the lr scales). Default 0 (off).",
    )
    apply_to: Literal["weights", "all"] = Field(
        "weights",
        description="weights: kernels only (no biases, no batch-norm parameters); all: every parameter. "
        "For l1, l2 and shrink.",
    )
    in_eval_loss: bool = Field(
        False,
        description="Add the l1/l2 penalty of the evaluated weights to the evaluated losses too "
        "(val, test, the final train pass), "
        "as Keras reports val_loss (its kernel regularizers' losses are part of every loss it "
        "logs), so early stopping and plateau schedules on val_loss watch Keras' quantity. The "
        "training loss always includes the penalty. Default false: the data loss only.",
    )
