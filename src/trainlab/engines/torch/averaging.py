"""Running averages of the weights: an EMA used for evaluation, or lookahead.

:class:`WeightAverage` keeps ``avg`` for every floating-point tensor of the model's state
dict (weights and batch-norm running statistics; integer counters are left alone).
After optimizer step ``t`` (1-based) of epoch ``e`` (0-based), when ``e >= start_epoch``
and ``t % every == 0``:

    d = decay * (t / total_steps) ** ramp_power
    avg = d * avg + (1 - d) * w          (the first such step sets avg = w)

``ema`` mode leaves the weights alone and swaps the average in for evaluation
(:meth:`WeightAverage.swapped_in`). ``lookahead`` mode copies the average back into the
weights after each update and at the end of each epoch (and of training), so training
continues from the average (airbench94's scheme).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from trainlab.config import WeightAverageConfig

MODES = ("ema", "lookahead")


class WeightAverage:
    """The running average of ``model``'s floating-point state (see the module docstring).

    Args:
        model: the network (its state dict tensors are updated in place in lookahead mode).
        cfg: ``train.ema`` or ``train.lookahead``.
        mode: ``ema`` or ``lookahead``.
    """

    def __init__(self, model: nn.Module, cfg: WeightAverageConfig, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown weight average mode {mode!r}; choose one of {', '.join(MODES)}")
        self.model, self.cfg, self.mode = model, cfg, mode
        self.average: dict[str, torch.Tensor] | None = None  # None until the first update

    def _live(self) -> dict[str, torch.Tensor]:
        """The model's floating-point state tensors (shared with the model, not copies)."""
        return {k: v for k, v in self.model.state_dict(keep_vars=True).items() if v.is_floating_point()}

    def decay_at(self, step: int, total_steps: int) -> float:
        """The decay of the update after step ``step`` (1-based) of ``total_steps``."""
        ramp = (step / max(1, total_steps)) ** self.cfg.ramp_power if self.cfg.ramp_power else 1.0
        return self.cfg.decay * ramp

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Update after optimizer step ``step`` (1-based); in lookahead mode, copy back."""
        epoch = (step - 1) // steps_per_epoch
        if epoch >= self.cfg.start_epoch and step % self.cfg.every == 0:
            live = self._live()
            if self.average is None:
                self.average = {k: v.detach().clone() for k, v in live.items()}
            else:
                weight = 1.0 - self.decay_at(step, total_steps)
                for name, avg in self.average.items():
                    avg.lerp_(live[name].detach(), weight)
                if self.mode == "lookahead":
                    self.copy_to_model()
        if self.mode == "lookahead" and (step % steps_per_epoch == 0 or step == total_steps):
            self.copy_to_model()

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Set the model's floating-point state to the average (once there is one)."""
        if self.average is None:
            return
        live = self._live()
        for name, avg in self.average.items():
            live[name].detach().copy_(avg)

    @property
    def evaluates_average(self) -> bool:
        """Whether evaluation should swap the average in (ema mode, once it exists)."""
        return self.mode == "ema" and self.average is not None

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """In ema mode, the average in place of the weights for the ``with`` block; else a no-op."""
        if not self.evaluates_average:
            yield
            return
        live = self._live()
        saved = {k: v.detach().clone() for k, v in live.items()}
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    live[name].detach().copy_(value)

    def evaluation_state(self) -> dict[str, torch.Tensor]:
        """A copy of the state dict that evaluation uses (the average swapped in, in ema mode)."""
        with self.swapped_in():
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @torch.no_grad()
    def set_average(self, state: dict[str, torch.Tensor]) -> None:
        """Make ``state``'s floating-point tensors the average (early stopping's restore)."""
        if self.average is not None:
            for name, avg in self.average.items():
                avg.copy_(state[name])

    def state_dict(self) -> dict[str, Any]:
        """``{"mode": ..., "average": {name: tensor}}`` (no ``average`` before the first update)."""
        state: dict[str, Any] = {"mode": self.mode}
        if self.average is not None:
            state["average"] = self.average
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (tensors copied to the model's devices and layouts)."""
        saved = state.get("average")
        if saved is None:
            self.average = None
            return
        live = self._live()
        self.average = {}
        for name, value in saved.items():
            target = live[name]
            avg = torch.empty_like(target.detach())
            avg.copy_(value)
            self.average[name] = avg


def build_average(model: nn.Module, ema: WeightAverageConfig | None,
                  lookahead: WeightAverageConfig | None) -> WeightAverage | None:
    """The weight average that ``train.ema`` or ``train.lookahead`` asks for, or None."""
    if ema is not None:
        return WeightAverage(model, ema, "ema")
    if lookahead is not None:
        return WeightAverage(model, lookahead, "lookahead")
    return None


__all__ = ["MODES", "WeightAverage", "build_average"]
