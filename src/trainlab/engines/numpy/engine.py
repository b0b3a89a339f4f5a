"""The NumPy engine: trains linear classifiers and MLPs written from scratch.

The shared loop (:class:`trainlab.engines.loop.TrainingLoop`) owns the run: its length,
when to draw the data order and to evaluate, the metrics rows, the final figures and
predictions, the callbacks, checkpoints, resume and progress. :class:`NumpyTraining`
supplies only the NumPy parts, readable top to bottom: one step (gather a batch, forward,
loss, backward, penalties, clip, shrink (``regularization.shrink``), update), the
evaluation of a split, its state arrays and their loader. Its checkpoint
(:mod:`.checkpoint`) adds the weights, the optimizer state, the random generators and the
epoch's permutation to the loop's part, so a resumed run reproduces an uninterrupted one
bit for bit on CPU. One fast path: where the update stays the same, SGD and momentum fold
the weights' update into the GEMM of their gradient (``fused.py``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.config.engine_support import NUMPY_MODELS, NUMPY_OPTIMIZERS
from trainlab.engines.base import FitContext
from trainlab.engines.cpu_memory import retain_freed_memory
from trainlab.engines.loop import TrainingLoop
from trainlab.engines.numpy.checkpoint import load_training, save_training
from trainlab.engines.numpy.fused import plan_fused_updates
from trainlab.engines.numpy.losses import (
    accuracy,
    l1_penalty,
    l2_penalty,
    shrink_weights,
    softmax,
    softmax_cross_entropy,
    squared_loss,
)
from trainlab.engines.numpy.model import Sequential, build_mlp
from trainlab.engines.numpy.monitors import layer_monitors
from trainlab.engines.numpy.optim import OPTIMIZERS, Optimizer, make_optimizer
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.data import PreparedData

# What this engine trains is declared once, in config (which may not import engines); the
# registry of update rules must be exactly that list, or config would accept a rule this
# engine lacks (or refuse one it has).
SUPPORTED_MODELS = NUMPY_MODELS
SUPPORTED_OPTIMIZERS = NUMPY_OPTIMIZERS
if tuple(OPTIMIZERS) != SUPPORTED_OPTIMIZERS:
    raise ImportError(
        f"engines/numpy/optim.py OPTIMIZERS ({', '.join(OPTIMIZERS)}) differ from "
        f"config/engine_support.py NUMPY_OPTIMIZERS ({', '.join(SUPPORTED_OPTIMIZERS)})"
    )
EVAL_CHUNK = 4096


def build_model(config: RunConfig, input_dim: int, num_classes: int, rng: np.random.Generator) -> Sequential:
    """The config's linear classifier or MLP, initialised from ``rng``."""
    m = config.model
    init = m.init
    return build_mlp(
        input_dim,
        num_classes,
        list(m.hidden) if m.type == "mlp" else [],
        activation=m.activation,
        batch_norm=m.batch_norm,
        bn_position=m.bn_position,
        dropout=m.dropout if m.type == "mlp" else 0.0,
        init_scheme=init.scheme,
        sigma=init.sigma,
        scale=init.scale,
        value=init.value,
        bias_init=init.bias,
        rng=rng,
        dtype=np.dtype(m.dtype),
        leaky_slope=m.leaky_slope,
        bn_momentum=m.bn_momentum,
        bn_eps=m.bn_eps,
        activate_output=m.activate_output,
    )


def build_optimizer(config: RunConfig) -> Optimizer:
    """The config's update rule with the options it uses."""
    o = config.optimizer
    options: dict[str, float] = {"weight_decay": float(o.weight_decay or 0.0)}
    if o.type in ("momentum", "nesterov"):
        options["momentum"] = float(o.momentum)
    if o.type == "rmsprop":
        options.update(alpha=float(o.alpha), eps=float(o.eps), momentum=float(o.momentum or 0.0))
    if o.type == "adagrad":
        options["eps"] = float(o.eps)
    if o.type in ("adam", "adamw"):
        beta1, beta2 = o.betas
        options.update(beta1=float(beta1), beta2=float(beta2), eps=float(o.eps))
    return make_optimizer(o.type, **options)


def make_loss(config: RunConfig) -> Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
    """``loss(logits, y) -> (value, dlogits)`` for the config's loss."""
    loss = config.loss
    if loss.type == "squared":
        return lambda logits, y: squared_loss(logits, y, reduction=loss.reduction, half=loss.half)
    return lambda logits, y: softmax_cross_entropy(
        logits, y, reduction=loss.reduction, label_smoothing=loss.label_smoothing
    )


def blas_threads() -> int:
    """Threads NumPy's BLAS uses: its environment setting, else every core this process may use."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0))


def _flat(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    features = int(np.prod(x.shape[1:]))  # explicit: reshape(-1) fails on an empty split
    return np.ascontiguousarray(x.reshape(x.shape[0], features), dtype=dtype)  # (N, D)


class NumpyEngine:
    """Trains ``model.type`` linear or mlp configs with the from-scratch NumPy layers."""

    name = "numpy"

    def check_config(self, config: RunConfig) -> None:
        """Refuse what the NumPy engine has no implementation of."""
        if config.model.type not in SUPPORTED_MODELS:
            raise ConfigError(
                f"model.type: engine 'numpy' has no {config.model.type!r} model "
                f"(it has {', '.join(SUPPORTED_MODELS)}); use engine: torch"
            )
        if config.optimizer.type not in SUPPORTED_OPTIMIZERS:
            raise ConfigError(
                f"optimizer.type: engine 'numpy' has no {config.optimizer.type!r} "
                f"(it has {', '.join(SUPPORTED_OPTIMIZERS)}); use engine: torch"
            )

    def fit(self, config: RunConfig, data: PreparedData, context: FitContext) -> dict[str, Any]:
        """Train (or resume) and return the summary figures; see :class:`Engine`."""
        return NumpyTraining(config, data, context).run()


class NumpyTraining(TrainingLoop):
    """One training run of the NumPy engine: its state and the loop's engine hooks."""

    def __init__(self, config: RunConfig, data: PreparedData, context: FitContext) -> None:
        super().__init__(config, data, context)
        retain_freed_memory()  # large per-step temporaries reuse the last step's pages
        dtype = np.dtype(config.model.dtype)
        self.x_train, self.y_train = _flat(data.x_train, dtype), np.asarray(data.y_train)
        self.x_val, self.y_val = _flat(data.x_val, dtype), np.asarray(data.y_val)
        # has_test_images (the loop's) is False under train.final_test_eval: false: nothing to copy then
        self.x_test = _flat(data.x_test, dtype) if self.has_test_images else None
        self.y_test = np.asarray(data.y_test) if self.x_test is not None and data.y_test is not None else None
        n = len(self.y_train)
        train = config.train
        # Independent streams: initialisation (and dropout masks), data order.
        self.init_rng = np.random.default_rng([config.seed, 0])
        self.data_rng = np.random.default_rng([config.seed, 1])
        self.model = build_model(config, self.x_train.shape[1], data.num_classes, self.init_rng)
        self.optimizer = build_optimizer(config)
        reg = config.regularization
        self.fused = plan_fused_updates(
            self.model, self.optimizer, dtype=dtype, l1=reg.l1 or 0.0, l2=reg.l2 or 0.0,
            clipping=train.grad_clip_value is not None or train.grad_clip_norm is not None,
            shrink=reg.shrink,
        )
        self.loss_fn = make_loss(config)
        self.permutation = np.arange(n)
        self.checkpoint_path: Path = context.run_dir.checkpoint_path(".npz")
        # A full batch is the whole training set in any order: its gradient does not depend on
        # the permutation, so the step reads x_train in place instead of copying it every step.
        self.full_batch = self.batch_size == n
        self.x_batch = (
            self.x_train if self.full_batch
            else np.empty((self.batch_size, self.x_train.shape[1]), dtype=dtype)  # (B, D)
        )
        self.last_loss = self.last_accuracy = 0.0
        self.interval_loss = self.interval_accuracy = 0.0
        self.interval_steps = 0

    # -- one step -------------------------------------------------------------------------
    def penalties(self, add_to_grads: bool) -> float:
        """L1/L2 penalty value; with ``add_to_grads`` their gradients are added in place
        (for fused weights, L2's gradient is part of their update: only its value here)."""
        reg = self.config.regularization
        params = self.model.parameters()
        grads = self.model.gradients() if add_to_grads else None
        value = 0.0
        if grads is not None and self.fused.keys:
            fused = [params.pop(key) for key in self.fused.keys]  # Linear weights (never L1)
            if reg.l2:
                value += reg.l2 * sum(float(np.vdot(p, p)) for p in fused)
        if reg.l2:
            value += l2_penalty(params, reg.l2, apply_to=reg.apply_to, grads=grads)[0]
        if reg.l1:
            value += l1_penalty(params, reg.l1, apply_to=reg.apply_to, grads=grads)[0]
        return value

    def clip_gradients(self) -> None:
        train = self.config.train
        grads = self.model.gradients()
        if train.grad_clip_value is not None:
            for g in grads.values():
                np.clip(g, -train.grad_clip_value, train.grad_clip_value, out=g)
        if train.grad_clip_norm is not None:
            total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
            if total > train.grad_clip_norm:
                for g in grads.values():
                    g *= train.grad_clip_norm / (total + 1e-12)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, float]:
        logits = self.model.forward(x, True)  # (B, K)
        loss, dlogits = self.loss_fn(logits, y)
        batch_accuracy = accuracy(logits, y)
        with self.fused.deferring():  # fused weights keep (x, dout) instead of forming dW
            self.model.backward(dlogits)
        loss += self.penalties(add_to_grads=True)
        self.clip_gradients()
        if not math.isfinite(loss):
            raise self.loss_error(str(loss), self.state.step + 1)
        reg = self.config.regularization
        if reg.shrink:  # before the update: W = W - lr*dW - shrink*W, both terms at the W of dW
            shrink_weights(self.model.parameters(), reg.shrink, apply_to=reg.apply_to)
        self.optimizer.step(self.model.parameters(), self.model.gradients(), lr,
                            products=self.fused.products())
        return loss, batch_accuracy

    # -- evaluation -----------------------------------------------------------------------
    def measure(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean data loss and accuracy of ``x`` against labels ``y`` in eval mode."""
        total_loss, correct = 0.0, 0
        for start in range(0, len(y), EVAL_CHUNK):
            xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            logits = self.model.forward(xb, False)
            loss, _ = self.loss_fn(logits, yb)
            per_batch = loss if self.config.loss.reduction == "sum" else loss * len(yb)
            total_loss += per_batch
            correct += int((logits.argmax(axis=1) == yb).sum())
        return total_loss / len(y), correct / len(y)

    def evaluate_split(self, split: str, final: bool = False) -> tuple[float, float]:
        """Mean data loss and accuracy of ``split`` (the same whether ``final`` or not)."""
        x, y = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}[split]
        if x is None or y is None:
            raise ValueError(f"the {split} split has no labelled rows")
        return self.measure(x, y)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) float32 of ``x`` in eval mode."""
        chunks = [softmax(self.model.forward(x[s : s + EVAL_CHUNK], False)) for s in range(0, len(x), EVAL_CHUNK)]
        return np.concatenate(chunks).astype(np.float32)

    def penalty_value(self) -> float:
        return self.penalties(add_to_grads=False)

    def probabilities(self, split: str, views: bool = True) -> np.ndarray:
        """Probabilities of ``split`` (val or test) with the current weights (``views``: the
        NumPy engine has no test-time augmentation, so there is one view either way)."""
        x = {"val": self.x_val, "test": self.x_test}[split]
        if x is None:
            raise ValueError(f"the data have no {split} split")
        return self.predict_proba(x)

    def interval_figures(self) -> tuple[float, float]:
        steps = max(1, self.interval_steps)
        figures = self.interval_loss / steps, self.interval_accuracy / steps
        self.interval_loss = self.interval_accuracy = 0.0
        self.interval_steps = 0
        return figures

    def monitors(self) -> dict[str, float]:
        monitor_x = self.x_train[: min(len(self.y_train), 512)]
        monitor_y = self.y_train[: len(monitor_x)]
        return layer_monitors(self.model, monitor_x, lambda logits: self.loss_fn(logits, monitor_y)[1])

    def progress_figures(self) -> dict[str, float]:
        steps = max(1, self.interval_steps)
        return {"running loss": self.interval_loss / steps, "running acc": self.interval_accuracy / steps}

    def step_loss(self) -> float:
        return self.last_loss

    # -- state arrays and checkpoints (numpy/checkpoint.py) -------------------------------
    def snapshot_weights(self) -> dict[str, np.ndarray]:
        return self.model.state_arrays()

    def restore_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.model.load_state_arrays(weights)

    def save_checkpoint(self) -> None:
        save_training(self)

    def load_checkpoint(self) -> None:
        load_training(self)

    # -- the loop's hooks -----------------------------------------------------------------
    def describe(self) -> None:
        self.context.log(
            f"model: {self.model.num_params():,} parameters, {self.total_steps} steps of "
            f"batch {self.batch_size} ({self.steps_per_epoch} steps per epoch) on the CPU, "
            f"{self.config.model.dtype}, BLAS: {blas_threads()} threads"
        )

    def shuffle(self) -> None:
        self.permutation = self.data_rng.permutation(len(self.y_train))

    def step(self, position: int, lr: float) -> None:
        if self.full_batch:
            self.last_loss, self.last_accuracy = self.train_step(self.x_train, self.y_train, lr)
        else:
            bs = self.batch_size
            index = self.permutation[position * bs : (position + 1) * bs]
            np.take(self.x_train, index, axis=0, out=self.x_batch)
            self.last_loss, self.last_accuracy = self.train_step(
                self.x_batch, self.y_train[index], lr
            )
        self.interval_loss += self.last_loss
        self.interval_accuracy += self.last_accuracy
        self.interval_steps += 1

    def run_facts(self) -> dict[str, Any]:
        return {"engine": "numpy", "params": self.model.num_params()}


__all__ = ["NumpyEngine", "NumpyTraining", "build_model", "build_optimizer", "make_loss"]
