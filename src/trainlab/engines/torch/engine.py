"""The torch engine: every model type, optimizer and schedule, with batched augmentation.

The shared loop (:class:`trainlab.engines.loop.TrainingLoop`) owns the run, as for the
NumPy engine: its length, when to draw the data order and to evaluate, the metrics rows,
the final figures and predictions, the callbacks, checkpoints, resume and progress.
:class:`TorchTraining` supplies only the torch parts: one step (gather a batch by index
from tensors held in memory, augment it on the device, forward, loss plus penalties,
backward, clip, update), the evaluation of a split, its state tensors and their loader.
Each step's loss and count of correct predictions stay on the device, read only at log
intervals and evaluations, so the host does not wait on the device every step.

A checkpoint (:mod:`.checkpoint`) adds to the loop's part the weights, optimizer state,
every generator still in use (data order, augmentation, dropout; the initialisation is
seeded apart and needs none), the epoch's
permutation and the weight average (``train.ema`` / ``train.lookahead``), so a resumed run
reproduces an uninterrupted one bit for bit on CPU.

Before the first step, a ``model.whiten`` layer is set from the first training images
(:mod:`.layers`). With ``train.ema``, evaluations and the final metrics and predictions
use the averaged weights (:mod:`.averaging`); ``train.tta`` picks the views of the final
evaluation (:mod:`.tta`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainlab.engines.base import FitContext
from trainlab.engines.cpu_memory import retain_freed_memory
from trainlab.engines.loop import TrainingLoop
from trainlab.engines.torch.augment import BatchAugment, check_low_res
from trainlab.engines.torch.averaging import build_average
from trainlab.engines.torch.checkpoint import load_training, save_training
from trainlab.engines.torch.layers import drop_whiten_bias_grads, init_whitening
from trainlab.engines.torch.models import build_model, count_params, output_weight
from trainlab.engines.torch.monitors import layer_monitors
from trainlab.engines.torch.muon import optimizer_parts
from trainlab.engines.torch.optim import (
    build_optimizer,
    clip_gradients,
    penalized_params,
    penalty,
    set_lr,
    shrink_before_step,
)
from trainlab.engines.torch.pixels import PixelSpace, pack_images, unpack_images
from trainlab.engines.torch.runtime import (
    TrainOptions,
    autocast,
    cpu_threads,
    data_loss,
    pick_device,
    stream_seed,
    train_options,
)
from trainlab.engines.torch.summary import model_summary
from trainlab.engines.torch.tta import tta_logits, tta_mode
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_text

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.data import PreparedData

CONV_MODELS = ("cnn", "resnet", "fast_cifar")
EVAL_CHUNK = 1024
MONITOR_BATCH = 256
RECORDS_HELD = 20  # most steps whose records wait on the host before they are written (see reset_interval)


class TorchEngine:
    """Trains every model type with PyTorch, on the CPU or a GPU."""

    name = "torch"

    def check_config(self, config: RunConfig) -> None:
        """Refuse what the torch engine cannot build, before any data is read."""
        m = config.model
        if m.type == "resnet" and m.depth not in (9, 18, 34):
            raise ConfigError(f"model.depth: resnet depth {m.depth} is not built; choose 9, 18 or 34")
        for index, block in enumerate(m.conv):
            if block.padding == "same" and block.kernel % 2 == 0:
                raise ConfigError(f"model.conv[{index}].padding: 'same' needs an odd kernel (got {block.kernel})")
        check_low_res(config)  # the model type; the image size is known only in TorchTraining
        train_options(config)

    def fit(self, config: RunConfig, data: PreparedData, context: FitContext) -> dict[str, Any]:
        """Train (or resume) and return the summary figures; see :class:`Engine`."""
        return TorchTraining(config, data, context, train_options(config)).run()


class TorchTraining(TrainingLoop):
    """One training run of the torch engine: its state and the loop's engine hooks."""

    progress_every = 20  # steps between reads of the device-side running loss (a host sync)

    def __init__(self, config: RunConfig, data: PreparedData, context: FitContext,
                 options: TrainOptions | None = None) -> None:
        self.options = options or TrainOptions()
        self.device = pick_device(self.options.device)
        # Fails here, before any work, for fp16 on a CPU; built once, as building costs more than entering.
        self.step_autocast = autocast(self.device, self.options.precision)
        super().__init__(config, data, context)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads())
            retain_freed_memory()  # each step reuses the last one's pages (see cpu_memory)
        n = len(data.y_train)
        self.dtype = torch.float64 if config.model.dtype == "float64" else torch.float32
        self.pixels = PixelSpace(data.normalizer, int(data.input_shape[0]), self.device)
        # Whole splits stay in memory on the device as uint8 pixels; batches are gathered
        # by index and normalised on the fly.
        self.x_train = pack_images(data.x_train, self.pixels, self.device)  # (N, C, H, W)
        self.y_train = torch.as_tensor(np.asarray(data.y_train), dtype=torch.int64, device=self.device)
        self.x_val, self.y_val = pack_images(data.x_val, self.pixels, self.device), torch.as_tensor(np.asarray(data.y_val))
        # has_test_images (the loop's) is False under train.final_test_eval: false: nothing to pack then
        self.x_test = pack_images(data.x_test, self.pixels, self.device) if self.has_test_images else None
        self.y_test = torch.as_tensor(np.asarray(data.y_test)) if self.x_test is not None and data.y_test is not None else None
        train = config.train
        self.input_shape = tuple(int(d) for d in data.input_shape)
        self.model = build_model(config.model, self.input_shape, data.num_classes,  # type: ignore[arg-type]
                                 seed=stream_seed(config.seed, 0)).to(self.device)
        check_low_res(config, self.input_shape, self.model)  # type: ignore[arg-type]
        whiten = config.model.whiten
        if whiten is not None:  # from the data, before any training (a resume reloads the same values)
            init_whitening(self.model, self._floats(self.x_train[: whiten.images]), whiten.eps)
        self.whiten_bias_steps = (whiten.bias_epochs * self.steps_per_epoch
                                  if whiten is not None and whiten.bias_epochs else None)
        self.channels_last = config.model.type in CONV_MODELS
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The compiled module shares the parameters; state dicts come from the original.
        self.forward = torch.compile(self.model) if self.options.compile else self.model
        # fp16 only; disabled it would pass everything through, so train_step leaves it out.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.options.precision == "fp16")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.penalized = penalized_params(self.model, config.regularization.apply_to)
        self.optimizer = build_optimizer(self.params, config.optimizer, output_weight(self.model))
        # What zero_grad(set_to_none=True) clears, cleared directly by train_step: the call
        # also opens a profiler record and builds a dict, at every step.
        self.optimized_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        shrink_before_step(self.optimizer, self.penalized, config.regularization.shrink)
        self.average = build_average(self.model, train.ema, train.lookahead)
        self.data_gen = torch.Generator().manual_seed(stream_seed(config.seed, 1))
        self.augment = BatchAugment(config.augment, data.num_classes, self.pixels, self.device,
                                    seed=stream_seed(config.seed, 2), num_examples=n)
        self.augmenting = self.augment.enabled  # read once: it walks every augment field
        torch.manual_seed(stream_seed(config.seed, 3))  # dropout masks
        self.permutation = torch.arange(n)
        self.checkpoint_path = context.run_dir.checkpoint_path(".pt")
        self.final_logits: dict[str, torch.Tensor] = {}  # of val and test, kept for predictions.npz
        slots = max(1, self.eval_every)  # a training run's interval never holds more steps
        self.step_losses = torch.zeros(slots, dtype=torch.float64, device=self.device)
        self.step_correct = torch.zeros(slots, dtype=torch.int64, device=self.device)
        self.held: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (loss, logits, labels)
        self.reset_interval()

    def _floats(self, xb: torch.Tensor) -> torch.Tensor:
        """Normalised floats of a gathered batch."""
        return unpack_images(xb, self.pixels, self.dtype)

    def reset_interval(self) -> None:
        """Start a new interval of device-side per-step records (loss, correct predictions).

        Step ``interval_steps`` of the interval has slot ``interval_steps`` of two device
        buffers: its loss and its count of correct predictions. Sums and the NaN check read
        the filled part at log intervals and evaluations. Buffers, not running sums, so that
        the first non-finite loss is still found by its step. A step only holds its loss,
        logits and labels in :attr:`held`; :meth:`write_held` turns up to ``RECORDS_HELD``
        steps of them into slots in a few batched device ops (no host sync), cheaper than
        the ~8 small ops a step took to write its own slots.
        """
        self.seen = 0
        self.interval_steps = 0
        self.interval_start = int(self.state.step)
        self.held.clear()

    def write_held(self) -> None:
        """Write the records of the steps in :attr:`held` into their buffer slots (the steps
        just before ``interval_steps``); the buffers double when full (a run driven without
        evaluations: parity, benchmarks)."""
        if not self.held:
            return
        losses, logits, labels = zip(*self.held, strict=True)
        end = self.interval_steps
        start = end - len(losses)
        while end > len(self.step_losses):
            self.step_losses = torch.cat([self.step_losses, torch.zeros_like(self.step_losses)])
            self.step_correct = torch.cat([self.step_correct, torch.zeros_like(self.step_correct)])
        self.step_losses[start:end] = torch.stack(losses)
        if len({z.shape for z in logits}) == 1:  # one batch size: one argmax and count for all
            correct = torch.stack(logits).argmax(2).eq(torch.stack(labels)).sum(1)  # (n,)
        else:
            correct = torch.stack([z.argmax(1).eq(y).sum() for z, y in zip(logits, labels, strict=True)])
        self.step_correct[start:end] = correct
        self.held.clear()

    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        """A copy of the state dict evaluations use (for early stopping's restore-best)."""
        if self.average is not None:
            return self.average.evaluation_state()
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Put :meth:`snapshot_weights`' copy back (into the weight average too, with ``train.ema``
        or ``train.lookahead``)."""
        self.model.load_state_dict(weights)
        if self.average is not None:
            self.average.set_average(weights)

    def evaluated_weights(self) -> contextlib.AbstractContextManager[None]:
        """Within it, the model holds the weights evaluations use (the EMA with ``train.ema``)."""
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext()

    # -- one step -------------------------------------------------------------------------
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, index: torch.Tensor, lr: float) -> torch.Tensor:
        """One update on the examples ``index``; returns the total loss (a device scalar)."""
        xb = self.x_train.index_select(0, index)  # (B, C, H, W), uint8 pixels or floats
        yb = self.y_train.index_select(0, index)  # (B,)
        soft = None
        if self.augmenting:  # it normalises uint8 pixels itself, after its crop/flip gather
            xb, soft = self.augment(xb, yb, index, self.state.epoch, dtype=self.dtype)
        else:
            xb = self._floats(xb)
        set_lr(self.optimizer, lr)
        self._drop_frozen_grads()  # before the forward: a frozen bias then costs no backward at all
        with self.step_autocast:
            logits = self.forward(self._input(xb))  # (B, K)
        loss = data_loss(self.config, logits, yb, soft)
        extra = penalty(self.penalized, self.config.regularization)
        total = loss + extra if extra is not None else loss
        for p in self.optimized_params:
            p.grad = None
        if self.scaler.is_enabled():
            self._scaled_update(total)
        else:
            total.backward()
            clip_gradients(self.params, self.config.train.grad_clip_value, self.config.train.grad_clip_norm)
            self.optimizer.step()
        total = total.detach()
        self.held.append((total, logits.detach(), soft.argmax(1) if soft is not None else yb))
        self.seen += len(index)
        self.interval_steps += 1
        if len(self.held) == RECORDS_HELD:
            self.write_held()
        return total

    def _scaled_update(self, total: torch.Tensor) -> None:
        """fp16's backward and update: the loss is scaled and the gradients unscaled before
        clipping; a step with an inf/NaN gradient is skipped."""
        train = self.config.train
        self.scaler.scale(total).backward()
        parts = optimizer_parts(self.optimizer)
        for part in parts:
            self.scaler.unscale_(part)
        clip_gradients(self.params, train.grad_clip_value, train.grad_clip_norm)
        for part in parts:
            self.scaler.step(part)
        self.scaler.update()

    def _drop_frozen_grads(self) -> None:
        """Once ``model.whiten.bias_epochs`` are done, the whitening bias gets no more updates
        (frozen before the step's forward, so that its backward is not computed either)."""
        if self.whiten_bias_steps is not None and self.state.step >= self.whiten_bias_steps:
            drop_whiten_bias_grads(self.model)

    def check_finite(self) -> None:
        """Raise if a step since the last check had a NaN/inf loss (reads one device scalar)."""
        self.write_held()
        losses = self.step_losses[: self.interval_steps]
        if self.interval_steps == 0 or bool(torch.isfinite(losses).all()):
            return
        first = int((~torch.isfinite(losses)).nonzero()[0, 0])
        raise self.loss_error("NaN or infinite", self.interval_start + first + 1)

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def logits_of(self, x: torch.Tensor, tta: bool | str = False) -> torch.Tensor:
        """Eval-mode logits (N, K) of a whole split, in chunks, with the current weights;
        ``tta`` (a ``train.tta`` value) averages in the views of :mod:`.tta`."""
        self.model.eval()
        mode = tta_mode(tta)
        chunks = []
        try:
            with autocast(self.device, self.options.precision):
                for s in range(0, len(x), EVAL_CHUNK):
                    xb = self._floats(x[s : s + EVAL_CHUNK])
                    if mode == "none":
                        chunks.append(self.forward(self._input(xb)).float())  # (n, K)
                    else:
                        chunks.append(tta_logits(lambda v: self.forward(self._input(v)), xb, mode,
                                                 self.options.tta_below))
            return torch.cat(chunks)
        finally:
            self.model.train()

    def split_metrics(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean data loss and accuracy of logits (N, K) against labels y (N,)."""
        logits = logits.cpu()
        loss = float(data_loss(self.config, logits, y, None))
        per_example = loss / len(y) if self.config.loss.reduction == "sum" else loss
        return per_example, float((logits.argmax(1) == y).float().mean())

    def evaluate_split(self, split: str, final: bool = False) -> tuple[float, float]:
        """Mean data loss and accuracy of ``split`` in eval mode, with the weights evaluations
        use; the ``final`` figures of val and test average in the views of ``train.tta``
        (training accuracy stays as trained)."""
        if split == "train":  # labels on the host, as split_metrics compares there
            x, y = self.x_train, self.y_train.cpu()
        else:
            x, y = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        if x is None or y is None:
            raise ValueError(f"the {split} split has no labelled rows")
        with self.evaluated_weights():
            logits = self.logits_of(x, self.options.tta if final and split != "train" else False)
        if final and split != "train":
            self.final_logits[split] = logits  # predictions.npz reuses them: the views cost a pass each
        return self.split_metrics(logits, y)

    def penalty_value(self) -> float:
        with torch.no_grad(), self.evaluated_weights():
            value = penalty(self.penalized, self.config.regularization)
        return float(value) if value is not None else 0.0

    def probabilities(self, split: str, views: bool = True) -> np.ndarray:
        """Probabilities of ``split`` (val or test): of the final evaluation's logits once it
        has run, else with the views of ``train.tta`` as that evaluation uses them (only the
        plain view with ``views=False``)."""
        x = self.x_val if split == "val" else self.x_test
        if x is None:
            raise ValueError(f"the data have no {split} split")
        logits = self.final_logits.get(split)
        if logits is None:
            with self.evaluated_weights():
                logits = self.logits_of(x, self.options.tta if views else False)
        return torch.softmax(logits, 1).cpu().numpy().astype(np.float32)

    def interval_figures(self) -> tuple[float, float]:
        """The interval's mean loss and accuracy (after the NaN check); resets the records."""
        self.check_finite()
        train_loss = float(self.step_losses[: self.interval_steps].sum()) / max(1, self.interval_steps)
        train_acc = self._train_accuracy()
        self.reset_interval()
        return train_loss, train_acc

    def monitors(self) -> dict[str, float]:
        x_mon = self._input(self._floats(self.x_train[:MONITOR_BATCH]))
        y_mon = self.y_train[:MONITOR_BATCH]
        with autocast(self.device, self.options.precision):  # measured as trained (bf16: ~3x faster)
            return layer_monitors(self.model, x_mon, lambda logits: data_loss(self.config, logits, y_mon, None))

    # -- checkpoints (torch/checkpoint.py) ------------------------------------------------
    def save_checkpoint(self) -> None:
        self.write_held()  # the checkpoint holds the interval's records from the buffers
        save_training(self)

    def load_checkpoint(self) -> None:
        load_training(self)

    # -- the loop's hooks -----------------------------------------------------------------
    def describe(self) -> None:
        log = self.context.log
        summary = model_summary(self.model, self.input_shape)  # type: ignore[arg-type]
        atomic_write_text(self.context.run_dir.model_summary_path, summary + "\n")
        log(summary)
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        log(f"model: {count_params(self.model):,} parameters, {self.total_steps} steps of batch "
            f"{self.batch_size} ({self.steps_per_epoch} steps per epoch) on {self.device}, "
            f"{self.options.precision}{threads}")

    def shuffle(self) -> None:
        self.permutation = torch.randperm(len(self.y_train), generator=self.data_gen)

    def step(self, position: int, lr: float) -> None:
        bs = self.batch_size
        index = self.permutation[position * bs : (position + 1) * bs].to(self.device)
        self.last_total = self.train_step(index, lr)
        if self.average is not None:
            self.average.after_step(self.state.step + 1, self.total_steps, self.steps_per_epoch)

    def progress_figures(self) -> dict[str, float]:
        self.check_finite()
        running = float(self.step_losses[: self.interval_steps].sum()) / max(1, self.interval_steps)
        return {"running loss": running, "running acc": self._train_accuracy()}

    def step_loss(self) -> torch.Tensor:
        return self.last_total  # a device scalar: steps.csv reads it when it flushes, not per step

    def _train_accuracy(self) -> float:
        """Training accuracy over the steps of the current interval (reads the device)."""
        self.write_held()
        return float(self.step_correct[: self.interval_steps].sum()) / max(1, self.seen)

    def run_facts(self) -> dict[str, Any]:
        return {"engine": "torch", "device": str(self.device), "precision": self.options.precision,
                "tta": self.options.tta, "params": count_params(self.model)}


__all__ = ["TorchEngine", "TorchTraining"]
